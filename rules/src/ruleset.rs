//! Loading and compiling a rule set, and the stateless per-event pass.
//!
//! This module owns the whole path from rule text to a [`RuleSet`]: splitting
//! sources into YAML documents, reading each document's metadata, compiling
//! detections (via [`crate::detection`]) and event-count correlations,
//! resolving correlation references by id or name, and deciding which
//! detections raise alerts on their own. It also owns the group-key encoding
//! that the engine uses to route events to correlation shards.
//!
//! It must not read files (the engine passes text in [`RuleSource`]), read
//! a clock, or keep per-event state: [`RuleSet`] is immutable once built
//! and can be shared by every core.
//!
//! ## Log sources
//!
//! A rule's `logsource` is parsed and kept in [`RuleMeta`]. In this first
//! slice only these services restrict which events a rule sees, by requiring
//! the `process.name` field (the syslog app name) to equal a value, compared
//! case-insensitively:
//!
//! | `service` | `process.name` |
//! |-----------|----------------|
//! | `sshd`    | `sshd`         |
//! | `sudo`    | `sudo`         |
//! | `su`      | `su`           |
//!
//! Every other log source is accepted and does not restrict: such a rule is
//! evaluated against every event. Full log-source mapping is a later issue.
//!
//! ## Group keys
//!
//! [`RuleSet::group_key`] encodes a correlation's `group-by` values as, per
//! field in declaration order, a little-endian `u32` length followed by that
//! many value bytes. A field missing from the event is the length
//! [`GROUP_VALUE_ABSENT`] with no bytes, so "absent" and "empty" differ.
//! Values are taken as they arrived (no case folding). The encoding is
//! self-delimiting, so equal keys mean equal value tuples.

use std::collections::HashMap;

use serde_yaml_ng::{Mapping, Value};

use crate::detection::Detection;
use crate::error::{RuleError, RuleErrorKind};
use crate::event::Event;
use crate::pattern::Scratch;

/// The length marker of a group-by field that is absent from the event.
pub const GROUP_VALUE_ABSENT: u32 = u32::MAX;

/// The largest `gt`/`gte`/`eq` threshold of an event-count correlation. The
/// correlation state keeps one timestamp per counted event up to the
/// threshold, so this bounds the memory of one group.
pub const EVENT_COUNT_THRESHOLD_MAX: u64 = 10_000;

/// The longest correlation timespan accepted: a year. Longer windows would
/// keep groups alive for longer than any checkpoint is meant to carry them.
pub const TIMESPAN_NS_MAX: i64 = 366 * 24 * 3600 * 1_000_000_000;

/// Services whose rules are restricted to one syslog app name. See the module
/// docs.
const SERVICE_PROCESS_NAMES: &[(&str, &str)] = &[("sshd", "sshd"), ("sudo", "sudo"), ("su", "su")];

/// The built-in rule pack, compiled into the binary.
const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "builtin:ssh_brute_force.yml",
        include_str!("../builtin/ssh_brute_force.yml"),
    ),
    (
        "builtin:ssh_invalid_user_enumeration.yml",
        include_str!("../builtin/ssh_invalid_user_enumeration.yml"),
    ),
    (
        "builtin:sudo_auth_failures.yml",
        include_str!("../builtin/sudo_auth_failures.yml"),
    ),
    (
        "builtin:su_root_failure.yml",
        include_str!("../builtin/su_root_failure.yml"),
    ),
];

/// Rule text and where it came from. A source may hold several YAML
/// documents separated by `---`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSource {
    /// A file path or `builtin:name`, used in error messages.
    pub origin: String,
    /// The YAML text.
    pub text: String,
}

/// A rule's `logsource`, as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSource {
    /// `logsource.category`.
    pub category: Option<String>,
    /// `logsource.product`.
    pub product: Option<String>,
    /// `logsource.service`.
    pub service: Option<String>,
}

