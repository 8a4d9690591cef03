-- purpose: Prompt-cache savings by model: cached tokens and USD saved versus paying the full input price for them.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: model (model as served), price_model (price catalog entry matched, NULL if none), requests (attempts), prompt_tokens (input tokens, cached included), cached_tokens (input tokens read from cache), cache_hit_share (cached / prompt tokens), cache_write_tokens (tokens written to cache), input_usd_per_m (catalog input price, USD per 1M), cached_input_usd_per_m (catalog cached-input price), cache_write_usd_per_m (catalog cache-write price, NULL = input price), gross_savings_usd (cached tokens x (input - cached input price)), write_premium_usd (cache-write tokens x (cache write - input price)), net_savings_usd (gross savings - write premium), cost_usd (actual spend), savings_share (net savings / (actual spend + net savings): how much cheaper than without caching)
-- notes: catalog names differ from served names ("openai/gpt-4o" vs "gpt-4o", "google/gemini-2.5-flash" vs "gemini/gemini-2.5-flash"),
--        so the match is on the name after the first "/", case-insensitive, preferring an exact name, then the bare name, then the
--        alphabetically first other provider prefix. Dated snapshots ("...-2024-08-06") only match their own catalog entry.
--        Savings are NULL when the model has no catalog entry or no cached-input price.
--        Read from requests_hourly: request times at hour resolution.
WITH m AS (
    SELECT model,
           SUM(requests) AS requests,
           SUM(prompt_tokens) AS prompt_tokens,
           SUM(cached_tokens) AS cached_tokens,
           SUM(cache_write_tokens) AS cache_write_tokens,
           COALESCE(CAST(SUM(cost_usd) AS DOUBLE), 0) AS cost
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY model
),
pm AS (
    SELECT m.*, p.model AS price_model, p.input, p.cached_input, p.cache_write,
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
           CAST(cached_tokens AS DOUBLE) * (input - cached_input) / 1000000.0 AS gross,
           CASE WHEN cache_write_tokens = 0 THEN 0.0
                ELSE CAST(cache_write_tokens AS DOUBLE) * (COALESCE(cache_write, input) - input) / 1000000.0 END AS premium
    FROM pm
    WHERE rn = 1
)
SELECT
    model, price_model, requests, prompt_tokens, cached_tokens,
    ROUND(CAST(cached_tokens AS DOUBLE) / NULLIF(prompt_tokens, 0), 6) AS cache_hit_share,
    cache_write_tokens,
    input AS input_usd_per_m,
    cached_input AS cached_input_usd_per_m,
    cache_write AS cache_write_usd_per_m,
    ROUND(gross, 6) AS gross_savings_usd,
    ROUND(premium, 6) AS write_premium_usd,
    ROUND(gross - premium, 6) AS net_savings_usd,
    ROUND(cost, 6) AS cost_usd,
    ROUND((gross - premium) / NULLIF(cost + gross - premium, 0), 6) AS savings_share
FROM s
ORDER BY net_savings_usd DESC NULLS LAST, model
