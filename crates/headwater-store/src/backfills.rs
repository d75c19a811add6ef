//! Backfills and partition grids, built on the store's traits once for
//! every caller (the server's routes and the CLI over any store).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use headwater_core::partition::{
    backfill_id_for_name, default_backfill_name, plan_backfill, Backfill, BackfillPlan, LatestRun, Only,
    PartitionError, PartitionKey, PartitionSpec, PartitionStatus, Selection,
};
use headwater_core::{Deployment, FlowRun, StateType, VersionRef};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ops::{name_seed, record_flow_run_state};
use crate::{FlowRunFilter, Store, StoreError};

/// The longest name a backfill may be given.
pub const MAX_NAME: usize = 200;

/// A backfill asked for: which partitions of which deployment, how many at
/// once.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct BackfillRequest {
    pub deployment: String,
    pub selection: Selection,
    pub only: Only,
    /// At most this many of its runs pending or running at once.
    #[schema(minimum = 1)]
    pub max_concurrent: Option<u32>,
    /// Defaults to one made of the deployment and the selection, so the
    /// same command names the same backfill.
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Plan only: nothing is created.
    pub dry_run: bool,
}

/// What a backfill request did (or, dry, would do).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackfillOutcome {
    pub backfill: Backfill,
    pub plan: BackfillPlan,
    /// Runs created now (0 when dry, or when every planned run existed).
    pub created: usize,
    pub dry_run: bool,
}

/// One partition in a grid or a backfill's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PartitionCell {
    pub partition: String,
    /// The time partition's label (`2019-01`), the grid's row.
    pub time: Option<String>,
    /// The static values (`yellow`), the grid's column.
    pub column: String,
    pub status: PartitionStatus,
    /// The latest run, if any.
    pub run_id: Option<Uuid>,
    pub run_name: Option<String>,
    pub state_type: Option<StateType>,
    pub state_name: Option<String>,
    pub end_time: Option<DateTime<Utc>>,
    /// When it must be loaded by (the deployment's freshness policy).
    pub due: Option<DateTime<Utc>>,
    /// Past `due` without a completed run, or made from a file on the web
    /// that has changed since (`source_changed`).
    pub stale: bool,
    /// A version its latest run wrote was made from a file that has
    /// changed since (`headwater dataset check-sources`).
    #[serde(default)]
    pub source_changed: bool,
    /// What the latest run wrote (itself or through its subflows), the
    /// newest version of each dataset partition; filled in grids.
    pub written: Vec<Written>,
    /// The rows it delivered: those of the versions no other of its
    /// versions was made from (the warehouse's month, not the lake's copy
    /// it was loaded from), summed; None when it wrote nothing.
    pub rows: Option<u64>,
}

/// A dataset version a partition's run wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Written {
    pub dataset: String,
    /// The dataset's own partition (`year=2019/month=01`).
    pub partition: String,
    pub version: u32,
    pub rows: u64,
    pub location: String,
    /// The versions it was made from.
    pub inputs: Vec<VersionRef>,
    /// The file on the web it was made from has changed since.
    #[serde(default)]
    pub source_changed: bool,
}

/// A deployment's partitions, each with its latest run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartitionGrid {
    pub deployment: String,
    /// The rows, oldest first (empty labels for static-only partitions).
    pub times: Vec<String>,
    pub columns: Vec<String>,
    pub cells: Vec<PartitionCell>,
    pub counts: BTreeMap<String, u64>,
}

/// A backfill with where each of its partitions stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackfillReport {
    pub backfill: Backfill,
    /// Partitions by status (`completed`, `in_flight`, `failed`, `missing`),
    /// and how many of them are `stale`.
    pub counts: BTreeMap<String, u64>,
    pub partitions: Vec<PartitionCell>,
}

/// Why a backfill was not made.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("no deployment named '{0}'")]
    NoDeployment(String),
    #[error("deployment '{0}' declares no partitions (add `partitions:` to it in headwater.yaml)")]
    NotPartitioned(String),
    #[error("no backfill named '{0}'")]
    NoBackfill(String),
    /// The field is named (`from`, `partition.color`, …).
    #[error(transparent)]
    Invalid(#[from] PartitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn partitioned(store: &dyn Store, name: &str) -> Result<Deployment, BackfillError> {
    let d = store.read_deployment(name).await?.ok_or_else(|| BackfillError::NoDeployment(name.to_string()))?;
    if d.partitions.is_none() {
        return Err(BackfillError::NotPartitioned(name.to_string()));
    }
    Ok(d)
}

