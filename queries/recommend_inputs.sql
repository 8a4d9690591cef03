-- purpose: The recommender's evidence per task x model: traffic, success, exact cost per request, quality feedback and p95 latency.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: task (task label), model (model as served), requests (attempts), success_rate (share of 2xx attempts), cost_per_request (mean exact cost of priced attempts, USD), samples (requests with quality feedback), quality (mean quality, a request's feedback averaged first), quality_var (sample variance of quality), binary (every quality value is 0 or 1), p95_latency_ms (95th percentile latency of successful attempts)
-- notes: quality comes from quality_hourly (feedback joined to its request at ingest; request times at hour resolution,
--        feedback dated before $since_date not counted); traffic, cost and latency from the raw requests.
WITH r AS (
    SELECT task, model,
           COUNT(*) AS requests,
           ROUND(CAST(SUM(CASE WHEN status BETWEEN 200 AND 299 OR status IS NULL THEN 1 ELSE 0 END) AS DOUBLE) / COUNT(*), 6) AS success_rate,
           ROUND(CAST(AVG(cost_usd) AS DOUBLE), 10) AS cost_per_request,
           ROUND(percentile_cont(0.95) WITHIN GROUP (ORDER BY CASE WHEN status BETWEEN 200 AND 299 THEN latency_ms END), 1) AS p95_latency_ms
    FROM requests
    WHERE ts >= $since AND ts < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY task, model
),
q AS (
    SELECT task, model, SUM(samples) AS n, CAST(SUM(value_sum) AS DOUBLE) AS sum_v, CAST(SUM(value_sq_sum) AS DOUBLE) AS sum_v2,
           SUM(non_binary) AS non_binary
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
    r.success_rate,
    r.cost_per_request,
    COALESCE(q.n, 0) AS samples,
    ROUND(q.sum_v / NULLIF(q.n, 0), 6) AS quality,
    ROUND(CASE WHEN q.n >= 2 THEN GREATEST((q.sum_v2 - q.sum_v * q.sum_v / q.n) / (q.n - 1), 0.0) END, 8) AS quality_var,
    COALESCE(q.non_binary, 0) = 0 AS binary,
    r.p95_latency_ms
FROM r
LEFT JOIN q ON q.task = r.task AND q.model = r.model
ORDER BY r.task, r.model
