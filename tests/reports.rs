//! The report set over a fixed generated dataset: snapshots of every report, the key figures
//! checked against independent computations over the raw rows, the rollups against the raw
//! table and the window parameters.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::TimeZone;
use switchyard::reports::Window;

use crate::common::{Server, api_query, client, generated_store, num, query_csv, run};

/// The window every snapshot uses: the whole fixed dataset.
const SINCE: &str = "2026-11-10";
const UNTIL: &str = "2026-11-20";

/// A store of 20,000 generated requests over 10 days (seed 5), built once per test run.
pub(crate) fn dataset() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        generated_store(
            &root,
            "data",
            &[
                "--requests",
                "20000",
                "--days",
                "10",
                "--seed",
                "5",
                "--end",
                "2026-11-20T00:00:00Z",
            ],
        )
    })
}

fn report_csv(name: &str, extra: &[&str]) -> String {
    let data = dataset().to_str().unwrap();
    let mut args = vec![
        "report",
        name,
        "--data-dir",
        data,
        "--since",
        SINCE,
        "--until",
        UNTIL,
        "--format",
        "csv",
    ];
    args.extend_from_slice(extra);
    let out = run(&args, &[]);
    assert!(
        out.status.success(),
        "report {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Rows of a CSV answer as maps from column name to cell (no quoted commas in our data).
fn rows(csv: &str) -> Vec<HashMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

fn report_names() -> Vec<String> {
    let out = run(&["report", "--list"], &[]);
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// The column names a report's header comment promises, in order.
fn promised_columns(columns: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in columns.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
            }
            _ if depth == 0 => cur.push(c),
            _ => {}
        }
    }
    out.push(cur.trim().to_string());
    out
}

