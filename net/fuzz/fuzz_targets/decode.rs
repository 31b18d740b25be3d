//! Whole-line invariants over every decoder: no panic; a reused scratch
//! gives the same result as a fresh one; rendering is one JSON object.
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
    let a = parse_and_extract(data, &CTX, &mut reused, &mut fields)
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
