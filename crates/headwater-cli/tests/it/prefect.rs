//! Prefect's own Python client (prefect 3.9.1 from PyPI, installed by
//! `scripts/prefect`) against `headwater server start`: a course-shaped
//! flow, unchanged, recorded in Headwater and read back with its CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use serde_json::Value;

use super::BIN;

pub(crate) const KEY: &str = "prefect-test-key";

/// The virtualenv's python with prefect 3.9.1; None (the test says it was
/// skipped) outside CI when `scripts/test` did not set it up.
fn prefect_python() -> Option<PathBuf> {
    super::test_tool("HEADWATER_TEST_PREFECT_PYTHON")
}

/// `headwater server start` on an ephemeral port, with an API key.
pub(crate) struct Server {
    process: Child,
    /// Kept open: the server writes its banner to it.
    _stdout: BufReader<ChildStdout>,
    pub(crate) api: String,
    home: tempfile::TempDir,
}

impl Server {
    /// `GET /metrics` with the key, over a plain socket (these tests are not async).
    fn scrape_metrics(&self) -> String {
        use std::io::{Read, Write};
        let host = self.api.trim_start_matches("http://").trim_end_matches("/api");
        let mut socket = std::net::TcpStream::connect(host).unwrap();
        write!(socket, "GET /metrics HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n\r\n").unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
    }

