//! What clients report, checked against core's transition table before it is
//! written: a client (an SDK process, a worker, another tool speaking the
//! API) cannot move a run where the rules do not allow.
//!
//! The check is per run and all or nothing for it: a run whose reported
//! moves include an illegal one keeps its recorded state, and none of its
//! moves in the batch are written (the later ones build on the refused one).
//! Everything else in the batch — other runs' moves, every log, heartbeat and
//! artifact — is written as usual, so nothing good is lost with the bad.
//!
//! A run the store does not have yet may arrive in any state (a process
//! that failed before its first report sends the run already FAILED):
//! nothing recorded is overwritten, and its later moves are checked from
//! that first state.

use std::collections::{HashMap, HashSet};

use headwater_core::{RunKind, State, StateType};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::WriteBatch;

/// A reported move the server did not write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RefusedMove {
    pub run_id: Uuid,
    pub kind: RunKind,
    /// The run's name when the batch carried its row, else its id.
    pub run: String,
    /// The state the run was in (None: the run is new).
    pub from: Option<StateType>,
    pub to: StateType,
    /// Why, in words: the transition rule broken.
    pub reason: String,
    /// How many of the run's reported states were dropped with it.
    pub states_dropped: usize,
}

/// What the server did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchOutcome {
    /// The runs whose moves were not written; empty when all were.
    pub refused: Vec<RefusedMove>,
}

/// The runs a batch reports on: flow runs and task runs, each id once.
pub fn reported_runs(batch: &WriteBatch) -> (Vec<Uuid>, Vec<Uuid>) {
    let mut flows: Vec<Uuid> = batch.flow_runs.iter().map(|r| r.id).collect();
    let mut tasks: Vec<Uuid> = batch.task_runs.iter().map(|r| r.id).collect();
    for s in &batch.states {
        match s.kind {
            RunKind::Flow => flows.push(s.run_id),
            RunKind::Task => tasks.push(s.run_id),
        }
    }
    // Sorted: PostgreSQL locks the rows in this order, so two writers never deadlock.
    for ids in [&mut flows, &mut tasks] {
        ids.sort_unstable();
        ids.dedup();
    }
    (flows, tasks)
}

/// Two records of one state: the same type, name and time (to the
/// microsecond, as both stores keep it).
fn same_state(a: &State, b: &State) -> bool {
    a.state_type == b.state_type && a.name == b.name && a.timestamp.timestamp_micros() == b.timestamp.timestamp_micros()
}

