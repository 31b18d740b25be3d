//! Schema-agnostic ingest end to end: a new source with fields nobody
//! declared appears mid-stream, a rule on one of its (normalized) fields
//! fires without a restart, and the schema registry shows the source.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use shardwatch_tests::{
    http_get, read_jsonl, ssh_failure, syslog_stamp_shifted, temp_dir, Appliance,
};

const RULES: &str = r#"title: Denied by the Acme firewall from a watched network
id: 2f4a6c8e-1b3d-4f5a-8c7e-9d0b1a2c3e4f
detection:
    selection:
        source.ip|cidr: 198.51.100.0/24
        event.action: deny
    condition: selection
level: medium
---
title: Console login without MFA
id: 3a5b7c9d-2e4f-4a6b-8c0d-1e2f3a4b5c6d
detection:
    selection:
        eventName: ConsoleLogin
        additionalEventData.MFAUsed: 'No'
    condition: selection
level: high
"#;

#[test]
fn a_new_source_mid_stream_is_learned_and_its_fields_are_usable_by_rules() {
    let dir = temp_dir("schemas");
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let app = Appliance::start(
        "schemas",
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
    let mut payload = String::new();
    for i in 0..5 {
        payload.push_str(&ssh_failure(i, "192.0.2.1", "root"));
        payload.push('\n');
    }
    // Mid-stream: a CEF firewall and a CloudTrail JSON feed appear.
    payload.push_str("<134>Nov 27 10:01:00 fw1 CEF:0|Acme|Firewall|5.1|100|Connection denied|5|src=198.51.100.23 dst=10.0.0.8 spt=40123 dpt=22 proto=TCP act=deny cs1Label=zone cs1=dmz\n");
    payload.push_str(r#"<110>Nov 27 10:01:01 aws cloudtrail: {"eventVersion":"1.08","eventName":"ConsoleLogin","sourceIPAddress":"203.0.113.77","userIdentity":{"type":"IAMUser","userName":"bob"},"additionalEventData":{"MFAUsed":"No"},"responseElements":{"ConsoleLogin":"Success"}}"#);
    payload.push('\n');
    // A device five hours behind (local time west of UTC, no zone).
    payload.push_str(&format!(
        "<38>{} legacy-gw sshd[77]: Failed password for admin from 192.0.2.9 port 4000 ssh2\n",
        syslog_stamp_shifted(0, -5 * 3600)
    ));
    stream.write_all(payload.as_bytes()).unwrap();
    drop(stream);
    app.wait_for_alerts(2, Duration::from_secs(20));
    // Each core copies its registry at its next tick once asked; past 2 s
    // the API answers with the copies it has (none yet from a core that is
    // slow to tick): ask again until the sources checked below are there.
    let schemas =
        shardwatch_tests::poll(Duration::from_secs(30), Duration::from_millis(100), || {
            let (status, body) = http_get(app.api(), "/api/schemas", None).unwrap();
            assert_eq!(status, 200, "{body}");
            let schemas: Value = serde_json::from_str(&body).unwrap();
            let sources = schemas["sources"].as_array().cloned().unwrap_or_default();
            let has = |name: &str| sources.iter().find(|s| s["source"] == name);
            let complete = has("cef:Acme/Firewall").is_some()
                && has("aws/cloudtrail").is_some()
                && has("legacy-gw/sshd").is_some()
                && has("bastion/sshd").is_some_and(|s| s["events"] == 5);
            (schemas, complete)
        });
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);

    let alerts = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let titles: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a["rule"]["title"].as_str())
        .collect();
    assert!(
        titles.contains(&"Denied by the Acme firewall from a watched network"),
        "{alerts:#?}"
    );
    assert!(titles.contains(&"Console login without MFA"), "{alerts:#?}");

    let sources = schemas["sources"].as_array().unwrap();
    let find = |name: &str| {
        sources
            .iter()
            .find(|s| s["source"] == name)
            .unwrap_or_else(|| panic!("no source {name} in {schemas:#}"))
    };
    let cef = find("cef:Acme/Firewall");
    assert_eq!(cef["fields"]["src"]["type"], "ip");
    assert_eq!(
        cef["fields"]["source.ip"]["type"], "ip",
        "the common name is recorded too"
    );
    assert_eq!(cef["fields"]["dpt"]["type"], "int");
    assert!(
        cef["fields"]["zone"].is_object(),
        "the CEF custom label became a field"
    );
    assert!(cef["version"].as_u64().unwrap() >= 1);
    let trail = find("aws/cloudtrail");
    assert_eq!(trail["fields"]["userIdentity.userName"]["type"], "string");
    assert_eq!(trail["fields"]["user.name"]["type"], "string");
    let ssh = find("bastion/sshd");
    assert_eq!(ssh["events"], 5);
    // Each source's clock lag (receive time minus event time): the test's
    // lines are stamped from the start of this minute, the legacy
    // gateway's five hours before that.
    let lag = |source: &Value| source["clock_lag"]["latest_s"].as_f64().unwrap();
    assert!((-5.0..600.0).contains(&lag(ssh)), "{ssh:#}");
    let legacy = find("legacy-gw/sshd");
    assert!((18_000.0..18_600.0).contains(&lag(legacy)), "{legacy:#}");
    assert_eq!(legacy["clock_lag"]["samples"], 1);
}

