//! `headwater deploy` against the real example program as entrypoint: the
//! flow's own types check every parameter set before anything is stored.

use std::path::Path;

use headwater_sql::SqliteStore;
use headwater_store::DeploymentStore;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hw-examples");

fn manifest(dir: &Path, schedule_months: &str) -> std::path::PathBuf {
    let text = format!(
        r#"# NYC taxi, monthly
deployments:
  - name: taxi-monthly
    flow: etl-parent-flow
    entrypoint: ["{BIN}", "etl-parent-flow"]
    description: Yellow taxi trips, month by month
    parameters:
      color: yellow
      year: 2021
    work_pool:
      name: local
    schedules:
      - cron: "0 5 1 * *"
        timezone: America/New_York
        parameters:
          months: {schedule_months}
      - interval: 1h
        active: false
    concurrency_limit: 1
  - name: taxi-green
    flow: etl-parent-flow
    entrypoint: ["{BIN}", "etl-parent-flow"]
    parameters:
      color: green
"#
    );
    let path = dir.join("headwater.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Where a test's runs are kept: the embedded SQLite database of its home,
/// or a server on PostgreSQL, which the CLI, the workers and the flow
/// processes reach through HEADWATER_API_URL (each test is its own process
/// under nextest, so its environment is its own).
pub(crate) struct Backend {
    pub(crate) store: std::sync::Arc<dyn headwater_store::Store>,
    _server: Option<headwater_server::RunningServer>,
    _db: Option<headwater_test_support::PgTestDb>,
}

/// `None` when PostgreSQL is wanted but not available (outside CI only).
pub(crate) async fn backend(on_postgres: bool, home: &Path) -> Option<Backend> {
    if !on_postgres {
        let store = std::sync::Arc::new(SqliteStore::open(&home.join("headwater.db")).await.unwrap());
        return Some(Backend { store, _server: None, _db: None });
    }
    let db = headwater_test_support::PgTestDb::create().await?;
    let store = headwater_sql::open(&db.url).await.unwrap();
    let server = headwater_server::RunningServer::start(store.clone(), vec![]).await.unwrap();
    std::env::set_var("HEADWATER_API_URL", server.api_url());
    Some(Backend { store, _server: Some(server), _db: Some(db) })
}

pub(crate) async fn hw(home: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["headwater", "--home", home.to_str().unwrap()];
    argv.extend_from_slice(args);
    headwater_cli::try_run_from(argv).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_checks_parameters_with_the_flow_and_stores_the_deployment() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = manifest(dir.path(), "[13]");
    let file_arg = file.to_str().unwrap();

    // Two deployments in the file: say which.
    let e = hw(home.path(), &["deploy", "--file", file_arg]).await.unwrap_err().to_string();
    assert!(e.contains("several deployments (taxi-monthly, taxi-green)"), "{e}");

    // The schedule's months are refused by the flow's own Month type.
    let e = hw(home.path(), &["deploy", "taxi-monthly", "--file", file_arg]).await.unwrap_err().to_string();
    assert_eq!(
        e,
        "deployment 'taxi-monthly', schedules[0].parameters: \
         invalid parameter 'months[0]': month must be between 1 and 12, got 13"
    );
    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    assert!(store.read_deployment("taxi-monthly").await.unwrap().is_none(), "nothing stored");

    manifest(dir.path(), "[1, 2]");
    hw(home.path(), &["deploy", "--all", "--file", file_arg]).await.unwrap();
    let d = store.read_deployment("taxi-monthly").await.unwrap().unwrap();
    assert_eq!(d.entrypoint, [BIN, "etl-parent-flow"]);
    assert_eq!(d.schedules.len(), 2);
    assert!(d.schedules[0].active && !d.schedules[1].active);
    assert_eq!(d.concurrency_limit, Some(1));
    assert!(store.read_deployment("taxi-green").await.unwrap().is_some());
    // The flow is known with its parameters before it ever ran (the UI's
    // custom run form is built from this schema).
    let flow = headwater_store::RunReader::read_flow(&store, "etl-parent-flow").await.unwrap().unwrap();
    let props = &flow.parameter_schema["properties"];
    assert_eq!(props["year"]["default"], 2021, "{}", flow.parameter_schema);
    assert_eq!(props["months"]["type"], "array", "{}", flow.parameter_schema);

    // Manage it from the CLI.
    hw(home.path(), &["deployment", "ls"]).await.unwrap();
    hw(home.path(), &["deployment", "inspect", "taxi-monthly"]).await.unwrap();
    hw(home.path(), &["deployment", "pause", "taxi-monthly"]).await.unwrap();
    assert!(store.read_deployment("taxi-monthly").await.unwrap().unwrap().paused);
    hw(home.path(), &["deployment", "resume", "taxi-monthly"]).await.unwrap();
    hw(home.path(), &["deployment", "schedule", "resume", "taxi-monthly", "1"]).await.unwrap();
    hw(home.path(), &["deployment", "schedule", "pause", "taxi-monthly", "0"]).await.unwrap();
    let d = store.read_deployment("taxi-monthly").await.unwrap().unwrap();
    assert!(!d.paused && !d.schedules[0].active && d.schedules[1].active);
    let e = hw(home.path(), &["deployment", "schedule", "pause", "taxi-monthly", "7"]).await.unwrap_err();
    assert!(e.to_string().contains("has 2 schedule(s)"), "{e}");
    hw(home.path(), &["deployment", "delete", "taxi-green"]).await.unwrap();
    let e = hw(home.path(), &["deployment", "delete", "taxi-green"]).await.unwrap_err();
    assert_eq!(e.to_string(), "no deployment named 'taxi-green'");
}

/// A wrapper that passes the parameter check but prints no schema still
/// deploys; the flow's parameters are learned at its first run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapper_without_a_schema_still_deploys() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        "deployments:\n  - name: wrapped\n    flow: wrapped-flow\n    entrypoint: [sh, -c, \"exit 0\", sh]\n",
    )
    .unwrap();
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();
    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    assert!(store.read_deployment("wrapped").await.unwrap().is_some());
    assert!(headwater_store::RunReader::read_flow(&store, "wrapped-flow").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_errors_name_the_file_and_field() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        "deployments:\n  - name: broken\n    flow: f\n    entrypoint: x\n    schedules:\n      - cron: \"0 5 1 *\"\n",
    )
    .unwrap();
    let e = hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap_err().to_string();
    assert!(e.contains("headwater.yaml: deployments[0] (broken).schedules[0]: invalid schedule '0 5 1 *'"), "{e}");
    std::fs::write(&file, "deployments:\n  - name: [unclosed\n").unwrap();
    let e = hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap_err().to_string();
    assert!(e.contains("headwater.yaml"), "{e}");
    // An entrypoint that is not there is reported, with the way out.
    std::fs::write(&file, "deployments:\n  - name: gone\n    flow: f\n    entrypoint: ./no-such-program\n").unwrap();
    let e = hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap_err().to_string();
    assert!(e.contains("cannot run its entrypoint") && e.contains("--no-check"), "{e}");
    hw(home.path(), &["deploy", "--no-check", "--file", file.to_str().unwrap()]).await.unwrap();
}

