//! The PostgreSQL store: the same contract as SQLite, in native types
//! (UUID, TIMESTAMPTZ, JSONB) so the tables read well from plain SQL.

mod automations;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::{Acquired, ConcurrencyLimit, SlotLease, SlotRequest};
use headwater_core::{
    Artifact, BlockDocument, BlockType, Dataset, DatasetVersion, Deployment, Flow, FlowRun, LogLevel, LogRecord,
    RunKind, State, StateRecord, StateType, TaskRun, Variable, WorkPool, WorkQueue, WorkerStatus, DEFAULT_QUEUE,
};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
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
        let known = crate::migrations::latest();
        if current > known {
            return Err(StoreError::SchemaTooNew { found: current, known });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
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

fn state_from(row: &PgRow, [ty, name, message, timestamp, scheduled]: StateCols) -> Result<State> {
    let ty: String = row.try_get(ty).db()?;
    Ok(State {
        state_type: StateType::from_str(&ty).map_err(|e| corrupt("state_type", e))?,
        name: row.try_get(name).db()?,
        timestamp: row.try_get(timestamp).db()?,
        message: row.try_get(message).db()?,
        scheduled_time: row.try_get(scheduled).db()?,
    })
}

fn flow_from(row: &PgRow) -> Result<Flow> {
    Ok(Flow {
        id: row.try_get("id").db()?,
        name: row.try_get("name").db()?,
        version: row.try_get("version").db()?,
        description: row.try_get("description").db()?,
        parameter_schema: row.try_get::<Json<serde_json::Value>, _>("parameter_schema").db()?.0,
        created: row.try_get("created").db()?,
        updated: row.try_get("updated").db()?,
    })
}

fn flow_run_from(row: &PgRow) -> Result<FlowRun> {
    Ok(FlowRun {
        id: row.try_get("id").db()?,
        flow_id: row.try_get("flow_id").db()?,
        flow_name: row.try_get("flow_name").db()?,
        name: row.try_get("name").db()?,
        parameters: row.try_get::<Json<serde_json::Value>, _>("parameters").db()?.0,
        tags: row.try_get::<Json<Vec<String>>, _>("tags").db()?.0,
        state: state_from(row, RUN_STATE)?,
        parent_flow_run_id: row.try_get("parent_flow_run_id").db()?,
        run_count: row.try_get::<i32, _>("run_count").db()? as u32,
        start_time: row.try_get("start_time").db()?,
        end_time: row.try_get("end_time").db()?,
        created: row.try_get("created").db()?,
        heartbeat: row.try_get("heartbeat").db()?,
        deployment_id: row.try_get("deployment_id").db()?,
        work_pool: row.try_get("work_pool").db()?,
        idempotency_key: row.try_get("idempotency_key").db()?,
        work_queue: row.try_get("work_queue").db()?,
        retry_policy: row.try_get::<Option<Json<headwater_core::RetryPolicy>>, _>("retry_policy").db()?.map(|j| j.0),
    })
}

fn task_run_from(row: &PgRow) -> Result<TaskRun> {
    Ok(TaskRun {
        id: row.try_get("id").db()?,
        flow_run_id: row.try_get("flow_run_id").db()?,
        task_name: row.try_get("task_name").db()?,
        name: row.try_get("name").db()?,
        dynamic_key: row.try_get::<i64, _>("dynamic_key").db()? as u64,
        tags: row.try_get::<Json<Vec<String>>, _>("tags").db()?.0,
        state: state_from(row, RUN_STATE)?,
        run_count: row.try_get::<i32, _>("run_count").db()? as u32,
        cache_key: row.try_get("cache_key").db()?,
        cache_expiration: row.try_get("cache_expiration").db()?,
        start_time: row.try_get("start_time").db()?,
        end_time: row.try_get("end_time").db()?,
        created: row.try_get("created").db()?,
    })
}

/// One row per id, the last snapshot winning: PostgreSQL refuses an upsert
/// that touches the same row twice in one statement.
fn last_per_id<T, F: Fn(&T) -> Uuid>(rows: &[T], id: F) -> Vec<&T> {
    let mut last: HashMap<Uuid, usize> = HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert(id(r), i);
    }
    rows.iter().enumerate().filter(|(i, r)| last[&id(r)] == *i).map(|(_, r)| r).collect()
}

#[async_trait]
impl RunRecorder for PostgresStore {
    async fn record(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.db()?;
        write_batch(&mut tx, batch).await?;
        tx.commit().await.db()?;
        Ok(())
    }
}

#[async_trait]
impl RunReaper for PostgresStore {
    async fn crash_stale_runs(&self, cutoff: DateTime<Utc>) -> Result<Vec<FlowRun>> {
        let mut tx = self.pool.begin().await.db()?;
        let conn: &mut PgConnection = &mut tx;
        // SKIP LOCKED: two servers reaping at once never crash a run twice.
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE state_type IN ({LIVE_STATES}) \
             AND heartbeat IS NOT NULL AND heartbeat < $1 FOR UPDATE SKIP LOCKED"
        ))
        .bind(cutoff)
        .fetch_all(&mut *conn)
        .await
        .db()?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let runs: Vec<FlowRun> = rows.iter().map(flow_run_from).collect::<Result<_>>()?;
        let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
        let rows = sqlx::query(&format!(
            "SELECT {TASK_RUN_COLS} FROM task_runs WHERE flow_run_id = ANY($1) AND state_type NOT IN ({FINAL_STATES})"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .db()?;
        let tasks: Vec<TaskRun> = rows.iter().map(task_run_from).collect::<Result<_>>()?;
        let batch = crash_batch(runs, tasks, Utc::now());
        write_batch(conn, &batch).await?;
        tx.commit().await.db()?;
        Ok(batch.flow_runs)
    }
}

