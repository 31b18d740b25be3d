//! Declarative field extraction for free-text syslog messages.
//!
//! # What this module owns
//!
//! A static table of [`Row`]s ([`ROWS`], in `table.rs`) and the small
//! interpreter that matches them against a message: adding a source is adding
//! rows. Positional CSV messages (pfSense filterlog, PAN-OS) have their own
//! declarative list in [`csv`]. The payload dispatcher
//! ([`crate::decode::payload`]) calls both after JSON, CEF and LEEF had
//! their turn and before key=value. It fills a [`Fields`] list with slices of the message and `'static`
//! constants; it must not allocate, use regexes, or know about rules.
//!
//! # Row semantics
//!
//! Rows are tried in table order; the first row whose app list contains the
//! app key (an empty list matches every app; one `*` in an entry matches a
//! run of bytes without `-`, for Cisco mnemonics whose severity an
//! administrator can change) and whose pattern matches wins,
//! so specific rows come before general ones. Leading spaces of the message
//! are ignored (sudo indents its messages).
//!
//! A pattern is literal text with captures in braces, matched from the start
//! of the message; text after the end of the pattern is allowed. The name in
//! braces is the output field (`{user.name}`), or `_` to skip text:
//!
//! * `{name}` followed by literal `L`: the shortest text up to `L`, which must
//!   not contain a space (a token).
//! * `{name*}` followed by `L`: the text up to the *last* `L` in the rest of
//!   the message, spaces allowed. Used where the value is attacker-chosen
//!   (user names in sshd lines), so that `Failed password for x from 1.2.3.4
//!   port 1 from 5.6.7.8 port 22 ssh2` yields the real source address.
//! * `{name}` at the end of the pattern: the next token (up to a space or
//!   the end); `{name*}` at the end: the rest of the message.
//!
//! Captured values are checked by field: `source.ip` must look like an IPv4
//! or IPv6 address, `*.port` must be digits; a failed check fails the row.
//! Empty captures are not emitted. After the pattern, a row can read
//! `key=value` pairs from the rest of the message ([`Kv`]); values failing the
//! check there are skipped rather than failing the row. Constants are added
//! last, unless a capture already set the same field.

pub mod csv;
mod table;

pub use table::ROWS;

use memchr::{memchr, memmem};

use crate::fields::Fields;

/// Most captured and key=value fields one row may produce.
pub const ROW_FIELDS_MAX: usize = 12;

/// How the rest of a message after a row's pattern holds `key=value` pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvStyle {
    /// No key=value pairs are read.
    None,
    /// Pairs separated by spaces (`pam_unix ... rhost=1.2.3.4  user=root`).
    Spaces,
    /// Pairs separated by ` ; ` (`sudo ... PWD=/ ; USER=root ; COMMAND=...`).
    Semicolons,
}

/// One key=value pair to read: the key on the wire, the output field, and
/// whether the value runs to the end of the message (sudo's COMMAND, which
/// may itself contain ` ; `).
#[derive(Clone, Copy, Debug)]
pub struct Kv {
    pub key: &'static [u8],
    pub field: &'static str,
    pub to_end: bool,
}

/// One extraction rule; see the module docs.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Stable name, reported with the event (`ssh_failed_password`).
    pub name: &'static str,
    /// App names (tags, or Cisco mnemonics) this row applies to; empty: all.
    pub apps: &'static [&'static str],
    pub pattern: &'static str,
    pub kv_style: KvStyle,
    pub kv: &'static [Kv],
    pub constants: &'static [(&'static str, &'static str)],
}

/// Matches `message` (of an event whose app key is `app`) against the table
/// and appends the fields of the first matching row to `out`. Returns the
/// row's name, or `None` (and leaves `out` untouched) when no row matches.
pub fn extract<'a>(app: &[u8], message: &'a [u8], out: &mut Fields<'a>) -> Option<&'static str> {
    // Most apps on a busy appliance (kernel, cron, web servers, JSON
    // feeds) have no row of their own: for those only the rows that apply
    // to every app can match, so scan just those (in table order).
    let index = app_index();
    if app_has_rows(index, app) {
        extract_with(ROWS, app, message, out)
    } else {
        extract_with(&index.general, app, message, out)
    }
}

/// The exact and wildcard app entries of [`ROWS`], and its rows that apply
/// to every app.
struct AppIndex {
    exact: std::collections::HashSet<&'static [u8]>,
    wildcards: Vec<&'static [u8]>,
    general: Vec<Row>,
}

fn app_index() -> &'static AppIndex {
    static INDEX: std::sync::OnceLock<AppIndex> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = AppIndex {
            exact: Default::default(),
            wildcards: Vec::new(),
            general: Vec::new(),
        };
        for row in ROWS {
            if row.apps.is_empty() {
                index.general.push(*row);
            }
            for app in row.apps {
                if app.contains('*') {
                    index.wildcards.push(app.as_bytes());
                } else {
                    index.exact.insert(app.as_bytes());
                }
            }
        }
        index
    })
}

