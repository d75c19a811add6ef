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

static LOADING: AtomicUsize = AtomicUsize::new(0);
static LOADING_PEAK: AtomicUsize = AtomicUsize::new(0);

#[task(tags = ["extract"])]
async fn extract_part(part: u32) -> Result<u32> {
    let now = LOADING.fetch_add(1, Ordering::SeqCst) + 1;
    LOADING_PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(40)).await;
    LOADING.fetch_sub(1, Ordering::SeqCst);
    Ok(part)
}

#[flow]
async fn all_at_once() -> Result<u32> {
    let handles: Vec<_> = (0..20).map(|p| submit(extract_part(p))).collect();
    let mut sum = 0;
    for r in join_all(handles).await {
        sum += r??;
    }
    Ok(sum)
}

/// 20 tasks tagged `extract`, all submitted at once, under a limit of 3:
/// the recorded start and end times show at most 3 running at any moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_limit_bounds_running_task_runs() {
    let h = home();
    h.engine.store().set_concurrency_limit("extract", 3, None).await.unwrap();
    assert_eq!(h.engine.scope(all_at_once()).await.unwrap(), (0..20).sum::<u32>());
    let run = h.run_named("all-at-once").await;
    let tasks = h.tasks(&run).await;
    assert_eq!(tasks.len(), 20);
    assert!(tasks.iter().all(|t| t.state.state_type == StateType::Completed));
    // Each run's [start, end] from the store; ends sort before starts at the same instant.
    let mut events: Vec<(chrono::DateTime<chrono::Utc>, i32)> = Vec::new();
    for t in &tasks {
        events.push((t.start_time.expect("started"), 1));
        events.push((t.end_time.expect("ended"), -1));
    }
    events.sort();
    let (mut running, mut peak) = (0, 0);
    for (_, d) in events {
        running += d;
        peak = peak.max(running);
    }
    assert!(peak <= 3, "the recorded times show {peak} running at once");
    assert!(peak >= 2, "the runs overlapped (peak {peak})");
    assert!(LOADING_PEAK.load(Ordering::SeqCst) <= 3);
    // Most had to wait, and said so in their state history.
    let mut waited = 0;
    for t in &tasks {
        let history = h.history(t.id).await;
        if history.iter().any(|s| s.state.name == "AwaitingConcurrencySlot") {
            waited += 1;
        }
    }
    assert!(waited >= 10, "only {waited} task runs recorded AwaitingConcurrencySlot");
    // Every slot was given back.
    let mut active = u32::MAX;
    for _ in 0..50 {
        active = h.engine.store().read_concurrency_limit("extract").await.unwrap().unwrap().active_slots;
        if active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active, 0);
}

/// `concurrency()` around a block of code, and `rate_limit()` pacing calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_takes_slots_by_name_and_rate_limits_pace_it() {
    let h = home();
    let store = h.engine.store();
    store.set_concurrency_limit("postgres", 1, None).await.unwrap();
    h.engine
        .scope(async {
            let held = headwater::concurrency(["postgres"], 1).await.unwrap();
            assert_eq!(held.slots(), [("postgres".to_string(), 1)]);
            // A second holder waits until the first lets go.
            let engine = h.engine.clone();
            let waiter = tokio::spawn(async move {
                engine
                    .scope(async {
                        let started = std::time::Instant::now();
                        let g = headwater::concurrency(["postgres"], 1).await.unwrap();
                        drop(g);
                        started.elapsed()
                    })
                    .await
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(held.release().await.unwrap());
            assert!(waiter.await.unwrap() >= Duration::from_millis(250), "it waited for the slot");
            // No such limit: not limited.
            assert!(headwater::concurrency(["nothing-here"], 1).await.unwrap().slots().is_empty());
        })
        .await;

    // 2 slots freeing at 10 per second: 6 calls take at least (6 - 2) / 10 s.
    store.set_concurrency_limit("api", 2, Some(10.0)).await.unwrap();
    let started = std::time::Instant::now();
    h.engine
        .scope(async {
            for _ in 0..6 {
                headwater::rate_limit(["api"], 1).await.unwrap();
            }
        })
        .await;
    assert!(started.elapsed() >= Duration::from_millis(350), "paced: {:?}", started.elapsed());
    let err = h.engine.scope(headwater::rate_limit(["postgres"], 1)).await.unwrap_err().to_string();
    assert!(err.contains("not a rate limit"), "{err}");
}
