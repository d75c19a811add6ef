//! The routes under `/api`, one small handler each.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::Extension;
use axum::{Json, Router};
use headwater_core::{
    Acquired, Artifact, Automation, BlockDocument, BlockType, ConcurrencyLimit, Dataset, DatasetVersion, Delivery,
    Deployment, Flow, FlowRun, LogRecord, SlotRequest, StateRecord, TaskRun, Variable, WorkPool, WorkQueue,
    WorkerStatus,
};
use headwater_store::{
    record_flow_run_state, ArtifactFilter, Cursor, FlowRunFilter, HistoryBucket, HistoryQuery, LogFilter, Store,
    TimelineEntry, WriteBatch,
};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::ApiError;

type Db = State<Arc<dyn Store>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(OpenApi)]
#[openapi(
    info(title = "Headwater API", description = "Flows, runs, states and logs of the Headwater orchestrator."),
    servers((url = "/api")),
    components(schemas(Cursor, StateRecord, HistoryBucket))
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(version))
        .routes(routes!(list_flows))
        .routes(routes!(read_flow))
        .routes(routes!(filter_flow_runs))
        .routes(routes!(read_flow_run))
        .routes(routes!(resolve_flow_run))
        .routes(routes!(list_task_runs))
        .routes(routes!(run_timeline))
        .routes(routes!(read_states))
        .routes(routes!(filter_logs))
        .routes(routes!(record_batch))
        .routes(routes!(crash_stale_runs))
        .routes(routes!(list_deployments, apply_deployment))
        .routes(routes!(read_deployment, delete_deployment))
        .routes(routes!(enqueue_runs))
        .routes(routes!(run_deployment))
        .routes(routes!(deployment_schedules))
        .routes(routes!(claim_due_run))
        .routes(routes!(mark_late_runs))
        .routes(routes!(list_work_pools, apply_work_pool))
        .routes(routes!(read_work_pool, delete_work_pool))
        .routes(routes!(list_work_queues, apply_work_queue))
        .routes(routes!(delete_work_queue))
        .routes(routes!(worker_heartbeat))
        .routes(routes!(list_workers))
        .routes(routes!(list_block_types, register_block_types))
        .routes(routes!(list_blocks, save_block))
        .routes(routes!(read_block, delete_block))
        .routes(routes!(list_datasets))
        .routes(routes!(read_dataset))
        .routes(routes!(list_partitions))
        .routes(routes!(dataset_history))
        .routes(routes!(record_dataset_write))
        .routes(routes!(list_variables, set_variable))
        .routes(routes!(read_variable, delete_variable))
        .routes(routes!(filter_artifacts))
        .routes(routes!(delete_artifacts))
        .routes(routes!(list_concurrency_limits))
        .routes(routes!(read_concurrency_limit, set_concurrency_limit, delete_concurrency_limit))
        .routes(routes!(reset_concurrency_limit))
        .routes(routes!(acquire_slots))
        .routes(routes!(renew_lease))
        .routes(routes!(release_lease))
        .routes(routes!(list_automations, apply_automation))
        .routes(routes!(read_automation, delete_automation))
        .routes(routes!(pause_automation))
        .routes(routes!(resume_automation))
        .routes(routes!(list_deliveries))
        .routes(routes!(flow_run_events))
        .routes(routes!(flow_run_changes))
        .routes(routes!(flow_run_history))
        .routes(routes!(cancel_flow_run))
        .routes(routes!(retry_flow_run))
        .routes(routes!(pause_flow_run))
        .routes(routes!(resume_flow_run))
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

pub(crate) fn router(store: Arc<dyn Store>, wake: Wake) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let doc = Arc::new(doc);
    let api = api
        .route("/openapi.json", axum::routing::get(move || async move { Json((*doc).clone()) }))
        .route("/docs", axum::routing::get(|| async { Html(DOCS_PAGE) }))
        // Not the UI's page: an API client asking for what does not exist gets a 404.
        .fallback(|| async { ApiError::not_found("no such API endpoint (see /api/docs)") })
        // Recorded batches from busy flows can be large.
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .layer(Extension(wake))
        .with_state(store);
    Router::new().nest("/api", api).merge(crate::ui::router()).layer(tower_http::trace::TraceLayer::new_for_http())
}

#[derive(Serialize, ToSchema)]
struct Health {
    status: &'static str,
}

/// Whether the server is up. Needs no API key.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
struct Version {
    version: &'static str,
    api_version: &'static str,
}

