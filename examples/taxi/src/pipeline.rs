//! The flows and tasks, and the offline demo around them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use arrow::record_batch::RecordBatch;
use headwater::blocks::{BlockExt, DuckDbWarehouse, LocalFileSystem};
use headwater::prelude::*;
use headwater_core::{Column, DatasetVersion, SourceStamp, VersionRef};
use headwater_duckdb::Warehouse;
use headwater_lake::download::{download, DownloadOptions};
use headwater_lake::{csv_to_parquet, generate, partition_key, schema, transform, Lake};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Yellow,
    Green,
    /// For-hire vehicles: 7 columns, no passenger counts or fares.
    Fhv,
}

impl Color {
    fn name(self) -> &'static str {
        match self {
            Color::Yellow => "yellow",
            Color::Green => "green",
            Color::Fhv => "fhv",
        }
    }

    fn schema(self) -> headwater_lake::schema::CsvSchema {
        schema::for_color(self.name()).expect("every color has a schema")
    }
}

/// A calendar month, 1 to 12.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "u32", into = "u32")]
// Serde reads it as a u32 (try_from), so the schema is u32's: the bounds are
// added to it here, where the UI's forms and the server's check see them.
#[schemars(extend("minimum" = 1, "maximum" = 12))]
pub struct Month(u32);

impl TryFrom<u32> for Month {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        if (1..=12).contains(&v) {
            Ok(Month(v))
        } else {
            Err(format!("month must be between 1 and 12, got {v}"))
        }
    }
}

impl From<Month> for u32 {
    fn from(m: Month) -> u32 {
        m.0
    }
}

/// Where downloads and scratch files go: the Headwater home's `taxi` folder.
fn work_dir() -> PathBuf {
    let home = std::env::var_os("HEADWATER_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".headwater")))
        .unwrap_or_else(|| PathBuf::from(".headwater"));
    home.join("taxi")
}

/// The lake a block names: a folder, S3, GCS or Azure.
async fn lake_from_block(name: &str) -> Result<Lake> {
    let doc = headwater::blocks::load_document(name).await?;
    Ok(Lake::from_block(name, &doc.block_type, doc.data)?)
}

/// A downloaded month: where it is, and which version of the file on the
/// web it is (recorded with the lake's version, so that a changed file is
/// noticed by `headwater dataset check-sources`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fetched {
    path: String,
    source: SourceStamp,
}

/// Downloads a month's file (resuming if interrupted). A file downloaded
/// before is revalidated with the server instead (`If-None-Match` /
/// `If-Modified-Since`): a re-run fetches it again only if it changed on
/// the web, which a result cache keyed on the URL could not tell.
#[task(retries = 3, retry_delay = [1, 5, 10], tags = ["extract"])]
async fn fetch(url: String) -> Result<Fetched> {
    let file = url.rsplit('/').next().context("the URL names no file")?.to_string();
    let dest = work_dir().join("downloads").join(&file);
    let got = download(&url, &dest, &DownloadOptions::default()).await?;
    if got.unchanged {
        info!("{file} has not changed on the server: using the copy downloaded before");
    } else {
        let resumed = if got.resumed > 0 { " (resumed)" } else { "" };
        info!("downloaded {file}: {:.1} MB{resumed}", got.bytes as f64 / 1e6);
    }
    let source = SourceStamp { url, etag: got.etag, last_modified: got.last_modified, size: Some(got.bytes) };
    Ok(Fetched { path: dest.display().to_string(), source })
}

/// What cleaning a month produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cleaned {
    parquet: String,
    rejects: String,
    read: u64,
    rejected: u64,
    rows: u64,
    bytes: u64,
    missing_passengers: u64,
    zero_passengers: u64,
    schema: Vec<Column>,
}

