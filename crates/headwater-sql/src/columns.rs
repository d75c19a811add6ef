//! What both SQL dialects share: column lists and batching arithmetic, so
//! the two stores cannot drift apart on what a row is.

use headwater_store::StoreError;

pub(crate) const FLOW_RUN_COLS: &str = "id, flow_id, flow_name, name, parameters, tags, state_type, state_name, \
     state_message, state_timestamp, state_scheduled, parent_flow_run_id, run_count, start_time, end_time, created, heartbeat, \
     deployment_id, work_pool, idempotency_key, work_queue, retry_policy, parent_task_run_id, partition_key, backfill_id";
pub(crate) const TASK_RUN_COLS: &str = "id, flow_run_id, task_name, name, dynamic_key, tags, state_type, state_name, \
     state_message, state_timestamp, state_scheduled, run_count, cache_key, cache_expiration, start_time, end_time, created";
pub(crate) const STATE_COLS: &str = "run_id, run_kind, state_type, state_name, message, timestamp, scheduled";
pub(crate) const ARTIFACT_COLS: &str = "id, key, kind, data, description, flow_run_id, task_run_id, created";
/// Keeps the newest version of each key (a row of `artifacts a`).
pub(crate) const LATEST_ARTIFACTS_ONLY: &str = " AND key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM artifacts b \
     WHERE b.key = a.key AND (b.created > a.created OR (b.created = a.created AND b.id > a.id)))";
pub(crate) const LOG_COLS: &str = "flow_run_id, task_run_id, level, timestamp, message";

/// The state types of a run that is not over (and so may crash).
pub(crate) const LIVE_STATES: &str = "'PENDING', 'RUNNING', 'CANCELLING'";
/// The state types a run never leaves on its own.
pub(crate) const FINAL_STATES: &str = "'COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED'";

/// The snapshot and history row of a run a worker has just claimed.
pub(crate) fn claim_batch(
    mut run: headwater_core::FlowRun,
    now: chrono::DateTime<chrono::Utc>,
) -> headwater_store::WriteBatch {
    use headwater_core::{RunKind, State, StateRecord};
    // The pending state keeps when the run was due: how long it waited for
    // a worker (the server's dispatch latency) stays known.
    let due = run.state.scheduled_time;
    run.state = State { scheduled_time: due, ..State::pending(now) };
    // The claim is the run's first sign of life: if its worker dies before
    // the flow process starts beating, the reaper still finds it.
    run.heartbeat = Some(now);
    headwater_store::WriteBatch {
        states: vec![StateRecord { run_id: run.id, kind: RunKind::Flow, state: run.state.clone() }],
        flow_runs: vec![run],
        ..Default::default()
    }
}

/// Runs a claim cancelled instead of starting, each with why (a full
/// deployment that says `cancel_new`, a cancelled backfill).
pub(crate) fn limit_cancel_batch(
    runs: Vec<(headwater_core::FlowRun, &str)>,
    now: chrono::DateTime<chrono::Utc>,
) -> headwater_store::WriteBatch {
    use headwater_core::{RunKind, State, StateRecord};
    let mut batch = headwater_store::WriteBatch::default();
    for (mut r, why) in runs {
        r.state = State::cancelled(now, why);
        r.end_time = Some(now);
        batch.states.push(StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() });
        batch.flow_runs.push(r);
    }
    batch
}

/// Decides a due run against its deployment's limit, with the deployment's
/// spec (`None`: deleted or no deployment) and how many of its runs are active.
pub(crate) fn admission(
    spec: Option<&headwater_core::Deployment>,
    active: usize,
) -> headwater_core::deployment::Admission {
    match spec {
        Some(d) => headwater_core::deployment::admit(d.concurrency_limit, d.collision_strategy, active),
        None => headwater_core::deployment::Admission::Start,
    }
}

