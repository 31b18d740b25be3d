//! End to end: the real `shardwatch` binary, driven by `shardwatch-load`
//! over loopback UDP, must detect every injected scenario; background alone
//! must raise nothing in `shardwatch replay`; and the batch comparison must
//! run over the same corpus.
//!
//! The appliance is built with `cargo build -p shardwatch --bin shardwatch`
//! first (a no-op when it is fresh), so this test always exercises the
//! current sources of the other crates.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Benches measure timing-sensitive things (UDP at a paced rate): two at
/// once on a 2-core machine starve each other, so they take turns.
static ONE_BENCH_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A small TCP load that only counts lines (no scenarios, the built-in
/// rules), quiet: for commands that run many benches.
const SMALL_TCP_LOAD: [&str; 13] = [
    "--transport",
    "tcp",
    "--rate",
    "20000",
    "--events",
    "400",
    "--scenarios",
    "none",
    "--rules",
    "none",
    "--drain-ms",
    "500",
    "--quiet",
];

/// The appliance binary (built once, or `SHARDWATCH_BIN`).
fn appliance_binary() -> PathBuf {
    shardwatch_tests::binary().to_path_buf()
}

fn load(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args(args)
        .output()
        .expect("shardwatch-load runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "shardwatch-load {args:?} failed:\n{stderr}"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `bench` of the appliance binary at 20,000 lines/s with a 3 s drain,
/// `extra` flags added, into `out`: its summary and its report.
fn bench(
    out: &Path,
    transport: &str,
    cores: &str,
    events: &str,
    extra: &[&str],
) -> (String, Value) {
    let binary = appliance_binary();
    let mut args = vec![
        "bench",
        "--binary",
        binary.to_str().unwrap(),
        "--cores",
        cores,
        "--transport",
        transport,
        "--events",
        events,
        "--rate",
        "20000",
        "--drain-ms",
        "3000",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let summary = load(&args);
    (summary, report(out))
}

/// A run's report scored at least `expected` alerts, detected all of
/// them and raised no other.
fn every_scenario_detected(doc: &Value, expected: u64, context: &str) {
    let detection = &doc["detection"];
    assert!(
        detection["expected"].as_u64().unwrap() >= expected,
        "{context}"
    );
    assert_eq!(detection["recall"], 1.0, "{context}");
    assert_eq!(detection["false_positives"], 0, "{context}");
}

fn report(dir: &Path) -> Value {
    for file in [
        "report.json",
        "summary.txt",
        "latency_cdf.svg",
        "throughput.svg",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn bench_detects_every_scenario_and_background_stays_quiet() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let binary = appliance_binary();
    let scratch = shardwatch_tests::temp_dir("harness-e2e");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let corpus = scratch.join("corpus.log");
    let bench_out = scratch.join("bench");

    // A corpus whose timeline starts now, so replay's RFC 3164 year
    // inference and the appliance's skew check both see recent events.
    load(&[
        "gen",
        "--out",
        &s(&corpus),
        "--events",
        "5000",
        "--entities",
        "50",
        "--seed",
        "7",
        "--start",
        "now",
    ]);
    let summary = load(&[
        "bench",
        "--binary",
        &s(&binary),
        "--cores",
        "2",
        "--transport",
        "udp",
        "--corpus",
        &s(&corpus),
        "--events",
        "5000",
        "--rate",
        "20000",
        "--drain-ms",
        "10000",
        "--out",
        &s(&bench_out),
        "--quiet",
    ]);
    let doc = report(&bench_out);
    let detection = &doc["detection"];
    // Every row, three instances each (spraying expects two alerts);
    // entries the binary cannot raise yet are reported as not scored.
    let truth: Value =
        serde_json::from_slice(&std::fs::read(scratch.join("corpus.log.truth.json")).unwrap())
            .unwrap();
    let not_scored: u64 = detection["not_scored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["entries"].as_u64().unwrap())
        .sum();
    assert_eq!(
        detection["expected"].as_u64().unwrap() + not_scored,
        truth["expected"].as_array().unwrap().len() as u64,
        "{summary}"
    );
    assert!(detection["expected"].as_u64().unwrap() >= 18, "{summary}");
    assert_eq!(detection["recall"], 1.0, "{summary}");
    for scenario in detection["scenarios"].as_array().unwrap() {
        assert_eq!(scenario["recall"], 1.0, "{scenario}");
        assert!(scenario["latency"]["count"].as_u64().unwrap() >= 1);
    }
    assert_eq!(detection["false_positives"], 0, "{summary}");
    // The latency's legs: every detected alert carries the appliance's
    // own latency, so each leg counts every detection.
    let split = &detection["latency_split"];
    let detected = split["sent_to_detected"]["count"].as_u64().unwrap();
    assert!(detected >= 18, "{split}");
    for leg in [
        "detected_to_observed",
        "intended_to_written",
        "written_to_received",
        "received_to_detected",
    ] {
        assert_eq!(
            split[leg]["count"].as_u64(),
            Some(detected),
            "{leg}: {split}"
        );
    }
    let csv = std::fs::read_to_string(bench_out.join("detections.csv")).unwrap();
    assert!(
        csv.starts_with("scenario,")
            && csv
                .lines()
                .next()
                .unwrap()
                .ends_with(",written_to_received_us"),
        "{csv}"
    );
    assert_eq!(doc["send"]["sent"], 5000);
    assert_eq!(doc["appliance"]["clean_exit"], true, "{summary}");
    assert!(doc["appliance"]["events_parsed"].as_u64().unwrap() > 0);
    // The report names the build it measured (`--version`).
    let version = doc["appliance"]["version"].as_str().unwrap_or_default();
    assert!(version.starts_with("shardwatch "), "{}", doc["appliance"]);
    let summary_txt = std::fs::read_to_string(bench_out.join("summary.txt")).unwrap();
    assert!(
        summary_txt.contains(&format!("({version})")),
        "{summary_txt}"
    );
    // The I/O sizes: journal writes and datagrams per read, from the
    // node's exit stats.
    let stats = &doc["appliance"]["stats"];
    let commits = stats["journal_commits"].as_u64().unwrap();
    assert!(commits >= 1, "{stats}");
    assert!(
        stats["journal_bytes"].as_u64().unwrap() >= commits,
        "{stats}"
    );
    assert!(stats["udp_batches"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        summary_txt.contains("appliance I/O: journal ") && summary_txt.contains(" per recvmmsg)"),
        "{summary_txt}"
    );
    // The kernel threads that ran meanwhile, each with the CPUs it may
    // run on, longest first (the machine's timer and RCU threads run in
    // any load of a few seconds).
    let kthreads = doc["kernel_threads"].as_array().unwrap();
    for pair in kthreads.windows(2) {
        assert!(pair[0]["on_cpu_ms"].as_f64() >= pair[1]["on_cpu_ms"].as_f64());
    }
    for t in kthreads {
        assert!(t["on_cpu_ms"].as_f64().unwrap() >= 0.1, "{t}");
        assert!(!t["allowed_cpus"].as_array().unwrap().is_empty(), "{t}");
    }
    // What the machine's CPUs did meanwhile: every CPU, the appliance's
    // among them, with busy and steal shares.
    let cpus = doc["machine_cpus"].as_array().unwrap();
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus.len() >= online.min(2), "{cpus:?}");
    for cpu in cpus {
        let busy = cpu["busy"].as_f64().unwrap();
        let steal = cpu["steal"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&busy) && (0.0..=busy).contains(&steal),
            "{cpu}"
        );
    }
    assert!(
        cpus.iter()
            .any(|c| c["role"] == "appliance" || c["role"] == "shared"),
        "{cpus:?}"
    );
    assert!(
        summary_txt.contains("machine while the load ran: CPU "),
        "{summary_txt}"
    );
    // The kernel's costs, measured before the load: a system call, a
    // fresh page, a wake-up round trip.
    let costs = &doc["kernel_costs"];
    for key in ["syscall_ns", "page_touch_ns", "wake_round_trip_p50_us"] {
        assert!(
            costs[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {costs}"
        );
    }
    assert!(
        summary_txt.contains("machine: kernel costs before the load: a system call "),
        "{summary_txt}"
    );

    // Background alone: replay raises nothing.
    let background = scratch.join("background.log");
    load(&[
        "gen",
        "--out",
        &s(&background),
        "--events",
        "20000",
        "--entities",
        "20",
        "--scenarios",
        "none",
        "--start",
        "now",
    ]);
    let replay = Command::new(&binary)
        .arg("replay")
        .arg(&background)
        .output()
        .unwrap();
    assert!(replay.status.success());
    let alerts = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(
        alerts.lines().filter(|l| !l.trim().is_empty()).count(),
        0,
        "background fired:\n{alerts}"
    );

    // The batch model over the same corpus, against the bench's numbers.
    let batch_out = scratch.join("batch");
    load(&[
        "batch",
        "--corpus",
        &s(&corpus),
        "--interval",
        "60s",
        "--binary",
        &s(&binary),
        "--streaming-report",
        &s(&bench_out.join("report.json")),
        "--out",
        &s(&batch_out),
    ]);
    let doc = report(&batch_out);
    let batch = &doc["batch"];
    assert_eq!(batch["outcome"]["recall"], 1.0, "{batch}");
    let ratio = batch["batch_over_streaming"]["p50"].as_f64().unwrap();
    assert!(
        ratio > 1.0,
        "a scheduled batch cannot beat streaming: {batch}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// RELP and TLS through the harness: every RELP message acknowledged, and
/// the appliance received every message sent over either transport.
#[test]
fn bench_over_relp_and_tls_delivers_every_event() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let scratch = shardwatch_tests::temp_dir("harness-reliable");
    for transport in ["relp", "tls"] {
        let (summary, doc) = bench(&scratch.join(transport), transport, "2", "3000", &[]);
        let sent = doc["send"]["sent"].as_u64().unwrap();
        assert_eq!(sent, 3000, "{summary}");
        assert_eq!(
            doc["appliance"]["received"].as_u64(),
            Some(sent),
            "{transport}: {summary}"
        );
        if transport == "relp" {
            assert_eq!(
                doc["send"]["relp"]["acked"].as_u64(),
                Some(sent),
                "{summary}"
            );
            assert_eq!(
                doc["send"]["relp"]["unacked"].as_u64(),
                Some(0),
                "{summary}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `lo`'s first receive queue's RPS mask as a test found it, and whether
/// the test may write it (root): tests steer only then.
struct LoMask {
    path: &'static Path,
    before: String,
    writable: bool,
}

impl LoMask {
    fn now() -> LoMask {
        let path = Path::new("/sys/class/net/lo/queues/rx-0/rps_cpus");
        let Ok(before) = std::fs::read_to_string(path) else {
            panic!("{} is unreadable: a kernel without RPS", path.display());
        };
        let writable = std::fs::OpenOptions::new().write(true).open(path).is_ok();
        LoMask {
            path,
            before,
            writable,
        }
    }

    /// The mask now.
    fn read(&self) -> String {
        std::fs::read_to_string(self.path).unwrap()
    }

    /// `--steer-loopback` when the mask may be written.
    fn steer_args(&self) -> &'static [&'static str] {
        if self.writable {
            &["--steer-loopback"]
        } else {
            &[]
        }
    }
}

/// `--steer-loopback`: the load runs with `lo`'s receive work on the
/// harness's CPUs, the report says so, and the mask is put back after.
/// Without the right to write the mask the bench fails and says why.
#[test]
fn bench_steers_loopback_for_the_load_and_puts_it_back() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let LoMask {
        path: mask,
        before,
        writable,
    } = LoMask::now();
    let scratch = shardwatch_tests::temp_dir("harness-steer");
    if !writable {
        let binary = appliance_binary();
        let out = scratch.join("refused");
        let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
            .args(["bench", "--binary", binary.to_str().unwrap()])
            .args(["--cores", "1", "--transport", "tcp", "--events", "3000"])
            .args([
                "--steer-loopback",
                "--quiet",
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("--steer-loopback") && stderr.contains("cannot write"),
            "{stderr}"
        );
        // compare refuses before its first run.
        let steered = format!("s={}+steer-loopback", binary.display());
        let out = scratch.join("compare-refused");
        let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
            .args(["compare", "--variant", &steered, "--out"])
            .arg(&out)
            .args(SMALL_TCP_LOAD)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("cannot write"), "{stderr}");
        assert!(!out.join("runs").exists());
        let _ = std::fs::remove_dir_all(&scratch);
        return;
    }
    let (summary, doc) = bench(
        &scratch.join("steered"),
        "tcp",
        "1",
        "3000",
        &["--steer-loopback"],
    );
    assert_eq!(
        doc["appliance"]["received"].as_u64(),
        Some(3000),
        "{summary}"
    );
    let rps = &doc["loopback_rps"];
    assert_eq!(rps["steered_by_harness"], true, "{rps}");
    let harness = doc["appliance"]["harness_cpus"].as_array().unwrap().clone();
    assert!(!harness.is_empty(), "{doc}");
    assert_eq!(rps["cpus"].as_array().unwrap(), &harness, "{rps}");
    assert!(
        summary.contains("loopback receive processing steered to CPUs"),
        "{summary}"
    );
    assert_eq!(std::fs::read_to_string(mask).unwrap(), before);
    // And without the flag a TCP bench names the unsteered default.
    let (summary, doc) = bench(&scratch.join("plain"), "tcp", "1", "3000", &[]);
    assert_eq!(doc["loopback_rps"]["steered_by_harness"], false, "{doc}");
    if before.trim().trim_start_matches(['0', ',']).is_empty() {
        assert!(summary.contains("is not steered"), "{summary}");
    }
    // compare: a variant with the suffix steers its runs, the other not.
    let binary = appliance_binary();
    let (plain, steered) = (
        format!("a={}", binary.display()),
        format!("s={}+steer-loopback", binary.display()),
    );
    let out = scratch.join("compare");
    let mut args = vec!["compare", "--variant", &plain, "--variant", &steered];
    args.extend(["--rounds", "1", "--out", out.to_str().unwrap()]);
    args.extend(SMALL_TCP_LOAD);
    let summary = load(&args);
    assert!(summary.contains("(--steer-loopback)"), "{summary}");
    let doc = report(&out);
    let variants = doc["compare"]["variants"].as_array().unwrap();
    for (v, steers) in variants.iter().zip([false, true]) {
        assert_eq!(v["steer_loopback"], steers, "{v}");
        let run = report(Path::new(v["runs"][0]["dir"].as_str().unwrap()));
        assert_eq!(run["loopback_rps"]["steered_by_harness"], steers, "{run}");
    }
    assert_eq!(std::fs::read_to_string(mask).unwrap(), before);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `--sender-threads 2` over two TCP connections to a 2-core node: each
/// thread sends its stripes of the corpus over its own connection, and
/// the node still receives every line and raises every scenario's alert
/// and nothing else.
#[test]
fn bench_with_two_sender_threads_delivers_every_line_and_detects_every_scenario() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let scratch = shardwatch_tests::temp_dir("harness-threads");
    let (summary, doc) = bench(
        &scratch.join("out"),
        "tcp",
        "2",
        "60000",
        &["--connections", "2", "--sender-threads", "2"],
    );
    assert_eq!(doc["send"]["sender_threads"], 2, "{summary}");
    assert!(summary.contains("2 sender threads"), "{summary}");
    assert_eq!(doc["send"]["sent"].as_u64(), Some(60_000), "{summary}");
    assert_eq!(
        doc["appliance"]["received"].as_u64(),
        Some(60_000),
        "{summary}"
    );
    every_scenario_detected(&doc, 18, &summary);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A `bench` started long enough (20 s at 20,000 lines/s over TCP) to
/// be still sending when the test signals it, once its appliance is up
/// and its first progress line is out.
struct Sending {
    harness: std::process::Child,
    /// The appliance's pid and data dir.
    pid: u32,
    data: PathBuf,
    /// The harness's stderr lines after those in `told`.
    lines: std::sync::mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
    told: Vec<String>,
}

/// `temp`: the harness's temp dir (`TMPDIR`), where its appliance's
/// data and its record of what to undo go.
fn bench_until_sending(out: &Path, extra: &[&str], temp: Option<&Path>) -> Sending {
    use std::io::BufRead;
    let binary = appliance_binary();
    let mut args = vec!["bench", "--binary", binary.to_str().unwrap()];
    args.extend(["--cores", "1", "--transport", "tcp", "--rate", "20000"]);
    args.extend(["--events", "400000", "--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"));
    if let Some(temp) = temp {
        command.env("TMPDIR", temp);
    }
    let mut harness = command
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = harness.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut told = Vec::new();
    let mut appliance: Option<(u32, PathBuf)> = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_else(|_| panic!("no progress line; stderr: {told:#?}"));
        if let Some(rest) = line.strip_prefix("shardwatch-load: appliance pid ") {
            let pid = rest.split(' ').next().unwrap().parse().unwrap();
            let data = rest.rsplit(", data ").next().unwrap();
            appliance = Some((pid, PathBuf::from(data)));
        }
        let sending = appliance.is_some() && line.contains(" sent ");
        told.push(line);
        if sending {
            break;
        }
    }
    let (pid, data) = appliance.unwrap();
    assert!(data.is_dir(), "{}", data.display());
    Sending {
        harness,
        pid,
        data,
        lines,
        reader,
        told,
    }
}

/// A harness killed with SIGKILL cannot undo anything, but the kernel
/// still stops its appliance (`PR_SET_PDEATHSIG`): no node is left
/// running and listening. Its data dir and (as root) loopback's steered
/// masks stay, until the next harness started with the same temp dir
/// finds its record and puts them right, whatever its command.
#[test]
fn bench_killed_with_sigkill_leaves_no_appliance_running_and_the_next_harness_undoes_the_rest() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let lo = LoMask::now();
    let extra = lo.steer_args();
    let scratch = shardwatch_tests::temp_dir("harness-sigkill");
    let temp = scratch.join("tmp");
    std::fs::create_dir_all(&temp).unwrap();
    let mut sending = bench_until_sending(&scratch.join("out"), extra, Some(&temp));
    assert!(
        sending.data.starts_with(&temp),
        "{}",
        sending.data.display()
    );
    sending.harness.kill().unwrap();
    sending.harness.wait().unwrap();
    // Gone, or a zombie its new parent has not reaped yet.
    let stat = format!("/proc/{}/stat", sending.pid);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let state = std::fs::read_to_string(&stat).ok().and_then(|s| {
            s.rsplit(") ")
                .next()
                .map(|r| r.chars().next().unwrap_or('?'))
        });
        if matches!(state, None | Some('Z') | Some('X')) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the appliance (pid {}) still runs 20 s after its harness was killed: state {state:?}",
            sending.pid
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sending.reader.join().unwrap();
    // Left behind: the data dir, the masks.
    let left = sending.data.is_dir();
    let steered = lo.read() != lo.before;
    // The next harness, here one that only writes a corpus, undoes it.
    let gen = || {
        Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
            .env("TMPDIR", &temp)
            .args(["gen", "--events", "5000", "--out"])
            .arg(scratch.join("corpus.log"))
            .output()
            .unwrap()
    };
    let output = gen();
    let told = String::from_utf8_lossy(&output.stderr).into_owned();
    let after = lo.read();
    if after != lo.before {
        // Put right for the tests after this one whatever happened.
        let _ = std::fs::write(lo.path, &lo.before);
    }
    assert!(output.status.success(), "{told}");
    assert!(left, "the data dir was removed by no one");
    assert!(
        told.contains(&format!(
            "harness pid {} ended without undoing what it did",
            sending.harness.id()
        )),
        "{told}"
    );
    assert!(
        told.contains(&format!("removed {}", sending.data.display())),
        "{told}"
    );
    assert!(!sending.data.exists(), "{told}");
    if lo.writable {
        assert!(steered, "not steered");
        assert!(
            told.contains(&format!("put {} back", lo.path.display())),
            "{told}"
        );
        assert_eq!(after, lo.before, "{told}");
    }
    // Nothing is left to undo, so a third harness says nothing of it.
    let output = gen();
    let told = String::from_utf8_lossy(&output.stderr);
    assert!(!told.contains("ended without undoing"), "{told}");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A harness ended by a signal (`kill`, `timeout`, a closed terminal)
/// stops the appliance it started, puts back loopback's masks it steered
/// (as root), removes the appliance's scratch data, says so, and ends by
/// the same signal. Before, the appliance kept running and listening,
/// its journal was left in the temp dir and the masks stayed steered.
#[test]
fn bench_ended_by_a_signal_stops_its_appliance_and_puts_back_what_it_changed() {
    use std::os::unix::process::ExitStatusExt;
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let lo = LoMask::now();
    let extra = lo.steer_args();
    let scratch = shardwatch_tests::temp_dir("harness-signal");
    let out = scratch.join("out");
    let Sending {
        mut harness,
        pid,
        data,
        lines,
        reader,
        mut told,
    } = bench_until_sending(&out, extra, Some(&scratch));
    if lo.writable {
        assert_ne!(lo.read(), lo.before, "not steered");
    }
    // SAFETY: kill(2) on the harness, our unreaped child.
    unsafe {
        libc::kill(harness.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = harness.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the harness is still running 30 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    reader.join().unwrap();
    told.extend(lines.try_iter());
    let told = told.join("\n");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}; {told}");
    assert!(told.contains("interrupted by SIGTERM"), "{told}");
    // It stopped on SIGTERM and exited cleanly: the sender stopped
    // first, so the appliance had no connection left to drain.
    assert!(
        told.contains(&format!("(pid {pid}): sent SIGTERM, exited with 0")),
        "{told}"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the appliance (pid {pid}) outlived the harness"
    );
    assert!(
        told.contains(&format!("removed {}", data.display())),
        "{told}"
    );
    assert!(!data.exists(), "{} left behind", data.display());
    assert_eq!(lo.read(), lo.before);
    if lo.writable {
        assert!(
            told.contains(&format!("put {} back", lo.path.display())),
            "{told}"
        );
    }
    // Undone, it leaves no record for the next harness to undo again.
    // SAFETY: geteuid cannot fail.
    let records = scratch.join(format!("shardwatch-load-undo-{}", unsafe {
        libc::geteuid()
    }));
    let left: Vec<_> = std::fs::read_dir(&records)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?} left in {}", records.display());
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `--sender-clock`: the scenarios stamped by senders five hours behind
/// and ahead of the machine's clock are all detected, the load spanning
/// several of the node's one-second ticks (a node that ended windows when
/// its clock passed their end in event time missed about half of them
/// with the senders behind: 102 of 210 in a 300,000-line bench).
#[test]
fn bench_with_senders_hours_off_the_clock_detects_every_scenario() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let scratch = shardwatch_tests::temp_dir("harness-skewed");
    for offset in ["-5h", "5h"] {
        let clock = format!("--sender-clock={offset}");
        let (summary, doc) = bench(&scratch.join(offset), "tcp", "1", "60000", &[&clock]);
        // The corpus's timeline starts the offset away from now.
        let start_ns = doc["load"]["corpus_meta"]["start_ns"].as_i64().unwrap();
        assert_eq!(
            doc["load"]["sender_clock_s"].as_i64(),
            Some(if offset.starts_with('-') { -5 } else { 5 } * 3600)
        );
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let expected_start = now_ns + sign * 5 * 3_600_000_000_000;
        assert!(
            (start_ns - expected_start).abs() < 600_000_000_000,
            "{offset}: corpus starts at {start_ns}, expected about {expected_start}"
        );
        every_scenario_detected(&doc, 18, &format!("{offset}: {summary}"));
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A 1-core appliance with the scenario rules whose API (and live alert
/// stream) asks for `token`, `extra` flags added.
fn appliance_with_token(name: &str, token: &str, extra: &[&str]) -> shardwatch_tests::Appliance {
    let rules = shardwatch_tests::workspace_root().join("perf/rules/scenarios.yml");
    let mut args = vec!["--cores", "1", "--quiet", "--api-token", token];
    args.extend(["--rules", rules.to_str().unwrap()]);
    args.extend_from_slice(extra);
    shardwatch_tests::Appliance::start(name, &args).unwrap()
}

/// The harness subscribed to the appliance's live alert stream (as for a
/// node whose alert log is on another machine): every scenario detected,
/// the collector reports the stream, and a wrong token is refused before
/// any event is sent.
#[test]
fn run_scores_alerts_from_the_live_stream() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let token = "harness-stream-token";
    let app = appliance_with_token("harness-stream", token, &[]);
    let scratch = shardwatch_tests::temp_dir("harness-stream-out");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let url = format!("http://{}", app.api());
    let target = format!("tcp://{}", app.tcp());
    let out = scratch.join("run");
    let summary = load(&[
        "run",
        "--target",
        &target,
        "--alerts-url",
        &url,
        "--alerts-token",
        token,
        "--events",
        "3000",
        "--entities",
        "50",
        "--rate",
        "20000",
        "--drain-ms",
        "10000",
        "--out",
        &s(&out),
        "--quiet",
    ]);
    let doc = report(&out);
    let detection = &doc["detection"];
    assert_eq!(detection["collector"]["source"], "stream", "{summary}");
    assert_eq!(detection["collector"]["stream_error"], "", "{summary}");
    every_scenario_detected(&doc, 6, &summary);
    // The node's own account of the load, read from its API (the
    // stream's address) before and after: every line, and its CPU.
    let node = &doc["appliance_api"];
    assert_eq!(node["received"], 3000, "{node}");
    assert_eq!(node["parsed"], 3000, "{node}");
    assert!(node["process_cpu_s"].as_f64().unwrap() > 0.0, "{node}");
    assert!(
        node["cores_cpu_us_per_event"].as_f64().unwrap() > 0.0,
        "{node}"
    );
    let text = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(
        text.contains("received 3000 of 3000 sent, parsed 3000"),
        "{text}"
    );

    let refused = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args([
            "run",
            "--target",
            &target,
            "--alerts-url",
            &url,
            "--alerts-token",
            "wrong",
            "--events",
            "3000",
            "--entities",
            "50",
            "--out",
            &s(&scratch.join("refused")),
            "--quiet",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("401"), "{stderr}");
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    // Nothing of the refused run reached the node: its events were never
    // sent.
    assert_eq!(
        shardwatch_tests::total(&stopped.stats, "events_parsed"),
        3000
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

/// An IPv4 address of this machine's that is not loopback (an interface
/// that is up), if it has one.
fn non_loopback_address() -> Option<std::net::Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list freed below; each entry
    // is read only while the list lives, its address only when it is an
    // AF_INET one (a sockaddr_in).
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut found = None;
        let mut at = list;
        while !at.is_null() {
            let entry = &*at;
            let up = entry.ifa_flags & libc::IFF_UP as libc::c_uint != 0;
            let loopback = entry.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0;
            if up
                && !loopback
                && !entry.ifa_addr.is_null()
                && i32::from((*entry.ifa_addr).sa_family) == libc::AF_INET
            {
                let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                found = Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                break;
            }
            at = entry.ifa_next;
        }
        libc::freeifaddrs(list);
        found
    }
}

/// `run` refuses a target or alert stream that is not a loopback address
/// unless `--allow-remote` asks for it (a typo must not send load to
/// someone else's network), and with it drives an appliance listening
/// on such an address (here one of this machine's own, so the test needs
/// no second machine) and says so in its report.
#[test]
fn run_sends_to_an_address_off_loopback_only_when_asked() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let scratch = shardwatch_tests::temp_dir("harness-remote");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let common = [
        "--events",
        "3000",
        "--entities",
        "50",
        "--rate",
        "20000",
        "--quiet",
    ];
    // Refused before anything is sent, wherever the address is.
    let refused = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args(["run", "--target", "tcp://10.255.255.1:514", "--out"])
        .arg(scratch.join("refused"))
        .args(common)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("not a loopback address: tcp://10.255.255.1:514;")
            && stderr.contains("add --allow-remote"),
        "{stderr}"
    );
    let Some(ip) = non_loopback_address() else {
        eprintln!("no address off loopback on this machine: --allow-remote not driven");
        let _ = std::fs::remove_dir_all(&scratch);
        return;
    };
    let token = "harness-remote-token";
    let at = format!("{ip}:0");
    let app = appliance_with_token("harness-remote", token, &["--tcp", &at, "--api", &at]);
    let target = format!("tcp://{}", app.tcp());
    let url = format!("http://{}", app.api());
    assert!(target.contains(&ip.to_string()), "{target}");
    let stream = ["--alerts-url", url.as_str(), "--alerts-token", token];
    // Without the flag: refused, naming both addresses; nothing sent.
    let refused = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args(["run", "--target", &target])
        .args(stream)
        .args(["--out", &s(&scratch.join("refused-local"))])
        .args(common)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&format!("{target}, --alerts-url {url}")),
        "{stderr}"
    );
    let out = scratch.join("run");
    let mut args = vec!["run", "--allow-remote", "--target", &target];
    args.extend(stream);
    args.extend(["--drain-ms", "10000", "--out", out.to_str().unwrap()]);
    args.extend(common);
    let summary = load(&args);
    let doc = report(&out);
    every_scenario_detected(&doc, 6, &summary);
    assert_eq!(doc["appliance_api"]["parsed"], 3000, "{summary}");
    assert_eq!(
        doc["remote_targets"],
        serde_json::json!([target, format!("--alerts-url {url}")]),
        "{summary}"
    );
    let text = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(text.contains("remote: tcp://"), "{text}");
    let stopped = app.stop().unwrap();
    assert!(stopped.exit_ok);
    assert_eq!(
        shardwatch_tests::total(&stopped.stats, "events_parsed"),
        3000
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `run` against two nodes (as it will drive a cluster): each node's API
/// read before and after (`--appliance-api` twice), a line each in the
/// summary and their total, and the lines the harness dealt between them
/// add up to what it sent.
#[test]
fn run_reads_every_node_s_api_and_totals_them() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let token = "harness-nodes-token";
    let a = appliance_with_token("harness-node-a", token, &[]);
    let b = appliance_with_token("harness-node-b", token, &[]);
    let scratch = shardwatch_tests::temp_dir("harness-nodes");
    let out = scratch.join("run");
    let (ta, tb) = (format!("tcp://{}", a.tcp()), format!("tcp://{}", b.tcp()));
    let (aa, ab) = (format!("http://{}", a.api()), format!("http://{}", b.api()));
    let mut args = vec!["run", "--target", &ta, "--target", &tb];
    args.extend(["--appliance-api", &aa, "--appliance-api", &ab]);
    args.extend([
        "--alerts-token",
        token,
        "--events",
        "3000",
        "--entities",
        "50",
    ]);
    args.extend(["--rate", "20000", "--quiet", "--out", out.to_str().unwrap()]);
    load(&args);
    let doc = report(&out);
    let node = &doc["appliance_api"];
    assert_eq!(node["parsed"], 3000, "{node}");
    assert_eq!(node["cores"], 2, "{node}");
    let nodes = node["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{node}");
    for (n, app) in nodes.iter().zip([&a, &b]) {
        assert_eq!(n["api"], app.api().to_string(), "{node}");
        assert!(n["parsed"].as_u64().unwrap() > 0, "{node}");
    }
    let text = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(
        text.contains("appliances (2 nodes, 2 cores): received 3000 of 3000 sent, parsed 3000"),
        "{text}"
    );
    for app in [a, b] {
        assert!(app.stop().unwrap().exit_ok);
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// `bench --appliance-config` hands the file to the appliance: a setting
/// out of range there stops the appliance, and bench says why.
#[test]
fn bench_passes_its_appliance_config_on() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let binary = appliance_binary();
    let scratch = shardwatch_tests::temp_dir("harness-config");
    let config = scratch.join("appliance.toml");
    std::fs::write(&config, "[ingest]\nread_coalesce_us = 99999\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args(["bench", "--binary"])
        .arg(&binary)
        .args([
            "--cores",
            "1",
            "--transport",
            "tcp",
            "--rate",
            "1000",
            "--events",
            "100",
            "--rules",
            "none",
            "--quiet",
            "--out",
        ])
        .arg(scratch.join("out"))
        .arg("--appliance-config")
        .arg(&config)
        .output()
        .expect("shardwatch-load runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("ingest.read_coalesce_us"), "{stderr}");
}

#[test]
fn compare_runs_every_variant_in_every_round_and_rotates_the_order() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let binary = appliance_binary();
    let scratch = shardwatch_tests::temp_dir("harness-compare");
    let config = scratch.join("no-journal.toml");
    std::fs::write(&config, "[storage]\njournal = false\n").unwrap();
    let out = scratch.join("out");
    let a = format!("a={}", binary.display());
    let b = format!("b={}@{}", binary.display(), config.display());
    let mut args = vec![
        "compare",
        "--variant",
        &a,
        "--variant",
        &b,
        "--rounds",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SMALL_TCP_LOAD);
    let summary = load(&args);
    assert!(
        summary.contains("b / a within each round: parsed/s"),
        "{summary}"
    );
    let doc = report(&out);
    let compare = &doc["compare"];
    let variants = compare["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2, "{compare}");
    for (v, name) in variants.iter().zip(["a", "b"]) {
        assert_eq!(v["name"], name);
        let runs = v["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{v}");
        for (run, round) in runs.iter().zip(1..) {
            assert_eq!(run["round"], round);
            assert_eq!(run["sent"], 400, "{run}");
            assert_eq!(run["received"], 400, "{run}");
            assert_eq!(run["events_parsed"], 400, "{run}");
            assert_eq!(run["exit_code"], 0, "{run}");
            assert!(run["parsed_eps"].as_f64().unwrap() > 0.0, "{run}");
            // Each run keeps bench's own report.
            let dir = Path::new(run["dir"].as_str().unwrap());
            assert_eq!(
                dir,
                out.join("runs").join(format!("r{round}-{name}")).as_path()
            );
            let own = report(dir);
            assert_eq!(own["mode"], "bench");
            assert_eq!(own["appliance"]["events_parsed"], 400);
        }
    }
    // a runs first in round 1, b in round 2.
    assert_eq!(variants[0]["runs"][0]["position"], 1);
    assert_eq!(variants[1]["runs"][0]["position"], 2);
    assert_eq!(variants[1]["runs"][1]["position"], 1);
    assert_eq!(variants[0]["runs"][1]["position"], 2);
    // b's config reached its appliance: it journaled nothing.
    let b_run = report(Path::new(variants[1]["runs"][0]["dir"].as_str().unwrap()));
    let a_run = report(Path::new(variants[0]["runs"][0]["dir"].as_str().unwrap()));
    let journal_bytes = |doc: &Value| doc["appliance"]["stats"]["journal_bytes"].as_u64().unwrap();
    assert!(journal_bytes(&a_run) > 0, "{}", a_run["appliance"]["stats"]);
    assert_eq!(journal_bytes(&b_run), 0, "{}", b_run["appliance"]["stats"]);
    let ratio = &compare["ratios"][0];
    assert_eq!(ratio["variant"], "b");
    assert_eq!(ratio["against"], "a");
    assert!(ratio["ratios"]["parsed_eps"]["median"].as_f64().unwrap() > 0.0);
    assert_eq!(
        ratio["ratios"]["parsed_eps"]["per_round"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A variant whose binary is missing fails before any run, named.
    let missing = format!("gone={}", scratch.join("no-such-binary").display());
    let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args(["compare", "--variant", &a, "--variant", &missing, "--out"])
        .arg(scratch.join("out-missing"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("variant gone"), "{stderr}");
    assert!(!scratch.join("out-missing").join("runs").exists());
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn scaling_benches_every_core_count_with_its_connections_per_core() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let binary = appliance_binary();
    let scratch = shardwatch_tests::temp_dir("harness-scaling");
    let out = scratch.join("out");
    let mut common = vec!["--binary", binary.to_str().unwrap(), "--cores", "1,2"];
    common.extend(SMALL_TCP_LOAD);
    let mut args = vec![
        "scaling",
        "--rounds",
        "2",
        "--connections-per-core",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(&common);
    let summary = load(&args);
    assert!(
        summary.contains("cores  events/s (median)  speedup  efficiency"),
        "{summary}"
    );
    let doc = report(&out);
    let counts = doc["scaling"]["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 2, "{}", doc["scaling"]);
    for (count, cores) in counts.iter().zip([1u64, 2]) {
        assert_eq!(count["cores"], cores);
        let eps = count["eps"].as_array().unwrap();
        assert_eq!(eps.len(), 2, "{count}");
        assert!(eps.iter().all(|e| e.as_f64().unwrap() > 0.0), "{count}");
        for (dir, round) in count["dirs"].as_array().unwrap().iter().zip(1..) {
            let dir = Path::new(dir.as_str().unwrap());
            assert_eq!(
                dir,
                out.join("runs")
                    .join(format!("r{round}-{cores}cores"))
                    .as_path()
            );
            // Each run is a bench of that many cores and twice as many
            // connections, every line parsed.
            let own = report(dir);
            assert_eq!(own["mode"], "bench");
            assert_eq!(own["appliance"]["cores"], cores);
            assert_eq!(own["load"]["connections"], 2 * cores);
            assert_eq!(own["appliance"]["events_parsed"], 400);
        }
    }
    let rows = doc["scaling"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["speedup"], 1.0);
    assert!(rows[1]["efficiency"].as_f64().unwrap() > 0.0);
    let plot = std::fs::read_to_string(out.join("scaling.svg")).unwrap();
    assert!(plot.contains("linear from 1 core(s)"), "{plot}");

    // Connections come from the cores: --connections is refused, before
    // any run.
    let mut args = vec!["scaling", "--connections", "3", "--out"];
    let refused_out = scratch.join("out-refused");
    args.push(refused_out.to_str().unwrap());
    args.extend(&common);
    let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--connections-per-core"), "{stderr}");
    assert!(!refused_out.join("runs").exists());
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn goals_measures_each_goal_and_gives_each_a_verdict() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let binary = appliance_binary();
    let scratch = shardwatch_tests::temp_dir("harness-goals");
    let out = scratch.join("out");
    // A node configuration for the TCP, UDP and latency runs.
    let config = scratch.join("no-journal.toml");
    std::fs::write(&config, "[storage]\njournal = false\n").unwrap();
    let summary = load(&[
        "goals",
        "--binary",
        binary.to_str().unwrap(),
        "--appliance-config",
        config.to_str().unwrap(),
        "--rounds",
        "1",
        "--tcp-events",
        "3000",
        "--udp-events",
        "3000",
        "--max-events",
        "3000",
        "--paced-s",
        "1",
        "--batch-events",
        "4000",
        "--udp-ceiling-trials",
        "1",
        "--drain-ms",
        "500",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let doc = report(&out);
    let goals = &doc["goals"];
    let verdicts = goals["verdicts"].as_array().unwrap();
    let names: Vec<&str> = verdicts
        .iter()
        .map(|v| v["goal"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tcp", "udp", "latency", "batch"], "{goals}");
    for v in verdicts {
        // Small runs settle nothing, but each goal has its number and a
        // verdict on it, and the summary says which.
        assert!(v["met"].is_boolean(), "{v}");
        let word = if v["met"] == true { "MET" } else { "NOT MET" };
        let line = format!("goal {}: {word} (", v["goal"].as_str().unwrap());
        assert!(summary.contains(&line), "{line} not in {summary}");
    }
    for goal in ["tcp", "udp"] {
        let round = &goals[goal][0];
        assert_eq!(round["sent"], 3000, "{round}");
        assert!(round["parsed_eps"].as_f64().unwrap() > 0.0, "{round}");
        assert_eq!(
            report(Path::new(round["dir"].as_str().unwrap()))["appliance"]["transport"],
            goal
        );
    }
    assert_eq!(goals["tcp"][0]["lost_before_receive"], 0);
    // The configuration reached those runs' node: it journaled nothing.
    for dir in [&goals["tcp"][0]["dir"], &goals["udp"][0]["dir"]] {
        let run = report(Path::new(dir.as_str().unwrap()));
        assert_eq!(
            run["appliance"]["stats"]["journal_bytes"], 0,
            "{}",
            run["appliance"]["stats"]
        );
    }
    assert_eq!(doc["appliance_config"], config.to_str().unwrap());
    assert!(
        summary.contains("node read --config") && summary.contains("no-journal.toml"),
        "{summary}"
    );
    // A UDP round that lost datagrams brings a search for the rate that
    // loses none; a clean one does not.
    let udp_lost = goals["udp"][0]["lost_before_receive"].as_u64().unwrap() > 0;
    assert_eq!(goals["udp_ceiling"].is_object(), udp_lost, "{goals}");
    let latency = &goals["latency"][0];
    let max = latency["max_eps"].as_f64().unwrap();
    assert!(max > 0.0, "{latency}");
    assert_eq!(
        latency["rate_eps"].as_f64().unwrap(),
        (max / 2.0).round().max(1.0)
    );
    let paced = report(Path::new(latency["paced_dir"].as_str().unwrap()));
    assert_eq!(
        paced["load"]["rate_eps"].as_f64().unwrap(),
        latency["rate_eps"].as_f64().unwrap(),
        "{}",
        paced["load"]
    );
    assert!(latency["p99_us"].as_u64().is_some(), "{latency}");
    let batch = &goals["batch"]["result"];
    assert!(
        batch["batch_p50_us"].as_u64().unwrap() > batch["stream_p50_us"].as_u64().unwrap(),
        "{batch}"
    );
    assert_eq!(batch["interval_s"], 300);
    // The machine's kernel costs before the first run and after the last.
    for when in ["before", "after"] {
        let costs = &doc["kernel_costs"][when];
        assert!(
            costs["syscall_ns"].as_f64().is_some_and(|v| v > 0.0),
            "{costs}"
        );
        let line = format!("machine: kernel costs {when} the goals: a system call ");
        assert!(summary.contains(&line), "{line} not in {summary}");
    }
    // Not steered: the summary says where loopback's receive work ran
    // when no one had steered it (the TCP goals include it).
    assert_eq!(doc["steer_loopback"], false);
    let lo = std::fs::read_to_string("/sys/class/net/lo/queues/rx-0/rps_cpus").unwrap();
    if lo.trim().trim_start_matches(['0', ',']).is_empty() {
        assert!(
            summary.contains("loopback receive processing is not steered"),
            "{summary}"
        );
    }

    let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args(["goals", "--only", "tcp,disk", "--out"])
        .arg(scratch.join("out-bad"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown goal \"disk\""),
        "{output:?}"
    );
    // A configuration that is not there is refused before any run.
    let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args(["goals", "--binary", binary.to_str().unwrap()])
        .args(["--appliance-config", "/nonexistent/node.toml", "--out"])
        .arg(scratch.join("out-no-config"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--appliance-config /nonexistent/node.toml is not a file"),
        "{output:?}"
    );
    assert!(!scratch.join("out-no-config").join("runs").exists());
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn ceiling_bisects_between_its_bounds_and_reports_every_trial() {
    let _alone = ONE_BENCH_AT_A_TIME.lock();
    let binary = appliance_binary();
    let scratch = shardwatch_tests::temp_dir("harness-ceiling");
    let ceiling = |out: &Path, extra: &[&str]| -> (String, Value) {
        let mut args = vec![
            "ceiling",
            "--binary",
            binary.to_str().unwrap(),
            "--trial-s",
            "1",
            "--drain-ms",
            "300",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let summary = load(&args);
        let doc = report(out);
        (summary, doc["ceiling"].clone())
    };
    // Each trial's own report: its transport and the rate it was paced at.
    let trial_load = |trial: &Value| -> (String, f64) {
        let doc = report(Path::new(trial["dir"].as_str().unwrap()));
        (
            doc["appliance"]["transport"].as_str().unwrap().to_string(),
            doc["load"]["rate_eps"].as_f64().unwrap(),
        )
    };

    // No trial can have a p99 under a microsecond: every one fails, and
    // the search halves its way down from the given upper bound.
    let out = scratch.join("p99");
    let (summary, c) = ceiling(
        &out,
        &[
            "--transport",
            "tcp",
            "--criterion",
            "p99:1us",
            "--high",
            "40000",
            "--trials",
            "3",
        ],
    );
    assert!(c["flat_out"].is_null(), "{c}");
    let trials = c["trials"].as_array().unwrap();
    let rates: Vec<f64> = trials
        .iter()
        .map(|t| t["rate_eps"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [20_000.0, 10_000.0, 5_000.0], "{c}");
    for t in trials {
        assert_eq!(t["met"], false, "{t}");
        assert!(t["why"].as_str().unwrap().contains("p99"), "{t}");
        let (transport, rate) = trial_load(t);
        assert_eq!(
            (transport.as_str(), rate),
            ("tcp", t["rate_eps"].as_f64().unwrap())
        );
    }
    assert!(c["ceiling_eps"].is_null() && c["confirm"].as_array().unwrap().is_empty());
    assert!(summary.contains("ceiling: none found"), "{summary}");

    // Without --high a flat-out run sets the bound; whatever each trial
    // met, the next rate is the middle of the bounds it left.
    let out = scratch.join("loss");
    let (summary, c) = ceiling(
        &out,
        &[
            "--transport",
            "udp",
            "--rules",
            "none",
            "--scenarios",
            "none",
            "--max-events",
            "3000",
            "--trials",
            "2",
            "--confirm",
            "1",
        ],
    );
    let flat = &c["flat_out"];
    assert!(flat["rate_eps"].is_null() && flat["sent"] == 3000, "{flat}");
    let high = c["high_eps"].as_f64().unwrap();
    assert_eq!(high, flat["sent_eps"].as_f64().unwrap().floor(), "{c}");
    let trials = c["trials"].as_array().unwrap();
    if flat["met"] == true {
        assert!(c["sender_bound"] == true && trials.is_empty(), "{c}");
        assert!(summary.contains("ceiling: the sender's"), "{summary}");
    } else {
        let (mut low, mut high) = (0.0f64, high);
        for t in trials {
            let rate = t["rate_eps"].as_f64().unwrap();
            assert_eq!(rate, ((low + high) / 2.0).round(), "{c}");
            assert_eq!(trial_load(t), ("udp".to_string(), rate));
            if t["met"] == true {
                low = rate;
            } else {
                high = rate;
            }
        }
        let best = trials
            .iter()
            .filter(|t| t["met"] == true)
            .map(|t| t["rate_eps"].as_f64().unwrap())
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        assert_eq!(c["ceiling_eps"].as_f64(), best, "{c}");
        assert_eq!(
            c["confirm"].as_array().unwrap().len(),
            usize::from(best.is_some())
        );
    }

    // The search chooses each run's rate; one given is refused.
    let output = Command::new(env!("CARGO_BIN_EXE_shardwatch-load"))
        .args(["ceiling", "--rate", "5000", "--out"])
        .arg(scratch.join("out-bad"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("ceiling sets each run's rate"),
        "{output:?}"
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
