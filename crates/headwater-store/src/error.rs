use std::path::PathBuf;

/// A database driver's own error, kept whole as the source of a
/// [`StoreError`] (the traits do not know which driver an engine uses).
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: DriverError,
    },
    #[error("database migration {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: DriverError,
    },
    #[error("the database was written by a newer Headwater (schema version {found}, this one knows up to {known}); upgrade headwater")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("database error: {source}")]
    Database {
        #[source]
        source: DriverError,
        /// The database was busy or locked by another process, or no
        /// connection was free in time: the same write may succeed later.
        retryable: bool,
    },
    #[error("no flow run matches '{0}'")]
    FlowRunNotFound(String),
    #[error("'{input}' matches {count} flow runs; give more of the id")]
    Ambiguous { input: String, count: usize },
    /// A change the store refuses (the message says why and what to do).
    #[error("{0}")]
    Refused(String),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// A remote store (the Headwater server) refused or could not be reached.
    #[error("{message}")]
    Remote { status: Option<u16>, message: String },
}

impl StoreError {
    /// Whether trying the same write again later may succeed (the database
    /// was busy or locked by another process).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database { retryable, .. } => *retryable,
            // Unreachable, or the server's own trouble: worth another try.
            StoreError::Remote { status, .. } => status.is_none_or(|s| s >= 500 || s == 429),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
