//! Per-source limits: a denied sender is refused and counted, a noisy
//! sender is rate limited and counted, and a quiet sender beside it still
//! gets everything through. Stream connections are held to the node's
//! bound.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use shardwatch_tests::{metric_sum, poll, temp_dir, total, Appliance};

fn dropped(stats: &[serde_json::Value], reason: &str) -> u64 {
    stats
        .iter()
        .filter_map(|c| c["dropped"][reason].as_u64())
        .sum()
}

#[test]
fn denied_and_noisy_sources_do_not_starve_the_rest() {
    let dir = temp_dir("limits");
    let config = dir.join("shardwatch.toml");
    std::fs::write(
        &config,
        "[limits]\ndeny = [\"127.0.0.2/32\"]\nsource_rate_eps = 100\nsource_burst = 50\n",
    )
    .unwrap();
    let app = Appliance::start(
        "limits",
        &[
            "--cores",
            "2",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .unwrap();
    let denied = UdpSocket::bind("127.0.0.2:0").unwrap();
    let noisy = UdpSocket::bind("127.0.0.3:0").unwrap();
    let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20 {
        denied
            .send_to(
                format!("<13>Nov 27 10:00:00 h app: denied {i}").as_bytes(),
                app.udp(),
            )
            .unwrap();
    }
    for i in 0..500 {
        noisy
            .send_to(
                format!("<13>Nov 27 10:00:00 h app: noisy {i}").as_bytes(),
                app.udp(),
            )
            .unwrap();
        if i % 25 == 0 {
            quiet
                .send_to(
                    format!("<13>Nov 27 10:00:00 h app: quiet {i}").as_bytes(),
                    app.udp(),
                )
                .unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    assert_eq!(dropped(&stopped.stats, "source_denied"), 20);
    let limited = dropped(&stopped.stats, "source_rate_limited");
    let parsed = total(&stopped.stats, "events_parsed");
    // The noisy source gets its burst (50) plus what the rate refills while
    // it sends; the quiet one (20 lines) gets everything.
    assert_eq!(parsed + limited, 520, "every datagram is parsed or counted");
    assert!(
        limited >= 400,
        "the noisy source was held to its rate: {limited}"
    );
    assert!(parsed >= 70, "burst of 50 plus the quiet 20: {parsed}");
}

/// Polls the node's metrics until `name` (samples whose labels contain
/// `label`) sums to `want`; returns the last sum.
fn wait_metric(app: &Appliance, name: &str, label: &str, want: f64) -> f64 {
    poll(Duration::from_secs(20), Duration::from_millis(20), || {
        let sum = metric_sum(&app.metrics(), name, label);
        (sum, sum == want)
    })
}

fn send_line(stream: &mut TcpStream, text: &str) {
    stream
        .write_all(format!("<13>Nov 27 10:00:00 h app: {text}\n").as_bytes())
        .unwrap();
}

#[test]
fn connections_past_the_bound_are_closed_and_counted_and_the_open_ones_keep_working() {
    let dir = temp_dir("connections-max");
    let config = dir.join("shardwatch.toml");
    std::fs::write(&config, "[limits]\nconnections_max = 2\n").unwrap();
    // Two cores: the bound is the node's, wherever the kernel places a
    // connection.
    let mut app = Appliance::start(
        "connections-max",
        &[
            "--cores",
            "2",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .unwrap();
    let parsed = "shardwatch_events_parsed_total";
    let refused = "shardwatch_events_dropped_total";
    let mut first = TcpStream::connect(app.tcp()).unwrap();
    let mut second = TcpStream::connect(app.tcp()).unwrap();
    send_line(&mut first, "first");
    send_line(&mut second, "second");
    assert_eq!(wait_metric(&app, parsed, "", 2.0), 2.0, "both lines parsed");

    // The third is closed unread.
    let mut third = TcpStream::connect(app.tcp()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let closed = match third.read(&mut [0u8; 16]) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(closed, "the connection past the bound is closed");
    assert_eq!(
        wait_metric(&app, refused, "reason=\"connections_max\"", 1.0),
        1.0,
        "the refusal is counted"
    );
    assert!(
        app.wait_stderr("limits.connections_max", Duration::from_secs(10))
            .is_some(),
        "the refusal is logged"
    );

    // The open ones still work; once one ends, a new one gets in.
    send_line(&mut first, "first again");
    assert_eq!(wait_metric(&app, parsed, "", 3.0), 3.0);
    drop(second);
    assert_eq!(
        wait_metric(&app, "shardwatch_tcp_connections_open", "", 1.0),
        1.0,
        "the closed connection is no longer open"
    );
    let mut fourth = TcpStream::connect(app.tcp()).unwrap();
    send_line(&mut fourth, "fourth");
    assert_eq!(
        wait_metric(&app, parsed, "", 4.0),
        4.0,
        "the new one is read"
    );
    assert_eq!(
        metric_sum(&app.metrics(), refused, "reason=\"connections_max\""),
        1.0
    );

    drop((first, third, fourth));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    assert_eq!(dropped(&stopped.stats, "connections_max"), 1);
}
