//! Artifacts. (PostgreSQL)

use super::*;

#[async_trait]
impl ArtifactStore for PostgresStore {
    async fn list_artifacts(&self, f: &ArtifactFilter) -> Result<Vec<Artifact>> {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {ARTIFACT_COLS} FROM artifacts a WHERE TRUE"));
        if let Some(key) = &f.key {
            q.push(" AND key = ").push_bind(key.as_str());
        }
        if let Some(run) = f.flow_run_id {
            q.push(" AND flow_run_id = ").push_bind(run);
        }
        if f.latest_only {
            q.push(LATEST_ARTIFACTS_ONLY);
        }
        q.push(" ORDER BY created DESC, id DESC LIMIT ").push_bind(i64::from(f.limit.max(1)));
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(artifact_from).collect()
    }

    async fn delete_artifacts(&self, key: &str) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM artifacts WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .db()?
            .rows_affected())
    }
}
