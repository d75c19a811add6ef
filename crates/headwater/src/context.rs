//! What the code running right now belongs to: which flow run, which task
//! run. Carried in a tokio task-local, so concurrent flows in one process
//! never see each other's context.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::engine::Engine;

tokio::task_local! {
    pub(crate) static CONTEXT: RunContext;
}

/// Dynamic-key counters, shared by every attempt of a flow run so that a
/// retried flow's task runs do not reuse names.
pub(crate) type Counters = Arc<Mutex<HashMap<&'static str, u64>>>;

/// Results of a flow run's completed task calls, kept so that a later
/// attempt of the run (a flow retry, in this process or another) does not
/// redo them; removed once the run completes.
#[derive(Default)]
pub(crate) struct CompletedCalls {
    pub keys: Mutex<Vec<headwater_core::CacheKey>>,
}

/// Shared by everything inside one attempt of a flow run.
pub(crate) struct FlowRunScope {
    pub id: Uuid,
    pub name: String,
    counters: Counters,
    /// Set when the run keeps its completed calls' results.
    pub completed: Option<Arc<CompletedCalls>>,
    /// This attempt follows an earlier one: completed calls are reused.
    pub reuse_completed: bool,
    /// Calls so far in this attempt, per task and inputs.
    occurrences: Mutex<HashMap<(&'static str, Vec<u8>), u64>>,
    /// Cancelled when the flow run ends abnormally: submitted tasks stop.
    pub cancel: CancellationToken,
    /// Tasks submitted to run in the background; the flow waits for them.
    pub tracker: TaskTracker,
}

impl FlowRunScope {
    pub fn new(id: Uuid, name: String, counters: Counters) -> Self {
        FlowRunScope {
            id,
            name,
            counters,
            completed: None,
            reuse_completed: false,
            occurrences: Mutex::default(),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// Keeps completed calls' results in `completed`, reusing them if this
    /// attempt is a retry.
    pub fn keeping_completed(mut self, completed: Option<Arc<CompletedCalls>>, reuse: bool) -> Self {
        self.completed = completed;
        self.reuse_completed = reuse;
        self
    }

    /// How many earlier calls of `task` with these inputs this attempt made.
    pub fn next_occurrence(&self, task: &'static str, inputs: &[u8]) -> u64 {
        let mut o = self.occurrences.lock().expect("occurrence lock");
        let n = o.entry((task, inputs.to_vec())).or_insert(0);
        let k = *n;
        *n += 1;
        k
    }

    /// Cancels the submitted tasks still running and waits until they have
    /// recorded their final state.
    pub async fn stop_tasks(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// The next dynamic key for `task` in this flow run: 0, 1, 2…
    pub fn next_key(&self, task: &'static str) -> u64 {
        let mut c = self.counters.lock().expect("counter lock");
        let n = c.entry(task).or_insert(0);
        let k = *n;
        *n += 1;
        k
    }
}

#[derive(Clone)]
pub(crate) struct RunContext {
    pub engine: Arc<Engine>,
    pub flow: Arc<FlowRunScope>,
    pub task_run: Option<(Uuid, Arc<str>)>,
}

impl RunContext {
    pub fn current() -> Option<RunContext> {
        CONTEXT.try_with(Clone::clone).ok()
    }

    /// How a log line from here is labelled on the console.
    pub fn label(&self) -> String {
        match &self.task_run {
            Some((_, name)) => format!("Task run '{name}'"),
            None => format!("Flow run '{}'", self.flow.name),
        }
    }
}

/// The id and name of the flow run the caller is inside, if any.
pub fn current_flow_run() -> Option<(Uuid, String)> {
    CONTEXT.try_with(|c| (c.flow.id, c.flow.name.clone())).ok()
}

/// The id and name of the task run the caller is inside, if any.
pub fn current_task_run() -> Option<(Uuid, String)> {
    CONTEXT.try_with(|c| c.task_run.as_ref().map(|(id, n)| (*id, n.to_string()))).ok().flatten()
}

tokio::task_local! {
    /// The final state of the root flow run started under it.
    pub(crate) static FINAL_STATE: std::cell::Cell<Option<headwater_core::StateType>>;
}
