//! Every row mapping, written once for both engines over [`Cols`].

use std::str::FromStr;

use headwater_core::{
    Artifact, Automation, AutomationStatus, BlockDocument, BlockType, ConcurrencyLimit, DatasetVersion, Delivery,
    DeliveryStatus, Flow, FlowRun, LogLevel, LogRecord, RunKind, RunWrite, State, StateRecord, StateType, TaskRun,
    Variable, WorkPool, WorkQueue, WorkerStatus,
};
use headwater_store::{Result, TimelineEntry};

use crate::columns::{corrupt, StateCols, HISTORY_STATE, RUN_STATE};
use crate::dialect::Cols;

pub(crate) fn state_from(row: &impl Cols, [ty, name, message, timestamp, scheduled]: StateCols) -> Result<State> {
    let ty = row.text(ty)?;
    Ok(State {
        state_type: StateType::from_str(&ty).map_err(|e| corrupt("state_type", e))?,
        name: row.text(name)?,
        timestamp: row.time(timestamp)?,
        message: row.opt_text(message)?,
        scheduled_time: row.opt_time(scheduled)?,
    })
}

pub(crate) fn waiting_runs_from(row: &impl Cols) -> Result<headwater_store::WaitingRuns> {
    Ok(headwater_store::WaitingRuns {
        work_pool: row.text("work_pool")?,
        work_queue: row.text("work_queue")?,
        late: row.flag("late")?,
        runs: row.int("runs")?.max(0) as u64,
    })
}

/// A run's id with its recorded state (`columns::recorded_states`).
pub(crate) fn recorded_state_from(row: &impl Cols) -> Result<(uuid::Uuid, State)> {
    Ok((row.uuid("id")?, state_from(row, RUN_STATE)?))
}

pub(crate) fn flow_from(row: &impl Cols) -> Result<Flow> {
    Ok(Flow {
        id: row.uuid("id")?,
        name: row.text("name")?,
        version: row.opt_text("version")?,
        description: row.opt_text("description")?,
        parameter_schema: row.json("parameter_schema", "parameter_schema")?,
        created: row.time("created")?,
        updated: row.time("updated")?,
    })
}

pub(crate) fn flow_run_from(row: &impl Cols) -> Result<FlowRun> {
    Ok(FlowRun {
        id: row.uuid("id")?,
        flow_id: row.uuid("flow_id")?,
        flow_name: row.text("flow_name")?,
        name: row.text("name")?,
        parameters: row.json("parameters", "parameters")?,
        tags: row.json("tags", "tags")?,
        state: state_from(row, RUN_STATE)?,
        parent_flow_run_id: row.opt_uuid("parent_flow_run_id")?,
        parent_task_run_id: row.opt_uuid("parent_task_run_id")?,
        run_count: row.int("run_count")? as u32,
        start_time: row.opt_time("start_time")?,
        end_time: row.opt_time("end_time")?,
        created: row.time("created")?,
        heartbeat: row.opt_time("heartbeat")?,
        deployment_id: row.opt_uuid("deployment_id")?,
        work_pool: row.opt_text("work_pool")?,
        idempotency_key: row.opt_text("idempotency_key")?,
        work_queue: row.opt_text("work_queue")?,
        retry_policy: row.opt_json("retry_policy", "retry_policy")?,
        partition: row.opt_text("partition_key")?,
        backfill_id: row.opt_uuid("backfill_id")?,
    })
}

pub(crate) fn task_run_from(row: &impl Cols) -> Result<TaskRun> {
    Ok(TaskRun {
        id: row.uuid("id")?,
        flow_run_id: row.uuid("flow_run_id")?,
        task_name: row.text("task_name")?,
        name: row.text("name")?,
        dynamic_key: row.int("dynamic_key")? as u64,
        tags: row.json("tags", "tags")?,
        state: state_from(row, RUN_STATE)?,
        run_count: row.int("run_count")? as u32,
        cache_key: row.opt_text("cache_key")?,
        cache_expiration: row.opt_time("cache_expiration")?,
        start_time: row.opt_time("start_time")?,
        end_time: row.opt_time("end_time")?,
        created: row.time("created")?,
    })
}

