//! The user's path through the web UI, every part real: `headwater deploy`
//! of the example program, a custom run started from the deployment's form
//! in headless Chromium, a process worker running it while the page follows
//! it live, its timeline and logs; then a run cancelled from its page while
//! its flow process runs.

use std::sync::Arc;

use headwater_core::StateType;
use headwater_server::RunningServer;
use headwater_sql::SqliteStore;
use headwater_store::{FlowRunFilter, Store};
use headwater_test_support::Browser;
use serde_json::json;

use super::deploy::{hw, BIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_then_run_watch_and_cancel_from_the_ui() {
    let Some(b) = Browser::start().await else { return };
    let server_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&server_dir.path().join("server.db")).await.unwrap());
    let server = RunningServer::start(store.clone(), vec![]).await.unwrap();
    // This test runs in its own process (nextest): the CLI, the worker and
    // the flow processes it starts all report to the server.
    std::env::set_var("HEADWATER_API_URL", server.api_url());
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        format!(
            r#"deployments:
  - name: month-to-lake
    flow: etl-web-to-lake
    entrypoint: ["{BIN}", "etl-web-to-lake"]
    parameters: {{color: yellow, year: 2021, month: 1}}
    work_pool: {{name: ui}}
  - name: slow
    flow: long-running
    entrypoint: ["{BIN}", "long-running"]
    parameters: {{secs: 300}}
    work_pool: {{name: ui}}
    env: {{HEADWATER_HEARTBEAT_SECONDS: "0.2"}}
"#
        ),
    )
    .unwrap();
    hw(home.path(), &["deploy", "--all", "--file", file.to_str().unwrap()]).await.unwrap();
    let ui = format!("http://{}", server.addr);

    // The custom run form comes from the flow's own parameter types, known
    // since the deploy (the flow has never run): a choice for the colour,
    // the deployment's values filled in.
    b.goto(&format!("{ui}/deployments/month-to-lake")).await;
    b.wait("the run form", "document.querySelector('#f-month')").await;
    let colours = b.js("return [...document.querySelectorAll('#f-color option')].map(o => o.value).join(',')").await;
    assert_eq!(colours, "yellow,green");
    let filled =
        b.js("return [document.querySelector('#f-year').value, document.querySelector('#f-month').value]").await;
    assert_eq!(filled, json!(["2021", "1"]));
    // One invalid value, refused beside its field before anything is sent.
    b.type_into("#f-month", "13").await;
    b.click("form.run-form button[type=submit]").await;
    b.wait("the inline error", "document.getElementById('f-month-err').textContent === 'must be at most 12'").await;
    assert!(store.list_flow_runs(&FlowRunFilter::default()).await.unwrap().is_empty(), "nothing was submitted");
    b.screenshot("e2e-custom-run-invalid").await;
    b.type_into("#f-month", "2").await;
    b.js("document.querySelector('#f-color').value = 'green'").await;
    b.click("form.run-form button[type=submit]").await;
    b.wait("the new run's page", "location.pathname.startsWith('/runs/') && document.querySelector('h1 .badge')").await;
    let run = store.list_flow_runs(&FlowRunFilter::default()).await.unwrap().remove(0);
    assert_eq!(run.parameters, json!({"color": "green", "year": 2021, "month": 2}));
    assert_eq!(run.state.state_type, StateType::Scheduled);

    // A worker runs it; the open page follows the run to its end.
    b.js("window.__sameDocument = true").await;
    let worker_home = home.path().to_path_buf();
    let worker = tokio::spawn(async move {
        hw(&worker_home, &["worker", "start", "--pool", "ui", "--max-runs", "2", "--poll-ms", "50"]).await
    });
    b.wait("the run's end", "document.querySelector('h1 .badge').textContent === 'Completed'").await;
    assert_eq!(b.js("return window.__sameDocument === true").await, true, "followed without a reload");
    let bars = b
        .wait(
            "the timeline",
            "document.querySelectorAll('.g-row').length === 2 && [...document.querySelectorAll('.g-row')].map(r => r.getAttribute('aria-label')).join('|')",
        )
        .await;
    let bars = bars.as_str().unwrap();
    assert!(bars.starts_with("extract-0: Completed") && bars.contains("|clean-0: Completed"), "{bars}");
    b.wait("the flow's logs", "document.querySelector('.logs').innerText.includes('fetched Green 2021-02')").await;
    b.screenshot("e2e-run-completed").await;

    // Cancel a run while its flow process runs: the worker stops it.
    b.goto(&format!("{ui}/deployments/slow")).await;
    let quick = "[...document.querySelectorAll('button')].find(x => x.textContent === 'Quick run')";
    b.wait("the quick run button", quick).await;
    b.js(&format!("{quick}.click()")).await;
    b.wait(
        "the run running",
        "location.pathname.startsWith('/runs/') && document.querySelector('h1 .badge') \
         && document.querySelector('h1 .badge').textContent === 'Running' \
         && document.querySelectorAll('.g-row').length === 2",
    )
    .await;
    let cancel = "[...document.querySelectorAll('button')].find(x => x.textContent === 'Cancel')";
    b.js(&format!("{cancel}.click()")).await;
    b.wait("the run cancelled", "document.querySelector('h1 .badge').textContent === 'Cancelled'").await;
    b.screenshot("e2e-run-cancelled").await;
    worker.await.unwrap().unwrap();
    std::env::remove_var("HEADWATER_API_URL");

    let runs = store.list_flow_runs(&FlowRunFilter::default()).await.unwrap();
    let states: Vec<(&str, StateType)> = runs.iter().map(|r| (r.flow_name.as_str(), r.state.state_type)).collect();
    assert_eq!(states, [("long-running", StateType::Cancelled), ("etl-web-to-lake", StateType::Completed)]);
    for t in store.list_task_runs(runs[0].id).await.unwrap() {
        assert_eq!(t.state.state_type, StateType::Cancelled, "{}", t.name);
    }
    b.close().await;
    server.stop().await.unwrap();
}
