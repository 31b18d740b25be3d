//! Sigma correlation rules as definitions: parsing and reference resolution.
//!
//! This module owns the `correlation:` document of the Sigma correlation
//! specification: its type (`event_count`, `value_count`, `temporal`,
//! `temporal_ordered`), `rules`, `group-by`, `aliases`, `timespan`,
//! `condition` (with `field` for `value_count`) and `generate`, and the
//! resolution of `rules` references to detections or to other correlations
//! (chaining). It produces immutable [`CorrelationMeta`] values; the state
//! machine that runs them lives in `crate::correlation`. It must not hold
//! per-event state or read anything but the YAML it is given.
//!
//! ## Inputs, positions and masks
//!
//! A correlation's `rules` list, in declared order, is its list of *inputs*
//! ([`CorrelationInput`]). The position of an input in that list is the bit
//! of the *input mask* that says "this observation came from that input"
//! (at most [`CORRELATION_INPUTS_MAX`] inputs, so a mask is a `u64`).
//! `temporal` counts distinct positions; `temporal_ordered` needs them in
//! position order.
//!
//! ## Aliases
//!
//! `aliases: {alias: {rule name: field}}` lets a `group-by` entry (or the
//! `value_count` field) name a different event field per input. After
//! compilation every input has its own resolved field list
//! ([`CorrelationMeta::group_fields`]); an entry without an alias reads the
//! field of the same name for every input.
//!
//! ## Chaining
//!
//! A correlation B may list a correlation A as an input. A's alerts are
//! then observations of B, fed inside the correlation state (see
//! `crate::correlation`), with B's group key taken from A's group key.
//! For that to stay correct when state is sharded by group key, B's group
//! key must be byte-identical to A's: B's resolved group fields for input A
//! must equal A's `group-by`, in order. Anything else (re-grouping by a
//! subset) would split B's groups across shards and is reported as
//! `Unsupported { feature: "correlation:chaining-regroup" }`. Chains are
//! acyclic and at most [`CHAIN_DEPTH_MAX`] deep.
//!
//! ## Stable identity
//!
//! Every correlation has a [`CorrelationMeta::hash`], xxh3-64 of its `id`,
//! which keys its state so that state survives a rule reload that keeps the
//! rule, and a [`CorrelationMeta::fingerprint`] of everything that decides
//! its windows, so that a rule whose definition changed under the same id
//! starts afresh instead of reading a window of another shape.

use std::collections::HashMap;

use serde_yaml_ng::{Mapping, Value};

use crate::error::RuleErrorKind;

/// The largest `gt`/`gte`/`eq` threshold of a counting correlation. The
/// correlation state keeps one entry per counted event or value up to the
/// threshold, so this bounds the memory of one group.
pub const EVENT_COUNT_THRESHOLD_MAX: u64 = 10_000;

/// The longest correlation timespan accepted: a year. Longer windows would
/// keep groups alive for longer than any checkpoint is meant to carry them.
pub const TIMESPAN_NS_MAX: i64 = 366 * 24 * 3600 * 1_000_000_000;

/// The most inputs (`rules` entries) of one correlation: the bits of a
/// `u64` input mask.
pub const CORRELATION_INPUTS_MAX: usize = 64;

/// The deepest chain of correlations referring to correlations. Feeding a
/// chained alert recurses once per level, so this bounds that recursion.
pub const CHAIN_DEPTH_MAX: usize = 8;

/// A correlation condition as an inclusive range of counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountCondition {
    /// The smallest count that satisfies the condition (`gt`, `gte`, `eq`).
    pub min: Option<u64>,
    /// The largest count that satisfies the condition (`lt`, `lte`, `eq`).
    pub max: Option<u64>,
}

impl CountCondition {
    /// Whether `count` satisfies the condition.
    pub fn holds(&self, count: u64) -> bool {
        self.min.is_none_or(|min| count >= min) && self.max.is_none_or(|max| count <= max)
    }

