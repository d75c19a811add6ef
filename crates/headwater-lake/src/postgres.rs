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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Keep them; add the file's rows.
    Append,
    /// Drop the table and load the file's rows only.
    Replace,
}

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

/// Loads a Parquet file into `table` of the database at `url`. Returns the
/// rows loaded.
pub async fn load_parquet(url: &str, table: &str, parquet: &Path, mode: LoadMode) -> Result<u64, LakeError> {
    let pg = |e: sqlx::Error| LakeError::Data(format!("PostgreSQL: {e}"));
    let file = std::fs::File::open(parquet)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let mut reader = builder.with_batch_size(crate::csv::BATCH_ROWS).build()?;
    let mut conn = PgConnection::connect(url).await.map_err(pg)?;
    let mut tx = conn.begin().await.map_err(pg)?;
    if mode == LoadMode::Replace {
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", ident(table))).execute(&mut *tx).await.map_err(pg)?;
    }
    sqlx::query(&create_table_sql(table, &schema)?).execute(&mut *tx).await.map_err(pg)?;
    let columns: Vec<String> = schema.fields().iter().map(|f| ident(f.name())).collect();
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
    for batch in reader.by_ref() {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        let bytes = encode(&batch)?;
        copy.send(bytes).await.map_err(pg)?;
    }
    copy.send((-1i16).to_be_bytes().to_vec()).await.map_err(pg)?;
    copy.finish().await.map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(rows)
}

/// One batch as binary COPY tuples.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, LakeError> {
    let mut out = Vec::with_capacity(batch.num_rows() * batch.num_columns() * 12);
    let n_cols = batch.num_columns() as i16;
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
    }
    Ok(out)
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}
