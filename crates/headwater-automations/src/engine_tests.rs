//! The engine against a real (SQLite) store: each trigger fires once per
//! event, and each store-side action does what it says.

use std::sync::Arc;

use chrono::{Duration, Utc};
use headwater_core::{
    parse_manifest, Automation, DeliveryStatus, Deployment, FlowRun, RunKind, State, StateRecord, StateType,
};
use headwater_sql::SqliteStore;
use headwater_store::{Store, WriteBatch};
use serde_json::json;

use crate::{Engine, EngineConfig};

async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hw.db")).await.unwrap();
    (dir, Arc::new(store))
}

fn automation(v: serde_json::Value, created_ago: Duration) -> Automation {
    let mut a: Automation = serde_json::from_value(v).unwrap();
    crate::check(&a).unwrap();
    a.id = headwater_core::automation_id_for_name(&a.name);
    a.created = Utc::now() - created_ago;
    a.updated = a.created;
    a
}

async fn deployment(store: &dyn Store, name: &str, created_ago: Duration) -> Deployment {
    let doc = json!({"deployments": [{"name": name, "flow": "etl", "entrypoint": "./etl",
        "schedules": [{"interval": "1h"}], "work_pool": {"name": "local"}}]});
    let mut d = parse_manifest("headwater.yaml", doc, &|_| None, Utc::now() - created_ago).unwrap().remove(0);
    d.created = Utc::now() - created_ago;
    store.apply_deployment(&d).await.unwrap()
}

async fn states(store: &dyn Store, run: &FlowRun, list: Vec<State>) {
    let mut snapshot = run.clone();
    snapshot.state = list.last().unwrap().clone();
    let states = list.into_iter().map(|state| StateRecord { run_id: run.id, kind: RunKind::Flow, state }).collect();
    store.record(&WriteBatch { flow_runs: vec![snapshot], states, ..Default::default() }).await.unwrap();
}

async fn deliveries(store: &dyn Store, name: &str) -> Vec<headwater_core::Delivery> {
    store.list_deliveries(name, 100).await.unwrap()
}

#[tokio::test]
async fn a_failed_run_notifies_once_and_a_missing_block_is_a_visible_error() {
    let (_dir, store) = store().await;
    let mut engine = Engine::new(store.clone(), EngineConfig::default());
    engine.tick().await.unwrap(); // starts the cursor here
    let a = automation(
        json!({"name": "on-failure", "trigger": {"type": "flow-run-state", "states": ["Failed"], "flows": ["etl"]},
               "actions": [{"type": "notify", "block": "nowhere"}]}),
        Duration::seconds(1),
    );
    store.apply_automation(&a).await.unwrap();
    let d = deployment(store.as_ref(), "etl-hourly", Duration::zero()).await;
    let now = Utc::now();
    let run = d.manual_run(&json!({}), now, now, 7);
    let mut other = d.manual_run(&json!({}), now, now, 8);
    other.flow_name = "other".into();
    states(store.as_ref(), &run, vec![State::running(now), State::failed(now, "boom")]).await;
    states(store.as_ref(), &other, vec![State::failed(now, "not watched")]).await;
    let t = engine.tick().await.unwrap();
    assert_eq!((t.events, t.enqueued, t.failed), (3, 1, 1), "{t:?}");
    engine.tick().await.unwrap();
    // A fresh engine (a restart) reads on from the stored cursor.
    let mut restarted = Engine::new(store.clone(), EngineConfig::default());
    assert_eq!(restarted.tick().await.unwrap().enqueued, 0);
    let ds = deliveries(store.as_ref(), "on-failure").await;
    assert_eq!(ds.len(), 1, "one event, one action, one delivery");
    assert_eq!(ds[0].status, DeliveryStatus::Failed);
    assert_eq!(ds[0].event.deployment.as_deref(), Some("etl-hourly"));
    assert!(ds[0].event.summary.contains(&run.name) && ds[0].event.summary.contains("Failed: boom"));
    let status = store.read_automation("on-failure").await.unwrap().unwrap().status;
    assert_eq!(status.failed, 1);
    assert_eq!(status.last_error.as_deref(), Some("there is no block named 'nowhere'"));
}

