//! The stateful correlation kinds beyond event_count, end to end: rules
//! given with --rules, events over real sockets, and replay of the same
//! input raising the same alerts.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use shardwatch_tests::{
    read_jsonl, replay, ssh_failure, ssh_failure_shifted, syslog_stamp, temp_dir, Appliance,
};

const RULES: &str = r#"title: SSH Login Accepted
id: 6b0f0e1e-54a4-4a1b-9b9e-2f4c8b1d7a10
name: test_ssh_accepted
logsource:
    product: linux
    service: sshd
detection:
    selection:
        event.action: ssh_login
        event.outcome: success
    condition: selection
level: low
---
title: Password Spraying From One Source
id: 1d6c0b52-7c77-4d0e-8a6f-5b3c3e0f2a11
correlation:
    type: value_count
    rules:
        - shardwatch_sshd_failed_login
    group-by:
        - source.ip
    timespan: 5m
    condition:
        field: user.name
        gte: 5
level: high
---
title: SSH Success After Failures
id: 8e2a7d31-0c4b-4f5e-9d61-7a8b9c0d1e22
correlation:
    type: temporal_ordered
    rules:
        - shardwatch_sshd_failed_login
        - test_ssh_accepted
    group-by:
        - source.ip
    timespan: 5m
level: critical
"#;

