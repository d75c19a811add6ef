//! Headwater's data lake and loaders: the NYC taxi pipelines' moving parts.
//!
//! - [`download`]: HTTP(S) with retries and resume.
//! - [`csv`]: CSV(.gz) → Arrow batches, streaming, malformed rows quarantined.
//! - [`transform`]: renames, fills, filters on batches.
//! - [`csv_to_parquet`]: the two above into one Parquet file (zstd), in
//!   batches, with decompression, parsing and encoding overlapped on three
//!   threads, in constant memory (`bench/run lake`).
//! - [`lake`]: any object store, atomic and idempotent partition writes.
//! - [`generate`] and [`serve`]: TLC-shaped files served locally, so
//!   everything runs offline.

pub mod bigquery;
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
    Store(#[source] object_store::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[source] sqlx::Error),
    #[error("{0} does not exist")]
    NotFound(String),
    /// A block that does not describe a lake.
    #[error("{0}")]
    Block(String),
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
/// Works one batch at a time (a Parquet row group is buffered, compressed,
/// until it is written). Blocking: run it off the async
/// runtime (`tokio::task::spawn_blocking`).
pub fn csv_to_parquet(
    src: &Path,
    schema: &CsvSchema,
    transform: &mut dyn FnMut(RecordBatch) -> Result<RecordBatch, LakeError>,
    dst: &Path,
    rejects: &Path,
    max_reject_fraction: f64,
) -> Result<Converted, LakeError> {
    let input = open_csv(src)?;
    let mut quarantine = csv::Rejects::new(std::io::BufWriter::new(std::fs::File::create(rejects)?))?;
    let tmp = dst.with_extension("parquet.tmp");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_row_count(Some(1_000_000))
        .build();
    // Parsing here, Parquet encoding and compression on a thread of its
    // own: the two halves of the work overlap; two batches wait at most.
    let (batches, inbox) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
    let (file, writer_props) = (tmp.clone(), props.clone());
    let encoder = std::thread::spawn(move || -> Result<(Option<ArrowWriter<std::fs::File>>, u64), LakeError> {
        let mut writer: Option<ArrowWriter<std::fs::File>> = None;
        let mut written = 0u64;
        for batch in inbox {
            if writer.is_none() {
                let f = std::fs::File::create(&file)?;
                writer = Some(ArrowWriter::try_new(f, batch.schema(), Some(writer_props.clone()))?);
            }
            written += batch.num_rows() as u64;
            writer.as_mut().expect("just made").write(&batch)?;
        }
        Ok((writer, written))
    });
    let parse = csv::parse(input, schema, &mut quarantine, |batch| {
        let batch = transform(batch)?;
        batches.send(batch).map_err(|_| LakeError::Data("the Parquet writer stopped".into()))
    });
    drop(batches);
    let encoded = encoder.join().map_err(|_| LakeError::Data("the Parquet writer panicked".into()))?;
    if let Err(e) = quarantine.finish() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    // The writer's own error says more than the parser's "it stopped".
    let (parse, writer, written) = match (parse, encoded) {
        (Ok(p), Ok((w, n))) => (p, w, n),
        (_, Err(e)) | (Err(e), Ok(_)) => {
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

/// A CSV file for reading, decompressed on the fly if its name ends in
/// `.gz` (on a thread of its own, so decompression and parsing overlap).
pub fn open_csv(src: &Path) -> Result<Box<dyn std::io::BufRead + Send>, LakeError> {
    let file = std::fs::File::open(src).map_err(|e| LakeError::Data(format!("{}: {e}", src.display())))?;
    Ok(if src.extension().is_some_and(|e| e == "gz") {
        let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, file));
        Box::new(std::io::BufReader::with_capacity(1 << 16, ReadAhead::start(gz)))
    } else {
        Box::new(std::io::BufReader::with_capacity(1 << 20, file))
    })
}

/// Reads a source on another thread, a few 1 MiB chunks ahead of the
/// consumer (bounded: memory stays at a few MiB).
struct ReadAhead {
    chunks: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl ReadAhead {
    fn start(mut source: impl std::io::Read + Send + 'static) -> ReadAhead {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || loop {
            let mut chunk = vec![0u8; 1 << 20];
            let mut filled = 0;
            // Fill the chunk (decoders return little at a time).
            let result = loop {
                match source.read(&mut chunk[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == chunk.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let done = filled < chunk.len();
            chunk.truncate(filled);
            if let Err(e) = result {
                let _ = tx.send(Err(e));
                return;
            }
            // Stop at the end, or when the consumer has gone.
            if (filled > 0 && tx.send(Ok(chunk)).is_err()) || done {
                return;
            }
        });
        ReadAhead { chunks: rx, current: Vec::new(), at: 0 }
    }
}

impl std::io::Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk?;
                    self.at = 0;
                }
                // The reader thread ended: the source is exhausted.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
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
