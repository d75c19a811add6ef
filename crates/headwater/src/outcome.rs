//! Running a body once: under the run's context, with an optional timeout,
//! catching panics so the run can be recorded before the panic continues.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

use crate::context::{RunContext, CONTEXT};

pub(crate) enum Outcome<T, E> {
    Ok(T),
    Err(E),
    TimedOut(Duration),
    Panicked(Box<dyn Any + Send>),
}

pub(crate) async fn run_once<T, E, Fut>(
    ctx: RunContext,
    span: tracing::Span,
    timeout: Option<Duration>,
    fut: Fut,
) -> Outcome<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    // Runs and tasks started by the body are children of the attempt's span.
    let guarded = CONTEXT.scope(ctx, AssertUnwindSafe(tracing::Instrument::instrument(fut, span)).catch_unwind());
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, guarded).await {
            Ok(r) => r,
            Err(_) => return Outcome::TimedOut(limit),
        },
        None => guarded.await,
    };
    match result {
        Ok(Ok(v)) => Outcome::Ok(v),
        Ok(Err(e)) => Outcome::Err(e),
        Err(panic) => Outcome::Panicked(panic),
    }
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// An error's message with its causes (`{:#}` shows anyhow's chain).
/// An error as its state message shows it: with its causes, and no secret
/// a block brought in.
pub(crate) fn error_message(e: &impl std::fmt::Display) -> String {
    crate::blocks::redact(format!("{e:#}"))
}