/// Late runs keep their type (SCHEDULED) and due time; only the name says
/// nobody has picked them up yet.
pub(crate) fn late_batch(
    runs: Vec<headwater_core::FlowRun>,
    now: chrono::DateTime<chrono::Utc>,
) -> headwater_store::WriteBatch {
    use headwater_core::{RunKind, State, StateRecord};
    let mut batch = headwater_store::WriteBatch::default();
    for mut r in runs {
        let due = r.state.scheduled_time.unwrap_or(r.state.timestamp);
        r.state = State::late(now, due);
        batch.states.push(StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() });
        batch.flow_runs.push(r);
    }
    batch
}

/// The snapshots and history rows that mark `runs` (and their unfinished
/// `tasks`) CRASHED at `now` for lack of heartbeats.
pub(crate) fn crash_batch(
    runs: Vec<headwater_core::FlowRun>,
    tasks: Vec<headwater_core::TaskRun>,
    now: chrono::DateTime<chrono::Utc>,
) -> headwater_store::WriteBatch {
    let runs = runs
        .into_iter()
        .map(|r| {
            let why = headwater_core::crash_message(r.heartbeat.unwrap_or(r.state.timestamp));
            (r, why)
        })
        .collect();
    headwater_store::crashed_batch(runs, tasks, now)
}

