//! `headwater deploy` and `headwater deployment …`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use headwater_core::{flow_id_for_name, parse_manifest_with, Deployment, Flow, Templates};
use headwater_store::ops::{start_deployment_run, DeploymentRunError, DeploymentRunRequest};
use headwater_store::{Store, WriteBatch};
use serde_json::Value;

#[derive(Args)]
pub struct DeployArgs {
    /// Deployments to apply (default: the only one in the file).
    names: Vec<String>,
    /// Apply every deployment in the file.
    #[arg(long, conflicts_with = "names")]
    all: bool,
    /// The manifest.
    #[arg(long, short, default_value = "headwater.yaml")]
    file: PathBuf,
    /// Do not run the entrypoint to check the parameters (for example when
    /// the flow program only exists inside a container image).
    #[arg(long)]
    no_check: bool,
}

#[derive(Subcommand)]
pub enum DeploymentCmd {
    /// List deployments.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a deployment, its schedules in words and their next runs.
    Inspect {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Stop scheduling runs of a deployment.
    Pause { name: String },
    /// Schedule runs of a deployment again.
    Resume { name: String },
    /// Remove a deployment (its past runs stay).
    Delete { name: String },
    /// Start a run now, with custom parameters: a worker of its pool runs it.
    Run {
        name: String,
        /// One parameter, NAME=VALUE (VALUE read as JSON if it parses).
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Parameters as a JSON object.
        #[arg(long = "params", value_name = "JSON")]
        json: Option<String>,
        /// Do not run the entrypoint to check the parameters first.
        #[arg(long)]
        no_check: bool,
    },
    /// A deployment's schedules.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
}

#[derive(Subcommand)]
pub enum ScheduleCmd {
    /// List a deployment's schedules (numbered from 0).
    Ls { name: String },
    /// Pause one schedule.
    Pause { name: String, index: usize },
    /// Resume one schedule.
    Resume { name: String, index: usize },
}

/// Reads, validates and applies the manifest's deployments.
pub async fn deploy(args: DeployArgs, store: &dyn Store) -> Result<()> {
    let shown = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).with_context(|| {
        format!("cannot read {shown} (run `headwater deploy` where headwater.yaml is, or pass --file)")
    })?;
    let document: Value = serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let env = |k: &str| std::env::var(k).ok();
    let known: std::collections::HashMap<String, Value> = if text.contains("variables.") {
        store.list_variables().await?.into_iter().map(|v| (v.name, v.value)).collect()
    } else {
        Default::default()
    };
    let variables = |name: &str| known.get(name).cloned();
    // Checked before anything is applied, so a bad automation stops the
    // deployments too.
    let automations = crate::automations::read_automations(&shown, &document)?;
    let datasets = headwater_core::parse_datasets(&shown, &document)?;
    let deployments = {
        let templates = Templates { env: &env, variables: &variables };
        parse_manifest_with(&shown, document, &templates, Utc::now())?
    };
    let chosen: Vec<Deployment> = if deployments.is_empty() && !(automations.is_empty() && datasets.is_empty()) {
        Vec::new()
    } else if args.all {
        deployments
    } else if args.names.is_empty() {
        match deployments.len() {
            1 => deployments,
            0 => bail!("{shown} declares no deployments"),
            _ => bail!(
                "{shown} declares several deployments ({}); name the ones to apply or pass --all",
                deployments.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    } else {
        let mut out = Vec::new();
        for n in &args.names {
            match deployments.iter().find(|d| &d.name == n) {
                Some(d) => out.push(d.clone()),
                None => bail!("{shown} has no deployment named '{n}'"),
            }
        }
        out
    };
    let base = args.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut schemas = Vec::new();
    if !args.no_check {
        for d in &chosen {
            let schema = parameter_schema(d, base)?;
            // The partition mapping first: its error names the mapping's field.
            if let (Some(p), Some(schema)) = (&d.partitions, &schema) {
                p.check_against_schema(schema, &d.parameters)
                    .map_err(|e| anyhow::anyhow!("{shown}: deployment '{}': {e}", d.name))?;
            }
            check_parameters(d, base)?;
            match schema {
                Some(schema) => schemas.push((d.flow_name.clone(), schema)),
                None => eprintln!(
                    "warning: deployment '{}': its entrypoint printed no parameter schema for --schema; \
                     the UI's custom run form shows the flow's parameters after its first run",
                    d.name
                ),
            }
        }
    }
    // The flow is known with its parameters from now on, so the UI's custom
    // run form has its fields before the flow's first run.
    register_flows(store, schemas).await?;
    for d in chosen {
        let stored = store.apply_deployment(&d).await?;
        println!("Deployment '{}' applied (flow '{}')", stored.name, stored.flow_name);
        for s in &stored.schedules {
            let state = if s.active { "" } else { " (paused)" };
            println!("  schedule: {}{state}", s.schedule.describe());
        }
        if stored.paused {
            println!("  the deployment is paused: `headwater deployment resume {}`", stored.name);
        }
    }
    for d in &datasets {
        store.set_dataset_policy(&d.name, Some(&d.policy()), Utc::now()).await?;
        let secs = d.freshness.within.0;
        let parts = [(secs / 86_400, "d"), (secs % 86_400 / 3_600, "h"), (secs % 3_600 / 60, "m"), (secs % 60, "s")];
        let within: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, u)| format!("{n}{u}")).collect();
        println!(
            "Dataset '{}': each {} partition is due {} after it ends",
            d.name,
            serde_json::to_value(d.time.every)?.as_str().unwrap_or_default(),
            if within.is_empty() { "0s".to_string() } else { within.join(" ") }
        );
    }
    crate::automations::apply(store, &automations).await?;
    Ok(())
}

