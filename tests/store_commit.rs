//! The store's commit protocol under faults, with real processes: an injected error or crash
//! at every step of a flush and of a compaction (`FAILPOINTS`), then a restart, leaves every
//! acknowledged record exactly once in `requests`, `feedback` and both rollups; an outside
//! reader sees a commit all or nothing even when the writer died mid-way (a commit that
//! finishes while a reader lists: `store_view`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Server, api_query, bin, client, num, query_csv};

/// One SQL row of totals that must agree: rows, distinct ids, feedback, the rollups.
const TOTALS: &str = "SELECT \
    (SELECT count(*) FROM requests) AS n, \
    (SELECT count(DISTINCT request_id) FROM requests) AS ids, \
    (SELECT count(*) FROM feedback) AS fb, \
    (SELECT coalesce(sum(requests), 0) FROM requests_hourly) AS hourly_n, \
    (SELECT coalesce(sum(prompt_tokens), 0) FROM requests) AS tokens, \
    (SELECT coalesce(sum(prompt_tokens), 0) FROM requests_hourly) AS hourly_tokens, \
    (SELECT count(latency_ms) FROM requests) AS latencies, \
    (SELECT coalesce(sum(count), 0) FROM latency_hourly WHERE metric = 'latency_ms') AS hist, \
    (SELECT count(*) FROM feedback f JOIN requests r ON f.request_id = r.request_id) AS joined, \
    (SELECT coalesce(sum(samples), 0) FROM quality_hourly) AS quality_n, \
    (SELECT coalesce(CAST(sum(value_sum) AS DOUBLE), 0) FROM quality_hourly) AS quality_sum";

/// Totals as numbers, in `TOTALS` order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Totals([f64; 11]);

impl Totals {
    /// What `n` distinct requests (prompt tokens 100 + i) and `fb` feedback rows add up to.
    fn expected(ids: &[usize], fb: usize) -> Totals {
        let n = ids.len() as f64;
        let tokens: f64 = ids.iter().map(|i| (100 + i % 50) as f64).sum();
        let fb = fb as f64;
        // Every feedback row (value 0.5) refers to an acknowledged request.
        Totals([n, n, fb, n, tokens, tokens, n, n, fb, fb, fb * 0.5])
    }

    /// Requests, feedback and both rollups agree with each other (whatever was stored).
    fn consistent(&self) -> bool {
        let t = self.0;
        t[0] == t[1]
            && t[0] == t[3]
            && t[4] == t[5]
            && t[6] == t[7]
            && t[8] == t[9]
            && t[9] * 0.5 == t[10]
    }
}

fn totals_of(cells: &[String]) -> Totals {
    let mut t = [0.0; 11];
    for (slot, c) in t.iter_mut().zip(cells) {
        *slot = c.parse().unwrap_or(0.0);
    }
    Totals(t)
}

/// Totals read by a separate `switchyard query` process (no lock, no recovery).
fn cli_totals(data: &Path) -> Totals {
    totals_of(&query_csv(data, TOTALS)[0])
}

async fn api_totals(c: &reqwest::Client, s: &Server) -> Totals {
    let row = &api_query(c, s, TOTALS).await[0];
    let mut t = [0.0; 11];
    for (slot, v) in t.iter_mut().zip(row) {
        *slot = if v.is_null() { 0.0 } else { num(v) };
    }
    Totals(t)
}

/// Request lines with ids `tag-i`, spread over two days and several hours so a flush writes
/// several partitions and two days of rollups.
fn requests(tag: &str, ids: &[usize]) -> String {
    ids.iter()
        .map(|&i| {
            let day = 20 + (i % 2);
            let hour = 8 + (i % 3);
            serde_json::json!({
                "request_id": format!("{tag}-{i}"),
                "ts": format!("2026-11-{day}T{hour:02}:15:{:02}.000Z", i % 60),
                "model": if i % 4 == 0 { "gpt-4o" } else { "gpt-4o-mini" },
                "task": "summarize",
                "prompt_tokens": 100 + i % 50,
                "completion_tokens": 20,
                "latency_ms": 100.0 + (i % 97) as f64 * 7.5,
                "key_id": "team-search",
            })
            .to_string()
                + "\n"
        })
        .collect()
}

