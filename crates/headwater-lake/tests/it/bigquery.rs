//! The BigQuery client against a stand-in for Google's token endpoint and
//! the BigQuery jobs API on loopback (BigQuery itself cannot run here). The
//! stand-in checks what Google would: the token request's JWT is signed by
//! the service account's key (verified with its public key) for the right
//! audience and scope, and every API call carries the token it issued. What
//! is not tested here: BigQuery's own execution of the jobs.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use headwater_blocks::{BigQueryWarehouse, GcpCredentials, Secret};
use headwater_lake::bigquery::BigQuery;
use serde_json::{json, Value};

#[derive(Default)]
struct Seen {
    tokens_issued: usize,
    jobs: Vec<Value>,
    polls: usize,
}

#[derive(Clone)]
struct Fake {
    public_key: Arc<Vec<u8>>,
    token_uri: String,
    seen: Arc<Mutex<Seen>>,
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()
}

async fn token(State(f): State<Fake>, Form(form): Form<Vec<(String, String)>>) -> (StatusCode, Json<Value>) {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("grant_type"), "urn:ietf:params:oauth:grant-type:jwt-bearer");
    let jwt = get("assertion");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &*f.public_key);
    if key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &unb64(parts[2])).is_err() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "bad signature"})),
        );
    }
    let header: Value = serde_json::from_slice(&unb64(parts[0])).unwrap();
    let claims: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "loader@taxi-project.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], f.token_uri);
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/bigquery");
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    f.seen.lock().unwrap().tokens_issued += 1;
    (StatusCode::OK, Json(json!({"access_token": "token-1", "expires_in": 3600, "token_type": "Bearer"})))
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer token-1")
}

async fn insert_job(
    State(f): State<Fake>,
    Path(project): Path<String>,
    headers: HeaderMap,
    Json(job): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "Request had invalid credentials."}})));
    }
    assert_eq!(project, "taxi-project");
    assert_eq!(job["jobReference"]["location"], "EU");
    f.seen.lock().unwrap().jobs.push(job.clone());
    (StatusCode::OK, Json(json!({"jobReference": job["jobReference"], "status": {"state": "PENDING"}})))
}

async fn get_job(
    State(f): State<Fake>,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "Request had invalid credentials."}})));
    }
    let mut seen = f.seen.lock().unwrap();
    seen.polls += 1;
    let job = seen.jobs.iter().find(|j| j["jobReference"]["jobId"] == id.as_str()).cloned().unwrap();
    let config = &job["configuration"];
    // Each job runs for one poll, then is done.
    let polled_before = seen.polls % 2 == 1;
    if polled_before {
        return (StatusCode::OK, Json(json!({"jobReference": job["jobReference"], "status": {"state": "RUNNING"}})));
    }
    let query = config["query"]["query"].as_str().unwrap_or("");
    if query.contains("broken_table") {
        return (
            StatusCode::OK,
            Json(json!({"jobReference": job["jobReference"], "status": {"state": "DONE",
                "errorResult": {"reason": "notFound", "message": "Not found: Table taxi-project:trips.broken_table"}}})),
        );
    }
    let statistics = if config.get("load").is_some() { json!({"load": {"outputRows": "1369765"}}) } else { json!({}) };
    (
        StatusCode::OK,
        Json(json!({"jobReference": job["jobReference"], "status": {"state": "DONE"}, "statistics": statistics})),
    )
}

