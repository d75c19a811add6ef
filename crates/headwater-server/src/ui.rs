//! The web UI: one page and its script and styles, compiled into the binary
//! (nothing to build with npm, nothing fetched from a CDN). Every path that
//! is not under `/api` answers with the page, which reads the public API
//! like the CLI does; the page itself holds no data, so it needs no key.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// Scripts and styles only from this server; nothing framed elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub(crate) fn router() -> Router {
    Router::new()
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/assets/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        // Where a Prefect client's "View at …" line points (its UI URL is
        // the API's without `/api`): the run's page here.
        .route(
            "/prefect/runs/flow-run/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<uuid::Uuid>| async move {
                axum::response::Redirect::permanent(&format!("/runs/{id}"))
            }),
        )
        .fallback(get(|| async { asset("text/html; charset=utf-8", INDEX) }))
}
