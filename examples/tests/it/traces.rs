//! Traces across processes: a real `headwater server start`, a real
//! `headwater worker start` and the flow process the worker starts, all
//! exporting over OTLP to a receiver on loopback that decodes what it gets.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use headwater_test_support::{OtlpReceiver, ReceivedSpan};

use crate::deploy::{hw, BIN};

/// The CLI's program, built beside the examples' by the workspace build.
fn headwater_program() -> PathBuf {
    let path = Path::new(BIN).with_file_name("headwater");
    assert!(path.exists(), "{} is missing: build the workspace (cargo build --workspace) first", path.display());
    path
}

fn traced(program: &Path, home: &Path, otlp: &OtlpReceiver) -> Command {
    let mut c = Command::new(program);
    c.arg("--home")
        .arg(home)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint)
        // Sent every 100 ms, so the test does not wait for the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("HEADWATER_API_KEY");
    c
}

/// Starts the server on an ephemeral port; its API's URL from its banner.
fn start_server(home: &Path, otlp: &OtlpReceiver) -> (Child, String) {
    let mut server = traced(&headwater_program(), home, otlp)
        .args(["server", "start", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let banner = lines.next().expect("the server's banner").unwrap();
    let url = banner.split_whitespace().last().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/api"), "{banner}");
    // Nobody reads the rest of its output.
    std::thread::spawn(move || lines.for_each(drop));
    (server, url)
}

fn one<'a>(spans: &'a [ReceivedSpan], what: &str, pick: impl Fn(&ReceivedSpan) -> bool) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "one {what}; got {found:#?}");
    found[0]
}

fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    let mut c: Vec<_> = spans.iter().filter(|s| s.parent_span_id == parent.span_id).collect();
    c.sort_by_key(|s| s.start_unix_nano);
    c
}

/// A deployment run through a server and a worker is one trace: the
/// worker's claim span, then the flow process's run, its attempt, its task
/// and each of the task's three attempts (two failed, named so); the
/// server's spans are named by route. Nothing but Headwater's spans is
/// exported (not the runs' logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_s_run_continues_its_trace_through_flow_task_and_attempts() {
    use headwater_core::StateType;

    let otlp = OtlpReceiver::start().await;
    let server_home = tempfile::tempdir().unwrap();
    let (mut server, api) = start_server(server_home.path(), &otlp);
    // This test runs in its own process (nextest): its environment is its own.
    std::env::set_var("HEADWATER_API_URL", &api);
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!(
            "deployments:\n  - name: flaky\n    flow: retries\n    entrypoint: [\"{BIN}\", \"retries\"]\n    work_pool: {{name: traced}}\n"
        ),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["deployment", "run", "flaky"]).await.unwrap();
    let worker = traced(&headwater_program(), home.path(), &otlp)
        .args(["worker", "start", "--pool", "traced", "--exit-when-idle", "--poll-ms", "50"])
        .env("HEADWATER_API_URL", &api)
        .output()
        .unwrap();
    assert!(worker.status.success(), "{}", String::from_utf8_lossy(&worker.stderr));

    let client = headwater_client::ApiClient::new(&api, None).unwrap();
    let runs = headwater_store::RunReader::list_flow_runs(
        &client,
        &headwater_store::FlowRunFilter { limit: 10, ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state.state_type, StateType::Completed, "{}", runs[0].state);
    let run_id = runs[0].id.to_string();

    // The server sends what it still holds as it stops (Ctrl-C).
    let stopped = Command::new("kill").args(["-INT", &server.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    assert!(server.wait().unwrap().success());
    std::env::remove_var("HEADWATER_API_URL");
    let spans = otlp
        .wait_until(Duration::from_secs(20), |s| {
            s.iter().any(|s| s.service == "headwater-server")
                && s.iter().filter(|s| s.name.starts_with("attempt")).count() >= 4
                && s.iter().any(|s| s.name == "claim retries")
        })
        .await;
    assert!(otlp.refused().is_empty(), "every export was OTLP protobuf: {:?}", otlp.refused());

    let claim = one(&spans, "claim span", |s| s.name == "claim retries");
    assert_eq!(claim.service, "headwater-worker");
    assert_eq!(claim.attr("headwater.flow_run.id"), Some(run_id.as_str()));
    assert_eq!(claim.attr("headwater.deployment"), Some("flaky"));
    assert_eq!(claim.attr("headwater.work_pool"), Some("traced"));

    let flow = one(&spans, "flow run span", |s| s.name == "flow retries");
    assert_eq!(flow.service, "hw-examples", "the flow's program names its service");
    assert_eq!(flow.trace_id, claim.trace_id, "the flow process continues the worker's trace");
    assert_eq!(flow.parent_span_id, claim.span_id);
    assert_eq!(flow.attr("headwater.flow_run.id"), Some(run_id.as_str()));
    assert_eq!(flow.attr("headwater.state"), Some("Completed"));
    assert!(!flow.error);

    let flow_attempts = children(&spans, flow);
    assert_eq!(flow_attempts.len(), 1, "{flow_attempts:#?}");
    assert_eq!(flow_attempts[0].name, "attempt 1");
    let task = one(&spans, "task run span", |s| s.name == "task flaky_download");
    assert_eq!(task.parent_span_id, flow_attempts[0].span_id, "a task runs in its flow's attempt");
    assert_eq!(task.trace_id, claim.trace_id);
    assert_eq!(task.attr("headwater.state"), Some("Completed"));
    let attempts = children(&spans, task);
    let seen: Vec<_> =
        attempts.iter().map(|a| (a.name.as_str(), a.attr("headwater.state").unwrap_or(""), a.error)).collect();
    assert_eq!(
        seen,
        [("attempt 1", "AwaitingRetry", true), ("attempt 2", "AwaitingRetry", true), ("attempt 3", "Completed", false)]
    );
    assert!(attempts.windows(2).all(|w| w[0].end_unix_nano <= w[1].start_unix_nano), "attempts follow each other");

    // The API's spans: one per request, by route, with its status.
    let api_spans: Vec<_> = spans.iter().filter(|s| s.service == "headwater-server").collect();
    assert!(api_spans.iter().all(|s| s.attr("http.route").is_some() && s.attr("http.response.status_code").is_some()));
    let batches = api_spans.iter().filter(|s| s.name == "POST /api/batches").count();
    assert!(batches >= 1, "the flow's reports: {:?}", api_spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert!(
        api_spans.iter().any(|s| s.name == "GET /api/flow_runs/{id}" || s.name.starts_with("POST /api/flow_runs/")),
        "the worker's calls"
    );
    assert!(!api_spans.iter().any(|s| s.name.contains(&run_id)), "named by route, not by path");

    // Only Headwater's spans: no log line became a span or an attribute.
    let names = ["flow retries", "task flaky_download", "claim retries"];
    for s in &spans {
        assert!(
            names.contains(&s.name.as_str()) || s.name.starts_with("attempt ") || s.service == "headwater-server",
            "unexpected span {s:#?}"
        );
        assert!(!s.attributes.values().any(|v| v.contains("downloaded https://")), "{s:#?}");
    }
}
