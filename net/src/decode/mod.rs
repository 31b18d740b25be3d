//! Payload decoders: JSON, CEF, LEEF, CSV layouts, key=value and RFC 5424
//! structured data, chosen per message with no configuration.
//!
//! # What this module owns
//!
//! After the syslog header parse, [`payload`] looks at the message (the
//! whole text of a Plain line) and picks one decoder by its first bytes:
//!
//! 1. `{` (or `@cee: {`): JSON ([`json`]). Invalid JSON is reported as
//!    [`DecodeIssue::JsonInvalid`] and the message goes on to the steps
//!    below as text.
//! 2. `<Event` or `<?xml`: Windows event XML ([`xml`]: Sysmon for Linux,
//!    forwarded Windows events); a document that is not well-formed is
//!    [`DecodeIssue::XmlInvalid`] and goes on as text.
//! 3. `CEF:<digit>` at the start, or after a space within the first
//!    [`MARKER_SEARCH_BYTES_MAX`] bytes: CEF ([`cef`]).
//! 4. `LEEF:<digit>` the same way: LEEF ([`leef`]).
//! 5. The free-text table ([`crate::extract`]), keyed on the app name.
//! 6. The CSV layouts ([`crate::extract::csv`]): pfSense filterlog, PAN-OS.
//! 7. key=value ([`kv`]) when the message holds at least two pairs.
//!
//! A decoder that recognised its marker but could not read the payload (a
//! CEF header with too few `|`) claims nothing and names the problem in
//! [`DecodeIssue`]; the later steps still run. Structured data
//! ([`sd`]) is not a payload: its fields come before the payload's for
//! every RFC 5424 line that has it.
//!
//! Decoders produce names as the sender wrote them (`sourceIPAddress`,
//! `src`, `cs1Label`'s value); mapping them onto common names belongs to
//! the engine. This module must not allocate per event once warm, read a
//! clock, or know about rules: names and values that are not slices of the
//! line (dotted JSON paths, unescaped values, numbers) are written into the
//! caller's [`DecodeScratch`] arena.
//!
//! # The arena
//!
//! [`DecodeScratch`] owns a byte buffer that [`Arena`] hands out as
//! disjoint `&'a mut [u8]` pieces (a bump allocator built on
//! `split_at_mut`, no unsafe code). Before each line the buffer is grown to
//! [`ARENA_BYTES_PER_LINE_BYTE`] times the line length (at least
//! [`ARENA_BYTES_MIN`], at most [`ARENA_BYTES_MAX`]); growing is the only
//! allocation, so a warm scratch allocates nothing. When a line needs more
//! than that (long dotted names in deep JSON), the fields that do not fit
//! are left out and [`DecodeIssue::ScratchFull`] says so.

pub mod cef;
pub mod json;
pub mod kv;
pub mod leef;
mod marks;
pub mod sd;
pub mod xml;

use crate::extract;
use crate::fields::Fields;

/// Which decoder produced a line's payload fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decoder {
    Json,
    Cef,
    Leef,
    /// A row of the free-text table ([`crate::extract::ROWS`]).
    Text,
    /// A CSV layout ([`crate::extract::csv::LAYOUTS`]).
    Csv,
    Kv,
    /// Windows event XML ([`xml`]).
    Xml,
}

impl Decoder {
    /// Every decoder, for pre-registering metric labels.
    pub const ALL: [Decoder; 7] = [
        Decoder::Json,
        Decoder::Xml,
        Decoder::Cef,
        Decoder::Leef,
        Decoder::Text,
        Decoder::Csv,
        Decoder::Kv,
    ];

    /// Stable lower-case name for output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Decoder::Json => "json",
            Decoder::Cef => "cef",
            Decoder::Leef => "leef",
            Decoder::Text => "text",
            Decoder::Csv => "csv",
            Decoder::Kv => "kv",
            Decoder::Xml => "xml",
        }
    }
}

/// Why a payload decode was partial, or why a recognised format was not
/// decoded. The line is still accepted; the engine counts these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeIssue {
    /// Starts like JSON but simd-json refused it (often a truncated frame).
    JsonInvalid,
    /// JSON nested deeper than [`json::JSON_DEPTH_MAX`]; the deeper parts
    /// were left out.
    JsonTooDeep,
    /// `CEF:` marker with fewer than seven `|`-separated header fields.
    CefBadHeader,
    /// `LEEF:` marker with a malformed header.
    LeefBadHeader,
    /// The scratch arena ran out; some fields were left out.
    ScratchFull,
    /// Starts like an XML event but is not well-formed (see [`xml`]).
    XmlInvalid,
    /// XML nested deeper than [`xml::XML_DEPTH_MAX`]; the deeper parts
    /// were left out.
    XmlTooDeep,
}

impl DecodeIssue {
    /// Every issue, for pre-registering metric labels.
    pub const ALL: [DecodeIssue; 7] = [
        DecodeIssue::JsonInvalid,
        DecodeIssue::JsonTooDeep,
        DecodeIssue::CefBadHeader,
        DecodeIssue::LeefBadHeader,
        DecodeIssue::ScratchFull,
        DecodeIssue::XmlInvalid,
        DecodeIssue::XmlTooDeep,
    ];

