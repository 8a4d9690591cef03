//! The WAL under damage: torn tails, torn and corrupt entries, failed writes and syncs
//! (failpoints), old and future formats. Acknowledged entries survive a restart, and what
//! was damaged is reported (quarantine directory, `/metrics`, log).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Server, api_query, client, metric, record, run};

/// Flushes never happen by themselves: rows stay in the WAL until a restart replays them.
const NO_FLUSH: &[&str] = &["--flush-interval-ms", "3600000"];

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn post(c: &reqwest::Client, s: &Server, ids: &[String]) -> (StatusCode, Value) {
    let body: String = ids
        .iter()
        .map(|id| record(id, "gpt-4o-mini", 100, 20) + "\n")
        .collect();
    let r = c.post(s.url("/v1/logs")).body(body).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_ok(c: &reqwest::Client, s: &Server, ids: &[String]) {
    let (status, body) = post(c, s, ids).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], ids.len(), "{body}");
}

async fn stored_ids(c: &reqwest::Client, s: &Server) -> HashSet<String> {
    let rows = api_query(c, s, "SELECT request_id FROM requests").await;
    let all: Vec<String> = rows
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    let set: HashSet<String> = all.iter().cloned().collect();
    assert_eq!(set.len(), all.len(), "a row is stored twice");
    set
}

fn assert_has(set: &HashSet<String>, ids: &[String], what: &str) {
    let missing: Vec<_> = ids.iter().filter(|i| !set.contains(*i)).take(3).collect();
    assert!(missing.is_empty(), "{what}: missing {missing:?}");
}

fn assert_lacks(set: &HashSet<String>, ids: &[String], what: &str) {
    let there: Vec<_> = ids.iter().filter(|i| set.contains(*i)).take(3).collect();
    assert!(there.is_empty(), "{what}: unexpectedly stored {there:?}");
}

/// WAL segments, oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Byte ranges of a segment's entries (16-byte segment header, then 16-byte entry headers
/// with the payload length at bytes 8..12).
fn entries(bytes: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(&bytes[..8], b"SYWALSEG");
    let mut out = Vec::new();
    let mut at = 16;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push((at, at + 16 + len));
        at += 16 + len;
    }
    assert_eq!(at, bytes.len(), "segment does not end on an entry boundary");
    out
}

/// The segment holding entries (the others hold just their header).
fn segment_with_entries(data: &Path) -> PathBuf {
    let with: Vec<PathBuf> = segments(data)
        .into_iter()
        .filter(|p| std::fs::metadata(p).unwrap().len() > 16)
        .collect();
    assert_eq!(with.len(), 1, "{with:?}");
    with[0].clone()
}

fn quarantined(data: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data.join("wal").join("quarantine")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_every_acknowledged_entry_replays() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let (a, b) = (ids("tail-a", 50), ids("tail-b", 50));
    let mut s = Server::start(dir.path(), NO_FLUSH, &[]);
    post_ok(&c, &s, &a).await;
    post_ok(&c, &s, &b).await;
    s.kill9();
    // A crash in the middle of a third write: half an entry at the end of the segment.
    let seg = segment_with_entries(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let good_len = bytes.len();
    let (s0, e0) = entries(&bytes)[0];
    let half = bytes[s0..s0 + (e0 - s0) / 2].to_vec();
    bytes.extend_from_slice(&half);
    std::fs::write(&seg, &bytes).unwrap();

    let s = Server::start(dir.path(), NO_FLUSH, &[]);
    let stored = stored_ids(&c, &s).await;
    assert_eq!(stored.len(), 100);
    assert_has(&stored, &a, "first batch");
    assert_has(&stored, &b, "second batch");
    assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, good_len);
    assert!(
        quarantined(dir.path()).is_empty(),
        "a torn tail is not damage"
    );
    assert_eq!(
        metric(&c, &s, "switchyard_wal_quarantined_segments_total").await,
        0.0
    );
}

