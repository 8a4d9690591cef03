//! The rollups against the raw rows they summarise: `requests_hourly`, `latency_hourly` and
//! `quality_hourly` answer what `requests` and `feedback` answer, with rows unflushed, after
//! a crash and with feedback before or after its request, and so do the reports that read them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{Server, api_query, client, generated_store_with, num, query_csv, run};

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

/// A batch import flushes many times a day (here after each 4 MB parse chunk: three a day)
/// and each flush adds a file to every rollup day it touched; when the import ends each day
/// is one file, and the rollups still add up to the raw rows (the latency histograms hold
/// the successful attempts').
#[test]
fn a_batch_import_leaves_one_rollup_file_a_day_that_still_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_store_with(
        dir.path(),
        "data",
        &["--requests", "40000", "--days", "2", "--seed", "5"],
        &["--no-progress", "--max-buffer-rows", "1000"],
    );
    for table in ["requests_hourly", "latency_hourly", "quality_hourly"] {
        let days: Vec<_> = std::fs::read_dir(data.join(table))
            .unwrap()
            .map(|d| d.unwrap().path())
            .collect();
        assert!(days.len() >= 2, "{table}: {} days", days.len());
        for day in days {
            let files = std::fs::read_dir(&day)
                .unwrap()
                .filter(|f| f.as_ref().unwrap().path().extension() == Some("parquet".as_ref()))
                .count();
            assert_eq!(files, 1, "{}", day.display());
        }
    }
    let sums = query_csv(
        &data,
        "SELECT (SELECT count(*) FROM requests) AS a, \
         (SELECT sum(requests) FROM requests_hourly) AS b, \
         (SELECT sum(prompt_tokens) FROM requests) AS c, \
         (SELECT sum(prompt_tokens) FROM requests_hourly) AS d, \
         (SELECT count(latency_ms) FROM requests WHERE status BETWEEN 200 AND 299) AS e, \
         (SELECT sum(count) FROM latency_hourly WHERE metric = 'latency_ms') AS f, \
         (SELECT count(*) FROM feedback f JOIN requests r ON f.request_id = r.request_id) AS g, \
         (SELECT sum(samples) FROM quality_hourly) AS h",
    );
    let v = &sums[0];
    assert_eq!(v[0], "40000");
    for pair in v.chunks(2) {
        assert_eq!(pair[0], pair[1], "raw and rollup disagree: {v:?}");
    }
}

/// A flush rolls up each hourly partition on its own (one task per core) and puts the
/// pieces side by side: that is the rollup of all its rows at once, value for value (every
/// float sum added in the same order), day by day.
#[test]
fn hourly_partitions_rolled_up_apart_equal_the_rollup_of_all_rows() {
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampMicrosecondType;
    use switchyard::store::{parquet as files, rollup};
    let dir = tempfile::tempdir().unwrap();
    let data = generated_store_with(
        dir.path(),
        "data",
        &["--requests", "8000", "--days", "2", "--seed", "11"],
        &["--no-progress"],
    );
    let mut batches = Vec::new();
    let mut dirs = vec![data.join("requests")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension() == Some("parquet".as_ref()) {
                let f = std::fs::File::open(&p).unwrap();
                let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                    .unwrap()
                    .build()
                    .unwrap();
                batches.extend(r.map(|b| b.unwrap()));
            }
        }
    }
    let all = files::sort_by_ts(&batches).unwrap();
    assert_eq!(all.num_rows(), 8000);
    let whole = rollup::day_pieces(std::slice::from_ref(&all)).unwrap();
    let ts = all.column(1).as_primitive::<TimestampMicrosecondType>();
    let hour = |i: usize| ts.value(i).div_euclid(3_600_000_000);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < all.num_rows() {
        let mut end = start + 1;
        while end < all.num_rows() && hour(end) == hour(start) {
            end += 1;
        }
        let slice = all.slice(start, end - start);
        parts.push(rollup::compute(std::slice::from_ref(&slice)).unwrap());
        start = end;
    }
    assert!(parts.len() > 24, "{} hours", parts.len());
    let apart = rollup::day_pieces_of(parts).unwrap();
    assert_eq!(whole.len(), apart.len());
    for ((t1, d1, b1), (t2, d2, b2)) in whole.iter().zip(&apart) {
        assert_eq!((t1, d1), (t2, d2));
        assert!(b1.num_rows() > 0, "{} {d1}: no rows", t1.name());
        assert_eq!(b1, b2, "{} {d1}", t1.name());
    }
}

