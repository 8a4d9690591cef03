//! The dedupe index: which request ids (and feedback keys) the store already holds, so a
//! re-sent record is counted once across batches and restarts, in bounded memory whatever the
//! history.
//!
//! Keys are 64-bit xxh3 hashes, kept per partition of the record's `ts` (a re-sent record
//! carries the same `ts`): request ids per hour, feedback keys (`request_id`, `metric`,
//! `source`) per day. A partition's keys are loaded from its Parquet files on first touch —
//! by the caller, outside the index's lock, while only batches touching that partition wait
//! (see `store::claim`) — and kept as a sorted array (8 bytes a key) plus a small hash set of
//! keys added since. Past the budget, the least recently used partitions without unflushed
//! rows are dropped (they reload on demand); partitions with unflushed rows stay, and the
//! buffer bounds them. Memory: about 8 bytes per key held, so the default budget of 4M keys
//! is about 40 MB (figures in the README's dedupe benchmark).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_64;

/// The keys are already hashes: hash them as themselves.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type KeySet = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// A partition of the index: an hour of requests or a day of feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// Hours since the epoch of the request's `ts`.
    RequestHour(i64),
    /// Days since the epoch of the feedback's `ts`.
    FeedbackDay(i64),
}

/// Hour bucket of a microsecond timestamp: the request partition.
pub fn hour_bucket(ts_us: i64) -> i64 {
    ts_us.div_euclid(3_600_000_000)
}

/// Day bucket of a microsecond timestamp: the feedback partition.
pub fn day_bucket(ts_us: i64) -> i64 {
    ts_us.div_euclid(86_400_000_000)
}

pub fn request_key(request_id: &str) -> u64 {
    xxh3_64(request_id.as_bytes())
}

pub fn feedback_key(request_id: &str, metric: &str, source: Option<&str>) -> u64 {
    let mut buf = Vec::with_capacity(request_id.len() + metric.len() + 16);
    buf.extend_from_slice(request_id.as_bytes());
    buf.push(0);
    buf.extend_from_slice(metric.as_bytes());
    buf.push(0);
    buf.extend_from_slice(source.unwrap_or("").as_bytes());
    xxh3_64(&buf)
}

/// Fresh keys are folded into the sorted array once they reach this share of it.
const MERGE_RATIO: usize = 8;

struct Part {
    /// Keys read from storage or folded in, sorted.
    sorted: Vec<u64>,
    /// Keys added since.
    fresh: KeySet,
    last_used: u64,
    /// Rows of this partition accepted but not yet in Parquet: while any, it stays.
    pending: usize,
}

impl Part {
    fn contains(&self, k: u64) -> bool {
        self.fresh.contains(&k) || self.sorted.binary_search(&k).is_ok()
    }

    fn len(&self) -> usize {
        self.sorted.len() + self.fresh.len()
    }

    fn fold(&mut self) {
        if self.fresh.len() * MERGE_RATIO < self.sorted.len().max(4096) {
            return;
        }
        self.sorted.extend(self.fresh.drain());
        self.sorted.sort_unstable();
        self.sorted.dedup();
        self.fresh.shrink_to_fit();
    }
}

enum Slot {
    Ready(Part),
    /// Being loaded by one caller; others wait on the receiver.
    Loading(tokio::sync::watch::Receiver<bool>),
}

/// What a caller must do before its keys can be checked.
#[derive(Default)]
pub struct Missing {
    /// Partitions this caller loads (then [`Dedupe::install`] or [`Dedupe::abandon`]).
    pub load: Vec<(Bucket, tokio::sync::watch::Sender<bool>)>,
    /// Partitions another caller is loading.
    pub wait: Vec<tokio::sync::watch::Receiver<bool>>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.load.is_empty() && self.wait.is_empty()
    }
}

/// The in-memory index; the caller does the loading (see the module doc).
#[derive(Default)]
pub struct Dedupe {
    parts: HashMap<Bucket, Slot>,
    clock: u64,
    total: usize,
    budget: usize,
}

impl Dedupe {
    pub fn new(budget: usize) -> Self {
        Dedupe {
            budget,
            ..Default::default()
        }
    }