/// Deploy on a 1-second interval, let a worker run it: each scheduled run is
/// executed once, by the example program adopting the run the worker claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_scheduled_and_manual_runs() {
    worker_runs_scheduled_and_manual_runs(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_scheduled_and_manual_runs_on_postgres() {
    worker_runs_scheduled_and_manual_runs(true).await;
}

async fn worker_runs_scheduled_and_manual_runs(on_postgres: bool) {
    use headwater_core::StateType;
    use headwater_store::FlowRunFilter;

    let home = tempfile::tempdir().unwrap();
    let Some(b) = backend(on_postgres, home.path()).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!(
            r#"deployments:
  - name: every-second
    flow: caching
    entrypoint: ["{BIN}", "caching"]
    parameters: {{n: 5}}
    work_pool: {{name: local}}
    schedules:
      - interval: 1
  - name: on-demand
    flow: caching
    entrypoint: ["{BIN}", "caching"]
    work_pool: {{name: manual}}
"#
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    hw(home.path(), &["deploy", "--all", "--file", f]).await.unwrap();

    hw(home.path(), &["worker", "start", "--pool", "local", "--max-runs", "3", "--poll-ms", "100"]).await.unwrap();
    let store = b.store.as_ref();
    let d = store.read_deployment("every-second").await.unwrap().unwrap();
    let runs = store.list_flow_runs(&FlowRunFilter { limit: 1000, ..Default::default() }).await.unwrap();
    let done: Vec<_> = runs.iter().filter(|r| r.state.state_type == StateType::Completed).collect();
    assert_eq!(done.len(), 3, "{:?}", runs.iter().map(|r| (&r.name, &r.state.name)).collect::<Vec<_>>());
    for r in &done {
        assert_eq!(r.deployment_id, Some(d.id));
        assert_eq!(r.parameters["n"], 5);
        assert_eq!(r.run_count, 1, "run once");
        let history: Vec<_> = store.read_states(r.id).await.unwrap().into_iter().map(|s| s.state.name).collect();
        assert_eq!(history.first().map(String::as_str), Some("Scheduled"));
        assert_eq!(history.iter().filter(|n| *n == "Running").count(), 1, "{history:?}");
        assert_eq!(history.last().map(String::as_str), Some("Completed"));
        assert_eq!(store.list_task_runs(r.id).await.unwrap().len(), 1);
    }
    assert!(runs.iter().all(|r| r.state.state_type != StateType::Running && r.state.state_type != StateType::Pending));

    // A run with custom parameters, started by hand.
    let e = hw(home.path(), &["deployment", "run", "on-demand", "-p", "n=oops"]).await.unwrap_err().to_string();
    assert!(e.contains("invalid parameter 'n'"), "{e}");
    hw(home.path(), &["deployment", "run", "on-demand", "-p", "n=7"]).await.unwrap();
    hw(home.path(), &["worker", "start", "--pool", "manual", "--max-runs", "1"]).await.unwrap();
    let on_demand = store.read_deployment("on-demand").await.unwrap().unwrap();
    let manual: Vec<_> = store
        .list_flow_runs(&FlowRunFilter { limit: 1000, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.deployment_id == Some(on_demand.id))
        .collect();
    assert_eq!(manual.len(), 1, "the refused run was never created");
    assert_eq!(manual[0].state.state_type, StateType::Completed);
    assert_eq!(manual[0].parameters["n"], 7);
}

/// Two workers draining one pool of 500 due runs at the same time: every
/// run is executed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_run_the_same_run_twice() {
    two_workers_drain_one_pool(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_run_the_same_run_twice_on_postgres() {
    two_workers_drain_one_pool(true).await;
}

async fn two_workers_drain_one_pool(on_postgres: bool) {
    use headwater_core::{parse_manifest, StateType};
    use headwater_store::FlowRunFilter;

    let home = tempfile::tempdir().unwrap();
    let Some(b) = backend(on_postgres, home.path()).await else { return };
    let store = b.store.as_ref();
    let doc = serde_json::json!({"deployments": [{
        "name": "burst", "flow": "one-task", "entrypoint": [BIN, "one-task"], "work_pool": {"name": "burst"}
    }]});
    let now = chrono::Utc::now();
    let d = parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);
    store.apply_deployment(&d).await.unwrap();
    let runs: Vec<_> = (0..500).map(|i| d.manual_run(&serde_json::json!({}), now, now, i)).collect();
    assert_eq!(store.enqueue_runs(&runs).await.unwrap(), 500);

    let worker = || {
        hw(home.path(), &["worker", "start", "--pool", "burst", "--limit", "4", "--exit-when-idle", "--poll-ms", "20"])
    };
    let (a, b) = tokio::join!(worker(), worker());
    a.unwrap();
    b.unwrap();

    let all = store.list_flow_runs(&FlowRunFilter { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 500, "no run was created twice");
    for r in &all {
        assert_eq!(r.state.state_type, StateType::Completed, "{} is {}", r.name, r.state);
        let history = store.read_states(r.id).await.unwrap();
        assert_eq!(history.iter().filter(|s| s.state.name == "Running").count(), 1, "{} ran more than once", r.name);
    }
}

/// Cancelling: a scheduled run ends CANCELLED at once and is never started;
/// a running one is stopped by its own process, tasks included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_scheduled_and_running_runs() {
    cancel_runs(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_scheduled_and_running_runs_on_postgres() {
    cancel_runs(true).await;
}

async fn cancel_runs(on_postgres: bool) {
    use headwater_core::StateType;
    use headwater_store::FlowRunFilter;

    let home = tempfile::tempdir().unwrap();
    let Some(b) = backend(on_postgres, home.path()).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!(
            r#"deployments:
  - name: slow
    flow: long-running
    entrypoint: ["{BIN}", "long-running"]
    parameters: {{secs: 300}}
    work_pool: {{name: slow}}
    env: {{HEADWATER_HEARTBEAT_SECONDS: "0.2"}}
"#
        ),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();
    let store = b.store.as_ref();
    let newest =
        || async { store.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap().remove(0) };

    hw(home.path(), &["deployment", "run", "slow"]).await.unwrap();
    let waiting = newest().await;
    hw(home.path(), &["flow-run", "cancel", &waiting.id.to_string()]).await.unwrap();
    let waiting = store.read_flow_run(waiting.id).await.unwrap().unwrap();
    assert_eq!(waiting.state.state_type, StateType::Cancelled);
    let e = hw(home.path(), &["flow-run", "cancel", &waiting.id.to_string()]).await.unwrap_err();
    assert!(e.to_string().contains("nothing to cancel"), "{e}");

    hw(home.path(), &["deployment", "run", "slow"]).await.unwrap();
    let run = newest().await;
    let worker_home = home.path().to_path_buf();
    let worker = tokio::spawn(async move {
        hw(&worker_home, &["worker", "start", "--pool", "slow", "--exit-when-idle", "--poll-ms", "50"]).await
    });
    let mut started = false;
    for _ in 0..400 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let tasks = store.list_task_runs(run.id).await.unwrap();
        if tasks.len() == 2 && tasks.iter().all(|t| t.state.state_type == StateType::Running) {
            started = true;
            break;
        }
    }
    assert!(started, "the worker started the run");
    hw(home.path(), &["flow-run", "cancel", &run.id.to_string()]).await.unwrap();
    worker.await.unwrap().unwrap();
    let done = store.read_flow_run(run.id).await.unwrap().unwrap();
    assert_eq!(done.state.state_type, StateType::Cancelled, "{}", done.state);
    assert_eq!(done.state.message.as_deref(), Some("Flow run was cancelled on request"));
    for t in store.list_task_runs(run.id).await.unwrap() {
        assert_eq!(t.state.state_type, StateType::Cancelled, "{}", t.name);
    }
    let history: Vec<_> = store.read_states(run.id).await.unwrap().into_iter().map(|s| s.state.name).collect();
    assert!(history.contains(&"Cancelling".to_string()), "{history:?}");
}

/// A program that fails before any flow starts cannot record anything
/// itself: the worker records what it printed and marks the run CRASHED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_records_the_output_of_a_program_that_fails_early() {
    use headwater_core::StateType;
    use headwater_store::{FlowRunFilter, LogFilter, RunReader};

    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!("deployments:\n  - name: typo\n    flow: f\n    entrypoint: [\"{BIN}\", \"no-such-flow\"]\n"),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--no-check", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["deployment", "run", "typo", "--no-check"]).await.unwrap();
    hw(home.path(), &["worker", "start", "--exit-when-idle", "--poll-ms", "50"]).await.unwrap();
    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    let run = store.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap().remove(0);
    assert_eq!(run.state.state_type, StateType::Crashed);
    assert!(run.state.message.as_deref().unwrap().contains("exited"), "{}", run.state);
    let logs = store.read_logs(&LogFilter::for_flow_run(run.id)).await.unwrap();
    assert!(
        logs.iter().any(|l| l.message.contains("no flow named 'no-such-flow'") && l.level == headwater_core::LogLevel::Warning),
        "{logs:?}"
    );
}

/// A program that prints a block's secret itself (past the SDK's redaction)
/// still does not put it in its run's logs: the worker masks every known
/// secret in what it captures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_masks_block_secrets_in_captured_output() {
    use headwater_store::{FlowRunFilter, LogFilter, RunReader};

    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = "Pw-7f3K-worker-leak";
    hw(home.path(), &["block", "create", "secret", "warehouse-password", "-f", &format!("value={secret}")])
        .await
        .unwrap();
    let file = dir.path().join("headwater.yaml");
    let script = format!("echo connecting with {secret}; echo oops {secret} >&2; exit 3");
    std::fs::write(
        &file,
        format!("deployments:\n  - name: leaky\n    flow: f\n    entrypoint: [\"sh\", \"-c\", \"{script}\", \"sh\"]\n"),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--no-check", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["deployment", "run", "leaky", "--no-check"]).await.unwrap();
    hw(home.path(), &["worker", "start", "--exit-when-idle", "--poll-ms", "50"]).await.unwrap();
    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    let run = store.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap().remove(0);
    let logs = store.read_logs(&LogFilter::for_flow_run(run.id)).await.unwrap();
    let text: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    assert!(text.contains(&"connecting with ********"), "{text:?}");
    assert!(text.contains(&"oops ********"), "{text:?}");
    assert!(!text.iter().any(|m| m.contains(secret)), "{text:?}");
}

/// Work pools from the CLI: a paused pool holds its runs back; workers
/// register themselves, so the pool shows who serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_pools_pause_and_show_their_workers() {
    use headwater_core::{StateType, WorkPoolKind};
    use headwater_store::{FlowRunFilter, RunReader, WorkPoolStore};

    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!("deployments:\n  - name: quick\n    flow: one-task\n    entrypoint: [\"{BIN}\", \"one-task\"]\n    work_pool: {{name: etl}}\n"),
    )
    .unwrap();
    hw(home.path(), &["work-pool", "create", "etl", "--limit", "2"]).await.unwrap();
    let e = hw(home.path(), &["work-pool", "create", "etl"]).await.unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["work-pool", "pause", "etl"]).await.unwrap();
    hw(home.path(), &["deployment", "run", "quick"]).await.unwrap();

    let worker = ["worker", "start", "--pool", "etl", "--name", "w-test", "--exit-when-idle", "--poll-ms", "20"];
    hw(home.path(), &worker).await.unwrap();
    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    let run = store.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap().remove(0);
    assert_eq!(run.state.state_type, StateType::Scheduled, "a paused pool hands out nothing");

    hw(home.path(), &["work-pool", "resume", "etl"]).await.unwrap();
    hw(home.path(), &worker).await.unwrap();
    let run = store.read_flow_run(run.id).await.unwrap().unwrap();
    assert_eq!(run.state.state_type, StateType::Completed);

    let pool = store.read_work_pool("etl").await.unwrap().unwrap();
    assert_eq!((pool.kind, pool.concurrency_limit, pool.paused), (WorkPoolKind::Process, Some(2), false));
    let workers = store.list_workers(Some("etl")).await.unwrap();
    assert_eq!(workers.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["w-test"]);
    hw(home.path(), &["work-pool", "ls"]).await.unwrap();
    hw(home.path(), &["work-pool", "inspect", "etl"]).await.unwrap();
    hw(home.path(), &["work-pool", "set-limit", "etl", "--clear"]).await.unwrap();
    assert_eq!(store.read_work_pool("etl").await.unwrap().unwrap().concurrency_limit, None);
    // A worker of a pool that did not exist creates it.
    hw(home.path(), &["worker", "start", "--pool", "fresh", "--exit-when-idle"]).await.unwrap();
    assert!(store.read_work_pool("fresh").await.unwrap().is_some());
    hw(home.path(), &["work-pool", "delete", "fresh"]).await.unwrap();
}

