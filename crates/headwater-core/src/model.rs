//! The records Headwater keeps: flows, flow runs, task runs, states, logs.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::CoreError;
use crate::state::{State, StateType};

/// A flow as registered by the program that defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Flow {
    pub id: Uuid,
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    /// JSON Schema of the flow's parameters.
    #[schema(value_type = Object)]
    pub parameter_schema: Value,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// Flows are identified by name; the id is derived from it so that every
/// process registering the same flow agrees on the id without asking.
pub fn flow_id_for_name(name: &str) -> Uuid {
    let digest = blake3::hash(format!("headwater-flow:{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlowRun {
    pub id: Uuid,
    pub flow_id: Uuid,
    pub flow_name: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub parameters: Value,
    pub tags: Vec<String>,
    pub state: State,
    pub parent_flow_run_id: Option<Uuid>,
    /// For a subflow started by a Prefect client: the task run in the
    /// parent that stands for it (and ends in the subflow's final state).
    #[serde(default)]
    pub parent_task_run_id: Option<Uuid>,
    /// How many times the flow body has started (1 + retries so far).
    pub run_count: u32,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    /// The last sign of life from the process running it. A live run whose
    /// heartbeat is older than the timeout is marked CRASHED.
    #[serde(default)]
    pub heartbeat: Option<DateTime<Utc>>,
    /// The deployment that created the run, if any.
    #[serde(default)]
    pub deployment_id: Option<Uuid>,
    /// The work pool whose workers may pick the run up.
    #[serde(default)]
    pub work_pool: Option<String>,
    /// A run with the same key is never created twice (scheduled runs).
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The queue of its work pool the run waits in.
    #[serde(default)]
    pub work_queue: Option<String>,
    /// The flow's retries, recorded when the run starts, so that a run whose
    /// process dies can still be retried.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<crate::RetryPolicy>,
    /// The deployment's partition the run is for (`color=yellow/month=2019-01`).
    #[serde(default)]
    pub partition: Option<String>,
    /// The backfill that created the run.
    #[serde(default)]
    pub backfill_id: Option<Uuid>,
}

/// A live flow run's process saying it is still there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    pub flow_run_id: Uuid,
    pub at: DateTime<Utc>,
}

/// The message of a run marked CRASHED for lack of heartbeats.
pub fn crash_message(last_heartbeat: DateTime<Utc>) -> String {
    format!(
        "no heartbeat since {}: the process running it stopped without finishing (killed, or its machine lost)",
        last_heartbeat.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskRun {
    pub id: Uuid,
    pub flow_run_id: Uuid,
    pub task_name: String,
    /// The call's place among calls of the same task in the run: `fetch-0`, `fetch-1`.
    pub name: String,
    pub dynamic_key: u64,
    pub tags: Vec<String>,
    pub state: State,
    pub run_count: u32,
    pub cache_key: Option<String>,
    pub cache_expiration: Option<DateTime<Utc>>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Flow,
    Task,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Flow => "flow",
            RunKind::Task => "task",
        }
    }
}

impl FromStr for RunKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flow" => Ok(RunKind::Flow),
            "task" => Ok(RunKind::Task),
            other => Err(format!("unknown run kind '{other}'")),
        }
    }
}

/// One entry of a run's state history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StateRecord {
    pub run_id: Uuid,
    pub kind: RunKind,
    pub state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Critical = 50,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }
    /// The numeric level Python's logging (and so Prefect) uses.
    pub fn number(self) -> i64 {
        self as i64
    }
    pub fn from_number(n: i64) -> LogLevel {
        match n {
            i64::MIN..=10 => LogLevel::Debug,
            11..=20 => LogLevel::Info,
            21..=30 => LogLevel::Warning,
            31..=40 => LogLevel::Error,
            _ => LogLevel::Critical,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DEBUG" | "TRACE" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARNING" | "WARN" => Ok(LogLevel::Warning),
            "ERROR" => Ok(LogLevel::Error),
            "CRITICAL" => Ok(LogLevel::Critical),
            _ => Err(CoreError::UnknownLogLevel(s.to_string())),
        }
    }
}

/// A log line emitted while a run was executing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogRecord {
    /// Assigned by the store, in write order; 0 before it is stored.
    pub id: i64,
    pub flow_run_id: Uuid,
    pub task_run_id: Option<Uuid>,
    pub level: LogLevel,
    pub timestamp: DateTime<Utc>,
    pub message: String,
}

impl FlowRun {
    /// A run of `flow` named `name`, in `state` and created at `created`,
    /// with no parameters, parent, deployment or pool: a start that callers
    /// (and tests) fill in.
    pub fn new(id: Uuid, flow: &str, name: &str, state: State, created: DateTime<Utc>) -> FlowRun {
        FlowRun {
            id,
            flow_id: flow_id_for_name(flow),
            flow_name: flow.to_string(),
            name: name.to_string(),
            parameters: serde_json::json!({}),
            tags: Vec::new(),
            state,
            parent_flow_run_id: None,
            parent_task_run_id: None,
            run_count: 1,
            start_time: None,
            end_time: None,
            created,
            heartbeat: None,
            deployment_id: None,
            work_pool: None,
            idempotency_key: None,
            work_queue: None,
            retry_policy: None,
            partition: None,
            backfill_id: None,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.state.state_type.is_terminal()
    }
    pub fn state_type(&self) -> StateType {
        self.state.state_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_ids_are_stable_per_name() {
        assert_eq!(flow_id_for_name("etl"), flow_id_for_name("etl"));
        assert_ne!(flow_id_for_name("etl"), flow_id_for_name("etl2"));
    }

    #[test]
    fn log_levels_parse_and_number() {
        assert_eq!("warn".parse::<LogLevel>().unwrap(), LogLevel::Warning);
        assert_eq!(LogLevel::from_number(LogLevel::Error.number()), LogLevel::Error);
        assert!("loud".parse::<LogLevel>().is_err());
    }
}
