//! XML event decoder invariants: no panic; on error nothing is pushed;
//! values lie in the input or the arena; a reused arena size gives the
//! same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::decode::xml::decode;
use shardwatch_net::decode::Arena;
use shardwatch_net::fields::{Fields, FIELDS_MAX};

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut first = None;
    for _ in 0..2 {
        // The first byte sizes the arena: tight arenas (and the refusals
        // they cause) as well as ample ones.
        let selector = usize::from(data.first().copied().unwrap_or(0));
        let size = if selector & 1 == 0 {
            selector * 4
        } else {
            data.len() * 4 + 1024
        };
        let mut buffer = vec![0u8; size];
        let buffer_range = buffer.as_ptr_range();
        let mut arena = Arena::over(&mut buffer);
        let mut fields = Fields::new();
        let result = decode(data, &mut arena, &mut fields);
        if result.is_err() {
            assert!(fields.is_empty(), "an error pushed fields");
            assert_eq!(fields.overflow, 0);
        }
        assert!(fields.len() <= FIELDS_MAX);
        common::assert_values_within(&fields, data, buffer_range.clone());
        let run = (result, common::owned(&fields));
        match &first {
            None => first = Some(run),
            Some(earlier) => assert_eq!(earlier, &run, "a second decode differed"),
        }
    }
});
