//! `headwater`: inspect flows, runs and logs, manage settings and
//! deployments, run the server. A library so it can be driven in-process
//! (`run_from`); `main.rs` is the binary.

mod access;
mod automations;
mod backfills;
mod blocks;
mod concurrency;
mod datasets;
mod db;
mod deploy;
mod output;
mod variables;
mod work_pool;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use headwater_client::ApiClient;
use headwater_config::{Overrides, Profiles, Settings, KNOWN};
use headwater_core::{LogLevel, StateType};
use headwater_server::ServerConfig;
use headwater_store::{FlowRunFilter, LogFilter, RunReaper, Store};

/// `flow-run inspect` shows each task run's state history up to this many task runs.
const TASK_HISTORIES_SHOWN: usize = 500;

use crate::output::{print_flow_run, print_flow_runs, print_flows, print_log, print_task_runs};

#[derive(Parser)]
#[command(name = "headwater", version, about = "Headwater: flows, runs and logs from the command line")]
struct Cli {
    /// Headwater home folder (database, results, profiles). Overrides HEADWATER_HOME.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Use this profile instead of the active one.
    #[arg(long, global = true)]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and where state is kept.
    Version,
    /// View and change settings of the active profile.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage profiles (named sets of settings).
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Flows that have been run.
    #[command(subcommand)]
    Flow(FlowCmd),
    /// Flow runs: list, inspect, read logs.
    #[command(subcommand, name = "flow-run")]
    FlowRun(FlowRunCmd),
    /// Task runs of a flow run.
    #[command(subcommand, name = "task-run")]
    TaskRun(TaskRunCmd),
    /// Run the Headwater server.
    #[command(subcommand)]
    Server(ServerCmd),
    /// Validate and apply deployments from headwater.yaml.
    Deploy(deploy::DeployArgs),
    /// Deployments: list, inspect, run, pause, resume, delete, schedules.
    #[command(subcommand)]
    Deployment(deploy::DeploymentCmd),
    /// Workers run the flow runs of a work pool.
    #[command(subcommand)]
    Worker(WorkerCmd),
    /// Work pools: where deployments' runs wait for workers.
    #[command(subcommand, name = "work-pool")]
    WorkPool(work_pool::WorkPoolCmd),
    /// Queues inside a work pool: priorities, limits, pause.
    #[command(subcommand, name = "work-queue")]
    WorkQueue(work_pool::WorkQueueCmd),
    /// Blocks: typed configuration and credentials, secrets sealed.
    #[command(subcommand)]
    Block(blocks::BlockCmd),
    /// Datasets in the lake: schema, partitions, versions.
    #[command(subcommand)]
    Dataset(datasets::DatasetCmd),
    /// Variables: named JSON values for flows and headwater.yaml.
    #[command(subcommand)]
    Variable(variables::VariableCmd),
    /// Artifacts that runs published (tables, markdown, links).
    #[command(subcommand)]
    Artifact(variables::ArtifactCmd),
    /// Concurrency limits on task tags and named slots (rate limits too).
    #[command(subcommand, name = "concurrency-limit")]
    ConcurrencyLimit(concurrency::ConcurrencyLimitCmd),
    /// Automations: notify on failures, run or pause things when runs, workers or deployments need it.
    #[command(subcommand)]
    Automation(automations::AutomationCmd),
    /// Backfill a partitioned deployment (each missing partition once), or
    /// list, inspect, cancel and retry backfills.
    Backfill(backfills::BackfillArgs),
    /// A deployment's partitions and their latest runs.
    #[command(subcommand)]
    Partition(backfills::PartitionCmd),
    /// The embedded database: online backups and restores.
    #[command(subcommand)]
    Db(db::DbCmd),
    /// Named API keys with a role: create, list, revoke.
    #[command(subcommand, name = "api-key")]
    ApiKey(access::ApiKeyCmd),
    /// The audit log: who changed what, with which key.
    #[command(subcommand)]
    Audit(access::AuditCmd),
}

#[derive(Subcommand)]
enum WorkerCmd {
    /// Take due runs of a pool and run them as processes.
    Start(worker::WorkerArgs),
}