#[test]
fn boundary_checks_quarantine_or_flag_with_a_reason() {
    let dir = temp_dir("boundaries");
    let rules = dir.join("marker.yml");
    std::fs::write(
        &rules,
        "title: Tokyo marker\nid: 4b6c8d0e-2f1a-4c3b-9d5e-6f7a8b9c0d1e\n\
         detection:\n  keywords:\n    - 'tokyo-marker'\n  condition: keywords\nlevel: low\n",
    )
    .unwrap();
    let config = dir.join("shardwatch.toml");
    std::fs::write(
        &config,
        "[ingest]\nframe_bytes_max = 1024\nrequire_header = true\ntimestamp_skew_max_s = 3600\n\
         [ingest.timezones]\ntokyo = 32400\n",
    )
    .unwrap();
    let app = Appliance::start(
        "boundaries",
        &[
            "--cores",
            "2",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
    )
    .unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let oversize = format!("<13>Nov 27 10:00:00 host app: {}", "x".repeat(2000));
    socket.send_to(oversize.as_bytes(), app.udp()).unwrap();
    socket.send_to(b"no header at all here", app.udp()).unwrap();
    // 10:00 in Tokyo is 01:00 UTC.
    socket
        .send_to(
            b"<13>2026-11-27T10:00:00 tokyo app: tokyo-marker",
            app.udp(),
        )
        .unwrap();
    socket
        .send_to(
            b"<13>Nov 27 10:00:00 tokyo app: tokyo-marker again",
            app.udp(),
        )
        .unwrap();
    // Far from the receive time: accepted, flagged, counted.
    socket
        .send_to(
            b"<13>1 2001-01-01T00:00:00Z host app - - - from long ago",
            app.udp(),
        )
        .unwrap();
    app.wait_for_alerts(2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    let quarantine = read_jsonl(&stopped.data_dir.join("quarantine.jsonl"));
    let reasons: Vec<&str> = quarantine
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"oversize"), "{quarantine:#?}");
    assert!(reasons.contains(&"missing_header"), "{quarantine:#?}");
    let flagged: u64 = stopped
        .stats
        .iter()
        .filter_map(|c| c["flagged"]["timestamp_skew"].as_u64())
        .sum();
    assert!(
        flagged >= 1,
        "the 2001 line is flagged as skewed: {:?}",
        stopped.stats
    );
    let alerts = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let tokyo: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["title"] == "Tokyo marker")
        .collect();
    assert_eq!(tokyo.len(), 2, "{alerts:#?}");
    for alert in tokyo {
        let first_seen = alert["first_seen"].as_str().unwrap();
        assert!(
            first_seen.contains("T01:00:00"),
            "Tokyo 10:00 is 01:00 UTC: {first_seen}"
        );
    }
}