    /// Stable snake_case name for output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeIssue::JsonInvalid => "json_invalid",
            DecodeIssue::JsonTooDeep => "json_too_deep",
            DecodeIssue::CefBadHeader => "cef_bad_header",
            DecodeIssue::LeefBadHeader => "leef_bad_header",
            DecodeIssue::ScratchFull => "scratch_full",
            DecodeIssue::XmlInvalid => "xml_invalid",
            DecodeIssue::XmlTooDeep => "xml_too_deep",
        }
    }
}

/// The sending product as a CEF or LEEF header names it, for a schema
/// registry keyed per source. Values are as decoded (unescaped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source<'a> {
    pub vendor: &'a [u8],
    pub product: &'a [u8],
}

/// What [`payload`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Payload<'a> {
    pub decoder: Option<Decoder>,
    /// The table row or CSV layout that matched.
    pub rule: Option<&'static str>,
    pub source: Option<Source<'a>>,
    pub issue: Option<DecodeIssue>,
}

/// Smallest arena kept.
pub const ARENA_BYTES_MIN: usize = 64 * 1024;
/// Arena bytes reserved per byte of line (the JSON copy, dotted names,
/// unescaped values, array texts).
pub const ARENA_BYTES_PER_LINE_BYTE: usize = 4;
/// Largest arena: four times the largest frame the engine accepts (16 MiB).
pub const ARENA_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How far into a message a `CEF:` or `LEEF:` marker is looked for (after
/// a space), for senders that put their own prefix before it.
pub const MARKER_SEARCH_BYTES_MAX: usize = 256;

/// Caller-owned, reused scratch space for decoding: the arena, simd-json's
/// buffers and tape. One per core; see the module docs.
pub struct DecodeScratch {
    arena: Vec<u8>,
    json: json::JsonScratch,
}

impl Default for DecodeScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for DecodeScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeScratch")
            .field("arena_bytes", &self.arena.len())
            .finish_non_exhaustive()
    }
}

impl DecodeScratch {
    /// A scratch with the smallest arena; it grows with the lines it sees.
    pub fn new() -> Self {
        DecodeScratch {
            arena: vec![0; ARENA_BYTES_MIN],
            json: json::JsonScratch::default(),
        }
    }

    /// Current arena size in bytes.
    pub fn arena_bytes(&self) -> usize {
        self.arena.len()
    }

    /// Grows the arena for a line of `line_bytes` and splits the scratch into
    /// its parts for one line.
    pub(crate) fn prepare(&mut self, line_bytes: usize) -> (Arena<'_>, &mut json::JsonScratch) {
        let want = line_bytes
            .saturating_mul(ARENA_BYTES_PER_LINE_BYTE)
            .clamp(ARENA_BYTES_MIN, ARENA_BYTES_MAX);
        if self.arena.len() < want {
            self.arena.resize(want, 0);
        }
        (
            Arena {
                free: &mut self.arena[..],
                full: false,
            },
            &mut self.json,
        )
    }
}

/// A bump allocator over one line's share of the scratch; see the module
/// docs. Every piece it returns lives as long as the scratch borrow.
pub struct Arena<'a> {
    free: &'a mut [u8],
    /// A request did not fit.
    pub full: bool,
}

impl<'a> Arena<'a> {
    /// An arena over a caller's buffer (tests and fuzz targets).
    pub fn over(buffer: &'a mut [u8]) -> Self {
        Arena {
            free: buffer,
            full: false,
        }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.free.len()
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a mut [u8]> {
        if n > self.free.len() {
            self.full = true;
            return None;
        }
        let free = std::mem::take(&mut self.free);
        let (head, tail) = free.split_at_mut(n);
        self.free = tail;
        Some(head)
    }

    /// Lets `write` fill a buffer of exactly `max` bytes and keeps as many
    /// as it says it used; `None` from `write` gives everything back. When
    /// fewer than `max` bytes are left nothing is written (and the arena is
    /// marked full), so `write` may rely on the buffer's length.
    pub fn fill(
        &mut self,
        max: usize,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<&'a [u8]> {
        if max > self.free.len() {
            self.full = true;
            return None;
        }
        let free = std::mem::take(&mut self.free);
        let used = write(&mut free[..max]).filter(|&used| used <= max);
        let Some(used) = used else {
            self.full = true;
            self.free = free;
            return None;
        };
        let (head, tail) = free.split_at_mut(used);
        self.free = tail;
        Some(head)
    }

    /// Concatenates `parts` (each valid UTF-8) into one name.
    pub fn concat_str(&mut self, parts: &[&str]) -> Option<&'a str> {
        let len = parts.iter().map(|p| p.len()).sum();
        let buf = self.take(len)?;
        let mut at = 0;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part.as_bytes());
            at += part.len();
        }
        debug_assert_eq!(at, len);
        debug_assert!(std::str::from_utf8(buf).is_ok());
        // SAFETY: `buf` is exactly the concatenation of `parts`, each valid
        // UTF-8, and a concatenation of UTF-8 strings is UTF-8. Validating
        // again cost a tenth of the JSON decode time.
        Some(unsafe { std::str::from_utf8_unchecked(buf) })
    }

    /// Writes `prefix[0] . prefix[1] . ... . key`, then `.index` when
    /// given: a dotted name, built without an intermediate list.
    pub fn dotted(&mut self, prefix: &[&str], key: &str, index: Option<usize>) -> Option<&'a str> {
        let mut digits = [0u8; 20];
        let index_text = index.map(|i| decimal_digits(i as u64, &mut digits));
        let len = prefix.iter().map(|p| p.len() + 1).sum::<usize>()
            + key.len()
            + index_text.map_or(0, |t| t.len() + 1);
        let buf = self.take(len)?;
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        for segment in prefix {
            put(segment.as_bytes());
            put(b".");
        }
        put(key.as_bytes());
        if let Some(text) = index_text {
            put(b".");
            put(text);
        }
        debug_assert!(std::str::from_utf8(buf).is_ok());
        // SAFETY: `buf` holds UTF-8 segments, ASCII dots and ASCII digits
        // only, so it is UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(buf) })
    }

    /// Writes `value` in decimal.
    pub fn decimal(&mut self, value: u64) -> Option<&'a str> {
        let mut digits = [0u8; 20];
        let text = decimal_digits(value, &mut digits);
        let buf = self.take(text.len())?;
        buf.copy_from_slice(text);
        // ASCII digits are UTF-8; checking 1-20 bytes costs little.
        std::str::from_utf8(buf).ok()
    }

    /// Writes `args` (a number's `Display`/`Debug`) and returns the text.
    pub fn format(&mut self, args: std::fmt::Arguments<'_>) -> Option<&'a str> {
        use std::io::Write;
        let bytes = self.fill(FORMAT_BYTES_MAX.min(self.free.len()), |buf| {
            let len = buf.len();
            let mut cursor = &mut buf[..];
            cursor.write_fmt(args).ok()?;
            Some(len - cursor.len())
        })?;
        std::str::from_utf8(bytes).ok()
    }
}