#[derive(Subcommand)]
enum ServerCmd {
    /// Serve the REST API (and record runs that flows report to it).
    Start {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// 0 picks a free port (printed on start).
        #[arg(long, default_value_t = 4200)]
        port: u16,
        /// `postgres://…` or a SQLite path; default: the embedded database
        /// in the Headwater home, so earlier embedded runs show up.
        #[arg(long, env = "HEADWATER_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// A file with one API key per line (in addition to HEADWATER_API_KEY).
        #[arg(long, value_name = "PATH")]
        api_key_file: Option<PathBuf>,
        /// Serve a non-loopback address without an API key anyway.
        #[arg(long)]
        allow_unauthenticated_remote: bool,
        /// Serve `/metrics` without the API key (for a scraper on a trusted network).
        #[arg(long)]
        metrics_public: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Show the resolved settings and where each comes from.
    View {
        #[arg(long)]
        show_sources: bool,
        #[arg(long)]
        json: bool,
    },
    /// Set settings in the active profile: `headwater config set KEY=VALUE...`.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Remove settings from the active profile.
    Unset {
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ProfileCmd {
    /// List profiles; the active one is marked.
    Ls,
    /// Create an empty profile.
    Create { name: String },
    /// Make a profile the active one.
    Use { name: String },
    /// Delete a profile (not the active one).
    Delete { name: String },
    /// Show a profile's settings.
    Inspect { name: Option<String> },
}

#[derive(Subcommand)]
enum FlowCmd {
    /// List flows.
    Ls {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum FlowRunCmd {
    /// List flow runs, newest first.
    Ls {
        /// Only runs in these states (type like FAILED or name like Late); repeatable.
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
        /// Only runs of this flow.
        #[arg(long)]
        flow: Option<String>,
        #[arg(long, default_value_t = 25)]
        limit: u32,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show a flow run: parameters, state history, task runs, subflows.
    Inspect {
        /// Run id, id prefix, or run name.
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Cancel a flow run: a scheduled one at once; a running one is asked to
    /// stop (CANCELLING), and ends CANCELLED when its process has stopped it.
    Cancel { id: String },
    /// Run a finished deployment run again (a worker of its pool picks it
    /// up); tasks whose results were persisted come from storage.
    Retry { id: String },
    /// Hold a run that has not started: no worker takes it until it is resumed.
    Pause { id: String },
    /// Release a paused run: due at once.
    Resume { id: String },
    /// Print a flow run's logs.
    Logs {
        id: String,
        /// Keep printing new logs until the run finishes.
        #[arg(long, short)]
        follow: bool,
        /// Lowest level to show: DEBUG, INFO, WARNING, ERROR.
        #[arg(long, default_value = "DEBUG")]
        level: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
enum TaskRunCmd {
    /// List the task runs of a flow run.
    Ls {
        #[arg(long = "flow-run", value_name = "ID")]
        flow_run: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// Runs the command line `args` (the first is the program name).
pub async fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Like [`run_from`], returning the error instead of printing it (for
/// embedding and tests). Argument errors come back as errors too.
pub async fn try_run_from<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    run(Cli::try_parse_from(args)?).await
}

async fn run(cli: Cli) -> Result<()> {
    let overrides = Overrides { home: cli.home.clone(), profile: cli.profile.clone(), ..Default::default() };
    let settings = Settings::load(&overrides)?;
    match cli.command {
        Command::Version => {
            println!("headwater {}", env!("CARGO_PKG_VERSION"));
            println!("home:     {}", settings.home.display());
            println!("profile:  {}", settings.profile);
            match settings.api_url() {
                Some(url) => println!("server:   {url}"),
                None => println!("database: {} (embedded)", settings.database_path().display()),
            }
            Ok(())
        }
        Command::Config(cmd) => config(cmd, &settings),
        Command::Profile(cmd) => profile(cmd, &settings),
        Command::Flow(FlowCmd::Ls { json }) => {
            let store = open(&settings).await?;
            print_flows(&store.list_flows().await?, json)
        }
        Command::FlowRun(cmd) => flow_run(cmd, open(&settings).await?.as_ref()).await,
        Command::Deploy(args) => deploy::deploy(args, open(&settings).await?.as_ref()).await,
        Command::Deployment(cmd) => deploy::deployment(cmd, open(&settings).await?.as_ref()).await,
        Command::WorkPool(cmd) => work_pool::run(cmd, open(&settings).await?.as_ref()).await,
        Command::WorkQueue(cmd) => work_pool::run_queue(cmd, open(&settings).await?.as_ref()).await,
        Command::Block(cmd) => blocks::run(cmd, open(&settings).await?.as_ref()).await,
        Command::Dataset(cmd) => datasets::run(cmd, open(&settings).await?.as_ref()).await,
        Command::Variable(cmd) => variables::run_variable(cmd, open(&settings).await?.as_ref()).await,
        Command::Artifact(cmd) => variables::run_artifact(cmd, open(&settings).await?.as_ref()).await,
        Command::ConcurrencyLimit(cmd) => concurrency::run(cmd, open(&settings).await?.as_ref()).await,
        Command::Automation(cmd) => automations::run(cmd, open(&settings).await?.as_ref()).await,
        Command::Backfill(args) => backfills::backfill(args, open(&settings).await?.as_ref()).await,
        Command::Partition(cmd) => backfills::partition(cmd, open(&settings).await?.as_ref()).await,
        Command::Db(cmd) => db::run(cmd, &settings).await,
        Command::ApiKey(cmd) => access::run_api_key(cmd, open(&settings).await?.as_ref()).await,
        Command::Audit(cmd) => access::run_audit(cmd, open(&settings).await?.as_ref()).await,
        Command::Worker(WorkerCmd::Start(args)) => {
            log_to_stderr(&settings, "headwater-worker");
            let worked = worker::start(args, open(&settings).await?, &settings).await;
            headwater_telemetry::flush();
            worked
        }
        Command::TaskRun(TaskRunCmd::Ls { flow_run, out }) => {
            let store = open(&settings).await?;
            let run = store.resolve_flow_run(&flow_run).await?;
            print_task_runs(&store.list_task_runs(run.id).await?, out.json)
        }
        Command::Server(ServerCmd::Start {
            host,
            port,
            database_url,
            api_key_file,
            allow_unauthenticated_remote,
            metrics_public,
        }) => {
            let mut api_keys: Vec<String> = settings.get("HEADWATER_API_KEY").map(str::to_string).into_iter().collect();
            if let Some(path) = api_key_file {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the API key file {}", path.display()))?;
                api_keys.extend(
                    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from),
                );
            }
            log_to_stderr(&settings, "headwater-server");
            let database = database_url.unwrap_or_else(|| settings.database_path().display().to_string());
            let store = headwater_sql::open_with_key(&database, Some(&secret_key(&settings)?)).await?;
            let heartbeat_timeout = settings.heartbeat_timeout();
            // Once keys are issued, a key stays required, even if all are revoked.
            let require_key = store.has_api_keys().await?;
            let config = ServerConfig {
                host,
                port,
                api_keys: api_keys.clone(),
                require_key,
                allow_unauthenticated_remote,
                heartbeat_timeout,
                late_after: settings.late_after(),
                ui_url: settings.ui_url().map(str::to_string),
                prefect_heartbeat: settings.prefect_heartbeat(),
                retention: db::retention(&settings)?,
                metrics_public,
                ..Default::default()
            };
            let listener = headwater_server::bind(&config).await?;
            let addr = listener.local_addr()?;
            let shown_db = if database.starts_with("postgres") { "PostgreSQL".to_string() } else { database };
            // The banner must not take the server down if nobody reads stdout.
            let banner = format!(
                "Headwater server listening on http://{addr}/api\n  API docs:  http://{addr}/api/docs\n  \
                 database:  {shown_db}\n  API key:   {}\nPoint flows and the CLI at it with \
                 HEADWATER_API_URL=http://{addr}/api\nand Prefect's client with \
                 PREFECT_API_URL=http://{addr}{}\n",
                if api_keys.is_empty() && !require_key { "none (loopback only)" } else { "required" },
                headwater_server::prefect::PREFIX,
            );
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), banner.as_bytes());
            headwater_server::serve(listener, store, &config, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            headwater_telemetry::flush();
            Ok(())
        }
    }
}

/// The key sealing blocks' secrets in a store this process opens.
fn secret_key(settings: &Settings) -> Result<headwater_store::SecretKey> {
    let hex = settings.secret_key_hex()?;
    headwater_store::SecretKey::from_hex(&hex).map_err(|e| anyhow::anyhow!("the secret key: {e}"))
}

/// The store the settings point at: the server's API, or the embedded file.
async fn open(settings: &Settings) -> Result<Arc<dyn Store>> {
    if let Some(url) = settings.api_url() {
        let client = ApiClient::new(url, settings.get("HEADWATER_API_KEY").map(str::to_string))?;
        return Ok(Arc::new(client));
    }
    let path = settings.database_path();
    let store = headwater_sql::SqliteStore::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?
        .with_secret_key(&secret_key(settings)?);
    // With no server watching, whoever opens the store marks the runs of
    // processes that died (kill -9, a lost machine) as CRASHED.
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(settings.heartbeat_timeout())?;
    for r in store.crash_stale_runs(cutoff).await.unwrap_or_default() {
        eprintln!("note: flow run '{}' marked CRASHED: {}", r.name, r.state.message.unwrap_or_default());
    }
    Ok(Arc::new(store))
}

fn config(cmd: ConfigCmd, settings: &Settings) -> Result<()> {
    match cmd {
        ConfigCmd::View { show_sources, json } => {
            let view = settings.view();
            if json {
                let map: serde_json::Map<String, serde_json::Value> =
                    view.into_iter().map(|(k, v, s)| (k, serde_json::json!({"value": v, "source": s}))).collect();
                println!("{}", serde_json::to_string_pretty(&map)?);
                return Ok(());
            }
            println!("PROFILE = {}", settings.profile);
            for (k, v, s) in view {
                if show_sources {
                    println!("{k} = {v}  (from {s})");
                } else {
                    println!("{k} = {v}");
                }
            }
            Ok(())
        }
        ConfigCmd::Set { pairs } => {
            let mut profiles = load_profiles(settings)?;
            for pair in &pairs {
                let (k, v) = pair.split_once('=').with_context(|| format!("'{pair}' is not KEY=VALUE"))?;
                profiles.set(k.trim(), v.trim())?;
            }
            profiles.save(&settings.home)?;
            for pair in pairs {
                let key = pair.split_once('=').map(|(k, _)| k.trim()).unwrap_or_default();
                println!("Set {key} in profile '{}'", profiles.active);
            }
            Ok(())
        }
        ConfigCmd::Unset { keys } => {
            let mut profiles = load_profiles(settings)?;
            for k in &keys {
                if profiles.unset(k)? {
                    println!("Unset {k} in profile '{}'", profiles.active);
                } else {
                    println!("{k} was not set in profile '{}'", profiles.active);
                }
            }
            profiles.save(&settings.home)?;
            Ok(())
        }
    }
}

/// The profiles file, with the `--profile` choice applied for this command.
fn load_profiles(settings: &Settings) -> Result<Profiles> {
    let mut p = Profiles::load(&settings.home)?;
    p.active = settings.profile.clone();
    Ok(p)
}

fn profile(cmd: ProfileCmd, settings: &Settings) -> Result<()> {
    let mut profiles = Profiles::load(&settings.home)?;
    match cmd {
        ProfileCmd::Ls => {
            for name in profiles.profiles.keys() {
                let mark = if *name == profiles.active { "*" } else { " " };
                println!("{mark} {name}");
            }
        }
        ProfileCmd::Create { name } => {
            profiles.create(&name)?;
            profiles.save(&settings.home)?;
            println!("Created profile '{name}'; switch to it with `headwater profile use {name}`");
        }
        ProfileCmd::Use { name } => {
            profiles.use_profile(&name)?;
            profiles.save(&settings.home)?;
            println!("Now using profile '{name}'");
        }
        ProfileCmd::Delete { name } => {
            profiles.delete(&name)?;
            profiles.save(&settings.home)?;
            println!("Deleted profile '{name}'");
        }
        ProfileCmd::Inspect { name } => {
            let name = name.unwrap_or_else(|| profiles.active.clone());
            let values = profiles
                .profiles
                .get(&name)
                .ok_or_else(|| headwater_config::ConfigError::UnknownProfile(name.clone()))?;
            if values.is_empty() {
                println!("Profile '{name}' is empty (defaults apply). Known settings:");
                for k in KNOWN.iter().filter(|k| k.in_profile) {
                    println!("  {:<26} {}", k.name, k.help);
                }
            }
            for (k, v) in values {
                let shown = if k == "HEADWATER_API_KEY" { "********" } else { v };
                println!("{k} = {shown}");
            }
        }
    }
    Ok(())
}

async fn flow_run(cmd: FlowRunCmd, store: &dyn Store) -> Result<()> {
    match cmd {
        FlowRunCmd::Ls { states, flow, limit, out } => {
            let mut filter = FlowRunFilter { flow_name: flow, limit, ..Default::default() };
            for s in states {
                match s.parse::<StateType>() {
                    Ok(t) => filter.states.push(t),
                    // Not a type: a state name such as Late or TimedOut.
                    Err(_) => filter.state_names.push(s),
                }
            }
            print_flow_runs(&store.list_flow_runs(&filter).await?, out.json)
        }
        FlowRunCmd::Inspect { id, out } => {
            let run = store.resolve_flow_run(&id).await?;
            let history = store.read_states(run.id).await?;
            let tasks = store.list_task_runs(run.id).await?;
            // Every task run's history, while that stays a few reads.
            let mut task_histories = std::collections::HashMap::new();
            if tasks.len() <= TASK_HISTORIES_SHOWN {
                for t in &tasks {
                    task_histories.insert(t.id, store.read_states(t.id).await?);
                }
            }
            let children = store
                .list_flow_runs(&FlowRunFilter { parent_flow_run_id: Some(run.id), limit: 1000, ..Default::default() })
                .await?;
            print_flow_run(&run, &history, &tasks, &task_histories, &children, out.json)
        }
        FlowRunCmd::Retry { id } => {
            let run = store.resolve_flow_run(&id).await?;
            if run.work_pool.is_none() {
                anyhow::bail!(
                    "flow run '{}' was not started by a deployment, so no worker can run it again; run its program again",
                    run.name
                );
            }
            let state = headwater_core::transition::manual_retry(
                &format!("flow run '{}'", run.name),
                run.state.state_type,
                chrono::Utc::now(),
            )?;
            let run = headwater_store::record_flow_run_state(store, run, state).await?;
            println!(
                "Flow run '{}' will run again: a worker of pool '{}' picks it up",
                run.name,
                run.work_pool.as_deref().unwrap_or_default()
            );
            Ok(())
        }
        FlowRunCmd::Pause { id } => {
            let run = store.resolve_flow_run(&id).await?;
            let name = format!("flow run '{}'", run.name);
            let state = headwater_core::transition::pause_request(&name, run.state.state_type, chrono::Utc::now())?;
            headwater_store::record_flow_run_state(store, run, state).await?;
            println!("{name} paused: no worker takes it until `headwater flow-run resume`");
            Ok(())
        }
        FlowRunCmd::Resume { id } => {
            let run = store.resolve_flow_run(&id).await?;
            let name = format!("flow run '{}'", run.name);
            let state = headwater_core::transition::resume(&name, run.state.state_type, chrono::Utc::now())?;
            headwater_store::record_flow_run_state(store, run, state).await?;
            println!("{name} resumed: due now");
            Ok(())
        }
        FlowRunCmd::Cancel { id } => {
            let run = store.resolve_flow_run(&id).await?;
            let state = headwater_core::transition::cancellation(
                &format!("flow run '{}'", run.name),
                run.state.state_type,
                chrono::Utc::now(),
            )?;
            let run = headwater_store::record_flow_run_state(store, run, state).await?;
            match run.state.state_type {
                StateType::Cancelled => println!("Flow run '{}' cancelled", run.name),
                _ => println!("Flow run '{}' is CANCELLING: its process will stop it", run.name),
            }
            Ok(())
        }
        FlowRunCmd::Logs { id, follow, level, out } => {
            let min_level: LogLevel = level.parse()?;
            let run = store.resolve_flow_run(&id).await?;
            let names: std::collections::HashMap<_, _> =
                store.list_task_runs(run.id).await?.into_iter().map(|t| (t.id, t.name)).collect();
            let mut names = names;
            let mut filter = LogFilter { min_level, ..LogFilter::for_flow_run(run.id) };
            loop {
                let logs = store.read_logs(&filter).await?;
                if logs.iter().any(|l| l.task_run_id.is_some_and(|t| !names.contains_key(&t))) {
                    names = store.list_task_runs(run.id).await?.into_iter().map(|t| (t.id, t.name)).collect();
                }
                for l in &logs {
                    print_log(l, &run.name, &names, out.json)?;
                }
                if let Some(last) = logs.last() {
                    filter.after_id = last.id;
                }
                if !follow || logs.len() as u32 == filter.limit {
                    if !follow {
                        return Ok(());
                    }
                    continue;
                }
                let now = store.read_flow_run(run.id).await?.context("the flow run was deleted")?;
                if now.is_finished() {
                    // One last read: logs written just before the final state.
                    for l in store.read_logs(&filter).await? {
                        print_log(&l, &run.name, &names, out.json)?;
                    }
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// The server's and the worker's own events (crashed runs, automation
/// deliveries that failed, …) go to stderr at HEADWATER_LOGGING_LEVEL; their
/// spans go to an OTLP collector when one is configured, as `service`.
fn log_to_stderr(settings: &Settings, service: &str) {
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    use tracing_subscriber::util::SubscriberInitExt as _;
    let level = match settings.logging_level() {
        "DEBUG" => tracing::Level::DEBUG,
        "WARNING" => tracing::Level::WARN,
        "ERROR" | "CRITICAL" => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(tracing_subscriber::filter::LevelFilter::from_level(level))
        .with_filter(headwater_telemetry::not_ours());
    let _ = tracing_subscriber::registry().with(console).with(headwater_telemetry::layer(service)).try_init();
}
