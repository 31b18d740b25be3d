//! Short byte strings held in place: a correlation group's key, and the
//! items of a window (`value_count` values, `temporal_ordered` steps).
//!
//! Every group's key is stored twice (the group table's key, and the id
//! table's copy that finds a group from the indices), and compared on
//! every lookup. As a `Vec<u8>` each copy was a heap block of its own:
//! two allocations when a group is made, and a cache miss on every
//! lookup to read the bytes a bucket points to. Most keys are short: a key
//! is each group-by value after a four-byte length, so an IPv4 address is
//! 11–19 bytes and a source and destination pair 22–38. Up to
//! [`GROUP_KEY_INLINE`] bytes are held in place, in 40 bytes (a `Vec`
//! header was 24, plus a heap block of at least 32 for the bytes).
//!
//! A window's items were `Vec<u8>`s too: an allocation per item and per
//! copy of it (the many-item form keeps two), and a pointer to follow on
//! every comparison in its trees. Items are mostly short (a user name, an
//! address, a port, a `temporal_ordered` step's nine-byte tag), so up to
//! [`ITEM_INLINE`] bytes are held in place, in 24 bytes: the size of the
//! `Vec` header alone, so the trees' nodes do not grow.
//!
//! Hashing, equality and order are those of the bytes (`[u8]`), whatever
//! the form, so a table or tree of them is looked up with a borrowed
//! `&[u8]`.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use crate::correlation::heap_block;

/// Longest group key held in place: two IPv4 addresses with their
/// lengths. With the length and the form's tag the key is 40 bytes.
pub(crate) const GROUP_KEY_INLINE: usize = 38;

/// Longest window item held in place; with the length and the form's tag
/// an item is 24 bytes.
pub(crate) const ITEM_INLINE: usize = 22;

/// A correlation group's key.
pub(crate) type GroupKey = InlineBytes<GROUP_KEY_INLINE>;

/// A window's item.
pub(crate) type Item = InlineBytes<ITEM_INLINE>;

/// Bytes, in place when at most `N` of them.
#[derive(Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum InlineBytes<const N: usize> {
    /// `bytes[..len]`, `len` at most `N`.
    Inline { len: u8, bytes: [u8; N] },
    /// Longer bytes.
    Heap(Box<[u8]>),
}

impl<const N: usize> InlineBytes<N> {
    pub(crate) fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= N => {
                let mut bytes = [0u8; N];
                bytes[..key.len()].copy_from_slice(key);
                InlineBytes::Inline { len, bytes }
            }
            _ => InlineBytes::Heap(key.into()),
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            // A restored value with a length past the array is refused by
            // `is_valid`; the cap only keeps this from panicking before.
            InlineBytes::Inline { len, bytes } => &bytes[..usize::from(*len).min(N)],
            InlineBytes::Heap(bytes) => bytes,
        }
    }

    /// Whether the value is one [`InlineBytes::new`] could make (a
    /// restored archive is checked with this).
    pub(crate) fn is_valid(&self) -> bool {
        match self {
            InlineBytes::Inline { len, .. } => usize::from(*len) <= N,
            InlineBytes::Heap(_) => true,
        }
    }

    /// Estimated heap bytes the value owns (none in place).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            InlineBytes::Inline { .. } => 0,
            InlineBytes::Heap(bytes) => heap_block(bytes.len()),
        }
    }
}

