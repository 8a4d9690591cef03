//! The commit protocol every write of Parquet files follows (a flush, a compaction):
//!
//! 1. **Write.** New files go to `NAME.parquet.pending`, invisible to every reader (readers
//!    take `*.parquet` only). On a local data dir each file and its directory are synced
//!    (`fsync`): object_store's local backend does not.
//! 2. **Commit.** One commit record, `_commits/ID.commit`, names the pending files with their
//!    final names, the files they supersede (compaction inputs) and the last WAL segment whose
//!    rows they hold. It is written with a create-only put (a hard link locally, a conditional
//!    put on S3) and synced with its directory. This write is the commit point: before it
//!    the flush did not happen (its pending files are garbage), after it the flush happened
//!    and recovery finishes it. A flush writes the record under the buffer's write lock and
//!    drops its rows from the buffer in the same step, so in-process readers see each row
//!    once.
//! 3. **Apply.** The pending files are renamed to their final names, superseded files deleted,
//!    the touched directories synced, then the WAL segments up to the record's are deleted,
//!    and the record is renamed `ID.applied`. Every step is idempotent: recovery, or the next
//!    flush, re-runs an unapplied record from the start.
//! 4. **Retire.** Applied records are deleted after [`RETAIN_APPLIED`], so a reader that
//!    listed files during the renames still finds the record that explains them.
//!
//! Readers honour commits through [`super::view::CommittedStore`]: while a record exists its
//! pending files are shown under their final names and the files it supersedes are hidden,
//! so a reader sees a commit all or nothing whichever step it is at. Outside readers that glob
//! `*.parquet` themselves (DuckDB, pyarrow) may see a commit half applied for the few
//! milliseconds its renames take; they never see a pending file.
//!
//! Recovery on open (only by the holder of the writer lock, [`super::lock`]): unapplied
//! records are applied, then every pending file left is removed, and retired records older
//! than the grace period deleted. Only then is the WAL opened and replayed, so the segments
//! a committed flush holds are gone before replay and the rows of an uncommitted one are
//! replayed. In a local data dir the lock holder is the only writer, so every record and
//! pending file is its own. In a bucket several nodes write at once: file and record names
//! carry the writer's node id (`TIME-NODE-RANDOM.commit`, `part-TIME-NODE-RANDOM.parquet`)
//! and a node finishes and removes only its own ([`Location::owns`]); readers already honour
//! another node's unapplied record through the committed view.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Location, faults, random_hex};
use crate::error::{Error, Result};
use crate::schema::Table;

/// Directory of commit records, below the data dir.
pub const COMMITS_DIR: &str = "_commits";
/// Suffix of a committed record whose steps are not all done.
pub const COMMITTED: &str = ".commit";
/// Suffix of a record whose steps are done, kept for readers until it is retired.
pub const APPLIED: &str = ".applied";
/// How long an applied record is kept for readers listing concurrently.
pub const RETAIN_APPLIED: Duration = Duration::from_secs(120);
/// Suffix of a file written but not yet committed.
pub const PENDING: &str = ".pending";

/// One file a commit makes visible.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Publish {
    /// Where it was written (`*.parquet.pending`).
    pub pending: String,
    /// Where readers find it (`*.parquet`).
    pub path: String,
}

/// What one commit changes, all or nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// Files made visible.
    pub publish: Vec<Publish>,
    /// Files superseded (compaction inputs): hidden from the commit on, deleted when applied.
    #[serde(default)]
    pub supersede: Vec<String>,
    /// WAL segments numbered up to this one hold only rows this commit stored.
    #[serde(default)]
    pub wal_upto: Option<u64>,
}

/// A commit record as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub location: Path,
    pub applied: bool,
    pub record: Record,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// The local file behind an object path, when the data dir is a local directory.
fn local_file(loc: &Location, p: &Path) -> Option<PathBuf> {
    loc.local_dir.as_ref()?;
    object_store::local::LocalFileSystem::new()
        .path_to_filesystem(p)
        .ok()
}

