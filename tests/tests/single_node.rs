//! End to end: the real binary on loopback with two cores.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use serde_json::Value;
use shardwatch_tests::{read_jsonl, replay, ssh_failure, syslog_stamp, temp_dir, total, Appliance};

const WAIT: Duration = Duration::from_secs(20);

fn brute_force_alerts(alerts: &[Value]) -> Vec<&Value> {
    alerts
        .iter()
        .filter(|a| {
            a["rule"]["title"]
                .as_str()
                .is_some_and(|t| t.to_lowercase().contains("brute"))
                && a["rule"]["title"]
                    .as_str()
                    .is_some_and(|t| t.contains("SSH"))
        })
        .collect()
}

/// Ten failures from one address alert once; nine from another do not.
fn brute_force_lines(attacker: &str, bystander: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..10 {
        lines.push(ssh_failure(i, attacker, "root"));
        if i < 9 {
            lines.push(ssh_failure(i, bystander, "admin"));
        }
    }
    lines
}

/// `dir/rules/`, holding one Linux rule that fires on lines containing
/// `keyword`.
fn keyword_rule_dir(
    dir: &std::path::Path,
    title: &str,
    id: &str,
    keyword: &str,
    level: &str,
) -> std::path::PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("keyword.yml"),
        format!(
            "title: {title}\nid: {id}\nstatus: experimental\n\
             logsource:\n  product: linux\n\
             detection:\n  keywords:\n    - '{keyword}'\n  condition: keywords\n\
             level: {level}\n"
        ),
    )
    .unwrap();
    rules
}

fn assert_one_brute_force(stopped: &shardwatch_tests::Stopped, attacker: &str) {
    assert!(
        stopped.exit_ok,
        "shardwatch must exit 0 on SIGTERM: {:?}",
        stopped.stderr
    );
    let file = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let alerts = brute_force_alerts(&file);
    assert_eq!(
        alerts.len(),
        1,
        "exactly one brute-force alert expected: {file:#?}"
    );
    let alert = alerts[0];
    assert_eq!(alert["group"]["source.ip"], attacker);
    assert_eq!(alert["count"], 10);
    assert_eq!(alert["sample"].as_array().map(|s| s.len()), Some(5));
    assert!(alert["latency_us"].as_i64().is_some());
    assert_eq!(alert["id"].as_str().map(|s| s.len()), Some(32));
    // stdout carries the same alerts as the file.
    assert_eq!(stopped.stdout_alerts, file);
}

#[test]
fn ssh_brute_force_over_udp() {
    let app = Appliance::start("udp", &["--cores", "2"]).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for line in brute_force_lines("203.0.113.7", "198.51.100.9") {
        socket.send_to(line.as_bytes(), app.udp()).unwrap();
    }
    let seen = app.wait_for_alerts(1, WAIT);
    assert!(!seen.is_empty(), "no alert within {WAIT:?}");
    let stopped = app.stop().unwrap();
    assert_one_brute_force(&stopped, "203.0.113.7");
    assert_eq!(total(&stopped.stats, "udp_datagrams"), 19);
    assert_eq!(total(&stopped.stats, "events_parsed"), 19);
}

#[test]
fn ssh_brute_force_over_tcp_lf_framing() {
    let app = Appliance::start("tcp-lf", &["--cores", "2"]).unwrap();
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    let mut payload = String::new();
    for line in brute_force_lines("203.0.113.8", "198.51.100.10") {
        payload.push_str(&line);
        payload.push('\n');
    }
    stream.write_all(payload.as_bytes()).unwrap();
    drop(stream);
    app.wait_for_alerts(1, WAIT);
    let stopped = app.stop().unwrap();
    assert_one_brute_force(&stopped, "203.0.113.8");
    assert_eq!(total(&stopped.stats, "tcp_frames"), 19);
}