/// What the engine needs to know about a detection rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMeta {
    /// The rule `id` (a UUID in SigmaHQ rules). A rule without one gets
    /// `<origin>#<document>` so that alert ids stay deterministic.
    pub id: String,
    /// The rule `title`.
    pub title: String,
    /// The optional `name` that correlations may refer to.
    pub name: Option<String>,
    /// The `level` (informational, low, medium, high, critical), as written.
    pub level: Option<String>,
    /// The `description`.
    pub description: Option<String>,
    /// The source the rule came from.
    pub origin: String,
    /// The `logsource`, as written. See the module docs for what is used.
    pub logsource: LogSource,
    /// Whether a match raises an alert of its own: true unless every
    /// correlation that refers to the rule leaves `generate` false.
    pub standalone: bool,
}

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
    /// `event_count`.
    EventCount,
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
    /// The detections this correlation counts (indices into detections).
    pub rules: Vec<u32>,
    /// `group-by` field names, in order; the group key encodes them so.
    pub group_by: Vec<String>,
    /// `timespan` in nanoseconds (always positive).
    pub timespan_ns: i64,
    /// `condition`.
    pub condition: CountCondition,
    /// `generate`: the referenced rules also alert on their own.
    pub generate: bool,
}

#[derive(Clone, Debug)]
struct CompiledDetection {
    meta: RuleMeta,
    /// Required `process.name`, ASCII-lowercased, from the log source.
    process_name: Option<Box<[u8]>>,
    detection: Detection,
}

/// A compiled, immutable set of detection and correlation rules.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    detections: Vec<CompiledDetection>,
    correlations: Vec<CorrelationMeta>,
    /// For each detection, the correlations that count its matches.
    consumers: Vec<Vec<u32>>,
}

/// Where one document of a source sits, for error messages.
#[derive(Clone, Debug)]
struct Place {
    origin: String,
    document: usize,
    rule_id: Option<String>,
    title: Option<String>,
}

impl Place {
    fn error(&self, kind: RuleErrorKind) -> RuleError {
        RuleError {
            origin: self.origin.clone(),
            document: self.document,
            rule_id: self.rule_id.clone(),
            title: self.title.clone(),
            kind,
        }
    }
}

/// A correlation read from YAML, before its references are resolved.
struct PendingCorrelation {
    place: Place,
    meta: CorrelationMeta,
    references: Vec<String>,
}

/// What a rule id or name refers to while resolving correlations.
#[derive(Clone, Debug)]
enum Target {
    Detection(u32),
    Correlation,
    /// The rule did not load, for this reason.
    Failed(RuleErrorKind),
}

fn optional_string(map: &Mapping, key: &str) -> Result<Option<String>, RuleErrorKind> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(RuleErrorKind::invalid(format!("'{key}' must be a string"))),
    }
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

