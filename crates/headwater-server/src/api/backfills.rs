//! Backfills (runs of a deployment's partitions, each once, at most N at a
//! time) and partition grids.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;

use super::json::Json;
use headwater_core::partition::Backfill;
use headwater_core::FlowRun;
use headwater_store::backfills::{
    self, BackfillError, BackfillOutcome, BackfillReport, BackfillRequest, PartitionGrid,
};
use headwater_store::Store;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiResult, Db, Wake};
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new()
        .routes(routes!(list_backfills, start_backfill))
        .routes(routes!(read_backfill))
        .routes(routes!(backfill_report))
        .routes(routes!(cancel_backfill))
        .routes(routes!(retry_failed))
        .routes(routes!(partition_grid))
        .routes(routes!(latest_partition_runs))
}

/// The route that takes a backfill's runs (the larger body limit).
pub(super) fn batch_routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new().routes(routes!(save_backfill))
}

fn api_error(e: BackfillError) -> ApiError {
    match e {
        BackfillError::NoDeployment(_) | BackfillError::NoBackfill(_) => ApiError::not_found(e.to_string()),
        BackfillError::NotPartitioned(_) | BackfillError::Invalid(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        BackfillError::Store(e) => e.into(),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this deployment's backfills.
    deployment: Option<String>,
}

/// Backfills, newest first.
#[utoipa::path(
    get, path = "/backfills", tag = "backfills", params(ListQuery),
    responses((status = 200, body = Vec<Backfill>))
)]
async fn list_backfills(State(db): Db, Query(q): Query<ListQuery>) -> ApiResult<Vec<Backfill>> {
    Ok(Json(db.list_backfills(q.deployment.as_deref()).await?))
}

/// Plans a backfill of a deployment's partitions and, unless `dry_run`,
/// creates its runs: one per partition without a completed run (by
/// `only`), none for a partition queued or running. Asking again creates
/// nothing twice. The server's claim holds its runs to `max_concurrent`.
#[utoipa::path(
    post, path = "/backfills", tag = "backfills", request_body = BackfillRequest,
    responses(
        (status = 201, body = BackfillOutcome, description = "the backfill and the runs created"),
        (status = 200, body = BackfillOutcome, description = "the plan of a dry run; nothing created"),
        (status = 404, description = "no such deployment"),
        (status = 422, description = "the deployment has no partitions, or the selection is invalid (the field is named)")
    )
)]
async fn start_backfill(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Json(req): Json<BackfillRequest>,
) -> Result<(StatusCode, Json<BackfillOutcome>), ApiError> {
    let outcome = backfills::start_backfill(db.as_ref(), req, chrono::Utc::now()).await.map_err(api_error)?;
    if outcome.dry_run {
        return Ok((StatusCode::OK, Json(outcome)));
    }
    wake.notify_waiters();
    Ok((StatusCode::CREATED, Json(outcome)))
}

#[utoipa::path(
    get, path = "/backfills/{name}", tag = "backfills",
    params(("name" = String, Path, description = "the backfill's name or id")),
    responses((status = 200, body = Backfill), (status = 404, description = "no such backfill"))
)]
async fn read_backfill(State(db): Db, Path(name): Path<String>) -> ApiResult<Backfill> {
    db.read_backfill(&name).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no backfill named '{name}'")))
}

/// A backfill's partitions, each with its latest run, and counts by status.
#[utoipa::path(
    get, path = "/backfills/{name}/report", tag = "backfills",
    params(("name" = String, Path, description = "the backfill's name or id")),
    responses((status = 200, body = BackfillReport), (status = 404, description = "no such backfill"))
)]
async fn backfill_report(State(db): Db, Path(name): Path<String>) -> ApiResult<BackfillReport> {
    Ok(Json(backfills::backfill_report(db.as_ref(), &name).await.map_err(api_error)?))
}

#[derive(Serialize, ToSchema)]
struct Cancelled {
    backfill: Backfill,
    /// Runs cancelled before they started, or asked to stop.
    stopped: usize,
}

