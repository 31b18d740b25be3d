//! Anomaly rules as definitions: the `anomaly:` document and its checks.
//!
//! This module owns our own rule format for online anomaly detectors
//! (documented with examples in `rules/ANOMALY.md`): `type` (`baseline`,
//! `first_seen`, `rare_template`, `outlier`), its inputs (`rules`, or an
//! inline `detection`/`logsource` that the rule set compiles into a hidden
//! base detection), `group-by`, and the settings of each type. It produces
//! an immutable [`AnomalySpec`] inside a [`CorrelationMeta`], so that an
//! anomaly rule is routed by the engine exactly like a correlation: the
//! same group keys, input masks and values, the same state, the same
//! alerts. It must not hold state or read anything but the YAML it is
//! given; the detectors themselves live in `crate::anomaly`.
//!
//! Every setting is validated; a bad one is a
//! [`RuleErrorKind::Anomaly`] naming the setting, and an unknown key is
//! refused rather than ignored, so a typo cannot silently change what a
//! detector does.

use serde_yaml_ng::{Mapping, Value};

use crate::correlation_rule::{
    parse_timespan_ns, rule_id_hash, CorrelationDraft, CorrelationKind, CorrelationMeta,
    TIMESPAN_NS_MAX,
};
use crate::error::RuleErrorKind;

/// The most buckets of warm-up of a `baseline` or `outlier` rule.
pub const WARMUP_BUCKETS_MAX: u32 = 100_000;

/// The most recent buckets kept per entity (per season slot, at most
/// [`SEASON_HISTORY_MAX`] of them) for the MAD of a `baseline` rule.
pub const HISTORY_BUCKETS_MAX: u32 = 1024;

/// The most recent buckets kept per hour-of-week slot when `seasonality`
/// is `hour_of_week` (168 slots per entity).
pub const SEASON_HISTORY_MAX: u32 = 12;

/// The most values a `first_seen` entity can be asked to remember.
pub const VALUES_PER_ENTITY_MAX: u32 = 100_000;

/// The most cluster centres of an `outlier` rule.
pub const OUTLIER_CENTRES_MAX: u32 = 16;

/// The smallest bucket: one second.
pub const BUCKET_NS_MIN: i64 = 1_000_000_000;

/// What a `baseline` rule measures per bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnomalyMetric {
    /// Events in the bucket.
    Count,
    /// Distinct values of the value field in the bucket.
    Distinct,
    /// The sum of the numeric value field in the bucket.
    Sum,
}

/// Which deviations of a `baseline` rule alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Spikes only.
    Up,
    /// Drops only (a source going quiet).
    Down,
    /// Both.
    Both,
}

impl Direction {
    /// Whether spikes alert.
    pub fn up(self) -> bool {
        matches!(self, Direction::Up | Direction::Both)
    }

    /// Whether drops alert.
    pub fn down(self) -> bool {
        matches!(self, Direction::Down | Direction::Both)
    }
}

/// Whether a `baseline` keeps one model or one per hour of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seasonality {
    /// One model per entity.
    None,
    /// One model per entity and hour of the week (UTC, Monday 00:00 is
    /// slot 0).
    HourOfWeek,
}

/// One per-bucket feature of an `outlier` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// Events in the bucket.
    Count,
    /// Sum of the value field.
    Sum,
    /// Largest value of the value field.
    Max,
    /// Mean of the value field over the events that had one.
    Mean,
    /// Distinct values of the value field.
    Distinct,
}

impl Feature {
    fn parse(text: &str) -> Option<Feature> {
        Some(match text {
            "count" => Feature::Count,
            "sum" => Feature::Sum,
            "max" => Feature::Max,
            "mean" => Feature::Mean,
            "distinct" => Feature::Distinct,
            _ => return None,
        })
    }

    /// The feature's name as written in rules.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Count => "count",
            Feature::Sum => "sum",
            Feature::Max => "max",
            Feature::Mean => "mean",
            Feature::Distinct => "distinct",
        }
    }
}

