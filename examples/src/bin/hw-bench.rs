//! Benchmark shapes for `bench/tasks.py`: a flow of N trivial tasks run
//! sequentially or all submitted at once, in embedded mode with everything
//! recorded. Prints one JSON line with the wall time of the flow call,
//! which includes writing every run, state and log to the store.
//!
//! `hw-bench N sequential|concurrent`

use std::process::ExitCode;
use std::time::Instant;

use headwater::prelude::*;

#[task]
async fn noop(i: u64) -> Result<u64> {
    Ok(i)
}

#[flow(name = "bench-sequential")]
async fn sequential(n: u64) -> Result<u64> {
    let mut sum = 0;
    for i in 0..n {
        sum += noop(i).await?;
    }
    Ok(sum)
}

#[flow(name = "bench-concurrent")]
async fn concurrent(n: u64) -> Result<u64> {
    let handles: Vec<_> = (0..n).map(|i| submit(noop(i))).collect();
    let mut sum = 0;
    for h in handles {
        sum += h.await??;
    }
    Ok(sum)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(mode)) = (args.first().and_then(|n| n.parse::<u64>().ok()), args.get(1)) else {
        eprintln!("usage: hw-bench N sequential|concurrent");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let result = match mode.as_str() {
        "sequential" => sequential(n).await,
        "concurrent" => concurrent(n).await,
        other => {
            eprintln!("unknown mode '{other}'");
            return ExitCode::from(2);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(sum) if sum == n * n.saturating_sub(1) / 2 => {
            println!(r#"{{"n": {n}, "mode": "{mode}", "seconds": {seconds}}}"#);
            ExitCode::SUCCESS
        }
        Ok(sum) => {
            eprintln!("wrong sum {sum}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
