//! Extraction invariants: no panic; fields only on a match; every value is
//! a slice of the message or a 'static constant; rendering is valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::extract::{extract, ROWS};
use shardwatch_net::fields::Fields;
use shardwatch_net::render::render_line;
use shardwatch_net::syslog::ParseContext;
use shardwatch_net::DecodeScratch;

fuzz_target!(|data: &[u8]| {
    let Some((&which, message)) = data.split_first() else {
        return;
    };
    // Pick an app from the table so app-specific rows are reached.
    let apps: Vec<&str> = ROWS.iter().flat_map(|r| r.apps.iter().copied()).collect();
    let app = apps
        .get(usize::from(which) % (apps.len() + 1))
        .copied()
        .unwrap_or("");
    let mut fields = Fields::new();
    let row = extract(app.as_bytes(), message, &mut fields);
    assert_eq!(row.is_none(), fields.is_empty());
    let range = message.as_ptr_range();
    for (name, value) in fields.as_slice() {
        assert!(!name.is_empty() && !value.is_empty());
        let p = value.as_ptr_range();
        let in_message = range.start <= p.start && p.end <= range.end;
        let constant = ROWS
            .iter()
            .any(|r| r.constants.iter().any(|(_, c)| c.as_bytes() == *value));
        assert!(in_message || constant);
    }
    let mut out = String::new();
    let mut scratch = DecodeScratch::new();
    render_line(message, &ParseContext::default(), &mut scratch, &mut out);
    assert!(out.starts_with('{') && out.ends_with('}'));
});
