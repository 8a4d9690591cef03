//! The quality rollup, `quality_hourly`: per request hour × task × model × policy version ×
//! metric × feedback date, the feedback rows joined to their request (`samples`), the sum and the sum of squares
//! of their values, how many were exactly 1 (`successes`) and how many were neither 0 nor 1
//! (`non_binary`). Quality reports read it instead of joining every request with every
//! feedback row.
//!
//! A feedback row learns its request's hour, task, model and policy version by `request_id`, whichever
//! arrives first. Each (request, feedback) pair is rolled up exactly once, by the flush that
//! stores the later of the two:
//!
//! - feedback flushed with or after its request: found among the flushed requests, in an index
//!   of the requests this process flushed recently, or else in the stored request files
//!   (a lookup pruned by their `request_id` bloom filters);
//! - feedback whose request is not stored yet is kept in `feedback_unmatched` (one small file,
//!   rewritten when it changes) and rolled up by the flush that stores its request.
//!
//! In a bucket written by several nodes each node keeps its own unmatched file (named by its
//! node id, like every file it writes) and only ever rewrites that one. Feedback may reach
//! one node while its request is still in another node's buffer: every [`RECHECK_FLUSHES`]th
//! flush, a node with unmatched rows looks their ids up among the stored requests again, and
//! rolls up and drops those found, in that flush's commit. A pair is rolled up only by the
//! node holding its feedback row, so still exactly once.
//!
//! The rollup files, the new unmatched file and the superseded one are all part of the flush's
//! commit record, and the in-memory state (index, unmatched rows) changes at the commit point
//! under the commit lock, so a crash or a failed flush leaves rollup and raw rows in agreement.
//! Queries add the pairs that involve unflushed rows ([`buffered`]), computed the same way from
//! the buffer they plan against.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use object_store::ObjectStoreExt as _;
use object_store::path::Path;

use super::{Location, Store, parquet};
use crate::error::{Error, Result};
use crate::schema::Table;

mod cells;
pub use cells::SUM_SCALE;
use cells::{Cells, DAY_US, Group, cells_batch};

const HOUR_US: i64 = 3_600_000_000;
/// Requests the index of recently flushed requests keeps (about 40 bytes each); older ones
/// are found in the stored files.
pub const INDEX_KEYS: usize = 1 << 20;
/// In a bucket, a node with unmatched feedback looks it up among the other nodes' requests
/// once in this many flushes (once a minute at the default flush interval).
pub const RECHECK_FLUSHES: u32 = 6;

/// Column positions of the `feedback` batches used here.
mod col {
    pub const REQUEST_ID: usize = 0;
    pub const TS: usize = 1;
    pub const METRIC: usize = 2;
    pub const VALUE: usize = 3;
}

/// The columns of a `requests` batch that place its feedback: id, start, and the group.
struct RequestColumns<'a> {
    id: &'a arrow::array::StringArray,
    ts: &'a arrow::array::TimestampMicrosecondArray,
    task: &'a arrow::array::StringArray,
    model: &'a arrow::array::StringArray,
    policy_version: &'a arrow::array::StringArray,
}

impl<'a> RequestColumns<'a> {
    fn of(b: &'a RecordBatch) -> Result<Self> {
        let column = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| Error::Internal(format!("requests batch without `{name}`")))
        };
        Ok(RequestColumns {
            id: column("request_id")?.as_string::<i32>(),
            ts: column("ts")?.as_primitive::<TimestampMicrosecondType>(),
            task: column("task")?.as_string::<i32>(),
            model: column("model")?.as_string::<i32>(),
            policy_version: column("policy_version")?.as_string::<i32>(),
        })
    }

    fn hour(&self, i: usize) -> i64 {
        self.ts.value(i).div_euclid(HOUR_US) * HOUR_US
    }

    fn policy_version(&self, i: usize) -> Option<&'a str> {
        (!self.policy_version.is_null(i)).then(|| self.policy_version.value(i))
    }
}

/// Where a request's feedback goes: its hour and its (task, model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    hour: i64,
    group: u32,
}

/// Requests this process flushed, newest kept, by a hash of their id.
#[derive(Default)]
struct RequestIndex {
    slots: HashMap<u64, Slot>,
    by_hour: BTreeMap<i64, Vec<u64>>,
}

