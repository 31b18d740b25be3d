//! Framing invariants: no panic; no frame longer than the limit; no empty
//! frame; the same frames and counters however the stream is split, and
//! when it is fed one frame at a time (`feed_until`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_net::framing::Framer;

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    // Small limits reach truncation often; the split point varies too.
    let max = usize::from(control % 32) + 1;
    let split = if stream.is_empty() {
        0
    } else {
        usize::from(control) * 7 % (stream.len() + 1)
    };

    let mut whole = Framer::new(max);
    let mut expected = Vec::new();
    let mut collect = |f: shardwatch_net::framing::Frame<'_>| {
        assert!(!f.bytes.is_empty(), "empty frame delivered");
        assert!(f.bytes.len() <= max, "frame over the limit");
        expected.push((f.bytes.to_vec(), f.truncated));
    };
    whole.feed(stream, &mut collect);
    whole.finish(&mut collect);
    assert!(whole.pending_bytes() == 0);

    let mut split_framer = Framer::new(max);
    let mut got = Vec::new();
    let mut collect = |f: shardwatch_net::framing::Frame<'_>| {
        assert!(f.bytes.len() <= max);
        got.push((f.bytes.to_vec(), f.truncated));
    };
    split_framer.feed(&stream[..split], &mut collect);
    assert!(split_framer.pending_bytes() <= max + 1);
    split_framer.feed(&stream[split..], &mut collect);
    split_framer.finish(&mut collect);
    assert_eq!(got, expected);
    assert_eq!(split_framer.stats, whole.stats);

    let mut stepping = Framer::new(max);
    let mut got = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let mut delivered = 0;
        let used = stepping.feed_until(rest, |f| {
            got.push((f.bytes.to_vec(), f.truncated));
            delivered += 1;
            std::ops::ControlFlow::Break(())
        });
        assert!(delivered <= 1, "fed past a frame that asked to stop");
        assert!(used <= rest.len());
        if delivered == 0 {
            assert_eq!(used, rest.len(), "stopped without a frame");
        }
        rest = &rest[used..];
    }
    stepping.finish(|f| got.push((f.bytes.to_vec(), f.truncated)));
    assert_eq!(got, expected);
    assert_eq!(stepping.stats, whole.stats);
});
