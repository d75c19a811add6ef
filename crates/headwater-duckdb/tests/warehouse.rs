//! The warehouse against a real DuckDB file and real Parquet files.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use headwater_duckdb::{MonthCount, Warehouse};
use parquet::arrow::ArrowWriter;

/// A Parquet file of `rows` trips.
fn trips(path: &Path, rows: i64, passengers: i64) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("trip", DataType::Int64, false),
        Field::new("passenger_count", DataType::Int64, true),
        Field::new("fare_amount", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows)),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|_| passengers))),
            Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64 * 1.5))),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn months_are_replaced_whole_never_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(&dir.path().join("wh/taxi.duckdb")).unwrap();
    let (jan, feb) = (dir.path().join("jan.parquet"), dir.path().join("feb.parquet"));
    trips(&jan, 1000, 1);
    trips(&feb, 700, 2);
    assert_eq!(w.replace_month("rides", &jan, 2021, 1).unwrap(), 1000);
    assert_eq!(w.replace_month("rides", &feb, 2021, 2).unwrap(), 700);
    assert_eq!(w.replace_month("rides", &jan, 2021, 1).unwrap(), 1000, "the month again");
    assert_eq!(
        w.month_counts("rides").unwrap(),
        [MonthCount { year: 2021, month: 1, rows: 1000 }, MonthCount { year: 2021, month: 2, rows: 700 }]
    );
    assert_eq!(w.scalar("SELECT count(*) FROM rides").unwrap(), 1700);
    assert_eq!(w.scalar("SELECT sum(passenger_count) FROM rides WHERE month = 2").unwrap(), 1400);
    assert!(w.has_table("rides").unwrap());
    assert!(w
        .replace_month("rides; DROP TABLE rides", &jan, 2021, 3)
        .unwrap_err()
        .to_string()
        .contains("not a table name"));
    assert_eq!(w.append("raw_rides", &jan).unwrap(), 1000);
    assert_eq!(w.append("raw_rides", &jan).unwrap(), 1000);
    assert_eq!(w.scalar("SELECT count(*) FROM raw_rides").unwrap(), 2000);
}

#[test]
fn a_failed_load_leaves_the_month_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(&dir.path().join("taxi.duckdb")).unwrap();
    let good = dir.path().join("good.parquet");
    trips(&good, 500, 1);
    w.replace_month("rides", &good, 2021, 1).unwrap();
    // A file cut short, as a killed writer would leave it.
    let bytes = std::fs::read(&good).unwrap();
    let broken = dir.path().join("broken.parquet");
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    assert!(w.replace_month("rides", &broken, 2021, 1).is_err());
    assert_eq!(w.scalar("SELECT count(*) FROM rides WHERE month = 1").unwrap(), 500, "the delete was rolled back");
    assert!(w.replace_month("fresh", &broken, 2021, 1).is_err());
    assert!(!w.has_table("fresh").unwrap(), "no half-made table either");
}

#[test]
fn columns_are_matched_by_name_and_the_lake_is_a_view() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(&dir.path().join("taxi.duckdb")).unwrap();
    let lake = dir.path().join("lake/yellow");
    for (m, rows) in [(1, 300), (2, 200)] {
        let folder = lake.join(format!("year=2021/month={m:02}"));
        std::fs::create_dir_all(&folder).unwrap();
        trips(&folder.join("data.parquet"), rows, m);
    }
    w.create_lake_view("yellow_lake", &format!("{}/**/*.parquet", lake.display())).unwrap();
    assert_eq!(w.scalar("SELECT count(*) FROM yellow_lake").unwrap(), 500);
    assert_eq!(w.scalar("SELECT count(*) FROM yellow_lake WHERE year = 2021 AND month = 2").unwrap(), 200);
    // The view reads the files as they are now: a third month shows up.
    let march = lake.join("year=2021/month=03");
    std::fs::create_dir_all(&march).unwrap();
    trips(&march.join("data.parquet"), 50, 3);
    assert_eq!(w.scalar("SELECT count(*) FROM yellow_lake").unwrap(), 550);

    // A file whose columns come in another order still lands in the right ones.
    let jan = dir.path().join("jan.parquet");
    trips(&jan, 10, 4);
    w.replace_month("rides", &jan, 2021, 1).unwrap();
    let swapped = dir.path().join("swapped.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("fare_amount", DataType::Float64, true),
        Field::new("passenger_count", DataType::Int64, true),
        Field::new("trip", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from(vec![9.5])),
            Arc::new(Int64Array::from(vec![6])),
            Arc::new(Int64Array::from(vec![77])),
        ],
    )
    .unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&swapped).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    w.replace_month("rides", &swapped, 2021, 2).unwrap();
    assert_eq!(w.scalar("SELECT passenger_count FROM rides WHERE trip = 77").unwrap(), 6);
    assert!(w.create_lake_view("bad view", "x").unwrap_err().to_string().contains("not a table name"));
}