#[test]
fn ssh_brute_force_over_tcp_octet_counting() {
    let app = Appliance::start("tcp-octet", &["--cores", "2"]).unwrap();
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    let mut payload = Vec::new();
    for line in brute_force_lines("203.0.113.9", "198.51.100.11") {
        payload.extend_from_slice(format!("{} {line}", line.len()).as_bytes());
    }
    // Dribble the bytes so frames straddle reads.
    for chunk in payload.chunks(37) {
        stream.write_all(chunk).unwrap();
        stream.flush().unwrap();
    }
    drop(stream);
    app.wait_for_alerts(1, WAIT);
    let stopped = app.stop().unwrap();
    assert_one_brute_force(&stopped, "203.0.113.9");
    assert_eq!(total(&stopped.stats, "tcp_frames"), 19);
}

#[test]
fn every_key_is_processed_on_its_one_owner_core() {
    let app = Appliance::start("owner", &["--cores", "2"]).unwrap();
    // Forty attackers, their lines interleaved over four connections, so
    // both cores read lines of every attacker.
    let attackers: Vec<String> = (1..=40).map(|i| format!("192.0.2.{i}")).collect();
    let mut streams: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(app.tcp()).unwrap())
        .collect();
    for round in 0..10u32 {
        for (k, ip) in attackers.iter().enumerate() {
            let line = ssh_failure(round, ip, "root") + "\n";
            streams[k % 4].write_all(line.as_bytes()).unwrap();
        }
        for s in &mut streams {
            s.flush().unwrap();
        }
        // Keep each attacker's events in order across connections.
        std::thread::sleep(Duration::from_millis(30));
    }
    drop(streams);
    app.wait_for_alerts(40, WAIT);
    let stopped = app.stop().unwrap();
    let file = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let alerts = brute_force_alerts(&file);
    assert_eq!(alerts.len(), 40, "one alert per attacker: {file:#?}");
    let mut by_ip = BTreeMap::new();
    for alert in &alerts {
        assert_eq!(
            alert["count"], 10,
            "all ten events of a key reached one shard: {alert}"
        );
        by_ip.insert(
            alert["group"]["source.ip"].as_str().unwrap().to_string(),
            (*alert).clone(),
        );
    }
    assert_eq!(by_ip.len(), 40);
    // Shards processed per core never overlap, and each alert came from
    // the core that processed its shard.
    let mut owner_of = BTreeMap::new();
    for core in &stopped.stats {
        for shard in core["shards_seen"].as_array().unwrap() {
            let previous = owner_of.insert(shard.as_u64().unwrap(), core["core"].as_u64().unwrap());
            assert!(
                previous.is_none(),
                "shard {shard} was processed on two cores"
            );
        }
    }
    let cores_used: BTreeSet<u64> = owner_of.values().copied().collect();
    assert_eq!(cores_used.len(), 2, "40 keys should spread over both cores");
    for alert in &alerts {
        let shard = alert["shard"].as_u64().unwrap();
        assert_eq!(Some(&alert["core"].as_u64().unwrap()), owner_of.get(&shard));
    }
    assert!(
        total(&stopped.stats, "routed_remote") > 0,
        "some records crossed cores"
    );
    // Their batches' buffers came back to the core that sent them and
    // carried its later batches (ten rounds, 30 ms apart).
    assert!(
        total(&stopped.stats, "route_buffers_reused") > 0,
        "routed buffers reused: {:?}",
        stopped.stats
    );
}

