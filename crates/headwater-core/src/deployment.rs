//! Deployments: a flow with its parameters, schedules and where it runs,
//! as declared in `headwater.yaml`.
//!
//! Parsing here is pure: the caller reads the file and passes the process
//! environment in, so every rule is testable. Errors name the deployment and
//! the field (`deployments[0].schedules[1].cron`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::duration::parse_duration;
use crate::model::{flow_id_for_name, FlowRun};
use crate::names::run_name;
use crate::partition::{PartitionSpec, PartitionStatus, Selection};
use crate::schedule::Schedule;
use crate::state::State;

/// What to do with a new run when the deployment is at its concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum CollisionStrategy {
    /// Wait for a slot.
    #[default]
    Enqueue,
    /// Cancel the new run.
    CancelNew,
}

/// A step run before the flow, to fetch its code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PullStep {
    GitClone {
        repository: String,
        #[serde(default)]
        branch: Option<String>,
        /// A commit, tag or branch to check out after cloning.
        #[serde(default, rename = "ref")]
        reference: Option<String>,
    },
    SetWorkingDirectory {
        directory: String,
    },
}

/// One schedule of a deployment, with its own parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentSchedule {
    pub id: Uuid,
    pub schedule: Schedule,
    /// Merged over the deployment's parameters for runs of this schedule.
    #[schema(value_type = Object)]
    pub parameters: Value,
    pub active: bool,
    /// Runs the newest complete partition at each due time (one run per
    /// static value), instead of one run with the parameters alone.
    #[serde(default)]
    pub partition: Option<SchedulePartition>,
}

/// A schedule that runs "last month": the newest partition complete at its
/// due time, with the partition's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SchedulePartition {
    /// What to do when that partition already has a completed run.
    #[serde(default)]
    pub when_done: WhenDone,
}

/// Whether a partition schedule runs a partition that is already done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenDone {
    /// Create no run for it.
    #[default]
    Skip,
    /// Run it again.
    Run,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    /// Derived from the name (`deployment_id_for_name`); the server sets it.
    #[serde(default)]
    #[schema(read_only)]
    pub id: Uuid,
    pub name: String,
    pub flow_name: String,
    /// The command that runs the flow program, e.g. `["./target/release/etl"]`
    /// (empty for one Prefect's client made: its worker holds the command).
    pub entrypoint: Vec<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub parameters: Value,
    pub work_pool: Option<String>,
    pub work_queue: Option<String>,
    /// Settings for the pool's kind of worker (a Docker pool: image,
    /// pull_policy, network_mode, volumes, env, auto_remove).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub job_variables: Value,
    pub schedules: Vec<DeploymentSchedule>,
    pub concurrency_limit: Option<u32>,
    pub collision_strategy: CollisionStrategy,
    pub env: BTreeMap<String, String>,
    pub pull_steps: Vec<PullStep>,
    pub paused: bool,
    /// The partitions its runs are cut into (a backfill runs each once).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub partitions: Option<PartitionSpec>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

