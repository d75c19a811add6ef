use std::time::Duration;

use headwater::prelude::*;
use headwater_core::StateType;
use headwater_store::FlowRunFilter;

use crate::support::{home, names};

#[task]
async fn count_rows(month: u32) -> Result<u64> {
    info!("rows: {}", month * 1000);
    Ok(month as u64 * 1000)
}

#[flow(name = "etl-month", run_name = "yellow-2021-{month:02}")]
async fn etl_month(month: u32) -> Result<u64> {
    count_rows(month).await
}

/// The parent of the course: one subflow per month.
#[flow(name = "etl-parent", version = "2.1")]
async fn etl_parent(months: Vec<u32>) -> Result<u64> {
    let mut total = 0;
    for m in months {
        total += etl_month(m).await?;
    }
    info!("total rows: {total}");
    Ok(total)
}

#[tokio::test]
async fn subflows_are_linked_to_their_parent() {
    let h = home();
    assert_eq!(h.engine.scope(etl_parent(vec![1, 2, 3])).await.unwrap(), 6000);
    let parent = h.run_named("etl-parent").await;
    assert_eq!(parent.parameters, serde_json::json!({"months": [1, 2, 3]}));
    assert_eq!(parent.state.state_type, StateType::Completed);
    assert!(parent.start_time.is_some() && parent.end_time.is_some());
    let children = h
        .engine
        .store()
        .list_flow_runs(&FlowRunFilter { parent_flow_run_id: Some(parent.id), limit: 10, ..Default::default() })
        .await
        .unwrap();
    let mut child_names: Vec<_> = children.iter().map(|c| c.name.clone()).collect();
    child_names.sort();
    assert_eq!(child_names, ["yellow-2021-01", "yellow-2021-02", "yellow-2021-03"]);
    for c in &children {
        assert_eq!(c.flow_name, "etl-month");
        assert_eq!(c.state.state_type, StateType::Completed);
        let tasks = h.tasks(c).await;
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].name, "count_rows-0", "keys count per flow run");
    }
    let flow = h.engine.store().read_flow("etl-parent").await.unwrap().unwrap();
    assert_eq!(flow.version.as_deref(), Some("2.1"));
    assert_eq!(flow.description.as_deref(), Some("The parent of the course: one subflow per month."));
    assert_eq!(flow.parameter_schema["properties"]["months"]["type"], "array");
}

#[tokio::test]
async fn logs_are_captured_with_their_task() {
    let h = home();
    h.engine.scope(etl_parent(vec![7])).await.unwrap();
    let parent = h.run_named("etl-parent").await;
    let logs = h.log_messages(&parent).await;
    assert!(logs.iter().any(|(t, m)| t.is_none() && m == "total rows: 7000"), "{logs:?}");
    let child = h.run_named("etl-month").await;
    let task = &h.tasks(&child).await[0];
    let logs = h.log_messages(&child).await;
    assert!(logs.iter().any(|(t, m)| *t == Some(task.id) && m == "rows: 7000"), "{logs:?}");
    assert!(logs.iter().any(|(t, m)| t.is_none() && m == "Finished in state Completed()"));
}

#[flow]
async fn breaks() -> Result<()> {
    count_rows(1).await?;
    Err(anyhow!("no such table: yellow_taxi_trips").context("loading month 1"))
}

#[tokio::test]
async fn a_failing_flow_records_the_error_chain() {
    let h = home();
    let e = h.engine.scope(breaks()).await.unwrap_err();
    assert_eq!(e.to_string(), "loading month 1");
    let run = h.run_named("breaks").await;
    assert_eq!(run.state.state_type, StateType::Failed);
    assert_eq!(run.state.message.as_deref(), Some("loading month 1: no such table: yellow_taxi_trips"));
    assert_eq!(names(&h.history(run.id).await), ["Pending", "Running", "Failed"]);
}

#[task]
async fn forever() -> Result<()> {
    info!("started");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[flow]
async fn stuck() -> Result<()> {
    let _bg = submit(forever());
    forever().await
}

/// Cancelling the future that runs a flow (as a parent or a server would)
/// ends the flow run and its task runs CANCELLED: nothing stays RUNNING.
#[tokio::test]
async fn dropping_a_running_flow_cancels_it_and_its_tasks() {
    let h = home();
    let engine = h.engine.clone();
    let handle = tokio::spawn(async move { engine.scope(stuck()).await });
    // Wait until both task runs have started.
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let runs = h.runs().await;
        if let Some(r) = runs.first() {
            let tasks = h.tasks(r).await;
            if tasks.len() == 2 && tasks.iter().all(|t| t.state.state_type == StateType::Running) {
                break;
            }
        }
    }
    handle.abort();
    assert!(handle.await.unwrap_err().is_cancelled());
    let run = h.run_named("stuck").await;
    assert_eq!(run.state.state_type, StateType::Cancelled);
    assert!(run.end_time.is_some());
    // The submitted task stops on its own runtime task, a moment later.
    let mut tasks = h.tasks(&run).await;
    for _ in 0..500 {
        if tasks.iter().all(|t| t.state.is_terminal()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        tasks = h.tasks(&run).await;
    }
    for t in tasks {
        assert_eq!(t.state.state_type, StateType::Cancelled, "{}", t.name);
    }
}

#[task]
async fn panics() -> Result<()> {
    panic!("index out of bounds: the len is 3 but the index is 7")
}

#[flow]
async fn with_panic() -> Result<()> {
    panics().await
}

#[tokio::test]
async fn a_panicking_task_is_recorded_failed_and_the_panic_goes_on() {
    let h = home();
    let engine = h.engine.clone();
    let joined = tokio::spawn(async move { engine.scope(with_panic()).await }).await;
    assert!(joined.unwrap_err().is_panic());
    let run = h.run_named("with-panic").await;
    assert_eq!(run.state.state_type, StateType::Failed);
    assert!(run.state.message.as_deref().unwrap().starts_with("panicked: index out of bounds"));
    let t = &h.tasks(&run).await[0];
    assert_eq!(t.state.state_type, StateType::Failed);
}

#[tokio::test]
async fn a_task_outside_a_flow_just_runs() {
    let h = home();
    let v = h.engine.scope(count_rows(4)).await.unwrap();
    assert_eq!(v, 4000);
    assert!(h.runs().await.is_empty(), "nothing is recorded");
}
