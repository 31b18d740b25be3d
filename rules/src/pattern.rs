//! Compiled value patterns: how one Sigma value string matches one field.
//!
//! This module owns the translation of a Sigma value (with its wildcards,
//! escapes and string modifiers) into the cheapest matcher that decides it:
//! an exact comparison, a prefix or suffix test, a `memchr::memmem` finder, a
//! small glob matcher, or a `regex::bytes::Regex`. It must not allocate while
//! matching: case folding happens once per field value into the caller's
//! [`Scratch`] buffer, and every pattern here reads that folded copy.
//!
//! Case rules (Sigma): plain values match case-insensitively, which we do by
//! ASCII-folding both the pattern (at compile time) and the value (per
//! event). Bytes outside ASCII, including invalid UTF-8, compare exactly.
//! Regular expressions are case-sensitive unless they carry the `i` flag, and
//! they see the original bytes.

use memchr::memmem;

use crate::detection::PREFILTER_LITERAL_BYTES_MIN;
use crate::error::RuleErrorKind;
use crate::event::Event;
use crate::field::{FieldIndex, FieldName, FieldTable, ShapeKey};

/// Size limit for one compiled regular expression. Rules come from outside,
/// so a pathological pattern must fail to compile rather than take the
/// memory of a shard. This is the regex crate's own default, stated here so
/// it cannot drift; 1 MiB refused a SigmaHQ rule (`\w{1,64}` is large in
/// Unicode mode).
const REGEX_SIZE_BYTES_MAX: usize = 10 << 20;

/// Reusable per-caller buffers for matching, so that evaluating rules does
/// not allocate per event. One `Scratch` per core (or per thread) is enough;
/// it grows to the longest field value seen and stays there.
#[derive(Debug, Default)]
pub struct Scratch {
    folded: Vec<u8>,
    /// The prefilter's candidate rules, one bit per detection.
    candidates: Vec<u64>,
    /// The current event's fields by field-name id.
    fields: FieldIndex,
}

impl Scratch {
    /// An empty scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// The fold buffer and the candidate bitset, borrowed apart so the
    /// prefilter can fold a value and mark rules at once.
    pub(crate) fn split(&mut self) -> (&mut Vec<u8>, &mut Vec<u64>) {
        (&mut self.folded, &mut self.candidates)
    }

    /// Takes the candidate bitset out (so matching can use the fold buffer
    /// while reading it); [`Scratch::restore_candidates`] puts it back.
    pub(crate) fn take_candidates(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.candidates)
    }

    /// Returns the bitset taken by [`Scratch::take_candidates`], keeping its
    /// allocation for the next event.
    pub(crate) fn restore_candidates(&mut self, candidates: Vec<u64>) {
        self.candidates = candidates;
    }

    /// Indexes `event`'s fields under `table`; [`Scratch::field`] then
    /// reads them in O(1) until the next call.
    pub(crate) fn index_fields(&mut self, table: &FieldTable, event: &Event<'_>) {
        self.fields.build(table, event);
    }

    /// [`Scratch::index_fields`] with the key of the shape whose names
    /// `event` is known to carry (see [`ShapeKey`]); returns the key of
    /// the shape it was indexed from or remembered as.
    pub(crate) fn index_fields_shaped(
        &mut self,
        table: &FieldTable,
        event: &Event<'_>,
        known: Option<ShapeKey>,
    ) -> Option<ShapeKey> {
        self.fields.build_shaped(table, event, known)
    }

    /// The value `field` resolves to in `event`, the event last indexed by
    /// [`Scratch::index_fields`].
    #[inline]
    pub(crate) fn field<'a>(&self, field: &FieldName, event: &Event<'a>) -> Option<&'a [u8]> {
        self.fields.get(field, event)
    }

    /// The value `field` (interned in `table`) resolves to in `event`:
    /// read from the index when the last indexing was of `event` under
    /// `table`, else resolved by name.
    #[inline]
    pub(crate) fn field_if_indexed<'a>(
        &self,
        table: &FieldTable,
        field: &FieldName,
        event: &Event<'a>,
    ) -> Option<&'a [u8]> {
        if self.fields.holds(table, event) {
            self.fields.get(field, event)
        } else {
            field.resolve(event)
        }
    }

    /// ASCII-lowercases `value` into the scratch buffer and returns the copy.
    pub(crate) fn fold<'s>(&'s mut self, value: &[u8]) -> &'s [u8] {
        self.folded.clear();
        self.folded
            .extend(value.iter().map(|byte| byte.to_ascii_lowercase()));
        debug_assert_eq!(self.folded.len(), value.len());
        &self.folded
    }
}