pub(crate) fn work_queue_from(row: &impl Cols) -> Result<WorkQueue> {
    Ok(WorkQueue {
        work_pool: row.text("work_pool")?,
        name: row.text("name")?,
        priority: row.int("priority")? as u32,
        concurrency_limit: row.opt_int("concurrency_limit")?.map(|l| l as u32),
        paused: row.flag("paused")?,
        created: row.time("created")?,
        updated: row.time("updated")?,
    })
}

pub(crate) fn work_pool_from(row: &impl Cols) -> Result<WorkPool> {
    let kind = row.text("kind")?;
    Ok(WorkPool {
        name: row.text("name")?,
        kind: kind.parse().map_err(|e: String| corrupt("work pool kind", e))?,
        paused: row.flag("paused")?,
        concurrency_limit: row.opt_int("concurrency_limit")?.map(|l| l as u32),
        created: row.time("created")?,
        updated: row.time("updated")?,
    })
}

pub(crate) fn dataset_version_from(row: &impl Cols) -> Result<DatasetVersion> {
    Ok(DatasetVersion {
        dataset: row.text("dataset")?,
        partition: row.text("partition")?,
        version: row.int("version")? as u32,
        location: row.text("location")?,
        rows: row.int("rows")? as u64,
        bytes: row.int("bytes")? as u64,
        schema: row.json("schema", "dataset version schema")?,
        flow_run_id: row.opt_uuid("flow_run_id")?,
        written: row.time("written")?,
        inputs: row.json("inputs", "dataset version inputs")?,
        source: row.opt_json("source", "dataset version source")?,
        source_check: row.opt_json("source_check", "dataset version source check")?,
    })
}

pub(crate) fn run_write_from(row: &impl Cols) -> Result<RunWrite> {
    Ok(RunWrite { run_id: row.uuid("asked")?, version: dataset_version_from(row)? })
}

pub(crate) fn block_from(row: &impl Cols) -> Result<BlockDocument> {
    Ok(BlockDocument {
        name: row.text("name")?,
        block_type: row.text("block_type")?,
        data: row.json("data", "block data")?,
        created: row.time("created")?,
        updated: row.time("updated")?,
    })
}

pub(crate) fn variable_from(row: &impl Cols) -> Result<Variable> {
    Ok(Variable {
        name: row.text("name")?,
        value: row.json("value", "variable value")?,
        tags: row.json("tags", "variable tags")?,
        created: row.time("created")?,
        updated: row.time("updated")?,
    })
}

pub(crate) fn artifact_from(row: &impl Cols) -> Result<Artifact> {
    let kind = row.text("kind")?;
    Ok(Artifact {
        id: row.uuid("id")?,
        key: row.opt_text("key")?,
        kind: kind.parse().map_err(|e: String| corrupt("artifact kind", e))?,
        data: row.json("data", "artifact data")?,
        description: row.opt_text("description")?,
        flow_run_id: row.opt_uuid("flow_run_id")?,
        task_run_id: row.opt_uuid("task_run_id")?,
        created: row.time("created")?,
    })
}

pub(crate) fn limit_from(row: &impl Cols) -> Result<ConcurrencyLimit> {
    Ok(ConcurrencyLimit {
        name: row.text("name")?,
        limit: row.int("slot_limit")? as u32,
        slot_decay_per_second: row.opt_real("slot_decay_per_second")?,
        active_slots: row.int("active")? as u32,
        created: row.time("created")?,
        updated: row.time("updated")?,
    })
}