/// Column names of a state: type, name, message, timestamp, scheduled time.
pub(crate) type StateCols = [&'static str; 5];
/// The current state, stored on a run's row.
pub(crate) const RUN_STATE: StateCols =
    ["state_type", "state_name", "state_message", "state_timestamp", "state_scheduled"];
/// A row of the state history.
pub(crate) const HISTORY_STATE: StateCols = ["state_type", "state_name", "message", "timestamp", "scheduled"];

/// Columns a later snapshot without them must not erase: a flow process
/// adopting a run a worker claimed does not know its deployment.
const KEPT_WHEN_NULL: &[&str] = &[
    "deployment_id",
    "work_pool",
    "idempotency_key",
    "heartbeat",
    "work_queue",
    "retry_policy",
    "partition_key",
    "backfill_id",
];

/// `col = excluded.col` for every column but the key and the creation time.
pub(crate) fn upsert_set(table: &str, cols: &str) -> String {
    cols.split(',')
        .map(str::trim)
        .filter(|c| *c != "id" && *c != "created")
        .map(|c| {
            if KEPT_WHEN_NULL.contains(&c) {
                format!("{c} = COALESCE(excluded.{c}, {table}.{c})")
            } else {
                format!("{c} = excluded.{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The versions written by some runs or their direct subflows, each with
/// the run asked about as `asked`; `bind` pushes one id as its engine
/// stores ids.
pub(crate) fn versions_written_by<'a, DB: sqlx::Database>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    runs: &[uuid::Uuid],
    bind: impl Fn(&mut sqlx::QueryBuilder<'a, DB>, uuid::Uuid),
) {
    let ids = |q: &mut sqlx::QueryBuilder<'a, DB>| {
        for (i, id) in runs.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            bind(q, *id);
        }
    };
    q.push("SELECT v.flow_run_id AS asked, v.* FROM dataset_versions v WHERE v.flow_run_id IN (");
    ids(q);
    q.push(
        ") UNION ALL SELECT r.parent_flow_run_id AS asked, v.* FROM dataset_versions v \
            JOIN flow_runs r ON r.id = v.flow_run_id WHERE r.parent_flow_run_id IN (",
    );
    ids(q);
    q.push(") ORDER BY written, dataset, partition, version");
}

/// The statements that read the recorded state of every run a batch
/// reports on (flow runs and task runs, [`STATES_ASKED`] ids each), for the
/// checked batch writer; `bind` pushes one id as its engine stores ids,
/// `lock` ends each statement (PostgreSQL's `FOR UPDATE`, or nothing).
pub(crate) fn recorded_states<'a, DB: sqlx::Database>(
    batch: &headwater_store::WriteBatch,
    bind: impl Fn(&mut sqlx::QueryBuilder<'a, DB>, uuid::Uuid),
    lock: &str,
) -> Vec<sqlx::QueryBuilder<'a, DB>> {
    let [ty, name, message, timestamp, scheduled] = RUN_STATE;
    let (flows, tasks) = headwater_store::reports::reported_runs(batch);
    let mut out = Vec::new();
    for (table, ids) in [("flow_runs", &flows), ("task_runs", &tasks)] {
        for chunk in ids.chunks(STATES_ASKED) {
            let mut q = sqlx::QueryBuilder::new(format!(
                "SELECT id, {ty}, {name}, {message}, {timestamp}, {scheduled} FROM {table} WHERE id IN ("
            ));
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                bind(&mut q, *id);
            }
            q.push(format!(") ORDER BY id{lock}"));
            out.push(q);
        }
    }
    out
}

/// Finished flow runs older than `$1` that retention may delete, oldest
/// first, at most `$2`: never the latest run of a deployment's partition
/// (it keeps the partition filled), and a parent only once its subflows
/// are gone. Walks the creation index, so each batch is cheap.
/// (`parents_last` false: every run that will go, for a count.)
pub(crate) fn prunable_runs(parents_last: bool) -> String {
    let parents =
        if parents_last { " AND NOT EXISTS (SELECT 1 FROM flow_runs c WHERE c.parent_flow_run_id = r.id)" } else { "" };
    format!(
        "SELECT r.id FROM flow_runs r WHERE r.created < $1 AND r.state_type IN ({FINAL_STATES}) \
         AND r.state_timestamp < $1 \
         AND (r.partition_key IS NULL OR r.deployment_id IS NULL OR EXISTS (SELECT 1 FROM flow_runs n \
              WHERE n.deployment_id = r.deployment_id AND n.partition_key = r.partition_key AND n.created > r.created))\
         {parents} ORDER BY r.created LIMIT $2"
    )
}

/// The statement that deletes a batch of `kind` (`$1` the time before which,
/// `$2` the batch size) or, on a dry run, counts them all (`$1` only, but
/// for runs). Runs are deleted with [`PRUNE_WITH_RUNS`] instead.
pub(crate) fn prune_statement(kind: headwater_core::retention::PruneKind, dry_run: bool) -> (String, bool) {
    use headwater_core::retention::PruneKind::*;
    match (kind, dry_run) {
        (Runs, true) => (format!("SELECT COUNT(*) FROM ({}) x", prunable_runs(false)), true),
        (Runs, false) => (prunable_runs(true), true),
        (Logs, true) => (COUNT_OLD_LOGS.to_string(), false),
        (Logs, false) => (PRUNE_LOGS.to_string(), true),
        (Artifacts, true) => (format!("SELECT COUNT(*) {PRUNE_ARTIFACTS_WHERE}"), false),
        (Artifacts, false) => {
            (format!("DELETE FROM artifacts WHERE id IN (SELECT a.id {PRUNE_ARTIFACTS_WHERE} ORDER BY a.created LIMIT $2)"), true)
        }
        (Deliveries, true) => (format!("SELECT COUNT(*) {PRUNE_DELIVERIES_WHERE}"), false),
        (Deliveries, false) => (
            format!("DELETE FROM automation_deliveries WHERE id IN (SELECT d.id {PRUNE_DELIVERIES_WHERE} ORDER BY d.created LIMIT $2)"),
            true,
        ),
        (Audit, true) => ("SELECT COUNT(*) FROM audit_log WHERE at < $1".to_string(), false),
        (Audit, false) => (
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)".to_string(),
            true,
        ),
    }
}

/// What goes with a pruned flow run, children first: each statement is the
/// text before and after the list of run ids. A keyed artifact's latest
/// version stays (it is what the key shows).
pub(crate) const PRUNE_WITH_RUNS: [(&str, &str); 6] = [
    ("DELETE FROM run_states WHERE run_id IN (SELECT id FROM task_runs WHERE flow_run_id IN (", "))"),
    ("DELETE FROM run_states WHERE run_id IN (", ")"),
    ("DELETE FROM logs WHERE flow_run_id IN (", ")"),
    (
        "DELETE FROM artifacts WHERE flow_run_id IN (",
        ") AND (key IS NULL OR EXISTS (SELECT 1 FROM artifacts b WHERE b.key = artifacts.key AND b.created > artifacts.created))",
    ),
    ("DELETE FROM task_runs WHERE flow_run_id IN (", ")"),
    ("DELETE FROM flow_runs WHERE id IN (", ")"),
];

/// One of [`PRUNE_WITH_RUNS`] for `runs`; `bind` pushes one id as its
/// engine stores ids.
pub(crate) fn prune_with_runs<'a, DB: sqlx::Database>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    (head, tail): (&str, &str),
    runs: &[uuid::Uuid],
    bind: impl Fn(&mut sqlx::QueryBuilder<'a, DB>, uuid::Uuid),
) {
    q.push(head);
    for (i, id) in runs.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        bind(q, *id);
    }
    q.push(tail);
}

