-- purpose: Unit cost by model: USD per 1,000 requests and per 1M tokens.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: model (model as served), provider (provider), requests (attempts), priced_requests (attempts with a known cost_usd), tokens (prompt + completion), cost_usd (USD, 6 decimals), usd_per_1k_requests (cost per 1,000 priced attempts), usd_per_1m_tokens (cost per million tokens of priced attempts), usd_per_1m_prompt_tokens (cost per million prompt tokens, i.e. input-weighted view), avg_tokens_per_request (mean prompt + completion tokens)
-- notes: unit costs use only attempts whose cost_usd is known, so unpriced rows do not dilute them.
WITH b AS (
    SELECT model, provider, cost_usd,
           COALESCE(prompt_tokens, 0) AS pt,
           COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0) AS tok
    FROM requests
    WHERE ts >= $since AND ts < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
),
m AS (
    SELECT model, provider,
           COUNT(*) AS requests,
           COUNT(cost_usd) AS priced_requests,
           SUM(tok) AS tokens,
           SUM(CASE WHEN cost_usd IS NULL THEN 0 ELSE tok END) AS priced_tokens,
           SUM(CASE WHEN cost_usd IS NULL THEN 0 ELSE pt END) AS priced_prompt_tokens,
           COALESCE(CAST(SUM(cost_usd) AS DOUBLE), 0) AS cost
    FROM b
    GROUP BY model, provider
)
SELECT
    model, provider, requests, priced_requests, tokens,
    ROUND(cost, 6) AS cost_usd,
    ROUND(cost * 1000.0 / NULLIF(priced_requests, 0), 6) AS usd_per_1k_requests,
    ROUND(cost * 1000000.0 / NULLIF(CAST(priced_tokens AS DOUBLE), 0), 6) AS usd_per_1m_tokens,
    ROUND(cost * 1000000.0 / NULLIF(CAST(priced_prompt_tokens AS DOUBLE), 0), 6) AS usd_per_1m_prompt_tokens,
    ROUND(CAST(tokens AS DOUBLE) / requests, 2) AS avg_tokens_per_request
FROM m
ORDER BY model, provider NULLS LAST