pub(crate) fn automation_from(row: &impl Cols) -> Result<Automation> {
    Ok(Automation {
        id: row.uuid("id")?,
        name: row.text("name")?,
        description: row.opt_text("description")?,
        enabled: row.flag("enabled")?,
        trigger: row.json("trigger", "trigger")?,
        actions: row.json("actions", "actions")?,
        created: row.time("created")?,
        updated: row.time("updated")?,
        status: AutomationStatus {
            delivered: row.int("n_delivered")? as u64,
            pending: row.int("n_pending")? as u64,
            failed: row.int("n_failed")? as u64,
            last_delivered: row.opt_time("last_delivered")?,
            last_error: row.opt_text("last_error")?,
            last_error_at: row.opt_time("last_error_at")?,
        },
    })
}

pub(crate) fn delivery_from(row: &impl Cols) -> Result<Delivery> {
    let status = row.text("status")?;
    Ok(Delivery {
        id: row.uuid("id")?,
        automation_id: row.uuid("automation_id")?,
        automation: row.text("automation_name")?,
        action_index: row.int("action_index")? as u32,
        action: row.json("action", "action")?,
        event: row.json("event", "event")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("delivery status", status))?,
        attempts: row.int("attempts")? as u32,
        next_attempt: row.time("next_attempt")?,
        last_error: row.opt_text("last_error")?,
        delivered: row.opt_time("delivered")?,
        created: row.time("created")?,
    })
}

pub(crate) fn state_record_from(row: &impl Cols) -> Result<StateRecord> {
    let kind = row.text("run_kind")?;
    Ok(StateRecord {
        run_id: row.uuid("run_id")?,
        kind: RunKind::from_str(&kind).map_err(|e| corrupt("run_kind", e))?,
        state: state_from(row, HISTORY_STATE)?,
    })
}

pub(crate) fn log_from(row: &impl Cols) -> Result<LogRecord> {
    Ok(LogRecord {
        id: row.int("id")?,
        flow_run_id: row.uuid("flow_run_id")?,
        task_run_id: row.opt_uuid("task_run_id")?,
        level: LogLevel::from_number(row.int("level")?),
        timestamp: row.time("timestamp")?,
        message: row.text("message")?,
    })
}

pub(crate) fn timeline_entry_from(row: &impl Cols) -> Result<TimelineEntry> {
    let (ty, kind) = (row.text("state_type")?, row.text("kind")?);
    Ok(TimelineEntry {
        id: row.uuid("id")?,
        kind: RunKind::from_str(&kind).map_err(|e| corrupt("kind", e))?,
        name: row.text("name")?,
        state_type: StateType::from_str(&ty).map_err(|e| corrupt("state_type", e))?,
        state_name: row.text("state_name")?,
        run_count: row.int("run_count")? as u32,
        start_time: row.opt_time("start_time")?,
        end_time: row.opt_time("end_time")?,
    })
}

pub(crate) fn worker_from(row: &impl Cols) -> Result<WorkerStatus> {
    Ok(WorkerStatus {
        name: row.text("name")?,
        work_pool: row.text("work_pool")?,
        last_heartbeat: row.time("last_heartbeat")?,
    })
}

pub(crate) fn block_type_from(row: &impl Cols) -> Result<BlockType> {
    Ok(BlockType {
        slug: row.text("slug")?,
        name: row.text("name")?,
        description: row.text("description")?,
        schema: row.json("schema", "block type schema")?,
    })
}

pub(crate) fn api_key_from(row: &impl Cols) -> Result<headwater_core::ApiKey> {
    Ok(headwater_core::ApiKey {
        name: row.text("name")?,
        role: row.text("role")?.parse().map_err(|e| corrupt("api key role", e))?,
        prefix: row.text("prefix")?,
        created: row.time("created")?,
        revoked: row.opt_time("revoked")?,
    })
}

pub(crate) fn audit_entry_from(row: &impl Cols) -> Result<headwater_core::AuditEntry> {
    Ok(headwater_core::AuditEntry {
        id: row.int("id")?,
        at: row.time("at")?,
        key: row.opt_text("key_name")?,
        method: row.text("method")?,
        path: row.text("path")?,
        status: u16::try_from(row.int("status")?).map_err(|e| corrupt("audit status", e))?,
    })
}
