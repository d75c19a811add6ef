//! Taking concurrency slots, decided once for both SQL stores: each store
//! reads and writes inside its own transaction, with its own locking,
//! through [`LeaseTx`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use headwater_core::concurrency::{check_request, rate_slot_ms};
use headwater_core::{Acquired, SlotLease, SlotRequest};
use uuid::Uuid;

use headwater_store::{Result, StoreError};

/// A limit as the acquisition needs it.
pub(crate) struct LimitRow {
    pub name: String,
    pub limit: u32,
    pub slot_decay_per_second: Option<f64>,
}

/// A store's reads and writes inside one acquisition transaction.
#[async_trait]
pub(crate) trait LeaseTx: Send {
    /// The limits among `names` (sorted), locked against concurrent
    /// acquisitions where the database needs it.
    async fn lock_limits(&mut self, names: &[String]) -> Result<Vec<LimitRow>>;
    /// Slots of `name` held by leases unexpired at `now` (expired ones are
    /// removed on the way).
    async fn slots_in_use(&mut self, name: &str, now: DateTime<Utc>) -> Result<u32>;
    async fn insert_lease(&mut self, lease: &SlotLease, name: &str, slots: u32, expires: DateTime<Utc>) -> Result<()>;
}

/// Takes every slot asked for, or none. The caller commits.
pub(crate) async fn acquire(tx: &mut dyn LeaseTx, request: &SlotRequest, now: DateTime<Utc>) -> Result<Acquired> {
    let mut wanted: Vec<(String, u32)> = Vec::new();
    for (name, n) in &request.slots {
        match wanted.iter_mut().find(|(w, _)| w == name) {
            Some((_, total)) => *total += n,
            None => wanted.push((name.clone(), *n)),
        }
    }
    wanted.sort();
    let names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
    let limits = tx.lock_limits(&names).await?;
    let pairs: Vec<(String, u32)> = limits.iter().map(|l| (l.name.clone(), l.limit)).collect();
    check_request(&SlotRequest { slots: wanted.clone(), ..request.clone() }, &pairs).map_err(StoreError::Refused)?;
    let mut granted = Vec::new();
    for limit in &limits {
        let want = wanted.iter().find(|(n, _)| *n == limit.name).map_or(0, |(_, w)| *w);
        let active = tx.slots_in_use(&limit.name, now).await?;
        if active + want > limit.limit {
            return Ok(Acquired::Full { name: limit.name.clone(), limit: limit.limit, active });
        }
        granted.push((limit, want));
    }
    let expires = now + headwater_core::concurrency::lease_ttl(request.ttl_ms).map_err(StoreError::Refused)?;
    let lease = SlotLease {
        id: Uuid::now_v7(),
        slots: granted.iter().map(|(l, n)| (l.name.clone(), *n)).collect(),
        holder: request.holder.clone(),
        expires,
    };
    for (limit, n) in granted {
        // A rate limit's slot is not given back: it frees itself with time.
        let until = match limit.slot_decay_per_second {
            Some(decay) => now + chrono::Duration::milliseconds(rate_slot_ms(limit.limit, decay) as i64),
            None => expires,
        };
        tx.insert_lease(&lease, &limit.name, n, until).await?;
    }
    Ok(Acquired::Granted { lease })
}
