//! The server over HTTP, on ephemeral loopback ports, with real stores.

mod api;
mod prefect;
mod routes;
mod ui;

/// An embedded store in `dir` that can seal blocks' secrets.
async fn sealed_sqlite(dir: &std::path::Path) -> std::sync::Arc<dyn headwater_store::Store> {
    std::sync::Arc::new(
        headwater_sql::SqliteStore::open(&dir.join("hw.db"))
            .await
            .unwrap()
            .with_secret_key(&headwater_store::SecretKey::generate()),
    )
}

/// A run of the flow named `flow` in `state`, created (and started) `ago`
/// seconds back; tests change the fields they care about.
fn run_of(flow: &str, name: &str, state: headwater_core::State, ago: i64, tags: &[&str]) -> headwater_core::FlowRun {
    let created = chrono::Utc::now() - chrono::Duration::seconds(ago);
    headwater_core::FlowRun {
        id: uuid::Uuid::now_v7(),
        flow_id: headwater_core::flow_id_for_name(flow),
        flow_name: flow.to_string(),
        name: name.into(),
        parameters: serde_json::json!({}),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        state,
        parent_flow_run_id: None,
        parent_task_run_id: None,
        run_count: 1,
        start_time: Some(created),
        end_time: None,
        created,
        heartbeat: None,
        deployment_id: None,
        work_pool: None,
        idempotency_key: None,
        work_queue: None,
        retry_policy: None,
        partition: None,
        backfill_id: None,
    }
}