fn parse_count_condition(value: &Value) -> Result<CountCondition, RuleErrorKind> {
    let Value::Mapping(map) = value else {
        return Err(RuleErrorKind::invalid(
            "correlation condition must be a map",
        ));
    };
    let mut min: Option<u64> = None;
    let mut max: Option<u64> = None;
    let mut raise_min = |bound: u64| min = Some(min.map_or(bound, |m| m.max(bound)));
    let mut lower_max = |bound: u64| max = Some(max.map_or(bound, |m| m.min(bound)));
    for (key, bound) in map {
        let Value::String(operator) = key else {
            return Err(RuleErrorKind::invalid(
                "correlation condition keys must be strings",
            ));
        };
        if operator == "field" {
            return Err(RuleErrorKind::unsupported("correlation-condition:field"));
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
    match (min, max) {
        (None, None) => Err(RuleErrorKind::invalid(
            "correlation condition is always true or empty",
        )),
        (Some(min), Some(max)) if min > max => Err(RuleErrorKind::invalid(
            "correlation condition range is empty",
        )),
        (Some(min), _) if min > EVENT_COUNT_THRESHOLD_MAX => Err(RuleErrorKind::unsupported(
            "correlation:threshold-above-10000",
        )),
        _ => Ok(CountCondition { min, max }),
    }
}

/// Reads the metadata shared by detections and correlations into `place`
/// and returns `(id, title, name, level, description)`.
type CommonMeta = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn read_common(map: &Mapping, place: &mut Place) -> Result<CommonMeta, RuleErrorKind> {
    let id = optional_string(map, "id")?;
    let title = optional_string(map, "title")?;
    place.rule_id.clone_from(&id);
    place.title.clone_from(&title);
    let title = title.ok_or_else(|| RuleErrorKind::invalid("rule has no title"))?;
    let id = id.unwrap_or_else(|| format!("{}#{}", place.origin, place.document));
    let name = optional_string(map, "name")?;
    let level = optional_string(map, "level")?;
    let description = optional_string(map, "description")?;
    Ok((id, title, name, level, description))
}

fn read_logsource(map: &Mapping) -> Result<LogSource, RuleErrorKind> {
    match map.get("logsource") {
        None | Some(Value::Null) => Ok(LogSource::default()),
        Some(Value::Mapping(source)) => Ok(LogSource {
            category: optional_string(source, "category")?,
            product: optional_string(source, "product")?,
            service: optional_string(source, "service")?,
        }),
        Some(_) => Err(RuleErrorKind::invalid("'logsource' must be a map")),
    }
}

fn compile_detection(map: &Mapping, place: &mut Place) -> Result<CompiledDetection, RuleErrorKind> {
    let (id, title, name, level, description) = read_common(map, place)?;
    let logsource = read_logsource(map)?;
    let section = map
        .get("detection")
        .ok_or_else(|| RuleErrorKind::invalid("rule has no detection"))?;
    let detection = Detection::compile(section)?;
    let process_name = logsource.service.as_deref().and_then(|service| {
        SERVICE_PROCESS_NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(service))
            .map(|(_, process)| process.as_bytes().to_ascii_lowercase().into_boxed_slice())
    });
    Ok(CompiledDetection {
        meta: RuleMeta {
            id,
            title,
            name,
            level,
            description,
            origin: place.origin.clone(),
            logsource,
            standalone: true,
        },
        process_name,
        detection,
    })
}

fn read_correlation(map: &Mapping, place: &mut Place) -> Result<PendingCorrelation, RuleErrorKind> {
    let (id, title, name, level, description) = read_common(map, place)?;
    let Some(Value::Mapping(section)) = map.get("correlation") else {
        return Err(RuleErrorKind::invalid("'correlation' must be a map"));
    };
    match section.get("type") {
        Some(Value::String(kind)) if kind == "event_count" => {}
        Some(Value::String(kind)) => {
            return Err(RuleErrorKind::unsupported(format!("correlation:{kind}")))
        }
        _ => return Err(RuleErrorKind::invalid("correlation has no type")),
    }
    if section.contains_key("aliases") {
        return Err(RuleErrorKind::unsupported("correlation:aliases"));
    }
    let references = match section.get("rules") {
        Some(value) => string_list(value, "rules")?,
        None => return Err(RuleErrorKind::invalid("correlation has no rules")),
    };
    if references.is_empty() {
        return Err(RuleErrorKind::invalid("correlation has no rules"));
    }
    let group_by = match section.get("group-by") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => string_list(value, "group-by")?,
    };
    let timespan_ns = match section.get("timespan") {
        Some(Value::String(text)) => parse_timespan_ns(text)?,
        _ => return Err(RuleErrorKind::invalid("correlation has no timespan")),
    };
    let condition = match section.get("condition") {
        Some(value) => parse_count_condition(value)?,
        None => {
            return Err(RuleErrorKind::invalid(
                "event_count correlation has no condition",
            ))
        }
    };
    let generate = match section.get("generate").or_else(|| map.get("generate")) {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(RuleErrorKind::invalid("'generate' must be a boolean")),
    };
    Ok(PendingCorrelation {
        place: place.clone(),
        meta: CorrelationMeta {
            id,
            title,
            name,
            level,
            description,
            origin: place.origin.clone(),
            kind: CorrelationKind::EventCount,
            rules: Vec::new(),
            group_by,
            timespan_ns,
            condition,
            generate,
        },
        references,
    })
}

