//! Compiled Sigma detections: selections, field tests and keyword searches.
//!
//! This module owns the `detection:` section of a Sigma rule: it reads the
//! YAML into selections (a map is an AND of field tests, a list of maps an
//! OR of such ANDs, a list of strings or a plain string a keyword search of
//! the event message), compiles every value once, and evaluates them against
//! an [`Event`] without allocating. It must not decide which rules run on an
//! event (that is the rule set's log source filter) or hold any state.
//!
//! Semantics, following the Sigma rules specification:
//! - list values are OR-ed, unless the `all` modifier makes them AND-ed;
//! - a `null` value matches when the field is absent;
//! - numbers and booleans are compared as their YAML text;
//! - a field that appears more than once in an event is read at its first
//!   occurrence (the rule of [`Event::get`]);
//! - keyword values are searched anywhere in the message (an implicit
//!   `contains`), honouring wildcards.
//!
//! Modifiers run here: `contains`, `startswith`, `endswith`, `all`, `re`
//! (with `i`, `m`, `s`), `cased`, `exists`, `cidr`, `fieldref`, `windash`
//! and `base64offset`. Any other modifier (`base64`, `utf16le`, `wide`,
//! `lt`/`gt`, `expand`, ...) fails the rule with
//! `Unsupported { feature: "modifier:<name>" }`, never a silent mismatch.

use aho_corasick::AhoCorasick;
use serde_yaml_ng::Value;

use crate::condition::{parse_condition, Condition};
use crate::error::RuleErrorKind;
use crate::event::Event;
use crate::pattern::{parse_glob, Anchor, Cidr, Pattern, Scratch};

/// With at least this many plain `contains` values in one OR list, the list
/// is compiled into one Aho-Corasick automaton instead of one finder each.
const AHO_CORASICK_NEEDLES_MIN: usize = 4;

/// Bound on the number of values in one field test, so that a rule cannot
/// make compilation or matching arbitrarily expensive.
const FIELD_VALUES_MAX: usize = 10_000;

/// Bound on the variants `windash` may create from one value: five dash
/// characters per position, so four positions at most.
const WINDASH_VARIANTS_MAX: usize = 625;

/// The characters `windash` substitutes for each other (pySigma's set).
const WINDASH_CHARS: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// The `windash` expansion of pySigma: every `-` or `/` that starts a word
/// (not preceded by a word character, followed by one) becomes each of
/// [`WINDASH_CHARS`], in every combination.
fn windash_variants(text: &str) -> Result<Vec<String>, RuleErrorKind> {
    let chars: Vec<char> = text.chars().collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let positions: Vec<usize> = (0..chars.len())
        .filter(|&i| {
            matches!(chars[i], '-' | '/')
                && (i == 0 || !is_word(chars[i - 1]))
                && chars.get(i + 1).is_some_and(|&next| is_word(next))
        })
        .collect();
    let count = u32::try_from(positions.len())
        .ok()
        .and_then(|n| WINDASH_CHARS.len().checked_pow(n))
        .filter(|&count| count <= WINDASH_VARIANTS_MAX)
        .ok_or_else(|| RuleErrorKind::unsupported("modifier:windash-too-many-dashes"))?;
    let mut variants = Vec::with_capacity(count);
    for mut combination in 0..count {
        let mut variant = chars.clone();
        for &position in &positions {
            variant[position] = WINDASH_CHARS[combination % WINDASH_CHARS.len()];
            combination /= WINDASH_CHARS.len();
        }
        variants.push(variant.into_iter().collect());
    }
    debug_assert_eq!(variants.len(), count);
    Ok(variants)
}

