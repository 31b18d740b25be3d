//! Event-count correlation state: per-shard, deterministic, checkpointable.
//!
//! This module owns the state machine of Sigma `event_count` correlations
//! and the deterministic alert id. A [`CorrelationState`] belongs to one
//! shard on one core: no locks, no clock, no IO. Time is the event time the
//! engine passes in, and watermarks come in through
//! [`CorrelationState::advance`]. The state derives rkyv's traits so a shard
//! can be checkpointed and moved between nodes; every collection in it is
//! ordered (B-trees), so the same sequence of calls gives the same alerts,
//! in the same order, with the same ids, on every node.
//!
//! ## Window semantics
//!
//! A group is one correlation and one group key. Let `span` be the
//! correlation's timespan.
//!
//! - **Eager conditions** (with a lower bound: `gt`, `gte`, `eq`, or a range
//!   that has one) use a *sliding* window of `span` ending at the newest
//!   event of the group. An event with time `t` is in the window when
//!   `t >= newest - span` (both ends inclusive, so a window spans exactly
//!   `span`). Events older than that drop out. An event that arrives out of
//!   order (older than the group's newest) still counts if it is inside the
//!   window; one that is already outside is ignored. The alert fires on the
//!   event that makes the count reach the lower bound, with `first_seen` the
//!   oldest event time in the window and id
//!   `alert_id(rule id, group key, first_seen)`. The group's window is then
//!   reset (emptied), so a continuing attack raises one new alert per further
//!   threshold's worth of events, each with its own id. Because the count
//!   grows by one per event, an eager range fires when the count enters it;
//!   its upper bound can never cut in (documented doubt: a backend query
//!   would reject a window that later overshoots the range).
//!   Timestamps are kept per group in a sorted ring bounded by the threshold
//!   (at most [`crate::EVENT_COUNT_THRESHOLD_MAX`]).
//! - **Closing conditions** (only an upper bound: `lt`, `lte`) can only be
//!   decided when a window ends. The window is *tumbling*: it starts at the
//!   group's first event and covers `[start, start + span]`. It closes when
//!   an event arrives with `t > start + span` (that event then starts the
//!   next window) or when [`CorrelationState::advance`] is called with
//!   `now_ns > start + span`. On close the alert fires if the count is
//!   within the bound; its id uses the window start. Out-of-order events
//!   earlier than the start are counted in the current window. A group
//!   exists only once it has an event, so "fewer than N" means "between 1
//!   and N-1", as a grouped query would report it.
//!
//! Groups whose window can no longer change (eager: newest + span <
//! `now_ns`; closing: closed) are dropped by `advance`. When a new group
//! would exceed `groups_max`, the group with the oldest newest-event time is
//! evicted without an alert and counted in [`CorrelationState::evicted_total`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::ruleset::RuleSet;

/// The most raw lines kept per group and carried in an alert.
pub const SAMPLES_MAX: usize = 5;

/// A correlation alert: the condition of correlation `correlation` held for
/// the group `group_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorrelationAlert {
    /// Index of the correlation in the rule set.
    pub correlation: u32,
    /// Deterministic alert id, see [`alert_id`].
    pub id: String,
    /// The group key (see [`RuleSet::group_key`]).
    pub group_key: Vec<u8>,
    /// How many events were counted in the window.
    pub count: u64,
    /// The oldest event time counted.
    pub first_seen_ns: i64,
    /// The newest event time counted.
    pub last_seen_ns: i64,
    /// Up to [`SAMPLES_MAX`] raw lines of counted events, oldest first, the
    /// most recently observed ones.
    pub samples: Vec<Vec<u8>>,
}

/// A deterministic alert id: 32 lowercase hex digits of xxh3-128 over the
/// rule id, the group key and the window start, each length-prefixed so
/// that different triples cannot collide by concatenation. Replaying the
/// same events therefore yields the same ids, which lets the alert journal
/// drop duplicates after a crash.
///
/// Single-event alerts use [`event_alert_id`].
pub fn alert_id(rule_id: &str, group_key: &[u8], window_start_ns: i64) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&(rule_id.len() as u64).to_le_bytes());
    hasher.update(rule_id.as_bytes());
    hasher.update(&(group_key.len() as u64).to_le_bytes());
    hasher.update(group_key);
    hasher.update(&window_start_ns.to_le_bytes());
    let id = format!("{:032x}", hasher.digest128());
    debug_assert_eq!(id.len(), 32);
    id
}