#[async_trait]
impl DeploymentStore for PostgresStore {
    async fn apply_deployment(&self, d: &Deployment) -> Result<Deployment> {
        let mut tx = self.pool.begin().await.db()?;
        let conn: &mut PgConnection = &mut tx;
        let created: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT created FROM deployments WHERE name = $1 FOR UPDATE")
                .bind(&d.name)
                .fetch_optional(&mut *conn)
                .await
                .db()?;
        let mut stored = d.clone();
        if let Some(c) = created {
            stored.created = c;
        }
        sqlx::query(
            "INSERT INTO deployments (id, name, flow_name, paused, spec, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET flow_name = excluded.flow_name, \
             paused = excluded.paused, spec = excluded.spec, updated = excluded.updated",
        )
        .bind(stored.id)
        .bind(&stored.name)
        .bind(&stored.flow_name)
        .bind(stored.paused)
        .bind(Json(&stored))
        .bind(stored.created)
        .bind(stored.updated)
        .execute(&mut *conn)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(stored)
    }

    async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        let specs: Vec<Json<Deployment>> =
            sqlx::query_scalar("SELECT spec FROM deployments ORDER BY name").fetch_all(&self.pool).await.db()?;
        Ok(specs.into_iter().map(|j| j.0).collect())
    }

    async fn read_deployment(&self, name: &str) -> Result<Option<Deployment>> {
        let spec: Option<Json<Deployment>> = sqlx::query_scalar("SELECT spec FROM deployments WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        Ok(spec.map(|j| j.0))
    }

    async fn delete_deployment(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM deployments WHERE name = $1").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl RunQueue for PostgresStore {
    async fn enqueue_runs(&self, runs: &[FlowRun]) -> Result<usize> {
        let mut tx = self.pool.begin().await.db()?;
        let conn: &mut PgConnection = &mut tx;
        let mut created = Vec::new();
        for r in &claim::with_queue(runs) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO flow_runs ({FLOW_RUN_COLS}) "));
            q.push_values(std::iter::once(r), push_flow_run);
            q.push(" ON CONFLICT DO NOTHING");
            if q.build().execute(&mut *conn).await.db()?.rows_affected() == 1 {
                created.push(StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() });
            }
        }
        let n = created.len();
        write_batch(conn, &WriteBatch { states: created, ..Default::default() }).await?;
        tx.commit().await.db()?;
        Ok(n)
    }

    async fn claim_due_run(&self, work_pool: &str, queues: &[String], now: DateTime<Utc>) -> Result<Option<FlowRun>> {
        let mut tx = self.pool.begin().await.db()?;
        let claimed = claim::claim(&mut PgClaim(&mut tx), work_pool, queues, now).await?;
        tx.commit().await.db()?;
        Ok(claimed)
    }
    async fn mark_late_runs(&self, cutoff: DateTime<Utc>) -> Result<Vec<FlowRun>> {
        let mut tx = self.pool.begin().await.db()?;
        let conn: &mut PgConnection = &mut tx;
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE state_type = 'SCHEDULED' AND state_name = 'Scheduled' \
             AND state_scheduled < $1 LIMIT 1000 FOR UPDATE SKIP LOCKED"
        ))
        .bind(cutoff)
        .fetch_all(&mut *conn)
        .await
        .db()?;
        let runs: Vec<FlowRun> = rows.iter().map(flow_run_from).collect::<Result<_>>()?;
        let batch = late_batch(runs, Utc::now());
        write_batch(conn, &batch).await?;
        tx.commit().await.db()?;
        Ok(batch.flow_runs)
    }
}

/// A claim inside a PostgreSQL transaction: the pool's row lock serialises
/// claims within a pool (so pool and queue limits hold with many workers),
/// SKIP LOCKED lets claims of implicit pools take different runs, and the
/// deployment's row lock guards its limit.
struct PgClaim<'c>(&'c mut PgConnection);

#[async_trait]
impl ClaimTx for PgClaim<'_> {
    async fn lock_pool(&mut self, pool: &str) -> Result<Option<(bool, Option<u32>)>> {
        let row = sqlx::query("SELECT paused, concurrency_limit FROM work_pools WHERE name = $1 FOR UPDATE")
            .bind(pool)
            .fetch_optional(&mut *self.0)
            .await
            .db()?;
        row.map(|r| {
            Ok((r.try_get("paused").db()?, r.try_get::<Option<i32>, _>("concurrency_limit").db()?.map(|l| l as u32)))
        })
        .transpose()
    }

    async fn queues(&mut self, pool: &str) -> Result<Vec<WorkQueue>> {
        let rows = sqlx::query("SELECT * FROM work_queues WHERE work_pool = $1")
            .bind(pool)
            .fetch_all(&mut *self.0)
            .await
            .db()?;
        rows.iter().map(work_queue_from).collect()
    }

    async fn queues_with_due_runs(&mut self, pool: &str, now: DateTime<Utc>) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT work_queue FROM flow_runs WHERE work_pool = $1 AND state_type = 'SCHEDULED' \
             AND state_scheduled <= $2 AND work_queue IS NOT NULL",
        )
        .bind(pool)
        .bind(now)
        .fetch_all(&mut *self.0)
        .await
        .db()?)
    }

    async fn active(&mut self, whose: Active<'_>) -> Result<u32> {
        let live = format!("state_type IN ({LIVE_STATES})");
        let n: i64 = match whose {
            Active::Pool(pool) => {
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM flow_runs WHERE work_pool = $1 AND {live}"))
                    .bind(pool)
                    .fetch_one(&mut *self.0)
                    .await
                    .db()?
            }
            Active::Queue { pool, queue } => sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM flow_runs WHERE work_pool = $1 AND work_queue = $2 AND {live}"
            ))
            .bind(pool)
            .bind(queue)
            .fetch_one(&mut *self.0)
            .await
            .db()?,
            Active::Deployment(id) => {
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM flow_runs WHERE deployment_id = $1 AND {live}"))
                    .bind(id)
                    .fetch_one(&mut *self.0)
                    .await
                    .db()?
            }
        };
        Ok(n as u32)
    }

    async fn due_runs(&mut self, pool: &str, queue: &str, now: DateTime<Utc>) -> Result<Vec<FlowRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE work_pool = $1 AND work_queue = $2 \
             AND state_type = 'SCHEDULED' AND state_scheduled <= $3 ORDER BY state_scheduled, created \
             LIMIT {CANDIDATES} FOR UPDATE SKIP LOCKED"
        ))
        .bind(pool)
        .bind(queue)
        .bind(now)
        .fetch_all(&mut *self.0)
        .await
        .db()?;
        rows.iter().map(flow_run_from).collect()
    }

    async fn lock_deployment(&mut self, id: Uuid) -> Result<Option<Deployment>> {
        let spec: Option<Json<Deployment>> =
            sqlx::query_scalar("SELECT spec FROM deployments WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await
                .db()?;
        Ok(spec.map(|j| j.0))
    }

    async fn write(&mut self, batch: &WriteBatch) -> Result<()> {
        write_batch(self.0, batch).await
    }
}

