//! The PostgreSQL store: the same contract as SQLite, in native types
//! (UUID, TIMESTAMPTZ, JSONB) so the tables read well from plain SQL.

mod access;
mod artifacts;
mod automations;
mod backfills;
mod blocks;
mod concurrency;
mod datasets;
mod deployments;
mod retention;
mod runs;
mod variables;
mod work_pools;

use runs::{push_flow_run, write_batch};

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::{Acquired, ConcurrencyLimit, SlotLease, SlotRequest};
use headwater_core::{
    Artifact, BlockDocument, BlockType, Dataset, DatasetVersion, Deployment, Flow, FlowRun, LogLevel, LogRecord,
    RunKind, StateRecord, StateType, TaskRun, Variable, WorkPool, WorkQueue, WorkerStatus, DEFAULT_QUEUE,
};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::claim::{self, Active, ClaimTx, CANDIDATES};
use crate::columns::{
    block_type_for, corrupt, crash_batch, default_queue_stays, late_batch, no_pool_for_queue, rows_per_statement,
    statements, upsert_set, ARTIFACT_COLS, FINAL_STATES, FLOW_RUN_COLS, LATEST_ARTIFACTS_ONLY, LIVE_STATES, LOG_COLS,
    STATE_COLS, TASK_RUN_COLS, TIMELINE_SELECT,
};
use crate::error::Db;
use crate::leases::{self, LeaseTx, LimitRow};
use crate::rows::*;
use headwater_store::secrets::{seal_document, unseal_document, Cipher, SecretKey};
use headwater_store::{
    dataset_summary, ArtifactFilter, ArtifactStore, BlockStore, ConcurrencyStore, DatasetStore, DeploymentStore,
    FlowRunFilter, LogFilter, RunQueue, RunReader, RunReaper, RunRecorder, VariableStore, WorkPoolStore, WriteBatch,
};
use headwater_store::{Result, StoreError};

/// PostgreSQL allows 65535 bound values per statement.
const MAX_BINDS: usize = 60_000;

/// Serialises migrations of concurrent servers (an arbitrary, fixed key).
const MIGRATION_LOCK: i64 = 0x6865_6164_7761_7465;

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Seals and opens blocks' secrets; none: secrets are refused.
    cipher: Option<std::sync::Arc<Cipher>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Seals blocks' secrets under `key` (and opens them when revealed).
    pub fn with_secret_key(mut self, key: &SecretKey) -> Self {
        self.cipher = Some(std::sync::Arc::new(Cipher::new(key)));
        self
    }

    /// Connects to `url` (`postgres://user:password@host:port/db`) and brings
    /// the schema up to date.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .map_err(|source| StoreError::Open { path: redact(url).into(), source: source.into() })?;
        let store = PostgresStore { pool, cipher: None };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.db()?;
        let conn: &mut PgConnection = &mut tx;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await.db()?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied TIMESTAMPTZ NOT NULL)",
        )
        .execute(&mut *conn)
        .await
        .db()?;
        let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .db()?;
        for m in crate::migrations::pending(current)? {
            let (version, sql) = (&m.version, m.postgres);
            for statement in statements(sql) {
                sqlx::query(&statement)
                    .execute(&mut *conn)
                    .await
                    .map_err(|source| StoreError::Migration { version: *version, source: source.into() })?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied) VALUES ($1, now())")
                .bind(version)
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

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:********{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(redact("postgres://hw:s3cret@db:5432/hw"), "postgres://hw:********@db:5432/hw");
        assert_eq!(redact("postgres:///hw?host=/run/postgresql"), "postgres:///hw?host=/run/postgresql");
    }
}
