//! The distinct items of one correlation window (`value_count` values,
//! `temporal` input positions), each with the newest time it was seen,
//! ordered by `(time, item)` for expiry and eviction. (`temporal_ordered`
//! steps are `crate::steps`.)
//!
//! Nearly every group holds one item: a flood of new keys (the overload
//! case) makes groups that see one event and are evicted or expire. Two
//! B-trees per group (by item, by time) cost two ~350-byte nodes and two
//! copies of the item for that one entry, allocated when the group is made
//! and freed when it goes; a criterion bench put a `value_count` group's
//! creation at a full state at 2.1 µs. So a window of one item holds it in
//! place (no block at all), one of up to [`FEW_ITEMS_MAX`] items is one
//! sorted vector (one block, one copy of each item, a linear scan that is
//! a few compares), and only a larger one switches to the two trees, boxed
//! so that they do not widen every group. Both forms keep the same order, so which form
//! a window is in never changes what it reports. Items of up to
//! [`ITEM_INLINE`] bytes are held in place (see `crate::inline_bytes`), so
//! most windows allocate nothing per item.

use std::collections::{btree_set, BTreeMap, BTreeSet};

use crate::correlation::{btree_bytes, heap_block};
use crate::inline_bytes::Item;
#[cfg(any(doc, test))]
use crate::inline_bytes::ITEM_INLINE;

/// Most items a window keeps in its vector form; one more switches it to
/// the trees.
pub(crate) const FEW_ITEMS_MAX: usize = 16;

/// A window of many items goes back to the vector form when popping
/// leaves this many (not at [`FEW_ITEMS_MAX`], so a window at the edge
/// does not switch on every event).
const FEW_AGAIN: usize = FEW_ITEMS_MAX / 2;

/// The items of a window with their newest times; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum ItemSet {
    /// Exactly one entry, in place: the window of nearly every group.
    One((i64, Item)),
    /// No entries, or two to [`FEW_ITEMS_MAX`] `(time, item)` entries,
    /// ascending, each item once.
    Few(Vec<(i64, Item)>),
    /// More: two trees, boxed, so that the forms above stay small.
    Many(Box<Trees>),
}

/// The many-item form of an [`ItemSet`].
#[derive(
    Clone, Debug, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub(crate) struct Trees {
    /// Item to its time.
    by_item: BTreeMap<Item, i64>,
    /// The same entries ordered by `(time, item)`.
    by_time: BTreeSet<(i64, Item)>,
}

impl Default for ItemSet {
    fn default() -> Self {
        ItemSet::Few(Vec::new())
    }
}

/// Entries of an [`ItemSet`] in ascending `(time, item)` order.
pub(crate) enum Entries<'a> {
    Few(std::slice::Iter<'a, (i64, Item)>),
    Many(btree_set::Iter<'a, (i64, Item)>),
}

impl<'a> Iterator for Entries<'a> {
    type Item = &'a (i64, Item);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Entries::Few(it) => it.next(),
            Entries::Many(it) => it.next(),
        }
    }
}

impl DoubleEndedIterator for Entries<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Entries::Few(it) => it.next_back(),
            Entries::Many(it) => it.next_back(),
        }
    }
}

impl ItemSet {
    pub(crate) fn len(&self) -> usize {
        match self {
            ItemSet::One(_) => 1,
            ItemSet::Few(entries) => entries.len(),
            ItemSet::Many(trees) => trees.by_item.len(),
        }
    }

    /// The entries of the vector forms, ascending (`None` for the trees).
    fn as_slice(&self) -> Option<&[(i64, Item)]> {
        match self {
            ItemSet::One(entry) => Some(std::slice::from_ref(entry)),
            ItemSet::Few(entries) => Some(entries),
            ItemSet::Many(_) => None,
        }
    }