impl RequestIndex {
    fn insert(&mut self, key: u64, slot: Slot) {
        if self.slots.insert(key, slot).is_none() {
            self.by_hour.entry(slot.hour).or_default().push(key);
        }
        while self.slots.len() > INDEX_KEYS {
            let Some((_, keys)) = self.by_hour.pop_first() else {
                break;
            };
            for k in keys {
                self.slots.remove(&k);
            }
        }
    }
}

fn key_of(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// The ids of the groups of one (task, model), by policy version.
#[derive(Default)]
struct ByPolicy {
    unrouted: Option<u32>,
    routed: HashMap<String, u32>,
}

/// The store's quality state: the request index, the (task, model, policy version) groups
/// and the stored unmatched feedback.
#[derive(Default)]
pub struct QualityState {
    index: RequestIndex,
    groups: Vec<Group>,
    group_ids: HashMap<String, HashMap<String, ByPolicy>>,
    /// `None` until read from the store.
    unmatched: Option<Unmatched>,
    /// Flushes since unmatched rows were last looked up among stored requests.
    since_recheck: u32,
}

#[derive(Clone, Default)]
struct Unmatched {
    /// Feedback rows (file schema) whose request was not stored when they were.
    rows: Vec<RecordBatch>,
    /// The committed files holding them.
    files: Vec<Path>,
}

impl Unmatched {
    fn rows_len(&self) -> usize {
        self.rows.iter().map(|b| b.num_rows()).sum()
    }
}

impl QualityState {
    /// The id of a (task, model, policy version) group; allocates only for one never seen.
    fn group(&mut self, task: &str, model: &str, policy_version: Option<&str>) -> u32 {
        let known = self.group_ids.get(task).and_then(|m| m.get(model));
        let found = known.and_then(|p| match policy_version {
            None => p.unrouted,
            Some(v) => p.routed.get(v).copied(),
        });
        if let Some(g) = found {
            return g;
        }
        let g = self.groups.len() as u32;
        self.groups.push(Group {
            task: task.to_string(),
            model: model.to_string(),
            policy_version: policy_version.map(str::to_string),
        });
        let by_policy = self
            .group_ids
            .entry(task.to_string())
            .or_default()
            .entry(model.to_string())
            .or_default();
        match policy_version {
            None => by_policy.unrouted = Some(g),
            Some(v) => {
                by_policy.routed.insert(v.to_string(), g);
            }
        }
        g
    }
}

/// A feedback row: (request_id, metric, value, feedback day number, batch, row).
type FeedbackRow<'a> = (&'a str, &'a str, f64, i64, usize, usize);

fn feedback_rows(batches: &[RecordBatch]) -> Vec<FeedbackRow<'_>> {
    let mut out = Vec::new();
    for (bi, b) in batches.iter().enumerate() {
        let ids = b.column(col::REQUEST_ID).as_string::<i32>();
        let ts = b.column(col::TS).as_primitive::<TimestampMicrosecondType>();
        let metric = b.column(col::METRIC).as_string::<i32>();
        let value = b.column(col::VALUE).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((
                ids.value(i),
                metric.value(i),
                value.value(i),
                ts.value(i).div_euclid(DAY_US),
                bi,
                i,
            ));
        }
    }
    out
}

/// Feedback batches in the file schema (buffered batches carry the `date` column too).
fn file_batches(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| parquet::to_file_batch(Table::FeedbackUnmatched, b))
        .collect()
}

/// The outcome of matching some feedback: the rollup rows, the rows left unmatched and the
/// index entries of the requests matched against.
struct Matched {
    rollup: Option<RecordBatch>,
    unmatched: Vec<RecordBatch>,
    /// Whether any stored unmatched row found its request.
    resolved_stored: bool,
    requests: Vec<(u64, Slot)>,
}

