//! Routed records: what one core hands another for stateful detection.
//!
//! When an event matches a base rule of a correlation, the ingest core
//! computes the correlation's group-by key, places it on a shard, and appends
//! one record to the batch for the shard's owner core. A batch is one flat
//! byte buffer, so crossing cores costs one allocation per batch, not per
//! event. Record layout (all integers little-endian):
//!
//! ```text
//! u16 shard | u64 rule_hash | u64 input_mask | i64 time_ns | i64 received_ns
//! | u32 key_len | key bytes | u32 value_len (u32::MAX: no value) | value bytes
//! | u32 raw_len | raw bytes
//! ```
//!
//! `rule_hash` names the correlation by a hash of its rule id, not by its
//! index, so that cores running different generations of the rule set
//! during a reload still agree on which rule a record is for.
//! `input_mask` says which of the correlation's base rules the event
//! matched (temporal correlations need it); `value` is the field a
//! `value_count` correlation counts distinct values of.
//!
//! The raw line travels with the record because the owning core keeps up to
//! five raw lines per group as the alert's sample.

/// Most records in one batch before it is sent.
pub const BATCH_RECORDS_MAX: u32 = 512;
/// Most bytes in one batch before it is sent (a record is never split).
pub const BATCH_BYTES_MAX: usize = 256 * 1024;

/// Buffers larger than this are freed rather than handed home for reuse
/// (a batch grows past [`BATCH_BYTES_MAX`] by at most one record, and its
/// buffer by the doubling of the last `reserve`).
const REUSED_CAPACITY_MAX: usize = 2 * BATCH_BYTES_MAX;
/// Buffers each core's home keeps per peer core: a flush hands every peer
/// at most one batch, and a peer gives each back once it has observed it.
const HOME_BUFFERS_PER_PEER: usize = 4;

/// A batch of routed records for one destination core.
#[derive(Debug, Default)]
pub struct RouteBatch {
    bytes: Vec<u8>,
    records: u32,
    /// The core that sent the batch.
    pub source: u16,
    /// Every record of `source`'s journal at or below this sequence meant
    /// for the destination was sent in this batch or before it (see
    /// `durable`). 0 without a journal.
    pub stamp: u64,
    /// Sent once, empty, when `source` has finished replaying its journal
    /// at start: every replayed record for the destination came before it.
    pub replay_done: bool,
}

/// One decoded record, borrowing from its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRecord<'a> {
    pub shard: u16,
    pub rule_hash: u64,
    pub input_mask: u64,
    pub time_ns: i64,
    pub received_ns: i64,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    pub raw: &'a [u8],
}

const HEADER_BYTES: usize = 2 + 8 + 8 + 8 + 8;
/// Marks a record without a value.
const NO_VALUE: u32 = u32::MAX;

impl RouteBatch {
    pub fn records(&self) -> u32 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// True when the batch should be sent before more is appended.
    pub fn is_full(&self) -> bool {
        self.records >= BATCH_RECORDS_MAX || self.bytes.len() >= BATCH_BYTES_MAX
    }

    pub fn push(&mut self, record: &RouteRecord<'_>) {
        let key_len = u32::try_from(record.key.len()).expect("group keys are far below 4 GiB");
        let raw_len = u32::try_from(record.raw.len()).expect("frames are far below 4 GiB");
        let value_len = match record.value {
            Some(value) => {
                let len = u32::try_from(value.len()).expect("values are far below 4 GiB");
                assert_ne!(len, NO_VALUE, "a value of u32::MAX bytes cannot be encoded");
                len
            }
            None => NO_VALUE,
        };
        let value = record.value.unwrap_or_default();
        self.bytes
            .reserve(HEADER_BYTES + 12 + record.key.len() + value.len() + record.raw.len());
        self.bytes.extend_from_slice(&record.shard.to_le_bytes());
        self.bytes
            .extend_from_slice(&record.rule_hash.to_le_bytes());
        self.bytes
            .extend_from_slice(&record.input_mask.to_le_bytes());
        self.bytes.extend_from_slice(&record.time_ns.to_le_bytes());
        self.bytes
            .extend_from_slice(&record.received_ns.to_le_bytes());
        self.bytes.extend_from_slice(&key_len.to_le_bytes());
        self.bytes.extend_from_slice(record.key);
        self.bytes.extend_from_slice(&value_len.to_le_bytes());
        self.bytes.extend_from_slice(value);
        self.bytes.extend_from_slice(&raw_len.to_le_bytes());
        self.bytes.extend_from_slice(record.raw);
        self.records += 1;
    }

