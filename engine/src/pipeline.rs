//! From a received line to detections: parse, extract, evaluate stateless
//! rules, and place what stateful detectors want on shards.
//!
//! This is the one code path for a line, shared by the streaming server and
//! by `shardwatch replay`, which is why the two raise the same alerts. What
//! happens to the results is up to the [`EventSink`]: the server sends routed
//! records to their owner core, replay hands them to its single shard set.
//!
//! Per line this does no heap allocation once warm: the parsed message and
//! its fields borrow from the line, and every buffer here is reused.

use std::sync::Arc;

use shardwatch_net::fields::Fields;
use shardwatch_net::syslog::ParseContext;
use shardwatch_rules::{Event, RuleSet, Scratch};

use crate::route::RouteRecord;
use crate::shardmap::ShardMap;

/// Where the results of one line go.
pub trait EventSink {
    /// The line could not be accepted; `reason` is a stable snake_case name.
    fn quarantine(&mut self, reason: &'static str, offset: Option<usize>, raw: &[u8]);
    /// A standalone detection rule matched this event.
    fn detection(&mut self, detection: u32, event: &Event<'_>, received_ns: i64);
    /// A correlation wants this event; `owner` is the core owning the shard.
    fn route(&mut self, record: &RouteRecord<'_>, owner: u16);
}

/// Reusable per-core state for processing lines.
pub struct Pipeline {
    rules: Arc<RuleSet>,
    map: Arc<ShardMap>,
    default_utc_offset_s: i32,
    scratch: Scratch,
    matched: Vec<u32>,
    correlations: Vec<u32>,
    key: Vec<u8>,
}

impl Pipeline {
    pub fn new(rules: Arc<RuleSet>, map: Arc<ShardMap>, default_utc_offset_s: i32) -> Self {
        Pipeline {
            rules,
            map,
            default_utc_offset_s,
            scratch: Scratch::default(),
            matched: Vec::with_capacity(64),
            correlations: Vec::with_capacity(64),
            key: Vec::with_capacity(256),
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Swaps in a new rule set (a reload); takes effect from the next line.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
    }

    /// Processes one line. Returns the event time, or None when the line
    /// was quarantined.
    pub fn process(
        &mut self,
        raw: &[u8],
        received_ns: i64,
        sink: &mut impl EventSink,
    ) -> Option<i64> {
        let ctx = ParseContext {
            now_ns: received_ns,
            default_offset_s: self.default_utc_offset_s,
        };
        let mut fields = Fields::new();
        let message = match shardwatch_net::parse_and_extract(raw, &ctx, &mut fields) {
            Ok(parsed) => parsed.syslog,
            Err(err) => {
                sink.quarantine(err.reason.as_str(), Some(err.offset), raw);
                return None;
            }
        };
        let event = Event {
            time_ns: message.timestamp_ns.unwrap_or(received_ns),
            fields: fields.as_slice(),
            message: message.message,
            raw,
        };
        self.rules
            .evaluate(&event, &mut self.scratch, &mut self.matched);
        if self.matched.is_empty() {
            return Some(event.time_ns);
        }
        for &detection in &self.matched {
            if self.rules.detection(detection as usize).standalone {
                sink.detection(detection, &event, received_ns);
            }
        }
        // Two base rules of one correlation may both match; the event still
        // counts once for that correlation.
        self.rules
            .correlations_fed(&self.matched, &mut self.correlations);
        // Input masks look rules up by binary search.
        self.matched.sort_unstable();
        for &correlation in &self.correlations {
            self.rules
                .group_key_for(correlation, &self.matched, &event, &mut self.key);
            let (shard, owner) = self.map.place(&self.key);
            let record = RouteRecord {
                shard,
                rule_hash: self.rules.correlation(correlation as usize).hash,
                input_mask: self.rules.input_mask(correlation, &self.matched),
                time_ns: event.time_ns,
                received_ns,
                key: &self.key,
                value: self
                    .rules
                    .correlation_value(correlation, &self.matched, &event),
                raw,
            };
            sink.route(&record, owner);
        }
        Some(event.time_ns)
    }
}