#[utoipa::path(get, path = "/version", tag = "meta", responses((status = 200, body = Version)))]
async fn version() -> Json<Version> {
    Json(Version { version: env!("CARGO_PKG_VERSION"), api_version: "1" })
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
    responses((status = 200, body = Vec<FlowRun>))
)]
async fn filter_flow_runs(State(db): Db, Json(filter): Json<FlowRunFilter>) -> ApiResult<Vec<FlowRun>> {
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
/// SDK sends these in client mode.
#[utoipa::path(
    post, path = "/batches", tag = "runs", request_body = WriteBatch,
    responses((status = 204, description = "recorded"))
)]
async fn record_batch(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Json(batch): Json<WriteBatch>,
) -> Result<StatusCode, ApiError> {
    if let Some(e) = batch.artifacts.iter().find_map(|a| headwater_core::validate_artifact(a).err()) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e));
    }
    db.record(&batch).await?;
    // A run rescheduled, or one ending and freeing a slot: waiting workers look again.
    if batch
        .flow_runs
        .iter()
        .any(|r| r.state.state_type == headwater_core::StateType::Scheduled || r.state.is_terminal())
    {
        wake.notify_waiters();
    }
    Ok(StatusCode::NO_CONTENT)
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

/// Every deployment, by name.
#[utoipa::path(get, path = "/deployments", tag = "deployments", responses((status = 200, body = Vec<Deployment>)))]
async fn list_deployments(State(db): Db) -> ApiResult<Vec<Deployment>> {
    Ok(Json(db.list_deployments().await?))
}

/// Creates or replaces a deployment (what `headwater deploy` sends).
#[utoipa::path(
    put, path = "/deployments", tag = "deployments", request_body = Deployment,
    responses((status = 200, body = Deployment))
)]
async fn apply_deployment(State(db): Db, Json(d): Json<Deployment>) -> ApiResult<Deployment> {
    if d.id != headwater_core::deployment::deployment_id_for_name(&d.name) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "a deployment's id must be derived from its name"));
    }
    Ok(Json(db.apply_deployment(&d).await?))
}

#[utoipa::path(
    get, path = "/deployments/name/{name}", tag = "deployments",
    params(("name" = String, Path)),
    responses((status = 200, body = Deployment), (status = 404, description = "no such deployment"))
)]
async fn read_deployment(State(db): Db, Path(name): Path<String>) -> ApiResult<Deployment> {
    db.read_deployment(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no deployment named '{name}'")))
}

#[utoipa::path(
    delete, path = "/deployments/name/{name}", tag = "deployments",
    params(("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such deployment"))
)]
async fn delete_deployment(State(db): Db, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if db.delete_deployment(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no deployment named '{name}'")))
    }
}

/// One schedule of a deployment, in words, with its next runs.
#[derive(Serialize, ToSchema)]
struct ScheduleView {
    index: usize,
    /// e.g. "At 05:00, on day 1. (America/New_York)".
    description: String,
    active: bool,
    /// The next due times (none when the schedule or the deployment is paused).
    next_runs: Vec<chrono::DateTime<chrono::Utc>>,
}

#[utoipa::path(
    get, path = "/deployments/name/{name}/schedules", tag = "deployments",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<ScheduleView>), (status = 404, description = "no such deployment"))
)]
async fn deployment_schedules(State(db): Db, Path(name): Path<String>) -> ApiResult<Vec<ScheduleView>> {
    let d =
        db.read_deployment(&name).await?.ok_or_else(|| ApiError::not_found(format!("no deployment named '{name}'")))?;
    let now = chrono::Utc::now();
    Ok(Json(
        d.schedules
            .iter()
            .enumerate()
            .map(|(index, s)| ScheduleView {
                index,
                description: s.schedule.describe(),
                active: s.active,
                next_runs: if s.active && !d.paused { s.schedule.next_after(now, 3) } else { Vec::new() },
            })
            .collect(),
    ))
}

#[derive(serde::Deserialize, ToSchema)]
struct RunRequest {
    /// Over the deployment's own parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    parameters: serde_json::Map<String, serde_json::Value>,
}

/// Starts a run of a deployment now (a worker of its pool runs it), with
/// parameters over the deployment's; they are checked against the flow's
/// parameter schema when the flow has reported one, and the error names the
/// field.
#[utoipa::path(
    post, path = "/deployments/{name}/runs", tag = "deployments", request_body = RunRequest,
    params(("name" = String, Path)),
    responses(
        (status = 201, body = FlowRun, description = "the run, scheduled now"),
        (status = 404, description = "no such deployment"),
        (status = 422, description = "a parameter does not fit the flow")
    )
)]
async fn run_deployment(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Path(name): Path<String>,
    Json(req): Json<RunRequest>,
) -> Result<(StatusCode, Json<FlowRun>), ApiError> {
    let d =
        db.read_deployment(&name).await?.ok_or_else(|| ApiError::not_found(format!("no deployment named '{name}'")))?;
    let now = chrono::Utc::now();
    let seed = Uuid::now_v7().as_u128() as u64;
    let run = d.manual_run(&serde_json::Value::Object(req.parameters), now, now, seed);
    if let Some(flow) = db.read_flow(&d.flow_name).await? {
        if flow.parameter_schema.get("properties").is_some() {
            headwater_core::block::check_against_schema(&flow.parameter_schema, &run.parameters)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("parameters.{e}")))?;
        }
    }
    db.enqueue_runs(std::slice::from_ref(&run)).await?;
    wake.notify_waiters();
    Ok((StatusCode::CREATED, Json(run)))
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