/// Pairs `feedback` (new rows) and the stored unmatched rows with `requests` (new rows), the
/// index and the stored request files (for stored unmatched rows only when `recheck`).
async fn match_rows(
    store: &Store,
    requests: &[RecordBatch],
    feedback: &[RecordBatch],
    recheck: bool,
) -> Result<Matched> {
    let stored_unmatched = unmatched(store).await?;
    let new_rows = file_batches(feedback)?;
    let fb = feedback_rows(&new_rows);
    let old = feedback_rows(&stored_unmatched.rows);
    let mut cells: Cells = HashMap::new();
    let mut by_id: HashMap<&str, Slot> = HashMap::new();
    let mut index_rows: Vec<(u64, Slot)> = Vec::new();
    let mut misses: Vec<usize> = Vec::new();
    let mut old_misses: Vec<usize> = Vec::new();
    let mut keep_old: Vec<Vec<bool>> = stored_unmatched
        .rows
        .iter()
        .map(|b| vec![true; b.num_rows()])
        .collect();
    let mut resolved_stored = false;
    {
        let mut state = store.quality_state();
        for b in requests {
            let c = RequestColumns::of(b)?;
            for i in 0..b.num_rows() {
                let slot = Slot {
                    hour: c.hour(i),
                    group: state.group(c.task.value(i), c.model.value(i), c.policy_version(i)),
                };
                by_id.insert(c.id.value(i), slot);
                index_rows.push((key_of(c.id.value(i)), slot));
            }
        }
        // Stored unmatched rows: the new requests, or (on a recheck) the stored files.
        for (n, (id, metric, v, day, bi, i)) in old.iter().enumerate() {
            if let Some(slot) = by_id.get(id) {
                cells
                    .entry((slot.hour, slot.group, metric, *day))
                    .or_default()
                    .add(*v);
                keep_old[*bi][*i] = false;
                resolved_stored = true;
            } else if recheck {
                old_misses.push(n);
            }
        }
        // New rows: the new requests, then the index, then (below) the stored files.
        for (n, (id, metric, v, day, _, _)) in fb.iter().enumerate() {
            let slot = by_id.get(id).or_else(|| state.index.slots.get(&key_of(id)));
            match slot {
                Some(slot) => cells
                    .entry((slot.hour, slot.group, metric, *day))
                    .or_default()
                    .add(*v),
                None => misses.push(n),
            }
        }
    }
    let ids: Vec<String> = misses
        .iter()
        .map(|n| fb[*n].0)
        .chain(old_misses.iter().map(|n| old[*n].0))
        .map(str::to_string)
        .collect();
    let looked_up = lookup(store.location(), ids).await?;
    let mut keep_new: Vec<Vec<bool>> = new_rows.iter().map(|b| vec![false; b.num_rows()]).collect();
    let groups = {
        let mut state = store.quality_state();
        for n in misses {
            let (id, metric, v, day, bi, i) = &fb[n];
            match looked_up.get(*id) {
                Some(found) => {
                    let group = state.group(&found.task, &found.model, found.policy_version());
                    cells
                        .entry((found.hour, group, metric, *day))
                        .or_default()
                        .add(*v);
                }
                None => keep_new[*bi][*i] = true,
            }
        }
        for n in old_misses {
            let (id, metric, v, day, bi, i) = &old[n];
            if let Some(found) = looked_up.get(*id) {
                let group = state.group(&found.task, &found.model, found.policy_version());
                cells
                    .entry((found.hour, group, metric, *day))
                    .or_default()
                    .add(*v);
                keep_old[*bi][*i] = false;
                resolved_stored = true;
            }
        }
        state.groups.clone()
    };
    let mut left = Vec::new();
    for (b, keep) in stored_unmatched
        .rows
        .iter()
        .zip(keep_old)
        .chain(new_rows.iter().zip(keep_new))
    {
        let kept = super::keep_rows(b.clone(), keep)?;
        if kept.num_rows() > 0 {
            left.push(kept);
        }
    }
    let rollup = (!cells.is_empty())
        .then(|| cells_batch(cells, &groups))
        .transpose()?;
    Ok(Matched {
        rollup,
        unmatched: left,
        resolved_stored,
        requests: index_rows,
    })
}

/// The columns of a feedback file that matching reads: `request_id`, `ts`, `metric`, `value`
/// and `source` (the dedupe key's last part).
pub const FEEDBACK_COLUMNS: [usize; 5] = [0, 1, 2, 3, 4];

