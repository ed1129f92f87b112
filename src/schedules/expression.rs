//! A Scheduler schedule's expression in its time zone: `at(yyyy-mm-ddThh:mm:ss)` (once),
//! `rate(...)` and `cron(...)` (EventBridge's forms, `bus::schedule`), and when it next
//! fires.
//!
//! `at` and `cron` read the wall clock of `ScheduleExpressionTimezone` (an IANA name,
//! UTC by default); a rate is a period and ignores it. Daylight saving time, as
//! EventBridge Scheduler documents it: a wall time the clocks skip (spring forward) does
//! not fire that day, and a wall time the clocks pass twice (fall back) fires once, at the
//! first. (A one-time `at` in a skipped hour fires at the same wall time on the later
//! offset, an hour on.)

use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::bus::schedule::Schedule as Repeating;

/// How many skipped or repeated wall times a search steps over before giving up (a
/// cron expression matches at most a few per year).
const SEARCH_STEPS: usize = 64;

/// A parsed expression and its zone.
#[derive(Debug, Clone)]
pub struct Expression {
    when: When,
    zone: TimeZone,
}

#[derive(Debug, Clone)]
enum When {
    /// Once, at this wall time (milliseconds of the civil time read as if UTC).
    At(u64),
    Repeating(Repeating),
}

