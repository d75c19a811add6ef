//! Headwater's storage contract, with no database in it.
//!
//! The contract is a set of capability traits: [`RunRecorder`] takes
//! batches of what happened (runs created, states entered, logs),
//! [`RunReader`] answers the questions the CLI, the server and the UI ask,
//! and one trait per resource (deployments, work pools, blocks, …) does the
//! rest; [`Store`] is all of them. The SQL engines (`headwater-sql`: SQLite
//! and PostgreSQL) and the server's HTTP API (`headwater-client`) implement
//! them and pass the same [`conformance`] suite (feature `conformance`, for
//! tests). The operations built on the traits — recording a crash,
//! scheduling due runs, starting a deployment's run — live in [`ops`] and
//! [`scheduling`], written once for every caller.

pub mod access;
pub mod backfills;
pub mod blocks;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod freshness;
pub mod lineage;
pub mod ops;
pub mod reports;
pub mod retention;
pub mod scheduling;
pub mod secrets;
pub mod sources;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::partition::{Backfill, DatasetPolicy};
use headwater_core::retention::PruneKind;
use headwater_core::{
    Acquired, Artifact, Automation, BlockDocument, BlockType, ConcurrencyLimit, Dataset, DatasetVersion, Delivery,
    DeliveryOutcome, Deployment, Flow, FlowRun, Heartbeat, LogLevel, LogRecord, RunWrite, SlotRequest, SourceCheck,
    StateRecord, StateType, TaskRun, Variable, VersionRef, WorkPool, WorkQueue, WorkerStatus,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use access::{AccessStore, AuditFilter, IssuedKey};
pub use error::{DriverError, Result, StoreError};
pub use ops::{crashed_batch, record_crash, record_flow_run_state};
pub use secrets::SecretKey;

/// Everything one write transaction records. Runs are snapshots (the
/// latest known row), states and logs are appended.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct WriteBatch {
    pub flows: Vec<Flow>,
    pub flow_runs: Vec<FlowRun>,
    pub task_runs: Vec<TaskRun>,
    pub states: Vec<StateRecord>,
    pub logs: Vec<LogRecord>,
    pub heartbeats: Vec<Heartbeat>,
    /// Published by runs; an artifact's id makes writing it twice harmless.
    pub artifacts: Vec<Artifact>,
}

/// The largest count or limit a store keeps (PostgreSQL's `integer`): a
/// larger one is refused, not wrapped.
pub const MAX_STORED_COUNT: u32 = i32::MAX as u32;

/// Refuses runs whose `run_count` no store keeps.
pub fn check_run_counts<'a>(runs: impl IntoIterator<Item = (&'a str, u32)>) -> Result<()> {
    match runs.into_iter().find(|(_, count)| *count > MAX_STORED_COUNT) {
        Some((name, count)) => {
            Err(StoreError::Refused(format!("run '{name}': run_count {count} is above {MAX_STORED_COUNT}")))
        }
        None => Ok(()),
    }
}

impl WriteBatch {
    /// Refuses what no store keeps (see [`check_run_counts`]).
    pub fn check_bounds(&self) -> Result<()> {
        let flows = self.flow_runs.iter().map(|r| (r.name.as_str(), r.run_count));
        check_run_counts(flows.chain(self.task_runs.iter().map(|r| (r.name.as_str(), r.run_count))))
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
            && self.flow_runs.is_empty()
            && self.task_runs.is_empty()
            && self.states.is_empty()
            && self.logs.is_empty()
            && self.heartbeats.is_empty()
            && self.artifacts.is_empty()
    }
}

/// A place in a listing: the (created, id) of the last row seen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cursor {
    pub created: DateTime<Utc>,
    pub id: Uuid,
}

impl From<&FlowRun> for Cursor {
    fn from(r: &FlowRun) -> Self {
        Cursor { created: r.created, id: r.id }
    }
}

/// The longest text a filter takes (a name, a tag, a state name): a longer
/// one is refused, not searched for.
pub const MAX_FILTER_TEXT: usize = 200;
/// The most entries a filter's list takes.
pub const MAX_FILTER_ITEMS: usize = 50;

