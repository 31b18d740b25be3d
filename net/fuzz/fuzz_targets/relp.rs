//! RELP framer invariants: no panic; no frame's data over the limit; the
//! same frames and the same error however the stream is split (in two, at
//! a point the first byte picks, and byte by byte); never more pending
//! bytes than the bound; whole frames handed out without copying; frames
//! re-encoded with `write_frame` read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::relp::{
    open_offers_ok, rsp_status, write_frame, RelpCommand, RelpError, RelpFrame, RelpFramer,
    HEADER_LEN_MAX,
};

type Owned = (u64, RelpCommand, Vec<u8>);

fn run(framer: &mut RelpFramer, pieces: &[&[u8]]) -> (Vec<Owned>, Result<(), RelpError>) {
    let max = framer.max_data();
    let mut frames = Vec::new();
    for piece in pieces {
        let result = framer.feed(piece, |f: RelpFrame<'_>| {
            assert!(f.data.len() <= max, "data over the limit");
            frames.push((f.txnr, f.command, f.data.to_vec()));
        });
        if result.is_err() {
            return (frames, result);
        }
        assert!(framer.pending_bytes() <= HEADER_LEN_MAX + max + 1);
    }
    (frames, Ok(()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    // Bit 6 picks a small limit (bits 0-5), which reaches DataTooLong
    // often, over librelp's default; bit 7 turns on the TXNR sequence
    // check; the split point varies with the whole byte.
    let max = if control & 0x40 != 0 {
        usize::from(control % 64)
    } else {
        128 * 1024
    };
    let sequence = control & 0x80 != 0;
    let new = || {
        let framer = RelpFramer::new(max);
        if sequence {
            framer.check_sequence()
        } else {
            framer
        }
    };
    let split = if stream.is_empty() {
        0
    } else {
        usize::from(control) * 7 % (stream.len() + 1)
    };

    let mut whole = new();
    let expected = run(&mut whole, &[stream]);
    if expected.1.is_err() {
        // An error sticks.
        assert_eq!(
            whole.feed(b"1 close 0\n", |_| panic!("frame after an error")),
            expected.1
        );
        assert_eq!(whole.pending_bytes(), 0);
    }

    let got = run(&mut new(), &[&stream[..split], &stream[split..]]);
    assert_eq!(got, expected, "split at {split}");

    if stream.len() <= 4096 {
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&mut new(), &bytewise), expected, "byte by byte");
    }

    // Frames lying within one feed are slices of it.
    let range = stream.as_ptr_range();
    let _ = new().feed(stream, |f| {
        let p = f.data.as_ptr_range();
        assert!(f.data.is_empty() || (range.start <= p.start && p.end <= range.end));
    });

    // Re-encoding the frames gives a stream that reads back the same.
    let mut encoded = Vec::new();
    for (txnr, command, data) in &expected.0 {
        write_frame(*txnr, command.as_str(), data, &mut encoded);
    }
    let again = run(&mut new(), &[&encoded]);
    assert_eq!(again, (expected.0.clone(), Ok(())), "re-encoded");

    // The data helpers never panic.
    for (_, command, data) in &expected.0 {
        match command {
            RelpCommand::Open => {
                let _ = open_offers_ok(data);
            }
            RelpCommand::Rsp => {
                let _ = rsp_status(data);
            }
            _ => {}
        }
    }
});
