//! Deployments: applied, read, deleted, their schedules, and runs started by hand.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;

use super::json::Json;
use headwater_core::{Deployment, FlowRun};
use headwater_store::Store;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, Db, Wake};
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new()
        .routes(routes!(list_deployments, apply_deployment))
        .routes(routes!(read_deployment, delete_deployment))
        .routes(routes!(run_deployment))
        .routes(routes!(deployment_schedules))
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
async fn apply_deployment(State(db): Db, Json(mut d): Json<Deployment>) -> ApiResult<Deployment> {
    d.validate().map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    // Read-only: a deployment's id is its name's.
    d.id = headwater_core::deployment::deployment_id_for_name(&d.name);
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
    use headwater_store::ops::{start_deployment_run, DeploymentRunError, DeploymentRunRequest};
    let request = DeploymentRunRequest { parameters: req.parameters, idempotency_key: None, check: true };
    let started = start_deployment_run(db.as_ref(), &name, request, None).await.map_err(|e| match e {
        DeploymentRunError::NoDeployment(_) => ApiError::not_found(e.to_string()),
        DeploymentRunError::InvalidParameters(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why),
        DeploymentRunError::Store(e) => e.into(),
    })?;
    wake.notify_waiters();
    Ok((StatusCode::CREATED, Json(started.run)))
}
