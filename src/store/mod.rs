//! The store: one write pipeline for every source (HTTP, `ingest` files, the proxy).
//!
//! ```text
//! items ─▶ finish (validate, price) ─▶ dedupe ─▶ WAL append + fsync (group commit)
//!       ─▶ buffer (visible to queries) ─▶ flush: Parquet per hour partition ─▶ compaction
//! ```
//!
//! A batch is acknowledged once its WAL entry is synced, and it waits for nothing else: the
//! WAL writer publishes synced rows by swapping in a new immutable buffer snapshot
//! (`buffer`), and dedupe loads partitions with no lock held (`claim`). The flusher rotates
//! the WAL, writes the rotated rows as `*.parquet.pending` files, then, under the commit lock
//! (which queries hold while planning), makes them visible and swaps in a buffer without
//! those rows, so a query sees each row exactly once; only then are the rotated WAL segments
//! deleted (`commit` has the commit protocol; `faults` the points where tests break it). A
//! writable store holds the data dir's writer lock (`lock`). After a crash, recovery finishes
//! or drops the interrupted commit, then WAL replay skips rows whose ids already reached
//! Parquet.
//!
//! Back-pressure: while the buffer holds more than twice its flush size, a batch waits for a
//! flush at most `ingest_deadline`, then is refused (503 with `Retry-After`) without being
//! written. A failed WAL sync refuses every batch until restart (`health`).

pub mod buffer;
pub mod commit;
pub mod dedupe;
pub mod faults;
pub mod health;
pub mod lease;
pub mod location;
pub mod lock;
pub mod parquet;
pub mod quality;
pub mod rollup;
pub mod view;
pub mod wal;

mod claim;
mod compact;
mod flush;

use object_store::ObjectStoreExt as _;
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

pub use buffer::Buffer;
use buffer::{Published, ReadView};
use health::Health;

use crate::error::{Error, Result};
use crate::formats::{self, Format, Parsed};
use crate::prices::PriceCatalog;
use crate::schema::{Table, partition_of};
use dedupe::{Dedupe, hour_bucket};
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
    /// Keys the dedupe index keeps in memory before dropping cold partitions (8 bytes each).
    pub dedupe_budget: usize,
    /// Longest time a batch waits for a flush while the buffer is past its back-pressure limit
    /// (twice `max_buffer_rows`) before it is refused with 503 and `Retry-After`
    /// (`Duration::MAX`: no deadline).
    pub ingest_deadline: Duration,
    /// Open for reading only: no recovery of interrupted writes (another process may be
    /// writing), no WAL. `switchyard query` opens the store this way.
    pub read_only: bool,
    /// This writer's node id (`--node-id`); `None`: the one kept in the WAL dir
    /// (`store::lock::node_id`).
    pub node_id: Option<String>,
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
            dedupe_budget: 4_000_000,
            ingest_deadline: Duration::from_secs(10),
            read_only: false,
            node_id: None,
        }
    }
}

/// Validated, priced records as Arrow batches, ready for [`Store::commit`].
#[derive(Default)]
pub struct Prepared {
    pub requests: Option<RecordBatch>,
    pub feedback: Option<RecordBatch>,
    pub rejected: Vec<Rejected>,
}

impl Prepared {
    fn of(cols: formats::ColumnBatches) -> Prepared {
        Prepared {
            requests: cols.requests,
            feedback: cols.feedback,
            rejected: cols
                .rejected
                .into_iter()
                .map(|(index, error)| Rejected { index, error })
                .collect(),
        }
    }
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
    /// Damaged WAL segments moved to `quarantine/` when the store opened.
    pub wal_quarantined: AtomicU64,
    /// Batches refused because flushes did not keep up within the deadline.
    pub overloaded: AtomicU64,
    /// Ingest batches waiting for their WAL sync.
    pub wal_queue: AtomicU64,
    pub flush_seconds: crate::metrics::Histogram,
}

enum WalCmd {
    Append {
        entries: Vec<(Table, RecordBatch)>,
        done: oneshot::Sender<Result<usize, String>>,
    },
    Rotate {
        done: oneshot::Sender<Result<Snapshot, String>>,
    },
}

