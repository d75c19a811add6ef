//! Cache policies and keys for task results.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a task's cache key is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CachePolicy {
    /// No caching: the task always runs.
    #[default]
    None,
    /// The task's name and its inputs.
    Inputs,
    /// The task's name and the source of its body: any edit invalidates.
    TaskSource,
    /// Inputs and source together.
    InputsAndSource,
    /// A key computed by a function the user gives.
    Custom,
}

impl CachePolicy {
    pub fn uses_inputs(self) -> bool {
        matches!(self, CachePolicy::Inputs | CachePolicy::InputsAndSource)
    }
    pub fn uses_source(self) -> bool {
        matches!(self, CachePolicy::TaskSource | CachePolicy::InputsAndSource)
    }
}

/// A cache key: a blake3 digest in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey(pub String);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Computes the key for one call of a task.
///
/// `inputs` is the canonical serialization of the arguments (used by the
/// input policies), `source_hash` the digest of the task body taken at
/// compile time, `custom` the user's key. Each part is length-prefixed so
/// that no two different combinations hash the same.
pub fn cache_key(
    task: &str,
    policy: CachePolicy,
    source_hash: &str,
    inputs: Option<&[u8]>,
    custom: Option<&str>,
) -> Option<CacheKey> {
    if policy == CachePolicy::None {
        return None;
    }
    let mut h = blake3::Hasher::new();
    let mut part = |tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part("task", task.as_bytes());
    if policy.uses_source() {
        part("source", source_hash.as_bytes());
    }
    if policy.uses_inputs() {
        part("inputs", inputs.unwrap_or_default());
    }
    if policy == CachePolicy::Custom {
        part("custom", custom.unwrap_or_default().as_bytes());
    }
    Some(CacheKey(h.finalize().to_hex().to_string()))
}

/// The key under which a task call's result is kept for later attempts of
/// the same flow run: the n-th call (`occurrence`) of that task, with those
/// inputs and that source, in that run. A retried run finds the calls that
/// completed before and does not redo them.
pub fn completed_call_key(
    flow_run: uuid::Uuid,
    task: &str,
    source_hash: &str,
    inputs: Option<&[u8]>,
    occurrence: u64,
) -> CacheKey {
    let mut h = blake3::Hasher::new();
    for (tag, bytes) in [
        ("run", flow_run.as_bytes().as_slice()),
        ("task", task.as_bytes()),
        ("source", source_hash.as_bytes()),
        ("inputs", inputs.unwrap_or(b"-")),
        ("occurrence", &occurrence.to_le_bytes()),
    ] {
        h.update(tag.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    CacheKey(format!("run-{}", h.finalize().to_hex()))
}

/// When an entry written at `created` stops being valid.
pub fn expires_at(created: DateTime<Utc>, expiration: Option<Duration>) -> Option<DateTime<Utc>> {
    expiration.and_then(|d| chrono::Duration::from_std(d).ok().map(|d| created + d))
}

/// Whether an entry that expires at `expires` may be used at `now`.
pub fn is_fresh(expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires.is_none_or(|e| now < e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_policy_no_key() {
        assert_eq!(cache_key("t", CachePolicy::None, "s", Some(b"1"), None), None);
    }

    #[test]
    fn inputs_policy_depends_on_inputs_and_name_only() {
        let a = cache_key("fetch", CachePolicy::Inputs, "src1", Some(b"[\"u\"]"), None);
        let b = cache_key("fetch", CachePolicy::Inputs, "src2", Some(b"[\"u\"]"), None);
        let c = cache_key("fetch", CachePolicy::Inputs, "src1", Some(b"[\"v\"]"), None);
        let d = cache_key("clean", CachePolicy::Inputs, "src1", Some(b"[\"u\"]"), None);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(a.unwrap().0.len(), 64);
    }

    #[test]
    fn source_policy_ignores_inputs() {
        let a = cache_key("t", CachePolicy::TaskSource, "src1", Some(b"1"), None);
        let b = cache_key("t", CachePolicy::TaskSource, "src1", Some(b"2"), None);
        let c = cache_key("t", CachePolicy::TaskSource, "src2", Some(b"1"), None);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let both1 = cache_key("t", CachePolicy::InputsAndSource, "src1", Some(b"1"), None);
        let both2 = cache_key("t", CachePolicy::InputsAndSource, "src1", Some(b"2"), None);
        assert_ne!(both1, both2);
    }

    #[test]
    fn parts_cannot_run_into_each_other() {
        let a = cache_key("ab", CachePolicy::Custom, "", None, Some("c"));
        let b = cache_key("a", CachePolicy::Custom, "", None, Some("bc"));
        assert_ne!(a, b);
    }

    #[test]
    fn expiry() {
        let t0 = DateTime::parse_from_rfc3339("2021-01-01T00:00:00Z").unwrap().to_utc();
        let exp = expires_at(t0, Some(Duration::from_secs(86_400)));
        assert!(is_fresh(exp, t0 + chrono::Duration::hours(23)));
        assert!(!is_fresh(exp, t0 + chrono::Duration::hours(24)));
        assert!(is_fresh(expires_at(t0, None), t0 + chrono::Duration::days(9999)));
    }
}
