use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use headwater_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error(
        "refusing to serve {addr} without an API key: anyone who can reach it could read and change runs. \
         Set HEADWATER_API_KEY (or --api-key-file), bind 127.0.0.1, or pass --allow-unauthenticated-remote"
    )]
    UnauthenticatedRemote { addr: SocketAddr },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

/// An API error: a status and a `{"detail": "…"}` body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError { status, detail: detail.into() }
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::FlowRunNotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Ambiguous { .. } | StoreError::Refused(_) => StatusCode::CONFLICT,
            StoreError::Remote { .. } => StatusCode::BAD_GATEWAY,
            e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!("store error: {e}");
        }
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "detail": self.detail }))).into_response()
    }
}
