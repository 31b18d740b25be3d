//! The rule set's prefilter: detections partitioned by log source, then
//! per field within each partition a few needles tested directly or one
//! Aho-Corasick automaton.
//!
//! This module owns the structure that keeps per-event cost from growing
//! with the rule count. At compile time detections are grouped by their
//! compiled `logsource` filter (rules with the same product, category and
//! service share one group; rules without a log source form one open
//! group). Within a group, every detection's *required literals* (a set of
//! (field, needle) of which at least one must occur for the rule to match,
//! from `Detection::required_literals`, each with where it must sit:
//! whole value, start, end or anywhere) are merged per field name. A field
//! with at most [`DIRECT_NEEDLES_MAX`] distinct needles tests them one by
//! one (an anchored needle is one comparison at its end of the value; the
//! others a SIMD substring search over the value folded once); a field
//! with more gets one ASCII case-insensitive automaton over all its
//! needles, searched anywhere (two, in fact: needles with a byte past
//! ASCII are searched only in values that have one). Per event, one pass of the
//! `LogsourceClassifier` decides every group's log source filter; only the
//! admitted groups probe their fields (values read from the scratch's
//! field index). The rules whose literals hit (plus the rules of admitted
//! groups that have no required literals, which are always evaluated) are
//! evaluated fully. A Linux syslog line thus never runs the automata of
//! Windows rules, and a process-creation event never runs those of
//! registry rules.
//!
//! It must not decide a match: it only narrows the set of rules to
//! evaluate, so a rule it lets through still runs its full detection and a
//! rule it drops could not have matched. The one thing a candidate does
//! not re-check is its log source, which its group already passed.
//!
//! **Invariant:** for every detection `d` and event `e`, if `d` matches `e`
//! then `d` is a candidate for `e`, and every candidate's log source filter
//! admits `e`. `tests/prefilter.rs` and `tests/sigmahq.rs` check this
//! against evaluating every rule.

use std::collections::BTreeMap;

use aho_corasick::AhoCorasick;
use memchr::memmem;

use crate::detection::RequiredLiteral;
use crate::logsource::{LogsourceClassifier, LogsourceFilter};

use crate::event::Event;
use crate::field::{FieldName, FieldTableBuilder};
use crate::pattern::{Anchor, Scratch};

/// While building: (needle, anchor) to its owners, per field.
type NeedleTable<'a> = BTreeMap<(&'a [u8], Anchor), Vec<u32>>;

/// One entry of a [`NeedleTable`], borrowed: needle, anchor, owners.
type Needle<'a> = (&'a [u8], Anchor, &'a [u32]);

/// A field with at most this many needles tests them one by one. Past it,
/// anchored needles with at most this many of their kind are still tested
/// one by one (a test reads only the needle's length at its end of the
/// value); more go into an anchored automaton.
const DIRECT_NEEDLES_MAX: usize = 8;

/// Substring needles past [`DIRECT_NEEDLES_MAX`] on a field are searched
/// one by one when at most this many, else all at once
/// ([`ContainsSet`]).
const DIRECT_CONTAINS_MAX: usize = 2;

/// Suffix needles longer than this are searched as substrings (the
/// reversed tail of a value is copied to a stack buffer of this size).
const SUFFIX_BYTES_MAX: usize = 128;

/// Up to this many hits a packed search restarts after each one; past it,
/// the rest of the value goes to the overlapping automaton (a value made
/// of needles would otherwise cost one search start per byte).
const PACKED_RESTARTS_MAX: usize = 16;

/// The most needles one packed (Teddy) searcher takes: the library's own
/// limit (`aho_corasick::packed` builds nothing past it). Its heuristic
/// stops at 64; past that Teddy verifies more false hits, which still
/// costs less than an automaton step per byte. More needles are searched
/// by a leftmost-longest DFA restarted the same way (see [`Restarted`]).
const PACKED_PATTERNS_MAX: usize = 128;

