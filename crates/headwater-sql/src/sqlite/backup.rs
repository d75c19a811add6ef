//! Online copies of the embedded database, and putting one back.
//!
//! PostgreSQL has its own tools for this (`pg_dump`, base backups with WAL
//! archiving); these are for the one-file database.

use super::*;

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The schema version of the copy (migrated forward on the next open).
    pub schema_version: i64,
    pub flow_runs: i64,
    /// Where the database it replaced was kept, if there was one.
    pub previous: Option<PathBuf>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Refused(format!("{what} {}: {e}", path.display()))
}

/// A file beside `path`, named after it with `suffix` and this process's id.
fn aside(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}.{}", std::process::id()))
}

impl SqliteStore {
    /// Writes a consistent copy of the database as of one moment to `dest`,
    /// which must not exist, and answers its size in bytes. `VACUUM INTO`
    /// reads in one transaction while writers carry on, and writes a compact
    /// file with nothing in a WAL beside it. The copy is made aside and
    /// renamed into place: `dest` is whole or absent, never half written.
    pub async fn backup_to(&self, dest: &Path) -> Result<u64> {
        if dest.exists() {
            return Err(StoreError::Refused(format!(
                "{} exists; a backup does not overwrite a file, give another name",
                dest.display()
            )));
        }
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        }
        let tmp = aside(dest, "partial");
        let _ = std::fs::remove_file(&tmp);
        let written = sqlx::query("VACUUM INTO ?").bind(tmp.to_string_lossy().into_owned()).execute(&self.pool).await;
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::Database { source: e.into(), retryable: false });
        }
        let synced = std::fs::File::open(&tmp).and_then(|f| f.sync_all());
        let moved = synced.and_then(|()| std::fs::rename(&tmp, dest));
        if let Err(e) = moved {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("cannot write", dest, e));
        }
        std::fs::metadata(dest).map(|m| m.len()).map_err(|e| io("cannot read", dest, e))
    }
}

/// Opens `path` read-only and checks it is a whole Headwater database:
/// answers its schema version and how many flow runs it holds.
async fn check_copy(path: &Path) -> Result<(i64, i64)> {
    let opts = SqliteConnectOptions::new().filename(path).read_only(true).immutable(true);
    let mut conn = sqlx::ConnectOptions::connect(&opts)
        .await
        .map_err(|e| StoreError::Open { path: path.to_path_buf(), source: e.into() })?;
    let not_ours =
        |e: sqlx::Error| StoreError::Refused(format!("{} is not a Headwater database ({e})", path.display()));
    let integrity: String =
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.map_err(not_ours)?;
    if integrity != "ok" {
        return Err(StoreError::Refused(format!("{} is damaged: {integrity}", path.display())));
    }
    let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        .fetch_one(&mut conn)
        .await
        .map_err(not_ours)?;
    let known = crate::migrations::latest();
    if version > known {
        return Err(StoreError::SchemaTooNew { found: version, known });
    }
    let runs: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM flow_runs").fetch_one(&mut conn).await.map_err(not_ours)?;
    let _ = sqlx::Connection::close(conn).await;
    Ok((version, runs))
}

/// The ids of other processes that have the database at `db` (or its WAL)
/// open, as Linux's `/proc` tells; none where there is no `/proc` or for
/// processes of other users, which it does not show.
fn processes_using(db: &Path) -> Vec<u32> {
    let Ok(db) = db.canonicalize() else { return Vec::new() };
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == db || target == wal))
            })
        })
        .collect()
}

/// Refuses when another process has the database at `db` open, or a reader
/// keeps its WAL from being folded back; otherwise leaves it with an empty
/// WAL, so that the file alone is the whole database.
async fn check_unused(db: &Path) -> Result<()> {
    let in_use = |who: String| {
        StoreError::Refused(format!(
            "{} is in use{who} (a server, a worker or a flow has it open); stop them and restore again",
            db.display()
        ))
    };
    let pids = processes_using(db);
    if !pids.is_empty() {
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        return Err(in_use(format!(" by process {}", pids.join(", "))));
    }
    let opts = SqliteConnectOptions::new().filename(db).busy_timeout(Duration::from_millis(200));
    let mut conn = sqlx::ConnectOptions::connect(&opts)
        .await
        .map_err(|e| StoreError::Open { path: db.to_path_buf(), source: e.into() })?;
    let checkpoint: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut conn).await;
    let _ = sqlx::Connection::close(conn).await;
    match checkpoint {
        Ok((0, _, _)) => Ok(()),
        _ => Err(in_use(String::new())),
    }
}

/// Puts the copy at `src` in place of the database at `db`. The copy is
/// checked first (whole, a Headwater database, not from a newer version);
/// the database it replaces is kept beside it as
/// `<name>.before-restore-<time>`, so a restore loses nothing. Refused while any process uses `db`.
pub async fn restore(src: &Path, db: &Path) -> Result<Restored> {
    let (schema_version, flow_runs) = check_copy(src).await?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    }
    // Copied aside first: a restore cut short leaves the database as it was.
    let tmp = aside(db, "restoring");
    let copied = std::fs::copy(src, &tmp).and_then(|_| std::fs::File::open(&tmp)?.sync_all());
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot copy", src, e));
    }
    let previous = if db.exists() {
        if let Err(e) = check_unused(db).await {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // Named by the time, so a second restore does not replace the first one's.
        let kept = db.with_file_name(format!(
            "{}.before-restore-{}",
            db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            Utc::now().format("%Y%m%dT%H%M%S%.3f")
        ));
        std::fs::rename(db, &kept).map_err(|e| io("cannot move aside", db, e))?;
        Some(kept)
    } else {
        None
    };
    for side in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(side);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    std::fs::rename(&tmp, db).map_err(|e| io("cannot put in place", db, e))?;
    Ok(Restored { schema_version, flow_runs, previous })
}
