//! Small-file compaction and retention.
//!
//! Compaction merges a partition's small files into one: the merged file is written as
//! `*.parquet.pending` and a journal naming inputs and output goes to `_compaction/`; under the
//! buffer's write lock the output is renamed into place and the inputs deleted; then the
//! journal goes. `recover` finishes or undoes whatever a crash interrupted, so no row is ever
//! counted twice or lost.

use futures::TryStreamExt;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use object_store::{ObjectMeta, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Location, Store, parquet, part_paths, random_hex};
use crate::error::{Error, Result};
use crate::schema::Table;

#[derive(Serialize, Deserialize)]
struct Journal {
    output: String,
    inputs: Vec<String>,
}

/// Finishes interrupted compactions and removes files of interrupted flushes.
pub async fn recover(loc: &Location) -> Result<()> {
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
    for table in Table::STORED {
        let dir = loc.path(&[table.name()]);
        let all: Vec<ObjectMeta> = store.list(Some(&dir)).try_collect().await?;
        for m in all {
            if m.location.as_ref().ends_with(".pending") {
                store.delete(&m.location).await?;
            }
        }
    }
    Ok(())
}

fn table_of(loc: &Location, dir: &Path) -> Table {
    Table::STORED
        .into_iter()
        .find(|t| {
            let root = loc.path(&[t.name()]);
            dir.as_ref()
                .strip_prefix(root.as_ref())
                .is_some_and(|rest| rest.starts_with('/'))
        })
        .unwrap_or(Table::Requests)
}

/// Compacts one partition directory when it holds enough small files; returns how many
/// merged files it wrote.
pub async fn compact_dir(store: &Store, dir: &Path) -> Result<usize> {
    let cfg = store.config();
    let loc = store.location();
    let metas: Vec<ObjectMeta> = loc.store.list(Some(dir)).try_collect().await?;
    let mut small: Vec<ObjectMeta> = metas
        .into_iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet"))
        .filter(|m| m.size < cfg.compact_small_bytes)
        .collect();
    if small.len() < cfg.compact_min_files.max(2) {
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
    let table = table_of(loc, dir);
    let mut written = 0;
    for group in groups.into_iter().filter(|g| g.len() >= 2) {
        merge(store, table, dir, &group).await?;
        written += 1;
    }
    Ok(written)
}

async fn merge(store: &Store, table: Table, dir: &Path, inputs: &[ObjectMeta]) -> Result<()> {
    let loc = store.location();
    // Inputs stream into the output one batch at a time, oldest file first: memory stays at one
    // row group whatever the partition's size. The merged file is not declared sorted.
    let (output, tmp) = part_paths(dir, "-c");
    let paths: Vec<Path> = inputs.iter().map(|m| m.location.clone()).collect();
    parquet::merge_files(&loc.store, table, &paths, &tmp).await?;
    let journal = Journal {
        output: output.to_string(),
        inputs: inputs.iter().map(|m| m.location.to_string()).collect(),
    };
    let jpath = loc.path(&["_compaction", &format!("{}.json", random_hex())]);
    let jbody = serde_json::to_vec(&journal).map_err(|e| Error::Internal(e.to_string()))?;
    loc.store.put(&jpath, PutPayload::from(jbody)).await?;
    {
        let _readers_wait = store.commit_lock().await;
        loc.store.rename(&tmp, &output).await?;
        for m in inputs {
            loc.store.delete(&m.location).await?;
        }
    }
    loc.store.delete(&jpath).await?;
    Ok(())
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
                let files: Vec<ObjectMeta> = loc.store.list(Some(&p)).try_collect().await?;
                let _readers_wait = store.commit_lock().await;
                for f in files {
                    loc.store.delete(&f.location).await?;
                }
                tracing::info!(table = table.name(), %date, "retention: dropped partition");
            }
        }
    }
    Ok(())
}
