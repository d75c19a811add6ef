//! Concurrency limits and the leases that hold their slots (the acquisition transaction). (SQLite)

use super::*;

const LIMIT_COLS: &str = "l.name, l.slot_limit, l.slot_decay_per_second, l.created, l.updated, \
     (SELECT COALESCE(SUM(slots), 0) FROM concurrency_leases c WHERE c.name = l.name AND c.expires >= ?) AS active";

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
        let until = now + headwater_core::concurrency::lease_ttl(ttl_ms).map_err(StoreError::Refused)?;
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