#[tokio::test]
async fn a_torn_entry_mid_segment_is_quarantined_and_the_entries_around_it_replay() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let (a, b, x) = (ids("mid-a", 40), ids("mid-b", 40), ids("mid-x", 40));
    let mut s = Server::start(dir.path(), NO_FLUSH, &[]);
    post_ok(&c, &s, &a).await;
    post_ok(&c, &s, &x).await;
    post_ok(&c, &s, &b).await;
    s.kill9();
    // Rewrite the segment as if the write of `x` had been torn and `b` appended after it,
    // which is what a failed write left behind before rollbacks.
    let seg = segment_with_entries(dir.path());
    let bytes = std::fs::read(&seg).unwrap();
    let e = entries(&bytes);
    let mut torn = bytes[..e[0].1].to_vec();
    torn.extend_from_slice(&bytes[e[1].0..e[1].0 + (e[1].1 - e[1].0) / 3]);
    torn.extend_from_slice(&bytes[e[2].0..e[2].1]);
    std::fs::write(&seg, &torn).unwrap();

    let log = dir.path().join("serve.log");
    let s = Server::start_logged(dir.path(), NO_FLUSH, &[], &log);
    let stored = stored_ids(&c, &s).await;
    assert_has(&stored, &a, "the entry before the torn one");
    assert_has(&stored, &b, "the entry after the torn one");
    assert_lacks(&stored, &x, "the torn entry");
    let q = quarantined(dir.path());
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(
        std::fs::read(&q[0]).unwrap(),
        torn,
        "the damaged bytes are kept"
    );
    assert_eq!(
        metric(&c, &s, "switchyard_wal_quarantined_segments_total").await,
        1.0
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("quarantine"), "{text}");
    assert!(
        text.contains(seg.file_name().unwrap().to_str().unwrap()),
        "{text}"
    );
    // The good entries stay in the log until a flush: a second crash loses nothing either.
    drop(s);
    let s = Server::start(dir.path(), NO_FLUSH, &[]);
    let again = stored_ids(&c, &s).await;
    assert_eq!(again, stored);
}

#[tokio::test]
async fn a_corrupt_segment_before_the_last_is_quarantined_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let (a1, a2, a3, b) = (
        ids("seg-a1", 30),
        ids("seg-a2", 30),
        ids("seg-a3", 30),
        ids("seg-b", 30),
    );
    let mut s = Server::start(dir.path(), NO_FLUSH, &[]);
    for batch in [&a1, &a2, &a3] {
        post_ok(&c, &s, batch).await;
    }
    s.kill9();
    let first = segment_with_entries(dir.path());
    // A second run writes a later segment.
    let mut s = Server::start(dir.path(), NO_FLUSH, &[]);
    post_ok(&c, &s, &b).await;
    s.kill9();
    // A flipped bit in the middle entry of the first segment (disk damage).
    let mut bytes = std::fs::read(&first).unwrap();
    let e = entries(&bytes);
    let mid = (e[1].0 + e[1].1) / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    assert!(segments(dir.path()).last().unwrap() > &first);

    let s = Server::start(dir.path(), NO_FLUSH, &[]);
    let stored = stored_ids(&c, &s).await;
    assert_has(&stored, &a1, "entry before the damage");
    assert_has(&stored, &a3, "entry after the damage");
    assert_has(&stored, &b, "the later segment");
    assert_lacks(&stored, &a2, "the corrupt entry");
    assert_eq!(quarantined(dir.path()).len(), 1);
    assert_eq!(
        metric(&c, &s, "switchyard_wal_quarantined_segments_total").await,
        1.0
    );
}

