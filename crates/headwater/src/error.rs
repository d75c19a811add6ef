use std::time::Duration;

use headwater_core::duration::format_duration;

/// Errors the engine raises into a flow or task, or returns to the caller.
///
/// User tasks return their own error type `E`; it must implement
/// `From<headwater::Error>` (as `anyhow::Error` does) so a timeout or a
/// cancellation can be returned through it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} exceeded its timeout of {}", format_duration(*.after))]
    Timeout { what: String, after: Duration },
    #[error("{what} was cancelled: {reason}")]
    Cancelled { what: String, reason: String },
    #[error("invalid parameter '{field}': {reason}")]
    InvalidParameter { field: String, reason: String },
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    #[error("result of task '{task}' cannot be cached: {reason}")]
    ResultNotPersistable { task: String, reason: String },
    #[error("{0}")]
    Block(String),
    #[error("invalid artifact: {0}")]
    InvalidArtifact(String),
    #[error("{0}")]
    Store(String),
    /// The store (embedded or the server) failed; its error is the source.
    #[error(transparent)]
    Storage(#[from] headwater_store::StoreError),
    #[error("cannot open the Headwater store: {0}")]
    Open(String),
    #[error("runs could not all be recorded: {0}")]
    Recording(String),
    #[error(transparent)]
    Config(#[from] headwater_config::ConfigError),
}

impl Error {
    /// Whether the engine may try the work again (timeouts may pass; a
    /// cancellation or bad input will not).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