#[derive(serde::Deserialize, ToSchema)]
struct Claim {
    /// Runs due by this time may be claimed (default: the server's now).
    #[serde(default)]
    now: Option<chrono::DateTime<chrono::Utc>>,
    /// When nothing is due, wait up to this long for work to arrive (at
    /// most 30 s) instead of answering at once.
    #[serde(default)]
    wait_ms: u64,
    /// Only these queues of the pool (default: all, by priority).
    #[serde(default)]
    queues: Vec<String>,
}

/// Wakes claims that are waiting for work.
pub(crate) type Wake = Arc<tokio::sync::Notify>;

/// A worker takes the next due run of its pool (moved to PENDING); no run
/// is handed out twice. With `wait_ms`, the request is held until a run
/// arrives — workers are woken by new work instead of polling. 404 when
/// none is due.
#[utoipa::path(
    post, path = "/work_pools/{pool}/claim", tag = "work_pools", request_body = Claim,
    params(("pool" = String, Path)),
    responses((status = 200, body = FlowRun), (status = 404, description = "nothing due"))
)]
async fn claim_due_run(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Path(pool): Path<String>,
    Json(req): Json<Claim>,
) -> ApiResult<FlowRun> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(req.wait_ms.min(30_000));
    loop {
        // Registered before looking, so a wake between the look and the wait is not lost.
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = req.now.unwrap_or_else(chrono::Utc::now);
        if let Some(run) = db.claim_due_run(&pool, &req.queues, now).await? {
            return Ok(Json(run));
        }
        if req.now.is_some() || tokio::time::Instant::now() >= deadline {
            return Err(ApiError::not_found("no run is due"));
        }
        // Scheduled runs also become due by the clock alone: look again soon.
        let next_look = (tokio::time::Instant::now() + std::time::Duration::from_millis(250)).min(deadline);
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(next_look) => {}
        }
    }
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

#[utoipa::path(get, path = "/work_pools", tag = "work_pools", responses((status = 200, body = Vec<WorkPool>)))]
async fn list_work_pools(State(db): Db) -> ApiResult<Vec<WorkPool>> {
    Ok(Json(db.list_work_pools().await?))
}

/// Creates or replaces a work pool.
#[utoipa::path(put, path = "/work_pools", tag = "work_pools", request_body = WorkPool, responses((status = 200, body = WorkPool)))]
async fn apply_work_pool(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Json(pool): Json<WorkPool>,
) -> ApiResult<WorkPool> {
    let stored = db.apply_work_pool(&pool).await?;
    // A resumed pool or a raised limit may free runs for waiting workers.
    wake.notify_waiters();
    Ok(Json(stored))
}

#[utoipa::path(
    get, path = "/work_pools/{name}", tag = "work_pools", params(("name" = String, Path)),
    responses((status = 200, body = WorkPool), (status = 404, description = "no such pool"))
)]
async fn read_work_pool(State(db): Db, Path(name): Path<String>) -> ApiResult<WorkPool> {
    db.read_work_pool(&name).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no work pool named '{name}'")))
}

#[utoipa::path(
    delete, path = "/work_pools/{name}", tag = "work_pools", params(("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such pool"))
)]
async fn delete_work_pool(State(db): Db, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if db.delete_work_pool(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no work pool named '{name}'")))
    }
}

/// A pool's queues, by priority (lower first).
#[utoipa::path(
    get, path = "/work_pools/{pool}/queues", tag = "work_pools", params(("pool" = String, Path)),
    responses((status = 200, body = Vec<WorkQueue>))
)]
async fn list_work_queues(State(db): Db, Path(pool): Path<String>) -> ApiResult<Vec<WorkQueue>> {
    Ok(Json(db.list_work_queues(&pool).await?))
}

