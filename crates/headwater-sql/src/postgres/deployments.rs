//! Deployments and the run queue: scheduled runs enqueued, due runs claimed (the claim transaction). (PostgreSQL)

use super::*;

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
        headwater_store::check_run_counts(runs.iter().map(|r| (r.name.as_str(), r.run_count)))?;
        let mut tx = self.pool.begin().await.db()?;
        let n = enqueue_in(&mut tx, runs).await?;
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

    async fn waiting_runs(&self) -> Result<Vec<headwater_store::WaitingRuns>> {
        let rows = sqlx::query(crate::columns::WAITING_RUNS).fetch_all(&self.pool).await.db()?;
        rows.iter().map(waiting_runs_from).collect()
    }
}

/// Inserts new runs (a run whose id or idempotency key exists is left
/// alone) with their first state, inside the caller's transaction.
pub(super) async fn enqueue_in(conn: &mut PgConnection, runs: &[FlowRun]) -> Result<usize> {
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
    Ok(n)
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
            Active::Backfill(id) => {
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM flow_runs WHERE backfill_id = $1 AND {live}"))
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

    async fn lock_backfill(&mut self, id: Uuid) -> Result<Option<claim::BackfillLimit>> {
        let row = sqlx::query("SELECT spec, cancelled FROM backfills WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *self.0)
            .await
            .db()?;
        row.map(|r| {
            let Json(b): Json<headwater_core::partition::Backfill> = r.try_get("spec").db()?;
            let cancelled: Option<DateTime<Utc>> = r.try_get("cancelled").db()?;
            Ok(claim::BackfillLimit { max_concurrent: b.max_concurrent, cancelled: cancelled.is_some() })
        })
        .transpose()
    }

    async fn write(&mut self, batch: &WriteBatch) -> Result<()> {
        write_batch(self.0, batch).await
    }
}