    /// The partitions of `buckets` not in memory: the ones nobody loads yet are marked as
    /// loading by this caller.
    pub fn missing(&mut self, buckets: impl IntoIterator<Item = Bucket>) -> Missing {
        let mut m = Missing::default();
        for b in buckets {
            match self.parts.get(&b) {
                Some(Slot::Ready(_)) => {}
                Some(Slot::Loading(rx)) => m.wait.push(rx.clone()),
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(false);
                    self.parts.insert(b, Slot::Loading(rx));
                    m.load.push((b, tx));
                }
            }
        }
        m
    }

    /// Installs the keys of a partition read from storage (and wakes its waiters).
    pub fn install(
        &mut self,
        bucket: Bucket,
        mut keys: Vec<u64>,
        done: tokio::sync::watch::Sender<bool>,
    ) {
        keys.sort_unstable();
        keys.dedup();
        self.total += keys.len();
        self.clock += 1;
        self.parts.insert(
            bucket,
            Slot::Ready(Part {
                sorted: keys,
                fresh: KeySet::default(),
                last_used: self.clock,
                pending: 0,
            }),
        );
        let _ = done.send(true);
        self.evict();
    }

    /// A load that failed: the next caller tries again.
    pub fn abandon(&mut self, bucket: Bucket) {
        if matches!(self.parts.get(&bucket), Some(Slot::Loading(_))) {
            self.parts.remove(&bucket);
        }
    }

    /// Inserts a key of a loaded partition; `None` when the partition is not in memory (load
    /// it first), `Some(false)` when the key was there already (a duplicate).
    pub fn insert(&mut self, bucket: Bucket, key: u64) -> Option<bool> {
        self.clock += 1;
        let clock = self.clock;
        let Some(Slot::Ready(part)) = self.parts.get_mut(&bucket) else {
            return None;
        };
        part.last_used = clock;
        if part.contains(key) {
            return Some(false);
        }
        part.fresh.insert(key);
        part.pending += 1;
        self.total += 1;
        Some(true)
    }

    /// True when every bucket is in memory.
    pub fn ready(&self, buckets: impl IntoIterator<Item = Bucket>) -> bool {
        buckets
            .into_iter()
            .all(|b| matches!(self.parts.get(&b), Some(Slot::Ready(_))))
    }

    /// Takes back a key whose rows were not stored after all.
    pub fn remove(&mut self, bucket: Bucket, key: u64) {
        if let Some(Slot::Ready(p)) = self.parts.get_mut(&bucket) {
            let removed = p.fresh.remove(&key)
                || match p.sorted.binary_search(&key) {
                    Ok(i) => {
                        p.sorted.remove(i);
                        true
                    }
                    Err(_) => false,
                };
            if removed {
                self.total -= 1;
                p.pending = p.pending.saturating_sub(1);
            }
        }
    }

    pub fn contains(&self, bucket: Bucket, key: u64) -> bool {
        matches!(self.parts.get(&bucket), Some(Slot::Ready(p)) if p.contains(key))
    }

    /// After a flush: `flushed[bucket]` rows of each partition are in Parquet now.
    pub fn mark_flushed(&mut self, flushed: &HashMap<Bucket, usize>) {
        for (b, n) in flushed {
            if let Some(Slot::Ready(p)) = self.parts.get_mut(b) {
                p.pending = p.pending.saturating_sub(*n);
                p.fold();
            }
        }
        self.evict();
    }

    /// Drops least recently used clean partitions until the key count fits the budget.
    fn evict(&mut self) {
        if self.total <= self.budget {
            return;
        }
        let mut clean: Vec<(u64, Bucket)> = self
            .parts
            .iter()
            .filter_map(|(b, s)| match s {
                Slot::Ready(p) if p.pending == 0 => Some((p.last_used, *b)),
                _ => None,
            })
            .collect();
        clean.sort_unstable();
        // The partition touched last stays: its caller is about to use it.
        clean.pop();
        for (_, b) in clean {
            if self.total <= self.budget / 2 {
                break;
            }
            if let Some(Slot::Ready(p)) = self.parts.remove(&b) {
                self.total -= p.len();
            }
        }
    }

    /// Keys held in memory (for metrics).
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Bytes the index holds (key arrays and hash tables), for metrics and the benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.parts
            .values()
            .map(|s| match s {
                Slot::Ready(p) => {
                    p.sorted.capacity() * 8 + p.fresh.capacity() * 9 + std::mem::size_of::<Part>()
                }
                Slot::Loading(_) => 64,
            })
            .sum()
    }
}
