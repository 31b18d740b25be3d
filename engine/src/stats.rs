//! Per-core counters.
//!
//! Each core owns its counters (plain `Cell`s: one writer, no atomics on the
//! hot path) and hands them back as a [`CoreReport`] when it stops. Every
//! event that does not become a normal parse is counted under a named
//! reason: quarantine reasons come from the parser, drop reasons from the
//! queues that refused work.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use serde::Serialize;

/// Counters of one core while it runs.
#[derive(Default)]
pub struct CoreStats {
    pub udp_datagrams: Cell<u64>,
    pub udp_batches: Cell<u64>,
    pub tcp_connections_accepted: Cell<u64>,
    pub tcp_connections_open: Cell<u64>,
    pub tcp_frames: Cell<u64>,
    pub tcp_bytes: Cell<u64>,
    pub events_parsed: Cell<u64>,
    pub frames_truncated: Cell<u64>,
    pub routed_local: Cell<u64>,
    pub routed_remote: Cell<u64>,
    /// Records processed by this core's shards (from any ingest core).
    pub shard_records: Cell<u64>,
    pub alerts: Cell<u64>,
    pub groups_evicted: Cell<u64>,
    pub quarantined: RefCell<BTreeMap<&'static str, u64>>,
    pub dropped: RefCell<BTreeMap<&'static str, u64>>,
    /// Shards that processed at least one record here (one bit per shard),
    /// so tests can check that a key's events all landed on its owner core.
    pub shards_seen: RefCell<Vec<u64>>,
}

/// Adds `n` to a cell counter.
pub fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

impl CoreStats {
    pub fn quarantine(&self, reason: &'static str) {
        *self.quarantined.borrow_mut().entry(reason).or_default() += 1;
    }

    pub fn drop_events(&self, reason: &'static str, n: u64) {
        *self.dropped.borrow_mut().entry(reason).or_default() += n;
    }

    /// Marks `shard` as processed on this core.
    pub fn shard_seen(&self, shard: u16) {
        let mut bits = self.shards_seen.borrow_mut();
        let word = usize::from(shard / 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        bits[word] |= 1 << (shard % 64);
    }

    pub fn report(&self, core: usize) -> CoreReport {
        CoreReport {
            core,
            udp_datagrams: self.udp_datagrams.get(),
            udp_batches: self.udp_batches.get(),
            tcp_connections_accepted: self.tcp_connections_accepted.get(),
            tcp_frames: self.tcp_frames.get(),
            tcp_bytes: self.tcp_bytes.get(),
            events_parsed: self.events_parsed.get(),
            frames_truncated: self.frames_truncated.get(),
            routed_local: self.routed_local.get(),
            routed_remote: self.routed_remote.get(),
            shard_records: self.shard_records.get(),
            alerts: self.alerts.get(),
            groups_evicted: self.groups_evicted.get(),
            quarantined: self
                .quarantined
                .borrow()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            dropped: self
                .dropped
                .borrow()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            shards_seen: self
                .shards_seen
                .borrow()
                .iter()
                .enumerate()
                .flat_map(|(word, bits)| {
                    (0..64u16)
                        .filter(move |bit| bits & (1 << bit) != 0)
                        .map(move |bit| word as u16 * 64 + bit)
                })
                .collect(),
        }
    }
}

/// A core's counters when it stopped, printed as JSON at exit.
#[derive(Debug, Clone, Serialize)]
pub struct CoreReport {
    pub core: usize,
    pub udp_datagrams: u64,
    pub udp_batches: u64,
    pub tcp_connections_accepted: u64,
    pub tcp_frames: u64,
    pub tcp_bytes: u64,
    pub events_parsed: u64,
    pub frames_truncated: u64,
    pub routed_local: u64,
    pub routed_remote: u64,
    pub shard_records: u64,
    pub alerts: u64,
    pub groups_evicted: u64,
    pub quarantined: BTreeMap<String, u64>,
    pub dropped: BTreeMap<String, u64>,
    pub shards_seen: Vec<u16>,
}
