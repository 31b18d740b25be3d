//! Alert records: the JSON object written to stdout and `alerts.jsonl`.
//!
//! The schema is documented in README.md ("Alert schema"); change both
//! together. Ids are deterministic (rule, group, window), so a replay of the
//! same input gives the same ids and a consumer can drop duplicates.

use serde_json::{json, Map, Value};
use shardwatch_rules::{event_alert_id, CorrelationAlert, Event, RuleSet};

use crate::output::AlertLine;
use crate::timefmt::rfc3339_ns;

/// Where and when an alert was raised.
#[derive(Debug, Clone, Copy)]
pub struct Raised {
    pub core: usize,
    pub shard: Option<u16>,
    pub detected_ns: i64,
    /// Receive time of the event that completed the pattern.
    pub received_ns: i64,
}

fn lossy(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn latency_us(raised: &Raised) -> i64 {
    (raised.detected_ns - raised.received_ns).max(0) / 1_000
}

/// Renders a correlation alert as one JSON line (no trailing newline).
pub fn render_correlation(rules: &RuleSet, alert: &CorrelationAlert, raised: &Raised) -> AlertLine {
    let meta = rules.correlation(alert.correlation as usize);
    let mut group = Map::new();
    for (field, value) in rules.decode_group(alert.correlation, &alert.group_key) {
        group.insert(field.to_string(), value.map(lossy).unwrap_or(Value::Null));
    }
    let sample: Vec<Value> = alert.samples.iter().map(|s| lossy(s)).collect();
    let kind = if meta.kind.is_anomaly() {
        "anomaly"
    } else {
        "correlation"
    };
    let mut line = json!({
        "id": alert.id,
        "kind": kind,
        "rule": {"id": meta.id, "title": meta.title, "level": meta.level},
        "group": group,
        "count": alert.count,
        "first_seen": rfc3339_ns(alert.first_seen_ns),
        "last_seen": rfc3339_ns(alert.last_seen_ns),
        "detected_at": rfc3339_ns(raised.detected_ns),
        "latency_us": latency_us(raised),
        "core": raised.core,
        "shard": raised.shard,
        "sample": sample,
    });
    if meta.kind.is_anomaly() {
        line["anomaly"] = json!({
            "type": shardwatch_rules::kind_name(meta.kind),
            "score": alert.score,
            "reason": alert.reason,
        });
    }
    AlertLine {
        rule_id: meta.id.clone(),
        id: alert.id.clone(),
        line: line.to_string(),
        barrier: None,
        home: None,
    }
}

/// Renders a single-event detection as one JSON line. Its id is derived
/// from the rule, the raw line and the event time, so the same line at the
/// same time always gives the same id.
pub fn render_detection(
    rules: &RuleSet,
    detection: u32,
    event: &Event<'_>,
    raised: &Raised,
) -> AlertLine {
    let meta = rules.detection(detection as usize);
    let id = event_alert_id(&meta.id, event.raw, event.time_ns);
    let line = json!({
        "id": id,
        "kind": "detection",
        "rule": {"id": meta.id, "title": meta.title, "level": meta.level},
        "group": {},
        "count": 1,
        "first_seen": rfc3339_ns(event.time_ns),
        "last_seen": rfc3339_ns(event.time_ns),
        "detected_at": rfc3339_ns(raised.detected_ns),
        "latency_us": latency_us(raised),
        "core": raised.core,
        "shard": raised.shard,
        "sample": [lossy(event.raw)],
    })
    .to_string();
    AlertLine {
        rule_id: meta.id.clone(),
        id,
        line,
        barrier: None,
        home: None,
    }
}

/// Suppression in front of the outputs: per rule and group, repeats within
/// `rules.suppress_window_ms` (event time; a window is dropped that long
/// after its first alert arrived, see `shardwatch_rules::Suppressor`) are folded into the first alert
/// instead of being written. When a window that folded repeats closes, one
/// `update` record carries the first alert's final count (consumers upsert
/// by `id`). Groups: a correlation's group key; for single-event rules the
/// event's `host.name`. Each core suppresses what it raises, so a rule's
/// single-event alerts read on two cores fold per core.
pub struct AlertGate {
    suppressor: Option<shardwatch_rules::Suppressor>,
    closed: Vec<(String, u64)>,
}

/// Most open suppression windows one core keeps; the oldest is evicted
/// (and counted by the suppressor) beyond it.
pub const SUPPRESS_WINDOWS_MAX: usize = 100_000;

impl AlertGate {
    /// A gate folding repeats within `window_ms`; 0 lets everything through.
    pub fn new(window_ms: u64) -> Self {
        AlertGate {
            suppressor: (window_ms > 0).then(|| {
                shardwatch_rules::Suppressor::new(
                    i64::try_from(window_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
                    SUPPRESS_WINDOWS_MAX,
                )
            }),
            closed: Vec::new(),
        }
    }

    /// Whether an alert at event time `time_ns`, arriving at `arrival_ns`
    /// (on the clock `advance` is given), should be written (true) or was
    /// folded (false).
    pub fn admit(
        &mut self,
        rule_id: &str,
        group_key: &[u8],
        id: &str,
        time_ns: i64,
        arrival_ns: i64,
    ) -> bool {
        match &mut self.suppressor {
            None => true,
            Some(s) => matches!(
                s.check(rule_id, group_key, id, time_ns, arrival_ns),
                shardwatch_rules::SuppressDecision::Emit
            ),
        }
    }

    /// Closes windows that ended before `now_ns`, rendering an update for
    /// each that folded repeats.
    pub fn advance(&mut self, now_ns: i64, detected_ns: i64, mut emit: impl FnMut(AlertLine)) {
        let Some(s) = &mut self.suppressor else {
            return;
        };
        s.advance_closed(now_ns, &mut self.closed);
        for (id, count) in self.closed.drain(..) {
            emit(render_update(&id, count, detected_ns));
        }
    }
}

/// The record that publishes a suppressed alert's final count.
pub fn render_update(id: &str, count: u64, detected_ns: i64) -> AlertLine {
    AlertLine {
        rule_id: String::new(),
        id: id.to_string(),
        barrier: None,
        home: None,
        line: json!({
            "id": id,
            "kind": "update",
            "count": count,
            "detected_at": rfc3339_ns(detected_ns),
        })
        .to_string(),
    }
}