/// One token of a parsed Sigma value string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GlobToken {
    /// A literal byte (already case-folded where the match is insensitive).
    Byte(u8),
    /// `?`: exactly one character (one UTF-8 scalar, or one byte where the
    /// input is not valid UTF-8 at that position).
    One,
    /// `*`: any run of bytes, including none.
    Star,
}

/// How a value string is anchored, from the `contains`, `startswith` and
/// `endswith` modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Anchor {
    /// The whole value must match.
    Whole,
    /// `contains`: the value may appear anywhere.
    Contains,
    /// `startswith`: the value must be at the beginning.
    StartsWith,
    /// `endswith`: the value must be at the end.
    EndsWith,
}

/// Parses a Sigma value string into glob tokens, honouring the escape rules
/// of the Sigma specification: `\*`, `\?` and `\\` are literals, and a
/// backslash before any other character is a plain backslash.
pub(crate) fn parse_glob(text: &str, anchor: Anchor, fold: bool) -> Vec<GlobToken> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::with_capacity(bytes.len() + 2);
    if matches!(anchor, Anchor::Contains | Anchor::EndsWith) {
        tokens.push(GlobToken::Star);
    }
    let literal = |byte: u8| {
        GlobToken::Byte(if fold {
            byte.to_ascii_lowercase()
        } else {
            byte
        })
    };
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'\\' => match bytes.get(i + 1) {
                Some(&next @ (b'*' | b'?' | b'\\')) => {
                    tokens.push(literal(next));
                    i += 2;
                }
                _ => {
                    tokens.push(literal(b'\\'));
                    i += 1;
                }
            },
            b'*' => {
                tokens.push(GlobToken::Star);
                i += 1;
            }
            b'?' => {
                tokens.push(GlobToken::One);
                i += 1;
            }
            _ => {
                tokens.push(literal(byte));
                i += 1;
            }
        }
    }
    if matches!(anchor, Anchor::Contains | Anchor::StartsWith) {
        tokens.push(GlobToken::Star);
    }
    // Consecutive stars mean the same as one; collapsing them keeps the
    // classification below simple and the glob matcher linear in practice.
    tokens.dedup_by(|a, b| *a == GlobToken::Star && *b == GlobToken::Star);
    tokens
}

/// Tokens for bytes that are all literal (an encoded value, where `*` or
/// `?` in the output are data, not wildcards), anchored like
/// [`parse_glob`].
pub(crate) fn literal_glob(bytes: &[u8], anchor: Anchor, fold: bool) -> Vec<GlobToken> {
    let mut tokens = Vec::with_capacity(bytes.len() + 2);
    if matches!(anchor, Anchor::Contains | Anchor::EndsWith) {
        tokens.push(GlobToken::Star);
    }
    tokens.extend(bytes.iter().map(|&byte| {
        GlobToken::Byte(if fold {
            byte.to_ascii_lowercase()
        } else {
            byte
        })
    }));
    if matches!(anchor, Anchor::Contains | Anchor::StartsWith) {
        tokens.push(GlobToken::Star);
    }
    tokens.dedup_by(|a, b| *a == GlobToken::Star && *b == GlobToken::Star);
    tokens
}

