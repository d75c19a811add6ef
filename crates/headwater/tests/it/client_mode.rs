//! With HEADWATER_API_URL set, flows record to the server over HTTP with
//! the same results as the embedded store.

use std::sync::Arc;

use headwater::prelude::*;
use headwater::Engine;
use headwater_core::StateType;
use headwater_server::RunningServer;
use headwater_sql::SqliteStore;
use headwater_store::{FlowRunFilter, RunReader, Store};

#[task(retries = 1, retry_delay = 0)]
async fn double(x: u64) -> Result<u64> {
    info!("doubling {x}");
    Ok(x * 2)
}

#[flow(name = "remote-child")]
async fn remote_child(x: u64) -> Result<u64> {
    double(x).await
}

#[flow(name = "remote-parent")]
async fn remote_parent(xs: Vec<u64>) -> Result<u64> {
    let mut sum = 0;
    for x in xs {
        sum += remote_child(x).await?;
    }
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_record_to_the_server() {
    let server_dir = tempfile::tempdir().unwrap();
    let server_store = Arc::new(SqliteStore::open(&server_dir.path().join("server.db")).await.unwrap());
    let server = RunningServer::start(server_store.clone() as Arc<dyn Store>, vec!["key-1".into()]).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let url = server.api_url();
    let engine =
        Engine::with_settings(home.path(), &[("HEADWATER_API_URL", &url), ("HEADWATER_API_KEY", "key-1")]).unwrap();

    assert_eq!(engine.scope(remote_parent(vec![1, 2, 3])).await.unwrap(), 12);

    // The root flow returned only after everything reached the server.
    let runs = server_store.list_flow_runs(&FlowRunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.state.state_type == StateType::Completed));
    let parent = runs.iter().find(|r| r.flow_name == "remote-parent").unwrap();
    let children: Vec<_> = runs.iter().filter(|r| r.parent_flow_run_id == Some(parent.id)).collect();
    assert_eq!(children.len(), 3);
    let tasks = server_store.list_task_runs(children[0].id).await.unwrap();
    assert_eq!(tasks[0].name, "double-0");
    let flow = server_store.read_flow("remote-parent").await.unwrap().unwrap();
    assert_eq!(flow.parameter_schema["properties"]["xs"]["type"], "array");
    // Nothing was written locally.
    assert!(!home.path().join("headwater.db").exists());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_reported_before_any_flow_runs() {
    let home = tempfile::tempdir().unwrap();
    let err = Engine::with_settings(home.path(), &[("HEADWATER_API_URL", "http://127.0.0.1:9/api")]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cannot reach the Headwater server at http://127.0.0.1:9/api"), "{msg}");
}

// Opening an engine waits for its recorder, so the in-process server needs
// another worker thread to answer meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_api_key_is_reported_before_any_flow_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
    let server = RunningServer::start(store, vec!["right".into()]).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let err = Engine::with_settings(home.path(), &[("HEADWATER_API_URL", &server.api_url())]).unwrap_err();
    assert!(err.to_string().contains("requires an API key"), "{err}");
}

#[task]
async fn tick(i: u32) -> Result<u32> {
    Ok(i)
}

#[flow(name = "through-a-restart")]
async fn through_a_restart(n: u32) -> Result<u32> {
    let mut sum = 0;
    for i in 0..n {
        sum += tick(i).await?;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(sum)
}

/// The server goes away in the middle of a run and comes back on the same
/// address 8 s later: the flow carries on, and nothing it reported is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_run_loses_nothing() {
    use headwater_server::ServerConfig;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let first: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).await.unwrap());
    let server = RunningServer::start(first, vec![]).await.unwrap();
    let addr = server.addr;
    let home = tempfile::tempdir().unwrap();
    let engine = Engine::with_settings(home.path(), &[("HEADWATER_API_URL", &server.api_url())]).unwrap();
    let flow = tokio::spawn(async move { engine.scope(through_a_restart(30)).await });

    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    server.stop().await.unwrap();
    // Longer than the run itself: the flow ends while the server is away,
    // and its final flush must wait for it rather than drop anything.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert!(!flow.is_finished(), "the root flow waits until its records are on the server");
    let second: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).await.unwrap());
    let config = ServerConfig { host: addr.ip().to_string(), port: addr.port(), ..Default::default() };
    let again = RunningServer::start_with(second.clone(), config).await.unwrap();

    assert_eq!(flow.await.unwrap().unwrap(), (0..30).sum::<u32>());
    let run = second
        .list_flow_runs(&FlowRunFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.flow_name == "through-a-restart")
        .expect("the run reached the server");
    assert_eq!(run.state.state_type, StateType::Completed);
    let tasks = second.list_task_runs(run.id).await.unwrap();
    assert_eq!(tasks.len(), 30);
    assert!(tasks.iter().all(|t| t.state.state_type == StateType::Completed));
    again.stop().await.unwrap();
}