/// Variables fill in headwater.yaml; the deployed flow publishes a table
/// artifact the CLI shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_fill_manifests_and_runs_publish_artifacts() {
    use headwater_store::{ArtifactFilter, ArtifactStore, DeploymentStore, VariableStore};

    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!(
            "deployments:\n  - name: taxi\n    flow: etl-parent-flow\n    entrypoint: [\"{BIN}\", \"etl-parent-flow\"]\n    description: \"{{{{ variables.team }}}} owns it\"\n    parameters: {{months: \"{{{{ variables.taxi_months }}}}\", year: 2021, color: green}}\n"
        ),
    )
    .unwrap();
    let e = hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap_err();
    assert!(e.to_string().contains("no variable named 'team'"), "{e}");
    let e = hw(home.path(), &["variable", "set", "Team", "x"]).await.unwrap_err();
    assert!(e.to_string().contains("variable name 'Team' contains 'T'"), "{e}");
    hw(home.path(), &["variable", "set", "team", "data-eng"]).await.unwrap();
    hw(home.path(), &["variable", "set", "taxi_months", "[1, 2]", "--tag", "taxi"]).await.unwrap();
    hw(home.path(), &["variable", "ls"]).await.unwrap();
    hw(home.path(), &["variable", "get", "taxi_months"]).await.unwrap();
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();

    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    let d = store.read_deployment("taxi").await.unwrap().unwrap();
    assert_eq!(d.parameters["months"], serde_json::json!([1, 2]), "a whole-string template keeps the list");
    assert_eq!(d.description.as_deref(), Some("data-eng owns it"));
    assert_eq!(store.read_variable("team").await.unwrap().unwrap().value, serde_json::json!("data-eng"));

    hw(home.path(), &["deployment", "run", "taxi"]).await.unwrap();
    hw(home.path(), &["worker", "start", "--exit-when-idle", "--poll-ms", "20"]).await.unwrap();
    let latest = store.list_artifacts(&ArtifactFilter { latest_only: true, ..Default::default() }).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].key.as_deref(), Some("taxi-row-counts"));
    let months: Vec<_> = latest[0].data.as_array().unwrap().iter().map(|r| r["month"].as_u64().unwrap()).collect();
    assert_eq!(months, [1, 2]);
    hw(home.path(), &["artifact", "ls"]).await.unwrap();
    hw(home.path(), &["artifact", "inspect", "taxi-row-counts"]).await.unwrap();
    hw(home.path(), &["artifact", "delete", "taxi-row-counts"]).await.unwrap();
    let e = hw(home.path(), &["artifact", "inspect", "taxi-row-counts"]).await.unwrap_err();
    assert!(e.to_string().contains("no artifact with key"), "{e}");
    hw(home.path(), &["variable", "delete", "team"]).await.unwrap();
    assert!(store.read_variable("team").await.unwrap().is_none());
}

