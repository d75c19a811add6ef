//! `headwater dataset …`: the lake's catalog.

use anyhow::{Context, Result};
use clap::Subcommand;
use comfy_table::{presets, Table};
use headwater_store::Store;

#[derive(Subcommand)]
pub enum DatasetCmd {
    /// List datasets with their partitions, rows and size.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// A dataset's schema and current partitions.
    Inspect {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Every write of every partition, newest first, with the run that made it.
    History {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub async fn run(cmd: DatasetCmd, store: &dyn Store) -> Result<()> {
    match cmd {
        DatasetCmd::Ls { json } => {
            let all = store.list_datasets().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec![
                "DATASET",
                "PARTITIONS",
                "ROWS",
                "SIZE",
                "UPDATED",
            ]);
            for d in &all {
                t.add_row(vec![
                    d.name.clone(),
                    d.partitions.to_string(),
                    d.rows.to_string(),
                    size(d.bytes),
                    d.updated.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]);
            }
            println!("{t}");
        }
        DatasetCmd::Inspect { name, json } => {
            let d = store
                .read_dataset(&name)
                .await?
                .with_context(|| format!("no dataset named '{name}' (see `headwater dataset ls`)"))?;
            let parts = store.list_partitions(&name).await?;
            let lineage = headwater_store::lineage::lineage(store, &name).await?.unwrap_or_default();
            if json {
                let all = serde_json::json!({"dataset": d, "partitions": parts, "lineage": lineage});
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            println!("Dataset  {} ({} partitions, {} rows, {})", d.name, d.partitions, d.rows, size(d.bytes));
            let names = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
            println!("Lineage  {} → {} → {}", names(&lineage.upstream), d.name, names(&lineage.downstream));
            println!(
                "Schema   {}",
                d.schema.iter().map(|c| format!("{} {}", c.name, c.data_type)).collect::<Vec<_>>().join(", ")
            );
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec![
                "PARTITION",
                "VERSION",
                "ROWS",
                "SIZE",
                "WRITTEN",
                "LOCATION",
            ]);
            for p in &parts {
                t.add_row(vec![
                    p.partition.clone(),
                    p.version.to_string(),
                    p.rows.to_string(),
                    size(p.bytes),
                    p.written.format("%Y-%m-%d %H:%M:%S").to_string(),
                    p.location.clone(),
                ]);
            }
            println!("{t}");
        }
        DatasetCmd::History { name, json } => {
            let h = store.dataset_history(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec![
                "WRITTEN",
                "PARTITION",
                "VERSION",
                "ROWS",
                "FLOW RUN",
            ]);
            for v in &h {
                t.add_row(vec![
                    v.written.format("%Y-%m-%d %H:%M:%S").to_string(),
                    v.partition.clone(),
                    v.version.to_string(),
                    v.rows.to_string(),
                    v.flow_run_id.map_or("-".into(), |id| id.to_string()),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}
