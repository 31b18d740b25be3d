//! The schema registry: per source, the fields seen, their inferred types,
//! counts, first and last seen, a version bumped when a new field appears,
//! type conflicts — recorded, never fatal — and how far the source's
//! timestamps are behind the node's clock (`clock_lag`: receive time minus
//! event time, on the events observed in full; a device writing local time
//! without a zone west of UTC shows hours, which is what
//! `[ingest.timezones]` is for).
//!
//! A source is `host/app` (syslog header), or `cef:vendor/product` /
//! `leef:vendor/product` when the payload names its sender. Each core keeps
//! its own registry (shared-nothing) and publishes a snapshot once a tick
//! for the API; views merge the cores' snapshots.
//!
//! Cost on the hot path is kept small: an event with as many fields as
//! one of the source's last [`RECENT_LENS`] distinct field counts is only
//! counted, except one in [`CHECK_EVERY`], whose field names are
//! fingerprinted; an event whose
//! set of field names this source has shown before only bumps the event
//! count, except one in `sample_every` ([`SAMPLE_EVERY`] unless
//! `[schemas] sample_every` says otherwise), which is fully observed (field
//! counts, last seen, type inference). An event with a new set of names is
//! fully observed when it is checked, so a new field is noticed on its
//! first appearance when it brings a field count the source has not had
//! lately, and within [`CHECK_EVERY`] events of that source otherwise
//! (within `sample_every` for lines no rule reads, whose payload the
//! pipeline decodes only when the registry asks). Field counts are therefore estimates
//! (sampled, scaled) and say so in the output.
//!
//! Bounded: at most `sources_max` sources and `fields_max` fields per
//! source; what does not fit is counted (`sources_overflow`,
//! `fields_overflow`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use shardwatch_net::value::infer;

/// One event in this many is observed in full when its field set is known,
/// by default. Each such event of a source not seen lately reads its
/// schema from memory (tens of cache misses): at 64, about 5% of a core
/// flat out on the generated mix, and a type change is noticed within 64
/// of the source's events.
pub const SAMPLE_EVERY: u64 = 64;
/// An event with the same field count as the source's previous one has
/// its field names fingerprinted only one time in this many.
pub const CHECK_EVERY: u64 = 8;
/// Distinct field counts remembered per source for the cheapest test (a
/// source's messages usually come in a few shapes: sshd's failures,
/// acceptances and disconnects).
pub const RECENT_LENS: usize = 4;
/// Field-set fingerprints remembered per source.
const FINGERPRINTS_MAX: usize = 64;

/// What the registry knows about one field of one source.
#[derive(Debug, Clone, Serialize)]
pub struct FieldSchema {
    /// The type seen most recently.
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// Observations (fully observed events only; see the module docs).
    pub observed: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    /// The source version in which the field first appeared.
    pub since_version: u64,
    /// Other types seen for this field, with counts.
    pub conflicts: BTreeMap<&'static str, u64>,
}

/// One source's schema.
#[derive(Debug, Clone, Serialize)]
pub struct SourceSchema {
    pub source: String,
    pub version: u64,
    pub events: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub fields: BTreeMap<String, FieldSchema>,
    /// Receive time minus event time over the events observed in full
    /// (none when the registry is not told receive times: a replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_lag: Option<ClockLag>,
    /// Every field-set fingerprint remembered (the newest few are also
    /// in the source's slot).
    #[serde(skip)]
    fingerprints: Vec<u64>,
    pub fields_overflow: u64,
}

/// How far a source's timestamps are behind the node's clock: receive time
/// minus event time (negative: ahead), over the events observed in full.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClockLag {
    /// The most recent observation's, in seconds.
    pub latest_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Events it was measured on.
    pub samples: u64,
    /// When the most recent one was received (to merge cores' views).
    #[serde(skip)]
    pub latest_at_ns: i64,
}

impl ClockLag {
    fn new(lag_s: f64, received_ns: i64) -> Self {
        ClockLag {
            latest_s: lag_s,
            min_s: lag_s,
            max_s: lag_s,
            samples: 1,
            latest_at_ns: received_ns,
        }
    }

    /// Folds this (one more observation, or another core's view) into
    /// `held`.
    fn fold_into(self, held: &mut Option<ClockLag>) {
        let Some(held) = held else {
            *held = Some(self);
            return;
        };
        if self.latest_at_ns >= held.latest_at_ns {
            held.latest_s = self.latest_s;
            held.latest_at_ns = self.latest_at_ns;
        }
        held.min_s = held.min_s.min(self.min_s);
        held.max_s = held.max_s.max(self.max_s);
        held.samples += self.samples;
    }
}

/// Field-set fingerprints kept in a source's slot.
const SLOT_FINGERPRINTS: usize = 3;
/// `Slot::index` of an empty slot.
const EMPTY: u32 = u32::MAX;

/// What every event of a source touches, in one cache line: the source's
/// key, its event count and last time, and the field counts and field-set
/// fingerprints it had lately. The rest of the source's schema is read
/// only for the events checked in full. The pipeline prefetches the slot
/// as soon as the header is parsed ([`SchemaRegistry::prefetch`]), so
/// that the line has arrived when the event is counted.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    key: u64,
    events: u64,
    last_seen_ns: i64,
    recent_fingerprints: [u64; SLOT_FINGERPRINTS],
    /// Field counts (saturated at `u16::MAX - 1`; `u16::MAX` for none yet).
    recent_lens: [u16; RECENT_LENS],
    /// The source's place in `SchemaRegistry::sources`, or [`EMPTY`].
    index: u32,
    next_len: u8,
    next_fingerprint: u8,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

