//! PostgreSQL tests against a real server (see `headwater_test_support`).

use std::sync::Arc;

use chrono::Utc;
use headwater_core::{flow_id_for_name, Flow, FlowRun, LogLevel, LogRecord, State};
use headwater_sql::PostgresStore;
use headwater_store::{conformance, LogFilter, RunReader, RunRecorder, WriteBatch};
use headwater_test_support::PgTestDb as TestDb;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn postgres_passes_the_conformance_suite() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PostgresStore::open(&db.url).await.unwrap().with_secret_key(&headwater_store::SecretKey::generate());
    conformance::run_all(&store).await;
    conformance::api_keys_are_hashed_revocable_and_calls_audited(&store).await;
    store.close().await;

    // The list's indexes: name search by trigrams (pg_trgm is installed on
    // the machines the tests run on) and filters answered from the index.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let defs: Vec<(String, String)> =
        sqlx::query_as("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'flow_runs'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let def = |name: &str| defs.iter().find(|d| d.0 == name).map(|d| d.1.clone()).unwrap_or_default();
    assert!(def("flow_runs_name_trgm").contains("gin_trgm_ops"), "{defs:?}");
    assert!(def("flow_runs_flow").contains("INCLUDE (state_type, state_name, tags, deployment_id)"), "{defs:?}");
    assert!(def("flow_runs_state").contains("INCLUDE (flow_name, state_name, tags, deployment_id)"), "{defs:?}");
}

#[tokio::test]
async fn two_servers_migrating_at_once_agree() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (a, b) = tokio::join!(PostgresStore::open(&db.url), PostgresStore::open(&db.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    conformance::empty_batch_is_fine(&a).await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_snapshots_of_one_run_in_a_batch() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = Arc::new(PostgresStore::open(&db.url).await.unwrap());
    let flow = Flow {
        id: flow_id_for_name("pg-writers"),
        name: "pg-writers".into(),
        version: None,
        description: None,
        parameter_schema: json!({}),
        created: Utc::now(),
        updated: Utc::now(),
    };
    let mut run = FlowRun {
        flow_id: flow.id,
        run_count: 0,
        ..FlowRun::new(Uuid::now_v7(), &flow.name, "r", State::pending(Utc::now()), Utc::now())
    };
    // Two snapshots of one run in a batch: the last wins.
    let mut done = run.clone();
    done.state = State::completed(Utc::now());
    store
        .record(&WriteBatch {
            flows: vec![flow.clone(), flow],
            flow_runs: vec![run.clone(), done],
            ..Default::default()
        })
        .await
        .unwrap();
    run = store.read_flow_run(run.id).await.unwrap().unwrap();
    assert_eq!(run.state.name, "Completed");

    let mut handles = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        let id = run.id;
        handles.push(tokio::spawn(async move {
            for i in 0..50 {
                let logs = (0..20)
                    .map(|j| LogRecord {
                        id: 0,
                        flow_run_id: id,
                        task_run_id: None,
                        level: LogLevel::Info,
                        timestamp: Utc::now(),
                        message: format!("writer {w} batch {i} line {j}"),
                    })
                    .collect();
                store.record(&WriteBatch { logs, ..Default::default() }).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let logs = store.read_logs(&LogFilter { limit: 100_000, ..LogFilter::for_flow_run(run.id) }).await.unwrap();
    assert_eq!(logs.len(), 6000);
    store.close().await;
}
