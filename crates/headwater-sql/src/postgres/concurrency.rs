//! Concurrency limits and the leases that hold their slots (the acquisition transaction). (PostgreSQL)

use super::*;

const LIMIT_COLS: &str = "l.name, l.slot_limit, l.slot_decay_per_second, l.created, l.updated, \
     (SELECT COALESCE(SUM(slots), 0) FROM concurrency_leases c WHERE c.name = l.name AND c.expires >= now())::BIGINT AS active";

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
        let until = Utc::now() + headwater_core::concurrency::lease_ttl(ttl_ms).map_err(StoreError::Refused)?;
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
