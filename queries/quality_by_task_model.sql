-- purpose: Quality by task x model: feedback samples, mean score and a 95% confidence interval.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: task (task label), model (model as served), requests (attempts in the window), samples (quality feedback rows joined to those requests), mean_quality (mean feedback value, 0..1), ci_low (lower bound of the 95% interval), ci_high (upper bound of the 95% interval), ci_method (wilson when every sample is exactly 0 or 1, normal otherwise, none when too few samples)
-- notes: read from the hourly rollups (requests_hourly, quality_hourly: feedback joined to its request at ingest), so the window
--        applies to request times at hour resolution. wilson = Wilson score interval, z = 1.96; normal = mean +/- 1.96 * sd / sqrt(n), clipped to [0, 1]; needs n >= 2.
--        Feedback is read from partitions $since_date..$until_date, so feedback arriving after $until_date is not counted.
WITH r AS (
    SELECT task, model, SUM(requests) AS requests
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY task, model
),
-- feedback rows of those requests, already summed per request hour and feedback date
q AS (
    SELECT task, model,
           SUM(samples) AS n, CAST(SUM(value_sum) AS DOUBLE) AS sum_v, CAST(SUM(value_sq_sum) AS DOUBLE) AS sum_v2,
           SUM(non_binary) AS non_binary
    FROM quality_hourly
    WHERE metric = 'quality'
      AND ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND feedback_date >= $since_date AND feedback_date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY task, model
),
t AS (
    SELECT r.task, r.model, r.requests,
           COALESCE(q.n, 0) AS n, q.sum_v, q.sum_v2,
           COALESCE(q.non_binary, 0) AS non_binary
    FROM r LEFT JOIN q ON q.task = r.task AND q.model = r.model
),
s AS (
    SELECT task, model, requests, n, non_binary,
           sum_v / NULLIF(n, 0) AS mean,
           CASE WHEN n >= 2 THEN SQRT(GREATEST((sum_v2 - sum_v * sum_v / n) / (n - 1), 0.0)) END AS sd
    FROM t
),
ci AS (
    SELECT
        task, model, requests, n, mean,
        CASE WHEN n = 0 THEN 'none' WHEN non_binary = 0 THEN 'wilson' WHEN n >= 2 THEN 'normal' ELSE 'none' END AS method,
        -- Wilson: (p + z^2/2n -/+ z * sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z^2 = 3.8416
        (mean + 3.8416 / (2.0 * n)) / (1.0 + 3.8416 / n) AS w_center,
        1.96 * SQRT(GREATEST(mean * (1.0 - mean), 0.0) / n + 3.8416 / (4.0 * n * n)) / (1.0 + 3.8416 / n) AS w_half,
        1.96 * sd / SQRT(CAST(n AS DOUBLE)) AS n_half
    FROM s
)
SELECT
    task, model, requests,
    n AS samples,
    ROUND(mean, 6) AS mean_quality,
    ROUND(CASE method WHEN 'wilson' THEN w_center - w_half
                      WHEN 'normal' THEN GREATEST(mean - n_half, 0.0) END, 6) AS ci_low,
    ROUND(CASE method WHEN 'wilson' THEN w_center + w_half
                      WHEN 'normal' THEN LEAST(mean + n_half, 1.0) END, 6) AS ci_high,
    method AS ci_method
FROM ci
ORDER BY task, model
