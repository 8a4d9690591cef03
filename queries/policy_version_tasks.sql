-- purpose: Per routing policy version, task and model: attempts, spend and quality feedback, to compare versions on the same task mix and to tell exploration traffic apart.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: policy_version (policy that chose the model; NULL = not routed by a switchyard policy), task (application task), model (model that served the attempt), requests (attempts), cost_usd (spend), samples (quality feedback rows), quality_sum (sum of quality feedback values)
-- notes: the What changed page joins these rows with the stored policy files (policies/VERSION.json) to split exploration targets from the rest.
--        Read from the rollups, request times at hour resolution: attempts and spend from requests_hourly, quality from
--        quality_hourly (feedback joined to its request at ingest; feedback dated before $since_date not counted).
WITH r AS (
    SELECT policy_version, task, model,
           SUM(requests) AS requests,
           COALESCE(CAST(SUM(cost_usd) AS DOUBLE), 0) AS cost_usd
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY policy_version, task, model
),
q AS (
    SELECT policy_version, task, model, SUM(samples) AS n, CAST(SUM(value_sum) AS DOUBLE) AS sum_v
    FROM quality_hourly
    WHERE metric = 'quality'
      AND ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND feedback_date >= $since_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY policy_version, task, model
)
SELECT r.policy_version, r.task, r.model, r.requests, r.cost_usd,
       COALESCE(q.n, 0) AS samples,
       q.sum_v AS quality_sum
FROM r
LEFT JOIN q ON (q.policy_version IS NOT DISTINCT FROM r.policy_version)
           AND q.task = r.task AND q.model = r.model
ORDER BY r.policy_version NULLS FIRST, r.task, r.model
