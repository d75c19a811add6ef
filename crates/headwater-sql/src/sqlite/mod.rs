//! The embedded SQLite store: WAL, a generous busy timeout and `BEGIN
//! IMMEDIATE` writes, so several flow processes can write one database at
//! once without "database is locked" failures.

mod automations;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::{Acquired, ConcurrencyLimit, SlotLease, SlotRequest};
use headwater_core::{
    Artifact, BlockDocument, BlockType, Dataset, DatasetVersion, Deployment, Flow, FlowRun, LogLevel, LogRecord,
    RunKind, State, StateRecord, StateType, TaskRun, Variable, WorkPool, WorkQueue, WorkerStatus, DEFAULT_QUEUE,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use crate::claim::{self, Active, ClaimTx, CANDIDATES};
use crate::columns::{
    block_type_for, corrupt, crash_batch, default_queue_stays, late_batch, no_pool_for_queue, rows_per_statement,
    statements, upsert_set, StateCols, ARTIFACT_COLS, FINAL_STATES, FLOW_RUN_COLS, HISTORY_STATE,
    LATEST_ARTIFACTS_ONLY, LIVE_STATES, LOG_COLS, RUN_STATE, STATE_COLS, TASK_RUN_COLS, TIMELINE_SELECT,
};
use crate::error::Db;
use crate::leases::{self, LeaseTx, LimitRow};
use crate::migrations::MIGRATIONS;
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
            .pragma("cache_size", "-8000");
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
        let known = crate::migrations::latest();
        if current > known {
            return Err(StoreError::SchemaTooNew { found: current, known });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
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

fn from_micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or_default()
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

fn opt_uuid_col(row: &SqliteRow, col: &str) -> Result<Option<Uuid>> {
    let s: Option<String> = row.try_get(col).db()?;
    s.map(|s| Uuid::parse_str(&s).map_err(|e| corrupt(col, e))).transpose()
}

fn state_from(row: &SqliteRow, [ty, name, message, timestamp, scheduled]: StateCols) -> Result<State> {
    let ty: String = row.try_get(ty).db()?;
    Ok(State {
        state_type: StateType::from_str(&ty).map_err(|e| corrupt("state_type", e))?,
        name: row.try_get(name).db()?,
        timestamp: from_micros(row.try_get(timestamp).db()?),
        message: row.try_get(message).db()?,
        scheduled_time: row.try_get::<Option<i64>, _>(scheduled).db()?.map(from_micros),
    })
}

fn flow_from(row: &SqliteRow) -> Result<Flow> {
    let schema: String = row.try_get("parameter_schema").db()?;
    Ok(Flow {
        id: uuid_col(row, "id")?,
        name: row.try_get("name").db()?,
        version: row.try_get("version").db()?,
        description: row.try_get("description").db()?,
        parameter_schema: serde_json::from_str(&schema).map_err(|e| corrupt("parameter_schema", e))?,
        created: from_micros(row.try_get("created").db()?),
        updated: from_micros(row.try_get("updated").db()?),
    })
}

fn flow_run_from(row: &SqliteRow) -> Result<FlowRun> {
    let params: String = row.try_get("parameters").db()?;
    let tags: String = row.try_get("tags").db()?;
    Ok(FlowRun {
        id: uuid_col(row, "id")?,
        flow_id: uuid_col(row, "flow_id")?,
        flow_name: row.try_get("flow_name").db()?,
        name: row.try_get("name").db()?,
        parameters: serde_json::from_str(&params).map_err(|e| corrupt("parameters", e))?,
        tags: serde_json::from_str(&tags).map_err(|e| corrupt("tags", e))?,
        state: state_from(row, RUN_STATE)?,
        parent_flow_run_id: opt_uuid_col(row, "parent_flow_run_id")?,
        run_count: row.try_get::<i64, _>("run_count").db()? as u32,
        start_time: row.try_get::<Option<i64>, _>("start_time").db()?.map(from_micros),
        end_time: row.try_get::<Option<i64>, _>("end_time").db()?.map(from_micros),
        created: from_micros(row.try_get("created").db()?),
        heartbeat: row.try_get::<Option<i64>, _>("heartbeat").db()?.map(from_micros),
        deployment_id: opt_uuid_col(row, "deployment_id")?,
        work_pool: row.try_get("work_pool").db()?,
        idempotency_key: row.try_get("idempotency_key").db()?,
        work_queue: row.try_get("work_queue").db()?,
        retry_policy: match row.try_get::<Option<String>, _>("retry_policy").db()? {
            Some(p) => Some(serde_json::from_str(&p).map_err(|e| corrupt("retry_policy", e))?),
            None => None,
        },
    })
}

fn task_run_from(row: &SqliteRow) -> Result<TaskRun> {
    let tags: String = row.try_get("tags").db()?;
    Ok(TaskRun {
        id: uuid_col(row, "id")?,
        flow_run_id: uuid_col(row, "flow_run_id")?,
        task_name: row.try_get("task_name").db()?,
        name: row.try_get("name").db()?,
        dynamic_key: row.try_get::<i64, _>("dynamic_key").db()? as u64,
        tags: serde_json::from_str(&tags).map_err(|e| corrupt("tags", e))?,
        state: state_from(row, RUN_STATE)?,
        run_count: row.try_get::<i64, _>("run_count").db()? as u32,
        cache_key: row.try_get("cache_key").db()?,
        cache_expiration: row.try_get::<Option<i64>, _>("cache_expiration").db()?.map(from_micros),
        start_time: row.try_get::<Option<i64>, _>("start_time").db()?.map(from_micros),
        end_time: row.try_get::<Option<i64>, _>("end_time").db()?.map(from_micros),
        created: from_micros(row.try_get("created").db()?),
    })
}

#[async_trait]
impl RunRecorder for SqliteStore {
    async fn record(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        write_batch(&mut tx, batch).await?;
        tx.commit().await.db()?;
        Ok(())
    }
}

#[async_trait]
impl RunReaper for SqliteStore {
    async fn crash_stale_runs(&self, cutoff: DateTime<Utc>) -> Result<Vec<FlowRun>> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let conn: &mut SqliteConnection = &mut tx;
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE state_type IN ({LIVE_STATES}) \
             AND heartbeat IS NOT NULL AND heartbeat < ?"
        ))
        .bind(micros(cutoff))
        .fetch_all(&mut *conn)
        .await
        .db()?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let runs: Vec<FlowRun> = rows.iter().map(flow_run_from).collect::<Result<_>>()?;
        let mut tasks = Vec::new();
        for r in &runs {
            let rows = sqlx::query(&format!(
                "SELECT {TASK_RUN_COLS} FROM task_runs WHERE flow_run_id = ? AND state_type NOT IN ({FINAL_STATES})"
            ))
            .bind(r.id.to_string())
            .fetch_all(&mut *conn)
            .await
            .db()?;
            for row in &rows {
                tasks.push(task_run_from(row)?);
            }
        }
        let batch = crash_batch(runs, tasks, Utc::now());
        write_batch(conn, &batch).await?;
        tx.commit().await.db()?;
        Ok(batch.flow_runs)
    }
}

