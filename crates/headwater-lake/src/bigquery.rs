//! BigQuery through its REST API: load jobs that read the lake's Parquet
//! from GCS, and query jobs for SQL. A month is replaced the way the DuckDB
//! warehouse does it: loaded into a staging table, then swapped in by one
//! transaction (delete the month, insert the stage), so readers never see
//! half a month and a re-run never doubles one.
//!
//! Authentication is a service account key (the `gcp-credentials` block):
//! a JWT signed with its RSA key (RS256, `ring`) is exchanged at its
//! `token_uri` for an access token, kept until shortly before it expires.
//! `api_endpoint` on the block points at another server (an emulator).

use std::time::{Duration, Instant};

use base64::Engine as _;
use headwater_blocks::BigQueryWarehouse;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::LakeError;

const DEFAULT_API: &str = "https://bigquery.googleapis.com";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// The parts of a service account key file that sign tokens.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

/// What to do with the rows a load job finds in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteDisposition {
    Append,
    Truncate,
}

/// A BigQuery dataset, as a `bigquery-warehouse` block describes it.
pub struct BigQuery {
    http: reqwest::Client,
    api: String,
    project: String,
    dataset: String,
    location: Option<String>,
    email: String,
    key: ring::signature::RsaKeyPair,
    token_uri: String,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
    poll: Duration,
}

fn bq_err(what: impl std::fmt::Display) -> LakeError {
    LakeError::Data(format!("BigQuery: {what}"))
}

fn table_name(name: &str) -> Result<&str, LakeError> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(bq_err(format!("'{name}' is not a table name (letters, digits and '_')")))
    }
}

