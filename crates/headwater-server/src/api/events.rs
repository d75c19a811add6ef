//! Server-sent events: a run's page and the runs lists follow them instead of polling.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use headwater_store::{LogFilter, Store};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::Db;
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new().routes(routes!(flow_run_events)).routes(routes!(flow_run_changes))
}

/// Server-sent events: a `changed` event (with the newest state-history
/// sequence number) whenever any flow run is created or changes state,
/// checked once a second, starting with the current number. List pages
/// follow it to stay current without polling.
#[utoipa::path(
    get, path = "/flow_runs/events", tag = "flow_runs",
    responses((status = 200, description = "text/event-stream of `changed` events"))
)]
async fn flow_run_changes(
    State(db): Db,
) -> Result<
    axum::response::sse::Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let latest = |db: Arc<dyn Store>| async move {
        match db.outbox() {
            Some(outbox) => outbox.last_state_event().await.map_err(ApiError::from),
            None => Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, "this server's store has no state history")),
        }
    };
    let first = latest(db.clone()).await?;
    let stream = futures::stream::unfold((db, None::<i64>, Some(first)), move |(db, sent, mut next)| async move {
        loop {
            let now = match next.take() {
                Some(n) => n,
                None => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    // The store is away: the page reconnects.
                    latest(db.clone()).await.ok()?
                }
            };
            if sent != Some(now) {
                let event = Event::default().event("changed").data(now.to_string());
                return Some((Ok(event), (db, Some(now), None)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What a page following a run needs to know has changed.
#[derive(Serialize, PartialEq, Clone)]
struct RunChange {
    state: headwater_core::State,
    /// (task run, state name, attempts) of every task run.
    tasks: Vec<(Uuid, String, u32)>,
    last_log_id: i64,
}

/// The run's state now; logs are read only after `logs_seen`, so
/// following a long run reads each log once.
async fn run_change(
    db: &dyn Store,
    id: Uuid,
    logs_seen: i64,
) -> Result<Option<RunChange>, headwater_store::StoreError> {
    let Some(run) = db.read_flow_run(id).await? else { return Ok(None) };
    let tasks = db.list_task_runs(id).await?.into_iter().map(|t| (t.id, t.state.name, t.run_count)).collect();
    let mut last_log_id = logs_seen;
    loop {
        let filter = LogFilter { after_id: last_log_id, ..LogFilter::for_flow_run(id) };
        let page = db.read_logs(&filter).await?;
        match page.last() {
            Some(l) if page.len() == filter.limit as usize => last_log_id = l.id,
            Some(l) => break last_log_id = l.id,
            None => break,
        }
    }
    Ok(Some(RunChange { state: run.state, tasks, last_log_id }))
}

/// Server-sent events: an `update` event (the run's state, its task runs'
/// states and the newest log id) whenever any of them changes, starting
/// with the current one; the stream ends after the run has finished. Pages
/// follow runs with it instead of polling.
#[utoipa::path(
    get, path = "/flow_runs/{id}/events", tag = "flow_runs",
    params(("id" = Uuid, Path, description = "flow run id")),
    responses((status = 200, description = "text/event-stream of `update` events"), (status = 404, description = "no such flow run"))
)]
async fn flow_run_events(
    State(db): Db,
    Path(id): Path<Uuid>,
) -> Result<
    axum::response::sse::Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let first = run_change(db.as_ref(), id, 0)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no flow run with id {id}")))?;
    // (store, run, what was sent last, whether to stop, whether to wait first)
    let start = (db, id, None::<RunChange>, Some(first), false);
    let stream = futures::stream::unfold(start, |(db, id, sent, mut next, done)| async move {
        if done {
            return None;
        }
        loop {
            let change = match next.take() {
                Some(c) => c,
                None => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let seen = sent.as_ref().map_or(0, |c| c.last_log_id);
                    match run_change(db.as_ref(), id, seen).await {
                        Ok(Some(c)) => c,
                        // The run is gone or the store is away: the page reconnects or reloads.
                        _ => return None,
                    }
                }
            };
            if sent.as_ref() != Some(&change) {
                let finished = change.state.is_terminal();
                let event = Event::default().event("update").json_data(&change).unwrap_or_default();
                return Some((Ok(event), (db, id, Some(change), None, finished)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
