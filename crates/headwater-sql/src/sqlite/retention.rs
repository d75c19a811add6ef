//! Retention: old history deleted a small batch per transaction. (SQLite)

use super::*;
use crate::columns::{prune_statement, prune_with_runs, PRUNE_WITH_RUNS};
use headwater_core::retention::PruneKind;
use headwater_store::HistoryPruner;

#[async_trait]
impl HistoryPruner for SqliteStore {
    async fn prune(&self, kind: PruneKind, before: DateTime<Utc>, limit: u32, dry_run: bool) -> Result<u64> {
        let (sql, takes_limit) = prune_statement(kind, dry_run);
        let limit = if dry_run { i64::MAX } else { i64::from(limit.max(1)) };
        if dry_run {
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(micros(before));
            if takes_limit {
                q = q.bind(limit);
            }
            return Ok(q.fetch_one(&self.pool).await.db()?.max(0) as u64);
        }
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let deleted = if kind == PruneKind::Runs {
            let ids: Vec<String> =
                sqlx::query_scalar(&sql).bind(micros(before)).bind(limit).fetch_all(&mut *tx).await.db()?;
            let ids: Vec<Uuid> = ids.iter().filter_map(|i| Uuid::parse_str(i).ok()).collect();
            for statement in PRUNE_WITH_RUNS {
                let mut q = QueryBuilder::<Sqlite>::new("");
                prune_with_runs(&mut q, statement, &ids, |q, id| {
                    q.push_bind(id.to_string());
                });
                if !ids.is_empty() {
                    q.build().persistent(false).execute(&mut *tx).await.db()?;
                }
            }
            ids.len() as u64
        } else {
            sqlx::query(&sql).bind(micros(before)).bind(limit).execute(&mut *tx).await.db()?.rows_affected()
        };
        tx.commit().await.db()?;
        Ok(deleted)
    }
}

impl SqliteStore {
    /// Rewrites the file without its free pages (after a large prune). SQLite
    /// reuses freed pages by itself; this gives the space back to the disk,
    /// holding the write lock while it runs.
    pub async fn vacuum(&self) -> Result<()> {
        let _writing = self.writer.lock().await;
        sqlx::query("VACUUM").execute(&self.pool).await.db()?;
        Ok(())
    }
}
