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
//! - `correlation`: correlation windows, chaining, alerts, alert ids.
//! - `suppress`: [`Suppressor`].
//! - `error`: [`RuleError`].

pub mod condition;
mod correlation;
mod correlation_rule;
mod detection;
mod error;
pub mod event;
pub mod field;
mod logsource;
mod matcher;
mod pattern;
mod ruleset;
mod suppress;

pub use correlation::{
    alert_id, event_alert_id, CorrelationAlert, CorrelationState, Observation, PENDING_ALERTS_MAX,
    SAMPLES_MAX, VALUES_PER_GROUP_MAX,
};
pub use correlation_rule::{
    parse_timespan_ns, rule_id_hash, CorrelationInput, CorrelationKind, CorrelationMeta,
    CountCondition, CHAIN_DEPTH_MAX, CORRELATION_INPUTS_MAX, EVENT_COUNT_THRESHOLD_MAX,
    TIMESPAN_NS_MAX,
};
pub use error::{RuleError, RuleErrorKind};
pub use event::{Event, Field};
pub use logsource::{LogsourceMapping, BUILTIN_LOGSOURCES};
pub use pattern::Scratch;
pub use ruleset::{CompileOptions, LogSource, RuleMeta, RuleSet, RuleSource, GROUP_VALUE_ABSENT};
pub use suppress::{SuppressDecision, Suppressor};
