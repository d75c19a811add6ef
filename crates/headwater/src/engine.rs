//! The per-process engine: settings, the recorder and result storage.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::Utc;
use futures::FutureExt;
use headwater_client::ApiClient;
use headwater_config::{Overrides, Settings};
use headwater_core::{flow_id_for_name, Flow, LogLevel};
use headwater_sql::SqliteStore;
use headwater_store::{RunReader, RunReaper, Store};

use crate::error::{Error, Result};
use crate::recorder::{Event, LiveRuns, Recorder};
use crate::results::ResultStore;
use crate::spec::FlowSpec;

/// Where runs are recorded and results kept. One per process is usual
/// ([`Engine::global`], from the settings); tests and embedders may open
/// others and run flows inside [`Engine::scope`].
pub struct Engine {
    settings: Settings,
    pub(crate) recorder: Recorder,
    pub(crate) results: ResultStore,
    store: Arc<dyn Store>,
    registered: Mutex<HashSet<&'static str>>,
    /// Flow runs in progress in this process (heartbeats go out for them).
    pub(crate) live: LiveRuns,
    pub(crate) min_level: LogLevel,
    pub(crate) handle_signals: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("home", &self.settings.home).finish()
    }
}

static GLOBAL: OnceLock<std::result::Result<Arc<Engine>, String>> = OnceLock::new();

tokio::task_local! {
    static SCOPED: Arc<Engine>;
}

impl Engine {
    /// Opens the store `settings` describe: the server at
    /// `HEADWATER_API_URL` if set (client mode), else the embedded database.
    pub fn open(settings: Settings) -> Result<Arc<Engine>> {
        let live = LiveRuns::default();
        let beat = settings.heartbeat_interval();
        let (recorder, store) = match settings.api_url() {
            Some(url) => {
                let client = ApiClient::new(url, settings.get("HEADWATER_API_KEY").map(str::to_string))
                    .map_err(|e| Error::Open(e.to_string()))?;
                // Find out now, not after the flow ran, that nobody is listening.
                Recorder::start(
                    move || {
                        async move {
                            client.health().await.map_err(|e| e.to_string())?;
                            client.list_flows().await.map_err(|e| e.to_string())?;
                            Ok(Arc::new(client) as Arc<dyn Store>)
                        }
                        .boxed()
                    },
                    live.clone(),
                    beat,
                )?
            }
            None => Engine::open_embedded(&settings, live.clone())?,
        };
        let min_level = settings.logging_level().parse().unwrap_or(LogLevel::Info);
        Ok(Arc::new(Engine {
            results: ResultStore::new(settings.result_storage()),
            recorder,
            store,
            registered: Mutex::new(HashSet::new()),
            live,
            min_level,
            handle_signals: true,
            settings,
        }))
    }

    fn open_embedded(settings: &Settings, live: LiveRuns) -> Result<(Recorder, Arc<dyn Store>)> {
        if let Some(url) = settings.get("HEADWATER_DATABASE_URL").filter(|u| u.starts_with("postgres")) {
            return Err(Error::Open(format!(
                "HEADWATER_DATABASE_URL is a PostgreSQL URL ({}); flows record to PostgreSQL through the server, \
                 embedded mode uses SQLite: set a file path or unset it",
                url.split('@').next_back().unwrap_or("…")
            )));
        }
        let path = settings.database_path();
        // Without a key (an unwritable home), blocks' secrets are refused
        // when used, with a message saying how to provide one.
        let key = settings.secret_key_hex().ok().and_then(|k| headwater_store::SecretKey::from_hex(&k).ok());
        let timeout = chrono::Duration::from_std(settings.heartbeat_timeout()).unwrap_or(chrono::Duration::MAX);
        Recorder::start(
            move || {
                async move {
                    let mut store = SqliteStore::open(&path).await.map_err(|e| e.to_string())?;
                    if let Some(key) = &key {
                        store = store.with_secret_key(key);
                    }
                    // No server watches an embedded store: whoever opens it
                    // marks the runs of processes that died as CRASHED.
                    let cutoff = Utc::now() - timeout;
                    for r in store.crash_stale_runs(cutoff).await.unwrap_or_default() {
                        eprintln!(
                            "headwater: flow run '{}' marked CRASHED: {}",
                            r.name,
                            r.state.message.unwrap_or_default()
                        );
                    }
                    Ok(Arc::new(store) as Arc<dyn Store>)
                }
                .boxed()
            },
            live,
            settings.heartbeat_interval(),
        )
    }

    /// An engine whose home folder is `home` (database, results, profiles),
    /// ignoring the environment: handy for tests and embedding.
    pub fn with_home(home: &Path) -> Result<Arc<Engine>> {
        Engine::with_settings(home, &[])
    }

    /// Like [`Engine::with_home`], with settings given as `(KEY, value)`
    /// pairs (for example `HEADWATER_API_URL` for client mode).
    pub fn with_settings(home: &Path, values: &[(&str, &str)]) -> Result<Arc<Engine>> {
        let overrides = Overrides {
            home: Some(home.to_path_buf()),
            values: values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        let settings = Settings::resolve(&overrides, |_| None)?;
        let mut engine = Engine::open(settings)?;
        Arc::get_mut(&mut engine).expect("fresh").handle_signals = false;
        Ok(engine)
    }

    /// The process-wide engine, opened from the settings on first use.
    pub fn global() -> Result<Arc<Engine>> {
        GLOBAL
            .get_or_init(|| {
                let settings = Settings::load(&Overrides::default()).map_err(|e| e.to_string())?;
                Engine::open(settings).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Error::Open)
    }

    /// The engine a flow started here uses: the scoped one, else the global.
    pub(crate) fn current() -> Result<Arc<Engine>> {
        SCOPED.try_with(Arc::clone).or_else(|_| Engine::global())
    }

    /// Runs `fut` with this engine as the one flows record to.
    pub async fn scope<F: Future>(self: &Arc<Self>, fut: F) -> F::Output {
        SCOPED.scope(self.clone(), fut).await
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where runs are recorded (the embedded database or the server), for
    /// reading them back.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub(crate) fn store_handle(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Waits until every event sent so far is written.
    pub async fn flush(&self) -> Result<()> {
        self.recorder.flush().await
    }

    pub(crate) fn result_dir(&self) -> &Path {
        self.results.dir()
    }

    /// Records the flow (name, version, parameter schema) once per process.
    pub(crate) fn register_flow(&self, spec: &'static FlowSpec, schema: impl FnOnce() -> serde_json::Value) {
        let mut seen = self.registered.lock().expect("registry lock");
        if !seen.insert(spec.name) {
            return;
        }
        let now = Utc::now();
        self.recorder.send(Event::Flow(Flow {
            id: flow_id_for_name(spec.name),
            name: spec.name.to_string(),
            version: spec.version.map(str::to_string),
            description: spec.description.map(str::to_string),
            parameter_schema: schema(),
            created: now,
            updated: now,
        }));
    }
}
