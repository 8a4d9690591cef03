-- purpose: The recommender's evidence per task x model: traffic, success, exact cost per request, quality feedback and p95 latency.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: task (task label), model (model as served), requests (attempts), success_rate (share of 2xx attempts, and of attempts with neither a status nor an error), cost_per_request (mean exact cost of priced attempts, USD), samples (requests with quality feedback), quality (mean quality, a request's feedback averaged first), quality_var (sample variance of quality), binary (every quality value is 0 or 1), p95_latency_ms (95th percentile latency of successful attempts)
-- notes: read from the hourly rollups, so the window applies to request times at hour resolution: traffic, success and cost
--        from requests_hourly; quality from quality_hourly (feedback joined to its request at ingest; feedback dated before
--        $since_date not counted); p95 from the latency histograms (latency_hourly): percentile_cont's interpolation between
--        the values of ranks floor and ceil of 0.95 * (n - 1), each read as its bucket's midpoint 2 * 1.02^b / 2.02, so
--        within 1% of the exact percentile_cont.
WITH r AS (
    SELECT task, model,
           SUM(requests) AS requests,
           SUM(requests) - SUM(errors) AS ok,
           CAST(SUM(cost_usd) AS DOUBLE) AS cost,
           SUM(requests) - SUM(unpriced) AS priced
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY task, model
),
h AS (
    SELECT task, model, bucket, SUM(count) AS n
    FROM latency_hourly
    WHERE metric = 'latency_ms'
      AND ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY task, model, bucket
),
c AS (
    SELECT task, model, bucket,
           SUM(n) OVER (PARTITION BY task, model ORDER BY bucket
                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum,
           SUM(n) OVER (PARTITION BY task, model) AS total
    FROM h
),
-- the buckets holding the 0-based ranks floor(x) and ceil(x) of x = 0.95 * (n - 1)
p AS (
    SELECT task, model, MAX(0.95 * (total - 1)) AS x,
           MIN(CASE WHEN cum > FLOOR(0.95 * (total - 1)) THEN bucket END) AS b_lo,
           MIN(CASE WHEN cum > CEIL(0.95 * (total - 1)) THEN bucket END) AS b_hi
    FROM c
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
    ROUND(CAST(r.ok AS DOUBLE) / r.requests, 6) AS success_rate,
    ROUND(r.cost / NULLIF(r.priced, 0), 10) AS cost_per_request,
    COALESCE(q.n, 0) AS samples,
    ROUND(q.sum_v / NULLIF(q.n, 0), 6) AS quality,
    ROUND(CASE WHEN q.n >= 2 THEN GREATEST((q.sum_v2 - q.sum_v * q.sum_v / q.n) / (q.n - 1), 0.0) END, 8) AS quality_var,
    COALESCE(q.non_binary, 0) = 0 AS binary,
    ROUND(2 * (POWER(1.02, p.b_lo) + (POWER(1.02, p.b_hi) - POWER(1.02, p.b_lo)) * (p.x - FLOOR(p.x))) / 2.02, 1)
        AS p95_latency_ms
FROM r
LEFT JOIN q ON q.task = r.task AND q.model = r.model
LEFT JOIN p ON p.task = r.task AND p.model = r.model
ORDER BY r.task, r.model
