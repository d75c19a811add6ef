//! A client of the Headwater server's REST API.
//!
//! [`ApiClient`] implements the store traits, so the SDK (recording runs)
//! and the CLI (reading them) work the same against the embedded database
//! and against a server: only the store they are given changes.

use std::time::Duration;

use async_trait::async_trait;
use headwater_core::partition::{Backfill, DatasetPolicy};
use headwater_core::{
    Acquired, Artifact, Automation, BlockDocument, BlockType, ConcurrencyLimit, Dataset, DatasetVersion, Delivery,
    Deployment, Flow, FlowRun, LogRecord, RunWrite, SlotRequest, SourceCheck, StateRecord, TaskRun, Variable,
    VersionRef, WorkPool, WorkQueue, WorkerStatus,
};
use headwater_store::{
    ArtifactFilter, ArtifactStore, AutomationStore, BackfillStore, BlockStore, ConcurrencyStore, DatasetStore,
    DeploymentStore, FlowRunFilter, HistoryBucket, HistoryQuery, LogFilter, Result, RunQueue, RunReader, RunReaper,
    RunRecorder, StoreError, TimelineEntry, VariableStore, WorkPoolStore, WriteBatch, MAX_RUNS_ASKED,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    api_key: Option<String>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ApiClient").field("base", &self.base).finish_non_exhaustive()
    }
}

/// The error body the server sends.
#[derive(serde::Deserialize)]
struct Detail {
    detail: String,
}