/// Past this many substring needles on a field, each is searched by at
/// most [`SEARCHED_PREFIX_BYTES_MAX`] of its first bytes (see
/// `ContainsSet::build`).
const WHOLE_NEEDLES_MAX: usize = 256;

/// See [`WHOLE_NEEDLES_MAX`].
const SEARCHED_PREFIX_BYTES_MAX: usize = 8;

/// The most needles a restarted DFA takes; past it only the overlapping
/// automaton searches (a DFA over this many needles of SigmaHQ's lengths
/// is a few MiB, built once per rule set).
const RESTARTED_DFA_PATTERNS_MAX: usize = 4_096;

/// Sets candidate bit `rule` for each of `rules`.
#[inline]
fn mark(candidates: &mut [u64], rules: &[u32]) {
    for &rule in rules {
        candidates[rule as usize / 64] |= 1 << (rule % 64);
    }
}

/// One needle tested directly, and the rules it admits.
#[derive(Clone, Debug)]
struct DirectNeedle {
    needle: Box<[u8]>,
    anchor: Anchor,
    /// For `Anchor::Contains`: the substring searcher over folded values.
    finder: Option<memmem::Finder<'static>>,
    owners: Vec<u32>,
}

impl DirectNeedle {
    /// Whether the needle occurs where it must in `value`; `folded` is
    /// `value` ASCII-lowercased (only read for `Contains`).
    #[inline]
    fn hit(&self, value: &[u8], folded: &[u8]) -> bool {
        let n = self.needle.len();
        match self.anchor {
            Anchor::Whole => value.len() == n && value.eq_ignore_ascii_case(&self.needle),
            Anchor::StartsWith => value.len() >= n && value[..n].eq_ignore_ascii_case(&self.needle),
            Anchor::EndsWith => {
                value.len() >= n && value[value.len() - n..].eq_ignore_ascii_case(&self.needle)
            }
            Anchor::Contains => self
                .finder
                .as_ref()
                .is_some_and(|finder| finder.find(folded).is_some()),
        }
    }
}

/// Many anchored needles of one field in one automaton searched anchored
/// (it stops at the first byte no needle continues with): whole-value
/// and prefix needles over the value, or suffix needles reversed over the
/// value's reversed tail.
#[derive(Clone, Debug)]
struct AnchoredSet {
    automaton: AhoCorasick,
    /// Per pattern: rules for which it is a prefix (or reversed suffix).
    prefix_owners: Vec<Vec<u32>>,
    /// Per pattern: rules for which it must be the whole value.
    whole_owners: Vec<Vec<u32>>,
}

