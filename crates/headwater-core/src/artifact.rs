//! Variables (named JSON values for flows and manifests) and artifacts
//! (what runs publish for people: markdown, tables, links).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A named JSON value, set from the CLI or API and read by flows and
/// `{{ variables.NAME }}` in headwater.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Variable {
    #[schema(pattern = "^[a-z0-9_-]{1,255}$")]
    pub name: String,
    /// Any JSON value.
    #[schema(value_type = serde_json::Value)]
    pub value: Value,
    #[serde(default)]
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// Values are kept small: they travel with every manifest and API answer.
pub const MAX_VARIABLE_BYTES: usize = 64 * 1024;

/// Checks a variable before it is stored; the message says what to change.
pub fn validate_variable(v: &Variable) -> Result<(), String> {
    check_name("variable name", &v.name, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')?;
    let size = v.value.to_string().len();
    if size > MAX_VARIABLE_BYTES {
        return Err(format!(
            "variable '{}' is {size} bytes; values are limited to {MAX_VARIABLE_BYTES} (keep large data in a block or the lake)",
            v.name
        ));
    }
    Ok(())
}

/// What an artifact shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// `data` is a markdown string.
    Markdown,
    /// `data` is a list of rows (objects with the same keys, or lists).
    Table,
    /// `data` is `{"url": …, "text": …}`.
    Link,
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::Markdown => "markdown",
            ArtifactKind::Table => "table",
            ArtifactKind::Link => "link",
        })
    }
}

impl FromStr for ArtifactKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "markdown" => Ok(ArtifactKind::Markdown),
            "table" => Ok(ArtifactKind::Table),
            "link" => Ok(ArtifactKind::Link),
            other => Err(format!("unknown artifact type '{other}' (expected markdown, table or link)")),
        }
    }
}

/// Something a run published. Artifacts with the same key are versions of
/// one thing (the newest is current); unkeyed ones belong to their run only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Artifact {
    pub id: Uuid,
    #[schema(pattern = "^[a-z0-9-]{1,255}$")]
    pub key: Option<String>,
    pub kind: ArtifactKind,
    #[schema(value_type = Object)]
    pub data: Value,
    pub description: Option<String>,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
    pub created: DateTime<Utc>,
}

/// Checks an artifact's key and that its data has its kind's shape.
pub fn validate_artifact(a: &Artifact) -> Result<(), String> {
    if let Some(key) = &a.key {
        check_name("artifact key", key, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')?;
    }
    let ok = match a.kind {
        ArtifactKind::Markdown => a.data.is_string(),
        ArtifactKind::Table => {
            a.data.as_array().is_some_and(|rows| rows.iter().all(Value::is_object) || rows.iter().all(Value::is_array))
        }
        ArtifactKind::Link => a.data.get("url").is_some_and(Value::is_string),
    };
    if !ok {
        let expected = match a.kind {
            ArtifactKind::Markdown => "a markdown string",
            ArtifactKind::Table => "a list of rows (all objects, or all lists)",
            ArtifactKind::Link => "an object with a \"url\" string",
        };
        return Err(format!("a {} artifact's data must be {expected}", a.kind));
    }
    Ok(())
}

/// What [`validate_artifact`] asks of `data` for each kind, as JSON Schema
/// (the API's document adds it to the artifact's own schema).
pub fn data_by_kind_schema() -> Value {
    let of = |kind: &str, data: Value| serde_json::json!({"properties": {"kind": {"const": kind}, "data": data}});
    serde_json::json!({"oneOf": [
        of("markdown", serde_json::json!({"type": "string"})),
        of("table", serde_json::json!({"anyOf": [
            {"type": "array", "items": {"type": "object"}},
            {"type": "array", "items": {"type": "array"}},
        ]})),
        of("link", serde_json::json!({"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}})),
    ]})
}

fn check_name(what: &str, name: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("a {what} is 1 to 255 characters long"));
    }
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        let rule =
            if allowed('_') { "lowercase letters, digits, '_' and '-'" } else { "lowercase letters, digits and '-'" };
        return Err(format!("{what} '{name}' contains '{bad}'; use only {rule}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_shapes_are_checked() {
        let now = Utc::now();
        let var = |name: &str, value| Variable { name: name.into(), value, tags: vec![], created: now, updated: now };
        assert!(validate_variable(&var("taxi_months", json!([1, 2]))).is_ok());
        let e = validate_variable(&var("Taxi Months", json!(1))).unwrap_err();
        assert!(e.contains("contains 'T'"), "{e}");
        let big = json!("x".repeat(MAX_VARIABLE_BYTES));
        assert!(validate_variable(&var("big", big)).unwrap_err().contains("limited to"));

        let art = |key: Option<&str>, kind, data| Artifact {
            id: Uuid::now_v7(),
            key: key.map(String::from),
            kind,
            data,
            description: None,
            flow_run_id: None,
            task_run_id: None,
            created: now,
        };
        assert!(validate_artifact(&art(Some("row-counts"), ArtifactKind::Table, json!([{"month": 1}]))).is_ok());
        assert!(validate_artifact(&art(None, ArtifactKind::Markdown, json!("# hi"))).is_ok());
        assert!(validate_artifact(&art(Some("row_counts"), ArtifactKind::Markdown, json!("x")))
            .unwrap_err()
            .contains("'_'"));
        let e = validate_artifact(&art(None, ArtifactKind::Table, json!([{"a": 1}, [1]]))).unwrap_err();
        assert!(e.contains("list of rows"), "{e}");
        assert!(validate_artifact(&art(None, ArtifactKind::Link, json!({"text": "x"}))).is_err());
        assert_eq!("table".parse::<ArtifactKind>().unwrap(), ArtifactKind::Table);
    }
}
