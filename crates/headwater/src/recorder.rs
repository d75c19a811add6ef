//! Writes what happens to the store off the hot path.
//!
//! Runs send events through an unbounded channel (a send is a push onto a
//! queue, no I/O); one writer thread with its own small runtime drains
//! whatever has accumulated, folds repeated snapshots of a run into one row,
//! and writes the lot in a single transaction. Under load the batches grow
//! by themselves. A flush waits until everything sent before it is written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use headwater_core::{Flow, FlowRun, Heartbeat, LogRecord, RunKind, StateRecord, TaskRun};
use headwater_store::{RunRecorder, Store, StoreError, WriteBatch};
use tokio::sync::{mpsc, oneshot, Notify};
use uuid::Uuid;

use crate::error::Error;

pub(crate) enum Event {
    Flow(Flow),
    /// A flow run's latest snapshot; its current state joins the history.
    /// (Boxed: a run is several times larger than the other events.)
    FlowRun(Box<FlowRun>),
    TaskRun(TaskRun),
    Log(LogRecord),
    Heartbeats(Vec<Heartbeat>),
    Artifact(headwater_core::Artifact),
    Flush(oneshot::Sender<Result<(), String>>),
}

#[derive(Clone)]
pub(crate) struct Recorder {
    tx: mpsc::UnboundedSender<Event>,
    backlog: Arc<Backlog>,
}

/// Events sent but not yet written. Runs wait while it is above the high
/// mark, so a flow that creates runs faster than the disk takes them keeps
/// a bounded amount of memory instead of queueing without end.
#[derive(Default)]
struct Backlog {
    events: AtomicUsize,
    drained: Notify,
}

const MAX_BATCH_EVENTS: usize = 20_000;
const BACKLOG_HIGH_MARK: usize = 40_000;
/// How long a batch is retried while the store is unreachable or busy (a
/// server restart, a network blip) before it is given up and reported.
const WRITE_PATIENCE: Duration = Duration::from_secs(600);

impl Recorder {
    /// Starts the writer thread on the store `open` opens (in the thread's
    /// own runtime); returns once the store is ready, or its error. While
    /// it runs, it sends a heartbeat for the runs in `live` every
    /// `heartbeat` interval.
    pub(crate) fn start(
        open: impl FnOnce() -> BoxFuture<'static, Result<Arc<dyn Store>, String>> + Send + 'static,
        live: LiveRuns,
        heartbeat: Duration,
    ) -> Result<(Recorder, Arc<dyn Store>), Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        let recorder = Recorder { tx, backlog };
        let beating = recorder.clone();
        let writer_backlog = recorder.backlog.clone();
        let live_for_beats = live.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("headwater-recorder".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let store = match open().await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(store.clone()));
                    tokio::spawn(cancel_watch(store.clone(), live, heartbeat));
                    write_loop(store.as_ref() as &dyn RunRecorder, rx, &writer_backlog).await;
                });
            })
            .map_err(|e| Error::Open(e.to_string()))?;
        std::thread::Builder::new()
            .name("headwater-heartbeat".into())
            .spawn(move || heartbeat_loop(beating, live_for_beats, heartbeat))
            .map_err(|e| Error::Open(e.to_string()))?;
        let store =
            ready_rx.recv().map_err(|_| Error::Open("the recorder thread stopped".into()))?.map_err(Error::Open)?;
        Ok((recorder, store))
    }

    /// Queues an event; never blocks (it is called from drop guards and the
    /// log layer).
    pub(crate) fn send(&self, event: Event) {
        self.backlog.events.fetch_add(1, Ordering::Relaxed);
        // The writer lives as long as the process; a failed send means the
        // process is shutting down and there is nobody left to tell.
        if self.tx.send(event).is_err() {
            self.backlog.events.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Waits while the writer is far behind. Called where a run starts.
    pub(crate) async fn throttle(&self) {
        loop {
            let drained = self.backlog.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.backlog.events.load(Ordering::Relaxed) < BACKLOG_HIGH_MARK {
                return;
            }
            drained.await;
        }
    }

    pub(crate) async fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Event::Flush(tx));
        rx.await
            .map_err(|_| Error::Recording("the recorder stopped before writing everything".into()))?
            .map_err(Error::Recording)
    }
}

#[derive(Default)]
struct Pending {
    batch: WriteBatch,
    flow_run_index: HashMap<Uuid, usize>,
    task_run_index: HashMap<Uuid, usize>,
    flushes: Vec<oneshot::Sender<Result<(), String>>>,
}

