use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use headwater::prelude::*;
use headwater_core::StateType;

use crate::support::{home, names};

static FLAKY: AtomicU32 = AtomicU32::new(0);

#[task(retries = 3, retry_delay = [1, 10, 60])]
async fn flaky() -> Result<u32> {
    let n = FLAKY.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= 2 {
        bail!("connection reset (attempt {n})");
    }
    Ok(n)
}

#[flow]
async fn uses_flaky() -> Result<u32> {
    flaky().await
}

/// With the clock paused, the waits between attempts are exactly the
/// configured delays: 1 s, then 10 s.
#[tokio::test(start_paused = true)]
async fn listed_retry_delays_are_followed_and_recorded() {
    let h = home();
    let started = tokio::time::Instant::now();
    let v = h.engine.scope(uses_flaky()).await.unwrap();
    assert_eq!(v, 3);
    assert_eq!(started.elapsed().as_secs(), 11);
    // The timed part is over; the store's pool needs the real clock.
    tokio::time::resume();

    let run = h.run_named("uses-flaky").await;
    let tasks = h.tasks(&run).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].name, "flaky-0");
    assert_eq!(tasks[0].run_count, 3);
    let hist = h.history(tasks[0].id).await;
    assert_eq!(
        names(&hist),
        ["Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed"]
    );
    let waiting = &hist[2].state;
    assert_eq!(waiting.state_type, StateType::Scheduled);
    assert!(waiting.message.as_deref().unwrap().contains("connection reset (attempt 1)"));
    assert!(waiting.scheduled_time.unwrap() > waiting.timestamp);
}

static BACKOFF: AtomicU32 = AtomicU32::new(0);

#[task(retries = 3, exponential_backoff = 10, max_retry_delay = "30s")]
async fn always_down() -> Result<()> {
    BACKOFF.fetch_add(1, Ordering::SeqCst);
    bail!("the API is down")
}