/// Standard base64 (RFC 4648, with padding).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `base64offset` expansion of pySigma: the value base64-encoded at the
/// three possible offsets within a longer encoded text, with the characters
/// that depend on unknown neighbours cut off.
fn base64offset_variants(text: &str) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    (0..3)
        .map(|shift| {
            let mut input = vec![b' '; shift];
            input.extend_from_slice(text.as_bytes());
            let encoded = base64(&input);
            let cut_end = [0, 3, 2][(text.len() + shift) % 3];
            let end = encoded.len().saturating_sub(cut_end);
            encoded
                .get(START[shift]..end)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// What a compiled field test checks.
#[derive(Clone, Debug)]
enum Test {
    /// `|exists`: whether the field is present.
    Exists(bool),
    /// `|fieldref`: the value equals (ASCII case-insensitively, or exactly
    /// with `cased`) the value of any of these other fields. An absent field
    /// on either side does not match.
    FieldRef(Vec<Box<str>>),
    /// One or more values.
    Values {
        /// `all` modifier: every pattern must match; otherwise any.
        all: bool,
        /// A `null` entry was listed: an absent field matches.
        null: bool,
        /// Patterns tried one by one.
        patterns: Vec<Pattern>,
        /// Plain `contains` needles merged into one automaton (OR only).
        needles: Option<AhoCorasick>,
    },
}

/// One `field|modifiers: value(s)` entry of a selection. The empty field
/// name means the event message (keyword search).
#[derive(Clone, Debug)]
struct FieldTest {
    field: Box<str>,
    /// Case-sensitive (`cased`): the value is matched without folding.
    cased: bool,
    test: Test,
}

impl FieldTest {
    fn matches(&self, event: &Event<'_>, scratch: &mut Scratch) -> bool {
        let value = if self.field.is_empty() {
            Some(event.message)
        } else {
            event.get(&self.field)
        };
        match (&self.test, value) {
            (Test::Exists(expected), value) => value.is_some() == *expected,
            (Test::FieldRef(_), None) => false,
            (Test::FieldRef(others), Some(raw)) => others.iter().any(|other| {
                event.get(other).is_some_and(|theirs| {
                    if self.cased {
                        theirs == raw
                    } else {
                        theirs.eq_ignore_ascii_case(raw)
                    }
                })
            }),
            (Test::Values { null, .. }, None) => *null,
            (
                Test::Values {
                    all,
                    patterns,
                    needles,
                    ..
                },
                Some(raw),
            ) => {
                let folded = if self.cased { raw } else { scratch.fold(raw) };
                if *all {
                    return patterns.iter().all(|p| p.matches(folded, raw));
                }
                needles
                    .as_ref()
                    .is_some_and(|automaton| automaton.is_match(folded))
                    || patterns.iter().any(|p| p.matches(folded, raw))
            }
        }
    }
}

/// One named selection: an OR of AND-groups of field tests.
#[derive(Clone, Debug)]
struct Selection {
    groups: Vec<Vec<FieldTest>>,
}

impl Selection {
    fn matches(&self, event: &Event<'_>, scratch: &mut Scratch) -> bool {
        self.groups
            .iter()
            .any(|group| group.iter().all(|test| test.matches(event, scratch)))
    }
}

/// A compiled `detection:` section.
#[derive(Clone, Debug)]
pub(crate) struct Detection {
    selections: Vec<Selection>,
    condition: Condition,
}

impl Detection {
    /// Whether the event satisfies the condition.
    pub(crate) fn matches(&self, event: &Event<'_>, scratch: &mut Scratch) -> bool {
        let selections = &self.selections;
        self.condition.evaluate(&mut |index| {
            selections
                .get(index as usize)
                .is_some_and(|selection| selection.matches(event, scratch))
        })
    }

    /// Compiles the YAML value of a `detection:` key.
    pub(crate) fn compile(section: &Value) -> Result<Detection, RuleErrorKind> {
        let Value::Mapping(map) = section else {
            return Err(RuleErrorKind::invalid("detection must be a map"));
        };
        let mut names: Vec<&str> = Vec::new();
        let mut selections = Vec::new();
        let mut condition: Option<&Value> = None;
        for (key, value) in map {
            let Value::String(name) = key else {
                return Err(RuleErrorKind::invalid("detection keys must be strings"));
            };
            match name.as_str() {
                "condition" => condition = Some(value),
                "timeframe" => return Err(RuleErrorKind::unsupported("detection:timeframe")),
                _ => {
                    names.push(name);
                    selections.push(compile_selection(value)?);
                }
            }
        }
        let condition = match condition {
            None => return Err(RuleErrorKind::invalid("detection has no condition")),
            Some(Value::String(text)) => parse_condition(text, &names)?,
            // Older rules list several conditions; any of them may match.
            Some(Value::Sequence(list)) if !list.is_empty() => {
                let mut children = Vec::with_capacity(list.len());
                for item in list {
                    let Value::String(text) = item else {
                        return Err(RuleErrorKind::invalid("condition list must hold strings"));
                    };
                    children.push(parse_condition(text, &names)?);
                }
                Condition::Or(children)
            }
            Some(_) => return Err(RuleErrorKind::invalid("condition must be a string")),
        };
        let mut out_of_range = false;
        condition.for_each_selection(&mut |index| {
            out_of_range |= index as usize >= selections.len();
        });
        assert!(!out_of_range, "the parser only yields declared selections");
        Ok(Detection {
            selections,
            condition,
        })
    }
}

fn compile_selection(value: &Value) -> Result<Selection, RuleErrorKind> {
    let groups = match value {
        Value::Mapping(_) => vec![compile_map(value)?],
        Value::Sequence(items) if items.is_empty() => {
            return Err(RuleErrorKind::invalid("selection is an empty list"))
        }
        Value::Sequence(items) if items.iter().all(|item| matches!(item, Value::Mapping(_))) => {
            items.iter().map(compile_map).collect::<Result<_, _>>()?
        }
        Value::Sequence(items) if items.iter().any(|item| matches!(item, Value::Mapping(_))) => {
            return Err(RuleErrorKind::unsupported("selection:mixed-list"))
        }
        // A list of plain values, or one plain value: keywords.
        Value::Sequence(_) | Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            vec![vec![compile_test("", &[], value)?]]
        }
        Value::Null => return Err(RuleErrorKind::invalid("selection is empty")),
        Value::Tagged(_) => return Err(RuleErrorKind::unsupported("yaml:tag")),
    };
    Ok(Selection { groups })
}

fn compile_map(value: &Value) -> Result<Vec<FieldTest>, RuleErrorKind> {
    let Value::Mapping(map) = value else {
        return Err(RuleErrorKind::invalid("selection entry must be a map"));
    };
    if map.is_empty() {
        return Err(RuleErrorKind::invalid("selection is an empty map"));
    }
    let mut tests = Vec::with_capacity(map.len());
    for (key, values) in map {
        let key = match key {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => return Err(RuleErrorKind::invalid("field names must be strings")),
        };
        let mut parts = key.split('|');
        let field = parts.next().unwrap_or_default();
        let modifiers: Vec<&str> = parts.collect();
        // An empty field name with modifiers (`'|all': [...]`) is a keyword
        // search with modifiers; an empty name without any is not Sigma.
        if field.is_empty() && modifiers.is_empty() {
            return Err(RuleErrorKind::invalid("empty field name"));
        }
        tests.push(compile_test(field, &modifiers, values)?);
    }
    Ok(tests)
}

/// The text of one YAML scalar value, or `None` for `null`.
fn scalar_text(value: &Value) -> Result<Option<String>, RuleErrorKind> {
    match value {
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        Value::Bool(flag) => Ok(Some(flag.to_string())),
        Value::Null => Ok(None),
        Value::Sequence(_) | Value::Mapping(_) => Err(RuleErrorKind::invalid(
            "values must be scalars or lists of scalars",
        )),
        Value::Tagged(_) => Err(RuleErrorKind::unsupported("yaml:tag")),
    }
}

fn compile_test(
    field: &str,
    modifiers: &[&str],
    value: &Value,
) -> Result<FieldTest, RuleErrorKind> {
    let keyword = field.is_empty();
    let mut anchor = if keyword {
        Anchor::Contains
    } else {
        Anchor::Whole
    };
    let mut all = false;
    let mut cased = false;
    let mut exists = false;
    let mut regex = false;
    let mut cidr = false;
    let mut fieldref = false;
    let mut windash = false;
    let mut base64offset = false;
    let (mut regex_i, mut regex_m, mut regex_s) = (false, false, false);
    for modifier in modifiers {
        match *modifier {
            "cidr" if !keyword => cidr = true,
            "fieldref" if !keyword => fieldref = true,
            "windash" => windash = true,
            "base64offset" => base64offset = true,
            "contains" => anchor = Anchor::Contains,
            "startswith" if !keyword => anchor = Anchor::StartsWith,
            "endswith" if !keyword => anchor = Anchor::EndsWith,
            "all" => all = true,
            "cased" => cased = true,
            "exists" => exists = true,
            "re" => regex = true,
            "i" if regex => regex_i = true,
            "m" if regex => regex_m = true,
            "s" if regex => regex_s = true,
            other => {
                return Err(RuleErrorKind::unsupported(format!("modifier:{other}")));
            }
        }
    }
    if exists {
        return match value {
            Value::Bool(flag) if modifiers.len() == 1 && !keyword => Ok(FieldTest {
                field: field.into(),
                cased,
                test: Test::Exists(*flag),
            }),
            _ => Err(RuleErrorKind::invalid(
                "'exists' takes a boolean and no other modifier",
            )),
        };
    }
    if fieldref {
        let extra = modifiers
            .iter()
            .any(|m| !matches!(*m, "fieldref" | "cased"));
        if extra {
            return Err(RuleErrorKind::unsupported("modifier:fieldref-combined"));
        }
        let others = match value {
            Value::String(other) => vec![other.as_str().into()],
            Value::Sequence(items) if !items.is_empty() => items
                .iter()
                .map(|item| match item {
                    Value::String(other) => Ok(other.as_str().into()),
                    _ => Err(RuleErrorKind::invalid("'fieldref' takes field names")),
                })
                .collect::<Result<Vec<Box<str>>, _>>()?,
            _ => return Err(RuleErrorKind::invalid("'fieldref' takes field names")),
        };
        return Ok(FieldTest {
            field: field.into(),
            cased,
            test: Test::FieldRef(others),
        });
    }
    if cidr && (modifiers.len() > 1 + usize::from(all)) {
        return Err(RuleErrorKind::invalid("'cidr' combines only with 'all'"));
    }
    if base64offset && anchor != Anchor::Contains {
        return Err(RuleErrorKind::invalid("'base64offset' needs 'contains'"));
    }
    if regex && (windash || base64offset) {
        return Err(RuleErrorKind::invalid(
            "'re' cannot combine with windash/base64offset",
        ));
    }
    // Base64 text is case-sensitive: folding it would match other bytes.
    let cased = cased || base64offset;
    if regex && anchor != Anchor::Whole && !keyword {
        return Err(RuleErrorKind::invalid(
            "'re' cannot combine with contains/startswith/endswith",
        ));
    }
    let list: Vec<&Value> = match value {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    if list.is_empty() {
        return Err(RuleErrorKind::invalid(format!(
            "field '{field}' has an empty value list"
        )));
    }
    if list.len() > FIELD_VALUES_MAX {
        return Err(RuleErrorKind::invalid(format!(
            "field '{field}' has too many values"
        )));
    }
    let mut null = false;
    let mut patterns = Vec::with_capacity(list.len());
    for item in list {
        let Some(text) = scalar_text(item)? else {
            if keyword || regex {
                return Err(RuleErrorKind::invalid(
                    "null is only valid as a field value",
                ));
            }
            null = true;
            continue;
        };
        if regex {
            patterns.push(Pattern::regex(&text, regex_i, regex_m, regex_s)?);
            continue;
        }
        if cidr {
            patterns.push(Pattern::Cidr(Cidr::parse(&text)?));
            continue;
        }
        let mut variants = if windash {
            windash_variants(&text)?
        } else {
            vec![text]
        };
        if base64offset {
            variants = variants
                .iter()
                .flat_map(|v| base64offset_variants(v))
                .collect();
        }
        if all && variants.len() > 1 {
            // `all` over values whose variants are alternatives would need
            // an AND of ORs; no SigmaHQ rule does that.
            return Err(RuleErrorKind::unsupported("modifier:all-with-expansion"));
        }
        for variant in variants {
            patterns.push(Pattern::from_tokens(&parse_glob(&variant, anchor, !cased)));
        }
        if patterns.len() > FIELD_VALUES_MAX {
            return Err(RuleErrorKind::invalid(format!(
                "field '{field}' has too many values"
            )));
        }
    }
    if all && null {
        return Err(RuleErrorKind::invalid("'all' cannot combine with null"));
    }
    let needles = merge_needles(all, &mut patterns)?;
    debug_assert!(null || !patterns.is_empty() || needles.is_some());
    Ok(FieldTest {
        field: field.into(),
        cased,
        test: Test::Values {
            all,
            null,
            patterns,
            needles,
        },
    })
}

/// Moves plain `contains` patterns of an OR list into one automaton when
/// there are enough of them to pay for it.
fn merge_needles(
    all: bool,
    patterns: &mut Vec<Pattern>,
) -> Result<Option<AhoCorasick>, RuleErrorKind> {
    let count = patterns
        .iter()
        .filter(|p| p.contains_needle().is_some())
        .count();
    if all || count < AHO_CORASICK_NEEDLES_MIN {
        return Ok(None);
    }
    let needles: Vec<Vec<u8>> = patterns
        .iter()
        .filter_map(|p| p.contains_needle().map(<[u8]>::to_vec))
        .collect();
    let automaton = AhoCorasick::new(&needles)
        .map_err(|error| RuleErrorKind::invalid(format!("pattern set: {error}")))?;
    patterns.retain(|p| p.contains_needle().is_none());
    Ok(Some(automaton))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windash_expands_word_leading_dashes() {
        let variants = windash_variants("-enc x/y").unwrap_or_default();
        assert_eq!(variants.len(), 5);
        assert!(variants.contains(&"/enc x/y".to_owned()));
        assert!(variants.contains(&"\u{2014}enc x/y".to_owned()));
        assert_eq!(
            windash_variants("a-b").unwrap_or_default(),
            vec!["a-b".to_owned()]
        );
        assert_eq!(windash_variants(" -a -b").map(|v| v.len()), Ok(25));
        assert!(windash_variants("-a -b -c -d -e").is_err());
    }

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn base64offset_matches_pysigma() {
        // Checked against pySigma's formula run on "/bin/bash".
        assert_eq!(
            base64offset_variants("/bin/bash"),
            vec![
                "L2Jpbi9iYXNo".to_owned(),
                "9iaW4vYmFza".to_owned(),
                "vYmluL2Jhc2".to_owned()
            ]
        );
    }
}
