//! Declarative field extraction for free-text syslog messages.
//!
//! # What this module owns
//!
//! A static table of [`Row`]s ([`ROWS`], in `table.rs`), compiled once into
//! a [`Table`] (patterns split into literals and delimited captures, field
//! names numbered, rows listed per app name) that matches them against a
//! message: adding a source is adding rows. Positional CSV messages (pfSense filterlog, PAN-OS) have their own
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
    table().extract(app, message, out)
}

/// The built-in table, compiled once.
fn table() -> &'static Table {
    static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| Table::compile(ROWS))
}

/// Every field name [`extract`] can give (captures, key=value keys and
/// constants of every row), each once: names whose text need not be in
/// the line.
pub fn field_names() -> &'static [&'static str] {
    &table().names
}

/// A table of [`Row`]s compiled once: patterns split into a leading literal
/// and captures that each know their delimiter and value check, field names
/// numbered so that "already found" is an integer compare, and for every
/// exact app name the rows that can apply to it, in table order. Matching
/// then never re-reads pattern text or compares app names row by row.
pub struct Table {
    /// Every field name the rows give (captures, key=value keys and
    /// constants), each once.
    names: Vec<&'static str>,
    rows: Vec<CompiledRow>,
    /// Per exact app name in the table: the rows that apply to it (its own,
    /// wildcard rows it matches, and the rows for every app), in order.
    exact: Vec<(&'static [u8], Vec<u16>)>,
    /// Rows with at least one wildcard app entry.
    wildcard_rows: Vec<u16>,
    /// The first bytes of wildcard app entries: an app key starting with
    /// another byte (most of them: `kernel`, `cron`, CEF vendors) skips the
    /// wildcard rows without comparing entries.
    wildcard_first: [bool; 256],
    /// Rows that apply to every app.
    general: Vec<u16>,
    /// Per entry of `exact`: its name's length, first and last bytes
    /// packed, so that the search compares names only when these agree.
    exact_keys: Vec<u32>,
    /// Per row: the first byte its prefix needs, or [`ANY_FIRST`] for a
    /// pattern that starts with a capture. Rows whose first byte the
    /// message does not start with are passed over without reading them.
    row_first: Vec<u16>,
}

/// `Table::row_first` of a row without a literal prefix.
const ANY_FIRST: u16 = 256;

/// An app name's length, first and last bytes, packed.
fn app_key(name: &[u8]) -> u32 {
    match (name.first(), name.last()) {
        (Some(&first), Some(&last)) => {
            (name.len().min(0xffff) as u32) << 16 | u32::from(first) << 8 | u32::from(last)
        }
        _ => 0,
    }
}

struct CompiledRow {
    name: &'static str,
    /// False for a pattern with two captures in a row: it is in no
    /// candidate list, so it never matches.
    usable: bool,
    apps: Vec<AppEntry>,
    /// Literal text the message must start with.
    prefix: &'static [u8],
    captures: Vec<Capture>,
    kv_style: KvStyle,
    kv: Vec<CompiledKv>,
    constants: Vec<(Slot, &'static [u8])>,
}

/// How an app entry matches an app key (see `app_matches`).
enum AppEntry {
    Exact(&'static [u8]),
    Wildcard {
        prefix: &'static [u8],
        suffix: &'static [u8],
    },
}

impl AppEntry {
    fn new(entry: &'static str) -> Self {
        match entry.split_once('*') {
            None => AppEntry::Exact(entry.as_bytes()),
            Some((prefix, suffix)) => AppEntry::Wildcard {
                prefix: prefix.as_bytes(),
                suffix: suffix.as_bytes(),
            },
        }
    }

