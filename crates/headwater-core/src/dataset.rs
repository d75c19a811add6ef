//! The lake's catalog: datasets, their schema, and each partition's
//! versions (which run wrote what, when, how many rows and bytes).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A column of a dataset: its name and type as Arrow names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Column {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// One write of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatasetVersion {
    pub dataset: String,
    /// `year=2021/month=01`.
    pub partition: String,
    /// 1 for a partition's first write, then +1 (the store assigns it).
    pub version: u32,
    /// Where the file is: `file:///…`, `s3://…`.
    pub location: String,
    pub rows: u64,
    pub bytes: u64,
    pub schema: Vec<Column>,
    pub flow_run_id: Option<Uuid>,
    pub written: DateTime<Utc>,
    /// The versions it was made from (a warehouse month from the lake's
    /// month): the lineage upstream → downstream.
    #[serde(default)]
    pub inputs: Vec<VersionRef>,
    /// The file on the web it was made from, as its server described it
    /// when it was downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceStamp>,
    /// The latest look at that file since (`headwater dataset check-sources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_check: Option<SourceCheck>,
}

impl DatasetVersion {
    /// Whether the latest look at its source found a different file: the
    /// partition is stale even if its run completed.
    pub fn source_changed(&self) -> bool {
        self.source_check.as_ref().is_some_and(|c| c.changed)
    }
}

/// A file on the web as its server described it: what tells one version
/// of the file from the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceStamp {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Bytes, from `Content-Length`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl SourceStamp {
    /// Whether `now` describes another file than `self`: by ETag when both
    /// have one, else by Last-Modified, and by size whenever both know it.
    /// None when the two share nothing to compare (the server says too
    /// little to tell).
    pub fn changed_in(&self, now: &SourceStamp) -> Option<bool> {
        let by_validator = match (&self.etag, &now.etag, &self.last_modified, &now.last_modified) {
            (Some(a), Some(b), _, _) => Some(a != b),
            (_, _, Some(a), Some(b)) => Some(a != b),
            _ => None,
        };
        let by_size = match (self.size, now.size) {
            (Some(a), Some(b)) => Some(a != b),
            _ => None,
        };
        match (by_validator, by_size) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
        }
    }
}

/// What a later look at a version's source found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceCheck {
    pub seen: SourceStamp,
    pub checked: DateTime<Utc>,
    /// The file differs from the one the version was made from.
    pub changed: bool,
}

/// One version of one dataset partition, named.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct VersionRef {
    pub dataset: String,
    pub partition: String,
    pub version: u32,
}

/// A version written by a run, or by one of its direct subflows (a
/// deployment's run that calls `etl-web-to-lake`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunWrite {
    /// The run asked about (not the subflow that wrote).
    pub run_id: Uuid,
    pub version: DatasetVersion,
}

/// A dataset with its current partitions summed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dataset {
    pub name: String,
    pub schema: Vec<Column>,
    pub partitions: u64,
    pub rows: u64,
    pub bytes: u64,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// When each time partition must be written by (`headwater.yaml`
    /// `datasets:`); late ones are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::partition::DatasetPolicy>,
}

/// The dataset's schema after a write of `incoming`: the same columns with
/// the same types pass; a column whose type changed, or one that is new or
/// gone, is refused (the message names the column and both types) unless
/// `allow_evolution`, in which case the incoming schema becomes the
/// dataset's.
pub fn check_schema(
    dataset: &str,
    current: &[Column],
    incoming: &[Column],
    allow_evolution: bool,
) -> Result<Vec<Column>, String> {
    if current.is_empty() || allow_evolution {
        return Ok(incoming.to_vec());
    }
    for c in incoming {
        match current.iter().find(|x| x.name == c.name) {
            Some(x) if x.data_type != c.data_type => {
                return Err(format!(
                    "dataset '{dataset}': column '{}' is {} in the dataset but {} in this write \
                     (allow schema evolution to change it)",
                    c.name, x.data_type, c.data_type
                ))
            }
            Some(_) => {}
            None => {
                return Err(format!(
                    "dataset '{dataset}': column '{}' ({}) is new; the dataset has {} \
                     (allow schema evolution to add it)",
                    c.name,
                    c.data_type,
                    current.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            }
        }
    }
    if let Some(gone) = current.iter().find(|x| !incoming.iter().any(|c| c.name == x.name)) {
        return Err(format!(
            "dataset '{dataset}': column '{}' ({}) is missing from this write (allow schema evolution to drop it)",
            gone.name, gone.data_type
        ));
    }
    Ok(current.to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_source_changed_when_its_validator_or_size_differs() {
        use super::SourceStamp;
        let stamp = |etag: Option<&str>, modified: Option<&str>, size: Option<u64>| SourceStamp {
            url: "http://x/yellow_tripdata_2019-01.csv.gz".into(),
            etag: etag.map(String::from),
            last_modified: modified.map(String::from),
            size,
        };
        let was = stamp(Some("\"a\""), Some("Mon, 01 Jan 2024 00:00:00 GMT"), Some(100));
        assert_eq!(was.changed_in(&was.clone()), Some(false));
        // ETag decides over Last-Modified when both have one.
        assert_eq!(was.changed_in(&stamp(Some("\"b\""), Some("Mon, 01 Jan 2024 00:00:00 GMT"), Some(100))), Some(true));
        assert_eq!(
            was.changed_in(&stamp(Some("\"a\""), Some("Tue, 02 Jan 2024 00:00:00 GMT"), Some(100))),
            Some(false)
        );
        // Without ETags, Last-Modified; a size change is a change either way.
        assert_eq!(was.changed_in(&stamp(None, Some("Tue, 02 Jan 2024 00:00:00 GMT"), Some(100))), Some(true));
        assert_eq!(was.changed_in(&stamp(Some("\"a\""), None, Some(101))), Some(true));
        assert_eq!(was.changed_in(&stamp(None, None, Some(100))), Some(false));
        // Nothing to compare: cannot tell.
        assert_eq!(stamp(Some("\"a\""), None, None).changed_in(&stamp(None, Some("x"), None)), None);
    }

    use super::*;

    fn col(name: &str, t: &str) -> Column {
        Column { name: name.into(), data_type: t.into(), nullable: true }
    }

    #[test]
    fn conflicts_name_the_column_and_both_types() {
        let current = [col("passenger_count", "Int64"), col("fare_amount", "Float64")];
        assert!(check_schema("yellow", &[], &current, false).is_ok());
        assert!(check_schema("yellow", &current, &current, false).is_ok());
        let changed = [col("passenger_count", "Float64"), col("fare_amount", "Float64")];
        let e = check_schema("yellow", &current, &changed, false).unwrap_err();
        assert!(e.contains("column 'passenger_count' is Int64 in the dataset but Float64 in this write"), "{e}");
        assert_eq!(check_schema("yellow", &current, &changed, true).unwrap(), changed);
        let added = [col("passenger_count", "Int64"), col("fare_amount", "Float64"), col("airport_fee", "Float64")];
        assert!(check_schema("yellow", &current, &added, false)
            .unwrap_err()
            .contains("'airport_fee' (Float64) is new"));
        let dropped = [col("passenger_count", "Int64")];
        assert!(check_schema("yellow", &current, &dropped, false)
            .unwrap_err()
            .contains("'fare_amount' (Float64) is missing"));
    }
}