/// Asks the flow program itself whether the parameters fit its types: the
/// same check a run makes, with the same messages.
fn check_parameters(d: &Deployment, base: &Path) -> Result<()> {
    let mut sets = match &d.partitions {
        None => vec![("parameters".to_string(), d.parameters.clone())],
        // A partitioned deployment's runs take part of their parameters
        // from their partition: check it with each static value.
        Some(p) => p
            .first_keys()
            .with_context(|| format!("deployment '{}'", d.name))?
            .iter()
            .map(|k| (format!("parameters (partition {k})"), d.merged_parameters(&Value::Object(p.parameters_for(k)))))
            .collect(),
    };
    for (i, s) in d.schedules.iter().enumerate() {
        let mut merged = d.parameters.as_object().cloned().unwrap_or_default();
        merged.extend(s.parameters.as_object().cloned().unwrap_or_default());
        sets.push((format!("schedules[{i}].parameters"), Value::Object(merged)));
    }
    for (field, params) in sets {
        check_one(d, base, &field, &params)?;
    }
    Ok(())
}

/// Runs `<entrypoint> --check --params …` for one parameter set. A
/// deployment without a command of its own (one a Prefect client made,
/// run by Prefect's worker) has no program to ask: its recorded schema is
/// the check.
fn check_one(d: &Deployment, base: &Path, field: &str, params: &Value) -> Result<()> {
    if d.entrypoint.is_empty() {
        return Ok(());
    }
    let out = run_entrypoint(d, base, &["--check", "--params", &params.to_string()])?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim_start_matches("error: ");
        bail!("deployment '{}', {field}: {why}", d.name);
    }
    Ok(())
}

/// The flow's parameters as JSON Schema (`<entrypoint> --schema`), with its
/// defaults; `None` when the program prints none (a wrapper that passed the
/// parameter check without being a Headwater flow program).
fn parameter_schema(d: &Deployment, base: &Path) -> Result<Option<Value>> {
    let out = run_entrypoint(d, base, &["--schema"])?;
    Ok(serde_json::from_slice::<Value>(&out.stdout).ok().filter(|s| out.status.success() && s.is_object()))
}

fn run_entrypoint(d: &Deployment, base: &Path, args: &[&str]) -> Result<std::process::Output> {
    let Some(program) = d.entrypoint.first() else {
        bail!("deployment '{}' has no entrypoint to run", d.name);
    };
    let resolved =
        if program.contains('/') && Path::new(program).is_relative() { base.join(program) } else { program.into() };
    Command::new(&resolved).args(&d.entrypoint[1..]).args(args).current_dir(base).output().with_context(|| {
        format!(
            "deployment '{}': cannot run its entrypoint '{}' to check the parameters \
             (build it first, or pass --no-check)",
            d.name,
            resolved.display()
        )
    })
}

/// Records each flow with its parameter schema, keeping what runs recorded
/// about it (version, description).
async fn register_flows(store: &dyn Store, schemas: Vec<(String, Value)>) -> Result<()> {
    let now = Utc::now();
    let mut flows: Vec<Flow> = Vec::new();
    for (name, parameter_schema) in schemas {
        if flows.iter().any(|f| f.name == name) {
            continue;
        }
        let flow = match store.read_flow(&name).await? {
            Some(known) => Flow { parameter_schema, updated: now, ..known },
            None => Flow {
                id: flow_id_for_name(&name),
                name,
                version: None,
                description: None,
                parameter_schema,
                created: now,
                updated: now,
            },
        };
        flows.push(flow);
    }
    if !flows.is_empty() {
        store.record(&WriteBatch { flows, ..Default::default() }).await?;
    }
    Ok(())
}

async fn read(store: &dyn Store, name: &str) -> Result<Deployment> {
    store
        .read_deployment(name)
        .await?
        .with_context(|| format!("no deployment named '{name}' (see `headwater deployment ls`)"))
}

