//! Example flows, one program. Run one with
//! `cargo run -p headwater-examples -- FLOW [-p name=value]…`, list them
//! with `--list`, and inspect what was recorded with the `headwater` CLI.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use headwater::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- retries

static DOWNLOAD_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails twice, then succeeds: watch the AwaitingRetry / Retrying states.
#[task(retries = 3, retry_delay = [0.2, 0.5, 1], tags = ["extract"])]
async fn flaky_download(url: String) -> Result<String> {
    let attempt = DOWNLOAD_ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt <= 2 {
        bail!("connection reset by peer while reading {url} (attempt {attempt})");
    }
    info!("downloaded {url} on attempt {attempt}");
    Ok(format!("contents of {url}"))
}

/// A task that fails twice and succeeds on its third attempt.
#[flow(name = "retries")]
async fn retries_demo() -> Result<usize> {
    let body = flaky_download("https://example.invalid/yellow_tripdata_2021-01.csv.gz".into()).await?;
    Ok(body.len())
}

// ---------------------------------------------------------------- caching

/// Cached on its input for a day: a second process with the same `n` gets
/// the stored result without running the body.
#[task(cache = inputs, cache_expiration = "1d")]
async fn expensive_sum(n: u64) -> Result<u64> {
    info!("computing the sum of 1..={n} (this is not from the cache)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok((1..=n).sum())
}

/// Computes a sum once; later runs with the same input come from the cache.
#[flow(name = "caching", defaults = r#"{"n": 1000000}"#)]
async fn caching_demo(n: u64) -> Result<u64> {
    let sum = expensive_sum(n).await?;
    info!("sum of 1..={n} is {sum}");
    Ok(sum)
}

// ---------------------------------------------------------------- timeout

#[task(timeout = "300ms")]
async fn slow_query() -> Result<u64> {
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(42)
}

/// A task that exceeds its timeout (TimedOut) and a flow that falls back.
#[flow(name = "timeout")]
async fn timeout_demo() -> Result<u64> {
    match slow_query().await {
        Ok(v) => Ok(v),
        Err(e) => {
            warn!("the query gave up ({e}); using yesterday's figure");
            Ok(41)
        }
    }
}

// ------------------------------------------------------------ concurrency

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn square(x: u64) -> Result<u64> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(x * x)
}

/// Runs tasks concurrently: a bounded `map`, then `submit` + `join_all`.
#[flow(name = "concurrent", defaults = r#"{"n": 20, "limit": 4}"#)]
async fn concurrent_demo(n: u64, limit: usize) -> Result<u64> {
    let mapped: Vec<u64> = map(0..n, limit, square).await.into_iter().collect::<Result<_>>()?;
    info!("map over {n} inputs with at most {limit} at once; peak in flight: {}", PEAK.load(Ordering::SeqCst));
    let handles: Vec<_> = (0..4).map(|x| submit(square(100 + x))).collect();
    let submitted: u64 = join_all(handles)
        .await
        .into_iter()
        .map(|r| r.map_err(anyhow::Error::from).and_then(|v| v))
        .sum::<Result<u64>>()?;
    Ok(mapped.iter().sum::<u64>() + submitted)
}

// --------------------------------------------- subflows (the course shape)

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Color {
    Yellow,
    Green,
}

/// A calendar month, 1 to 12; anything else is refused with a clear error.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "u32", into = "u32")]
// Serde reads it as a u32 (try_from), so the schema is u32's: the bounds are
// added to it here, where the UI's forms and the server's check see them.
#[schemars(extend("minimum" = 1, "maximum" = 12))]
struct Month(u32);

impl TryFrom<u32> for Month {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        if (1..=12).contains(&v) {
            Ok(Month(v))
        } else {
            Err(format!("month must be between 1 and 12, got {v}"))
        }
    }
}

impl From<Month> for u32 {
    fn from(m: Month) -> u32 {
        m.0
    }
}

/// Stands in for the download of a month of trips (the real pipeline is in
/// the lake collection): a deterministic row count per month.
#[task(retries = 2, retry_delay = 1, cache = inputs, cache_expiration = "1d", tags = ["extract"])]
async fn extract(color: Color, year: i32, month: Month) -> Result<u64> {
    let rows = 1_000_000 + (year as u64 % 100) * 1000 + month.0 as u64 * 12_345 + (color as u64) * 7;
    info!("fetched {color:?} {year}-{:02}: {rows} rows", month.0);
    Ok(rows)
}

#[task]
async fn clean(rows: u64) -> Result<u64> {
    let zero_passengers = rows / 50;
    info!("rows: {rows}; dropping {zero_passengers} with passenger_count = 0");
    Ok(rows - zero_passengers)
}

/// One month: extract, then clean. Each call is a subflow run of the parent.
#[flow(name = "etl-web-to-lake", run_name = "{color}-{year}-{month:02}")]
async fn etl_web_to_lake(color: Color, year: i32, month: Month) -> Result<u64> {
    let raw = extract(color, year, month).await?;
    clean(raw).await
}

