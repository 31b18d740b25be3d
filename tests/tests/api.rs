//! The HTTP API and metrics of a real node, over real HTTP.

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::Value;
use shardwatch_tests::{http_get, poll, ssh_failure, Appliance};

const TOKEN: &str = "s3cret-token";

fn metric_sum(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn api_answers_with_auth_and_counts_what_was_sent() {
    let app = Appliance::start("api", &["--cores", "2", "--api-token", TOKEN]).unwrap();
    let api = app.api();

    // Health needs no token; everything else does.
    let (status, body) = http_get(api, "/health", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["cores"], 2);
    // Both cores' heartbeats run (every 50 ms), so neither is stalled; a
    // core may be a beat away from its first one when the node listens.
    let health = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        let (_, body) = http_get(api, "/health", None).unwrap();
        let health: Value = serde_json::from_str(&body).unwrap();
        let beaten = health["core_heartbeat_age_s"]
            .as_array()
            .is_some_and(|ages| ages.iter().all(Value::is_f64));
        (health, beaten)
    });
    let ages = health["core_heartbeat_age_s"].as_array().unwrap();
    assert_eq!(ages.len(), 2, "{health}");
    for age in ages {
        let age = age
            .as_f64()
            .unwrap_or_else(|| panic!("no heartbeat: {health}"));
        assert!((0.0..5.0).contains(&age), "{health}");
    }
    assert_eq!(health["stalled_cores"], serde_json::json!([]));
    let (status, body) = http_get(api, "/metrics", None).unwrap();
    assert_eq!(status, 401);
    assert!(
        body.contains("Bearer"),
        "the refusal says what to send: {body}"
    );
    let (status, _) = http_get(api, "/api/alerts", Some("wrong")).unwrap();
    assert_eq!(status, 401);

    // Traffic: a brute force (10 failures), a bystander and a bad line.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..10 {
        socket
            .send_to(ssh_failure(i, "203.0.113.77", "root").as_bytes(), app.udp())
            .unwrap();
    }
    socket
        .send_to(ssh_failure(1, "198.51.100.1", "bob").as_bytes(), app.udp())
        .unwrap();
    socket.send_to(b"<777>broken", app.udp()).unwrap();
    app.wait_for_alerts(1, Duration::from_secs(20));

    // The alert can be in the log before the bystander and the bad line
    // (sent after the tenth failure, possibly routed to the other core's
    // shards) are counted: wait until every count asserted below is in.
    let counts = |scrape: &prometheus_parse::Scrape| {
        [
            metric_sum(
                scrape,
                "shardwatch_events_received_total",
                Some(("transport", "udp")),
            ),
            metric_sum(scrape, "shardwatch_events_parsed_total", None),
            metric_sum(
                scrape,
                "shardwatch_events_quarantined_total",
                Some(("reason", "bad_pri")),
            ),
            metric_sum(scrape, "shardwatch_alerts_raised_total", None),
            metric_sum(scrape, "shardwatch_shard_records_total", None),
            metric_sum(scrape, "shardwatch_journal_lines_total", None),
        ]
    };
    let (body, scrape) = poll(Duration::from_secs(20), Duration::from_millis(50), || {
        let (status, body) = http_get(api, "/metrics", Some(TOKEN)).unwrap();
        assert_eq!(status, 200);
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
        let done = counts(&scrape) == [12.0, 11.0, 1.0, 1.0, 11.0, 12.0];
        ((body, scrape), done)
    });
    assert_eq!(
        metric_sum(
            &scrape,
            "shardwatch_events_received_total",
            Some(("transport", "udp"))
        ),
        12.0
    );
    assert_eq!(
        metric_sum(&scrape, "shardwatch_events_parsed_total", None),
        11.0
    );
    assert_eq!(
        metric_sum(
            &scrape,
            "shardwatch_events_quarantined_total",
            Some(("reason", "bad_pri"))
        ),
        1.0
    );
    assert_eq!(
        metric_sum(&scrape, "shardwatch_alerts_raised_total", None),
        1.0
    );
    // Which build is running: the labels match `--version`.
    let version = std::process::Command::new(shardwatch_tests::binary())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let build = scrape
        .samples
        .iter()
        .find(|s| s.metric == "shardwatch_build_info")
        .unwrap_or_else(|| panic!("no build info:\n{body}"));
    assert_eq!(metric_sum(&scrape, "shardwatch_build_info", None), 1.0);
    let label = |name: &str| build.labels.get(name).unwrap().to_string();
    assert_eq!(
        version.trim(),
        format!("shardwatch {} ({})", label("version"), label("build"))
    );
    assert!(
        ["debug", "release"].contains(&label("build").split(", ").next().unwrap()),
        "{:?}",
        build.labels
    );
    assert_eq!(
        metric_sum(&scrape, "shardwatch_shard_records_total", None),
        11.0
    );
    assert!(body.contains("shardwatch_detection_latency_seconds_bucket"));
    // The one alert is the one detection-latency sample: the histogram's
    // count, its +Inf bucket and its quantile gauges (from the same
    // hdrhistogram) agree.
    // Each histogram's count per core (its +Inf bucket).
    let inf_counts = |metric: &str| -> Vec<f64> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map(|b| b.count),
                _ => None,
            })
            .collect()
    };
    let counts = inf_counts("shardwatch_detection_latency_seconds");
    assert_eq!(counts.len(), 2, "one histogram per core");
    assert_eq!(counts.iter().sum::<f64>(), 1.0);
    // Every core's stall probe (a timer due every 10 ms by default) has fired since
    // the node started.
    let stalls = inf_counts("shardwatch_core_stall_seconds");
    assert_eq!(stalls.len(), 2, "one histogram per core");
    assert!(stalls.iter().all(|&n| n >= 1.0), "{stalls:?}");
    let quantile = |q: &str| -> Vec<f64> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "shardwatch_detection_latency_quantile_seconds")
            .filter(|s| s.labels.get("quantile") == Some(q))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            })
            .collect()
    };
    let (p50, max) = (quantile("0.5"), quantile("1"));
    assert_eq!((p50.len(), max.len()), (2, 2), "a gauge per core");
    // One core raised it: its p50 is its max and above 0; the other is 0.
    let raised: Vec<usize> = (0..2).filter(|&c| max[c] > 0.0).collect();
    assert_eq!(raised.len(), 1, "{max:?}");
    assert_eq!(p50[raised[0]], max[raised[0]]);
    assert!(max[raised[0]] < 60.0, "{max:?}");
    for core in ["0", "1"] {
        let age = metric_sum(
            &scrape,
            "shardwatch_core_heartbeat_age_seconds",
            Some(("core", core)),
        );
        assert!((0.0..5.0).contains(&age), "core {core}: {age}");
    }
    // Every datagram was journaled, the bad line too (the journal keeps
    // what arrived, not what parsed).
    assert_eq!(
        metric_sum(&scrape, "shardwatch_journal_lines_total", None),
        12.0
    );
    // Every metric the documentation names is on the page (a counter the
    // README promised was once only in /api/stats).
    for name in documented_metrics() {
        assert!(
            body.lines().any(
                |l| l.strip_prefix("# TYPE ").and_then(|t| t.split(' ').next())
                    == Some(name.as_str())
            ),
            "{name} is documented but not in /metrics"
        );
    }
    // Group commits: at least one write, at most one per line, and never
    // fewer bytes than commits.
    // Datagrams come in batches (recvmmsg): at least one, at most one each.
    let batches = metric_sum(&scrape, "shardwatch_udp_batches_total", None);
    assert!((1.0..=12.0).contains(&batches), "{batches} UDP batches");
    let commits = metric_sum(&scrape, "shardwatch_journal_commits_total", None);
    assert!((1.0..=12.0).contains(&commits), "{commits} commits");
    assert!(metric_sum(&scrape, "shardwatch_journal_written_bytes_total", None) >= commits);
    // State memory by detector kind is refreshed about once a second, by
    // each core on its own walk: wait until both cores' groups are counted.
    let scrape = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let (_, body) = http_get(api, "/metrics", Some(TOKEN)).unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        let groups = metric_sum(
            &scrape,
            "shardwatch_state_groups",
            Some(("kind", "event_count")),
        );
        (scrape, groups >= 2.0)
    });
    // One brute-force group per source address.
    assert_eq!(
        metric_sum(
            &scrape,
            "shardwatch_state_groups",
            Some(("kind", "event_count"))
        ),
        2.0
    );
    assert!(
        metric_sum(
            &scrape,
            "shardwatch_state_memory_bytes",
            Some(("kind", "event_count"))
        ) > 2.0 * 100.0
    );

    let (status, body) = http_get(api, "/api/alerts?rule=brute&limit=10", Some(TOKEN)).unwrap();
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["group"]["source.ip"], "203.0.113.77");
    let (_, body) = http_get(api, "/api/alerts?group=198.51.100.1", Some(TOKEN)).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["total"], 0);

    // Bad input gets a clear 4xx with a JSON message.
    let (status, body) = http_get(api, "/api/alerts?limit=0", Some(TOKEN)).unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("limit"), "{body}");
    let (status, body) = http_get(api, "/api/alerts?colour=red", Some(TOKEN)).unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("colour"), "{body}");
    let (status, _) = http_get(api, "/api/nothing-here", Some(TOKEN)).unwrap();
    assert_eq!(status, 404);

    // Quarantine records are buffered and reach the file (which the API
    // reads) at the core's next tick: wait for the record.
    let page = poll(Duration::from_secs(20), Duration::from_millis(50), || {
        let (status, body) = http_get(api, "/api/quarantine?reason=bad_pri", Some(TOKEN)).unwrap();
        assert_eq!(status, 200);
        let page: Value = serde_json::from_str(&body).unwrap();
        let done = page["total"] == 1;
        (page, done)
    });
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["raw"], "<777>broken");

    let (status, body) = http_get(api, "/api/rules", Some(TOKEN)).unwrap();
    assert_eq!(status, 200);
    let rules: Value = serde_json::from_str(&body).unwrap();
    assert!(rules["correlations"].as_array().unwrap().len() >= 2);

    let (status, body) = http_get(api, "/api/stats", Some(TOKEN)).unwrap();
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    let cores = stats["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 2);
    // What the node costs, for a harness that cannot read its /proc: each
    // core thread's time on its CPU and the process's CPU and memory.
    for core in cores {
        assert!(core["cpu_seconds"].as_f64().unwrap() > 0.0, "{core}");
    }
    let process = &stats["process"];
    assert!(
        process["cpu_user_seconds"].as_f64().unwrap()
            + process["cpu_system_seconds"].as_f64().unwrap()
            > 0.0,
        "{process}"
    );
    assert!(
        process["resident_bytes"].as_u64().unwrap() > 1 << 20,
        "{process}"
    );
    assert!(process["threads"].as_u64().unwrap() >= 3, "{process}");
    let (_, metrics) = http_get(api, "/metrics", Some(TOKEN)).unwrap();
    let scrape =
        prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    for core in ["0", "1"] {
        let seconds = metric_sum(
            &scrape,
            "shardwatch_core_cpu_seconds_total",
            Some(("core", core)),
        );
        assert!(seconds > 0.0, "core {core}: {seconds}");
    }
    assert!(metric_sum(&scrape, "process_cpu_seconds_total", None) > 0.0);

    let (status, body) = http_get(api, "/api/openapi.json", Some(TOKEN)).unwrap();
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    for path in [
        "/health",
        "/metrics",
        "/api/alerts",
        "/api/quarantine",
        "/api/rules",
        "/api/stats",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi documents {path}");
    }

    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
}

