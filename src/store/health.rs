//! Whether the store can make progress, for `/readyz` and for ingest's answers: a failed WAL
//! sync stops ingest until restart; a failing flush (with the buffer past its back-pressure
//! limit) means new batches cannot be taken in time.

use std::sync::{Mutex, OnceLock};

/// Shared between the store, its WAL writer thread and its flusher.
#[derive(Default)]
pub struct Health {
    wal_fatal: OnceLock<String>,
    flush_error: Mutex<Option<String>>,
}

impl Health {
    /// Records the reason the WAL stopped taking appends (the first one stays).
    pub fn set_wal_fatal(&self, reason: &str) {
        let _ = self.wal_fatal.set(reason.to_string());
    }

    pub fn wal_fatal(&self) -> Option<&str> {
        self.wal_fatal.get().map(String::as_str)
    }

    /// Records the outcome of a flush.
    pub fn flushed(&self, outcome: Result<(), String>) {
        let mut g = match self.flush_error.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = outcome.err();
    }

    /// The error of the last flush, while flushes fail.
    pub fn flush_error(&self) -> Option<String> {
        match self.flush_error.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}
