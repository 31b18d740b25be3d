//! Correlation state: per-shard, deterministic, checkpointable.
//!
//! This module owns the state machines of Sigma correlations
//! (`event_count`, `value_count`, `temporal`, `temporal_ordered`), the
//! feeding of correlation alerts into correlations that refer to them
//! (chaining), and the deterministic alert id. A [`CorrelationState`]
//! belongs to one shard on one core: no locks, no clock, no IO. Times are
//! what the engine passes in (each observation's event time and arrival,
//! see "Clocks"), and the clock comes in through
//! [`CorrelationState::advance`]. The state archives with rkyv
//! ([`CorrelationState::archive_into`], [`CorrelationState::restore`]:
//! the derived indices are rebuilt, not archived) so a shard can be
//! checkpointed and moved between nodes; whatever decides an order (which
//! group expires or is evicted first) is an ordered index, so the same
//! sequence of calls gives the same alerts, in the same order, with the
//! same ids, on every node. It must not read events itself: the engine
//! (with [`RuleSet`]'s helpers) extracts group keys, input masks and
//! values and passes them in an [`Observation`].
//!
//! ## Keys and reloads
//!
//! Groups are keyed by `(correlation hash, group key)`, where the hash is
//! [`crate::CorrelationMeta::hash`] (xxh3-64 of the rule id), not the
//! correlation's index: after a rule reload that keeps a rule, its groups
//! carry on with the new [`RuleSet`], whatever index it now has. Each group
//! also records the rule's definition fingerprint; a group whose rule
//! changed under the same id is reset on its next observation, and groups
//! of rules that are gone are dropped by `advance`.
//!
//! ## Clocks
//!
//! Windows are measured in event time: which events count together, the
//! alert's `first_seen`, `last_seen` and id are all event time. When a
//! window *ends* for `advance` is not: a sender's clock may be hours off
//! the node's (a device writing local time without a zone, a forwarder
//! delivering late), and comparing its event times with the node's clock
//! closed its groups at once (five hours behind: no brute force ever
//! fired) or kept them for hours (ahead). So each observation also
//! carries its arrival, on the clock `advance` is given (the node's clock
//! live; the event time itself in a replay, where `advance` is given an
//! event-time watermark). A group remembers its latest arrival, and its
//! deadline (the event time at which its window ends or it can no longer
//! change) is due on that clock when the event time it had left after
//! its newest event has passed since that arrival:
//! `due = arrived + (deadline - newest)`. A sliding window is thus kept
//! `span` after its newest event arrived, and a tumbling one closes when
//! what was left of it has passed. Anomaly buckets close the same way:
//! `advance` hands a detector `newest + (now - arrived)` as its now. An
//! observation never moves a group's due time earlier (it keeps the
//! latest value computed): a tumbling window's computed due time falls
//! whenever its event time runs faster than its arrivals, and following
//! it was a move in the due index per event. With arrivals equal to event
//! times (a replay), `due` is the deadline and this is plain event-time
//! watermarking.
//!
//! ## Window semantics
//!
//! A group is one correlation and one group key. Let `span` be the
//! correlation's timespan. What is counted depends on the kind: events
//! (`event_count`), distinct values of the condition field (`value_count`),
//! or distinct inputs (`temporal`). `temporal_ordered` tracks ordered
//! chains of inputs instead of a count.
//!
//! - **Eager conditions** (with a lower bound: `gt`, `gte`, `eq`, a range
//!   that has one, and every temporal condition) use a *sliding* window of
//!   `span` ending at the newest event of the group. An item with time `t`
//!   is in the window when `t >= newest - span` (both ends inclusive, so a
//!   window spans exactly `span`). Older items drop out. An event that
//!   arrives out of order (older than the group's newest) still counts if it
//!   is inside the window; one that is already outside is ignored. A value
//!   or input seen again keeps its newest time. The alert fires on the
//!   event that makes the count reach the lower bound, with `first_seen` the
//!   oldest item time in the window and id
//!   `alert_id(rule id, group key, first_seen)`. The group's window is then
//!   reset (emptied), so a continuing attack raises one new alert per further
//!   threshold's worth of items, each with its own id. Because the count
//!   grows by at most one per event, an eager range fires when the count
//!   enters it; its upper bound can never cut in (documented doubt: a
//!   backend query would reject a window that later overshoots the range).
//! - **`temporal_ordered`** remembers the group's input events inside the
//!   window (time, input position, a per-window sequence number; at most
//!   `ORDERED_EVENTS_MAX`) and fires on the event that completes a chain of
//!   inputs `0..n` whose event times are in order (ties allowed, each step a
//!   different event) within `span` of its start, preferring the latest
//!   start. Order is event time, not arrival: a group's events reach its
//!   shard from several ingest cores in any order. `first_seen` is the
//!   chain's start.
//! - **Closing conditions** (only an upper bound: `lt`, `lte`) can only be
//!   decided when a window ends, so their window is *tumbling*, as a
//!   bucketed backend query is: it starts at the group's first event and
//!   covers `[start, start + span]`. It closes when an event arrives with
//!   `t > start + span` (that event then starts the next window) or when
//!   [`CorrelationState::advance`] finds it due (see "Clocks").
//!   On close the alert fires if the count is within the bound; its id uses
//!   the window start. A group exists only once it has an event, so "fewer
//!   than N" means "between 1 and N-1", as a grouped query would report it.
//!
//! ## Bounds
//!
//! Groups: when a new group would exceed `groups_max`, a group is evicted
//! without an alert and counted in [`CorrelationState::evicted_total`]:
//! from the rule that holds the most groups in this state, the one with
//! the oldest latest arrival among its groups that have seen a single
//! observation, and only when there are none, among those that have seen
//! more ("protected"). An entity explosion (every key new) thus churns
//! through its own rule's single-event groups, while other rules' groups
//! (a lateral-movement sequence waiting for its next step) and groups with
//! progress (a brute force under way) stay. A second, lower cap may bound
//! each rule on its own (`rule_groups_max`, see
//! [`CorrelationState::set_rule_groups_max`]): a rule at it gives up its
//! own stalest group (same order) for a new one, counted the same way, so
//! one rule never holds more than its share of the shard whatever the
//! other rules hold. The order they evict in is an index a state builds
//! only when a cap first needs a victim, and drops again once under half
//! of its caps (`ArrivalIndex`): below its caps a state files its groups
//! by due time and key alone. Items per group: eager windows hold
//! at most the threshold (at most [`crate::EVENT_COUNT_THRESHOLD_MAX`]);
//! closing `value_count` windows hold at most [`VALUES_PER_GROUP_MAX`]
//! distinct values, evicting the oldest and counting it in
//! [`CorrelationState::values_evicted_total`]. Queued chained alerts: at
//! most [`PENDING_ALERTS_MAX`], the rest counted in
//! [`CorrelationState::pending_dropped_total`].
//!
//! ## Chaining
//!
//! When a correlation A fires, every correlation B that lists A is fed an
//! observation at once, inside the same state: B's group key is A's (the
//! rule set guarantees they are the same bytes, so B's group lives on the
//! same shard), its input mask is A's position in B, its time A's
//! `last_seen_ns` and its raw line A's newest sample. A's alert itself is
//! emitted only if A is standalone (see
//! [`crate::CorrelationMeta::standalone`]). Chains are acyclic and at most
//! [`crate::CHAIN_DEPTH_MAX`] deep, so feeding ends.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use hashbrown::{hash_table, HashTable};

use crate::anomaly::{AnomalyBody, Counters, Finding};
use crate::anomaly_rule::{AnomalyMetric, AnomalySpec};
use crate::correlation_rule::{CorrelationKind, CorrelationMeta, CountCondition, CHAIN_DEPTH_MAX};
use crate::inline_bytes::GroupKey;
use crate::items::ItemSet;
use crate::ruleset::RuleSet;
use crate::steps::Steps;

/// The most raw lines kept per group and carried in an alert.
pub const SAMPLES_MAX: usize = 5;

/// The most distinct values a closing (`lt`/`lte`) `value_count` window
/// keeps per group. Eager windows are bounded by their threshold instead.
pub const VALUES_PER_GROUP_MAX: usize = 10_000;

/// The most alerts [`CorrelationState::observe`] queues for the next
/// [`CorrelationState::advance`] (chained alerts beyond the first).
pub const PENDING_ALERTS_MAX: usize = 1024;

/// Entries per node of std's B-trees (`2 * B - 1` with `B = 6`).
const BTREE_NODE_CAPACITY: usize = 11;

/// A B-tree leaf's bytes besides its key and value slots: the parent
/// pointer, the index in the parent and the length (8 + 2 + 2, padded).
const BTREE_NODE_HEADER: usize = 16;

/// Bytes the system allocator spends per heap block beyond what was asked
/// for: glibc's 8-byte chunk header plus rounding up to 16 bytes (its
/// smallest chunk is 32), about 16 on average.
const ALLOC_OVERHEAD: usize = 16;

/// The estimated cost of one heap block of `bytes` (none if empty: an
/// empty `Vec` holds no block).
pub(crate) fn heap_block(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        bytes + ALLOC_OVERHEAD
    }
}

/// The estimated heap bytes of a std B-tree of `len` entries, the entries
/// themselves (their `size_of`) included but not what they own. A node
/// always holds [`BTREE_NODE_CAPACITY`] slots, and nodes split in halves,
/// so they settle about two-thirds full: each entry costs one and a half
/// slots, and a non-empty tree at least one whole node. Internal nodes
/// (about one per seven leaves, each with 12 child pointers) are left
/// out.
pub(crate) fn btree_bytes<K, V>(len: usize) -> usize {
    let nodes = (len + len / 2).div_ceil(BTREE_NODE_CAPACITY);
    nodes * heap_block(BTREE_NODE_HEADER + BTREE_NODE_CAPACITY * (size_of::<K>() + size_of::<V>()))
}

/// Estimated heap bytes of a `HashMap<K, V>` of `capacity` (its
/// `capacity()`, not its length: the table keeps its buckets after
/// removals, and after a flood most of them are empty): the swiss table's
/// power-of-two buckets (capacity is 7/8 of them), one control byte per
/// bucket plus a group's worth, in one block.
pub(crate) fn hash_bytes<K, V>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity * 8 / 7).next_power_of_two().max(4);
    heap_block(buckets * (size_of::<K>() + size_of::<V>() + 1) + 16)
}

/// A correlation's groups by key. Hashed, not ordered: with a hundred
/// thousand groups a B-tree lookup by key was several dependent cache
/// misses of the per-event path (eviction and expiry go by the ordered
/// indices, not by this map). aHash with per-process random keys: group
/// keys come from event fields an attacker chooses, so the hash must be
/// keyed (SipHash was the other choice; it took 3% of a core with the
/// scenario rules). Groups are boxed: a table keeps
/// its buckets after removals and is up to half empty after growing, and
/// with the groups inline (240 bytes each then) that slack put a flooded node's
/// RSS 3% over its state bound.
///
/// A swiss table of `(key, group)` entries with its own hasher rather
/// than a `HashMap`, so that a group can also be found by its key's hash
/// and its id: the ordered indices' entries (see [`Place`]) then hold
/// that hash, not a second copy of the key (40 bytes a group). Archived
/// as a list of entries (not as rkyv's hash table: building one was most
/// of a checkpoint's time); restore hashes them again under a new hasher.
#[derive(Clone, Default)]
struct GroupMap {
    hasher: ahash::RandomState,
    table: HashTable<(GroupKey, Box<Group>)>,
}

impl GroupMap {
    /// The hash `key` is filed under in this table.
    fn key_hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn capacity(&self) -> usize {
        self.table.capacity()
    }

    fn get(&self, key: &[u8]) -> Option<&Group> {
        let hash = self.key_hash(key);
        self.table
            .find(hash, |(held, _)| held.as_slice() == key)
            .map(|(_, group)| &**group)
    }

    /// The group under `key`, with the hash it is filed under.
    fn get_mut(&mut self, key: &[u8]) -> Option<(u64, &mut Group)> {
        let hash = self.key_hash(key);
        self.table
            .find_mut(hash, |(held, _)| held.as_slice() == key)
            .map(|(_, group)| (hash, &mut **group))
    }

    /// The group `gid` filed under `key_hash`.
    fn by_gid(&self, key_hash: u64, gid: u64) -> Option<&Group> {
        self.table
            .find(key_hash, |(_, group)| group.gid == gid)
            .map(|(_, group)| &**group)
    }

    /// The group `gid` filed under `key_hash`, with its key.
    fn by_gid_mut(&mut self, key_hash: u64, gid: u64) -> Option<(&GroupKey, &mut Group)> {
        self.table
            .find_mut(key_hash, |(_, group)| group.gid == gid)
            .map(|(key, group)| (&*key, &mut **group))
    }

    /// Removes the group `gid` filed under `key_hash`, with its key.
    fn remove_by_gid(&mut self, key_hash: u64, gid: u64) -> Option<(GroupKey, Box<Group>)> {
        let entry = self
            .table
            .find_entry(key_hash, |(_, group)| group.gid == gid)
            .ok()?;
        Some(entry.remove().0)
    }

    /// Files `group` under `key`, replacing and returning a group held
    /// under it; returns the key's hash and the group where it was put.
    fn insert(
        &mut self,
        key: GroupKey,
        group: Box<Group>,
    ) -> (u64, Option<Box<Group>>, &mut Group) {
        let hash = self.key_hash(key.as_slice());
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |(held, _)| *held == key,
            |(held, _)| hasher.hash_one(held.as_slice()),
        ) {
            hash_table::Entry::Occupied(mut held) => {
                let old = std::mem::replace(&mut held.get_mut().1, group);
                (hash, Some(old), &mut *held.into_mut().1)
            }
            hash_table::Entry::Vacant(vacant) => {
                (hash, None, &mut *vacant.insert((key, group)).into_mut().1)
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&GroupKey, &Group)> {
        self.table.iter().map(|(key, group)| (key, &**group))
    }

    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = &Group> {
        self.table.iter().map(|(_, group)| &**group)
    }

    #[cfg(test)]
    fn values_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        self.table.iter_mut().map(|(_, group)| &mut **group)
    }

    /// Every group with the hash its key is filed under.
    fn iter_hashed_mut(&mut self) -> impl Iterator<Item = (u64, &mut Group)> {
        let hasher = &self.hasher;
        self.table
            .iter_mut()
            .map(move |(key, group)| (hasher.hash_one(key.as_slice()), &mut **group))
    }
}

impl std::fmt::Debug for GroupMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The same groups under the same keys, whatever the hashers.
impl PartialEq for GroupMap {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(key, group)| other.get(key.as_slice()) == Some(group))
    }
}

impl Eq for GroupMap {}

/// Archived entries of a [`GroupMap`].
type ArchivedGroupEntries = rkyv::vec::ArchivedVec<rkyv::Archived<(GroupKey, Box<Group>)>>;

impl rkyv::Archive for GroupMap {
    type Archived = ArchivedGroupEntries;
    type Resolver = rkyv::vec::VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::vec::ArchivedVec::resolve_from_len(self.len(), resolver, out);
    }
}

impl<S> rkyv::Serialize<S> for GroupMap
where
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
    (GroupKey, Box<Group>): rkyv::Serialize<S>,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        ArchivedGroupEntries::serialize_from_iter::<(GroupKey, Box<Group>), _, _>(
            self.table.iter(),
            serializer,
        )
    }
}

