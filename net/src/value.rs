//! Typed views of field values, computed only when someone asks.
//!
//! # What this module owns
//!
//! Fields are raw bytes (`&[u8]`); decoders never convert them. This module
//! answers "what type does this value look like" ([`infer`]) and "what is it
//! as a number, an address or a time" ([`as_i64`], [`as_f64`], [`as_bool`],
//! [`as_ip`], [`as_timestamp_ns`]) for the callers that need a type: the
//! engine's schema registry and numeric rule comparisons. It must not
//! allocate, read a clock or guess a timezone other than UTC.
//!
//! # Inference order
//!
//! [`infer`] tries, in order: `Bool` (`true`/`false`, any case), `Int`
//! (optional `-`, 1 to 19 digits, fits `i64`), `Float` (JSON number shape,
//! finite), `Ip` (IPv4 or IPv6 text), `Timestamp` (RFC 3339, `T` or a space
//! between date and time), else `String`. An epoch number infers as `Int`:
//! only the caller knows that a field holds a time, and then
//! [`as_timestamp_ns`] reads it.

use std::net::IpAddr;

use crate::syslog::{parse_rfc3339, time::NS_PER_S};

/// The type a value looks like; see the module docs for the order tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    Int,
    Float,
    Bool,
    Ip,
    Timestamp,
    String,
}

impl ValueType {
    /// Stable lower-case name for schemas and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Ip => "ip",
            ValueType::Timestamp => "timestamp",
            ValueType::String => "string",
        }
    }
}

/// Longest value worth trying as a number, address or time; longer values
/// are strings without looking further, and every `as_*` refuses them.
pub const TYPED_BYTES_MAX: usize = 64;

/// Infers the type a value looks like.
pub fn infer(value: &[u8]) -> ValueType {
    if value.is_empty() || value.len() > TYPED_BYTES_MAX {
        return ValueType::String;
    }
    if as_bool(value).is_some() {
        ValueType::Bool
    } else if as_i64(value).is_some() {
        ValueType::Int
    } else if as_f64(value).is_some() {
        ValueType::Float
    } else if as_ip(value).is_some() {
        ValueType::Ip
    } else if rfc3339_ns(value).is_some() {
        ValueType::Timestamp
    } else {
        ValueType::String
    }
}

