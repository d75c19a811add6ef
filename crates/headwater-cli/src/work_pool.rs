//! `headwater work-pool …` and `headwater work-queue …`.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;
use comfy_table::{presets, Table};
use headwater_core::{pool_status, WorkPool, WorkPoolKind, WorkQueue};
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
            for q in store.list_work_queues(&name).await? {
                println!("Queue      {}", describe_queue(&q));
            }
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
            check_limit(limit)?;
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

fn describe_queue(q: &WorkQueue) -> String {
    let limit = q.concurrency_limit.map_or("no limit".into(), |l| format!("at most {l} at once"));
    let paused = if q.paused { ", paused" } else { "" };
    format!("{} (priority {}, {limit}{paused})", q.name, q.priority)
}

#[derive(Subcommand)]
pub enum WorkQueueCmd {
    /// Create a queue in a pool. Workers take due runs from the queue with
    /// the lowest priority number first.
    Create {
        name: String,
        #[arg(long)]
        pool: String,
        /// 1 is served first; the pool's default queue has priority 1
        /// (default: after the pool's existing queues).
        #[arg(long)]
        priority: Option<u32>,
        /// At most this many of its runs at once.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// List a pool's queues, in the order workers serve them.
    Ls {
        #[arg(long)]
        pool: String,
        #[arg(long)]
        json: bool,
    },
    /// Hand out no runs from this queue.
    Pause {
        name: String,
        #[arg(long)]
        pool: String,
    },
    /// Hand out runs again.
    Resume {
        name: String,
        #[arg(long)]
        pool: String,
    },
    /// Set (or with --clear remove) the queue's concurrency limit.
    SetLimit {
        name: String,
        limit: Option<u32>,
        #[arg(long)]
        pool: String,
        #[arg(long, conflicts_with = "limit")]
        clear: bool,
    },
    /// Change the queue's priority.
    SetPriority {
        name: String,
        priority: u32,
        #[arg(long)]
        pool: String,
    },
    /// Remove a queue (its runs stay, served after the pool's other queues).
    Delete {
        name: String,
        #[arg(long)]
        pool: String,
    },
}

async fn read_queue(store: &dyn Store, pool: &str, name: &str) -> Result<WorkQueue> {
    read(store, pool).await?;
    store.list_work_queues(pool).await?.into_iter().find(|q| q.name == name).with_context(|| {
        format!("no queue named '{name}' in work pool '{pool}' (see `headwater work-queue ls --pool {pool}`)")
    })
}

pub async fn run_queue(cmd: WorkQueueCmd, store: &dyn Store) -> Result<()> {
    let now = Utc::now();
    match cmd {
        WorkQueueCmd::Create { name, pool, priority, limit } => {
            read(store, &pool).await?;
            let existing = store.list_work_queues(&pool).await?;
            if existing.iter().any(|q| q.name == name) {
                bail!("work pool '{pool}' already has a queue named '{name}'");
            }
            check_limit(limit)?;
            let priority = priority.unwrap_or_else(|| existing.iter().map(|q| q.priority).max().unwrap_or(0) + 1);
            let mut queue = WorkQueue::new(&pool, &name, priority, now);
            queue.concurrency_limit = limit;
            let stored = store.apply_work_queue(&queue).await?;
            println!("Created queue {} in work pool '{pool}'", describe_queue(&stored));
            println!("Deployments use it with `work_pool: {{name: {pool}, queue: {name}}}`; a worker serves only it with `headwater worker start --pool {pool} --queue {name}`");
        }
        WorkQueueCmd::Ls { pool, json } => {
            read(store, &pool).await?;
            let queues = store.list_work_queues(&pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&queues)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec!["NAME", "PRIORITY", "LIMIT", "PAUSED"]);
            for q in &queues {
                t.add_row(vec![
                    q.name.clone(),
                    q.priority.to_string(),
                    q.concurrency_limit.map_or("-".into(), |l| l.to_string()),
                    if q.paused { "yes".into() } else { "no".to_string() },
                ]);
            }
            println!("{t}");
        }
        WorkQueueCmd::Pause { name, pool } => update_queue(store, &pool, &name, |q| q.paused = true, "paused").await?,
        WorkQueueCmd::Resume { name, pool } => {
            update_queue(store, &pool, &name, |q| q.paused = false, "resumed").await?
        }
        WorkQueueCmd::SetLimit { name, limit, pool, clear } => {
            if limit.is_none() && !clear {
                bail!("give a limit, or --clear to remove it");
            }
            check_limit(limit)?;
            update_queue(store, &pool, &name, |q| q.concurrency_limit = limit, "updated").await?
        }
        WorkQueueCmd::SetPriority { name, priority, pool } => {
            update_queue(store, &pool, &name, |q| q.priority = priority, "updated").await?
        }
        WorkQueueCmd::Delete { name, pool } => {
            read(store, &pool).await?;
            if !store.delete_work_queue(&pool, &name).await? {
                bail!("no queue named '{name}' in work pool '{pool}'");
            }
            println!("Deleted queue '{name}' of work pool '{pool}'");
        }
    }
    Ok(())
}

fn check_limit(limit: Option<u32>) -> Result<()> {
    if limit == Some(0) {
        bail!("a limit of 0 would never run anything; pause instead");
    }
    Ok(())
}

async fn update_queue(
    store: &dyn Store,
    pool: &str,
    name: &str,
    change: impl FnOnce(&mut WorkQueue),
    what: &str,
) -> Result<()> {
    let mut q = read_queue(store, pool, name).await?;
    change(&mut q);
    q.updated = Utc::now();
    let stored = store.apply_work_queue(&q).await?;
    println!("Queue {} of work pool '{pool}' {what}", describe_queue(&stored));
    Ok(())
}