impl<D> rkyv::Deserialize<GroupMap, D> for ArchivedGroupEntries
where
    D: rkyv::rancor::Fallible + ?Sized,
    rkyv::Archived<(GroupKey, Box<Group>)>: rkyv::Deserialize<(GroupKey, Box<Group>), D>,
{
    /// Entries under one key twice (only a damaged archive has them) keep
    /// the last.
    fn deserialize(&self, deserializer: &mut D) -> Result<GroupMap, D::Error> {
        let mut map = GroupMap::default();
        map.table
            .reserve(self.len(), |(key, _)| map.hasher.hash_one(key.as_slice()));
        for entry in self.iter() {
            let (key, group) = entry.deserialize(deserializer)?;
            map.insert(key, group);
        }
        Ok(map)
    }
}

/// Hashes numbers a node hands out itself, not input (the engine's shard
/// numbers; group ids, when a table held them): one multiply suffices
/// (std's SipHash cost ~100 instructions a lookup).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u16(&mut self, value: u16) {
        self.write_u64(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        // The high bits pick hashbrown's bucket and the top seven its tag:
        // a multiply spreads consecutive numbers over both.
        self.0 = (self.0 ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Where a group is: its id, its correlation's hash, and the hash its key
/// is filed under in that correlation's [`GroupMap`] (drawn from that
/// table's hasher, which a restored state draws anew). The ordered
/// indices' entries carry it, so the group an entry names is found in its
/// table at once: there is no table from id to place (it was a hash-table
/// insert for every new group, 1.1% of a paced core with the scenario
/// rules, a removal when it went, and ~30 bytes a group). Ordered by id
/// first: an entry's place in its index is its fields before the id, then
/// the id, as when entries held the id alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Place {
    gid: u64,
    hash: u64,
    key_hash: u64,
}

/// The eviction order's index, `(correlation hash, protected, arrived_ns,
/// place)` of every group, built only while the caps may need it: `None`
/// until a cap first asks for a victim, then built from the groups at
/// once (one sort) and kept up to date until [`CorrelationState::advance`]
/// finds the state under half of each of its caps, when it is dropped
/// again. A state below its caps, the common case, thus files no group in
/// it: with one new group per packet (the harness's port scan rule) its
/// insert was 2.4% of a paced core's samples, and its entries ~40 bytes a
/// group. Building at a cap and dropping under half of it means at least
/// half a cap of new groups between two builds, so a build costs each
/// of them O(log n). Whether it is built changes no victim: the stalest
/// group is the least `(protected, arrived_ns, gid)` either way (a built
/// index's entries left behind by [`reindex`] are moved on the way, see
/// `CorrelationState::stalest_of`).
type ArrivalIndex = Option<BTreeSet<(u64, bool, i64, Place)>>;

/// The due index: `(due_ns, place)` entries in a binary min-heap, the
/// least first (`advance` order: by due time, then group id). Every group
/// has an entry at its `indexed.due_ns`; entries are not taken out with
/// their group, so the heap may also hold stale ones: a removed group's
/// (evicted, or its rule changed), or one a group moved earlier left
/// behind (see [`reindex`]). An entry is live when its place names a held
/// group filed at that due time ([`due_entry_is_live`]); `advance` drops
/// stale entries as they come first, and the state compacts the heap when
/// they outnumber the groups (see `CorrelationState::compact_due`).
///
/// A B-tree set was this index until the scenario rules' profile showed
/// its insert at 4.8% of a paced core (450 k lines/s): a new group's due
/// time is nearly always the shard's latest, and a B-tree insert there
/// scans every key of each node on the way down its right edge, a node of
/// eleven 32-byte keys being six cache lines, cold when the next new
/// group lands in another of the 4,096 shards. A heap appends it and
/// compares it with its parent.
#[derive(Clone, Debug, Default)]
struct DueIndex {
    heap: BinaryHeap<Reverse<(i64, Place)>>,
}

impl DueIndex {
    /// An index of `entries`, in any order (heapified in O(n)).
    fn of(entries: Vec<(i64, Place)>) -> DueIndex {
        DueIndex {
            heap: entries.into_iter().map(Reverse).collect(),
        }
    }

    fn push(&mut self, due_ns: i64, place: Place) {
        self.heap.push(Reverse((due_ns, place)));
    }

    /// The least entry, live or stale.
    fn first(&self) -> Option<(i64, Place)> {
        self.heap.peek().map(|&Reverse(entry)| entry)
    }

    fn pop_first(&mut self) {
        self.heap.pop();
    }

    /// Entries held, live and stale.
    fn len(&self) -> usize {
        self.heap.len()
    }

    fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    fn entries(&self) -> impl Iterator<Item = (i64, Place)> + '_ {
        self.heap.iter().map(|&Reverse(entry)| entry)
    }
}

/// Whether the due index's entry `(due_ns, place)` is live: its place
/// names a group held in `groups`, filed at `due_ns`.
fn due_entry_is_live(groups: &BTreeMap<u64, GroupMap>, due_ns: i64, place: Place) -> bool {
    groups
        .get(&place.hash)
        .and_then(|groups| groups.by_gid(place.key_hash, place.gid))
        .is_some_and(|group| group.indexed.due_ns == due_ns)
}

/// Stale entries the due index may hold beyond one per group before the
/// state compacts it.
const DUE_STALE_SLACK: usize = 64;

/// The group at `place`, with its key.
fn find_group(
    groups: &mut BTreeMap<u64, GroupMap>,
    place: Place,
) -> Option<(&GroupKey, &mut Group)> {
    groups
        .get_mut(&place.hash)?
        .by_gid_mut(place.key_hash, place.gid)
}

/// A correlation alert: the condition of correlation `correlation` held for
/// the group `group_key`.
#[derive(Clone, Debug, PartialEq)]
pub struct CorrelationAlert {
    /// Index of the correlation in the rule set.
    pub correlation: u32,
    /// Deterministic alert id, see [`alert_id`].
    pub id: String,
    /// The group key (see [`RuleSet::group_key`]).
    pub group_key: Vec<u8>,
    /// How many events, distinct values or inputs were counted.
    pub count: u64,
    /// The oldest event time counted.
    pub first_seen_ns: i64,
    /// The newest event time counted.
    pub last_seen_ns: i64,
    /// The group's latest arrival when the alert was raised (see
    /// [`Observation::arrival_ns`]): for an alert raised by
    /// [`CorrelationState::advance`], when the newest observation reached
    /// the group, which is what its detection latency counts from.
    pub arrived_ns: i64,
    /// Up to [`SAMPLES_MAX`] raw lines of counted events, oldest first, the
    /// most recently observed ones.
    pub samples: Vec<Vec<u8>>,
    /// Anomaly rules: how anomalous the finding is. `baseline`: the signed
    /// z-score of the bucket (positive for a spike); `outlier`: the
    /// distance in cluster radii. `None` for Sigma correlations and for
    /// `first_seen`/`rare_template` (a new value is not a matter of
    /// degree). Always finite.
    pub score: Option<f64>,
    /// Anomaly rules: one sentence saying what was anomalous and against
    /// which baseline. `None` for Sigma correlations.
    pub reason: Option<String>,
}

/// Scores are always finite, so equality is reflexive.
impl Eq for CorrelationAlert {}

/// One event (or chained alert) as one correlation sees it. The engine
/// builds it from [`RuleSet::group_key_for`], [`RuleSet::input_mask`] and
/// [`RuleSet::correlation_value`].
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// Index of the correlation in the rule set.
    pub correlation: u32,
    /// The group key.
    pub group_key: &'a [u8],
    /// Which of the correlation's inputs the event matched (bit = position
    /// in `rules`). `temporal` kinds ignore an observation with mask zero.
    pub input_mask: u64,
    /// `value_count`: the value of the condition field; an observation
    /// without one is not counted (an absent field has no value).
    pub value: Option<&'a [u8]>,
    /// Event time.
    pub time_ns: i64,
    /// When the observation arrived, on the clock [`CorrelationState::advance`]
    /// is given: the engine's receive time when windows advance on the
    /// node's clock, the event time itself when they advance on event time
    /// (a replay). See "Clocks" in the module docs.
    pub arrival_ns: i64,
    /// The raw line, kept as a sample.
    pub raw: &'a [u8],
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

/// An alert waiting for the next `advance`, keyed by rule hash so that it
/// survives a reload in between.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct PendingAlert {
    hash: u64,
    id: String,
    group_key: Vec<u8>,
    count: u64,
    first_seen_ns: i64,
    last_seen_ns: i64,
    arrived_ns: i64,
    samples: Vec<Vec<u8>>,
    /// The score's bits (`f64::to_bits`), kept as an integer so the
    /// pending queue stays `Eq`.
    score_bits: Option<u64>,
    reason: Option<String>,
}

impl PendingAlert {
    /// The estimated heap bytes this alert owns (its struct lives in the
    /// queue's buffer).
    fn heap_bytes(&self) -> usize {
        let samples: usize = self.samples.iter().map(|s| heap_block(s.capacity())).sum();
        heap_block(self.id.capacity())
            + heap_block(self.group_key.capacity())
            + heap_block(self.samples.capacity() * size_of::<Vec<u8>>())
            + samples
            + self.reason.as_ref().map_or(0, |r| heap_block(r.capacity()))
    }
}

/// Brings a group's index entries up to date after its `protected`,
/// `arrived_ns` or due time changed, lazily: an entry whose new place
/// is later in its index (a later arrival, a group becoming protected, a
/// later due time: what nearly every observation does) stays where it is,
/// and is moved when it comes first (see `CorrelationState::stalest_of`
/// and `CorrelationState::advance`); one whose new place is earlier is
/// moved now (in the due index: filed again, the old entry left stale,
/// see [`DueIndex`]). Moving both entries on every event was four B-tree
/// operations on the per-event path, each a chain of cache misses on a
/// large state.
fn reindex(by_arrival: &mut ArrivalIndex, by_due: &mut DueIndex, place: Place, group: &mut Group) {
    let at = group.indexed;
    if (group.protected, group.arrived_ns) < (at.protected, at.arrived_ns) {
        if let Some(by_arrival) = by_arrival {
            let removed = by_arrival.remove(&(place.hash, at.protected, at.arrived_ns, place));
            debug_assert!(removed);
            by_arrival.insert((place.hash, group.protected, group.arrived_ns, place));
        }
        group.indexed.protected = group.protected;
        group.indexed.arrived_ns = group.arrived_ns;
    }
    if group.due_ns < at.due_ns {
        // The entry at the old time is left stale (see [`DueIndex`]).
        by_due.push(group.due_ns, place);
        group.indexed.due_ns = group.due_ns;
    }
}

/// One group of the state, and the parts of the state an observation of
/// it changes beside it (borrowed apart from the group table that holds
/// it): what [`CorrelationState::with_group`] hands over.
struct Held<'a> {
    group: &'a mut Group,
    /// Where it is.
    place: Place,
    by_arrival: &'a mut ArrivalIndex,
    by_due: &'a mut DueIndex,
    values_evicted_total: &'a mut u64,
    anomaly_counters: &'a mut Counters,
}

/// Group ids are handed out one per group created, so no real state comes
/// near this; a restored state past it is refused, so ids never wrap.
const GID_MAX: u64 = 1 << 62;

/// The state of one group.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Group {
    /// Stable id of the group within this state, for the indices.
    gid: u64,
    /// The definition fingerprint of the rule that made this group.
    fingerprint: u64,
    /// The newest event time observed.
    newest_ns: i64,
    /// The latest arrival observed (see "Clocks" in the module docs).
    arrived_ns: i64,
    /// When, in event time, the group's window ends or it can no longer
    /// change (see module docs).
    deadline_ns: i64,
    /// When `advance` takes the group up, on its clock: the latest
    /// [`Group::computed_due_ns`] an observation gave (see
    /// [`Group::settle_due`]).
    due_ns: i64,
    /// Whether the group has had a second observation. The cap evicts
    /// every unprotected group before any protected one: a sender
    /// spraying new keys (one observation each) pushes out its own groups,
    /// not an attack in progress.
    protected: bool,
    /// What the rule's kind keeps beside the items.
    window: Window,
    /// `value_count` and `temporal`: items (value bytes, or the input
    /// position as one byte) with their newest times (`temporal_ordered`
    /// keeps its steps in its window).
    items: ItemSet,
    /// The most recently observed raw lines (of an eager `event_count` or
    /// `value_count` window, only those an alert could still show: see
    /// [`sample_may_show`]).
    samples: Vec<Sample>,
    /// Where the group's entries in `by_arrival` and `by_due` are; at
    /// or before where its fields would put them (see [`reindex`]).
    indexed: Indexed,
}

/// What a group keeps beside its items, by its rule's kind. A group keeps
/// one of these, so they share their bytes (a group is the state's unit:
/// the scenario rules hold hundreds of thousands).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum Window {
    /// Eager `value_count` and `temporal`: the items are the window.
    Items,
    /// `temporal_ordered`: its steps (boxed: a window holds up to
    /// [`ORDERED_EVENTS_MAX`], and the other kinds' groups stay small).
    Ordered(Box<Steps>),
    /// Eager `event_count`: event times in the window, sorted ascending,
    /// at most the threshold.
    Times(VecDeque<i64>),
    /// A closing condition's window.
    Closing(Closing),
    /// Anomaly rules: the entity's detector state (see `crate::anomaly`),
    /// made by its first observation.
    Anomaly(Box<AnomalyBody>),
}

/// A closing condition's window (see [`Window::Closing`]).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Closing {
    /// The window start.
    start_ns: i64,
    /// `event_count`: events counted in the window.
    count: u64,
    /// Oldest event time counted.
    first_ns: i64,
    /// Newest event time counted.
    last_ns: i64,
}

impl Window {
    /// What a new group of `meta`'s rule keeps, its first event at
    /// `time_ns`.
    fn for_rule(meta: &CorrelationMeta, time_ns: i64) -> Window {
        if meta.anomaly.is_some() {
            Window::Items
        } else if meta.kind == CorrelationKind::TemporalOrdered {
            Window::Ordered(Box::default())
        } else if meta.condition.is_eager() {
            match meta.kind {
                CorrelationKind::EventCount => Window::Times(VecDeque::new()),
                _ => Window::Items,
            }
        } else {
            Window::Closing(Closing {
                start_ns: time_ns,
                count: 0,
                first_ns: time_ns,
                last_ns: time_ns,
            })
        }
    }

    fn anomaly(&mut self) -> Option<&mut AnomalyBody> {
        match self {
            Window::Anomaly(body) => Some(body),
            _ => None,
        }
    }
}

/// The values a group's index entries were filed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Indexed {
    protected: bool,
    arrived_ns: i64,
    due_ns: i64,
}

impl Group {
    fn new(
        gid: u64,
        fingerprint: u64,
        window: Window,
        time_ns: i64,
        arrival_ns: i64,
        deadline_ns: i64,
    ) -> Self {
        let mut group = Group {
            gid,
            fingerprint,
            newest_ns: time_ns,
            arrived_ns: arrival_ns,
            deadline_ns,
            due_ns: 0,
            protected: false,
            window,
            items: ItemSet::default(),
            samples: Vec::new(),
            indexed: Indexed {
                protected: false,
                arrived_ns: arrival_ns,
                due_ns: 0,
            },
        };
        group.due_ns = group.computed_due_ns();
        group.indexed.due_ns = group.due_ns;
        group
    }

