//! Backfills and partitions' latest runs. (PostgreSQL)

use headwater_core::partition::Backfill;
use headwater_store::BackfillStore;
use sqlx::postgres::PgRow;

use super::deployments::enqueue_in;
use super::*;

fn backfill_from(row: &PgRow) -> Result<Backfill> {
    let Json(mut b): Json<Backfill> = row.try_get("spec").db()?;
    b.cancelled = row.try_get("cancelled").db()?;
    Ok(b)
}

#[async_trait]
impl BackfillStore for PostgresStore {
    async fn save_backfill(&self, b: &Backfill, runs: &[FlowRun]) -> Result<usize> {
        let mut tx = self.pool.begin().await.db()?;
        sqlx::query(
            "INSERT INTO backfills (id, name, deployment, spec, created, updated, cancelled) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated = excluded.updated, cancelled = excluded.cancelled",
        )
        .bind(b.id)
        .bind(&b.name)
        .bind(&b.deployment)
        .bind(Json(b))
        .bind(b.created)
        .bind(b.updated)
        .bind(b.cancelled)
        .execute(&mut *tx)
        .await
        .db()?;
        let n = enqueue_in(&mut tx, runs).await?;
        tx.commit().await.db()?;
        Ok(n)
    }

    async fn list_backfills(&self, deployment: Option<&str>) -> Result<Vec<Backfill>> {
        let rows = sqlx::query(
            "SELECT spec, cancelled FROM backfills WHERE $1::text IS NULL OR deployment = $1 ORDER BY created DESC, id",
        )
        .bind(deployment)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(backfill_from).collect()
    }

    async fn read_backfill(&self, name_or_id: &str) -> Result<Option<Backfill>> {
        let id = Uuid::parse_str(name_or_id).ok();
        let row = sqlx::query("SELECT spec, cancelled FROM backfills WHERE name = $1 OR id = $2")
            .bind(name_or_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(backfill_from).transpose()
    }

    async fn cancel_backfill(&self, id: Uuid, at: DateTime<Utc>) -> Result<Option<Backfill>> {
        sqlx::query("UPDATE backfills SET cancelled = COALESCE(cancelled, $1), updated = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .db()?;
        self.read_backfill(&id.to_string()).await
    }

    async fn latest_partition_runs(&self, deployment_id: Uuid) -> Result<Vec<FlowRun>> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT ON (partition_key) {FLOW_RUN_COLS} FROM flow_runs \
             WHERE deployment_id = $1 AND partition_key IS NOT NULL ORDER BY partition_key, created DESC, id DESC"
        ))
        .bind(deployment_id)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(flow_run_from).collect()
    }
}