/// Makes files and directories durable (`fsync`) on a local data dir; a no-op on object
/// stores, where a completed put is durable.
pub async fn sync(loc: &Location, files: &[Path], dirs: &[Path]) -> Result<()> {
    if loc.local_dir.is_none() {
        return Ok(());
    }
    let mut paths: Vec<PathBuf> = files.iter().filter_map(|p| local_file(loc, p)).collect();
    let mut dir_paths: Vec<PathBuf> = dirs.iter().filter_map(|p| local_file(loc, p)).collect();
    dir_paths.sort();
    dir_paths.dedup();
    paths.append(&mut dir_paths);
    tokio::task::spawn_blocking(move || {
        for p in paths {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&p, e))?;
        }
        Ok::<_, Error>(())
    })
    .await
    .map_err(|e| Error::Internal(format!("sync task: {e}")))?
}

/// The directory an object path is in.
pub fn parent(p: &Path) -> Path {
    let parts: Vec<_> = p.parts().collect();
    Path::from_iter(parts[..parts.len().saturating_sub(1)].iter().cloned())
}

/// A fresh record path (`_commits/TIME-NODE-RANDOM.commit`): records sort by creation, and
/// name the node that wrote them.
fn record_path(loc: &Location) -> Path {
    let name = format!(
        "{}-{}-{}{COMMITTED}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%6f"),
        loc.node_name(),
        random_hex()
    );
    loc.path(&[COMMITS_DIR, &name])
}

/// Commit records already read, by name without its state suffix: a record's content never
/// changes (applying it only renames it `ID.applied`), so each is read once, not at every
/// listing of the data dir while it is kept (a query's first listing after a batch import
/// read every one of its hundreds of records, and every compaction read them twice).
/// [`list`] keeps only the records its listing saw.
#[derive(Debug, Default)]
pub struct RecordCache(std::sync::Mutex<HashMap<String, Record>>);

impl RecordCache {
    fn get(&self, id: &str) -> Option<Record> {
        self.0.lock().ok()?.get(id).cloned()
    }

    fn insert(&self, id: &str, record: &Record) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id.to_string(), record.clone());
        }
    }

    fn keep(&self, ids: &HashSet<&str>) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|id, _| ids.contains(id.as_str()));
        }
    }
}

/// A record's name without its state suffix.
fn record_id(name: &str) -> &str {
    name.strip_suffix(APPLIED)
        .or_else(|| name.strip_suffix(COMMITTED))
        .unwrap_or(name)
}

/// Every stored record, oldest first; records `cache` holds are not read again.
///
/// A record listed as `ID.commit` may be renamed `ID.applied` before it is read (its writer
/// finishing it; on an object store a rename is a copy then a delete, and the listing can
/// run before the copy): it is then read under its new name. Skipping it instead would drop,
/// from a reader's view, a commit whose renames and deletes it listed files in the middle of
/// (a compaction's inputs beside their merged file: every row counted twice).
pub async fn list(
    store: &dyn ObjectStore,
    commits_dir: &Path,
    cache: &RecordCache,
) -> Result<Vec<Stored>> {
    let mut metas: Vec<ObjectMeta> = store.list(Some(commits_dir)).try_collect().await?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let names: HashSet<&str> = metas.iter().map(|m| m.location.as_ref()).collect();
    let mut out = Vec::with_capacity(metas.len());
    for m in &metas {
        let name = m.location.as_ref();
        let applied = name.ends_with(APPLIED);
        if !applied && !name.ends_with(COMMITTED) {
            continue;
        }
        if let Some(record) = cache.get(record_id(name)) {
            out.push(Stored {
                location: m.location.clone(),
                applied,
                record,
                last_modified: m.last_modified,
            });
            continue;
        }
        let mut read = read_record(store, &m.location).await?;
        // Applied since the listing: read under its new name (unless listed under it too,
        // then it is read on its own).
        if read.is_none() && !applied {
            let done = applied_path(&m.location);
            if !names.contains(done.as_ref()) {
                read = read_record(store, &done).await?;
                tracing::debug!(
                    record = %done,
                    found = read.is_some(),
                    "commit record applied between its listing and its read"
                );
            }
        }
        if let Some(s) = &read {
            cache.insert(record_id(name), &s.record);
        }
        // Retired between the listing and the read: it explains nothing any more.
        out.extend(read);
    }
    cache.keep(&names.iter().map(|n| record_id(n)).collect());
    Ok(out)
}