/// For feedback copies a compaction finds repeated (stored by two nodes, each of which rolls
/// its copy up once its request is stored): the rollup of those whose request is stored, which
/// the compaction publishes negated as it drops them, and the dedupe keys of the others,
/// which it keeps for a later merge. A copy still waiting in its node's unmatched file is
/// rolled up at that node's next recheck, so the counts agree again then.
pub async fn repeats(
    loc: &Location,
    repeats: &[RecordBatch],
) -> Result<(Option<RecordBatch>, super::dedupe::KeySet)> {
    let rows = feedback_rows(repeats);
    let found = lookup(loc, rows.iter().map(|r| r.0.to_string()).collect()).await?;
    let keys = super::claim::row_keys(
        Table::Feedback,
        &arrow::compute::concat_batches(&repeats[0].schema(), repeats)?,
    );
    let mut state = QualityState::default();
    let mut cells: Cells = HashMap::new();
    let mut keep = super::dedupe::KeySet::default();
    for ((id, metric, v, day, _, _), (_, key)) in rows.iter().zip(keys) {
        match found.get(*id) {
            Some(f) => {
                let g = state.group(&f.task, &f.model, f.policy_version());
                cells.entry((f.hour, g, metric, *day)).or_default().add(*v);
            }
            None => {
                keep.insert(key);
            }
        }
    }
    let rolled = (!cells.is_empty())
        .then(|| cells_batch(cells, &state.groups))
        .transpose()?;
    Ok((rolled, keep))
}

/// Where a stored request's feedback goes.
struct Found {
    hour: i64,
    task: String,
    model: String,
    policy_version: Option<String>,
}

impl Found {
    fn policy_version(&self) -> Option<&str> {
        self.policy_version.as_deref()
    }
}

/// Finds stored requests by id (bloom filters on `request_id` prune the files), listing
/// again when a file the listing named was moved by a commit meanwhile (another node's
/// compaction, in a bucket).
async fn lookup(loc: &Location, ids: Vec<String>) -> Result<HashMap<String, Found>> {
    use datafusion::prelude::{SessionContext, col, lit};
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let wanted: Vec<_> = ids.into_iter().map(lit).collect();
    let batches = crate::query::replanning(|_| async {
        let ctx = SessionContext::new();
        ctx.register_object_store(&loc.store_url, loc.committed());
        let table = crate::query::listing_table(loc, Table::Requests)?;
        Ok(ctx
            .read_table(Arc::new(table))?
            .filter(col("request_id").in_list(wanted.clone(), false))?
            .select_columns(&["request_id", "ts", "model", "task", "policy_version"])?
            .collect()
            .await?)
    })
    .await?;
    for b in &batches {
        let c = RequestColumns::of(b)?;
        for i in 0..b.num_rows() {
            out.insert(
                c.id.value(i).to_string(),
                Found {
                    hour: c.hour(i),
                    task: c.task.value(i).to_string(),
                    model: c.model.value(i).to_string(),
                    policy_version: c.policy_version(i).map(str::to_string),
                },
            );
        }
    }
    Ok(out)
}

/// The stored unmatched feedback, read from the store the first time.
async fn unmatched(store: &Store) -> Result<Unmatched> {
    if let Some(u) = &store.quality_state().unmatched {
        return Ok(u.clone());
    }
    let loc = store.location();
    let view = loc.committed();
    let dir = loc.path(&[Table::FeedbackUnmatched.name()]);
    // In a bucket, only this node's own file: the others' belong to their nodes.
    let files: Vec<Path> = parquet::list_files(&view, &dir)
        .await?
        .into_iter()
        .filter(|f| loc.owns(f.as_ref()))
        .collect();
    let mut rows = Vec::new();
    for f in &files {
        rows.extend(parquet::read_key_columns(&view, f, &[0, 1, 2, 3, 4]).await?);
    }
    let u = Unmatched { rows, files };
    let mut state = store.quality_state();
    // A flush may have installed a newer state meanwhile; it wins.
    Ok(state.unmatched.get_or_insert(u).clone())
}

/// The quality rollup (table schema) of the pairs that involve unflushed rows: buffered
/// feedback with any request, stored unmatched feedback with buffered requests. Called while
/// the query holds the commit lock, so the state matches the files it lists.
pub async fn buffered(
    store: &Store,
    requests: &[RecordBatch],
    feedback: &[RecordBatch],
) -> Result<RecordBatch> {
    match match_rows(store, requests, feedback, false).await?.rollup {
        Some(b) => Ok(b),
        None => Ok(RecordBatch::new_empty(Table::QualityHourly.table_schema())),
    }
}