/// Which flow runs to list, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct FlowRunFilter {
    #[schema(max_items = 50)]
    pub states: Vec<StateType>,
    /// State names such as `Late` or `TimedOut` (each at most 200 characters).
    #[schema(max_items = 50)]
    pub state_names: Vec<String>,
    #[schema(max_length = 200)]
    pub flow_name: Option<String>,
    pub parent_flow_run_id: Option<Uuid>,
    /// Only the subflow runs a task run stands for (Prefect's subflows).
    pub parent_task_run_id: Option<Uuid>,
    /// Only runs of this deployment.
    pub deployment_id: Option<Uuid>,
    /// Only runs a backfill created.
    pub backfill_id: Option<Uuid>,
    /// Only runs for this partition (`color=yellow/month=2019-01`, at most 200 characters).
    #[schema(max_length = 200)]
    pub partition: Option<String>,
    /// Only runs whose name contains this text (case-insensitive).
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Only runs carrying every one of these tags (each at most 200 characters).
    #[schema(max_items = 50)]
    pub tags: Vec<String>,
    /// Only runs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Keyset pagination: only runs listed after this one.
    pub before: Option<Cursor>,
    /// At most this many runs (default 200).
    pub limit: u32,
}

impl Default for FlowRunFilter {
    fn default() -> Self {
        FlowRunFilter {
            states: Vec::new(),
            state_names: Vec::new(),
            flow_name: None,
            parent_flow_run_id: None,
            parent_task_run_id: None,
            deployment_id: None,
            backfill_id: None,
            partition: None,
            name: None,
            tags: Vec::new(),
            since: None,
            until: None,
            before: None,
            limit: 200,
        }
    }
}

impl FlowRunFilter {
    /// Refuses a filter beyond [`MAX_FILTER_TEXT`] or [`MAX_FILTER_ITEMS`],
    /// naming the field: an unbounded search text would cost every row.
    pub fn check(&self) -> std::result::Result<(), String> {
        let lists: [(&str, usize); 3] =
            [("states", self.states.len()), ("state_names", self.state_names.len()), ("tags", self.tags.len())];
        if let Some((field, n)) = lists.iter().find(|(_, n)| *n > MAX_FILTER_ITEMS) {
            return Err(format!("{field}: {n} entries, at most {MAX_FILTER_ITEMS} are taken"));
        }
        let texts = [
            ("flow_name", self.flow_name.as_deref()),
            ("name", self.name.as_deref()),
            ("partition", self.partition.as_deref()),
        ]
        .into_iter()
        .chain(self.state_names.iter().map(|t| ("state_names", Some(t.as_str()))))
        .chain(self.tags.iter().map(|t| ("tags", Some(t.as_str()))));
        for (field, text) in texts {
            if let Some(t) = text.filter(|t| t.chars().count() > MAX_FILTER_TEXT) {
                return Err(format!("{field}: {} characters, at most {MAX_FILTER_TEXT} are taken", t.chars().count()));
            }
        }
        Ok(())
    }
}

/// Which logs of a flow run to read, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogFilter {
    pub flow_run_id: Uuid,
    #[serde(default)]
    pub task_run_id: Option<Uuid>,
    #[serde(default = "lowest_level")]
    pub min_level: LogLevel,
    /// Only logs with an id greater than this (for following).
    #[serde(default)]
    pub after_id: i64,
    #[serde(default = "default_log_limit")]
    pub limit: u32,
}

fn lowest_level() -> LogLevel {
    LogLevel::Debug
}

fn default_log_limit() -> u32 {
    10_000
}

impl LogFilter {
    pub fn for_flow_run(flow_run_id: Uuid) -> Self {
        LogFilter { flow_run_id, task_run_id: None, min_level: LogLevel::Debug, after_id: 0, limit: 10_000 }
    }
}

/// Takes batches of what happened, atomically.
#[async_trait]
pub trait RunRecorder: Send + Sync {
    /// Writes the whole batch in one transaction, or nothing of it.
    async fn record(&self, batch: &WriteBatch) -> Result<()>;

    /// [`RunRecorder::record`] for what a client reports: each run's moves
    /// are checked against core's transition table in the write's own
    /// transaction, and a run moved illegally keeps its state (see
    /// [`reports`]). Answers the runs refused.
    async fn record_checked(&self, batch: &WriteBatch) -> Result<reports::BatchOutcome>;
}

