-- purpose: Day-over-day spend spikes per API key and task: days costing more than 2x the trailing 7-day mean and more than $0.10, most severe first.
-- params: $since, $until, $since_date, $until_date, $task, $model
-- columns: day (UTC date of the spike), key_id (API key, '(none)' when NULL), team_id (team of the key on that day), task (task label), requests (attempts that day), cost_usd (spend that day), trailing_mean_usd (mean daily spend over the previous 7 days, days without traffic count as 0), ratio (cost / trailing mean; NULL when the trailing mean is 0, i.e. new spend), excess_usd (cost - trailing mean: the severity order)
-- notes: read from the hourly rollup (requests_hourly), so the window applies at hour resolution. Calendar UTC days; a day is judged only when the window holds its 7 previous days (counted from the first day with
--        traffic), so the first 7 days only serve as history. Thresholds (2x, $0.10 floor, 7 days) are literals below.
WITH daily AS (
    SELECT CAST(date AS VARCHAR) AS day,
           COALESCE(key_id, '(none)') AS key_id,
           task,
           MAX(team_id) AS team_id,
           SUM(requests) AS requests,
           COALESCE(CAST(SUM(cost_usd) AS DOUBLE), 0) AS cost
    FROM requests_hourly
    WHERE ts_hour >= $since AND ts_hour < $until
      AND date >= $since_date AND date <= $until_date
      AND ($task IS NULL OR task = $task)
      AND ($model IS NULL OR model = $model)
    GROUP BY date, COALESCE(key_id, '(none)'), task
),
numbered AS (
    SELECT daily.*,
           CAST(date_part('epoch', CAST(day AS DATE)) / 86400 AS BIGINT) AS day_no
    FROM daily
),
-- a RANGE frame over day numbers: days without traffic are simply absent and add 0 to the 7-day sum
w AS (
    SELECT numbered.*,
           COALESCE(SUM(cost) OVER (PARTITION BY key_id, task ORDER BY day_no
                                    RANGE BETWEEN 7 PRECEDING AND 1 PRECEDING), 0) / 7.0 AS trailing_mean,
           MIN(day_no) OVER () AS first_day_no
    FROM numbered
)
SELECT
    day, key_id, team_id, task, requests,
    ROUND(cost, 6) AS cost_usd,
    ROUND(trailing_mean, 6) AS trailing_mean_usd,
    ROUND(cost / NULLIF(trailing_mean, 0), 4) AS ratio,
    ROUND(cost - trailing_mean, 6) AS excess_usd
FROM w
WHERE day_no >= first_day_no + 7
  AND cost > 0.10
  AND cost > 2.0 * trailing_mean
ORDER BY excess_usd DESC, day, key_id, task