    fn matches(&self, app: &[u8]) -> bool {
        match *self {
            AppEntry::Exact(entry) => same_bytes(entry, app),
            AppEntry::Wildcard { prefix, suffix } => {
                app.len() >= prefix.len() + suffix.len()
                    && begins_with(app, prefix)
                    && app.ends_with(suffix)
                    && !app[prefix.len()..app.len() - suffix.len()].contains(&b'-')
            }
        }
    }
}

/// An output field, numbered within its table (`id`); `_` (skip) is
/// [`Slot::SKIP`].
#[derive(Clone, Copy)]
struct Slot {
    id: u16,
    name: &'static str,
}

impl Slot {
    const SKIP: u16 = u16::MAX;
}

/// What a captured value must look like, by its field: `source.ip` and
/// `destination.ip` an address ([`looks_like_ip`]), `*.port` digits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Check {
    Any,
    Ip,
    Port,
}

impl Check {
    fn of(field: &str) -> Self {
        if field == "source.ip" || field == "destination.ip" {
            Check::Ip
        } else if field.ends_with(".port") {
            Check::Port
        } else {
            Check::Any
        }
    }

    fn ok(self, value: &[u8]) -> bool {
        match self {
            Check::Any => true,
            Check::Ip => value.is_empty() || looks_like_ip(value),
            Check::Port => value.len() <= 5 && value.iter().all(u8::is_ascii_digit),
        }
    }
}

/// One capture and the literal that ends it (`None`: the capture ends the
/// pattern). Matching consumes the delimiter with the value.
struct Capture {
    slot: Slot,
    greedy: bool,
    check: Check,
    delimiter: Option<Delimiter>,
}

/// A capture's delimiter, with its reverse `memmem` searcher built once
/// when the capture is greedy and the delimiter longer than
/// [`SHORT_NEEDLE_BYTES_MAX`] (building one per search cost more than the
/// search). A non-greedy capture's delimiter is looked for only where a
/// value without spaces can end ([`Delimiter::find_after_word`]), a few
/// bytes, where a byte search beats a searcher.
struct Delimiter {
    text: &'static [u8],
    reverse: Option<memmem::FinderRev<'static>>,
}

impl Delimiter {
    fn new(text: &'static [u8], greedy: bool) -> Self {
        let long = text.len() > SHORT_NEEDLE_BYTES_MAX;
        Delimiter {
            text,
            reverse: (long && greedy).then(|| memmem::FinderRev::new(text)),
        }
    }

    /// The first occurrence in `hay` that leaves no space before it (a
    /// non-greedy value is one word): it starts at or before the first
    /// space, so only that far (and the delimiter's length past it) is
    /// searched. `None` when the first occurrence has a space before it,
    /// which is the same as no occurrence in that window.
    fn find_after_word(&self, hay: &[u8]) -> Option<usize> {
        let word = crate::decode::find_byte(b' ', hay).unwrap_or(hay.len());
        let window = &hay[..hay.len().min(word + self.text.len())];
        find_anchored(window, self.text)
    }