/// `true` or `false` in any case; `0`/`1` are integers, not booleans.
pub fn as_bool(value: &[u8]) -> Option<bool> {
    if value.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if value.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

/// A decimal integer: optional `-`, then digits only, within `i64`, and at
/// most [`TYPED_BYTES_MAX`] bytes like every typed view.
pub fn as_i64(value: &[u8]) -> Option<i64> {
    if value.len() > TYPED_BYTES_MAX {
        return None;
    }
    let (negative, digits) = match value.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, value),
    };
    if digits.is_empty() {
        return None;
    }
    // Leading zeros do not count towards the 19-digit limit (found by
    // fuzzing: `0000000000000000000849007067` is a valid integer).
    let zeros = digits.iter().take_while(|&&b| b == b'0').count();
    let digits = &digits[zeros.min(digits.len() - 1)..];
    if digits.len() > 19 {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

/// A finite number in JSON's shape: `-?d+(.d+)?([eE][+-]?d+)?`; also a
/// leading or trailing dot (`.5`, `5.`) as some senders write them. Words
/// such as `inf` or `NaN` are refused.
pub fn as_f64(value: &[u8]) -> Option<f64> {
    if value.is_empty() || value.len() > TYPED_BYTES_MAX || !number_shaped(value) {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Checks the number shape described at [`as_f64`].
fn number_shaped(value: &[u8]) -> bool {
    let mut i = usize::from(value.first() == Some(&b'-'));
    let int_digits = value[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if value.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = value[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if matches!(value.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(value.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = value[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == value.len()
}

/// An IPv4 or IPv6 address in standard text form (no zone, no port).
pub fn as_ip(value: &[u8]) -> Option<IpAddr> {
    // 45 bytes is the longest IPv6 text (with an IPv4 tail).
    if value.len() < 2 || value.len() > 45 {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A point in time as UTC nanoseconds since the epoch: RFC 3339 (`T` or a
/// space between date and time; without an offset it is UTC), or an epoch
/// number whose digit count gives the unit: 9-10 digits seconds (with an
/// optional fraction, `1700000000.25`), 13 milliseconds, 16 microseconds,
/// 19 nanoseconds. Other lengths are refused rather than guessed.
pub fn as_timestamp_ns(value: &[u8]) -> Option<i64> {
    if value.is_empty() || value.len() > TYPED_BYTES_MAX {
        return None;
    }
    if let Some(ns) = rfc3339_ns(value) {
        return Some(ns);
    }
    let (int_part, frac_part) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], Some(&value[dot + 1..])),
        None => (value, None),
    };
    if int_part.is_empty() || !int_part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = as_i64(int_part)?;
    match (int_part.len(), frac_part) {
        (9 | 10, None) => n.checked_mul(NS_PER_S),
        (9 | 10, Some(frac)) => {
            if frac.is_empty() || frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let mut nanos = as_i64(frac)?;
            for _ in frac.len()..9 {
                nanos *= 10;
            }
            n.checked_mul(NS_PER_S)?.checked_add(nanos)
        }
        (13, None) => n.checked_mul(1_000_000),
        (16, None) => n.checked_mul(1_000),
        (19, None) => Some(n),
        _ => None,
    }
}

/// RFC 3339 over the whole value, with a space accepted in place of `T`.
fn rfc3339_ns(value: &[u8]) -> Option<i64> {
    if value.len() < 19 || value.len() > 35 {
        return None;
    }
    // A space separator is copied into a small stack buffer as `T` so the
    // one RFC 3339 parser serves both forms.
    let mut buf = [0u8; 35];
    let buf = &mut buf[..value.len()];
    buf.copy_from_slice(value);
    if buf[10] == b' ' {
        buf[10] = b'T';
    }
    match parse_rfc3339(buf, 0, false, 0) {
        Ok((ns, end)) if end == value.len() => Some(ns),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_each_type() {
        let cases: &[(&[u8], ValueType)] = &[
            (b"42", ValueType::Int),
            (b"-7", ValueType::Int),
            (b"9223372036854775807", ValueType::Int),
            (b"9223372036854775808", ValueType::Float),
            (b"1.5", ValueType::Float),
            (b"-2e10", ValueType::Float),
            (b"TRUE", ValueType::Bool),
            (b"false", ValueType::Bool),
            (b"10.0.0.1", ValueType::Ip),
            (b"2001:db8::1", ValueType::Ip),
            (b"2026-11-27T12:00:00Z", ValueType::Timestamp),
            (b"2026-11-27 12:00:00.5+01:00", ValueType::Timestamp),
            (b"", ValueType::String),
            (b"inf", ValueType::String),
            (b"NaN", ValueType::String),
            (b"1.2.3", ValueType::String),
            (b"0x1f", ValueType::String),
            (b"-", ValueType::String),
            (b"\xff\xfe", ValueType::String),
        ];
        for (value, want) in cases {
            assert_eq!(infer(value), *want, "{:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn integers_at_the_edges() {
        assert_eq!(as_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(as_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(as_i64(b"9223372036854775808"), None);
        assert_eq!(as_i64(b"-"), None);
        assert_eq!(as_i64(b"+1"), None);
        assert_eq!(as_i64(b"1 "), None);
        assert_eq!(as_i64(b"00012"), Some(12));
        assert_eq!(as_i64(b"0000000000000000000849007067"), Some(849_007_067));
        assert_eq!(as_i64(b"-000"), Some(0));
    }

    #[test]
    fn floats_need_a_number_shape() {
        assert_eq!(as_f64(b"1.5"), Some(1.5));
        assert_eq!(as_f64(b".5"), Some(0.5));
        assert_eq!(as_f64(b"5."), Some(5.0));
        assert_eq!(as_f64(b"1e3"), Some(1000.0));
        assert_eq!(as_f64(b"1e"), None);
        assert_eq!(as_f64(b"."), None);
        assert_eq!(as_f64(b"1e999"), None);
        assert_eq!(as_f64(b"infinity"), None);
    }

    #[test]
    fn addresses() {
        assert_eq!(as_ip(b"192.0.2.1"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(as_ip(b"::1"), Some("::1".parse().unwrap()));
        assert_eq!(as_ip(b"256.0.0.1"), None);
        assert_eq!(as_ip(b"1.2.3.4:80"), None);
    }

    #[test]
    fn timestamps_in_each_form() {
        let t = 1_795_780_800 * NS_PER_S;
        assert_eq!(as_timestamp_ns(b"2026-11-27T12:00:00Z"), Some(t));
        assert_eq!(as_timestamp_ns(b"2026-11-27 13:00:00+01:00"), Some(t));
        assert_eq!(as_timestamp_ns(b"2026-11-27T12:00:00"), Some(t));
        assert_eq!(as_timestamp_ns(b"1795780800"), Some(t));
        assert_eq!(as_timestamp_ns(b"1795780800.5"), Some(t + 500_000_000));
        assert_eq!(as_timestamp_ns(b"1795780800000"), Some(t));
        assert_eq!(as_timestamp_ns(b"1795780800000000"), Some(t));
        assert_eq!(as_timestamp_ns(b"1795780800000000000"), Some(t));
        assert_eq!(as_timestamp_ns(b"17957808000"), None);
        assert_eq!(as_timestamp_ns(b"1795780800."), None);
        assert_eq!(as_timestamp_ns(b"2026-02-30T00:00:00Z"), None);
        assert_eq!(as_timestamp_ns(b"2026-11-27T12:00:00Zjunk"), None);
    }
}
