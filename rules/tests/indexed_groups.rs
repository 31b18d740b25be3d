//! A correlation's group key and counted value read from the index its
//! event was evaluated with are those its fields resolve to by name: under
//! per-rule aliases, alias groups and dotted leaves, with fields present,
//! absent or ambiguous, and when the scratch's index is of another event
//! (fields appended to the one evaluated, or another event's fields).

use shardwatch_rules::{Event, RuleSet, RuleSource, Scratch};

const RULES: &str = r#"title: failed login
id: 00000000-0000-0000-0000-000000000001
name: failed
detection:
    sel:
        event.outcome: failure
    condition: sel
---
title: denied packet
id: 00000000-0000-0000-0000-000000000002
name: denied
detection:
    sel:
        act: deny
    condition: sel
---
title: ports per source
id: 00000000-0000-0000-0000-000000000003
correlation:
    type: value_count
    rules:
        - failed
        - denied
    group-by:
        - ip
        - user.name
    aliases:
        ip:
            failed: source.ip
            denied: SRC
    timespan: 1m
    condition:
        field: port
        gte: 100
---
title: failures per host
id: 00000000-0000-0000-0000-000000000004
correlation:
    type: event_count
    rules:
        - failed
    group-by:
        - host.name
        - name
    timespan: 1m
    condition:
        gte: 100
"#;

/// The names an event's fields are drawn from: the detections' own, each
/// group field under its name, an alias-group name or a dotted leaf, and
/// the counted field.
const NAMES: &[&str] = &[
    "source.ip",
    "src_ip",
    "SRC",
    "SourceIp",
    "user.name",
    "x.user.name",
    "y.user.name",
    "host.name",
    "Computer",
    "hostname",
    "a.name",
    "port",
    "z.port",
    "other",
];

/// A small xorshift generator: the cases are the same on every run.
fn picker(mut state: u64) -> impl FnMut(usize) -> usize {
    move |below| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    }
}

/// Every group key and value `rules` gives `event` (which matched
/// `matched`), reading through `scratch`.
fn keys_and_values(
    rules: &RuleSet,
    matched: &[u32],
    event: &Event<'_>,
    scratch: &Scratch,
) -> Vec<(u32, Vec<u8>, Option<Vec<u8>>)> {
    let mut fed = Vec::new();
    rules.correlations_fed(matched, &mut fed);
    let mut key = Vec::new();
    fed.iter()
        .map(|&correlation| {
            rules.group_key_for(correlation, matched, event, scratch, &mut key);
            let value = rules
                .correlation_value(correlation, matched, event, scratch)
                .map(<[u8]>::to_vec);
            (correlation, key.clone(), value)
        })
        .collect()
}

fn event<'a>(fields: &'a [(&'a str, &'a [u8])]) -> Event<'a> {
    Event {
        time_ns: 1,
        fields,
        message: b"",
        raw: b"",
    }
}

#[test]
fn group_keys_and_values_read_from_the_index_are_those_resolved_by_name() {
    let (rules, errors) = RuleSet::compile_lenient(&[RuleSource {
        origin: "indexed.yml".into(),
        text: RULES.into(),
    }]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rules.correlation_count(), 2);
    let mut next = picker(0x9E37_79B9_7F4A_7C15);
    let mut scratch = Scratch::new();
    // Never indexes anything: every field is resolved by name through it.
    let by_name = Scratch::new();
    let mut matched = Vec::new();
    let (mut fed, mut appended_changed) = (0, 0);
    for case in 0..4_000 {
        let mut fields: Vec<(&str, Vec<u8>)> = Vec::new();
        match case % 3 {
            0 => fields.push(("event.outcome", b"failure".to_vec())),
            1 => fields.push(("act", b"deny".to_vec())),
            _ => {
                fields.push(("act", b"deny".to_vec()));
                fields.push(("event.outcome", b"failure".to_vec()));
            }
        }
        for _ in 0..next(7) {
            let name = NAMES[next(NAMES.len())];
            fields.push((name, format!("v{}", next(5)).into_bytes()));
        }
        // The field appended after evaluation: one a group or the value
        // reads.
        let late = NAMES[next(NAMES.len() - 1)];
        fields.push((late, b"late".to_vec()));
        let fields: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(name, value)| (*name, value.as_slice()))
            .collect();
        let all = event(&fields);
        let head = event(&fields[..fields.len() - 1]);

        // The event evaluated: the index is read.
        rules.evaluate(&head, &mut scratch, &mut matched);
        matched.sort_unstable();
        let indexed = keys_and_values(&rules, &matched, &head, &scratch);
        assert_eq!(
            indexed,
            keys_and_values(&rules, &matched, &head, &by_name),
            "{fields:?}"
        );
        fed += indexed.len();

        // The same fields and one more (the same slice start, longer):
        // the index, which lacks the last field, is not read.
        let with_late = keys_and_values(&rules, &matched, &all, &by_name);
        assert_eq!(
            keys_and_values(&rules, &matched, &all, &scratch),
            with_late,
            "{fields:?}"
        );
        appended_changed += usize::from(with_late != indexed);

        // Another event's fields, as many as the evaluated event's, in
        // another order: not read from this index either.
        let mut reversed = fields.clone();
        reversed.reverse();
        let other = event(&reversed[1..]);
        assert_eq!(
            keys_and_values(&rules, &matched, &other, &scratch),
            keys_and_values(&rules, &matched, &other, &by_name),
            "{reversed:?}"
        );
    }
    // The cases reach both correlations, and a late field changes what
    // many of them read.
    assert!(fed > 4_000, "{fed}");
    assert!(appended_changed > 400, "{appended_changed}");
}
