//! Field aliases: vendor field names mapped onto common (ECS-style) names,
//! so one rule on `source.ip` covers CEF `src`, CloudTrail
//! `sourceIPAddress`, Windows `IpAddress`, netfilter `SRC` and so on.
//!
//! Rules see both names: the common name is added beside the original, and
//! only when the event does not already carry it. The built-in table can be
//! extended or overridden in the config (`[normalize] aliases`).
//! Free-text extraction already emits common names, so only events whose
//! payload a structured decoder (JSON, XML, CEF, LEEF, key=value, CSV)
//! produced pay for the lookups.
//!
//! The same pass recognises audit-record formats by field names of their
//! own ([`BUILTIN_DATASETS`]: AWS CloudTrail, Okta, GitHub, Bitbucket,
//! Azure activity logs, Kubernetes audit, Zeek, OpenCanary) and
//! adds `event.dataset` for them, which the built-in log source table maps
//! Sigma's cloud log sources onto.

use std::collections::{BTreeMap, HashMap};

use shardwatch_net::fields::Fields;
use shardwatch_rules::field::{NameKey, NameSequence, SecondSighting};
use shardwatch_rules::ShapeKey;

/// The built-in aliases: (vendor name, common name).
pub const BUILTIN_ALIASES: &[(&str, &str)] = &[
    // CEF (ArcSight dictionary).
    ("src", "source.ip"),
    ("dst", "destination.ip"),
    ("spt", "source.port"),
    ("dpt", "destination.port"),
    ("suser", "user.name"),
    ("duser", "user.target.name"),
    ("shost", "source.domain"),
    ("dhost", "destination.domain"),
    ("act", "event.action"),
    ("outcome", "event.outcome"),
    ("proto", "network.transport"),
    ("sproc", "process.name"),
    // LEEF.
    ("srcPort", "source.port"),
    ("dstPort", "destination.port"),
    ("usrName", "user.name"),
    // Netfilter / iptables.
    ("SRC", "source.ip"),
    ("DST", "destination.ip"),
    ("SPT", "source.port"),
    ("DPT", "destination.port"),
    ("PROTO", "network.transport"),
    // FortiGate and other key=value firewalls.
    ("srcip", "source.ip"),
    ("dstip", "destination.ip"),
    ("srcport", "source.port"),
    ("dstport", "destination.port"),
    ("action", "event.action"),
    ("user", "user.name"),
    ("src_ip", "source.ip"),
    ("dest_ip", "destination.ip"),
    ("dst_ip", "destination.ip"),
    ("src_port", "source.port"),
    ("dest_port", "destination.port"),
    ("dst_port", "destination.port"),
    ("username", "user.name"),
    ("SourceIP", "source.ip"),
    ("DestinationIP", "destination.ip"),
    // AWS CloudTrail.
    ("sourceIPAddress", "source.ip"),
    ("userIdentity.userName", "user.name"),
    ("eventName", "event.action"),
    ("eventSource", "event.provider"),
    ("awsRegion", "cloud.region"),
    // Windows events forwarded as JSON (flat and Event.EventData.* forms).
    ("IpAddress", "source.ip"),
    ("IpPort", "source.port"),
    ("TargetUserName", "user.name"),
    ("SubjectUserName", "user.name"),
    ("Image", "process.executable"),
    ("CommandLine", "process.command_line"),
    ("ParentImage", "process.parent.executable"),
    ("Event.EventData.IpAddress", "source.ip"),
    ("Event.EventData.IpPort", "source.port"),
    ("Event.EventData.TargetUserName", "user.name"),
    ("Event.EventData.SubjectUserName", "user.name"),
    ("Event.EventData.Image", "process.executable"),
    ("Event.EventData.CommandLine", "process.command_line"),
    ("Event.EventData.ParentImage", "process.parent.executable"),
    ("Event.System.Computer", "host.name"),
    ("Event.System.EventID", "event.code"),
    ("EventID", "event.code"),
];

/// What a dataset marker field's value must be (ASCII case-insensitively).
#[derive(Clone, Copy, Debug)]
pub enum MarkerValue {
    Any,
    EndsWith(&'static str),
    OneOf(&'static [&'static str]),
}

