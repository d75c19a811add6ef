//! TLC-shaped trip files for tests and the offline demo: the real column
//! names and types, realistic distributions, the real files' blemishes
//! (rows with several empty fields, zero passenger counts, refunds, a few
//! timestamps outside the month) and a known number of malformed lines.

use std::io::Write;
use std::path::Path;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use flate2::write::GzEncoder;
use flate2::Compression;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::LakeError;

/// What a generated file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Generated {
    /// Well-formed data rows.
    pub rows: u64,
    /// Lines a reader must reject.
    pub malformed: u64,
}

/// The real row count of a month, where known (`../shared/TAXI_DATA.md`),
/// else a plausible one.
pub fn real_rows(color: &str, year: i32, month: u32) -> u64 {
    match (color, year, month) {
        ("yellow", 2021, 1) => 1_369_765,
        ("yellow", 2021, 2) => 1_371_708,
        ("yellow", 2021, 3) => 1_925_152,
        ("yellow", 2019, 2) => 7_019_375,
        ("yellow", 2019, 3) => 7_832_545,
        ("green", 2020, 1) => 447_770,
        ("green", 2020, 11) => 88_605,
        ("green", 2019, 4) => 514_392,
        ("green", _, _) => 300_000 + u64::from(month) * 7_919,
        // From 2019-02 the big app companies have files of their own
        // (fhvhv), so the FHV months are small after January.
        ("fhv", 2019, 1) => 23_143_222,
        ("fhv", _, _) => 1_700_000 + u64::from(month) * 11_113,
        _ => 1_300_000 + u64::from(month) * 23_456,
    }
}

/// The file name of a month, as the public release names it.
pub fn file_name(color: &str, year: i32, month: u32) -> String {
    format!("{color}_tripdata_{year}-{month:02}.csv.gz")
}

/// Where a month is under `base`, in the public release's layout:
/// `{base}/{color}/{color}_tripdata_{YYYY}-{MM}.csv.gz`.
pub fn month_url(base: &str, color: &str, year: i32, month: u32) -> String {
    format!("{}/{color}/{}", base.trim_end_matches('/'), file_name(color, year, month))
}

/// Writes `rows` well-formed rows and `malformed` broken lines of `color`
/// (yellow, green or fhv) for the month to `path` (gzip), deterministically
/// from the month.
pub fn generate(
    color: &str,
    year: i32,
    month: u32,
    rows: u64,
    malformed: u64,
    path: &Path,
) -> Result<Generated, LakeError> {
    let kind = match color {
        "yellow" => Kind::Yellow,
        "green" => Kind::Green,
        "fhv" => Kind::Fhv,
        other => return Err(LakeError::Data(format!("cannot generate '{other}' trips (yellow, green or fhv)"))),
    };
    let start = NaiveDate::from_ymd_opt(year, month, 1)
        .ok_or_else(|| LakeError::Data(format!("no month {year}-{month:02}")))?
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    let next =
        if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) }
            .expect("the next month exists")
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists");
    let month_secs = (next - start).num_seconds();
    let seed = ((kind as u64) << 40) ^ ((year as u64) << 8) ^ u64::from(month);
    let mut rng = StdRng::seed_from_u64(seed);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("gz.tmp");
    let file = std::fs::File::create(&tmp)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, GzEncoder::new(file, Compression::fast()));
    out.write_all(kind.header().as_bytes())?;
    out.write_all(b"\n")?;
    // Malformed lines at spread-out positions.
    let total = rows + malformed;
    let mut bad_at: Vec<u64> = (0..malformed).map(|i| (i * 7919 + 13) % total.max(1)).collect();
    bad_at.sort_unstable();
    bad_at.dedup();
    let mut bad = bad_at.into_iter().peekable();
    let (mut written_rows, mut written_bad) = (0u64, 0u64);
    let mut line = String::with_capacity(256);
    for i in 0..total {
        line.clear();
        let trip = Trip::random(&mut rng, start, month_secs, kind);
        if bad.peek() == Some(&i) || (written_rows == rows && written_bad < malformed) {
            bad.next();
            trip.write(&mut line, kind);
            break_line(&mut line, written_bad);
            written_bad += 1;
        } else if written_rows < rows {
            trip.write(&mut line, kind);
            written_rows += 1;
        } else {
            continue;
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    let gz = out.into_inner().map_err(|e| LakeError::Io(e.into_error()))?;
    gz.finish()?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(Generated { rows: written_rows, malformed: written_bad })
}

/// The three layouts; the number seeds the generator (yellow's 0 and
/// green's 1 keep the files they always made).
#[derive(Clone, Copy)]
enum Kind {
    Yellow = 0,
    Green = 1,
    Fhv = 2,
}

impl Kind {
    fn header(self) -> &'static str {
        match self {
            Kind::Yellow => YELLOW_HEADER,
            Kind::Green => GREEN_HEADER,
            Kind::Fhv => FHV_HEADER,
        }
    }
}

