//! Declarative CSV layouts: positional column names for comma-separated
//! messages (pfSense `filterlog`, PAN-OS TRAFFIC and THREAT logs).
//!
//! # What this module owns
//!
//! A static list of [`CsvLayout`]s ([`LAYOUTS`]) and the reader that applies
//! the first one that fits. A layout applies when its app list contains the
//! app key (empty: any app), its guard column holds the guard value, and
//! the message has at least `columns_min` columns. Columns are then named
//! by [`Segment`]s in order: a segment with a `when` condition applies only
//! if a field this layout already produced has one of the listed values
//! (pfSense's IPv4 and IPv6 parts differ, and so do its TCP and UDP tails),
//! and consumes columns only when it applies. Empty columns and columns
//! named `""` (the vendors' FUTURE_USE) give no field. A quoted column
//! (`"a,b"`, with `""` for a quote) is unquoted into the arena.
//!
//! Names are the vendor's own: pfSense's log parser (`filter_log.inc`) for
//! filterlog, the PAN-OS syslog field reference for Palo Alto. It must not
//! allocate or interpret values.

use crate::decode::Arena;
use crate::fields::Fields;

/// Names for a run of columns, applied when `when` holds.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// A field produced earlier by this layout and the values it may have.
    pub when: Option<(&'static str, &'static [&'static str])>,
    pub columns: &'static [&'static str],
}

/// One CSV message shape; see the module docs.
#[derive(Clone, Copy, Debug)]
pub struct CsvLayout {
    /// Stable name, reported as the line's rule.
    pub name: &'static str,
    pub apps: &'static [&'static str],
    /// A column index and the value it must hold.
    pub guard: Option<(usize, &'static str)>,
    pub columns_min: usize,
    pub segments: &'static [Segment],
}

/// Most columns read from one message.
pub const CSV_COLUMNS_MAX: usize = 128;

const PFSENSE_PREFIX: &[&str] = &[
    "rulenum",
    "subrulenum",
    "anchor",
    "tracker",
    "realint",
    "reason",
    "act",
    "direction",
    "version",
];
const PFSENSE_IPV4: &[&str] = &[
    "tos", "ecn", "ttl", "id", "offset", "flags", "protoid", "proto", "length", "srcip", "dstip",
];
const PFSENSE_IPV6: &[&str] = &[
    "class",
    "flowlabel",
    "hlim",
    "proto",
    "protoid",
    "length",
    "srcip",
    "dstip",
];
const PFSENSE_TCP: &[&str] = &[
    "srcport", "dstport", "datalen", "tcpflags", "seq", "ack", "window", "urg", "options",
];
const PFSENSE_UDP: &[&str] = &["srcport", "dstport", "datalen"];

/// The first 31 columns, common to PAN-OS TRAFFIC and THREAT logs.
const PANOS_COMMON: &[&str] = &[
    "",
    "receive_time",
    "serial",
    "type",
    "subtype",
    "",
    "time_generated",
    "src",
    "dst",
    "natsrc",
    "natdst",
    "rule",
    "srcuser",
    "dstuser",
    "app",
    "vsys",
    "from",
    "to",
    "inbound_if",
    "outbound_if",
    "logset",
    "",
    "sessionid",
    "repeatcnt",
    "sport",
    "dport",
    "natsport",
    "natdport",
    "flags",
    "proto",
    "action",
];
const PANOS_TRAFFIC_TAIL: &[&str] = &[
    "bytes",
    "bytes_sent",
    "bytes_received",
    "packets",
    "start",
    "elapsed",
    "category",
    "",
    "seqno",
    "actionflags",
    "srcloc",
    "dstloc",
    "",
    "pkts_sent",
    "pkts_received",
    "session_end_reason",
];
const PANOS_THREAT_TAIL: &[&str] = &[
    "misc",
    "threatid",
    "category",
    "severity",
    "direction",
    "seqno",
    "actionflags",
    "srcloc",
    "dstloc",
];

/// Every column name of every layout (the names [`extract`] can give;
/// none of them is read from the line).
pub fn field_names() -> impl Iterator<Item = &'static str> {
    LAYOUTS
        .iter()
        .flat_map(|layout| layout.segments)
        .flat_map(|segment| segment.columns.iter().copied())
}

