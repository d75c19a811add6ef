use crate::state::StateType;

/// Errors of the domain rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("illegal state transition for {run}: {from} -> {to}")]
    IllegalTransition { run: String, from: String, to: StateType },
    #[error("unknown state type '{0}' (expected one of SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, CRASHED, PAUSED, CANCELLING)")]
    UnknownStateType(String),
    #[error("invalid duration '{input}': {reason} (examples: 30s, 5m, 1h30m, 1d, 250ms)")]
    InvalidDuration { input: String, reason: String },
    #[error("unknown log level '{0}' (expected DEBUG, INFO, WARNING, ERROR or CRITICAL)")]
    UnknownLogLevel(String),
    #[error("{run} is {state}: only a finished run can be retried")]
    NotFinished { run: String, state: StateType },
    #[error("{run} is {state}: there is nothing to cancel")]
    NothingToCancel { run: String, state: StateType },
    #[error("{run} is {state}: only a run that has not started can be paused")]
    NotPausable { run: String, state: StateType },
    #[error("{run} is {state}: only a paused run can be resumed")]
    NotPaused { run: String, state: StateType },
    #[error("invalid schedule '{schedule}': {reason}")]
    InvalidSchedule { schedule: String, reason: String },
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
