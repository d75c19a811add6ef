//! Moves one run through its states and records every move.
//!
//! The legality of each move is the core's decision; the tracker applies it,
//! stamps start and end times, and sends the snapshot to the recorder. If a
//! run is dropped before it reaches a final state (its caller was cancelled,
//! the flow was interrupted), the tracker records it CANCELLED on the way
//! out, so no run is left RUNNING by a normal process exit.

use std::sync::Arc;

use chrono::Utc;
use headwater_core::transition::is_legal;
use headwater_core::{FlowRun, State, StateType, TaskRun};

use crate::engine::Engine;
use crate::recorder::Event;

pub(crate) trait Trackable: Clone {
    fn state(&self) -> &State;
    fn apply(&mut self, state: State);
    fn label(&self) -> String;
    fn event(self) -> Event;
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
}

impl Trackable for TaskRun {
    fn state(&self) -> &State {
        &self.state
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
}

pub(crate) struct Tracker<R: Trackable> {
    engine: Arc<Engine>,
    pub run: R,
}

impl<R: Trackable> Tracker<R> {
    /// Records the new run in its initial state.
    pub fn create(engine: Arc<Engine>, run: R) -> Self {
        debug_assert!(is_legal(None, run.state().state_type));
        engine.recorder.send(run.clone().event());
        Tracker { engine, run }
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