/// The record at `location` (its state from its name); `None` when it is not there.
async fn read_record(store: &dyn ObjectStore, location: &Path) -> Result<Option<Stored>> {
    let got = match store.get(location).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let last_modified = got.meta.last_modified;
    let body = got.bytes().await?;
    let record: Record = serde_json::from_slice(&body)
        .map_err(|e| Error::Internal(format!("commit record {location}: {e}")))?;
    Ok(Some(Stored {
        location: location.clone(),
        applied: location.as_ref().ends_with(APPLIED),
        record,
        last_modified,
    }))
}

/// The name a committed record (`ID.commit`) has once applied (`ID.applied`).
fn applied_path(location: &Path) -> Path {
    let name = location.as_ref();
    Path::from(format!(
        "{}{APPLIED}",
        name.strip_suffix(COMMITTED).unwrap_or(name)
    ))
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// Who applies a record: the fault-injection points it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Flush,
    Compaction,
    /// Recovery or a retry: no points, so a restart finishes what a crash interrupted.
    Finish,
}

impl Step {
    async fn hit(self, flush: &'static str, compaction: &'static str) -> Result<()> {
        match self {
            Step::Flush => faults::hit(flush).await,
            Step::Compaction => faults::hit(compaction).await,
            Step::Finish => Ok(()),
        }
    }
}

/// An object path as stored in a record.
pub fn parse_path(s: &str) -> Result<Path> {
    Path::parse(s).map_err(|e| Error::Internal(format!("commit record path {s:?}: {e}")))
}

/// Runs a record's remaining steps (idempotent): rename pending files into place, delete the
/// superseded ones, sync, trim the WAL, mark the record applied.
pub async fn apply(
    loc: &Location,
    location: &Path,
    record: &Record,
    wal_dir: Option<&std::path::Path>,
    step: Step,
) -> Result<()> {
    step.hit("store::flush::publish", "store::compact::publish")
        .await?;
    let mut dirs = Vec::new();
    for p in &record.publish {
        let (from, to) = (parse_path(&p.pending)?, parse_path(&p.path)?);
        match loc.store.rename(&from, &to).await {
            Ok(()) => {}
            // Renamed by an earlier attempt.
            Err(e) if is_not_found(&e) && loc.store.head(&to).await.is_ok() => {}
            Err(e) => return Err(e.into()),
        }
        dirs.push(parent(&to));
    }
    for s in &record.supersede {
        let p = parse_path(s)?;
        match loc.store.delete(&p).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        dirs.push(parent(&p));
    }
    sync(loc, &[], &dirs).await?;
    if let (Some(upto), Some(dir)) = (record.wal_upto, wal_dir) {
        step.hit("store::flush::trim_wal", "store::flush::trim_wal")
            .await?;
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || super::wal::Wal::remove_upto(&dir, upto))
            .await
            .map_err(|e| Error::Internal(format!("WAL cleanup task: {e}")))??;
    }
    step.hit("store::flush::done", "store::compact::done")
        .await?;
    let applied = applied_path(location);
    loc.store.rename(location, &applied).await?;
    sync(loc, &[], &[parent(&applied)]).await?;
    Ok(())
}