#[test]
fn malformed_lines_are_quarantined_with_reason() {
    let app = Appliance::start("quarantine", &["--cores", "2"]).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"<999>Nov 27 10:00:00 host app: bad pri", app.udp())
        .unwrap();
    socket
        .send_to(b"<34>1 not-a-timestamp host app - - - msg", app.udp())
        .unwrap();
    socket
        .send_to(
            &ssh_failure(1, "192.0.2.200", "bob").into_bytes(),
            app.udp(),
        )
        .unwrap();
    let quarantine = app.data_dir.join("quarantine.jsonl");
    let deadline = std::time::Instant::now() + WAIT;
    while read_jsonl(&quarantine).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = app.stop().unwrap();
    let records = read_jsonl(&quarantine);
    assert_eq!(records.len(), 2, "{records:#?}");
    let raws: BTreeSet<&str> = records.iter().map(|r| r["raw"].as_str().unwrap()).collect();
    assert!(raws.contains("<999>Nov 27 10:00:00 host app: bad pri"));
    for record in &records {
        assert!(!record["reason"].as_str().unwrap().is_empty());
        assert!(record["source"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(record["transport"], "udp");
    }
    let quarantined: u64 = stopped
        .stats
        .iter()
        .flat_map(|c| c["quarantined"].as_object().unwrap().values())
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(quarantined, 2);
    assert_eq!(total(&stopped.stats, "events_parsed"), 1);
    // `shardwatch quarantine` lists and filters them.
    let out = std::process::Command::new(shardwatch_tests::binary())
        .arg("quarantine")
        .arg("--data-dir")
        .arg(&stopped.data_dir)
        .args(["--reason", "bad_pri"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["raw"], "<999>Nov 27 10:00:00 host app: bad pri");
    // A last record torn by a crash or a full disk, cut inside a UTF-8
    // sequence, is skipped and reported; the others still list.
    let mut bytes = std::fs::read(&quarantine).unwrap();
    bytes.extend_from_slice(b"{\"received_ns\":1,\"raw\":\"\xef\xbf");
    std::fs::write(&quarantine, &bytes).unwrap();
    let out = std::process::Command::new(shardwatch_tests::binary())
        .arg("quarantine")
        .arg("--data-dir")
        .arg(&stopped.data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert!(stderr.contains("1 unreadable lines skipped"), "{stderr}");
}

#[test]
fn streaming_and_replay_raise_the_same_alerts() {
    let dir = temp_dir("replay-input");
    let mut lines = Vec::new();
    for i in 0..25u32 {
        lines.push(ssh_failure(i, "203.0.113.50", "root"));
        lines.push(ssh_failure(
            i,
            &format!("198.51.100.{}", 100 + i % 3),
            "guest",
        ));
        if i % 5 == 0 {
            lines.push(format!(
                "<85>{} bastion sudo: pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice",
                syslog_stamp(i)
            ));
            lines.push(format!(
                "<85>{} bastion su: FAILED su for root by mallory",
                syslog_stamp(i)
            ));
        }
    }
    let file = dir.join("input.log");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let app = Appliance::start("replay", &["--cores", "2"]).unwrap();
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    stream.write_all(&std::fs::read(&file).unwrap()).unwrap();
    drop(stream);
    let replayed = replay(&file).unwrap();
    assert!(replayed.len() >= 3, "replay should alert: {replayed:#?}");
    app.wait_for_alerts(replayed.len(), WAIT);
    let stopped = app.stop().unwrap();
    let streamed = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let key = |a: &Value| {
        (
            a["id"].as_str().unwrap_or_default().to_string(),
            a["rule"]["id"].as_str().unwrap_or_default().to_string(),
            a["group"].to_string(),
            a["count"].as_u64(),
            a["first_seen"].as_str().unwrap_or_default().to_string(),
        )
    };
    let streamed: BTreeSet<_> = streamed.iter().map(key).collect();
    let replayed: BTreeSet<_> = replayed.iter().map(key).collect();
    assert_eq!(streamed, replayed);
}

#[test]
fn a_thousand_concurrent_tcp_connections() {
    // The test process itself needs more than the default 1024 descriptors.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(8192);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let app = Appliance::start("conns", &["--cores", "2", "--quiet"]).unwrap();
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(TcpStream::connect(app.tcp()).unwrap());
    }
    // Every connection is open at once; now each sends one line.
    for (i, stream) in streams.iter_mut().enumerate() {
        let line = format!("<13>Nov 27 10:00:00 host{i} app: hello from connection {i}\n");
        stream.write_all(line.as_bytes()).unwrap();
    }
    // A connection still in the listen backlog at SIGTERM is never
    // accepted: wait until every connection is accepted and its line parsed.
    shardwatch_tests::poll(WAIT, Duration::from_millis(50), || {
        let page = app.metrics();
        let sum = |name: &str| shardwatch_tests::metric_sum(&page, name, "");
        let accepted = sum("shardwatch_tcp_connections_accepted_total");
        let parsed = sum("shardwatch_events_parsed_total");
        ((), accepted == 1000.0 && parsed == 1000.0)
    });
    drop(streams);
    std::thread::sleep(Duration::from_millis(300));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    assert_eq!(total(&stopped.stats, "tcp_connections_accepted"), 1000);
    assert_eq!(total(&stopped.stats, "events_parsed"), 1000);
}

#[test]
fn connections_still_queued_at_stop_are_read_not_reset() {
    // The node is paused (SIGSTOP) while the connections are made, so the
    // kernel completes their handshakes and holds their lines in the
    // listeners' accept queues, unaccepted, when SIGTERM arrives.
    let app = Appliance::start("queued", &["--cores", "2", "--quiet"]).unwrap();
    let pid = app.pid() as libc::pid_t;
    // SAFETY: signals to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let mut streams = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(app.tcp()).unwrap();
        let line = format!("<13>Nov 27 10:00:00 host{i} app: queued connection {i}\n");
        stream.write_all(line.as_bytes()).unwrap();
        streams.push(stream);
    }
    // SIGTERM (sent by `stop`) stays pending while the node is paused; it
    // is delivered when SIGCONT resumes it.
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    let stopped = app.stop().unwrap();
    resume.join().unwrap();
    drop(streams);
    assert!(stopped.exit_ok);
    assert_eq!(total(&stopped.stats, "tcp_connections_accepted"), 200);
    assert_eq!(total(&stopped.stats, "events_parsed"), 200);
}

#[test]
fn config_file_and_extra_rules_are_honoured() {
    let dir = temp_dir("config");
    let rules = keyword_rule_dir(
        &dir,
        "Evil marker seen",
        "0c1f5a52-3a53-4a55-9a86-4e0f1d3f8e01",
        "evil-marker",
        "high",
    );
    let config = dir.join("shardwatch.toml");
    std::fs::write(
        &config,
        "[engine]\nshards = 256\n\n[output]\nstdout = false\n",
    )
    .unwrap();
    let app = Appliance::start(
        "config",
        &[
            "--cores",
            "2",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
    )
    .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(
            b"<13>Nov 27 10:00:00 host app: this carries the evil-marker token",
            app.udp(),
        )
        .unwrap();
    for line in brute_force_lines("203.0.113.99", "198.51.100.99") {
        socket.send_to(line.as_bytes(), app.udp()).unwrap();
    }
    app.wait_for_alerts(2, WAIT);
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    assert!(
        stopped.stdout_alerts.is_empty(),
        "output.stdout = false in the file"
    );
    let alerts = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let marker: Vec<_> = alerts
        .iter()
        .filter(|a| a["rule"]["title"] == "Evil marker seen")
        .collect();
    assert_eq!(marker.len(), 1, "{alerts:#?}");
    assert_eq!(marker[0]["kind"], "detection");
    let brute = brute_force_alerts(&alerts);
    assert_eq!(brute.len(), 1);
    assert!(
        brute[0]["shard"].as_u64().unwrap() < 256,
        "engine.shards = 256 in the file"
    );
}

#[test]
fn suppression_folds_repeats_and_publishes_the_final_count() {
    let dir = temp_dir("suppress");
    let config = dir.join("shardwatch.toml");
    std::fs::write(&config, "[rules]\nsuppress_window_ms = 600000\n").unwrap();
    let app = Appliance::start(
        "suppress",
        &[
            "--cores",
            "2",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .unwrap();
    // Thirty failures: three brute-force windows, all within ten minutes.
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    let mut payload = String::new();
    for i in 0..30 {
        payload.push_str(&ssh_failure(i, "203.0.113.90", "root"));
        payload.push('\n');
    }
    stream.write_all(payload.as_bytes()).unwrap();
    drop(stream);
    app.wait_for_alerts(1, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let metrics = app.metrics();
    let stopped = app.stop().unwrap();
    let alerts = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let brute = brute_force_alerts(&alerts);
    assert_eq!(brute.len(), 1, "repeats fold into the first: {alerts:#?}");
    assert_eq!(total(&stopped.stats, "alerts_suppressed"), 2);
    assert_eq!(
        shardwatch_tests::metric_sum(&metrics, "shardwatch_alerts_suppressed_total", ""),
        2.0
    );
    // The window (10 min of event time) has not closed, so no update yet:
    // the update record is checked in replay, where event time runs on.
    let input = dir.join("input.log");
    let mut lines: Vec<String> = (0..30)
        .map(|i| ssh_failure(i, "203.0.113.90", "root"))
        .collect();
    // An unrelated line 20 minutes later closes the window.
    lines.push(format!("<13>{} host app: later", syslog_stamp(40 * 60)));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = std::process::Command::new(shardwatch_tests::binary())
        .args([
            "replay",
            input.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let replayed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replayed.len(), 2, "{replayed:#?}");
    assert_eq!(
        replayed[0]["id"], brute[0]["id"],
        "same first alert as streaming"
    );
    assert_eq!(replayed[1]["kind"], "update");
    assert_eq!(replayed[1]["id"], brute[0]["id"]);
    assert_eq!(replayed[1]["count"], 3);
}

/// An alert raised by the first lines of a large read goes out before the
/// rest of the read is processed (the lines so far journaled first), and
/// is counted as such. Each try is one write of a brute force followed by
/// ~190 KB of other lines; a read of it holds the brute force and lines
/// after it unless the node happened to read while the write had only
/// just begun, so one try of three suffices.
#[test]
fn an_alert_goes_out_before_the_rest_of_a_large_read() {
    let app = Appliance::start("mid-read", &["--cores", "1", "--quiet"]).unwrap();
    let mut sent = 0u64;
    for attempt in 0..3u32 {
        let mut stream = TcpStream::connect(app.tcp()).unwrap();
        let mut payload = String::new();
        for line in brute_force_lines(
            &format!("203.0.113.{}", 30 + attempt),
            &format!("198.51.100.{}", 30 + attempt),
        ) {
            payload.push_str(&line);
            payload.push('\n');
        }
        for i in 0..3_000 {
            payload.push_str(&format!(
                "<13>{} web-1 app[1]: request {i} served in 3 ms\n",
                syslog_stamp(i % 60)
            ));
        }
        stream.write_all(payload.as_bytes()).unwrap();
        drop(stream);
        sent += payload.matches('\n').count() as u64;
        let seen = app.wait_for_alerts(attempt as usize + 1, WAIT);
        assert!(seen.len() > attempt as usize, "no alert within {WAIT:?}");
        let early = shardwatch_tests::metric_sum(
            &app.metrics(),
            "shardwatch_alerts_sent_mid_read_total",
            "",
        );
        if early >= 1.0 {
            break;
        }
    }
    let page = app.metrics();
    let early = shardwatch_tests::metric_sum(&page, "shardwatch_alerts_sent_mid_read_total", "");
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok, "{:?}", stopped.stderr);
    assert!(
        early >= 1.0,
        "no alert was sent before the rest of its read in three tries"
    );
    // Nothing was lost or repeated by cutting the reads.
    assert_eq!(total(&stopped.stats, "tcp_frames"), sent);
    let file = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let brute = brute_force_alerts(&file);
    assert!(!brute.is_empty() && brute.len() <= 3, "{file:#?}");
    let ids: BTreeSet<_> = brute.iter().map(|a| a["id"].as_str()).collect();
    assert_eq!(ids.len(), brute.len(), "an alert repeated: {file:#?}");
}

/// A rule that fires on every line of a large read does not cut the read
/// at every line: cuts for alerts are at least `ALERT_CUT_LINES_MIN` (256,
/// engine/src/server.rs) lines apart, since each costs a journal commit
/// and a wake-up of the alert writer. Every alert still goes out, once.
#[test]
fn an_alert_storm_cuts_a_read_only_every_few_hundred_lines() {
    const ALERT_CUT_LINES_MIN: usize = 256;
    let dir = temp_dir("alert-storm");
    let rules = keyword_rule_dir(
        &dir,
        "Storm marker seen",
        "7d2e4b61-8c3f-4a9e-b5d1-2f6a8c0e4b93",
        "storm-marker",
        "low",
    );
    let app = Appliance::start(
        "alert-storm",
        &[
            "--cores",
            "1",
            "--quiet",
            "--rules",
            rules.to_str().unwrap(),
        ],
    )
    .unwrap();
    let lines: usize = 3_000;
    let mut payload = String::new();
    for i in 0..lines as u32 {
        payload.push_str(&format!(
            "<13>{} web-1 app[1]: request {i} carries the storm-marker token\n",
            syslog_stamp(i % 60)
        ));
    }
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    stream.write_all(payload.as_bytes()).unwrap();
    drop(stream);
    app.wait_for_alerts(lines, WAIT);
    let page = app.metrics();
    let cuts = shardwatch_tests::metric_sum(&page, "shardwatch_alerts_sent_mid_read_total", "");
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok, "{:?}", stopped.stderr);
    assert_eq!(total(&stopped.stats, "tcp_frames"), lines as u64);
    // The first alert line cuts at once, then one in every 256 at most.
    assert!(
        cuts <= (1 + lines / ALERT_CUT_LINES_MIN) as f64,
        "{cuts} cuts for {lines} alert lines"
    );
    let alerts = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let storm: BTreeSet<_> = alerts
        .iter()
        .filter(|a| a["rule"]["title"] == "Storm marker seen")
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(storm.len(), lines, "one alert per line, none repeated");
}

/// Against the built-in pack (every rule reads sshd, sudo or su lines),
/// the node finishes lines of other programs from their header without
/// decoding them, and still raises what the sshd lines complete; with
/// `ingest.decode_all_payloads` it decodes them all, to the same alerts.
/// A keyword rule whose log source is all of Linux keeps the gate: only
/// lines whose message holds its keyword (in any case) are decoded too,
/// and each raises its alert. FortiGate and CEF lines without a program
/// name are skipped as well: nothing in them could name one.
#[test]
fn lines_no_rule_can_see_are_not_decoded_and_alerts_are_the_same() {
    let mut payload = String::new();
    for i in 0..100u32 {
        payload.push_str(&format!(
            "<189>{} fgt devname=\"fgt\" srcip=10.0.1.{} user=\"root\" action=\"accept\"\n",
            syslog_stamp(i % 60),
            i % 250
        ));
        payload.push_str(&format!(
            "<134>{} fw-02 CEF:0|Palo Alto Networks|PAN-OS|10.2.4|TRAFFIC|end|3|src=10.0.1.{} suser=corp\\\\root act=allow\n",
            syslog_stamp(i % 60),
            i % 250
        ));
    }
    for i in 0..200u32 {
        payload.push_str(&format!(
            "<78>{} web-1 CRON[{i}]: (root) CMD (run-parts /etc/cron.hourly)\n",
            syslog_stamp(i % 60)
        ));
        let path = if i % 40 == 7 {
            format!("/Gate-Marker/{i}")
        } else {
            format!("/p{i}")
        };
        payload.push_str(&format!(
            "<14>{} web-1 nginx: {{\"status\":200,\"path\":\"{path}\"}}\n",
            syslog_stamp(i % 60)
        ));
    }
    let markers = 5;
    let brute_lines = brute_force_lines("203.0.113.77", "198.51.100.77");
    for line in &brute_lines {
        payload.push_str(line);
        payload.push('\n');
    }
    let dir = temp_dir("gate-keyword");
    let keyword_rules = keyword_rule_dir(
        &dir,
        "Gate marker seen",
        "3a9d6c20-5e7b-4f14-8d2a-9c1b0e6f4a72",
        "gate-marker",
        "medium",
    );
    let on = "lines no rule can see from their header and message are not decoded";
    let mut ids = Vec::new();
    for (name, toml, rules, skipped, says) in [
        ("gate-on", "", None, true, on),
        (
            "gate-off",
            "[ingest]\ndecode_all_payloads = true\n",
            None,
            false,
            "every payload is decoded (ingest.decode_all_payloads)",
        ),
        ("gate-keyword", "", Some(&keyword_rules), true, on),
    ] {
        let mut args = vec!["--cores", "1", "--quiet"];
        if let Some(rules) = rules {
            args.extend(["--rules", rules.to_str().unwrap()]);
        }
        let expected = if rules.is_some() { 1 + markers } else { 1 };
        let app = Appliance::start_configured(name, toml, &args).unwrap();
        let (alerts, stopped) = app.send_tcp_then_stop(&payload, expected);
        assert!(
            stopped.stderr.iter().any(|line| line.contains(says)),
            "{:?}",
            stopped.stderr
        );
        let without = total(&stopped.stats, "lines_without_payload");
        assert_eq!(
            total(&stopped.stats, "events_parsed"),
            600 + brute_lines.len() as u64
        );
        if skipped {
            // One in 64 of each source's events is decoded for its
            // schema ([schemas] sample_every); with the keyword rule, the
            // marker lines are too.
            assert!(without >= 560, "{without} of 600 lines without payload");
        } else {
            assert_eq!(without, 0);
        }
        let marked = alerts
            .iter()
            .filter(|a| a["rule"]["title"] == "Gate marker seen")
            .count();
        assert_eq!(marked, expected - 1, "{alerts:#?}");
        let brute = brute_force_alerts(&alerts);
        assert_eq!(brute.len(), 1, "{alerts:#?}");
        ids.push(brute[0]["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "the same alert either way");
    assert_eq!(ids[0], ids[2], "the same alert with the keyword rule");
}

/// A one-core node started with `toml`, and a TCP connection to it that
/// sends each write at once.
fn one_core_node(name: &str, toml: &str) -> (Appliance, TcpStream) {
    let app = Appliance::start_configured(name, toml, &["--cores", "1", "--quiet"]).unwrap();
    let stream = TcpStream::connect(app.tcp()).unwrap();
    stream.set_nodelay(true).unwrap();
    (app, stream)
}

/// Journal commits (read-process-commit cycles) for `lines` lines sent
/// over TCP one every `gap`, by a node with `read_coalesce_us`.
fn commits_for_trickled_lines(coalesce_us: u64, lines: u32, gap: Duration) -> f64 {
    let (app, mut stream) = one_core_node(
        &format!("coalesce-{coalesce_us}"),
        &format!("[ingest]\nread_coalesce_us = {coalesce_us}\n"),
    );
    for i in 0..lines {
        let line = format!(
            "<13>{} web-1 app[1]: request {i} served\n",
            syslog_stamp(i % 60)
        );
        stream.write_all(line.as_bytes()).unwrap();
        std::thread::sleep(gap);
    }
    let parsed = shardwatch_tests::poll(WAIT, Duration::from_millis(20), || {
        let page = app.metrics();
        let parsed = shardwatch_tests::metric_sum(&page, "shardwatch_events_parsed_total", "");
        let commits = shardwatch_tests::metric_sum(&page, "shardwatch_journal_commits_total", "");
        ((parsed, commits), parsed >= f64::from(lines))
    });
    assert_eq!(parsed.0, f64::from(lines), "every line parsed");
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok, "{:?}", stopped.stderr);
    parsed.1
}

/// `ingest.read_coalesce_us` lets lines that trickle in gather between
/// reads: with lines 1 ms apart, a node reading at once commits about once
/// per line, one waiting 10 ms after each read about once per ten.
#[test]
fn read_coalescing_gathers_trickling_lines_into_fewer_cycles() {
    let lines = 150;
    let gap = Duration::from_millis(1);
    let at_once = commits_for_trickled_lines(0, lines, gap);
    let coalesced = commits_for_trickled_lines(10_000, lines, gap);
    assert!(
        coalesced * 3.0 < at_once,
        "commits: {coalesced} coalesced against {at_once} reading at once"
    );
    assert!(coalesced >= 1.0);
}

/// The node's core thread `sw-core-0`: the first thread so named
/// (glommio names it `sw-core-0-1`; its blocking pool's thread, started
/// after it, has the same name).
fn core_thread(pid: u32) -> u32 {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| task.ok()?.file_name().to_str()?.parse().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|comm| comm.starts_with("sw-core-0"))
        })
        .collect();
    tids.sort_unstable();
    *tids.first().expect("a sw-core-0 thread")
}

/// How often a thread gave up its CPU to wait (`voluntary_ctxt_switches`).
fn voluntary_switches(pid: u32, tid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// How often the core thread slept while `lines` lines came in 2 ms apart,
/// by a node with `engine.idle_spin_us`.
fn core_sleeps_between_lines(spin_us: u64, lines: u32) -> u64 {
    let (app, mut stream) = one_core_node(
        &format!("spin-{spin_us}"),
        &format!("[engine]\nidle_spin_us = {spin_us}\n"),
    );
    let parsed = |app: &Appliance| {
        shardwatch_tests::metric_sum(&app.metrics(), "shardwatch_events_parsed_total", "")
    };
    // The core is running once it has parsed a line.
    stream.write_all(b"<13>web-1 app[1]: first\n").unwrap();
    shardwatch_tests::poll(WAIT, Duration::from_millis(20), || {
        ((), parsed(&app) >= 1.0)
    });
    let core = core_thread(app.pid());
    let before = voluntary_switches(app.pid(), core);
    for i in 0..lines {
        let line = format!("<13>{} web-1 app[1]: request {i}\n", syslog_stamp(i % 60));
        stream.write_all(line.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let sleeps = voluntary_switches(app.pid(), core) - before;
    let all = f64::from(lines + 1);
    let done = shardwatch_tests::poll(WAIT, Duration::from_millis(20), || {
        let done = parsed(&app);
        (done, done >= all)
    });
    assert_eq!(done, all, "every line parsed");
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok, "{:?}", stopped.stderr);
    sleeps
}

/// `engine.idle_spin_us`: a pinned core with nothing to do keeps polling
/// that long before it sleeps. With lines 2 ms apart, a core that sleeps
/// at once sleeps after about every line; one spinning up to 10 ms hardly
/// ever (timers and other threads' wake-ups reach it while it spins).
#[test]
fn an_idle_spinning_core_does_not_sleep_between_lines() {
    let lines = 400;
    let spinning = core_sleeps_between_lines(10_000, lines);
    let sleeping = core_sleeps_between_lines(0, lines);
    eprintln!(
        "core thread slept {spinning} times spinning, {sleeping} times not, over {lines} lines"
    );
    assert!(
        sleeping >= u64::from(lines / 2),
        "sleeping core slept {sleeping} times"
    );
    assert!(
        spinning * 10 < sleeping,
        "spinning core slept {spinning} times against {sleeping}"
    );
}
