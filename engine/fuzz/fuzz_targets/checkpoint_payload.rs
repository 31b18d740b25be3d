//! Any bytes given as a checkpoint payload (what a checkpoint file holds
//! once its CRC passed) decode into shard states or are refused with a
//! reason, never a panic; a decoded payload re-encodes (shard by shard,
//! as a core writes it) to one that decodes to the same checkpoint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch::durable::{CheckpointEncoder, CoreCheckpoint};

fuzz_target!(|data: &[u8]| {
    // Payloads are read 16-byte aligned (rkyv needs it).
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(data.len());
    aligned.extend_from_slice(data);
    let Ok(checkpoint) = CoreCheckpoint::decode(&aligned) else {
        return;
    };
    let mut encoder = CheckpointEncoder::default();
    for snapshot in &checkpoint.states {
        if let Err(error) = encoder.push_shard(snapshot.shard, &snapshot.covered, &snapshot.state) {
            panic!("a decoded shard must encode: {error}");
        }
    }
    let chunks = match encoder.finish(checkpoint.header.clone()) {
        Ok(chunks) => chunks,
        Err(error) => panic!("a decoded header must encode: {error}"),
    };
    let mut again = rkyv::util::AlignedVec::<16>::new();
    for chunk in &chunks {
        again.extend_from_slice(chunk);
    }
    let decoded = match CoreCheckpoint::decode(&again) {
        Ok(decoded) => decoded,
        Err(error) => panic!("a re-encoded payload must decode: {error}"),
    };
    assert_eq!(decoded.states.len(), checkpoint.states.len());
    for (a, b) in decoded.states.iter().zip(&checkpoint.states) {
        assert_eq!((a.shard, &a.covered), (b.shard, &b.covered));
        assert!(a.state == b.state);
    }
    assert_eq!(decoded.header.covered, checkpoint.header.covered);
});