fn titles(alerts: &[Value]) -> BTreeSet<(String, String)> {
    alerts
        .iter()
        .map(|a| {
            (
                a["rule"]["title"].as_str().unwrap_or_default().to_string(),
                a["group"]["source.ip"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// A 2-core node running the rules in `rules` beside the built-in pack.
fn start_with_rules(name: &str, rules: &std::path::Path) -> Appliance {
    Appliance::start(
        name,
        &[
            "--cores",
            "2",
            "--quiet",
            "--rules",
            rules.to_str().unwrap(),
        ],
    )
    .unwrap()
}

#[test]
fn value_count_and_temporal_ordered_fire_in_streaming_and_replay() {
    let dir = temp_dir("correlations");
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let mut lines = Vec::new();
    // Spraying: six users from one address (below the brute-force count).
    for (i, user) in ["alice", "bob", "carol", "dave", "erin", "frank"]
        .iter()
        .enumerate()
    {
        lines.push(ssh_failure(i as u32, "203.0.113.60", user));
    }
    // Another address: failures then a success, but only two users.
    lines.push(ssh_failure(10, "203.0.113.61", "root"));
    lines.push(ssh_failure(11, "203.0.113.61", "admin"));
    lines.push(format!(
        "<38>{} bastion sshd[4242]: Accepted password for admin from 203.0.113.61 port 40020 ssh2",
        syslog_stamp(20)
    ));
    // A success with no failures before it: no ordered alert.
    lines.push(format!(
        "<38>{} bastion sshd[4242]: Accepted password for alice from 198.51.100.62 port 40021 ssh2",
        syslog_stamp(21)
    ));
    let input = dir.join("input.log");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let app = start_with_rules("correlations", &rules);
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    stream.write_all(&std::fs::read(&input).unwrap()).unwrap();
    drop(stream);
    app.wait_for_alerts(2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    let streamed = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let expected: BTreeSet<(String, String)> = [
        ("Password Spraying From One Source", "203.0.113.60"),
        ("SSH Success After Failures", "203.0.113.61"),
    ]
    .iter()
    .map(|(t, ip)| (t.to_string(), ip.to_string()))
    .collect();
    assert_eq!(titles(&streamed), expected, "{streamed:#?}");
    let spray = streamed
        .iter()
        .find(|a| a["rule"]["title"] == "Password Spraying From One Source")
        .unwrap();
    assert_eq!(spray["count"], 5, "fires on the fifth distinct user");

    let out = std::process::Command::new(shardwatch_tests::binary())
        .arg("replay")
        .arg(&input)
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(out.status.success());
    let replayed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids = |alerts: &[Value]| -> BTreeSet<String> {
        alerts
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&streamed), ids(&replayed));
    // The plain replay helper (built-in rules only) sees neither.
    assert!(titles(&replay(&input).unwrap()).is_empty());
}

/// A closing condition (`lte`) can only be decided when its window ends,
/// which the node finds on its own clock, a second after the lines arrived
/// (the tick's expiry pass, run in the core's background queue shard by
/// shard): the source with two failures alerts once its one-second window
/// has passed, the one with three does not.
#[test]
fn a_closing_condition_fires_when_its_window_ends_on_the_clock() {
    let dir = temp_dir("closing");
    let rules = dir.join("rules.yml");
    std::fs::write(
        &rules,
        r#"title: Few Failed Logins
id: 2b7e4c1a-9d3f-4e5a-8b6c-1f0a2d3e4c5b
correlation:
    type: event_count
    rules:
        - shardwatch_sshd_failed_login
    group-by:
        - source.ip
    timespan: 1s
    condition:
        lte: 2
level: low
"#,
    )
    .unwrap();
    let app = start_with_rules("closing", &rules);
    let mut lines = Vec::new();
    for (second, ip, user) in [
        (0, "203.0.113.70", "alice"),
        (0, "203.0.113.70", "bob"),
        (0, "203.0.113.71", "alice"),
        (0, "203.0.113.71", "bob"),
        (0, "203.0.113.71", "carol"),
    ] {
        lines.push(ssh_failure(second, ip, user));
    }
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    stream
        .write_all((lines.join("\n") + "\n").as_bytes())
        .unwrap();
    drop(stream);
    app.wait_for_alerts(1, Duration::from_secs(20));
    // Another tick or two: the three-failure window must stay silent.
    std::thread::sleep(Duration::from_millis(1500));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    let streamed = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let expected: BTreeSet<(String, String)> =
        [("Few Failed Logins".to_string(), "203.0.113.70".to_string())].into();
    assert_eq!(titles(&streamed), expected, "{streamed:#?}");
    assert_eq!(streamed.len(), 1, "{streamed:#?}");
    assert_eq!(streamed[0]["count"], 2);
}

/// Senders whose clocks are five hours behind the node's (a device at
/// UTC-5 writing local time without a zone, or a forwarder delivering
/// late) and five hours ahead raise the built-in brute force like one
/// whose clock is right, with failures trickling in across the node's
/// one-second ticks: a group is kept on the node's clock from when its
/// events arrive. (Compared with the node's clock itself, the group of the
/// one behind was dropped at every tick and never reached ten.)
#[test]
fn senders_hours_off_the_nodes_clock_still_raise_the_brute_force() {
    let app = Appliance::start("skewed", &["--cores", "2", "--quiet"]).unwrap();
    let senders = [
        (-5 * 3600, "203.0.113.90"),
        (0, "203.0.113.91"),
        (5 * 3600, "203.0.113.92"),
    ];
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    for attempt in 0..10 {
        for (shift_s, ip) in senders {
            let line = ssh_failure_shifted(attempt, shift_s, ip, "root") + "\n";
            stream.write_all(line.as_bytes()).unwrap();
        }
        // Ten rounds 150 ms apart span at least one tick.
        std::thread::sleep(Duration::from_millis(150));
    }
    drop(stream);
    app.wait_for_alerts(3, Duration::from_secs(20));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    let streamed = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let brute: BTreeSet<(String, String)> = titles(&streamed)
        .into_iter()
        .filter(|(title, _)| title == "SSH Brute Force From One Source")
        .collect();
    let expected: BTreeSet<(String, String)> = senders
        .iter()
        .map(|(_, ip)| {
            (
                "SSH Brute Force From One Source".to_string(),
                ip.to_string(),
            )
        })
        .collect();
    assert_eq!(brute, expected, "{streamed:#?}");
}
