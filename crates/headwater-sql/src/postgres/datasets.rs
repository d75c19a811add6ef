//! The lake's catalog: datasets and their partitions' versions. (PostgreSQL)

use headwater_core::partition::DatasetPolicy;
use headwater_core::{RunWrite, SourceCheck, VersionRef};
use headwater_store::MAX_RUNS_ASKED;

use super::*;

#[async_trait]
impl DatasetStore for PostgresStore {
    async fn record_dataset_write(&self, w: &DatasetVersion, allow_evolution: bool) -> Result<DatasetVersion> {
        let mut tx = self.pool.begin().await.db()?;
        // Writers of one dataset take turns (the schema check and the
        // version number depend on what the others wrote).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(&w.dataset).execute(&mut *tx).await.db()?;
        let current: Option<Json<Vec<headwater_core::Column>>> =
            sqlx::query_scalar("SELECT schema FROM datasets WHERE name = $1")
                .bind(&w.dataset)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let current = current.map(|j| j.0).unwrap_or_default();
        let schema = headwater_core::dataset::check_schema(&w.dataset, &current, &w.schema, allow_evolution)
            .map_err(StoreError::Refused)?;
        sqlx::query(
            "INSERT INTO datasets (name, schema, created, updated) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET schema = excluded.schema, updated = excluded.updated",
        )
        .bind(&w.dataset)
        .bind(Json(&schema))
        .bind(w.written)
        .execute(&mut *tx)
        .await
        .db()?;
        let last: Option<i32> =
            sqlx::query_scalar("SELECT MAX(version) FROM dataset_versions WHERE dataset = $1 AND partition = $2")
                .bind(&w.dataset)
                .bind(&w.partition)
                .fetch_one(&mut *tx)
                .await
                .db()?;
        let mut stored = w.clone();
        stored.version = last.unwrap_or(0) as u32 + 1;
        // A new version's source has not been looked at since.
        stored.source_check = None;
        sqlx::query(
            "INSERT INTO dataset_versions (dataset, partition, version, location, rows, bytes, schema, flow_run_id, written, \
             inputs, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&stored.dataset)
        .bind(&stored.partition)
        .bind(stored.version as i32)
        .bind(&stored.location)
        .bind(stored.rows as i64)
        .bind(stored.bytes as i64)
        .bind(Json(&stored.schema))
        .bind(stored.flow_run_id)
        .bind(stored.written)
        .bind(Json(&stored.inputs))
        .bind(stored.source.as_ref().map(Json))
        .execute(&mut *tx)
        .await.db()?;
        tx.commit().await.db()?;
        Ok(stored)
    }

    async fn list_datasets(&self) -> Result<Vec<Dataset>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM datasets ORDER BY name").fetch_all(&self.pool).await.db()?;
        let mut out = Vec::new();
        for n in names {
            if let Some(d) = self.read_dataset(&n).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    async fn read_dataset(&self, name: &str) -> Result<Option<Dataset>> {
        let Some(row) =
            sqlx::query("SELECT * FROM datasets WHERE name = $1").bind(name).fetch_optional(&self.pool).await.db()?
        else {
            return Ok(None);
        };
        let partitions = self.list_partitions(name).await?;
        let mut d = dataset_summary(
            name.to_string(),
            row.try_get::<Json<Vec<headwater_core::Column>>, _>("schema").db()?.0,
            row.try_get("created").db()?,
            row.try_get("updated").db()?,
            &partitions,
        );
        d.policy = crate::dialect::Cols::opt_json(&row, "policy", "dataset policy")?;
        Ok(Some(d))
    }

    async fn list_partitions(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (partition) * FROM dataset_versions WHERE dataset = $1 \
             ORDER BY partition, version DESC",
        )
        .bind(dataset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(dataset_version_from).collect()
    }

    async fn versions_written_by(&self, runs: &[Uuid]) -> Result<Vec<RunWrite>> {
        let mut out = Vec::new();
        for chunk in runs.chunks(MAX_RUNS_ASKED) {
            let mut q = QueryBuilder::<Postgres>::new("");
            crate::columns::versions_written_by(&mut q, chunk, |q, id| {
                q.push_bind(id);
            });
            for row in q.build().persistent(false).fetch_all(&self.pool).await.db()? {
                out.push(run_write_from(&row)?);
            }
        }
        Ok(out)
    }

    async fn set_dataset_policy(&self, name: &str, policy: Option<&DatasetPolicy>, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO datasets (name, schema, created, updated, policy) VALUES ($1, '[]', $2, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET policy = excluded.policy, updated = excluded.updated",
        )
        .bind(name)
        .bind(now)
        .bind(policy.map(Json))
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn record_source_check(&self, v: &VersionRef, check: &SourceCheck) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE dataset_versions SET source_check = $1 WHERE dataset = $2 AND partition = $3 AND version = $4",
        )
        .bind(Json(check))
        .bind(&v.dataset)
        .bind(&v.partition)
        .bind(v.version as i32)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn dataset_history(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        let rows = sqlx::query(
            "SELECT * FROM dataset_versions WHERE dataset = $1 ORDER BY written DESC, partition, version DESC",
        )
        .bind(dataset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(dataset_version_from).collect()
    }
}
