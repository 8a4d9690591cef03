//! The crate's one error type. Every module returns [`Result`]; the HTTP layer maps
//! [`Error`] to a status code in one place (`http::error`), the binary maps it to an exit code.

use std::path::PathBuf;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in switchyard, by kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A log record, feedback record or request body that cannot be used.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A request or file larger than the configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A configuration file or flag that does not validate.
    #[error("config: {0}")]
    Config(String),
    /// Missing or wrong credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// A query that was rejected before running (writes, DDL, bad SQL).
    #[error("query rejected: {0}")]
    QueryRejected(String),
    /// A query that ran out of its time or memory bound.
    #[error("query limit: {0}")]
    QueryLimit(String),
    /// Something asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The store is shutting down or otherwise not accepting writes.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The store is behind (flushes do not keep up): try again after `retry_after`.
    #[error("overloaded: {reason}")]
    Overloaded {
        reason: String,
        retry_after: std::time::Duration,
    },
    #[error("io error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("io error: {0}")]
    IoPlain(#[from] std::io::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("datafusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// An I/O error with the path it happened at.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
