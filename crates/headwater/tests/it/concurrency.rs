use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use headwater::prelude::*;
use headwater_core::StateType;

use crate::support::home;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[task(tags = ["extract"])]
async fn fetch_page(page: u32) -> Result<u32> {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    Ok(page * 10)
}

#[flow]
async fn mapped(limit: usize) -> Result<Vec<u32>> {
    map(0..20u32, limit, fetch_page).await.into_iter().collect()
}

#[tokio::test]
async fn map_runs_concurrently_within_its_bound_and_keeps_order() {
    let h = home();
    let out = h.engine.scope(mapped(3)).await.unwrap();
    assert_eq!(out, (0..20).map(|p| p * 10).collect::<Vec<_>>());
    let peak = PEAK.load(Ordering::SeqCst);
    assert!(peak <= 3, "at most 3 in flight, saw {peak}");
    assert!(peak >= 2, "tasks overlapped (peak {peak})");
    let run = h.run_named("mapped").await;
    let tasks = h.tasks(&run).await;
    assert_eq!(tasks.len(), 20);
    let keys: HashSet<_> = tasks.iter().map(|t| t.name.clone()).collect();
    assert_eq!(keys, (0..20).map(|k| format!("fetch_page-{k}")).collect());
    assert!(tasks.iter().all(|t| t.state.state_type == StateType::Completed));
    assert!(tasks.iter().all(|t| t.tags == ["extract"]));
}

#[task]
async fn cpu(x: u64) -> Result<u64> {
    Ok((0..x).sum())
}

#[flow]
async fn submitted(n: u64) -> Result<u64> {
    let handles: Vec<_> = (0..n).map(|i| submit(cpu(i))).collect();
    // One handle is left unawaited: the flow still waits for it.
    let mut handles = handles;
    let _left = handles.pop();
    let mut sum = 0;
    for r in join_all(handles).await {
        sum += r??;
    }
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_tasks_run_in_parallel_and_the_flow_waits_for_all() {
    let h = home();
    let sum = h.engine.scope(submitted(50)).await.unwrap();
    assert_eq!(sum, (0..49u64).map(|i| (0..i).sum::<u64>()).sum::<u64>());
    let run = h.run_named("submitted").await;
    let tasks = h.tasks(&run).await;
    assert_eq!(tasks.len(), 50);
    assert!(tasks.iter().all(|t| t.state.state_type == StateType::Completed), "the unawaited one too");
    assert!(tasks.iter().all(|t| t.end_time.unwrap() <= run.end_time.unwrap()));
}

static SLEEPY_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[task]
async fn sleepy(secs: u64) -> Result<()> {
    SLEEPY_STARTED.notify_one();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

#[task]
async fn fails_fast() -> Result<()> {
    SLEEPY_STARTED.notified().await;
    bail!("bad row in input")
}

#[flow]
async fn one_fails() -> Result<()> {
    let _slow = submit(sleepy(3600));
    fails_fast().await
}

/// When a flow fails, its still-running submitted tasks are stopped and
/// recorded CANCELLED rather than left RUNNING.
#[tokio::test]
async fn failing_flow_cancels_its_submitted_tasks() {
    let h = home();
    h.engine.scope(one_fails()).await.unwrap_err();
    let run = h.run_named("one-fails").await;
    assert_eq!(run.state.state_type, StateType::Failed);
    let mut states: Vec<_> = h.tasks(&run).await.into_iter().map(|t| (t.task_name, t.state.state_type)).collect();
    states.sort();
    assert_eq!(states, [("fails_fast".to_string(), StateType::Failed), ("sleepy".to_string(), StateType::Cancelled)]);
}
