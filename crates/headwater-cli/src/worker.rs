//! `headwater worker start`: the worker crate's loop, with the options from
//! the command line.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use headwater_config::Settings;
use headwater_store::Store;
use headwater_worker::WorkerOptions;

#[derive(Args)]
pub struct WorkerArgs {
    /// The work pool to take runs from.
    #[arg(long, default_value = headwater_core::deployment::DEFAULT_WORK_POOL)]
    pool: String,
    /// Take runs only from this queue of the pool (repeat for several;
    /// default: every queue, by priority).
    #[arg(long = "queue", value_name = "QUEUE")]
    queues: Vec<String>,
    /// At most this many runs at once.
    #[arg(long, default_value_t = 4)]
    limit: usize,
    /// Stop after starting this many runs (and waiting for them).
    #[arg(long)]
    max_runs: Option<usize>,
    /// How often to look for due runs, in milliseconds.
    #[arg(long, default_value_t = 250)]
    poll_ms: u64,
    /// Stop once nothing is due and nothing is running (drain the pool).
    #[arg(long)]
    exit_when_idle: bool,
    /// This worker's name, shown in `headwater work-pool inspect`
    /// (default: host and process id).
    #[arg(long)]
    name: Option<String>,
    /// A run asked to cancel whose process has not stopped after this many
    /// seconds is killed.
    #[arg(long, default_value_t = 30)]
    cancel_grace_secs: u64,
}

pub async fn start(args: WorkerArgs, store: Arc<dyn Store>, settings: &Settings) -> Result<()> {
    // Embedded, nobody else watches for automations' events: the worker's
    // process does (with a server, the server does).
    let _automations = store.outbox().is_some().then(|| {
        let stop = tokio_util::sync::CancellationToken::new();
        let config = headwater_automations::EngineConfig {
            ui_url: settings.ui_url().unwrap_or("http://127.0.0.1:4200").to_string(),
            ..Default::default()
        };
        let engine = headwater_automations::Engine::new(store.clone(), config);
        tokio::spawn(engine.run(Duration::from_secs(1), stop.clone()));
        stop.drop_guard()
    });
    let options = WorkerOptions {
        pool: args.pool,
        queues: args.queues,
        limit: args.limit,
        max_runs: args.max_runs,
        poll: Duration::from_millis(args.poll_ms),
        exit_when_idle: args.exit_when_idle,
        name: args.name,
        cancel_grace: Duration::from_secs(args.cancel_grace_secs),
    };
    Ok(headwater_worker::start(options, store, settings).await?)
}
