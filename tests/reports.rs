//! The report set over a fixed generated dataset: snapshots of every report, the key figures
//! checked against independent computations over the raw rows, the rollups against the raw
//! table and the window parameters.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::TimeZone;
use switchyard::reports::Window;

use crate::common::{generated_store, query_csv, run};

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