/// Queues: a worker started for one queue runs only that queue's runs; the
/// CLI creates, limits, pauses and lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_serve_the_queues_they_are_given() {
    use headwater_core::StateType;
    use headwater_store::{RunReader, WorkPoolStore};

    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    let deployment = |name: &str, queue: &str| {
        format!("  - name: {name}\n    flow: one-task\n    entrypoint: [\"{BIN}\", \"one-task\"]\n    work_pool: {{name: etl, queue: {queue}}}\n")
    };
    std::fs::write(
        &file,
        format!("deployments:\n{}{}", deployment("nightly", "default"), deployment("hotfix", "urgent")),
    )
    .unwrap();
    hw(home.path(), &["work-pool", "create", "etl"]).await.unwrap();
    let e = hw(home.path(), &["work-queue", "create", "urgent", "--pool", "nope"]).await.unwrap_err();
    assert!(e.to_string().contains("no work pool named 'nope'"), "{e}");
    hw(home.path(), &["work-queue", "create", "urgent", "--pool", "etl", "--priority", "0", "--limit", "1"])
        .await
        .unwrap();
    hw(home.path(), &["deploy", "--all", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["deployment", "run", "nightly"]).await.unwrap();
    hw(home.path(), &["deployment", "run", "hotfix"]).await.unwrap();
    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    let runs = store.list_flow_runs(&Default::default()).await.unwrap();
    let run_of = |queue: &str| runs.iter().find(|r| r.work_queue.as_deref() == Some(queue)).unwrap().id;
    let (nightly, hotfix) = (run_of("default"), run_of("urgent"));

    let worker = ["worker", "start", "--pool", "etl", "--queue", "urgent", "--exit-when-idle", "--poll-ms", "20"];
    hw(home.path(), &worker).await.unwrap();
    let state = |id| {
        let store = &store;
        async move { store.read_flow_run(id).await.unwrap().unwrap().state.state_type }
    };
    assert_eq!(state(hotfix).await, StateType::Completed);
    assert_eq!(state(nightly).await, StateType::Scheduled, "not this worker's queue");

    hw(home.path(), &["work-queue", "pause", "default", "--pool", "etl"]).await.unwrap();
    hw(home.path(), &["worker", "start", "--pool", "etl", "--exit-when-idle"]).await.unwrap();
    assert_eq!(state(nightly).await, StateType::Scheduled, "a paused queue hands out nothing");
    hw(home.path(), &["work-queue", "resume", "default", "--pool", "etl"]).await.unwrap();
    hw(home.path(), &["worker", "start", "--pool", "etl", "--exit-when-idle"]).await.unwrap();
    assert_eq!(state(nightly).await, StateType::Completed);

    hw(home.path(), &["work-queue", "set-limit", "urgent", "--pool", "etl", "--clear"]).await.unwrap();
    hw(home.path(), &["work-queue", "set-priority", "urgent", "5", "--pool", "etl"]).await.unwrap();
    hw(home.path(), &["work-queue", "ls", "--pool", "etl"]).await.unwrap();
    let queues = store.list_work_queues("etl").await.unwrap();
    let urgent = queues.iter().find(|q| q.name == "urgent").unwrap();
    assert_eq!((urgent.priority, urgent.concurrency_limit), (5, None));
    let e = hw(home.path(), &["work-queue", "delete", "default", "--pool", "etl"]).await.unwrap_err();
    assert!(e.to_string().contains("cannot be deleted"), "{e}");
    hw(home.path(), &["work-queue", "delete", "urgent", "--pool", "etl"]).await.unwrap();
    assert_eq!(store.list_work_queues("etl").await.unwrap().len(), 1);
}

