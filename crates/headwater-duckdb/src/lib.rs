//! The embedded warehouse: a DuckDB file, loaded from the lake's Parquet.
//! Loads are transactions: a month is replaced whole or not at all, so a
//! run killed mid-load leaves the table as it was. The only crate that
//! builds DuckDB (a long C++ compile), so nothing else waits for it.

use std::path::{Path, PathBuf};

use duckdb::Connection;

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("DuckDB ({path}): {source}")]
    DuckDb { path: String, source: duckdb::Error },
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// A DuckDB database file.
#[derive(Debug, Clone)]
pub struct Warehouse {
    path: PathBuf,
}

/// Rows of one month of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthCount {
    pub year: i32,
    pub month: u32,
    pub rows: u64,
}

fn ident(name: &str) -> Result<String, WarehouseError> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(format!("\"{name}\""))
    } else {
        Err(WarehouseError::Invalid(format!("'{name}' is not a table name (letters, digits and '_')")))
    }
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Warehouse {
    /// The warehouse in `path` (created on first use, with its folder).
    pub fn open(path: &Path) -> Result<Warehouse, WarehouseError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| WarehouseError::Invalid(format!("{}: {e}", dir.display())))?;
        }
        let w = Warehouse { path: path.to_path_buf() };
        w.connect()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self) -> Result<Connection, WarehouseError> {
        let conn = Connection::open(&self.path).map_err(|e| self.err(e))?;
        // DuckDB would otherwise take up to 80 % of the machine's memory for
        // its buffers; loads spill to disk instead.
        conn.execute_batch("SET memory_limit = '512MB'").map_err(|e| self.err(e))?;
        Ok(conn)
    }

    fn err(&self, source: duckdb::Error) -> WarehouseError {
        WarehouseError::DuckDb { path: self.path.display().to_string(), source }
    }

    /// Loads a Parquet file as month `(year, month)` of `table` in one
    /// transaction: the month's old rows go, the file's rows come (with
    /// `year` and `month` columns). Creates the table from the file's schema
    /// the first time; columns are matched by name. Returns the rows loaded.
    /// Loading the same month again leaves the same rows, never twice as many.
    pub fn replace_month(&self, table: &str, parquet: &Path, year: i32, month: u32) -> Result<u64, WarehouseError> {
        let t = ident(table)?;
        let stage = format!("\"_stage_{table}_{year}_{month:02}\"");
        let rows = self.stage(&stage, parquet, &format!(", {year}::INTEGER AS year, {month}::INTEGER AS month"))?;
        let mut conn = self.connect()?;
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {t} AS SELECT * FROM {stage} LIMIT 0;
             DELETE FROM {t} WHERE year = {year} AND month = {month};
             INSERT INTO {t} BY NAME SELECT * FROM {stage};"
        ))
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {stage}")).map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Appends a Parquet file's rows to `table` (created from the file the
    /// first time), in one transaction.
    pub fn append(&self, table: &str, parquet: &Path) -> Result<u64, WarehouseError> {
        let t = ident(table)?;
        let stage = format!("\"_stage_{table}_append\"");
        let rows = self.stage(&stage, parquet, "")?;
        let mut conn = self.connect()?;
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {t} AS SELECT * FROM {stage} LIMIT 0;
             INSERT INTO {t} BY NAME SELECT * FROM {stage};"
        ))
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {stage}")).map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Copies a Parquet file (plus `extra` constant columns) into a staging
    /// table of its own with DuckDB's Parquet reader (streaming, within the
    /// memory limit), outside the target table's transaction: readers of the
    /// target never see it, and a failed or killed staging leaves the target
    /// untouched (the next load replaces the stage). Returns its rows.
    fn stage(&self, stage: &str, parquet: &Path, extra: &str) -> Result<u64, WarehouseError> {
        if !parquet.is_file() {
            return Err(WarehouseError::Read { path: parquet.display().to_string(), reason: "no such file".into() });
        }
        let conn = self.connect()?;
        conn.execute_batch(&format!(
            "CREATE OR REPLACE TABLE {stage} AS SELECT *{extra} FROM read_parquet({})",
            literal(&parquet.display().to_string())
        ))
        .map_err(|e| self.err(e))?;
        let rows: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {stage}"), [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(rows as u64)
    }

    /// A view over Parquet files in a local folder (the lake), with the
    /// `key=value` folders of their paths (`year=2021/month=01`) as columns:
    /// `files` is a glob such as `/lake/yellow/**/*.parquet`. Queries see the
    /// files as they are when they run, nothing is copied.
    pub fn create_lake_view(&self, view: &str, files: &str) -> Result<(), WarehouseError> {
        let v = ident(view)?;
        self.execute(&format!(
            "CREATE OR REPLACE VIEW {v} AS SELECT * FROM read_parquet({}, hive_partitioning = true, union_by_name = true)",
            literal(files)
        ))
    }

    fn table_exists(&self, conn: &Connection, table: &str) -> Result<bool, WarehouseError> {
        let n: i64 = conn
            .query_row("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Runs SQL (the ELT style: transform inside the warehouse).
    pub fn execute(&self, sql: &str) -> Result<(), WarehouseError> {
        self.connect()?.execute_batch(sql).map_err(|e| self.err(e))
    }

    /// A single number from a query, e.g. `SELECT count(*) FROM rides`.
    pub fn scalar(&self, sql: &str) -> Result<i64, WarehouseError> {
        self.connect()?.query_row(sql, [], |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// Rows per month of a table loaded by [`Warehouse::replace_month`].
    pub fn month_counts(&self, table: &str) -> Result<Vec<MonthCount>, WarehouseError> {
        let t = ident(table)?;
        let conn = self.connect()?;
        let mut stmt = conn
            .prepare(&format!("SELECT year, month, count(*) FROM {t} GROUP BY year, month ORDER BY year, month"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(MonthCount {
                    year: r.get::<_, i32>(0)?,
                    month: r.get::<_, i32>(1)? as u32,
                    rows: r.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Whether `table` exists.
    pub fn has_table(&self, table: &str) -> Result<bool, WarehouseError> {
        self.table_exists(&self.connect()?, table)
    }
}
