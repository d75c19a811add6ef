//! Variables, tag concurrency limits, work pools and the deployment list as
//! Prefect's client and CLI use them, over Headwater's own: a variable set
//! from Python is `headwater variable get`'s, a limit made with `prefect
//! concurrency-limit create` is `headwater concurrency-limit ls`'s.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use headwater_core::{ConcurrencyLimit, Variable, WorkPool, WorkPoolKind};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Compat, PrefectJson};
use crate::error::ApiError;

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

/// A stable id for what Headwater keys by name.
pub(super) fn named_id(kind: &str, name: &str) -> Uuid {
    let digest = blake3::hash(format!("headwater-{kind}:{name}").as_bytes());
    Uuid::from_slice(&digest.as_bytes()[..16]).expect("16 bytes")
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
}

fn variable_json(v: &Variable) -> Value {
    json!({
        "id": named_id("variable", &v.name),
        "name": v.name,
        "value": v.value,
        "tags": v.tags,
        "created": v.created,
        "updated": v.updated,
    })
}

#[derive(Deserialize)]
pub(super) struct VariableCreate {
    name: String,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    tags: Vec<String>,
}

/// `POST /variables/`: 201, or 409 if one of that name exists (Prefect's
/// client then updates it by name).
pub(super) async fn create_variable(State(c): State<Compat>, PrefectJson(body): PrefectJson<VariableCreate>) -> Answer {
    if c.store.read_variable(&body.name).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("A variable with the name {:?} already exists.", body.name),
        ));
    }
    let now = Utc::now();
    let v = Variable { name: body.name, value: body.value, tags: body.tags, created: now, updated: now };
    headwater_core::validate_variable(&v).map_err(invalid)?;
    let v = c.store.set_variable(&v).await?;
    Ok((StatusCode::CREATED, Json(variable_json(&v))))
}

pub(super) async fn read_variable(State(c): State<Compat>, Path(name): Path<String>) -> Answer {
    let v = c.store.read_variable(&name).await?.ok_or_else(|| ApiError::not_found("Variable not found"))?;
    Ok((StatusCode::OK, Json(variable_json(&v))))
}

#[derive(Deserialize)]
pub(super) struct VariableUpdate {
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

pub(super) async fn update_variable(
    State(c): State<Compat>,
    Path(name): Path<String>,
    PrefectJson(body): PrefectJson<VariableUpdate>,
) -> Result<StatusCode, ApiError> {
    let mut v = c.store.read_variable(&name).await?.ok_or_else(|| ApiError::not_found("Variable not found"))?;
    if let Some(value) = body.value {
        v.value = value;
    }
    if let Some(tags) = body.tags {
        v.tags = tags;
    }
    v.updated = Utc::now();
    headwater_core::validate_variable(&v).map_err(invalid)?;
    c.store.set_variable(&v).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_variable(State(c): State<Compat>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if c.store.delete_variable(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("Variable not found"))
    }
}

pub(super) async fn filter_variables(State(c): State<Compat>) -> Answer {
    let all = c.store.list_variables().await?;
    Ok((StatusCode::OK, Json(Value::Array(all.iter().map(variable_json).collect()))))
}

fn tag_limit_json(l: &ConcurrencyLimit) -> Value {
    json!({
        "id": named_id("limit", &l.name),
        "tag": l.name,
        "concurrency_limit": l.limit,
        "active_slots": [],
        "created": l.created,
        "updated": l.updated,
    })
}

#[derive(Deserialize)]
pub(super) struct TagLimitCreate {
    tag: String,
    concurrency_limit: u32,
}

/// `POST /concurrency_limits/` (`prefect concurrency-limit create TAG N`):
/// the tag's limit, Headwater's own.
pub(super) async fn create_tag_limit(
    State(c): State<Compat>,
    PrefectJson(body): PrefectJson<TagLimitCreate>,
) -> Answer {
    headwater_core::concurrency::validate_limit(&body.tag, body.concurrency_limit, None).map_err(invalid)?;
    let l = c.store.set_concurrency_limit(&body.tag, body.concurrency_limit, None).await?;
    Ok((StatusCode::OK, Json(tag_limit_json(&l))))
}

pub(super) async fn read_tag_limit(State(c): State<Compat>, Path(tag): Path<String>) -> Answer {
    let l = c
        .store
        .read_concurrency_limit(&tag)
        .await?
        .ok_or_else(|| ApiError::not_found("Concurrency limit not found"))?;
    Ok((StatusCode::OK, Json(tag_limit_json(&l))))
}

pub(super) async fn delete_tag_limit(State(c): State<Compat>, Path(tag): Path<String>) -> Result<StatusCode, ApiError> {
    if c.store.delete_concurrency_limit(&tag).await? {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found("Concurrency limit not found"))
    }
}

