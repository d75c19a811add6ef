//! Headwater's SQL engines: the store traits of `headwater-store` on the
//! embedded SQLite database ([`SqliteStore`]) and on PostgreSQL
//! ([`PostgresStore`]). Both run the same migrations (one list, see
//! `migrations.rs`) and pass the same conformance suite. No SQL lives
//! outside this crate.

mod claim;
mod columns;
mod dialect;
mod error;
mod leases;
mod migrations;
mod postgres;
mod rows;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use headwater_store::{Result, SecretKey, Store};

pub use postgres::PostgresStore;
pub use sqlite::{restore as restore_sqlite, Restored, SqliteStore};

/// Opens the store a URL names: `postgres://…` (or `postgresql://…`) for
/// PostgreSQL, `sqlite:PATH` or a plain path for SQLite. Without a secret
/// key it reads blocks with their secrets masked and refuses to store or
/// reveal secrets.
pub async fn open(url_or_path: &str) -> Result<Arc<dyn Store>> {
    open_with_key(url_or_path, None).await
}

/// [`open`], with the key that seals and opens blocks' secrets.
pub async fn open_with_key(url_or_path: &str, key: Option<&SecretKey>) -> Result<Arc<dyn Store>> {
    if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
        let store = PostgresStore::open(url_or_path).await?;
        Ok(Arc::new(match key {
            Some(k) => store.with_secret_key(k),
            None => store,
        }))
    } else {
        let path = url_or_path.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let store = SqliteStore::open(Path::new(path)).await?;
        Ok(Arc::new(match key {
            Some(k) => store.with_secret_key(k),
            None => store,
        }))
    }
}
