//! Freshness of a lake dataset under its policy (`datasets:` in
//! headwater.yaml): which time partitions are written, which are due, and
//! which are stale — late, or made from a file that changed on the web.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use headwater_core::partition::{DatasetPolicy, PartitionError, Selection};
use headwater_core::DatasetVersion;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Store, StoreError};

/// One partition of a dataset: its current version, if written, and where
/// it stands against the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatasetPartition {
    /// `year=2019/month=01`.
    pub partition: String,
    /// The time partition's label (`2019-01`), when the policy knows it.
    pub time: Option<String>,
    /// When it must be written by.
    pub due: Option<DateTime<Utc>>,
    /// Past `due` and not written, or made from a file that changed since.
    pub stale: bool,
    pub source_changed: bool,
    pub version: Option<DatasetVersion>,
}

/// Why a dataset's freshness could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum FreshnessError {
    #[error("no dataset named '{0}' (see `headwater dataset ls`)")]
    NoDataset(String),
    #[error(transparent)]
    Invalid(#[from] PartitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The most time partitions [`dataset_partitions`] lists for a policy whose
/// range is too long to list whole (older ones are not listed as expected,
/// though their written versions still are).
pub const PARTITIONS_SHOWN: usize = 2_000;

/// Every partition of a dataset: those its policy expects up to the newest
/// complete one at `now` (the newest [`PARTITIONS_SHOWN`] of a range too
/// long to list), then any other it holds; each with its version.
pub async fn dataset_partitions(
    store: &dyn Store,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Vec<DatasetPartition>, FreshnessError> {
    let dataset = store.read_dataset(name).await?.ok_or_else(|| FreshnessError::NoDataset(name.to_string()))?;
    let mut versions: HashMap<String, DatasetVersion> =
        store.list_partitions(name).await?.into_iter().map(|v| (v.partition.clone(), v)).collect();
    let mut out = Vec::new();
    if let Some(policy) = &dataset.policy {
        let spec = policy.spec();
        let keys = match spec.keys(&Selection::default(), now) {
            Ok(k) => k,
            Err(e) if e.field == "to" => Vec::new(),
            // Too long a range to list (hourly for years): its newest part.
            Err(e) if e.field == "range" => spec.recent_keys(PARTITIONS_SHOWN, now)?,
            Err(e) => return Err(e.into()),
        };
        for key in keys {
            let Some(partition) = DatasetPolicy::lake_partition(&key) else { continue };
            let version = versions.remove(&partition);
            let due = spec.deadline(&key);
            let source_changed = version.as_ref().is_some_and(DatasetVersion::source_changed);
            let late = version.is_none() && due.is_some_and(|d| d <= now);
            out.push(DatasetPartition {
                partition,
                time: key.time_label(),
                due,
                stale: late || source_changed,
                source_changed,
                version,
            });
        }
    }
    let mut rest: Vec<DatasetVersion> = versions.into_values().collect();
    rest.sort_by(|a, b| a.partition.cmp(&b.partition));
    out.extend(rest.into_iter().map(|v| DatasetPartition {
        partition: v.partition.clone(),
        time: None,
        due: None,
        stale: v.source_changed(),
        source_changed: v.source_changed(),
        version: Some(v),
    }));
    Ok(out)
}

/// A dataset partition whose deadline fell without it being written.
#[derive(Debug, Clone, PartialEq)]
pub struct LatePartition {
    pub partition: String,
    pub due: DateTime<Utc>,
}

/// The partitions of a dataset with a policy whose deadline fell in
/// `(after, until]` and that are not written at `until` (what a freshness
/// check that last looked at `after` reports). Versions are read only
/// when a deadline fell.
pub async fn newly_late(
    store: &dyn Store,
    name: &str,
    policy: &DatasetPolicy,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<LatePartition>, FreshnessError> {
    let due = policy.spec().deadlines_between(after, until)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let written: std::collections::HashSet<String> =
        store.list_partitions(name).await?.into_iter().map(|v| v.partition).collect();
    Ok(due
        .into_iter()
        .filter_map(|(key, due)| DatasetPolicy::lake_partition(&key).map(|p| (p, due)))
        .filter(|(p, _)| !written.contains(p))
        .map(|(partition, due)| LatePartition { partition, due })
        .collect())
}
