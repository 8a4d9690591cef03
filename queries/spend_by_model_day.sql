-- purpose: Spend by model by UTC day: requests, tokens and USD per (day, model).
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: day (UTC date YYYY-MM-DD, the partition column), model (model as served), requests (attempts, retries included), prompt_tokens (input tokens, cached included), completion_tokens (output tokens, reasoning included), tokens (prompt + completion), cost_usd (sum of cost_usd, 6 decimals), unpriced_requests (attempts whose cost_usd is unknown/NULL, not in cost_usd)
-- notes: read from the hourly rollup (requests_hourly), so the window applies at hour resolution.
SELECT
    CAST(r.date AS VARCHAR) AS day,
    r.model,
    SUM(r.requests) AS requests,
    SUM(r.prompt_tokens) AS prompt_tokens,
    SUM(r.completion_tokens) AS completion_tokens,
    SUM(r.prompt_tokens + r.completion_tokens) AS tokens,
    ROUND(COALESCE(CAST(SUM(r.cost_usd) AS DOUBLE), 0), 6) AS cost_usd,
    SUM(r.unpriced) AS unpriced_requests
FROM requests_hourly r
WHERE r.ts_hour >= $since AND r.ts_hour < $until
  AND r.date >= $since_date AND r.date <= $until_date
  AND ($task IS NULL OR r.task = $task)
  AND ($model IS NULL OR r.model = $model)
GROUP BY r.date, r.model
ORDER BY day, r.model
