//! Work pools and the workers that serve them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a pool's workers run flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum WorkPoolKind {
    /// Each run is a process on the worker's machine.
    #[default]
    Process,
    /// Each run is a container on the worker's Docker engine.
    Docker,
}

impl fmt::Display for WorkPoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkPoolKind::Process => "process",
            WorkPoolKind::Docker => "docker",
        })
    }
}

impl FromStr for WorkPoolKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "process" => Ok(WorkPoolKind::Process),
            "docker" => Ok(WorkPoolKind::Docker),
            other => Err(format!("unknown work pool type '{other}' (expected process or docker)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkPool {
    pub name: String,
    pub kind: WorkPoolKind,
    /// A paused pool hands out no runs.
    pub paused: bool,
    /// At most this many of the pool's runs pending or running at once.
    #[schema(maximum = 1_000_000)]
    pub concurrency_limit: Option<u32>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// The largest concurrency limit or priority of a pool or queue.
pub const MAX_POOL_NUMBER: u32 = 1_000_000;

fn at_most(what: &str, name: &str, v: Option<u32>) -> Result<(), String> {
    match v {
        Some(v) if v > MAX_POOL_NUMBER => Err(format!("{what} of '{name}' is {v}; at most {MAX_POOL_NUMBER}")),
        _ => Ok(()),
    }
}

/// Refuses a pool's limit above [`MAX_POOL_NUMBER`].
pub fn validate_pool(p: &WorkPool) -> Result<(), String> {
    at_most("the concurrency limit", &p.name, p.concurrency_limit)
}

/// Refuses a queue's priority or limit above [`MAX_POOL_NUMBER`].
pub fn validate_queue(q: &WorkQueue) -> Result<(), String> {
    at_most("the priority", &q.name, Some(q.priority))?;
    at_most("the concurrency limit", &q.name, q.concurrency_limit)
}

impl WorkPool {
    pub fn new(name: &str, kind: WorkPoolKind, now: DateTime<Utc>) -> WorkPool {
        WorkPool { name: name.to_string(), kind, paused: false, concurrency_limit: None, created: now, updated: now }
    }
}

/// The implicit pool of a deployment that one process serves itself
/// (`headwater serve`, Prefect's `flow.serve()`): only that process takes
/// its runs, and no pool needs to be created for it.
pub fn served_pool(deployment: &str) -> String {
    format!("serve-{deployment}")
}

/// The queue every pool has, and the one runs wait in when their deployment
/// names none.
pub const DEFAULT_QUEUE: &str = "default";

/// A queue inside a work pool: workers take due runs from higher-priority
/// queues (lower numbers) first; a queue can be paused or limited on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkQueue {
    /// The pool it belongs to; set from the path where one names it.
    #[serde(default)]
    #[schema(read_only)]
    pub work_pool: String,
    pub name: String,
    /// 1 is served first.
    #[schema(maximum = 1_000_000)]
    pub priority: u32,
    /// At most this many of the queue's runs pending or running at once.
    #[schema(maximum = 1_000_000)]
    pub concurrency_limit: Option<u32>,
    pub paused: bool,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

impl WorkQueue {
    pub fn new(work_pool: &str, name: &str, priority: u32, now: DateTime<Utc>) -> WorkQueue {
        WorkQueue {
            work_pool: work_pool.to_string(),
            name: name.to_string(),
            priority,
            concurrency_limit: None,
            paused: false,
            created: now,
            updated: now,
        }
    }
}

/// A queue a worker looks in, with its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueToServe {
    pub name: String,
    pub concurrency_limit: Option<u32>,
}

/// The queues a worker looks in, in the order it looks: the pool's queues
/// by priority (then name), then queues that hold due runs but were never
/// created (named by a deployment only), after all others, by name. Paused
/// queues are left out; a non-empty `only` keeps just those queues.
pub fn queues_to_serve(defined: &[WorkQueue], holding_due_runs: &[String], only: &[String]) -> Vec<QueueToServe> {
    let mut known: Vec<&WorkQueue> = defined.iter().collect();
    known.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    let mut implicit: Vec<&String> =
        holding_due_runs.iter().filter(|n| !defined.iter().any(|q| &q.name == *n)).collect();
    implicit.sort();
    implicit.dedup();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    known
        .into_iter()
        .filter(|q| !q.paused && wanted(&q.name))
        .map(|q| QueueToServe { name: q.name.clone(), concurrency_limit: q.concurrency_limit })
        .chain(
            implicit
                .into_iter()
                .filter(|n| wanted(n))
                .map(|n| QueueToServe { name: n.clone(), concurrency_limit: None }),
        )
        .collect()
}

/// A worker's last sign of life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerStatus {
    pub name: String,
    pub work_pool: String,
    pub last_heartbeat: DateTime<Utc>,
}