impl RuleSet {
    /// The built-in rule pack (`rules/builtin/*.yml`), compiled into the
    /// binary so that a bare start has useful detections.
    pub fn builtin_sources() -> Vec<RuleSource> {
        BUILTIN_FILES
            .iter()
            .map(|(origin, text)| RuleSource {
                origin: (*origin).to_owned(),
                text: (*text).to_owned(),
            })
            .collect()
    }

    /// Compiles every rule, or returns every error. Use this where a partly
    /// loaded rule set would be a surprise (a rule update through the API).
    pub fn compile(sources: &[RuleSource]) -> Result<RuleSet, Vec<RuleError>> {
        let (rules, errors) = RuleSet::compile_lenient(sources);
        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(errors)
        }
    }

    /// Compiles what it can and returns the errors of the rest, one per
    /// rule (YAML document). A correlation whose base rule failed fails too,
    /// with the base rule's reason where it was unsupported.
    pub fn compile_lenient(sources: &[RuleSource]) -> (RuleSet, Vec<RuleError>) {
        let mut errors = Vec::new();
        let mut detections = Vec::new();
        let mut pending = Vec::new();
        let mut targets: HashMap<String, Target> = HashMap::new();

        for source in sources {
            let documents = serde_yaml_ng::Deserializer::from_str(&source.text);
            for (document, deserializer) in documents.enumerate() {
                let mut place = Place {
                    origin: source.origin.clone(),
                    document,
                    rule_id: None,
                    title: None,
                };
                let value = match <Value as serde::Deserialize>::deserialize(deserializer) {
                    Ok(value) => value,
                    Err(error) => {
                        errors.push(place.error(RuleErrorKind::Yaml(error.to_string())));
                        // The parser cannot resynchronise after a syntax
                        // error, so the rest of this source is not read.
                        break;
                    }
                };
                let map = match value {
                    // An empty document, e.g. after a trailing `---`.
                    Value::Null => continue,
                    Value::Mapping(map) => map,
                    _ => {
                        errors.push(place.error(RuleErrorKind::invalid("document is not a map")));
                        continue;
                    }
                };
                let result = if map.contains_key("correlation") {
                    read_correlation(&map, &mut place).map(|p| pending.push(p))
                } else if map.contains_key("filter") {
                    read_common(&map, &mut place)
                        .and(Err(RuleErrorKind::unsupported("sigma-filter")))
                } else if map.contains_key("action") && !map.contains_key("detection") {
                    read_common(&map, &mut place)
                        .and(Err(RuleErrorKind::unsupported("action-document")))
                } else {
                    compile_detection(&map, &mut place).and_then(|compiled| {
                        let index = u32::try_from(detections.len())
                            .map_err(|_| RuleErrorKind::invalid("too many rules"))?;
                        register(
                            &mut targets,
                            &compiled.meta.id,
                            compiled.meta.name.as_deref(),
                            Target::Detection(index),
                        )?;
                        detections.push(compiled);
                        Ok(())
                    })
                };
                if let Err(kind) = result {
                    // Remember why the rule failed, so that correlations
                    // referring to it can say so.
                    if let Some(id) = &place.rule_id {
                        targets
                            .entry(id.clone())
                            .or_insert(Target::Failed(kind.clone()));
                    }
                    if let Some(name) = optional_string(&map, "name").ok().flatten() {
                        targets.entry(name).or_insert(Target::Failed(kind.clone()));
                    }
                    errors.push(place.error(kind));
                }
            }
        }

        // Correlation ids and names share the namespace with detections.
        let mut registered = Vec::with_capacity(pending.len());
        for correlation in pending {
            match register(
                &mut targets,
                &correlation.meta.id,
                correlation.meta.name.as_deref(),
                Target::Correlation,
            ) {
                Ok(()) => registered.push(correlation),
                Err(kind) => errors.push(correlation.place.error(kind)),
            }
        }

        let mut correlations = Vec::with_capacity(registered.len());
        let mut consumers = vec![Vec::new(); detections.len()];
        let mut generated = vec![false; detections.len()];
        let mut referenced = vec![false; detections.len()];
        for mut correlation in registered {
            let resolved: Result<Vec<u32>, RuleErrorKind> = correlation
                .references
                .iter()
                .map(|reference| match targets.get(reference) {
                    Some(Target::Detection(index)) => Ok(*index),
                    Some(Target::Correlation) => {
                        Err(RuleErrorKind::unsupported("correlation:chaining"))
                    }
                    Some(Target::Failed(RuleErrorKind::Unsupported { feature })) => {
                        Err(RuleErrorKind::unsupported(feature.clone()))
                    }
                    Some(Target::Failed(_)) => Err(RuleErrorKind::invalid(format!(
                        "refers to rule '{reference}', which failed to load"
                    ))),
                    None => Err(RuleErrorKind::UnknownReference(reference.clone())),
                })
                .collect();
            let mut rules = match resolved {
                Ok(rules) => rules,
                Err(kind) => {
                    errors.push(correlation.place.error(kind));
                    continue;
                }
            };
            rules.sort_unstable();
            rules.dedup();
            let Ok(index) = u32::try_from(correlations.len()) else {
                errors.push(
                    correlation
                        .place
                        .error(RuleErrorKind::invalid("too many rules")),
                );
                continue;
            };
            for &rule in &rules {
                consumers[rule as usize].push(index);
                referenced[rule as usize] = true;
                generated[rule as usize] |= correlation.meta.generate;
            }
            correlation.meta.rules = rules;
            correlations.push(correlation.meta);
        }
        for (i, detection) in detections.iter_mut().enumerate() {
            detection.meta.standalone = !referenced[i] || generated[i];
        }

        let rules = RuleSet {
            detections,
            correlations,
            consumers,
        };
        rules.check_invariants();
        (rules, errors)
    }

    fn check_invariants(&self) {
        assert_eq!(self.consumers.len(), self.detections.len());
        for (index, correlation) in self.correlations.iter().enumerate() {
            assert!(!correlation.rules.is_empty());
            assert!(correlation.timespan_ns > 0);
            for &rule in &correlation.rules {
                assert!(self.consumers[rule as usize].contains(&(index as u32)));
            }
        }
    }

    /// The number of detection rules.
    pub fn detection_count(&self) -> usize {
        self.detections.len()
    }

    /// Detection `i`'s metadata. Panics if `i` is out of range, which is a
    /// caller bug: indices come from this rule set.
    pub fn detection(&self, i: usize) -> &RuleMeta {
        &self.detections[i].meta
    }

    /// The number of correlation rules.
    pub fn correlation_count(&self) -> usize {
        self.correlations.len()
    }

    /// Correlation `i`'s metadata. Panics if `i` is out of range, which is a
    /// caller bug: indices come from this rule set.
    pub fn correlation(&self, i: usize) -> &CorrelationMeta {
        &self.correlations[i]
    }

    /// Stateless pass: appends to `out` (cleared first) the indices of the
    /// detection rules that match `event`, in ascending order. Allocates
    /// nothing once `scratch` and `out` have grown to their working size.
    pub fn evaluate(&self, event: &Event<'_>, scratch: &mut Scratch, out: &mut Vec<u32>) {
        out.clear();
        let process = event.get("process.name");
        for (index, rule) in self.detections.iter().enumerate() {
            if let Some(required) = &rule.process_name {
                match process {
                    Some(name) if name.eq_ignore_ascii_case(required) => {}
                    _ => continue,
                }
            }
            if rule.detection.matches(event, scratch) {
                // Lossless: compile refuses more than u32::MAX rules.
                out.push(index as u32);
            }
        }
    }

    /// The correlations that count matches of `detection`. Empty for an
    /// index out of range.
    pub fn consumers(&self, detection: u32) -> &[u32] {
        self.consumers
            .get(detection as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// The correlations fed by any of `matched` (the output of
    /// [`RuleSet::evaluate`]), sorted and without repeats, into `out`
    /// (cleared first). An event that matches two base rules of the same
    /// correlation must be counted once, so the engine should observe each
    /// correlation listed here once per event.
    pub fn correlations_fed(&self, matched: &[u32], out: &mut Vec<u32>) {
        out.clear();
        for &detection in matched {
            out.extend_from_slice(self.consumers(detection));
        }
        out.sort_unstable();
        out.dedup();
    }

    /// Encodes correlation `correlation`'s group-by values of `event` into
    /// `out` (cleared first). See the module docs for the format. An index
    /// out of range is a caller bug: debug builds assert, release builds
    /// leave `out` empty.
    pub fn group_key(&self, correlation: u32, event: &Event<'_>, out: &mut Vec<u8>) {
        out.clear();
        let Some(meta) = self.correlations.get(correlation as usize) else {
            debug_assert!(false, "correlation {correlation} out of range");
            return;
        };
        for field in &meta.group_by {
            match event.get(field) {
                Some(value) => {
                    // A value can never be 4 GiB (frames are far smaller);
                    // cut rather than collide with the absent marker.
                    let length = value.len().min(GROUP_VALUE_ABSENT as usize - 1);
                    out.extend_from_slice(&(length as u32).to_le_bytes());
                    out.extend_from_slice(&value[..length]);
                }
                None => out.extend_from_slice(&GROUP_VALUE_ABSENT.to_le_bytes()),
            }
        }
    }

    /// Decodes a key made by [`RuleSet::group_key`] back into `(field,
    /// value)` pairs, `None` for an absent field. A malformed key (which
    /// only a bug or corrupted checkpoint can produce) decodes as far as it
    /// is well-formed.
    pub fn decode_group<'k>(
        &self,
        correlation: u32,
        key: &'k [u8],
    ) -> Vec<(&str, Option<&'k [u8]>)> {
        let Some(meta) = self.correlations.get(correlation as usize) else {
            return Vec::new();
        };
        let mut pairs = Vec::with_capacity(meta.group_by.len());
        let mut rest = key;
        for field in &meta.group_by {
            let Some((length, tail)) = rest.split_first_chunk::<4>() else {
                break;
            };
            let length = u32::from_le_bytes(*length);
            if length == GROUP_VALUE_ABSENT {
                pairs.push((field.as_str(), None));
                rest = tail;
                continue;
            }
            let Some((value, tail)) = tail.split_at_checked(length as usize) else {
                break;
            };
            pairs.push((field.as_str(), Some(value)));
            rest = tail;
        }
        debug_assert!(pairs.len() <= meta.group_by.len());
        pairs
    }
}

/// Records `id` (and `name`, if any) as referring to `target`, refusing
/// duplicates of a rule that loaded.
fn register(
    targets: &mut HashMap<String, Target>,
    id: &str,
    name: Option<&str>,
    target: Target,
) -> Result<(), RuleErrorKind> {
    for key in std::iter::once(id).chain(name) {
        if matches!(
            targets.get(key),
            Some(Target::Detection(_) | Target::Correlation)
        ) {
            return Err(RuleErrorKind::Duplicate(key.to_owned()));
        }
    }
    targets.insert(id.to_owned(), target.clone());
    if let Some(name) = name {
        if name != id {
            targets.insert(name.to_owned(), target);
        }
    }
    Ok(())
}