/// `value` in decimal ASCII, written at the end of `digits`.
fn decimal_digits(value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    let mut v = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &digits[at..]
}

/// Longest formatted number (f64 `Debug` needs at most 24 bytes).
const FORMAT_BYTES_MAX: usize = 64;

/// Decodes `message` (of a line whose extraction key is `app`) with the
/// decoder its first bytes select, appending to `fields`; see the module
/// docs for the order.
pub fn payload<'a>(
    app: &[u8],
    message: &'a [u8],
    arena: &mut Arena<'a>,
    json: &mut json::JsonScratch,
    fields: &mut Fields<'a>,
) -> Payload<'a> {
    let mut out = Payload::default();
    let start = message
        .iter()
        .position(|&b| b != b' ')
        .unwrap_or(message.len());
    let text = &message[start..];

    let json_text = text.strip_prefix(b"@cee:").map_or(text, trim_start);
    if json_text.first() == Some(&b'{') {
        match json::decode(json_text, arena, json, fields) {
            Ok(()) => {
                out.decoder = Some(Decoder::Json);
                out.issue = arena_issue(arena, json.issue);
                return out;
            }
            Err(issue) => out.issue = Some(issue),
        }
    }
    if xml::looks_like_event(text) {
        let document = trim_end(text);
        match xml::decode(document, arena, fields) {
            Ok(issue) => {
                out.decoder = Some(Decoder::Xml);
                out.issue = arena_issue(arena, issue);
                return out;
            }
            Err(issue) => out.issue = Some(issue),
        }
    }
    let (cef_at, leef_at) = find_markers(text);
    if let Some(at) = cef_at {
        match cef::decode(&text[at..], arena, fields) {
            Ok(source) => {
                out.decoder = Some(Decoder::Cef);
                out.source = Some(source);
                out.issue = arena_issue(arena, None);
                return out;
            }
            Err(issue) => out.issue = Some(issue),
        }
    }
    if let Some(at) = leef_at {
        match leef::decode(&text[at..], arena, fields) {
            Ok(source) => {
                out.decoder = Some(Decoder::Leef);
                out.source = Some(source);
                out.issue = arena_issue(arena, None);
                return out;
            }
            Err(issue) => out.issue = Some(issue),
        }
    }
    if let Some(row) = extract::extract(app, message, fields) {
        out.decoder = Some(Decoder::Text);
        out.rule = Some(row);
        return out;
    }
    if let Some(layout) = extract::csv::extract(app, text, arena, fields) {
        out.decoder = Some(Decoder::Csv);
        out.rule = Some(layout);
        out.issue = arena_issue(arena, out.issue);
        return out;
    }
    if kv::decode(text, arena, fields) {
        out.decoder = Some(Decoder::Kv);
        out.issue = arena_issue(arena, out.issue);
    }
    out
}

/// The issue to report: the decoder's own, else a full arena.
fn arena_issue(arena: &Arena<'_>, issue: Option<DecodeIssue>) -> Option<DecodeIssue> {
    issue.or(arena.full.then_some(DecodeIssue::ScratchFull))
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |at| at + 1);
    &bytes[..end]
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    &bytes[start..]
}

/// Whether [`payload`] might take `message` for CEF or LEEF, whose sending
/// vendor and product then name the line's source: true when either
/// marker is where `payload` looks for it (a cheap scan of the first
/// bytes, no decoding). False means the source is the header's.
pub fn may_name_vendor(message: &[u8]) -> bool {
    header_vendor(message) != HeaderVendor::Header
}

/// What a message's first bytes say of the source [`payload`] would give
/// it, without decoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderVendor<'a> {
    /// No CEF or LEEF marker: the source is the syslog header's.
    Header,
    /// CEF, with this vendor and product (no JSON object or XML event
    /// first, a whole CEF header, neither part escaped).
    Cef(Source<'a>),
    /// A marker, but only the decode can tell (LEEF, an escaped or broken
    /// CEF header, JSON or XML first).
    Undecided,
}

