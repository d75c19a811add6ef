use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use headwater_core::StateType;
use headwater_sql::SqliteStore;
use headwater_store::{FlowRunFilter, RunReader};

const BIN: &str = env!("CARGO_BIN_EXE_hw-examples");

fn examples(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("HEADWATER_HOME", home)
        .env_remove("HEADWATER_API_URL")
        .env_remove("HEADWATER_PROFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    examples(home, args).output().expect("the example program runs")
}

async fn store(home: &Path) -> SqliteStore {
    SqliteStore::open(&home.join("headwater.db")).await.unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn a_cached_task_is_not_rerun_by_a_second_process() {
    let home = tempfile::tempdir().unwrap();
    let first = run(home.path(), &["caching", "-p", "n=4000"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("this is not from the cache"));
    let second = run(home.path(), &["caching", "-p", "n=4000"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(!stderr(&second).contains("this is not from the cache"), "{}", stderr(&second));
    assert!(stderr(&second).contains("sum of 1..=4000 is 8002000"));
    // A different input runs the body again.
    let third = run(home.path(), &["caching", "-p", "n=10"]);
    assert!(stderr(&third).contains("this is not from the cache"));

    let s = store(home.path()).await;
    let runs = s.list_flow_runs(&FlowRunFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(runs.len(), 3);
    let states: Vec<_> = {
        let mut v = Vec::new();
        for r in runs.iter().rev() {
            v.push(s.list_task_runs(r.id).await.unwrap()[0].state.name.clone());
        }
        v
    };
    assert_eq!(states, ["Completed", "Cached", "Completed"]);
}

#[tokio::test]
async fn refused_parameters_exit_2_and_create_no_run() {
    let home = tempfile::tempdir().unwrap();
    let o = run(home.path(), &["etl-web-to-lake", "-p", "color=yellow", "-p", "year=2021", "-p", "month=13"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid parameter 'month': month must be between 1 and 12, got 13"), "{}", stderr(&o));
    let o = run(home.path(), &["etl-web-to-lake", "--params", r#"{"color": "mauve", "year": 2021, "month": 1}"#]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid parameter 'color': unknown variant `mauve`"), "{}", stderr(&o));
    let o = run(home.path(), &["no-such-flow"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no flow named 'no-such-flow'"));
    let s = store(home.path()).await;
    assert!(s.list_flow_runs(&FlowRunFilter { limit: 10, ..Default::default() }).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_flow_exits_1_after_its_retries() {
    let home = tempfile::tempdir().unwrap();
    let o = run(home.path(), &["always-fails"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error: flow 'always-fails' failed: the warehouse is unreachable"));
    let s = store(home.path()).await;
    let run = &s.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap()[0];
    assert_eq!(run.state.state_type, StateType::Failed);
    assert_eq!(run.run_count, 2);
}

/// Ctrl-C ends the run CANCELLED, with its task runs, instead of leaving
/// them RUNNING; the process exits 130 like an interrupted shell command.
#[tokio::test]
async fn ctrl_c_leaves_final_states() {
    let home = tempfile::tempdir().unwrap();
    let child = examples(home.path(), &["long-running", "-p", "secs=300"]).spawn().unwrap();
    let s = store(home.path()).await;
    let mut running = false;
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let runs = s.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap();
        if let Some(r) = runs.first() {
            let tasks = s.list_task_runs(r.id).await.unwrap();
            if tasks.len() == 2 && tasks.iter().all(|t| t.state.state_type == StateType::Running) {
                running = true;
                break;
            }
        }
    }
    assert!(running, "the flow and both task runs started");
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let run = &s.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap()[0];
    assert_eq!(run.state.state_type, StateType::Cancelled);
    assert_eq!(run.state.message.as_deref(), Some("Flow run was interrupted by Ctrl-C (SIGINT)"));
    for t in s.list_task_runs(run.id).await.unwrap() {
        assert_eq!(t.state.state_type, StateType::Cancelled, "{}", t.name);
    }
}

/// Two processes recording thousands of task runs into one database at the
/// same time: both succeed and every record is there.
#[tokio::test]
async fn two_processes_write_one_store_at_once() {
    let home = tempfile::tempdir().unwrap();
    // Create the database first so both processes race on writes, not on creation.
    drop(store(home.path()).await);
    let a = examples(home.path(), &["bench-tasks", "-p", "n=3000", "-p", "concurrent=true"]).spawn().unwrap();
    let b = examples(home.path(), &["bench-tasks", "-p", "n=3000"]).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(!stderr(&a).contains("locked") && !stderr(&b).contains("locked"));
    let s = store(home.path()).await;
    let runs = s.list_flow_runs(&FlowRunFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(r.state.state_type, StateType::Completed);
        let tasks = s.list_task_runs(r.id).await.unwrap();
        assert_eq!(tasks.len(), 3000);
        assert!(tasks.iter().all(|t| t.state.state_type == StateType::Completed));
    }
}

#[tokio::test]
async fn the_parent_flow_runs_a_subflow_per_month() {
    let home = tempfile::tempdir().unwrap();
    let o = run(home.path(), &["etl-parent-flow", "-p", "months=[1,2]", "-p", "color=green"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("total rows: "), "{}", stderr(&o));
    let s = store(home.path()).await;
    let parent = s
        .list_flow_runs(&FlowRunFilter { flow_name: Some("etl-parent-flow".into()), limit: 1, ..Default::default() })
        .await
        .unwrap()
        .remove(0);
    assert_eq!(parent.parameters["year"], 2021, "default filled in");
    let children = s
        .list_flow_runs(&FlowRunFilter { parent_flow_run_id: Some(parent.id), limit: 10, ..Default::default() })
        .await
        .unwrap();
    let mut names: Vec<_> = children.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["green-2021-01", "green-2021-02"]);
}

/// The example program with HEADWATER_API_URL: every run goes to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_reports_to_a_server_when_told_to() {
    let server_dir = tempfile::tempdir().unwrap();
    let server_store = std::sync::Arc::new(store(server_dir.path()).await);
    let server = headwater_server::RunningServer::start(server_store.clone(), vec![]).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let o = examples(home.path(), &["etl-parent-flow", "-p", "months=[4]"])
        .env("HEADWATER_API_URL", server.api_url())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let runs = server_store.list_flow_runs(&FlowRunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 2, "parent and one subflow");
    assert!(runs.iter().all(|r| r.state.state_type == StateType::Completed));
    assert!(!home.path().join("headwater.db").exists(), "nothing recorded locally");
    server.stop().await.unwrap();
}

/// kill -9 gives a process no chance to record anything. Its runs stop
/// beating, and the next process to open the store marks them CRASHED,
/// with their unfinished task runs: none stays RUNNING.
#[tokio::test]
async fn a_killed_process_leaves_its_runs_crashed_not_running() {
    let home = tempfile::tempdir().unwrap();
    let beat = [("HEADWATER_HEARTBEAT_SECONDS", "0.2"), ("HEADWATER_HEARTBEAT_TIMEOUT_SECONDS", "1.5")];
    let mut child = examples(home.path(), &["long-running", "-p", "secs=300"]).envs(beat).spawn().unwrap();
    let s = store(home.path()).await;
    let mut run = None;
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(r) = s.list_flow_runs(&FlowRunFilter { limit: 1, ..Default::default() }).await.unwrap().pop() {
            let tasks = s.list_task_runs(r.id).await.unwrap();
            if tasks.len() == 2 && tasks.iter().all(|t| t.state.state_type == StateType::Running) {
                run = Some(r);
                break;
            }
        }
    }
    let run = run.expect("the flow and both task runs started");
    // While it lives, its heartbeat moves.
    let first = run.heartbeat.unwrap();
    let mut later = first;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        later = s.read_flow_run(run.id).await.unwrap().unwrap().heartbeat.unwrap();
        if later > first {
            break;
        }
    }
    assert!(later > first, "heartbeats are recorded while the process runs");

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(s.read_flow_run(run.id).await.unwrap().unwrap().state.state_type, StateType::Running);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // Any later process that opens the store looks for dead runs.
    let o = examples(home.path(), &["one-task"]).envs(beat).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("marked CRASHED"), "{}", stderr(&o));
    let crashed = s.read_flow_run(run.id).await.unwrap().unwrap();
    assert_eq!(crashed.state.state_type, StateType::Crashed);
    assert!(crashed.state.message.as_deref().unwrap().starts_with("no heartbeat since"));
    for t in s.list_task_runs(run.id).await.unwrap() {
        assert_eq!(t.state.state_type, StateType::Crashed, "{}", t.name);
    }
}

/// A process killed while its task holds a concurrency slot: the slot is a
/// lease, renewed while the process lives and freed by itself once the
/// process is gone for the lease's time, so a crash never keeps a slot.
#[tokio::test]
async fn a_killed_process_frees_its_concurrency_slot_after_the_lease() {
    use headwater_store::ConcurrencyStore;

    let home = tempfile::tempdir().unwrap();
    let beat = [("HEADWATER_HEARTBEAT_SECONDS", "0.2"), ("HEADWATER_HEARTBEAT_TIMEOUT_SECONDS", "1.5")];
    let s = store(home.path()).await;
    s.set_concurrency_limit("warehouse", 1, None).await.unwrap();
    let mut child = examples(home.path(), &["hold-slot", "-p", "secs=300"]).envs(beat).spawn().unwrap();
    let in_use = || async { s.read_concurrency_limit("warehouse").await.unwrap().unwrap().active_slots };
    for _ in 0..500 {
        if in_use().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(in_use().await, 1, "the task took the slot");
    // Held past the lease's length while the process lives: it renews.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(in_use().await, 1, "the lease is renewed while its holder lives");

    child.kill().unwrap(); // SIGKILL: nothing is released
    child.wait().unwrap();
    assert_eq!(in_use().await, 1);
    let killed = std::time::Instant::now();
    while in_use().await == 1 && killed.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_use().await, 0, "the slot freed itself once the lease ran out");
    // And another process gets it.
    let o = examples(home.path(), &["hold-slot", "-p", "secs=0"]).envs(beat).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `serve`: the program deploys its flow and runs that deployment's runs
/// itself — scheduled ones and one started by hand — until Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_its_own_scheduled_and_manual_runs() {
    use headwater_store::DeploymentStore;

    let home = tempfile::tempdir().unwrap();
    let child = examples(home.path(), &["serve", "one-task", "--interval", "1s", "--name", "served"]).spawn().unwrap();
    let s = store(home.path()).await;
    let mut deployment = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(d) = s.read_deployment("served").await.unwrap() {
            deployment = Some(d);
            break;
        }
    }
    let d = deployment.expect("serve registered its deployment");
    assert_eq!(d.schedules.len(), 1);
    let of_deployment = || async {
        s.list_flow_runs(&FlowRunFilter { limit: 1000, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.deployment_id == Some(d.id))
            .collect::<Vec<_>>()
    };
    let mut scheduled_done = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        scheduled_done = of_deployment()
            .await
            .iter()
            .filter(|r| r.idempotency_key.is_some() && r.state.state_type == StateType::Completed)
            .count();
        if scheduled_done >= 2 {
            break;
        }
    }
    assert!(scheduled_done >= 2, "scheduled runs completed: {scheduled_done}");

    headwater_cli::try_run_from(["headwater", "--home", home.path().to_str().unwrap(), "deployment", "run", "served"])
        .await
        .unwrap();
    let mut manual_done = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        manual_done = of_deployment()
            .await
            .iter()
            .any(|r| r.idempotency_key.is_none() && r.state.state_type == StateType::Completed);
        if manual_done {
            break;
        }
    }
    assert!(manual_done, "the run started by hand was served too");

    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for r in of_deployment().await {
        assert!(!matches!(r.state.state_type, StateType::Running | StateType::Pending), "{} is {}", r.name, r.state);
    }
}

/// A flow process gives its concurrency slots back before it exits: the
/// next process does not wait for the lease to expire. (The lost release
/// this guards against was a race this flow's shape has not shown; the
/// backfill benchmark's loop showed it as a 60 s wait.)
#[tokio::test]
async fn a_flow_process_gives_its_slots_back_before_it_exits() {
    use headwater_store::ConcurrencyStore;
    let home = tempfile::tempdir().unwrap();
    let s = store(home.path()).await;
    s.set_concurrency_limit("warehouse", 1, None).await.unwrap();
    for i in 0..5 {
        let o = run(home.path(), &["hold-slot", "-p", "secs=0"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let limits = s.list_concurrency_limits().await.unwrap();
        let held = limits.iter().find(|l| l.name == "warehouse").unwrap().active_slots;
        assert_eq!(held, 0, "run {i}: the exited process still holds a warehouse slot");
    }
}