/// Cancels a backfill: its queued runs are cancelled, its running ones
/// asked to stop, and no run of it starts any more.
#[utoipa::path(
    post, path = "/backfills/{name}/cancel", tag = "backfills",
    params(("name" = String, Path, description = "the backfill's name or id")),
    responses((status = 200, body = Cancelled), (status = 404, description = "no such backfill"))
)]
async fn cancel_backfill(State(db): Db, Path(name): Path<String>) -> ApiResult<Cancelled> {
    let (backfill, stopped) =
        backfills::cancel_backfill(db.as_ref(), &name, chrono::Utc::now()).await.map_err(api_error)?;
    Ok(Json(Cancelled { backfill, stopped }))
}

/// Queues a new run for each of the backfill's partitions whose latest run
/// failed, crashed or was cancelled.
#[utoipa::path(
    post, path = "/backfills/{name}/retry-failed", tag = "backfills",
    params(("name" = String, Path, description = "the backfill's name or id")),
    responses(
        (status = 200, body = BackfillOutcome),
        (status = 404, description = "no such backfill"),
        (status = 422, description = "its deployment no longer declares those partitions")
    )
)]
async fn retry_failed(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Path(name): Path<String>,
) -> ApiResult<BackfillOutcome> {
    let outcome = backfills::retry_failed(db.as_ref(), &name, chrono::Utc::now()).await.map_err(api_error)?;
    wake.notify_waiters();
    Ok(Json(outcome))
}

/// A deployment's partitions up to the newest complete one, each with its
/// latest run: rows by time, columns by static value.
#[utoipa::path(
    get, path = "/deployments/name/{name}/partitions", tag = "backfills",
    params(("name" = String, Path)),
    responses(
        (status = 200, body = PartitionGrid),
        (status = 404, description = "no such deployment"),
        (status = 422, description = "the deployment declares no partitions")
    )
)]
async fn partition_grid(State(db): Db, Path(name): Path<String>) -> ApiResult<PartitionGrid> {
    Ok(Json(backfills::partition_grid(db.as_ref(), &name, chrono::Utc::now()).await.map_err(api_error)?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PartitionRunsQuery {
    deployment_id: Uuid,
}

/// The latest run of each of a deployment's partitions.
#[utoipa::path(
    get, path = "/partition_runs", tag = "backfills", params(PartitionRunsQuery),
    responses((status = 200, body = Vec<FlowRun>))
)]
async fn latest_partition_runs(State(db): Db, Query(q): Query<PartitionRunsQuery>) -> ApiResult<Vec<FlowRun>> {
    Ok(Json(db.latest_partition_runs(q.deployment_id).await?))
}

/// A backfill and its runs, as a client that planned it records them.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SavedBackfill {
    pub backfill: Backfill,
    pub runs: Vec<FlowRun>,
}

/// Records a backfill with its runs (each created once per idempotency
/// key, each recorded as this backfill's); answers how many runs were
/// created.
#[utoipa::path(
    put, path = "/backfill_records/{id}", tag = "backfills", request_body = SavedBackfill,
    params(("id" = Uuid, Path, description = "the backfill's id (derived from its name)")),
    responses(
        (status = 200, body = usize),
        (status = 409, description = "the path's id is not the id of the backfill's name")
    )
)]
async fn save_backfill(
    State(db): Db,
    Extension(wake): Extension<Wake>,
    Path(id): Path<Uuid>,
    Json(mut body): Json<SavedBackfill>,
) -> ApiResult<usize> {
    let b = &mut body.backfill;
    b.id = headwater_core::partition::backfill_id_for_name(&b.name);
    if id != b.id {
        let refusal = format!("the path names backfill {id}, but backfill '{}' is {}", b.name, b.id);
        return Err(ApiError::new(StatusCode::CONFLICT, refusal));
    }
    for run in &mut body.runs {
        run.backfill_id = Some(id);
    }
    let n = db.save_backfill(&body.backfill, &body.runs).await?;
    wake.notify_waiters();
    Ok(Json(n))
}
