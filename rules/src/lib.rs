//! shardwatch-rules: the event model, Sigma rules, and detector state.
//!
//! This crate owns everything that decides whether events raise alerts:
//! the borrowed [`Event`] model and how Sigma field names resolve against
//! it ([`field`]), Sigma detection rules (every modifier of the modifiers
//! appendix, filters, log source mapping) compiled to matchers behind a
//! per-field Aho-Corasick prefilter ([`RuleSet`]), Sigma correlations
//! (`event_count`, `value_count`, `temporal`, `temporal_ordered`, aliases,
//! chaining) and their per-shard state ([`CorrelationState`]), alert
//! suppression ([`Suppressor`]), and deterministic alert ids ([`alert_id`]).
//!
//! **Architecture invariant:** this crate is pure. It does no IO (the engine
//! reads rule files and passes their text in [`RuleSource`], and passes
//! configuration in [`CompileOptions`]), reads no clock (event time and
//! watermarks are arguments), and spawns no threads. The same events in
//! give the same alerts out, which is what lets streaming and `replay`
//! agree and lets a shard's state move between nodes.
//!
//! ## Engine integration
//!
//! Per event: [`RuleSet::evaluate`] gives the matched detections; for each
//! correlation in [`RuleSet::correlations_fed`], route an [`Observation`]
//! built from [`RuleSet::group_key_for`] (the routing key),
//! [`RuleSet::input_mask`] and [`RuleSet::correlation_value`], and feed it
//! to [`CorrelationState::observe_into`] on the owning shard. The older
//! [`CorrelationState::observe`] still serves `event_count` exactly; it
//! has no mask or value, so `temporal` and `value_count` observations fed
//! through it are counted in [`CorrelationState::incomplete_total`] and
//! not guessed. Chained correlations are fed inside the state. Before
//! emitting, [`Suppressor::check`] may fold repeats.
//!
//! Anomaly rules ride on exactly this path: each compiles into a
//! [`CorrelationMeta`] with an anomaly [`CorrelationKind`]
//! (`Baseline`, `FirstSeen`, `RareTemplate`, `Outlier`) and its settings in
//! [`CorrelationMeta::anomaly`], fed by base detections (its `rules`, or a
//! hidden detection compiled from its inline `detection`). Their alerts
//! are [`CorrelationAlert`]s with [`CorrelationAlert::score`] and
//! [`CorrelationAlert::reason`] set; buckets close on observations and on
//! [`CorrelationState::advance`]. For `rare_template`, the engine mines
//! each event's message with one [`TemplateMiner`] per core and adds
//! `template.id` ([`TemplateMatch::id_hex`]), `template.text` and
//! `template.new` (`true`/`false`) before evaluation.
//!
//! Code map:
//! - [`event`]: the borrowed event view.
//! - [`field`]: field name resolution (exact, alias table, unique leaf).
//! - `pattern`: one value string compiled to a matcher; [`Scratch`].
//! - `condition`: the Sigma condition language.
//! - `detection`: selections, field tests and modifiers of one rule, and
//!   the literals the prefilter may rely on.
//! - `logsource`: log source mapping ([`LogsourceMapping`], built-in table
//!   in `rules/LOGSOURCES.md`).
//! - `matcher`: the per-field Aho-Corasick prefilter over all rules.
//! - `ruleset`: loading, filters, compiling, the stateless pass, group keys.
//! - `correlation_rule`: correlation definitions, aliases, reference and
//!   chain resolution, stable rule hashes.
//! - `correlation`: correlation windows, chaining, alerts, alert ids; the
//!   group table that anomaly entities share.
//! - `anomaly_rule`: the `anomaly:` format, validated into [`AnomalySpec`].
//! - `anomaly`: per-entity anomaly state (baselines, first-seen sets,
//!   streaming k-means), hosted inside correlation groups.
//! - [`template`]: Drain-style online template mining.
//! - `suppress`: [`Suppressor`].
//! - `error`: [`RuleError`].

mod anomaly;
mod anomaly_rule;
pub mod condition;
mod correlation;
mod correlation_rule;
mod detection;
mod error;
pub mod event;
pub mod field;
mod inline_bytes;
mod items;
mod logsource;
mod matcher;
mod pattern;
mod ruleset;
mod steps;
mod suppress;
pub mod template;

pub use anomaly::{CATCH_UP_BUCKETS_MAX, DISTINCT_PER_BUCKET_MAX};
pub use anomaly_rule::{
    kind_name, AnomalyMetric, AnomalySpec, Direction, Feature, Seasonality, BUCKET_NS_MIN,
    HISTORY_BUCKETS_MAX, OUTLIER_CENTRES_MAX, SEASON_HISTORY_MAX, VALUES_PER_ENTITY_MAX,
    WARMUP_BUCKETS_MAX,
};
pub use correlation::{
    alert_id, event_alert_id, ArchivedCorrelationState, CorrelationAlert, CorrelationState,
    IdHasher, Observation, PENDING_ALERTS_MAX, SAMPLES_MAX, VALUES_PER_GROUP_MAX,
};
pub use correlation_rule::{
    parse_timespan_ns, rule_id_hash, CorrelationInput, CorrelationKind, CorrelationMeta,
    CountCondition, CHAIN_DEPTH_MAX, CORRELATION_INPUTS_MAX, EVENT_COUNT_THRESHOLD_MAX,
    TIMESPAN_NS_MAX,
};
pub use error::{RuleError, RuleErrorKind};
pub use event::{Event, Field};
pub use field::ShapeKey;
pub use logsource::{LogsourceMapping, PayloadNaming, BUILTIN_LOGSOURCES, HEADER_FIELDS};
pub use pattern::Scratch;
pub use ruleset::{CompileOptions, LogSource, RuleMeta, RuleSet, RuleSource, GROUP_VALUE_ABSENT};
pub use suppress::{SuppressDecision, Suppressor};
pub use template::{
    id_hex, template_id, MinerConfig, TemplateMatch, TemplateMiner, TEMPLATE_ID_FIELD,
    TEMPLATE_NEW_FIELD, TEMPLATE_TEXT_FIELD,
};

/// Deterministic pseudo-random numbers for the unit tests' scrambles (no
/// rand dependency): xorshift64 from `seed` (not zero).
#[cfg(test)]
pub(crate) fn test_scramble(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
