//! One-line JSON rendering of a parsed syslog line, for `shardwatch parse`
//! and the golden tests.
//!
//! The field names and their order are a stable interface: every key is
//! always present (`null` when absent), byte values are shown as lossy UTF-8
//! (invalid bytes become U+FFFD), and an error renders as
//! `{"error":{"reason":...,"offset":...},"raw":...}`. After the header
//! parts come `decoder`, `rule`, `source` (`{"vendor":...,"product":...}`
//! for CEF and LEEF) and `decode_issue`, then `fields` in the order they
//! were produced. This is a display path:
//! it allocates (the output `String`) and is not used on the hot path.

use std::fmt::Write;

use crate::fields::Fields;
use crate::syslog::{write_rfc3339, ParseContext, ParseError};
use crate::{parse_and_extract, DecodeScratch, ParsedLine};

/// Parses, extracts and renders `line` as one JSON object (no newline)
/// appended to `out`; `scratch` is reused between lines.
pub fn render_line(line: &[u8], ctx: &ParseContext, scratch: &mut DecodeScratch, out: &mut String) {
    let mut fields = Fields::new();
    match parse_and_extract(line, ctx, scratch, &mut fields) {
        Ok(parsed) => render_parsed(&parsed, &fields, out),
        Err(error) => render_error(line, &error, out),
    }
}

/// Renders a successful parse and its extracted fields.
pub fn render_parsed(parsed: &ParsedLine<'_>, fields: &Fields<'_>, out: &mut String) {
    let m = &parsed.syslog;
    out.push_str("{\"format\":");
    write_str(out, m.format.as_str());
    write_num(out, "pri", m.pri.map(i64::from));
    write_num(out, "facility", m.facility().map(i64::from));
    write_num(out, "severity", m.severity().map(i64::from));
    out.push_str(",\"timestamp\":");
    match m.timestamp_ns {
        Some(ns) => {
            out.push('"');
            write_rfc3339(ns, out);
            out.push('"');
        }
        None => out.push_str("null"),
    }
    write_num(out, "timestamp_ns", m.timestamp_ns);
    let _ = write!(out, ",\"clock_unsynced\":{}", m.clock_unsynced);
    write_bytes_field(out, "hostname", m.hostname);
    write_bytes_field(out, "relay_hostname", m.relay_hostname);
    write_bytes_field(out, "app_name", m.app_name);
    write_bytes_field(out, "proc_id", m.proc_id);
    write_bytes_field(out, "msg_id", m.msg_id);
    write_bytes_field(out, "structured_data", m.structured_data);
    write_bytes_field(out, "sequence", m.sequence);
    write_bytes_field(out, "cisco_mnemonic", m.cisco_mnemonic);
    write_bytes_field(out, "message", Some(m.message));
    out.push_str(",\"decoder\":");
    write_opt_str(out, parsed.decoder.map(|d| d.as_str()));
    out.push_str(",\"rule\":");
    write_opt_str(out, parsed.rule);
    out.push_str(",\"source\":");
    match parsed.source {
        Some(source) => {
            write_bytes_field_first(out, "vendor", source.vendor);
            write_bytes_field(out, "product", Some(source.product));
            out.push('}');
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"decode_issue\":");
    write_opt_str(out, parsed.issue.map(|i| i.as_str()));
    out.push_str(",\"fields\":{");
    for (i, (name, value)) in fields.as_slice().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, name);
        out.push(':');
        write_str(out, &String::from_utf8_lossy(value));
    }
    out.push('}');
    if fields.overflow > 0 {
        let _ = write!(out, ",\"fields_overflow\":{}", fields.overflow);
    }
    out.push('}');
}

/// Renders a refused line with its reason, offset and raw text.
pub fn render_error(line: &[u8], error: &ParseError, out: &mut String) {
    out.push_str("{\"error\":{\"reason\":");
    write_str(out, error.reason.as_str());
    let _ = write!(out, ",\"offset\":{}}},\"raw\":", error.offset);
    write_str(out, &String::from_utf8_lossy(line));
    out.push('}');
}

fn write_num(out: &mut String, key: &str, value: Option<i64>) {
    let _ = match value {
        Some(v) => write!(out, ",\"{key}\":{v}"),
        None => write!(out, ",\"{key}\":null"),
    };
}

fn write_opt_str(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => write_str(out, v),
        None => out.push_str("null"),
    }
}

/// Opens an object with its first key.
fn write_bytes_field_first(out: &mut String, key: &str, value: &[u8]) {
    let _ = write!(out, "{{\"{key}\":");
    write_str(out, &String::from_utf8_lossy(value));
}

fn write_bytes_field(out: &mut String, key: &str, value: Option<&[u8]>) {
    let _ = write!(out, ",\"{key}\":");
    match value {
        Some(v) => write_str(out, &String::from_utf8_lossy(v)),
        None => out.push_str("null"),
    }
}

/// Appends `s` as a JSON string literal.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_valid_json_for_odd_bytes() {
        let ctx = ParseContext::default();
        let mut scratch = DecodeScratch::new();
        for line in [
            &b"<13>Jan  1 00:00:00 h a[1]: \"q\" \\ \x01\x7f\xff"[..],
            b"<>",
            b"plain \t text",
        ] {
            let mut out = String::new();
            render_line(line, &ctx, &mut scratch, &mut out);
            let value: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert!(value.is_object(), "{out}");
        }
    }
}
