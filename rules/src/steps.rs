//! A `temporal_ordered` window's steps: each event of the group's window
//! as one step per input it matched, with its event time and its sequence
//! number within the window, kept ascending for the chain search
//! ([`Steps::chain`]) and for expiry (the oldest goes first).
//!
//! They were items of the group's [`crate::items::ItemSet`] (a tag of the
//! position and the sequence number), but a user who runs `sudo` all day
//! fills a window to [`crate::correlation::ORDERED_EVENTS_MAX`] steps, its
//! set in the two-tree form: every event was an insert into both trees
//! and, once full, a removal from both, 4.6% of a paced core's samples with
//! the harness's scenario rules. Events reach their group in time order
//! nearly always, so here a step goes on the back of a deque and expiry
//! takes the front; one that arrives out of order is inserted at its
//! place. A mask of the inputs held answers whether every input is there
//! (most groups of a rule whose first input is rare lack it) without a
//! search; the step that goes clears its input's bit when no other step
//! of that input is left (a scan that stops at the first one, nearly
//! always the next step).
//!
//! Steps are ordered by `(time, position, sequence number's little-endian
//! bytes)`: the order the item set gave the tags, so which steps a chain
//! takes among events at the same instant is what it was.

use std::collections::VecDeque;

use crate::correlation::heap_block;
use crate::correlation_rule::CORRELATION_INPUTS_MAX;

/// One input an event matched. Field order is the sort order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
struct Step {
    time_ns: i64,
    /// The input's position in the rule's list (below
    /// [`CORRELATION_INPUTS_MAX`]).
    position: u8,
    /// The event's sequence number in the window, bytes swapped: numeric
    /// order is the order of its little-endian bytes (see the module
    /// docs). Distinct events have distinct ones; an event that matched
    /// several inputs has one step per input, all with its number.
    order: u64,
}

/// The steps of one `temporal_ordered` window; see the module docs.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub(crate) struct Steps {
    /// The next event's sequence number.
    next_seq: u64,
    /// Ascending, each step once.
    steps: VecDeque<Step>,
    /// Bit `p`: some step is of input position `p`.
    present: u64,
}