impl AnchoredSet {
    /// The set over `needles` (whole-value and prefix needles, or with
    /// `reversed` suffix needles, searched reversed over the value's
    /// reversed tail), in [`NeedleTable`] order: a needle listed both as
    /// the whole value and as a prefix comes twice in a row. `None` if the
    /// automaton cannot be built.
    fn build(needles: &[Needle<'_>], reversed: bool) -> Option<AnchoredSet> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut prefix_owners: Vec<Vec<u32>> = Vec::new();
        let mut whole_owners: Vec<Vec<u32>> = Vec::new();
        for &(needle, anchor, owners) in needles {
            let bytes: Vec<u8> = if reversed {
                needle.iter().rev().copied().collect()
            } else {
                needle.to_vec()
            };
            if patterns.last() != Some(&bytes) {
                patterns.push(bytes);
                prefix_owners.push(Vec::new());
                whole_owners.push(Vec::new());
            }
            let at = patterns.len() - 1;
            let list = if anchor == Anchor::Whole {
                &mut whole_owners[at]
            } else {
                &mut prefix_owners[at]
            };
            list.extend_from_slice(owners);
        }
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .start_kind(aho_corasick::StartKind::Anchored)
            .build(&patterns)
            .ok()?;
        Some(AnchoredSet {
            automaton,
            prefix_owners,
            whole_owners,
        })
    }

    /// Marks the owners of every pattern that starts `haystack` (a whole
    /// pattern only where it is all of it).
    fn mark(&self, haystack: &[u8], candidates: &mut [u64]) {
        let input = aho_corasick::Input::new(haystack).anchored(aho_corasick::Anchored::Yes);
        let mut state = aho_corasick::automaton::OverlappingState::start();
        loop {
            if self
                .automaton
                .try_find_overlapping(input.clone(), &mut state)
                .is_err()
            {
                // Cannot happen: built for anchored searches.
                debug_assert!(false, "anchored search refused");
                for owners in self.prefix_owners.iter().chain(&self.whole_owners) {
                    mark(candidates, owners);
                }
                return;
            }
            let Some(hit) = state.get_match() else { return };
            let at = hit.pattern().as_usize();
            mark(candidates, &self.prefix_owners[at]);
            if hit.end() == haystack.len() {
                mark(candidates, &self.whole_owners[at]);
            }
        }
    }
}

/// Many substring needles of one field: a leftmost-longest searcher
/// restarted after each hit (see [`Restarted`]), and an overlapping
/// automaton for what is left after [`PACKED_RESTARTS_MAX`] hits.
#[derive(Clone, Debug)]
struct ContainsSet {
    automaton: AhoCorasick,
    owners: Vec<Vec<u32>>,
    restarted: Option<Restarted>,
}

impl ContainsSet {
    /// The set over `needles`, each searched anywhere whatever its anchor.
    fn build(needles: &[Needle<'_>]) -> Option<ContainsSet> {
        let patterns: Vec<&[u8]> = needles.iter().map(|(bytes, _, _)| *bytes).collect();
        let owners: Vec<Vec<u32>> = needles.iter().map(|(_, _, o)| o.to_vec()).collect();
        // Needles are ASCII-lowercased; matching them ASCII
        // case-insensitively equals matching the folded value.
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&patterns)
            .ok()?;
        let restarted = if patterns.len() > WHOLE_NEEDLES_MAX {
            // Searched by their first bytes only (a needle that occurs has
            // its prefix occur, so no candidate is lost; the few extra
            // ones are evaluated and fail): the DFA then has at most
            // SEARCHED_PREFIX_BYTES_MAX states per needle instead of one
            // per byte of the long base64 and UTF-16 variants (or, merged,
            // the prefixes are few enough for Teddy). Measured at 100
            // SigmaHQ rules it neither sped up nor slowed the search: it
            // bounds the DFA's memory.
            let mut prefixes: BTreeMap<&[u8], Vec<u32>> = BTreeMap::new();
            for (pattern, rules) in patterns.iter().zip(&owners) {
                let prefix = &pattern[..pattern.len().min(SEARCHED_PREFIX_BYTES_MAX)];
                prefixes.entry(prefix).or_default().extend_from_slice(rules);
            }
            let (prefixes, prefix_owners): (Vec<&[u8]>, Vec<Vec<u32>>) = prefixes
                .into_iter()
                .map(|(prefix, mut rules)| {
                    rules.sort_unstable();
                    rules.dedup();
                    (prefix, rules)
                })
                .unzip();
            Restarted::build(&prefixes, &prefix_owners)
        } else {
            Restarted::build(&patterns, &owners)
        };
        Some(ContainsSet {
            automaton,
            owners,
            restarted,
        })
    }

