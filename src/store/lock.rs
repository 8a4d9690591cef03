//! Who may write a data dir.
//!
//! - A local data dir has one writer: an exclusive `flock` on `LOCK` in the data dir,
//!   released by the kernel when the process ends however it ends. The file holds the
//!   holder's node id, pid, host, command line and start time, which a refused writer
//!   reports. A second writer gets an error naming the holder; it does not wait: to add
//!   records while a server runs, send them to its ingest API.
//! - A bucket (S3) has any number of writers, one per **node id**. Each holds a node lease,
//!   `_nodes/NODE.lease` ([`super::lease`]), created with a create-only put, renewed every
//!   [`LEASE_RENEW`] with a put conditional on the version last written, and valid for
//!   [`LEASE_TTL`] after each renewal; a second process with the same node id is refused. A
//!   holder that fails to renew stops committing (see [`WriterLock::check`]). The node id is
//!   in the name of every file and commit record a node writes, so nodes never collide, and
//!   recovery on open touches only the opening node's own unfinished files (`store::commit`).
//!
//! The node id comes from `--node-id`, else from `NODE_ID` in the WAL dir (written on first
//! start), so a node restarted with its WAL finds what it left unfinished.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use tokio::sync::Notify;

use super::Location;
pub use super::lease::Holder;
use super::lease::{Lease, hostname};
use crate::error::{Error, Result};

/// Directory of node leases below a bucket's data dir.
pub const NODES_DIR: &str = "_nodes";
/// Name of the lock file in a local data dir.
pub const LOCK_FILE: &str = "LOCK";
/// How long a lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often the holder renews its lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);

/// Name of the file in the WAL dir that keeps a node's id across restarts.
pub const NODE_ID_FILE: &str = "NODE_ID";
/// Longest node id.
pub const NODE_ID_MAX: usize = 40;

/// Checks a node id: letters, digits and `_`, at most [`NODE_ID_MAX`]. File names carry it
/// between `-` separators, so it holds no `-`.
pub fn check_node_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > NODE_ID_MAX
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::Config(format!(
            "node id {id:?}: use 1 to {NODE_ID_MAX} letters, digits or `_`"
        )));
    }
    Ok(())
}

/// A new node id: the host name (made file-name safe) and a random suffix.
fn new_node_id() -> String {
    let host: String = hostname()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(NODE_ID_MAX - 9)
        .collect();
    format!("{host}_{}", &super::random_hex()[..8])
}

