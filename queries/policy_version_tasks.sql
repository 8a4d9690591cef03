-- purpose: Per routing policy version, task and model: attempts, spend and quality feedback, to compare versions on the same task mix and to tell exploration traffic apart.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: policy_version (policy that chose the model; NULL = not routed by a switchyard policy), task (application task), model (model that served the attempt), requests (attempts), cost_usd (spend), samples (quality feedback rows), quality_sum (sum of quality feedback values)
-- notes: the What changed page joins these rows with the stored policy files (policies/VERSION.json) to split exploration targets from the rest.
WITH r AS (
    SELECT request_id, policy_version, task, model, cost_usd
    FROM requests
    WHERE ts >= $since AND ts < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
),
f AS (
    SELECT request_id, COUNT(*) AS n, SUM(value) AS sum_v
    FROM feedback
    WHERE metric = 'quality'
      AND date >= $since_date AND date <= $until_date
    GROUP BY request_id
)
SELECT r.policy_version, r.task, r.model,
       COUNT(*) AS requests,
       COALESCE(CAST(SUM(r.cost_usd) AS DOUBLE), 0) AS cost_usd,
       COALESCE(SUM(f.n), 0) AS samples,
       SUM(f.sum_v) AS quality_sum
FROM r
LEFT JOIN f ON f.request_id = r.request_id
GROUP BY r.policy_version, r.task, r.model
ORDER BY r.policy_version NULLS FIRST, r.task, r.model
