//! Field resolution: how a Sigma field name finds a value in an event.
//!
//! This module owns the mapping from the field names rules are written in
//! (Sigma's Windows-flavoured `CommandLine`, `SourceIp`, `User`, ...) to the
//! names events actually carry (ECS-style `process.command_line`,
//! `source.ip`, `user.name` from the syslog extractors, or the dotted paths
//! of flattened JSON such as `Event.EventData.CommandLine`). It must not
//! allocate while resolving and must not guess between two candidates.
//!
//! A name resolves against an event in this order, first hit wins:
//!
//! 1. **Exact**: a field with exactly this name.
//! 2. **Alias table**: any other name of the same [`ALIAS_GROUPS`] group,
//!    in table order (so `SourceIp` finds `source.ip`, and `source.ip` finds
//!    `SourceIp`).
//! 3. **Unique leaf**: exactly one field whose dotted name ends in
//!    `.<name>` or `.<alias>` (so `CommandLine` finds
//!    `Event.EventData.CommandLine`). Two such fields are ambiguous and
//!    resolve to nothing.
//!
//! The alias group of a name is looked up once at compile time
//! (`FieldName::new`). A rule set then numbers every name its detections
//! and prefilter read, with their alias groups (`FieldTableBuilder`), into
//! a hash table from name bytes to id (`FieldTable`). Per event,
//! `RuleSet::evaluate` indexes the event once (`FieldIndex::build`, kept
//! in the caller's [`crate::Scratch`]): one probe per field name and one per
//! part after a dot, recording per id the first exact field and the one
//! (or ambiguous) leaf field. What a name resolves to depends only on its
//! bytes and the table, and events of one source repeat the same names, so
//! the index remembers the answer per name (a two-way cache of names
//! up to 32 bytes, keyed by the name's bytes themselves, emptied when the
//! table changes): a known name costs a few word compares instead of the
//! probes of the name and of every part after a dot. It also remembers
//! the slots built for recent sequences of names (a shape: a
//! [`NameSequence`] and those slots, 256 of them, found by a hash of the
//! names' lengths and end bytes and then checked name by name): an event
//! with the names of one of them, in the same order, as events of one
//! source nearly always are, is indexed by writing those slots again.
//! Every lookup after that is a few array reads
//! (`FieldIndex::get`), with the same three steps and the same answers as
//! the scan in [`resolve`], which paths outside `evaluate` still use.
//! Neither allocates once the scratch has grown.

use crate::event::Event;

/// Groups of names that mean the same field, canonical (ECS) name first.
/// Keep it a table: adding an alias is adding a string here.
pub const ALIAS_GROUPS: &[&[&str]] = &[
    &[
        "source.ip",
        "SourceIp",
        "src_ip",
        "IpAddress",
        "SourceAddress",
        "src",
        "ClientIP",
        "c-ip",
    ],
    &[
        "destination.ip",
        "DestinationIp",
        "dst_ip",
        "DestAddress",
        "dst",
        "DestinationAddress",
    ],
    &["source.port", "SourcePort", "src_port", "IpPort"],
    &[
        "destination.port",
        "DestinationPort",
        "dst_port",
        "DestPort",
    ],
    &[
        "user.name",
        "User",
        "TargetUserName",
        "UserName",
        "username",
        "AccountName",
    ],
    &["user.target.name", "TargetUser"],
    &["process.command_line", "CommandLine"],
    &["process.executable", "Image", "NewProcessName"],
    &[
        "process.parent.executable",
        "ParentImage",
        "ParentProcessName",
    ],
    &["process.parent.command_line", "ParentCommandLine"],
    &["process.pid", "ProcessId", "pid"],
    &[
        "host.name",
        "Computer",
        "ComputerName",
        "hostname",
        "Hostname",
    ],
    &["url.original", "c-uri", "cs-uri", "url"],
    &["http.request.method", "cs-method", "method"],
    &[
        "user_agent.original",
        "c-useragent",
        "cs-user-agent",
        "UserAgent",
    ],
    &["http.response.status_code", "sc-status", "status"],
    &["file.path", "TargetFilename"],
    &["dns.question.name", "QueryName", "query"],
];

/// The other names of `name`'s alias group (empty if it has none).
pub(crate) fn aliases_of(name: &str) -> &'static [&'static str] {
    ALIAS_GROUPS
        .iter()
        .copied()
        .find(|group| group.contains(&name))
        .unwrap_or(&[])
}

/// The id of a [`FieldName`] that no [`FieldTable`] has interned.
pub(crate) const NO_ID: u32 = u32::MAX;

/// A field name compiled for resolution. See the module docs.
///
/// Once interned into a rule set's [`FieldTable`], it also carries the ids
/// that [`FieldIndex::get`] reads in O(1) per event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldName {
    name: Box<str>,
    /// The whole alias group (it contains `name` itself, which the exact
    /// step has already tried; trying it again costs one comparison).
    aliases: &'static [&'static str],
    /// This name's id in its rule set's table, or [`NO_ID`].
    id: u32,
    /// The ids of the other names of the alias group, in table order.
    alias_ids: Box<[u32]>,
    /// The id whose leaf slot counts fields ending in `.<name>` or
    /// `.<alias>` (the group's first name, or the name itself).
    leaf: u32,
}

impl FieldName {
    /// Compiles `name`, looking up its alias group once.
    pub(crate) fn new(name: &str) -> Self {
        FieldName {
            name: name.into(),
            aliases: aliases_of(name),
            id: NO_ID,
            alias_ids: Box::new([]),
            leaf: NO_ID,
        }
    }

    /// The name as written in the rule.
    pub(crate) fn as_str(&self) -> &str {
        &self.name
    }

    /// Whether this is the empty name (the keyword search target).
    pub(crate) fn is_empty(&self) -> bool {
        self.name.is_empty()
    }

    /// The value this name resolves to in `event`, by scanning its fields.
    /// Hot paths read a [`FieldIndex`] instead.
    pub(crate) fn resolve<'a>(&self, event: &Event<'a>) -> Option<&'a [u8]> {
        resolve_with(event, &self.name, self.aliases)
    }
}

/// While compiling a rule set: every field name a rule or the prefilter
/// reads, and the names of their alias groups, numbered.
#[derive(Debug, Default)]
pub(crate) struct FieldTableBuilder {
    ids: std::collections::HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    leaf_of: Vec<u32>,
}

