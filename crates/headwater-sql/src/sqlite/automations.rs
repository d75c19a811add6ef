//! Automations and the automation engine's outbox, in SQLite.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::{Automation, Delivery, DeliveryOutcome, RunKind, StateRecord};
use sqlx::Row;
use uuid::Uuid;

use super::{json_text, micros, uuid_col, SqliteStore};
use crate::columns::{corrupt, AUTOMATIONS_WITH_STATUS, DELIVERY_COLS, HISTORY_STATE};
use crate::rows::{automation_from, delivery_from, state_from};
use headwater_store::Result;

use crate::error::Db;
use headwater_store::{AutomationOutbox, AutomationStore};

#[async_trait]
impl AutomationStore for SqliteStore {
    async fn apply_automation(&self, a: &Automation) -> Result<Automation> {
        let writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO automations (id, name, description, enabled, trigger, actions, created, updated) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET description = excluded.description, \
             enabled = excluded.enabled, trigger = excluded.trigger, actions = excluded.actions, \
             updated = excluded.updated",
        )
        .bind(a.id.to_string())
        .bind(&a.name)
        .bind(&a.description)
        .bind(a.enabled)
        .bind(json_text(&a.trigger))
        .bind(json_text(&a.actions))
        .bind(micros(a.created))
        .bind(micros(a.updated))
        .execute(&self.pool)
        .await
        .db()?;
        drop(writing);
        self.read_automation(&a.name).await?.ok_or_else(|| corrupt("automation", "vanished after writing"))
    }

    async fn list_automations(&self) -> Result<Vec<Automation>> {
        let rows =
            sqlx::query(&format!("{AUTOMATIONS_WITH_STATUS} ORDER BY a.name")).fetch_all(&self.pool).await.db()?;
        rows.iter().map(automation_from).collect()
    }

    async fn read_automation(&self, name: &str) -> Result<Option<Automation>> {
        let row = sqlx::query(&format!("{AUTOMATIONS_WITH_STATUS} WHERE a.name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(automation_from).transpose()
    }

    async fn set_automation_enabled(&self, name: &str, enabled: bool) -> Result<Option<Automation>> {
        let writing = self.writer.lock().await;
        sqlx::query("UPDATE automations SET enabled = ?, updated = ? WHERE name = ?")
            .bind(enabled)
            .bind(micros(Utc::now()))
            .bind(name)
            .execute(&self.pool)
            .await
            .db()?;
        drop(writing);
        self.read_automation(name).await
    }

    async fn delete_automation(&self, name: &str) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query("DELETE FROM automations WHERE name = ?").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_deliveries(&self, automation: &str, limit: u32) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM automation_deliveries d JOIN automations a ON a.id = d.automation_id \
             WHERE a.name = ? ORDER BY d.created DESC, d.id DESC LIMIT ?"
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
impl AutomationOutbox for SqliteStore {
    async fn active_automations(&self) -> Result<Vec<Automation>> {
        // The status columns read as zeros: counting deliveries is for people.
        let rows = sqlx::query(
            "SELECT a.*, 0 AS n_delivered, 0 AS n_pending, 0 AS n_failed, \
             NULL AS last_delivered, NULL AS last_error, NULL AS last_error_at FROM automations a \
             WHERE a.enabled = 1 ORDER BY a.name",
        )
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(automation_from).collect()
    }

    async fn read_state_events(&self, after: i64, limit: u32) -> Result<Vec<(i64, StateRecord)>> {
        let rows = sqlx::query("SELECT * FROM run_states WHERE id > ? AND run_kind = 'flow' ORDER BY id LIMIT ?")
            .bind(after)
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("run_kind").db()?;
                let record = StateRecord {
                    run_id: uuid_col(row, "run_id")?,
                    kind: RunKind::from_str(&kind).map_err(|e| corrupt("run_kind", e))?,
                    state: state_from(row, HISTORY_STATE)?,
                };
                Ok((row.try_get("id").db()?, record))
            })
            .collect()
    }

    async fn last_state_event(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM run_states").fetch_one(&self.pool).await.db()?)
    }

    async fn read_cursor(&self, name: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT value FROM engine_cursors WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?)
    }

    async fn write_cursor(&self, name: &str, value: i64) -> Result<()> {
        let _writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO engine_cursors (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await.db()?;
        Ok(())
    }

    async fn enqueue_deliveries(&self, deliveries: &[Delivery]) -> Result<usize> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let mut added = 0;
        for d in deliveries {
            // Not for an automation deleted meanwhile; not twice for one
            // (automation, event, action).
            let done = sqlx::query(
                "INSERT INTO automation_deliveries (id, automation_id, event_key, action_index, action, event, status, \
                 attempts, next_attempt, last_error, delivered, created) \
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM automations WHERE id = ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(d.id.to_string())
            .bind(d.automation_id.to_string())
            .bind(&d.event.key)
            .bind(i64::from(d.action_index))
            .bind(json_text(&d.action))
            .bind(json_text(&d.event))
            .bind(d.status.as_str())
            .bind(i64::from(d.attempts))
            .bind(micros(d.next_attempt))
            .bind(&d.last_error)
            .bind(d.delivered.map(micros))
            .bind(micros(d.created))
            .bind(d.automation_id.to_string())
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
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM automation_deliveries d JOIN automations a ON a.id = d.automation_id \
             WHERE d.status = 'pending' AND d.next_attempt <= ? ORDER BY d.next_attempt LIMIT ?"
        ))
        .bind(micros(now))
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let mut claimed: Vec<Delivery> = rows.iter().map(delivery_from).collect::<Result<_>>()?;
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        for d in &mut claimed {
            sqlx::query("UPDATE automation_deliveries SET next_attempt = ? WHERE id = ?")
                .bind(micros(until))
                .bind(d.id.to_string())
                .execute(&mut *tx)
                .await
                .db()?;
            d.next_attempt = until;
        }
        tx.commit().await.db()?;
        Ok(claimed)
    }

    async fn finish_delivery(&self, id: Uuid, outcome: &DeliveryOutcome) -> Result<()> {
        let _writing = self.writer.lock().await;
        let now = micros(Utc::now());
        let q = match outcome {
            DeliveryOutcome::Delivered { at } => sqlx::query(
                "UPDATE automation_deliveries SET status = 'delivered', attempts = attempts + 1, delivered = ? \
                 WHERE id = ?",
            )
            .bind(micros(*at)),
            DeliveryOutcome::Retry { at, error } => sqlx::query(
                "UPDATE automation_deliveries SET attempts = attempts + 1, next_attempt = ?, last_error = ?, \
                 last_error_at = ? WHERE id = ?",
            )
            .bind(micros(*at))
            .bind(error)
            .bind(now),
            DeliveryOutcome::Failed { error } => sqlx::query(
                "UPDATE automation_deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?, \
                 last_error_at = ? WHERE id = ?",
            )
            .bind(error)
            .bind(now),
        };
        q.bind(id.to_string()).execute(&self.pool).await.db()?;
        Ok(())
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query(&format!(
            "DELETE FROM automation_deliveries WHERE id IN (SELECT d.id {})",
            crate::columns::PRUNE_DELIVERIES_WHERE
        ))
        .bind(micros(before))
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }
}
