//! Log delivery for the proxy: every attempt's [`Record`] goes through a bounded channel to a
//! background task, so logging never blocks, slows or fails a user's request.
//!
//! ```text
//! send ─try─▶ bounded channel ─▶ batch (N records or a few ms) ─┬▶ Store::prepare (blocking pool)
//!   │ full: counted drop,                                       │  + Store::commit (WAL, buffer)
//!   ▼ rate-limited warning                                      └▶ disk queue (remote.rs) ─▶
//!                                                                  POST {url}/v1/logs, retried
//! ```
//!
//! In-process ([`SinkTarget::Store`]) the records take the same write pipeline as `/v1/logs`;
//! a slow store (a flush, a query, an S3 hiccup) only fills the channel. Remote
//! ([`SinkTarget::Remote`]) each batch becomes an fsynced segment file in `queue_dir` before it
//! counts as queued; segments are sent oldest first and removed only after a 2xx, so they
//! survive restarts and outages of the ingest server (which dedupes re-sends by `request_id`).
//! Both queues are bounded: what does not fit is dropped, counted and warned about.

mod remote;

pub use remote::to_ndjson;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::formats::Parsed;
use crate::metrics::{Histogram, render_value};
use crate::record::{Item, Record};
use crate::store::Store;

/// Where the proxy's records go.
#[derive(Clone)]
pub enum SinkTarget {
    /// This process's store.
    Store(Store),
    /// Another `switchyard serve` (its base URL, or the full `/v1/logs` URL), through a
    /// disk-backed queue in `queue_dir`.
    Remote {
        url: String,
        token: Option<String>,
        queue_dir: PathBuf,
    },
}

/// Bounds and timings of a sink.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Records the in-memory channel holds; beyond it `send` drops.
    pub channel_capacity: usize,
    /// Most records written in one batch.
    pub batch_max: usize,
    /// Longest a batch waits to fill after its first record.
    pub batch_wait: Duration,
    /// Bytes the remote disk queue may hold; beyond it new batches are dropped.
    pub disk_queue_bytes: u64,
    /// How long `close` keeps delivering the remote queue before leaving the rest on disk.
    pub close_timeout: Duration,
    /// Timeout of one delivery to the ingest server.
    pub request_timeout: Duration,
    /// Longest pause between two attempts at writing a batch to the store or delivering it to
    /// the ingest server (the backoff doubles up to it).
    pub max_backoff: Duration,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            channel_capacity: 64 * 1024,
            batch_max: 4096,
            batch_wait: Duration::from_millis(5),
            disk_queue_bytes: 1 << 30,
            close_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Least time between two warnings of the same kind.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counters shared by the sender side and the background tasks.
#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    disk_bytes: AtomicU64,
    disk_records: AtomicU64,
    batch_seconds: Histogram,
    drop_warn: RateLimit,
    fail_warn: RateLimit,
}

/// Lets one warning through per [`WARN_EVERY`], counting the ones held back.
#[derive(Default)]
struct RateLimit {
    last_ms: AtomicU64,
    held: AtomicU64,
}

