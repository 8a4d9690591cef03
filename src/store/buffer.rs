//! The buffer: rows acknowledged but not yet in Parquet, published as immutable snapshots.
//!
//! The WAL writer appends one group per synced commit and the flusher drops the groups it
//! wrote, each by swapping in a new [`Buffer`] (`arc-swap`): neither waits for a reader, and a
//! reader takes a snapshot without waiting for either. What a reader must see atomically —
//! files a flush committed together with a buffer that no longer holds their rows — is guarded
//! by the store's commit lock, which flush and compaction take only around their commit point
//! and which the acknowledgement path never touches.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use arrow::array::RecordBatch;

use crate::schema::Table;

/// The rows of one WAL commit (or one batch, without a WAL).
#[derive(Default)]
pub struct Group {
    requests: Vec<RecordBatch>,
    feedback: Vec<RecordBatch>,
}

/// One published state of the buffer; never changed once published.
#[derive(Default, Clone)]
pub struct Buffer {
    groups: Vec<Arc<Group>>,
    rows: usize,
}

impl Buffer {
    /// The buffered batches of a table, oldest first.
    pub fn batches(&self, table: Table) -> Vec<RecordBatch> {
        self.groups
            .iter()
            .flat_map(|g| match table {
                Table::Requests => g.requests.iter(),
                Table::Feedback => g.feedback.iter(),
                // Rollups are derived from flushed rows, never buffered.
                _ => g.requests[..0].iter(),
            })
            .cloned()
            .collect()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Groups held: a flush that wrote this snapshot drops this many from the front.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

/// The current buffer, swapped atomically.
#[derive(Default)]
pub struct Published {
    state: ArcSwap<Buffer>,
}

impl Published {
    pub fn load(&self) -> Arc<Buffer> {
        self.state.load_full()
    }

    /// Publishes rows that just became durable; returns the buffered row count after it.
    pub fn push(&self, entries: Vec<(Table, RecordBatch)>) -> usize {
        let mut g = Group::default();
        let mut rows = 0;
        for (t, b) in entries {
            rows += b.num_rows();
            match t {
                Table::Requests => g.requests.push(b),
                Table::Feedback => g.feedback.push(b),
                _ => rows -= b.num_rows(),
            }
        }
        if rows == 0 {
            return self.state.load().rows;
        }
        let g = Arc::new(g);
        let prev = self.state.rcu(|cur| {
            let mut next = Buffer::clone(cur);
            next.groups.push(g.clone());
            next.rows += rows;
            next
        });
        prev.rows + rows
    }

    /// Drops the `n` oldest groups (a flush committed their rows); returns the rows left.
    pub fn drop_front(&self, n: usize) -> usize {
        self.state.rcu(|cur| {
            let n = n.min(cur.groups.len());
            let gone: usize = cur.groups[..n].iter().map(|g| group_rows(g)).sum();
            Buffer {
                groups: cur.groups[n..].to_vec(),
                rows: cur.rows - gone,
            }
        });
        self.state.load().rows
    }
}

fn group_rows(g: &Group) -> usize {
    g.requests
        .iter()
        .chain(&g.feedback)
        .map(|b| b.num_rows())
        .sum()
}

/// Waits as long as the failpoint `name` says (`return(MS)`), without blocking the runtime;
/// tests make a step slow this way (`store::query_plan`: a query planning with the commit lock
/// held, as over a slow object-store listing; `store::flush_commit`: a flush's commit point).
pub async fn pause(name: &str) {
    let ms = (|| {
        fail::fail_point!(name, |arg| arg.and_then(|a| a.trim().parse::<u64>().ok()));
        None
    })();
    if let Some(ms) = ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// What a query plans against: the buffer as of the moment it was taken, with the commit
/// lock held so no flush or compaction commits until planning is done.
pub struct ReadView<'a> {
    _commit: tokio::sync::RwLockReadGuard<'a, ()>,
    requests: Vec<RecordBatch>,
    feedback: Vec<RecordBatch>,
}

impl<'a> ReadView<'a> {
    pub fn new(commit: tokio::sync::RwLockReadGuard<'a, ()>, buffer: &Buffer) -> Self {
        ReadView {
            _commit: commit,
            requests: buffer.batches(Table::Requests),
            feedback: buffer.batches(Table::Feedback),
        }
    }

    pub fn batches(&self, table: Table) -> &[RecordBatch] {
        match table {
            Table::Requests => &self.requests,
            Table::Feedback => &self.feedback,
            _ => &[],
        }
    }
}