const YELLOW_HEADER: &str = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge";
const GREEN_HEADER: &str = "VendorID,lpep_pickup_datetime,lpep_dropoff_datetime,store_and_fwd_flag,RatecodeID,PULocationID,DOLocationID,passenger_count,trip_distance,fare_amount,extra,mta_tax,tip_amount,tolls_amount,ehail_fee,improvement_surcharge,total_amount,payment_type,trip_type,congestion_surcharge";
const FHV_HEADER: &str =
    "dispatching_base_num,pickup_datetime,dropOff_datetime,PUlocationID,DOlocationID,SR_Flag,Affiliated_base_number";

/// Breaks a line in one of the ways real files break.
fn break_line(line: &mut String, n: u64) {
    match n % 3 {
        // Cut short.
        0 => {
            let cut = line.match_indices(',').nth(3).map_or(line.len(), |(i, _)| i);
            line.truncate(cut);
        }
        // A number that is not one.
        1 => {
            let fields: Vec<&str> = line.split(',').collect();
            let mut owned: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
            let at = owned.len() - 3;
            owned[at] = "1.2.3".into();
            *line = owned.join(",");
        }
        // A date that is not one.
        _ => {
            let mut owned: Vec<String> = line.split(',').map(String::from).collect();
            owned[1] = "2021-13-45 25:61:00".into();
            *line = owned.join(",");
        }
    }
}

struct Trip {
    sparse: bool,
    vendor: u8,
    pickup: NaiveDateTime,
    dropoff: NaiveDateTime,
    passengers: u8,
    distance: f64,
    ratecode: u8,
    flag: &'static str,
    pu: u16,
    dolo: u16,
    payment: u8,
    fare: f64,
    extra: f64,
    tip: f64,
    tolls: f64,
    congestion: Option<f64>,
    trip_type: u8,
    /// FHV: the base that dispatched it, and the one it is affiliated with.
    base: u16,
    affiliated: Option<u16>,
    /// FHV: shared ride (often empty), location ids known.
    shared: bool,
    pu_known: bool,
    do_known: bool,
}

