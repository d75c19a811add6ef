//! Run states, named as Prefect names them so data engineers recognise them.
//!
//! A state has a *type* (what the engine reasons about) and a *name* (what a
//! person reads): `AwaitingRetry` is a SCHEDULED state, `Cached` and
//! `TimedOut` are COMPLETED and FAILED states.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::CoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateType {
    Scheduled,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Crashed,
    Paused,
    Cancelling,
}

impl StateType {
    pub const ALL: [StateType; 9] = [
        StateType::Scheduled,
        StateType::Pending,
        StateType::Running,
        StateType::Completed,
        StateType::Failed,
        StateType::Cancelled,
        StateType::Crashed,
        StateType::Paused,
        StateType::Cancelling,
    ];

    /// Final states: the run is over and will not change unless retried.
    pub fn is_terminal(self) -> bool {
        matches!(self, StateType::Completed | StateType::Failed | StateType::Cancelled | StateType::Crashed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateType::Scheduled => "SCHEDULED",
            StateType::Pending => "PENDING",
            StateType::Running => "RUNNING",
            StateType::Completed => "COMPLETED",
            StateType::Failed => "FAILED",
            StateType::Cancelled => "CANCELLED",
            StateType::Crashed => "CRASHED",
            StateType::Paused => "PAUSED",
            StateType::Cancelling => "CANCELLING",
        }
    }

    /// The name a state of this type has when nothing more specific applies.
    pub fn default_name(self) -> &'static str {
        match self {
            StateType::Scheduled => "Scheduled",
            StateType::Pending => "Pending",
            StateType::Running => "Running",
            StateType::Completed => "Completed",
            StateType::Failed => "Failed",
            StateType::Cancelled => "Cancelled",
            StateType::Crashed => "Crashed",
            StateType::Paused => "Paused",
            StateType::Cancelling => "Cancelling",
        }
    }
}

impl fmt::Display for StateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StateType {
    type Err = CoreError;

    /// Accepts the type (`FAILED`) or any case of it (`failed`, `Failed`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        StateType::ALL
            .into_iter()
            .find(|t| t.as_str() == upper)
            .ok_or_else(|| CoreError::UnknownStateType(s.to_string()))
    }
}

/// A state a run entered, with when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct State {
    #[serde(rename = "type")]
    pub state_type: StateType,
    pub name: String,
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For SCHEDULED states: when the run is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<DateTime<Utc>>,
}