/// The `$2` oldest log lines older than `$1` (index `logs_timestamp`).
pub(crate) const PRUNE_LOGS: &str =
    "DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE timestamp < $1 ORDER BY timestamp LIMIT $2)";
pub(crate) const COUNT_OLD_LOGS: &str = "SELECT COUNT(*) FROM logs WHERE timestamp < $1";
/// Artifacts older than `$1`, but the latest of each key, `$2` at a time.
pub(crate) const PRUNE_ARTIFACTS_WHERE: &str = "FROM artifacts a WHERE a.created < $1 AND (a.key IS NULL OR EXISTS \
    (SELECT 1 FROM artifacts b WHERE b.key = a.key AND b.created > a.created))";
/// Outbox deliveries made or given up before `$1`; pending ones stay.
pub(crate) const PRUNE_DELIVERIES_WHERE: &str =
    "FROM automation_deliveries d WHERE d.status <> 'pending' AND d.created < $1";

/// SCHEDULED runs per pool, queue and lateness (`WaitingRuns`).
pub(crate) const WAITING_RUNS: &str = "SELECT work_pool, COALESCE(work_queue, 'default') AS work_queue, \
    state_name = 'Late' AS late, COUNT(*) AS runs FROM flow_runs \
    WHERE state_type = 'SCHEDULED' AND work_pool IS NOT NULL \
    GROUP BY work_pool, COALESCE(work_queue, 'default'), state_name = 'Late' ORDER BY 1, 2, 3";

/// How many ids one [`recorded_states`] statement asks about.
pub(crate) const STATES_ASKED: usize = 500;

/// How many rows of `cols` fit in one statement under `max_binds`.
pub(crate) fn rows_per_statement(cols: &str, max_binds: usize) -> usize {
    (max_binds / cols.split(',').count()).max(1)
}

pub(crate) fn no_pool_for_queue(q: &headwater_core::WorkQueue) -> StoreError {
    StoreError::Refused(format!(
        "no work pool named '{}' to hold queue '{}'; create it first with `headwater work-pool create {}`",
        q.work_pool, q.name, q.work_pool
    ))
}

pub(crate) fn default_queue_stays(pool: &str) -> StoreError {
    StoreError::Refused(format!(
        "the default queue of pool '{pool}' cannot be deleted (runs without a queue wait there); pause it instead"
    ))
}

/// The registered type of the block being saved, with the block checked
/// against it.
pub(crate) fn block_type_for(
    doc: &headwater_core::BlockDocument,
    schema: Option<serde_json::Value>,
) -> headwater_store::Result<headwater_core::BlockType> {
    let schema = schema.ok_or_else(|| {
        StoreError::Refused(format!("unknown block type '{}' (see `headwater block types`)", doc.block_type))
    })?;
    let t = headwater_core::BlockType {
        slug: doc.block_type.clone(),
        name: String::new(),
        description: String::new(),
        schema,
    };
    headwater_core::validate_block(doc, &t).map_err(|e| StoreError::Refused(format!("block '{}': {e}", doc.name)))?;
    Ok(t)
}

