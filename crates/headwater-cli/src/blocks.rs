//! `headwater block …`: block types, and blocks saved under a name.

use std::io::BufRead;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;
use comfy_table::{presets, Table};
use headwater_core::block::{block_refs, BLOCK_REF, MASK};
use headwater_core::{BlockDocument, BlockType};
use headwater_store::Store;
use serde_json::{json, Map, Value};

#[derive(Subcommand)]
pub enum BlockCmd {
    /// List the block types (with their fields: `--json` gives the schemas).
    Types {
        #[arg(long)]
        json: bool,
    },
    /// List saved blocks (secrets masked).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Create (or with --update, replace) a block of a type.
    ///
    /// Fields are `-f name=value`; nested fields with dots
    /// (`-f credentials.aws_access_key_id=AK…`). A value is read as JSON
    /// when it is JSON and the field is not text; `@other-block` names
    /// another block; `env:VAR` takes an environment variable and `-` a line
    /// from standard input, so secrets stay out of shell history.
    Create {
        /// The block type, e.g. s3-bucket (see `headwater block types`).
        block_type: String,
        name: String,
        #[arg(short = 'f', long = "field", value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// Replace a block that already exists.
        #[arg(long)]
        update: bool,
    },
    /// Show a block, secrets masked unless --reveal.
    Inspect {
        name: String,
        /// Print secrets in clear (an explicit request).
        #[arg(long)]
        reveal: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove a block.
    Delete { name: String },
}

pub async fn run(cmd: BlockCmd, store: &dyn Store) -> Result<()> {
    store.register_block_types(&headwater_blocks::builtin_types()).await?;
    match cmd {
        BlockCmd::Types { json } => {
            let types = store.list_block_types().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&types)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec!["TYPE", "FIELDS (* required, secret)", "ABOUT"]);
            for ty in &types {
                t.add_row(vec![ty.slug.clone(), describe_fields(ty), ty.description.clone()]);
            }
            println!("{t}");
        }
        BlockCmd::Ls { json } => {
            let blocks = store.list_blocks().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&blocks)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY).set_header(vec!["NAME", "TYPE", "USES", "UPDATED"]);
            for b in &blocks {
                let uses: Vec<_> = block_refs(&b.data).into_iter().map(|(_, n)| n).collect();
                t.add_row(vec![
                    b.name.clone(),
                    b.block_type.clone(),
                    uses.join(", "),
                    b.updated.format("%Y-%m-%d %H:%M:%S").to_string(),
                ]);
            }
            println!("{t}");
        }
        BlockCmd::Create { block_type, name, fields, update } => {
            let types = store.list_block_types().await?;
            let Some(ty) = types.iter().find(|t| t.slug == block_type) else {
                let known: Vec<_> = types.iter().map(|t| t.slug.as_str()).collect();
                bail!("unknown block type '{block_type}' (types: {})", known.join(", "));
            };
            let existing = store.read_block(&name, false).await?;
            if existing.is_some() && !update {
                bail!("a block named '{name}' exists; pass --update to replace it");
            }
            let mut data = Value::Object(Map::new());
            for f in &fields {
                let (path, raw) = f.split_once('=').with_context(|| format!("'{f}': give fields as NAME=VALUE"))?;
                let path: Vec<String> = path.split('.').map(str::to_string).collect();
                let value = field_value(ty, &path, raw)?;
                set_path(&mut data, &path, value);
            }
            for target in block_refs(&data).into_iter().map(|(_, n)| n) {
                if store.read_block(&target, false).await?.is_none() {
                    bail!("'@{target}' names no block (see `headwater block ls`)");
                }
            }
            let now = Utc::now();
            let created = existing.map_or(now, |e| e.created);
            let doc = BlockDocument { name: name.clone(), block_type: block_type.clone(), data, created, updated: now };
            let saved = store.save_block(&doc).await?;
            println!("Saved block '{name}' ({block_type}):");
            println!("{}", serde_json::to_string_pretty(&saved.data)?);
            println!("Load it in a flow with `{}::load(\"{name}\")`", rust_type_hint(&block_type));
        }
        BlockCmd::Inspect { name, reveal, json } => {
            let b = store
                .read_block(&name, reveal)
                .await?
                .with_context(|| format!("no block named '{name}' (see `headwater block ls`)"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&b)?);
                return Ok(());
            }
            println!("Block    {} ({})", b.name, b.block_type);
            println!("Updated  {}", b.updated.format("%Y-%m-%d %H:%M:%S UTC"));
            println!("{}", serde_json::to_string_pretty(&b.data)?);
            if !reveal && b.data.to_string().contains(MASK) {
                println!("(secrets are masked; --reveal shows them)");
            }
        }
        BlockCmd::Delete { name } => {
            if !store.delete_block(&name).await? {
                bail!("no block named '{name}'");
            }
            println!("Deleted block '{name}'");
        }
    }
    Ok(())
}