/// Creates or replaces a queue of the pool.
#[utoipa::path(
    put, path = "/work_pools/{pool}/queues", tag = "work_pools", params(("pool" = String, Path)),
    request_body = WorkQueue,
    responses((status = 200, body = WorkQueue), (status = 409, description = "no such pool"), (status = 422, description = "the queue names another pool"))
)]
async fn apply_work_queue(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Path(pool): Path<String>,
    Json(queue): Json<WorkQueue>,
) -> ApiResult<WorkQueue> {
    if queue.work_pool != pool {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the queue says pool '{}' but was sent to pool '{pool}'", queue.work_pool),
        ));
    }
    let stored = db.apply_work_queue(&queue).await?;
    // A resumed queue or a raised limit may free runs for waiting workers.
    wake.notify_waiters();
    Ok(Json(stored))
}

#[utoipa::path(
    delete, path = "/work_pools/{pool}/queues/{name}", tag = "work_pools",
    params(("pool" = String, Path), ("name" = String, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such queue"),
        (status = 409, description = "the default queue stays")
    )
)]
async fn delete_work_queue(State(db): Db, Path((pool, name)): Path<(String, String)>) -> Result<StatusCode, ApiError> {
    if db.delete_work_queue(&pool, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no queue '{name}' in work pool '{pool}'")))
    }
}

#[utoipa::path(get, path = "/datasets", tag = "datasets", responses((status = 200, body = Vec<Dataset>)))]
async fn list_datasets(State(db): Db) -> ApiResult<Vec<Dataset>> {
    Ok(Json(db.list_datasets().await?))
}

#[utoipa::path(
    get, path = "/datasets/{name}", tag = "datasets", params(("name" = String, Path)),
    responses((status = 200, body = Dataset), (status = 404, description = "no such dataset"))
)]
async fn read_dataset(State(db): Db, Path(name): Path<String>) -> ApiResult<Dataset> {
    db.read_dataset(&name).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no dataset named '{name}'")))
}

/// The current version of each partition.
#[utoipa::path(
    get, path = "/datasets/{name}/partitions", tag = "datasets", params(("name" = String, Path)),
    responses((status = 200, body = Vec<DatasetVersion>))
)]
async fn list_partitions(State(db): Db, Path(name): Path<String>) -> ApiResult<Vec<DatasetVersion>> {
    Ok(Json(db.list_partitions(&name).await?))
}

/// Every version of every partition, newest first.
#[utoipa::path(
    get, path = "/datasets/{name}/history", tag = "datasets", params(("name" = String, Path)),
    responses((status = 200, body = Vec<DatasetVersion>))
)]
async fn dataset_history(State(db): Db, Path(name): Path<String>) -> ApiResult<Vec<DatasetVersion>> {
    Ok(Json(db.dataset_history(&name).await?))
}

#[derive(serde::Deserialize, ToSchema)]
struct DatasetWrite {
    version: DatasetVersion,
    #[serde(default)]
    allow_evolution: bool,
}

/// Records a partition write (the lake writer calls this after the file is in place).
#[utoipa::path(
    post, path = "/datasets/versions", tag = "datasets", request_body = DatasetWrite,
    responses((status = 200, body = DatasetVersion), (status = 409, description = "the schema conflicts"))
)]
async fn record_dataset_write(State(db): Db, Json(w): Json<DatasetWrite>) -> ApiResult<DatasetVersion> {
    Ok(Json(db.record_dataset_write(&w.version, w.allow_evolution).await?))
}

#[utoipa::path(get, path = "/block_types", tag = "blocks", responses((status = 200, body = Vec<BlockType>)))]
async fn list_block_types(State(db): Db) -> ApiResult<Vec<BlockType>> {
    Ok(Json(db.list_block_types().await?))
}

