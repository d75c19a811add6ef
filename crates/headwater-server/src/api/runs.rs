//! Flows, flow runs, task runs, their states and logs: recorded in batches, read, and moved by people (cancel, retry, pause, resume).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;

use super::json::Json;
use headwater_core::{Flow, FlowRun, LogRecord, StateRecord, TaskRun};
use headwater_store::reports::BatchOutcome;
use headwater_store::{
    record_flow_run_state, FlowRunFilter, HistoryBucket, HistoryQuery, LogFilter, Store, TimelineEntry, WriteBatch,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiResult, Db, Wake};
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new()
        .routes(routes!(list_flows))
        .routes(routes!(read_flow))
        .routes(routes!(filter_flow_runs))
        .routes(routes!(read_flow_run))
        .routes(routes!(resolve_flow_run))
        .routes(routes!(list_task_runs))
        .routes(routes!(read_task_run))
        .routes(routes!(run_timeline))
        .routes(routes!(read_states))
        .routes(routes!(filter_logs))
        .routes(routes!(crash_stale_runs))
        .routes(routes!(mark_late_runs))
        .routes(routes!(waiting_runs))
        .routes(routes!(flow_run_history))
        .routes(routes!(cancel_flow_run))
        .routes(routes!(retry_flow_run))
        .routes(routes!(pause_flow_run))
        .routes(routes!(resume_flow_run))
}

/// The routes that take batches, with the larger body limit (`super::api_router`).
pub(super) fn batch_routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new().routes(routes!(record_batch)).routes(routes!(enqueue_runs))
}

/// Every flow that has run, by name.
#[utoipa::path(get, path = "/flows", tag = "flows", responses((status = 200, body = Vec<Flow>)))]
async fn list_flows(State(db): Db) -> ApiResult<Vec<Flow>> {
    Ok(Json(db.list_flows().await?))
}

#[utoipa::path(
    get, path = "/flows/name/{name}", tag = "flows",
    params(("name" = String, Path, description = "the flow's name")),
    responses((status = 200, body = Flow), (status = 404, description = "no such flow"))
)]
async fn read_flow(State(db): Db, Path(name): Path<String>) -> ApiResult<Flow> {
    db.read_flow(&name).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no flow named '{name}'")))
}

/// Flow runs, newest first, filtered; page with `before` (the last run's
/// `created` and `id`).
#[utoipa::path(
    post, path = "/flow_runs/filter", tag = "flow_runs", request_body = FlowRunFilter,
    responses(
        (status = 200, body = Vec<FlowRun>),
        (status = 413, description = "the body is larger than 1 MiB"),
        (status = 422, description = "a field is malformed or beyond its bounds (named)")
    )
)]
async fn filter_flow_runs(State(db): Db, Json(filter): Json<FlowRunFilter>) -> ApiResult<Vec<FlowRun>> {
    filter.check().map_err(|why| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why))?;
    let filter = FlowRunFilter { limit: filter.limit.clamp(1, 10_000), ..filter };
    Ok(Json(db.list_flow_runs(&filter).await?))
}

#[utoipa::path(
    get, path = "/flow_runs/{id}", tag = "flow_runs",
    params(("id" = Uuid, Path, description = "flow run id")),
    responses((status = 200, body = FlowRun), (status = 404, description = "no such flow run"))
)]
async fn read_flow_run(State(db): Db, Path(id): Path<Uuid>) -> ApiResult<FlowRun> {
    db.read_flow_run(id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no flow run with id {id}")))
}

/// A flow run by id, unique id prefix, or unique name.
#[utoipa::path(
    get, path = "/flow_runs/resolve/{id_or_name}", tag = "flow_runs",
    params(("id_or_name" = String, Path)),
    responses(
        (status = 200, body = FlowRun),
        (status = 404, description = "nothing matches"),
        (status = 409, description = "several runs match")
    )
)]
async fn resolve_flow_run(State(db): Db, Path(id_or_name): Path<String>) -> ApiResult<FlowRun> {
    Ok(Json(db.resolve_flow_run(&id_or_name).await?))
}

#[utoipa::path(
    get, path = "/flow_runs/{id}/task_runs", tag = "task_runs",
    params(("id" = Uuid, Path, description = "flow run id")),
    responses((status = 200, body = Vec<TaskRun>))
)]
async fn list_task_runs(State(db): Db, Path(id): Path<Uuid>) -> ApiResult<Vec<TaskRun>> {
    Ok(Json(db.list_task_runs(id).await?))
}

#[utoipa::path(
    get, path = "/task_runs/{id}", tag = "task_runs",
    params(("id" = Uuid, Path, description = "task run id")),
    responses((status = 200, body = TaskRun), (status = 404, description = "no such task run"))
)]
async fn read_task_run(State(db): Db, Path(id): Path<Uuid>) -> ApiResult<TaskRun> {
    db.read_task_run(id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no task run with id {id}")))
}

/// A flow run's task runs and subflow runs as timeline bars (name, state,
/// attempts, start and end), in the order they started: what the run page
/// draws, a fraction of the full task runs' size.
#[utoipa::path(
    get, path = "/flow_runs/{id}/timeline", tag = "flow_runs",
    params(("id" = Uuid, Path, description = "flow run id")),
    responses((status = 200, body = Vec<TimelineEntry>))
)]
async fn run_timeline(State(db): Db, Path(id): Path<Uuid>) -> ApiResult<Vec<TimelineEntry>> {
    Ok(Json(db.run_timeline(id).await?))
}

