//! Civil-time conversions and the two syslog timestamp forms the corpus uses.
//!
//! The harness formats and parses its own timestamps instead of pulling in a
//! date crate: it only ever needs UTC, RFC 3339 with microseconds and the
//! RFC 3164 `Mmm dd hh:mm:ss` form, and the dependency tree stays small.
//! Every function here is pure; the clock is read only in [`crate::clock`].

/// Nanoseconds in one second.
pub const NS_PER_S: i64 = 1_000_000_000;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`), valid for every year an `i64` of days can hold.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Broken-down UTC time of a nanosecond timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

impl Civil {
    /// Splits a UTC nanosecond timestamp into calendar parts.
    pub fn from_ns(ns: i64) -> Civil {
        let secs = ns.div_euclid(NS_PER_S);
        let nanos = ns.rem_euclid(NS_PER_S) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: (sod / 60 % 60) as u32,
            second: (sod % 60) as u32,
            nanos,
        }
    }

    /// The UTC nanosecond timestamp of these parts.
    pub fn to_ns(self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        secs.saturating_mul(NS_PER_S)
            .saturating_add(i64::from(self.nanos))
    }
}

/// RFC 3339 in UTC with microseconds, the form RFC 5424 headers carry:
/// `2026-11-27T04:55:03.123456Z`.
pub fn rfc3339_us(ns: i64) -> String {
    let c = Civil::from_ns(ns);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.nanos / 1000
    )
}

/// RFC 3164 timestamp in UTC, day padded with a space: `Nov  7 04:55:03`.
/// It has no year and whole seconds only, as real BSD syslog lines do.
pub fn rfc3164(ns: i64) -> String {
    let c = Civil::from_ns(ns);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(c.month - 1) as usize],
        c.day,
        c.hour,
        c.minute,
        c.second
    )
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 9 {
        return None;
    }
    let mut value = 0u32;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    Some(value)
}

fn valid(c: &Civil) -> bool {
    (1..=12).contains(&c.month)
        && (1..=31).contains(&c.day)
        && c.hour < 24
        && c.minute < 60
        && c.second < 61
}

/// Parses an RFC 3339 timestamp (`Z` or `±hh:mm`, optional fraction of up
/// to nine digits) into UTC nanoseconds. Returns None for anything else.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let mut c = Civil {
        year: i64::from(digits(&b[0..4])?),
        month: digits(&b[5..7])?,
        day: digits(&b[8..10])?,
        hour: digits(&b[11..13])?,
        minute: digits(&b[14..16])?,
        second: digits(&b[17..19])?,
        nanos: 0,
    };
    let mut pos = 19;
    if b.get(pos) == Some(&b'.') {
        let start = pos + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let frac = &b[start..end];
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        let mut nanos = digits(frac)?;
        for _ in frac.len()..9 {
            nanos *= 10;
        }
        c.nanos = nanos;
        pos = end;
    }
    if !valid(&c) {
        return None;
    }
    let offset_s: i64 = match b.get(pos..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = i64::from(digits(&[*h1, *h2])?);
            let minutes = i64::from(digits(&[*m1, *m2])?);
            let total = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    Some(c.to_ns() - offset_s * NS_PER_S)
}

/// Parses a 15-byte RFC 3164 timestamp (`Mmm dd hh:mm:ss`, UTC) in the
/// given year. The year is not in the text, so the caller supplies it.
pub fn parse_rfc3164(text: &str, year: i64) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 15 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let month = MONTHS.iter().position(|m| m.as_bytes() == &b[0..3])? as u32 + 1;
    let day_text = if b[4] == b' ' { &b[5..6] } else { &b[4..6] };
    let c = Civil {
        year,
        month,
        day: digits(day_text)?,
        hour: digits(&b[7..9])?,
        minute: digits(&b[10..12])?,
        second: digits(&b[13..15])?,
        nanos: 0,
    };
    if !valid(&c) {
        return None;
    }
    Some(c.to_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips_across_eras_and_leap_days() {
        for days in [-800_000i64, -1, 0, 1, 11_016, 20_419, 20_782, 1_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(
            days_from_civil(2024, 2, 29) + 1,
            days_from_civil(2024, 3, 1)
        );
    }

    #[test]
    fn formats_and_parses_both_forms() {
        let ns = parse_rfc3339("2026-11-07T04:55:03.123456Z").unwrap();
        assert_eq!(rfc3339_us(ns), "2026-11-07T04:55:03.123456Z");
        assert_eq!(rfc3164(ns), "Nov  7 04:55:03");
        assert_eq!(
            parse_rfc3164("Nov  7 04:55:03", 2026).unwrap(),
            ns - 123_456_000
        );
        assert_eq!(
            parse_rfc3339("2026-11-07T05:55:03.123456+01:00").unwrap(),
            ns
        );
    }

    #[test]
    fn rejects_malformed_timestamps_without_panicking() {
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-07T04:55:03",
            "x".repeat(40).as_str(),
            "2026-11-07T04:55:03.Z",
            "2026-11-07T04:55:03.1234567890Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for bad in [
            "",
            "Foo  7 04:55:03",
            "Nov 77 04:55:03",
            "Nov  7 24:55:03",
            "Nov  7 04:55:0",
        ] {
            assert_eq!(parse_rfc3164(bad, 2026), None, "{bad}");
        }
    }
}