    fn rfind(&self, hay: &[u8]) -> Option<usize> {
        match &self.reverse {
            Some(finder) => finder.rfind(hay),
            None => rfind_literal(hay, self.text),
        }
    }
}

struct CompiledKv {
    key: &'static [u8],
    slot: Slot,
    check: Check,
    to_end: bool,
}

impl Table {
    /// Compiles `rows`. A pattern with two captures in a row (which cannot
    /// be delimited) compiles to a row that never matches.
    pub fn compile(rows: &'static [Row]) -> Table {
        let mut names: Vec<&'static str> = Vec::new();
        let mut slot = |name: &'static str| -> Slot {
            if name == "_" {
                return Slot {
                    id: Slot::SKIP,
                    name,
                };
            }
            let id = match names.iter().position(|n| *n == name) {
                Some(i) => i,
                None => {
                    names.push(name);
                    names.len() - 1
                }
            };
            Slot {
                id: u16::try_from(id).unwrap_or(Slot::SKIP - 1),
                name,
            }
        };
        let mut compiled = Vec::with_capacity(rows.len());
        for row in rows {
            let pattern = row.pattern.as_bytes();
            let mut prefix: &'static [u8] = b"";
            let mut captures: Vec<Capture> = Vec::new();
            let mut undelimited = false;
            let mut pos = 0;
            while let Some((piece, next)) = next_piece(pattern, pos) {
                match piece {
                    Piece::Literal(lit) => match captures.last_mut() {
                        Some(last) => last.delimiter = Some(Delimiter::new(lit, last.greedy)),
                        None => prefix = lit,
                    },
                    Piece::Capture { name, greedy } => {
                        if captures.last().is_some_and(|c| c.delimiter.is_none()) {
                            undelimited = true;
                        }
                        captures.push(Capture {
                            slot: slot(name),
                            greedy,
                            check: Check::of(name),
                            delimiter: None,
                        });
                    }
                }
                pos = next;
            }
            compiled.push(CompiledRow {
                name: row.name,
                usable: !undelimited,
                apps: row.apps.iter().map(|a| AppEntry::new(a)).collect(),
                prefix,
                captures,
                kv_style: row.kv_style,
                kv: row
                    .kv
                    .iter()
                    .map(|kv| CompiledKv {
                        key: kv.key,
                        slot: slot(kv.field),
                        check: Check::of(kv.field),
                        to_end: kv.to_end,
                    })
                    .collect(),
                constants: row
                    .constants
                    .iter()
                    .map(|&(name, value)| (slot(name), value.as_bytes()))
                    .collect(),
            });
        }
        let index = |i: usize| u16::try_from(i).unwrap_or(u16::MAX);
        let general: Vec<u16> = (0..compiled.len())
            .filter(|&i| compiled[i].usable && compiled[i].apps.is_empty())
            .map(index)
            .collect();
        let wildcard_rows: Vec<u16> = (0..compiled.len())
            .filter(|&i| {
                compiled[i].usable
                    && compiled[i]
                        .apps
                        .iter()
                        .any(|a| matches!(a, AppEntry::Wildcard { .. }))
            })
            .map(index)
            .collect();
        let mut wildcard_first = [false; 256];
        for row in &compiled {
            for app in &row.apps {
                if let AppEntry::Wildcard { prefix, .. } = app {
                    // No table entry starts with `*` (checked by tests);
                    // one that did would be tried for every app.
                    match prefix.first() {
                        Some(&b) => wildcard_first[usize::from(b)] = true,
                        None => wildcard_first = [true; 256],
                    }
                }
            }
        }
        let mut exact: Vec<(&'static [u8], Vec<u16>)> = Vec::new();
        for row in &compiled {
            for app in &row.apps {
                if let AppEntry::Exact(name) = *app {
                    if !exact.iter().any(|(n, _)| *n == name) {
                        let applies = (0..compiled.len())
                            .filter(|&i| {
                                let apps = &compiled[i].apps;
                                compiled[i].usable
                                    && (apps.is_empty() || apps.iter().any(|a| a.matches(name)))
                            })
                            .map(index)
                            .collect();
                        exact.push((name, applies));
                    }
                }
            }
        }
        let exact_keys = exact.iter().map(|(name, _)| app_key(name)).collect();
        let row_first = compiled
            .iter()
            .map(|row| row.prefix.first().map_or(ANY_FIRST, |&b| u16::from(b)))
            .collect();
        Table {
            names,
            rows: compiled,
            exact,
            wildcard_rows,
            wildcard_first,
            general,
            exact_keys,
            row_first,
        }
    }

    /// [`extract`] over this table.
    pub fn extract<'a>(
        &self,
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
        let key = app_key(app);
        let exact = self
            .exact_keys
            .iter()
            .zip(&self.exact)
            .find(|&(&k, (name, _))| k == key && same_bytes(name, app));
        if let Some((_, (_, rows))) = exact {
            return self.first_match(rows.iter().copied(), message, &mut found, out);
        }
        // Apps named only by wildcard entries (Cisco mnemonics): the rows
        // whose entries match, merged in table order with the general rows.
        if !app
            .first()
            .is_some_and(|&b| self.wildcard_first[usize::from(b)])
        {
            return self.first_match(self.general.iter().copied(), message, &mut found, out);
        }
        let mut wild = self
            .wildcard_rows
            .iter()
            .copied()
            .filter(|&i| {
                self.rows[usize::from(i)]
                    .apps
                    .iter()
                    .any(|a| a.matches(app))
            })
            .peekable();
        let mut general = self.general.iter().copied().peekable();
        let merged = std::iter::from_fn(|| match (wild.peek(), general.peek()) {
            (Some(&w), Some(&g)) if w < g => wild.next(),
            (Some(_), None) => wild.next(),
            _ => general.next(),
        });
        self.first_match(merged, message, &mut found, out)
    }