/// The id of a single-event alert: [`alert_id`] with the raw line as the
/// group and the event time as the window. Two identical lines with the
/// same time are indistinguishable and get the same id, which is what
/// replay deduplication wants.
pub fn event_alert_id(rule_id: &str, raw: &[u8], time_ns: i64) -> String {
    alert_id(rule_id, raw, time_ns)
}

/// One kept raw line.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Sample {
    time_ns: i64,
    raw: Vec<u8>,
}

/// The state of one group.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Group {
    /// Stable id of the group within this state, for the indices.
    gid: u64,
    /// The newest event time observed.
    newest_ns: i64,
    /// When `advance` may drop or close the group (see module docs).
    deadline_ns: i64,
    /// Closing conditions: the window start.
    window_start_ns: i64,
    /// Closing conditions: events counted in the window.
    count: u64,
    /// Closing conditions: oldest event time counted.
    window_first_ns: i64,
    /// Closing conditions: newest event time counted.
    window_last_ns: i64,
    /// Eager conditions: event times in the window, sorted ascending, at
    /// most the threshold.
    times: VecDeque<i64>,
    /// The most recently observed raw lines.
    samples: VecDeque<Sample>,
}

/// Per-shard correlation state. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CorrelationState {
    groups_max: u64,
    evicted_total: u64,
    next_gid: u64,
    /// Groups by correlation index, then group key.
    groups: BTreeMap<u32, BTreeMap<Vec<u8>, Group>>,
    /// `(newest_ns, gid)` of every group: eviction order.
    by_newest: BTreeSet<(i64, u64)>,
    /// `(deadline_ns, gid)` of every group: `advance` order.
    by_deadline: BTreeSet<(i64, u64)>,
    /// gid to `(correlation, key)`, to find a group from the indices.
    keys: BTreeMap<u64, (u32, Vec<u8>)>,
}

impl CorrelationState {
    /// Empty state holding at most `groups_max` groups (at least one).
    pub fn new(groups_max: usize) -> Self {
        CorrelationState {
            groups_max: groups_max.max(1) as u64,
            evicted_total: 0,
            next_gid: 0,
            groups: BTreeMap::new(),
            by_newest: BTreeSet::new(),
            by_deadline: BTreeSet::new(),
            keys: BTreeMap::new(),
        }
    }

    /// How many groups were evicted because the cap was reached.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// How many groups are held.
    pub fn group_count(&self) -> usize {
        self.keys.len()
    }

    /// Feeds one event that matched a base rule of correlation
    /// `correlation`, with the group key from [`RuleSet::group_key`].
    /// Returns an alert when the condition becomes true (eager) or when this
    /// event closes a window whose count satisfies it (closing). A
    /// correlation index out of range is a caller bug: debug builds assert,
    /// release builds return `None`.
    pub fn observe(
        &mut self,
        rules: &RuleSet,
        correlation: u32,
        group_key: &[u8],
        time_ns: i64,
        raw: &[u8],
    ) -> Option<CorrelationAlert> {
        if correlation as usize >= rules.correlation_count() {
            debug_assert!(false, "correlation {correlation} out of range");
            return None;
        }
        let meta = rules.correlation(correlation as usize);
        let span_ns = meta.timespan_ns;
        let condition = meta.condition;
        let exists = self
            .groups
            .get(&correlation)
            .is_some_and(|groups| groups.contains_key(group_key));
        if !exists {
            self.create(
                correlation,
                group_key,
                time_ns,
                span_ns,
                condition.is_eager(),
            );
        }
        let group = self.groups.get_mut(&correlation)?.get_mut(group_key)?;
        let (old_newest, old_deadline) = (group.newest_ns, group.deadline_ns);
        group.newest_ns = group.newest_ns.max(time_ns);

        let alert = if let Some(threshold) = condition.min {
            group.deadline_ns = group.newest_ns.saturating_add(span_ns);
            let window_low_ns = group.newest_ns.saturating_sub(span_ns);
            if time_ns < window_low_ns {
                // Late and already outside the window: not counted.
                None
            } else {
                let at = group.times.partition_point(|&t| t <= time_ns);
                group.times.insert(at, time_ns);
                while group.times.front().is_some_and(|&t| t < window_low_ns) {
                    group.times.pop_front();
                }
                push_sample(&mut group.samples, time_ns, raw);
                let count = group.times.len() as u64;
                debug_assert!(count <= threshold, "the window resets at the threshold");
                if condition.holds(count) {
                    let first_seen_ns = group.times.front().copied().unwrap_or(time_ns);
                    let last_seen_ns = group.times.back().copied().unwrap_or(time_ns);
                    let alert = CorrelationAlert {
                        correlation,
                        id: alert_id(&meta.id, group_key, first_seen_ns),
                        group_key: group_key.to_vec(),
                        count,
                        first_seen_ns,
                        last_seen_ns,
                        samples: samples_since(&group.samples, first_seen_ns),
                    };
                    group.times.clear();
                    group.samples.clear();
                    Some(alert)
                } else {
                    None
                }
            }
        } else {
            let mut alert = None;
            if time_ns > group.window_start_ns.saturating_add(span_ns) {
                alert = close_window(&meta.id, correlation, group_key, group, condition);
                group.window_start_ns = time_ns;
                group.window_first_ns = time_ns;
                group.window_last_ns = time_ns;
                group.count = 0;
                group.samples.clear();
            }
            group.count += 1;
            group.window_first_ns = group.window_first_ns.min(time_ns);
            group.window_last_ns = group.window_last_ns.max(time_ns);
            group.deadline_ns = group.window_start_ns.saturating_add(span_ns);
            push_sample(&mut group.samples, time_ns, raw);
            alert
        };

        let gid = group.gid;
        let (new_newest, new_deadline) = (group.newest_ns, group.deadline_ns);
        if new_newest != old_newest {
            let removed = self.by_newest.remove(&(old_newest, gid));
            debug_assert!(removed);
            self.by_newest.insert((new_newest, gid));
        }
        if new_deadline != old_deadline {
            let removed = self.by_deadline.remove(&(old_deadline, gid));
            debug_assert!(removed);
            self.by_deadline.insert((new_deadline, gid));
        }
        alert
    }