/// Reads what was recorded.
#[async_trait]
pub trait RunReader: Send + Sync {
    async fn list_flows(&self) -> Result<Vec<Flow>>;
    async fn read_flow(&self, name: &str) -> Result<Option<Flow>>;
    async fn read_flow_run(&self, id: Uuid) -> Result<Option<FlowRun>>;
    /// Finds a flow run by full id, unique id prefix, or unique name.
    async fn resolve_flow_run(&self, id_or_name: &str) -> Result<FlowRun>;
    async fn list_flow_runs(&self, filter: &FlowRunFilter) -> Result<Vec<FlowRun>>;
    async fn list_task_runs(&self, flow_run_id: Uuid) -> Result<Vec<TaskRun>>;
    async fn read_task_run(&self, id: Uuid) -> Result<Option<TaskRun>>;
    /// A run's state history, oldest first.
    async fn read_states(&self, run_id: Uuid) -> Result<Vec<StateRecord>>;
    async fn read_logs(&self, filter: &LogFilter) -> Result<Vec<LogRecord>>;
    /// How many runs were created in each of `buckets` equal spans of
    /// `[since, until)`, by state type.
    async fn flow_run_history(&self, query: &HistoryQuery) -> Result<Vec<HistoryBucket>>;
    /// A flow run's task runs and subflow runs, in the order they started
    /// (not yet started ones last): the few columns a timeline draws, so a
    /// run with ten thousand task runs reads and sends a fraction of
    /// [`RunReader::list_task_runs`].
    async fn run_timeline(&self, flow_run_id: Uuid) -> Result<Vec<TimelineEntry>>;
}

/// One bar of a flow run's timeline: a task run or a subflow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    pub id: Uuid,
    pub kind: headwater_core::RunKind,
    pub name: String,
    pub state_type: StateType,
    pub state_name: String,
    /// Attempts so far; above 1 the entry was retried.
    pub run_count: u32,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

/// Which span [`RunReader::flow_run_history`] counts, in how many buckets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The span's start (RFC 3339).
    pub since: DateTime<Utc>,
    /// Its end, exclusive (RFC 3339).
    pub until: DateTime<Utc>,
    /// 1 to 500 (others are taken as the nearest).
    pub buckets: u32,
}

/// Runs created in `[start, end)`, by state type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub counts: std::collections::BTreeMap<StateType, u64>,
}

impl HistoryQuery {
    /// The query with its bucket count in range and a span of one second
    /// to a hundred years (no date arithmetic can overflow).
    pub fn clamped(&self) -> HistoryQuery {
        let until =
            self.until.max(self.since + chrono::Duration::seconds(1)).min(self.since + chrono::Duration::days(36_525));
        HistoryQuery { since: self.since, until, buckets: self.buckets.clamp(1, 500) }
    }

    /// Each bucket's length in microseconds (at least 1).
    pub fn width_micros(&self) -> i64 {
        let span = (self.until - self.since).num_microseconds().unwrap_or(i64::MAX);
        (span / i64::from(self.buckets.max(1))).max(1)
    }

    /// Empty buckets, to be filled by bucket index.
    pub fn empty_buckets(&self) -> Vec<HistoryBucket> {
        let width = chrono::Duration::microseconds(self.width_micros());
        (0..self.buckets)
            .map(|i| {
                let start = self.since + width * i as i32;
                let end = if i + 1 == self.buckets { self.until } else { start + width };
                HistoryBucket { start, end, counts: Default::default() }
            })
            .collect()
    }

    /// Adds `count` runs of `state` to the bucket with this index (the last
    /// bucket takes the rounding remainder).
    pub fn add(&self, buckets: &mut [HistoryBucket], index: i64, state: StateType, count: u64) {
        let i = usize::try_from(index.max(0)).unwrap_or(0).min(buckets.len().saturating_sub(1));
        if let Some(b) = buckets.get_mut(i) {
            *b.counts.entry(state).or_default() += count;
        }
    }
}

/// `text` as a LIKE pattern matching it anywhere, with `\` escaping.
pub fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Finds runs whose process died.
#[async_trait]
pub trait RunReaper: Send + Sync {
    /// Marks CRASHED every live flow run (PENDING, RUNNING, CANCELLING)
    /// whose last heartbeat is older than `cutoff`, with its unfinished task
    /// runs, in one transaction. Returns the runs it crashed.
    async fn crash_stale_runs(&self, cutoff: DateTime<Utc>) -> Result<Vec<FlowRun>>;
}