    fn first_match<'a>(
        &self,
        rows: impl Iterator<Item = u16>,
        message: &'a [u8],
        found: &mut Found<'a>,
        out: &mut Fields<'a>,
    ) -> Option<&'static str> {
        let first = message.first().map_or(ANY_FIRST, |&b| u16::from(b));
        for i in rows {
            let need = self.row_first[usize::from(i)];
            if need != ANY_FIRST && need != first {
                continue;
            }
            let row = &self.rows[usize::from(i)];
            found.len = 0;
            let Some(end) = match_row(row, message, found) else {
                continue;
            };
            debug_assert!(end <= message.len());
            read_kv(row, &message[end..], found);
            for &(_, name, value) in found.as_slice() {
                out.push(name, value);
            }
            for &(slot, value) in &row.constants {
                if !found.has(slot.id) {
                    out.push(slot.name, value);
                }
            }
            return Some(row.name);
        }
        None
    }
}

/// Whether a row's app entry matches the app key. One `*` in the entry
/// matches any run of bytes without `-` (`ASA-*-302013` matches every
/// severity an administrator may have given message 302013).
#[cfg(test)]
fn app_matches(entry: &'static str, app: &[u8]) -> bool {
    AppEntry::new(entry).matches(app)
}

/// Fields found while matching one row, committed only if the row matches.
/// Left uninitialised until pushed: it is made for every line that reaches
/// the table, and filling 12 entries cost about 1% of a core.
struct Found<'a> {
    items: [std::mem::MaybeUninit<(u16, &'static str, &'a [u8])>; ROW_FIELDS_MAX],
    len: usize,
}

impl Default for Found<'_> {
    fn default() -> Self {
        Found {
            items: [const { std::mem::MaybeUninit::uninit() }; ROW_FIELDS_MAX],
            len: 0,
        }
    }
}

impl<'a> Found<'a> {
    /// The entries pushed since `len` was last set to 0.
    fn as_slice(&self) -> &[(u16, &'static str, &'a [u8])] {
        debug_assert!(self.len <= ROW_FIELDS_MAX);
        // SAFETY: entries 0..len were written by `push` (`len` only grows
        // there, one entry at a time, and is otherwise only reset to 0);
        // MaybeUninit<T> has the layout of T.
        unsafe { std::slice::from_raw_parts(self.items.as_ptr().cast(), self.len) }
    }

    fn has(&self, id: u16) -> bool {
        self.as_slice().iter().any(|item| item.0 == id)
    }

    /// Keeps a non-empty value; the table is checked by tests never to
    /// exceed `ROW_FIELDS_MAX`, so a full list drops (debug: asserts).
    fn push(&mut self, slot: Slot, value: &'a [u8]) {
        if value.is_empty() || slot.id == Slot::SKIP {
            return;
        }
        debug_assert!(self.len < ROW_FIELDS_MAX, "row produces too many fields");
        if self.len < ROW_FIELDS_MAX {
            self.items[self.len].write((slot.id, slot.name, value));
            self.len += 1;
        }
    }
}

/// Matches a compiled row's pattern at the start of `message`; returns the
/// offset after the match.
fn match_row<'a>(row: &CompiledRow, message: &'a [u8], found: &mut Found<'a>) -> Option<usize> {
    if !begins_with(message, row.prefix) {
        return None;
    }
    let mut m = row.prefix.len();
    for capture in &row.captures {
        let rest = &message[m..];
        let (value_len, consumed) = match &capture.delimiter {
            Some(delimiter) => {
                let at = if capture.greedy {
                    delimiter.rfind(rest)?
                } else {
                    delimiter.find_after_word(rest)?
                };
                (at, at + delimiter.text.len())
            }
            None if capture.greedy => (rest.len(), rest.len()),
            None => {
                let at = crate::decode::find_byte(b' ', rest).unwrap_or(rest.len());
                (at, at)
            }
        };
        let value = &rest[..value_len];
        if !capture.check.ok(value) {
            return None;
        }
        found.push(capture.slot, value);
        m += consumed;
    }
    Some(m)
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

