//! What truly differs between the two engines when a row is read: how
//! times, ids, JSON and integers are stored. SQLite keeps times as
//! microseconds since the epoch, ids as text, JSON as text and every
//! integer as 64 bits; PostgreSQL has `timestamptz`, `uuid`, `jsonb` and
//! 32- or 64-bit integers. The row mappings in `rows.rs` are written once
//! against [`Cols`].

use chrono::{DateTime, Utc};
use headwater_store::Result;
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

use crate::columns::corrupt;
use crate::error::Db;

/// A row of either engine, read column by column.
pub(crate) trait Cols {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn flag(&self, col: &str) -> Result<bool>;
    fn opt_real(&self, col: &str) -> Result<Option<f64>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn time(&self, col: &str) -> Result<DateTime<Utc>>;
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
    fn uuid(&self, col: &str) -> Result<Uuid>;
    fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>>;
    /// A JSON column as `T`; `what` names it in a corruption error.
    fn json<T: DeserializeOwned>(&self, col: &str, what: &str) -> Result<T>;
    fn opt_json<T: DeserializeOwned>(&self, col: &str, what: &str) -> Result<Option<T>>;
}

/// SQLite's times: microseconds since the epoch.
pub(crate) fn from_micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or_default()
}

impl Cols for SqliteRow {
    fn text(&self, col: &str) -> Result<String> {
        self.try_get(col).db()
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).db()
    }
    fn flag(&self, col: &str) -> Result<bool> {
        self.try_get(col).db()
    }
    fn opt_real(&self, col: &str) -> Result<Option<f64>> {
        self.try_get(col).db()
    }
    fn int(&self, col: &str) -> Result<i64> {
        self.try_get(col).db()
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.try_get(col).db()
    }
    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        Ok(from_micros(self.try_get(col).db()?))
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.try_get::<Option<i64>, _>(col).db()?.map(from_micros))
    }
    fn uuid(&self, col: &str) -> Result<Uuid> {
        let s: String = self.try_get(col).db()?;
        Uuid::parse_str(&s).map_err(|e| corrupt(col, e))
    }
    fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>> {
        let s: Option<String> = self.try_get(col).db()?;
        s.map(|s| Uuid::parse_str(&s).map_err(|e| corrupt(col, e))).transpose()
    }
    fn json<T: DeserializeOwned>(&self, col: &str, what: &str) -> Result<T> {
        let text: String = self.try_get(col).db()?;
        serde_json::from_str(&text).map_err(|e| corrupt(what, e))
    }
    fn opt_json<T: DeserializeOwned>(&self, col: &str, what: &str) -> Result<Option<T>> {
        let text: Option<String> = self.try_get(col).db()?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(what, e))).transpose()
    }
}

impl Cols for PgRow {
    fn text(&self, col: &str) -> Result<String> {
        self.try_get(col).db()
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.try_get(col).db()
    }
    fn flag(&self, col: &str) -> Result<bool> {
        self.try_get(col).db()
    }
    fn opt_real(&self, col: &str) -> Result<Option<f64>> {
        self.try_get(col).db()
    }
    /// `integer` columns are 32 bits, `bigint` ones and counts 64.
    fn int(&self, col: &str) -> Result<i64> {
        match self.try_get::<i64, _>(col) {
            Err(sqlx::Error::ColumnDecode { .. }) => self.try_get::<i32, _>(col).map(i64::from).db(),
            other => other.db(),
        }
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        match self.try_get::<Option<i64>, _>(col) {
            Err(sqlx::Error::ColumnDecode { .. }) => self.try_get::<Option<i32>, _>(col).map(|v| v.map(i64::from)).db(),
            other => other.db(),
        }
    }
    fn time(&self, col: &str) -> Result<DateTime<Utc>> {
        self.try_get(col).db()
    }
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
        self.try_get(col).db()
    }
    fn uuid(&self, col: &str) -> Result<Uuid> {
        self.try_get(col).db()
    }
    fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>> {
        self.try_get(col).db()
    }
    fn json<T: DeserializeOwned>(&self, col: &str, _what: &str) -> Result<T> {
        Ok(self.try_get::<Json<T>, _>(col).db()?.0)
    }
    fn opt_json<T: DeserializeOwned>(&self, col: &str, _what: &str) -> Result<Option<T>> {
        Ok(self.try_get::<Option<Json<T>>, _>(col).db()?.map(|j| j.0))
    }
}