    /// Conditions with a lower bound are decided eagerly, on the event that
    /// reaches it; conditions with only an upper bound can only be decided
    /// when a window closes.
    pub fn is_eager(&self) -> bool {
        self.min.is_some()
    }
}

/// The kinds of correlation this engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorrelationKind {
    /// `event_count`: events per group in the window.
    EventCount,
    /// `value_count`: distinct values of one field per group in the window.
    ValueCount,
    /// `temporal`: distinct inputs seen per group in the window, any order.
    Temporal,
    /// `temporal_ordered`: every input seen per group in the window, in the
    /// order of `rules`.
    TemporalOrdered,
    /// Anomaly `baseline`: a per-entity, per-bucket metric against its
    /// EWMA and MAD history (see `rules/ANOMALY.md`).
    Baseline,
    /// Anomaly `first_seen`: a value never seen before for the entity.
    FirstSeen,
    /// Anomaly `rare_template`: `first_seen` over `template.id`.
    RareTemplate,
    /// Anomaly `outlier`: a per-bucket feature vector far from the
    /// entity's streaming k-means centres.
    Outlier,
}

impl CorrelationKind {
    fn tag(self) -> u8 {
        match self {
            CorrelationKind::EventCount => 1,
            CorrelationKind::ValueCount => 2,
            CorrelationKind::Temporal => 3,
            CorrelationKind::TemporalOrdered => 4,
            CorrelationKind::Baseline => 5,
            CorrelationKind::FirstSeen => 6,
            CorrelationKind::RareTemplate => 7,
            CorrelationKind::Outlier => 8,
        }
    }

    /// Whether this is an anomaly detector (our `anomaly:` format) rather
    /// than a Sigma correlation.
    pub fn is_anomaly(self) -> bool {
        self.tag() >= 5
    }
}

/// One entry of a correlation's `rules` list, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorrelationInput {
    /// A detection rule (index into the rule set's detections).
    Detection(u32),
    /// Another correlation (index into the rule set's correlations).
    Correlation(u32),
}

/// What the engine needs to know about a correlation rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorrelationMeta {
    /// The rule `id`.
    pub id: String,
    /// The rule `title`.
    pub title: String,
    /// The optional `name`.
    pub name: Option<String>,
    /// The `level`, as written.
    pub level: Option<String>,
    /// The `description`.
    pub description: Option<String>,
    /// The source the rule came from.
    pub origin: String,
    /// The correlation type.
    pub kind: CorrelationKind,
    /// The detections this correlation counts (indices into detections),
    /// sorted, without repeats. Correlation inputs are not listed here; see
    /// [`CorrelationMeta::inputs`].
    pub rules: Vec<u32>,
    /// Every `rules` entry in declared order; the position is the input
    /// mask bit (see the module docs).
    pub inputs: Vec<CorrelationInput>,
    /// `group-by` names, in order; the group key encodes them so.
    pub group_by: Vec<String>,
    /// Per input position, the event field each `group-by` entry reads
    /// (aliases applied). Same length as `inputs`; each entry has the
    /// length of `group_by`.
    pub group_fields: Vec<Vec<String>>,
    /// `value_count`: per input position, the field whose distinct values
    /// are counted (aliases applied). Empty for other kinds.
    pub value_fields: Vec<String>,
    /// `timespan` in nanoseconds (always positive).
    pub timespan_ns: i64,
    /// `condition`. For `temporal` kinds without one, every input.
    pub condition: CountCondition,
    /// `generate`: the referenced rules also alert on their own.
    pub generate: bool,
    /// Whether this correlation's alerts are emitted: true unless another
    /// correlation refers to it and none of those sets `generate`.
    pub standalone: bool,
    /// xxh3-64 of `id`: the key of this correlation's state.
    pub hash: u64,
    /// xxh3-64 over kind, inputs' identity, group fields, value fields,
    /// timespan and condition: a group whose fingerprint differs was made
    /// by another definition and is reset.
    pub fingerprint: u64,
    /// Anomaly rules: the detector's settings. `None` for Sigma
    /// correlations. For anomaly rules `timespan_ns` is the bucket width
    /// (`baseline`, `outlier`) or the forget-after span (`first_seen`,
    /// `rare_template`), and `condition` is unused.
    pub anomaly: Option<Box<crate::anomaly_rule::AnomalySpec>>,
}

