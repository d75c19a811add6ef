//! CSV (plain or gzip) to Arrow record batches, streaming, with an explicit
//! schema. A row that cannot be read — wrong number of fields, a value that
//! is not of its column's kind — is not dropped silently: it is counted and
//! written, with its line number and the reason, to a rejects file. Rows
//! loaded plus rows rejected always equal rows read.

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::NaiveDateTime;

use crate::schema::{CsvSchema, Kind};
use crate::LakeError;

/// How many rows go in one record batch (memory stays bounded by this).
pub const BATCH_ROWS: usize = 65_536;

/// What a parse read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParseStats {
    /// Data lines (the header not counted).
    pub read: u64,
    pub loaded: u64,
    pub rejected: u64,
}

/// Where rejected rows go: `line,reason,raw` (a CSV of its own).
pub struct Rejects<W: Write> {
    out: W,
    count: u64,
}

impl<W: Write> Rejects<W> {
    pub fn new(mut out: W) -> std::io::Result<Rejects<W>> {
        out.write_all(b"line,reason,raw\n")?;
        Ok(Rejects { out, count: 0 })
    }

    fn add(&mut self, line: u64, reason: &str, raw: &str) -> std::io::Result<()> {
        self.count += 1;
        writeln!(self.out, "{line},{},{}", quote(reason), quote(raw))
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Reads `input` (header first) into record batches of the schema, handing
/// each batch to `sink` as it fills. Columns are matched to the header by
/// name; a header column the schema does not know is an error (a new column
/// must not shift values into the wrong place), a schema column the file
/// lacks is null.
pub fn parse<R: BufRead, W: Write>(
    mut input: R,
    schema: &CsvSchema,
    rejects: &mut Rejects<W>,
    mut sink: impl FnMut(RecordBatch) -> Result<(), LakeError>,
) -> Result<ParseStats, LakeError> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(LakeError::Data("the file is empty (no header row)".into()));
    }
    // Spreadsheet exports start with a UTF-8 byte-order mark.
    let first = line.strip_prefix('\u{feff}').unwrap_or(&line);
    let header: Vec<String> =
        split(first.trim_end_matches(['\n', '\r'])).into_iter().map(|s| s.trim().to_string()).collect();
    let mut positions = Vec::with_capacity(schema.columns.len());
    for (name, _) in &schema.columns {
        positions.push(header.iter().position(|h| h == name));
    }
    if let Some(extra) = header.iter().find(|h| !schema.columns.iter().any(|(n, _)| n == *h)) {
        return Err(LakeError::Data(format!(
            "the file has a column '{extra}' that the schema does not know (columns: {}); extend the schema to load it",
            header.join(", ")
        )));
    }
    let arrow_schema = schema.arrow();
    let mut builders = Builders::new(schema);
    let mut stats = ParseStats::default();
    let mut line_no = 1u64;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        line_no += 1;
        let raw = line.trim_end_matches(['\n', '\r']);
        if raw.is_empty() {
            continue;
        }
        stats.read += 1;
        let fields = split(raw);
        if fields.len() != header.len() {
            let why = format!("expected {} fields, found {}", header.len(), fields.len());
            rejects.add(line_no, &why, raw)?;
            stats.rejected += 1;
            continue;
        }
        let mut values: Vec<Option<Value>> = Vec::with_capacity(schema.columns.len());
        let mut bad = None;
        for ((name, kind), pos) in schema.columns.iter().zip(&positions) {
            let text = pos.map(|p| fields[p].as_ref()).unwrap_or("");
            match parse_value(text, *kind) {
                Ok(v) => values.push(v),
                Err(why) => {
                    bad = Some(format!("column {name}: {why}"));
                    break;
                }
            }
        }
        if let Some(why) = bad {
            rejects.add(line_no, &why, raw)?;
            stats.rejected += 1;
            continue;
        }
        builders.append(&values);
        stats.loaded += 1;
        if builders.len == BATCH_ROWS {
            sink(builders.finish(&arrow_schema)?)?;
        }
    }
    if builders.len > 0 {
        sink(builders.finish(&arrow_schema)?)?;
    }
    debug_assert_eq!(stats.loaded + stats.rejected, stats.read);
    Ok(stats)
}

#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Int(i64),
    Float(f64),
    Micros(i64),
    Text(&'a str),
}

