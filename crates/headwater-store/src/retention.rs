//! Retention as an operation: deleting old history batch by batch, with a
//! pause between batches so that flows writing and people reading the UI
//! are never held up for long.

use std::time::Duration;

use chrono::{DateTime, Utc};
use headwater_core::retention::{PruneKind, Retention};

use crate::{Result, Store};

/// Records deleted per transaction: each holds the write lock for a few
/// milliseconds.
pub const PRUNE_BATCH: u32 = 500;

/// What one kind's pruning did (or, on a dry run, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Pruned {
    pub kind: PruneKind,
    pub before: DateTime<Utc>,
    /// Flow runs for `runs`, rows for the other kinds.
    pub deleted: u64,
}

/// Deletes every record of `kind` older than `before`, `batch` at a time,
/// resting `pause` between batches, while `keep_going` says so (asked
/// between batches: a batch under way always finishes, so no transaction is
/// dropped half done). A dry run counts instead.
pub async fn prune_kind(
    store: &dyn Store,
    kind: PruneKind,
    before: DateTime<Utc>,
    batch: u32,
    pause: Duration,
    dry_run: bool,
    keep_going: &(dyn Fn() -> bool + Sync),
) -> Result<Pruned> {
    if dry_run {
        let deleted = store.prune(kind, before, batch, true).await?;
        return Ok(Pruned { kind, before, deleted });
    }
    let mut deleted = 0;
    loop {
        let n = store.prune(kind, before, batch, false).await?;
        deleted += n;
        if n < u64::from(batch) || !keep_going() {
            return Ok(Pruned { kind, before, deleted });
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Applies a retention policy at `now`: each kind it keeps, oldest first.
/// Runs go before logs, so that a run's logs go with it.
pub async fn apply(
    store: &dyn Store,
    retention: &Retention,
    now: DateTime<Utc>,
    pause: Duration,
    keep_going: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<Pruned>> {
    let mut out = Vec::new();
    for (kind, before) in retention.cutoffs(now) {
        if !keep_going() {
            break;
        }
        out.push(prune_kind(store, kind, before, PRUNE_BATCH, pause, false, keep_going).await?);
    }
    Ok(out)
}