/// The layouts, tried in order.
pub static LAYOUTS: &[CsvLayout] = &[
    CsvLayout {
        name: "pfsense_filterlog",
        apps: &["filterlog"],
        guard: None,
        columns_min: PFSENSE_PREFIX.len(),
        segments: &[
            Segment {
                when: None,
                columns: PFSENSE_PREFIX,
            },
            Segment {
                when: Some(("version", &["4"])),
                columns: PFSENSE_IPV4,
            },
            Segment {
                when: Some(("version", &["6"])),
                columns: PFSENSE_IPV6,
            },
            Segment {
                when: Some(("proto", &["tcp"])),
                columns: PFSENSE_TCP,
            },
            Segment {
                when: Some(("proto", &["udp"])),
                columns: PFSENSE_UDP,
            },
        ],
    },
    CsvLayout {
        name: "panos_traffic",
        apps: &[],
        guard: Some((3, "TRAFFIC")),
        columns_min: PANOS_COMMON.len(),
        segments: &[
            Segment {
                when: None,
                columns: PANOS_COMMON,
            },
            Segment {
                when: None,
                columns: PANOS_TRAFFIC_TAIL,
            },
        ],
    },
    CsvLayout {
        name: "panos_threat",
        apps: &[],
        guard: Some((3, "THREAT")),
        columns_min: PANOS_COMMON.len(),
        segments: &[
            Segment {
                when: None,
                columns: PANOS_COMMON,
            },
            Segment {
                when: None,
                columns: PANOS_THREAT_TAIL,
            },
        ],
    },
];

/// Applies the first layout of [`LAYOUTS`] that fits; returns its name, or
/// `None` with nothing pushed.
pub fn extract<'a>(
    app: &[u8],
    text: &'a [u8],
    arena: &mut Arena<'a>,
    fields: &mut Fields<'a>,
) -> Option<&'static str> {
    extract_with(LAYOUTS, app, text, arena, fields)
}

/// [`extract`] over a given list (for tests).
pub fn extract_with<'a>(
    layouts: &[CsvLayout],
    app: &[u8],
    text: &'a [u8],
    arena: &mut Arena<'a>,
    fields: &mut Fields<'a>,
) -> Option<&'static str> {
    // Cheap refusal before splitting: no comma, no CSV.
    memchr::memchr(b',', text)?;
    // Columns are read lazily, pass by pass (guard, count, names), rather
    // than into a list that would cost more to set up than to re-split.
    let layout = layouts.iter().find(|layout| {
        (layout.apps.is_empty() || layout.apps.iter().any(|a| a.as_bytes() == app))
            && layout.guard.is_none_or(|(i, want)| {
                Columns::new(text)
                    .nth(i)
                    .is_some_and(|(v, _)| v == want.as_bytes())
            })
            && Columns::new(text).take(layout.columns_min).count() == layout.columns_min
    })?;
    let start = fields.len();
    let mut columns = Columns::new(text);
    for segment in layout.segments {
        if let Some((field, values)) = segment.when {
            let have = fields.as_slice()[start..]
                .iter()
                .find(|(n, _)| *n == field)
                .map(|(_, v)| *v);
            if !have.is_some_and(|v| values.iter().any(|w| w.as_bytes() == v)) {
                continue;
            }
        }
        for name in segment.columns {
            let Some((raw, quoted)) = columns.next() else {
                return Some(layout.name);
            };
            if name.is_empty() || raw.is_empty() {
                continue;
            }
            let value = if quoted {
                unquote(raw, arena).unwrap_or(raw)
            } else {
                raw
            };
            fields.push(name, value);
        }
    }
    Some(layout.name)
}

/// The columns of a CSV line, at most [`CSV_COLUMNS_MAX`]. A column
/// starting with `"` runs to the closing `"` (a doubled `""` does not close
/// it) and is reported as quoted, without its outer quotes; anything
/// between the closing quote and the next comma is dropped.
struct Columns<'a> {
    text: &'a [u8],
    at: usize,
    count: usize,
    done: bool,
}

