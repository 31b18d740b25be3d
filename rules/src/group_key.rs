//! A correlation group's key, held in place when it is short.
//!
//! Every group's key is stored twice (the group table's key, and the id
//! table's copy that finds a group from the indices), and compared on
//! every lookup. As a `Vec<u8>` each copy was a heap block of its own:
//! two allocations when a group is made, and a cache miss on every
//! lookup to read the bytes a bucket points to. Most keys are short: a key
//! is each group-by value after a four-byte length, so an IPv4 address is
//! 11–19 bytes and a source and destination pair 22–38. Up to
//! [`INLINE_MAX`] bytes are held in place, in 40 bytes (a `Vec` header was
//! 24, plus a heap block of at least 32 for the bytes).
//!
//! Hashing and equality are those of the bytes (`[u8]`), whatever the
//! form, so a table of keys is looked up with a borrowed `&[u8]`.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use crate::correlation::heap_block;

/// Longest key held in place: two IPv4 addresses with their lengths.
/// With the length and the form's tag the key is 40 bytes.
pub(crate) const INLINE_MAX: usize = 38;

/// The bytes of a group key.
#[derive(Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) enum GroupKey {
    /// `bytes[..len]`, `len` at most [`INLINE_MAX`].
    Inline { len: u8, bytes: [u8; INLINE_MAX] },
    /// A longer key.
    Heap(Box<[u8]>),
}

impl GroupKey {
    pub(crate) fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE_MAX => {
                let mut bytes = [0u8; INLINE_MAX];
                bytes[..key.len()].copy_from_slice(key);
                GroupKey::Inline { len, bytes }
            }
            _ => GroupKey::Heap(key.into()),
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            // A restored key with a length past the array is refused by
            // `is_valid`; the cap only keeps this from panicking before.
            GroupKey::Inline { len, bytes } => &bytes[..usize::from(*len).min(INLINE_MAX)],
            GroupKey::Heap(bytes) => bytes,
        }
    }

    /// Whether the key is one [`GroupKey::new`] could make (a restored
    /// archive is checked with this).
    pub(crate) fn is_valid(&self) -> bool {
        match self {
            GroupKey::Inline { len, .. } => usize::from(*len) <= INLINE_MAX,
            GroupKey::Heap(_) => true,
        }
    }

    /// Estimated heap bytes the key owns (none in place).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            GroupKey::Inline { .. } => 0,
            GroupKey::Heap(bytes) => heap_block(bytes.len()),
        }
    }
}

impl Deref for GroupKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for GroupKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for GroupKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for GroupKey {}

impl Hash for GroupKey {
    /// The hash of the bytes as `[u8]` hashes them, as `Borrow` requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_of_every_length_keep_their_bytes_and_hash_as_bytes() {
        let hasher = ahash::RandomState::new();
        for len in 0..=3 * INLINE_MAX {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 1) as u8).collect();
            let key = GroupKey::new(&bytes);
            assert_eq!(key.as_slice(), &bytes[..]);
            assert_eq!(matches!(key, GroupKey::Inline { .. }), len <= INLINE_MAX);
            assert!(key.is_valid());
            assert_eq!(key.heap_bytes() == 0, len <= INLINE_MAX);
            assert_eq!(hasher.hash_one(&key), hasher.hash_one(&bytes[..]));
            // The same bytes in the other form are the same key.
            let other = match &key {
                GroupKey::Inline { .. } => GroupKey::Heap(bytes.clone().into()),
                GroupKey::Heap(_) => key.clone(),
            };
            assert_eq!(key, other);
            assert_eq!(hasher.hash_one(&key), hasher.hash_one(&other));
        }
        assert_eq!(size_of::<GroupKey>(), 40);
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
            bytes: [7; INLINE_MAX],
        };
        assert!(!key.is_valid());
        assert_eq!(key.as_slice().len(), INLINE_MAX);
    }
}
