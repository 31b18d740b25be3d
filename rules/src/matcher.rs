//! The rule set's prefilter: one Aho-Corasick automaton per field.
//!
//! This module owns the structure that keeps per-event cost from growing
//! with the rule count. At compile time every detection's *required
//! literals* (a set of (field, needle) of which at least one must occur for
//! the rule to match, from `Detection::required_literals`) are merged, per
//! field name, into one ASCII case-insensitive automaton. Per event, each
//! automaton runs once over its field's value (read from the scratch's field
//! index), and only the rules whose literals hit (plus the
//! rules that have no required literals, which are always evaluated) are
//! evaluated fully. It must not decide a match: it only narrows the set of
//! rules to evaluate, so a rule it lets through still runs its full
//! detection and a rule it drops could not have matched.
//!
//! **Invariant:** for every detection `d` and event `e`, if `d` matches `e`
//! then `d` is a candidate for `e`. The prefilter test in
//! `tests/prefilter.rs` checks this against evaluating every rule.

use std::collections::{BTreeMap, HashMap};

use aho_corasick::AhoCorasick;

use crate::detection::RequiredLiteral;

use crate::event::Event;
use crate::field::{FieldName, FieldTableBuilder};
use crate::pattern::Scratch;

/// While building: needle to pattern index, and owners per pattern.
type NeedleTable<'a> = (HashMap<&'a [u8], usize>, Vec<Vec<u32>>);

/// One field's automaton and, per automaton pattern, the rules it admits.
#[derive(Clone, Debug)]
struct FieldAutomaton {
    field: FieldName,
    automaton: AhoCorasick,
    owners: Vec<Vec<u32>>,
}

/// The compiled prefilter of a rule set.
#[derive(Clone, Debug, Default)]
pub(crate) struct Matcher {
    fields: Vec<FieldAutomaton>,
    /// Bitset of rules that are always candidates (no required literals).
    always: Vec<u64>,
    rules: usize,
}

impl Matcher {
    /// Builds the prefilter from each rule's required literals (`None`:
    /// always evaluate). An automaton that fails to build (it cannot with
    /// these sizes, but the library returns a `Result`) leaves its rules
    /// always evaluated instead.
    /// Field names are interned into `table`.
    pub(crate) fn build(
        required: &[Option<Vec<RequiredLiteral>>],
        table: &mut FieldTableBuilder,
    ) -> Matcher {
        let words = required.len().div_ceil(64);
        let mut always = vec![0u64; words];
        // Field name -> (needle -> pattern index, owners per pattern).
        let mut by_field: BTreeMap<&str, NeedleTable<'_>> = BTreeMap::new();
        for (rule, literals) in required.iter().enumerate() {
            // Lossless: the rule set refuses more than u32::MAX rules.
            let rule_u32 = rule as u32;
            let Some(literals) = literals else {
                always[rule / 64] |= 1 << (rule % 64);
                continue;
            };
            debug_assert!(!literals.is_empty());
            for (field, needle) in literals {
                let (index, owners) = by_field.entry(field).or_default();
                let next = owners.len();
                let at = *index.entry(needle).or_insert(next);
                if at == owners.len() {
                    owners.push(Vec::new());
                }
                if owners[at].last() != Some(&rule_u32) {
                    owners[at].push(rule_u32);
                }
            }
        }
        let mut fields = Vec::with_capacity(by_field.len());
        for (field, (index, owners)) in by_field {
            let mut needles: Vec<&[u8]> = vec![&[]; owners.len()];
            for (needle, at) in index {
                needles[at] = needle;
            }
            // Needles are ASCII-lowercased; matching them ASCII
            // case-insensitively equals matching the folded value, without
            // folding a copy of every value per event.
            match AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&needles)
            {
                Ok(automaton) => {
                    let mut field = FieldName::new(field);
                    table.intern(&mut field);
                    fields.push(FieldAutomaton {
                        field,
                        automaton,
                        owners,
                    });
                }
                Err(_) => {
                    for rule in owners.into_iter().flatten() {
                        always[rule as usize / 64] |= 1 << (rule % 64);
                    }
                }
            }
        }
        Matcher {
            fields,
            always,
            rules: required.len(),
        }
    }

    /// Fills `scratch`'s candidate bitset for `event`, which `scratch` must
    /// have indexed under the table the matcher was built with.
    pub(crate) fn candidates(&self, event: &Event<'_>, scratch: &mut Scratch) {
        {
            let (_, candidates) = scratch.split();
            candidates.clear();
            candidates.extend_from_slice(&self.always);
        }
        for field in &self.fields {
            let value = if field.field.is_empty() {
                Some(event.message)
            } else {
                scratch.field(&field.field, event)
            };
            let Some(value) = value else { continue };
            let (_, candidates) = scratch.split();
            for hit in field.automaton.find_overlapping_iter(value) {
                for &rule in &field.owners[hit.pattern().as_usize()] {
                    candidates[rule as usize / 64] |= 1 << (rule % 64);
                }
            }
        }
        debug_assert_eq!(scratch.split().1.len(), self.rules.div_ceil(64));
    }

    /// How many rules have required literals (are prefiltered).
    pub(crate) fn guarded_count(&self) -> usize {
        let always: u32 = self.always.iter().map(|w| w.count_ones()).sum();
        self.rules - always as usize
    }
}
