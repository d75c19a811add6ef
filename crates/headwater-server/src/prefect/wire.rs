//! Prefect's wire shapes (REST API 0.8.4), read into Headwater's model and
//! written back from it. Only the fields a Prefect client sends or reads are
//! here; unknown fields are ignored, so newer clients still parse.

use chrono::{DateTime, Utc};
use headwater_core::{Flow, FlowRun, State, StateType, TaskRun};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// The Prefect version this API answers as (`GET /admin/version`): clients
/// of another major version refuse to run.
pub(crate) const PREFECT_VERSION: &str = "3.9.1";

/// A state as a Prefect client proposes it.
#[derive(Debug, Deserialize)]
pub(crate) struct StateIn {
    #[serde(rename = "type")]
    pub state_type: StateType,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub state_details: StateDetailsIn,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StateDetailsIn {
    #[serde(default)]
    pub scheduled_time: Option<DateTime<Utc>>,
}

impl StateIn {
    /// Headwater's state: Prefect's default name for the type when the
    /// client gives none, an empty message as none.
    pub fn into_state(self, now: DateTime<Utc>) -> State {
        State {
            name: self.name.filter(|n| !n.is_empty()).unwrap_or_else(|| self.state_type.default_name().to_string()),
            state_type: self.state_type,
            timestamp: self.timestamp.unwrap_or(now),
            message: self.message.filter(|m| !m.is_empty()),
            scheduled_time: self.state_details.scheduled_time,
        }
    }
}

/// A stable id for a state Headwater keeps without one: the run's id mixed
/// with the state's time, so the same state always has the same id.
fn state_id(run: Uuid, at: DateTime<Utc>) -> Uuid {
    let (hi, lo) = run.as_u64_pair();
    Uuid::from_u64_pair(hi, lo ^ (at.timestamp_micros() as u64).rotate_left(7))
}

pub(crate) fn state_json(s: &State, flow_run_id: Option<Uuid>, task_run_id: Option<Uuid>) -> Value {
    let run = task_run_id.or(flow_run_id).unwrap_or_default();
    json!({
        "id": state_id(run, s.timestamp),
        "type": s.state_type,
        "name": s.name,
        "timestamp": s.timestamp,
        "message": s.message,
        "state_details": {
            "flow_run_id": flow_run_id,
            "task_run_id": task_run_id,
            "scheduled_time": s.scheduled_time,
        },
        "data": null,
    })
}

pub(crate) fn flow_json(f: &Flow) -> Value {
    json!({
        "id": f.id,
        "created": f.created,
        "updated": f.updated,
        "name": f.name,
        "tags": [],
        "labels": {},
    })
}

fn seconds_between(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> f64 {
    match (start, end) {
        (Some(s), Some(e)) => (e - s).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6,
        _ => 0.0,
    }
}

pub(crate) fn flow_run_json(r: &FlowRun) -> Value {
    let policy = r.retry_policy.as_ref();
    json!({
        "id": r.id,
        "created": r.created,
        "updated": r.state.timestamp,
        "name": r.name,
        "flow_id": r.flow_id,
        "state_id": state_id(r.id, r.state.timestamp),
        "deployment_id": r.deployment_id,
        "work_queue_name": r.work_queue,
        "work_pool_name": r.work_pool,
        "parameters": r.parameters,
        "idempotency_key": r.idempotency_key,
        "context": {},
        "empirical_policy": {
            "retries": policy.map(|p| p.retries),
            "retry_delay": policy.and_then(|p| p.delays.first()).map(|d| d.as_secs()),
            "pause_keys": [],
            "resuming": false,
        },
        "tags": r.tags,
        "labels": {},
        "parent_task_run_id": r.parent_task_run_id,
        "run_count": r.run_count,
        "expected_start_time": r.state.scheduled_time.unwrap_or(r.created),
        "start_time": r.start_time,
        "end_time": r.end_time,
        "total_run_time": seconds_between(r.start_time, r.end_time.or(r.start_time.map(|_| Utc::now()))),
        "estimated_run_time": 0.0,
        "estimated_start_time_delta": 0.0,
        "auto_scheduled": false,
        "state_type": r.state.state_type,
        "state_name": r.state.name,
        "state": state_json(&r.state, Some(r.id), None),
    })
}

pub(crate) fn task_run_json(t: &TaskRun) -> Value {
    json!({
        "id": t.id,
        "created": t.created,
        "updated": t.state.timestamp,
        "name": t.name,
        "flow_run_id": t.flow_run_id,
        "task_key": t.task_name,
        "dynamic_key": t.dynamic_key.to_string(),
        "cache_key": t.cache_key,
        "cache_expiration": t.cache_expiration,
        "empirical_policy": {},
        "tags": t.tags,
        "labels": {},
        "state_id": state_id(t.id, t.state.timestamp),
        "task_inputs": {},
        "state_type": t.state.state_type,
        "state_name": t.state.name,
        "run_count": t.run_count,
        "expected_start_time": t.created,
        "start_time": t.start_time,
        "end_time": t.end_time,
        "total_run_time": seconds_between(t.start_time, t.end_time),
        "state": state_json(&t.state, Some(t.flow_run_id), Some(t.id)),
    })
}

/// Prefect's task key is the task's name and a hash of its code
/// (`fetch-8a4a4306`); Headwater shows the name.
pub(crate) fn task_name_of_key(task_key: &str) -> &str {
    match task_key.rsplit_once('-') {
        Some((name, hash)) if !name.is_empty() && hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => task_key,
    }
}

/// Prefect's dynamic key is text (a counter or a UUID); Headwater's is a
/// number: a counter stays itself, anything else is hashed.
pub(crate) fn dynamic_key_number(key: &str) -> u64 {
    key.parse::<u64>().unwrap_or_else(|_| {
        let digest = blake3::hash(key.as_bytes());
        u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes")) >> 1
    })
}

/// Reads a field that Prefect's client may send as `null` (its filters do
/// for every criterion not set) as the type's default.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `{"any_": [...]}`, the shape of most of Prefect's filter fields.
#[derive(Debug, Deserialize)]
pub(crate) struct AnyOf<T> {
    #[serde(default = "none")]
    pub any_: Option<Vec<T>>,
}

fn none<T>() -> Option<T> {
    None
}

impl<T> Default for AnyOf<T> {
    fn default() -> Self {
        AnyOf { any_: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_come_from_their_keys() {
        assert_eq!(task_name_of_key("fetch-8a4a4306"), "fetch");
        assert_eq!(task_name_of_key("load-to-lake-0badf00d"), "load-to-lake");
        assert_eq!(task_name_of_key("plain"), "plain");
        assert_eq!(task_name_of_key("x-notahash"), "x-notahash");
    }

    #[test]
    fn dynamic_keys_become_numbers() {
        assert_eq!(dynamic_key_number("3"), 3);
        let a = dynamic_key_number("b6ab1cc1-18d6-473d-9df3-942691ae00ec");
        assert_eq!(a, dynamic_key_number("b6ab1cc1-18d6-473d-9df3-942691ae00ec"));
        assert_ne!(a, dynamic_key_number("f5d5a15e-48d2-4386-8341-19a3f45de841"));
        assert!(a <= i64::MAX as u64, "fits the stores' signed column");
    }

    #[test]
    fn a_proposed_state_gets_prefects_default_name() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let s: StateIn = serde_json::from_value(json!({"type": "RUNNING", "name": "", "message": ""})).unwrap();
        let s = s.into_state(now);
        assert_eq!((s.state_type, s.name.as_str(), s.timestamp, s.message), (StateType::Running, "Running", now, None));
    }
}
