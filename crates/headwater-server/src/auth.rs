//! API keys and their roles. With a key configured (`HEADWATER_API_KEY`,
//! an admin key) or a named key issued (`headwater api-key create`), every
//! call of the API but the health check and the API's description needs
//! `Authorization: Bearer KEY` (or `X-API-Key`, or HTTP Basic with the key
//! as the password or the whole string: what Prefect's client sends for
//! `PREFECT_API_AUTH_STRING`), and the key's role must allow the call.
//! Every call that changes something, or reveals a secret, goes to the
//! audit log with the key's name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use headwater_core::{AuditEntry, Role};
use headwater_store::{Store, StoreError};

use crate::audit::AuditTrail;
use crate::error::ApiError;

pub(crate) const OPEN_PATHS: &[&str] = &["/api/health", "/api/openapi.json", "/api/docs"];

/// Websockets of the Prefect-compatible API: a Prefect client sends its key
/// in the first message, not in the upgrade request (see `prefect::events`).
const KEY_IN_FIRST_MESSAGE: &[&str] = &["/prefect/api/events/in", "/prefect/api/events/out"];

/// The name the audit log gives the server's configured key.
pub(crate) const CONFIGURED_KEY: &str = "HEADWATER_API_KEY";

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The key's name; none when the server requires no key.
    pub name: Option<String>,
    pub role: Role,
}

/// Why a caller is not let in.
pub(crate) enum Refusal {
    Missing,
    Invalid,
    /// The store could not say whose the key is.
    Unavailable(StoreError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Missing => {
                ApiError::new(StatusCode::UNAUTHORIZED, "this server requires an API key (Authorization: Bearer …)")
            }
            Refusal::Invalid => ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key"),
            Refusal::Unavailable(e) => {
                tracing::error!("cannot check an API key: {e}");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot check the API key now; try again")
            }
        }
        .into_response()
    }
}

/// The keys and where named ones are kept; whether `/metrics` is open to
/// all; where the audit log goes.
pub(crate) struct Access {
    /// Configured keys: each is an admin key.
    pub keys: Vec<String>,
    /// A key is required even while none is configured or issued.
    pub require_key: bool,
    pub store: Arc<dyn Store>,
    pub metrics_public: bool,
    pub audit: AuditTrail,
    /// Whether named keys are required: see [`Access::keys_required`].
    pub issued: IssuedKeys,
}

