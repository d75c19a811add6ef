//! Named API keys with roles, made and revoked with the CLI, checked by a
//! real server, and the audit log of what each key changed.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::automations::{hw_at, ok_at, start_server, stop_server, wait_for};
use super::{hw, ok};

fn secret_of(out: &str) -> String {
    let secret = out.trim().to_string();
    assert!(secret.starts_with("hw_") && secret.len() == 67, "{out}");
    secret
}

/// Every byte of the database's files, to look for what must not be there.
fn database_bytes(home: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(home).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("headwater.db") {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!all.is_empty(), "the database is in {}", home.display());
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_have_roles_are_revoked_at_once_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // Made in the embedded database, before any server runs.
    let run = secret_of(&ok(home, &["api-key", "create", "ci-run", "--role", "run"]));
    let read = secret_of(&ok(home, &["api-key", "create", "dash", "--role", "read"]));
    let admin = secret_of(&ok(home, &["api-key", "create", "ops", "--role", "admin"]));
    let taken = hw(home, &["api-key", "create", "dash", "--role", "admin"]);
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("exists already"), "{taken:?}");
    let bad_role = hw(home, &["api-key", "create", "x", "--role", "owner"]);
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("read, run or admin"), "{bad_role:?}");
    let listed = ok(home, &["api-key", "ls"]);
    for (name, secret) in [("ci-run", &run), ("dash", &read), ("ops", &admin)] {
        assert!(listed.contains(name) && listed.contains(&secret[..11]), "{listed}");
        assert!(!listed.contains(&secret[11..]), "a key is shown once only: {listed}");
    }
    let stored = database_bytes(home);
    for secret in [&run, &read, &admin] {
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "only a hash is stored");
    }

    let server = start_server(home);
    let url = server.url.clone();
    let with = |key: &str| vec![("HEADWATER_API_KEY", key.to_string())];
    let env = |pairs: &[(&'static str, String)]| pairs.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let call = |args: &[&str], key: Option<&str>| {
        let pairs = key.map(with).unwrap_or_default();
        let pairs = env(&pairs);
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hw_at(home, &url, args, &refs)
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();

    // No key: refused, now that keys exist.
    let anonymous = call(&["flow-run", "ls"], None);
    assert!(!anonymous.status.success() && stderr(&anonymous).contains("requires an API key"), "{anonymous:?}");
    // Read: reads, but changes nothing.
    assert!(call(&["flow-run", "ls"], Some(&read)).status.success());
    let refused = call(&["variable", "set", "region", "eu"], Some(&read));
    assert!(!refused.status.success(), "{refused:?}");
    assert!(stderr(&refused).contains("has the role read; PUT /api/variables needs admin"), "{}", stderr(&refused));
    // Run: reports runs (an empty batch is a report of nothing), but does not configure.
    headwater_client::install_tls_provider();
    let http = reqwest::Client::new();
    let batch = |key: &str| http.post(format!("{url}/batches")).bearer_auth(key).json(&serde_json::json!({})).send();
    assert_eq!(batch(&run).await.unwrap().status(), 200);
    assert_eq!(batch(&read).await.unwrap().status(), 403);
    assert!(!call(&["variable", "set", "region", "eu"], Some(&run)).status.success());
    // Prefect's auth string `user:KEY` is a key too.
    let basic = http.post(format!("{url}/batches")).basic_auth("prefect", Some(&run)).json(&serde_json::json!({}));
    assert_eq!(basic.send().await.unwrap().status(), 200);
    // Admin: everything.
    ok_at(home, &url, &["variable", "set", "region", "eu"], &[("HEADWATER_API_KEY", admin.as_str())]);
    assert_eq!(http.get(format!("{url}/audit")).bearer_auth(&read).send().await.unwrap().status(), 403);

    // Revoked: refused at the next call.
    ok_at(home, &url, &["api-key", "revoke", "ci-run"], &[("HEADWATER_API_KEY", admin.as_str())]);
    assert_eq!(batch(&run).await.unwrap().status(), 401);

    // The audit log: who changed what, refusals included, reads not.
    let audit = |args: &[&str]| -> Vec<Value> {
        let out =
            ok_at(home, &url, &[&["audit", "ls", "--json"], args].concat(), &[("HEADWATER_API_KEY", admin.as_str())]);
        serde_json::from_str(&out).unwrap()
    };
    let has = |entries: &[Value], key: &str, call: &str, status: u64| {
        entries.iter().any(|e| {
            e["key"] == key
                && format!("{} {}", e["method"].as_str().unwrap(), e["path"].as_str().unwrap()) == call
                && e["status"] == status
        })
    };
    wait_for("the revoke in the audit log", Duration::from_secs(10), || {
        has(&audit(&[]), "ops", "POST /api/api_keys/ci-run/revoke", 200)
    })
    .await;
    let entries = audit(&[]);
    assert!(has(&entries, "ops", "PUT /api/variables", 200), "{entries:#?}");
    assert!(has(&entries, "dash", "PUT /api/variables", 403), "{entries:#?}");
    assert!(has(&entries, "ci-run", "POST /api/batches", 200), "{entries:#?}");
    assert!(has(&entries, "dash", "POST /api/batches", 403), "{entries:#?}");
    assert!(!entries.iter().any(|e| e["method"] == "GET"), "reads are not audited: {entries:#?}");
    let of_dash = audit(&["--key", "dash"]);
    assert!(!of_dash.is_empty() && of_dash.iter().all(|e| e["key"] == "dash"), "{of_dash:#?}");
    let table = ok_at(home, &url, &["audit", "ls"], &[("HEADWATER_API_KEY", admin.as_str())]);
    assert!(table.contains("PUT /api/variables") && table.contains("403"), "{table}");
    stop_server(server);

    // The log is in the database: readable without the server too.
    let local = ok(home, &["audit", "ls", "--key", "ops", "--json"]);
    assert!(local.contains("/api/api_keys/ci-run/revoke"), "{local}");
    let listed = ok(home, &["api-key", "ls", "--json"]);
    let keys: Vec<Value> = serde_json::from_str(&listed).unwrap();
    let revoked = keys.iter().find(|k| k["name"] == "ci-run").unwrap();
    assert!(revoked["revoked"].is_string(), "{revoked}");
}