    /// Marks the owners of every needle in `value`; `folded` is `value`
    /// ASCII-lowercased.
    fn mark(&self, value: &[u8], folded: &[u8], candidates: &mut [u64]) {
        // Where the overlapping automaton takes over.
        let mut rest = 0;
        if let Some(restarted) = &self.restarted {
            let mut at = 0;
            let mut restarts = 0;
            rest = loop {
                if restarts == PACKED_RESTARTS_MAX {
                    break at;
                }
                let Some(hit) = restarted.find(folded, at) else {
                    break value.len();
                };
                mark(candidates, &restarted.owners[hit.pattern().as_usize()]);
                at = hit.start() + 1;
                restarts += 1;
            };
        }
        if rest < value.len() {
            let input = aho_corasick::Input::new(value).span(rest..value.len());
            for hit in self.automaton.find_overlapping_iter(input) {
                mark(candidates, &self.owners[hit.pattern().as_usize()]);
            }
        }
    }
}

/// Whether any of a set of substring needles (ASCII-lowercased) occurs
/// in a folded value: a [`Restarted`] search (Teddy up to
/// [`PACKED_PATTERNS_MAX`] needles, else a DFA) stopped at its first hit.
/// (Teddy over each needle's rarest 3 bytes by a static byte ranking,
/// with the needles compared where those occur, was tried for SigmaHQ's
/// 170 Linux keywords and was 35-45% slower end to end than the DFA;
/// not profiled, but the windows such a ranking picks are mostly
/// punctuation, which CEF and key=value lines are full of.)
#[derive(Clone, Debug)]
pub(crate) struct AnyNeedle(Restarted);

impl AnyNeedle {
    /// The search over `needles`, or `None` where none is built (more
    /// than [`RESTARTED_DFA_PATTERNS_MAX`], or the library refuses).
    pub(crate) fn build(needles: &[&[u8]]) -> Option<AnyNeedle> {
        let owners = vec![Vec::new(); needles.len()];
        Restarted::build(needles, &owners).map(AnyNeedle)
    }

    /// Whether some needle occurs in `folded`.
    #[inline]
    pub(crate) fn occurs_in(&self, folded: &[u8]) -> bool {
        self.0.find(folded, 0).is_some()
    }
}

/// Every needle that occurs in a (folded) value, found with a
/// leftmost-longest search restarted one byte after each hit's start:
/// no needle starts between the restart point and the next hit (it is the
/// leftmost), and every needle starting at a hit's position is a prefix of
/// the longest one there, so `owners` of a pattern lists the rules of all
/// its prefix needles too. Same set of needles as the overlapping
/// automaton, at a fraction of its per-byte cost: a SIMD (Teddy) searcher
/// for up to [`PACKED_PATTERNS_MAX`] needles, a DFA (one table step per
/// byte, where the overlapping automaton walks an NFA and its match
/// lists) for more. (Teddy over the distinct first 6 bytes of 170
/// SigmaHQ Linux keywords, 123 of them, with an anchored DFA where they
/// occur, was 12% slower end to end than this DFA: `' | '`, `' - '` and
/// the like occur in most lines.)
#[derive(Clone, Debug)]
struct Restarted {
    searcher: LeftmostLongest,
    owners: Vec<Vec<u32>>,
}

/// The searcher of a [`Restarted`] set.
#[derive(Clone, Debug)]
enum LeftmostLongest {
    Packed(aho_corasick::packed::Searcher),
    Dfa(AhoCorasick),
}

impl Restarted {
    /// The searcher over `patterns` (ASCII-lowercased) with each pattern's
    /// owners widened to those of its prefix patterns, or `None` where
    /// none is built (too many patterns, or the library refuses).
    fn build(patterns: &[&[u8]], owners: &[Vec<u32>]) -> Option<Restarted> {
        let searcher = if let Some(packed) = Self::packed(patterns) {
            LeftmostLongest::Packed(packed)
        } else if patterns.len() <= RESTARTED_DFA_PATTERNS_MAX {
            LeftmostLongest::Dfa(Self::dfa(patterns)?)
        } else {
            return None;
        };
        let owners = patterns
            .iter()
            .map(|pattern| {
                let mut all: Vec<u32> = (patterns.iter().zip(owners))
                    .filter(|(other, _)| pattern.starts_with(other))
                    .flat_map(|(_, rules)| rules.iter().copied())
                    .collect();
                all.sort_unstable();
                all.dedup();
                all
            })
            .collect();
        Some(Restarted { searcher, owners })
    }