/// The most literals a regex may contribute to the prefilter;
/// beyond that it is evaluated on every event of its log source.
const REGEX_LITERALS_MAX: usize = 32;

/// Literals of which every match of `hir` contains one, ASCII-lowercased
/// and deduplicated: the most selective of its prefix literals (every
/// match starts with one), its suffix literals (every match ends with
/// one), and, for a concatenation, the prefix literals of each part (every
/// match contains a match of each part). `net\s+config` is searched for
/// `config` rather than `net`, which `netsvcs` and `netstat` contain.
/// `None` when no set is finite, small enough and made of literals long
/// enough to be selective (an empty literal means the regex can match
/// anywhere).
fn regex_literals(hir: &regex_syntax::hir::Hir) -> Option<Box<[Box<[u8]>]>> {
    use regex_syntax::hir::literal::ExtractKind;
    use regex_syntax::hir::HirKind;
    let mut top = hir;
    while let HirKind::Capture(capture) = top.kind() {
        top = &capture.sub;
    }
    let parts: &[regex_syntax::hir::Hir] = match top.kind() {
        HirKind::Concat(parts) => parts,
        _ => &[],
    };
    let whole = [(top, ExtractKind::Prefix), (top, ExtractKind::Suffix)];
    let mut best: Option<(LiteralScore, Vec<Box<[u8]>>)> = None;
    for (part, kind) in whole
        .into_iter()
        .chain(parts.iter().map(|part| (part, ExtractKind::Prefix)))
    {
        let Some(set) = literal_set(part, kind) else {
            continue;
        };
        let score = LiteralScore::of(&set);
        if best.as_ref().is_none_or(|(known, _)| score > *known) {
            best = Some((score, set));
        }
    }
    best.map(|(_, set)| set.into_boxed_slice())
}

/// The literals `extract` finds in `hir` (every match of `hir` starts, or
/// ends, with one), lowercased, if they are few enough and each long
/// enough to prefilter on.
fn literal_set(
    hir: &regex_syntax::hir::Hir,
    kind: regex_syntax::hir::literal::ExtractKind,
) -> Option<Vec<Box<[u8]>>> {
    let mut extractor = regex_syntax::hir::literal::Extractor::new();
    extractor.kind(kind).limit_total(REGEX_LITERALS_MAX * 8);
    let seq = extractor.extract(hir);
    let literals = seq.literals()?;
    let mut out: Vec<Box<[u8]>> = literals
        .iter()
        .map(|literal| literal.as_bytes().to_ascii_lowercase().into_boxed_slice())
        .collect();
    out.sort_unstable();
    out.dedup();
    let selective = out.iter().all(|l| l.len() >= PREFILTER_LITERAL_BYTES_MIN);
    (selective && !out.is_empty() && out.len() <= REGEX_LITERALS_MAX).then_some(out)
}

/// How selective a literal set is, best highest: its shortest literal
/// (past eight bytes every length is rare enough), then fewer literals,
/// then the shortest literal's full length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LiteralScore {
    shortest_capped: usize,
    fewer: std::cmp::Reverse<usize>,
    shortest: usize,
}

impl LiteralScore {
    fn of(set: &[Box<[u8]>]) -> LiteralScore {
        let shortest = set.iter().map(|l| l.len()).min().unwrap_or(0);
        LiteralScore {
            shortest_capped: shortest.min(8),
            fewer: std::cmp::Reverse(set.len()),
            shortest,
        }
    }
}