pub async fn deployment(cmd: DeploymentCmd, store: &dyn Store) -> Result<()> {
    match cmd {
        DeploymentCmd::Ls { json } => {
            let all = store.list_deployments().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("No deployments yet: declare them in headwater.yaml and run `headwater deploy`.");
            } else {
                crate::output::print_deployments(&all);
            }
        }
        DeploymentCmd::Inspect { name, json } => {
            let d = read(store, &name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                crate::output::print_deployment(&d, Utc::now());
            }
        }
        DeploymentCmd::Pause { name } => set_paused(store, &name, true).await?,
        DeploymentCmd::Resume { name } => set_paused(store, &name, false).await?,
        DeploymentCmd::Run { name, params, json, no_check } => {
            let mut given = match json {
                Some(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(m)) => m,
                    _ => bail!("--params must be a JSON object such as {{\"month\": 1}}"),
                },
                None => serde_json::Map::new(),
            };
            for kv in params {
                let (k, v) = kv.split_once('=').with_context(|| format!("-p takes NAME=VALUE, got '{kv}'"))?;
                given.insert(k.trim().into(), serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into())));
            }
            // The flow program itself checks the parameters first (its own
            // types and messages), then the flow's recorded schema.
            let program_check = |d: &Deployment, merged: &Value| {
                check_one(d, Path::new("."), "parameters", merged).map_err(|e| format!("{e:#}"))
            };
            let request = DeploymentRunRequest { parameters: given, idempotency_key: None, check: !no_check };
            let run = match start_deployment_run(store, &name, request, Some(&program_check)).await {
                Ok(started) => started.run,
                Err(DeploymentRunError::NoDeployment(_)) => {
                    bail!("no deployment named '{name}' (see `headwater deployment ls`)")
                }
                Err(e) => return Err(e.into()),
            };
            let pool = run.work_pool.clone().unwrap_or_default();
            println!("Created flow run '{}' ({}) of deployment '{name}'", run.name, run.id);
            println!("A worker of pool '{pool}' will run it: `headwater worker start --pool {pool}`");
        }
        DeploymentCmd::Delete { name } => {
            if !store.delete_deployment(&name).await? {
                bail!("no deployment named '{name}'");
            }
            println!("Deleted deployment '{name}'");
        }
        DeploymentCmd::Schedule(ScheduleCmd::Ls { name }) => {
            let d = read(store, &name).await?;
            for (i, s) in d.schedules.iter().enumerate() {
                let state = if s.active { "active" } else { "paused" };
                println!("{i}  {state:<6}  {}", s.schedule.describe());
            }
        }
        DeploymentCmd::Schedule(ScheduleCmd::Pause { name, index }) => set_schedule(store, &name, index, false).await?,
        DeploymentCmd::Schedule(ScheduleCmd::Resume { name, index }) => set_schedule(store, &name, index, true).await?,
    }
    Ok(())
}

async fn set_paused(store: &dyn Store, name: &str, paused: bool) -> Result<()> {
    let mut d = read(store, name).await?;
    d.paused = paused;
    d.updated = Utc::now();
    store.apply_deployment(&d).await?;
    println!("Deployment '{name}' {}", if paused { "paused" } else { "resumed" });
    Ok(())
}

async fn set_schedule(store: &dyn Store, name: &str, index: usize, active: bool) -> Result<()> {
    let mut d = read(store, name).await?;
    let count = d.schedules.len();
    let s = d
        .schedules
        .get_mut(index)
        .with_context(|| format!("deployment '{name}' has {count} schedule(s), numbered from 0"))?;
    s.active = active;
    d.updated = Utc::now();
    store.apply_deployment(&d).await?;
    println!("Schedule {index} of '{name}' {}", if active { "resumed" } else { "paused" });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_manifests_parse() {
        let taxi = include_str!("../../../examples/taxi/headwater.yaml");
        let examples = include_str!("../../../examples/headwater.yaml");
        for (name, text) in [("examples/taxi/headwater.yaml", taxi), ("examples/headwater.yaml", examples)] {
            let document: Value = serde_saphyr::from_str(text).unwrap();
            let deployments = headwater_core::parse_manifest(name, document, &|_| Some("x".into()), Utc::now())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(!deployments.is_empty(), "{name}");
        }
        let document: Value = serde_saphyr::from_str(taxi).unwrap();
        let months = headwater_core::parse_manifest("taxi", document, &|_| None, Utc::now()).unwrap();
        let months = months.iter().find(|d| d.name == "taxi-months").expect("the partitioned deployment");
        let keys = months.partitions.as_ref().unwrap().first_keys().unwrap();
        assert_eq!(
            keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["color=yellow/month=2019-01", "color=green/month=2019-01", "color=fhv/month=2019-01"]
        );
        let document: Value = serde_saphyr::from_str(taxi).unwrap();
        let datasets = headwater_core::parse_datasets("taxi", &document).unwrap();
        let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["yellow_trips", "green_trips", "fhv_trips"]);
    }
}
