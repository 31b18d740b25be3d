//! Per-source limits: a denied sender is refused and counted, a noisy
//! sender is rate limited and counted, and a quiet sender beside it still
//! gets everything through.

use std::net::UdpSocket;
use std::time::Duration;

use shardwatch_tests::{temp_dir, total, Appliance};

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
