//! API keys and the audit log: the capability the engines implement, and
//! how a key is made and recognised, decided here once.
//!
//! A key is `hw_` and 64 hexadecimal digits (256 random bits). The store
//! keeps its SHA-256 only: a key has enough entropy that a plain hash
//! cannot be reversed, and a lookup by hash needs no scan.

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use headwater_core::{ApiKey, AuditEntry, Role};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Result, StoreError};
use crate::secrets::to_hex;

const KEY_PREFIX: &str = "hw_";
/// How much of a key is kept to tell keys apart: `hw_` and 8 digits.
const SHOWN: usize = KEY_PREFIX.len() + 8;

/// A key just made: the only time its secret is seen.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedKey {
    pub key: ApiKey,
    /// The key to give to clients (`Authorization: Bearer …`); it is not
    /// stored and cannot be shown again.
    pub secret: String,
}

/// Which part of the audit log to read: newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only calls made with this key.
    #[param(max_length = 64)]
    pub key: Option<String>,
    /// Only entries before this one (the previous page's last id).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl AuditFilter {
    pub const MAX_LIMIT: u32 = 1000;

    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(100).clamp(1, Self::MAX_LIMIT)
    }
}

/// Named keys with a role, and the audit log.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Makes a key named `name`; refused if the name was ever used.
    async fn issue_api_key(&self, name: &str, role: Role, at: DateTime<Utc>) -> Result<IssuedKey>;
    /// Every key, revoked ones too, by name.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    /// Stops accepting the key; its name stays taken. None: no such key.
    async fn revoke_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<Option<ApiKey>>;
    /// The key `secret` is, if it is one and not revoked.
    async fn find_api_key(&self, secret: &str) -> Result<Option<ApiKey>>;
    /// Whether any key is accepted (then the server requires one).
    async fn has_api_keys(&self) -> Result<bool>;
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<()>;
    async fn read_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
}

/// A new random key.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("the system's random source works");
    format!("{KEY_PREFIX}{}", to_hex(&bytes))
}

/// What the store keeps of a key.
pub fn hash_secret(secret: &str) -> String {
    to_hex(ring::digest::digest(&ring::digest::SHA256, secret.trim().as_bytes()).as_ref())
}

/// A new key named `name`, and the hash the store keeps of it.
pub fn issue(name: &str, role: Role, at: DateTime<Utc>) -> Result<(IssuedKey, String)> {
    headwater_core::validate_key_name(name).map_err(StoreError::Refused)?;
    let secret = new_secret();
    let hash = hash_secret(&secret);
    // To the microsecond, as both engines keep times.
    let created = at.trunc_subsecs(6);
    let key = ApiKey { name: name.to_string(), role, prefix: secret[..SHOWN].to_string(), created, revoked: None };
    Ok((IssuedKey { key, secret }, hash))
}

/// The refusal of a name that is taken.
pub fn name_taken(name: &str) -> StoreError {
    StoreError::Refused(format!(
        "a key named '{name}' exists already (revoked keys keep their names, so the audit log never means two keys); \
         choose another name"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_kept_as_hashes() {
        let (a, hash) = issue("ci", Role::Run, Utc::now()).unwrap();
        let (b, _) = issue("ci", Role::Run, Utc::now()).unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("hw_") && a.secret.len() == 67, "{}", a.secret);
        assert!(a.secret.starts_with(&a.key.prefix) && a.key.prefix.len() == 11);
        assert_eq!(hash, hash_secret(&a.secret));
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&a.secret[3..]));
        assert!(issue("CI", Role::Run, Utc::now()).is_err());
    }
}
