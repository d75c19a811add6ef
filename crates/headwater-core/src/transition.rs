//! Which state may follow which.
//!
//! The rules follow Prefect's orchestration model, simplified to what the
//! engine and the server enforce: a run moves forward (scheduled → pending →
//! running → final), may wait for a retry or be paused, may be cancelled from
//! anywhere that is not final, and leaves a final state only by being
//! rescheduled (a retry started by a person or by flow-level retries).

use crate::error::CoreError;
use crate::state::StateType;
use crate::state::StateType::*;

/// Whether a run may go from `from` (None: the run is being created) to `to`.
pub fn is_legal(from: Option<StateType>, to: StateType) -> bool {
    match from {
        // A run may be created in any non-final state, or directly COMPLETED
        // when its result comes from the cache.
        None => !matches!(to, Failed | Cancelled | Crashed | Cancelling),
        Some(from) => match (from, to) {
            // Late and rescheduled runs stay SCHEDULED with another name.
            (Scheduled, Scheduled | Pending | Running | Cancelling | Cancelled | Paused) => true,
            (Scheduled, Crashed) => true,
            (Pending, Running | Cancelling | Cancelled | Crashed | Failed | Paused | Scheduled) => true,
            // A pending run starts waiting for a concurrency slot (AwaitingConcurrencySlot).
            (Pending, Pending) => true,
            // Completed from PENDING: the result was cached.
            (Pending, Completed) => true,
            (Running, Completed | Failed | Crashed | Cancelling | Cancelled | Paused | Scheduled) => true,
            (Paused, Running | Pending | Scheduled | Cancelling | Cancelled | Crashed | Failed) => true,
            // A run may finish on its own before a cancellation reaches it.
            (Cancelling, Cancelled | Crashed | Completed | Failed) => true,
            // Final states are left only by a retry.
            (Completed | Failed | Cancelled | Crashed, Scheduled) => true,
            _ => false,
        },
    }
}

/// [`is_legal`] as a `Result` that names the run in its error.
pub fn validate_transition(run: &str, from: Option<StateType>, to: StateType) -> Result<(), CoreError> {
    if is_legal(from, to) {
        Ok(())
    } else {
        Err(CoreError::IllegalTransition {
            run: run.to_string(),
            from: from.map_or_else(|| "(new run)".to_string(), |f| f.to_string()),
            to,
        })
    }
}