/// Deletes old history (retention), a small batch at a time.
#[async_trait]
pub trait HistoryPruner: Send + Sync {
    /// Deletes up to `limit` records of `kind` older than `before`, in one
    /// short transaction, and answers how many; with `dry_run` deletes
    /// nothing and answers how many there are in all. What
    /// [`headwater_core::retention`] never deletes stays.
    async fn prune(&self, kind: PruneKind, before: DateTime<Utc>, limit: u32, dry_run: bool) -> Result<u64>;
}

/// Keeps deployments (a flow with its parameters, schedules and work pool).
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Creates or replaces the deployment of that name; its creation time
    /// survives a re-apply.
    async fn apply_deployment(&self, deployment: &Deployment) -> Result<Deployment>;
    async fn list_deployments(&self) -> Result<Vec<Deployment>>;
    async fn read_deployment(&self, name: &str) -> Result<Option<Deployment>>;
    /// Whether there was such a deployment.
    async fn delete_deployment(&self, name: &str) -> Result<bool>;
}

/// The longest a claim may wait for work (the server refuses more).
pub const CLAIM_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs waiting for a worker.
#[async_trait]
pub trait RunQueue: Send + Sync {
    /// Creates these SCHEDULED runs, except those whose idempotency key an
    /// existing run already has. Returns how many were created.
    async fn enqueue_runs(&self, runs: &[FlowRun]) -> Result<usize>;
    /// Takes the next SCHEDULED run of `work_pool` due by `now` and moves it
    /// to PENDING, atomically: no run is ever handed out twice. Queues are
    /// served by priority, each by due time; `queues` (if not empty) limits
    /// the claim to those. A paused pool or queue, or one at its concurrency
    /// limit, hands out nothing.
    async fn claim_due_run(&self, work_pool: &str, queues: &[String], now: DateTime<Utc>) -> Result<Option<FlowRun>>;
    /// Like [`RunQueue::claim_due_run`] at the current time, but a store
    /// that can be told of new work (the server) waits up to `wait` (at
    /// most [`CLAIM_WAIT_MAX`]) for some instead of answering "nothing" at
    /// once. Others answer at once.
    async fn claim_or_wait(
        &self,
        work_pool: &str,
        queues: &[String],
        wait: std::time::Duration,
    ) -> Result<Option<FlowRun>> {
        let _ = wait;
        self.claim_due_run(work_pool, queues, Utc::now()).await
    }
    /// Renames `Late` the SCHEDULED runs due before `cutoff` that no worker
    /// has started. Returns them.
    async fn mark_late_runs(&self, cutoff: DateTime<Utc>) -> Result<Vec<FlowRun>>;
    /// How many SCHEDULED runs wait in each pool and queue, the Late apart.
    async fn waiting_runs(&self) -> Result<Vec<WaitingRuns>>;
}

/// SCHEDULED runs of one work pool and queue (Late ones or the others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WaitingRuns {
    pub work_pool: String,
    pub work_queue: String,
    /// Whether these are the runs marked Late (due and not started in time).
    pub late: bool,
    pub runs: u64,
}

/// Work pools and their workers' heartbeats.
#[async_trait]
pub trait WorkPoolStore: Send + Sync {
    /// Creates or replaces the pool of that name (its creation time stays).
    async fn apply_work_pool(&self, pool: &WorkPool) -> Result<WorkPool>;
    async fn list_work_pools(&self) -> Result<Vec<WorkPool>>;
    async fn read_work_pool(&self, name: &str) -> Result<Option<WorkPool>>;
    /// Removes the pool with its queues and workers (its runs stay).
    async fn delete_work_pool(&self, name: &str) -> Result<bool>;
    /// Creates or replaces a queue of an existing pool (refused otherwise).
    async fn apply_work_queue(&self, queue: &WorkQueue) -> Result<WorkQueue>;
    /// A pool's queues by priority.
    async fn list_work_queues(&self, work_pool: &str) -> Result<Vec<WorkQueue>>;
    /// Whether there was such a queue; the pool's default queue cannot be
    /// deleted (refused).
    async fn delete_work_queue(&self, work_pool: &str, name: &str) -> Result<bool>;
    async fn worker_heartbeat(&self, work_pool: &str, worker: &str, at: DateTime<Utc>) -> Result<()>;
    /// Workers of one pool, or of all.
    async fn list_workers(&self, work_pool: Option<&str>) -> Result<Vec<WorkerStatus>>;
}