    /// The deadline on the clock `advance` is given: the group's latest
    /// arrival plus the event time its window had left after its newest
    /// event. With arrivals on event time (a replay) it is the deadline.
    fn computed_due_ns(&self) -> i64 {
        self.arrived_ns
            .saturating_add(self.deadline_ns.saturating_sub(self.newest_ns))
    }

    /// After an observation: the due time moves to the computed one if
    /// that is later, never earlier. A tumbling window's or a bucket's
    /// deadline stays put while its newest event time advances, so its
    /// computed due time falls whenever event time runs faster than the
    /// arrivals (jitter, or a corpus's compressed timeline); following it
    /// down was an eager move in the due index on every such event. The
    /// cost: a group whose sender's clock catches up is kept until the
    /// later due time.
    fn settle_due(&mut self) {
        self.due_ns = self.due_ns.max(self.computed_due_ns());
    }

    /// `now_ns`, on the clock `advance` is given, in this group's event
    /// time: its newest event time plus what has passed since the latest
    /// arrival (the inverse of [`Group::due_ns`]).
    fn event_now_ns(&self, now_ns: i64) -> i64 {
        self.newest_ns
            .saturating_add(now_ns.saturating_sub(self.arrived_ns))
    }

    /// Takes one observation's event time and arrival (the latest of
    /// each counts); a group that was not `created` by it has now had a
    /// second observation and is protected from eviction before any
    /// group that has not.
    fn observed(&mut self, time_ns: i64, arrival_ns: i64, created: bool) {
        self.protected |= !created;
        self.newest_ns = self.newest_ns.max(time_ns);
        self.arrived_ns = self.arrived_ns.max(arrival_ns);
    }

    fn clear_window(&mut self) {
        match &mut self.window {
            Window::Times(times) => times.clear(),
            Window::Closing(closing) => closing.count = 0,
            Window::Ordered(steps) => steps.clear(),
            Window::Items | Window::Anomaly(_) => {}
        }
        self.items.clear();
        self.samples.clear();
    }

    /// The estimated heap bytes this group owns (its own struct lives in
    /// its map's node and is counted there). O(items), allocation-free.
    fn heap_bytes(&self) -> usize {
        let samples: usize = self
            .samples
            .iter()
            .map(|s| heap_block(s.raw.capacity()))
            .sum();
        let window = match &self.window {
            Window::Times(times) => heap_block(times.capacity() * size_of::<i64>()),
            Window::Anomaly(body) => heap_block(size_of::<AnomalyBody>()) + body.heap_bytes(),
            Window::Ordered(steps) => heap_block(size_of::<Steps>()) + steps.heap_bytes(),
            Window::Items | Window::Closing(_) => 0,
        };
        window
            + self.items.heap_bytes()
            + heap_block(self.samples.capacity() * size_of::<Sample>())
            + samples
    }
}

/// Per-shard correlation state. See the module docs.
#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CorrelationState {
    groups_max: u64,
    /// Cap on the groups of one correlation (`u64::MAX`: none but
    /// `groups_max`).
    rule_groups_max: u64,
    evicted_total: u64,
    values_evicted_total: u64,
    incomplete_total: u64,
    pending_dropped_total: u64,
    next_gid: u64,
    /// Groups by correlation hash, then group key (each correlation's
    /// archived as a list of entries, see [`GroupMap`]).
    groups: BTreeMap<u64, GroupMap>,
    /// `(correlation hash, protected, arrived_ns, place)` of every group:
    /// eviction order within a rule (its stalest unprotected group first,
    /// then its stalest protected one, stalest by latest arrival). Built
    /// when a cap first needs a victim (see [`ArrivalIndex`]) and kept
    /// while the state stays near its caps; `None` otherwise. Not
    /// archived (a restored state builds it when it needs it).
    #[rkyv(with = rkyv::with::Skip)]
    by_arrival: ArrivalIndex,
    /// `(due_ns, place)` of every group, and stale entries: `advance`
    /// order (see [`DueIndex`]). Not archived:
    /// [`CorrelationState::restore`] rebuilds it.
    #[rkyv(with = rkyv::with::Skip)]
    by_due: DueIndex,
    /// Groups held, in all the tables. Not archived (counted on restore).
    #[rkyv(with = rkyv::with::Skip)]
    groups_held: usize,
    /// Alerts raised by `observe` beyond the one it returns.
    pending: VecDeque<PendingAlert>,
    /// Refusals of anomaly detectors.
    anomaly_counters: Counters,
}

/// Equal when all but the indices is: both are derived from the groups
/// (each group's `indexed` says where its entries are), the eviction
/// index is built only while a cap may need it (see [`ArrivalIndex`]), the
/// due index may hold stale entries (see [`DueIndex`]), and a place's key
/// hash is its table's (see [`Place`]), so a state equals its restored
/// copy.
impl PartialEq for CorrelationState {
    fn eq(&self, other: &Self) -> bool {
        let CorrelationState {
            groups_max,
            rule_groups_max,
            evicted_total,
            values_evicted_total,
            incomplete_total,
            pending_dropped_total,
            next_gid,
            groups,
            by_arrival: _,
            by_due: _,
            groups_held,
            pending,
            anomaly_counters,
        } = self;
        *groups_max == other.groups_max
            && *rule_groups_max == other.rule_groups_max
            && *evicted_total == other.evicted_total
            && *values_evicted_total == other.values_evicted_total
            && *incomplete_total == other.incomplete_total
            && *pending_dropped_total == other.pending_dropped_total
            && *next_gid == other.next_gid
            && *groups == other.groups
            && *groups_held == other.groups_held
            && *pending == other.pending
            && *anomaly_counters == other.anomaly_counters
    }
}

impl Eq for CorrelationState {}

impl CorrelationState {
    /// Empty state holding at most `groups_max` groups (at least one).
    pub fn new(groups_max: usize) -> Self {
        CorrelationState {
            groups_max: groups_max.max(1) as u64,
            rule_groups_max: u64::MAX,
            evicted_total: 0,
            values_evicted_total: 0,
            incomplete_total: 0,
            pending_dropped_total: 0,
            next_gid: 0,
            groups: BTreeMap::new(),
            by_arrival: None,
            by_due: DueIndex::default(),
            groups_held: 0,
            pending: VecDeque::new(),
            anomaly_counters: Counters::default(),
        }
    }

