//! Turning deployments' schedules into runs, and marking the ones nobody
//! started in time Late. Used by the server, workers and `serve`.

use crate::{Result, Store};
use chrono::{DateTime, Duration, Utc};
use headwater_core::deployment::DEFAULT_WORK_POOL;
use headwater_core::partition::PartitionStatus;
use headwater_core::StateType;

/// How far ahead runs are created; they are claimable only once due.
pub const LOOKAHEAD_SECONDS: i64 = 30;
/// By default, a scheduled run not started this long after it was due is
/// `Late` (the `HEADWATER_LATE_AFTER_SECONDS` setting).
pub const LATE_AFTER_SECONDS: u64 = 15;

/// How far back a due time may lie and still get a run (a short pause of
/// the scheduler loses nothing; a long outage does not flood the queue).
pub const CATCH_UP_SECONDS: i64 = 10;

/// Creates the runs of every active schedule due around `now` (of the
/// deployments in `pool`, or all), and marks `Late` the scheduled runs due
/// more than `late_after` ago that nobody has started. Idempotent: any number of schedulers,
/// any number of times, create each run once. Returns how many were new.
pub async fn schedule_due(
    store: &dyn Store,
    now: DateTime<Utc>,
    pool: Option<&str>,
    late_after: std::time::Duration,
) -> Result<usize> {
    let mut seed = crate::ops::name_seed;
    let mut created = 0;
    for d in store.list_deployments().await? {
        let its_pool = d.work_pool.as_deref().unwrap_or(DEFAULT_WORK_POOL);
        if pool.is_some_and(|p| p != its_pool) {
            continue;
        }
        // No run is due before the deployment existed (a new deployment
        // does not catch up on its schedule's past).
        let from = (now - Duration::seconds(CATCH_UP_SECONDS)).max(d.created);
        let to = now + Duration::seconds(LOOKAHEAD_SECONDS);
        // A partition schedule skips partitions in flight or done: their
        // latest runs are read only on a pass where one of them is due.
        let partition_due = d
            .schedules
            .iter()
            .any(|s| s.active && s.partition.is_some() && !s.schedule.between(from, to, 1).is_empty());
        let runs = if partition_due && !d.paused {
            let latest: std::collections::HashMap<String, StateType> = store
                .latest_partition_runs(d.id)
                .await?
                .into_iter()
                .filter_map(|r| Some((r.partition?, r.state.state_type)))
                .collect();
            let status = |key: &str| PartitionStatus::of(latest.get(key).copied());
            d.scheduled_runs_with(from, to, 50, now, &mut seed, &status)
        } else {
            d.scheduled_runs(from, to, 50, now, &mut seed)
        };
        if !runs.is_empty() {
            created += store.enqueue_runs(&runs).await?;
        }
    }
    store.mark_late_runs(now - Duration::from_std(late_after).unwrap_or(Duration::MAX)).await?;
    Ok(created)
}