impl MarkerValue {
    fn admits(self, value: &[u8]) -> bool {
        match self {
            MarkerValue::Any => true,
            MarkerValue::EndsWith(suffix) => {
                let suffix = suffix.as_bytes();
                value.len() >= suffix.len()
                    && value[value.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            MarkerValue::OneOf(values) => values
                .iter()
                .any(|known| known.as_bytes().eq_ignore_ascii_case(value)),
        }
    }
}

/// A field a dataset's records always have, and what its value must be.
pub type DatasetMarker = (&'static str, MarkerValue);

/// Audit-record formats recognised by field names of their own, named by
/// the ECS `event.dataset` value an event of that format gets (unless it
/// carries one): `(dataset, markers)`, where every marker field must be
/// present and, with a suffix, end with it (ASCII case-insensitively).
/// The built-in log source table maps Sigma's cloud log sources onto these
/// (`rules/LOGSOURCES.md`), so such feeds need no configuration.
pub const BUILTIN_DATASETS: &[(&str, &[DatasetMarker])] = &[
    // AWS CloudTrail records: every one names its API's endpoint.
    (
        "aws.cloudtrail",
        &[
            ("eventVersion", MarkerValue::Any),
            ("eventSource", MarkerValue::EndsWith(".amazonaws.com")),
        ],
    ),
    // Okta System Log events.
    (
        "okta.system",
        &[
            ("eventType", MarkerValue::Any),
            ("published", MarkerValue::Any),
            ("actor.alternateId", MarkerValue::Any),
        ],
    ),
    // GitHub organization / enterprise audit log (streamed or exported).
    (
        "github.audit",
        &[
            ("action", MarkerValue::Any),
            ("actor", MarkerValue::Any),
            ("_document_id", MarkerValue::Any),
        ],
    ),
    // Bitbucket audit log.
    (
        "bitbucket.audit",
        &[
            ("auditType.category", MarkerValue::Any),
            ("auditType.action", MarkerValue::Any),
        ],
    ),
    // Kubernetes API server audit events.
    (
        "kubernetes.audit_logs",
        &[
            ("kind", MarkerValue::OneOf(&["Event"])),
            (
                "apiVersion",
                MarkerValue::OneOf(&["audit.k8s.io/v1", "audit.k8s.io/v1beta1"]),
            ),
            ("auditID", MarkerValue::Any),
        ],
    ),
    // Zeek logs written as JSON, told apart by a field only that log has.
    (
        "zeek.dns",
        &[
            ("uid", MarkerValue::Any),
            ("id.orig_h", MarkerValue::Any),
            ("trans_id", MarkerValue::Any),
        ],
    ),
    (
        "zeek.http",
        &[
            ("uid", MarkerValue::Any),
            ("id.orig_h", MarkerValue::Any),
            ("trans_depth", MarkerValue::Any),
        ],
    ),
    (
        "zeek.smb_files",
        &[
            ("uid", MarkerValue::Any),
            (
                "action",
                MarkerValue::OneOf(&[
                    "SMB::FILE_OPEN",
                    "SMB::FILE_READ",
                    "SMB::FILE_WRITE",
                    "SMB::FILE_DELETE",
                    "SMB::FILE_RENAME",
                    "SMB::FILE_CLOSE",
                    "SMB::FILE_SET_ATTRIBUTE",
                    "SMB::PRINT_OPEN",
                    "SMB::PRINT_READ",
                    "SMB::PRINT_WRITE",
                    "SMB::PRINT_CLOSE",
                ]),
            ),
        ],
    ),
    (
        "zeek.dce_rpc",
        &[
            ("uid", MarkerValue::Any),
            ("id.orig_h", MarkerValue::Any),
            ("endpoint", MarkerValue::Any),
            ("operation", MarkerValue::Any),
        ],
    ),
    (
        "zeek.kerberos",
        &[
            ("uid", MarkerValue::Any),
            ("id.orig_h", MarkerValue::Any),
            ("request_type", MarkerValue::OneOf(&["AS", "TGS"])),
        ],
    ),
    // OpenCanary honeypot events (its JSON log lines).
    (
        "opencanary",
        &[
            ("logtype", MarkerValue::Any),
            ("node_id", MarkerValue::Any),
            ("local_time", MarkerValue::Any),
            ("dst_port", MarkerValue::Any),
        ],
    ),
    // Azure activity log records (one per line, as Event Hub exports are
    // split by forwarders): the activity log's own categories.
    (
        "azure.activitylogs",
        &[
            ("operationName", MarkerValue::Any),
            ("resourceId", MarkerValue::Any),
            ("correlationId", MarkerValue::Any),
            (
                "category",
                MarkerValue::OneOf(&[
                    "Administrative",
                    "Security",
                    "ServiceHealth",
                    "Alert",
                    "Recommendation",
                    "Policy",
                    "Autoscale",
                    "ResourceHealth",
                ]),
            ),
        ],
    ),
];

/// What the table knows about one field name.
#[derive(Default)]
struct Entry {
    /// The common name it is aliased to.
    common: Option<String>,
    /// The common name's bit in an event's name filter
    /// ([`NameSketch::filter_bit`]).
    common_bit: u128,
    /// Dataset markers it is: (bit, what the value must be).
    markers: Vec<(u64, MarkerValue)>,
}

/// Names to entries, looked up once per field of every structured event.
/// Names of up to [`NameKey::BYTES_MAX`] bytes (nearly all) are found by
/// their [`NameKey`] in an open-addressing table of (hash, entry) slots,
/// which a miss usually leaves after one slot and one compare; longer ones
/// in a hash map.
struct NameTable {
    /// [`NameSketch::at`] of every name: most of an event's names are
    /// not in the table, which this says without building the key.
    sketch: [u64; SKETCH_WORDS],
    /// (key hash, entry + 1; 0 for an empty slot), a power of two long.
    slots: Vec<(u64, u32)>,
    keys: Vec<NameKey>,
    entries: Vec<Entry>,
    long: HashMap<String, u32>,
}

impl NameTable {
    fn new(map: BTreeMap<String, Entry>) -> NameTable {
        let mut table = NameTable {
            sketch: [0; SKETCH_WORDS],
            // At most a quarter full: probes stay short.
            slots: vec![(0, 0); (map.len() * 4).next_power_of_two().max(16)],
            keys: Vec::new(),
            entries: Vec::new(),
            long: HashMap::new(),
        };
        let mask = table.slots.len() - 1;
        for (name, entry) in map {
            let (word, bit) = NameSketch::of(&name).at();
            table.sketch[word] |= bit;
            let index = u32::try_from(table.entries.len()).expect("fewer than 2^32 aliases");
            let key = NameKey::of(name.as_bytes());
            match key {
                Some(key) => {
                    let hash = key.hash();
                    let mut at = (hash >> 32) as usize & mask;
                    while table.slots[at].1 != 0 {
                        at = (at + 1) & mask;
                    }
                    table.slots[at] = (hash, index + 1);
                }
                None => {
                    table.long.insert(name, index);
                }
            }
            // Long names' places in `keys` are never compared.
            table.keys.push(key.unwrap_or_default());
            table.entries.push(Entry {
                common_bit: entry
                    .common
                    .as_deref()
                    .map_or(0, |common| NameSketch::of(common).filter_bit()),
                ..entry
            });
        }
        table
    }

    #[cfg(test)]
    fn get(&self, name: &str) -> Option<&Entry> {
        self.find(name).map(|i| &self.entries[i])
    }

    /// The entry of `name`, if the table has it.
    #[inline]
    fn find(&self, name: &str) -> Option<usize> {
        let Some(key) = NameKey::of(name.as_bytes()) else {
            return self.long.get(name).map(|&i| i as usize);
        };
        let hash = key.hash();
        let mask = self.slots.len() - 1;
        let mut at = (hash >> 32) as usize & mask;
        loop {
            let (slot_hash, index) = self.slots[at];
            if index == 0 {
                return None;
            }
            let index = (index - 1) as usize;
            if slot_hash == hash && self.keys[index].matches(&key) {
                return Some(index);
            }
            at = (at + 1) & mask;
        }
    }

    /// Whether the table may have a name of this sketch (false: it has
    /// none).
    #[inline]
    fn may_have(&self, sketch: NameSketch) -> bool {
        let (word, bit) = sketch.at();
        self.sketch[word] & bit != 0
    }
}

/// Words of [`NameTable::sketch`] (1,024 bits).
const SKETCH_WORDS: usize = 16;

/// A name's length and first and last bytes, mixed by one multiply: read
/// without a pass over the name, it places the name in the table's sketch
/// and in an event's 128-bit name filter.
#[derive(Clone, Copy)]
struct NameSketch(u64);

impl NameSketch {
    #[inline]
    fn of(name: &str) -> NameSketch {
        let bytes = name.as_bytes();
        let first = bytes.first().copied().unwrap_or(0);
        let last = bytes.last().copied().unwrap_or(0);
        let key = (bytes.len() as u64) | (u64::from(first) << 16) | (u64::from(last) << 24);
        NameSketch(key.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// `(word, bit mask)` in a 1,024-bit sketch (the top ten bits).
    #[inline]
    fn at(self) -> (usize, u64) {
        let at = (self.0 >> 54) as usize;
        (at / 64, 1u64 << (at % 64))
    }

    /// The name's bit in a 128-bit filter of an event's names (the top
    /// seven bits).
    #[inline]
    fn filter_bit(self) -> u128 {
        1u128 << (self.0 >> 57)
    }
}

/// Aliased fields one event may add in the fast path; more are checked
/// one by one as they are met.
const PENDING_MAX: usize = 32;

/// The alias table in force as `vendor name -> common name`: the built-in
/// table (if `builtin`), then `overrides` on top (an empty common name
/// removes an alias).
fn common_names(builtin: bool, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    if builtin {
        for (from, to) in BUILTIN_ALIASES {
            map.insert((*from).to_string(), (*to).to_string());
        }
    }
    for (from, to) in overrides {
        if to.is_empty() {
            map.remove(from);
        } else {
            map.insert(from.clone(), to.clone());
        }
    }
    map
}

/// Field names the engine adds to an event itself (not from its line).
const ENGINE_NAMES: &[&str] = &[
    "event.dataset",
    "event.time_skewed",
    "template.text",
    "template.new",
    "template.id",
];

/// How a line's payload names its fields with this alias table, for the
/// header gate (`shardwatch_rules::PayloadNaming`): every alias, and the
/// names given without their text in the line
/// (`shardwatch_net::names_not_in_text`, the names the engine adds).
pub fn payload_naming(
    builtin: bool,
    overrides: &BTreeMap<String, String>,
) -> shardwatch_rules::PayloadNaming {
    shardwatch_rules::PayloadNaming {
        aliases: common_names(builtin, overrides).into_iter().collect(),
        made_up: shardwatch_net::names_not_in_text()
            .into_iter()
            .chain(ENGINE_NAMES.iter().copied())
            .map(str::to_string)
            .collect(),
    }
}

/// The alias table in force.
pub struct Aliases {
    map: NameTable,
    /// Per dataset of [`BUILTIN_DATASETS`] (when the built-in table is on):
    /// its name and the marker bits it needs.
    datasets: Vec<(&'static str, u64)>,
}

impl Aliases {
    /// The built-in table (if `builtin`), then `overrides` on top.
    pub fn new(builtin: bool, overrides: &BTreeMap<String, String>) -> Aliases {
        let mut map: BTreeMap<String, Entry> = BTreeMap::new();
        let mut datasets = Vec::new();
        for (from, to) in common_names(builtin, overrides) {
            map.entry(from).or_default().common = Some(to);
        }
        if builtin {
            let mut bit = 0u32;
            for (dataset, markers) in BUILTIN_DATASETS {
                let mut mask = 0u64;
                for (field, value) in *markers {
                    assert!(bit < 64, "at most 64 dataset markers in all");
                    map.entry((*field).to_string())
                        .or_default()
                        .markers
                        .push((1u64 << bit, *value));
                    mask |= 1u64 << bit;
                    bit += 1;
                }
                datasets.push((*dataset, mask));
            }
        }
        map.retain(|_, entry| entry.common.is_some() || !entry.markers.is_empty());
        Aliases {
            map: NameTable::new(map),
            datasets,
        }
    }

    /// The number of aliased names.
    pub fn len(&self) -> usize {
        self.map
            .entries
            .iter()
            .filter(|e| e.common.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the common name of every aliased field to `fields`, unless the
    /// event already has a field of that name; then `event.dataset` when
    /// the fields are those of a format in [`BUILTIN_DATASETS`] and the
    /// event has none.
    pub fn apply<'a>(&'a self, fields: &mut Fields<'a>) {
        self.apply_recording(fields, None);
    }

    /// [`Aliases::apply`], remembering what it did for the event's
    /// sequence of names in `shapes` (see [`AliasShapes`]): an event with
    /// a remembered sequence gets the same common names, from its own
    /// values, and its dataset markers checked, without a name looked up.
    ///
    /// Returns the alias shape the event's names are remembered as, if
    /// they are: [`AliasShapes::index_key`] and
    /// [`AliasShapes::set_index_key`] then carry the rules' shape of the
    /// names the pass left.
    pub fn apply_with_shapes<'a>(
        &'a self,
        fields: &mut Fields<'a>,
        shapes: &mut AliasShapes,
    ) -> Option<AliasShapeAt> {
        if fields.len() > NameSequence::FIELDS_MAX {
            self.apply(fields);
            return None;
        }
        let hash = NameSequence::hash_of(fields.as_slice());
        let at = (hash >> (64 - ALIAS_SHAPES.trailing_zeros())) as usize;
        let Some(shape) = shapes.shapes.get_mut(at) else {
            self.apply(fields);
            return None;
        };
        if shape.names.matches(hash, fields.as_slice()) {
            self.replay(shape, fields);
            return Some(AliasShapeAt {
                at,
                after: fields.len(),
            });
        }
        if shapes.sightings.again(hash) && shape.names.remember(hash, fields.as_slice()) {
            shape.adds.clear();
            shape.markers.clear();
            shape.index = [None; 2];
            self.apply_recording(fields, Some(shape));
            Some(AliasShapeAt {
                at,
                after: fields.len(),
            })
        } else {
            self.apply(fields);
            None
        }
    }

    /// Does for `fields` what the pass did for the event `shape` was
    /// recorded from, which had the same names.
    fn replay<'a>(&'a self, shape: &AliasShape, fields: &mut Fields<'a>) {
        for &(field, entry) in &shape.adds {
            let value = fields.as_slice()[usize::from(field)].1;
            if let Some(common) = &self.map.entries[entry as usize].common {
                fields.push(common.as_str(), value);
            }
        }
        let mut seen = 0u64;
        for &(field, entry) in &shape.markers {
            let value = fields.as_slice()[usize::from(field)].1;
            for &(bit, want) in &self.map.entries[entry as usize].markers {
                if want.admits(value) {
                    seen |= bit;
                }
            }
        }
        if seen != 0 && !shape.has_dataset {
            if let Some(dataset) = self.dataset_of(seen) {
                fields.push("event.dataset", dataset.as_bytes());
            }
        }
    }

    /// The pass of [`Aliases::apply`], writing into `record` (when given)
    /// what it did in a form [`Aliases::replay`] repeats.
    fn apply_recording<'a>(&'a self, fields: &mut Fields<'a>, mut record: Option<&mut AliasShape>) {
        let present = fields.len();
        let mut seen = 0u64;
        // Names the event has, as a 128-bit filter made while the names
        // are read: most common names are not there, which the filter
        // says without reading every field. The common names are added
        // after the pass, in field order, once the filter holds every name.
        // Names the table's sketch does not have are not looked up.
        let mut names = 0u128;
        let mut pending = [(0u16, 0u16); PENDING_MAX];
        let mut pending_len = 0;
        // The first aliased field that did not fit in `pending`: it and
        // the aliased fields after it are looked up again after the pass.
        let mut overflow_from = present;
        for i in 0..present {
            let (name, value) = fields.as_slice()[i];
            let sketch = NameSketch::of(name);
            names |= sketch.filter_bit();
            if !self.map.may_have(sketch) {
                continue;
            }
            let Some(index) = self.map.find(name) else {
                continue;
            };
            let entry = &self.map.entries[index];
            if entry.common.is_some() && overflow_from == present {
                match (u16::try_from(i), u16::try_from(index)) {
                    (Ok(field), Ok(entry)) if pending_len < PENDING_MAX => {
                        pending[pending_len] = (field, entry);
                        pending_len += 1;
                    }
                    _ => overflow_from = i,
                }
            }
            if !entry.markers.is_empty() {
                if let Some(record) = record.as_deref_mut() {
                    // Lossless: a shape has at most FIELDS_MAX fields, and
                    // alias entries are u32 (`NameTable::new`).
                    record.markers.push((i as u16, index as u32));
                }
            }
            for &(bit, want) in &entry.markers {
                if want.admits(value) {
                    seen |= bit;
                }
            }
        }
        for &(field, entry) in &pending[..pending_len] {
            let value = fields.as_slice()[usize::from(field)].1;
            let entry = usize::from(entry);
            if self.add_common(fields, &self.map.entries[entry], value, &mut names) {
                if let Some(record) = record.as_deref_mut() {
                    record.adds.push((field, entry as u32));
                }
            }
        }
        for i in overflow_from..present {
            let (name, value) = fields.as_slice()[i];
            if let Some(index) = self.map.find(name) {
                if self.add_common(fields, &self.map.entries[index], value, &mut names) {
                    if let Some(record) = record.as_deref_mut() {
                        // Lossless, as above.
                        record.adds.push((i as u16, index as u32));
                    }
                }
            }
        }
        if let Some(record) = record {
            record.has_dataset = fields.get("event.dataset").is_some();
        }
        if seen == 0 {
            return;
        }
        if let Some(dataset) = self.dataset_of(seen) {
            if fields.get("event.dataset").is_none() {
                fields.push("event.dataset", dataset.as_bytes());
            }
        }
    }

    /// The first format whose markers are all in `seen`.
    fn dataset_of(&self, seen: u64) -> Option<&'static str> {
        self.datasets
            .iter()
            .find(|(_, mask)| seen & mask == *mask)
            .map(|&(dataset, _)| dataset)
    }

    /// Adds `entry`'s common name with `value` unless the event has a
    /// field of that name already; whether it did.
    #[inline]
    fn add_common<'a>(
        &'a self,
        fields: &mut Fields<'a>,
        entry: &'a Entry,
        value: &'a [u8],
        names: &mut u128,
    ) -> bool {
        let Some(common) = &entry.common else {
            return false;
        };
        if *names & entry.common_bit == 0 || fields.get(common).is_none() {
            fields.push(common.as_str(), value);
            *names |= entry.common_bit;
            return true;
        }
        false
    }
}

/// Alias shapes remembered per core (direct-mapped by hash).
const ALIAS_SHAPES: usize = 256;

/// What the alias pass did for one sequence of field names: it depends
/// only on the names (which are aliased, which common names are already
/// there) and the table, except whether the dataset markers' values admit
/// them, which is checked again per event.
#[derive(Default)]
struct AliasShape {
    names: NameSequence,
    /// Common names added, in order: (field whose value, entry).
    adds: Vec<(u16, u32)>,
    /// Fields with dataset markers: (field, entry).
    markers: Vec<(u16, u32)>,
    /// Whether the event had `event.dataset` after the common names.
    has_dataset: bool,
    /// The rules' shape of the names after the pass (the original names,
    /// then the common names of `adds`), then of those names and
    /// `event.dataset` (the pass added it), once known.
    index: [Option<ShapeKey>; 2],
}

/// An event's alias shape: its place in [`AliasShapes`], and how many
/// fields the event had right after the pass.
#[derive(Clone, Copy, Debug)]
pub struct AliasShapeAt {
    at: usize,
    after: usize,
}

/// Per core: the alias pass for recent sequences of field names
/// ([`Aliases::apply_with_shapes`]). Events of one source repeat their
/// names in the same order, so most are aliased without a lookup.
pub struct AliasShapes {
    shapes: Vec<AliasShape>,
    /// Which sequences of names are seen often enough to be remembered.
    sightings: SecondSighting,
}

impl AliasShapes {
    /// Where the rules' shape of an event of alias shape `at` is kept,
    /// when the event has `fields` fields now: only if nothing was added
    /// since the pass, so that its names are the shape's and the common
    /// names of its `adds`, then `event.dataset` if the pass added it.
    fn index_slot(&self, at: AliasShapeAt, fields: usize) -> Option<(usize, usize)> {
        let shape = self.shapes.get(at.at)?;
        if fields != at.after {
            return None;
        }
        // The fields the pass leaves when it adds no `event.dataset`.
        let without_dataset = shape.names.len() + shape.adds.len();
        let dataset = at.after.checked_sub(without_dataset)?;
        (dataset < 2).then_some((at.at, dataset))
    }

    /// The rules' shape for an event of alias shape `at` with `fields`
    /// fields now (see `AliasShapes::index_slot`), once known.
    pub fn index_key(&self, at: AliasShapeAt, fields: usize) -> Option<ShapeKey> {
        let (at, dataset) = self.index_slot(at, fields)?;
        self.shapes[at].index[dataset]
    }

    /// Remembers `key` as the rules' shape for events of alias shape `at`
    /// with `fields` fields (nothing remembered for a count
    /// [`AliasShapes::index_key`] would not answer).
    pub fn set_index_key(&mut self, at: AliasShapeAt, fields: usize, key: Option<ShapeKey>) {
        if let Some((at, dataset)) = self.index_slot(at, fields) {
            self.shapes[at].index[dataset] = key;
        }
    }
}

impl Default for AliasShapes {
    fn default() -> Self {
        AliasShapes {
            shapes: (0..ALIAS_SHAPES).map(|_| AliasShape::default()).collect(),
            sightings: SecondSighting::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names a payload could give a field under follow the alias
    /// table; a name some decoder or the engine makes up (a free-text
    /// extraction's `user.name`, a CEF header's, another header part,
    /// `event.dataset`) leaves the field unsearchable.
    #[test]
    fn payload_naming_follows_the_alias_table() {
        let with = |pairs: &[(&str, &str)]| {
            let overrides: BTreeMap<String, String> = pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            payload_naming(true, &overrides)
        };
        let needles = |list: &[&str]| {
            Some(
                list.iter()
                    .map(|n| n.as_bytes().to_vec())
                    .collect::<Vec<_>>(),
            )
        };
        let plain = with(&[]);
        // The header part asked about is the one the header lacks.
        assert_eq!(
            plain.needles("process.name", Some(1)),
            needles(&["process", "sproc"])
        );
        assert_eq!(plain.needles("process.name", None), None);
        assert_eq!(
            plain.needles("host.name", Some(0)),
            needles(&["computer", "computername", "hostname", "name"])
        );
        assert_eq!(
            plain.needles("process.pid", Some(2)),
            needles(&["pid", "process", "processid"])
        );
        assert_eq!(
            with(&[("sproc", "")]).needles("process.name", Some(1)),
            needles(&["process"])
        );
        // Through another alias.
        assert_eq!(
            with(&[("prog", "sproc")]).needles("process.name", Some(1)),
            needles(&["process", "prog", "sproc"])
        );
        assert_eq!(
            payload_naming(false, &BTreeMap::new()).needles("process.name", Some(1)),
            needles(&["process"])
        );
        // Netfilter's keys are read from the line, and not aliased onto.
        assert_eq!(plain.needles("DPT", None), needles(&["dpt"]));
        // A free-text extraction gives `user.name` from any sshd line.
        assert_eq!(plain.needles("User", None), None);
        for made_up in [
            "user.name",
            "cef.device_product",
            "host.name",
            "event.dataset",
            "leef.vendor",
        ] {
            let naming = with(&[(made_up, "process.name")]);
            assert_eq!(naming.needles("process.name", Some(1)), None, "{made_up}");
            assert_eq!(
                naming.needles("log.syslog.msgid", Some(3)),
                needles(&["syslog"])
            );
        }
    }

    #[test]
    fn name_table_finds_every_name_and_nothing_else() {
        let long = "a.field.name.longer.than.thirty-two.bytes";
        assert!(long.len() > NameKey::BYTES_MAX);
        let mut overrides: BTreeMap<String, String> = BTreeMap::new();
        overrides.insert(long.into(), "x.long".into());
        overrides.insert("y".into(), "x.short".into());
        let aliases = Aliases::new(true, &overrides);
        let mut names: Vec<String> = BUILTIN_ALIASES.iter().map(|(f, _)| f.to_string()).collect();
        names.extend(
            BUILTIN_DATASETS
                .iter()
                .flat_map(|(_, m)| m.iter().map(|(f, _)| f.to_string())),
        );
        names.push(long.into());
        names.push("y".into());
        for name in &names {
            assert!(aliases.map.get(name).is_some(), "{name}");
            // The sketch that lets the pass skip a name never skips one
            // the table has.
            assert!(aliases.map.may_have(NameSketch::of(name)), "{name}");
            // Near misses: one byte changed at each end, one longer, one
            // shorter.
            let mut changed = name.clone().into_bytes();
            for at in [0, changed.len() - 1] {
                let was = changed[at];
                changed[at] = b'~';
                let text = String::from_utf8(changed.clone()).unwrap();
                assert_eq!(aliases.map.get(&text).is_some(), names.contains(&text));
                changed[at] = was;
            }
            let longer = format!("{name}z");
            assert_eq!(aliases.map.get(&longer).is_some(), names.contains(&longer));
            let shorter = &name[..name.len() - 1];
            assert_eq!(
                aliases.map.get(shorter).is_some(),
                names.iter().any(|n| n == shorter)
            );
        }
        assert_eq!(
            aliases.map.get(long).and_then(|e| e.common.as_deref()),
            Some("x.long")
        );
        assert_eq!(
            aliases.map.get("src").and_then(|e| e.common.as_deref()),
            Some("source.ip")
        );
        assert!(aliases.map.get("").is_none());
    }

    #[test]
    fn audit_formats_get_their_dataset() {
        let aliases = Aliases::new(true, &Default::default());
        let dataset = |pairs: &[(&'static str, &'static [u8])]| {
            let mut fields = Fields::new();
            for (name, value) in pairs {
                fields.push(name, value);
            }
            aliases.apply(&mut fields);
            fields
                .get("event.dataset")
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let trail: &[(&str, &[u8])] = &[
            ("eventVersion", b"1.08"),
            ("eventSource", b"cloudtrail.AMAZONAWS.com"),
            ("eventName", b"StopLogging"),
        ];
        assert_eq!(dataset(trail).as_deref(), Some("aws.cloudtrail"));
        // Not CloudTrail without its markers, or with another endpoint.
        assert_eq!(dataset(&trail[1..]), None);
        assert_eq!(
            dataset(&[("eventVersion", b"1"), ("eventSource", b"example.com")]),
            None
        );
        assert_eq!(
            dataset(&[
                ("actor.alternateId", b"alice@example.com"),
                ("eventType", b"user.session.start"),
                ("published", b"2026-12-03T10:00:00Z"),
            ])
            .as_deref(),
            Some("okta.system")
        );
        assert_eq!(
            dataset(&[
                ("action", b"org.update_member"),
                ("actor", b"octocat"),
                ("_document_id", b"x1"),
            ])
            .as_deref(),
            Some("github.audit")
        );
        assert_eq!(
            dataset(&[
                ("auditType.category", b"Permissions"),
                ("auditType.action", b"Global permission changed"),
            ])
            .as_deref(),
            Some("bitbucket.audit")
        );
        let activity: &[(&str, &[u8])] = &[
            ("time", b"2026-12-03T10:00:00Z"),
            ("resourceId", b"/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG"),
            ("operationName", b"MICROSOFT.NETWORK/AZUREFIREWALLS/DELETE"),
            ("category", b"administrative"),
            ("correlationId", b"c1"),
        ];
        assert_eq!(dataset(activity).as_deref(), Some("azure.activitylogs"));
        // Entra audit logs share the envelope but not the category.
        let mut audit = activity.to_vec();
        audit[3] = ("category", b"AuditLogs");
        assert_eq!(dataset(&audit), None);
        assert_eq!(
            dataset(&[
                ("dst_host", b"10.0.0.5"),
                ("dst_port", b"21"),
                ("local_time", b"2026-12-03 10:00:00.000000"),
                ("logtype", b"2000"),
                ("node_id", b"canary-1"),
            ])
            .as_deref(),
            Some("opencanary")
        );
        assert_eq!(
            dataset(&[
                ("kind", b"Event"),
                ("apiVersion", b"audit.k8s.io/v1"),
                ("auditID", b"6f1c"),
                ("verb", b"delete"),
                ("objectRef.resource", b"events"),
            ])
            .as_deref(),
            Some("kubernetes.audit_logs")
        );
        let zeek = |extra: &'static [(&'static str, &'static [u8])]| {
            let mut pairs: Vec<(&'static str, &'static [u8])> = vec![
                ("ts", b"1796292000.1"),
                ("uid", b"CHhAvVGS1DHFjwGM9"),
                ("id.orig_h", b"10.0.0.5"),
                ("id.resp_h", b"10.0.0.1"),
            ];
            pairs.extend_from_slice(extra);
            dataset(&pairs)
        };
        assert_eq!(
            zeek(&[("trans_id", b"4242"), ("query", b"example.com")]).as_deref(),
            Some("zeek.dns")
        );
        assert_eq!(
            zeek(&[("trans_depth", b"1"), ("method", b"GET")]).as_deref(),
            Some("zeek.http")
        );
        assert_eq!(
            zeek(&[("action", b"SMB::FILE_OPEN"), ("name", b"x.exe")]).as_deref(),
            Some("zeek.smb_files")
        );
        assert_eq!(
            zeek(&[("endpoint", b"drsuapi"), ("operation", b"DRSReplicaAdd")]).as_deref(),
            Some("zeek.dce_rpc")
        );
        assert_eq!(
            zeek(&[("request_type", b"TGS"), ("service", b"krbtgt/CORP")]).as_deref(),
            Some("zeek.kerberos")
        );
        // A firewall's `action` is not an SMB file action.
        assert_eq!(zeek(&[("action", b"deny")]), None);
        // A sender's own dataset wins.
        let mut fields = Fields::new();
        for (name, value) in trail {
            fields.push(name, value);
        }
        fields.push("event.dataset", b"mine");
        aliases.apply(&mut fields);
        assert_eq!(fields.get("event.dataset"), Some(&b"mine"[..]));
        // Without the built-in table, no datasets either.
        let none = Aliases::new(false, &Default::default());
        let mut fields = Fields::new();
        for (name, value) in trail {
            fields.push(name, value);
        }
        none.apply(&mut fields);
        assert_eq!(fields.get("event.dataset"), None);
    }

    #[test]
    fn common_names_are_added_beside_the_originals() {
        let aliases = Aliases::new(true, &Default::default());
        let mut fields = Fields::new();
        fields.push("src", b"10.0.0.1");
        fields.push("suser", b"alice");
        fields.push("source.ip", b"already");
        fields.push("SRC", b"10.0.0.2");
        aliases.apply(&mut fields);
        assert_eq!(
            fields.get("source.ip"),
            Some(&b"already"[..]),
            "an existing common name wins"
        );
        assert_eq!(fields.get("user.name"), Some(&b"alice"[..]));
        assert_eq!(
            fields.get("src"),
            Some(&b"10.0.0.1"[..]),
            "the original stays"
        );
        assert_eq!(fields.len(), 5);
        // Two vendor names for one common name: the first gives it, once.
        let mut fields = Fields::new();
        fields.push("src", b"10.0.0.1");
        fields.push("SRC", b"10.0.0.2");
        fields.push("sourceIPAddress", b"10.0.0.3");
        aliases.apply(&mut fields);
        assert_eq!(fields.get("source.ip"), Some(&b"10.0.0.1"[..]));
        assert_eq!(
            fields
                .as_slice()
                .iter()
                .filter(|(n, _)| *n == "source.ip")
                .count(),
            1
        );
    }

    #[test]
    fn many_aliased_fields_keep_field_order_and_first_wins() {
        // More aliased fields than the fast path holds: the rest are
        // handled after the pass, with the same results.
        let n = PENDING_MAX + 8;
        let mut overrides = BTreeMap::new();
        for i in 0..n {
            overrides.insert(format!("v{i}"), format!("c{i}"));
        }
        overrides.insert("w5".to_string(), "c5".to_string());
        overrides.insert(format!("w{}", n - 3), format!("c{}", n - 3));
        let aliases = Aliases::new(false, &overrides);
        let names: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
        let values: Vec<String> = (0..n).map(|i| format!("x{i}")).collect();
        let late_dup = format!("w{}", n - 3);
        let present = format!("c{}", n - 10);
        let mut fields = Fields::new();
        for (name, value) in names.iter().zip(&values) {
            fields.push(name, value.as_bytes());
        }
        fields.push("w5", b"dup");
        fields.push(&late_dup, b"late");
        fields.push(&present, b"given");
        aliases.apply(&mut fields);
        assert_eq!(fields.overflow, 0);
        for i in 0..n {
            let want = if i == n - 10 {
                "given".to_string()
            } else {
                format!("x{i}")
            };
            let common = format!("c{i}");
            let got: Vec<&[u8]> = fields
                .as_slice()
                .iter()
                .filter(|(name, _)| *name == common)
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(got, vec![want.as_bytes()], "{common}");
        }
        // Commons are added in the order of the fields that gave them.
        let added: Vec<&str> = fields.as_slice()[n + 3..]
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let expected: Vec<String> = (0..n)
            .filter(|&i| i != n - 10)
            .map(|i| format!("c{i}"))
            .collect();
        assert_eq!(added, expected);
    }

    /// A reproducible pick below `n` (xorshift from `seed`).
    fn picker(seed: u64) -> impl FnMut(usize) -> usize {
        let mut state = seed;
        move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        }
    }

    #[test]
    fn remembered_shapes_give_what_the_pass_gives() {
        // A few shapes (so that they repeat), each with random values:
        // dataset markers whose values admit them or not, aliased names
        // whose common name is there or not, a full field list, and an
        // event too long to remember.
        let aliases = Aliases::new(true, &BTreeMap::new());
        let pool = [
            "src",
            "dst",
            "SRC",
            "source.ip",
            "eventVersion",
            "eventSource",
            "msg",
            "suser",
            "user.name",
            "act",
            "event.dataset",
            "x",
        ];
        let values: [&[u8]; 6] = [
            b"1.2.3.4",
            b"s3.amazonaws.com",
            b"other",
            b"",
            b"bob",
            b"iam.amazonaws.com",
        ];
        let mut next = picker(0x2545_F491_4F6C_DD1D);
        let mut shapes_of: Vec<Vec<&str>> = (0..12)
            .map(|_| (0..next(9)).map(|_| pool[next(pool.len())]).collect())
            .collect();
        shapes_of.push(vec!["src"; shardwatch_net::fields::FIELDS_MAX]);
        shapes_of.push(vec!["dst"; NameSequence::FIELDS_MAX + 1]);
        shapes_of.push(vec!["eventVersion", "eventSource"]);
        shapes_of.push(vec!["eventVersion", "event.dataset", "eventSource", "src"]);
        let mut shapes = AliasShapes::default();
        let mut datasets = 0;
        for _ in 0..4_000 {
            let names = &shapes_of[next(shapes_of.len())];
            let mut plain = Fields::new();
            for name in names {
                plain.push(name, values[next(values.len())]);
            }
            let mut remembered = plain;
            aliases.apply(&mut plain);
            aliases.apply_with_shapes(&mut remembered, &mut shapes);
            assert_eq!(remembered.as_slice(), plain.as_slice(), "{names:?}");
            assert_eq!(remembered.overflow, plain.overflow);
            datasets += usize::from(plain.get("event.dataset") == Some(b"aws.cloudtrail"));
        }
        assert!(datasets > 0, "no event was recognised as CloudTrail");
    }

    #[test]
    fn random_events_get_what_the_plain_definition_gives() {
        // The definition: for each original field in order, its common
        // name is added unless a field of that name is present by then.
        let mut overrides = BTreeMap::new();
        overrides.insert("clientip".to_string(), "source.ip".to_string());
        overrides.insert("dst".to_string(), String::new());
        let long = "a.vendor.name.well.past.thirty.two.bytes".to_string();
        overrides.insert(long.clone(), "destination.ip".to_string());
        let aliases = Aliases::new(true, &overrides);
        let mut table: BTreeMap<&str, Option<&str>> = BUILTIN_ALIASES
            .iter()
            .map(|&(from, to)| (from, Some(to)))
            .collect();
        for (from, to) in &overrides {
            table.insert(from, (!to.is_empty()).then_some(to.as_str()));
        }
        let mut pool: Vec<String> = table.keys().map(|k| k.to_string()).collect();
        pool.extend(BUILTIN_ALIASES.iter().map(|(_, to)| to.to_string()));
        pool.extend(["msg", "host.name", "x", "", "source.ipx", "SRCX"].map(String::from));
        let mut next = picker(0x9E37_79B9_7F4A_7C15);
        let values: Vec<String> = (0..64).map(|i| format!("v{i}")).collect();
        for _ in 0..3_000 {
            let count = next(70);
            let picked: Vec<(&str, &[u8])> = (0..count)
                .map(|_| (pool[next(pool.len())].as_str(), values[next(64)].as_bytes()))
                .collect();
            let mut want: Vec<(&str, &[u8])> = picked.clone();
            for &(name, value) in &picked {
                if let Some(Some(common)) = table.get(name) {
                    if want.len() < shardwatch_net::fields::FIELDS_MAX
                        && !want.iter().any(|(n, _)| n == common)
                    {
                        want.push((common, value));
                    }
                }
            }
            let mut fields = Fields::new();
            for &(name, value) in &picked {
                fields.push(name, value);
            }
            aliases.apply(&mut fields);
            let got: Vec<(&str, &[u8])> = fields
                .as_slice()
                .iter()
                .copied()
                .filter(|(name, _)| *name != "event.dataset")
                .collect();
            assert_eq!(got, want, "{picked:?}");
        }
    }

    #[test]
    fn config_extends_and_removes() {
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert("clientip".to_string(), "source.ip".to_string());
        overrides.insert("src".to_string(), String::new());
        let aliases = Aliases::new(true, &overrides);
        let mut fields = Fields::new();
        fields.push("clientip", b"1.1.1.1");
        fields.push("src", b"2.2.2.2");
        aliases.apply(&mut fields);
        assert_eq!(fields.get("source.ip"), Some(&b"1.1.1.1"[..]));
        assert_eq!(fields.len(), 3, "src is no longer aliased");
    }
}