impl<'a> Columns<'a> {
    fn new(text: &'a [u8]) -> Self {
        Columns {
            text,
            at: 0,
            count: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for Columns<'a> {
    type Item = (&'a [u8], bool);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.count == CSV_COLUMNS_MAX {
            return None;
        }
        self.count += 1;
        let text = self.text;
        let at = self.at.min(text.len());
        let (item, end) = if text.get(at) == Some(&b'"') {
            let mut end = at + 1;
            loop {
                match memchr::memchr(b'"', &text[end.min(text.len())..]) {
                    Some(i) if text.get(end + i + 1) == Some(&b'"') => end += i + 2,
                    Some(i) => {
                        end += i;
                        break;
                    }
                    None => {
                        end = text.len();
                        break;
                    }
                }
            }
            let end = end.min(text.len());
            ((&text[at + 1..end.max(at + 1)], true), end)
        } else {
            let len = memchr::memchr(b',', &text[at..]).unwrap_or(text.len() - at);
            ((&text[at..at + len], false), at + len)
        };
        match memchr::memchr(b',', &text[end..]) {
            Some(i) => self.at = end + i + 1,
            None => self.done = true,
        }
        Some(item)
    }
}

/// Turns `""` back into `"`.
fn unquote<'a>(raw: &'a [u8], arena: &mut Arena<'a>) -> Option<&'a [u8]> {
    if memchr::memchr(b'"', raw).is_none() {
        return Some(raw);
    }
    arena.fill(raw.len(), |buf| {
        // Unquoting never lengthens: `""` gives one byte.
        debug_assert_eq!(buf.len(), raw.len());
        let mut out = 0;
        let mut i = 0;
        while i < raw.len() {
            buf[out] = raw[i];
            out += 1;
            i += if raw[i] == b'"' && raw.get(i + 1) == Some(&b'"') {
                2
            } else {
                1
            };
        }
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(app: &str, text: &str) -> (Option<&'static str>, Vec<(String, String)>) {
        let mut buffer = [0u8; 4096];
        let mut arena = Arena::over(&mut buffer);
        let mut fields = Fields::new();
        let layout = extract(app.as_bytes(), text.as_bytes(), &mut arena, &mut fields);
        let list = fields
            .as_slice()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        (layout, list)
    }

    fn get<'v>(f: &'v [(String, String)], name: &str) -> Option<&'v str> {
        f.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn filterlog_ipv4_tcp_and_ipv6_udp() {
        let (l, f) = run("filterlog", "5,,,1000000103,em0,match,block,in,4,0x0,,64,12345,0,none,6,tcp,60,203.0.113.5,192.0.2.10,51234,22,0,S,1234567890,,64240,,mss");
        assert_eq!(l, Some("pfsense_filterlog"));
        assert_eq!(get(&f, "act"), Some("block"));
        assert_eq!(get(&f, "srcip"), Some("203.0.113.5"));
        assert_eq!(get(&f, "dstport"), Some("22"));
        assert_eq!(get(&f, "tcpflags"), Some("S"));
        let (_, f) = run("filterlog", "9,,,1000000105,igb1,match,pass,out,6,0x00,0x00000,255,udp,17,56,2001:db8::1,2001:db8::2,546,547,56");
        assert_eq!(get(&f, "srcip"), Some("2001:db8::1"));
        assert_eq!(get(&f, "dstport"), Some("547"));
        assert_eq!(get(&f, "tcpflags"), None);
        assert_eq!(run("other", "5,,,1,em0,match,block,in,4").0, None);
        assert_eq!(run("filterlog", "5,,,1").0, None);
    }

    #[test]
    fn quoted_columns() {
        let columns: Vec<_> = Columns::new(br#"a,"b,""c""",,"d"#).collect();
        assert_eq!(columns.len(), 4);
        assert_eq!(columns[1], (&br#"b,""c"""#[..], true));
        assert_eq!(columns[2], (&b""[..], false));
        assert_eq!(columns[3], (&b"d"[..], true));
        assert_eq!(Columns::new(b"a,").count(), 2);
        assert_eq!(Columns::new(b"").count(), 1);
        assert_eq!(Columns::new(b"\"").count(), 1);
        let mut buffer = [0u8; 64];
        let mut arena = Arena::over(&mut buffer);
        assert_eq!(unquote(columns[1].0, &mut arena), Some(&br#"b,"c""#[..]));
    }
}
