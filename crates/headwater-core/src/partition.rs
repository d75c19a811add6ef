//! Partitions: the slices a deployment's work is cut into (a month, a
//! colour, a colour's month), and the plan of a backfill over them.
//!
//! A deployment declares them in `headwater.yaml`:
//!
//! ```yaml
//! partitions:
//!   time: {every: month, start: 2019-01, end: 2020-12, timezone: UTC}
//!   static: {color: [yellow, green]}
//!   parameters: {color: color, year: year, month: month}
//! ```
//!
//! A partition's key is its static values by dimension name, then its time
//! partition: `color=yellow/month=2019-01`. A `freshness: {within: 2d 9h}`
//! says how soon after its window ends each time partition must be loaded
//! (a month in UTC by the 3rd at 09:00); a partition past that deadline
//! without a completed run is stale. Everything here is pure: the
//! current time is passed in, so every rule is testable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::automation::Seconds;
use crate::schedule::{resolve_local, zone};
use crate::state::StateType;

/// How long one time partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

impl Granularity {
    fn name(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
        }
    }

    fn format(self) -> &'static str {
        match self {
            Granularity::Hour => "YYYY-MM-DDTHH",
            Granularity::Day => "YYYY-MM-DD",
            Granularity::Month => "YYYY-MM",
        }
    }

    /// `2019-01`, `2019-01-05`, `2019-01-05T03`.
    fn label(self, t: NaiveDateTime) -> String {
        match self {
            Granularity::Hour => t.format("%Y-%m-%dT%H").to_string(),
            Granularity::Day => t.format("%Y-%m-%d").to_string(),
            Granularity::Month => t.format("%Y-%m").to_string(),
        }
    }

    /// The start of the partition a label names. Exactly the label's form
    /// (ASCII digits, no spaces): what [`Granularity::label_pattern`] says.
    fn parse(self, label: &str) -> Option<NaiveDateTime> {
        let number = |s: &str, len: usize| -> Option<u32> {
            (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
        };
        let month = |s: &str| -> Option<(i32, u32)> {
            let (y, m) = s.split_once('-')?;
            Some((number(y, 4)? as i32, number(m, 2)?))
        };
        let date = |s: &str| -> Option<NaiveDate> {
            let (ym, d) = s.rsplit_once('-')?;
            let (y, m) = month(ym)?;
            NaiveDate::from_ymd_opt(y, m, number(d, 2)?)
        };
        match self {
            Granularity::Month => {
                let (y, m) = month(label)?;
                NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)
            }
            Granularity::Day => date(label)?.and_hms_opt(0, 0, 0),
            Granularity::Hour => {
                let (d, h) = label.split_once('T')?;
                date(d)?.and_hms_opt(number(h, 2)?, 0, 0)
            }
        }
    }

    /// A regular expression (JSON Schema's dialect) matching exactly the
    /// labels [`Granularity::parse`] reads: real dates of the Gregorian
    /// calendar, leap days included, years 0000 to 9999.
    pub fn label_pattern(self) -> String {
        const MONTH: &str = "[0-9]{4}-(?:0[1-9]|1[0-2])";
        const DATE: &str = "(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)\
                            |02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)";
        match self {
            Granularity::Month => format!("^{MONTH}$"),
            Granularity::Day => format!("^{DATE}$"),
            Granularity::Hour => format!("^{DATE}T(?:[01][0-9]|2[0-3])$"),
        }
    }

    fn next(self, t: NaiveDateTime) -> NaiveDateTime {
        match self {
            Granularity::Hour => t + Duration::hours(1),
            Granularity::Day => t + Duration::days(1),
            Granularity::Month => {
                let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
                NaiveDate::from_ymd_opt(y, m, 1).expect("the first of a month").and_hms_opt(0, 0, 0).expect("midnight")
            }
        }
    }

    /// The start of the partition holding `t`.
    fn floor(self, t: NaiveDateTime) -> NaiveDateTime {
        let d = t.date();
        match self {
            Granularity::Hour => d.and_hms_opt(t.hour(), 0, 0).expect("whole hour"),
            Granularity::Day => d.and_hms_opt(0, 0, 0).expect("midnight"),
            Granularity::Month => d.with_day(1).expect("the first").and_hms_opt(0, 0, 0).expect("midnight"),
        }
    }
}

/// Time partitions: every hour, day or month from `start` (a partition's
/// label, `2019-01`) to `end` (the last one, included) if given, in a time
/// zone (a month in America/New_York starts at midnight there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimePartitions {
    pub every: Granularity,
    pub start: String,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".into()
}

/// What of a partition's key a flow parameter takes: its `year`, `month`,
/// `day` or `hour` (numbers), its `date` (the time label), its window's
/// `start` or `end` (RFC 3339), the whole key as `partition`, or a static
/// dimension's value by the dimension's name.
pub const TIME_SOURCES: [&str; 7] = ["year", "month", "day", "hour", "date", "start", "end"];

/// A deployment's partitions: time, static dimensions, or their product,
/// and which flow parameter each part of a key fills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    #[serde(default)]
    pub time: Option<TimePartitions>,
    /// Dimension name → its values, e.g. `color: [yellow, green]`.
    #[serde(default, rename = "static")]
    pub dimensions: BTreeMap<String, Vec<String>>,
    /// Flow parameter → what of the key it takes (see [`TIME_SOURCES`]).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// How soon after its window ends a time partition must be loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
}

/// A freshness policy: each time partition has a completed run `within`
/// this long after its window ends, or it is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// `2d 9h`, `36h`, or seconds.
    #[schema(value_type = u64)]
    pub within: Seconds,
}

/// Bad partitions or a bad selection of them; `field` says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PartitionError {
    pub field: String,
    pub reason: String,
}

fn error(field: impl Into<String>, reason: impl Into<String>) -> PartitionError {
    PartitionError { field: field.into(), reason: reason.into() }
}