/// Applies every unapplied record this writer owns (its own from before a crash, or one
/// whose apply failed; in a local data dir, every one) and deletes retired records past the
/// grace period (any node's: an applied record is finished whoever wrote it).
pub async fn finish(loc: &Location, wal_dir: Option<&std::path::Path>) -> Result<()> {
    let dir = loc.path(&[COMMITS_DIR]);
    let now = chrono::Utc::now();
    for s in list(loc.store.as_ref(), &dir, &loc.records).await? {
        if !s.applied {
            if !loc.owns(s.location.as_ref()) {
                continue;
            }
            apply(loc, &s.location, &s.record, wal_dir, Step::Finish).await?;
        } else if (now - s.last_modified).to_std().unwrap_or_default() > RETAIN_APPLIED {
            match loc.store.delete(&s.location).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Recovery on open, by the writer lock's holder: finish interrupted commits, then remove
/// the pending files no commit names (the crashed holder's unfinished writes).
pub async fn recover(loc: &Location, wal_dir: Option<&std::path::Path>) -> Result<()> {
    faults::hit("store::recover").await?;
    finish(loc, wal_dir).await?;
    let mut removed = 0usize;
    for table in Table::STORED {
        let dir = loc.path(&[table.name()]);
        let all: Vec<ObjectMeta> = loc.store.list(Some(&dir)).try_collect().await?;
        for m in all {
            let name = m.location.as_ref();
            // `NAME.pending#N` is the local backend's staging file of an unfinished put. In a
            // bucket, other nodes' pending files belong to writes they may still commit.
            if (name.ends_with(PENDING) || name.contains(".pending#")) && loc.owns(name) {
                match loc.store.delete(&m.location).await {
                    Ok(()) => removed += 1,
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    // A record put interrupted before its link: the local backend's staging file.
    let staged: Vec<ObjectMeta> = loc
        .store
        .list(Some(&loc.path(&[COMMITS_DIR])))
        .try_collect()
        .await?;
    for m in staged.iter().filter(|m| m.location.as_ref().contains('#')) {
        match loc.store.delete(&m.location).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if removed > 0 {
        tracing::info!(
            files = removed,
            "removed files of writes that never committed"
        );
    }
    Ok(())
}

/// Deletes uncommitted files (best effort: recovery removes what this misses).
pub async fn discard(loc: &Location, pending: &[Path]) {
    for p in pending {
        if let Err(e) = loc.store.delete(p).await
            && !is_not_found(&e)
        {
            tracing::warn!(file = %p, error = %e, "cannot remove an uncommitted file");
        }
    }
}

/// Passes the commit point: writes `record` durably. `Ok` means committed; `Err` means not
/// committed, and the record's pending files are removed. When the outcome cannot be known
/// (the record's put failed and its existence cannot be checked, or its sync failed) the
/// process aborts: recovery on the next open settles it from what is on disk, where going
/// on could count rows twice or trim the WAL behind a record that is not durable.
pub async fn commit(loc: &Location, record: &Record) -> Result<Path> {
    let path = record_path(loc);
    let pending: Vec<Path> = record
        .publish
        .iter()
        .filter_map(|p| parse_path(&p.pending).ok())
        .collect();
    let body = serde_json::to_vec(record)?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    if let Err(e) = loc
        .store
        .put_opts(&path, PutPayload::from(body), opts)
        .await
    {
        match loc.store.head(&path).await {
            Err(h) if is_not_found(&h) => {
                discard(loc, &pending).await;
                return Err(e.into());
            }
            Ok(_) => {}
            Err(h) => fatal(&path, &format!("{e}; checking it: {h}")),
        }
    }
    if let Err(e) = sync(loc, std::slice::from_ref(&path), &[parent(&path)]).await {
        fatal(&path, &e.to_string());
    }
    Ok(path)
}

fn fatal(record: &Path, why: &str) -> ! {
    tracing::error!(%record, error = why, "cannot tell whether a commit is durable; stopping so that recovery settles it");
    eprintln!("error: commit record {record}: {why}; stopping (the next start recovers)");
    std::process::abort()
}
