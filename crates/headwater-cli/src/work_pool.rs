//! `headwater work-pool …`.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;
use comfy_table::{presets, Table};
use headwater_core::{pool_status, WorkPool, WorkPoolKind};
use headwater_store::Store;

#[derive(Subcommand)]
pub enum WorkPoolCmd {
    /// Create a work pool.
    Create {
        name: String,
        /// process or docker.
        #[arg(long = "type", default_value = "process")]
        kind: WorkPoolKind,
        /// At most this many of its runs at once.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// List pools with their status (ready when a worker is online).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a pool and its workers.
    Inspect { name: String },
    /// Hand out no runs from this pool.
    Pause { name: String },
    /// Hand out runs again.
    Resume { name: String },
    /// Set (or with --clear remove) the pool's concurrency limit.
    SetLimit {
        name: String,
        limit: Option<u32>,
        #[arg(long, conflicts_with = "limit")]
        clear: bool,
    },
    /// Remove a pool (its runs stay).
    Delete { name: String },
}

async fn read(store: &dyn Store, name: &str) -> Result<WorkPool> {
    store
        .read_work_pool(name)
        .await?
        .with_context(|| format!("no work pool named '{name}' (see `headwater work-pool ls`)"))
}

pub async fn run(cmd: WorkPoolCmd, store: &dyn Store) -> Result<()> {
    let now = Utc::now();
    match cmd {
        WorkPoolCmd::Create { name, kind, limit } => {
            if store.read_work_pool(&name).await?.is_some() {
                bail!("a work pool named '{name}' already exists");
            }
            let mut pool = WorkPool::new(&name, kind, now);
            pool.concurrency_limit = limit;
            store.apply_work_pool(&pool).await?;
            println!("Created work pool '{name}' ({kind}); start a worker with `headwater worker start --pool {name}`");
        }
        WorkPoolCmd::Ls { json } => {
            let pools = store.list_work_pools().await?;
            let workers = store.list_workers(None).await?;
            if json {
                let rows: Vec<_> = pools
                    .iter()
                    .map(|p| serde_json::json!({"pool": p, "status": pool_status(p, &workers, now)}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec![
                "NAME",
                "TYPE",
                "STATUS",
                "LIMIT",
                "WORKERS ONLINE",
            ]);
            for p in &pools {
                let online = workers.iter().filter(|w| w.work_pool == p.name && w.is_online(now)).count();
                t.add_row(vec![
                    p.name.clone(),
                    p.kind.to_string(),
                    pool_status(p, &workers, now).to_string(),
                    p.concurrency_limit.map_or("-".into(), |l| l.to_string()),
                    online.to_string(),
                ]);
            }
            println!("{t}");
        }
        WorkPoolCmd::Inspect { name } => {
            let p = read(store, &name).await?;
            let workers = store.list_workers(Some(&name)).await?;
            println!("Work pool  {} ({})", p.name, p.kind);
            println!("Status     {}", pool_status(&p, &workers, now));
            println!("Limit      {}", p.concurrency_limit.map_or("none".into(), |l| format!("{l} at once")));
            for w in workers {
                let state = if w.is_online(now) { "online" } else { "offline" };
                println!(
                    "Worker     {} {state}, last heartbeat {}",
                    w.name,
                    w.last_heartbeat.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
        }
        WorkPoolCmd::Pause { name } => update(store, &name, |p| p.paused = true, "paused").await?,
        WorkPoolCmd::Resume { name } => update(store, &name, |p| p.paused = false, "resumed").await?,
        WorkPoolCmd::SetLimit { name, limit, clear } => {
            if limit.is_none() && !clear {
                bail!("give a limit, or --clear to remove it");
            }
            if limit == Some(0) {
                bail!("a limit of 0 would never run anything; pause the pool instead");
            }
            update(store, &name, |p| p.concurrency_limit = limit, "updated").await?
        }
        WorkPoolCmd::Delete { name } => {
            if !store.delete_work_pool(&name).await? {
                bail!("no work pool named '{name}'");
            }
            println!("Deleted work pool '{name}'");
        }
    }
    Ok(())
}

async fn update(store: &dyn Store, name: &str, change: impl FnOnce(&mut WorkPool), what: &str) -> Result<()> {
    let mut p = read(store, name).await?;
    change(&mut p);
    p.updated = Utc::now();
    store.apply_work_pool(&p).await?;
    println!("Work pool '{name}' {what}");
    Ok(())
}