/// Named JSON values.
#[async_trait]
pub trait VariableStore: Send + Sync {
    /// Creates or replaces the variable (its creation time stays).
    async fn set_variable(&self, variable: &Variable) -> Result<Variable>;
    async fn read_variable(&self, name: &str) -> Result<Option<Variable>>;
    async fn list_variables(&self) -> Result<Vec<Variable>>;
    async fn delete_variable(&self, name: &str) -> Result<bool>;
}

/// Which artifacts to list, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ArtifactFilter {
    /// Every version of this key.
    pub key: Option<String>,
    pub flow_run_id: Option<Uuid>,
    /// Only the newest version of each key (unkeyed artifacts are left out).
    pub latest_only: bool,
    #[schema(maximum = 100_000)]
    pub limit: u32,
}

impl ArtifactFilter {
    /// The most artifacts one listing answers.
    pub const MAX_LIMIT: u32 = 100_000;
}

impl Default for ArtifactFilter {
    fn default() -> Self {
        ArtifactFilter { key: None, flow_run_id: None, latest_only: false, limit: 200 }
    }
}

/// Reads the artifacts runs published (they are written with the runs'
/// batches, see [`WriteBatch::artifacts`]).
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    async fn list_artifacts(&self, filter: &ArtifactFilter) -> Result<Vec<Artifact>>;
    /// Removes every version of a key; returns how many there were.
    async fn delete_artifacts(&self, key: &str) -> Result<u64>;
}

/// Block types and blocks. Secrets go in clear and are sealed by the store
/// (under its secret key); they come back as `********` unless revealed.
#[async_trait]
pub trait BlockStore: Send + Sync {
    /// Creates or replaces block types (Headwater's own are registered by
    /// whoever starts: the server, the CLI, a flow program).
    async fn register_block_types(&self, types: &[BlockType]) -> Result<()>;
    async fn list_block_types(&self) -> Result<Vec<BlockType>>;
    /// Checks the block against its type and saves it, sealing its secrets;
    /// a secret sent as `********` keeps its stored value. Returns it masked.
    async fn save_block(&self, block: &BlockDocument) -> Result<BlockDocument>;
    /// The block, secrets masked, or opened with `reveal`.
    async fn read_block(&self, name: &str, reveal: bool) -> Result<Option<BlockDocument>>;
    /// Every block, secrets masked.
    async fn list_blocks(&self) -> Result<Vec<BlockDocument>>;
    async fn delete_block(&self, name: &str) -> Result<bool>;
}

/// The lake's catalog.
#[async_trait]
pub trait DatasetStore: Send + Sync {
    /// Records a write of one partition as its next version, checking the
    /// schema against the dataset's (a conflict is refused, naming the
    /// column and both types, unless `allow_evolution`). Returns the
    /// version as stored.
    async fn record_dataset_write(&self, write: &DatasetVersion, allow_evolution: bool) -> Result<DatasetVersion>;
    async fn list_datasets(&self) -> Result<Vec<Dataset>>;
    async fn read_dataset(&self, name: &str) -> Result<Option<Dataset>>;
    /// The current version of each partition, by partition.
    async fn list_partitions(&self, dataset: &str) -> Result<Vec<DatasetVersion>>;
    /// Every version of every partition, newest first.
    async fn dataset_history(&self, dataset: &str) -> Result<Vec<DatasetVersion>>;
    /// The versions each of `runs` wrote, itself or through its direct
    /// subflows, oldest first within each [`MAX_RUNS_ASKED`] runs asked.
    async fn versions_written_by(&self, runs: &[Uuid]) -> Result<Vec<RunWrite>>;
    /// Records the latest look at a version's source; false when there is
    /// no such version.
    async fn record_source_check(&self, version: &VersionRef, check: &SourceCheck) -> Result<bool>;
    /// Sets (or, with None, removes) a dataset's freshness policy; a
    /// dataset not written yet is created, empty, to hold it.
    async fn set_dataset_policy(&self, name: &str, policy: Option<&DatasetPolicy>, now: DateTime<Utc>) -> Result<()>;
}

