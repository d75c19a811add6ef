//! Task runs: what `#[task]` expands into, and running tasks concurrently.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::Utc;
use futures::{Stream, StreamExt};
use headwater_core::cache::{cache_key, completed_call_key, expires_at};
use headwater_core::duration::format_duration;
use headwater_core::{Backoff, CachePolicy, RetryPolicy, State, TaskRun};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Level;
use uuid::Uuid;

use crate::context::{RunContext, CONTEXT};
use crate::error::Error;
use crate::flow::emit;
use crate::outcome::{error_message, panic_message, run_once, Outcome};
use crate::results::StoredResult;
use crate::tracker::Tracker;

/// A task's options, fixed at compile time by `#[task(...)]`.
#[derive(Debug)]
pub struct TaskSpec {
    pub name: &'static str,
    /// blake3 of the task body's tokens, taken when the crate was compiled.
    pub source_hash: &'static str,
    pub retries: u32,
    pub retry_delays_ms: &'static [u64],
    /// `(base, max)` of an exponential backoff, instead of the listed delays.
    pub exponential_backoff_ms: Option<(u64, u64)>,
    pub retry_jitter_factor: f64,
    pub timeout_ms: Option<u64>,
    pub tags: &'static [&'static str],
    pub cache: CachePolicy,
    pub cache_expiration_ms: Option<u64>,
    pub refresh_cache: bool,
}

impl TaskSpec {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries,
            delays: self.retry_delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
            backoff: match self.exponential_backoff_ms {
                Some((base, max)) => {
                    Backoff::Exponential { base: Duration::from_millis(base), max: Duration::from_millis(max) }
                }
                None => Backoff::Listed,
            },
            jitter_factor: self.retry_jitter_factor,
        }
    }
}

/// What one call of a task brings besides its body.
pub struct TaskCall<T, E> {
    /// The serialized inputs, when the cache policy uses them.
    pub inputs: Option<Result<Vec<u8>, String>>,
    /// The user's cache key, for `cache_key_fn`.
    pub custom_key: Option<String>,
    /// Retry only errors for which this returns true.
    pub retry_if: Option<fn(&E) -> bool>,
    /// The inputs serialized, when they can be and the flow run keeps its
    /// completed calls: what identifies this call in a later attempt.
    pub call_inputs: Option<Vec<u8>>,
    /// How to store the result, when its type allows.
    pub codec: Option<Codec<T>>,
}

impl<T, E> Default for TaskCall<T, E> {
    fn default() -> Self {
        TaskCall { inputs: None, custom_key: None, retry_if: None, call_inputs: None, codec: None }
    }
}

/// Whether the current flow run keeps its completed calls' results (so the
/// generated code only serializes inputs when they will be used).
pub fn keeps_completed_calls() -> bool {
    CONTEXT.try_with(|c| c.flow.completed.is_some()).unwrap_or(false)
}

// What `#[task]` generates uses these to find out, from the concrete types
// at the call, whether inputs and results can be stored: the first trait's
// method applies when the type implements serde's traits, the second (one
// reference further away) otherwise.

/// Stands for a task's result type.
pub struct OutputProbe<T>(std::marker::PhantomData<T>);

/// The probe for the result type of the body `_body` produces.
pub fn output_probe<T, E, F, Fut>(_body: &F) -> OutputProbe<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    OutputProbe(std::marker::PhantomData)
}

pub trait StorableOutput<T> {
    fn codec(&self) -> Option<Codec<T>>;
}

impl<T: Serialize + DeserializeOwned> StorableOutput<T> for OutputProbe<T> {
    fn codec(&self) -> Option<Codec<T>> {
        Some(serde_codec())
    }
}

pub trait OpaqueOutput<T> {
    fn codec(&self) -> Option<Codec<T>>;
}

impl<T> OpaqueOutput<T> for &OutputProbe<T> {
    fn codec(&self) -> Option<Codec<T>> {
        None
    }
}

/// Stands for a task call's arguments.
pub struct InputsProbe<'a, A>(pub &'a A);

pub trait StorableInputs {
    fn call_inputs(&self) -> Option<Vec<u8>>;
}

impl<A: Serialize> StorableInputs for InputsProbe<'_, A> {
    fn call_inputs(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self.0).ok()
    }
}

pub trait OpaqueInputs {
    fn call_inputs(&self) -> Option<Vec<u8>>;
}

