//! The automation engine: notices what automations watch for and carries
//! out their actions, reliably.
//!
//! Each [`Engine::tick`] reads the flow-run state history from where the
//! last one stopped (a cursor kept in the store), checks the clock-driven
//! triggers (SLAs, offline pools and workers, deployments without success,
//! stale partitions),
//! and writes one outbox row per (automation, event, action). Rows are
//! unique on that key, so an event seen twice (a restart, an overlap) is
//! delivered once. Due rows are then claimed under a lease and carried
//! out; failures are retried with backoff for a day and their errors kept
//! for `headwater automation ls`.

mod actions;
mod notify;
mod templates;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use headwater_core::automation::next_delivery_attempt;
use headwater_core::partition::DatasetPolicy;
use headwater_core::{
    Automation, AutomationEvent, Delivery, DeliveryOutcome, Deployment, FlowRun, State, StateType, Trigger,
};
use headwater_store::backfills::{newly_stale, BackfillError};
use headwater_store::freshness::{newly_late, FreshnessError};
use headwater_store::{AutomationOutbox, Cursor, FlowRunFilter, Store, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use templates::check_templates;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this store has no automation outbox (automations run where the database is: the server)")]
    NoOutbox,
}

/// Checks an automation as the API and the CLI accept it: its fields and
/// its templates.
pub fn check(automation: &Automation) -> Result<(), String> {
    automation.validate()?;
    check_templates(automation)
}

#[derive(Clone)]
pub struct EngineConfig {
    /// Where the web UI is, for links in messages (`{ui_url}/runs/{id}`).
    pub ui_url: String,
    /// How often clock-driven triggers are checked.
    pub periodic_every: Duration,
    /// How long a claimed delivery is kept from others while it is tried.
    pub lease: Duration,
    /// Called when an action created runs (the server wakes its workers).
    pub on_runs_created: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ui_url: "http://127.0.0.1:4200".into(),
            periodic_every: Duration::from_secs(5),
            lease: Duration::from_secs(120),
            on_runs_created: None,
        }
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub events: usize,
    pub enqueued: usize,
    pub delivered: usize,
    pub retried: usize,
    pub failed: usize,
}

const CURSOR: &str = "automations:flow-run-states";
/// PostgreSQL hands out sequence numbers before commit, so a transaction
/// may commit a state record below one already read; each read reaches
/// back this far and skips what was seen.
const OVERLAP: i64 = 256;
const PAGE: u32 = 500;
/// Finished deliveries are kept this long (their keys are what stop an
/// event from firing twice; events are not seen again after this).
const KEEP_DELIVERIES: Duration = Duration::from_secs(30 * 86_400);
/// How far back a freshness check looks for deadlines that passed: less
/// than [`KEEP_DELIVERIES`], so a stale partition's event, once delivered,
/// is still remembered while its deadline is looked at.
const STALE_LOOKBACK: Duration = Duration::from_secs(25 * 86_400);

pub struct Engine {
    store: Arc<dyn Store>,
    config: EngineConfig,
    http: reqwest::Client,
    seen: BTreeSet<i64>,
    last_periodic: Option<tokio::time::Instant>,
    last_prune: Option<tokio::time::Instant>,
    /// When each live run was due, from its history (read once per run).
    expected_start: HashMap<Uuid, DateTime<Utc>>,
    /// Up to when each `dataset-stale` automation has looked at deadlines:
    /// each deadline is looked at once (a restart looks again; the outbox's
    /// keys keep that from firing twice).
    stale_checked: HashMap<Uuid, DateTime<Utc>>,
    stale_pending: HashMap<Uuid, DateTime<Utc>>,
    /// The datasets' policies and changed sources, read again at most every
    /// [`POLICIES_EVERY`], not on every pass (each read lists every
    /// dataset's partitions).
    dataset_look: Option<DatasetLook>,
    /// The look each `dataset-stale` automation last took its source
    /// changes from (they are sent once per look, not on every pass).
    source_looked: HashMap<Uuid, DateTime<Utc>>,
}

