//! Schedule expressions of rules: `rate(N minute|minutes|hour|hours|day|days)` and
//! EventBridge's six-field `cron(minutes hours day-of-month month day-of-week year)`, in
//! UTC, and the next time one fires.
//!
//! Cron fields take `*`, single values, ranges `a-b`, lists `a,b`, steps `*/n` and `a/n`
//! (and `a-b/n`); months and days of the week also by name (`JAN`, `MON`; days of the
//! week are 1-7 from Sunday). One of day-of-month and day-of-week must be `?`. Day of
//! month also takes `L` (the last day), `NW` (the weekday nearest day N, within the month)
//! and `LW`; day of week `NL` (the last such day of the month) and `N#k` (the k-th such
//! day). Years 1970-2199.

use std::collections::BTreeSet;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every `period_ms`, counted from when the rule was made or changed.
    Rate {
        period_ms: u64,
    },
    Cron(Box<Cron>),
}

/// A cron expression's fields, each the set of values it allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    days: DayRule,
    months: BTreeSet<u32>,
    years: BTreeSet<u32>,
}

/// How the day of a firing is chosen.
#[derive(Debug, Clone, PartialEq)]
enum DayRule {
    /// Days of the month (1-31) that are allowed.
    OfMonth(BTreeSet<u32>),
    LastOfMonth,
    /// The weekday nearest this day of the month.
    NearestWeekday(u32),
    LastWeekday,
    /// Days of the week (0 = Sunday) that are allowed.
    OfWeek(BTreeSet<u32>),
    /// The last such day of the week in the month.
    LastOfWeek(u32),
    /// The n-th such day of the week in the month.
    NthOfWeek(u32, u32),
}

/// Why an expression is refused (a `ValidationException`'s message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Parameter ScheduleExpression is not valid. {0}")]
pub struct BadSchedule(pub String);

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, BadSchedule> {
        let bad = |why: &str| BadSchedule(why.to_string());
        if let Some(inner) = text.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            let mut parts = inner.split_whitespace();
            let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("A rate is rate(<value> <unit>)."));
            };
            let n: u64 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("A rate's value is a positive whole number."))?;
            let unit_ms = match (unit, n == 1) {
                ("minute", true) | ("minutes", false) => 60_000,
                ("hour", true) | ("hours", false) => 3_600_000,
                ("day", true) | ("days", false) => 86_400_000,
                _ => {
                    return Err(bad(
                        "A rate's unit is minute, hour or day for 1, minutes, hours or days otherwise.",
                    ));
                }
            };
            return Ok(Self::Rate {
                period_ms: n * unit_ms,
            });
        }
        if let Some(inner) = text.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            return Cron::parse(inner).map(|c| Self::Cron(Box::new(c)));
        }
        Err(bad("It is rate(...) or cron(...)."))
    }

    /// What counts as the last firing when it fires at `now_ms`: for a rate, the latest
    /// period boundary not after it (so the rate keeps its phase); for cron, `now_ms`.
    pub fn settled(&self, now_ms: u64, origin_ms: u64) -> u64 {
        match self {
            Self::Rate { period_ms } => {
                origin_ms + now_ms.saturating_sub(origin_ms) / period_ms * period_ms
            }
            Self::Cron(_) => now_ms,
        }
    }

    /// The first firing strictly after `after_ms` (for a rate, counted from `origin_ms`).
    pub fn next_after(&self, after_ms: u64, origin_ms: u64) -> Option<u64> {
        match self {
            Self::Rate { period_ms } => {
                let since = after_ms.saturating_sub(origin_ms);
                Some(origin_ms + (since / period_ms + 1) * period_ms)
            }
            Self::Cron(cron) => cron.next_after(after_ms),
        }
    }
}

fn number(text: &str, names: &[&str], base: u32) -> Option<u32> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Some(i as u32 + base);
    }
    text.parse().ok()
}

/// The values a plain field allows within `lo..=hi`.
fn field(
    text: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    base: u32,
) -> Result<BTreeSet<u32>, BadSchedule> {
    let bad = || {
        BadSchedule(format!(
            "The cron field '{text}' is not valid (values {lo}-{hi})."
        ))
    };
    let mut out = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(bad)?),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                number(a, names, base).ok_or_else(bad)?,
                number(b, names, base).ok_or_else(bad)?,
            )
        } else {
            let a = number(range, names, base).ok_or_else(bad)?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(bad());
        }
        out.extend((a..=b).step_by(step as usize));
    }
    Ok(out)
}

