//! The shards one core owns and their correlation state.
//!
//! A core creates a shard's state the first time a record for it arrives.
//! Nothing here is shared: the owning core is the only reader and writer,
//! so there are no locks. The state itself (windows, groups, eviction) lives
//! in `shardwatch_rules::CorrelationState`, which is rkyv-archivable so a
//! shard can later be checkpointed or moved as one snapshot.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use shardwatch_rules::{CorrelationAlert, CorrelationState, IdHasher, Observation, RuleSet};

use crate::route::RouteRecord;

/// A new shard's empty state under the caps (`groups_per_rule_max` 0: the
/// shard cap alone).
fn empty_state(groups_per_shard_max: usize, groups_per_rule_max: usize) -> CorrelationState {
    let mut state = CorrelationState::new(groups_per_shard_max);
    state.set_rule_groups_max(groups_per_rule_max);
    state
}

/// The clock correlation windows advance on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowClock {
    /// The node's clock (a live core): [`ShardStates::advance`] is given
    /// the wall clock and an observation arrives at its record's receive
    /// time, so a window ends when the event time it had left after its
    /// newest event has passed on the node's clock since that event was
    /// received. A sender whose clock is hours off (a device writing
    /// local time without a zone, a forwarder delivering late) has its
    /// windows kept for as long as one whose clock is right.
    Node,
    /// Event time (`shardwatch replay` of a file): `advance` is given an
    /// event-time watermark and an observation arrives at its event time.
    EventTime,
}

/// The shard states of one core.
pub struct ShardStates {
    /// By shard number, hashed by [`IdHasher`]: the numbers are the
    /// node's own.
    states: HashMap<u16, CorrelationState, BuildHasherDefault<IdHasher>>,
    groups_per_shard_max: usize,
    /// Cap on one rule's groups in a shard (0: the shard cap alone).
    groups_per_rule_max: usize,
    clock: WindowClock,
}

impl ShardStates {
    /// No shards yet; each shard will hold at most `groups_per_shard_max`
    /// groups, at most `groups_per_rule_max` of one rule (0: no cap of
    /// its own), and its windows advance on `clock`.
    pub fn new(
        groups_per_shard_max: usize,
        groups_per_rule_max: usize,
        clock: WindowClock,
    ) -> Self {
        assert!(groups_per_shard_max > 0);
        ShardStates {
            states: HashMap::default(),
            groups_per_shard_max,
            groups_per_rule_max,
            clock,
        }
    }

    /// Feeds one routed record to its shard; alerts it completes (and
    /// alerts of correlations chained on those) are appended to `out`.
    /// Returns false when the record's rule is not in `rules` (it was
    /// removed by a reload while the record was in flight).
    pub fn observe(
        &mut self,
        rules: &RuleSet,
        record: &RouteRecord<'_>,
        out: &mut Vec<CorrelationAlert>,
    ) -> bool {
        let Some(correlation) = rules.correlation_by_hash(record.rule_hash) else {
            return false;
        };
        let observation = Observation {
            correlation,
            group_key: record.key,
            input_mask: record.input_mask,
            value: record.value,
            time_ns: record.time_ns,
            arrival_ns: match self.clock {
                WindowClock::Node => record.received_ns,
                WindowClock::EventTime => record.time_ns,
            },
            raw: record.raw,
        };
        let (shard_max, rule_max) = (self.groups_per_shard_max, self.groups_per_rule_max);
        self.states
            .entry(record.shard)
            .or_insert_with(|| empty_state(shard_max, rule_max))
            .observe_into(rules, &observation, out);
        true
    }

