//! `headwater deploy` against the real example program as entrypoint: the
//! flow's own types check every parameter set before anything is stored.

use std::path::Path;

use headwater_store::{DeploymentStore, SqliteStore};

const BIN: &str = env!("CARGO_BIN_EXE_hw-examples");

fn manifest(dir: &Path, schedule_months: &str) -> std::path::PathBuf {
    let text = format!(
        r#"# NYC taxi, monthly
deployments:
  - name: taxi-monthly
    flow: etl-parent-flow
    entrypoint: ["{BIN}", "etl-parent-flow"]
    description: Yellow taxi trips, month by month
    parameters:
      color: yellow
      year: 2021
    work_pool:
      name: local
    schedules:
      - cron: "0 5 1 * *"
        timezone: America/New_York
        parameters:
          months: {schedule_months}
      - interval: 1h
        active: false
    concurrency_limit: 1
  - name: taxi-green
    flow: etl-parent-flow
    entrypoint: ["{BIN}", "etl-parent-flow"]
    parameters:
      color: green
"#
    );
    let path = dir.join("headwater.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn hw(home: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["headwater", "--home", home.to_str().unwrap()];
    argv.extend_from_slice(args);
    headwater_cli::try_run_from(argv).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_checks_parameters_with_the_flow_and_stores_the_deployment() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = manifest(dir.path(), "[13]");
    let file_arg = file.to_str().unwrap();

    // Two deployments in the file: say which.
    let e = hw(home.path(), &["deploy", "--file", file_arg]).await.unwrap_err().to_string();
    assert!(e.contains("several deployments (taxi-monthly, taxi-green)"), "{e}");

    // The schedule's months are refused by the flow's own Month type.
    let e = hw(home.path(), &["deploy", "taxi-monthly", "--file", file_arg]).await.unwrap_err().to_string();
    assert_eq!(
        e,
        "deployment 'taxi-monthly', schedules[0].parameters: \
         invalid parameter 'months[0]': month must be between 1 and 12, got 13"
    );
    let store = SqliteStore::open(&home.path().join("headwater.db")).await.unwrap();
    assert!(store.read_deployment("taxi-monthly").await.unwrap().is_none(), "nothing stored");

    manifest(dir.path(), "[1, 2]");
    hw(home.path(), &["deploy", "--all", "--file", file_arg]).await.unwrap();
    let d = store.read_deployment("taxi-monthly").await.unwrap().unwrap();
    assert_eq!(d.entrypoint, [BIN, "etl-parent-flow"]);
    assert_eq!(d.schedules.len(), 2);
    assert!(d.schedules[0].active && !d.schedules[1].active);
    assert_eq!(d.concurrency_limit, Some(1));
    assert!(store.read_deployment("taxi-green").await.unwrap().is_some());

    // Manage it from the CLI.
    hw(home.path(), &["deployment", "ls"]).await.unwrap();
    hw(home.path(), &["deployment", "inspect", "taxi-monthly"]).await.unwrap();
    hw(home.path(), &["deployment", "pause", "taxi-monthly"]).await.unwrap();
    assert!(store.read_deployment("taxi-monthly").await.unwrap().unwrap().paused);
    hw(home.path(), &["deployment", "resume", "taxi-monthly"]).await.unwrap();
    hw(home.path(), &["deployment", "schedule", "resume", "taxi-monthly", "1"]).await.unwrap();
    hw(home.path(), &["deployment", "schedule", "pause", "taxi-monthly", "0"]).await.unwrap();
    let d = store.read_deployment("taxi-monthly").await.unwrap().unwrap();
    assert!(!d.paused && !d.schedules[0].active && d.schedules[1].active);
    let e = hw(home.path(), &["deployment", "schedule", "pause", "taxi-monthly", "7"]).await.unwrap_err();
    assert!(e.to_string().contains("has 2 schedule(s)"), "{e}");
    hw(home.path(), &["deployment", "delete", "taxi-green"]).await.unwrap();
    let e = hw(home.path(), &["deployment", "delete", "taxi-green"]).await.unwrap_err();
    assert_eq!(e.to_string(), "no deployment named 'taxi-green'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_errors_name_the_file_and_field() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("headwater.yaml");
    std::fs::write(
        &file,
        "deployments:\n  - name: broken\n    flow: f\n    entrypoint: x\n    schedules:\n      - cron: \"0 5 1 *\"\n",
    )
    .unwrap();
    let e = hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap_err().to_string();
    assert!(e.contains("headwater.yaml: deployments[0] (broken).schedules[0]: invalid schedule '0 5 1 *'"), "{e}");
    std::fs::write(&file, "deployments:\n  - name: [unclosed\n").unwrap();
    let e = hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap_err().to_string();
    assert!(e.contains("headwater.yaml"), "{e}");
    // An entrypoint that is not there is reported, with the way out.
    std::fs::write(&file, "deployments:\n  - name: gone\n    flow: f\n    entrypoint: ./no-such-program\n").unwrap();
    let e = hw(home.path(), &["deploy", "--file", file.to_str().unwrap()]).await.unwrap_err().to_string();
    assert!(e.contains("cannot run its entrypoint") && e.contains("--no-check"), "{e}");
    hw(home.path(), &["deploy", "--no-check", "--file", file.to_str().unwrap()]).await.unwrap();
}