fn work_queue_from(row: &PgRow) -> Result<WorkQueue> {
    Ok(WorkQueue {
        work_pool: row.try_get("work_pool").db()?,
        name: row.try_get("name").db()?,
        priority: row.try_get::<i32, _>("priority").db()? as u32,
        concurrency_limit: row.try_get::<Option<i32>, _>("concurrency_limit").db()?.map(|l| l as u32),
        paused: row.try_get("paused").db()?,
        created: row.try_get("created").db()?,
        updated: row.try_get("updated").db()?,
    })
}

fn work_pool_from(row: &PgRow) -> Result<WorkPool> {
    let kind: String = row.try_get("kind").db()?;
    Ok(WorkPool {
        name: row.try_get("name").db()?,
        kind: kind.parse().map_err(|e: String| corrupt("work pool kind", e))?,
        paused: row.try_get("paused").db()?,
        concurrency_limit: row.try_get::<Option<i32>, _>("concurrency_limit").db()?.map(|l| l as u32),
        created: row.try_get("created").db()?,
        updated: row.try_get("updated").db()?,
    })
}

#[async_trait]
impl WorkPoolStore for PostgresStore {
    async fn apply_work_pool(&self, p: &WorkPool) -> Result<WorkPool> {
        sqlx::query(
            "INSERT INTO work_pools (name, kind, paused, concurrency_limit, created, updated) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, paused = excluded.paused, \
             concurrency_limit = excluded.concurrency_limit, updated = excluded.updated",
        )
        .bind(&p.name)
        .bind(p.kind.to_string())
        .bind(p.paused)
        .bind(p.concurrency_limit.map(|l| l as i32))
        .bind(p.created)
        .bind(p.updated)
        .execute(&self.pool)
        .await.db()?;
        sqlx::query(
            "INSERT INTO work_queues (work_pool, name, priority, concurrency_limit, paused, created, updated) \
             VALUES ($1, $2, 1, NULL, FALSE, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&p.name)
        .bind(DEFAULT_QUEUE)
        .bind(p.created)
        .bind(p.updated)
        .execute(&self.pool)
        .await
        .db()?;
        self.read_work_pool(&p.name).await?.ok_or_else(|| corrupt("work pool", "vanished after writing"))
    }

    async fn list_work_pools(&self) -> Result<Vec<WorkPool>> {
        let rows = sqlx::query("SELECT * FROM work_pools ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(work_pool_from).collect()
    }

    async fn read_work_pool(&self, name: &str) -> Result<Option<WorkPool>> {
        let row =
            sqlx::query("SELECT * FROM work_pools WHERE name = $1").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(work_pool_from).transpose()
    }

    async fn delete_work_pool(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.db()?;
        let done = sqlx::query("DELETE FROM work_pools WHERE name = $1").bind(name).execute(&mut *tx).await.db()?;
        sqlx::query("DELETE FROM workers WHERE work_pool = $1").bind(name).execute(&mut *tx).await.db()?;
        sqlx::query("DELETE FROM work_queues WHERE work_pool = $1").bind(name).execute(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn apply_work_queue(&self, q: &WorkQueue) -> Result<WorkQueue> {
        let mut tx = self.pool.begin().await.db()?;
        // Locking the pool keeps it from being deleted under its new queue.
        let pool_exists: Option<String> = sqlx::query_scalar("SELECT name FROM work_pools WHERE name = $1 FOR UPDATE")
            .bind(&q.work_pool)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        if pool_exists.is_none() {
            return Err(no_pool_for_queue(q));
        }
        let row = sqlx::query(
            "INSERT INTO work_queues (work_pool, name, priority, concurrency_limit, paused, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (work_pool, name) DO UPDATE SET priority = excluded.priority, \
             concurrency_limit = excluded.concurrency_limit, paused = excluded.paused, updated = excluded.updated \
             RETURNING *",
        )
        .bind(&q.work_pool)
        .bind(&q.name)
        .bind(q.priority as i32)
        .bind(q.concurrency_limit.map(|l| l as i32))
        .bind(q.paused)
        .bind(q.created)
        .bind(q.updated)
        .fetch_one(&mut *tx)
        .await.db()?;
        tx.commit().await.db()?;
        work_queue_from(&row)
    }

    async fn list_work_queues(&self, work_pool: &str) -> Result<Vec<WorkQueue>> {
        let rows = sqlx::query("SELECT * FROM work_queues WHERE work_pool = $1 ORDER BY priority, name")
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
        let done = sqlx::query("DELETE FROM work_queues WHERE work_pool = $1 AND name = $2")
            .bind(work_pool)
            .bind(name)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn worker_heartbeat(&self, work_pool: &str, worker: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO workers (work_pool, name, last_heartbeat) VALUES ($1, $2, $3) \
             ON CONFLICT (work_pool, name) DO UPDATE SET last_heartbeat = GREATEST(workers.last_heartbeat, excluded.last_heartbeat)",
        )
        .bind(work_pool)
        .bind(worker)
        .bind(at)
        .execute(&self.pool)
        .await.db()?;
        Ok(())
    }

    async fn list_workers(&self, work_pool: Option<&str>) -> Result<Vec<WorkerStatus>> {
        let rows = match work_pool {
            Some(p) => sqlx::query("SELECT * FROM workers WHERE work_pool = $1 ORDER BY name")
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
                    last_heartbeat: r.try_get("last_heartbeat").db()?,
                })
            })
            .collect()
    }
}

/// Binds one flow run's columns, in `FLOW_RUN_COLS` order.
fn push_flow_run<'q>(mut b: sqlx::query_builder::Separated<'_, 'q, Postgres, &'static str>, r: &'q FlowRun) {
    b.push_bind(r.id)
        .push_bind(r.flow_id)
        .push_bind(r.flow_name.as_str())
        .push_bind(r.name.as_str())
        .push_bind(Json(&r.parameters))
        .push_bind(Json(&r.tags))
        .push_bind(r.state.state_type.as_str())
        .push_bind(r.state.name.as_str())
        .push_bind(r.state.message.as_deref())
        .push_bind(r.state.timestamp)
        .push_bind(r.state.scheduled_time)
        .push_bind(r.parent_flow_run_id)
        .push_bind(r.run_count as i32)
        .push_bind(r.start_time)
        .push_bind(r.end_time)
        .push_bind(r.created)
        .push_bind(r.heartbeat)
        .push_bind(r.deployment_id)
        .push_bind(r.work_pool.as_deref())
        .push_bind(r.idempotency_key.as_deref())
        .push_bind(r.work_queue.as_deref())
        .push_bind(r.retry_policy.as_ref().map(Json));
}