impl FieldTableBuilder {
    fn id_of(&mut self, name: &str, leaf: Option<u32>) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        // Lossless in practice: names come from rule text, and a table of
        // four billion names could not be built in memory.
        let id = u32::try_from(self.names.len()).unwrap_or(NO_ID - 1);
        self.ids.insert(name.into(), id);
        self.names.push(name.into());
        self.leaf_of.push(leaf.unwrap_or(id));
        id
    }

    /// Numbers `field`'s name and its alias group and stores the ids in
    /// it. The empty name (the message) is left out. Idempotent.
    pub(crate) fn intern(&mut self, field: &mut FieldName) {
        if field.name.is_empty() {
            return;
        }
        let mut group = Vec::with_capacity(field.aliases.len());
        let mut leaf = None;
        for alias in field.aliases {
            let id = self.id_of(alias, leaf);
            leaf.get_or_insert(id);
            if **alias != *field.name {
                group.push(id);
            }
        }
        field.id = self.id_of(&field.name, leaf);
        field.alias_ids = group.into_boxed_slice();
        field.leaf = self.leaf_of[field.id as usize];
    }

    /// The finished lookup table.
    pub(crate) fn finish(self) -> FieldTable {
        let buckets_len = (self.names.len() * 4).next_power_of_two().max(16);
        let mut buckets = vec![(0u32, NO_ID); buckets_len];
        let mask = buckets_len - 1;
        let shift = 64 - buckets_len.trailing_zeros();
        let mut sketch = [0u64; SKETCH_WORDS];
        for (id, name) in self.names.iter().enumerate() {
            let (word, bit) = sketch_bit(name.as_bytes());
            sketch[word] |= bit;
            let hash = name_hash(name.as_bytes());
            let mut at = (hash >> shift) as usize;
            while buckets[at].1 != NO_ID {
                at = (at + 1) & mask;
            }
            // Lossless: ids are u32 (see `id_of`); the tag is the low bits.
            buckets[at] = (hash as u32, id as u32);
        }
        FieldTable {
            names: self.names,
            leaf_of: self.leaf_of,
            buckets,
            mask,
            shift,
            sketch,
            serial: NEXT_TABLE_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// A fast hash of a short name (multiply-rotate over 8-byte words; the
/// tail is read as overlapping loads, never copied byte by byte).
pub(crate) fn name_hash(bytes: &[u8]) -> u64 {
    hash_words(bytes, |word| word)
}

/// [`name_hash`] of `bytes` ASCII-lowercased, without writing the
/// lowercased copy (each word is lowercased as it is loaded; a copy folded
/// byte by byte and then read back a word at a time stalls on store
/// forwarding, which a profile of the log source classifier showed).
pub(crate) fn folded_hash(bytes: &[u8]) -> u64 {
    hash_words(bytes, lower_word)
}

/// `word` with its ASCII capitals lowercased, all eight bytes at once.
#[inline]
fn lower_word(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = word & !HIGH;
    // Bit 7 of each byte: its low seven bits are at least 'A' (no carry
    // leaves the byte: at most 0x7f + 0x3f), and past 'Z'.
    let from_a = low7 + ONES * u64::from(0x80 - b'A');
    let past_z = low7 + ONES * u64::from(0x80 - b'Z' - 1);
    // Capitals: in range and ASCII (high bit clear in the byte itself).
    let capitals = from_a & !past_z & !word & HIGH;
    word | (capitals >> 2)
}

/// The hash of [`name_hash`], each loaded word passed through `fold`
/// first (bytes keep their lanes, so a per-byte fold commutes with it).
#[inline(always)]
fn hash_words(bytes: &[u8], fold: impl Fn(u64) -> u64) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let word = |at: usize| {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&bytes[at..at + 8]);
        fold(u64::from_le_bytes(buf))
    };
    let half = |at: usize| {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(&bytes[at..at + 4]);
        u64::from(u32::from_le_bytes(buf))
    };
    let len = bytes.len();
    let mut hash = (len as u64).wrapping_mul(K);
    let tail = if len >= 8 {
        let mut at = 0;
        while at + 8 < len {
            hash = (hash.rotate_left(23) ^ word(at)).wrapping_mul(K);
            at += 8;
        }
        word(len - 8)
    } else if len >= 4 {
        fold(half(0) | (half(len - 4) << 32))
    } else if len > 0 {
        fold(
            u64::from(bytes[0])
                | (u64::from(bytes[len / 2]) << 8)
                | (u64::from(bytes[len - 1]) << 16),
        )
    } else {
        0
    };
    (hash.rotate_left(23) ^ tail).wrapping_mul(K)
}

/// Whether `value` ASCII-lowercased equals `lower` (already lowercase),
/// compared a word at a time like [`short_eq`], without a folded copy.
pub(crate) fn folded_eq(lower: &[u8], value: &[u8]) -> bool {
    let len = lower.len();
    if len != value.len() {
        return false;
    }
    let folded = |at: usize| lower_word(word_at(value, at));
    let folded_half = |at: usize| lower_word(u64::from(half_at(value, at)));
    match len {
        0 => true,
        1..=3 => lower
            .iter()
            .zip(value)
            .all(|(l, v)| *l == v.to_ascii_lowercase()),
        4..=7 => {
            u64::from(half_at(lower, 0)) == folded_half(0)
                && u64::from(half_at(lower, len - 4)) == folded_half(len - 4)
        }
        _ => {
            // Whole words, then the last eight bytes (overlapping).
            let mut at = 0;
            while at + 8 < len {
                if word_at(lower, at) != folded(at) {
                    return false;
                }
                at += 8;
            }
            word_at(lower, len - 8) == folded(len - 8)
        }
    }
}

/// `bytes[at..at + 8]` as a little-endian word.
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buf)
}

/// `bytes[at..at + 4]` as a little-endian word.
fn half_at(bytes: &[u8], at: usize) -> u32 {
    let mut buf = [0u8; 4];
    buf.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(buf)
}

/// Byte equality, with (overlapping) word loads for names of up to 16
/// bytes (the usual lengths) rather than a library call.
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    match len {
        0 => true,
        // First, middle and last cover every byte of 1 to 3.
        1..=3 => a[0] == b[0] && a[len / 2] == b[len / 2] && a[len - 1] == b[len - 1],
        4..=7 => half_at(a, 0) == half_at(b, 0) && half_at(a, len - 4) == half_at(b, len - 4),
        8..=16 => word_at(a, 0) == word_at(b, 0) && word_at(a, len - 8) == word_at(b, len - 8),
        _ => a == b,
    }
}

