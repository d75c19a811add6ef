//! Blocks as Prefect's client saves and loads them, over Headwater's own:
//! a block type is registered with its schema (`Block.save` does it, as
//! `prefect block register` does), a document's secret fields — the
//! schema's `writeOnly` ones, which is how Pydantic writes `SecretStr` —
//! are sealed at rest like any Headwater block's, and come back in clear
//! only to a read that asks with `include_secrets`.
//!
//! Headwater keeps one block type per slug and one document per name.
//! Where a slug is Headwater's own (`secret`, `local-file-system`, …, whose
//! fields match Prefect's), Headwater's schema stays: blocks made with
//! either CLI load in the other.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use headwater_core::{BlockDocument, BlockType};
use headwater_store::Store;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Compat, PrefectJson};
use crate::error::ApiError;

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

fn type_id(slug: &str) -> Uuid {
    super::resources::named_id("block-type", slug)
}

fn document_id(name: &str) -> Uuid {
    super::resources::named_id("block", name)
}

/// The schema's stand-in for the version Prefect keys schemas by.
fn schema_checksum(t: &BlockType) -> String {
    format!("headwater:{}", blake3::hash(t.schema.to_string().as_bytes()).to_hex())
}

fn schema_id(t: &BlockType) -> Uuid {
    super::resources::named_id("block-schema", &schema_checksum(t))
}

/// A registration time Headwater does not keep for types.
fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(0, 0).expect("the epoch")
}

fn block_type_json(t: &BlockType) -> Value {
    json!({
        "id": type_id(&t.slug),
        "name": t.name,
        "slug": t.slug,
        "description": t.description,
        "logo_url": null,
        "documentation_url": null,
        "code_example": null,
        "is_protected": false,
        "created": epoch(),
        "updated": epoch(),
    })
}

fn block_schema_json(t: &BlockType) -> Value {
    let mut fields = t.schema.clone();
    if let Some(obj) = fields.as_object_mut() {
        // What Prefect's client reads from a schema to rebuild the class.
        obj.entry("block_type_slug").or_insert_with(|| json!(t.slug));
        obj.entry("secret_fields")
            .or_insert_with(|| json!(t.secret_paths().iter().map(|p| p.join(".")).collect::<Vec<_>>()));
        obj.entry("block_schema_references").or_insert_with(|| json!({}));
    }
    json!({
        "id": schema_id(t),
        "checksum": schema_checksum(t),
        "fields": fields,
        "block_type_id": type_id(&t.slug),
        "block_type": block_type_json(t),
        "capabilities": [],
        "version": "headwater",
        "created": epoch(),
        "updated": epoch(),
    })
}

fn block_document_json(d: &BlockDocument, t: &BlockType) -> Value {
    json!({
        "id": document_id(&d.name),
        "name": d.name,
        "data": d.data,
        "block_schema_id": schema_id(t),
        "block_schema": block_schema_json(t),
        "block_type_id": type_id(&t.slug),
        "block_type_name": t.name,
        "block_type": block_type_json(t),
        "block_document_references": {},
        "is_anonymous": false,
        "created": d.created,
        "updated": d.updated,
    })
}

async fn type_by_slug(store: &dyn Store, slug: &str) -> Result<Option<BlockType>, ApiError> {
    Ok(store.list_block_types().await?.into_iter().find(|t| t.slug == slug))
}

async fn type_by_id(store: &dyn Store, id: Uuid) -> Result<Option<BlockType>, ApiError> {
    Ok(store.list_block_types().await?.into_iter().find(|t| type_id(&t.slug) == id))
}

fn is_builtin(slug: &str) -> bool {
    headwater_blocks::builtin_types().iter().any(|t| t.slug == slug)
}

pub(super) async fn read_block_type(State(c): State<Compat>, Path(slug): Path<String>) -> Answer {
    let t = type_by_slug(c.store.as_ref(), &slug).await?.ok_or_else(|| ApiError::not_found("Block type not found"))?;
    Ok((StatusCode::OK, Json(block_type_json(&t))))
}