fn feedback(tag: &str, ids: &[usize]) -> String {
    ids.iter()
        .map(|&i| {
            format!(
                "{{\"request_id\":\"{tag}-{i}\",\"value\":0.5,\"ts\":\"2026-11-20T11:00:00Z\"}}\n"
            )
        })
        .collect()
}

async fn post(c: &reqwest::Client, s: &Server, path: &str, body: String) -> Value {
    let r = c.post(s.url(path)).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Posts a batch of requests and feedback; returns once both are acknowledged.
async fn ingest(c: &reqwest::Client, s: &Server, tag: &str, ids: &[usize]) {
    let r = post(c, s, "/v1/logs", requests(tag, ids)).await;
    assert_eq!(r["accepted"], ids.len(), "{r}");
    let f = post(c, s, "/v1/feedback", feedback(tag, ids)).await;
    assert_eq!(f["accepted"], ids.len(), "{f}");
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits until `requests_stored` (the Parquet part) holds `n` rows; checks on the way that
/// the live server never shows a row twice or a rollup out of step.
async fn wait_stored(c: &reqwest::Client, s: &Server, n: usize, expect: Totals, what: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let t = api_totals(c, s).await;
        assert_eq!(t, expect, "{what}: the live server's totals");
        let stored = api_query(c, s, "SELECT count(*) FROM requests_stored").await;
        if num(&stored[0][0]) as usize == n {
            return;
        }
        assert!(Instant::now() < until, "{what}: rows never reached Parquet");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The step fails once; the store retries and goes on.
    ErrorOnce,
    /// The process dies at the step.
    Crash,
    /// The step panics (on a store task): the process dies too.
    Panic,
}

impl Fault {
    fn action(self) -> &'static str {
        match self {
            Fault::ErrorOnce => "1*return",
            Fault::Crash => "return(crash)",
            Fault::Panic => "panic",
        }
    }
}

/// Starts `serve` with the point armed, ingests, lets the fault fire, restarts clean and
/// checks every acknowledged record is there once.
async fn one_case(point: &str, fault: Fault, compaction: bool) {
    let what = format!("{point}={}", fault.action());
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let config = root.path().join("config.toml");
    std::fs::write(&config, "[store]\ncompact_min_files = 2\n").unwrap();
    let cfg = config.to_str().unwrap();
    let args = ["--flush-interval-ms", "100", "--config", cfg];
    let failpoints = format!("{point}={}", fault.action());
    let c = client();
    let mut s = Server::start(&data, &args, &[("FAILPOINTS", failpoints.as_str())]);
    let first: Vec<usize> = (0..240).collect();
    let second: Vec<usize> = (240..400).collect();
    let all: Vec<usize> = (0..400).collect();
    ingest(&c, &s, "r", &first).await;
    let mut acked: Vec<usize> = first.clone();
    if compaction {
        // The second flush into the same partitions compacts them.
        wait_stored(
            &c,
            &s,
            first.len(),
            Totals::expected(&first, first.len()),
            &what,
        )
        .await;
        ingest(&c, &s, "r", &second).await;
        acked = all.clone();
    }
    let expect = Totals::expected(&acked, acked.len());
    match fault {
        Fault::ErrorOnce => {
            wait_stored(&c, &s, acked.len(), expect, &what).await;
            if !compaction {
                ingest(&c, &s, "r", &second).await;
                acked = all.clone();
                let expect = Totals::expected(&acked, acked.len());
                wait_stored(&c, &s, acked.len(), expect, &what).await;
            }
            assert!(s.terminate().success(), "{what}: clean exit");
        }
        Fault::Crash | Fault::Panic => {
            let st = wait_exit(&mut s.child, Duration::from_secs(20));
            assert!(
                st.is_some_and(|st| !st.success()),
                "{what}: the process did not die"
            );
            // What the crash left, as a separate reader sees it: each commit whole or absent.
            let t = cli_totals(&data);
            assert!(t.consistent(), "{what}: a reader sees a half commit: {t:?}");
            let mut again = Server::start(&data, &args, &[]);
            assert_eq!(
                api_totals(&c, &again).await,
                expect,
                "{what}: after restart"
            );
            assert!(again.terminate().success(), "{what}: clean exit");
        }
    }
    let expect = Totals::expected(&acked, acked.len());
    assert_eq!(cli_totals(&data), expect, "{what}: after a clean exit");
    // Nothing of the protocol is left behind but retired records.
    let leftovers: Vec<String> = walk(&data)
        .into_iter()
        .filter(|p| p.ends_with(".pending") || p.ends_with(".commit"))
        .collect();
    assert!(leftovers.is_empty(), "{what}: left {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Runs cases three at a time, each on its own thread and runtime.
fn run_cases(cases: Vec<(&'static str, Fault, bool)>) {
    let cases = std::sync::Mutex::new(cases);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                loop {
                    let next = cases.lock().unwrap().pop();
                    let Some((point, fault, compaction)) = next else {
                        return;
                    };
                    rt.block_on(one_case(point, fault, compaction));
                }
            });
        }
    });
}

