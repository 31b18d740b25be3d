//! Interop: a real rsyslog forwards to the appliance over TCP, once with
//! octet-counted RFC 5424 framing and once with LF-framed traditional
//! (RFC 3164) forwarding. `scripts/setup.sh` installs rsyslog.

use std::time::{Duration, Instant};

use shardwatch_tests::{read_jsonl, temp_dir, Appliance, Rsyslog};

#[test]
fn rsyslog_forwards_octet_counted_5424_and_lf_3164() {
    let app = Appliance::start("rsyslog", &["--cores", "2", "--quiet"]).unwrap();
    let dir = temp_dir("rsyslog-client");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let octet_input = dir.join("octet.log");
    let lf_input = dir.join("lf.log");
    std::fs::write(&octet_input, "").unwrap();
    std::fs::write(&lf_input, "").unwrap();
    let port = app.tcp().port();
    let conf = format!(
        r#"global(workDirectory="{work}")
module(load="imfile")
ruleset(name="octet") {{
  action(type="omfwd" Target="127.0.0.1" Port="{port}" Protocol="tcp"
         TCP_Framing="octet-counted" Template="RSYSLOG_SyslogProtocol23Format")
}}
ruleset(name="lf") {{
  action(type="omfwd" Target="127.0.0.1" Port="{port}" Protocol="tcp"
         Template="RSYSLOG_ForwardFormat")
}}
input(type="imfile" File="{octet}" Tag="sshd:" Facility="auth" Severity="info" ruleset="octet")
input(type="imfile" File="{lf}" Tag="sshd:" Facility="auth" Severity="info" ruleset="lf")
"#,
        work = work.display(),
        octet = octet_input.display(),
        lf = lf_input.display(),
    );
    let _rsyslog = Rsyslog::start(&dir, &conf);
    // imfile polls; give it a moment to open the files.
    std::thread::sleep(Duration::from_millis(1500));
    let mut octet = String::new();
    let mut lf = String::new();
    for i in 0..10 {
        octet.push_str(&format!(
            "Failed password for root from 203.0.113.31 port 4{i} ssh2\n"
        ));
        lf.push_str(&format!(
            "Failed password for admin from 203.0.113.32 port 5{i} ssh2\n"
        ));
    }
    std::fs::write(&octet_input, octet).unwrap();
    std::fs::write(&lf_input, lf).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while app.alerts_file().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    let alerts = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let mut sources: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a["group"]["source.ip"].as_str())
        .collect();
    sources.sort();
    assert_eq!(sources, vec!["203.0.113.31", "203.0.113.32"], "{alerts:#?}");
    for alert in &alerts {
        assert_eq!(alert["count"], 10);
    }
    let quarantined: u64 = stopped
        .stats
        .iter()
        .flat_map(|c| c["quarantined"].as_object().unwrap().values())
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(quarantined, 0, "rsyslog's lines all parse");
}