/// One partition: its static values (by dimension name) and the start of
/// its time partition (local wall-clock time), as its spec declares them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub statics: Vec<(String, String)>,
    pub time: Option<(Granularity, NaiveDateTime)>,
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.statics.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some((g, t)) = self.time {
            parts.push(format!("{}={}", g.name(), g.label(t)));
        }
        f.write_str(&parts.join("/"))
    }
}

impl PartitionKey {
    /// The time partition's label (`2019-01`), if the key has one.
    pub fn time_label(&self) -> Option<String> {
        self.time.map(|(g, t)| g.label(t))
    }

    /// The static values joined (`yellow`, `yellow/east`): a grid's column.
    pub fn static_label(&self) -> String {
        self.statics.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join("/")
    }
}

/// Which partitions a backfill takes: a time range (labels, both ends
/// included) and, per static dimension, some of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Selection {
    pub from: Option<String>,
    pub to: Option<String>,
    /// Dimension → the values wanted; a dimension not named takes them all.
    pub statics: BTreeMap<String, Vec<String>>,
}

impl Selection {
    /// Parses `--partition color=yellow,green` arguments.
    pub fn with_statics(mut self, args: &[String]) -> Result<Selection, PartitionError> {
        for a in args {
            let (k, v) = a.split_once('=').ok_or_else(|| {
                error("partition", format!("'{a}' is not NAME=VALUE[,VALUE…] (e.g. color=yellow,green)"))
            })?;
            let values = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
            self.statics.entry(k.trim().to_string()).or_default().extend(values);
        }
        Ok(self)
    }
}

