//! Which runs a worker or a serving flow program takes next: written once
//! for both. A round creates the pool's runs whose schedules are due (and
//! marks late ones), then claims due runs up to the room left.

use std::time::Duration;

use chrono::Utc;
use headwater_core::FlowRun;
use headwater_store::scheduling::schedule_due;
use headwater_store::{Result, Store};

/// The pool (and queues) one taker serves.
pub struct Claims<'a> {
    store: &'a dyn Store,
    pool: &'a str,
    queues: &'a [String],
    late_after: Duration,
}

/// What one claim found.
pub struct Claimed {
    pub runs: Vec<FlowRun>,
    /// How long the first claim waited for work to arrive.
    pub waited: Duration,
}

impl<'a> Claims<'a> {
    /// `queues` empty: every queue of the pool, by priority. A scheduled
    /// run not started `late_after` past its time is marked Late.
    pub fn new(store: &'a dyn Store, pool: &'a str, queues: &'a [String], late_after: Duration) -> Claims<'a> {
        Claims { store, pool, queues, late_after }
    }

    /// Creates the runs of the pool's schedules that are due (idempotent
    /// across any number of takers) and marks late ones; how many were new.
    pub async fn schedule(&self) -> Result<usize> {
        schedule_due(self.store, Utc::now(), Some(self.pool), self.late_after).await
    }

    /// Takes up to `room` due runs, each moved to PENDING and handed to no
    /// one else. The first claim may wait up to `wait` for work (a server
    /// answers as soon as a run arrives); the rest take only what is due.
    pub async fn claim(&self, room: usize, wait: Duration) -> Result<Claimed> {
        let mut runs = Vec::new();
        let mut waited = Duration::ZERO;
        while runs.len() < room {
            let claimed = if runs.is_empty() && !wait.is_zero() {
                let started = std::time::Instant::now();
                let got = self.store.claim_or_wait(self.pool, self.queues, wait).await?;
                waited = started.elapsed();
                got
            } else {
                self.store.claim_due_run(self.pool, self.queues, Utc::now()).await?
            };
            match claimed {
                Some(run) => runs.push(run),
                None => break,
            }
        }
        Ok(Claimed { runs, waited })
    }
}

/// The span of a claimed run's dispatch (until its flow starts): the flow
/// run continues its trace. `worker` names who claimed it.
pub fn claim_span(run: &headwater_core::FlowRun, pool: &str, worker: &str) -> tracing::Span {
    tracing::info_span!(
        target: headwater_telemetry::TARGET,
        "worker_claim",
        otel.name = %format!("claim {}", run.flow_name),
        headwater.flow_run.id = %run.id,
        headwater.flow_run.name = %run.name,
        headwater.flow.name = %run.flow_name,
        headwater.work_pool = %pool,
        headwater.worker = %worker,
        headwater.deployment = tracing::field::Empty,
    )
}
