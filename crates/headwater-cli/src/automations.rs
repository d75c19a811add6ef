//! `headwater automation …`: triggers and actions, with how their
//! deliveries went.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;
use comfy_table::{presets, Table};
use headwater_core::{parse_automations, Action, Automation, Trigger};
use headwater_store::Store;
use serde_json::Value;

#[derive(Subcommand)]
pub enum AutomationCmd {
    /// Create or replace automations from a YAML or JSON file: one
    /// automation, a list of them, or a headwater.yaml with `automations:`.
    Create {
        #[arg(long, short)]
        file: PathBuf,
    },
    /// List automations with their last delivery and last error.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// One automation and its recent deliveries, as JSON.
    Inspect {
        name: String,
        /// How many recent deliveries to show.
        #[arg(long, default_value_t = 10)]
        deliveries: u32,
    },
    /// Stop an automation noticing events (those while paused are not caught up).
    Pause { name: String },
    /// Let a paused automation notice events again.
    Resume { name: String },
    /// Remove an automation and its deliveries.
    Delete { name: String },
}

pub async fn run(cmd: AutomationCmd, store: &dyn Store) -> Result<()> {
    match cmd {
        AutomationCmd::Create { file } => {
            let shown = file.display().to_string();
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {shown}"))?;
            let document: Value = serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
            let document = match document {
                Value::Object(m) if m.contains_key("automations") => Value::Object(m),
                Value::Array(list) => serde_json::json!({ "automations": list }),
                one => serde_json::json!({ "automations": [one] }),
            };
            let automations = read_automations(&shown, &document)?;
            if automations.is_empty() {
                bail!("{shown} declares no automations");
            }
            apply(store, &automations).await?;
        }
        AutomationCmd::Ls { json } => {
            let automations = store.list_automations().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&automations)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec![
                "NAME",
                "TRIGGER",
                "ACTIONS",
                "ENABLED",
                "DELIVERED",
                "PENDING",
                "FAILED",
                "LAST DELIVERY",
                "LAST ERROR",
            ]);
            for a in &automations {
                let s = &a.status;
                let error = match (&s.last_error, s.last_error_at) {
                    (Some(e), Some(at)) => format!("{} {}", at.format("%m-%d %H:%M:%S"), shorten(e, 70)),
                    (Some(e), None) => shorten(e, 70),
                    _ => "-".into(),
                };
                t.add_row(vec![
                    a.name.clone(),
                    trigger_words(&a.trigger),
                    a.actions.iter().map(action_words).collect::<Vec<_>>().join(", "),
                    if a.enabled { "yes".into() } else { "paused".into() },
                    s.delivered.to_string(),
                    s.pending.to_string(),
                    s.failed.to_string(),
                    s.last_delivered.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
                    error,
                ]);
            }
            println!("{t}");
        }
        AutomationCmd::Inspect { name, deliveries } => {
            let a = store.read_automation(&name).await?.with_context(|| missing(&name))?;
            let recent = store.list_deliveries(&name, deliveries).await?;
            let shown = serde_json::json!({ "automation": a, "recent_deliveries": recent });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        AutomationCmd::Pause { name } => {
            store.set_automation_enabled(&name, false).await?.with_context(|| missing(&name))?;
            println!("Paused automation '{name}'");
        }
        AutomationCmd::Resume { name } => {
            store.set_automation_enabled(&name, true).await?.with_context(|| missing(&name))?;
            println!("Resumed automation '{name}'");
        }
        AutomationCmd::Delete { name } => {
            if !store.delete_automation(&name).await? {
                bail!("{}", missing(&name));
            }
            println!("Deleted automation '{name}'");
        }
    }
    Ok(())
}

fn missing(name: &str) -> String {
    format!("no automation named '{name}' (see `headwater automation ls`)")
}

/// The `automations:` of a document, checked (templates included).
pub fn read_automations(file: &str, document: &Value) -> Result<Vec<Automation>> {
    let automations = parse_automations(file, document, Utc::now())?;
    for (i, a) in automations.iter().enumerate() {
        headwater_automations::check_templates(a)
            .map_err(|e| anyhow::anyhow!("{file}: automations[{i}] ({}).{e}", a.name))?;
    }
    Ok(automations)
}

/// Saves automations, saying what each watches for.
pub async fn apply(store: &dyn Store, automations: &[Automation]) -> Result<()> {
    for a in automations {
        let saved = store.apply_automation(a).await?;
        println!(
            "Automation '{}': on {} → {}",
            saved.name,
            trigger_words(&saved.trigger),
            saved.actions.iter().map(action_words).collect::<Vec<_>>().join(", ")
        );
        if let Some(Action::Notify { block, .. }) =
            saved.actions.iter().find(|a| matches!(a, Action::Notify { block, .. } if !block.is_empty()))
        {
            if store.read_block(block, false).await?.is_none() {
                eprintln!("warning: there is no block named '{block}' yet; its messages will fail until there is");
            }
        }
    }
    Ok(())
}

fn shorten(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}

fn trigger_words(t: &Trigger) -> String {
    let secs = |s: headwater_core::automation::Seconds| format!("{}s", s.0);
    let only = |what: &str, names: &Vec<String>| {
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({what} {})", names.join(", "))
        }
    };
    match t {
        Trigger::FlowRunState { states, flows, deployments, tags, work_pools } => format!(
            "run {}{}{}{}{}",
            states.join("/"),
            only("flows", flows),
            only("deployments", deployments),
            only("tags", tags),
            only("pools", work_pools)
        ),
        Trigger::FlowRunSla { after, flows, deployments, .. } => {
            format!(
                "run unfinished {} after due{}{}",
                secs(*after),
                only("flows", flows),
                only("deployments", deployments)
            )
        }
        Trigger::WorkPoolOffline { work_pools, after } => {
            format!("pool offline {}{}", secs(*after), only("pools", work_pools))
        }
        Trigger::WorkerOffline { work_pools, after } => {
            format!("worker offline {}{}", secs(*after), only("pools", work_pools))
        }
        Trigger::DeploymentNoSuccess { deployments, within } => {
            format!("no success in {}{}", secs(*within), only("deployments", deployments))
        }
        Trigger::DatasetStale { deployments, datasets } => {
            format!("partition stale{}{}", only("deployments", deployments), only("datasets", datasets))
        }
    }
}

fn action_words(a: &Action) -> String {
    match a {
        Action::Notify { block, .. } => format!("notify {block}"),
        Action::RunDeployment { deployment, .. } => {
            format!("run {}", deployment.as_deref().unwrap_or("its deployment"))
        }
        Action::PauseSchedule { deployment } => {
            format!("pause schedule of {}", deployment.as_deref().unwrap_or("its deployment"))
        }
        other => other.kind().to_string(),
    }
}