    /// A leftmost-longest packed searcher over `patterns`, if they are
    /// few enough and the CPU has what Teddy needs.
    fn packed(patterns: &[&[u8]]) -> Option<aho_corasick::packed::Searcher> {
        if patterns.len() > PACKED_PATTERNS_MAX {
            return None;
        }
        aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostLongest)
            .heuristic_pattern_limits(false)
            .builder()
            .extend(patterns)
            .build()
    }

    /// A leftmost-longest DFA over `patterns` (already folded: the value
    /// it searches is folded too, so no case-insensitive states).
    fn dfa(patterns: &[&[u8]]) -> Option<AhoCorasick> {
        AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .byte_classes(true)
            .build(patterns)
            .ok()
    }

    /// The leftmost-longest needle in `folded[at..]`.
    #[inline]
    fn find(&self, folded: &[u8], at: usize) -> Option<aho_corasick::Match> {
        match &self.searcher {
            LeftmostLongest::Packed(packed) => {
                packed.find_in(folded, aho_corasick::Span::from(at..folded.len()))
            }
            LeftmostLongest::Dfa(dfa) => {
                dfa.find(aho_corasick::Input::new(folded).span(at..folded.len()))
            }
        }
    }
}

/// One field's needles and the rules they admit, split by how they are
/// searched.
#[derive(Clone, Debug)]
struct FieldAutomaton {
    field: FieldName,
    /// Tested one by one.
    direct: Vec<DirectNeedle>,
    /// Whole-value and prefix needles, too many to test one by one.
    starts: Option<AnchoredSet>,
    /// Suffix needles (reversed), too many to test one by one.
    ends: Option<AnchoredSet>,
    /// Substring needles of ASCII bytes only, too many to search one by
    /// one.
    contains: Option<ContainsSet>,
    /// Substring needles with a byte past ASCII (emoji, accented words),
    /// too many to search one by one: searched only in a value that has
    /// such a byte, which most values (command lines, paths) do not.
    contains_wide: Option<ContainsSet>,
}