/// A compiled matcher for one value string.
#[derive(Clone, Debug)]
pub(crate) enum Pattern {
    /// The whole value equals these bytes.
    Exact(Box<[u8]>),
    /// The value starts with these bytes.
    Prefix(Box<[u8]>),
    /// The value ends with these bytes.
    Suffix(Box<[u8]>),
    /// The value contains these bytes.
    Contains(Box<memmem::Finder<'static>>),
    /// Anything else with wildcards.
    Glob(Box<[GlobToken]>),
    /// A `|re` regular expression, matched against the original bytes.
    /// A regex, and literals of which every match contains one (its
    /// prefixes, suffixes or a part's; `None` where no selective finite
    /// set is known), for the prefilter.
    Regex(regex::bytes::Regex, Option<Box<[Box<[u8]>]>>),
    /// A `|cidr` network: the value must parse as an IP address inside it.
    Cidr(Cidr),
}

/// An IPv4 or IPv6 network from a `|cidr` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cidr {
    /// Network bits (already masked) and prefix length.
    V4(u32, u8),
    /// Network bits (already masked) and prefix length.
    V6(u128, u8),
}

impl Cidr {
    /// Parses `address/prefix` (a bare address means a host route).
    pub(crate) fn parse(text: &str) -> Result<Cidr, RuleErrorKind> {
        let invalid = || RuleErrorKind::invalid(format!("'{text}' is not a CIDR network"));
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => {
                (address, Some(prefix.parse::<u8>().map_err(|_| invalid())?))
            }
            None => (text.trim(), None),
        };
        match address.parse::<std::net::IpAddr>().map_err(|_| invalid())? {
            std::net::IpAddr::V4(v4) => {
                let prefix = prefix.unwrap_or(32);
                if prefix > 32 {
                    return Err(invalid());
                }
                Ok(Cidr::V4(u32::from(v4) & mask_u32(prefix), prefix))
            }
            std::net::IpAddr::V6(v6) => {
                let prefix = prefix.unwrap_or(128);
                if prefix > 128 {
                    return Err(invalid());
                }
                Ok(Cidr::V6(u128::from(v6) & mask_u128(prefix), prefix))
            }
        }
    }

    /// Whether `value` is an IP address text inside this network. Values
    /// that are not UTF-8 or not an address simply do not match. An
    /// IPv4-mapped IPv6 address is compared as IPv4.
    fn contains(&self, value: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(value) else {
            return false;
        };
        let Ok(address) = text.trim().parse::<std::net::IpAddr>() else {
            return false;
        };
        let address = match address {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        match (self, address) {
            (Cidr::V4(network, prefix), std::net::IpAddr::V4(v4)) => {
                u32::from(v4) & mask_u32(*prefix) == *network
            }
            (Cidr::V6(network, prefix), std::net::IpAddr::V6(v6)) => {
                u128::from(v6) & mask_u128(*prefix) == *network
            }
            _ => false,
        }
    }
}