#[tokio::test]
async fn an_overdue_run_breaks_its_sla_and_is_cancelled() {
    let (_dir, store) = store().await;
    let d = deployment(store.as_ref(), "etl-hourly", Duration::hours(1)).await;
    let due = Utc::now() - Duration::minutes(5);
    let mut late = d.manual_run(&json!({}), due, due, 1);
    late.created = due;
    let mut fresh = d.manual_run(&json!({}), Utc::now(), Utc::now(), 2);
    fresh.created = due; // created long ago, but only due now
    fresh.state = State::scheduled(due, Utc::now() + Duration::minutes(1));
    store.enqueue_runs(&[late.clone(), fresh.clone()]).await.unwrap();
    store
        .apply_automation(&automation(
            json!({"name": "sla", "trigger": {"type": "flow-run-sla", "after": "2m", "deployments": ["etl-hourly"]},
                   "actions": [{"type": "cancel-run"}]}),
            Duration::hours(1),
        ))
        .await
        .unwrap();
    let mut engine = Engine::new(store.clone(), EngineConfig::default());
    let t = engine.tick().await.unwrap();
    assert_eq!((t.enqueued, t.delivered), (1, 1), "{t:?}");
    assert_eq!(store.read_flow_run(late.id).await.unwrap().unwrap().state.state_type, StateType::Cancelled);
    assert_eq!(store.read_flow_run(fresh.id).await.unwrap().unwrap().state.state_type, StateType::Scheduled);
    let ds = deliveries(store.as_ref(), "sla").await;
    assert!(ds[0].event.summary.contains("still Scheduled 5m"), "{}", ds[0].event.summary);
}

#[tokio::test]
async fn an_offline_worker_starts_a_deployment_once_per_outage() {
    let (_dir, store) = store().await;
    let d = deployment(store.as_ref(), "failover", Duration::hours(1)).await;
    store.worker_heartbeat("local", "w1", Utc::now() - Duration::minutes(3)).await.unwrap();
    store.worker_heartbeat("local", "w2", Utc::now()).await.unwrap();
    store.worker_heartbeat("local", "ancient", Utc::now() - Duration::days(30)).await.unwrap();
    store
        .apply_automation(&automation(
            json!({"name": "worker-down", "trigger": {"type": "worker-offline", "work_pools": ["local"], "after": "1m"},
                   "actions": [{"type": "run-deployment", "deployment": "failover", "parameters": {"why": "w1"}}]}),
            Duration::hours(1),
        ))
        .await
        .unwrap();
    store
        .apply_automation(&automation(
            json!({"name": "pool-down", "trigger": {"type": "work-pool-offline", "after": "1m"},
                   "actions": [{"type": "notify", "block": "nowhere"}]}),
            Duration::hours(1),
        ))
        .await
        .unwrap();
    let mut config = EngineConfig { periodic_every: std::time::Duration::ZERO, ..Default::default() };
    let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = woken.clone();
    config.on_runs_created = Some(Arc::new(move || {
        w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let mut engine = Engine::new(store.clone(), config);
    engine.tick().await.unwrap();
    engine.tick().await.unwrap();
    let ds = deliveries(store.as_ref(), "worker-down").await;
    assert_eq!(ds.len(), 1, "w1 is offline (once); w2 is alive; 'ancient' died before the automation existed");
    assert_eq!(ds[0].event.worker.as_deref(), Some("w1"));
    assert_eq!(ds[0].status, DeliveryStatus::Delivered);
    let runs = store.list_flow_runs(&Default::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].deployment_id, &runs[0].parameters), (Some(d.id), &json!({"why": "w1"})));
    assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1, "workers are woken for the new run");
    assert!(deliveries(store.as_ref(), "pool-down").await.is_empty(), "the pool still has a live worker");
}

