//! `headwater concurrency-limit …`: limits on task tags and named slots.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use comfy_table::{presets, Table};
use headwater_store::Store;

#[derive(Subcommand)]
pub enum ConcurrencyLimitCmd {
    /// Create or change a limit: at most LIMIT task runs tagged NAME (or
    /// holders of `concurrency("NAME")`) at once, across every process.
    Create {
        name: String,
        limit: u32,
        /// Make it a rate limit: slots free themselves at this many per second.
        #[arg(long, value_name = "PER_SECOND")]
        slot_decay_per_second: Option<f64>,
    },
    /// List limits with the slots in use.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// One limit, as JSON.
    Inspect { name: String },
    /// Free every slot of a limit (held slots of live runs included).
    Reset { name: String },
    /// Remove a limit (its tag is no longer limited).
    Delete { name: String },
}

pub async fn run(cmd: ConcurrencyLimitCmd, store: &dyn Store) -> Result<()> {
    match cmd {
        ConcurrencyLimitCmd::Create { name, limit, slot_decay_per_second } => {
            let l = store.set_concurrency_limit(&name, limit, slot_decay_per_second).await?;
            match l.slot_decay_per_second {
                Some(d) => println!("Rate limit '{name}': {} slots, freeing {d} per second", l.limit),
                None => println!("Concurrency limit '{name}': at most {} at once ({} in use)", l.limit, l.active_slots),
            }
        }
        ConcurrencyLimitCmd::Ls { json } => {
            let limits = store.list_concurrency_limits().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&limits)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec!["NAME", "LIMIT", "IN USE", "DECAY/S", "UPDATED"]);
            for l in &limits {
                t.add_row(vec![
                    l.name.clone(),
                    l.limit.to_string(),
                    l.active_slots.to_string(),
                    l.slot_decay_per_second.map_or_else(|| "-".into(), |d| d.to_string()),
                    l.updated.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]);
            }
            println!("{t}");
        }
        ConcurrencyLimitCmd::Inspect { name } => {
            let l = store.read_concurrency_limit(&name).await?.with_context(|| {
                format!("no concurrency limit named '{name}' (see `headwater concurrency-limit ls`)")
            })?;
            println!("{}", serde_json::to_string_pretty(&l)?);
        }
        ConcurrencyLimitCmd::Reset { name } => {
            if store.read_concurrency_limit(&name).await?.is_none() {
                bail!("no concurrency limit named '{name}'");
            }
            let freed = store.reset_concurrency_limit(&name).await?;
            println!("Freed {freed} slot(s) of '{name}'");
        }
        ConcurrencyLimitCmd::Delete { name } => {
            if !store.delete_concurrency_limit(&name).await? {
                bail!("no concurrency limit named '{name}'");
            }
            println!("Deleted concurrency limit '{name}'");
        }
    }
    Ok(())
}
