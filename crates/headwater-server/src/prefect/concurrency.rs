//! Concurrency slots as Prefect's client takes them: a task with tags asks
//! for `tag:<tag>` slots with a lease before it runs (and renews and
//! releases it). They are Headwater's own limits and leases: a limit made
//! with `headwater concurrency-limit create report 2` holds Prefect tasks
//! tagged `report` too.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use headwater_core::{Acquired, SlotRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Compat, PrefectJson};
use crate::error::ApiError;

/// How long a full limit tells the client to wait before asking again.
const RETRY_AFTER_SECONDS: &str = "0.5";

/// Prefect names a tag's limit `tag:<tag>`; Headwater names it by the tag.
fn headwater_name(prefect_name: &str) -> &str {
    prefect_name.strip_prefix("tag:").unwrap_or(prefect_name)
}

/// A limit's id for Prefect: Headwater keys limits by name.
fn limit_id(name: &str) -> Uuid {
    let digest = blake3::hash(format!("headwater-limit:{name}").as_bytes());
    Uuid::from_slice(&digest.as_bytes()[..16]).expect("16 bytes")
}

fn default_lease() -> f64 {
    300.0
}

#[derive(Deserialize)]
pub(super) struct IncrementWithLease {
    names: Vec<String>,
    slots: u32,
    #[serde(default = "default_lease")]
    lease_duration: f64,
    #[serde(default)]
    holder: Option<Value>,
}

fn lease_ms(seconds: f64) -> Result<u64, ApiError> {
    if !(seconds.is_finite() && (1.0..=86_400.0).contains(&seconds)) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "lease_duration: between 1 and 86400 seconds"));
    }
    Ok((seconds * 1000.0) as u64)
}

/// `POST /v2/concurrency_limits/increment-with-lease`: all the slots or
/// none; 423 with `Retry-After` while a limit is full (the client waits
/// and asks again). Names without a limit are not limited: the answer
/// lists only the limits that hold.
pub(super) async fn increment_with_lease(
    State(c): State<Compat>,
    PrefectJson(body): PrefectJson<IncrementWithLease>,
) -> Result<Response, ApiError> {
    if body.slots == 0 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "slots: at least 1"));
    }
    let holder = match &body.holder {
        Some(h) => format!(
            "prefect {} {}",
            h.get("type").and_then(Value::as_str).unwrap_or("holder"),
            h.get("id").and_then(Value::as_str).unwrap_or("")
        ),
        None => "prefect client".to_string(),
    };
    let request = SlotRequest {
        slots: body.names.iter().map(|n| (headwater_name(n).to_string(), body.slots)).collect(),
        holder,
        ttl_ms: lease_ms(body.lease_duration)?,
    };
    match c.store.acquire_slots(&request).await? {
        Acquired::Granted { lease } => {
            let mut limits = Vec::new();
            for (name, _) in &lease.slots {
                if let Some(l) = c.store.read_concurrency_limit(name).await? {
                    let prefect_name = body.names.iter().find(|n| headwater_name(n) == name).unwrap_or(name);
                    limits.push(json!({"id": limit_id(name), "name": prefect_name, "limit": l.limit}));
                }
            }
            Ok(Json(json!({"lease_id": lease.id, "limits": limits})).into_response())
        }
        Acquired::Full { name, limit, active } => {
            let detail = format!("Concurrency limit '{name}' is full ({active} of {limit} slots in use)");
            let mut response = ApiError::new(StatusCode::LOCKED, detail).into_response();
            response.headers_mut().insert("Retry-After", HeaderValue::from_static(RETRY_AFTER_SECONDS));
            Ok(response)
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Renew {
    #[serde(default = "default_lease")]
    lease_duration: f64,
}

/// `POST /v2/concurrency_limits/leases/{id}/renew`: 204, or 410 once the
/// lease expired (its slots may be someone else's by now).
pub(super) async fn renew_lease(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
    body: Option<PrefectJson<Renew>>,
) -> Result<StatusCode, ApiError> {
    let seconds = body.map_or_else(default_lease, |b| b.0.lease_duration);
    if c.store.renew_lease(id, lease_ms(seconds)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::GONE, "the lease expired or was released"))
    }
}

#[derive(Deserialize)]
pub(super) struct Decrement {
    lease_id: Uuid,
}

/// `POST /v2/concurrency_limits/decrement-with-lease`: frees the lease's
/// slots; releasing twice is harmless.
pub(super) async fn decrement_with_lease(
    State(c): State<Compat>,
    PrefectJson(body): PrefectJson<Decrement>,
) -> Result<StatusCode, ApiError> {
    c.store.release_lease(body.lease_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tag_limits_are_headwaters_tag_limits() {
        assert_eq!(super::headwater_name("tag:report"), "report");
        assert_eq!(super::headwater_name("warehouse"), "warehouse");
        assert_eq!(super::limit_id("report"), super::limit_id("report"));
    }
}