/// Bit `i` set where `name[i]` is a dot, found a word at a time; `name`
/// is at most 64 bytes long.
fn dot_mask(name: &[u8]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const DOTS: u64 = 0x2e2e_2e2e_2e2e_2e2e;
    let len = name.len();
    debug_assert!(len <= 64);
    if len < 8 {
        let mut mask = 0u64;
        for (at, _) in name.iter().enumerate().filter(|(_, b)| **b == b'.') {
            mask |= 1 << at;
        }
        return mask;
    }
    let mut mask = 0u64;
    let mut at = 0;
    while at < len {
        let start = at.min(len - 8);
        let v = word_at(name, start) ^ DOTS;
        // 0x80 in exactly the bytes of `v` that are zero (no borrow).
        let mut zero = !(((v & LOW7) + LOW7) | v | LOW7);
        while zero != 0 {
            mask |= 1 << (start + zero.trailing_zeros() as usize / 8);
            zero &= zero - 1;
        }
        at += 8;
    }
    mask
}

/// A rule set's field names, numbered, with an open-addressing table from
/// name bytes to id. Immutable once built.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldTable {
    names: Vec<Box<str>>,
    /// Per id, the id whose slot counts this name's leaf hits.
    leaf_of: Vec<u32>,
    /// `(upper hash bits, id)`, [`NO_ID`] for an empty bucket.
    buckets: Vec<(u32, u32)>,
    mask: usize,
    /// The bucket of a hash is its top bits (the best mixed).
    shift: u32,
    /// [`sketch_bit`] of every name set: most event names are skipped
    /// unhashed.
    sketch: [u64; SKETCH_WORDS],
    /// Tells tables apart for [`FieldIndex`]'s name cache: every finished
    /// table has its own (a clone shares it, and its content); the empty
    /// default table has 0.
    serial: u64,
}

/// Source of [`FieldTable::serial`].
static NEXT_TABLE_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Words of [`FieldTable`]'s name sketch (1,024 bits).
const SKETCH_WORDS: usize = 16;

/// A name's bit in the sketch, from its length and its first and last
/// bytes (no pass over the name): `(word, bit mask)`.
#[inline]
fn sketch_bit(name: &[u8]) -> (usize, u64) {
    let first = name.first().copied().unwrap_or(0);
    let last = name.last().copied().unwrap_or(0);
    let key = (name.len() as u64) | (u64::from(first) << 16) | (u64::from(last) << 24);
    // Top 10 bits of a multiplicative hash: 1,024 positions.
    let at = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize;
    (at / 64, 1u64 << (at % 64))
}

impl FieldTable {
    /// The id of `name`, if a rule reads it.
    fn find(&self, name: &[u8]) -> Option<u32> {
        let (word, bit) = sketch_bit(name);
        if self.sketch[word] & bit == 0 {
            return None;
        }
        let hash = name_hash(name);
        // Truncation intended: the tag is the low bits.
        let tag = hash as u32;
        let mut at = (hash >> self.shift) as usize;
        loop {
            let (bucket_tag, id) = *self.buckets.get(at)?;
            if id == NO_ID {
                return None;
            }
            if bucket_tag == tag && short_eq(self.names.get(id as usize)?.as_bytes(), name) {
                return Some(id);
            }
            at = (at + 1) & self.mask;
        }
    }

    /// The number of names.
    fn len(&self) -> usize {
        self.names.len()
    }
}

/// A field index value: not seen in this event.
const ABSENT: u32 = u32::MAX;
/// A leaf slot value: two fields end in this name.
const AMBIGUOUS: u32 = u32::MAX - 1;

/// One name's state for the current event.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The event this slot was last written for; older slots read as empty.
    generation: u32,
    /// Index of the first field named exactly so, or [`ABSENT`].
    exact: u32,
    /// Index of the one field ending in `.<name>` (of this leaf group), or
    /// [`ABSENT`] or [`AMBIGUOUS`].
    leaf: u32,
}

/// Names up to this long are remembered by [`FieldIndex`]'s name cache
/// (four word loads hold all of such a name's bytes).
const CACHED_NAME_BYTES_MAX: usize = 32;
/// Entries of the name cache (two-way set-associative; 14 KiB).
const NAME_CACHE_ENTRIES: usize = 256;
/// Parts after a dot that a cached name may resolve as leaves; a name with
/// more is resolved afresh each time.
const CACHED_LEAVES_MAX: usize = 2;

/// A name of at most [`NameKey::BYTES_MAX`] bytes held in words: its
/// length and overlapping loads that together cover every byte, so two
/// keys are equal exactly when the names are. Comparing two keys is five
/// XORs; the engine's alias table looks names up by it too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameKey {
    len: u64,
    words: [u64; 4],
}

impl NameKey {
    /// The longest name a key holds.
    pub const BYTES_MAX: usize = CACHED_NAME_BYTES_MAX;

    /// The key of `name`, or `None` if it is longer than [`Self::BYTES_MAX`].
    #[inline]
    pub fn of(name: &[u8]) -> Option<NameKey> {
        let len = name.len();
        let mut words = [0u64; 4];
        match len {
            0 => {}
            // First, middle and last are every byte of 1 to 3.
            1..=3 => {
                words[0] = u64::from(name[0])
                    | (u64::from(name[len / 2]) << 8)
                    | (u64::from(name[len - 1]) << 16);
            }
            4..=7 => {
                words[0] = u64::from(half_at(name, 0)) | (u64::from(half_at(name, len - 4)) << 32);
            }
            8..=16 => {
                words[0] = word_at(name, 0);
                words[1] = word_at(name, len - 8);
            }
            17..=CACHED_NAME_BYTES_MAX => {
                words[0] = word_at(name, 0);
                words[1] = word_at(name, 8);
                words[2] = word_at(name, len - 16);
                words[3] = word_at(name, len - 8);
            }
            _ => return None,
        }
        Some(NameKey {
            len: len as u64,
            words,
        })
    }

    /// Whether `other` is the same name. Scalar XORs on purpose: a
    /// derived `==` compared the words as one vector load of a key just
    /// stored word by word, which stalls on store forwarding (half the
    /// index's time in a profile).
    #[inline]
    pub fn matches(&self, other: &NameKey) -> bool {
        let [a, b, c, d] = self.words;
        let [e, f, g, h] = other.words;
        ((a ^ e) | (b ^ f) | (c ^ g) | (d ^ h) | (self.len ^ other.len)) == 0
    }

