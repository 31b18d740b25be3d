//! Any text given as a rule file compiles into a rule set or is refused
//! with per-rule errors, never a panic; whatever compiles can evaluate
//! events and feed and advance correlation state without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardwatch_rules::{CompileOptions, CorrelationState, PayloadNaming, RuleSet, RuleSource};

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
    // A few aliases and made-up names, so that header parts and the
    // fields of detections without a log source are searched for by name
    // in the line (which `common::drive` writes from the event's fields).
    let options = CompileOptions {
        payload_naming: Some(PayloadNaming {
            aliases: vec![
                ("sproc".into(), "process.name".into()),
                ("SRC".into(), "source.ip".into()),
                ("dpt".into(), "DPT".into()),
            ],
            made_up: vec!["user.name".into(), "event.dataset".into()],
        }),
        ..CompileOptions::default()
    };
    let (rules, _errors) = RuleSet::compile_with(&[source], &options);
    let mut state = CorrelationState::new(64);
    common::drive(&rules, &mut state);
    assert!(state.check_invariants());
});
