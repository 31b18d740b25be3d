//! Alert suppression: folding repeats of one alert into the first.
//!
//! This module owns [`Suppressor`], the pure state the engine consults
//! before it emits an alert: per rule and group, the first alert opens a
//! window of a configured length, and every further alert of the same rule
//! and group inside that window is folded into the first (its count goes
//! up) instead of being emitted. It must not read a clock (the alert's
//! event time is the argument), emit anything, or know alert formats; the
//! engine decides what "fold" means for its outputs (e.g. update a count on
//! the stored alert with the returned id).
//!
//! Windows are measured in event time and are fixed from the first alert:
//! an alert at `t` folds into an open entry whose `first_ns <= t <=
//! first_ns + window_ns`; one later than that opens a new entry (and is
//! emitted). An alert older than the entry's start (out of order) folds
//! too, since it belongs to the same burst. An entry is dropped by
//! [`Suppressor::advance`] on the clock the alerts' arrivals are on (the
//! node's clock live, event time in a replay): `window_ns` after the first
//! alert arrived, so a sender whose clock is hours off has its repeats
//! folded for as long as any other (compared with its event time, the
//! node's clock dropped its windows at once, or kept them for hours).
//! The state is bounded by
//! `entries_max` (oldest-expiring entry evicted first, counted in
//! [`Suppressor::evicted_total`]) and is rkyv-archivable so it can travel
//! with a shard's checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use crate::correlation_rule::rule_id_hash;

/// What the engine should do with an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuppressDecision {
    /// Emit it: no open window for its rule and group.
    Emit,
    /// Do not emit it: fold it into the alert with this id, which has now
    /// absorbed `count` alerts (itself included).
    FoldInto {
        /// The id of the first alert of the window.
        id: String,
        /// How many alerts the window has absorbed, the first included.
        count: u64,
    },
}

/// One open suppression window.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Entry {
    id: String,
    first_ns: i64,
    until_ns: i64,
    /// When `advance` drops it: the first alert's arrival plus the window.
    due_ns: i64,
    count: u64,
}

/// Per rule and group suppression windows. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Suppressor {
    window_ns: i64,
    entries_max: u64,
    evicted_total: u64,
    folded_total: u64,
    /// `(rule id hash, group key)` to its open window.
    entries: BTreeMap<(u64, Vec<u8>), Entry>,
    /// `(due_ns, rule id hash, group key)`: expiry and eviction order.
    by_due: BTreeSet<(i64, u64, Vec<u8>)>,
}

impl Suppressor {
    /// A suppressor folding repeats within `window_ns` (at least 1 ns)
    /// and holding at most `entries_max` windows (at least one).
    pub fn new(window_ns: i64, entries_max: usize) -> Self {
        Suppressor {
            window_ns: window_ns.max(1),
            entries_max: entries_max.max(1) as u64,
            evicted_total: 0,
            folded_total: 0,
            entries: BTreeMap::new(),
            by_due: BTreeSet::new(),
        }
    }

    /// Decides about one alert of rule `rule_id` for group `group_key` (the
    /// correlation group key, or for single-event alerts whatever the
    /// engine groups them by, e.g. the host) with id `id` at event time
    /// `time_ns`, arriving at `arrival_ns` (on the clock `advance` is
    /// given).
    pub fn check(
        &mut self,
        rule_id: &str,
        group_key: &[u8],
        id: &str,
        time_ns: i64,
        arrival_ns: i64,
    ) -> SuppressDecision {
        let key = (rule_id_hash(rule_id), group_key.to_vec());
        if let Some(entry) = self.entries.get_mut(&key) {
            if time_ns <= entry.until_ns {
                entry.count += 1;
                self.folded_total += 1;
                return SuppressDecision::FoldInto {
                    id: entry.id.clone(),
                    count: entry.count,
                };
            }
            // The window is over: this alert opens the next one.
            let due_ns = entry.due_ns;
            self.entries.remove(&key);
            let removed = self.by_due.remove(&(due_ns, key.0, key.1.clone()));
            debug_assert!(removed);
        }
        if self.entries.len() as u64 >= self.entries_max {
            if let Some((due_ns, hash, group)) = self.by_due.pop_first() {
                let removed = self.entries.remove(&(hash, group));
                debug_assert!(removed.is_some_and(|e| e.due_ns == due_ns));
                self.evicted_total += 1;
            }
        }
        let until_ns = time_ns.saturating_add(self.window_ns);
        let due_ns = arrival_ns.saturating_add(self.window_ns);
        self.by_due.insert((due_ns, key.0, key.1.clone()));
        self.entries.insert(
            key,
            Entry {
                id: id.to_owned(),
                first_ns: time_ns,
                until_ns,
                due_ns,
                count: 1,
            },
        );
        debug_assert_eq!(self.entries.len(), self.by_due.len());
        debug_assert!(self.entries.len() as u64 <= self.entries_max);
        SuppressDecision::Emit
    }

