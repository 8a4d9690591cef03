-- purpose: Cost and quality per routing policy version, to see what a routing change did.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: policy_version (policy that chose the model; NULL = traffic not routed by a switchyard policy), requests (attempts), tasks (distinct tasks), models (distinct models), routes (distinct policy rules that fired), cost_usd (spend), cost_per_request (USD per attempt), error_rate (share of failed attempts: status outside 2xx, or an error without a status), samples (quality feedback rows), quality (mean quality feedback), first_seen (first attempt under this version), last_seen (last attempt under this version)
-- notes: compare rows with the same task mix (use $task) before reading a quality or cost change as the policy's effect.
--        Read from the rollups, request times at hour resolution: attempts, spend, errors and first/last attempt from
--        requests_hourly, quality from quality_hourly (feedback joined to its request at ingest; feedback dated before
--        $since_date not counted).
WITH v AS (
    SELECT policy_version,
           SUM(requests) AS requests,
           COUNT(DISTINCT task) AS tasks,
           COUNT(DISTINCT model) AS models,
           COUNT(DISTINCT route) AS routes,
           COALESCE(CAST(SUM(cost_usd) AS DOUBLE), 0) AS cost,
           SUM(errors) AS errors,
           MIN(first_ts) AS first_seen,
           MAX(last_ts) AS last_seen
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY policy_version
),
q AS (
    SELECT policy_version, SUM(samples) AS n, CAST(SUM(value_sum) AS DOUBLE) AS sum_v
    FROM quality_hourly
    WHERE metric = 'quality'
      AND ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND feedback_date >= $since_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY policy_version
)
SELECT
    v.policy_version, v.requests, v.tasks, v.models, v.routes,
    ROUND(v.cost, 6) AS cost_usd,
    ROUND(v.cost / v.requests, 8) AS cost_per_request,
    ROUND(CAST(v.errors AS DOUBLE) / v.requests, 6) AS error_rate,
    COALESCE(q.n, 0) AS samples,
    ROUND(q.sum_v / NULLIF(q.n, 0), 6) AS quality,
    v.first_seen, v.last_seen
FROM v
LEFT JOIN q ON (q.policy_version IS NOT DISTINCT FROM v.policy_version)
ORDER BY v.first_seen, v.policy_version NULLS LAST