/// Creates or replaces block types (with their JSON Schemas). Headwater's
/// own types belong to the server: a client's copy of one is ignored, so no
/// client (of another version, or a hostile one) can redefine which of its
/// fields are secrets and have them stored unsealed.
#[utoipa::path(
    put, path = "/block_types", tag = "blocks", request_body = Vec<BlockType>,
    responses((status = 204, description = "registered"))
)]
async fn register_block_types(State(db): Db, Json(types): Json<Vec<BlockType>>) -> Result<StatusCode, ApiError> {
    let builtin = headwater_blocks::builtin_types();
    let (own, theirs): (Vec<BlockType>, Vec<BlockType>) =
        types.into_iter().partition(|t| builtin.iter().any(|b| b.slug == t.slug));
    if let Some(changed) = own.iter().find(|t| !builtin.contains(t)) {
        tracing::warn!(
            "a client sent its own definition of the built-in block type '{}'; the server's stays",
            changed.slug
        );
    }
    if !theirs.is_empty() {
        db.register_block_types(&theirs).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Every block, secrets shown as `********`.
#[utoipa::path(get, path = "/blocks", tag = "blocks", responses((status = 200, body = Vec<BlockDocument>)))]
async fn list_blocks(State(db): Db) -> ApiResult<Vec<BlockDocument>> {
    Ok(Json(db.list_blocks().await?))
}

/// Creates or replaces a block, checked against its type; its secrets are
/// sealed under the server's secret key (a secret sent as `********` keeps
/// its stored value). Answers the block with secrets masked.
#[utoipa::path(
    put, path = "/blocks", tag = "blocks", request_body = BlockDocument,
    responses((status = 200, body = BlockDocument), (status = 409, description = "unknown type or invalid data"))
)]
async fn save_block(State(db): Db, Json(block): Json<BlockDocument>) -> ApiResult<BlockDocument> {
    Ok(Json(db.save_block(&block).await?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
struct RevealQuery {
    /// Return secrets in clear (an explicit request; the server's API key
    /// guards it like every call).
    #[serde(default)]
    reveal: bool,
}

#[utoipa::path(
    get, path = "/blocks/{name}", tag = "blocks", params(("name" = String, Path), RevealQuery),
    responses((status = 200, body = BlockDocument), (status = 404, description = "no such block"))
)]
async fn read_block(State(db): Db, Path(name): Path<String>, Query(q): Query<RevealQuery>) -> ApiResult<BlockDocument> {
    if q.reveal {
        tracing::info!("block '{name}' revealed to an API client");
    }
    db.read_block(&name, q.reveal)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no block named '{name}'")))
}

#[utoipa::path(
    delete, path = "/blocks/{name}", tag = "blocks", params(("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such block"))
)]
async fn delete_block(State(db): Db, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if db.delete_block(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no block named '{name}'")))
    }
}

#[utoipa::path(get, path = "/variables", tag = "variables", responses((status = 200, body = Vec<Variable>)))]
async fn list_variables(State(db): Db) -> ApiResult<Vec<Variable>> {
    Ok(Json(db.list_variables().await?))
}

/// Creates or replaces a variable (names: lowercase letters, digits, `_`, `-`).
#[utoipa::path(
    put, path = "/variables", tag = "variables", request_body = Variable,
    responses((status = 200, body = Variable), (status = 422, description = "bad name or value too large"))
)]
async fn set_variable(State(db): Db, Json(v): Json<Variable>) -> ApiResult<Variable> {
    headwater_core::validate_variable(&v).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Json(db.set_variable(&v).await?))
}

#[utoipa::path(
    get, path = "/variables/{name}", tag = "variables", params(("name" = String, Path)),
    responses((status = 200, body = Variable), (status = 404, description = "no such variable"))
)]
async fn read_variable(State(db): Db, Path(name): Path<String>) -> ApiResult<Variable> {
    db.read_variable(&name).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no variable named '{name}'")))
}

#[utoipa::path(
    delete, path = "/variables/{name}", tag = "variables", params(("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such variable"))
)]
async fn delete_variable(State(db): Db, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if db.delete_variable(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no variable named '{name}'")))
    }
}

#[utoipa::path(
    get, path = "/concurrency_limits", tag = "concurrency",
    responses((status = 200, body = Vec<ConcurrencyLimit>))
)]
async fn list_concurrency_limits(State(db): Db) -> ApiResult<Vec<ConcurrencyLimit>> {
    Ok(Json(db.list_concurrency_limits().await?))
}

/// A limit's size (and, for a rate limit, how many slots free themselves per second).
#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct LimitSpec {
    pub limit: u32,
    #[serde(default)]
    pub slot_decay_per_second: Option<f64>,
}

/// Creates or changes a limit; slots already held stay held.
#[utoipa::path(
    put, path = "/concurrency_limits/{name}", tag = "concurrency", params(("name" = String, Path)),
    request_body = LimitSpec,
    responses((status = 200, body = ConcurrencyLimit), (status = 409, description = "an invalid name or size"))
)]
async fn set_concurrency_limit(
    State(db): Db,
    Path(name): Path<String>,
    Json(spec): Json<LimitSpec>,
) -> ApiResult<ConcurrencyLimit> {
    Ok(Json(db.set_concurrency_limit(&name, spec.limit, spec.slot_decay_per_second).await?))
}