/// The rows a flush takes: the first `groups` groups of the buffer.
struct Snapshot {
    wal_seq: Option<u64>,
    requests: Vec<RecordBatch>,
    feedback: Vec<RecordBatch>,
    groups: usize,
}

impl Snapshot {
    fn of(wal_seq: Option<u64>, buffer: &Buffer) -> Snapshot {
        Snapshot {
            wal_seq,
            requests: buffer.batches(Table::Requests),
            feedback: buffer.batches(Table::Feedback),
            groups: buffer.groups(),
        }
    }
}

struct Inner {
    loc: Location,
    cfg: StoreConfig,
    prices: std::sync::RwLock<Arc<PriceCatalog>>,
    buffer: Arc<Published>,
    /// Held by readers while planning and by flush and compaction around their commit point.
    commit: RwLock<()>,
    dedupe: std::sync::Mutex<Dedupe>,
    health: Arc<Health>,
    wal_tx: Option<std::sync::Mutex<mpsc::Sender<WalCmd>>>,
    flush_lock: tokio::sync::Mutex<()>,
    flush_wanted: Notify,
    flushed: Notify,
    metrics: Metrics,
    closed: AtomicBool,
    /// The data dir's writer lock (`None` when read-only).
    lock: Option<lock::WriterLock>,
    /// Bumped by every commit of this process (flush, compaction, retention): readers that
    /// cache file listings drop them when it moves.
    generation: AtomicU64,
    quality: std::sync::Mutex<quality::QualityState>,
    /// The UTC day before which the rollups' days were last merged (`compact::merge_rollup_days`).
    rollups_merged_before: std::sync::Mutex<Option<String>>,
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

pub(crate) fn random_hex() -> String {
    use rand::RngCore;
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl Store {
    /// Opens the store: finishes interrupted compactions, removes unfinished files, replays
    /// the WAL into the buffer and starts the WAL writer.
    pub async fn open(mut loc: Location, cfg: StoreConfig, prices: PriceCatalog) -> Result<Store> {
        let lock = if cfg.read_only {
            None
        } else {
            loc.node = lock::node_id(cfg.node_id.as_deref(), cfg.wal_dir.as_deref())?;
            let lock = lock::WriterLock::acquire(&loc).await?;
            compact::recover_journals(&loc).await?;
            commit::recover(&loc, cfg.wal_dir.as_deref()).await?;
            Some(lock)
        };
        let (wal, replayed, quarantined) = match cfg.wal_dir.as_ref().filter(|_| !cfg.read_only) {
            Some(dir) => {
                let dir = dir.clone();
                let o = tokio::task::spawn_blocking(move || Wal::open(&dir))
                    .await
                    .map_err(|e| Error::Internal(format!("WAL open task: {e}")))??;
                (Some(o.wal), o.replayed, o.quarantined.len())
            }
            None => (None, Vec::new(), 0),
        };
        let buffer = Arc::new(Published::default());
        let health = Arc::new(Health::default());
        let wal_tx = wal.map(|w| {
            let (tx, rx) = mpsc::channel();
            let buf = buffer.clone();
            let health = health.clone();
            std::thread::Builder::new()
                .name("switchyard-wal".into())
                .spawn(move || wal_thread(w, rx, buf, health))
                .map(|_| std::sync::Mutex::new(tx))
        });
        let wal_tx = match wal_tx {
            Some(Ok(tx)) => Some(tx),
            Some(Err(e)) => return Err(Error::Internal(format!("WAL thread: {e}"))),
            None => None,
        };
        let store = Store {
            inner: Arc::new(Inner {
                dedupe: std::sync::Mutex::new(Dedupe::new(cfg.dedupe_budget)),
                commit: RwLock::new(()),
                health,
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
                generation: AtomicU64::new(0),
                quality: Default::default(),
                rollups_merged_before: Default::default(),
            }),
        };
        store
            .inner
            .metrics
            .wal_quarantined
            .store(quarantined as u64, Ordering::Relaxed);
        store.replay(replayed).await?;
        Ok(store)
    }

    async fn replay(&self, replayed: Vec<wal::Replayed>) -> Result<()> {
        if replayed.is_empty() {
            return Ok(());
        }
        let mut kept = 0usize;
        let mut skipped = 0usize;
        let mut claims = claim::Claims::default();
        for r in replayed {
            let keep = self.claim(r.table, &r.batch, &mut claims).await?;
            skipped += keep.iter().filter(|k| !**k).count();
            let batch = keep_rows(r.batch, keep)?;
            kept += batch.num_rows();
            if batch.num_rows() > 0 {
                self.inner.buffer.push(vec![(r.table, batch)]);
            }
        }
        tracing::info!(rows = kept, already_stored = skipped, "replayed the WAL");
        Ok(())
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

    /// The buffer as a query plans against it: hold the view while planning so no flush or
    /// compaction commits (moves rows between the buffer and Parquet) under it. Ingest never
    /// waits for it.
    pub async fn read_buffer(&self) -> ReadView<'_> {
        let commit = self.inner.commit.read().await;
        buffer::pause("store::query_plan").await;
        ReadView::new(commit, &self.inner.buffer.load())
    }

    /// Moves with every commit this process makes; `None` when another process may be
    /// committing unseen (the store is open read-only, or is a bucket with many writers).
    pub fn generation(&self) -> Option<u64> {
        // A bucket has other writers; a local data dir has this one only (its lock).
        let sole_writer = !self.inner.cfg.read_only && self.inner.loc.local_dir.is_some();
        sole_writer.then(|| self.inner.generation.load(Ordering::Acquire))
    }

    /// The quality rollup's state (see `quality`); never held across an await.
    pub(crate) fn quality_state(&self) -> std::sync::MutexGuard<'_, quality::QualityState> {
        match self.inner.quality.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(crate) fn bump_generation(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Rows acknowledged but not yet in Parquet.
    pub fn buffered_rows(&self) -> usize {
        self.inner.buffer.load().rows()
    }

    /// `Err(reason)` while the store cannot make progress: the WAL stopped after a failed
    /// sync, or flushes fail and the buffer is past its back-pressure limit.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if let Some(r) = self.inner.health.wal_fatal() {
            return Err(r.to_string());
        }
        if let Some(e) = self.inner.health.flush_error() {
            return Err(format!("flushes to the data dir are failing: {e}"));
        }
        if self.buffered_rows() >= self.backpressure_rows() {
            return Err(format!(
                "{} rows wait for a flush, past the limit of {}",
                self.buffered_rows(),
                self.backpressure_rows()
            ));
        }
        Ok(())
    }

    fn backpressure_rows(&self) -> usize {
        self.inner.cfg.max_buffer_rows.saturating_mul(2).max(1)
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
        let mut cols = formats::Columns::new(parsed.items.len(), &prices);
        for (index, item) in parsed.items {
            formats::Sink::items(&mut cols, index, Ok(vec![item]));
        }
        cols.rejected.extend(parsed.rejected);
        Ok(Prepared::of(cols.finish()?))
    }

    /// [`Store::prepare`] of a body, parsed straight into Arrow columns (see
    /// `formats::parse_columns`); `None` when the body holds no records at all.
    pub fn prepare_body(
        &self,
        body: &[u8],
        format: Format,
        now_us: i64,
    ) -> Result<Option<Prepared>> {
        let prices = self.prices();
        let cols = formats::parse_columns(body, format, now_us, &prices).finish()?;
        if cols.requests.is_none() && cols.feedback.is_none() && cols.rejected.is_empty() {
            return Ok(None);
        }
        Ok(Some(Prepared::of(cols)))
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
        self.admit().await?;
        let mut out = IngestOutcome {
            rejected: prepared.rejected,
            ..Default::default()
        };
        // Claim the keys before the WAL write, so concurrent batches cannot both win.
        let mut claims = claim::Claims::default();
        let mut entries = Vec::with_capacity(2);
        for (table, batch) in [
            (Table::Requests, prepared.requests),
            (Table::Feedback, prepared.feedback),
        ] {
            let Some(batch) = batch else { continue };
            let keep = match self.claim(table, &batch, &mut claims).await {
                Ok(k) => k,
                Err(e) => {
                    self.release(claims);
                    return Err(e);
                }
            };
            out.duplicates += keep.iter().filter(|k| !**k).count();
            entries.push((table, keep_rows(batch, keep)?));
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
            self.release(claims);
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

    /// Back-pressure before a batch is taken: refused at once while the WAL is stopped; while
    /// the buffer is past its limit, it waits for flushes at most the ingest deadline.
    async fn admit(&self) -> Result<()> {
        if let Some(r) = self.inner.health.wal_fatal() {
            return Err(Error::Unavailable(r.to_string()));
        }
        let limit = self.backpressure_rows();
        if self.buffered_rows() < limit {
            return Ok(());
        }
        // `None`: a deadline too far to count (batch import waits as long as it takes).
        let deadline = Instant::now().checked_add(self.inner.cfg.ingest_deadline);
        while self.buffered_rows() >= limit {
            let now = Instant::now();
            let left =
                deadline.map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
            if left.is_zero() {
                self.inner
                    .metrics
                    .overloaded
                    .fetch_add(1, Ordering::Relaxed);
                let why = self
                    .inner
                    .health
                    .flush_error()
                    .map(|e| format!("; the last flush failed: {e}"))
                    .unwrap_or_default();
                return Err(Error::Overloaded {
                    reason: format!(
                        "{} rows wait for a flush (limit {limit}) and none finished within {} ms{why}",
                        self.buffered_rows(),
                        self.inner.cfg.ingest_deadline.as_millis()
                    ),
                    retry_after: self.inner.cfg.flush_interval.max(Duration::from_secs(1)),
                });
            }
            let wait = self.inner.flushed.notified();
            self.inner.flush_wanted.notify_one();
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), wait).await;
        }
        Ok(())
    }

    async fn append(&self, entries: Vec<(Table, RecordBatch)>) -> Result<()> {
        let total = match &self.inner.wal_tx {
            Some(tx) => {
                let (done, rx) = oneshot::channel();
                tx.lock()
                    .map_err(|_| Error::Internal("WAL channel poisoned".into()))?
                    .send(WalCmd::Append { entries, done })
                    .map_err(|_| Error::Unavailable("the WAL writer has stopped".into()))?;
                let total = rx
                    .await
                    .map_err(|_| Error::Unavailable("the WAL writer has stopped".into()))?
                    .map_err(Error::Unavailable)?;
                self.inner.metrics.wal_syncs.fetch_add(1, Ordering::Relaxed);
                total
            }
            None => self.inner.buffer.push(entries),
        };
        if total >= self.inner.cfg.max_buffer_rows {
            self.inner.flush_wanted.notify_one();
        }
        Ok(())
    }

    /// A flush's commit point, for readers: its files are visible (the caller made them so
    /// under `commit_lock`) and the buffer no longer holds their rows.
    fn committed(&self, snap: &Snapshot) {
        self.bump_generation();
        self.inner.buffer.drop_front(snap.groups);
        self.mark_flushed(&snap.requests, &snap.feedback);
    }
}

/// The WAL writer: group-commits queued appends, publishes synced rows to the buffer and
/// answers each waiter with the buffered row count (or the reason its batch was not stored).
fn wal_thread(
    mut wal: Wal,
    rx: mpsc::Receiver<WalCmd>,
    buffer: Arc<Published>,
    health: Arc<Health>,
) {
    type Waiters = Vec<oneshot::Sender<Result<usize, String>>>;
    let commit = |wal: &mut Wal, entries: &mut Vec<(Table, RecordBatch)>, waiters: &mut Waiters| {
        if waiters.is_empty() {
            return;
        }
        let res = match wal.append(entries) {
            Ok(()) => Ok(buffer.push(std::mem::take(entries))),
            Err(e) => {
                if let Some(reason) = wal.fatal() {
                    health.set_wal_fatal(&reason);
                }
                Err(match e {
                    Error::Unavailable(m) => m,
                    other => other.to_string(),
                })
            }
        };
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
                    let res = wal
                        .rotate()
                        .map_err(|e| e.to_string())
                        .map(|seq| Snapshot::of(Some(seq), &buffer.load()));
                    let _ = done.send(res);
                }
            }
        }
        commit(&mut wal, &mut entries, &mut waiters);
    }
}
