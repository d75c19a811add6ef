//! The embedded warehouse: a DuckDB file, loaded from the lake's Parquet.
//! Loads are transactions: a month is replaced whole or not at all, so a
//! run killed mid-load leaves the table as it was. The only crate that
//! builds DuckDB (a long C++ compile), so nothing else waits for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use duckdb::Connection;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

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

fn duck_type(t: &DataType) -> Result<&'static str, WarehouseError> {
    Ok(match t {
        DataType::Int64 => "BIGINT",
        DataType::Int32 => "INTEGER",
        DataType::Float64 => "DOUBLE",
        DataType::Utf8 => "VARCHAR",
        DataType::Boolean => "BOOLEAN",
        DataType::Date32 => "DATE",
        DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP",
        other => return Err(WarehouseError::Invalid(format!("no warehouse column type for {other}"))),
    })
}

/// The batches of a Parquet file, one at a time.
fn read_parquet(path: &Path) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, WarehouseError> {
    let err = |reason: String| WarehouseError::Read { path: path.display().to_string(), reason };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(65_536).build())
        .map_err(|e| err(e.to_string()))
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
    /// the first time. Returns the rows loaded. Loading the same month again
    /// leaves the same rows, never twice as many.
    pub fn replace_month(&self, table: &str, parquet: &Path, year: i32, month: u32) -> Result<u64, WarehouseError> {
        let t = ident(table)?;
        let stage = format!("_stage_{table}_{year}_{month:02}");
        let (schema, rows) = self.stage(&stage, parquet, Some((year, month)))?;
        let mut conn = self.connect()?;
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        self.create_table(&tx, &t, &schema)?;
        tx.execute(&format!("DELETE FROM {t} WHERE year = ? AND month = ?"), duckdb::params![year, month])
            .map_err(|e| self.err(e))?;
        tx.execute_batch(&format!("INSERT INTO {t} SELECT * FROM \"{stage}\"")).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{stage}\"")).map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Appends a Parquet file's rows to `table` (created from the file the
    /// first time), in one transaction.
    pub fn append(&self, table: &str, parquet: &Path) -> Result<u64, WarehouseError> {
        let t = ident(table)?;
        let stage = format!("_stage_{table}_append");
        let (schema, rows) = self.stage(&stage, parquet, None)?;
        let mut conn = self.connect()?;
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        self.create_table(&tx, &t, &schema)?;
        tx.execute_batch(&format!("INSERT INTO {t} SELECT * FROM \"{stage}\"")).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{stage}\"")).map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Copies a Parquet file (plus constant `year` and `month` columns) into
    /// a staging table of its own, outside the target table's transaction:
    /// readers of the target never see it, and a failed or killed staging
    /// leaves the target untouched (the next load replaces the stage).
    /// Large appends straight into a transaction trip DuckDB 2's optimistic
    /// writer, hence the two steps.
    fn stage(
        &self,
        stage: &str,
        parquet: &Path,
        month: Option<(i32, u32)>,
    ) -> Result<(Arc<Schema>, u64), WarehouseError> {
        let reader = read_parquet(parquet)?;
        let mut fields: Vec<Field> = reader.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        if month.is_some() {
            fields.push(Field::new("year", DataType::Int32, false));
            fields.push(Field::new("month", DataType::Int32, false));
        }
        let schema = Arc::new(Schema::new(fields));
        let conn = self.connect()?;
        conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{stage}\"")).map_err(|e| self.err(e))?;
        self.create_table(&conn, &format!("\"{stage}\""), &schema)?;
        let mut rows = 0u64;
        let mut appender = conn.appender(stage).map_err(|e| self.err(e))?;
        for batch in reader {
            let batch = batch
                .map_err(|e| WarehouseError::Read { path: parquet.display().to_string(), reason: e.to_string() })?;
            let n = batch.num_rows();
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            if let Some((year, month)) = month {
                columns.push(Arc::new(Int32Array::from(vec![year; n])));
                columns.push(Arc::new(Int32Array::from(vec![month as i32; n])));
            }
            let full =
                RecordBatch::try_new(schema.clone(), columns).map_err(|e| WarehouseError::Invalid(e.to_string()))?;
            appender.append_record_batch(full).map_err(|e| self.err(e))?;
            rows += n as u64;
        }
        appender.flush().map_err(|e| self.err(e))?;
        Ok((schema, rows))
    }

    fn table_exists(&self, conn: &Connection, table: &str) -> Result<bool, WarehouseError> {
        let n: i64 = conn
            .query_row("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    fn create_table(&self, conn: &Connection, quoted: &str, schema: &Schema) -> Result<(), WarehouseError> {
        let cols = schema
            .fields()
            .iter()
            .map(|f| Ok(format!("\"{}\" {}", f.name().replace('"', "\"\""), duck_type(f.data_type())?)))
            .collect::<Result<Vec<_>, WarehouseError>>()?;
        conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS {quoted} ({})", cols.join(", ")))
            .map_err(|e| self.err(e))
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
