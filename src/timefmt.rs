//! Wall-clock helpers: epoch milliseconds and the timestamp formats Lambda's API uses.
//!
//! Owns no state. Formats are computed here (civil-from-days) so the crate needs no
//! date library for the two shapes it prints: `LastModified` (`2024-01-01T00:00:00.000+0000`)
//! and the date prefix of a log stream name (`2024/01/01`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// (year, month, day, hour, minute, second, millisecond) of an epoch-milliseconds instant, in UTC.
pub(crate) fn civil(ms: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = (ms / 1000) as i64;
    let millis = (ms % 1000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        millis,
    )
}

/// `2024-01-01T00:00:00.000+0000`, the shape of `FunctionConfiguration.LastModified`.
pub fn lambda_timestamp(ms: u64) -> String {
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}+0000")
}

/// `2024-01-01T00:00:00.000Z`, the ISO-8601 shape used in log lines.
pub fn iso_timestamp(ms: u64) -> String {
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `2024/01/01`, the date prefix of a Lambda log stream name.
pub fn stream_date(ms: u64) -> String {
    let (y, mo, d, ..) = civil(ms);
    format!("{y:04}/{mo:02}/{d:02}")
}

/// `07/Sep/2021:22:50:22 +0000`: the request time of an HTTP event (`requestContext.time`).
pub fn clf_timestamp(ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = civil(ms);
    let month = MONTHS[(mo as usize).clamp(1, 12) - 1];
    format!("{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000")
}

/// `20240101T000000Z`: the `X-Amz-Date` shape.
pub fn amz_date(epoch_secs: u64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(epoch_secs * 1000);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Epoch seconds of an `X-Amz-Date` value, if it is well formed.
pub fn parse_amz_date(value: &str) -> Option<u64> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| value.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + s).ok()
}

/// Epoch milliseconds of an ISO-8601 UTC time (`2024-01-01T00:00:00Z`, fractions of a
/// second and `+00:00` taken), if it is well formed.
pub fn parse_iso(value: &str) -> Option<u64> {
    let b = value.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let compact = format!(
        "{}{}{}T{}{}{}Z",
        &value[0..4],
        &value[5..7],
        &value[8..10],
        &value[11..13],
        &value[14..16],
        &value[17..19]
    );
    let seconds = parse_amz_date(&compact)?;
    let mut rest = &value[19..];
    let mut millis = 0u64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits: String = fraction.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return None;
        }
        millis = format!("{digits:0<3}")[..3].parse().ok()?;
        rest = &fraction[digits.len()..];
    }
    matches!(rest, "Z" | "" | "+00:00" | "+0000").then_some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_parse() {
        assert_eq!(parse_iso("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(
            parse_iso("2024-02-29T12:34:56.789Z"),
            Some(1_709_210_096_789)
        );
        assert_eq!(
            parse_iso("2024-02-29T12:34:56.7+00:00"),
            Some(1_709_210_096_700)
        );
        assert_eq!(parse_iso("2024-02-29 12:34:56Z"), None);
        assert_eq!(parse_iso("2024-02-29T12:34:56+02:00"), None);
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(lambda_timestamp(0), "1970-01-01T00:00:00.000+0000");
        // 2024-02-29T12:34:56.789Z, a leap day.
        assert_eq!(
            lambda_timestamp(1_709_210_096_789),
            "2024-02-29T12:34:56.789+0000"
        );
        assert_eq!(iso_timestamp(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
        assert_eq!(
            clf_timestamp(1_631_055_022_677),
            "07/Sep/2021:22:50:22 +0000"
        );
        assert_eq!(stream_date(1_709_210_096_789), "2024/02/29");
        assert_eq!(amz_date(1_709_210_096), "20240229T123456Z");
        assert_eq!(parse_amz_date("20240229T123456Z"), Some(1_709_210_096));
        assert_eq!(parse_amz_date("2024-02-29"), None);
    }
}