/// A worker silent longer than this is offline.
pub const WORKER_OFFLINE_AFTER: Duration = Duration::from_secs(30);

impl WorkerStatus {
    pub fn is_online(&self, now: DateTime<Utc>) -> bool {
        (now - self.last_heartbeat).to_std().is_ok_and(|d| d < WORKER_OFFLINE_AFTER) || self.last_heartbeat > now
    }
}

/// Whether a pool can run anything now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PoolStatus {
    Ready,
    NotReady,
    Paused,
}

impl fmt::Display for PoolStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolStatus::Ready => "ready",
            PoolStatus::NotReady => "not ready",
            PoolStatus::Paused => "paused",
        })
    }
}

/// Ready when not paused and at least one worker is online.
pub fn pool_status(pool: &WorkPool, workers: &[WorkerStatus], now: DateTime<Utc>) -> PoolStatus {
    if pool.paused {
        PoolStatus::Paused
    } else if workers.iter().any(|w| w.work_pool == pool.name && w.is_online(now)) {
        PoolStatus::Ready
    } else {
        PoolStatus::NotReady
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_workers_and_pause() {
        let now = Utc::now();
        let mut pool = WorkPool::new("local", WorkPoolKind::Process, now);
        let fresh = WorkerStatus { name: "w1".into(), work_pool: "local".into(), last_heartbeat: now };
        let stale = WorkerStatus { last_heartbeat: now - chrono::Duration::minutes(5), ..fresh.clone() };
        let elsewhere = WorkerStatus { work_pool: "other".into(), ..fresh.clone() };
        assert_eq!(pool_status(&pool, &[], now), PoolStatus::NotReady);
        assert_eq!(pool_status(&pool, &[stale.clone(), elsewhere], now), PoolStatus::NotReady);
        assert_eq!(pool_status(&pool, &[stale, fresh.clone()], now), PoolStatus::Ready);
        pool.paused = true;
        assert_eq!(pool_status(&pool, &[fresh], now), PoolStatus::Paused);
        assert_eq!("docker".parse::<WorkPoolKind>().unwrap(), WorkPoolKind::Docker);
        assert!("k8s".parse::<WorkPoolKind>().unwrap_err().contains("process or docker"));
    }

    #[test]
    fn queues_are_served_by_priority_then_implicit_ones() {
        let now = Utc::now();
        let mut low = WorkQueue::new("p", "low", 10, now);
        low.concurrency_limit = Some(2);
        let high = WorkQueue::new("p", "high", 1, now);
        let default = WorkQueue::new("p", DEFAULT_QUEUE, 5, now);
        let mut paused = WorkQueue::new("p", "paused", 0, now);
        paused.paused = true;
        let defined = [low, high, default, paused];
        let due = ["zeta".to_string(), "high".to_string(), "adhoc".to_string(), "paused".to_string()];
        let names = |qs: Vec<QueueToServe>| qs.into_iter().map(|q| q.name).collect::<Vec<_>>();
        assert_eq!(names(queues_to_serve(&defined, &due, &[])), ["high", "default", "low", "adhoc", "zeta"]);
        let only = ["low".to_string(), "zeta".to_string(), "paused".to_string()];
        let served = queues_to_serve(&defined, &due, &only);
        assert_eq!(served[0], QueueToServe { name: "low".into(), concurrency_limit: Some(2) });
        assert_eq!(names(served), ["low", "zeta"]);
    }
}
