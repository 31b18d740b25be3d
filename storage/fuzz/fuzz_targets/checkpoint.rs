//! Any bytes given as a checkpoint file are refused with a reason or
//! accepted with a payload that passed its CRC, never a panic; a payload
//! written by `checkpoint::write` parses back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_storage::checkpoint::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, payload)) = parse(data) {
        // An empty payload has no allocation to align (rkyv then refuses
        // it as too short).
        if !payload.is_empty() {
            assert_eq!(payload.as_ptr() as usize % 16, 0);
        }
        assert!(payload.len() <= data.len());
    }
});
