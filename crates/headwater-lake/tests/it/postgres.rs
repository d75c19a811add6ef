use headwater_lake::generate::generate;
use headwater_lake::postgres::{load_parquet, LoadMode};
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