impl Deployment {
    /// What the API checks of a deployment it is given (the manifest's
    /// parser checks these too, with the file's locations, and more: a
    /// one-word name and a command, which a deployment made by Prefect's
    /// client need not have); errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        for (i, s) in self.schedules.iter().enumerate() {
            s.schedule.check().map_err(|e| format!("schedules[{i}].schedule: {e}"))?;
            if s.partition.is_some() && self.partitions.as_ref().and_then(|p| p.time.as_ref()).is_none() {
                return Err(format!("schedules[{i}].partition: only a deployment with time partitions has one"));
            }
        }
        if let Some(p) = &self.partitions {
            p.validate().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The deployment's parameters with `extra` merged over them.
    pub fn merged_parameters(&self, extra: &Value) -> Value {
        let mut merged = self.parameters.as_object().cloned().unwrap_or_default();
        if let Some(m) = extra.as_object() {
            merged.extend(m.clone());
        }
        Value::Object(merged)
    }

    fn new_run(
        &self,
        parameters: Value,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        seed: u64,
        key: Option<String>,
    ) -> FlowRun {
        FlowRun {
            id: Uuid::now_v7(),
            flow_id: flow_id_for_name(&self.flow_name),
            flow_name: self.flow_name.clone(),
            name: run_name(seed),
            parameters,
            tags: self.tags.clone(),
            state: State::scheduled(now, due),
            parent_flow_run_id: None,
            parent_task_run_id: None,
            run_count: 0,
            start_time: None,
            end_time: None,
            created: now,
            heartbeat: None,
            deployment_id: Some(self.id),
            work_pool: Some(self.work_pool.clone().unwrap_or_else(|| DEFAULT_WORK_POOL.to_string())),
            idempotency_key: key,
            work_queue: Some(self.work_queue.clone().unwrap_or_else(|| crate::DEFAULT_QUEUE.to_string())),
            retry_policy: None,
            partition: None,
            backfill_id: None,
        }
    }

    /// A backfill's run of one partition: the partition's parameters over
    /// the deployment's, due now, its key as a field and a tag.
    pub fn partition_run(
        &self,
        key: &crate::partition::PartitionKey,
        backfill: Uuid,
        idempotency_key: String,
        now: DateTime<Utc>,
        seed: u64,
    ) -> Option<FlowRun> {
        let spec = self.partitions.as_ref()?;
        let params = Value::Object(spec.parameters_for(key));
        let mut run = self.new_run(self.merged_parameters(&params), now, now, seed, Some(idempotency_key));
        let key = key.to_string();
        run.tags.push(format!("partition:{key}"));
        run.partition = Some(key);
        run.backfill_id = Some(backfill);
        Some(run)
    }

    /// The runs of the active schedules due in `[from, to)`, at most
    /// `per_schedule` each. Each has an idempotency key made of the
    /// deployment, the schedule and the due time, so asking twice (two
    /// schedulers, a restart) never creates a run twice. None if paused.
    pub fn scheduled_runs(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        per_schedule: usize,
        now: DateTime<Utc>,
        seed: &mut dyn FnMut() -> u64,
    ) -> Vec<FlowRun> {
        self.scheduled_runs_with(from, to, per_schedule, now, seed, &|_| PartitionStatus::Missing)
    }

    /// [`Deployment::scheduled_runs`], with where each partition stands
    /// (`status` of a key): a partition schedule creates no run for a
    /// partition queued or running, nor for one done unless its
    /// `when_done` is `run`.
    pub fn scheduled_runs_with(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        per_schedule: usize,
        now: DateTime<Utc>,
        seed: &mut dyn FnMut() -> u64,
        status: &dyn Fn(&str) -> PartitionStatus,
    ) -> Vec<FlowRun> {
        if self.paused {
            return Vec::new();
        }
        let mut runs = Vec::new();
        for s in self.schedules.iter().filter(|s| s.active) {
            for due in s.schedule.between(from, to, per_schedule) {
                let key = format!("scheduled:{}:{}:{}", self.id, s.id, due.timestamp_micros());
                let (Some(choice), Some(spec)) = (s.partition, &self.partitions) else {
                    runs.push(self.new_run(self.merged_parameters(&s.parameters), due, now, seed(), Some(key)));
                    continue;
                };
                let Some(latest) = spec.latest_complete(due) else { continue };
                let newest = Selection { from: Some(latest.clone()), to: Some(latest), ..Default::default() };
                for p in spec.keys(&newest, due).unwrap_or_default() {
                    let name = p.to_string();
                    match status(&name) {
                        PartitionStatus::InFlight => continue,
                        PartitionStatus::Completed if choice.when_done == WhenDone::Skip => continue,
                        _ => {}
                    }
                    let mut params = s.parameters.as_object().cloned().unwrap_or_default();
                    params.extend(spec.parameters_for(&p));
                    let mut run = self.new_run(
                        self.merged_parameters(&Value::Object(params)),
                        due,
                        now,
                        seed(),
                        Some(format!("{key}:{name}")),
                    );
                    run.tags.push(format!("partition:{name}"));
                    run.partition = Some(name);
                    runs.push(run);
                }
            }
        }
        runs
    }

    /// A run started by hand, due at `due`, with `parameters` over the
    /// deployment's.
    pub fn manual_run(&self, parameters: &Value, due: DateTime<Utc>, now: DateTime<Utc>, seed: u64) -> FlowRun {
        self.new_run(self.merged_parameters(parameters), due, now, seed, None)
    }
}

/// What a worker may do with a due run, given its deployment's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Start it.
    Start,
    /// Leave it queued until a slot frees.
    Wait,
    /// Cancel it: the deployment is full and says `cancel_new`.
    Cancel,
}

/// Decides whether one more run of a deployment may start while `active`
/// of its runs are pending or running.
pub fn admit(limit: Option<u32>, strategy: CollisionStrategy, active: usize) -> Admission {
    match limit {
        Some(l) if active >= l as usize => match strategy {
            CollisionStrategy::Enqueue => Admission::Wait,
            CollisionStrategy::CancelNew => Admission::Cancel,
        },
        _ => Admission::Start,
    }
}

/// The pool of deployments that name none.
pub const DEFAULT_WORK_POOL: &str = "default";

