use std::sync::Arc;

use chrono::Utc;
use headwater_core::{flow_id_for_name, Flow, FlowRun, LogLevel, LogRecord, State};
use headwater_sql::SqliteStore;
use headwater_store::{conformance, LogFilter, RunReader, RunRecorder, WriteBatch};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hw.db"))
        .await
        .unwrap()
        .with_secret_key(&headwater_store::SecretKey::generate());
    conformance::run_all(&store).await;
    conformance::api_keys_are_hashed_revocable_and_calls_audited(&store).await;
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_remigrate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hw.db");
    let store = SqliteStore::open(&path).await.unwrap();
    conformance::flows_upsert_by_name(&store).await;
    store.close().await;
    let again = SqliteStore::open(&path).await.unwrap();
    assert_eq!(again.list_flows().await.unwrap().len(), 1);
}

/// Separate pools on one file behave like separate processes: each has its
/// own connections and locks. Many concurrent writers must all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_see_database_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hw.db");
    let mut handles = Vec::new();
    for w in 0..6 {
        let path = path.clone();
        handles.push(tokio::spawn(async move {
            let store = Arc::new(SqliteStore::open(&path).await.unwrap());
            let name = format!("writer-{w}");
            let flow = Flow {
                id: flow_id_for_name(&name),
                name: name.clone(),
                version: None,
                description: None,
                parameter_schema: json!({}),
                created: Utc::now(),
                updated: Utc::now(),
            };
            let run = FlowRun {
                flow_id: flow.id,
                ..FlowRun::new(Uuid::now_v7(), &name, &format!("run-{w}"), State::running(Utc::now()), Utc::now())
            };
            store
                .record(&WriteBatch { flows: vec![flow], flow_runs: vec![run.clone()], ..Default::default() })
                .await
                .unwrap();
            for i in 0..100 {
                let logs = (0..20)
                    .map(|j| LogRecord {
                        id: 0,
                        flow_run_id: run.id,
                        task_run_id: None,
                        level: LogLevel::Info,
                        timestamp: Utc::now(),
                        message: format!("batch {i} line {j}"),
                    })
                    .collect();
                store.record(&WriteBatch { logs, ..Default::default() }).await.unwrap();
            }
            run.id
        }));
    }
    let store = SqliteStore::open(&path).await.unwrap();
    for h in handles {
        let id = h.await.unwrap();
        let logs = store.read_logs(&LogFilter::for_flow_run(id)).await.unwrap();
        assert_eq!(logs.len(), 2000);
    }
}
