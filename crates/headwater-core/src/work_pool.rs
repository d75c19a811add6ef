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
    pub concurrency_limit: Option<u32>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

impl WorkPool {
    pub fn new(name: &str, kind: WorkPoolKind, now: DateTime<Utc>) -> WorkPool {
        WorkPool { name: name.to_string(), kind, paused: false, concurrency_limit: None, created: now, updated: now }
    }
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
}
