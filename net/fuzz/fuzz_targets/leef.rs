//! LEEF decoder invariants: no panic; the five `leef.*` header fields come
//! first; on error nothing is pushed; values lie in the input or the arena.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::decode::{leef, Arena};
use shardwatch_net::fields::Fields;

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut input = b"LEEF:".to_vec();
    input.extend_from_slice(data.strip_prefix(b"LEEF:").unwrap_or(data));
    // The first byte sizes the arena, so that small arenas (and the
    // refusals they cause) are reached as well as ample ones.
    let mut buffer = vec![0u8; arena_bytes(data, input.len())];
    let buffer_range = buffer.as_ptr_range();
    let mut arena = Arena::over(&mut buffer);
    let mut fields = Fields::new();
    match leef::decode(&input, &mut arena, &mut fields) {
        Ok(_) => {
            assert!(fields.len() >= 5);
            assert!(fields.as_slice()[..5]
                .iter()
                .all(|(n, _)| n.starts_with("leef.")));
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
