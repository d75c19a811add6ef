//! Retention by request: old history deleted in small batches.

use std::sync::Arc;

use super::json::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use headwater_core::retention::PruneKind;
use headwater_store::Store;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, Db};
use crate::error::ApiError;

/// The most records one request deletes (each is one short transaction).
const MOST_PER_REQUEST: u32 = 5_000;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new().routes(routes!(prune))
}

#[derive(Deserialize, ToSchema)]
struct PruneRequest {
    kind: PruneKind,
    /// Records older than this go.
    before: DateTime<Utc>,
    /// At most this many (1 to 5000): a client prunes all by asking again
    /// until fewer come back.
    #[schema(minimum = 1, maximum = 5000)]
    limit: u32,
    /// Count all there are instead of deleting.
    #[serde(default)]
    dry_run: bool,
}

/// Deletes up to `limit` records of a kind older than `before` in one short
/// transaction (never unfinished runs, the latest run of a partition, the
/// latest artifact of a key, or pending deliveries), and answers how many;
/// with `dry_run`, how many there are in all.
#[utoipa::path(
    post, path = "/retention/prune", tag = "retention", request_body = PruneRequest,
    responses((status = 200, body = u64), (status = 422, description = "limit out of range"))
)]
async fn prune(axum::extract::State(db): Db, Json(req): Json<PruneRequest>) -> ApiResult<u64> {
    if req.limit == 0 || req.limit > MOST_PER_REQUEST {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("limit must be 1 to {MOST_PER_REQUEST}, not {}", req.limit),
        ));
    }
    Ok(Json(db.prune(req.kind, req.before, req.limit, req.dry_run).await?))
}