    /// A multiplicative hash of the key: take its top bits for a table
    /// index.
    #[inline]
    pub fn hash(&self) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let [a, b, c, d] = self.words;
        let mixed = a ^ b.rotate_left(17) ^ c.rotate_left(31) ^ d.rotate_left(47) ^ self.len;
        mixed.wrapping_mul(K)
    }

    /// The cache entry this key lives in.
    #[inline]
    fn entry(&self) -> usize {
        // Top bits: NAME_CACHE_ENTRIES (2^8) entries.
        (self.hash() >> (64 - NAME_CACHE_ENTRIES.trailing_zeros())) as usize
    }
}

/// What one name resolves to under a table, as [`FieldIndex::build`]
/// records it: its own id (if the table has the name) and that id's leaf
/// slot, and the leaf slots of its parts after a dot that the table has.
#[derive(Clone, Copy, Debug)]
struct NameResolution {
    /// The name's id, or [`NO_ID`].
    exact: u32,
    /// `leaf_of[exact]` (unused without `exact`).
    exact_leaf: u32,
    /// Leaf slots in dot order, [`NO_ID`] past the last.
    leaves: [u32; CACHED_LEAVES_MAX],
}

/// One entry of the name cache.
#[derive(Clone, Copy, Debug)]
struct CachedName {
    key: NameKey,
    /// False for an empty entry.
    used: bool,
    resolution: NameResolution,
}

impl Default for CachedName {
    fn default() -> Self {
        CachedName {
            key: NameKey::default(),
            used: false,
            resolution: NameResolution {
                exact: NO_ID,
                exact_leaf: NO_ID,
                leaves: [NO_ID; CACHED_LEAVES_MAX],
            },
        }
    }
}

/// Per-event index from field-name id to the event's field, built in one
/// pass over the event's fields by [`FieldIndex::build`]. Lives in
/// [`crate::Scratch`] and keeps its allocation between events, with the
/// name cache (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct FieldIndex {
    slots: Vec<Slot>,
    generation: u32,
    /// Resolutions of names seen, valid for the table with `cache_serial`.
    cache: Vec<CachedName>,
    cache_serial: u64,
    /// Indexes of recent field-name sequences, valid for the table with
    /// `cache_serial` (see [`Shape`]).
    shapes: Vec<Shape>,
    /// Ids whose slots the current build wrote, in first-write order.
    touched: Vec<u32>,
    /// Which sequences of names are seen often enough to be remembered.
    sightings: SecondSighting,
    /// The stamp the next remembered shape gets (from 1).
    next_stamp: u64,
    /// The event the slots are for: where its fields start, how many, and
    /// the serial of the table it was indexed under ([`FieldIndex::holds`]).
    indexed: (usize, usize, u64),
}

/// Events of one source carry the same field names in the same order,
/// line after line, and what [`FieldIndex::build`] records depends only on
/// those names and the table. A shape remembers one such sequence and the
/// slots its build left: an event with exactly these names is indexed by
/// writing those slots again, without building a name's key or probing
/// anything.
#[derive(Debug, Default)]
struct Shape {
    names: NameSequence,
    /// The slots the build left: (id, exact, leaf).
    slots: Vec<(u32, u32, u32)>,
    /// Tells what this place holds apart from what it held before and
    /// will hold next ([`ShapeKey`]); 0 while empty.
    stamp: u64,
}

/// Names one remembered shape of a [`crate::Scratch`]'s field index: a
/// caller that knows an event has exactly the names of an event indexed
/// before (the engine's alias pass, which checked the names before it
/// added its own) hands the key back with the next such event
/// ([`crate::RuleSet::evaluate_shaped`]), and the index writes the
/// shape's slots without hashing or reading the names. A key whose shape
/// was replaced since (or whose rule set changed) is not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeKey {
    at: u32,
    stamp: u64,
}

/// Shapes remembered per index (direct-mapped by hash).
const SHAPES: usize = 256;

/// Admits a sequence of names to be remembered only when it is seen a
/// second time while still recent (by its [`NameSequence::hash_of`]):
/// events whose names are each their own (random keys, one-off shapes)
/// then cost a hash and one compare each, not a copy of their names that
/// no later event would match.
#[derive(Debug)]
pub struct SecondSighting {
    /// Hashes offered lately, direct-mapped by their low bits.
    recent: Vec<u64>,
}

impl Default for SecondSighting {
    fn default() -> Self {
        SecondSighting {
            recent: vec![0; SIGHTINGS],
        }
    }
}

/// Hashes [`SecondSighting`] keeps.
const SIGHTINGS: usize = 1024;

impl SecondSighting {
    /// Whether `hash` was offered lately; it is recorded either way.
    #[inline]
    pub fn again(&mut self, hash: u64) -> bool {
        // The low bits: shape tables index by the high ones.
        let at = hash as usize & (SIGHTINGS - 1);
        let again = self.recent[at] == hash;
        self.recent[at] = hash;
        again
    }
}

/// A remembered sequence of field names, for work that depends only on an
/// event's names and their order (the rules' field index, the engine's
/// alias pass): found by [`NameSequence::hash_of`] (the count of names and
/// each name's length and first and last bytes, one multiply per name),
/// then checked name by name with [`NameSequence::matches`].
#[derive(Debug, Default)]
pub struct NameSequence {
    /// The hash of the sequence (0: nothing remembered).
    hash: u64,
    /// The names, one after another.
    names: Vec<u8>,
    /// Where each name ends in `names`.
    ends: Vec<u32>,
}

impl NameSequence {
    /// Sequences of more names than this are not remembered.
    pub const FIELDS_MAX: usize = 48;
    /// Nor of more bytes of names than this, in all.
    pub const NAME_BYTES_MAX: usize = 1024;

