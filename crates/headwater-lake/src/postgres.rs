//! Parquet into PostgreSQL through binary `COPY`, in one transaction: a
//! load that fails half-way leaves no partial rows (nor a half-made table).
//! The table is created from the Arrow schema; memory holds one batch.

use std::path::Path;

use arrow::array::{
    Array, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sqlx::{Connection, PgConnection};

use crate::LakeError;

/// What happens to rows already in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadMode {
    /// Keep them; add the file's rows.
    Append,
    /// Drop the table and load the file's rows only.
    Replace,
    /// Replace one partition: every loaded row gets these constant INTEGER
    /// columns (for example `year = 2021`, `month = 1`), and the rows that
    /// already have those values are deleted in the same transaction. Other
    /// partitions stay; loading the same partition twice leaves it once.
    ReplacePartition(Vec<(String, i32)>),
}

impl LoadMode {
    /// `ReplacePartition` for a month: `year` and `month` columns.
    pub fn month(year: i32, month: u32) -> LoadMode {
        LoadMode::ReplacePartition(vec![("year".into(), year), ("month".into(), month as i32)])
    }

    fn constants(&self) -> Vec<i32> {
        match self {
            LoadMode::ReplacePartition(cols) => cols.iter().map(|(_, v)| *v).collect(),
            _ => Vec::new(),
        }
    }
}

/// What a CSV load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvLoaded {
    pub parse: crate::ParseStats,
    /// Rows in the table from this load (after the transform's filters).
    pub rows: u64,
}

/// Encoded COPY data for a number of rows, made off the async runtime.
type Chunk = Result<(u64, Vec<u8>), LakeError>;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i32 = 10_957;

fn pg_type(t: &DataType) -> Result<&'static str, LakeError> {
    Ok(match t {
        DataType::Int64 => "BIGINT",
        DataType::Float64 => "DOUBLE PRECISION",
        DataType::Utf8 => "TEXT",
        DataType::Boolean => "BOOLEAN",
        DataType::Date32 => "DATE",
        DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP",
        other => return Err(LakeError::Data(format!("no PostgreSQL column type for {other}"))),
    })
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `CREATE TABLE` for an Arrow schema.
pub fn create_table_sql(table: &str, schema: &Schema) -> Result<String, LakeError> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| Ok(format!("{} {}", ident(f.name()), pg_type(f.data_type())?)))
        .collect::<Result<Vec<_>, LakeError>>()?;
    Ok(format!("CREATE TABLE IF NOT EXISTS {} ({})", ident(table), cols.join(", ")))
}

/// Loads a Parquet file into `table` of the database at `url`, in one
/// transaction. Returns the rows loaded.
pub async fn load_parquet(url: &str, table: &str, parquet: &Path, mode: LoadMode) -> Result<u64, LakeError> {
    let file = std::fs::File::open(parquet)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(crate::csv::BATCH_ROWS).build()?;
    let constants = mode.constants();
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(2);
    // Decoding and encoding on a thread of their own while the connection
    // sends: the two halves overlap.
    let producer = tokio::task::spawn_blocking(move || {
        for batch in reader {
            let chunk = batch.map_err(LakeError::from).and_then(|b| Ok((b.num_rows() as u64, encode(&b, &constants)?)));
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                break;
            }
        }
    });
    let rows = copy_in(url, table, &schema, &mode, rx).await;
    producer.await.map_err(|e| LakeError::Data(format!("the Parquet reader failed: {e}")))?;
    rows
}

/// A CSV file to load, and how to read it.
pub struct CsvInput<'a> {
    /// Gzip if the name ends in `.gz`.
    pub path: &'a Path,
    pub schema: &'a crate::CsvSchema,
    /// Applied to every batch (renames, filters).
    pub transform: Box<dyn FnMut(RecordBatch) -> Result<RecordBatch, LakeError> + Send>,
    /// Where malformed rows go, with their line numbers.
    pub rejects: &'a Path,
    /// More malformed rows than this share fails the load.
    pub max_reject_fraction: f64,
}

/// Streams a CSV into `table` in one transaction: no intermediate file,
/// memory holds a few batches. Too many malformed rows roll the load back.
pub async fn load_csv(url: &str, table: &str, src: CsvInput<'_>, mode: LoadMode) -> Result<CsvLoaded, LakeError> {
    let CsvInput { path, schema, mut transform, rejects, max_reject_fraction } = src;
    let input = crate::open_csv(path)?;
    // The table's columns are what the transform makes of the file's.
    let target = transform(RecordBatch::new_empty(schema.arrow()))?.schema();
    let mut quarantine = crate::csv::Rejects::new(std::io::BufWriter::new(std::fs::File::create(rejects)?))?;
    let constants = mode.constants();
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(2);
    let (schema, rejects_path) = (schema.clone(), rejects.display().to_string());
    let producer = tokio::task::spawn_blocking(move || {
        let parse = crate::csv::parse(input, &schema, &mut quarantine, |batch| {
            let batch = transform(batch)?;
            let chunk = (batch.num_rows() as u64, encode(&batch, &constants)?);
            tx.blocking_send(Ok(chunk)).map_err(|_| LakeError::Data("the load stopped".into()))
        });
        quarantine.finish()?;
        let parse = match parse {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.blocking_send(Err(LakeError::Data(format!("reading the CSV failed: {e}"))));
                return Err(e);
            }
        };
        if parse.read > 0 && parse.rejected as f64 / parse.read as f64 > max_reject_fraction {
            let e = LakeError::TooManyRejects {
                read: parse.read,
                rejected: parse.rejected,
                limit: max_reject_fraction,
                rejects: rejects_path,
            };
            // The consumer rolls back on the error; the caller gets this one.
            let _ = tx.blocking_send(Err(LakeError::Data(e.to_string())));
            return Err(e);
        }
        Ok(parse)
    });
    let rows = copy_in(url, table, &target, &mode, rx).await;
    let parse = producer.await.map_err(|e| LakeError::Data(format!("the CSV reader failed: {e}")))?;
    match (parse, rows) {
        (Err(e @ LakeError::TooManyRejects { .. }), _) => Err(e),
        // When the database fails, the reader only knows that the load stopped.
        (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
        (Ok(parse), Ok(rows)) => Ok(CsvLoaded { parse, rows }),
    }
}

