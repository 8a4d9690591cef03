//! Leases on an object store, written with conditional puts: who may do something that only
//! one process may do at a time, among processes that share nothing but the bucket.
//!
//! A lease is one small JSON object naming its holder and when it runs out. It is taken with
//! a create-only put (`PutMode::Create`, S3's `If-None-Match: *`), renewed and released with
//! a put conditional on the version last written (`PutMode::Update`, `If-Match`), and an
//! expired one is taken over the same way, so of two processes racing for a lease exactly one
//! wins. A lease whose holder was a process of the same host that has exited is free at
//! once (a node restarted after a crash takes its lease back); otherwise expiry is judged by
//! wall clocks: nodes are assumed to keep theirs within a few
//! seconds of each other (NTP), far below the lease lifetimes used here.
//!
//! Two kinds of lease live in a bucket:
//! - **Node leases** (`_nodes/NODE.lease`, [`super::lock`]): one live process per node id,
//!   held for as long as its store is open.
//! - **Compaction leases** (`_leases/TABLE/PARTITION.lease`, [`Partition`]): one compactor per
//!   partition. The compactor renews its lease right before its commit record is written
//!   ([`Partition::confirm`]), so a compactor that stalled past the lease's life (and may have
//!   been replaced) gives up instead of committing a second merge of the same files.
//!
//! A local data dir has one writer (its `flock`), so its compaction lease is a no-op.

use std::time::Duration;

use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use serde::{Deserialize, Serialize};

use super::{Location, commit};
use crate::error::{Error, Result};

/// How long a compaction lease lives without renewal: far longer than merging one group of
/// small files (at most 4 × 16 MiB) takes.
pub const COMPACTION_TTL: Duration = Duration::from_secs(60);
/// Directory of compaction leases below the data dir.
pub const LEASES_DIR: &str = "_leases";

/// Who holds a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    /// The node id of the holder (see [`super::lock::node_id`]).
    #[serde(default)]
    pub node: String,
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since: String,
    /// When the lease runs out unless renewed, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl Holder {
    /// This process, as node `node`.
    pub fn me(node: &str) -> Holder {
        let mut command: String = std::env::args().collect::<Vec<_>>().join(" ");
        if command.len() > 300 {
            let mut end = 300;
            while !command.is_char_boundary(end) {
                end -= 1;
            }
            command.truncate(end);
            command.push_str(" …");
        }
        Holder {
            node: node.to_string(),
            pid: std::process::id(),
            host: hostname(),
            command,
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            expires: None,
        }
    }

    pub fn describe(&self) -> String {
        let node = if self.node.is_empty() {
            String::new()
        } else {
            format!("node {}, ", self.node)
        };
        format!(
            "{node}pid {} on {}, `{}`, since {}",
            self.pid, self.host, self.command, self.since
        )
    }

    /// Whether another process may take the lease: it ran out, or its holder was a process
    /// of this host that is gone (a node restarted after a crash need not wait for expiry).
    fn vacated(&self) -> bool {
        let expired = self
            .expires
            .as_deref()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .is_none_or(|e| e < chrono::Utc::now());
        let gone = self.host == hostname()
            && self.pid != std::process::id()
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists();
        expired || gone
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

/// A lease this process holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub path: Path,
    holder: Holder,
    ttl: Duration,
    version: UpdateVersion,
}

fn body(holder: &Holder, ttl: Duration) -> Result<PutPayload> {
    let mut h = holder.clone();
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30));
    h.expires =
        Some((chrono::Utc::now() + ttl).to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    Ok(PutPayload::from(serde_json::to_vec(&h)?))
}

fn version_of(r: &object_store::PutResult) -> UpdateVersion {
    UpdateVersion {
        e_tag: r.e_tag.clone(),
        version: r.version.clone(),
    }
}