const FLUSH_POINTS: [&str; 8] = [
    "store::flush::write",
    "store::flush::sync",
    "store::flush::commit",
    "store::flush::publish",
    "store::flush::trim_wal",
    "store::flush::done",
    "store::object::put",
    "store::object::rename",
];

const COMPACTION_POINTS: [&str; 4] = [
    "store::compact::write",
    "store::compact::commit",
    "store::compact::publish",
    "store::compact::done",
];

#[test]
fn an_error_at_any_flush_step_is_retried_without_a_double_count() {
    run_cases(
        FLUSH_POINTS
            .iter()
            .map(|p| (*p, Fault::ErrorOnce, false))
            .collect(),
    );
}

#[test]
fn a_crash_at_any_flush_step_keeps_every_acknowledged_record_once() {
    let mut cases: Vec<_> = FLUSH_POINTS
        .iter()
        .map(|p| (*p, Fault::Crash, false))
        .collect();
    cases.push(("store::flush::commit", Fault::Panic, false));
    run_cases(cases);
}

#[test]
fn an_error_or_crash_at_any_compaction_step_keeps_every_record_once() {
    let mut cases = Vec::new();
    for p in COMPACTION_POINTS {
        cases.push((p, Fault::ErrorOnce, true));
        cases.push((p, Fault::Crash, true));
    }
    run_cases(cases);
}

/// A `serve` that must fail to start: its exit status and stderr.
fn refused(data: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(bin())
        .args(args)
        .args(["--data-dir", data.to_str().unwrap()])
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = wait_exit(&mut child, Duration::from_secs(20)).expect("second writer kept running");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (st, err)
}

#[tokio::test]
async fn a_second_writer_is_refused_with_the_holder_named_and_nothing_lost() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let c = client();
    let mut s = Server::start(&data, &["--flush-interval-ms", "100"], &[]);
    let first: Vec<usize> = (0..300).collect();
    ingest(&c, &s, "w", &first).await;
    // An unfinished write of the running server: a second process must leave it alone.
    let inflight = data.join("requests").join("part-inflight.parquet.pending");
    std::fs::create_dir_all(inflight.parent().unwrap()).unwrap();
    std::fs::write(&inflight, b"in flight").unwrap();
    let pid = s.child.id().to_string();
    let (st, err) = refused(&data, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!st.success());
    assert!(err.contains("has a writer already"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("serve"), "names the holder's command: {err}");
    let input = root.path().join("more.ndjson");
    std::fs::write(&input, requests("w", &(300..400).collect::<Vec<_>>())).unwrap();
    let (st, err) = refused(&data, &["ingest", input.to_str().unwrap()]);
    assert!(!st.success());
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(
        inflight.exists(),
        "a second process removed a live writer's file"
    );
    // Readers take no lock, and the server still takes writes: a re-sent batch adds nothing.
    assert!(cli_totals(&data).consistent());
    let again = post(&c, &s, "/v1/logs", requests("w", &first)).await;
    assert_eq!(again["duplicates"], first.len(), "{again}");
    assert!(s.terminate().success());
    std::fs::remove_file(&inflight).unwrap();
    assert_eq!(cli_totals(&data), Totals::expected(&first, first.len()));
    // With the server gone, the import runs.
    let out = crate::common::run(
        &[
            "ingest",
            "--data-dir",
            data.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<usize> = (0..400).collect();
    let t = cli_totals(&data);
    assert_eq!(t.0[0], 400.0, "{t:?}");
    assert!(t.consistent(), "{t:?}");
    assert_eq!(
        Totals([
            t.0[0], t.0[1], 300.0, t.0[3], t.0[4], t.0[5], t.0[6], t.0[7], t.0[8], t.0[9], t.0[10]
        ]),
        Totals::expected(&all, 300)
    );
}
