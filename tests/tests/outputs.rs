//! Alert outputs end to end: a webhook receiver that goes down mid-stream
//! and comes back gets every alert exactly once; the syslog forward and the
//! rotated file get every alert too.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use shardwatch_tests::{http_get, ssh_failure, temp_dir, Appliance};

type Seen = Arc<Mutex<BTreeMap<String, u32>>>;

/// A webhook receiver on `addr` that records alert ids until `down` is set.
fn serve_webhook(
    listener: TcpListener,
    seen: Seen,
    down: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !down.load(Ordering::Relaxed) {
            let (stream, _) = match listener.accept() {
                Ok(conn) => conn,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let alerts: Vec<Value> = serde_json::from_slice(&body).unwrap();
            {
                let mut seen = seen.lock().unwrap();
                for alert in alerts {
                    *seen
                        .entry(alert["id"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
            }
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    })
}

fn send_brute_forces(app: &Appliance, first: u32, count: u32) {
    let mut stream = TcpStream::connect(app.tcp()).unwrap();
    let mut payload = String::new();
    for k in first..first + count {
        for i in 0..10 {
            payload.push_str(&ssh_failure(i, &format!("192.0.2.{k}"), "root"));
            payload.push('\n');
        }
    }
    stream.write_all(payload.as_bytes()).unwrap();
}

fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn webhook_down_and_back_gets_every_alert_once_and_other_outputs_too() {
    let dir = temp_dir("outputs");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook: SocketAddr = listener.local_addr().unwrap();
    let syslog_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let syslog_addr = syslog_listener.local_addr().unwrap();
    let syslog_frames = Arc::new(Mutex::new(Vec::<String>::new()));
    let frames = syslog_frames.clone();
    std::thread::spawn(move || {
        let (stream, _) = syslog_listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        loop {
            // Octet-counted: digits, a space, then that many bytes.
            let mut len = Vec::new();
            if reader.read_until(b' ', &mut len).unwrap_or(0) == 0 {
                break;
            }
            let n: usize = std::str::from_utf8(&len[..len.len() - 1])
                .unwrap()
                .parse()
                .unwrap();
            let mut msg = vec![0u8; n];
            reader.read_exact(&mut msg).unwrap();
            frames.lock().unwrap().push(String::from_utf8(msg).unwrap());
        }
    });
    let file_out = dir.join("alerts-out.jsonl");
    let config = dir.join("shardwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[outputs]\nwebhook_url = \"http://{hook}/alerts\"\nsyslog_forward = \"{syslog_addr}\"\n\
             file_path = \"{}\"\nfile_rotate_bytes = 8000\nfile_keep = 50\n",
            file_out.display()
        ),
    )
    .unwrap();
    let seen: Seen = Default::default();
    let down = Arc::new(AtomicBool::new(false));
    let receiver = serve_webhook(listener, seen.clone(), down.clone());
    let app = Appliance::start(
        "outputs",
        &[
            "--cores",
            "2",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .unwrap();

    send_brute_forces(&app, 1, 10);
    wait_until(|| seen.lock().unwrap().len() == 10, "the first ten alerts");
    // The receiver goes away; alerts keep being raised.
    down.store(true, Ordering::Relaxed);
    receiver.join().unwrap();
    send_brute_forces(&app, 11, 10);
    wait_until(|| app.alerts_file().len() == 20, "twenty alerts in the log");
    // The webhook thread finds the new alerts on its own poll and counts a
    // failed delivery only then: wait for it.
    let webhook_failures = || -> f64 {
        let (_, metrics) = http_get(app.api(), "/metrics", None).unwrap();
        metrics
            .lines()
            .find(|l| l.starts_with("shardwatch_output_failures_total{output=\"webhook\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = webhook_failures();
    while failures < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        failures = webhook_failures();
    }
    assert!(
        failures >= 1.0,
        "deliveries failed while the receiver was down"
    );
    assert_eq!(seen.lock().unwrap().len(), 10);
    // It comes back on the same port.
    let listener = TcpListener::bind(hook).unwrap();
    down.store(false, Ordering::Relaxed);
    let receiver = serve_webhook(listener, seen.clone(), down.clone());
    send_brute_forces(&app, 21, 10);
    wait_until(|| seen.lock().unwrap().len() == 30, "all thirty alerts");
    wait_until(
        || syslog_frames.lock().unwrap().len() == 30,
        "thirty syslog frames",
    );
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    down.store(true, Ordering::Relaxed);
    receiver.join().unwrap();
    assert!(
        seen.lock().unwrap().values().all(|&n| n == 1),
        "no alert delivered twice"
    );
    for frame in syslog_frames.lock().unwrap().iter() {
        assert!(
            frame.starts_with("<131>1 "),
            "local0.err for high alerts: {frame}"
        );
        assert!(frame.contains(" shardwatch - alert - {"));
    }
    // The rotated file holds every alert across its generations.
    let mut lines = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("alerts-out.jsonl")
        {
            lines += std::fs::read_to_string(&path).unwrap().lines().count();
        }
    }
    assert_eq!(lines, 30);
    assert!(dir.join("alerts-out.jsonl.1").exists(), "the file rotated");
}

/// A stdout nobody reads (a pipe whose buffer fills) must not hold up the
/// alert log: every alert reaches `alerts.jsonl`, and the node still stops
/// cleanly (it waits a bounded time for stdout).
#[test]
fn a_stdout_nobody_reads_does_not_hold_up_the_alert_log() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors from pipe2, each owned once.
    let (unread, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let data_dir = temp_dir("stdout-unread");
    let node = Appliance::start_with(data_dir.clone(), &["--cores", "1"], move |command| {
        command.stdout(std::process::Stdio::from(write_end));
    })
    .unwrap();
    // About 300 alerts of ~1 KB: several times a pipe's 64 KiB buffer.
    let attackers = 300;
    let lines: String = (0..attackers)
        .flat_map(|a| {
            (0..10).map(move |i| {
                ssh_failure(i, &format!("10.77.{}.{}", a / 200, a % 200 + 1), "root") + "\n"
            })
        })
        .collect();
    let mut stream = TcpStream::connect(node.tcp()).unwrap();
    stream.write_all(lines.as_bytes()).unwrap();
    drop(stream);
    let alerts = node.wait_for_alerts(attackers, Duration::from_secs(30));
    assert_eq!(alerts.len(), attackers, "the log stalled behind stdout");
    // Within the stdout queue: nothing missed yet, and the counter is there.
    let page = node.metrics();
    assert_eq!(
        shardwatch_tests::metric_values(&page, "shardwatch_alerts_stdout_dropped_total", ""),
        vec![0.0],
        "{page}"
    );
    let stopped = node.stop().unwrap();
    assert!(
        stopped
            .stderr
            .iter()
            .any(|l| l.contains("stdout did not take the last alerts")),
        "{:?}",
        stopped.stderr
    );
    assert!(stopped.exit_ok, "{:?}", stopped.stderr);
    drop(unread);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The ids of the alerts in `path`, one per line (none if it is missing).
fn alert_ids(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let alert: Value = serde_json::from_str(line).expect("whole JSON lines");
            alert["id"].as_str().expect("an id").to_owned()
        })
        .collect()
}

/// A node restarted with its file output's cursor behind what the file
/// holds (as after a crash between a delivery and its cursor write; here
/// the cursor is deleted) delivers the alert log again from there, and the
/// file still holds each alert once.
#[test]
fn restarted_behind_its_cursor_the_file_output_holds_each_alert_once() {
    let dir = temp_dir("file-restart");
    let file = dir.join("alerts-out.jsonl");
    let config = dir.join("shardwatch.toml");
    std::fs::write(
        &config,
        format!("[outputs]\nfile_path = \"{}\"\n", file.display()),
    )
    .unwrap();
    let args = [
        "--cores",
        "1",
        "--quiet",
        "--config",
        config.to_str().unwrap(),
    ];
    let app = Appliance::start("file-restart", &args).unwrap();
    send_brute_forces(&app, 1, 5);
    wait_until(|| alert_ids(&file).len() == 5, "five alerts in the file");
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    let cursor = stopped.data_dir.join("outputs").join("file.offset");
    std::fs::remove_file(&cursor).expect("the file output saved its cursor");

    let app = Appliance::start_in(stopped.data_dir.clone(), &args).unwrap();
    send_brute_forces(&app, 6, 5);
    // Every alert there, and the output through the whole log (the first
    // five again too).
    wait_until(
        || {
            let ids = alert_ids(&file);
            let page = app.metrics();
            ids.iter().collect::<std::collections::BTreeSet<_>>().len() == 10
                && page
                    .lines()
                    .any(|l| l == "shardwatch_output_backlog_bytes{output=\"file\"} 0")
                && std::fs::read_to_string(&cursor)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    == std::fs::metadata(app.data_dir.join("alerts.jsonl"))
                        .ok()
                        .map(|m| m.len())
        },
        "ten alerts, and the file output at the end of the alert log",
    );
    let ids = alert_ids(&file);
    assert_eq!(ids.len(), 10, "each alert once: {ids:?}");
    assert!(app.stop().unwrap().exit_ok);
}

/// The RELP forward against a real rsyslog (`imrelp` writing `%msg%` to a
/// file), which starts only after the first alerts were raised: those wait
/// in the alert log, counted as failed deliveries, and every alert reaches
/// rsyslog's file once it listens.
#[test]
fn relp_forward_delivers_every_alert_to_a_real_rsyslog_that_starts_late() {
    relp_forward_to_rsyslog("relp-forward", false);
}

/// The same inside TLS, both ways authenticated: rsyslog presents a
/// certificate for 127.0.0.1 and wants a client certificate from the test
/// CA (`tls.authMode="certvalid"`), which the output presents.
#[test]
fn relp_forward_over_mutual_tls_to_a_real_rsyslog() {
    relp_forward_to_rsyslog("relp-forward-tls", true);
}

fn relp_forward_to_rsyslog(name: &str, tls: bool) {
    let dir = temp_dir(name);
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut outputs =
        format!("[outputs]\nrelp_forward = \"127.0.0.1:{port}\"\nforward_ack_timeout_s = 5\n");
    let mut imrelp_tls = String::new();
    if tls {
        let (ca, ca_pem) = shardwatch_tests::TestCa::new(&dir);
        let (server_crt, server_key) = ca.issue("server", &["127.0.0.1"]);
        let (client_crt, client_key) = ca.issue("client", &["shardwatch.test"]);
        outputs.push_str(&format!(
            "relp_forward_tls = true\ntls_ca_file = \"{}\"\ntls_client_cert = \"{}\"\n\
             tls_client_key = \"{}\"\n",
            ca_pem.display(),
            client_crt.display(),
            client_key.display()
        ));
        imrelp_tls = format!(
            r#" tls="on" tls.authMode="certvalid" tls.caCert="{}" tls.myCert="{}" tls.myPrivKey="{}""#,
            ca_pem.display(),
            server_crt.display(),
            server_key.display()
        );
    }
    let config = dir.join("shardwatch.toml");
    std::fs::write(&config, outputs).unwrap();
    let app = Appliance::start(
        name,
        &[
            "--cores",
            "1",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .unwrap();
    let relp_metric =
        |name: &str| shardwatch_tests::metric_sum(&app.metrics(), name, "output=\"relp\"");
    send_brute_forces(&app, 1, 10);
    wait_until(|| app.alerts_file().len() == 10, "ten alerts in the log");
    wait_until(
        || relp_metric("shardwatch_output_failures_total") >= 1.0,
        "a failed delivery while nothing listens",
    );

    let received = dir.join("received.log");
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).unwrap();
    let _rsyslog = shardwatch_tests::Rsyslog::start(
        &dir,
        &format!(
            r#"global(workDirectory="{work}")
module(load="imrelp")
template(name="msgonly" type="string" string="%msg%\n")
input(type="imrelp" port="{port}" address="127.0.0.1"{imrelp_tls})
action(type="omfile" file="{received}" template="msgonly")
"#,
            work = work.display(),
            received = received.display(),
        ),
    );
    send_brute_forces(&app, 11, 10);
    let received_ids = || -> BTreeMap<String, u32> {
        let mut ids = BTreeMap::new();
        for line in std::fs::read_to_string(&received)
            .unwrap_or_default()
            .lines()
        {
            let alert: Value =
                serde_json::from_str(line.trim()).expect("alert JSON as the message");
            *ids.entry(alert["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        ids
    };
    wait_until(|| received_ids().len() == 20, "twenty alerts at rsyslog");
    let mut log_ids: Vec<String> = app
        .alerts_file()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    log_ids.sort();
    let ids = received_ids();
    assert_eq!(ids.keys().cloned().collect::<Vec<_>>(), log_ids);
    assert!(ids.values().all(|&n| n == 1), "each alert once: {ids:?}");
    // Counted once the answers are read, a moment after rsyslog wrote.
    wait_until(
        || relp_metric("shardwatch_output_delivered_total") == 20.0,
        "twenty delivered",
    );
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok, "{:?}", stopped.stderr);
}
