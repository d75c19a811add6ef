//! Schedule math: when a deployment's runs are due.
//!
//! Three kinds, as Prefect has them: cron (5 fields, in a time zone),
//! interval (every N, from an anchor), and RFC 5545 recurrence rules. All
//! are pure functions of the schedule and the time asked about.
//!
//! Daylight-saving rules, which the tests pin down:
//! - cron runs at wall-clock times in its zone; a time skipped by a
//!   spring-forward runs at the first valid time after the gap, and a time
//!   repeated by a fall-back runs once, at its first occurrence;
//! - an interval of whole days keeps the anchor's wall-clock time (09:00
//!   stays 09:00 across DST); a shorter interval is absolute elapsed time;
//! - an rrule is evaluated in its zone by the rrule crate.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::duration::format_duration;
use crate::error::CoreError;

/// When runs are due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// Five fields (minute hour day-of-month month day-of-week), or a
    /// nickname such as `@daily`.
    Cron { cron: String, timezone: String },
    /// Every `every_ms` (at least a second), counted from `anchor`.
    Interval {
        #[schema(minimum = 1000)]
        every_ms: u64,
        anchor: DateTime<Utc>,
        timezone: String,
    },
    /// An RFC 5545 rule (`FREQ=WEEKLY;BYDAY=MO;BYHOUR=9`), optionally with its own `DTSTART` line.
    Rrule { rrule: String, timezone: String },
}

fn invalid(schedule: &str, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidSchedule { schedule: schedule.to_string(), reason: reason.into() }
}

pub(crate) fn zone(name: &str) -> Result<Tz, CoreError> {
    Tz::from_str(name).map_err(|_| {
        invalid(name, "unknown time zone; use an IANA name such as UTC, Europe/Berlin or America/New_York")
    })
}

/// Every time zone name [`zone`] knows (IANA's, with its links), for the
/// API's document.
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

/// The default anchor of intervals and rrules without one.
fn default_anchor(tz: Tz) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str("2020-01-01 00:00:00", "%Y-%m-%d %H:%M:%S").expect("valid literal");
    resolve_local(tz, naive).with_timezone(&Utc)
}

/// A wall-clock time in `tz`: a time skipped by DST moves forward past the
/// gap, an ambiguous one takes its first occurrence.
pub(crate) fn resolve_local(tz: Tz, mut naive: NaiveDateTime) -> DateTime<Tz> {
    for _ in 0..=180 {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => return t,
            LocalResult::Ambiguous(first, _) => return first,
            LocalResult::None => naive += chrono::Duration::minutes(1),
        }
    }
    // No zone has a gap of three hours; fall back to reading it as UTC.
    tz.from_utc_datetime(&naive)
}

impl Schedule {
    /// A cron schedule: five fields (minute hour day-of-month month
    /// day-of-week), evaluated in `timezone`.
    pub fn cron(expr: &str, timezone: &str) -> Result<Schedule, CoreError> {
        zone(timezone)?;
        let fields = expr.split_whitespace().count();
        if fields != 5 && !expr.trim_start().starts_with('@') {
            return Err(invalid(
                expr,
                format!("a cron expression has 5 fields (minute hour day month weekday), this has {fields}"),
            ));
        }
        croner::Cron::from_str(expr).map_err(|e| invalid(expr, e.to_string()))?;
        Ok(Schedule::Cron { cron: expr.trim().to_string(), timezone: timezone.to_string() })
    }

    /// Every `every`, counted from `anchor` (default 2020-01-01 00:00 in
    /// `timezone`).
    pub fn interval(every: Duration, anchor: Option<DateTime<Utc>>, timezone: &str) -> Result<Schedule, CoreError> {
        let tz = zone(timezone)?;
        if every < Duration::from_secs(1) {
            return Err(invalid(&format_duration(every), "an interval must be at least one second"));
        }
        Ok(Schedule::Interval {
            every_ms: every.as_millis() as u64,
            anchor: anchor.unwrap_or_else(|| default_anchor(tz)),
            timezone: timezone.to_string(),
        })
    }

