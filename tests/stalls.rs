//! Acknowledgements wait for the WAL sync only: a query planning slowly (its commit lock held,
//! as over a slow object-store listing) or a flush stuck at its commit point (as on a slow
//! rename) does not delay them. A store whose flushes cannot finish answers 503 with
//! `Retry-After` after the ingest deadline instead of hanging, and `/readyz` says why.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Server, client, record};

/// The injected delay; acknowledgements must stay far below it.
const DELAY_MS: u64 = 4000;

fn body(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| record(&format!("{prefix}-{i}"), "gpt-4o-mini", 10, 5) + "\n")
        .collect()
}

/// Posts small batches one after another for `window`; returns the slowest answer.
async fn slowest_ack(s: &Server, prefix: &str, window: Duration) -> (Duration, usize) {
    let c = client();
    let started = Instant::now();
    let (mut worst, mut n) = (Duration::ZERO, 0);
    while started.elapsed() < window {
        let t = Instant::now();
        let r = c
            .post(s.url("/v1/logs"))
            .body(body(&format!("{prefix}-{n}"), 5))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        worst = worst.max(t.elapsed());
        n += 1;
    }
    (worst, n)
}

async fn flushes(c: &reqwest::Client, s: &Server) -> f64 {
    crate::common::metric(c, s, "switchyard_flushes_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_and_a_slow_flush_do_not_delay_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let points =
        format!("store::query_plan=1*return({DELAY_MS});store::flush_commit=1*return({DELAY_MS})");
    let s = Server::start(
        dir.path(),
        &[
            "--flush-interval-ms",
            "3600000",
            "--max-buffer-rows",
            "20000",
        ],
        &[("FAILPOINTS", &points)],
    );
    let c = client();
    // A query that plans slowly, holding the commit lock.
    let q = {
        let (c, url) = (c.clone(), s.url("/api/query"));
        tokio::spawn(async move {
            let t = Instant::now();
            let r = c
                .post(url)
                .json(&serde_json::json!({"sql": "SELECT count(*) FROM requests"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            t.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let window = Duration::from_millis(DELAY_MS / 2);
    let (worst, n) = slowest_ack(&s, "during-query", window).await;
    let took = q.await.unwrap();
    assert!(
        took >= Duration::from_millis(DELAY_MS),
        "the query was not slow: {took:?}"
    );
    assert!(
        worst < Duration::from_millis(DELAY_MS / 4),
        "an acknowledgement waited {worst:?} behind a slow query ({n} batches)"
    );

    // Past the flush size: the flush starts and sticks at its commit point.
    let r = c
        .post(s.url("/v1/logs"))
        .body(body("fill", 20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (worst, n) = slowest_ack(&s, "during-flush", window).await;
    assert_eq!(flushes(&c, &s).await, 0.0, "the flush was not slow");
    assert!(
        worst < Duration::from_millis(DELAY_MS / 4),
        "an acknowledgement waited {worst:?} behind a slow flush ({n} batches)"
    );
    // The flush does finish, with everything acknowledged counted once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while flushes(&c, &s).await < 1.0 {
        assert!(Instant::now() < deadline, "the flush never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = crate::common::api_query(
        &c,
        &s,
        "SELECT count(*), count(DISTINCT request_id) FROM requests",
    )
    .await;
    assert_eq!(rows[0][0], rows[0][1]);
}

#[tokio::test]
async fn a_store_that_cannot_flush_answers_503_with_retry_after_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--flush-interval-ms",
            "3600000",
            "--max-buffer-rows",
            "100",
            "--ingest-deadline-ms",
            "1000",
        ],
        &[("FAILPOINTS", "store::flush_commit=return(120000)")],
    );
    let c = client();
    for (prefix, n) in [("a", 150), ("b", 100)] {
        let r = c
            .post(s.url("/v1/logs"))
            .body(body(prefix, n))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // 250 rows wait for a flush that cannot finish: past twice the flush size.
    let t = Instant::now();
    let r = c
        .post(s.url("/v1/logs"))
        .body(body("c", 10))
        .send()
        .await
        .unwrap();
    let waited = t.elapsed();
    assert_eq!(r.status(), 503);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("wait for a flush"),
        "{e}"
    );
    let r = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let why: Value = r.json().await.unwrap();
    assert!(
        why["reason"].as_str().unwrap().contains("wait for a flush"),
        "{why}"
    );
}
