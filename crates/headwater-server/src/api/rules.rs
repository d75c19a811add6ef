//! Rules the server enforces that the derived schemas do not say by
//! themselves, added to the OpenAPI document (each beside the code that
//! enforces it, in core, where it can be).

use headwater_core::partition::Granularity;
use serde_json::{json, Value};

pub(crate) fn add(doc: &mut Value) {
    // An externally tagged step (`{"git_clone": {…}}`) is one key: serde
    // refuses another beside it.
    component(doc, "PullStep", |s| {
        for variant in s["oneOf"].as_array_mut().into_iter().flatten() {
            variant["additionalProperties"] = json!(false);
            // `deny_unknown_fields` holds for the step's own fields too.
            for step in variant["properties"].as_object_mut().into_iter().flat_map(|p| p.values_mut()) {
                step["additionalProperties"] = json!(false);
            }
        }
    });
    // An artifact's data has its kind's shape (a markdown artifact's is a
    // string, not an object).
    component(doc, "Artifact", |s| {
        s["properties"]["data"] = json!({"description": "Its kind's shape: markdown text, a table's rows, a link."});
        *s = json!({"allOf": [s.take(), headwater_core::artifact::data_by_kind_schema()]});
    });
    // A time partition's labels have their granularity's form, in a zone
    // the server knows.
    component(doc, "TimePartitions", |s| {
        s["properties"]["timezone"] = json!({"$ref": "#/components/schemas/TimeZone"});
        let by_granularity: Vec<Value> = [Granularity::Hour, Granularity::Day, Granularity::Month]
            .into_iter()
            .map(|g| {
                let label = json!({"type": "string", "pattern": g.label_pattern()});
                json!({"properties": {"every": {"const": g}, "start": label, "end": {"oneOf": [{"type": "null"}, label]}}})
            })
            .collect();
        *s = json!({"allOf": [s.take(), {"oneOf": by_granularity}]});
    });
    component(doc, "Schedule", |s| {
        for variant in s["oneOf"].as_array_mut().into_iter().flatten() {
            variant["properties"]["timezone"] = json!({"$ref": "#/components/schemas/TimeZone"});
        }
    });
    insert(
        doc,
        "TimeZone",
        json!({
            "type": "string",
            "description": "An IANA time zone name.",
            "enum": headwater_core::schedule::time_zone_names().collect::<Vec<_>>(),
        }),
    );
    // Only SCHEDULED runs are enqueued.
    let body = &mut doc["paths"]["/flow_runs/enqueue"]["post"]["requestBody"]["content"]["application/json"];
    assert!(body.is_object(), "the document has no body for POST /flow_runs/enqueue");
    body["schema"] = json!({
        "type": "array",
        "items": {"allOf": [
            {"$ref": "#/components/schemas/FlowRun"},
            {"properties": {"state": {"properties": {"type": {"const": "SCHEDULED"}}}}},
        ]},
    });
}

fn insert(doc: &mut Value, name: &str, v: Value) {
    doc["components"]["schemas"][name] = v;
}

/// Edits the component `name`.
fn component(doc: &mut Value, name: &str, edit: impl FnOnce(&mut Value)) {
    let found = &mut doc["components"]["schemas"][name];
    assert!(found.is_object(), "the document has no schema {name}");
    edit(found);
}