impl FieldAutomaton {
    /// Compiles `needles` of field `field`, or returns the rules it could
    /// not build a searcher for (they must be evaluated always).
    fn build(field: FieldName, needles: &NeedleTable<'_>) -> (FieldAutomaton, Vec<u32>) {
        let mut out = FieldAutomaton {
            field,
            direct: Vec::new(),
            starts: None,
            ends: None,
            contains: None,
            contains_wide: None,
        };
        let direct = |&(needle, anchor, owners): &Needle<'_>| DirectNeedle {
            needle: needle.into(),
            anchor,
            finder: (anchor == Anchor::Contains).then(|| memmem::Finder::new(needle).into_owned()),
            owners: owners.to_vec(),
        };
        let all: Vec<Needle<'_>> = needles
            .iter()
            .map(|(&(needle, anchor), owners)| (needle, anchor, owners.as_slice()))
            .collect();
        if all.len() <= DIRECT_NEEDLES_MAX {
            out.direct = all.iter().map(direct).collect();
            return (out, Vec::new());
        }
        let (mut starts, mut ends, mut contains) = (Vec::new(), Vec::new(), Vec::new());
        for (needle, anchor, owners) in all {
            match anchor {
                Anchor::Whole | Anchor::StartsWith => starts.push((needle, anchor, owners)),
                Anchor::EndsWith if needle.len() <= SUFFIX_BYTES_MAX => {
                    ends.push((needle, anchor, owners));
                }
                Anchor::EndsWith | Anchor::Contains => {
                    contains.push((needle, Anchor::Contains, owners));
                }
            }
        }
        let mut failed = Vec::new();
        for (list, reversed) in [(starts, false), (ends, true)] {
            if list.len() <= DIRECT_NEEDLES_MAX {
                out.direct.extend(list.iter().map(direct));
                continue;
            }
            let set = AnchoredSet::build(&list, reversed);
            if set.is_none() {
                failed.extend(list.iter().flat_map(|(_, _, o)| o.iter().copied()));
            }
            if reversed {
                out.ends = set;
            } else {
                out.starts = set;
            }
        }
        if contains.len() <= DIRECT_CONTAINS_MAX {
            out.direct.extend(contains.iter().map(direct));
            return (out, failed);
        }
        let (ascii, wide): (Vec<Needle<'_>>, Vec<Needle<'_>>) = contains
            .into_iter()
            .partition(|(needle, _, _)| needle.is_ascii());
        for (list, slot) in [(ascii, &mut out.contains), (wide, &mut out.contains_wide)] {
            if list.len() <= DIRECT_CONTAINS_MAX {
                out.direct.extend(list.iter().map(direct));
                continue;
            }
            *slot = ContainsSet::build(&list);
            if slot.is_none() {
                failed.extend(list.iter().flat_map(|(_, _, o)| o.iter().copied()));
            }
        }
        (out, failed)
    }

    /// Marks the rules whose needles occur in `value`. `folded` is scratch
    /// space (it ends up holding `value` ASCII-lowercased when a substring
    /// needle needed it).
    fn mark(&self, value: &[u8], folded: &mut Vec<u8>, candidates: &mut [u64]) {
        if let Some(starts) = &self.starts {
            starts.mark(value, candidates);
        }
        if let Some(ends) = &self.ends {
            let mut reversed = [0u8; SUFFIX_BYTES_MAX];
            let tail = &value[value.len().saturating_sub(SUFFIX_BYTES_MAX)..];
            for (to, from) in reversed.iter_mut().zip(tail.iter().rev()) {
                *to = *from;
            }
            ends.mark(&reversed[..tail.len()], candidates);
        }
        let mut folded_now = false;
        let mut fold = |folded: &mut Vec<u8>| {
            if !folded_now {
                folded.clear();
                folded.extend(value.iter().map(u8::to_ascii_lowercase));
                folded_now = true;
            }
        };
        for needle in &self.direct {
            if needle.anchor == Anchor::Contains {
                fold(folded);
            }
            if needle.hit(value, folded) {
                mark(candidates, &needle.owners);
            }
        }
        if let Some(contains) = &self.contains {
            fold(folded);
            contains.mark(value, folded, candidates);
        }
        // A needle with a byte past ASCII occurs only where that byte does.
        if let Some(wide) = self.contains_wide.as_ref().filter(|_| !value.is_ascii()) {
            fold(folded);
            wide.mark(value, folded, candidates);
        }
    }
}

/// The detections of one log source: its filter, its automata, and the
/// rules evaluated whenever the filter admits an event.
#[derive(Clone, Debug)]
struct SourceGroup {
    filter: LogsourceFilter,
    fields: Vec<FieldAutomaton>,
    /// Rules of this group with no required literals.
    always: Vec<u32>,
}

/// The compiled prefilter of a rule set.
#[derive(Clone, Debug, Default)]
pub(crate) struct Matcher {
    groups: Vec<SourceGroup>,
    /// The groups' filters compiled together (`None`: too many terms, each
    /// group runs its own filter).
    classifier: Option<LogsourceClassifier>,
    /// Rules that have required literals (are prefiltered).
    guarded: usize,
    rules: usize,
}

impl Matcher {
    /// Builds the prefilter from each rule's log source filter (already
    /// interned into `table`) and required literals (`None`: always
    /// evaluate when the log source admits the event). An automaton that
    /// fails to build (it cannot with these sizes, but the library returns
    /// a `Result`) leaves its rules always evaluated instead.
    /// Field names are interned into `table`.
    pub(crate) fn build(
        filters: &[&LogsourceFilter],
        required: &[Option<Vec<RequiredLiteral>>],
        table: &mut FieldTableBuilder,
    ) -> Matcher {
        debug_assert_eq!(filters.len(), required.len());
        // Group index per rule; groups in order of first appearance.
        let mut group_filters: Vec<&LogsourceFilter> = Vec::new();
        let mut members: Vec<Vec<u32>> = Vec::new();
        for (rule, filter) in filters.iter().enumerate() {
            let at = match group_filters.iter().position(|known| *known == *filter) {
                Some(at) => at,
                None => {
                    group_filters.push(filter);
                    members.push(Vec::new());
                    group_filters.len() - 1
                }
            };
            // Lossless: the rule set refuses more than u32::MAX rules.
            members[at].push(rule as u32);
        }
        let mut guarded = 0;
        let classifier = LogsourceClassifier::build(&group_filters);
        let groups = group_filters
            .into_iter()
            .zip(members)
            .map(|(filter, members)| {
                let (group, count) = SourceGroup::build(filter, &members, required, table);
                guarded += count;
                group
            })
            .collect();
        Matcher {
            groups,
            classifier,
            guarded,
            rules: required.len(),
        }
    }

