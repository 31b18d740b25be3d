//! Loading and compiling a rule set, and the stateless per-event pass.
//!
//! This module owns the whole path from rule text to a [`RuleSet`]: splitting
//! sources into YAML documents, reading each document's metadata, compiling
//! detections (via `crate::detection`) with their log source condition and
//! filters, correlations (via `crate::correlation_rule`), resolving
//! references by id or name, building the prefilter (`crate::matcher`),
//! and deciding which detections and correlations raise alerts on their
//! own. It also owns the group-key encoding that the engine uses to route
//! events to correlation shards.
//!
//! It must not read files (the engine passes text in [`RuleSource`]), read
//! a clock, or keep per-event state: [`RuleSet`] is immutable once built
//! and can be shared by every core.
//!
//! ## Log sources
//!
//! A rule's `logsource` is parsed and kept in [`RuleMeta`], and compiled
//! by [`crate::logsource`] into a condition on the event that runs before
//! the detection. A log source no mapping covers fails the rule with
//! `Unsupported { feature: "logsource ..." }`; the table is in
//! `rules/LOGSOURCES.md`.
//!
//! ## Filters
//!
//! A Sigma filter document (`filter: {rules: [...], selection..., condition}`)
//! adds `and not <filter>` to each detection it names by id or name, after
//! every source is read. A name that is not loaded is an error of the
//! filter document; the filter's own `logsource` is informational.
//!
//! ## Group keys
//!
//! [`RuleSet::group_key`] encodes a correlation's `group-by` values as, per
//! field in declaration order, a little-endian `u32` length followed by that
//! many value bytes. A field missing from the event is the length
//! [`GROUP_VALUE_ABSENT`] with no bytes, so "absent" and "empty" differ.
//! Values are taken as they arrived (no case folding). The encoding is
//! self-delimiting, so equal keys mean equal value tuples. With `aliases`,
//! each `group-by` entry reads the field of the matched input, so events of
//! different rules that share a logical group produce the same key bytes
//! and therefore reach the same shard. Fields are resolved as in
//! [`crate::field`].

use std::collections::HashMap;

use serde_yaml_ng::{Mapping, Value};

use crate::anomaly_rule::read_anomaly;
use crate::correlation_rule::{
    self, read_correlation, CorrelationDraft, CorrelationInput, CorrelationKind, CorrelationMeta,
    Resolved, CORRELATION_INPUTS_MAX,
};
use crate::detection::{Detection, DetectionContext};
use crate::error::{RuleError, RuleErrorKind};
use crate::event::Event;
use crate::field::{FieldName, FieldTable, FieldTableBuilder, ShapeKey};
use crate::logsource::{
    resolve_logsource, HeaderGate, LogsourceFilter, LogsourceMapping, PayloadNaming,
};
use crate::matcher::Matcher;
use crate::pattern::Scratch;

/// The length marker of a group-by field that is absent from the event.
pub const GROUP_VALUE_ABSENT: u32 = u32::MAX;

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

/// Settings of a compilation that come from the engine's configuration
/// rather than from rule text.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Values of `expand` placeholders: `%name%` in a value with the
    /// `expand` modifier becomes each of `placeholders["name"]`. A rule
    /// using a placeholder that is not here is reported as
    /// `Unsupported { feature: "placeholder:<name>" }`.
    pub placeholders: std::collections::BTreeMap<String, Vec<String>>,
    /// Log source mappings from configuration, tried before the built-in
    /// table (see `rules/LOGSOURCES.md`).
    pub logsources: Vec<LogsourceMapping>,
    /// How a line's payload names its fields (the engine's aliases, the
    /// names decoders make up), which lets the header gate rule out a
    /// line whose header lacks a part a log source reads, or that holds
    /// none of the names of a field a detection without a log source
    /// needs. `None` (the default) decodes every such line.
    pub payload_naming: Option<PayloadNaming>,
}

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

