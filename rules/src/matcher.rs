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
//! needles, searched anywhere. Per event, one pass of the
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

use std::collections::{BTreeMap, HashMap};

use aho_corasick::AhoCorasick;
use memchr::memmem;

use crate::detection::RequiredLiteral;
use crate::logsource::{LogsourceClassifier, LogsourceFilter};

use crate::event::Event;
use crate::field::{FieldName, FieldTableBuilder};
use crate::pattern::{Anchor, Scratch};

/// While building: (needle, anchor) to its owners, per field.
type NeedleTable<'a> = BTreeMap<(&'a [u8], Anchor), Vec<u32>>;

/// Up to this many distinct needles on one field are tested one by one
/// (anchored ones by a comparison at their end of the value, the others
/// by a SIMD substring search over the value folded once); more go into
/// one Aho-Corasick automaton. Starting an automaton search costs more
/// than a few direct tests, and an anchored test reads only its needle's
/// length of the value.
const DIRECT_NEEDLES_MAX: usize = 8;

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

/// How one field's needles are searched.
#[derive(Clone, Debug)]
enum Probe {
    /// A few needles, tested one by one.
    Direct(Vec<DirectNeedle>),
    /// Many needles (anchors dropped: each is searched anywhere, which
    /// admits a superset) in one automaton, and per automaton pattern the
    /// rules it admits.
    Automaton {
        automaton: AhoCorasick,
        owners: Vec<Vec<u32>>,
    },
}

/// One field's needles and the rules they admit.
#[derive(Clone, Debug)]
struct FieldAutomaton {
    field: FieldName,
    probe: Probe,
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
}

impl SourceGroup {
    /// Marks this group's candidates for `event`, which its filter admits.
    fn candidates(&self, event: &Event<'_>, scratch: &mut Scratch) {
        let (_, candidates) = scratch.split();
        for &rule in &self.always {
            candidates[rule as usize / 64] |= 1 << (rule % 64);
        }
        for field in &self.fields {
            let value = if field.field.is_empty() {
                Some(event.message)
            } else {
                scratch.field(&field.field, event)
            };
            let Some(value) = value else { continue };
            let (folded, candidates) = scratch.split();
            match &field.probe {
                Probe::Direct(needles) => {
                    let mut folded_now = false;
                    for needle in needles {
                        if needle.anchor == Anchor::Contains && !folded_now {
                            folded.clear();
                            folded.extend(value.iter().map(u8::to_ascii_lowercase));
                            folded_now = true;
                        }
                        if needle.hit(value, folded) {
                            for &rule in &needle.owners {
                                candidates[rule as usize / 64] |= 1 << (rule % 64);
                            }
                        }
                    }
                }
                Probe::Automaton { automaton, owners } => {
                    for hit in automaton.find_overlapping_iter(value) {
                        for &rule in &owners[hit.pattern().as_usize()] {
                            candidates[rule as usize / 64] |= 1 << (rule % 64);
                        }
                    }
                }
            }
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
        let mut guarded = members.len() - always.len();
        let mut fields = Vec::with_capacity(by_field.len());
        for (name, needles) in by_field {
            let probe = if needles.len() <= DIRECT_NEEDLES_MAX {
                Some(Probe::Direct(
                    needles
                        .into_iter()
                        .map(|((needle, anchor), owners)| DirectNeedle {
                            needle: needle.into(),
                            anchor,
                            finder: (anchor == Anchor::Contains)
                                .then(|| memmem::Finder::new(needle).into_owned()),
                            owners,
                        })
                        .collect(),
                ))
            } else {
                // Anchors dropped: one pattern per distinct needle.
                let mut patterns: Vec<&[u8]> = Vec::new();
                let mut owners: Vec<Vec<u32>> = Vec::new();
                let mut index: HashMap<&[u8], usize> = HashMap::new();
                for ((needle, _), rules) in &needles {
                    let at = *index.entry(needle).or_insert_with(|| {
                        patterns.push(needle);
                        owners.push(Vec::new());
                        patterns.len() - 1
                    });
                    owners[at].extend_from_slice(rules);
                }
                for list in &mut owners {
                    list.sort_unstable();
                    list.dedup();
                }
                // Needles are ASCII-lowercased; matching them ASCII
                // case-insensitively equals matching the folded value,
                // without folding a copy of every value per event.
                match AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&patterns)
                {
                    Ok(automaton) => Some(Probe::Automaton { automaton, owners }),
                    Err(_) => {
                        for rule in owners.into_iter().flatten() {
                            if !always.contains(&rule) {
                                always.push(rule);
                                guarded -= 1;
                            }
                        }
                        None
                    }
                }
            };
            if let Some(probe) = probe {
                let mut field = FieldName::new(name);
                table.intern(&mut field);
                fields.push(FieldAutomaton { field, probe });
            }
        }
        always.sort_unstable();
        let group = SourceGroup {
            filter: filter.clone(),
            fields,
            always,
        };
        (group, guarded)
    }
}
