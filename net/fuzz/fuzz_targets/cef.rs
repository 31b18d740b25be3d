//! CEF decoder invariants: no panic; the seven header fields come first,
//! in wire order; on error nothing is pushed; values lie in the
//! input or the arena.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::decode::{cef, Arena};
use shardwatch_net::fields::Fields;

const HEADER: [&str; 7] = [
    "cef.version",
    "cef.device_vendor",
    "cef.device_product",
    "cef.device_version",
    "cef.signature_id",
    "cef.name",
    "cef.severity",
];

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut input = b"CEF:".to_vec();
    input.extend_from_slice(data.strip_prefix(b"CEF:").unwrap_or(data));
    // The first byte sizes the arena, so that small arenas (and the
    // refusals they cause) are reached as well as ample ones.
    let mut buffer = vec![0u8; arena_bytes(data, input.len())];
    let buffer_range = buffer.as_ptr_range();
    let mut arena = Arena::over(&mut buffer);
    let mut fields = Fields::new();
    match cef::decode(&input, &mut arena, &mut fields) {
        Ok(_) => {
            // The header comes first, in wire order; an extension key
            // spelled like a header name (`cef.name=x`) comes after it, so
            // `Fields::get` still returns the header's value.
            let names: Vec<&str> = fields.as_slice().iter().take(7).map(|(n, _)| *n).collect();
            assert_eq!(names, HEADER);
        }
        Err(_) => assert!(fields.is_empty()),
    }
    common::assert_values_within(&fields, &input, buffer_range.clone());
});

/// Arena size for an input of `len` bytes: tight (a few bytes per unit of
/// the data's first byte) or ample (four times the input), chosen by the
/// first byte's low bit.
fn arena_bytes(data: &[u8], len: usize) -> usize {
    let selector = usize::from(data.first().copied().unwrap_or(0));
    if selector & 1 == 0 {
        selector * 4
    } else {
        len * 4 + 1024
    }
}