/// A 2048-bit RSA key as PKCS#8 PEM, made by openssl for this run.
fn rsa_key(path: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(path)
        .output()
        .expect("openssl makes the test's RSA key");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn a_month_is_loaded_from_gcs_and_swapped_in_by_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let pem = rsa_key(&dir.path().join("key.pem"));
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(der).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    use ring::signature::KeyPair;
    let public_key = pair.public_key().as_ref().to_vec();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let fake = Fake { public_key: Arc::new(public_key), token_uri: format!("{base}/token"), seen: Arc::default() };
    let app = Router::new()
        .route("/token", post(token))
        .route("/bigquery/v2/projects/{project}/jobs", post(insert_job))
        .route("/bigquery/v2/projects/{project}/jobs/{id}", get(get_job))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let key_json = json!({
        "type": "service_account",
        "project_id": "taxi-project",
        "client_email": "loader@taxi-project.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": fake.token_uri,
    });
    let block = BigQueryWarehouse {
        project: "taxi-project".into(),
        dataset: "trips".into(),
        location: Some("EU".into()),
        staging_uri: None,
        gcp_credentials: Some(GcpCredentials {
            service_account_info: Some(Secret::new(key_json.to_string())),
            project: None,
        }),
        api_endpoint: Some(base.clone()),
    };
    let bq = BigQuery::from_block(&block).unwrap().with_poll_interval(Duration::from_millis(10));
    let uri = "gs://taxi-lake/yellow/year=2021/month=01/data.parquet";
    assert_eq!(bq.replace_month("yellow_trips", uri, 2021, 1).await.unwrap(), 1_369_765);

    let jobs = fake.seen.lock().unwrap().jobs.clone();
    assert_eq!(jobs.len(), 2, "a load job, then the swap: {jobs:#?}");
    let load = &jobs[0]["configuration"]["load"];
    assert_eq!(load["sourceUris"], json!([uri]));
    assert_eq!(load["sourceFormat"], "PARQUET");
    assert_eq!(load["writeDisposition"], "WRITE_TRUNCATE");
    assert_eq!(
        load["destinationTable"],
        json!({"projectId": "taxi-project", "datasetId": "trips", "tableId": "_stage_yellow_trips_2021_01"})
    );
    let swap = jobs[1]["configuration"]["query"]["query"].as_str().unwrap();
    let at = |s: &str| swap.find(s).unwrap_or_else(|| panic!("{s} missing from {swap}"));
    assert!(
        at("BEGIN TRANSACTION") < at("DELETE FROM `taxi-project.trips.yellow_trips` WHERE year = 2021 AND month = 1")
    );
    assert!(at("DELETE FROM") < at("INSERT INTO `taxi-project.trips.yellow_trips`"));
    assert!(at("INSERT INTO") < at("COMMIT TRANSACTION") && at("COMMIT TRANSACTION") < at("DROP TABLE"));
    assert_eq!(jobs[1]["configuration"]["query"]["useLegacySql"], false);
    assert_eq!(fake.seen.lock().unwrap().tokens_issued, 1, "the token is kept, not asked for per call");

    // A failed job's own message reaches the caller.
    let err = bq.query("SELECT * FROM broken_table").await.unwrap_err().to_string();
    assert!(err.contains("Not found: Table taxi-project:trips.broken_table") && err.contains("notFound"), "{err}");
    // Loads read from GCS only, and table names cannot smuggle SQL.
    let err = bq.replace_month("t", "s3://elsewhere/x.parquet", 2021, 1).await.unwrap_err().to_string();
    assert!(err.contains("not a gs:// URI"), "{err}");
    let err = bq.replace_month("t; DROP", uri, 2021, 1).await.unwrap_err().to_string();
    assert!(err.contains("not a table name"), "{err}");

    // A key the token endpoint does not know: its refusal, in words.
    let other = rsa_key(&dir.path().join("other.pem"));
    let mut wrong = key_json.clone();
    wrong["private_key"] = json!(other);
    let mut block2 = block.clone();
    block2.gcp_credentials.as_mut().unwrap().service_account_info = Some(Secret::new(wrong.to_string()));
    let err = BigQuery::from_block(&block2).unwrap().query("SELECT 1").await.unwrap_err().to_string();
    assert!(err.contains("bad signature"), "{err}");

    // No credentials: what to add.
    let mut bare = block.clone();
    bare.gcp_credentials = None;
    let err = BigQuery::from_block(&bare).err().unwrap().to_string();
    assert!(err.contains("gcp_credentials.service_account_info"), "{err}");
}