    /// Drops windows that came due before `now_ns` (on the arrivals'
    /// clock) and appends `(id, count)` of each closed window that folded
    /// repeats (count above one) to `out`, so the engine can publish the
    /// final count of the first alert.
    pub fn advance_closed(&mut self, now_ns: i64, out: &mut Vec<(String, u64)>) {
        while let Some((due_ns, _, _)) = self.by_due.first() {
            if *due_ns >= now_ns {
                break;
            }
            if let Some((_, hash, group)) = self.by_due.pop_first() {
                if let Some(entry) = self.entries.remove(&(hash, group)) {
                    if entry.count > 1 {
                        out.push((entry.id, entry.count));
                    }
                }
            }
        }
        debug_assert_eq!(self.entries.len(), self.by_due.len());
    }

    /// Drops windows that came due before `now_ns` (on the arrivals' clock).
    pub fn advance(&mut self, now_ns: i64) {
        while let Some((due_ns, _, _)) = self.by_due.first() {
            if *due_ns >= now_ns {
                break;
            }
            if let Some((_, hash, group)) = self.by_due.pop_first() {
                self.entries.remove(&(hash, group));
            }
        }
        debug_assert_eq!(self.entries.len(), self.by_due.len());
    }

    /// Open windows.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Windows evicted at the cap before they ended.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// Alerts folded instead of emitted.
    pub fn folded_total(&self) -> u64 {
        self.folded_total
    }

