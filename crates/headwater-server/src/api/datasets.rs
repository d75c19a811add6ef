//! The lake's catalog: datasets, their partitions and versions.

use std::sync::Arc;

use super::json::Json;
use axum::extract::{Path, State};
use headwater_core::partition::DatasetPolicy;
use headwater_core::{Dataset, DatasetVersion, RunWrite, SourceCheck, VersionRef};
use headwater_store::freshness::{DatasetPartition, FreshnessError};
use headwater_store::lineage::Lineage;
use headwater_store::{Store, MAX_RUNS_ASKED};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiResult, Db};
use crate::error::ApiError;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new()
        .routes(routes!(list_datasets))
        .routes(routes!(read_dataset))
        .routes(routes!(list_partitions))
        .routes(routes!(dataset_history))
        .routes(routes!(record_dataset_write))
        .routes(routes!(versions_written_by))
        .routes(routes!(record_source_check))
        .routes(routes!(set_dataset_policy))
        .routes(routes!(dataset_freshness))
        .routes(routes!(dataset_lineage))
}

/// What a dataset is made from and what is made from it (from the inputs
/// its versions and others' record).
#[utoipa::path(
    get, path = "/datasets/{name}/lineage", tag = "datasets", params(("name" = String, Path)),
    responses((status = 200, body = Lineage), (status = 404, description = "no such dataset"))
)]
async fn dataset_lineage(State(db): Db, Path(name): Path<String>) -> ApiResult<Lineage> {
    headwater_store::lineage::lineage(db.as_ref(), &name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no dataset named '{name}'")))
}

#[utoipa::path(get, path = "/datasets", tag = "datasets", responses((status = 200, body = Vec<Dataset>)))]
async fn list_datasets(State(db): Db) -> ApiResult<Vec<Dataset>> {
    Ok(Json(db.list_datasets().await?))
}

#[utoipa::path(
    get, path = "/datasets/{name}", tag = "datasets", params(("name" = String, Path)),
    responses((status = 200, body = Dataset), (status = 404, description = "no such dataset"))
)]
async fn read_dataset(State(db): Db, Path(name): Path<String>) -> ApiResult<Dataset> {
    db.read_dataset(&name).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no dataset named '{name}'")))
}

/// The current version of each partition.
#[utoipa::path(
    get, path = "/datasets/{name}/partitions", tag = "datasets", params(("name" = String, Path)),
    responses((status = 200, body = Vec<DatasetVersion>))
)]
async fn list_partitions(State(db): Db, Path(name): Path<String>) -> ApiResult<Vec<DatasetVersion>> {
    Ok(Json(db.list_partitions(&name).await?))
}

/// Every version of every partition, newest first.
#[utoipa::path(
    get, path = "/datasets/{name}/history", tag = "datasets", params(("name" = String, Path)),
    responses((status = 200, body = Vec<DatasetVersion>))
)]
async fn dataset_history(State(db): Db, Path(name): Path<String>) -> ApiResult<Vec<DatasetVersion>> {
    Ok(Json(db.dataset_history(&name).await?))
}

#[derive(serde::Deserialize, ToSchema)]
struct DatasetWrite {
    version: DatasetVersion,
    #[serde(default)]
    allow_evolution: bool,
}

/// Records a partition write (the lake writer calls this after the file is in place).
#[utoipa::path(
    post, path = "/datasets/versions", tag = "datasets", request_body = DatasetWrite,
    responses((status = 200, body = DatasetVersion), (status = 409, description = "the schema conflicts"))
)]
async fn record_dataset_write(State(db): Db, Json(w): Json<DatasetWrite>) -> ApiResult<DatasetVersion> {
    Ok(Json(db.record_dataset_write(&w.version, w.allow_evolution).await?))
}

#[derive(serde::Deserialize, ToSchema)]
struct WrittenBy {
    /// At most 1000 run ids.
    #[schema(max_items = 1000)]
    runs: Vec<Uuid>,
}

/// The versions some runs wrote, themselves or through their direct
/// subflows (what a partition's run loaded into the lake).
#[utoipa::path(
    post, path = "/datasets/written_by", tag = "datasets", request_body = WrittenBy,
    responses((status = 200, body = Vec<RunWrite>), (status = 422, description = "more than 1000 runs"))
)]
async fn versions_written_by(State(db): Db, Json(w): Json<WrittenBy>) -> ApiResult<Vec<RunWrite>> {
    if w.runs.len() > MAX_RUNS_ASKED {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            format!("runs: at most {MAX_RUNS_ASKED} runs per request"),
        ));
    }
    Ok(Json(db.versions_written_by(&w.runs).await?))
}

#[derive(serde::Deserialize, ToSchema)]
struct SourceCheckOf {
    version: VersionRef,
    check: SourceCheck,
}

/// Records a look at the file on the web a version was made from
/// (`headwater dataset check-sources`); a changed file marks the partition
/// stale.
#[utoipa::path(
    post, path = "/datasets/source_checks", tag = "datasets", request_body = SourceCheckOf,
    responses((status = 200, body = bool), (status = 404, description = "no such version"))
)]
async fn record_source_check(State(db): Db, Json(c): Json<SourceCheckOf>) -> ApiResult<bool> {
    if db.record_source_check(&c.version, &c.check).await? {
        Ok(Json(true))
    } else {
        let v = &c.version;
        Err(ApiError::not_found(format!("no version {} of {} partition {}", v.version, v.dataset, v.partition)))
    }
}

/// Sets a dataset's freshness policy (`null` removes it); a dataset not
/// written yet is created, empty, to hold it.
#[utoipa::path(
    put, path = "/datasets/{name}/policy", tag = "datasets", params(("name" = String, Path)),
    request_body = Option<DatasetPolicy>,
    responses((status = 204, description = "set"), (status = 422, description = "a bad policy; the message names the field"))
)]
async fn set_dataset_policy(
    State(db): Db,
    Path(name): Path<String>,
    Json(policy): Json<Option<DatasetPolicy>>,
) -> Result<axum::http::StatusCode, ApiError> {
    if let Some(e) = policy.as_ref().and_then(|p| p.validate().err()) {
        return Err(ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, e.to_string()));
    }
    db.set_dataset_policy(&name, policy.as_ref(), chrono::Utc::now()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Every partition of a dataset: those its freshness policy expects (up to
/// the newest complete one), written or not, with their due times and
/// which are stale; then any other it holds.
#[utoipa::path(
    get, path = "/datasets/{name}/freshness", tag = "datasets", params(("name" = String, Path)),
    responses((status = 200, body = Vec<DatasetPartition>), (status = 404, description = "no such dataset"))
)]
async fn dataset_freshness(State(db): Db, Path(name): Path<String>) -> ApiResult<Vec<DatasetPartition>> {
    match headwater_store::freshness::dataset_partitions(db.as_ref(), &name, chrono::Utc::now()).await {
        Ok(parts) => Ok(Json(parts)),
        Err(FreshnessError::NoDataset(_)) => Err(ApiError::not_found(format!("no dataset named '{name}'"))),
        Err(FreshnessError::Invalid(e)) => {
            Err(ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
        }
        Err(FreshnessError::Store(e)) => Err(e.into()),
    }
}
