//! The worker: takes its pool's due runs and runs each as a process or a
//! container, copies their output into the runs' logs with secrets masked,
//! enforces cancellation, and records crashes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use headwater_config::Settings;

use headwater_core::{Deployment, FlowRun, Heartbeat, LogLevel, LogRecord, PullStep, State};

use crate::claims::{claim_span, Claims};
use crate::docker::{Docker, DockerError, JobSpec};
use headwater_store::{record_crash, record_flow_run_state, Store, StoreError, WriteBatch};
use tokio::process::{Child, Command};

/// What a worker does: which pool and queues it serves, how much at once,
/// and when it stops.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The work pool to take runs from.
    pub pool: String,
    /// Take runs only from these queues of the pool (empty: every queue, by priority).
    pub queues: Vec<String>,
    /// At most this many runs at once.
    pub limit: usize,
    /// Stop after starting this many runs (and waiting for them).
    pub max_runs: Option<usize>,
    /// How often to look for due runs.
    pub poll: Duration,
    /// Stop once nothing is due and nothing is running (drain the pool).
    pub exit_when_idle: bool,
    /// This worker's name (default: host and process id).
    pub name: Option<String>,
    /// A run asked to cancel whose process has not stopped after this long is killed.
    pub cancel_grace: Duration,
}

/// Why a worker stopped, or could not do what a run needed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("deployment '{deployment}' cannot run in its Docker pool")]
    NotAContainer {
        deployment: String,
        #[source]
        source: DockerError,
    },
    #[error("image '{0}' is not on this Docker engine and its pull_policy is never")]
    ImageMissing(String),
    #[error("cannot check whether a flow process has ended")]
    Wait(#[source] std::io::Error),
    #[error("a claimed run disappeared")]
    RunGone,
}

type Result<T, E = WorkerError> = std::result::Result<T, E>;

/// An error with its causes, `: `-separated (what `{:#}` shows for anyhow's
/// errors): the message recorded on a crashed run must say why.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // A message that already ends with its cause's text says it once.
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// What executes a claimed run.
enum Job {
    Process(Child),
    /// The task driving the container; the container's id once created.
    Container {
        id: Arc<std::sync::Mutex<Option<String>>>,
        task: tokio::task::JoinHandle<Result<i64>>,
        docker: Docker,
    },
}

/// How a job ended.
enum Ended {
    Exited(String),
    Failed(String),
}

impl Job {
    async fn poll_end(&mut self) -> Result<Option<Ended>> {
        match self {
            Job::Process(child) => {
                Ok(child.try_wait().map_err(WorkerError::Wait)?.map(|s| Ended::Exited(s.to_string())))
            }
            Job::Container { task, .. } if task.is_finished() => Ok(Some(match task.await {
                Ok(Ok(code)) => Ended::Exited(format!("container exit code: {code}")),
                Ok(Err(e)) => Ended::Failed(chain(&e)),
                Err(e) => Ended::Failed(format!("the container task failed: {e}")),
            })),
            Job::Container { .. } => Ok(None),
        }
    }

    async fn kill(&mut self) {
        match self {
            Job::Process(child) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            Job::Container { id, docker, .. } => {
                let known = id.lock().ok().and_then(|i| i.clone());
                if let Some(id) = known {
                    let _ = docker.kill(&id).await;
                }
            }
        }
    }
}

struct Running {
    run: FlowRun,
    job: Job,
    /// The folder the pull steps filled, removed when the run is over.
    scratch: Option<std::path::PathBuf>,
    /// The tasks copying its output into the run's logs.
    output: Vec<tokio::task::JoinHandle<()>>,
}

/// Where the flow processes must record: the worker's own store.
fn child_settings(settings: &Settings) -> Vec<(&'static str, String)> {
    let mut env = vec![("HEADWATER_HOME", settings.home.display().to_string())];
    for key in ["HEADWATER_API_URL", "HEADWATER_API_KEY", "HEADWATER_DATABASE_URL", "HEADWATER_RESULT_STORAGE"] {
        if let Some(v) = settings.get(key) {
            env.push((key, v.to_string()));
        }
    }
    env
}