/// The most runs one statement (or one HTTP request) of
/// [`DatasetStore::versions_written_by`] asks about.
pub const MAX_RUNS_ASKED: usize = 1000;

/// Sums a dataset's current partitions.
pub fn dataset_summary(
    name: String,
    schema: Vec<headwater_core::Column>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    partitions: &[DatasetVersion],
) -> Dataset {
    Dataset {
        name,
        schema,
        partitions: partitions.len() as u64,
        rows: partitions.iter().map(|p| p.rows).sum(),
        bytes: partitions.iter().map(|p| p.bytes).sum(),
        created,
        updated,
        policy: None,
    }
}

/// Concurrency limits and the leases that hold their slots.
#[async_trait]
pub trait ConcurrencyStore: Send + Sync {
    /// Creates or changes a limit (leases held stay held).
    async fn set_concurrency_limit(
        &self,
        name: &str,
        limit: u32,
        slot_decay_per_second: Option<f64>,
    ) -> Result<ConcurrencyLimit>;
    /// The limit with the slots unexpired leases hold now.
    async fn read_concurrency_limit(&self, name: &str) -> Result<Option<ConcurrencyLimit>>;
    async fn list_concurrency_limits(&self) -> Result<Vec<ConcurrencyLimit>>;
    /// Removes the limit and its leases.
    async fn delete_concurrency_limit(&self, name: &str) -> Result<bool>;
    /// Frees every slot of the limit; returns how many were held.
    async fn reset_concurrency_limit(&self, name: &str) -> Result<u32>;
    /// Takes the slots asked for, all or none, atomically across every
    /// process sharing the store. Names without a limit are not limited; a
    /// request that could never fit is refused.
    async fn acquire_slots(&self, request: &SlotRequest) -> Result<Acquired>;
    /// Extends a lease to `ttl_ms` from now; false if it already expired
    /// (its slots may be someone else's by now) or was released.
    async fn renew_lease(&self, id: Uuid, ttl_ms: u64) -> Result<bool>;
    async fn release_lease(&self, id: Uuid) -> Result<bool>;
}

/// Automations, as people manage them.
#[async_trait]
pub trait AutomationStore: Send + Sync {
    /// Creates or replaces the automation of that name (its id and creation
    /// time stay).
    async fn apply_automation(&self, automation: &Automation) -> Result<Automation>;
    /// Every automation with its delivery status, by name.
    async fn list_automations(&self) -> Result<Vec<Automation>>;
    async fn read_automation(&self, name: &str) -> Result<Option<Automation>>;
    /// Pauses or resumes it; None if there is no such automation.
    async fn set_automation_enabled(&self, name: &str, enabled: bool) -> Result<Option<Automation>>;
    /// Removes it with its deliveries.
    async fn delete_automation(&self, name: &str) -> Result<bool>;
    /// An automation's most recent deliveries, newest first.
    async fn list_deliveries(&self, automation: &str, limit: u32) -> Result<Vec<Delivery>>;
    /// The engine's side of the store, where the database is local (a
    /// client of the server has none: the server runs automations).
    fn outbox(&self) -> Option<&dyn AutomationOutbox> {
        None
    }
}

/// What the automation engine reads and writes: the flow-run state history
/// as a stream, its cursor, and the outbox of deliveries.
#[async_trait]
pub trait AutomationOutbox: Send + Sync {
    /// The enabled automations, without their delivery status (cheap: the
    /// engine reads them every tick).
    async fn active_automations(&self) -> Result<Vec<Automation>>;
    /// Flow-run state records with a sequence number above `after`, in order.
    async fn read_state_events(&self, after: i64, limit: u32) -> Result<Vec<(i64, StateRecord)>>;
    /// The highest sequence number of the state history (0 when empty).
    async fn last_state_event(&self) -> Result<i64>;
    async fn read_cursor(&self, name: &str) -> Result<Option<i64>>;
    async fn write_cursor(&self, name: &str, value: i64) -> Result<()>;
    /// Adds deliveries, except those whose (automation, event key, action)
    /// is already there: an event is delivered once however often it is
    /// seen. Returns how many were added.
    async fn enqueue_deliveries(&self, deliveries: &[Delivery]) -> Result<usize>;
    /// Takes up to `limit` pending deliveries due by `now`, moving their next
    /// attempt to `now + lease` so no one else takes them meanwhile (nor
    /// after a crash, until the lease is over).
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Records how an attempt ended.
    async fn finish_delivery(&self, id: Uuid, outcome: &DeliveryOutcome) -> Result<()>;
    /// Removes delivered and failed deliveries created before `before`;
    /// returns how many.
    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64>;
}