impl CorrelationMeta {
    /// The meta of a rule being read, before its correlation or anomaly
    /// section fills in inputs, grouping, window and condition.
    pub(crate) fn draft(
        (id, title, name, level, description): (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        ),
        origin: String,
        kind: CorrelationKind,
    ) -> Self {
        CorrelationMeta {
            id,
            title,
            name,
            level,
            description,
            origin,
            kind,
            rules: Vec::new(),
            inputs: Vec::new(),
            group_by: Vec::new(),
            group_fields: Vec::new(),
            value_fields: Vec::new(),
            timespan_ns: 1,
            condition: CountCondition {
                min: None,
                max: None,
            },
            generate: false,
            standalone: true,
            hash: 0,
            fingerprint: 0,
            anomaly: None,
        }
    }
}

/// The stable 64-bit hash of a rule id that keys correlation state.
pub fn rule_id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// A correlation read from YAML, before its references are resolved.
#[derive(Clone, Debug)]
pub(crate) struct CorrelationDraft {
    pub(crate) meta: CorrelationMeta,
    /// The `rules` entries as written.
    pub(crate) references: Vec<String>,
    /// `aliases`: alias name → (rule name or id → field).
    pub(crate) aliases: Vec<(String, Vec<(String, String)>)>,
    /// `condition.field` of `value_count`.
    pub(crate) value_field: Option<String>,
}

fn string_list(value: &Value, what: &str) -> Result<Vec<String>, RuleErrorKind> {
    match value {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Sequence(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(RuleErrorKind::invalid(format!(
                    "'{what}' must list strings"
                ))),
            })
            .collect(),
        _ => Err(RuleErrorKind::invalid(format!(
            "'{what}' must be a list of strings"
        ))),
    }
}

/// Parses a Sigma timespan: a positive integer and one of `s`, `m`, `h`, `d`.
pub fn parse_timespan_ns(text: &str) -> Result<i64, RuleErrorKind> {
    let text = text.trim();
    let invalid = || RuleErrorKind::invalid(format!("timespan '{text}' is not <number><s|m|h|d>"));
    let Some(unit) = text.chars().last() else {
        return Err(invalid());
    };
    let unit_ns: i64 = match unit {
        's' => 1_000_000_000,
        'm' => 60 * 1_000_000_000,
        'h' => 3600 * 1_000_000_000,
        'd' => 86_400 * 1_000_000_000,
        _ => return Err(invalid()),
    };
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let count: i64 = digits.parse().map_err(|_| invalid())?;
    let span_ns = count.checked_mul(unit_ns).ok_or_else(invalid)?;
    if span_ns <= 0 || span_ns > TIMESPAN_NS_MAX {
        return Err(RuleErrorKind::invalid(format!(
            "timespan '{text}' must be positive and at most 366d"
        )));
    }
    Ok(span_ns)
}