#[derive(Clone, Debug)]
struct CompiledDetection {
    meta: RuleMeta,
    /// The events the rule's `logsource` lets it see.
    source_filter: LogsourceFilter,
    detection: Detection,
    /// Sigma filters that name this rule: the rule matches only when none
    /// of them does (`and not filter`).
    exclusions: Vec<std::sync::Arc<Detection>>,
}

impl CompiledDetection {
    fn matches(&self, event: &Event<'_>, scratch: &mut Scratch) -> bool {
        self.source_filter.matches(event, scratch) && self.matches_admitted(event, scratch)
    }

    /// [`CompiledDetection::matches`] for an event the rule's log source
    /// filter is known to admit (a prefilter candidate).
    fn matches_admitted(&self, event: &Event<'_>, scratch: &mut Scratch) -> bool {
        debug_assert!(self.source_filter.matches(event, scratch));
        self.detection.matches(event, scratch)
            && !self
                .exclusions
                .iter()
                .any(|filter| filter.matches(event, scratch))
    }
}

/// A Sigma filter document, compiled, before it is attached to its rules.
struct FilterDraft {
    /// The rule ids or names of `filter.rules`.
    rules: Vec<String>,
    detection: std::sync::Arc<Detection>,
}

/// Reads a filter document (Sigma filters specification): `filter.rules`
/// names the rules, the rest of `filter` is a detection section.
fn read_filter(
    map: &Mapping,
    place: &mut Place,
    options: &CompileOptions,
) -> Result<FilterDraft, RuleErrorKind> {
    let _ = read_common(map, place)?;
    let Some(Value::Mapping(section)) = map.get("filter") else {
        return Err(RuleErrorKind::invalid("'filter' must be a map"));
    };
    let rules = match section.get("rules") {
        Some(Value::String(rule)) => vec![rule.clone()],
        Some(Value::Sequence(items)) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(rule) => Ok(rule.clone()),
                _ => Err(RuleErrorKind::invalid("'filter.rules' must list rule ids")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(RuleErrorKind::invalid("filter has no 'rules'")),
    };
    let mut detection = section.clone();
    detection.remove("rules");
    let context = DetectionContext {
        placeholders: &options.placeholders,
    };
    let detection = Detection::compile(&Value::Mapping(detection), &context)?;
    Ok(FilterDraft {
        rules,
        detection: std::sync::Arc::new(detection),
    })
}

/// Attaches a filter to the detections it names. A name that is not a
/// loaded detection is an error of the filter (a filter for a rule that
/// failed to load is silently moot: that rule raises nothing anyway).
fn apply_filter(
    filter: &FilterDraft,
    detections: &mut [CompiledDetection],
    targets: &HashMap<String, Resolved>,
) -> Result<(), RuleErrorKind> {
    let mut unknown = Vec::new();
    for rule in &filter.rules {
        match targets.get(rule) {
            Some(Resolved::Detection(index, _, _)) => {
                if let Some(detection) = detections.get_mut(*index as usize) {
                    detection.exclusions.push(filter.detection.clone());
                }
            }
            Some(Resolved::Failed(_)) => {}
            Some(Resolved::Draft(_)) => {
                return Err(RuleErrorKind::invalid(format!(
                    "filter names correlation '{rule}'; filters apply to detections"
                )))
            }
            None => unknown.push(rule.as_str()),
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(RuleErrorKind::UnknownReference(unknown.join(", ")))
    }
}

/// A compiled, immutable set of detection and correlation rules.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    detections: Vec<CompiledDetection>,
    correlations: Vec<CorrelationMeta>,
    /// For each detection, the correlations that count its matches.
    consumers: Vec<Vec<u32>>,
    /// For each correlation, the correlations that list it as an input:
    /// `(referencing correlation, input position)`.
    chained: Vec<Vec<(u32, u8)>>,
    /// Correlation index by [`CorrelationMeta::hash`].
    by_hash: HashMap<u64, u32>,
    /// What the detections' log source filters decide from a syslog header
    /// alone (`None`: some detection could match any line).
    header_gate: Option<HeaderGate>,
    /// The first detection whose log source keeps the gate off.
    header_gate_blocker: Option<usize>,
    /// The per-field prefilter over every detection.
    matcher: Matcher,
    /// Every field name the detections, the prefilter and the
    /// correlations read, numbered; each event is indexed under it once
    /// per evaluation.
    fields: FieldTable,
    /// Per correlation: its group and value fields compiled (interned in
    /// `fields`), so that an evaluated event's are read from its index.
    correlation_fields: Vec<CorrelationFields>,
}

/// A correlation's [`CorrelationMeta::group_fields`] and
/// [`CorrelationMeta::value_fields`] as compiled field names, in the same
/// order.
#[derive(Clone, Debug)]
struct CorrelationFields {
    group: Vec<Vec<FieldName>>,
    value: Vec<FieldName>,
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

fn optional_string(map: &Mapping, key: &str) -> Result<Option<String>, RuleErrorKind> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(RuleErrorKind::invalid(format!("'{key}' must be a string"))),
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

/// Reads a correlation document: common metadata, then the section.
fn read_correlation_document(
    map: &Mapping,
    place: &mut Place,
) -> Result<CorrelationDraft, RuleErrorKind> {
    let (id, title, name, level, description) = read_common(map, place)?;
    let Some(Value::Mapping(section)) = map.get("correlation") else {
        return Err(RuleErrorKind::invalid("'correlation' must be a map"));
    };
    let meta = CorrelationMeta::draft(
        (id, title, name, level, description),
        place.origin.clone(),
        CorrelationKind::EventCount,
    );
    read_correlation(section, map, meta)
}

/// Reads an anomaly document (`rules/ANOMALY.md`): common metadata, an
/// optional inline detection compiled into a hidden base detection
/// (returned so the caller registers it), then the `anomaly:` section.
fn read_anomaly_document(
    map: &Mapping,
    place: &mut Place,
    options: &CompileOptions,
) -> Result<(Option<CompiledDetection>, CorrelationDraft), RuleErrorKind> {
    let (id, title, name, level, description) = read_common(map, place)?;
    let Some(Value::Mapping(section)) = map.get("anomaly") else {
        return Err(RuleErrorKind::anomaly("anomaly", "must be a map"));
    };
    let hidden = if map.contains_key("detection") {
        // The hidden detection reads the document's own detection and
        // logsource under an id no rule can take (ids never contain '#'
        // followed by this suffix in our formats).
        let mut hidden_map = Mapping::new();
        hidden_map.insert(
            Value::from("id"),
            Value::from(format!("{id}#anomaly-input")),
        );
        hidden_map.insert(Value::from("title"), Value::from(title.clone()));
        if let Some(level) = &level {
            hidden_map.insert(Value::from("level"), Value::from(level.clone()));
        }
        for key in ["detection", "logsource"] {
            if let Some(value) = map.get(key) {
                hidden_map.insert(Value::from(key), value.clone());
            }
        }
        let mut hidden_place = place.clone();
        let compiled = compile_detection(&hidden_map, &mut hidden_place, options)?;
        Some(compiled)
    } else if map.contains_key("logsource") {
        return Err(RuleErrorKind::anomaly(
            "logsource",
            "an anomaly rule's logsource needs an inline 'detection' to apply to",
        ));
    } else {
        None
    };
    let meta = CorrelationMeta::draft(
        (id, title, name, level, description),
        place.origin.clone(),
        CorrelationKind::Baseline,
    );
    let inline = hidden.as_ref().map(|h| h.meta.id.clone());
    let draft = read_anomaly(section, meta, inline)?;
    Ok((hidden, draft))
}

fn compile_detection(
    map: &Mapping,
    place: &mut Place,
    options: &CompileOptions,
) -> Result<CompiledDetection, RuleErrorKind> {
    let (id, title, name, level, description) = read_common(map, place)?;
    let logsource = read_logsource(map)?;
    let section = map
        .get("detection")
        .ok_or_else(|| RuleErrorKind::invalid("rule has no detection"))?;
    let context = DetectionContext {
        placeholders: &options.placeholders,
    };
    let detection = Detection::compile(section, &context)?;
    let source_filter = resolve_logsource(
        logsource.product.as_deref(),
        logsource.category.as_deref(),
        logsource.service.as_deref(),
        &options.logsources,
    )?;
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
        source_filter,
        detection,
        exclusions: Vec::new(),
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
        RuleSet::compile_with(sources, &CompileOptions::default())
    }

    /// [`RuleSet::compile_lenient`] with options the engine loads from its
    /// configuration (placeholders, extra log source mappings).
    pub fn compile_with(
        sources: &[RuleSource],
        options: &CompileOptions,
    ) -> (RuleSet, Vec<RuleError>) {
        let mut errors = Vec::new();
        let mut detections: Vec<CompiledDetection> = Vec::new();
        let mut drafts: Vec<(Place, CorrelationDraft)> = Vec::new();
        let mut targets: HashMap<String, Resolved> = HashMap::new();
        let mut filters: Vec<(Place, FilterDraft)> = Vec::new();

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
                let result = if map.contains_key("anomaly") {
                    read_anomaly_document(&map, &mut place, options).and_then(|(hidden, draft)| {
                        if let Some(compiled) = hidden {
                            let index = u32::try_from(detections.len())
                                .map_err(|_| RuleErrorKind::invalid("too many rules"))?;
                            register(
                                &mut targets,
                                &compiled.meta.id,
                                None,
                                Resolved::Detection(index, compiled.meta.id.clone(), None),
                            )?;
                            detections.push(compiled);
                        }
                        let index = drafts.len();
                        register(
                            &mut targets,
                            &draft.meta.id,
                            draft.meta.name.as_deref(),
                            Resolved::Draft(index),
                        )?;
                        drafts.push((place.clone(), draft));
                        Ok(())
                    })
                } else if map.contains_key("correlation") {
                    read_correlation_document(&map, &mut place).and_then(|draft| {
                        let index = drafts.len();
                        register(
                            &mut targets,
                            &draft.meta.id,
                            draft.meta.name.as_deref(),
                            Resolved::Draft(index),
                        )?;
                        drafts.push((place.clone(), draft));
                        Ok(())
                    })
                } else if map.contains_key("filter") {
                    read_filter(&map, &mut place, options).map(|draft| {
                        filters.push((place.clone(), draft));
                    })
                } else if map.contains_key("action") && !map.contains_key("detection") {
                    read_common(&map, &mut place)
                        .and(Err(RuleErrorKind::unsupported("action-document")))
                } else {
                    compile_detection(&map, &mut place, options).and_then(|compiled| {
                        let index = u32::try_from(detections.len())
                            .map_err(|_| RuleErrorKind::invalid("too many rules"))?;
                        register(
                            &mut targets,
                            &compiled.meta.id,
                            compiled.meta.name.as_deref(),
                            Resolved::Detection(
                                index,
                                compiled.meta.id.clone(),
                                compiled.meta.name.clone(),
                            ),
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
                            .or_insert(Resolved::Failed(kind.clone()));
                    }
                    if let Some(name) = optional_string(&map, "name").ok().flatten() {
                        targets
                            .entry(name)
                            .or_insert(Resolved::Failed(kind.clone()));
                    }
                    errors.push(place.error(kind));
                }
            }
        }

        // Filters add `and not filter` to the detections they name; they
        // are applied after every source is read, so a filter may come
        // before its rules.
        for (place, filter) in filters {
            if let Err(kind) = apply_filter(&filter, &mut detections, &targets) {
                errors.push(place.error(kind));
            }
        }

        let (places, drafts): (Vec<Place>, Vec<CorrelationDraft>) = drafts.into_iter().unzip();
        let (mut correlations, failed) = correlation_rule::resolve(drafts, &targets);
        for (index, kind) in failed {
            errors.push(places[index].error(kind));
        }

        let mut consumers = vec![Vec::new(); detections.len()];
        let mut chained = vec![Vec::new(); correlations.len()];
        let mut generated = vec![false; detections.len()];
        let mut referenced = vec![false; detections.len()];
        let mut correlation_generated = vec![false; correlations.len()];
        let mut correlation_referenced = vec![false; correlations.len()];
        let mut by_hash = HashMap::with_capacity(correlations.len());
        for (index, correlation) in correlations.iter().enumerate() {
            // Lossless: resolve() numbers correlations with u32.
            let index = index as u32;
            if by_hash.insert(correlation.hash, index).is_some() {
                // Two ids with the same 64-bit hash: astronomically rare,
                // but state keyed by the hash would mix them.
                errors.push(RuleError {
                    origin: correlation.origin.clone(),
                    document: 0,
                    rule_id: Some(correlation.id.clone()),
                    title: Some(correlation.title.clone()),
                    kind: RuleErrorKind::invalid("rule id hash collides with another rule"),
                });
            }
            for &rule in &correlation.rules {
                consumers[rule as usize].push(index);
                referenced[rule as usize] = true;
                generated[rule as usize] |= correlation.generate;
            }
            for (position, input) in correlation.inputs.iter().enumerate() {
                if let CorrelationInput::Correlation(base) = input {
                    // Lossless: at most CORRELATION_INPUTS_MAX positions.
                    chained[*base as usize].push((index, position as u8));
                    correlation_referenced[*base as usize] = true;
                    correlation_generated[*base as usize] |= correlation.generate;
                }
            }
        }
        for (i, detection) in detections.iter_mut().enumerate() {
            detection.meta.standalone = !referenced[i] || generated[i];
        }
        for (i, correlation) in correlations.iter_mut().enumerate() {
            correlation.standalone = !correlation_referenced[i] || correlation_generated[i];
        }

        let required: Vec<_> = detections
            .iter()
            .map(|d| d.detection.required_literals())
            .collect();
        // Number every field name read per event; a filter shared by several
        // detections is interned once per holder (`make_mut` clones it).
        let mut table = FieldTableBuilder::default();
        for detection in &mut detections {
            detection.source_filter.intern_fields(&mut table);
            detection.detection.intern_fields(&mut table);
            for exclusion in &mut detection.exclusions {
                std::sync::Arc::make_mut(exclusion).intern_fields(&mut table);
            }
        }
        let filters: Vec<&LogsourceFilter> = detections.iter().map(|d| &d.source_filter).collect();
        let fields: Vec<_> = detections
            .iter()
            .map(|d| d.detection.required_fields())
            .collect();
        let (header_gate, header_gate_blocker) = match HeaderGate::build(
            &filters,
            &required,
            &fields,
            options.payload_naming.as_ref(),
        ) {
            Ok(gate) => (Some(gate), None),
            Err(index) => (None, Some(index)),
        };
        let matcher = Matcher::build(&filters, &required, &mut table);
        let mut intern = |name: &String| {
            let mut field = FieldName::new(name);
            table.intern(&mut field);
            field
        };
        let correlation_fields = correlations
            .iter()
            .map(|meta| CorrelationFields {
                group: meta
                    .group_fields
                    .iter()
                    .map(|fields| fields.iter().map(&mut intern).collect())
                    .collect(),
                value: meta.value_fields.iter().map(&mut intern).collect(),
            })
            .collect();
        let rules = RuleSet {
            header_gate,
            header_gate_blocker,
            matcher,
            fields: table.finish(),
            correlation_fields,
            detections,
            correlations,
            consumers,
            chained,
            by_hash,
        };
        rules.check_invariants();
        (rules, errors)
    }

    fn check_invariants(&self) {
        assert_eq!(self.consumers.len(), self.detections.len());
        assert_eq!(self.chained.len(), self.correlations.len());
        assert_eq!(self.correlation_fields.len(), self.correlations.len());
        for (index, correlation) in self.correlations.iter().enumerate() {
            assert!(!correlation.inputs.is_empty());
            assert!(correlation.inputs.len() <= CORRELATION_INPUTS_MAX);
            assert_eq!(correlation.group_fields.len(), correlation.inputs.len());
            let compiled = &self.correlation_fields[index];
            assert_eq!(compiled.group.len(), correlation.group_fields.len());
            assert_eq!(compiled.value.len(), correlation.value_fields.len());
            assert!(correlation.timespan_ns > 0);
            for &rule in &correlation.rules {
                assert!(self.consumers[rule as usize].contains(&(index as u32)));
            }
            for input in &correlation.inputs {
                if let CorrelationInput::Correlation(base) = input {
                    // Chains point backwards in a topological sense; a
                    // self-reference would recurse forever.
                    assert_ne!(*base as usize, index);
                    assert!(self.chained[*base as usize]
                        .iter()
                        .any(|(target, _)| *target as usize == index));
                }
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

    /// The detection that keeps [`RuleSet::may_match_header`] from ruling
    /// any line out (its log source admits every line, or names no header
    /// field, it needs more than a keyword literal in the message, and
    /// some way it can match needs no payload field whose names a line can
    /// be searched for), if one does.
    pub fn header_gate_blocker(&self) -> Option<&RuleMeta> {
        self.header_gate_blocker.map(|index| self.detection(index))
    }

    /// Whether some detection could match a line whose syslog header has
    /// these parts (`host.name`, `process.name`, `process.pid`,
    /// `log.syslog.msgid`, `None` where the header has none), this
    /// message (the header parse's, which keyword selections search) and
    /// this whole line (searched for the names a payload could give a
    /// missing part under, or a field a detection needs under,
    /// [`CompileOptions::payload_naming`]), whatever
    /// its payload decodes to. False lets a caller skip decoding
    /// the payload: no detection, and so no correlation or anomaly rule,
    /// can see the line. A detection whose log source could admit any
    /// header is ruled out only by a message without any of its keyword
    /// literals; always true when such a detection needs more than a
    /// keyword (see [`RuleSet::header_gate_blocker`]).
    pub fn may_match_header(
        &self,
        header: &[Option<&[u8]>; 4],
        message: &[u8],
        line: &[u8],
        scratch: &mut Scratch,
    ) -> bool {
        self.header_gate
            .as_ref()
            .is_none_or(|gate| gate.may_admit(header, message, line, scratch.split().0))
    }

    /// Stateless pass: appends to `out` (cleared first) the indices of the
    /// detection rules that match `event`, in ascending order. Allocates
    /// nothing once `scratch` and `out` have grown to their working size.
    pub fn evaluate(&self, event: &Event<'_>, scratch: &mut Scratch, out: &mut Vec<u32>) {
        self.evaluate_shaped(event, None, scratch, out);
    }

    /// [`RuleSet::evaluate`] for a caller that can tell when an event has
    /// exactly the field names, in order, of one evaluated before: give
    /// back the key this returned for that event as `known`, and indexing
    /// the event's fields reads no name. The key returned names the
    /// remembered sequence of this event's names (if it is remembered).
    /// The same answers as `evaluate` as long as `known` is only given for
    /// such an event; a key of a sequence forgotten since is not taken.
    pub fn evaluate_shaped(
        &self,
        event: &Event<'_>,
        known: Option<ShapeKey>,
        scratch: &mut Scratch,
        out: &mut Vec<u32>,
    ) -> Option<ShapeKey> {
        out.clear();
        let key = scratch.index_fields_shaped(&self.fields, event, known);
        self.matcher.candidates(event, scratch);
        let candidates = scratch.take_candidates();
        for (word_index, &word) in candidates.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let index = word_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let Some(rule) = self.detections.get(index) else {
                    debug_assert!(false, "candidate {index} out of range");
                    continue;
                };
                if rule.matches_admitted(event, scratch) {
                    // Lossless: compile refuses more than u32::MAX rules.
                    out.push(index as u32);
                }
            }
        }
        scratch.restore_candidates(candidates);
        key
    }

    /// [`RuleSet::evaluate`] without the prefilter: every rule runs its
    /// full detection. For tests that check the prefilter never drops a
    /// match, and for measuring what it saves.
    pub fn evaluate_all(&self, event: &Event<'_>, scratch: &mut Scratch, out: &mut Vec<u32>) {
        out.clear();
        scratch.index_fields(&self.fields, event);
        for (index, rule) in self.detections.iter().enumerate() {
            if rule.matches(event, scratch) {
                // Lossless: compile refuses more than u32::MAX rules.
                out.push(index as u32);
            }
        }
    }

    /// How many detections the prefilter guards (the rest run on every
    /// event): a measure of how much it can save.
    pub fn prefiltered_count(&self) -> usize {
        self.matcher.guarded_count()
    }

    /// How many distinct log source filters the detections fall into (the
    /// prefilter's partitions; see `matcher`).
    pub fn logsource_group_count(&self) -> usize {
        self.matcher.group_count()
    }

    /// Whether every log source filter is decided in one pass per event
    /// (false past the classifier's 128 filters or terms: each filter then
    /// runs on its own, which is slower).
    pub fn logsource_classified(&self) -> bool {
        self.matcher.is_classified()
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
    ///
    /// Without knowing which base rule matched, aliases are resolved for
    /// the first detection input whose aliased fields are all present in
    /// the event (the first detection input if none is complete). Callers
    /// that know the matched rules should use [`RuleSet::group_key_for`].
    pub fn group_key(&self, correlation: u32, event: &Event<'_>, out: &mut Vec<u8>) {
        out.clear();
        let Some((meta, fields)) = self.compiled(correlation) else {
            debug_assert!(false, "correlation {correlation} out of range");
            return;
        };
        let read = |field: &FieldName| field.resolve(event);
        let position = alias_position(meta, fields, u64::MAX, read);
        encode_group(&fields.group[position], read, out);
    }

    /// [`RuleSet::group_key`] for an event that matched `matched` (the
    /// output of [`RuleSet::evaluate`]): aliases are those of the first
    /// listed input that matched. `scratch` is the one `event` was
    /// evaluated with: while it still holds that evaluation's index (no
    /// other event evaluated since, `event`'s fields neither added to nor
    /// changed), the fields are read from it, else resolved by name.
    pub fn group_key_for(
        &self,
        correlation: u32,
        matched: &[u32],
        event: &Event<'_>,
        scratch: &Scratch,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        let Some((meta, fields)) = self.compiled(correlation) else {
            debug_assert!(false, "correlation {correlation} out of range");
            return;
        };
        let mask = self.input_mask(correlation, matched);
        let read = |field: &FieldName| scratch.field_if_indexed(&self.fields, field, event);
        let position = alias_position(meta, fields, mask, read);
        encode_group(&fields.group[position], read, out);
    }

    /// Correlation `correlation`'s metadata and compiled fields, or `None`
    /// out of range.
    fn compiled(&self, correlation: u32) -> Option<(&CorrelationMeta, &CorrelationFields)> {
        let index = correlation as usize;
        Some((
            self.correlations.get(index)?,
            self.correlation_fields.get(index)?,
        ))
    }

    /// The input mask of correlation `correlation` for an event that
    /// matched `matched` (sorted detection indices, as from
    /// [`RuleSet::evaluate`]): bit `i` is set when the correlation's `i`th
    /// `rules` entry is a detection in `matched`. Zero for an index out of
    /// range.
    pub fn input_mask(&self, correlation: u32, matched: &[u32]) -> u64 {
        let Some(meta) = self.correlations.get(correlation as usize) else {
            return 0;
        };
        let mut mask = 0u64;
        for (position, input) in meta.inputs.iter().enumerate() {
            if let CorrelationInput::Detection(detection) = input {
                if matched.binary_search(detection).is_ok() {
                    mask |= 1u64 << position;
                }
            }
        }
        mask
    }

    /// The `value_count` field value of `event` for correlation
    /// `correlation` (aliases of the first matched input), or `None` for
    /// other kinds, an absent field or an index out of range.
    /// `scratch` as for [`RuleSet::group_key_for`].
    pub fn correlation_value<'e>(
        &self,
        correlation: u32,
        matched: &[u32],
        event: &Event<'e>,
        scratch: &Scratch,
    ) -> Option<&'e [u8]> {
        let (meta, fields) = self.compiled(correlation)?;
        if fields.value.is_empty() {
            return None;
        }
        let mask = self.input_mask(correlation, matched);
        let position = (0..meta.inputs.len())
            .find(|position| mask & (1u64 << position) != 0)
            .unwrap_or(0);
        scratch.field_if_indexed(&self.fields, fields.value.get(position)?, event)
    }

    /// Correlation `i`'s metadata, or `None` out of range.
    pub fn correlation_meta(&self, i: u32) -> Option<&CorrelationMeta> {
        self.correlations.get(i as usize)
    }

    /// The correlations that list correlation `correlation` as an input,
    /// with the input position: where its alerts are fed.
    pub fn chained(&self, correlation: u32) -> &[(u32, u8)] {
        self.chained
            .get(correlation as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// The index of the correlation whose [`CorrelationMeta::hash`] is
    /// `hash`: how state keyed by rule id finds its rule after a reload.
    pub fn correlation_by_hash(&self, hash: u64) -> Option<u32> {
        self.by_hash.get(&hash).copied()
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

/// The input position of `meta` whose field names (`fields`) read an
/// event (each read by `read`): the first detection input in `mask` whose
/// group fields are all present, else the first detection input in
/// `mask`, else position 0.
fn alias_position<'e>(
    meta: &CorrelationMeta,
    fields: &CorrelationFields,
    mask: u64,
    read: impl Fn(&FieldName) -> Option<&'e [u8]>,
) -> usize {
    let candidates = || {
        meta.inputs
            .iter()
            .enumerate()
            .filter(move |(position, input)| {
                mask & (1u64 << position) != 0 && matches!(input, CorrelationInput::Detection(_))
            })
            .map(|(position, _)| position)
    };
    let complete = candidates().find(|&position| {
        fields.group[position]
            .iter()
            .all(|field| read(field).is_some())
    });
    let position = complete.or_else(|| candidates().next()).unwrap_or(0);
    debug_assert!(position < fields.group.len());
    position
}

/// Appends the group key of `fields`, each read by `read` (format in the
/// module docs).
fn encode_group<'e>(
    fields: &[FieldName],
    read: impl Fn(&FieldName) -> Option<&'e [u8]>,
    out: &mut Vec<u8>,
) {
    for field in fields {
        match read(field) {
            Some(value) => {
                // A value can never be 4 GiB (frames are far smaller); cut
                // rather than collide with the absent marker.
                let length = value.len().min(GROUP_VALUE_ABSENT as usize - 1);
                out.extend_from_slice(&(length as u32).to_le_bytes());
                out.extend_from_slice(&value[..length]);
            }
            None => out.extend_from_slice(&GROUP_VALUE_ABSENT.to_le_bytes()),
        }
    }
}

/// Records `id` (and `name`, if any) as referring to `target`, refusing
/// duplicates of a rule that loaded.
fn register(
    targets: &mut HashMap<String, Resolved>,
    id: &str,
    name: Option<&str>,
    target: Resolved,
) -> Result<(), RuleErrorKind> {
    for key in std::iter::once(id).chain(name) {
        if matches!(
            targets.get(key),
            Some(Resolved::Detection(..) | Resolved::Draft(_))
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