/// Backfills and the partitions their runs are for.
#[async_trait]
pub trait BackfillStore: Send + Sync {
    /// Records `backfill` (new, or its spec updated and un-cancelled) and
    /// enqueues `runs`, each once per idempotency key, in one transaction.
    /// Returns how many runs were created.
    async fn save_backfill(&self, backfill: &Backfill, runs: &[FlowRun]) -> Result<usize>;
    /// Newest first; only `deployment`'s if given.
    async fn list_backfills(&self, deployment: Option<&str>) -> Result<Vec<Backfill>>;
    /// By name or id.
    async fn read_backfill(&self, name_or_id: &str) -> Result<Option<Backfill>>;
    /// Marks it cancelled at `at` (the claim then cancels its queued runs
    /// instead of starting them). None if there is no such backfill.
    async fn cancel_backfill(&self, id: Uuid, at: DateTime<Utc>) -> Result<Option<Backfill>>;
    /// The latest run of each of the deployment's partitions, by partition.
    async fn latest_partition_runs(&self, deployment_id: Uuid) -> Result<Vec<FlowRun>>;
}

/// A complete store.
pub trait Store:
    RunRecorder
    + RunReader
    + RunReaper
    + DeploymentStore
    + RunQueue
    + WorkPoolStore
    + VariableStore
    + ArtifactStore
    + BlockStore
    + DatasetStore
    + ConcurrencyStore
    + AutomationStore
    + BackfillStore
    + HistoryPruner
    + AccessStore
{
}
impl<
        T: RunRecorder
            + RunReader
            + RunReaper
            + DeploymentStore
            + RunQueue
            + WorkPoolStore
            + VariableStore
            + ArtifactStore
            + BlockStore
            + DatasetStore
            + ConcurrencyStore
            + AutomationStore
            + BackfillStore
            + HistoryPruner
            + AccessStore,
    > Store for T
{
}

#[cfg(test)]
mod history_query_tests {
    use super::*;

    #[test]
    fn buckets_cover_the_span_and_absurd_spans_are_clamped() {
        let since = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let q = HistoryQuery { since, until: since + chrono::Duration::seconds(10), buckets: 3 }.clamped();
        let b = q.empty_buckets();
        assert_eq!((b.len(), b[0].start, b[2].end), (3, since, since + chrono::Duration::seconds(10)));
        assert_eq!(b[1].start, b[0].end, "no gaps");
        let huge = HistoryQuery { since: DateTime::<Utc>::MIN_UTC, until: DateTime::<Utc>::MAX_UTC, buckets: 9999 };
        let clamped = huge.clamped();
        assert_eq!(clamped.buckets, 500);
        assert_eq!(clamped.empty_buckets().len(), 500);
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn a_filter_beyond_its_bounds_is_refused_by_field() {
        assert_eq!(FlowRunFilter::default().check(), Ok(()));
        let at_bound = FlowRunFilter { name: Some("n".repeat(MAX_FILTER_TEXT)), ..Default::default() };
        assert_eq!(at_bound.check(), Ok(()));
        let long = FlowRunFilter { name: Some("n".repeat(MAX_FILTER_TEXT + 1)), ..Default::default() };
        assert!(long.check().unwrap_err().starts_with("name: 201 characters"));
        let tags = FlowRunFilter { tags: vec!["t".into(); MAX_FILTER_ITEMS + 1], ..Default::default() };
        assert!(tags.check().unwrap_err().starts_with("tags: 51 entries"));
        let tag = FlowRunFilter { tags: vec!["t".repeat(MAX_FILTER_TEXT + 1)], ..Default::default() };
        assert!(tag.check().unwrap_err().starts_with("tags: 201 characters"));
    }
}