/// Sysmon for Linux writes its events to syslog as Windows event XML; the
/// SigmaHQ rule for them (logsource linux/process_creation, which the
/// taxonomy maps to Sysmon for Linux event 1) must fire on the raw line.
/// A broken document is flagged and still reaches keyword rules as text.
#[test]
fn sysmon_for_linux_xml_over_syslog_reaches_sigmahq_rules() {
    let rule = shardwatch_tests::workspace_root().join(
        "../shared/data/sigma/rules/linux/process_creation/proc_creation_lnx_base64_decode.yml",
    );
    if !rule.exists() {
        println!("no SigmaHQ rules at {}; nothing to check", rule.display());
        return;
    }
    let dir = temp_dir("sysmon-linux");
    let marker = dir.join("marker.yml");
    std::fs::write(
        &marker,
        "title: Broken XML marker\nid: 5c7d9e1f-3a2b-4d4c-8e6f-7a8b9c0d1e2f\n\
         detection:\n  keywords:\n    - 'xml-marker'\n  condition: keywords\nlevel: low\n",
    )
    .unwrap();
    let app = Appliance::start(
        "sysmon-linux",
        &[
            "--cores",
            "2",
            "--quiet",
            "--rules",
            rule.to_str().unwrap(),
            "--rules",
            marker.to_str().unwrap(),
        ],
    )
    .unwrap();
    let event = |image: &str, command_line: &str| {
        format!(
            "<Event><System><Provider Name=\"Linux-Sysmon\" Guid=\"{{ff032593-a8d3-4f13-b0d6-01fc615a0f97}}\"/>\
             <EventID>1</EventID><Version>5</Version><Level>4</Level><Task>1</Task><Opcode>0</Opcode>\
             <Keywords>0x8000000000000000</Keywords><TimeCreated SystemTime=\"2026-12-03T10:01:02.123456000Z\"/>\
             <EventRecordID>42</EventRecordID><Correlation/><Execution ProcessID=\"812\" ThreadID=\"812\"/>\
             <Channel>Linux-Sysmon/Operational</Channel><Computer>web1</Computer><Security UserId=\"0\"/></System>\
             <EventData><Data Name=\"RuleName\">-</Data><Data Name=\"ProcessId\">4242</Data>\
             <Data Name=\"Image\">{image}</Data><Data Name=\"CommandLine\">{command_line}</Data>\
             <Data Name=\"User\">www-data</Data><Data Name=\"ParentImage\">/usr/bin/bash</Data></EventData></Event>"
        )
    };
    let mut payload = String::new();
    // RFC 5424, as rsyslog forwards it, and RFC 3164.
    payload.push_str(&format!(
        "<14>1 2026-12-03T10:01:02.125Z web1 sysmon - - - {}\n",
        event("/usr/bin/base64", "base64 -d /tmp/p.b64")
    ));
    payload.push_str(&format!(
        "<14>Dec  3 10:01:03 web1 sysmon: {}\n",
        event("/usr/bin/base64", "base64 --decode /tmp/q.b64")
    ));
    // Not a decode: the rule must not fire.
    payload.push_str(&format!(
        "<14>Dec  3 10:01:04 web1 sysmon: {}\n",
        event("/usr/bin/ls", "ls -d /tmp")
    ));
    payload.push_str("<14>Dec  3 10:01:05 web1 sysmon: <Event><System>xml-marker</Event>\n");
    TcpStream::connect(app.tcp())
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    app.wait_for_alerts(3, Duration::from_secs(20));
    // The flag is counted in /metrics too, by reason.
    let flagged_metric =
        shardwatch_tests::poll(Duration::from_secs(10), Duration::from_millis(50), || {
            let n = shardwatch_tests::metric_sum(
                &app.metrics(),
                "shardwatch_events_flagged_total",
                "reason=\"xml_invalid\"",
            );
            (n, n >= 1.0)
        });
    assert_eq!(flagged_metric, 1.0);
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok, "{:?}", stopped.stderr);
    let alerts = read_jsonl(&stopped.data_dir.join("alerts.jsonl"));
    let decodes: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["title"] == "Decode Base64 Encoded Text")
        .collect();
    assert_eq!(decodes.len(), 2, "{alerts:#?}");
    assert!(
        alerts
            .iter()
            .any(|a| a["rule"]["title"] == "Broken XML marker"),
        "{alerts:#?}"
    );
    let flagged: u64 = stopped
        .stats
        .iter()
        .filter_map(|c| c["flagged"]["xml_invalid"].as_u64())
        .sum();
    assert_eq!(flagged, 1, "{:?}", stopped.stats);
}

