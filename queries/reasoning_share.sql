-- purpose: Reasoning tokens as a share of completion tokens and of cost, by model.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: model (model as served), price_model (price catalog entry matched, NULL if none), requests (attempts), reasoning_requests (attempts with reasoning tokens > 0), completion_tokens (output tokens, reasoning included), reasoning_tokens (hidden reasoning tokens), reasoning_token_share (reasoning / completion tokens), reasoning_usd_per_m (price used for reasoning tokens: catalog reasoning price, else output price), reasoning_cost_usd (reasoning tokens x that price), cost_usd (actual spend), reasoning_cost_share (reasoning cost / actual spend)
-- notes: price match as in cache_savings (name after the first "/", exact name preferred); reasoning cost is NULL without a catalog entry.
WITH m AS (
    SELECT model,
           COUNT(*) AS requests,
           SUM(CASE WHEN reasoning_tokens > 0 THEN 1 ELSE 0 END) AS reasoning_requests,
           SUM(COALESCE(completion_tokens, 0)) AS completion_tokens,
           SUM(COALESCE(reasoning_tokens, 0)) AS reasoning_tokens,
           COALESCE(CAST(SUM(cost_usd) AS DOUBLE), 0) AS cost
    FROM requests
    WHERE ts >= $since AND ts < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY model
),
-- every catalog entry with the same bare name (after the first "/"), best first; m is referenced once
pm AS (
    SELECT m.*, p.model AS price_model, COALESCE(p.reasoning, p.output) AS reasoning_price,
           ROW_NUMBER() OVER (
               PARTITION BY m.model
               ORDER BY CASE WHEN LOWER(p.model) = LOWER(m.model) THEN 1
                             WHEN STRPOS(p.model, '/') = 0 THEN 2
                             ELSE 3 END,
                        p.model) AS rn
    FROM m
    LEFT JOIN prices p
      ON LOWER(CASE WHEN STRPOS(p.model, '/') > 0 THEN SUBSTR(p.model, STRPOS(p.model, '/') + 1) ELSE p.model END)
       = LOWER(CASE WHEN STRPOS(m.model, '/') > 0 THEN SUBSTR(m.model, STRPOS(m.model, '/') + 1) ELSE m.model END)
),
s AS (
    SELECT pm.*,
           CAST(reasoning_tokens AS DOUBLE) * reasoning_price / 1000000.0 AS reasoning_cost
    FROM pm
    WHERE rn = 1
)
SELECT
    model, price_model, requests, reasoning_requests, completion_tokens, reasoning_tokens,
    ROUND(CAST(reasoning_tokens AS DOUBLE) / NULLIF(completion_tokens, 0), 6) AS reasoning_token_share,
    reasoning_price AS reasoning_usd_per_m,
    ROUND(reasoning_cost, 6) AS reasoning_cost_usd,
    ROUND(cost, 6) AS cost_usd,
    ROUND(reasoning_cost / NULLIF(cost, 0), 6) AS reasoning_cost_share
FROM s
ORDER BY reasoning_cost_usd DESC NULLS LAST, model