impl Pending {
    fn add(&mut self, event: Event) {
        let b = &mut self.batch;
        match event {
            Event::Flow(f) => b.flows.push(f),
            Event::FlowRun(r) => {
                b.states.push(StateRecord { run_id: r.id, kind: RunKind::Flow, state: r.state.clone() });
                match self.flow_run_index.get(&r.id) {
                    Some(&i) => b.flow_runs[i] = *r,
                    None => {
                        self.flow_run_index.insert(r.id, b.flow_runs.len());
                        b.flow_runs.push(*r);
                    }
                }
            }
            Event::TaskRun(r) => {
                b.states.push(StateRecord { run_id: r.id, kind: RunKind::Task, state: r.state.clone() });
                match self.task_run_index.get(&r.id) {
                    Some(&i) => b.task_runs[i] = r,
                    None => {
                        self.task_run_index.insert(r.id, b.task_runs.len());
                        b.task_runs.push(r);
                    }
                }
            }
            Event::Log(l) => b.logs.push(l),
            Event::Heartbeats(h) => b.heartbeats.extend(h),
            Event::Artifact(a) => b.artifacts.push(a),
            Event::Flush(tx) => self.flushes.push(tx),
        }
    }
}

/// The flow runs this process is running, for heartbeats.
/// Each with the token that stops it when a cancellation is requested.
pub(crate) type LiveRuns = Arc<std::sync::Mutex<HashMap<Uuid, tokio_util::sync::CancellationToken>>>;

/// Tells the store every `every` that this process's live runs are alive;
/// a run whose process dies stops beating and is later marked CRASHED. A
/// plain thread, so that beats go out whatever the async runtimes are doing.
fn heartbeat_loop(recorder: Recorder, live: LiveRuns, every: Duration) {
    loop {
        std::thread::sleep(every);
        let ids: Vec<Uuid> = live.lock().map(|l| l.keys().copied().collect()).unwrap_or_default();
        if ids.is_empty() {
            continue;
        }
        let at = Utc::now();
        if recorder.tx.is_closed() {
            return;
        }
        recorder.send(Event::Heartbeats(ids.into_iter().map(|flow_run_id| Heartbeat { flow_run_id, at }).collect()));
    }
}

/// Looks, at the heartbeat's pace, for cancellations requested for this
/// process's live runs (`headwater flow-run cancel`, the API) and stops them.
async fn cancel_watch(store: Arc<dyn Store>, live: LiveRuns, every: Duration) {
    use headwater_core::StateType;
    loop {
        tokio::time::sleep(every).await;
        let runs: Vec<_> = live.lock().map(|l| l.iter().map(|(id, t)| (*id, t.clone())).collect()).unwrap_or_default();
        for (id, token) in runs {
            if let Ok(Some(r)) = store.read_flow_run(id).await {
                if matches!(r.state.state_type, StateType::Cancelling | StateType::Cancelled) {
                    token.cancel();
                }
            }
        }
    }
}

async fn write_loop(store: &dyn RunRecorder, mut rx: mpsc::UnboundedReceiver<Event>, backlog: &Backlog) {
    let mut events = Vec::with_capacity(4096);
    // The first failure since the last flush, reported to the next flush.
    let mut failure: Option<String> = None;
    loop {
        let received = rx.recv_many(&mut events, MAX_BATCH_EVENTS).await;
        if received == 0 {
            return;
        }
        let mut pending = Pending::default();
        for e in events.drain(..) {
            pending.add(e);
        }
        if let Err(e) = write_with_retries(store, &pending.batch).await {
            let lost = pending.batch.flow_runs.len() + pending.batch.task_runs.len() + pending.batch.logs.len();
            let msg = format!("{e} ({lost} records not written)");
            eprintln!("headwater: could not record runs: {msg}");
            failure.get_or_insert(msg);
        }
        backlog.events.fetch_sub(received, Ordering::Relaxed);
        backlog.drained.notify_waiters();
        if !pending.flushes.is_empty() {
            let result = match failure.take() {
                Some(m) => Err(m),
                None => Ok(()),
            };
            for f in pending.flushes {
                let _ = f.send(result.clone());
            }
        }
    }
}

async fn write_with_retries(store: &dyn RunRecorder, batch: &WriteBatch) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        match store.record_checked(batch).await {
            Ok(outcome) => {
                if attempt > 0 {
                    eprintln!("headwater: recording again after {attempt} retries");
                }
                // The store keeps a run's recorded state when a move breaks the
                // rules (a run crashed or cancelled meanwhile): say so, once per run.
                for r in &outcome.refused {
                    eprintln!("headwater: not recorded: {} ({} states dropped)", r.reason, r.states_dropped);
                }
                return Ok(());
            }
            Err(e) if e.is_retryable() && started.elapsed() < WRITE_PATIENCE => {
                if attempt == 0 {
                    eprintln!("headwater: {e}; holding the records and retrying");
                }
                attempt += 1;
                // 100 ms doubling, capped at 5 s.
                tokio::time::sleep(Duration::from_millis((50u64 << attempt.min(7)).min(5000))).await;
            }
            Err(e) => return Err(e),
        }
    }
}
