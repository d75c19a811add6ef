//! The lake: an object store (a local folder, S3 or an S3-compatible
//! server, GCS, Azure Blob) holding datasets as Parquet, one file per
//! partition. Files are uploaded whole or not at all (a multipart upload
//! becomes visible only when complete; a local file is renamed into place),
//! and a partition's file has a fixed name, so writing a month again
//! replaces it instead of adding a second copy.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use headwater_blocks::{AzureBlobContainer, GcsBucket, LocalFileSystem, S3Bucket};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::LakeError;

/// Upload part size: memory per upload stays at a few of these.
const PART: usize = 8 * 1024 * 1024;

/// Removes the parts (`name#N`) that killed uploads of a local lake left
/// beside `file`. Readers never see them; an hour's age keeps a concurrent
/// upload of the same file safe.
fn sweep_abandoned_parts(file: &Path) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for e in entries.flatten() {
        let entry_name = e.file_name().to_string_lossy().to_string();
        let part = entry_name
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('#'))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        let abandoned = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < old);
        if part && abandoned {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// What the lake is, for messages: `file:///data/lake`, `s3://taxi/lake`.
    pub uri: String,
    /// The folder of a local lake.
    local_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").field("uri", &self.uri).finish()
    }
}

fn store_err(e: object_store::Error) -> LakeError {
    LakeError::Store(e)
}

impl Lake {
    /// A folder on this machine (created if missing).
    pub fn local(dir: &Path) -> Result<Lake, LakeError> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(store_err)?;
        Ok(Lake {
            store: Arc::new(store),
            prefix: ObjectPath::default(),
            uri: format!("file://{}", dir.display()),
            local_root: Some(dir),
        })
    }

    /// The lake a block's data describes, by its type: `local-file-system`,
    /// `s3-bucket`, `gcs-bucket` or `azure-blob-container` (the blocks it
    /// names filled in, secrets revealed).
    pub fn from_block(name: &str, block_type: &str, data: serde_json::Value) -> Result<Lake, LakeError> {
        let parse = |e: serde_json::Error| LakeError::Block(format!("block '{name}' ({block_type}): {e}"));
        match block_type {
            "local-file-system" => Lake::from_local_block(&serde_json::from_value(data).map_err(parse)?),
            "s3-bucket" => Lake::from_s3(&serde_json::from_value(data).map_err(parse)?),
            "gcs-bucket" => Lake::from_gcs(&serde_json::from_value(data).map_err(parse)?),
            "azure-blob-container" => Lake::from_azure(&serde_json::from_value(data).map_err(parse)?),
            other => Err(LakeError::Block(format!(
                "block '{name}' is a {other}; a lake is a local-file-system, s3-bucket, gcs-bucket or azure-blob-container"
            ))),
        }
    }

    pub fn from_local_block(b: &LocalFileSystem) -> Result<Lake, LakeError> {
        Lake::local(Path::new(&b.basepath))
    }

    /// An S3 bucket, or an S3-compatible server when the credentials give an
    /// `endpoint_url` (plain http allowed for a server on loopback).
    pub fn from_s3(b: &S3Bucket) -> Result<Lake, LakeError> {
        let mut builder = object_store::aws::AmazonS3Builder::new().with_bucket_name(&b.bucket_name);
        let creds = b.credentials.clone().unwrap_or_default();
        if let Some(k) = &creds.aws_access_key_id {
            builder = builder.with_access_key_id(k);
        }
        if let Some(s) = &creds.aws_secret_access_key {
            builder = builder.with_secret_access_key(s.reveal());
        }
        if let Some(t) = &creds.aws_session_token {
            builder = builder.with_token(t.reveal());
        }
        builder = builder.with_region(creds.region_name.as_deref().unwrap_or("us-east-1"));
        if let Some(endpoint) = &creds.endpoint_url {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(store_err)?;
        let prefix = b.bucket_folder.clone().unwrap_or_default();
        Ok(Lake {
            store: Arc::new(store),
            uri: format!("s3://{}/{}", b.bucket_name, prefix.trim_matches('/')),
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            local_root: None,
        })
    }

    pub fn from_gcs(b: &GcsBucket) -> Result<Lake, LakeError> {
        let mut builder = object_store::gcp::GoogleCloudStorageBuilder::new().with_bucket_name(&b.bucket);
        if let Some(key) = b.gcp_credentials.as_ref().and_then(|c| c.service_account_info.as_ref()) {
            builder = builder.with_service_account_key(key.reveal());
        }
        let store = builder.build().map_err(store_err)?;
        let prefix = b.bucket_folder.clone().unwrap_or_default();
        Ok(Lake {
            store: Arc::new(store),
            uri: format!("gs://{}/{}", b.bucket, prefix.trim_matches('/')),
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            local_root: None,
        })
    }

    pub fn from_azure(b: &AzureBlobContainer) -> Result<Lake, LakeError> {
        let mut builder = object_store::azure::MicrosoftAzureBuilder::new().with_container_name(&b.container_name);
        if let Some(c) = &b.credentials {
            builder = builder.with_account(&c.account_name);
            if let Some(k) = &c.account_key {
                builder = builder.with_access_key(k.reveal());
            }
        }
        let store = builder.build().map_err(store_err)?;
        let prefix = b.folder.clone().unwrap_or_default();
        Ok(Lake {
            store: Arc::new(store),
            uri: format!("az://{}/{}", b.container_name, prefix.trim_matches('/')),
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            local_root: None,
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        let key = key.trim_start_matches('/');
        if self.prefix.as_ref().is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Where `key` is, for messages and catalogs.
    pub fn uri_of(&self, key: &str) -> String {
        format!("{}/{}", self.uri.trim_end_matches('/'), key.trim_start_matches('/'))
    }

    /// Uploads a local file under `key`, streaming: it becomes visible
    /// whole, replacing what was there. Returns its size.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<u64, LakeError> {
        let upload = self.store.put_multipart(&self.path(key)).await.map_err(store_err)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut f = tokio::fs::File::open(file).await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n as u64;
            writer.wait_for_capacity(4).await.map_err(store_err)?;
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(store_err)?;
        if let Some(root) = &self.local_root {
            sweep_abandoned_parts(&root.join(self.path(key).as_ref()));
        }
        Ok(total)
    }

    /// Downloads `key` to a local file (written aside, then renamed).
    pub async fn get_to_file(&self, key: &str, dest: &Path) -> Result<u64, LakeError> {
        let got = self.store.get(&self.path(key)).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => LakeError::NotFound(self.uri_of(key)),
            other => store_err(other),
        })?;
        let tmp = dest.with_extension("download");
        let mut out = tokio::fs::File::create(&tmp).await?;
        let mut stream = got.into_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(store_err)?;
            total += chunk.len() as u64;
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        tokio::fs::rename(&tmp, dest).await?;
        Ok(total)
    }

    pub async fn exists(&self, key: &str) -> Result<bool, LakeError> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Keys (relative to the lake) and sizes under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, LakeError> {
        let base = self.path(prefix);
        let mut out = Vec::new();
        let mut items = self.store.list(Some(&base));
        while let Some(item) = items.next().await {
            let meta = item.map_err(store_err)?;
            let full = meta.location.to_string();
            let rel = match self.prefix.as_ref() {
                "" => full,
                p => full.strip_prefix(&format!("{p}/")).unwrap_or(&full).to_string(),
            };
            out.push((rel, meta.size));
        }
        out.sort();
        Ok(out)
    }

    pub async fn delete(&self, key: &str) -> Result<(), LakeError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }
}