/// A row of the parent flow's table artifact.
#[derive(Serialize)]
struct MonthRows {
    color: Color,
    year: i32,
    month: u32,
    rows: u64,
}

/// The course's parent flow: one subflow per month, then the total, and a
/// table artifact of rows per month (`headwater artifact inspect taxi-row-counts`).
#[flow(name = "etl-parent-flow", defaults = r#"{"months": [1, 2, 3], "year": 2021, "color": "yellow"}"#)]
async fn etl_parent_flow(months: Vec<Month>, year: i32, color: Color) -> Result<u64> {
    let mut total = 0;
    let mut per_month = Vec::new();
    for month in months {
        let rows = etl_web_to_lake(color, year, month).await?;
        per_month.push(MonthRows { color, year, month: month.0, rows });
        total += rows;
    }
    info!("total rows: {total}");
    headwater::table_artifact(&per_month)?
        .key("taxi-row-counts")
        .description(format!("Rows per month, {color:?} {year}"))
        .publish()?;
    Ok(total)
}

// ------------------------------------------------------------- failures

/// Fails every time; retried once at the flow level, then FAILED.
#[flow(name = "always-fails", retries = 1, retry_delay = 0.2)]
async fn always_fails() -> Result<()> {
    bail!("the warehouse is unreachable")
}

#[task]
async fn wait_for(secs: u64) -> Result<()> {
    info!("waiting {secs}s");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

/// Its first attempt writes its process id to `marker` and waits to be
/// killed (kill -9); with a flow retry, the next attempt finishes. For
/// showing that a crashed deployment run is retried.
#[flow(name = "crash-once", retries = 1)]
async fn crash_once(marker: String) -> Result<String> {
    if std::path::Path::new(&marker).exists() {
        return Ok("finished on the retry".into());
    }
    std::fs::write(&marker, std::process::id().to_string())?;
    wait_for(300).await?;
    Ok("never killed".into())
}

/// Runs for a while: interrupt it with Ctrl-C and it ends CANCELLED.
/// Holds a slot of the `warehouse` concurrency limit (if there is one)
/// while it waits.
#[task(tags = ["warehouse"])]
async fn hold_warehouse(secs: u64) -> Result<()> {
    info!("holding a warehouse slot for {secs}s");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

#[flow(name = "hold-slot", defaults = r#"{"secs": 60}"#)]
async fn hold_slot(secs: u64) -> Result<()> {
    hold_warehouse(secs).await
}

#[flow(name = "long-running", defaults = r#"{"secs": 60}"#)]
async fn long_running(secs: u64) -> Result<()> {
    let background = submit(wait_for(secs));
    wait_for(secs).await?;
    background.await?
}

#[task(cache = inputs, cache_expiration = "1h")]
async fn extract_for_load(month: u32) -> Result<u64> {
    info!("extracting month {month} (not from the cache)");
    Ok(1000 + u64::from(month))
}

#[task]
async fn clean_for_load(rows: u64) -> Result<u64> {
    info!("cleaning {rows} rows");
    Ok(rows - rows / 50)
}

/// Extracts (cached), cleans, then loads; the load fails while `down_flag`
/// names an existing file. For trying `headwater flow-run retry`: the retry
/// takes the extract from the cache and the clean from the first attempt.
#[flow(name = "load-when-up")]
async fn load_when_up(down_flag: String) -> Result<u64> {
    let raw = extract_for_load(7).await?;
    let rows = clean_for_load(raw).await?;
    if std::path::Path::new(&down_flag).exists() {
        bail!("the warehouse is down ({down_flag} exists)");
    }
    info!("loaded {rows} rows");
    Ok(rows)
}

// ------------------------------------------------------------ benchmark

#[task]
async fn noop(i: u64) -> Result<u64> {
    Ok(i)
}

/// `n` trivial tasks, one after another or all submitted at once.
#[flow(name = "bench-tasks", defaults = r#"{"n": 1000, "concurrent": false}"#)]
async fn bench_tasks(n: u64, concurrent: bool) -> Result<u64> {
    if concurrent {
        let handles: Vec<_> = (0..n).map(|i| submit(noop(i))).collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await??;
        }
        Ok(sum)
    } else {
        let mut sum = 0;
        for i in 0..n {
            sum += noop(i).await?;
        }
        Ok(sum)
    }
}

/// The smallest flow: one task.
#[flow(name = "one-task")]
async fn one_task() -> Result<u64> {
    noop(1).await
}

#[tokio::main]
async fn main() -> ExitCode {
    App::new(flows![
        etl_parent_flow,
        etl_web_to_lake,
        retries_demo,
        caching_demo,
        timeout_demo,
        concurrent_demo,
        always_fails,
        load_when_up,
        long_running,
        hold_slot,
        crash_once,
        bench_tasks,
        one_task,
    ])
    .run()
    .await
}