    /// Creates an empty group for `(correlation, key)`, evicting the group
    /// with the oldest newest-event time if the cap is reached.
    fn create(&mut self, correlation: u32, key: &[u8], time_ns: i64, span_ns: i64, eager: bool) {
        if self.keys.len() as u64 >= self.groups_max {
            if let Some(&(_, victim)) = self.by_newest.first() {
                self.remove(victim);
                self.evicted_total += 1;
            }
        }
        debug_assert!((self.keys.len() as u64) < self.groups_max);
        let gid = self.next_gid;
        self.next_gid += 1;
        let deadline_ns = time_ns.saturating_add(span_ns);
        let group = Group {
            gid,
            newest_ns: time_ns,
            deadline_ns,
            window_start_ns: time_ns,
            count: 0,
            window_first_ns: time_ns,
            window_last_ns: time_ns,
            times: VecDeque::new(),
            samples: VecDeque::new(),
        };
        debug_assert!(eager || group.times.is_empty());
        self.groups
            .entry(correlation)
            .or_default()
            .insert(key.to_vec(), group);
        self.by_newest.insert((time_ns, gid));
        self.by_deadline.insert((deadline_ns, gid));
        self.keys.insert(gid, (correlation, key.to_vec()));
    }

    /// Removes a group and its index entries, returning it.
    fn remove(&mut self, gid: u64) -> Option<(u32, Vec<u8>, Group)> {
        let (correlation, key) = self.keys.remove(&gid)?;
        let groups = self.groups.get_mut(&correlation)?;
        let group = groups.remove(&key)?;
        if groups.is_empty() {
            self.groups.remove(&correlation);
        }
        let removed_newest = self.by_newest.remove(&(group.newest_ns, gid));
        let removed_deadline = self.by_deadline.remove(&(group.deadline_ns, gid));
        assert!(
            removed_newest && removed_deadline,
            "group indices out of sync"
        );
        Some((correlation, key, group))
    }

    /// Advances event time to the watermark `now_ns`: closes windows that
    /// ended before it (appending the alerts of closing conditions that
    /// hold to `out`, in deadline order) and drops groups that can no longer
    /// change. Groups of correlations the rule set no longer has are dropped.
    pub fn advance(&mut self, rules: &RuleSet, now_ns: i64, out: &mut Vec<CorrelationAlert>) {
        while let Some(&(deadline_ns, gid)) = self.by_deadline.first() {
            if deadline_ns >= now_ns {
                break;
            }
            let Some((correlation, key, mut group)) = self.remove(gid) else {
                // Unreachable while the indices agree; stop rather than spin.
                debug_assert!(false, "deadline index names a missing group");
                self.by_deadline.remove(&(deadline_ns, gid));
                continue;
            };
            if (correlation as usize) >= rules.correlation_count() {
                continue;
            }
            let meta = rules.correlation(correlation as usize);
            if !meta.condition.is_eager() {
                if let Some(alert) =
                    close_window(&meta.id, correlation, &key, &mut group, meta.condition)
                {
                    out.push(alert);
                }
            }
        }
    }