/// [`HeaderVendor`] of `message`: one scan for the markers.
pub fn header_vendor(message: &[u8]) -> HeaderVendor<'_> {
    let text = trim_start(message);
    let (cef, leef) = find_markers(text);
    if (cef, leef) == (None, None) {
        return HeaderVendor::Header;
    }
    let json_text = text.strip_prefix(b"@cee:").map_or(text, trim_start);
    if json_text.first() == Some(&b'{') || xml::looks_like_event(text) {
        return HeaderVendor::Undecided;
    }
    cef.and_then(|at| cef::source(&text[at..]))
        .map_or(HeaderVendor::Undecided, HeaderVendor::Cef)
}

/// The CEF source [`payload`] would find in `message`, without decoding
/// it: `Some` only when `payload` would take `message` for CEF (no JSON
/// object or XML event first, a `CEF:` marker, a whole CEF header) and
/// the header's vendor and product need no unescaping. `None` says
/// nothing: the message may still be CEF, LEEF or neither.
pub fn cef_source(message: &[u8]) -> Option<Source<'_>> {
    match header_vendor(message) {
        HeaderVendor::Cef(source) => Some(source),
        HeaderVendor::Header | HeaderVendor::Undecided => None,
    }
}

/// Finds the payload markers `CEF:` and `LEEF:` followed by a digit, each
/// at the start of `text` or after a space within the first
/// [`MARKER_SEARCH_BYTES_MAX`] bytes: the first of each, in one pass over
/// the places where `EF:` is (which both end in), found by
/// `ef_colons`: key=value lines hold a colon in every MAC address and
/// time of day, and a search per colon cost them more than the scan.
fn find_markers(text: &[u8]) -> (Option<usize>, Option<usize>) {
    let window = &text[..text.len().min(MARKER_SEARCH_BYTES_MAX + b"LEEF:".len())];
    let (mut cef, mut leef) = (None, None);
    ef_colons(window, |colon| {
        if colon < 3 || !text.get(colon + 1).is_some_and(u8::is_ascii_digit) {
            return true;
        }
        let starts_token = |at: usize| at == 0 || text[at - 1] == b' ';
        match text[colon - 3] {
            b'C' if colon - 3 <= MARKER_SEARCH_BYTES_MAX && starts_token(colon - 3) => {
                cef = Some(colon - 3);
                return false;
            }
            b'E' if leef.is_none()
                && colon >= 4
                && text[colon - 4] == b'L'
                && colon - 4 <= MARKER_SEARCH_BYTES_MAX
                && starts_token(colon - 4) =>
            {
                leef = Some(colon - 4);
            }
            _ => {}
        }
        true
    });
    (cef, leef)
}

/// Calls `each` with the offset of the `:` of every `EF:` in `text`, in
/// order, until it returns false. A block of places at a time (32 with
/// AVX2 where the CPU has it, else 16 with SSE2, part of every x86-64):
/// three compares of the bytes two, one and zero places back, whose bits
/// agree only at an `EF:`; the last block overlaps the one before and
/// ends at the end of `text`, its places already seen masked off. Only a
/// text shorter than one block goes byte by byte. A line that no rule
/// reads is scanned so for its source (`header_vendor`), up to
/// [`MARKER_SEARCH_BYTES_MAX`] bytes: 16-byte steps and a byte loop for
/// the rest were ~210 instructions of such a line.
fn ef_colons(text: &[u8], mut each: impl FnMut(usize) -> bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if text.len() >= 2 + 32 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            unsafe { ef_colons_avx2(text, &mut each) };
            return;
        }
        if text.len() >= 2 + 16 {
            ef_colons_sse2(text, &mut each);
            return;
        }
    }
    let mut at = 2;
    while at < text.len() {
        if &text[at - 2..=at] == b"EF:" && !each(at) {
            return;
        }
        at += 1;
    }
}

/// The block walk of [`ef_colons`] over `len` bytes (at least
/// `2 + width`, `width` at most 32): `hits_at(at)` gives, as bits, the
/// places of `at..at + width` that end an `EF:`; the last block is moved
/// back to end at `len`, the places the block before saw masked off.
#[inline(always)]
fn ef_blocks(
    len: usize,
    width: usize,
    each: &mut impl FnMut(usize) -> bool,
    mut hits_at: impl FnMut(usize) -> u32,
) {
    debug_assert!(len >= 2 + width && width <= 32);
    let mut next = 2;
    while next < len {
        let at = next.min(len - width);
        // Under `width`: only the last block starts before `next`.
        let seen = next - at;
        let mut hits = hits_at(at) >> seen << seen;
        while hits != 0 {
            if !each(at + hits.trailing_zeros() as usize) {
                return;
            }
            hits &= hits - 1;
        }
        next = at + width;
    }
}

