-- purpose: Latency p50/p95/p99 and time-to-first-token p50/p95 by model, successful requests only.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: model (model as served), requests (successful attempts with a latency), latency_p50_ms (median total latency), latency_p95_ms (95th percentile), latency_p99_ms (99th percentile), ttft_samples (successful attempts with a TTFT, i.e. streamed), ttft_p50_ms (median time to first token, NULL without samples), ttft_p95_ms (95th percentile TTFT)
-- notes: read from the hourly latency histograms (latency_hourly), so the window applies at hour resolution. Bucket b holds
--        values in (1.02^(b-1), 1.02^b]; a percentile is the nearest-rank bucket's midpoint 2 * 1.02^b / 2.02, within 1% of
--        the exact nearest-rank value. Successful = HTTP 2xx.
WITH h AS (
    SELECT model, metric, bucket, SUM(count) AS n
    FROM latency_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY model, metric, bucket
),
c AS (
    SELECT model, metric, bucket,
           SUM(n) OVER (PARTITION BY model, metric ORDER BY bucket
                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum,
           SUM(n) OVER (PARTITION BY model, metric) AS total
    FROM h
),
p AS (
    SELECT model, metric, MAX(total) AS total,
           MIN(CASE WHEN cum >= 0.50 * total THEN bucket END) AS b50,
           MIN(CASE WHEN cum >= 0.95 * total THEN bucket END) AS b95,
           MIN(CASE WHEN cum >= 0.99 * total THEN bucket END) AS b99
    FROM c
    GROUP BY model, metric
),
-- one row per model from both metrics' rows: p is read once (a CTE named twice is planned,
-- and its scan run, twice by engines that inline CTEs)
w AS (
    SELECT model,
           MAX(CASE WHEN metric = 'latency_ms' THEN total END) AS requests,
           MAX(CASE WHEN metric = 'latency_ms' THEN b50 END) AS l50,
           MAX(CASE WHEN metric = 'latency_ms' THEN b95 END) AS l95,
           MAX(CASE WHEN metric = 'latency_ms' THEN b99 END) AS l99,
           MAX(CASE WHEN metric = 'ttft_ms' THEN total END) AS ttft_total,
           MAX(CASE WHEN metric = 'ttft_ms' THEN b50 END) AS t50,
           MAX(CASE WHEN metric = 'ttft_ms' THEN b95 END) AS t95
    FROM p
    GROUP BY model
)
SELECT
    model,
    requests,
    ROUND(2 * POWER(1.02, l50) / 2.02, 1) AS latency_p50_ms,
    ROUND(2 * POWER(1.02, l95) / 2.02, 1) AS latency_p95_ms,
    ROUND(2 * POWER(1.02, l99) / 2.02, 1) AS latency_p99_ms,
    COALESCE(ttft_total, 0) AS ttft_samples,
    ROUND(2 * POWER(1.02, t50) / 2.02, 1) AS ttft_p50_ms,
    ROUND(2 * POWER(1.02, t95) / 2.02, 1) AS ttft_p95_ms
FROM w
WHERE requests IS NOT NULL
ORDER BY model
