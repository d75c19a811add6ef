//! The `headwater` binary against a home filled by real flow runs.

use std::path::Path;
use std::process::{Command, Output};

use headwater::prelude::*;
use serde_json::Value;

mod access;
mod automations;
mod db;
mod openapi;
mod prefect;

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

/// A tool `scripts/test` sets up and names in `var` (prefect's python,
/// schemathesis); None (the test says it was skipped) outside CI when it did
/// not. CI never skips.
fn test_tool(var: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os(var) {
        Some(p) => Some(p.into()),
        None if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set (scripts/test sets it up); CI does not skip these tests")
        }
        None => {
            eprintln!("skipped: {var} is not set (run ./scripts/test)");
            None
        }
    }
}

fn hw(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("HEADWATER_HOME", home)
        .env_remove("HEADWATER_API_URL")
        .env_remove("HEADWATER_PROFILE")
        .output()
        .unwrap()
}

fn ok(home: &Path, args: &[&str]) -> String {
    let o = hw(home, args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn json(home: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(home, args)).unwrap()
}

#[task(retries = 1, retry_delay = 0)]
async fn load_month(month: u32) -> Result<u64> {
    info!("loading month {month}");
    if month == 13 {
        bail!("there is no month 13");
    }
    Ok(month as u64 * 100)
}

#[flow(name = "cli-child", run_name = "month-{month}")]
async fn child(month: u32) -> Result<u64> {
    load_month(month).await
}

#[flow(name = "cli-parent")]
async fn parent(months: Vec<u32>) -> Result<u64> {
    let mut total = 0;
    for m in months {
        total += child(m).await?;
    }
    Ok(total)
}

async fn fill(home: &Path) {
    let engine = headwater::Engine::with_home(home).unwrap();
    engine.scope(parent(vec![1, 2])).await.unwrap();
    engine.scope(child(13)).await.unwrap_err();
}

#[tokio::test]
async fn lists_inspects_and_reads_logs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    fill(home).await;

    let flows = json(home, &["flow", "ls", "--json"]);
    let names: Vec<_> = flows.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cli-child", "cli-parent"]);
    assert!(ok(home, &["flow", "ls"]).contains("cli-parent"));

    let runs = json(home, &["flow-run", "ls", "--json"]);
    assert_eq!(runs.as_array().unwrap().len(), 4);
    let failed = json(home, &["flow-run", "ls", "--state", "failed", "--json"]);
    assert_eq!(failed[0]["name"], "month-13");
    assert_eq!(failed[0]["state"]["message"], "there is no month 13");
    let limited = json(home, &["flow-run", "ls", "--limit", "1", "--json"]);
    assert_eq!(limited.as_array().unwrap().len(), 1);
    let of_flow = json(home, &["flow-run", "ls", "--flow", "cli-parent", "--json"]);
    assert_eq!(of_flow.as_array().unwrap().len(), 1);
    let table = ok(home, &["flow-run", "ls"]);
    assert!(table.contains("month-13") && table.contains("Failed"), "{table}");

    // Inspect by name, with history, task runs and subflows.
    let parent_id = of_flow[0]["id"].as_str().unwrap().to_string();
    let detail = json(home, &["flow-run", "inspect", &parent_id, "--json"]);
    assert_eq!(detail["subflow_runs"].as_array().unwrap().len(), 2);
    let shown = ok(home, &["flow-run", "inspect", "month-13"]);
    assert!(shown.contains("AwaitingRetry") || shown.contains("Failed"), "{shown}");
    assert!(shown.contains("load_month-0"), "{shown}");
    let by_prefix = json(home, &["flow-run", "inspect", &parent_id[..30], "--json"]);
    assert_eq!(by_prefix["id"], parent_id.as_str());

    let tasks = json(home, &["task-run", "ls", "--flow-run", "month-13", "--json"]);
    assert_eq!(tasks[0]["run_count"], 2);
    assert_eq!(tasks[0]["state"]["name"], "Failed");

    let logs = ok(home, &["flow-run", "logs", "month-13"]);
    assert!(logs.contains("Task run 'load_month-0' - loading month 13"), "{logs}");
    assert!(logs.contains("ERROR"), "{logs}");
    let errors = ok(home, &["flow-run", "logs", "month-13", "--level", "error"]);
    assert!(!errors.contains("INFO"), "{errors}");
    // --follow returns by itself once the run is final.
    let followed = ok(home, &["flow-run", "logs", "month-2", "--follow"]);
    assert!(followed.contains("loading month 2"));

    // Only a run that has not started pauses, only a paused one resumes.
    for (verb, why) in
        [("pause", "only a run that has not started can be paused"), ("resume", "only a paused run can be resumed")]
    {
        let refused = hw(home, &["flow-run", verb, "month-2"]);
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(said.trim(), format!("error: flow run 'month-2' is COMPLETED: {why}"));
    }

    let missing = hw(home, &["flow-run", "inspect", "no-such-run"]);
    assert!(!missing.status.success());
    assert_eq!(String::from_utf8_lossy(&missing.stderr).trim(), "error: no flow run matches 'no-such-run'");
}