    /// The hash of `fields`' names; never 0.
    #[inline]
    pub fn hash_of(fields: &[(&str, &[u8])]) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut hash = fields.len() as u64;
        for (name, _) in fields {
            let bytes = name.as_bytes();
            let first = bytes.first().copied().unwrap_or(0);
            let last = bytes.last().copied().unwrap_or(0);
            let key = (bytes.len() as u64) | (u64::from(first) << 16) | (u64::from(last) << 24);
            hash = (hash.rotate_left(23) ^ key).wrapping_mul(K);
        }
        hash | 1
    }

    /// Whether `fields` (whose [`NameSequence::hash_of`] is `hash`) carry
    /// exactly the names remembered, in order.
    #[inline]
    pub fn matches(&self, hash: u64, fields: &[(&str, &[u8])]) -> bool {
        if self.hash != hash || self.ends.len() != fields.len() {
            return false;
        }
        let mut start = 0usize;
        for (&end, (name, _)) in self.ends.iter().zip(fields) {
            let end = end as usize;
            match self.names.get(start..end) {
                Some(known) if short_eq(known, name.as_bytes()) => {}
                _ => return false,
            }
            start = end;
        }
        true
    }

    /// How many names are remembered.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no name is remembered (nothing, or an event without fields).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Remembers `fields`' names (`hash` their hash); false, with nothing
    /// remembered, when there are too many of them.
    pub fn remember(&mut self, hash: u64, fields: &[(&str, &[u8])]) -> bool {
        self.hash = 0;
        let bytes: usize = fields.iter().map(|(name, _)| name.len()).sum();
        if fields.len() > Self::FIELDS_MAX || bytes > Self::NAME_BYTES_MAX {
            return false;
        }
        self.names.clear();
        self.ends.clear();
        for (name, _) in fields {
            self.names.extend_from_slice(name.as_bytes());
            // Lossless: at most NAME_BYTES_MAX.
            self.ends.push(self.names.len() as u32);
        }
        self.hash = hash;
        true
    }
}

impl FieldIndex {
    /// Indexes `event` under `table`: every field whose name, or whose
    /// name's part after a dot, is in the table. Allocates only to grow.
    pub(crate) fn build(&mut self, table: &FieldTable, event: &Event<'_>) {
        self.build_shaped(table, event, None);
    }

    /// [`FieldIndex::build`], given the key of the shape whose names
    /// `event` is known to carry, if any; returns the key of the shape the
    /// event was indexed from or remembered as.
    pub(crate) fn build_shaped(
        &mut self,
        table: &FieldTable,
        event: &Event<'_>,
        known: Option<ShapeKey>,
    ) -> Option<ShapeKey> {
        if self.slots.len() < table.len() {
            self.slots.resize(table.len(), Slot::default());
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.slots.fill(Slot::default());
            self.generation = 1;
        }
        self.indexed = (
            event.fields.as_ptr() as usize,
            event.fields.len(),
            table.serial,
        );
        if table.len() == 0 {
            return None;
        }
        if self.cache.is_empty() || self.cache_serial != table.serial {
            self.cache.clear();
            self.cache.resize(NAME_CACHE_ENTRIES, CachedName::default());
            self.shapes.clear();
            self.shapes.resize_with(SHAPES, Shape::default);
            self.cache_serial = table.serial;
        }
        let fields = event.fields;
        self.touched.clear();
        if let Some(key) = known {
            if let Some(shape) = self.shapes.get(key.at as usize) {
                if shape.stamp == key.stamp && key.stamp != 0 {
                    debug_assert!(shape.names.matches(NameSequence::hash_of(fields), fields));
                    self.write_shape(key.at as usize);
                    return Some(key);
                }
            }
        }
        if fields.len() > NameSequence::FIELDS_MAX {
            self.index_names(table, event);
            return None;
        }
        let hash = NameSequence::hash_of(fields);
        let at = (hash >> (64 - SHAPES.trailing_zeros())) as usize;
        if self.shapes[at].names.matches(hash, fields) {
            self.write_shape(at);
            return Some(ShapeKey {
                at: at as u32,
                stamp: self.shapes[at].stamp,
            });
        }
        self.index_names(table, event);
        if !self.sightings.again(hash) {
            return None;
        }
        self.next_stamp += 1;
        let stamp = self.next_stamp;
        let shape = &mut self.shapes[at];
        shape.stamp = 0;
        if !shape.names.remember(hash, fields) {
            return None;
        }
        shape.slots.clear();
        for &id in &self.touched {
            let slot = self.slots[id as usize];
            shape.slots.push((id, slot.exact, slot.leaf));
        }
        shape.stamp = stamp;
        Some(ShapeKey {
            at: at as u32,
            stamp,
        })
    }

    /// Writes shape `at`'s slots for the current event.
    fn write_shape(&mut self, at: usize) {
        let generation = self.generation;
        for &(id, exact, leaf) in &self.shapes[at].slots {
            self.slots[id as usize] = Slot {
                generation,
                exact,
                leaf,
            };
        }
    }

    /// Indexes every field of `event` name by name (from the name cache,
    /// or by probing the table).
    fn index_names(&mut self, table: &FieldTable, event: &Event<'_>) {
        let generation = self.generation;
        // Field indices at AMBIGUOUS and above cannot be stored; an event
        // that large cannot be built in memory anyway.
        for (index, (name, _)) in event.fields.iter().enumerate().take(AMBIGUOUS as usize) {
            // Lossless: bounded by `take` above.
            let index = index as u32;
            let name = name.as_bytes();
            let Some(key) = NameKey::of(name) else {
                self.index_name(table, name, index, generation);
                continue;
            };
            // Two ways per set: the newest name first.
            let at = key.entry() & !1;
            let (first, second) = (&self.cache[at], &self.cache[at + 1]);
            let resolution = if first.used && first.key.matches(&key) {
                first.resolution
            } else if second.used && second.key.matches(&key) {
                second.resolution
            } else {
                match resolve_name(table, name) {
                    Some(resolution) => {
                        self.cache[at + 1] = self.cache[at];
                        self.cache[at] = CachedName {
                            key,
                            used: true,
                            resolution,
                        };
                        resolution
                    }
                    None => {
                        self.index_name(table, name, index, generation);
                        continue;
                    }
                }
            };
            if resolution.exact != NO_ID {
                self.exact_hit(resolution.exact, resolution.exact_leaf, index, generation);
            }
            for &leaf in resolution.leaves.iter().take_while(|&&leaf| leaf != NO_ID) {
                self.leaf_slot_hit(leaf, index, generation);
            }
        }
    }