#[test]
fn every_report_matches_its_snapshot_and_its_header() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/reports");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let names = report_names();
    assert!(names.len() >= 14, "{names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let report = switchyard::reports::get(name).unwrap();
        assert!(!report.purpose.is_empty(), "{name}: no purpose line");
        assert!(report.params.contains("$since"), "{name}: params line");
        let got = report_csv(name, &[]);
        let header: Vec<String> = got
            .lines()
            .next()
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        assert_eq!(
            header,
            promised_columns(&report.columns),
            "{name}: the header comment's columns differ from the answer's"
        );
        assert!(
            got.lines().count() > 1 || name == "policy_versions",
            "{name} returned no rows on the generated dataset"
        );
        let path = dir.join(format!("{name}.csv"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == got => {}
            Ok(want) => {
                let diff = want
                    .lines()
                    .zip(got.lines())
                    .enumerate()
                    .find(|(_, (a, b))| a != b)
                    .map(|(i, (a, b))| format!("line {}: want {a:?}\n got {b:?}", i + 1))
                    .unwrap_or_else(|| "lengths differ".into());
                failures.push(format!("{name}: {diff}"));
            }
            Err(_) => failures.push(format!(
                "{name}: no snapshot at {} (run with UPDATE_SNAPSHOTS=1)",
                path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Raw rows of the dataset through plain SQL projections (no aggregation in the engine).
struct RawRow {
    day: String,
    task: String,
    model: String,
    cost: Option<rust_decimal::Decimal>,
    latency: Option<f64>,
    status: Option<i64>,
    request_id: String,
}

fn raw_rows() -> Vec<RawRow> {
    query_csv(
        dataset(),
        "SELECT date, task, model, cost_usd, latency_ms, status, request_id FROM requests",
    )
    .into_iter()
    .map(|r| RawRow {
        day: r[0].clone(),
        task: r[1].clone(),
        model: r[2].clone(),
        cost: (!r[3].is_empty()).then(|| r[3].parse().unwrap()),
        latency: (!r[4].is_empty()).then(|| r[4].parse().unwrap()),
        status: (!r[5].is_empty()).then(|| r[5].parse().unwrap()),
        request_id: r[6].clone(),
    })
    .collect()
}

#[test]
fn spend_by_model_day_equals_sums_of_the_raw_rows() {
    let mut want: BTreeMap<(String, String), (u64, rust_decimal::Decimal)> = BTreeMap::new();
    for r in raw_rows() {
        let e = want.entry((r.day, r.model)).or_default();
        e.0 += 1;
        e.1 += r.cost.unwrap_or_default();
    }
    let got = rows(&report_csv("spend_by_model_day", &[]));
    assert_eq!(got.len(), want.len());
    for g in got {
        let key = (g["day"].clone(), g["model"].clone());
        let (n, cost) = want[&key];
        assert_eq!(g["requests"].parse::<u64>().unwrap(), n, "{key:?}");
        let cost: f64 = cost.to_string().parse().unwrap();
        let reported: f64 = g["cost_usd"].parse().unwrap();
        assert!(
            (reported - cost).abs() < 1e-6,
            "{key:?}: {reported} vs {cost}"
        );
    }
}

/// Linear-interpolation percentile (what `percentile_cont` computes).
fn percentile_cont(sorted: &[f64], p: f64) -> f64 {
    let rank = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[test]
fn latency_p95_by_model_equals_the_percentile_of_the_raw_rows() {
    let mut by_model: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in raw_rows() {
        if r.status == Some(200)
            && let Some(l) = r.latency
        {
            by_model.entry(r.model).or_default().push(l);
        }
    }
    let got = rows(&report_csv("latency_by_model", &[]));
    assert_eq!(got.len(), by_model.len());
    for g in got {
        let mut v = by_model[&g["model"]].clone();
        v.sort_by(f64::total_cmp);
        let want = percentile_cont(&v, 0.95);
        let reported: f64 = g["latency_p95_ms"].parse().unwrap();
        // The report reads the hourly latency histograms: within 1% of a value near the rank.
        let near = percentile_cont(&v, 0.95 - 1.0 / v.len() as f64)
            ..=percentile_cont(&v, (0.95 + 1.0 / v.len() as f64).min(1.0));
        assert!(
            (reported - want).abs() <= want * 0.01 + 0.05
                || (*near.start() * 0.99 <= reported && reported <= *near.end() * 1.01),
            "{}: p95 {reported} vs exact {want}",
            g["model"]
        );
        assert_eq!(g["requests"].parse::<usize>().unwrap(), v.len());
    }
}

#[test]
fn recommend_inputs_p95_is_within_one_percent_of_the_exact_percentile() {
    let mut by_pair: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in raw_rows() {
        if r.status.is_some_and(|s| (200..300).contains(&s))
            && let Some(l) = r.latency
        {
            by_pair.entry((r.task, r.model)).or_default().push(l);
        }
    }
    let got = rows(&report_csv("recommend_inputs", &[]));
    let mut checked = 0;
    for g in got {
        let key = (g["task"].clone(), g["model"].clone());
        let Some(v) = by_pair.get_mut(&key) else {
            assert_eq!(g["p95_latency_ms"], "", "{key:?}: no successful attempt");
            continue;
        };
        v.sort_by(f64::total_cmp);
        let want = percentile_cont(v, 0.95);
        let reported: f64 = g["p95_latency_ms"].parse().unwrap();
        // Read from the histograms: each value within 1% of its bucket's midpoint.
        assert!(
            (reported - want).abs() <= want * 0.01 + 0.05,
            "{key:?}: p95 {reported} vs exact {want} over {} values",
            v.len()
        );
        checked += 1;
    }
    assert!(checked > 200, "only {checked} pairs");
}

#[test]
fn quality_by_task_model_equals_an_independent_join() {
    let feedback = query_csv(
        dataset(),
        "SELECT request_id, value FROM feedback WHERE metric = 'quality'",
    );
    let mut values: HashMap<String, Vec<f64>> = HashMap::new();
    for f in feedback {
        values
            .entry(f[0].clone())
            .or_default()
            .push(f[1].parse().unwrap());
    }
    let mut by_pair: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in raw_rows() {
        let e = by_pair.entry((r.task, r.model)).or_default();
        if let Some(v) = values.get(&r.request_id) {
            e.extend(v);
        }
    }
    let got = rows(&report_csv("quality_by_task_model", &[]));
    assert_eq!(got.len(), by_pair.len());
    let mut checked = 0;
    for g in got {
        let key = (g["task"].clone(), g["model"].clone());
        let v = &by_pair[&key];
        assert_eq!(g["samples"].parse::<usize>().unwrap(), v.len(), "{key:?}");
        if v.len() < 2 {
            continue;
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let binary = v.iter().all(|x| *x == 0.0 || *x == 1.0);
        let (lo, hi) = if binary {
            let z2 = 1.96f64 * 1.96;
            let center = (mean + z2 / (2.0 * n)) / (1.0 + z2 / n);
            let half =
                1.96 * (mean * (1.0 - mean) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
            (center - half, center + half)
        } else {
            let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let half = 1.96 * sd / n.sqrt();
            ((mean - half).max(0.0), (mean + half).min(1.0))
        };
        let close = |col: &str, want: f64| {
            let got: f64 = g[col].parse().unwrap();
            assert!((got - want).abs() < 2e-6, "{key:?} {col}: {got} vs {want}");
        };
        close("mean_quality", mean);
        close("ci_low", lo);
        close("ci_high", hi);
        checked += 1;
    }
    assert!(checked > 50, "only {checked} pairs had enough feedback");
}

/// The NDJSON of 6,000 generated requests over 3 days (and their feedback), written in `dir`.
fn generated(dir: &Path, seed: &str) -> String {
    let gen_path = dir.join("gen.ndjson");
    let out = run(
        &[
            "generate",
            "--requests",
            "6000",
            "--days",
            "3",
            "--seed",
            seed,
            "--out",
            gen_path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success());
    std::fs::read_to_string(&gen_path).unwrap()
}

#[test]
fn rollups_answer_what_the_raw_rows_answer_including_unflushed_rows() {
    // A server whose buffer holds some rows while the rest are in Parquet: the rollup views
    // must cover both, as the raw tables do.
    let dir = tempfile::tempdir().unwrap();
    let body = generated(dir.path(), "9");
    let lines: Vec<&str> = body.lines().collect();
    let half = lines.len() / 2;
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--max-buffer-rows",
            "1000000",
            "--flush-interval-ms",
            "600000",
        ],
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client();
        for chunk in [&lines[..half], &lines[half..]] {
            let r = c
                .post(server.url("/v1/logs"))
                .body(chunk.join("\n"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        let raw = api_query(
            &c,
            &server,
            "SELECT model, COUNT(*), CAST(SUM(cost_usd) AS VARCHAR), SUM(prompt_tokens), \
             SUM(CASE WHEN status BETWEEN 200 AND 299 THEN 0 ELSE 1 END) \
             FROM requests GROUP BY model ORDER BY model",
        )
        .await;
        let rolled = api_query(
            &c,
            &server,
            "SELECT model, SUM(requests), CAST(SUM(cost_usd) AS VARCHAR), SUM(prompt_tokens), \
             SUM(errors) FROM requests_hourly GROUP BY model ORDER BY model",
        )
        .await;
        assert!(raw.len() >= 5);
        let norm = |rows: &Vec<Vec<serde_json::Value>>| -> Vec<(String, i64, rust_decimal::Decimal, i64, i64)> {
            rows.iter()
                .map(|r| {
                    (
                        r[0].as_str().unwrap().to_string(),
                        num(&r[1]) as i64,
                        r[2].as_str().unwrap().parse().unwrap(),
                        num(&r[3]) as i64,
                        num(&r[4]) as i64,
                    )
                })
                .collect()
        };
        assert_eq!(norm(&raw), norm(&rolled));
        // Percentiles from the latency histograms are within 1% of the exact value.
        let exact = api_query(
            &c,
            &server,
            "SELECT model, latency_ms FROM requests WHERE status = 200 AND latency_ms IS NOT NULL",
        )
        .await;
        let hist = api_query(
            &c,
            &server,
            "SELECT model, bucket, SUM(count) FROM latency_hourly WHERE metric = 'latency_ms' \
             GROUP BY model, bucket ORDER BY model, bucket",
        )
        .await;
        let mut by_model: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in exact {
            by_model
                .entry(r[0].as_str().unwrap().to_string())
                .or_default()
                .push(num(&r[1]));
        }
        for (model, mut v) in by_model {
            v.sort_by(f64::total_cmp);
            let rank = (0.95 * v.len() as f64).ceil() as i64; // nearest rank, 1-based
            let want = v[rank as usize - 1];
            let mut seen = 0i64;
            let bucket = hist
                .iter()
                .filter(|r| r[0] == model.as_str())
                .find(|r| {
                    seen += num(&r[2]) as i64;
                    seen >= rank
                })
                .map(|r| num(&r[1]) as i32)
                .unwrap();
            let got = switchyard::store::rollup::bucket_value(bucket);
            assert!(
                (got - want).abs() <= want * 0.01,
                "{model}: p95 from histogram {got} vs exact {want}"
            );
            assert!(seen >= v.len() as i64 * 95 / 100);
        }
    });
}

/// Per (task, model, policy version, feedback date): feedback rows joined to their request,
/// their sum and sum of squares, by the raw tables' join and by the quality rollup.
const QUALITY_RAW: &str = "SELECT r.task, r.model, r.policy_version, f.date, count(*), \
    sum(f.value), sum(f.value * f.value), sum(CASE WHEN f.value = 1 THEN 1 ELSE 0 END) \
    FROM requests r JOIN feedback f ON f.request_id = r.request_id \
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4";
const QUALITY_ROLLUP: &str = "SELECT task, model, policy_version, feedback_date, sum(samples), \
    CAST(sum(value_sum) AS DOUBLE), CAST(sum(value_sq_sum) AS DOUBLE), sum(successes) \
    FROM quality_hourly GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4";
/// Per (policy version, task, model): attempts, spend, quality feedback rows and their sum, by
/// the raw tables' join (what `policy_version_tasks` computed before it read the rollup).
const POLICY_RAW: &str = "WITH f AS (SELECT request_id, count(*) AS n, sum(value) AS v \
    FROM feedback WHERE metric = 'quality' GROUP BY request_id) \
    SELECT r.policy_version, r.task, r.model, count(*), \
    COALESCE(CAST(sum(r.cost_usd) AS DOUBLE), 0), COALESCE(sum(f.n), 0), sum(f.v) \
    FROM requests r LEFT JOIN f ON f.request_id = r.request_id \
    GROUP BY 1, 2, 3 ORDER BY 1 NULLS FIRST, 2, 3";

/// Asserts two answers have the same rows: equal `keys` columns (a prefix), equal counts in
/// `exact`, sums within 1e-9 in `close` (NULL only where the other is NULL).
fn assert_same_rows(
    what: &str,
    a: &[Vec<serde_json::Value>],
    b: &[Vec<serde_json::Value>],
    keys: usize,
    exact: &[usize],
    close: &[usize],
) {
    assert_eq!(a.len(), b.len(), "{what}: rows");
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a[..keys], b[..keys], "{what}");
        for &i in exact {
            assert_eq!(num(&a[i]), num(&b[i]), "{what}: {a:?} vs {b:?}");
        }
        for &i in close {
            if a[i].is_null() || b[i].is_null() {
                assert_eq!(a[i], b[i], "{what}");
            } else {
                let (x, y) = (num(&a[i]), num(&b[i]));
                assert!((x - y).abs() < 1e-9, "{what}: {a:?} vs {b:?}");
            }
        }
    }
}

async fn assert_quality_rollup_equals_join(c: &reqwest::Client, server: &Server, what: &str) {
    let raw = api_query(c, server, QUALITY_RAW).await;
    let rolled = api_query(c, server, QUALITY_ROLLUP).await;
    assert!(raw.len() > 20, "{what}: {} joined groups", raw.len());
    assert_same_rows(what, &raw, &rolled, 4, &[4, 7], &[5, 6]);
    assert!(
        rolled.iter().any(|r| r[2].is_null()) && rolled.iter().any(|r| !r[2].is_null()),
        "{what}: routed and unrouted feedback"
    );
    // The policy reports read the rollup: they answer what the join answers.
    let r = c
        .get(server.url("/api/reports/policy_version_tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{what}");
    let body: serde_json::Value = r.json().await.unwrap();
    let report: Vec<Vec<serde_json::Value>> = serde_json::from_value(body["rows"].clone()).unwrap();
    let raw = api_query(c, server, POLICY_RAW).await;
    let what = format!("{what}: policy_version_tasks");
    assert_same_rows(&what, &raw, &report, 3, &[3, 5], &[4, 6]);
}

/// Request lines with a `policy_version` on two thirds of them (two versions), the rest unrouted.
fn with_policy_versions(requests: &[&str]) -> Vec<String> {
    requests
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if i % 3 > 0 {
                v["policy_version"] = format!("2026-11-0{}.1", i % 3).into();
            }
            v.to_string()
        })
        .collect()
}

#[test]
fn quality_rollup_equals_the_join_with_feedback_early_late_and_unflushed() {
    let dir = tempfile::tempdir().unwrap();
    let body = generated(dir.path(), "11");
    let (requests, feedback): (Vec<&str>, Vec<&str>) =
        body.lines().partition(|l| l.contains("\"model\""));
    assert!(feedback.len() > 1000);
    let routed = with_policy_versions(&requests);
    let requests: Vec<&str> = routed.iter().map(String::as_str).collect();
    let data = dir.path().join("data");
    let (r1, r2) = requests.split_at(requests.len() / 2);
    let first_ids: std::collections::HashSet<String> = r1
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].to_string())
        .collect();
    let of_first = |l: &&&str| {
        first_ids.contains(
            &serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].to_string(),
        )
    };
    let (late, early): (Vec<&str>, Vec<&str>) = feedback.iter().partition(of_first);
    let (early_a, early_b) = early.split_at(early.len() / 2);
    let post = |server: &Server, lines: &[&str]| {
        let url = server.url("/v1/logs");
        let body = lines.join("\n");
        async move {
            let r = client().post(url).body(body).send().await.unwrap();
            assert!(r.status().is_success());
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client();
        // 1. The first half of the requests, and feedback for requests not sent yet (early),
        //    flushed in several small flushes, then feedback for some of the stored ones.
        let third = late.len() / 3;
        let mut s = Server::start(&data, &["--max-buffer-rows", "700"], &[]);
        post(&s, r1).await;
        post(&s, early_a).await;
        post(&s, &late[..third]).await;
        assert_quality_rollup_equals_join(&c, &s, "first half").await;
        s.terminate();
        // 2. A new process (nothing in its memory): late feedback for the stored requests and
        //    the second half of the requests, which the early feedback waited for; a crash
        //    loses nothing, and the rest stays unflushed.
        let mut s = Server::start(
            &data,
            &[
                "--max-buffer-rows",
                "1000000",
                "--flush-interval-ms",
                "600000",
            ],
            &[],
        );
        post(&s, &late[third..2 * third]).await;
        post(&s, r2).await;
        assert_quality_rollup_equals_join(&c, &s, "unflushed").await;
        s.kill9();
        let mut s = Server::start(&data, &["--max-buffer-rows", "900"], &[]);
        assert_quality_rollup_equals_join(&c, &s, "after a crash").await;
        post(&s, &late[2 * third..]).await;
        post(&s, early_b).await;
        assert_quality_rollup_equals_join(&c, &s, "all sent").await;
        s.terminate();
        let s = Server::start(&data, &[], &[]);
        assert_quality_rollup_equals_join(&c, &s, "all flushed").await;
        let stored = api_query(&c, &s, "SELECT count(*) FROM requests_stored").await;
        assert_eq!(num(&stored[0][0]) as usize, requests.len());
    });
}

#[test]
fn report_windows_bind_as_quoted_literals_outside_comments_and_strings() {
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .unwrap();
    let w = Window::parse(Some("7d"), Some("2026-11-25"), Some("o'brien"), None, now).unwrap();
    let sql = w
        .bind(
            "-- costs $0.10\nSELECT '$since' AS s WHERE ts >= $since AND ts < $until \
             AND date >= $since_date AND date <= $until_date AND ($task IS NULL OR task = $task) \
             AND ($model IS NULL)",
        )
        .unwrap();
    assert_eq!(
        sql,
        "-- costs $0.10\nSELECT '$since' AS s WHERE ts >= '2026-11-18T12:00:00.000000Z' \
         AND ts < '2026-11-25T00:00:00.000000Z' AND date >= '2026-11-18' \
         AND date <= '2026-11-25' AND ('o''brien' IS NULL OR task = 'o''brien') AND (NULL IS NULL)"
    );
    assert!(
        w.bind("SELECT $nope")
            .unwrap_err()
            .to_string()
            .contains("$nope")
    );
    assert!(Window::parse(Some("yesterday"), None, None, None, now).is_err());
    assert!(Window::parse(Some("2026-11-20"), Some("2026-11-19"), None, None, now).is_err());
    let unbounded = Window::default().bind("$since $until_date").unwrap();
    assert_eq!(unbounded, "'1970-01-01T00:00:00Z' '2200-01-01'");
}

#[test]
fn report_command_lists_filters_and_names_errors() {
    let out = run(&["report", "--list"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    let (name, purpose) = first.split_once(' ').unwrap();
    assert!(switchyard::reports::get(name).is_ok());
    assert!(purpose.trim().len() > 10);

    // A task filter keeps only that task.
    let all = rows(&report_csv("spend_by_task", &[]));
    let task = all[0]["task"].clone();
    let one = rows(&report_csv("spend_by_task", &["--task", &task]));
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["task"], task);
    assert_eq!(one[0]["cost_usd"], all[0]["cost_usd"]);

    let data = dataset().to_str().unwrap();
    let out = run(&["report", "no_such_report", "--data-dir", data], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no_such_report") && err.contains("spend_by_task"),
        "{err}"
    );
    let out = run(&["report", "spend_by_task", "--since", "last week"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}

/// Strings are read as views inside a query (`src/query/views.rs`) but answers keep `Utf8`,
/// and the joins on request ids answer: over stored files and rows still buffered.
#[tokio::test(flavor = "multi_thread")]
async fn answers_keep_utf8_and_joins_on_ids_answer_over_files_and_buffer() {
    use arrow::datatypes::DataType;
    use switchyard::query::{QueryConfig, QueryEngine};

    let dir = tempfile::tempdir().unwrap();
    let data = generated_store(dir.path(), "data", &["--requests", "300", "--seed", "3"]);
    let store = crate::common::open_store(&data, &dir.path().join("wal")).await;
    let q = QueryEngine::new(store.clone(), QueryConfig::default()).unwrap();
    let joined = "SELECT r.model, r.request_id, count(*) AS n FROM requests r \
                  JOIN feedback f ON f.request_id = r.request_id GROUP BY 1, 2 ORDER BY 2";
    let stored = q.sql(joined).await.unwrap();
    for (i, name) in [(0, "model"), (1, "request_id")] {
        assert_eq!(stored.schema.field(i).name(), name);
        assert_eq!(
            stored.schema.field(i).data_type(),
            &DataType::Utf8,
            "{name}"
        );
        for b in &stored.batches {
            assert_eq!(b.column(i).data_type(), &DataType::Utf8, "{name}");
        }
    }
    let rows = switchyard::query::output::json_rows(&stored).unwrap();
    assert!(rows.len() > 10, "{rows:?}");
    // A buffered request reads as the stored ones do, and the union keeps the answer's types.
    let line = r#"{"request_id":"buffered-1","ts":"2026-11-20T10:00:00Z","model":"m-buffered","prompt_tokens":1,"completion_tokens":1}"#;
    let parsed =
        switchyard::formats::parse_body(line.as_bytes(), switchyard::formats::Format::Auto, 0);
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    store.ingest(parsed).await.unwrap();
    let buffered = q
        .sql("SELECT model, request_id FROM requests WHERE model = 'm-buffered'")
        .await
        .unwrap();
    let got = switchyard::query::output::json_rows(&buffered).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["request_id"], "buffered-1");
    assert_eq!(buffered.schema.field(0).data_type(), &DataType::Utf8);
    let again = switchyard::query::output::json_rows(&q.sql(joined).await.unwrap()).unwrap();
    assert_eq!(again, rows, "the join over files and buffer");
}