/// Code from a repository: the worker clones it for the run, moves into the
/// folder the manifest says, and starts the entrypoint found there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_steps_clone_the_code_for_each_run() {
    use headwater_core::StateType;
    use headwater_store::{FlowRunFilter, LogFilter, RunReader};
    use std::process::Command;

    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join("flows")).unwrap();
    let script = repo.path().join("flows/run.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"running from $(pwd)\"\nexec \"$HW_BIN\" \"$@\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(["-c", "user.email=t@example.invalid", "-c", "user.name=t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(repo.path())
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?}");
    };
    git(&["init", "--quiet"]);
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "flows"]);

    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!(
            r#"deployments:
  - name: from-git
    flow: one-task
    entrypoint: ["./run.sh", "one-task"]
    env: {{HW_BIN: "{BIN}"}}
    pull:
      - git_clone: {{repository: "{repo}", branch: main}}
      - set_working_directory: {{directory: flows}}
  - name: bad-repo
    flow: one-task
    entrypoint: ["./run.sh", "one-task"]
    pull:
      - git_clone: {{repository: "{repo}/nope"}}
"#,
            repo = repo.path().display()
        ),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--all", "--no-check", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["deployment", "run", "from-git", "--no-check"]).await.unwrap();
    hw(home.path(), &["deployment", "run", "bad-repo", "--no-check"]).await.unwrap();
    hw(home.path(), &["worker", "start", "--exit-when-idle", "--poll-ms", "20"]).await.unwrap();

    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    let runs = store.list_flow_runs(&FlowRunFilter::default()).await.unwrap();
    let good = runs.iter().find(|r| r.state.state_type == StateType::Completed).expect("cloned and ran");
    let logs = store.read_logs(&LogFilter::for_flow_run(good.id)).await.unwrap();
    assert!(logs.iter().any(|l| l.message.starts_with("running from") && l.message.ends_with("/flows")), "{logs:?}");
    let bad = runs.iter().find(|r| r.state.state_type == StateType::Crashed).expect("the bad clone crashed its run");
    assert!(bad.state.message.as_deref().unwrap().starts_with("pull step 0 (git clone) failed"), "{}", bad.state);
}