    /// Indexes field `index` named `name` by probing the table (a name the
    /// cache cannot hold).
    fn index_name(&mut self, table: &FieldTable, name: &[u8], index: u32, generation: u32) {
        if let Some(id) = table.find(name) {
            let leaf = table.leaf_of.get(id as usize).copied().unwrap_or(id);
            self.exact_hit(id, leaf, index, generation);
        }
        if name.len() <= 64 {
            let mut dots = dot_mask(name);
            while dots != 0 {
                let dot = dots.trailing_zeros() as usize;
                dots &= dots - 1;
                self.leaf_hit(table, &name[dot + 1..], index, generation);
            }
        } else {
            for dot in (0..name.len()).filter(|&at| name[at] == b'.') {
                self.leaf_hit(table, &name[dot + 1..], index, generation);
            }
        }
    }

    /// Field `index` is named exactly as id `id`, whose group's leaf slot
    /// is `leaf`: the first such field wins, and the leaf slot is touched
    /// too (a group with an untouched leaf slot has no value at all,
    /// `get`'s fast path).
    fn exact_hit(&mut self, id: u32, leaf: u32, index: u32, generation: u32) {
        let slot = self.slot(id, generation);
        if slot.exact == ABSENT {
            slot.exact = index;
        }
        self.slot(leaf, generation);
    }

    /// Field `index` ends in `.<leaf>`: count it for `leaf`'s group.
    fn leaf_hit(&mut self, table: &FieldTable, leaf: &[u8], index: u32, generation: u32) {
        let Some(id) = table.find(leaf) else {
            return;
        };
        let leaf = table.leaf_of.get(id as usize).copied().unwrap_or(id);
        self.leaf_slot_hit(leaf, index, generation);
    }

    /// Field `index` ends in a name of the group whose leaf slot is `leaf`.
    fn leaf_slot_hit(&mut self, leaf: u32, index: u32, generation: u32) {
        let slot = self.slot(leaf, generation);
        if slot.leaf == ABSENT {
            slot.leaf = index;
        } else if slot.leaf != index {
            slot.leaf = AMBIGUOUS;
        }
    }

    fn slot(&mut self, id: u32, generation: u32) -> &mut Slot {
        let slot = &mut self.slots[id as usize];
        if slot.generation != generation {
            *slot = Slot {
                generation,
                exact: ABSENT,
                leaf: ABSENT,
            };
            self.touched.push(id);
        }
        slot
    }

    #[inline]
    fn read(&self, id: u32) -> Option<&Slot> {
        self.slots
            .get(id as usize)
            .filter(|slot| slot.generation == self.generation)
    }

    /// The value `field` resolves to in `event` (exact, alias table,
    /// unique leaf), which must be the event last indexed with the table
    /// that interned `field`. A name not interned is resolved by scanning.
    #[inline]
    /// Whether the slots are `event`'s, indexed under `table`: the last
    /// build was given the same fields (the same slice, as long) under
    /// the same table. Fields changed in place since are not told apart.
    pub(crate) fn holds(&self, table: &FieldTable, event: &Event<'_>) -> bool {
        self.indexed
            == (
                event.fields.as_ptr() as usize,
                event.fields.len(),
                table.serial,
            )
    }

    pub(crate) fn get<'a>(&self, field: &FieldName, event: &Event<'a>) -> Option<&'a [u8]> {
        if field.id == NO_ID {
            return field.resolve(event);
        }
        let value = |index: u32| event.fields.get(index as usize).map(|(_, value)| *value);
        // No name of the group, exact or as a leaf, is in the event.
        let leaf = self.read(field.leaf)?;
        if let Some(slot) = self.read(field.id) {
            if slot.exact != ABSENT {
                return value(slot.exact);
            }
        }
        for &alias in field.alias_ids.iter() {
            if let Some(slot) = self.read(alias) {
                if slot.exact != ABSENT {
                    return value(slot.exact);
                }
            }
        }
        if leaf.leaf < AMBIGUOUS {
            value(leaf.leaf)
        } else {
            None
        }
    }
}

/// What `name` (at most 64 bytes) resolves to under `table`, as
/// [`FieldIndex::index_name`] would record it, or `None` if more than
/// [`CACHED_LEAVES_MAX`] of its parts after a dot are in the table.
fn resolve_name(table: &FieldTable, name: &[u8]) -> Option<NameResolution> {
    debug_assert!(name.len() <= 64);
    let leaf_of = |id: u32| table.leaf_of.get(id as usize).copied().unwrap_or(id);
    let exact = table.find(name).unwrap_or(NO_ID);
    let mut resolution = NameResolution {
        exact,
        exact_leaf: if exact == NO_ID {
            NO_ID
        } else {
            leaf_of(exact)
        },
        leaves: [NO_ID; CACHED_LEAVES_MAX],
    };
    let mut found = 0;
    let mut dots = dot_mask(name);
    while dots != 0 {
        let dot = dots.trailing_zeros() as usize;
        dots &= dots - 1;
        if let Some(id) = table.find(&name[dot + 1..]) {
            *resolution.leaves.get_mut(found)? = leaf_of(id);
            found += 1;
        }
    }
    Some(resolution)
}

/// Resolves `name` against `event` (exact, alias table, unique leaf),
/// looking the alias group up on every call. Prefer a compiled
/// `FieldName` on hot paths.
pub fn resolve<'a>(event: &Event<'a>, name: &str) -> Option<&'a [u8]> {
    resolve_with(event, name, aliases_of(name))
}

