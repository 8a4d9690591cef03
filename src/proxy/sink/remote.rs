//! The remote sink: batches become segment files in a bounded disk queue, delivered oldest
//! first to `POST {url}/v1/logs` as NDJSON canonical records and removed only after a 2xx.
//!
//! A segment is `SEQ-RECORDS.ndjson`, written as `.tmp`, fsynced, renamed and its directory
//! fsynced before its records count as queued; leftover `.tmp` files (a crash mid-write) were
//! never queued and are removed at start. Segments waiting together go in one delivery (up to
//! 4 MiB). Segments on disk at start are sent again, oldest
//! first: after a crash between delivery and removal the server's `request_id` dedupe keeps a
//! re-send from counting twice. A failed delivery is retried with capped exponential backoff
//! and jitter; a 4xx other than 401/403/408/429 means the server refuses the segment's
//! records for good, so they count as failed and the segment is removed.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::{Shared, next_batch};
use crate::error::{Error, Result};
use crate::record::Record;
use crate::schema::requests_to_batch;

const SEGMENT_EXT: &str = "ndjson";
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Most bytes of joined segments sent in one delivery (`serve` takes 16 MiB bodies by default).
const DELIVERY_BYTES: u64 = 4 << 20;

/// One queued segment file.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    records: u64,
    bytes: u64,
}

/// The segment files of `dir`, oldest first.
struct DiskQueue {
    dir: PathBuf,
    segments: Mutex<VecDeque<Segment>>,
    next_seq: Mutex<u64>,
    /// Woken by a new segment and by the batcher's end.
    ready: Notify,
    batcher_done: AtomicBool,
}

impl DiskQueue {
    fn open(dir: &Path, s: &Shared) -> Result<DiskQueue> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut found: Vec<(u64, Segment)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some((seq, records)) = name
                .strip_suffix(&format!(".{SEGMENT_EXT}"))
                .and_then(|stem| stem.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            else {
                continue;
            };
            let bytes = entry.metadata().map_err(|e| Error::io(&path, e))?.len();
            found.push((
                seq,
                Segment {
                    path,
                    records,
                    bytes,
                },
            ));
        }
        found.sort_by_key(|(seq, _)| *seq);
        let next = found.last().map_or(0, |(seq, _)| seq + 1);
        let c = &s.counters;
        let (records, bytes) = found
            .iter()
            .fold((0, 0), |(r, b), (_, seg)| (r + seg.records, b + seg.bytes));
        c.disk_records.store(records, Ordering::Relaxed);
        c.disk_bytes.store(bytes, Ordering::Relaxed);
        if !found.is_empty() {
            tracing::info!(
                segments = found.len(),
                records,
                "proxy log queue: re-sending what is on disk"
            );
        }
        Ok(DiskQueue {
            dir: dir.to_path_buf(),
            segments: Mutex::new(found.into_iter().map(|(_, s)| s).collect()),
            next_seq: Mutex::new(next),
            ready: Notify::new(),
            batcher_done: AtomicBool::new(false),
        })
    }

    fn segments(&self) -> std::sync::MutexGuard<'_, VecDeque<Segment>> {
        self.segments.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes one batch as a durable segment; `Ok(false)` when the queue has no room for it.
    fn push(&self, body: &[u8], records: u64, s: &Shared) -> Result<bool> {
        let c = &s.counters;
        if c.disk_bytes.load(Ordering::Relaxed) + body.len() as u64 > s.opts.disk_queue_bytes {
            return Ok(false);
        }
        let seq = {
            let mut n = self.next_seq.lock().unwrap_or_else(PoisonError::into_inner);
            *n += 1;
            *n - 1
        };
        let path = self.dir.join(format!("{seq:020}-{records}.{SEGMENT_EXT}"));
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&path, e));
        }
        c.disk_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        c.disk_records.fetch_add(records, Ordering::Relaxed);
        c.queued.fetch_add(records, Ordering::Relaxed);
        self.segments().push_back(Segment {
            path,
            records,
            bytes: body.len() as u64,
        });
        self.ready.notify_one();
        Ok(true)
    }

    /// The oldest segments, as many as fit in `max_bytes` (at least one, if any).
    fn front(&self, max_bytes: u64) -> Vec<Segment> {
        let q = self.segments();
        let mut out: Vec<Segment> = Vec::new();
        let mut bytes = 0;
        for seg in q.iter() {
            if !out.is_empty() && bytes + seg.bytes > max_bytes {
                break;
            }
            bytes += seg.bytes;
            out.push(seg.clone());
        }
        out
    }

    /// Deletes delivered (or refused) oldest segments.
    fn pop(&self, segs: &[Segment], s: &Shared) {
        for seg in segs {
            if let Err(e) = std::fs::remove_file(&seg.path) {
                tracing::warn!(path = %seg.path.display(), error = %e, "cannot remove a delivered log segment");
            }
            let mut q = self.segments();
            if q.front().is_some_and(|f| f.path == seg.path) {
                q.pop_front();
            }
            let c = &s.counters;
            c.disk_bytes.fetch_sub(seg.bytes, Ordering::Relaxed);
            c.disk_records.fetch_sub(seg.records, Ordering::Relaxed);
        }
    }
}