impl Trip {
    fn random(rng: &mut StdRng, start: NaiveDateTime, month_secs: i64, kind: Kind) -> Trip {
        let mut offset = rng.random_range(0..month_secs);
        // A few trips fall outside the file's month, as in the real files.
        if rng.random_bool(0.0005) {
            offset = if rng.random_bool(0.5) {
                -rng.random_range(1..86_400)
            } else {
                month_secs + rng.random_range(1..86_400)
            };
        }
        let pickup = start + Duration::seconds(offset);
        let minutes = (-(1.0 - rng.random::<f64>()).ln() * 12.0 + 2.0).min(180.0);
        let mut dropoff = pickup + Duration::seconds((minutes * 60.0) as i64);
        if rng.random_bool(0.001) {
            dropoff = pickup - Duration::seconds(rng.random_range(1..600));
        }
        let distance = if rng.random_bool(0.01) { 0.0 } else { (-(1.0 - rng.random::<f64>()).ln() * 2.9).min(60.0) };
        let passengers = match rng.random_range(0..1000) {
            0..=19 => 0,
            20..=719 => 1,
            720..=859 => 2,
            860..=899 => 3,
            900..=919 => 4,
            920..=969 => 5,
            970..=998 => 6,
            _ => rng.random_range(7..=9),
        };
        let mut fare = 2.5 + distance * 2.5 + rng.random_range(0.0..4.0);
        if rng.random_bool(0.002) {
            fare = -fare;
        }
        let payment = match rng.random_range(0..100) {
            0..=69 => 1,
            70..=97 => 2,
            98 => 3,
            _ => 4,
        };
        let mut trip = Trip {
            sparse: rng.random_bool(0.072),
            vendor: if rng.random_bool(0.35) { 1 } else { 2 },
            pickup,
            dropoff,
            passengers,
            distance,
            ratecode: match rng.random_range(0..100) {
                0..=95 => 1,
                96..=97 => 2,
                98 => 5,
                _ => 99,
            },
            flag: if rng.random_bool(0.01) { "Y" } else { "N" },
            pu: rng.random_range(1..=265),
            dolo: rng.random_range(1..=265),
            payment,
            fare,
            extra: [0.0, 0.5, 1.0, 2.5][rng.random_range(0..4)],
            tip: if payment == 1 { (fare.abs() * rng.random_range(0.0..0.3) * 100.0).round() / 100.0 } else { 0.0 },
            tolls: if rng.random_bool(0.05) { 6.12 } else { 0.0 },
            congestion: if rng.random_bool(0.1) { None } else { Some(2.5) },
            trip_type: if rng.random_bool(0.97) { 1 } else { 2 },
            base: 0,
            affiliated: None,
            shared: false,
            pu_known: true,
            do_known: true,
        };
        // Drawn only for FHV, so yellow and green files stay what they were.
        if let Kind::Fhv = kind {
            trip.base = rng.random_range(1..=3_000);
            trip.affiliated = rng.random_bool(0.9).then(|| rng.random_range(1..=3_000));
            trip.shared = rng.random_bool(0.05);
            trip.pu_known = rng.random_bool(0.8);
            trip.do_known = rng.random_bool(0.85);
        }
        trip
    }

    fn write(&self, out: &mut String, kind: Kind) {
        use std::fmt::Write;
        let ts = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
        let opt = |present: bool, v: String| if present { v } else { String::new() };
        let keep = !self.sparse;
        let total = self.fare + self.extra + 0.5 + self.tip + self.tolls + 0.3 + self.congestion.unwrap_or(0.0);
        let congestion = opt(keep && self.congestion.is_some(), format!("{:.1}", self.congestion.unwrap_or(0.0)));
        if let Kind::Fhv = kind {
            let _ = write!(
                out,
                "B{:05},{},{},{},{},{},{}",
                self.base,
                ts(self.pickup),
                ts(self.dropoff),
                opt(self.pu_known, self.pu.to_string()),
                opt(self.do_known, self.dolo.to_string()),
                opt(self.shared, "1".to_string()),
                self.affiliated.map(|b| format!("B{b:05}")).unwrap_or_default(),
            );
        } else if let Kind::Green = kind {
            let _ = write!(
                out,
                "{},{},{},{},{},{},{},{},{:.2},{:.2},{},0.5,{:.2},{:.2},,0.3,{:.2},{},{},{}",
                opt(keep, self.vendor.to_string()),
                ts(self.pickup),
                ts(self.dropoff),
                opt(keep, self.flag.to_string()),
                opt(keep, self.ratecode.to_string()),
                self.pu,
                self.dolo,
                opt(keep, self.passengers.to_string()),
                self.distance,
                self.fare,
                self.extra,
                self.tip,
                self.tolls,
                total,
                opt(keep, self.payment.to_string()),
                opt(keep, self.trip_type.to_string()),
                congestion,
            );
        } else {
            let _ = write!(
                out,
                "{},{},{},{},{:.2},{},{},{},{},{},{:.2},{},0.5,{:.2},{:.2},0.3,{:.2},{}",
                opt(keep, self.vendor.to_string()),
                ts(self.pickup),
                ts(self.dropoff),
                opt(keep, self.passengers.to_string()),
                self.distance,
                opt(keep, self.ratecode.to_string()),
                opt(keep, self.flag.to_string()),
                self.pu,
                self.dolo,
                opt(keep, self.payment.to_string()),
                self.fare,
                self.extra,
                self.tip,
                self.tolls,
                total,
                congestion,
            );
        }
    }
}