/// What this server knows of issued keys, so that a server without keys
/// does not ask its database on every call.
#[derive(Default)]
pub(crate) struct IssuedKeys {
    /// Keys were seen: from then on a key is required (as `require_key`),
    /// even if all are revoked.
    seen: std::sync::atomic::AtomicBool,
    /// None were, at this moment; asked again after [`NO_KEYS_FOR`].
    none_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long "no keys are issued" is believed: a first key issued (by the
/// CLI on the database, or another server) is required within this.
const NO_KEYS_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Access {
    /// Whose `given` credential is. Without one (or with one that is no
    /// key), the caller is let in only while the server requires no key.
    /// Named keys are looked up on every call, so a revoked key stops
    /// working at once, on every server sharing the database.
    pub(crate) async fn identify(&self, given: Option<&str>) -> Result<Caller, Refusal> {
        for candidate in given.into_iter().flat_map(candidates) {
            if self.keys.iter().any(|valid| same(valid.as_bytes(), candidate.as_bytes())) {
                return Ok(Caller { name: Some(CONFIGURED_KEY.into()), role: Role::Admin });
            }
            if candidate.starts_with("hw_") {
                if let Some(key) = self.store.find_api_key(candidate).await.map_err(Refusal::Unavailable)? {
                    return Ok(Caller { name: Some(key.name), role: key.role });
                }
            }
        }
        let required = self.require_key || !self.keys.is_empty() || self.keys_required().await?;
        match (required, given) {
            (false, _) => Ok(Caller { name: None, role: Role::Admin }),
            (true, None) => Err(Refusal::Missing),
            (true, Some(_)) => Err(Refusal::Invalid),
        }
    }
}

impl Access {
    /// Whether named keys exist (or existed while this server ran).
    async fn keys_required(&self) -> Result<bool, Refusal> {
        use std::sync::atomic::Ordering;
        if self.issued.seen.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let fresh = |at: &Option<std::time::Instant>| at.is_some_and(|at| at.elapsed() < NO_KEYS_FOR);
        if fresh(&self.issued.none_at.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(false);
        }
        let any = self.store.has_api_keys().await.map_err(Refusal::Unavailable)?;
        if any {
            self.issued.seen.store(true, Ordering::Relaxed);
        } else {
            *self.issued.none_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        }
        Ok(any)
    }
}

/// What a credential may be: the key itself, or a Prefect auth string
/// `user:KEY` by its password.
fn candidates(given: &str) -> impl Iterator<Item = &str> {
    let given = given.trim();
    std::iter::once(given).chain(given.split_once(':').map(|(_, password)| password.trim()))
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

/// The calls that change something but need only the run role: what flows
/// and workers report and ask for, and starting, cancelling and retrying
/// runs. `*` is one path segment. Both APIs' paths, without their prefix.
const RUN_CALLS: &[(&str, &str)] = &[
    // Headwater's API.
    ("POST", "batches"),
    ("POST", "flow_runs/enqueue"),
    ("POST", "flow_runs/crash_stale"),
    ("POST", "flow_runs/mark_late"),
    ("POST", "flow_runs/*/cancel"),
    ("POST", "flow_runs/*/pause"),
    ("POST", "flow_runs/*/resume"),
    ("POST", "flow_runs/*/retry"),
    ("POST", "deployments/*/runs"),
    ("POST", "work_pools/*/claim"),
    ("POST", "work_pools/*/workers/*/heartbeat"),
    ("POST", "concurrency_leases"),
    ("POST", "concurrency_leases/*/renew"),
    ("DELETE", "concurrency_leases/*"),
    ("POST", "datasets/versions"),
    ("POST", "datasets/source_checks"),
    ("POST", "backfills"),
    ("PUT", "backfill_records/*"),
    ("POST", "backfills/*/cancel"),
    ("POST", "backfills/*/retry-failed"),
    // Prefect's.
    ("POST", "flows"),
    ("POST", "flow_runs"),
    ("PATCH", "flow_runs/*"),
    ("PATCH", "flow_runs/*/labels"),
    ("POST", "flow_runs/*/set_state"),
    ("POST", "task_runs"),
    ("POST", "task_runs/*/set_state"),
    ("POST", "logs"),
    ("POST", "events"),
    ("POST", "v2/concurrency_limits/increment-with-lease"),
    ("POST", "v2/concurrency_limits/decrement-with-lease"),
    ("POST", "v2/concurrency_limits/leases/*/renew"),
    ("POST", "deployments/*/create_flow_run"),
    ("POST", "deployments/get_scheduled_flow_runs"),
    ("POST", "work_pools/*/get_scheduled_flow_runs"),
    ("POST", "work_pools/*/workers/heartbeat"),
];

/// Reads of who may do what and who did: admin only.
const ADMIN_READS: &[&str] = &["api_keys", "audit"];

/// The API path without its prefix or trailing slash; none outside the APIs.
fn api_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(crate::prefect::PREFIX).or_else(|| path.strip_prefix("/api"))?;
    Some(rest.trim_matches('/'))
}

fn matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut s) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Whether a call only reads: GETs, and the POSTs that are queries.
fn reads(method: &Method, path: &str) -> bool {
    let query = path.rsplit('/').next().is_some_and(|last| matches!(last, "filter" | "count" | "written_by"));
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || (*method == Method::POST && query)
}

/// Whether a call asks for secrets in clear (a block revealed). The query
/// is decoded as the handlers decode it (`reveal=%74rue` is `true`); one
/// that cannot be decoded counts as asking if it names the parameter.
fn reveals(query: Option<&str>) -> bool {
    let Some(query) = query else { return false };
    let asks = |name: &str| matches!(name, "reveal" | "include_secrets");
    let decoded = format!("/?{query}")
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok());
    match decoded {
        Some(axum::extract::Query(pairs)) => pairs.iter().any(|(k, v)| asks(k) && v != "false"),
        None => query.contains("reveal") || query.contains("include_secrets"),
    }
}

/// The role a call needs: read for reads, run for [`RUN_CALLS`], admin for
/// every other change, for secrets revealed, and for keys and the audit log.
pub(crate) fn required_role(method: &Method, path: &str, query: Option<&str>) -> Role {
    let Some(api) = api_path(path) else { return Role::Admin };
    let first = api.split('/').next().unwrap_or_default();
    if reveals(query) || (ADMIN_READS.contains(&first) && api != "api_keys/me") {
        return Role::Admin;
    }
    if reads(method, api) {
        return Role::Read;
    }
    if RUN_CALLS.iter().any(|(m, pattern)| method.as_str() == *m && matches(pattern, api)) {
        Role::Run
    } else {
        Role::Admin
    }
}

/// Whether the audit log records a call: every change, every secret revealed.
fn audited(method: &Method, path: &str, query: Option<&str>) -> bool {
    reveals(query) || api_path(path).is_some_and(|api| !reads(method, api))
}

pub(crate) async fn require_key(State(access): State<Arc<Access>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let scrape = path == "/metrics";
    if !(guarded(&path) || scrape) || (scrape && access.metrics_public) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(credential)
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_string));
    let caller = match access.identify(given.as_deref()).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_string);
    let needed = if scrape { Role::Read } else { required_role(&method, &path, query.as_deref()) };
    let audited = audited(&method, &path, query.as_deref());
    let key = caller.name.clone();
    let response = if caller.role.allows(needed) {
        req.extensions_mut().insert(caller);
        next.run(req).await
    } else {
        let message = format!(
            "the key '{}' has the role {}; {method} {path} needs {needed} (see `headwater api-key create --role`)",
            caller.name.as_deref().unwrap_or_default(),
            caller.role
        );
        ApiError::new(StatusCode::FORBIDDEN, message).into_response()
    };
    // Refused attempts too: they are what an audit is for.
    if audited {
        let status = response.status().as_u16();
        let entry = AuditEntry { id: 0, at: chrono::Utc::now(), key, method: method.to_string(), path, status };
        access.audit.record(entry).await;
    }
    response
}

