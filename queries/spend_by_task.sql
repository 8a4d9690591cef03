-- purpose: Spend by task, with each task's share of total spend in the window.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: task (application task label), requests (attempts), models (distinct models used), tokens (prompt + completion), cost_usd (USD, 6 decimals), cost_per_request (USD per attempt), share (task cost / total cost of all tasks in the result, 0..1)
-- notes: read from the hourly rollup (requests_hourly), so the window applies at hour resolution.
WITH t AS (
    SELECT
        task,
        SUM(requests) AS requests,
        COUNT(DISTINCT model) AS models,
        SUM(prompt_tokens + completion_tokens) AS tokens,
        COALESCE(CAST(SUM(cost_usd) AS DOUBLE), 0) AS cost
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY task
)
SELECT
    task,
    requests,
    models,
    tokens,
    ROUND(cost, 6) AS cost_usd,
    ROUND(cost / requests, 8) AS cost_per_request,
    ROUND(cost / NULLIF(SUM(cost) OVER (), 0), 6) AS share
FROM t
ORDER BY cost_usd DESC, task
