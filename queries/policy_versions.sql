-- purpose: Cost and quality per routing policy version, to see what a routing change did.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: policy_version (policy that chose the model; NULL = traffic not routed by a switchyard policy), requests (attempts), tasks (distinct tasks), models (distinct models), routes (distinct policy rules that fired), cost_usd (spend), cost_per_request (USD per attempt), error_rate (share of non-200 attempts), samples (quality feedback rows), quality (mean quality feedback), first_seen (first attempt under this version), last_seen (last attempt under this version)
-- notes: compare rows with the same task mix (use $task) before reading a quality or cost change as the policy's effect.
WITH r AS (
    SELECT request_id, ts, policy_version, route, task, model, status, cost_usd
    FROM requests
    WHERE ts >= $since AND ts < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
),
-- per-request feedback sums: one left join keeps request counts and costs exact
f AS (
    SELECT request_id, COUNT(*) AS n, SUM(value) AS sum_v
    FROM feedback
    WHERE metric = 'quality'
      AND date >= $since_date AND date <= $until_date
    GROUP BY request_id
),
v AS (
    SELECT r.policy_version,
           COUNT(*) AS requests,
           COUNT(DISTINCT r.task) AS tasks,
           COUNT(DISTINCT r.model) AS models,
           COUNT(DISTINCT r.route) AS routes,
           COALESCE(CAST(SUM(r.cost_usd) AS DOUBLE), 0) AS cost,
           SUM(CASE WHEN r.status <> 200 THEN 1 ELSE 0 END) AS errors,
           COALESCE(SUM(f.n), 0) AS samples,
           SUM(f.sum_v) AS sum_v,
           MIN(r.ts) AS first_seen,
           MAX(r.ts) AS last_seen
    FROM r
    LEFT JOIN f ON f.request_id = r.request_id
    GROUP BY r.policy_version
)
SELECT
    policy_version, requests, tasks, models, routes,
    ROUND(cost, 6) AS cost_usd,
    ROUND(cost / requests, 8) AS cost_per_request,
    ROUND(CAST(errors AS DOUBLE) / requests, 6) AS error_rate,
    samples,
    ROUND(sum_v / NULLIF(samples, 0), 6) AS quality,
    first_seen, last_seen
FROM v
ORDER BY first_seen, policy_version NULLS LAST