#[tokio::test]
async fn a_failed_append_is_rolled_back_and_later_appends_replay() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let (a, x, b) = (ids("fail-a", 20), ids("fail-x", 20), ids("fail-b", 20));
    // The second write stops halfway and fails, as on a full disk.
    let mut s = Server::start(
        dir.path(),
        NO_FLUSH,
        &[("FAILPOINTS", "store::wal_write=1*off->1*return->off")],
    );
    post_ok(&c, &s, &a).await;
    let (status, body) = post(&c, &s, &x).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("WAL write"),
        "{body}"
    );
    post_ok(&c, &s, &b).await;
    // The batch that failed can be sent again: its keys were given back.
    post_ok(&c, &s, &x).await;
    let r = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "a failed write is not fatal");
    s.kill9();

    let s = Server::start(dir.path(), NO_FLUSH, &[]);
    let stored = stored_ids(&c, &s).await;
    assert_eq!(stored.len(), 60);
    assert_has(&stored, &a, "before the failed write");
    assert_has(&stored, &b, "after the failed write");
    assert!(
        quarantined(dir.path()).is_empty(),
        "the rollback left no damage"
    );
}

#[tokio::test]
async fn a_failed_sync_stops_ingest_with_503_and_not_ready_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let (a, x, y) = (ids("sync-a", 20), ids("sync-x", 20), ids("sync-y", 20));
    let mut s = Server::start(
        dir.path(),
        NO_FLUSH,
        &[("FAILPOINTS", "store::wal_sync=1*off->1*return->off")],
    );
    post_ok(&c, &s, &a).await;
    let (status, body) = post(&c, &s, &x).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("sync"), "{body}");
    // The sync would succeed now; that proves nothing, so ingest stays stopped.
    let (status, body) = post(&c, &s, &y).await;
    assert_eq!(status, 503, "{body}");
    let r = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let why: Value = r.json().await.unwrap();
    assert!(why["reason"].as_str().unwrap().contains("sync"), "{why}");
    assert_eq!(metric(&c, &s, "switchyard_ready").await, 0.0);
    s.kill9();

    let s = Server::start(dir.path(), NO_FLUSH, &[]);
    let r = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let stored = stored_ids(&c, &s).await;
    assert_has(&stored, &a, "acknowledged before the failed sync");
    assert_lacks(&stored, &y, "refused after the failed sync");
}

/// A segment of the first format (no segment header, `SYW1` entries), written by an older
/// release with fewer columns.
fn v1_segment(ids: &[String]) -> Vec<u8> {
    use arrow::ipc::writer::StreamWriter;
    use switchyard::prices::PriceCatalog;
    use switchyard::record::Record;
    let cat = PriceCatalog::embedded().unwrap();
    let records: Vec<Record> = ids
        .iter()
        .map(|id| {
            Record {
                request_id: id.clone(),
                ts_us: crate::common::us("2026-11-20T10:00:00Z"),
                model: "gpt-4o-mini".into(),
                prompt_tokens: Some(10),
                completion_tokens: Some(5),
                ..Default::default()
            }
            .finish(&cat)
            .unwrap()
        })
        .collect();
    let batch = switchyard::schema::requests_to_batch(&records).unwrap();
    // The older release had no `route` column.
    let i = batch.schema().index_of("route").unwrap();
    let mut old = batch.clone();
    old.remove_column(i);
    let mut payload = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut payload, &old.schema()).unwrap();
        w.write(&old).unwrap();
        w.finish().unwrap();
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"SYW1");
    out.extend_from_slice(&[1, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

#[tokio::test]
async fn a_segment_of_the_older_format_is_converted_on_replay() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    let old = ids("v1", 25);
    std::fs::write(wal.join("00000000000000000007.wal"), v1_segment(&old)).unwrap();
    let c = client();
    let s = Server::start(dir.path(), NO_FLUSH, &[]);
    let stored = stored_ids(&c, &s).await;
    assert_eq!(stored.len(), 25);
    assert_has(&stored, &old, "the v1 segment");
    let rows = api_query(&c, &s, "SELECT count(*) FROM requests WHERE route IS NULL").await;
    assert_eq!(rows[0][0], 25);
}

#[test]
fn a_segment_of_a_newer_format_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    let mut h = Vec::new();
    h.extend_from_slice(b"SYWALSEG");
    h.extend_from_slice(&9u32.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    let name = "00000000000000000003.wal";
    std::fs::write(wal.join(name), &h).unwrap();
    let out = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(name) && err.contains("format version 9"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