/// The state history of a flow run or task run, oldest first.
#[utoipa::path(
    get, path = "/states/{run_id}", tag = "states",
    params(("run_id" = Uuid, Path, description = "flow run or task run id")),
    responses((status = 200, body = Vec<StateRecord>))
)]
async fn read_states(State(db): Db, Path(run_id): Path<Uuid>) -> ApiResult<Vec<StateRecord>> {
    Ok(Json(db.read_states(run_id).await?))
}

/// A flow run's logs, oldest first; follow with `after_id`.
#[utoipa::path(
    post, path = "/logs/filter", tag = "logs", request_body = LogFilter,
    responses((status = 200, body = Vec<LogRecord>))
)]
async fn filter_logs(State(db): Db, Json(filter): Json<LogFilter>) -> ApiResult<Vec<LogRecord>> {
    let filter = LogFilter { limit: filter.limit.clamp(1, 50_000), ..filter };
    Ok(Json(db.read_logs(&filter).await?))
}

/// Records what flows reported (runs, states, logs) in one transaction. The
/// SDK sends these in client mode. Each run's moves are checked against the
/// transition rules: a run moved illegally keeps its recorded state and is
/// named in `refused`, while the rest of the batch (other runs, every log)
/// is recorded.
#[utoipa::path(
    post, path = "/batches", tag = "runs", request_body = WriteBatch,
    responses((status = 200, body = BatchOutcome, description = "recorded, but for the runs refused"))
)]
async fn record_batch(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Json(batch): Json<WriteBatch>,
) -> ApiResult<BatchOutcome> {
    if let Some(e) = batch.artifacts.iter().find_map(|a| headwater_core::validate_artifact(a).err()) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e));
    }
    let started = std::time::Instant::now();
    let outcome = db.record_checked(&batch).await?;
    crate::metrics::batch_recorded("batch", &batch, &outcome.refused, started.elapsed().as_secs_f64());
    for r in &outcome.refused {
        tracing::warn!(run = %r.run_id, "refused a reported move: {}", r.reason);
    }
    // A run rescheduled, or one ending and freeing a slot: waiting workers look again.
    if batch
        .flow_runs
        .iter()
        .any(|r| r.state.state_type == headwater_core::StateType::Scheduled || r.state.is_terminal())
    {
        wake.notify_waiters();
    }
    Ok(Json(outcome))
}

#[derive(serde::Deserialize, ToSchema)]
struct CrashStale {
    /// Live runs whose last heartbeat is older than this are crashed.
    cutoff: chrono::DateTime<chrono::Utc>,
}

/// Marks CRASHED the live flow runs whose heartbeat is older than `cutoff`
/// (the server also does this by itself on a timer).
#[utoipa::path(
    post, path = "/flow_runs/crash_stale", tag = "flow_runs", request_body = CrashStale,
    responses((status = 200, body = Vec<FlowRun>, description = "the runs marked CRASHED"))
)]
async fn crash_stale_runs(State(db): Db, Json(req): Json<CrashStale>) -> ApiResult<Vec<FlowRun>> {
    Ok(Json(db.crash_stale_runs(req.cutoff).await?))
}

/// Creates SCHEDULED runs, skipping those whose idempotency key exists;
/// answers how many were created.
#[utoipa::path(
    post, path = "/flow_runs/enqueue", tag = "flow_runs", request_body = Vec<FlowRun>,
    responses((status = 200, body = usize))
)]
async fn enqueue_runs(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Json(runs): Json<Vec<FlowRun>>,
) -> ApiResult<usize> {
    if let Some(bad) = runs.iter().find(|r| r.state.state_type != headwater_core::StateType::Scheduled) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("run '{}' is not SCHEDULED", bad.name)));
    }
    let created = db.enqueue_runs(&runs).await?;
    if created > 0 {
        wake.notify_waiters();
    }
    Ok(Json(created))
}

/// Renames `Late` the scheduled runs due before `cutoff` that no worker has
/// started (the server also does this on its own).
#[utoipa::path(
    post, path = "/flow_runs/mark_late", tag = "flow_runs", request_body = CrashStale,
    responses((status = 200, body = Vec<FlowRun>, description = "the runs marked Late"))
)]
async fn mark_late_runs(State(db): Db, Json(req): Json<CrashStale>) -> ApiResult<Vec<FlowRun>> {
    Ok(Json(db.mark_late_runs(req.cutoff).await?))
}

