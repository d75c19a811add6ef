//! `headwater api-key …` and `headwater audit …`.

use anyhow::{bail, Result};
use chrono::Utc;
use clap::Subcommand;
use comfy_table::{presets, Table};
use headwater_core::Role;
use headwater_store::{AuditFilter, Store};

#[derive(Subcommand)]
pub enum ApiKeyCmd {
    /// Make a named key and print it, once: only its hash is kept.
    Create {
        /// Lowercase letters, digits, `_` and `-`; never reused.
        name: String,
        /// read (UI, dashboards), run (flows, workers: start, cancel and
        /// report runs) or admin (everything, secrets and keys too).
        #[arg(long)]
        role: Role,
    },
    /// List keys (never the keys themselves: their first characters).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Stop accepting a key, at once.
    Revoke { name: String },
}

pub async fn run_api_key(cmd: ApiKeyCmd, store: &dyn Store) -> Result<()> {
    match cmd {
        ApiKeyCmd::Create { name, role } => {
            let issued = store.issue_api_key(&name, role, Utc::now()).await?;
            println!("{}", issued.secret);
            eprintln!(
                "Created API key '{name}' with the role {role}. It is shown this once: give it to its clients \
                 (HEADWATER_API_KEY, or Authorization: Bearer …); the server keeps only its hash."
            );
        }
        ApiKeyCmd::Ls { json } => {
            let keys = store.list_api_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec!["NAME", "ROLE", "KEY", "CREATED", "REVOKED"]);
            for k in &keys {
                t.add_row(vec![
                    k.name.clone(),
                    k.role.to_string(),
                    format!("{}…", k.prefix),
                    k.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                    k.revoked.map_or_else(|| "-".into(), |r| r.format("%Y-%m-%d %H:%M:%S").to_string()),
                ]);
            }
            println!("{t}");
        }
        ApiKeyCmd::Revoke { name } => match store.revoke_api_key(&name, Utc::now()).await? {
            Some(_) => println!("Revoked API key '{name}'"),
            None => bail!("no API key named '{name}' (see `headwater api-key ls`)"),
        },
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// The calls that changed something or revealed a secret, newest first.
    Ls {
        /// Only those made with this key.
        #[arg(long)]
        key: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run_audit(cmd: AuditCmd, store: &dyn Store) -> Result<()> {
    let AuditCmd::Ls { key, limit, json } = cmd;
    if limit == 0 || limit > AuditFilter::MAX_LIMIT {
        bail!("--limit is 1 to {}", AuditFilter::MAX_LIMIT);
    }
    let entries = store.read_audit(&AuditFilter { key, before: None, limit: Some(limit) }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec!["TIME", "KEY", "CALL", "STATUS"]);
    for e in &entries {
        t.add_row(vec![
            e.at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            e.key.clone().unwrap_or_else(|| "-".into()),
            format!("{} {}", e.method, e.path),
            e.status.to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}