impl<const N: usize> Deref for InlineBytes<N> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const N: usize> Borrow<[u8]> for InlineBytes<N> {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Equality and order by `as_slice()`: those of the bytes as `[u8]` has
/// them, as `Borrow` requires of the live form; rkyv's archived B-trees
/// want the archived form ordered too.
macro_rules! by_bytes {
    ($type:ident) => {
        impl<const N: usize> PartialEq for $type<N> {
            fn eq(&self, other: &Self) -> bool {
                self.as_slice() == other.as_slice()
            }
        }

        impl<const N: usize> Eq for $type<N> {}

        impl<const N: usize> Ord for $type<N> {
            fn cmp(&self, other: &Self) -> Ordering {
                self.as_slice().cmp(other.as_slice())
            }
        }

        impl<const N: usize> PartialOrd for $type<N> {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}

by_bytes!(InlineBytes);
by_bytes!(ArchivedInlineBytes);

impl<const N: usize> Hash for InlineBytes<N> {
    /// The hash of the bytes as `[u8]` hashes them, as `Borrow` requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl<const N: usize> std::fmt::Debug for InlineBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

impl<const N: usize> ArchivedInlineBytes<N> {
    /// The archived bytes (capped as [`InlineBytes::as_slice`] caps them).
    fn as_slice(&self) -> &[u8] {
        match self {
            ArchivedInlineBytes::Inline { len, bytes } => &bytes[..usize::from(*len).min(N)],
            ArchivedInlineBytes::Heap(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Values of every length keep their bytes, hash, compare and order
    /// as the bytes do in either form, and are in place up to `N`.
    fn every_length_behaves_as_bytes<const N: usize>(size: usize) {
        let hasher = ahash::RandomState::new();
        let values: Vec<Vec<u8>> = (0..=3 * N)
            .map(|len| (0..len).map(|i| (i * 37 + 1) as u8).collect())
            .collect();
        for bytes in &values {
            let len = bytes.len();
            let value = InlineBytes::<N>::new(bytes);
            assert_eq!(value.as_slice(), &bytes[..]);
            assert_eq!(matches!(value, InlineBytes::Inline { .. }), len <= N);
            assert!(value.is_valid());
            assert_eq!(value.heap_bytes() == 0, len <= N);
            assert_eq!(hasher.hash_one(&value), hasher.hash_one(&bytes[..]));
            // The same bytes in the other form are the same value.
            let other = match &value {
                InlineBytes::Inline { .. } => InlineBytes::Heap(bytes.clone().into()),
                InlineBytes::Heap(_) => value.clone(),
            };
            assert_eq!(value, other);
            assert_eq!(value.cmp(&other), Ordering::Equal);
            assert_eq!(hasher.hash_one(&value), hasher.hash_one(&other));
            for than in &values {
                let them = InlineBytes::<N>::new(than);
                assert_eq!(value.cmp(&them), bytes.cmp(than));
                assert_eq!(other.cmp(&them), bytes.cmp(than));
            }
        }
        assert_eq!(size_of::<InlineBytes<N>>(), size);
    }

    #[test]
    fn keys_and_items_of_every_length_behave_as_bytes() {
        every_length_behaves_as_bytes::<GROUP_KEY_INLINE>(40);
        every_length_behaves_as_bytes::<ITEM_INLINE>(24);
        // An item is no larger than the `Vec` it replaced.
        assert_eq!(size_of::<Item>(), size_of::<Vec<u8>>());
    }

    #[test]
    fn a_tree_of_items_is_searched_by_bytes() {
        let items: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("user-{i:03}{}", "x".repeat(i % 40)).into_bytes())
            .collect();
        let tree: std::collections::BTreeMap<Item, usize> = items
            .iter()
            .enumerate()
            .map(|(i, item)| (Item::new(item), i))
            .collect();
        for (i, item) in items.iter().enumerate() {
            assert_eq!(tree.get(&item[..]), Some(&i));
        }
        let in_order: Vec<&[u8]> = tree.keys().map(|k| k.as_slice()).collect();
        let mut sorted: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
        sorted.sort();
        assert_eq!(in_order, sorted);
    }

    #[test]
    fn a_table_of_keys_is_looked_up_by_bytes() {
        let mut table: HashMap<GroupKey, usize, ahash::RandomState> = HashMap::default();
        let keys: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("203.0.{i}.7\x1f10.0.0.{}", i % 50).into_bytes())
            .collect();
        for (i, key) in keys.iter().enumerate() {
            assert!(table.insert(GroupKey::new(key), i).is_none());
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(table.get(&key[..]), Some(&i));
        }
        assert_eq!(table.get(&b"203.0.1.7"[..]), None);
    }

    #[test]
    fn an_inline_length_past_the_array_is_invalid_and_does_not_panic() {
        let key = GroupKey::Inline {
            len: 200,
            bytes: [7; GROUP_KEY_INLINE],
        };
        assert!(!key.is_valid());
        assert_eq!(key.as_slice().len(), GROUP_KEY_INLINE);
    }
}
