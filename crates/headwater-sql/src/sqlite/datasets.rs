//! The lake's catalog: datasets and their partitions' versions. (SQLite)

use headwater_core::partition::DatasetPolicy;
use headwater_core::{RunWrite, SourceCheck, VersionRef};
use headwater_store::MAX_RUNS_ASKED;

use super::*;

#[async_trait]
impl DatasetStore for SqliteStore {
    async fn record_dataset_write(&self, w: &DatasetVersion, allow_evolution: bool) -> Result<DatasetVersion> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let current: Option<String> = sqlx::query_scalar("SELECT schema FROM datasets WHERE name = ?")
            .bind(&w.dataset)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let current: Vec<headwater_core::Column> = match current {
            Some(s) => serde_json::from_str(&s).map_err(|e| corrupt("dataset schema", e))?,
            None => Vec::new(),
        };
        let schema = headwater_core::dataset::check_schema(&w.dataset, &current, &w.schema, allow_evolution)
            .map_err(StoreError::Refused)?;
        sqlx::query(
            "INSERT INTO datasets (name, schema, created, updated) VALUES (?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET schema = excluded.schema, updated = excluded.updated",
        )
        .bind(&w.dataset)
        .bind(json_text(&schema))
        .bind(micros(w.written))
        .bind(micros(w.written))
        .execute(&mut *tx)
        .await
        .db()?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM dataset_versions WHERE dataset = ? AND partition = ?")
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
             inputs, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&stored.dataset)
        .bind(&stored.partition)
        .bind(i64::from(stored.version))
        .bind(&stored.location)
        .bind(stored.rows as i64)
        .bind(stored.bytes as i64)
        .bind(json_text(&stored.schema))
        .bind(stored.flow_run_id.map(|u| u.to_string()))
        .bind(micros(stored.written))
        .bind(json_text(&stored.inputs))
        .bind(stored.source.as_ref().map(json_text))
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
            sqlx::query("SELECT * FROM datasets WHERE name = ?").bind(name).fetch_optional(&self.pool).await.db()?
        else {
            return Ok(None);
        };
        let schema: String = row.try_get("schema").db()?;
        let partitions = self.list_partitions(name).await?;
        let mut d = dataset_summary(
            name.to_string(),
            serde_json::from_str(&schema).map_err(|e| corrupt("dataset schema", e))?,
            from_micros(row.try_get("created").db()?),
            from_micros(row.try_get("updated").db()?),
            &partitions,
        );
        d.policy = crate::dialect::Cols::opt_json(&row, "policy", "dataset policy")?;
        Ok(Some(d))
    }

    async fn list_partitions(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        let rows = sqlx::query(
            "SELECT * FROM dataset_versions v WHERE dataset = ? AND version = \
             (SELECT MAX(version) FROM dataset_versions w WHERE w.dataset = v.dataset AND w.partition = v.partition) \
             ORDER BY partition",
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
            let mut q = QueryBuilder::<Sqlite>::new("");
            crate::columns::versions_written_by(&mut q, chunk, |q, id| {
                q.push_bind(id.to_string());
            });
            for row in q.build().persistent(false).fetch_all(&self.pool).await.db()? {
                out.push(run_write_from(&row)?);
            }
        }
        Ok(out)
    }

    async fn set_dataset_policy(&self, name: &str, policy: Option<&DatasetPolicy>, now: DateTime<Utc>) -> Result<()> {
        let _writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO datasets (name, schema, created, updated, policy) VALUES (?, '[]', ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET policy = excluded.policy, updated = excluded.updated",
        )
        .bind(name)
        .bind(micros(now))
        .bind(micros(now))
        .bind(policy.map(json_text))
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn record_source_check(&self, v: &VersionRef, check: &SourceCheck) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query(
            "UPDATE dataset_versions SET source_check = ? WHERE dataset = ? AND partition = ? AND version = ?",
        )
        .bind(json_text(check))
        .bind(&v.dataset)
        .bind(&v.partition)
        .bind(i64::from(v.version))
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn dataset_history(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        let rows = sqlx::query(
            "SELECT * FROM dataset_versions WHERE dataset = ? ORDER BY written DESC, partition, version DESC",
        )
        .bind(dataset)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(dataset_version_from).collect()
    }
}
