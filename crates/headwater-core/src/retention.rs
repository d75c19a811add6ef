//! How long recorded history is kept: per kind of record, an age after
//! which it may be deleted (none: kept forever, the default).
//!
//! What is never deleted, whatever its age: a run that has not finished,
//! the latest run of each partition of a deployment (the partition stays
//! filled; a backfill does not run it again), the latest version of each
//! keyed artifact, and outbox deliveries still to be made.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::duration::{format_duration, parse_duration};

/// A kind of record that retention deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PruneKind {
    /// Finished flow runs, with their task runs, states, logs and artifacts.
    Runs,
    /// Log lines (of runs that are kept).
    Logs,
    /// Artifacts, but the latest of each key.
    Artifacts,
    /// Outbox deliveries that were made or gave up.
    Deliveries,
    /// Entries of the audit log (only when named: never by default).
    Audit,
}

impl PruneKind {
    pub const ALL: [PruneKind; 5] =
        [PruneKind::Runs, PruneKind::Logs, PruneKind::Artifacts, PruneKind::Deliveries, PruneKind::Audit];
    /// What a prune without kinds named deletes: history, not the audit log
    /// (which is often kept longer, and must be asked for).
    pub const HISTORY: [PruneKind; 4] = [PruneKind::Runs, PruneKind::Logs, PruneKind::Artifacts, PruneKind::Deliveries];

    pub fn as_str(self) -> &'static str {
        match self {
            PruneKind::Runs => "runs",
            PruneKind::Logs => "logs",
            PruneKind::Artifacts => "artifacts",
            PruneKind::Deliveries => "deliveries",
            PruneKind::Audit => "audit",
        }
    }
}

impl fmt::Display for PruneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PruneKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PruneKind::ALL.into_iter().find(|k| k.as_str() == s.trim().to_ascii_lowercase()).ok_or_else(|| {
            format!("'{s}' is not a kind of record to prune: runs, logs, artifacts, deliveries or audit")
        })
    }
}

/// The age after which each kind of record is deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    ages: Vec<(PruneKind, Duration)>,
}

/// Nothing younger than this is pruned: a slip of the finger (`1s` for
/// `1d`) must not wipe the history of runs that just finished.
pub const SHORTEST_RETENTION: Duration = Duration::from_secs(3600);

impl Retention {
    /// Keeps `kind` for `age`. Refused below [`SHORTEST_RETENTION`].
    pub fn keep(mut self, kind: PruneKind, age: Duration) -> Result<Self, String> {
        if age < SHORTEST_RETENTION {
            return Err(format!(
                "{kind} would be kept {}; the shortest retention is {}",
                format_duration(age),
                format_duration(SHORTEST_RETENTION)
            ));
        }
        self.ages.retain(|(k, _)| *k != kind);
        self.ages.push((kind, age));
        self.ages.sort();
        Ok(self)
    }

    /// Parses `30d` for one kind (a setting's value).
    pub fn keep_text(self, kind: PruneKind, age: &str) -> Result<Self, String> {
        let age = parse_duration(age).map_err(|e| e.to_string())?;
        self.keep(kind, age)
    }

    pub fn is_off(&self) -> bool {
        self.ages.is_empty()
    }

    pub fn age(&self, kind: PruneKind) -> Option<Duration> {
        self.ages.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
    }

    /// Each kind kept with the time before which its records go, at `now`.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> Vec<(PruneKind, DateTime<Utc>)> {
        self.ages.iter().filter_map(|(k, age)| Some((*k, now - chrono::Duration::from_std(*age).ok()?))).collect()
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ages.is_empty() {
            return f.write_str("off");
        }
        let parts: Vec<String> = self.ages.iter().map(|(k, a)| format!("{k} {}", format_duration(*a))).collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ages_per_kind_give_cutoffs() {
        let r = Retention::default()
            .keep_text(PruneKind::Runs, "30d")
            .unwrap()
            .keep_text(PruneKind::Logs, "7d")
            .unwrap()
            .keep_text(PruneKind::Runs, "60d")
            .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap();
        assert_eq!(
            r.cutoffs(now),
            vec![
                (PruneKind::Runs, Utc.with_ymd_and_hms(2026, 10, 3, 0, 0, 0).unwrap()),
                (PruneKind::Logs, Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()),
            ]
        );
        assert_eq!(r.to_string(), "runs 60d, logs 7d");
        assert!(Retention::default().is_off());
    }

    #[test]
    fn too_short_or_unknown_is_refused() {
        assert_eq!(
            Retention::default().keep_text(PruneKind::Logs, "1s").unwrap_err(),
            "logs would be kept 1s; the shortest retention is 1h"
        );
        assert!(Retention::default().keep_text(PruneKind::Logs, "soon").is_err());
        assert_eq!("Logs".parse::<PruneKind>(), Ok(PruneKind::Logs));
        assert!("states".parse::<PruneKind>().unwrap_err().contains("runs, logs, artifacts, deliveries or audit"));
    }
}