    /// Whether the batch holds a buffer yet: a fresh one has none until
    /// its first record, or until a reused buffer is put in.
    pub fn has_buffer(&self) -> bool {
        self.bytes.capacity() > 0
    }

    /// An empty batch that appends to `bytes` (emptied first), a buffer
    /// a peer handed back.
    pub fn with_buffer(mut bytes: Vec<u8>) -> RouteBatch {
        bytes.clear();
        RouteBatch {
            bytes,
            ..RouteBatch::default()
        }
    }

    /// The batch's buffer, emptied, for reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        let mut bytes = self.bytes;
        bytes.clear();
        bytes
    }

    /// Decodes the records in order. Batches only ever come from `push` in
    /// this process, so a malformed batch is a bug: it is asserted, not
    /// handled.
    pub fn iter(&self) -> RouteIter<'_> {
        RouteIter {
            rest: &self.bytes,
            left: self.records,
        }
    }
}

/// Where routed batches' buffers go once observed: back to the core that
/// allocated them (each core's home, a bounded channel), which fills its
/// next batches with them. glibc's `free` of a chunk another thread
/// allocated takes that thread's arena lock, so a core freeing its peers'
/// batches could make a peer, allocating at that moment, sleep on the
/// lock (as the alert writer freeing the cores' alert lines did,
/// BENCHMARKS.md 2026-12-07); a reused buffer also spares the new batch's
/// allocations as it grows. A buffer that finds its home full, or is
/// larger than [`REUSED_CAPACITY_MAX`], is freed where it is.
pub struct BufferHomes {
    homes: Vec<Home>,
}

/// One core's home: peers send buffers in, the core takes them out.
type Home = (flume::Sender<Vec<u8>>, flume::Receiver<Vec<u8>>);

impl BufferHomes {
    /// One home per core, each with room for [`HOME_BUFFERS_PER_PEER`]
    /// buffers per peer.
    pub fn new(cores: usize) -> Self {
        let room = cores.saturating_sub(1) * HOME_BUFFERS_PER_PEER;
        BufferHomes {
            homes: (0..cores).map(|_| flume::bounded(room)).collect(),
        }
    }

    /// Hands the buffer of `batch`, observed, back to core `home`, the
    /// batch's source. False when it was freed here instead.
    pub fn give_back(&self, home: usize, batch: RouteBatch) -> bool {
        let bytes = batch.into_buffer();
        if bytes.capacity() == 0 || bytes.capacity() > REUSED_CAPACITY_MAX {
            return false;
        }
        self.homes
            .get(home)
            .is_some_and(|(tx, _)| tx.try_send(bytes).is_ok())
    }

    /// A buffer core `home` allocated that came back, if one has.
    pub fn take(&self, home: usize) -> Option<Vec<u8>> {
        self.homes.get(home)?.1.try_recv().ok()
    }
}

/// Iterator over a batch's records.
pub struct RouteIter<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> RouteIter<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.rest.len() >= n,
            "route batch truncated: a bug in RouteBatch::push"
        );
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        head
    }

    fn take_array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N));
        out
    }
}

impl<'a> Iterator for RouteIter<'a> {
    type Item = RouteRecord<'a>;

