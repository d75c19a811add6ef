//! What `#[flow]` fixes at compile time, and the parameters' schema and
//! parsing: what the engine, the runner and the `App` share.

use std::time::Duration;

use headwater_core::RetryPolicy;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;

/// A flow's options, fixed at compile time by `#[flow(...)]`.
#[derive(Debug)]
pub struct FlowSpec {
    pub name: &'static str,
    pub version: Option<&'static str>,
    pub description: Option<&'static str>,
    pub retries: u32,
    pub retry_delays_ms: &'static [u64],
    pub timeout_ms: Option<u64>,
    /// A template such as `"{color}-{year}-{month:02}"`.
    pub run_name: Option<&'static str>,
    pub tags: &'static [&'static str],
    /// Default parameter values as a JSON object, used when a run is
    /// started from JSON (the command line, a deployment) without them.
    pub defaults: Option<&'static str>,
}

impl FlowSpec {
    /// The defaults as a JSON object (empty if none were given).
    pub fn default_parameters(&self) -> Result<serde_json::Map<String, Value>, Error> {
        match self.defaults {
            None => Ok(serde_json::Map::new()),
            Some(text) => match serde_json::from_str(text) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(Error::InvalidParameters(format!(
                    "the defaults of flow '{}' are not a JSON object: {text}",
                    self.name
                ))),
            },
        }
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries,
            delays: self.retry_delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
            ..Default::default()
        }
    }
}

/// The JSON Schema of a parameter type, as stored with the flow.
///
/// Subschemas are inlined (no `$ref`s), so a form can be built from the
/// schema without resolving references.
pub fn parameter_schema<P: JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true);
    let schema = schemars::SchemaGenerator::new(settings).into_root_schema_for::<P>();
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

/// Parses JSON parameters into the flow's typed parameters. Errors name the
/// field and the problem, and happen before any run is created.
pub fn parse_parameters<P: DeserializeOwned>(value: Value) -> Result<P, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let mut reason = e.into_inner().to_string();
        if let Some(rest) = reason.strip_prefix("unknown field `") {
            let expected = rest.split_once(", expected ").map(|(_, r)| r.to_string());
            reason = match expected {
                Some(list) => format!("is not a parameter of this flow (expected {list})"),
                None => "is not a parameter of this flow (it takes none)".into(),
            };
            if path != "." && !path.is_empty() {
                return Error::InvalidParameter { field: path, reason };
            }
        }
        // Errors about the object itself (a missing or unknown field) come
        // with the root path; the field is named inside the message.
        if path == "." || path.is_empty() {
            if let Some(field) = backticked(&reason, "missing field `") {
                return Error::InvalidParameter { field, reason: "is required but was not given".into() };
            }
            return Error::InvalidParameters(reason);
        }
        Error::InvalidParameter { field: path, reason }
    })
}

fn backticked(text: &str, after: &str) -> Option<String> {
    let start = text.find(after)? + after.len();
    let len = text[start..].find('`')?;
    Some(text[start..start + len].to_string())
}
