//! The dedupe index: which request ids (and feedback keys) the store already holds, so a
//! re-sent record is counted once across batches and restarts.
//!
//! Request ids are kept per hour partition of the record's `ts` (a re-sent attempt carries the
//! same `ts`): a partition's key set is loaded from its Parquet files on first touch and the
//! least recently used clean partitions are dropped past a memory budget. Feedback keys
//! (`request_id`, `metric`, `source`) are one set, loaded on first use. Keys are 64-bit xxh3
//! hashes.

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

/// Hour bucket of a microsecond timestamp: the request partition.
pub fn hour_bucket(ts_us: i64) -> i64 {
    ts_us.div_euclid(3_600_000_000)
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

struct Part {
    keys: KeySet,
    last_used: u64,
    /// Rows of this partition accepted but not yet in Parquet: while any, it stays.
    pending: usize,
}

/// The in-memory index. Loading from Parquet is done by the caller (`Store`), which asks
/// `needs_load` first.
#[derive(Default)]
pub struct Dedupe {
    parts: HashMap<i64, Part>,
    feedback: Option<KeySet>,
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

    pub fn needs_load(&self, bucket: i64) -> bool {
        !self.parts.contains_key(&bucket)
    }

    pub fn feedback_loaded(&self) -> bool {
        self.feedback.is_some()
    }

    /// Installs the keys of a partition read from storage.
    pub fn install(&mut self, bucket: i64, keys: KeySet) {
        self.total += keys.len();
        self.clock += 1;
        self.parts.insert(
            bucket,
            Part {
                keys,
                last_used: self.clock,
                pending: 0,
            },
        );
    }

    pub fn install_feedback(&mut self, keys: KeySet) {
        self.feedback = Some(keys);
    }

    /// Inserts a request key; `false` when it was already there (a duplicate).
    pub fn insert_request(&mut self, bucket: i64, key: u64) -> bool {
        self.clock += 1;
        let clock = self.clock;
        let part = self.parts.entry(bucket).or_insert_with(|| Part {
            keys: KeySet::default(),
            last_used: clock,
            pending: 0,
        });
        part.last_used = clock;
        let fresh = part.keys.insert(key);
        if fresh {
            part.pending += 1;
            self.total += 1;
        }
        fresh
    }

    pub fn remove_request(&mut self, bucket: i64, key: u64) {
        if let Some(p) = self.parts.get_mut(&bucket)
            && p.keys.remove(&key)
        {
            self.total -= 1;
            p.pending = p.pending.saturating_sub(1);
        }
    }

    pub fn contains_request(&self, bucket: i64, key: u64) -> bool {
        self.parts
            .get(&bucket)
            .is_some_and(|p| p.keys.contains(&key))
    }

    pub fn insert_feedback(&mut self, key: u64) -> bool {
        self.feedback
            .get_or_insert_with(KeySet::default)
            .insert(key)
    }

    pub fn remove_feedback(&mut self, key: u64) {
        if let Some(f) = self.feedback.as_mut() {
            f.remove(&key);
        }
    }

    /// After a flush: `flushed[bucket]` rows of each partition are in Parquet now.
    pub fn mark_flushed(&mut self, flushed: &HashMap<i64, usize>) {
        for (b, n) in flushed {
            if let Some(p) = self.parts.get_mut(b) {
                p.pending = p.pending.saturating_sub(*n);
            }
        }
        self.evict();
    }

    /// Drops least recently used clean partitions until the key count fits the budget.
    fn evict(&mut self) {
        if self.total <= self.budget {
            return;
        }
        let mut clean: Vec<(u64, i64)> = self
            .parts
            .iter()
            .filter(|(_, p)| p.pending == 0)
            .map(|(b, p)| (p.last_used, *b))
            .collect();
        clean.sort_unstable();
        for (_, b) in clean {
            if self.total <= self.budget / 2 {
                break;
            }
            if let Some(p) = self.parts.remove(&b) {
                self.total -= p.keys.len();
            }
        }
    }

    /// Keys held in memory (for metrics).
    pub fn len(&self) -> usize {
        self.total + self.feedback.as_ref().map_or(0, |f| f.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
