-- purpose: Error, retry and fallback rates by model and provider.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: model (model as served), provider (provider), attempts (rows = request attempts), errors (attempts with a non-200 status), error_rate (errors / attempts), rate_limited (status 429), server_errors (status 5xx), retries (attempts with attempt > 1 on this model), retry_rate (retries / attempts), fallbacks_in (attempts on this model whose first attempt, parent_id, was on a different model), fallback_in_rate (fallbacks_in / attempts), fallbacks_out (attempts on this model that were followed by a later attempt on a different model), fallback_out_rate (fallbacks_out / attempts)
-- notes: parent_id is the first attempt's request_id; a fallback is a later attempt whose model differs from the first attempt's.
--        Attempts with a NULL status are not counted as errors. Parents that fall before $since are not seen (window edge).
WITH r AS (
    SELECT request_id, model, provider, status, attempt, parent_id
    FROM requests
    WHERE ts >= $since AND ts < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
),
-- later attempts (few) joined to their first attempt; only fallbacks (model changed) kept
fb AS (
    SELECT c.model AS to_model, c.provider AS to_provider, p.model AS from_model, p.provider AS from_provider,
           -- a first attempt followed by several fallback attempts counts once in fallbacks_out
           ROW_NUMBER() OVER (PARTITION BY c.parent_id ORDER BY c.attempt, c.request_id) AS nth
    FROM (SELECT request_id, parent_id, attempt, model, provider FROM r WHERE parent_id IS NOT NULL) c
    JOIN r p ON p.request_id = c.parent_id
    WHERE c.model <> p.model
),
-- one row per (fallback, side) so fb is referenced once (engines that inline CTEs would redo the join)
fb_by_model AS (
    SELECT CASE WHEN s.side = 'in' THEN fb.to_model ELSE fb.from_model END AS model,
           CASE WHEN s.side = 'in' THEN fb.to_provider ELSE fb.from_provider END AS provider,
           SUM(CASE WHEN s.side = 'in' THEN 1 ELSE 0 END) AS fallbacks_in,
           SUM(CASE WHEN s.side = 'out' AND fb.nth = 1 THEN 1 ELSE 0 END) AS fallbacks_out
    FROM fb CROSS JOIN (VALUES ('in'), ('out')) AS s(side)
    GROUP BY 1, 2
),
m AS (
    SELECT model, provider,
           COUNT(*) AS attempts,
           SUM(CASE WHEN status <> 200 THEN 1 ELSE 0 END) AS errors,
           SUM(CASE WHEN status = 429 THEN 1 ELSE 0 END) AS rate_limited,
           SUM(CASE WHEN status >= 500 AND status < 600 THEN 1 ELSE 0 END) AS server_errors,
           SUM(CASE WHEN attempt > 1 THEN 1 ELSE 0 END) AS retries
    FROM r
    WHERE ($model IS NULL OR model = $model)
    GROUP BY model, provider
),
j AS (
    SELECT m.*, COALESCE(f.fallbacks_in, 0) AS fallbacks_in, COALESCE(f.fallbacks_out, 0) AS fallbacks_out
    FROM m
    LEFT JOIN fb_by_model f ON f.model = m.model AND COALESCE(f.provider, '') = COALESCE(m.provider, '')
)
SELECT
    model, provider, attempts,
    errors, ROUND(CAST(errors AS DOUBLE) / attempts, 6) AS error_rate,
    rate_limited, server_errors,
    retries, ROUND(CAST(retries AS DOUBLE) / attempts, 6) AS retry_rate,
    fallbacks_in, ROUND(CAST(fallbacks_in AS DOUBLE) / attempts, 6) AS fallback_in_rate,
    fallbacks_out, ROUND(CAST(fallbacks_out AS DOUBLE) / attempts, 6) AS fallback_out_rate
FROM j
ORDER BY model, provider NULLS LAST
