//! The store on an S3-compatible bucket (a local moto server): two `serve` nodes ingesting
//! into one bucket at once, restarted, queried, with retention and compaction; records
//! re-sent to the other node stored once after compaction; a node killed mid-flush and
//! restarted while the other keeps writing, with nothing lost or doubled; and pyarrow
//! reading the bucket as is.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Moto, Server, api_query, client, env_refs, num, python, run};

/// Rows, distinct ids, feedback rows and prompt tokens of the stored tables; then the same
/// requests and tokens as the rollups count them, and the latency histogram's count.
const TOTALS: &str = "SELECT \
    (SELECT count(*) FROM requests) AS n, \
    (SELECT count(DISTINCT request_id) FROM requests) AS ids, \
    (SELECT count(*) FROM feedback) AS fb, \
    (SELECT coalesce(sum(prompt_tokens), 0) FROM requests) AS tokens, \
    (SELECT coalesce(sum(requests), 0) FROM requests_hourly) AS rolled, \
    (SELECT coalesce(sum(prompt_tokens), 0) FROM requests_hourly) AS rolled_tokens, \
    (SELECT coalesce(sum(count), 0) FROM latency_hourly WHERE metric = 'latency_ms') AS hist";

type Totals = [u64; 7];

fn expected(ids: &[usize]) -> Totals {
    let n = ids.len() as u64;
    let tokens = ids.iter().map(|i| 100 + i % 50).sum::<usize>() as u64;
    [n, n, n, tokens, n, tokens, n]
}

/// Request lines `r-i`, `days_ago` days before now, over three hours of that day.
fn requests(ids: &[usize], days_ago: i64) -> String {
    let day = (chrono::Utc::now() - chrono::Duration::days(days_ago)).format("%Y-%m-%d");
    ids.iter()
        .map(|&i| {
            serde_json::json!({
                "request_id": format!("r-{i}"),
                "ts": format!("{day}T{:02}:15:{:02}.000Z", 8 + i % 3, i % 60),
                "model": if i % 4 == 0 { "gpt-4o" } else { "gpt-4o-mini" },
                "task": "summarize",
                "prompt_tokens": 100 + i % 50,
                "completion_tokens": 20,
                "latency_ms": 120.0,
            })
            .to_string()
                + "\n"
        })
        .collect()
}

fn feedback(ids: &[usize], days_ago: i64) -> String {
    let day = (chrono::Utc::now() - chrono::Duration::days(days_ago)).format("%Y-%m-%d");
    ids.iter()
        .map(|&i| {
            format!("{{\"request_id\":\"r-{i}\",\"value\":0.5,\"ts\":\"{day}T11:00:00Z\"}}\n")
        })
        .collect()
}

/// Posts requests and their feedback to a node; every record is accepted or a duplicate.
async fn ingest(c: &reqwest::Client, s: &Server, ids: &[usize], days_ago: i64) {
    assert!(
        try_ingest(c, s, ids, days_ago).await,
        "a node stopped answering"
    );
}

/// [`ingest`] to a node that may die while it answers: `false` when a post got no answer
/// (its records may or may not be stored, so a client sends them again).
async fn try_ingest(c: &reqwest::Client, s: &Server, ids: &[usize], days_ago: i64) -> bool {
    for (path, body) in [
        ("/v1/logs", requests(ids, days_ago)),
        ("/v1/feedback", feedback(ids, days_ago)),
    ] {
        let Ok(r) = c.post(s.url(path)).body(body).send().await else {
            return false;
        };
        assert_eq!(r.status(), 200, "{path}");
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return false;
        };
        let took = v["accepted"].as_u64().unwrap() + v["duplicates"].as_u64().unwrap();
        assert_eq!(took, ids.len() as u64, "{path}: {v}");
    }
    true
}

async fn api_totals(c: &reqwest::Client, s: &Server) -> Totals {
    let row = &api_query(c, s, TOTALS).await[0];
    std::array::from_fn(|i| num(&row[i]) as u64)
}

