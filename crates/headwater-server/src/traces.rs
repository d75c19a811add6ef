//! A trace span per API request, named by its route (not its path: ids
//! would make every span name unique), continuing the caller's trace when
//! the request carries a W3C `traceparent`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use headwater_telemetry::TARGET;
use tracing::field::Empty;
use tracing::Instrument;

pub(crate) async fn span(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str());
    let method = req.method().clone();
    // Disabled (and its fields never formatted) unless traces are exported.
    let span = tracing::info_span!(
        target: TARGET,
        "http_request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    if span.is_disabled() {
        return next.run(req).await;
    }
    if let Some(parent) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
        headwater_telemetry::continue_trace(&span, parent);
    }
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