    /// An RFC 5545 rule (`FREQ=WEEKLY;BYDAY=MO;BYHOUR=9`), optionally with
    /// its own `DTSTART` line; without one it starts at 2020-01-01 00:00 in
    /// `timezone`.
    pub fn rrule(rule: &str, timezone: &str) -> Result<Schedule, CoreError> {
        let s = Schedule::Rrule { rrule: rule.trim().to_string(), timezone: timezone.to_string() };
        s.rrule_set()?;
        Ok(s)
    }

    /// Whether a schedule read from elsewhere (the API) is one its
    /// constructors would make.
    pub fn check(&self) -> Result<(), CoreError> {
        match self {
            Schedule::Cron { cron, timezone } => Schedule::cron(cron, timezone).map(drop),
            Schedule::Interval { every_ms, anchor, timezone } => {
                Schedule::interval(Duration::from_millis(*every_ms), Some(*anchor), timezone).map(drop)
            }
            Schedule::Rrule { .. } => self.rrule_set().map(drop),
        }
    }

    pub fn timezone(&self) -> &str {
        match self {
            Schedule::Cron { timezone, .. }
            | Schedule::Interval { timezone, .. }
            | Schedule::Rrule { timezone, .. } => timezone,
        }
    }

    fn rrule_set(&self) -> Result<rrule::RRuleSet, CoreError> {
        let Schedule::Rrule { rrule: rule, timezone } = self else { unreachable!("only for rrules") };
        let tz = zone(timezone)?;
        if rule.contains("DTSTART") {
            return rrule::RRuleSet::from_str(rule).map_err(|e| invalid(rule, e.to_string()));
        }
        let body = rule.trim_start_matches("RRULE:");
        let parsed: rrule::RRule<rrule::Unvalidated> =
            body.parse().map_err(|e: rrule::RRuleError| invalid(rule, e.to_string()))?;
        let start = default_anchor(tz).with_timezone(&rrule::Tz::Tz(tz));
        parsed.build(start).map_err(|e| invalid(rule, e.to_string()))
    }

    /// The first `count` due times strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, timezone } => {
                let (Ok(c), Ok(tz)) = (croner::Cron::from_str(cron), zone(timezone)) else {
                    return Vec::new();
                };
                let mut out = Vec::with_capacity(count);
                // Cron fires on whole seconds, but croner keeps the cursor's
                // fraction in what it finds: searched from "now", the same
                // due time would come out different at every look (and so
                // would the run its idempotency key should keep single).
                let whole = after - chrono::Duration::nanoseconds(i64::from(after.timestamp_subsec_nanos()));
                let mut cursor = whole.with_timezone(&tz);
                while out.len() < count {
                    match c.find_next_occurrence(&cursor, false) {
                        Ok(t) => {
                            out.push(t.with_timezone(&Utc));
                            cursor = t;
                        }
                        Err(_) => break,
                    }
                }
                out
            }
            Schedule::Interval { every_ms, anchor, timezone } => {
                let Ok(tz) = zone(timezone) else {
                    return Vec::new();
                };
                interval_after(*every_ms, *anchor, tz, after, count)
            }
            Schedule::Rrule { .. } => {
                let Ok(set) = self.rrule_set() else {
                    return Vec::new();
                };
                let tz = set.get_dt_start().timezone();
                let result = set.after(after.with_timezone(&tz)).all(count.min(u16::MAX as usize) as u16);
                result.dates.into_iter().map(|d| d.with_timezone(&Utc)).filter(|d| *d > after).take(count).collect()
            }
        }
    }

    /// Due times in `[start, end)`, at most `limit` of them.
    pub fn between(&self, start: DateTime<Utc>, end: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let from = start - chrono::Duration::microseconds(1);
        self.next_after(from, limit).into_iter().filter(|t| *t >= start && *t < end).collect()
    }

    /// The schedule in words, for people.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Cron { cron, timezone } => match croner::Cron::from_str(cron) {
                Ok(c) => format!("{} ({timezone})", c.describe()),
                Err(_) => format!("cron '{cron}' ({timezone})"),
            },
            Schedule::Interval { every_ms, anchor, timezone } => {
                let every = format_duration(Duration::from_millis(*every_ms));
                let tz = zone(timezone).unwrap_or(Tz::UTC);
                format!("Every {every} from {} ({timezone})", anchor.with_timezone(&tz).format("%Y-%m-%d %H:%M"))
            }
            Schedule::Rrule { rrule, timezone } => format!("{rrule} ({timezone})"),
        }
    }
}

