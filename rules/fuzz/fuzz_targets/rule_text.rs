//! Any text given as a rule file compiles into a rule set or is refused
//! with per-rule errors, never a panic; whatever compiles can evaluate
//! events and feed and advance correlation state without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_rules::{
    CompileOptions, CorrelationState, PayloadSources, RuleSet, RuleSource, HEADER_FIELDS,
};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // Rule files are read as UTF-8 (a file that is not is refused before
    // compiling); lossy conversion keeps the rest of the input useful.
    let text = String::from_utf8_lossy(data).into_owned();
    let source = RuleSource {
        origin: "fuzz:rule".into(),
        text,
    };
    // Each header field's payload name is its own, as with no aliases.
    let options = CompileOptions {
        payload_sources: PayloadSources(HEADER_FIELDS.map(|name| Some(vec![name.to_string()]))),
        ..CompileOptions::default()
    };
    let (rules, _errors) = RuleSet::compile_with(&[source], &options);
    let mut state = CorrelationState::new(64);
    common::drive(&rules, &mut state);
    assert!(state.check_invariants());
});
