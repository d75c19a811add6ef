//! `headwater db`: backups of the embedded database, putting one back, and
//! pruning old history (any store). PostgreSQL keeps its own backup tools
//! (`pg_dump`, base backups with WAL archiving).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use headwater_config::Settings;
use headwater_core::retention::{PruneKind, Retention};
use headwater_lake::Lake;
use headwater_store::retention::{prune_kind, PRUNE_BATCH};

#[derive(Subcommand)]
pub enum DbCmd {
    /// Write an online, consistent copy of the embedded database (flows and
    /// the server may keep writing). DEST is a file, or with --block a key
    /// in a lake (a local-file-system, s3-bucket, gcs-bucket or
    /// azure-blob-container block).
    Backup {
        dest: String,
        /// Upload the copy to this block's store, under DEST.
        #[arg(long)]
        block: Option<String>,
        /// The database file, if not the embedded one of this home.
        #[arg(long, value_name = "PATH")]
        database: Option<PathBuf>,
    },
    /// Delete history older than an age: finished flow runs with their task
    /// runs, states, logs and artifacts; log lines; artifacts; notification
    /// deliveries. Never unfinished runs, the latest run of a partition, a
    /// key's latest artifact or deliveries still to make. In small batches,
    /// so flows and the UI carry on meanwhile.
    Prune {
        /// e.g. 30d, 12w, 36h (at least 1h).
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Only these kinds (default: all): runs, logs, artifacts, deliveries.
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<PruneKind>,
        /// Count what would go; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Afterwards give the freed space back to the disk (the embedded
        /// database only; SQLite reuses it anyway).
        #[arg(long)]
        vacuum: bool,
    },
    /// Put a backup in place of the embedded database. Stop the server,
    /// workers and flows using it first; the database it replaces is kept
    /// beside it as `<name>.before-restore-<time>`.
    Restore {
        src: String,
        /// Download the copy from this block's store, from SRC.
        #[arg(long)]
        block: Option<String>,
        #[arg(long, value_name = "PATH")]
        database: Option<PathBuf>,
    },
}

/// The server's retention from the settings (`HEADWATER_RETAIN_RUNS`, …);
/// a bad value is refused naming its setting.
pub fn retention(settings: &Settings) -> Result<Retention> {
    let mut retention = Retention::default();
    for kind in PruneKind::ALL {
        let key = format!("HEADWATER_RETAIN_{}", kind.as_str().to_ascii_uppercase());
        if let Some(age) = settings.get(&key) {
            retention = retention.keep_text(kind, age).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
        }
    }
    Ok(retention)
}

/// The SQLite file to back up or restore: PostgreSQL is refused with
/// what to use instead.
fn database_file(settings: &Settings, given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    if settings.get("HEADWATER_DATABASE_URL").is_some_and(|u| u.starts_with("postgres")) {
        bail!(
            "HEADWATER_DATABASE_URL is PostgreSQL: back it up with pg_dump (or base backups with WAL \
             archiving for point-in-time recovery); `headwater db` is for the embedded database"
        );
    }
    Ok(settings.database_path())
}

async fn lake(settings: &Settings, name: &str) -> Result<Lake> {
    let store = crate::open(settings).await?;
    let doc = headwater_store::blocks::load_resolved(store.as_ref(), name).await?;
    Ok(Lake::from_block(name, &doc.block_type, doc.data)?)
}

/// A file in the home for a copy on its way to or from a lake.
fn staging(settings: &Settings, what: &str) -> PathBuf {
    settings.home.join(format!(".{what}.{}.db", std::process::id()))
}

pub async fn run(cmd: DbCmd, settings: &Settings) -> Result<()> {
    match cmd {
        DbCmd::Prune { older_than, kinds, dry_run, vacuum } => {
            let kinds = if kinds.is_empty() { PruneKind::HISTORY.to_vec() } else { kinds };
            let mut keep = Retention::default();
            for k in &kinds {
                keep = keep.keep_text(*k, &older_than).map_err(|e| anyhow::anyhow!("--older-than: {e}"))?;
            }
            let embedded = if settings.api_url().is_none() {
                let path = database_file(settings, None)?;
                Some(
                    headwater_sql::SqliteStore::open(&path)
                        .await
                        .with_context(|| format!("opening {}", path.display()))?,
                )
            } else if vacuum {
                bail!("--vacuum is for the embedded database; this profile talks to a server");
            } else {
                None
            };
            let store: std::sync::Arc<dyn headwater_store::Store> = match &embedded {
                Some(s) => std::sync::Arc::new(s.clone()),
                None => crate::open(settings).await?,
            };
            let pause = std::time::Duration::from_millis(20);
            for (kind, before) in keep.cutoffs(chrono::Utc::now()) {
                let done = prune_kind(store.as_ref(), kind, before, PRUNE_BATCH, pause, dry_run, &|| true).await?;
                let verb = if dry_run { "would delete" } else { "deleted" };
                let what = if kind == PruneKind::Runs { "flow runs" } else { kind.as_str() };
                println!("{kind}: {verb} {} {what} older than {}", done.deleted, before.format("%Y-%m-%d %H:%M UTC"));
            }
            if vacuum && !dry_run {
                if let Some(s) = &embedded {
                    s.vacuum().await?;
                    println!("vacuumed {}", s.path().display());
                }
            }
            Ok(())
        }
        DbCmd::Backup { dest, block, database } => {
            let path = database_file(settings, database)?;
            if !path.exists() {
                bail!("no database at {}: nothing to back up", path.display());
            }
            let store =
                headwater_sql::SqliteStore::open(&path).await.with_context(|| format!("opening {}", path.display()))?;
            match block {
                None => {
                    let bytes = store.backup_to(Path::new(&dest)).await?;
                    store.close().await;
                    println!("backed up {} to {dest} ({bytes} bytes)", path.display());
                }
                Some(name) => {
                    let lake = lake(settings, &name).await?;
                    let tmp = staging(settings, "backup");
                    let _ = std::fs::remove_file(&tmp);
                    let copied = store.backup_to(&tmp).await;
                    store.close().await;
                    copied?;
                    let uploaded = lake.put_file(&dest, &tmp).await;
                    let _ = std::fs::remove_file(&tmp);
                    let bytes = uploaded?;
                    println!("backed up {} to {} ({bytes} bytes)", path.display(), lake.uri_of(&dest));
                }
            }
            Ok(())
        }
        DbCmd::Restore { src, block, database } => {
            let path = database_file(settings, database)?;
            let (copy, staged) = match block {
                None => (PathBuf::from(&src), None),
                Some(name) => {
                    let lake = lake(settings, &name).await?;
                    let tmp = staging(settings, "restore");
                    lake.get_to_file(&src, &tmp).await?;
                    (tmp.clone(), Some(tmp))
                }
            };
            let restored = headwater_sql::restore_sqlite(&copy, &path).await;
            if let Some(tmp) = staged {
                let _ = std::fs::remove_file(tmp);
            }
            let restored = restored?;
            println!(
                "restored {} from {src}: {} flow runs, schema version {}",
                path.display(),
                restored.flow_runs,
                restored.schema_version
            );
            if let Some(previous) = restored.previous {
                println!("the database it replaced is kept as {}", previous.display());
            }
            Ok(())
        }
    }
}