/// CSV → Parquet: timestamps parsed by the schema, snake_case column names,
/// and (with `drop_passengers`) passenger counts that are missing or zero
/// dropped, logged before and after (FHV files have no passenger counts:
/// their trips without a pickup zone are counted instead). Malformed rows
/// are quarantined; more than 1 % fails.
#[task(tags = ["transform"])]
async fn clean(color: Color, csv: String, year: i32, month: u32, drop_passengers: bool) -> Result<Cleaned> {
    let out = work_dir().join("parquet");
    std::fs::create_dir_all(&out)?;
    let parquet = out.join(format!("{}_tripdata_{year}-{month:02}.parquet", color.name()));
    let rejects = out.join(format!("{}_tripdata_{year}-{month:02}.rejects.csv", color.name()));
    let (p, r) = (parquet.clone(), rejects.clone());
    let schema = color.schema();
    let (converted, missing, zero) = tokio::task::spawn_blocking(move || {
        let (mut missing, mut zero) = (0u64, 0u64);
        let mut step = |b: RecordBatch| {
            if color == Color::Fhv {
                missing += transform::count_nulls(&b, "PUlocationID")? as u64;
                return transform::snake_case_names(&b);
            }
            missing += transform::count_nulls(&b, "passenger_count")? as u64;
            if !drop_passengers {
                return transform::snake_case_names(&b);
            }
            let (b, dropped) = transform::keep_greater_than(&b, "passenger_count", 0)?;
            zero += dropped as u64;
            transform::snake_case_names(&b)
        };
        let c = csv_to_parquet(Path::new(&csv), &schema, &mut step, &p, &r, 0.01)?;
        Ok::<_, headwater_lake::LakeError>((c, missing, zero.saturating_sub(missing)))
    })
    .await??;
    let parsed = converted.parse;
    info!(
        "rows: {} read, {} loaded, {} rejected (see {})",
        parsed.read,
        parsed.loaded,
        parsed.rejected,
        rejects.display()
    );
    if color == Color::Fhv {
        info!("PUlocationID: missing on {missing} of {} trips (kept)", converted.written);
    } else {
        info!(
            "passenger_count: {missing} missing and {zero} zero dropped; rows: {} before, {} after",
            parsed.loaded, converted.written
        );
    }
    let file = std::fs::File::open(&parquet)?;
    let meta = parquet_schema(file)?;
    Ok(Cleaned {
        parquet: parquet.display().to_string(),
        rejects: rejects.display().to_string(),
        read: parsed.read,
        rejected: parsed.rejected,
        rows: converted.written,
        bytes: converted.bytes,
        missing_passengers: missing,
        zero_passengers: zero,
        schema: meta,
    })
}

fn parquet_schema(file: std::fs::File) -> Result<Vec<Column>> {
    let reader = headwater_lake::parquet_arrow_schema(file)?;
    Ok(reader
        .fields()
        .iter()
        .map(|f| Column { name: f.name().clone(), data_type: f.data_type().to_string(), nullable: f.is_nullable() })
        .collect())
}

/// Puts the month's file in the lake (replacing the month if it is there)
/// and records the write in the catalog. A schema that conflicts with the
/// dataset's is refused before anything is uploaded.
#[task(retries = 2, retry_delay = 2, tags = ["load"])]
async fn write_to_lake(
    lake_block: String,
    dataset: String,
    year: i32,
    month: u32,
    cleaned: Cleaned,
    source: SourceStamp,
) -> Result<String> {
    let store = headwater::current_store()?;
    if let Some(d) = store.read_dataset(&dataset).await? {
        headwater_core::dataset::check_schema(&dataset, &d.schema, &cleaned.schema, false)
            .map_err(anyhow::Error::msg)?;
    }
    let lake = lake_from_block(&lake_block).await?;
    let key = partition_key(&dataset, year, month);
    lake.put_file(&key, Path::new(&cleaned.parquet)).await?;
    // Quarantined rows travel with the data they were cut from.
    let rejects_key = key.replace("data.parquet", "rejects.csv");
    if cleaned.rejected > 0 {
        lake.put_file(&rejects_key, Path::new(&cleaned.rejects)).await?;
    } else {
        lake.delete(&rejects_key).await?;
    }
    let version = store
        .record_dataset_write(
            &DatasetVersion {
                dataset: dataset.clone(),
                partition: format!("year={year}/month={month:02}"),
                version: 0,
                location: lake.uri_of(&key),
                rows: cleaned.rows,
                bytes: cleaned.bytes,
                schema: cleaned.schema.clone(),
                flow_run_id: headwater::current_flow_run().map(|(id, _)| id),
                written: chrono::Utc::now(),
                inputs: vec![],
                source: Some(source),
                source_check: None,
            },
            false,
        )
        .await?;
    info!("wrote {} ({} rows), version {} of the partition", lake.uri_of(&key), cleaned.rows, version.version);
    Ok(lake.uri_of(&key))
}