const EMPTY_SLOT: Slot = Slot {
    key: 0,
    events: 0,
    last_seen_ns: 0,
    recent_fingerprints: [0; SLOT_FINGERPRINTS],
    recent_lens: [u16::MAX; RECENT_LENS],
    index: EMPTY,
    next_len: 0,
    next_fingerprint: 0,
};

/// A source's key: its identity hashed once per event, for
/// [`SchemaRegistry::prefetch`] and [`SchemaRegistry::observe_keyed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceKey(u64);

/// One core's registry.
#[derive(Debug)]
pub struct SchemaRegistry {
    /// Open addressing with linear probing on the key's low bits (keys are
    /// hashes already, [`SourceId::key`]); at most half full, a power of
    /// two long.
    slots: Vec<Slot>,
    /// The full schemas, in order of first appearance. Their `events` and
    /// `last_seen_ns` are not kept here (they live in the slots, which
    /// every event updates) and are filled in by `snapshot`.
    sources: Vec<HeldSource>,
    sources_max: usize,
    fields_max: usize,
    /// Which events of a known field set are observed in full.
    sampling: Sampling,
    pub sources_overflow: u64,
    pub type_conflicts: u64,
}

/// One source as the registry holds it: the schema less its field map,
/// and the fields in order of first appearance, found by name (`by_name`)
/// or, for a sequence of names observed lately, by position (`layouts`).
/// An event observed in full then updates its fields without a search by
/// name through an ordered map of heap strings, a cache miss per step
/// (about a fifth of what the sampled observations cost flat out; the
/// records' own misses are the rest).
#[derive(Debug)]
struct HeldSource {
    /// Its `fields` stays empty; [`SchemaRegistry::snapshot`] fills it.
    schema: SourceSchema,
    /// In order of first appearance; their names are `by_name`'s keys.
    fields: Vec<FieldSchema>,
    by_name: BTreeMap<Box<str>, u32>,
    layouts: Vec<Layout>,
    /// Where the next layout goes once there are [`LAYOUTS_MAX`].
    next_layout: usize,
}

/// Layouts kept per source (a source's events come in a few shapes).
const LAYOUTS_MAX: usize = 8;

/// Where one sequence of field names puts its fields: the sequence (each
/// name followed by 0xFF, a byte UTF-8 never holds, so that the names'
/// boundaries are compared too) and, per name, its place in
/// `HeldSource::fields`.
#[derive(Debug)]
struct Layout {
    fingerprint: u64,
    names: Box<[u8]>,
    at: Box<[u32]>,
}

impl Layout {
    /// Whether `fields` carry exactly this layout's names, in order.
    fn fits(&self, fields: &[(&str, &[u8])]) -> bool {
        if self.at.len() != fields.len() {
            return false;
        }
        let mut pos = 0;
        for (name, _) in fields {
            let name = name.as_bytes();
            let end = pos + name.len();
            if self.names.get(pos..end) != Some(name) || self.names.get(end) != Some(&0xFF) {
                return false;
            }
            pos = end + 1;
        }
        pos == self.names.len()
    }
}

impl HeldSource {
    fn new(name: String, time_ns: i64) -> Self {
        HeldSource {
            schema: SourceSchema {
                source: name,
                version: 0,
                events: 0,
                first_seen_ns: time_ns,
                last_seen_ns: time_ns,
                fields: BTreeMap::new(),
                clock_lag: None,
                fingerprints: Vec::new(),
                fields_overflow: 0,
            },
            fields: Vec::new(),
            by_name: BTreeMap::new(),
            layouts: Vec::new(),
            next_layout: 0,
        }
    }

    /// Observes `fields` in full by the layout remembered for
    /// `fingerprint`, if there is one and the names are its names; false,
    /// with nothing done, otherwise.
    fn observe_laid_out(
        &mut self,
        fingerprint: u64,
        fields: &[(&str, &[u8])],
        time_ns: i64,
        type_conflicts: &mut u64,
    ) -> bool {
        let Some(layout) = self
            .layouts
            .iter()
            .find(|l| l.fingerprint == fingerprint && l.fits(fields))
        else {
            return false;
        };
        for ((_, value), &at) in fields.iter().zip(&layout.at) {
            let field = &mut self.fields[at as usize];
            update_field(field, infer(value).as_str(), time_ns, type_conflicts);
        }
        true
    }

