//! Block types and blocks (secrets sealed by the store, masked unless revealed).

use std::sync::Arc;

use super::json::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use headwater_core::{BlockDocument, BlockType};
use headwater_store::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, Db};
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new()
        .routes(routes!(list_block_types, register_block_types))
        .routes(routes!(list_blocks, save_block))
        .routes(routes!(read_block, delete_block))
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
#[into_params(parameter_in = Query)]
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
