use headwater_lake::generate::generate;
use headwater_lake::postgres::{load_csv, load_parquet, CsvInput, LoadMode};
use headwater_lake::{csv_to_parquet, schema, transform};
use sqlx::{Connection, PgConnection};

async fn count(url: &str, table: &str) -> i64 {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\"")).fetch_one(&mut c).await.unwrap()
}

/// Binary COPY into a real PostgreSQL: every row, values intact, replace is
/// idempotent, and a failed load leaves nothing behind.
#[tokio::test]
async fn parquet_loads_into_postgres_in_one_transaction() {
    let Some(db) = headwater_test_support::PgTestDb::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("y.csv.gz");
    generate("yellow", 2021, 1, 3_000, 2, &src).unwrap();
    let parquet = dir.path().join("y.parquet");
    let mut names = |b| transform::snake_case_names(&b);
    let c = csv_to_parquet(&src, &schema::yellow(), &mut names, &parquet, &dir.path().join("r.csv"), 0.01).unwrap();
    assert_eq!(c.written, 3_000);

    assert_eq!(load_parquet(&db.url, "yellow_taxi_trips", &parquet, LoadMode::Replace).await.unwrap(), 3_000);
    assert_eq!(load_parquet(&db.url, "yellow_taxi_trips", &parquet, LoadMode::Replace).await.unwrap(), 3_000);
    assert_eq!(count(&db.url, "yellow_taxi_trips").await, 3_000, "replace is idempotent");
    load_parquet(&db.url, "yellow_taxi_trips", &parquet, LoadMode::Append).await.unwrap();
    assert_eq!(count(&db.url, "yellow_taxi_trips").await, 6_000);

    let mut c = PgConnection::connect(&db.url).await.unwrap();
    let (pickups_in_month, null_passengers): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE pickup_datetime >= '2021-01-01' AND pickup_datetime < '2021-02-01'), \
         count(*) FILTER (WHERE passenger_count IS NULL) FROM yellow_taxi_trips",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(pickups_in_month > 5_900, "timestamps arrive as timestamps: {pickups_in_month}");
    assert!(null_passengers > 100, "missing values arrive as NULL: {null_passengers}");

    // A table whose column has another type: the append fails and adds nothing.
    sqlx::query("CREATE TABLE clash (vendor_id TEXT, pickup_datetime DATE)").execute(&mut c).await.unwrap();
    sqlx::query("INSERT INTO clash VALUES ('x', '2021-01-01')").execute(&mut c).await.unwrap();
    assert!(load_parquet(&db.url, "clash", &parquet, LoadMode::Append).await.is_err());
    assert_eq!(count(&db.url, "clash").await, 1, "no partial rows");
}

/// A month replaced in place: other months stay, the same month twice is
/// there once.
#[tokio::test]
async fn a_partition_is_replaced_and_the_others_stay() {
    let Some(db) = headwater_test_support::PgTestDb::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut parquet = Vec::new();
    for (m, rows) in [(1, 1_200u64), (2, 800)] {
        let src = dir.path().join(format!("y{m}.csv.gz"));
        generate("yellow", 2021, m, rows, 0, &src).unwrap();
        let out = dir.path().join(format!("y{m}.parquet"));
        let mut names = |b| transform::snake_case_names(&b);
        csv_to_parquet(&src, &schema::yellow(), &mut names, &out, &dir.path().join("r.csv"), 0.01).unwrap();
        parquet.push(out);
    }
    let load = |i: usize, m: u32| load_parquet(&db.url, "trips", &parquet[i], LoadMode::month(2021, m));
    assert_eq!(load(0, 1).await.unwrap(), 1_200);
    assert_eq!(load(1, 2).await.unwrap(), 800);
    assert_eq!(load(0, 1).await.unwrap(), 1_200, "January again");
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    let per_month: Vec<(i32, i32, i64)> =
        sqlx::query_as("SELECT year, month, count(*) FROM trips GROUP BY 1, 2 ORDER BY 1, 2")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(per_month, [(2021, 1, 1_200), (2021, 2, 800)]);

    // A table loaded whole has no partition columns: a clear refusal, nothing changed.
    load_parquet(&db.url, "whole", &parquet[0], LoadMode::Replace).await.unwrap();
    let err = load_parquet(&db.url, "whole", &parquet[1], LoadMode::month(2021, 2)).await.unwrap_err().to_string();
    assert!(err.contains("table 'whole' has no column 'year'"), "{err}");
    assert_eq!(count(&db.url, "whole").await, 1_200);
}

/// CSV straight into PostgreSQL, no intermediate file: every good row, the
/// malformed ones quarantined and counted; too many of them roll back.
#[tokio::test]
async fn a_csv_streams_into_postgres_with_its_rejects_counted() {
    let Some(db) = headwater_test_support::PgTestDb::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("g.csv.gz");
    generate("green", 2020, 11, 150_000, 4, &src).unwrap();
    let rejects = dir.path().join("g.rejects.csv");
    let green = schema::green();
    let input = |max_reject_fraction| CsvInput {
        path: &src,
        schema: &green,
        transform: Box::new(|b| transform::snake_case_names(&b)),
        rejects: &rejects,
        max_reject_fraction,
    };
    let got = load_csv(&db.url, "green_trips", input(0.01), LoadMode::Replace).await.unwrap();
    assert_eq!((got.parse.read, got.parse.loaded, got.parse.rejected), (150_004, 150_000, 4));
    assert_eq!(got.rows, 150_000);
    assert_eq!(count(&db.url, "green_trips").await, 150_000);
    assert_eq!(std::fs::read_to_string(&rejects).unwrap().lines().count(), 1 + 4);
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    let in_month: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM green_trips WHERE pickup_datetime >= '2020-11-01' AND pickup_datetime < '2020-12-01'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(in_month > 149_000, "green's lpep_ columns renamed and parsed: {in_month}");

    // With no tolerance for rejects the same file fails, and the table keeps its rows.
    let err = load_csv(&db.url, "green_trips", input(0.0), LoadMode::Replace).await.unwrap_err();
    assert!(err.to_string().contains("4 of 150004 rows"), "{err}");
    assert_eq!(count(&db.url, "green_trips").await, 150_000, "rolled back: the old table is intact");

    // A database that is not there: its error, not the reader's.
    let bad_url = format!("{}/no_such_database", db.url.rsplit_once('/').unwrap().0);
    let err = load_csv(&bad_url, "t", input(0.01), LoadMode::Append).await.unwrap_err();
    assert!(err.to_string().contains("no_such_database"), "{err}");
}