fn parse_value(text: &str, kind: Kind) -> Result<Option<Value<'_>>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match kind {
        Kind::Int => t
            .parse::<i64>()
            .or_else(|e| match t.parse::<f64>() {
                // "1.0" in an integer column is an integer.
                Ok(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(f as i64),
                _ => Err(e),
            })
            .map(|v| Some(Value::Int(v)))
            .map_err(|_| format!("'{t}' is not an integer")),
        Kind::Float => t.parse::<f64>().map(|v| Some(Value::Float(v))).map_err(|_| format!("'{t}' is not a number")),
        Kind::Timestamp => parse_timestamp(t)
            .map(|v| Some(Value::Micros(v)))
            .ok_or_else(|| format!("'{t}' is not a timestamp (YYYY-MM-DD HH:MM:SS)")),
        Kind::Text => Ok(Some(Value::Text(t))),
    }
}

/// Microseconds since the epoch of a `YYYY-MM-DD HH:MM:SS` wall time.
pub fn parse_timestamp(t: &str) -> Option<i64> {
    // The TLC files' one shape, read without a format interpreter: it is
    // most of the parsing time otherwise (two timestamps per row).
    if let Some(micros) = fast_timestamp(t.as_bytes()) {
        return Some(micros);
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .map(|d| d.and_utc().timestamp_micros())
}

fn fast_timestamp(b: &[u8]) -> Option<i64> {
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hour * 3_600 + minute * 60 + second) * 1_000_000)
}

/// Splits a CSV line; fields may be quoted (`"a,b"`, `""` for a quote).
fn split(line: &str) -> Vec<Cow<'_, str>> {
    if !line.contains('"') {
        return line.split(',').map(Cow::Borrowed).collect();
    }
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let (mut start, mut i, mut quoted) = (0, 0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(unquote(&line[start..i]));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(unquote(&line[start..]));
    out
}

fn unquote(f: &str) -> Cow<'_, str> {
    match f.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if inner.contains("\"\"") => Cow::Owned(inner.replace("\"\"", "\"")),
        Some(inner) => Cow::Borrowed(inner),
        None => Cow::Borrowed(f),
    }
}

struct Builders {
    columns: Vec<Col>,
    len: usize,
}

enum Col {
    Int(Int64Builder),
    Float(Float64Builder),
    Ts(TimestampMicrosecondBuilder),
    Text(StringBuilder),
}