#[async_trait]
impl DeploymentStore for SqliteStore {
    async fn apply_deployment(&self, d: &Deployment) -> Result<Deployment> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let created: Option<i64> = sqlx::query_scalar("SELECT created FROM deployments WHERE name = ?")
            .bind(&d.name)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let mut stored = d.clone();
        if let Some(c) = created {
            stored.created = from_micros(c);
        }
        sqlx::query(
            "INSERT INTO deployments (id, name, flow_name, paused, spec, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET flow_name = excluded.flow_name, paused = excluded.paused, \
             spec = excluded.spec, updated = excluded.updated",
        )
        .bind(stored.id.to_string())
        .bind(&stored.name)
        .bind(&stored.flow_name)
        .bind(stored.paused)
        .bind(json_text(&stored))
        .bind(micros(stored.created))
        .bind(micros(stored.updated))
        .execute(&mut *tx)
        .await.db()?;
        tx.commit().await.db()?;
        Ok(stored)
    }

    async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        let specs: Vec<String> =
            sqlx::query_scalar("SELECT spec FROM deployments ORDER BY name").fetch_all(&self.pool).await.db()?;
        specs.iter().map(|s| serde_json::from_str(s).map_err(|e| corrupt("deployment", e))).collect()
    }

    async fn read_deployment(&self, name: &str) -> Result<Option<Deployment>> {
        let spec: Option<String> = sqlx::query_scalar("SELECT spec FROM deployments WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        spec.map(|s| serde_json::from_str(&s).map_err(|e| corrupt("deployment", e))).transpose()
    }

    async fn delete_deployment(&self, name: &str) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query("DELETE FROM deployments WHERE name = ?").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl RunQueue for SqliteStore {
    async fn enqueue_runs(&self, runs: &[FlowRun]) -> Result<usize> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let mut created = Vec::new();
        for r in &claim::with_queue(runs) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO flow_runs ({FLOW_RUN_COLS}) "));
            q.push_values(std::iter::once(r), push_flow_run);
            q.push(" ON CONFLICT DO NOTHING");
            if q.build().execute(&mut *tx).await.db()?.rows_affected() == 1 {
                created.push(StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() });
            }
        }
        let n = created.len();
        write_batch(&mut tx, &WriteBatch { states: created, ..Default::default() }).await?;
        tx.commit().await.db()?;
        Ok(n)
    }

    async fn claim_due_run(&self, work_pool: &str, queues: &[String], now: DateTime<Utc>) -> Result<Option<FlowRun>> {
        // The write lock is taken first, so two workers serialise here, and
        // BEGIN IMMEDIATE holds the database's write lock against other processes.
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let claimed = claim::claim(&mut SqliteClaim(&mut tx), work_pool, queues, now).await?;
        tx.commit().await.db()?;
        Ok(claimed)
    }
    async fn mark_late_runs(&self, cutoff: DateTime<Utc>) -> Result<Vec<FlowRun>> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE state_type = 'SCHEDULED' AND state_name = 'Scheduled' \
             AND state_scheduled < ? LIMIT 1000"
        ))
        .bind(micros(cutoff))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let runs: Vec<FlowRun> = rows.iter().map(flow_run_from).collect::<Result<_>>()?;
        let batch = late_batch(runs, Utc::now());
        write_batch(&mut tx, &batch).await?;
        tx.commit().await.db()?;
        Ok(batch.flow_runs)
    }
}

/// A claim inside SQLite's write transaction (which already excludes every
/// other writer, so no row locks are needed).
struct SqliteClaim<'c>(&'c mut SqliteConnection);

#[async_trait]
impl ClaimTx for SqliteClaim<'_> {
    async fn lock_pool(&mut self, pool: &str) -> Result<Option<(bool, Option<u32>)>> {
        let row = sqlx::query("SELECT paused, concurrency_limit FROM work_pools WHERE name = ?")
            .bind(pool)
            .fetch_optional(&mut *self.0)
            .await
            .db()?;
        row.map(|r| {
            Ok((r.try_get("paused").db()?, r.try_get::<Option<i64>, _>("concurrency_limit").db()?.map(|l| l as u32)))
        })
        .transpose()
    }

    async fn queues(&mut self, pool: &str) -> Result<Vec<WorkQueue>> {
        let rows = sqlx::query("SELECT * FROM work_queues WHERE work_pool = ?")
            .bind(pool)
            .fetch_all(&mut *self.0)
            .await
            .db()?;
        rows.iter().map(work_queue_from).collect()
    }

    async fn queues_with_due_runs(&mut self, pool: &str, now: DateTime<Utc>) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT work_queue FROM flow_runs WHERE work_pool = ? AND state_type = 'SCHEDULED' \
             AND state_scheduled <= ? AND work_queue IS NOT NULL",
        )
        .bind(pool)
        .bind(micros(now))
        .fetch_all(&mut *self.0)
        .await
        .db()?)
    }

    async fn active(&mut self, whose: Active<'_>) -> Result<u32> {
        let live = format!("state_type IN ({LIVE_STATES})");
        let n: i64 = match whose {
            Active::Pool(pool) => {
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM flow_runs WHERE work_pool = ? AND {live}"))
                    .bind(pool)
                    .fetch_one(&mut *self.0)
                    .await
                    .db()?
            }
            Active::Queue { pool, queue } => sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM flow_runs WHERE work_pool = ? AND work_queue = ? AND {live}"
            ))
            .bind(pool)
            .bind(queue)
            .fetch_one(&mut *self.0)
            .await
            .db()?,
            Active::Deployment(id) => {
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM flow_runs WHERE deployment_id = ? AND {live}"))
                    .bind(id.to_string())
                    .fetch_one(&mut *self.0)
                    .await
                    .db()?
            }
        };
        Ok(n as u32)
    }

    async fn due_runs(&mut self, pool: &str, queue: &str, now: DateTime<Utc>) -> Result<Vec<FlowRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE work_pool = ? AND work_queue = ? \
             AND state_type = 'SCHEDULED' AND state_scheduled <= ? ORDER BY state_scheduled, created LIMIT {CANDIDATES}"
        ))
        .bind(pool)
        .bind(queue)
        .bind(micros(now))
        .fetch_all(&mut *self.0)
        .await
        .db()?;
        rows.iter().map(flow_run_from).collect()
    }

    async fn lock_deployment(&mut self, id: Uuid) -> Result<Option<Deployment>> {
        let spec: Option<String> = sqlx::query_scalar("SELECT spec FROM deployments WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *self.0)
            .await
            .db()?;
        Ok(spec.and_then(|s| serde_json::from_str(&s).ok()))
    }

    async fn write(&mut self, batch: &WriteBatch) -> Result<()> {
        write_batch(self.0, batch).await
    }
}

