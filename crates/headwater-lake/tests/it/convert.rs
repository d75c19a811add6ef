use headwater_lake::generate::generate;
use headwater_lake::{csv_to_parquet, schema, transform, LakeError};
use parquet::file::reader::{FileReader, SerializedFileReader};

fn parquet_rows(path: &std::path::Path) -> i64 {
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    r.metadata().file_metadata().num_rows()
}

#[test]
fn every_row_is_loaded_or_quarantined_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("yellow_tripdata_2021-01.csv.gz");
    let made = generate("yellow", 2021, 1, 20_000, 7, &src).unwrap();
    assert_eq!((made.rows, made.malformed), (20_000, 7));
    let (dst, rejects) = (dir.path().join("out.parquet"), dir.path().join("rejects.csv"));
    let mut keep = |b| Ok(b);
    let c = csv_to_parquet(&src, &schema::yellow(), &mut keep, &dst, &rejects, 0.01).unwrap();
    assert_eq!(c.parse.read, 20_007);
    assert_eq!(c.parse.loaded, 20_000);
    assert_eq!(c.parse.rejected, 7);
    assert_eq!(c.parse.loaded + c.parse.rejected, c.parse.read);
    assert_eq!(parquet_rows(&dst), 20_000);
    let quarantined = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<&str> = quarantined.lines().collect();
    assert_eq!(lines[0], "line,reason,raw");
    assert_eq!(lines.len(), 8);
    assert!(lines.iter().any(|l| l.contains("expected 18 fields")), "{quarantined}");
    assert!(lines.iter().any(|l| l.contains("is not a number")), "{quarantined}");
    assert!(lines.iter().any(|l| l.contains("is not a timestamp")), "{quarantined}");
    let line_no: u64 = lines[1].split(',').next().unwrap().parse().unwrap();
    assert!(line_no >= 2, "line numbers count the header as line 1");
}

#[test]
fn green_files_clean_with_renames_fills_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("green.csv.gz");
    generate("green", 2020, 11, 5_000, 0, &src).unwrap();
    let (mut missing, mut zero) = (0, 0);
    let mut clean = |b: arrow::record_batch::RecordBatch| {
        missing += transform::count_nulls(&b, "passenger_count")?;
        let (b, _) = transform::fill_nulls(&b, "passenger_count", 0)?;
        let (b, dropped) = transform::keep_greater_than(&b, "passenger_count", 0)?;
        zero += dropped;
        let b = transform::snake_case_names(&b)?;
        transform::add_date(&b, "pickup_datetime", "pickup_date")
    };
    let out = dir.path().join("green.parquet");
    let c = csv_to_parquet(&src, &schema::green(), &mut clean, &out, &dir.path().join("r.csv"), 0.0).unwrap();
    assert!(missing > 100, "about 7% of rows lack passenger_count: {missing}");
    assert!(zero >= missing, "filled with 0, then dropped with the zeros: {zero}");
    assert_eq!(c.written as usize, 5_000 - zero);
    let r = SerializedFileReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let names: Vec<String> =
        r.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_string()).collect();
    assert!(names.contains(&"pickup_datetime".to_string()) && names.contains(&"pu_location_id".to_string()));
    assert!(names.contains(&"pickup_date".to_string()) && !names.iter().any(|n| n.starts_with("lpep")));
}

#[test]
fn fhv_files_have_their_seven_columns_sparse_locations_and_snake_case_names() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("fhv_tripdata_2019-03.csv.gz");
    let made = generate("fhv", 2019, 3, 4_000, 3, &src).unwrap();
    assert_eq!((made.rows, made.malformed), (4_000, 3));
    let (mut read, mut no_pickup_zone) = (0, 0);
    let mut clean = |b: arrow::record_batch::RecordBatch| {
        read += b.num_rows();
        no_pickup_zone += transform::count_nulls(&b, "PUlocationID")?;
        transform::snake_case_names(&b)
    };
    let out = dir.path().join("fhv.parquet");
    let rejects = dir.path().join("r.csv");
    let c = csv_to_parquet(&src, &schema::fhv(), &mut clean, &out, &rejects, 0.01).unwrap();
    assert_eq!((c.parse.loaded, c.parse.rejected, c.written), (4_000, 3, 4_000));
    assert_eq!(read, 4_000);
    assert!((400..1_200).contains(&no_pickup_zone), "about 20% lack a pickup zone: {no_pickup_zone}");
    let quarantined = std::fs::read_to_string(&rejects).unwrap();
    assert!(quarantined.contains("expected 7 fields"), "{quarantined}");
    let r = SerializedFileReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let names: Vec<String> =
        r.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "dispatching_base_num",
            "pickup_datetime",
            "dropoff_datetime",
            "pu_location_id",
            "do_location_id",
            "sr_flag",
            "affiliated_base_number"
        ]
    );
}

#[test]
fn too_many_rejects_fail_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bad.csv");
    std::fs::write(
        &src,
        "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge\n\
         1,2021-01-01 00:30:10,2021-01-01 00:36:12,1,2.10,1,N,142,43,2,8,3,0.5,0,0,0.3,11.8,2.5\n\
         1,yesterday,2021-01-01 00:36:12,1,2.10,1,N,142,43,2,8,3,0.5,0,0,0.3,11.8,2.5\n",
    )
    .unwrap();
    let (dst, rejects) = (dir.path().join("out.parquet"), dir.path().join("rejects.csv"));
    let e = csv_to_parquet(&src, &schema::yellow(), &mut Ok, &dst, &rejects, 0.1).unwrap_err();
    assert!(matches!(e, LakeError::TooManyRejects { read: 2, rejected: 1, .. }), "{e}");
    assert!(e.to_string().contains("1 of 2 rows (50.00%)"), "{e}");
    assert!(!dst.exists() && !dir.path().join("out.parquet.tmp").exists(), "nothing half-written is left");
    assert!(std::fs::read_to_string(&rejects).unwrap().contains("'yesterday' is not a timestamp"));
}

#[test]
fn a_new_column_is_noticed_not_shifted() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("2022.csv");
    let mut header = schema::yellow().columns.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>().join(",");
    header.push_str(",airport_fee\n");
    std::fs::write(&src, header).unwrap();
    let e = csv_to_parquet(&src, &schema::yellow(), &mut Ok, &dir.path().join("o.parquet"), &dir.path().join("r"), 0.0)
        .unwrap_err();
    assert!(e.to_string().contains("column 'airport_fee' that the schema does not know"), "{e}");
}
