//! Artifacts published by runs.

use std::sync::Arc;

use super::json::Json;
use axum::extract::{Path, State};
use headwater_core::Artifact;
use headwater_store::{ArtifactFilter, Store};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, Db};

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new().routes(routes!(filter_artifacts)).routes(routes!(delete_artifacts))
}

/// Artifacts, newest first: by key (its versions), by flow run, or only the
/// current version of each key.
#[utoipa::path(
    post, path = "/artifacts/filter", tag = "artifacts", request_body = ArtifactFilter,
    responses((status = 200, body = Vec<Artifact>), (status = 422, description = "limit above 100000"))
)]
async fn filter_artifacts(State(db): Db, Json(filter): Json<ArtifactFilter>) -> ApiResult<Vec<Artifact>> {
    if filter.limit > ArtifactFilter::MAX_LIMIT {
        let refusal = format!("limit is at most {}, not {}", ArtifactFilter::MAX_LIMIT, filter.limit);
        return Err(crate::error::ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, refusal));
    }
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
