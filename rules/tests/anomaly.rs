//! Properties of anomaly rules that golden files cannot show: determinism
//! of scores, warm-up, bounded state under an entity explosion, and
//! checkpointing (rkyv) of anomaly state mid-stream.

use shardwatch_rules::{
    ArchivedCorrelationState, CorrelationAlert, CorrelationKind, CorrelationState, Observation,
    RuleSet, RuleSource,
};

const S: i64 = 1_000_000_000;
const M: i64 = 60 * S;

const RULES: &str = r#"
title: base
id: base
name: base
detection:
    sel:
        event.action: x
    condition: sel
---
title: spike
id: spike
anomaly:
    type: baseline
    rules: [base]
    group-by: [host.name]
    bucket: 1m
    warmup: 5
    direction: both
    threshold: {zscore: 3, mad: 3}
---
title: seasonal
id: seasonal
anomaly:
    type: baseline
    rules: [base]
    group-by: [host.name]
    metric: sum:network.bytes
    bucket: 1h
    warmup: 2
    seasonality: hour_of_week
    direction: both
    threshold: {zscore: 3}
---
title: new user
id: new-user
anomaly:
    type: first_seen
    rules: [base]
    group-by: [host.name]
    field: user.name
    warmup: 10m
    values-max: 8
---
title: outlier
id: outlier
anomaly:
    type: outlier
    rules: [base]
    group-by: [host.name]
    field: network.bytes
    features: [count, sum, mean, distinct]
    bucket: 1m
    warmup: 5
    threshold: {distance: 3}
"#;

fn rules() -> RuleSet {
    let source = RuleSource {
        origin: "test".to_owned(),
        text: RULES.to_owned(),
    };
    match RuleSet::compile(&[source]) {
        Ok(rules) => rules,
        Err(errors) => panic!("{errors:?}"),
    }
}

/// The index of the correlation with this id.
fn index(rules: &RuleSet, id: &str) -> u32 {
    (0..rules.correlation_count())
        .find(|&i| rules.correlation(i).id == id)
        .map_or(u32::MAX, |i| i as u32)
}

/// A deterministic pseudo-random stream (xorshift) of observations over a
/// few hosts, with bursts and silences, fed to every anomaly rule, with
/// an advance every 100 events (200 s).
fn run(rules: &RuleSet, state: &mut CorrelationState, from: u64, to: u64) -> Vec<CorrelationAlert> {
    run_skewed(rules, state, from, to, 0)
}

/// [`run`] from senders whose clocks are `skew_ns` off the clock the
/// observations arrive on and `advance` is given.
fn run_skewed(
    rules: &RuleSet,
    state: &mut CorrelationState,
    from: u64,
    to: u64,
    skew_ns: i64,
) -> Vec<CorrelationAlert> {
    let mut out = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for step in 0..to {
        let r = next();
        if step < from {
            continue;
        }
        let clock_ns = step as i64 * 2 * S;
        let time_ns = clock_ns + skew_ns;
        let host = format!("h{}", r % 4);
        // Host h3 goes silent after 40 minutes; h1 bursts at minute 50.
        if host == "h3" && clock_ns > 40 * M {
            continue;
        }
        let repeat = if host == "h1" && (50 * M..51 * M).contains(&clock_ns) {
            20
        } else {
            1
        };
        let user = format!("u{}", (r >> 8) % 5);
        let bytes = format!("{}", 1000 + (r >> 16) % 500);
        let mut key = Vec::new();
        key.extend_from_slice(&(host.len() as u32).to_le_bytes());
        key.extend_from_slice(host.as_bytes());
        for correlation in 0..rules.correlation_count() as u32 {
            let meta = rules.correlation(correlation as usize);
            let value: Option<&[u8]> = match meta.kind {
                CorrelationKind::FirstSeen => Some(user.as_bytes()),
                CorrelationKind::Baseline if meta.value_fields.is_empty() => None,
                _ => Some(bytes.as_bytes()),
            };
            for _ in 0..repeat {
                let observation = Observation {
                    correlation,
                    group_key: &key,
                    input_mask: 1,
                    value,
                    time_ns,
                    arrival_ns: clock_ns,
                    raw: b"line",
                };
                state.observe_into(rules, &observation, &mut out);
            }
        }
        if step % 100 == 0 {
            state.advance(rules, clock_ns, &mut out);
        }
        assert!(state.check_invariants());
    }
    out
}

