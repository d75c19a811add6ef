//! The Headwater server: a REST API under `/api` over any store, and
//! Prefect's API under `/prefect/api` ([`prefect`]) for Prefect's own client.
//!
//! Handlers are thin: they extract, call the store through its traits and
//! map errors. Beside the API run the scheduler, the reaper of crashed runs
//! and the automation engine. The OpenAPI document is generated from the handlers and
//! served at `/api/openapi.json`, with a page to browse it at `/api/docs`.

mod api;
mod audit;
mod auth;
mod error;
mod metrics;
pub mod prefect;
mod traces;
mod ui;
/// Scheduling lives with the store so that workers and `serve` share it.
pub use headwater_store::scheduling as scheduler;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use headwater_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::openapi;
pub use error::{ApiError, ServerError};

/// How the server listens and whom it lets in.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// Configured keys, each an admin key. With none, a key is required
    /// only once named keys are issued (`headwater api-key create`).
    pub api_keys: Vec<String>,
    /// Require a key even when none is configured or issued (the CLI sets
    /// it when named keys exist: revoking them all must not open the API).
    pub require_key: bool,
    /// Serve a non-loopback address without API keys anyway.
    pub allow_unauthenticated_remote: bool,
    /// Live runs silent for this long are marked CRASHED.
    pub heartbeat_timeout: Duration,
    /// Scheduled runs not started this long after they were due are Late.
    pub late_after: Duration,
    /// Where people reach the UI, for links in notifications (default:
    /// the address the server listens on).
    pub ui_url: Option<String>,
    /// How often automations look for new events and due deliveries.
    pub automation_tick: Duration,
    /// How often Prefect clients send flow-run heartbeats (Prefect's
    /// `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, 180 s by default).
    pub prefect_heartbeat: Duration,
    /// How long history is kept (default: forever).
    pub retention: headwater_core::retention::Retention,
    /// How often retention looks for what is old enough to go.
    pub retention_every: Duration,
    /// Serve `/metrics` without an API key even when keys are required
    /// (for a scraper inside a trusted network).
    pub metrics_public: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 4200,
            api_keys: Vec::new(),
            require_key: false,
            allow_unauthenticated_remote: false,
            heartbeat_timeout: Duration::from_secs(60),
            late_after: Duration::from_secs(scheduler::LATE_AFTER_SECONDS),
            ui_url: None,
            automation_tick: Duration::from_secs(1),
            prefect_heartbeat: prefect::DEFAULT_HEARTBEAT,
            retention: Default::default(),
            retention_every: Duration::from_secs(600),
            metrics_public: false,
        }
    }
}

/// Binds the listener, refusing to expose an unauthenticated API beyond
/// this machine unless told to.
pub async fn bind(config: &ServerConfig) -> Result<TcpListener, ServerError> {
    let addr = format!("{}:{}", config.host, config.port);
    let listener = TcpListener::bind(&addr).await.map_err(|source| ServerError::Bind { addr: addr.clone(), source })?;
    let local = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
    if !local.ip().is_loopback()
        && config.api_keys.is_empty()
        && !config.require_key
        && !config.allow_unauthenticated_remote
    {
        return Err(ServerError::UnauthenticatedRemote { addr: local });
    }
    Ok(listener)
}

/// The whole application: `/api/...` behind the key check.
/// (Its audit log's writer runs until the router is dropped.)
pub fn app(store: Arc<dyn Store>, api_keys: Vec<String>) -> axum::Router {
    let (audit, _writer) = audit::AuditTrail::start(store.clone());
    app_with_wake(store, &ServerConfig { api_keys, ..Default::default() }, Arc::default(), audit)
}

