//! Concurrency limits: at most `limit` slots of a name in use at once,
//! across every flow, process and machine sharing a store. Task runs take
//! one slot of each of their tags that has a limit; code takes slots of any
//! limit by name (`headwater::concurrency`). Slots are held as leases that
//! expire unless renewed, so a process that dies never keeps a slot for
//! longer than its lease. A limit with a slot decay is a rate limit: a slot
//! taken is not given back but frees itself over time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::state::{State, StateType};

/// The state name of a task run waiting for a slot.
pub const AWAITING_SLOT: &str = "AwaitingConcurrencySlot";

/// A limit, with the slots in use when it was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConcurrencyLimit {
    /// A task tag, or any name code asks for.
    pub name: String,
    /// Slots that may be in use at once (0 stops everything that asks).
    pub limit: u32,
    /// For rate limits: how many slots free themselves per second.
    pub slot_decay_per_second: Option<f64>,
    /// Slots held by unexpired leases.
    #[serde(default)]
    pub active_slots: u32,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// What a holder asks for: slots of some limits, all or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlotRequest {
    /// Limit names and how many slots of each. Names without a limit are
    /// not limited (and not part of the lease).
    #[schema(schema_with = slot_pairs)]
    pub slots: Vec<(String, u32)>,
    /// Who holds them, for people reading the leases (a task run's name).
    pub holder: String,
    /// How long the lease lasts unless renewed (at most a day).
    #[schema(maximum = 86_400_000)]
    pub ttl_ms: u64,
}

/// `[["name", 2], …]`: each pair a limit's name and a count.
fn slot_pairs() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, Type};
    let name = ObjectBuilder::new().schema_type(Type::String).build();
    let count = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(u32::MAX)).build();
    let pair =
        ArrayBuilder::new().prefix_items([name, count]).items(ArrayItems::False).min_items(Some(2)).max_items(Some(2));
    ArrayBuilder::new().items(pair).build()
}

/// Slots held until `expires` (or release).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlotLease {
    pub id: Uuid,
    /// The limited names it holds slots of; empty when nothing asked for
    /// has a limit (there is nothing to renew or release then).
    #[schema(schema_with = slot_pairs)]
    pub slots: Vec<(String, u32)>,
    pub holder: String,
    pub expires: DateTime<Utc>,
}

/// The answer to a [`SlotRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Acquired {
    Granted {
        lease: SlotLease,
    },
    /// Not now: this limit has no room (nothing was taken).
    Full {
        name: String,
        limit: u32,
        active: u32,
    },
}

/// Checks a limit before it is stored; the message says what to change.
pub fn validate_limit(name: &str, limit: u32, slot_decay_per_second: Option<f64>) -> Result<(), String> {
    if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(format!("a concurrency limit's name is 1 to 255 printable characters, not '{name}'"));
    }
    if limit > 1_000_000 {
        return Err(format!("limit {limit} for '{name}' is above 1000000"));
    }
    if let Some(d) = slot_decay_per_second {
        if !(d.is_finite() && d > 0.0) {
            return Err(format!("slot_decay_per_second for '{name}' must be a positive number, not {d}"));
        }
    }
    Ok(())
}

/// Checks a request against the limits it names (`(name, limit)`): slots
/// that can never fit are refused instead of waited for forever.
pub fn check_request(request: &SlotRequest, limits: &[(String, u32)]) -> Result<(), String> {
    for (name, want) in &request.slots {
        if *want == 0 {
            return Err(format!("asking for 0 slots of '{name}'"));
        }
        if let Some((_, limit)) = limits.iter().find(|(n, _)| n == name) {
            if want > limit && *limit > 0 {
                return Err(format!("asking for {want} slots of '{name}', which allows {limit} at once"));
            }
        }
    }
    Ok(())
}

/// The longest a lease lasts without renewal: a day.
pub const MAX_LEASE_TTL_MS: u64 = 86_400_000;

/// A lease's time to live, refused above [`MAX_LEASE_TTL_MS`] (a holder
/// renews; a day-long lease would keep a crashed holder's slots a day).
pub fn lease_ttl(ttl_ms: u64) -> Result<chrono::Duration, String> {
    if ttl_ms > MAX_LEASE_TTL_MS {
        return Err(format!("ttl_ms {ttl_ms} is above {MAX_LEASE_TTL_MS} (a day); renew the lease instead"));
    }
    Ok(chrono::Duration::milliseconds(ttl_ms as i64))
}

/// How long one slot of a rate limit stays taken: `limit` slots freeing at
/// `decay` per second allow bursts of `limit` and `decay` per second after.
pub fn rate_slot_ms(limit: u32, decay: f64) -> u64 {
    ((f64::from(limit.max(1)) / decay) * 1000.0).ceil() as u64
}

/// A task run waiting for a slot.
pub fn awaiting_slot(at: DateTime<Utc>, name: &str, limit: u32, active: u32) -> State {
    State::new(StateType::Pending, AWAITING_SLOT, at)
        .with_message(format!("waiting for a slot of '{name}' ({active} of {limit} in use)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_requests_are_checked() {
        assert!(validate_limit("extract", 3, None).is_ok());
        assert!(validate_limit("api", 10, Some(2.5)).is_ok());
        assert!(validate_limit("", 3, None).unwrap_err().contains("1 to 255"));
        assert!(validate_limit("a\nb", 3, None).is_err());
        assert!(validate_limit("x", 3, Some(0.0)).unwrap_err().contains("positive"));
        assert!(validate_limit("x", 3, Some(f64::NAN)).is_err());
        let req = |n: u32| SlotRequest { slots: vec![("db".into(), n)], holder: "t".into(), ttl_ms: 1000 };
        let limits = [("db".to_string(), 2)];
        assert!(check_request(&req(2), &limits).is_ok());
        assert!(check_request(&req(3), &limits).unwrap_err().contains("allows 2"));
        assert!(check_request(&req(0), &limits).is_err());
        assert!(check_request(&req(5), &[]).is_ok(), "no limit, nothing to check");
    }

    #[test]
    fn rate_limit_slots_free_themselves_at_the_decay_rate() {
        // 10 slots freeing at 5 per second: each is taken for 2 s.
        assert_eq!(rate_slot_ms(10, 5.0), 2_000);
        assert_eq!(rate_slot_ms(1, 3.0), 334);
        let s = awaiting_slot(Utc::now(), "extract", 3, 3);
        assert_eq!((s.state_type, s.name.as_str()), (StateType::Pending, AWAITING_SLOT));
        assert!(s.message.unwrap().contains("3 of 3"));
    }
}
