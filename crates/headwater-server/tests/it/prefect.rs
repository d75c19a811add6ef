//! The Prefect-compatible API over HTTP: its orchestration rules, its
//! answers to bad input, and its API key. (Prefect's own client against it
//! is tested in the CLI's tests, with the real `headwater server start`.)

use headwater_server::RunningServer;
use serde_json::{json, Value};

const KEY: &str = "k-prefect";

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(KEY).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(KEY).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn server() -> (RunningServer, Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = super::sealed_sqlite(dir.path()).await;
    let server = RunningServer::start(store, vec![KEY.into()]).await.unwrap();
    headwater_client::install_tls_provider();
    let api = Api { http: reqwest::Client::new(), base: format!("http://{}/prefect/api", server.addr) };
    (server, api, dir)
}

async fn new_run(api: &Api) -> String {
    let (status, flow) = api.post("/flows/", json!({"name": "rules"})).await;
    assert!(status == 201 || status == 200, "201 new, 200 known: {flow}");
    let (status, again) = api.post("/flows/", json!({"name": "rules"})).await;
    assert_eq!((status, &again["id"]), (200, &flow["id"]), "the same flow, known");
    let (status, run) = api.post("/flow_runs/", json!({"flow_id": flow["id"], "state": {"type": "PENDING"}})).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["state"]["type"], "PENDING");
    run["id"].as_str().unwrap().to_string()
}

async fn propose(api: &Api, run: &str, state: &str, force: bool) -> (u16, Value) {
    api.post(&format!("/flow_runs/{run}/set_state"), json!({"state": {"type": state}, "force": force})).await
}

/// The server decides: the normal path is accepted; a final run does not
/// run again and a cancelling one does not go back to running, forced or
/// not; force lifts the rest of the table.
#[tokio::test]
async fn the_server_decides_state_changes() {
    let (_server, api, _dir) = server().await;
    let run = new_run(&api).await;
    let (status, answer) = propose(&api, &run, "RUNNING", false).await;
    assert_eq!((status, answer["status"].as_str()), (201, Some("ACCEPT")), "{answer}");
    let (_, answer) = propose(&api, &run, "RUNNING", false).await;
    assert_eq!(answer["status"], "REJECT", "running twice: {answer}");
    let (_, answer) = propose(&api, &run, "COMPLETED", false).await;
    assert_eq!(answer["status"], "ACCEPT");
    for force in [false, true] {
        let (status, answer) = propose(&api, &run, "RUNNING", force).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("REJECT")), "force {force}: {answer}");
        assert_eq!(answer["state"]["type"], "COMPLETED", "the answer carries the run's state");
        assert!(answer["details"]["reason"].as_str().unwrap().contains("already COMPLETED"), "{answer}");
    }
    let (_, read) = api.get(&format!("/flow_runs/{run}")).await;
    assert_eq!((read["state_type"].as_str(), read["run_count"].as_u64()), (Some("COMPLETED"), Some(1)));
    // By id, the state filter still applies (Prefect's runners and workers
    // ask this way which of their runs are being cancelled).
    let by = |state: &str| json!({"flow_runs": {"id": {"any_": [run]}, "state": {"type": {"any_": [state]}}}});
    assert_eq!(api.post("/flow_runs/filter", by("CANCELLING")).await, (200, json!([])));
    assert_eq!(api.post("/flow_runs/filter", by("COMPLETED")).await.1.as_array().unwrap().len(), 1);

    let cancelled = new_run(&api).await;
    propose(&api, &cancelled, "RUNNING", false).await;
    let (_, answer) = propose(&api, &cancelled, "CANCELLING", false).await;
    assert_eq!(answer["status"], "ACCEPT");
    for force in [false, true] {
        let (_, answer) = propose(&api, &cancelled, "RUNNING", force).await;
        assert_eq!(answer["status"], "REJECT", "force {force}");
    }
    let (_, answer) = propose(&api, &cancelled, "CANCELLED", false).await;
    assert_eq!(answer["status"], "ACCEPT");
}