impl RateLimit {
    /// `Some(held back since the last one)` when a warning may be logged now.
    fn ready(&self, epoch: Instant) -> Option<u64> {
        // Offset by one period so the first warning always passes.
        let now = epoch.elapsed().as_millis() as u64 + WARN_EVERY.as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

struct Shared {
    counters: Counters,
    epoch: Instant,
    remote: bool,
    closing: Notify,
    /// Set by `close`: the remote deliverer gives up at this instant.
    close_deadline: Mutex<Option<Instant>>,
    /// Wakes the remote deliverer when `close` is called.
    close_signal: Notify,
    opts: SinkOptions,
}

impl Shared {
    /// Counts records dropped by a full (or closed) queue, with a rate-limited warning.
    fn dropped(&self, n: u64, why: &str) {
        let c = &self.counters;
        self.lost(&c.dropped, &c.drop_warn, n, "dropped", why);
    }

    /// Counts records the store or the ingest server refused, with a rate-limited warning.
    fn failed(&self, n: u64, why: &str) {
        let c = &self.counters;
        self.lost(&c.failed, &c.fail_warn, n, "not written", why);
    }

    fn lost(&self, counter: &AtomicU64, limit: &RateLimit, n: u64, what: &str, why: &str) {
        let total = counter.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(held) = limit.ready(self.epoch) {
            tracing::warn!(
                records = n,
                total,
                warnings_held_back = held,
                "proxy log records {what}: {why}"
            );
        }
    }

    /// When `close` gives up on the remote queue, once it was called.
    fn close_deadline(&self) -> Option<Instant> {
        *self
            .close_deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves at the close deadline (never, until `close` is called).
    async fn until_close_deadline(&self) {
        let deadline = match self.close_deadline() {
            Some(d) => d,
            None => {
                self.close_signal.notified().await;
                self.close_deadline().unwrap_or_else(Instant::now)
            }
        };
        tokio::time::sleep_until(deadline.into()).await;
    }

    fn deadline_passed(&self) -> bool {
        self.close_deadline().is_some_and(|d| Instant::now() >= d)
    }
}

struct Inner {
    tx: mpsc::Sender<Record>,
    shared: Arc<Shared>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

/// The proxy's log sink; cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Inner>,
}

impl LogSink {
    /// Starts the sink's background tasks (call inside a tokio runtime).
    pub fn start(target: SinkTarget) -> Result<LogSink> {
        LogSink::start_with(target, SinkOptions::default())
    }

    /// [`LogSink::start`] with explicit bounds.
    pub fn start_with(target: SinkTarget, opts: SinkOptions) -> Result<LogSink> {
        if opts.channel_capacity == 0 || opts.batch_max == 0 {
            return Err(Error::Config(
                "log sink: channel capacity and batch size must be > 0".into(),
            ));
        }
        let (tx, rx) = mpsc::channel(opts.channel_capacity);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            epoch: Instant::now(),
            remote: matches!(target, SinkTarget::Remote { .. }),
            closing: Notify::new(),
            close_deadline: Mutex::new(None),
            close_signal: Notify::new(),
            opts,
        });
        let tasks = match target {
            SinkTarget::Store(store) => {
                vec![tokio::spawn(run_store(store, rx, shared.clone()))]
            }
            SinkTarget::Remote {
                url,
                token,
                queue_dir,
            } => remote::start(url, token, queue_dir, rx, shared.clone())?,
        };
        Ok(LogSink {
            inner: Arc::new(Inner {
                tx,
                shared,
                tasks: tokio::sync::Mutex::new(tasks),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Hands a record to the background task. Never blocks or awaits: when the channel is
    /// full (or the sink closed) the record is dropped, counted and warned about.
    pub fn send(&self, record: Record) {
        let s = &self.inner.shared;
        match self.inner.tx.try_send(record) {
            Ok(()) => {
                if !s.remote {
                    s.counters.queued.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => s.dropped(1, "the log queue is full"),
            Err(mpsc::error::TrySendError::Closed(_)) => s.dropped(1, "the log sink is closed"),
        }
    }

    /// Records accepted into the queue (remote: fsynced into the disk queue).
    pub fn queued(&self) -> u64 {
        self.inner.shared.counters.queued.load(Ordering::Relaxed)
    }

    /// Records the store (or the ingest server) accepted, duplicates included.
    pub fn written(&self) -> u64 {
        self.inner.shared.counters.written.load(Ordering::Relaxed)
    }

    /// Records dropped by a full queue.
    pub fn dropped(&self) -> u64 {
        self.inner.shared.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records the store or the ingest server refused.
    pub fn failed(&self) -> u64 {
        self.inner.shared.counters.failed.load(Ordering::Relaxed)
    }

    /// Prometheus text lines of the sink's counters.
    pub fn render_metrics(&self, out: &mut String) {
        let s = &self.inner.shared;
        let c = &s.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let records: [(&str, &str, &AtomicU64); 4] = [
            (
                "queued",
                "Proxy log records queued for writing (remote: fsynced into the disk queue).",
                &c.queued,
            ),
            (
                "written",
                "Proxy log records the store or the ingest server accepted.",
                &c.written,
            ),
            (
                "dropped",
                "Proxy log records dropped because a queue was full.",
                &c.dropped,
            ),
            (
                "failed",
                "Proxy log records the store or the ingest server refused.",
                &c.failed,
            ),
        ];
        for (what, help, a) in records {
            let name = format!("switchyard_proxy_log_records_{what}_total");
            render_value(out, &name, "counter", help, g(a));
        }
        let depth = (s.opts.channel_capacity - self.inner.tx.capacity()) as f64;
        let mut rest = vec![(
            "switchyard_proxy_log_queue_depth",
            "gauge",
            "Proxy log records waiting in memory.",
            depth,
        )];
        if s.remote {
            rest.extend([
                (
                    "switchyard_proxy_log_disk_queue_bytes",
                    "gauge",
                    "Bytes in the disk queue awaiting delivery.",
                    g(&c.disk_bytes),
                ),
                (
                    "switchyard_proxy_log_disk_queue_records",
                    "gauge",
                    "Records in the disk queue awaiting delivery.",
                    g(&c.disk_records),
                ),
                (
                    "switchyard_proxy_log_delivery_retries_total",
                    "counter",
                    "Failed deliveries to the ingest server, retried.",
                    g(&c.retries),
                ),
            ]);
        }
        for (name, kind, help, v) in rest {
            render_value(out, name, kind, help, v);
        }
        c.batch_seconds.render(
            out,
            "switchyard_proxy_log_batch_write_seconds",
            "Time to write one batch of proxy log records.",
        );
    }

    /// Stops taking records, writes what is queued and waits for the background tasks. A
    /// remote sink delivers for at most `close_timeout`; the rest stays on disk for the next
    /// start. Later calls return at once.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let s = &self.inner.shared;
        *s.close_deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + s.opts.close_timeout);
        s.closing.notify_one();
        s.close_signal.notify_one();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().await);
        for t in tasks {
            t.await
                .map_err(|e| Error::Internal(format!("log sink task: {e}")))?;
        }
        Ok(())
    }
}

/// Fills `buf` with the next batch: waits for a first record, then up to `batch_wait` for
/// more. Returns false once the channel is closed and empty. On `close` the channel is closed
/// and what it holds still comes out.
async fn next_batch(rx: &mut mpsc::Receiver<Record>, buf: &mut Vec<Record>, s: &Shared) -> bool {
    let max = s.opts.batch_max;
    loop {
        let got = tokio::select! {
            biased;
            n = rx.recv_many(buf, max) => Some(n),
            _ = s.closing.notified() => None,
        };
        match got {
            Some(0) => return false,
            Some(_) => break,
            // Closing: refuse new records, keep draining what the channel holds.
            None => rx.close(),
        }
    }
    let deadline = tokio::time::Instant::now() + s.opts.batch_wait;
    while buf.len() < max {
        match tokio::time::timeout_at(deadline, rx.recv_many(buf, max - buf.len())).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    true
}

/// The in-process writer: batches into `Store::ingest`'s two halves, CPU work on the blocking
/// pool as the HTTP ingest does.
async fn run_store(store: Store, mut rx: mpsc::Receiver<Record>, s: Arc<Shared>) {
    let mut buf = Vec::with_capacity(s.opts.batch_max);
    while next_batch(&mut rx, &mut buf, &s).await {
        let batch = std::mem::replace(&mut buf, Vec::with_capacity(s.opts.batch_max));
        let started = Instant::now();
        write_store(&store, batch, &s).await;
        s.counters.batch_seconds.observe(started.elapsed());
    }
}

/// Attempts at writing one batch during `close` before its records count as failed. Before
/// `close` a batch is retried until the store takes it (a store under back-pressure or
/// briefly unavailable); meanwhile the channel fills and new records are counted drops.
const CLOSING_ATTEMPTS: u32 = 3;

async fn write_store(store: &Store, records: Vec<Record>, s: &Shared) {
    let n = records.len() as u64;
    let parsed = Parsed {
        items: records
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i, Item::Request(Box::new(r))))
            .collect(),
        rejected: Vec::new(),
    };
    let st = store.clone();
    let prepared = match tokio::task::spawn_blocking(move || st.prepare(parsed)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return s.failed(n, &e.to_string()),
        Err(e) => return s.failed(n, &format!("prepare task: {e}")),
    };
    let mut delay = Duration::from_millis(100);
    let mut closing_attempts = 0;
    loop {
        // A copy for a retry (cheap: Arrow arrays are shared).
        let attempt = crate::store::Prepared {
            requests: prepared.requests.clone(),
            feedback: prepared.feedback.clone(),
            rejected: prepared.rejected.clone(),
        };
        let e = match store.commit(attempt).await {
            Ok(out) => {
                let c = &s.counters;
                c.written
                    .fetch_add((out.accepted + out.duplicates) as u64, Ordering::Relaxed);
                if let Some(first) = out.rejected.first() {
                    s.failed(
                        out.rejected.len() as u64,
                        &format!("invalid record: {}", first.error),
                    );
                }
                return;
            }
            Err(e) => e,
        };
        if s.close_deadline().is_some() {
            closing_attempts += 1;
            if closing_attempts >= CLOSING_ATTEMPTS {
                return s.failed(n, &e.to_string());
            }
        }
        if let Some(held) = s.counters.fail_warn.ready(s.epoch) {
            tracing::warn!(error = %e, records = n, warnings_held_back = held, retry_in_ms = delay.as_millis() as u64, "proxy log batch not written yet; retrying");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(s.opts.max_backoff);
    }
}