    /// Checks that the indices agree with the groups. Linear in the number
    /// of groups: for tests and after loading a checkpoint.
    pub fn check_invariants(&self) -> bool {
        let mut count = 0usize;
        for (correlation, groups) in &self.groups {
            if groups.is_empty() {
                return false;
            }
            for (key, group) in groups {
                count += 1;
                let consistent = self.keys.get(&group.gid) == Some(&(*correlation, key.clone()))
                    && self.by_newest.contains(&(group.newest_ns, group.gid))
                    && self.by_deadline.contains(&(group.deadline_ns, group.gid))
                    && group.samples.len() <= SAMPLES_MAX
                    && group
                        .times
                        .iter()
                        .zip(group.times.iter().skip(1))
                        .all(|(a, b)| a <= b);
                if !consistent {
                    return false;
                }
            }
        }
        count == self.keys.len()
            && count == self.by_newest.len()
            && count == self.by_deadline.len()
            && count as u64 <= self.groups_max
    }
}

/// Keeps the most recent [`SAMPLES_MAX`] raw lines, reusing the buffer of
/// the line it drops so a busy group stops allocating.
fn push_sample(samples: &mut VecDeque<Sample>, time_ns: i64, raw: &[u8]) {
    let mut buffer = if samples.len() >= SAMPLES_MAX {
        samples.pop_front().map(|s| s.raw).unwrap_or_default()
    } else {
        Vec::with_capacity(raw.len())
    };
    buffer.clear();
    buffer.extend_from_slice(raw);
    samples.push_back(Sample {
        time_ns,
        raw: buffer,
    });
    debug_assert!(samples.len() <= SAMPLES_MAX);
}

/// The kept lines with a time inside the window (at or after `first_ns`).
fn samples_since(samples: &VecDeque<Sample>, first_ns: i64) -> Vec<Vec<u8>> {
    samples
        .iter()
        .filter(|s| s.time_ns >= first_ns)
        .map(|s| s.raw.clone())
        .collect()
}

