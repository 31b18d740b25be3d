//! Hot reload under load: rules added through the API, through the rules
//! directory and by a plain reload, while a brute force streams in. No
//! event may be lost or counted twice and correlation state of unchanged
//! rules must survive every swap.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use shardwatch_tests::{http, http_get, read_jsonl, ssh_failure, temp_dir, total, Appliance};

const MARKER_RULE: &str = "title: Reload marker\n\
id: 5a0f3c1e-9d7b-4c2a-8e61-0b1c2d3e4f50\n\
logsource:\n  product: linux\n\
detection:\n  keywords:\n    - 'reload-marker'\n  condition: keywords\n\
level: medium\n";

const DIR_RULE: &str = "title: Directory marker\n\
id: 7b1e4d2f-0a8c-4d3b-9f72-1c2d3e4f5a61\n\
logsource:\n  product: linux\n\
detection:\n  keywords:\n    - 'dir-marker'\n  condition: keywords\n\
level: medium\n";

fn generation(app: &Appliance) -> u64 {
    let (_, body) = http_get(app.api(), "/api/rules", None).unwrap();
    serde_json::from_str::<Value>(&body).unwrap()["generation"]
        .as_u64()
        .unwrap()
}

#[test]
fn reload_under_load_loses_and_doubles_nothing() {
    let dir = temp_dir("reload-rules");
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    let app = Appliance::start(
        "reload",
        &[
            "--cores",
            "2",
            "--quiet",
            "--rules",
            rules_dir.to_str().unwrap(),
        ],
    )
    .unwrap();
    let start_generation = generation(&app);

    // 2,000 failures from one address over one connection, a few seconds
    // long, all inside one 5-minute window of event time.
    let tcp = app.tcp();
    let sender = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(tcp).unwrap();
        for chunk in 0..40u32 {
            let mut payload = String::new();
            for i in 0..50u32 {
                let n = chunk * 50 + i;
                payload.push_str(&ssh_failure(n / 10, "203.0.113.80", "root"));
                payload.push('\n');
            }
            stream.write_all(payload.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(60));
        }
    });

    std::thread::sleep(Duration::from_millis(400));
    // A rule that does not compile is refused and changes nothing.
    let (status, body) = http(
        app.api(),
        "PUT",
        "/api/rules/broken",
        None,
        "title: x\ndetection: [",
    )
    .unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(generation(&app), start_generation);
    // A good rule through the API.
    let (status, body) = http(app.api(), "PUT", "/api/rules/marker", None, MARKER_RULE).unwrap();
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(400));
    // A plain reload.
    let (status, body) = http(app.api(), "POST", "/api/rules/reload", None, "").unwrap();
    assert_eq!(status, 200, "{body}");
    // A rule dropped into the watched directory.
    std::fs::write(rules_dir.join("dir.yml"), DIR_RULE).unwrap();
    sender.join().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while generation(&app) < start_generation + 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        generation(&app) >= start_generation + 3,
        "the directory change was picked up"
    );

    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    stream
        .write_all(b"<13>Nov 27 10:30:00 host app: reload-marker and dir-marker\n")
        .unwrap();
    drop(stream);
    app.wait_for_alerts(202, Duration::from_secs(20));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    assert_eq!(total(&stopped.stats, "events_parsed"), 2001);
    let alerts = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let brute: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["group"]["source.ip"] == "203.0.113.80")
        .collect();
    assert_eq!(
        brute.len(),
        200,
        "every tenth failure alerts, across all swaps"
    );
    assert!(brute.iter().all(|a| a["count"] == 10));
    let ids: std::collections::BTreeSet<&str> =
        brute.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 200, "no alert raised twice");
    for title in ["Reload marker", "Directory marker"] {
        assert_eq!(
            alerts
                .iter()
                .filter(|a| a["rule"]["title"] == title)
                .count(),
            1,
            "{title}"
        );
    }
    // The refused rule was never stored.
    assert!(!stopped.data_dir.join("rules.d/broken.yml").exists());
    assert!(stopped.data_dir.join("rules.d/marker.yml").exists());
    let _ = std::fs::remove_dir_all(dir);
}

/// A rule on a payload field whose log source is all of Linux may see
/// any line, so every payload is decoded while it is loaded. The node
/// says so after each reload (SIGHUP or through the API), the API's
/// reload report names the rule, and the reload that removes it turns
/// the header gate back on.
#[test]
fn a_reload_says_whether_lines_no_rule_can_see_are_decoded() {
    const OPEN_FIELD_RULE: &str = "title: Bob anywhere\n\
id: 2c4e6a80-1b3d-4f5a-9c7e-8d0f2a4b6c18\n\
logsource:\n  product: linux\n\
detection:\n  sel:\n    user.name: bob\n  condition: sel\n\
level: low\n";
    let dir = temp_dir("reload-gate");
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("marker.yml"), MARKER_RULE).unwrap();
    let config = dir.join("shardwatch.toml");
    // Reloads only on SIGHUP and through the API here.
    std::fs::write(&config, "[rules]\nwatch_interval_ms = 0\n").unwrap();
    let app = Appliance::start(
        "reload-gate",
        &[
            "--cores",
            "1",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules_dir.to_str().unwrap(),
        ],
    )
    .unwrap();
    let start_generation = generation(&app);
    std::fs::write(rules_dir.join("open.yml"), OPEN_FIELD_RULE).unwrap();
    let pid = libc::pid_t::try_from(app.pid()).unwrap();
    // SAFETY: kill only sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while generation(&app) == start_generation && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(generation(&app), start_generation + 1, "SIGHUP reloaded");
    // Through the API: the report names the rule, then, once it is
    // gone, nothing.
    let (status, body) = http(app.api(), "POST", "/api/rules/reload", None, "").unwrap();
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        report["report"]["decode_blocker"],
        "\"Bob anywhere\" (2c4e6a80-1b3d-4f5a-9c7e-8d0f2a4b6c18)",
        "{body}"
    );
    std::fs::remove_file(rules_dir.join("open.yml")).unwrap();
    let (status, body) = http(app.api(), "POST", "/api/rules/reload", None, "").unwrap();
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert!(report["report"]["decode_blocker"].is_null(), "{body}");
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok, "{:?}", stopped.stderr);
    let said = |needle: &str| stopped.stderr.iter().any(|line| line.contains(needle));
    // The keyword rule alone keeps the gate at start.
    assert!(
        said("lines no rule can see from their header and message are not decoded"),
        "{:?}",
        stopped.stderr
    );
    // Each reload's line ends with what is in force after it.
    let blocked = "every payload is decoded: rule \"Bob anywhere\" (2c4e6a80-1b3d-4f5a-9c7e-8d0f2a4b6c18) may see any line (its log source names no program or host, and it can match without a keyword in the message or a payload field whose name the line holds)";
    let gate_on = "lines no rule can see from their header and message are not decoded";
    for (reason, generation, says) in [
        ("SIGHUP", start_generation + 1, blocked),
        ("API: POST /api/rules/reload", start_generation + 2, blocked),
        ("API: POST /api/rules/reload", start_generation + 3, gate_on),
    ] {
        let reloaded = format!("rules reloaded ({reason}): generation {generation} with ");
        assert!(
            stopped
                .stderr
                .iter()
                .any(|line| line.contains(&reloaded) && line.ends_with(&format!("; {says}"))),
            "{reloaded} ... {says}: {:?}",
            stopped.stderr
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
