//! Tables for people, JSON for scripts.

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Local, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use headwater_core::{Deployment, Flow, FlowRun, LogRecord, StateRecord, TaskRun};
use serde::Serialize;
use uuid::Uuid;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

fn json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn opt_local(t: Option<DateTime<Utc>>) -> String {
    t.map(local).unwrap_or_else(|| "-".into())
}

fn took(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => {
            let ms = (e - s).num_milliseconds().max(0);
            if ms < 1000 {
                format!("{ms}ms")
            } else if ms < 60_000 {
                format!("{:.1}s", ms as f64 / 1000.0)
            } else {
                format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
            }
        }
        (Some(_), None) => "running".into(),
        _ => "-".into(),
    }
}

pub fn print_flows(flows: &[Flow], as_json: bool) -> Result<()> {
    if as_json {
        return json(flows);
    }
    if flows.is_empty() {
        println!("No flows yet: run one, e.g. `cargo run -p headwater-examples -- etl-parent-flow`.");
        return Ok(());
    }
    let mut t = table(&["NAME", "VERSION", "DESCRIPTION", "UPDATED"]);
    for f in flows {
        t.add_row(vec![
            f.name.clone(),
            f.version.clone().unwrap_or_default(),
            f.description.clone().unwrap_or_default().lines().next().unwrap_or("").to_string(),
            local(f.updated),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn print_flow_runs(runs: &[FlowRun], as_json: bool) -> Result<()> {
    if as_json {
        return json(runs);
    }
    if runs.is_empty() {
        println!("No flow runs match.");
        return Ok(());
    }
    let mut t = table(&["ID", "NAME", "FLOW", "STATE", "STARTED", "DURATION"]);
    for r in runs {
        t.add_row(vec![
            r.id.to_string(),
            r.name.clone(),
            r.flow_name.clone(),
            r.state.name.clone(),
            opt_local(r.start_time),
            took(r.start_time, r.end_time),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn print_task_runs(tasks: &[TaskRun], as_json: bool) -> Result<()> {
    if as_json {
        return json(tasks);
    }
    if tasks.is_empty() {
        println!("This flow run has no task runs.");
        return Ok(());
    }
    let mut t = table(&["ID", "NAME", "STATE", "RUNS", "STARTED", "DURATION", "MESSAGE"]);
    for r in tasks {
        t.add_row(vec![
            r.id.to_string(),
            r.name.clone(),
            r.state.name.clone(),
            r.run_count.to_string(),
            opt_local(r.start_time),
            took(r.start_time, r.end_time),
            r.state.message.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

#[derive(Serialize)]
struct Inspection<'a> {
    #[serde(flatten)]
    run: &'a FlowRun,
    state_history: Vec<&'a headwater_core::State>,
    task_runs: Vec<TaskInspection<'a>>,
    subflow_runs: &'a [FlowRun],
}

#[derive(Serialize)]
struct TaskInspection<'a> {
    #[serde(flatten)]
    run: &'a TaskRun,
    /// Absent when the run has too many task runs to read every history.
    #[serde(skip_serializing_if = "Option::is_none")]
    state_history: Option<Vec<&'a headwater_core::State>>,
}

/// The state names a run went through: `Pending → Running → Completed`.
fn path(history: &[StateRecord]) -> String {
    history.iter().map(|s| s.state.name.as_str()).collect::<Vec<_>>().join(" → ")
}

pub fn print_flow_run(
    run: &FlowRun,
    history: &[StateRecord],
    tasks: &[TaskRun],
    task_histories: &HashMap<Uuid, Vec<StateRecord>>,
    children: &[FlowRun],
    as_json: bool,
) -> Result<()> {
    if as_json {
        let task_runs = tasks
            .iter()
            .map(|t| TaskInspection {
                run: t,
                state_history: task_histories.get(&t.id).map(|h| h.iter().map(|s| &s.state).collect()),
            })
            .collect();
        return json(&Inspection {
            run,
            state_history: history.iter().map(|s| &s.state).collect(),
            task_runs,
            subflow_runs: children,
        });
    }
    println!("Flow run   {} ({})", run.name, run.id);
    println!("Flow       {}", run.flow_name);
    println!("State      {}", run.state);
    if let Some(p) = run.parent_flow_run_id {
        println!("Parent     {p}");
    }
    println!("Runs       {}", run.run_count);
    println!("Started    {}", opt_local(run.start_time));
    println!("Duration   {}", took(run.start_time, run.end_time));
    if !run.tags.is_empty() {
        println!("Tags       {}", run.tags.join(", "));
    }
    println!("Parameters {}", serde_json::to_string(&run.parameters)?);
    println!("\nState history:");
    let mut t = table(&["TIME", "STATE", "TYPE", "MESSAGE"]);
    for s in history {
        t.add_row(vec![
            s.state.timestamp.with_timezone(&Local).format("%H:%M:%S%.3f").to_string(),
            s.state.name.clone(),
            s.state.state_type.to_string(),
            s.state.message.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    if !children.is_empty() {
        println!("\nSubflow runs:");
        print_flow_runs(children, false)?;
    }
    println!("\nTask runs:");
    print_task_runs(tasks, false)?;
    if !task_histories.is_empty() {
        println!("\nTask run states:");
        for t in tasks {
            if let Some(h) = task_histories.get(&t.id) {
                println!("  {}: {}", t.name, path(h));
            }
        }
    }
    Ok(())
}

pub fn print_log(l: &LogRecord, flow_run: &str, task_names: &HashMap<Uuid, String>, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(l)?);
        return Ok(());
    }
    let who = match l.task_run_id.and_then(|t| task_names.get(&t)) {
        Some(name) => format!("Task run '{name}'"),
        None => format!("Flow run '{flow_run}'"),
    };
    println!(
        "{} | {:<7} | {who} - {}",
        l.timestamp.with_timezone(&Local).format("%H:%M:%S%.3f"),
        l.level.as_str(),
        l.message
    );
    Ok(())
}

pub fn print_deployments(all: &[Deployment]) {
    let mut t = table(&["NAME", "FLOW", "SCHEDULES", "WORK POOL", "STATUS"]);
    for d in all {
        let active = d.schedules.iter().filter(|s| s.active).count();
        let schedules = match d.schedules.first() {
            None => "none".to_string(),
            Some(first) if d.schedules.len() == 1 => first.schedule.describe(),
            Some(first) => format!("{} (+{} more, {active} active)", first.schedule.describe(), d.schedules.len() - 1),
        };
        t.add_row(vec![
            d.name.clone(),
            d.flow_name.clone(),
            schedules,
            d.work_pool.clone().unwrap_or_else(|| "-".into()),
            if d.paused { "paused".into() } else { "active".into() },
        ]);
    }
    println!("{t}");
}

pub fn print_deployment(d: &Deployment, now: DateTime<Utc>) {
    println!("Deployment  {} ({})", d.name, d.id);
    println!("Flow        {}", d.flow_name);
    println!("Entrypoint  {}", d.entrypoint.join(" "));
    if let Some(desc) = &d.description {
        println!("About       {desc}");
    }
    println!("Status      {}", if d.paused { "paused" } else { "active" });
    println!("Parameters  {}", d.parameters);
    if let Some(pool) = &d.work_pool {
        println!("Work pool   {pool}{}", d.work_queue.as_deref().map(|q| format!(" / {q}")).unwrap_or_default());
    }
    if let Some(limit) = d.concurrency_limit {
        println!("Limit       {limit} at once ({:?})", d.collision_strategy);
    }
    for (i, s) in d.schedules.iter().enumerate() {
        println!("\nSchedule {i} ({}): {}", if s.active { "active" } else { "paused" }, s.schedule.describe());
        if s.parameters.as_object().is_some_and(|m| !m.is_empty()) {
            println!("  parameters {}", s.parameters);
        }
        for t in s.schedule.next_after(now, 3) {
            println!("  next       {}", local(t));
        }
    }
}