    /// Advances every shard to `now_ns` (on the states' [`WindowClock`]), collecting alerts of windows that
    /// closed (conditions such as `lt`), tagged with their shard.
    pub fn advance(
        &mut self,
        rules: &RuleSet,
        now_ns: i64,
        out: &mut Vec<(u16, CorrelationAlert)>,
    ) {
        let mut fired = Vec::new();
        for (&shard, state) in self.states.iter_mut() {
            fired.clear();
            state.advance(rules, now_ns, &mut fired);
            out.extend(fired.drain(..).map(|alert| (shard, alert)));
        }
        // HashMap order is arbitrary; alerts leave in shard order so the
        // output is deterministic.
        out.sort_by_key(|(shard, alert)| (*shard, alert.first_seen_ns));
    }

    /// [`ShardStates::advance`] for one shard: its alerts, in
    /// `first_seen` order, appended to `out` (a shard without state adds
    /// none). Advancing every shard this way, in ascending order, gives
    /// the same alerts in the same order as `advance`; one shard at a time
    /// lets the core's other tasks run in between.
    pub fn advance_shard(
        &mut self,
        shard: u16,
        rules: &RuleSet,
        now_ns: i64,
        out: &mut Vec<CorrelationAlert>,
    ) {
        if let Some(state) = self.states.get_mut(&shard) {
            let from = out.len();
            state.advance(rules, now_ns, out);
            out[from..].sort_by_key(|alert| alert.first_seen_ns);
        }
    }