/// What the datasets were like at `at`: their freshness policies, and the
/// current versions whose source changed on the web.
#[derive(Clone)]
struct DatasetLook {
    at: DateTime<Utc>,
    policies: Vec<(String, DatasetPolicy)>,
    changed: Vec<headwater_core::DatasetVersion>,
}

/// How long the datasets' policies are used before they are read again: a
/// new or changed policy counts within this long (its deadlines are not
/// missed, only noticed later).
const POLICIES_EVERY: chrono::Duration = chrono::Duration::minutes(1);

impl Engine {
    pub fn new(store: Arc<dyn Store>, config: EngineConfig) -> Engine {
        install_tls();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("headwater/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Engine {
            store,
            config,
            http,
            seen: BTreeSet::new(),
            last_periodic: None,
            last_prune: None,
            expected_start: HashMap::new(),
            stale_checked: HashMap::new(),
            stale_pending: HashMap::new(),
            dataset_look: None,
            source_looked: HashMap::new(),
        }
    }

    fn outbox(&self) -> Result<&dyn AutomationOutbox, EngineError> {
        self.store.outbox().ok_or(EngineError::NoOutbox)
    }

    /// Runs ticks every `every` until `stop`; errors are logged, not fatal
    /// (a database that is briefly away pauses the engine).
    pub async fn run(mut self, every: Duration, stop: CancellationToken) {
        loop {
            match self.tick().await {
                Ok(t) if t.enqueued + t.delivered + t.failed + t.retried > 0 => tracing::debug!(?t, "automations"),
                Ok(_) => {}
                Err(e) => tracing::error!("automations: {e}"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Notices new events, then carries out what is due.
    pub async fn tick(&mut self) -> Result<Tick, EngineError> {
        self.tick_at(Utc::now()).await
    }

    /// A tick whose clock-driven triggers are checked as of `now` (tests
    /// move the clock past a deadline this way).
    pub async fn tick_at(&mut self, now: DateTime<Utc>) -> Result<Tick, EngineError> {
        let mut tick = Tick::default();
        let automations = self.outbox()?.active_automations().await?;
        // Nothing to match against: the events are still read, to move on.
        let deployments = if automations.is_empty() { Vec::new() } else { self.store.list_deployments().await? };
        let mut deliveries = self.state_events(&automations, &deployments, &mut tick).await?;
        let periodic_due = self.last_periodic.is_none_or(|t| t.elapsed() >= self.config.periodic_every);
        if periodic_due && automations.iter().any(|a| !matches!(a.trigger, Trigger::FlowRunState { .. })) {
            self.last_periodic = Some(tokio::time::Instant::now());
            for a in &automations {
                for event in self.clock_events(a, &deployments, now).await? {
                    deliveries.extend(Delivery::for_event(a, &event, now));
                }
            }
        }
        tick.enqueued = self.outbox()?.enqueue_deliveries(&deliveries).await?;
        let looked = std::mem::take(&mut self.stale_pending);
        self.stale_checked.extend(looked);
        self.deliver(&mut tick).await?;
        if self.last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            self.last_prune = Some(tokio::time::Instant::now());
            let before = now - chrono::Duration::from_std(KEEP_DELIVERIES).unwrap_or(chrono::Duration::MAX);
            let pruned = self.outbox()?.prune_deliveries(before).await?;
            if pruned > 0 {
                tracing::info!("automations: removed {pruned} finished deliveries older than 30 days");
            }
        }
        Ok(tick)
    }

    /// Flow runs that entered a state since the last tick.
    async fn state_events(
        &mut self,
        automations: &[Automation],
        deployments: &[Deployment],
        tick: &mut Tick,
    ) -> Result<Vec<Delivery>, EngineError> {
        let outbox = self.store.outbox().ok_or(EngineError::NoOutbox)?;
        let mut cursor = match outbox.read_cursor(CURSOR).await? {
            Some(c) => c,
            None => {
                // A new engine starts from now: history is not replayed.
                let last = outbox.last_state_event().await?;
                outbox.write_cursor(CURSOR, last).await?;
                last
            }
        };
        let mut out = Vec::new();
        let mut runs: HashMap<Uuid, Option<FlowRun>> = HashMap::new();
        let mut from = (cursor - OVERLAP).max(0);
        loop {
            let page = outbox.read_state_events(from, PAGE).await?;
            let Some(last) = page.last().map(|e| e.0) else { break };
            for (seq, record) in page {
                if seq <= cursor && self.seen.contains(&seq) {
                    continue;
                }
                self.seen.insert(seq);
                tick.events += 1;
                let fired: Vec<&Automation> = automations
                    .iter()
                    .filter(|a| a.matches_state(&record.state) && record.state.timestamp >= a.created)
                    .collect();
                if fired.is_empty() {
                    continue;
                }
                let run = match runs.get(&record.run_id) {
                    Some(known) => known.clone(),
                    None => {
                        let run = self.store.read_flow_run(record.run_id).await?;
                        runs.insert(record.run_id, run.clone());
                        run
                    }
                };
                let Some(run) = run else { continue };
                let deployment = deployment_name(deployments, &run);
                for a in fired.into_iter().filter(|a| a.matches_run(&run, deployment)) {
                    let event = state_event(seq, &run, &record.state, deployment);
                    out.extend(Delivery::for_event(a, &event, Utc::now()));
                }
            }
            cursor = cursor.max(last);
            from = last;
        }
        outbox.write_cursor(CURSOR, cursor).await?;
        // Only the overlap needs remembering.
        self.seen = self.seen.split_off(&(cursor - OVERLAP));
        Ok(out)
    }

    /// The events of a clock-driven trigger as of `now`.
    async fn clock_events(
        &mut self,
        a: &Automation,
        deployments: &[Deployment],
        now: DateTime<Utc>,
    ) -> Result<Vec<AutomationEvent>, EngineError> {
        let mut events = Vec::new();
        match &a.trigger {
            Trigger::FlowRunState { .. } => {}
            Trigger::FlowRunSla { after, .. } => {
                let live = [StateType::Scheduled, StateType::Pending, StateType::Running, StateType::Paused];
                let filter = FlowRunFilter {
                    states: live.into_iter().chain([StateType::Cancelling]).collect(),
                    // Runs created since cannot be overdue yet.
                    before: Some(Cursor { created: now - after.duration(), id: Uuid::max() }),
                    limit: 1000,
                    ..Default::default()
                };
                let candidates = self.store.list_flow_runs(&filter).await?;
                let listed: BTreeSet<Uuid> = candidates.iter().map(|r| r.id).collect();
                // Runs that finished need no due time any more.
                self.expected_start.retain(|id, _| listed.contains(id));
                for run in candidates {
                    let due = self.expected_start(&run).await?;
                    let overdue = now - due;
                    if overdue < after.duration() {
                        continue;
                    }
                    let deployment = deployment_name(deployments, &run);
                    if !a.matches_run(&run, deployment) {
                        continue;
                    }
                    events.push(AutomationEvent {
                        kind: "flow-run-sla".into(),
                        key: format!("sla:{}", run.id),
                        occurred: now,
                        summary: format!(
                            "Flow run '{}' of '{}' is still {} {} after it was due (SLA: {})",
                            run.name,
                            run.flow_name,
                            run.state.name,
                            words(overdue),
                            words(after.duration())
                        ),
                        state: Some(run.state.clone()),
                        deployment: deployment.map(str::to_string),
                        work_pool: run.work_pool.clone(),
                        worker: None,
                        partition: None,
                        dataset: None,
                        flow_run: Some(run),
                    });
                }
            }
            Trigger::WorkPoolOffline { work_pools, after } | Trigger::WorkerOffline { work_pools, after } => {
                let per_worker = matches!(a.trigger, Trigger::WorkerOffline { .. });
                let workers = self.store.list_workers(None).await?;
                let mut last_seen: HashMap<(String, Option<String>), DateTime<Utc>> = HashMap::new();
                for w in workers.iter().filter(|w| work_pools.is_empty() || work_pools.contains(&w.work_pool)) {
                    let key = (w.work_pool.clone(), per_worker.then(|| w.name.clone()));
                    let e = last_seen.entry(key).or_insert(w.last_heartbeat);
                    *e = (*e).max(w.last_heartbeat);
                }
                for ((pool, worker), last) in last_seen {
                    // Offline now, and it was online since the automation exists.
                    if now - last < after.duration() || last + after.duration() < a.created {
                        continue;
                    }
                    let (kind, what) = match &worker {
                        Some(w) => ("worker-offline", format!("Worker '{w}' of work pool '{pool}'")),
                        None => ("work-pool-offline", format!("Work pool '{pool}'")),
                    };
                    events.push(AutomationEvent {
                        kind: kind.into(),
                        key: format!("{kind}:{pool}:{}:{}", worker.as_deref().unwrap_or(""), last.timestamp_micros()),
                        occurred: now,
                        summary: format!("{what} is offline: no heartbeat for {}", words(now - last)),
                        flow_run: None,
                        state: None,
                        deployment: None,
                        work_pool: Some(pool),
                        worker,
                        partition: None,
                        dataset: None,
                    });
                }
            }
            Trigger::DatasetStale { deployments: names, datasets: dataset_names } => {
                let every = names.is_empty() && dataset_names.is_empty();
                // Deadlines that passed while the automation existed, and
                // recently enough that their deliveries are still kept
                // (older ones have fired, or passed before it was made).
                let lookback = now - chrono::Duration::from_std(STALE_LOOKBACK).unwrap_or_default();
                let since = [Some(a.created), Some(lookback), self.stale_checked.get(&a.id).copied()]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(lookback);
                for d in deployments.iter().filter(|d| every || names.contains(&d.name)) {
                    let stale = match newly_stale(self.store.as_ref(), d, since, now).await {
                        Ok(s) => s,
                        Err(BackfillError::Store(e)) => return Err(e.into()),
                        Err(e) => {
                            tracing::warn!("automation '{}': deployment '{}': {e}", a.name, d.name);
                            continue;
                        }
                    };
                    for p in stale {
                        let said = match &p.latest {
                            Some(r) => format!("its latest run '{}' is {}", r.name, r.state.name),
                            None => "it has never run".to_string(),
                        };
                        events.push(AutomationEvent {
                            kind: "dataset-stale".into(),
                            key: format!("stale:{}:{}:{}", d.name, p.partition, p.due.timestamp()),
                            occurred: now,
                            summary: format!(
                                "Partition {} of deployment '{}' is stale: it was due by {} ({said})",
                                p.partition,
                                d.name,
                                p.due.format("%Y-%m-%d %H:%M UTC")
                            ),
                            state: p.latest.as_ref().map(|r| r.state.clone()),
                            flow_run: p.latest,
                            deployment: Some(d.name.clone()),
                            work_pool: d.work_pool.clone(),
                            worker: None,
                            partition: Some(p.partition),
                            dataset: None,
                        });
                    }
                }
                let fresh = self.dataset_look.as_ref().is_some_and(|l| now - l.at < POLICIES_EVERY && l.at <= now);
                // A trigger naming deployments only needs no look at datasets.
                if !fresh && (every || !dataset_names.is_empty()) {
                    let mut look = DatasetLook { at: now, policies: Vec::new(), changed: Vec::new() };
                    for d in self.store.list_datasets().await? {
                        let versions = self.store.list_partitions(&d.name).await?;
                        look.changed.extend(versions.into_iter().filter(|v| v.source_changed()));
                        look.policies.extend(d.policy.map(|p| (d.name, p)));
                    }
                    self.dataset_look = Some(look);
                }
                let look = match &self.dataset_look {
                    Some(l) if every || !dataset_names.is_empty() => l.clone(),
                    _ => DatasetLook { at: now, policies: Vec::new(), changed: Vec::new() },
                };
                let watched = |name: &str| every || dataset_names.iter().any(|n| n == name);
                // Source changes seen since the automation was made (and
                // within the look-back), once per look: the outbox's keys
                // keep each version's from firing twice.
                if self.source_looked.insert(a.id, look.at) != Some(look.at) {
                    for v in look.changed.iter().filter(|v| watched(&v.dataset)) {
                        let Some(check) = v.source_check.as_ref().filter(|c| c.checked >= a.created.max(lookback))
                        else {
                            continue;
                        };
                        let url = v.source.as_ref().map(|s| s.url.as_str()).unwrap_or("its source");
                        events.push(AutomationEvent {
                            kind: "dataset-stale".into(),
                            key: format!("stale:source:{}:{}:{}", v.dataset, v.partition, v.version),
                            occurred: now,
                            summary: format!(
                                "Partition {} of dataset '{}' is stale: {url} changed on the web since version {} was made from it (seen {})",
                                v.partition,
                                v.dataset,
                                v.version,
                                check.checked.format("%Y-%m-%d %H:%M UTC")
                            ),
                            state: None,
                            flow_run: None,
                            deployment: None,
                            work_pool: None,
                            worker: None,
                            partition: Some(v.partition.clone()),
                            dataset: Some(v.dataset.clone()),
                        });
                    }
                }
                for (name, policy) in look.policies.iter().filter(|(n, _)| watched(n)) {
                    let late = match newly_late(self.store.as_ref(), name, policy, since, now).await {
                        Ok(l) => l,
                        Err(FreshnessError::Store(e)) => return Err(e.into()),
                        Err(e) => {
                            tracing::warn!("automation '{}': dataset '{name}': {e}", a.name);
                            continue;
                        }
                    };
                    for p in late {
                        events.push(AutomationEvent {
                            kind: "dataset-stale".into(),
                            key: format!("stale:dataset:{name}:{}:{}", p.partition, p.due.timestamp()),
                            occurred: now,
                            summary: format!(
                                "Partition {} of dataset '{}' is stale: it was due by {} and has not been written",
                                p.partition,
                                name,
                                p.due.format("%Y-%m-%d %H:%M UTC")
                            ),
                            state: None,
                            flow_run: None,
                            deployment: None,
                            work_pool: None,
                            worker: None,
                            partition: Some(p.partition),
                            dataset: Some(name.clone()),
                        });
                    }
                }
                // Kept once the events are in the outbox (see `tick_at`).
                self.stale_pending.insert(a.id, now);
            }
            Trigger::DeploymentNoSuccess { deployments: names, within } => {
                for d in deployments.iter().filter(|d| names.is_empty() || names.contains(&d.name)) {
                    let filter = FlowRunFilter {
                        states: vec![StateType::Completed],
                        deployment_id: Some(d.id),
                        limit: 1,
                        ..Default::default()
                    };
                    let last_success =
                        self.store.list_flow_runs(&filter).await?.into_iter().next().and_then(|r| r.end_time);
                    let since = [Some(d.created), Some(a.created), last_success].into_iter().flatten().max();
                    let Some(since) = since else { continue };
                    if now - since < within.duration() {
                        continue;
                    }
                    let said = match last_success {
                        Some(t) => format!("its last successful run ended {} ago", words(now - t)),
                        None => "it has never completed a run".to_string(),
                    };
                    events.push(AutomationEvent {
                        kind: "deployment-no-success".into(),
                        key: format!("no-success:{}:{}", d.name, since.timestamp_micros()),
                        occurred: now,
                        summary: format!(
                            "Deployment '{}' has had no successful run for {} ({said})",
                            d.name,
                            words(within.duration())
                        ),
                        flow_run: None,
                        state: None,
                        deployment: Some(d.name.clone()),
                        work_pool: d.work_pool.clone(),
                        worker: None,
                        partition: None,
                        dataset: None,
                    });
                }
            }
        }
        Ok(events)
    }

    /// When a run was meant to start: its scheduled time, kept in its
    /// history once it has moved on.
    async fn expected_start(&mut self, run: &FlowRun) -> Result<DateTime<Utc>, EngineError> {
        if run.state.state_type == StateType::Scheduled {
            if let Some(t) = run.state.scheduled_time {
                return Ok(t);
            }
        }
        if let Some(t) = self.expected_start.get(&run.id) {
            return Ok(*t);
        }
        let history = self.store.read_states(run.id).await?;
        let t = history
            .iter()
            .find(|s| s.state.state_type == StateType::Scheduled)
            .and_then(|s| s.state.scheduled_time)
            .unwrap_or(run.created);
        self.expected_start.insert(run.id, t);
        Ok(t)
    }

    /// Claims due deliveries and carries them out.
    async fn deliver(&mut self, tick: &mut Tick) -> Result<(), EngineError> {
        loop {
            let now = Utc::now();
            let claimed = self.outbox()?.claim_deliveries(now, self.config.lease, 20).await?;
            if claimed.is_empty() {
                return Ok(());
            }
            // Carried out together: one slow receiver does not hold up the rest.
            let this: &Engine = self;
            let results = futures::future::join_all(claimed.iter().map(|d| actions::perform(this, d))).await;
            for (d, result) in claimed.into_iter().zip(results) {
                let outcome = match result {
                    Ok(()) => DeliveryOutcome::Delivered { at: Utc::now() },
                    Err(e) => {
                        let attempts = d.attempts + 1;
                        match (e.retry, next_delivery_attempt(d.created, attempts, Utc::now(), e.retry_after)) {
                            (true, Some(at)) => DeliveryOutcome::Retry { at, error: e.message },
                            (true, None) => DeliveryOutcome::Failed {
                                error: format!("{} (given up after {attempts} attempts)", e.message),
                            },
                            (false, _) => DeliveryOutcome::Failed { error: e.message },
                        }
                    }
                };
                let counted = match &outcome {
                    DeliveryOutcome::Delivered { .. } => "delivered",
                    DeliveryOutcome::Retry { .. } => "retried",
                    DeliveryOutcome::Failed { .. } => "failed",
                };
                metrics::counter!("headwater_outbox_attempts_total", "outcome" => counted).increment(1);
                match &outcome {
                    DeliveryOutcome::Delivered { .. } => tick.delivered += 1,
                    DeliveryOutcome::Retry { error, at } => {
                        tick.retried += 1;
                        tracing::warn!(
                            "automation '{}': {} failed, retrying at {at}: {error}",
                            d.automation,
                            d.action.kind()
                        );
                    }
                    DeliveryOutcome::Failed { error } => {
                        tick.failed += 1;
                        tracing::error!("automation '{}': {} failed: {error}", d.automation, d.action.kind());
                    }
                }
                self.outbox()?.finish_delivery(d.id, &outcome).await?;
            }
        }
    }
}

/// Webhooks are HTTPS and reqwest is built without a default crypto
/// provider: the same one the API client installs (a second install is a
/// no-op).
fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn deployment_name<'a>(deployments: &'a [Deployment], run: &FlowRun) -> Option<&'a str> {
    let id = run.deployment_id?;
    deployments.iter().find(|d| d.id == id).map(|d| d.name.as_str())
}

fn state_event(seq: i64, run: &FlowRun, state: &State, deployment: Option<&str>) -> AutomationEvent {
    let mut run = run.clone();
    // The run as it was when it entered the state.
    run.state = state.clone();
    let message = state.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
    AutomationEvent {
        kind: "flow-run-state".into(),
        key: format!("state:{seq}"),
        occurred: state.timestamp,
        summary: format!("Flow run '{}' of '{}' entered {}{message}", run.name, run.flow_name, state.name),
        state: Some(state.clone()),
        deployment: deployment.map(str::to_string),
        work_pool: run.work_pool.clone(),
        worker: None,
        partition: None,
        dataset: None,
        flow_run: Some(run),
    }
}

/// "5m 3s", "2h 10m", "3d 4h".
fn words(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) if secs == 0 => format!("{mins}m"),
        (0, 0, _) => format!("{mins}m {secs}s"),
        (0, _, 0) => format!("{hours}h"),
        (0, _, _) => format!("{hours}h {mins}m"),
        (_, 0, _) => format!("{days}d"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        let w = |s| words(chrono::Duration::seconds(s));
        assert_eq!(w(42), "42s");
        assert_eq!(w(600), "10m");
        assert_eq!(w(303), "5m 3s");
        assert_eq!(w(7800), "2h 10m");
        assert_eq!(w(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
    }
}

#[cfg(test)]
mod engine_tests;
