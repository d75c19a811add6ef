//! Flows read variables and publish artifacts, embedded and through a
//! server, with the same results.

use std::sync::Arc;

use headwater::prelude::*;
use headwater::{markdown_artifact, table_artifact, variables, Engine};
use headwater_core::{ArtifactKind, Variable};
use headwater_server::RunningServer;
use headwater_sql::SqliteStore;
use headwater_store::{ArtifactFilter, Store};
use serde_json::json;

#[task]
async fn count_rows(months: Vec<u32>) -> Result<u64> {
    let rows: Vec<_> = months.iter().map(|m| json!({"month": m, "rows": 1000 * m})).collect();
    table_artifact(&rows)?.key("rows-per-month").description("from a task").publish()?;
    Ok(months.iter().map(|m| 1000 * u64::from(*m)).sum())
}

#[flow(name = "publisher")]
async fn publisher() -> Result<u64> {
    let months: Vec<u32> = variables::get_as("taxi_months").await?.context("taxi_months is not set")?;
    let total = count_rows(months).await?;
    markdown_artifact(format!("# Done\n\n{total} rows")).publish()?;
    variables::set("last_total", total).await?;
    Ok(total)
}

async fn publish_and_check(engine: Arc<Engine>, store: Arc<dyn Store>) {
    let now = chrono::Utc::now();
    let months =
        Variable { name: "taxi_months".into(), value: json!([1, 2]), tags: vec![], created: now, updated: now };
    store.set_variable(&months).await.unwrap();
    assert_eq!(engine.scope(publisher()).await.unwrap(), 3000);

    let all = store.list_artifacts(&ArtifactFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let table = all.iter().find(|a| a.kind == ArtifactKind::Table).unwrap();
    assert_eq!(table.key.as_deref(), Some("rows-per-month"));
    assert_eq!(table.data, json!([{"month": 1, "rows": 1000}, {"month": 2, "rows": 2000}]));
    assert!(table.task_run_id.is_some(), "published from inside the task");
    let note = all.iter().find(|a| a.kind == ArtifactKind::Markdown).unwrap();
    assert_eq!(note.data, json!("# Done\n\n3000 rows"));
    assert_eq!(note.flow_run_id, table.flow_run_id);
    assert!(note.task_run_id.is_none());
    assert_eq!(store.read_variable("last_total").await.unwrap().unwrap().value, json!(3000));

    let bad = engine.scope(async { markdown_artifact("x").key("Not A Key").publish() }).await.unwrap_err();
    assert!(bad.to_string().contains("artifact key 'Not A Key' contains 'N'"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_read_variables_and_publish_artifacts() {
    let home = tempfile::tempdir().unwrap();
    let engine = Engine::with_home(home.path()).unwrap();
    let store = Arc::new(SqliteStore::open(&home.path().join("headwater.db")).await.unwrap());
    publish_and_check(engine, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_read_variables_and_publish_artifacts_through_a_server() {
    let server_dir = tempfile::tempdir().unwrap();
    let server_store: Arc<dyn Store> = Arc::new(SqliteStore::open(&server_dir.path().join("s.db")).await.unwrap());
    let server = RunningServer::start(server_store.clone(), vec![]).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let engine = Engine::with_settings(home.path(), &[("HEADWATER_API_URL", &server.api_url())]).unwrap();
    publish_and_check(engine, server_store).await;
    server.stop().await.unwrap();
}