/// Whether some row of [`ROWS`] names `app` (exactly or by wildcard).
fn app_has_rows(index: &AppIndex, app: &[u8]) -> bool {
    index.exact.contains(app) || index.wildcards.iter().any(|w| app_matches(w, app))
}

/// [`extract`] over a given table (for tests and for callers with their own
/// rows).
pub fn extract_with<'a>(
    rows: &[Row],
    app: &[u8],
    message: &'a [u8],
    out: &mut Fields<'a>,
) -> Option<&'static str> {
    let start = message
        .iter()
        .position(|&b| b != b' ')
        .unwrap_or(message.len());
    let message = &message[start..];
    // One scratch list for all rows: zeroing it per row costs more than
    // matching most rows.
    let mut found = Found::default();
    for row in rows {
        if !row.apps.is_empty() && !row.apps.iter().any(|a| app_matches(a.as_bytes(), app)) {
            continue;
        }
        found.len = 0;
        let Some(end) = match_pattern(row.pattern.as_bytes(), message, &mut found) else {
            continue;
        };
        debug_assert!(end <= message.len());
        read_kv(row, &message[end..], &mut found);
        for &(name, value) in &found.items[..found.len] {
            out.push(name, value);
        }
        for &(name, value) in row.constants {
            if !found.has(name) {
                out.push(name, value.as_bytes());
            }
        }
        return Some(row.name);
    }
    None
}

/// Whether a row's app entry matches the app key. One `*` in the entry
/// matches any run of bytes without `-` (`ASA-*-302013` matches every
/// severity an administrator may have given message 302013).
fn app_matches(entry: &[u8], app: &[u8]) -> bool {
    // Most entries differ from the app in their first byte; no table entry
    // starts with `*` (checked by tests), so that rejects without a search.
    if entry.first() != app.first() {
        return false;
    }
    let Some(star) = memchr(b'*', entry) else {
        return entry == app;
    };
    let (prefix, suffix) = (&entry[..star], &entry[star + 1..]);
    app.len() >= prefix.len() + suffix.len()
        && app.starts_with(prefix)
        && app.ends_with(suffix)
        && !app[prefix.len()..app.len() - suffix.len()].contains(&b'-')
}

/// Fields found while matching one row, committed only if the row matches.
struct Found<'a> {
    items: [(&'static str, &'a [u8]); ROW_FIELDS_MAX],
    len: usize,
}

impl Default for Found<'_> {
    fn default() -> Self {
        Found {
            items: [("", b""); ROW_FIELDS_MAX],
            len: 0,
        }
    }
}

impl<'a> Found<'a> {
    fn has(&self, name: &str) -> bool {
        self.items[..self.len].iter().any(|(n, _)| *n == name)
    }

    /// Keeps a non-empty value; the table is checked by tests never to
    /// exceed `ROW_FIELDS_MAX`, so a full list drops (debug: asserts).
    fn push(&mut self, name: &'static str, value: &'a [u8]) {
        if value.is_empty() || name == "_" {
            return;
        }
        debug_assert!(self.len < ROW_FIELDS_MAX, "row produces too many fields");
        if self.len < ROW_FIELDS_MAX {
            self.items[self.len] = (name, value);
            self.len += 1;
        }
    }
}

/// One piece of a pattern.
enum Piece<'p> {
    Literal(&'p [u8]),
    Capture { name: &'p str, greedy: bool },
}

/// Splits the pattern at `pos` into its next piece and the offset after it.
fn next_piece(pattern: &[u8], pos: usize) -> Option<(Piece<'_>, usize)> {
    let rest = pattern.get(pos..).filter(|r| !r.is_empty())?;
    if rest[0] != b'{' {
        let len = memchr(b'{', rest).unwrap_or(rest.len());
        return Some((Piece::Literal(&rest[..len]), pos + len));
    }
    // Patterns are 'static table text, checked by tests; a stray `{` reads
    // as a literal rather than panicking.
    let Some(close) = memchr(b'}', rest) else {
        return Some((Piece::Literal(rest), pattern.len()));
    };
    let inner = std::str::from_utf8(&rest[1..close]).unwrap_or("_");
    let (name, greedy) = match inner.strip_suffix('*') {
        Some(name) => (name, true),
        None => (inner, false),
    };
    Some((Piece::Capture { name, greedy }, pos + close + 1))
}

/// Matches `pattern` at the start of `message`; returns the offset after the
/// match.
fn match_pattern<'a>(
    pattern: &'static [u8],
    message: &'a [u8],
    found: &mut Found<'a>,
) -> Option<usize> {
    let mut p = 0;
    let mut m = 0;
    while let Some((piece, next_p)) = next_piece(pattern, p) {
        p = next_p;
        match piece {
            Piece::Literal(lit) => {
                if !message.get(m..)?.starts_with(lit) {
                    return None;
                }
                m += lit.len();
            }
            Piece::Capture { name, greedy } => {
                let rest = message.get(m..)?;
                let value_len = match next_piece(pattern, p) {
                    Some((Piece::Literal(lit), _)) => {
                        if greedy {
                            rfind_literal(rest, lit)?
                        } else {
                            let at = find_literal(rest, lit)?;
                            if memchr(b' ', &rest[..at]).is_some() {
                                return None;
                            }
                            at
                        }
                    }
                    // Two captures in a row cannot be delimited.
                    Some((Piece::Capture { .. }, _)) => return None,
                    None if greedy => rest.len(),
                    None => memchr(b' ', rest).unwrap_or(rest.len()),
                };
                let value = &rest[..value_len];
                if !value_ok(name, value) {
                    return None;
                }
                found.push(name, value);
                m += value_len;
            }
        }
    }
    Some(m)
}