fn work_queue_from(row: &SqliteRow) -> Result<WorkQueue> {
    Ok(WorkQueue {
        work_pool: row.try_get("work_pool").db()?,
        name: row.try_get("name").db()?,
        priority: row.try_get::<i64, _>("priority").db()? as u32,
        concurrency_limit: row.try_get::<Option<i64>, _>("concurrency_limit").db()?.map(|l| l as u32),
        paused: row.try_get("paused").db()?,
        created: from_micros(row.try_get("created").db()?),
        updated: from_micros(row.try_get("updated").db()?),
    })
}

fn work_pool_from(row: &SqliteRow) -> Result<WorkPool> {
    let kind: String = row.try_get("kind").db()?;
    Ok(WorkPool {
        name: row.try_get("name").db()?,
        kind: kind.parse().map_err(|e: String| corrupt("work pool kind", e))?,
        paused: row.try_get("paused").db()?,
        concurrency_limit: row.try_get::<Option<i64>, _>("concurrency_limit").db()?.map(|l| l as u32),
        created: from_micros(row.try_get("created").db()?),
        updated: from_micros(row.try_get("updated").db()?),
    })
}

#[async_trait]
impl WorkPoolStore for SqliteStore {
    async fn apply_work_pool(&self, p: &WorkPool) -> Result<WorkPool> {
        let writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO work_pools (name, kind, paused, concurrency_limit, created, updated) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, paused = excluded.paused, \
             concurrency_limit = excluded.concurrency_limit, updated = excluded.updated",
        )
        .bind(&p.name)
        .bind(p.kind.to_string())
        .bind(p.paused)
        .bind(p.concurrency_limit.map(i64::from))
        .bind(micros(p.created))
        .bind(micros(p.updated))
        .execute(&self.pool)
        .await.db()?;
        sqlx::query(
            "INSERT INTO work_queues (work_pool, name, priority, concurrency_limit, paused, created, updated) \
             VALUES (?, ?, 1, NULL, 0, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&p.name)
        .bind(DEFAULT_QUEUE)
        .bind(micros(p.created))
        .bind(micros(p.updated))
        .execute(&self.pool)
        .await
        .db()?;
        drop(writing);
        self.read_work_pool(&p.name).await?.ok_or_else(|| corrupt("work pool", "vanished after writing"))
    }

