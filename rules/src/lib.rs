//! shardwatch-rules: the event model, Sigma rules, and detector state.
//!
//! This crate owns everything that decides whether events raise alerts:
//! the borrowed [`Event`] model, Sigma detection rules compiled to matchers
//! ([`RuleSet`]), Sigma `event_count` correlations and their per-shard state
//! ([`CorrelationState`]), and deterministic alert ids ([`alert_id`]).
//!
//! **Architecture invariant:** this crate is pure. It does no IO (the engine
//! reads rule files and passes their text in [`RuleSource`]), reads no clock
//! (event time and watermarks are arguments), and spawns no threads. The
//! same events in give the same alerts out, which is what lets streaming and
//! `replay` agree and lets a shard's state move between nodes.
//!
//! Code map:
//! - [`event`]: the borrowed event view.
//! - `pattern`: one value string compiled to a matcher; [`Scratch`].
//! - `condition`: the Sigma condition language.
//! - `detection`: selections and field tests of one rule.
//! - `ruleset`: loading, compiling, the stateless pass, group keys.
//! - `correlation`: event-count windows, alerts, alert ids.
//! - `error`: [`RuleError`].

pub mod condition;
mod correlation;
mod detection;
mod error;
pub mod event;
mod pattern;
mod ruleset;

pub use correlation::{alert_id, event_alert_id, CorrelationAlert, CorrelationState, SAMPLES_MAX};
pub use error::{RuleError, RuleErrorKind};
pub use event::{Event, Field};
pub use pattern::Scratch;
pub use ruleset::{
    parse_timespan_ns, CorrelationKind, CorrelationMeta, CountCondition, LogSource, RuleMeta,
    RuleSet, RuleSource, EVENT_COUNT_THRESHOLD_MAX, GROUP_VALUE_ABSENT, TIMESPAN_NS_MAX,
};
