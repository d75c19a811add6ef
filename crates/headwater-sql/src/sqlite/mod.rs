//! The embedded SQLite store: WAL, a generous busy timeout and `BEGIN
//! IMMEDIATE` writes, so several flow processes can write one database at
//! once without "database is locked" failures.

mod access;
mod artifacts;
mod automations;
mod backfills;
mod backup;
mod blocks;
mod concurrency;
mod datasets;
mod deployments;
mod retention;
mod runs;
mod variables;
mod work_pools;

pub use backup::{restore, Restored};
use runs::{push_flow_run, write_batch};

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::{Acquired, ConcurrencyLimit, SlotLease, SlotRequest};
use headwater_core::{
    Artifact, BlockDocument, BlockType, Dataset, DatasetVersion, Deployment, Flow, FlowRun, LogLevel, LogRecord,
    RunKind, StateRecord, StateType, TaskRun, Variable, WorkPool, WorkQueue, WorkerStatus, DEFAULT_QUEUE,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use crate::claim::{self, Active, ClaimTx, CANDIDATES};
use crate::columns::{
    block_type_for, corrupt, crash_batch, default_queue_stays, late_batch, no_pool_for_queue, rows_per_statement,
    statements, upsert_set, ARTIFACT_COLS, FINAL_STATES, FLOW_RUN_COLS, LATEST_ARTIFACTS_ONLY, LIVE_STATES, LOG_COLS,
    STATE_COLS, TASK_RUN_COLS, TIMELINE_SELECT,
};
use crate::dialect::from_micros;
use crate::error::Db;
use crate::leases::{self, LeaseTx, LimitRow};
use crate::rows::*;
use headwater_store::secrets::{seal_document, unseal_document, Cipher, SecretKey};
use headwater_store::{
    dataset_summary, ArtifactFilter, ArtifactStore, BlockStore, ConcurrencyStore, DatasetStore, DeploymentStore,
    FlowRunFilter, LogFilter, RunQueue, RunReader, RunReaper, RunRecorder, VariableStore, WorkPoolStore, WriteBatch,
};
use headwater_store::{Result, StoreError};

/// SQLite allows 32766 bound values per statement; stay well below it.
const MAX_BINDS: usize = 30_000;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    /// One writer at a time within this process. SQLite allows one anyway;
    /// queueing here instead of in SQLite's busy handler (which sleeps in
    /// steps of tens of milliseconds) keeps writes such as a worker's claim
    /// from waiting long after the lock is free. Other processes still
    /// meet the busy handler.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Seals and opens blocks' secrets; none: secrets are refused.
    cipher: Option<std::sync::Arc<Cipher>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

/// Up to this many runs matching a name search, the trigram index picks
/// them; with more, reading the newest runs first finds a page sooner.
const NAME_INDEX_UP_TO: i64 = 2000;

impl SqliteStore {
    /// Whether a name search should go through the trigram index: the text
    /// has three characters or more, no LIKE wildcards (the index cannot
    /// take an ESCAPE clause), and few runs match (counting stops early).
    async fn few_runs_named_like(&self, name: &str) -> Result<bool> {
        if name.chars().count() < 3 || name.contains(['%', '_', '\\']) {
            return Ok(false);
        }
        let matches: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM flow_run_names WHERE name LIKE ? LIMIT ?)")
                .bind(format!("%{name}%"))
                .bind(NAME_INDEX_UP_TO)
                .fetch_one(&self.pool)
                .await
                .db()?;
        Ok(matches < NAME_INDEX_UP_TO)
    }

    /// Opens (creating if needed) the database file and brings its schema up
    /// to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        // Processes that open a new database at the same moment race to
        // switch it to WAL, and SQLite reports the loser busy without
        // waiting; such a race is worth another try, not an error.
        let mut attempt = 0u32;
        loop {
            match SqliteStore::open_once(path).await {
                Err(e) if attempt < 40 && is_locked(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(20)))).await;
                }
                other => return other,
            }
        }
    }

    async fn open_once(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(60))
            .pragma("temp_store", "memory")
            // 2 MiB of pages per pooled connection (SQLite's default): the
            // OS caches the file anyway, and 8 MiB made a quarter of a busy
            // server's memory (bench/RESULTS.md, Prefect's client).
            .pragma("cache_size", "-2000");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source: source.into() })?;
        let store = SqliteStore { pool, path: path.to_path_buf(), writer: Default::default(), cipher: None };
        store.migrate().await?;
        Ok(store)
    }

    /// Seals blocks' secrets under `key` (and opens them when revealed).
    pub fn with_secret_key(mut self, key: &SecretKey) -> Self {
        self.cipher = Some(std::sync::Arc::new(Cipher::new(key)));
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn migrate(&self) -> Result<()> {
        // The write lock serialises processes that open a new database at once.
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let conn: &mut SqliteConnection = &mut tx;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)",
        )
        .execute(&mut *conn)
        .await
        .db()?;
        let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .db()?;
        for m in crate::migrations::pending(current)? {
            let (version, sql) = (&m.version, m.sqlite);
            for statement in statements(sql) {
                sqlx::query(&statement)
                    .execute(&mut *conn)
                    .await
                    .map_err(|source| StoreError::Migration { version: *version, source: source.into() })?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied) VALUES (?, ?)")
                .bind(version)
                .bind(micros(Utc::now()))
                .execute(&mut *conn)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn is_locked(e: &StoreError) -> bool {
    crate::error::driver_error(e).is_some_and(|e| matches!(e, sqlx::Error::Database(_)) && crate::error::is_busy(e))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(micros)
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("values built from JSON serialize")
}

fn uuid_col(row: &SqliteRow, col: &str) -> Result<Uuid> {
    let s: String = row.try_get(col).db()?;
    Uuid::parse_str(&s).map_err(|e| corrupt(col, e))
}
