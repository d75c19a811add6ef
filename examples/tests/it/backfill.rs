//! Backfills through the CLI against the example program: a deployment
//! partitioned colour × month, every partition run once by two workers, at
//! most N at once (the claim enforces it), on SQLite and on PostgreSQL
//! through a server.

use std::path::Path;

use headwater_core::StateType;
use headwater_store::backfills::partition_grid;
use headwater_store::FlowRunFilter;

use crate::deploy::{backend, hw, BIN};

fn manifest(dir: &Path, parameters: &str) -> std::path::PathBuf {
    let text = format!(
        r#"deployments:
  - name: months
    flow: etl-web-to-lake
    entrypoint: ["{BIN}", "etl-web-to-lake"]
    work_pool: {{name: backfill}}
    partitions:
      time: {{every: month, start: "2019-01", end: "2020-12", timezone: America/New_York}}
      static: {{color: [yellow, green]}}
      parameters: {parameters}
"#
    );
    let path = dir.join("headwater.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_runs_each_partition_once_within_its_bound() {
    backfill_two_years(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_runs_each_partition_once_within_its_bound_on_postgres() {
    backfill_two_years(true).await;
}

async fn backfill_two_years(on_postgres: bool) {
    let home = tempfile::tempdir().unwrap();
    let Some(b) = backend(on_postgres, home.path()).await else { return };
    let store = b.store.as_ref();

    // A mapping that names a parameter the flow does not have is refused at deploy time.
    let bad = manifest(home.path(), "{color: color, year: year, months: month}");
    let e = hw(home.path(), &["deploy", "--file", bad.to_str().unwrap()]).await.unwrap_err();
    assert!(format!("{e:#}").contains("partitions.parameters.months: the flow has no parameter 'months'"), "{e:#}");
    assert!(store.read_deployment("months").await.unwrap().is_none());

    let file = manifest(home.path(), "{color: color, year: year, month: month}");
    hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap();
    let d = store.read_deployment("months").await.unwrap().expect("deployed");
    let all_runs = FlowRunFilter { deployment_id: Some(d.id), limit: 1000, ..Default::default() };

    // Bad selections name the field and create nothing.
    for (args, says) in [
        (vec!["--partition", "color=blue"], "partition.color: 'blue' is not one of yellow, green"),
        (vec!["--from", "2018-06"], "from: 2018-06 is before the partitions' start, 2019-01"),
        (vec!["--to", "2021-01"], "to: 2021-01 is after the partitions' end, 2020-12"),
        (vec!["--from", "2020-05", "--to", "2020-04"], "the range 2020-05..2020-04 holds no partitions"),
        (vec!["--only", "some"], "only: 'some' is not one of missing, failed, all"),
    ] {
        let mut argv = vec!["backfill", "months"];
        argv.extend(args);
        let e = hw(home.path(), &argv).await.unwrap_err();
        assert!(format!("{e:#}").contains(says), "{argv:?}: {e:#}");
    }
    let backfill = ["backfill", "months", "--from", "2019-01", "--to", "2020-12", "--max-concurrent", "4"];
    let mut dry = backfill.to_vec();
    dry.push("--dry-run");
    hw(home.path(), &dry).await.unwrap();
    assert!(store.list_flow_runs(&all_runs).await.unwrap().is_empty(), "a dry run creates nothing");

    hw(home.path(), &backfill).await.unwrap();
    assert_eq!(store.list_flow_runs(&all_runs).await.unwrap().len(), 48);
    // Asked twice before anything ran: nothing twice.
    hw(home.path(), &backfill).await.unwrap();
    assert_eq!(store.list_flow_runs(&all_runs).await.unwrap().len(), 48);

    // Two workers with room for 4 each: the backfill's bound, not theirs, holds.
    let worker = || {
        hw(
            home.path(),
            &["worker", "start", "--pool", "backfill", "--limit", "4", "--exit-when-idle", "--poll-ms", "20"],
        )
    };
    let (a, w) = tokio::join!(worker(), worker());
    a.unwrap();
    w.unwrap();

    let runs = store.list_flow_runs(&all_runs).await.unwrap();
    assert_eq!(runs.len(), 48, "no run was created twice");
    let mut partitions: Vec<String> = runs.iter().map(|r| r.partition.clone().expect("a partition")).collect();
    partitions.sort();
    partitions.dedup();
    assert_eq!(partitions.len(), 48, "one run per partition");
    let mut spans = Vec::new();
    for r in &runs {
        if r.state.state_type != StateType::Completed {
            let logs = store.read_logs(&headwater_store::LogFilter::for_flow_run(r.id)).await.unwrap();
            let logs: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
            panic!("{} is {}; its logs:\n{}", r.name, r.state, logs.join("\n"));
        }
        let history = store.read_states(r.id).await.unwrap();
        assert_eq!(history.iter().filter(|s| s.state.name == "Running").count(), 1, "{} ran more than once", r.name);
        let month = r.parameters["month"].as_u64().unwrap();
        let key =
            format!("color={}/month={}-{month:02}", r.parameters["color"].as_str().unwrap(), r.parameters["year"]);
        assert_eq!(r.partition.as_deref(), Some(key.as_str()), "the partition's parameters");
        // Claimed (PENDING) to final: the span the backfill's bound covers.
        let claimed =
            history.iter().find(|s| s.state.state_type == StateType::Pending).expect("claimed").state.timestamp;
        spans.push((claimed, r.end_time.expect("ended")));
    }
    let most = headwater_test_support::most_at_once(spans);
    assert!(most <= 4, "{most} runs of the backfill were active at once; its bound is 4");

    // Run again: every partition is fresh, nothing is created.
    hw(home.path(), &backfill).await.unwrap();
    assert_eq!(store.list_flow_runs(&all_runs).await.unwrap().len(), 48);
    let grid = partition_grid(store, "months", chrono::Utc::now()).await.unwrap();
    assert_eq!((grid.times.len(), grid.columns.clone()), (24, vec!["yellow".to_string(), "green".to_string()]));
    assert_eq!(grid.counts.get("completed"), Some(&48));
    hw(home.path(), &["partition", "ls", "months"]).await.unwrap();
    hw(home.path(), &["backfill", "ls"]).await.unwrap();
}