/// The course's `etl_web_to_gcs`: fetch a month from the web, clean it,
/// write it to the lake. Returns the rows written.
#[flow(name = "etl-web-to-lake", run_name = "{color}-{year}-{month:02}")]
pub async fn etl_web_to_lake(color: Color, year: i32, month: Month, base_url: String, lake: String) -> Result<u64> {
    let got = fetch(generate::month_url(&base_url, color.name(), year, month.0)).await?;
    let cleaned = clean(color, got.path, year, month.0, true).await?;
    let rows = cleaned.rows;
    write_to_lake(lake, color.name().to_string(), year, month.0, cleaned, got.source).await?;
    Ok(rows)
}

/// The month's CSV straight into a PostgreSQL table (replaced), parsed and
/// streamed by binary COPY in one transaction: no intermediate file, every
/// row or none. Malformed rows are quarantined next to the download.
#[task(retries = 2, retry_delay = 2, tags = ["postgres"])]
async fn load_postgres(postgres: String, table: String, color: Color, csv: String) -> Result<u64> {
    let pg = headwater::blocks::PostgresConnection::load(&postgres).await?;
    let schema = color.schema();
    let rejects = PathBuf::from(format!("{}.rejects.csv", csv.trim_end_matches(".gz").trim_end_matches(".csv")));
    let input = headwater_lake::postgres::CsvInput {
        path: Path::new(&csv),
        schema: &schema,
        transform: Box::new(|b| transform::snake_case_names(&b)),
        rejects: &rejects,
        max_reject_fraction: 0.01,
    };
    let got = headwater_lake::postgres::load_csv(&pg.url(), &table, input, headwater_lake::postgres::LoadMode::Replace)
        .await?;
    info!(
        "rows: {} read, {} inserted into {table} on {}:{}/{}, {} rejected (see {})",
        got.parse.read,
        got.rows,
        pg.host,
        pg.port,
        pg.database,
        got.parse.rejected,
        rejects.display()
    );
    Ok(got.rows)
}

/// The course's first pipeline: a month from the web straight into
/// PostgreSQL, every row (timestamps parsed), through a PostgreSQL block.
#[flow(name = "ingest-web-to-postgres", run_name = "{color}-{year}-{month:02}")]
pub async fn ingest_web_to_postgres(
    color: Color,
    year: i32,
    month: Month,
    base_url: String,
    postgres: String,
    table: String,
) -> Result<u64> {
    let got = fetch(generate::month_url(&base_url, color.name(), year, month.0)).await?;
    load_postgres(postgres, table, color, got.path).await
}