pub(super) async fn filter_tag_limits(State(c): State<Compat>) -> Answer {
    let all = c.store.list_concurrency_limits().await?;
    Ok((StatusCode::OK, Json(Value::Array(all.iter().map(tag_limit_json).collect()))))
}

fn work_pool_json(p: &WorkPool, c: &Compat) -> Value {
    let template = c.job_templates.lock().expect("not poisoned").get(&p.name).cloned().unwrap_or_else(|| json!({}));
    json!({
        "id": named_id("work-pool", &p.name),
        "name": p.name,
        "description": null,
        "type": p.kind.to_string(),
        "base_job_template": template,
        "is_paused": p.paused,
        "concurrency_limit": p.concurrency_limit,
        "status": if p.paused { "PAUSED" } else { "READY" },
        "default_queue_id": named_id("work-queue", &format!("{}/{}", p.name, headwater_core::work_pool::DEFAULT_QUEUE)),
        "created": p.created,
        "updated": p.updated,
    })
}

#[derive(Deserialize)]
pub(super) struct WorkPoolCreate {
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    is_paused: bool,
    #[serde(default)]
    concurrency_limit: Option<u32>,
}

/// `POST /work_pools/` (`prefect work-pool create P --type process`): a
/// Headwater pool of the process or docker kind.
pub(super) async fn create_work_pool(
    State(c): State<Compat>,
    PrefectJson(body): PrefectJson<WorkPoolCreate>,
) -> Answer {
    let kind = match body.kind.as_deref().unwrap_or("process") {
        "process" => WorkPoolKind::Process,
        "docker" => WorkPoolKind::Docker,
        other => return Err(invalid(format!("type: Headwater's pools are 'process' or 'docker', not '{other}'"))),
    };
    if body.name.trim().is_empty() {
        return Err(invalid("name: a work pool needs a name"));
    }
    if c.store.read_work_pool(&body.name).await?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("A work pool named {:?} already exists.", body.name)));
    }
    let mut pool = WorkPool::new(&body.name, kind, Utc::now());
    pool.paused = body.is_paused;
    pool.concurrency_limit = body.concurrency_limit;
    let pool = c.store.apply_work_pool(&pool).await?;
    Ok((StatusCode::CREATED, Json(work_pool_json(&pool, &c))))
}

pub(super) async fn read_work_pool(State(c): State<Compat>, Path(name): Path<String>) -> Answer {
    let p = c.store.read_work_pool(&name).await?.ok_or_else(|| ApiError::not_found("Work pool not found."))?;
    Ok((StatusCode::OK, Json(work_pool_json(&p, &c))))
}

/// `PATCH /work_pools/{name}`: pausing, the limit, and the job template a
/// Prefect worker sets on a pool that has none.
pub(super) async fn update_work_pool(
    State(c): State<Compat>,
    Path(name): Path<String>,
    PrefectJson(body): PrefectJson<serde_json::Map<String, Value>>,
) -> Result<StatusCode, ApiError> {
    let mut pool = c.store.read_work_pool(&name).await?.ok_or_else(|| ApiError::not_found("Work pool not found."))?;
    if let Some(t) = body.get("base_job_template").filter(|t| t.is_object()) {
        c.job_templates.lock().expect("not poisoned").insert(name.clone(), t.clone());
    }
    let mut changed = false;
    if let Some(p) = body.get("is_paused").and_then(Value::as_bool) {
        pool.paused = p;
        changed = true;
    }
    if body.contains_key("concurrency_limit") {
        pool.concurrency_limit = body.get("concurrency_limit").and_then(Value::as_u64).map(|l| l as u32);
        changed = true;
    }
    if changed {
        pool.updated = Utc::now();
        c.store.apply_work_pool(&pool).await?;
        c.wake.notify_waiters();
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn filter_work_pools(State(c): State<Compat>) -> Answer {
    let all = c.store.list_work_pools().await?;
    Ok((StatusCode::OK, Json(Value::Array(all.iter().map(|p| work_pool_json(p, &c)).collect()))))
}

/// `GET /collections/views/aggregate-worker-metadata`: the worker types a
/// pool may have, with their (empty) job templates.
pub(super) async fn worker_metadata() -> Json<Value> {
    let kind = |name: &str, description: &str| {
        json!({
            "type": name,
            "display_name": name,
            "description": description,
            "default_base_job_configuration": {"job_configuration": {}, "variables": {"properties": {}}},
        })
    };
    Json(json!({"prefect": {
        "process": kind("process", "Runs each flow run as a process on the worker's machine."),
        "docker": kind("docker", "Runs each flow run as a container on the worker's Docker engine."),
    }}))
}
