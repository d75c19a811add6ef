//! `hw-lake`: the lake's moving parts from the command line — make a
//! TLC-shaped month, convert a CSV(.gz) to Parquet, stream one into
//! PostgreSQL. What `bench/run lake` measures, and handy on its own.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use headwater_lake::postgres::{load_csv, CsvInput, LoadMode};
use headwater_lake::{csv_to_parquet, generate, schema, transform, CsvSchema};

#[derive(Parser)]
#[command(name = "hw-lake", about = "Headwater's lake tools: generate, convert, load")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a TLC-shaped month (gzip CSV) with realistic values and a few malformed lines.
    Generate {
        #[arg(long, default_value = "yellow")]
        color: String,
        #[arg(long, default_value_t = 2021)]
        year: i32,
        #[arg(long, default_value_t = 1)]
        month: u32,
        /// Rows (default: the real month's count where known).
        #[arg(long)]
        rows: Option<u64>,
        #[arg(long, default_value_t = 5)]
        malformed: u64,
        out: PathBuf,
    },
    /// CSV(.gz) → Parquet (zstd), columns in snake_case; malformed rows to `<out>.rejects.csv`.
    Convert {
        src: PathBuf,
        out: PathBuf,
        /// yellow, green or fhv.
        #[arg(long, default_value = "yellow")]
        schema: String,
        /// The share of malformed rows that fails the conversion.
        #[arg(long, default_value_t = 0.01)]
        max_rejects: f64,
    },
    /// CSV(.gz) → a PostgreSQL table by binary COPY, in one transaction.
    LoadPostgres {
        src: PathBuf,
        /// postgres://user:password@host:port/database
        #[arg(long, env = "DATABASE_URL")]
        url: String,
        #[arg(long)]
        table: String,
        #[arg(long, default_value = "yellow")]
        schema: String,
        /// replace (the table), append, or YYYY-MM (that month's rows, with year and month columns).
        #[arg(long, default_value = "replace")]
        mode: String,
        #[arg(long, default_value_t = 0.01)]
        max_rejects: f64,
    },
}

fn csv_schema(name: &str) -> Result<CsvSchema> {
    schema::for_color(name).with_context(|| format!("no schema '{name}' (yellow, green or fhv)"))
}

fn rejects_path(out: &std::path::Path) -> PathBuf {
    out.with_extension("rejects.csv")
}

fn mode(text: &str) -> Result<LoadMode> {
    Ok(match text {
        "replace" => LoadMode::Replace,
        "append" => LoadMode::Append,
        month => {
            let Some((y, m)) = month.split_once('-') else {
                bail!("--mode must be replace, append or YYYY-MM, not '{month}'")
            };
            let (year, month): (i32, u32) = (y.parse()?, m.parse()?);
            if !(1..=12).contains(&month) {
                bail!("--mode {text}: month must be between 1 and 12");
            }
            LoadMode::month(year, month)
        }
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    match Cli::parse().command {
        Command::Generate { color, year, month, rows, malformed, out } => {
            let rows = rows.unwrap_or_else(|| generate::real_rows(&color, year, month));
            let made = generate::generate(&color, year, month, rows, malformed, &out)?;
            println!("{}: {} rows, {} malformed lines", out.display(), made.rows, made.malformed);
        }
        Command::Convert { src, out, schema, max_rejects } => {
            let schema = csv_schema(&schema)?;
            let mut names = |b| transform::snake_case_names(&b);
            let c = csv_to_parquet(&src, &schema, &mut names, &out, &rejects_path(&out), max_rejects)?;
            println!(
                "{}: {} rows read, {} written, {} rejected, {} bytes, {:.2} s",
                out.display(),
                c.parse.read,
                c.written,
                c.parse.rejected,
                c.bytes,
                started.elapsed().as_secs_f64()
            );
        }
        Command::LoadPostgres { src, url, table, schema, mode: m, max_rejects } => {
            let schema = csv_schema(&schema)?;
            let rejects = rejects_path(&src.with_extension(""));
            let input = CsvInput {
                path: &src,
                schema: &schema,
                transform: Box::new(|b| transform::snake_case_names(&b)),
                rejects: &rejects,
                max_reject_fraction: max_rejects,
            };
            let got = load_csv(&url, &table, input, mode(&m)?).await?;
            println!(
                "{table}: {} rows read, {} loaded, {} rejected (in {}), {:.2} s",
                got.parse.read,
                got.rows,
                got.parse.rejected,
                rejects.display(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