/// Loads a month from the lake into the warehouse block — DuckDB, a
/// PostgreSQL database or BigQuery — replacing the month in one
/// transaction; returns the rows loaded.
#[task(retries = 2, retry_delay = 2, tags = ["warehouse"])]
async fn load_month(lake_block: String, warehouse_block: String, color: Color, year: i32, month: u32) -> Result<u64> {
    let lake = lake_from_block(&lake_block).await?;
    let warehouse = headwater::blocks::load_document(&warehouse_block).await?;
    let key = partition_key(color.name(), year, month);
    let table = format!("{}_trips", color.name());
    let what = format!("{}-{year}-{month:02}", color.name());
    if warehouse.block_type == "bigquery-warehouse" {
        let block: headwater::blocks::BigQueryWarehouse = serde_json::from_value(warehouse.data)?;
        let uri = gcs_uri_for(&lake, &key, &block, &what).await?;
        let rows =
            headwater_lake::bigquery::BigQuery::from_block(&block)?.replace_month(&table, &uri, year, month).await?;
        info!("loaded {rows} rows of {what} into BigQuery {}.{}.{table}", block.project, block.dataset);
        let location = format!("bigquery://{}/{}/{table}", block.project, block.dataset);
        record_warehouse_write(color, &table, year, month, rows, location).await?;
        return Ok(rows);
    }
    let local = work_dir().join("from-lake").join(format!("{}_{year}_{month:02}.parquet", color.name()));
    std::fs::create_dir_all(local.parent().expect("has a parent"))?;
    lake.get_to_file(&key, &local).await?;
    let scratch = local.clone();
    let (rows, location) = match warehouse.block_type.as_str() {
        "duckdb-warehouse" => {
            let wh: DuckDbWarehouse = serde_json::from_value(warehouse.data)?;
            // A lake in a local folder is also queryable in place, as a view.
            let lake_files = match headwater::blocks::load_document(&lake_block).await?.block_type.as_str() {
                "local-file-system" => Some(lake.uri_of(&format!("{}/**/*.parquet", color.name()))),
                _ => None,
            };
            let path = wh.path.clone();
            let (t, view) = (table.clone(), format!("{}_lake", color.name()));
            let rows = tokio::task::spawn_blocking(move || -> Result<u64> {
                let w = Warehouse::open(Path::new(&path))?;
                let rows = w.replace_month(&t, &local, year, month)?;
                if let Some(files) = lake_files {
                    w.create_lake_view(&view, files.trim_start_matches("file://"))?;
                }
                Ok(rows)
            })
            .await??;
            info!("loaded {rows} rows of {what} into {table} in {}", wh.path);
            (rows, format!("duckdb://{}#{table}", wh.path))
        }
        "postgres-connection" => {
            let pg: headwater::blocks::PostgresConnection = serde_json::from_value(warehouse.data)?;
            let mode = headwater_lake::postgres::LoadMode::month(year, month);
            let rows = headwater_lake::postgres::load_parquet(&pg.url(), &table, &local, mode).await?;
            info!("loaded {rows} rows of {what} into {table} on {}:{}/{}", pg.host, pg.port, pg.database);
            (rows, format!("postgres://{}:{}/{}#{table}", pg.host, pg.port, pg.database))
        }
        other => bail!(
            "block '{warehouse_block}' is a {other}; a warehouse is a duckdb-warehouse, postgres-connection or bigquery-warehouse"
        ),
    };
    let _ = std::fs::remove_file(scratch);
    record_warehouse_write(color, &table, year, month, rows, location).await?;
    Ok(rows)
}

/// Records the warehouse's month in the catalog as a version of the
/// table's dataset (`yellow_trips`), made from the lake's version of the
/// month it was loaded from: the lineage lake → warehouse.
async fn record_warehouse_write(
    color: Color,
    table: &str,
    year: i32,
    month: u32,
    rows: u64,
    location: String,
) -> Result<()> {
    let store = headwater::current_store()?;
    let partition = format!("year={year}/month={month:02}");
    let source = store.list_partitions(color.name()).await?.into_iter().find(|v| v.partition == partition);
    let version = store
        .record_dataset_write(
            &DatasetVersion {
                dataset: table.to_string(),
                partition,
                version: 0,
                location,
                rows,
                bytes: 0,
                // The table's columns are the lake's.
                schema: source.as_ref().map(|v| v.schema.clone()).unwrap_or_default(),
                flow_run_id: headwater::current_flow_run().map(|(id, _)| id),
                written: chrono::Utc::now(),
                inputs: source
                    .map(|v| VersionRef { dataset: v.dataset, partition: v.partition, version: v.version })
                    .into_iter()
                    .collect(),
                source: None,
                source_check: None,
            },
            true,
        )
        .await?;
    info!("recorded {table} {} as version {}", version.partition, version.version);
    Ok(())
}

