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
//! Modifiers run here, every one of the modifiers appendix (v2.1.0):
//! `contains`, `startswith`, `endswith`, `all`, `exists`, `cased`, `neq`,
//! `re` (with `i`, `m`, `s`), `windash`, `base64`, `base64offset`,
//! `utf16le`/`wide`, `utf16be`, `utf16` (with a base64 modifier), `lt`,
//! `lte`, `gt`, `gte`, the time parts `minute`, `hour`, `day`, `week`,
//! `month`, `year` (of an ISO 8601 field value, or of the event time for
//! the usual timestamp field names), `cidr`, `fieldref` and `expand`
//! (placeholders come from [`DetectionContext`]). A modifier this module
//! does not know fails the rule with `Unsupported { feature:
//! "modifier:<name>" }`, never a silent mismatch.

use aho_corasick::AhoCorasick;
use serde_yaml_ng::Value;

use crate::condition::{parse_condition, Condition};
use crate::error::RuleErrorKind;
use crate::event::Event;
use crate::field::{FieldName, FieldTableBuilder};
use crate::pattern::{literal_glob, parse_glob, Anchor, Cidr, Pattern, Scratch};

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
fn base64_encode(bytes: &[u8]) -> String {
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
fn base64offset_variants(text: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    (0..3)
        .map(|shift| {
            let mut input = vec![b' '; shift];
            input.extend_from_slice(text);
            let encoded = base64_encode(&input);
            let cut_end = [0, 3, 2][(text.len() + shift) % 3];
            let end = encoded.len().saturating_sub(cut_end);
            encoded
                .get(START[shift]..end)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A numeric comparison of the `lt`/`lte`/`gt`/`gte` modifiers (`Eq`
/// where only a time part was given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NumericOp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl NumericOp {
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            NumericOp::Eq => value == bound,
            NumericOp::Lt => value < bound,
            NumericOp::Lte => value <= bound,
            NumericOp::Gt => value > bound,
            NumericOp::Gte => value >= bound,
        }
    }
}

/// An automaton over plain `contains` needles, and the needles.
type MergedNeedles = (AhoCorasick, Vec<Box<[u8]>>);

/// What a compiled field test checks.
#[derive(Clone, Debug)]
enum Test {
    /// `|exists`: whether the field is present.
    Exists(bool),
    /// `|fieldref`: the value equals (ASCII case-insensitively, or exactly
    /// with `cased`) the value of any of these other fields. An absent field
    /// on either side does not match.
    FieldRef(Vec<FieldName>),
    /// Numeric modifiers and time parts: the field (or its time part) as a
    /// number compared with any of `bounds`. A value that is not a number
    /// (or not a timestamp, for time parts) does not match.
    Numeric {
        op: NumericOp,
        bounds: Vec<f64>,
        time_part: Option<TimePart>,
        /// The field names the event time: use `Event::time_ns` when the
        /// event does not carry it as a field.
        timestamp_fallback: bool,
    },
    /// One or more values.
    Values {
        /// `all` modifier: every pattern must match; otherwise any.
        all: bool,
        /// A `null` entry was listed: an absent field matches.
        null: bool,
        /// Patterns tried one by one.
        patterns: Vec<Pattern>,
        /// Plain `contains` needles merged into one automaton (OR only),
        /// and the needles themselves (for the rule set's prefilter).
        needles: Option<MergedNeedles>,
    },
}

/// One `field|modifiers: value(s)` entry of a selection. The empty field
/// name means the event message (keyword search).
#[derive(Clone, Debug)]
struct FieldTest {
    /// The field, resolved per event (exact, alias, unique leaf).
    field: FieldName,
    /// Case-sensitive (`cased`): the value is matched without folding.
    cased: bool,
    /// `neq`: a present field must not match; an absent field never
    /// matches (there is no value to differ).
    negate: bool,
    test: Test,
}

impl FieldTest {
    fn matches(&self, event: &Event<'_>, scratch: &mut Scratch) -> bool {
        let value = if self.field.is_empty() {
            Some(event.message)
        } else {
            scratch.field(&self.field, event)
        };
        if self.negate {
            return value.is_some() && !self.test_value(event, value, scratch);
        }
        self.test_value(event, value, scratch)
    }

    fn test_value(&self, event: &Event<'_>, value: Option<&[u8]>, scratch: &mut Scratch) -> bool {
        match (&self.test, value) {
            (Test::Exists(expected), value) => value.is_some() == *expected,
            (Test::FieldRef(_), None) => false,
            (Test::FieldRef(others), Some(raw)) => others.iter().any(|other| {
                scratch.field(other, event).is_some_and(|theirs| {
                    if self.cased {
                        theirs == raw
                    } else {
                        theirs.eq_ignore_ascii_case(raw)
                    }
                })
            }),
            (
                Test::Numeric {
                    op,
                    bounds,
                    time_part,
                    timestamp_fallback,
                },
                value,
            ) => {
                let number = match (time_part, value) {
                    (None, Some(raw)) => parse_number(raw),
                    (Some(part), Some(raw)) => parse_timestamp_ns(raw).map(|t| part.of(t)),
                    (Some(part), None) if *timestamp_fallback => Some(part.of(event.time_ns)),
                    (_, None) => None,
                };
                number.is_some_and(|number| bounds.iter().any(|&b| op.holds(number, b)))
            }
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
                if !self.cased
                    && needles.is_none()
                    && patterns.iter().all(|p| matches!(p, Pattern::Exact(_)))
                {
                    // Only whole values (`field: value`, the commonest
                    // test): each compared with the value folded a word
                    // at a time, without a folded copy of it.
                    let equal = |p: &Pattern| match p {
                        Pattern::Exact(lower) => crate::field::folded_eq(lower, raw),
                        _ => false,
                    };
                    return if *all {
                        patterns.iter().all(equal)
                    } else {
                        patterns.iter().any(equal)
                    };
                }
                let folded = if self.cased { raw } else { scratch.fold(raw) };
                if *all {
                    return patterns.iter().all(|p| p.matches(folded, raw));
                }
                needles
                    .as_ref()
                    .is_some_and(|(automaton, _)| automaton.is_match(folded))
                    || patterns.iter().any(|p| p.matches(folded, raw))
            }
        }
    }
}

/// A field value as a number: ASCII decimal (integer or float), trimmed.
fn parse_number(raw: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let number = text.parse::<f64>().ok()?;
    number.is_finite().then_some(number)
}

/// A time part of the time modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimePart {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl TimePart {
    /// This part of a UTC time (ISO week for `Week`).
    fn of(self, time_ns: i64) -> f64 {
        let seconds = time_ns.div_euclid(1_000_000_000);
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let value = match self {
            TimePart::Minute => (second_of_day / 60) % 60,
            TimePart::Hour => second_of_day / 3600,
            TimePart::Day => day,
            TimePart::Month => month,
            TimePart::Year => year,
            TimePart::Week => iso_week(days, year),
        };
        value as f64
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm), valid for the whole i64 nanosecond range.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    debug_assert!((1..=12).contains(&month) && (1..=31).contains(&day));
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let day_of_year = (153 * mp + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The ISO 8601 week number (1 to 53) of a day.
fn iso_week(days: i64, year: i64) -> i64 {
    // 1970-01-01 was a Thursday; ISO weekdays run Monday=1 to Sunday=7.
    let weekday = (days + 3).rem_euclid(7) + 1;
    let thursday = days - weekday + 4;
    let (thursday_year, _, _) = civil_from_days(thursday);
    debug_assert!((thursday_year - year).abs() <= 1);
    let year_start = days_from_civil(thursday_year, 1, 1);
    (thursday - year_start) / 7 + 1
}

/// Parses the date and time at the start of an ISO 8601 / RFC 3339 text
/// (`YYYY-MM-DD`, optionally `[T ]HH:MM[:SS]`), as UTC. Offsets and
/// fractions are ignored, as the specification warns time modifiers do no
/// time zone conversion.
fn parse_timestamp_ns(raw: &[u8]) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = raw.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let year = number(0..4)?;
    let month = number(5..7)?;
    let day = number(8..10)?;
    if raw.get(4) != Some(&b'-') || raw.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (hour, minute, second) = match raw.get(10) {
        Some(b'T' | b't' | b' ') => (
            number(11..13)?,
            number(14..16)?,
            number(17..19).unwrap_or(0),
        ),
        _ => (0, 0, 0),
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    seconds.checked_mul(1_000_000_000)
}

/// The shortest literal the prefilter accepts: shorter needles hit almost
/// every value and only cost automaton time.
pub(crate) const PREFILTER_LITERAL_BYTES_MIN: usize = 3;

/// The most alternatives [`Detection::required_fields`] lists.
pub(crate) const REQUIRED_FIELD_ALTERNATIVES_MAX: usize = 16;

/// A literal one field must contain for a rule to match: the field name as
/// written (empty: the message), the ASCII-lowercased needle, and where in
/// the value it must be (`Whole`, `StartsWith`, `EndsWith` or anywhere).
pub(crate) type RequiredLiteral = (Box<str>, Box<[u8]>, Anchor);

impl FieldTest {
    /// Interns every field name this test reads.
    fn intern_fields(&mut self, table: &mut FieldTableBuilder) {
        table.intern(&mut self.field);
        if let Test::FieldRef(others) = &mut self.test {
            for other in others {
                table.intern(other);
            }
        }
    }

    /// Literals of which at least one must occur in this test's field
    /// (ASCII-folded) for the test to pass, or `None` where no such set is
    /// known (regexes, CIDR, numbers, negation, null, short literals).
    fn required_literals(&self) -> Option<Vec<RequiredLiteral>> {
        if self.negate {
            return None;
        }
        let Test::Values {
            all,
            null: false,
            patterns,
            needles,
        } = &self.test
        else {
            return None;
        };
        let field: Box<str> = self.field.as_str().into();
        let usable = |bytes: &[u8], anchor: Anchor| -> Option<RequiredLiteral> {
            (bytes.len() >= PREFILTER_LITERAL_BYTES_MIN).then(|| {
                (
                    field.clone(),
                    bytes.to_ascii_lowercase().into_boxed_slice(),
                    anchor,
                )
            })
        };
        if *all {
            // Every pattern must match, so any one literal is required:
            // take the longest (the most selective).
            return patterns
                .iter()
                .filter_map(|p| {
                    p.literal()
                        .and_then(|literal| usable(&literal, p.literal_anchor()))
                })
                .max_by_key(|(_, needle, _)| needle.len())
                .map(|literal| vec![literal]);
        }
        let mut out = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            for literal in pattern.literals()? {
                out.push(usable(&literal, pattern.literal_anchor())?);
            }
        }
        if let Some((_, list)) = needles {
            for needle in list {
                out.push(usable(needle, Anchor::Contains)?);
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

impl FieldTest {
    /// The payload field this test cannot pass without, if any: its
    /// field, unless the test passes on an absent field (`exists: false`,
    /// a listed `null`, a time part that falls back to the event's time)
    /// or reads the message.
    fn required_field(&self) -> Option<&FieldName> {
        if self.field.is_empty() {
            return None;
        }
        let needs_value = self.negate
            || match &self.test {
                Test::Exists(expected) => *expected,
                Test::FieldRef(_) => true,
                Test::Numeric {
                    time_part,
                    timestamp_fallback,
                    ..
                } => !(time_part.is_some() && *timestamp_fallback),
                Test::Values { null, .. } => !null,
            };
        needs_value.then_some(&self.field)
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

impl Selection {
    /// Per AND-group the test with the fewest required literals; the union
    /// over groups. `None` if some group has no test with literals.
    fn required_literals(&self) -> Option<Vec<RequiredLiteral>> {
        let mut out = Vec::new();
        for group in &self.groups {
            let best = group
                .iter()
                .filter_map(FieldTest::required_literals)
                .min_by_key(Vec::len)?;
            out.extend(best);
        }
        Some(out)
    }
}

/// A compiled `detection:` section.
#[derive(Clone, Debug)]
pub(crate) struct Detection {
    selections: Vec<Selection>,
    condition: Condition,
}

impl Detection {
    /// Interns every field name the detection reads into `table`, so that
    /// matching reads them from the scratch's field index.
    pub(crate) fn intern_fields(&mut self, table: &mut FieldTableBuilder) {
        for selection in &mut self.selections {
            for test in selection.groups.iter_mut().flatten() {
                test.intern_fields(table);
            }
        }
    }

    /// Whether the event satisfies the condition. `scratch` must have
    /// indexed `event` under the table the detection was interned into.
    pub(crate) fn matches(&self, event: &Event<'_>, scratch: &mut Scratch) -> bool {
        let selections = &self.selections;
        self.condition.evaluate(&mut |index| {
            selections
                .get(index as usize)
                .is_some_and(|selection| selection.matches(event, scratch))
        })
    }

    /// Literals of which at least one must occur (in its field, ASCII
    /// case-insensitively) for the detection to match, or `None` if the
    /// detection can match without any (then it is always evaluated).
    pub(crate) fn required_literals(&self) -> Option<Vec<RequiredLiteral>> {
        self.condition_literals(&self.condition)
    }

    fn condition_literals(&self, condition: &Condition) -> Option<Vec<RequiredLiteral>> {
        match condition {
            Condition::Selection(index) => {
                self.selections.get(*index as usize)?.required_literals()
            }
            // A negation requires absence, never presence.
            Condition::Not(_) => None,
            // Any child's requirement is the whole AND's; the smallest set
            // filters best.
            Condition::And(children) => children
                .iter()
                .filter_map(|child| self.condition_literals(child))
                .min_by_key(Vec::len),
            Condition::Or(children) => {
                let mut out = Vec::new();
                for child in children {
                    out.extend(self.condition_literals(child)?);
                }
                Some(out)
            }
        }
    }

    /// The fields the detection cannot match without, as an OR of ANDs:
    /// for one alternative (at most [`REQUIRED_FIELD_ALTERNATIVES_MAX`]),
    /// every field listed must be present. `None` where some way to match
    /// needs no field at all (a negation, a keyword, a group of tests that
    /// pass on absent fields).
    pub(crate) fn required_fields(&self) -> Option<Vec<Vec<&FieldName>>> {
        self.condition_fields(&self.condition)
    }

    fn condition_fields(&self, condition: &Condition) -> Option<Vec<Vec<&FieldName>>> {
        match condition {
            Condition::Selection(index) => {
                let selection = self.selections.get(*index as usize)?;
                selection
                    .groups
                    .iter()
                    .map(|group| {
                        let mut fields: Vec<&FieldName> = Vec::new();
                        for field in group.iter().filter_map(FieldTest::required_field) {
                            if !fields.contains(&field) {
                                fields.push(field);
                            }
                        }
                        (!fields.is_empty()).then_some(fields)
                    })
                    .collect()
            }
            Condition::Not(_) => None,
            Condition::Or(children) => {
                let mut out = Vec::new();
                for child in children {
                    out.extend(self.condition_fields(child)?);
                }
                (out.len() <= REQUIRED_FIELD_ALTERNATIVES_MAX).then_some(out)
            }
            // Every child's requirement holds at once: their product, while
            // it stays small; past that, the requirement of fewer children
            // (any child's alone is the whole AND's).
            Condition::And(children) => {
                let mut out: Option<Vec<Vec<&FieldName>>> = None;
                for child in children {
                    let Some(theirs) = self.condition_fields(child) else {
                        continue;
                    };
                    out = Some(match out {
                        None => theirs,
                        Some(ours)
                            if ours.len() * theirs.len() <= REQUIRED_FIELD_ALTERNATIVES_MAX =>
                        {
                            let mut product = Vec::with_capacity(ours.len() * theirs.len());
                            for left in &ours {
                                for right in &theirs {
                                    let mut all = left.clone();
                                    for field in right {
                                        if !all.contains(field) {
                                            all.push(field);
                                        }
                                    }
                                    product.push(all);
                                }
                            }
                            product
                        }
                        Some(ours) => ours,
                    });
                }
                out
            }
        }
    }

    /// Compiles the YAML value of a `detection:` key.
    pub(crate) fn compile(
        section: &Value,
        context: &DetectionContext<'_>,
    ) -> Result<Detection, RuleErrorKind> {
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
                    selections.push(compile_selection(value, context)?);
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

fn compile_selection(
    value: &Value,
    context: &DetectionContext<'_>,
) -> Result<Selection, RuleErrorKind> {
    let groups = match value {
        Value::Mapping(_) => vec![compile_map(value, context)?],
        Value::Sequence(items) if items.is_empty() => {
            return Err(RuleErrorKind::invalid("selection is an empty list"))
        }
        Value::Sequence(items) if items.iter().all(|item| matches!(item, Value::Mapping(_))) => {
            items
                .iter()
                .map(|item| compile_map(item, context))
                .collect::<Result<_, _>>()?
        }
        Value::Sequence(items) if items.iter().any(|item| matches!(item, Value::Mapping(_))) => {
            return Err(RuleErrorKind::unsupported("selection:mixed-list"))
        }
        // A list of plain values, or one plain value: keywords.
        Value::Sequence(_) | Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            vec![vec![compile_test("", &[], value, context)?]]
        }
        Value::Null => return Err(RuleErrorKind::invalid("selection is empty")),
        Value::Tagged(_) => return Err(RuleErrorKind::unsupported("yaml:tag")),
    };
    Ok(Selection { groups })
}

fn compile_map(
    value: &Value,
    context: &DetectionContext<'_>,
) -> Result<Vec<FieldTest>, RuleErrorKind> {
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
        tests.push(compile_test(field, &modifiers, values, context)?);
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

/// Field names whose time parts fall back to the event time when the event
/// does not carry them as a field: the usual names of "when it happened".
const TIMESTAMP_FIELDS: &[&str] = &["@timestamp", "timestamp", "time", "_time", "UtcTime"];

/// The most values one `expand` placeholder may produce in one value, so
/// that a value with several placeholders cannot multiply without bound.
const EXPANSIONS_MAX: usize = 1000;

/// Compile-time inputs of a detection that do not come from the rule text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DetectionContext<'a> {
    /// `expand` placeholders: name (without `%`) to values.
    pub(crate) placeholders: &'a std::collections::BTreeMap<String, Vec<String>>,
}

/// Replaces every `%name%` in `text` by each of its values (the cartesian
/// product over several placeholders). An unknown placeholder is an
/// unsupported feature of this deployment, named so it can be configured.
fn expand_placeholders(
    text: &str,
    context: &DetectionContext<'_>,
) -> Result<Vec<String>, RuleErrorKind> {
    let mut results = vec![String::new()];
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let Some(length) = rest[start + 1..].find('%') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + length];
        let values = context
            .placeholders
            .get(name)
            .ok_or_else(|| RuleErrorKind::unsupported(format!("placeholder:{name}")))?;
        if values.is_empty() {
            return Err(RuleErrorKind::invalid(format!(
                "placeholder '{name}' has no values"
            )));
        }
        let prefix = &rest[..start];
        let mut next = Vec::with_capacity(results.len() * values.len());
        for partial in &results {
            for value in values {
                next.push(format!("{partial}{prefix}{value}"));
            }
        }
        if next.len() > EXPANSIONS_MAX {
            return Err(RuleErrorKind::unsupported(
                "modifier:expand-too-many-values",
            ));
        }
        results = next;
        rest = &rest[start + 2 + length..];
    }
    for partial in &mut results {
        partial.push_str(rest);
    }
    Ok(results)
}

/// UTF-16 encodings of the `utf16le`/`wide`, `utf16be` and `utf16`
/// modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Utf16 {
    Le,
    Be,
    /// Little-endian with a byte order mark, as Windows writes it.
    Bom,
}

fn utf16(text: &str, encoding: Utf16) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2 + 2);
    if encoding == Utf16::Bom {
        out.extend_from_slice(&[0xff, 0xfe]);
    }
    for unit in text.encode_utf16() {
        match encoding {
            Utf16::Be => out.extend_from_slice(&unit.to_be_bytes()),
            Utf16::Le | Utf16::Bom => out.extend_from_slice(&unit.to_le_bytes()),
        }
    }
    out
}

fn compile_test(
    field: &str,
    modifiers: &[&str],
    value: &Value,
    context: &DetectionContext<'_>,
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
    let mut base64 = false;
    let mut wide: Option<Utf16> = None;
    let mut expand = false;
    let mut negate = false;
    let mut numeric: Option<NumericOp> = None;
    let mut time_part: Option<TimePart> = None;
    let (mut regex_i, mut regex_m, mut regex_s) = (false, false, false);
    for modifier in modifiers {
        match *modifier {
            "cidr" if !keyword => cidr = true,
            "fieldref" if !keyword => fieldref = true,
            "windash" => windash = true,
            "base64offset" => base64offset = true,
            "base64" => base64 = true,
            "utf16le" | "wide" => wide = Some(Utf16::Le),
            "utf16be" => wide = Some(Utf16::Be),
            "utf16" => wide = Some(Utf16::Bom),
            "expand" => expand = true,
            "neq" if !keyword => negate = true,
            "lt" if !keyword => numeric = Some(NumericOp::Lt),
            "lte" if !keyword => numeric = Some(NumericOp::Lte),
            "gt" if !keyword => numeric = Some(NumericOp::Gt),
            "gte" if !keyword => numeric = Some(NumericOp::Gte),
            "minute" if !keyword => time_part = Some(TimePart::Minute),
            "hour" if !keyword => time_part = Some(TimePart::Hour),
            "day" if !keyword => time_part = Some(TimePart::Day),
            "week" if !keyword => time_part = Some(TimePart::Week),
            "month" if !keyword => time_part = Some(TimePart::Month),
            "year" if !keyword => time_part = Some(TimePart::Year),
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
    let list: Vec<&Value> = match value {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    if exists {
        return match value {
            Value::Bool(flag) if modifiers.len() == 1 && !keyword => Ok(FieldTest {
                field: FieldName::new(field),
                cased,
                negate: false,
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
            .any(|m| !matches!(*m, "fieldref" | "cased" | "neq"));
        if extra {
            return Err(RuleErrorKind::unsupported("modifier:fieldref-combined"));
        }
        let others = match value {
            Value::String(other) => vec![FieldName::new(other)],
            Value::Sequence(items) if !items.is_empty() => items
                .iter()
                .map(|item| match item {
                    Value::String(other) => Ok(FieldName::new(other)),
                    _ => Err(RuleErrorKind::invalid("'fieldref' takes field names")),
                })
                .collect::<Result<Vec<FieldName>, _>>()?,
            _ => return Err(RuleErrorKind::invalid("'fieldref' takes field names")),
        };
        return Ok(FieldTest {
            field: FieldName::new(field),
            cased,
            negate,
            test: Test::FieldRef(others),
        });
    }
    if numeric.is_some() || time_part.is_some() {
        let extra = modifiers.iter().any(|m| {
            !matches!(
                *m,
                "lt" | "lte"
                    | "gt"
                    | "gte"
                    | "neq"
                    | "minute"
                    | "hour"
                    | "day"
                    | "week"
                    | "month"
                    | "year"
            )
        });
        if extra {
            return Err(RuleErrorKind::invalid(
                "numeric and time modifiers combine only with each other and 'neq'",
            ));
        }
        if list.is_empty() || list.len() > FIELD_VALUES_MAX {
            return Err(RuleErrorKind::invalid(format!(
                "field '{field}' needs between 1 and {FIELD_VALUES_MAX} numbers"
            )));
        }
        let mut bounds = Vec::with_capacity(list.len());
        for item in &list {
            let number = match item {
                Value::Number(number) => number.as_f64(),
                Value::String(text) => text.trim().parse::<f64>().ok(),
                _ => None,
            };
            match number {
                Some(number) if number.is_finite() => bounds.push(number),
                _ => {
                    return Err(RuleErrorKind::invalid(format!(
                        "field '{field}' compares numbers, not {item:?}"
                    )))
                }
            }
        }
        let timestamp_fallback = TIMESTAMP_FIELDS.contains(&field);
        return Ok(FieldTest {
            field: FieldName::new(field),
            cased,
            negate,
            test: Test::Numeric {
                op: numeric.unwrap_or(NumericOp::Eq),
                bounds,
                time_part,
                timestamp_fallback,
            },
        });
    }
    if cidr && (modifiers.len() > 1 + usize::from(all) + usize::from(negate)) {
        return Err(RuleErrorKind::invalid("'cidr' combines only with 'all'"));
    }
    if base64offset && anchor != Anchor::Contains {
        return Err(RuleErrorKind::invalid("'base64offset' needs 'contains'"));
    }
    if base64offset && base64 {
        return Err(RuleErrorKind::invalid(
            "'base64' and 'base64offset' exclude each other",
        ));
    }
    if regex && (windash || base64offset || base64 || wide.is_some() || expand) {
        return Err(RuleErrorKind::invalid(
            "'re' cannot combine with encodings or expansions",
        ));
    }
    if wide.is_some() && !(base64 || base64offset) {
        // Raw UTF-16 in a text field is possible but matching it after the
        // engine's lossy UTF-8 view would be a guess.
        return Err(RuleErrorKind::unsupported("modifier:utf16-without-base64"));
    }
    // Base64 text is case-sensitive: folding it would match other bytes.
    let encoded = base64offset || base64;
    let cased = cased || encoded;
    if regex && anchor != Anchor::Whole && !keyword {
        return Err(RuleErrorKind::invalid(
            "'re' cannot combine with contains/startswith/endswith",
        ));
    }
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
            if keyword || regex || negate {
                return Err(RuleErrorKind::invalid(
                    "null is only valid as a plain field value",
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
        let texts = if expand {
            expand_placeholders(&text, context)?
        } else {
            vec![text]
        };
        let mut variants = Vec::with_capacity(texts.len());
        for text in texts {
            if windash {
                variants.extend(windash_variants(&text)?);
            } else {
                variants.push(text);
            }
        }
        if all && variants.len() > 1 {
            // `all` over values whose variants are alternatives would need
            // an AND of ORs; no SigmaHQ rule does that.
            return Err(RuleErrorKind::unsupported("modifier:all-with-expansion"));
        }
        for variant in variants {
            if encoded {
                let bytes = match wide {
                    Some(encoding) => utf16(&variant, encoding),
                    None => variant.into_bytes(),
                };
                let encodings = if base64offset {
                    base64offset_variants(&bytes)
                } else {
                    vec![base64_encode(&bytes)]
                };
                for encoding in encodings {
                    patterns.push(Pattern::from_tokens(&literal_glob(
                        encoding.as_bytes(),
                        anchor,
                        false,
                    )));
                }
            } else {
                patterns.push(Pattern::from_tokens(&parse_glob(&variant, anchor, !cased)));
            }
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
        field: FieldName::new(field),
        cased,
        negate,
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
) -> Result<Option<MergedNeedles>, RuleErrorKind> {
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
    // Only whether some needle occurs matters, which every match kind
    // answers alike; leftmost-first lets the library put its SIMD (Teddy)
    // prefilter in front, which standard semantics do not get.
    let automaton = AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(&needles)
        .map_err(|error| RuleErrorKind::invalid(format!("pattern set: {error}")))?;
    patterns.retain(|p| p.contains_needle().is_none());
    let needles = needles.into_iter().map(Vec::into_boxed_slice).collect();
    Ok(Some((automaton, needles)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields a detection cannot match without, per way it can match.
    #[test]
    fn required_fields_follow_the_condition() {
        let placeholders = std::collections::BTreeMap::new();
        let context = DetectionContext {
            placeholders: &placeholders,
        };
        let fields = |yaml: &str| {
            let value: Value = serde_yaml_ng::from_str(yaml).expect("yaml");
            let detection = Detection::compile(&value, &context).expect("compiles");
            detection.required_fields().map(|alternatives| {
                alternatives
                    .iter()
                    .map(|all| {
                        all.iter()
                            .map(|f| f.as_str().to_string())
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
            })
        };
        let list = |alternatives: &[&[&str]]| {
            Some(
                alternatives
                    .iter()
                    .map(|all| all.iter().map(|f| f.to_string()).collect::<Vec<_>>())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            fields("s: {A|exists: true, B: x, C|exists: false}\ncondition: s"),
            list(&[&["A", "B"]])
        );
        assert_eq!(
            fields("s: [{A: x}, {B|gt: 3}]\nt: {C|fieldref: D}\ncondition: s and t"),
            list(&[&["A", "C"], &["B", "C"]])
        );
        assert_eq!(
            fields("s: {A: x}\nt: {B|cidr: 10.0.0.0/8}\ncondition: 1 of them"),
            list(&[&["A"], &["B"]])
        );
        assert_eq!(
            fields("s: {A: x}\nt: {B: y}\ncondition: s and not t"),
            list(&[&["A"]])
        );
        // Ways to match that need no field.
        assert_eq!(fields("s: {A: x}\nt: {B: y}\ncondition: s or not t"), None);
        assert_eq!(fields("s: {A: [x, null]}\ncondition: s"), None);
        assert_eq!(fields("s: [needle]\ncondition: s"), None);
        assert_eq!(fields("s: {A|exists: false}\ncondition: s"), None);
        assert_eq!(fields("s: {timestamp|hour: 3}\ncondition: s"), None);
    }

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
    fn time_parts_follow_the_calendar() {
        const DAY_NS: i64 = 86_400 * 1_000_000_000;
        let at = |y, m, d| days_from_civil(y, m, d) * DAY_NS;
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        // ISO weeks at year boundaries.
        assert_eq!(TimePart::Week.of(at(2021, 1, 3)), 53.0);
        assert_eq!(TimePart::Week.of(at(2021, 1, 4)), 1.0);
        assert_eq!(TimePart::Week.of(at(2024, 12, 30)), 1.0);
        assert_eq!(TimePart::Week.of(at(2026, 11, 27)), 48.0);
        assert_eq!(TimePart::Year.of(at(1969, 12, 31)), 1969.0);
        assert_eq!(TimePart::Hour.of(at(2026, 1, 1) - 1), 23.0);
        assert_eq!(
            parse_timestamp_ns(b"2026-11-27T04:30:59.123Z"),
            Some(at(2026, 11, 27) + (4 * 3600 + 30 * 60 + 59) * 1_000_000_000)
        );
        for bad in [
            &b"2026-13-01"[..],
            b"26-11-27",
            b"2026/11/27",
            b"",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_timestamp_ns(bad), None);
        }
        // Extremes do not overflow.
        let _ = TimePart::Week.of(i64::MIN);
        let _ = TimePart::Week.of(i64::MAX);
    }

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn base64offset_matches_pysigma() {
        // Checked against pySigma's formula run on "/bin/bash".
        assert_eq!(
            base64offset_variants(b"/bin/bash"),
            vec![
                "L2Jpbi9iYXNo".to_owned(),
                "9iaW4vYmFza".to_owned(),
                "vYmluL2Jhc2".to_owned()
            ]
        );
    }
}