impl Steps {
    /// How many steps the window holds.
    pub(crate) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Adds one event at `time_ns` that matched the inputs in `mask`
    /// (those below `inputs`), with the next sequence number.
    pub(crate) fn push_event(&mut self, mask: u64, inputs: usize, time_ns: i64) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let mut bits = mask;
        while bits != 0 {
            let position = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if position >= inputs {
                break;
            }
            let step = Step {
                time_ns,
                position: position as u8,
                order: seq.swap_bytes(),
            };
            if self.steps.back().is_none_or(|last| *last < step) {
                self.steps.push_back(step);
            } else {
                let at = self.steps.partition_point(|held| *held < step);
                self.steps.insert(at, step);
            }
            self.present |= 1 << position;
        }
    }

    /// The oldest step's time.
    pub(crate) fn oldest_ns(&self) -> Option<i64> {
        self.steps.front().map(|step| step.time_ns)
    }

    /// Drops the oldest step; returns whether there was one.
    pub(crate) fn pop_oldest(&mut self) -> bool {
        let Some(step) = self.steps.pop_front() else {
            return false;
        };
        if !self.steps.iter().any(|left| left.position == step.position) {
            self.present &= !(1u64 << (step.position & 63));
        }
        true
    }

    /// Empties the window (after it fired), keeping its buffers.
    pub(crate) fn clear(&mut self) {
        self.next_seq = 0;
        self.steps.clear();
        self.present = 0;
    }

    /// Finds inputs `0..inputs` in order of event time (ties allowed, each
    /// a different event) within `span_ns`, preferring the latest start
    /// (the tightest chain); returns its first and last times. Arrival
    /// order does not matter: events of one group can reach the owning
    /// shard from several ingest cores in any order, and the result is the
    /// same as if they had arrived sorted.
    pub(crate) fn chain(&self, inputs: usize, span_ns: i64) -> Option<(i64, i64)> {
        // A chain needs a step of every input: without one (most groups of
        // a rule whose first input is rare), there is nothing to search.
        let all = u64::MAX >> (64 - inputs.clamp(1, CORRELATION_INPUTS_MAX));
        if inputs == 0 || self.present & all != all {
            return None;
        }
        let mut used = Vec::with_capacity(inputs);
        let starts = self.steps.iter().rev().filter(|step| step.position == 0);
        'starts: for start in starts {
            used.clear();
            used.push(start.order);
            let mut last_ns = start.time_ns;
            for position in 1..inputs {
                let from = self.steps.partition_point(|step| step.time_ns < last_ns);
                let next = self.steps.range(from..).find(|step| {
                    usize::from(step.position) == position && !used.contains(&step.order)
                });
                match next {
                    Some(step) if step.time_ns.saturating_sub(start.time_ns) <= span_ns => {
                        last_ns = step.time_ns;
                        used.push(step.order);
                    }
                    _ => continue 'starts,
                }
            }
            return Some((start.time_ns, last_ns));
        }
        None
    }

    /// The estimated heap bytes the steps own (not the struct itself).
    pub(crate) fn heap_bytes(&self) -> usize {
        heap_block(self.steps.capacity() * size_of::<Step>())
    }

    /// Whether the invariants hold (ascending, each step once, positions
    /// below the inputs' cap, the mask that of the steps, at most
    /// `steps_max` steps). Linear: for tests and checkpoints.
    pub(crate) fn is_consistent(&self, steps_max: usize) -> bool {
        let mut present = 0u64;
        for step in &self.steps {
            if usize::from(step.position) >= CORRELATION_INPUTS_MAX {
                return false;
            }
            present |= 1 << step.position;
        }
        self.steps.len() <= steps_max
            && present == self.present
            && self
                .steps
                .iter()
                .zip(self.steps.iter().skip(1))
                .all(|(a, b)| a < b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each form of an `ItemSet` the steps once were, and both sizes of
    /// window here: no chain while an input is missing, one once each is
    /// there, in time order within the span.
    #[test]
    fn a_chain_needs_every_input_in_order_within_the_span() {
        for steps in [3u64, 40] {
            let mut window = Steps::default();
            // Second-input events at 10, 20, ...; no first input yet.
            for seq in 0..steps {
                window.push_event(0b10, 3, 10 * (seq as i64 + 1));
            }
            assert_eq!(window.len(), steps as usize);
            assert_eq!(window.chain(2, 1_000), None);
            // A third input is missing as well.
            assert_eq!(window.chain(3, 1_000), None);
            // A first input at 15, after the event at 10: the chain runs
            // from it to the next second input (20).
            window.push_event(0b01, 3, 15);
            assert_eq!(window.chain(2, 1_000), Some((15, 20)));
            assert_eq!(window.chain(2, 4), None, "20 is past 15 + 4");
            assert_eq!(window.chain(3, 1_000), None);
            // And a third input after that.
            window.push_event(0b100, 3, 25);
            assert_eq!(window.chain(3, 1_000), Some((15, 25)));
            assert!(window.is_consistent(usize::MAX));
            // Positions at or past the rule's inputs are not steps.
            let before = window.len();
            window.push_event(0b1000, 3, 30);
            assert_eq!(window.len(), before);
        }
    }

    /// One event that matched two inputs stands for one of them only.
    #[test]
    fn one_event_is_never_two_steps() {
        let mut window = Steps::default();
        window.push_event(0b11, 2, 10);
        assert_eq!(window.len(), 2);
        assert_eq!(window.chain(2, 100), None);
        window.push_event(0b10, 2, 10);
        assert_eq!(window.chain(2, 100), Some((10, 10)));
    }

    /// Does a chain start at `start` (an index into `steps`, sorted)?
    /// Every combination, for single-input events (where the greedy search
    /// is exact).
    fn chain_from(steps: &[(i64, u8)], start: usize, inputs: usize, span_ns: i64) -> Option<i64> {
        fn go(
            steps: &[(i64, u8)],
            from_ns: i64,
            start_ns: i64,
            position: usize,
            inputs: usize,
            span_ns: i64,
        ) -> Option<i64> {
            if position == inputs {
                return Some(from_ns);
            }
            steps
                .iter()
                .filter(|(t, p)| {
                    usize::from(*p) == position && *t >= from_ns && *t - start_ns <= span_ns
                })
                .filter_map(|(t, _)| go(steps, *t, start_ns, position + 1, inputs, span_ns))
                .min()
        }
        let (start_ns, position) = steps[start];
        (position == 0)
            .then(|| go(steps, start_ns, start_ns, 1, inputs, span_ns))
            .flatten()
    }

    /// Random single-input events, in and out of order, with expiry:
    /// the window stays consistent, holds what a sorted list would, and
    /// its chain is the latest start that has one, ending where the
    /// earliest completion from it does.
    #[test]
    fn the_chain_is_the_latest_start_an_exhaustive_search_finds() {
        let mut next = crate::test_scramble(0x2545_f491_4f6c_dd1d);
        let mut found = 0;
        for round in 0..400 {
            let inputs = 1 + (next() % 3) as usize;
            let span_ns = 5 + (next() % 20) as i64;
            let mut window = Steps::default();
            let mut model: Vec<(i64, u8)> = Vec::new();
            let mut clock = 0i64;
            for step in 0..(next() % 14) {
                let roll = next();
                // Mostly forward, sometimes an older event.
                let time_ns = if roll.is_multiple_of(5) {
                    clock - (roll >> 8) as i64 % 10
                } else {
                    clock += (roll >> 8) as i64 % 4;
                    clock
                };
                let position = ((roll >> 16) % inputs as u64) as u8;
                window.push_event(1 << position, inputs, time_ns);
                model.push((time_ns, position));
                model.sort();
                if roll.is_multiple_of(7) && window.pop_oldest() {
                    model.remove(0);
                }
                assert!(window.is_consistent(usize::MAX), "{round} {step}");
                let held: Vec<(i64, u8)> = window
                    .steps
                    .iter()
                    .map(|s| (s.time_ns, s.position))
                    .collect();
                assert_eq!(held, model, "{round} {step}");
                assert_eq!(window.oldest_ns(), model.first().map(|s| s.0));
                let want = (0..model.len()).rev().find_map(|i| {
                    chain_from(&model, i, inputs, span_ns).map(|end| (model[i].0, end))
                });
                // The latest start by time; among starts at one instant
                // any gives the same times.
                assert_eq!(window.chain(inputs, span_ns), want, "{round} {step}");
                found += usize::from(want.is_some());
            }
        }
        assert!(found > 100, "{found}");
    }

    #[test]
    fn mask_and_order_are_checked() {
        let mut window = Steps::default();
        window.push_event(0b1, 2, 5);
        window.push_event(0b10, 2, 6);
        assert!(window.is_consistent(2));
        assert!(!window.is_consistent(1));
        let mut mismasked = window.clone();
        mismasked.present = 0b111;
        assert!(!mismasked.is_consistent(2));
        let mut unsorted = window.clone();
        unsorted.steps.swap(0, 1);
        assert!(!unsorted.is_consistent(2));
        let mut out_of_range = window.clone();
        out_of_range.steps[0].position = 200;
        assert!(!out_of_range.is_consistent(2));
    }

    /// An input's bit goes with its last step, not before.
    #[test]
    fn an_input_is_present_while_a_step_of_it_is_left() {
        let mut window = Steps::default();
        window.push_event(0b01, 2, 5);
        window.push_event(0b10, 2, 6);
        window.push_event(0b10, 2, 7);
        assert_eq!(window.present, 0b11);
        assert!(window.pop_oldest());
        assert_eq!(window.present, 0b10);
        assert!(window.pop_oldest());
        assert_eq!(window.present, 0b10);
        assert!(window.pop_oldest());
        assert_eq!(window.present, 0);
        assert!(!window.pop_oldest());
        // Every position a rule can have, and its chain check.
        let mut wide = Steps::default();
        wide.push_event(u64::MAX, 64, 1);
        assert_eq!((wide.len(), wide.present), (64, u64::MAX));
        assert!(wide.is_consistent(64));
        assert_eq!(wide.chain(64, 0), None, "one event is not 64 steps");
    }

    #[test]
    fn a_cleared_window_starts_again() {
        let mut window = Steps::default();
        window.push_event(0b1, 1, 5);
        window.clear();
        assert_eq!((window.len(), window.next_seq), (0, 0));
        assert!(window.is_consistent(0));
    }
}
