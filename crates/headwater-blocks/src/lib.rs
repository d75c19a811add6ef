//! Block types: typed configuration and credentials saved under a name and
//! loaded by flows (`S3Bucket::load("taxi-lake")`). Each type is a Rust
//! struct; its JSON Schema (derived) is what the store checks blocks
//! against, and fields of type [`Secret`] are sealed at rest and shown as
//! `********`. A field holding another block (a bucket's credentials) may
//! be given inline or by name (`{"$block": "aws-prod"}`).

use std::collections::BTreeMap;
use std::fmt;

use headwater_core::BlockType;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A secret value: sealed by the store, `********` when printed or listed.
/// [`Secret::reveal`] is the one way to the text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret in clear, to hand to the system that needs it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(headwater_core::block::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(headwater_core::block::MASK)
    }
}

impl JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({"type": "string", "writeOnly": true, "format": "password"})
    }
}

/// A block type: a struct that can be saved and loaded by name.
pub trait Block: Serialize + DeserializeOwned + JsonSchema {
    /// The type's slug, e.g. `s3-bucket`.
    const TYPE: &'static str;
    const NAME: &'static str;
    const DESCRIPTION: &'static str;

    fn block_type() -> BlockType {
        BlockType {
            slug: Self::TYPE.to_string(),
            name: Self::NAME.to_string(),
            description: Self::DESCRIPTION.to_string(),
            schema: serde_json::to_value(schemars::schema_for!(Self)).expect("schemas serialize"),
        }
    }
}

macro_rules! block {
    ($t:ty, $slug:literal, $name:literal, $desc:literal) => {
        impl Block for $t {
            const TYPE: &'static str = $slug;
            const NAME: &'static str = $name;
            const DESCRIPTION: &'static str = $desc;
        }
    };
}

/// A folder on this machine (a lake, or results).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalFileSystem {
    /// The folder everything is relative to.
    pub basepath: String,
}
block!(LocalFileSystem, "local-file-system", "Local file system", "A folder on the machine that runs the flow.");

/// Credentials for AWS or an S3-compatible service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AwsCredentials {
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<Secret>,
    pub aws_session_token: Option<Secret>,
    pub region_name: Option<String>,
    /// For S3-compatible services (MinIO, moto, …): their URL.
    pub endpoint_url: Option<String>,
}
block!(AwsCredentials, "aws-credentials", "AWS credentials", "Access keys for AWS or an S3-compatible service.");

/// An S3 bucket (or a folder in it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Bucket {
    pub bucket_name: String,
    /// A folder inside the bucket that everything is relative to.
    pub bucket_folder: Option<String>,
    pub credentials: Option<AwsCredentials>,
}
block!(S3Bucket, "s3-bucket", "S3 bucket", "An Amazon S3 (or S3-compatible) bucket.");

/// Credentials for Google Cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpCredentials {
    /// The service account key file's JSON.
    pub service_account_info: Option<Secret>,
    pub project: Option<String>,
}
block!(GcpCredentials, "gcp-credentials", "GCP credentials", "A Google Cloud service account.");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcsBucket {
    pub bucket: String,
    pub bucket_folder: Option<String>,
    pub gcp_credentials: Option<GcpCredentials>,
}
block!(GcsBucket, "gcs-bucket", "GCS bucket", "A Google Cloud Storage bucket.");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureBlobCredentials {
    pub account_name: String,
    pub account_key: Option<Secret>,
    /// A SAS token, instead of the account key.
    pub sas_token: Option<Secret>,
}
block!(AzureBlobCredentials, "azure-blob-credentials", "Azure Blob credentials", "An Azure storage account's keys.");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureBlobContainer {
    pub container_name: String,
    pub folder: Option<String>,
    pub credentials: Option<AzureBlobCredentials>,
}
block!(AzureBlobContainer, "azure-blob-container", "Azure Blob container", "An Azure Blob Storage container.");

/// A PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConnection {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: Option<Secret>,
    /// The schema tables go in (default `public`).
    pub schema: Option<String>,
}
fn default_pg_port() -> u16 {
    5432
}
block!(PostgresConnection, "postgres-connection", "PostgreSQL connection", "A PostgreSQL database to load into.");

impl PostgresConnection {
    /// A connection URL (with the password, so never print it).
    pub fn url(&self) -> String {
        let auth = match &self.password {
            Some(p) => format!("{}:{}", encode(&self.username), encode(p.reveal())),
            None => encode(&self.username),
        };
        format!("postgres://{auth}@{}:{}/{}", self.host, self.port, encode(&self.database))
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An embedded DuckDB warehouse file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DuckDbWarehouse {
    /// The database file.
    pub path: String,
    pub schema: Option<String>,
}
block!(DuckDbWarehouse, "duckdb-warehouse", "DuckDB warehouse", "An embedded DuckDB database file.");

/// A BigQuery dataset, loaded through load jobs from GCS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BigQueryWarehouse {
    pub project: String,
    pub dataset: String,
    pub location: Option<String>,
    /// Where files are staged for load jobs (`gs://bucket/folder`).
    pub staging_uri: Option<String>,
    pub gcp_credentials: Option<GcpCredentials>,
    /// Another server speaking the BigQuery API (an emulator); Google's by default.
    pub api_endpoint: Option<String>,
}
block!(BigQueryWarehouse, "bigquery-warehouse", "BigQuery warehouse", "A Google BigQuery dataset.");

/// One secret value (an API token, a password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    pub value: Secret,
}
block!(SecretValue, "secret", "Secret", "A secret value, sealed at rest.");

