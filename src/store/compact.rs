//! Small-file compaction and retention.
//!
//! Compaction merges a partition's small files into one, through the commit protocol of
//! `store::commit`: the merged file is written as `*.parquet.pending` and synced, one commit
//! record names it and the inputs it supersedes, then it is renamed into place and the inputs
//! deleted. Readers see the inputs or the merged file, never both; a crash at any step is
//! finished or undone by recovery, so no row is ever counted twice or lost. It runs inside a
//! flush, so only under the writer lock; in a bucket written by several nodes, a partition is
//! compacted by the one holding its compaction lease (`store::lease`), from files no
//! unfinished commit names. A merge keeps the first copy of each record key, so a record
//! that two nodes both stored (re-sent to another node) is stored once again after it; for
//! requests and feedback, the same commit publishes the negated rollups of the dropped copies
//! (`rollup::negate`), so the rollups count the record once again too. A feedback copy whose
//! request is not stored yet is kept until a later merge: its rollup cell is not known.
//!
//! `recover_journals` finishes compactions journaled by earlier releases (`_compaction/`).

use futures::TryStreamExt;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore as _};
use serde::{Deserialize, Serialize};

use arrow::array::RecordBatch;

use super::dedupe::KeySet;
use super::{Location, Store, claim, commit, faults, lease, parquet, quality, rollup};
use crate::error::Result;
use crate::schema::Table;

#[derive(Serialize, Deserialize)]
struct Journal {
    output: String,
    inputs: Vec<String>,
}

