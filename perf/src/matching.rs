//! Alerts as the harness sees them, and matching them to ground truth.
//!
//! An alert matches a truth entry when its rule matches (rule id equal to,
//! or title containing, the entry's `rule`, ignoring case) and either its
//! group carries the entry's group value under the entry's group field or,
//! for single-event rules whose alerts have no group, one of its sample
//! lines ends with the completing event's message. Each entry is matched by
//! at most one alert, the first observed; a later alert for an already
//! matched entry is a duplicate, and an alert matching no entry is a false
//! positive. Precision counts duplicates against the appliance: a consumer
//! would see them as noise.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::corpus::TruthEntry;

/// Most sample lines kept per alert; alerts carry a handful at most.
pub const SAMPLES_KEPT_MAX: usize = 16;

/// One alert line as observed by the collector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedAlert {
    /// When the collector read the line, on the harness clock (UTC ns).
    pub observed_ns: i64,
    pub id: String,
    pub kind: String,
    pub rule_id: String,
    pub rule_title: String,
    pub group: Vec<(String, String)>,
    /// The appliance's own receive-to-detect latency, when present.
    pub latency_us: Option<i64>,
    /// When the appliance raised it (`detected_at`, its clock: the same
    /// machine's UTC), when present.
    pub detected_ns: Option<i64>,
    pub samples: Vec<String>,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Parses one alert JSON line; None when it is not an alert object.
pub fn parse_alert(line: &str, observed_ns: i64) -> Option<ObservedAlert> {
    let value: Value = serde_json::from_str(line.trim()).ok()?;
    let object = value.as_object()?;
    let rule = object.get("rule")?.as_object()?;
    let group = object
        .get("group")
        .and_then(Value::as_object)
        .map(|g| g.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default();
    let samples = object
        .get("sample")
        .and_then(Value::as_array)
        .map(|a| a.iter().take(SAMPLES_KEPT_MAX).map(text).collect())
        .unwrap_or_default();
    Some(ObservedAlert {
        observed_ns,
        id: object.get("id").map(text).unwrap_or_default(),
        kind: object.get("kind").map(text).unwrap_or_default(),
        rule_id: rule.get("id").map(text).unwrap_or_default(),
        rule_title: rule.get("title").map(text).unwrap_or_default(),
        group,
        latency_us: object.get("latency_us").and_then(Value::as_i64),
        detected_ns: object
            .get("detected_at")
            .and_then(Value::as_str)
            .and_then(crate::timefmt::parse_rfc3339),
        samples,
    })
}

/// Whether `alert` is the alert `entry` expects.
pub fn alert_matches(entry: &TruthEntry, alert: &ObservedAlert) -> bool {
    let rule = entry.rule.to_ascii_lowercase();
    let rule_ok = alert.rule_id.eq_ignore_ascii_case(&entry.rule)
        || alert.rule_title.to_ascii_lowercase().contains(&rule);
    if !rule_ok {
        return false;
    }
    if entry.group_field.is_empty() || alert.group.is_empty() {
        return alert
            .samples
            .iter()
            .any(|s| s.trim_end().ends_with(&entry.completing_message));
    }
    alert
        .group
        .iter()
        .any(|(field, value)| field == &entry.group_field && value == &entry.group_value)
}

/// The outcome of matching alerts against truth.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matching {
    /// For each truth entry, the index of the alert that matched it.
    pub matched: Vec<Option<usize>>,
    /// Alerts that matched an entry already matched.
    pub duplicates: Vec<usize>,
    /// Alerts that matched no entry.
    pub false_positives: Vec<usize>,
}

impl Matching {
    pub fn true_positives(&self) -> usize {
        self.matched.iter().filter(|m| m.is_some()).count()
    }

    /// Matched entries over all entries; None without entries.
    pub fn recall(&self) -> Option<f64> {
        (!self.matched.is_empty()).then(|| self.true_positives() as f64 / self.matched.len() as f64)
    }

    /// Matching alerts over all alerts; None without alerts.
    pub fn precision(&self) -> Option<f64> {
        let tp = self.true_positives();
        let all = tp + self.duplicates.len() + self.false_positives.len();
        (all > 0).then(|| tp as f64 / all as f64)
    }

    /// Recall over the entries of one scenario.
    pub fn recall_of(&self, truth: &[TruthEntry], scenario: &str) -> Option<f64> {
        let (mut n, mut hit) = (0usize, 0usize);
        for (entry, m) in truth.iter().zip(&self.matched) {
            if entry.scenario == scenario {
                n += 1;
                hit += usize::from(m.is_some());
            }
        }
        (n > 0).then(|| hit as f64 / n as f64)
    }
}

/// Bytes of a message's tail used to index single-event entries by sample.
const SUFFIX_KEY_BYTES: usize = 16;

