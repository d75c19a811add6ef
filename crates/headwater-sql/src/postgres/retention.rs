//! Retention: old history deleted a small batch per transaction. (PostgreSQL)

use super::*;
use crate::columns::{prune_statement, prune_with_runs, PRUNE_WITH_RUNS};
use headwater_core::retention::PruneKind;
use headwater_store::HistoryPruner;

#[async_trait]
impl HistoryPruner for PostgresStore {
    async fn prune(&self, kind: PruneKind, before: DateTime<Utc>, limit: u32, dry_run: bool) -> Result<u64> {
        let (sql, takes_limit) = prune_statement(kind, dry_run);
        let limit = if dry_run { i64::MAX } else { i64::from(limit.max(1)) };
        if dry_run {
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(before);
            if takes_limit {
                q = q.bind(limit);
            }
            return Ok(q.fetch_one(&self.pool).await.db()?.max(0) as u64);
        }
        let mut tx = self.pool.begin().await.db()?;
        let deleted = if kind == PruneKind::Runs {
            // SKIP LOCKED: two servers pruning at once take different runs,
            // and a run being written to is left for the next pass.
            let ids: Vec<Uuid> = sqlx::query_scalar(&format!("{sql} FOR UPDATE SKIP LOCKED"))
                .bind(before)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .db()?;
            for statement in PRUNE_WITH_RUNS {
                let mut q = QueryBuilder::<Postgres>::new("");
                prune_with_runs(&mut q, statement, &ids, |q, id| {
                    q.push_bind(id);
                });
                if !ids.is_empty() {
                    q.build().persistent(false).execute(&mut *tx).await.db()?;
                }
            }
            ids.len() as u64
        } else {
            sqlx::query(&sql).bind(before).bind(limit).execute(&mut *tx).await.db()?.rows_affected()
        };
        tx.commit().await.db()?;
        Ok(deleted)
    }
}
