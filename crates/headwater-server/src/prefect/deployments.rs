//! Deployments and workers as Prefect's client and CLI use them:
//! `.deploy()`, `prefect deployment run F/D`, `prefect worker start`.
//!
//! A Prefect deployment is a Headwater deployment named `FLOW/NAME` (so
//! `headwater deployment run FLOW/NAME` starts it too); what only Prefect's
//! worker reads — its entrypoint (`file.py:flow`), pull steps, path,
//! parameter schema, job variables — is kept under `job_variables.prefect`.
//! Prefect's workers claim runs through the same atomic claim as
//! Headwater's: no run is handed out twice, and the scheduled-runs poll
//! waits for work instead of answering "nothing" at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use headwater_core::work_pool::served_pool;
use headwater_core::{CollisionStrategy, Deployment, FlowRun, WorkQueue};
use headwater_store::ops::{start_deployment_run, DeploymentRunError, DeploymentRunRequest};
use headwater_store::Store;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::resources::named_id;
use super::wire::flow_run_json;
use super::{Compat, PrefectJson};
use crate::error::ApiError;

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

/// How long the scheduled-runs poll of a Prefect worker waits for work:
/// Prefect's worker sleeps its interval (10 s) after each poll returns, so
/// the longer the poll is held (below its 60 s request timeout), the more
/// of the time a new run is handed out at once.
const POLL_WAIT: std::time::Duration = std::time::Duration::from_secs(45);

fn prefect_part(d: &Deployment) -> &Value {
    d.job_variables.get("prefect").unwrap_or(&Value::Null)
}

fn short_name(d: &Deployment) -> &str {
    d.name.strip_prefix(&format!("{}/", d.flow_name)).unwrap_or(&d.name)
}

/// A schedule in Prefect's shape (its client parses them).
fn prefect_schedule(s: &headwater_core::Schedule) -> Value {
    use headwater_core::Schedule;
    match s {
        Schedule::Cron { cron, timezone } => json!({"cron": cron, "timezone": timezone}),
        Schedule::Interval { every_ms, anchor, timezone } => {
            json!({"interval": *every_ms as f64 / 1000.0, "anchor_date": anchor, "timezone": timezone})
        }
        Schedule::Rrule { rrule, timezone } => json!({"rrule": rrule, "timezone": timezone}),
    }
}

fn deployment_json(d: &Deployment) -> Value {
    let p = prefect_part(d);
    json!({
        "id": d.id,
        "created": d.created,
        "updated": d.updated,
        "name": short_name(d),
        "flow_id": headwater_core::model::flow_id_for_name(&d.flow_name),
        "version": d.version,
        "description": d.description,
        "paused": d.paused,
        "status": "READY",
        "parameters": d.parameters,
        "tags": d.tags,
        "labels": {},
        "work_pool_name": d.work_pool.as_ref().filter(|p| **p != served_pool(&d.name)),
        "work_queue_name": d.work_queue,
        "entrypoint": p.get("entrypoint"),
        "path": p.get("path"),
        "pull_steps": p.get("pull_steps"),
        "job_variables": p.get("job_variables").cloned().unwrap_or_else(|| json!({})),
        "parameter_openapi_schema": p.get("parameter_openapi_schema"),
        "enforce_parameter_schema": p.get("enforce_parameter_schema").cloned().unwrap_or(json!(true)),
        "concurrency_limit": d.concurrency_limit,
        "concurrency_options": d.concurrency_limit.map(|_| json!({"collision_strategy": match d.collision_strategy {
            CollisionStrategy::Enqueue => "ENQUEUE",
            CollisionStrategy::CancelNew => "CANCEL_NEW",
        }})),
        "schedules": d.schedules.iter().map(|s| json!({
            "id": s.id,
            "active": s.active,
            "schedule": prefect_schedule(&s.schedule),
            "parameters": s.parameters,
        })).collect::<Vec<_>>(),
    })
}

