//! API keys: with keys configured, every call of the API but the health
//! check and the API's description needs `Authorization: Bearer KEY` (or `X-API-Key`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

const OPEN_PATHS: &[&str] = &["/api/health", "/api/openapi.json", "/api/docs"];

pub(crate) async fn require_key(State(keys): State<Arc<Vec<String>>>, req: Request, next: Next) -> Response {
    // The UI's page and assets hold no data (they call the API, with the key).
    let path = req.uri().path();
    if keys.is_empty() || OPEN_PATHS.contains(&path) || !(path == "/api" || path.starts_with("/api/")) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()));
    match given {
        Some(k) if keys.iter().any(|valid| same(valid.as_bytes(), k.trim().as_bytes())) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key").into_response(),
        None => ApiError::new(StatusCode::UNAUTHORIZED, "this server requires an API key (Authorization: Bearer …)")
            .into_response(),
    }
}

/// Compares without stopping at the first difference, so response time
/// does not tell how much of a guessed key was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_compare_exactly() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"abcd"));
    }
}
