//! A flow with its parameter types erased, so it can be run from JSON: what
//! `flows![...]` makes and the `App` and `serve` run.

use std::future::Future;

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;
use crate::spec::{parameter_schema, parse_parameters, FlowSpec};

type ErasedRun = Box<dyn Fn(Value) -> Result<LocalBoxFuture<'static, Result<(), String>>, Error>>;
type ErasedCheck = fn(Value) -> Result<(), Error>;

/// A flow, with its parameter types erased so it can be run from JSON.
/// Made by `headwater::flows![...]`.
pub struct FlowHandle {
    spec: &'static FlowSpec,
    schema: fn() -> Value,
    check: ErasedCheck,
    run: ErasedRun,
}

impl FlowHandle {
    pub fn new<P, F, Fut>(spec: &'static FlowSpec, f: F) -> FlowHandle
    where
        P: DeserializeOwned + JsonSchema + 'static,
        F: Fn(P) -> Fut + 'static,
        Fut: Future<Output = Result<(), String>> + 'static,
    {
        FlowHandle {
            spec,
            schema: parameter_schema::<P>,
            check: |value| parse_parameters::<P>(value).map(|_| ()),
            run: Box::new(move |value| {
                let params: P = parse_parameters(value)?;
                Ok(Box::pin(f(params)))
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    pub fn description(&self) -> Option<&'static str> {
        self.spec.description
    }

    /// The JSON Schema of the parameters, with the flow's defaults filled in.
    pub fn parameter_schema(&self) -> Value {
        let mut schema = (self.schema)();
        if let (Ok(defaults), Some(Value::Object(props))) =
            (self.spec.default_parameters(), schema.get_mut("properties"))
        {
            for (k, v) in defaults {
                if let Some(Value::Object(p)) = props.get_mut(&k) {
                    p.insert("default".into(), v);
                }
            }
        }
        schema
    }

    /// The parameters a run would get: the defaults, overridden by `given`.
    pub fn resolve_parameters(&self, given: Value) -> Result<Value, Error> {
        let mut merged = self.spec.default_parameters()?;
        match given {
            Value::Object(m) => merged.extend(m),
            Value::Null => {}
            other => return Err(Error::InvalidParameters(format!("parameters must be a JSON object, got {other}"))),
        }
        Ok(Value::Object(merged))
    }

    /// Validates `params` (after filling in defaults) without running
    /// anything: what `--check` and `headwater deploy` use.
    pub fn check_json(&self, params: Value) -> Result<(), Error> {
        (self.check)(self.resolve_parameters(params)?)
    }

    /// Validates `params` (after filling in defaults) and runs the flow.
    /// The outer error means the parameters were refused and no run was
    /// created.
    pub async fn run_json(&self, params: Value) -> Result<Result<(), String>, Error> {
        let fut = (self.run)(self.resolve_parameters(params)?)?;
        Ok(fut.await)
    }
}
