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
        tags: tags.iter().map(|t| t.to_string()).collect(),
        start_time: Some(created),
        ..headwater_core::FlowRun::new(uuid::Uuid::now_v7(), flow, name, state, created)
    }
}
