//! Automations and their deliveries.

use std::sync::Arc;

use super::json::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use headwater_core::{Automation, Delivery};
use headwater_store::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, Db};
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new()
        .routes(routes!(list_automations, apply_automation))
        .routes(routes!(read_automation, delete_automation))
        .routes(routes!(pause_automation))
        .routes(routes!(resume_automation))
        .routes(routes!(list_deliveries))
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
#[into_params(parameter_in = Query)]
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