/// Parses a `condition:` map into a count range and the optional `field`.
fn parse_count_condition(
    value: &Value,
) -> Result<(Option<CountCondition>, Option<String>), RuleErrorKind> {
    let Value::Mapping(map) = value else {
        return Err(RuleErrorKind::invalid(
            "correlation condition must be a map",
        ));
    };
    let mut min: Option<u64> = None;
    let mut max: Option<u64> = None;
    let mut field = None;
    let mut raise_min = |bound: u64| min = Some(min.map_or(bound, |m| m.max(bound)));
    let mut lower_max = |bound: u64| max = Some(max.map_or(bound, |m| m.min(bound)));
    for (key, bound) in map {
        let Value::String(operator) = key else {
            return Err(RuleErrorKind::invalid(
                "correlation condition keys must be strings",
            ));
        };
        if operator == "field" {
            field = Some(match bound {
                Value::String(name) => name.clone(),
                Value::Sequence(_) => {
                    return Err(RuleErrorKind::unsupported("correlation:value_count-fields"))
                }
                _ => return Err(RuleErrorKind::invalid("'field' must be a field name")),
            });
            continue;
        }
        let Some(bound) = bound.as_u64() else {
            return Err(RuleErrorKind::invalid(format!(
                "correlation condition '{operator}' needs a non-negative integer"
            )));
        };
        match operator.as_str() {
            "gt" => raise_min(
                bound
                    .checked_add(1)
                    .ok_or_else(|| RuleErrorKind::invalid("'gt' bound too large"))?,
            ),
            "gte" => raise_min(bound),
            "lt" if bound == 0 => return Err(RuleErrorKind::invalid("'lt: 0' is never true")),
            "lt" => lower_max(bound - 1),
            "lte" => lower_max(bound),
            "eq" => {
                raise_min(bound);
                lower_max(bound);
            }
            "neq" => return Err(RuleErrorKind::unsupported("correlation-condition:neq")),
            other => {
                return Err(RuleErrorKind::invalid(format!(
                    "unknown correlation condition '{other}'"
                )))
            }
        }
    }
    // A group only exists once it has an event, so a lower bound of zero
    // adds nothing to an upper bound and is meaningless on its own.
    if min == Some(0) {
        min = None;
    }
    let condition = match (min, max) {
        (None, None) => None,
        (Some(min), Some(max)) if min > max => {
            return Err(RuleErrorKind::invalid(
                "correlation condition range is empty",
            ))
        }
        (Some(min), _) if min > EVENT_COUNT_THRESHOLD_MAX => {
            return Err(RuleErrorKind::unsupported(
                "correlation:threshold-above-10000",
            ))
        }
        _ => Some(CountCondition { min, max }),
    };
    Ok((condition, field))
}