fn suffix_key(text: &str) -> Option<&[u8]> {
    let b = text.trim_end().as_bytes();
    b.get(b.len().checked_sub(SUFFIX_KEY_BYTES)?..)
}

/// Which entries could match an alert: an exact superset of those for
/// which [`alert_matches`] holds, found through indexes so that matching
/// stays near-linear with thousands of scenarios and alerts.
struct Index<'a> {
    by_value: HashMap<&'a str, Vec<usize>>,
    by_suffix: HashMap<&'a [u8], Vec<usize>>,
    /// Entries whose message is shorter than the suffix key.
    short: Vec<usize>,
    /// Rank of each entry in completing order.
    rank: Vec<usize>,
}

impl<'a> Index<'a> {
    fn new(truth: &'a [TruthEntry]) -> Index<'a> {
        let mut order: Vec<usize> = (0..truth.len()).collect();
        order.sort_by_key(|&i| (truth[i].completing_index, i));
        let mut rank = vec![0; truth.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r;
        }
        let mut index = Index {
            by_value: HashMap::new(),
            by_suffix: HashMap::new(),
            short: Vec::new(),
            rank,
        };
        for (i, e) in truth.iter().enumerate() {
            index
                .by_value
                .entry(e.group_value.as_str())
                .or_default()
                .push(i);
            match suffix_key(&e.completing_message) {
                Some(key) => index.by_suffix.entry(key).or_default().push(i),
                None => index.short.push(i),
            }
        }
        index
    }

    fn candidates(&self, alert: &ObservedAlert, out: &mut Vec<usize>) {
        out.clear();
        for (_, value) in &alert.group {
            out.extend(self.by_value.get(value.as_str()).into_iter().flatten());
        }
        for sample in &alert.samples {
            if let Some(key) = suffix_key(sample) {
                out.extend(self.by_suffix.get(key).into_iter().flatten());
            }
        }
        out.extend(&self.short);
        out.sort_unstable_by_key(|&i| self.rank[i]);
        out.dedup();
    }
}

/// Matches `alerts` (in observed order) against `truth`.
pub fn match_alerts(truth: &[TruthEntry], alerts: &[ObservedAlert]) -> Matching {
    let mut matching = Matching {
        matched: vec![None; truth.len()],
        ..Matching::default()
    };
    // Entries are tried in completing order so that two instances with the
    // same rule and group (possible in hand-written truth) pair up in time.
    let index = Index::new(truth);
    let mut candidates = Vec::new();
    for (a, alert) in alerts.iter().enumerate() {
        let mut seen_matched = false;
        let mut claimed = false;
        index.candidates(alert, &mut candidates);
        for &t in &candidates {
            if !alert_matches(&truth[t], alert) {
                continue;
            }
            if matching.matched[t].is_some() {
                seen_matched = true;
                continue;
            }
            matching.matched[t] = Some(a);
            claimed = true;
            break;
        }
        if !claimed {
            if seen_matched {
                matching.duplicates.push(a);
            } else {
                matching.false_positives.push(a);
            }
        }
    }
    matching
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(scenario: &str, rule: &str, field: &str, value: &str, index: u64) -> TruthEntry {
        TruthEntry {
            scenario: scenario.into(),
            instance: 0,
            rule: rule.into(),
            group_field: field.into(),
            group_value: value.into(),
            completing_index: index,
            completing_time_ns: 0,
            completing_message: format!("FAILED su for root by {value}"),
            first_index: index,
        }
    }

    fn alert(title: &str, group: &[(&str, &str)], sample: &str) -> ObservedAlert {
        let group: serde_json::Map<String, Value> = group
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let line = serde_json::json!({
            "id": "x", "kind": "correlation",
            "rule": {"id": "r-1", "title": title, "level": "high"},
            "group": group, "count": 10, "latency_us": 42,
            "detected_at": "2026-12-03T14:10:22.175556218Z",
            "sample": [sample],
        });
        parse_alert(&line.to_string(), 7).unwrap()
    }

    #[test]
    fn parses_the_appliance_alert_shape_and_refuses_junk() {
        let a = alert(
            "SSH Brute Force From One Source",
            &[("source.ip", "203.0.113.7")],
            "l",
        );
        assert_eq!(a.rule_title, "SSH Brute Force From One Source");
        assert_eq!(
            a.group,
            vec![("source.ip".to_string(), "203.0.113.7".to_string())]
        );
        assert_eq!(a.latency_us, Some(42));
        assert_eq!(a.observed_ns, 7);
        assert_eq!(
            a.detected_ns,
            crate::timefmt::parse_rfc3339("2026-12-03T14:10:22.175556218Z")
        );
        assert!(a.detected_ns.is_some());
        for junk in ["", "not json", "[1,2]", "{\"id\":1}", "{\"rule\":3}"] {
            assert_eq!(parse_alert(junk, 0), None, "{junk}");
        }
    }

    #[test]
    fn precision_and_recall_with_false_positives_duplicates_and_misses() {
        let truth = vec![
            entry(
                "ssh_brute_force",
                "SSH Brute Force",
                "source.ip",
                "203.0.113.1",
                10,
            ),
            entry(
                "ssh_brute_force",
                "SSH Brute Force",
                "source.ip",
                "203.0.113.2",
                20,
            ),
            entry("sudo_failures", "Repeated Sudo", "user.name", "zoe1", 30),
            entry("su_failure", "Failed Su To Root", "", "uma1", 40),
        ];
        let alerts = vec![
            alert(
                "SSH Brute Force From One Source",
                &[("source.ip", "203.0.113.1")],
                "x",
            ),
            // A duplicate of the first.
            alert(
                "SSH Brute Force From One Source",
                &[("source.ip", "203.0.113.1")],
                "x",
            ),
            // Right group, wrong rule: a false positive.
            alert(
                "SSH User Enumeration From One Source",
                &[("source.ip", "203.0.113.2")],
                "x",
            ),
            // Single-event rule matched by its sample.
            alert(
                "Failed Su To Root",
                &[],
                "<86>Nov 30 00:00:01 h su[1]: FAILED su for root by uma1",
            ),
            // Background noise.
            alert(
                "Repeated Sudo Authentication Failures",
                &[("user.name", "alice")],
                "x",
            ),
        ];
        let m = match_alerts(&truth, &alerts);
        assert_eq!(m.matched, vec![Some(0), None, None, Some(3)]);
        assert_eq!(m.duplicates, vec![1]);
        assert_eq!(m.false_positives, vec![2, 4]);
        assert_eq!(m.recall(), Some(0.5));
        assert_eq!(m.precision(), Some(2.0 / 5.0));
        assert_eq!(m.recall_of(&truth, "ssh_brute_force"), Some(0.5));
        assert_eq!(m.recall_of(&truth, "su_failure"), Some(1.0));
        assert_eq!(m.recall_of(&truth, "port_scan"), None);
    }

    #[test]
    fn empty_sides_are_undefined_not_perfect() {
        let m = match_alerts(&[], &[]);
        assert_eq!((m.recall(), m.precision()), (None, None));
        let truth = vec![entry("su_failure", "Failed Su", "", "bob", 1)];
        let m = match_alerts(&truth, &[]);
        assert_eq!((m.recall(), m.precision()), (Some(0.0), None));
    }

    #[test]
    fn indexed_matching_agrees_with_trying_every_entry() {
        let mut truth = Vec::new();
        let mut alerts = Vec::new();
        for i in 0..200u64 {
            let ip = format!("203.0.113.{}", i % 50);
            truth.push(entry(
                "ssh_brute_force",
                "SSH Brute Force",
                "source.ip",
                &ip,
                i,
            ));
            let user = format!("u{i}");
            truth.push(entry("su_failure", "Failed Su", "", &user, 1_000 + i));
            alerts.push(alert(
                "SSH Brute Force From One Source",
                &[("source.ip", &ip)],
                "x",
            ));
            let line = format!("<86>Nov 30 00:00:01 h su[1]: FAILED su for root by {user}");
            alerts.push(alert("Failed Su To Root", &[], &line));
        }
        truth.push(entry("su_failure", "Failed Su", "", "b", 5_000));
        truth[400].completing_message = "x".into(); // shorter than the key
        alerts.push(alert("Failed Su To Root", &[], "x"));
        let m = match_alerts(&truth, &alerts);
        // The brute-force reference: every alert against every entry.
        let mut reference = vec![None; truth.len()];
        let mut order: Vec<usize> = (0..truth.len()).collect();
        order.sort_by_key(|&i| (truth[i].completing_index, i));
        for (a, al) in alerts.iter().enumerate() {
            if let Some(&t) = order
                .iter()
                .find(|&&t| reference[t].is_none() && alert_matches(&truth[t], al))
            {
                reference[t] = Some(a);
            }
        }
        assert_eq!(m.matched, reference);
        assert_eq!(m.recall(), Some(1.0));
    }

    #[test]
    fn rule_id_matches_exactly_and_titles_ignore_case() {
        let mut e = entry("x", "r-1", "source.ip", "1.2.3.4", 1);
        let a = alert("Anything", &[("source.ip", "1.2.3.4")], "");
        assert!(alert_matches(&e, &a));
        e.rule = "anyTHING".into();
        assert!(alert_matches(&e, &a));
        e.group_value = "1.2.3.5".into();
        assert!(!alert_matches(&e, &a));
    }
}