fn app_with_wake(
    store: Arc<dyn Store>,
    config: &ServerConfig,
    wake: api::Wake,
    audit: audit::AuditTrail,
) -> axum::Router {
    let access = Arc::new(auth::Access {
        keys: config.api_keys.clone(),
        require_key: config.require_key,
        store: store.clone(),
        metrics_public: config.metrics_public,
        audit,
        issued: Default::default(),
    });
    let prefect = prefect::router(store.clone(), access.clone(), wake.clone(), config.prefect_heartbeat);
    let scrape = axum::Router::new().route("/metrics", axum::routing::get(metrics::render)).with_state(store.clone());
    api::router(store, wake)
        .nest(prefect::PREFIX, prefect)
        .merge(scrape)
        .layer(axum::middleware::from_fn(metrics::track))
        // Inside the handler's own task (below), so a call whose client
        // went away is still audited.
        .layer(axum::middleware::from_fn_with_state(access, auth::require_key))
        // Outside the key check, so refused calls are traced too.
        .layer(axum::middleware::from_fn(traces::span))
        .layer(axum::middleware::from_fn(run_to_completion))
        // A request that takes longer (a slow query) is answered 503, which
        // clients retry later; its work still finishes (above).
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIME_LIMIT,
        ))
        // Every error as `{"detail": …}`, the layers' and extractors' too.
        .layer(axum::middleware::map_response(error::json_errors))
}

tokio::task_local! {
    static CLIENT_GONE: CancellationToken;
}

/// Cancelled once the client of the request being handled has gone away
/// (None outside a request).
pub(crate) fn client_gone() -> Option<CancellationToken> {
    CLIENT_GONE.try_with(CancellationToken::clone).ok()
}