/// How many SCHEDULED runs wait in each work pool and queue, the Late apart.
#[utoipa::path(
    get, path = "/flow_runs/waiting", tag = "flow_runs",
    responses((status = 200, body = Vec<headwater_store::WaitingRuns>))
)]
async fn waiting_runs(State(db): Db) -> ApiResult<Vec<headwater_store::WaitingRuns>> {
    Ok(Json(db.waiting_runs().await?))
}

/// Cancels a flow run: a scheduled one at once (CANCELLED), a running one is
/// asked to stop (CANCELLING) and its process ends it CANCELLED.
#[utoipa::path(
    post, path = "/flow_runs/{id}/cancel", tag = "flow_runs",
    params(("id" = Uuid, Path, description = "flow run id")),
    responses(
        (status = 200, body = FlowRun, description = "the run in its new state"),
        (status = 404, description = "no such flow run"),
        (status = 409, description = "the run is already over")
    )
)]
async fn cancel_flow_run(State(db): Db, Path(id): Path<Uuid>) -> ApiResult<FlowRun> {
    Ok(Json(move_run(db.as_ref(), id, |_| Ok(()), headwater_core::transition::cancellation).await?))
}

/// A person's request for a run (cancel, retry, pause, resume): reads the
/// run, checks `allowed`, asks `next` for the state it moves to, and records
/// it. A run that cannot make that move is a 409 saying why.
async fn move_run(
    db: &dyn Store,
    id: Uuid,
    allowed: impl FnOnce(&FlowRun) -> Result<(), String>,
    next: impl FnOnce(
        &str,
        headwater_core::StateType,
        chrono::DateTime<chrono::Utc>,
    ) -> Result<headwater_core::State, headwater_core::CoreError>,
) -> Result<FlowRun, ApiError> {
    let run = db.read_flow_run(id).await?.ok_or_else(|| ApiError::not_found(format!("no flow run with id {id}")))?;
    allowed(&run).map_err(|why| ApiError::new(StatusCode::CONFLICT, why))?;
    let state = next(&format!("flow run '{}'", run.name), run.state.state_type, chrono::Utc::now())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok(record_flow_run_state(db, run, state).await?)
}

/// Holds a run that has not started (PAUSED): no worker takes it until it is
/// resumed.
#[utoipa::path(
    post, path = "/flow_runs/{id}/pause", tag = "flow_runs",
    params(("id" = Uuid, Path, description = "flow run id")),
    responses(
        (status = 200, body = FlowRun, description = "the run, paused"),
        (status = 404, description = "no such flow run"),
        (status = 409, description = "the run has started (cancel it instead) or is over")
    )
)]
async fn pause_flow_run(State(db): Db, Path(id): Path<Uuid>) -> ApiResult<FlowRun> {
    Ok(Json(move_run(db.as_ref(), id, |_| Ok(()), headwater_core::transition::pause_request).await?))
}

/// Releases a paused run: SCHEDULED again, due at once.
#[utoipa::path(
    post, path = "/flow_runs/{id}/resume", tag = "flow_runs",
    params(("id" = Uuid, Path, description = "flow run id")),
    responses(
        (status = 200, body = FlowRun, description = "the run, scheduled"),
        (status = 404, description = "no such flow run"),
        (status = 409, description = "the run is not paused")
    )
)]
async fn resume_flow_run(State(db): Db, Extension(wake): Extension<Wake>, Path(id): Path<Uuid>) -> ApiResult<FlowRun> {
    let run = move_run(db.as_ref(), id, |_| Ok(()), headwater_core::transition::resume).await?;
    wake.notify_waiters();
    Ok(Json(run))
}

/// How many runs were created in each of `buckets` equal spans of
/// `[since, until)`, by state type (the dashboard's chart).
#[utoipa::path(
    get, path = "/flow_runs/history", tag = "flow_runs",
    params(headwater_store::HistoryQuery),
    responses((status = 200, body = Vec<HistoryBucket>))
)]
async fn flow_run_history(State(db): Db, Query(q): Query<HistoryQuery>) -> ApiResult<Vec<HistoryBucket>> {
    Ok(Json(db.flow_run_history(&q).await?))
}

/// Runs a finished deployment run again: back in its pool as AwaitingRetry.
#[utoipa::path(
    post, path = "/flow_runs/{id}/retry", tag = "flow_runs",
    params(("id" = Uuid, Path, description = "flow run id")),
    responses(
        (status = 200, body = FlowRun, description = "the run, scheduled again"),
        (status = 404, description = "no such flow run"),
        (status = 409, description = "the run is not finished, or no deployment started it")
    )
)]
async fn retry_flow_run(State(db): Db, Extension(wake): Extension<Wake>, Path(id): Path<Uuid>) -> ApiResult<FlowRun> {
    let from_a_deployment = |run: &FlowRun| match run.work_pool {
        Some(_) => Ok(()),
        None => Err("this run was not started by a deployment; no worker can run it again".to_string()),
    };
    let run = move_run(db.as_ref(), id, from_a_deployment, headwater_core::transition::manual_retry).await?;
    wake.notify_waiters();
    Ok(Json(run))
}