#[test]
fn config_and_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    ok(home, &["config", "set", "HEADWATER_LOGGING_LEVEL=DEBUG"]);
    let view = ok(home, &["config", "view", "--show-sources"]);
    assert!(view.contains("HEADWATER_LOGGING_LEVEL = DEBUG  (from profile)"), "{view}");
    ok(home, &["profile", "create", "prod"]);
    ok(home, &["profile", "use", "prod"]);
    assert!(ok(home, &["profile", "ls"]).contains("* prod"));
    let view = ok(home, &["config", "view"]);
    assert!(view.contains("HEADWATER_LOGGING_LEVEL = INFO"), "prod starts empty: {view}");
    let bad = hw(home, &["config", "set", "HEADWATER_API_URL=localhost"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value for HEADWATER_API_URL"));
    let unknown = hw(home, &["config", "set", "HEADWATER_NOPE=1"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown setting 'HEADWATER_NOPE'"));
    // Flags beat the environment and the profile.
    let view = ok(home, &["--profile", "default", "config", "view"]);
    assert!(view.contains("HEADWATER_LOGGING_LEVEL = DEBUG"), "{view}");
    let deleted = hw(home, &["profile", "delete", "prod"]);
    assert!(!deleted.status.success(), "the active profile cannot be deleted");
    ok(home, &["profile", "use", "default"]);
    ok(home, &["profile", "delete", "prod"]);
    assert!(ok(home, &["version"]).contains("(embedded)"));
}

/// `headwater server start` as a real process: runs recorded embedded
/// before show up, flows report to it, the CLI reads through it, and the
/// API key is enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_start_serves_runs_to_the_cli() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    fill(home).await; // embedded runs, before the server exists
    let mut server = Command::new(BIN)
        .args(["server", "start", "--port", "0"])
        .env("HEADWATER_HOME", home)
        .env("HEADWATER_API_KEY", "s3cret-key")
        .env_remove("HEADWATER_API_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    // Kept open until the end: the server writes its banner to it.
    let mut banner = BufReader::new(server.stdout.take().unwrap());
    banner.read_line(&mut first).unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/api"), "{first}");

    let client_home = tempfile::tempdir().unwrap();
    let engine = headwater::Engine::with_settings(
        client_home.path(),
        &[("HEADWATER_API_URL", &url), ("HEADWATER_API_KEY", "s3cret-key")],
    )
    .unwrap();
    engine.scope(child(42)).await.unwrap();

    let via_api = |args: &[&str], key: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(args).env("HEADWATER_HOME", client_home.path()).env("HEADWATER_API_URL", &url);
        match key {
            Some(k) => c.env("HEADWATER_API_KEY", k),
            None => c.env_remove("HEADWATER_API_KEY"),
        };
        c.output().unwrap()
    };
    let o = via_api(&["flow-run", "ls", "--json"], Some("s3cret-key"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let runs: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<_> = runs.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 5, "4 embedded runs and 1 reported to the server: {names:?}");
    assert!(names.contains(&"month-42") && names.contains(&"month-13"));
    let logs = via_api(&["flow-run", "logs", "month-42"], Some("s3cret-key"));
    assert!(String::from_utf8_lossy(&logs.stdout).contains("loading month 42"));

    let refused = via_api(&["flow-run", "ls"], None);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("requires an API key") && err.contains("HEADWATER_API_KEY"), "{err}");

    let _ = Command::new("kill").args(["-INT", &server.id().to_string()]).status();
    let status = server.wait().unwrap();
    assert!(status.success(), "Ctrl-C stops the server cleanly: {status:?}");
}

/// A flow that uses a bucket's credentials and, carelessly, logs them.
#[flow(name = "leaky")]
async fn leaky() -> Result<String> {
    use headwater::blocks::{BlockExt, S3Bucket};
    let bucket = S3Bucket::load("taxi-lake").await?;
    let creds = bucket.credentials.context("the bucket names its credentials")?;
    let secret = creds.aws_secret_access_key.context("a secret key")?;
    info!("connecting with {}", secret.reveal());
    Ok(bucket.bucket_name)
}

#[flow(name = "leaky-failure")]
async fn leaky_failure() -> Result<()> {
    use headwater::blocks::{BlockExt, PostgresConnection};
    let pg = PostgresConnection::load("warehouse").await?;
    bail!("cannot connect to {}", pg.url())
}

/// Secrets never show: not in the CLI's output, not in the API's answers
/// unless revealed, not in run logs or state messages, not in the database
/// file. Blocks name other blocks, and flows load them typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_keep_their_secrets() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    const PASSWORD: &str = "pg-pa55word-42";
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let types = ok(home, &["block", "types"]);
    assert!(types.contains("s3-bucket") && types.contains("postgres-connection") && types.contains("slack-webhook"));

    let create = Command::new(BIN)
        .args(["block", "create", "aws-credentials", "aws-prod", "-f", "aws_access_key_id=AKIAEXAMPLE"])
        .args(["-f", "aws_secret_access_key=env:HW_TEST_AWS_SECRET", "-f", "region_name=eu-west-1"])
        .env("HEADWATER_HOME", home)
        .env("HW_TEST_AWS_SECRET", SECRET)
        .env_remove("HEADWATER_API_URL")
        .output()
        .unwrap();
    assert!(create.status.success(), "{}", String::from_utf8_lossy(&create.stderr));
    let shown = String::from_utf8_lossy(&create.stdout);
    assert!(shown.contains("********") && !shown.contains(SECRET), "{shown}");
    ok(home, &["block", "create", "s3-bucket", "taxi-lake", "-f", "bucket_name=taxi", "-f", "credentials=@aws-prod"]);
    let mut stdin_create = Command::new(BIN)
        .args(["block", "create", "postgres-connection", "warehouse", "-f", "host=db.internal", "-f", "database=taxi"])
        .args(["-f", "username=etl", "-f", "password=-"])
        .env("HEADWATER_HOME", home)
        .env_remove("HEADWATER_API_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut stdin_create.stdin.take().unwrap(), format!("{PASSWORD}\n").as_bytes()).unwrap();
    assert!(stdin_create.wait().unwrap().success());

    let bad = hw(home, &["block", "create", "s3-bucket", "bad", "-f", "bukket=x"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("bukket: unknown field"), "{err}");
    let bad = hw(home, &["block", "create", "s3-bucket", "bad", "-f", "bucket_name=x", "-f", "credentials=@nope"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("'@nope' names no block"));

    let listed = ok(home, &["block", "ls", "--json"]);
    let inspected = ok(home, &["block", "inspect", "aws-prod"]);
    for out in [&listed, &inspected] {
        assert!(!out.contains(SECRET) && !out.contains(PASSWORD), "{out}");
    }
    assert!(inspected.contains("********"));
    assert!(ok(home, &["block", "inspect", "aws-prod", "--reveal"]).contains(SECRET), "an explicit reveal shows it");

    // Flows load typed blocks (the bucket's credentials by reference); what
    // they log or fail with never shows the secrets.
    let engine = headwater::Engine::with_home(home).unwrap();
    assert_eq!(engine.scope(leaky()).await.unwrap(), "taxi");
    let e = engine.scope(leaky_failure()).await.unwrap_err();
    assert!(e.to_string().contains(PASSWORD), "the caller still gets the real error");
    engine.flush().await.unwrap();
    drop(engine);
    let logs = ok(home, &["flow-run", "logs", &run_id(home, "leaky")]);
    assert!(logs.contains("connecting with ********") && !logs.contains(SECRET), "{logs}");
    let failed = ok(home, &["flow-run", "inspect", &run_id(home, "leaky-failure")]);
    assert!(
        failed.contains("cannot connect to postgres://etl:********@db.internal") && !failed.contains(PASSWORD),
        "{failed}"
    );

    // At rest: sealed in the database, the key kept apart from it.
    for entry in std::fs::read_dir(home).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("headwater.db") {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(SECRET) && !text.contains(PASSWORD), "{} holds a secret in clear", path.display());
        }
    }
    assert!(home.join("secret.key").exists());

    // Through the server: masked, unless revealed with the API key.
    let mut server = Command::new(BIN)
        .args(["server", "start", "--port", "0"])
        .env("HEADWATER_HOME", home)
        .env("HEADWATER_API_KEY", "admin-key")
        .env_remove("HEADWATER_API_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    banner.read_line(&mut first).unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    headwater_client::install_tls_provider();
    let http = reqwest::Client::new();
    let get = |path: &str, key: Option<&str>| {
        let mut r = http.get(format!("{url}{path}"));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let masked = get("/blocks", Some("admin-key")).await.unwrap().text().await.unwrap();
    assert!(masked.contains("taxi-lake") && !masked.contains(SECRET) && !masked.contains(PASSWORD), "{masked}");
    let one = get("/blocks/aws-prod", Some("admin-key")).await.unwrap().text().await.unwrap();
    assert!(!one.contains(SECRET));
    let refused = get("/blocks/aws-prod?reveal=true", None).await.unwrap();
    assert_eq!(refused.status(), 401);
    let revealed = get("/blocks/aws-prod?reveal=true", Some("admin-key")).await.unwrap().text().await.unwrap();
    assert!(revealed.contains(SECRET));
    let _ = Command::new("kill").args(["-INT", &server.id().to_string()]).status();
    server.wait().unwrap();
}

fn run_id(home: &Path, flow: &str) -> String {
    let runs = json(home, &["flow-run", "ls", "--json", "--flow", flow]);
    runs[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn concurrency_limits_from_the_command_line() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    assert!(ok(h, &["concurrency-limit", "create", "extract", "3"]).contains("at most 3 at once"));
    assert!(ok(h, &["concurrency-limit", "create", "tlc-api", "10", "--slot-decay-per-second", "2"])
        .contains("freeing 2 per second"));
    let ls = ok(h, &["concurrency-limit", "ls"]);
    assert!(ls.contains("extract") && ls.contains("tlc-api"), "{ls}");
    let listed: serde_json::Value = serde_json::from_str(&ok(h, &["concurrency-limit", "ls", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let one: serde_json::Value = serde_json::from_str(&ok(h, &["concurrency-limit", "inspect", "extract"])).unwrap();
    assert_eq!((one["limit"].as_u64(), one["active_slots"].as_u64()), (Some(3), Some(0)));
    assert!(ok(h, &["concurrency-limit", "reset", "extract"]).contains("Freed 0 slot(s)"));
    ok(h, &["concurrency-limit", "create", "extract", "5"]);
    assert!(ok(h, &["concurrency-limit", "inspect", "extract"]).contains("\"limit\": 5"));
    ok(h, &["concurrency-limit", "delete", "extract"]);
    let gone = hw(h, &["concurrency-limit", "inspect", "extract"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no concurrency limit named 'extract'"));
    let bad = hw(h, &["concurrency-limit", "create", "x", "1", "--slot-decay-per-second", "0"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be a positive number"));
}
