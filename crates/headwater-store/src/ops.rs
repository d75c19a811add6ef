//! The operations built on the store's traits, written once for every
//! caller: the server, the CLI, workers, automations and the SDK.

use chrono::{DateTime, Utc};
use headwater_core::{Deployment, FlowRun, StateRecord, TaskRun};

use crate::{Result, RunRecorder, Store, StoreError, WriteBatch};

/// Records that `run` entered `state`: the new snapshot (with its end time
/// set if the state is final, cleared if not) and the history row, together.
pub async fn record_flow_run_state(
    store: &dyn RunRecorder,
    mut run: FlowRun,
    state: headwater_core::State,
) -> Result<FlowRun> {
    run.end_time = state.is_terminal().then_some(state.timestamp);
    run.state = state;
    let history = StateRecord { run_id: run.id, kind: headwater_core::RunKind::Flow, state: run.state.clone() };
    store.record(&WriteBatch { flow_runs: vec![run.clone()], states: vec![history], ..Default::default() }).await?;
    Ok(run)
}

/// The snapshots and history rows that mark each run CRASHED at `now` (with
/// its reason) and the given unfinished `tasks` with it. A run its flow's
/// retries allow to run again then goes back to its pool (AwaitingRetry).
pub fn crashed_batch(runs: Vec<(FlowRun, String)>, tasks: Vec<TaskRun>, now: DateTime<Utc>) -> WriteBatch {
    use headwater_core::{RunKind, State};
    let mut batch = WriteBatch::default();
    for (mut r, why) in runs {
        r.state = State::crashed(now, why);
        r.end_time = Some(now);
        batch.states.push(StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() });
        // The run id's low bits stand in for a random jitter sample.
        let jitter = (r.id.as_u128() % 1000) as f64 / 1000.0;
        let after = now + chrono::Duration::microseconds(1);
        if let Some(retry) = headwater_core::transition::retry_after_crash(&r, after, jitter) {
            r.state = retry;
            r.end_time = None;
            batch.states.push(StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() });
        }
        batch.flow_runs.push(r);
    }
    for mut t in tasks {
        t.state = State::crashed(now, "its flow run crashed");
        t.end_time = Some(now);
        batch.states.push(StateRecord { run_id: t.id, kind: RunKind::Task, state: t.state.clone() });
        batch.task_runs.push(t);
    }
    batch
}

/// Records that `run`'s process died (`why`): the run and its unfinished
/// task runs CRASHED, then, if its flow's retries allow, the run back in its
/// pool. Returns the run as now stored.
pub async fn record_crash(store: &dyn Store, run: FlowRun, why: &str) -> Result<FlowRun> {
    let tasks: Vec<TaskRun> =
        store.list_task_runs(run.id).await?.into_iter().filter(|t| !t.state.state_type.is_terminal()).collect();
    let batch = crashed_batch(vec![(run, why.to_string())], tasks, Utc::now());
    store.record(&batch).await?;
    Ok(batch.flow_runs.into_iter().next().expect("one run"))
}

/// A seed for the readable names of new runs: they need variety, not quality.
pub fn name_seed() -> u64 {
    let nanos = Utc::now().timestamp_subsec_nanos() as u64;
    let (hi, lo) = uuid::Uuid::now_v7().as_u64_pair();
    hi ^ lo.rotate_left(17) ^ nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// How a deployment's run is started by hand, an automation or the API.
#[derive(Debug, Clone, Default)]
pub struct DeploymentRunRequest {
    /// Over the deployment's own parameters.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// A run with this key is created once, however often it is asked for.
    pub idempotency_key: Option<String>,
    /// Check the merged parameters against the flow's parameter schema
    /// (when the flow has reported one). Off only where the user says so.
    pub check: bool,
}

/// Why a deployment's run was not started.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentRunError {
    #[error("no deployment named '{0}'")]
    NoDeployment(String),
    /// The message names the field (`parameters.month: …`).
    #[error("{0}")]
    InvalidParameters(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`start_deployment_run`] did.
#[derive(Debug, Clone)]
pub struct StartedRun {
    pub run: FlowRun,
    /// False when a run with the request's idempotency key already existed.
    pub created: bool,
}

/// A check of a deployment's merged parameters that a caller adds (the CLI
/// asks the flow program itself); the message names the field.
pub type ParameterCheck<'a> = &'a (dyn Fn(&Deployment, &serde_json::Value) -> Result<(), String> + Sync);

/// Starts a run of deployment `name` now (a worker of its pool runs it):
/// the parameters merged over the deployment's, checked against the flow's
/// schema, queued once per idempotency key. `extra_check` runs first on the
/// merged parameters, for a caller that can ask the flow program itself
/// (the CLI); its error is returned as it is.
pub async fn start_deployment_run(
    store: &dyn Store,
    name: &str,
    request: DeploymentRunRequest,
    extra_check: Option<ParameterCheck<'_>>,
) -> Result<StartedRun, DeploymentRunError> {
    let deployment =
        store.read_deployment(name).await?.ok_or_else(|| DeploymentRunError::NoDeployment(name.to_string()))?;
    let given = serde_json::Value::Object(request.parameters);
    if request.check {
        let merged = deployment.merged_parameters(&given);
        if let Some(check) = extra_check {
            check(&deployment, &merged).map_err(DeploymentRunError::InvalidParameters)?;
        }
        if let Some(flow) = store.read_flow(&deployment.flow_name).await? {
            if flow.parameter_schema.get("properties").is_some() {
                headwater_core::block::check_against_schema(&flow.parameter_schema, &merged)
                    .map_err(|e| DeploymentRunError::InvalidParameters(format!("parameters.{e}")))?;
            }
        }
    }
    let now = Utc::now();
    let mut run = deployment.manual_run(&given, now, now, name_seed());
    run.idempotency_key = request.idempotency_key;
    let created = store.enqueue_runs(std::slice::from_ref(&run)).await? > 0;
    Ok(StartedRun { run, created })
}