const DAY_MS: u64 = 86_400_000;

fn interval_after(
    every_ms: u64,
    anchor: DateTime<Utc>,
    tz: Tz,
    after: DateTime<Utc>,
    count: usize,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::with_capacity(count);
    if every_ms.is_multiple_of(DAY_MS) {
        // Whole days: step in wall-clock time so the local hour is kept.
        let days = (every_ms / DAY_MS) as i64;
        let local_anchor = anchor.with_timezone(&tz).naive_local();
        let elapsed_days = (after.with_timezone(&tz).naive_local() - local_anchor).num_days();
        let mut k = if elapsed_days > 0 { elapsed_days / days - 1 } else { 0 }.max(0);
        while out.len() < count {
            let t = resolve_local(tz, local_anchor + chrono::Duration::days(k * days)).with_timezone(&Utc);
            if t > after {
                out.push(t);
            }
            k += 1;
        }
    } else {
        // Microseconds and floor division: an `after` just before a due
        // time (as `between` asks) must still find it.
        let every = every_ms as i64 * 1000;
        let since = (after - anchor).num_microseconds().unwrap_or(i64::MAX);
        let mut k = (since.div_euclid(every) + 1).max(0);
        while out.len() < count {
            let t = anchor + chrono::Duration::microseconds(k * every);
            if t > after {
                out.push(t);
            }
            k += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cron_due_times_are_whole_seconds_whatever_the_time_asked_from() {
        let s = Schedule::cron("* * * * *", "UTC").unwrap();
        let a = s.between(utc("2026-12-01T19:06:20.807471Z"), utc("2026-12-01T19:07:30.807471Z"), 10);
        let b = s.between(utc("2026-12-01T19:06:25.831247Z"), utc("2026-12-01T19:07:30.831247Z"), 10);
        assert_eq!(times(&a), ["2026-12-01T19:07:00Z"]);
        assert_eq!(a, b, "the same due time from either look");
        // Strictly after: a due time just passed is not found again.
        let after = s.next_after(utc("2026-12-01T19:07:00.5Z"), 1);
        assert_eq!(times(&after), ["2026-12-01T19:08:00Z"]);
    }

    /// No schedule text crashes the parsers, and whatever parses can be
    /// searched and described (robustness, not meaning: mutated inputs).
    #[test]
    fn no_mutated_schedule_crashes_the_parsers() {
        let mut m = crate::mutations::Mutator::new(0x5c4e_d01e);
        let crons = ["0 5 2 * *", "*/15 9-17 * * MON-FRI", "0 0 L * *", "30 2 29 2 *", "0 0 1 1 * 2030"];
        let rules = ["FREQ=MONTHLY;BYMONTHDAY=2;BYHOUR=5", "DTSTART:20210101T000000Z\nRRULE:FREQ=DAILY;COUNT=3"];
        let zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"];
        let pieces = ["*", "/", ",", "-", "L", "W", "#", "?", "99999999999", "0", ";", "=", "\n", " "];
        let from = DateTime::parse_from_rfc3339("2026-03-29T00:30:00Z").unwrap().to_utc();
        for case in 0..3_000 {
            let zone = zones[case % zones.len()];
            let parsed = if case % 3 == 2 {
                Schedule::rrule(&m.mutate_text(rules[case % rules.len()], &pieces), zone)
            } else {
                Schedule::cron(&m.mutate_text(crons[case % crons.len()], &pieces), zone)
            };
            if let Ok(s) = parsed {
                let _ = s.between(from, from + chrono::Duration::days(400), 20);
                let _ = s.describe();
            }
            let _ =
                crate::duration::parse_duration(&m.mutate_text("1h30m", &["9999999999999999", "d", "ms", ".", "-"]));
        }
    }

    fn times(v: &[DateTime<Utc>]) -> Vec<String> {
        v.iter().map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).collect()
    }

    #[test]
    fn monthly_cron_in_utc() {
        // 05:00 on the 1st of every month.
        let s = Schedule::cron("0 5 1 * *", "UTC").unwrap();
        let next = s.next_after(utc("2021-01-15T12:00:00Z"), 3);
        assert_eq!(times(&next), ["2021-02-01T05:00:00Z", "2021-03-01T05:00:00Z", "2021-04-01T05:00:00Z"]);
        // Strictly after: a due time equal to `after` is not repeated.
        let again = s.next_after(utc("2021-02-01T05:00:00Z"), 1);
        assert_eq!(times(&again), ["2021-03-01T05:00:00Z"]);
    }

    #[test]
    fn cron_follows_local_time_across_dst() {
        let s = Schedule::cron("0 9 * * *", "Europe/Berlin").unwrap();
        let winter = s.next_after(utc("2021-01-10T00:00:00Z"), 1);
        let summer = s.next_after(utc("2021-07-10T00:00:00Z"), 1);
        assert_eq!(times(&winter), ["2021-01-10T08:00:00Z"]);
        assert_eq!(times(&summer), ["2021-07-10T07:00:00Z"]);
    }

    #[test]
    fn cron_in_the_spring_forward_gap_runs_once_right_after_it() {
        // New York skips 02:00-03:00 on 2021-03-14.
        let s = Schedule::cron("30 2 * * *", "America/New_York").unwrap();
        let next = s.next_after(utc("2021-03-13T12:00:00Z"), 3);
        assert_eq!(
            times(&next),
            [
                "2021-03-14T07:00:00Z", // 03:00 EDT, the first valid time after the gap
                "2021-03-15T06:30:00Z", // 02:30 EDT
                "2021-03-16T06:30:00Z",
            ]
        );
    }

    #[test]
    fn cron_in_the_fall_back_overlap_runs_once() {
        // New York repeats 01:00-02:00 on 2021-11-07.
        let s = Schedule::cron("30 1 * * *", "America/New_York").unwrap();
        let next = s.next_after(utc("2021-11-06T12:00:00Z"), 3);
        assert_eq!(
            times(&next),
            [
                "2021-11-07T05:30:00Z", // 01:30 EDT, the first of the two
                "2021-11-08T06:30:00Z", // 01:30 EST
                "2021-11-09T06:30:00Z",
            ]
        );
    }

    #[test]
    fn daily_intervals_keep_the_local_hour_across_dst() {
        let anchor = utc("2021-03-10T14:00:00Z"); // 09:00 EST
        let s = Schedule::interval(Duration::from_secs(86_400), Some(anchor), "America/New_York").unwrap();
        let next = s.next_after(utc("2021-03-12T00:00:00Z"), 4);
        assert_eq!(
            times(&next),
            ["2021-03-12T14:00:00Z", "2021-03-13T14:00:00Z", "2021-03-14T13:00:00Z", "2021-03-15T13:00:00Z"]
        );
    }

    #[test]
    fn hourly_intervals_are_elapsed_time_across_dst() {
        let anchor = utc("2021-11-07T00:00:00Z");
        let s = Schedule::interval(Duration::from_secs(3600), Some(anchor), "America/New_York").unwrap();
        // The local day of the fall-back has 25 hours, so 25 hourly runs.
        let tz: Tz = "America/New_York".parse().unwrap();
        let start = tz.with_ymd_and_hms(2021, 11, 7, 0, 0, 0).unwrap().with_timezone(&Utc);
        let end = tz.with_ymd_and_hms(2021, 11, 8, 0, 0, 0).unwrap().with_timezone(&Utc);
        let runs = s.between(start, end, 100);
        assert_eq!(runs.len(), 25);
        assert!(runs.windows(2).all(|w| w[1] - w[0] == chrono::Duration::hours(1)));
    }

    #[test]
    fn intervals_far_from_their_anchor_are_exact() {
        let s = Schedule::interval(Duration::from_secs(90), Some(utc("2020-01-01T00:00:00Z")), "UTC").unwrap();
        let next = s.next_after(utc("2026-11-21T06:00:00Z"), 2);
        assert_eq!(times(&next), ["2026-11-21T06:01:30Z", "2026-11-21T06:03:00Z"]);
        let before_anchor = s.next_after(utc("2019-01-01T00:00:00Z"), 1);
        assert_eq!(times(&before_anchor), ["2020-01-01T00:00:00Z"]);
    }

    #[test]
    fn between_includes_a_run_due_exactly_at_its_start() {
        let anchor = utc("2026-01-01T00:00:00Z");
        let s = Schedule::interval(Duration::from_secs(60), Some(anchor), "UTC").unwrap();
        let runs = s.between(anchor, anchor + chrono::Duration::minutes(3), 10);
        assert_eq!(times(&runs), ["2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"]);
        let c = Schedule::cron("0 * * * *", "UTC").unwrap();
        let hour = utc("2026-01-01T05:00:00Z");
        assert_eq!(
            times(&c.between(hour, hour + chrono::Duration::hours(2), 10)),
            ["2026-01-01T05:00:00Z", "2026-01-01T06:00:00Z"]
        );
    }

    #[test]
    fn rrules_in_their_zone() {
        let s = Schedule::rrule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;BYSECOND=0", "America/New_York").unwrap();
        let next = s.next_after(utc("2021-03-01T00:00:00Z"), 3);
        assert_eq!(times(&next), ["2021-03-01T14:00:00Z", "2021-03-08T14:00:00Z", "2021-03-15T13:00:00Z"]);
        let with_start = Schedule::rrule("DTSTART:20210101T120000Z\nRRULE:FREQ=DAILY;COUNT=3", "UTC").unwrap();
        let all = with_start.next_after(utc("2020-01-01T00:00:00Z"), 10);
        assert_eq!(times(&all), ["2021-01-01T12:00:00Z", "2021-01-02T12:00:00Z", "2021-01-03T12:00:00Z"]);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let e = Schedule::cron("0 5 1 *", "UTC").unwrap_err().to_string();
        assert!(e.contains("'0 5 1 *'") && e.contains("5 fields"), "{e}");
        let e = Schedule::cron("0 25 * * *", "UTC").unwrap_err().to_string();
        assert!(e.starts_with("invalid schedule '0 25 * * *'"), "{e}");
        let e = Schedule::cron("0 5 * * *", "Mars/Olympus").unwrap_err().to_string();
        assert!(e.contains("unknown time zone"), "{e}");
        assert!(Schedule::interval(Duration::ZERO, None, "UTC").is_err());
        let e = Schedule::rrule("FREQ=SOMETIMES", "UTC").unwrap_err().to_string();
        assert!(e.starts_with("invalid schedule 'FREQ=SOMETIMES'"), "{e}");
    }

    #[test]
    fn schedules_in_words() {
        let s = Schedule::cron("0 5 1 * *", "UTC").unwrap();
        let words = s.describe();
        assert!(words.contains("05:00") || words.contains("5:00"), "{words}");
        assert!(words.ends_with("(UTC)"), "{words}");
        let i = Schedule::interval(Duration::from_secs(3600), Some(utc("2021-01-01T00:00:00Z")), "UTC").unwrap();
        assert_eq!(i.describe(), "Every 1h from 2021-01-01 00:00 (UTC)");
    }
}
