//! Prefect's REST and websocket API (client 3.x, API 0.8.4), mounted under
//! [`PREFIX`] beside Headwater's own `/api`, over the same store: a Prefect
//! user points `PREFECT_API_URL` at `http://HOST:PORT/prefect/api` and their
//! flows' runs, task runs and logs live in Headwater. What a Prefect client
//! calls is mapped in `../shared/prefect-client/README.md`; the shapes are
//! Prefect's public API, written here from its documentation.

mod blocks;
mod concurrency;
mod deployments;
mod events;
mod resources;
mod runs;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use headwater_store::Store;

use crate::api::Wake;
use crate::error::ApiError;

/// Where the Prefect-compatible API is mounted.
pub const PREFIX: &str = "/prefect/api";

/// Prefect's default flow-run heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(180);

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Compat {
    pub store: Arc<dyn Store>,
    pub access: Arc<crate::auth::Access>,
    pub wake: Wake,
    /// How long a Prefect heartbeat keeps its run alive beyond the server's
    /// heartbeat timeout: the clients' beat interval.
    pub heartbeat_lease: Duration,
    /// Each pool's job template as Prefect's workers set it (they send it
    /// again when they find none, so memory is enough).
    pub job_templates: Arc<std::sync::Mutex<std::collections::HashMap<String, serde_json::Value>>>,
}

/// A JSON body whose errors are Prefect-shaped: 422 with a `detail` that
/// names the field, as Prefect's own server answers.
pub(crate) struct PrefectJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for PrefectJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(PrefectJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body (Content-Type: application/json)",
            )),
            Err(e) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.body_text())),
        }
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::OptionalFromRequest<S> for PrefectJson<T> {
    type Rejection = ApiError;

    /// An empty body is no filter at all.
    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let empty = req.headers().get(axum::http::header::CONTENT_LENGTH).is_some_and(|l| l.as_bytes() == b"0")
            || !req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        if empty {
            return Ok(None);
        }
        <PrefectJson<T> as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

pub(crate) fn router(
    store: Arc<dyn Store>,
    access: Arc<crate::auth::Access>,
    wake: Wake,
    heartbeat_lease: Duration,
) -> Router {
    let compat = Compat { store, access, wake, heartbeat_lease, job_templates: Arc::default() };
    Router::new()
        .route("/admin/version", get(|| async { Json(wire::PREFECT_VERSION) }))
        .route("/health", get(|| async { Json(true) }))
        .route("/hello", get(|| async { Json("👋") }))
        // As Prefect's server answers with CSRF protection off: the client then sends no token.
        .route(
            "/csrf-token",
            get(|| async { ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "CSRF protection is disabled.") }),
        )
        .route("/flows/", post(runs::create_flow))
        .route("/flows/filter", post(runs::filter_flows))
        .route("/flows/{id}", get(runs::read_flow))
        .route("/flows/name/{name}", get(runs::read_flow_by_name))
        .route("/flow_runs/", post(runs::create_flow_run))
        .route("/flow_runs/filter", post(runs::filter_flow_runs))
        .route("/flow_runs/count", post(runs::count_flow_runs))
        .route("/flow_runs/{id}", get(runs::read_flow_run).patch(runs::update_flow_run))
        .route("/flow_runs/{id}/set_state", post(runs::set_flow_run_state))
        .route("/task_runs/", post(runs::create_task_run))
        .route("/task_runs/filter", post(runs::filter_task_runs))
        .route("/task_runs/count", post(runs::count_task_runs))
        .route("/task_runs/{id}", get(runs::read_task_run))
        .route("/task_runs/{id}/set_state", post(runs::set_task_run_state))
        .route("/flow_run_states/", get(runs::read_states))
        .route("/task_run_states/", get(runs::read_states))
        .route("/v2/concurrency_limits/increment-with-lease", post(concurrency::increment_with_lease))
        .route("/v2/concurrency_limits/leases/{id}/renew", post(concurrency::renew_lease))
        .route("/v2/concurrency_limits/decrement-with-lease", post(concurrency::decrement_with_lease))
        .route("/block_types/", post(blocks::create_block_type))
        .route("/block_types/filter", post(blocks::filter_block_types))
        .route("/block_types/{id}", axum::routing::patch(blocks::update_block_type))
        .route("/block_types/slug/{slug}", get(blocks::read_block_type))
        .route(
            "/block_types/slug/{slug}/block_documents/name/{name}",
            get(blocks::read_block_document_by_name),
        )
        .route("/block_schemas/", post(blocks::create_block_schema))
        .route("/block_schemas/checksum/{checksum}", get(blocks::read_block_schema_by_checksum))
        .route("/block_documents/", post(blocks::create_block_document))
        .route("/block_documents/filter", post(blocks::filter_block_documents))
        .route(
            "/block_documents/{id}",
            get(blocks::read_block_document).patch(blocks::update_block_document).delete(blocks::delete_block_document),
        )
        .route("/variables/", post(resources::create_variable))
        .route("/variables/filter", post(resources::filter_variables))
        .route(
            "/variables/name/{name}",
            get(resources::read_variable).patch(resources::update_variable).delete(resources::delete_variable),
        )
        .route("/concurrency_limits/", post(resources::create_tag_limit))
        .route("/concurrency_limits/filter", post(resources::filter_tag_limits))
        .route("/concurrency_limits/tag/{tag}", get(resources::read_tag_limit).delete(resources::delete_tag_limit))
        .route("/work_pools/", post(resources::create_work_pool))
        .route("/work_pools/filter", post(resources::filter_work_pools))
        .route("/work_pools/{name}", get(resources::read_work_pool).patch(resources::update_work_pool))
        .route("/collections/views/aggregate-worker-metadata", get(resources::worker_metadata))
        .route("/deployments/filter", post(deployments::filter_deployments))
        .route("/deployments/", post(deployments::create_deployment))
        .route("/deployments/get_scheduled_flow_runs", post(deployments::served_runs))
        .route(
            "/deployments/{id}",
            get(deployments::read_deployment).patch(deployments::update_deployment).delete(deployments::delete_deployment),
        )
        .route("/deployments/name/{flow}/{name}", get(deployments::read_deployment_by_name))
        .route("/deployments/{id}/create_flow_run", post(deployments::create_deployment_run))
        .route("/work_pools/{name}/get_scheduled_flow_runs", post(deployments::scheduled_runs))
        .route("/work_pools/{name}/workers/heartbeat", post(deployments::worker_heartbeat))
        .route("/work_pools/{name}/workers/filter", post(deployments::filter_workers))
        .route("/work_pools/{name}/queues/filter", post(deployments::filter_queues))
        .route("/work_queues/{id}", get(deployments::read_queue))
        .route("/automations/owned-by/{resource}", axum::routing::delete(deployments::delete_owned_automations))
        .route("/flow_runs/{id}/labels", axum::routing::patch(|| async { StatusCode::NO_CONTENT }))
        // Small bodies everywhere but the routes that take a flow's batches of
        // logs and events (added after this layer, so it does not cover them).
        .layer(tower_http::limit::RequestBodyLimitLayer::new(crate::api::BODY_LIMIT))
        .route("/logs/", post(runs::create_logs))
        .route("/events", post(events::post_events))
        .route("/events/in", get(events::events_in))
        .fallback(|| async {
            ApiError::not_found(
                "Headwater's Prefect-compatible API does not have this endpoint yet (see the README, \"Coming from Prefect\")",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .with_state(compat)
        .layer(axum::extract::DefaultBodyLimit::max(crate::api::BATCH_BODY_LIMIT))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}
