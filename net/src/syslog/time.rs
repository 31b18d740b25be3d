//! Calendar arithmetic for syslog timestamps: civil dates to UTC nanoseconds
//! and back, range checks, and the RFC 3164 year inference.
//!
//! Everything here is pure integer arithmetic on the proleptic Gregorian
//! calendar (Howard Hinnant's `days_from_civil`), with no clock and no
//! allocation; the receive time arrives through `ParseContext`.

/// Nanoseconds in one second.
pub const NS_PER_S: i64 = 1_000_000_000;

/// Seconds in one day.
const S_PER_DAY: i64 = 86_400;

/// A broken-down wall-clock time as written on the wire, before the offset
/// is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WallTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

pub(crate) fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` (1-12) of `year`; 0 for a month out of range so that any
/// day fails the range check.
pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a valid civil date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    debug_assert!((1..=12).contains(&month) && (1..=31).contains(&day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl WallTime {
    /// Whether every component is in range. Leap seconds (`:60`) are refused:
    /// RFC 5424 forbids them and 3164 senders do not produce them. The
    /// definition [`WallTime::to_unix_ns`]'s checks (its time part, and
    /// [`days_of`] for the date) are tested against.
    #[cfg(test)]
    pub(crate) fn is_valid(&self) -> bool {
        (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
            && i64::from(self.nanos) < NS_PER_S
    }

    /// UTC nanoseconds since the epoch for this wall time at `offset_s` east
    /// of UTC, or `None` when invalid or outside the i64 range (years before
    /// 1677 or after 2262).
    pub(crate) fn to_unix_ns(self, offset_s: i64) -> Option<i64> {
        if !(self.hour < 24
            && self.minute < 60
            && self.second < 60
            && i64::from(self.nanos) < NS_PER_S)
        {
            return None;
        }
        let days = days_of(self.year, self.month, self.day)?;
        let secs = days
            .checked_mul(S_PER_DAY)?
            .checked_add(i64::from(self.hour * 3600 + self.minute * 60 + self.second))?
            .checked_sub(offset_s)?;
        secs.checked_mul(NS_PER_S)?
            .checked_add(i64::from(self.nanos))
    }
}

/// Days since 1970-01-01 of the civil date, or `None` when it does not
/// exist ([`WallTime::is_valid`]'s date part). The last valid date asked
/// about and its day count are kept per thread: nearly every line of a
/// stream carries the same date as the line before, and the range checks
/// and the calendar arithmetic were ~80 instructions of every line's
/// timestamp.
fn days_of(year: i64, month: u32, day: u32) -> Option<i64> {
    use std::cell::Cell;
    thread_local! {
        // Month 0 never matches a date asked about that exists.
        static LAST_DATE: Cell<(i64, u32, u32, i64)> = const { Cell::new((0, 0, 0, 0)) };
    }
    LAST_DATE.with(|last| {
        let (last_year, last_month, last_day, days) = last.get();
        if (last_year, last_month, last_day) == (year, month, day) && last_month != 0 {
            return Some(days);
        }
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        last.set((year, month, day, days));
        Some(days)
    })
}

/// The year of the wall clock at `offset_s` east of UTC at instant `now_ns`.
/// The last day asked about and its year are kept per thread: lines
/// arrive with receive times of the same day, one after another.
fn year_at(now_ns: i64, offset_s: i64) -> i64 {
    use std::cell::Cell;
    thread_local! {
        static LAST_DAY: Cell<(i64, i64)> = const { Cell::new((i64::MIN, 0)) };
    }
    let local_s = now_ns.div_euclid(NS_PER_S).saturating_add(offset_s);
    let day = local_s.div_euclid(S_PER_DAY);
    LAST_DAY.with(|last| {
        let (last_day, year) = last.get();
        if last_day == day {
            return year;
        }
        let year = civil_from_days(day).0;
        last.set((day, year));
        year
    })
}

/// How far after the receive time a year-less timestamp may land before the
/// previous year is taken instead: senders' clocks run ahead a little, but
/// log lines do not come from the future.
pub const YEAR_INFERENCE_FUTURE_S_MAX: i64 = 7 * S_PER_DAY;

/// Resolves a year-less RFC 3164 timestamp: of the next, current and
/// previous year (of the receive time at `offset_s`), the most recent one
/// that does not put the timestamp more than
/// [`YEAR_INFERENCE_FUTURE_S_MAX`] after `now_ns` wins.
///
/// This is "closest to now" with the future discounted: a `Dec 31` line
/// received on Jan 1 lands in the previous year, a `Jan 1` line from a sender
/// whose clock runs a minute ahead of ours on Dec 31 lands in the next
/// year, and a `Mar 1` line received in November stays in the current year
/// (pure closeness would move it into next March). Years in which the date
/// does not exist (Feb 29) are skipped; `None` when none of the three fit.
pub(crate) fn infer_year_ns(mut wall: WallTime, offset_s: i64, now_ns: i64) -> Option<i64> {
    let year_now = year_at(now_ns, offset_s);
    let latest_ns = now_ns.saturating_add(YEAR_INFERENCE_FUTURE_S_MAX * NS_PER_S);
    // The usual case in one conversion: the date in the current year is
    // not in the future, and the next year's is more than a (short) year
    // later, so past `latest_ns` too.
    wall.year = year_now;
    if let Some(ns) = wall.to_unix_ns(offset_s) {
        if ns <= latest_ns && ns.saturating_add(365 * S_PER_DAY * NS_PER_S) > latest_ns {
            return Some(ns);
        }
    }
    for year in [year_now + 1, year_now, year_now - 1] {
        wall.year = year;
        match wall.to_unix_ns(offset_s) {
            Some(ns) if ns <= latest_ns => return Some(ns),
            _ => {}
        }
    }
    None
}

/// Appends `ns` as RFC 3339 UTC (`2026-11-27T12:00:00.123Z`); the fraction is
/// printed in groups of three digits and only as long as needed.
pub fn write_rfc3339(ns: i64, out: &mut String) {
    use std::fmt::Write;
    let secs = ns.div_euclid(NS_PER_S);
    let nanos = ns.rem_euclid(NS_PER_S);
    let (year, month, day) = civil_from_days(secs.div_euclid(S_PER_DAY));
    let sod = secs.rem_euclid(S_PER_DAY);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if nanos != 0 {
        if nanos % 1_000_000 == 0 {
            let _ = write!(out, ".{:03}", nanos / 1_000_000);
        } else if nanos % 1_000 == 0 {
            let _ = write!(out, ".{:06}", nanos / 1_000);
        } else {
            let _ = write!(out, ".{nanos:09}");
        }
    }
    out.push('Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(year: i64, month: u32, day: u32, hour: u32) -> WallTime {
        WallTime {
            year,
            month,
            day,
            hour,
            minute: 0,
            second: 0,
            nanos: 0,
        }
    }

    fn ns(year: i64, month: u32, day: u32, hour: u32) -> i64 {
        wall(year, month, day, hour).to_unix_ns(0).unwrap()
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(ns(2026, 11, 27, 12), 1_795_780_800 * NS_PER_S);
    }

    #[test]
    fn year_inference_picks_closest_year() {
        let now = ns(2026, 11, 27, 12);
        // Earlier this year, and a few days ahead, stay in 2026; more than
        // a week ahead is last year's.
        assert_eq!(
            infer_year_ns(wall(0, 3, 1, 0), 0, now),
            Some(ns(2026, 3, 1, 0))
        );
        assert_eq!(
            infer_year_ns(wall(0, 12, 2, 0), 0, now),
            Some(ns(2026, 12, 2, 0))
        );
        assert_eq!(
            infer_year_ns(wall(0, 12, 10, 0), 0, now),
            Some(ns(2025, 12, 10, 0))
        );
        // A December line received in early January belongs to last year.
        let jan = ns(2027, 1, 1, 0) + 30 * NS_PER_S;
        assert_eq!(
            infer_year_ns(wall(0, 12, 31, 23), 0, jan),
            Some(ns(2026, 12, 31, 23))
        );
        // A sender slightly ahead across New Year: January line received on Dec 31.
        let dec = ns(2026, 12, 31, 23);
        assert_eq!(
            infer_year_ns(wall(0, 1, 1, 0), 0, dec),
            Some(ns(2027, 1, 1, 0))
        );
        // Feb 29 takes the most recent leap year within one year, or nothing.
        let mar_2028 = ns(2028, 3, 15, 0);
        assert_eq!(
            infer_year_ns(wall(0, 2, 29, 0), 0, mar_2028),
            Some(ns(2028, 2, 29, 0))
        );
        let jan_2029 = ns(2029, 1, 15, 0);
        assert_eq!(
            infer_year_ns(wall(0, 2, 29, 0), 0, jan_2029),
            Some(ns(2028, 2, 29, 0))
        );
        assert_eq!(infer_year_ns(wall(0, 2, 29, 0), 0, now), None);
        // The offset shifts the result but not the chosen year.
        assert_eq!(
            infer_year_ns(wall(0, 3, 1, 0), 3600, now),
            Some(ns(2026, 3, 1, 0) - 3600 * NS_PER_S)
        );
    }

    /// The definition the fast path must agree with: of the next, current
    /// and previous year, the most recent not past the future bound.
    fn infer_year_by_definition(mut wall: WallTime, offset_s: i64, now_ns: i64) -> Option<i64> {
        let year_now = year_at(now_ns, offset_s);
        let latest_ns = now_ns + YEAR_INFERENCE_FUTURE_S_MAX * NS_PER_S;
        [year_now + 1, year_now, year_now - 1]
            .into_iter()
            .find_map(|year| {
                wall.year = year;
                wall.to_unix_ns(offset_s).filter(|&ns| ns <= latest_ns)
            })
    }

    #[test]
    fn year_inference_fast_path_agrees_with_the_definition() {
        // Receive times every 5 h 17 min over 2027-2029 (a leap year in
        // the middle), each month's first, 28th, 29th and last day at two
        // hours, and offsets on both sides of UTC.
        let start = ns(2027, 1, 1, 0);
        let end = ns(2029, 12, 31, 23);
        let mut checked = 0;
        for now in (start..end).step_by((5 * 3600 + 17 * 60) as usize * NS_PER_S as usize) {
            for month in 1..=12 {
                for day in [1, 28, 29, 30, 31] {
                    for hour in [0, 23] {
                        for offset_s in [-8 * 3600, 0, 9 * 3600 + 1800] {
                            let w = wall(0, month, day, hour);
                            assert_eq!(
                                infer_year_ns(w, offset_s, now),
                                infer_year_by_definition(w, offset_s, now),
                                "{w:?} offset {offset_s} now {now}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 1_000_000);
    }

    #[test]
    fn remembered_year_is_the_year_of_each_day_asked() {
        // Back and forth across New Year and across offsets: the kept day
        // must never answer for another day.
        let new_year = ns(2027, 1, 1, 0);
        for step in [-1i64, 1, -3_600, 3_600, -86_399, 86_401] {
            for offset_s in [-12 * 3600, 0, 14 * 3600] {
                for k in -5..5 {
                    let now = new_year + (k * step).abs() * NS_PER_S * step.signum();
                    let local_s = now.div_euclid(NS_PER_S) + offset_s;
                    let want = civil_from_days(local_s.div_euclid(S_PER_DAY)).0;
                    assert_eq!(year_at(now, offset_s), want, "{now} {offset_s}");
                }
            }
        }
    }

    #[test]
    fn validity_checks() {
        assert!(!wall(2026, 2, 29, 0).is_valid());
        assert!(wall(2024, 2, 29, 0).is_valid());
        assert!(!wall(2026, 13, 1, 0).is_valid());
        assert!(!wall(2026, 4, 31, 0).is_valid());
        assert!(!wall(2026, 4, 1, 24).is_valid());
        assert_eq!(wall(1000, 1, 1, 0).to_unix_ns(0), None);
    }

    /// The remembered date never answers for another: dates asked in an
    /// order that alternates, repeats and mixes valid with invalid ones
    /// convert as the arithmetic does, and refuse exactly what
    /// `is_valid` refuses.
    #[test]
    fn remembered_date_answers_only_for_itself() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let mut previous = wall(2026, 11, 27, 12);
        for i in 0..200_000 {
            let w = match i % 4 {
                // The same date again, another time of day.
                0 => WallTime {
                    hour: next(25) as u32,
                    second: next(61) as u32,
                    ..previous
                },
                _ => WallTime {
                    year: [0, 1, 1970, 2024, 2025, 2026, 2100][next(7) as usize],
                    month: next(14) as u32,
                    day: next(33) as u32,
                    hour: next(25) as u32,
                    minute: next(61) as u32,
                    second: next(61) as u32,
                    nanos: [0, 999_999_999, 1_000_000_000][next(3) as usize],
                },
            };
            let want = w.is_valid().then(|| {
                let days = days_from_civil(w.year, w.month, w.day);
                let secs =
                    days * S_PER_DAY + i64::from(w.hour * 3600 + w.minute * 60 + w.second) - 3600;
                secs.checked_mul(NS_PER_S)
                    .and_then(|ns| ns.checked_add(i64::from(w.nanos)))
            });
            assert_eq!(w.to_unix_ns(3600), want.flatten(), "{w:?}");
            previous = w;
        }
        // Year 0, month 0, day 0 is not the empty memory's day 0 (a new
        // thread starts with it).
        let first = std::thread::spawn(|| wall(0, 0, 0, 0).to_unix_ns(0));
        assert_eq!(first.join().ok(), Some(None));
    }

    #[test]
    fn rfc3339_rendering() {
        let mut s = String::new();
        write_rfc3339(ns(2026, 11, 27, 12) + 123_000_000, &mut s);
        assert_eq!(s, "2026-11-27T12:00:00.123Z");
        s.clear();
        write_rfc3339(-1, &mut s);
        assert_eq!(s, "1969-12-31T23:59:59.999999999Z");
    }
}
