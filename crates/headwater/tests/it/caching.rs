use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use headwater::prelude::*;
use headwater_core::StateType;

use crate::support::home;

static RAN: AtomicU32 = AtomicU32::new(0);

#[task(cache = inputs, cache_expiration = "1d")]
async fn download(url: String) -> Result<Vec<String>> {
    RAN.fetch_add(1, Ordering::SeqCst);
    Ok(vec![format!("rows of {url}")])
}

#[flow]
async fn download_three() -> Result<()> {
    let a = download("https://x/1".into()).await?;
    let b = download("https://x/1".into()).await?;
    let c = download("https://x/2".into()).await?;
    assert_eq!(a, b);
    assert_ne!(a, c);
    Ok(())
}

#[tokio::test]
async fn same_inputs_hit_the_cache_and_others_run() {
    let h = home();
    h.engine.scope(download_three()).await.unwrap();
    assert_eq!(RAN.load(Ordering::SeqCst), 2);
    let run = h.run_named("download-three").await;
    let tasks = h.tasks(&run).await;
    let states: Vec<_> = tasks.iter().map(|t| t.state.name.as_str()).collect();
    assert_eq!(states, ["Completed", "Cached", "Completed"]);
    assert_eq!(tasks[0].cache_key, tasks[1].cache_key);
    assert_ne!(tasks[0].cache_key, tasks[2].cache_key);
    assert_eq!(tasks[1].state.state_type, StateType::Completed);
    assert!(tasks[1].cache_expiration.is_some());

    // A second engine on the same home (as a second process would be) also hits.
    let again = headwater::Engine::with_home(&h.engine.settings().home).unwrap();
    again.scope(download_three()).await.unwrap();
    assert_eq!(RAN.load(Ordering::SeqCst), 2, "both URLs came from the cache");
}

static SHORT: AtomicU32 = AtomicU32::new(0);

#[task(cache = inputs, cache_expiration = "300ms")]
async fn short_lived(x: u32) -> Result<u32> {
    SHORT.fetch_add(1, Ordering::SeqCst);
    Ok(x * 2)
}

#[flow]
async fn twice_with_a_pause() -> Result<()> {
    short_lived(1).await?;
    short_lived(1).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    short_lived(1).await?;
    Ok(())
}

#[tokio::test]
async fn expired_entries_run_again() {
    let h = home();
    h.engine.scope(twice_with_a_pause()).await.unwrap();
    assert_eq!(SHORT.load(Ordering::SeqCst), 2);
    let run = h.run_named("twice-with-a-pause").await;
    let states: Vec<_> = h.tasks(&run).await.into_iter().map(|t| t.state.name).collect();
    assert_eq!(states, ["Completed", "Cached", "Completed"]);
}

static SOURCE: AtomicU32 = AtomicU32::new(0);
static REFRESH: AtomicU32 = AtomicU32::new(0);
static CUSTOM: AtomicU32 = AtomicU32::new(0);

#[task(cache = task_source)]
async fn by_source(x: u32) -> Result<u32> {
    SOURCE.fetch_add(1, Ordering::SeqCst);
    Ok(x)
}

#[task(cache = inputs, refresh_cache = true)]
async fn refreshed(x: u32) -> Result<u32> {
    REFRESH.fetch_add(1, Ordering::SeqCst);
    Ok(x)
}

fn month_key(color: &str, _when: &u32) -> String {
    color.to_lowercase()
}

#[task(cache_key_fn = month_key)]
async fn custom(color: String, when: u32) -> Result<u32> {
    CUSTOM.fetch_add(1, Ordering::SeqCst);
    info!("{color} at {when}");
    Ok(when)
}

#[flow]
async fn policies() -> Result<()> {
    // Source policy ignores inputs.
    by_source(1).await?;
    assert_eq!(by_source(2).await?, 1, "the cached value of the first call");
    refreshed(1).await?;
    refreshed(1).await?;
    custom("Yellow".into(), 1).await?;
    assert_eq!(custom("YELLOW".into(), 2).await?, 1, "same custom key");
    custom("green".into(), 3).await?;
    Ok(())
}

#[tokio::test]
async fn source_refresh_and_custom_key_policies() {
    let h = home();
    h.engine.scope(policies()).await.unwrap();
    assert_eq!(SOURCE.load(Ordering::SeqCst), 1);
    assert_eq!(REFRESH.load(Ordering::SeqCst), 2, "refresh_cache always runs");
    assert_eq!(CUSTOM.load(Ordering::SeqCst), 2);
}

#[task(cache = inputs)]
async fn unstorable() -> Result<std::collections::HashMap<(u8, u8), u8>> {
    Ok([((1, 2), 3)].into_iter().collect())
}

#[flow]
async fn persists_badly() -> Result<()> {
    unstorable().await.map(|_| ())
}

/// A result serde cannot write as JSON is a clear failure, never a silent miss.
#[tokio::test]
async fn unpersistable_results_fail_clearly() {
    let h = home();
    let err = h.engine.scope(persists_badly()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("result of task 'unstorable' cannot be cached: "), "{msg}");
    let run = h.run_named("persists-badly").await;
    assert_eq!(h.tasks(&run).await[0].state.state_type, StateType::Failed);
}
