//! Flow runs, task runs, their states and logs: the batch writer, the reaper's queries and every read. (SQLite)

use super::*;
use headwater_store::reports::{check_batch, BatchOutcome};
use std::collections::HashMap;

#[async_trait]
impl RunRecorder for SqliteStore {
    async fn record(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        batch.check_bounds()?;
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        write_batch(&mut tx, batch).await?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn record_checked(&self, batch: &WriteBatch) -> Result<BatchOutcome> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        batch.check_bounds()?;
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let mut current = HashMap::new();
        for mut q in crate::columns::recorded_states(
            batch,
            |q, id| {
                q.push_bind(id.to_string());
            },
            "",
        ) {
            for row in q.build().persistent(false).fetch_all(&mut *tx).await.db()? {
                let (id, state) = recorded_state_from(&row)?;
                current.insert(id, state);
            }
        }
        let (written, refused) = check_batch(batch, &current);
        write_batch(&mut tx, &written).await?;
        tx.commit().await.db()?;
        Ok(BatchOutcome { refused })
    }
}

#[async_trait]
impl RunReaper for SqliteStore {
    async fn crash_stale_runs(&self, cutoff: DateTime<Utc>) -> Result<Vec<FlowRun>> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let conn: &mut SqliteConnection = &mut tx;
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE state_type IN ({LIVE_STATES}) \
             AND heartbeat IS NOT NULL AND heartbeat < ?"
        ))
        .bind(micros(cutoff))
        .fetch_all(&mut *conn)
        .await
        .db()?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let runs: Vec<FlowRun> = rows.iter().map(flow_run_from).collect::<Result<_>>()?;
        let mut tasks = Vec::new();
        for r in &runs {
            let rows = sqlx::query(&format!(
                "SELECT {TASK_RUN_COLS} FROM task_runs WHERE flow_run_id = ? AND state_type NOT IN ({FINAL_STATES})"
            ))
            .bind(r.id.to_string())
            .fetch_all(&mut *conn)
            .await
            .db()?;
            for row in &rows {
                tasks.push(task_run_from(row)?);
            }
        }
        let batch = crash_batch(runs, tasks, Utc::now());
        write_batch(conn, &batch).await?;
        tx.commit().await.db()?;
        Ok(batch.flow_runs)
    }
}

/// Binds one flow run's columns, in `FLOW_RUN_COLS` order.
pub(super) fn push_flow_run<'q>(mut b: sqlx::query_builder::Separated<'_, 'q, Sqlite, &'static str>, r: &'q FlowRun) {
    b.push_bind(r.id.to_string())
        .push_bind(r.flow_id.to_string())
        .push_bind(r.flow_name.as_str())
        .push_bind(r.name.as_str())
        .push_bind(json_text(&r.parameters))
        .push_bind(json_text(&r.tags))
        .push_bind(r.state.state_type.as_str())
        .push_bind(r.state.name.as_str())
        .push_bind(r.state.message.as_deref())
        .push_bind(micros(r.state.timestamp))
        .push_bind(opt_micros(r.state.scheduled_time))
        .push_bind(r.parent_flow_run_id.map(|u| u.to_string()))
        .push_bind(r.run_count as i64)
        .push_bind(opt_micros(r.start_time))
        .push_bind(opt_micros(r.end_time))
        .push_bind(micros(r.created))
        .push_bind(opt_micros(r.heartbeat))
        .push_bind(r.deployment_id.map(|u| u.to_string()))
        .push_bind(r.work_pool.as_deref())
        .push_bind(r.idempotency_key.as_deref())
        .push_bind(r.work_queue.as_deref())
        .push_bind(r.retry_policy.as_ref().map(json_text))
        .push_bind(r.parent_task_run_id.map(|u| u.to_string()))
        .push_bind(r.partition.as_deref())
        .push_bind(r.backfill_id.map(|u| u.to_string()));
}