#[tokio::test]
async fn a_deployment_without_success_has_its_schedule_paused() {
    let (_dir, store) = store().await;
    deployment(store.as_ref(), "stale", Duration::days(2)).await;
    let healthy = deployment(store.as_ref(), "healthy", Duration::days(2)).await;
    let now = Utc::now();
    let mut ok = healthy.manual_run(&json!({}), now, now, 3);
    ok.end_time = Some(now - Duration::hours(2));
    states(store.as_ref(), &ok, vec![State::completed(now - Duration::hours(2))]).await;
    let mut ok = store.read_flow_run(ok.id).await.unwrap().unwrap();
    ok.end_time = Some(now - Duration::hours(2));
    store.record(&WriteBatch { flow_runs: vec![ok], ..Default::default() }).await.unwrap();
    store
        .apply_automation(&automation(
            json!({"name": "dry-spell", "trigger": {"type": "deployment-no-success", "within": "1d"},
                   "actions": [{"type": "pause-schedule"}]}),
            Duration::days(3),
        ))
        .await
        .unwrap();
    let mut engine = Engine::new(store.clone(), EngineConfig::default());
    engine.tick().await.unwrap();
    assert!(store.read_deployment("stale").await.unwrap().unwrap().paused);
    assert!(!store.read_deployment("healthy").await.unwrap().unwrap().paused);
    let ds = deliveries(store.as_ref(), "dry-spell").await;
    assert_eq!(ds.len(), 1);
    assert!(ds[0].event.summary.contains("never completed a run"), "{}", ds[0].event.summary);
}

#[tokio::test]
async fn a_late_run_is_paused_and_a_paused_automation_notices_nothing() {
    let (_dir, store) = store().await;
    let d = deployment(store.as_ref(), "etl-hourly", Duration::hours(1)).await;
    let mut engine = Engine::new(store.clone(), EngineConfig::default());
    engine.tick().await.unwrap();
    store
        .apply_automation(&automation(
            json!({"name": "hold-late", "trigger": {"type": "flow-run-state", "states": ["Late"]},
                   "actions": [{"type": "pause-run"}]}),
            Duration::seconds(1),
        ))
        .await
        .unwrap();
    let due = Utc::now() - Duration::minutes(1);
    let first = d.manual_run(&json!({}), due, due, 4);
    store.enqueue_runs(std::slice::from_ref(&first)).await.unwrap();
    store.mark_late_runs(Utc::now()).await.unwrap();
    engine.tick().await.unwrap();
    let paused = store.read_flow_run(first.id).await.unwrap().unwrap();
    assert_eq!(paused.state.state_type, StateType::Paused);
    assert_eq!(paused.state.message.as_deref(), Some("paused by automation 'hold-late'"));

    store.set_automation_enabled("hold-late", false).await.unwrap();
    let second = d.manual_run(&json!({}), due, due, 5);
    store.enqueue_runs(std::slice::from_ref(&second)).await.unwrap();
    store.mark_late_runs(Utc::now()).await.unwrap();
    engine.tick().await.unwrap();
    assert_eq!(store.read_flow_run(second.id).await.unwrap().unwrap().state.name, "Late");
    assert_eq!(deliveries(store.as_ref(), "hold-late").await.len(), 1);
}