/// [`ef_colons`] in 32-place blocks (`text` at least 34 bytes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn ef_colons_avx2(text: &[u8], each: &mut impl FnMut(usize) -> bool) {
    use std::arch::x86_64::{
        _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_set1_epi8,
    };
    ef_blocks(text.len(), 32, each, |at| {
        // SAFETY: the three unaligned 32-byte loads start at `at - 2`,
        // `at - 1` and `at`, with `at >= 2` and `at + 32 <= text.len()`
        // (`ef_blocks`), so all lie within `text`.
        unsafe {
            let here = text.as_ptr().add(at);
            let byte = |back: usize, want: u8| {
                _mm256_cmpeq_epi8(
                    _mm256_loadu_si256(here.sub(back).cast()),
                    _mm256_set1_epi8(want as i8),
                )
            };
            let all = _mm256_and_si256(
                _mm256_and_si256(byte(2, b'E'), byte(1, b'F')),
                byte(0, b':'),
            );
            _mm256_movemask_epi8(all) as u32
        }
    });
}

/// [`ef_colons`] in 16-place blocks (`text` at least 18 bytes).
#[cfg(target_arch = "x86_64")]
fn ef_colons_sse2(text: &[u8], each: &mut impl FnMut(usize) -> bool) {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    ef_blocks(text.len(), 16, each, |at| {
        // SAFETY: SSE2 is part of the x86-64 baseline; the three unaligned
        // 16-byte loads start at `at - 2`, `at - 1` and `at`, with
        // `at >= 2` and `at + 16 <= text.len()` (`ef_blocks`), so all lie
        // within `text`.
        unsafe {
            let here = text.as_ptr().add(at);
            let byte = |back: usize, want: u8| {
                _mm_cmpeq_epi8(
                    _mm_loadu_si128(here.sub(back).cast()),
                    _mm_set1_epi8(want as i8),
                )
            };
            let all = _mm_and_si128(_mm_and_si128(byte(2, b'E'), byte(1, b'F')), byte(0, b':'));
            _mm_movemask_epi8(all) as u32
        }
    });
}

/// Bytes read directly before a search is handed to memchr: most keys and
/// values are short, and setting up a vector search costs more than
/// reading them.
const SHORT_SCAN_BYTES: usize = 24;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each zero byte of `x` is set. Borrows can also set it in a
/// byte above a zero byte, never below one, so the lowest set bit marks
/// the first zero byte exactly.
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The first offset in the short head of `hay` whose byte `hit` marks
/// (eight bytes a step, as a word, then byte by byte), or `None` with the
/// head's length.
#[inline]
fn scan_head(
    hay: &[u8],
    head: usize,
    hit_word: impl Fn(u64) -> u64,
    hit_byte: impl Fn(u8) -> bool,
) -> Result<usize, usize> {
    let mut at = 0;
    while at + 8 <= head {
        // Lossless: the slice is eight bytes (`head` is within `hay`).
        let word = u64::from_le_bytes(hay[at..at + 8].try_into().unwrap_or([0; 8]));
        let hits = hit_word(word);
        if hits != 0 {
            return Ok(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    while at < head {
        if hit_byte(hay[at]) {
            return Ok(at);
        }
        at += 1;
    }
    Err(head)
}

/// Length of the run of printable ASCII (`!` to `~`, RFC 5424's
/// PRINTUSASCII) at the start of `hay`: where the first space, control
/// byte, DEL or non-ASCII byte is, or `hay.len()`. Eight bytes a step.
#[inline]
pub(crate) fn printable_len(hay: &[u8]) -> usize {
    // Bytes below 33 (the borrow trick of `zero_bytes`, exact for the
    // lowest) and above 126 (adding one sets bit 7 of 127; bit 7 of the
    // byte itself marks 128 and up), each exact at its lowest hit.
    let hits =
        |w: u64| (w.wrapping_sub(ONES * 33) & !w & HIGHS) | ((w.wrapping_add(ONES) | w) & HIGHS);
    scan_head(hay, hay.len(), hits, |b| !(33..=126).contains(&b)).unwrap_or_else(|len| len)
}

/// `memchr(needle, hay)`, reading the first [`SHORT_SCAN_BYTES`] bytes
/// directly.
#[inline]
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    let head = hay.len().min(SHORT_SCAN_BYTES);
    let pattern = ONES * u64::from(needle);
    match scan_head(hay, head, |w| zero_bytes(w ^ pattern), |b| b == needle) {
        Ok(i) => Some(i),
        Err(head) => memchr::memchr(needle, &hay[head..]).map(|i| head + i),
    }
}

/// `memchr2(a, b, hay)`, reading the first [`SHORT_SCAN_BYTES`] bytes
/// directly.
#[inline]
pub(crate) fn find_byte2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    let head = hay.len().min(SHORT_SCAN_BYTES);
    let (pa, pb) = (ONES * u64::from(a), ONES * u64::from(b));
    // The lowest set bit of either mask is exact, so of their union too.
    let hits = |w: u64| zero_bytes(w ^ pa) | zero_bytes(w ^ pb);
    match scan_head(hay, head, hits, |x| x == a || x == b) {
        Ok(i) => Some(i),
        Err(head) => memchr::memchr2(a, b, &hay[head..]).map(|i| head + i),
    }
}

/// Unescapes `raw` into the arena when it contains a backslash: `\` before
/// a byte in `escapes` (given as pairs of escaped byte and result) becomes
/// the result; any other backslash is kept as written. Without a backslash
/// `raw` itself is returned.
pub(crate) fn unescape<'a>(
    raw: &'a [u8],
    escapes: &[(u8, u8)],
    arena: &mut Arena<'a>,
) -> Option<&'a [u8]> {
    if find_byte(b'\\', raw).is_none() {
        return Some(raw);
    }
    arena.fill(raw.len(), |buf| {
        // Unescaping never lengthens: each escape pair gives one byte.
        debug_assert_eq!(buf.len(), raw.len());
        let mut out = 0;
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b == b'\\' {
                if let Some(&(_, to)) = raw
                    .get(i + 1)
                    .and_then(|next| escapes.iter().find(|(from, _)| from == next))
                {
                    buf[out] = to;
                    out += 1;
                    i += 2;
                    continue;
                }
            }
            buf[out] = b;
            out += 1;
            i += 1;
        }
        Some(out)
    })
}