    /// Adds `item` seen at `time_ns`, or moves an item seen earlier to
    /// that time (a later sighting of it changes nothing). Returns whether
    /// the item was new.
    pub(crate) fn touch(&mut self, item: &[u8], time_ns: i64) -> bool {
        match self {
            ItemSet::One((seen_ns, held)) if held.as_slice() == item => {
                *seen_ns = (*seen_ns).max(time_ns);
                false
            }
            ItemSet::One(_) => {
                let ItemSet::One(first) = std::mem::take(self) else {
                    unreachable!("matched just above");
                };
                let mut entries = Vec::with_capacity(2);
                entries.push(first);
                insert_sorted(&mut entries, time_ns, Item::new(item));
                *self = ItemSet::Few(entries);
                true
            }
            ItemSet::Few(entries) if entries.is_empty() => {
                // Most windows never see a second item: no block for one.
                *self = ItemSet::One((time_ns, Item::new(item)));
                true
            }
            ItemSet::Few(entries) => {
                match entries.iter().position(|(_, held)| held.as_slice() == item) {
                    Some(at) if entries[at].0 >= time_ns => false,
                    Some(at) => {
                        let (_, held) = entries.remove(at);
                        insert_sorted(entries, time_ns, held);
                        false
                    }
                    None if entries.len() < FEW_ITEMS_MAX => {
                        insert_sorted(entries, time_ns, Item::new(item));
                        true
                    }
                    None => {
                        let mut trees = Trees::default();
                        for (t, held) in entries.drain(..) {
                            trees.by_item.insert(held.clone(), t);
                            trees.by_time.insert((t, held));
                        }
                        trees.by_item.insert(Item::new(item), time_ns);
                        trees.by_time.insert((time_ns, Item::new(item)));
                        *self = ItemSet::Many(Box::new(trees));
                        true
                    }
                }
            }
            ItemSet::Many(trees) => {
                let Trees { by_item, by_time } = &mut **trees;
                match by_item.get_mut(item) {
                    Some(seen_ns) if *seen_ns >= time_ns => false,
                    Some(seen_ns) => {
                        let removed = by_time.remove(&(*seen_ns, Item::new(item)));
                        debug_assert!(removed);
                        *seen_ns = time_ns;
                        by_time.insert((time_ns, Item::new(item)));
                        false
                    }
                    None => {
                        by_item.insert(Item::new(item), time_ns);
                        by_time.insert((time_ns, Item::new(item)));
                        true
                    }
                }
            }
        }
    }

    /// Drops the oldest entry; returns whether there was one.
    pub(crate) fn pop_oldest(&mut self) -> bool {
        match self {
            ItemSet::One(_) => {
                *self = ItemSet::default();
                true
            }
            ItemSet::Few(entries) => {
                if entries.is_empty() {
                    return false;
                }
                entries.remove(0);
                if entries.len() == 1 {
                    // Back in place, the block given back.
                    let last = entries.pop().expect("one entry");
                    *self = ItemSet::One(last);
                }
                true
            }
            ItemSet::Many(trees) => {
                let Trees { by_item, by_time } = &mut **trees;
                let Some((_, item)) = by_time.pop_first() else {
                    return false;
                };
                let removed = by_item.remove(&item);
                debug_assert!(removed.is_some());
                if by_time.len() <= FEW_AGAIN {
                    let few = std::mem::take(by_time).into_iter().collect();
                    *self = ItemSet::Few(few);
                }
                true
            }
        }
    }

    /// The oldest entry's time.
    pub(crate) fn oldest_ns(&self) -> Option<i64> {
        self.entries().next().map(|(t, _)| *t)
    }

    /// The oldest and newest entry times.
    pub(crate) fn span(&self) -> Option<(i64, i64)> {
        let mut entries = self.entries();
        let first = entries.next()?.0;
        let last = entries.next_back().map_or(first, |(t, _)| *t);
        Some((first, last))
    }