/// NDJSON of canonical records: the `requests` batch of the records, rendered by Arrow's JSON
/// writer (the same columns `switchyard query` shows), with the cost as an exact decimal string,
/// no partition columns and no `cost_source` where the record had none (the server decides).
pub fn to_ndjson(records: &[Record]) -> Result<Vec<u8>> {
    let batch = requests_to_batch(records)?;
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (f, col) in schema.fields().iter().zip(batch.columns()) {
        match f.name().as_str() {
            // The partition columns: the receiver derives them from `ts`.
            "date" | "hour" => {}
            "cost_usd" => {
                columns.push(arrow::compute::cast(col, &DataType::Utf8)?);
                fields.push(Field::new(f.name(), DataType::Utf8, true));
            }
            "cost_source" => {
                let unset =
                    BooleanArray::from_iter(records.iter().map(|r| Some(r.cost_source.is_none())));
                columns.push(arrow::compute::nullif(col, &unset)?);
                fields.push(f.as_ref().clone().with_nullable(true));
            }
            _ => {
                columns.push(col.clone());
                fields.push(f.as_ref().clone());
            }
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let mut out = Vec::with_capacity(batch.get_array_memory_size());
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
        w.write(&batch)?;
        w.finish()?;
    }
    Ok(out)
}

pub(super) fn start(
    url: String,
    token: Option<String>,
    queue_dir: PathBuf,
    rx: mpsc::Receiver<Record>,
    s: Arc<Shared>,
) -> Result<Vec<JoinHandle<()>>> {
    let url = logs_url(&url)?;
    let client = reqwest::Client::builder()
        .timeout(s.opts.request_timeout)
        .build()
        .map_err(|e| Error::Config(format!("ingest client: {e}")))?;
    let queue = Arc::new(DiskQueue::open(&queue_dir, &s)?);
    Ok(vec![
        tokio::spawn(run_batcher(rx, queue.clone(), s.clone())),
        tokio::spawn(run_deliverer(queue, client, url, token, s)),
    ])
}

/// `POST` target of a base URL (`http://host:7070`) or a full `/v1/logs` URL.
fn logs_url(url: &str) -> Result<String> {
    let u = url.trim().trim_end_matches('/');
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(Error::Config(format!(
            "ingest URL {url:?} must start with http:// or https://"
        )));
    }
    Ok(if u.ends_with("/v1/logs") {
        u.to_string()
    } else {
        format!("{u}/v1/logs")
    })
}

/// Channel → disk: each batch encoded and fsynced on the blocking pool.
async fn run_batcher(mut rx: mpsc::Receiver<Record>, queue: Arc<DiskQueue>, s: Arc<Shared>) {
    let mut buf = Vec::with_capacity(s.opts.batch_max);
    while next_batch(&mut rx, &mut buf, &s).await {
        let batch = std::mem::replace(&mut buf, Vec::with_capacity(s.opts.batch_max));
        let n = batch.len() as u64;
        let (q, sh) = (queue.clone(), s.clone());
        let started = Instant::now();
        let res = tokio::task::spawn_blocking(move || {
            let body = to_ndjson(&batch)?;
            q.push(&body, n, &sh)
        })
        .await;
        s.counters.batch_seconds.observe(started.elapsed());
        match res {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => s.dropped(n, "the disk queue is at its byte limit"),
            Ok(Err(e)) => s.dropped(n, &format!("cannot write the disk queue: {e}")),
            Err(e) => s.dropped(n, &format!("disk queue task: {e}")),
        }
    }
    queue.batcher_done.store(true, Ordering::Release);
    queue.ready.notify_one();
}