/// Finishes compactions interrupted under the journal format of earlier releases.
pub async fn recover_journals(loc: &Location) -> Result<()> {
    let store = &loc.store;
    let jdir = loc.path(&["_compaction"]);
    let journals: Vec<ObjectMeta> = store.list(Some(&jdir)).try_collect().await?;
    for j in journals {
        let body = store.get(&j.location).await?.bytes().await?;
        let Ok(journal) = serde_json::from_slice::<Journal>(&body) else {
            store.delete(&j.location).await?;
            continue;
        };
        let output = Path::from(journal.output.as_str());
        if store.head(&output).await.is_ok() {
            // The merged file is in place: the inputs must go.
            for i in &journal.inputs {
                match store.delete(&Path::from(i.as_str())).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        store.delete(&j.location).await?;
    }
    Ok(())
}

/// The stored table a directory belongs to.
fn table_of(loc: &Location, dir: &Path) -> Option<Table> {
    Table::STORED.into_iter().find(|t| {
        let root = loc.path(&[t.name()]);
        dir.as_ref()
            .strip_prefix(root.as_ref())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Compacts one partition directory when it holds enough small files
/// (`compact_min_files`); returns how many merged files it wrote.
pub async fn compact_dir(store: &Store, dir: &Path) -> Result<usize> {
    compact_dir_at(store, dir, store.config().compact_min_files).await
}

/// Merges the small files of each day of the rollup tables before `before` (every day when
/// `None`) as soon as it has two; returns how many merged files it wrote. A rollup's rows are
/// few, so what a query over it pays for is its files (each opened, its footer and statistics
/// read): on 10M generated requests, 30 files a table instead of 140 halved the time of the
/// reports that read them. A flush runs it at its first and then once a day, for the days
/// that are over (today's files wait for `compact_min_files`, so a live flush does not
/// rewrite the current day each time); closing the store runs it for every day.
pub async fn merge_rollup_days(store: &Store, before: Option<&str>) -> Result<usize> {
    let loc = store.location();
    let mut written = 0;
    for table in Table::ROLLUPS {
        let root = loc.path(&[table.name()]);
        let days = loc.committed().list_with_delimiter(Some(&root)).await?;
        for dir in days.common_prefixes {
            let over = dir
                .filename()
                .and_then(|f| f.strip_prefix("date="))
                .is_some_and(|date| before.is_none_or(|b| date < b));
            if over {
                written += compact_dir_at(store, &dir, 2).await?;
            }
        }
    }
    Ok(written)
}

async fn compact_dir_at(store: &Store, dir: &Path, min_files: usize) -> Result<usize> {
    let cfg = store.config();
    let loc = store.location();
    // Each node keeps one unmatched-feedback file, its own (`store::quality`): merging two
    // would hand one node's rows to another.
    let Some(table) = table_of(loc, dir).filter(|t| *t != Table::FeedbackUnmatched) else {
        return Ok(0);
    };
    let min_files = min_files.max(2);
    let is_small = |m: &ObjectMeta| {
        m.location.as_ref().ends_with(".parquet") && m.size < cfg.compact_small_bytes
    };
    // Counted before any lease: a partition with too few small files (most of those a flush
    // wrote to, every day the daily rollup pass looks at) costs one listing, not a lease
    // taken and released in the bucket.
    let mut listed: Vec<ObjectMeta> = loc.committed().list(Some(dir)).try_collect().await?;
    if listed.iter().filter(|m| is_small(m)).count() < min_files {
        return Ok(0);
    }
    // One compactor per partition among the nodes writing a bucket (`store::lease`).
    let Some(mut lease) = lease::Partition::take(loc, dir).await? else {
        return Ok(0);
    };
    if lease.shared() {
        listed = loc.committed().list(Some(dir)).try_collect().await?;
    }
    let mut small: Vec<ObjectMeta> = lease
        .settled(loc, listed)
        .await?
        .into_iter()
        .filter(|m| is_small(m))
        .collect();
    if small.len() < min_files {
        lease.release(loc).await;
        return Ok(0);
    }
    small.sort_by(|a, b| a.location.cmp(&b.location));
    // Merge in groups whose inputs add up to at most 4x the small-file size, bounding memory.
    let cap = cfg.compact_small_bytes.saturating_mul(4);
    let mut groups: Vec<Vec<ObjectMeta>> = vec![Vec::new()];
    let mut size = 0u64;
    for m in small {
        if size + m.size > cap && groups.last().is_some_and(|g| g.len() >= 2) {
            groups.push(Vec::new());
            size = 0;
        }
        size += m.size;
        if let Some(g) = groups.last_mut() {
            g.push(m);
        }
    }
    let mut written = 0;
    let mut merged = Ok(());
    for group in groups.into_iter().filter(|g| g.len() >= 2) {
        merged = merge(store, table, dir, &group, &mut lease).await;
        if merged.is_err() {
            break;
        }
        written += 1;
    }
    lease.release(loc).await;
    merged.map(|()| written)
}

async fn merge(
    store: &Store,
    table: Table,
    dir: &Path,
    inputs: &[ObjectMeta],
    lease: &mut lease::Partition,
) -> Result<()> {
    let loc = store.location();
    // Inputs stream into the output one batch at a time, oldest file first: memory stays at one
    // row group whatever the partition's size. The merged file is not declared sorted.
    let (output, tmp) = loc.part_paths(dir, "-c");
    let paths: Vec<Path> = inputs.iter().map(|m| m.location.clone()).collect();
    // The merged file, then the rollup corrections for the copies it dropped.
    let mut files = vec![(tmp.clone(), output, dir.clone())];
    let written = async {
        faults::hit("store::compact::write").await?;
        // Feedback copies are found first: a copy is dropped only where its correction of
        // the quality rollup can be made.
        let (quality_fix, keep) = match table {
            Table::Feedback => feedback_repeats(store, &paths).await?,
            _ => Default::default(),
        };
        let merged = parquet::merge_files(&loc.store, table, &paths, &tmp, &keep).await?;
        let mut fixes = quality_fix;
        if table == Table::Requests && !merged.repeats.is_empty() {
            fixes.extend(rollup::day_pieces(&merged.repeats)?);
        }
        corrections(loc, fixes, &mut files).await?;
        let (tmps, dirs): (Vec<Path>, Vec<Path>) =
            files.iter().map(|f| (f.0.clone(), f.2.clone())).unzip();
        commit::sync(loc, &tmps, &dirs).await?;
        faults::hit("store::compact::commit").await?;
        lease.confirm(loc).await
    };
    if let Err(e) = written.await {
        let tmps: Vec<Path> = files.iter().map(|f| f.0.clone()).collect();
        commit::discard(loc, &tmps).await;
        return Err(e);
    }
    let record = commit::Record {
        publish: files
            .iter()
            .map(|(tmp, path, _)| commit::Publish {
                pending: tmp.to_string(),
                path: path.to_string(),
            })
            .collect(),
        supersede: paths.iter().map(|p| p.to_string()).collect(),
        wal_upto: None,
    };
    let at = commit_seen(store, &record).await?;
    commit::apply(loc, &at, &record, None, commit::Step::Compaction).await
}

/// The quality rollup of the feedback copies a merge of `inputs` will drop (the later copies
/// of a record another node also stored), and the keys of the copies it must keep: those
/// whose request is not stored yet (see `quality::repeats`).
async fn feedback_repeats(
    store: &Store,
    inputs: &[Path],
) -> Result<(Vec<(Table, String, RecordBatch)>, KeySet)> {
    let loc = store.location();
    let mut seen = KeySet::default();
    let mut repeats = Vec::new();
    for p in inputs {
        for b in parquet::read_key_columns(&loc.store, p, &quality::FEEDBACK_COLUMNS).await? {
            let (_, again) =
                claim::first_copies(Table::Feedback, b, &mut seen, &KeySet::default())?;
            repeats.extend(again);
        }
    }
    if repeats.is_empty() {
        return Ok(Default::default());
    }
    let (rolled, keep) = quality::repeats(loc, &repeats).await?;
    let pieces = rolled
        .map(|b| {
            rollup::split_days(&b)
                .into_iter()
                .map(|(date, day)| (Table::QualityHourly, date, day))
                .collect()
        })
        .unwrap_or_default();
    Ok((pieces, keep))
}

/// Writes, as pending files, the negated rollup rows (`pieces`: the rollups, of any rollup
/// table, of the copies a merge dropped): published with the merged file, they take out of the rollups the
/// copy that another node's flush rolled up too.
async fn corrections(
    loc: &Location,
    pieces: Vec<(Table, String, RecordBatch)>,
    files: &mut Vec<(Path, Path, Path)>,
) -> Result<()> {
    for (t, date, day) in pieces {
        let dir = super::flush::partition_dir(loc, t, &date, "");
        let body = parquet::encode(t, &[parquet::to_file_batch(t, &rollup::negate(&day)?)?])?;
        let (path, tmp) = loc.part_paths(&dir, "-x");
        files.push((tmp.clone(), path, dir));
        loc.store.put(&tmp, body.into()).await?;
    }
    Ok(())
}

/// Passes a commit point with readers' planning held off (as a flush does), so no query lists
/// files across it and a listing cached before it is dropped by the generation it moves.
async fn commit_seen(store: &Store, record: &commit::Record) -> Result<Path> {
    let _readers_wait = store.commit_lock().await;
    let at = commit::commit(store.location(), record).await?;
    store.bump_generation();
    Ok(at)
}

/// Deletes partitions whose date is older than `days` days before today (UTC).
pub async fn apply_retention(store: &Store, days: u32) -> Result<()> {
    let loc = store.location();
    let cutoff = (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
        .format("%Y-%m-%d")
        .to_string();
    for table in Table::STORED {
        let dir = loc.path(&[table.name()]);
        let listing = loc.store.list_with_delimiter(Some(&dir)).await?;
        for p in listing.common_prefixes {
            let Some(date) = p
                .filename()
                .and_then(|f| f.strip_prefix("date="))
                .map(str::to_string)
            else {
                continue;
            };
            if date.as_str() < cutoff.as_str() {
                // One commit per partition: readers see it whole or gone.
                let files: Vec<ObjectMeta> = loc.committed().list(Some(&p)).try_collect().await?;
                let record = commit::Record {
                    supersede: files.iter().map(|f| f.location.to_string()).collect(),
                    ..Default::default()
                };
                let at = commit_seen(store, &record).await?;
                commit::apply(loc, &at, &record, None, commit::Step::Compaction).await?;
                tracing::info!(table = table.name(), %date, "retention: dropped partition");
            }
        }
    }
    Ok(())
}