#[flow]
async fn backoff_flow() -> Result<()> {
    always_down().await
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_doubles_up_to_the_cap_then_fails() {
    let h = home();
    let started = tokio::time::Instant::now();
    let err = h.engine.scope(backoff_flow()).await.unwrap_err();
    assert_eq!(err.to_string(), "the API is down");
    // 10 + 20 + 30 (capped from 40).
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    assert_eq!(BACKOFF.load(Ordering::SeqCst), 4);
    tokio::time::resume();
    let run = h.run_named("backoff-flow").await;
    assert_eq!(run.state.state_type, StateType::Failed);
    assert_eq!(run.state.message.as_deref(), Some("the API is down"));
    let tasks = h.tasks(&run).await;
    assert_eq!(tasks[0].state.state_type, StateType::Failed);
    assert_eq!(tasks[0].run_count, 4);
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("schema mismatch in column passenger_count")]
    Schema,
    #[error("timeout talking to the warehouse")]
    Transient,
    #[error(transparent)]
    Engine(#[from] headwater::Error),
}

fn is_transient(e: &LoadError) -> bool {
    matches!(e, LoadError::Transient | LoadError::Engine(_))
}

static COND: AtomicU32 = AtomicU32::new(0);

#[task(retries = 5, retry_if = is_transient)]
async fn load(kind: u8) -> Result<(), LoadError> {
    COND.fetch_add(1, Ordering::SeqCst);
    Err(if kind == 0 { LoadError::Schema } else { LoadError::Transient })
}

#[flow]
async fn conditional(kind: u8) -> Result<(), LoadError> {
    load(kind).await
}

#[tokio::test(start_paused = true)]
async fn retry_condition_decides_which_errors_are_retried() {
    let h = home();
    let e = h.engine.scope(conditional(0)).await.unwrap_err();
    assert!(matches!(e, LoadError::Schema));
    assert_eq!(COND.swap(0, Ordering::SeqCst), 1, "a schema error is not retried");
    h.engine.scope(conditional(1)).await.unwrap_err();
    assert_eq!(COND.load(Ordering::SeqCst), 6, "a transient error is retried 5 times");
}

#[task(timeout = "2s", retries = 1)]
async fn hangs() -> Result<()> {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[flow]
async fn times_out() -> Result<()> {
    hangs().await
}

#[tokio::test(start_paused = true)]
async fn timeouts_end_in_timed_out_and_are_retried() {
    let h = home();
    let started = tokio::time::Instant::now();
    let err = h.engine.scope(times_out()).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(4), "two attempts of 2 s, no delay");
    tokio::time::resume();
    let engine_err = err.downcast_ref::<headwater::Error>().expect("the engine's timeout error");
    assert!(matches!(engine_err, headwater::Error::Timeout { .. }));
    assert_eq!(err.to_string(), "task run 'hangs-0' exceeded its timeout of 2s");
    let run = h.run_named("times-out").await;
    let tasks = h.tasks(&run).await;
    assert_eq!(tasks[0].state.name, "TimedOut");
    assert_eq!(tasks[0].state.state_type, StateType::Failed);
    assert_eq!(run.state.state_type, StateType::Failed);
}

static FLOW_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[flow(retries = 2, retry_delay = 5)]
async fn flow_level_retries() -> Result<u32> {
    let n = FLOW_ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
    if n < 3 {
        bail!("upstream not ready");
    }
    Ok(n)
}

#[tokio::test(start_paused = true)]
async fn flows_retry_as_a_whole() {
    let h = home();
    assert_eq!(h.engine.scope(flow_level_retries()).await.unwrap(), 3);
    tokio::time::resume();
    let run = h.run_named("flow-level-retries").await;
    assert_eq!(run.run_count, 3);
    assert_eq!(run.state.state_type, StateType::Completed);
    assert_eq!(
        names(&h.history(run.id).await),
        ["Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed"]
    );
}

static EXTRACTS: AtomicU32 = AtomicU32::new(0);
static LOADS: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
struct Connection;

#[task]
async fn extract_month(month: u32) -> Result<Vec<u32>> {
    EXTRACTS.fetch_add(1, Ordering::SeqCst);
    Ok(vec![month; 3])
}

/// Its result cannot be stored, so a retry runs it again.
#[task]
async fn connect() -> Result<Connection> {
    Ok(Connection)
}

#[task]
async fn load_rows(rows: Vec<u32>) -> Result<usize> {
    if LOADS.fetch_add(1, Ordering::SeqCst) == 0 {
        bail!("the warehouse is busy");
    }
    Ok(rows.len())
}

#[flow(retries = 1)]
async fn extract_then_load() -> Result<usize> {
    let a = extract_month(1).await?;
    let b = extract_month(2).await?;
    let again = extract_month(1).await?; // a second call with the same inputs is its own call
    let _conn = connect().await?;
    load_rows([a, b, again].concat()).await
}

#[tokio::test]
async fn a_flow_retry_reuses_the_calls_that_completed() {
    let h = home();
    assert_eq!(h.engine.scope(extract_then_load()).await.unwrap(), 9);
    assert_eq!(EXTRACTS.load(Ordering::SeqCst), 3, "the three extracts ran once, in the first attempt");
    let run = h.run_named("extract-then-load").await;
    let tasks = h.engine.store().list_task_runs(run.id).await.unwrap();
    let states = |task: &str| {
        let mut s: Vec<_> =
            tasks.iter().filter(|t| t.task_name == task).map(|t| (t.created, t.state.name.clone())).collect();
        s.sort();
        s.into_iter().map(|(_, n)| n).collect::<Vec<_>>()
    };
    assert_eq!(states("extract_month"), ["Completed", "Completed", "Completed", "Cached", "Cached", "Cached"]);
    assert_eq!(states("connect"), ["Completed", "Completed"], "not storable: run again");
    assert_eq!(states("load_rows"), ["Failed", "Completed"]);
    let reused = tasks.iter().find(|t| t.state.name == "Cached").unwrap();
    assert!(reused.state.message.as_deref().unwrap().starts_with("completed in an earlier attempt"));
    // The run completed: what was kept for a retry is gone.
    let kept: Vec<_> = std::fs::read_dir(h.engine.settings().result_storage())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    assert!(kept.iter().all(|f| !f.starts_with("run-")), "{kept:?}");
}
