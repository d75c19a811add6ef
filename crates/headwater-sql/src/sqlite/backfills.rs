//! Backfills and partitions' latest runs. (SQLite)

use headwater_core::partition::Backfill;
use headwater_store::BackfillStore;

use super::deployments::enqueue_in;
use super::*;

fn backfill_from(row: &SqliteRow) -> Result<Backfill> {
    let spec: String = row.try_get("spec").db()?;
    let mut b: Backfill = serde_json::from_str(&spec).map_err(|e| corrupt("backfill", e))?;
    b.cancelled = row.try_get::<Option<i64>, _>("cancelled").db()?.map(from_micros);
    Ok(b)
}

#[async_trait]
impl BackfillStore for SqliteStore {
    async fn save_backfill(&self, b: &Backfill, runs: &[FlowRun]) -> Result<usize> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        sqlx::query(
            "INSERT INTO backfills (id, name, deployment, spec, created, updated, cancelled) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET spec = excluded.spec, updated = excluded.updated, cancelled = excluded.cancelled",
        )
        .bind(b.id.to_string())
        .bind(&b.name)
        .bind(&b.deployment)
        .bind(json_text(b))
        .bind(micros(b.created))
        .bind(micros(b.updated))
        .bind(b.cancelled.map(micros))
        .execute(&mut *tx)
        .await
        .db()?;
        let n = enqueue_in(&mut tx, runs).await?;
        tx.commit().await.db()?;
        Ok(n)
    }

    async fn list_backfills(&self, deployment: Option<&str>) -> Result<Vec<Backfill>> {
        let rows = sqlx::query(
            "SELECT spec, cancelled FROM backfills WHERE ? IS NULL OR deployment = ? ORDER BY created DESC, id",
        )
        .bind(deployment)
        .bind(deployment)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(backfill_from).collect()
    }

    async fn read_backfill(&self, name_or_id: &str) -> Result<Option<Backfill>> {
        let row = sqlx::query("SELECT spec, cancelled FROM backfills WHERE name = ? OR id = ?")
            .bind(name_or_id)
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(backfill_from).transpose()
    }

    async fn cancel_backfill(&self, id: Uuid, at: DateTime<Utc>) -> Result<Option<Backfill>> {
        let writing = self.writer.lock().await;
        sqlx::query("UPDATE backfills SET cancelled = COALESCE(cancelled, ?), updated = ? WHERE id = ?")
            .bind(micros(at))
            .bind(micros(at))
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .db()?;
        drop(writing);
        self.read_backfill(&id.to_string()).await
    }

    async fn latest_partition_runs(&self, deployment_id: Uuid) -> Result<Vec<FlowRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE deployment_id = ? AND partition_key IS NOT NULL \
             ORDER BY partition_key, created DESC, id DESC"
        ))
        .bind(deployment_id.to_string())
        .fetch_all(&self.pool)
        .await
        .db()?;
        let mut latest: Vec<FlowRun> = Vec::new();
        for row in &rows {
            let run = flow_run_from(row)?;
            if latest.last().map(|l| &l.partition) != Some(&run.partition) {
                latest.push(run);
            }
        }
        Ok(latest)
    }
}