fn mask_u32(prefix: u8) -> u32 {
    debug_assert!(prefix <= 32);
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_u128(prefix: u8) -> u128 {
    debug_assert!(prefix <= 128);
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Pattern {
    /// Picks the cheapest matcher that decides `tokens`.
    pub(crate) fn from_tokens(tokens: &[GlobToken]) -> Pattern {
        let literal = |part: &[GlobToken]| -> Option<Box<[u8]>> {
            part.iter()
                .map(|token| match token {
                    GlobToken::Byte(byte) => Some(*byte),
                    GlobToken::One | GlobToken::Star => None,
                })
                .collect()
        };
        let starts_star = tokens.first() == Some(&GlobToken::Star);
        let ends_star = tokens.len() > 1 && tokens.last() == Some(&GlobToken::Star);
        let inner_start = usize::from(starts_star);
        let inner_end = tokens.len() - usize::from(ends_star);
        let inner = &tokens[inner_start..inner_end.max(inner_start)];
        if let Some(bytes) = literal(inner) {
            return match (starts_star, ends_star) {
                (false, false) => Pattern::Exact(bytes),
                (false, true) => Pattern::Prefix(bytes),
                (true, false) => Pattern::Suffix(bytes),
                (true, true) => {
                    Pattern::Contains(Box::new(memmem::Finder::new(&bytes).into_owned()))
                }
            };
        }
        Pattern::Glob(tokens.into())
    }

    /// Compiles a `|re` value with its `i`, `m` and `s` flags.
    pub(crate) fn regex(
        text: &str,
        insensitive: bool,
        multi_line: bool,
        dot_all: bool,
    ) -> Result<Pattern, RuleErrorKind> {
        let regex = regex::bytes::RegexBuilder::new(text)
            .case_insensitive(insensitive)
            .multi_line(multi_line)
            .dot_matches_new_line(dot_all)
            .size_limit(REGEX_SIZE_BYTES_MAX)
            .build()
            .map_err(|error| RuleErrorKind::Regex(error.to_string()))?;
        // Parsed with the regex's own case sensitivity: case-insensitive
        // matching folds Unicode simple cases, so `k` also matches the
        // Kelvin sign (U+212A) and `s` the long s (U+017F), which ASCII
        // folding of the value does not turn into `k` and `s`; the
        // extractor lists those variants as needles of their own.
        let literals = regex_syntax::ParserBuilder::new()
            .case_insensitive(insensitive)
            .multi_line(multi_line)
            .dot_matches_new_line(dot_all)
            .utf8(false)
            .build()
            .parse(text)
            .ok()
            .and_then(|hir| regex_literals(&hir));
        Ok(Pattern::Regex(regex, literals))
    }

    /// The literal needle of a plain `contains` pattern, used to merge many
    /// of them into one Aho-Corasick automaton.
    pub(crate) fn contains_needle(&self) -> Option<&[u8]> {
        match self {
            Pattern::Contains(finder) => Some(finder.needle()),
            _ => None,
        }
    }

    /// A literal every matching value contains: the whole literal of the
    /// anchored kinds, the longest literal run of a glob. `None` for
    /// regexes and networks.
    pub(crate) fn literal(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        use std::borrow::Cow;
        match self {
            Pattern::Exact(bytes) | Pattern::Prefix(bytes) | Pattern::Suffix(bytes) => {
                Some(Cow::Borrowed(bytes))
            }
            Pattern::Contains(finder) => Some(Cow::Borrowed(finder.needle())),
            Pattern::Glob(tokens) => {
                let mut best: Vec<u8> = Vec::new();
                let mut run: Vec<u8> = Vec::new();
                for token in tokens.iter().chain(std::iter::once(&GlobToken::Star)) {
                    match token {
                        GlobToken::Byte(byte) => run.push(*byte),
                        GlobToken::One | GlobToken::Star => {
                            if run.len() > best.len() {
                                best = std::mem::take(&mut run);
                            }
                            run.clear();
                        }
                    }
                }
                Some(Cow::Owned(best))
            }
            Pattern::Regex(..) | Pattern::Cidr(_) => None,
        }
    }

    /// Where [`Pattern::literal`] (and [`Pattern::literals`]) must sit in
    /// a value this pattern matches.
    pub(crate) fn literal_anchor(&self) -> Anchor {
        match self {
            Pattern::Exact(_) => Anchor::Whole,
            Pattern::Prefix(_) => Anchor::StartsWith,
            Pattern::Suffix(_) => Anchor::EndsWith,
            Pattern::Contains(_) | Pattern::Glob(_) | Pattern::Regex(..) | Pattern::Cidr(_) => {
                Anchor::Contains
            }
        }
    }

    /// Literals (ASCII-lowercased) of which every value this pattern
    /// matches contains one, or `None` where no such set is known. For all
    /// but regexes, the one [`Pattern::literal`].
    pub(crate) fn literals(&self) -> Option<Vec<std::borrow::Cow<'_, [u8]>>> {
        match self {
            Pattern::Regex(_, literals) => literals.as_ref().map(|all| {
                all.iter()
                    .map(|l| std::borrow::Cow::Borrowed(&l[..]))
                    .collect()
            }),
            _ => self.literal().map(|literal| vec![literal]),
        }
    }

    /// Whether this pattern matches. `folded` is the value as the pattern
    /// expects it (ASCII-lowercased unless the match is case-sensitive) and
    /// `raw` the original bytes, which only regular expressions read.
    pub(crate) fn matches(&self, folded: &[u8], raw: &[u8]) -> bool {
        match self {
            Pattern::Exact(bytes) => folded == &bytes[..],
            Pattern::Prefix(bytes) => folded.starts_with(bytes),
            Pattern::Suffix(bytes) => folded.ends_with(bytes),
            Pattern::Contains(finder) => finder.find(folded).is_some(),
            Pattern::Glob(tokens) => glob_matches(tokens, folded),
            Pattern::Regex(regex, _) => regex.is_match(raw),
            Pattern::Cidr(network) => network.contains(raw),
        }
    }
}

/// The length of the character starting at `i`: the UTF-8 sequence length
/// where the bytes form a well-formed sequence, otherwise one byte. This is
/// what `?` consumes, so that `?` stands for one character of text and still
/// behaves on binary input.
fn char_len(text: &[u8], i: usize) -> usize {
    debug_assert!(i < text.len());
    let lead = text[i];
    let n = match lead {
        0x00..=0x7f => return 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return 1,
    };
    match text.get(i + 1..i + n) {
        Some(rest) if rest.iter().all(|byte| (0x80..=0xbf).contains(byte)) => n,
        _ => 1,
    }
}

/// Glob matching with single-star backtracking: linear for one star, at most
/// `O(pattern × text)` in general, and no allocation or recursion.
fn glob_matches(tokens: &[GlobToken], text: &[u8]) -> bool {
    let mut p = 0;
    let mut t = 0;
    // The position after the last star seen, and where in the text it is
    // currently assumed to end: on mismatch the star absorbs one more char.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(GlobToken::Star) => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(GlobToken::One) => {
                p += 1;
                t += char_len(text, t);
                continue;
            }
            Some(GlobToken::Byte(byte)) if *byte == text[t] => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((after_star, start)) => {
                let next = start + char_len(text, start);
                star = Some((after_star, next));
                p = after_star;
                t = next;
            }
            None => return false,
        }
    }
    debug_assert_eq!(t, text.len());
    tokens[p.min(tokens.len())..]
        .iter()
        .all(|token| *token == GlobToken::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str, anchor: Anchor) -> Pattern {
        Pattern::from_tokens(&parse_glob(text, anchor, true))
    }

    fn regex_needles(text: &str, insensitive: bool) -> Option<Vec<String>> {
        let Ok(regex) = Pattern::regex(text, insensitive, false, false) else {
            panic!("{text} compiles");
        };
        regex.literals().map(|all| {
            all.iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect()
        })
    }

    #[test]
    fn case_insensitive_regex_needles_cover_unicode_case_folding() {
        // `re|i`: the regex matches the Kelvin sign for `k` and the long s
        // for `s`; a value spelled so must still contain a needle.
        for (text, value) in [
            ("mimikatz", "run MIMI\u{212A}ATZ.exe"),
            (
                r"^C:\\Users\\[^\\]+\\NTUSER\.DAT$",
                "C:\\Users\\bob\\ntu\u{17F}er.dat",
            ),
        ] {
            let Some(needles) = regex_needles(text, true) else {
                panic!("{text} has needles")
            };
            let regex = regex::RegexBuilder::new(text)
                .case_insensitive(true)
                .build()
                .expect("test regex compiles");
            assert!(regex.is_match(value), "{text} must match {value}");
            let folded = value.to_ascii_lowercase();
            assert!(
                needles.iter().any(|n| folded.contains(n.as_str())),
                "{text} matches {value} but none of {needles:?} is in it"
            );
        }
    }

    #[test]
    fn regex_literals_are_what_every_match_contains() {
        assert_eq!(
            regex_needles(r"ipconfig\s+/all", false),
            Some(vec!["ipconfig".to_owned()])
        );
        assert_eq!(
            regex_needles(r"(?:Net|arp)\s+-a", true),
            Some(vec!["arp".to_owned(), "net".to_owned()])
        );
        // Anchors are zero-width: the literal still starts every match.
        assert_eq!(
            regex_needles(r"^cmd\.exe", false),
            Some(vec!["cmd.exe".to_owned()])
        );
        // The most selective set: the suffix where the prefix is short or
        // unknown, a literal from the middle where both ends are classes.
        assert_eq!(
            regex_needles(r"net\s+config", false),
            Some(vec!["config".to_owned()])
        );
        assert_eq!(
            regex_needles(r"[a-z]+\.exe", false),
            Some(vec![".exe".to_owned()])
        );
        assert_eq!(
            regex_needles(r".*evil", false),
            Some(vec!["evil".to_owned()])
        );
        assert_eq!(
            regex_needles(r"\d+\s+-enc\s+\w+", false),
            Some(vec!["-enc".to_owned()])
        );
        assert_eq!(
            regex_needles(r"(cmd|pwsh)\.exe\s+/c", false),
            Some(vec!["cmd.exe".to_owned(), "pwsh.exe".to_owned()])
        );
        // Nothing selective: classes at both ends and no literal between,
        // a short alternative, or a regex that matches the empty string.
        assert_eq!(regex_needles(r"[a-z]+\d+", false), None);
        assert_eq!(regex_needles(r"ab|cdef", false), None);
        assert_eq!(regex_needles(r"(abc)?", false), None);
        // Whatever the set, every match must contain one of its needles.
        let cases: &[(&str, &[&str])] = &[
            (r"ipconfig\s+/all", &["IPCONFIG   /all", "x ipconfig /all"]),
            (r"(?i)mimi(katz|dogz)", &["MimiKatz.exe", "run mimidogz"]),
            (
                r"(psexec|paexec)\.exe",
                &["PsExec.exe", "c:\\paexec.exe -s"],
            ),
            (r"(foo|bar)baz", &["foobaz", "xbarbaz"]),
            (r"net\s+config", &["NET  config", "x net config y"]),
            (r"[a-z]+\.exe", &["a.exe", "C:\\x\\evil.exe /q"]),
            (r"\d+\s+-enc\s+\w+", &["1 -enc SQBF", "x 42  -enc abc"]),
            (
                r"(?i)(cmd|pwsh)\.exe\s+/c",
                &["CMD.EXE /c", "pwsh.exe   /C x"],
            ),
            (r"^(abc|abd)+xyz$", &["abcxyz", "abdabcxyz"]),
        ];
        for (text, values) in cases {
            let Some(needles) = regex_needles(text, false) else {
                panic!("{text} has needles")
            };
            // Case-insensitively, as a `re|i` rule matches: needles are
            // found in the folded value.
            let regex = regex::RegexBuilder::new(text)
                .case_insensitive(true)
                .build()
                .expect("test regex compiles");
            for value in *values {
                assert!(regex.is_match(value), "{text} must match {value}");
                let folded = value.to_ascii_lowercase();
                assert!(
                    needles.iter().any(|n| folded.contains(n.as_str())),
                    "{text} matches {value} but none of {needles:?} is in it"
                );
            }
        }
    }

    fn matches(text: &str, anchor: Anchor, value: &[u8]) -> bool {
        let mut scratch = Scratch::new();
        let folded = scratch.fold(value).to_vec();
        pattern(text, anchor).matches(&folded, value)
    }

    #[test]
    fn classification_picks_the_cheapest_matcher() {
        assert!(matches!(pattern("abc", Anchor::Whole), Pattern::Exact(_)));
        assert!(matches!(pattern("abc*", Anchor::Whole), Pattern::Prefix(_)));
        assert!(matches!(pattern("*abc", Anchor::Whole), Pattern::Suffix(_)));
        assert!(matches!(
            pattern("abc", Anchor::Contains),
            Pattern::Contains(_)
        ));
        assert!(matches!(pattern("a*c", Anchor::Whole), Pattern::Glob(_)));
        assert!(matches!(pattern("a\\*c", Anchor::Whole), Pattern::Exact(_)));
        assert!(matches!(pattern("*", Anchor::Whole), Pattern::Suffix(_)));
    }

    #[test]
    fn escapes_follow_the_specification() {
        assert!(matches("a\\*c", Anchor::Whole, b"a*c"));
        assert!(!matches("a\\*c", Anchor::Whole, b"abc"));
        assert!(matches("a\\?c", Anchor::Whole, b"a?c"));
        assert!(!matches("a\\?c", Anchor::Whole, b"abc"));
        // `\\*` is a backslash followed by a wildcard.
        assert!(matches("a\\\\*", Anchor::Whole, b"a\\xyz"));
        // `\\\*` is a backslash followed by a literal star.
        assert!(matches("a\\\\\\*", Anchor::Whole, b"a\\*"));
        assert!(!matches("a\\\\\\*", Anchor::Whole, b"a\\x"));
        // A backslash before anything else is a plain backslash.
        assert!(matches("c:\\windows", Anchor::Whole, b"C:\\Windows"));
        assert!(matches("trailing\\", Anchor::Whole, b"trailing\\"));
    }

    #[test]
    fn wildcards_match_characters_and_runs() {
        assert!(matches("prog?.exe", Anchor::Whole, b"progA.exe"));
        assert!(!matches("prog?.exe", Anchor::Whole, b"prog.exe"));
        assert!(matches("prog?.exe", Anchor::Whole, "progé.exe".as_bytes()));
        assert!(matches("prog?.exe", Anchor::Whole, b"prog\xff.exe"));
        assert!(matches("a*b*c", Anchor::Whole, b"axxbyyc"));
        assert!(matches("a*b*c", Anchor::Whole, b"abc"));
        assert!(!matches("a*b*c", Anchor::Whole, b"axxbyy"));
        assert!(matches("*a?c*", Anchor::Whole, b"zzabcz"));
        assert!(matches("", Anchor::Whole, b""));
        assert!(!matches("", Anchor::Whole, b"x"));
        assert!(matches("*", Anchor::Whole, b""));
    }

    #[test]
    fn cidr_networks() {
        let net = |text: &str| Cidr::parse(text).map(Pattern::Cidr);
        let hit = |text: &str, value: &[u8]| net(text).is_ok_and(|p| p.matches(value, value));
        assert!(hit("10.0.0.0/8", b"10.200.3.4"));
        assert!(!hit("10.0.0.0/8", b"11.0.0.1"));
        assert!(hit("10.1.2.3/32", b"10.1.2.3"));
        assert!(hit("10.1.2.3", b"10.1.2.3"));
        assert!(hit("0.0.0.0/0", b"192.0.2.1"));
        assert!(!hit("0.0.0.0/0", b"2001:db8::1"));
        assert!(hit("2001:db8::/32", b"2001:DB8::1"));
        assert!(hit("192.168.0.0/16", b"::ffff:192.168.1.1"));
        assert!(!hit("10.0.0.0/8", b"not an ip"));
        assert!(!hit("10.0.0.0/8", b"\xff"));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_is_ascii_case_insensitive_and_bytewise_elsewhere() {
        assert!(matches("FAILED", Anchor::Contains, b"login failed here"));
        assert!(matches(
            "\u{c9}t\u{e9}",
            Anchor::Whole,
            "\u{c9}T\u{e9}".as_bytes()
        ));
        assert!(!matches("\u{e9}", Anchor::Whole, "\u{c9}".as_bytes()));
    }
}