/// One transaction: the table made ready for `mode`, then every chunk
/// through binary COPY. An error from the chunks rolls everything back.
async fn copy_in(
    url: &str,
    table: &str,
    schema: &Schema,
    mode: &LoadMode,
    mut chunks: tokio::sync::mpsc::Receiver<Chunk>,
) -> Result<u64, LakeError> {
    let pg = LakeError::Postgres;
    let mut conn = PgConnection::connect(url).await.map_err(pg)?;
    let mut tx = conn.begin().await.map_err(pg)?;
    let mut columns: Vec<String> = schema.fields().iter().map(|f| ident(f.name())).collect();
    let mut create = create_table_sql(table, schema)?;
    match mode {
        LoadMode::Append => {}
        LoadMode::Replace => {
            sqlx::query(&format!("DROP TABLE IF EXISTS {}", ident(table))).execute(&mut *tx).await.map_err(pg)?;
        }
        LoadMode::ReplacePartition(cols) => {
            let extra: Vec<String> = cols.iter().map(|(c, _)| format!("{} INTEGER", ident(c))).collect();
            create = format!("{}, {})", create.trim_end_matches(')'), extra.join(", "));
            columns.extend(cols.iter().map(|(c, _)| ident(c)));
        }
    }
    sqlx::query(&create).execute(&mut *tx).await.map_err(pg)?;
    if let LoadMode::ReplacePartition(cols) = mode {
        // A table loaded whole before has no partition columns: say so
        // plainly instead of PostgreSQL's "column does not exist".
        let have: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::TEXT FROM information_schema.columns \
             WHERE table_name = $1 AND table_schema = current_schema()",
        )
        .bind(table)
        .fetch_all(&mut *tx)
        .await
        .map_err(pg)?;
        if let Some((missing, _)) = cols.iter().find(|(c, _)| !have.contains(c)) {
            return Err(LakeError::Data(format!(
                "table '{table}' has no column '{missing}' to replace a partition by (it was loaded whole, \
                 with Replace or Append); load partitions into a table of their own"
            )));
        }
        let filter: Vec<String> = cols.iter().map(|(c, v)| format!("{} = {v}", ident(c))).collect();
        sqlx::query(&format!("DELETE FROM {} WHERE {}", ident(table), filter.join(" AND ")))
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
    }
    let mut copy = tx
        .copy_in_raw(&format!("COPY {} ({}) FROM STDIN (FORMAT binary)", ident(table), columns.join(", ")))
        .await
        .map_err(pg)?;
    let mut header = Vec::with_capacity(19);
    header.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    header.extend_from_slice(&0i32.to_be_bytes());
    header.extend_from_slice(&0i32.to_be_bytes());
    copy.send(header).await.map_err(pg)?;
    let mut rows = 0u64;
    while let Some(chunk) = chunks.recv().await {
        let (n, bytes) = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = copy.abort("the source failed").await;
                return Err(e);
            }
        };
        rows += n;
        copy.send(bytes).await.map_err(pg)?;
    }
    copy.send((-1i16).to_be_bytes().to_vec()).await.map_err(pg)?;
    copy.finish().await.map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(rows)
}

/// One batch as binary COPY tuples, each followed by the `constants` as
/// INTEGER columns.
pub fn encode(batch: &RecordBatch, constants: &[i32]) -> Result<Vec<u8>, LakeError> {
    let mut out = Vec::with_capacity(batch.num_rows() * (batch.num_columns() + constants.len()) * 12);
    let n_cols = (batch.num_columns() + constants.len()) as i16;
    let cols = batch.columns();
    for row in 0..batch.num_rows() {
        out.extend_from_slice(&n_cols.to_be_bytes());
        for col in cols {
            if col.is_null(row) {
                out.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            let any = col.as_any();
            match col.data_type() {
                DataType::Int64 => {
                    field(&mut out, &any.downcast_ref::<Int64Array>().expect("typed").value(row).to_be_bytes())
                }
                DataType::Float64 => field(
                    &mut out,
                    &any.downcast_ref::<Float64Array>().expect("typed").value(row).to_bits().to_be_bytes(),
                ),
                DataType::Utf8 => {
                    field(&mut out, any.downcast_ref::<StringArray>().expect("typed").value(row).as_bytes())
                }
                DataType::Boolean => {
                    field(&mut out, &[u8::from(any.downcast_ref::<BooleanArray>().expect("typed").value(row))])
                }
                DataType::Date32 => field(
                    &mut out,
                    &(any.downcast_ref::<Date32Array>().expect("typed").value(row) - PG_EPOCH_DAYS).to_be_bytes(),
                ),
                DataType::Timestamp(TimeUnit::Microsecond, None) => field(
                    &mut out,
                    &(any.downcast_ref::<TimestampMicrosecondArray>().expect("typed").value(row) - PG_EPOCH_MICROS)
                        .to_be_bytes(),
                ),
                other => return Err(LakeError::Data(format!("cannot load a {other} column into PostgreSQL"))),
            }
        }
        for c in constants {
            field(&mut out, &c.to_be_bytes());
        }
    }
    Ok(out)
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}