#[test]
fn a_public_api_address_without_a_token_is_refused_at_start() {
    let out = std::process::Command::new(shardwatch_tests::binary())
        .args([
            "run",
            "--udp",
            "127.0.0.1:0",
            "--tcp",
            "",
            "--api",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api.token"), "{stderr}");
}

#[test]
fn alert_stream_delivers_new_alerts_live() {
    use std::io::{BufRead, BufReader, Write};
    let app = Appliance::start("sse", &["--cores", "2", "--quiet"]).unwrap();
    let mut stream = std::net::TcpStream::connect(app.api()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /api/alerts/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // Alerts raised after the subscription arrive as `alert` events.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..10 {
        socket
            .send_to(ssh_failure(i, "203.0.113.88", "root").as_bytes(), app.udp())
            .unwrap();
    }
    let mut saw_event = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.starts_with("event: alert") {
            saw_event = true;
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let alert: Value = serde_json::from_str(data.trim()).unwrap();
            assert!(saw_event);
            assert_eq!(alert["group"]["source.ip"], "203.0.113.88");
            break;
        }
    }
    assert!(saw_event, "an alert event arrived on the stream");
    // A subscriber still connected does not keep the node from stopping.
    assert!(app.stop().unwrap().exit_ok);
    drop(reader);
    drop(stream);
}

/// The metric names the README, ARCHITECTURE.md and the harness's README
/// write in backticks (`shardwatch_…` followed by a backtick or a label
/// set), e.g. `shardwatch_events_flagged_total{reason}`.
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let root = shardwatch_tests::workspace_root();
    let mut names = std::collections::BTreeSet::new();
    for doc in ["README.md", "ARCHITECTURE.md", "perf/README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for (at, _) in text.match_indices("`shardwatch_") {
            let rest = &text[at + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            if matches!(rest[end..].chars().next(), Some('`' | '{')) {
                names.insert(rest[..end].to_string());
            }
        }
    }
    assert!(names.len() > 20, "the docs name metrics: {names:?}");
    names
}