/// Where BigQuery's load job reads the month from: the lake itself when it
/// is a GCS bucket, else a copy put under the block's `staging_uri`.
async fn gcs_uri_for(
    lake: &Lake,
    key: &str,
    block: &headwater::blocks::BigQueryWarehouse,
    what: &str,
) -> Result<String> {
    let in_lake = lake.uri_of(key);
    if in_lake.starts_with("gs://") {
        return Ok(in_lake);
    }
    let Some(staging) = &block.staging_uri else {
        bail!("BigQuery loads from Google Cloud Storage: the lake ({}) is not a GCS bucket and the warehouse block has no staging_uri (gs://bucket/folder)", lake.uri)
    };
    let Some((bucket, folder)) = staging.strip_prefix("gs://").map(|r| r.split_once('/').unwrap_or((r, ""))) else {
        bail!("staging_uri must be gs://bucket/folder, not '{staging}'")
    };
    let stage = Lake::from_gcs(&headwater::blocks::GcsBucket {
        bucket: bucket.to_string(),
        bucket_folder: Some(folder.to_string()),
        gcp_credentials: block.gcp_credentials.clone(),
    })?;
    let local = work_dir().join("staging").join(format!("{what}.parquet"));
    std::fs::create_dir_all(local.parent().expect("has a parent"))?;
    lake.get_to_file(key, &local).await?;
    stage.put_file(key, &local).await?;
    let _ = std::fs::remove_file(&local);
    Ok(stage.uri_of(key))
}

/// The course's `etl_gcs_to_bq`: the month's Parquet from the lake into
/// the warehouse. Returns the row count.
#[flow(name = "etl-lake-to-warehouse", run_name = "{color}-{year}-{month:02}")]
pub async fn etl_lake_to_warehouse(
    color: Color,
    year: i32,
    month: Month,
    lake: String,
    warehouse: String,
) -> Result<u64> {
    load_month(lake, warehouse, color, year, month.0).await
}

/// One colour's month, web → lake → warehouse: the flow a partitioned
/// deployment runs once per partition (`headwater backfill taxi-months …`).
#[flow(
    name = "etl-month",
    run_name = "{color}-{year}-{month:02}",
    defaults = r#"{"base_url": "https://github.com/DataTalksClub/nyc-tlc-data/releases/download", "lake": "taxi-lake", "warehouse": "taxi-warehouse"}"#
)]
pub async fn etl_month(
    color: Color,
    year: i32,
    month: Month,
    base_url: String,
    lake: String,
    warehouse: String,
) -> Result<u64> {
    let rows = etl_web_to_lake(color, year, month, base_url, lake.clone()).await?;
    let loaded = etl_lake_to_warehouse(color, year, month, lake, warehouse).await?;
    info!("{} {year}-{:02}: {rows} rows in the lake, {loaded} in the warehouse", color.name(), month.0);
    Ok(loaded)
}

/// The month rows, as the parent flow's table artifact shows them.
#[derive(Serialize)]
struct MonthRows {
    month: u32,
    lake_rows: u64,
    warehouse_rows: u64,
}

