//! key=value decoder invariants: no panic; nothing pushed unless claimed;
//! names are key-shaped and unique (first wins); values lie in the input
//! or the arena.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::decode::{kv, Arena, KEY_BYTES_MAX};
use shardwatch_net::fields::Fields;

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

fuzz_target!(|data: &[u8]| {
    // The first byte sizes the arena, so that small arenas (and the
    // refusals they cause) are reached as well as ample ones.
    let mut buffer = vec![0u8; arena_bytes(data, data.len())];
    let buffer_range = buffer.as_ptr_range();
    let mut arena = Arena::over(&mut buffer);
    let mut fields = Fields::new();
    let claimed = kv::decode(data, &mut arena, &mut fields);
    if !claimed {
        assert!(fields.is_empty());
    }
    let names: Vec<&str> = fields.as_slice().iter().map(|(n, _)| *n).collect();
    for (i, name) in names.iter().enumerate() {
        assert!(!name.is_empty() && name.len() <= KEY_BYTES_MAX);
        assert!(!names[..i].contains(name), "repeated key {name}");
    }
    common::assert_values_within(&fields, data, buffer_range.clone());
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
