//! Moves one run through its states and records every move.
//!
//! The legality of each move is the core's decision; the tracker applies it,
//! stamps start and end times, and sends the snapshot to the recorder. If a
//! run is dropped before it reaches a final state (its caller was cancelled,
//! the flow was interrupted), the tracker records it CANCELLED on the way
//! out, so no run is left RUNNING by a normal process exit.
//!
//! It also keeps the run's trace span (a child of the current span) and,
//! while the run is RUNNING, the span of the attempt in progress; both are
//! disabled (no exporter is set up) unless traces are exported.

use std::sync::Arc;

use chrono::Utc;
use headwater_core::transition::is_legal;
use headwater_core::{FlowRun, State, StateType, TaskRun};
use headwater_telemetry::TARGET;
use tracing::field::Empty;
use tracing::Span;

use crate::engine::Engine;
use crate::recorder::Event;

pub(crate) trait Trackable: Clone {
    fn state(&self) -> &State;
    fn run_count(&self) -> u32;
    fn apply(&mut self, state: State);
    fn label(&self) -> String;
    fn event(self) -> Event;
    /// The run's span, child of the current span.
    fn span(&self) -> Span;
}

fn stamp_times(state: &State, start: &mut Option<chrono::DateTime<Utc>>, end: &mut Option<chrono::DateTime<Utc>>) {
    if state.state_type == StateType::Running && start.is_none() {
        *start = Some(state.timestamp);
    }
    if state.is_terminal() {
        *end = Some(state.timestamp);
    }
}

impl Trackable for FlowRun {
    fn state(&self) -> &State {
        &self.state
    }
    fn run_count(&self) -> u32 {
        self.run_count
    }
    fn apply(&mut self, state: State) {
        stamp_times(&state, &mut self.start_time, &mut self.end_time);
        // A state change is itself a sign of life.
        self.heartbeat = Some(state.timestamp);
        self.state = state;
    }
    fn label(&self) -> String {
        format!("flow run '{}'", self.name)
    }
    fn event(self) -> Event {
        Event::FlowRun(Box::new(self))
    }
    fn span(&self) -> Span {
        tracing::info_span!(
            target: TARGET,
            "flow_run",
            otel.name = %format!("flow {}", self.flow_name),
            headwater.flow.name = %self.flow_name,
            headwater.flow_run.id = %self.id,
            headwater.flow_run.name = %self.name,
            headwater.state = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        )
    }
}

impl Trackable for TaskRun {
    fn state(&self) -> &State {
        &self.state
    }
    fn run_count(&self) -> u32 {
        self.run_count
    }
    fn apply(&mut self, state: State) {
        stamp_times(&state, &mut self.start_time, &mut self.end_time);
        self.state = state;
    }
    fn label(&self) -> String {
        format!("task run '{}'", self.name)
    }
    fn event(self) -> Event {
        Event::TaskRun(self)
    }
    fn span(&self) -> Span {
        tracing::info_span!(
            target: TARGET,
            "task_run",
            otel.name = %format!("task {}", self.task_name),
            headwater.task.name = %self.task_name,
            headwater.task_run.id = %self.id,
            headwater.task_run.name = %self.name,
            headwater.flow_run.id = %self.flow_run_id,
            headwater.state = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        )
    }
}

pub(crate) struct Tracker<R: Trackable> {
    engine: Arc<Engine>,
    pub run: R,
    /// The run's span, ended when the tracker is dropped.
    pub span: Span,
    /// The attempt in progress (while RUNNING).
    attempt: Option<Span>,
}

impl<R: Trackable> Tracker<R> {
    /// Records the new run in its initial state.
    pub fn create(engine: Arc<Engine>, run: R) -> Self {
        debug_assert!(is_legal(None, run.state().state_type));
        engine.recorder.send(run.clone().event());
        let span = run.span();
        Tracker { engine, run, span, attempt: None }
    }

    /// The span the code of the attempt in progress runs in.
    pub fn attempt_span(&self) -> Span {
        self.attempt.clone().unwrap_or_else(|| self.span.clone())
    }

    /// An attempt's span lasts while the run is RUNNING; the run's span
    /// gets its final state.
    fn trace(&mut self, run_count: u32) {
        let state = self.run.state();
        let failed = matches!(state.state_type, StateType::Failed | StateType::Crashed);
        if state.state_type == StateType::Running {
            if self.attempt.is_none() {
                self.attempt = Some(tracing::info_span!(
                    target: TARGET,
                    parent: &self.span,
                    "attempt",
                    otel.name = %format!("attempt {run_count}"),
                    headwater.attempt = run_count,
                    headwater.state = Empty,
                    otel.status_code = Empty,
                ));
            }
            return;
        }
        if let Some(attempt) = self.attempt.take() {
            attempt.record("headwater.state", state.name.as_str());
            if failed || state.state_type == StateType::Scheduled {
                // AwaitingRetry is SCHEDULED: the attempt before it failed.
                attempt.record("otel.status_code", "ERROR");
            }
        }
        if state.is_terminal() {
            self.span.record("headwater.state", state.name.as_str());
            if failed {
                self.span.record("otel.status_code", "ERROR");
                self.span.record("otel.status_description", state.message.as_deref().unwrap_or(&state.name));
            }
        }
    }

    /// Moves the run to `state`. An illegal move is an engine bug: it is
    /// reported and not recorded, so the stored history stays legal.
    pub fn set(&mut self, state: State) {
        let from = self.run.state().state_type;
        if !is_legal(Some(from), state.state_type) {
            tracing::error!(
                "headwater bug: illegal transition of {} from {from} to {}; not recorded",
                self.run.label(),
                state.state_type
            );
            debug_assert!(false, "illegal transition {from} -> {}", state.state_type);
            return;
        }
        self.run.apply(state);
        self.engine.recorder.send(self.run.clone().event());
        if !self.span.is_disabled() {
            let count = self.run.run_count();
            self.trace(count);
        }
    }

    pub fn is_final(&self) -> bool {
        self.run.state().is_terminal()
    }
}

impl<R: Trackable> Drop for Tracker<R> {
    fn drop(&mut self) {
        if !self.is_final() {
            let reason = if std::thread::panicking() {
                "the process panicked while the run was in progress"
            } else {
                "stopped before it finished: its caller was cancelled"
            };
            self.set(State::cancelled(Utc::now(), reason));
        }
    }
}