impl ApiClient {
    /// `api_url` is the API root, e.g. `http://127.0.0.1:4200/api`.
    pub fn new(api_url: &str, api_key: Option<String>) -> Result<ApiClient> {
        install_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("headwater/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StoreError::Remote { status: None, message: format!("cannot build the HTTP client: {e}") })?;
        Ok(ApiClient { base: api_url.trim_end_matches('/').to_string(), http, api_key })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Option<T>> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| StoreError::Remote {
            status: None,
            message: format!("cannot reach the Headwater server at {}: {}", self.base, root_cause(&e)),
        })?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<Detail>(&text).map(|d| d.detail).unwrap_or(text);
            // The server refused the change for a reason its message gives.
            if status == StatusCode::CONFLICT {
                return Err(StoreError::Refused(detail));
            }
            let message = match status {
                StatusCode::UNAUTHORIZED => format!(
                    "the Headwater server at {} refused the request: {detail} (set HEADWATER_API_KEY or `headwater config set HEADWATER_API_KEY=…`)",
                    self.base
                ),
                StatusCode::FORBIDDEN => format!("the Headwater server at {} refused the request: {detail}", self.base),
                _ => format!("the Headwater server answered {status}: {detail}"),
            };
            return Err(StoreError::Remote { status: Some(status.as_u16()), message });
        }
        resp.json::<T>().await.map(Some).map_err(|e| StoreError::Remote {
            status: Some(status.as_u16()),
            message: format!("unreadable answer from the Headwater server: {e}"),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<Option<T>> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// The server's health endpoint answers.
    pub async fn health(&self) -> Result<()> {
        self.get::<serde_json::Value>("/health").await.map(|_| ())
    }
}

/// Installs the process-wide TLS provider (ring) that HTTPS clients built
/// with this workspace's reqwest need. Idempotent.
pub fn install_tls_provider() {
    // A second install reports an error and changes nothing.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn missing(what: &str) -> StoreError {
    StoreError::Remote { status: Some(404), message: format!("the server has no {what}") }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl RunRecorder for ApiClient {
    async fn record(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.record_checked(batch).await.map(|_| ())
    }

    async fn record_checked(&self, batch: &WriteBatch) -> Result<headwater_store::reports::BatchOutcome> {
        if batch.is_empty() {
            return Ok(Default::default());
        }
        Ok(self.post("/batches", batch).await?.unwrap_or_default())
    }
}

#[async_trait]
impl headwater_store::HistoryPruner for ApiClient {
    async fn prune(
        &self,
        kind: headwater_core::retention::PruneKind,
        before: chrono::DateTime<chrono::Utc>,
        limit: u32,
        dry_run: bool,
    ) -> Result<u64> {
        // The server deletes at most 5000 a request.
        let body =
            serde_json::json!({ "kind": kind, "before": before, "limit": limit.clamp(1, 5000), "dry_run": dry_run });
        Ok(self.post("/retention/prune", &body).await?.unwrap_or(0))
    }
}

#[async_trait]
impl DeploymentStore for ApiClient {
    async fn apply_deployment(&self, deployment: &Deployment) -> Result<Deployment> {
        self.call(Method::PUT, "/deployments", Some(deployment)).await?.ok_or_else(|| missing("deployments endpoint"))
    }

    async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        self.get("/deployments").await?.ok_or_else(|| missing("deployments endpoint"))
    }

    async fn read_deployment(&self, name: &str) -> Result<Option<Deployment>> {
        self.get(&format!("/deployments/name/{}", encode(name))).await
    }

    async fn delete_deployment(&self, name: &str) -> Result<bool> {
        // 204 and 404 both come back as "no body": ask first which it is.
        if self.read_deployment(name).await?.is_none() {
            return Ok(false);
        }
        let path = format!("/deployments/name/{}", encode(name));
        self.call::<(), serde_json::Value>(Method::DELETE, &path, None).await?;
        Ok(true)
    }
}

#[async_trait]
impl RunQueue for ApiClient {
    async fn enqueue_runs(&self, runs: &[FlowRun]) -> Result<usize> {
        Ok(self.post("/flow_runs/enqueue", runs).await?.unwrap_or(0))
    }

    async fn claim_due_run(
        &self,
        work_pool: &str,
        queues: &[String],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<FlowRun>> {
        let body = serde_json::json!({ "now": now, "queues": queues });
        self.post(&format!("/work_pools/{}/claim", encode(work_pool)), &body).await
    }

    async fn claim_or_wait(
        &self,
        work_pool: &str,
        queues: &[String],
        wait: std::time::Duration,
    ) -> Result<Option<FlowRun>> {
        // The server holds the request until work arrives or `wait` ends.
        let wait_ms = wait.min(headwater_store::CLAIM_WAIT_MAX).as_millis() as u64;
        let body = serde_json::json!({ "wait_ms": wait_ms, "queues": queues });
        self.post(&format!("/work_pools/{}/claim", encode(work_pool)), &body).await
    }

    async fn mark_late_runs(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<Vec<FlowRun>> {
        let body = serde_json::json!({ "cutoff": cutoff });
        Ok(self.post("/flow_runs/mark_late", &body).await?.unwrap_or_default())
    }

    async fn waiting_runs(&self) -> Result<Vec<headwater_store::WaitingRuns>> {
        self.get("/flow_runs/waiting").await?.ok_or_else(|| missing("waiting runs endpoint"))
    }
}

#[async_trait]
impl WorkPoolStore for ApiClient {
    async fn apply_work_pool(&self, pool: &WorkPool) -> Result<WorkPool> {
        self.call(Method::PUT, "/work_pools", Some(pool)).await?.ok_or_else(|| missing("work pools endpoint"))
    }

    async fn list_work_pools(&self) -> Result<Vec<WorkPool>> {
        self.get("/work_pools").await?.ok_or_else(|| missing("work pools endpoint"))
    }

    async fn read_work_pool(&self, name: &str) -> Result<Option<WorkPool>> {
        self.get(&format!("/work_pools/{}", encode(name))).await
    }

    async fn delete_work_pool(&self, name: &str) -> Result<bool> {
        if self.read_work_pool(name).await?.is_none() {
            return Ok(false);
        }
        self.call::<(), serde_json::Value>(Method::DELETE, &format!("/work_pools/{}", encode(name)), None).await?;
        Ok(true)
    }

    async fn apply_work_queue(&self, queue: &WorkQueue) -> Result<WorkQueue> {
        let path = format!("/work_pools/{}/queues", encode(&queue.work_pool));
        self.call(Method::PUT, &path, Some(queue)).await?.ok_or_else(|| missing("work queues endpoint"))
    }

    async fn list_work_queues(&self, work_pool: &str) -> Result<Vec<WorkQueue>> {
        Ok(self.get(&format!("/work_pools/{}/queues", encode(work_pool))).await?.unwrap_or_default())
    }

    async fn delete_work_queue(&self, work_pool: &str, name: &str) -> Result<bool> {
        let path = format!("/work_pools/{}/queues/{}", encode(work_pool), encode(name));
        // 204 when deleted, 404 when there was no such queue: both read as None.
        let found = self.list_work_queues(work_pool).await?.iter().any(|q| q.name == name);
        self.call::<(), serde_json::Value>(Method::DELETE, &path, None).await?;
        Ok(found)
    }

    async fn worker_heartbeat(&self, work_pool: &str, worker: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let body = serde_json::json!({ "at": at });
        let path = format!("/work_pools/{}/workers/{}/heartbeat", encode(work_pool), encode(worker));
        self.post::<_, serde_json::Value>(&path, &body).await.map(|_| ())
    }

    async fn list_workers(&self, work_pool: Option<&str>) -> Result<Vec<WorkerStatus>> {
        let path = match work_pool {
            Some(p) => format!("/workers?work_pool={}", encode(p)),
            None => "/workers".to_string(),
        };
        Ok(self.get(&path).await?.unwrap_or_default())
    }
}

#[async_trait]
impl RunReaper for ApiClient {
    async fn crash_stale_runs(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<Vec<FlowRun>> {
        let body = serde_json::json!({ "cutoff": cutoff });
        Ok(self.post("/flow_runs/crash_stale", &body).await?.unwrap_or_default())
    }
}

#[async_trait]
impl RunReader for ApiClient {
    async fn list_flows(&self) -> Result<Vec<Flow>> {
        self.get("/flows").await?.ok_or_else(|| missing("flows endpoint"))
    }

    async fn read_flow(&self, name: &str) -> Result<Option<Flow>> {
        self.get(&format!("/flows/name/{}", encode(name))).await
    }

    async fn read_flow_run(&self, id: Uuid) -> Result<Option<FlowRun>> {
        self.get(&format!("/flow_runs/{id}")).await
    }

    async fn resolve_flow_run(&self, id_or_name: &str) -> Result<FlowRun> {
        match self.get(&format!("/flow_runs/resolve/{}", encode(id_or_name.trim()))).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(StoreError::FlowRunNotFound(id_or_name.trim().to_string())),
            Err(StoreError::Refused(_)) => {
                Err(StoreError::Ambiguous { input: id_or_name.trim().to_string(), count: 2 })
            }
            Err(e) => Err(e),
        }
    }

    async fn list_flow_runs(&self, filter: &FlowRunFilter) -> Result<Vec<FlowRun>> {
        self.post("/flow_runs/filter", filter).await?.ok_or_else(|| missing("flow run filter endpoint"))
    }

    async fn list_task_runs(&self, flow_run_id: Uuid) -> Result<Vec<TaskRun>> {
        Ok(self.get(&format!("/flow_runs/{flow_run_id}/task_runs")).await?.unwrap_or_default())
    }

    async fn read_task_run(&self, id: Uuid) -> Result<Option<TaskRun>> {
        self.get(&format!("/task_runs/{id}")).await
    }

    async fn run_timeline(&self, flow_run_id: Uuid) -> Result<Vec<TimelineEntry>> {
        Ok(self.get(&format!("/flow_runs/{flow_run_id}/timeline")).await?.unwrap_or_default())
    }

    async fn read_states(&self, run_id: Uuid) -> Result<Vec<StateRecord>> {
        Ok(self.get(&format!("/states/{run_id}")).await?.unwrap_or_default())
    }

    async fn read_logs(&self, filter: &LogFilter) -> Result<Vec<LogRecord>> {
        self.post("/logs/filter", filter).await?.ok_or_else(|| missing("log filter endpoint"))
    }

    async fn flow_run_history(&self, q: &HistoryQuery) -> Result<Vec<HistoryBucket>> {
        let path = format!(
            "/flow_runs/history?since={}&until={}&buckets={}",
            encode(&q.since.to_rfc3339()),
            encode(&q.until.to_rfc3339()),
            q.buckets
        );
        self.get(&path).await?.ok_or_else(|| missing("flow run history endpoint"))
    }
}

#[async_trait]
impl DatasetStore for ApiClient {
    async fn record_dataset_write(&self, write: &DatasetVersion, allow_evolution: bool) -> Result<DatasetVersion> {
        let body = serde_json::json!({ "version": write, "allow_evolution": allow_evolution });
        self.post("/datasets/versions", &body).await?.ok_or_else(|| missing("datasets endpoint"))
    }

    async fn list_datasets(&self) -> Result<Vec<Dataset>> {
        self.get("/datasets").await?.ok_or_else(|| missing("datasets endpoint"))
    }

    async fn read_dataset(&self, name: &str) -> Result<Option<Dataset>> {
        self.get(&format!("/datasets/{}", encode(name))).await
    }

    async fn list_partitions(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        Ok(self.get(&format!("/datasets/{}/partitions", encode(dataset))).await?.unwrap_or_default())
    }

    async fn dataset_history(&self, dataset: &str) -> Result<Vec<DatasetVersion>> {
        Ok(self.get(&format!("/datasets/{}/history", encode(dataset))).await?.unwrap_or_default())
    }

    async fn versions_written_by(&self, runs: &[Uuid]) -> Result<Vec<RunWrite>> {
        let mut out = Vec::new();
        for chunk in runs.chunks(MAX_RUNS_ASKED) {
            let body = serde_json::json!({ "runs": chunk });
            let got: Vec<RunWrite> = self.post("/datasets/written_by", &body).await?.unwrap_or_default();
            out.extend(got);
        }
        Ok(out)
    }

    async fn set_dataset_policy(
        &self,
        name: &str,
        policy: Option<&DatasetPolicy>,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        self.call::<_, serde_json::Value>(Method::PUT, &format!("/datasets/{}/policy", encode(name)), Some(&policy))
            .await?;
        Ok(())
    }

    async fn record_source_check(&self, version: &VersionRef, check: &SourceCheck) -> Result<bool> {
        let body = serde_json::json!({ "version": version, "check": check });
        Ok(self.post::<_, bool>("/datasets/source_checks", &body).await?.unwrap_or(false))
    }
}

#[async_trait]
impl BlockStore for ApiClient {
    async fn register_block_types(&self, types: &[BlockType]) -> Result<()> {
        self.call::<_, serde_json::Value>(Method::PUT, "/block_types", Some(types)).await?;
        Ok(())
    }

    async fn list_block_types(&self) -> Result<Vec<BlockType>> {
        self.get("/block_types").await?.ok_or_else(|| missing("block types endpoint"))
    }

    async fn save_block(&self, block: &BlockDocument) -> Result<BlockDocument> {
        self.call(Method::PUT, "/blocks", Some(block)).await?.ok_or_else(|| missing("blocks endpoint"))
    }

    async fn read_block(&self, name: &str, reveal: bool) -> Result<Option<BlockDocument>> {
        self.get(&format!("/blocks/{}?reveal={reveal}", encode(name))).await
    }

    async fn list_blocks(&self) -> Result<Vec<BlockDocument>> {
        self.get("/blocks").await?.ok_or_else(|| missing("blocks endpoint"))
    }

    async fn delete_block(&self, name: &str) -> Result<bool> {
        if self.read_block(name, false).await?.is_none() {
            return Ok(false);
        }
        self.call::<(), serde_json::Value>(Method::DELETE, &format!("/blocks/{}", encode(name)), None).await?;
        Ok(true)
    }
}

#[async_trait]
impl VariableStore for ApiClient {
    async fn set_variable(&self, variable: &Variable) -> Result<Variable> {
        self.call(Method::PUT, "/variables", Some(variable)).await?.ok_or_else(|| missing("variables endpoint"))
    }

    async fn read_variable(&self, name: &str) -> Result<Option<Variable>> {
        self.get(&format!("/variables/{}", encode(name))).await
    }

    async fn list_variables(&self) -> Result<Vec<Variable>> {
        self.get("/variables").await?.ok_or_else(|| missing("variables endpoint"))
    }

    async fn delete_variable(&self, name: &str) -> Result<bool> {
        if self.read_variable(name).await?.is_none() {
            return Ok(false);
        }
        self.call::<(), serde_json::Value>(Method::DELETE, &format!("/variables/{}", encode(name)), None).await?;
        Ok(true)
    }
}

#[async_trait]
impl AutomationStore for ApiClient {
    async fn apply_automation(&self, automation: &Automation) -> Result<Automation> {
        self.call(Method::PUT, "/automations", Some(automation)).await?.ok_or_else(|| missing("automations endpoint"))
    }

    async fn list_automations(&self) -> Result<Vec<Automation>> {
        self.get("/automations").await?.ok_or_else(|| missing("automations endpoint"))
    }

    async fn read_automation(&self, name: &str) -> Result<Option<Automation>> {
        self.get(&format!("/automations/{}", encode(name))).await
    }

    async fn set_automation_enabled(&self, name: &str, enabled: bool) -> Result<Option<Automation>> {
        let verb = if enabled { "resume" } else { "pause" };
        self.call::<(), Automation>(Method::POST, &format!("/automations/{}/{verb}", encode(name)), None).await
    }

    async fn delete_automation(&self, name: &str) -> Result<bool> {
        if self.read_automation(name).await?.is_none() {
            return Ok(false);
        }
        self.call::<(), serde_json::Value>(Method::DELETE, &format!("/automations/{}", encode(name)), None).await?;
        Ok(true)
    }

    async fn list_deliveries(&self, automation: &str, limit: u32) -> Result<Vec<Delivery>> {
        let path = format!("/automations/{}/deliveries?limit={limit}", encode(automation));
        self.get(&path).await?.ok_or_else(|| StoreError::Refused(format!("no automation named '{automation}'")))
    }
}

#[async_trait]
impl ArtifactStore for ApiClient {
    async fn list_artifacts(&self, filter: &ArtifactFilter) -> Result<Vec<Artifact>> {
        self.post("/artifacts/filter", filter).await?.ok_or_else(|| missing("artifacts endpoint"))
    }

    async fn delete_artifacts(&self, key: &str) -> Result<u64> {
        let path = format!("/artifacts/{}", encode(key));
        Ok(self.call::<(), u64>(Method::DELETE, &path, None).await?.unwrap_or(0))
    }
}

#[async_trait]
impl ConcurrencyStore for ApiClient {
    async fn set_concurrency_limit(&self, name: &str, limit: u32, decay: Option<f64>) -> Result<ConcurrencyLimit> {
        // Checked here too: an empty name would not even reach the route.
        headwater_core::concurrency::validate_limit(name, limit, decay).map_err(StoreError::Refused)?;
        let body = serde_json::json!({"limit": limit, "slot_decay_per_second": decay});
        self.call(Method::PUT, &format!("/concurrency_limits/{}", encode(name)), Some(&body))
            .await?
            .ok_or_else(|| missing("concurrency limits endpoint"))
    }

    async fn read_concurrency_limit(&self, name: &str) -> Result<Option<ConcurrencyLimit>> {
        self.get(&format!("/concurrency_limits/{}", encode(name))).await
    }

    async fn list_concurrency_limits(&self) -> Result<Vec<ConcurrencyLimit>> {
        self.get("/concurrency_limits").await?.ok_or_else(|| missing("concurrency limits endpoint"))
    }

    async fn delete_concurrency_limit(&self, name: &str) -> Result<bool> {
        if self.read_concurrency_limit(name).await?.is_none() {
            return Ok(false);
        }
        let path = format!("/concurrency_limits/{}", encode(name));
        self.call::<(), serde_json::Value>(Method::DELETE, &path, None).await?;
        Ok(true)
    }

    async fn reset_concurrency_limit(&self, name: &str) -> Result<u32> {
        let path = format!("/concurrency_limits/{}/reset", encode(name));
        Ok(self.post::<(), u32>(&path, &()).await?.unwrap_or(0))
    }

    async fn acquire_slots(&self, request: &SlotRequest) -> Result<Acquired> {
        self.post("/concurrency_leases", request).await?.ok_or_else(|| missing("concurrency leases endpoint"))
    }

    async fn renew_lease(&self, id: Uuid, ttl_ms: u64) -> Result<bool> {
        let body = serde_json::json!({"ttl_ms": ttl_ms});
        Ok(self.post(&format!("/concurrency_leases/{id}/renew"), &body).await?.unwrap_or(false))
    }

    async fn release_lease(&self, id: Uuid) -> Result<bool> {
        let path = format!("/concurrency_leases/{id}");
        Ok(self.call::<(), bool>(Method::DELETE, &path, None).await?.unwrap_or(false))
    }
}

#[async_trait]
impl BackfillStore for ApiClient {
    async fn save_backfill(&self, backfill: &Backfill, runs: &[FlowRun]) -> Result<usize> {
        let body = serde_json::json!({ "backfill": backfill, "runs": runs });
        let path = format!("/backfill_records/{}", backfill.id);
        Ok(self.call(Method::PUT, &path, Some(&body)).await?.unwrap_or(0))
    }

    async fn list_backfills(&self, deployment: Option<&str>) -> Result<Vec<Backfill>> {
        let path = match deployment {
            Some(d) => format!("/backfills?deployment={}", encode(d)),
            None => "/backfills".to_string(),
        };
        self.get(&path).await?.ok_or_else(|| missing("backfills endpoint"))
    }

    async fn read_backfill(&self, name_or_id: &str) -> Result<Option<Backfill>> {
        self.get(&format!("/backfills/{}", encode(name_or_id))).await
    }

    async fn cancel_backfill(&self, id: Uuid, _at: chrono::DateTime<chrono::Utc>) -> Result<Option<Backfill>> {
        // The server cancels it and its runs at its own time.
        #[derive(serde::Deserialize)]
        struct Cancelled {
            backfill: Backfill,
        }
        let done: Option<Cancelled> = self.post(&format!("/backfills/{id}/cancel"), &()).await?;
        Ok(done.map(|c| c.backfill))
    }

    async fn latest_partition_runs(&self, deployment_id: Uuid) -> Result<Vec<FlowRun>> {
        self.get(&format!("/partition_runs?deployment_id={deployment_id}"))
            .await?
            .ok_or_else(|| missing("partition runs endpoint"))
    }
}

#[async_trait]
impl headwater_store::AccessStore for ApiClient {
    /// The server makes the key (at its own time) and answers it once.
    async fn issue_api_key(
        &self,
        name: &str,
        role: headwater_core::Role,
        _at: chrono::DateTime<chrono::Utc>,
    ) -> Result<headwater_store::IssuedKey> {
        let body = serde_json::json!({ "name": name, "role": role });
        self.post("/api_keys", &body).await?.ok_or_else(|| missing("API keys endpoint"))
    }

    async fn list_api_keys(&self) -> Result<Vec<headwater_core::ApiKey>> {
        self.get("/api_keys").await?.ok_or_else(|| missing("API keys endpoint"))
    }

    async fn revoke_api_key(
        &self,
        name: &str,
        _at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<headwater_core::ApiKey>> {
        self.call::<(), _>(Method::POST, &format!("/api_keys/{}/revoke", encode(name)), None).await
    }

    /// Asks the server who `secret` is, presenting it as the key.
    async fn find_api_key(&self, secret: &str) -> Result<Option<headwater_core::ApiKey>> {
        let holder = ApiClient { api_key: Some(secret.to_string()), ..self.clone() };
        #[derive(serde::Deserialize)]
        struct Whoami {
            key: Option<headwater_core::ApiKey>,
        }
        match holder.get::<Whoami>("/api_keys/me").await {
            Err(StoreError::Remote { status: Some(401), .. }) => Ok(None),
            other => Ok(other?.and_then(|w| w.key)),
        }
    }

    async fn has_api_keys(&self) -> Result<bool> {
        Ok(self.list_api_keys().await?.iter().any(|k| k.revoked.is_none()))
    }

    async fn record_audit(&self, entries: &[headwater_core::AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.post::<_, serde_json::Value>("/audit", entries).await.map(|_| ())
    }

    async fn read_audit(&self, filter: &headwater_store::AuditFilter) -> Result<Vec<headwater_core::AuditEntry>> {
        let mut query = vec![format!("limit={}", filter.limit())];
        if let Some(key) = &filter.key {
            query.push(format!("key={}", encode(key)));
        }
        if let Some(before) = filter.before {
            query.push(format!("before={before}"));
        }
        self.get(&format!("/audit?{}", query.join("&"))).await?.ok_or_else(|| missing("audit endpoint"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::encode("yellow-2021-01"), "yellow-2021-01");
        assert_eq!(super::encode("a b/c"), "a%20b%2Fc");
    }
}