    /// Fills `scratch`'s candidate bitset for `event`, which `scratch` must
    /// have indexed under the table the matcher was built with.
    pub(crate) fn candidates(&self, event: &Event<'_>, scratch: &mut Scratch) {
        {
            let (_, candidates) = scratch.split();
            candidates.clear();
            candidates.resize(self.rules.div_ceil(64), 0);
        }
        match &self.classifier {
            Some(classifier) => {
                let mut admitted = classifier.admitted(event, scratch);
                while admitted != 0 {
                    let at = admitted.trailing_zeros() as usize;
                    admitted &= admitted - 1;
                    if let Some(group) = self.groups.get(at) {
                        debug_assert!(group.filter.matches(event, scratch));
                        group.candidates(event, scratch);
                    }
                }
            }
            None => {
                for group in &self.groups {
                    if group.filter.matches(event, scratch) {
                        group.candidates(event, scratch);
                    }
                }
            }
        }
    }

    /// How many rules have required literals (are prefiltered).
    pub(crate) fn guarded_count(&self) -> usize {
        self.guarded
    }

    /// How many log source groups the rules fall into.
    pub(crate) fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Whether the groups' filters are decided together in one pass (the
    /// classifier), rather than one by one.
    pub(crate) fn is_classified(&self) -> bool {
        self.classifier.is_some()
    }
}

impl SourceGroup {
    /// Marks this group's candidates for `event`, which its filter admits.
    fn candidates(&self, event: &Event<'_>, scratch: &mut Scratch) {
        let (_, candidates) = scratch.split();
        mark(candidates, &self.always);
        for field in &self.fields {
            let value = if field.field.is_empty() {
                Some(event.message)
            } else {
                scratch.field(&field.field, event)
            };
            let Some(value) = value else { continue };
            let (folded, candidates) = scratch.split();
            field.mark(value, folded, candidates);
        }
    }

    /// The group of `members` (rule indices into `required`) under
    /// `filter`, and how many of them are prefiltered.
    fn build(
        filter: &LogsourceFilter,
        members: &[u32],
        required: &[Option<Vec<RequiredLiteral>>],
        table: &mut FieldTableBuilder,
    ) -> (SourceGroup, usize) {
        let mut always = Vec::new();
        // Field name -> (needle, anchor) -> owners.
        let mut by_field: BTreeMap<&str, NeedleTable<'_>> = BTreeMap::new();
        for &rule in members {
            let Some(literals) = &required[rule as usize] else {
                always.push(rule);
                continue;
            };
            debug_assert!(!literals.is_empty());
            for (field, needle, anchor) in literals {
                let owners = by_field
                    .entry(field)
                    .or_default()
                    .entry((needle, *anchor))
                    .or_default();
                if owners.last() != Some(&rule) {
                    owners.push(rule);
                }
            }
        }
        let mut fields = Vec::with_capacity(by_field.len());
        for (name, needles) in &by_field {
            let mut field = FieldName::new(name);
            table.intern(&mut field);
            let (field, failed) = FieldAutomaton::build(field, needles);
            always.extend(failed);
            fields.push(field);
        }
        always.sort_unstable();
        always.dedup();
        let guarded = members.len() - always.len();
        let group = SourceGroup {
            filter: filter.clone(),
            fields,
            always,
        };
        (group, guarded)
    }
}