fn resolve_with<'a>(event: &Event<'a>, name: &str, aliases: &[&str]) -> Option<&'a [u8]> {
    if name.is_empty() {
        return None;
    }
    if let Some(value) = event.get(name) {
        return Some(value);
    }
    for alias in aliases {
        if !short_eq(alias.as_bytes(), name.as_bytes()) {
            if let Some(value) = event.get(alias) {
                return Some(value);
            }
        }
    }
    let is_leaf_of = |field: &str, leaf: &str| {
        let (field, leaf) = (field.as_bytes(), leaf.as_bytes());
        field.len() > leaf.len()
            && field[field.len() - leaf.len() - 1] == b'.'
            && short_eq(&field[field.len() - leaf.len()..], leaf)
    };
    let mut found: Option<&'a [u8]> = None;
    for (field, value) in event.fields {
        let is_leaf =
            is_leaf_of(field, name) || aliases.iter().any(|alias| is_leaf_of(field, alias));
        if is_leaf {
            if found.is_some() {
                // Two different paths end in this name: ambiguous.
                return None;
            }
            found = Some(value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_eq_is_byte_equality_at_every_length_and_position() {
        // Every length to past the word-load cases, each byte changed in
        // turn, and different lengths.
        for len in 0..=40usize {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(short_eq(&a, &a.clone()), "{len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!short_eq(&a, &b), "{len} {at}");
            }
            assert!(!short_eq(&a, &a[..len.saturating_sub(1)]) || len == 0);
        }
    }

    fn event<'a>(fields: &'a [(&'a str, &'a [u8])]) -> Event<'a> {
        Event {
            time_ns: 0,
            fields,
            message: b"",
            raw: b"",
        }
    }

    #[test]
    fn exact_then_alias_then_unique_leaf() {
        let fields: &[(&str, &[u8])] = &[
            ("source.ip", b"10.0.0.1"),
            ("Event.EventData.CommandLine", b"cmd /c x"),
            ("a.Dup", b"1"),
            ("b.Dup", b"2"),
            ("SourceIp", b"exact wins"),
        ];
        let e = event(fields);
        assert_eq!(resolve(&e, "SourceIp"), Some(&b"exact wins"[..]));
        assert_eq!(resolve(&e, "src_ip"), Some(&b"10.0.0.1"[..]));
        assert_eq!(resolve(&e, "IpAddress"), Some(&b"10.0.0.1"[..]));
        assert_eq!(resolve(&e, "CommandLine"), Some(&b"cmd /c x"[..]));
        assert_eq!(
            resolve(&e, "process.command_line"),
            Some(&b"cmd /c x"[..]),
            "the leaf step also tries the aliases"
        );
        assert_eq!(resolve(&e, "Dup"), None, "two leaves are ambiguous");
        assert_eq!(resolve(&e, "Line"), None, "a leaf is a whole segment");
        assert_eq!(resolve(&e, ""), None);
        assert_eq!(FieldName::new("User").resolve(&e), None);
    }

    /// Longer than the 64 bytes `dot_mask` covers, with leaves past it.
    const LONG: &str =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.q.CommandLine.data.x";

    #[test]
    fn folded_hash_and_compare_agree_with_a_lowercased_copy() {
        let mut values: Vec<Vec<u8>> = vec![Vec::new()];
        // Every byte value in every position of short values, and mixed
        // case around the word boundaries of longer ones.
        for byte in 0..=255u8 {
            for len in [1usize, 2, 3, 4, 7, 8, 9, 16, 17, 40] {
                for at in [0, len / 2, len - 1] {
                    let mut value =
                        b"aZ@[`{x_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"[..len].to_vec();
                    value[at] = byte;
                    values.push(value);
                }
            }
        }
        for value in &values {
            let lower = value.to_ascii_lowercase();
            assert_eq!(folded_hash(value), name_hash(&lower), "{value:?}");
            assert!(folded_eq(&lower, value), "{value:?}");
            for other in [
                &b"aZ@[`{x_0123"[..],
                b"A",
                b"microsoft-windows-sysmon/operational",
            ] {
                assert_eq!(
                    folded_eq(&lower, other),
                    lower == other.to_ascii_lowercase(),
                    "{value:?} {other:?}"
                );
            }
        }
        // Bytes past ASCII are not letters: 0xC1 is not 0xE1.
        assert!(!folded_eq(&[0xE1], &[0xC1]));
        assert!(folded_eq(b"sysmon", b"SysMon"));
    }

    /// A table of `names`, and each name interned in it.
    fn table_of<const N: usize>(names: [&str; N]) -> (FieldTable, [FieldName; N]) {
        let mut builder = FieldTableBuilder::default();
        let fields = names.map(|name| {
            let mut field = FieldName::new(name);
            builder.intern(&mut field);
            field
        });
        (builder.finish(), fields)
    }

    #[test]
    fn a_shape_key_indexes_the_same_names_and_a_stale_one_is_not_taken() {
        let (table, [src, user]) = table_of(["source.ip", "user.name"]);
        let first: &[(&str, &[u8])] = &[("src", b"1.2.3.4"), ("user.name", b"bob")];
        let again: &[(&str, &[u8])] = &[("src", b"5.6.7.8"), ("user.name", b"eve")];
        let other: &[(&str, &[u8])] = &[("user.name", b"ann"), ("x.src", b"9.9.9.9")];
        let mut index = FieldIndex::default();
        // Seen once: indexed, not remembered; seen again: remembered.
        assert_eq!(index.build_shaped(&table, &event(first), None), None);
        let key = index.build_shaped(&table, &event(first), None);
        assert!(key.is_some());
        let e = event(again);
        assert_eq!(index.build_shaped(&table, &e, key), key);
        assert_eq!(index.get(&src, &e), Some(&b"5.6.7.8"[..]));
        assert_eq!(index.get(&user, &e), Some(&b"eve"[..]));
        // Another table forgets every shape: the key is not taken.
        let (fewer, [only_user]) = table_of(["user.name"]);
        let e = event(other);
        index.build_shaped(&fewer, &e, key);
        assert_eq!(index.get(&only_user, &e), Some(&b"ann"[..]));
        // Back on the first table, a key of the forgotten shape is stale:
        // the event is indexed by its own names (and, seen a second time,
        // remembered under a new key).
        let e = event(other);
        let new_key = index.build_shaped(&table, &e, key);
        assert!(new_key.is_some() && new_key != key);
        assert_eq!(index.get(&user, &e), Some(&b"ann"[..]));
        assert_eq!(index.get(&src, &e), Some(&b"9.9.9.9"[..]));
    }

    #[test]
    fn a_sequence_is_admitted_when_seen_again_while_recent() {
        let mut sightings = SecondSighting::default();
        let fields: &[(&str, &[u8])] = &[("a", b"1"), ("bb", b"2")];
        let hash = NameSequence::hash_of(fields);
        assert!(!sightings.again(hash));
        assert!(sightings.again(hash));
        // Another hash in the same place pushes it out.
        let other = hash ^ (1 << 40);
        assert!(!sightings.again(other));
        assert!(!sightings.again(hash));
        assert!(sightings.again(hash));
    }

    #[test]
    fn events_too_large_for_a_shape_are_indexed_name_by_name() {
        let (table, [last, long]) = table_of(["f59", "x"]);
        let names: Vec<String> = (0..60).map(|i| format!("f{i}")).collect();
        let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
        let long_names: Vec<String> = (0..8)
            .map(|i| format!("{}.x{i}", "n".repeat(200)))
            .collect();
        let mut wide: Vec<(&str, &[u8])> =
            long_names.iter().map(|n| (n.as_str(), &b"w"[..])).collect();
        wide.push(("x", b"here"));
        let mut index = FieldIndex::default();
        for _ in 0..3 {
            let e = event(&many);
            index.build(&table, &e);
            assert_eq!(index.get(&last, &e), Some(&b"v"[..]));
            assert_eq!(index.get(&long, &e), None);
            let e = event(&wide);
            index.build(&table, &e);
            assert_eq!(index.get(&long, &e), Some(&b"here"[..]));
            assert_eq!(index.get(&last, &e), None);
        }
    }

    #[test]
    fn dot_mask_finds_every_dot() {
        let names = [
            "",
            ".",
            "a.b",
            "abcdefg.",
            ".abcdefgh",
            "abcdefgh.",
            "a.b.c.d.e.f.g.h.i",
            "Event.EventData.CommandLine",
            "0123456789012345678901234567890123456789012345678901234567.9.1",
        ];
        for name in names {
            let want = name
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'.')
                .fold(0u64, |mask, (at, _)| mask | 1 << at);
            assert_eq!(dot_mask(name.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn index_resolves_as_the_scan_does() {
        // Rule names: plain, aliased (all positions of a group), dotted,
        // names that are only leaves, and one no event carries.
        let rule_names = [
            "CommandLine",
            "process.command_line",
            "SourceIp",
            "src",
            "c-ip",
            "source.ip",
            "User",
            "user.name",
            "Dup",
            "Line",
            "EventID",
            "data.x",
            "x",
            "ip",
            "k.data.x",
            "never",
            "aXb",
        ];
        let mut builder = FieldTableBuilder::default();
        let mut names: Vec<FieldName> = rule_names.iter().map(|n| FieldName::new(n)).collect();
        for name in &mut names {
            builder.intern(name);
            builder.intern(name);
        }
        let not_interned = FieldName::new("Image");
        let table = builder.finish();
        let events: &[&[(&str, &[u8])]] = &[
            &[],
            &[("source.ip", b"1"), ("SourceIp", b"2"), ("a.src", b"3")],
            &[("a.src", b"3")],
            &[("a.src", b"3"), ("b.c-ip", b"4")],
            &[("a.src", b"3"), ("a.src", b"5")],
            &[("x.source.ip", b"6")],
            &[("Event.EventData.CommandLine", b"c"), ("CommandLine", b"d")],
            &[("Event.EventData.CommandLine", b"c")],
            &[("e.process.command_line", b"c"), ("f.CommandLine", b"d")],
            &[("a.Dup", b"1"), ("b.Dup", b"2"), ("Dup", b"3")],
            &[("a.Dup", b"1"), ("b.Dup", b"2")],
            &[("user.name", b"u"), ("User", b"v"), ("x.User", b"w")],
            &[("TargetUserName", b"t"), ("UserName", b"n")],
            &[("k.data.x", b"1"), ("data.x", b"2"), ("z.x", b"3")],
            &[("k.data.x", b"1")],
            &[("k.data.x", b"1"), ("z.x", b"3")],
            &[(".", b"1"), ("..x", b"2"), ("x.", b"3"), ("", b"4")],
            &[("Event.System.EventID", b"1"), ("EventID", b"4688")],
            &[("Image", b"i"), ("a.Image", b"j")],
            &[("EventID", b"1"), ("EventID", b"2")],
            &[(LONG, b"l")],
            &[(LONG, b"l"), ("q.data.x", b"m")],
            &[("abcdefg.x", b"1"), ("a.b.c.d.e.f.g.h.i.x", b"2")],
            // Three parts after a dot in the table (not cached), and names
            // of the cache's longest and just too long.
            &[("z.k.data.x", b"1"), ("k.data.x", b"2")],
            &[("z.k.data.x", b"1")],
            &[("aaaaaaaaaaaaaaaaaaaaaaaaa.data.x", b"1")],
            &[("aaaaaaaaaaaaaaaaaaaaaaaaaa.data.x", b"1"), ("q.x", b"2")],
            &[
                ("aaaaaaaaaaaaaaaaaaaaaaaaa.data.x", b"1"),
                ("bbbbbbbbbbbbbbbbbbbbbbbbb.data.x", b"2"),
            ],
            // The same shape hash (lengths, first and last bytes) with other
            // names: the remembered shape must not be taken for it.
            &[("aXb", b"1"), ("src", b"2")],
            &[("aYb", b"1"), ("src", b"2")],
            &[("aXb", b"3"), ("sSc", b"4")],
            // A remembered shape with other values.
            &[("aXb", b"5"), ("src", b"6")],
        ];
        let mut index = FieldIndex::default();
        let check = |index: &mut FieldIndex, table: &FieldTable| {
            for fields in events {
                let e = event(fields);
                index.build(table, &e);
                for name in names.iter().chain([&not_interned]) {
                    assert_eq!(
                        index.get(name, &e),
                        resolve(&e, name.as_str()),
                        "{} in {fields:?}",
                        name.as_str()
                    );
                }
            }
        };
        // The second pass reads resolutions from the name cache, and
        // indexes from the shapes the first remembered; the third again.
        check(&mut index, &table);
        check(&mut index, &table);
        check(&mut index, &table);
        // A stale index of another table reads nothing it should not, and
        // its cache holds nothing from the first table.
        let mut other = FieldTableBuilder::default();
        let mut fresh = FieldName::new("zzz");
        let mut source_ip = FieldName::new("source.ip");
        other.intern(&mut fresh);
        other.intern(&mut source_ip);
        let other = other.finish();
        let e = event(&[("zzz", b"1")]);
        index.build(&other, &e);
        assert_eq!(index.get(&fresh, &e), Some(&b"1"[..]));
        let e = event(&[("a.src", b"3")]);
        index.build(&other, &e);
        assert_eq!(index.get(&source_ip, &e), resolve(&e, "source.ip"));
        // Back to the first table: its answers again.
        check(&mut index, &table);
    }

    #[test]
    fn every_alias_group_is_disjoint() {
        for (i, group) in ALIAS_GROUPS.iter().enumerate() {
            assert!(!group.is_empty());
            for name in group.iter() {
                for other in &ALIAS_GROUPS[i + 1..] {
                    assert!(!other.contains(name), "{name} is in two groups");
                }
            }
        }
    }
}
