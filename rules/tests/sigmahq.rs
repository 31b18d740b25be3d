//! Loads every SigmaHQ rule in place with `compile_lenient` and checks that
//! nothing panics and that every file either loads or has a named reason.
//! The totals are printed (`--nocapture`) so reports can quote them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use shardwatch_rules::{Event, RuleErrorKind, RuleSet, RuleSource, Scratch};

fn collect_yml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_yml(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(path);
        }
    }
}

#[test]
fn sigmahq_rules_load_or_give_a_reason() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sigma/rules");
    let mut files = Vec::new();
    collect_yml(&root, &mut files);
    files.sort();
    if files.is_empty() {
        println!(
            "no SigmaHQ rules under {}; nothing to check",
            root.display()
        );
        return;
    }
    let mut loaded_files = 0usize;
    let mut loaded_rules = 0usize;
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    let mut invalid: BTreeMap<String, usize> = BTreeMap::new();
    let mut all_sources = Vec::with_capacity(files.len());
    for path in &files {
        let text = fs::read_to_string(path).unwrap_or_default();
        let source = RuleSource {
            origin: path.display().to_string(),
            text,
        };
        let (rules, errors) = RuleSet::compile_lenient(std::slice::from_ref(&source));
        all_sources.push(source);
        if errors.is_empty() {
            assert!(
                rules.detection_count() + rules.correlation_count() > 0,
                "{}",
                path.display()
            );
            loaded_files += 1;
        }
        loaded_rules += rules.detection_count() + rules.correlation_count();
        for error in errors {
            assert!(!error.to_string().is_empty());
            match error.kind {
                RuleErrorKind::Unsupported { feature } => {
                    *unsupported.entry(feature).or_default() += 1
                }
                other => {
                    let reason = match other {
                        RuleErrorKind::Yaml(_) => "yaml".to_owned(),
                        RuleErrorKind::Regex(_) => "regex".to_owned(),
                        RuleErrorKind::UnknownReference(_) => "unknown-reference".to_owned(),
                        RuleErrorKind::Duplicate(_) => "duplicate".to_owned(),
                        RuleErrorKind::Invalid(text) => format!("invalid: {text}"),
                        RuleErrorKind::Unsupported { .. } => unreachable!(),
                    };
                    *invalid.entry(reason).or_default() += 1;
                }
            }
        }
    }
    // All files together, as the engine would load a directory: duplicate
    // ids across files and cross-file references are checked here.
    let (together, together_errors) = RuleSet::compile_lenient(&all_sources);
    println!(
        "SigmaHQ: {} files, {} loaded without error, {} rules loaded",
        files.len(),
        loaded_files,
        loaded_rules
    );
    println!("unsupported by feature: {unsupported:#?}");
    println!("errors by reason: {invalid:#?}");
    println!(
        "loaded together: {} detections, {} correlations, {} errors",
        together.detection_count(),
        together.correlation_count(),
        together_errors.len()
    );
    assert!(loaded_files > 0);

    // Every loaded rule also runs: a few syslog-shaped events, including
    // non-UTF-8 bytes, through all of them at once must not panic.
    let fields: Vec<(&str, &[u8])> = vec![
        ("process.name", b"sshd"),
        ("Image", b"C:\\Windows\\System32\\cmd.exe"),
        (
            "CommandLine",
            b"cmd.exe /c powershell -enc SQBFAFgA \xff\xfe",
        ),
        ("source.ip", b"10.0.0.1"),
        ("User", b"\xc3\x28root"),
    ];
    let mut scratch = Scratch::new();
    let mut matched = Vec::new();
    for message in [&b""[..], b"Failed password for root", b"\xff\xfe\x00 ??*\\"] {
        let event = Event {
            time_ns: 0,
            fields: &fields,
            message,
            raw: message,
        };
        together.evaluate(&event, &mut scratch, &mut matched);
        assert!(matched
            .iter()
            .all(|&i| (i as usize) < together.detection_count()));
    }
    let empty = Event {
        time_ns: 0,
        fields: &[],
        message: b"",
        raw: b"",
    };
    together.evaluate(&empty, &mut scratch, &mut matched);
    let names: Vec<&str> = matched
        .iter()
        .map(|&i| together.detection(i as usize).title.as_str())
        .collect();
    println!("rules matching an empty event: {names:?}");
}
