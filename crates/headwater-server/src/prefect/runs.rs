//! Flows, flow runs, task runs and logs as a Prefect client creates and
//! moves them. Flow runs change state through REST (`set_state`), decided
//! by core's orchestration rules; task runs mostly arrive as events
//! (`events.rs`) and through REST only for a subflow's wrapper.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use headwater_core::deployment::{admit, Admission};
use headwater_core::transition::{orchestrate, orchestrate_in_slots, takes_slot, Orchestration};
use headwater_core::{Flow, FlowRun, LogLevel, LogRecord, RunKind, State as RunState, StateRecord, StateType, TaskRun};
use headwater_store::{FlowRunFilter, Store, WriteBatch};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::events::held_until;
use super::wire::{
    dynamic_key_number, flow_json, flow_run_json, nullable, state_json, task_name_of_key, task_run_json, AnyOf, StateIn,
};
use super::{Compat, PrefectJson};
use crate::error::ApiError;

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

fn ok(value: Value) -> Answer {
    Ok((StatusCode::OK, Json(value)))
}

async fn flow_by_id(store: &dyn Store, id: Uuid) -> Result<Option<Flow>, ApiError> {
    Ok(store.list_flows().await?.into_iter().find(|f| f.id == id))
}

#[derive(Deserialize)]
pub(super) struct FlowCreate {
    name: String,
}

/// `POST /flows/`: 201 with a new flow, 200 with the one of that name. A
/// flow Headwater already knows (from a Rust program) keeps what it has.
pub(super) async fn create_flow(State(c): State<Compat>, PrefectJson(body): PrefectJson<FlowCreate>) -> Answer {
    if body.name.trim().is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "name: a flow needs a name"));
    }
    if let Some(f) = c.store.read_flow(&body.name).await? {
        return ok(flow_json(&f));
    }
    let now = Utc::now();
    let flow = Flow {
        id: headwater_core::model::flow_id_for_name(&body.name),
        name: body.name,
        version: None,
        description: None,
        parameter_schema: json!({}),
        created: now,
        updated: now,
    };
    c.store.record(&WriteBatch { flows: vec![flow.clone()], ..Default::default() }).await?;
    Ok((StatusCode::CREATED, Json(flow_json(&flow))))
}

pub(super) async fn read_flow(State(c): State<Compat>, Path(id): Path<Uuid>) -> Answer {
    let flow = flow_by_id(c.store.as_ref(), id).await?.ok_or_else(|| ApiError::not_found("Flow not found"))?;
    ok(flow_json(&flow))
}

pub(super) async fn read_flow_by_name(State(c): State<Compat>, Path(name): Path<String>) -> Answer {
    let flow = c.store.read_flow(&name).await?.ok_or_else(|| ApiError::not_found("Flow not found"))?;
    ok(flow_json(&flow))
}

#[derive(Default, Deserialize)]
struct FlowFields {
    #[serde(default, deserialize_with = "nullable")]
    id: AnyOf<Uuid>,
    #[serde(default, deserialize_with = "nullable")]
    name: AnyOf<String>,
}

#[derive(Default, Deserialize)]
pub(super) struct FlowsFilter {
    #[serde(default)]
    flows: Option<FlowFields>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
}

pub(super) async fn filter_flows(State(c): State<Compat>, body: Option<PrefectJson<FlowsFilter>>) -> Answer {
    let body = body.map(|b| b.0).unwrap_or_default();
    let fields = body.flows.unwrap_or_default();
    let flows: Vec<Value> = c
        .store
        .list_flows()
        .await?
        .iter()
        .filter(|f| fields.id.any_.as_ref().is_none_or(|ids| ids.contains(&f.id)))
        .filter(|f| fields.name.any_.as_ref().is_none_or(|names| names.contains(&f.name)))
        .skip(body.offset)
        .take(body.limit.unwrap_or(200))
        .map(flow_json)
        .collect();
    ok(Value::Array(flows))
}

