//! Deployments and the run queue: scheduled runs enqueued, due runs claimed (the claim transaction). (SQLite)

use super::*;

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
        headwater_store::check_run_counts(runs.iter().map(|r| (r.name.as_str(), r.run_count)))?;
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let n = enqueue_in(&mut tx, runs).await?;
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

    async fn waiting_runs(&self) -> Result<Vec<headwater_store::WaitingRuns>> {
        let rows = sqlx::query(crate::columns::WAITING_RUNS).fetch_all(&self.pool).await.db()?;
        rows.iter().map(waiting_runs_from).collect()
    }
}

/// Inserts new runs (a run whose id or idempotency key exists is left
/// alone) with their first state, inside the caller's transaction.
pub(super) async fn enqueue_in(conn: &mut SqliteConnection, runs: &[FlowRun]) -> Result<usize> {
    let mut created = Vec::new();
    for r in &claim::with_queue(runs) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO flow_runs ({FLOW_RUN_COLS}) "));
        q.push_values(std::iter::once(r), push_flow_run);
        q.push(" ON CONFLICT DO NOTHING");
        if q.build().execute(&mut *conn).await.db()?.rows_affected() == 1 {
            created.push(StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() });
        }
    }
    let n = created.len();
    write_batch(conn, &WriteBatch { states: created, ..Default::default() }).await?;
    Ok(n)
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
            Active::Backfill(id) => {
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM flow_runs WHERE backfill_id = ? AND {live}"))
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

    async fn lock_backfill(&mut self, id: Uuid) -> Result<Option<claim::BackfillLimit>> {
        let row = sqlx::query("SELECT spec, cancelled FROM backfills WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *self.0)
            .await
            .db()?;
        row.map(|r| {
            let spec: String = r.try_get("spec").db()?;
            let b: headwater_core::partition::Backfill =
                serde_json::from_str(&spec).map_err(|e| corrupt("backfill", e))?;
            let cancelled: Option<i64> = r.try_get("cancelled").db()?;
            Ok(claim::BackfillLimit { max_concurrent: b.max_concurrent, cancelled: cancelled.is_some() })
        })
        .transpose()
    }

    async fn write(&mut self, batch: &WriteBatch) -> Result<()> {
        write_batch(self.0, batch).await
    }
}