/// Reads the `correlation:` section of a document whose common metadata
/// (id, title, ...) is already in `meta`.
pub(crate) fn read_correlation(
    section: &Mapping,
    document: &Mapping,
    mut meta: CorrelationMeta,
) -> Result<CorrelationDraft, RuleErrorKind> {
    let kind = match section.get("type") {
        Some(Value::String(kind)) => match kind.as_str() {
            "event_count" => CorrelationKind::EventCount,
            "value_count" => CorrelationKind::ValueCount,
            "temporal" => CorrelationKind::Temporal,
            "temporal_ordered" => CorrelationKind::TemporalOrdered,
            other => return Err(RuleErrorKind::unsupported(format!("correlation:{other}"))),
        },
        _ => return Err(RuleErrorKind::invalid("correlation has no type")),
    };
    let references = match section.get("rules") {
        Some(value) => string_list(value, "rules")?,
        None => return Err(RuleErrorKind::invalid("correlation has no rules")),
    };
    if references.is_empty() {
        return Err(RuleErrorKind::invalid("correlation has no rules"));
    }
    if references.len() > CORRELATION_INPUTS_MAX {
        return Err(RuleErrorKind::unsupported("correlation:more-than-64-rules"));
    }
    // A rule listed twice is one input; keep the first position so the
    // order `temporal_ordered` reads stays the written one.
    let mut references = references;
    let mut seen = std::collections::HashSet::new();
    references.retain(|reference| seen.insert(reference.clone()));
    let group_by = match section.get("group-by") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => string_list(value, "group-by")?,
    };
    let timespan_ns = match section.get("timespan") {
        Some(Value::String(text)) => parse_timespan_ns(text)?,
        _ => return Err(RuleErrorKind::invalid("correlation has no timespan")),
    };
    let (condition, value_field) = match section.get("condition") {
        Some(value) => parse_count_condition(value)?,
        None => (None, None),
    };
    let inputs_count = references.len() as u64;
    let condition = match (kind, condition) {
        (
            CorrelationKind::Baseline
            | CorrelationKind::FirstSeen
            | CorrelationKind::RareTemplate
            | CorrelationKind::Outlier,
            _,
        ) => {
            return Err(RuleErrorKind::invalid(
                "anomaly types belong in an 'anomaly:' section",
            ))
        }
        (CorrelationKind::EventCount | CorrelationKind::ValueCount, None) => {
            return Err(RuleErrorKind::invalid(
                "counting correlation has no condition (or one that is always true)",
            ))
        }
        (CorrelationKind::EventCount | CorrelationKind::ValueCount, Some(condition)) => condition,
        (CorrelationKind::Temporal | CorrelationKind::TemporalOrdered, None) => CountCondition {
            min: Some(inputs_count),
            max: None,
        },
        (CorrelationKind::Temporal, Some(condition)) => {
            if condition.min.is_some_and(|min| min > inputs_count) {
                return Err(RuleErrorKind::invalid(
                    "temporal condition asks for more rules than listed",
                ));
            }
            condition
        }
        (CorrelationKind::TemporalOrdered, Some(condition)) => {
            if condition.min != Some(inputs_count) || condition.max.is_some() {
                return Err(RuleErrorKind::unsupported(
                    "correlation:temporal_ordered-partial-condition",
                ));
            }
            condition
        }
    };
    match (kind, &value_field) {
        (CorrelationKind::ValueCount, None) => {
            return Err(RuleErrorKind::invalid(
                "value_count correlation has no condition 'field'",
            ))
        }
        (CorrelationKind::ValueCount, Some(_)) | (_, None) => {}
        (_, Some(_)) => {
            return Err(RuleErrorKind::invalid(
                "condition 'field' is only valid for value_count",
            ))
        }
    }
    let generate = match section.get("generate").or_else(|| document.get("generate")) {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(RuleErrorKind::invalid("'generate' must be a boolean")),
    };
    let aliases = match section.get("aliases") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Mapping(map)) => {
            let mut aliases = Vec::with_capacity(map.len());
            for (alias, per_rule) in map {
                let (Value::String(alias), Value::Mapping(per_rule)) = (alias, per_rule) else {
                    return Err(RuleErrorKind::invalid(
                        "'aliases' maps alias names to maps of rule name to field",
                    ));
                };
                let mut fields = Vec::with_capacity(per_rule.len());
                for (rule, field) in per_rule {
                    let (Value::String(rule), Value::String(field)) = (rule, field) else {
                        return Err(RuleErrorKind::invalid(
                            "'aliases' entries map a rule name to a field name",
                        ));
                    };
                    fields.push((rule.clone(), field.clone()));
                }
                aliases.push((alias.clone(), fields));
            }
            aliases
        }
        Some(_) => return Err(RuleErrorKind::invalid("'aliases' must be a map")),
    };
    meta.kind = kind;
    meta.group_by = group_by;
    meta.timespan_ns = timespan_ns;
    meta.condition = condition;
    meta.generate = generate;
    meta.hash = rule_id_hash(&meta.id);
    debug_assert!(meta.timespan_ns > 0);
    Ok(CorrelationDraft {
        meta,
        references,
        aliases,
        value_field,
    })
}

/// What a reference resolves to, as the rule set's loader knows it.
#[derive(Clone, Debug)]
pub(crate) enum Resolved {
    /// A detection that loaded: its index, id and name.
    Detection(u32, String, Option<String>),
    /// A correlation draft (index into the drafts).
    Draft(usize),
    /// The rule did not load, for this reason.
    Failed(RuleErrorKind),
}