async fn write_batch(conn: &mut PgConnection, batch: &WriteBatch) -> Result<()> {
    {
        let mut flows: Vec<&Flow> = Vec::new();
        for f in &batch.flows {
            match flows.iter().position(|g| g.name == f.name) {
                Some(i) => flows[i] = f,
                None => flows.push(f),
            }
        }
        for f in flows {
            sqlx::query(
                "INSERT INTO flows (id, name, version, description, parameter_schema, created, updated) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
                 description = excluded.description, parameter_schema = excluded.parameter_schema, updated = excluded.updated",
            )
            .bind(f.id)
            .bind(&f.name)
            .bind(&f.version)
            .bind(&f.description)
            .bind(Json(&f.parameter_schema))
            .bind(f.created)
            .bind(f.updated)
            .execute(&mut *conn)
            .await.db()?;
        }

        let fr_set = upsert_set("flow_runs", FLOW_RUN_COLS);
        let flow_runs = last_per_id(&batch.flow_runs, |r| r.id);
        for chunk in flow_runs.chunks(rows_per_statement(FLOW_RUN_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO flow_runs ({FLOW_RUN_COLS}) "));
            q.push_values(chunk.iter().copied(), push_flow_run);
            q.push(format!(" ON CONFLICT (id) DO UPDATE SET {fr_set}"));
            q.build().execute(&mut *conn).await.db()?;
        }

        let tr_set = upsert_set("task_runs", TASK_RUN_COLS);
        let task_runs = last_per_id(&batch.task_runs, |r| r.id);
        for chunk in task_runs.chunks(rows_per_statement(TASK_RUN_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO task_runs ({TASK_RUN_COLS}) "));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.flow_run_id)
                    .push_bind(r.task_name.as_str())
                    .push_bind(r.name.as_str())
                    .push_bind(r.dynamic_key as i64)
                    .push_bind(Json(&r.tags))
                    .push_bind(r.state.state_type.as_str())
                    .push_bind(r.state.name.as_str())
                    .push_bind(r.state.message.as_deref())
                    .push_bind(r.state.timestamp)
                    .push_bind(r.state.scheduled_time)
                    .push_bind(r.run_count as i32)
                    .push_bind(r.cache_key.as_deref())
                    .push_bind(r.cache_expiration)
                    .push_bind(r.start_time)
                    .push_bind(r.end_time)
                    .push_bind(r.created);
            });
            q.push(format!(" ON CONFLICT (id) DO UPDATE SET {tr_set}"));
            q.build().execute(&mut *conn).await.db()?;
        }

        for chunk in batch.states.chunks(rows_per_statement(STATE_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO run_states ({STATE_COLS}) "));
            q.push_values(chunk, |mut b, s| {
                b.push_bind(s.run_id)
                    .push_bind(s.kind.as_str())
                    .push_bind(s.state.state_type.as_str())
                    .push_bind(s.state.name.as_str())
                    .push_bind(s.state.message.as_deref())
                    .push_bind(s.state.timestamp)
                    .push_bind(s.state.scheduled_time);
            });
            q.build().execute(&mut *conn).await.db()?;
        }

        for chunk in batch.logs.chunks(rows_per_statement(LOG_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO logs ({LOG_COLS}) "));
            q.push_values(chunk, |mut b, l| {
                b.push_bind(l.flow_run_id)
                    .push_bind(l.task_run_id)
                    .push_bind(l.level.number() as i32)
                    .push_bind(l.timestamp)
                    .push_bind(l.message.as_str());
            });
            q.build().execute(&mut *conn).await.db()?;
        }

        for h in &batch.heartbeats {
            sqlx::query("UPDATE flow_runs SET heartbeat = $1 WHERE id = $2 AND (heartbeat IS NULL OR heartbeat < $1)")
                .bind(h.at)
                .bind(h.flow_run_id)
                .execute(&mut *conn)
                .await
                .db()?;
        }

        for a in &batch.artifacts {
            sqlx::query(&format!(
                "INSERT INTO artifacts ({ARTIFACT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
            ))
            .bind(a.id)
            .bind(a.key.as_deref())
            .bind(a.kind.to_string())
            .bind(Json(&a.data))
            .bind(a.description.as_deref())
            .bind(a.flow_run_id)
            .bind(a.task_run_id)
            .bind(a.created)
            .execute(&mut *conn)
            .await
            .db()?;
        }
    }
    Ok(())
}

#[async_trait]
impl DatasetStore for PostgresStore {
    async fn record_dataset_write(&self, w: &DatasetVersion, allow_evolution: bool) -> Result<DatasetVersion> {
        let mut tx = self.pool.begin().await.db()?;
        // Writers of one dataset take turns (the schema check and the
        // version number depend on what the others wrote).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(&w.dataset).execute(&mut *tx).await.db()?;
        let current: Option<Json<Vec<headwater_core::Column>>> =
            sqlx::query_scalar("SELECT schema FROM datasets WHERE name = $1")
                .bind(&w.dataset)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let current = current.map(|j| j.0).unwrap_or_default();
        let schema = headwater_core::dataset::check_schema(&w.dataset, &current, &w.schema, allow_evolution)
            .map_err(StoreError::Refused)?;
        sqlx::query(
            "INSERT INTO datasets (name, schema, created, updated) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET schema = excluded.schema, updated = excluded.updated",
        )
        .bind(&w.dataset)
        .bind(Json(&schema))
        .bind(w.written)
        .execute(&mut *tx)
        .await
        .db()?;
        let last: Option<i32> =
            sqlx::query_scalar("SELECT MAX(version) FROM dataset_versions WHERE dataset = $1 AND partition = $2")
                .bind(&w.dataset)
                .bind(&w.partition)
                .fetch_one(&mut *tx)
                .await
                .db()?;
        let mut stored = w.clone();
        stored.version = last.unwrap_or(0) as u32 + 1;
        sqlx::query(
            "INSERT INTO dataset_versions (dataset, partition, version, location, rows, bytes, schema, flow_run_id, written) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&stored.dataset)
        .bind(&stored.partition)
        .bind(stored.version as i32)
        .bind(&stored.location)
        .bind(stored.rows as i64)
        .bind(stored.bytes as i64)
        .bind(Json(&stored.schema))
        .bind(stored.flow_run_id)
        .bind(stored.written)
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
            sqlx::query("SELECT * FROM datasets WHERE name = $1").bind(name).fetch_optional(&self.pool).await.db()?
        else {
            return Ok(None);
        };
        let partitions = self.list_partitions(name).await?;
        Ok(Some(dataset_summary(
            name.to_string(),
            row.try_get::<Json<Vec<headwater_core::Column>>, _>("schema").db()?.0,
            row.try_get("created").db()?,
            row.try_get("updated").db()?,
            &partitions,
        )))
    }

    async fn list_partitions(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (partition) * FROM dataset_versions WHERE dataset = $1 \
             ORDER BY partition, version DESC",
        )
        .bind(dataset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(dataset_version_from).collect()
    }

    async fn dataset_history(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        let rows = sqlx::query(
            "SELECT * FROM dataset_versions WHERE dataset = $1 ORDER BY written DESC, partition, version DESC",
        )
        .bind(dataset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(dataset_version_from).collect()
    }
}

fn dataset_version_from(row: &PgRow) -> Result<DatasetVersion> {
    Ok(DatasetVersion {
        dataset: row.try_get("dataset").db()?,
        partition: row.try_get("partition").db()?,
        version: row.try_get::<i32, _>("version").db()? as u32,
        location: row.try_get("location").db()?,
        rows: row.try_get::<i64, _>("rows").db()? as u64,
        bytes: row.try_get::<i64, _>("bytes").db()? as u64,
        schema: row.try_get::<Json<Vec<headwater_core::Column>>, _>("schema").db()?.0,
        flow_run_id: row.try_get("flow_run_id").db()?,
        written: row.try_get("written").db()?,
    })
}

#[async_trait]
impl BlockStore for PostgresStore {
    async fn register_block_types(&self, types: &[BlockType]) -> Result<()> {
        let mut tx = self.pool.begin().await.db()?;
        for t in types {
            sqlx::query(
                "INSERT INTO block_types (slug, name, description, schema) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (slug) DO UPDATE SET name = excluded.name, description = excluded.description, \
                 schema = excluded.schema",
            )
            .bind(&t.slug)
            .bind(&t.name)
            .bind(&t.description)
            .bind(Json(&t.schema))
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
                Ok(BlockType {
                    slug: r.try_get("slug").db()?,
                    name: r.try_get("name").db()?,
                    description: r.try_get("description").db()?,
                    schema: r.try_get::<Json<serde_json::Value>, _>("schema").db()?.0,
                })
            })
            .collect()
    }

    async fn save_block(&self, doc: &BlockDocument) -> Result<BlockDocument> {
        let mut tx = self.pool.begin().await.db()?;
        let schema: Option<Json<serde_json::Value>> =
            sqlx::query_scalar("SELECT schema FROM block_types WHERE slug = $1")
                .bind(&doc.block_type)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let t = block_type_for(doc, schema.map(|s| s.0))?;
        let previous: Option<Json<serde_json::Value>> =
            sqlx::query_scalar("SELECT data FROM blocks WHERE name = $1 FOR UPDATE")
                .bind(&doc.name)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let data = seal_document(self.cipher.as_deref(), doc, &t, previous.as_ref().map(|p| &p.0))?;
        sqlx::query(
            "INSERT INTO blocks (name, block_type, data, created, updated) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET block_type = excluded.block_type, data = excluded.data, \
             updated = excluded.updated",
        )
        .bind(&doc.name)
        .bind(&doc.block_type)
        .bind(Json(&data))
        .bind(doc.created)
        .bind(doc.updated)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        self.read_block(&doc.name, false).await?.ok_or_else(|| corrupt("block", "vanished after writing"))
    }

    async fn read_block(&self, name: &str, reveal: bool) -> Result<Option<BlockDocument>> {
        let row =
            sqlx::query("SELECT * FROM blocks WHERE name = $1").bind(name).fetch_optional(&self.pool).await.db()?;
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
        let done = sqlx::query("DELETE FROM blocks WHERE name = $1").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

fn block_from(row: &PgRow) -> Result<BlockDocument> {
    Ok(BlockDocument {
        name: row.try_get("name").db()?,
        block_type: row.try_get("block_type").db()?,
        data: row.try_get::<Json<serde_json::Value>, _>("data").db()?.0,
        created: row.try_get("created").db()?,
        updated: row.try_get("updated").db()?,
    })
}

#[async_trait]
impl VariableStore for PostgresStore {
    async fn set_variable(&self, v: &Variable) -> Result<Variable> {
        let row = sqlx::query(
            "INSERT INTO variables (name, value, tags, created, updated) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, tags = excluded.tags, updated = excluded.updated \
             RETURNING *",
        )
        .bind(&v.name)
        .bind(Json(&v.value))
        .bind(Json(&v.tags))
        .bind(v.created)
        .bind(v.updated)
        .fetch_one(&self.pool)
        .await
        .db()?;
        variable_from(&row)
    }

    async fn read_variable(&self, name: &str) -> Result<Option<Variable>> {
        let row =
            sqlx::query("SELECT * FROM variables WHERE name = $1").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(variable_from).transpose()
    }

    async fn list_variables(&self) -> Result<Vec<Variable>> {
        let rows = sqlx::query("SELECT * FROM variables ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(variable_from).collect()
    }

    async fn delete_variable(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM variables WHERE name = $1").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

fn variable_from(row: &PgRow) -> Result<Variable> {
    Ok(Variable {
        name: row.try_get("name").db()?,
        value: row.try_get::<Json<serde_json::Value>, _>("value").db()?.0,
        tags: row.try_get::<Json<Vec<String>>, _>("tags").db()?.0,
        created: row.try_get("created").db()?,
        updated: row.try_get("updated").db()?,
    })
}

#[async_trait]
impl ArtifactStore for PostgresStore {
    async fn list_artifacts(&self, f: &ArtifactFilter) -> Result<Vec<Artifact>> {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {ARTIFACT_COLS} FROM artifacts a WHERE TRUE"));
        if let Some(key) = &f.key {
            q.push(" AND key = ").push_bind(key.as_str());
        }
        if let Some(run) = f.flow_run_id {
            q.push(" AND flow_run_id = ").push_bind(run);
        }
        if f.latest_only {
            q.push(LATEST_ARTIFACTS_ONLY);
        }
        q.push(" ORDER BY created DESC, id DESC LIMIT ").push_bind(i64::from(f.limit.max(1)));
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(artifact_from).collect()
    }

    async fn delete_artifacts(&self, key: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM artifacts WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .db()?
            .rows_affected())
    }
}

fn artifact_from(row: &PgRow) -> Result<Artifact> {
    let kind: String = row.try_get("kind").db()?;
    Ok(Artifact {
        id: row.try_get("id").db()?,
        key: row.try_get("key").db()?,
        kind: kind.parse().map_err(|e: String| corrupt("artifact kind", e))?,
        data: row.try_get::<Json<serde_json::Value>, _>("data").db()?.0,
        description: row.try_get("description").db()?,
        flow_run_id: row.try_get("flow_run_id").db()?,
        task_run_id: row.try_get("task_run_id").db()?,
        created: row.try_get("created").db()?,
    })
}

#[async_trait]
impl RunReader for PostgresStore {
    async fn list_flows(&self) -> Result<Vec<Flow>> {
        let rows = sqlx::query("SELECT * FROM flows ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(flow_from).collect()
    }

    async fn read_flow(&self, name: &str) -> Result<Option<Flow>> {
        let row =
            sqlx::query("SELECT * FROM flows WHERE name = $1").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(flow_from).transpose()
    }

    async fn read_flow_run(&self, id: Uuid) -> Result<Option<FlowRun>> {
        let row = sqlx::query(&format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id = $1"))
            .bind(id)
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
        let prefix = format!("{}%", input.to_ascii_lowercase().replace(['%', '_'], ""));
        let mut rows = sqlx::query(&format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id::text LIKE $1 LIMIT 2"))
            .bind(&prefix)
            .fetch_all(&self.pool)
            .await
            .db()?;
        if rows.is_empty() {
            rows = sqlx::query(&format!(
                "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE name = $1 ORDER BY created DESC LIMIT 2"
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
        // Ids first, then the page's rows: the inner query can be answered
        // from a covering index (migration 14) without reading the rows it
        // rejects.
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id IN (SELECT id FROM flow_runs WHERE TRUE"
        ));
        if !f.states.is_empty() {
            q.push(" AND state_type = ANY(")
                .push_bind(f.states.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>())
                .push(")");
        }
        if !f.state_names.is_empty() {
            q.push(" AND state_name = ANY(").push_bind(f.state_names.clone()).push(")");
        }
        if let Some(name) = &f.flow_name {
            q.push(" AND flow_name = ").push_bind(name.as_str());
        }
        if let Some(parent) = f.parent_flow_run_id {
            q.push(" AND parent_flow_run_id = ").push_bind(parent);
        }
        if let Some(d) = f.deployment_id {
            q.push(" AND deployment_id = ").push_bind(d);
        }
        if let Some(name) = f.name.as_deref().filter(|n| !n.is_empty()) {
            // `\` is LIKE's default escape; no ESCAPE clause, so a trigram index serves it.
            q.push(" AND name ILIKE ").push_bind(headwater_store::contains_pattern(name));
        }
        if !f.tags.is_empty() {
            q.push(" AND tags @> ").push_bind(Json(f.tags.clone()));
        }
        if let Some(since) = f.since {
            q.push(" AND created >= ").push_bind(since);
        }
        if let Some(until) = f.until {
            q.push(" AND created < ").push_bind(until);
        }
        if let Some(headwater_store::Cursor { created, id }) = f.before {
            q.push(" AND (created, id) < (").push_bind(created).push(", ").push_bind(id).push(")");
        }
        q.push(" ORDER BY created DESC, id DESC LIMIT ").push_bind(f.limit.max(1) as i64);
        q.push(") ORDER BY created DESC, id DESC");
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(flow_run_from).collect()
    }

    async fn run_timeline(&self, flow_run_id: Uuid) -> Result<Vec<headwater_store::TimelineEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM ({TIMELINE_SELECT}) t ORDER BY start_time NULLS LAST, created, dynamic_key"
        ))
        .bind(flow_run_id)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter()
            .map(|row| {
                let ty: String = row.try_get("state_type").db()?;
                let kind: String = row.try_get("kind").db()?;
                Ok(headwater_store::TimelineEntry {
                    id: row.try_get("id").db()?,
                    kind: RunKind::from_str(&kind).map_err(|e| corrupt("kind", e))?,
                    name: row.try_get("name").db()?,
                    state_type: StateType::from_str(&ty).map_err(|e| corrupt("state_type", e))?,
                    state_name: row.try_get("state_name").db()?,
                    run_count: row.try_get::<i32, _>("run_count").db()? as u32,
                    start_time: row.try_get("start_time").db()?,
                    end_time: row.try_get("end_time").db()?,
                })
            })
            .collect()
    }

    async fn list_task_runs(&self, flow_run_id: Uuid) -> Result<Vec<TaskRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_RUN_COLS} FROM task_runs WHERE flow_run_id = $1 ORDER BY created, dynamic_key"
        ))
        .bind(flow_run_id)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(task_run_from).collect()
    }

    async fn read_states(&self, run_id: Uuid) -> Result<Vec<StateRecord>> {
        let rows = sqlx::query("SELECT * FROM run_states WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("run_kind").db()?;
                Ok(StateRecord {
                    run_id: row.try_get("run_id").db()?,
                    kind: RunKind::from_str(&kind).map_err(|e| corrupt("run_kind", e))?,
                    state: state_from(row, HISTORY_STATE)?,
                })
            })
            .collect()
    }

    async fn read_logs(&self, f: &LogFilter) -> Result<Vec<LogRecord>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT id, flow_run_id, task_run_id, level, timestamp, message FROM logs WHERE flow_run_id = ",
        );
        q.push_bind(f.flow_run_id);
        q.push(" AND id > ").push_bind(f.after_id);
        if f.min_level > LogLevel::Debug {
            q.push(" AND level >= ").push_bind(f.min_level.number() as i32);
        }
        if let Some(t) = f.task_run_id {
            q.push(" AND task_run_id = ").push_bind(t);
        }
        q.push(" ORDER BY id LIMIT ").push_bind(f.limit.max(1) as i64);
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter()
            .map(|row| {
                Ok(LogRecord {
                    id: row.try_get("id").db()?,
                    flow_run_id: row.try_get("flow_run_id").db()?,
                    task_run_id: row.try_get("task_run_id").db()?,
                    level: LogLevel::from_number(row.try_get::<i32, _>("level").db()? as i64),
                    timestamp: row.try_get::<DateTime<Utc>, _>("timestamp").db()?,
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
        let rows = sqlx::query(
            "SELECT (EXTRACT(EPOCH FROM created - $1) * 1000000)::BIGINT / $2 AS bucket, state_type, COUNT(*) AS n \
             FROM flow_runs WHERE created >= $1 AND created < $3 GROUP BY bucket, state_type",
        )
        .bind(query.since)
        .bind(query.width_micros())
        .bind(query.until)
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
}

const LIMIT_COLS: &str = "l.name, l.slot_limit, l.slot_decay_per_second, l.created, l.updated, \
     (SELECT COALESCE(SUM(slots), 0) FROM concurrency_leases c WHERE c.name = l.name AND c.expires >= now())::BIGINT AS active";

fn limit_from(row: &PgRow) -> Result<ConcurrencyLimit> {
    Ok(ConcurrencyLimit {
        name: row.try_get("name").db()?,
        limit: row.try_get::<i32, _>("slot_limit").db()? as u32,
        slot_decay_per_second: row.try_get("slot_decay_per_second").db()?,
        active_slots: row.try_get::<i64, _>("active").db()? as u32,
        created: row.try_get("created").db()?,
        updated: row.try_get("updated").db()?,
    })
}

/// Rate-limit slots are not held but decay: renewing or releasing them
/// changes nothing.
const HELD_SLOTS: &str = "name IN (SELECT name FROM concurrency_limits WHERE slot_decay_per_second IS NULL)";

#[async_trait]
impl ConcurrencyStore for PostgresStore {
    async fn set_concurrency_limit(&self, name: &str, limit: u32, decay: Option<f64>) -> Result<ConcurrencyLimit> {
        headwater_core::concurrency::validate_limit(name, limit, decay).map_err(StoreError::Refused)?;
        sqlx::query(
            "INSERT INTO concurrency_limits (name, slot_limit, slot_decay_per_second, created, updated) \
             VALUES ($1, $2, $3, now(), now()) ON CONFLICT (name) DO UPDATE SET slot_limit = excluded.slot_limit, \
             slot_decay_per_second = excluded.slot_decay_per_second, updated = excluded.updated",
        )
        .bind(name)
        .bind(limit as i32)
        .bind(decay)
        .execute(&self.pool)
        .await
        .db()?;
        self.read_concurrency_limit(name).await?.ok_or_else(|| corrupt("concurrency limit", "vanished after writing"))
    }

    async fn read_concurrency_limit(&self, name: &str) -> Result<Option<ConcurrencyLimit>> {
        let row = sqlx::query(&format!("SELECT {LIMIT_COLS} FROM concurrency_limits l WHERE l.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(limit_from).transpose()
    }

    async fn list_concurrency_limits(&self) -> Result<Vec<ConcurrencyLimit>> {
        let rows = sqlx::query(&format!("SELECT {LIMIT_COLS} FROM concurrency_limits l ORDER BY l.name"))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter().map(limit_from).collect()
    }

    async fn delete_concurrency_limit(&self, name: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM concurrency_limits WHERE name = $1").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn reset_concurrency_limit(&self, name: &str) -> Result<u32> {
        let held: Option<i64> = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM concurrency_leases WHERE name = $1 RETURNING slots, expires) \
             SELECT SUM(slots)::BIGINT FROM gone WHERE expires >= now()",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .db()?;
        Ok(held.unwrap_or(0) as u32)
    }

    async fn acquire_slots(&self, request: &SlotRequest) -> Result<Acquired> {
        let names: Vec<String> = request.slots.iter().map(|(n, _)| n.clone()).collect();
        let limited: i64 = sqlx::query_scalar("SELECT count(*) FROM concurrency_limits WHERE name = ANY($1)")
            .bind(&names)
            .fetch_one(&self.pool)
            .await
            .db()?;
        if limited == 0 {
            let lease =
                SlotLease { id: Uuid::now_v7(), slots: vec![], holder: request.holder.clone(), expires: Utc::now() };
            return Ok(Acquired::Granted { lease });
        }
        let mut tx = self.pool.begin().await.db()?;
        let got = leases::acquire(&mut PgLeases(&mut tx), request, Utc::now()).await?;
        tx.commit().await.db()?;
        Ok(got)
    }

    async fn renew_lease(&self, id: Uuid, ttl_ms: u64) -> Result<bool> {
        let until = Utc::now() + chrono::Duration::milliseconds(ttl_ms.min(i64::MAX as u64) as i64);
        let done = sqlx::query(&format!(
            "UPDATE concurrency_leases SET expires = $1 WHERE id = $2 AND expires >= now() AND {HELD_SLOTS}"
        ))
        .bind(until)
        .bind(id)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_lease(&self, id: Uuid) -> Result<bool> {
        let done = sqlx::query(&format!("DELETE FROM concurrency_leases WHERE id = $1 AND {HELD_SLOTS}"))
            .bind(id)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(done.rows_affected() > 0)
    }
}

/// An acquisition in a PostgreSQL transaction: the limits' rows are locked
/// (in name order, so two acquisitions cannot deadlock) until it commits.
struct PgLeases<'c>(&'c mut PgConnection);

#[async_trait]
impl LeaseTx for PgLeases<'_> {
    async fn lock_limits(&mut self, names: &[String]) -> Result<Vec<LimitRow>> {
        let rows = sqlx::query(
            "SELECT name, slot_limit, slot_decay_per_second FROM concurrency_limits WHERE name = ANY($1) \
             ORDER BY name FOR UPDATE",
        )
        .bind(names)
        .fetch_all(&mut *self.0)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(LimitRow {
                    name: r.try_get("name").db()?,
                    limit: r.try_get::<i32, _>("slot_limit").db()? as u32,
                    slot_decay_per_second: r.try_get("slot_decay_per_second").db()?,
                })
            })
            .collect()
    }

    async fn slots_in_use(&mut self, name: &str, now: DateTime<Utc>) -> Result<u32> {
        sqlx::query("DELETE FROM concurrency_leases WHERE name = $1 AND expires < $2")
            .bind(name)
            .bind(now)
            .execute(&mut *self.0)
            .await
            .db()?;
        let n: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(slots), 0)::BIGINT FROM concurrency_leases WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *self.0)
                .await
                .db()?;
        Ok(n as u32)
    }

    async fn insert_lease(&mut self, lease: &SlotLease, name: &str, slots: u32, expires: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO concurrency_leases (id, name, slots, holder, expires) VALUES ($1, $2, $3, $4, $5)")
            .bind(lease.id)
            .bind(name)
            .bind(slots as i32)
            .bind(&lease.holder)
            .bind(expires)
            .execute(&mut *self.0)
            .await
            .db()?;
        Ok(())
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