    pub(crate) fn start() -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), "0")
    }

    /// The server of `home`, on `port` ("0": any).
    fn start_in(home: tempfile::TempDir, port: &str) -> Server {
        Server::start_with(home, port, &[])
    }

    fn start_with(home: tempfile::TempDir, port: &str, env: &[(&str, &str)]) -> Server {
        Server::start_keyed(home, port, env, Some(KEY))
    }

    fn start_keyed(home: tempfile::TempDir, port: &str, env: &[(&str, &str)], key: Option<&str>) -> Server {
        let mut command = Command::new(BIN);
        match key {
            Some(k) => command.env("HEADWATER_API_KEY", k),
            None => command.env_remove("HEADWATER_API_KEY"),
        };
        let mut process = command
            .args(["server", "start", "--port", port])
            .envs(env.iter().copied())
            .env("HEADWATER_HOME", home.path())
            .env_remove("HEADWATER_API_URL")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(process.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let api = first.trim().rsplit(' ').next().unwrap().to_string();
        Server { process, _stdout: stdout, api, home }
    }

    fn prefect_url(&self) -> String {
        self.api.replace("/api", "/prefect/api")
    }

    /// The Headwater CLI against this server.
    fn hw(&self, args: &[&str]) -> Value {
        let o = Command::new(BIN)
            .args(args)
            .arg("--json")
            .env("HEADWATER_HOME", self.home.path())
            .env("HEADWATER_API_URL", &self.api)
            .env("HEADWATER_API_KEY", KEY)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn hw_text(&self, args: &[&str]) -> String {
        let o = Command::new(BIN)
            .args(args)
            .env("HEADWATER_HOME", self.home.path())
            .env("HEADWATER_API_URL", &self.api)
            .env("HEADWATER_API_KEY", KEY)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// How a Prefect process proves itself to the test server.
#[derive(Clone, Copy)]
enum Auth {
    /// No key at all (the server must refuse it).
    Without,
    /// `PREFECT_API_AUTH_STRING`: what Prefect's client sends a server of its
    /// own (not Prefect Cloud) on REST and on its event stream.
    SelfHosted,
    /// `PREFECT_API_KEY`: a bearer token, sent on REST only.
    Bearer,
}

/// `program` (Prefect's python or CLI) pointed at `server`, its home in
/// `prefect_home`, nothing of the developer's Prefect settings let in.
fn prefect_command(program: &Path, server: &Server, prefect_home: &Path, auth: Auth) -> Command {
    let mut c = Command::new(program);
    c.env("PREFECT_API_URL", server.prefect_url())
        .env("PREFECT_HOME", prefect_home)
        .env("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        .env("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")
        .env("COLUMNS", "200")
        .env_remove("PREFECT_PROFILE")
        .env_remove("PREFECT_API_KEY")
        .env_remove("PREFECT_API_AUTH_STRING");
    match auth {
        Auth::Without => {}
        Auth::SelfHosted => {
            c.env("PREFECT_API_AUTH_STRING", format!("course:{KEY}"));
        }
        Auth::Bearer => {
            c.env("PREFECT_API_KEY", KEY);
        }
    }
    c
}

/// Prefect's CLI beside the virtualenv's python.
fn prefect_cli(python: &Path) -> PathBuf {
    python.parent().unwrap().join("prefect")
}

/// Runs `script` with Prefect's client pointed at `server`.
fn python(
    python: &Path,
    server: &Server,
    prefect_home: &Path,
    auth: Auth,
    script: &Path,
    env: &[(&str, &Path)],
) -> Output {
    let mut c = prefect_command(python, server, prefect_home, auth);
    c.arg(script).envs(env.iter().copied());
    c.output().unwrap()
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/prefect").join(name)
}

fn names(states: &Value) -> Vec<&str> {
    states.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect()
}

fn task<'a>(inspection: &'a Value, task_name: &str) -> Vec<&'a Value> {
    inspection["task_runs"].as_array().unwrap().iter().filter(|t| t["task_name"] == task_name).collect()
}

/// The course's flow, run twice by Prefect's client: every task run with its
/// real state history, the cache hit on the second run, the subflow linked
/// to its parent through the wrapper task run, printed lines in the logs.
#[test]
fn prefect_flows_run_against_headwater() {
    let Some(py) = prefect_python() else { return };
    let server = Server::start();
    let prefect_home = tempfile::tempdir().unwrap();
    let fail_once = prefect_home.path().join("failed-once");
    let flow = script("course_flow.py");
    let env = [("HW_TEST_FAIL_ONCE", fail_once.as_path())];

    let refused = python(&py, &server, prefect_home.path(), Auth::Without, &flow, &env);
    assert!(!refused.status.success(), "without the key the server refuses the client");
    assert!(server.hw(&["flow-run", "ls"]).as_array().unwrap().is_empty(), "and nothing was recorded");

    for attempt in 1..=2 {
        let o = python(&py, &server, prefect_home.path(), Auth::SelfHosted, &flow, &env);
        assert!(
            o.status.success(),
            "run {attempt}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    let runs = server.hw(&["flow-run", "ls", "--flow", "course-etl"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    // Newest first.
    let (second, first) = (&runs[0], &runs[1]);
    for r in runs {
        assert_eq!(r["state"]["type"], "COMPLETED", "{r}");
        assert_eq!(r["run_count"], 1);
    }

    let one = server.hw(&["flow-run", "inspect", first["id"].as_str().unwrap()]);
    assert_eq!(names(&one["state_history"]), ["Pending", "Running", "Completed"]);
    let fetch = task(&one, "fetch");
    assert_eq!(fetch.len(), 1);
    assert_eq!(names(&fetch[0]["state_history"]), ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]);
    assert_eq!(fetch[0]["run_count"], 2);
    let clean = task(&one, "clean");
    assert_eq!(names(&clean[0]["state_history"]), ["Pending", "Running", "Completed"]);
    let reports = task(&one, "report");
    assert_eq!(reports.len(), 4, "three mapped and one submitted");
    assert!(reports.iter().all(|r| r["state"]["name"] == "Completed" && r["tags"][0] == "report"), "{reports:?}");

    // The subflow: its own run, a child of the first, with a wrapper task
    // run in the parent that ended as the child did.
    let children = one["subflow_runs"].as_array().unwrap();
    assert_eq!(children.len(), 1, "{children:?}");
    let child = &children[0];
    assert_eq!(
        (child["flow_name"].as_str(), child["state"]["type"].as_str()),
        (Some("course-child"), Some("COMPLETED"))
    );
    let wrapper = child["parent_task_run_id"].as_str().expect("linked to its wrapper task run");
    let wrapper = one["task_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == wrapper)
        .expect("the wrapper is a task run of the parent");
    assert_eq!(wrapper["state"]["type"], "COMPLETED", "the wrapper ends with its subflow's state: {wrapper}");
    let child_run = server.hw(&["flow-run", "inspect", child["id"].as_str().unwrap()]);
    assert_eq!(task(&child_run, "report").len(), 1);

    let two = server.hw(&["flow-run", "inspect", second["id"].as_str().unwrap()]);
    assert_eq!(names(&task(&two, "fetch")[0]["state_history"]), ["Pending", "Running", "Completed"]);
    let cached = task(&two, "clean");
    assert_eq!(names(&cached[0]["state_history"]), ["Pending", "Running", "Cached"], "the second run hits the cache");
    assert!(cached[0]["cache_expiration"].is_string(), "the cache's expiry is kept: {}", cached[0]);

    // Printed lines are logs of their task runs; the flow's own lines too.
    let logs = server.hw_text(&["flow-run", "logs", first["id"].as_str().unwrap()]);
    for line in ["rows: 1", "rows: 3", "mapped 6, submitted", "Finished in state Completed()"] {
        assert!(logs.contains(line), "{line:?} is not in the logs:\n{logs}");
    }
    let text = server.hw_text(&["flow-run", "inspect", first["id"].as_str().unwrap()]);
    assert!(text.contains("Pending → Running → AwaitingRetry → Retrying → Completed"), "{text}");

    // Prefect's runs count in the server's metrics like Headwater's own.
    let metrics = server.scrape_metrics();
    assert!(
        metrics.lines().any(|l| l == r#"headwater_flow_runs_finished_total{flow="course-etl",state="COMPLETED"} 2"#),
        "{metrics}"
    );
    let finished_tasks: u64 = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(r#"headwater_task_runs_finished_total{state="COMPLETED"} "#))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(finished_tasks >= 10, "task runs counted: {finished_tasks}\n{metrics}");
}

impl Server {
    /// The Headwater CLI, with `extra` arguments, its output checked.
    fn hw_ok(&self, args: &[&str]) -> Output {
        let o = Command::new(BIN)
            .args(args)
            .env("HEADWATER_HOME", self.home.path())
            .env("HEADWATER_API_URL", &self.api)
            .env("HEADWATER_API_KEY", KEY)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o
    }

    fn database(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for f in ["headwater.db", "headwater.db-wal"] {
            if let Ok(b) = std::fs::read(self.home.path().join(f)) {
                bytes.extend(b);
            }
        }
        bytes
    }
}

fn ok_output(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A `Secret` block, a custom block with a `SecretStr` and a Variable, saved
/// from Python and loaded in a flow; Headwater's CLI shows them masked, the
/// database never holds the secret in clear, and a secret block made with
/// Headwater's CLI loads in Prefect.
#[test]
fn prefect_blocks_and_variables_live_in_headwater() {
    let Some(py) = prefect_python() else { return };
    let server = Server::start();
    let prefect_home = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-Value-that-must-not-leak";
    let secret_file = prefect_home.path().join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    let script = script("blocks_flow.py");
    let run = |mode: &str| {
        let mut c = prefect_command(&py, &server, prefect_home.path(), Auth::SelfHosted);
        c.arg(&script).arg(mode).env("HW_TEST_SECRET", secret);
        c.output().unwrap()
    };
    ok_output(&run("save"), "saving the blocks");
    let loaded = ok_output(&run("load"), "loading them in a flow");
    assert!(loaded.contains("flow returned: taxi-lake yellow"), "{loaded}");

    let blocks = server.hw(&["block", "ls"]);
    let mut listed: Vec<(&str, &str)> = blocks
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["block_type"].as_str().unwrap()))
        .collect();
    listed.sort();
    assert_eq!(listed, [("gcp-creds", "secret"), ("zoom-bucket", "taxibucket")]);
    let masked = server.hw(&["block", "inspect", "zoom-bucket"]);
    assert_eq!(
        (masked["data"]["bucket"].as_str(), masked["data"]["token"].as_str()),
        (Some("taxi-lake"), Some("********"))
    );
    let revealed = server.hw(&["block", "inspect", "zoom-bucket", "--reveal"]);
    assert_eq!(revealed["data"]["token"], secret, "an authorised reveal opens it");
    assert!(!server.database().windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is sealed at rest");
    let variable = ok_output(&server.hw_ok(&["variable", "get", "taxi_color"]), "variable get");
    assert!(variable.contains("yellow"), "{variable}");

    // Masked to a read without include_secrets, through Prefect's API too.
    let listed = prefect_command(&prefect_cli(&py), &server, prefect_home.path(), Auth::Bearer)
        .args(["block", "inspect", "secret/gcp-creds"])
        .output()
        .unwrap();
    let shown = ok_output(&listed, "prefect block inspect");
    assert!(shown.contains("********") && !shown.contains(secret), "{shown}");

    // A secret block made with Headwater's CLI loads in Prefect.
    server.hw_ok(&["block", "create", "secret", "hw-made", "-f", &format!("value={secret}-too")]);
    let load = prefect_command(&py, &server, prefect_home.path(), Auth::Bearer)
        .args(["-c", "from prefect.blocks.system import Secret; print(Secret.load('hw-made').get())"])
        .output()
        .unwrap();
    assert_eq!(ok_output(&load, "Secret.load").trim(), format!("{secret}-too"));
}

/// The Prefect CLI commands of the course answer against Headwater, and
/// what they make is Headwater's.
#[test]
fn prefect_cli_commands_answer() {
    let Some(py) = prefect_python() else { return };
    let server = Server::start();
    let prefect_home = tempfile::tempdir().unwrap();
    let prefect = |args: &[&str]| {
        let o =
            prefect_command(&prefect_cli(&py), &server, prefect_home.path(), Auth::Bearer).args(args).output().unwrap();
        ok_output(&o, &format!("prefect {args:?}"))
    };
    prefect(&["work-pool", "create", "course-pool", "--type", "process"]);
    prefect(&["concurrency-limit", "create", "warehouse", "3"]);
    let pools = server.hw(&["work-pool", "ls"]);
    assert!(
        pools.as_array().unwrap().iter().any(|p| p["pool"]["name"] == "course-pool" && p["pool"]["kind"] == "process"),
        "{pools}"
    );
    let limits = server.hw(&["concurrency-limit", "ls"]);
    assert!(limits.as_array().unwrap().iter().any(|l| l["name"] == "warehouse" && l["limit"] == 3), "{limits}");
    assert!(prefect(&["work-pool", "ls"]).contains("course-pool"));
    assert!(prefect(&["concurrency-limit", "ls"]).contains("warehouse"));
    assert!(prefect(&["flow-run", "ls"]).contains("No flow runs found"));
    prefect(&["deployment", "ls"]);
    prefect(&["block", "ls"]);
    prefect(&["variable", "set", "taxi_color", "green"]);
    assert!(prefect(&["variable", "get", "taxi_color"]).contains("green"));
}

/// A server killed while a Prefect flow runs, and started again: the flow
/// finishes, and every task run of both halves is recorded once.
#[test]
fn a_server_restart_loses_no_task_run() {
    let Some(py) = prefect_python() else { return };
    let mut server = Server::start();
    let prefect_home = tempfile::tempdir().unwrap();
    let go = prefect_home.path().join("go");
    let mut flow = prefect_command(&py, &server, prefect_home.path(), Auth::SelfHosted)
        .arg(script("restart_flow.py"))
        .env("HW_TEST_GO", &go)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(flow.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("HALFWAY") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the flow ended before its halfway mark");
    }
    // Killed, not stopped: nothing gets a chance to finish.
    let port = server.api.rsplit(':').next().unwrap().trim_end_matches("/api").to_string();
    server.process.kill().unwrap();
    server.process.wait().unwrap();
    let home = std::mem::replace(&mut server.home, tempfile::tempdir().unwrap());
    drop(server);
    let server = Server::start_in(home, &port);
    std::fs::write(&go, "").unwrap();
    let status = flow.wait().unwrap();
    assert!(status.success(), "the flow finishes against the restarted server");

    let runs = server.hw(&["flow-run", "ls", "--flow", "survives-a-restart"]);
    let run = &runs[0];
    assert_eq!(run["state"]["type"], "COMPLETED", "{run}");
    let inspection = server.hw(&["flow-run", "inspect", run["id"].as_str().unwrap()]);
    let steps = task(&inspection, "step");
    assert_eq!(steps.len(), 20, "every task run recorded: {}", steps.len());
    for s in steps {
        assert_eq!(names(&s["state_history"]), ["Pending", "Running", "Completed"], "once each: {s}");
    }
}

/// A Prefect flow process killed with `kill -9` leaves no zombie: its run
/// and its running task run become CRASHED once its heartbeat is overdue
/// (here: Prefect's shortest interval, 30 s, and a 2 s timeout).
#[test]
fn a_killed_prefect_flow_is_marked_crashed() {
    let Some(py) = prefect_python() else { return };
    let server = Server::start_with(
        tempfile::tempdir().unwrap(),
        "0",
        &[("HEADWATER_PREFECT_HEARTBEAT_SECONDS", "30"), ("HEADWATER_HEARTBEAT_TIMEOUT_SECONDS", "2")],
    );
    let prefect_home = tempfile::tempdir().unwrap();
    let mut flow = prefect_command(&py, &server, prefect_home.path(), Auth::SelfHosted)
        .arg(script("crash_flow.py"))
        .env("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(flow.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("STARTED") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the flow ended before its task started");
    }
    // Let the task's Running event be stored (events go out in the background).
    std::thread::sleep(std::time::Duration::from_secs(1));
    flow.kill().unwrap(); // SIGKILL: nothing in the process gets to report.
    flow.wait().unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let run = loop {
        let runs = server.hw(&["flow-run", "ls", "--flow", "killed"]);
        let run = runs[0].clone();
        if run["state"]["type"] == "CRASHED" {
            break run;
        }
        assert_eq!(run["state"]["type"], "RUNNING", "running until its heartbeat is overdue: {run}");
        assert!(std::time::Instant::now() < deadline, "still not CRASHED: {run}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let inspection = server.hw(&["flow-run", "inspect", run["id"].as_str().unwrap()]);
    let task = task(&inspection, "forever");
    assert_eq!(task[0]["state"]["type"], "CRASHED", "its running task run crashed with it: {}", task[0]);
}

/// The course's pipeline in plain Prefect (`examples/prefect/etl_web_to_lake.py`):
/// a TLC-shaped CSV.gz served on loopback → pandas → Parquet in the lake
/// through a `LocalFileSystem` block made with Headwater's CLI; the row
/// counts in the run's logs. Run once directly and once deployed to a
/// process pool and run by Prefect's worker.
#[test]
fn the_course_pipeline_runs_unchanged() {
    let Some(py) = prefect_python() else { return };
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let (web, lake) = (work.path().join("web"), work.path().join("lake"));
    // 1,000 trips: every 10th without passengers (0 or empty).
    let generate = r#"
import sys, pandas as pd, numpy as np
n = 1000
pickup = pd.Timestamp("2021-01-01") + pd.to_timedelta(np.arange(n) * 60, unit="s")
passengers = pd.array([None if i % 20 == 0 else (0 if i % 10 == 0 else 1 + i % 3) for i in range(n)], dtype="Int64")
df = pd.DataFrame({"VendorID": 1, "tpep_pickup_datetime": pickup.strftime("%Y-%m-%d %H:%M:%S"),
                   "tpep_dropoff_datetime": (pickup + pd.Timedelta(minutes=7)).strftime("%Y-%m-%d %H:%M:%S"),
                   "passenger_count": passengers, "trip_distance": 1.5, "total_amount": 12.3})
df.to_csv(sys.argv[1], index=False, compression="gzip")
"#;
    std::fs::create_dir_all(web.join("yellow")).unwrap();
    for month in ["01", "02"] {
        let file = web.join(format!("yellow/yellow_tripdata_2021-{month}.csv.gz"));
        ok_output(&Command::new(&py).args(["-c", generate]).arg(&file).output().unwrap(), "generating a month");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut web_server = Command::new(&py)
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(&web)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    server.hw_ok(&["block", "create", "local-file-system", "taxi-lake", "-f", &format!("basepath={}", lake.display())]);

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/prefect/etl_web_to_lake.py");
    let mut attempts = 0;
    let o = loop {
        // The static server may still be starting: the flow's fetch retries too.
        let o = prefect_command(&py, &server, &work.path().join("prefect-home"), Auth::SelfHosted)
            .arg(&example)
            .args(["--base-url", &format!("http://127.0.0.1:{port}")])
            .output()
            .unwrap();
        attempts += 1;
        if o.status.success() || attempts == 3 {
            break o;
        }
    };
    ok_output(&o, "the course's pipeline");

    // The same flow deployed to a process pool and run by Prefect's worker,
    // as the README shows.
    let command =
        |program: &Path| prefect_command(program, &server, &work.path().join("prefect-home"), Auth::SelfHosted);
    let prefect = |args: &[&str]| ok_output(&command(&prefect_cli(&py)).args(args).output().unwrap(), "prefect");
    prefect(&["work-pool", "create", "taxi", "--type", "process"]);
    ok_output(&command(&py).arg(&example).args(["--deploy", "taxi"]).output().unwrap(), "deploying the pipeline");
    let mut worker = command(&prefect_cli(&py));
    worker.args(["worker", "start", "--pool", "taxi"]).stdout(Stdio::null()).stderr(Stdio::null());
    let _worker = KillOnDrop(worker.spawn().unwrap());
    let base_url = format!("base_url=http://127.0.0.1:{port}");
    prefect(&["deployment", "run", "etl-web-to-lake/taxi-month", "-p", "month=2", "-p", &base_url]);
    let runs = server.completed_runs("etl-web-to-lake", 2);
    let _ = web_server.kill();
    let _ = web_server.wait();

    for month in ["01", "02"] {
        let parquet = lake.join(format!("data/yellow/yellow_tripdata_2021-{month}.parquet"));
        let rows = Command::new(&py)
            .args(["-c", "import sys, pyarrow.parquet as pq; print(pq.read_metadata(sys.argv[1]).num_rows)"])
            .arg(&parquet)
            .output()
            .unwrap();
        assert_eq!(ok_output(&rows, "reading the lake").trim(), "900", "the trips with passengers, in the lake");
    }
    let deployed = runs.iter().find(|r| r["deployment_id"].is_string()).expect("the worker's run");
    assert_eq!(deployed["work_pool"], "taxi", "{deployed}");
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        assert_eq!(server.log_line(id, "rows: "), "rows: 900 kept, 100 without passengers dropped");
        assert!(server.log_line(id, "wrote ").starts_with("wrote data/yellow/yellow_tripdata_2021-0"), "{run}");
    }
}

/// A tag limit made with Headwater's CLI holds Prefect's tasks: four
/// submitted tasks tagged `warehouse` with a limit of 1 never overlap, and
/// every slot is free afterwards.
#[test]
fn tag_limits_hold_prefect_tasks() {
    let Some(py) = prefect_python() else { return };
    let server = Server::start();
    server.hw_ok(&["concurrency-limit", "create", "warehouse", "1"]);
    let prefect_home = tempfile::tempdir().unwrap();
    let o = python(&py, &server, prefect_home.path(), Auth::SelfHosted, &script("limited_flow.py"), &[]);
    ok_output(&o, "the limited flow");

    let runs = server.hw(&["flow-run", "ls", "--flow", "limited"]);
    let inspection = server.hw(&["flow-run", "inspect", runs[0]["id"].as_str().unwrap()]);
    let mut spans: Vec<(String, String)> = task(&inspection, "load")
        .iter()
        .map(|t| (t["start_time"].as_str().unwrap().to_string(), t["end_time"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(spans.len(), 4);
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "two tasks of a limit of 1 overlapped: {pair:?}");
    }
    let limits = server.hw(&["concurrency-limit", "ls"]);
    assert_eq!(limits[0]["active_slots"], 0, "every lease released: {limits}");
}

/// The web UI draws a Prefect run like a native one: the run's page has a
/// timeline bar for each task run and the subflow, the retried task with
/// its two attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_draws_a_prefect_runs_timeline() {
    let Some(py) = prefect_python() else { return };
    let Some(b) = headwater_test_support::Browser::start().await else { return };
    // No key: the UI's page then needs no sign-in.
    let server = Server::start_keyed(tempfile::tempdir().unwrap(), "0", &[], None);
    let prefect_home = tempfile::tempdir().unwrap();
    let fail_once = prefect_home.path().join("failed-once");
    let o = python(
        &py,
        &server,
        prefect_home.path(),
        Auth::Without,
        &script("course_flow.py"),
        &[("HW_TEST_FAIL_ONCE", fail_once.as_path())],
    );
    ok_output(&o, "the course's flow");
    let runs = server.hw(&["flow-run", "ls", "--flow", "course-etl"]);
    let id = runs[0]["id"].as_str().unwrap().to_string();

    let ui = server.api.trim_end_matches("/api").to_string();
    b.goto(&format!("{ui}/runs/{id}")).await;
    let rows = b
        .wait(
            "the timeline",
            "document.querySelectorAll('.g-row').length >= 8 && document.querySelectorAll('.g-row').length",
        )
        .await;
    assert_eq!(rows, 8, "six task runs, the subflow's wrapper task run and the subflow run");
    let labels =
        b.js("return [...document.querySelectorAll('.g-row')].map(r => r.getAttribute('aria-label')).join('|')").await;
    let labels = labels.as_str().unwrap();
    assert!(
        labels.split('|').any(|l| l.starts_with("fetch-") && l.contains("Completed") && l.contains("2 attempts")),
        "{labels}"
    );
    assert!(labels.contains("course-child"), "the subflow is on the timeline: {labels}");
    b.screenshot("prefect-run").await;
    b.close().await;
}

/// The course's deployment path: a process work pool made with Prefect's
/// CLI, `.from_source(...).deploy(...)` and `prefect deploy` from a
/// prefect.yaml, `prefect worker start`; runs started with `prefect
/// deployment run F/D -p x=21` and `headwater deployment run F/D -p x=5`,
/// all run by Prefect's worker.
#[test]
fn prefects_worker_runs_deployments_started_by_either_cli() {
    let Some(py) = prefect_python() else { return };
    let server = Server::start();
    let prefect_home = tempfile::tempdir().unwrap();
    let command = |program: &Path| prefect_command(program, &server, prefect_home.path(), Auth::SelfHosted);
    let prefect = |args: &[&str]| {
        ok_output(&command(&prefect_cli(&py)).args(args).output().unwrap(), &format!("prefect {args:?}"))
    };
    prefect(&["work-pool", "create", "course-pool", "--type", "process"]);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/prefect");
    let deploy = command(&py).arg(source.join("deploy_flow.py")).arg(&source).arg("course-pool").output().unwrap();
    ok_output(&deploy, "deploying");
    assert!(prefect(&["deployment", "ls"]).contains("deployed/dep"));

    // `prefect deploy` from a project's prefect.yaml, as the course ends up doing.
    let project = tempfile::tempdir().unwrap();
    std::fs::copy(source.join("deploy_flow.py"), project.path().join("deploy_flow.py")).unwrap();
    let yaml = format!(
        "name: course\nprefect-version: 3.9.1\npull:\n- prefect.deployments.steps.set_working_directory:\n    \
         directory: {}\ndeployments:\n- name: from-yaml\n  entrypoint: deploy_flow.py:deployed\n  \
         parameters:\n    x: 7\n  work_pool:\n    name: course-pool\n",
        project.path().display()
    );
    std::fs::write(project.path().join("prefect.yaml"), yaml).unwrap();
    let deployed = command(&prefect_cli(&py))
        .args(["--no-prompt", "deploy", "--all"])
        .current_dir(project.path())
        .output()
        .unwrap();
    ok_output(&deployed, "prefect deploy");
    assert!(prefect(&["deployment", "ls"]).contains("deployed/from-yaml"));

    let mut worker = command(&prefect_cli(&py));
    worker.args(["worker", "start", "--pool", "course-pool"]).stdout(Stdio::null()).stderr(Stdio::null());
    // Stopped however the test ends.
    let _worker = KillOnDrop(worker.spawn().unwrap());
    prefect(&["deployment", "run", "deployed/dep", "-p", "x=21"]);
    server.hw_ok(&["deployment", "run", "deployed/dep", "-p", "x=5"]);
    prefect(&["deployment", "run", "deployed/from-yaml"]);

    let runs = server.completed_runs("deployed", 3);
    let mut got: Vec<String> = runs
        .iter()
        .map(|r| {
            assert!(r["deployment_id"].is_string() && r["work_pool"] == "course-pool", "{r}");
            server.log_line(r["id"].as_str().unwrap(), "got ")
        })
        .collect();
    got.sort();
    assert_eq!(got, ["got 10", "got 14", "got 42"], "each run with its own parameters");

    // A cron schedule given to `.deploy()` creates runs (no worker needed).
    let scheduled = command(&py)
        .arg(source.join("deploy_flow.py"))
        .arg(&source)
        .arg("course-pool")
        .arg("* * * * *")
        .output()
        .unwrap();
    ok_output(&scheduled, "deploying on a schedule");
    let shown = server.hw(&["deployment", "inspect", "deployed/every-minute"]);
    assert_eq!(shown["schedules"][0]["schedule"]["cron"], "* * * * *", "{shown}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let runs = server.hw(&["flow-run", "ls", "--flow", "deployed", "--state", "scheduled"]);
        if !runs.as_array().unwrap().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the schedule created no run");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // `headwater flow-run cancel` stops a run Prefect's worker started.
    let long = command(&py).arg(source.join("long_flow.py")).arg(&source).arg("course-pool").output().unwrap();
    ok_output(&long, "deploying the long flow");
    server.hw_ok(&["deployment", "run", "long/until-cancelled"]);
    let state_of_long = || {
        let runs = server.hw(&["flow-run", "ls", "--flow", "long"]);
        (
            runs[0]["id"].as_str().unwrap_or_default().to_string(),
            runs[0]["state"]["type"].as_str().unwrap_or_default().to_string(),
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let id = loop {
        let (id, state) = state_of_long();
        if state == "RUNNING" {
            break id;
        }
        assert!(std::time::Instant::now() < deadline, "the long run never started: {state}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    server.hw_ok(&["flow-run", "cancel", &id]);
    loop {
        let (_, state) = state_of_long();
        if state == "CANCELLED" {
            break;
        }
        assert!(matches!(state.as_str(), "CANCELLING" | "RUNNING"), "{state}");
        assert!(std::time::Instant::now() < deadline, "still {state}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// `flow.serve()`: the process that serves a flow runs the runs of its
/// deployment, started with either CLI, and pauses it when stopped.
#[test]
fn a_served_flow_runs_its_deployments_runs() {
    let Some(py) = prefect_python() else { return };
    let server = Server::start();
    let prefect_home = tempfile::tempdir().unwrap();
    let command = |program: &Path| prefect_command(program, &server, prefect_home.path(), Auth::SelfHosted);
    let mut serve = command(&py);
    serve.arg(script("serve_flow.py")).stdout(Stdio::null()).stderr(Stdio::null());
    let serving = KillOnDrop(serve.spawn().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !server.hw_text(&["deployment", "ls"]).contains("served/here") {
        assert!(std::time::Instant::now() < deadline, "serve() registered no deployment");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    ok_output(
        &command(&prefect_cli(&py)).args(["deployment", "run", "served/here", "-p", "x=2"]).output().unwrap(),
        "prefect deployment run",
    );
    server.hw_ok(&["deployment", "run", "served/here", "-p", "x=4"]);
    let mut got: Vec<String> = server
        .completed_runs("served", 2)
        .iter()
        .map(|r| server.log_line(r["id"].as_str().unwrap(), "served "))
        .collect();
    got.sort();
    assert_eq!(got, ["served 12", "served 6"]);

    // Stopped the way a terminal or a service manager stops it.
    let pid = serving.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut serving = serving;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while serving.0.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "serve() did not stop on SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(server.hw(&["deployment", "inspect", "served/here"])["paused"], true, "paused on exit");
}

impl Server {
    /// Waits for `n` COMPLETED runs of `flow` and returns them.
    fn completed_runs(&self, flow: &str, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let runs = self.hw(&["flow-run", "ls", "--flow", flow]);
            let done: Vec<Value> =
                runs.as_array().unwrap().iter().filter(|r| r["state"]["type"] == "COMPLETED").cloned().collect();
            if done.len() >= n {
                return done;
            }
            assert!(std::time::Instant::now() < deadline, "{n} runs of {flow} did not complete: {runs}");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// The message of the first log line of a run that contains `needle`,
    /// waited for: a flow process sends its last lines as it exits, after
    /// its final state.
    fn log_line(&self, run: &str, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let logs = self.hw_text(&["flow-run", "logs", run]);
            if let Some(l) = logs.lines().find(|l| l.contains(needle)) {
                return l.rsplit(" - ").next().unwrap().to_string();
            }
            assert!(std::time::Instant::now() < deadline, "no {needle:?} line in the logs:\n{logs}");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