    /// Observes `fields` in full name by name, adding the new ones while
    /// `fields_max` allows, and remembers their layout when every one has
    /// a place.
    fn observe_by_name(
        &mut self,
        fingerprint: u64,
        fields: &[(&str, &[u8])],
        time_ns: i64,
        fields_max: usize,
        type_conflicts: &mut u64,
    ) {
        let mut new_field = false;
        let mut at = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            let ty = infer(value).as_str();
            match self.by_name.get(*name) {
                Some(&i) => {
                    update_field(&mut self.fields[i as usize], ty, time_ns, type_conflicts);
                    at.push(i);
                }
                None => {
                    if self.fields.len() >= fields_max {
                        self.schema.fields_overflow += 1;
                        continue;
                    }
                    new_field = true;
                    // Lossless: at most `fields_max`, a configured count.
                    let i = u32::try_from(self.fields.len()).unwrap_or(u32::MAX);
                    self.by_name.insert((*name).into(), i);
                    self.fields.push(FieldSchema {
                        ty,
                        observed: 1,
                        first_seen_ns: time_ns,
                        last_seen_ns: time_ns,
                        since_version: self.schema.version + 1,
                        conflicts: BTreeMap::new(),
                    });
                    at.push(i);
                }
            }
        }
        if new_field {
            self.schema.version += 1;
        }
        if at.len() == fields.len() {
            let mut names = Vec::with_capacity(fields.iter().map(|(n, _)| n.len() + 1).sum());
            for (name, _) in fields {
                names.extend_from_slice(name.as_bytes());
                names.push(0xFF);
            }
            let layout = Layout {
                fingerprint,
                names: names.into(),
                at: at.into(),
            };
            if self.layouts.len() < LAYOUTS_MAX {
                self.layouts.push(layout);
            } else {
                self.layouts[self.next_layout] = layout;
                self.next_layout = (self.next_layout + 1) % LAYOUTS_MAX;
            }
        }
    }

    /// The schema with its field map filled in.
    fn to_schema(&self) -> SourceSchema {
        let mut schema = self.schema.clone();
        schema.fields = self
            .by_name
            .iter()
            .map(|(name, &at)| (name.to_string(), self.fields[at as usize].clone()))
            .collect();
        schema
    }
}

/// One more observation of a known field, of type `ty`.
fn update_field(field: &mut FieldSchema, ty: &'static str, time_ns: i64, type_conflicts: &mut u64) {
    field.observed += 1;
    field.last_seen_ns = field.last_seen_ns.max(time_ns);
    if field.ty != ty {
        // Ints widen to floats and anything to string without being a
        // conflict worth reporting.
        let widening = matches!((field.ty, ty), ("int", "float"));
        if !widening {
            *field.conflicts.entry(ty).or_default() += 1;
            *type_conflicts += 1;
        }
        field.ty = ty;
    }
}

/// The parts that name a source.
#[derive(Debug, Clone, Copy)]
pub enum SourceId<'a> {
    /// Syslog host and app.
    HostApp(&'a [u8], &'a [u8]),
    /// A CEF or LEEF sender.
    Vendor(&'static str, &'a [u8], &'a [u8]),
}

impl SourceId<'_> {
    /// The source's key: its parts, each with its length, folded eight
    /// bytes at a time by [`fold`]. Every line computes one (nearly every
    /// part is a word or two: host names, app names); two xxh3 calls
    /// cost ~90 instructions of a line, this about a third of that.
    pub fn key(&self) -> SourceKey {
        let h = match self {
            SourceId::HostApp(host, app) => key_part(key_part(KEY_SEED, host), app),
            SourceId::Vendor(kind, vendor, product) => key_part(
                key_part(key_part(KEY_SEED, kind.as_bytes()), vendor),
                product,
            ),
        };
        SourceKey(fold(h, KEY_SEED))
    }

    fn name(&self) -> String {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            SourceId::HostApp(host, app) => format!("{}/{}", lossy(host), lossy(app)),
            SourceId::Vendor(kind, vendor, product) => {
                format!("{kind}:{}/{}", lossy(vendor), lossy(product))
            }
        }
    }
}

/// [`SourceId::key`]'s starting state, and what its length words are
/// told apart from its byte words by.
const KEY_SEED: u64 = 0xe703_7ed1_a0b4_28db;
/// [`fold`]'s odd multiplier (a 64-bit constant with its bits spread).
const KEY_MULTIPLIER: u64 = 0xa076_1d64_78bd_642f;

/// One step of [`SourceId::key`]: the state and a word, multiplied out
/// to 128 bits, the halves folded (every input bit reaches the low bits
/// the slot table indexes by).
#[inline]
fn fold(h: u64, word: u64) -> u64 {
    let product = u128::from(h ^ word) * u128::from(KEY_MULTIPLIER);
    (product as u64) ^ (product >> 64) as u64
}

/// Folds `bytes` into `h`: its length first (so that parts cannot trade
/// bytes), then its eight-byte words, the last one overlapping the one
/// before when the length is not a multiple of eight (a part under eight
/// bytes as one word of its first and last four, or of its first, middle
/// and last bytes). Given the length, the words determine the bytes.
#[inline]
fn key_part(mut h: u64, bytes: &[u8]) -> u64 {
    let n = bytes.len();
    h = fold(h, n as u64 ^ KEY_SEED);
    let mut at = 0;
    while at + 8 <= n {
        h = fold(h, load8(bytes, at));
        at += 8;
    }
    if at < n {
        let word = match n {
            8.. => load8(bytes, n - 8),
            4..=7 => load4(bytes, 0) | load4(bytes, n - 4) << 32,
            _ => u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16,
        };
        h = fold(h, word);
    }
    h
}

/// The eight bytes of `b` at `at` (which has them), little-endian.
#[inline]
fn load8(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// The four bytes of `b` at `at` (which has them), little-endian.
#[inline]
fn load4(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(
        b[at..at + 4].try_into().unwrap_or([0; 4]),
    ))
}

