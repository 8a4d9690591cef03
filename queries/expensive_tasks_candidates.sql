-- purpose: The 10 most expensive tasks, each with cheaper candidate models that have traffic and quality feedback on that task, compared with the task's current main model.
-- params: $since, $until, $since_date, $until_date, $task
-- columns: task (task label), task_cost_usd (task's total spend), task_requests (task's attempts), main_model (model serving the most attempts of the task), main_cost_per_request (USD per attempt on the main model), main_quality (main model's mean quality on the task, NULL without feedback), main_samples (its feedback rows), candidate_model (a model with a lower cost per attempt on this task), candidate_requests (its attempts on the task), candidate_samples (its feedback rows on the task), candidate_cost_per_request (USD per attempt), candidate_quality (its mean quality on the task), cost_ratio (candidate / main cost per attempt), quality_delta (candidate - main quality), projected_savings_usd ((main - candidate cost per attempt) x main model's attempts, i.e. if all main traffic had moved)
-- notes: candidates need >= 10 attempts and >= 10 quality feedback rows on the task; tasks without any candidate do not appear.
--        Read from the hourly rollups (requests_hourly, quality_hourly: feedback joined to its request at ingest), so the window
--        applies to request times at hour resolution; feedback dated before $since_date is not counted.
WITH r AS (
    SELECT task, model,
           SUM(requests) AS requests,
           CAST(SUM(cost_usd) AS DOUBLE) AS cost
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
    GROUP BY task, model
),
q AS (
    SELECT task, model, SUM(samples) AS n, CAST(SUM(value_sum) AS DOUBLE) AS sum_v
    FROM quality_hourly
    WHERE metric = 'quality'
      AND ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND feedback_date >= $since_date
      AND ($task IS NULL OR task = $task)
    GROUP BY task, model
),
tm AS (
    SELECT r.task, r.model, r.requests, r.cost,
           COALESCE(q.n, 0) AS samples,
           q.sum_v / NULLIF(q.n, 0) AS quality
    FROM r
    LEFT JOIN q ON q.task = r.task AND q.model = r.model
),
stats AS (
    SELECT tm.task, tm.model, tm.requests, tm.cost,
           tm.cost / tm.requests AS cpr,
           tm.samples, tm.quality
    FROM tm
),
-- main model = most attempts on the task (ties: higher cost, then name); window functions
-- instead of a self-join so the scan is not repeated on engines that inline CTEs
w AS (
    SELECT stats.*,
           SUM(cost) OVER (PARTITION BY task) AS task_cost,
           SUM(requests) OVER (PARTITION BY task) AS task_requests,
           ROW_NUMBER() OVER (PARTITION BY task ORDER BY requests DESC, cost DESC, model) AS rn,
           FIRST_VALUE(model) OVER (PARTITION BY task ORDER BY requests DESC, cost DESC, model) AS main_model,
           FIRST_VALUE(requests) OVER (PARTITION BY task ORDER BY requests DESC, cost DESC, model) AS main_requests,
           FIRST_VALUE(cpr) OVER (PARTITION BY task ORDER BY requests DESC, cost DESC, model) AS main_cpr,
           FIRST_VALUE(quality) OVER (PARTITION BY task ORDER BY requests DESC, cost DESC, model) AS main_quality,
           FIRST_VALUE(samples) OVER (PARTITION BY task ORDER BY requests DESC, cost DESC, model) AS main_samples
    FROM stats
),
ranked AS (
    SELECT w.*, DENSE_RANK() OVER (ORDER BY task_cost DESC, task) AS task_rank
    FROM w
)
SELECT
    task,
    ROUND(task_cost, 6) AS task_cost_usd,
    task_requests,
    main_model,
    ROUND(main_cpr, 8) AS main_cost_per_request,
    ROUND(main_quality, 4) AS main_quality,
    main_samples,
    model AS candidate_model,
    requests AS candidate_requests,
    samples AS candidate_samples,
    ROUND(cpr, 8) AS candidate_cost_per_request,
    ROUND(quality, 4) AS candidate_quality,
    ROUND(cpr / NULLIF(main_cpr, 0), 4) AS cost_ratio,
    ROUND(quality - main_quality, 4) AS quality_delta,
    ROUND((main_cpr - cpr) * main_requests, 6) AS projected_savings_usd
FROM ranked
WHERE task_rank <= 10
  AND rn > 1
  AND cpr < main_cpr
  AND requests >= 10
  AND samples >= 10
ORDER BY task_cost_usd DESC, task, candidate_cost_per_request, candidate_model
