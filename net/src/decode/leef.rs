//! IBM QRadar Log Event Extended Format (LEEF) 1.0 and 2.0 payloads.
//!
//! # What this module owns
//!
//! * LEEF 1.0: `LEEF:1.0|Vendor|Product|Version|EventID|` followed by
//!   tab-separated `key=value` attributes.
//! * LEEF 2.0: `LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|` where
//!   the delimiter is one character, or its hex code as `x09`, `0x09` or
//!   `\x09`; empty means tab.
//!
//! The header becomes `leef.version`, `leef.vendor`, `leef.product`,
//! `leef.product_version` and `leef.event_id`. Attributes are split on the
//! delimiter; a key runs to the first `=` and the value is the rest of the
//! piece, as written (LEEF defines no escapes). Pieces without `=` or with
//! a key that is not [`super::is_key_byte`]s are skipped; repeated keys:
//! the first wins. Some LEEF 1.0 senders separate attributes with spaces
//! instead of tabs: when the attributes hold no tab at all they are read
//! like a CEF extension (a value runs until the next ` key=`). A header
//! with too few `|` or an unreadable delimiter is
//! [`DecodeIssue::LeefBadHeader`] and nothing is pushed.
//!
//! It must not allocate or interpret values.

use memchr::memchr;

use super::{cef, is_key_byte, Arena, DecodeIssue, SeenKeys, Source, KEY_BYTES_MAX};
use crate::fields::Fields;

pub(crate) const HEADER_NAMES: [&str; 5] = [
    "leef.version",
    "leef.vendor",
    "leef.product",
    "leef.product_version",
    "leef.event_id",
];

/// Decodes `text`, which starts with `LEEF:`. On `Err` nothing was pushed.
pub fn decode<'a>(
    text: &'a [u8],
    arena: &mut Arena<'a>,
    fields: &mut Fields<'a>,
) -> Result<Source<'a>, DecodeIssue> {
    debug_assert!(text.starts_with(b"LEEF:"));
    let bad = DecodeIssue::LeefBadHeader;
    let mut header: [&'a [u8]; 5] = [b""; 5];
    let mut at = 5;
    for slot in &mut header {
        let len = memchr(b'|', &text[at..]).ok_or(bad)?;
        *slot = &text[at..at + len];
        at += len + 1;
    }
    let delimiter = if header[0].starts_with(b"2") {
        let len = memchr(b'|', &text[at..]).ok_or(bad)?;
        let spec = &text[at..at + len];
        at += len + 1;
        delimiter(spec).ok_or(bad)?
    } else {
        b'\t'
    };
    let attributes = &text[at..];
    let start = fields.len();
    for (name, value) in HEADER_NAMES.iter().zip(header) {
        fields.push(name, value);
    }
    if delimiter == b'\t' && memchr(b'\t', attributes).is_none() {
        cef::pairs(attributes, arena, fields, start);
    } else {
        let mut seen = SeenKeys::new(start);
        for piece in attributes.split(|&b| b == delimiter) {
            push_attribute(piece, fields, &mut seen);
        }
    }
    Ok(Source {
        vendor: header[1],
        product: header[2],
    })
}

/// Reads the LEEF 2.0 delimiter field.
fn delimiter(spec: &[u8]) -> Option<u8> {
    match spec {
        [] => Some(b'\t'),
        [b] => Some(*b),
        _ => {
            let hex = spec
                .strip_prefix(b"0x")
                .or_else(|| spec.strip_prefix(b"\\x"))
                .or_else(|| spec.strip_prefix(b"x"))?;
            if hex.is_empty() || hex.len() > 2 {
                return None;
            }
            let text = std::str::from_utf8(hex).ok()?;
            u8::from_str_radix(text, 16).ok()
        }
    }
}

fn push_attribute<'a>(piece: &'a [u8], fields: &mut Fields<'a>, seen: &mut SeenKeys) {
    let Some(eq) = memchr(b'=', piece) else {
        return;
    };
    let key = &piece[..eq];
    if key.is_empty() || key.len() > KEY_BYTES_MAX || !key.iter().all(|&b| is_key_byte(b)) {
        return;
    }
    let Some(key) = super::key_text(key) else {
        return;
    };
    if fields.is_full() {
        fields.count_overflow();
    } else if !seen.seen(fields, key) {
        fields.push(key, &piece[eq + 1..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<Vec<(String, String)>, DecodeIssue> {
        let mut buffer = [0u8; 4096];
        let mut arena = Arena::over(&mut buffer);
        let mut fields = Fields::new();
        decode(text.as_bytes(), &mut arena, &mut fields)?;
        Ok(fields
            .as_slice()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect())
    }

    fn attrs(f: &[(String, String)]) -> Vec<(&str, &str)> {
        f[5..]
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn leef1_tabs() {
        let f = run("LEEF:1.0|Microsoft|MSExchange|4.0 SP1|15345|src=192.0.2.0\tdst=172.50.123.1\tsev=5\tmsg=a b=c\tsrc=dup").unwrap();
        assert_eq!(f[2].1, "MSExchange");
        assert_eq!(
            attrs(&f),
            vec![
                ("src", "192.0.2.0"),
                ("dst", "172.50.123.1"),
                ("sev", "5"),
                ("msg", "a b=c"),
            ]
        );
    }

    #[test]
    fn leef2_delimiters() {
        for spec in ["^", "x5E", "0x5e", "\\x5E"] {
            let f = run(&format!(
                "LEEF:2.0|Lancope|StealthWatch|1.0|41|{spec}|src=1.2.3.4^dst=5.6.7.8"
            ))
            .unwrap();
            assert_eq!(
                attrs(&f),
                vec![("src", "1.2.3.4"), ("dst", "5.6.7.8")],
                "{spec}"
            );
        }
        let f = run("LEEF:2.0|V|P|1|41||a=1\tb=2").unwrap();
        assert_eq!(attrs(&f), vec![("a", "1"), ("b", "2")]);
        assert_eq!(
            run("LEEF:2.0|V|P|1|41|xZZ|a=1"),
            Err(DecodeIssue::LeefBadHeader)
        );
        assert_eq!(run("LEEF:2.0|V|P|1|41"), Err(DecodeIssue::LeefBadHeader));
    }

    #[test]
    fn leef1_with_spaces() {
        let f = run("LEEF:1.0|V|P|1|E|usrName=John Smith src=1.2.3.4").unwrap();
        assert_eq!(
            attrs(&f),
            vec![("usrName", "John Smith"), ("src", "1.2.3.4")]
        );
    }
}
