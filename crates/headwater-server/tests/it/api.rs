use std::sync::Arc;

use headwater_client::ApiClient;
use headwater_server::{bind, RunningServer, ServerConfig, ServerError};
use headwater_sql::SqliteStore;
use headwater_store::{conformance, RunReader, Store, StoreError};
use headwater_test_support::PgTestDb;

async fn sqlite_server(keys: Vec<String>) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = super::sealed_sqlite(dir.path()).await;
    (RunningServer::start(store, keys).await.unwrap(), dir)
}

/// The API passes the same suite as the stores themselves: whatever a flow
/// records through the server reads back exactly as it would locally.
#[tokio::test]
async fn the_api_over_sqlite_passes_the_conformance_suite() {
    let (server, _dir) = sqlite_server(vec![]).await;
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    conformance::run_all(&client).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_api_over_postgres_passes_the_conformance_suite() {
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    let key = headwater_store::SecretKey::generate();
    let store: Arc<dyn Store> = headwater_sql::open_with_key(&db.url, Some(&key)).await.unwrap();
    let server = RunningServer::start(store, vec![]).await.unwrap();
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    conformance::run_all(&client).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn api_keys_are_required_when_configured() {
    let (server, _dir) = sqlite_server(vec!["k-123".into(), "k-456".into()]).await;
    let anonymous = ApiClient::new(&server.api_url(), None).unwrap();
    anonymous.health().await.expect("health needs no key");
    let err = anonymous.list_flows().await.unwrap_err();
    assert!(matches!(err, StoreError::Remote { status: Some(401), .. }), "{err:?}");
    assert!(err.to_string().contains("requires an API key"), "{err}");
    let wrong = ApiClient::new(&server.api_url(), Some("k-999".into())).unwrap();
    assert!(wrong.list_flows().await.unwrap_err().to_string().contains("invalid API key"));
    for key in ["k-123", "k-456"] {
        let ok = ApiClient::new(&server.api_url(), Some(key.into())).unwrap();
        assert!(ok.list_flows().await.unwrap().is_empty());
    }
    // The X-API-Key header works too.
    let resp = reqwest::Client::new()
        .get(format!("{}/flows", server.api_url()))
        .header("x-api-key", "k-456")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The UI's page needs no key (it holds no data); every API path does,
    // and an unknown one is a JSON 404, not the page.
    let http = reqwest::Client::new();
    let root = format!("http://{}", server.addr);
    for page in ["/", "/runs/123", "/assets/app.js"] {
        let resp = http.get(format!("{root}{page}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{page}");
        assert!(resp.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    }
    for path in ["/api/blocks", "/api/no-such-endpoint", "/api/automations"] {
        assert_eq!(http.get(format!("{root}{path}")).send().await.unwrap().status(), 401, "{path}");
    }
    let unknown = http.get(format!("{root}/api/no-such-endpoint")).bearer_auth("k-123").send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().contains("no such API endpoint"));
}

#[tokio::test]
async fn a_non_loopback_address_needs_a_key_or_an_explicit_yes() {
    let config = ServerConfig { host: "0.0.0.0".into(), port: 0, ..Default::default() };
    let err = bind(&config).await.unwrap_err();
    assert!(matches!(err, ServerError::UnauthenticatedRemote { .. }));
    assert!(err.to_string().contains("Set HEADWATER_API_KEY"), "{err}");
    bind(&ServerConfig { api_keys: vec!["k".into()], ..config.clone() }).await.unwrap();
    bind(&ServerConfig { allow_unauthenticated_remote: true, ..config }).await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let (server, _dir) = sqlite_server(vec!["secret".into()]).await;
    headwater_client::install_tls_provider();
    let http = reqwest::Client::new();
    let doc: serde_json::Value =
        http.get(format!("{}/openapi.json", server.api_url())).send().await.unwrap().json().await.unwrap();
    let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for p in
        ["/health", "/flows", "/flow_runs/filter", "/flow_runs/{id}", "/logs/filter", "/batches", "/states/{run_id}"]
    {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    assert!(doc["components"]["schemas"]["FlowRun"].is_object());
    let page = http.get(format!("{}/docs", server.api_url())).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Headwater API"));
    // Unknown flow runs are a 404 with a detail the CLI can show.
    let resp =
        http.get(format!("{}/flow_runs/resolve/nope", server.api_url())).bearer_auth("secret").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["detail"], "no flow run matches 'nope'");

    // Every operation documents the answers any route may give, with the
    // error body it really sends.
    let filter = &doc["paths"]["/flow_runs/filter"]["post"]["responses"];
    for status in ["200", "400", "401", "413", "415", "422", "503"] {
        assert!(filter[status].is_object(), "POST /flow_runs/filter does not document {status}: {filter}");
    }
    assert_eq!(filter["422"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody");
    assert!(doc["paths"]["/health"]["get"]["responses"]["401"].is_null(), "the health check needs no key");
    // The rules the derived schemas do not say are added where the server enforces them.
    let schemas = &doc["components"]["schemas"];
    let zones = schemas["TimeZone"]["enum"].as_array().unwrap();
    assert!(zones.iter().any(|z| z == "Europe/Berlin") && zones.iter().any(|z| z == "UTC"), "{zones:?}");
    for variant in schemas["Schedule"]["oneOf"].as_array().unwrap() {
        assert_eq!(variant["properties"]["timezone"]["$ref"], "#/components/schemas/TimeZone", "{variant}");
    }
    let labels = schemas["TimePartitions"]["allOf"][1]["oneOf"].as_array().unwrap();
    assert_eq!(labels.len(), 3, "a label form per granularity");
    assert!(schemas["Artifact"]["allOf"][1]["oneOf"].is_array());
    let enqueued = &doc["paths"]["/flow_runs/enqueue"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(enqueued["items"]["allOf"][1]["properties"]["state"]["properties"]["type"]["const"], "SCHEDULED");
    // What the schema says of a claim's wait is what the server refuses.
    assert_eq!(schemas["Claim"]["properties"]["wait_ms"]["maximum"], 30000);
    let too_long = http
        .post(format!("{}/work_pools/p/claim", server.api_url()))
        .bearer_auth("secret")
        .json(&serde_json::json!({"wait_ms": 30001}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), 422);
    assert!(doc["paths"]["/flow_runs/{id}"]["get"]["responses"]["400"].is_object());
    let post = |body: &'static str, content_type: &'static str| {
        http.post(format!("{}/flow_runs/filter", server.api_url()))
            .bearer_auth("secret")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (body, content_type, status) in [
        ("{not json", "application/json", 400),
        (r#"{"limit": "many"}"#, "application/json", 422),
        ("{}", "text/plain", 415),
    ] {
        let resp = post(body, content_type).await.unwrap();
        assert_eq!(resp.status(), status, "{body} as {content_type}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let said: serde_json::Value = resp.json().await.unwrap();
        assert!(said["detail"].as_str().is_some_and(|d| !d.is_empty()), "{said}");
    }
    let bad_id =
        http.get(format!("{}/flow_runs/not-a-uuid", server.api_url())).bearer_auth("secret").send().await.unwrap();
    assert_eq!(bad_id.status(), 400);
    let said: serde_json::Value = bad_id.json().await.unwrap();
    assert!(
        said["detail"].as_str().unwrap().contains("UUID") || said["detail"].as_str().unwrap().contains("uuid"),
        "{said}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_retryable_error() {
    let client = ApiClient::new("http://127.0.0.1:9/api", None).unwrap();
    let err = client.list_flows().await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().starts_with("cannot reach the Headwater server at http://127.0.0.1:9/api"), "{err}");
}

/// The server looks for runs whose process went silent by itself.
#[tokio::test]
async fn the_server_marks_silent_runs_crashed() {
    use chrono::Utc;
    use headwater_core::{FlowRun, State, StateType};
    use headwater_store::{RunRecorder, WriteBatch};

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("hw.db")).await.unwrap());
    let config =
        ServerConfig { port: 0, heartbeat_timeout: std::time::Duration::from_millis(500), ..Default::default() };
    let server = RunningServer::start_with(store.clone(), config).await.unwrap();
    let silent = Utc::now() - chrono::Duration::seconds(10);
    let run = FlowRun {
        start_time: Some(silent),
        heartbeat: Some(silent),
        ..FlowRun::new(uuid::Uuid::now_v7(), "silent", "quiet-wren", State::running(silent), silent)
    };
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    client.record(&WriteBatch { flow_runs: vec![run.clone()], ..Default::default() }).await.unwrap();
    let mut state = StateType::Running;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        state = store.read_flow_run(run.id).await.unwrap().unwrap().state.state_type;
        if state == StateType::Crashed {
            break;
        }
    }
    assert_eq!(state, StateType::Crashed);
    server.stop().await.unwrap();
}

/// With retention configured, the server deletes old finished runs by
/// itself and keeps the young ones and the unfinished.
#[tokio::test]
async fn the_server_prunes_history_past_its_retention() {
    use chrono::Utc;
    use headwater_core::retention::{PruneKind, Retention};
    use headwater_core::{FlowRun, State};
    use headwater_store::WriteBatch;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("hw.db")).await.unwrap());
    let run = |name: &str, state: State, age_days: i64| {
        let at = Utc::now() - chrono::Duration::days(age_days);
        FlowRun::new(uuid::Uuid::now_v7(), "nightly", name, State { timestamp: at, ..state }, at)
    };
    let now = Utc::now();
    let old = run("last-month", State::completed(now), 40);
    let stuck = run("stuck-since-last-month", State::running(now), 40);
    let young = run("yesterday", State::completed(now), 1);
    store
        .record(&WriteBatch { flow_runs: vec![old.clone(), stuck.clone(), young.clone()], ..Default::default() })
        .await
        .unwrap();
    let retention = Retention::default().keep_text(PruneKind::Runs, "30d").unwrap();
    let config = ServerConfig { port: 0, retention, ..Default::default() };
    let server = RunningServer::start_with(store.clone(), config).await.unwrap();
    let mut gone = false;
    for _ in 0..200 {
        if store.read_flow_run(old.id).await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the server pruned the old run");
    assert!(store.read_flow_run(stuck.id).await.unwrap().is_some(), "an unfinished run stays");
    assert!(store.read_flow_run(young.id).await.unwrap().is_some(), "a young run stays");

    // By request too, through the API: a dry run counts, a limit out of range is refused.
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    use headwater_store::HistoryPruner;
    assert_eq!(client.prune(PruneKind::Runs, Utc::now(), 100, true).await.unwrap(), 1, "yesterday's run would go");
    let http = reqwest::Client::new();
    let bad = http
        .post(format!("{}/retention/prune", server.api_url()))
        .json(&serde_json::json!({"kind": "runs", "before": Utc::now(), "limit": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn runs_can_be_cancelled_paused_and_resumed_through_the_api() {
    use headwater_core::State;
    use headwater_store::{RunRecorder, WriteBatch};

    let (server, _dir) = sqlite_server(vec![]).await;
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    let now = chrono::Utc::now();
    let make = |state| super::run_of("f", "r", state, 0, &[]);
    let running = make(State::running(now));
    let done = make(State::completed(now));
    client.record(&WriteBatch { flow_runs: vec![running.clone(), done.clone()], ..Default::default() }).await.unwrap();
    let http = reqwest::Client::new();
    let resp = http.post(format!("{}/flow_runs/{}/cancel", server.api_url(), running.id)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["state"]["type"], "CANCELLING");
    assert_eq!(client.read_flow_run(running.id).await.unwrap().unwrap().state.name, "Cancelling");
    let resp = http.post(format!("{}/flow_runs/{}/cancel", server.api_url(), done.id)).send().await.unwrap();
    assert_eq!(resp.status(), 409);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["detail"], "flow run 'r' is COMPLETED: there is nothing to cancel");

    // Pause holds a run that has not started; resume makes it due at once.
    let waiting = make(State::scheduled(now, now + chrono::Duration::hours(1)));
    client.record(&WriteBatch { flow_runs: vec![waiting.clone()], ..Default::default() }).await.unwrap();
    let post = |id: uuid::Uuid, verb: &'static str| {
        let http = http.clone();
        let url = format!("{}/flow_runs/{id}/{verb}", server.api_url());
        async move {
            let resp = http.post(url).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = post(waiting.id, "resume").await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (409, Some("flow run 'r' is SCHEDULED: only a paused run can be resumed"))
    );
    let (status, body) = post(waiting.id, "pause").await;
    assert_eq!((status, body["state"]["type"].as_str()), (200, Some("PAUSED")));
    let (status, body) = post(waiting.id, "pause").await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(waiting.id, "resume").await;
    assert_eq!((status, body["state"]["name"].as_str()), (200, Some("Scheduled")));
    let due: chrono::DateTime<chrono::Utc> = serde_json::from_value(body["state"]["scheduled_time"].clone()).unwrap();
    assert!(due <= chrono::Utc::now(), "due at once, not in an hour: {due}");
    let history: Vec<String> =
        client.read_states(waiting.id).await.unwrap().into_iter().map(|s| s.state.name).collect();
    assert_eq!(history[history.len() - 2..], ["Paused", "Scheduled"]);
    let (status, _) = post(running.id, "pause").await;
    assert_eq!(status, 409, "a run that has started is cancelled, not paused");
}

/// The list pages' stream: a `changed` event at once, then one whenever a
/// run is created or changes state.
#[tokio::test]
async fn the_runs_stream_announces_each_change() {
    use headwater_core::{RunKind, State, StateRecord};
    use headwater_store::{RunRecorder, WriteBatch};

    let (server, _dir) = sqlite_server(vec![]).await;
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    headwater_client::install_tls_provider();
    let mut resp = reqwest::get(format!("{}/flow_runs/events", server.api_url())).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = next_event(&mut resp).await;
    assert!(first.contains("event: changed") && first.contains("data: 0"), "{first}");
    let run = super::run_of("f", "r", State::running(chrono::Utc::now()), 0, &[]);
    let history = StateRecord { run_id: run.id, kind: RunKind::Flow, state: run.state.clone() };
    client.record(&WriteBatch { flow_runs: vec![run], states: vec![history], ..Default::default() }).await.unwrap();
    let second = next_event(&mut resp).await;
    assert!(second.contains("event: changed") && second.contains("data: 1"), "{second}");
}

/// A worker's claim can wait for work: a run enqueued while it waits is
/// handed to it; with nothing arriving, the wait ends with 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_wait_for_work_to_arrive() {
    use headwater_store::RunQueue;

    let (server, _dir) = sqlite_server(vec![]).await;
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    let doc = serde_json::json!({"deployments": [{"name": "waited", "flow": "f", "entrypoint": "x", "work_pool": {"name": "wp"}}]});
    let now = chrono::Utc::now();
    let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);

    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.claim_or_wait("wp", &[], std::time::Duration::from_secs(10)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let run = d.manual_run(&serde_json::json!({}), chrono::Utc::now(), chrono::Utc::now(), 1);
    assert_eq!(client.enqueue_runs(std::slice::from_ref(&run)).await.unwrap(), 1);
    let got = waiting.await.unwrap().unwrap().expect("the waiting claim got the new run");
    assert_eq!(got.id, run.id);

    let nothing = client.claim_or_wait("wp", &[], std::time::Duration::from_millis(300)).await.unwrap();
    assert!(nothing.is_none());
}

/// A waiting claim whose worker went away (its connection closed) stops
/// waiting: a run enqueued afterwards is left for a worker that is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_worker_went_away_takes_nothing() {
    use headwater_store::{RunQueue, RunReader};

    let (server, _dir) = sqlite_server(vec![]).await;
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    let doc = serde_json::json!({"deployments": [{"name": "left", "flow": "f", "entrypoint": "x", "work_pool": {"name": "wp"}}]});
    let now = chrono::Utc::now();
    let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);

    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.claim_or_wait("wp", &[], std::time::Duration::from_secs(10)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The worker dies: its request is dropped and its connection closed.
    waiting.abort();
    let _ = waiting.await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let run = d.manual_run(&serde_json::json!({}), chrono::Utc::now(), chrono::Utc::now(), 1);
    assert_eq!(client.enqueue_runs(std::slice::from_ref(&run)).await.unwrap(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let state = client.read_flow_run(run.id).await.unwrap().unwrap().state;
    assert_eq!(state.state_type, headwater_core::StateType::Scheduled, "claimed for a worker that is gone: {state}");
    let got = client.claim_or_wait("wp", &[], std::time::Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.map(|r| r.id), Some(run.id), "a live worker gets it");
}

/// Limits and the slots held live in the database: a server restart loses
/// neither (a lease held across it is still held, and still expires).
#[tokio::test]
async fn concurrency_limits_and_leases_survive_a_server_restart() {
    use headwater_core::{Acquired, SlotRequest};
    use headwater_store::ConcurrencyStore;

    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("hw.db")).await.unwrap());
        RunningServer::start(store, vec![]).await.unwrap()
    };
    let server = open().await;
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    client.set_concurrency_limit("extract", 1, None).await.unwrap();
    let ask = SlotRequest { slots: vec![("extract".into(), 1)], holder: "fetch-0".into(), ttl_ms: 60_000 };
    let Acquired::Granted { lease } = client.acquire_slots(&ask).await.unwrap() else { panic!("a free slot") };
    server.stop().await.unwrap();

    let server = open().await;
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    let limit = client.read_concurrency_limit("extract").await.unwrap().unwrap();
    assert_eq!((limit.limit, limit.active_slots), (1, 1));
    assert!(matches!(client.acquire_slots(&ask).await.unwrap(), Acquired::Full { .. }));
    assert!(client.renew_lease(lease.id, 60_000).await.unwrap());
    assert!(client.release_lease(lease.id).await.unwrap());
    assert!(matches!(client.acquire_slots(&ask).await.unwrap(), Acquired::Granted { .. }));
    // A request that can never fit is refused with the reason, not waited for.
    let too_big = SlotRequest { slots: vec![("extract".into(), 2)], ..ask };
    match client.acquire_slots(&too_big).await {
        Err(StoreError::Refused(m)) => assert!(m.contains("allows 1"), "{m}"),
        other => panic!("{other:?}"),
    }
    server.stop().await.unwrap();
}

/// A client cannot redefine a built-in block type (say, without its secret
/// fields marked) to have secrets stored unsealed: the server's definition
/// stays. Types of the client's own are registered as usual.
#[tokio::test]
async fn built_in_block_types_belong_to_the_server() {
    use headwater_core::{BlockDocument, BlockType};
    use headwater_store::BlockStore;

    let (server, _dir) = sqlite_server(vec![]).await;
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    let builtin = headwater_blocks::builtin_types().into_iter().find(|t| t.slug == "aws-credentials").unwrap();
    assert!(!builtin.secret_paths().is_empty());
    let stripped: serde_json::Value =
        serde_json::from_str(&builtin.schema.to_string().replace("\"writeOnly\":true", "\"writeOnly\":false")).unwrap();
    let hostile = BlockType { schema: stripped, ..builtin.clone() };
    assert!(hostile.secret_paths().is_empty());
    let own = BlockType {
        slug: "ftp-server".into(),
        name: "FTP server".into(),
        description: "Files over FTP.".into(),
        schema: serde_json::json!({"type": "object", "properties": {"host": {"type": "string"}}}),
    };
    client.register_block_types(&[hostile, own]).await.unwrap();
    let types = client.list_block_types().await.unwrap();
    assert_eq!(types.iter().find(|t| t.slug == "aws-credentials").unwrap(), &builtin, "the server's definition stays");
    assert!(types.iter().any(|t| t.slug == "ftp-server"), "a type of the client's own is registered");

    let now = chrono::Utc::now();
    let doc = BlockDocument {
        name: "prod".into(),
        block_type: "aws-credentials".into(),
        data: serde_json::json!({"aws_access_key_id": "AKIA1", "aws_secret_access_key": "s3cr3t-Value-9"}),
        created: now,
        updated: now,
    };
    let saved = client.save_block(&doc).await.unwrap();
    assert_eq!(saved.data["aws_secret_access_key"], "********", "still sealed and masked");
    server.stop().await.unwrap();
}

/// The next server-sent event (keep-alive comments skipped), within 10 s.
async fn next_event(resp: &mut reqwest::Response) -> String {
    let mut text = String::new();
    loop {
        while !text.contains("\n\n") {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream goes on");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let (event, rest) = text.split_once("\n\n").unwrap();
        if event.lines().any(|l| l.starts_with("event:")) {
            return event.to_string();
        }
        text = rest.to_string();
    }
}

/// A hostile body cannot stall the server: a 10 MB filter is refused with
/// 413 from its declared length alone (the server answers before the body
/// is even sent), an over-long search text with 422 naming the field, and
/// ordinary requests go on being answered.
#[tokio::test]
async fn hostile_bodies_are_refused_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, _dir) = sqlite_server(vec![]).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /api/flow_runs/filter HTTP/1.1\r\nHost: headwater\r\nContent-Type: application/json\r\n\
                Content-Length: 10485760\r\n\r\n{\"name\": \"xxxx";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tcp.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let http = reqwest::Client::new();
    let url = format!("{}/flow_runs/filter", server.api_url());
    let r = http.post(&url).json(&serde_json::json!({"name": "x".repeat(201)})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let why = r.text().await.unwrap();
    assert!(why.contains("name: 201 characters, at most 200"), "{why}");
    let r = http.post(&url).json(&serde_json::json!({"tags": vec!["t"; 51]})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let r = http.post(&url).json(&serde_json::json!({"name": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The batch route takes more than 1 MiB (here 2 MiB of JSON whitespace).
    let big = format!("{{}}{}", " ".repeat(2 << 20));
    let r = http
        .post(format!("{}/batches", server.api_url()))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 413, "{:?}", r.text().await);
    server.stop().await.unwrap();
}

/// The backfill routes people and the UI use: a plan, the backfill, its
/// report, retry-failed and the partition grid, with 4xx naming the field.
#[tokio::test]
async fn backfills_through_the_api() {
    let (server, _dir) = sqlite_server(vec![]).await;
    let client = ApiClient::new(&server.api_url(), None).unwrap();
    let doc = serde_json::json!({"deployments": [{
        "name": "days", "flow": "daily", "entrypoint": "x", "work_pool": {"name": "p"},
        "partitions": {
            "time": {"every": "day", "start": "2024-02-27", "end": "2024-03-02"},
            "parameters": {"day": "date"}
        }
    }]});
    let d = headwater_core::parse_manifest("headwater.yaml", doc, &|_| None, chrono::Utc::now()).unwrap().remove(0);
    headwater_store::DeploymentStore::apply_deployment(&client, &d).await.unwrap();
    let http = reqwest::Client::new();
    let api = server.api_url();
    let post = |path: &str, body: serde_json::Value| http.post(format!("{api}{path}")).json(&body).send();

    let dry = post("/backfills", serde_json::json!({"deployment": "days", "dry_run": true})).await.unwrap();
    assert_eq!(dry.status(), 200);
    let dry: serde_json::Value = dry.json().await.unwrap();
    assert_eq!(dry["plan"]["to_run"].as_array().unwrap().len(), 5, "{dry}");
    assert_eq!(dry["created"], 0);

    let made = post("/backfills", serde_json::json!({"deployment": "days", "max_concurrent": 2, "name": "feb"}))
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: serde_json::Value = made.json().await.unwrap();
    assert_eq!(made["created"], 5);
    let run =
        headwater_store::RunQueue::claim_due_run(&client, "p", &[], chrono::Utc::now()).await.unwrap().expect("one");
    assert_eq!(run.parameters["day"], run.partition.as_deref().unwrap().trim_start_matches("day="));
    let mut failed = run.clone();
    failed.state = headwater_core::State::failed(chrono::Utc::now(), "no data");
    headwater_store::RunRecorder::record(
        &client,
        &headwater_store::WriteBatch { flow_runs: vec![failed], ..Default::default() },
    )
    .await
    .unwrap();

    let report: serde_json::Value =
        http.get(format!("{api}/backfills/feb/report")).send().await.unwrap().json().await.unwrap();
    assert_eq!(report["counts"]["failed"], 1, "{report}");
    assert_eq!(report["counts"]["in_flight"], 4, "{report}");
    let retried = post("/backfills/feb/retry-failed", serde_json::json!({})).await.unwrap();
    assert_eq!(retried.status(), 200);
    assert_eq!(retried.json::<serde_json::Value>().await.unwrap()["created"], 1);

    let grid = http.get(format!("{api}/deployments/name/days/partitions")).send().await.unwrap();
    assert_eq!(grid.status(), 200);
    let grid: serde_json::Value = grid.json().await.unwrap();
    assert_eq!(grid["times"].as_array().unwrap().len(), 5);
    assert_eq!(grid["counts"]["in_flight"], 5, "{grid}");

    // Bad input: 422 naming the field, 404 for what does not exist; nothing created.
    let bad = post("/backfills", serde_json::json!({"deployment": "days", "selection": {"from": "2024-02-01"}}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let why = bad.json::<serde_json::Value>().await.unwrap()["detail"].as_str().unwrap().to_string();
    assert!(why.starts_with("from: 2024-02-01 is before the partitions' start"), "{why}");
    let zero = post("/backfills", serde_json::json!({"deployment": "days", "max_concurrent": 0})).await.unwrap();
    assert_eq!(zero.status(), 422);
    assert_eq!(post("/backfills", serde_json::json!({"deployment": "nope"})).await.unwrap().status(), 404);
    assert_eq!(http.get(format!("{api}/backfills/nope/report")).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("{api}/deployments/name/nope/partitions")).send().await.unwrap().status(), 404);
    let backfills: Vec<serde_json::Value> =
        http.get(format!("{api}/backfills")).send().await.unwrap().json().await.unwrap();
    assert_eq!(backfills.len(), 1);
    server.stop().await.unwrap();
}

/// `/metrics` in Prometheus' text format: what happened (state moves,
/// claims, requests) and what is (runs waiting and Late per pool and queue,
/// slots, the outbox); behind the API key unless made public.
#[tokio::test]
async fn metrics_count_what_happens_and_show_what_waits() {
    use chrono::Utc;
    use headwater_core::{FlowRun, RunKind, State, StateRecord, WorkPool, WorkPoolKind};
    use headwater_store::{ConcurrencyStore, RunQueue, RunRecorder, WorkPoolStore, WriteBatch};

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("hw.db")).await.unwrap());
    let config = ServerConfig { port: 0, api_keys: vec!["sesame".into()], ..Default::default() };
    let server = RunningServer::start_with(store.clone(), config).await.unwrap();
    headwater_client::install_tls_provider();
    let http = reqwest::Client::new();
    let scrape = |key: Option<&'static str>| {
        let mut req = http.get(format!("http://{}/metrics", server.addr));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move { req.send().await.unwrap() }
    };
    assert_eq!(scrape(None).await.status(), 401, "behind the API key");

    let client = ApiClient::new(&server.api_url(), Some("sesame".into())).unwrap();
    let now = Utc::now();
    let run = |name: &str, state: State, pool: Option<&str>| FlowRun {
        work_pool: pool.map(String::from),
        ..FlowRun::new(uuid::Uuid::now_v7(), "metered", name, state, now)
    };
    // A run reported through its life.
    let mut r = run("metered-1", State::pending(now), None);
    let mut states = vec![];
    for s in [State::pending(now), State::running(now), State::completed(now)] {
        states.push(StateRecord { run_id: r.id, kind: RunKind::Flow, state: s.clone() });
        r.state = s;
    }
    client.record(&WriteBatch { flow_runs: vec![r], states, ..Default::default() }).await.unwrap();
    // Runs waiting in a pool: two due, one of them Late.
    client.apply_work_pool(&WorkPool::new("etl", WorkPoolKind::Process, now)).await.unwrap();
    let due = now - chrono::Duration::minutes(5);
    client
        .enqueue_runs(&[
            run("waits-1", State::scheduled(due, due), Some("etl")),
            run("waits-2", State::late(due, due), Some("etl")),
        ])
        .await
        .unwrap();
    client.set_concurrency_limit("warehouse", 3, None).await.unwrap();

    let text = scrape(Some("sesame")).await.text().await.unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has(r#"headwater_flow_runs_started_total{flow="metered"} 1"#), "{text}");
    assert!(has(r#"headwater_flow_runs_finished_total{flow="metered",state="COMPLETED"} 1"#), "{text}");
    assert!(has(r#"headwater_runs_waiting{pool="etl",queue="default"} 2"#), "{text}");
    assert!(has(r#"headwater_runs_late{pool="etl",queue="default"} 1"#), "{text}");
    assert!(has(r#"headwater_concurrency_slots_limit{limit="warehouse"} 3"#), "{text}");
    assert!(has(r#"headwater_concurrency_slots_in_use{limit="warehouse"} 0"#), "{text}");
    assert!(has(r#"headwater_outbox_deliveries{status="pending"} 0"#), "{text}");
    assert!(
        text.contains(r#"headwater_http_request_seconds_count{route="/api/batches",method="POST",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("# TYPE headwater_http_request_seconds histogram"), "{text}");

    // A claim: the dispatch latency is observed and one run still waits.
    let claimed = client.claim_due_run("etl", &[], Utc::now()).await.unwrap().expect("a due run");
    assert!(claimed.state.scheduled_time.is_some(), "the claimed run keeps when it was due");
    let text = scrape(Some("sesame")).await.text().await.unwrap();
    assert!(text.lines().any(|l| l == r#"headwater_dispatch_seconds_count{pool="etl"} 1"#), "{text}");
    let waiting: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"headwater_runs_waiting{pool="etl",queue="default"} "#))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(waiting, 1);
    server.stop().await.unwrap();

    // Made public, a scraper needs no key (the API still does).
    let config = ServerConfig { port: 0, api_keys: vec!["sesame".into()], metrics_public: true, ..Default::default() };
    let server = RunningServer::start_with(store.clone(), config).await.unwrap();
    let open = http.get(format!("http://{}/metrics", server.addr)).send().await.unwrap();
    assert_eq!(open.status(), 200);
    assert!(open.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let api = http.get(format!("{}/flow_runs/waiting", server.api_url())).send().await.unwrap();
    assert_eq!(api.status(), 401);
}

/// `HEADWATER_API_KEY` stays an admin key beside named keys; the HTTP
/// client manages keys and reads the audit log like the store does.
#[tokio::test]
async fn the_configured_key_is_admin_beside_named_keys_and_keys_are_managed_over_the_api() {
    use headwater_core::Role;
    use headwater_store::{AccessStore, AuditFilter};
    let dir = tempfile::tempdir().unwrap();
    let store = super::sealed_sqlite(dir.path()).await;
    let reader = store.issue_api_key("grafana", Role::Read, chrono::Utc::now()).await.unwrap();
    let server = RunningServer::start(store.clone(), vec!["k-static".into()]).await.unwrap();
    headwater_client::install_tls_provider();
    let http = reqwest::Client::new();
    let api = server.api_url();

    let admin = ApiClient::new(&api, Some("k-static".into())).unwrap();
    let ops = admin.issue_api_key("ops", Role::Admin, chrono::Utc::now()).await.unwrap();
    assert!(ops.secret.starts_with("hw_"));
    assert_eq!(admin.find_api_key(&ops.secret).await.unwrap().map(|k| k.name), Some("ops".into()));
    assert_eq!(admin.find_api_key("hw_0000").await.unwrap(), None);
    let names: Vec<String> = admin.list_api_keys().await.unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["grafana", "ops"]);
    let taken = admin.issue_api_key("ops", Role::Read, chrono::Utc::now()).await.unwrap_err();
    assert!(taken.to_string().contains("exists already"), "{taken}");

    // Reads with the read key; no secret, no change, no key management.
    let as_reader = ApiClient::new(&api, Some(reader.secret.clone())).unwrap();
    assert!(as_reader.list_flows().await.unwrap().is_empty());
    let refused = as_reader.list_api_keys().await.unwrap_err();
    assert!(matches!(refused, StoreError::Remote { status: Some(403), .. }), "{refused:?}");
    assert!(refused.to_string().contains("the key 'grafana' has the role read"), "{refused}");
    let reveal = http.get(format!("{api}/blocks/any?reveal=true")).bearer_auth(&reader.secret).send().await.unwrap();
    assert_eq!(reveal.status(), 403, "revealing a secret needs admin");
    let masked = http.get(format!("{api}/blocks/any")).bearer_auth(&reader.secret).send().await.unwrap();
    assert_eq!(masked.status(), 404, "a read key reads blocks, masked");
    let me: serde_json::Value =
        http.get(format!("{api}/api_keys/me")).bearer_auth(&reader.secret).send().await.unwrap().json().await.unwrap();
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("grafana"), Some("read")));
    let scrape = http.get(format!("http://{}/metrics", server.addr)).bearer_auth(&reader.secret).send().await.unwrap();
    assert_eq!(scrape.status(), 200, "a read key scrapes");

    // Revoked at once.
    assert!(admin.revoke_api_key("grafana", chrono::Utc::now()).await.unwrap().unwrap().revoked.is_some());
    let gone = as_reader.list_flows().await.unwrap_err();
    assert!(matches!(gone, StoreError::Remote { status: Some(401), .. }), "{gone:?}");
    assert_eq!(admin.revoke_api_key("nobody", chrono::Utc::now()).await.unwrap(), None);

    // Audited under the configured key's name; the refused attempt too.
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries = admin.read_audit(&AuditFilter::default()).await.unwrap();
        if entries.iter().any(|e| e.path == "/api/api_keys/grafana/revoke") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let calls: Vec<(Option<&str>, &str, u16)> =
        entries.iter().map(|e| (e.key.as_deref(), e.path.as_str(), e.status)).collect();
    assert!(calls.contains(&(Some("HEADWATER_API_KEY"), "/api/api_keys", 201)), "{calls:?}");
    assert!(calls.contains(&(Some("HEADWATER_API_KEY"), "/api/api_keys", 409)), "{calls:?}");
    assert!(calls.contains(&(Some("grafana"), "/api/blocks/any", 403)), "the reveal attempt: {calls:?}");
    assert!(calls.contains(&(Some("HEADWATER_API_KEY"), "/api/api_keys/grafana/revoke", 200)), "{calls:?}");
    assert!(!calls.iter().any(|(_, path, _)| *path == "/api/flows"), "reads are not audited: {calls:?}");
    let limited = admin.read_audit(&AuditFilter { limit: Some(2), ..Default::default() }).await.unwrap();
    assert_eq!(limited.len(), 2);
    let too_many = http.get(format!("{api}/audit?limit=5000")).bearer_auth("k-static").send().await.unwrap();
    assert_eq!(too_many.status(), 422);
    server.stop().await.unwrap();
    // Written before the server stopped answering.
    let after = store.read_audit(&AuditFilter::default()).await.unwrap();
    assert!(after.len() >= entries.len());
}

/// A server without keys does not ask its database for them on every call,
/// yet a first key issued behind its back (the CLI on the database) is
/// required within a second; revoking every key does not open it again.
#[tokio::test]
async fn a_first_key_issued_while_serving_is_required_soon_and_stays_required() {
    use headwater_core::Role;
    use headwater_store::AccessStore;
    let (server, dir) = sqlite_server(vec![]).await;
    let store = headwater_sql::SqliteStore::open(&dir.path().join("hw.db")).await.unwrap();
    let anonymous = ApiClient::new(&server.api_url(), None).unwrap();
    anonymous.list_flows().await.expect("no key needed yet");
    let key = store.issue_api_key("late", Role::Read, chrono::Utc::now()).await.unwrap();
    let mut refused = None;
    for _ in 0..60 {
        match anonymous.list_flows().await {
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the new key is required within 3 s");
    assert!(matches!(refused, StoreError::Remote { status: Some(401), .. }), "{refused:?}");
    let holder = ApiClient::new(&server.api_url(), Some(key.secret.clone())).unwrap();
    holder.list_flows().await.unwrap();
    store.revoke_api_key("late", chrono::Utc::now()).await.unwrap();
    assert!(holder.list_flows().await.is_err(), "revoked at once");
    let still = anonymous.list_flows().await.unwrap_err();
    assert!(matches!(still, StoreError::Remote { status: Some(401), .. }), "stays required: {still:?}");
    server.stop().await.unwrap();
}
