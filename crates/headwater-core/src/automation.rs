//! Automations: a trigger and the actions it sets off.
//!
//! Everything here is pure: what an automation is, how it is checked, which
//! runs a trigger matches, what an event carries and how deliveries are
//! retried. Watching the store and calling webhooks happens elsewhere (the
//! `headwater-automations` crate); its outbox rows are [`Delivery`]s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::duration::parse_duration;
use crate::model::FlowRun;
use crate::state::{State, StateType};

/// A length of time, written `10m`, `1h30m` or as seconds; kept in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn duration(self) -> chrono::Duration {
        chrono::Duration::seconds(self.0 as i64)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        let secs = match Raw::deserialize(d)? {
            Raw::Number(n) if n.is_finite() && n >= 0.0 => n,
            Raw::Number(n) => return Err(serde::de::Error::custom(format!("{n} is not a length of time"))),
            Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom)?.as_secs_f64(),
        };
        Ok(Seconds(secs.ceil() as u64))
    }
}

/// What sets an automation off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Trigger {
    /// A flow run enters one of `states` (a state type such as `FAILED` or
    /// a name such as `Late` or `TimedOut`; case does not matter).
    FlowRunState {
        states: Vec<String>,
        /// Only runs of these flows (empty: any).
        #[serde(default)]
        flows: Vec<String>,
        #[serde(default)]
        deployments: Vec<String>,
        /// Only runs with at least one of these tags.
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        work_pools: Vec<String>,
    },
    /// A flow run is not finished `after` its scheduled start (an SLA).
    FlowRunSla {
        #[schema(value_type = u64, minimum = 1)]
        after: Seconds,
        #[serde(default)]
        flows: Vec<String>,
        #[serde(default)]
        deployments: Vec<String>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        work_pools: Vec<String>,
    },
    /// No worker of a pool has been heard from for `after`: the pool is
    /// offline (once per outage).
    WorkPoolOffline {
        #[serde(default)]
        work_pools: Vec<String>,
        #[serde(default = "default_offline_after")]
        #[schema(value_type = u64, minimum = 1)]
        after: Seconds,
    },
    /// One worker has not been heard from for `after` (once per outage).
    WorkerOffline {
        #[serde(default)]
        work_pools: Vec<String>,
        #[serde(default = "default_offline_after")]
        #[schema(value_type = u64, minimum = 1)]
        after: Seconds,
    },
    /// A deployment has had no COMPLETED run for `within` (once per dry spell).
    DeploymentNoSuccess {
        #[serde(default)]
        deployments: Vec<String>,
        #[schema(value_type = u64, minimum = 1)]
        within: Seconds,
    },
    /// A partition is stale: a deployment's partition (`partitions.freshness`)
    /// passed its deadline without a completed run, a dataset's partition
    /// (`datasets:`) passed its deadline unwritten (once per partition and
    /// deadline), or a dataset version's source changed on the web (once
    /// per version).
    DatasetStale {
        /// Only these deployments; with `datasets` also empty, every
        /// deployment and dataset with a freshness policy.
        #[serde(default)]
        deployments: Vec<String>,
        /// Only these datasets (their policy from `datasets:` in
        /// headwater.yaml).
        #[serde(default)]
        datasets: Vec<String>,
    },
}

fn default_offline_after() -> Seconds {
    Seconds(60)
}

/// What an automation does when its trigger fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Sends a message through a notification block (slack-webhook,
    /// ms-teams-webhook, webhook, smtp-server). `subject` and `body` are
    /// minijinja templates over the event (`flow_run`, `flow`,
    /// `deployment`, `state`, `event`, `automation`); defaults say what
    /// happened with a link to the run.
    Notify {
        block: String,
        #[serde(default)]
        subject: Option<String>,
        #[serde(default)]
        body: Option<String>,
        /// Recipients, for email blocks (default: the block's).
        #[serde(default)]
        to: Vec<String>,
    },
    /// Starts a run of a deployment (default: the event's), with these
    /// parameters over the deployment's.
    RunDeployment {
        #[serde(default)]
        deployment: Option<String>,
        #[serde(default)]
        #[schema(value_type = Object)]
        parameters: serde_json::Map<String, Value>,
    },
    /// Cancels the flow run the event is about.
    CancelRun,
    /// Pauses the flow run the event is about (one not started yet).
    PauseRun,
    /// Pauses a deployment's schedules (default: the event's deployment).
    PauseSchedule {
        #[serde(default)]
        deployment: Option<String>,
    },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Notify { .. } => "notify",
            Action::RunDeployment { .. } => "run-deployment",
            Action::CancelRun => "cancel-run",
            Action::PauseRun => "pause-run",
            Action::PauseSchedule { .. } => "pause-schedule",
        }
    }
}