#[test]
fn same_input_gives_same_alerts_and_scores() {
    let rules = rules();
    let mut a = CorrelationState::new(1000);
    let mut b = CorrelationState::new(1000);
    let first = run(&rules, &mut a, 0, 3000);
    let second = run(&rules, &mut b, 0, 3000);
    assert!(!first.is_empty(), "the stream should raise anomalies");
    assert_eq!(first, second);
    assert_eq!(a, b);
    // Every anomaly alert has a reason; scores are finite.
    for alert in &first {
        assert!(alert.reason.is_some());
        assert!(alert.score.is_none_or(f64::is_finite));
    }
    // The burst of h1 and the silence of h3 were both seen.
    let spike_index = index(&rules, "spike");
    let spike = |alert: &&CorrelationAlert| alert.correlation == spike_index;
    assert!(first
        .iter()
        .filter(spike)
        .any(|a| a.score.is_some_and(|s| s > 0.0)));
    assert!(first
        .iter()
        .filter(spike)
        .any(|a| a.score.is_some_and(|s| s < 0.0)));
}

/// Senders five hours behind and ahead of the clock get the anomalies a
/// sender whose clock is right gets (the silence of h3 included, which
/// only `advance` can find), at their own event times: buckets close on
/// the arrival clock. (Compared with the clock itself, the sender behind
/// had its entities dropped at every advance and raised none.)
#[test]
fn senders_hours_off_the_clock_get_the_same_anomalies() {
    let rules = rules();
    let shape = |alerts: Vec<CorrelationAlert>, skew_ns: i64| {
        alerts
            .into_iter()
            .map(|a| {
                (
                    a.correlation,
                    a.group_key,
                    a.count,
                    a.score.map(f64::to_bits),
                    a.first_seen_ns - skew_ns,
                    a.last_seen_ns - skew_ns,
                )
            })
            .collect::<Vec<_>>()
    };
    let right = shape(run(&rules, &mut CorrelationState::new(1000), 0, 3000), 0);
    assert!(!right.is_empty());
    for skew_ns in [-5 * 60 * M, 5 * 60 * M] {
        let mut state = CorrelationState::new(1000);
        let skewed = shape(run_skewed(&rules, &mut state, 0, 3000, skew_ns), skew_ns);
        assert_eq!(skewed, right, "skew {skew_ns}");
    }
}

#[test]
fn warmup_is_respected() {
    let rules = rules();
    let mut state = CorrelationState::new(100);
    let mut out = Vec::new();
    let key = b"\x02\x00\x00\x00h9";
    let spike = index(&rules, "spike");
    let new_user = index(&rules, "new-user");
    // Four quiet buckets, then an enormous burst in the fifth: the rule
    // needs five closed buckets of history, so nothing fires.
    for minute in 0..5 {
        let count = if minute == 4 { 1000 } else { 2 };
        for i in 0..count {
            let observation = Observation {
                correlation: spike,
                group_key: key,
                input_mask: 1,
                value: None,
                time_ns: minute * M + i,
                arrival_ns: minute * M + i,
                raw: b"",
            };
            state.observe_into(&rules, &observation, &mut out);
        }
    }
    state.advance(&rules, 5 * M, &mut out);
    assert!(out.is_empty(), "alerted during warm-up: {out:?}");
    // First-seen: new users during the ten-minute learning period are
    // learned silently; the first new one after it alerts.
    for (time_ns, user) in [(0, "a"), (5 * M, "b"), (9 * M, "c"), (10 * M, "d")] {
        let observation = Observation {
            correlation: new_user,
            group_key: key,
            input_mask: 1,
            value: Some(user.as_bytes()),
            time_ns,
            arrival_ns: time_ns,
            raw: user.as_bytes(),
        };
        state.observe_into(&rules, &observation, &mut out);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].samples, vec![b"d".to_vec()]);
}