/// The state a cancellation request moves a run to: CANCELLED if it had not
/// started, CANCELLING (its process stops it) if it had. Final runs have
/// nothing to cancel.
pub fn cancellation(
    run: &str,
    current: StateType,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<crate::State, CoreError> {
    let next = match current {
        Scheduled | Paused => crate::State::cancelled(at, "cancelled before it started"),
        Pending | Running => crate::State::cancelling(at),
        other => {
            return Err(CoreError::NothingToCancel { run: run.to_string(), state: other });
        }
    };
    validate_transition(run, Some(current), next.state_type)?;
    Ok(next)
}

/// A finished run asked to run again: back to SCHEDULED (`AwaitingRetry`),
/// due at `at`. Only final runs can be retried.
pub fn manual_retry(
    run: &str,
    current: StateType,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<crate::State, CoreError> {
    if !current.is_terminal() {
        return Err(CoreError::NotFinished { run: run.to_string(), state: current });
    }
    let next = crate::State::awaiting_retry(at, at).with_message("retried by request");
    validate_transition(run, Some(current), next.state_type)?;
    Ok(next)
}

/// A run held back before it starts: PAUSED, so no worker takes it until it
/// is resumed. A run that has started is stopped by cancelling it instead.
pub fn pause_request(
    run: &str,
    current: StateType,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<crate::State, CoreError> {
    if current != Scheduled {
        return Err(CoreError::NotPausable { run: run.to_string(), state: current });
    }
    Ok(crate::State::paused(at))
}

/// A paused run released: SCHEDULED again, due at once.
pub fn resume(run: &str, current: StateType, at: chrono::DateTime<chrono::Utc>) -> Result<crate::State, CoreError> {
    if current != Paused {
        return Err(CoreError::NotPaused { run: run.to_string(), state: current });
    }
    let next = crate::State::scheduled(at, at).with_message("resumed");
    validate_transition(run, Some(current), next.state_type)?;
    Ok(next)
}

/// What follows CRASHED for a run whose process died: a run a worker can
/// start again (it has a work pool) whose flow allows more retries goes back
/// to its pool as `AwaitingRetry`, due after the policy's delay; any other
/// run stays CRASHED (`None`). `jitter_sample` is in `[0, 1)`.
pub fn retry_after_crash(
    run: &crate::FlowRun,
    at: chrono::DateTime<chrono::Utc>,
    jitter_sample: f64,
) -> Option<crate::State> {
    let policy = run.retry_policy.as_ref()?;
    run.work_pool.as_ref()?;
    // A run that crashed before its flow started has used no attempt of its own.
    let attempts = run.run_count.max(1);
    if !policy.should_retry(attempts) {
        return None;
    }
    let delay = policy.delay_before(attempts, jitter_sample);
    let due = at + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::days(365));
    Some(
        crate::State::awaiting_retry(at, due)
            .with_message(format!("the run crashed; flow retry {attempts} of {} (its process died)", policy.retries)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_is_legal() {
        let path = [Scheduled, Pending, Running, Completed];
        assert!(is_legal(None, Scheduled));
        for w in path.windows(2) {
            assert!(is_legal(Some(w[0]), w[1]), "{:?} -> {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn retry_cycle_is_legal() {
        // Running -> AwaitingRetry (SCHEDULED) -> Retrying (RUNNING) -> Failed
        assert!(is_legal(Some(Running), Scheduled));
        assert!(is_legal(Some(Scheduled), Running));
        assert!(is_legal(Some(Running), Failed));
        // A person retries a failed or crashed run.
        assert!(is_legal(Some(Failed), Scheduled));
        assert!(is_legal(Some(Crashed), Scheduled));
        // Waiting for a concurrency slot, first or after a retry's delay.
        assert!(is_legal(Some(Pending), Pending));
        assert!(is_legal(Some(Scheduled), Pending));
    }

    #[test]
    fn final_states_only_lead_to_a_reschedule() {
        for from in StateType::ALL.into_iter().filter(|t| t.is_terminal()) {
            for to in StateType::ALL {
                assert_eq!(is_legal(Some(from), to), to == Scheduled, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn cancellation_from_every_live_state() {
        for from in [Scheduled, Pending, Running, Paused] {
            assert!(is_legal(Some(from), Cancelling), "{from}");
            assert!(is_legal(Some(from), Cancelled), "{from}");
        }
        assert!(is_legal(Some(Cancelling), Cancelled));
        assert!(!is_legal(Some(Cancelling), Running));
        assert!(!is_legal(Some(Cancelling), Scheduled));
    }

    #[test]
    fn illegal_transitions_are_refused_with_names() {
        assert!(!is_legal(Some(Completed), Running));
        assert!(!is_legal(Some(Completed), Failed));
        assert!(!is_legal(Some(Cancelled), Running));
        assert!(!is_legal(Some(Scheduled), Completed));
        assert!(!is_legal(Some(Scheduled), Failed));
        assert!(!is_legal(None, Failed));
        assert!(!is_legal(None, Cancelling));
        let err = validate_transition("flow run 'brave-heron'", Some(Completed), Running).unwrap_err();
        assert_eq!(err.to_string(), "illegal state transition for flow run 'brave-heron': COMPLETED -> RUNNING");
        let err = validate_transition("task run 'fetch-0'", None, Failed).unwrap_err();
        assert_eq!(err.to_string(), "illegal state transition for task run 'fetch-0': (new run) -> FAILED");
    }

    #[test]
    fn manual_retries_only_of_finished_runs() {
        let now = chrono::Utc::now();
        let s = manual_retry("r", Failed, now).unwrap();
        assert_eq!((s.state_type, s.name.as_str()), (Scheduled, "AwaitingRetry"));
        assert!(manual_retry("r", Crashed, now).is_ok());
        let e = manual_retry("flow run 'x'", Running, now).unwrap_err().to_string();
        assert_eq!(e, "flow run 'x' is RUNNING: only a finished run can be retried");
    }

    #[test]
    fn only_runs_not_started_pause_and_only_paused_runs_resume() {
        let at = chrono::Utc::now();
        assert_eq!(pause_request("r", Scheduled, at).unwrap().state_type, Paused);
        for s in [Pending, Running, Completed, Failed, Paused] {
            assert!(matches!(pause_request("r", s, at), Err(CoreError::NotPausable { .. })), "{s}");
        }
        let resumed = resume("r", Paused, at).unwrap();
        assert_eq!((resumed.state_type, resumed.scheduled_time), (Scheduled, Some(at)));
        assert_eq!(resume("r", Running, at).unwrap_err().to_string(), "r is RUNNING: only a paused run can be resumed");
    }

    #[test]
    fn cancellation_targets() {
        let now = chrono::Utc::now();
        assert_eq!(cancellation("r", Scheduled, now).unwrap().state_type, Cancelled);
        assert_eq!(cancellation("r", Running, now).unwrap().state_type, Cancelling);
        assert_eq!(cancellation("r", Pending, now).unwrap().state_type, Cancelling);
        let e = cancellation("flow run 'x'", Completed, now).unwrap_err().to_string();
        assert_eq!(e, "flow run 'x' is COMPLETED: there is nothing to cancel");
        assert!(cancellation("r", Cancelling, now).is_err());
    }

    #[test]
    fn every_pair_is_decided_and_the_table_is_stable() {
        // A compact picture of the whole table, so a change to a rule shows up
        // in review as a change to this string.
        let mut table = String::new();
        for from in StateType::ALL {
            for to in StateType::ALL {
                table.push(if is_legal(Some(from), to) { 'x' } else { '.' });
            }
            table.push('\n');
        }
        let expected = "\
xxx..xxxx
xxxxxxxxx
x..xxxxxx
x........
x........
x........
x........
xxx.xxx.x
...xxxx..
";
        assert_eq!(table, expected);
    }
}

/// How one attempt of a flow (or task) body ended, as the runner saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptEnd {
    Completed,
    /// The body returned an error, or ran past its timeout.
    Failed {
        message: String,
        timed_out: bool,
    },
    /// Stopped from outside: a signal or a cancellation request (`why`:
    /// "interrupted", "cancelled on request").
    Stopped {
        why: String,
    },
}

/// What the runner does after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterAttempt {
    /// The run is over, in this state.
    Finish(crate::State),
    /// The run waits `delay` in this state (AwaitingRetry), then tries again.
    Retry { state: crate::State, delay: std::time::Duration },
}

/// The state attempt number `attempt` (1-based) runs in: Running, then
/// Retrying for every attempt after the first.
pub fn attempt_state(attempt: u32, at: chrono::DateTime<chrono::Utc>) -> crate::State {
    if attempt <= 1 {
        crate::State::running(at)
    } else {
        crate::State::retrying(at)
    }
}

/// The state of a run stopped from outside.
pub fn stopped(why: &str, at: chrono::DateTime<chrono::Utc>) -> crate::State {
    crate::State::cancelled(at, format!("Flow run was {why}"))
}

/// Decides what follows attempt number `attempt`: a completed or stopped
/// run is over; a failed one retries while `policy` allows (after its
/// delay, `jitter_sample` in `[0, 1)`), else ends Failed — or TimedOut if
/// the attempt ran past its timeout.
pub fn after_attempt(
    policy: &crate::RetryPolicy,
    attempt: u32,
    end: &AttemptEnd,
    at: chrono::DateTime<chrono::Utc>,
    jitter_sample: f64,
) -> AfterAttempt {
    match end {
        AttemptEnd::Completed => AfterAttempt::Finish(crate::State::completed(at)),
        AttemptEnd::Stopped { why } => AfterAttempt::Finish(stopped(why, at)),
        AttemptEnd::Failed { message, timed_out } if !policy.should_retry(attempt) => {
            AfterAttempt::Finish(crate::State::failure(at, message.clone(), *timed_out))
        }
        AttemptEnd::Failed { message, .. } => {
            let delay = policy.delay_before(attempt, jitter_sample);
            let state = crate::State::awaiting_retry_after(at, delay).with_message(message.clone());
            AfterAttempt::Retry { state, delay }
        }
    }
}

#[cfg(test)]
mod attempt_tests {
    use super::*;
    use crate::{RetryPolicy, StateType};
    use std::time::Duration;

    fn at() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn a_failure_retries_while_the_policy_allows_then_fails() {
        let policy = RetryPolicy::fixed(2, Duration::from_secs(5));
        let failed = AttemptEnd::Failed { message: "boom".into(), timed_out: false };
        for attempt in [1, 2] {
            match after_attempt(&policy, attempt, &failed, at(), 0.0) {
                AfterAttempt::Retry { state, delay } => {
                    assert_eq!((state.name.as_str(), delay), ("AwaitingRetry", Duration::from_secs(5)));
                    assert_eq!(state.message.as_deref(), Some("boom"));
                    assert_eq!(state.scheduled_time, Some(at() + chrono::Duration::seconds(5)));
                }
                other => panic!("attempt {attempt}: {other:?}"),
            }
        }
        let AfterAttempt::Finish(end) = after_attempt(&policy, 3, &failed, at(), 0.0) else {
            panic!("retried a third time")
        };
        assert_eq!((end.state_type, end.message.as_deref()), (StateType::Failed, Some("boom")));
    }

    #[test]
    fn a_timeout_without_retries_ends_timed_out_and_a_stop_ends_cancelled() {
        let none = RetryPolicy::default();
        let late = AttemptEnd::Failed { message: "exceeded".into(), timed_out: true };
        let AfterAttempt::Finish(end) = after_attempt(&none, 1, &late, at(), 0.0) else { panic!() };
        assert_eq!((end.state_type, end.name.as_str()), (StateType::Failed, "TimedOut"));
        // A stop is never retried, whatever the policy.
        let policy = RetryPolicy::fixed(5, Duration::ZERO);
        let stop = AttemptEnd::Stopped { why: "interrupted".into() };
        let AfterAttempt::Finish(end) = after_attempt(&policy, 1, &stop, at(), 0.0) else { panic!() };
        assert_eq!((end.state_type, end.message.as_deref()), (StateType::Cancelled, Some("Flow run was interrupted")));
        let ok = after_attempt(&policy, 1, &AttemptEnd::Completed, at(), 0.0);
        assert!(matches!(ok, AfterAttempt::Finish(s) if s.state_type == StateType::Completed));
    }

    #[test]
    fn the_first_attempt_runs_and_later_ones_retry() {
        assert_eq!(attempt_state(1, at()).name, "Running");
        assert_eq!(attempt_state(2, at()).name, "Retrying");
    }
}

/// The server's answer when a client proposes a state for a run (Prefect's
/// `set_state`): the client's engine decides retries and results, the
/// server decides whether the run may move at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orchestration {
    /// The run enters the proposed state.
    Accept,
    /// The run stays where it is; the reason says why.
    Reject(String),
    /// The run stays where it is and may ask again after `delay`: its
    /// deployment's slots are all in use.
    Wait { delay: std::time::Duration, reason: String },
    /// The run is cancelled instead: its deployment is full and says
    /// `cancel_new`.
    Cancel(String),
}

/// How long a run refused a deployment slot waits before asking again.
/// Short, because a slot frees as soon as another run ends, and asking is
/// cheap.
pub const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether moving from `current` to `proposed` starts a run, taking one of
/// its deployment's concurrency slots (a run already pending or running
/// holds its slot).
pub fn takes_slot(current: Option<StateType>, proposed: StateType) -> bool {
    matches!(proposed, Pending | Running) && !matches!(current, Some(Pending | Running | Cancelling))
}

/// [`orchestrate`] for a run of a deployment whose slots answer
/// `admission` (see [`crate::deployment::admit`]). A forced proposal skips
/// the slot check, as Prefect's forced `set_state` skips its slot rules.
pub fn orchestrate_in_slots(
    current: Option<StateType>,
    proposed: StateType,
    force: bool,
    admission: crate::deployment::Admission,
) -> Orchestration {
    use crate::deployment::Admission;
    let decision = orchestrate(current, proposed, force);
    if decision != Orchestration::Accept || force || !takes_slot(current, proposed) {
        return decision;
    }
    match admission {
        Admission::Start => Orchestration::Accept,
        Admission::Wait => Orchestration::Wait {
            delay: SLOT_WAIT,
            reason: "every concurrency slot of the run's deployment is in use".to_string(),
        },
        Admission::Cancel => Orchestration::Cancel(
            "the run's deployment is at its concurrency limit and cancels new runs (cancel_new)".to_string(),
        ),
    }
}

/// Decides a proposed move from `current` (None: a new run) to `proposed`.
/// The table of [`is_legal`] applies; `force` lifts it (a client forcing
/// Crashed or Cancelled, as Prefect allows) except where a run's outcome
/// would be undone: a final run never starts again other than by being
/// rescheduled, and a run being cancelled never runs on.
pub fn orchestrate(current: Option<StateType>, proposed: StateType, force: bool) -> Orchestration {
    if is_legal(current, proposed) {
        return Orchestration::Accept;
    }
    let from = current.map_or_else(|| "(new run)".to_string(), |c| c.to_string());
    let protected = match current {
        Some(c) if c.is_terminal() => proposed != Scheduled,
        Some(Cancelling) => matches!(proposed, Running | Pending | Scheduled | Paused),
        _ => false,
    };
    if force && !protected {
        return Orchestration::Accept;
    }
    let why = match current {
        Some(c) if c.is_terminal() => format!("the run is already {from}; only a retry (SCHEDULED) may follow"),
        Some(Cancelling) => "the run is being cancelled".to_string(),
        _ => format!("a run may not go from {from} to {proposed}"),
    };
    Orchestration::Reject(why)
}

#[cfg(test)]
mod orchestration_tests {
    use super::*;

    #[test]
    fn the_normal_path_is_accepted() {
        assert_eq!(orchestrate(None, Pending, false), Orchestration::Accept);
        assert_eq!(orchestrate(Some(Pending), Running, false), Orchestration::Accept);
        assert_eq!(orchestrate(Some(Running), Completed, false), Orchestration::Accept);
        assert_eq!(orchestrate(Some(Failed), Scheduled, false), Orchestration::Accept);
    }

    #[test]
    fn a_full_deployment_makes_a_starting_run_wait_or_cancels_it() {
        use crate::deployment::Admission;
        let wait = orchestrate_in_slots(Some(Scheduled), Pending, false, Admission::Wait);
        assert!(matches!(wait, Orchestration::Wait { delay, .. } if delay == SLOT_WAIT), "{wait:?}");
        let cancel = orchestrate_in_slots(None, Running, false, Admission::Cancel);
        assert!(matches!(cancel, Orchestration::Cancel(_)), "{cancel:?}");
        // A run holding its slot moves on; a forced start skips the check.
        assert_eq!(orchestrate_in_slots(Some(Pending), Running, false, Admission::Wait), Orchestration::Accept);
        assert_eq!(orchestrate_in_slots(Some(Scheduled), Pending, true, Admission::Wait), Orchestration::Accept);
        assert_eq!(orchestrate_in_slots(Some(Scheduled), Pending, false, Admission::Start), Orchestration::Accept);
        // What the table refuses stays refused, slot or not.
        let done = orchestrate_in_slots(Some(Completed), Running, false, Admission::Start);
        assert!(matches!(done, Orchestration::Reject(_)), "{done:?}");
    }

    #[test]
    fn a_completed_run_never_runs_again_even_forced() {
        for force in [false, true] {
            assert!(matches!(orchestrate(Some(Completed), Running, force), Orchestration::Reject(_)));
            assert!(matches!(orchestrate(Some(Crashed), Pending, force), Orchestration::Reject(_)));
        }
    }

    #[test]
    fn a_cancelling_run_stays_cancelled_even_forced() {
        for force in [false, true] {
            let Orchestration::Reject(why) = orchestrate(Some(Cancelling), Running, force) else {
                panic!("cancelling → running accepted (force {force})")
            };
            assert!(why.contains("cancelled"), "{why}");
        }
        assert_eq!(orchestrate(Some(Cancelling), Cancelled, false), Orchestration::Accept);
        assert_eq!(orchestrate(Some(Cancelling), Completed, false), Orchestration::Accept);
    }

    #[test]
    fn force_lifts_the_table_elsewhere() {
        assert!(matches!(orchestrate(Some(Running), Running, false), Orchestration::Reject(_)));
        assert_eq!(orchestrate(Some(Running), Running, true), Orchestration::Accept);
        assert!(matches!(orchestrate(Some(Scheduled), Completed, false), Orchestration::Reject(_)));
        assert_eq!(orchestrate(Some(Scheduled), Completed, true), Orchestration::Accept);
    }
}
