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

/// The body of every error the API answers: what went wrong, in words.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub detail: String,
}

/// The largest plain-text error body turned into JSON (axum's rejections
/// are a line or two).
const REJECTION_TEXT_LIMIT: usize = 16 * 1024;

/// Answers every error as `{"detail": "…"}`: the rejections of axum's
/// extractors (a body that is not JSON, a path parameter that is not an id)
/// and the layers' own answers (413, 503) come as plain text otherwise.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, REJECTION_TEXT_LIMIT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let detail = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let mut answer = Json(ErrorBody { detail }).into_response();
    *answer.status_mut() = status;
    for (k, v) in parts.headers.iter() {
        answer.headers_mut().insert(k.clone(), v.clone());
    }
    answer
}

/// Adds to every operation of `doc` the answers every route may give (an
/// API key missing, a body too large or not JSON, a parameter that is not
/// what the path says, the time limit), each with [`ErrorBody`], where the
/// operation does not say more already. `open` paths need no key.
pub(crate) fn document_common_answers(doc: &mut utoipa::openapi::OpenApi, open: &[&str]) {
    use utoipa::openapi::path::{Operation, ParameterIn};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let answer = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build()
    };
    let add = |op: &mut Operation, status: &str, what: &str| {
        op.responses.responses.entry(status.to_string()).or_insert_with(|| answer(what).into());
    };
    let error_content = || ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    for (path, item) in doc.paths.paths.iter_mut() {
        let full = format!("/api{path}");
        let needs_key = !open.contains(&full.as_str());
        let operations = [
            (axum::http::Method::GET, item.get.as_mut()),
            (axum::http::Method::PUT, item.put.as_mut()),
            (axum::http::Method::POST, item.post.as_mut()),
            (axum::http::Method::DELETE, item.delete.as_mut()),
            (axum::http::Method::PATCH, item.patch.as_mut()),
        ];
        for (method, op) in operations.into_iter().filter_map(|(m, op)| Some((m, op?))) {
            if needs_key {
                add(op, "401", "an API key is required (this server has keys) and was missing or wrong");
                let role = crate::auth::required_role(&method, &full, None);
                let reveals = op.parameters.iter().flatten().any(|p| p.name == "reveal");
                let refused = format!(
                    "the key's role does not allow this call: it needs a {role} key{}",
                    if reveals { " (an admin key with reveal=true)" } else { "" }
                );
                add(op, "403", &refused);
            }
            if op.request_body.is_some() {
                add(op, "400", "the body is not JSON");
                add(op, "413", "the body is larger than this route takes");
                add(op, "415", "the body is not sent as application/json");
                add(op, "422", "the body is JSON but not what the schema says (the detail names the field)");
            }
            let params = op.parameters.as_deref().unwrap_or_default();
            if params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query)) {
                add(op, "400", "a path or query parameter is not of its type");
            }
            add(op, "503", "the database is busy, or the request passed the 60 s time limit: try again");
            for (status, response) in op.responses.responses.iter_mut() {
                let utoipa::openapi::RefOr::T(r) = response else { continue };
                // The errors a route declares itself carry the same body.
                if status.starts_with(['4', '5']) && r.content.is_empty() {
                    r.content.insert("application/json".to_string(), error_content());
                }
                // A number or a flag answered through `Json` is JSON, not the
                // text/plain the generator assumes for primitives.
                if let Some(text) = r.content.shift_remove("text/plain") {
                    r.content.insert("application/json".to_string(), text);
                }
            }
        }
    }
    let schemas = doc.components.get_or_insert_with(Default::default);
    let (name, schema) = {
        use utoipa::{PartialSchema, ToSchema};
        (ErrorBody::name().to_string(), ErrorBody::schema())
    };
    schemas.schemas.entry(name).or_insert(schema);
}