#[test]
fn entity_explosion_stays_at_the_cap() {
    let rules = rules();
    let cap = 1000usize;
    let mut state = CorrelationState::new(cap);
    let mut out = Vec::new();
    let keys = 1_000_000u64;
    let new_user = index(&rules, "new-user");
    for i in 0..keys {
        let key = i.to_le_bytes();
        let observation = Observation {
            correlation: new_user,
            group_key: &key,
            input_mask: 1,
            value: Some(b"u"),
            time_ns: i as i64,
            arrival_ns: i as i64,
            raw: b"",
        };
        state.observe_into(&rules, &observation, &mut out);
        debug_assert!(state.group_count() <= cap);
    }
    assert_eq!(state.group_count(), cap);
    assert_eq!(state.evicted_total(), keys - cap as u64);
    assert!(out.is_empty(), "every entity was still learning");
    assert!(state.check_invariants());
    // The survivors are the newest keys: the oldest were evicted.
    let observation = Observation {
        correlation: new_user,
        group_key: &(keys - 1).to_le_bytes(),
        input_mask: 1,
        value: Some(b"u"),
        time_ns: keys as i64,
        arrival_ns: keys as i64,
        raw: b"",
    };
    state.observe_into(&rules, &observation, &mut out);
    assert_eq!(state.evicted_total(), keys - cap as u64);
    // Values per entity are capped too, with counted evictions.
    let key = b"one";
    for user in 0..100u32 {
        let name = user.to_string();
        let observation = Observation {
            correlation: new_user,
            group_key: key,
            input_mask: 1,
            value: Some(name.as_bytes()),
            time_ns: 2 * keys as i64,
            arrival_ns: 2 * keys as i64,
            raw: b"",
        };
        state.observe_into(&rules, &observation, &mut out);
    }
    assert_eq!(state.anomaly_values_evicted_total(), 100 - 8);
}

#[test]
fn anomaly_state_round_trips_through_rkyv() {
    let rules = rules();
    let mut state = CorrelationState::new(1000);
    let before = run(&rules, &mut state, 0, 1500);
    assert!(state.group_count() > 0);
    let (archived, _) = match state.archive_into(Vec::new()) {
        Ok(archived) => archived,
        Err(error) => panic!("serialize: {error}"),
    };
    let mut bytes = rkyv::util::AlignedVec::<16>::new();
    bytes.extend_from_slice(&archived);
    if let Err(error) = rkyv::access::<ArchivedCorrelationState, rkyv::rancor::Error>(&bytes) {
        panic!("access: {error}");
    }
    let mut restored = match CorrelationState::restore(&bytes) {
        Ok(restored) => restored,
        Err(error) => panic!("restore: {error}"),
    };
    assert_eq!(restored, state);
    assert!(restored.check_invariants());
    // The restored state carries on exactly as the original.
    let a = run(&rules, &mut state, 1500, 3000);
    let b = run(&rules, &mut restored, 1500, 3000);
    assert_eq!(a, b);
    assert_eq!(state, restored);
    let _ = before;
}

