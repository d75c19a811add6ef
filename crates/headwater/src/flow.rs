//! Flow runs: what `#[flow]` expands into.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use headwater_core::duration::format_duration;
use headwater_core::names::{render_run_name, run_name};
use headwater_core::transition::{self, AfterAttempt, AttemptEnd};
use headwater_core::{flow_id_for_name, FlowRun, State};
use schemars::JsonSchema;
use serde::Serialize;
use tracing::Level;
use uuid::Uuid;

use crate::context::{Counters, FlowRunScope, RunContext, CONTEXT};
use crate::engine::Engine;
use crate::error::Error;
use crate::outcome::{error_message, panic_message, run_once, Outcome};
use crate::spec::{parameter_schema, FlowSpec};
use crate::tracker::Tracker;

/// Runs the flow body `body(params)` as a recorded flow run: a subflow if
/// called inside another flow, a root run otherwise.
pub async fn run_flow<P, T, E, F, Fut>(spec: &'static FlowSpec, params: P, body: F) -> Result<T, E>
where
    P: Serialize + JsonSchema + Clone,
    F: Fn(P) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Error> + Display,
{
    crate::logging::init();
    let parent = RunContext::current();
    let engine = match &parent {
        Some(p) => p.engine.clone(),
        None => Engine::current()?,
    };
    engine.recorder.throttle().await;
    engine.register_flow(spec, parameter_schema::<P>);
    let parameters = serde_json::to_value(&params).map_err(|e| Error::InvalidParameters(e.to_string()))?;
    let now = Utc::now();
    let name = match spec.run_name {
        Some(template) => render_run_name(template, &parameters),
        None => run_name(rand::random()),
    };
    // A worker that claimed a run starts the program to execute *that* run.
    let adopted = if parent.is_none() { adopt_claimed_run() } else { None };
    let name = adopted.as_ref().and_then(|(_, n)| n.clone()).unwrap_or(name);
    let run = new_flow_run(spec, parameters, &name, parent.as_ref(), adopted.as_ref(), now);
    let is_root = parent.is_none();
    let mut tracker = Tracker::create(engine.clone(), run);
    continue_workers_trace(&tracker, adopted.is_some());
    let beating = LiveGuard::new(&engine, tracker.run.id);
    let counters = Counters::default();
    // A run that may be attempted again (flow retries, or a deployment run,
    // which can be retried by hand or after a crash) keeps its completed
    // calls' results for the next attempt.
    let completed = (spec.retries > 0 || tracker.run.run_count > 0 || adopted.is_some())
        .then(|| Arc::new(crate::context::CompletedCalls::default()));
    let first = RunContext {
        engine: engine.clone(),
        flow: Arc::new(
            FlowRunScope::new(tracker.run.id, name.clone(), counters.clone())
                .keeping_completed(completed.clone(), tracker.run.run_count > 0),
        ),
        task_run: None,
    };
    match &parent {
        Some(p) => emit(
            &first,
            Level::INFO,
            format!("Created subflow run '{name}' for flow '{}' in '{}'", spec.name, p.flow.name),
        ),
        None => emit(&first, Level::INFO, format!("Beginning flow run '{name}' for flow '{}'", spec.name)),
    }

    let policy = spec.retry_policy();
    let timeout = spec.timeout_ms.map(Duration::from_millis);
    let mut signals = (is_root && engine.handle_signals && crate::signals::enabled()).then(crate::signals::subscribe);
    let mut ctx = first;
    let result = loop {
        let attempt = tracker.run.run_count + 1;
        tracker.run.run_count = attempt;
        tracker.set(transition::attempt_state(attempt, Utc::now()));
        let scope = ctx.flow.clone();
        // If this future is dropped mid-attempt, stop the submitted tasks too.
        let stop_on_drop = scope.cancel.clone().drop_guard();
        let body_run = async {
            let outcome = run_once(ctx.clone(), tracker.attempt_span(), timeout, body(params.clone())).await;
            if let Outcome::Ok(_) = outcome {
                // Submitted tasks the body did not await still belong to the run.
                scope.tracker.close();
                scope.tracker.wait().await;
            }
            outcome
        };
        let outcome = tokio::select! {
            o = body_run => Ok(o),
            why = stopped_from_outside(&mut signals, &beating.cancel) => Err(why),
        };
        let (end, outcome) = match outcome {
            Err(why) => {
                scope.stop_tasks().await;
                let e = E::from(Error::Cancelled { what: format!("flow run '{name}'"), reason: why.clone() });
                (AttemptEnd::Stopped { why }, Err(e))
            }
            Ok(Outcome::Ok(v)) => (AttemptEnd::Completed, Ok(v)),
            Ok(Outcome::Panicked(p)) => {
                scope.stop_tasks().await;
                let msg = format!("panicked: {}", panic_message(p.as_ref()));
                tracker.set(State::failed(Utc::now(), msg.clone()));
                emit(&ctx, Level::ERROR, format!("Finished in state Failed: {msg}"));
                drop(tracker);
                if is_root {
                    let _ = engine.flush().await;
                }
                std::panic::resume_unwind(p);
            }
            Ok(Outcome::Err(e)) => {
                scope.stop_tasks().await;
                (AttemptEnd::Failed { message: error_message(&e), timed_out: false }, Err(e))
            }
            Ok(Outcome::TimedOut(after)) => {
                scope.stop_tasks().await;
                let e = Error::Timeout { what: format!("flow run '{name}'"), after };
                (AttemptEnd::Failed { message: e.to_string(), timed_out: true }, Err(E::from(e)))
            }
        };
        drop(stop_on_drop);
        let delay = match transition::after_attempt(&policy, attempt, &end, Utc::now(), rand::random()) {
            AfterAttempt::Finish(state) => {
                let (level, line) = end_line(&end, &state.name);
                tracker.set(state);
                emit(&ctx, level, line);
                break outcome;
            }
            AfterAttempt::Retry { state, delay } => {
                tracker.set(state);
                delay
            }
        };
        let message = match &end {
            AttemptEnd::Failed { message, .. } => message.as_str(),
            _ => "",
        };
        emit(
            &ctx,
            Level::WARN,
            format!(
                "Attempt {attempt} failed: {message}; retrying in {} (retry {attempt} of {})",
                format_duration(delay),
                policy.retries
            ),
        );
        if let Some(why) = tokio::select! {
            _ = tokio::time::sleep(delay) => None,
            why = stopped_from_outside(&mut signals, &beating.cancel) => Some(why),
        } {
            tracker.set(transition::stopped(&why, Utc::now()));
            break Err(E::from(Error::Cancelled { what: format!("flow run '{name}'"), reason: why }));
        }
        // A fresh scope: the old one's submitted tasks were stopped.
        ctx = RunContext {
            engine: engine.clone(),
            flow: Arc::new(
                FlowRunScope::new(tracker.run.id, name.clone(), counters.clone())
                    .keeping_completed(completed.clone(), true),
            ),
            task_run: None,
        };
    };
    // The last handle of the run's span goes with the tracker: it ends before the flush.
    drop(ctx);
    close_run(&engine, tracker, completed.as_deref(), result.is_ok(), is_root).await;
    result
}

/// The run a worker started this process for continues the worker's trace
/// (its claim span, handed over as TRACEPARENT).
fn continue_workers_trace(tracker: &Tracker<FlowRun>, adopted: bool) {
    if !adopted || tracker.span.is_disabled() || ADOPT.try_with(|_| ()).is_ok() {
        return;
    }
    if let Ok(parent) = std::env::var(headwater_telemetry::TRACEPARENT) {
        headwater_telemetry::continue_trace(&tracker.span, &parent);
    }
}

/// Waits for the run to be stopped from outside: a signal to the process (a
/// root run only) or a cancellation request; says which.
async fn stopped_from_outside(
    signals: &mut Option<crate::signals::Subscription>,
    cancel: &tokio_util::sync::CancellationToken,
) -> String {
    let interrupted = async {
        match signals.as_mut() {
            Some(sub) => sub.interrupted().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        why = interrupted => why,
        _ = cancel.cancelled() => "cancelled on request".to_string(),
    }
}

/// The log line a run's last attempt ends with (`shown`: its final state's name).
fn end_line(end: &AttemptEnd, shown: &str) -> (Level, String) {
    match end {
        AttemptEnd::Completed => (Level::INFO, "Finished in state Completed()".into()),
        AttemptEnd::Stopped { why } => (Level::WARN, format!("Flow run was {why}; finished in state Cancelled")),
        AttemptEnd::Failed { message, .. } => (Level::ERROR, format!("Finished in state {shown}: {message}")),
    }
}

/// The record of a new flow run of `spec`: a subflow of `parent`, or the run
/// a worker claimed (`adopted`: its id and name), or a fresh root run.
fn new_flow_run(
    spec: &FlowSpec,
    parameters: serde_json::Value,
    name: &str,
    parent: Option<&RunContext>,
    adopted: Option<&(Uuid, Option<String>)>,
    now: chrono::DateTime<Utc>,
) -> FlowRun {
    FlowRun {
        id: adopted.map_or_else(Uuid::now_v7, |(id, _)| *id),
        flow_id: flow_id_for_name(spec.name),
        flow_name: spec.name.to_string(),
        name: name.to_string(),
        parameters,
        tags: spec.tags.iter().map(|t| t.to_string()).collect(),
        state: State::pending(now),
        parent_flow_run_id: parent.map(|p| p.flow.id),
        parent_task_run_id: None,
        run_count: if adopted.is_some() { adopted_run_count() } else { 0 },
        start_time: None,
        end_time: None,
        created: now,
        heartbeat: Some(now),
        deployment_id: None,
        work_pool: None,
        idempotency_key: None,
        work_queue: None,
        // Recorded so that, if this process dies, the server can still retry the run.
        retry_policy: Some(spec.retry_policy()).filter(|p| p.retries > 0),
        // A worker's run keeps the partition and backfill it was created with.
        partition: None,
        backfill_id: None,
    }
}

/// After the last attempt: a completed run's kept results are no longer
/// needed; a root run's final state goes to the `App` and everything
/// recorded is flushed before the caller gets the result.
async fn close_run(
    engine: &Engine,
    tracker: Tracker<FlowRun>,
    completed: Option<&crate::context::CompletedCalls>,
    succeeded: bool,
    is_root: bool,
) {
    if let (Some(calls), true) = (completed, succeeded) {
        // Completed: no attempt will need them again.
        let keys = std::mem::take(&mut *calls.keys.lock().expect("completed calls lock"));
        for key in keys {
            engine.results.remove(&key).await;
        }
    }
    if is_root {
        let _ = crate::context::FINAL_STATE.try_with(|c| c.set(Some(tracker.run.state.state_type)));
    }
    drop(tracker);
    if is_root {
        if let Err(e) = engine.flush().await {
            eprintln!("headwater: {e}");
        }
        if headwater_telemetry::on() {
            let _ = tokio::task::spawn_blocking(headwater_telemetry::flush).await;
        }
    }
}

tokio::task_local! {
    /// A claimed run (id, name, runs so far) that the root flow started in
    /// this scope executes: how `serve` runs its runs in-process.
    pub(crate) static ADOPT: (Uuid, String, u32);
}

/// The run this root flow executes, if it was claimed for it: from
/// `serve` (a task-local), or from a worker (`HEADWATER_FLOW_RUN_ID` and
/// `HEADWATER_FLOW_RUN_NAME`, taken by the first root flow of the process).
fn adopt_claimed_run() -> Option<(Uuid, Option<String>)> {
    if let Ok((id, name, _)) = ADOPT.try_with(Clone::clone) {
        return Some((id, Some(name)));
    }
    static CLAIMED: std::sync::Mutex<Option<bool>> = std::sync::Mutex::new(None);
    let mut taken = CLAIMED.lock().ok()?;
    if taken.replace(true).is_some() {
        return None;
    }
    let id = Uuid::parse_str(&std::env::var("HEADWATER_FLOW_RUN_ID").ok()?).ok()?;
    Some((id, std::env::var("HEADWATER_FLOW_RUN_NAME").ok().filter(|n| !n.is_empty())))
}

/// How many times an adopted run has already run (a retried run continues
/// counting).
fn adopted_run_count() -> u32 {
    if let Ok(count) = ADOPT.try_with(|a| a.2) {
        return count;
    }
    std::env::var("HEADWATER_FLOW_RUN_COUNT").ok().and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Keeps a flow run in the engine's live set (so heartbeats go out for it)
/// for as long as it runs, however it ends.
struct LiveGuard {
    engine: Arc<Engine>,
    id: Uuid,
    /// Cancelled when someone asks for this run to be cancelled.
    cancel: tokio_util::sync::CancellationToken,
}

impl LiveGuard {
    fn new(engine: &Arc<Engine>, id: Uuid) -> Self {
        let cancel = tokio_util::sync::CancellationToken::new();
        if let Ok(mut live) = engine.live.lock() {
            live.insert(id, cancel.clone());
        }
        LiveGuard { engine: engine.clone(), id, cancel }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Ok(mut live) = self.engine.live.lock() {
            live.remove(&self.id);
        }
    }
}

/// Emits an engine message as a log of the run `ctx` belongs to.
pub(crate) fn emit(ctx: &RunContext, level: Level, message: String) {
    CONTEXT.sync_scope(ctx.clone(), || match level {
        Level::ERROR => tracing::error!("{message}"),
        Level::WARN => tracing::warn!("{message}"),
        Level::INFO => tracing::info!("{message}"),
        _ => tracing::debug!("{message}"),
    })
}
