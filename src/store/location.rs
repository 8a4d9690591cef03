//! Where the data dir lives: a local directory or an S3-compatible bucket, both behind
//! `object_store`, with the URL DataFusion reads it by.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::error::{Error, Result};

/// The data dir as an object store, a key prefix inside it and the URL of that prefix.
#[derive(Clone, Debug)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix of the data dir inside `store`.
    pub prefix: Path,
    /// URL of the object store's root (`file:///`, `s3://bucket`), for DataFusion's registry.
    pub store_url: url::Url,
    /// The local directory, when the data dir is one.
    pub local_dir: Option<PathBuf>,
    /// The node id of this writer (`store::lock::node_id`), in the name of every file and
    /// commit record it writes; empty for readers.
    pub node: String,
    /// The commit records read so far (shared by every clone and committed view).
    pub records: Arc<super::commit::RecordCache>,
}

impl Location {
    /// Opens `--data-dir`: a path, or `s3://BUCKET/PREFIX` with credentials from `AWS_*`.
    pub fn open(data_dir: &str) -> Result<Self> {
        if let Some(rest) = data_dir.strip_prefix("s3://") {
            return Self::open_s3(rest);
        }
        if data_dir.contains("://") {
            return Err(Error::Config(format!(
                "data dir {data_dir:?}: only local paths and s3:// URLs are supported"
            )));
        }
        let dir = FsPath::new(data_dir);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let abs = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let prefix = Path::from_absolute_path(&abs)
            .map_err(|e| Error::Config(format!("data dir {}: {e}", abs.display())))?;
        let store_url =
            url::Url::parse("file:///").map_err(|e| Error::Internal(format!("file URL: {e}")))?;
        Ok(Location {
            store: with_faults(Arc::new(LocalFileSystem::new())),
            prefix,
            store_url,
            local_dir: Some(abs),
            node: String::new(),
            records: Arc::default(),
        })
    }

    #[cfg(feature = "s3")]
    fn open_s3(rest: &str) -> Result<Self> {
        use object_store::aws::AmazonS3Builder;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Config(
                "s3 data dir needs a bucket: s3://BUCKET/PREFIX".into(),
            ));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::Config(format!("s3://{bucket}: {e}")))?;
        let store_url = url::Url::parse(&format!("s3://{bucket}"))
            .map_err(|e| Error::Config(format!("s3 bucket name {bucket:?}: {e}")))?;
        Ok(Location {
            store: with_faults(Arc::new(store)),
            prefix: Path::from(prefix.trim_matches('/')),
            store_url,
            local_dir: None,
            node: String::new(),
            records: Arc::default(),
        })
    }

    #[cfg(not(feature = "s3"))]
    fn open_s3(_rest: &str) -> Result<Self> {
        Err(Error::Config(
            "this build has no S3 support (cargo feature `s3`)".into(),
        ))
    }

    /// The object path of `parts` below the data dir.
    pub fn path(&self, parts: &[&str]) -> Path {
        let mut p = self.prefix.clone();
        for part in parts {
            for seg in part.split('/').filter(|s| !s.is_empty()) {
                p = p.join(seg);
            }
        }
        p
    }

    /// A new part file in `dir` (`part-TIME-NODE-RANDOM{suffix}.parquet`) and its `.pending`
    /// twin, under which it is written before the rename that makes it visible.
    pub fn part_paths(&self, dir: &Path, suffix: &str) -> (Path, Path) {
        let name = format!(
            "part-{}-{}-{}{suffix}.parquet",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%6f"),
            self.node_name(),
            super::random_hex()
        );
        let tmp = dir.clone().join(format!("{name}.pending").as_str());
        (dir.clone().join(name.as_str()), tmp)
    }

    /// The node id as file names carry it (`none` for a store opened without one).
    pub fn node_name(&self) -> &str {
        if self.node.is_empty() {
            "none"
        } else {
            &self.node
        }
    }

    /// Whether this writer may finish or remove the unfinished write (pending file or
    /// commit record) named `file_name`: every one in a local data dir (one writer holds its
    /// lock), only its own in a bucket (other nodes may be writing).
    pub fn owns(&self, file_name: &str) -> bool {
        self.local_dir.is_some() || writer_of(file_name) == Some(self.node_name())
    }

    /// The data dir as readers see it: commit records applied (see `store::commit`).
    pub fn committed(&self) -> Arc<dyn ObjectStore> {
        Arc::new(super::view::CommittedStore::new(
            self.store.clone(),
            self.path(&[super::commit::COMMITS_DIR]),
            self.records.clone(),
        ))
    }

    /// The URL DataFusion lists a table directory by (ends with `/`).
    pub fn table_url(&self, dir: &str) -> String {
        let mut base = self.store_url.as_str().trim_end_matches('/').to_string();
        let p = self.path(&[dir]);
        base.push('/');
        base.push_str(p.as_ref());
        base.push('/');
        base
    }
}

/// The node id in a file name written by [`Location::part_paths`] or a commit record
/// (`part-TIME-NODE-RANDOM…`, `TIME-NODE-RANDOM.commit`); `None` for names of earlier
/// releases, which carried none.
pub fn writer_of(file_name: &str) -> Option<&str> {
    let name = file_name.rsplit('/').next().unwrap_or(file_name);
    let name = name.strip_prefix("part-").unwrap_or(name);
    let mut fields = name.split(['-', '.']);
    let (_time, node, random) = (fields.next()?, fields.next()?, fields.next()?);
    (random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit())).then_some(node)
}

/// The store behind the fault-injection points when `FAILPOINTS` is set, else as is.
fn with_faults(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    if super::faults::configured() {
        super::faults::FaultyStore::wrap(store)
    } else {
        store
    }
}