#[test]
fn hostile_times_and_values_do_not_panic() {
    let rules = rules();
    let mut state = CorrelationState::new(16);
    let mut out = Vec::new();
    let values: [&[u8]; 6] = [
        b"1e308",
        b"-1e308",
        b"NaN",
        b"inf",
        b"\xff\xfe",
        b"10.0.0.1",
    ];
    for time_ns in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX, 0] {
        for correlation in 0..rules.correlation_count() as u32 {
            for value in values {
                let observation = Observation {
                    correlation,
                    group_key: b"k",
                    input_mask: 1,
                    value: Some(value),
                    time_ns,
                    arrival_ns: time_ns,
                    raw: value,
                };
                state.observe_into(&rules, &observation, &mut out);
            }
        }
        state.advance(&rules, time_ns, &mut out);
        assert!(state.check_invariants());
    }
    state.advance(&rules, i64::MIN, &mut out);
    state.advance(&rules, i64::MAX, &mut out);
    assert!(state.check_invariants());
    for alert in &out {
        assert!(alert.score.is_none_or(f64::is_finite));
    }
    // A rule reload that changes a definition resets its entities; one
    // that removes the rule drops them on the next advance.
    let changed = RuleSet::compile(&[RuleSource {
        origin: "test".to_owned(),
        text: RULES.replace("zscore: 3, mad: 3", "zscore: 4, mad: 3"),
    }]);
    let Ok(changed) = changed else {
        panic!("changed rules do not compile")
    };
    state.advance(&changed, i64::MAX, &mut out);
    assert!(state.check_invariants());
    let gone = match RuleSet::compile(&[RuleSource {
        origin: "test".to_owned(),
        text: "title: t\nid: t\ndetection:\n    s:\n        a: b\n    condition: s\n".to_owned(),
    }]) {
        Ok(rules) => rules,
        Err(errors) => panic!("{errors:?}"),
    };
    let mut state = CorrelationState::new(16);
    let _ = run(&rules, &mut state, 0, 200);
    assert!(state.group_count() > 0);
    // Like correlation groups, they go when the watermark passes their
    // deadline (the end of the open bucket, or the forget-after span).
    state.advance(&gone, 31 * 24 * 60 * M, &mut out);
    assert_eq!(state.group_count(), 0);
}

/// A host busy in office hours and quiet at night: with hour-of-week
/// seasonality the quiet nights are normal, without it every evening is a
/// drop.
#[test]
fn hour_of_week_seasonality_learns_the_daily_cycle() {
    const H: i64 = 60 * M;
    let text = |seasonality: &str| {
        format!(
            r#"
title: base
id: base
name: base
detection:
    sel:
        event.action: x
    condition: sel
---
title: quiet
id: quiet
anomaly:
    type: baseline
    rules: [base]
    group-by: [host.name]
    bucket: 1h
    warmup: 2
    seasonality: {seasonality}
    direction: down
    threshold: {{zscore: 3}}
"#
        )
    };
    let mut drops = Vec::new();
    for seasonality in ["hour_of_week", "none"] {
        let rules = match RuleSet::compile(&[RuleSource {
            origin: "test".to_owned(),
            text: text(seasonality),
        }]) {
            Ok(rules) => rules,
            Err(errors) => panic!("{errors:?}"),
        };
        let mut state = CorrelationState::new(16);
        let mut out = Vec::new();
        // Four weeks: 100 events an hour from 08:00 to 18:00, 1 an hour
        // otherwise (the epoch starts on a Thursday; that does not matter).
        for hour in 0..4 * 168i64 {
            let busy = (8..18).contains(&(hour % 24));
            let count = if busy { 100 } else { 1 };
            for i in 0..count {
                let observation = Observation {
                    correlation: 0,
                    group_key: b"h",
                    input_mask: 1,
                    value: None,
                    time_ns: hour * H + i * S,
                    arrival_ns: hour * H + i * S,
                    raw: b"",
                };
                state.observe_into(&rules, &observation, &mut out);
            }
            state.advance(&rules, (hour + 1) * H, &mut out);
        }
        assert!(state.check_invariants());
        drops.push(out.len());
    }
    assert_eq!(drops[0], 0, "seasonal model alerted on a normal night");
    assert!(drops[1] > 0, "flat model should see evenings as drops");
}