async fn latest_runs(store: &dyn Store, deployment: Uuid) -> Result<HashMap<String, FlowRun>, StoreError> {
    Ok(store
        .latest_partition_runs(deployment)
        .await?
        .into_iter()
        .filter_map(|r| r.partition.clone().map(|p| (p, r)))
        .collect())
}

fn latest_states(runs: &HashMap<String, FlowRun>) -> HashMap<String, LatestRun> {
    runs.iter()
        .map(|(p, r)| {
            let latest = LatestRun {
                run_id: r.id,
                state: r.state.state_type,
                backfill_id: r.backfill_id,
                source_changed: false,
            };
            (p.clone(), latest)
        })
        .collect()
}

/// Plans a backfill and, unless dry, records it with its runs. Asking again
/// with the same request creates no run for a partition that is queued,
/// running or (unless `only: all`) done.
pub async fn start_backfill(
    store: &dyn Store,
    request: BackfillRequest,
    now: DateTime<Utc>,
) -> Result<BackfillOutcome, BackfillError> {
    if request.max_concurrent == Some(0) {
        return Err(PartitionError { field: "max_concurrent".into(), reason: "must be at least 1".into() }.into());
    }
    if let Some(n) = request.name.as_deref().map(|n| n.chars().count()).filter(|n| *n > MAX_NAME) {
        let reason = format!("{n} characters, at most {MAX_NAME} are taken");
        return Err(PartitionError { field: "name".into(), reason }.into());
    }
    let deployment = partitioned(store, &request.deployment).await?;
    let spec = deployment.partitions.as_ref().expect("checked");
    let keys = spec.keys(&request.selection, now)?;
    let name = request
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| default_backfill_name(&deployment.name, &request.selection, request.only));
    let id = backfill_id_for_name(&name);
    let existing = store.read_backfill(&id.to_string()).await?;
    let runs = latest_runs(store, deployment.id).await?;
    let mut latest = latest_states(&runs);
    if request.only == Only::Stale {
        // Which completed runs wrote a version whose source changed since.
        let done: Vec<Uuid> =
            runs.values().filter(|r| r.state.state_type == StateType::Completed).map(|r| r.id).collect();
        let written = written_by(store, &done).await?;
        for l in latest.values_mut() {
            l.source_changed = written.get(&l.run_id).is_some_and(|w| w.values().any(|w| w.source_changed));
        }
    }
    let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
    let plan = plan_backfill(&names, &latest, request.only, id);
    let mut partitions = existing.as_ref().map(|b| b.partitions.clone()).unwrap_or_default();
    for p in &plan.to_run {
        if !partitions.contains(&p.partition) {
            partitions.push(p.partition.clone());
        }
    }
    let backfill = Backfill {
        id,
        name,
        deployment: deployment.name.clone(),
        selection: request.selection.clone(),
        only: request.only,
        max_concurrent: request.max_concurrent,
        partitions,
        created: existing.as_ref().map_or(now, |b| b.created),
        updated: now,
        cancelled: None,
    };
    if request.dry_run {
        return Ok(BackfillOutcome { backfill, plan, created: 0, dry_run: true });
    }
    let by_name: HashMap<String, &PartitionKey> = names.iter().cloned().zip(keys.iter()).collect();
    let created = create_runs(store, &deployment, &backfill, &plan, &by_name, now).await?;
    Ok(BackfillOutcome { backfill, plan, created, dry_run: false })
}

async fn create_runs(
    store: &dyn Store,
    deployment: &Deployment,
    backfill: &Backfill,
    plan: &BackfillPlan,
    keys: &HashMap<String, &PartitionKey>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let runs: Vec<FlowRun> = plan
        .to_run
        .iter()
        .filter_map(|p| {
            let key = keys.get(&p.partition)?;
            deployment.partition_run(key, backfill.id, p.idempotency_key(backfill.id), now, name_seed())
        })
        .collect();
    store.save_backfill(backfill, &runs).await
}

async fn read(store: &dyn Store, name: &str) -> Result<Backfill, BackfillError> {
    store.read_backfill(name).await?.ok_or_else(|| BackfillError::NoBackfill(name.to_string()))
}