impl PartitionSpec {
    /// Checks the spec's own rules: a valid time zone and labels, start not
    /// after end, dimensions with distinct values, and parameters that take
    /// a part the key has.
    pub fn validate(&self) -> Result<(), PartitionError> {
        if let Some(t) = &self.time {
            zone(&t.timezone).map_err(|_| {
                error("partitions.time.timezone", format!("unknown time zone '{}'; use an IANA name", t.timezone))
            })?;
            let start = parse_label(t.every, &t.start, "partitions.time.start")?;
            if let Some(end) = &t.end {
                if parse_label(t.every, end, "partitions.time.end")? < start {
                    return Err(error("partitions.time.end", format!("{end} is before the start {}", t.start)));
                }
            }
        }
        if self.time.is_none() && self.dimensions.is_empty() {
            return Err(error("partitions", "declare `time`, `static`, or both"));
        }
        if self.freshness.is_some() && self.time.is_none() {
            return Err(error("partitions.freshness", "a freshness policy needs time partitions (`time:`)"));
        }
        for (name, values) in &self.dimensions {
            let field = format!("partitions.static.{name}");
            if !is_key_text(name) {
                return Err(error(&field, "a dimension's name is letters, digits, '_' and '-'"));
            }
            if TIME_SOURCES.contains(&name.as_str()) || name == "partition" {
                return Err(error(&field, format!("'{name}' names a part of the time partition; call it otherwise")));
            }
            if values.is_empty() {
                return Err(error(&field, "a dimension needs at least one value"));
            }
            if let Some(bad) = values.iter().find(|v| !is_key_text(v)) {
                return Err(error(&field, format!("'{bad}': values are letters, digits, '_', '-' and '.'")));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = values.iter().find(|v| !seen.insert(v.as_str())) {
                return Err(error(&field, format!("'{twice}' is listed twice")));
            }
        }
        if self.parameters.is_empty() {
            return Err(error("partitions.parameters", "map at least one flow parameter to a part of the key"));
        }
        for (param, source) in &self.parameters {
            let field = format!("partitions.parameters.{param}");
            let known = self.dimensions.contains_key(source) || source == "partition";
            let time_part = TIME_SOURCES.contains(&source.as_str());
            if time_part {
                let Some(t) = &self.time else {
                    return Err(error(&field, format!("'{source}' is a part of a time partition; none is declared")));
                };
                let finer = match source.as_str() {
                    "day" => t.every == Granularity::Month,
                    "hour" => t.every != Granularity::Hour,
                    _ => false,
                };
                if finer {
                    return Err(error(&field, format!("'{source}' is finer than {} partitions", t.every.name())));
                }
            } else if !known {
                let mut parts: Vec<&str> = self.dimensions.keys().map(String::as_str).collect();
                if self.time.is_some() {
                    parts.extend(TIME_SOURCES);
                }
                parts.push("partition");
                return Err(error(
                    &field,
                    format!("'{source}' is not a part of the key (one of: {})", parts.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// Every partition of the selection, time first then static values in
    /// the order declared. A time range without an end stops at the newest
    /// complete partition at `now`.
    pub fn keys(&self, selection: &Selection, now: DateTime<Utc>) -> Result<Vec<PartitionKey>, PartitionError> {
        let times: Vec<Option<(Granularity, NaiveDateTime)>> = match &self.time {
            None => {
                if let Some(f) = selection.from.as_ref().or(selection.to.as_ref()) {
                    return Err(error("from", format!("'{f}': this deployment has no time partitions")));
                }
                vec![None]
            }
            Some(t) => self.time_range(t, selection, now)?.into_iter().map(|s| Some((t.every, s))).collect(),
        };
        let mut columns: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (name, values) in &self.dimensions {
            let chosen = match selection.statics.get(name) {
                None => values.clone(),
                Some(wanted) => {
                    if let Some(bad) = wanted.iter().find(|w| !values.contains(w)) {
                        return Err(error(
                            format!("partition.{name}"),
                            format!("'{bad}' is not one of {}", values.join(", ")),
                        ));
                    }
                    values.iter().filter(|v| wanted.contains(v)).cloned().collect()
                }
            };
            columns = columns
                .into_iter()
                .flat_map(|c| {
                    chosen.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((name.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        if let Some(unknown) = selection.statics.keys().find(|k| !self.dimensions.contains_key(*k)) {
            let known: Vec<&str> = self.dimensions.keys().map(String::as_str).collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            return Err(error(
                "partition",
                format!("'{unknown}' is not a static partition dimension (dimensions: {known})"),
            ));
        }
        Ok(times
            .into_iter()
            .flat_map(|time| columns.iter().map(move |statics| PartitionKey { statics: statics.clone(), time }))
            .collect())
    }

    /// The keys of the newest `periods` complete time partitions at `now`
    /// (fewer when the range holds fewer), with every static value: a
    /// window onto a range too long to list whole (hourly for years).
    pub fn recent_keys(&self, periods: usize, now: DateTime<Utc>) -> Result<Vec<PartitionKey>, PartitionError> {
        let Some(t) = &self.time else { return self.keys(&Selection::default(), now) };
        let first = parse_label(t.every, &t.start, "partitions.time.start")?;
        let last = match &t.end {
            Some(end) => Some(parse_label(t.every, end, "partitions.time.end")?),
            None => self.latest_complete_time(t, now),
        };
        let Some(last) = last else { return Ok(Vec::new()) };
        let mut from = last;
        for _ in 1..periods.clamp(1, MAX_PARTITIONS) {
            if from <= first {
                break;
            }
            // The start of the period before: the floor of its last second.
            from = t.every.floor(from - chrono::Duration::seconds(1)).max(first);
        }
        let window = Selection { from: Some(t.every.label(from)), to: Some(t.every.label(last)), ..Default::default() };
        self.keys(&window, now)
    }

    fn time_range(
        &self,
        t: &TimePartitions,
        selection: &Selection,
        now: DateTime<Utc>,
    ) -> Result<Vec<NaiveDateTime>, PartitionError> {
        let first = parse_label(t.every, &t.start, "partitions.time.start")?;
        let last = match &t.end {
            Some(end) => Some(parse_label(t.every, end, "partitions.time.end")?),
            None => self.latest_complete_time(t, now),
        };
        let from = match &selection.from {
            Some(f) => {
                let from = parse_label(t.every, f, "from")?;
                if from < first {
                    return Err(error("from", format!("{f} is before the partitions' start, {}", t.start)));
                }
                from
            }
            None => first,
        };
        let to = match &selection.to {
            Some(s) => {
                let to = parse_label(t.every, s, "to")?;
                match last {
                    Some(l) if to > l => {
                        let why = match &t.end {
                            Some(end) => format!("{s} is after the partitions' end, {end}"),
                            None => format!("{s} is not complete yet (the newest complete is {})", t.every.label(l)),
                        };
                        return Err(error("to", why));
                    }
                    None => return Err(error("to", format!("{s}: no partition is complete yet"))),
                    _ => to,
                }
            }
            None => last.ok_or_else(|| error("to", format!("no partition since {} is complete yet", t.start)))?,
        };
        if to < from {
            return Err(error(
                "to",
                format!("the range {}..{} holds no partitions", t.every.label(from), t.every.label(to)),
            ));
        }
        let mut out = Vec::new();
        let mut at = from;
        while at <= to {
            out.push(at);
            if out.len() > MAX_PARTITIONS {
                return Err(error(
                    "range",
                    format!("more than {MAX_PARTITIONS} time partitions; narrow it with from and to"),
                ));
            }
            at = t.every.next(at);
        }
        Ok(out)
    }

    /// The start of the newest time partition that has ended by `now` in
    /// the spec's zone, within its declared range.
    fn latest_complete_time(&self, t: &TimePartitions, now: DateTime<Utc>) -> Option<NaiveDateTime> {
        let tz = zone(&t.timezone).ok()?;
        let local = now.with_timezone(&tz).naive_local();
        let current = t.every.floor(local);
        // `current` has started but not ended; the one before it is complete.
        let mut prev = parse_label(t.every, &t.start, "start").ok()?;
        if prev >= current {
            return None;
        }
        // Step back one partition from `current`.
        let back = match t.every {
            Granularity::Hour => current - Duration::hours(1),
            Granularity::Day => current - Duration::days(1),
            Granularity::Month => {
                let (y, m) =
                    if current.month() == 1 { (current.year() - 1, 12) } else { (current.year(), current.month() - 1) };
                NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?
            }
        };
        prev = prev.max(back);
        match &t.end {
            Some(end) => parse_label(t.every, end, "end").ok().map(|e| prev.min(e)),
            None => Some(prev),
        }
    }

    /// The newest complete partition's time label at `now` (what a schedule
    /// that runs "last month" runs), if the spec has time partitions.
    pub fn latest_complete(&self, now: DateTime<Utc>) -> Option<String> {
        let t = self.time.as_ref()?;
        self.latest_complete_time(t, now).map(|s| t.every.label(s))
    }

    /// The window `[start, end)` of a key's time partition, in UTC.
    pub fn window(&self, key: &PartitionKey) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let t = self.time.as_ref()?;
        let (g, start) = key.time?;
        let tz = zone(&t.timezone).ok()?;
        let utc = |n: NaiveDateTime| resolve_local(tz, n).with_timezone(&Utc);
        Some((utc(start), utc(g.next(start))))
    }

    /// When a key's partition must be loaded by, under the freshness policy.
    pub fn deadline(&self, key: &PartitionKey) -> Option<DateTime<Utc>> {
        let within = self.freshness?.within;
        Some(self.window(key)?.1 + within.duration())
    }

    /// Whether a partition is stale at `now`: past its deadline, and its
    /// latest run (if any) did not complete.
    pub fn is_stale(&self, key: &PartitionKey, latest: Option<StateType>, now: DateTime<Utc>) -> bool {
        latest != Some(StateType::Completed) && self.deadline(key).is_some_and(|d| d <= now)
    }

    /// The partitions whose deadline falls in `(after, until]`, with it:
    /// what a check that last looked at `after` has not seen pass yet.
    pub fn deadlines_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(PartitionKey, DateTime<Utc>)>, PartitionError> {
        let (Some(t), Some(f)) = (&self.time, self.freshness) else { return Ok(Vec::new()) };
        if until <= after {
            return Ok(Vec::new());
        }
        // Windows that end in (after - within, until - within]: from the
        // partition holding the first end, to the newest complete one.
        let Some(to) = self.latest_complete(until - f.within.duration()) else { return Ok(Vec::new()) };
        let tz = zone(&t.timezone).map_err(|_| error("partitions.time.timezone", "unknown time zone"))?;
        let first_end = (after - f.within.duration()).with_timezone(&tz).naive_local();
        let start = parse_label(t.every, &t.start, "partitions.time.start")?;
        let from = t.every.floor(first_end).max(start);
        let selection = Selection { from: Some(t.every.label(from)), to: Some(to), statics: BTreeMap::new() };
        if parse_label(t.every, selection.to.as_deref().unwrap_or_default(), "to")? < from {
            return Ok(Vec::new());
        }
        Ok(self
            .keys(&selection, until)?
            .into_iter()
            .filter_map(|k| self.deadline(&k).map(|d| (k, d)))
            .filter(|(_, d)| *d > after && *d <= until)
            .collect())
    }

    /// Reads a key as [`PartitionKey`]'s `Display` writes it, checked
    /// against this spec.
    pub fn parse_key(&self, text: &str) -> Result<PartitionKey, PartitionError> {
        let mut statics = Vec::new();
        let mut time = None;
        for part in text.split('/').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| error("partition", format!("'{part}' in '{text}' is not NAME=VALUE")))?;
            match &self.time {
                Some(t) if k == t.every.name() => time = Some((t.every, parse_label(t.every, v, "partition")?)),
                _ => match self.dimensions.get(k) {
                    Some(values) if values.iter().any(|x| x == v) => statics.push((k.to_string(), v.to_string())),
                    Some(values) => {
                        return Err(error(
                            format!("partition.{k}"),
                            format!("'{v}' is not one of {}", values.join(", ")),
                        ))
                    }
                    None => return Err(error("partition", format!("'{k}' is not a part of this deployment's keys"))),
                },
            }
        }
        statics.sort();
        if statics.len() != self.dimensions.len() || (self.time.is_some() && time.is_none()) {
            return Err(error("partition", format!("'{text}' does not name every part of the key")));
        }
        Ok(PartitionKey { statics, time })
    }

    /// The flow parameters a key fills, as the spec maps them.
    pub fn parameters_for(&self, key: &PartitionKey) -> serde_json::Map<String, Value> {
        let window = self.window(key);
        let mut out = serde_json::Map::new();
        for (param, source) in &self.parameters {
            let t = key.time.map(|(_, t)| t);
            let v = match source.as_str() {
                "year" => t.map(|t| json!(t.year())),
                "month" => t.map(|t| json!(t.month())),
                "day" => t.map(|t| json!(t.day())),
                "hour" => t.map(|t| json!(t.hour())),
                "date" => key.time_label().map(Value::String),
                "start" => window.map(|w| json!(w.0.to_rfc3339())),
                "end" => window.map(|w| json!(w.1.to_rfc3339())),
                "partition" => Some(Value::String(key.to_string())),
                dim => key.statics.iter().find(|(k, _)| k == dim).map(|(_, v)| Value::String(v.clone())),
            };
            if let Some(v) = v {
                out.insert(param.clone(), v);
            }
        }
        out
    }

    /// The first time partition with every static value: what a deploy
    /// checks the mapping with (the time parts' types are the same for
    /// every time partition; each static value may differ).
    pub fn first_keys(&self) -> Result<Vec<PartitionKey>, PartitionError> {
        match &self.time {
            Some(t) => {
                let first = TimePartitions { end: Some(t.start.clone()), ..t.clone() };
                PartitionSpec { time: Some(first), ..self.clone() }
                    .keys(&Selection::default(), DateTime::<Utc>::MAX_UTC)
            }
            None => self.keys(&Selection::default(), DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Checks the mapping against the flow's parameter schema: every mapped
    /// parameter exists, and every static value and the first time
    /// partition make parameters the schema takes (merged over `defaults`,
    /// the deployment's own parameters).
    pub fn check_against_schema(&self, schema: &Value, defaults: &Value) -> Result<(), PartitionError> {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return Ok(());
        };
        for param in self.parameters.keys() {
            if !props.contains_key(param) {
                let names: Vec<&str> = props.keys().map(String::as_str).collect();
                return Err(error(
                    format!("partitions.parameters.{param}"),
                    format!("the flow has no parameter '{param}' (its parameters: {})", names.join(", ")),
                ));
            }
        }
        let firsts = self.first_keys()?;
        for key in firsts {
            let mut merged = defaults.as_object().cloned().unwrap_or_default();
            merged.extend(self.parameters_for(&key));
            crate::block::check_against_schema(schema, &Value::Object(merged)).map_err(|e| {
                error(format!("partitions (key {key})"), format!("the flow refuses the parameters it maps to: {e}"))
            })?;
        }
        Ok(())
    }
}

/// The most time partitions one range may hold (a hundred years of days).
pub const MAX_PARTITIONS: usize = 36_600;

fn parse_label(g: Granularity, label: &str, field: &str) -> Result<NaiveDateTime, PartitionError> {
    g.parse(label).ok_or_else(|| error(field, format!("'{label}' is not a {} ({})", g.name(), g.format())))
}

fn is_key_text(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

// ---- datasets -----------------------------------------------------------------

/// A freshness policy on a lake dataset: each of its time partitions, named
/// the lake's way (`year=2019/month=01`, `…/day=05`, `…/hour=07`), must be
/// written `within` this long after its window ends, or it is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetPolicy {
    pub time: TimePartitions,
    pub freshness: Freshness,
}

impl DatasetPolicy {
    /// The policy as partitions of its own, for the same math as a
    /// deployment's.
    pub fn spec(&self) -> PartitionSpec {
        PartitionSpec {
            time: Some(self.time.clone()),
            dimensions: BTreeMap::new(),
            parameters: BTreeMap::from([("partition".to_string(), "partition".to_string())]),
            freshness: Some(self.freshness),
        }
    }

    /// Its time zone and labels checked; the field is named from the policy
    /// (`time.start`).
    pub fn validate(&self) -> Result<(), PartitionError> {
        self.spec()
            .validate()
            .map_err(|e| PartitionError { field: e.field.replacen("partitions.", "", 1), reason: e.reason })
    }

    /// The lake's name of a key's time partition: `year=2019/month=01`.
    pub fn lake_partition(key: &PartitionKey) -> Option<String> {
        let (g, t) = key.time?;
        let month = format!("year={}/month={:02}", t.year(), t.month());
        Some(match g {
            Granularity::Month => month,
            Granularity::Day => format!("{month}/day={:02}", t.day()),
            Granularity::Hour => format!("{month}/day={:02}/hour={:02}", t.day(), t.hour()),
        })
    }
}

// ---- backfills ---------------------------------------------------------------

/// Which partitions of a selection a backfill runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Only {
    /// Those without a completed run: never run, or whose latest run failed,
    /// crashed or was cancelled.
    #[default]
    Missing,
    /// Only those whose latest run failed, crashed or was cancelled.
    Failed,
    /// Every one, done or not; a second run of the same backfill still skips
    /// what this backfill has already completed.
    All,
    /// What `missing` takes, and the completed ones whose source changed
    /// since their run (`headwater dataset check-sources` found another file
    /// on the web).
    Stale,
}

impl Only {
    pub fn name(self) -> &'static str {
        match self {
            Only::Missing => "missing",
            Only::Failed => "failed",
            Only::All => "all",
            Only::Stale => "stale",
        }
    }
}

impl std::str::FromStr for Only {
    type Err = PartitionError;
    fn from_str(s: &str) -> Result<Only, PartitionError> {
        match s {
            "missing" => Ok(Only::Missing),
            "failed" => Ok(Only::Failed),
            "all" => Ok(Only::All),
            "stale" => Ok(Only::Stale),
            other => Err(error("only", format!("'{other}' is not one of missing, failed, all, stale"))),
        }
    }
}

/// Where a partition stands, by its latest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartitionStatus {
    /// No run yet.
    Missing,
    /// Queued or running.
    InFlight,
    Completed,
    /// Failed, crashed or cancelled.
    Failed,
}

impl PartitionStatus {
    pub fn of(state: Option<StateType>) -> PartitionStatus {
        use StateType::*;
        match state {
            None => PartitionStatus::Missing,
            Some(Completed) => PartitionStatus::Completed,
            Some(Failed | Crashed | Cancelled) => PartitionStatus::Failed,
            Some(Scheduled | Pending | Running | Paused | Cancelling) => PartitionStatus::InFlight,
        }
    }
}

/// A partition's latest run, as the store reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatestRun {
    pub run_id: Uuid,
    pub state: StateType,
    pub backfill_id: Option<Uuid>,
    /// A version it wrote was made from a file that has changed since.
    #[serde(default)]
    pub source_changed: bool,
}

/// What a backfill will do with each partition of its selection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackfillPlan {
    /// The partitions it creates a run for, each with the run it follows
    /// (its latest run, if any).
    pub to_run: Vec<PlannedRun>,
    /// Already completed, left alone.
    pub fresh: Vec<String>,
    /// Already queued or running, left alone (never run twice at once).
    pub in_flight: Vec<String>,
    /// Not taken by `only` (e.g. never run, under `--only failed`).
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlannedRun {
    pub partition: String,
    /// The latest run of the partition before this one.
    pub follows: Option<Uuid>,
}

impl PlannedRun {
    /// The run's idempotency key: the backfill, the partition and the run it
    /// follows. Two plans made from the same facts (the same command twice
    /// at once) create the run once; after that run fails, the next plan
    /// follows it and makes a new key.
    pub fn idempotency_key(&self, backfill: Uuid) -> String {
        let follows = self.follows.map(|u| u.to_string()).unwrap_or_else(|| "first".into());
        format!("backfill:{backfill}:{}:{follows}", self.partition)
    }
}

/// Decides, for each key (in order), whether backfill `backfill` runs it,
/// given each partition's latest run.
pub fn plan_backfill(keys: &[String], latest: &HashMap<String, LatestRun>, only: Only, backfill: Uuid) -> BackfillPlan {
    let mut plan = BackfillPlan::default();
    for key in keys {
        let last = latest.get(key);
        let status = PartitionStatus::of(last.map(|l| l.state));
        let run = match (status, only) {
            (PartitionStatus::InFlight, _) => {
                plan.in_flight.push(key.clone());
                continue;
            }
            (PartitionStatus::Completed, Only::All) => last.and_then(|l| l.backfill_id) != Some(backfill),
            (PartitionStatus::Completed, Only::Stale) => last.is_some_and(|l| l.source_changed),
            (PartitionStatus::Completed, _) => false,
            (PartitionStatus::Failed, _) => true,
            (PartitionStatus::Missing, Only::Failed) => {
                plan.skipped.push(key.clone());
                continue;
            }
            (PartitionStatus::Missing, _) => true,
        };
        if run {
            plan.to_run.push(PlannedRun { partition: key.clone(), follows: last.map(|l| l.run_id) });
        } else {
            plan.fresh.push(key.clone());
        }
    }
    plan
}

/// A backfill: runs of a deployment for a selection of its partitions,
/// each partition once, at most `max_concurrent` at a time (the server's
/// claim holds the rest back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Backfill {
    /// Derived from the name (`backfill_id_for_name`); the server sets it.
    #[serde(default)]
    #[schema(read_only)]
    pub id: Uuid,
    pub name: String,
    pub deployment: String,
    pub selection: Selection,
    pub only: Only,
    pub max_concurrent: Option<u32>,
    /// Every partition it has created a run for, in plan order.
    pub partitions: Vec<String>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// When it was cancelled: its queued runs are not started.
    pub cancelled: Option<DateTime<Utc>>,
}

/// A backfill's id, from its name: the same backfill asked for twice is
/// the same backfill.
pub fn backfill_id_for_name(name: &str) -> Uuid {
    let digest = blake3::hash(format!("headwater-backfill:{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The name a backfill gets when none is given: its deployment, range,
/// static choices and `only`, so the same command names the same backfill.
pub fn default_backfill_name(deployment: &str, selection: &Selection, only: Only) -> String {
    let mut name = deployment.to_string();
    if selection.from.is_some() || selection.to.is_some() {
        name.push_str(&format!(
            ":{}..{}",
            selection.from.as_deref().unwrap_or(""),
            selection.to.as_deref().unwrap_or("")
        ));
    }
    for (k, v) in &selection.statics {
        let mut v = v.clone();
        v.sort();
        v.dedup();
        name.push_str(&format!(":{k}={}", v.join(",")));
    }
    if only != Only::Missing {
        name.push_str(&format!(":{}", only.name()));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_exactly_in_their_form() {
        let day = |s: &str| Granularity::Day.parse(s).map(|t| t.date());
        assert_eq!(day("2000-02-29"), NaiveDate::from_ymd_opt(2000, 2, 29));
        assert_eq!(day("0000-02-29"), NaiveDate::from_ymd_opt(0, 2, 29));
        for bad in [
            "1900-02-29",
            "2019-02-30",
            "2019-04-31",
            " 2019-01-05",
            "2019-01-05 ",
            "+201-01-05",
            "2019-1-05",
            "2019-01-5",
        ] {
            assert_eq!(day(bad), None, "{bad:?}");
        }
        for bad in ["+201-01", "2019-+1", "2019-13", "2019-00", "2019-01\n", "２０１９-01"] {
            assert_eq!(Granularity::Month.parse(bad), None, "{bad:?}");
        }
        assert!(Granularity::Hour.parse("2019-01-05T23").is_some());
        for bad in ["2019-01-05T24", "2019-01-05T+1", "2019-01-05t03", "2019-01-05T3"] {
            assert_eq!(Granularity::Hour.parse(bad), None, "{bad:?}");
        }
        // Every label a granularity writes, it reads back.
        let mut t = NaiveDate::from_ymd_opt(1999, 12, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        for _ in 0..800 {
            for g in [Granularity::Hour, Granularity::Day, Granularity::Month] {
                assert_eq!(g.parse(&g.label(g.floor(t))), Some(g.floor(t)));
            }
            t += Duration::hours(23);
        }
    }

    fn taxi() -> PartitionSpec {
        PartitionSpec {
            time: Some(TimePartitions {
                every: Granularity::Month,
                start: "2019-01".into(),
                end: None,
                timezone: "America/New_York".into(),
            }),
            dimensions: BTreeMap::from([("color".into(), vec!["yellow".into(), "green".into()])]),
            parameters: BTreeMap::from([
                ("color".into(), "color".into()),
                ("year".into(), "year".into()),
                ("month".into(), "month".into()),
            ]),
            freshness: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sel(from: &str, to: &str) -> Selection {
        Selection { from: Some(from.into()), to: Some(to.into()), ..Default::default() }
    }

    #[test]
    fn a_product_of_months_and_colours_in_time_order() {
        let spec = taxi();
        spec.validate().unwrap();
        let keys = spec.keys(&sel("2019-01", "2020-12"), at("2026-12-01T12:00:00Z")).unwrap();
        assert_eq!(keys.len(), 48);
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(names[0], "color=yellow/month=2019-01");
        assert_eq!(names[1], "color=green/month=2019-01");
        assert_eq!(names[47], "color=green/month=2020-12");
        let params = spec.parameters_for(&keys[2]);
        assert_eq!(Value::Object(params), json!({"color": "yellow", "year": 2019, "month": 2}));
        // Keys read back as they are written.
        for k in &keys {
            assert_eq!(&spec.parse_key(&k.to_string()).unwrap(), k);
        }
        let only_green = Selection::default().with_statics(&["color=green".into()]).unwrap();
        let green = spec.keys(&Selection { from: Some("2020-11".into()), ..only_green }, at("2021-01-15T00:00:00Z"));
        let green: Vec<String> = green.unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(green, ["color=green/month=2020-11", "color=green/month=2020-12"]);
    }

    #[test]
    fn an_open_range_ends_at_the_newest_complete_partition_in_its_zone() {
        let spec = taxi();
        // 2021-03-01 03:00 UTC is still February in New York.
        assert_eq!(spec.latest_complete(at("2021-03-01T03:00:00Z")).as_deref(), Some("2021-01"));
        assert_eq!(spec.latest_complete(at("2021-03-01T06:00:00Z")).as_deref(), Some("2021-02"));
        assert_eq!(spec.latest_complete(at("2019-01-20T00:00:00Z")), None, "the first month is not over");
        let keys =
            spec.keys(&Selection { from: Some("2020-12".into()), ..Default::default() }, at("2021-02-10T00:00:00Z"));
        assert_eq!(keys.unwrap().len(), 4, "2020-12 and 2021-01, two colours");
        let (start, end) = spec.window(&spec.parse_key("color=green/month=2021-03").unwrap()).unwrap();
        assert_eq!((start, end), (at("2021-03-01T05:00:00Z"), at("2021-04-01T04:00:00Z")), "DST starts in March");
        let daily = PartitionSpec {
            time: Some(TimePartitions {
                every: Granularity::Day,
                start: "2024-02-27".into(),
                end: None,
                timezone: "UTC".into(),
            }),
            dimensions: BTreeMap::new(),
            parameters: BTreeMap::from([("day".into(), "date".into())]),
            freshness: None,
        };
        let days = daily.keys(&Selection::default(), at("2024-03-02T01:00:00Z")).unwrap();
        let days: Vec<String> = days.iter().map(ToString::to_string).collect();
        assert_eq!(days, ["day=2024-02-27", "day=2024-02-28", "day=2024-02-29", "day=2024-03-01"]);
        let hourly = PartitionSpec {
            time: Some(TimePartitions {
                every: Granularity::Hour,
                start: "2024-03-01T22".into(),
                end: None,
                timezone: "UTC".into(),
            }),
            ..daily.clone()
        };
        assert_eq!(hourly.keys(&Selection::default(), at("2024-03-02T01:30:00Z")).unwrap().len(), 3);

        // Hourly for years is too long to list whole; the newest hours are a window onto it.
        let years = PartitionSpec {
            time: Some(TimePartitions { start: "2019-01-01T00".into(), ..hourly.time.clone().unwrap() }),
            ..hourly.clone()
        };
        let now = at("2024-03-02T01:30:00Z");
        assert_eq!(years.keys(&Selection::default(), now).unwrap_err().field, "range");
        let window: Vec<String> = years.recent_keys(3, now).unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(window.len(), 3, "{window:?}");
        assert!(window[0].ends_with("2024-03-01T22") && window[2].ends_with("2024-03-02T00"), "{window:?}");
        assert_eq!(hourly.recent_keys(100, now).unwrap().len(), 3, "fewer when the range holds fewer");
    }

    #[test]
    fn a_partition_past_its_deadline_without_a_completed_run_is_stale() {
        let mut spec = taxi();
        spec.time.as_mut().unwrap().timezone = "UTC".into();
        spec.freshness = Some(Freshness { within: Seconds(2 * 86_400 + 9 * 3600) });
        spec.validate().unwrap();
        let jan = spec.parse_key("color=yellow/month=2021-01").unwrap();
        // January is due by the 3rd of February at 09:00.
        assert_eq!(spec.deadline(&jan), Some(at("2021-02-03T09:00:00Z")));
        assert!(!spec.is_stale(&jan, None, at("2021-02-03T08:59:59Z")));
        assert!(spec.is_stale(&jan, None, at("2021-02-03T09:00:00Z")));
        assert!(spec.is_stale(&jan, Some(StateType::Failed), at("2021-03-01T00:00:00Z")));
        assert!(spec.is_stale(&jan, Some(StateType::Running), at("2021-03-01T00:00:00Z")));
        assert!(!spec.is_stale(&jan, Some(StateType::Completed), at("2021-03-01T00:00:00Z")));

        // The deadlines a check from 1 February to 10 February sees pass:
        // January's, both colours, and nothing older.
        let due = spec.deadlines_between(at("2021-02-01T00:00:00Z"), at("2021-02-10T00:00:00Z")).unwrap();
        let names: Vec<String> = due.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(names, ["color=yellow/month=2021-01", "color=green/month=2021-01"]);
        assert!(due.iter().all(|(_, d)| *d == at("2021-02-03T09:00:00Z")));
        // A check just after it sees nothing new; one from New Year to 4 March
        // sees December's, January's and February's.
        assert!(spec.deadlines_between(at("2021-02-03T09:00:00Z"), at("2021-03-03T08:00:00Z")).unwrap().is_empty());
        assert_eq!(spec.deadlines_between(at("2021-01-01T00:00:00Z"), at("2021-03-04T00:00:00Z")).unwrap().len(), 6);
        // Before the first partition's deadline, nothing is due.
        assert!(spec.deadlines_between(at("2018-01-01T00:00:00Z"), at("2019-02-03T08:00:00Z")).unwrap().is_empty());
        // Hourly partitions over years: only the hours in the window are computed.
        let hourly = PartitionSpec {
            time: Some(TimePartitions {
                every: Granularity::Hour,
                start: "2015-01-01T00".into(),
                end: None,
                timezone: "UTC".into(),
            }),
            dimensions: BTreeMap::new(),
            parameters: BTreeMap::from([("at".into(), "start".into())]),
            freshness: Some(Freshness { within: Seconds(1800) }),
        };
        let due = hourly.deadlines_between(at("2024-03-01T10:00:00Z"), at("2024-03-01T13:00:00Z")).unwrap();
        let names: Vec<String> = due.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(names, ["hour=2024-03-01T09", "hour=2024-03-01T10", "hour=2024-03-01T11"]);

        let static_only = PartitionSpec { time: None, ..spec.clone() };
        assert_eq!(static_only.validate().unwrap_err().field, "partitions.freshness");
    }

    #[test]
    fn bad_selections_and_specs_name_the_field() {
        let spec = PartitionSpec {
            time: Some(TimePartitions { end: Some("2020-12".into()), ..taxi().time.unwrap() }),
            ..taxi()
        };
        let now = at("2026-01-01T00:00:00Z");
        let e = |s: Selection| spec.keys(&s, now).unwrap_err().to_string();
        assert_eq!(e(sel("2018-12", "2019-02")), "from: 2018-12 is before the partitions' start, 2019-01");
        assert_eq!(e(sel("2019-01", "2021-01")), "to: 2021-01 is after the partitions' end, 2020-12");
        assert_eq!(e(sel("2019-05", "2019-04")), "to: the range 2019-05..2019-04 holds no partitions");
        assert_eq!(e(sel("2019-13", "2019-04")), "from: '2019-13' is not a month (YYYY-MM)");
        let blue = Selection::default().with_statics(&["color=blue".into()]).unwrap();
        assert_eq!(e(blue), "partition.color: 'blue' is not one of yellow, green");
        let colour = Selection::default().with_statics(&["colour=green".into()]).unwrap();
        assert_eq!(e(colour), "partition: 'colour' is not a static partition dimension (dimensions: color)");
        assert!(Selection::default()
            .with_statics(&["green".into()])
            .unwrap_err()
            .to_string()
            .starts_with("partition: 'green' is not NAME=VALUE"));

        let hourly = PartitionSpec {
            time: Some(TimePartitions {
                every: Granularity::Hour,
                start: "2019-01-01T00".into(),
                end: None,
                timezone: "UTC".into(),
            }),
            dimensions: BTreeMap::new(),
            parameters: BTreeMap::from([("at".into(), "start".into())]),
            freshness: None,
        };
        assert_eq!(hourly.keys(&Selection::default(), now).unwrap_err().field, "range", "seven years of hours");

        let mut bad = taxi();
        bad.parameters.insert("day".into(), "day".into());
        assert_eq!(bad.validate().unwrap_err().field, "partitions.parameters.day");
        let mut bad = taxi();
        bad.parameters.insert("region".into(), "region".into());
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("partitions.parameters.region: 'region' is not a part of the key"));
        let mut bad = taxi();
        bad.time.as_mut().unwrap().timezone = "Mars/Olympus".into();
        assert_eq!(bad.validate().unwrap_err().field, "partitions.time.timezone");
        let mut bad = taxi();
        bad.dimensions.insert("color".into(), vec!["yellow".into(), "yellow".into()]);
        assert_eq!(bad.validate().unwrap_err().to_string(), "partitions.static.color: 'yellow' is listed twice");
    }

    #[test]
    fn the_mapping_is_checked_against_the_flows_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "color": {"type": "string", "enum": ["yellow", "green"]},
                "year": {"type": "integer"},
                "month": {"type": "integer", "minimum": 1, "maximum": 12},
                "lake": {"type": "string"}
            },
            "required": ["color", "year", "month", "lake"]
        });
        let defaults = json!({"lake": "taxi-lake"});
        taxi().check_against_schema(&schema, &defaults).unwrap();
        let mut fhv = taxi();
        fhv.dimensions.insert("color".into(), vec!["yellow".into(), "fhv".into()]);
        let e = fhv.check_against_schema(&schema, &defaults).unwrap_err().to_string();
        assert!(e.contains("color=fhv/month=2019-01") && e.contains("color"), "{e}");
        let mut missing = taxi();
        missing.parameters.insert("months".into(), "month".into());
        let e = missing.check_against_schema(&schema, &defaults).unwrap_err();
        assert_eq!(e.field, "partitions.parameters.months");
        assert!(e.reason.contains("no parameter 'months'"), "{e}");
    }

    #[test]
    fn a_backfill_plan_skips_what_is_done_or_running() {
        let bf = backfill_id_for_name("b");
        let other = backfill_id_for_name("other");
        let keys: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        let run = |state, backfill_id| LatestRun { run_id: Uuid::now_v7(), state, backfill_id, source_changed: false };
        let latest = HashMap::from([
            ("b".to_string(), run(StateType::Completed, Some(other))),
            ("c".to_string(), run(StateType::Running, Some(bf))),
            ("d".to_string(), run(StateType::Crashed, Some(bf))),
            ("e".to_string(), run(StateType::Completed, Some(bf))),
        ]);
        let names = |p: &BackfillPlan| p.to_run.iter().map(|r| r.partition.clone()).collect::<Vec<_>>();
        let missing = plan_backfill(&keys, &latest, Only::Missing, bf);
        assert_eq!(names(&missing), ["a", "d"]);
        assert_eq!(
            (missing.fresh.clone(), missing.in_flight.clone()),
            (vec!["b".into(), "e".into()], vec!["c".to_string()])
        );
        assert_eq!(missing.to_run[1].follows, Some(latest["d"].run_id));
        assert_eq!(names(&plan_backfill(&keys, &latest, Only::Failed, bf)), ["d"]);
        assert_eq!(names(&plan_backfill(&keys, &latest, Only::All, bf)), ["a", "b", "d"], "not what it completed");
        // `stale`: what `missing` takes, and a completed one whose source changed.
        let mut changed = latest.clone();
        changed.get_mut("b").unwrap().source_changed = true;
        assert_eq!(names(&plan_backfill(&keys, &changed, Only::Stale, bf)), ["a", "b", "d"]);
        assert_eq!(names(&plan_backfill(&keys, &changed, Only::Missing, bf)), ["a", "d"]);
        // The same facts make the same keys; a new latest run makes a new one.
        let again = plan_backfill(&keys, &latest, Only::Missing, bf);
        assert_eq!(again.to_run[0].idempotency_key(bf), missing.to_run[0].idempotency_key(bf));
        let d_again = PlannedRun { partition: "d".into(), follows: Some(Uuid::now_v7()) };
        assert_ne!(d_again.idempotency_key(bf), missing.to_run[1].idempotency_key(bf));
    }

    #[test]
    fn a_dataset_policy_names_partitions_the_lake_way() {
        let policy: DatasetPolicy = serde_json::from_value(json!({
            "time": {"every": "month", "start": "2019-01", "timezone": "UTC"},
            "freshness": {"within": "2d 9h"}
        }))
        .unwrap();
        policy.validate().unwrap();
        let spec = policy.spec();
        let now: DateTime<Utc> = "2019-04-10T00:00:00Z".parse().unwrap();
        let keys = spec.keys(&Selection::default(), now).unwrap();
        let names: Vec<String> = keys.iter().filter_map(DatasetPolicy::lake_partition).collect();
        assert_eq!(names, ["year=2019/month=01", "year=2019/month=02", "year=2019/month=03"]);
        assert_eq!(spec.deadline(&keys[2]).unwrap(), "2019-04-03T09:00:00Z".parse::<DateTime<Utc>>().unwrap());
        let bad = DatasetPolicy {
            time: TimePartitions { timezone: "Mars/Olympus".into(), ..policy.time.clone() },
            ..policy.clone()
        };
        assert_eq!(bad.validate().unwrap_err().field, "time.timezone");
        let hourly = DatasetPolicy {
            time: TimePartitions { every: Granularity::Hour, start: "2019-01-05T07".into(), ..policy.time },
            ..policy
        };
        let first = hourly.spec().keys(&Selection::default(), now).unwrap().remove(0);
        assert_eq!(DatasetPolicy::lake_partition(&first).unwrap(), "year=2019/month=01/day=05/hour=07");
    }

    #[test]
    fn the_same_command_names_the_same_backfill() {
        let s = Selection::default().with_statics(&["color=green,yellow".into()]).unwrap();
        let s = Selection { from: Some("2019-01".into()), to: Some("2020-12".into()), ..s };
        let t = Selection::default().with_statics(&["color=yellow,green".into()]).unwrap();
        let t = Selection { from: Some("2019-01".into()), to: Some("2020-12".into()), ..t };
        assert_eq!(default_backfill_name("taxi", &s, Only::Missing), "taxi:2019-01..2020-12:color=green,yellow");
        assert_eq!(default_backfill_name("taxi", &s, Only::Missing), default_backfill_name("taxi", &t, Only::Missing));
        assert_ne!(default_backfill_name("taxi", &s, Only::All), default_backfill_name("taxi", &s, Only::Missing));
    }
}