/// [`unescape`] for a value whose scan already said whether it holds a
/// backslash (`backslash`; a stray `true` only costs the scan): without
/// one, `raw` itself, unread.
#[inline]
pub(crate) fn unescape_scanned<'a>(
    raw: &'a [u8],
    backslash: bool,
    escapes: &[(u8, u8)],
    arena: &mut Arena<'a>,
) -> Option<&'a [u8]> {
    debug_assert!(backslash || !raw.contains(&b'\\'));
    if backslash {
        unescape(raw, escapes, arena)
    } else {
        Some(raw)
    }
}

/// Bytes allowed in a key read from text (CEF extensions, LEEF, kv).
pub fn is_key_byte(b: u8) -> bool {
    KEY_BYTES[usize::from(b)]
}

/// [`is_key_byte`] as a table: ASCII letters and digits, `_ . - @ [ ]`.
static KEY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'@' | b'[' | b']');
        b += 1;
    }
    table
};

/// Longest key read from text; longer `xxx=` runs are values, not keys.
pub const KEY_BYTES_MAX: usize = 64;

/// A field name read from the wire as `&str`. Names are nearly always
/// ASCII (key bytes are, by [`is_key_byte`]); checking that inline costs a
/// fraction of the out-of-line UTF-8 validation, which took 2-3% of a
/// core's time on key=value traffic.
#[inline]
pub(crate) fn key_text(key: &[u8]) -> Option<&str> {
    if key.is_ascii() {
        // SAFETY: every byte is ASCII, and ASCII is UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(key) })
    } else {
        std::str::from_utf8(key).ok()
    }
}

/// Whether `name` was already pushed at or after `from` (first wins).
pub(crate) fn pushed_since(fields: &Fields<'_>, from: usize, name: &str) -> bool {
    fields.as_slice()[from.min(fields.len())..]
        .iter()
        .any(|(n, _)| *n == name)
}

/// First-wins bookkeeping for one decoder's keys: a 128-bit filter of the
/// keys already checked, so that the exact scan over the pushed fields
/// (quadratic in the field count) runs only for likely repeats. A key's
/// bit comes from its length and first, second and last bytes (netfilter's
/// `DST` and `DPT` share all but the second), mixed by one multiply; the
/// filter is two words, which one shift and mask address.
pub(crate) struct SeenKeys {
    bits: [u64; 2],
    start: usize,
}

impl SeenKeys {
    /// Tracks the keys pushed from field index `start` on.
    pub(crate) fn new(start: usize) -> Self {
        SeenKeys {
            bits: [0; 2],
            start,
        }
    }