/// A `FROM scratch` image around the example binary and the few libraries
/// it links (this machine's Docker has no registry, so nothing is pulled).
fn build_scratch_image(tag: &str) {
    use std::process::Command;
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(BIN, ctx.path().join("hw-examples")).unwrap();
    let ldd = Command::new("ldd").arg(BIN).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split_whitespace().find(|w| w.starts_with('/'));
        if let Some(lib) = path {
            let dest = ctx.path().join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, &dest).unwrap();
        }
    }
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    let built = Command::new("docker").args(["build", "--quiet", "-t", tag]).arg(ctx.path()).output().unwrap();
    assert!(built.status.success(), "docker build: {}", String::from_utf8_lossy(&built.stderr));
}

/// Docker is part of these machines and of CI; elsewhere the test says so.
fn docker_available() -> bool {
    let ok = std::process::Command::new("docker").arg("version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").is_err(), "CI runs the Docker worker test: the Docker engine must be running");
        eprintln!("SKIPPED: no Docker engine answers `docker version`");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_pool_runs_flows_in_containers() {
    use headwater_core::StateType;
    use headwater_store::{FlowRunFilter, RunReader};

    if !docker_available() {
        return;
    }
    let tag = format!("headwater-examples-test:{}", uuid::Uuid::now_v7().simple());
    build_scratch_image(&tag);
    // Code from a repository reaches the container through the pull steps:
    // here a flag file the flow finds relative to its working directory.
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join("job")).unwrap();
    std::fs::write(repo.path().join("job/down"), "").unwrap();
    for args in [&["init", "--quiet"][..], &["add", "."], &["commit", "--quiet", "-m", "job"]] {
        let ok = std::process::Command::new("git")
            .args(["-c", "user.email=t@example.invalid", "-c", "user.name=t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(repo.path())
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?}");
    }
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!(
            r#"deployments:
  - name: boxed
    flow: caching
    entrypoint: ["/hw-examples", "caching"]
    parameters: {{n: 12}}
    work_pool:
      name: dock
      job_variables: {{image: "{tag}", pull_policy: never}}
  - name: no-image
    flow: one-task
    entrypoint: ["/hw-examples", "one-task"]
    work_pool:
      name: dock
      job_variables: {{image: "headwater-absent:none", pull_policy: never}}
  - name: from-repo
    flow: load-when-up
    entrypoint: ["/hw-examples", "load-when-up"]
    parameters: {{down_flag: down}}
    pull:
      - git_clone: {{repository: "{repo}", branch: main}}
      - set_working_directory: {{directory: job}}
    work_pool:
      name: dock
      job_variables: {{image: "{tag}", pull_policy: never}}
"#,
            repo = repo.path().display()
        ),
    )
    .unwrap();
    hw(home.path(), &["work-pool", "create", "dock", "--type", "docker"]).await.unwrap();
    hw(home.path(), &["deploy", "--all", "--no-check", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["deployment", "run", "boxed", "--no-check"]).await.unwrap();
    hw(home.path(), &["deployment", "run", "no-image", "--no-check"]).await.unwrap();
    hw(home.path(), &["deployment", "run", "from-repo", "--no-check"]).await.unwrap();
    hw(home.path(), &["worker", "start", "--pool", "dock", "--exit-when-idle", "--poll-ms", "50"]).await.unwrap();

    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    let runs = store.list_flow_runs(&FlowRunFilter::default()).await.unwrap();
    let boxed = runs.iter().find(|r| r.flow_name == "caching").unwrap();
    assert_eq!(boxed.state.state_type, StateType::Completed, "{}", boxed.state);
    assert_eq!(boxed.parameters["n"], 12);
    let tasks = store.list_task_runs(boxed.id).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state.state_type, StateType::Completed);
    let missing = runs.iter().find(|r| r.flow_name == "one-task").unwrap();
    assert_eq!(missing.state.state_type, StateType::Crashed);
    assert!(missing.state.message.as_deref().unwrap().contains("is not on this Docker engine"), "{}", missing.state);
    let cloned = runs.iter().find(|r| r.flow_name == "load-when-up").unwrap();
    assert_eq!(cloned.state.state_type, StateType::Failed, "{}", cloned.state);
    let why = cloned.state.message.as_deref().unwrap();
    assert!(why.contains("the warehouse is down (down exists)"), "the flow ran in the cloned folder: {why}");
    // What the program printed (its error, on stderr) was recorded from the container.
    let logs = store.read_logs(&headwater_store::LogFilter::for_flow_run(cloned.id)).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.level == headwater_core::LogLevel::Warning && l.message.contains("the warehouse is down")),
        "{:?}",
        logs.iter().map(|l| &l.message).collect::<Vec<_>>()
    );
    // Containers are removed after their run.
    let left = std::process::Command::new("docker")
        .args(["ps", "-a", "-q", "--filter", &format!("name=headwater-{}", boxed.id)])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the container was removed");
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &tag]).output();
}