/// Resolves every draft's references, checks chaining, and returns the
/// correlations that compile (in draft order, re-indexed) and the errors of
/// the others as `(draft index, error)`.
pub(crate) fn resolve(
    drafts: Vec<CorrelationDraft>,
    lookup: &HashMap<String, Resolved>,
) -> (Vec<CorrelationMeta>, Vec<(usize, RuleErrorKind)>) {
    // First pass: per draft, the references as detections or drafts.
    #[derive(Clone, Copy)]
    enum Ref {
        Detection(u32),
        Draft(usize),
    }
    /// Per draft: its references with the referenced rule's id and name.
    type Refs = Result<Vec<(Ref, String, Option<String>)>, RuleErrorKind>;
    let mut refs: Vec<Refs> = Vec::with_capacity(drafts.len());
    for draft in &drafts {
        let resolved: Result<Vec<_>, RuleErrorKind> = draft
            .references
            .iter()
            .map(|reference| match lookup.get(reference) {
                Some(Resolved::Detection(index, id, name)) => {
                    Ok((Ref::Detection(*index), id.clone(), name.clone()))
                }
                Some(Resolved::Draft(index)) => Ok((
                    Ref::Draft(*index),
                    drafts[*index].meta.id.clone(),
                    drafts[*index].meta.name.clone(),
                )),
                Some(Resolved::Failed(RuleErrorKind::Unsupported { feature })) => {
                    Err(RuleErrorKind::unsupported(feature.clone()))
                }
                Some(Resolved::Failed(_)) => Err(RuleErrorKind::invalid(format!(
                    "refers to rule '{reference}', which failed to load"
                ))),
                None => Err(RuleErrorKind::UnknownReference(reference.clone())),
            })
            .collect();
        refs.push(resolved);
    }
    // Second pass: a draft is good when its references are good and the
    // chain below it is acyclic and shallow enough. Depth-first with an
    // explicit colour per draft; `depth` bounds the recursion.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Colour {
        White,
        Grey,
        Done,
    }
    fn visit(
        index: usize,
        depth: usize,
        refs: &[Refs],
        colour: &mut [Colour],
        verdict: &mut [Option<Result<usize, RuleErrorKind>>],
    ) -> Result<usize, RuleErrorKind> {
        if let Some(done) = &verdict[index] {
            return done.clone();
        }
        if colour[index] == Colour::Grey {
            return Err(RuleErrorKind::invalid("correlation chain has a cycle"));
        }
        if depth > CHAIN_DEPTH_MAX {
            return Err(RuleErrorKind::unsupported("correlation:chain-too-deep"));
        }
        colour[index] = Colour::Grey;
        let result = match &refs[index] {
            Err(error) => Err(error.clone()),
            Ok(list) => {
                let mut height = 0usize;
                let mut failure = None;
                for (reference, _, _) in list {
                    if let Ref::Draft(other) = reference {
                        match visit(*other, depth + 1, refs, colour, verdict) {
                            Ok(h) => height = height.max(h + 1),
                            Err(error) => {
                                // Unsupported keeps its feature name, so
                                // reports count it; anything else names
                                // the referenced rule's failure once.
                                failure = Some(match error {
                                    RuleErrorKind::Unsupported { .. } => error,
                                    RuleErrorKind::Invalid(ref text)
                                        if text.starts_with("refers to") =>
                                    {
                                        error
                                    }
                                    _ => RuleErrorKind::invalid(format!(
                                        "refers to a correlation that failed: {error}"
                                    )),
                                });
                                break;
                            }
                        }
                    }
                }
                match failure {
                    Some(error) => Err(error),
                    None if height > CHAIN_DEPTH_MAX => {
                        Err(RuleErrorKind::unsupported("correlation:chain-too-deep"))
                    }
                    None => Ok(height),
                }
            }
        };
        colour[index] = Colour::Done;
        verdict[index] = Some(result.clone());
        result
    }
    let mut colour = vec![Colour::White; drafts.len()];
    let mut verdict: Vec<Option<Result<usize, RuleErrorKind>>> = vec![None; drafts.len()];
    for index in 0..drafts.len() {
        let _ = visit(index, 0, &refs, &mut colour, &mut verdict);
    }
    // Final indices of the drafts that passed so far.
    let mut errors: Vec<(usize, RuleErrorKind)> = Vec::new();
    let mut ok: Vec<bool> = verdict.iter().map(|v| matches!(v, Some(Ok(_)))).collect();
    for (index, v) in verdict.iter().enumerate() {
        if let Some(Err(error)) = v {
            errors.push((index, error.clone()));
        }
    }
    // Field checks (aliases, chaining group keys) can fail a draft, which
    // can fail drafts that refer to it; repeat until stable. Each round
    // removes at least one draft or stops, so this ends.
    let mut metas: Vec<Option<CorrelationMeta>> = vec![None; drafts.len()];
    loop {
        let mut changed = false;
        for index in 0..drafts.len() {
            if !ok[index] || metas[index].is_some() {
                continue;
            }
            let Ok(list) = &refs[index] else { continue };
            let result = build_fields(&drafts[index], list.iter().map(|(_, id, name)| (id, name)))
                .and_then(|(group_fields, value_fields)| {
                    // Chained inputs: B's key must equal A's key.
                    for (position, (reference, _, _)) in list.iter().enumerate() {
                        if let Ref::Draft(other) = reference {
                            if !ok[*other] {
                                return Err(RuleErrorKind::invalid(
                                    "refers to a correlation that failed to load",
                                ));
                            }
                            if drafts[index].meta.anomaly.is_some() {
                                return Err(RuleErrorKind::unsupported("anomaly:over-correlation"));
                            }
                            if drafts[index].meta.kind == CorrelationKind::ValueCount {
                                return Err(RuleErrorKind::unsupported(
                                    "correlation:value_count-over-correlation",
                                ));
                            }
                            if group_fields[position] != drafts[*other].meta.group_by {
                                return Err(RuleErrorKind::unsupported(
                                    "correlation:chaining-regroup",
                                ));
                            }
                        }
                    }
                    Ok((group_fields, value_fields))
                });
            match result {
                Ok((group_fields, value_fields)) => {
                    let mut meta = drafts[index].meta.clone();
                    meta.group_fields = group_fields;
                    meta.value_fields = value_fields;
                    metas[index] = Some(meta);
                }
                Err(error) => {
                    ok[index] = false;
                    errors.push((index, error));
                    changed = true;
                }
            }
        }
        // A draft built before one of its inputs failed must fail too.
        for index in 0..drafts.len() {
            if !ok[index] {
                continue;
            }
            let Ok(list) = &refs[index] else { continue };
            let broken = list
                .iter()
                .any(|(reference, _, _)| matches!(reference, Ref::Draft(other) if !ok[*other]));
            if broken {
                ok[index] = false;
                metas[index] = None;
                errors.push((
                    index,
                    RuleErrorKind::invalid("refers to a correlation that failed to load"),
                ));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Re-index the survivors in draft order and fill inputs.
    let mut final_index = vec![u32::MAX; drafts.len()];
    let mut next = 0u32;
    for index in 0..drafts.len() {
        if ok[index] && metas[index].is_some() {
            final_index[index] = next;
            next += 1;
        }
    }
    let mut out = Vec::with_capacity(next as usize);
    for index in 0..drafts.len() {
        if final_index[index] == u32::MAX {
            continue;
        }
        let (Some(mut meta), Ok(list)) = (metas[index].take(), &refs[index]) else {
            continue;
        };
        meta.inputs = list
            .iter()
            .map(|(reference, _, _)| match reference {
                Ref::Detection(d) => CorrelationInput::Detection(*d),
                Ref::Draft(other) => CorrelationInput::Correlation(final_index[*other]),
            })
            .collect();
        let mut detections: Vec<u32> = meta
            .inputs
            .iter()
            .filter_map(|input| match input {
                CorrelationInput::Detection(d) => Some(*d),
                CorrelationInput::Correlation(_) => None,
            })
            .collect();
        detections.sort_unstable();
        detections.dedup();
        meta.rules = detections;
        meta.fingerprint = fingerprint(&meta, list.iter().map(|(_, id, _)| id.as_str()));
        assert!(meta
            .inputs
            .iter()
            .all(|input| !matches!(input, CorrelationInput::Correlation(c) if *c == u32::MAX)));
        out.push(meta);
    }
    errors.sort_by_key(|(index, _)| *index);
    errors.dedup_by_key(|(index, _)| *index);
    (out, errors)
}

/// Resolves aliases into per-input group and value field lists.
fn build_fields<'a>(
    draft: &CorrelationDraft,
    inputs: impl Iterator<Item = (&'a String, &'a Option<String>)>,
) -> Result<(Vec<Vec<String>>, Vec<String>), RuleErrorKind> {
    let inputs: Vec<(&String, &Option<String>)> = inputs.collect();
    for (alias, per_rule) in &draft.aliases {
        for (rule, _) in per_rule {
            let known = inputs
                .iter()
                .any(|(id, name)| *id == rule || name.as_deref() == Some(rule.as_str()));
            if !known {
                return Err(RuleErrorKind::invalid(format!(
                    "alias '{alias}' names rule '{rule}', which the correlation does not list"
                )));
            }
        }
    }
    let field_for = |name: &str, id: &String, rule_name: &Option<String>| -> String {
        draft
            .aliases
            .iter()
            .find(|(alias, _)| alias == name)
            .and_then(|(_, per_rule)| {
                per_rule
                    .iter()
                    .find(|(rule, _)| rule == id || rule_name.as_deref() == Some(rule.as_str()))
            })
            .map_or_else(|| name.to_owned(), |(_, field)| field.clone())
    };
    let group_fields = inputs
        .iter()
        .map(|(id, name)| {
            draft
                .meta
                .group_by
                .iter()
                .map(|g| field_for(g, id, name))
                .collect()
        })
        .collect();
    let value_fields = match &draft.value_field {
        Some(field) => inputs
            .iter()
            .map(|(id, name)| field_for(field, id, name))
            .collect(),
        None => Vec::new(),
    };
    Ok((group_fields, value_fields))
}

/// The fingerprint of a correlation's window-deciding definition.
fn fingerprint<'a>(meta: &CorrelationMeta, input_ids: impl Iterator<Item = &'a str>) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut text = |bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    text(&[meta.kind.tag()]);
    for id in input_ids {
        text(id.as_bytes());
    }
    for fields in &meta.group_fields {
        for field in fields {
            text(field.as_bytes());
        }
    }
    for field in &meta.value_fields {
        text(field.as_bytes());
    }
    text(&meta.timespan_ns.to_le_bytes());
    text(&meta.condition.min.map_or(u64::MAX, |m| m).to_le_bytes());
    text(&meta.condition.max.map_or(u64::MAX, |m| m).to_le_bytes());
    if let Some(spec) = &meta.anomaly {
        // Debug output is a complete, deterministic rendering of the spec
        // (floats print exactly), so any changed setting resets state.
        text(format!("{spec:?}").as_bytes());
    }
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan_ns("10s"), Ok(10_000_000_000));
        assert_eq!(parse_timespan_ns("2m"), Ok(120_000_000_000));
        assert!(parse_timespan_ns("0s").is_err());
        assert!(parse_timespan_ns("5w").is_err());
        assert!(parse_timespan_ns("999d").is_err());
    }

    #[test]
    fn id_hash_is_stable() {
        // Pinned: changing this hash would orphan every checkpointed group.
        assert_eq!(rule_id_hash("a"), xxhash_rust::xxh3::xxh3_64(b"a"));
        assert_ne!(rule_id_hash("a"), rule_id_hash("b"));
    }
}