    /// Whether the two indices agree (tests and checkpoint loads).
    pub fn check_invariants(&self) -> bool {
        self.entries.len() == self.by_due.len()
            && self.entries.len() as u64 <= self.entries_max
            && self.entries.iter().all(|((hash, group), entry)| {
                entry.count >= 1
                    && entry.first_ns <= entry.until_ns
                    && self.by_due.contains(&(entry.due_ns, *hash, group.clone()))
            })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn closed_windows_report_their_folded_count() {
        let mut s = super::Suppressor::new(100, 10);
        assert_eq!(
            s.check("r", b"g", "first", 0, 0),
            super::SuppressDecision::Emit
        );
        assert!(matches!(
            s.check("r", b"g", "second", 50, 50),
            super::SuppressDecision::FoldInto { .. }
        ));
        assert_eq!(
            s.check("r", b"h", "lonely", 10, 10),
            super::SuppressDecision::Emit
        );
        let mut closed = Vec::new();
        s.advance_closed(99, &mut closed);
        assert!(closed.is_empty(), "windows end at first + window");
        s.advance_closed(200, &mut closed);
        assert_eq!(
            closed,
            vec![("first".to_string(), 2)],
            "a window without repeats is not reported"
        );
        assert_eq!(s.entry_count(), 0);
    }

    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn repeats_fold_into_the_first_within_the_window() {
        let mut s = Suppressor::new(60 * S, 16);
        assert_eq!(s.check("r", b"g", "id1", 0, 0), SuppressDecision::Emit);
        assert_eq!(
            s.check("r", b"g", "id2", 30 * S, 30 * S),
            SuppressDecision::FoldInto {
                id: "id1".to_owned(),
                count: 2
            }
        );
        // The window edge is inclusive.
        assert_eq!(
            s.check("r", b"g", "id3", 60 * S, 60 * S),
            SuppressDecision::FoldInto {
                id: "id1".to_owned(),
                count: 3
            }
        );
        // Another group and another rule are independent.
        assert_eq!(
            s.check("r", b"h", "id4", 30 * S, 30 * S),
            SuppressDecision::Emit
        );
        assert_eq!(
            s.check("q", b"g", "id5", 30 * S, 30 * S),
            SuppressDecision::Emit
        );
        // One nanosecond past the window opens a new one.
        assert_eq!(
            s.check("r", b"g", "id6", 60 * S + 1, 60 * S + 1),
            SuppressDecision::Emit
        );
        assert_eq!(s.folded_total(), 2);
        assert!(s.check_invariants());
    }

    /// A sender five hours behind (or ahead of) the clock `advance` is
    /// given has its repeats folded as long as one whose clock is right:
    /// the window is dropped `window` after the first alert arrived.
    #[test]
    fn windows_end_on_the_arrival_clock_whatever_the_senders_clock() {
        const H: i64 = 3600 * S;
        for skew in [-5 * H, 0, 5 * H] {
            let mut s = Suppressor::new(10 * S, 8);
            let node = 1_000 * S;
            assert_eq!(
                s.check("r", b"g", "first", node + skew, node),
                SuppressDecision::Emit
            );
            s.advance(node + 9 * S);
            assert_eq!(
                s.check("r", b"g", "again", node + 9 * S + skew, node + 9 * S),
                SuppressDecision::FoldInto {
                    id: "first".into(),
                    count: 2
                },
                "skew {skew}"
            );
            let mut closed = Vec::new();
            s.advance_closed(node + 10 * S, &mut closed);
            assert!(closed.is_empty(), "skew {skew}: closed early");
            s.advance_closed(node + 10 * S + 1, &mut closed);
            assert_eq!(closed, vec![("first".to_string(), 2)], "skew {skew}");
            assert!(s.check_invariants());
        }
    }

    #[test]
    fn bounded_with_counted_eviction_and_advance() {
        let mut s = Suppressor::new(10 * S, 2);
        assert_eq!(s.check("r", b"a", "a", 0, 0), SuppressDecision::Emit);
        assert_eq!(s.check("r", b"b", "b", S, S), SuppressDecision::Emit);
        assert_eq!(
            s.check("r", b"c", "c", 2 * S, 2 * S),
            SuppressDecision::Emit
        );
        assert_eq!(s.evicted_total(), 1);
        assert_eq!(s.entry_count(), 2);
        // `a` was evicted, so it emits again.
        assert_eq!(
            s.check("r", b"a", "a2", 3 * S, 3 * S),
            SuppressDecision::Emit
        );
        s.advance(12 * S + 1);
        assert_eq!(s.entry_count(), 1);
        assert!(s.check_invariants());
    }

    #[test]
    fn rkyv_round_trip() {
        let mut s = Suppressor::new(10 * S, 8);
        let _ = s.check("r", b"a", "a", 0, 0);
        let _ = s.check("r", b"a", "a", S, S);
        let bytes = match rkyv::to_bytes::<rkyv::rancor::Error>(&s) {
            Ok(bytes) => bytes,
            Err(error) => panic!("serialize: {error}"),
        };
        let mut restored = match rkyv::from_bytes::<Suppressor, rkyv::rancor::Error>(&bytes[..]) {
            Ok(restored) => restored,
            Err(error) => panic!("deserialize: {error}"),
        };
        assert_eq!(restored, s);
        assert!(restored.check_invariants());
        assert_eq!(
            restored.check("r", b"a", "x", 2 * S, 2 * S),
            s.check("r", b"a", "x", 2 * S, 2 * S)
        );
    }
}
