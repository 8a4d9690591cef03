//! One writer per data dir. Every process that writes (`serve`, `ingest`) holds the writer
//! lock for as long as its store is open; read-only commands (`query`, `report`) take none.
//!
//! - A local data dir: an exclusive `flock` on `LOCK` in the data dir, released by the
//!   kernel when the process ends however it ends. The file holds the holder's pid, host,
//!   command line and start time, which a refused writer reports.
//! - An object store (S3): a lease object, `_lock/lease.json`, created with a create-only
//!   put, renewed every [`LEASE_RENEW`] with a put conditional on the version last written,
//!   and valid for [`LEASE_TTL`] after each renewal. A writer finding an expired lease takes
//!   it over with a conditional put, so two never both win. A holder that fails to renew
//!   stops committing (see [`WriterLock::check`]).
//!
//! A second writer gets an error naming the holder; it does not wait. To add records while a
//! server runs, send them to its ingest API.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::Location;
use crate::error::{Error, Result};

/// Name of the lock file in a local data dir.
pub const LOCK_FILE: &str = "LOCK";
/// How long a lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often the holder renews its lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);

/// Who holds the lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since: String,
    /// When a lease runs out (object stores only), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl Holder {
    fn me() -> Holder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown host".into());
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
            pid: std::process::id(),
            host,
            command,
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            expires: None,
        }
    }

    fn describe(&self) -> String {
        format!(
            "pid {} on {}, `{}`, since {}",
            self.pid, self.host, self.command, self.since
        )
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

/// The writer lock, held until dropped.
pub struct WriterLock {
    held: Held,
}

enum Held {
    /// The locked file; the kernel drops the lock with the descriptor.
    File(#[allow(dead_code)] File),
    Lease {
        path: Path,
        loc: Location,
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
                tokio::task::spawn_blocking(move || lock_file(&dir))
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
                    "the writer lease {path} could not be renewed; this process no longer writes"
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

fn lock_file(dir: &std::path::Path) -> Result<WriterLock> {
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
    let mut body = serde_json::to_vec(&Holder::me())?;
    body.push(b'\n');
    f.set_len(0)
        .and_then(|_| f.rewind())
        .and_then(|_| f.write_all(&body))
        .map_err(|e| Error::io(&path, e))?;
    Ok(WriterLock {
        held: Held::File(f),
    })
}

fn lease_body(holder: &Holder) -> Result<PutPayload> {
    let mut h = holder.clone();
    h.expires =
        Some((chrono::Utc::now() + LEASE_TTL).to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    Ok(PutPayload::from(serde_json::to_vec(&h)?))
}

fn version_of(r: &object_store::PutResult) -> UpdateVersion {
    UpdateVersion {
        e_tag: r.e_tag.clone(),
        version: r.version.clone(),
    }
}

async fn acquire_lease(loc: &Location) -> Result<WriterLock> {
    let path = loc.path(&["_lock", "lease.json"]);
    let me = Holder::me();
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let version = match loc.store.put_opts(&path, lease_body(&me)?, create).await {
        Ok(r) => version_of(&r),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let current = loc.store.get(&path).await?;
            let seen = UpdateVersion {
                e_tag: current.meta.e_tag.clone(),
                version: current.meta.version.clone(),
            };
            let holder: Option<Holder> = serde_json::from_slice(&current.bytes().await?).ok();
            let expired = holder
                .as_ref()
                .and_then(|h| h.expires.as_deref())
                .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                .is_none_or(|e| e < chrono::Utc::now());
            if !expired {
                return Err(busy(loc.prefix.as_ref(), holder));
            }
            let take = PutOptions {
                mode: PutMode::Update(seen),
                ..Default::default()
            };
            match loc.store.put_opts(&path, lease_body(&me)?, take).await {
                Ok(r) => {
                    tracing::warn!(
                        previous = holder.map(|h| h.describe()).unwrap_or_default(),
                        "took over an expired writer lease"
                    );
                    version_of(&r)
                }
                Err(object_store::Error::Precondition { .. }) => {
                    let now: Option<Holder> = match loc.store.get(&path).await {
                        Ok(r) => serde_json::from_slice(&r.bytes().await?).ok(),
                        Err(_) => None,
                    };
                    return Err(busy(loc.prefix.as_ref(), now));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    let lost = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(Notify::new());
    tokio::spawn(renew(
        loc.clone(),
        path.clone(),
        me,
        version,
        lost.clone(),
        stop.clone(),
    ));
    Ok(WriterLock {
        held: Held::Lease {
            path,
            loc: loc.clone(),
            lost,
            stop,
        },
    })
}

async fn renew(
    loc: Location,
    path: Path,
    me: Holder,
    mut version: UpdateVersion,
    lost: Arc<AtomicBool>,
    stop: Arc<Notify>,
) {
    let mut renewed = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LEASE_RENEW) => {}
            _ = stop.notified() => return,
        }
        let opts = PutOptions {
            mode: PutMode::Update(version.clone()),
            ..Default::default()
        };
        let body = match lease_body(&me) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the writer lease");
                continue;
            }
        };
        match loc.store.put_opts(&path, body, opts).await {
            Ok(r) => {
                version = version_of(&r);
                renewed = std::time::Instant::now();
            }
            // Transient failures are retried while the lease is still surely ours.
            Err(e)
                if !matches!(e, object_store::Error::Precondition { .. })
                    && renewed.elapsed() + LEASE_RENEW < LEASE_TTL =>
            {
                tracing::warn!(lease = %path, error = %e, "cannot renew the writer lease; retrying");
            }
            Err(e) => {
                tracing::error!(lease = %path, error = %e, "writer lease lost: no further commits");
                lost.store(true, Ordering::Release);
                return;
            }
        }
    }
}