#[utoipa::path(
    get, path = "/concurrency_limits/{name}", tag = "concurrency", params(("name" = String, Path)),
    responses((status = 200, body = ConcurrencyLimit), (status = 404, description = "no such limit"))
)]
async fn read_concurrency_limit(State(db): Db, Path(name): Path<String>) -> ApiResult<ConcurrencyLimit> {
    db.read_concurrency_limit(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no concurrency limit named '{name}'")))
}

#[utoipa::path(
    delete, path = "/concurrency_limits/{name}", tag = "concurrency", params(("name" = String, Path)),
    responses((status = 204, description = "deleted, with its leases"), (status = 404, description = "no such limit"))
)]
async fn delete_concurrency_limit(State(db): Db, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if db.delete_concurrency_limit(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no concurrency limit named '{name}'")))
    }
}

/// Frees every slot of the limit; answers how many were held.
#[utoipa::path(
    post, path = "/concurrency_limits/{name}/reset", tag = "concurrency", params(("name" = String, Path)),
    responses((status = 200, body = u32))
)]
async fn reset_concurrency_limit(State(db): Db, Path(name): Path<String>) -> ApiResult<u32> {
    Ok(Json(db.reset_concurrency_limit(&name).await?))
}

/// Takes slots of some limits, all or none: a lease, or which limit is full.
#[utoipa::path(
    post, path = "/concurrency_leases", tag = "concurrency", request_body = SlotRequest,
    responses((status = 200, body = Acquired), (status = 409, description = "a request that can never fit"))
)]
async fn acquire_slots(State(db): Db, Json(request): Json<SlotRequest>) -> ApiResult<Acquired> {
    Ok(Json(db.acquire_slots(&request).await?))
}

/// How long a renewed lease lasts from now.
#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct Renewal {
    pub ttl_ms: u64,
}

/// Extends a lease; false if it expired or was released.
#[utoipa::path(
    post, path = "/concurrency_leases/{id}/renew", tag = "concurrency", params(("id" = Uuid, Path)),
    request_body = Renewal, responses((status = 200, body = bool))
)]
async fn renew_lease(State(db): Db, Path(id): Path<Uuid>, Json(r): Json<Renewal>) -> ApiResult<bool> {
    Ok(Json(db.renew_lease(id, r.ttl_ms).await?))
}

/// Gives a lease's slots back; false if it had expired or was released.
#[utoipa::path(
    delete, path = "/concurrency_leases/{id}", tag = "concurrency", params(("id" = Uuid, Path)),
    responses((status = 200, body = bool))
)]
async fn release_lease(State(db): Db, Path(id): Path<Uuid>) -> ApiResult<bool> {
    Ok(Json(db.release_lease(id).await?))
}

/// Artifacts, newest first: by key (its versions), by flow run, or only the
/// current version of each key.
#[utoipa::path(
    post, path = "/artifacts/filter", tag = "artifacts", request_body = ArtifactFilter,
    responses((status = 200, body = Vec<Artifact>))
)]
async fn filter_artifacts(State(db): Db, Json(filter): Json<ArtifactFilter>) -> ApiResult<Vec<Artifact>> {
    Ok(Json(db.list_artifacts(&filter).await?))
}

/// Deletes every version of a key.
#[utoipa::path(
    delete, path = "/artifacts/{key}", tag = "artifacts", params(("key" = String, Path)),
    responses((status = 200, body = u64, description = "how many versions were deleted"))
)]
async fn delete_artifacts(State(db): Db, Path(key): Path<String>) -> ApiResult<u64> {
    Ok(Json(db.delete_artifacts(&key).await?))
}

#[derive(serde::Deserialize, ToSchema)]
struct Beat {
    at: chrono::DateTime<chrono::Utc>,
}

/// A worker of the pool is alive.
#[utoipa::path(
    post, path = "/work_pools/{pool}/workers/{worker}/heartbeat", tag = "work_pools", request_body = Beat,
    params(("pool" = String, Path), ("worker" = String, Path)),
    responses((status = 204, description = "recorded"))
)]
async fn worker_heartbeat(
    State(db): Db,
    Path((pool, worker)): Path<(String, String)>,
    Json(beat): Json<Beat>,
) -> Result<StatusCode, ApiError> {
    db.worker_heartbeat(&pool, &worker, beat.at).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
struct WorkersQuery {
    work_pool: Option<String>,
}

#[utoipa::path(get, path = "/workers", tag = "work_pools", params(WorkersQuery), responses((status = 200, body = Vec<WorkerStatus>)))]
async fn list_workers(State(db): Db, Query(q): Query<WorkersQuery>) -> ApiResult<Vec<WorkerStatus>> {
    Ok(Json(db.list_workers(q.work_pool.as_deref()).await?))
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
    params(
        ("since" = String, Query, description = "RFC 3339 start"),
        ("until" = String, Query, description = "RFC 3339 end (exclusive)"),
        ("buckets" = u32, Query, description = "1 to 500")
    ),
    responses((status = 200, body = Vec<HistoryBucket>))
)]
async fn flow_run_history(State(db): Db, Query(q): Query<HistoryQuery>) -> ApiResult<Vec<HistoryBucket>> {
    Ok(Json(db.flow_run_history(&q).await?))
}

