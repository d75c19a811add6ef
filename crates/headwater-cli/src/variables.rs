//! `headwater variable …` and `headwater artifact …`.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;
use comfy_table::{presets, Table};
use headwater_core::{validate_variable, Artifact, ArtifactKind, Variable};
use headwater_store::{ArtifactFilter, Store};
use serde_json::Value;

#[derive(Subcommand)]
pub enum VariableCmd {
    /// Set a variable. VALUE is read as JSON (`[1, 2]`, `42`, `{"a": 1}`),
    /// or taken as text if it is not JSON.
    Set {
        name: String,
        value: String,
        /// Tags to find it by (repeat for several); replaces existing tags.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Print a variable's value (as JSON).
    Get { name: String },
    /// List variables.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a variable.
    Delete { name: String },
}

pub async fn run_variable(cmd: VariableCmd, store: &dyn Store) -> Result<()> {
    match cmd {
        VariableCmd::Set { name, value, tags } => {
            let value: Value = serde_json::from_str(&value).unwrap_or(Value::String(value));
            let now = Utc::now();
            let existing = store.read_variable(&name).await?;
            let tags = if tags.is_empty() { existing.map(|v| v.tags).unwrap_or_default() } else { tags };
            let variable = Variable { name: name.clone(), value, tags, created: now, updated: now };
            validate_variable(&variable).map_err(anyhow::Error::msg)?;
            store.set_variable(&variable).await?;
            println!("Set variable '{name}' = {}", variable.value);
        }
        VariableCmd::Get { name } => {
            let v = store
                .read_variable(&name)
                .await?
                .with_context(|| format!("no variable named '{name}' (see `headwater variable ls`)"))?;
            println!("{}", serde_json::to_string_pretty(&v.value)?);
        }
        VariableCmd::Ls { json } => {
            let vars = store.list_variables().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&vars)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec!["NAME", "VALUE", "TAGS", "UPDATED"]);
            for v in &vars {
                let mut shown = v.value.to_string();
                if shown.len() > 60 {
                    shown = format!("{}…", shown.chars().take(59).collect::<String>());
                }
                t.add_row(vec![
                    v.name.clone(),
                    shown,
                    v.tags.join(", "),
                    v.updated.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]);
            }
            println!("{t}");
        }
        VariableCmd::Delete { name } => {
            if !store.delete_variable(&name).await? {
                bail!("no variable named '{name}'");
            }
            println!("Deleted variable '{name}'");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum ArtifactCmd {
    /// List artifacts: the current version of each key, or with --all every
    /// artifact (also unkeyed ones), newest first.
    Ls {
        /// Only those of this flow run.
        #[arg(long)]
        flow_run: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show the current version of a key (a table as a table), and its history.
    Inspect {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove every version of a key.
    Delete { key: String },
}

pub async fn run_artifact(cmd: ArtifactCmd, store: &dyn Store) -> Result<()> {
    match cmd {
        ArtifactCmd::Ls { flow_run, all, limit, json } => {
            let flow_run_id = match flow_run {
                Some(r) => Some(store.resolve_flow_run(&r).await?.id),
                None => None,
            };
            let filter = ArtifactFilter { key: None, flow_run_id, latest_only: !all, limit };
            let artifacts = store.list_artifacts(&filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&artifacts)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec![
                "KEY",
                "TYPE",
                "DESCRIPTION",
                "FLOW RUN",
                "CREATED",
            ]);
            for a in &artifacts {
                t.add_row(vec![
                    a.key.clone().unwrap_or_else(|| "-".into()),
                    a.kind.to_string(),
                    a.description.clone().unwrap_or_default(),
                    a.flow_run_id.map_or("-".into(), |id| id.to_string()),
                    a.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]);
            }
            println!("{t}");
        }
        ArtifactCmd::Inspect { key, json } => {
            let versions =
                store.list_artifacts(&ArtifactFilter { key: Some(key.clone()), ..Default::default() }).await?;
            let Some(current) = versions.first() else {
                bail!("no artifact with key '{key}' (see `headwater artifact ls`)");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
                return Ok(());
            }
            println!("Artifact  {key} ({}, {} version(s))", current.kind, versions.len());
            if let Some(d) = &current.description {
                println!("About     {d}");
            }
            if let Some(run) = current.flow_run_id {
                println!("Flow run  {run}");
            }
            println!("Created   {}\n", current.created.format("%Y-%m-%d %H:%M:%S UTC"));
            println!("{}", render(current));
        }
        ArtifactCmd::Delete { key } => {
            let n = store.delete_artifacts(&key).await?;
            if n == 0 {
                bail!("no artifact with key '{key}'");
            }
            println!("Deleted {n} version(s) of artifact '{key}'");
        }
    }
    Ok(())
}

/// An artifact for a terminal: markdown as written, a table as a table.
pub fn render(a: &Artifact) -> String {
    match a.kind {
        ArtifactKind::Markdown => a.data.as_str().unwrap_or_default().to_string(),
        ArtifactKind::Link => {
            let url = a.data.get("url").and_then(Value::as_str).unwrap_or_default();
            match a.data.get("text").and_then(Value::as_str) {
                Some(text) => format!("{text}: {url}"),
                None => url.to_string(),
            }
        }
        ArtifactKind::Table => {
            let rows = a.data.as_array().cloned().unwrap_or_default();
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY);
            let cell = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if rows.iter().all(Value::is_object) {
                // Columns in first-seen order across all rows.
                let mut columns: Vec<String> = Vec::new();
                for r in &rows {
                    for k in r.as_object().expect("checked").keys() {
                        if !columns.contains(k) {
                            columns.push(k.clone());
                        }
                    }
                }
                t.set_header(columns.clone());
                for r in &rows {
                    t.add_row(columns.iter().map(|c| r.get(c).map(cell).unwrap_or_default()).collect::<Vec<_>>());
                }
            } else {
                for r in &rows {
                    t.add_row(r.as_array().map(|cells| cells.iter().map(cell).collect::<Vec<_>>()).unwrap_or_default());
                }
            }
            t.to_string()
        }
    }
}
