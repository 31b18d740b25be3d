//! What both targets drive a rule set and a state with: a few events of
//! the shapes the engine hands rules (Linux syslog fields, a Windows
//! event), and every correlation fed from them.

use shardwatch_rules::{CorrelationState, Event, Observation, RuleSet, Scratch, HEADER_FIELDS};

/// Linux (sshd, a shell) and Windows field sets with their messages.
const EVENTS: &[(&[(&str, &[u8])], &[u8])] = &[
    (
        &[
            ("host.name", b"host1"),
            ("process.name", b"sshd"),
            ("app", b"sshd"),
            ("user.name", b"root"),
            ("source.ip", b"198.51.100.10"),
        ],
        b"Failed password for root from 198.51.100.10 port 50022 ssh2",
    ),
    (
        &[
            ("Channel", b"Security"),
            ("EventID", b"4625"),
            ("Event.EventData.TargetUserName", b"admin"),
            ("CommandLine", b"cmd.exe /c whoami"),
        ],
        b"",
    ),
    (
        &[
            ("host.name", b"web-1"),
            ("process.name", b"bash"),
            ("process.pid", b"77"),
            ("user.name", b"bob"),
        ],
        b"bob ran History -c; cat /dev/null > ~/.bash_history",
    ),
];

/// The index of the Windows event in [`EVENTS`].
const WINDOWS_EVENT: usize = 1;

/// Evaluates every event under `rules` and feeds each correlation of the
/// rule set with each event's group key and value at increasing times
/// (arriving on a clock one sender is hours off), then advances past
/// every window. Must not panic, whatever the rules,
/// the prefiltered evaluation must equal evaluating every rule, and the
/// header gate must admit every line some rule matches.
pub fn drive(rules: &RuleSet, state: &mut CorrelationState) {
    let mut scratch = Scratch::new();
    let mut matched = Vec::new();
    let mut every = Vec::new();
    let mut alerts = Vec::new();
    let mut key = Vec::new();
    let mut by_name = Vec::new();
    // Never evaluates an event: fields are resolved by name with it.
    let unindexed = Scratch::new();
    for round in 0..3i64 {
        for (i, (fields, message)) in EVENTS.iter().enumerate() {
            let time_ns = (round * 10 + i as i64) * 1_000_000_000;
            let event = Event {
                time_ns,
                fields,
                message,
                raw: message,
            };
            rules.evaluate(&event, &mut scratch, &mut matched);
            // The prefilter (needles from literals and regexes) must never
            // change what matches.
            rules.evaluate_all(&event, &mut scratch, &mut every);
            assert_eq!(matched, every, "the prefilter changed the matches");
            // Nor may the header gate rule out a line a rule matches: the
            // header parts are the event's first fields of those names
            // (as the engine puts them), the message the keyword text.
            let header = HEADER_FIELDS.map(|name| {
                fields
                    .iter()
                    .take_while(|(field, _)| HEADER_FIELDS.contains(field))
                    .find(|(field, _)| *field == name)
                    .map(|(_, value)| *value)
            });
            // The line: the message, then the payload's fields as
            // key=value text (what a decoder would have read them from),
            // for a gate that looks for a missing header part's name.
            let leading = fields
                .iter()
                .take_while(|(field, _)| HEADER_FIELDS.contains(field))
                .count();
            let mut line = message.to_vec();
            for (name, value) in &fields[leading..] {
                line.extend_from_slice(format!(" {name}=").as_bytes());
                line.extend_from_slice(value);
            }
            assert!(
                every.is_empty() || rules.may_match_header(&header, message, &line, &mut scratch),
                "the header gate ruled out a matching line"
            );
            for correlation in 0..rules.correlation_count() as u32 {
                // Fields read from the evaluation's index are the fields
                // resolved by name.
                rules.group_key_for(correlation, &matched, &event, &scratch, &mut key);
                rules.group_key_for(correlation, &matched, &event, &unindexed, &mut by_name);
                assert_eq!(key, by_name, "the index read another group key");
                assert_eq!(
                    rules.correlation_value(correlation, &matched, &event, &scratch),
                    rules.correlation_value(correlation, &matched, &event, &unindexed),
                    "the index read another value"
                );
                rules.group_key(correlation, &event, &mut key);
                let observation = Observation {
                    correlation,
                    group_key: &key,
                    input_mask: rules.input_mask(correlation, &matched) | 1,
                    value: rules.correlation_value(correlation, &matched, &event, &scratch),
                    time_ns,
                    // The Windows host's clock is five hours ahead of the
                    // node's: its windows end on the arrival clock.
                    arrival_ns: time_ns - i64::from(i == WINDOWS_EVENT) * 5 * 3_600_000_000_000,
                    raw: message,
                };
                state.observe_into(rules, &observation, &mut alerts);
            }
        }
        state.advance(rules, (round * 10 + 5) * 1_000_000_000, &mut alerts);
    }
    state.advance(rules, i64::MAX, &mut alerts);
}
