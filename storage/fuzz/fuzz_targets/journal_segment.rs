//! A journal segment's bytes, whatever they are (torn, corrupt, random),
//! are read without panicking; what is read back has increasing sequence
//! numbers, and writing those records into a fresh segment reads back the
//! same records with no problem reported.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shardwatch_storage::journal::{
    encode_record, scan_segment_bytes, JournalEntry, ScanReport, HEADER_BYTES,
};

type Owned = (u64, i64, u8, Option<std::net::SocketAddr>, Vec<u8>);

fn read(bytes: &[u8], first_seq: u64) -> (Vec<Owned>, ScanReport) {
    let mut report = ScanReport::default();
    let mut out = Vec::new();
    scan_segment_bytes(
        Path::new("fuzz.wal"),
        bytes,
        first_seq,
        0,
        &mut report,
        &mut |e: &JournalEntry<'_>| {
            out.push((e.seq, e.received_ns, e.transport, e.peer, e.line.to_vec()))
        },
    );
    (out, report)
}

fuzz_target!(|data: &[u8]| {
    // The first byte is a control byte: when even, a valid header comes
    // first, so the record reader is reached; the rest of it is the
    // segment's first sequence number, so that records older than it (a
    // reused segment's old records, where the scan stops) occur.
    let Some((control, data)) = data.split_first() else {
        return;
    };
    let first_seq = u64::from(control >> 1).max(1);
    let mut bytes = Vec::with_capacity(HEADER_BYTES + data.len());
    if control & 1 == 0 {
        bytes.extend_from_slice(b"SWJOURN1");
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.resize(HEADER_BYTES, 0);
    }
    bytes.extend_from_slice(data);
    let (records, report) = read(&bytes, first_seq);
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(records.iter().all(|r| r.0 >= first_seq));
    assert_eq!(report.records as usize, records.len());

    let mut again = b"SWJOURN1".to_vec();
    again.extend_from_slice(&1u32.to_le_bytes());
    again.resize(HEADER_BYTES, 0);
    for (seq, received_ns, transport, peer, line) in &records {
        encode_record(
            &JournalEntry {
                seq: *seq,
                received_ns: *received_ns,
                transport: *transport,
                peer: *peer,
                line,
            },
            &mut again,
        );
    }
    let (back, report) = read(&again, first_seq);
    assert_eq!(back, records);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
});