/// The filter's conditions (` AND …`) on `flow_runs`; the state lists only
/// where asked for (a merged query puts one value in each branch), the name
/// through its trigram index when `by_name_index`.
fn push_run_conditions<'q>(
    q: &mut QueryBuilder<'q, Sqlite>,
    f: &'q FlowRunFilter,
    states: bool,
    names: bool,
    by_name_index: bool,
) {
    if states && !f.states.is_empty() {
        q.push(" AND state_type IN (");
        let mut sep = q.separated(", ");
        for s in &f.states {
            sep.push_bind(s.as_str());
        }
        q.push(")");
    }
    if names && !f.state_names.is_empty() {
        q.push(" AND state_name IN (");
        let mut sep = q.separated(", ");
        for s in &f.state_names {
            sep.push_bind(s.as_str());
        }
        q.push(")");
    }
    if let Some(name) = &f.flow_name {
        q.push(" AND flow_name = ").push_bind(name.as_str());
    }
    if let Some(parent) = f.parent_flow_run_id {
        q.push(" AND parent_flow_run_id = ").push_bind(parent.to_string());
    }
    if let Some(parent) = f.parent_task_run_id {
        q.push(" AND parent_task_run_id = ").push_bind(parent.to_string());
    }
    if let Some(d) = f.deployment_id {
        q.push(" AND deployment_id = ").push_bind(d.to_string());
    }
    if let Some(b) = f.backfill_id {
        q.push(" AND backfill_id = ").push_bind(b.to_string());
    }
    if let Some(p) = &f.partition {
        q.push(" AND partition_key = ").push_bind(p.as_str());
    }
    if let Some(name) = f.name.as_deref().filter(|n| !n.is_empty()) {
        if by_name_index {
            q.push(" AND id IN (SELECT run_id FROM flow_run_names WHERE name LIKE ")
                .push_bind(format!("%{name}%"))
                .push(")");
        }
        // LIKE is case-insensitive for ASCII in SQLite.
        q.push(" AND name LIKE ").push_bind(headwater_store::contains_pattern(name)).push(" ESCAPE '\\'");
    }
    for tag in &f.tags {
        q.push(" AND EXISTS (SELECT 1 FROM json_each(flow_runs.tags) WHERE json_each.value = ")
            .push_bind(tag.as_str())
            .push(")");
    }
    if let Some(since) = f.since {
        q.push(" AND created >= ").push_bind(micros(since));
    }
    if let Some(until) = f.until {
        q.push(" AND created < ").push_bind(micros(until));
    }
    if let Some(headwater_store::Cursor { created, id }) = f.before {
        q.push(" AND (created, id) < (").push_bind(micros(created)).push(", ").push_bind(id.to_string()).push(")");
    }
}