impl Lease {
    /// Takes the lease at `path` for `ttl`: `Ok(Err(holder))` when a live holder has it.
    pub async fn take(
        loc: &Location,
        path: Path,
        holder: Holder,
        ttl: Duration,
    ) -> Result<std::result::Result<Lease, Option<Holder>>> {
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let version = match loc.store.put_opts(&path, body(&holder, ttl)?, create).await {
            Ok(r) => version_of(&r),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let current = match loc.store.get(&path).await {
                    Ok(c) => c,
                    // Released between the two calls: someone else will have it next.
                    Err(object_store::Error::NotFound { .. }) => return Ok(Err(None)),
                    Err(e) => return Err(e.into()),
                };
                let seen = UpdateVersion {
                    e_tag: current.meta.e_tag.clone(),
                    version: current.meta.version.clone(),
                };
                let previous: Option<Holder> = serde_json::from_slice(&current.bytes().await?).ok();
                if !previous.as_ref().is_none_or(Holder::vacated) {
                    return Ok(Err(previous));
                }
                let take = PutOptions {
                    mode: PutMode::Update(seen),
                    ..Default::default()
                };
                match loc.store.put_opts(&path, body(&holder, ttl)?, take).await {
                    Ok(r) => {
                        tracing::warn!(
                            lease = %path,
                            previous = previous.map(|h| h.describe()).unwrap_or_default(),
                            "took over a vacated lease"
                        );
                        version_of(&r)
                    }
                    Err(object_store::Error::Precondition { .. }) => {
                        let now: Option<Holder> = match loc.store.get(&path).await {
                            Ok(r) => serde_json::from_slice(&r.bytes().await?).ok(),
                            Err(_) => None,
                        };
                        return Ok(Err(now));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Ok(Lease {
            path,
            holder,
            ttl,
            version,
        }))
    }

    /// Extends the lease by its lifetime from now; `Err(Precondition)` means another process
    /// took it over (this one ran past its expiry).
    pub async fn renew(&mut self, loc: &Location) -> std::result::Result<(), object_store::Error> {
        let opts = PutOptions {
            mode: PutMode::Update(self.version.clone()),
            ..Default::default()
        };
        let payload = body(&self.holder, self.ttl).map_err(|e| object_store::Error::Generic {
            store: "lease",
            source: Box::new(e),
        })?;
        let r = loc.store.put_opts(&self.path, payload, opts).await?;
        self.version = version_of(&r);
        Ok(())
    }

    /// Gives the lease up (best effort: an undeleted lease simply expires).
    pub async fn release(&self, loc: &Location) {
        if let Err(e) = loc.store.delete(&self.path).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            tracing::warn!(lease = %self.path, error = %e, "cannot release a lease; it expires");
        }
    }
}

/// The compaction lease of one partition directory: held while this process compacts it.
pub struct Partition {
    lease: Option<Lease>,
}

impl Partition {
    /// Whether other nodes may compact the partition too (a bucket): what was listed before
    /// the lease was taken may have been merged since.
    pub fn shared(&self) -> bool {
        self.lease.is_some()
    }

    /// Takes the compaction lease of partition `dir`; `None` when another node compacts it
    /// now. Always granted on a local data dir (one writer).
    pub async fn take(loc: &Location, dir: &Path) -> Result<Option<Partition>> {
        if loc.local_dir.is_some() {
            return Ok(Some(Partition { lease: None }));
        }
        let rel = dir
            .as_ref()
            .strip_prefix(loc.prefix.as_ref())
            .unwrap_or(dir.as_ref())
            .trim_matches('/');
        let path = loc.path(&[LEASES_DIR, &format!("{rel}.lease")]);
        match Lease::take(loc, path, Holder::me(&loc.node), COMPACTION_TTL).await? {
            Ok(lease) => Ok(Some(Partition { lease: Some(lease) })),
            Err(holder) => {
                tracing::debug!(
                    partition = %dir,
                    holder = holder.map(|h| h.describe()).unwrap_or_default(),
                    "another node compacts this partition"
                );
                Ok(None)
            }
        }
    }

    /// The files of a listing a compactor may merge: those no unfinished commit names. A
    /// file another node has just committed, or is superseding, is left for later.
    pub async fn settled(
        &self,
        loc: &Location,
        listed: Vec<ObjectMeta>,
    ) -> Result<Vec<ObjectMeta>> {
        let open: std::collections::HashSet<String> = commit::list(
            loc.store.as_ref(),
            &loc.path(&[commit::COMMITS_DIR]),
            &loc.records,
        )
        .await?
        .into_iter()
        .filter(|s| !s.applied)
        .flat_map(|s| {
            let r = s.record;
            r.publish.into_iter().map(|p| p.path).chain(r.supersede)
        })
        .collect();
        Ok(listed
            .into_iter()
            .filter(|m| !open.contains(m.location.as_ref()))
            .collect())
    }

    /// Right before a compaction's commit: renews the lease, so the commit follows proof
    /// that no other node has taken the partition over.
    pub async fn confirm(&mut self, loc: &Location) -> Result<()> {
        let Some(lease) = self.lease.as_mut() else {
            return Ok(());
        };
        lease.renew(loc).await.map_err(|e| {
            Error::Unavailable(format!(
                "compaction lease {} lost before its commit ({e}); the merge is dropped",
                lease.path
            ))
        })
    }

    /// Gives the partition back to other compactors.
    pub async fn release(self, loc: &Location) {
        if let Some(lease) = &self.lease {
            lease.release(loc).await;
        }
    }
}