/// Server-sent events: a `changed` event (with the newest state-history
/// sequence number) whenever any flow run is created or changes state,
/// checked once a second, starting with the current number. List pages
/// follow it to stay current without polling.
#[utoipa::path(
    get, path = "/flow_runs/events", tag = "flow_runs",
    responses((status = 200, description = "text/event-stream of `changed` events"))
)]
async fn flow_run_changes(
    State(db): Db,
) -> Result<
    axum::response::sse::Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let latest = |db: Arc<dyn Store>| async move {
        match db.outbox() {
            Some(outbox) => outbox.last_state_event().await.map_err(ApiError::from),
            None => Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, "this server's store has no state history")),
        }
    };
    let first = latest(db.clone()).await?;
    let stream = futures::stream::unfold((db, None::<i64>, Some(first)), move |(db, sent, mut next)| async move {
        loop {
            let now = match next.take() {
                Some(n) => n,
                None => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    // The store is away: the page reconnects.
                    latest(db.clone()).await.ok()?
                }
            };
            if sent != Some(now) {
                let event = Event::default().event("changed").data(now.to_string());
                return Some((Ok(event), (db, Some(now), None)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
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

#[utoipa::path(get, path = "/automations", tag = "automations", responses((status = 200, body = Vec<Automation>)))]
async fn list_automations(State(db): Db) -> ApiResult<Vec<Automation>> {
    Ok(Json(db.list_automations().await?))
}

/// Creates or replaces an automation (checked: its trigger, its actions and
/// their templates; errors name the field).
#[utoipa::path(
    put, path = "/automations", tag = "automations", request_body = Automation,
    responses((status = 200, body = Automation), (status = 422, description = "not a valid automation"))
)]
async fn apply_automation(State(db): Db, Json(mut a): Json<Automation>) -> ApiResult<Automation> {
    headwater_automations::check(&a).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let now = chrono::Utc::now();
    a.id = headwater_core::automation_id_for_name(&a.name);
    // Times a client leaves out are the server's now; a re-apply keeps the
    // stored creation time either way.
    if a.created == chrono::DateTime::<chrono::Utc>::UNIX_EPOCH {
        a.created = now;
    }
    if a.updated == chrono::DateTime::<chrono::Utc>::UNIX_EPOCH {
        a.updated = now;
    }
    Ok(Json(db.apply_automation(&a).await?))
}

#[utoipa::path(
    get, path = "/automations/{name}", tag = "automations", params(("name" = String, Path)),
    responses((status = 200, body = Automation), (status = 404, description = "no such automation"))
)]
async fn read_automation(State(db): Db, Path(name): Path<String>) -> ApiResult<Automation> {
    db.read_automation(&name).await?.map(Json).ok_or_else(|| no_automation(&name))
}

fn no_automation(name: &str) -> ApiError {
    ApiError::not_found(format!("no automation named '{name}'"))
}

#[utoipa::path(
    delete, path = "/automations/{name}", tag = "automations", params(("name" = String, Path)),
    responses((status = 204, description = "deleted with its deliveries"), (status = 404, description = "no such automation"))
)]
async fn delete_automation(State(db): Db, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if db.delete_automation(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_automation(&name))
    }
}

/// Stops the automation noticing events (those while paused are not caught up).
#[utoipa::path(
    post, path = "/automations/{name}/pause", tag = "automations", params(("name" = String, Path)),
    responses((status = 200, body = Automation), (status = 404, description = "no such automation"))
)]
async fn pause_automation(State(db): Db, Path(name): Path<String>) -> ApiResult<Automation> {
    db.set_automation_enabled(&name, false).await?.map(Json).ok_or_else(|| no_automation(&name))
}