#[test]
fn rollups_answer_what_the_raw_rows_answer_including_unflushed_rows() {
    // A server whose buffer holds some rows while the rest are in Parquet: the rollup views
    // must cover both, as the raw tables do.
    let dir = tempfile::tempdir().unwrap();
    let (mut lines, feedback) = generated_routed(dir.path(), "9");
    lines.extend(feedback);
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
            "SELECT model, policy_version, route, COUNT(*), CAST(SUM(cost_usd) AS VARCHAR), \
             SUM(prompt_tokens), SUM(CASE WHEN status BETWEEN 200 AND 299 THEN 0 ELSE 1 END), \
             CAST(MIN(ts) AS VARCHAR), CAST(MAX(ts) AS VARCHAR) \
             FROM requests GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .await;
        let rolled = api_query(
            &c,
            &server,
            "SELECT model, policy_version, route, SUM(requests), CAST(SUM(cost_usd) AS VARCHAR), \
             SUM(prompt_tokens), SUM(errors), \
             CAST(MIN(first_ts) AS VARCHAR), CAST(MAX(last_ts) AS VARCHAR) \
             FROM requests_hourly GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .await;
        assert!(raw.len() >= 30, "{} groups", raw.len());
        type Row = (
            Vec<serde_json::Value>,
            i64,
            rust_decimal::Decimal,
            i64,
            i64,
            Vec<serde_json::Value>,
        );
        let norm = |rows: &Vec<Vec<serde_json::Value>>| -> Vec<Row> {
            rows.iter()
                .map(|r| {
                    (
                        r[..3].to_vec(),
                        num(&r[3]) as i64,
                        r[4].as_str().unwrap().parse().unwrap(),
                        num(&r[5]) as i64,
                        num(&r[6]) as i64,
                        r[7..9].to_vec(),
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

/// Per policy version: attempts, distinct tasks, models and routes, spend, error rate, first
/// and last attempt, by the raw rows (what `policy_versions` computed before it read the rollup).
const VERSIONS_RAW: &str = "SELECT policy_version, count(*), count(DISTINCT task), \
    count(DISTINCT model), count(DISTINCT route), ROUND(COALESCE(CAST(sum(cost_usd) AS DOUBLE), 0), 6), \
    ROUND(CAST(sum(CASE WHEN status BETWEEN 200 AND 299 THEN 0 ELSE 1 END) AS DOUBLE) / count(*), 6), \
    min(ts), max(ts) FROM requests GROUP BY 1 ORDER BY min(ts), 1 NULLS LAST";

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
    let report = report_rows(c, server, "policy_version_tasks").await;
    let raw = api_query(c, server, POLICY_RAW).await;
    assert_same_rows(
        &format!("{what}: policy_version_tasks"),
        &raw,
        &report,
        3,
        &[3, 5],
        &[4, 6],
    );
    let report = report_rows(c, server, "policy_versions").await;
    let report: Vec<Vec<serde_json::Value>> = report
        .iter()
        .map(|r| [0, 1, 2, 3, 4, 5, 7, 10, 11].map(|i| r[i].clone()).to_vec())
        .collect();
    let raw = api_query(c, server, VERSIONS_RAW).await;
    assert_eq!(raw.len(), 3, "{what}: two versions and unrouted traffic");
    assert_same_rows(
        &format!("{what}: policy_versions"),
        &raw,
        &report,
        1,
        &[1, 2, 3, 4],
        &[5, 6],
    );
    for (a, b) in raw.iter().zip(&report) {
        assert_eq!(
            a[7..],
            b[7..],
            "{what}: policy_versions first and last attempt"
        );
    }
}

/// The request and feedback lines of [`generated`], with a `policy_version` and a `route` on
/// two thirds of the requests (two versions, four routes), the rest unrouted.
fn generated_routed(dir: &Path, seed: &str) -> (Vec<String>, Vec<String>) {
    let body = generated(dir, seed);
    let (requests, feedback): (Vec<&str>, Vec<&str>) =
        body.lines().partition(|l| l.contains("\"model\""));
    let requests = requests
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if i % 3 > 0 {
                v["policy_version"] = format!("2026-11-0{}.1", i % 3).into();
                v["route"] = format!("rule-{}", i % 4).into();
            }
            v.to_string()
        })
        .collect();
    (requests, feedback.iter().map(|l| l.to_string()).collect())
}

/// The rows of a report as the HTTP API answers them.
async fn report_rows(
    c: &reqwest::Client,
    server: &Server,
    name: &str,
) -> Vec<Vec<serde_json::Value>> {
    let r = c
        .get(server.url(&format!("/api/reports/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{name}");
    let body: serde_json::Value = r.json().await.unwrap();
    serde_json::from_value(body["rows"].clone()).unwrap()
}

#[test]
fn quality_rollup_equals_the_join_with_feedback_early_late_and_unflushed() {
    let dir = tempfile::tempdir().unwrap();
    let (routed, feedback) = generated_routed(dir.path(), "11");
    assert!(feedback.len() > 1000);
    let requests: Vec<&str> = routed.iter().map(String::as_str).collect();
    let feedback: Vec<&str> = feedback.iter().map(String::as_str).collect();
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