    async fn list_work_pools(&self) -> Result<Vec<WorkPool>> {
        let rows = sqlx::query("SELECT * FROM work_pools ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(work_pool_from).collect()
    }

    async fn read_work_pool(&self, name: &str) -> Result<Option<WorkPool>> {
        let row =
            sqlx::query("SELECT * FROM work_pools WHERE name = ?").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(work_pool_from).transpose()
    }

    async fn delete_work_pool(&self, name: &str) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let done = sqlx::query("DELETE FROM work_pools WHERE name = ?").bind(name).execute(&mut *tx).await.db()?;
        sqlx::query("DELETE FROM workers WHERE work_pool = ?").bind(name).execute(&mut *tx).await.db()?;
        sqlx::query("DELETE FROM work_queues WHERE work_pool = ?").bind(name).execute(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn apply_work_queue(&self, q: &WorkQueue) -> Result<WorkQueue> {
        let writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let pool_exists: Option<String> = sqlx::query_scalar("SELECT name FROM work_pools WHERE name = ?")
            .bind(&q.work_pool)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        if pool_exists.is_none() {
            return Err(no_pool_for_queue(q));
        }
        sqlx::query(
            "INSERT INTO work_queues (work_pool, name, priority, concurrency_limit, paused, created, updated) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(work_pool, name) DO UPDATE SET priority = excluded.priority, \
             concurrency_limit = excluded.concurrency_limit, paused = excluded.paused, updated = excluded.updated",
        )
        .bind(&q.work_pool)
        .bind(&q.name)
        .bind(i64::from(q.priority))
        .bind(q.concurrency_limit.map(i64::from))
        .bind(q.paused)
        .bind(micros(q.created))
        .bind(micros(q.updated))
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        drop(writing);
        let queues = self.list_work_queues(&q.work_pool).await?;
        queues.into_iter().find(|x| x.name == q.name).ok_or_else(|| corrupt("work queue", "vanished after writing"))
    }

    async fn list_work_queues(&self, work_pool: &str) -> Result<Vec<WorkQueue>> {
        let rows = sqlx::query("SELECT * FROM work_queues WHERE work_pool = ? ORDER BY priority, name")
            .bind(work_pool)
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter().map(work_queue_from).collect()
    }

    async fn delete_work_queue(&self, work_pool: &str, name: &str) -> Result<bool> {
        if name == DEFAULT_QUEUE {
            return Err(default_queue_stays(work_pool));
        }
        let _writing = self.writer.lock().await;
        let done = sqlx::query("DELETE FROM work_queues WHERE work_pool = ? AND name = ?")
            .bind(work_pool)
            .bind(name)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn worker_heartbeat(&self, work_pool: &str, worker: &str, at: DateTime<Utc>) -> Result<()> {
        let _writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO workers (work_pool, name, last_heartbeat) VALUES (?, ?, ?) \
             ON CONFLICT(work_pool, name) DO UPDATE SET last_heartbeat = MAX(last_heartbeat, excluded.last_heartbeat)",
        )
        .bind(work_pool)
        .bind(worker)
        .bind(micros(at))
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn list_workers(&self, work_pool: Option<&str>) -> Result<Vec<WorkerStatus>> {
        let rows = match work_pool {
            Some(p) => sqlx::query("SELECT * FROM workers WHERE work_pool = ? ORDER BY name")
                .bind(p)
                .fetch_all(&self.pool)
                .await
                .db()?,
            None => sqlx::query("SELECT * FROM workers ORDER BY work_pool, name").fetch_all(&self.pool).await.db()?,
        };
        rows.iter()
            .map(|r| {
                Ok(WorkerStatus {
                    name: r.try_get("name").db()?,
                    work_pool: r.try_get("work_pool").db()?,
                    last_heartbeat: from_micros(r.try_get("last_heartbeat").db()?),
                })
            })
            .collect()
    }
}

/// Binds one flow run's columns, in `FLOW_RUN_COLS` order.
fn push_flow_run<'q>(mut b: sqlx::query_builder::Separated<'_, 'q, Sqlite, &'static str>, r: &'q FlowRun) {
    b.push_bind(r.id.to_string())
        .push_bind(r.flow_id.to_string())
        .push_bind(r.flow_name.as_str())
        .push_bind(r.name.as_str())
        .push_bind(json_text(&r.parameters))
        .push_bind(json_text(&r.tags))
        .push_bind(r.state.state_type.as_str())
        .push_bind(r.state.name.as_str())
        .push_bind(r.state.message.as_deref())
        .push_bind(micros(r.state.timestamp))
        .push_bind(opt_micros(r.state.scheduled_time))
        .push_bind(r.parent_flow_run_id.map(|u| u.to_string()))
        .push_bind(r.run_count as i64)
        .push_bind(opt_micros(r.start_time))
        .push_bind(opt_micros(r.end_time))
        .push_bind(micros(r.created))
        .push_bind(opt_micros(r.heartbeat))
        .push_bind(r.deployment_id.map(|u| u.to_string()))
        .push_bind(r.work_pool.as_deref())
        .push_bind(r.idempotency_key.as_deref())
        .push_bind(r.work_queue.as_deref())
        .push_bind(r.retry_policy.as_ref().map(json_text));
}

/// The filter's conditions (` AND …`) on `flow_runs`; the state lists only
/// where asked for (a merged query puts one value in each branch), the name
/// through its trigram index when `by_name_index`.
fn push_run_conditions<'q>(
    q: &mut QueryBuilder<'q, Sqlite>,
    f: &'q FlowRunFilter,
    states: bool,
    names: bool,
    by_name_index: bool,
) {
    if states && !f.states.is_empty() {
        q.push(" AND state_type IN (");
        let mut sep = q.separated(", ");
        for s in &f.states {
            sep.push_bind(s.as_str());
        }
        q.push(")");
    }
    if names && !f.state_names.is_empty() {
        q.push(" AND state_name IN (");
        let mut sep = q.separated(", ");
        for s in &f.state_names {
            sep.push_bind(s.as_str());
        }
        q.push(")");
    }
    if let Some(name) = &f.flow_name {
        q.push(" AND flow_name = ").push_bind(name.as_str());
    }
    if let Some(parent) = f.parent_flow_run_id {
        q.push(" AND parent_flow_run_id = ").push_bind(parent.to_string());
    }
    if let Some(d) = f.deployment_id {
        q.push(" AND deployment_id = ").push_bind(d.to_string());
    }
    if let Some(name) = f.name.as_deref().filter(|n| !n.is_empty()) {
        if by_name_index {
            q.push(" AND id IN (SELECT run_id FROM flow_run_names WHERE name LIKE ")
                .push_bind(format!("%{name}%"))
                .push(")");
        }
        // LIKE is case-insensitive for ASCII in SQLite.
        q.push(" AND name LIKE ").push_bind(headwater_store::contains_pattern(name)).push(" ESCAPE '\\'");
    }
    for tag in &f.tags {
        q.push(" AND EXISTS (SELECT 1 FROM json_each(flow_runs.tags) WHERE json_each.value = ")
            .push_bind(tag.as_str())
            .push(")");
    }
    if let Some(since) = f.since {
        q.push(" AND created >= ").push_bind(micros(since));
    }
    if let Some(until) = f.until {
        q.push(" AND created < ").push_bind(micros(until));
    }
    if let Some(headwater_store::Cursor { created, id }) = f.before {
        q.push(" AND (created, id) < (").push_bind(micros(created)).push(", ").push_bind(id.to_string()).push(")");
    }
}

async fn write_batch(tx: &mut SqliteConnection, batch: &WriteBatch) -> Result<()> {
    {
        for f in &batch.flows {
            sqlx::query(
                "INSERT INTO flows (id, name, version, description, parameter_schema, created, updated) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET version = excluded.version, \
                 description = excluded.description, parameter_schema = excluded.parameter_schema, updated = excluded.updated",
            )
            .bind(f.id.to_string())
            .bind(&f.name)
            .bind(&f.version)
            .bind(&f.description)
            .bind(json_text(&f.parameter_schema))
            .bind(micros(f.created))
            .bind(micros(f.updated))
            .execute(&mut *tx)
            .await.db()?;
        }

        let fr_set = upsert_set("flow_runs", FLOW_RUN_COLS);
        for chunk in batch.flow_runs.chunks(rows_per_statement(FLOW_RUN_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO flow_runs ({FLOW_RUN_COLS}) "));
            q.push_values(chunk, push_flow_run);
            q.push(format!(" ON CONFLICT(id) DO UPDATE SET {fr_set}"));
            q.build().execute(&mut *tx).await.db()?;
        }

        let tr_set = upsert_set("task_runs", TASK_RUN_COLS);
        for chunk in batch.task_runs.chunks(rows_per_statement(TASK_RUN_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO task_runs ({TASK_RUN_COLS}) "));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id.to_string())
                    .push_bind(r.flow_run_id.to_string())
                    .push_bind(r.task_name.as_str())
                    .push_bind(r.name.as_str())
                    .push_bind(r.dynamic_key as i64)
                    .push_bind(json_text(&r.tags))
                    .push_bind(r.state.state_type.as_str())
                    .push_bind(r.state.name.as_str())
                    .push_bind(r.state.message.as_deref())
                    .push_bind(micros(r.state.timestamp))
                    .push_bind(opt_micros(r.state.scheduled_time))
                    .push_bind(r.run_count as i64)
                    .push_bind(r.cache_key.as_deref())
                    .push_bind(opt_micros(r.cache_expiration))
                    .push_bind(opt_micros(r.start_time))
                    .push_bind(opt_micros(r.end_time))
                    .push_bind(micros(r.created));
            });
            q.push(format!(" ON CONFLICT(id) DO UPDATE SET {tr_set}"));
            q.build().execute(&mut *tx).await.db()?;
        }

        for chunk in batch.states.chunks(rows_per_statement(STATE_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO run_states ({STATE_COLS}) "));
            q.push_values(chunk, |mut b, s| {
                b.push_bind(s.run_id.to_string())
                    .push_bind(s.kind.as_str())
                    .push_bind(s.state.state_type.as_str())
                    .push_bind(s.state.name.as_str())
                    .push_bind(s.state.message.as_deref())
                    .push_bind(micros(s.state.timestamp))
                    .push_bind(opt_micros(s.state.scheduled_time));
            });
            q.build().execute(&mut *tx).await.db()?;
        }

        for chunk in batch.logs.chunks(rows_per_statement(LOG_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO logs ({LOG_COLS}) "));
            q.push_values(chunk, |mut b, l| {
                b.push_bind(l.flow_run_id.to_string())
                    .push_bind(l.task_run_id.map(|u| u.to_string()))
                    .push_bind(l.level.number())
                    .push_bind(micros(l.timestamp))
                    .push_bind(l.message.as_str());
            });
            q.build().execute(&mut *tx).await.db()?;
        }

        for h in &batch.heartbeats {
            sqlx::query("UPDATE flow_runs SET heartbeat = ? WHERE id = ? AND (heartbeat IS NULL OR heartbeat < ?)")
                .bind(micros(h.at))
                .bind(h.flow_run_id.to_string())
                .bind(micros(h.at))
                .execute(&mut *tx)
                .await
                .db()?;
        }

        for a in &batch.artifacts {
            sqlx::query(&format!(
                "INSERT INTO artifacts ({ARTIFACT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ))
            .bind(a.id.to_string())
            .bind(a.key.as_deref())
            .bind(a.kind.to_string())
            .bind(json_text(&a.data))
            .bind(a.description.as_deref())
            .bind(a.flow_run_id.map(|u| u.to_string()))
            .bind(a.task_run_id.map(|u| u.to_string()))
            .bind(micros(a.created))
            .execute(&mut *tx)
            .await
            .db()?;
        }
    }
    Ok(())
}

#[async_trait]
impl DatasetStore for SqliteStore {
    async fn record_dataset_write(&self, w: &DatasetVersion, allow_evolution: bool) -> Result<DatasetVersion> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let current: Option<String> = sqlx::query_scalar("SELECT schema FROM datasets WHERE name = ?")
            .bind(&w.dataset)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let current: Vec<headwater_core::Column> = match current {
            Some(s) => serde_json::from_str(&s).map_err(|e| corrupt("dataset schema", e))?,
            None => Vec::new(),
        };
        let schema = headwater_core::dataset::check_schema(&w.dataset, &current, &w.schema, allow_evolution)
            .map_err(StoreError::Refused)?;
        sqlx::query(
            "INSERT INTO datasets (name, schema, created, updated) VALUES (?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET schema = excluded.schema, updated = excluded.updated",
        )
        .bind(&w.dataset)
        .bind(json_text(&schema))
        .bind(micros(w.written))
        .bind(micros(w.written))
        .execute(&mut *tx)
        .await
        .db()?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM dataset_versions WHERE dataset = ? AND partition = ?")
                .bind(&w.dataset)
                .bind(&w.partition)
                .fetch_one(&mut *tx)
                .await
                .db()?;
        let mut stored = w.clone();
        stored.version = last.unwrap_or(0) as u32 + 1;
        sqlx::query(
            "INSERT INTO dataset_versions (dataset, partition, version, location, rows, bytes, schema, flow_run_id, written) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&stored.dataset)
        .bind(&stored.partition)
        .bind(i64::from(stored.version))
        .bind(&stored.location)
        .bind(stored.rows as i64)
        .bind(stored.bytes as i64)
        .bind(json_text(&stored.schema))
        .bind(stored.flow_run_id.map(|u| u.to_string()))
        .bind(micros(stored.written))
        .execute(&mut *tx)
        .await.db()?;
        tx.commit().await.db()?;
        Ok(stored)
    }

    async fn list_datasets(&self) -> Result<Vec<Dataset>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM datasets ORDER BY name").fetch_all(&self.pool).await.db()?;
        let mut out = Vec::new();
        for n in names {
            if let Some(d) = self.read_dataset(&n).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    async fn read_dataset(&self, name: &str) -> Result<Option<Dataset>> {
        let Some(row) =
            sqlx::query("SELECT * FROM datasets WHERE name = ?").bind(name).fetch_optional(&self.pool).await.db()?
        else {
            return Ok(None);
        };
        let schema: String = row.try_get("schema").db()?;
        let partitions = self.list_partitions(name).await?;
        Ok(Some(dataset_summary(
            name.to_string(),
            serde_json::from_str(&schema).map_err(|e| corrupt("dataset schema", e))?,
            from_micros(row.try_get("created").db()?),
            from_micros(row.try_get("updated").db()?),
            &partitions,
        )))
    }

    async fn list_partitions(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        let rows = sqlx::query(
            "SELECT * FROM dataset_versions v WHERE dataset = ? AND version = \
             (SELECT MAX(version) FROM dataset_versions w WHERE w.dataset = v.dataset AND w.partition = v.partition) \
             ORDER BY partition",
        )
        .bind(dataset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(dataset_version_from).collect()
    }

    async fn dataset_history(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        let rows = sqlx::query(
            "SELECT * FROM dataset_versions WHERE dataset = ? ORDER BY written DESC, partition, version DESC",
        )
        .bind(dataset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(dataset_version_from).collect()
    }
}

fn dataset_version_from(row: &SqliteRow) -> Result<DatasetVersion> {
    let schema: String = row.try_get("schema").db()?;
    Ok(DatasetVersion {
        dataset: row.try_get("dataset").db()?,
        partition: row.try_get("partition").db()?,
        version: row.try_get::<i64, _>("version").db()? as u32,
        location: row.try_get("location").db()?,
        rows: row.try_get::<i64, _>("rows").db()? as u64,
        bytes: row.try_get::<i64, _>("bytes").db()? as u64,
        schema: serde_json::from_str(&schema).map_err(|e| corrupt("dataset version schema", e))?,
        flow_run_id: opt_uuid_col(row, "flow_run_id")?,
        written: from_micros(row.try_get("written").db()?),
    })
}

#[async_trait]
impl BlockStore for SqliteStore {
    async fn register_block_types(&self, types: &[BlockType]) -> Result<()> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        for t in types {
            sqlx::query(
                "INSERT INTO block_types (slug, name, description, schema) VALUES (?, ?, ?, ?) \
                 ON CONFLICT(slug) DO UPDATE SET name = excluded.name, description = excluded.description, \
                 schema = excluded.schema",
            )
            .bind(&t.slug)
            .bind(&t.name)
            .bind(&t.description)
            .bind(json_text(&t.schema))
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    async fn list_block_types(&self) -> Result<Vec<BlockType>> {
        let rows = sqlx::query("SELECT * FROM block_types ORDER BY slug").fetch_all(&self.pool).await.db()?;
        rows.iter()
            .map(|r| {
                let schema: String = r.try_get("schema").db()?;
                Ok(BlockType {
                    slug: r.try_get("slug").db()?,
                    name: r.try_get("name").db()?,
                    description: r.try_get("description").db()?,
                    schema: serde_json::from_str(&schema).map_err(|e| corrupt("block type schema", e))?,
                })
            })
            .collect()
    }

    async fn save_block(&self, doc: &BlockDocument) -> Result<BlockDocument> {
        let writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let schema: Option<String> = sqlx::query_scalar("SELECT schema FROM block_types WHERE slug = ?")
            .bind(&doc.block_type)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let schema =
            schema.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| corrupt("block type schema", e))?;
        let t = block_type_for(doc, schema)?;
        let previous: Option<String> = sqlx::query_scalar("SELECT data FROM blocks WHERE name = ?")
            .bind(&doc.name)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let previous: Option<serde_json::Value> =
            previous.map(|p| serde_json::from_str(&p)).transpose().map_err(|e| corrupt("block data", e))?;
        let data = seal_document(self.cipher.as_deref(), doc, &t, previous.as_ref())?;
        sqlx::query(
            "INSERT INTO blocks (name, block_type, data, created, updated) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET block_type = excluded.block_type, data = excluded.data, \
             updated = excluded.updated",
        )
        .bind(&doc.name)
        .bind(&doc.block_type)
        .bind(json_text(&data))
        .bind(micros(doc.created))
        .bind(micros(doc.updated))
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        drop(writing);
        self.read_block(&doc.name, false).await?.ok_or_else(|| corrupt("block", "vanished after writing"))
    }

    async fn read_block(&self, name: &str, reveal: bool) -> Result<Option<BlockDocument>> {
        let row =
            sqlx::query("SELECT * FROM blocks WHERE name = ?").bind(name).fetch_optional(&self.pool).await.db()?;
        match row {
            Some(r) => Ok(Some(unseal_document(self.cipher.as_deref(), block_from(&r)?, reveal)?)),
            None => Ok(None),
        }
    }

    async fn list_blocks(&self) -> Result<Vec<BlockDocument>> {
        let rows = sqlx::query("SELECT * FROM blocks ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(|r| unseal_document(None, block_from(r)?, false)).collect()
    }

    async fn delete_block(&self, name: &str) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query("DELETE FROM blocks WHERE name = ?").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

fn block_from(row: &SqliteRow) -> Result<BlockDocument> {
    let data: String = row.try_get("data").db()?;
    Ok(BlockDocument {
        name: row.try_get("name").db()?,
        block_type: row.try_get("block_type").db()?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("block data", e))?,
        created: from_micros(row.try_get("created").db()?),
        updated: from_micros(row.try_get("updated").db()?),
    })
}

#[async_trait]
impl VariableStore for SqliteStore {
    async fn set_variable(&self, v: &Variable) -> Result<Variable> {
        let writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO variables (name, value, tags, created, updated) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET value = excluded.value, tags = excluded.tags, updated = excluded.updated",
        )
        .bind(&v.name)
        .bind(json_text(&v.value))
        .bind(json_text(&v.tags))
        .bind(micros(v.created))
        .bind(micros(v.updated))
        .execute(&self.pool)
        .await
        .db()?;
        drop(writing);
        self.read_variable(&v.name).await?.ok_or_else(|| corrupt("variable", "vanished after writing"))
    }

    async fn read_variable(&self, name: &str) -> Result<Option<Variable>> {
        let row =
            sqlx::query("SELECT * FROM variables WHERE name = ?").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(variable_from).transpose()
    }

    async fn list_variables(&self) -> Result<Vec<Variable>> {
        let rows = sqlx::query("SELECT * FROM variables ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(variable_from).collect()
    }

    async fn delete_variable(&self, name: &str) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query("DELETE FROM variables WHERE name = ?").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

fn variable_from(row: &SqliteRow) -> Result<Variable> {
    let value: String = row.try_get("value").db()?;
    let tags: String = row.try_get("tags").db()?;
    Ok(Variable {
        name: row.try_get("name").db()?,
        value: serde_json::from_str(&value).map_err(|e| corrupt("variable value", e))?,
        tags: serde_json::from_str(&tags).map_err(|e| corrupt("variable tags", e))?,
        created: from_micros(row.try_get("created").db()?),
        updated: from_micros(row.try_get("updated").db()?),
    })
}

#[async_trait]
impl ArtifactStore for SqliteStore {
    async fn list_artifacts(&self, f: &ArtifactFilter) -> Result<Vec<Artifact>> {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {ARTIFACT_COLS} FROM artifacts a WHERE 1 = 1"));
        if let Some(key) = &f.key {
            q.push(" AND key = ").push_bind(key.as_str());
        }
        if let Some(run) = f.flow_run_id {
            q.push(" AND flow_run_id = ").push_bind(run.to_string());
        }
        if f.latest_only {
            q.push(LATEST_ARTIFACTS_ONLY);
        }
        q.push(" ORDER BY created DESC, id DESC LIMIT ").push_bind(i64::from(f.limit.max(1)));
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(artifact_from).collect()
    }

    async fn delete_artifacts(&self, key: &str) -> Result<u64> {
        let _writing = self.writer.lock().await;
        Ok(sqlx::query("DELETE FROM artifacts WHERE key = ?").bind(key).execute(&self.pool).await.db()?.rows_affected())
    }
}

fn artifact_from(row: &SqliteRow) -> Result<Artifact> {
    let kind: String = row.try_get("kind").db()?;
    let data: String = row.try_get("data").db()?;
    Ok(Artifact {
        id: uuid_col(row, "id")?,
        key: row.try_get("key").db()?,
        kind: kind.parse().map_err(|e: String| corrupt("artifact kind", e))?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("artifact data", e))?,
        description: row.try_get("description").db()?,
        flow_run_id: opt_uuid_col(row, "flow_run_id")?,
        task_run_id: opt_uuid_col(row, "task_run_id")?,
        created: from_micros(row.try_get("created").db()?),
    })
}

#[async_trait]
impl RunReader for SqliteStore {
    async fn list_flows(&self) -> Result<Vec<Flow>> {
        let rows = sqlx::query("SELECT * FROM flows ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(flow_from).collect()
    }

    async fn read_flow(&self, name: &str) -> Result<Option<Flow>> {
        let row = sqlx::query("SELECT * FROM flows WHERE name = ?").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(flow_from).transpose()
    }

    async fn read_flow_run(&self, id: Uuid) -> Result<Option<FlowRun>> {
        let row = sqlx::query(&format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(flow_run_from).transpose()
    }

    async fn resolve_flow_run(&self, id_or_name: &str) -> Result<FlowRun> {
        let input = id_or_name.trim();
        if let Ok(id) = Uuid::parse_str(input) {
            return self.read_flow_run(id).await?.ok_or_else(|| StoreError::FlowRunNotFound(input.to_string()));
        }
        // A prefix of the id (as `git` accepts), else a run name.
        let prefix = format!("{}%", input.replace(['%', '_'], ""));
        let mut rows = sqlx::query(&format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id LIKE ? LIMIT 2"))
            .bind(&prefix)
            .fetch_all(&self.pool)
            .await
            .db()?;
        if rows.is_empty() {
            rows = sqlx::query(&format!(
                "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE name = ? ORDER BY created DESC LIMIT 2"
            ))
            .bind(input)
            .fetch_all(&self.pool)
            .await
            .db()?;
        }
        match rows.len() {
            0 => Err(StoreError::FlowRunNotFound(input.to_string())),
            1 => flow_run_from(&rows[0]),
            n => Err(StoreError::Ambiguous { input: input.to_string(), count: n }),
        }
    }

    async fn list_flow_runs(&self, f: &FlowRunFilter) -> Result<Vec<FlowRun>> {
        let limit = f.limit.max(1) as i64;
        // Several states (or state names) are read as one newest-first index
        // range each, merged: an IN list would read and sort every matching
        // run (hundreds of milliseconds with a million runs).
        let split: Vec<(&str, &str)> = if f.states.len() > 1 && f.state_names.len() <= 1 {
            f.states.iter().map(|s| ("state_type", s.as_str())).collect()
        } else if f.state_names.len() > 1 && f.states.len() <= 1 {
            f.state_names.iter().map(|s| ("state_name", s.as_str())).collect()
        } else {
            Vec::new()
        };
        let by_name_index = match f.name.as_deref() {
            Some(name) => self.few_runs_named_like(name).await?,
            None => false,
        };
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("");
        if split.is_empty() {
            q.push(format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE 1=1"));
            push_run_conditions(&mut q, f, true, true, by_name_index);
        } else {
            q.push(format!("SELECT {FLOW_RUN_COLS} FROM ("));
            for (i, (column, value)) in split.iter().enumerate() {
                if i > 0 {
                    q.push(" UNION ALL ");
                }
                q.push(format!("SELECT * FROM (SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE {column} = "));
                q.push_bind(*value);
                push_run_conditions(&mut q, f, *column != "state_type", *column != "state_name", by_name_index);
                q.push(" ORDER BY created DESC, id DESC LIMIT ").push_bind(limit).push(")");
            }
            q.push(")");
        }
        q.push(" ORDER BY created DESC, id DESC LIMIT ").push_bind(limit);
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(flow_run_from).collect()
    }

    async fn list_task_runs(&self, flow_run_id: Uuid) -> Result<Vec<TaskRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_RUN_COLS} FROM task_runs WHERE flow_run_id = ? ORDER BY created, dynamic_key"
        ))
        .bind(flow_run_id.to_string())
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(task_run_from).collect()
    }

    async fn read_states(&self, run_id: Uuid) -> Result<Vec<StateRecord>> {
        let rows = sqlx::query("SELECT * FROM run_states WHERE run_id = ? ORDER BY id")
            .bind(run_id.to_string())
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("run_kind").db()?;
                Ok(StateRecord {
                    run_id: uuid_col(row, "run_id")?,
                    kind: RunKind::from_str(&kind).map_err(|e| corrupt("run_kind", e))?,
                    state: state_from(row, HISTORY_STATE)?,
                })
            })
            .collect()
    }

    async fn read_logs(&self, f: &LogFilter) -> Result<Vec<LogRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, flow_run_id, task_run_id, level, timestamp, message FROM logs WHERE flow_run_id = ",
        );
        q.push_bind(f.flow_run_id.to_string());
        q.push(" AND id > ").push_bind(f.after_id);
        if f.min_level > LogLevel::Debug {
            q.push(" AND level >= ").push_bind(f.min_level.number());
        }
        if let Some(t) = f.task_run_id {
            q.push(" AND task_run_id = ").push_bind(t.to_string());
        }
        q.push(" ORDER BY id LIMIT ").push_bind(f.limit.max(1) as i64);
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter()
            .map(|row| {
                Ok(LogRecord {
                    id: row.try_get("id").db()?,
                    flow_run_id: uuid_col(row, "flow_run_id")?,
                    task_run_id: opt_uuid_col(row, "task_run_id")?,
                    level: LogLevel::from_number(row.try_get("level").db()?),
                    timestamp: from_micros(row.try_get("timestamp").db()?),
                    message: row.try_get("message").db()?,
                })
            })
            .collect()
    }

    async fn flow_run_history(
        &self,
        query: &headwater_store::HistoryQuery,
    ) -> Result<Vec<headwater_store::HistoryBucket>> {
        let query = query.clamped();
        let since = micros(query.since);
        let rows = sqlx::query(
            "SELECT (created - ?1) / ?2 AS bucket, state_type, COUNT(*) AS n FROM flow_runs \
             WHERE created >= ?1 AND created < ?3 GROUP BY bucket, state_type",
        )
        .bind(since)
        .bind(query.width_micros())
        .bind(micros(query.until))
        .fetch_all(&self.pool)
        .await
        .db()?;
        let mut buckets = query.empty_buckets();
        for row in rows {
            let ty: String = row.try_get("state_type").db()?;
            let state = StateType::from_str(&ty).map_err(|e| corrupt("state_type", e))?;
            query.add(&mut buckets, row.try_get("bucket").db()?, state, row.try_get::<i64, _>("n").db()? as u64);
        }
        Ok(buckets)
    }

    async fn run_timeline(&self, flow_run_id: Uuid) -> Result<Vec<headwater_store::TimelineEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM ({TIMELINE_SELECT}) ORDER BY start_time IS NULL, start_time, created, dynamic_key"
        ))
        .bind(flow_run_id.to_string())
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter()
            .map(|row| {
                let ty: String = row.try_get("state_type").db()?;
                let kind: String = row.try_get("kind").db()?;
                Ok(headwater_store::TimelineEntry {
                    id: uuid_col(row, "id")?,
                    kind: RunKind::from_str(&kind).map_err(|e| corrupt("kind", e))?,
                    name: row.try_get("name").db()?,
                    state_type: StateType::from_str(&ty).map_err(|e| corrupt("state_type", e))?,
                    state_name: row.try_get("state_name").db()?,
                    run_count: row.try_get::<i64, _>("run_count").db()? as u32,
                    start_time: row.try_get::<Option<i64>, _>("start_time").db()?.map(from_micros),
                    end_time: row.try_get::<Option<i64>, _>("end_time").db()?.map(from_micros),
                })
            })
            .collect()
    }
}

const LIMIT_COLS: &str = "l.name, l.slot_limit, l.slot_decay_per_second, l.created, l.updated, \
     (SELECT COALESCE(SUM(slots), 0) FROM concurrency_leases c WHERE c.name = l.name AND c.expires >= ?) AS active";

fn limit_from(row: &SqliteRow) -> Result<ConcurrencyLimit> {
    Ok(ConcurrencyLimit {
        name: row.try_get("name").db()?,
        limit: row.try_get::<i64, _>("slot_limit").db()? as u32,
        slot_decay_per_second: row.try_get("slot_decay_per_second").db()?,
        active_slots: row.try_get::<i64, _>("active").db()? as u32,
        created: from_micros(row.try_get("created").db()?),
        updated: from_micros(row.try_get("updated").db()?),
    })
}

#[async_trait]
impl ConcurrencyStore for SqliteStore {
    async fn set_concurrency_limit(&self, name: &str, limit: u32, decay: Option<f64>) -> Result<ConcurrencyLimit> {
        headwater_core::concurrency::validate_limit(name, limit, decay).map_err(StoreError::Refused)?;
        let now = micros(Utc::now());
        let writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO concurrency_limits (name, slot_limit, slot_decay_per_second, created, updated) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET slot_limit = excluded.slot_limit, \
             slot_decay_per_second = excluded.slot_decay_per_second, updated = excluded.updated",
        )
        .bind(name)
        .bind(i64::from(limit))
        .bind(decay)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .db()?;
        drop(writing);
        self.read_concurrency_limit(name).await?.ok_or_else(|| corrupt("concurrency limit", "vanished after writing"))
    }

    async fn read_concurrency_limit(&self, name: &str) -> Result<Option<ConcurrencyLimit>> {
        let row = sqlx::query(&format!("SELECT {LIMIT_COLS} FROM concurrency_limits l WHERE l.name = ?"))
            .bind(micros(Utc::now()))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(limit_from).transpose()
    }

    async fn list_concurrency_limits(&self) -> Result<Vec<ConcurrencyLimit>> {
        let rows = sqlx::query(&format!("SELECT {LIMIT_COLS} FROM concurrency_limits l ORDER BY l.name"))
            .bind(micros(Utc::now()))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter().map(limit_from).collect()
    }

    async fn delete_concurrency_limit(&self, name: &str) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        sqlx::query("DELETE FROM concurrency_leases WHERE name = ?").bind(name).execute(&mut *tx).await.db()?;
        let done =
            sqlx::query("DELETE FROM concurrency_limits WHERE name = ?").bind(name).execute(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn reset_concurrency_limit(&self, name: &str) -> Result<u32> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let held = SqliteLeases(&mut tx).slots_in_use(name, Utc::now()).await?;
        sqlx::query("DELETE FROM concurrency_leases WHERE name = ?").bind(name).execute(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        Ok(held)
    }

    async fn acquire_slots(&self, request: &SlotRequest) -> Result<Acquired> {
        let names: Vec<&str> = request.slots.iter().map(|(n, _)| n.as_str()).collect();
        // Most tagged tasks have no limit: answered by a read, no write lock.
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT count(*) FROM concurrency_limits WHERE name IN (");
        let mut list = q.separated(", ");
        for n in &names {
            list.push_bind(*n);
        }
        q.push(")");
        let limited: i64 =
            if names.is_empty() { 0 } else { q.build_query_scalar().fetch_one(&self.pool).await.db()? };
        if limited == 0 {
            let lease =
                SlotLease { id: Uuid::now_v7(), slots: vec![], holder: request.holder.clone(), expires: Utc::now() };
            return Ok(Acquired::Granted { lease });
        }
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let got = leases::acquire(&mut SqliteLeases(&mut tx), request, Utc::now()).await?;
        tx.commit().await.db()?;
        Ok(got)
    }

    async fn renew_lease(&self, id: Uuid, ttl_ms: u64) -> Result<bool> {
        let now = Utc::now();
        let until = now + chrono::Duration::milliseconds(ttl_ms.min(i64::MAX as u64) as i64);
        let _writing = self.writer.lock().await;
        // Rate-limit slots keep their own expiry: they are not held, they decay.
        let done = sqlx::query(
            "UPDATE concurrency_leases SET expires = ? WHERE id = ? AND expires >= ? AND name IN \
             (SELECT name FROM concurrency_limits WHERE slot_decay_per_second IS NULL)",
        )
        .bind(micros(until))
        .bind(id.to_string())
        .bind(micros(now))
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_lease(&self, id: Uuid) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query(
            "DELETE FROM concurrency_leases WHERE id = ? AND name IN \
             (SELECT name FROM concurrency_limits WHERE slot_decay_per_second IS NULL)",
        )
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }
}

/// An acquisition inside SQLite's write transaction (which excludes every
/// other writer, so no row locks are needed).
struct SqliteLeases<'c>(&'c mut SqliteConnection);

#[async_trait]
impl LeaseTx for SqliteLeases<'_> {
    async fn lock_limits(&mut self, names: &[String]) -> Result<Vec<LimitRow>> {
        let mut rows = Vec::new();
        for name in names {
            let row = sqlx::query("SELECT slot_limit, slot_decay_per_second FROM concurrency_limits WHERE name = ?")
                .bind(name)
                .fetch_optional(&mut *self.0)
                .await
                .db()?;
            if let Some(r) = row {
                rows.push(LimitRow {
                    name: name.clone(),
                    limit: r.try_get::<i64, _>("slot_limit").db()? as u32,
                    slot_decay_per_second: r.try_get("slot_decay_per_second").db()?,
                });
            }
        }
        Ok(rows)
    }

    async fn slots_in_use(&mut self, name: &str, now: DateTime<Utc>) -> Result<u32> {
        sqlx::query("DELETE FROM concurrency_leases WHERE name = ? AND expires < ?")
            .bind(name)
            .bind(micros(now))
            .execute(&mut *self.0)
            .await
            .db()?;
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(slots), 0) FROM concurrency_leases WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *self.0)
            .await
            .db()?;
        Ok(n as u32)
    }

    async fn insert_lease(&mut self, lease: &SlotLease, name: &str, slots: u32, expires: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO concurrency_leases (id, name, slots, holder, expires) VALUES (?, ?, ?, ?, ?)")
            .bind(lease.id.to_string())
            .bind(name)
            .bind(i64::from(slots))
            .bind(&lease.holder)
            .bind(micros(expires))
            .execute(&mut *self.0)
            .await
            .db()?;
        Ok(())
    }
}