/// Automations with their delivery counts, last delivery and last error
/// (the same SQL in both stores).
pub(crate) const AUTOMATIONS_WITH_STATUS: &str = "SELECT a.*, \
    (SELECT COUNT(*) FROM automation_deliveries d WHERE d.automation_id = a.id AND d.status = 'delivered') AS n_delivered, \
    (SELECT COUNT(*) FROM automation_deliveries d WHERE d.automation_id = a.id AND d.status = 'pending') AS n_pending, \
    (SELECT COUNT(*) FROM automation_deliveries d WHERE d.automation_id = a.id AND d.status = 'failed') AS n_failed, \
    (SELECT MAX(d.delivered) FROM automation_deliveries d WHERE d.automation_id = a.id) AS last_delivered, \
    (SELECT d.last_error FROM automation_deliveries d WHERE d.automation_id = a.id AND d.last_error IS NOT NULL \
     ORDER BY d.last_error_at DESC LIMIT 1) AS last_error, \
    (SELECT MAX(d.last_error_at) FROM automation_deliveries d WHERE d.automation_id = a.id) AS last_error_at \
    FROM automations a";

/// A delivery row with its automation's name.
pub(crate) const DELIVERY_COLS: &str = "d.*, a.name AS automation_name";

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A flow run's task runs and subflow runs (the run's id bound once as the
/// first parameter); subflows sort after tasks created at the same instant.
pub(crate) const TIMELINE_SELECT: &str = "\
    SELECT id, 'task' AS kind, name, state_type, state_name, run_count, start_time, end_time, created, dynamic_key \
    FROM task_runs WHERE flow_run_id = $1 \
    UNION ALL \
    SELECT id, 'flow', name, state_type, state_name, run_count, start_time, end_time, created, 0 \
    FROM flow_runs WHERE parent_flow_run_id = $1";

/// A migration script's statements: split at a `;` ending a line, except
/// inside a SQLite trigger's `BEGIN … END;` or a PostgreSQL `$$ … $$` body;
/// `--` comment lines dropped.
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_trigger = false;
    let mut in_dollar_body = false;
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        if trimmed.to_ascii_uppercase().starts_with("CREATE TRIGGER") && !in_dollar_body {
            in_trigger = true;
        }
        if line.matches("$$").count() % 2 == 1 {
            in_dollar_body = !in_dollar_body;
        }
        current.push_str(line);
        current.push('\n');
        let ends = if in_dollar_body {
            false
        } else if in_trigger {
            trimmed.eq_ignore_ascii_case("END;")
        } else {
            trimmed.ends_with(';')
        };
        if ends {
            in_trigger = false;
            out.push(current.trim().trim_end_matches(';').to_string());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_keep_id_and_created() {
        let set = upsert_set("flow_runs", FLOW_RUN_COLS);
        assert!(set.starts_with("flow_id = excluded.flow_id"));
        assert!(set.contains("work_pool = COALESCE(excluded.work_pool, flow_runs.work_pool)"));
        assert!(!set.contains("id = excluded.id,") && !set.contains("created = "));
        assert_eq!(rows_per_statement(LOG_COLS, 30_000), 6000);
    }

    #[test]
    fn scripts_split_into_statements_keeping_bodies_whole() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (x INTEGER);\nCREATE INDEX a_x\n  ON a (x);\n\
                   CREATE TRIGGER t AFTER INSERT ON a BEGIN\n    INSERT INTO b VALUES (new.x);\n    DELETE FROM c;\nEND;\n\
                   DO $$\nBEGIN\n  CREATE EXTENSION x;\nEXCEPTION WHEN others THEN\n  NULL;\nEND $$;\n\
                   CREATE TABLE d (y TEXT)";
        let got = statements(sql);
        assert_eq!(got.len(), 5, "{got:#?}");
        assert_eq!(got[1], "CREATE INDEX a_x\n  ON a (x)");
        assert!(got[2].starts_with("CREATE TRIGGER") && got[2].contains("DELETE FROM c;\nEND"), "{}", got[2]);
        assert!(got[3].starts_with("DO $$") && got[3].contains("NULL;\nEND $$"), "{}", got[3]);
        assert_eq!(got[4], "CREATE TABLE d (y TEXT)");
    }
}
