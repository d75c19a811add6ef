//! The routes under `/api`: one module per resource, each with its handlers
//! and its `routes()`. Handlers stay thin: parse, call the store or an
//! operation (`headwater_store::ops`), answer.

mod access;
mod artifacts;
mod automations;
mod backfills;
mod blocks;
mod concurrency;
mod datasets;
mod deployments;
mod events;
mod json;
mod meta;
mod retention;
mod rules;
mod runs;
mod variables;
pub(crate) mod work_pools;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::Html;
use axum::Extension;
use axum::{Json, Router};
use headwater_core::StateRecord;
use headwater_store::{Cursor, HistoryBucket, Store};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;

type Db = State<Arc<dyn Store>>;
type ApiResult<T> = Result<json::Json<T>, ApiError>;

/// The largest request body most routes take.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;
/// The largest body of the routes that take batches (recorded runs, states
/// and logs of busy flows; runs enqueued in bulk).
pub(crate) const BATCH_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Wakes claims that are waiting for work.
pub(crate) type Wake = Arc<tokio::sync::Notify>;

#[derive(OpenApi)]
#[openapi(
    info(title = "Headwater API", description = "Flows, runs, states and logs of the Headwater orchestrator."),
    servers((url = "/api")),
    components(schemas(Cursor, StateRecord, HistoryBucket))
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meta::routes())
        .merge(access::routes())
        .merge(runs::routes())
        .merge(deployments::routes())
        .merge(work_pools::routes())
        .merge(blocks::routes())
        .merge(datasets::routes())
        .merge(variables::routes())
        .merge(artifacts::routes())
        .merge(concurrency::routes())
        .merge(automations::routes())
        .merge(events::routes())
        .merge(backfills::routes())
        .merge(retention::routes())
        // Small bodies everywhere but where batches need more. A body whose
        // declared length is above the limit is refused with 413 before it
        // is read; one without a length, as soon as it passes the limit.
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .merge(runs::batch_routes().layer(RequestBodyLimitLayer::new(BATCH_BODY_LIMIT)))
        .merge(backfills::batch_routes().layer(RequestBodyLimitLayer::new(BATCH_BODY_LIMIT)))
}

/// The OpenAPI document of the API.
pub fn openapi() -> serde_json::Value {
    documented(api_router().split_for_parts().1)
}

/// The generated document with the answers every route may give and the
/// rules the derived schemas do not say.
fn documented(mut doc: utoipa::openapi::OpenApi) -> serde_json::Value {
    crate::error::document_common_answers(&mut doc, crate::auth::OPEN_PATHS);
    let mut doc = serde_json::to_value(doc).expect("the document is JSON");
    rules::add(&mut doc);
    doc
}

pub(crate) fn router(store: Arc<dyn Store>, wake: Wake) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let doc = Arc::new(documented(doc));
    let api = api
        .route("/openapi.json", axum::routing::get(move || async move { Json((*doc).clone()) }))
        .route("/docs", axum::routing::get(|| async { Html(meta::DOCS_PAGE) }))
        // Not the UI's page: an API client asking for what does not exist gets a 404.
        .fallback(|| async { ApiError::not_found("no such API endpoint (see /api/docs)") })
        // The limits are the layers' above, per route (axum's own default would cut batches).
        .layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT))
        .layer(Extension(wake))
        .with_state(store);
    Router::new().nest("/api", api).merge(crate::ui::router()).layer(tower_http::trace::TraceLayer::new_for_http())
}
