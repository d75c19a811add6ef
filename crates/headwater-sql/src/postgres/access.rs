//! API keys and the audit log. (PostgreSQL)

use headwater_core::{ApiKey, AuditEntry, Role};
use headwater_store::access::{hash_secret, issue, name_taken};
use headwater_store::{AccessStore, AuditFilter, IssuedKey};

use super::*;
use crate::dialect::Cols;

#[async_trait]
impl AccessStore for PostgresStore {
    async fn issue_api_key(&self, name: &str, role: Role, at: DateTime<Utc>) -> Result<IssuedKey> {
        let (issued, hash) = issue(name, role, at)?;
        let done = sqlx::query(
            "INSERT INTO api_keys (name, role, hash, prefix, created) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(&hash)
        .bind(&issued.key.prefix)
        .bind(at)
        .execute(&self.pool)
        .await
        .db()?;
        if done.rows_affected() == 0 {
            return Err(name_taken(name));
        }
        Ok(issued)
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(api_key_from).collect()
    }

    async fn revoke_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        let row = sqlx::query("UPDATE api_keys SET revoked = coalesce(revoked, $1) WHERE name = $2 RETURNING *")
            .bind(at)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(api_key_from).transpose()
    }

    async fn find_api_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE hash = $1 AND revoked IS NULL")
            .bind(hash_secret(secret))
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(api_key_from).transpose()
    }

    async fn has_api_keys(&self) -> Result<bool> {
        let row = sqlx::query("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked IS NULL) AS any")
            .fetch_one(&self.pool)
            .await
            .db()?;
        row.flag("any")
    }

    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        for chunk in entries.chunks(MAX_BINDS / 5) {
            let mut q = QueryBuilder::<Postgres>::new("INSERT INTO audit_log (at, key_name, method, path, status) ");
            q.push_values(chunk, |mut b, e| {
                b.push_bind(e.at)
                    .push_bind(&e.key)
                    .push_bind(&e.method)
                    .push_bind(&e.path)
                    .push_bind(i32::from(e.status));
            });
            q.build().execute(&self.pool).await.db()?;
        }
        Ok(())
    }

    async fn read_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT * FROM audit_log WHERE 1 = 1");
        if let Some(key) = &filter.key {
            q.push(" AND key_name = ").push_bind(key);
        }
        if let Some(before) = filter.before {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(filter.limit()));
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(audit_entry_from).collect()
    }
}
