//! Work pools, their queues and workers' heartbeats. (SQLite)

use super::*;

#[async_trait]
impl WorkPoolStore for SqliteStore {
    async fn apply_work_pool(&self, p: &WorkPool) -> Result<WorkPool> {
        headwater_core::work_pool::validate_pool(p).map_err(StoreError::Refused)?;
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
        headwater_core::work_pool::validate_queue(q).map_err(StoreError::Refused)?;
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
        rows.iter().map(worker_from).collect()
    }
}