/// Cloud audit and honeypot feeds work without configuration: a
/// CloudTrail record, an Okta System Log event, an Azure activity log
/// record, a Kubernetes audit event, a Zeek smb_files record and an
/// OpenCanary event, forwarded as JSON over syslog, are recognised
/// by their own fields (`event.dataset`) and fire the SigmaHQ rules for
/// their log sources; the same CloudTrail fields without CloudTrail's
/// markers do not.
#[test]
fn cloud_audit_records_reach_sigmahq_rules_without_configuration() {
    let root = shardwatch_tests::workspace_root().join("../shared/data/sigma/rules");
    let trail_rule = root.join("cloud/aws/cloudtrail/aws_cloudtrail_disable_logging.yml");
    let okta_rule = root.join("identity/okta/okta_admin_role_assignment_created.yml");
    let azure_rule = root.join("cloud/azure/activity_logs/azure_firewall_modified_or_deleted.yml");
    let canary_rule = root.join("application/opencanary/opencanary_portscan_nmap_fin_scan.yml");
    let k8s_rule = root.join("application/kubernetes/audit/kubernetes_audit_events_deleted.yml");
    let zeek_rule =
        root.join("network/zeek/zeek_smb_converted_win_susp_raccess_sensitive_fext.yml");
    let rules = [
        &trail_rule,
        &okta_rule,
        &azure_rule,
        &canary_rule,
        &k8s_rule,
        &zeek_rule,
    ];
    if rules.iter().any(|rule| !rule.exists()) {
        println!(
            "no SigmaHQ rules under {}; nothing to check",
            root.display()
        );
        return;
    }
    let app = Appliance::start(
        "cloud-audit",
        &[
            "--cores",
            "2",
            "--quiet",
            "--rules",
            trail_rule.to_str().unwrap(),
            "--rules",
            okta_rule.to_str().unwrap(),
            "--rules",
            azure_rule.to_str().unwrap(),
            "--rules",
            canary_rule.to_str().unwrap(),
            "--rules",
            k8s_rule.to_str().unwrap(),
            "--rules",
            zeek_rule.to_str().unwrap(),
        ],
    )
    .unwrap();
    let trail = |version: &str| {
        format!(
            r#"{{{version}"eventTime":"2026-12-03T10:00:00Z","eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging","awsRegion":"eu-west-1","sourceIPAddress":"203.0.113.9","userIdentity":{{"type":"IAMUser","userName":"mallory"}},"requestParameters":{{"name":"org-trail"}}}}"#
        )
    };
    let okta = r#"{"uuid":"5a1b2c3d-0000-4000-8000-000000000001","published":"2026-12-03T10:00:01.000Z","eventType":"iam.resourceset.bindings.add","version":"0","severity":"INFO","displayMessage":"Add resource set binding","actor":{"id":"00u1","type":"User","alternateId":"admin@example.com","displayName":"Admin"},"outcome":{"result":"SUCCESS"}}"#;
    let mut payload = String::new();
    payload.push_str(&format!(
        "<110>Dec  3 10:00:00 collector cloudtrail: {}\n",
        trail(r#""eventVersion":"1.09","#)
    ));
    // No eventVersion: not recognisably CloudTrail, so not for the rule.
    payload.push_str(&format!(
        "<110>Dec  3 10:00:00 collector cloudtrail: {}\n",
        trail("")
    ));
    payload.push_str(&format!("<110>Dec  3 10:00:01 collector okta: {okta}\n"));
    let activity = |category: &str| {
        format!(
            r#"{{"time":"2026-12-03T10:00:02Z","resourceId":"/SUBSCRIPTIONS/0000/RESOURCEGROUPS/NET/PROVIDERS/MICROSOFT.NETWORK/AZUREFIREWALLS/FW1","operationName":"MICROSOFT.NETWORK/AZUREFIREWALLS/DELETE","category":"{category}","resultType":"Success","correlationId":"7f1e","callerIpAddress":"203.0.113.9"}}"#
        )
    };
    payload.push_str(&format!(
        "<110>Dec  3 10:00:02 collector azure: {}\n",
        activity("Administrative")
    ));
    // The same envelope with an Entra audit category is not an activity log.
    payload.push_str(&format!(
        "<110>Dec  3 10:00:02 collector azure: {}\n",
        activity("AuditLogs")
    ));
    payload.push_str(
        "<134>Dec  3 10:00:03 canary1 opencanaryd: {\"dst_host\": \"10.0.0.5\", \"dst_port\": -1, \"local_time\": \"2026-12-03 10:00:03.000000\", \"logdata\": {}, \"logtype\": 5005, \"node_id\": \"canary-1\", \"src_host\": \"203.0.113.50\", \"src_port\": -1}\n",
    );
    payload.push_str(
        "<134>Dec  3 10:00:04 master1 kube-apiserver-audit: {\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"Metadata\",\"auditID\":\"6f1c2d3e\",\"stage\":\"ResponseComplete\",\"requestURI\":\"/api/v1/namespaces/default/events\",\"verb\":\"delete\",\"user\":{\"username\":\"mallory\"},\"objectRef\":{\"resource\":\"events\",\"namespace\":\"default\",\"apiVersion\":\"v1\"},\"responseStatus\":{\"code\":200}}\n",
    );
    payload.push_str(
        "<134>Dec  3 10:00:05 sensor1 zeek: {\"ts\":1796292005.1,\"uid\":\"CHhAvVGS1DHFjwGM9\",\"id.orig_h\":\"10.0.0.5\",\"id.orig_p\":50123,\"id.resp_h\":\"10.0.0.9\",\"id.resp_p\":445,\"fuid\":\"F1\",\"action\":\"SMB::FILE_OPEN\",\"path\":\"\\\\\\\\fs1\\\\share\",\"name\":\"mail\\\\archive.pst\",\"size\":1048576}\n",
    );
    let (alerts, _) = app.send_tcp_then_stop(&payload, 6);
    let count = |title: &str| {
        alerts
            .iter()
            .filter(|a| a["rule"]["title"] == title)
            .count()
    };
    assert_eq!(count("AWS CloudTrail Important Change"), 1, "{alerts:#?}");
    assert_eq!(
        count("Okta Admin Role Assignment Created"),
        1,
        "{alerts:#?}"
    );
    assert_eq!(
        count("Azure Firewall Modified or Deleted"),
        1,
        "{alerts:#?}"
    );
    assert_eq!(count("OpenCanary - NMAP FIN Scan"), 1, "{alerts:#?}");
    assert_eq!(count("Kubernetes Events Deleted"), 1, "{alerts:#?}");
    assert_eq!(
        count("Suspicious Access to Sensitive File Extensions - Zeek"),
        1,
        "{alerts:#?}"
    );
}
