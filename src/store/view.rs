//! The data dir as readers must see it: an object store that applies the commit records (see
//! [`super::commit`]) to every listing. A record's pending files are listed under their final
//! names (and read from the pending name until renamed), the files it supersedes are hidden,
//! so a listing shows each commit all or nothing. Queries, the dedupe index and compaction
//! read through this view; writers use the raw store.
//!
//! A listing reads the files first and the records second: a record that appears in
//! between is applied to the listing in full (its files are looked up if the listing missed
//! them), and a record absent at the second read had not started renaming at the first. A
//! record applied (renamed `.applied`) in between is still read ([`commit::list`]): dropping
//! it would show the listing half renamed, a compaction's inputs beside its merged file.

use std::collections::{HashMap, HashSet};
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
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use super::commit::{self, Record};

/// A read view honouring commit records; cheap to clone.
#[derive(Debug, Clone)]
pub struct CommittedStore {
    inner: Arc<dyn ObjectStore>,
    commits_dir: Path,
    records: Arc<commit::RecordCache>,
}

impl fmt::Display for CommittedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommittedStore({})", self.inner)
    }
}

fn view_err(e: crate::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "committed view",
        source: Box::new(e),
    }
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl CommittedStore {
    /// The view of the store `inner` with its commit records in `commits_dir`; `records`:
    /// the records read so far, shared with the other views of the same data dir.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        commits_dir: Path,
        records: Arc<commit::RecordCache>,
    ) -> Self {
        CommittedStore {
            inner,
            commits_dir,
            records,
        }
    }

    async fn records(&self) -> object_store::Result<Vec<Record>> {
        Ok(
            commit::list(self.inner.as_ref(), &self.commits_dir, &self.records)
                .await
                .map_err(view_err)?
                .into_iter()
                .map(|s| s.record)
                .collect(),
        )
    }

    /// `read` of `location`; when that file is not there but a commit record publishes it,
    /// `read` of its pending name (committed, not renamed into place yet), and of `location`
    /// once more if it was renamed in the meantime.
    async fn read_committed<T, F, Fut>(&self, location: &Path, read: F) -> object_store::Result<T>
    where
        F: Fn(Path) -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let first = read(location.clone()).await;
        match &first {
            Err(e) if not_found(e) => {}
            _ => return first,
        }
        let Some(pending) = self.pending_name(location).await? else {
            return first;
        };
        match read(pending).await {
            Err(e) if not_found(&e) => read(location.clone()).await,
            r => r,
        }
    }

    /// The pending name of `location` when a commit record publishes it.
    async fn pending_name(&self, location: &Path) -> object_store::Result<Option<Path>> {
        let records = self.records().await?;
        records
            .iter()
            .flat_map(|r| r.publish.iter())
            .find(|p| p.path == location.as_ref())
            .map(|p| commit::parse_path(&p.pending).map_err(view_err))
            .transpose()
    }

    /// Applies the records to a listing; `in_scope` says which final paths it covers (given
    /// as a record writes them, `Path`'s canonical text, so that the many out of scope cost
    /// a string comparison each, not a parse).
    async fn resolve(
        &self,
        listed: Vec<ObjectMeta>,
        in_scope: impl Fn(&str) -> bool,
    ) -> object_store::Result<Vec<ObjectMeta>> {
        let records = self.records().await?;
        if records.is_empty() {
            return Ok(listed);
        }
        let hidden: HashSet<&str> = records
            .iter()
            .flat_map(|r| r.supersede.iter().map(String::as_str))
            .collect();
        let finals: HashMap<&str, &str> = records
            .iter()
            .flat_map(|r| r.publish.iter())
            .map(|p| (p.pending.as_str(), p.path.as_str()))
            .collect();
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::with_capacity(listed.len());
        for mut m in listed {
            let name = m.location.as_ref();
            if hidden.contains(name) {
                continue;
            }
            if let Some(fin) = finals.get(name) {
                m.location = commit::parse_path(fin).map_err(view_err)?;
            }
            if seen.insert(m.location.to_string()) {
                out.push(m);
            }
        }
        for p in records.iter().flat_map(|r| r.publish.iter()) {
            if !in_scope(&p.path) || seen.contains(&p.path) || hidden.contains(p.path.as_str()) {
                continue;
            }
            let path = commit::parse_path(&p.path).map_err(view_err)?;
            // Committed after the listing ran: found under either name.
            let meta = match self.inner.head(&path).await {
                Ok(m) => Some(m),
                Err(e) if not_found(&e) => {
                    let pending = commit::parse_path(&p.pending).map_err(view_err)?;
                    match self.inner.head(&pending).await {
                        Ok(m) => Some(m),
                        Err(e) if not_found(&e) => self.inner.head(&path).await.ok(),
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            if let Some(mut m) = meta {
                m.location = path;
                seen.insert(p.path.clone());
                out.push(m);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ObjectStore for CommittedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let mut r = self
            .read_committed(location, |p| {
                let options = options.clone();
                async move { self.inner.get_opts(&p, options).await }
            })
            .await?;
        r.meta.location = location.clone();
        Ok(r)
    }

    /// The inner store's own ranged read (one open file for all of a row group's column
    /// chunks on the local file system), not the default of one `get_opts` per range.
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.read_committed(location, |p| async move {
            self.inner.get_ranges(&p, ranges).await
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let this = self.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let listed: Vec<ObjectMeta> = this.inner.list(prefix.as_ref()).try_collect().await?;
            let scope = prefix.as_ref().map(|p| format!("{p}/"));
            let out = this
                .resolve(listed, |p| {
                    scope.as_deref().is_none_or(|s| p.starts_with(s))
                })
                .await?;
            Ok::<_, object_store::Error>(futures::stream::iter(out.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        let dir = prefix.cloned().unwrap_or_default();
        let objects = std::mem::take(&mut r.objects);
        let dir = dir.as_ref();
        r.objects = self
            .resolve(objects, |p| {
                p.rsplit_once('/').map_or("", |(parent, _)| parent) == dir
            })
            .await?;
        Ok(r)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
