//! Flow runs, task runs, their states and logs: the batch writer, the reaper's queries and every read. (PostgreSQL)

use super::*;
use headwater_store::reports::{check_batch, BatchOutcome};

/// One row per id, the last snapshot winning: PostgreSQL refuses an upsert
/// that touches the same row twice in one statement.
fn last_per_id<T, F: Fn(&T) -> Uuid>(rows: &[T], id: F) -> Vec<&T> {
    let mut last: HashMap<Uuid, usize> = HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert(id(r), i);
    }
    rows.iter().enumerate().filter(|(i, r)| last[&id(r)] == *i).map(|(_, r)| r).collect()
}

#[async_trait]
impl RunRecorder for PostgresStore {
    async fn record(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        batch.check_bounds()?;
        let mut tx = self.pool.begin().await.db()?;
        write_batch(&mut tx, batch).await?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn record_checked(&self, batch: &WriteBatch) -> Result<BatchOutcome> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        batch.check_bounds()?;
        let mut tx = self.pool.begin().await.db()?;
        // FOR UPDATE: a cancel or a crash by another server waits for this
        // write, or this one reads its result; the check never goes stale.
        let mut current = HashMap::new();
        for mut q in crate::columns::recorded_states(
            batch,
            |q, id| {
                q.push_bind(id);
            },
            " FOR UPDATE",
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
impl RunReaper for PostgresStore {
    async fn crash_stale_runs(&self, cutoff: DateTime<Utc>) -> Result<Vec<FlowRun>> {
        let mut tx = self.pool.begin().await.db()?;
        let conn: &mut PgConnection = &mut tx;
        // SKIP LOCKED: two servers reaping at once never crash a run twice.
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE state_type IN ({LIVE_STATES}) \
             AND heartbeat IS NOT NULL AND heartbeat < $1 FOR UPDATE SKIP LOCKED"
        ))
        .bind(cutoff)
        .fetch_all(&mut *conn)
        .await
        .db()?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let runs: Vec<FlowRun> = rows.iter().map(flow_run_from).collect::<Result<_>>()?;
        let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
        let rows = sqlx::query(&format!(
            "SELECT {TASK_RUN_COLS} FROM task_runs WHERE flow_run_id = ANY($1) AND state_type NOT IN ({FINAL_STATES})"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .db()?;
        let tasks: Vec<TaskRun> = rows.iter().map(task_run_from).collect::<Result<_>>()?;
        let batch = crash_batch(runs, tasks, Utc::now());
        write_batch(conn, &batch).await?;
        tx.commit().await.db()?;
        Ok(batch.flow_runs)
    }
}

/// Binds one flow run's columns, in `FLOW_RUN_COLS` order.
pub(super) fn push_flow_run<'q>(mut b: sqlx::query_builder::Separated<'_, 'q, Postgres, &'static str>, r: &'q FlowRun) {
    b.push_bind(r.id)
        .push_bind(r.flow_id)
        .push_bind(r.flow_name.as_str())
        .push_bind(r.name.as_str())
        .push_bind(Json(&r.parameters))
        .push_bind(Json(&r.tags))
        .push_bind(r.state.state_type.as_str())
        .push_bind(r.state.name.as_str())
        .push_bind(r.state.message.as_deref())
        .push_bind(r.state.timestamp)
        .push_bind(r.state.scheduled_time)
        .push_bind(r.parent_flow_run_id)
        .push_bind(r.run_count as i32)
        .push_bind(r.start_time)
        .push_bind(r.end_time)
        .push_bind(r.created)
        .push_bind(r.heartbeat)
        .push_bind(r.deployment_id)
        .push_bind(r.work_pool.as_deref())
        .push_bind(r.idempotency_key.as_deref())
        .push_bind(r.work_queue.as_deref())
        .push_bind(r.retry_policy.as_ref().map(Json))
        .push_bind(r.parent_task_run_id)
        .push_bind(r.partition.as_deref())
        .push_bind(r.backfill_id);
}

/// Writes a batch in multi-row statements. Their text varies with the
/// number of rows, so they are not kept prepared: a connection's statement
/// cache would otherwise hold one large statement per batch size (this was
/// most of the server's memory after a 10,000-task Prefect flow).
pub(super) async fn write_batch(conn: &mut PgConnection, batch: &WriteBatch) -> Result<()> {
    {
        let mut flows: Vec<&Flow> = Vec::new();
        for f in &batch.flows {
            match flows.iter().position(|g| g.name == f.name) {
                Some(i) => flows[i] = f,
                None => flows.push(f),
            }
        }
        for f in flows {
            sqlx::query(
                "INSERT INTO flows (id, name, version, description, parameter_schema, created, updated) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
                 description = excluded.description, parameter_schema = excluded.parameter_schema, updated = excluded.updated",
            )
            .bind(f.id)
            .bind(&f.name)
            .bind(&f.version)
            .bind(&f.description)
            .bind(Json(&f.parameter_schema))
            .bind(f.created)
            .bind(f.updated)
            .execute(&mut *conn)
            .await.db()?;
        }

        let fr_set = upsert_set("flow_runs", FLOW_RUN_COLS);
        let flow_runs = last_per_id(&batch.flow_runs, |r| r.id);
        for chunk in flow_runs.chunks(rows_per_statement(FLOW_RUN_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO flow_runs ({FLOW_RUN_COLS}) "));
            q.push_values(chunk.iter().copied(), push_flow_run);
            q.push(format!(" ON CONFLICT (id) DO UPDATE SET {fr_set}"));
            q.build().persistent(false).execute(&mut *conn).await.db()?;
        }

        let tr_set = upsert_set("task_runs", TASK_RUN_COLS);
        let task_runs = last_per_id(&batch.task_runs, |r| r.id);
        for chunk in task_runs.chunks(rows_per_statement(TASK_RUN_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO task_runs ({TASK_RUN_COLS}) "));
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.flow_run_id)
                    .push_bind(r.task_name.as_str())
                    .push_bind(r.name.as_str())
                    .push_bind(r.dynamic_key as i64)
                    .push_bind(Json(&r.tags))
                    .push_bind(r.state.state_type.as_str())
                    .push_bind(r.state.name.as_str())
                    .push_bind(r.state.message.as_deref())
                    .push_bind(r.state.timestamp)
                    .push_bind(r.state.scheduled_time)
                    .push_bind(r.run_count as i32)
                    .push_bind(r.cache_key.as_deref())
                    .push_bind(r.cache_expiration)
                    .push_bind(r.start_time)
                    .push_bind(r.end_time)
                    .push_bind(r.created);
            });
            q.push(format!(" ON CONFLICT (id) DO UPDATE SET {tr_set}"));
            q.build().persistent(false).execute(&mut *conn).await.db()?;
        }

        for chunk in batch.states.chunks(rows_per_statement(STATE_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO run_states ({STATE_COLS}) "));
            q.push_values(chunk, |mut b, s| {
                b.push_bind(s.run_id)
                    .push_bind(s.kind.as_str())
                    .push_bind(s.state.state_type.as_str())
                    .push_bind(s.state.name.as_str())
                    .push_bind(s.state.message.as_deref())
                    .push_bind(s.state.timestamp)
                    .push_bind(s.state.scheduled_time);
            });
            q.build().persistent(false).execute(&mut *conn).await.db()?;
        }

        for chunk in batch.logs.chunks(rows_per_statement(LOG_COLS, MAX_BINDS)) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO logs ({LOG_COLS}) "));
            q.push_values(chunk, |mut b, l| {
                b.push_bind(l.flow_run_id)
                    .push_bind(l.task_run_id)
                    .push_bind(l.level.number() as i32)
                    .push_bind(l.timestamp)
                    .push_bind(l.message.as_str());
            });
            q.build().persistent(false).execute(&mut *conn).await.db()?;
        }

        for h in &batch.heartbeats {
            sqlx::query("UPDATE flow_runs SET heartbeat = $1 WHERE id = $2 AND (heartbeat IS NULL OR heartbeat < $1)")
                .bind(h.at)
                .bind(h.flow_run_id)
                .execute(&mut *conn)
                .await
                .db()?;
        }

        for a in &batch.artifacts {
            sqlx::query(&format!(
                "INSERT INTO artifacts ({ARTIFACT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
            ))
            .bind(a.id)
            .bind(a.key.as_deref())
            .bind(a.kind.to_string())
            .bind(Json(&a.data))
            .bind(a.description.as_deref())
            .bind(a.flow_run_id)
            .bind(a.task_run_id)
            .bind(a.created)
            .execute(&mut *conn)
            .await
            .db()?;
        }
    }
    Ok(())
}

#[async_trait]
impl RunReader for PostgresStore {
    async fn list_flows(&self) -> Result<Vec<Flow>> {
        let rows = sqlx::query("SELECT * FROM flows ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(flow_from).collect()
    }

    async fn read_flow(&self, name: &str) -> Result<Option<Flow>> {
        let row =
            sqlx::query("SELECT * FROM flows WHERE name = $1").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(flow_from).transpose()
    }

    async fn read_flow_run(&self, id: Uuid) -> Result<Option<FlowRun>> {
        let row = sqlx::query(&format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id = $1"))
            .bind(id)
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
        let prefix = format!("{}%", input.to_ascii_lowercase().replace(['%', '_'], ""));
        let mut rows = sqlx::query(&format!("SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id::text LIKE $1 LIMIT 2"))
            .bind(&prefix)
            .fetch_all(&self.pool)
            .await
            .db()?;
        if rows.is_empty() {
            rows = sqlx::query(&format!(
                "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE name = $1 ORDER BY created DESC LIMIT 2"
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
        // Ids first, then the page's rows: the inner query can be answered
        // from a covering index (migration 14) without reading the rows it
        // rejects.
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {FLOW_RUN_COLS} FROM flow_runs WHERE id IN (SELECT id FROM flow_runs WHERE TRUE"
        ));
        if !f.states.is_empty() {
            q.push(" AND state_type = ANY(")
                .push_bind(f.states.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>())
                .push(")");
        }
        if !f.state_names.is_empty() {
            q.push(" AND state_name = ANY(").push_bind(f.state_names.clone()).push(")");
        }
        if let Some(name) = &f.flow_name {
            q.push(" AND flow_name = ").push_bind(name.as_str());
        }
        if let Some(parent) = f.parent_flow_run_id {
            q.push(" AND parent_flow_run_id = ").push_bind(parent);
        }
        if let Some(parent) = f.parent_task_run_id {
            q.push(" AND parent_task_run_id = ").push_bind(parent);
        }
        if let Some(d) = f.deployment_id {
            q.push(" AND deployment_id = ").push_bind(d);
        }
        if let Some(b) = f.backfill_id {
            q.push(" AND backfill_id = ").push_bind(b);
        }
        if let Some(p) = &f.partition {
            q.push(" AND partition_key = ").push_bind(p.as_str());
        }
        if let Some(name) = f.name.as_deref().filter(|n| !n.is_empty()) {
            // `\` is LIKE's default escape; no ESCAPE clause, so a trigram index serves it.
            q.push(" AND name ILIKE ").push_bind(headwater_store::contains_pattern(name));
        }
        if !f.tags.is_empty() {
            q.push(" AND tags @> ").push_bind(Json(f.tags.clone()));
        }
        if let Some(since) = f.since {
            q.push(" AND created >= ").push_bind(since);
        }
        if let Some(until) = f.until {
            q.push(" AND created < ").push_bind(until);
        }
        if let Some(headwater_store::Cursor { created, id }) = f.before {
            q.push(" AND (created, id) < (").push_bind(created).push(", ").push_bind(id).push(")");
        }
        q.push(" ORDER BY created DESC, id DESC LIMIT ").push_bind(f.limit.max(1) as i64);
        q.push(") ORDER BY created DESC, id DESC");
        let rows = q.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(flow_run_from).collect()
    }

    async fn run_timeline(&self, flow_run_id: Uuid) -> Result<Vec<headwater_store::TimelineEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM ({TIMELINE_SELECT}) t ORDER BY start_time NULLS LAST, created, dynamic_key"
        ))
        .bind(flow_run_id)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(timeline_entry_from).collect()
    }

    async fn list_task_runs(&self, flow_run_id: Uuid) -> Result<Vec<TaskRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_RUN_COLS} FROM task_runs WHERE flow_run_id = $1 ORDER BY created, dynamic_key"
        ))
        .bind(flow_run_id)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(task_run_from).collect()
    }

    async fn read_task_run(&self, id: Uuid) -> Result<Option<TaskRun>> {
        let row = sqlx::query(&format!("SELECT {TASK_RUN_COLS} FROM task_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(task_run_from).transpose()
    }

    async fn read_states(&self, run_id: Uuid) -> Result<Vec<StateRecord>> {
        let rows = sqlx::query("SELECT * FROM run_states WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter().map(state_record_from).collect()
    }

    async fn read_logs(&self, f: &LogFilter) -> Result<Vec<LogRecord>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT id, flow_run_id, task_run_id, level, timestamp, message FROM logs WHERE flow_run_id = ",
        );
        q.push_bind(f.flow_run_id);
        q.push(" AND id > ").push_bind(f.after_id);
        if f.min_level > LogLevel::Debug {
            q.push(" AND level >= ").push_bind(f.min_level.number() as i32);
        }
        if let Some(t) = f.task_run_id {
            q.push(" AND task_run_id = ").push_bind(t);
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
        let rows = sqlx::query(
            "SELECT (EXTRACT(EPOCH FROM created - $1) * 1000000)::BIGINT / $2 AS bucket, state_type, COUNT(*) AS n \
             FROM flow_runs WHERE created >= $1 AND created < $3 GROUP BY bucket, state_type",
        )
        .bind(query.since)
        .bind(query.width_micros())
        .bind(query.until)
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
}