/// Reads the row's key=value pairs from the text after its pattern.
fn read_kv<'a>(row: &CompiledRow, mut rest: &'a [u8], found: &mut Found<'a>) {
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
            let kv = row.kv.iter().find(|kv| same_bytes(kv.key, key));
            if let Some(kv) = kv.filter(|kv| !found.has(kv.slot.id)) {
                let value = if kv.to_end {
                    // The value runs to the end of the message, separators
                    // included.
                    let offset = pair_trimmed.as_ptr() as usize - rest.as_ptr() as usize;
                    trim_spaces(&rest[offset + eq + 1..])
                } else {
                    &pair_trimmed[eq + 1..]
                };
                if kv.check.ok(value) {
                    found.push(kv.slot, value);
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
    find_anchored(hay, needle)
}

/// First occurrence of a non-empty `needle` in `hay`: each place its
/// [`anchor`] byte occurs, compared. For short haystacks or short needles.
fn find_anchored(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    let k = anchor(needle);
    let mut from = k;
    // A word-at-a-time head before memchr: most haystacks here are a
    // value's few bytes.
    while let Some(i) = crate::decode::find_byte(needle[k], hay.get(from..)?) {
        let start = from + i - k;
        if begins_with(&hay[start..], needle) {
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
        if begins_with(&hay[start..], needle) {
            return Some(start);
        }
        end = k + i;
    }
    None
}

/// `a == b` for the short slices of this module (app names, keys, pattern
/// literals) without a call to libc's `memcmp`, whose entry cost exceeded
/// the compares themselves (a third of a sudo line's extraction): words
/// compared with overlapping unaligned loads.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
    match n {
        0 => true,
        1..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => {
            let mut i = 0;
            while i + 8 < n {
                if word(a, i) != word(b, i) {
                    return false;
                }
                i += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
    }
}

/// `hay.starts_with(prefix)` through [`same_bytes`].
#[inline]
fn begins_with(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && same_bytes(&hay[..prefix.len()], prefix)
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

/// A cheap shape check, not a full validation: IPv4 is four dot-separated
/// runs of 1-3 digits; IPv6 is hex digits, colons (at least two) and dots.
/// One pass for the IPv4 shape; a byte it does not allow sends the value
/// to the IPv6 check, which refuses anything without two colons.
pub fn looks_like_ip(value: &[u8]) -> bool {
    if value.is_empty() || value.len() > IP_BYTES_MAX {
        return false;
    }
    let mut parts = 1;
    let mut run = 0;
    for &b in value {
        match b {
            b'0'..=b'9' if run < 3 => run += 1,
            b'.' if run > 0 && parts < 4 => {
                parts += 1;
                run = 0;
            }
            _ => return looks_like_ipv6(value),
        }
    }
    parts == 4 && run > 0
}

/// The IPv6 half of [`looks_like_ip`].
fn looks_like_ipv6(value: &[u8]) -> bool {
    let mut colons = 0;
    for &b in value {
        match b {
            b':' => colons += 1,
            b'.' => {}
            _ if b.is_ascii_hexdigit() => {}
            _ => return false,
        }
    }
    colons >= 2
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod index_tests {
    use super::{Table, ROWS};

    #[test]
    fn every_app_gets_its_rows_in_table_order() {
        let table = Table::compile(ROWS);
        assert!(!table.general.is_empty(), "pam rows apply to every app");
        for (app, rows) in &table.exact {
            assert!(rows.windows(2).all(|w| w[0] < w[1]), "{app:?}");
            let expected: Vec<u16> = (0..ROWS.len())
                .filter(|&i| {
                    ROWS[i].apps.is_empty()
                        || ROWS[i].apps.iter().any(|a| super::app_matches(a, app))
                })
                .map(|i| i as u16)
                .collect();
            assert_eq!(*rows, expected, "{app:?}");
        }
        let sshd = table.exact.iter().find(|(a, _)| *a == b"sshd").unwrap();
        assert!(sshd.1.iter().all(|&i| {
            ROWS[usize::from(i)].apps.is_empty() || ROWS[usize::from(i)].apps.contains(&"sshd")
        }));
    }
}