/// The settings of one anomaly rule. Which fields matter depends on the
/// rule's [`CorrelationKind`]; the others keep their defaults. The value
/// field (metric field, `first_seen` field, outlier field) is
/// [`CorrelationMeta::value_fields`], so the engine's
/// [`crate::RuleSet::correlation_value`] extracts it.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalySpec {
    /// `baseline`: what is measured.
    pub metric: AnomalyMetric,
    /// `baseline`, `outlier`: bucket width (at least one second).
    pub bucket_ns: i64,
    /// `baseline`, `outlier`: closed buckets of history before any alert.
    pub warmup_buckets: u32,
    /// `baseline`: the z-score (against the EWMA mean and deviation) that
    /// must be reached, if set.
    pub zscore: Option<f64>,
    /// `baseline`: the MAD score (against the median and median absolute
    /// deviation of recent buckets) that must be reached, if set.
    pub mad: Option<f64>,
    /// `baseline`: which deviations alert.
    pub direction: Direction,
    /// `baseline`: seasonal slots.
    pub seasonality: Seasonality,
    /// `baseline`, `outlier`: EWMA weight of a new bucket, in `(0, 1]`.
    pub alpha: f64,
    /// `baseline`: the smallest deviation (in metric units) a score
    /// divides by, so a perfectly flat history does not make every change
    /// infinitely anomalous. `outlier`: the smallest cluster radius (in
    /// log units).
    pub min_deviation: f64,
    /// `baseline`: recent buckets kept for the MAD.
    pub history_buckets: u32,
    /// `baseline`, `outlier`: consecutive empty buckets after which an
    /// entity is forgotten.
    pub expire_buckets: u32,
    /// `first_seen`, `rare_template`: learning period per entity, in event
    /// time from the entity's first event, during which new values are
    /// learned without alerting.
    pub learn_ns: i64,
    /// `first_seen`, `rare_template`: a value not seen for this long is
    /// forgotten (and alerts again when it returns).
    pub forget_ns: i64,
    /// `first_seen`, `rare_template`: the most values remembered per
    /// entity; the least recently seen is evicted and counted.
    pub values_max: u32,
    /// `first_seen`: IPv4 values are reduced to this prefix length.
    pub prefix_v4: Option<u8>,
    /// `first_seen`: IPv6 values are reduced to this prefix length.
    pub prefix_v6: Option<u8>,
    /// `outlier`: the per-bucket feature vector.
    pub features: Vec<Feature>,
    /// `outlier`: cluster centres of the streaming k-means.
    pub centres: u32,
    /// `outlier`: the distance, in cluster radii, that alerts.
    pub distance: f64,
}

/// Every `f64` in a spec is validated finite, so equality is reflexive.
impl Eq for AnomalySpec {}

impl Default for AnomalySpec {
    fn default() -> Self {
        AnomalySpec {
            metric: AnomalyMetric::Count,
            bucket_ns: 60 * 1_000_000_000,
            warmup_buckets: 30,
            zscore: None,
            mad: None,
            direction: Direction::Up,
            seasonality: Seasonality::None,
            alpha: 2.0 / 31.0,
            min_deviation: 1.0,
            history_buckets: 60,
            expire_buckets: 1440,
            learn_ns: 86_400 * 1_000_000_000,
            forget_ns: 30 * 86_400 * 1_000_000_000,
            values_max: 1000,
            prefix_v4: None,
            prefix_v6: None,
            features: vec![Feature::Count],
            centres: 3,
            distance: 0.0,
        }
    }
}

/// The keys each type accepts inside `anomaly:`.
fn allowed_keys(kind: CorrelationKind) -> &'static [&'static str] {
    const COMMON: &[&str] = &["type", "rules", "group-by", "generate"];
    match kind {
        CorrelationKind::Baseline => &[
            "type",
            "rules",
            "group-by",
            "generate",
            "metric",
            "bucket",
            "warmup",
            "threshold",
            "direction",
            "seasonality",
            "alpha",
            "min-deviation",
            "history",
            "expire-after",
        ],
        CorrelationKind::FirstSeen | CorrelationKind::RareTemplate => &[
            "type",
            "rules",
            "group-by",
            "generate",
            "field",
            "network_prefix",
            "network_prefix_v6",
            "warmup",
            "forget-after",
            "values-max",
        ],
        CorrelationKind::Outlier => &[
            "type",
            "rules",
            "group-by",
            "generate",
            "field",
            "features",
            "bucket",
            "warmup",
            "threshold",
            "centres",
            "alpha",
            "min-deviation",
            "expire-after",
        ],
        _ => COMMON,
    }
}

fn key_name(key: &str) -> String {
    format!("anomaly.{key}")
}