/// What became of one delivery.
enum Delivery {
    Done {
        written: u64,
        refused: u64,
    },
    /// The server refuses these records for good.
    Refused(String),
    /// Worth retrying: the server is down, overloaded or misconfigured.
    Retry(String),
}

async fn deliver(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    segs: &[Segment],
) -> Delivery {
    let mut body = Vec::with_capacity(segs.iter().map(|s| s.bytes as usize).sum());
    for seg in segs {
        match tokio::fs::read(&seg.path).await {
            Ok(b) => body.extend_from_slice(&b),
            Err(e) => {
                return Delivery::Refused(format!("cannot read {}: {e}", seg.path.display()));
            }
        }
    }
    let records: u64 = segs.iter().map(|s| s.records).sum();
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Delivery::Retry(format!("{url}: {e}")),
    };
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        let refused = v
            .get("rejected")
            .and_then(serde_json::Value::as_array)
            .map_or(0, |a| a.len() as u64);
        let written = match (n("accepted"), n("duplicates")) {
            (Some(a), Some(d)) => a + d,
            _ => records.saturating_sub(refused),
        };
        return Delivery::Done { written, refused };
    }
    let why = format!("{url} answered {status}: {}", text.trim());
    match status.as_u16() {
        401 | 403 | 408 | 429 => Delivery::Retry(why),
        400..=499 => Delivery::Refused(why),
        _ => Delivery::Retry(why),
    }
}

/// Disk → ingest server, oldest segment first, until closed (and drained or out of time).
async fn run_deliverer(
    queue: Arc<DiskQueue>,
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    s: Arc<Shared>,
) {
    let mut backoff = FIRST_BACKOFF;
    // After a refusal of several joined segments, send one at a time to find the bad one.
    let mut single = false;
    loop {
        let segs = queue.front(if single { 0 } else { DELIVERY_BYTES });
        let closed = queue.batcher_done.load(Ordering::Acquire);
        if closed && !segs.is_empty() && s.deadline_passed() {
            tracing::warn!(
                records = s.counters.disk_records.load(Ordering::Relaxed),
                "proxy log queue: not delivered by the end of shutdown; the records stay on disk for the next start"
            );
            return;
        }
        if segs.is_empty() {
            if queue.batcher_done.load(Ordering::Acquire) {
                return;
            }
            queue.ready.notified().await;
            continue;
        }
        // While closing, no delivery outlives the close deadline.
        let delivery = tokio::select! {
            d = deliver(&client, &url, token.as_deref(), &segs) => d,
            () = s.until_close_deadline() => Delivery::Retry("shutdown deadline reached".into()),
        };
        match delivery {
            Delivery::Done { written, refused } => {
                queue.pop(&segs, &s);
                s.counters.written.fetch_add(written, Ordering::Relaxed);
                if refused > 0 {
                    s.failed(refused, "the ingest server rejected invalid records");
                }
                backoff = FIRST_BACKOFF;
                single = false;
            }
            Delivery::Refused(_) if segs.len() > 1 => single = true,
            Delivery::Refused(why) => {
                queue.pop(&segs, &s);
                s.failed(segs.iter().map(|s| s.records).sum(), &why);
                single = false;
            }
            Delivery::Retry(why) => {
                s.counters.retries.fetch_add(1, Ordering::Relaxed);
                if let Some(held) = s.counters.fail_warn.ready(s.epoch) {
                    tracing::warn!(error = %why, warnings_held_back = held, retry_in_ms = backoff.as_millis() as u64, "proxy log delivery failed; retrying");
                }
                let jitter = jitter_ms(backoff.as_millis() as u64 / 2);
                let mut pause = backoff + Duration::from_millis(jitter);
                if let Some(d) = s.close_deadline() {
                    pause = pause.min(d.saturating_duration_since(Instant::now()));
                }
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(s.opts.max_backoff);
            }
        }
    }
}

/// Up to `max` ms of jitter, from the clock's sub-second nanoseconds.
fn jitter_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    nanos % (max + 1)
}
