//! Reading a block for use: its secrets revealed and the blocks it names
//! (`{"$block": name}`) filled in, for the SDK's flows and the CLI alike.

use std::future::Future;
use std::pin::Pin;

use headwater_core::block::{block_refs, get_path_mut};
use headwater_core::BlockDocument;
use serde_json::Value;

use crate::{Result, Store, StoreError};

/// The block saved under `name`, secrets revealed (an authorised read).
pub async fn read_revealed(store: &dyn Store, name: &str) -> Result<BlockDocument> {
    store
        .read_block(name, true)
        .await?
        .ok_or_else(|| StoreError::Refused(format!("no block named '{name}' (see `headwater block ls`)")))
}

/// [`read_revealed`] with every block it names filled in, recursively.
pub async fn load_resolved(store: &dyn Store, name: &str) -> Result<BlockDocument> {
    let mut doc = read_revealed(store, name).await?;
    doc.data = resolve(store, doc.data, &mut vec![name.to_string()]).await?;
    Ok(doc)
}

/// Replaces `{"$block": name}` in `data` with that block's data, recursively.
pub fn resolve<'a>(
    store: &'a dyn Store,
    mut data: Value,
    chain: &'a mut Vec<String>,
) -> Pin<Box<dyn Future<Output = Result<Value>> + Send + 'a>> {
    Box::pin(async move {
        for (path, target) in block_refs(&data) {
            if chain.contains(&target) {
                return Err(StoreError::Refused(format!(
                    "blocks refer to each other in a circle: {} → {target}",
                    chain.join(" → ")
                )));
            }
            let inner = read_revealed(store, &target).await?;
            chain.push(target);
            let resolved = resolve(store, inner.data, chain).await?;
            chain.pop();
            if let Some(slot) = get_path_mut(&mut data, &path) {
                *slot = resolved;
            }
        }
        Ok(data)
    })
}