    /// Every entry, ascending.
    pub(crate) fn entries(&self) -> Entries<'_> {
        match self {
            ItemSet::Many(trees) => Entries::Many(trees.by_time.iter()),
            _ => Entries::Few(self.as_slice().unwrap_or_default().iter()),
        }
    }

    /// Empties the set, giving back its memory.
    pub(crate) fn clear(&mut self) {
        *self = ItemSet::default();
    }

    /// The estimated heap bytes the set owns. O(items), allocation-free.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            ItemSet::One((_, item)) => item.heap_bytes(),
            ItemSet::Few(entries) => {
                heap_block(entries.capacity() * size_of::<(i64, Item)>())
                    + entries
                        .iter()
                        .map(|(_, item)| item.heap_bytes())
                        .sum::<usize>()
            }
            ItemSet::Many(trees) => {
                let Trees { by_item, by_time } = &**trees;
                let items: usize = by_item.keys().map(Item::heap_bytes).sum();
                let times: usize = by_time.iter().map(|(_, k)| k.heap_bytes()).sum();
                heap_block(size_of::<Trees>())
                    + btree_bytes::<Item, i64>(by_item.len())
                    + items
                    + btree_bytes::<(i64, Item), ()>(by_time.len())
                    + times
            }
        }
    }

    /// Whether the form's invariants hold (every item well formed,
    /// ascending, each item once, the two trees in agreement, each form
    /// used only for its sizes). Linear: for tests and checkpoints.
    pub(crate) fn is_consistent(&self) -> bool {
        match self {
            ItemSet::One((_, item)) => item.is_valid(),
            ItemSet::Few(entries) => {
                entries.len() != 1
                    && entries.len() <= FEW_ITEMS_MAX
                    && entries.iter().all(|(_, item)| item.is_valid())
                    && entries.windows(2).all(|w| w[0] < w[1])
                    && entries
                        .iter()
                        .enumerate()
                        .all(|(i, (_, a))| entries[..i].iter().all(|(_, b)| a != b))
            }
            ItemSet::Many(trees) => {
                let Trees { by_item, by_time } = &**trees;
                by_item.len() == by_time.len()
                    && by_item.len() > FEW_AGAIN
                    && by_time
                        .iter()
                        .all(|(t, item)| item.is_valid() && by_item.get(item) == Some(t))
            }
        }
    }
}