#[derive(Deserialize)]
pub(super) struct FlowRunCreate {
    flow_id: Uuid,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    state: Option<StateIn>,
    #[serde(default)]
    parent_task_run_id: Option<Uuid>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /flow_runs/`: a run of a known flow, PENDING unless the client
/// says otherwise; a subflow is linked to its parent through the task run
/// that stands for it.
pub(super) async fn create_flow_run(State(c): State<Compat>, PrefectJson(body): PrefectJson<FlowRunCreate>) -> Answer {
    let store = c.store.as_ref();
    let flow = flow_by_id(store, body.flow_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("flow_id: no flow with id {}", body.flow_id)))?;
    let now = Utc::now();
    let state = body.state.map_or_else(|| RunState::pending(now), |s| s.into_state(now));
    if let Orchestration::Reject(why) = orchestrate(None, state.state_type, false) {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("state: {why}")));
    }
    let state_is_waiting = matches!(state.state_type, StateType::Scheduled | StateType::Paused);
    let parent_flow_run_id = match body.parent_task_run_id {
        Some(task) => store.read_task_run(task).await?.map(|t| t.flow_run_id),
        None => None,
    };
    let run = FlowRun {
        id: Uuid::now_v7(),
        flow_id: flow.id,
        flow_name: flow.name,
        name: body
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| headwater_core::names::run_name(headwater_store::ops::name_seed())),
        parameters: Value::Object(body.parameters),
        tags: body.tags,
        state,
        parent_flow_run_id,
        parent_task_run_id: body.parent_task_run_id,
        run_count: 0,
        start_time: None,
        end_time: None,
        created: now,
        // A live run whose client dies before it starts is reaped like any
        // other, once a beat is overdue.
        heartbeat: (!state_is_waiting).then(|| held_until(now, c.heartbeat_lease)),
        deployment_id: None,
        work_pool: None,
        idempotency_key: body.idempotency_key,
        work_queue: None,
        retry_policy: None,
        partition: None,
        backfill_id: None,
    };
    let history = StateRecord { run_id: run.id, kind: RunKind::Flow, state: run.state.clone() };
    store.record(&WriteBatch { flow_runs: vec![run.clone()], states: vec![history], ..Default::default() }).await?;
    Ok((StatusCode::CREATED, Json(flow_run_json(&run))))
}

async fn flow_run(store: &dyn Store, id: Uuid) -> Result<FlowRun, ApiError> {
    store.read_flow_run(id).await?.ok_or_else(|| ApiError::not_found("Flow run not found"))
}

pub(super) async fn read_flow_run(State(c): State<Compat>, Path(id): Path<Uuid>) -> Answer {
    ok(flow_run_json(&flow_run(c.store.as_ref(), id).await?))
}

/// `PATCH /flow_runs/{id}`: what a worker or the UI changes on a run;
/// the fields Headwater keeps are taken, the rest acknowledged.
pub(super) async fn update_flow_run(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
    PrefectJson(body): PrefectJson<Map<String, Value>>,
) -> Result<StatusCode, ApiError> {
    let mut run = flow_run(c.store.as_ref(), id).await?;
    let mut changed = false;
    if let Some(name) = body.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        run.name = name.to_string();
        changed = true;
    }
    if let Some(tags) = body.get("tags").and_then(|t| serde_json::from_value::<Vec<String>>(t.clone()).ok()) {
        run.tags = tags;
        changed = true;
    }
    if changed {
        c.store.record(&WriteBatch { flow_runs: vec![run], ..Default::default() }).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(super) struct SetState {
    state: StateIn,
    #[serde(default)]
    force: bool,
}

/// Prefect's answer to a proposed state: 201 ACCEPT with the new state;
/// 200 REJECT with the run's state (a cancelled one for `cancel_new`) and
/// the reason; 200 WAIT with `delay_seconds` and `Retry-After`, after which
/// the client proposes again.
fn orchestration_answer(decision: &Orchestration, state: Value) -> Result<Response, ApiError> {
    let answer = match decision {
        Orchestration::Accept => (
            StatusCode::CREATED,
            Json(json!({"state": state, "status": "ACCEPT", "details": {"type": "accept_details"}})),
        )
            .into_response(),
        Orchestration::Reject(reason) | Orchestration::Cancel(reason) => Json(json!({
            "state": state,
            "status": "REJECT",
            "details": {"type": "reject_details", "reason": reason},
        }))
        .into_response(),
        Orchestration::Wait { delay, reason } => (
            [(axum::http::header::RETRY_AFTER, delay.as_secs().to_string())],
            Json(json!({
                "state": null,
                "status": "WAIT",
                "details": {"type": "wait_details", "delay_seconds": delay.as_secs(), "reason": reason},
            })),
        )
            .into_response(),
    };
    Ok(answer)
}

/// What the run's deployment's slots say to a proposed start (see
/// [`orchestrate_in_slots`]). The claim a worker or runner makes is the
/// atomic gate; this check is for clients that propose a start without one.
async fn slot_admission(
    store: &dyn Store,
    run: &FlowRun,
    proposed: StateType,
    force: bool,
) -> Result<Admission, ApiError> {
    let Some(deployment) = run.deployment_id else { return Ok(Admission::Start) };
    if force || !takes_slot(Some(run.state.state_type), proposed) {
        return Ok(Admission::Start);
    }
    let Some(d) = store.list_deployments().await?.into_iter().find(|d| d.id == deployment) else {
        return Ok(Admission::Start);
    };
    let Some(limit) = d.concurrency_limit else { return Ok(Admission::Start) };
    let holding = FlowRunFilter {
        deployment_id: Some(deployment),
        states: vec![StateType::Pending, StateType::Running, StateType::Cancelling],
        limit: limit + 1,
        ..Default::default()
    };
    let active = store.list_flow_runs(&holding).await?.iter().filter(|r| r.id != run.id).count();
    Ok(admit(Some(limit), d.collision_strategy, active))
}

/// What entering `state` changes on a run's snapshot: its attempts and
/// start on RUNNING, its end when final.
fn enter(start: &mut Option<DateTime<Utc>>, run_count: &mut u32, end: &mut Option<DateTime<Utc>>, state: &RunState) {
    if state.state_type == StateType::Running {
        *run_count += 1;
        start.get_or_insert(state.timestamp);
    }
    *end = state.is_terminal().then_some(state.timestamp);
}

/// `POST /flow_runs/{id}/set_state`, answered as [`orchestration_answer`]
/// says; a start beyond the deployment's concurrency limit waits or is
/// cancelled. A subflow's wrapper task run follows its run (nothing else
/// reports it).
pub(super) async fn set_flow_run_state(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
    PrefectJson(body): PrefectJson<SetState>,
) -> Result<Response, ApiError> {
    let store = c.store.as_ref();
    let mut run = flow_run(store, id).await?;
    let now = Utc::now();
    let mut state = body.state.into_state(now);
    let admission = slot_admission(store, &run, state.state_type, body.force).await?;
    let decision = orchestrate_in_slots(Some(run.state.state_type), state.state_type, body.force, admission);
    match &decision {
        Orchestration::Accept => {}
        Orchestration::Cancel(why) => state = RunState::cancelled(now, why),
        _ => return orchestration_answer(&decision, state_json(&run.state, Some(run.id), None)),
    }
    enter(&mut run.start_time, &mut run.run_count, &mut run.end_time, &state);
    if state.state_type == StateType::Running {
        // A Prefect client's first heartbeat comes with its first beat interval.
        run.heartbeat = Some(held_until(now, c.heartbeat_lease));
    }
    run.state = state.clone();
    let mut batch = WriteBatch {
        states: vec![StateRecord { run_id: run.id, kind: RunKind::Flow, state: state.clone() }],
        ..Default::default()
    };
    if let Some(wrapper) = run.parent_task_run_id {
        if let Some(mut task) = store.read_task_run(wrapper).await? {
            let follows = state.state_type == StateType::Running || state.is_terminal();
            if follows && !task.state.is_terminal() && task.state.state_type != state.state_type {
                enter(&mut task.start_time, &mut task.run_count, &mut task.end_time, &state);
                task.state = state.clone();
                batch.states.push(StateRecord { run_id: task.id, kind: RunKind::Task, state: state.clone() });
                batch.task_runs.push(task);
            }
        }
    }
    batch.flow_runs.push(run.clone());
    let started = std::time::Instant::now();
    store.record(&batch).await?;
    crate::metrics::batch_recorded("prefect_state", &batch, &[], started.elapsed().as_secs_f64());
    if state.state_type == StateType::Scheduled {
        c.wake.notify_waiters();
    }
    orchestration_answer(&decision, state_json(&state, Some(run.id), None))
}

#[derive(Default, Deserialize)]
struct StateFields {
    #[serde(default, rename = "type", deserialize_with = "nullable")]
    state_type: AnyOf<StateType>,
    #[serde(default, deserialize_with = "nullable")]
    name: AnyOf<String>,
}

#[derive(Default, Deserialize)]
struct TagFields {
    #[serde(default)]
    all_: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
struct FlowRunFields {
    #[serde(default, deserialize_with = "nullable")]
    id: AnyOf<Uuid>,
    #[serde(default, deserialize_with = "nullable")]
    parent_task_run_id: AnyOf<Uuid>,
    #[serde(default, deserialize_with = "nullable")]
    deployment_id: AnyOf<Uuid>,
    #[serde(default, deserialize_with = "nullable")]
    state: StateFields,
    #[serde(default, deserialize_with = "nullable")]
    tags: TagFields,
}

#[derive(Default, Deserialize)]
pub(super) struct FlowRunsFilter {
    #[serde(default)]
    flows: Option<FlowFields>,
    #[serde(default)]
    flow_runs: Option<FlowRunFields>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    offset: u32,
}

async fn matching_flow_runs(store: &dyn Store, body: FlowRunsFilter) -> Result<Vec<FlowRun>, ApiError> {
    let fields = body.flow_runs.unwrap_or_default();
    let limit = body.limit.unwrap_or(200).clamp(1, 10_000);
    if let Some(ids) = fields.id.any_ {
        // By id, and the rest of the filter still applies: a runner asks
        // which of its runs are being cancelled this way.
        let (types, names, tags) = (fields.state.state_type.any_, fields.state.name.any_, fields.tags.all_);
        let (parents, deployments) = (fields.parent_task_run_id.any_, fields.deployment_id.any_);
        let mut runs = Vec::new();
        for id in ids.into_iter().take(limit as usize) {
            runs.extend(store.read_flow_run(id).await?);
        }
        runs.retain(|r| {
            types.as_ref().is_none_or(|ts| ts.contains(&r.state.state_type))
                && names.as_ref().is_none_or(|ns| ns.contains(&r.state.name))
                && tags.as_ref().is_none_or(|ts| ts.iter().all(|t| r.tags.contains(t)))
                && parents.as_ref().is_none_or(|ps| r.parent_task_run_id.is_some_and(|p| ps.contains(&p)))
                && deployments.as_ref().is_none_or(|ds| r.deployment_id.is_some_and(|d| ds.contains(&d)))
        });
        return Ok(runs);
    }
    let flow_names = match body.flows.and_then(|f| f.id.any_) {
        Some(ids) => {
            let flows = store.list_flows().await?;
            let names: Vec<String> = flows.into_iter().filter(|f| ids.contains(&f.id)).map(|f| f.name).collect();
            if names.is_empty() {
                return Ok(Vec::new());
            }
            names.into_iter().map(Some).collect()
        }
        None => vec![None],
    };
    let base = FlowRunFilter {
        states: fields.state.state_type.any_.unwrap_or_default(),
        state_names: fields.state.name.any_.unwrap_or_default(),
        tags: fields.tags.all_.unwrap_or_default(),
        limit: limit + body.offset,
        ..Default::default()
    };
    base.check().map_err(|why| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("flow_runs.{why}")))?;
    // Prefect filters take lists where Headwater's take one value: one query
    // each, so the combinations are bounded like a filter's lists.
    let parents: Vec<Option<Uuid>> =
        fields.parent_task_run_id.any_.map_or(vec![None], |p| p.into_iter().map(Some).collect());
    let deployments: Vec<Option<Uuid>> =
        fields.deployment_id.any_.map_or(vec![None], |d| d.into_iter().map(Some).collect());
    let combinations = flow_names.len() * parents.len() * deployments.len();
    if combinations > headwater_store::MAX_FILTER_ITEMS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "flows.id × flow_runs.parent_task_run_id × flow_runs.deployment_id: {combinations} combinations, \
                 at most {} are taken",
                headwater_store::MAX_FILTER_ITEMS
            ),
        ));
    }
    let mut runs = Vec::new();
    for flow_name in &flow_names {
        for parent in &parents {
            for deployment in &deployments {
                let filter = FlowRunFilter {
                    flow_name: flow_name.clone(),
                    parent_task_run_id: *parent,
                    deployment_id: *deployment,
                    ..base.clone()
                };
                runs.extend(store.list_flow_runs(&filter).await?);
            }
        }
    }
    runs.sort_by_key(|r| std::cmp::Reverse((r.created, r.id)));
    Ok(runs.into_iter().skip(body.offset as usize).take(limit as usize).collect())
}

/// `POST /flow_runs/filter`: newest first; by id, flow, state type or
/// name, tags, deployment, and a subflow's wrapper task run.
pub(super) async fn filter_flow_runs(State(c): State<Compat>, body: Option<PrefectJson<FlowRunsFilter>>) -> Answer {
    let runs = matching_flow_runs(c.store.as_ref(), body.map(|b| b.0).unwrap_or_default()).await?;
    ok(Value::Array(runs.iter().map(flow_run_json).collect()))
}

pub(super) async fn count_flow_runs(State(c): State<Compat>, body: Option<PrefectJson<FlowRunsFilter>>) -> Answer {
    let mut body = body.map(|b| b.0).unwrap_or_default();
    body.limit = Some(10_000);
    ok(json!(matching_flow_runs(c.store.as_ref(), body).await?.len()))
}

#[derive(Deserialize)]
pub(super) struct TaskRunCreate {
    #[serde(default)]
    id: Option<Uuid>,
    name: String,
    flow_run_id: Uuid,
    task_key: String,
    #[serde(default)]
    dynamic_key: Value,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    state: Option<StateIn>,
}

/// `POST /task_runs/`: a Prefect client makes a subflow's wrapper this way
/// (its other task runs arrive as events). Created once per id.
pub(super) async fn create_task_run(State(c): State<Compat>, PrefectJson(body): PrefectJson<TaskRunCreate>) -> Answer {
    let store = c.store.as_ref();
    if let Some(existing) = match body.id {
        Some(id) => store.read_task_run(id).await?,
        None => None,
    } {
        return ok(task_run_json(&existing));
    }
    flow_run(store, body.flow_run_id).await.map_err(|_| {
        ApiError::new(StatusCode::NOT_FOUND, format!("flow_run_id: no flow run with id {}", body.flow_run_id))
    })?;
    let now = Utc::now();
    let state = body.state.map_or_else(|| RunState::pending(now), |s| s.into_state(now));
    let dynamic_key = match &body.dynamic_key {
        Value::String(s) => dynamic_key_number(s),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    };
    let task = TaskRun {
        id: body.id.unwrap_or_else(Uuid::now_v7),
        flow_run_id: body.flow_run_id,
        task_name: task_name_of_key(&body.task_key).to_string(),
        name: body.name,
        dynamic_key,
        tags: body.tags,
        state,
        run_count: 0,
        cache_key: None,
        cache_expiration: None,
        start_time: None,
        end_time: None,
        created: now,
    };
    let history = StateRecord { run_id: task.id, kind: RunKind::Task, state: task.state.clone() };
    store.record(&WriteBatch { task_runs: vec![task.clone()], states: vec![history], ..Default::default() }).await?;
    Ok((StatusCode::CREATED, Json(task_run_json(&task))))
}

pub(super) async fn read_task_run(State(c): State<Compat>, Path(id): Path<Uuid>) -> Answer {
    let task = c.store.read_task_run(id).await?.ok_or_else(|| ApiError::not_found("Task run not found"))?;
    ok(task_run_json(&task))
}

#[derive(Deserialize)]
pub(super) struct StatesOf {
    #[serde(default)]
    flow_run_id: Option<Uuid>,
    #[serde(default)]
    task_run_id: Option<Uuid>,
}

/// `GET /flow_run_states/?flow_run_id=` and `GET /task_run_states/?task_run_id=`:
/// a run's state history, oldest first.
pub(super) async fn read_states(
    State(c): State<Compat>,
    axum::extract::Query(of): axum::extract::Query<StatesOf>,
) -> Answer {
    let (run, flow_run, task_run) = match (of.flow_run_id, of.task_run_id) {
        (Some(f), None) => (f, Some(f), None),
        (None, Some(t)) => {
            let task = c.store.read_task_run(t).await?.ok_or_else(|| ApiError::not_found("Task run not found"))?;
            (t, Some(task.flow_run_id), Some(t))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give flow_run_id or task_run_id (one of them)",
            ))
        }
    };
    let states = c.store.read_states(run).await?;
    ok(Value::Array(states.iter().map(|s| state_json(&s.state, flow_run, task_run)).collect()))
}

/// `POST /task_runs/{id}/set_state`, decided like a flow run's.
pub(super) async fn set_task_run_state(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
    PrefectJson(body): PrefectJson<SetState>,
) -> Result<Response, ApiError> {
    let store = c.store.as_ref();
    let mut task = store.read_task_run(id).await?.ok_or_else(|| ApiError::not_found("Task run not found"))?;
    let state = body.state.into_state(Utc::now());
    let decision = orchestrate(Some(task.state.state_type), state.state_type, body.force);
    if decision != Orchestration::Accept {
        return orchestration_answer(&decision, state_json(&task.state, Some(task.flow_run_id), Some(task.id)));
    }
    enter(&mut task.start_time, &mut task.run_count, &mut task.end_time, &state);
    task.state = state.clone();
    let history = StateRecord { run_id: task.id, kind: RunKind::Task, state: state.clone() };
    let batch = WriteBatch { task_runs: vec![task.clone()], states: vec![history], ..Default::default() };
    let started = std::time::Instant::now();
    store.record(&batch).await?;
    crate::metrics::batch_recorded("prefect_state", &batch, &[], started.elapsed().as_secs_f64());
    orchestration_answer(&decision, state_json(&state, Some(task.flow_run_id), Some(task.id)))
}

#[derive(Default, Deserialize)]
struct TaskRunFields {
    #[serde(default, deserialize_with = "nullable")]
    id: AnyOf<Uuid>,
    #[serde(default, deserialize_with = "nullable")]
    state: StateFields,
}

#[derive(Default, Deserialize)]
pub(super) struct TaskRunsFilter {
    #[serde(default)]
    flow_runs: Option<FlowRunFields>,
    #[serde(default)]
    task_runs: Option<TaskRunFields>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
}

/// The most task runs a filter names by id.
const MAX_IDS: usize = 1_000;

async fn matching_task_runs(store: &dyn Store, body: TaskRunsFilter) -> Result<Vec<TaskRun>, ApiError> {
    let fields = body.task_runs.unwrap_or_default();
    let runs = body.flow_runs.and_then(|f| f.id.any_);
    // One read per id or flow run: bounded like a filter's lists.
    let (ids, flow_runs) = (fields.id.any_.as_ref().map_or(0, Vec::len), runs.as_ref().map_or(0, Vec::len));
    if ids > MAX_IDS || flow_runs > headwater_store::MAX_FILTER_ITEMS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "task_runs.id ({ids}) or flow_runs.id ({flow_runs}): at most {MAX_IDS} task runs and {} flow runs",
                headwater_store::MAX_FILTER_ITEMS
            ),
        ));
    }
    let mut tasks = Vec::new();
    if let Some(ids) = fields.id.any_ {
        for id in ids {
            tasks.extend(store.read_task_run(id).await?);
        }
    } else if let Some(runs) = runs {
        for run in runs {
            tasks.extend(store.list_task_runs(run).await?);
        }
    } else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "task_runs.id or flow_runs.id: Headwater lists task runs by id or by their flow runs",
        ));
    }
    let (types, names) = (fields.state.state_type.any_, fields.state.name.any_);
    tasks.retain(|t| {
        types.as_ref().is_none_or(|ts| ts.contains(&t.state.state_type))
            && names.as_ref().is_none_or(|ns| ns.contains(&t.state.name))
    });
    Ok(tasks)
}

/// `POST /task_runs/filter`: by id, or the task runs of given flow runs;
/// by state type or name.
pub(super) async fn filter_task_runs(State(c): State<Compat>, body: Option<PrefectJson<TaskRunsFilter>>) -> Answer {
    let body = body.map(|b| b.0).unwrap_or_default();
    let (offset, limit) = (body.offset, body.limit.unwrap_or(200));
    let tasks = matching_task_runs(c.store.as_ref(), body).await?;
    ok(Value::Array(tasks.iter().skip(offset).take(limit).map(task_run_json).collect()))
}

/// `POST /task_runs/count`, with the filters of `/task_runs/filter`.
pub(super) async fn count_task_runs(State(c): State<Compat>, body: Option<PrefectJson<TaskRunsFilter>>) -> Answer {
    let tasks = matching_task_runs(c.store.as_ref(), body.map(|b| b.0).unwrap_or_default()).await?;
    ok(json!(tasks.len()))
}

#[derive(Deserialize)]
pub(super) struct LogIn {
    #[serde(default)]
    level: i64,
    message: String,
    timestamp: DateTime<Utc>,
    #[serde(default)]
    flow_run_id: Option<Uuid>,
    #[serde(default)]
    task_run_id: Option<Uuid>,
}

/// `POST /logs/`: a flow's log lines (its `print`s too, with
/// `log_prints=True`). Lines outside any flow run have nowhere to go in
/// Headwater and are counted, not stored.
pub(super) async fn create_logs(State(c): State<Compat>, PrefectJson(lines): PrefectJson<Vec<LogIn>>) -> Answer {
    let total = lines.len();
    let logs: Vec<LogRecord> = lines
        .into_iter()
        .filter_map(|l| {
            Some(LogRecord {
                id: 0,
                flow_run_id: l.flow_run_id?,
                task_run_id: l.task_run_id,
                level: LogLevel::from_number(l.level),
                timestamp: l.timestamp,
                message: l.message,
            })
        })
        .collect();
    if logs.len() < total {
        tracing::debug!("{} Prefect log lines without a flow run were not stored", total - logs.len());
    }
    if !logs.is_empty() {
        c.store.record(&WriteBatch { logs, ..Default::default() }).await?;
    }
    Ok((StatusCode::CREATED, Json(Value::Null)))
}
