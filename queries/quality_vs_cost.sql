-- purpose: Quality against cost per request for every task and model: the picture the recommender acts on.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: task, model, requests (attempts), cost_per_request_usd (mean exact cost of priced attempts), quality (mean quality feedback), samples (feedback count)
WITH r AS (
    SELECT request_id, task, model, cost_usd
    FROM requests
    WHERE date >= $since_date AND date <= $until_date
      AND ts >= $since AND ts < $until
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
),
q AS (
    SELECT request_id, AVG(value) AS value
    FROM feedback
    WHERE metric = 'quality' AND date >= $since_date
    GROUP BY request_id
)
SELECT
    r.task,
    r.model,
    COUNT(*) AS requests,
    ROUND(CAST(AVG(r.cost_usd) AS DOUBLE), 8) AS cost_per_request_usd,
    ROUND(AVG(q.value), 4) AS quality,
    COUNT(q.value) AS samples
FROM r
LEFT JOIN q ON q.request_id = r.request_id
GROUP BY r.task, r.model
ORDER BY r.task, r.model