/// Queues a new run for each of the backfill's partitions whose latest run
/// failed, crashed or was cancelled; nothing else. Un-cancels it.
pub async fn retry_failed(store: &dyn Store, name: &str, now: DateTime<Utc>) -> Result<BackfillOutcome, BackfillError> {
    let mut backfill = read(store, name).await?;
    let deployment = partitioned(store, &backfill.deployment).await?;
    let spec = deployment.partitions.as_ref().expect("checked");
    let latest = latest_states(&latest_runs(store, deployment.id).await?);
    let plan = plan_backfill(&backfill.partitions, &latest, Only::Failed, backfill.id);
    let mut keys = Vec::new();
    for p in &plan.to_run {
        keys.push((p.partition.clone(), spec.parse_key(&p.partition)?));
    }
    let by_name: HashMap<String, &PartitionKey> = keys.iter().map(|(n, k)| (n.clone(), k)).collect();
    backfill.cancelled = None;
    backfill.updated = now;
    let created = create_runs(store, &deployment, &backfill, &plan, &by_name, now).await?;
    Ok(BackfillOutcome { backfill, plan, created, dry_run: false })
}

/// Cancels a backfill: no queued run of it starts any more, its queued runs
/// are cancelled and its running ones asked to stop. Returns the backfill
/// and how many runs it cancelled or asked to stop.
pub async fn cancel_backfill(
    store: &dyn Store,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(Backfill, usize), BackfillError> {
    let backfill = read(store, name).await?;
    let filter = FlowRunFilter {
        backfill_id: Some(backfill.id),
        states: vec![StateType::Scheduled, StateType::Paused, StateType::Pending, StateType::Running],
        limit: 10_000,
        ..Default::default()
    };
    // Counted first: a remote store (the server) stops them itself below.
    let before = store.list_flow_runs(&filter).await?.len();
    let backfill =
        store.cancel_backfill(backfill.id, now).await?.ok_or_else(|| BackfillError::NoBackfill(name.into()))?;
    let mut stopped = 0;
    // Pages until no live run is left (each pass moves the ones it saw).
    loop {
        let live = store.list_flow_runs(&FlowRunFilter { limit: 1_000, ..filter.clone() }).await?;
        if live.is_empty() {
            break;
        }
        let mut moved = 0;
        for run in live {
            let label = format!("flow run '{}'", run.name);
            if let Ok(state) = headwater_core::transition::cancellation(&label, run.state.state_type, now) {
                record_flow_run_state(store, run, state).await?;
                moved += 1;
            }
        }
        stopped += moved;
        if moved == 0 {
            break;
        }
    }
    Ok((backfill, stopped.max(before)))
}

fn cell(
    spec: Option<&PartitionSpec>,
    name: &str,
    key: Option<&PartitionKey>,
    run: Option<&FlowRun>,
    now: DateTime<Utc>,
) -> PartitionCell {
    let state = run.map(|r| r.state.state_type);
    let freshness = spec.zip(key);
    PartitionCell {
        partition: name.to_string(),
        time: key.and_then(PartitionKey::time_label),
        column: key.map(PartitionKey::static_label).unwrap_or_default(),
        due: freshness.and_then(|(s, k)| s.deadline(k)),
        stale: freshness.is_some_and(|(s, k)| s.is_stale(k, state, now)),
        source_changed: false,
        written: Vec::new(),
        rows: None,
        status: PartitionStatus::of(state),
        run_id: run.map(|r| r.id),
        run_name: run.map(|r| r.name.clone()),
        state_type: run.map(|r| r.state.state_type),
        state_name: run.map(|r| r.state.name.clone()),
        end_time: run.and_then(|r| r.end_time),
    }
}

fn status_name(s: PartitionStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

fn count(cells: &[PartitionCell]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for c in cells {
        *counts.entry(status_name(c.status)).or_insert(0) += 1;
        if c.stale {
            *counts.entry("stale".to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Where each of a backfill's partitions stands, by its latest run.
pub async fn backfill_report(store: &dyn Store, name: &str) -> Result<BackfillReport, BackfillError> {
    let backfill = read(store, name).await?;
    let deployment = store.read_deployment(&backfill.deployment).await?;
    let latest = match &deployment {
        Some(d) => latest_runs(store, d.id).await?,
        None => HashMap::new(),
    };
    let spec = deployment.and_then(|d| d.partitions);
    let now = Utc::now();
    let partitions: Vec<PartitionCell> = backfill
        .partitions
        .iter()
        .map(|p| {
            let key = spec.as_ref().and_then(|s| s.parse_key(p).ok());
            cell(spec.as_ref(), p, key.as_ref(), latest.get(p), now)
        })
        .collect();
    Ok(BackfillReport { counts: count(&partitions), backfill, partitions })
}

/// What each of `runs` wrote, the newest version of each dataset partition.
async fn written_by(
    store: &dyn Store,
    runs: &[Uuid],
) -> Result<HashMap<Uuid, BTreeMap<(String, String), Written>>, StoreError> {
    // Oldest first: a later version of the same dataset partition (a
    // retry, a subflow run twice) replaces the earlier one.
    let mut by_run: HashMap<Uuid, BTreeMap<(String, String), Written>> = HashMap::new();
    if runs.is_empty() {
        return Ok(by_run);
    }
    for w in store.versions_written_by(runs).await? {
        let v = w.version;
        let source_changed = v.source_changed();
        by_run.entry(w.run_id).or_default().insert(
            (v.dataset.clone(), v.partition.clone()),
            Written {
                dataset: v.dataset,
                partition: v.partition,
                version: v.version,
                rows: v.rows,
                source_changed,
                location: v.location,
                inputs: v.inputs,
            },
        );
    }
    Ok(by_run)
}

/// Fills each cell's `written` and `rows` from what its latest run wrote,
/// and marks it stale if a source of it changed.
async fn fill_written(store: &dyn Store, cells: &mut [PartitionCell]) -> Result<(), StoreError> {
    let runs: Vec<Uuid> = cells.iter().filter_map(|c| c.run_id).collect();
    let mut by_run = written_by(store, &runs).await?;
    for c in cells.iter_mut() {
        if let Some(written) = c.run_id.and_then(|id| by_run.remove(&id)) {
            let made_from: std::collections::HashSet<(&str, &str, u32)> = written
                .values()
                .flat_map(|w| w.inputs.iter().map(|i| (i.dataset.as_str(), i.partition.as_str(), i.version)))
                .collect();
            let sinks = written.values().filter(|w| !made_from.contains(&(&w.dataset, &w.partition, w.version)));
            c.rows = Some(sinks.map(|w| w.rows).sum());
            c.source_changed = written.values().any(|w| w.source_changed);
            c.stale |= c.source_changed;
            c.written = written.into_values().collect();
        }
    }
    Ok(())
}

/// A partition whose deadline passed without a completed run.
#[derive(Debug, Clone)]
pub struct StalePartition {
    pub partition: String,
    pub due: DateTime<Utc>,
    /// Its latest run, if it has one.
    pub latest: Option<FlowRun>,
}

/// The partitions of `deployment` whose deadline fell in `(after, until]`
/// and that are stale at `until` (what a freshness check that last looked
/// at `after` reports). The runs are read only when a deadline fell.
pub async fn newly_stale(
    store: &dyn Store,
    deployment: &Deployment,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<StalePartition>, BackfillError> {
    let Some(spec) = &deployment.partitions else { return Ok(Vec::new()) };
    let due = spec.deadlines_between(after, until)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut latest = latest_runs(store, deployment.id).await?;
    Ok(due
        .into_iter()
        .filter_map(|(key, due)| {
            let partition = key.to_string();
            let run = latest.remove(&partition);
            spec.is_stale(&key, run.as_ref().map(|r| r.state.state_type), until).then_some(StalePartition {
                partition,
                due,
                latest: run,
            })
        })
        .collect())
}

/// Every partition of a deployment up to the newest complete one at `now`
/// (or its declared end), each with its latest run.
pub async fn partition_grid(
    store: &dyn Store,
    deployment: &str,
    now: DateTime<Utc>,
) -> Result<PartitionGrid, BackfillError> {
    let d = partitioned(store, deployment).await?;
    let spec = d.partitions.as_ref().expect("checked");
    let keys = match spec.keys(&Selection::default(), now) {
        Ok(k) => k,
        // Nothing complete yet: an empty grid, not an error.
        Err(e) if e.field == "to" => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let latest = latest_runs(store, d.id).await?;
    let mut times = Vec::new();
    let mut columns = Vec::new();
    let cells: Vec<PartitionCell> = keys
        .iter()
        .map(|k| {
            let name = k.to_string();
            let c = cell(Some(spec), &name, Some(k), latest.get(&name), now);
            if let Some(t) = &c.time {
                if times.last() != Some(t) {
                    times.push(t.clone());
                }
            }
            if !columns.contains(&c.column) {
                columns.push(c.column.clone());
            }
            c
        })
        .collect();
    let mut cells = cells;
    fill_written(store, &mut cells).await?;
    Ok(PartitionGrid { deployment: d.name, times, columns, counts: count(&cells), cells })
}
