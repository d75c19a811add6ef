use headwater::prelude::*;
use headwater::{parse_parameters, Error};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::support::home;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Yellow,
    Green,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "u32", into = "u32")]
pub struct Month(u32);

impl TryFrom<u32> for Month {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        if (1..=12).contains(&v) {
            Ok(Month(v))
        } else {
            Err(format!("must be between 1 and 12, got {v}"))
        }
    }
}

impl From<Month> for u32 {
    fn from(m: Month) -> u32 {
        m.0
    }
}

#[flow(name = "etl-web-to-lake", defaults = r#"{"year": 2021}"#)]
async fn etl_web_to_lake(color: Color, year: i32, month: Month, note: Option<String>) -> Result<String> {
    Ok(format!("{color:?}-{year}-{}-{note:?}", month.0))
}

fn refused(params: serde_json::Value) -> (String, String) {
    match parse_parameters::<EtlWebToLakeParams>(params) {
        Err(Error::InvalidParameter { field, reason }) => (field, reason),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn bad_parameters_name_the_field_and_the_reason() {
    let (f, r) = refused(json!({"color": "purple", "year": 2021, "month": 1}));
    assert_eq!((f.as_str(), r.as_str()), ("color", "unknown variant `purple`, expected `yellow` or `green`"));
    let (f, r) = refused(json!({"color": "green", "year": 2021, "month": 13}));
    assert_eq!((f.as_str(), r.as_str()), ("month", "must be between 1 and 12, got 13"));
    let (f, r) = refused(json!({"color": "green", "year": "2021", "month": 1}));
    assert_eq!(f, "year");
    assert!(r.contains("expected i32"), "{r}");
    let (f, r) = refused(json!({"color": "green", "year": 2021}));
    assert_eq!((f.as_str(), r.as_str()), ("month", "is required but was not given"));
    let (f, r) = refused(json!({"color": "green", "year": 2021, "month": 1, "mnth": 2}));
    assert_eq!(f, "mnth");
    assert!(r.starts_with("is not a parameter of this flow (expected one of `color`, `year`, `month`"), "{r}");
    // Optional parameters may be left out.
    assert!(parse_parameters::<EtlWebToLakeParams>(json!({"color": "green", "year": 1, "month": 1})).is_ok());
}

#[tokio::test]
async fn a_refused_run_is_never_created_and_defaults_fill_in() {
    let h = home();
    let handle = headwater::flows![etl_web_to_lake].remove(0);
    let e = h.engine.scope(handle.run_json(json!({"color": "green", "month": 0}))).await.unwrap_err();
    assert_eq!(e.to_string(), "invalid parameter 'month': must be between 1 and 12, got 0");
    assert!(h.runs().await.is_empty(), "no run was created for refused parameters");

    h.engine.scope(handle.run_json(json!({"color": "green", "month": 2}))).await.unwrap().unwrap();
    let run = h.run_named("etl-web-to-lake").await;
    assert_eq!(run.parameters, json!({"color": "green", "year": 2021, "month": 2, "note": null}));

    let schema = handle.parameter_schema();
    assert_eq!(schema["properties"]["year"]["default"], 2021);
    assert_eq!(schema["properties"]["color"]["enum"], json!(["yellow", "green"]));
    let required: Vec<_> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(required.contains(&"color") && required.contains(&"month") && !required.contains(&"note"));
}