#[tokio::test]
async fn a_partition_past_its_deadline_fires_once_and_a_loaded_one_never() {
    use chrono::Datelike;
    let (_dir, store) = store().await;
    // One month, this one: its deadline (the 3rd of next month at 09:00
    // UTC) is always ahead of the real clock, and the test moves it.
    let now = Utc::now();
    let month = format!("{}-{:02}", now.year(), now.month());
    let doc = json!({"deployments": [{"name": "months", "flow": "etl", "entrypoint": "./etl",
        "work_pool": {"name": "local"},
        "partitions": {"time": {"every": "month", "start": month, "end": month},
                       "static": {"color": ["yellow", "green"]},
                       "parameters": {"color": "color", "month": "date"},
                       "freshness": {"within": "2d 9h"}}}]});
    let d = parse_manifest("headwater.yaml", doc, &|_| None, now).unwrap().remove(0);
    let d = store.apply_deployment(&d).await.unwrap();
    let spec = d.partitions.clone().unwrap();
    let yellow = spec.parse_key(&format!("color=yellow/month={month}")).unwrap();
    let green = spec.parse_key(&format!("color=green/month={month}")).unwrap();
    let deadline = spec.deadline(&yellow).unwrap();
    assert_eq!(deadline.format("%d %H:%M").to_string(), "03 09:00");
    // Yellow is loaded; green's run failed.
    let backfill = uuid::Uuid::now_v7();
    let loaded = d.partition_run(&yellow, backfill, "y".into(), now, 1).unwrap();
    states(store.as_ref(), &loaded, vec![State::completed(now)]).await;
    let failed = d.partition_run(&green, backfill, "g".into(), now, 2).unwrap();
    states(store.as_ref(), &failed, vec![State::failed(now, "the download timed out")]).await;
    store
        .apply_automation(&automation(
            json!({"name": "stale-months", "trigger": {"type": "dataset-stale", "deployments": ["months"]},
                   "actions": [{"type": "notify", "block": "nowhere",
                                "body": "{{ partition }} of {{ deployment.name }}"}]}),
            Duration::seconds(1),
        ))
        .await
        .unwrap();
    let config = EngineConfig { periodic_every: std::time::Duration::ZERO, ..EngineConfig::default() };
    let mut engine = Engine::new(store.clone(), config.clone());
    engine.tick_at(now).await.unwrap();
    engine.tick_at(deadline - Duration::seconds(1)).await.unwrap();
    assert!(deliveries(store.as_ref(), "stale-months").await.is_empty(), "nothing is due yet");

    let after = deadline + Duration::minutes(1);
    engine.tick_at(after).await.unwrap();
    engine.tick_at(after + Duration::minutes(1)).await.unwrap();
    // A restarted engine does not fire it again either.
    Engine::new(store.clone(), config).tick_at(after + Duration::hours(1)).await.unwrap();
    let ds = deliveries(store.as_ref(), "stale-months").await;
    assert_eq!(ds.len(), 1, "once, for green only: {ds:?}");
    let event = &ds[0].event;
    assert_eq!((event.kind.as_str(), event.partition.as_deref()), ("dataset-stale", Some(green.to_string().as_str())));
    assert_eq!(event.flow_run.as_ref().map(|r| r.id), Some(failed.id));
    assert!(event.summary.contains("is stale: it was due by") && event.summary.contains("Failed"), "{}", event.summary);

    // The grid marks the same cell.
    let grid = headwater_store::backfills::partition_grid(store.as_ref(), "months", after).await.unwrap();
    let stale: Vec<&str> = grid.cells.iter().filter(|c| c.stale).map(|c| c.partition.as_str()).collect();
    assert_eq!(stale, [green.to_string().as_str()]);
    assert_eq!(grid.counts.get("stale"), Some(&1));
    assert!(grid.cells.iter().all(|c| c.due == Some(deadline)));
}

