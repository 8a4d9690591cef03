-- purpose: The recommender's evidence per task x model: traffic, success, exact cost per request, quality feedback and p95 latency.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: task (task label), model (model as served), requests (attempts), success_rate (share of 2xx attempts), cost_per_request (mean exact cost of priced attempts, USD), samples (requests with quality feedback), quality (mean quality, a request's feedback averaged first), quality_var (sample variance of quality), binary (every quality value is 0 or 1), p95_latency_ms (95th percentile latency of successful attempts)
WITH r AS (
    SELECT request_id, task, model, cost_usd, latency_ms, status
    FROM requests
    WHERE ts >= $since AND ts < $until
      AND date >= $since_date AND date <= $until_date
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
    ROUND(CAST(SUM(CASE WHEN r.status BETWEEN 200 AND 299 OR r.status IS NULL THEN 1 ELSE 0 END) AS DOUBLE) / COUNT(*), 6) AS success_rate,
    ROUND(CAST(AVG(r.cost_usd) AS DOUBLE), 10) AS cost_per_request,
    COUNT(q.value) AS samples,
    ROUND(AVG(q.value), 6) AS quality,
    ROUND(VAR_SAMP(q.value), 8) AS quality_var,
    SUM(CASE WHEN q.value IS NULL OR q.value = 0 OR q.value = 1 THEN 0 ELSE 1 END) = 0 AS binary,
    ROUND(percentile_cont(0.95) WITHIN GROUP (ORDER BY CASE WHEN r.status BETWEEN 200 AND 299 THEN r.latency_ms END), 1) AS p95_latency_ms
FROM r
LEFT JOIN q ON q.request_id = r.request_id
GROUP BY r.task, r.model
ORDER BY r.task, r.model