/// Bad input gets a clear 4xx naming what is wrong; a malformed event is
/// skipped without losing the good ones sent with it.
#[tokio::test]
async fn bad_input_is_refused_clearly_and_loses_nothing() {
    let (server, api, dir) = server().await;
    let (status, body) = api.get("/no/such/endpoint").await;
    assert_eq!(status, 404);
    assert!(body["detail"].as_str().unwrap().contains("Coming from Prefect"), "{body}");
    let (status, body) = api.post("/flow_runs/", json!({"flow_id": "not-a-uuid"})).await;
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().unwrap().contains("flow_id"), "names the field: {body}");
    let (status, body) = api.post("/flow_runs/", json!({"flow_id": uuid::Uuid::now_v7()})).await;
    assert_eq!(status, 404, "{body}");
    let run = new_run(&api).await;
    let (status, body) = api.post(&format!("/flow_runs/{run}/set_state"), json!({"state": {"type": "SLEEPING"}})).await;
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().unwrap().contains("state.type"), "{body}");
    let (status, _) = api.post("/logs/", json!([{"message": "no level or time"}])).await;
    assert_eq!(status, 422);

    let task = uuid::Uuid::now_v7();
    let event = |name: &str, state: &str, at: &str| {
        json!({
            "occurred": at, "event": format!("prefect.task-run.{name}"), "id": uuid::Uuid::now_v7(),
            "resource": {"prefect.resource.id": format!("prefect.task-run.{task}"), "prefect.state-timestamp": at},
            "related": [{"prefect.resource.id": format!("prefect.flow-run.{run}"), "prefect.resource.role": "flow-run"}],
            "payload": {"validated_state": {"type": state, "name": name}, "task_run": {"name": "t-1", "task_key": "t-0badf00d", "dynamic_key": "1", "run_count": 1}},
        })
    };
    let batch = json!([
        event("Pending", "PENDING", "2026-12-01T10:00:00Z"),
        {"event": "prefect.task-run.Running", "garbage": true},
        "not even an object",
        {"occurred": "2026-12-01T10:00:00Z", "event": "prefect.some.new-kind", "resource": {"prefect.resource.id": "x"}},
        event("Running", "RUNNING", "2026-12-01T10:00:01Z"),
        event("Completed", "COMPLETED", "2026-12-01T10:00:02Z"),
        // Sent again after a reconnect: not a second history row.
        event("Completed", "COMPLETED", "2026-12-01T10:00:02Z"),
    ]);
    let (status, _) = api.post("/events", batch).await;
    assert_eq!(status, 204);
    let store = super::sealed_sqlite(dir.path()).await;
    let states: Vec<String> = store.read_states(task).await.unwrap().into_iter().map(|s| s.state.name).collect();
    assert_eq!(states, ["Pending", "Running", "Completed"]);
    let t = store.read_task_run(task).await.unwrap().unwrap();
    assert_eq!((t.task_name.as_str(), t.state.name.as_str()), ("t", "Completed"));

    let count = |state: &str| json!({"flow_runs": {"id": {"any_": [run]}}, "task_runs": {"state": {"type": {"any_": [state]}}}});
    assert_eq!(api.post("/task_runs/count", count("COMPLETED")).await, (200, json!(1)));
    assert_eq!(api.post("/task_runs/count", count("RUNNING")).await, (200, json!(0)));

    // Bounded like Headwater's own filters: no body above 1 MiB but a flow's
    // batches, no unbounded fan-out of queries.
    let padded = format!("{{}}{}", " ".repeat(2 << 20));
    let r = api.http.post(format!("{}/flow_runs/filter", api.base)).bearer_auth(KEY).body(padded.clone());
    let r = r.header("content-type", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 413);
    let r = api.http.post(format!("{}/logs/", api.base)).bearer_auth(KEY).body(format!("[]{}", &padded[2..]));
    assert_eq!(r.header("content-type", "application/json").send().await.unwrap().status(), 201, "logs take more");
    let many: Vec<uuid::Uuid> = (0..60).map(|_| uuid::Uuid::now_v7()).collect();
    let (status, body) = api.post("/flow_runs/filter", json!({"flow_runs": {"deployment_id": {"any_": many}}})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("60 combinations"), "{body}");
    let ids: Vec<uuid::Uuid> = (0..1001).map(|_| uuid::Uuid::now_v7()).collect();
    let (status, body) = api.post("/task_runs/filter", json!({"task_runs": {"id": {"any_": ids}}})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("task_runs.id (1001)"), "{body}");

    // Without the key, nothing.
    let anonymous = reqwest::Client::new();
    let r = anonymous.post(format!("{}/flows/", api.base)).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    drop(server);
}