    /// Whether `key` was already pushed by this decoder.
    #[inline]
    pub(crate) fn seen(&mut self, fields: &Fields<'_>, key: &str) -> bool {
        let bytes = key.as_bytes();
        let byte = |i: usize| u64::from(bytes.get(i).copied().unwrap_or(0));
        let last = bytes.len().saturating_sub(1);
        let packed = bytes.len() as u64 | byte(0) << 16 | byte(1) << 24 | byte(last) << 32;
        // Top seven bits of the product: 128 positions.
        let at = (packed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as usize;
        let (word, bit) = (at >> 6, 1u64 << (at & 63));
        if self.bits[word] & bit == 0 {
            self.bits[word] |= bit;
            return false;
        }
        pushed_since(fields, self.start, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cef_source` gives the source `payload` finds, or nothing: never
    /// another one, and `Some` for a plain CEF message in any of the
    /// places `payload` looks for it.
    #[test]
    fn a_cef_source_from_the_header_is_the_one_the_decode_finds() {
        let cases: &[(&str, bool)] = &[
            (
                "CEF:0|Palo Alto|PAN-OS|10|T|end|3|src=10.0.0.1 suser=a\\\\b",
                true,
            ),
            ("   CEF:0|V|P|1|2|n|3|", true),
            ("fw-1 CEF:1|V|P|1|2|n|3|act=deny", true),
            ("CEF:0|V\\|x|P|1|2|n|3|act=deny", false),
            ("CEF:0|V|P\\\\|1|2|n|3|", false),
            ("CEF:0|V|P|1|2|n", false),
            ("{\"a\":\"CEF:0|V|P|1|2|n|3|\"}", false),
            ("@cee: {\"a\":1} CEF:0|V|P|1|2|n|3|", false),
            ("<Event><x>CEF:0|V|P|1|2|n|3|</x></Event>", false),
            ("LEEF:1.0|V|P|1|E|src=1.2.3.4", false),
            ("devname=\"fw\" srcip=1.2.3.4", false),
            ("text CEF:x|V|P|1|2|n|3|", false),
        ];
        let mut scratch = DecodeScratch::default();
        for (message, cheap) in cases {
            let message = message.as_bytes();
            let (mut arena, json) = scratch.prepare(message.len());
            let mut fields = Fields::new();
            let decoded = payload(b"", message, &mut arena, json, &mut fields);
            let from_header = cef_source(message);
            assert_eq!(
                from_header.is_some(),
                *cheap,
                "{}",
                String::from_utf8_lossy(message)
            );
            if let Some(source) = from_header {
                assert_eq!(decoded.decoder, Some(Decoder::Cef));
                assert_eq!(decoded.source, Some(source));
            }
        }
    }

    #[test]
    fn printable_runs_end_at_the_first_byte_outside_printusascii() {
        // Every byte value at every offset of a 20-byte run (eight-byte
        // words and the byte-wise tail), with printable bytes of every
        // value before it.
        for stop in 0..=255u8 {
            for at in 0..20 {
                let mut hay: Vec<u8> = (0..20).map(|i| 33 + (i * 7 % 94) as u8).collect();
                hay[at] = stop;
                let want = if (33..=126).contains(&stop) { 20 } else { at };
                assert_eq!(printable_len(&hay), want, "byte {stop} at {at}");
                // Bytes after the first stop cannot move it.
                hay.extend_from_slice(&[0xFF, 0x7F, 0, b' ']);
                assert_eq!(printable_len(&hay), if want == 20 { 20 } else { at });
            }
        }
        assert_eq!(printable_len(b""), 0);
        assert_eq!(printable_len(b"~~~~~~~~\x7f"), 8);
        assert_eq!(printable_len(b"abcdefg\xff\x00"), 7);
    }

    #[test]
    fn arena_hands_out_disjoint_pieces_and_refuses_when_full() {
        let mut buffer = [0u8; 16];
        let mut arena = Arena::over(&mut buffer);
        let a = arena.concat_str(&["ab", ".", "c"]).unwrap();
        let b = arena.decimal(1234).unwrap();
        assert_eq!((a, b), ("ab.c", "1234"));
        assert_eq!(arena.remaining(), 8);
        assert!(arena.take(9).is_none());
        assert!(arena.full);
        let c = arena.format(format_args!("{:?}", 1.5f64)).unwrap();
        assert_eq!(c, "1.5");
        assert_eq!(a, "ab.c");
    }

    #[test]
    fn a_full_arena_refuses_instead_of_writing_past_its_end() {
        let mut buffer = [0u8; 4];
        let mut arena = Arena::over(&mut buffer);
        let esc = &[(b'n', b'\n')];
        assert!(unescape(br"a\nbcdef", esc, &mut arena).is_none());
        assert!(arena.full);
        assert_eq!(arena.remaining(), 4);
        assert_eq!(unescape(br"a\nb", esc, &mut arena), Some(&b"a\nb"[..]));
    }

    /// The word-at-a-time short scans agree with a plain search on every
    /// length across the short head and with matches at every offset,
    /// next to the bytes that make borrows (0x00, 0x01, 0x80, 0xff, the
    /// needle plus one).
    #[test]
    fn short_scans_agree_with_a_plain_search() {
        let fillers = [b'x', 0x00, 0x01, 0x80, 0xff, b'=' + 1, b'\\' + 1];
        for len in 0..48 {
            for &filler in &fillers {
                for first in (0..=len).chain([usize::MAX]) {
                    for second in [first.wrapping_add(1), first.wrapping_add(9), 3, usize::MAX] {
                        let mut hay = vec![filler; len];
                        if let Some(byte) = hay.get_mut(first) {
                            *byte = b'=';
                        }
                        if let Some(byte) = hay.get_mut(second) {
                            *byte = b'\\';
                        }
                        let plain1 = hay.iter().position(|&b| b == b'=');
                        let plain2 = hay.iter().position(|&b| b == b'=' || b == b'\\');
                        assert_eq!(find_byte(b'=', &hay), plain1, "{hay:?}");
                        assert_eq!(find_byte2(b'=', b'\\', &hay), plain2, "{hay:?}");
                        assert_eq!(
                            find_byte(0x00, &hay),
                            hay.iter().position(|&b| b == 0),
                            "{hay:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn seen_keys_agrees_with_a_set() {
        // Keys that share length, first and last bytes (netfilter's DST and
        // DPT), one-byte and empty keys, and many random ones: `seen` is
        // true exactly for a key already pushed since `start`.
        let mut names: Vec<String> = [
            "DST", "DPT", "SRC", "SPT", "a", "", "ab", "ba", "aXb", "aYb",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..400 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 9) as usize;
            names.push(
                (0..len)
                    .map(|i| (b'a' + ((state >> (i * 5)) % 6) as u8) as char)
                    .collect(),
            );
        }
        let mut fields = Fields::new();
        fields.push("before", b"x");
        let mut seen = SeenKeys::new(fields.len());
        let mut set = std::collections::HashSet::new();
        for name in &names {
            if fields.is_full() {
                break;
            }
            let repeat = !set.insert(name.clone());
            assert_eq!(seen.seen(&fields, name), repeat, "{name:?}");
            if !repeat {
                fields.push(name, b"v");
            }
        }
        // A field pushed before `start` does not count.
        assert!(!seen.seen(&fields, "before"));
    }

    #[test]
    fn key_text_takes_ascii_and_utf8_and_refuses_the_rest() {
        assert_eq!(key_text(b"SRC"), Some("SRC"));
        assert_eq!(key_text("clé".as_bytes()), Some("clé"));
        assert_eq!(key_text(b""), Some(""));
        assert_eq!(key_text(b"a\xffb"), None);
    }

    #[test]
    fn short_searches_agree_with_memchr() {
        for len in 0..80 {
            for at in 0..=len {
                let mut hay = vec![b'x'; len];
                if at < len {
                    hay[at] = b'=';
                }
                let want = memchr::memchr(b'=', &hay);
                assert_eq!(find_byte(b'=', &hay), want, "{len} {at}");
                assert_eq!(find_byte2(b'=', b'\\', &hay), want, "{len} {at}");
                assert_eq!(find_byte2(b'\\', b'=', &hay), want, "{len} {at}");
            }
        }
    }

    #[test]
    fn unescape_only_when_needed() {
        let mut buffer = [0u8; 64];
        let mut arena = Arena::over(&mut buffer);
        let esc = &[(b'=', b'='), (b'\\', b'\\'), (b'n', b'\n')];
        let raw = b"plain";
        let same = unescape(raw, esc, &mut arena).unwrap();
        assert_eq!(same.as_ptr(), raw.as_ptr());
        assert_eq!(
            unescape(br"a\=b\\c\nd\x\", esc, &mut arena).unwrap(),
            b"a=b\\c\nd\\x\\"
        );
    }

    #[test]
    fn ef_colons_found_at_every_offset() {
        // Every length up to past two blocks of either width, an `EF:`
        // ending at every place, and near-misses around it that must not
        // count; each block width on its own where the text is long
        // enough for it.
        type Scan = fn(&[u8], &mut dyn FnMut(usize) -> bool);
        let mut scans: Vec<(&str, usize, Scan)> =
            vec![("ef_colons", 0, |t, each| ef_colons(t, each))];
        #[cfg(target_arch = "x86_64")]
        {
            scans.push(("sse2", 18, |t, mut each| ef_colons_sse2(t, &mut each)));
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked just above).
                scans.push(("avx2", 34, |t, mut each| unsafe {
                    ef_colons_avx2(t, &mut each)
                }));
            }
        }
        for len in 0..110 {
            for colon in 2..len.max(2) {
                let mut text = vec![b':'; len];
                for (i, b) in text.iter_mut().enumerate() {
                    *b = [b'E', b'F', b':', b'x'][(i * 7 + len) % 4];
                }
                text[colon - 2..=colon].copy_from_slice(b"EF:");
                let want: Vec<usize> = (2..len).filter(|&i| &text[i - 2..=i] == b"EF:").collect();
                for &(name, min_len, scan) in &scans {
                    if len < min_len {
                        continue;
                    }
                    let mut got = Vec::new();
                    scan(&text, &mut |at| {
                        got.push(at);
                        true
                    });
                    assert_eq!(got, want, "{name} {:?}", String::from_utf8_lossy(&text));
                    assert!(got.contains(&colon));
                    // Stopping after the first.
                    let mut first = Vec::new();
                    scan(&text, &mut |at| {
                        first.push(at);
                        false
                    });
                    assert_eq!(first, want[..1], "{name}");
                }
            }
        }
    }

    #[test]
    fn markers_at_start_or_after_a_space() {
        let cef = |text: &[u8]| find_markers(text).0;
        let leef = |text: &[u8]| find_markers(text).1;
        assert_eq!(cef(b"CEF:0|a"), Some(0));
        assert_eq!(cef(b"host CEF:1|a"), Some(5));
        assert_eq!(cef(b"xCEF:0|a"), None);
        assert_eq!(cef(b"CEF:x|a"), None);
        assert_eq!(cef(b"CEF:"), None);
        assert_eq!(leef(b"LEEF:2.0|a"), Some(0));
        assert_eq!(leef(b"h LEEF:1.0|a"), Some(2));
        assert_eq!(leef(b"xLEEF:1.0|a"), None);
        assert_eq!(leef(b"EEF:1.0|a"), None);
        assert_eq!(cef(b"EEF:1.0|a"), None);
        // Both present: the first of each, whichever comes first.
        assert_eq!(
            find_markers(b"LEEF:1.0|x CEF:0|y LEEF:2.0|z"),
            (Some(11), Some(0))
        );
        assert_eq!(find_markers(b"CEF:0|y LEEF:2.0|z").0, Some(0));
        // The window: a marker starting at the last allowed byte counts,
        // one byte later does not.
        let mut at_edge = vec![b'a'; MARKER_SEARCH_BYTES_MAX - 1];
        at_edge.extend_from_slice(b" CEF:0|a");
        assert_eq!(cef(&at_edge), Some(MARKER_SEARCH_BYTES_MAX));
        let mut past = vec![b'a'; MARKER_SEARCH_BYTES_MAX];
        past.extend_from_slice(b" CEF:0|a");
        assert_eq!(cef(&past), None);
        let mut leef_edge = vec![b'a'; MARKER_SEARCH_BYTES_MAX - 1];
        leef_edge.extend_from_slice(b" LEEF:1.0|a");
        assert_eq!(leef(&leef_edge), Some(MARKER_SEARCH_BYTES_MAX));
        leef_edge.insert(0, b'a');
        assert_eq!(leef(&leef_edge), None);
    }
}
