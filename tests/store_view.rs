//! The committed view (`store::view::CommittedStore`) over an object store the test watches:
//! a listing taken while a commit finishes still applies it, a file committed but not yet
//! renamed is read under its pending name, and a ranged read is one ranged read of the store
//! beneath (on the local file system: one open file for a row group's column chunks).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use switchyard::store::commit::{Publish, Record};
use switchyard::store::view::CommittedStore;

/// Runs before each read of an object (its path, and whether only its metadata is asked for).
type BeforeRead =
    Box<dyn Fn(Path, bool) -> BoxFuture<'static, object_store::Result<()>> + Send + Sync>;

/// An object store that counts its reads and can act before each.
struct Watched {
    inner: Arc<dyn ObjectStore>,
    before_read: Option<BeforeRead>,
    /// `get_opts` calls (whole objects, single ranges, metadata).
    gets: AtomicUsize,
    /// `get_ranges` calls.
    ranged: AtomicUsize,
}

impl Watched {
    fn new(inner: Arc<dyn ObjectStore>, before_read: Option<BeforeRead>) -> Arc<Self> {
        Arc::new(Watched {
            inner,
            before_read,
            gets: AtomicUsize::new(0),
            ranged: AtomicUsize::new(0),
        })
    }
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watched({})", self.inner)
    }
}

impl std::fmt::Display for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watched({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Watched {
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
        self.gets.fetch_add(1, Ordering::SeqCst);
        if let Some(hook) = &self.before_read {
            hook(location.clone(), options.head).await?;
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.ranged.fetch_add(1, Ordering::SeqCst);
        if let Some(hook) = &self.before_read {
            hook(location.clone(), false).await?;
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

const PARTITION: &str = "store/requests/date=2026-11-20/hour=08";
const COMMITS: &str = "store/_commits";

fn part(name: &str) -> Path {
    Path::from(format!(
        "{PARTITION}/part-20261120T080000000000-node_{name}.parquet"
    ))
}

/// Writes a commit record publishing `publish` (from its pending name) and superseding
/// `supersede`; returns the record's path.
async fn commit(store: &dyn ObjectStore, publish: &Path, supersede: &[Path]) -> Path {
    let record = Record {
        publish: vec![Publish {
            pending: format!("{publish}.pending"),
            path: publish.to_string(),
        }],
        supersede: supersede.iter().map(ToString::to_string).collect(),
        wal_upto: None,
    };
    let at = Path::from(format!(
        "{COMMITS}/20261120T080100000000-node_b-00000000000000c2.commit"
    ));
    store
        .put(&at, serde_json::to_vec(&record).unwrap().into())
        .await
        .unwrap();
    at
}

/// The paths `store` lists under `prefix`.
async fn names(store: &dyn ObjectStore, prefix: &Path) -> Vec<String> {
    use futures::TryStreamExt as _;
    store
        .list(Some(prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

/// A reader lists a partition while its compaction finishes: the listing of files has the
/// merged file beside its inputs, and the compactor deletes the inputs and renames the
/// record `.applied` (on S3 a copy then a delete) between the reader's listing of the records
/// and its read of this one. The committed view still applies the record: the inputs stay
/// hidden, so no row is listed twice (a `count(*)` answered from cached file statistics would
/// count it twice).
#[tokio::test]
async fn a_commit_retired_while_a_reader_lists_still_hides_the_files_it_superseded() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let inputs = vec![part("a-00000000000000a1"), part("b-00000000000000a1")];
    let merged = part("b-00000000000000c1-c");
    // The merged file is renamed into place; the inputs are not deleted yet.
    for p in inputs.iter().chain([&merged]) {
        inner.put(p, b"rows".to_vec().into()).await.unwrap();
    }
    let record = commit(inner.as_ref(), &merged, &inputs).await;
    let finished = Arc::new(AtomicBool::new(false));
    let finish: BeforeRead = {
        let (inner, finished) = (inner.clone(), finished.clone());
        Box::new(move |location, head| {
            let (inner, finished, record, inputs) = (
                inner.clone(),
                finished.clone(),
                record.clone(),
                inputs.clone(),
            );
            Box::pin(async move {
                if location == record && !head && !finished.swap(true, Ordering::SeqCst) {
                    for p in &inputs {
                        inner.delete(p).await?;
                    }
                    let name = record.as_ref().trim_end_matches(".commit");
                    let applied = Path::from(format!("{name}.applied"));
                    inner.copy(&record, &applied).await?;
                    inner.delete(&record).await?;
                }
                Ok(())
            })
        })
    };
    let view = CommittedStore::new(
        Watched::new(inner, Some(finish)),
        Path::from(COMMITS),
        Default::default(),
    );
    let table = Path::from("store/requests");
    let listed = names(&view, &table).await;
    assert!(
        finished.load(Ordering::SeqCst),
        "the record was never read, so the race was not run"
    );
    assert_eq!(
        listed,
        vec![merged.to_string()],
        "inputs listed beside their merge"
    );
    // Once finished, a new listing agrees.
    let again = names(&view, &table).await;
    assert_eq!(again, vec![merged.to_string()]);
}

/// Bytes whose every range is distinct.
fn body() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 % 251) as u8).collect()
}

const RANGES: [std::ops::Range<u64>; 3] = [0..10, 100..200, 3000..4096];

fn expected() -> Vec<Vec<u8>> {
    let b = body();
    RANGES
        .iter()
        .map(|r| b[r.start as usize..r.end as usize].to_vec())
        .collect()
}

async fn read_ranges(view: &CommittedStore, path: &Path) -> object_store::Result<Vec<Vec<u8>>> {
    Ok(view
        .get_ranges(path, &RANGES)
        .await?
        .into_iter()
        .map(|b| b.to_vec())
        .collect())
}

/// The Parquet reader fetches a row group's column chunks with one `get_ranges`; the view
/// hands it to the store beneath as one call (the local file system then opens the file
/// once), not as one `get_opts` per range.
#[tokio::test]
async fn a_ranged_read_through_the_view_is_one_ranged_read_of_the_store() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let file = part("a-00000000000000a1");
    inner.put(&file, body().into()).await.unwrap();
    let watched = Watched::new(inner, None);
    let view = CommittedStore::new(watched.clone(), Path::from(COMMITS), Default::default());
    assert_eq!(read_ranges(&view, &file).await.unwrap(), expected());
    assert_eq!(watched.ranged.load(Ordering::SeqCst), 1, "ranged reads");
    assert_eq!(watched.gets.load(Ordering::SeqCst), 0, "single reads");
}

/// A file that a commit record publishes but that is not renamed into place yet is read, by
/// ranges and whole, under its pending name; a file no record names is not found.
#[tokio::test]
async fn a_committed_file_not_yet_renamed_is_read_by_ranges_under_its_pending_name() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let file = part("a-00000000000000a1");
    let pending = Path::from(format!("{file}.pending"));
    inner.put(&pending, body().into()).await.unwrap();
    let view = CommittedStore::new(inner.clone(), Path::from(COMMITS), Default::default());
    let missing = read_ranges(&view, &file).await.unwrap_err();
    assert!(
        matches!(missing, object_store::Error::NotFound { .. }),
        "{missing}"
    );
    commit(inner.as_ref(), &file, &[]).await;
    assert_eq!(read_ranges(&view, &file).await.unwrap(), expected());
    let whole = view.get(&file).await.unwrap().bytes().await.unwrap();
    assert_eq!(whole.to_vec(), body());
    // Renamed: read under the final name.
    inner.rename(&pending, &file).await.unwrap();
    assert_eq!(read_ranges(&view, &file).await.unwrap(), expected());
}