#[utoipa::path(
    post, path = "/automations/{name}/resume", tag = "automations", params(("name" = String, Path)),
    responses((status = 200, body = Automation), (status = 404, description = "no such automation"))
)]
async fn resume_automation(State(db): Db, Path(name): Path<String>) -> ApiResult<Automation> {
    db.set_automation_enabled(&name, true).await?.map(Json).ok_or_else(|| no_automation(&name))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
struct DeliveriesQuery {
    /// At most this many, newest first (default 50).
    limit: Option<u32>,
}

/// An automation's recent deliveries: what it sent or did, for which event,
/// with attempts and the last error.
#[utoipa::path(
    get, path = "/automations/{name}/deliveries", tag = "automations", params(("name" = String, Path), DeliveriesQuery),
    responses((status = 200, body = Vec<Delivery>), (status = 404, description = "no such automation"))
)]
async fn list_deliveries(
    State(db): Db,
    Path(name): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Vec<Delivery>> {
    if db.read_automation(&name).await?.is_none() {
        return Err(no_automation(&name));
    }
    Ok(Json(db.list_deliveries(&name, q.limit.unwrap_or(50).clamp(1, 1000)).await?))
}

/// What a page following a run needs to know has changed.
#[derive(Serialize, PartialEq, Clone)]
struct RunChange {
    state: headwater_core::State,
    /// (task run, state name, attempts) of every task run.
    tasks: Vec<(Uuid, String, u32)>,
    last_log_id: i64,
}

/// The run's state now; logs are read only after `logs_seen`, so
/// following a long run reads each log once.
async fn run_change(
    db: &dyn Store,
    id: Uuid,
    logs_seen: i64,
) -> Result<Option<RunChange>, headwater_store::StoreError> {
    let Some(run) = db.read_flow_run(id).await? else { return Ok(None) };
    let tasks = db.list_task_runs(id).await?.into_iter().map(|t| (t.id, t.state.name, t.run_count)).collect();
    let mut last_log_id = logs_seen;
    loop {
        let filter = LogFilter { after_id: last_log_id, ..LogFilter::for_flow_run(id) };
        let page = db.read_logs(&filter).await?;
        match page.last() {
            Some(l) if page.len() == filter.limit as usize => last_log_id = l.id,
            Some(l) => break last_log_id = l.id,
            None => break,
        }
    }
    Ok(Some(RunChange { state: run.state, tasks, last_log_id }))
}

/// Server-sent events: an `update` event (the run's state, its task runs'
/// states and the newest log id) whenever any of them changes, starting
/// with the current one; the stream ends after the run has finished. Pages
/// follow runs with it instead of polling.
#[utoipa::path(
    get, path = "/flow_runs/{id}/events", tag = "flow_runs",
    params(("id" = Uuid, Path, description = "flow run id")),
    responses((status = 200, description = "text/event-stream of `update` events"), (status = 404, description = "no such flow run"))
)]
async fn flow_run_events(
    State(db): Db,
    Path(id): Path<Uuid>,
) -> Result<
    axum::response::sse::Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let first = run_change(db.as_ref(), id, 0)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no flow run with id {id}")))?;
    // (store, run, what was sent last, whether to stop, whether to wait first)
    let start = (db, id, None::<RunChange>, Some(first), false);
    let stream = futures::stream::unfold(start, |(db, id, sent, mut next, done)| async move {
        if done {
            return None;
        }
        loop {
            let change = match next.take() {
                Some(c) => c,
                None => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let seen = sent.as_ref().map_or(0, |c| c.last_log_id);
                    match run_change(db.as_ref(), id, seen).await {
                        Ok(Some(c)) => c,
                        // The run is gone or the store is away: the page reconnects or reloads.
                        _ => return None,
                    }
                }
            };
            if sent.as_ref() != Some(&change) {
                let finished = change.state.is_terminal();
                let event = Event::default().event("update").json_data(&change).unwrap_or_default();
                return Some((Ok(event), (db, id, Some(change), None, finished)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Lists the API from its own OpenAPI document; no external assets, so it
/// works offline.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Headwater API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b2733}
@media (prefers-color-scheme:dark){body{background:#11161c;color:#dde5ee}code{background:#1f2a36}}
h1{font-size:1.4rem} .op{border-bottom:1px solid #8884;padding:.6rem 0}
.m{display:inline-block;width:4.5rem;font-weight:600;text-transform:uppercase}
code{background:#eef2f6;padding:.1rem .3rem;border-radius:3px} .d{margin:.2rem 0 0 4.5rem;opacity:.8}
</style></head><body>
<h1>Headwater API</h1><p>Machine-readable: <a href="openapi.json"><code>/api/openapi.json</code></a></p>
<div id="ops">Loading…</div>
<script>
fetch('openapi.json').then(r=>r.json()).then(doc=>{
  const ops=document.getElementById('ops'); ops.textContent='';
  for(const [path,item] of Object.entries(doc.paths)){for(const [m,op] of Object.entries(item)){
    const d=document.createElement('div'); d.className='op';
    const s=document.createElement('span'); s.className='m'; s.textContent=m; d.appendChild(s);
    const c=document.createElement('code'); c.textContent='/api'+path; d.appendChild(c);
    const p=document.createElement('div'); p.className='d'; p.textContent=(op.summary||'')+' '+(op.description||''); d.appendChild(p);
    ops.appendChild(d);}}
});
</script></body></html>"#;
