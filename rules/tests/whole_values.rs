//! Whole-value tests (`field: value`, the commonest Sigma test) match a
//! value equal to one of theirs in any ASCII case and nothing else: values
//! of every length the word compare has a path for (0 to 20 bytes), each
//! byte's case flipped, one byte changed, non-ASCII bytes, lists, `|all`
//! and `|cased`, against equality as defined.

use shardwatch_rules::{Event, RuleSet, RuleSource, Scratch};

fn rule(id: usize, detection: &str) -> RuleSource {
    RuleSource {
        origin: format!("rule{id}.yml"),
        text: format!(
            "title: r{id}\nid: 00000000-0000-0000-0000-{id:012}\ndetection:\n{detection}\n"
        ),
    }
}

/// The rules' values, lowercase and mixed, of lengths 1 to 20.
fn values() -> Vec<String> {
    (1..=20)
        .map(|len| {
            "sUdoFailureAbcDEfgHij"
                .chars()
                .cycle()
                .skip(len)
                .take(len)
                .collect()
        })
        .collect()
}

#[test]
fn whole_values_match_in_any_ascii_case_and_nothing_else() {
    let values = values();
    let mut sources = Vec::new();
    // Rule 3k: one value; 3k+1: that value or the next; 3k+2: `|cased`.
    for (k, value) in values.iter().enumerate() {
        let next = &values[(k + 1) % values.len()];
        sources.push(rule(
            3 * k,
            &format!("  sel:\n    f: '{value}'\n  condition: sel"),
        ));
        sources.push(rule(
            3 * k + 1,
            &format!("  sel:\n    f:\n      - '{value}'\n      - '{next}'\n  condition: sel"),
        ));
        sources.push(rule(
            3 * k + 2,
            &format!("  sel:\n    f|cased: '{value}'\n  condition: sel"),
        ));
    }
    // `|all` of one value in two cases: the value must equal both.
    sources.push(rule(
        900,
        "  sel:\n    f|all:\n      - 'Failure'\n      - 'fAILURE'\n  condition: sel",
    ));
    let (rules, errors) = RuleSet::compile_lenient(&sources);
    assert!(errors.is_empty(), "{errors:?}");
    let mut scratch = Scratch::new();
    let mut matched = Vec::new();
    let mut check = |value: &[u8]| {
        let fields: [(&str, &[u8]); 1] = [("f", value)];
        let event = Event {
            time_ns: 1,
            fields: &fields,
            message: b"",
            raw: b"",
        };
        rules.evaluate(&event, &mut scratch, &mut matched);
        let mut want = Vec::new();
        for (k, v) in values.iter().enumerate() {
            let next = &values[(k + 1) % values.len()];
            if v.as_bytes().eq_ignore_ascii_case(value) {
                want.push(3 * k);
            }
            if v.as_bytes().eq_ignore_ascii_case(value)
                || next.as_bytes().eq_ignore_ascii_case(value)
            {
                want.push(3 * k + 1);
            }
            if v.as_bytes() == value {
                want.push(3 * k + 2);
            }
        }
        if value.eq_ignore_ascii_case(b"failure") {
            want.push(900);
        }
        let got: Vec<usize> = matched
            .iter()
            .map(|&i| {
                let id = &rules.detection(i as usize).id;
                id.rsplit('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(usize::MAX)
            })
            .collect();
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(value));
    };
    check(b"");
    check(b"failure");
    check(b"FAILURE");
    for value in &values {
        let bytes = value.as_bytes();
        check(bytes);
        check(value.to_ascii_uppercase().as_bytes());
        check(value.to_ascii_lowercase().as_bytes());
        for at in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            // Each byte's case flipped (a letter), then changed outright,
            // then made a non-ASCII byte whose low seven bits are the
            // letter's (a fold that ignored the high bit would take it).
            changed[at] ^= 0x20;
            check(&changed);
            changed[at] ^= 0x20 ^ 0x01;
            check(&changed);
            changed[at] = bytes[at] | 0x80;
            check(&changed);
        }
        // One byte longer and shorter.
        check(&[bytes, b"x"].concat());
        check(&bytes[..bytes.len() - 1]);
    }
}