/// Reads the row's key=value pairs from the text after its pattern.
fn read_kv<'a>(row: &Row, mut rest: &'a [u8], found: &mut Found<'a>) {
    let separator: &[u8] = match row.kv_style {
        KvStyle::None => return,
        KvStyle::Spaces => b" ",
        KvStyle::Semicolons => b" ; ",
    };
    while !rest.is_empty() {
        let (pair, after) = match find_literal(rest, separator) {
            Some(i) => (&rest[..i], &rest[i + separator.len()..]),
            None => (rest, &b""[..]),
        };
        let pair_trimmed = trim_spaces(pair);
        if let Some(eq) = memchr(b'=', pair_trimmed) {
            let key = &pair_trimmed[..eq];
            // The first occurrence of a key wins; repeats (attacker-supplied
            // or not) are ignored, which also bounds the fields per row.
            let kv = row.kv.iter().find(|kv| kv.key == key);
            if let Some(kv) = kv.filter(|kv| !found.has(kv.field)) {
                let value = if kv.to_end {
                    // The value runs to the end of the message, separators
                    // included.
                    let offset = pair_trimmed.as_ptr() as usize - rest.as_ptr() as usize;
                    trim_spaces(&rest[offset + eq + 1..])
                } else {
                    &pair_trimmed[eq + 1..]
                };
                if value_ok(kv.field, value) {
                    found.push(kv.field, value);
                }
                if kv.to_end {
                    return;
                }
            }
        }
        rest = after;
    }
}

/// Needles up to this length are searched by anchoring on one byte with
/// memchr; longer ones use `memmem` (linear worst case). Building a `memmem`
/// searcher per call costs more than a whole short search, and a short
/// needle bounds the quadratic worst case of anchoring.
const SHORT_NEEDLE_BYTES_MAX: usize = 8;

/// The byte of `needle` to anchor on: its first non-space byte, since spaces
/// are the commonest byte in log text.
fn anchor(needle: &[u8]) -> usize {
    needle.iter().position(|&b| b != b' ').unwrap_or(0)
}

/// First occurrence of `needle` in `hay`.
fn find_literal(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > SHORT_NEEDLE_BYTES_MAX || needle.is_empty() {
        return memmem::find(hay, needle);
    }
    let k = anchor(needle);
    let mut from = k;
    while let Some(i) = memchr(needle[k], hay.get(from..)?) {
        let start = from + i - k;
        if hay[start..].starts_with(needle) {
            return Some(start);
        }
        from += i + 1;
    }
    None
}

/// Last occurrence of `needle` in `hay`.
fn rfind_literal(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > SHORT_NEEDLE_BYTES_MAX || needle.is_empty() {
        return memmem::rfind(hay, needle);
    }
    let k = anchor(needle);
    let mut end = hay.len().checked_sub(needle.len() - k - 1)?;
    while let Some(i) = memchr::memrchr(needle[k], hay.get(k..end)?) {
        let start = i;
        if hay[start..].starts_with(needle) {
            return Some(start);
        }
        end = k + i;
    }
    None
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Longest textual IPv6 address (with an embedded IPv4 tail).
const IP_BYTES_MAX: usize = 45;

/// Checks a captured value by the field it is going to.
fn value_ok(field: &str, value: &[u8]) -> bool {
    if field == "source.ip" || field == "destination.ip" {
        return value.is_empty() || looks_like_ip(value);
    }
    if field.ends_with(".port") {
        return value.len() <= 5 && value.iter().all(u8::is_ascii_digit);
    }
    true
}

/// A cheap shape check, not a full validation: IPv4 is four dot-separated
/// runs of 1-3 digits; IPv6 is hex digits, colons (at least two) and dots.
pub fn looks_like_ip(value: &[u8]) -> bool {
    if value.is_empty() || value.len() > IP_BYTES_MAX {
        return false;
    }
    if value.contains(&b':') {
        return value.iter().filter(|&&b| b == b':').count() >= 2
            && value
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    let mut parts = 0;
    for part in value.split(|&b| b == b'.') {
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return false;
        }
        parts += 1;
    }
    parts == 4
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod index_tests {
    #[test]
    fn apps_without_rows_are_ruled_out_and_apps_with_rows_are_not() {
        let index = super::app_index();
        assert!(super::app_has_rows(index, b"sshd"));
        assert!(super::app_has_rows(index, b"ASA-6-302013"));
        assert!(!super::app_has_rows(index, b"kernel-never-a-row"));
        assert!(!index.general.is_empty(), "pam rows apply to every app");
    }
}