/// A run whose Prefect client dies between creating it and starting it is
/// not left PENDING forever: it crashes once its first beat is overdue.
#[tokio::test]
async fn a_run_whose_client_never_starts_it_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::sealed_sqlite(dir.path()).await;
    let config = headwater_server::ServerConfig {
        port: 0,
        api_keys: vec![KEY.into()],
        heartbeat_timeout: std::time::Duration::from_millis(200),
        prefect_heartbeat: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let server = RunningServer::start_with(store, config).await.unwrap();
    headwater_client::install_tls_provider();
    let api = Api { http: reqwest::Client::new(), base: format!("http://{}/prefect/api", server.addr) };
    let run = new_run(&api).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, read) = api.get(&format!("/flow_runs/{run}")).await;
        if read["state_type"] == "CRASHED" {
            break;
        }
        assert_eq!(read["state_type"], "PENDING", "{read}");
        assert!(std::time::Instant::now() < deadline, "still {read}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A deployment at its concurrency limit: a start proposed without a
/// worker's claim is told to WAIT (with `Retry-After`) until a slot frees,
/// or is cancelled when the deployment says `cancel_new`.
#[tokio::test]
async fn a_full_deployment_makes_a_start_wait_or_cancels_it() {
    let (_server, api, _dir) = server().await;
    let (_, flow) = api.post("/flows/", json!({"name": "slots"})).await;
    let deployment = |name: &str, strategy: &str| {
        json!({"name": name, "flow_id": flow["id"], "concurrency_limit": 1,
               "concurrency_options": {"collision_strategy": strategy}})
    };
    let (status, queued) = api.post("/deployments/", deployment("one-at-a-time", "ENQUEUE")).await;
    assert_eq!(status, 201, "{queued}");
    assert_eq!(queued["work_pool_name"], Value::Null, "served without a pool: {queued}");
    let api = &api;
    let start = |d: &Value| {
        let path = format!("/deployments/{}/create_flow_run", d["id"].as_str().unwrap());
        async move {
            let (status, run) = api.post(&path, json!({})).await;
            assert_eq!((status, run["state"]["type"].as_str()), (201, Some("SCHEDULED")), "{run}");
            run["id"].as_str().unwrap().to_string()
        }
    };
    let (first, second) = (start(&queued).await, start(&queued).await);
    assert_eq!(propose(api, &first, "PENDING", false).await.1["status"], "ACCEPT");
    let r = api
        .http
        .post(format!("{}/flow_runs/{second}/set_state", api.base))
        .bearer_auth(KEY)
        .json(&json!({"state": {"type": "PENDING"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let retry_after = r.headers()["retry-after"].to_str().unwrap().to_string();
    let wait: Value = r.json().await.unwrap();
    assert_eq!(wait["status"], "WAIT", "{wait}");
    assert_eq!(wait["details"]["delay_seconds"].to_string(), retry_after, "{wait}");
    let (_, read) = api.get(&format!("/flow_runs/{second}")).await;
    assert_eq!(read["state_type"], "SCHEDULED", "a waiting run stays where it was");
    // The first moves on inside its slot; once it ends, the second starts.
    assert_eq!(propose(api, &first, "RUNNING", false).await.1["status"], "ACCEPT");
    assert_eq!(propose(api, &second, "RUNNING", false).await.1["status"], "WAIT");
    assert_eq!(propose(api, &first, "COMPLETED", false).await.1["status"], "ACCEPT");
    assert_eq!(propose(api, &second, "PENDING", false).await.1["status"], "ACCEPT");
    let (status, history) = api.get(&format!("/flow_run_states/?flow_run_id={first}")).await;
    let types: Vec<&str> = history.as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!((status, types), (200, vec!["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]), "{history}");

    let (_, cancelling) = api.post("/deployments/", deployment("cancel-new", "CANCEL_NEW")).await;
    let (first, second) = (start(&cancelling).await, start(&cancelling).await);
    assert_eq!(propose(api, &first, "RUNNING", false).await.1["status"], "ACCEPT");
    let (_, answer) = propose(api, &second, "PENDING", false).await;
    assert_eq!((answer["status"].as_str(), answer["state"]["type"].as_str()), (Some("REJECT"), Some("CANCELLED")));
    assert!(answer["details"]["reason"].as_str().unwrap().contains("cancel_new"), "{answer}");
    let (_, read) = api.get(&format!("/flow_runs/{second}")).await;
    assert_eq!(read["state_type"], "CANCELLED");
}
