//! Helpers shared by integration tests.

mod browser;
mod otlp;

pub use browser::Browser;
pub use otlp::{OtlpReceiver, ReceivedSpan};
use sqlx::Connection;
use uuid::Uuid;

/// The most spans `[start, end]` open at once (an end sorts before a start
/// at the same instant): what recorded times say of a concurrency bound.
pub fn most_at_once<T: Ord>(spans: impl IntoIterator<Item = (T, T)>) -> i32 {
    let mut edges: Vec<(T, i32)> = spans.into_iter().flat_map(|(start, end)| [(start, 1), (end, -1)]).collect();
    edges.sort();
    let (mut open, mut most) = (0, 0);
    for (_, step) in edges {
        open += step;
        most = most.max(open);
    }
    most
}

/// A fresh database on the test PostgreSQL server, dropped with the guard.
///
/// The server comes from `HEADWATER_TEST_POSTGRES_URL` (scripts/test starts
/// the machine's PostgreSQL and sets it). Without it, [`PgTestDb::create`]
/// says the test is skipped and why, and returns `None`; under CI (`CI` set)
/// it fails instead, because CI must never skip these tests.
pub struct PgTestDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgTestDb {
    pub async fn create() -> Option<PgTestDb> {
        let admin_url = match std::env::var("HEADWATER_TEST_POSTGRES_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                assert!(
                    std::env::var("CI").is_err(),
                    "CI must run the PostgreSQL tests: scripts/test sets HEADWATER_TEST_POSTGRES_URL"
                );
                eprintln!(
                    "SKIPPED: HEADWATER_TEST_POSTGRES_URL is not set (./scripts/test starts PostgreSQL and sets it)"
                );
                return None;
            }
        };
        let name = format!("hw_test_{}", Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url).await.expect("the test PostgreSQL answers");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("can create a test database");
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        Some(PgTestDb { admin_url, name, url })
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await: a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}
