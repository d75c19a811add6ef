//! What the taxi pipelines do to record batches: rename columns, fill or
//! drop missing and zero passenger counts, filter, add a pickup date.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Date32Array, Int64Array, TimestampMicrosecondArray};
use arrow::compute::{filter_record_batch, kernels::cmp::gt};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::LakeError;

/// The batch with columns renamed (`from` → `to`); absent columns are skipped.
pub fn rename(batch: &RecordBatch, pairs: &[(&str, &str)]) -> Result<RecordBatch, LakeError> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| match pairs.iter().find(|(from, _)| *from == f.name()) {
            Some((_, to)) => f.as_ref().clone().with_name(*to),
            None => f.as_ref().clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec())?)
}

/// CamelCase TLC names in snake_case (`VendorID` → `vendor_id`,
/// `PULocationID` → `pu_location_id`, FHV's `PUlocationID` too), the
/// timestamps of every color as `pickup_datetime` / `dropoff_datetime`.
pub fn snake_case_names(batch: &RecordBatch) -> Result<RecordBatch, LakeError> {
    rename(
        batch,
        &[
            ("VendorID", "vendor_id"),
            ("RatecodeID", "ratecode_id"),
            ("PULocationID", "pu_location_id"),
            ("DOLocationID", "do_location_id"),
            ("tpep_pickup_datetime", "pickup_datetime"),
            ("tpep_dropoff_datetime", "dropoff_datetime"),
            ("lpep_pickup_datetime", "pickup_datetime"),
            ("lpep_dropoff_datetime", "dropoff_datetime"),
            ("dropOff_datetime", "dropoff_datetime"),
            ("PUlocationID", "pu_location_id"),
            ("DOlocationID", "do_location_id"),
            ("SR_Flag", "sr_flag"),
            ("Affiliated_base_number", "affiliated_base_number"),
        ],
    )
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, LakeError> {
    batch.column_by_name(name).ok_or_else(|| LakeError::Data(format!("no column '{name}' in the batch")))
}

fn int_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array, LakeError> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| LakeError::Data(format!("column '{name}' is not an integer column")))
}

/// How many values of the column are missing.
pub fn count_nulls(batch: &RecordBatch, name: &str) -> Result<usize, LakeError> {
    Ok(column(batch, name)?.null_count())
}

/// Missing values of an integer column set to `value`; returns how many.
pub fn fill_nulls(batch: &RecordBatch, name: &str, value: i64) -> Result<(RecordBatch, usize), LakeError> {
    let col = int_column(batch, name)?;
    let filled = col.null_count();
    if filled == 0 {
        return Ok((batch.clone(), 0));
    }
    let replaced: Int64Array = col.iter().map(|v| Some(v.unwrap_or(value))).collect();
    let idx = batch.schema().index_of(name)?;
    let mut columns = batch.columns().to_vec();
    columns[idx] = Arc::new(replaced);
    Ok((RecordBatch::try_new(batch.schema(), columns)?, filled))
}

/// Only the rows whose integer column is above `min` (missing values are
/// dropped too); returns how many were dropped.
pub fn keep_greater_than(batch: &RecordBatch, name: &str, min: i64) -> Result<(RecordBatch, usize), LakeError> {
    let col = int_column(batch, name)?;
    let mask: BooleanArray = gt(col, &Int64Array::new_scalar(min))?;
    // A null comparison drops the row.
    let mask: BooleanArray = mask.iter().map(|v| Some(v.unwrap_or(false))).collect();
    let kept = filter_record_batch(batch, &mask)?;
    let dropped = batch.num_rows() - kept.num_rows();
    Ok((kept, dropped))
}

/// Adds a `pickup_date` column (the day of a timestamp column).
pub fn add_date(batch: &RecordBatch, timestamp: &str, name: &str) -> Result<RecordBatch, LakeError> {
    let ts = column(batch, timestamp)?
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| LakeError::Data(format!("column '{timestamp}' is not a timestamp column")))?;
    let days: Date32Array = ts.iter().map(|v| v.map(|micros| micros.div_euclid(86_400_000_000) as i32)).collect();
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(name, DataType::Date32, true));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(days));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}