impl Cron {
    fn parse(inner: &str) -> Result<Self, BadSchedule> {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = fields.as_slice() else {
            return Err(BadSchedule(
                "A cron expression has six fields: minutes hours day-of-month month day-of-week year.".into(),
            ));
        };
        if (*dom == "?") == (*dow == "?") {
            return Err(BadSchedule(
                "Exactly one of day-of-month and day-of-week must be '?'.".into(),
            ));
        }
        let days = if *dom == "?" {
            Self::day_of_week(dow)?
        } else {
            Self::day_of_month(dom)?
        };
        Ok(Self {
            minutes: field(minutes, 0, 59, &[], 0)?,
            hours: field(hours, 0, 23, &[], 0)?,
            days,
            months: field(month, 1, 12, &MONTHS, 1)?,
            years: field(year, 1970, 2199, &[], 0)?,
        })
    }

    fn day_of_month(text: &str) -> Result<DayRule, BadSchedule> {
        match text {
            "L" => return Ok(DayRule::LastOfMonth),
            "LW" => return Ok(DayRule::LastWeekday),
            _ => {}
        }
        if let Some(n) = text.strip_suffix('W') {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| (1..=31).contains(n))
                .ok_or_else(|| BadSchedule(format!("The day-of-month '{text}' is not valid.")))?;
            return Ok(DayRule::NearestWeekday(n));
        }
        field(text, 1, 31, &[], 0).map(DayRule::OfMonth)
    }

    fn day_of_week(text: &str) -> Result<DayRule, BadSchedule> {
        let bad = || BadSchedule(format!("The day-of-week '{text}' is not valid."));
        if let Some((day, nth)) = text.split_once('#') {
            let day = number(day, &DAYS, 1)
                .filter(|d| (1..=7).contains(d))
                .ok_or_else(bad)?;
            let nth: u32 = nth
                .parse()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(bad)?;
            return Ok(DayRule::NthOfWeek(day - 1, nth));
        }
        if let Some(day) = text.strip_suffix('L').filter(|d| !d.is_empty()) {
            let day = number(day, &DAYS, 1)
                .filter(|d| (1..=7).contains(d))
                .ok_or_else(bad)?;
            return Ok(DayRule::LastOfWeek(day - 1));
        }
        let days = field(text, 1, 7, &DAYS, 1)?;
        Ok(DayRule::OfWeek(days.into_iter().map(|d| d - 1).collect()))
    }

    /// Whether `day` of `month` in `year` is one the expression allows.
    fn day_allowed(&self, year: u32, month: u32, day: u32) -> bool {
        let last = days_in_month(year, month);
        let weekday = weekday(year, month, day);
        match &self.days {
            DayRule::OfMonth(days) => days.contains(&day),
            DayRule::LastOfMonth => day == last,
            DayRule::NearestWeekday(n) => {
                let target = (*n).min(last);
                day == nearest_weekday(year, month, target)
            }
            DayRule::LastWeekday => day == nearest_weekday(year, month, last),
            DayRule::OfWeek(days) => days.contains(&weekday),
            DayRule::LastOfWeek(d) => weekday == *d && day + 7 > last,
            DayRule::NthOfWeek(d, n) => weekday == *d && (day - 1) / 7 + 1 == *n,
        }
    }

    /// The first whole minute strictly after `after_ms` the expression allows.
    fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start_minute = after_ms / 60_000 + 1;
        let (mut y, mut mo, mut d, mut h, mut mi) = civil_minute(start_minute);
        // At most a few hundred years of months; each step jumps to the next candidate.
        for _ in 0..200_000 {
            if y > 2199 {
                return None;
            }
            if !self.years.contains(&y) {
                (y, mo, d, h, mi) = (y + 1, 1, 1, 0, 0);
                continue;
            }
            if !self.months.contains(&mo) {
                (mo, d, h, mi) = (mo + 1, 1, 0, 0);
                if mo > 12 {
                    (y, mo) = (y + 1, 1);
                }
                continue;
            }
            if d > days_in_month(y, mo) || !self.day_allowed(y, mo, d) {
                (d, h, mi) = (d + 1, 0, 0);
                if d > days_in_month(y, mo) {
                    (mo, d) = (mo + 1, 1);
                    if mo > 12 {
                        (y, mo) = (y + 1, 1);
                    }
                }
                continue;
            }
            let Some(&hour) = self.hours.range(h..).next() else {
                (d, h, mi) = (d + 1, 0, 0);
                continue;
            };
            if hour != h {
                (h, mi) = (hour, 0);
            }
            let Some(&minute) = self.minutes.range(mi..).next() else {
                (h, mi) = (h + 1, 0);
                if h > 23 {
                    (d, h) = (d + 1, 0);
                }
                continue;
            };
            return Some(epoch_minute(y, mo, d, h, minute) * 60_000);
        }
        None
    }
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: u32, m: u32, d: u32) -> i64 {
    let y = i64::from(if m <= 2 { y - 1 } else { y });
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// 0 = Sunday.
fn weekday(y: u32, m: u32, d: u32) -> u32 {
    (days_from_civil(y, m, d) + 4).rem_euclid(7) as u32
}

/// The weekday (Monday to Friday) nearest `day`, not leaving the month.
fn nearest_weekday(y: u32, m: u32, day: u32) -> u32 {
    let last = days_in_month(y, m);
    match weekday(y, m, day) {
        6 if day == 1 => 3,
        6 => day - 1,
        0 if day == last => day - 2,
        0 => day + 1,
        _ => day,
    }
}

fn epoch_minute(y: u32, m: u32, d: u32, h: u32, mi: u32) -> u64 {
    (days_from_civil(y, m, d) as u64) * 1440 + u64::from(h) * 60 + u64::from(mi)
}

fn civil_minute(minute: u64) -> (u32, u32, u32, u32, u32) {
    let (y, mo, d, h, mi, _, _) = crate::timefmt::civil(minute * 60_000);
    (y as u32, mo, d, h, mi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> u64 {
        crate::timefmt::parse_iso(text).unwrap()
    }

    fn iso(ms: u64) -> String {
        crate::timefmt::iso_timestamp(ms)
    }

    fn next(expr: &str, after: &str) -> String {
        iso(Schedule::parse(expr)
            .unwrap()
            .next_after(at(after), 0)
            .unwrap())
    }

    #[test]
    fn rates_fire_every_period_from_their_origin() {
        let s = Schedule::parse("rate(5 minutes)").unwrap();
        assert_eq!(s, Schedule::Rate { period_ms: 300_000 });
        assert_eq!(s.next_after(1_000, 0), Some(300_000));
        assert_eq!(s.next_after(300_000, 0), Some(600_000));
        assert_eq!(s.next_after(10, 7), Some(300_007));
        assert!(Schedule::parse("rate(1 minutes)").is_err());
        assert!(Schedule::parse("rate(2 minute)").is_err());
        assert!(Schedule::parse("rate(0 hours)").is_err());
        assert!(Schedule::parse("rate(1 week)").is_err());
        assert!(Schedule::parse("every minute").is_err());
    }

    #[test]
    fn cron_expressions_fire_as_eventbridge_documents() {
        // 10:15 every day.
        assert_eq!(
            next("cron(15 10 * * ? *)", "2024-03-01T10:15:00Z"),
            "2024-03-02T10:15:00.000Z"
        );
        assert_eq!(
            next("cron(15 10 * * ? *)", "2024-03-01T09:00:00Z"),
            "2024-03-01T10:15:00.000Z"
        );
        // Every 5 minutes on weekdays 8-17.
        assert_eq!(
            next("cron(0/5 8-17 ? * MON-FRI *)", "2024-03-01T17:58:00Z"),
            "2024-03-04T08:00:00.000Z"
        );
        // The last day of the month.
        assert_eq!(
            next("cron(0 0 L * ? *)", "2024-02-10T00:00:00Z"),
            "2024-02-29T00:00:00.000Z"
        );
        // The first Monday of the month.
        assert_eq!(
            next("cron(0 9 ? * 2#1 *)", "2024-03-05T00:00:00Z"),
            "2024-04-01T09:00:00.000Z"
        );
        // The last Friday.
        assert_eq!(
            next("cron(0 18 ? * 6L *)", "2024-03-01T00:00:00Z"),
            "2024-03-29T18:00:00.000Z"
        );
        // The weekday nearest the 1st (2024-06-01 is a Saturday: Monday the 3rd).
        assert_eq!(
            next("cron(0 12 1W * ? *)", "2024-05-31T00:00:00Z"),
            "2024-06-03T12:00:00.000Z"
        );
        // Lists, names and a year.
        assert_eq!(
            next("cron(0 0 1 JAN,JUL ? 2025)", "2024-03-01T00:00:00Z"),
            "2025-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Schedule::parse("cron(0 0 1 1 ? 1999)")
                .unwrap()
                .next_after(at("2024-01-01T00:00:00Z"), 0),
            None
        );
        for bad in [
            "cron(* * * * *)",
            "cron(0 0 * * * *)",
            "cron(0 0 ? * ? *)",
            "cron(60 0 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 0 32 * ? *)",
            "cron(0 0 ? * 8 *)",
            "cron(0 0 ? * 2#6 *)",
            "cron(0 0 * 13 ? *)",
            "cron(0/0 0 * * ? *)",
            "cron(5-1 0 * * ? *)",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