impl State {
    pub fn new(state_type: StateType, name: &str, at: DateTime<Utc>) -> Self {
        State { state_type, name: name.to_string(), timestamp: at, message: None, scheduled_time: None }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn scheduled(at: DateTime<Utc>, due: DateTime<Utc>) -> Self {
        let mut s = State::new(StateType::Scheduled, "Scheduled", at);
        s.scheduled_time = Some(due);
        s
    }
    /// A scheduled run that has not started after the lateness threshold.
    pub fn late(at: DateTime<Utc>, due: DateTime<Utc>) -> Self {
        let mut s = State::new(StateType::Scheduled, "Late", at);
        s.scheduled_time = Some(due);
        s
    }
    pub fn pending(at: DateTime<Utc>) -> Self {
        State::new(StateType::Pending, "Pending", at)
    }
    pub fn running(at: DateTime<Utc>) -> Self {
        State::new(StateType::Running, "Running", at)
    }
    /// Running again after a failure.
    pub fn retrying(at: DateTime<Utc>) -> Self {
        State::new(StateType::Running, "Retrying", at)
    }
    pub fn awaiting_retry(at: DateTime<Utc>, due: DateTime<Utc>) -> Self {
        let mut s = State::new(StateType::Scheduled, "AwaitingRetry", at);
        s.scheduled_time = Some(due);
        s
    }
    /// Waiting `delay` before the next attempt.
    pub fn awaiting_retry_after(at: DateTime<Utc>, delay: std::time::Duration) -> Self {
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        State::awaiting_retry(at, at.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC))
    }
    pub fn completed(at: DateTime<Utc>) -> Self {
        State::new(StateType::Completed, "Completed", at)
    }
    /// Completed without running: the result came from the cache.
    pub fn cached(at: DateTime<Utc>) -> Self {
        State::new(StateType::Completed, "Cached", at)
    }
    pub fn failed(at: DateTime<Utc>, message: impl Into<String>) -> Self {
        State::new(StateType::Failed, "Failed", at).with_message(message)
    }
    pub fn timed_out(at: DateTime<Utc>, message: impl Into<String>) -> Self {
        State::new(StateType::Failed, "TimedOut", at).with_message(message)
    }
    /// The final state of a failed attempt: `TimedOut` if it ran out of
    /// time, `Failed` otherwise.
    pub fn failure(at: DateTime<Utc>, message: impl Into<String>, timed_out: bool) -> Self {
        if timed_out {
            State::timed_out(at, message)
        } else {
            State::failed(at, message)
        }
    }
    pub fn cancelling(at: DateTime<Utc>) -> Self {
        State::new(StateType::Cancelling, "Cancelling", at)
    }
    pub fn cancelled(at: DateTime<Utc>, message: impl Into<String>) -> Self {
        State::new(StateType::Cancelled, "Cancelled", at).with_message(message)
    }
    pub fn crashed(at: DateTime<Utc>, message: impl Into<String>) -> Self {
        State::new(StateType::Crashed, "Crashed", at).with_message(message)
    }
    pub fn paused(at: DateTime<Utc>) -> Self {
        State::new(StateType::Paused, "Paused", at)
    }

    pub fn is_terminal(&self) -> bool {
        self.state_type.is_terminal()
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.state_type.default_name() {
            write!(f, "{}", self.name)?;
        } else {
            write!(f, "{} ({})", self.name, self.state_type)?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_type_round_trips_through_text() {
        for t in StateType::ALL {
            assert_eq!(t.to_string().parse::<StateType>().unwrap(), t);
            assert_eq!(t.default_name().parse::<StateType>().unwrap(), t);
        }
        assert!(matches!(
            "DONE".parse::<StateType>(),
            Err(CoreError::UnknownStateType(s)) if s == "DONE"
        ));
    }

    #[test]
    fn named_states_have_the_prefect_types() {
        let now = Utc::now();
        assert_eq!(State::cached(now).state_type, StateType::Completed);
        assert_eq!(State::timed_out(now, "x").state_type, StateType::Failed);
        assert_eq!(State::awaiting_retry(now, now).state_type, StateType::Scheduled);
        assert_eq!(State::retrying(now).state_type, StateType::Running);
        assert_eq!(State::late(now, now).state_type, StateType::Scheduled);
        assert_eq!(State::timed_out(now, "after 5m").to_string(), "TimedOut (FAILED): after 5m");
        assert_eq!(State::completed(now).to_string(), "Completed");
    }

    #[test]
    fn retry_due_times_never_overflow() {
        let now = Utc::now();
        let s = State::awaiting_retry_after(now, std::time::Duration::from_secs(90));
        assert_eq!(s.scheduled_time, Some(now + chrono::Duration::seconds(90)));
        let far = State::awaiting_retry_after(now, std::time::Duration::MAX);
        assert_eq!(far.scheduled_time, Some(DateTime::<Utc>::MAX_UTC));
        assert_eq!(State::failure(now, "x", true).name, "TimedOut");
        assert_eq!(State::failure(now, "x", false).name, "Failed");
    }

    #[test]
    fn terminal_types() {
        let terminal: Vec<_> = StateType::ALL.into_iter().filter(|t| t.is_terminal()).collect();
        assert_eq!(terminal, vec![StateType::Completed, StateType::Failed, StateType::Cancelled, StateType::Crashed]);
    }
}