/// How an automation's deliveries went (computed by the store).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AutomationStatus {
    pub delivered: u64,
    /// Waiting for their first attempt or for a retry.
    pub pending: u64,
    /// Given up on.
    pub failed: u64,
    pub last_delivered: Option<DateTime<Utc>>,
    /// The error of the most recent failed attempt (a later delivery may
    /// have gone through: compare the times).
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Automation {
    /// Derived from the name (see [`automation_id_for_name`]).
    #[serde(default)]
    pub id: Uuid,
    /// One word (`names::ONE_WORD_PATTERN`).
    #[schema(pattern = r"^[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$")]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A paused automation notices nothing (events while paused are not
    /// caught up later).
    #[serde(default = "yes")]
    pub enabled: bool,
    pub trigger: Trigger,
    #[schema(min_items = 1)]
    pub actions: Vec<Action>,
    #[serde(default = "epoch")]
    pub created: DateTime<Utc>,
    #[serde(default = "epoch")]
    pub updated: DateTime<Utc>,
    /// Filled in by the store when read; ignored when saved.
    #[serde(default)]
    pub status: AutomationStatus,
}

fn yes() -> bool {
    true
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// Automation ids come from the name, so applying a file twice updates.
pub fn automation_id_for_name(name: &str) -> Uuid {
    crate::deployment::deployment_id_for_name(&format!("automation:{name}"))
}

/// State names Headwater gives runs, beside the state types.
pub const KNOWN_STATE_NAMES: &[&str] = &[
    "Late",
    "AwaitingRetry",
    "AwaitingConcurrencySlot",
    "Retrying",
    "Cached",
    "TimedOut",
    "Scheduled",
    "Pending",
    "Running",
    "Completed",
    "Failed",
    "Cancelled",
    "Crashed",
    "Paused",
    "Cancelling",
];

impl Automation {
    /// Checks what can be checked without the store; errors name the field
    /// (`trigger.states[1]`, `actions[0].block`).
    pub fn validate(&self) -> Result<(), String> {
        if !crate::names::is_one_word(&self.name) {
            return Err("name: an automation name is one word, e.g. notify-failures".into());
        }
        match &self.trigger {
            Trigger::FlowRunState { states, .. } => {
                if states.is_empty() {
                    return Err("trigger.states: name at least one state, e.g. [Failed, Crashed]".into());
                }
                for (i, s) in states.iter().enumerate() {
                    let known =
                        s.parse::<StateType>().is_ok() || KNOWN_STATE_NAMES.iter().any(|n| n.eq_ignore_ascii_case(s));
                    if !known {
                        return Err(format!(
                            "trigger.states[{i}]: unknown state '{s}' (expected a state type such as FAILED or a \
                             name among {})",
                            KNOWN_STATE_NAMES.join(", ")
                        ));
                    }
                }
            }
            Trigger::FlowRunSla { after, .. } if after.0 == 0 => {
                return Err("trigger.after: an SLA of 0 would fire for every run; give a time such as 30m".into())
            }
            Trigger::DeploymentNoSuccess { within, .. } if within.0 == 0 => {
                return Err("trigger.within: give a period such as 1d".into())
            }
            Trigger::WorkPoolOffline { after, .. } | Trigger::WorkerOffline { after, .. } if after.0 == 0 => {
                return Err("trigger.after: give a time such as 2m".into())
            }
            _ => {}
        }
        if self.actions.is_empty() {
            return Err("actions: give at least one action".into());
        }
        let about_runs = matches!(self.trigger, Trigger::FlowRunState { .. } | Trigger::FlowRunSla { .. });
        let about_deployments =
            about_runs || matches!(self.trigger, Trigger::DeploymentNoSuccess { .. } | Trigger::DatasetStale { .. });
        for (i, a) in self.actions.iter().enumerate() {
            match a {
                Action::Notify { block, .. } if block.trim().is_empty() => {
                    return Err(format!("actions[{i}].block: name the notification block to send through"))
                }
                Action::CancelRun | Action::PauseRun if !about_runs => {
                    return Err(format!("actions[{i}]: {} needs a trigger about a flow run", a.kind()))
                }
                Action::RunDeployment { deployment: None, .. } | Action::PauseSchedule { deployment: None }
                    if !about_deployments =>
                {
                    return Err(format!(
                        "actions[{i}].deployment: this trigger is not about a deployment; name the deployment"
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether events about this run are the trigger's business (its
    /// filters); `deployment` is the run's deployment's name.
    pub fn matches_run(&self, run: &FlowRun, deployment: Option<&str>) -> bool {
        let (flows, deployments, tags, work_pools) = match &self.trigger {
            Trigger::FlowRunState { flows, deployments, tags, work_pools, .. }
            | Trigger::FlowRunSla { flows, deployments, tags, work_pools, .. } => {
                (flows, deployments, tags, work_pools)
            }
            _ => return false,
        };
        let any_of = |wanted: &Vec<String>, have: Option<&str>| {
            wanted.is_empty() || have.is_some_and(|h| wanted.iter().any(|w| w == h))
        };
        any_of(flows, Some(&run.flow_name))
            && any_of(deployments, deployment)
            && any_of(work_pools, run.work_pool.as_deref())
            && (tags.is_empty() || run.tags.iter().any(|t| tags.contains(t)))
    }

    /// Whether entering `state` fires a state trigger.
    pub fn matches_state(&self, state: &State) -> bool {
        match &self.trigger {
            Trigger::FlowRunState { states, .. } => states.iter().any(|s| {
                s.eq_ignore_ascii_case(&state.name)
                    || s.parse::<StateType>().is_ok_and(|t| t == state.state_type)
                    || s.eq_ignore_ascii_case(state.state_type.as_str())
            }),
            _ => false,
        }
    }
}

/// What happened, as the actions and their templates see it. Recorded
/// with the delivery, so a message sent after a restart says the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AutomationEvent {
    /// `flow-run-state`, `flow-run-sla`, `work-pool-offline`,
    /// `worker-offline`, `deployment-no-success` or `dataset-stale`.
    pub kind: String,
    /// Unique per automation: the same key never fires twice.
    pub key: String,
    pub occurred: DateTime<Utc>,
    /// One line saying what happened.
    pub summary: String,
    #[serde(default)]
    pub flow_run: Option<FlowRun>,
    #[serde(default)]
    pub state: Option<State>,
    #[serde(default)]
    pub deployment: Option<String>,
    #[serde(default)]
    pub work_pool: Option<String>,
    #[serde(default)]
    pub worker: Option<String>,
    /// The partition the event is about (`color=yellow/month=2019-01`).
    #[serde(default)]
    pub partition: Option<String>,
    /// The dataset the event is about (a `dataset-stale` event of a
    /// dataset's own policy).
    #[serde(default)]
    pub dataset: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One action to carry out for one event: a row of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub automation_id: Uuid,
    pub automation: String,
    pub action_index: u32,
    pub action: Action,
    pub event: AutomationEvent,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
    pub last_error: Option<String>,
    pub delivered: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
}

impl Delivery {
    /// The deliveries of `automation`'s actions for `event`, due at once.
    pub fn for_event(automation: &Automation, event: &AutomationEvent, now: DateTime<Utc>) -> Vec<Delivery> {
        automation
            .actions
            .iter()
            .enumerate()
            .map(|(i, action)| Delivery {
                id: Uuid::now_v7(),
                automation_id: automation.id,
                automation: automation.name.clone(),
                action_index: i as u32,
                action: action.clone(),
                event: event.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt: now,
                last_error: None,
                delivered: None,
                created: now,
            })
            .collect()
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Delivered {
        at: DateTime<Utc>,
    },
    /// Try again at `at`.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Give up.
    Failed {
        error: String,
    },
}

/// Deliveries are retried this long after the event, then given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// When to try a delivery again after its `attempts`-th failed attempt
/// (1 s, 2 s, 4 s … at most 5 min apart), or None once it is too old.
pub fn next_delivery_attempt(
    created: DateTime<Utc>,
    attempts: u32,
    now: DateTime<Utc>,
    retry_after: Option<Duration>,
) -> Option<DateTime<Utc>> {
    let backoff = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(9)).min(Duration::from_secs(300));
    let wait = retry_after.map_or(backoff, |r| r.clamp(backoff, Duration::from_secs(3600)));
    let at = now + chrono::Duration::from_std(wait).ok()?;
    (at - created).to_std().is_ok_and(|age| age <= GIVE_UP_AFTER).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The document's pattern for a one-word name is the rule the code checks.
    #[test]
    fn one_word_names_are_documented_as_checked() {
        use utoipa::PartialSchema;
        let doc = serde_json::to_value(Automation::schema()).unwrap();
        assert_eq!(doc["properties"]["name"]["pattern"], crate::names::ONE_WORD_PATTERN);
    }

    fn parse(v: Value) -> Result<Automation, String> {
        let a: Automation = serde_json::from_value(v).map_err(|e| e.to_string())?;
        a.validate()?;
        Ok(a)
    }

    fn run(flow: &str, tags: &[&str], pool: Option<&str>) -> FlowRun {
        let now = Utc::now();
        FlowRun {
            id: Uuid::now_v7(),
            flow_id: Uuid::nil(),
            flow_name: flow.into(),
            name: "brave-otter".into(),
            parameters: json!({}),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            state: State::running(now),
            parent_flow_run_id: None,
            parent_task_run_id: None,
            run_count: 1,
            start_time: None,
            end_time: None,
            created: now,
            heartbeat: None,
            deployment_id: None,
            work_pool: pool.map(str::to_string),
            idempotency_key: None,
            work_queue: None,
            retry_policy: None,
            partition: None,
            backfill_id: None,
        }
    }

    #[test]
    fn state_triggers_match_types_names_and_filters() {
        let a = parse(json!({
            "name": "on-failure",
            "trigger": {"type": "flow-run-state", "states": ["failed", "Late"], "tags": ["taxi"], "work_pools": ["local"]},
            "actions": [{"type": "notify", "block": "slack"}]
        }))
        .unwrap();
        let now = Utc::now();
        assert!(a.matches_state(&State::failure(now, "boom", false)));
        assert!(a.matches_state(&State::failure(now, "slow", true)), "TimedOut is of type FAILED");
        assert!(a.matches_state(&State::late(now, now)));
        assert!(!a.matches_state(&State::completed(now)));
        assert!(a.matches_run(&run("etl", &["taxi", "x"], Some("local")), None));
        assert!(!a.matches_run(&run("etl", &["other"], Some("local")), None));
        assert!(!a.matches_run(&run("etl", &["taxi"], None), None));
    }

    #[test]
    fn bad_automations_name_the_field() {
        let base = |trigger: Value, actions: Value| json!({"name": "a", "trigger": trigger, "actions": actions});
        let notify = json!([{"type": "notify", "block": "slack"}]);
        let e = parse(base(json!({"type": "flow-run-state", "states": ["Faild"]}), notify.clone())).unwrap_err();
        assert!(e.starts_with("trigger.states[0]: unknown state 'Faild'"), "{e}");
        let e = parse(base(json!({"type": "flow-run-state", "states": []}), notify.clone())).unwrap_err();
        assert!(e.starts_with("trigger.states"), "{e}");
        let e = parse(base(json!({"type": "work-pool-offline"}), json!([{"type": "cancel-run"}]))).unwrap_err();
        assert!(e.contains("actions[0]: cancel-run needs a trigger about a flow run"), "{e}");
        let e = parse(base(json!({"type": "flow-run-state", "states": ["Failed"], "flow": "x"}), notify.clone()))
            .unwrap_err();
        assert!(e.contains("unknown field `flow`"), "{e}");
        let e = parse(base(json!({"type": "flow-run-sla", "after": "soon"}), notify.clone())).unwrap_err();
        assert!(e.contains("invalid duration 'soon'"), "{e}");
        let a = parse(base(json!({"type": "flow-run-sla", "after": "1h30m"}), notify)).unwrap();
        assert_eq!(
            a.trigger,
            Trigger::FlowRunSla {
                after: Seconds(5400),
                flows: vec![],
                deployments: vec![],
                tags: vec![],
                work_pools: vec![]
            }
        );
    }

    #[test]
    fn deliveries_back_off_then_give_up() {
        let t0 = Utc::now();
        let at = |n, now| next_delivery_attempt(t0, n, now, None).map(|t| (t - now).num_seconds());
        assert_eq!(at(1, t0), Some(1));
        assert_eq!(at(2, t0), Some(2));
        assert_eq!(at(5, t0), Some(16));
        assert_eq!(at(30, t0), Some(300));
        let later = t0 + chrono::Duration::hours(24);
        assert_eq!(at(3, later), None, "a day later, the delivery is given up");
        let honoured = next_delivery_attempt(t0, 1, t0, Some(Duration::from_secs(30))).unwrap();
        assert_eq!((honoured - t0).num_seconds(), 30, "a receiver's Retry-After is honoured");
    }
}
