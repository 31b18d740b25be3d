//! Field aliases: vendor field names mapped onto common (ECS-style) names,
//! so one rule on `source.ip` covers CEF `src`, CloudTrail
//! `sourceIPAddress`, Windows `IpAddress`, netfilter `SRC` and so on.
//!
//! Rules see both names: the common name is added beside the original, and
//! only when the event does not already carry it. The built-in table can be
//! extended or overridden in the config (`[normalize] aliases`).
//! Free-text extraction already emits common names, so only events whose
//! payload a structured decoder (JSON, CEF, LEEF, key=value, CSV) produced
//! pay for the lookups.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use shardwatch_net::fields::Fields;

/// A small multiply-mix hasher for short field names: the alias lookup runs
/// for every field of every structured event, where SipHash or a streaming
/// xxh3 cost more than the rest of the lookup. The table is built from
/// config and code, not from input, so flooding is not a concern.
#[derive(Clone, Copy, Default)]
pub struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`NameHasher`]s.
#[derive(Clone, Copy, Default)]
pub struct NameHasherBuilder;

impl BuildHasher for NameHasherBuilder {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher::default()
    }
}

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

/// The alias table in force.
pub struct Aliases {
    map: HashMap<String, String, NameHasherBuilder>,
}

impl Aliases {
    /// The built-in table (if `builtin`), then `overrides` on top.
    pub fn new(builtin: bool, overrides: &std::collections::BTreeMap<String, String>) -> Aliases {
        let mut map = HashMap::with_hasher(NameHasherBuilder);
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
        Aliases { map }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds the common name of every aliased field to `fields`, unless the
    /// event already has a field of that name.
    pub fn apply<'a>(&'a self, fields: &mut Fields<'a>) {
        let present = fields.len();
        for i in 0..present {
            let (name, value) = fields.as_slice()[i];
            if let Some(common) = self.map.get(name) {
                if fields.get(common).is_none() {
                    fields.push(common.as_str(), value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