/// A Slack incoming webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackWebhook {
    /// `https://hooks.slack.com/services/…` (the URL is the credential).
    pub url: Secret,
}
block!(SlackWebhook, "slack-webhook", "Slack webhook", "Posts messages to a Slack channel.");

/// A Microsoft Teams incoming webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MsTeamsWebhook {
    pub url: Secret,
}
block!(MsTeamsWebhook, "ms-teams-webhook", "Microsoft Teams webhook", "Posts messages to a Teams channel.");

/// Any JSON webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: Secret,
    /// Default POST.
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent as the Authorization header.
    pub authorization: Option<Secret>,
}
block!(Webhook, "webhook", "Webhook", "Calls any HTTP endpoint with a JSON body.");

/// An SMTP server to send email through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpServer {
    pub host: String,
    /// Default 587 (STARTTLS), 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS) or `none` (plain, for a
    /// relay on this machine).
    pub security: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The sender, e.g. `Headwater <alerts@example.com>`.
    pub from: String,
    /// Default recipients.
    #[serde(default)]
    pub to: Vec<String>,
}
block!(SmtpServer, "smtp-server", "SMTP server", "Sends email notifications through an SMTP server.");

/// How to run flows in a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerContainer {
    pub image: String,
    /// always, if_not_present (default) or never.
    pub pull_policy: Option<String>,
    pub network_mode: Option<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub auto_remove: Option<bool>,
}
block!(DockerContainer, "docker-container", "Docker container", "Image and settings for running flows in containers.");

/// Where a flow's code lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitRepository {
    pub repository: String,
    /// A branch, tag or commit.
    pub reference: Option<String>,
    /// An access token for private repositories.
    pub access_token: Option<Secret>,
}
block!(GitRepository, "git-repository", "Git repository", "A git repository holding flow code.");

/// Every block type Headwater ships.
pub fn builtin_types() -> Vec<BlockType> {
    vec![
        LocalFileSystem::block_type(),
        AwsCredentials::block_type(),
        S3Bucket::block_type(),
        GcpCredentials::block_type(),
        GcsBucket::block_type(),
        AzureBlobCredentials::block_type(),
        AzureBlobContainer::block_type(),
        PostgresConnection::block_type(),
        DuckDbWarehouse::block_type(),
        BigQueryWarehouse::block_type(),
        SecretValue::block_type(),
        SlackWebhook::block_type(),
        MsTeamsWebhook::block_type(),
        Webhook::block_type(),
        SmtpServer::block_type(),
        DockerContainer::block_type(),
        GitRepository::block_type(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use headwater_core::block::{mask, MASK};
    use headwater_core::{validate_block, BlockDocument};
    use serde_json::json;

    #[test]
    fn secret_fields_come_from_the_types() {
        let types = builtin_types();
        let secrets = |slug: &str| types.iter().find(|t| t.slug == slug).unwrap().secret_paths();
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            secrets("s3-bucket"),
            [p(&["credentials", "aws_secret_access_key"]), p(&["credentials", "aws_session_token"])]
        );
        assert_eq!(secrets("postgres-connection"), [p(&["password"])]);
        assert_eq!(secrets("slack-webhook"), [p(&["url"])]);
        assert!(secrets("local-file-system").is_empty());
        assert_eq!(secrets("smtp-server"), [p(&["password"])]);
        assert_eq!(types.len(), 17);
    }

    #[test]
    fn blocks_check_against_their_derived_schema() {
        let t = S3Bucket::block_type();
        let now = chrono::Utc::now();
        let doc = |data| BlockDocument {
            name: "lake".into(),
            block_type: "s3-bucket".into(),
            data,
            created: now,
            updated: now,
        };
        let good =
            json!({"bucket_name": "taxi", "credentials": {"aws_access_key_id": "AK", "aws_secret_access_key": "s"}});
        validate_block(&doc(good.clone()), &t).unwrap();
        validate_block(&doc(json!({"bucket_name": "taxi", "credentials": {"$block": "aws"}})), &t).unwrap();
        let e = validate_block(&doc(json!({"bucket": "taxi"})), &t).unwrap_err();
        assert!(e.contains("bucket_name: missing") || e.contains("bucket: unknown field"), "{e}");
        let masked = mask(&good, &t.secret_paths());
        assert_eq!(masked["credentials"]["aws_secret_access_key"], MASK);
        let bucket: S3Bucket = serde_json::from_value(good).unwrap();
        assert_eq!(format!("{:?}", bucket.credentials.unwrap().aws_secret_access_key.unwrap()), MASK);
    }

    #[test]
    fn postgres_urls_encode_their_parts() {
        let c = PostgresConnection {
            host: "db".into(),
            port: 5433,
            database: "taxi".into(),
            username: "etl".into(),
            password: Some(Secret::new("p@ss/word")),
            schema: None,
        };
        assert_eq!(c.url(), "postgres://etl:p%40ss%2Fword@db:5433/taxi");
    }
}