/// Compares without stopping at the first difference, so response time
/// does not tell how much of a guessed key was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_apis_are_guarded_but_not_the_ui() {
        assert!(guarded("/api/flow_runs/filter"));
        assert!(guarded("/prefect/api/flow_runs/"));
        assert!(guarded("/prefect/api"));
        assert!(!guarded("/prefect/api/events/in"), "its key comes in the first message");
        assert!(!guarded("/api/health"));
        assert!(!guarded("/runs"));
        assert!(!guarded("/prefectx/api/flows"));
    }

    #[test]
    fn prefect_auth_strings_count_by_their_password() {
        assert_eq!(candidates("k-1").collect::<Vec<_>>(), ["k-1"]);
        assert_eq!(candidates("admin:k-1").collect::<Vec<_>>(), ["admin:k-1", "k-1"]);
        assert_eq!(credential("Basic YWRtaW46ay0x").as_deref(), Some("admin:k-1"));
        assert_eq!(credential("Bearer k-1").as_deref(), Some("k-1"));
        assert_eq!(credential("Basic !!!"), None);
    }

    #[test]
    fn keys_compare_exactly() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn each_call_needs_the_role_its_kind_of_work_does() {
        let role = |m: Method, p: &str, q: Option<&str>| required_role(&m, p, q);
        // Reads, and the queries sent as POSTs.
        assert_eq!(role(Method::GET, "/api/flow_runs/abc", None), Role::Read);
        assert_eq!(role(Method::POST, "/api/flow_runs/filter", None), Role::Read);
        assert_eq!(role(Method::POST, "/prefect/api/task_runs/count", None), Role::Read);
        assert_eq!(role(Method::GET, "/api/api_keys/me", None), Role::Read);
        // What flows and workers do.
        assert_eq!(role(Method::POST, "/api/batches", None), Role::Run);
        assert_eq!(role(Method::POST, "/api/flow_runs/0190/cancel", None), Role::Run);
        assert_eq!(role(Method::POST, "/api/deployments/etl/runs", None), Role::Run);
        assert_eq!(role(Method::POST, "/api/work_pools/local/claim", None), Role::Run);
        assert_eq!(role(Method::POST, "/api/work_pools/local/workers/w-1/heartbeat", None), Role::Run);
        assert_eq!(role(Method::POST, "/prefect/api/flow_runs/", None), Role::Run);
        assert_eq!(role(Method::POST, "/prefect/api/task_runs/x/set_state", None), Role::Run);
        assert_eq!(role(Method::POST, "/prefect/api/work_pools/p/get_scheduled_flow_runs", None), Role::Run);
        // Everything else that changes something, secrets, keys, the log.
        assert_eq!(role(Method::PUT, "/api/deployments", None), Role::Admin);
        assert_eq!(role(Method::PUT, "/api/blocks", None), Role::Admin);
        assert_eq!(role(Method::DELETE, "/api/flow_runs/abc", None), Role::Admin);
        assert_eq!(role(Method::POST, "/api/retention/prune", None), Role::Admin);
        assert_eq!(role(Method::POST, "/prefect/api/deployments/", None), Role::Admin);
        assert_eq!(role(Method::POST, "/prefect/api/block_documents/", None), Role::Admin);
        assert_eq!(role(Method::GET, "/api/blocks/gcs", Some("reveal=true")), Role::Admin);
        assert_eq!(role(Method::GET, "/api/blocks/gcs", Some("reveal=false")), Role::Read);
        assert_eq!(role(Method::GET, "/api/blocks/gcs", Some("reveal=%74rue")), Role::Admin, "decoded first");
        assert_eq!(role(Method::GET, "/api/blocks/gcs", Some("x=1&reveal=true")), Role::Admin);
        assert_eq!(role(Method::GET, "/api/blocks/gcs", Some("reveal=%zz")), Role::Admin);
        assert_eq!(role(Method::GET, "/prefect/api/block_documents/x", Some("include_secrets=true")), Role::Admin);
        assert_eq!(role(Method::GET, "/api/api_keys", None), Role::Admin);
        assert_eq!(role(Method::GET, "/api/audit", Some("limit=5")), Role::Admin);
        // `*` is one whole segment.
        assert_eq!(role(Method::POST, "/api/flow_runs//cancel", None), Role::Admin);
        assert_eq!(role(Method::POST, "/api/work_pools/a/b/claim", None), Role::Admin);
    }

    #[test]
    fn changes_and_reveals_are_audited_reads_are_not() {
        assert!(audited(&Method::POST, "/api/batches", None));
        assert!(audited(&Method::DELETE, "/api/variables/x", None));
        assert!(audited(&Method::GET, "/api/blocks/gcs", Some("reveal=true")));
        assert!(!audited(&Method::GET, "/api/flow_runs/abc", None));
        assert!(!audited(&Method::POST, "/prefect/api/flow_runs/filter", None));
        assert!(!audited(&Method::GET, "/runs", None));
    }
}