/// A field's value from the command line, by the field's type.
fn field_value(ty: &BlockType, path: &[String], raw: &str) -> Result<Value> {
    let field = path.join(".");
    if let Some(target) = raw.strip_prefix('@') {
        return Ok(json!({ BLOCK_REF: target }));
    }
    let text = if let Some(var) = raw.strip_prefix("env:") {
        std::env::var(var).with_context(|| format!("{field}: the environment variable {var} is not set"))?
    } else if raw == "-" {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).with_context(|| format!("{field}: reading standard input"))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        raw.to_string()
    };
    let text_field = field_types(ty, path).iter().any(|t| t == "string");
    Ok(match serde_json::from_str::<Value>(&text) {
        Ok(v) if !text_field || v.is_string() => v,
        _ => Value::String(text),
    })
}

/// The JSON types the schema allows at `path` (through nested objects).
fn field_types(ty: &BlockType, path: &[String]) -> Vec<String> {
    let root = &ty.schema;
    let resolve = |node: &Value| -> Value {
        match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(p) => root.pointer(p).cloned().unwrap_or_else(|| node.clone()),
            None => node.clone(),
        }
    };
    let mut node = root.clone();
    for key in path {
        let mut options = vec![resolve(&node)];
        if let Some(any) = node.get("anyOf").and_then(Value::as_array) {
            options.extend(any.iter().map(&resolve));
        }
        match options.iter().find_map(|o| o.get("properties").and_then(|p| p.get(key)).cloned()) {
            Some(next) => node = next,
            None => return Vec::new(),
        }
    }
    let mut types = Vec::new();
    let mut collect = |n: &Value| match n.get("type") {
        Some(Value::String(t)) => types.push(t.clone()),
        Some(Value::Array(ts)) => types.extend(ts.iter().filter_map(Value::as_str).map(String::from)),
        _ => {}
    };
    collect(&resolve(&node));
    for o in node.get("anyOf").and_then(Value::as_array).into_iter().flatten() {
        collect(&resolve(o));
    }
    types
}

fn set_path(data: &mut Value, path: &[String], value: Value) {
    let mut node = data;
    for key in &path[..path.len() - 1] {
        if !node.get(key).is_some_and(Value::is_object) {
            node[key.as_str()] = Value::Object(Map::new());
        }
        node = node.get_mut(key).expect("just made");
    }
    node[path[path.len() - 1].as_str()] = value;
}

/// `bucket_name*, bucket_folder, credentials (aws_secret_access_key secret)`.
fn describe_fields(ty: &BlockType) -> String {
    let required: Vec<&str> =
        ty.schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let secrets = ty.secret_paths();
    let props = ty.schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    props
        .keys()
        .map(|k| {
            let star = if required.contains(&k.as_str()) { "*" } else { "" };
            let nested: Vec<String> =
                secrets.iter().filter(|p| p.len() > 1 && p[0] == *k).map(|p| p[1..].join(".")).collect();
            if secrets.iter().any(|p| p.len() == 1 && p[0] == *k) {
                format!("{k}{star} (secret)")
            } else if !nested.is_empty() {
                format!("{k}{star} ({} secret)", nested.join(", "))
            } else {
                format!("{k}{star}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn rust_type_hint(slug: &str) -> String {
    slug.split('-')
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<String>()
        .replace("Duckdb", "DuckDb")
        .replace("Bigquery", "BigQuery")
}

#[cfg(test)]
mod tests {
    use super::*;
    use headwater_blocks::Block;

    #[test]
    fn field_values_follow_the_field_types() {
        let pg = headwater_blocks::PostgresConnection::block_type();
        assert_eq!(field_value(&pg, &["port".into()], "5433").unwrap(), json!(5433));
        assert_eq!(field_value(&pg, &["password".into()], "1234").unwrap(), json!("1234"), "text stays text");
        assert_eq!(field_value(&pg, &["host".into()], "@other").unwrap(), json!({"$block": "other"}));
        std::env::set_var("HW_TEST_SECRET_FIELD", "s3cr3t");
        assert_eq!(field_value(&pg, &["password".into()], "env:HW_TEST_SECRET_FIELD").unwrap(), json!("s3cr3t"));
        assert!(field_value(&pg, &["password".into()], "env:HW_NOT_SET_ANYWHERE")
            .unwrap_err()
            .to_string()
            .contains("not set"));
        let s3 = headwater_blocks::S3Bucket::block_type();
        assert_eq!(field_types(&s3, &["credentials".into(), "aws_access_key_id".into()]), ["string", "null"]);
        let mut data = json!({});
        set_path(&mut data, &["credentials".into(), "region_name".into()], json!("eu"));
        assert_eq!(data, json!({"credentials": {"region_name": "eu"}}));
        assert_eq!(rust_type_hint("s3-bucket"), "S3Bucket");
        assert_eq!(rust_type_hint("duckdb-warehouse"), "DuckDbWarehouse");
        assert!(describe_fields(&pg).contains("password (secret)"));
        assert!(describe_fields(&s3).contains("bucket_name*"));
    }

    #[test]
    fn nested_secret_paths_show_in_the_field_list() {
        let s3 = headwater_blocks::S3Bucket::block_type();
        assert!(describe_fields(&s3).contains("credentials (aws_secret_access_key, aws_session_token secret)"));
    }
}
