//! Parsing invariants for 5424-shaped input: no panic; an error's offset is
//! within the line; every returned slice lies within the line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::syslog::{parse, ParseContext, SyslogMessage};

fn check(line: &[u8], ctx: &ParseContext) {
    match parse(line, ctx) {
        Ok(m) => assert_within(line, &m),
        Err(e) => assert!(e.offset <= line.len(), "offset past the end"),
    }
}

fn assert_within(line: &[u8], m: &SyslogMessage<'_>) {
    let range = line.as_ptr_range();
    for part in [
        m.hostname,
        m.app_name,
        m.proc_id,
        m.msg_id,
        m.structured_data,
        Some(m.message),
    ]
    .into_iter()
    .flatten()
    {
        let p = part.as_ptr_range();
        assert!(part.is_empty() || (range.start <= p.start && p.end <= range.end));
    }
    assert!(m.pri.is_none_or(|p| p <= 191));
}

fuzz_target!(|data: &[u8]| {
    let ctx = ParseContext {
        now_ns: 1_795_780_800_000_000_000,
        default_offset_s: 0,
    };
    check(data, &ctx);
    // Steer the fuzzer into the 5424 grammar as well.
    let mut line = b"<165>1 ".to_vec();
    line.extend_from_slice(data);
    check(&line, &ctx);
    let mut line = b"<165>1 2003-10-11T22:14:15.003Z h a p m ".to_vec();
    line.extend_from_slice(data);
    check(&line, &ctx);
});