/// Runs each request's handler in a task of its own, so that a client
/// going away (a killed flow process, a worker's host cut off) or the time
/// limit does not drop it halfway. A store write dropped between SQLite's
/// `BEGIN IMMEDIATE` and its answer leaves the transaction open on a pooled
/// connection: the database's write lock stays held, and every later write
/// of the server waits for it (seen: a backfill stalled after a worker was
/// killed with `kill -9`).
///
/// A handler that waits (a worker's long poll) asks [`client_gone`]
/// between its steps, so a poll whose worker went away stops waiting and
/// claims nothing for it.
async fn run_to_completion(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let gone = CancellationToken::new();
    // Cancelled when this future is dropped (the client went away), not
    // when the handler finishes.
    let guard = gone.clone().drop_guard();
    let handled = tokio::spawn(CLIENT_GONE.scope(gone, next.run(req))).await;
    guard.disarm();
    match handled {
        Ok(response) => response,
        Err(e) => {
            tracing::error!("a request's handler failed: {e}");
            axum::response::IntoResponse::into_response(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// The longest a request may take. Above the longest a poll for work is
/// held (45 s for Prefect's workers), so only stuck work reaches it;
/// websockets and streams are timed only until their answer starts.
pub const REQUEST_TIME_LIMIT: Duration = Duration::from_secs(60);

/// Serves until `shutdown` resolves, then finishes the requests in flight.
/// Alongside the API, a reaper marks CRASHED the runs whose process went
/// silent for `config.heartbeat_timeout`.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Headwater's own block types, so blocks of them can be saved through the API.
    if let Err(e) = store.register_block_types(&headwater_blocks::builtin_types()).await {
        tracing::error!("could not register the block types: {e}");
    }
    metrics::install();
    let stop = CancellationToken::new();
    let wake = api::Wake::default();
    let reaper = tokio::spawn(reap_loop(store.clone(), wake.clone(), config.heartbeat_timeout, stop.clone()));
    let scheduling = tokio::spawn(schedule_loop(store.clone(), wake.clone(), config.late_after, stop.clone()));
    let ui_url = match (&config.ui_url, listener.local_addr()) {
        (Some(u), _) => u.clone(),
        (None, Ok(addr)) => format!("http://{addr}"),
        (None, Err(_)) => format!("http://{}:{}", config.host, config.port),
    };
    let woken = wake.clone();
    let engine = headwater_automations::Engine::new(
        store.clone(),
        headwater_automations::EngineConfig {
            ui_url,
            on_runs_created: Some(Arc::new(move || woken.notify_waiters())),
            ..Default::default()
        },
    );
    let automations = tokio::spawn(engine.run(config.automation_tick, stop.clone()));
    let retention = (!config.retention.is_off()).then(|| {
        tokio::spawn(retention_loop(store.clone(), config.retention.clone(), config.retention_every, stop.clone()))
    });
    let (audit, audit_writer) = audit::AuditTrail::start(store.clone());
    let served = axum::serve(listener, app_with_wake(store, config, wake, audit))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve);
    stop.cancel();
    // The router is gone: the writer writes what is left and ends.
    if tokio::time::timeout(Duration::from_secs(10), audit_writer).await.is_err() {
        tracing::error!("the audit log's last entries were not written in 10 s");
    }
    let _ = reaper.await;
    let _ = scheduling.await;
    let _ = automations.await;
    if let Some(r) = retention {
        let _ = r.await;
    }
    served
}

/// Background work of the server, stopped by `stop`: every `every`, deletes
/// the history older than the retention keeps, in small batches with rests
/// between them (the UI and writers wait for one batch at most).
async fn retention_loop(
    store: Arc<dyn Store>,
    retention: headwater_core::retention::Retention,
    every: Duration,
    stop: CancellationToken,
) {
    tracing::info!("retention: keeping {retention}");
    loop {
        // Not raced against `stop`: a dropped prune would leave its
        // transaction open on a pooled connection. It stops between batches.
        let keep_going = || !stop.is_cancelled();
        let pass = headwater_store::retention::apply(
            store.as_ref(),
            &retention,
            chrono::Utc::now(),
            Duration::from_millis(20),
            &keep_going,
        );
        match pass.await {
            Ok(pruned) => {
                for p in pruned.iter().filter(|p| p.deleted > 0) {
                    tracing::info!("retention: deleted {} {} older than {}", p.deleted, p.kind, p.before);
                }
            }
            Err(e) => tracing::error!("retention: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Background work of the server, stopped by `stop`: creates the runs of
/// the deployments' schedules ahead of time.
async fn schedule_loop(store: Arc<dyn Store>, wake: api::Wake, late_after: Duration, stop: CancellationToken) {
    loop {
        match scheduler::schedule_due(store.as_ref(), chrono::Utc::now(), None, late_after).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!("scheduled {n} flow run(s)");
                wake.notify_waiters();
            }
            Err(e) => tracing::error!("could not schedule runs: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Background work of the server, stopped by `stop`: every few seconds,
/// crash the live runs whose heartbeat is older than `timeout` (those their
/// flow's retries allow go back to their pool, and workers are woken).
async fn reap_loop(store: Arc<dyn Store>, wake: api::Wake, timeout: Duration, stop: CancellationToken) {
    let every = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        match store.crash_stale_runs(cutoff).await {
            Ok(crashed) => {
                metrics::runs_crashed(&crashed);
                if crashed.iter().any(|r| !r.state.is_terminal()) {
                    wake.notify_waiters();
                }
                for r in crashed {
                    tracing::warn!(
                        "flow run '{}' ({}) crashed, now {}: {}",
                        r.name,
                        r.id,
                        r.state.name,
                        r.state.message.unwrap_or_default()
                    );
                }
            }
            Err(e) => tracing::error!("could not look for crashed runs: {e}"),
        }
    }
}

/// A server running in the background of this process (for tests and
/// embedding). Dropping it stops the server.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    handle: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
}

impl RunningServer {
    /// Starts a server on an ephemeral loopback port.
    pub async fn start(store: Arc<dyn Store>, api_keys: Vec<String>) -> Result<RunningServer, ServerError> {
        let config = ServerConfig { port: 0, api_keys, ..Default::default() };
        RunningServer::start_with(store, config).await
    }

    /// Starts a server as `config` says (host and port included).
    pub async fn start_with(store: Arc<dyn Store>, config: ServerConfig) -> Result<RunningServer, ServerError> {
        let listener = bind(&config).await?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.host.clone(), source })?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle =
            tokio::spawn(async move { serve(listener, store, &config, async move { token.cancelled().await }).await });
        Ok(RunningServer { addr, stop, handle: Some(handle) })
    }

    /// The API root clients use, e.g. `http://127.0.0.1:4711/api`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Stops accepting requests and waits for the ones in flight.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.stop.cancel();
        match self.handle.take() {
            Some(h) => h.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
