//! Automations and the automation engine's outbox, in PostgreSQL.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::{Automation, Delivery, DeliveryOutcome, RunKind, StateRecord};
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

use super::PostgresStore;
use crate::columns::{corrupt, AUTOMATIONS_WITH_STATUS, DELIVERY_COLS, HISTORY_STATE};
use crate::rows::{automation_from, delivery_from, state_from};
use headwater_store::Result;

use crate::error::Db;
use headwater_store::{AutomationOutbox, AutomationStore};

#[async_trait]
impl AutomationStore for PostgresStore {
    async fn apply_automation(&self, a: &Automation) -> Result<Automation> {
        sqlx::query(
            "INSERT INTO automations (id, name, description, enabled, trigger, actions, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO UPDATE SET \
             description = excluded.description, enabled = excluded.enabled, trigger = excluded.trigger, \
             actions = excluded.actions, updated = excluded.updated",
        )
        .bind(a.id)
        .bind(&a.name)
        .bind(&a.description)
        .bind(a.enabled)
        .bind(Json(&a.trigger))
        .bind(Json(&a.actions))
        .bind(a.created)
        .bind(a.updated)
        .execute(&self.pool)
        .await
        .db()?;
        self.read_automation(&a.name).await?.ok_or_else(|| corrupt("automation", "vanished after writing"))
    }

    async fn list_automations(&self) -> Result<Vec<Automation>> {
        let rows =
            sqlx::query(&format!("{AUTOMATIONS_WITH_STATUS} ORDER BY a.name")).fetch_all(&self.pool).await.db()?;
        rows.iter().map(automation_from).collect()
    }

    async fn read_automation(&self, name: &str) -> Result<Option<Automation>> {
        let row = sqlx::query(&format!("{AUTOMATIONS_WITH_STATUS} WHERE a.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(automation_from).transpose()
    }

    async fn set_automation_enabled(&self, name: &str, enabled: bool) -> Result<Option<Automation>> {
        sqlx::query("UPDATE automations SET enabled = $1, updated = $2 WHERE name = $3")
            .bind(enabled)
            .bind(Utc::now())
            .bind(name)
            .execute(&self.pool)
            .await
            .db()?;
        self.read_automation(name).await
    }

    async fn delete_automation(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM automations WHERE name = $1").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_deliveries(&self, automation: &str, limit: u32) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM automation_deliveries d JOIN automations a ON a.id = d.automation_id \
             WHERE a.name = $1 ORDER BY d.created DESC, d.id DESC LIMIT $2"
        ))
        .bind(automation)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(delivery_from).collect()
    }

    fn outbox(&self) -> Option<&dyn AutomationOutbox> {
        Some(self)
    }
}

#[async_trait]
impl AutomationOutbox for PostgresStore {
    async fn active_automations(&self) -> Result<Vec<Automation>> {
        // The status columns read as zeros: counting deliveries is for people.
        let rows = sqlx::query(
            "SELECT a.*, 0::BIGINT AS n_delivered, 0::BIGINT AS n_pending, 0::BIGINT AS n_failed, \
             NULL::TIMESTAMPTZ AS last_delivered, NULL::TEXT AS last_error, NULL::TIMESTAMPTZ AS last_error_at \
             FROM automations a \
             WHERE a.enabled = TRUE ORDER BY a.name",
        )
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(automation_from).collect()
    }

    async fn read_state_events(&self, after: i64, limit: u32) -> Result<Vec<(i64, StateRecord)>> {
        let rows = sqlx::query("SELECT * FROM run_states WHERE id > $1 AND run_kind = 'flow' ORDER BY id LIMIT $2")
            .bind(after)
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("run_kind").db()?;
                let record = StateRecord {
                    run_id: row.try_get("run_id").db()?,
                    kind: RunKind::from_str(&kind).map_err(|e| corrupt("run_kind", e))?,
                    state: state_from(row, HISTORY_STATE)?,
                };
                Ok((row.try_get("id").db()?, record))
            })
            .collect()
    }

    async fn last_state_event(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0)::BIGINT FROM run_states")
            .fetch_one(&self.pool)
            .await
            .db()?)
    }

    async fn read_cursor(&self, name: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT value FROM engine_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?)
    }

    async fn write_cursor(&self, name: &str, value: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO engine_cursors (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn enqueue_deliveries(&self, deliveries: &[Delivery]) -> Result<usize> {
        let mut tx = self.pool.begin().await.db()?;
        let mut added = 0;
        for d in deliveries {
            // Not for an automation deleted meanwhile; not twice for one
            // (automation, event, action).
            let done = sqlx::query(
                "INSERT INTO automation_deliveries (id, automation_id, event_key, action_index, action, event, status, \
                 attempts, next_attempt, last_error, delivered, created) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
                 WHERE EXISTS (SELECT 1 FROM automations WHERE id = $2) ON CONFLICT DO NOTHING",
            )
            .bind(d.id)
            .bind(d.automation_id)
            .bind(&d.event.key)
            .bind(d.action_index as i32)
            .bind(Json(&d.action))
            .bind(Json(&d.event))
            .bind(d.status.as_str())
            .bind(d.attempts as i32)
            .bind(d.next_attempt)
            .bind(&d.last_error)
            .bind(d.delivered)
            .bind(d.created)
            .execute(&mut *tx)
            .await.db()?;
            added += done.rows_affected() as usize;
        }
        tx.commit().await.db()?;
        Ok(added)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let rows = sqlx::query(&format!(
            "WITH due AS (SELECT id FROM automation_deliveries WHERE status = 'pending' AND next_attempt <= $1 \
               ORDER BY next_attempt LIMIT $2 FOR UPDATE SKIP LOCKED), \
             claimed AS (UPDATE automation_deliveries u SET next_attempt = $3 FROM due WHERE u.id = due.id \
               RETURNING u.*) \
             SELECT {DELIVERY_COLS} FROM claimed d JOIN automations a ON a.id = d.automation_id \
             ORDER BY d.created"
        ))
        .bind(now)
        .bind(i64::from(limit.max(1)))
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(delivery_from).collect()
    }

    async fn finish_delivery(&self, id: Uuid, outcome: &DeliveryOutcome) -> Result<()> {
        let now = Utc::now();
        let q = match outcome {
            DeliveryOutcome::Delivered { at } => sqlx::query(
                "UPDATE automation_deliveries SET status = 'delivered', attempts = attempts + 1, delivered = $1 \
                 WHERE id = $2",
            )
            .bind(*at),
            DeliveryOutcome::Retry { at, error } => sqlx::query(
                "UPDATE automation_deliveries SET attempts = attempts + 1, next_attempt = $1, last_error = $2, \
                 last_error_at = $3 WHERE id = $4",
            )
            .bind(*at)
            .bind(error)
            .bind(now),
            DeliveryOutcome::Failed { error } => sqlx::query(
                "UPDATE automation_deliveries SET status = 'failed', attempts = attempts + 1, last_error = $1, \
                 last_error_at = $2 WHERE id = $3",
            )
            .bind(error)
            .bind(now),
        };
        q.bind(id).execute(&self.pool).await.db()?;
        Ok(())
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(&format!(
            "DELETE FROM automation_deliveries WHERE id IN (SELECT d.id {})",
            crate::columns::PRUNE_DELIVERIES_WHERE
        ))
        .bind(before)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }
}
