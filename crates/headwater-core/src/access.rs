//! Who may do what: named API keys with a role, and the audit log of the
//! calls that changed something.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a key lets its holder do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything but secrets: the UI, dashboards, scrapers.
    Read,
    /// Also start, cancel and report runs: flows and workers.
    Run,
    /// Everything: deployments, pools, blocks (secrets revealed too),
    /// limits, automations, retention, keys and the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Read, Role::Run, Role::Admin];

    /// Whether a key of this role may make a call that needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Run => "run",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("'{s}' is not a role: read, run or admin"))
    }
}

/// A named API key as the store keeps it: never the key itself, only its
/// hash (kept by the store) and its first characters, to tell keys apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// Lowercase letters, digits, `_` and `-`; unique for ever (a revoked
    /// key keeps its name, so the audit log never means two keys).
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub name: String,
    pub role: Role,
    /// The key's first characters (`hw_` and 8 more).
    pub prefix: String,
    pub created: DateTime<Utc>,
    /// When it stopped being accepted; none while it is.
    pub revoked: Option<DateTime<Utc>>,
}

/// The longest key name.
pub const MAX_KEY_NAME: usize = 64;

pub fn validate_key_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_KEY_NAME {
        return Err(format!("a key's name is 1 to {MAX_KEY_NAME} characters long"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(format!("key name '{name}' contains '{bad}'; use only lowercase letters, digits, '_' and '-'"));
    }
    Ok(())
}

/// One call that changed something (or revealed a secret), as the audit
/// log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Its place in the log (0 until recorded).
    #[serde(default)]
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The key's name: a named key's, `HEADWATER_API_KEY` for the
    /// server's configured key; none when the server requires no key.
    pub key: Option<String>,
    pub method: String,
    /// The path called, without its query.
    pub path: String,
    /// The HTTP status it was answered with.
    #[schema(maximum = 65535)]
    pub status: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_before_them() {
        assert!(Role::Admin.allows(Role::Run) && Role::Admin.allows(Role::Read));
        assert!(Role::Run.allows(Role::Read) && Role::Run.allows(Role::Run));
        assert!(!Role::Run.allows(Role::Admin) && !Role::Read.allows(Role::Run));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("owner".parse::<Role>().unwrap_err().contains("read, run or admin"));
    }

    #[test]
    fn key_names_are_plain() {
        assert!(validate_key_name("grafana-ro_1").is_ok());
        assert!(validate_key_name("").is_err());
        assert!(validate_key_name("Grafana").unwrap_err().contains("'G'"));
        assert!(validate_key_name(&"a".repeat(65)).is_err());
    }
}
