-- purpose: Quality against cost per request for every task and model: the picture the recommender acts on.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: task, model, requests (attempts), cost_per_request_usd (mean exact cost of priced attempts), quality (mean quality feedback), samples (feedback count)
-- notes: read from the hourly rollups (requests_hourly, quality_hourly: feedback joined to its request at ingest), so the window
--        applies to request times at hour resolution; feedback dated before $since_date is not counted.
WITH r AS (
    SELECT task, model,
           SUM(requests) AS requests,
           SUM(cost_usd) AS cost,
           SUM(requests) - SUM(unpriced) AS priced
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY task, model
),
q AS (
    SELECT task, model, SUM(samples) AS n, CAST(SUM(value_sum) AS DOUBLE) AS sum_v
    FROM quality_hourly
    WHERE metric = 'quality'
      AND ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND feedback_date >= $since_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY task, model
)
SELECT
    r.task,
    r.model,
    r.requests,
    ROUND(CAST(r.cost AS DOUBLE) / NULLIF(r.priced, 0), 8) AS cost_per_request_usd,
    ROUND(q.sum_v / NULLIF(q.n, 0), 4) AS quality,
    COALESCE(q.n, 0) AS samples
FROM r
LEFT JOIN q ON q.task = r.task AND q.model = r.model
ORDER BY r.task, r.model
