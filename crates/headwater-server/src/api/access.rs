//! API keys and the audit log (admin only, but `me`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;

use super::json::Json;
use headwater_core::{ApiKey, AuditEntry, Role};
use headwater_store::{AuditFilter, IssuedKey, Store};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, Db};
use crate::auth::Caller;
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, issue_key))
        .routes(routes!(revoke_key))
        .routes(routes!(whoami))
        .routes(routes!(read_audit, record_audit))
}

#[utoipa::path(
    get, path = "/api_keys", tag = "access",
    responses((status = 200, body = Vec<ApiKey>, description = "every key, revoked ones too"))
)]
async fn list_keys(State(db): Db) -> ApiResult<Vec<ApiKey>> {
    Ok(Json(db.list_api_keys().await?))
}

#[derive(Deserialize, ToSchema)]
struct NewKey {
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    name: String,
    role: Role,
}

/// Makes a named key. Its secret is in this answer only: it is stored as
/// a hash and cannot be shown again.
#[utoipa::path(
    post, path = "/api_keys", tag = "access", request_body = NewKey,
    responses(
        (status = 201, body = IssuedKey),
        (status = 409, description = "a key of that name exists (or existed)"),
        (status = 422, description = "bad name or role"),
    )
)]
async fn issue_key(State(db): Db, Json(new): Json<NewKey>) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    headwater_core::validate_key_name(&new.name).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let issued = db.issue_api_key(&new.name, new.role, chrono::Utc::now()).await?;
    tracing::info!("API key '{}' ({}) issued", issued.key.name, issued.key.role);
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Stops accepting a key, at once; its name stays taken.
#[utoipa::path(
    post, path = "/api_keys/{name}/revoke", tag = "access", params(("name" = String, Path)),
    responses((status = 200, body = ApiKey), (status = 404, description = "no such key"))
)]
async fn revoke_key(State(db): Db, Path(name): Path<String>) -> ApiResult<ApiKey> {
    let key = db.revoke_api_key(&name, chrono::Utc::now()).await?;
    let key = key.ok_or_else(|| ApiError::not_found(format!("no API key named '{name}'")))?;
    tracing::info!("API key '{name}' revoked");
    Ok(Json(key))
}

/// Who the caller is.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct Whoami {
    /// The key's name (`HEADWATER_API_KEY` for the configured key); none
    /// when the server requires no key.
    name: Option<String>,
    role: Role,
    /// The named key, if the caller used one.
    key: Option<ApiKey>,
}

#[utoipa::path(get, path = "/api_keys/me", tag = "access", responses((status = 200, body = Whoami)))]
async fn whoami(State(db): Db, caller: Option<Extension<Caller>>) -> ApiResult<Whoami> {
    let Caller { name, role } = caller.map(|Extension(c)| c).unwrap_or(Caller { name: None, role: Role::Admin });
    let key = match &name {
        Some(n) if n != crate::auth::CONFIGURED_KEY => db.list_api_keys().await?.into_iter().find(|k| &k.name == n),
        _ => None,
    };
    Ok(Json(Whoami { name, role, key }))
}

/// The audit log, newest first: every call that changed something or
/// revealed a secret, with the key that made it.
#[utoipa::path(
    get, path = "/audit", tag = "access", params(AuditFilter),
    responses((status = 200, body = Vec<AuditEntry>), (status = 422, description = "limit or key out of bounds"))
)]
async fn read_audit(State(db): Db, Query(filter): Query<AuditFilter>) -> ApiResult<Vec<AuditEntry>> {
    if filter.limit.is_some_and(|l| l == 0 || l > AuditFilter::MAX_LIMIT) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "limit must be 1 to 1000"));
    }
    if filter.key.as_ref().is_some_and(|k| k.len() > 64) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "key is at most 64 characters"));
    }
    Ok(Json(db.read_audit(&filter).await?))
}

/// Adds entries to the audit log (those of another system, say); the
/// server writes its own.
#[utoipa::path(
    post, path = "/audit", tag = "access", request_body = Vec<AuditEntry>,
    responses((status = 204, description = "recorded"), (status = 422, description = "more than 1000 entries"))
)]
async fn record_audit(State(db): Db, Json(entries): Json<Vec<AuditEntry>>) -> Result<StatusCode, ApiError> {
    if entries.len() > 1000 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "at most 1000 entries a request"));
    }
    db.record_audit(&entries).await?;
    Ok(StatusCode::NO_CONTENT)
}
