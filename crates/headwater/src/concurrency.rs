//! Concurrency limits from flows. A task run takes one slot of each of its
//! tags that has a limit before each attempt (waiting in
//! `AwaitingConcurrencySlot`) and gives it back when the attempt ends; code
//! takes slots of any limit with [`concurrency`] and paces itself with
//! [`rate_limit`]. Slots are leases renewed every heartbeat interval while
//! held and expiring after the heartbeat timeout, so a process that dies
//! frees its slots on the same clock that marks its runs `Crashed`.

use std::sync::Arc;
use std::time::Duration;

use headwater_core::{Acquired, SlotLease, SlotRequest};
use headwater_store::Store;

use crate::context::RunContext;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Slots held until dropped (or [`SlotGuard::release`]).
#[must_use = "the slots are given back when the guard is dropped"]
pub struct SlotGuard {
    lease: Option<SlotLease>,
    store: Arc<dyn Store>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for SlotGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotGuard").field("lease", &self.lease).finish()
    }
}

impl SlotGuard {
    /// The limited names and slots held (empty: nothing asked for has a limit).
    pub fn slots(&self) -> &[(String, u32)] {
        self.lease.as_ref().map_or(&[], |l| &l.slots)
    }

    /// Gives the slots back now, and says whether the store still had them.
    pub async fn release(mut self) -> Result<bool> {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        match self.lease.take() {
            Some(lease) if !lease.slots.is_empty() => self.store.release_lease(lease.id).await.map_err(Error::from),
            _ => Ok(true),
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if let Some(lease) = self.lease.take().filter(|l| !l.slots.is_empty()) {
            let store = self.store.clone();
            // Without a runtime the lease simply expires.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = store.release_lease(lease.id).await {
                        tracing::debug!("releasing concurrency slots failed (they expire on their own): {e}");
                    }
                });
            }
        }
    }
}

/// How one acquisition goes.
pub(crate) struct Ask<'a> {
    pub slots: Vec<(String, u32)>,
    pub holder: String,
    /// Rate-limit slots are not held: no renewal, nothing to give back.
    pub rate: bool,
    pub cancel: Option<&'a tokio_util::sync::CancellationToken>,
}

/// Takes the slots, waiting (with backoff) while a limit is full; `waiting`
/// hears about each limit that makes it wait.
pub(crate) async fn acquire(
    engine: &Engine,
    ask: Ask<'_>,
    mut waiting: impl FnMut(&str, u32, u32),
) -> Result<SlotGuard> {
    let store = engine.store_handle();
    let beat = engine.settings().heartbeat_interval().max(Duration::from_millis(50));
    let ttl = engine.settings().heartbeat_timeout().max(beat * 2);
    let request = SlotRequest { slots: ask.slots, holder: ask.holder, ttl_ms: ttl.as_millis() as u64 };
    let mut delay = Duration::from_millis(25);
    let mut last_full: Option<String> = None;
    loop {
        match store.acquire_slots(&request).await.map_err(Error::from)? {
            Acquired::Granted { lease } => {
                let renewer = (!ask.rate && !lease.slots.is_empty()).then(|| {
                    let (store, id) = (store.clone(), lease.id);
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(beat).await;
                            match store.renew_lease(id, ttl.as_millis() as u64).await {
                                Ok(true) => {}
                                Ok(false) => {
                                    tracing::warn!("a concurrency lease expired before it was renewed; its slots may be taken by others");
                                    return;
                                }
                                Err(e) => tracing::warn!("renewing a concurrency lease failed: {e}"),
                            }
                        }
                    })
                });
                return Ok(SlotGuard { lease: Some(lease), store, renewer });
            }
            Acquired::Full { name, limit, active } => {
                if last_full.as_deref() != Some(name.as_str()) {
                    waiting(&name, limit, active);
                    last_full = Some(name);
                }
                let jittered = delay.mul_f64(0.75 + rand::random::<f64>() * 0.5);
                match ask.cancel {
                    Some(token) => tokio::select! {
                        _ = token.cancelled() => return Err(Error::Cancelled {
                            what: format!("waiting for a slot of '{}'", last_full.unwrap_or_default()),
                            reason: "its flow run is stopping".into(),
                        }),
                        _ = tokio::time::sleep(jittered) => {}
                    },
                    None => tokio::time::sleep(jittered).await,
                }
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn engine_here() -> Result<Arc<Engine>> {
    match RunContext::current() {
        Some(ctx) => Ok(ctx.engine.clone()),
        None => Engine::current(),
    }
}

fn holder_here() -> String {
    match RunContext::current() {
        Some(ctx) => match &ctx.task_run {
            Some((_, name)) => name.to_string(),
            None => ctx.flow.name.to_string(),
        },
        None => format!("process {}", std::process::id()),
    }
}

/// Takes `occupy` slots of each named limit, waiting while one is full,
/// for the life of the returned guard — around any block of code:
///
/// ```ignore
/// let _slot = headwater::concurrency(["postgres"], 1).await?;
/// load_month(...).await?;   // at most the limit's size of these at once, everywhere
/// ```
///
/// A name with no limit (`headwater concurrency-limit create NAME N`) does
/// not limit anything; a warning says so.
pub async fn concurrency<I, S>(names: I, occupy: u32) -> Result<SlotGuard>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let engine = engine_here()?;
    let names: Vec<String> = names.into_iter().map(Into::into).collect();
    let cancel = RunContext::current().map(|c| c.flow.cancel.clone());
    let ask = Ask {
        slots: names.iter().map(|n| (n.clone(), occupy)).collect(),
        holder: holder_here(),
        rate: false,
        cancel: cancel.as_ref(),
    };
    let guard = acquire(&engine, ask, |name, limit, active| {
        tracing::info!("waiting for a slot of '{name}' ({active} of {limit} in use)");
    })
    .await?;
    for n in names.iter().filter(|n| !guard.slots().iter().any(|(s, _)| s == *n)) {
        tracing::warn!("there is no concurrency limit named '{n}': not limited");
    }
    Ok(guard)
}

/// Waits until `occupy` slots of each named rate limit are free and takes
/// them; they free themselves at the limit's `slot_decay_per_second`. With
/// a limit of 10 slots decaying at 5 per second: bursts of 10, then 5 per
/// second. A name whose limit has no decay is refused (use [`concurrency`]).
pub async fn rate_limit<I, S>(names: I, occupy: u32) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let engine = engine_here()?;
    let names: Vec<String> = names.into_iter().map(Into::into).collect();
    let store = engine.store_handle();
    for n in &names {
        match store.read_concurrency_limit(n).await.map_err(Error::from)? {
            Some(l) if l.slot_decay_per_second.is_none() => {
                return Err(Error::Store(format!(
                    "'{n}' is a concurrency limit without slot_decay_per_second, not a rate limit; use concurrency()"
                )))
            }
            Some(_) => {}
            None => tracing::warn!("there is no rate limit named '{n}': not limited"),
        }
    }
    let cancel = RunContext::current().map(|c| c.flow.cancel.clone());
    let ask = Ask {
        slots: names.iter().map(|n| (n.clone(), occupy)).collect(),
        holder: holder_here(),
        rate: true,
        cancel: cancel.as_ref(),
    };
    let mut guard = acquire(&engine, ask, |_, _, _| {}).await?;
    // Nothing to give back: the slots decay.
    guard.lease = None;
    Ok(())
}
