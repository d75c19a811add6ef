//! Blocks from flows: `S3Bucket::load("taxi-lake").await?` returns the
//! typed block with its secrets (and the blocks it names) filled in, and
//! remembers the secrets so that they never reach a log.

use std::future::Future;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use headwater_core::block::{get_path, MASK};
use headwater_core::BlockDocument;
use headwater_store::Store;
use serde_json::Value;

pub use headwater_blocks::*;

use crate::context::RunContext;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Loading and saving blocks by name, for every block type.
pub trait BlockExt: Block + Send + Sync + Sized {
    /// The block saved under `name`, secrets revealed (and kept out of logs).
    fn load(name: &str) -> impl Future<Output = Result<Self>> + Send {
        load::<Self>(name.to_string())
    }

    /// Saves this block under `name` (secrets sealed by the store).
    fn save(&self, name: &str) -> impl Future<Output = Result<()>> + Send {
        let data = serde_json::to_value(self);
        let name = name.to_string();
        async move {
            let data = data.map_err(|e| Error::Block(format!("block '{name}' cannot be stored: {e}")))?;
            let engine = engine()?;
            let store = engine.store();
            let failed = Error::from;
            store.register_block_types(&[Self::block_type()]).await.map_err(failed)?;
            let now = Utc::now();
            let doc = BlockDocument { name, block_type: Self::TYPE.to_string(), data, created: now, updated: now };
            store.save_block(&doc).await.map_err(failed)?;
            Ok(())
        }
    }
}

impl<T: Block + Send + Sync> BlockExt for T {}

fn engine() -> Result<Arc<Engine>> {
    match RunContext::current() {
        Some(ctx) => Ok(ctx.engine.clone()),
        None => Engine::current(),
    }
}

/// A block of any type, by name: its type and data with secrets revealed
/// (and kept out of logs) and the blocks it names filled in. For code that
/// accepts several types (a lake on a folder, S3, GCS or Azure).
pub async fn load_document(name: &str) -> Result<BlockDocument> {
    let engine = engine()?;
    let store = engine.store();
    let mut doc = read_revealed(store, name).await?;
    doc.data = resolve(store, doc.data, &mut vec![name.to_string()]).await?;
    let types = store.list_block_types().await.map_err(Error::from)?;
    if let Some(t) = types.iter().find(|t| t.slug == doc.block_type) {
        for path in t.secret_paths() {
            if let Some(Value::String(s)) = get_path(&doc.data, &path) {
                remember_secret(s);
            }
        }
    }
    Ok(doc)
}

async fn load<T: Block>(name: String) -> Result<T> {
    let engine = engine()?;
    let store = engine.store();
    let doc = read_revealed(store, &name).await?;
    if doc.block_type != T::TYPE {
        return Err(Error::Block(format!("block '{name}' is a {}, not a {}", doc.block_type, T::TYPE)));
    }
    let data = resolve(store, doc.data, &mut vec![name.clone()]).await?;
    for path in T::block_type().secret_paths() {
        if let Some(Value::String(s)) = get_path(&data, &path) {
            remember_secret(s);
        }
    }
    serde_path_to_error::deserialize(data).map_err(|e| {
        let path = e.path().to_string();
        Error::Block(format!("block '{name}', field {path}: {}", e.into_inner()))
    })
}

async fn read_revealed(store: &dyn Store, name: &str) -> Result<BlockDocument> {
    headwater_store::blocks::read_revealed(store, name).await.map_err(block_error)
}

async fn resolve(store: &dyn Store, data: Value, chain: &mut Vec<String>) -> Result<Value> {
    headwater_store::blocks::resolve(store, data, chain).await.map_err(block_error)
}

/// A block missing or naming blocks in a circle is the block's trouble; any
/// other error is the store's.
fn block_error(e: headwater_store::StoreError) -> Error {
    match e {
        headwater_store::StoreError::Refused(m) => Error::Block(m),
        other => Error::from(other),
    }
}

/// Secret values loaded in this process; logs never show them.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Keeps `secret` out of every log and state message from now on (values
/// shorter than 4 characters would mask ordinary words, so they are not).
pub fn remember_secret(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    let mut known = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|s| s == secret) {
        known.push(secret.to_string());
        // Longest first, so a secret containing another is masked whole.
        known.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every remembered secret replaced by `********`.
pub(crate) fn redact(text: String) -> String {
    let known = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if known.is_empty() || !known.iter().any(|s| text.contains(s.as_str())) {
        return text;
    }
    known.iter().fold(text, |t, s| t.replace(s.as_str(), MASK))
}