#[derive(Deserialize)]
pub(super) struct BlockTypeCreate {
    name: String,
    slug: String,
    #[serde(default)]
    description: Option<String>,
}

/// `POST /block_types/`: a new type, its schema to follow (`POST /block_schemas/`).
pub(super) async fn create_block_type(
    State(c): State<Compat>,
    PrefectJson(body): PrefectJson<BlockTypeCreate>,
) -> Answer {
    if let Some(t) = type_by_slug(c.store.as_ref(), &body.slug).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("Block type with slug {:?} already exists", t.slug)));
    }
    let t = BlockType {
        slug: body.slug,
        name: body.name,
        description: body.description.unwrap_or_default(),
        schema: json!({"type": "object", "properties": {}}),
    };
    c.store.register_block_types(std::slice::from_ref(&t)).await?;
    Ok((StatusCode::CREATED, Json(block_type_json(&t))))
}

/// `PATCH /block_types/{id}`: Prefect's client updates a type it finds
/// registered; the description is the only part Headwater keeps.
pub(super) async fn update_block_type(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
    PrefectJson(body): PrefectJson<serde_json::Map<String, Value>>,
) -> Result<StatusCode, ApiError> {
    let mut t = type_by_id(c.store.as_ref(), id).await?.ok_or_else(|| ApiError::not_found("Block type not found"))?;
    if let Some(d) = body.get("description").and_then(Value::as_str) {
        if !is_builtin(&t.slug) && d != t.description {
            t.description = d.to_string();
            c.store.register_block_types(std::slice::from_ref(&t)).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /block_schemas/checksum/{checksum}`: found only for the schema a
/// type has now (Headwater keeps one per type).
pub(super) async fn read_block_schema_by_checksum(State(c): State<Compat>, Path(checksum): Path<String>) -> Answer {
    let types = c.store.list_block_types().await?;
    let t = types
        .iter()
        .find(|t| schema_checksum(t) == checksum)
        .ok_or_else(|| ApiError::not_found("Block schema not found"))?;
    Ok((StatusCode::OK, Json(block_schema_json(t))))
}

#[derive(Deserialize)]
pub(super) struct BlockSchemaCreate {
    fields: Value,
    block_type_id: Uuid,
}

/// `POST /block_schemas/`: the type's schema from now on — except for
/// Headwater's own types, which keep theirs.
pub(super) async fn create_block_schema(
    State(c): State<Compat>,
    PrefectJson(body): PrefectJson<BlockSchemaCreate>,
) -> Answer {
    let mut t = type_by_id(c.store.as_ref(), body.block_type_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("block_type_id: no block type with id {}", body.block_type_id)))?;
    if !body.fields.is_object() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "fields: a JSON Schema object"));
    }
    if !is_builtin(&t.slug) && t.schema != body.fields {
        t.schema = body.fields;
        c.store.register_block_types(std::slice::from_ref(&t)).await?;
    }
    Ok((StatusCode::CREATED, Json(block_schema_json(&t))))
}

#[derive(Deserialize)]
pub(super) struct BlockDocumentCreate {
    #[serde(default)]
    name: Option<String>,
    data: Value,
    block_type_id: Uuid,
}

/// `POST /block_documents/`: saved through Headwater's store (checked
/// against the type, secrets sealed); 409 if the name is taken, as Prefect
/// answers (its client then updates the document when asked to overwrite).
pub(super) async fn create_block_document(
    State(c): State<Compat>,
    PrefectJson(body): PrefectJson<BlockDocumentCreate>,
) -> Answer {
    let store = c.store.as_ref();
    let t = type_by_id(store, body.block_type_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("block_type_id: no block type with id {}", body.block_type_id)))?;
    let name = body.name.filter(|n| !n.is_empty()).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "name: Headwater keeps named blocks only (no anonymous ones)")
    })?;
    if store.read_block(&name, false).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Block already exists: a block named {name:?} exists"),
        ));
    }
    let saved = save(store, &t, name, body.data).await?;
    Ok((StatusCode::CREATED, Json(block_document_json(&saved, &t))))
}

async fn save(store: &dyn Store, t: &BlockType, name: String, data: Value) -> Result<BlockDocument, ApiError> {
    let now = Utc::now();
    let doc = BlockDocument { name, block_type: t.slug.clone(), data, created: now, updated: now };
    headwater_core::validate_block(&doc, t)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("data: {e}")))?;
    Ok(store.save_block(&doc).await?)
}

#[derive(Deserialize)]
pub(super) struct BlockDocumentUpdate {
    data: Value,
}

/// `PATCH /block_documents/{id}`: new data (a masked secret keeps its value).
pub(super) async fn update_block_document(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
    PrefectJson(body): PrefectJson<BlockDocumentUpdate>,
) -> Result<StatusCode, ApiError> {
    let store = c.store.as_ref();
    let doc = document_by_id(store, id).await?;
    let t = type_by_slug(store, &doc.block_type).await?.ok_or_else(|| ApiError::not_found("Block type not found"))?;
    save(store, &t, doc.name, body.data).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn document_by_id(store: &dyn Store, id: Uuid) -> Result<BlockDocument, ApiError> {
    store
        .list_blocks()
        .await?
        .into_iter()
        .find(|d| document_id(&d.name) == id)
        .ok_or_else(|| ApiError::not_found("Block document not found"))
}

#[derive(Deserialize)]
pub(super) struct Secrets {
    #[serde(default)]
    include_secrets: bool,
}

/// Answers one document, opened only when asked (`include_secrets=true`;
/// with API keys configured, only a caller with a key gets this far).
async fn answer_document(store: &dyn Store, name: &str, slug: Option<&str>, reveal: bool) -> Answer {
    let doc = store.read_block(name, reveal).await?.filter(|d| slug.is_none_or(|s| d.block_type == s));
    let doc = doc.ok_or_else(|| ApiError::not_found("Block document not found"))?;
    let t = type_by_slug(store, &doc.block_type).await?.ok_or_else(|| ApiError::not_found("Block type not found"))?;
    Ok((StatusCode::OK, Json(block_document_json(&doc, &t))))
}

/// `GET /block_types/slug/{slug}/block_documents/name/{name}` (`Block.load`).
pub(super) async fn read_block_document_by_name(
    State(c): State<Compat>,
    Path((slug, name)): Path<(String, String)>,
    Query(q): Query<Secrets>,
) -> Answer {
    answer_document(c.store.as_ref(), &name, Some(&slug), q.include_secrets).await
}

pub(super) async fn read_block_document(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
    Query(q): Query<Secrets>,
) -> Answer {
    let doc = document_by_id(c.store.as_ref(), id).await?;
    answer_document(c.store.as_ref(), &doc.name, None, q.include_secrets).await
}

pub(super) async fn delete_block_document(
    State(c): State<Compat>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let doc = document_by_id(c.store.as_ref(), id).await?;
    c.store.delete_block(&doc.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /block_documents/filter` (`prefect block ls`): every block,
/// secrets masked.
pub(super) async fn filter_block_documents(State(c): State<Compat>) -> Answer {
    let store = c.store.as_ref();
    let types = store.list_block_types().await?;
    let docs: Vec<Value> = store
        .list_blocks()
        .await?
        .iter()
        .filter_map(|d| types.iter().find(|t| t.slug == d.block_type).map(|t| block_document_json(d, t)))
        .collect();
    Ok((StatusCode::OK, Json(Value::Array(docs))))
}

pub(super) async fn filter_block_types(State(c): State<Compat>) -> Answer {
    let types = c.store.list_block_types().await?;
    Ok((StatusCode::OK, Json(Value::Array(types.iter().map(block_type_json).collect()))))
}