    fn next(&mut self) -> Option<RouteRecord<'a>> {
        if self.left == 0 {
            assert!(
                self.rest.is_empty(),
                "route batch has bytes past its last record"
            );
            return None;
        }
        self.left -= 1;
        let shard = u16::from_le_bytes(self.take_array());
        let rule_hash = u64::from_le_bytes(self.take_array());
        let input_mask = u64::from_le_bytes(self.take_array());
        let time_ns = i64::from_le_bytes(self.take_array());
        let received_ns = i64::from_le_bytes(self.take_array());
        let key_len = u32::from_le_bytes(self.take_array()) as usize;
        let key = self.take(key_len);
        let value = match u32::from_le_bytes(self.take_array()) {
            NO_VALUE => None,
            len => Some(self.take(len as usize)),
        };
        let raw_len = u32::from_le_bytes(self.take_array()) as usize;
        let raw = self.take(raw_len);
        Some(RouteRecord {
            shard,
            rule_hash,
            input_mask,
            time_ns,
            received_ns,
            key,
            value,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_order() {
        let mut batch = RouteBatch::default();
        let a = RouteRecord {
            shard: 7,
            rule_hash: 1,
            input_mask: 0b101,
            time_ns: -5,
            received_ns: 10,
            key: b"k1",
            value: Some(b"alice"),
            raw: b"line one",
        };
        let b = RouteRecord {
            shard: 4095,
            rule_hash: u64::MAX,
            input_mask: u64::MAX,
            time_ns: i64::MAX,
            received_ns: 0,
            key: b"",
            value: Some(b""),
            raw: b"\xff\x00",
        };
        let c = RouteRecord { value: None, ..a };
        batch.push(&a);
        batch.push(&b);
        batch.push(&c);
        assert_eq!(batch.records(), 3);
        let back: Vec<_> = batch.iter().collect();
        assert_eq!(back, vec![a, b, c]);
    }

    #[test]
    fn buffers_go_home_and_fill_the_next_batch() {
        let homes = BufferHomes::new(3);
        let rec = RouteRecord {
            shard: 1,
            rule_hash: 2,
            input_mask: 1,
            time_ns: 3,
            received_ns: 4,
            key: b"key",
            value: Some(b"v"),
            raw: b"raw line",
        };
        let mut batch = RouteBatch::default();
        assert!(!batch.has_buffer());
        batch.push(&rec);
        let capacity = batch.bytes.capacity();
        let address = batch.bytes.as_ptr();
        assert!(homes.take(0).is_none(), "nothing has come home yet");
        assert!(homes.give_back(0, batch));
        let bytes = homes.take(0).expect("the buffer came home");
        assert!(homes.take(0).is_none() && homes.take(1).is_none());
        // The same allocation, emptied; a batch on it decodes only its own
        // records.
        assert_eq!((bytes.as_ptr(), bytes.capacity()), (address, capacity));
        assert!(bytes.is_empty());
        let mut next = RouteBatch::with_buffer(bytes);
        assert!(next.has_buffer() && next.is_empty());
        let other = RouteRecord {
            key: b"other",
            ..rec
        };
        next.push(&other);
        assert_eq!(next.iter().collect::<Vec<_>>(), vec![other]);
        // A batch without a buffer, or one too large to keep, is freed
        // where it is; a home holds 4 buffers per peer (2 peers here).
        assert!(!homes.give_back(1, RouteBatch::default()));
        assert!(!homes.give_back(
            1,
            RouteBatch::with_buffer(Vec::with_capacity(REUSED_CAPACITY_MAX + 1))
        ));
        for _ in 0..8 {
            assert!(homes.give_back(2, RouteBatch::with_buffer(Vec::with_capacity(64))));
        }
        assert!(!homes.give_back(2, RouteBatch::with_buffer(Vec::with_capacity(64))));
        assert!(
            !homes.give_back(3, RouteBatch::with_buffer(Vec::with_capacity(64))),
            "no such core"
        );
        assert!(homes.take(1).is_none());
        assert_eq!(std::iter::from_fn(|| homes.take(2)).count(), 8);
        // One core has no peers and keeps nothing.
        assert!(!BufferHomes::new(1).give_back(0, RouteBatch::with_buffer(Vec::with_capacity(64))));
    }

    #[test]
    fn a_batch_is_full_at_its_record_cap() {
        let mut batch = RouteBatch::default();
        let rec = RouteRecord {
            shard: 0,
            rule_hash: 0,
            input_mask: 1,
            time_ns: 0,
            received_ns: 0,
            key: b"k",
            value: None,
            raw: b"r",
        };
        for _ in 0..BATCH_RECORDS_MAX - 1 {
            batch.push(&rec);
        }
        assert!(!batch.is_full());
        batch.push(&rec);
        assert!(batch.is_full());
    }
}