    /// The shards that hold state, in order, for a checkpoint.
    pub fn shard_ids(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self.states.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// One shard's state.
    pub fn get(&self, shard: u16) -> Option<&CorrelationState> {
        self.states.get(&shard)
    }

    /// Replaces the states of the given shards (from a checkpoint).
    /// The configured rule cap applies to them (it is configuration, not
    /// state: a restart may change it).
    pub fn restore(&mut self, states: Vec<(u16, CorrelationState)>) {
        for (shard, mut state) in states {
            state.set_rule_groups_max(self.groups_per_rule_max);
            self.states.insert(shard, state);
        }
    }

    /// Adds shard `shard`'s estimated state bytes and groups per detector
    /// kind to `bytes` and `groups` (indices into `stats::STATE_KINDS`;
    /// the last is what no one rule owns). A shard without state adds
    /// nothing. One shard at a time, so a walk over all of them can let
    /// the core's other tasks run between shards.
    pub fn memory_of(&self, shard: u16, rules: &RuleSet, bytes: &mut [u64], groups: &mut [u64]) {
        let shared = crate::stats::STATE_KINDS.len() - 1;
        if let Some(state) = self.states.get(&shard) {
            state.memory_by_correlation(|hash, count, size| {
                let kind = rules
                    .correlation_by_hash(hash)
                    .map(|c| shardwatch_rules::kind_name(rules.correlation(c as usize).kind))
                    .and_then(|name| crate::stats::STATE_KINDS.iter().position(|k| *k == name))
                    // A rule removed by a reload whose groups still age out.
                    .unwrap_or(shared);
                bytes[kind] += size as u64;
                groups[kind] += count as u64;
            });
            bytes[shared] += state.memory_shared() as u64;
        }
    }

    /// The cap on groups per shard now in force (the configured cap, or
    /// lower under a memory bound).
    pub fn groups_cap(&self) -> usize {
        self.groups_per_shard_max
    }

    /// Sets the cap on groups per shard for every shard, present and
    /// future; shards over it evict their stalest groups at once. Returns
    /// how many groups went.
    pub fn set_groups_cap(&mut self, cap: usize) -> u64 {
        self.groups_per_shard_max = cap.max(1);
        self.states
            .values_mut()
            .map(|state| state.set_groups_max(cap.max(1)) as u64)
            .sum()
    }

    /// Groups evicted at the per-shard cap, over all shards.
    pub fn evicted_total(&self) -> u64 {
        self.states.values().map(|s| s.evicted_total()).sum()
    }

    /// Correlation groups held, over all shards.
    pub fn group_count(&self) -> usize {
        self.states.values().map(|s| s.group_count()).sum()
    }

    pub fn shard_count(&self) -> usize {
        self.states.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardwatch_rules::CorrelationKind;

    /// Both caps reach every shard's state, the ones created later and
    /// the ones restored from a checkpoint: the per-rule cap binds first.
    #[test]
    fn the_rule_cap_reaches_new_and_restored_shards() {
        let rules = RuleSet::compile(&RuleSet::builtin_sources()).unwrap();
        // An event_count rule: every record with a key makes a group.
        let hash = (0..rules.correlation_count())
            .map(|i| rules.correlation(i))
            .find(|c| c.kind == CorrelationKind::EventCount)
            .expect("the built-in pack counts events")
            .hash;
        let mut shards = ShardStates::new(100, 3, WindowClock::EventTime);
        let mut out = Vec::new();
        let mut feed = |shards: &mut ShardStates, shard: u16, keys: std::ops::Range<u8>| {
            for i in keys {
                let key = [b'k', i];
                let record = RouteRecord {
                    shard,
                    rule_hash: hash,
                    input_mask: 1,
                    time_ns: i64::from(i),
                    received_ns: 0,
                    key: &key,
                    value: None,
                    raw: b"",
                };
                assert!(shards.observe(&rules, &record, &mut out));
            }
        };
        feed(&mut shards, 7, 0..10);
        assert_eq!(shards.group_count(), 3);
        assert_eq!(shards.evicted_total(), 7);
        // A restored shard held more than the cap: it gives up the rest.
        let mut plain = ShardStates::new(100, 0, WindowClock::EventTime);
        feed(&mut plain, 9, 0..6);
        assert_eq!(plain.group_count(), 6);
        let restored = plain.get(9).cloned().expect("shard 9 holds state");
        shards.restore(vec![(9, restored)]);
        assert_eq!(shards.group_count(), 6);
        assert_eq!(shards.evicted_total(), 7 + 3);
        assert!(out.is_empty());
    }

    /// Advancing shard by shard in ascending order (what the tick's
    /// background expiry does) raises the same alerts in the same order
    /// as one `advance` over every shard, and leaves the same state.
    #[test]
    fn advancing_shard_by_shard_equals_one_advance() {
        let rules = RuleSet::compile(&[shardwatch_rules::RuleSource {
            origin: "test".into(),
            text: r#"title: base
name: base
detection:
    sel:
        event.action: x
    condition: sel
---
title: few
correlation:
    type: event_count
    rules: [base]
    group-by: [source.ip]
    timespan: 10s
    condition:
        lte: 2
"#
            .into(),
        }])
        .unwrap();
        let hash = rules.correlation(0).hash;
        let feed = || {
            let mut shards = ShardStates::new(1000, 0, WindowClock::EventTime);
            let mut out = Vec::new();
            // Shards out of order, groups of one to three events, some
            // windows still open at the advance below.
            for (n, shard) in [9u16, 2, 40, 2, 9, 17, 40, 40, 2].iter().enumerate() {
                let key = [b'k', (n % 4) as u8];
                let record = RouteRecord {
                    shard: *shard,
                    rule_hash: hash,
                    input_mask: 1,
                    time_ns: n as i64 * 3_000_000_000,
                    received_ns: 0,
                    key: &key,
                    value: None,
                    raw: b"line",
                };
                assert!(shards.observe(&rules, &record, &mut out));
            }
            shards
        };
        let now = 24_000_000_000;
        let mut whole = feed();
        let mut expected = Vec::new();
        whole.advance(&rules, now, &mut expected);
        let mut sliced = feed();
        let mut got = Vec::new();
        for shard in sliced.shard_ids() {
            let mut fired = Vec::new();
            sliced.advance_shard(shard, &rules, now, &mut fired);
            got.extend(fired.into_iter().map(|alert| (shard, alert)));
        }
        assert!(!expected.is_empty(), "some windows closed");
        assert_eq!(got, expected);
        assert_eq!(sliced.group_count(), whole.group_count());
        assert!(sliced.group_count() > 0, "some windows are still open");
    }
}
