-- purpose: The 20 API keys that cost the most in the window, with their team (dashboard panel).
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: rank (1 = most expensive), key_id (API key), team_id (team owning the key), requests (attempts), top_model (model with the highest spend on this key), cost_usd (USD, 6 decimals), share (key cost / total cost in the window, 0..1), team_cost_usd (whole team's cost, for context)
-- notes: read from the hourly rollup (requests_hourly), so the window applies at hour resolution.
WITH m AS (
    SELECT key_id, team_id, model,
           SUM(requests) AS requests,
           COALESCE(CAST(SUM(cost_usd) AS DOUBLE), 0) AS cost
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY key_id, team_id, model
),
k AS (
    SELECT key_id, team_id,
           SUM(requests) AS requests,
           SUM(cost) AS cost,
           -- the per-model row of highest cost names the key's top model
           MAX(model) FILTER (WHERE top = 1) AS top_model
    FROM (SELECT m.*, ROW_NUMBER() OVER (PARTITION BY key_id, team_id ORDER BY cost DESC, model) AS top FROM m) x
    GROUP BY key_id, team_id
),
ranked AS (
    SELECT k.*,
           ROW_NUMBER() OVER (ORDER BY cost DESC, key_id NULLS LAST, team_id NULLS LAST) AS rank,
           SUM(cost) OVER () AS total_cost,
           SUM(cost) OVER (PARTITION BY team_id) AS team_cost
    FROM k
)
SELECT
    rank, key_id, team_id, requests, top_model,
    ROUND(cost, 6) AS cost_usd,
    ROUND(cost / NULLIF(total_cost, 0), 6) AS share,
    ROUND(team_cost, 6) AS team_cost_usd
FROM ranked
WHERE rank <= 20
ORDER BY rank
