//! Headwater's data lake and loaders: the NYC taxi pipelines' moving parts.
//!
//! - [`download`]: HTTP(S) with retries and resume.
//! - [`csv`]: CSV(.gz) → Arrow batches, streaming, malformed rows quarantined.
//! - [`transform`]: renames, fills, filters on batches.
//! - [`csv_to_parquet`]: the two above into one Parquet file (zstd), in
//!   batches (no benchmark yet measures its memory).
//! - [`lake`]: any object store, atomic and idempotent partition writes.
//! - [`generate`] and [`serve`]: TLC-shaped files served locally, so
//!   everything runs offline.

pub mod csv;
pub mod download;
pub mod generate;
pub mod lake;
pub mod postgres;
pub mod schema;
pub mod serve;
pub mod transform;

use std::path::Path;

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

pub use crate::csv::ParseStats;
pub use lake::Lake;
pub use schema::CsvSchema;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("object store: {0}")]
    Store(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("downloading {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error(
        "{rejected} of {read} rows ({:.2}%) could not be read, above the allowed {:.2}%; they are in {rejects}",
        *rejected as f64 * 100.0 / (*read).max(1) as f64,
        limit * 100.0
    )]
    TooManyRejects { read: u64, rejected: u64, limit: f64, rejects: String },
}

/// What a conversion did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Converted {
    pub parse: ParseStats,
    /// Rows in the Parquet file (after the transform's filters).
    pub written: u64,
    pub bytes: u64,
}

/// Reads a CSV (gzip if the name ends in `.gz`) with `schema`, passes each
/// batch through `transform`, and writes the result to `dst` as Parquet
/// (zstd). Malformed rows go to `rejects`; more than `max_reject_fraction`
/// of them fails the conversion (the rejects file stays for inspection).
/// Works one batch at a time (a Parquet row group is buffered until it is
/// written; no benchmark has measured the peak yet). Blocking: run it off the async
/// runtime (`tokio::task::spawn_blocking`).
pub fn csv_to_parquet(
    src: &Path,
    schema: &CsvSchema,
    transform: &mut dyn FnMut(RecordBatch) -> Result<RecordBatch, LakeError>,
    dst: &Path,
    rejects: &Path,
    max_reject_fraction: f64,
) -> Result<Converted, LakeError> {
    let file = std::fs::File::open(src)?;
    let input: Box<dyn std::io::BufRead> = if src.extension().is_some_and(|e| e == "gz") {
        Box::new(std::io::BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(std::io::BufReader::with_capacity(1 << 20, file))
    };
    let mut quarantine = csv::Rejects::new(std::io::BufWriter::new(std::fs::File::create(rejects)?))?;
    let tmp = dst.with_extension("parquet.tmp");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_row_count(Some(1_000_000))
        .build();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut written = 0u64;
    let parse = csv::parse(input, schema, &mut quarantine, |batch| {
        let batch = transform(batch)?;
        if writer.is_none() {
            writer = Some(ArrowWriter::try_new(std::fs::File::create(&tmp)?, batch.schema(), Some(props.clone()))?);
        }
        written += batch.num_rows() as u64;
        writer.as_mut().expect("just made").write(&batch)?;
        Ok(())
    });
    quarantine.finish()?;
    let parse = match parse {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if parse.read > 0 && parse.rejected as f64 / parse.read as f64 > max_reject_fraction {
        let _ = std::fs::remove_file(&tmp);
        return Err(LakeError::TooManyRejects {
            read: parse.read,
            rejected: parse.rejected,
            limit: max_reject_fraction,
            rejects: rejects.display().to_string(),
        });
    }
    let writer = match writer {
        Some(w) => w,
        // Nothing loaded: an empty file with the schema.
        None => {
            let empty = transform(RecordBatch::new_empty(schema.arrow()))?;
            ArrowWriter::try_new(std::fs::File::create(&tmp)?, empty.schema(), Some(props))?
        }
    };
    writer.close()?;
    std::fs::rename(&tmp, dst)?;
    let bytes = std::fs::metadata(dst)?.len();
    Ok(Converted { parse, written, bytes })
}

/// The Arrow schema of a Parquet file.
pub fn parquet_arrow_schema(file: std::fs::File) -> Result<arrow::datatypes::SchemaRef, LakeError> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?;
    Ok(builder.schema().clone())
}

/// The lake key of a month's partition: `{dataset}/year=YYYY/month=MM/data.parquet`.
pub fn partition_key(dataset: &str, year: i32, month: u32) -> String {
    format!("{dataset}/year={year}/month={month:02}/data.parquet")
}
