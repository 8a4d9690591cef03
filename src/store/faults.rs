//! Fault injection: named points in the write path where a test makes the process fail, stall
//! or crash, through the `fail` crate. The points are configured only by the `FAILPOINTS`
//! environment variable when the process starts (`name=action;name=action`); unset, each
//! point costs one registry lookup, and points sit at step granularity (a flush, a file, an
//! object-store call), never per record.
//!
//! Actions (the `fail` crate's syntax, e.g. `FAILPOINTS='store::flush::commit=return'`):
//! - `return` or `return(error)`: the step fails with an injected I/O error;
//! - `return(crash)` or `panic`: the process aborts at that step, as in a power cut or
//!   `kill -9` (no destructor, no flush);
//! - `sleep(MS)` / `delay(MS)`: the step waits MS milliseconds (on a blocking thread, so an
//!   async caller stalls only itself);
//! - `N*action->action`, `P%action`: the `fail` crate's counting and probability prefixes,
//!   e.g. `2*off->return(crash)` crashes on the third time the step runs.
//!
//! | point                           | where                                                      |
//! |---------------------------------|------------------------------------------------------------|
//! | `store::flush::write`           | before each new Parquet file of a flush is written          |
//! | `store::flush::sync`            | the flush's files are written, before they are synced      |
//! | `store::flush::commit`          | files synced, before the commit record is written          |
//! | `store::flush::publish`         | commit record durable, before the files are renamed in     |
//! | `store::flush::trim_wal`        | files published, before the flushed WAL segments go        |
//! | `store::flush::done`            | WAL trimmed, before the commit record is retired           |
//! | `store::compact::write`         | before a compaction's merged file is written               |
//! | `store::compact::commit`        | merged file synced, before its commit record is written    |
//! | `store::compact::publish`       | commit record durable, before the merged file is renamed in|
//! | `store::compact::done`          | merged file published, before the record is retired        |
//! | `store::gc::remove`             | before retired records' superseded inputs are deleted      |
//! | `store::recover`                | opening a store, before interrupted commits are finished   |
//! | `store::object::put`            | every object-store put (and multipart upload start)        |
//! | `store::object::get`            | every object-store get and head                            |
//! | `store::object::list`           | every object-store listing                                 |
//! | `store::object::rename`         | every object-store rename and copy                         |
//! | `store::object::delete`         | every object-store delete                                  |
//!
//! The `store::object::*` points wrap the data dir's object store ([`FaultyStore`]); the wrapper
//! is installed only when `FAILPOINTS` is set, so a normal run pays nothing for it.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use crate::error::{Error, Result};

/// The environment variable that configures the points at process start.
pub const ENV: &str = "FAILPOINTS";

/// Whether `FAILPOINTS` was given to this process (the object-store wrapper is installed).
pub fn configured() -> bool {
    std::env::var_os(ENV).is_some()
}

/// What a configured point asked for.
fn outcome(name: &str, arg: Option<String>) -> Result<()> {
    match arg.as_deref() {
        Some("crash") | Some("abort") => crash(name),
        _ => Err(Error::Io {
            path: name.into(),
            source: std::io::Error::other(format!("injected fault at {name}")),
        }),
    }
}

fn crash(name: &str) -> ! {
    eprintln!("fault injection: crashing at {name}");
    std::process::abort()
}

/// A point in synchronous code: `Err` when configured to fail; aborts the process when
/// configured to crash or panic; sleeps when configured to.
pub fn hit_sync(name: &str) -> Result<()> {
    match std::panic::catch_unwind(|| fail::eval(name, |arg| arg)) {
        Ok(None) => Ok(()),
        Ok(Some(arg)) => outcome(name, arg),
        Err(_) => crash(name),
    }
}

/// A point in async code: like [`hit_sync`], with a sleep or pause run on a blocking thread
/// so it stalls only the caller.
pub async fn hit(name: &'static str) -> Result<()> {
    if !fail::list().iter().any(|(n, _)| n == name) {
        return Ok(());
    }
    match tokio::task::spawn_blocking(move || hit_sync(name)).await {
        Ok(r) => r,
        Err(_) => crash(name),
    }
}

fn store_err(e: Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "fault injection",
        source: Box::new(e),
    }
}

async fn object_point(name: &'static str) -> object_store::Result<()> {
    hit(name).await.map_err(store_err)
}

/// An object store whose every call passes a `store::object::*` point first.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
}

impl FaultyStore {
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(FaultyStore { inner })
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        object_point("store::object::put").await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        object_point("store::object::put").await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        object_point("store::object::get").await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        object_point("store::object::get").await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.clone();
        futures::stream::once(async move {
            object_point("store::object::delete").await?;
            Ok::<_, object_store::Error>(inner.delete_stream(locations))
        })
        .try_flatten()
        .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            object_point("store::object::list").await?;
            Ok::<_, object_store::Error>(inner.list(prefix.as_ref()))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        object_point("store::object::list").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        object_point("store::object::rename").await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        object_point("store::object::rename").await?;
        self.inner.rename_opts(from, to, options).await
    }
}