/// Deployment ids are derived from the name, so applying the same manifest
/// twice updates rather than duplicates.
pub fn deployment_id_for_name(name: &str) -> Uuid {
    let digest = blake3::hash(format!("headwater-deployment:{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn schedule_id(deployment: &str, index: usize) -> Uuid {
    deployment_id_for_name(&format!("{deployment}#schedule{index}"))
}

/// An error in a manifest, with where it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {location}: {reason}")]
pub struct ManifestError {
    pub file: String,
    /// `deployments[0] (taxi-monthly).schedules[1].cron`, or `line 3` for YAML syntax.
    pub location: String,
    pub reason: String,
}

// ---- the file's shape ------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    deployments: Vec<DeploymentSpec>,
    /// Read by [`parse_automations`]; their templates are minijinja, filled
    /// in when they fire, not when the file is read.
    #[serde(default)]
    #[allow(dead_code)]
    automations: Option<Value>,
    /// Read by [`parse_datasets`].
    #[serde(default)]
    #[allow(dead_code)]
    datasets: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentSpec {
    name: String,
    flow: String,
    entrypoint: Entrypoint,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
    #[serde(default)]
    work_pool: Option<WorkPoolSpec>,
    #[serde(default)]
    schedules: Vec<ScheduleSpec>,
    #[serde(default)]
    concurrency_limit: Option<ConcurrencySpec>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    pull: Vec<PullStep>,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    partitions: Option<PartitionSpec>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Entrypoint {
    Command(String),
    Argv(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkPoolSpec {
    name: String,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    job_variables: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ConcurrencySpec {
    Limit(u32),
    Full {
        limit: u32,
        #[serde(default)]
        collision_strategy: CollisionStrategy,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleSpec {
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    interval: Option<Value>,
    #[serde(default)]
    rrule: Option<String>,
    #[serde(default = "utc")]
    timezone: String,
    #[serde(default)]
    anchor_date: Option<DateTime<Utc>>,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
    #[serde(default = "yes")]
    active: bool,
    /// `latest`: run the newest complete partition at each due time.
    #[serde(default)]
    partition: Option<String>,
    #[serde(default)]
    when_done: Option<WhenDone>,
}

fn utc() -> String {
    "UTC".into()
}

fn yes() -> bool {
    true
}

/// Parses a manifest already read as JSON-like data (the YAML reader lives
/// at the edge). `{{ env.NAME }}` in any string is replaced from `env`; a
/// missing variable is an error naming it. Manifests that use
/// `{{ variables.NAME }}` go through [`parse_manifest_with`].
pub fn parse_manifest(
    file: &str,
    document: Value,
    env: &dyn Fn(&str) -> Option<String>,
    now: DateTime<Utc>,
) -> Result<Vec<Deployment>, ManifestError> {
    parse_manifest_with(file, document, &Templates { env, variables: &|_| None }, now)
}

/// Where `{{ … }}` in a manifest takes its values from.
pub struct Templates<'a> {
    /// `{{ env.NAME }}`: the environment of whoever deploys.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `{{ variables.NAME }}`: Headwater variables. A string that is only
    /// this template takes the variable's JSON value (a list stays a list).
    pub variables: &'a dyn Fn(&str) -> Option<Value>,
}

/// [`parse_manifest`] with variables as well as the environment.
pub fn parse_manifest_with(
    file: &str,
    document: Value,
    templates: &Templates<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Deployment>, ManifestError> {
    let err = |location: String, reason: String| ManifestError { file: file.to_string(), location, reason };
    let mut document = document;
    let automations = document.as_object_mut().and_then(|m| m.remove("automations"));
    let mut document = substitute(document, templates, "").map_err(|(loc, reason)| err(loc, reason))?;
    if let (Some(m), Some(a)) = (document.as_object_mut(), automations) {
        m.insert("automations".into(), a);
    }
    let parsed: ManifestFile = serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        err(if path == "." { "the top level".into() } else { path }, e.into_inner().to_string())
    })?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, spec) in parsed.deployments.into_iter().enumerate() {
        let at = |field: &str| format!("deployments[{i}] ({}).{field}", spec.name);
        if spec.name.trim().is_empty() || spec.name.contains(char::is_whitespace) {
            return Err(err(
                format!("deployments[{i}].name"),
                "a deployment name is one word, e.g. taxi-monthly".into(),
            ));
        }
        if !seen.insert(spec.name.clone()) {
            return Err(err(at("name"), format!("the name '{}' is used twice", spec.name)));
        }
        let entrypoint = match spec.entrypoint {
            Entrypoint::Command(c) => c.split_whitespace().map(str::to_string).collect(),
            Entrypoint::Argv(v) => v,
        };
        if entrypoint.is_empty() {
            return Err(err(at("entrypoint"), "the command that runs the flow program is empty".into()));
        }
        let mut schedules = Vec::new();
        for (j, s) in spec.schedules.into_iter().enumerate() {
            let loc = at(&format!("schedules[{j}]"));
            let kinds = [s.cron.is_some(), s.interval.is_some(), s.rrule.is_some()].iter().filter(|k| **k).count();
            if kinds != 1 {
                return Err(err(loc, "give exactly one of cron, interval or rrule".into()));
            }
            let schedule = if let Some(c) = &s.cron {
                Schedule::cron(c, &s.timezone)
            } else if let Some(r) = &s.rrule {
                Schedule::rrule(r, &s.timezone)
            } else {
                let every = match s.interval.as_ref().expect("counted above") {
                    Value::Number(n) => {
                        n.as_f64().filter(|v| *v > 0.0).map(Duration::from_secs_f64).ok_or_else(|| {
                            err(
                                format!("{loc}.interval"),
                                "an interval is a positive number of seconds or text like 1h".into(),
                            )
                        })?
                    }
                    Value::String(text) => {
                        parse_duration(text).map_err(|e| err(format!("{loc}.interval"), e.to_string()))?
                    }
                    other => {
                        return Err(err(
                            format!("{loc}.interval"),
                            format!("expected seconds or text like 1h, got {other}"),
                        ))
                    }
                };
                Schedule::interval(every, s.anchor_date, &s.timezone)
            }
            .map_err(|e| err(loc.clone(), e.to_string()))?;
            let partition = match (s.partition.as_deref(), s.when_done) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(err(
                        format!("{loc}.when_done"),
                        "only a schedule with `partition: latest` takes it".into(),
                    ))
                }
                (Some("latest"), when_done) => {
                    if spec.partitions.as_ref().and_then(|p| p.time.as_ref()).is_none() {
                        return Err(err(
                            format!("{loc}.partition"),
                            "the deployment declares no time partitions (`partitions.time`)".into(),
                        ));
                    }
                    Some(SchedulePartition { when_done: when_done.unwrap_or_default() })
                }
                (Some(other), _) => {
                    return Err(err(format!("{loc}.partition"), format!("'{other}': the one choice is `latest`")))
                }
            };
            schedules.push(DeploymentSchedule {
                id: schedule_id(&spec.name, j),
                schedule,
                parameters: Value::Object(s.parameters),
                active: s.active,
                partition,
            });
        }
        let (concurrency_limit, collision_strategy) = match spec.concurrency_limit {
            None => (None, CollisionStrategy::Enqueue),
            Some(ConcurrencySpec::Limit(0)) | Some(ConcurrencySpec::Full { limit: 0, .. }) => {
                return Err(err(at("concurrency_limit"), "a limit of 0 would never run anything".into()))
            }
            Some(ConcurrencySpec::Limit(n)) => (Some(n), CollisionStrategy::Enqueue),
            Some(ConcurrencySpec::Full { limit, collision_strategy }) => (Some(limit), collision_strategy),
        };
        if let Some(p) = &spec.partitions {
            p.validate().map_err(|e| err(at(&e.field), e.reason))?;
        }
        out.push(Deployment {
            id: deployment_id_for_name(&spec.name),
            name: spec.name,
            flow_name: spec.flow,
            entrypoint,
            description: spec.description,
            version: spec.version,
            tags: spec.tags,
            parameters: Value::Object(spec.parameters),
            work_pool: spec.work_pool.as_ref().map(|w| w.name.clone()),
            job_variables: Value::Object(spec.work_pool.as_ref().map(|w| w.job_variables.clone()).unwrap_or_default()),
            work_queue: spec.work_pool.and_then(|w| w.queue),
            schedules,
            concurrency_limit,
            collision_strategy,
            env: spec.env,
            pull_steps: spec.pull,
            paused: spec.paused,
            partitions: spec.partitions,
            created: now,
            updated: now,
        });
    }
    Ok(out)
}

/// The `automations:` of a manifest, checked, with ids from their names.
/// Their `subject` and `body` stay templates (filled in when they fire).
pub fn parse_automations(
    file: &str,
    document: &Value,
    now: DateTime<Utc>,
) -> Result<Vec<crate::automation::Automation>, ManifestError> {
    let err = |location: String, reason: String| ManifestError { file: file.to_string(), location, reason };
    let Some(list) = document.get("automations") else { return Ok(Vec::new()) };
    let items = list.as_array().ok_or_else(|| err("automations".into(), "expected a list of automations".into()))?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut a: crate::automation::Automation = serde_path_to_error::deserialize(item).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." { String::new() } else { format!(".{path}") };
            err(format!("automations[{i}]{at}"), e.into_inner().to_string())
        })?;
        let at = format!("automations[{i}] ({})", a.name);
        a.validate().map_err(|reason| match reason.split_once(": ") {
            Some((field, why)) => err(format!("{at}.{field}"), why.to_string()),
            None => err(at.clone(), reason),
        })?;
        if !seen.insert(a.name.clone()) {
            return Err(err(format!("{at}.name"), format!("the name '{}' is used twice", a.name)));
        }
        a.id = crate::automation::automation_id_for_name(&a.name);
        a.created = now;
        a.updated = now;
        out.push(a);
    }
    Ok(out)
}

