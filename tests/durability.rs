//! Crash safety: `serve` killed with SIGKILL during sustained ingest loses no acknowledged
//! record and counts none twice; SIGTERM flushes everything to Parquet.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Server, api_query, client, num, query_csv, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_sustained_ingest_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    // Flush often so the kill lands among flushes, compactions and WAL appends alike.
    let mut s = Server::start(
        dir.path(),
        &["--flush-interval-ms", "150", "--max-buffer-rows", "3000"],
        &[],
    );
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let base = s.base.clone();
    let mut senders = Vec::new();
    for w in 0..3 {
        let acked = acked.clone();
        let base = base.clone();
        senders.push(tokio::spawn(async move {
            let c = client();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut batch_no = 0;
            while Instant::now() < deadline {
                let ids: Vec<String> = (0..500).map(|i| format!("k-{w}-{batch_no}-{i}")).collect();
                // Re-send each batch once: duplicates must not survive the crash either.
                let body: String = ids
                    .iter()
                    .map(|id| record(id, "gpt-4o-mini", 100, 20) + "\n")
                    .collect();
                for _ in 0..2 {
                    match c
                        .post(format!("{base}/v1/logs"))
                        .body(body.clone())
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().extend(ids.iter().cloned());
                        }
                        _ => return,
                    }
                }
                batch_no += 1;
            }
        }));
    }
    // Let ingest run, then kill -9 mid-stream.
    let started = Instant::now();
    while acked.lock().unwrap().len() < 20_000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "ingest stalled"
        );
        assert!(
            !senders.iter().all(|h| h.is_finished()),
            "every sender stopped early"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9();
    for h in senders {
        h.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20_000);

    let s = Server::start(dir.path(), &[], &[]);
    let c = client();
    let rows = api_query(
        &c,
        &s,
        "SELECT count(*), count(DISTINCT request_id) FROM requests",
    )
    .await;
    let (n, distinct) = (num(&rows[0][0]), num(&rows[0][1]));
    assert_eq!(n, distinct, "a record was stored twice");
    let ids = api_query(&c, &s, "SELECT request_id FROM requests").await;
    let stored: HashSet<String> = ids
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost: {lost:?} (of {})",
        acked.len()
    );
}

#[tokio::test]
async fn sigterm_flushes_buffered_records_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &["--flush-interval-ms", "3600000"], &[]);
    let c = client();
    let body: String = (0..1000)
        .map(|i| record(&format!("t-{i}"), "gpt-4o", 10, 10) + "\n")
        .collect();
    let r: Value = c
        .post(s.url("/v1/logs"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["accepted"], 1000);
    assert!(s.terminate().success());
    // Everything is in Parquet now and the WAL holds no entry (a segment's header is 16 bytes).
    let entry_bytes: u64 = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        .map(|e| e.metadata().unwrap().len().saturating_sub(16))
        .sum();
    assert_eq!(entry_bytes, 0);
    let rows = query_csv(dir.path(), "SELECT count(*) FROM requests_stored");
    assert_eq!(rows[0][0], "1000");
}