/// Inserts `(time_ns, item)` at its place in ascending entries.
fn insert_sorted(entries: &mut Vec<(i64, Item)>, time_ns: i64, item: Item) {
    let at =
        entries.partition_point(|(t, held)| (*t, held.as_slice()) < (time_ns, item.as_slice()));
    entries.insert(at, (time_ns, item));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two B-trees the set replaced, as the reference.
    #[derive(Default)]
    struct Reference {
        by_item: BTreeMap<Vec<u8>, i64>,
        by_time: BTreeSet<(i64, Vec<u8>)>,
    }

    impl Reference {
        fn touch(&mut self, item: &[u8], time_ns: i64) -> bool {
            match self.by_item.get_mut(item) {
                Some(seen) if *seen >= time_ns => false,
                Some(seen) => {
                    self.by_time.remove(&(*seen, item.to_vec()));
                    *seen = time_ns;
                    self.by_time.insert((time_ns, item.to_vec()));
                    false
                }
                None => {
                    self.by_item.insert(item.to_vec(), time_ns);
                    self.by_time.insert((time_ns, item.to_vec()));
                    true
                }
            }
        }

        fn pop_oldest(&mut self) -> bool {
            match self.by_time.pop_first() {
                Some((_, item)) => self.by_item.remove(&item).is_some(),
                None => false,
            }
        }
    }

    /// Random touches and pops across both forms and back agree with the
    /// two trees step by step: the result of each call, the length, the
    /// entries in order, and the span.
    #[test]
    fn agrees_with_two_trees_across_both_forms() {
        let mut next = crate::test_scramble(0x9e37_79b9_7f4a_7c15);
        let mut set = ItemSet::default();
        let mut reference = Reference::default();
        let mut switches = 0;
        let mut was_few = true;
        for step in 0..50_000 {
            let roll = next();
            // Phases that grow past the vector form and shrink back.
            let growing = (step / 2_000) % 2 == 0;
            let pop = if growing {
                roll.is_multiple_of(8)
            } else {
                !roll.is_multiple_of(3)
            };
            if pop {
                assert_eq!(set.pop_oldest(), reference.pop_oldest(), "step {step}");
            } else {
                let mut item = format!("v{}", (roll >> 8) % 40).into_bytes();
                item[0] = [b'v', b'v', b'w', 255][((roll >> 50) % 4) as usize];
                let time_ns = ((roll >> 20) % 64) as i64;
                let touched = set.touch(&item, time_ns);
                assert_eq!(touched, reference.touch(&item, time_ns), "step {step}");
            }
            assert!(set.is_consistent(), "step {step}");
            assert_eq!(set.len(), reference.by_item.len(), "step {step}");
            let ours: Vec<_> = set.entries().map(|(t, i)| (*t, i.to_vec())).collect();
            let theirs: Vec<_> = reference.by_time.iter().cloned().collect();
            assert_eq!(ours, theirs, "step {step}");
            let span = reference
                .by_time
                .first()
                .map(|(a, _)| (*a, reference.by_time.last().map_or(*a, |(b, _)| *b)));
            assert_eq!(set.span(), span, "step {step}");
            assert_eq!(set.oldest_ns(), span.map(|(a, _)| a), "step {step}");
            let few = !matches!(set, ItemSet::Many(_));
            if few != was_few {
                switches += 1;
                was_few = few;
            }
        }
        assert!(switches >= 4, "both forms exercised ({switches} switches)");
    }

    #[test]
    fn a_malformed_item_is_not_consistent() {
        let bad = Item::Inline {
            len: 200,
            bytes: [b'a'; ITEM_INLINE],
        };
        assert!(!ItemSet::One((1, bad.clone())).is_consistent());
        assert!(!ItemSet::Few(vec![(1, bad.clone()), (2, Item::new(b"b"))]).is_consistent());
        let many = |extra: (i64, Item)| {
            let mut trees = Trees::default();
            for (t, item) in (0..FEW_AGAIN as i64)
                .map(|i| (i, Item::new(format!("v{i}").as_bytes())))
                .chain([extra])
            {
                trees.by_item.insert(item.clone(), t);
                trees.by_time.insert((t, item));
            }
            ItemSet::Many(Box::new(trees))
        };
        assert!(!many((100, bad)).is_consistent());
        assert!(many((100, Item::new(b"a"))).is_consistent());
        assert!(ItemSet::One((1, Item::new(b"a"))).is_consistent());
        // Each form holds only its sizes: one entry is never a vector, a
        // few never the trees.
        assert!(!ItemSet::Few(vec![(1, Item::new(b"a"))]).is_consistent());
        assert!(!ItemSet::Many(Box::default()).is_consistent());
    }

    #[test]
    fn one_item_is_held_in_place() {
        let mut set = ItemSet::default();
        assert!(set.touch(b"22", 5));
        // The window of nearly every group: no block of its own.
        assert!(matches!(&set, ItemSet::One(_)));
        assert_eq!(set.heap_bytes(), 0);
        assert!(!set.touch(b"22", 7));
        assert_eq!(set.span(), Some((7, 7)));
        // One too long to be in place is a block of its own.
        let long = [b'u'; ITEM_INLINE + 1];
        assert!(set.touch(&long, 6));
        let ItemSet::Few(entries) = &set else {
            panic!("two items are the vector form");
        };
        assert_eq!(
            set.heap_bytes(),
            heap_block(entries.capacity() * size_of::<(i64, Item)>()) + heap_block(long.len())
        );
        // Popping back to one entry gives the vector's block back.
        assert!(set.pop_oldest());
        assert!(matches!(&set, ItemSet::One((7, _))));
        assert_eq!(set.heap_bytes(), 0);
        set.clear();
        assert_eq!(set.heap_bytes(), 0);
        assert!(!set.pop_oldest());
    }
}
