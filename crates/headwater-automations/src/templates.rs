//! Message templates (minijinja) and what they can use.

use headwater_core::{Action, Automation, AutomationEvent};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{json, Value};

/// Says what happened, with a link to the run when there is one.
pub(crate) const DEFAULT_BODY: &str = "{{ event.summary }}{% if flow_run %}\n{{ flow_run.url }}{% endif %}";
/// Slack's link syntax: `<url|text>`.
pub(crate) const DEFAULT_SLACK_BODY: &str =
    "{{ event.summary }}{% if flow_run %}\n<{{ flow_run.url }}|View {{ flow_run.name }} in Headwater>{% endif %}";
pub(crate) const DEFAULT_SUBJECT: &str = "Headwater: {{ event.summary }}";

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A misspelt variable renders empty rather than failing every delivery;
    // `check_templates` catches syntax errors up front.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env
}

/// Checks the syntax of every template of the automation; the error names
/// the action and field.
pub fn check_templates(automation: &Automation) -> Result<(), String> {
    let env = environment();
    for (i, a) in automation.actions.iter().enumerate() {
        if let Action::Notify { subject, body, .. } = a {
            for (field, t) in [("subject", subject), ("body", body)] {
                if let Some(t) = t {
                    env.template_from_str(t).map_err(|e| format!("actions[{i}].{field}: {e}"))?;
                }
            }
        }
    }
    Ok(())
}

/// What templates see: `automation`, `event`, `flow_run` (with `url`),
/// `flow`, `deployment`, `state`, `work_pool`, `worker`, `partition`.
pub(crate) fn context(automation: &str, event: &AutomationEvent, ui_url: &str) -> Value {
    let ui = ui_url.trim_end_matches('/');
    let flow_run = event.flow_run.as_ref().map(|r| {
        let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
        v["url"] = json!(format!("{ui}/runs/{}", r.id));
        v
    });
    json!({
        "automation": {"name": automation},
        "event": {"kind": event.kind, "summary": event.summary, "occurred": event.occurred, "key": event.key},
        "flow_run": flow_run,
        "flow": event.flow_run.as_ref().map(|r| json!({"name": r.flow_name})),
        "deployment": event.deployment.as_ref().map(|d| json!({"name": d, "url": format!("{ui}/deployments/{d}")})),
        "state": event.state.as_ref().map(|s| json!({
            "type": s.state_type.as_str(), "name": s.name, "message": s.message, "timestamp": s.timestamp
        })),
        "work_pool": event.work_pool,
        "worker": event.worker,
        "partition": event.partition,
        "dataset": event.dataset,
        "ui_url": ui,
    })
}

pub(crate) fn render(template: &str, context: &Value) -> Result<String, String> {
    environment().render_str(template, context).map_err(|e| format!("the template does not render: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use headwater_core::{FlowRun, State};

    #[test]
    fn defaults_say_what_happened_with_a_link() {
        let now = Utc::now();
        let run = FlowRun {
            flow_id: uuid::Uuid::nil(),
            parameters: json!({"month": 3}),
            ..FlowRun::new(uuid::Uuid::nil(), "etl", "brave-otter", State::failed(now, "boom"), now)
        };
        let event = AutomationEvent {
            kind: "flow-run-state".into(),
            key: "state:1".into(),
            occurred: now,
            summary: "Flow run 'brave-otter' of 'etl' entered Failed: boom".into(),
            state: Some(run.state.clone()),
            flow_run: Some(run),
            deployment: Some("etl-nightly".into()),
            work_pool: None,
            worker: None,
            partition: None,
            dataset: None,
        };
        let ctx = context("on-failure", &event, "http://hw.example:4200/");
        let text = render(DEFAULT_SLACK_BODY, &ctx).unwrap();
        let url = "http://hw.example:4200/runs/00000000-0000-0000-0000-000000000000";
        assert_eq!(
            text,
            format!("Flow run 'brave-otter' of 'etl' entered Failed: boom\n<{url}|View brave-otter in Headwater>")
        );
        let custom = "{{ flow.name }}/{{ flow_run.name }} month {{ flow_run.parameters.month }} is {{ state.type }} \
                      ({{ deployment.name }}){{ nothing.here }}";
        assert_eq!(render(custom, &ctx).unwrap(), "etl/brave-otter month 3 is FAILED (etl-nightly)");
    }

    #[test]
    fn template_syntax_errors_name_the_action() {
        let a: Automation = serde_json::from_value(json!({
            "name": "x",
            "trigger": {"type": "flow-run-state", "states": ["Failed"]},
            "actions": [{"type": "cancel-run"}, {"type": "notify", "block": "b", "body": "{% if %}"}]
        }))
        .unwrap();
        let e = check_templates(&a).unwrap_err();
        assert!(e.starts_with("actions[1].body: "), "{e}");
    }
}
