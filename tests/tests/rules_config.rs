//! Rule compilation settings from the configuration file, end to end:
//! `[rules.placeholders]` fills `|expand` placeholders and
//! `[[rules.logsources]]` maps a log source the built-in table does not
//! know, in a running node and in `shardwatch rules check --config`.

use std::path::Path;
use std::process::Command;

use shardwatch_tests::{binary, ssh_failure, temp_dir, Appliance};

const RULES: &str = r#"title: Console login without MFA
id: 7c1e4a2b-5d3f-4e6a-9b8c-0d1e2f3a4b5c
logsource:
    product: examplecorp
    service: audit
detection:
    selection:
        eventName: ConsoleLogin
        additionalEventData.MFAUsed: 'No'
    condition: selection
level: high
---
title: Failed password for an admin account
id: 8d2f5b3c-6e4a-4f7b-8c9d-1e2f3a4b5c6d
logsource:
    product: linux
    service: sshd
detection:
    selection:
        user.name|expand: '%admins%'
    failed:
        - 'Failed password'
    condition: selection and failed
level: medium
"#;

const CONFIG: &str = r#"[rules.placeholders]
admins = ["alice", "root"]

[[rules.logsources]]
product = "examplecorp"
service = "audit"
conditions = [ { "process.name" = "examplecorp" } ]
"#;

const AUDIT: &str = r#"{"eventName":"ConsoleLogin","sourceIPAddress":"203.0.113.77","user":"bob","additionalEventData":{"MFAUsed":"No"}}"#;

fn rules_check(rules: &Path, config: Option<&Path>) -> (bool, String) {
    let mut command = Command::new(binary());
    command.args(["rules", "check"]).arg(rules);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let out = command.output().expect("shardwatch rules check runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn configured_placeholders_and_log_sources_reach_the_rules() {
    let dir = temp_dir("rules-config");
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let config = dir.join("shardwatch.toml");
    std::fs::write(&config, CONFIG).unwrap();

    // Without the configuration neither rule can load, each for its own
    // reason; with it both do.
    let (ok, text) = rules_check(&rules, None);
    assert!(!ok, "{text}");
    assert!(
        text.contains("logsource product=examplecorp category=- service=audit"),
        "{text}"
    );
    assert!(text.contains("placeholder:admins"), "{text}");
    let (ok, text) = rules_check(&rules, Some(&config));
    assert!(ok, "{text}");
    assert!(text.contains("total: 2 rules, 2 ok"), "{text}");

    // A mapping that would silently admit everything is refused with the
    // entry named.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rules.logsources]]\nproduct = \"examplecorp\"\nservice = \"audit\"\nconditions = [ {} ]\n",
    )
    .unwrap();
    let (ok, text) = rules_check(&rules, Some(&bad));
    assert!(!ok, "{text}");
    assert!(text.contains("rules.logsources[0]"), "{text}");

    let app = Appliance::start(
        "rules-config",
        &[
            "--cores",
            "2",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
    )
    .unwrap();
    let mut payload = String::new();
    // The mapped source (app name `examplecorp`) and the same record from
    // another app, which the mapping keeps from the rule.
    payload.push_str(&format!("<110>Nov 27 10:01:01 sso examplecorp: {AUDIT}\n"));
    payload.push_str(&format!("<110>Nov 27 10:01:02 sso replayer: {AUDIT}\n"));
    // An admin from the placeholder list, and a user who is not one.
    payload.push_str(&ssh_failure(1, "192.0.2.1", "root"));
    payload.push('\n');
    payload.push_str(&ssh_failure(2, "192.0.2.2", "mallory"));
    payload.push('\n');
    let (alerts, _) = app.send_tcp_then_stop(&payload, 2);
    let fired = |title: &str| {
        alerts
            .iter()
            .filter(|a| a["rule"]["title"] == title)
            .collect::<Vec<_>>()
    };
    let trail = fired("Console login without MFA");
    assert_eq!(trail.len(), 1, "{alerts:#?}");
    assert!(
        trail[0]["sample"][0]
            .as_str()
            .is_some_and(|line| line.contains(" examplecorp: ")),
        "{alerts:#?}"
    );
    let admins = fired("Failed password for an admin account");
    assert_eq!(admins.len(), 1, "{alerts:#?}");
    assert!(
        admins[0]["sample"][0]
            .as_str()
            .is_some_and(|line| line.contains("for root from")),
        "{alerts:#?}"
    );
}

/// The rule files the load harness passes to the node (its scenarios, its
/// anomaly scenarios, the alert storm) all load: a harness run with a rule
/// that failed to load would report misses, not an error.
#[test]
fn the_harness_rule_files_all_load() {
    let root = shardwatch_tests::workspace_root();
    for (file, rules) in [
        ("perf/rules/scenarios.yml", 7),
        ("perf/rules/anomaly.yml", 6),
        ("perf/storm/alert-storm.yml", 1),
    ] {
        let (ok, text) = rules_check(&root.join(file), None);
        assert!(ok, "{file}: {text}");
        assert!(
            text.contains(&format!(
                "total: {rules} rules, {rules} ok, 0 unsupported, 0 errors"
            )),
            "{file}: {text}"
        );
    }
}