    /// Appends the state's archive (rkyv, for a checkpoint) to `out`,
    /// which must be 16-byte aligned where the archive starts (its length
    /// a multiple of 16): the archive is position-independent, so it can
    /// follow a header in the same buffer. The indices are left out (they
    /// are rebuilt on restore), and each correlation's groups are written
    /// as a list. Returns the buffer and the archive's length.
    pub fn archive_into(&self, out: Vec<u8>) -> Result<(Vec<u8>, usize), rkyv::rancor::Error> {
        debug_assert_eq!(out.len() % 16, 0);
        let start = out.len();
        let out = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, out)?;
        let len = out.len() - start;
        Ok((out, len))
    }

    /// The state archived by [`CorrelationState::archive_into`], from
    /// `bytes` (16-byte aligned), validated (bytecheck) before anything is
    /// read, with its indices rebuilt. Fails on a malformed archive, on
    /// one whose groups are inconsistent (a group id used twice) and on one
    /// that breaks the state's invariants (see
    /// [`CorrelationState::check_invariants`]): a state that passes them is
    /// one this code could have made, so using it cannot panic.
    pub fn restore(bytes: &[u8]) -> Result<CorrelationState, String> {
        let mut state = rkyv::from_bytes::<CorrelationState, rkyv::rancor::Error>(bytes)
            .map_err(|e| format!("archive validation failed: {e}"))?;
        if state.next_gid > GID_MAX {
            return Err(format!(
                "next group id {} is past any real state",
                state.next_gid
            ));
        }
        state.rebuild_indices()?;
        if !state.check(false) {
            return Err("the archived state breaks its invariants".into());
        }
        Ok(state)
    }

    /// Files every group in the due index where its `indexed` says it was
    /// filed (so a restored state equals the one archived, lazily placed
    /// entries included), and its key under its id. The eviction index is
    /// built when a cap first needs a victim, as in a state never archived.
    fn rebuild_indices(&mut self) -> Result<(), String> {
        let groups: usize = self.groups.values().map(|groups| groups.len()).sum();
        // Collected, then built in bulk (heapified once), not inserted one
        // by one. The eviction index is left to the first victim a cap needs.
        let mut by_due = Vec::with_capacity(groups);
        let mut gids = Vec::with_capacity(groups);
        for (&hash, groups) in &self.groups {
            for (key, group) in groups.iter() {
                if !key.is_valid() {
                    return Err(format!("group {} has a malformed key", group.gid));
                }
                if group.gid >= self.next_gid {
                    return Err(format!(
                        "group id {} is past the next id {}",
                        group.gid, self.next_gid
                    ));
                }
                let place = Place {
                    gid: group.gid,
                    hash,
                    key_hash: groups.key_hash(key.as_slice()),
                };
                by_due.push((group.indexed.due_ns, place));
                gids.push(group.gid);
            }
        }
        // A group is found by its id under its key's hash: ids are unique.
        gids.sort_unstable();
        if let Some(pair) = gids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(format!("group id {} used twice", pair[0]));
        }
        self.by_arrival = None;
        self.by_due = DueIndex::of(by_due);
        self.groups_held = groups;
        Ok(())
    }

    /// How many groups were evicted because the cap was reached.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// How many distinct values closing `value_count` windows evicted at
    /// [`VALUES_PER_GROUP_MAX`].
    pub fn values_evicted_total(&self) -> u64 {
        self.values_evicted_total
    }

    /// How many observations could not be counted because they lacked what
    /// the correlation kind needs (an input mask for temporal kinds, a
    /// value for `value_count`).
    pub fn incomplete_total(&self) -> u64 {
        self.incomplete_total
    }

    /// How many chained alerts were dropped because the pending queue was
    /// full (see [`PENDING_ALERTS_MAX`]).
    pub fn pending_dropped_total(&self) -> u64 {
        self.pending_dropped_total
    }

    /// Anomaly rules: observations older than their entity's open bucket,
    /// not counted into any bucket.
    pub fn anomaly_late_total(&self) -> u64 {
        self.anomaly_counters.late
    }

    /// Anomaly rules: empty buckets skipped without scoring after a gap
    /// longer than [`crate::CATCH_UP_BUCKETS_MAX`] buckets.
    pub fn anomaly_buckets_skipped_total(&self) -> u64 {
        self.anomaly_counters.skipped
    }

    /// Anomaly rules: `first_seen`/`rare_template` values forgotten
    /// because an entity held `values-max` of them.
    pub fn anomaly_values_evicted_total(&self) -> u64 {
        self.anomaly_counters.values_evicted
    }

    /// Anomaly rules: distinct values not tracked because a bucket held
    /// [`crate::DISTINCT_PER_BUCKET_MAX`] of them.
    pub fn anomaly_distinct_capped_total(&self) -> u64 {
        self.anomaly_counters.distinct_capped
    }

    /// Anomaly rules: observations whose value was missing where needed or
    /// not a number for `sum`.
    pub fn anomaly_unusable_total(&self) -> u64 {
        self.anomaly_counters.unusable
    }

    /// How many groups are held (correlation groups and anomaly entities
    /// together; they share `groups_max`).
    pub fn group_count(&self) -> usize {
        self.groups_held
    }

    /// Estimated heap bytes held per correlation, for a memory metric:
    /// calls `f(hash, groups, bytes)` once per correlation that has groups
    /// (`hash` is [`crate::CorrelationMeta::hash`], `groups` its group
    /// count), in hash order. `bytes` counts the group table's nodes (each
    /// group's struct with its key), the key bytes, and what each group
    /// owns: window times, the window's items (a vector while few, two
    /// B-trees beyond), samples and the boxed anomaly body. What every correlation shares
    /// is in [`CorrelationState::memory_shared`].
    ///
    /// An estimate, not a measurement: `size_of` of each element times the
    /// capacity of each buffer, B-trees two-thirds full in 11-slot nodes
    /// with a 16-byte header, and 16 bytes of allocator overhead per heap
    /// block. It leaves out B-tree internal nodes, allocator size classes
    /// beyond that average, fragmentation and memory freed but not yet
    /// returned; checked once against a counting allocator (glibc chunk
    /// sizes) for every kind, it read 80-100% of the real heap. O(groups +
    /// items), no allocation.
    pub fn memory_by_correlation(&self, mut f: impl FnMut(u64, usize, usize)) {
        for (&hash, groups) in &self.groups {
            let mut bytes = hash_bytes::<GroupKey, Box<Group>>(groups.capacity());
            for (key, group) in groups.iter() {
                bytes += key.heap_bytes() + heap_block(size_of::<Group>()) + group.heap_bytes();
            }
            f(hash, groups.len(), bytes);
        }
    }

    /// Estimated heap bytes not attributable to one correlation: the outer
    /// table of correlations, the indices (`by_arrival`, `by_due`) and
    /// the queued chained
    /// alerts (their ids, keys, samples and reasons; the queue keeps its
    /// buffer after `advance` drains it). Not the state struct itself. An
    /// estimate like [`CorrelationState::memory_by_correlation`]'s;
    /// O(groups + pending), no allocation.
    pub fn memory_shared(&self) -> usize {
        let pending: usize = self.pending.iter().map(PendingAlert::heap_bytes).sum();
        btree_bytes::<u64, GroupMap>(self.groups.len())
            + self.by_arrival.as_ref().map_or(0, |by_arrival| {
                btree_bytes::<(u64, bool, i64, Place), ()>(by_arrival.len())
            })
            + heap_block(self.by_due.capacity() * size_of::<Reverse<(i64, Place)>>())
            + heap_block(self.pending.capacity() * size_of::<PendingAlert>())
            + pending
    }

    /// Feeds one event that matched a base rule of correlation
    /// `correlation`, with the group key from [`RuleSet::group_key`].
    /// Returns the first alert this raises; further alerts (chained
    /// correlations fed by it) are queued and come out of the next
    /// [`CorrelationState::advance`]. This form knows no input mask or
    /// value, so it fully serves `event_count`; `temporal` and
    /// `value_count` need [`CorrelationState::observe_into`] (here they
    /// count the observation in [`CorrelationState::incomplete_total`]).
    /// A correlation index out of range is a caller bug: debug builds
    /// assert, release builds return `None`.
    pub fn observe(
        &mut self,
        rules: &RuleSet,
        correlation: u32,
        group_key: &[u8],
        time_ns: i64,
        raw: &[u8],
    ) -> Option<CorrelationAlert> {
        let observation = Observation {
            correlation,
            group_key,
            input_mask: 0,
            value: None,
            time_ns,
            arrival_ns: time_ns,
            raw,
        };
        let mut out = Vec::new();
        self.observe_into(rules, &observation, &mut out);
        let mut alerts = out.into_iter();
        let first = alerts.next();
        for rest in alerts {
            if let Some(meta) = rules.correlation_meta(rest.correlation) {
                self.queue(meta.hash, rest);
            }
        }
        first
    }

    /// Feeds one observation and appends every alert it raises to `out`,
    /// in a deterministic order: the observed correlation's alert first
    /// (if it fires and is standalone), then those of chained correlations,
    /// depth first in rule set order.
    pub fn observe_into(
        &mut self,
        rules: &RuleSet,
        observation: &Observation<'_>,
        out: &mut Vec<CorrelationAlert>,
    ) {
        let Some(meta) = rules.correlation_meta(observation.correlation) else {
            debug_assert!(
                false,
                "correlation {} out of range",
                observation.correlation
            );
            return;
        };
        let complete = match meta.kind {
            CorrelationKind::EventCount => true,
            CorrelationKind::ValueCount => observation.value.is_some(),
            CorrelationKind::Temporal | CorrelationKind::TemporalOrdered => {
                observation.input_mask != 0
            }
            CorrelationKind::FirstSeen | CorrelationKind::RareTemplate => {
                observation.value.is_some()
            }
            CorrelationKind::Baseline => {
                observation.value.is_some()
                    || meta
                        .anomaly
                        .as_ref()
                        .is_some_and(|spec| spec.metric == AnomalyMetric::Count)
            }
            CorrelationKind::Outlier => true,
        };
        if !complete {
            self.incomplete_total = self.incomplete_total.wrapping_add(1);
            return;
        }
        self.feed(rules, observation, 0, out);
    }

    /// One observation of one correlation, then its chained feeds.
    fn feed(
        &mut self,
        rules: &RuleSet,
        observation: &Observation<'_>,
        depth: usize,
        out: &mut Vec<CorrelationAlert>,
    ) {
        if depth > CHAIN_DEPTH_MAX {
            // The rule set refuses deeper chains, so this is unreachable;
            // stop rather than recurse if that ever breaks.
            debug_assert!(false, "chain deeper than the rule set allows");
            return;
        }
        let Some(meta) = rules.correlation_meta(observation.correlation) else {
            return;
        };
        if let Some(spec) = &meta.anomaly {
            let mut alerts = Vec::new();
            self.step_anomaly(meta, spec, observation, &mut alerts);
            for alert in alerts {
                self.fired(rules, meta, alert, depth, out);
            }
            return;
        }
        let Some(alert) = self.step(meta, observation) else {
            return;
        };
        self.fired(rules, meta, alert, depth, out);
    }

    /// Runs `f` on the group of `(meta, key)` with whether it was made
    /// now: a held group of the rule's current definition (the common
    /// case) is found with one lookup; a group of an older definition of
    /// the rule is dropped (its state means nothing to the new one) and,
    /// like a group not held, made and handed over where it was put,
    /// without another lookup.
    fn with_group<R>(
        &mut self,
        meta: &CorrelationMeta,
        key: &[u8],
        time_ns: i64,
        arrival_ns: i64,
        f: impl FnOnce(Held<'_>, bool) -> R,
    ) -> R {
        let stale = match self
            .groups
            .get_mut(&meta.hash)
            .and_then(|groups| groups.get_mut(key))
        {
            Some((key_hash, group)) if group.fingerprint == meta.fingerprint => {
                let place = Place {
                    gid: group.gid,
                    hash: meta.hash,
                    key_hash,
                };
                let held = Held {
                    group,
                    place,
                    by_arrival: &mut self.by_arrival,
                    by_due: &mut self.by_due,
                    values_evicted_total: &mut self.values_evicted_total,
                    anomaly_counters: &mut self.anomaly_counters,
                };
                return f(held, false);
            }
            Some((key_hash, group)) => Some(Place {
                gid: group.gid,
                hash: meta.hash,
                key_hash,
            }),
            None => None,
        };
        if let Some(place) = stale {
            let _ = self.remove(place);
        }
        f(self.create(meta, key, time_ns, arrival_ns), true)
    }

    /// One observation of an anomaly rule; alerts go to `alerts`.
    fn step_anomaly(
        &mut self,
        meta: &CorrelationMeta,
        spec: &AnomalySpec,
        observation: &Observation<'_>,
        alerts: &mut Vec<CorrelationAlert>,
    ) {
        let key = observation.group_key;
        let time_ns = observation.time_ns;
        let arrival_ns = observation.arrival_ns;
        self.with_group(meta, key, time_ns, arrival_ns, |held, created| {
            observe_anomaly(meta, spec, observation, held, created, alerts);
        });
    }

    /// `advance` for one anomaly entity that came due at `now_ns` (on the
    /// clock `advance` is given): closes its buckets up to that moment in
    /// its event time and reindexes it. Returns false when the entity
    /// should be dropped instead (expired, first-seen values all aged out,
    /// rule gone or changed).
    fn advance_anomaly(
        &mut self,
        rules: &RuleSet,
        place: Place,
        now_ns: i64,
        out: &mut Vec<CorrelationAlert>,
    ) -> bool {
        let Some(correlation) = rules.correlation_by_hash(place.hash) else {
            return false;
        };
        let Some(meta) = rules.correlation_meta(correlation) else {
            return false;
        };
        let Some(spec) = &meta.anomaly else {
            return false;
        };
        let Some((key, group)) = find_group(&mut self.groups, place) else {
            return false;
        };
        if group.fingerprint != meta.fingerprint {
            return false;
        }
        let event_now_ns = group.event_now_ns(now_ns);
        let Some(body) = group.window.anomaly() else {
            return false;
        };
        let mut findings = Vec::new();
        let alive = body.advance(
            meta,
            spec,
            event_now_ns,
            &mut self.anomaly_counters,
            &mut findings,
        );
        group.deadline_ns = body.deadline_ns(spec, group.newest_ns);
        let mut alerts = Vec::with_capacity(findings.len());
        for finding in findings {
            alerts.push(anomaly_alert(meta, correlation, key, group, finding));
        }
        // Progress: a live entity's next deadline is at or after now.
        debug_assert!(!alive || group.deadline_ns >= event_now_ns);
        // The buckets were closed up to now: the due time is the computed
        // one, whichever way it moved.
        group.due_ns = group.computed_due_ns();
        let due_ns = group.due_ns;
        // Advance found this entity by its due entry and took that entry
        // out: file it again now (a kept entity's due time is later than
        // the entry's, which was before now). Only the deadline changed
        // here, so its `by_arrival` entry stays as it is.
        let at = group.indexed.due_ns;
        if due_ns != at {
            self.by_due.push(due_ns, place);
            group.indexed.due_ns = due_ns;
        }
        for alert in alerts {
            self.fired(rules, meta, alert, 0, out);
        }
        // (Saturated times near the ends of i64 could leave a live entity
        // due again at once: it is dropped rather than looped on.)
        alive && due_ns >= now_ns
    }

    /// Emits a fired alert (if standalone) and feeds the correlations that
    /// chain on it, as observations arriving when the alert's group last
    /// had one.
    fn fired(
        &mut self,
        rules: &RuleSet,
        meta: &CorrelationMeta,
        alert: CorrelationAlert,
        depth: usize,
        out: &mut Vec<CorrelationAlert>,
    ) {
        let chained = rules.chained(alert.correlation);
        // The base alert goes out before what it completes, so the order
        // reads as cause, then effect.
        let feed_from = (!chained.is_empty()).then(|| {
            (
                alert.group_key.clone(),
                alert.last_seen_ns,
                alert.arrived_ns,
                alert.samples.last().cloned().unwrap_or_default(),
            )
        });
        if meta.standalone {
            out.push(alert);
        }
        let Some((key, time_ns, arrival_ns, raw)) = feed_from else {
            return;
        };
        for &(target, position) in chained {
            let next = Observation {
                correlation: target,
                group_key: &key,
                input_mask: 1u64 << position,
                value: None,
                time_ns,
                arrival_ns,
                raw: &raw,
            };
            self.feed(rules, &next, depth + 1, out);
        }
    }

    /// Queues an alert for the next `advance`, counting it if full.
    fn queue(&mut self, hash: u64, alert: CorrelationAlert) {
        if self.pending.len() >= PENDING_ALERTS_MAX {
            self.pending_dropped_total = self.pending_dropped_total.wrapping_add(1);
            return;
        }
        self.pending.push_back(PendingAlert {
            hash,
            id: alert.id,
            group_key: alert.group_key,
            count: alert.count,
            first_seen_ns: alert.first_seen_ns,
            last_seen_ns: alert.last_seen_ns,
            arrived_ns: alert.arrived_ns,
            samples: alert.samples,
            score_bits: alert.score.map(f64::to_bits),
            reason: alert.reason,
        });
        debug_assert!(self.pending.len() <= PENDING_ALERTS_MAX);
    }

    /// Updates the group of one observation (see
    /// [`CorrelationState::with_group`]); returns its alert, if any.
    fn step(
        &mut self,
        meta: &CorrelationMeta,
        observation: &Observation<'_>,
    ) -> Option<CorrelationAlert> {
        let (key, time_ns) = (observation.group_key, observation.time_ns);
        self.with_group(
            meta,
            key,
            time_ns,
            observation.arrival_ns,
            |held, created| update_group(meta, held, observation, created),
        )
    }

    /// Changes the cap on groups (at least one); groups beyond a lower cap
    /// are evicted at once, stalest first (counted). Returns how many went.
    pub fn set_groups_max(&mut self, groups_max: usize) -> usize {
        self.groups_max = groups_max.max(1) as u64;
        let over = (self.groups_held as u64).saturating_sub(self.groups_max);
        self.evict_oldest(over as usize)
    }

    pub fn groups_max(&self) -> usize {
        self.groups_max as usize
    }

    /// Sets the cap on the groups one correlation may hold here (at least
    /// one; a value above the shard's cap, or 0, means the shard's cap
    /// alone). A rule over a lower cap gives up its stalest groups at once
    /// (counted); returns how many went.
    pub fn set_rule_groups_max(&mut self, rule_groups_max: usize) -> usize {
        self.rule_groups_max = if rule_groups_max == 0 {
            u64::MAX
        } else {
            rule_groups_max as u64
        };
        let mut evicted = 0;
        let over: Vec<(u64, usize)> = self
            .groups
            .iter()
            .filter(|(_, groups)| groups.len() as u64 > self.rule_groups_max)
            .map(|(&hash, groups)| (hash, groups.len() - self.rule_groups_max as usize))
            .collect();
        for (hash, count) in over {
            for _ in 0..count {
                let Some(victim) = self.stalest_of(hash) else {
                    break;
                };
                self.remove(victim);
                self.evicted_total = self.evicted_total.wrapping_add(1);
                evicted += 1;
            }
        }
        evicted
    }

    /// The cap on one correlation's groups in force: the rule cap, never
    /// above the shard's cap.
    pub fn rule_groups_max(&self) -> usize {
        self.rule_groups_max.min(self.groups_max) as usize
    }

    /// Evicts up to `n` groups in the cap's order (the stalest
    /// single-observation groups first, see the module docs), counting them in
    /// [`CorrelationState::evicted_total`]; returns how many went. For a
    /// memory budget over many shards.
    pub fn evict_oldest(&mut self, n: usize) -> usize {
        let mut evicted = 0;
        while evicted < n {
            let Some(victim) = self.victim() else {
                break;
            };
            self.remove(victim);
            self.evicted_total = self.evicted_total.wrapping_add(1);
            evicted += 1;
        }
        evicted
    }

    /// The group the cap evicts next: in the rule holding the most groups
    /// here, its stalest unprotected group, else its stalest protected one
    /// (see the module docs).
    fn victim(&mut self) -> Option<Place> {
        let (&hash, _) = self.groups.iter().max_by_key(|(_, groups)| groups.len())?;
        self.stalest_of(hash)
    }

    /// Correlation `hash`'s group the caps evict first: its stalest
    /// unprotected group, else its stalest protected one. Entries left
    /// behind by [`reindex`] are moved to their place on the way.
    fn stalest_of(&mut self, hash: u64) -> Option<Place> {
        let by_arrival = self.by_arrival.get_or_insert_with(|| {
            // Built now, each group filed where it is (an index kept all
            // along would have some entries earlier, moved below).
            let mut entries = Vec::with_capacity(self.groups_held);
            for (&hash, groups) in &mut self.groups {
                for (key_hash, group) in groups.iter_hashed_mut() {
                    group.indexed.protected = group.protected;
                    group.indexed.arrived_ns = group.arrived_ns;
                    let place = Place {
                        gid: group.gid,
                        hash,
                        key_hash,
                    };
                    entries.push((hash, group.protected, group.arrived_ns, place));
                }
            }
            entries.sort_unstable();
            entries.into_iter().collect()
        });
        let lowest = Place {
            gid: 0,
            hash: 0,
            key_hash: 0,
        };
        loop {
            let &first = by_arrival.range((hash, false, i64::MIN, lowest)..).next()?;
            if first.0 != hash {
                return None;
            }
            let place = first.3;
            let Some((_, group)) = find_group(&mut self.groups, place) else {
                // Unreachable while the indices agree; drop the entry
                // rather than name a group that is not there.
                debug_assert!(false, "index entries belong to held groups");
                by_arrival.remove(&first);
                continue;
            };
            if (group.protected, group.arrived_ns) == (first.1, first.2) {
                return Some(place);
            }
            by_arrival.remove(&first);
            by_arrival.insert((hash, group.protected, group.arrived_ns, place));
            group.indexed.protected = group.protected;
            group.indexed.arrived_ns = group.arrived_ns;
        }
    }

    /// Creates an empty group for `(correlation, key)`, evicting one (in
    /// the caps' order, see the module docs) if a cap is reached: the
    /// rule's own stalest group at the rule cap, else the shard's victim.
    /// Returns the group where it now lives (no second lookup), with the
    /// parts of the state [`update_group`] changes beside it. The group
    /// must not be held.
    fn create(
        &mut self,
        meta: &CorrelationMeta,
        key: &[u8],
        time_ns: i64,
        arrival_ns: i64,
    ) -> Held<'_> {
        self.make_room(meta.hash);
        let gid = self.next_gid;
        self.next_gid += 1;
        let deadline_ns = time_ns.saturating_add(meta.timespan_ns);
        let window = Window::for_rule(meta, time_ns);
        let group = Group::new(
            gid,
            meta.fingerprint,
            window,
            time_ns,
            arrival_ns,
            deadline_ns,
        );
        let at = group.indexed;
        let (key_hash, old, group) = self
            .groups
            .entry(meta.hash)
            .or_default()
            .insert(GroupKey::new(key), Box::new(group));
        let place = Place {
            gid,
            hash: meta.hash,
            key_hash,
        };
        if let Some(by_arrival) = &mut self.by_arrival {
            by_arrival.insert((meta.hash, at.protected, at.arrived_ns, place));
        }
        self.by_due.push(at.due_ns, place);
        if let Some(old) = old {
            // Unreachable: callers make only groups that are not held.
            // Were it reached, the old group goes with its index entries,
            // so the indices still name exactly the groups held.
            debug_assert!(false, "a group made twice");
            let at = old.indexed;
            let old_place = Place {
                gid: old.gid,
                ..place
            };
            if let Some(by_arrival) = &mut self.by_arrival {
                by_arrival.remove(&(meta.hash, at.protected, at.arrived_ns, old_place));
            }
            // Its due entry is stale now (see [`DueIndex`]).
        } else {
            self.groups_held += 1;
        }
        Held {
            group,
            place,
            by_arrival: &mut self.by_arrival,
            by_due: &mut self.by_due,
            values_evicted_total: &mut self.values_evicted_total,
            anomaly_counters: &mut self.anomaly_counters,
        }
    }

    /// Evicts what the caps need evicted before a group of correlation
    /// `hash` is made (counted).
    fn make_room(&mut self, hash: u64) {
        let held = self.groups.get(&hash).map_or(0, GroupMap::len) as u64;
        if held >= self.rule_groups_max {
            if let Some(victim) = self.stalest_of(hash) {
                self.remove(victim);
                self.evicted_total = self.evicted_total.wrapping_add(1);
            }
        }
        if self.groups_held as u64 >= self.groups_max {
            if let Some(victim) = self.victim() {
                self.remove(victim);
                self.evicted_total = self.evicted_total.wrapping_add(1);
            }
        }
        debug_assert!((self.groups_held as u64) < self.groups_max);
    }

    /// Removes the group at `place` and its eviction index entry, returning
    /// it; its due entry is left stale (see [`DueIndex`]).
    fn remove(&mut self, place: Place) -> Option<(u64, GroupKey, Group)> {
        let hash = place.hash;
        let groups = self.groups.get_mut(&hash)?;
        let (key, group) = groups.remove_by_gid(place.key_hash, place.gid)?;
        if groups.is_empty() {
            self.groups.remove(&hash);
        }
        let at = group.indexed;
        let removed_arrival = self.by_arrival.as_mut().is_none_or(|by_arrival| {
            by_arrival.remove(&(hash, at.protected, at.arrived_ns, place))
        });
        assert!(removed_arrival, "group indices out of sync");
        self.groups_held -= 1;
        self.compact_due();
        Some((hash, key, *group))
    }

    /// Drops the due index's stale entries once they outnumber the groups
    /// by [`DUE_STALE_SLACK`] (and identical live entries, which a group
    /// filed earlier and then refiled at its old time can leave): a sort
    /// of the entries, so O(log n) for each of the at least
    /// `groups + DUE_STALE_SLACK` stale entries made since the last one.
    fn compact_due(&mut self) {
        if self.by_due.len() <= 2 * self.groups_held + DUE_STALE_SLACK {
            return;
        }
        let groups = &self.groups;
        let mut live: Vec<(i64, Place)> = self
            .by_due
            .entries()
            .filter(|&(due_ns, place)| due_entry_is_live(groups, due_ns, place))
            .collect();
        live.sort_unstable();
        live.dedup();
        debug_assert_eq!(live.len(), self.groups_held);
        self.by_due = DueIndex::of(live);
    }

    /// Advances the clock to `now_ns` (the node's clock, or an event-time
    /// watermark in a replay: the clock observations' `arrival_ns` are
    /// on): first hands out the alerts `observe` queued, then closes
    /// windows that came due before `now_ns` (appending the alerts of
    /// closing conditions that hold to `out`, in due order, followed by
    /// what they complete through chaining) and drops groups that can no
    /// longer change. Groups of correlations the rule set no longer has,
    /// or whose definition changed, are dropped without an alert.
    pub fn advance(&mut self, rules: &RuleSet, now_ns: i64, out: &mut Vec<CorrelationAlert>) {
        while let Some(pending) = self.pending.pop_front() {
            if let Some(correlation) = rules.correlation_by_hash(pending.hash) {
                out.push(CorrelationAlert {
                    correlation,
                    id: pending.id,
                    group_key: pending.group_key,
                    count: pending.count,
                    first_seen_ns: pending.first_seen_ns,
                    last_seen_ns: pending.last_seen_ns,
                    arrived_ns: pending.arrived_ns,
                    samples: pending.samples,
                    score: pending.score_bits.map(f64::from_bits),
                    reason: pending.reason,
                });
            }
        }
        while let Some((due_ns, place)) = self.by_due.first() {
            if due_ns >= now_ns {
                break;
            }
            self.by_due.pop_first();
            let Some((_, group)) = find_group(&mut self.groups, place) else {
                // Stale: its group was removed.
                continue;
            };
            if group.indexed.due_ns != due_ns {
                // Stale: the group was filed again at another time.
                continue;
            }
            let group_due_ns = group.due_ns;
            if group_due_ns != due_ns {
                // Left behind by `reindex` (a later due time): file it
                // where it belongs.
                self.by_due.push(group_due_ns, place);
                group.indexed.due_ns = group_due_ns;
                continue;
            }
            let is_anomaly = matches!(group.window, Window::Anomaly(_));
            if is_anomaly && self.advance_anomaly(rules, place, now_ns, out) {
                continue;
            }
            let Some((hash, key, group)) = self.remove(place) else {
                // Unreachable: the group was found just above.
                debug_assert!(false, "a due group went missing");
                continue;
            };
            let Some(correlation) = rules.correlation_by_hash(hash) else {
                continue;
            };
            let Some(meta) = rules.correlation_meta(correlation) else {
                continue;
            };
            if meta.fingerprint != group.fingerprint
                || meta.anomaly.is_some()
                || meta.condition.is_eager()
                || meta.kind == CorrelationKind::TemporalOrdered
            {
                continue;
            }
            if let Some(alert) = close_window(meta, correlation, &key, &group) {
                self.fired(rules, meta, alert, 0, out);
            }
        }
        if self.by_arrival.is_some() && self.under_half_of_caps() {
            self.by_arrival = None;
        }
        self.compact_due();
    }

    /// Whether the state holds under half of each of its caps, the shard's
    /// and every rule's: the eviction index is dropped then (see
    /// [`ArrivalIndex`]).
    fn under_half_of_caps(&self) -> bool {
        (self.groups_held as u64) < self.groups_max / 2
            && self
                .groups
                .values()
                .all(|groups| (groups.len() as u64) < self.rule_groups_max / 2)
    }

    /// Whether the eviction index is built (see [`ArrivalIndex`]).
    #[cfg(test)]
    fn arrival_index_built(&self) -> bool {
        self.by_arrival.is_some()
    }

    /// Whether a group with id `gid` is held.
    #[cfg(test)]
    fn holds_gid(&self, gid: u64) -> bool {
        self.groups
            .values()
            .any(|groups| groups.values().any(|group| group.gid == gid))
    }

    /// Checks that the indices agree with the groups. Linear in the number
    /// of groups: for tests and after loading a checkpoint.
    pub fn check_invariants(&self) -> bool {
        self.check(true)
    }

    /// [`CorrelationState::check_invariants`], with the lookups of each
    /// group in the indices only when `indices` (a restore has just built
    /// them from the groups).
    fn check(&self, indices: bool) -> bool {
        let mut count = 0usize;
        let due: std::collections::HashSet<(i64, Place)> = if indices {
            self.by_due.entries().collect()
        } else {
            std::collections::HashSet::new()
        };
        for (hash, groups) in &self.groups {
            if groups.is_empty() {
                return false;
            }
            for (key, group) in groups.iter() {
                count += 1;
                let at = group.indexed;
                let place = Place {
                    gid: group.gid,
                    hash: *hash,
                    key_hash: groups.key_hash(key.as_slice()),
                };
                let indexed = !indices
                    || (groups.get(key.as_slice()).map(|held| held.gid) == Some(group.gid)
                        && self.by_arrival.as_ref().is_none_or(|by_arrival| {
                            by_arrival.contains(&(*hash, at.protected, at.arrived_ns, place))
                        })
                        && due.contains(&(at.due_ns, place)));
                let consistent = indexed
                    && (at.protected, at.arrived_ns) <= (group.protected, group.arrived_ns)
                    && at.due_ns <= group.due_ns
                    && group.samples.len() <= SAMPLES_MAX
                    && group.items.len() <= VALUES_PER_GROUP_MAX
                    && group.items.is_consistent()
                    && match &group.window {
                        Window::Times(times) => {
                            times.iter().zip(times.iter().skip(1)).all(|(a, b)| a <= b)
                        }
                        Window::Ordered(steps) => steps.is_consistent(ORDERED_EVENTS_MAX),
                        _ => true,
                    };
                if !consistent {
                    return false;
                }
            }
        }
        self.groups_max >= 1
            && self.rule_groups_max >= 1
            && count == self.groups_held
            && self.by_due.len() >= count
            && self.by_due.len() <= 2 * count + DUE_STALE_SLACK
            && self
                .by_arrival
                .as_ref()
                .is_none_or(|by_arrival| count == by_arrival.len())
            && count as u64 <= self.groups_max
            && self
                .groups
                .values()
                .all(|groups| groups.len() as u64 <= self.rule_groups_max)
            && self.pending.len() <= PENDING_ALERTS_MAX
    }
}