/// Totals by a separate `switchyard query` process reading the bucket.
fn cli_totals(url: &str, env: &[(&'static str, String)]) -> Totals {
    try_cli_totals(url, env).unwrap_or_else(|e| panic!("query failed: {e}"))
}

/// [`cli_totals`] while nodes still flush and compact every 100 ms: a query can then lose
/// the race against the compactions that supersede the files it listed, and fail.
fn try_cli_totals(url: &str, env: &[(&'static str, String)]) -> Result<Totals, String> {
    let out = run(
        &["query", "--data-dir", url, "--format", "csv", TOTALS],
        &env_refs(env),
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let cells: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|c| c.parse::<f64>().unwrap() as u64)
        .collect();
    Ok(std::array::from_fn(|i| cells[i]))
}

/// A `serve` node on the bucket with its own WAL dir and node id.
fn node(
    url: &str,
    root: &Path,
    id: &str,
    extra: &[&str],
    env: &[(&'static str, String)],
) -> Server {
    let wal = root.join(format!("wal-{id}"));
    let cfg = root.join("config.toml");
    std::fs::write(&cfg, "[store]\ncompact_min_files = 2\n").unwrap();
    let mut args = vec![
        "--wal-dir",
        wal.to_str().unwrap(),
        "--node-id",
        id,
        "--flush-interval-ms",
        "100",
        "--config",
        cfg.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(Path::new(url), &args, &env_refs(env))
}

/// Waits until a node's Parquet part holds `n` request rows.
async fn wait_stored(c: &reqwest::Client, s: &Server, n: u64) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = api_query(c, s, "SELECT count(*) FROM requests_stored").await;
        if num(&stored[0][0]) as u64 == n {
            return;
        }
        assert!(Instant::now() < until, "rows never reached the bucket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a pyarrow script with `s3`, a filesystem on the moto server, defined; its stdout.
fn pyarrow(moto: &Moto, script: &str) -> String {
    let script = format!(
        "import pyarrow.fs as fs, pyarrow.dataset as ds, pyarrow.compute as pc\n\
         s3 = fs.S3FileSystem(endpoint_override={ep:?}, scheme='http', access_key='testing', \
         secret_key='testing', region='us-east-1')\n{script}",
        ep = moto.endpoint.trim_start_matches("http://"),
    );
    let out = std::process::Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every object key below `prefix` in the bucket.
fn keys(moto: &Moto, bucket_prefix: &str) -> Vec<String> {
    let script = format!(
        "for f in s3.get_file_info(fs.FileSelector({bucket_prefix:?}, recursive=True)):\n\
         \x20   if f.type == fs.FileType.File: print(f.path)\n"
    );
    pyarrow(moto, &script).lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_a_bucket_through_restarts_retention_and_compaction() {
    let moto = Moto::start();
    moto.bucket("fleet");
    let env = moto.env();
    let root = tempfile::tempdir().unwrap();
    let url = "s3://fleet/store";
    let c = client();
    let mut a = node(url, root.path(), "node_a", &[], &env);
    let mut b = node(url, root.path(), "node_b", &[], &env);

    // Disjoint records to each node, the same records to both (a client re-sending to
    // another node), and records 40 days old that retention will drop.
    let only_a: Vec<usize> = (0..150).collect();
    let only_b: Vec<usize> = (150..300).collect();
    let both: Vec<usize> = (300..360).collect();
    let old: Vec<usize> = (1000..1030).collect();
    let (ra, rb) = tokio::join!(
        async {
            ingest(&c, &a, &only_a, 1).await;
            ingest(&c, &a, &both, 1).await;
        },
        async {
            ingest(&c, &b, &only_b, 1).await;
            ingest(&c, &b, &both, 1).await;
            ingest(&c, &b, &old, 40).await;
        }
    );
    let ((), ()) = (ra, rb);
    let until = Instant::now() + Duration::from_secs(30);
    while !both_flushed(&c, &a, &b).await {
        assert!(
            Instant::now() < until,
            "the first round never reached the bucket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A second round into the same partitions: each node's flush compacts them.
    let more_a: Vec<usize> = (360..420).collect();
    let more_b: Vec<usize> = (420..480).collect();
    tokio::join!(ingest(&c, &a, &more_a, 1), ingest(&c, &b, &more_b, 1));
    let recent: Vec<usize> = (0..480).collect();
    let mut all = recent.clone();
    all.extend(&old);
    let want = expected(&all);
    let until = Instant::now() + Duration::from_secs(30);
    // Both nodes flushed, and compaction merged the copies of `both` into one.
    loop {
        let t = try_cli_totals(url, &env);
        if t == Ok(want) && both_flushed(&c, &a, &b).await {
            break;
        }
        assert!(
            Instant::now() < until,
            "the bucket never settled at {want:?}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every file and commit record names its node; both nodes committed.
    let names = keys(&moto, "fleet/store");
    let written: Vec<&String> = names
        .iter()
        .filter(|k| k.contains("store/requests/") || k.contains("store/_commits/"))
        .collect();
    assert!(
        written
            .iter()
            .all(|k| k.contains("-node_a-") || k.contains("-node_b-")),
        "a file without its node id: {written:?}"
    );
    for n in ["node_a", "node_b"] {
        let pat = format!("-{n}-");
        assert!(
            written
                .iter()
                .any(|k| k.contains("/_commits/") && k.contains(&pat)),
            "no commit by {n}: {written:?}"
        );
    }
    assert!(
        names.iter().any(|k| k.ends_with("-c.parquet")),
        "compaction ran: {names:?}"
    );

    // Restart both nodes, now with a 30-day retention: the old partition goes.
    assert!(
        a.terminate().success() && b.terminate().success(),
        "clean exits"
    );
    let mut a = node(
        url,
        root.path(),
        "node_a",
        &["--retention-days", "30"],
        &env,
    );
    let mut b = node(
        url,
        root.path(),
        "node_b",
        &["--retention-days", "30"],
        &env,
    );
    let want = expected(&recent);
    let until = Instant::now() + Duration::from_secs(30);
    while try_cli_totals(url, &env) != Ok(want) {
        assert!(
            Instant::now() < until,
            "retention never dropped the old day"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(api_totals(&c, &a).await, want, "node a after restart");
    assert_eq!(api_totals(&c, &b).await, want, "node b after restart");
    // A second process with a node id in use is refused.
    let wal = root.path().join("wal-other");
    let dup = run(
        &[
            "ingest",
            "--data-dir",
            url,
            "--wal-dir",
            wal.to_str().unwrap(),
            "--node-id",
            "node_a",
            "-",
        ],
        &env_refs(&env),
    );
    assert!(!dup.status.success(), "a second node_a was let in");
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("node_a"),
        "{}",
        String::from_utf8_lossy(&dup.stderr)
    );
    assert!(
        a.terminate().success() && b.terminate().success(),
        "clean exits"
    );
    assert_eq!(cli_totals(url, &env), want, "after both stopped");

    // Any Parquet reader: pyarrow over the bucket's `*.parquet`, Hive partitions.
    let seen = pyarrow(
        &moto,
        "files = [f.path for f in s3.get_file_info(fs.FileSelector('fleet/store/requests', \
         recursive=True)) if f.path.endswith('.parquet')]\n\
         t = ds.dataset(files, filesystem=s3, format='parquet', partitioning='hive', \
         partition_base_dir='fleet/store/requests').to_table()\n\
         print(t.num_rows, len(pc.unique(t['request_id'])), pc.sum(t['prompt_tokens']).as_py(), \
         len(pc.unique(t['date'])))\n",
    );
    assert_eq!(
        seen.trim(),
        format!("{} {} {} 1", want[0], want[1], want[3]),
        "pyarrow's view of the bucket"
    );
}

/// Both nodes' buffers are empty: everything acknowledged is in the bucket.
async fn both_flushed(c: &reqwest::Client, a: &Server, b: &Server) -> bool {
    let mut empty = true;
    for s in [a, b] {
        let r = api_query(c, s, "SELECT count(*) FROM requests_buffered").await;
        empty &= num(&r[0][0]) == 0.0;
    }
    empty
}

/// Node a dies at `point` of a flush while node b writes the same bucket (its flushes held
/// open at their commit point, so its pending files sit in the bucket while a recovers);
/// after a's restart every acknowledged record of both is there once.
async fn killed_mid_flush(point: &str) {
    let moto = Moto::start();
    moto.bucket("crash");
    let env = moto.env();
    let root = tempfile::tempdir().unwrap();
    let url = "s3://crash/store";
    let c = client();
    let mut crash_env = env.clone();
    crash_env.push(("FAILPOINTS", format!("{point}=return(crash)")));
    let mut a = node(url, root.path(), "node_a", &[], &crash_env);
    let mut slow_env = env.clone();
    slow_env.push(("FAILPOINTS", "store::flush::commit=sleep(1500)".into()));
    let mut b = node(url, root.path(), "node_b", &[], &slow_env);
    let from_a: Vec<usize> = (0..200).collect();
    let from_b: Vec<usize> = (200..400).collect();
    // Node a dies at its first flush, which may start before its last post is answered.
    let (answered, ()) = tokio::join!(try_ingest(&c, &a, &from_a, 1), ingest(&c, &b, &from_b, 1));
    let until = Instant::now() + Duration::from_secs(20);
    while a.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "{point}: node a did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Restarted while b's flush has its files pending: a must leave them alone.
    let mut a = node(url, root.path(), "node_a", &[], &env);
    // Sent again, as a client does when the answer was lost: stored once whatever a kept.
    if !answered {
        ingest(&c, &a, &from_a, 1).await;
    }
    let more_b: Vec<usize> = (400..450).collect();
    ingest(&c, &b, &more_b, 1).await;
    let all: Vec<usize> = (0..450).collect();
    let want = expected(&all);
    wait_stored(&c, &a, want[0]).await;
    wait_stored(&c, &b, want[0]).await;
    assert_eq!(
        api_totals(&c, &a).await,
        want,
        "{point}: node a after restart"
    );
    assert_eq!(api_totals(&c, &b).await, want, "{point}: node b");
    assert!(a.terminate().success(), "{point}: clean exit");
    assert!(b.terminate().success(), "{point}: clean exit");
    assert_eq!(cli_totals(url, &env), want, "{point}: a separate reader");
    let left: Vec<String> = keys(&moto, "crash/store")
        .into_iter()
        .filter(|k| k.ends_with(".pending") || k.ends_with(".commit"))
        .collect();
    assert!(left.is_empty(), "{point}: unfinished writes left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_before_its_commit_restarts_with_nothing_lost_or_doubled() {
    killed_mid_flush("store::flush::sync").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_after_its_commit_restarts_with_nothing_lost_or_doubled() {
    killed_mid_flush("store::flush::publish").await;
}

/// Posts one body of lines to a node; every line is accepted.
async fn post(c: &reqwest::Client, s: &Server, path: &str, body: String, n: usize) {
    let r = c.post(s.url(path)).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["accepted"].as_u64(), Some(n as u64), "{path}: {v}");
}

/// Feedback samples in the quality rollup, and feedback rows joined to their request.
const QUALITY: &str = "SELECT \
    (SELECT coalesce(sum(samples), 0) FROM quality_hourly) AS rolled, \
    (SELECT count(*) FROM feedback f JOIN requests r ON f.request_id = r.request_id) AS joined";

fn cli_quality(url: &str, env: &[(&'static str, String)]) -> String {
    let out = run(
        &["query", "--data-dir", url, "--format", "csv", QUALITY],
        &env_refs(env),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string()
}

/// Feedback that reaches one node while its request is still to come on the other is rolled
/// up once the request is stored, by the node holding the feedback only: each node keeps its
/// own unmatched rows, and neither counts the other's. Feedback re-sent to both nodes is
/// counted once again after compaction.
#[tokio::test(flavor = "multi_thread")]
async fn feedback_for_a_request_the_other_node_stores_is_rolled_up_once() {
    let moto = Moto::start();
    moto.bucket("cross");
    let env = moto.env();
    let root = tempfile::tempdir().unwrap();
    let url = "s3://cross/store";
    let c = client();
    let mut a = node(url, root.path(), "node_a", &[], &env);
    let mut b = node(url, root.path(), "node_b", &[], &env);
    // Each node gets the feedback of requests the other one will log, and stores it unmatched.
    let for_a: Vec<usize> = (0..40).collect();
    let for_b: Vec<usize> = (40..100).collect();
    post(&c, &b, "/v1/feedback", feedback(&for_a, 1), for_a.len()).await;
    post(&c, &a, "/v1/feedback", feedback(&for_b, 1), for_b.len()).await;
    let until = Instant::now() + Duration::from_secs(30);
    for s in [&a, &b] {
        while num(&api_query(&c, s, "SELECT count(*) FROM feedback_buffered").await[0][0]) > 0.0 {
            assert!(Instant::now() < until, "feedback never reached the bucket");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(cli_quality(url, &env), "0,0", "nothing to join yet");
    post(&c, &a, "/v1/logs", requests(&for_a, 1), for_a.len()).await;
    post(&c, &b, "/v1/logs", requests(&for_b, 1), for_b.len()).await;
    let want = "100,100";
    let until = Instant::now() + Duration::from_secs(30);
    while cli_quality(url, &env) != want {
        assert!(
            Instant::now() < until,
            "the rollup never caught up: {}",
            cli_quality(url, &env)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Several more rounds of rechecks by both nodes count nothing twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cli_quality(url, &env), want, "after more rechecks");

    // Feedback re-sent to both nodes for stored requests: each node rolls its copy up, and
    // the compaction that drops one copy takes it out of the rollup again.
    let resent: Vec<usize> = (100..120).collect();
    post(&c, &a, "/v1/logs", requests(&resent, 1), resent.len()).await;
    wait_stored(&c, &a, 120).await;
    post(&c, &a, "/v1/feedback", feedback(&resent, 1), resent.len()).await;
    post(&c, &b, "/v1/feedback", feedback(&resent, 1), resent.len()).await;
    while !both_flushed(&c, &a, &b).await {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More feedback into the same day on both nodes: their flushes compact it.
    let more: Vec<usize> = (120..130).collect();
    post(&c, &b, "/v1/logs", requests(&more, 1), more.len()).await;
    wait_stored(&c, &b, 130).await;
    post(&c, &a, "/v1/feedback", feedback(&more[..5], 1), 5).await;
    post(&c, &b, "/v1/feedback", feedback(&more[5..], 1), 5).await;
    let want = "130,130";
    let until = Instant::now() + Duration::from_secs(30);
    while cli_quality(url, &env) != want {
        assert!(
            Instant::now() < until,
            "the re-sent feedback never settled: {}",
            cli_quality(url, &env)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cli_quality(url, &env), want, "after more flushes");
    assert!(
        a.terminate().success() && b.terminate().success(),
        "clean exits"
    );
    assert_eq!(cli_quality(url, &env), want, "after both stopped");
}
