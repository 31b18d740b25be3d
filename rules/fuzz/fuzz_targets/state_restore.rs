//! Any bytes given as a shard's archived correlation state are refused
//! with a reason or restored into a state that passes its invariants, and
//! a restored state can be observed into and advanced under a rule set of
//! every correlation kind without a panic; a restored state archives back
//! to one that restores equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_rules::{CorrelationState, RuleSet, RuleSource};
use std::sync::OnceLock;

#[path = "common.rs"]
mod common;

/// One correlation of each kind over one detection, grouped by user.
const KINDS: &str = r#"
title: Login
name: login
logsource: {product: linux}
detection:
    selection: {app: sshd}
    condition: selection
---
title: Count
name: count
correlation: {type: event_count, rules: [login], group-by: [user.name], timespan: 1m, condition: {gte: 2}}
---
title: Values
name: values
correlation: {type: value_count, rules: [login], group-by: [user.name], timespan: 1m, condition: {field: source.ip, gte: 2}}
---
title: Few
correlation: {type: value_count, rules: [login], group-by: [user.name], timespan: 1m, condition: {field: source.ip, lt: 3}}
---
title: Together
correlation: {type: temporal, rules: [login, count], group-by: [user.name], timespan: 1m}
---
title: Ordered
correlation: {type: temporal_ordered, rules: [login, values], group-by: [user.name], timespan: 1m}
"#;

fn rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        let source = RuleSource {
            origin: "fuzz:kinds".into(),
            text: KINDS.into(),
        };
        match RuleSet::compile(&[source]) {
            Ok(rules) => rules,
            Err(errors) => panic!("the fuzz rule set must compile: {errors:?}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(data.len());
    aligned.extend_from_slice(data);
    let Ok(mut state) = CorrelationState::restore(&aligned) else {
        return;
    };
    assert!(state.check_invariants());
    let (archived, len) = match state.archive_into(Vec::new()) {
        Ok(archived) => archived,
        Err(error) => panic!("a restored state must archive: {error}"),
    };
    assert_eq!(len, archived.len());
    let mut again = rkyv::util::AlignedVec::<16>::with_capacity(archived.len());
    again.extend_from_slice(&archived);
    match CorrelationState::restore(&again) {
        Ok(restored) => assert!(restored == state),
        Err(error) => panic!("a re-archived state must restore: {error}"),
    }
    common::drive(rules(), &mut state);
    assert!(state.check_invariants());
});
