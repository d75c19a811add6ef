//! Lineage between datasets, from the inputs each version records: what a
//! dataset is made from (upstream) and what is made from it (downstream).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Store, StoreError};

/// A dataset's neighbours in the lineage graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lineage {
    pub dataset: String,
    /// Datasets its versions were made from.
    pub upstream: Vec<String>,
    /// Datasets with versions made from it.
    pub downstream: Vec<String>,
}

/// The lineage of `dataset` (None if there is no such dataset). Reads the
/// history of every dataset: a catalog holds tens of datasets, not
/// thousands.
pub async fn lineage(store: &dyn Store, dataset: &str) -> Result<Option<Lineage>, StoreError> {
    if store.read_dataset(dataset).await?.is_none() {
        return Ok(None);
    }
    let mut upstream = BTreeSet::new();
    let mut downstream = BTreeSet::new();
    for d in store.list_datasets().await? {
        for v in store.dataset_history(&d.name).await? {
            for input in &v.inputs {
                if d.name == dataset {
                    upstream.insert(input.dataset.clone());
                }
                if input.dataset == dataset && d.name != dataset {
                    downstream.insert(d.name.clone());
                }
            }
        }
    }
    Ok(Some(Lineage {
        dataset: dataset.to_string(),
        upstream: upstream.into_iter().collect(),
        downstream: downstream.into_iter().collect(),
    }))
}