/// Runs the worker until its options say to stop, or Ctrl-C (which stops
/// taking runs and waits for the ones in progress).
pub async fn start(args: WorkerOptions, store: Arc<dyn Store>, settings: &Settings) -> Result<()> {
    let store_handle = store.clone();
    let store = store.as_ref();
    let inherited = child_settings(settings);
    let worker_name = args.name.clone().unwrap_or_else(|| {
        let host =
            std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    // Like Prefect, a worker creates its pool if nobody has yet.
    let kind = match store.read_work_pool(&args.pool).await? {
        Some(p) => p.kind,
        None => {
            let pool = headwater_core::WorkPool::new(&args.pool, headwater_core::WorkPoolKind::Process, Utc::now());
            store.apply_work_pool(&pool).await?;
            pool.kind
        }
    };
    let docker = match kind {
        headwater_core::WorkPoolKind::Docker => Some(Docker::from_env()?),
        headwater_core::WorkPoolKind::Process => None,
    };
    let mut last_beat: Option<std::time::Instant> = None;
    let poll = args.poll.max(Duration::from_millis(10));
    let queues = if args.queues.is_empty() { "all queues".to_string() } else { args.queues.join(", ") };
    println!("Worker started on pool '{}' ({queues}; at most {} at once)", args.pool, args.limit.max(1));
    let mut running: Vec<Running> = Vec::new();
    let mut started = 0usize;
    let mut stopping = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // A flow process that exits frees room at once: the rest below ends on
    // its SIGCHLD rather than at the next poll.
    let mut child_exits = child_exits();
    loop {
        // Finished processes: a run they left unfinished crashed.
        let mut still = Vec::new();
        for mut r in running.drain(..) {
            match r.job.poll_end().await? {
                Some(ended) => {
                    // Everything it printed is recorded before the run is judged.
                    for h in r.output.drain(..) {
                        let _ = h.await;
                    }
                    if let Some(dir) = &r.scratch {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    let judged = match ended {
                        Ended::Exited(status) => finish(store, &r.run, &status).await,
                        Ended::Failed(why) => crash(store, &r.run, &why).await,
                    };
                    // If this cannot be recorded now, the run's missing
                    // heartbeat settles it later; the worker carries on.
                    if let Err(e) = judged {
                        eprintln!("warning: could not record the end of '{}': {}", r.run.name, chain(&e));
                    }
                }
                None => still.push(r),
            }
        }
        running = still;
        for r in running.iter_mut() {
            if let Err(e) = enforce_cancel(store, r, args.cancel_grace).await {
                eprintln!("warning: could not check '{}' for cancellation: {}", r.run.name, chain(&e));
            }
        }
        let budget_left = args.max_runs.is_none_or(|m| started < m);
        if (stopping || !budget_left) && running.is_empty() {
            println!("Worker stopped after {started} run(s)");
            return Ok(());
        }
        let mut idle = true;
        let mut waited = Duration::ZERO;
        // A store that is briefly away (a server restart) pauses the worker;
        // it does not end it.
        let round: Result<()> = async {
            if last_beat.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                let now = Utc::now();
                store.worker_heartbeat(&args.pool, &worker_name, now).await?;
                // The worker vouches for the runs it holds, so a run whose image
                // is still being pulled (no flow process yet to beat) is not
                // reaped; if the worker dies, the beats stop.
                let heartbeats: Vec<Heartbeat> =
                    running.iter().map(|r| Heartbeat { flow_run_id: r.run.id, at: now }).collect();
                if !heartbeats.is_empty() {
                    store.record(&WriteBatch { heartbeats, ..Default::default() }).await?;
                }
                last_beat = Some(std::time::Instant::now());
            }
            if !stopping && budget_left {
                let claims = Claims::new(store, &args.pool, &args.queues, settings.late_after());
                claims.schedule().await?;
                let mut deployments: HashMap<_, _> =
                    store.list_deployments().await?.into_iter().map(|d| (d.id, d)).collect();
                let room = args.limit.max(1).saturating_sub(running.len());
                let room = args.max_runs.map_or(room, |m| room.min(m.saturating_sub(started)));
                let claimed = claims.claim(room, poll).await?;
                waited = claimed.waited;
                for run in claimed.runs {
                    idle = false;
                    started += 1;
                    // Lasts until the run's process is started; the flow
                    // process continues its trace (TRACEPARENT).
                    let claim = claim_span(&run, &args.pool, &worker_name);
                    refresh_known_secrets(store).await;
                    let Some(dep_id) = run.deployment_id else {
                        crash(store, &run, "it has no deployment to run").await?;
                        continue;
                    };
                    if !deployments.contains_key(&dep_id) {
                        // Created after this round began, perhaps.
                        deployments = store.list_deployments().await?.into_iter().map(|d| (d.id, d)).collect();
                    }
                    let Some(d) = deployments.get(&dep_id) else {
                        crash(store, &run, "its deployment no longer exists").await?;
                        continue;
                    };
                    let mut env: Vec<(String, String)> =
                        inherited.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                    // The flow records its own logs; its console copy would come
                    // back through the output and be recorded twice.
                    env.push(("HEADWATER_LOGGING_CONSOLE".into(), "false".into()));
                    env.extend(d.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                    env.push(("HEADWATER_FLOW_RUN_ID".into(), run.id.to_string()));
                    env.push(("HEADWATER_FLOW_RUN_NAME".into(), run.name.clone()));
                    env.push(("HEADWATER_FLOW_RUN_COUNT".into(), run.run_count.to_string()));
                    claim.record("headwater.deployment", d.name.as_str());
                    if let Some(parent) = headwater_telemetry::traceparent(&claim) {
                        env.push((headwater_telemetry::TRACEPARENT.into(), parent));
                    }
                    let (cwd, scratch) = match pull(d, &run).await {
                        Ok(found) => found,
                        Err(why) => {
                            crash(store, &run, &why).await?;
                            continue;
                        }
                    };
                    if let Some(docker) = &docker {
                        // Code the pull steps fetched is mounted into the
                        // container, which starts where the steps ended.
                        let code = scratch.as_ref().map(|dir| (dir.as_path(), cwd.as_path()));
                        match container_job(docker, d, &run, &env, settings, code, store_handle.clone()) {
                            Ok(job) => {
                                println!(
                                    "Started flow run '{}' ({}) of deployment '{}' in a container",
                                    run.name, run.id, d.name
                                );
                                running.push(Running { run, job, scratch, output: Vec::new() });
                            }
                            Err(e) => {
                                if let Some(dir) = &scratch {
                                    let _ = std::fs::remove_dir_all(dir);
                                }
                                crash(store, &run, &chain(&e)).await?
                            }
                        }
                        continue;
                    }
                    let program = &d.entrypoint[0];
                    let program = if program.contains('/') && Path::new(program).is_relative() {
                        cwd.join(program)
                    } else {
                        program.into()
                    };
                    let child = Command::new(&program)
                        .current_dir(&cwd)
                        .args(&d.entrypoint[1..])
                        .args(["--params", &run.parameters.to_string()])
                        .envs(env.iter().map(|(k, v)| (k, v)))
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .kill_on_drop(false)
                        .spawn();
                    match child {
                        Ok(mut child) => {
                            let output = stream_output(store_handle.clone(), &run, &mut child);
                            println!("Started flow run '{}' ({}) of deployment '{}'", run.name, run.id, d.name);
                            running.push(Running { run, job: Job::Process(child), scratch, output });
                        }
                        Err(e) => {
                            if let Some(dir) = &scratch {
                                let _ = std::fs::remove_dir_all(dir);
                            }
                            crash(store, &run, &format!("its entrypoint '{}' could not start: {e}", program.display()))
                                .await?
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = round {
            eprintln!("warning: {}; trying again in a second", chain(&e));
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if args.exit_when_idle && idle && running.is_empty() {
            println!("Worker stopped after {started} run(s): nothing left to do");
            return Ok(());
        }
        // After taking work, look again at once (the next claim waits for
        // work itself); otherwise rest for whatever the claim did not wait.
        let rest = if idle { poll.saturating_sub(waited) } else { Duration::ZERO };
        tokio::select! {
            _ = tokio::time::sleep(rest) => {}
            _ = child_exited(&mut child_exits), if !running.is_empty() => {}
            _ = &mut ctrl_c, if !stopping => {
                println!("Stopping: no new runs; waiting for {} running", running.len());
                stopping = true;
            }
        }
    }
}

#[cfg(unix)]
type ChildExits = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type ChildExits = Option<()>;

fn child_exits() -> ChildExits {
    #[cfg(unix)]
    return tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
    #[cfg(not(unix))]
    None
}

/// Ends when a child process of the worker exits (never where that cannot
/// be heard: the poll still notices).
async fn child_exited(exits: &mut ChildExits) {
    match exits {
        #[cfg(unix)]
        Some(signal) => {
            signal.recv().await;
        }
        _ => std::future::pending().await,
    }
}

/// Starts a run in a container: the image (pulled per its policy), the
/// entrypoint as the command, the run's settings in the environment, and,
/// in embedded mode, the Headwater home mounted at the same path so the
/// flow records where the worker reads.
fn container_job(
    docker: &Docker,
    d: &Deployment,
    run: &FlowRun,
    env: &[(String, String)],
    settings: &Settings,
    code: Option<(&Path, &Path)>,
    store: Arc<dyn Store>,
) -> Result<Job> {
    let spec = JobSpec::from_variables(&d.job_variables)
        .map_err(|source| WorkerError::NotAContainer { deployment: d.name.clone(), source })?;
    let mut cmd = d.entrypoint.clone();
    cmd.extend(["--params".to_string(), run.parameters.to_string()]);
    let mut binds = match settings.api_url() {
        Some(_) => Vec::new(),
        None => {
            let home = settings.home.display().to_string();
            vec![format!("{home}:{home}")]
        }
    };
    let workdir = code.map(|(scratch, cwd)| {
        let scratch = scratch.display().to_string();
        binds.push(format!("{scratch}:{scratch}"));
        cwd.display().to_string()
    });
    let container = spec.container(&cmd, env, &binds, workdir.as_deref());
    let id = Arc::new(std::sync::Mutex::new(None));
    let (docker2, id2, run) = (docker.clone(), id.clone(), run.clone());
    let task = tokio::spawn(async move {
        let present = docker2.image_exists(&spec.image).await?;
        match spec.pull_policy.as_str() {
            "never" if !present => return Err(WorkerError::ImageMissing(spec.image.clone())),
            "always" => docker2.pull(&spec.image).await?,
            "if_not_present" if !present => docker2.pull(&spec.image).await?,
            _ => {}
        }
        let cid = docker2.create(&format!("headwater-{}", run.id), container).await?;
        if let Ok(mut slot) = id2.lock() {
            *slot = Some(cid.clone());
        }
        let outcome = async {
            docker2.start(&cid).await?;
            // The output is recorded while the container runs, in small batches.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<LogRecord>();
            let (id, name) = (run.id, run.name.clone());
            let follower = docker2.follow_logs(&cid, move |stderr, message| {
                let message = redacted(&message);
                println!("[{name}] {message}");
                let level = if stderr { LogLevel::Warning } else { LogLevel::Info };
                let _ = tx.send(LogRecord {
                    id: 0,
                    flow_run_id: id,
                    task_run_id: None,
                    level,
                    timestamp: Utc::now(),
                    message,
                });
            });
            let recorder = async {
                while let Some(first) = rx.recv().await {
                    let mut logs = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        logs.push(more);
                    }
                    if let Err(e) = store.record(&WriteBatch { logs, ..Default::default() }).await {
                        eprintln!("warning: could not record output of '{}': {e}", run.name);
                    }
                }
            };
            let (followed, ()) = tokio::join!(follower, recorder);
            followed?;
            let code = docker2.wait(&cid).await?;
            Ok::<i64, WorkerError>(code)
        }
        .await;
        if spec.auto_remove {
            let _ = docker2.remove(&cid).await;
        }
        outcome
    });
    Ok(Job::Container { id, task, docker: docker.clone() })
}

/// Runs the deployment's pull steps for one run: clones go to a scratch
/// folder of its own. Returns the directory to start the entrypoint in, and
/// the scratch folder to remove afterwards.
async fn pull(d: &Deployment, run: &FlowRun) -> Result<(PathBuf, Option<PathBuf>), String> {
    let cwd = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
    if d.pull_steps.is_empty() {
        return Ok((cwd, None));
    }
    let scratch = std::env::temp_dir().join(format!("headwater-run-{}", run.id));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    match run_pull_steps(d, &scratch, cwd).await {
        Ok(cwd) => Ok((cwd, Some(scratch))),
        Err(why) => {
            let _ = std::fs::remove_dir_all(&scratch);
            Err(why)
        }
    }
}

async fn run_pull_steps(d: &Deployment, scratch: &Path, mut cwd: PathBuf) -> Result<PathBuf, String> {
    for (i, step) in d.pull_steps.iter().enumerate() {
        match step {
            PullStep::GitClone { repository, branch, reference } => {
                let name = repository
                    .trim_end_matches('/')
                    .trim_end_matches(".git")
                    .rsplit(['/', ':'])
                    .next()
                    .unwrap_or("repo");
                let dest = scratch.join(if name.is_empty() { "repo" } else { name });
                let mut clone = Command::new("git");
                clone.arg("clone").arg("--quiet");
                if reference.is_none() {
                    clone.args(["--depth", "1"]);
                }
                if let Some(b) = branch {
                    clone.args(["--branch", b]);
                }
                git(clone.arg(repository).arg(&dest), i, "git clone").await?;
                if let Some(r) = reference {
                    git(Command::new("git").arg("-C").arg(&dest).args(["checkout", "--quiet", r]), i, "git checkout")
                        .await?;
                }
                cwd = dest;
            }
            PullStep::SetWorkingDirectory { directory } => {
                cwd = cwd.join(directory);
                if !cwd.is_dir() {
                    return Err(format!("pull step {i} (set_working_directory): {} is not a directory", cwd.display()));
                }
            }
        }
    }
    Ok(cwd)
}

async fn git(cmd: &mut Command, step: usize, what: &str) -> Result<(), String> {
    let out = cmd.output().await.map_err(|e| format!("pull step {step} ({what}): cannot run git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!("pull step {step} ({what}) failed: {}", err.trim()))
    }
}

/// The blocks' secret values, revealed, so that a flow that prints one
/// (`println!` in user code bypasses the SDK's own redaction) does not put
/// it into its run's logs or the worker's console.
static KNOWN_SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

async fn refresh_known_secrets(store: &dyn Store) {
    let found = async {
        let types = store.list_block_types().await?;
        let mut secrets = Vec::new();
        for block in store.list_blocks().await? {
            let Some(t) = types.iter().find(|t| t.slug == block.block_type) else { continue };
            let paths = t.secret_paths();
            if paths.is_empty() {
                continue;
            }
            if let Some(doc) = store.read_block(&block.name, true).await? {
                secrets.extend(headwater_core::block::secret_values(&doc.data, &paths));
            }
        }
        secrets.sort_by_key(|s: &String| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Ok::<_, headwater_store::StoreError>(secrets)
    }
    .await;
    match found {
        Ok(secrets) => *KNOWN_SECRETS.write().unwrap_or_else(|e| e.into_inner()) = secrets,
        Err(e) => eprintln!("warning: could not read the blocks' secrets to keep them out of run output: {e}"),
    }
}

/// A line of a flow's output with every known secret masked.
fn redacted(line: &str) -> String {
    headwater_core::block::redact(line, &KNOWN_SECRETS.read().unwrap_or_else(|e| e.into_inner()))
}

/// Copies what the child prints into its run's logs (stdout as INFO,
/// stderr as WARNING) and onto the worker's console, secrets masked.
fn stream_output(store: Arc<dyn Store>, run: &FlowRun, child: &mut Child) -> Vec<tokio::task::JoinHandle<()>> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let pipes: Vec<(Box<dyn tokio::io::AsyncRead + Unpin + Send>, LogLevel)> = [
        child.stdout.take().map(|p| (Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>, LogLevel::Info)),
        child.stderr.take().map(|p| (Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>, LogLevel::Warning)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut handles = Vec::new();
    for (pipe, level) in pipes {
        let (store, id, name) = (store.clone(), run.id, run.name.clone());
        handles.push(tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = redacted(&line);
                println!("[{name}] {line}");
                let log = LogRecord {
                    id: 0,
                    flow_run_id: id,
                    task_run_id: None,
                    level,
                    timestamp: Utc::now(),
                    message: line,
                };
                if let Err(e) = store.record(&WriteBatch { logs: vec![log], ..Default::default() }).await {
                    eprintln!("warning: could not record output of '{name}': {e}");
                }
            }
        }));
    }
    handles
}

/// A run asked to cancel gets `grace` to stop by itself (the flow process
/// notices within a heartbeat); then its process is killed.
async fn enforce_cancel(store: &dyn Store, r: &mut Running, grace: Duration) -> Result<()> {
    let Some(now) = store.read_flow_run(r.run.id).await? else { return Ok(()) };
    if now.state.state_type != headwater_core::StateType::Cancelling {
        return Ok(());
    }
    let waited = (Utc::now() - now.state.timestamp).to_std().unwrap_or_default();
    if waited >= grace {
        r.job.kill().await;
        let why = format!("its process did not stop within {}s and was killed", grace.as_secs());
        record_flow_run_state(store, now, State::cancelled(Utc::now(), why)).await?;
    }
    Ok(())
}

/// Records the end of a run's process: nothing to do if the flow recorded
/// its own final state, CRASHED if it did not.
async fn finish(store: &dyn Store, run: &FlowRun, status: &str) -> Result<()> {
    let now = store.read_flow_run(run.id).await?.ok_or(WorkerError::RunGone)?;
    println!("Flow run '{}' finished: {}", run.name, now.state);
    if now.state.state_type == headwater_core::StateType::Cancelling {
        let why = format!("its process stopped ({status}) after a cancellation request");
        record_flow_run_state(store, now, State::cancelled(Utc::now(), why)).await?;
    } else if !now.state.is_terminal() {
        crash(store, &now, &format!("its process exited ({status}) without finishing the run")).await?;
    }
    Ok(())
}

async fn crash(store: &dyn Store, run: &FlowRun, why: &str) -> Result<()> {
    // The latest snapshot carries what the flow process recorded (its run
    // count and retry policy), which decides whether the run retries.
    let latest = store.read_flow_run(run.id).await?.unwrap_or_else(|| run.clone());
    let after = record_crash(store, latest, why).await?;
    if after.state.is_terminal() {
        eprintln!("Flow run '{}' crashed: {why}", run.name);
    } else {
        eprintln!("Flow run '{}' crashed: {why}; {}", run.name, after.state.message.unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_message_carries_the_cause() {
        let e = WorkerError::NotAContainer {
            deployment: "boxed".into(),
            source: DockerError::JobVariables("a Docker deployment needs work_pool.job_variables.image".into()),
        };
        assert_eq!(
            chain(&e),
            "deployment 'boxed' cannot run in its Docker pool: a Docker deployment needs work_pool.job_variables.image"
        );
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let unreachable = DockerError::Unreachable { socket: "/var/run/docker.sock".into(), source: io };
        assert_eq!(
            chain(&WorkerError::from(unreachable)),
            "cannot reach the Docker engine at /var/run/docker.sock: No such file or directory"
        );
    }
}