/// A flush's part of the rollup: files written (pending), files superseded, and the state
/// to install at its commit point.
#[derive(Default)]
pub struct FlushPart {
    /// (pending path, final path, directory, rows) of each file written.
    pub files: Vec<(Path, Path, Path, usize)>,
    pub supersede: Vec<Path>,
    install: Install,
}

#[derive(Default)]
struct Install {
    requests: Vec<(u64, Slot)>,
    unmatched: Option<Unmatched>,
}

/// Whether this flush looks the stored unmatched rows up among stored requests: in a bucket,
/// every [`RECHECK_FLUSHES`]th flush while there are any (or before they were first read).
pub fn recheck_due(store: &Store) -> bool {
    if store.location().local_dir.is_some() {
        return false;
    }
    let mut state = store.quality_state();
    state.since_recheck += 1;
    let any = state.unmatched.as_ref().is_none_or(|u| u.rows_len() > 0);
    if any && state.since_recheck >= RECHECK_FLUSHES {
        state.since_recheck = 0;
        return true;
    }
    false
}

/// Rolls up the pairs a flush of `requests` and `feedback` completes (and, on a `recheck`,
/// the stored unmatched rows whose request another node stored since), and writes them (and
/// the unmatched rows, when they changed) as pending files.
pub async fn flush_part(
    store: &Store,
    requests: &[RecordBatch],
    feedback: &[RecordBatch],
    recheck: bool,
) -> Result<FlushPart> {
    let m = match_rows(store, requests, feedback, recheck).await?;
    let loc = store.location();
    let mut files = Vec::new();
    let mut supersede = Vec::new();
    let mut put = async |table: Table, dir: Path, batch: RecordBatch| -> Result<()> {
        let rows = batch.num_rows();
        let body = tokio::task::spawn_blocking(move || {
            parquet::encode(table, &[parquet::to_file_batch(table, &batch)?])
        })
        .await
        .map_err(|e| Error::Internal(format!("encode task: {e}")))??;
        super::faults::hit("store::flush::write").await?;
        let (path, tmp) = loc.part_paths(&dir, "");
        loc.store
            .put(&tmp, object_store::PutPayload::from_bytes(body))
            .await?;
        files.push((tmp, path, dir, rows));
        Ok(())
    };
    if let Some(batch) = m.rollup {
        for (date, day) in super::rollup::split_days(&batch) {
            let dir = loc.path(&[Table::QualityHourly.name(), &format!("date={date}")]);
            put(Table::QualityHourly, dir, day).await?;
        }
    }
    let new_unmatched_rows = m.unmatched.iter().map(|b| b.num_rows()).sum::<usize>();
    let changed = m.resolved_stored || new_unmatched_rows > unmatched(store).await?.rows_len();
    let mut unmatched_state = None;
    if changed {
        let old = unmatched(store).await?;
        supersede.extend(old.files.iter().cloned());
        let mut files_now = Vec::new();
        if new_unmatched_rows > 0 {
            let all = arrow::compute::concat_batches(
                &Table::FeedbackUnmatched.file_schema(),
                &m.unmatched,
            )?;
            let sorted = parquet::sort_by_ts(std::slice::from_ref(&all))?;
            put(
                Table::FeedbackUnmatched,
                loc.path(&[Table::FeedbackUnmatched.name()]),
                sorted,
            )
            .await?;
            if let Some((_, path, _, _)) = files.last() {
                files_now.push(path.clone());
            }
        }
        unmatched_state = Some(Unmatched {
            rows: m.unmatched,
            files: files_now,
        });
    }
    Ok(FlushPart {
        files,
        supersede,
        install: Install {
            requests: m.requests,
            unmatched: unmatched_state,
        },
    })
}

impl FlushPart {
    /// The state after the flush committed: called at its commit point.
    pub fn install(self, state: &mut QualityState) {
        for (key, slot) in self.install.requests {
            state.index.insert(key, slot);
        }
        if let Some(u) = self.install.unmatched {
            state.unmatched = Some(u);
        }
    }
}