/// kill -9 of a deployment run's process: the run CRASHES (with its
/// unfinished task), and its flow's retry runs it again to completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_deployment_run_crashes_and_its_flow_retries_apply() {
    killed_run_crashes_and_retries(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_deployment_run_crashes_and_its_flow_retries_apply_on_postgres() {
    killed_run_crashes_and_retries(true).await;
}

async fn killed_run_crashes_and_retries(on_postgres: bool) {
    use headwater_core::StateType;
    use headwater_store::FlowRunFilter;

    let home = tempfile::tempdir().unwrap();
    let Some(b) = backend(on_postgres, home.path()).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pid");
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!(
            "deployments:\n  - name: fragile\n    flow: crash-once\n    entrypoint: [\"{BIN}\", \"crash-once\"]\n    parameters: {{marker: \"{}\"}}\n",
            marker.display()
        ),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["deployment", "run", "fragile"]).await.unwrap();
    let worker_home = home.path().to_path_buf();
    let worker =
        tokio::spawn(
            async move { hw(&worker_home, &["worker", "start", "--exit-when-idle", "--poll-ms", "50"]).await },
        );
    let store = b.store.as_ref();
    let run = store.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap().remove(0);
    let mut pid = None;
    for _ in 0..400 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let tasks = store.list_task_runs(run.id).await.unwrap();
        if tasks.iter().any(|t| t.state.state_type == StateType::Running) {
            pid = std::fs::read_to_string(&marker).ok();
            break;
        }
    }
    let pid = pid.expect("the first attempt started its task");
    let killed = std::process::Command::new("kill").args(["-9", pid.trim()]).status().unwrap();
    assert!(killed.success());
    worker.await.unwrap().unwrap();

    let done = store.read_flow_run(run.id).await.unwrap().unwrap();
    assert_eq!(done.state.state_type, StateType::Completed, "{}", done.state);
    assert_eq!(done.run_count, 2, "the same run, attempted twice");
    let history: Vec<_> = store.read_states(run.id).await.unwrap().into_iter().map(|s| s.state.name).collect();
    let crashed_at = history.iter().position(|s| s == "Crashed").expect("it crashed");
    assert_eq!(history[crashed_at + 1], "AwaitingRetry", "{history:?}");
    assert_eq!(history.last().unwrap(), "Completed");
    let tasks = store.list_task_runs(run.id).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state.state_type, StateType::Crashed, "the killed attempt's task crashed with it");
}