/// The alert of a closing condition's window, if its count holds.
fn close_window(
    rule_id: &str,
    correlation: u32,
    key: &[u8],
    group: &mut Group,
    condition: crate::ruleset::CountCondition,
) -> Option<CorrelationAlert> {
    debug_assert!(!condition.is_eager());
    if group.count == 0 || !condition.holds(group.count) {
        return None;
    }
    Some(CorrelationAlert {
        correlation,
        id: alert_id(rule_id, key, group.window_start_ns),
        group_key: key.to_vec(),
        count: group.count,
        first_seen_ns: group.window_first_ns,
        last_seen_ns: group.window_last_ns,
        samples: group.samples.iter().map(|s| s.raw.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::RuleSource;

    const RULES: &str = r#"
title: base
id: base
detection:
    sel:
        event.action: x
    condition: sel
---
title: count
id: count
correlation:
    type: event_count
    rules: [base]
    group-by: [source.ip]
    timespan: 10s
    condition:
        gte: 3
---
title: few
id: few
correlation:
    type: event_count
    rules: [base]
    group-by: [source.ip]
    timespan: 10s
    condition:
        lte: 2
"#;

    const S: i64 = 1_000_000_000;

    fn rules() -> RuleSet {
        let source = RuleSource {
            origin: "test".to_owned(),
            text: RULES.to_owned(),
        };
        match RuleSet::compile(&[source]) {
            Ok(rules) => rules,
            Err(errors) => panic!("{errors:?}"),
        }
    }

    #[test]
    fn alert_id_is_stable_and_separates_fields() {
        let id = alert_id("rule", b"key", 42);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, alert_id("rule", b"key", 42));
        assert_ne!(id, alert_id("rulek", b"ey", 42));
        assert_ne!(id, alert_id("rule", b"key", 43));
    }

    #[test]
    fn rkyv_round_trip_keeps_every_group() {
        let rules = rules();
        let mut state = CorrelationState::new(16);
        for (i, ip) in [b"a", b"b", b"a", b"c"].iter().enumerate() {
            let t = i as i64 * S;
            for correlation in 0..2 {
                let _ = state.observe(&rules, correlation, &ip[..], t, b"line");
            }
        }
        assert!(state.check_invariants());
        let bytes = match rkyv::to_bytes::<rkyv::rancor::Error>(&state) {
            Ok(bytes) => bytes,
            Err(error) => panic!("serialize: {error}"),
        };
        let archived = match rkyv::access::<ArchivedCorrelationState, rkyv::rancor::Error>(&bytes) {
            Ok(archived) => archived,
            Err(error) => panic!("access: {error}"),
        };
        assert_eq!(archived.keys.len(), state.group_count());
        let mut restored: CorrelationState =
            match rkyv::deserialize::<CorrelationState, rkyv::rancor::Error>(archived) {
                Ok(restored) => restored,
                Err(error) => panic!("deserialize: {error}"),
            };
        assert_eq!(restored, state);
        assert!(restored.check_invariants());
        // The restored state carries on exactly as the original would.
        let a = state.observe(&rules, 0, b"a", 5 * S, b"line");
        let b = restored.observe(&rules, 0, b"a", 5 * S, b"line");
        assert!(a.is_some());
        assert_eq!(a, b);
        // Corrupted bytes are refused, not trusted.
        let mut corrupt = bytes.to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&corrupt);
        let _ = rkyv::access::<ArchivedCorrelationState, rkyv::rancor::Error>(&aligned);
    }

    #[test]
    fn eager_window_edges() {
        let rules = rules();
        let mut state = CorrelationState::new(16);
        assert_eq!(state.observe(&rules, 0, b"k", 0, b"1"), None);
        assert_eq!(state.observe(&rules, 0, b"k", 5 * S, b"2"), None);
        // Exactly `span` after the first: still inside.
        let alert = state.observe(&rules, 0, b"k", 10 * S, b"3");
        let Some(alert) = alert else {
            panic!("no alert at the edge")
        };
        assert_eq!(
            (alert.count, alert.first_seen_ns, alert.last_seen_ns),
            (3, 0, 10 * S)
        );
        assert_eq!(alert.id, alert_id("count", b"k", 0));
        assert_eq!(
            alert.samples,
            vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
        );
        // One nanosecond later the first event has left the window.
        let mut state = CorrelationState::new(16);
        let _ = state.observe(&rules, 0, b"k", 0, b"1");
        let _ = state.observe(&rules, 0, b"k", 5 * S, b"2");
        assert_eq!(state.observe(&rules, 0, b"k", 10 * S + 1, b"3"), None);
    }

    #[test]
    fn advance_drops_idle_groups_and_closes_windows() {
        let rules = rules();
        let mut state = CorrelationState::new(16);
        let _ = state.observe(&rules, 0, b"k", 0, b"1");
        let _ = state.observe(&rules, 1, b"k", 0, b"1");
        assert_eq!(state.group_count(), 2);
        let mut out = Vec::new();
        state.advance(&rules, 10 * S, &mut out);
        assert!(out.is_empty());
        assert_eq!(state.group_count(), 2);
        state.advance(&rules, 10 * S + 1, &mut out);
        assert_eq!(state.group_count(), 0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].correlation, 1);
        assert_eq!(out[0].count, 1);
        assert!(state.check_invariants());
    }

    #[test]
    fn eviction_takes_the_oldest_newest_event() {
        let rules = rules();
        let mut state = CorrelationState::new(2);
        let _ = state.observe(&rules, 0, b"a", 3 * S, b"");
        let _ = state.observe(&rules, 0, b"b", S, b"");
        let _ = state.observe(&rules, 0, b"c", 2 * S, b"");
        assert_eq!(state.evicted_total(), 1);
        assert_eq!(state.group_count(), 2);
        assert!(state.check_invariants());
        let mut out = Vec::new();
        state.advance(&rules, i64::MAX, &mut out);
        assert_eq!(state.group_count(), 0);
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let rules = rules();
        let mut state = CorrelationState::new(4);
        for t in [i64::MIN, i64::MAX, 0, i64::MIN + 1, i64::MAX - 1] {
            let _ = state.observe(&rules, 0, b"k", t, b"");
            let _ = state.observe(&rules, 1, b"k", t, b"");
        }
        let mut out = Vec::new();
        state.advance(&rules, i64::MIN, &mut out);
        state.advance(&rules, i64::MAX, &mut out);
        assert!(state.check_invariants());
    }
}