/// Writes a batch in multi-row statements. Their text varies with the
/// number of rows, so they are not kept prepared: a connection's statement
/// cache would otherwise hold one large statement per batch size (this was
/// most of the server's memory after a 10,000-task Prefect flow).
pub(super) async fn write_batch(tx: &mut SqliteConnection, batch: &WriteBatch) -> Result<()> {
    {
        for f in &batch.flows {
            sqlx::query(
                "INSERT INTO flows (id, name, version, description, parameter_schema, created, updated) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET version = excluded.version, \
                 description = excluded.description, parameter_schema = excluded.parameter_schema, updated = excluded.updated",
            )
            .bind(f.id.to_string())
            .bind(&f.name)
            .bind(&f.version)
            .bind(&f.description)
            .bind(json_text(&f.parameter_schema))
            .bind(micros(f.created))
            .bind(micros(f.updated))
            .execute(&mut *tx)
            .await.db()?;
        }

        let fr_set = upsert_set("flow_runs", FLOW_RUN_COLS);
        for chunk in batch.flow_runs.chunks(rows_per_statement(FLOW_RUN_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO flow_runs ({FLOW_RUN_COLS}) "));
            q.push_values(chunk, push_flow_run);
            q.push(format!(" ON CONFLICT(id) DO UPDATE SET {fr_set}"));
            q.build().persistent(false).execute(&mut *tx).await.db()?;
        }

        let tr_set = upsert_set("task_runs", TASK_RUN_COLS);
        for chunk in batch.task_runs.chunks(rows_per_statement(TASK_RUN_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO task_runs ({TASK_RUN_COLS}) "));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id.to_string())
                    .push_bind(r.flow_run_id.to_string())
                    .push_bind(r.task_name.as_str())
                    .push_bind(r.name.as_str())
                    .push_bind(r.dynamic_key as i64)
                    .push_bind(json_text(&r.tags))
                    .push_bind(r.state.state_type.as_str())
                    .push_bind(r.state.name.as_str())
                    .push_bind(r.state.message.as_deref())
                    .push_bind(micros(r.state.timestamp))
                    .push_bind(opt_micros(r.state.scheduled_time))
                    .push_bind(r.run_count as i64)
                    .push_bind(r.cache_key.as_deref())
                    .push_bind(opt_micros(r.cache_expiration))
                    .push_bind(opt_micros(r.start_time))
                    .push_bind(opt_micros(r.end_time))
                    .push_bind(micros(r.created));
            });
            q.push(format!(" ON CONFLICT(id) DO UPDATE SET {tr_set}"));
            q.build().persistent(false).execute(&mut *tx).await.db()?;
        }

        for chunk in batch.states.chunks(rows_per_statement(STATE_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO run_states ({STATE_COLS}) "));
            q.push_values(chunk, |mut b, s| {
                b.push_bind(s.run_id.to_string())
                    .push_bind(s.kind.as_str())
                    .push_bind(s.state.state_type.as_str())
                    .push_bind(s.state.name.as_str())
                    .push_bind(s.state.message.as_deref())
                    .push_bind(micros(s.state.timestamp))
                    .push_bind(opt_micros(s.state.scheduled_time));
            });
            q.build().persistent(false).execute(&mut *tx).await.db()?;
        }

        for chunk in batch.logs.chunks(rows_per_statement(LOG_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO logs ({LOG_COLS}) "));
            q.push_values(chunk, |mut b, l| {
                b.push_bind(l.flow_run_id.to_string())
                    .push_bind(l.task_run_id.map(|u| u.to_string()))
                    .push_bind(l.level.number())
                    .push_bind(micros(l.timestamp))
                    .push_bind(l.message.as_str());
            });
            q.build().persistent(false).execute(&mut *tx).await.db()?;
        }

        for h in &batch.heartbeats {
            sqlx::query("UPDATE flow_runs SET heartbeat = ? WHERE id = ? AND (heartbeat IS NULL OR heartbeat < ?)")
                .bind(micros(h.at))
                .bind(h.flow_run_id.to_string())
                .bind(micros(h.at))
                .execute(&mut *tx)
                .await
                .db()?;
        }

        for a in &batch.artifacts {
            sqlx::query(&format!(
                "INSERT INTO artifacts ({ARTIFACT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ))
            .bind(a.id.to_string())
            .bind(a.key.as_deref())
            .bind(a.kind.to_string())
            .bind(json_text(&a.data))
            .bind(a.description.as_deref())
            .bind(a.flow_run_id.map(|u| u.to_string()))
            .bind(a.task_run_id.map(|u| u.to_string()))
            .bind(micros(a.created))
            .execute(&mut *tx)
            .await
            .db()?;
        }
    }
    Ok(())
}

#[async_trait]
impl RunReader for SqliteStore {
    async fn list_flows(&self) -> Result<Vec<Flow>> {
        let rows = sqlx::query("SELECT * FROM flows ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(flow_from).collect()
    }

    async fn read_flow(&self, name: &str) -> Result<Option<Flow>> {
        let row = sqlx::query("SELECT * FROM flows WHERE name = ?").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(flow_from).transpose()
    }

    async fn read_flow_run(&self, id: Uuid) -> Result<Option<FlowRun>> {
        let row = sqlx::query(&format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(flow_run_from).transpose()
    }

    async fn resolve_flow_run(&self, id_or_name: &str) -> Result<FlowRun> {
        let input = id_or_name.trim();
        if let Ok(id) = Uuid::parse_str(input) {
            return self.read_flow_run(id).await?.ok_or_else(|| StoreError::FlowRunNotFound(input.to_string()));
        }
        // A prefix of the id (as `git` accepts), else a run name.
        let prefix = format!("{}%", input.replace(['%', '_'], ""));
        let mut rows = sqlx::query(&format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id LIKE ? LIMIT 2"))
            .bind(&prefix)
            .fetch_all(&self.pool)
            .await
            .db()?;
        if rows.is_empty() {
            rows = sqlx::query(&format!(
                "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE name = ? ORDER BY created DESC LIMIT 2"
            ))
            .bind(input)
            .fetch_all(&self.pool)
            .await
            .db()?;
        }
        match rows.len() {
            0 => Err(StoreError::FlowRunNotFound(input.to_string())),
            1 => flow_run_from(&rows[0]),
            n => Err(StoreError::Ambiguous { input: input.to_string(), count: n }),
        }
    }

    async fn list_flow_runs(&self, f: &FlowRunFilter) -> Result<Vec<FlowRun>> {
        let limit = f.limit.max(1) as i64;
        // Several states (or state names) are read as one newest-first index
        // range each, merged: an IN list would read and sort every matching
        // run (hundreds of milliseconds with a million runs).
        let split: Vec<(&str, &str)> = if f.states.len() > 1 && f.state_names.len() <= 1 {
            f.states.iter().map(|s| ("state_type", s.as_str())).collect()
        } else if f.state_names.len() > 1 && f.states.len() <= 1 {
            f.state_names.iter().map(|s| ("state_name", s.as_str())).collect()
        } else {
            Vec::new()
        };
        let by_name_index = match f.name.as_deref() {
            Some(name) => self.few_runs_named_like(name).await?,
            None => false,
        };
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("");
        if split.is_empty() {
            q.push(format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE 1=1"));
            push_run_conditions(&mut q, f, true, true, by_name_index);
        } else {
            q.push(format!("SELECT {FLOW_RUN_COLS} FROM ("));
            for (i, (column, value)) in split.iter().enumerate() {
                if i > 0 {
                    q.push(" UNION ALL ");
                }
                q.push(format!("SELECT * FROM (SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE {column} = "));
                q.push_bind(*value);
                push_run_conditions(&mut q, f, *column != "state_type", *column != "state_name", by_name_index);
                q.push(" ORDER BY created DESC, id DESC LIMIT ").push_bind(limit).push(")");
            }
            q.push(")");
        }
        q.push(" ORDER BY created DESC, id DESC LIMIT ").push_bind(limit);
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(flow_run_from).collect()
    }

    async fn list_task_runs(&self, flow_run_id: Uuid) -> Result<Vec<TaskRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_RUN_COLS} FROM task_runs WHERE flow_run_id = ? ORDER BY created, dynamic_key"
        ))
        .bind(flow_run_id.to_string())
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(task_run_from).collect()
    }

    async fn read_task_run(&self, id: Uuid) -> Result<Option<TaskRun>> {
        let row = sqlx::query(&format!("SELECT {TASK_RUN_COLS} FROM task_runs WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(task_run_from).transpose()
    }

    async fn read_states(&self, run_id: Uuid) -> Result<Vec<StateRecord>> {
        let rows = sqlx::query("SELECT * FROM run_states WHERE run_id = ? ORDER BY id")
            .bind(run_id.to_string())
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter().map(state_record_from).collect()
    }

    async fn read_logs(&self, f: &LogFilter) -> Result<Vec<LogRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, flow_run_id, task_run_id, level, timestamp, message FROM logs WHERE flow_run_id = ",
        );
        q.push_bind(f.flow_run_id.to_string());
        q.push(" AND id > ").push_bind(f.after_id);
        if f.min_level > LogLevel::Debug {
            q.push(" AND level >= ").push_bind(f.min_level.number());
        }
        if let Some(t) = f.task_run_id {
            q.push(" AND task_run_id = ").push_bind(t.to_string());
        }
        q.push(" ORDER BY id LIMIT ").push_bind(f.limit.max(1) as i64);
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(log_from).collect()
    }

    async fn flow_run_history(
        &self,
        query: &headwater_store::HistoryQuery,
    ) -> Result<Vec<headwater_store::HistoryBucket>> {
        let query = query.clamped();
        let since = micros(query.since);
        let rows = sqlx::query(
            "SELECT (created - ?1) / ?2 AS bucket, state_type, COUNT(*) AS n FROM flow_runs \
             WHERE created >= ?1 AND created < ?3 GROUP BY bucket, state_type",
        )
        .bind(since)
        .bind(query.width_micros())
        .bind(micros(query.until))
        .fetch_all(&self.pool)
        .await
        .db()?;
        let mut buckets = query.empty_buckets();
        for row in rows {
            let ty: String = row.try_get("state_type").db()?;
            let state = StateType::from_str(&ty).map_err(|e| corrupt("state_type", e))?;
            query.add(&mut buckets, row.try_get("bucket").db()?, state, row.try_get::<i64, _>("n").db()? as u64);
        }
        Ok(buckets)
    }

    async fn run_timeline(&self, flow_run_id: Uuid) -> Result<Vec<headwater_store::TimelineEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM ({TIMELINE_SELECT}) ORDER BY start_time IS NULL, start_time, created, dynamic_key"
        ))
        .bind(flow_run_id.to_string())
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(timeline_entry_from).collect()
    }
}
