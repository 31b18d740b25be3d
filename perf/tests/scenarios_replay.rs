//! The scenario rows against the real rules: a small corpus with every
//! scenario, replayed by `shardwatch replay --rules perf/rules/scenarios.yml`,
//! must raise exactly the alerts its ground truth names (recall 1.0 and
//! precision 1.0), and its background alone must raise nothing.
//!
//! The appliance is `SHARDWATCH_BIN` when set, else built with `cargo build
//! -p shardwatch --bin shardwatch` (a no-op when fresh). A scenario whose
//! rule reads fields the binary's parser does not extract yet (asked of
//! `shardwatch parse -` on the scenario's completing line, as the harness
//! does) is left out of the expected set and printed, the way the harness
//! reports it as `unsupported`; its lines must then raise nothing at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("perf/ sits inside the workspace")
        .to_path_buf()
}

fn appliance_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SHARDWATCH_BIN") {
        return PathBuf::from(bin);
    }
    let root = workspace_root();
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "shardwatch", "--bin", "shardwatch"])
        .current_dir(&root)
        .status()
        .expect("cargo can be run");
    assert!(status.success(), "the shardwatch binary does not build");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug").join("shardwatch")
}

fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/scenarios.yml")
}

fn scratch(label: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sw-perf-scenarios-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn gen(out: &Path, scenarios: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args([
            "gen",
            "--events",
            "6000",
            "--entities",
            "40",
            "--seed",
            "17",
        ])
        .args(["--scenarios", scenarios, "--start", "now", "--out"])
        .arg(out)
        .output()
        .expect("shardwatch-load runs");
    assert!(
        output.status.success(),
        "gen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn replay(binary: &Path, corpus: &Path) -> Vec<Value> {
    let output = Command::new(binary)
        .arg("replay")
        .arg(corpus)
        .arg("--rules")
        .arg(rules_file())
        .output()
        .expect("shardwatch replay runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "replay failed: {stderr}");
    assert!(
        !stderr.contains("rule not loaded"),
        "a scenario rule did not load: {stderr}"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("rule").is_some())
        .collect()
}

/// Fields the binary extracts from `line` (`shardwatch parse -`).
fn parsed_fields(binary: &Path, line: &str) -> Vec<String> {
    let mut child = Command::new(binary)
        .args(["parse", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("shardwatch parse runs");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write");
    }
    let output = child.wait_with_output().expect("parse exits");
    let value: Value = serde_json::from_slice(
        output
            .stdout
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    value["fields"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn matches(entry: &Value, alert: &Value) -> bool {
    let rule = entry["rule"].as_str().unwrap_or("");
    let id = alert["rule"]["id"].as_str().unwrap_or("");
    let title = alert["rule"]["title"].as_str().unwrap_or("");
    if !(id.eq_ignore_ascii_case(rule)
        || title
            .to_ascii_lowercase()
            .contains(&rule.to_ascii_lowercase()))
    {
        return false;
    }
    let field = entry["group_field"].as_str().unwrap_or("");
    let message = entry["completing_message"].as_str().unwrap_or("");
    match alert["group"]
        .as_object()
        .filter(|g| !field.is_empty() && !g.is_empty())
    {
        Some(group) => group.get(field).and_then(Value::as_str) == entry["group_value"].as_str(),
        None => alert["sample"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s.as_str().unwrap_or("").trim_end().ends_with(message)),
    }
}

/// Whether `alert` was raised by `line` (its last sample is that line).
fn completes_on(alert: &Value, line: &str) -> bool {
    alert["sample"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(Value::as_str)
        .is_some_and(|s| s.trim_end() == line.trim_end())
}

#[test]
fn every_scenario_fires_exactly_its_expected_rules() {
    let binary = appliance_binary();
    let dir = scratch("all");
    let corpus = dir.join("c.log");
    gen(
        &corpus,
        "ssh_brute_force=3,sudo_failures=3,su_failure=3,password_spraying=3,port_scan=3,lateral_movement=3",
    );
    let lines: Vec<String> = std::fs::read_to_string(&corpus)
        .expect("corpus")
        .lines()
        .map(str::to_string)
        .collect();
    let truth: Value =
        serde_json::from_slice(&std::fs::read(dir.join("c.log.truth.json")).expect("truth"))
            .expect("truth json");
    let all = truth["expected"].as_array().expect("expected").clone();
    // Each new scenario row is present with its ground truth.
    for name in ["password_spraying", "port_scan", "lateral_movement"] {
        assert_eq!(
            all.iter().filter(|e| e["scenario"] == name).count(),
            if name == "password_spraying" { 6 } else { 3 },
            "{name}"
        );
    }
    let index = |e: &Value| e["completing_index"].as_u64().unwrap_or(u64::MAX) as usize;
    // Leave out scenarios whose fields this binary's parser does not
    // extract, as the harness reports them `unsupported`.
    let mut unsupported: Vec<String> = Vec::new();
    let needs: [(&str, &[&str]); 3] = [
        ("password_spraying", &["source.ip", "user.name"]),
        ("port_scan", &["IN", "SRC", "DST", "DPT"]),
        ("lateral_movement", &["user.name"]),
    ];
    for (scenario, fields) in needs {
        let Some(entry) = all.iter().find(|e| e["scenario"] == scenario) else {
            continue;
        };
        let got = parsed_fields(&binary, &lines[index(entry)]);
        let missing: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| !got.iter().any(|g| g == f))
            .collect();
        if !missing.is_empty() {
            eprintln!(
                "note: {scenario} unsupported by {}: no {} extracted",
                binary.display(),
                missing.join(", ")
            );
            unsupported.push(scenario.to_string());
        }
    }
    let expected: Vec<&Value> = all
        .iter()
        .filter(|e| !unsupported.iter().any(|u| e["scenario"] == u.as_str()))
        .collect();
    let alerts = replay(&binary, &corpus);
    let mut taken = vec![false; alerts.len()];
    for entry in &expected {
        let hit = alerts
            .iter()
            .enumerate()
            .find(|(i, a)| !taken[*i] && matches(entry, a));
        let Some((i, alert)) = hit else {
            panic!("missed {entry}; alerts: {alerts:#?}");
        };
        taken[i] = true;
        assert!(
            completes_on(alert, &lines[index(entry)]),
            "{} fired on another line than its completing one ({}): {alert}",
            entry["scenario"],
            index(entry)
        );
    }
    let extra: Vec<&Value> = alerts
        .iter()
        .zip(&taken)
        .filter(|(_, t)| !**t)
        .map(|(a, _)| a)
        .collect();
    assert!(extra.is_empty(), "alerts beyond the truth: {extra:#?}");
    // recall = precision = 1.0 over the scored entries.
    assert_eq!(alerts.len(), expected.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn background_alone_fires_nothing_with_the_scenario_rules() {
    let binary = appliance_binary();
    let dir = scratch("background");
    let corpus = dir.join("bg.log");
    gen(&corpus, "none");
    let alerts = replay(&binary, &corpus);
    assert!(alerts.is_empty(), "background fired: {alerts:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_scenario_rules_check_clean() {
    let binary = appliance_binary();
    let output = Command::new(&binary)
        .args(["rules", "check"])
        .arg(rules_file())
        .output()
        .expect("rules check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "rules check failed:\n{stdout}");
    assert!(
        stdout.contains("0 unsupported, 0 errors"),
        "rules check:\n{stdout}"
    );
}