fn string_list(value: &Value, key: &str) -> Result<Vec<String>, RuleErrorKind> {
    let bad = || RuleErrorKind::anomaly(key_name(key), "must be a string or a list of strings");
    match value {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Sequence(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

fn number(value: &Value, key: &str) -> Result<f64, RuleErrorKind> {
    let number = match value {
        Value::Number(number) => number.as_f64(),
        _ => None,
    };
    number
        .filter(|n| n.is_finite())
        .ok_or_else(|| RuleErrorKind::anomaly(key_name(key), "must be a finite number"))
}

fn integer(value: &Value, key: &str, min: u64, max: u64) -> Result<u64, RuleErrorKind> {
    match value {
        Value::Number(number) => match number.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(RuleErrorKind::anomaly(
                key_name(key),
                format!("must be a whole number from {min} to {max}"),
            )),
        },
        _ => Err(RuleErrorKind::anomaly(
            key_name(key),
            format!("must be a whole number from {min} to {max}"),
        )),
    }
}

fn timespan(value: &Value, key: &str, allow_zero: bool) -> Result<i64, RuleErrorKind> {
    match value {
        Value::Number(number) if allow_zero && number.as_u64() == Some(0) => Ok(0),
        Value::String(text) if allow_zero && text.trim() == "0" => Ok(0),
        Value::String(text) => parse_timespan_ns(text).map_err(|_| {
            RuleErrorKind::anomaly(key_name(key), "must be a timespan like 30s, 5m, 1h or 7d")
        }),
        _ => Err(RuleErrorKind::anomaly(
            key_name(key),
            "must be a timespan like 30s, 5m, 1h or 7d",
        )),
    }
}

/// Reads the `anomaly:` section of a document into a correlation draft.
/// `meta` carries the common metadata; `inline` is the id of the hidden
/// detection compiled from the document's own `detection:`, if it has one
/// (then `rules` must be absent).
pub(crate) fn read_anomaly(
    section: &Mapping,
    mut meta: CorrelationMeta,
    inline: Option<String>,
) -> Result<CorrelationDraft, RuleErrorKind> {
    let kind = match section.get("type") {
        Some(Value::String(text)) => match text.as_str() {
            "baseline" => CorrelationKind::Baseline,
            "first_seen" => CorrelationKind::FirstSeen,
            "rare_template" => CorrelationKind::RareTemplate,
            "outlier" => CorrelationKind::Outlier,
            other => {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.type",
                    format!("'{other}' is not one of baseline, first_seen, rare_template, outlier"),
                ))
            }
        },
        _ => {
            return Err(RuleErrorKind::anomaly(
                "anomaly.type",
                "is required: baseline, first_seen, rare_template or outlier",
            ))
        }
    };
    let allowed = allowed_keys(kind);
    for key in section.keys() {
        let Value::String(key) = key else {
            return Err(RuleErrorKind::anomaly("anomaly", "keys must be strings"));
        };
        if !allowed.contains(&key.as_str()) {
            return Err(RuleErrorKind::anomaly(
                key_name(key),
                format!("is not a setting of type {}", kind_name(kind)),
            ));
        }
    }
    let references = match (section.get("rules"), inline) {
        (Some(_), Some(_)) => {
            return Err(RuleErrorKind::anomaly(
                "anomaly.rules",
                "give either 'rules' or an inline 'detection', not both",
            ))
        }
        (Some(value), None) => {
            let list = string_list(value, "rules")?;
            if list.is_empty() || list.len() > crate::CORRELATION_INPUTS_MAX {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.rules",
                    format!("must list 1 to {} rules", crate::CORRELATION_INPUTS_MAX),
                ));
            }
            list
        }
        (None, Some(hidden)) => vec![hidden],
        (None, None) => {
            return Err(RuleErrorKind::anomaly(
                "anomaly.rules",
                "is required unless the document has its own 'detection'",
            ))
        }
    };
    let group_by = match section.get("group-by") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => string_list(value, "group-by")?,
    };
    let generate = match section.get("generate") {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => {
            return Err(RuleErrorKind::anomaly(
                "anomaly.generate",
                "must be a boolean",
            ))
        }
    };
    let mut spec = AnomalySpec::default();
    let mut value_field: Option<String> = None;
    let get = |key: &str| section.get(key).filter(|v| !v.is_null());
    match kind {
        CorrelationKind::Baseline | CorrelationKind::Outlier => {
            if let Some(value) = get("bucket") {
                spec.bucket_ns = timespan(value, "bucket", false)?;
            }
            if spec.bucket_ns < BUCKET_NS_MIN {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.bucket",
                    "must be at least 1s",
                ));
            }
            if let Some(value) = get("warmup") {
                // Lossless: bounded by WARMUP_BUCKETS_MAX.
                spec.warmup_buckets =
                    integer(value, "warmup", 1, u64::from(WARMUP_BUCKETS_MAX))? as u32;
            }
            spec.alpha = (2.0 / (f64::from(spec.warmup_buckets) + 1.0)).clamp(0.01, 0.5);
            if let Some(value) = get("alpha") {
                spec.alpha = number(value, "alpha")?;
                if !(spec.alpha > 0.0 && spec.alpha <= 1.0) {
                    return Err(RuleErrorKind::anomaly("anomaly.alpha", "must be in (0, 1]"));
                }
            }
            if kind == CorrelationKind::Outlier {
                spec.min_deviation = 0.5;
            }
            if let Some(value) = get("min-deviation") {
                spec.min_deviation = number(value, "min-deviation")?;
                if spec.min_deviation <= 0.0 {
                    return Err(RuleErrorKind::anomaly(
                        "anomaly.min-deviation",
                        "must be positive",
                    ));
                }
            }
            if let Some(value) = get("expire-after") {
                // Lossless: bounded by u32::MAX.
                spec.expire_buckets =
                    integer(value, "expire-after", 1, u64::from(u32::MAX))? as u32;
            }
            spec.expire_buckets = spec
                .expire_buckets
                .max(spec.warmup_buckets.saturating_add(1));
        }
        _ => {}
    }
    match kind {
        CorrelationKind::Baseline => {
            if let Some(value) = get("metric") {
                let Value::String(text) = value else {
                    return Err(RuleErrorKind::anomaly(
                        "anomaly.metric",
                        "must be count, distinct:<field> or sum:<field>",
                    ));
                };
                let (name, field) = match text.split_once(':') {
                    Some((name, field)) => (name.trim(), Some(field.trim())),
                    None => (text.trim(), None),
                };
                spec.metric = match (name, field) {
                    ("count", None) => AnomalyMetric::Count,
                    ("distinct", Some(field)) if !field.is_empty() => AnomalyMetric::Distinct,
                    ("sum", Some(field)) if !field.is_empty() => AnomalyMetric::Sum,
                    _ => {
                        return Err(RuleErrorKind::anomaly(
                            "anomaly.metric",
                            format!("'{text}' is not count, distinct:<field> or sum:<field>"),
                        ))
                    }
                };
                value_field = field.map(str::to_owned);
            }
            let Some(Value::Mapping(threshold)) = get("threshold") else {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.threshold",
                    "is required: a map with zscore and/or mad",
                ));
            };
            for (key, value) in threshold {
                match key.as_str() {
                    Some("zscore") => spec.zscore = Some(number(value, "threshold.zscore")?),
                    Some("mad") => spec.mad = Some(number(value, "threshold.mad")?),
                    _ => {
                        return Err(RuleErrorKind::anomaly(
                            "anomaly.threshold",
                            "accepts only zscore and mad",
                        ))
                    }
                }
            }
            if spec.zscore.is_none() && spec.mad.is_none() {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.threshold",
                    "needs zscore, mad or both",
                ));
            }
            if spec.zscore.is_some_and(|z| z <= 0.0) || spec.mad.is_some_and(|m| m <= 0.0) {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.threshold",
                    "scores must be positive",
                ));
            }
            if let Some(value) = get("direction") {
                spec.direction = match value.as_str() {
                    Some("up") => Direction::Up,
                    Some("down") => Direction::Down,
                    Some("both") => Direction::Both,
                    _ => {
                        return Err(RuleErrorKind::anomaly(
                            "anomaly.direction",
                            "must be up, down or both",
                        ))
                    }
                };
            }
            if let Some(value) = get("seasonality") {
                spec.seasonality = match value.as_str() {
                    Some("none") => Seasonality::None,
                    Some("hour_of_week") => Seasonality::HourOfWeek,
                    _ => {
                        return Err(RuleErrorKind::anomaly(
                            "anomaly.seasonality",
                            "must be none or hour_of_week",
                        ))
                    }
                };
            }
            if spec.seasonality == Seasonality::HourOfWeek
                && 3_600_000_000_000 % spec.bucket_ns != 0
            {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.bucket",
                    "must divide one hour when seasonality is hour_of_week",
                ));
            }
            if let Some(value) = get("history") {
                // Lossless: bounded by HISTORY_BUCKETS_MAX.
                spec.history_buckets =
                    integer(value, "history", 5, u64::from(HISTORY_BUCKETS_MAX))? as u32;
            }
        }
        CorrelationKind::FirstSeen | CorrelationKind::RareTemplate => {
            let field = match get("field") {
                Some(Value::String(field)) if !field.is_empty() => field.clone(),
                Some(_) => {
                    return Err(RuleErrorKind::anomaly(
                        "anomaly.field",
                        "must be a field name",
                    ))
                }
                None if kind == CorrelationKind::RareTemplate => {
                    crate::template::TEMPLATE_ID_FIELD.to_owned()
                }
                None => {
                    return Err(RuleErrorKind::anomaly(
                        "anomaly.field",
                        "is required: the field whose new values alert",
                    ))
                }
            };
            value_field = Some(field);
            if let Some(value) = get("network_prefix") {
                // Lossless: at most 32.
                spec.prefix_v4 = Some(integer(value, "network_prefix", 0, 32)? as u8);
                spec.prefix_v6 = Some(64);
            }
            if let Some(value) = get("network_prefix_v6") {
                // Lossless: at most 128.
                spec.prefix_v6 = Some(integer(value, "network_prefix_v6", 0, 128)? as u8);
            }
            spec.learn_ns = match get("warmup") {
                Some(value) => timespan(value, "warmup", true)?,
                None => AnomalySpec::default().learn_ns,
            };
            if let Some(value) = get("forget-after") {
                spec.forget_ns = timespan(value, "forget-after", false)?;
            }
            if let Some(value) = get("values-max") {
                // Lossless: bounded by VALUES_PER_ENTITY_MAX.
                spec.values_max =
                    integer(value, "values-max", 1, u64::from(VALUES_PER_ENTITY_MAX))? as u32;
            }
            debug_assert!(spec.forget_ns > 0 && spec.forget_ns <= TIMESPAN_NS_MAX);
        }
        CorrelationKind::Outlier => {
            if let Some(value) = get("field") {
                let Value::String(field) = value else {
                    return Err(RuleErrorKind::anomaly(
                        "anomaly.field",
                        "must be a field name",
                    ));
                };
                value_field = Some(field.clone());
            }
            spec.features = match get("features") {
                Some(value) => {
                    let names = string_list(value, "features")?;
                    let mut features = Vec::with_capacity(names.len());
                    for name in names {
                        let feature = Feature::parse(&name).ok_or_else(|| {
                            RuleErrorKind::anomaly(
                                "anomaly.features",
                                format!("'{name}' is not count, sum, max, mean or distinct"),
                            )
                        })?;
                        if !features.contains(&feature) {
                            features.push(feature);
                        }
                    }
                    features
                }
                None if value_field.is_some() => vec![Feature::Count, Feature::Sum],
                None => vec![Feature::Count],
            };
            if spec.features.is_empty() {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.features",
                    "must list at least one feature",
                ));
            }
            if value_field.is_none() && spec.features.iter().any(|f| *f != Feature::Count) {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.features",
                    "sum, max, mean and distinct need 'field'",
                ));
            }
            if let Some(value) = get("centres") {
                // Lossless: bounded by OUTLIER_CENTRES_MAX.
                spec.centres = integer(value, "centres", 1, u64::from(OUTLIER_CENTRES_MAX))? as u32;
            }
            let Some(Value::Mapping(threshold)) = get("threshold") else {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.threshold",
                    "is required: a map with distance",
                ));
            };
            for (key, value) in threshold {
                match key.as_str() {
                    Some("distance") => spec.distance = number(value, "threshold.distance")?,
                    _ => {
                        return Err(RuleErrorKind::anomaly(
                            "anomaly.threshold",
                            "accepts only distance",
                        ))
                    }
                }
            }
            if spec.distance <= 0.0 {
                return Err(RuleErrorKind::anomaly(
                    "anomaly.threshold.distance",
                    "is required and must be positive",
                ));
            }
        }
        _ => {}
    }
    meta.kind = kind;
    meta.group_by = group_by;
    meta.generate = generate;
    meta.timespan_ns = match kind {
        CorrelationKind::FirstSeen | CorrelationKind::RareTemplate => spec.forget_ns,
        _ => spec.bucket_ns,
    };
    meta.hash = rule_id_hash(&meta.id);
    meta.anomaly = Some(Box::new(spec));
    debug_assert!(meta.timespan_ns > 0);
    Ok(CorrelationDraft {
        meta,
        references,
        aliases: Vec::new(),
        value_field,
    })
}

/// The `type` name of an anomaly kind.
pub fn kind_name(kind: CorrelationKind) -> &'static str {
    match kind {
        CorrelationKind::Baseline => "baseline",
        CorrelationKind::FirstSeen => "first_seen",
        CorrelationKind::RareTemplate => "rare_template",
        CorrelationKind::Outlier => "outlier",
        CorrelationKind::EventCount => "event_count",
        CorrelationKind::ValueCount => "value_count",
        CorrelationKind::Temporal => "temporal",
        CorrelationKind::TemporalOrdered => "temporal_ordered",
    }
}