/// This process's node id: `configured` (`--node-id`), else the one kept in the WAL dir
/// (created there on first start, so a restarted node finds its own unfinished files), else
/// a fresh one (a process without a WAL has nothing to recover).
pub fn node_id(configured: Option<&str>, wal_dir: Option<&std::path::Path>) -> Result<String> {
    if let Some(id) = configured {
        check_node_id(id)?;
        return Ok(id.to_string());
    }
    let Some(dir) = wal_dir else {
        return Ok(new_node_id());
    };
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            check_node_id(&id).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let id = new_node_id();
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            f.write_all(format!("{id}\n").as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
            Ok(id)
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn busy(data_dir: &str, holder: Option<Holder>) -> Error {
    let who = holder
        .map(|h| h.describe())
        .unwrap_or_else(|| "a process that has not yet said who it is".into());
    Error::Unavailable(format!(
        "data dir {data_dir} has a writer already ({who}); one process writes a data dir at a \
         time: stop it first, or send the records to its ingest API"
    ))
}

fn node_busy(data_dir: &str, node: &str, holder: Option<Holder>) -> Error {
    let who = holder
        .map(|h| h.describe())
        .unwrap_or_else(|| "a process that has not yet said who it is".into());
    Error::Unavailable(format!(
        "node id {node} already writes {data_dir} ({who}); each writer of a bucket needs its \
         own node id (--node-id, or its own --wal-dir)"
    ))
}

/// The writer lock, held until dropped.
pub struct WriterLock {
    held: Held,
}

enum Held {
    /// The locked file; the kernel drops the lock with the descriptor.
    File(#[allow(dead_code)] File),
    Lease {
        path: Path,
        loc: Box<Location>,
        lost: Arc<AtomicBool>,
        stop: Arc<Notify>,
    },
}

impl WriterLock {
    /// Takes the lock of `loc`'s data dir, or says who holds it.
    pub async fn acquire(loc: &Location) -> Result<WriterLock> {
        match &loc.local_dir {
            Some(dir) => {
                let dir = dir.clone();
                let node = loc.node.clone();
                tokio::task::spawn_blocking(move || lock_file(&dir, &node))
                    .await
                    .map_err(|e| Error::Internal(format!("lock task: {e}")))?
            }
            None => acquire_lease(loc).await,
        }
    }

    /// `Err` once a lease could not be renewed: another writer may have taken over, so this
    /// one must not commit.
    pub fn check(&self) -> Result<()> {
        match &self.held {
            Held::Lease { lost, path, .. } if lost.load(Ordering::Acquire) => {
                Err(Error::Unavailable(format!(
                    "the node lease {path} could not be renewed; this process no longer writes"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Gives the lock up now (a lease is deleted rather than left to expire).
    pub async fn release(&self) {
        if let Held::Lease {
            path,
            loc,
            lost,
            stop,
        } = &self.held
        {
            stop.notify_one();
            if !lost.load(Ordering::Acquire) {
                let _ = loc.store.delete(path).await;
            }
        }
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let Held::Lease { stop, .. } = &self.held {
            stop.notify_one();
        }
    }
}

fn lock_file(dir: &std::path::Path, node: &str) -> Result<WriterLock> {
    let path = dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    if f.try_lock().is_err() {
        let mut body = String::new();
        let holder = f
            .read_to_string(&mut body)
            .ok()
            .and_then(|_| serde_json::from_str::<Holder>(&body).ok());
        return Err(busy(&dir.display().to_string(), holder));
    }
    let mut body = serde_json::to_vec(&Holder::me(node))?;
    body.push(b'\n');
    f.set_len(0)
        .and_then(|_| f.rewind())
        .and_then(|_| f.write_all(&body))
        .map_err(|e| Error::io(&path, e))?;
    Ok(WriterLock {
        held: Held::File(f),
    })
}

async fn acquire_lease(loc: &Location) -> Result<WriterLock> {
    let path = loc.path(&[NODES_DIR, &format!("{}.lease", loc.node)]);
    let me = Holder::me(&loc.node);
    let lease = match Lease::take(loc, path, me, LEASE_TTL).await? {
        Ok(l) => l,
        Err(holder) => return Err(node_busy(loc.prefix.as_ref(), &loc.node, holder)),
    };
    let path = lease.path.clone();
    let lost = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(Notify::new());
    tokio::spawn(renew(loc.clone(), lease, lost.clone(), stop.clone()));
    Ok(WriterLock {
        held: Held::Lease {
            path,
            loc: Box::new(loc.clone()),
            lost,
            stop,
        },
    })
}

async fn renew(loc: Location, mut lease: Lease, lost: Arc<AtomicBool>, stop: Arc<Notify>) {
    let mut renewed = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LEASE_RENEW) => {}
            _ = stop.notified() => return,
        }
        match lease.renew(&loc).await {
            Ok(()) => renewed = std::time::Instant::now(),
            // Transient failures are retried while the lease is still surely ours.
            Err(e)
                if !matches!(e, object_store::Error::Precondition { .. })
                    && renewed.elapsed() + LEASE_RENEW < LEASE_TTL =>
            {
                tracing::warn!(lease = %lease.path, error = %e, "cannot renew the node lease; retrying");
            }
            Err(e) => {
                tracing::error!(lease = %lease.path, error = %e, "node lease lost: no further commits");
                lost.store(true, Ordering::Release);
                return;
            }
        }
    }
}
