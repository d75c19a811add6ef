//! `GET /metrics` in Prometheus' text format.
//!
//! What happens (requests, state moves, claims, crashes, store writes) is
//! counted as it happens through the `metrics` crate and rendered by its
//! Prometheus exporter. What is (runs waiting per pool and queue, Late runs,
//! the outbox, concurrency slots) is read from the store at each scrape and
//! written after it, so a series that drops to zero says so instead of
//! keeping its last value.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use headwater_core::{RunKind, StateType};
use headwater_store::{Store, WriteBatch};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Buckets of every histogram, in seconds: a millisecond to an hour (a
/// dispatch can wait that long behind a full pool).
const BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

/// The process-wide recorder, installed by the first server of the process.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder =
            PrometheusBuilder::new().set_buckets(BUCKETS).expect("the buckets are not empty").build_recorder();
        let handle = recorder.handle();
        // Another recorder installed first (an embedding program's) keeps
        // its place; this handle then renders only what it was given.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_histogram!("headwater_http_request_seconds", Unit::Seconds, "API requests by route, method and status");
    describe_histogram!("headwater_store_write_seconds", Unit::Seconds, "store writes by operation");
    describe_histogram!("headwater_dispatch_seconds", Unit::Seconds, "from a run's due time until a worker claimed it");
    describe_counter!("headwater_flow_runs_started_total", "flow runs that entered RUNNING, by flow");
    describe_counter!("headwater_flow_runs_finished_total", "flow runs that ended, by flow and state");
    describe_counter!("headwater_task_runs_started_total", "task runs that entered RUNNING");
    describe_counter!("headwater_task_runs_finished_total", "task runs that ended, by state");
    describe_counter!("headwater_reported_moves_refused_total", "reported state moves refused by the transition rules");
    describe_counter!("headwater_outbox_attempts_total", "notification delivery attempts, by outcome");
}

/// Installs the recorder (idempotent): the server calls this as it starts,
/// so that what happens before the first scrape is counted.
pub(crate) fn install() {
    let _ = handle();
}

/// Times every request, labelled by its route (not its path: ids would
/// make a series per run), method and status.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_string();
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("headwater_http_request_seconds", "route" => route, "method" => method, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Counts the moves of a batch as recorded (the refused ones apart); `op`
/// names the write (`batch`: Headwater's clients, `prefect_state`,
/// `prefect_events`: Prefect's).
pub(crate) fn batch_recorded(
    op: &'static str,
    batch: &WriteBatch,
    refused: &[headwater_store::reports::RefusedMove],
    took: f64,
) {
    metrics::histogram!("headwater_store_write_seconds", "op" => op).record(took);
    let refused_runs: std::collections::HashSet<_> = refused.iter().map(|r| r.run_id).collect();
    metrics::counter!("headwater_reported_moves_refused_total").increment(refused.len() as u64);
    let flows: std::collections::HashMap<_, _> = batch.flow_runs.iter().map(|r| (r.id, r.flow_name.as_str())).collect();
    for s in batch.states.iter().filter(|s| !refused_runs.contains(&s.run_id)) {
        let ty = s.state.state_type;
        match s.kind {
            RunKind::Flow => {
                let flow = flows.get(&s.run_id).copied().unwrap_or("unknown").to_string();
                if ty == StateType::Running {
                    metrics::counter!("headwater_flow_runs_started_total", "flow" => flow).increment(1);
                } else if ty.is_terminal() {
                    metrics::counter!("headwater_flow_runs_finished_total", "flow" => flow, "state" => ty.as_str())
                        .increment(1);
                }
            }
            RunKind::Task => {
                if ty == StateType::Running {
                    metrics::counter!("headwater_task_runs_started_total").increment(1);
                } else if ty.is_terminal() {
                    metrics::counter!("headwater_task_runs_finished_total", "state" => ty.as_str()).increment(1);
                }
            }
        }
    }
}

/// Counts runs the reaper crashed.
pub(crate) fn runs_crashed(runs: &[headwater_core::FlowRun]) {
    for r in runs {
        metrics::counter!("headwater_flow_runs_finished_total", "flow" => r.flow_name.clone(), "state" => "CRASHED")
            .increment(1);
    }
}

/// Times a claim, and how long the run it handed out had waited since due.
pub(crate) fn claimed(run: Option<&headwater_core::FlowRun>, took: f64) {
    metrics::histogram!("headwater_store_write_seconds", "op" => "claim").record(took);
    if let Some(due) = run.and_then(|r| r.state.scheduled_time) {
        let waited = (chrono::Utc::now() - due).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("headwater_dispatch_seconds", "pool" => run.and_then(|r| r.work_pool.clone()).unwrap_or_default())
            .record(waited);
    }
}

/// A label value in Prometheus' text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// What the store holds now, as gauges.
async fn gauges(store: &dyn Store) -> headwater_store::Result<String> {
    let mut out = String::new();
    let waiting = store.waiting_runs().await?;
    let _ = writeln!(
        out,
        "# HELP headwater_runs_waiting SCHEDULED runs not yet claimed, by pool and queue (Late included)"
    );
    let _ = writeln!(out, "# TYPE headwater_runs_waiting gauge");
    let mut per_queue: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for w in &waiting {
        *per_queue.entry((&w.work_pool, &w.work_queue)).or_default() += w.runs;
    }
    for ((pool, queue), n) in &per_queue {
        let _ = writeln!(out, "headwater_runs_waiting{{pool=\"{}\",queue=\"{}\"}} {n}", label(pool), label(queue));
    }
    let _ = writeln!(out, "# HELP headwater_runs_late Late runs: due, and no worker has started them");
    let _ = writeln!(out, "# TYPE headwater_runs_late gauge");
    let mut late: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for w in &waiting {
        *late.entry((&w.work_pool, &w.work_queue)).or_default() += if w.late { w.runs } else { 0 };
    }
    for ((pool, queue), n) in &late {
        let _ = writeln!(out, "headwater_runs_late{{pool=\"{}\",queue=\"{}\"}} {n}", label(pool), label(queue));
    }
    let (mut pending, mut failed) = (0u64, 0u64);
    for a in store.list_automations().await? {
        pending += a.status.pending;
        failed += a.status.failed;
    }
    let _ = writeln!(out, "# HELP headwater_outbox_deliveries Notification deliveries in the outbox, by status");
    let _ = writeln!(out, "# TYPE headwater_outbox_deliveries gauge");
    let _ = writeln!(out, "headwater_outbox_deliveries{{status=\"pending\"}} {pending}");
    let _ = writeln!(out, "headwater_outbox_deliveries{{status=\"failed\"}} {failed}");
    let limits = store.list_concurrency_limits().await?;
    for (metric, help) in [
        ("headwater_concurrency_slots_in_use", "slots held by unexpired leases, by limit"),
        ("headwater_concurrency_slots_limit", "slots a limit allows"),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} gauge");
        for l in &limits {
            let v = if metric.ends_with("in_use") { l.active_slots } else { l.limit };
            let _ = writeln!(out, "{metric}{{limit=\"{}\"}} {v}", label(&l.name));
        }
    }
    Ok(out)
}

/// `GET /metrics`.
pub(crate) async fn render(State(store): State<Arc<dyn Store>>) -> Response {
    let mut text = handle().render();
    match gauges(store.as_ref()).await {
        Ok(g) => text.push_str(&g),
        Err(e) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("the store could not be read: {e}\n")).into_response();
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