impl<A> OpaqueInputs for &InputsProbe<'_, A> {
    fn call_inputs(&self) -> Option<Vec<u8>> {
        None
    }
}

/// Serializes a task's inputs for its cache key.
pub fn hash_inputs<T: Serialize>(inputs: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(inputs).map_err(|e| e.to_string())
}

type Encode<T> = fn(&T) -> Result<serde_json::Value, String>;
type Decode<T> = fn(serde_json::Value) -> Result<T, String>;
/// How a result is written and read back.
pub type Codec<T> = (Encode<T>, Decode<T>);

fn serde_codec<T: Serialize + DeserializeOwned>() -> Codec<T> {
    (|v| serde_json::to_value(v).map_err(|e| e.to_string()), |v| serde_json::from_value(v).map_err(|e| e.to_string()))
}

/// Runs a task whose results are not cached.
pub async fn run_task<T, E, F, Fut>(spec: &'static TaskSpec, call: TaskCall<T, E>, body: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Error> + Display,
{
    execute(spec, call, body).await
}

/// Runs a task whose results are persisted and reused while fresh. The
/// bounds make a result that cannot be stored a compile-time error.
pub async fn run_cached_task<T, E, F, Fut>(spec: &'static TaskSpec, mut call: TaskCall<T, E>, body: F) -> Result<T, E>
where
    T: Serialize + DeserializeOwned,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Error> + Display,
{
    call.codec = Some(serde_codec());
    execute(spec, call, body).await
}

async fn execute<T, E, F, Fut>(spec: &'static TaskSpec, call: TaskCall<T, E>, mut body: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Error> + Display,
{
    // Outside any flow a task is an ordinary function call.
    let Some(parent) = RunContext::current() else {
        return body().await;
    };
    if parent.flow.cancel.is_cancelled() {
        return Err(E::from(Error::Cancelled {
            what: format!("task '{}'", spec.name),
            reason: "its flow run is stopping".into(),
        }));
    }
    let engine = parent.engine.clone();
    engine.recorder.throttle().await;
    let key_num = parent.flow.next_key(spec.name);
    let name = format!("{}-{key_num}", spec.name);
    let inputs = match call.inputs {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(reason)) => {
            return Err(E::from(Error::ResultNotPersistable {
                task: spec.name.into(),
                reason: format!("its inputs cannot be serialized for the cache key: {reason}"),
            }))
        }
        None => None,
    };
    let key = cache_key(spec.name, spec.cache, spec.source_hash, inputs.as_deref(), call.custom_key.as_deref());
    let now = Utc::now();
    let run = TaskRun {
        id: Uuid::now_v7(),
        flow_run_id: parent.flow.id,
        task_name: spec.name.to_string(),
        name: name.clone(),
        dynamic_key: key_num,
        tags: spec.tags.iter().map(|t| t.to_string()).collect(),
        state: State::pending(now),
        run_count: 0,
        cache_key: key.as_ref().map(|k| k.0.clone()),
        cache_expiration: None,
        start_time: None,
        end_time: None,
        created: now,
    };
    let mut tracker = Tracker::create(engine.clone(), run);
    let ctx = RunContext {
        engine: engine.clone(),
        flow: parent.flow.clone(),
        task_run: Some((tracker.run.id, Arc::from(name.as_str()))),
    };
    emit(&ctx, Level::DEBUG, format!("Created task run '{name}'"));
    let codec = call.codec;

    // In a flow run that keeps its completed calls (and where the cache does
    // not already keep this one), this call has a place for its result.
    let completed_key = match (&parent.flow.completed, codec, &key) {
        (Some(_), Some(_), None) => {
            let inputs = call.call_inputs.as_deref();
            let occurrence = parent.flow.next_occurrence(spec.name, inputs.unwrap_or_default());
            Some(completed_call_key(parent.flow.id, spec.name, spec.source_hash, inputs, occurrence))
        }
        _ => None,
    };
    if let (true, Some(k), Some((_, decode))) = (parent.flow.reuse_completed, &completed_key, codec) {
        if let Some(stored) = engine.results.read(k, Utc::now()).await {
            if let Ok(v) = decode(stored.value) {
                if let Some(calls) = &parent.flow.completed {
                    calls.keys.lock().expect("completed calls lock").push(k.clone());
                }
                let since = stored.created.format("%Y-%m-%d %H:%M:%S UTC");
                tracker.set(
                    State::cached(Utc::now()).with_message(format!("completed in an earlier attempt, at {since}")),
                );
                emit(
                    &ctx,
                    Level::INFO,
                    "Finished in state Cached(type=COMPLETED): completed in an earlier attempt".into(),
                );
                return Ok(v);
            }
        }
    }

    if let (Some(key), Some((_, decode)), false) = (&key, codec, spec.refresh_cache) {
        if let Some(stored) = engine.results.read(key, Utc::now()).await {
            match decode(stored.value) {
                Ok(v) => {
                    tracker.run.cache_expiration = stored.expires;
                    let since = stored.created.format("%Y-%m-%d %H:%M:%S UTC");
                    tracker.set(State::cached(Utc::now()).with_message(format!("result cached at {since}")));
                    emit(&ctx, Level::INFO, "Finished in state Cached(type=COMPLETED)".into());
                    return Ok(v);
                }
                Err(e) => emit(
                    &ctx,
                    Level::WARN,
                    format!("Cached result no longer matches the task's result type ({e}); running again"),
                ),
            }
        }
    }

    let timeout = spec.timeout_ms.map(Duration::from_millis);
    let mut policy: Option<RetryPolicy> = None;
    loop {
        // A slot of each tag that has a concurrency limit, for this attempt.
        let mut slots = if spec.tags.is_empty() {
            None
        } else {
            let ask = crate::concurrency::Ask {
                slots: spec.tags.iter().map(|t| (t.to_string(), 1)).collect(),
                holder: name.clone(),
                rate: false,
                cancel: Some(&parent.flow.cancel),
            };
            let waited = crate::concurrency::acquire(&engine, ask, |tag, limit, active| {
                tracker.set(headwater_core::concurrency::awaiting_slot(Utc::now(), tag, limit, active));
                emit(
                    &ctx,
                    Level::INFO,
                    format!("Waiting for a concurrency slot of '{tag}' ({active} of {limit} in use)"),
                );
            })
            .await;
            match waited {
                Ok(guard) => Some(guard),
                Err(e) => {
                    let msg = e.to_string();
                    let state = match e {
                        Error::Cancelled { .. } => State::cancelled(Utc::now(), msg.clone()),
                        _ => State::failed(Utc::now(), msg.clone()),
                    };
                    let shown = state.name.clone();
                    tracker.set(state);
                    emit(&ctx, Level::ERROR, format!("Finished in state {shown}: {msg}"));
                    return Err(E::from(e));
                }
            }
        };
        let attempt = tracker.run.run_count + 1;
        tracker.run.run_count = attempt;
        tracker.set(if attempt == 1 { State::running(Utc::now()) } else { State::retrying(Utc::now()) });
        let outcome = run_once(ctx.clone(), tracker.attempt_span(), timeout, body()).await;
        // The slots go back, awaited, when the attempt ends: a process that
        // exits right after its last task still frees them (a release left
        // to Drop is a spawned task the exit may never run, and the slot
        // stayed taken until its lease expired: a minute for the next loader).
        if let Some(guard) = slots.take() {
            if let Err(e) = guard.release().await {
                tracing::debug!("releasing concurrency slots failed (they expire on their own): {e}");
            }
        }
        let (message, err, timed_out) = match outcome {
            Outcome::Ok(v) => {
                if let (Some(key), Some((encode, _))) = (&key, codec) {
                    let created = Utc::now();
                    let expires = expires_at(created, spec.cache_expiration_ms.map(Duration::from_millis));
                    let persisted = match encode(&v) {
                        Ok(value) => {
                            let stored = StoredResult { task: spec.name.into(), created, expires, value };
                            engine
                                .results
                                .write(key, &stored)
                                .await
                                .map_err(|e| format!("writing to {} failed: {e}", engine.result_dir().display()))
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(reason) = persisted {
                        let e = Error::ResultNotPersistable { task: spec.name.into(), reason };
                        let msg = e.to_string();
                        tracker.set(State::failed(Utc::now(), msg.clone()));
                        emit(&ctx, Level::ERROR, format!("Finished in state Failed: {msg}"));
                        return Err(E::from(e));
                    }
                    tracker.run.cache_expiration = expires;
                }
                if let (Some(k), Some((encode, _)), Some(calls)) = (&completed_key, codec, &parent.flow.completed) {
                    // Best effort: without it, a later attempt runs the call again.
                    let kept = match encode(&v) {
                        Ok(value) => {
                            let stored =
                                StoredResult { task: spec.name.into(), created: Utc::now(), expires: None, value };
                            engine.results.write(k, &stored).await.map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e),
                    };
                    match kept {
                        Ok(()) => calls.keys.lock().expect("completed calls lock").push(k.clone()),
                        Err(e) => emit(&ctx, Level::DEBUG, format!("Result not kept for a retry of the flow run: {e}")),
                    }
                }
                tracker.set(State::completed(Utc::now()));
                emit(&ctx, Level::INFO, "Finished in state Completed()".into());
                return Ok(v);
            }
            Outcome::Panicked(p) => {
                let msg = format!("panicked: {}", panic_message(p.as_ref()));
                tracker.set(State::failed(Utc::now(), msg.clone()));
                emit(&ctx, Level::ERROR, format!("Finished in state Failed: {msg}"));
                std::panic::resume_unwind(p);
            }
            Outcome::Err(e) => (error_message(&e), e, false),
            Outcome::TimedOut(after) => {
                let e = Error::Timeout { what: format!("task run '{name}'"), after };
                (e.to_string(), E::from(e), true)
            }
        };
        let policy = policy.get_or_insert_with(|| spec.retry_policy());
        let wanted = call.retry_if.is_none_or(|f| f(&err));
        if !(wanted && policy.should_retry(attempt)) {
            let state = State::failure(Utc::now(), message.clone(), timed_out);
            let shown = state.name.clone();
            tracker.set(state);
            let why = if wanted || spec.retries == 0 { "" } else { " (the retry condition declined this error)" };
            emit(&ctx, Level::ERROR, format!("Finished in state {shown}: {message}{why}"));
            return Err(err);
        }
        let delay = policy.delay_before(attempt, rand::random());
        tracker.set(State::awaiting_retry_after(Utc::now(), delay).with_message(message.clone()));
        emit(
            &ctx,
            Level::WARN,
            format!(
                "Task run failed: {message}; retrying in {} (retry {attempt} of {})",
                format_duration(delay),
                policy.retries
            ),
        );
        tokio::time::sleep(delay).await;
    }
}

/// A task submitted to run in the background; await it for its result.
///
/// Inside a flow, the flow run waits for its submitted tasks before it
/// completes, and stops them if it fails or is cancelled.
pub struct TaskHandle<T> {
    inner: tokio::task::JoinHandle<Option<T>>,
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(v))) => Poll::Ready(Ok(v)),
            Poll::Ready(Ok(None)) => Poll::Ready(Err(Error::Cancelled {
                what: "submitted task".into(),
                reason: "its flow run stopped".into(),
            })),
            Poll::Ready(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Poll::Ready(Err(e)) => {
                Poll::Ready(Err(Error::Cancelled { what: "submitted task".into(), reason: e.to_string() }))
            }
        }
    }
}

/// Starts `fut` (typically a task call) on the runtime and returns at once,
/// like Prefect's `task.submit()`. Runs in parallel with the caller.
pub fn submit<F>(fut: F) -> TaskHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RunContext::current() {
        Some(ctx) => {
            let flow = ctx.flow.clone();
            let token = flow.cancel.clone();
            // In the caller's span: the task's run is a child of the attempt that submitted it.
            let inner = flow.tracker.spawn(tracing::Instrument::in_current_span(CONTEXT.scope(ctx, async move {
                tokio::select! {
                    biased;
                    _ = token.cancelled() => None,
                    v = fut => Some(v),
                }
            })));
            TaskHandle { inner }
        }
        None => TaskHandle { inner: tokio::spawn(async move { Some(fut.await) }) },
    }
}

/// Calls `f` on every input with at most `limit` calls in flight, and
/// returns the results in input order, like Prefect's `task.map()`.
pub async fn map<I, F, Fut>(inputs: I, limit: usize, f: F) -> Vec<Fut::Output>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future,
{
    futures::stream::iter(inputs).map(f).buffered(limit.max(1)).collect().await
}

/// Like [`map`], but yields results as they finish.
pub fn map_unordered<I, F, Fut>(inputs: I, limit: usize, f: F) -> impl Stream<Item = Fut::Output>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future,
{
    futures::stream::iter(inputs).map(f).buffer_unordered(limit.max(1))
}