/// One observation of a Sigma correlation applied to its group (`created`:
/// made for it just now), with the group's index entries kept in place
/// (see [`reindex`]); returns the alert it completes, if any.
fn update_group(
    meta: &CorrelationMeta,
    held: Held<'_>,
    observation: &Observation<'_>,
    created: bool,
) -> Option<CorrelationAlert> {
    let Held {
        group,
        place: held_place,
        by_arrival,
        by_due,
        values_evicted_total,
        ..
    } = held;
    let key = observation.group_key;
    let time_ns = observation.time_ns;
    let span_ns = meta.timespan_ns;
    let mut values_evicted = 0u64;
    group.observed(time_ns, observation.arrival_ns, created);

    let alert = if meta.kind == CorrelationKind::TemporalOrdered {
        group.deadline_ns = group.newest_ns.saturating_add(span_ns);
        step_ordered(meta, group, observation)
    } else if meta.condition.is_eager() {
        group.deadline_ns = group.newest_ns.saturating_add(span_ns);
        step_sliding(meta, group, observation)
    } else {
        let mut alert = None;
        let ended = match &group.window {
            Window::Closing(closing) => time_ns > closing.start_ns.saturating_add(span_ns),
            // Another kind's window: a group's kind is its rule
            // definition's (a changed definition starts a new group), so
            // only an archive can hold one, and restore cannot check it
            // without the rules. The window starts here.
            _ => true,
        };
        if ended {
            alert = close_window(meta, observation.correlation, key, group);
            group.clear_window();
            group.window = Window::for_rule(meta, time_ns);
        }
        if let Window::Closing(closing) = &mut group.window {
            closing.first_ns = closing.first_ns.min(time_ns);
            closing.last_ns = closing.last_ns.max(time_ns);
            group.deadline_ns = closing.start_ns.saturating_add(span_ns);
            if meta.kind == CorrelationKind::EventCount {
                closing.count = closing.count.saturating_add(1);
            }
        }
        match meta.kind {
            CorrelationKind::EventCount => {}
            _ => {
                for_each_item(meta.kind, observation, |item| {
                    group.items.touch(item, time_ns);
                });
                while group.items.len() > VALUES_PER_GROUP_MAX {
                    group.items.pop_oldest();
                    values_evicted += 1;
                }
            }
        }
        push_sample(&mut group.samples, time_ns, observation.raw);
        alert
    };

    group.settle_due();
    reindex(by_arrival, by_due, held_place, group);
    *values_evicted_total = values_evicted_total.wrapping_add(values_evicted);
    alert
}

/// One observation of an anomaly rule applied to its entity's group
/// (`created`: made for it just now); findings go to `alerts`.
fn observe_anomaly(
    meta: &CorrelationMeta,
    spec: &AnomalySpec,
    observation: &Observation<'_>,
    held: Held<'_>,
    created: bool,
    alerts: &mut Vec<CorrelationAlert>,
) {
    let group = held.group;
    let key = observation.group_key;
    let time_ns = observation.time_ns;
    group.observed(time_ns, observation.arrival_ns, created);
    if !matches!(group.window, Window::Anomaly(_)) {
        group.window = Window::Anomaly(Box::new(AnomalyBody::new(meta.kind, spec, time_ns)));
    }
    let Some(body) = group.window.anomaly() else {
        return;
    };
    let mut findings = Vec::new();
    body.observe(
        meta,
        spec,
        observation.value,
        time_ns,
        held.anomaly_counters,
        &mut findings,
    );
    group.deadline_ns = body.deadline_ns(spec, group.newest_ns);
    group.settle_due();
    push_sample(&mut group.samples, time_ns, observation.raw);
    for finding in findings {
        alerts.push(anomaly_alert(
            meta,
            observation.correlation,
            key,
            group,
            finding,
        ));
    }
    reindex(held.by_arrival, held.by_due, held.place, group);
}

/// The items an observation adds to a `value_count` or `temporal` window:
/// the value, or one single-byte item per input position in the mask.
fn for_each_item(kind: CorrelationKind, observation: &Observation<'_>, mut f: impl FnMut(&[u8])) {
    match kind {
        CorrelationKind::ValueCount => {
            if let Some(value) = observation.value {
                f(value);
            }
        }
        _ => {
            for position in 0..64u8 {
                if observation.input_mask & (1u64 << position) != 0 {
                    f(&[position]);
                }
            }
        }
    }
}

/// Eager sliding window of `event_count`, `value_count` or `temporal`.
fn step_sliding(
    meta: &CorrelationMeta,
    group: &mut Group,
    observation: &Observation<'_>,
) -> Option<CorrelationAlert> {
    let time_ns = observation.time_ns;
    let window_low_ns = group.newest_ns.saturating_sub(meta.timespan_ns);
    if time_ns < window_low_ns {
        // Late and already outside the window: not counted.
        return None;
    }
    let count = if meta.kind == CorrelationKind::EventCount {
        if !matches!(group.window, Window::Times(_)) {
            // Another kind's window, as for a closing one (`update_group`).
            group.window = Window::for_rule(meta, time_ns);
        }
        let Window::Times(times) = &mut group.window else {
            return None;
        };
        let at = times.partition_point(|&t| t <= time_ns);
        times.insert(at, time_ns);
        while times.front().is_some_and(|&t| t < window_low_ns) {
            times.pop_front();
        }
        times.len() as u64
    } else {
        for_each_item(meta.kind, observation, |item| {
            group.items.touch(item, time_ns);
        });
        while group.items.oldest_ns().is_some_and(|t| t < window_low_ns) {
            group.items.pop_oldest();
        }
        group.items.len() as u64
    };
    if sample_may_show(meta, count) {
        push_sample(&mut group.samples, time_ns, observation.raw);
    }
    debug_assert!(
        meta.condition.min.is_none_or(|min| count <= min),
        "the window resets at the threshold"
    );
    if !meta.condition.holds(count) {
        return None;
    }
    let (first_seen_ns, last_seen_ns) = if let Window::Times(times) = &group.window {
        (
            times.front().copied().unwrap_or(time_ns),
            times.back().copied().unwrap_or(time_ns),
        )
    } else {
        group.items.span().unwrap_or((time_ns, time_ns))
    };
    let alert = CorrelationAlert {
        correlation: observation.correlation,
        id: alert_id(&meta.id, observation.group_key, first_seen_ns),
        group_key: observation.group_key.to_vec(),
        count,
        first_seen_ns,
        last_seen_ns,
        arrived_ns: group.arrived_ns,
        samples: samples_since(&group.samples, first_seen_ns),
        score: None,
        reason: None,
    };
    group.clear_window();
    Some(alert)
}

/// Most input events a `temporal_ordered` group remembers inside its
/// window; older ones are dropped first.
pub const ORDERED_EVENTS_MAX: usize = 256;