/// The course's parent flow: for each month, web → lake, then lake →
/// warehouse, each a subflow; logs the total and publishes rows per month.
#[flow(
    name = "etl-parent-flow",
    defaults = r#"{"months": [1, 2, 3], "year": 2021, "color": "yellow", "base_url": "https://github.com/DataTalksClub/nyc-tlc-data/releases/download", "lake": "taxi-lake", "warehouse": "taxi-warehouse"}"#
)]
pub async fn etl_parent_flow(
    months: Vec<Month>,
    year: i32,
    color: Color,
    base_url: String,
    lake: String,
    warehouse: String,
) -> Result<u64> {
    let mut total = 0;
    let mut table = Vec::new();
    for month in months {
        let rows = etl_web_to_lake(color, year, month, base_url.clone(), lake.clone()).await?;
        let loaded = etl_lake_to_warehouse(color, year, month, lake.clone(), warehouse.clone()).await?;
        table.push(MonthRows { month: month.0, lake_rows: rows, warehouse_rows: loaded });
        total += loaded;
    }
    info!("total rows: {total}");
    headwater::table_artifact(&table)?
        .key(format!("{}-{year}-rows", color.name()))
        .description("rows per month in the lake and the warehouse")
        .publish()?;
    Ok(total)
}

/// `taxi demo [--months 1,2,3] [--year 2021] [--color yellow] [--rows N]`:
/// everything offline on embedded defaults.
pub async fn demo(args: &[String]) -> Result<()> {
    let mut months = vec![1u32, 2, 3];
    let (mut year, mut color, mut rows) = (2021, Color::Yellow, None::<u64>);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--months" => months = value()?.split(',').map(|m| m.trim().parse()).collect::<Result<_, _>>()?,
            "--year" => year = value()?.parse()?,
            "--color" => color = serde_json::from_value(serde_json::json!(value()?))?,
            "--rows" => rows = Some(value()?.parse()?),
            other => {
                bail!("unknown option {other} (options: --months 1,2,3 --year 2021 --color yellow|green|fhv --rows N)")
            }
        }
    }
    let work = work_dir();
    let web = work.join("web");
    println!("Generating {} {year} months {months:?} into {} …", color.name(), web.display());
    for &m in &months {
        let path = web.join(color.name()).join(generate::file_name(color.name(), year, m));
        let want = rows.unwrap_or_else(|| generate::real_rows(color.name(), year, m));
        if !path.exists() {
            let p = path.clone();
            let c = color.name().to_string();
            let made = tokio::task::spawn_blocking(move || generate::generate(&c, year, m, want, 5, &p)).await??;
            println!("  {} ({} rows, {} malformed lines)", path.display(), made.rows, made.malformed);
        }
    }
    let server = headwater_lake::serve::FileServer::start(&web, 0).await?;
    println!(
        "Serving them at {} (the public layout: {{color}}/{{color}}_tripdata_{{YYYY}}-{{MM}}.csv.gz)",
        server.url()
    );

    let engine = Engine::global()?;
    engine
        .scope(async {
            if LocalFileSystem::load("taxi-lake").await.is_err() {
                LocalFileSystem { basepath: work.join("lake").display().to_string() }.save("taxi-lake").await?;
            }
            if DuckDbWarehouse::load("taxi-warehouse").await.is_err() {
                let path = work.join("warehouse").join("taxi.duckdb").display().to_string();
                DuckDbWarehouse { path, schema: None }.save("taxi-warehouse").await?;
            }
            let months: Vec<Month> =
                months.iter().map(|m| Month::try_from(*m)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
            etl_parent_flow(months, year, color, server.url(), "taxi-lake".into(), "taxi-warehouse".into()).await
        })
        .await?;
    let wh = engine.scope(DuckDbWarehouse::load("taxi-warehouse")).await?;
    let warehouse = Warehouse::open(Path::new(&wh.path))?;
    let counts = warehouse.month_counts(&format!("{}_trips", color.name()))?;
    println!("\nRows per month in the warehouse ({}):", wh.path);
    for c in counts {
        println!("  {}-{:02}  {:>10}", c.year, c.month, c.rows);
    }
    let view = format!("{}_lake", color.name());
    if warehouse.has_table(&view)? {
        let rows = warehouse.scalar(&format!("SELECT count(*) FROM {view}"))?;
        println!("The lake's Parquet files, queried in place: SELECT count(*) FROM {view} → {rows}");
    }
    println!(
        "\nSee the runs with `headwater flow-run ls`, the lake with `headwater dataset inspect {}`.",
        color.name()
    );
    Ok(())
}
