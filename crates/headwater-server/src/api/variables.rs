//! Variables.

use std::sync::Arc;

use super::json::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use headwater_core::Variable;
use headwater_store::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, Db};
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new().routes(routes!(list_variables, set_variable)).routes(routes!(read_variable, delete_variable))
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