/// `temporal_ordered`: records the event under every input position it
/// matches, then looks for an ordered chain in event time; see the module
/// docs.
fn step_ordered(
    meta: &CorrelationMeta,
    group: &mut Group,
    observation: &Observation<'_>,
) -> Option<CorrelationAlert> {
    let time_ns = observation.time_ns;
    let span_ns = meta.timespan_ns;
    let inputs = meta.inputs.len();
    if inputs == 0 {
        return None;
    }
    if !matches!(group.window, Window::Ordered(_)) {
        // Another kind's window, as for a closing one (`update_group`).
        group.window = Window::for_rule(meta, time_ns);
    }
    let Window::Ordered(steps) = &mut group.window else {
        return None;
    };
    // Each event gets a sequence number within the window, so one event
    // can never stand for two steps even when steps share a timestamp.
    steps.push_event(observation.input_mask, inputs, time_ns);
    // Events that can no longer share a window with the newest one go.
    let window_low_ns = group.newest_ns.saturating_sub(span_ns);
    while steps.oldest_ns().is_some_and(|t| t < window_low_ns) || steps.len() > ORDERED_EVENTS_MAX {
        steps.pop_oldest();
    }
    push_sample(&mut group.samples, time_ns, observation.raw);
    let (first_seen_ns, last_seen_ns) = steps.chain(inputs, span_ns)?;
    let alert = CorrelationAlert {
        correlation: observation.correlation,
        id: alert_id(&meta.id, observation.group_key, first_seen_ns),
        group_key: observation.group_key.to_vec(),
        count: inputs as u64,
        first_seen_ns,
        last_seen_ns,
        arrived_ns: group.arrived_ns,
        samples: samples_since(&group.samples, first_seen_ns),
        score: None,
        reason: None,
    };
    group.clear_window();
    Some(alert)
}

/// The alert of an anomaly finding: id over the rule, the group key (and
/// the new value, for first-seen findings) and the window start.
fn anomaly_alert(
    meta: &CorrelationMeta,
    correlation: u32,
    key: &[u8],
    group: &Group,
    finding: Finding,
) -> CorrelationAlert {
    let id = if finding.id_extra.is_empty() {
        alert_id(&meta.id, key, finding.window_start_ns)
    } else {
        let mut keyed = Vec::with_capacity(key.len() + 1 + finding.id_extra.len());
        keyed.extend_from_slice(key);
        keyed.push(0xff);
        keyed.extend_from_slice(&finding.id_extra);
        alert_id(&meta.id, &keyed, finding.window_start_ns)
    };
    CorrelationAlert {
        correlation,
        id,
        group_key: key.to_vec(),
        count: finding.count,
        first_seen_ns: finding.first_seen_ns,
        last_seen_ns: finding.last_seen_ns,
        arrived_ns: group.arrived_ns,
        samples: samples_since(&group.samples, finding.first_seen_ns),
        score: finding.score.filter(|s| s.is_finite()),
        reason: Some(finding.reason),
    }
}

/// Keeps the most recent [`SAMPLES_MAX`] raw lines, reusing the buffer of
/// the line it drops so a busy group stops allocating.
fn push_sample(samples: &mut Vec<Sample>, time_ns: i64, raw: &[u8]) {
    let mut buffer = if samples.len() >= SAMPLES_MAX {
        // The oldest goes (at most SAMPLES_MAX move up); its buffer is
        // reused.
        samples.remove(0).raw
    } else {
        if samples.capacity() == 0 {
            // Most groups never see a second event (a flood of new keys):
            // room for one, not the four a first push would reserve.
            samples.reserve_exact(1);
        }
        Vec::with_capacity(raw.len())
    };
    buffer.clear();
    buffer.extend_from_slice(raw);
    samples.push(Sample {
        time_ns,
        raw: buffer,
    });
    debug_assert!(samples.len() <= SAMPLES_MAX);
}

/// Whether an eager `event_count` or `value_count` window whose count is
/// `count` after an event can still raise an alert showing that event
/// among its [`SAMPLES_MAX`] samples. Each event adds at most one to
/// those counts, so an alert (count at least the threshold `min`) comes
/// at least `min - count` events later, and shows only the last
/// `SAMPLES_MAX` lines: an event at a count below `min - SAMPLES_MAX + 1`
/// can never be shown, and its line is not copied. The lines that are
/// kept are then exactly the last ones an alert shows, as if every line
/// had been kept. Most groups of a threshold above `SAMPLES_MAX` never
/// come near it (a port-scan rule's group per address pair sees one
/// packet), and this spares each of them a copy of its line (the largest
/// part of such a group) and two allocations. `temporal` (one event can
/// add several inputs) and the other kinds keep every line.
fn sample_may_show(meta: &CorrelationMeta, count: u64) -> bool {
    match meta.kind {
        CorrelationKind::EventCount | CorrelationKind::ValueCount => meta
            .condition
            .min
            .is_none_or(|min| count.saturating_add(SAMPLES_MAX as u64) > min),
        _ => true,
    }
}

/// The kept lines with a time inside the window (at or after `first_ns`).
fn samples_since(samples: &[Sample], first_ns: i64) -> Vec<Vec<u8>> {
    samples
        .iter()
        .filter(|s| s.time_ns >= first_ns)
        .map(|s| s.raw.clone())
        .collect()
}

