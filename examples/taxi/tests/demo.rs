//! The taxi job end to end, offline: generated months served on loopback,
//! web → lake → DuckDB on embedded defaults, run twice.

use std::path::Path;
use std::process::Command;

const TAXI: &str = env!("CARGO_BIN_EXE_taxi");

fn taxi(home: &Path, args: &[&str]) -> String {
    let out = Command::new(TAXI)
        .args(args)
        .env("HEADWATER_HOME", home)
        .env("HEADWATER_LOGGING_CONSOLE", "false")
        .env_remove("HEADWATER_API_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{args:?}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn counts(stdout: &str) -> Vec<(String, u64)> {
    stdout
        .lines()
        .filter(|l| l.starts_with("  2021-"))
        .map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next().unwrap().to_string(), parts.next().unwrap().parse().unwrap())
        })
        .collect()
}

#[test]
fn the_demo_runs_end_to_end_and_again_without_duplicates() {
    let home = tempfile::tempdir().unwrap();
    let first = taxi(home.path(), &["demo", "--months", "1,2", "--rows", "20000"]);
    let got = counts(&first);
    assert_eq!(got.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), ["2021-01", "2021-02"], "{first}");
    for (month, rows) in &got {
        // About 7% of rows lack a passenger count and about 2% have zero: both dropped.
        assert!((17_000..19_500).contains(rows), "{month}: {rows}");
    }

    let again = taxi(home.path(), &["demo", "--months", "1,2", "--rows", "20000"]);
    assert_eq!(counts(&again), got, "re-running a month replaces it: the same rows, not twice as many");

    // The lake holds one file per month (and its quarantined rows), the catalog two versions each.
    let lake = home.path().join("taxi/lake/yellow/year=2021");
    for m in ["01", "02"] {
        let mut files: Vec<String> = std::fs::read_dir(lake.join(format!("month={m}")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        files.sort();
        assert_eq!(files, ["data.parquet", "rejects.csv"]);
        let rejects = std::fs::read_to_string(lake.join(format!("month={m}/rejects.csv"))).unwrap();
        assert_eq!(rejects.lines().count(), 1 + 5, "five malformed lines quarantined, with a header");
    }
}

/// The course's first pipeline: a month from "the web" into PostgreSQL
/// through a PostgreSQL block (password sealed, never logged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_web_to_postgres_loads_every_row() {
    use headwater::blocks::{BlockExt, PostgresConnection, Secret};
    use sqlx::Connection;

    let Some(db) = headwater_test_support::PgTestDb::create().await else { return };
    let home = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    let made = headwater_lake::generate::generate(
        "green",
        2020,
        11,
        4_000,
        3,
        &web.path().join("green/green_tripdata_2020-11.csv.gz"),
    )
    .unwrap();
    let server = headwater_lake::serve::FileServer::start(web.path(), 0).await.unwrap();
    // A role of its own with a password that cannot be mistaken for a word.
    let url: url_parts::Parts = url_parts::parse(&db.url);
    let role = format!("taxi_etl_{}", std::process::id());
    let password = format!("Pw-{}-xK9q", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(&format!("DROP ROLE IF EXISTS {role}")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("GRANT ALL ON SCHEMA public TO {role}")).execute(&mut admin).await.unwrap();
    let url = url_parts::Parts { user: role.clone(), password, ..url };
    // The block, saved as a user would from a program.
    let engine = headwater::Engine::with_home(home.path()).unwrap();
    engine
        .scope(
            PostgresConnection {
                host: url.host,
                port: url.port,
                database: url.database,
                username: url.user,
                password: Some(Secret::new(url.password.clone())),
                schema: None,
            }
            .save("taxi-postgres"),
        )
        .await
        .unwrap();
    drop(engine);
    let params = serde_json::json!({
        "color": "green", "year": 2020, "month": 11, "base_url": server.url(),
        "postgres": "taxi-postgres", "table": "green_taxi_trips"
    });
    let run = Command::new(TAXI)
        .args(["ingest-web-to-postgres", "--params", &params.to_string()])
        .env("HEADWATER_HOME", home.path())
        .env_remove("HEADWATER_API_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("inserted 4000 rows into green_taxi_trips"), "{stderr}");
    assert!(!stderr.contains(&url.password), "the password never shows");
    let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM green_taxi_trips").fetch_one(&mut c).await.unwrap();
    assert_eq!(n as u64, made.rows, "every well-formed row; the malformed ones were quarantined");
    drop(c);
    sqlx::query("DROP TABLE green_taxi_trips").execute(&mut admin).await.unwrap();
    sqlx::query(&format!("REVOKE ALL ON SCHEMA public FROM {role}")).execute(&mut admin).await.unwrap();
    sqlx::query(&format!("DROP ROLE {role}")).execute(&mut admin).await.unwrap();
}

/// Just enough URL parsing for the test database's URL.
mod url_parts {
    pub struct Parts {
        pub user: String,
        pub password: String,
        pub host: String,
        pub port: u16,
        pub database: String,
    }

    pub fn parse(url: &str) -> Parts {
        let rest = url.strip_prefix("postgres://").unwrap();
        let (auth, rest) = rest.split_once('@').unwrap();
        let (user, password) = auth.split_once(':').unwrap();
        let (hostport, database) = rest.split_once('/').unwrap();
        let (host, port) = hostport.split_once(':').unwrap();
        Parts {
            user: user.into(),
            password: password.into(),
            host: host.into(),
            port: port.parse().unwrap(),
            database: database.into(),
        }
    }
}
