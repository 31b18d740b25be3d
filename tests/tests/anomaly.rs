//! Anomaly detectors through the real binary: a user from a new network
//! (first_seen) and a new log template on a host (rare_template, with the
//! per-core template miner turned on by the rule), in streaming and replay.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use shardwatch_tests::{read_jsonl, syslog_stamp, temp_dir, Appliance};

const RULES: &str = r#"title: User logs in from a new network
id: 5e0b8f2c-0d7a-4f0e-8c54-0b1d2b7a9c33
anomaly:
  type: first_seen
  group-by: [user.name]
  field: source.ip
  network_prefix: 24
  warmup: 10m
logsource: {product: linux, service: sshd}
detection:
  selection: {event.action: ssh_login, event.outcome: success}
  condition: selection
level: medium
---
title: New log template on an app host
id: 0b6f3d1e-8c2a-4d6b-9e0f-1a2b3c4d5e6f
anomaly:
  type: rare_template
  group-by: [host.name]
  warmup: 5m
detection:
  selection: {process.name: webapp}
  condition: selection
level: high
"#;

fn accepted(minute: u32, user: &str, ip: &str) -> String {
    format!(
        "<38>{} bastion sshd[7]: Accepted publickey for {user} from {ip} port 50000 ssh2",
        syslog_stamp(3600 + minute * 60)
    )
}

fn webapp(minute: u32, second: u32, text: &str) -> String {
    format!(
        "<14>{} web1 webapp[9]: {text}",
        syslog_stamp(3600 + minute * 60 + second)
    )
}

#[test]
fn first_seen_and_rare_template_fire_in_streaming_and_replay() {
    let dir = temp_dir("anomaly");
    let rules = dir.join("anomaly.yml");
    std::fs::write(&rules, RULES).unwrap();
    let mut lines = vec![
        accepted(0, "alice", "10.0.0.5"),
        accepted(1, "alice", "10.0.0.9"),
    ];
    for i in 0..20u32 {
        lines.push(webapp(
            i / 6,
            (i % 6) * 10,
            &format!("GET /index.html from 10.1.1.{i} took {} ms", i * 3),
        ));
    }
    // After the learning periods: a new network and a new template.
    lines.push(accepted(20, "alice", "10.0.0.7"));
    lines.push(accepted(21, "alice", "203.0.113.5"));
    lines.push(webapp(22, 0, "GET /index.html from 10.1.1.99 took 7 ms"));
    lines.push(webapp(
        23,
        0,
        "segfault in handler at 0x7f3a2b ; dumping core",
    ));
    let input = dir.join("input.log");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let app = Appliance::start(
        "anomaly",
        &[
            "--cores",
            "2",
            "--quiet",
            "--rules",
            rules.to_str().unwrap(),
        ],
    )
    .unwrap();
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    stream.write_all(&std::fs::read(&input).unwrap()).unwrap();
    drop(stream);
    app.wait_for_alerts(2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    let streamed = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let summary: BTreeSet<(String, String, String)> = streamed
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or_default().to_string(),
                a["rule"]["title"].as_str().unwrap_or_default().to_string(),
                a["anomaly"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        ("anomaly", "User logs in from a new network", "first_seen"),
        (
            "anomaly",
            "New log template on an app host",
            "rare_template",
        ),
    ]
    .iter()
    .map(|(k, t, a)| (k.to_string(), t.to_string(), a.to_string()))
    .collect();
    assert_eq!(summary, expected, "{streamed:#?}");
    let first_seen = streamed
        .iter()
        .find(|a| a["anomaly"]["type"] == "first_seen")
        .unwrap();
    assert_eq!(first_seen["group"]["user.name"], "alice");
    assert!(first_seen["sample"][0]
        .as_str()
        .unwrap()
        .contains("203.0.113.5"));
    let template = streamed
        .iter()
        .find(|a| a["anomaly"]["type"] == "rare_template")
        .unwrap();
    assert!(template["sample"][0].as_str().unwrap().contains("segfault"));

    let out = std::process::Command::new(shardwatch_tests::binary())
        .arg("replay")
        .arg(&input)
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(out.status.success());
    let replayed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let streamed_ids: BTreeSet<String> = streamed
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(streamed_ids, replayed);
}
