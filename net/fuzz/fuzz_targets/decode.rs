//! Whole-line invariants over every decoder: no panic; a reused scratch
//! gives the same result as a fresh one; a line whose payload names a
//! vendor source is one `may_name_vendor` flags (the appliance skips the
//! payload of the others on that word), and the CEF source read from the
//! header alone is the decode's; the header's fields come first, and the
//! payload's names are read from the line (what the header gate's search
//! for a missing program name relies on);
//! rendering is one JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::fields::Fields;
use shardwatch_net::render::render_line;
use shardwatch_net::syslog::ParseContext;
use shardwatch_net::{parse_and_extract, DecodeScratch};

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

const CTX: ParseContext = ParseContext {
    now_ns: 1_795_780_800_000_000_000,
    default_offset_s: 0,
};

fuzz_target!(|data: &[u8]| {
    let mut reused = DecodeScratch::new();
    // Dirty the reused scratch with another line first.
    let mut fields = Fields::new();
    let _ = parse_and_extract(
        br#"{"a":{"b":[1,2]},"c":"\u00e9"}"#,
        &CTX,
        &mut reused,
        &mut fields,
    );
    let mut fields = Fields::new();
    let parsed = parse_and_extract(data, &CTX, &mut reused, &mut fields);
    if let Ok(p) = &parsed {
        if p.source.is_some() {
            assert!(shardwatch_net::decode::may_name_vendor(p.syslog.message));
        }
        // The CEF source read from the header alone, where there is one,
        // is the decode's.
        if let Some(source) = shardwatch_net::decode::cef_source(p.syslog.message) {
            assert_eq!(p.decoder, Some(shardwatch_net::Decoder::Cef));
            assert_eq!(p.source, Some(source));
        }
        let mut header = Fields::new();
        shardwatch_net::header_fields(&p.syslog, &mut header);
        let n = header.as_slice().len();
        assert_eq!(&fields.as_slice()[..n], header.as_slice());
        names_are_read_from_the_line(data, &fields.as_slice()[n..]);
    }
    let a = parsed
        .map(|p| (p.decoder, p.rule, p.issue))
        .map_err(|e| e.reason);
    let a_fields = common::owned(&fields);
    let mut fresh = DecodeScratch::new();
    let mut fields = Fields::new();
    let b = parse_and_extract(data, &CTX, &mut fresh, &mut fields)
        .map(|p| (p.decoder, p.rule, p.issue))
        .map_err(|e| e.reason);
    assert_eq!(a, b);
    assert_eq!(a_fields, common::owned(&fields));
    let mut out = String::new();
    render_line(data, &CTX, &mut fresh, &mut out);
    assert!(out.starts_with('{') && out.ends_with('}'));
});

/// Bytes a decoder's escape can make from other text (as the rules crate's
/// header gate assumes).
const ESCAPE_OUTPUTS: &[u8] = b"|\\=\"]/<>&'\n\r\t\x08\x0c";

/// The invariant the header gate's search for a missing header part rests
/// on (`shardwatch_rules::PayloadNaming`): a payload field's name is one
/// of `names_not_in_text`, or each of its components (past a leading
/// `sd.`) that is not all digits and holds no byte an escape makes is in
/// the line, ASCII case-insensitively, unless the line holds `\u` or
/// `&#`, which can spell anything.
fn names_are_read_from_the_line(line: &[u8], payload: &[(&str, &[u8])]) {
    let folded = line.to_ascii_lowercase();
    let contains = |needle: &[u8]| folded.windows(needle.len()).any(|w| w == needle);
    if contains(b"\\u") || contains(b"&#") {
        return;
    }
    let made_up = shardwatch_net::names_not_in_text();
    for (name, _) in payload {
        if made_up.contains(name) {
            continue;
        }
        let body = name.strip_prefix("sd.").unwrap_or(name);
        for part in body.split('.') {
            if part.is_empty()
                || part.bytes().all(|b| b.is_ascii_digit())
                || part.bytes().any(|b| ESCAPE_OUTPUTS.contains(&b))
            {
                continue;
            }
            let part = part.as_bytes().to_ascii_lowercase();
            assert!(
                contains(&part),
                "field {name:?}: {:?} is not in the line",
                String::from_utf8_lossy(&part)
            );
        }
    }
}