#[tokio::test]
async fn a_dataset_partition_not_written_by_its_deadline_fires_once() {
    use chrono::Datelike;
    let (_dir, store) = store().await;
    let now = Utc::now();
    let month = format!("{}-{:02}", now.year(), now.month());
    let policy: headwater_core::partition::DatasetPolicy = serde_json::from_value(json!({
        "time": {"every": "month", "start": month, "end": month, "timezone": "UTC"},
        "freshness": {"within": "2d 9h"}
    }))
    .unwrap();
    let partition = format!("year={}/month={:02}", now.year(), now.month());
    // The yellow lake has this month; the green lake does not.
    for name in ["yellow-lake", "green-lake"] {
        store.set_dataset_policy(name, Some(&policy), now).await.unwrap();
    }
    let written = headwater_core::DatasetVersion {
        dataset: "yellow-lake".into(),
        partition: partition.clone(),
        version: 0,
        location: "file:///lake/yellow/data.parquet".into(),
        rows: 10,
        bytes: 100,
        schema: vec![],
        flow_run_id: None,
        written: now,
        inputs: vec![],
        source: None,
        source_check: None,
    };
    store.record_dataset_write(&written, false).await.unwrap();
    store
        .apply_automation(&automation(
            json!({"name": "stale-lakes", "trigger": {"type": "dataset-stale", "datasets": ["yellow-lake", "green-lake"]},
                   "actions": [{"type": "notify", "block": "nowhere", "body": "{{ partition }} of {{ dataset }}"}]}),
            Duration::seconds(1),
        ))
        .await
        .unwrap();
    let deadline = policy.spec().deadline(&policy.spec().parse_key(&format!("month={month}")).unwrap()).unwrap();
    let config = EngineConfig { periodic_every: std::time::Duration::ZERO, ..EngineConfig::default() };
    let mut engine = Engine::new(store.clone(), config.clone());
    engine.tick_at(deadline - Duration::seconds(1)).await.unwrap();
    assert!(deliveries(store.as_ref(), "stale-lakes").await.is_empty(), "nothing is due yet");
    engine.tick_at(deadline + Duration::minutes(1)).await.unwrap();
    engine.tick_at(deadline + Duration::minutes(2)).await.unwrap();
    Engine::new(store.clone(), config).tick_at(deadline + Duration::hours(1)).await.unwrap();
    let ds = deliveries(store.as_ref(), "stale-lakes").await;
    assert_eq!(ds.len(), 1, "once, for the green lake only: {ds:?}");
    let event = &ds[0].event;
    assert_eq!((event.dataset.as_deref(), event.partition.as_deref()), (Some("green-lake"), Some(partition.as_str())));
    assert!(event.summary.contains("has not been written"), "{}", event.summary);
    let parts =
        headwater_store::freshness::dataset_partitions(store.as_ref(), "green-lake", deadline + Duration::hours(1))
            .await
            .unwrap();
    assert!(parts.len() == 1 && parts[0].stale, "the dataset's grid marks it: {parts:?}");

    // The yellow month's file then changes on the web (`dataset check-sources` saw it).
    let seen =
        headwater_core::SourceStamp { url: "http://web/yellow.csv.gz".into(), size: Some(2), ..Default::default() };
    let checked = deadline + Duration::hours(2);
    let version =
        headwater_core::VersionRef { dataset: "yellow-lake".into(), partition: partition.clone(), version: 1 };
    let check = headwater_core::SourceCheck { seen, checked, changed: true };
    assert!(store.record_source_check(&version, &check).await.unwrap());
    let mut engine = Engine::new(
        store.clone(),
        EngineConfig { periodic_every: std::time::Duration::ZERO, ..EngineConfig::default() },
    );
    engine.tick_at(checked + Duration::minutes(1)).await.unwrap();
    engine.tick_at(checked + Duration::minutes(3)).await.unwrap();
    let ds = deliveries(store.as_ref(), "stale-lakes").await;
    assert_eq!(ds.len(), 2, "once more, for the changed source: {ds:?}");
    let changed: Vec<&str> = ds
        .iter()
        .filter(|d| d.event.summary.contains("changed on the web"))
        .map(|d| d.event.dataset.as_deref().unwrap())
        .collect();
    assert_eq!(changed, ["yellow-lake"]);
}