/// `POST /deployments/filter` (`prefect deployment ls`): Headwater's
/// deployments, Rust's and Prefect's alike.
pub(super) async fn filter_deployments(State(c): State<Compat>) -> Answer {
    let all = c.store.list_deployments().await?;
    Ok((StatusCode::OK, Json(Value::Array(all.iter().map(deployment_json).collect()))))
}

async fn deployment_by_id(store: &dyn Store, id: Uuid) -> Result<Deployment, ApiError> {
    store
        .list_deployments()
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::not_found("Deployment not found"))
}

#[derive(Deserialize)]
pub(super) struct DeploymentCreate {
    name: String,
    flow_id: Uuid,
    #[serde(default)]
    work_pool_name: Option<String>,
    #[serde(default)]
    work_queue_name: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    concurrency_limit: Option<u32>,
    #[serde(default)]
    concurrency_options: Option<ConcurrencyOptions>,
    #[serde(default)]
    entrypoint: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    pull_steps: Option<Value>,
    #[serde(default)]
    job_variables: Option<Value>,
    #[serde(default)]
    parameter_openapi_schema: Option<Value>,
    #[serde(default)]
    enforce_parameter_schema: Option<bool>,
    #[serde(default, deserialize_with = "super::wire::nullable")]
    schedules: Vec<ScheduleIn>,
}

/// What a Prefect deployment at its concurrency limit does with a new run.
#[derive(Deserialize)]
pub(super) struct ConcurrencyOptions {
    collision_strategy: PrefectCollision,
}

#[derive(Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum PrefectCollision {
    Enqueue,
    CancelNew,
}

