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
//! (`FieldName::new`); evaluation scans the event's fields, which are few
//! (the engine caps them), without allocating.

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
fn aliases_of(name: &str) -> &'static [&'static str] {
    ALIAS_GROUPS
        .iter()
        .copied()
        .find(|group| group.contains(&name))
        .unwrap_or(&[])
}

/// A field name compiled for resolution. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldName {
    name: Box<str>,
    /// The whole alias group (it contains `name` itself, which the exact
    /// step has already tried; trying it again costs one comparison).
    aliases: &'static [&'static str],
}

impl FieldName {
    /// Compiles `name`, looking up its alias group once.
    pub(crate) fn new(name: &str) -> Self {
        FieldName {
            name: name.into(),
            aliases: aliases_of(name),
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

    /// The value this name resolves to in `event`.
    pub(crate) fn resolve<'a>(&self, event: &Event<'a>) -> Option<&'a [u8]> {
        resolve_with(event, &self.name, self.aliases)
    }
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
        if *alias != name {
            if let Some(value) = event.get(alias) {
                return Some(value);
            }
        }
    }
    let is_leaf_of = |field: &str, leaf: &str| {
        field.len() > leaf.len()
            && field.ends_with(leaf)
            && field.as_bytes()[field.len() - leaf.len() - 1] == b'.'
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