impl Expression {
    /// Parses `text` for the zone named `timezone` (UTC when `None`); the refusal is a
    /// `ValidationException`'s message.
    pub fn parse(text: &str, timezone: Option<&str>) -> Result<Self, String> {
        let zone = match timezone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name)
                .map_err(|_| format!("Invalid time zone: {name} is not an IANA time zone name."))?,
        };
        let when = if let Some(inner) = text.strip_prefix("at(").and_then(|t| t.strip_suffix(')')) {
            let civil = crate::timefmt::parse_iso(inner)
                .filter(|_| inner.len() == 19)
                .ok_or_else(|| {
                    format!("Invalid Schedule Expression {text}: at() takes yyyy-mm-ddThh:mm:ss.")
                })?;
            When::At(civil)
        } else {
            When::Repeating(Repeating::parse(text).map_err(|e| e.0)?)
        };
        Ok(Self { when, zone })
    }

    /// Whether the schedule fires once.
    pub fn is_once(&self) -> bool {
        matches!(self.when, When::At(_))
    }

    /// The first firing strictly after `after_ms` (a rate counted from `origin_ms`), or
    /// `None` when there is none.
    pub fn next_after(&self, after_ms: u64, origin_ms: u64) -> Option<u64> {
        match &self.when {
            When::At(civil) => self.instant(*civil, true).filter(|t| *t > after_ms),
            When::Repeating(r @ Repeating::Rate { .. }) => r.next_after(after_ms, origin_ms),
            When::Repeating(cron) => {
                let mut wall = self.wall(after_ms)?;
                for _ in 0..SEARCH_STEPS {
                    let candidate = cron.next_after(wall, 0)?;
                    if let Some(t) = self.instant(candidate, false)
                        && t > after_ms
                    {
                        return Some(t);
                    }
                    wall = candidate;
                }
                None
            }
        }
    }

    /// What counts as the last firing when it fires at `now_ms` (see
    /// `bus::schedule::Schedule::settled`).
    pub fn settled(&self, now_ms: u64, origin_ms: u64) -> u64 {
        match &self.when {
            When::Repeating(r) => r.settled(now_ms, origin_ms),
            When::At(_) => now_ms,
        }
    }

    /// The wall time (civil milliseconds read as UTC) of the instant `ms`.
    fn wall(&self, ms: u64) -> Option<u64> {
        let ts = jiff::Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?;
        let offset = i64::from(self.zone.to_offset(ts).seconds()) * 1000;
        u64::try_from(ms as i64 + offset).ok()
    }

    /// The instant of the wall time `civil`: the first of two in a fold; in a gap `None`,
    /// or with `shift_gaps` the same wall time on the offset before the gap.
    fn instant(&self, civil: u64, shift_gaps: bool) -> Option<u64> {
        let ts = jiff::Timestamp::from_millisecond(i64::try_from(civil).ok()?).ok()?;
        let datetime = TimeZone::UTC.to_datetime(ts);
        let offset = match self.zone.to_ambiguous_timestamp(datetime).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset,
            AmbiguousOffset::Fold { before, .. } => before,
            AmbiguousOffset::Gap { before, .. } if shift_gaps => before,
            AmbiguousOffset::Gap { .. } => return None,
        };
        u64::try_from(civil as i64 - i64::from(offset.seconds()) * 1000).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(iso: &str) -> u64 {
        crate::timefmt::parse_iso(iso).unwrap()
    }

    fn iso(ms: u64) -> String {
        crate::timefmt::iso_timestamp(ms)
    }

    #[test]
    fn cron_reads_the_wall_clock_of_its_zone() {
        let e = Expression::parse("cron(30 9 * * ? *)", Some("Europe/Paris")).unwrap();
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(
            iso(e.next_after(ms("2026-01-10T00:00:00Z"), 0).unwrap()),
            "2026-01-10T08:30:00.000Z"
        );
        assert_eq!(
            iso(e.next_after(ms("2026-07-10T08:00:00Z"), 0).unwrap()),
            "2026-07-11T07:30:00.000Z"
        );
        let utc = Expression::parse("cron(30 9 * * ? *)", None).unwrap();
        assert_eq!(
            iso(utc.next_after(ms("2026-01-10T00:00:00Z"), 0).unwrap()),
            "2026-01-10T09:30:00.000Z"
        );
    }

    #[test]
    fn a_skipped_wall_time_does_not_fire_and_a_repeated_one_fires_once() {
        // New York springs forward on 2026-03-08 at 02:00 (to 03:00) and falls back on
        // 2026-11-01 at 02:00 (to 01:00).
        let e = Expression::parse("cron(30 2 * * ? *)", Some("America/New_York")).unwrap();
        let first = e.next_after(ms("2026-03-07T00:00:00Z"), 0).unwrap();
        assert_eq!(iso(first), "2026-03-07T07:30:00.000Z");
        // 02:30 on the 8th does not exist: the next is the 9th, 02:30 EDT.
        assert_eq!(
            iso(e.next_after(first, 0).unwrap()),
            "2026-03-09T06:30:00.000Z"
        );

        let hourly = Expression::parse("cron(30 * * * ? *)", Some("America/New_York")).unwrap();
        let mut t = ms("2026-11-01T04:00:00Z"); // 00:00 EDT
        let mut got = Vec::new();
        for _ in 0..4 {
            t = hourly.next_after(t, 0).unwrap();
            got.push(iso(t));
        }
        // 00:30 EDT, 01:30 EDT (the first of the two), then 02:30 EST and 03:30 EST.
        assert_eq!(
            got,
            [
                "2026-11-01T04:30:00.000Z",
                "2026-11-01T05:30:00.000Z",
                "2026-11-01T07:30:00.000Z",
                "2026-11-01T08:30:00.000Z"
            ]
        );
    }

    #[test]
    fn at_fires_once_in_its_zone() {
        let e = Expression::parse("at(2026-06-01T12:00:00)", Some("Asia/Tokyo")).unwrap();
        assert!(e.is_once());
        let t = e.next_after(0, 0).unwrap();
        assert_eq!(iso(t), "2026-06-01T03:00:00.000Z");
        assert_eq!(e.next_after(t, 0), None);
        let gap = Expression::parse("at(2026-03-08T02:30:00)", Some("America/New_York")).unwrap();
        assert_eq!(
            iso(gap.next_after(0, 0).unwrap()),
            "2026-03-08T07:30:00.000Z"
        );
    }

    #[test]
    fn rates_ignore_the_zone_and_bad_input_is_refused() {
        let e = Expression::parse("rate(5 minutes)", Some("Asia/Kolkata")).unwrap();
        assert_eq!(e.next_after(1_000, 0), Some(300_000));
        assert!(Expression::parse("rate(5 minutes)", Some("Mars/Olympus")).is_err());
        assert!(Expression::parse("at(2026-06-01 12:00)", None).is_err());
        assert!(Expression::parse("at(2026-06-01T12:00:00Z)", None).is_err());
        assert!(Expression::parse("cron(0 0 * * * *)", None).is_err());
        assert!(Expression::parse("every day", None).is_err());
    }
}