/// A dataset's entry in a manifest: its name and freshness policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: String,
    /// Its time partitions, named the lake's way (`year=2019/month=01`).
    pub time: crate::partition::TimePartitions,
    /// How soon after its window ends each must be written.
    pub freshness: crate::partition::Freshness,
}

impl DatasetSpec {
    pub fn policy(&self) -> crate::partition::DatasetPolicy {
        crate::partition::DatasetPolicy { time: self.time.clone(), freshness: self.freshness }
    }
}

/// The `datasets:` of a manifest, checked: each a name, its time
/// partitions and a freshness policy (`time: {every: month, start:
/// "2019-01"}`, `freshness: {within: 2d 9h}`).
pub fn parse_datasets(file: &str, document: &Value) -> Result<Vec<DatasetSpec>, ManifestError> {
    let err = |location: String, reason: String| ManifestError { file: file.to_string(), location, reason };
    let Some(list) = document.get("datasets") else { return Ok(Vec::new()) };
    let items = list.as_array().ok_or_else(|| err("datasets".into(), "expected a list of datasets".into()))?;
    let mut out: Vec<DatasetSpec> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let d: DatasetSpec = serde_path_to_error::deserialize(item).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." { String::new() } else { format!(".{path}") };
            err(format!("datasets[{i}]{at}"), e.into_inner().to_string())
        })?;
        let at = format!("datasets[{i}] ({})", d.name);
        if d.name.trim().is_empty() {
            return Err(err(format!("datasets[{i}].name"), "name the dataset".into()));
        }
        d.policy().validate().map_err(|e| err(format!("{at}.{}", e.field), e.reason))?;
        if out.iter().any(|o| o.name == d.name) {
            return Err(err(format!("{at}.name"), format!("the name '{}' is used twice", d.name)));
        }
        out.push(d);
    }
    Ok(out)
}

