//! Work pools, their queues and workers, and the claim a worker makes for its next run.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;

use super::json::Json;
use headwater_core::{FlowRun, WorkPool, WorkQueue, WorkerStatus};
use headwater_store::Store;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, Db, Wake};
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new()
        .routes(routes!(claim_due_run))
        .routes(routes!(list_work_pools, apply_work_pool))
        .routes(routes!(read_work_pool, delete_work_pool))
        .routes(routes!(list_work_queues, apply_work_queue))
        .routes(routes!(delete_work_queue))
        .routes(routes!(worker_heartbeat))
        .routes(routes!(list_workers))
}

/// The longest a claim is held waiting for work.
const MAX_WAIT_MS: u64 = headwater_store::CLAIM_WAIT_MAX.as_millis() as u64;

#[derive(serde::Deserialize, ToSchema)]
struct Claim {
    /// Runs due by this time may be claimed (default: the server's now).
    #[serde(default)]
    now: Option<chrono::DateTime<chrono::Utc>>,
    /// When nothing is due, wait up to this long for work to arrive
    /// instead of answering at once.
    #[serde(default)]
    #[schema(maximum = 30000)] // headwater_store::CLAIM_WAIT_MAX
    wait_ms: u64,
    /// Only these queues of the pool (default: all, by priority).
    #[serde(default)]
    queues: Vec<String>,
}

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
    if req.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("wait_ms: at most {MAX_WAIT_MS}")));
    }
    let wait = std::time::Duration::from_millis(req.wait_ms);
    match claim_waiting(db.as_ref(), &wake, std::slice::from_ref(&pool), &req.queues, req.now, wait).await? {
        Some(run) => Ok(Json(run)),
        None => Err(ApiError::not_found("no run is due")),
    }
}

/// Claims the next due run of the first of `pools` that has one, waiting
/// up to `wait` for one (woken by new work, and looking again as scheduled
/// runs come due by the clock). With `now` given, looks once as of then.
/// Headwater's workers and Prefect's workers and runners
/// (`prefect::deployments`) claim through this.
pub(crate) async fn claim_waiting(
    db: &dyn Store,
    wake: &Wake,
    pools: &[String],
    queues: &[String],
    now: Option<chrono::DateTime<chrono::Utc>>,
    wait: std::time::Duration,
) -> Result<Option<FlowRun>, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    // A poll whose worker went away claims nothing for it (checked between
    // claims: a claim under way finishes).
    let gone = crate::client_gone().unwrap_or_default();
    loop {
        if gone.is_cancelled() {
            return Ok(None);
        }
        // Registered before looking, so a wake between the look and the wait is not lost.
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        for pool in pools {
            let started = std::time::Instant::now();
            let claimed = db.claim_due_run(pool, queues, now.unwrap_or_else(chrono::Utc::now)).await?;
            crate::metrics::claimed(claimed.as_ref(), started.elapsed().as_secs_f64());
            if let Some(run) = claimed {
                return Ok(Some(run));
            }
        }
        if now.is_some() || tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        // Scheduled runs also become due by the clock alone: look again soon.
        let next_look = (tokio::time::Instant::now() + std::time::Duration::from_millis(250)).min(deadline);
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep_until(next_look) => {}
            _ = gone.cancelled() => return Ok(None),
        }
    }
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
    responses((status = 200, body = WorkQueue), (status = 409, description = "no such pool"))
)]
async fn apply_work_queue(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Path(pool): Path<String>,
    Json(mut queue): Json<WorkQueue>,
) -> ApiResult<WorkQueue> {
    // Read-only: the path names the pool.
    queue.work_pool = pool;
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
#[into_params(parameter_in = Query)]
struct WorkersQuery {
    work_pool: Option<String>,
}

#[utoipa::path(get, path = "/workers", tag = "work_pools", params(WorkersQuery), responses((status = 200, body = Vec<WorkerStatus>)))]
async fn list_workers(State(db): Db, Query(q): Query<WorkersQuery>) -> ApiResult<Vec<WorkerStatus>> {
    Ok(Json(db.list_workers(q.work_pool.as_deref()).await?))
}
