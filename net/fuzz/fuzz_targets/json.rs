//! JSON decoder invariants: no panic; on error nothing is pushed; values
//! lie in the input or the arena; a reused scratch gives the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::decode::json::{decode, JsonScratch};
use shardwatch_net::decode::Arena;
use shardwatch_net::fields::{Fields, FIELDS_MAX};

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut scratch = JsonScratch::default();
    let mut first = None;
    for _ in 0..2 {
        // The first byte sizes the arena, so that small arenas (and the
        // refusals they cause) are reached as well as ample ones.
        let mut buffer = vec![0u8; arena_bytes(data, data.len())];
        let buffer_range = buffer.as_ptr_range();
        let mut arena = Arena::over(&mut buffer);
        let mut fields = Fields::new();
        let result = decode(data, &mut arena, &mut scratch, &mut fields);
        if result.is_err() {
            assert!(fields.is_empty());
        }
        assert!(fields.len() <= FIELDS_MAX);
        common::assert_values_within(&fields, data, buffer_range.clone());
        let run = (result, common::owned(&fields));
        match &first {
            None => first = Some(run),
            Some(earlier) => assert_eq!(earlier, &run, "scratch reuse changed the result"),
        }
    }
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
