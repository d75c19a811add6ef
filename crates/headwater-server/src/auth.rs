//! API keys: with keys configured, every call of the API but the health
//! check and the API's description needs `Authorization: Bearer KEY` (or
//! `X-API-Key`, or HTTP Basic with the key as the password or the whole
//! string: what Prefect's client sends for `PREFECT_API_AUTH_STRING`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub(crate) const OPEN_PATHS: &[&str] = &["/api/health", "/api/openapi.json", "/api/docs"];

/// Websockets of the Prefect-compatible API: a Prefect client sends its key
/// in the first message, not in the upgrade request (see `prefect::events`).
const KEY_IN_FIRST_MESSAGE: &[&str] = &["/prefect/api/events/in", "/prefect/api/events/out"];

/// Whether `given` is one of `keys` (any when none are configured). A
/// Prefect auth string `user:KEY` counts by its password.
pub(crate) fn key_accepted(keys: &[String], given: Option<&str>) -> bool {
    let is_key = |k: &str| keys.iter().any(|valid| same(valid.as_bytes(), k.trim().as_bytes()));
    keys.is_empty()
        || given.is_some_and(|k| is_key(k) || k.split_once(':').is_some_and(|(_, password)| is_key(password)))
}

/// The credential of an `Authorization` header: a bearer token, or what a
/// Basic one encodes.
fn credential(value: &str) -> Option<String> {
    use base64::Engine;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.to_string());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// Whether the API key check applies to `path`: Headwater's API and the
/// Prefect-compatible one; the UI's page and assets hold no data.
fn guarded(path: &str) -> bool {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    (under("/api") || under(crate::prefect::PREFIX))
        && !OPEN_PATHS.contains(&path)
        && !KEY_IN_FIRST_MESSAGE.contains(&path)
}

/// Who may call what: the keys, and whether `/metrics` is open to all.
pub(crate) struct Guard {
    pub keys: Vec<String>,
    pub metrics_public: bool,
}

pub(crate) async fn require_key(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let keys = &guard.keys;
    let path = req.uri().path();
    let scrape_open = path == "/metrics" && guard.metrics_public;
    if keys.is_empty() || scrape_open || !(guarded(path) || path == "/metrics") {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(credential)
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_string));
    match given {
        Some(k) if key_accepted(keys, Some(&k)) => next.run(req).await,
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
    fn both_apis_are_guarded_but_not_the_ui() {
        assert!(super::guarded("/api/flow_runs/filter"));
        assert!(super::guarded("/prefect/api/flow_runs/"));
        assert!(super::guarded("/prefect/api"));
        assert!(!super::guarded("/prefect/api/events/in"), "its key comes in the first message");
        assert!(!super::guarded("/api/health"));
        assert!(!super::guarded("/runs"));
        assert!(!super::guarded("/prefectx/api/flows"));
    }

    #[test]
    fn prefect_auth_strings_count_by_their_password() {
        let keys = vec!["k-1".to_string()];
        assert!(super::key_accepted(&keys, Some("k-1")));
        assert!(super::key_accepted(&keys, Some("admin:k-1")));
        assert!(!super::key_accepted(&keys, Some("k-1:admin")));
        assert!(!super::key_accepted(&keys, None));
        assert_eq!(super::credential("Basic YWRtaW46ay0x").as_deref(), Some("admin:k-1"));
        assert_eq!(super::credential("Bearer k-1").as_deref(), Some("k-1"));
        assert_eq!(super::credential("Basic !!!"), None);
    }

    #[test]
    fn keys_compare_exactly() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"abcd"));
    }
}