/// A failed deployment run, retried: the same run runs again (its run count
/// continues), and neither the cached extract nor the completed clean is redone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_failed_run_reuses_cached_tasks() {
    use headwater_core::StateType;
    use headwater_store::{FlowRunFilter, RunReader};

    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("down");
    std::fs::write(&flag, "").unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!(
            "deployments:\n  - name: loader\n    flow: load-when-up\n    entrypoint: [\"{BIN}\", \"load-when-up\"]\n    parameters: {{down_flag: \"{}\"}}\n",
            flag.display()
        ),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["deployment", "run", "loader"]).await.unwrap();
    let worker = ["worker", "start", "--exit-when-idle", "--poll-ms", "20"];
    hw(home.path(), &worker).await.unwrap();
    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    let run = store.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap().remove(0);
    assert_eq!(run.state.state_type, StateType::Failed);
    assert!(run.state.message.as_deref().unwrap().contains("the warehouse is down"));

    let e = hw(home.path(), &["flow-run", "retry", "no-such-run"]).await.unwrap_err();
    assert!(e.to_string().contains("no flow run matches"), "{e}");
    std::fs::remove_file(&flag).unwrap();
    hw(home.path(), &["flow-run", "retry", &run.id.to_string()]).await.unwrap();
    hw(home.path(), &worker).await.unwrap();

    let again = store.read_flow_run(run.id).await.unwrap().unwrap();
    assert_eq!(again.state.state_type, StateType::Completed, "{}", again.state);
    assert_eq!(again.run_count, 2, "the same run, run a second time");
    let tasks = store.list_task_runs(run.id).await.unwrap();
    let extracts: Vec<_> =
        tasks.iter().filter(|t| t.task_name == "extract_for_load").map(|t| t.state.name.as_str()).collect();
    assert_eq!(extracts, ["Completed", "Cached"], "the extract is not redone");
    let cleans: Vec<_> = tasks.iter().filter(|t| t.task_name == "clean_for_load").collect();
    assert_eq!(cleans.len(), 2);
    assert_eq!(cleans[1].state.name, "Cached", "the clean completed in the first attempt is not redone");
    assert!(cleans[1].state.message.as_deref().unwrap().starts_with("completed in an earlier attempt"));
    let history: Vec<_> = store.read_states(run.id).await.unwrap().into_iter().map(|s| s.state.name).collect();
    assert!(history.contains(&"AwaitingRetry".to_string()) && history.last().unwrap() == "Completed", "{history:?}");
    let e = hw(home.path(), &["flow-run", "retry", &run.id.to_string()]).await;
    assert!(e.is_ok(), "a completed run can be run again too");
}

/// The whole path through a server: deploy, start a run and work it with
/// HEADWATER_API_URL set; the flow process reports to the server too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_run_and_work_through_a_server() {
    let server_dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&server_dir.path().join("server.db")).await.unwrap());
    through_a_server(store).await;
}

/// The same path with the server on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_run_and_work_through_a_server_on_postgres() {
    let Some(db) = headwater_test_support::PgTestDb::create().await else { return };
    let store = headwater_sql::open(&db.url).await.unwrap();
    through_a_server(store).await;
}

async fn through_a_server(server_store: std::sync::Arc<dyn headwater_store::Store>) {
    use headwater_core::StateType;
    use headwater_store::FlowRunFilter;

    let server = headwater_server::RunningServer::start(server_store.clone(), vec![]).await.unwrap();
    // This test runs in its own process (nextest), so its environment is its own.
    std::env::set_var("HEADWATER_API_URL", server.api_url());
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!("deployments:\n  - name: remote\n    flow: one-task\n    entrypoint: [\"{BIN}\", \"one-task\"]\n    work_pool: {{name: remote}}\n"),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();
    hw(home.path(), &["deployment", "run", "remote"]).await.unwrap();
    hw(home.path(), &["worker", "start", "--pool", "remote", "--exit-when-idle"]).await.unwrap();
    std::env::remove_var("HEADWATER_API_URL");

    let runs = server_store.list_flow_runs(&FlowRunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state.state_type, StateType::Completed);
    assert_eq!(server_store.list_task_runs(runs[0].id).await.unwrap().len(), 1);
    assert!(!home.path().join("headwater.db").exists(), "everything went to the server");
    server.stop().await.unwrap();
}

/// A worker rides out a server restart: it waits while the server is away
/// and runs what is created once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_survives_a_server_restart() {
    use headwater_core::StateType;
    use headwater_server::{RunningServer, ServerConfig};
    use headwater_store::{FlowRunFilter, RunReader};

    let server_dir = tempfile::tempdir().unwrap();
    let db = server_dir.path().join("server.db");
    let first = std::sync::Arc::new(SqliteStore::open(&db).await.unwrap());
    let server = RunningServer::start(first, vec![]).await.unwrap();
    let addr = server.addr;
    // This test runs in its own process (nextest), so its environment is its own.
    std::env::set_var("HEADWATER_API_URL", server.api_url());
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!("deployments:\n  - name: steady\n    flow: one-task\n    entrypoint: [\"{BIN}\", \"one-task\"]\n    work_pool: {{name: steady}}\n"),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();
    let worker_home = home.path().to_path_buf();
    let worker = tokio::spawn(async move {
        hw(&worker_home, &["worker", "start", "--pool", "steady", "--max-runs", "1", "--poll-ms", "50"]).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.stop().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(!worker.is_finished(), "the worker waits for the server to come back");
    let second = std::sync::Arc::new(SqliteStore::open(&db).await.unwrap());
    let config = ServerConfig { host: addr.ip().to_string(), port: addr.port(), ..Default::default() };
    let again = RunningServer::start_with(second.clone(), config).await.unwrap();
    hw(home.path(), &["deployment", "run", "steady"]).await.unwrap();
    worker.await.unwrap().unwrap();
    std::env::remove_var("HEADWATER_API_URL");
    let runs = second.list_flow_runs(&FlowRunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state.state_type, StateType::Completed);
    again.stop().await.unwrap();
}
