-- purpose: Traffic per minute and routing policy version over the last 30 minutes of the window that saw traffic, to watch a policy change take over live traffic.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: minute (start of the minute, UTC), policy_version (policy that chose the model; NULL = not routed by a switchyard policy), requests (attempts), cost_per_request (USD per attempt)
-- notes: the dashboards ask for since=30m; rows not yet flushed to Parquet are included.
WITH r AS (
    SELECT ts, policy_version, cost_usd
    FROM requests
    WHERE ts >= $since AND ts < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
),
last AS (SELECT MAX(ts) - INTERVAL '30 minutes' AS start FROM r)
SELECT date_trunc('minute', r.ts) AS minute,
       r.policy_version,
       COUNT(*) AS requests,
       ROUND(COALESCE(CAST(SUM(r.cost_usd) AS DOUBLE), 0) / COUNT(*), 8) AS cost_per_request
FROM r, last
WHERE r.ts > last.start
GROUP BY date_trunc('minute', r.ts), r.policy_version
ORDER BY minute, r.policy_version NULLS FIRST
