//! Concurrency limits and the leases that hold their slots.

use std::sync::Arc;

use super::json::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use headwater_core::{Acquired, ConcurrencyLimit, SlotRequest};
use headwater_store::Store;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiResult, Db};
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new()
        .routes(routes!(list_concurrency_limits))
        .routes(routes!(read_concurrency_limit, set_concurrency_limit, delete_concurrency_limit))
        .routes(routes!(reset_concurrency_limit))
        .routes(routes!(acquire_slots))
        .routes(routes!(renew_lease))
        .routes(routes!(release_lease))
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
    /// At most a day.
    #[schema(maximum = 86_400_000)]
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
