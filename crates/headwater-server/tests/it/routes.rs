//! The client and the server agree on every route: the HTTP client runs the
//! whole conformance suite against the server, and each request it sends
//! must be one of the operations the OpenAPI document (built from the
//! handlers' own attributes) lists. The client spells its paths in its
//! calls and the server in its attributes; this test is what joins them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::{self, Next};
use headwater_client::ApiClient;
use headwater_store::conformance;

/// Operations the HTTP client never calls: the web UI's and people's own
/// (the CLI reaches them through the store traits' other methods or not at
/// all). A new route the client should use must not be added here.
const NOT_CALLED_BY_THE_CLIENT: &[&str] = &[
    "GET /backfills/{name}/report",
    "GET /datasets/{name}/freshness",
    "GET /datasets/{name}/lineage",
    "GET /deployments/name/{name}/partitions",
    "POST /backfills",
    "POST /backfills/{name}/retry-failed",
    "GET /deployments/name/{name}/schedules",
    "GET /flow_runs/events",
    "GET /flow_runs/{id}/events",
    "GET /version",
    "POST /deployments/{name}/runs",
    "POST /flow_runs/{id}/cancel",
    "POST /flow_runs/{id}/pause",
    "POST /flow_runs/{id}/resume",
    "POST /flow_runs/{id}/retry",
];

fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

#[tokio::test]
async fn every_request_of_the_client_is_a_documented_route_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::sealed_sqlite(dir.path()).await;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    let app = headwater_server::app(store, vec!["k-routes".into()]).layer(middleware::from_fn(
        move |req: Request, next: Next| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((req.method().to_string(), req.uri().path().to_string()));
                next.run(req).await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = ApiClient::new(&url, Some("k-routes".into())).unwrap();
    conformance::run_all(&client).await;
    conformance::api_keys_are_hashed_revocable_and_calls_audited(&client).await;
    server.abort();

    let doc = headwater_server::openapi();
    let operations: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            ["GET", "PUT", "POST", "DELETE", "PATCH"]
                .into_iter()
                .filter(|m| item.get(m.to_lowercase()).is_some())
                .map(move |m| (m.to_string(), path.clone()))
        })
        .collect();
    let mut called = BTreeSet::new();
    let seen = seen.lock().unwrap();
    assert!(seen.len() > 100, "the suite sent {} requests", seen.len());
    for (method, path) in seen.iter() {
        let path = path.strip_prefix("/api").unwrap_or_else(|| panic!("{method} {path} is outside /api"));
        let op = operations
            .iter()
            .filter(|(m, t)| m == method && matches(t, path))
            // A fixed segment beats a parameter: `/flow_runs/filter` is not `/flow_runs/{id}`.
            .min_by_key(|(_, t)| t.matches('{').count())
            .unwrap_or_else(|| panic!("the client sent {method} {path}, which the server does not document"));
        called.insert(format!("{} {}", op.0, op.1));
    }
    let mut not_called: Vec<String> = operations
        .iter()
        .map(|(m, t)| format!("{m} {t}"))
        .filter(|op| !called.contains(op) && !op.starts_with("GET /health"))
        .collect();
    not_called.sort();
    let mut expected: Vec<String> = NOT_CALLED_BY_THE_CLIENT.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        not_called, expected,
        "operations of the server the client's conformance run does not reach (a client method with a wrong \
         path, or a route to add to NOT_CALLED_BY_THE_CLIENT if only the UI uses it)"
    );
}