impl Builders {
    fn new(schema: &CsvSchema) -> Builders {
        let columns = schema
            .columns
            .iter()
            .map(|(_, k)| match k {
                Kind::Int => Col::Int(Int64Builder::with_capacity(BATCH_ROWS)),
                Kind::Float => Col::Float(Float64Builder::with_capacity(BATCH_ROWS)),
                Kind::Timestamp => Col::Ts(TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS)),
                Kind::Text => Col::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 2)),
            })
            .collect();
        Builders { columns, len: 0 }
    }

    fn append(&mut self, values: &[Option<Value<'_>>]) {
        for (col, v) in self.columns.iter_mut().zip(values) {
            match (col, v) {
                (Col::Int(b), Some(Value::Int(x))) => b.append_value(*x),
                (Col::Float(b), Some(Value::Float(x))) => b.append_value(*x),
                (Col::Ts(b), Some(Value::Micros(x))) => b.append_value(*x),
                (Col::Text(b), Some(Value::Text(s))) => b.append_value(s),
                (Col::Int(b), _) => b.append_null(),
                (Col::Float(b), _) => b.append_null(),
                (Col::Ts(b), _) => b.append_null(),
                (Col::Text(b), _) => b.append_null(),
            }
        }
        self.len += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, LakeError> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Col::Int(b) => Arc::new(b.finish()),
                    Col::Float(b) => Arc::new(b.finish()),
                    Col::Ts(b) => Arc::new(b.finish()),
                    Col::Text(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.len = 0;
        Ok(RecordBatch::try_new(schema.clone(), arrays)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_micros(t: &str) -> Option<i64> {
        NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok().map(|d| d.and_utc().timestamp_micros())
    }

    /// A CSV as found in the wild: a byte-order mark, CRLF line ends, quoted
    /// fields (one with an escaped quote and a comma) and the columns in
    /// another order than the schema's.
    #[test]
    fn a_csv_from_a_spreadsheet_reads_like_any_other() {
        let schema = CsvSchema::new(&[("VendorID", Kind::Int), ("note", Kind::Text), ("fare", Kind::Float)]);
        let input = "\u{feff}fare,\"VendorID\",note\r\n12.5,1,\"said \"\"hi\"\", then left\"\r\n3,2,plain\r\n";
        let mut rejects = Rejects::new(Vec::new()).unwrap();
        let mut batches = Vec::new();
        let stats = parse(input.as_bytes(), &schema, &mut rejects, |b| {
            batches.push(b);
            Ok(())
        })
        .unwrap();
        assert_eq!((stats.read, stats.loaded, stats.rejected), (2, 2, 0));
        let b = &batches[0];
        let vendors = b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
        let notes = b.column(1).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        let fares = b.column(2).as_any().downcast_ref::<arrow::array::Float64Array>().unwrap();
        assert_eq!((vendors.value(0), vendors.value(1)), (1, 2));
        assert_eq!((notes.value(0), notes.value(1)), ("said \"hi\", then left", "plain"));
        assert_eq!((fares.value(0), fares.value(1)), (12.5, 3.0));
    }

    /// No input crashes the reader: mutated copies of a small file are read
    /// or refused, and what is read always adds up (loaded + rejected = read).
    #[test]
    fn no_mutated_csv_crashes_the_reader() {
        let schema = CsvSchema::new(&[
            ("VendorID", Kind::Int),
            ("tpep_pickup_datetime", Kind::Timestamp),
            ("fare", Kind::Float),
            ("flag", Kind::Text),
        ]);
        let example = "VendorID,tpep_pickup_datetime,fare,flag\r\n1,2021-01-01 00:15:00,12.5,N\n\
                       2,\"2021-01-01 00:20:00\",3,\"Y,\"\"x\"\"\"\n,,,\n";
        let pieces: [&[u8]; 10] =
            [b",", b"\"", b"\r\n", b"\n", "\u{feff}".as_bytes(), b"\"\"", b"-", b"99999999999999999999", b"\xff", b" "];
        let mut m = headwater_core::mutations::Mutator::new(0xc5f_2021);
        for case in 0..5_000 {
            let input = m.mutate(example.as_bytes(), &pieces);
            let mut rejects = Rejects::new(Vec::new()).unwrap();
            if let Ok(stats) = parse(&input[..], &schema, &mut rejects, |_| Ok(())) {
                assert_eq!(stats.loaded + stats.rejected, stats.read, "case {case}");
                assert_eq!(rejects.count(), stats.rejected, "case {case}");
            }
        }
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        let mut day = chrono::NaiveDate::from_ymd_opt(1899, 12, 25).unwrap();
        let end = chrono::NaiveDate::from_ymd_opt(2101, 3, 2).unwrap();
        let mut i = 0u32;
        while day < end {
            let t = format!("{} {:02}:{:02}:{:02}", day, i % 24, (i * 7) % 60, (i * 13) % 60);
            assert_eq!(fast_timestamp(t.as_bytes()), chrono_micros(&t), "{t}");
            day = day.succ_opt().unwrap();
            i += 1;
        }
        for bad in [
            "2021-02-29 00:00:00",
            "2021-13-01 00:00:00",
            "2021-00-10 00:00:00",
            "2021-04-31 00:00:00",
            "2021-01-01 24:00:00",
            "2021-01-01 23:60:00",
            "2021-01-0a 00:00:00",
            "2021/01/01 00:00:00",
        ] {
            assert_eq!(fast_timestamp(bad.as_bytes()), None, "{bad}");
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert_eq!(parse_timestamp("2020-02-29 12:00:00"), chrono_micros("2020-02-29 12:00:00"));
        // A leap second is left to chrono, which reads it as the next second.
        assert_eq!(fast_timestamp(b"2021-01-01 23:59:60"), None);
        assert_eq!(parse_timestamp("2021-01-01 23:59:60"), chrono_micros("2021-01-01 23:59:60"));
        assert_eq!(
            parse_timestamp("2021-01-01 00:00:01.5"),
            Some(1_609_459_201_500_000),
            "the slow path still reads fractions"
        );
    }
}
