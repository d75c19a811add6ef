//! Has the file a partition was made from changed on the web? Each current
//! version that recorded its source (URL, ETag, Last-Modified, size) is
//! looked at again, and what was seen is kept on the version: a changed
//! file marks the partition stale in grids, and `--only stale` backfills
//! run it again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::{SourceCheck, SourceStamp, VersionRef};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// Describes a file on the web as its server does now (a `HEAD` request);
/// the reason when it cannot.
#[async_trait]
pub trait SourceProbe: Send + Sync {
    async fn look(&self, url: &str) -> Result<SourceStamp, String>;
}

/// What a look at one version's source found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum SourceOutcome {
    Unchanged,
    Changed,
    /// The server says too little (no ETag, Last-Modified or size in common).
    CannotTell,
    /// Not recorded: the version's last check stands.
    Unreachable(String),
}

/// One version's source, looked at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceReport {
    pub version: VersionRef,
    pub url: String,
    #[serde(flatten)]
    pub outcome: SourceOutcome,
}

/// Why sources were not checked.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("no dataset named '{0}' (see `headwater dataset ls`)")]
    NoDataset(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many sources are looked at at once.
const AT_ONCE: usize = 8;

/// Looks at the source of every current version of `datasets` (all when
/// empty) that recorded one, records what was seen, and reports each.
/// A source that cannot be reached is reported and not recorded.
pub async fn check_sources(
    store: &dyn Store,
    datasets: &[String],
    probe: &dyn SourceProbe,
    now: DateTime<Utc>,
) -> Result<Vec<SourceReport>, SourcesError> {
    let names = if datasets.is_empty() {
        store.list_datasets().await?.into_iter().map(|d| d.name).collect()
    } else {
        datasets.to_vec()
    };
    let mut versions = Vec::new();
    for name in &names {
        if store.read_dataset(name).await?.is_none() {
            return Err(SourcesError::NoDataset(name.clone()));
        }
        versions.extend(store.list_partitions(name).await?.into_iter().filter(|v| v.source.is_some()));
    }
    use futures::StreamExt;
    let looked: Vec<_> = futures::stream::iter(versions)
        .map(|v| async move {
            let source = v.source.clone().expect("filtered");
            let seen = probe.look(&source.url).await;
            (v, source, seen)
        })
        .buffered(AT_ONCE)
        .collect()
        .await;
    let mut reports = Vec::new();
    for (v, source, seen) in looked {
        let version = VersionRef { dataset: v.dataset, partition: v.partition, version: v.version };
        let outcome = match seen {
            Err(reason) => SourceOutcome::Unreachable(reason),
            Ok(seen) => {
                let changed = source.changed_in(&seen);
                store
                    .record_source_check(
                        &version,
                        &SourceCheck { seen, checked: now, changed: changed.unwrap_or(false) },
                    )
                    .await?;
                match changed {
                    Some(true) => SourceOutcome::Changed,
                    Some(false) => SourceOutcome::Unchanged,
                    None => SourceOutcome::CannotTell,
                }
            }
        };
        reports.push(SourceReport { version, url: source.url, outcome });
    }
    Ok(reports)
}
