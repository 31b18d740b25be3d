//! Data-driven tests: every folder under `tests/golden/` is one case.
//!
//! A case holds `rules.yml` (Sigma YAML, several documents allowed) and/or a
//! `config.json` (`{"builtin": true, "groups_max": N, "placeholders":
//! {"name": ["value", ..]}}`), an `events.jsonl`
//! and the `expected.jsonl` it must produce. Each `events.jsonl` line is
//! either an event, `{"time_ns": .., "fields": {..}, "message": "..",
//! "raw": ".."}` (`raw` defaults to the message), or a watermark,
//! `{"advance_ns": ..}`. The output lists rule errors first, then alerts in
//! the order the engine would raise them, then a summary of the state.
//! Anomaly rules (`anomaly:` documents) run through the same path; their
//! alert lines add `score` (rounded to 3 decimals) and `reason`.
//! `UPDATE_GOLDEN=1 cargo test -p shardwatch-rules --test golden` rewrites
//! the expected files; read every changed line before keeping it.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use shardwatch_rules::{
    event_alert_id, CompileOptions, CorrelationAlert, CorrelationState, Event, Observation,
    RuleSet, RuleSource, Scratch,
};

fn alert_line(rules: &RuleSet, alert: &CorrelationAlert) -> Value {
    let meta = rules.correlation(alert.correlation as usize);
    let group: serde_json::Map<String, Value> = rules
        .decode_group(alert.correlation, &alert.group_key)
        .into_iter()
        .map(|(field, value)| {
            let value = value.map_or(Value::Null, |v| {
                Value::String(String::from_utf8_lossy(v).into_owned())
            });
            (field.to_owned(), value)
        })
        .collect();
    let samples: Vec<String> = alert
        .samples
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let mut line = json!({
        "kind": "correlation",
        "rule": meta.id,
        "title": meta.title,
        "group": group,
        "count": alert.count,
        "first_seen_ns": alert.first_seen_ns,
        "last_seen_ns": alert.last_seen_ns,
        "id": alert.id,
        "samples": samples,
    });
    // Anomaly alerts carry a score and a reason; correlation lines stay
    // as they were. Scores are rounded so the files do not pin the last
    // bits of floating point.
    if let Some(score) = alert.score {
        line["score"] = json!((score * 1000.0).round() / 1000.0);
    }
    if let Some(reason) = &alert.reason {
        line["reason"] = json!(reason);
    }
    line
}

fn run_case(dir: &Path) -> Result<Vec<String>, String> {
    let config: Value = match fs::read_to_string(dir.join("config.json")) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("config.json: {e}"))?,
        Err(_) => json!({}),
    };
    let mut sources = Vec::new();
    if config["builtin"].as_bool() == Some(true) {
        sources.extend(RuleSet::builtin_sources());
    }
    if let Ok(text) = fs::read_to_string(dir.join("rules.yml")) {
        sources.push(RuleSource {
            origin: "rules.yml".to_owned(),
            text,
        });
    }
    let groups_max = config["groups_max"].as_u64().unwrap_or(1000) as usize;
    let mut options = CompileOptions::default();
    if let Some(placeholders) = config["placeholders"].as_object() {
        for (name, values) in placeholders {
            let values = values
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            options.placeholders.insert(name.clone(), values);
        }
    }
    let (rules, errors) = RuleSet::compile_with(&sources, &options);
    let mut lines = Vec::new();
    for error in &errors {
        lines.push(json!({
            "kind": "error",
            "origin": error.origin,
            "document": error.document,
            "rule": error.rule_id,
            "reason": error.kind.to_string(),
        }));
    }
    let mut state = CorrelationState::new(groups_max);
    let mut scratch = Scratch::new();
    let mut matched = Vec::new();
    let mut fed = Vec::new();
    let mut key = Vec::new();
    let mut closed = Vec::new();
    let events =
        fs::read_to_string(dir.join("events.jsonl")).map_err(|e| format!("events.jsonl: {e}"))?;
    for (number, line) in events.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let input: Value =
            serde_json::from_str(line).map_err(|e| format!("events.jsonl:{}: {e}", number + 1))?;
        if let Some(now_ns) = input["advance_ns"].as_i64() {
            closed.clear();
            state.advance(&rules, now_ns, &mut closed);
            lines.extend(closed.iter().map(|alert| alert_line(&rules, alert)));
            continue;
        }
        let time_ns = input["time_ns"]
            .as_i64()
            .ok_or_else(|| format!("events.jsonl:{}: no time_ns", number + 1))?;
        let owned: Vec<(String, Vec<u8>)> = input["fields"]
            .as_object()
            .map(|fields| {
                fields
                    .iter()
                    .map(|(name, value)| {
                        let text = match value {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        };
                        (name.clone(), text.into_bytes())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let fields: Vec<(&str, &[u8])> = owned
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        let message = input["message"].as_str().unwrap_or_default().as_bytes();
        let raw = input["raw"].as_str().map_or(message, str::as_bytes);
        let event = Event {
            time_ns,
            fields: &fields,
            message,
            raw,
        };
        rules.evaluate(&event, &mut scratch, &mut matched);
        for &detection in &matched {
            let meta = rules.detection(detection as usize);
            if meta.standalone {
                lines.push(json!({
                    "kind": "detection",
                    "rule": meta.id,
                    "title": meta.title,
                    "time_ns": time_ns,
                    "id": event_alert_id(&meta.id, raw, time_ns),
                }));
            }
        }
        rules.correlations_fed(&matched, &mut fed);
        for &correlation in &fed {
            rules.group_key_for(correlation, &matched, &event, &scratch, &mut key);
            let observation = Observation {
                correlation,
                group_key: &key,
                input_mask: rules.input_mask(correlation, &matched),
                value: rules.correlation_value(correlation, &matched, &event, &scratch),
                time_ns,
                arrival_ns: time_ns,
                raw,
            };
            closed.clear();
            state.observe_into(&rules, &observation, &mut closed);
            lines.extend(closed.iter().map(|alert| alert_line(&rules, alert)));
        }
        assert!(
            state.check_invariants(),
            "state invariants after line {}",
            number + 1
        );
    }
    lines.push(json!({
        "kind": "summary",
        "groups": state.group_count(),
        "evicted_total": state.evicted_total(),
    }));
    Ok(lines.into_iter().map(|line| line.to_string()).collect())
}

#[test]
fn golden_cases() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/golden exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        root.display()
    );
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let actual = match run_case(case) {
            Ok(lines) => lines.join("\n") + "\n",
            Err(error) => {
                failures.push(format!("{name}: {error}"));
                continue;
            }
        };
        let expected_path = case.join("expected.jsonl");
        if update {
            fs::write(&expected_path, &actual).expect("write expected.jsonl");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{name}: output differs\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    println!("{} golden cases", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