/// The alert of a closing condition's window, if its count holds.
fn close_window(
    meta: &CorrelationMeta,
    correlation: u32,
    key: &[u8],
    group: &Group,
) -> Option<CorrelationAlert> {
    let condition: CountCondition = meta.condition;
    debug_assert!(!condition.is_eager());
    let Window::Closing(closing) = &group.window else {
        return None;
    };
    let count = match meta.kind {
        CorrelationKind::EventCount => closing.count,
        _ => group.items.len() as u64,
    };
    if count == 0 || !condition.holds(count) {
        return None;
    }
    Some(CorrelationAlert {
        correlation,
        id: alert_id(&meta.id, key, closing.start_ns),
        group_key: key.to_vec(),
        count,
        first_seen_ns: closing.first_ns,
        last_seen_ns: closing.last_ns,
        arrived_ns: group.arrived_ns,
        samples: group.samples.iter().map(|s| s.raw.clone()).collect(),
        score: None,
        reason: None,
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
        let bytes = archive(&state);
        if let Err(error) = rkyv::access::<ArchivedCorrelationState, rkyv::rancor::Error>(&bytes) {
            panic!("access: {error}");
        }
        let mut restored = match CorrelationState::restore(&bytes) {
            Ok(restored) => restored,
            Err(error) => panic!("restore: {error}"),
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
        let _ = CorrelationState::restore(&aligned);
    }

    /// `state`'s archive, 16-byte aligned.
    fn archive(state: &CorrelationState) -> rkyv::util::AlignedVec<16> {
        let (bytes, len) = match state.archive_into(Vec::new()) {
            Ok(archived) => archived,
            Err(error) => panic!("serialize: {error}"),
        };
        assert_eq!(len, bytes.len());
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes);
        aligned
    }

    /// An archive listing one key twice (only a damaged one can) restores
    /// to a state that keeps the last of them and holds its invariants.
    #[test]
    fn an_archive_with_a_key_twice_keeps_one() {
        let rules = rules();
        let mut state = CorrelationState::new(16);
        for (key, t) in [(&b"a"[..], 0), (b"b", S)] {
            assert_eq!(state.observe(&rules, 0, key, t, b"line"), None);
        }
        let hash = rules.correlation(0).hash;
        let groups = state.groups.get_mut(&hash).unwrap();
        let mut copy = Box::new(groups.get(b"a").unwrap().clone());
        copy.gid = state.next_gid;
        state.next_gid += 1;
        let key_hash = groups.key_hash(b"a");
        let hasher = groups.hasher.clone();
        groups
            .table
            .insert_unique(key_hash, (GroupKey::new(b"a"), copy), |(k, _)| {
                hasher.hash_one(k.as_slice())
            });
        assert_eq!(state.groups[&hash].len(), 3);
        let restored = match CorrelationState::restore(&archive(&state)) {
            Ok(restored) => restored,
            Err(error) => panic!("restore: {error}"),
        };
        assert_eq!(restored.groups[&hash].len(), 2);
        assert_eq!(restored.group_count(), 2);
        assert!(restored.check_invariants());
    }

    #[test]
    fn archive_after_a_header_restores_and_a_reused_id_is_refused() {
        let rules = rules();
        let mut state = CorrelationState::new(16);
        for (i, ip) in [b"a", b"b", b"a", b"c"].iter().enumerate() {
            let _ = state.observe(&rules, 0, &ip[..], i as i64 * S, b"line");
        }
        // After 32 bytes of something else, as a checkpoint block puts it.
        let (bytes, len) = match state.archive_into(vec![7u8; 32]) {
            Ok(archived) => archived,
            Err(error) => panic!("serialize: {error}"),
        };
        assert_eq!(bytes.len(), 32 + len);
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes[32..]);
        let restored = match CorrelationState::restore(&aligned) {
            Ok(restored) => restored,
            Err(error) => panic!("restore: {error}"),
        };
        assert_eq!(restored, state);
        assert!(restored.check_invariants());
        // Two groups with one id: a restored state could not index them.
        let mut twice = state.clone();
        let gids: Vec<u64> = twice
            .groups
            .values()
            .flat_map(|groups| groups.values().map(|group| group.gid))
            .collect();
        assert!(gids.len() >= 2);
        for groups in twice.groups.values_mut() {
            for group in groups.values_mut() {
                group.gid = gids[0];
            }
        }
        match CorrelationState::restore(&archive(&twice)) {
            Ok(_) => panic!("a reused group id restored"),
            Err(error) => assert!(error.contains("used twice"), "{error}"),
        }
        // States no code path makes are refused too, so using one cannot
        // panic: ids about to wrap, a cap of no groups.
        let mut ids = state.clone();
        ids.next_gid = GID_MAX + 1;
        match CorrelationState::restore(&archive(&ids)) {
            Ok(_) => panic!("ids about to wrap restored"),
            Err(error) => assert!(error.contains("next group id"), "{error}"),
        }
        let mut cap = state.clone();
        cap.groups_max = 0;
        match CorrelationState::restore(&archive(&cap)) {
            Ok(_) => panic!("a cap of no groups restored"),
            Err(error) => assert!(error.contains("invariants"), "{error}"),
        }
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

    /// An entity explosion at the cap evicts its own single-event groups,
    /// never a group with progress, however stale.
    #[test]
    fn groups_with_a_second_event_outlive_a_spray_of_new_keys() {
        let rules = rules();
        let mut state = CorrelationState::new(4);
        // An attacker's group with two events, then nothing for a while.
        let _ = state.observe(&rules, 0, b"attacker", 0, b"");
        let _ = state.observe(&rules, 0, b"attacker", S, b"");
        // A spray of new keys, each seen once, all newer.
        for i in 0..1000u32 {
            let key = format!("spray-{i}");
            let _ = state.observe(&rules, 0, key.as_bytes(), 2 * S + i64::from(i), b"");
            assert!(state.check_invariants());
        }
        assert_eq!(state.group_count(), 4);
        assert_eq!(state.evicted_total(), 997);
        // The attacker's group survived: its third event (threshold 3)
        // completes it, counting from its first.
        let Some(alert) = state.observe(&rules, 0, b"attacker", 3 * S, b"") else {
            panic!("the attacker's two earlier events were evicted")
        };
        assert_eq!(alert.group_key, b"attacker");
        assert_eq!((alert.count, alert.first_seen_ns), (3, 0));
        // With only protected groups left, the stalest of them goes.
        let mut state = CorrelationState::new(2);
        for key in [&b"a"[..], b"b"] {
            let _ = state.observe(&rules, 0, key, 0, b"");
            let _ = state.observe(&rules, 0, key, S, b"");
        }
        let _ = state.observe(&rules, 0, b"a", 2 * S, b"");
        let _ = state.observe(&rules, 0, b"c", 3 * S, b"");
        assert_eq!(state.evicted_total(), 1);
        assert!(state.check_invariants());
        assert_eq!(state.group_count(), 2);
    }

    /// A state below its caps keeps no eviction index (nor counts its
    /// bytes); the first victim builds it, and a restored copy, which
    /// builds its own when it needs one, is equal and evicts alike.
    #[test]
    fn the_eviction_index_is_built_when_a_cap_needs_a_victim() {
        let rules = rules();
        let mut state = CorrelationState::new(8);
        for i in 0..8 {
            let key = format!("k{i}");
            let _ = state.observe(&rules, 0, key.as_bytes(), i * S, b"");
        }
        let _ = state.observe(&rules, 0, b"k0", 9 * S, b"");
        assert_eq!(state.group_count(), 8);
        assert!(!state.arrival_index_built());
        let unbuilt_bytes = state.memory_shared();
        // A ninth key: the stalest single-event group (k1; k0 has two).
        let _ = state.observe(&rules, 0, b"k8", 10 * S, b"");
        assert_eq!(state.evicted_total(), 1);
        assert!(state.arrival_index_built());
        assert!(state.memory_shared() > unbuilt_bytes);
        assert!(state.check_invariants());
        assert!(state
            .groups
            .values()
            .all(|groups| groups.get(b"k1").is_none()));
        let mut restored = match CorrelationState::restore(&archive(&state)) {
            Ok(restored) => restored,
            Err(error) => panic!("restore: {error}"),
        };
        assert!(!restored.arrival_index_built());
        assert_eq!(restored, state);
        for (i, key) in [&b"k9"[..], b"k10", b"k0", b"k11"].into_iter().enumerate() {
            let t = (11 + i as i64) * S;
            let _ = state.observe(&rules, 0, key, t, b"");
            let _ = restored.observe(&rules, 0, key, t, b"");
            assert_eq!(restored, state);
        }
        assert_eq!(restored.evicted_total(), 4);
        assert!(restored.arrival_index_built() && restored.check_invariants());
        // Under half the cap, advance drops it again.
        let mut out = Vec::new();
        state.advance(&rules, 100 * S, &mut out);
        assert_eq!(state.group_count(), 0);
        assert!(!state.arrival_index_built());
        assert!(state.check_invariants());
    }

    /// Groups that go (evicted at the cap) leave their due entries
    /// behind: `advance` skips them, the index is compacted once they
    /// outnumber the groups, and the groups still held close exactly as
    /// in a state that never held the others.
    #[test]
    fn stale_due_entries_are_skipped_and_compacted() {
        let rules = rules();
        let ms = S / 1000;
        let mut state = CorrelationState::new(8);
        let mut longest = 0;
        for i in 0..10_000i64 {
            let key = format!("k{i}");
            let _ = state.observe(&rules, 1, key.as_bytes(), i * ms, b"");
            longest = longest.max(state.by_due.len());
            assert!(state.by_due.len() <= 2 * state.group_count() + DUE_STALE_SLACK);
        }
        assert_eq!(state.evicted_total(), 10_000 - 8);
        assert!(longest > 2 * 8, "no stale entry was ever held");
        assert!(state.by_due.len() > state.group_count());
        assert!(state.check_invariants());
        let mut fresh = CorrelationState::new(8);
        for i in 9_992..10_000i64 {
            let key = format!("k{i}");
            let _ = fresh.observe(&rules, 1, key.as_bytes(), i * ms, b"");
        }
        let (mut closed, mut closed_fresh) = (Vec::new(), Vec::new());
        state.advance(&rules, 1_000 * S, &mut closed);
        fresh.advance(&rules, 1_000 * S, &mut closed_fresh);
        assert_eq!(closed.len(), 8);
        assert_eq!(closed, closed_fresh);
        assert_eq!(state.group_count(), 0);
        assert_eq!(state.by_due.len(), 0);
        assert!(state.check_invariants());
    }

    /// At the cap the rule holding the most groups gives one up: a spray
    /// through one rule never evicts another rule's lone group.
    #[test]
    fn a_spray_through_one_rule_evicts_its_own_groups() {
        let rules = rules();
        let mut state = CorrelationState::new(8);
        // Rule 1 ("few": closing, lte 2) holds one stale group.
        let _ = state.observe(&rules, 1, b"sequence", 0, b"");
        for i in 0..1000u32 {
            let key = format!("spray-{i}");
            let _ = state.observe(&rules, 0, key.as_bytes(), S + i64::from(i), b"");
        }
        assert!(state.check_invariants());
        assert_eq!(state.group_count(), 8);
        let mut held = Vec::new();
        state.memory_by_correlation(|hash, count, _| held.push((hash, count)));
        let few = rules.correlation(1).hash;
        assert!(held.contains(&(few, 1)), "{held:?}");
        // Lowering the cap takes from the largest rule too.
        assert_eq!(state.set_groups_max(2), 6);
        let mut held = Vec::new();
        state.memory_by_correlation(|hash, count, _| held.push((hash, count)));
        assert!(held.contains(&(few, 1)), "{held:?}");
        assert!(state.check_invariants());
    }

    /// The rule cap bounds one rule's groups while the shard has room:
    /// its own stalest group goes, another rule's groups stay.
    #[test]
    fn the_rule_cap_bounds_one_rule_and_spares_the_others() {
        let rules = rules();
        let mut state = CorrelationState::new(100);
        let _ = state.observe(&rules, 1, b"sequence", 0, b"");
        let _ = state.observe(&rules, 1, b"other", 0, b"");
        assert_eq!(state.set_rule_groups_max(3), 0);
        assert_eq!(state.rule_groups_max(), 3);
        for i in 0..10u8 {
            let _ = state.observe(&rules, 0, &[b'k', i], S + i64::from(i), b"");
            assert!(state.check_invariants());
        }
        let mut held = Vec::new();
        state.memory_by_correlation(|hash, count, _| held.push((hash, count)));
        let (spray, few) = (rules.correlation(0).hash, rules.correlation(1).hash);
        assert!(held.contains(&(spray, 3)), "{held:?}");
        assert!(held.contains(&(few, 2)), "{held:?}");
        assert_eq!(state.evicted_total(), 7);
        // Lowering the rule cap evicts at once; 0 lifts it to the shard cap.
        assert_eq!(state.set_rule_groups_max(1), 3);
        assert_eq!(state.group_count(), 2);
        assert_eq!(state.set_rule_groups_max(0), 0);
        assert_eq!(state.rule_groups_max(), 100);
        assert!(state.check_invariants());
    }

    #[test]
    fn evict_oldest_drops_the_stalest_groups_and_counts_them() {
        let rules = rules();
        let mut state = CorrelationState::new(100);
        for i in 0..10u8 {
            let _ = state.observe(&rules, 0, &[b'k', i], i64::from(i) * S, b"");
            eprintln!(
                "{i} {} {}",
                state.group_count(),
                state.arrival_index_built()
            );
        }
        assert_eq!(state.group_count(), 10);
        assert_eq!(state.evict_oldest(4), 4);
        assert_eq!(state.group_count(), 6);
        assert_eq!(state.evicted_total(), 4);
        assert!(state.check_invariants());
        assert_eq!(state.set_groups_max(2), 4);
        assert_eq!(state.group_count(), 2);
        // New groups now evict to stay at the cap.
        let _ = state.observe(&rules, 0, b"new", 20 * S, b"");
        assert_eq!(state.group_count(), 2);
        assert_eq!(state.evicted_total(), 9);
        assert_eq!(state.evict_oldest(100), 2);
        assert_eq!(state.group_count(), 0);
    }

    /// One observation of correlation `correlation` for `key` at event
    /// time `time_ns`, arriving at `arrival_ns`; its alerts.
    fn observe_at(
        state: &mut CorrelationState,
        rules: &RuleSet,
        correlation: u32,
        key: &[u8],
        time_ns: i64,
        arrival_ns: i64,
    ) -> Vec<CorrelationAlert> {
        let observation = Observation {
            correlation,
            group_key: key,
            input_mask: 0,
            value: None,
            time_ns,
            arrival_ns,
            raw: b"",
        };
        let mut out = Vec::new();
        state.observe_into(rules, &observation, &mut out);
        out
    }

    /// Senders five hours behind and ahead of the clock `advance` is
    /// given keep their windows as long as one whose clock is right: a
    /// sliding window stays `span` after its newest event arrived, and a
    /// tumbling one closes when what was left of it has passed since.
    /// (Compared with the clock itself, the one behind lost every group
    /// at the next advance and the one ahead kept its groups for hours.)
    #[test]
    fn windows_end_on_the_arrival_clock_whatever_the_senders_clock() {
        const H: i64 = 3600 * S;
        let rules = rules();
        let (count, few) = (0, 1);
        for skew in [-5 * H, 0, 5 * H] {
            let mut state = CorrelationState::new(16);
            let mut out = Vec::new();
            // Node clock 1000 s; the sender's clock is off by `skew`.
            let node = 1_000 * S;
            let event = |node_ns: i64| node_ns + skew;
            // `count` (gte 3 in 10 s): two events 4 s apart, ticks between.
            assert!(observe_at(&mut state, &rules, count, b"k", event(node), node).is_empty());
            state.advance(&rules, node + 4 * S, &mut out);
            assert!(out.is_empty(), "skew {skew}: {out:?}");
            assert!(observe_at(
                &mut state,
                &rules,
                count,
                b"k",
                event(node + 4 * S),
                node + 4 * S
            )
            .is_empty());
            state.advance(&rules, node + 8 * S, &mut out);
            let third = observe_at(
                &mut state,
                &rules,
                count,
                b"k",
                event(node + 8 * S),
                node + 8 * S,
            );
            assert_eq!(third.len(), 1, "skew {skew}: the third event completes it");
            assert_eq!(third[0].count, 3);
            assert_eq!(third[0].first_seen_ns, event(node));
            assert_eq!(third[0].arrived_ns, node + 8 * S);
            // `few` (lte 2 in a 10 s tumbling window): one event, then
            // the window closes 10 s after it arrived, not before.
            assert!(observe_at(&mut state, &rules, few, b"f", event(node), node).is_empty());
            state.advance(&rules, node + 9 * S, &mut out);
            assert!(out.is_empty(), "skew {skew}: closed early: {out:?}");
            state.advance(&rules, node + 10 * S + 1, &mut out);
            assert_eq!(out.len(), 1, "skew {skew}: the window closes on time");
            assert_eq!(out[0].last_seen_ns, event(node));
            assert_eq!(out[0].arrived_ns, node);
            // The sliding group is dropped 10 s after its newest arrival.
            assert_eq!(state.group_count(), 1);
            state.advance(&rules, node + 18 * S, &mut out);
            assert_eq!(state.group_count(), 1, "skew {skew}: dropped early");
            state.advance(&rules, node + 18 * S + 1, &mut out);
            assert_eq!(state.group_count(), 0, "skew {skew}: kept too long");
            assert!(state.check_invariants());
        }
    }

    /// A tumbling window whose event time runs 100× faster than its
    /// arrivals: its second observation computes an earlier due time,
    /// which moves neither it nor its index entry; it closes (two events,
    /// `lte: 2` holds) at the first one.
    #[test]
    fn a_due_time_never_follows_fast_event_time_down() {
        let rules = rules();
        let few = 1;
        let mut state = CorrelationState::new(4);
        for i in 0..2 {
            let _ = observe_at(&mut state, &rules, few, b"k", i * 4 * S, i * 4 * S / 100);
        }
        let group = state.groups.values().next().unwrap().get(b"k").unwrap();
        assert_eq!(group.computed_due_ns(), 10 * S - 4 * S + 4 * S / 100);
        assert_eq!((group.due_ns, group.indexed.due_ns), (10 * S, 10 * S));
        let mut out = Vec::new();
        state.advance(&rules, 10 * S, &mut out);
        assert!(out.is_empty());
        state.advance(&rules, 10 * S + 1, &mut out);
        assert_eq!(out.len(), 1);
        assert!(state.check_invariants());
    }

    #[test]
    fn eviction_takes_the_stalest_arrival() {
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

    /// The group the caps should evict, computed from the groups' own
    /// fields (not the indices): in the rule holding the most groups (the
    /// last such in hash order, as `max_by_key` picks), the smallest
    /// `(protected, arrived_ns, gid)`.
    fn expected_victim(state: &CorrelationState) -> Option<u64> {
        let (_, groups) = state.groups.iter().max_by_key(|(_, g)| g.len())?;
        groups
            .values()
            .map(|g| (g.protected, g.arrived_ns, g.gid))
            .min()
            .map(|(_, _, gid)| gid)
    }

    #[test]
    fn lazy_index_entries_evict_and_expire_as_eager_ones_would() {
        let rules = rules();
        let correlations = rules.correlation_count().min(3) as u32;
        assert!(correlations >= 2);
        let mut state = CorrelationState::new(40);
        let mut next = crate::test_scramble(0x2545_f491_4f6c_dd1d);
        let mut clock_ns = 0i64;
        let mut out = Vec::new();
        let mut evictions_checked = 0;
        // The eviction index is built at the cap and dropped under half of
        // it: (builds, drops, victims checked after a rebuild).
        let mut built = state.arrival_index_built();
        let (mut builds, mut drops, mut rebuilt_victims) = (0, 0, 0);
        for step in 0..20_000 {
            let r = next();
            // Mostly forward in time, sometimes the same instant or an
            // older event (out of order).
            match r % 10 {
                0 => clock_ns -= (r >> 8) as i64 % (5 * S),
                1 => {}
                _ => clock_ns += (r >> 8) as i64 % (3 * S),
            }
            let correlation = ((r >> 40) % u64::from(correlations)) as u32;
            let k = (r >> 48) % 120;
            let key = format!("k{k}");
            // Each key's sender has its own clock: right, hours behind or
            // ahead, or a minute behind.
            let skew_ns = [0, -5 * 3600 * S, 5 * 3600 * S, -60 * S][(k % 4) as usize];
            let time_ns = clock_ns + skew_ns;
            let exists = rules
                .correlation_meta(correlation)
                .and_then(|meta| state.groups.get(&meta.hash))
                .is_some_and(|groups| groups.get(key.as_bytes()).is_some());
            let at_cap = state.group_count() as u64 >= state.groups_max;
            let victim = (!exists && at_cap)
                .then(|| expected_victim(&state))
                .flatten();
            let _ = observe_at(
                &mut state,
                &rules,
                correlation,
                key.as_bytes(),
                time_ns,
                clock_ns,
            );
            if let Some(victim) = victim {
                assert!(!state.holds_gid(victim), "step {step}: wrong victim");
                evictions_checked += 1;
                assert!(state.arrival_index_built(), "step {step}");
                if drops > 0 {
                    rebuilt_victims += 1;
                }
            }
            if state.arrival_index_built() != built {
                built = !built;
                assert!(built, "step {step}: dropped by an observation");
                assert!(at_cap, "step {step}: built below the cap");
                builds += 1;
            }
            assert!(state.check_invariants(), "step {step}");
            if step % 97 == 0 {
                let now_ns = clock_ns - 20 * S;
                let not_due: Vec<u64> = state
                    .groups
                    .values()
                    .flat_map(|groups| groups.values())
                    .filter(|group| group.due_ns >= now_ns)
                    .map(|group| group.gid)
                    .collect();
                state.advance(&rules, now_ns, &mut out);
                assert!(state.check_invariants(), "step {step}");
                if built && !state.arrival_index_built() {
                    assert!(state.group_count() < 20, "step {step}");
                    built = false;
                    drops += 1;
                }
                for gid in not_due {
                    assert!(
                        state.holds_gid(gid),
                        "step {step}: advance dropped a group not yet due"
                    );
                }
                for groups in state.groups.values() {
                    for group in groups.values() {
                        assert!(
                            group.due_ns >= now_ns || matches!(group.window, Window::Anomaly(_)),
                            "step {step}: a due group survived advance"
                        );
                    }
                }
            }
        }
        assert!(evictions_checked > 1_000, "{evictions_checked}");
        // 13 builds, 12 drops, 11,164 victims after a rebuild when written.
        assert!(
            builds >= 2 && drops >= 1 && rebuilt_victims > 0,
            "{builds} {drops} {rebuilt_victims}"
        );
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

    fn compile(text: &str) -> RuleSet {
        let source = RuleSource {
            origin: "test".to_owned(),
            text: text.to_owned(),
        };
        match RuleSet::compile(&[source]) {
            Ok(rules) => rules,
            Err(errors) => panic!("{errors:?}"),
        }
    }

    const EXTRA: &str = r#"
title: extra
id: extra
correlation:
    type: event_count
    rules: [base]
    group-by: [source.ip]
    timespan: 10s
    condition:
        gte: 1
"#;

    #[test]
    fn state_survives_a_reload_that_keeps_the_rule() {
        // Set B puts a new correlation *before* the kept ones, so their
        // indices shift: state keyed by index would mix them up.
        let set_a = rules();
        let set_b = compile(&format!("{EXTRA}---{RULES}"));
        let count_b = (0..set_b.correlation_count() as u32)
            .find(|&i| set_b.correlation(i as usize).id == "count")
            .unwrap_or(u32::MAX);
        assert_ne!(count_b, 0, "the kept rule moved");
        let mut reloaded = CorrelationState::new(16);
        let mut unchanged = CorrelationState::new(16);
        for state in [&mut reloaded, &mut unchanged] {
            assert_eq!(state.observe(&set_a, 0, b"k", 0, b"1"), None);
            assert_eq!(state.observe(&set_a, 0, b"k", S, b"2"), None);
        }
        let after_reload = reloaded.observe(&set_b, count_b, b"k", 2 * S, b"3");
        let without_reload = unchanged.observe(&set_a, 0, b"k", 2 * S, b"3");
        let (Some(after_reload), Some(without_reload)) = (after_reload, without_reload) else {
            panic!("the kept rule lost its window");
        };
        assert_eq!(after_reload.id, without_reload.id);
        assert_eq!(after_reload.count, 3);
        assert_eq!(after_reload.correlation, count_b);
        // A rule whose definition changed under the same id starts afresh.
        let changed = compile(&RULES.replace("gte: 3", "gte: 4"));
        let mut state = CorrelationState::new(16);
        let _ = state.observe(&set_a, 0, b"k", 0, b"1");
        let _ = state.observe(&set_a, 0, b"k", S, b"2");
        assert_eq!(state.observe(&changed, 0, b"k", 2 * S, b"3"), None);
        // The old group went with its index entries; the new one is filed.
        assert_eq!(state.group_count(), 1);
        assert!(state.check(true));
        assert_eq!(state.observe(&changed, 0, b"k", 3 * S, b"4"), None);
        assert_eq!(state.observe(&changed, 0, b"k", 4 * S, b"5"), None);
        assert!(state
            .observe(&changed, 0, b"k", 5 * S, b"6")
            .is_some_and(|alert| alert.count == 4));
        // Groups of a rule that is gone are dropped by advance.
        let mut out = Vec::new();
        let gone = compile(&format!(
            "{EXTRA}---{}",
            &RULES[..RULES.find("---").unwrap_or(0)]
        ));
        let mut state = CorrelationState::new(16);
        let _ = state.observe(&set_a, 0, b"k", 0, b"1");
        state.advance(&gone, 100 * S, &mut out);
        assert!(out.is_empty());
        assert_eq!(state.group_count(), 0);
    }

    /// The base rule `a` the correlations of these tests count.
    macro_rules! base_rule_a {
        () => {
            r#"
title: a
id: a
name: a
detection:
    sel:
        event.action: a
    condition: sel
---"#
        };
    }

    const KINDS: &str = concat!(
        base_rule_a!(),
        r#"
title: b
id: b
name: b
detection:
    sel:
        event.action: b
    condition: sel
---
title: values
id: values
correlation:
    type: value_count
    rules: [a]
    group-by: [host]
    timespan: 10s
    condition: {field: user, gte: 3}
---
title: temporal
id: temporal
correlation:
    type: temporal
    rules: [a, b]
    group-by: [host]
    timespan: 10s
---
title: ordered
id: ordered
correlation:
    type: temporal_ordered
    rules: [a, b]
    group-by: [host]
    timespan: 10s
---
title: few values
id: few-values
correlation:
    type: value_count
    rules: [a]
    group-by: [host]
    timespan: 10s
    condition: {field: user, lt: 5}
"#
    );

    const HIGH_THRESHOLDS: &str = concat!(
        base_rule_a!(),
        r#"
title: many values
id: many-values
correlation:
    type: value_count
    rules: [a]
    group-by: [host]
    timespan: 10s
    condition: {field: user, gte: 12}
---
title: many events
id: many-events
correlation:
    type: event_count
    rules: [a]
    group-by: [host]
    timespan: 10s
    condition:
        gte: 9
"#
    );

    /// Thresholds above `SAMPLES_MAX`: the lines not kept (see
    /// `sample_may_show`) change no alert. Checked against a model that
    /// keeps every counted line of each group since its last alert and
    /// expects an alert's samples to be the last `SAMPLES_MAX` of them
    /// inside its window, over a stream whose windows slide, with late
    /// events (not counted) and repeated values.
    #[test]
    fn samples_not_kept_are_never_ones_an_alert_shows() {
        let rules = compile(HIGH_THRESHOLDS);
        let span = 10 * S;
        let mut state = CorrelationState::new(1024);
        // Per group: its newest event time, and the lines counted since
        // its last alert, with their times.
        type Model = (i64, Vec<(i64, Vec<u8>)>);
        let mut model: BTreeMap<(u32, Vec<u8>), Model> = BTreeMap::new();
        let mut scramble = crate::test_scramble(0x9E37_79B9_7F4A_7C15);
        let mut next = |bound: u64| scramble() % bound;
        let mut clock = 0i64;
        let mut alerts = [0usize; 2];
        for i in 0..30_000u64 {
            // Dense and sparse stretches in turn: windows that reach the
            // thresholds and ones that slide below them.
            let gap_ms = if (i / 1_000) % 2 == 0 { 80 } else { 1_500 };
            clock += next(gap_ms) as i64 * 1_000_000;
            let late = next(10) == 0;
            let time_ns = if late { clock - 12 * S } else { clock };
            let correlation = next(2) as u32;
            let key = format!("host-{}", next(5)).into_bytes();
            let user = format!("user-{}", next(24)).into_bytes();
            let line = format!("line {i}").into_bytes();
            let observation = Observation {
                correlation,
                group_key: &key,
                input_mask: 1,
                value: Some(&user),
                time_ns,
                arrival_ns: clock,
                raw: &line,
            };
            let mut out = Vec::new();
            state.observe_into(&rules, &observation, &mut out);
            let (newest, counted) = model.entry((correlation, key.clone())).or_default();
            *newest = if counted.is_empty() && *newest == 0 {
                time_ns
            } else {
                (*newest).max(time_ns)
            };
            if time_ns >= newest.saturating_sub(span) {
                counted.push((time_ns, line.clone()));
            }
            assert!(out.len() <= 1, "one alert per observation here");
            if let Some(alert) = out.first() {
                alerts[correlation as usize] += 1;
                let start = counted.len().saturating_sub(SAMPLES_MAX);
                let expected: Vec<Vec<u8>> = counted[start..]
                    .iter()
                    .filter(|(t, _)| *t >= alert.first_seen_ns)
                    .map(|(_, line)| line.clone())
                    .collect();
                assert_eq!(alert.samples, expected, "observation {i}");
                counted.clear();
            }
        }
        assert!(
            alerts.iter().all(|&n| n >= 20),
            "every rule fired often: {alerts:?}"
        );
        assert!(state.check_invariants());
    }

    /// A group far below a threshold above `SAMPLES_MAX` holds no copy of
    /// its line; one within `SAMPLES_MAX` of its threshold does.
    #[test]
    fn a_group_far_below_its_threshold_keeps_no_line() {
        let line = vec![b'x'; 400];
        let per_group = |rules: &RuleSet, correlation: u32| {
            let mut state = CorrelationState::new(4096);
            let mut out = Vec::new();
            for i in 0..500 {
                let key = format!("host-{i}");
                let observation = Observation {
                    correlation,
                    group_key: key.as_bytes(),
                    input_mask: 1,
                    value: Some(b"u"),
                    time_ns: i as i64,
                    arrival_ns: i as i64,
                    raw: &line,
                };
                state.observe_into(rules, &observation, &mut out);
            }
            assert!(out.is_empty());
            let mut bytes = 0;
            state.memory_by_correlation(|_, groups, b| {
                assert_eq!(groups, 500);
                bytes = b;
            });
            bytes / 500
        };
        // `value_count` at 12 distinct values against KINDS's at 3.
        let far = per_group(&compile(HIGH_THRESHOLDS), 0);
        let near = per_group(&compile(KINDS), 0);
        assert!(far + line.len() <= near, "{far} vs {near} bytes per group");
    }

    /// The group of nearly every packet of a port scan (one value, far
    /// below its threshold, a short key) is its struct and its table slot:
    /// no block for its window, its samples or its key. And the struct
    /// stays small: it is the state's unit (hundreds of thousands of them
    /// with the scenario rules).
    #[test]
    fn a_one_value_group_is_one_block() {
        #[cfg(target_pointer_width = "64")]
        assert!(size_of::<Group>() <= 184, "{} bytes", size_of::<Group>());
        let rules = compile(HIGH_THRESHOLDS);
        let mut state = CorrelationState::new(4096);
        let mut out = Vec::new();
        for i in 0..500 {
            let key = format!("10.0.{}.{}|10.1.0.1", i / 256, i % 256);
            let observation = Observation {
                correlation: 0,
                group_key: key.as_bytes(),
                input_mask: 1,
                value: Some(b"22"),
                time_ns: i as i64,
                arrival_ns: i as i64,
                raw: b"a packet to port 22",
            };
            state.observe_into(&rules, &observation, &mut out);
        }
        assert!(out.is_empty());
        assert!(state.check_invariants());
        let hash = rules.correlation(0).hash;
        let table = hash_bytes::<GroupKey, Box<Group>>(state.groups[&hash].capacity());
        let mut bytes = 0;
        state.memory_by_correlation(|_, groups, b| {
            assert_eq!(groups, 500);
            bytes = b;
        });
        assert_eq!(bytes - table, 500 * heap_block(size_of::<Group>()));
        for group in state.groups[&hash].values() {
            assert!(matches!(group.items, ItemSet::One(_)));
            assert!(group.samples.is_empty() && group.samples.capacity() == 0);
            assert!(matches!(group.window, Window::Items));
        }
    }

    #[test]
    fn every_kind_round_trips_through_rkyv() {
        let rules = compile(KINDS);
        let mut state = CorrelationState::new(64);
        let mut out = Vec::new();
        let observe = |state: &mut CorrelationState,
                       c: u32,
                       mask: u64,
                       user: &[u8],
                       t: i64,
                       out: &mut Vec<CorrelationAlert>| {
            let observation = Observation {
                correlation: c,
                group_key: b"h",
                input_mask: mask,
                value: Some(user),
                time_ns: t,
                arrival_ns: t,
                raw: b"line",
            };
            state.observe_into(&rules, &observation, out);
        };
        for c in 0..4 {
            observe(&mut state, c, 1, b"u1", 0, &mut out);
            observe(&mut state, c, 1, b"u2", S, &mut out);
        }
        assert!(out.is_empty());
        assert!(state.check_invariants());
        let mut restored = match CorrelationState::restore(&archive(&state)) {
            Ok(restored) => restored,
            Err(error) => panic!("restore: {error}"),
        };
        assert_eq!(restored, state);
        assert!(restored.check_invariants());
        let mut a = Vec::new();
        let mut b = Vec::new();
        for c in 0..4 {
            observe(&mut state, c, 2, b"u3", 2 * S, &mut a);
            observe(&mut restored, c, 2, b"u3", 2 * S, &mut b);
        }
        state.advance(&rules, 100 * S, &mut a);
        restored.advance(&rules, 100 * S, &mut b);
        assert_eq!(a, b);
        // value_count fires on the third user, temporal and ordered on b,
        // few-values closes with 3 users.
        let fired: Vec<u32> = a.iter().map(|alert| alert.correlation).collect();
        assert_eq!(fired, vec![0, 1, 2, 3]);
    }

    /// A group holding another kind's window (only an archive can: restore
    /// has no rules to check it against) starts a window of its own kind
    /// at its next event instead of panicking, for every kind.
    #[test]
    fn a_group_with_another_kinds_window_starts_its_own() {
        for text in [RULES, KINDS] {
            let rules = compile(text);
            let correlations = rules.correlation_count() as u32;
            let mut state = CorrelationState::new(64);
            let mut out = Vec::new();
            let observe = |state: &mut CorrelationState, c: u32, t: i64, out: &mut Vec<_>| {
                let user = format!("u{t}");
                let observation = Observation {
                    correlation: c,
                    group_key: b"h",
                    input_mask: 1 << (t % 2),
                    value: Some(user.as_bytes()),
                    time_ns: t * S,
                    arrival_ns: t * S,
                    raw: b"line",
                };
                state.observe_into(&rules, &observation, out);
            };
            for c in 0..correlations {
                observe(&mut state, c, 0, &mut out);
            }
            let wrong = [
                Window::Items,
                Window::Ordered(Box::default()),
                Window::Times(VecDeque::from([5 * S])),
                Window::Closing(Closing {
                    start_ns: -100 * S,
                    count: 9,
                    first_ns: 0,
                    last_ns: 0,
                }),
            ];
            for (i, group) in state
                .groups
                .values_mut()
                .flat_map(|groups| groups.values_mut())
                .enumerate()
            {
                group.window = wrong[i % wrong.len()].clone();
            }
            for t in 1..6 {
                for c in 0..correlations {
                    observe(&mut state, c, t, &mut out);
                }
            }
            state.advance(&rules, 1_000 * S, &mut out);
            assert!(state.check_invariants());
        }
    }

    #[test]
    fn extreme_times_do_not_overflow_any_kind() {
        let rules = compile(KINDS);
        let mut state = CorrelationState::new(8);
        let mut out = Vec::new();
        for t in [i64::MIN, i64::MAX, 0, i64::MIN + 1, i64::MAX - 1] {
            for c in 0..4 {
                for mask in [1, 2, 3] {
                    let observation = Observation {
                        correlation: c,
                        group_key: b"k",
                        input_mask: mask,
                        value: Some(b"v"),
                        time_ns: t,
                        arrival_ns: t,
                        raw: b"",
                    };
                    state.observe_into(&rules, &observation, &mut out);
                }
            }
        }
        state.advance(&rules, i64::MIN, &mut out);
        state.advance(&rules, i64::MAX, &mut out);
        assert!(state.check_invariants());
    }

    #[test]
    fn observe_without_mask_or_value_is_counted_not_guessed() {
        let rules = compile(KINDS);
        let mut state = CorrelationState::new(4);
        assert_eq!(state.observe(&rules, 0, b"h", 0, b""), None);
        assert_eq!(state.observe(&rules, 1, b"h", 0, b""), None);
        assert_eq!(state.incomplete_total(), 2);
        assert_eq!(state.group_count(), 0);
    }

    #[test]
    fn memory_estimate_grows_with_groups_and_items() {
        // Empty: nothing per correlation, nothing shared.
        let empty = CorrelationState::new(16);
        empty.memory_by_correlation(|hash, _, _| panic!("empty state reported {hash}"));
        assert_eq!(empty.memory_shared(), 0);

        // event_count: N groups of two events each (below the threshold).
        let rules = rules();
        let count_hash = rules.correlation(0).hash;
        let event_count = |n: usize| {
            let mut state = CorrelationState::new(4096);
            for i in 0..n {
                let key = format!("10.0.{}.{}", i / 256, i % 256);
                for t in 0..2 {
                    assert_eq!(
                        state.observe(&rules, 0, key.as_bytes(), t * S, b"line"),
                        None
                    );
                }
            }
            let mut seen = Vec::new();
            state.memory_by_correlation(|hash, groups, bytes| seen.push((hash, groups, bytes)));
            assert_eq!(seen.len(), 1);
            assert_eq!((seen[0].0, seen[0].1), (count_hash, n));
            (seen[0].2, state.memory_shared(), state)
        };
        let (one, one_shared, _) = event_count(1);
        let (small, small_shared, _) = event_count(500);
        let (large, large_shared, mut state) = event_count(1000);
        // Each group at least holds its struct, its key and a sample.
        assert!(one >= size_of::<Group>() + "10.0.0.0".len() + "line".len());
        assert!(small >= 500 * (size_of::<Group>() + 8));
        let ratio = large as f64 / small as f64;
        assert!((1.8..=2.2).contains(&ratio), "groups: {small} -> {large}");
        let ratio = large_shared as f64 / small_shared as f64;
        assert!(
            (1.8..=2.2).contains(&ratio),
            "shared: {small_shared} -> {large_shared}"
        );
        assert!(one_shared > 0 && one_shared < small_shared);
        // Once advance drops every group, no correlation is reported.
        let mut out = Vec::new();
        state.advance(&rules, i64::MAX, &mut out);
        state.memory_by_correlation(|hash, _, _| panic!("dropped groups reported {hash}"));

        // value_count (closing, so it keeps every value): one group with M
        // distinct values; each costs two key copies and two tree entries.
        let rules = compile(KINDS);
        let few_values = 3;
        let few_hash = rules.correlation(few_values as usize).hash;
        let value_count = |m: usize| {
            let mut state = CorrelationState::new(16);
            let mut out = Vec::new();
            for i in 0..m {
                let user = format!("user-{i:06}");
                let observation = Observation {
                    correlation: few_values,
                    group_key: b"h",
                    input_mask: 1,
                    value: Some(user.as_bytes()),
                    time_ns: i as i64,
                    arrival_ns: i as i64,
                    raw: b"line",
                };
                state.observe_into(&rules, &observation, &mut out);
            }
            assert!(out.is_empty());
            let mut bytes = 0;
            state.memory_by_correlation(|hash, groups, b| {
                assert_eq!((hash, groups), (few_hash, 1));
                bytes = b;
            });
            bytes
        };
        let (base, small, large) = (value_count(1), value_count(1000), value_count(2000));
        let per_item = (large - small) as f64 / 1000.0;
        let floor = 2.0 * ("user-000000".len() + size_of::<Vec<u8>>() + size_of::<i64>()) as f64;
        assert!(
            per_item >= floor && per_item <= 4.0 * floor,
            "{per_item} bytes per item"
        );
        let ratio = (large - base) as f64 / (small - base) as f64;
        assert!((1.8..=2.2).contains(&ratio), "items: {small} -> {large}");
    }
}
