//! The schema's history: one list for both engines. Each entry names a
//! script under `migrations/sqlite/` and one under `migrations/postgres/`;
//! a version missing for either engine does not compile, and a script that
//! is not on the list fails the test below. A change that one engine does
//! not need is a script of comments saying why.

use headwater_store::StoreError;

pub(crate) struct Migration {
    pub version: i64,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

macro_rules! migrations {
    ($($version:literal => $name:literal,)*) => {
        /// Every migration, oldest first.
        pub(crate) const MIGRATIONS: &[Migration] = &[$(Migration {
            version: $version,
            sqlite: include_str!(concat!("../migrations/sqlite/", $name, ".sql")),
            postgres: include_str!(concat!("../migrations/postgres/", $name, ".sql")),
        },)*];

        #[cfg(test)]
        const FILE_NAMES: &[&str] = &[$($name,)*];
    };
}

migrations! {
    1 => "0001_runs",
    2 => "0002_heartbeats",
    3 => "0003_deployments",
    4 => "0004_deployment_runs",
    5 => "0005_work_pools",
    6 => "0006_work_queues",
    7 => "0007_variables_artifacts",
    8 => "0008_blocks",
    9 => "0009_datasets",
    10 => "0010_concurrency",
    11 => "0011_automations",
    12 => "0012_run_listing",
    13 => "0013_run_name_search",
    14 => "0014_run_filter_covering",
    15 => "0015_parent_task_run",
    16 => "0016_partitions_backfills",
    17 => "0017_dataset_writers",
    18 => "0018_dataset_inputs",
    19 => "0019_dataset_sources",
    20 => "0020_retention",
    21 => "0021_run_names_by_row",
    22 => "0022_access",
}

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The migrations a database at schema version `current` still needs, in
/// order; refused if a newer Headwater wrote it.
pub(crate) fn pending(current: i64) -> Result<impl Iterator<Item = &'static Migration>, StoreError> {
    let known = latest();
    if current > known {
        return Err(StoreError::SchemaTooNew { found: current, known });
    }
    Ok(MIGRATIONS.iter().filter(move |m| m.version > current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_engines_have_every_migration_and_nothing_else() {
        for (i, (m, name)) in MIGRATIONS.iter().zip(FILE_NAMES).enumerate() {
            assert_eq!(m.version, i as i64 + 1, "versions are consecutive from 1");
            assert!(name.starts_with(&format!("{:04}_", m.version)), "{name} is numbered {}", m.version);
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for engine in ["sqlite", "postgres"] {
            let mut files: Vec<String> = std::fs::read_dir(dir.join(engine))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let listed: Vec<String> = FILE_NAMES.iter().map(|n| format!("{n}.sql")).collect();
            assert_eq!(files, listed, "migrations/{engine}/ holds exactly the listed migrations");
        }
    }

    #[test]
    fn a_database_gets_what_it_lacks_and_a_newer_one_is_refused() {
        assert_eq!(pending(0).unwrap().count(), MIGRATIONS.len());
        assert_eq!(pending(latest() - 1).unwrap().map(|m| m.version).collect::<Vec<_>>(), vec![latest()]);
        assert_eq!(pending(latest()).unwrap().count(), 0);
        let newer = pending(latest() + 1).map(|_| ()).unwrap_err();
        assert!(newer.to_string().contains("newer Headwater"), "{newer}");
    }

    #[test]
    fn every_migration_splits_into_clean_statements() {
        for m in MIGRATIONS {
            for sql in [m.sqlite, m.postgres] {
                for s in crate::columns::statements(sql) {
                    assert!(!s.is_empty() && !s.ends_with(';'), "migration {}: {s}", m.version);
                }
            }
        }
    }
}
