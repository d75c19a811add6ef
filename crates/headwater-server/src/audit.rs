//! The audit log's writer: entries are gathered for a moment and written
//! together, so a busy client (Prefect's sends a call per state) costs the
//! database one write per batch, not one per call.

use std::sync::Arc;
use std::time::Duration;

use headwater_core::AuditEntry;
use headwater_store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Entries waiting to be written; above this, calls wait for the writer.
const QUEUE: usize = 10_000;
/// The most entries one write takes.
const BATCH: usize = 500;
/// How long the writer waits for more before writing what it has.
const GATHER_FOR: Duration = Duration::from_millis(50);

/// Where the audit entries go.
#[derive(Clone)]
pub(crate) struct AuditTrail {
    tx: mpsc::Sender<AuditEntry>,
}

impl AuditTrail {
    /// Starts the writer; it writes what is left and ends once every
    /// trail it made is dropped.
    pub(crate) fn start(store: Arc<dyn Store>) -> (AuditTrail, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (AuditTrail { tx }, tokio::spawn(write(store, rx)))
    }

    pub(crate) async fn record(&self, entry: AuditEntry) {
        if self.tx.send(entry).await.is_err() {
            tracing::error!("the audit log's writer has stopped; an entry is lost");
        }
    }
}

async fn write(store: Arc<dyn Store>, mut rx: mpsc::Receiver<AuditEntry>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let gather = tokio::time::sleep(GATHER_FOR);
        tokio::pin!(gather);
        while batch.len() < BATCH {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(entry) => batch.push(entry),
                    None => break,
                },
                _ = &mut gather => break,
            }
        }
        for attempt in 0u32.. {
            match store.record_audit(&batch).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!("could not write {} audit log entries: {e}", batch.len());
                    break;
                }
            }
        }
    }
}
