//! Parsing invariants for 3164-shaped input: no panic at any receive time or
//! offset; errors point inside the line; slices lie within the line; the
//! one-pass reading of the common header agrees with the layered reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::syslog::{parse, parse_layered, ParseContext};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let (head, body) = data.split_at(9);
    let mut now = [0u8; 8];
    now.copy_from_slice(&head[..8]);
    let ctx = ParseContext {
        now_ns: i64::from_le_bytes(now),
        default_offset_s: (i32::from(head[8]) - 128) * 900,
    };
    for prefix in [
        &b""[..],
        b"<13>",
        b"<189>12: *Mar  1 ",
        b"<13>Feb  5 17:32:18 ",
    ] {
        let mut line = prefix.to_vec();
        line.extend_from_slice(body);
        let parsed = parse(&line, &ctx);
        assert_eq!(parsed, parse_layered(&line, &ctx));
        match parsed {
            Ok(m) => {
                let range = line.as_ptr_range();
                for part in [
                    m.hostname,
                    m.relay_hostname,
                    m.app_name,
                    m.proc_id,
                    m.sequence,
                    m.cisco_mnemonic,
                    Some(m.message),
                ]
                .into_iter()
                .flatten()
                {
                    let p = part.as_ptr_range();
                    assert!(part.is_empty() || (range.start <= p.start && p.end <= range.end));
                }
            }
            Err(e) => assert!(e.offset <= line.len()),
        }
    }
});