/// One of a Prefect deployment's schedules: `{"schedule": {"cron": …} |
/// {"interval": seconds, "anchor_date": …} | {"rrule": …}, "active": …}`.
#[derive(Deserialize)]
pub(super) struct ScheduleIn {
    schedule: Value,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn yes() -> bool {
    true
}

/// Headwater's schedule for Prefect's; the error names the field.
fn schedule_of(s: &ScheduleIn, i: usize) -> Result<headwater_core::DeploymentSchedule, ApiError> {
    use headwater_core::Schedule;
    let field = format!("schedules[{i}].schedule");
    let bad = |e: headwater_core::CoreError| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{field}: {e}"));
    let tz = s.schedule.get("timezone").and_then(Value::as_str).unwrap_or("UTC");
    let schedule = if let Some(cron) = s.schedule.get("cron").and_then(Value::as_str) {
        Schedule::cron(cron, tz).map_err(bad)?
    } else if let Some(seconds) = s.schedule.get("interval").and_then(Value::as_f64) {
        let anchor = s.schedule.get("anchor_date").and_then(Value::as_str).and_then(|a| a.parse().ok());
        let every = std::time::Duration::from_secs_f64(seconds.max(0.0));
        Schedule::interval(every, anchor, tz).map_err(bad)?
    } else if let Some(rule) = s.schedule.get("rrule").and_then(Value::as_str) {
        Schedule::rrule(rule, tz).map_err(bad)?
    } else {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{field}: cron, interval or rrule")));
    };
    Ok(headwater_core::DeploymentSchedule {
        id: named_id("schedule", &format!("{i}:{}", s.schedule)),
        schedule,
        parameters: Value::Object(s.parameters.clone()),
        active: s.active,
        partition: None,
    })
}

/// `POST /deployments/`: creates or replaces the flow's deployment of that
/// name, as Prefect's server does.
pub(super) async fn create_deployment(
    State(c): State<Compat>,
    PrefectJson(body): PrefectJson<DeploymentCreate>,
) -> Answer {
    let store = c.store.as_ref();
    let flow = store
        .list_flows()
        .await?
        .into_iter()
        .find(|f| f.id == body.flow_id)
        .ok_or_else(|| ApiError::not_found(format!("flow_id: no flow with id {}", body.flow_id)))?;
    if let Some(pool) = &body.work_pool_name {
        if store.read_work_pool(pool).await?.is_none() {
            return Err(ApiError::not_found(format!("work_pool_name: no work pool named {pool:?}")));
        }
    }
    let schedules = body.schedules.iter().enumerate().map(|(i, s)| schedule_of(s, i)).collect::<Result<Vec<_>, _>>()?;
    let name = format!("{}/{}", flow.name, body.name);
    // `.serve()` registers its deployments without a pool: their runs wait
    // in the implicit pool only the serving process claims from.
    let work_pool = body.work_pool_name.unwrap_or_else(|| served_pool(&name));
    let now = Utc::now();
    let deployment = Deployment {
        id: headwater_core::deployment::deployment_id_for_name(&name),
        name,
        flow_name: flow.name,
        entrypoint: Vec::new(),
        description: body.description,
        version: body.version,
        tags: body.tags,
        parameters: Value::Object(body.parameters),
        work_pool: Some(work_pool),
        work_queue: body.work_queue_name,
        job_variables: json!({"prefect": {
            "entrypoint": body.entrypoint,
            "path": body.path,
            "pull_steps": body.pull_steps,
            "job_variables": body.job_variables,
            "parameter_openapi_schema": body.parameter_openapi_schema,
            "enforce_parameter_schema": body.enforce_parameter_schema,
        }}),
        schedules,
        concurrency_limit: body.concurrency_limit,
        collision_strategy: match body.concurrency_options.map(|o| o.collision_strategy) {
            Some(PrefectCollision::CancelNew) => CollisionStrategy::CancelNew,
            Some(PrefectCollision::Enqueue) | None => CollisionStrategy::Enqueue,
        },
        env: Default::default(),
        pull_steps: Vec::new(),
        partitions: None,
        paused: body.paused,
        created: now,
        updated: now,
    };
    let stored = store.apply_deployment(&deployment).await?;
    Ok((StatusCode::CREATED, Json(deployment_json(&stored))))
}

pub(super) async fn read_deployment(State(c): State<Compat>, Path(id): Path<Uuid>) -> Answer {
    Ok((StatusCode::OK, Json(deployment_json(&deployment_by_id(c.store.as_ref(), id).await?))))
}

pub(super) async fn read_deployment_by_name(
    State(c): State<Compat>,
    Path((flow, name)): Path<(String, String)>,
) -> Answer {
    let d = c
        .store
        .read_deployment(&format!("{flow}/{name}"))
        .await?
        .ok_or_else(|| ApiError::not_found("Deployment not found"))?;
    Ok((StatusCode::OK, Json(deployment_json(&d))))
}

/// `PATCH /deployments/{id}`: pausing (what `.serve()` does on exit),
/// parameters, tags, description.
pub(super) async fn update_deployment(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
    PrefectJson(body): PrefectJson<Map<String, Value>>,
) -> Result<StatusCode, ApiError> {
    let mut d = deployment_by_id(c.store.as_ref(), id).await?;
    if let Some(p) = body.get("paused").and_then(Value::as_bool) {
        d.paused = p;
    }
    if let Some(p) = body.get("parameters").filter(|p| p.is_object()) {
        d.parameters = p.clone();
    }
    if let Some(t) = body.get("tags").and_then(|t| serde_json::from_value(t.clone()).ok()) {
        d.tags = t;
    }
    if let Some(desc) = body.get("description").and_then(Value::as_str) {
        d.description = Some(desc.to_string());
    }
    d.updated = Utc::now();
    c.store.apply_deployment(&d).await?;
    c.wake.notify_waiters();
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_deployment(State(c): State<Compat>, Path(id): Path<Uuid>) -> Result<StatusCode, ApiError> {
    let d = deployment_by_id(c.store.as_ref(), id).await?;
    c.store.delete_deployment(&d.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Default, Deserialize)]
pub(super) struct CreateRun {
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /deployments/{id}/create_flow_run` (`prefect deployment run F/D
/// -p x=1`): the same operation as `headwater deployment run`, the
/// parameters checked against the flow's schema; a worker of the pool
/// picks the run up at once.
pub(super) async fn create_deployment_run(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
    body: Option<PrefectJson<CreateRun>>,
) -> Answer {
    let body = body.map(|b| b.0).unwrap_or_default();
    let d = deployment_by_id(c.store.as_ref(), id).await?;
    let request =
        DeploymentRunRequest { parameters: body.parameters, idempotency_key: body.idempotency_key, check: true };
    let started = start_deployment_run(c.store.as_ref(), &d.name, request, None).await.map_err(|e| match e {
        DeploymentRunError::NoDeployment(_) => ApiError::not_found("Deployment not found"),
        DeploymentRunError::InvalidParameters(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why),
        DeploymentRunError::Store(e) => e.into(),
    })?;
    c.wake.notify_waiters();
    Ok((StatusCode::CREATED, Json(flow_run_json(&started.run))))
}

fn queue_id(pool: &str, queue: &str) -> Uuid {
    named_id("work-queue", &format!("{pool}/{queue}"))
}

fn queue_json(q: &WorkQueue) -> Value {
    json!({
        "id": queue_id(&q.work_pool, &q.name),
        "name": q.name,
        "work_pool_id": named_id("work-pool", &q.work_pool),
        "work_pool_name": q.work_pool,
        "priority": q.priority.max(1),
        "concurrency_limit": q.concurrency_limit,
        "is_paused": q.paused,
        "status": if q.paused { "PAUSED" } else { "READY" },
        "created": q.created,
        "updated": q.updated,
    })
}

/// A pool's queues, its default one included even before it is stored.
async fn queues_of(store: &dyn Store, pool: &str) -> Result<Vec<WorkQueue>, ApiError> {
    let mut queues = store.list_work_queues(pool).await?;
    if !queues.iter().any(|q| q.name == headwater_core::work_pool::DEFAULT_QUEUE) {
        let now = Utc::now();
        queues.push(WorkQueue {
            work_pool: pool.to_string(),
            name: headwater_core::work_pool::DEFAULT_QUEUE.to_string(),
            priority: 1,
            concurrency_limit: None,
            paused: false,
            created: now,
            updated: now,
        });
    }
    Ok(queues)
}

pub(super) async fn filter_queues(State(c): State<Compat>, Path(pool): Path<String>) -> Answer {
    let queues = queues_of(c.store.as_ref(), &pool).await?;
    Ok((StatusCode::OK, Json(Value::Array(queues.iter().map(queue_json).collect()))))
}

/// `GET /work_queues/{id}`: found among every pool's queues.
pub(super) async fn read_queue(State(c): State<Compat>, Path(id): Path<Uuid>) -> Answer {
    for pool in c.store.list_work_pools().await? {
        if let Some(q) =
            queues_of(c.store.as_ref(), &pool.name).await?.into_iter().find(|q| queue_id(&q.work_pool, &q.name) == id)
        {
            return Ok((StatusCode::OK, Json(queue_json(&q))));
        }
    }
    Err(ApiError::not_found("Work queue not found"))
}

#[derive(Deserialize)]
pub(super) struct WorkerBeat {
    name: String,
}

/// `POST /work_pools/{name}/workers/heartbeat`: a Prefect worker is alive
/// (Headwater's `work-pool inspect` lists it).
pub(super) async fn worker_heartbeat(
    State(c): State<Compat>,
    Path(pool): Path<String>,
    PrefectJson(body): PrefectJson<WorkerBeat>,
) -> Result<StatusCode, ApiError> {
    c.store.worker_heartbeat(&pool, &body.name, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn filter_workers(State(c): State<Compat>, Path(pool): Path<String>) -> Answer {
    let workers = c.store.list_workers(Some(&pool)).await?;
    let listed = workers
        .iter()
        .map(|w| {
            json!({
                "id": named_id("worker", &format!("{pool}/{}", w.name)),
                "name": w.name,
                "work_pool_id": named_id("work-pool", &pool),
                "last_heartbeat_time": w.last_heartbeat,
                "status": "ONLINE",
            })
        })
        .collect();
    Ok((StatusCode::OK, Json(Value::Array(listed))))
}

#[derive(Default, Deserialize)]
pub(super) struct ScheduledRuns {
    #[serde(default, deserialize_with = "super::wire::nullable")]
    work_queue_names: Vec<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Claims up to `limit` due runs of `pools` (each moved to PENDING, so no
/// other worker or runner gets it). When none is due the request waits for
/// one, so a run is handed out as soon as it is due rather than at the
/// client's next poll.
async fn claim_runs(
    c: &Compat,
    pools: &[String],
    queues: &[String],
    limit: Option<usize>,
) -> Result<Vec<FlowRun>, ApiError> {
    let store = c.store.as_ref();
    let limit = limit.unwrap_or(10).clamp(1, 100);
    let mut runs: Vec<FlowRun> = Vec::new();
    if let Some(first) = crate::api::work_pools::claim_waiting(store, &c.wake, pools, queues, None, POLL_WAIT).await? {
        runs.push(first);
        'more: while runs.len() < limit {
            for pool in pools {
                if let Some(r) = store.claim_due_run(pool, queues, Utc::now()).await? {
                    runs.push(r);
                    continue 'more;
                }
            }
            break;
        }
    }
    Ok(runs)
}

/// `POST /work_pools/{name}/get_scheduled_flow_runs` (`prefect worker
/// start`): the pool's due runs, claimed.
pub(super) async fn scheduled_runs(
    State(c): State<Compat>,
    Path(pool): Path<String>,
    body: Option<PrefectJson<ScheduledRuns>>,
) -> Answer {
    let body = body.map(|b| b.0).unwrap_or_default();
    if c.store.read_work_pool(&pool).await?.is_none() {
        return Err(ApiError::not_found("Work pool not found."));
    }
    let runs = claim_runs(&c, std::slice::from_ref(&pool), &body.work_queue_names, body.limit).await?;
    let listed = runs
        .iter()
        .map(|r| {
            let queue = r.work_queue.as_deref().unwrap_or(headwater_core::work_pool::DEFAULT_QUEUE);
            json!({
                "work_pool_id": named_id("work-pool", &pool),
                "work_queue_id": queue_id(&pool, queue),
                "flow_run": flow_run_json(r),
            })
        })
        .collect();
    Ok((StatusCode::OK, Json(Value::Array(listed))))
}

#[derive(Deserialize)]
pub(super) struct ServedRuns {
    deployment_ids: Vec<Uuid>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `POST /deployments/get_scheduled_flow_runs` (`flow.serve()`): the due
/// runs of the deployments a runner serves, claimed as a worker's are. A
/// run due later is handed out when it is due, not early: Prefect's
/// `scheduled_before` prefetch would only make the runner wait for it.
/// One run per poll unless the runner asks for more: a runner at its
/// process limit skips runs it was handed, and a claimed run it skipped
/// would wait PENDING until it crashed.
pub(super) async fn served_runs(State(c): State<Compat>, PrefectJson(body): PrefectJson<ServedRuns>) -> Answer {
    let pools: Vec<String> = c
        .store
        .list_deployments()
        .await?
        .into_iter()
        .filter(|d| body.deployment_ids.contains(&d.id))
        .map(|d| d.work_pool.unwrap_or_else(|| served_pool(&d.name)))
        .collect();
    if pools.is_empty() {
        return Ok((StatusCode::OK, Json(json!([]))));
    }
    let runs = claim_runs(&c, &pools, &[], Some(body.limit.unwrap_or(1))).await?;
    Ok((StatusCode::OK, Json(Value::Array(runs.iter().map(flow_run_json).collect()))))
}

/// `DELETE /automations/owned-by/{resource}`: `.deploy()` clears the
/// automations a deployment owned; Headwater's automations are its own.
pub(super) async fn delete_owned_automations() -> StatusCode {
    StatusCode::ACCEPTED
}
