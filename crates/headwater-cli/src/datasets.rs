//! `headwater dataset …`: the lake's catalog.

use anyhow::{Context, Result};
use clap::Subcommand;
use comfy_table::{presets, Table};
use headwater_core::SourceStamp;
use headwater_store::sources::{check_sources, SourceOutcome, SourceProbe};
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
    /// Asks the web again for the file each current partition was made from
    /// (a HEAD request; ETag, Last-Modified and size against those recorded
    /// at download) and records the answer: a changed file marks the
    /// partition stale (`partition ls`), and `backfill … --only stale` runs
    /// it again.
    CheckSources {
        /// Datasets to check; default: every dataset.
        names: Vec<String>,
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
        DatasetCmd::CheckSources { names, json } => {
            let reports = check_sources(store, &names, &HttpProbe::new()?, chrono::Utc::now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
                return Ok(());
            }
            if reports.is_empty() {
                println!("No partition recorded the file it was made from.");
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec![
                "DATASET",
                "PARTITION",
                "VERSION",
                "SOURCE",
                "FILE",
            ]);
            for r in &reports {
                let what = match &r.outcome {
                    SourceOutcome::Unchanged => "unchanged".to_string(),
                    SourceOutcome::Changed => "CHANGED".to_string(),
                    SourceOutcome::CannotTell => "cannot tell (no ETag, Last-Modified or size)".to_string(),
                    SourceOutcome::Unreachable(why) => format!("unreachable: {why}"),
                };
                t.add_row(vec![
                    r.version.dataset.clone(),
                    r.version.partition.clone(),
                    r.version.version.to_string(),
                    r.url.clone(),
                    what,
                ]);
            }
            println!("{t}");
            let changed = reports.iter().filter(|r| r.outcome == SourceOutcome::Changed).count();
            let unreachable = reports.iter().filter(|r| matches!(r.outcome, SourceOutcome::Unreachable(_))).count();
            println!("{} checked, {changed} changed, {unreachable} unreachable.", reports.len());
            if changed > 0 {
                println!(
                    "Their partitions are stale; run them again with `headwater backfill DEPLOYMENT --only stale`."
                );
            }
        }
    }
    Ok(())
}

/// Looks at files on the web with `HEAD` (a server that refuses it is
/// asked for its first byte instead).
struct HttpProbe(reqwest::Client);

impl HttpProbe {
    fn new() -> Result<HttpProbe> {
        headwater_client::install_tls_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(HttpProbe(client))
    }
}

#[async_trait::async_trait]
impl SourceProbe for HttpProbe {
    async fn look(&self, url: &str) -> Result<SourceStamp, String> {
        use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, LAST_MODIFIED, RANGE};
        let mut resp = self.0.head(url).send().await.map_err(|e| e.to_string())?;
        let ranged = matches!(resp.status().as_u16(), 403 | 405 | 501);
        if ranged {
            resp = self.0.get(url).header(RANGE, "bytes=0-0").send().await.map_err(|e| e.to_string())?;
        }
        if !resp.status().is_success() {
            return Err(format!("the server answered {}", resp.status()));
        }
        let h = resp.headers();
        let text = |name| h.get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(String::from);
        let size = if resp.status() == reqwest::StatusCode::PARTIAL_CONTENT {
            text(CONTENT_RANGE).and_then(|r| r.rsplit('/').next().and_then(|t| t.parse().ok()))
        } else {
            text(CONTENT_LENGTH).and_then(|l| l.parse().ok())
        };
        Ok(SourceStamp { url: url.to_string(), etag: text(ETAG), last_modified: text(LAST_MODIFIED), size })
    }
}