/// A cheap fingerprint of the field names, in order: length plus the
/// first and last eight bytes of each name, mixed. A collision only means
/// an event is skipped as "known" (it is still counted, and the next
/// sampled event observes it in full).
fn names_fingerprint(fields: &[(&str, &[u8])]) -> u64 {
    let mut acc = fields.len() as u64;
    for (name, _) in fields {
        let word = name_word(name.as_bytes());
        acc = (acc.rotate_left(5) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    acc
}

/// One word for a name: its length and its first and last eight bytes
/// (overlapping loads, no copy; shorter names by their first, middle and
/// last bytes or four-byte halves).
fn name_word(b: &[u8]) -> u64 {
    let len = b.len() as u64;
    let (head, tail) = match b.len() {
        8.. => (load8(b, 0), load8(b, b.len() - 8)),
        4..=7 => (load4(b, 0), load4(b, b.len() - 4)),
        1..=3 => (
            u64::from(b[0]) | u64::from(b[b.len() / 2]) << 8,
            u64::from(b[b.len() - 1]),
        ),
        0 => (0, 0),
    };
    head ^ tail.rotate_left(29) ^ len.rotate_left(59)
}

/// One event in `every` (at least 1) of a known field set is observed in
/// full: which ones, tested per event with a mask when `every` is a power
/// of two (the default), not a division.
#[derive(Clone, Copy, Debug)]
struct Sampling {
    every: u64,
    /// `every - 1` for a power of two, else `u64::MAX`.
    mask: u64,
}

impl Sampling {
    fn every(n: u64) -> Self {
        let every = n.max(1);
        let mask = if every.is_power_of_two() {
            every - 1
        } else {
            u64::MAX
        };
        Sampling { every, mask }
    }

    /// Whether a source's `events`-th event is one observed in full.
    #[inline]
    fn sampled(self, events: u64) -> bool {
        if self.mask != u64::MAX {
            events & self.mask == 0
        } else {
            events.is_multiple_of(self.every)
        }
    }
}

impl SchemaRegistry {
    pub fn new(sources_max: usize, fields_max: usize) -> Self {
        SchemaRegistry {
            slots: vec![EMPTY_SLOT; 64],
            sources: Vec::new(),
            sources_max: sources_max.max(1),
            fields_max: fields_max.max(1),
            sampling: Sampling::every(SAMPLE_EVERY),
            sources_overflow: 0,
            type_conflicts: 0,
        }
    }

    /// Observes one event of a known field set in full in every `n`
    /// (at least 1) rather than [`SAMPLE_EVERY`].
    pub fn with_sample_every(mut self, n: u64) -> Self {
        self.sampling = Sampling::every(n);
        self
    }

    /// Where `key` is, or the empty slot where it would go.
    #[inline]
    fn probe(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = key as usize & mask;
        loop {
            let slot = &self.slots[at];
            if slot.index == EMPTY || slot.key == key {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    /// Asks the CPU to bring `key`'s slot into the cache (its first probe
    /// position, where nearly every key is found). Nothing else happens.
    #[inline]
    pub fn prefetch(&self, key: SourceKey) {
        let at = key.0 as usize & (self.slots.len() - 1);
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let ptr = self.slots[at..].as_ptr().cast::<i8>();
            // SAFETY: a prefetch reads nothing and cannot fault; the
            // pointer is to a live slot anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }

    /// Doubles the slot table and places every source again.
    fn grow(&mut self) {
        let doubled = vec![EMPTY_SLOT; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for slot in old.into_iter().filter(|s| s.index != EMPTY) {
            let at = self.probe(slot.key);
            self.slots[at] = slot;
        }
    }

    /// Records one event of `source` with `fields` at `time_ns`.
    pub fn observe(&mut self, source: SourceId<'_>, fields: &[(&str, &[u8])], time_ns: i64) {
        self.observe_keyed(source.key(), source, fields, time_ns, None);
    }

    /// [`SchemaRegistry::observe`] with the source's key already made
    /// (`key` must be `source.key()`).
    pub fn observe_keyed(
        &mut self,
        key: SourceKey,
        source: SourceId<'_>,
        fields: &[(&str, &[u8])],
        time_ns: i64,
        received_ns: Option<i64>,
    ) {
        debug_assert_eq!(key, source.key());
        let key = key.0;
        let mut at = self.probe(key);
        if self.slots[at].index == EMPTY {
            if self.sources.len() >= self.sources_max {
                self.sources_overflow += 1;
                return;
            }
            if (self.sources.len() + 1) * 2 > self.slots.len() {
                self.grow();
                at = self.probe(key);
            }
            let index = u32::try_from(self.sources.len()).unwrap_or(EMPTY - 1);
            self.sources.push(HeldSource::new(source.name(), time_ns));
            self.slots[at] = Slot {
                key,
                index,
                last_seen_ns: time_ns,
                ..EMPTY_SLOT
            };
        }
        let slot = &mut self.slots[at];
        slot.events += 1;
        slot.last_seen_ns = slot.last_seen_ns.max(time_ns);
        let events = slot.events;
        // Cheapest path: a field count this source had lately, and not one
        // of the events checked in full. A new field set with such a count
        // is still noticed within CHECK_EVERY events.
        let len = u16::try_from(fields.len()).map_or(u16::MAX - 1, |n| n.min(u16::MAX - 1));
        let recent = slot.recent_lens.contains(&len);
        if !recent {
            slot.recent_lens[usize::from(slot.next_len)] = len;
            slot.next_len = (slot.next_len + 1) % RECENT_LENS as u8;
        }
        let sampled = self.sampling.sampled(events);
        if recent && !events.is_multiple_of(CHECK_EVERY) && !sampled {
            return;
        }
        let fingerprint = names_fingerprint(fields);
        // An empty place holds 0, the fingerprint of no fields: such an
        // event has nothing to register anyway.
        let in_slot = slot.recent_fingerprints.contains(&fingerprint);
        if in_slot && !sampled {
            return;
        }
        if !in_slot {
            slot.recent_fingerprints[usize::from(slot.next_fingerprint)] = fingerprint;
            slot.next_fingerprint = (slot.next_fingerprint + 1) % SLOT_FINGERPRINTS as u8;
        }
        let held = &mut self.sources[slot.index as usize];
        let schema = &mut held.schema;
        let known = in_slot || schema.fingerprints.contains(&fingerprint);
        if known && !sampled {
            return;
        }
        if let Some(received_ns) = received_ns {
            // Milliseconds are plenty: the question is minutes or hours.
            let lag_s = (received_ns.saturating_sub(time_ns) / 1_000_000) as f64 / 1e3;
            ClockLag::new(lag_s, received_ns).fold_into(&mut schema.clock_lag);
        }
        if !known {
            if schema.fingerprints.len() == FINGERPRINTS_MAX {
                schema.fingerprints.remove(0);
            }
            schema.fingerprints.push(fingerprint);
        }
        if !held.observe_laid_out(fingerprint, fields, time_ns, &mut self.type_conflicts) {
            held.observe_by_name(
                fingerprint,
                fields,
                time_ns,
                self.fields_max,
                &mut self.type_conflicts,
            );
        }
    }

    /// For an event whose fields the caller would rather not make (a line
    /// no rule can see, its payload not decoded): counts one event of the
    /// known source `key` at `time_ns` and returns true, unless the event
    /// is one to look at in full (a source not held yet, or the one event
    /// in `sample_every` that is observed in full): then it counts nothing
    /// and returns false, and the caller decodes the line and observes
    /// it. What this gives up: a field set new to the source is noticed at
    /// its next sampled event (within `sample_every` of its events, as a
    /// type change is) instead of within [`CHECK_EVERY`], or at once when
    /// its field count is new. (Decoding one in [`CHECK_EVERY`] of these
    /// lines, as before, was about 7% of the node's lines with the
    /// built-in pack on the harness's mix.)
    pub fn count_without_fields(&mut self, key: SourceKey, time_ns: i64) -> bool {
        let at = self.probe(key.0);
        let slot = &mut self.slots[at];
        if slot.index == EMPTY {
            return false;
        }
        let next = slot.events + 1;
        if self.sampling.sampled(next) {
            return false;
        }
        slot.events = next;
        slot.last_seen_ns = slot.last_seen_ns.max(time_ns);
        true
    }

    /// The sources as they stand, sorted by name.
    pub fn snapshot(&self) -> Vec<SourceSchema> {
        let mut out: Vec<SourceSchema> = self.sources.iter().map(HeldSource::to_schema).collect();
        for slot in self.slots.iter().filter(|s| s.index != EMPTY) {
            let schema = &mut out[slot.index as usize];
            schema.events = slot.events;
            schema.last_seen_ns = slot.last_seen_ns;
        }
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    pub fn source_count(&self) -> usize {
        self.sources.len()
    }
}

/// One core's schema registry as the API last asked for it.
///
/// A copy of a registry with thousands of sources takes milliseconds, all
/// of it on the core (it owns the registry), so it is made only when
/// `/api/schemas` asks: the request takes a ticket, the core's tick sees
/// it, copies and answers it; the request waits for every core's answer
/// (see [`SCHEMA_WAIT_MAX`]). Nothing is copied while nobody asks.
#[derive(Debug, Default)]
pub struct SchemaBoard {
    copy: std::sync::Mutex<Vec<SourceSchema>>,
    /// The newest ticket handed out.
    requested: AtomicU64,
    /// The newest ticket the copy answers.
    answered: AtomicU64,
}

/// How long `/api/schemas` waits for the cores' fresh copies before it
/// answers with the copies they have (a core that is stopping, or stalled).
pub const SCHEMA_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

impl SchemaBoard {
    /// API side: asks for a fresh copy; the ticket to wait for.
    pub fn request(&self) -> u64 {
        self.requested.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Whether the copy answers `ticket` (or a later request).
    pub fn answered(&self, ticket: u64) -> bool {
        self.answered.load(Ordering::Acquire) >= ticket
    }

    /// Core side: the newest unanswered ticket, if any.
    pub fn wanted(&self) -> Option<u64> {
        let requested = self.requested.load(Ordering::Acquire);
        (requested > self.answered.load(Ordering::Acquire)).then_some(requested)
    }

    /// Core side: `copy` answers every ticket up to `ticket`.
    pub fn publish(&self, ticket: u64, copy: Vec<SourceSchema>) {
        if let Ok(mut held) = self.copy.lock() {
            *held = copy;
        }
        self.answered.fetch_max(ticket, Ordering::AcqRel);
    }

    /// The copy last published.
    pub fn copy(&self) -> Vec<SourceSchema> {
        self.copy
            .lock()
            .map(|held| held.clone())
            .unwrap_or_default()
    }
}

/// Merges several cores' snapshots of the same sources into one view.
pub fn merge(snapshots: &[Vec<SourceSchema>]) -> Vec<SourceSchema> {
    let mut by_name: BTreeMap<String, SourceSchema> = BTreeMap::new();
    for snapshot in snapshots {
        for source in snapshot {
            match by_name.get_mut(&source.source) {
                None => {
                    by_name.insert(source.source.clone(), source.clone());
                }
                Some(merged) => {
                    merged.version = merged.version.max(source.version);
                    merged.events += source.events;
                    merged.first_seen_ns = merged.first_seen_ns.min(source.first_seen_ns);
                    merged.last_seen_ns = merged.last_seen_ns.max(source.last_seen_ns);
                    merged.fields_overflow += source.fields_overflow;
                    if let Some(lag) = source.clock_lag {
                        lag.fold_into(&mut merged.clock_lag);
                    }
                    for (name, field) in &source.fields {
                        match merged.fields.get_mut(name) {
                            None => {
                                merged.fields.insert(name.clone(), field.clone());
                            }
                            Some(m) => {
                                m.observed += field.observed;
                                m.first_seen_ns = m.first_seen_ns.min(field.first_seen_ns);
                                if field.last_seen_ns > m.last_seen_ns {
                                    m.last_seen_ns = field.last_seen_ns;
                                    m.ty = field.ty;
                                }
                                for (ty, n) in &field.conflicts {
                                    *m.conflicts.entry(ty).or_default() += n;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
        pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
    }

    /// A source is its key alone, so keys must tell sources apart: parts
    /// of every length (each word path), parts trading bytes, a host and
    /// app against a vendor triple; and their low bits, which place them
    /// in the slot table, must spread.
    #[test]
    fn source_keys_tell_sources_apart_and_spread() {
        let mut keys = std::collections::HashMap::new();
        let mut add = |id: SourceId<'_>| {
            let name = format!("{id:?}");
            if let Some(other) = keys.insert(id.key().0, name.clone()) {
                assert_eq!(other, name, "two sources, one key");
            }
        };
        let alphabet = b"ab-.0";
        let mut texts: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=4 {
            let mut text = vec![0u8; len];
            for i in 0..alphabet.len().pow(len as u32) {
                let mut rest = i;
                for b in text.iter_mut() {
                    *b = alphabet[rest % alphabet.len()];
                    rest /= alphabet.len();
                }
                texts.push(text.clone());
            }
        }
        // Every split of a string into host and app; every pair of the
        // short texts.
        for a in &texts {
            for b in texts.iter().take(160) {
                add(SourceId::HostApp(a, b));
            }
        }
        for n in 0..=40usize {
            let joined: Vec<u8> = (0..n).map(|i| b"host-0.example.net"[i % 18]).collect();
            for cut in 0..=n {
                add(SourceId::HostApp(&joined[..cut], &joined[cut..]));
                add(SourceId::Vendor("cef", &joined[..cut], &joined[cut..]));
            }
            // One byte changed anywhere, in parts of every length.
            for at in 0..n {
                let mut changed = joined.clone();
                changed[at] ^= 1;
                add(SourceId::HostApp(&changed, b"sshd"));
            }
            add(SourceId::HostApp(&joined, b"sshd"));
        }
        // The low 10 bits of 100,000 typical keys: every one of the 1,024
        // places gets 98 on average; a place far off (under 40, over 170)
        // is a sign of bits that do not reach the bottom.
        let mut places = vec![0u32; 1024];
        for i in 0..100_000 {
            let host = format!("web-{:03}.dc{}.example.com", i % 997, i / 997);
            let key = SourceId::HostApp(host.as_bytes(), b"nginx").key().0;
            places[(key & 1023) as usize] += 1;
        }
        let (low, high) = (places.iter().min(), places.iter().max());
        assert!(low >= Some(&40) && high <= Some(&170), "{low:?} {high:?}");
    }

    #[test]
    fn fingerprints_tell_typical_name_sets_apart() {
        let names = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abc",
            "acb",
            "src",
            "dst",
            "spt",
            "dpt",
            "user",
            "usr",
            "host",
            "hosts",
            "source.ip",
            "source.port",
            "destination.ip",
            "destination.port",
            "Event.EventData.CommandLine",
            "Event.EventData.Image",
            "Event.System.EventID",
            "event.dataset",
            "act",
            "action",
            "msg",
            "message",
        ];
        let mut seen = std::collections::HashMap::new();
        for name in names {
            let fp = names_fingerprint(&[(name, b"")]);
            assert_eq!(seen.insert(fp, name), None, "{name} collides");
        }
        // Pairs, in both orders: order is part of the set's identity.
        let mut pairs = std::collections::HashSet::new();
        for a in names {
            for b in names {
                assert!(pairs.insert(names_fingerprint(&[(a, b""), (b, b"")])));
            }
        }
        // Values do not count.
        assert_eq!(
            names_fingerprint(&[("src", b"1.2.3.4")]),
            names_fingerprint(&[("src", b"5.6.7.8")])
        );
    }

    #[test]
    fn new_fields_bump_the_version_and_conflicts_are_recorded() {
        let mut r = SchemaRegistry::new(10, 10);
        let src = SourceId::HostApp(b"fw1", b"kernel");
        r.observe(src, &fields(&[("SRC", "10.0.0.1"), ("DPT", "22")]), 1);
        r.observe(src, &fields(&[("SRC", "10.0.0.2"), ("DPT", "23")]), 2);
        r.observe(
            src,
            &fields(&[("SRC", "10.0.0.3"), ("DPT", "ssh"), ("NEW", "x")]),
            3,
        );
        let snap = r.snapshot();
        assert_eq!(snap.len(), 1);
        let s = &snap[0];
        assert_eq!(s.source, "fw1/kernel");
        assert_eq!(s.version, 2);
        assert_eq!(s.events, 3);
        assert_eq!(s.fields["SRC"].ty, "ip");
        assert_eq!(s.fields["NEW"].since_version, 2);
        assert_eq!(s.fields["DPT"].conflicts.get("string"), Some(&1));
        assert_eq!(r.type_conflicts, 1);
    }

    #[test]
    fn sampled_events_update_their_fields_by_layout_as_by_name() {
        let mut r = SchemaRegistry::new(10, 10);
        let src = SourceId::HostApp(b"fw1", b"kernel");
        let events = 3 * SAMPLE_EVERY;
        // Two shapes in turn, one with a name twice; the DPT of the last
        // sampled event of the first shape is text.
        for i in 1..=events {
            let dpt = if i == 2 * SAMPLE_EVERY { "ssh" } else { "22" };
            let pairs: &[(&str, &str)] = if i % 2 == 0 {
                &[("SRC", "10.0.0.1"), ("DPT", dpt)]
            } else {
                &[("SRC", "10.0.0.1"), ("SEQ", "1"), ("SEQ", "2")]
            };
            r.observe(src, &fields(pairs), i as i64);
        }
        let snap = r.snapshot();
        let s = &snap[0];
        assert_eq!(s.events, events);
        assert_eq!(s.version, 2);
        // Observed in full: each shape's first event, and events 64, 128
        // and 192 (even: the first shape).
        assert_eq!(s.fields["DPT"].observed, 1 + 3);
        assert_eq!(s.fields["SEQ"].observed, 2);
        assert_eq!(s.fields["SRC"].observed, 2 + 3);
        assert_eq!(s.fields["DPT"].conflicts.get("string"), Some(&1));
        assert_eq!(s.fields["DPT"].ty, "int");
        assert_eq!(s.fields["DPT"].last_seen_ns, events as i64);
        assert_eq!(r.type_conflicts, 2);
    }

    #[test]
    fn sampling_follows_sample_every() {
        let src = SourceId::HostApp(b"fw1", b"kernel");
        let line = fields(&[("DPT", "22")]);
        // A power of two is tested with a mask, other counts by division.
        for every in [1, 5, 64, 96, 256] {
            let mut r = SchemaRegistry::new(10, 10).with_sample_every(every);
            for i in 1..=1_000 {
                r.observe(src, &line, i);
            }
            // The first event, then each `every`-th (the first counts).
            let want = 1 + 1_000 / every - u64::from(every == 1);
            assert_eq!(r.snapshot()[0].fields["DPT"].observed, want, "{every}");
        }
        let r = SchemaRegistry::new(10, 10).with_sample_every(0);
        assert_eq!(r.sampling.every, 1);
    }

    #[test]
    fn a_layout_fits_only_its_own_names() {
        let mut held = HeldSource::new("h/a".into(), 0);
        let mut conflicts = 0;
        held.observe_by_name(
            7,
            &fields(&[("ab", "1"), ("c", "2")]),
            1,
            10,
            &mut conflicts,
        );
        let layout = &held.layouts[0];
        assert!(layout.fits(&fields(&[("ab", "x"), ("c", "y")])));
        assert!(!layout.fits(&fields(&[("a", "x"), ("bc", "y")])));
        assert!(!layout.fits(&fields(&[("ab", "x")])));
        assert!(!layout.fits(&fields(&[("ab", "x"), ("cd", "y")])));
        // A fingerprint that collides with another name sequence is
        // observed by name.
        assert!(!held.observe_laid_out(7, &fields(&[("a", "1"), ("bc", "2")]), 2, &mut conflicts));
        assert!(held.observe_laid_out(7, &fields(&[("ab", "1"), ("c", "2")]), 2, &mut conflicts));
        // Past the field cap nothing is laid out: the overflow is counted
        // by name every time.
        let mut capped = HeldSource::new("h/b".into(), 0);
        capped.observe_by_name(9, &fields(&[("a", "1"), ("b", "2")]), 1, 1, &mut conflicts);
        assert!(capped.layouts.is_empty());
        assert_eq!(capped.schema.fields_overflow, 1);
    }

    #[test]
    fn new_shapes_are_noticed_at_once_or_within_check_every() {
        let mut r = SchemaRegistry::new(10, 100);
        let src = SourceId::HostApp(b"bastion", b"sshd");
        let two = fields(&[("user", "a"), ("src", "1.2.3.4")]);
        let three = fields(&[("user", "a"), ("src", "1.2.3.4"), ("port", "22")]);
        // Two shapes in turn: both counts stay recent.
        for t in 0..40 {
            r.observe(src, if t % 2 == 0 { &two } else { &three }, t);
        }
        let version = r.snapshot()[0].version;
        assert_eq!(version, 2);
        // A new field with a count not seen lately: noticed on its first event.
        let four = fields(&[
            ("user", "a"),
            ("src", "1.2.3.4"),
            ("port", "22"),
            ("k", "v"),
        ]);
        r.observe(src, &four, 40);
        assert!(r.snapshot()[0].fields.contains_key("k"));
        // A new field set with a recent count: within CHECK_EVERY events.
        let other_two = fields(&[("user", "a"), ("method", "publickey")]);
        for t in 0..CHECK_EVERY as i64 {
            r.observe(src, &other_two, 41 + t);
        }
        let snap = r.snapshot();
        assert!(snap[0].fields.contains_key("method"));
        assert_eq!(snap[0].events, 41 + CHECK_EVERY);
    }

    /// Clock lag is measured on the events observed in full, and merged
    /// over cores: the newest observation's latest, the extremes, the
    /// counts summed. Without receive times (a replay) there is none.
    #[test]
    fn clock_lag_is_sampled_and_merged() {
        const S: i64 = 1_000_000_000;
        const H: i64 = 3600 * S;
        let src = SourceId::HostApp(b"gw", b"sshd");
        let line = fields(&[("user", "root")]);
        let mut a = SchemaRegistry::new(10, 10);
        let mut b = SchemaRegistry::new(10, 10);
        // A new source is observed in full; then one event in SAMPLE_EVERY.
        a.observe_keyed(src.key(), src, &line, 1_000 * S - 5 * H, Some(1_000 * S));
        for i in 1..SAMPLE_EVERY as i64 {
            let received = 1_000 * S + i * S;
            a.observe_keyed(src.key(), src, &line, received - 5 * H, Some(received));
        }
        let lag = a.snapshot()[0].clock_lag.expect("measured");
        assert_eq!((lag.latest_s, lag.samples), (18_000.0, 2));
        b.observe_keyed(src.key(), src, &line, 2_000 * S - 90 * S, Some(2_000 * S));
        let merged = merge(&[a.snapshot(), b.snapshot()]);
        let lag = merged[0].clock_lag.expect("merged");
        assert_eq!(lag.latest_s, 90.0, "the newest observation's");
        assert_eq!((lag.min_s, lag.max_s, lag.samples), (90.0, 18_000.0, 3));
        let mut replayed = SchemaRegistry::new(10, 10);
        replayed.observe(src, &line, 5);
        assert!(replayed.snapshot()[0].clock_lag.is_none());
        let json = serde_json::to_value(&replayed.snapshot()[0]).unwrap();
        assert!(json.get("clock_lag").is_none(), "{json}");
    }

    #[test]
    fn thousands_of_sources_grow_the_table_and_keep_their_counts() {
        let mut r = SchemaRegistry::new(5_000, 10);
        let hosts: Vec<String> = (0..3_000).map(|i| format!("host-{i}")).collect();
        for round in 0..3 {
            for (i, host) in hosts.iter().enumerate() {
                // Each source's own number of events: 1 + i % 3 per round.
                for _ in 0..=(i % 3) {
                    r.observe(
                        SourceId::HostApp(host.as_bytes(), b"app"),
                        &fields(&[("k", "v")]),
                        round,
                    );
                }
            }
        }
        assert_eq!(r.source_count(), 3_000);
        assert!(r.slots.len() >= 6_000 && r.slots.len().is_power_of_two());
        let snap = r.snapshot();
        for (i, host) in hosts.iter().enumerate() {
            let schema = snap
                .iter()
                .find(|s| s.source == format!("{host}/app"))
                .expect("every source kept");
            assert_eq!(schema.events, 3 * (1 + i as u64 % 3), "{host}");
            assert_eq!(schema.last_seen_ns, 2);
            assert_eq!(schema.first_seen_ns, 0);
            assert!(schema.fields.contains_key("k"));
        }
    }

    /// A line no rule can see is counted without its fields, except the
    /// one in `sample_every` of its source's events that is observed in
    /// full; a source not held yet is always observed first.
    #[test]
    fn unread_lines_are_decoded_only_for_sampled_events() {
        for every in [SAMPLE_EVERY, 16] {
            let mut r = SchemaRegistry::new(10, 10).with_sample_every(every);
            let src = SourceId::HostApp(b"h", b"fw");
            let key = src.key();
            let fields: &[(&str, &[u8])] = &[("a", b"1")];
            assert!(!r.count_without_fields(key, 0), "a source not held yet");
            r.observe(src, fields, 0);
            let mut decoded = 0;
            for t in 1..=640 {
                if !r.count_without_fields(key, t) {
                    decoded += 1;
                    r.observe(src, fields, t);
                }
            }
            assert_eq!(decoded, 640 / every);
            assert_eq!(r.snapshot()[0].events, 641);
        }
    }

    #[test]
    fn caps_count_what_does_not_fit() {
        let mut r = SchemaRegistry::new(2, 1);
        for host in [&b"a"[..], b"b", b"c"] {
            r.observe(
                SourceId::HostApp(host, b"x"),
                &fields(&[("f", "1"), ("g", "2")]),
                0,
            );
        }
        assert_eq!(r.source_count(), 2);
        assert_eq!(r.sources_overflow, 1);
        assert!(r
            .snapshot()
            .iter()
            .all(|s| s.fields.len() == 1 && s.fields_overflow == 1));
    }

    #[test]
    fn merging_cores_sums_counts() {
        let mut a = SchemaRegistry::new(10, 10);
        let mut b = SchemaRegistry::new(10, 10);
        let src = SourceId::Vendor("cef", b"Acme", b"FW");
        a.observe(src, &fields(&[("src", "1.2.3.4")]), 5);
        b.observe(src, &fields(&[("src", "1.2.3.5"), ("act", "deny")]), 9);
        let merged = merge(&[a.snapshot(), b.snapshot()]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].source, "cef:Acme/FW");
        assert_eq!(merged[0].events, 2);
        assert_eq!(merged[0].fields["src"].observed, 2);
        assert_eq!(merged[0].first_seen_ns, 5);
    }

    #[test]
    fn the_board_copies_only_when_asked_and_answers_every_ticket_up_to_its_own() {
        let board = SchemaBoard::default();
        assert_eq!(board.wanted(), None);
        let mut r = SchemaRegistry::new(10, 10);
        r.observe(SourceId::HostApp(b"h", b"a"), &fields(&[("k", "v")]), 1);
        let first = board.request();
        let second = board.request();
        assert!(!board.answered(first));
        // The core answers the newest ticket, which covers the older one.
        assert_eq!(board.wanted(), Some(second));
        board.publish(second, r.snapshot());
        assert!(board.answered(first) && board.answered(second));
        assert_eq!(board.wanted(), None);
        assert_eq!(board.copy().len(), 1);
        // A late answer to an old ticket does not take the board back.
        let third = board.request();
        board.publish(first, Vec::new());
        assert!(!board.answered(third));
        assert_eq!(board.wanted(), Some(third));
    }
}