/// The DER bytes of a PEM block (`-----BEGIN PRIVATE KEY-----` …).
fn pem_der(pem: &str) -> Result<Vec<u8>, LakeError> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| bq_err("the service account's private_key is not a PEM key"))
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl BigQuery {
    /// The dataset of a block. Needs `gcp_credentials.service_account_info`
    /// (a service account key's JSON).
    pub fn from_block(block: &BigQueryWarehouse) -> Result<BigQuery, LakeError> {
        // HTTPS through rustls needs its process-wide provider (a second install changes nothing).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let info = block.gcp_credentials.as_ref().and_then(|c| c.service_account_info.as_ref()).ok_or_else(|| {
            bq_err("the block needs gcp_credentials.service_account_info (a service account key's JSON)")
        })?;
        let account: ServiceAccount = serde_json::from_str(info.reveal())
            .map_err(|e| bq_err(format!("service_account_info is not a service account key: {e}")))?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(&pem_der(&account.private_key)?)
            .map_err(|e| bq_err(format!("the service account's private_key cannot sign: {e}")))?;
        Ok(BigQuery {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .map_err(|e| bq_err(e.to_string()))?,
            api: block.api_endpoint.clone().unwrap_or_else(|| DEFAULT_API.into()).trim_end_matches('/').to_string(),
            project: block.project.clone(),
            dataset: table_name(&block.dataset)?.to_string(),
            location: block.location.clone(),
            email: account.client_email,
            key,
            token_uri: account.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.into()),
            token: tokio::sync::Mutex::new(None),
            poll: Duration::from_millis(500),
        })
    }

    /// How often a running job is asked about (tests shorten it).
    pub fn with_poll_interval(mut self, every: Duration) -> BigQuery {
        self.poll = every;
        self
    }

    /// `project.dataset.table`, quoted for GoogleSQL.
    fn qualified(&self, table: &str) -> String {
        format!("`{}.{}.{}`", self.project, self.dataset, table)
    }

    async fn access_token(&self) -> Result<String, LakeError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let now = chrono::Utc::now().timestamp();
        let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = b64url(
            json!({"iss": self.email, "scope": SCOPE, "aud": self.token_uri, "iat": now, "exp": now + 3600})
                .to_string()
                .as_bytes(),
        );
        let signed = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| bq_err("signing the token request failed"))?;
        let assertion = format!("{signed}.{}", b64url(&signature));
        let response = self
            .http
            .post(&self.token_uri)
            .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)])
            .send()
            .await
            .map_err(|e| bq_err(format!("asking {} for a token: {e}", self.token_uri)))?;
        let body = answer(response, "the token request").await?;
        let token =
            body["access_token"].as_str().ok_or_else(|| bq_err("the token answer has no access_token"))?.to_string();
        let lifetime = body["expires_in"].as_u64().unwrap_or(3600);
        // Renewed a minute early, so no request carries a token about to lapse.
        *cached = Some((token.clone(), Instant::now() + Duration::from_secs(lifetime.saturating_sub(60))));
        Ok(token)
    }

    /// Starts a job and waits until it is done; its final resource.
    async fn run_job(&self, configuration: Value) -> Result<Value, LakeError> {
        let job_id = format!("headwater_{}", uuid::Uuid::now_v7().simple());
        let mut reference = json!({"projectId": self.project, "jobId": job_id});
        if let Some(loc) = &self.location {
            reference["location"] = json!(loc);
        }
        let jobs = format!("{}/bigquery/v2/projects/{}/jobs", self.api, self.project);
        let token = self.access_token().await?;
        let response = self
            .http
            .post(&jobs)
            .bearer_auth(&token)
            .json(&json!({"jobReference": reference, "configuration": configuration}))
            .send()
            .await
            .map_err(|e| bq_err(format!("starting a job at {jobs}: {e}")))?;
        let mut job = answer(response, "starting a job").await?;
        let mut wait = self.poll;
        while job["status"]["state"] != "DONE" {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            let mut get = self.http.get(format!("{jobs}/{job_id}")).bearer_auth(self.access_token().await?);
            if let Some(loc) = &self.location {
                get = get.query(&[("location", loc)]);
            }
            let response = get.send().await.map_err(|e| bq_err(format!("asking about job {job_id}: {e}")))?;
            job = answer(response, "asking about a job").await?;
        }
        if let Some(error) = job["status"].get("errorResult") {
            return Err(bq_err(format!(
                "job {job_id} failed: {} ({})",
                error["message"].as_str().unwrap_or("no message"),
                error["reason"].as_str().unwrap_or("no reason")
            )));
        }
        Ok(job)
    }

    /// Runs GoogleSQL (one statement or a script) and waits for it.
    pub async fn query(&self, sql: &str) -> Result<(), LakeError> {
        self.run_job(json!({"query": {"query": sql, "useLegacySql": false}})).await.map(|_| ())
    }

    /// Loads Parquet files (`gs://…` URIs, globs allowed) into `table`,
    /// created from the files' schema if missing. Returns the rows loaded.
    pub async fn load_parquet(
        &self,
        table: &str,
        uris: &[String],
        disposition: WriteDisposition,
    ) -> Result<u64, LakeError> {
        if let Some(bad) = uris.iter().find(|u| !u.starts_with("gs://")) {
            return Err(bq_err(format!("load jobs read from Google Cloud Storage; '{bad}' is not a gs:// URI")));
        }
        let job = self
            .run_job(json!({"load": {
                "sourceUris": uris,
                "sourceFormat": "PARQUET",
                "destinationTable": {"projectId": self.project, "datasetId": self.dataset, "tableId": table_name(table)?},
                "createDisposition": "CREATE_IF_NEEDED",
                "writeDisposition": match disposition {
                    WriteDisposition::Append => "WRITE_APPEND",
                    WriteDisposition::Truncate => "WRITE_TRUNCATE",
                },
            }}))
            .await?;
        let rows = &job["statistics"]["load"]["outputRows"];
        // The API sends int64 values as strings.
        rows.as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| rows.as_u64())
            .ok_or_else(|| bq_err("the finished load job reports no outputRows"))
    }

    /// Replaces month `(year, month)` of `table` with the rows of `uri`
    /// (the lake's Parquet for that month), adding `year` and `month`
    /// columns. Returns the rows loaded.
    pub async fn replace_month(&self, table: &str, uri: &str, year: i32, month: u32) -> Result<u64, LakeError> {
        let target = self.qualified(table_name(table)?);
        let stage_name = format!("_stage_{table}_{year}_{month:02}");
        let rows = self.load_parquet(&stage_name, &[uri.to_string()], WriteDisposition::Truncate).await?;
        let stage = self.qualified(&stage_name);
        self.query(&format!(
            "CREATE TABLE IF NOT EXISTS {target} AS SELECT *, {year} AS year, {month} AS month FROM {stage} LIMIT 0;\n\
             BEGIN TRANSACTION;\n\
             DELETE FROM {target} WHERE year = {year} AND month = {month};\n\
             INSERT INTO {target} SELECT *, {year} AS year, {month} AS month FROM {stage};\n\
             COMMIT TRANSACTION;\n\
             DROP TABLE {stage};"
        ))
        .await?;
        Ok(rows)
    }
}

/// A 2xx answer's JSON, or an error with the API's own message.
async fn answer(response: reqwest::Response, doing: &str) -> Result<Value, LakeError> {
    let status = response.status();
    let text = response.text().await.map_err(|e| bq_err(format!("{doing}: {e}")))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["error"]["message"]
            .as_str()
            .or_else(|| body["error_description"].as_str())
            .or_else(|| body["error"].as_str())
            .unwrap_or(text.as_str());
        return Err(bq_err(format!("{doing}: HTTP {status}: {message}")));
    }
    if body.is_null() {
        return Err(bq_err(format!("{doing}: the answer is not JSON")));
    }
    Ok(body)
}
