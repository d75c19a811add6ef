//! `headwater backfill …` and `headwater partition ls`: a deployment's
//! partitions, and backfills that run each missing one once.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use comfy_table::{presets, Table};
use headwater_core::partition::{BackfillPlan, Only, Selection};
use headwater_store::backfills::{
    backfill_report, cancel_backfill, partition_grid, retry_failed, start_backfill, BackfillOutcome, BackfillReport,
    BackfillRequest,
};
use headwater_store::Store;

/// A backfill larger than this many runs needs `--yes`.
const CONFIRM_ABOVE: usize = 10_000;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackfillArgs {
    #[command(subcommand)]
    cmd: Option<BackfillCmd>,
    /// The partitioned deployment to backfill.
    #[arg(required = true)]
    deployment: Option<String>,
    /// The first time partition (e.g. 2019-01); default: the declared start.
    #[arg(long)]
    from: Option<String>,
    /// The last time partition, included; default: the newest complete one.
    #[arg(long)]
    to: Option<String>,
    /// Only these values of a static dimension: `color=yellow,green` (repeatable).
    #[arg(long = "partition", value_name = "NAME=VALUES")]
    partitions: Vec<String>,
    /// Which partitions to run: missing (no completed run), failed, all, or
    /// stale (missing, and those whose source changed: `dataset check-sources`).
    #[arg(long, default_value = "missing")]
    only: String,
    /// At most this many runs at once (the server holds the rest back).
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// The backfill's name; default: made of the deployment and the selection.
    #[arg(long)]
    name: Option<String>,
    /// Print the plan and create nothing.
    #[arg(long)]
    dry_run: bool,
    /// Create the runs without asking (needed above 10,000 runs).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Follow the backfill's progress until every partition is done.
    #[arg(long)]
    watch: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BackfillCmd {
    /// Backfills, newest first, with their progress.
    Ls {
        #[arg(long)]
        deployment: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One backfill's partitions and where each stands.
    Inspect {
        name: String,
        /// Follow its progress until every partition is done.
        #[arg(long)]
        watch: bool,
        #[arg(long)]
        json: bool,
    },
    /// Cancel its queued runs and stop its running ones.
    Cancel { name: String },
    /// Queue again only the partitions whose latest run failed, crashed or was cancelled.
    #[command(name = "retry-failed")]
    RetryFailed { name: String },
}

#[derive(Subcommand)]
pub enum PartitionCmd {
    /// A deployment's partitions as a grid (months by static value), each
    /// cell its latest run's state and the rows it wrote, `!` if stale; or
    /// a dataset's partitions with rows.
    Ls {
        /// A partitioned deployment, or a dataset of the lake.
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn backfill(args: BackfillArgs, store: &dyn Store) -> Result<()> {
    match args.cmd {
        Some(BackfillCmd::Ls { deployment, json }) => ls(store, deployment.as_deref(), json).await,
        Some(BackfillCmd::Inspect { name, watch, json }) => {
            if watch {
                return follow(store, &name).await;
            }
            let report = backfill_report(store, &name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            print_report(&report);
            Ok(())
        }
        Some(BackfillCmd::Cancel { name }) => {
            let (b, stopped) = cancel_backfill(store, &name, chrono::Utc::now()).await?;
            println!("Cancelled backfill '{}': {stopped} run(s) cancelled or asked to stop.", b.name);
            Ok(())
        }
        Some(BackfillCmd::RetryFailed { name }) => {
            let outcome = retry_failed(store, &name, chrono::Utc::now()).await?;
            println!(
                "Backfill '{}': {} failed partition(s) queued again{}.",
                outcome.backfill.name,
                outcome.created,
                if outcome.plan.to_run.is_empty() { " (none had failed)" } else { "" }
            );
            Ok(())
        }
        None => {
            let deployment = args.deployment.context("name the deployment to backfill")?;
            let only: Only = args.only.parse()?;
            let selection =
                Selection { from: args.from, to: args.to, ..Default::default() }.with_statics(&args.partitions)?;
            let request = BackfillRequest {
                deployment,
                selection,
                only,
                max_concurrent: args.max_concurrent,
                name: args.name,
                dry_run: true,
            };
            let now = chrono::Utc::now();
            let plan = start_backfill(store, request.clone(), now).await?;
            if args.json && args.dry_run {
                println!("{}", serde_json::to_string_pretty(&plan)?);
                return Ok(());
            }
            if !args.json {
                print_plan(&plan);
            }
            if args.dry_run {
                println!("Dry run: nothing created.");
                return Ok(());
            }
            let n = plan.plan.to_run.len();
            if n == 0 {
                if !args.json {
                    println!("Nothing to run.");
                }
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                }
                return Ok(());
            }
            if n > CONFIRM_ABOVE && !args.yes {
                bail!("this backfill would create {n} runs (more than {CONFIRM_ABOVE}); add --yes to create them");
            }
            if !args.yes && !args.json && std::io::stdin().is_terminal() && !confirm(n)? {
                println!("Nothing created.");
                return Ok(());
            }
            let done = start_backfill(store, BackfillRequest { dry_run: false, ..request }, chrono::Utc::now()).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                println!(
                    "Created {} run(s) for backfill '{}' (follow it: headwater backfill inspect '{}' --watch).",
                    done.created, done.backfill.name, done.backfill.name
                );
            }
            if args.watch {
                follow(store, &done.backfill.name).await?;
            }
            Ok(())
        }
    }
}

fn confirm(n: usize) -> Result<bool> {
    print!("Create {n} run(s)? [Y/n] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "" | "y" | "yes"))
}

fn sample(keys: &[String]) -> String {
    match keys {
        [] => String::new(),
        [one] => format!(" ({one})"),
        [first, .., last] => format!(" ({first} … {last})"),
    }
}

fn print_plan(outcome: &BackfillOutcome) {
    let b = &outcome.backfill;
    let p: &BackfillPlan = &outcome.plan;
    let total = p.to_run.len() + p.fresh.len() + p.in_flight.len() + p.skipped.len();
    println!("Backfill '{}' of deployment '{}': {total} partition(s)", b.name, b.deployment);
    let run: Vec<String> = p.to_run.iter().map(|r| r.partition.clone()).collect();
    println!("  already done:  {:>6}{}", p.fresh.len(), sample(&p.fresh));
    println!("  queued or running: {:>2}{}", p.in_flight.len(), sample(&p.in_flight));
    if !p.skipped.is_empty() {
        println!("  not taken by --only {}: {}{}", b.only.name(), p.skipped.len(), sample(&p.skipped));
    }
    println!("  will run:      {:>6}{}", run.len(), sample(&run));
    if let Some(m) = b.max_concurrent {
        println!("  at most {m} at once");
    }
}

fn progress_line(r: &BackfillReport) -> String {
    let total = r.partitions.len().max(1);
    let n = |k: &str| r.counts.get(k).copied().unwrap_or(0);
    let done = n("completed") as usize;
    let width = 30;
    let filled = done * width / total;
    format!(
        "[{}{}] {done}/{} completed, {} queued or running, {} failed{}",
        "#".repeat(filled),
        ".".repeat(width - filled),
        r.partitions.len(),
        n("in_flight"),
        n("failed"),
        if r.backfill.cancelled.is_some() { " (cancelled)" } else { "" }
    )
}

/// Prints the progress bar until no partition is queued or running.
async fn follow(store: &dyn Store, name: &str) -> Result<()> {
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let r = backfill_report(store, name).await?;
        let line = progress_line(&r);
        if line != last {
            if tty {
                print!("\r{line}");
                std::io::stdout().flush()?;
            } else {
                println!("{line}");
            }
            last = line;
        }
        if r.counts.get("in_flight").copied().unwrap_or(0) == 0 {
            if tty {
                println!();
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn ls(store: &dyn Store, deployment: Option<&str>, json: bool) -> Result<()> {
    let all = store.list_backfills(deployment).await?;
    let mut reports = Vec::new();
    for b in &all {
        reports.push(backfill_report(store, &b.id.to_string()).await?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    if reports.is_empty() {
        println!("No backfills yet: `headwater backfill DEPLOYMENT --from … --to …` starts one.");
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec!["NAME", "DEPLOYMENT", "PROGRESS", "CREATED"]);
    for r in &reports {
        t.add_row(vec![
            r.backfill.name.clone(),
            r.backfill.deployment.clone(),
            progress_line(r),
            r.backfill.created.format("%Y-%m-%d %H:%M:%S").to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn print_report(r: &BackfillReport) {
    let b = &r.backfill;
    println!("Backfill    {} ({})", b.name, b.id);
    println!("Deployment  {}", b.deployment);
    println!("Only        {}", b.only.name());
    if let Some(m) = b.max_concurrent {
        println!("At once     at most {m}");
    }
    if let Some(c) = b.cancelled {
        println!("Cancelled   {}", c.format("%Y-%m-%d %H:%M:%S"));
    }
    println!("Progress    {}", progress_line(r));
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec!["PARTITION", "STATE", "RUN"]);
    for c in &r.partitions {
        t.add_row(vec![
            c.partition.clone(),
            c.state_name.clone().unwrap_or_else(|| "-".into()),
            c.run_name.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
}

pub async fn partition(cmd: PartitionCmd, store: &dyn Store) -> Result<()> {
    let PartitionCmd::Ls { name, json } = cmd;
    if store.read_deployment(&name).await?.is_none() {
        if store.read_dataset(&name).await?.is_some() {
            let parts = headwater_store::freshness::dataset_partitions(store, &name, chrono::Utc::now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&parts)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec![
                "PARTITION",
                "VERSION",
                "ROWS",
                "RUN",
                "WRITTEN",
                "DUE",
            ]);
            let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
            for p in &parts {
                let v = p.version.as_ref();
                let mut due = p.due.map(time).unwrap_or_else(|| "-".into());
                if p.source_changed {
                    due.push_str(" ~ source changed");
                } else if p.stale {
                    due.push_str(" ! late");
                }
                t.add_row(vec![
                    p.partition.clone(),
                    v.map_or("-".into(), |v| v.version.to_string()),
                    v.map_or("-".into(), |v| v.rows.to_string()),
                    v.and_then(|v| v.flow_run_id).map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
                    v.map_or("-".into(), |v| time(v.written)),
                    due,
                ]);
            }
            println!("{t}");
            let stale = parts.iter().filter(|p| p.stale).count();
            println!("{} partition(s), {stale} stale", parts.len());
            return Ok(());
        }
        bail!("no deployment or dataset named '{name}' (see `headwater deployment ls`, `headwater dataset ls`)");
    }
    let grid = partition_grid(store, &name, chrono::Utc::now()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&grid)?);
        return Ok(());
    }
    let mut header = vec![if grid.times.is_empty() { "PARTITION".to_string() } else { "TIME".to_string() }];
    header.extend(grid.columns.iter().map(|c| if c.is_empty() { "STATE".to_string() } else { c.clone() }));
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(header);
    // Each cell: the latest run's state, the rows it wrote, and `!` when
    // stale (past its freshness deadline without a completed run, or `~`
    // when made from a file that changed on the web since).
    let by_place: std::collections::HashMap<(Option<&str>, &str), String> = grid
        .cells
        .iter()
        .map(|c| {
            let mut text = c.state_name.clone().unwrap_or_else(|| "·".into());
            if let Some(rows) = c.rows {
                text.push_str(&format!(" {rows}"));
            }
            if c.source_changed {
                text.push_str(" ~");
            } else if c.stale {
                text.push_str(" !");
            }
            ((c.time.as_deref(), c.column.as_str()), text)
        })
        .collect();
    let rows: Vec<Option<String>> =
        if grid.times.is_empty() { vec![None] } else { grid.times.iter().cloned().map(Some).collect() };
    for time in rows {
        let mut row = vec![time.clone().unwrap_or_default()];
        for col in &grid.columns {
            row.push(by_place.get(&(time.as_deref(), col.as_str())).cloned().unwrap_or_else(|| "·".into()));
        }
        t.add_row(row);
    }
    println!("{t}");
    let counts: Vec<String> = grid.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("{} partition(s): {}", grid.cells.len(), counts.join(", "));
    if grid.cells.iter().any(|c| c.stale) {
        println!("! past its freshness deadline, ~ its source changed on the web (run them with `--only stale`)");
    }
    Ok(())
}
