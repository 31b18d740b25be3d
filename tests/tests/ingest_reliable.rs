//! Reliable ingest end to end: RELP with the real rsyslog `omrelp` as the
//! client (the appliance killed with SIGKILL mid-stream and restarted), and
//! syslog over TLS with a CA generated in the test. `scripts/setup.sh`
//! installs rsyslog and rsyslog-relp.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardwatch_tests::{binary, ssh_failure, temp_dir, Appliance, Rsyslog, TestCa};

/// Marker numbers of the journaled RELP test lines, with how often each
/// appears.
fn journaled_markers(data_dir: &Path) -> BTreeMap<u32, u32> {
    let output = Command::new(binary())
        .args(["journal", "dump", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run journal dump");
    let mut seen = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(rest) = line.split("relp-marker=").nth(1) {
            if let Ok(n) = rest.trim().parse::<u32>() {
                *seen.entry(n).or_default() += 1;
            }
        }
    }
    seen
}

#[test]
fn rsyslog_omrelp_loses_nothing_across_a_kill_9() {
    assert!(
        Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so").exists()
            || Path::new("/usr/lib/rsyslog/omrelp.so").exists(),
        "omrelp is not installed: run scripts/setup.sh (it installs rsyslog-relp)"
    );
    const N: u32 = 20_000;
    let flags = [
        "--cores",
        "2",
        "--quiet",
        "--relp",
        "127.0.0.1:0",
        "--journal-fsync-ms",
        "10",
        "--checkpoint-ms",
        "500",
    ];
    let mut node = Appliance::start("relp-kill9", &flags).unwrap();
    let relp = node.relp.expect("the listening line names the RELP port");
    let data_dir = node.data_dir.clone();
    let dir = temp_dir("relp-client");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let input = dir.join("input.log");
    std::fs::write(&input, "").unwrap();
    let conf = format!(
        r#"global(workDirectory="{work}")
module(load="imfile")
module(load="omrelp")
ruleset(name="relp") {{
  action(type="omrelp" target="127.0.0.1" port="{port}" timeout="5" conn.timeout="2"
         template="RSYSLOG_SyslogProtocol23Format"
         queue.type="LinkedList" queue.size="100000"
         action.resumeRetryCount="-1" action.resumeInterval="1")
}}
input(type="imfile" File="{input}" Tag="app:" Facility="local0" Severity="info" ruleset="relp")
"#,
        work = work.display(),
        port = relp.port(),
        input = input.display(),
    );
    let _rsyslog = Rsyslog::start(&dir, &conf);
    std::thread::sleep(Duration::from_millis(1_500));
    let mut text = String::new();
    for n in 0..N {
        text.push_str(&format!("reliable delivery test relp-marker={n}\n"));
    }
    std::fs::write(&input, text).unwrap();

    // Kill the appliance once part of the stream is in.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = shardwatch_tests::http_get(node.api(), "/metrics", None).unwrap();
        let journaled: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("shardwatch_journal_lines_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if journaled >= f64::from(N / 4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RELP lines did not arrive: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = node.stderr_so_far();
    node.kill_hard();
    let before = journaled_markers(&data_dir);
    assert!(
        (before.len() as u32) < N,
        "the kill came mid-stream ({} of {N} journaled)",
        before.len()
    );

    // Restart on the same port; rsyslog reconnects and resends what was
    // not acknowledged.
    let mut flags = flags.to_vec();
    let relp_addr = relp.to_string();
    flags[4] = &relp_addr;
    let node = Appliance::start_in(data_dir.clone(), &flags).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = journaled_markers(&data_dir);
    while (seen.len() as u32) < N && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        seen = journaled_markers(&data_dir);
    }
    // Every frame the restarted node took was answered (its `open` too).
    let metrics = node.metrics();
    let metric = |name, label| shardwatch_tests::metric_sum(&metrics, name, label);
    let received = metric("shardwatch_events_received_total", "transport=\"relp\"");
    assert!(received > 0.0, "{metrics}");
    assert!(
        metric("shardwatch_relp_acks_total", "") > received,
        "{metrics}"
    );
    let stopped = node.stop().unwrap();
    assert!(stopped.exit_ok);
    let missing: Vec<u32> = (0..N).filter(|n| !seen.contains_key(n)).collect();
    let duplicates: u32 = seen.values().map(|c| c - 1).sum();
    eprintln!(
        "RELP: {} of {N} journaled before the kill; after restart all {} present, {duplicates} duplicates from resends",
        before.len(),
        seen.len()
    );
    assert!(
        missing.is_empty(),
        "{} messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// Opens a TLS session to `addr` as a client of `ca`, with or without a
/// client certificate, and writes `payload`; returns whether the server
/// kept the session (a refused handshake shows as an error or EOF).
fn send_over_tls(
    addr: std::net::SocketAddr,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    payload: &[u8],
) -> bool {
    let config = shardwatch_net::tls::client_config(&shardwatch_net::tls::TlsClientSettings {
        ca_file: Some(ca.to_path_buf()),
        client_cert_file: client.map(|(c, _)| c.to_path_buf()),
        client_key_file: client.map(|(_, k)| k.to_path_buf()),
    })
    .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    if tls.write_all(payload).and_then(|()| tls.flush()).is_err() {
        return false;
    }
    // TLS 1.3 refuses a client certificate after the client thinks it is
    // done: a refusal arrives as an alert on the next read.
    let mut byte = [0u8; 1];
    match tls.read(&mut byte) {
        Ok(0) => {
            // A clean close by the server after reading everything.
            true
        }
        Ok(_) => true,
        Err(err) => matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn tls_syslog_with_client_certificates_from_a_test_ca() {
    let dir = temp_dir("tls-ca");
    let (ca, ca_pem) = TestCa::new(&dir);
    let (server_crt, server_key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let (client_crt, client_key) = ca.issue("client", &["relay.example"]);
    let (other_ca, _) = TestCa::new(&temp_dir("tls-other-ca"));
    let (rogue_crt, rogue_key) = other_ca.issue("rogue", &["rogue.example"]);
    let flags = [
        "--cores",
        "2",
        "--quiet",
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        server_crt.to_str().unwrap(),
        "--tls-key",
        server_key.to_str().unwrap(),
        "--tls-client-ca",
        ca_pem.to_str().unwrap(),
        "--tls-require-client-cert",
    ];
    let node = Appliance::start("tls-ingest", &flags).unwrap();
    let tls = node.tls.expect("the listening line names the TLS port");

    // RFC 5425: octet-counted frames inside the session.
    let frames = |ip: &str| -> Vec<u8> {
        let mut out = Vec::new();
        for second in 0..10 {
            let line = ssh_failure(second, ip, "root");
            out.extend_from_slice(format!("{} {line}", line.len()).as_bytes());
        }
        out
    };
    assert!(send_over_tls(
        tls,
        &ca_pem,
        Some((&client_crt, &client_key)),
        &frames("198.51.100.10")
    ));
    // No certificate, and a certificate from another CA: refused.
    let anonymous = send_over_tls(tls, &ca_pem, None, &frames("198.51.100.11"));
    let rogue = send_over_tls(
        tls,
        &ca_pem,
        Some((&rogue_crt, &rogue_key)),
        &frames("198.51.100.12"),
    );
    assert!(!anonymous, "a client without a certificate is refused");
    assert!(!rogue, "a client certificate from another CA is refused");

    let alerts = node.wait_for_alerts(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let metrics = node.metrics();
    let stopped = node.stop().unwrap();
    assert!(stopped.exit_ok);
    let sources: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a["group"]["source.ip"].as_str())
        .collect();
    assert_eq!(sources, vec!["198.51.100.10"], "{alerts:#?}");
    assert_eq!(shardwatch_tests::total(&stopped.stats, "tls_sessions"), 1);
    assert_eq!(
        shardwatch_tests::total(&stopped.stats, "tls_handshake_failures"),
        2
    );
    let metric = |name| shardwatch_tests::metric_sum(&metrics, name, "");
    assert_eq!(metric("shardwatch_tls_sessions_total"), 1.0);
    assert_eq!(metric("shardwatch_tls_handshake_failures_total"), 2.0);
}
