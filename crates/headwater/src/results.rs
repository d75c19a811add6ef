//! Persisted task results, the basis of caching across processes.
//!
//! One JSON file per cache key in the result storage folder, written to a
//! temporary name and renamed so a reader never sees half a file.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use headwater_core::cache::is_fresh;
use headwater_core::CacheKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredResult {
    pub task: String,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(crate) struct ResultStore {
    dir: PathBuf,
}

impl ResultStore {
    pub(crate) fn new(dir: PathBuf) -> Self {
        ResultStore { dir }
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stored result for `key` if there is one and it is still fresh.
    pub(crate) async fn read(&self, key: &CacheKey, now: DateTime<Utc>) -> Option<StoredResult> {
        let bytes = tokio::fs::read(self.path(key)).await.ok()?;
        let stored: StoredResult = serde_json::from_slice(&bytes).ok()?;
        is_fresh(stored.expires, now).then_some(stored)
    }

    /// Forgets a result (best effort: a leftover file only costs space).
    pub(crate) async fn remove(&self, key: &CacheKey) {
        let _ = tokio::fs::remove_file(self.path(key)).await;
    }

    pub(crate) async fn write(&self, key: &CacheKey, result: &StoredResult) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let path = self.path(key);
        let tmp = self.dir.join(format!(".{key}.{}.tmp", uuid::Uuid::now_v7().simple()));
        let bytes = serde_json::to_vec(result).map_err(std::io::Error::other)?;
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await
    }
}
