-- purpose: Spend by team, by API key within team and by user within key (three grouping levels, subtotal rows first).
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: level (team, key or user: which grouping the row is), team_id (team), key_id (API key; NULL on team rows), user_id (user; NULL on team and key rows), requests (attempts), users (distinct non-NULL users), tokens (prompt + completion), cost_usd (USD, 6 decimals), share (row cost / total cost in the window, 0..1)
-- notes: one scan at user level, rolled up to key and team with GROUPING SETS; a NULL team_id/key_id/user_id in the data is its own group, `level` tells a subtotal row from a NULL value.
WITH u AS (
    SELECT
        r.team_id, r.key_id, r.user_id,
        COUNT(*) AS requests,
        SUM(COALESCE(r.prompt_tokens, 0) + COALESCE(r.completion_tokens, 0)) AS tokens,
        COALESCE(CAST(SUM(r.cost_usd) AS DOUBLE), 0) AS cost
    FROM requests r
    WHERE r.ts >= $since AND r.ts < $until
      AND r.date >= $since_date AND r.date <= $until_date
      AND ($task IS NULL OR r.task = $task)
      AND ($model IS NULL OR r.model = $model)
    GROUP BY r.team_id, r.key_id, r.user_id
),
g AS (
    SELECT
        CASE WHEN GROUPING(key_id) = 1 THEN 1 WHEN GROUPING(user_id) = 1 THEN 2 ELSE 3 END AS lvl,
        team_id, key_id, user_id,
        SUM(requests) AS requests,
        COUNT(DISTINCT user_id) AS users,
        SUM(tokens) AS tokens,
        SUM(cost) AS cost
    FROM u
    GROUP BY GROUPING SETS ((team_id), (team_id, key_id), (team_id, key_id, user_id))
)
SELECT
    CASE g.lvl WHEN 1 THEN 'team' WHEN 2 THEN 'key' ELSE 'user' END AS level,
    g.team_id, g.key_id, g.user_id, g.requests, g.users, g.tokens,
    ROUND(g.cost, 6) AS cost_usd,
    ROUND(g.cost / NULLIF(SUM(CASE WHEN g.lvl = 1 THEN g.cost ELSE 0 END) OVER (), 0), 6) AS share
FROM g
ORDER BY g.team_id NULLS LAST, g.lvl > 1, g.key_id NULLS LAST, g.lvl > 2, g.user_id NULLS LAST, g.lvl