/// Fills in the templates of every string of `v`.
fn substitute(v: Value, env: &Templates<'_>, path: &str) -> Result<Value, (String, String)> {
    Ok(match v {
        Value::String(s) => whole_variable(&s, env)
            .unwrap_or_else(|| render(&s, env).map(Value::String))
            .map_err(|r| (path_or_top(path), r))?,
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, x)| substitute(x, env, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, x)| {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    substitute(x, env, &p).map(|x| (k, x))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => other,
    })
}

fn path_or_top(p: &str) -> String {
    if p.is_empty() {
        "the top level".into()
    } else {
        p.to_string()
    }
}

/// A string that is exactly one `{{ variables.NAME }}` becomes its value.
fn whole_variable(s: &str, t: &Templates<'_>) -> Option<Result<Value, String>> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    let name = inner.trim().strip_prefix("variables.")?;
    Some(variable(name, t))
}

fn variable(name: &str, t: &Templates<'_>) -> Result<Value, String> {
    (t.variables)(name).ok_or_else(|| {
        format!("there is no variable named '{name}' (create it with `headwater variable set {name} VALUE`)")
    })
}

fn render(s: &str, t: &Templates<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| format!("unclosed '{{{{' in '{s}'"))?;
        let expr = after[..close].trim();
        if let Some(name) = expr.strip_prefix("env.") {
            out.push_str(&(t.env)(name).ok_or_else(|| format!("the environment variable {name} is not set"))?)
        } else if let Some(name) = expr.strip_prefix("variables.") {
            match variable(name, t)? {
                Value::String(text) => out.push_str(&text),
                other => out.push_str(&other.to_string()),
            }
        } else {
            return Err(format!(
                "'{{{{ {expr} }}}}' is not something Headwater can fill in here \
                 (supported: {{{{ env.NAME }}}} and {{{{ variables.NAME }}}})"
            ));
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc()
    }

    /// No manifest crashes the parser: mutated copies of a full one are
    /// refused with a message or read (robustness, not meaning).
    #[test]
    fn no_mutated_manifest_crashes_the_parser() {
        let full = json!({"deployments": [{
            "name": "taxi", "flow": "etl", "entrypoint": "./etl run", "tags": ["taxi"],
            "parameters": {"color": "yellow", "year": 2021},
            "work_pool": {"name": "local", "queue": "high"},
            "schedules": [{"cron": "0 5 1 * *", "timezone": "America/New_York"}, {"interval": "1h"},
                          {"rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"}],
            "concurrency_limit": {"limit": 1, "collision_strategy": "cancel_new"},
            "env": {"PGPASSWORD": "{{ env.TAXI_PG_PASSWORD }}"},
            "pull": [{"set_working_directory": {"directory": "taxi"}}]
        }]})
        .to_string();
        let pieces = ["{", "}", "[", "]", "\"", ",", ":", "null", "-1", "1e999", "{{ env.X }}", "{{", "\"\""];
        let mut m = crate::mutations::Mutator::new(0x3a11_f00d);
        let mut read = 0;
        for _ in 0..3_000 {
            let Ok(doc) = serde_json::from_str::<Value>(&m.mutate_text(&full, &pieces)) else { continue };
            if let Ok(d) = parse_manifest("headwater.yaml", doc, &env(&[("TAXI_PG_PASSWORD", "x")]), now()) {
                read += d.len();
            }
        }
        assert!(read > 0, "some mutations keep a valid manifest");
    }

    /// A deployment given to the API is checked as a manifest's is: what
    /// the parser makes passes, and broken schedules and partitions are
    /// named.
    #[test]
    fn a_deployment_from_elsewhere_is_checked_like_a_manifest() {
        let doc = json!({"deployments": [{
            "name": "taxi", "flow": "etl", "entrypoint": "./etl run",
            "schedules": [{"cron": "0 5 1 * *", "timezone": "America/New_York"}, {"interval": "1h"},
                          {"rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"}],
            "partitions": {"time": {"every": "month", "start": "2019-01"}, "parameters": {"month": "date"}}
        }]});
        let good = parse_manifest("headwater.yaml", doc, &env(&[]), now()).unwrap().remove(0);
        assert_eq!(good.validate(), Ok(()));
        let broken = |edit: &dyn Fn(&mut Deployment)| {
            let mut d = good.clone();
            edit(&mut d);
            d.validate().unwrap_err()
        };
        let e =
            broken(&|d| d.schedules[0].schedule = Schedule::Cron { cron: "0 5 1 *".into(), timezone: "UTC".into() });
        assert!(e.starts_with("schedules[0].schedule:"), "{e}");
        let e = broken(&|d| {
            d.schedules[1].schedule =
                Schedule::Interval { every_ms: 0, anchor: now(), timezone: "America/New_York".into() }
        });
        assert!(e.starts_with("schedules[1].schedule:") && e.contains("at least one second"), "{e}");
        let e = broken(&|d| {
            d.schedules[2].schedule = Schedule::Rrule { rrule: "FREQ=WEEKLY".into(), timezone: "Mars/Base".into() }
        });
        assert!(e.contains("unknown time zone"), "{e}");
        let e = broken(&|d| d.partitions.as_mut().unwrap().time.as_mut().unwrap().start = "2019-1".into());
        assert!(e.contains("partitions.time.start"), "{e}");
    }

    #[test]
    fn a_full_deployment() {
        let doc = json!({"deployments": [{
            "name": "taxi-monthly",
            "flow": "etl-parent-flow",
            "entrypoint": "./target/release/hw-examples etl-parent-flow",
            "description": "NYC taxi, monthly",
            "version": "1.2",
            "tags": ["taxi"],
            "parameters": {"color": "yellow", "year": 2021},
            "work_pool": {"name": "local", "queue": "high"},
            "schedules": [
                {"cron": "0 5 1 * *", "timezone": "America/New_York", "parameters": {"months": [1]}},
                {"interval": "1h", "active": false},
                {"rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"}
            ],
            "concurrency_limit": {"limit": 1, "collision_strategy": "cancel_new"},
            "env": {"PGPASSWORD": "{{ env.TAXI_PG_PASSWORD }}"},
            "pull": [{"git_clone": {"repository": "https://example.invalid/taxi.git", "branch": "main"}},
                     {"set_working_directory": {"directory": "taxi"}}]
        }]});
        let d = parse_manifest("headwater.yaml", doc, &env(&[("TAXI_PG_PASSWORD", "s3cret")]), now()).unwrap();
        let d = &d[0];
        assert_eq!(d.id, deployment_id_for_name("taxi-monthly"));
        assert_eq!(d.entrypoint, ["./target/release/hw-examples", "etl-parent-flow"]);
        assert_eq!(d.work_pool.as_deref(), Some("local"));
        assert_eq!(d.work_queue.as_deref(), Some("high"));
        assert_eq!(d.schedules.len(), 3);
        assert_eq!(d.schedules[0].schedule.timezone(), "America/New_York");
        assert_eq!(d.schedules[0].parameters, json!({"months": [1]}));
        assert!(!d.schedules[1].active);
        assert_eq!(d.concurrency_limit, Some(1));
        assert_eq!(d.collision_strategy, CollisionStrategy::CancelNew);
        assert_eq!(d.env["PGPASSWORD"], "s3cret");
        assert_eq!(d.pull_steps.len(), 2);
        // Ids are stable, so re-applying updates in place.
        let again = parse_manifest(
            "headwater.yaml",
            json!({"deployments": [{"name": "taxi-monthly", "flow": "f", "entrypoint": ["x"], "schedules": [{"cron": "* * * * *"}]}]}),
            &env(&[]),
            now(),
        )
        .unwrap();
        assert_eq!(again[0].id, d.id);
        assert_eq!(again[0].schedules[0].id, d.schedules[0].id);
    }

    fn refused(doc: Value) -> String {
        parse_manifest("headwater.yaml", doc, &env(&[]), now()).unwrap_err().to_string()
    }

    #[test]
    fn variables_fill_in_values_and_text() {
        let vars = |name: &str| match name {
            "taxi_months" => Some(json!([1, 2, 3])),
            "bucket" => Some(json!("taxi-lake")),
            "year" => Some(json!(2021)),
            _ => None,
        };
        let doc = json!({"deployments": [{
            "name": "a", "flow": "f", "entrypoint": "x",
            "parameters": {"months": "{{ variables.taxi_months }}", "year": "{{variables.year}}",
                           "target": "s3://{{ variables.bucket }}/yellow/{{ variables.year }}"}
        }]});
        let env = |_: &str| None;
        let d = parse_manifest_with("headwater.yaml", doc, &Templates { env: &env, variables: &vars }, now()).unwrap();
        assert_eq!(
            d[0].parameters,
            json!({"months": [1, 2, 3], "year": 2021, "target": "s3://taxi-lake/yellow/2021"}),
            "a whole-string template keeps the value's type; inside text it is text"
        );
    }

    #[test]
    fn concurrency_admission() {
        use CollisionStrategy::*;
        assert_eq!(admit(None, Enqueue, 1000), Admission::Start);
        assert_eq!(admit(Some(2), Enqueue, 1), Admission::Start);
        assert_eq!(admit(Some(2), Enqueue, 2), Admission::Wait);
        assert_eq!(admit(Some(2), CancelNew, 2), Admission::Cancel);
        assert_eq!(admit(Some(2), CancelNew, 3), Admission::Cancel);
    }

    #[test]
    fn schedules_become_runs_with_stable_keys() {
        let doc = json!({"deployments": [{
            "name": "every-minute", "flow": "caching", "entrypoint": "x", "parameters": {"n": 5},
            "work_pool": {"name": "local"},
            "schedules": [{"interval": 60, "anchor_date": "2026-01-01T00:00:00Z", "parameters": {"n": 6}},
                          {"cron": "0 * * * *", "active": false}]
        }]});
        let d = parse_manifest("headwater.yaml", doc, &env(&[]), now()).unwrap().remove(0);
        let from = now();
        let to = from + chrono::Duration::minutes(3);
        let mut n = 0u64;
        let mut seed = || {
            n += 1;
            n
        };
        let runs = d.scheduled_runs(from, to, 100, now(), &mut seed);
        assert_eq!(runs.len(), 3, "the paused cron schedule makes none");
        assert!(runs.iter().all(|r| r.parameters == json!({"n": 6}) && r.work_pool.as_deref() == Some("local")));
        assert_eq!(runs[0].state.scheduled_time, Some(from));
        let again = d.scheduled_runs(from, to, 100, now(), &mut seed);
        let keys: Vec<_> = runs.iter().map(|r| r.idempotency_key.clone()).collect();
        assert_eq!(keys, again.iter().map(|r| r.idempotency_key.clone()).collect::<Vec<_>>());
        assert_ne!(runs[0].id, again[0].id);
        let mut paused = d.clone();
        paused.paused = true;
        assert!(paused.scheduled_runs(from, to, 100, now(), &mut seed).is_empty());
        let manual = d.manual_run(&json!({"n": 9}), from, now(), 7);
        assert_eq!(manual.parameters, json!({"n": 9}));
        assert_eq!(manual.idempotency_key, None);
        assert_eq!(manual.state.state_type, crate::StateType::Scheduled);
    }

    #[test]
    fn a_partition_schedule_runs_last_month_once_per_colour() {
        let doc = json!({"deployments": [{
            "name": "taxi-months", "flow": "etl-month", "entrypoint": "x", "parameters": {"lake": "l"},
            "partitions": {
                "time": {"every": "month", "start": "2019-01", "timezone": "America/New_York"},
                "static": {"color": ["yellow", "green"]},
                "parameters": {"color": "color", "year": "year", "month": "month"}
            },
            "schedules": [{"cron": "0 5 2 * *", "timezone": "America/New_York", "partition": "latest"}]
        }]});
        let d = parse_manifest("headwater.yaml", doc.clone(), &env(&[]), now()).unwrap().remove(0);
        let from = DateTime::parse_from_rfc3339("2021-03-01T00:00:00Z").unwrap().to_utc();
        let to = from + chrono::Duration::days(3);
        let mut seed = || 1;
        let runs = d.scheduled_runs(from, to, 10, now(), &mut seed);
        let got: Vec<_> = runs.iter().map(|r| (r.partition.clone().unwrap(), r.parameters.clone())).collect();
        assert_eq!(
            got,
            [
                (
                    "color=yellow/month=2021-02".to_string(),
                    json!({"lake": "l", "color": "yellow", "year": 2021, "month": 2})
                ),
                (
                    "color=green/month=2021-02".to_string(),
                    json!({"lake": "l", "color": "green", "year": 2021, "month": 2})
                ),
            ]
        );
        assert_ne!(runs[0].idempotency_key, runs[1].idempotency_key, "one key per partition");
        // Done or in flight: no run (unless it says to run it again).
        let status = |k: &str| match k {
            "color=yellow/month=2021-02" => PartitionStatus::Completed,
            _ => PartitionStatus::InFlight,
        };
        assert!(d.scheduled_runs_with(from, to, 10, now(), &mut seed, &status).is_empty());
        let mut again = doc;
        again["deployments"][0]["schedules"][0]["when_done"] = json!("run");
        let d = parse_manifest("headwater.yaml", again, &env(&[]), now()).unwrap().remove(0);
        let runs = d.scheduled_runs_with(from, to, 10, now(), &mut seed, &status);
        assert_eq!(
            runs.iter().map(|r| r.partition.clone().unwrap()).collect::<Vec<_>>(),
            ["color=yellow/month=2021-02"]
        );
        let e = refused(json!({"deployments": [{
            "name": "a", "flow": "f", "entrypoint": "x", "schedules": [{"cron": "0 5 2 * *", "partition": "latest"}]
        }]}));
        assert!(
            e.ends_with("schedules[0].partition: the deployment declares no time partitions (`partitions.time`)"),
            "{e}"
        );
    }

    #[test]
    fn errors_point_at_the_file_deployment_and_field() {
        let e = refused(
            json!({"deployments": [{"name": "a", "flow": "f", "entrypoint": "x", "schedules": [{"cron": "0 5 1 *"}]}]}),
        );
        assert!(e.starts_with("headwater.yaml: deployments[0] (a).schedules[0]: invalid schedule '0 5 1 *'"), "{e}");
        let e = refused(
            json!({"deployments": [{"name": "a", "flow": "f", "entrypoint": "x", "schedules": [{"cron": "* * * * *", "interval": 5}]}]}),
        );
        assert!(e.ends_with("give exactly one of cron, interval or rrule"), "{e}");
        let e = refused(
            json!({"deployments": [{"name": "a", "flow": "f", "entrypoint": "x", "schedules": [{"interval": "5 parsecs"}]}]}),
        );
        assert!(e.contains("schedules[0].interval") && e.contains("unknown unit"), "{e}");
        let e = refused(
            json!({"deployments": [{"name": "a", "flow": "f", "entrypoint": "x", "env": {"K": "{{ env.NOPE }}"}}]}),
        );
        assert_eq!(e, "headwater.yaml: deployments[0].env.K: the environment variable NOPE is not set");
        let e = refused(json!({"deployments": [{"name": "a", "flow": "f", "entrypoint": "x", "schedule": []}]}));
        assert!(
            e.starts_with("headwater.yaml: deployments[0].schedule: unknown field `schedule`, expected one of"),
            "{e}"
        );
        let e = refused(json!({"deployments": [{"name": "a", "entrypoint": "x"}]}));
        assert!(e.contains("missing field `flow`"), "{e}");
        let e = refused(
            json!({"deployments": [{"name": "a", "flow": "f", "entrypoint": "x"}, {"name": "a", "flow": "g", "entrypoint": "y"}]}),
        );
        assert!(e.ends_with("the name 'a' is used twice"), "{e}");
        let e =
            refused(json!({"deployments": [{"name": "a", "flow": "f", "entrypoint": "x", "concurrency_limit": 0}]}));
        assert!(e.contains("concurrency_limit"), "{e}");
        let e = refused(json!({"deployments": [{"name": "a", "flow": "f", "entrypoint": "{{ variables.x }}"}]}));
        assert!(e.contains("no variable named 'x'"), "{e}");
        let e = refused(json!({"deployments": [{"name": "a", "flow": "f", "entrypoint": "{{ blocks.x }}"}]}));
        assert!(e.contains("supported: {{ env.NAME }} and {{ variables.NAME }}"), "{e}");
    }

    #[test]
    fn datasets_declare_their_freshness_and_bad_ones_name_the_field() {
        let doc = json!({"datasets": [{"name": "yellow_trips",
            "time": {"every": "month", "start": "2019-01", "timezone": "America/New_York"},
            "freshness": {"within": "2d 9h"}}]});
        let got = parse_datasets("headwater.yaml", &doc).unwrap();
        assert_eq!(got[0].name, "yellow_trips");
        assert_eq!(got[0].policy().freshness.within.0, 2 * 86_400 + 9 * 3_600);
        // The deployments part of the file does not mind them.
        assert!(parse_manifest("headwater.yaml", doc, &|_| None, Utc::now()).unwrap().is_empty());
        let bad = json!({"datasets": [{"name": "yellow_trips",
            "time": {"every": "month", "start": "2019-01", "timezone": "Mars/Olympus"},
            "freshness": {"within": "2d"}}]});
        let e = parse_datasets("headwater.yaml", &bad).unwrap_err();
        assert_eq!(e.location, "datasets[0] (yellow_trips).time.timezone", "{e}");
        let unknown = json!({"datasets": [{"name": "y", "time": {"every": "month", "start": "2019-01"},
            "freshness": {"within": "2d"}, "fresh": true}]});
        assert!(parse_datasets("headwater.yaml", &unknown).unwrap_err().reason.contains("fresh"));
    }
}
