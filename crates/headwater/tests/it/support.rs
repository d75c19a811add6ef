use std::sync::Arc;

use headwater::Engine;
use headwater_core::{FlowRun, StateRecord, TaskRun};
use headwater_store::{FlowRunFilter, LogFilter};

pub struct Home {
    pub engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

pub fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::with_home(dir.path()).unwrap();
    Home { engine, _dir: dir }
}

impl Home {
    pub async fn runs(&self) -> Vec<FlowRun> {
        self.engine.flush().await.unwrap();
        self.engine.store().list_flow_runs(&FlowRunFilter { limit: 1000, ..Default::default() }).await.unwrap()
    }

    pub async fn run_named(&self, flow: &str) -> FlowRun {
        let runs = self.runs().await;
        let mut of_flow: Vec<_> = runs.into_iter().filter(|r| r.flow_name == flow).collect();
        assert_eq!(of_flow.len(), 1, "expected one run of {flow}");
        of_flow.remove(0)
    }

    pub async fn tasks(&self, run: &FlowRun) -> Vec<TaskRun> {
        self.engine.flush().await.unwrap();
        self.engine.store().list_task_runs(run.id).await.unwrap()
    }

    pub async fn history(&self, id: uuid::Uuid) -> Vec<StateRecord> {
        self.engine.flush().await.unwrap();
        self.engine.store().read_states(id).await.unwrap()
    }

    pub async fn log_messages(&self, run: &FlowRun) -> Vec<(Option<uuid::Uuid>, String)> {
        self.engine.flush().await.unwrap();
        self.engine
            .store()
            .read_logs(&LogFilter::for_flow_run(run.id))
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.task_run_id, l.message))
            .collect()
    }
}

pub fn names(history: &[StateRecord]) -> Vec<String> {
    history.iter().map(|s| s.state.name.clone()).collect()
}
