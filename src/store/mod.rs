//! The store: one write pipeline for every source (HTTP, `ingest` files, the proxy).
//!
//! ```text
//! items ─▶ finish (validate, price) ─▶ dedupe ─▶ WAL append + fsync (group commit)
//!       ─▶ buffer (visible to queries) ─▶ flush: Parquet per hour partition ─▶ compaction
//! ```
//!
//! A batch is acknowledged once its WAL entry is synced. The flusher rotates the WAL, writes
//! the rotated rows as synced `*.parquet.pending` files, and commits them with one commit
//! record written under the buffer's write lock as the rows leave the buffer, so a query sees
//! each row exactly once; only then are the files renamed in and the rotated WAL segments
//! deleted (`commit` has the protocol; `faults` the points where tests break it). A writable
//! store holds the data dir's writer lock (`lock`). After a crash, recovery finishes or drops
//! the interrupted commit, then WAL replay skips rows whose ids already reached Parquet.

pub mod commit;
pub mod dedupe;
pub mod faults;
pub mod location;
pub mod lock;
pub mod parquet;
pub mod rollup;
pub mod view;
pub mod wal;

mod compact;
mod flush;

use object_store::ObjectStoreExt as _;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use futures::StreamExt;
use object_store::PutPayload;
use object_store::path::Path;
use tokio::sync::{Notify, RwLock, oneshot};

use crate::error::{Error, Result};
use crate::formats::Parsed;
use crate::prices::PriceCatalog;
use crate::record::{Feedback, Item, Record};
use crate::schema::{Table, feedback_to_batch, partition_of, requests_to_batch};
use dedupe::{Dedupe, KeySet, feedback_key, hour_bucket, request_key};
pub use location::Location;
use wal::Wal;

/// Knobs of the write pipeline.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The WAL directory; `None` writes without a WAL (batch import: the input file is the
    /// durable copy and re-running it is idempotent).
    pub wal_dir: Option<PathBuf>,
    /// Buffered rows that trigger a flush to Parquet.
    pub max_buffer_rows: usize,
    /// Longest time rows wait in the buffer.
    pub flush_interval: Duration,
    /// Partitions older than this many days are deleted (None: keep everything).
    pub retention_days: Option<u32>,
    /// Compact a partition once it has this many small files.
    pub compact_min_files: usize,
    /// Files below this size count as small.
    pub compact_small_bytes: u64,
    /// Request ids the dedupe index keeps in memory before dropping cold partitions.
    pub dedupe_budget: usize,
    /// Open for reading only: no recovery of interrupted writes (another process may be
    /// writing), no WAL. `switchyard query` opens the store this way.
    pub read_only: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            wal_dir: None,
            max_buffer_rows: 64 * 1024,
            flush_interval: Duration::from_secs(10),
            retention_days: None,
            compact_min_files: 8,
            compact_small_bytes: 16 << 20,
            dedupe_budget: 8_000_000,
            read_only: false,
        }
    }
}

/// Rows acknowledged but not yet in Parquet, in table schema (with partition columns).
#[derive(Default)]
pub struct Buffer {
    pub requests: Vec<RecordBatch>,
    pub feedback: Vec<RecordBatch>,
    pub rows: usize,
}

impl Buffer {
    fn push(&mut self, table: Table, batch: RecordBatch) {
        self.rows += batch.num_rows();
        match table {
            Table::Requests => self.requests.push(batch),
            Table::Feedback => self.feedback.push(batch),
            // Rollups are derived from flushed requests, never buffered.
            Table::RequestsHourly | Table::LatencyHourly => self.rows -= batch.num_rows(),
        }
    }

    pub fn batches(&self, table: Table) -> &[RecordBatch] {
        match table {
            Table::Requests => &self.requests,
            Table::Feedback => &self.feedback,
            Table::RequestsHourly | Table::LatencyHourly => &[],
        }
    }
}

/// Validated, priced records as Arrow batches, ready for [`Store::commit`].
pub struct Prepared {
    pub requests: Option<RecordBatch>,
    pub feedback: Option<RecordBatch>,
    pub rejected: Vec<Rejected>,
}

/// Keeps the rows whose flag is set (no copy when all are).
fn keep_rows(batch: RecordBatch, keep: Vec<bool>) -> Result<RecordBatch> {
    if keep.iter().all(|k| *k) {
        return Ok(batch);
    }
    Ok(arrow::compute::filter_record_batch(
        &batch,
        &arrow::array::BooleanArray::from(keep),
    )?)
}

