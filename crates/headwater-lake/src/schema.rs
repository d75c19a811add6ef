//! The TLC trip files' columns, as the parser reads them and as Arrow and
//! Parquet store them.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// How a CSV field is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    /// `YYYY-MM-DD HH:MM:SS`, local time without a zone.
    Timestamp,
    Text,
}

impl Kind {
    pub fn arrow(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Text => DataType::Utf8,
        }
    }

    fn infer(sample: &str) -> Kind {
        if sample.parse::<i64>().is_ok() {
            Kind::Int
        } else if sample.parse::<f64>().is_ok() {
            Kind::Float
        } else if crate::csv::parse_timestamp(sample).is_some() {
            Kind::Timestamp
        } else {
            Kind::Text
        }
    }
}

/// The columns of a CSV file, in the order the schema gives them (a file's
/// header may order them differently).
#[derive(Debug, Clone, PartialEq)]
pub struct CsvSchema {
    pub columns: Vec<(String, Kind)>,
}

impl CsvSchema {
    pub fn new(columns: &[(&str, Kind)]) -> CsvSchema {
        CsvSchema { columns: columns.iter().map(|(n, k)| (n.to_string(), *k)).collect() }
    }

    /// Every column nullable: the files leave fields empty.
    pub fn arrow(&self) -> SchemaRef {
        Arc::new(Schema::new(self.columns.iter().map(|(n, k)| Field::new(n, k.arrow(), true)).collect::<Vec<_>>()))
    }

    /// A schema guessed from a header and the first data rows (a column is
    /// the narrowest kind every sampled value fits).
    pub fn infer(header: &[&str], rows: &[Vec<&str>]) -> CsvSchema {
        let columns = header
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let kinds: Vec<Kind> =
                    rows.iter().filter_map(|r| r.get(i)).filter(|v| !v.is_empty()).map(|v| Kind::infer(v)).collect();
                let kind = if kinds.is_empty() {
                    Kind::Text
                } else if kinds.iter().all(|k| *k == Kind::Int) {
                    Kind::Int
                } else if kinds.iter().all(|k| matches!(k, Kind::Int | Kind::Float)) {
                    Kind::Float
                } else if kinds.iter().all(|k| *k == Kind::Timestamp) {
                    Kind::Timestamp
                } else {
                    Kind::Text
                };
                (name.to_string(), kind)
            })
            .collect();
        CsvSchema { columns }
    }
}

/// Yellow taxi trips (18 columns, 2019–2021 files).
pub fn yellow() -> CsvSchema {
    use Kind::*;
    CsvSchema::new(&[
        ("VendorID", Int),
        ("tpep_pickup_datetime", Timestamp),
        ("tpep_dropoff_datetime", Timestamp),
        ("passenger_count", Int),
        ("trip_distance", Float),
        ("RatecodeID", Int),
        ("store_and_fwd_flag", Text),
        ("PULocationID", Int),
        ("DOLocationID", Int),
        ("payment_type", Int),
        ("fare_amount", Float),
        ("extra", Float),
        ("mta_tax", Float),
        ("tip_amount", Float),
        ("tolls_amount", Float),
        ("improvement_surcharge", Float),
        ("total_amount", Float),
        ("congestion_surcharge", Float),
    ])
}

/// Green taxi trips (20 columns).
pub fn green() -> CsvSchema {
    use Kind::*;
    CsvSchema::new(&[
        ("VendorID", Int),
        ("lpep_pickup_datetime", Timestamp),
        ("lpep_dropoff_datetime", Timestamp),
        ("store_and_fwd_flag", Text),
        ("RatecodeID", Int),
        ("PULocationID", Int),
        ("DOLocationID", Int),
        ("passenger_count", Int),
        ("trip_distance", Float),
        ("fare_amount", Float),
        ("extra", Float),
        ("mta_tax", Float),
        ("tip_amount", Float),
        ("tolls_amount", Float),
        ("ehail_fee", Float),
        ("improvement_surcharge", Float),
        ("total_amount", Float),
        ("payment_type", Int),
        ("trip_type", Int),
        ("congestion_surcharge", Float),
    ])
}

/// For-hire vehicles (7 columns).
pub fn fhv() -> CsvSchema {
    use Kind::*;
    CsvSchema::new(&[
        ("dispatching_base_num", Text),
        ("pickup_datetime", Timestamp),
        ("dropOff_datetime", Timestamp),
        ("PUlocationID", Int),
        ("DOlocationID", Int),
        ("SR_Flag", Int),
        ("Affiliated_base_number", Text),
    ])
}

/// The schema of a TLC color.
pub fn for_color(color: &str) -> Option<CsvSchema> {
    match color {
        "yellow" => Some(yellow()),
        "green" => Some(green()),
        "fhv" => Some(fhv()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_have_the_documented_shapes() {
        assert_eq!(yellow().columns.len(), 18);
        assert_eq!(green().columns.len(), 20);
        assert_eq!(fhv().columns.len(), 7);
        let y = yellow().arrow();
        assert_eq!(y.field_with_name("tpep_pickup_datetime").unwrap().data_type(), &Kind::Timestamp.arrow());
        assert!(y.fields().iter().all(|f| f.is_nullable()));
        let inferred = CsvSchema::infer(
            &["a", "b", "c", "d", "e"],
            &[vec!["1", "1.5", "2021-01-01 00:00:00", "x", ""], vec!["2", "3", "2021-01-02 10:00:00", "y", ""]],
        );
        let kinds: Vec<_> = inferred.columns.iter().map(|(_, k)| *k).collect();
        assert_eq!(kinds, [Kind::Int, Kind::Float, Kind::Timestamp, Kind::Text, Kind::Text]);
    }
}