/// The batch as it may be written, and the runs refused. `current` holds the
/// recorded state of each reported run that exists.
///
/// A batch sent again (its answer was lost) repeats states already recorded:
/// the moves up to the run's recorded state are taken as written and skipped,
/// not refused.
pub fn check_batch(batch: &WriteBatch, current: &HashMap<Uuid, State>) -> (WriteBatch, Vec<RefusedMove>) {
    let mut runs: Vec<(Uuid, RunKind)> = Vec::new();
    let mut seen = HashSet::new();
    let names: HashMap<Uuid, &str> = batch
        .flow_runs
        .iter()
        .map(|r| (r.id, r.name.as_str()))
        .chain(batch.task_runs.iter().map(|r| (r.id, r.name.as_str())))
        .collect();
    let snapshots: HashMap<Uuid, &State> = batch
        .flow_runs
        .iter()
        .map(|r| (r.id, &r.state))
        .chain(batch.task_runs.iter().map(|r| (r.id, &r.state)))
        .collect();
    let flow_ids: HashSet<Uuid> = batch.flow_runs.iter().map(|r| r.id).collect();
    for (id, kind) in batch
        .flow_runs
        .iter()
        .map(|r| (r.id, RunKind::Flow))
        .chain(batch.task_runs.iter().map(|r| (r.id, RunKind::Task)))
        .chain(batch.states.iter().map(|s| (s.run_id, s.kind)))
    {
        if seen.insert(id) {
            runs.push((id, kind));
        }
    }

    // Each run's reported moves in batch order, found once (a batch may
    // carry ten thousand task runs).
    let mut moves_of: HashMap<Uuid, Vec<(usize, &State)>> = HashMap::new();
    for (i, s) in batch.states.iter().enumerate() {
        moves_of.entry(s.run_id).or_default().push((i, &s.state));
    }
    let mut refused = Vec::new();
    let mut rejected: HashSet<Uuid> = HashSet::new();
    // Indices of states already recorded: not written twice.
    let mut repeats: HashSet<usize> = HashSet::new();
    for (id, kind) in runs {
        let kind = if flow_ids.contains(&id) { RunKind::Flow } else { kind };
        let moves: &[(usize, &State)] = moves_of.get(&id).map_or(&[], Vec::as_slice);
        let recorded = current.get(&id);
        let new_from = match recorded {
            Some(r) => moves.iter().rposition(|(_, m)| same_state(m, r)).map_or(0, |p| p + 1),
            None => 0,
        };
        repeats.extend(moves[..new_from].iter().map(|(i, _)| *i));
        let mut at = recorded.map(|s| s.state_type);
        let mut new_moves = &moves[new_from..];
        if at.is_none() {
            if let Some(((_, first), rest)) = new_moves.split_first() {
                at = Some(first.state_type);
                new_moves = rest;
            } else {
                at = snapshots.get(&id).map(|s| s.state_type);
            }
        }
        let mut illegal = None;
        for (_, m) in new_moves {
            if headwater_core::transition::is_legal(at, m.state_type) {
                at = Some(m.state_type);
            } else {
                illegal = Some((at, m.state_type));
                break;
            }
        }
        // The run's row moves it too when it names another state type than
        // its last reported move (a row sent with no state record).
        if illegal.is_none() {
            if let Some(snap) = snapshots.get(&id) {
                let unchanged = recorded.is_some_and(|r| same_state(r, snap));
                if !unchanged
                    && at != Some(snap.state_type)
                    && !headwater_core::transition::is_legal(at, snap.state_type)
                {
                    illegal = Some((at, snap.state_type));
                }
            }
        }
        if let Some((from, to)) = illegal {
            let run = names.get(&id).map_or_else(|| id.to_string(), |n| n.to_string());
            let what = match kind {
                RunKind::Flow => format!("flow run '{run}'"),
                RunKind::Task => format!("task run '{run}'"),
            };
            let reason =
                headwater_core::validate_transition(&what, from, to).err().map_or_else(String::new, |e| e.to_string());
            refused.push(RefusedMove {
                run_id: id,
                kind,
                run,
                from,
                to,
                reason,
                states_dropped: moves.len() - new_from,
            });
            rejected.insert(id);
        }
    }

    if rejected.is_empty() && repeats.is_empty() {
        return (batch.clone(), refused);
    }
    let written = WriteBatch {
        flows: batch.flows.clone(),
        flow_runs: batch.flow_runs.iter().filter(|r| !rejected.contains(&r.id)).cloned().collect(),
        task_runs: batch.task_runs.iter().filter(|r| !rejected.contains(&r.id)).cloned().collect(),
        states: batch
            .states
            .iter()
            .enumerate()
            .filter(|(i, s)| !rejected.contains(&s.run_id) && !repeats.contains(i))
            .map(|(_, s)| s.clone())
            .collect(),
        logs: batch.logs.clone(),
        heartbeats: batch.heartbeats.clone(),
        artifacts: batch.artifacts.clone(),
    };
    (written, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use headwater_core::{FlowRun, LogLevel, LogRecord, StateRecord};

    fn at(s: i64) -> chrono::DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn run(name: &str, state: State) -> FlowRun {
        FlowRun::new(Uuid::now_v7(), "etl", name, state, at(0))
    }

    fn moved(r: &FlowRun, state: State) -> StateRecord {
        StateRecord { run_id: r.id, kind: RunKind::Flow, state }
    }

    fn log(r: &FlowRun) -> LogRecord {
        LogRecord {
            id: 0,
            flow_run_id: r.id,
            task_run_id: None,
            level: LogLevel::Info,
            timestamp: at(9),
            message: "hello".into(),
        }
    }

    #[test]
    fn legal_moves_pass_unchanged() {
        let r = run("calm-otter", State::completed(at(3)));
        let batch = WriteBatch {
            flow_runs: vec![r.clone()],
            states: vec![moved(&r, State::running(at(2))), moved(&r, State::completed(at(3)))],
            ..Default::default()
        };
        let current = HashMap::from([(r.id, State::pending(at(1)))]);
        let (written, refused) = check_batch(&batch, &current);
        assert!(refused.is_empty());
        assert_eq!(written.states.len(), 2);
        assert_eq!(written.flow_runs.len(), 1);
    }

    #[test]
    fn an_illegal_move_drops_that_runs_moves_and_keeps_the_rest() {
        let bad = run("brave-heron", State::running(at(5)));
        let good = run("calm-otter", State::running(at(5)));
        let batch = WriteBatch {
            flow_runs: vec![bad.clone(), good.clone()],
            states: vec![moved(&bad, State::running(at(5))), moved(&good, State::running(at(5)))],
            logs: vec![log(&bad), log(&good)],
            ..Default::default()
        };
        let current = HashMap::from([(bad.id, State::completed(at(4))), (good.id, State::pending(at(4)))]);
        let (written, refused) = check_batch(&batch, &current);
        assert_eq!(refused.len(), 1);
        let r = &refused[0];
        assert_eq!(
            (r.run.as_str(), r.from, r.to, r.states_dropped),
            ("brave-heron", Some(StateType::Completed), StateType::Running, 1)
        );
        assert_eq!(r.reason, "illegal state transition for flow run 'brave-heron': COMPLETED -> RUNNING");
        assert_eq!(written.flow_runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![good.id]);
        assert_eq!(written.states.len(), 1);
        assert_eq!(written.logs.len(), 2, "logs of a refused run are kept");
    }

    #[test]
    fn moves_after_an_illegal_one_go_with_it() {
        let r = run("brave-heron", State::completed(at(6)));
        let batch = WriteBatch {
            flow_runs: vec![r.clone()],
            states: vec![moved(&r, State::running(at(5))), moved(&r, State::completed(at(6)))],
            ..Default::default()
        };
        let current = HashMap::from([(r.id, State::crashed(at(4), "heartbeat lost"))]);
        let (written, refused) = check_batch(&batch, &current);
        assert_eq!(refused[0].states_dropped, 2);
        assert!(written.states.is_empty() && written.flow_runs.is_empty());
    }

    #[test]
    fn a_batch_sent_again_skips_what_was_recorded() {
        let r = run("calm-otter", State::running(at(2)));
        let batch = WriteBatch {
            flow_runs: vec![r.clone()],
            states: vec![moved(&r, State::pending(at(1))), moved(&r, State::running(at(2)))],
            ..Default::default()
        };
        let current = HashMap::from([(r.id, State::running(at(2)))]);
        let (written, refused) = check_batch(&batch, &current);
        assert!(refused.is_empty(), "{refused:?}");
        assert!(written.states.is_empty(), "no state is recorded twice");
        assert_eq!(written.flow_runs.len(), 1);
    }

    #[test]
    fn a_row_alone_is_checked_as_a_move() {
        let reopened = run("odd-lynx", State::running(at(3)));
        let touched = run("calm-otter", State::running(at(2)));
        let batch = WriteBatch { flow_runs: vec![reopened.clone(), touched.clone()], ..Default::default() };
        // The same state re-sent with other fields (a run count, a heartbeat) is no move.
        let current = HashMap::from([(touched.id, State::running(at(2))), (reopened.id, State::completed(at(1)))]);
        let (written, refused) = check_batch(&batch, &current);
        assert_eq!(refused.len(), 1);
        assert_eq!((refused[0].from, refused[0].to), (Some(StateType::Completed), StateType::Running));
        assert_eq!(written.flow_runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![touched.id]);
    }

    #[test]
    fn a_new_run_arrives_in_any_state_and_moves_on_by_the_rules() {
        let failed_early = run("odd-lynx", State::failed(at(1), "bad parameters"));
        let bad = run("brave-heron", State::running(at(3)));
        let batch = WriteBatch {
            flow_runs: vec![failed_early.clone(), bad.clone()],
            states: vec![moved(&bad, State::completed(at(2))), moved(&bad, State::running(at(3)))],
            ..Default::default()
        };
        let (written, refused) = check_batch(&batch, &HashMap::new());
        assert_eq!(
            refused.iter().map(|r| (r.run.as_str(), r.from, r.to)).collect::<Vec<_>>(),
            vec![("brave-heron", Some(StateType::Completed), StateType::Running)]
        );
        assert_eq!(written.flow_runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![failed_early.id]);
    }
}
