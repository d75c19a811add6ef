//! Which due run a worker gets, decided once for both SQL stores. Each
//! store reads and writes inside its own transaction, with its own locking,
//! through [`ClaimTx`]; the order of queues and the admission of runs under
//! limits come from the core.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::deployment::Admission;
use headwater_core::{queues_to_serve, Deployment, FlowRun, WorkQueue};
use uuid::Uuid;

use crate::columns::{admission, claim_batch, limit_cancel_batch};
use headwater_store::{Result, WriteBatch};

/// How many due runs of one queue are looked at per claim. Runs a limit
/// holds back are skipped, so this bounds the work a full deployment costs.
pub(crate) const CANDIDATES: u32 = 50;

/// Whose pending and running runs to count.
pub(crate) enum Active<'a> {
    Pool(&'a str),
    Queue { pool: &'a str, queue: &'a str },
    Deployment(Uuid),
    Backfill(Uuid),
}

/// What a claim needs of a backfill: its bound and whether it was cancelled.
pub(crate) struct BackfillLimit {
    pub max_concurrent: Option<u32>,
    pub cancelled: bool,
}

/// A store's reads and writes inside one claim transaction.
#[async_trait]
pub(crate) trait ClaimTx: Send {
    /// The pool's paused flag and limit, locked against concurrent claims
    /// where the database needs it; `None` for a pool never created.
    async fn lock_pool(&mut self, pool: &str) -> Result<Option<(bool, Option<u32>)>>;
    async fn queues(&mut self, pool: &str) -> Result<Vec<WorkQueue>>;
    /// The queues holding runs due by `now`.
    async fn queues_with_due_runs(&mut self, pool: &str, now: DateTime<Utc>) -> Result<Vec<String>>;
    async fn active(&mut self, whose: Active<'_>) -> Result<u32>;
    /// Due runs of one queue, earliest first, skipping any another claim holds.
    async fn due_runs(&mut self, pool: &str, queue: &str, now: DateTime<Utc>) -> Result<Vec<FlowRun>>;
    /// The deployment's spec, locked so two claims cannot both take its last slot.
    async fn lock_deployment(&mut self, id: Uuid) -> Result<Option<Deployment>>;
    /// The backfill's bound, locked so two claims cannot both take its last slot.
    async fn lock_backfill(&mut self, id: Uuid) -> Result<Option<BackfillLimit>>;
    async fn write(&mut self, batch: &WriteBatch) -> Result<()>;
}

/// Claims the next due run of `pool` (from `only` queues if given). The
/// caller commits the transaction.
pub(crate) async fn claim(
    tx: &mut dyn ClaimTx,
    pool: &str,
    only: &[String],
    now: DateTime<Utc>,
) -> Result<Option<FlowRun>> {
    if let Some((paused, limit)) = tx.lock_pool(pool).await? {
        if paused {
            return Ok(None);
        }
        if let Some(limit) = limit {
            if tx.active(Active::Pool(pool)).await? >= limit {
                return Ok(None);
            }
        }
    }
    let defined = tx.queues(pool).await?;
    let due = tx.queues_with_due_runs(pool, now).await?;
    let mut specs: HashMap<Uuid, Option<Deployment>> = HashMap::new();
    let mut backfills: HashMap<Uuid, Option<BackfillLimit>> = HashMap::new();
    // Active counts do not change within the claim until it takes a run.
    let mut active: HashMap<Uuid, u32> = HashMap::new();
    let mut cancelled = Vec::new();
    let mut claimed = None;
    'queues: for queue in queues_to_serve(&defined, &due, only) {
        if !due.contains(&queue.name) {
            continue;
        }
        if let Some(limit) = queue.concurrency_limit {
            if tx.active(Active::Queue { pool, queue: &queue.name }).await? >= limit {
                continue;
            }
        }
        for run in tx.due_runs(pool, &queue.name, now).await? {
            let mut decision = match run.deployment_id {
                None => Admission::Start,
                Some(dep) => {
                    if let std::collections::hash_map::Entry::Vacant(slot) = specs.entry(dep) {
                        slot.insert(tx.lock_deployment(dep).await?);
                    }
                    let spec = specs[&dep].as_ref();
                    let n = match spec {
                        Some(d) if d.concurrency_limit.is_some() => {
                            count(tx, &mut active, dep, Active::Deployment(dep)).await?
                        }
                        _ => 0,
                    };
                    admission(spec, n as usize)
                }
            };
            let mut why = LIMIT_CANCELLED;
            if let (Admission::Start, Some(b)) = (decision, run.backfill_id) {
                if let std::collections::hash_map::Entry::Vacant(slot) = backfills.entry(b) {
                    slot.insert(tx.lock_backfill(b).await?);
                }
                match backfills[&b].as_ref().map(|l| (l.cancelled, l.max_concurrent)) {
                    Some((true, _)) => {
                        decision = Admission::Cancel;
                        why = BACKFILL_CANCELLED;
                    }
                    Some((false, Some(max))) => {
                        let running = count(tx, &mut active, b, Active::Backfill(b)).await?;
                        if running >= max {
                            decision = Admission::Wait;
                        }
                    }
                    _ => {}
                }
            }
            match decision {
                Admission::Start => {
                    claimed = Some(run);
                    break 'queues;
                }
                Admission::Wait => {}
                Admission::Cancel => cancelled.push((run, why)),
            }
        }
    }
    // The claim is stamped once it holds every lock and has counted what is
    // active, not when it was asked for: a run whose end freed the slot was
    // committed before the count read it, so recorded times show the limit
    // held (stamped before the backfill's lock, PostgreSQL showed 5 active
    // under a bound of 4).
    let at = now.max(chrono::Utc::now());
    let mut batch = limit_cancel_batch(cancelled, at);
    let claimed = claimed.map(|run| {
        let b = claim_batch(run, at);
        batch.states.extend(b.states);
        batch.flow_runs.extend(b.flow_runs.iter().cloned());
        b.flow_runs.into_iter().next().expect("one run")
    });
    if !batch.is_empty() {
        tx.write(&batch).await?;
    }
    Ok(claimed)
}

const LIMIT_CANCELLED: &str = "its deployment was at its concurrency limit (collision strategy cancel_new)";
const BACKFILL_CANCELLED: &str = "its backfill was cancelled";

/// How many runs of a deployment or backfill are active, asked once per claim.
async fn count(tx: &mut dyn ClaimTx, cache: &mut HashMap<Uuid, u32>, id: Uuid, whose: Active<'_>) -> Result<u32> {
    if let Some(n) = cache.get(&id) {
        return Ok(*n);
    }
    let n = tx.active(whose).await?;
    cache.insert(id, n);
    Ok(n)
}

/// Runs without a queue wait in the default one.
pub(crate) fn with_queue(runs: &[FlowRun]) -> Vec<FlowRun> {
    runs.iter()
        .cloned()
        .map(|mut r| {
            if r.work_pool.is_some() && r.work_queue.is_none() {
                r.work_queue = Some(headwater_core::DEFAULT_QUEUE.to_string());
            }
            r
        })
        .collect()
}