/// What became of a batch of input records.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IngestOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// One rejected input record: its index in the batch and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub batches: AtomicU64,
    pub flushes: AtomicU64,
    pub flushed_rows: AtomicU64,
    pub flush_micros_total: AtomicU64,
    pub last_flush_micros: AtomicU64,
    pub compactions: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub buffered_rows: AtomicU64,
    /// Ingest batches waiting for their WAL sync.
    pub wal_queue: AtomicU64,
    pub flush_seconds: crate::metrics::Histogram,
}

enum WalCmd {
    Append {
        entries: Vec<(Table, RecordBatch)>,
        done: oneshot::Sender<Result<(), String>>,
    },
    Rotate {
        done: oneshot::Sender<Result<Snapshot, String>>,
    },
}

/// The rows a flush takes: the first `requests.len()` / `feedback.len()` buffer batches.
struct Snapshot {
    wal_seq: Option<u64>,
    requests: Vec<RecordBatch>,
    feedback: Vec<RecordBatch>,
}

struct Inner {
    loc: Location,
    cfg: StoreConfig,
    prices: std::sync::RwLock<Arc<PriceCatalog>>,
    buffer: Arc<RwLock<Buffer>>,
    dedupe: tokio::sync::Mutex<Dedupe>,
    wal_tx: Option<std::sync::Mutex<mpsc::Sender<WalCmd>>>,
    flush_lock: tokio::sync::Mutex<()>,
    flush_wanted: Notify,
    flushed: Notify,
    metrics: Metrics,
    closed: AtomicBool,
    /// The data dir's writer lock (`None` when read-only).
    lock: Option<lock::WriterLock>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Statistics of one flush.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlushStats {
    pub rows: usize,
    pub files: usize,
}

/// A new part file in `dir` (`part-TIME-RANDOM{suffix}.parquet`) and its `.pending` twin,
/// under which it is written before the rename that makes it visible.
fn part_paths(dir: &Path, suffix: &str) -> (Path, Path) {
    let name = format!(
        "part-{}-{}{suffix}.parquet",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%6f"),
        random_hex()
    );
    let tmp = dir.clone().join(format!("{name}.pending").as_str());
    (dir.clone().join(name.as_str()), tmp)
}

fn random_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl Store {
    /// Opens the store: finishes interrupted compactions, removes unfinished files, replays
    /// the WAL into the buffer and starts the WAL writer.
    pub async fn open(loc: Location, cfg: StoreConfig, prices: PriceCatalog) -> Result<Store> {
        let lock = if cfg.read_only {
            None
        } else {
            let lock = lock::WriterLock::acquire(&loc).await?;
            compact::recover_journals(&loc).await?;
            commit::recover(&loc, cfg.wal_dir.as_deref()).await?;
            Some(lock)
        };
        let (wal, replayed) = match cfg.wal_dir.as_ref().filter(|_| !cfg.read_only) {
            Some(dir) => {
                let dir = dir.clone();
                let (w, r) = tokio::task::spawn_blocking(move || Wal::open(&dir))
                    .await
                    .map_err(|e| Error::Internal(format!("WAL open task: {e}")))??;
                (Some(w), r)
            }
            None => (None, Vec::new()),
        };
        let buffer = Arc::new(RwLock::new(Buffer::default()));
        let wal_tx = wal.map(|w| {
            let (tx, rx) = mpsc::channel();
            let buf = buffer.clone();
            std::thread::Builder::new()
                .name("switchyard-wal".into())
                .spawn(move || wal_thread(w, rx, buf))
                .map(|_| std::sync::Mutex::new(tx))
        });
        let wal_tx = match wal_tx {
            Some(Ok(tx)) => Some(tx),
            Some(Err(e)) => return Err(Error::Internal(format!("WAL thread: {e}"))),
            None => None,
        };
        let store = Store {
            inner: Arc::new(Inner {
                dedupe: tokio::sync::Mutex::new(Dedupe::new(cfg.dedupe_budget)),
                loc,
                cfg,
                prices: std::sync::RwLock::new(Arc::new(prices)),
                buffer,
                wal_tx,
                flush_lock: tokio::sync::Mutex::new(()),
                flush_wanted: Notify::new(),
                flushed: Notify::new(),
                metrics: Metrics::default(),
                closed: AtomicBool::new(false),
                lock,
            }),
        };
        store.replay(replayed).await?;
        Ok(store)
    }

    async fn replay(&self, replayed: Vec<wal::Replayed>) -> Result<()> {
        if replayed.is_empty() {
            return Ok(());
        }
        let mut kept = 0usize;
        let mut skipped = 0usize;
        let mut dd = self.inner.dedupe.lock().await;
        let mut buf = self.inner.buffer.write().await;
        for r in replayed {
            let keep = self.replay_filter(&mut dd, r.table, &r.batch).await?;
            let batch = arrow::compute::filter_record_batch(
                &r.batch,
                &arrow::array::BooleanArray::from(keep.clone()),
            )?;
            skipped += keep.iter().filter(|k| !**k).count();
            kept += batch.num_rows();
            if batch.num_rows() > 0 {
                buf.push(r.table, batch);
            }
        }
        self.inner
            .metrics
            .buffered_rows
            .store(buf.rows as u64, Ordering::Relaxed);
        tracing::info!(rows = kept, already_stored = skipped, "replayed the WAL");
        Ok(())
    }

    /// Which rows of a replayed batch are new (not yet in Parquet).
    async fn replay_filter(
        &self,
        dd: &mut Dedupe,
        table: Table,
        batch: &RecordBatch,
    ) -> Result<Vec<bool>> {
        let ids = batch.column(0).as_string::<i32>();
        let ts = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        let mut keep = Vec::with_capacity(batch.num_rows());
        match table {
            Table::Requests => {
                for i in 0..batch.num_rows() {
                    let b = hour_bucket(ts.value(i));
                    self.ensure_loaded(dd, b).await?;
                    keep.push(dd.insert_request(b, request_key(ids.value(i))));
                }
            }
            Table::Feedback => {
                self.ensure_feedback_loaded(dd).await?;
                let metric = batch.column(2).as_string::<i32>();
                let source = batch.column(4).as_string::<i32>();
                for i in 0..batch.num_rows() {
                    let src = (!arrow::array::Array::is_null(source, i)).then(|| source.value(i));
                    keep.push(dd.insert_feedback(feedback_key(ids.value(i), metric.value(i), src)));
                }
            }
            // The WAL holds ingested tables only (its reader refuses other kinds).
            Table::RequestsHourly | Table::LatencyHourly => keep.resize(batch.num_rows(), false),
        }
        Ok(keep)
    }

    pub fn location(&self) -> &Location {
        &self.inner.loc
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn prices(&self) -> Arc<PriceCatalog> {
        match self.inner.prices.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_prices(&self, prices: PriceCatalog) {
        let mut guard = match self.inner.prices.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = Arc::new(prices);
    }

    /// The buffer, read-locked: hold the guard while planning a query so a concurrent flush
    /// cannot move rows between the buffer and Parquet under it.
    pub async fn read_buffer(&self) -> tokio::sync::RwLockReadGuard<'_, Buffer> {
        self.inner.buffer.read().await
    }

    /// Bytes held in WAL segments.
    pub fn wal_bytes(&self) -> u64 {
        self.inner
            .cfg
            .wal_dir
            .as_deref()
            .map(Wal::disk_bytes)
            .unwrap_or(0)
    }

    async fn ensure_loaded(&self, dd: &mut Dedupe, bucket: i64) -> Result<()> {
        if !dd.needs_load(bucket) {
            return Ok(());
        }
        let (date, hour) = partition_of(bucket * 3_600_000_000);
        let dir =
            self.inner
                .loc
                .path(&["requests", &format!("date={date}"), &format!("hour={hour}")]);
        let mut keys = KeySet::default();
        let view = self.inner.loc.committed();
        for f in parquet::list_files(&view, &dir).await? {
            for b in parquet::read_key_columns(&view, &f, &[0]).await? {
                if let Some(ids) = parquet::str_column(&b, 0) {
                    keys.extend(ids.iter().flatten().map(request_key));
                }
            }
        }
        dd.install(bucket, keys);
        Ok(())
    }

    async fn ensure_feedback_loaded(&self, dd: &mut Dedupe) -> Result<()> {
        if dd.feedback_loaded() {
            return Ok(());
        }
        let dir = self.inner.loc.path(&["feedback"]);
        let mut keys = KeySet::default();
        let view = self.inner.loc.committed();
        for f in parquet::list_files(&view, &dir).await? {
            for b in parquet::read_key_columns(&view, &f, &[0, 2, 4]).await? {
                let (Some(ids), Some(metric), Some(src)) = (
                    parquet::str_column(&b, 0),
                    parquet::str_column(&b, 1),
                    parquet::str_column(&b, 2),
                ) else {
                    continue;
                };
                for i in 0..b.num_rows() {
                    let s = (!arrow::array::Array::is_null(src, i)).then(|| src.value(i));
                    keys.insert(feedback_key(ids.value(i), metric.value(i), s));
                }
            }
        }
        dd.install_feedback(keys);
        Ok(())
    }

    /// Validates, prices, dedupes and durably appends parsed records; answers once the
    /// accepted ones are synced to the WAL (or buffered, without a WAL).
    pub async fn ingest(&self, parsed: Parsed) -> Result<IngestOutcome> {
        let prepared = self.prepare(parsed)?;
        self.commit(prepared).await
    }

    /// The CPU half of ingest, safe to run on many threads: validate and price each record
    /// and build the Arrow batches.
    pub fn prepare(&self, parsed: Parsed) -> Result<Prepared> {
        let prices = self.prices();
        let mut rejected: Vec<Rejected> = parsed
            .rejected
            .into_iter()
            .map(|(index, error)| Rejected { index, error })
            .collect();
        let mut requests: Vec<Record> = Vec::with_capacity(parsed.items.len());
        let mut feedback: Vec<Feedback> = Vec::new();
        for (index, item) in parsed.items {
            match item {
                Item::Request(r) => match r.finish(&prices) {
                    Ok(r) => requests.push(r),
                    Err(error) => rejected.push(Rejected { index, error }),
                },
                Item::Feedback(f) => match f.finish() {
                    Ok(f) => feedback.push(f),
                    Err(error) => rejected.push(Rejected { index, error }),
                },
            }
        }
        rejected.sort_by_key(|r| r.index);
        Ok(Prepared {
            requests: (!requests.is_empty())
                .then(|| requests_to_batch(&requests))
                .transpose()?,
            feedback: (!feedback.is_empty())
                .then(|| feedback_to_batch(&feedback))
                .transpose()?,
            rejected,
        })
    }

    /// The I/O half of ingest: drop records the store already holds, append the rest to the
    /// WAL and wait for the sync.
    pub async fn commit(&self, prepared: Prepared) -> Result<IngestOutcome> {
        if self.inner.cfg.read_only {
            return Err(Error::Unavailable("the store is open read-only".into()));
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Unavailable("the store is shutting down".into()));
        }
        let mut out = IngestOutcome {
            rejected: prepared.rejected,
            ..Default::default()
        };
        // Claim the keys before the WAL write, so concurrent batches cannot both win.
        let mut claimed_req: Vec<(i64, u64)> = Vec::new();
        let mut claimed_fb: Vec<u64> = Vec::new();
        let mut entries = Vec::with_capacity(2);
        {
            let mut dd = self.inner.dedupe.lock().await;
            if let Some(batch) = prepared.requests {
                let ids = batch.column(0).as_string::<i32>();
                let ts = batch.column(1).as_primitive::<TimestampMicrosecondType>();
                let mut keep = Vec::with_capacity(batch.num_rows());
                for i in 0..batch.num_rows() {
                    let b = hour_bucket(ts.value(i));
                    self.ensure_loaded(&mut dd, b).await?;
                    let k = request_key(ids.value(i));
                    let fresh = dd.insert_request(b, k);
                    if fresh {
                        claimed_req.push((b, k));
                    }
                    keep.push(fresh);
                }
                out.duplicates += keep.iter().filter(|k| !**k).count();
                entries.push((Table::Requests, keep_rows(batch, keep)?));
            }
            if let Some(batch) = prepared.feedback {
                self.ensure_feedback_loaded(&mut dd).await?;
                let ids = batch.column(0).as_string::<i32>();
                let metric = batch.column(2).as_string::<i32>();
                let source = batch.column(4).as_string::<i32>();
                let mut keep = Vec::with_capacity(batch.num_rows());
                for i in 0..batch.num_rows() {
                    let src = (!arrow::array::Array::is_null(source, i)).then(|| source.value(i));
                    let k = feedback_key(ids.value(i), metric.value(i), src);
                    let fresh = dd.insert_feedback(k);
                    if fresh {
                        claimed_fb.push(k);
                    }
                    keep.push(fresh);
                }
                out.duplicates += keep.iter().filter(|k| !**k).count();
                entries.push((Table::Feedback, keep_rows(batch, keep)?));
            }
        }
        entries.retain(|(_, b)| b.num_rows() > 0);
        out.accepted = entries.iter().map(|(_, b)| b.num_rows()).sum();
        let appended = if entries.is_empty() {
            Ok(())
        } else {
            let m = &self.inner.metrics;
            m.wal_queue.fetch_add(1, Ordering::Relaxed);
            let r = self.append(entries).await;
            m.wal_queue.fetch_sub(1, Ordering::Relaxed);
            r
        };
        if let Err(e) = appended {
            let mut dd = self.inner.dedupe.lock().await;
            for (b, k) in claimed_req {
                dd.remove_request(b, k);
            }
            for k in claimed_fb {
                dd.remove_feedback(k);
            }
            return Err(e);
        }
        let m = &self.inner.metrics;
        m.accepted.fetch_add(out.accepted as u64, Ordering::Relaxed);
        m.duplicates
            .fetch_add(out.duplicates as u64, Ordering::Relaxed);
        m.rejected
            .fetch_add(out.rejected.len() as u64, Ordering::Relaxed);
        m.batches.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    async fn append(&self, entries: Vec<(Table, RecordBatch)>) -> Result<()> {
        let rows: usize = entries.iter().map(|(_, b)| b.num_rows()).sum();
        match &self.inner.wal_tx {
            Some(tx) => {
                let (done, rx) = oneshot::channel();
                tx.lock()
                    .map_err(|_| Error::Internal("WAL channel poisoned".into()))?
                    .send(WalCmd::Append { entries, done })
                    .map_err(|_| Error::Unavailable("the WAL writer has stopped".into()))?;
                rx.await
                    .map_err(|_| Error::Unavailable("the WAL writer has stopped".into()))?
                    .map_err(|e| Error::Unavailable(format!("WAL write failed: {e}")))?;
                self.inner.metrics.wal_syncs.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let mut buf = self.inner.buffer.write().await;
                for (t, b) in entries {
                    buf.push(t, b);
                }
            }
        }
        let total = self
            .inner
            .metrics
            .buffered_rows
            .fetch_add(rows as u64, Ordering::Relaxed)
            + rows as u64;
        if total as usize >= self.inner.cfg.max_buffer_rows {
            self.inner.flush_wanted.notify_one();
            // Back-pressure: far past the flush size, wait for the flusher to catch up.
            while self.inner.metrics.buffered_rows.load(Ordering::Relaxed) as usize
                >= self.inner.cfg.max_buffer_rows * 2
            {
                let wait = self.inner.flushed.notified();
                self.inner.flush_wanted.notify_one();
                let _ = tokio::time::timeout(Duration::from_millis(200), wait).await;
            }
        }
        Ok(())
    }
}

fn wal_thread(mut wal: Wal, rx: mpsc::Receiver<WalCmd>, buffer: Arc<RwLock<Buffer>>) {
    type Waiters = Vec<oneshot::Sender<Result<(), String>>>;
    let commit = |wal: &mut Wal, entries: &mut Vec<(Table, RecordBatch)>, waiters: &mut Waiters| {
        if waiters.is_empty() {
            return;
        }
        let res = wal.append(entries).map_err(|e| e.to_string());
        if res.is_ok() {
            let mut buf = buffer.blocking_write();
            for (t, b) in entries.drain(..) {
                buf.push(t, b);
            }
        }
        entries.clear();
        for w in waiters.drain(..) {
            let _ = w.send(res.clone());
        }
    };
    let mut entries: Vec<(Table, RecordBatch)> = Vec::new();
    let mut waiters: Waiters = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut cmds = vec![first];
        while cmds.len() < 1024 {
            match rx.try_recv() {
                Ok(c) => cmds.push(c),
                Err(_) => break,
            }
        }
        for cmd in cmds {
            match cmd {
                WalCmd::Append { entries: e, done } => {
                    entries.extend(e);
                    waiters.push(done);
                }
                WalCmd::Rotate { done } => {
                    commit(&mut wal, &mut entries, &mut waiters);
                    let res = wal.rotate().map_err(|e| e.to_string()).map(|seq| {
                        let buf = buffer.blocking_read();
                        Snapshot {
                            wal_seq: Some(seq),
                            requests: buf.requests.clone(),
                            feedback: buf.feedback.clone(),
                        }
                    });
                    let _ = done.send(res);
                }
            }
        }
        commit(&mut wal, &mut entries, &mut waiters);
    }
}
