-- purpose: Spend by model over time for a time-series chart: hourly buckets for windows of up to 3 days, daily buckets beyond.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: bucket_start (UTC start of the bucket, ISO 8601 text: YYYY-MM-DDTHH:00:00Z), granularity (hour or day), model (model as served), requests (attempts), tokens (prompt + completion), cost_usd (spend in the bucket)
-- notes: read from the hourly rollup (requests_hourly), so the window applies at hour resolution; buckets come from the
--        date/hour partition columns (UTC). The window is "wide" (daily) when $since_date + 3 days < $until_date.
--        Buckets without traffic are absent, not zero.
WITH p AS (
    SELECT CAST($since_date AS DATE) + INTERVAL '3 days' < CAST($until_date AS DATE) AS daily
),
r AS (
    SELECT CAST(r.date AS VARCHAR) AS day,
           CASE WHEN p.daily THEN '00' ELSE r.hour END AS hh,
           CASE WHEN p.daily THEN 'day' ELSE 'hour' END AS granularity,
           r.model, r.requests, r.prompt_tokens + r.completion_tokens AS tokens, r.cost_usd
    FROM requests_hourly r CROSS JOIN p
    WHERE r.ts_hour >= $since AND r.ts_hour < $until
      AND r.date >= $since_date AND r.date <= $until_date
      AND ($task IS NULL OR r.task = $task)
      AND ($model IS NULL OR r.model = $model)
)
SELECT
    day || 'T' || hh || ':00:00Z' AS bucket_start,
    granularity,
    model,
    SUM(requests) AS requests,
    SUM(tokens) AS tokens,
    ROUND(COALESCE(CAST(SUM(cost_usd) AS DOUBLE), 0), 6) AS cost_usd
FROM r
GROUP BY day, hh, granularity, model
ORDER BY bucket_start, model
