//! `peers`: the same corpus through rsyslog, syslog-ng and sec beside
//! shardwatch, reporting events per second and CPU per event for each.
//!
//! rsyslog and syslog-ng each get a generated minimal configuration in a
//! scratch directory (one TCP input on loopback, one file output, nothing
//! else), run in the foreground, receive the corpus over TCP from the
//! harness's own sender (flat out, large writes, one connection), and are
//! timed from the first byte sent until their output file holds every line.
//! Their CPU time is user + system from `/proc/<pid>/stat`, sampled just
//! before sending and again once the output is complete, so start-up and
//! shutdown are not charged. sec reads the corpus file itself
//! (`--input=FILE --notail`, so it reads from the start and exits at the
//! end) with one SSH brute-force rule; it is timed from spawn to exit and its
//! CPU comes from `wait4`'s resource usage. shardwatch runs through the
//! `bench` path (TCP, `--quiet`, full detection) and its stats line.
//!
//! A peer that is not installed is reported as skipped with the reason; a
//! peer that is installed but misbehaves (no readiness, lines missing, a
//! crash) is reported as failed, and the command exits non-zero after
//! writing the report.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::appliance::ScratchDir;
use crate::bench::{self, BenchOptions};
use crate::clock;
use crate::corpus::{Corpus, TruthEntry};
use crate::interrupt::{self, Registered};
use crate::report::Report;
use crate::runner::RunOptions;
use crate::schedule::Schedule;
use crate::send::{self, Framing, SendConfig, Target};

/// How long a peer may take to start listening (or, for rsyslog, to write
/// its port file).
pub const PEER_START_TIMEOUT_NS: i64 = 30_000_000_000;
/// Longest a peer may take, from the first byte sent, to write every line.
pub const PEER_DRAIN_TIMEOUT_NS: i64 = 600_000_000_000;
/// Longest a peer's output may stop growing before the wait gives up.
pub const PEER_STALL_TIMEOUT_NS: i64 = 30_000_000_000;
/// How long a peer gets to exit after SIGTERM before SIGKILL.
pub const PEER_STOP_TIMEOUT_NS: i64 = 10_000_000_000;
/// How long sec may take to read the whole corpus and exit.
pub const SEC_RUN_TIMEOUT_NS: i64 = 600_000_000_000;
/// How often shardwatch's `/metrics` is polled while it works.
const METRICS_POLL_NS: i64 = 10_000_000;
/// Connect, read and write timeout of one `/metrics` request.
const METRICS_TIMEOUT_NS: i64 = 2_000_000_000;
/// Most bytes of one `/metrics` response read.
const METRICS_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Longest the `/metrics` watcher waits for shardwatch to process a corpus.
pub const PROCESSED_WAIT_TIMEOUT_NS: i64 = 600_000_000_000;
/// A run that ends within this factor of the send time was limited by the
/// sender; the report says so.
const SENDER_BOUND_FACTOR: f64 = 1.1;
/// How often the output file is checked while waiting.
const OUTPUT_POLL_NS: i64 = 5_000_000;
/// How often readiness is probed while a peer starts.
const START_POLL_NS: i64 = 20_000_000;
/// Bytes read from the output file per read call while counting lines.
const COUNT_CHUNK_BYTES: usize = 1024 * 1024;
/// Most bytes of a peer's stderr kept for the report.
pub const PEER_STDERR_BYTES_MAX: usize = 4 * 1024;
/// Most bytes of sec's alert file read back for scoring.
pub const SEC_ALERTS_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Where `perf/scripts/install-peers.sh` unpacks syslog-ng by default.
pub const DEFAULT_SYSLOG_NG_DIR: &str = "/opt/shardwatch-peers/syslog-ng";
/// The SSH brute-force rule's threshold and window, as in the built-in
/// shardwatch rule.
pub const SSH_BRUTE_FORCE_THRESHOLD: u32 = 10;
/// The SSH brute-force rule's window in seconds.
pub const SSH_BRUTE_FORCE_WINDOW_S: u32 = 300;
/// What sec writes before the source address on each alert line.
pub const SEC_ALERT_PREFIX: &str = "SSH Brute Force From One Source ";

/// A peer to compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Peer {
    /// rsyslogd: imtcp to omfile.
    Rsyslog,
    /// syslog-ng: network(tcp) to file().
    SyslogNg,
    /// sec, the Simple Event Correlator, with one SSH brute-force rule.
    Sec,
}

impl Peer {
    /// Every peer, in the order they run.
    pub const ALL: [Peer; 3] = [Peer::Rsyslog, Peer::SyslogNg, Peer::Sec];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Rsyslog => "rsyslog",
            Peer::SyslogNg => "syslog-ng",
            Peer::Sec => "sec",
        }
    }
}

/// Parses `--peers`: comma-separated names, `all` or `none`; duplicates are
/// dropped and the order of [`Peer::ALL`] kept.
pub fn parse_peers(text: &str) -> Result<Vec<Peer>, String> {
    let text = text.trim();
    if text == "all" {
        return Ok(Peer::ALL.to_vec());
    }
    if text == "none" || text.is_empty() {
        return Ok(Vec::new());
    }
    let mut wanted = Vec::new();
    for part in text.split(',').map(str::trim) {
        let peer = Peer::ALL
            .into_iter()
            .find(|p| p.name() == part)
            .ok_or_else(|| {
                format!("unknown peer {part:?}: choose from rsyslog, syslog-ng, sec, all, none")
            })?;
        wanted.push(peer);
    }
    Ok(Peer::ALL
        .into_iter()
        .filter(|p| wanted.contains(p))
        .collect())
}

/// Where the peers' programs are.
#[derive(Debug, Clone)]
pub struct PeerPaths {
    /// `rsyslogd`, or None to look in PATH and /usr/sbin.
    pub rsyslogd: Option<PathBuf>,
    /// The tree `install-peers.sh` unpacked syslog-ng into.
    pub syslog_ng_dir: PathBuf,
    /// `sec`, or None to look in PATH and /usr/bin.
    pub sec: Option<PathBuf>,
}

/// How to run syslog-ng: its binary and, for an unpacked tree, the
/// library and module directories.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogNgInstall {
    pub binary: PathBuf,
    pub lib_dir: Option<PathBuf>,
    pub module_dir: Option<PathBuf>,
}

/// Finds `name` in PATH or the given fallback directories.
fn find_program(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(fallbacks.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Locates rsyslogd, or says why it is skipped.
pub fn locate_rsyslogd(paths: &PeerPaths) -> Result<PathBuf, String> {
    match &paths.rsyslogd {
        Some(p) if p.is_file() => Ok(p.clone()),
        Some(p) => Err(format!("{} does not exist", p.display())),
        None => find_program("rsyslogd", &["/usr/sbin", "/sbin"]).ok_or_else(|| {
            "rsyslogd not found in PATH or /usr/sbin: run perf/scripts/install-peers.sh".into()
        }),
    }
}

/// Locates sec, or says why it is skipped.
pub fn locate_sec(paths: &PeerPaths) -> Result<PathBuf, String> {
    match &paths.sec {
        Some(p) if p.is_file() => Ok(p.clone()),
        Some(p) => Err(format!("{} does not exist", p.display())),
        None => find_program("sec", &["/usr/bin"]).ok_or_else(|| {
            "sec not found in PATH or /usr/bin: run perf/scripts/install-peers.sh".into()
        }),
    }
}

/// Locates syslog-ng: first the unpacked tree (`DIR/usr/sbin/syslog-ng`,
/// libraries in `DIR/usr/lib/syslog-ng`, modules in the versioned directory
/// below it), then a system installation; otherwise says why it is skipped.
pub fn locate_syslog_ng(dir: &Path, system: &[&str]) -> Result<SyslogNgInstall, String> {
    let binary = dir.join("usr/sbin/syslog-ng");
    if binary.is_file() {
        let lib_dir = dir.join("usr/lib/syslog-ng");
        let module_dir = std::fs::read_dir(&lib_dir)
            .map_err(|e| format!("cannot list {}: {e}", lib_dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))
            })
            .max()
            .ok_or_else(|| format!("no versioned module directory in {}", lib_dir.display()))?;
        return Ok(SyslogNgInstall {
            binary,
            lib_dir: Some(lib_dir),
            module_dir: Some(module_dir),
        });
    }
    for candidate in system {
        let p = PathBuf::from(candidate);
        if p.is_file() {
            return Ok(SyslogNgInstall {
                binary: p,
                lib_dir: None,
                module_dir: None,
            });
        }
    }
    Err(format!(
        "syslog-ng not found in {} or {}: run perf/scripts/install-peers.sh",
        dir.display(),
        system.join(", ")
    ))
}

/// Quotes a path for an rsyslog or syslog-ng configuration string.
fn conf_string(path: &Path) -> String {
    let text = path.display().to_string();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The rsyslog configuration: one imtcp input on 127.0.0.1 with port 0 (the
/// bound port is written to `port_file`), bound to its own ruleset whose
/// only action writes every message to `output`. rsyslog's own messages go
/// to the default ruleset, which has no action, so the output holds exactly
/// the lines received.
pub fn rsyslog_config(work_dir: &Path, port_file: &Path, output: &Path) -> String {
    format!(
        "# Generated by shardwatch-load peers: TCP in, file out, nothing else.\n\
         global(workDirectory={work} maxMessageSize=\"64k\")\n\
         module(load=\"imtcp\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"0\" listenPortFileName={port} ruleset=\"load\")\n\
         ruleset(name=\"load\") {{\n    action(type=\"omfile\" file={out})\n}}\n",
        work = conf_string(work_dir),
        port = conf_string(port_file),
        out = conf_string(output),
    )
}

/// The syslog-ng configuration: one `network()` TCP source on
/// 127.0.0.1:`port`, one `file()` destination, flow control on so that a
/// full output queue slows the sender instead of dropping lines, no DNS
/// lookups and no periodic statistics.
pub fn syslog_ng_config(version: &str, port: u16, output: &Path) -> String {
    format!(
        "@version: {version}\n\
         # Generated by shardwatch-load peers: TCP in, file out, nothing else.\n\
         options {{ stats-freq(0); use-dns(no); keep-hostname(yes); log-fifo-size(100000); }};\n\
         source s_load {{ network(transport(\"tcp\") ip(\"127.0.0.1\") port({port}) max-connections(4) log-iw-size(40000) log-msg-size(65536)); }};\n\
         destination d_file {{ file({out}); }};\n\
         log {{ source(s_load); destination(d_file); flags(flow-control); }};\n",
        out = conf_string(output),
    )
}

/// The `major.minor` of syslog-ng's module directory (`.../3.38` → `3.38`),
/// which is also the `@version` its configuration must declare.
pub fn syslog_ng_version(install: &SyslogNgInstall, version_output: &str) -> Option<String> {
    if let Some(v) = install
        .module_dir
        .as_ref()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
    {
        return Some(v.to_string());
    }
    // `syslog-ng 3 (3.38.1)`: keep major.minor of the parenthesised part.
    let inner = version_output.lines().next()?.split_once('(')?.1;
    let full = inner.split_once(')')?.0;
    let mut parts = full.split('.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

/// The sec rule file: 10 `Failed password` lines from one source within 300
/// seconds write one alert line naming the source to `alerts`. The pattern
/// accepts the corpus's RFC 3164 (`sshd[PID]:`) and RFC 5424
/// (`sshd PID - -`) forms.
pub fn sec_rules(alerts: &Path) -> String {
    format!(
        "# Generated by shardwatch-load peers: SSH brute force, {SSH_BRUTE_FORCE_THRESHOLD} failures from one source within {SSH_BRUTE_FORCE_WINDOW_S} s.\n\
         type=SingleWithThreshold\n\
         ptype=RegExp\n\
         pattern=sshd(?:\\[\\d+\\]:| \\d+ \\S+ \\S+) Failed password for (?:invalid user )?\\S+ from (\\S+) port \\d+\n\
         desc=SSH brute force from $1\n\
         action=write {} {SEC_ALERT_PREFIX}$1\n\
         window={SSH_BRUTE_FORCE_WINDOW_S}\n\
         thresh={SSH_BRUTE_FORCE_THRESHOLD}\n",
        alerts.display()
    )
}

/// User and system CPU seconds of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuTimes {
    pub user_s: f64,
    pub sys_s: f64,
}

impl CpuTimes {
    /// User + system seconds.
    pub fn total_s(self) -> f64 {
        self.user_s + self.sys_s
    }

    /// The CPU spent between two samples.
    pub fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user_s: (self.user_s - earlier.user_s).max(0.0),
            sys_s: (self.sys_s - earlier.sys_s).max(0.0),
        }
    }
}

/// Parses `utime` and `stime` (fields 14 and 15, in clock ticks) from the
/// text of `/proc/<pid>/stat`.
pub fn parse_proc_stat(text: &str, ticks_per_s: f64) -> Option<CpuTimes> {
    let utime: u64 = crate::machine::proc_stat_field(text, 14)?.parse().ok()?;
    let stime: u64 = crate::machine::proc_stat_field(text, 15)?.parse().ok()?;
    Some(CpuTimes {
        user_s: utime as f64 / ticks_per_s,
        sys_s: stime as f64 / ticks_per_s,
    })
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU used so far by a live process (all its threads), from
/// `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> anyhow::Result<CpuTimes> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_proc_stat(&text, ticks_per_s()).with_context(|| format!("cannot parse {path}"))
}

/// Bytes in a MiB, for reports.
pub const MIB: f64 = 1024.0 * 1024.0;

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_bytes: u64,
    /// The most it was resident at once since it started (`VmHWM`).
    pub peak_rss_bytes: u64,
}

/// Parses `VmRSS` and `VmHWM` (in kB) from the text of
/// `/proc/<pid>/status`.
pub fn parse_proc_status_memory(text: &str) -> Option<Memory> {
    let kib = |key: &str| {
        text.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix(':')?.trim();
            value.strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
    };
    Some(Memory {
        rss_bytes: kib("VmRSS")?.saturating_mul(1024),
        peak_rss_bytes: kib("VmHWM")?.saturating_mul(1024),
    })
}

/// Resident memory of a live process, from `/proc/<pid>/status`.
pub fn process_memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_proc_status_memory(&text).with_context(|| format!("cannot parse {path}"))
}

/// Counts the LF-terminated lines of a growing file, reading only what was
/// appended since the last call.
#[derive(Debug, Default)]
pub struct LineCounter {
    offset: u64,
    pub lines: u64,
}

impl LineCounter {
    /// Reads what was appended to `path` and returns the line count so far;
    /// a missing file counts as empty.
    pub fn poll(&mut self, path: &Path) -> anyhow::Result<u64> {
        use std::io::{Seek, SeekFrom};
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self.lines),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = vec![0u8; COUNT_CHUNK_BYTES];
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            self.lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        Ok(self.lines)
    }
}

/// What sec's alert file says, scored against the corpus truth.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SecAlerts {
    /// Alert lines written.
    pub alerts: u64,
    /// Expected `ssh_brute_force` sources (whose completing event is in the
    /// corpus).
    pub expected: u64,
    /// Expected sources that got an alert.
    pub detected: u64,
    /// Alerts for sources that are not an expected brute force.
    pub other: u64,
}

/// Scores sec's alert lines (`PREFIX SOURCE`) against the truth's
/// `ssh_brute_force` entries.
pub fn parse_sec_alerts(text: &str, truth: &[TruthEntry]) -> SecAlerts {
    let expected: Vec<&str> = truth
        .iter()
        .filter(|e| e.scenario == "ssh_brute_force")
        .map(|e| e.group_value.as_str())
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    let mut result = SecAlerts {
        expected: expected.len() as u64,
        ..SecAlerts::default()
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        result.alerts += 1;
        let source = line.strip_prefix(SEC_ALERT_PREFIX).unwrap_or(line).trim();
        if expected.contains(&source) {
            if !seen.contains(&source) {
                seen.push(source);
            }
        } else {
            result.other += 1;
        }
    }
    result.detected = seen.len() as u64;
    result
}

/// Counters read from shardwatch's `/metrics`: frames received (all
/// transports) and routed batches not yet processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsProgress {
    pub received: u64,
    pub pipeline_depth: u64,
}

/// Sums `shardwatch_events_received_total` and
/// `shardwatch_pipeline_depth_batches` over their labels in a Prometheus
/// text page. Returns None when the received counter is absent.
pub fn parse_metrics_progress(text: &str) -> Option<MetricsProgress> {
    let mut progress = MetricsProgress::default();
    let mut seen = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name_labels.split('{').next().unwrap_or("");
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        match name {
            "shardwatch_events_received_total" => {
                progress.received += value as u64;
                seen = true;
            }
            "shardwatch_pipeline_depth_batches" => progress.pipeline_depth += value as u64,
            _ => {}
        }
    }
    seen.then_some(progress)
}

/// Fetches `GET /metrics` from the appliance's API over loopback.
fn fetch_metrics(api: SocketAddr) -> anyhow::Result<String> {
    use std::io::Write;
    let timeout = std::time::Duration::from_nanos(METRICS_TIMEOUT_NS as u64);
    let mut stream = TcpStream::connect_timeout(&api, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    stream.take(METRICS_BYTES_MAX).read_to_end(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Polls the appliance's `/metrics` until it has received `events` frames
/// and no routed batch is waiting, and returns when it saw that (None if
/// `stop` was set first or [`PROCESSED_WAIT_TIMEOUT_NS`] passed). This is
/// the end of shardwatch's processing, as the output file's last line is
/// for rsyslog and syslog-ng.
pub fn watch_processed(
    api: SocketAddr,
    events: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Option<i64>> {
    std::thread::spawn(move || {
        let deadline = clock::now_ns() + PROCESSED_WAIT_TIMEOUT_NS;
        while !stop.load(Ordering::Relaxed) && clock::now_ns() < deadline {
            if let Some(p) = fetch_metrics(api)
                .ok()
                .and_then(|t| parse_metrics_progress(&t))
            {
                if p.received >= events && p.pipeline_depth == 0 {
                    return Some(clock::now_ns());
                }
            }
            clock::sleep_ns(METRICS_POLL_NS);
        }
        None
    })
}

/// How one peer's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skipped,
    Failed,
}

/// One row of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct PeerResult {
    pub peer: String,
    pub status: Status,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    pub version: Option<String>,
    /// What the peer does with each event.
    pub work: String,
    /// Events offered (corpus lines).
    pub events: u64,
    /// Lines the peer wrote (rsyslog, syslog-ng) or frames it received
    /// (shardwatch); sec reports none.
    pub lines_out: Option<u64>,
    pub wall_s: Option<f64>,
    pub cpu: Option<CpuTimes>,
    pub events_per_s: Option<f64>,
    pub cpu_us_per_event: Option<f64>,
    /// The most memory it held resident at once (`VmHWM` at the end of
    /// the measured span; sec's `ru_maxrss`).
    pub peak_rss_bytes: Option<u64>,
    pub alerts: Option<u64>,
    pub notes: Vec<String>,
}

impl PeerResult {
    fn new(peer: &str, work: &str, events: u64) -> PeerResult {
        PeerResult {
            peer: peer.to_string(),
            status: Status::Ok,
            reason: None,
            version: None,
            work: work.to_string(),
            events,
            lines_out: None,
            wall_s: None,
            cpu: None,
            events_per_s: None,
            cpu_us_per_event: None,
            peak_rss_bytes: None,
            alerts: None,
            notes: Vec::new(),
        }
    }

    fn skipped(peer: &str, work: &str, events: u64, reason: String) -> PeerResult {
        PeerResult {
            status: Status::Skipped,
            reason: Some(reason),
            ..PeerResult::new(peer, work, events)
        }
    }

    /// Fills in the rates from the events, the wall time and the CPU.
    fn measured(&mut self, events: u64, wall_s: f64, cpu: Option<CpuTimes>) {
        self.wall_s = Some(wall_s);
        self.cpu = cpu;
        if wall_s > 0.0 {
            self.events_per_s = Some(events as f64 / wall_s);
        }
        if events > 0 {
            self.cpu_us_per_event = cpu.map(|c| c.total_s() * 1e6 / events as f64);
        }
    }
}

/// What `peers` was asked to do.
#[derive(Debug, Clone)]
pub struct PeersOptions {
    pub corpus: PathBuf,
    pub binary: PathBuf,
    pub cores: usize,
    pub peers: Vec<Peer>,
    pub paths: PeerPaths,
    /// Keep each peer's scratch directory (configs, outputs, stderr).
    pub keep: bool,
    /// Scenario rules shardwatch loads and which expected alerts it scores.
    pub gate: crate::scenario_rules::Gate,
}

/// A started peer daemon.
struct Daemon {
    child: Child,
    /// Stops it should a signal end the harness.
    _registered: Registered,
    stderr_path: PathBuf,
}

impl Daemon {
    fn spawn(mut command: Command, dir: &Path) -> anyhow::Result<Daemon> {
        let stderr_path = dir.join("stderr.txt");
        let stderr = std::fs::File::create(&stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        let stdout = stderr.try_clone()?;
        let what = Path::new(command.get_program()).display().to_string();
        let (child, registered) = interrupt::spawn(
            command.stdin(Stdio::null()).stdout(stdout).stderr(stderr),
            what,
        )?;
        Ok(Daemon {
            child,
            _registered: registered,
            stderr_path,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last bytes of its stderr and stdout, for error messages.
    fn stderr_tail(&self) -> String {
        stderr_tail(&self.stderr_path)
    }

    /// Fails with its stderr if it has exited.
    fn check_alive(&mut self, what: &str) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{what} exited ({status}) before finishing; output: {}",
                self.stderr_tail()
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after [`PEER_STOP_TIMEOUT_NS`]. Returns whether
    /// it exited on SIGTERM.
    fn stop(mut self) -> bool {
        if let Ok(Some(_)) = self.child.try_wait() {
            return false;
        }
        // SAFETY: kill(2) on the pid of a child this process spawned and has
        // not yet reaped, so the pid cannot have been reused.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = clock::now_ns() + PEER_STOP_TIMEOUT_NS;
        while clock::now_ns() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            clock::sleep_ns(START_POLL_NS);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A peer abandoned on an error path must not outlive the harness.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn stderr_tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(PEER_STDERR_BYTES_MAX);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// The first line a program prints for `args` (its version), if any.
pub(crate) fn version_line(program: &Path, args: &[&str], env: &[(&str, &Path)]) -> Option<String> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Waits until a TCP connection to `addr` succeeds (the peer listens), the
/// daemon dies, or [`PEER_START_TIMEOUT_NS`] passes. The probe connection
/// is closed at once without sending anything.
fn wait_listening(daemon: &mut Daemon, addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let deadline = clock::now_ns() + PEER_START_TIMEOUT_NS;
    loop {
        daemon.check_alive(what)?;
        if TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if clock::now_ns() >= deadline {
            bail!(
                "{what} did not listen on {addr} within {} s; output: {}",
                PEER_START_TIMEOUT_NS / 1_000_000_000,
                daemon.stderr_tail()
            );
        }
        clock::sleep_ns(START_POLL_NS);
    }
}

/// Waits for rsyslog's port file (written once imtcp is bound) and returns
/// the port.
fn wait_port_file(daemon: &mut Daemon, path: &Path) -> anyhow::Result<u16> {
    let deadline = clock::now_ns() + PEER_START_TIMEOUT_NS;
    loop {
        daemon.check_alive("rsyslogd")?;
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(port) = text.trim().parse::<u16>() {
                if port != 0 {
                    return Ok(port);
                }
            }
        }
        if clock::now_ns() >= deadline {
            bail!(
                "rsyslogd wrote no port to {} within {} s; output: {}",
                path.display(),
                PEER_START_TIMEOUT_NS / 1_000_000_000,
                daemon.stderr_tail()
            );
        }
        clock::sleep_ns(START_POLL_NS);
    }
}

/// A loopback port that was free a moment ago (syslog-ng cannot report a
/// port it bound from 0). Another process could take it before the peer
/// binds it; the peer then fails to start and says so.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Sends the corpus flat out over one TCP connection, then waits until
/// `output` holds every line. Returns the wall time from the first byte to
/// the last line, the CPU the daemon spent meanwhile and the lines counted.
fn drive_daemon(
    daemon: &mut Daemon,
    what: &str,
    corpus: &Corpus,
    addr: SocketAddr,
    output: &Path,
) -> anyhow::Result<(f64, CpuTimes, u64, Option<Memory>)> {
    let events = corpus.len() as u64;
    let cpu_before = process_cpu(daemon.pid())?;
    let t0 = clock::now_ns();
    let config = SendConfig {
        targets: vec![Target::Tcp(addr)],
        schedule: Schedule {
            t0_ns: t0,
            rate_eps: None,
        },
        events,
        duration_ns: None,
        connections: 1,
        framing: Framing::Lf,
        session: send::SessionOptions::default(),
        progress: false,
        flush_interval_ns: 0,
        sender_threads: 1,
    };
    let zero = Arc::new(AtomicU64::new(0));
    let sent = send::send(corpus, &config, &zero, &Arc::new(AtomicU64::new(0)))
        .with_context(|| format!("sending to {what} failed"))?;
    if sent.sent != events {
        bail!("sent {} of {events} events to {what}", sent.sent);
    }
    let deadline = t0 + PEER_DRAIN_TIMEOUT_NS;
    let mut counter = LineCounter::default();
    let mut last_growth = clock::now_ns();
    let mut last_lines = 0;
    loop {
        let lines = counter.poll(output)?;
        let now = clock::now_ns();
        if lines >= events {
            let cpu = process_cpu(daemon.pid())?.since(cpu_before);
            let memory = process_memory(daemon.pid()).ok();
            return Ok(((now - t0) as f64 / 1e9, cpu, lines, memory));
        }
        if lines > last_lines {
            last_lines = lines;
            last_growth = now;
        }
        daemon.check_alive(what)?;
        if now >= deadline || now - last_growth >= PEER_STALL_TIMEOUT_NS {
            bail!(
                "{what} wrote {lines} of {events} lines to {} (limit {} s total, {} s without growth); output: {}",
                output.display(),
                PEER_DRAIN_TIMEOUT_NS / 1_000_000_000,
                PEER_STALL_TIMEOUT_NS / 1_000_000_000,
                daemon.stderr_tail()
            );
        }
        clock::sleep_ns(OUTPUT_POLL_NS);
    }
}

const RSYSLOG_WORK: &str = "imtcp on 127.0.0.1 → omfile, no parsing beyond the syslog header";
const SYSLOG_NG_WORK: &str = "network(tcp) on 127.0.0.1 → file(), flow control on";
const SEC_WORK: &str = "reads the corpus file, one SSH brute-force rule (10 failures/300 s)";
const SHARDWATCH_WORK: &str =
    "TCP, full detection (built-in rules: parse, normalize, route, correlate, alert)";

fn run_rsyslog(
    rsyslogd: &Path,
    corpus: &Corpus,
    dir: &Path,
    row: &mut PeerResult,
) -> anyhow::Result<()> {
    row.version = version_line(rsyslogd, &["-v"], &[]);
    let conf = dir.join("rsyslog.conf");
    let port_file = dir.join("port");
    let output = dir.join("out.log");
    std::fs::write(&conf, rsyslog_config(dir, &port_file, &output))
        .with_context(|| format!("cannot write {}", conf.display()))?;
    let mut command = Command::new(rsyslogd);
    command
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"));
    let mut daemon = Daemon::spawn(command, dir)?;
    let port = wait_port_file(&mut daemon, &port_file)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(&mut daemon, addr, "rsyslogd")?;
    let (wall_s, cpu, lines, memory) =
        drive_daemon(&mut daemon, "rsyslogd", corpus, addr, &output)?;
    let clean = daemon.stop();
    row.lines_out = Some(lines);
    row.measured(corpus.len() as u64, wall_s, Some(cpu));
    row.peak_rss_bytes = memory.map(|m| m.peak_rss_bytes);
    if !clean {
        row.notes.push("did not exit on SIGTERM".to_string());
    }
    Ok(())
}

fn run_syslog_ng(
    install: &SyslogNgInstall,
    corpus: &Corpus,
    dir: &Path,
    row: &mut PeerResult,
) -> anyhow::Result<()> {
    let env: Vec<(&str, &Path)> = install
        .lib_dir
        .as_deref()
        .map(|d| ("LD_LIBRARY_PATH", d))
        .into_iter()
        .collect();
    let version_text = version_line(&install.binary, &["--version"], &env).unwrap_or_default();
    row.version = Some(version_text.clone()).filter(|v| !v.is_empty());
    let version = syslog_ng_version(install, &version_text)
        .context("cannot tell syslog-ng's version for its @version line")?;
    let port = free_port()?;
    let conf = dir.join("syslog-ng.conf");
    let output = dir.join("out.log");
    std::fs::write(&conf, syslog_ng_config(&version, port, &output))
        .with_context(|| format!("cannot write {}", conf.display()))?;
    let mut command = Command::new(&install.binary);
    for (k, v) in &env {
        command.env(k, v);
    }
    if let Some(m) = &install.module_dir {
        command.arg(format!("--module-path={}", m.display()));
    }
    command
        .arg("-F")
        .arg("-f")
        .arg(&conf)
        .arg("--no-caps")
        .arg("-R")
        .arg(dir.join("syslog-ng.persist"))
        .arg("-p")
        .arg(dir.join("syslog-ng.pid"))
        .arg("-c")
        .arg(dir.join("syslog-ng.ctl"));
    let mut daemon = Daemon::spawn(command, dir)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(&mut daemon, addr, "syslog-ng")?;
    let (wall_s, cpu, lines, memory) =
        drive_daemon(&mut daemon, "syslog-ng", corpus, addr, &output)?;
    let clean = daemon.stop();
    row.lines_out = Some(lines);
    row.measured(corpus.len() as u64, wall_s, Some(cpu));
    row.peak_rss_bytes = memory.map(|m| m.peak_rss_bytes);
    if install.lib_dir.is_some() {
        row.notes
            .push("unpacked with dpkg -x, run with LD_LIBRARY_PATH".to_string());
    }
    if !clean {
        row.notes.push("did not exit on SIGTERM".to_string());
    }
    Ok(())
}

/// Waits for a child with `wait4`, bounded by `timeout_ns` (SIGKILL then),
/// and returns its exit code and the CPU it used.
fn wait_child_rusage(
    child: &mut Child,
    timeout_ns: i64,
) -> anyhow::Result<(Option<i32>, CpuTimes, u64, bool)> {
    let pid = child.id() as libc::pid_t;
    let deadline = clock::now_ns() + timeout_ns;
    let mut killed = false;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; all-zero is a valid value to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own unreaped child, with pointers to live
        // locals. WNOHANG keeps it from blocking.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            let code = if libc::WIFEXITED(status) {
                Some(libc::WEXITSTATUS(status))
            } else {
                None
            };
            return Ok((
                code,
                CpuTimes {
                    user_s: tv(usage.ru_utime),
                    sys_s: tv(usage.ru_stime),
                },
                // Linux gives it in KiB.
                u64::try_from(usage.ru_maxrss)
                    .unwrap_or(0)
                    .saturating_mul(1024),
                killed,
            ));
        }
        if r < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("wait4 failed");
            }
        }
        if !killed && clock::now_ns() >= deadline {
            // SAFETY: as above, the child is not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            killed = true;
        }
        clock::sleep_ns(OUTPUT_POLL_NS);
    }
}

fn run_sec(
    sec: &Path,
    corpus_path: &Path,
    corpus: &Corpus,
    dir: &Path,
    row: &mut PeerResult,
) -> anyhow::Result<()> {
    row.version = version_line(sec, &["--version"], &[]);
    let rules = dir.join("ssh.sec");
    let alerts = dir.join("alerts.txt");
    std::fs::write(&rules, sec_rules(&alerts))
        .with_context(|| format!("cannot write {}", rules.display()))?;
    let stderr_path = dir.join("stderr.txt");
    let stderr = std::fs::File::create(&stderr_path)
        .with_context(|| format!("cannot create {}", stderr_path.display()))?;
    let t0 = clock::now_ns();
    let (mut child, registered) = interrupt::spawn(
        Command::new(sec)
            .arg(format!("--conf={}", rules.display()))
            .arg(format!("--input={}", corpus_path.display()))
            .args(["--notail", "--nointevents", "--nochildterm"])
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr),
        sec.display().to_string(),
    )?;
    let (code, cpu, peak_rss_bytes, killed) = wait_child_rusage(&mut child, SEC_RUN_TIMEOUT_NS)?;
    drop(registered);
    let wall_s = (clock::now_ns() - t0) as f64 / 1e9;
    if killed {
        bail!(
            "sec did not finish within {} s; output: {}",
            SEC_RUN_TIMEOUT_NS / 1_000_000_000,
            stderr_tail(&stderr_path)
        );
    }
    if code != Some(0) {
        bail!(
            "sec exited with {code:?}; output: {}",
            stderr_tail(&stderr_path)
        );
    }
    let mut text = String::new();
    if let Ok(file) = std::fs::File::open(&alerts) {
        file.take(SEC_ALERTS_BYTES_MAX)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", alerts.display()))?;
    }
    let scored = parse_sec_alerts(&text, &corpus.truth.expected);
    row.alerts = Some(scored.alerts);
    row.measured(corpus.len() as u64, wall_s, Some(cpu));
    row.peak_rss_bytes = Some(peak_rss_bytes);
    row.notes.push(format!(
        "spawn to exit, perl start-up included; brute force found for {} of {} expected sources",
        scored.detected, scored.expected
    ));
    if scored.other > 0 {
        row.notes.push(format!(
            "{} alerts for background sources: sec's window runs on its own clock, so the whole corpus falls in one 300 s window",
            scored.other
        ));
    }
    Ok(())
}

fn run_shardwatch(opts: &PeersOptions, events: u64, report: &mut Report) -> PeerResult {
    let mut row = PeerResult::new("shardwatch", SHARDWATCH_WORK, events);
    row.version = version_line(&opts.binary, &["--version"], &[]);
    let options = BenchOptions {
        binary: opts.binary.clone(),
        cores: opts.cores,
        transport: bench::Transport::Tcp,
        keep_data: false,
        extra_args: ["--api".to_string(), "127.0.0.1:0".to_string()]
            .into_iter()
            .chain(opts.gate.rules.appliance_args())
            .collect(),
        watch_events: Some(events),
        tls_server: None,
        alerts_via: crate::bench::AlertsVia::File,
    };
    let mut load = RunOptions {
        targets: Vec::new(),
        rate_eps: None,
        events: None,
        duration_s: None,
        connections: 1,
        framing: Framing::Lf,
        session: send::SessionOptions::default(),
        corpus: Some(opts.corpus.clone()),
        gen: crate::runner::GenParams {
            entities: 1,
            seed: 0,
            event_rate: 1.0,
            scenarios: Vec::new(),
        },
        sender_clock_ns: 0,
        flush_interval_ns: 0,
        alerts: None,
        drain_ms: 5_000,
        progress: false,
        gate: opts.gate.clone(),
        kernel_costs: None,
        steer_loopback: false,
        sender_threads: crate::runner::SenderThreads::Count(1),
    };
    let outcome = match bench::bench(&options, &mut load) {
        Ok(o) => o,
        Err(e) => {
            row.status = Status::Failed;
            row.reason = Some(format!("{e:#}"));
            return row;
        }
    };
    bench::add_bench_to_report(&outcome, &options, &load, report);
    let stats = outcome.stopped.stats.clone().unwrap_or_default();
    let send = &outcome.run.send;
    let wall_s = match outcome.processed_ns {
        Some(done) => (done - send.started_ns).max(1) as f64 / 1e9,
        None => {
            row.notes.push(
                "/metrics never showed the corpus processed: timed by the send duration instead"
                    .to_string(),
            );
            send.duration_s()
        }
    };
    row.lines_out = Some(stats.tcp_frames);
    row.alerts = Some(stats.alerts);
    row.measured(events, wall_s, outcome.cpu);
    row.peak_rss_bytes = outcome.memory.map(|m| m.peak_rss_bytes);
    if wall_s <= send.duration_s() * SENDER_BOUND_FACTOR {
        row.notes.push(format!(
            "done within {:.0}% of the send time: bounded by the sender, not the appliance",
            (SENDER_BOUND_FACTOR - 1.0) * 100.0
        ));
    }
    row.notes.push(format!(
        "{} cores; timed from the first byte until /metrics showed every line received and no batch queued; CPU from the start of the load to just before SIGTERM",
        opts.cores
    ));
    if let Some(m) = &outcome.run.matching {
        row.notes.push(format!(
            "{} of {} expected alerts",
            m.true_positives(),
            outcome.run.truth.len()
        ));
    }
    if outcome.stopped.stats.is_none() {
        row.status = Status::Failed;
        row.reason = Some(format!(
            "no stats line at exit (exit {:?})",
            outcome.stopped.exit_code
        ));
    } else if stats.tcp_frames != events {
        row.status = Status::Failed;
        row.reason = Some(format!("received {} of {events} lines", stats.tcp_frames));
    }
    row
}

/// A peer that was found, with what it takes to run it.
enum Located {
    Rsyslog(PathBuf),
    SyslogNg(SyslogNgInstall),
    Sec(PathBuf),
}

/// Runs shardwatch and every requested peer on the corpus, one after the
/// other, and adds the comparison to `report`. Returns the rows.
pub fn run_peers(opts: &PeersOptions, report: &mut Report) -> anyhow::Result<Vec<PeerResult>> {
    let corpus = Corpus::load(&opts.corpus)?;
    if corpus.is_empty() {
        bail!("{} holds no events", opts.corpus.display());
    }
    let events = corpus.len() as u64;
    let mut rows = vec![run_shardwatch(opts, events, report)];
    for &peer in &opts.peers {
        let work = match peer {
            Peer::Rsyslog => RSYSLOG_WORK,
            Peer::SyslogNg => SYSLOG_NG_WORK,
            Peer::Sec => SEC_WORK,
        };
        let located = match peer {
            Peer::Rsyslog => locate_rsyslogd(&opts.paths).map(Located::Rsyslog),
            Peer::SyslogNg => locate_syslog_ng(
                &opts.paths.syslog_ng_dir,
                &["/usr/sbin/syslog-ng", "/sbin/syslog-ng"],
            )
            .map(Located::SyslogNg),
            Peer::Sec => locate_sec(&opts.paths).map(Located::Sec),
        };
        let row = match located {
            Err(reason) => {
                eprintln!("shardwatch-load: {} skipped: {reason}", peer.name());
                PeerResult::skipped(peer.name(), work, events, reason)
            }
            Ok(located) => {
                let mut scratch = ScratchDir::create(peer.name(), opts.keep)?;
                let dir = scratch.path().to_path_buf();
                eprintln!(
                    "shardwatch-load: running {} in {}",
                    peer.name(),
                    dir.display()
                );
                let mut row = PeerResult::new(peer.name(), work, events);
                let result = match &located {
                    Located::Rsyslog(p) => run_rsyslog(p, &corpus, &dir, &mut row),
                    Located::SyslogNg(install) => run_syslog_ng(install, &corpus, &dir, &mut row),
                    Located::Sec(p) => run_sec(p, &opts.corpus, &corpus, &dir, &mut row),
                };
                if let Err(e) = result {
                    row.status = Status::Failed;
                    row.reason = Some(format!("{e:#}"));
                }
                if opts.keep || row.status == Status::Failed {
                    scratch.keep();
                    row.notes.push(format!("scratch kept in {}", dir.display()));
                }
                row
            }
        };
        rows.push(row);
    }
    add_to_report(&rows, opts, report);
    Ok(rows)
}

/// The comparison table as text lines.
pub fn table(rows: &[PeerResult]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<11} {:>8} {:>13} {:>13} {:>10} {:>13}  notes",
        "peer", "status", "events/s", "CPU µs/event", "wall s", "peak RSS MiB"
    )];
    for r in rows {
        let num = |v: Option<f64>, prec: usize| {
            v.map_or_else(|| "-".to_string(), |x| format!("{x:.prec$}"))
        };
        let mut notes = r.notes.join("; ");
        if let Some(reason) = &r.reason {
            notes = if notes.is_empty() {
                reason.clone()
            } else {
                format!("{reason}; {notes}")
            };
        }
        lines.push(format!(
            "{:<11} {:>8} {:>13} {:>13} {:>10} {:>13}  {}",
            r.peer,
            format!("{:?}", r.status).to_lowercase(),
            num(r.events_per_s, 0),
            num(r.cpu_us_per_event, 2),
            num(r.wall_s, 2),
            num(r.peak_rss_bytes.map(|b| b as f64 / MIB), 1),
            notes
        ));
    }
    lines
}

/// Adds the rows to the report: `peers` in report.json and the table at the
/// top of summary.txt.
pub fn add_to_report(rows: &[PeerResult], opts: &PeersOptions, report: &mut Report) {
    report.body.insert(
        "peers".into(),
        json!({
            "corpus": opts.corpus.display().to_string(),
            "events": rows.first().map_or(0, |r| r.events),
            "method": "peers run one after another on the same machine as the sender; rsyslog and syslog-ng receive TCP from the harness's sender (flat out, one connection, 256 KiB writes) and are timed from the first byte until their output file holds every line, CPU = user+sys from /proc/<pid>/stat over that span, peak RSS = VmHWM from /proc/<pid>/status at its end; sec reads the corpus file (--notail) and is timed spawn to exit, CPU and peak RSS (ru_maxrss) from wait4; shardwatch runs the bench path (TCP, --quiet)",
            "results": rows,
        }),
    );
    let mut summary = vec![format!(
        "peer comparison on {} ({} events):",
        opts.corpus.display(),
        rows.first().map_or(0, |r| r.events)
    )];
    summary.extend(table(rows));
    summary.push("shardwatch bench details:".to_string());
    summary.append(&mut report.summary);
    report.summary = summary;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_lists() {
        assert_eq!(parse_peers("all").unwrap(), Peer::ALL.to_vec());
        assert_eq!(parse_peers("none").unwrap(), Vec::<Peer>::new());
        assert_eq!(
            parse_peers("sec, rsyslog,sec").unwrap(),
            vec![Peer::Rsyslog, Peer::Sec]
        );
        assert!(parse_peers("rsyslog,splunk").is_err());
    }

    #[test]
    fn rsyslog_config_has_one_input_and_one_file_action() {
        let text = rsyslog_config(
            Path::new("/tmp/w"),
            Path::new("/tmp/w/port"),
            Path::new("/tmp/w/o\"ut.log"),
        );
        assert!(text.contains(r#"module(load="imtcp")"#));
        assert!(text.contains(r#"address="127.0.0.1" port="0""#));
        assert!(text.contains(r#"listenPortFileName="/tmp/w/port""#));
        assert!(text.contains(r#"ruleset="load""#));
        assert!(text.contains(r#"action(type="omfile" file="/tmp/w/o\"ut.log")"#));
        assert_eq!(text.matches("input(").count(), 1);
        assert_eq!(text.matches("action(").count(), 1);
        assert_eq!(text.matches("module(").count(), 1);
    }

    #[test]
    fn syslog_ng_config_and_version() {
        let text = syslog_ng_config("3.38", 40123, Path::new("/tmp/s/out.log"));
        assert!(text.starts_with("@version: 3.38\n"));
        assert!(text.contains(r#"network(transport("tcp") ip("127.0.0.1") port(40123)"#));
        assert!(text.contains(r#"file("/tmp/s/out.log")"#));
        assert!(text.contains("flags(flow-control)"));
        assert_eq!(text.matches("source ").count(), 1);
        assert_eq!(text.matches("destination ").count(), 1);
        let unpacked = SyslogNgInstall {
            binary: "/x/usr/sbin/syslog-ng".into(),
            lib_dir: Some("/x/usr/lib/syslog-ng".into()),
            module_dir: Some("/x/usr/lib/syslog-ng/3.38".into()),
        };
        assert_eq!(syslog_ng_version(&unpacked, "").as_deref(), Some("3.38"));
        let system = SyslogNgInstall {
            binary: "/usr/sbin/syslog-ng".into(),
            lib_dir: None,
            module_dir: None,
        };
        assert_eq!(
            syslog_ng_version(&system, "syslog-ng 4 (4.8.1)\nConfig version: 4.2").as_deref(),
            Some("4.8")
        );
        assert_eq!(syslog_ng_version(&system, "garbage"), None);
    }

    #[test]
    fn missing_peers_are_skipped_with_a_reason() {
        let none = PeerPaths {
            rsyslogd: Some("/nonexistent/rsyslogd".into()),
            syslog_ng_dir: "/nonexistent/sng".into(),
            sec: Some("/nonexistent/sec".into()),
        };
        assert!(locate_rsyslogd(&none)
            .unwrap_err()
            .contains("does not exist"));
        assert!(locate_sec(&none).unwrap_err().contains("does not exist"));
        let reason =
            locate_syslog_ng(&none.syslog_ng_dir, &["/nonexistent/syslog-ng"]).unwrap_err();
        assert!(reason.contains("install-peers.sh"), "{reason}");
    }

    #[test]
    fn sec_rule_matches_both_header_forms() {
        let text = sec_rules(Path::new("/tmp/a.txt"));
        assert!(text.contains("type=SingleWithThreshold"));
        assert!(text.contains("window=300\n"));
        assert!(text.contains("thresh=10\n"));
        assert!(text.contains("action=write /tmp/a.txt SSH Brute Force From One Source $1"));
        // The rule's pattern, checked here by hand on both forms: sshd[PID]:
        // and the RFC 5424 `sshd PID - -`.
        let pattern = text
            .lines()
            .find_map(|l| l.strip_prefix("pattern="))
            .unwrap();
        assert!(pattern.starts_with(r"sshd(?:\[\d+\]:| \d+ \S+ \S+) Failed password for"));
    }

    #[test]
    fn proc_stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (rs:main Q:Reg) (x) S 1 4242 4242 0 -1 4194560 120 0 0 0 250 75 0 0 20 0 5 0 100 0 0";
        let cpu = parse_proc_stat(line, 100.0).unwrap();
        assert_eq!(
            cpu,
            CpuTimes {
                user_s: 2.5,
                sys_s: 0.75
            }
        );
        assert_eq!(cpu.total_s(), 3.25);
        let later = CpuTimes {
            user_s: 3.0,
            sys_s: 1.0,
        };
        assert_eq!(
            later.since(cpu),
            CpuTimes {
                user_s: 0.5,
                sys_s: 0.25
            }
        );
        assert_eq!(parse_proc_stat("12 (short) S 1 2", 100.0), None);
        assert_eq!(parse_proc_stat("no parenthesis", 100.0), None);
        // A live process: this one.
        assert!(process_cpu(std::process::id()).is_ok());
    }

    #[test]
    fn resident_memory_is_read_from_proc_status() {
        let text = "Name:\trsyslogd\nVmPeak:\t  300000 kB\nVmHWM:\t    9216 kB\nVmRSS:\t    8192 kB\nRssAnon:\t    4096 kB\n";
        assert_eq!(
            parse_proc_status_memory(text),
            Some(Memory {
                rss_bytes: 8 << 20,
                peak_rss_bytes: 9 << 20
            })
        );
        // `RssAnon` is not `VmRSS`; a kernel thread has neither.
        assert_eq!(
            parse_proc_status_memory("Name:\tkthreadd\nRssAnon:\t 1 kB\n"),
            None
        );
        // A live process: this one, which holds its peak at least.
        let own = process_memory(std::process::id()).unwrap();
        assert!(
            own.rss_bytes > 0 && own.peak_rss_bytes >= own.rss_bytes,
            "{own:?}"
        );
    }

    #[test]
    fn sec_alerts_are_scored_against_the_truth() {
        let entry = |scenario: &str, value: &str| TruthEntry {
            scenario: scenario.into(),
            instance: 0,
            rule: "r".into(),
            group_field: "source.ip".into(),
            group_value: value.into(),
            completing_index: 0,
            completing_time_ns: 0,
            completing_message: String::new(),
            first_index: 0,
        };
        let truth = vec![
            entry("ssh_brute_force", "203.0.113.1"),
            entry("ssh_brute_force", "203.0.113.2"),
            entry("sudo_failures", "eve"),
        ];
        let text = format!(
            "{p}203.0.113.1\n{p}203.0.113.1\n{p}10.0.1.7\n\n",
            p = SEC_ALERT_PREFIX
        );
        assert_eq!(
            parse_sec_alerts(&text, &truth),
            SecAlerts {
                alerts: 3,
                expected: 2,
                detected: 1,
                other: 1
            }
        );
    }

    #[test]
    fn metrics_progress_sums_over_labels() {
        let page = "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n\
# HELP shardwatch_events_received_total Syslog messages received.\n\
# TYPE shardwatch_events_received_total counter\n\
shardwatch_events_received_total{core=\"0\",transport=\"udp\"} 5\n\
shardwatch_events_received_total{core=\"0\",transport=\"tcp\"} 100\n\
shardwatch_events_received_total{core=\"1\",transport=\"tcp\"} 20\n\
shardwatch_pipeline_depth_batches{core=\"0\"} 2\n\
shardwatch_pipeline_depth_batches{core=\"1\"} 0\n\
shardwatch_events_parsed_total{core=\"0\"} 99\n";
        assert_eq!(
            parse_metrics_progress(page),
            Some(MetricsProgress {
                received: 125,
                pipeline_depth: 2
            })
        );
        assert_eq!(parse_metrics_progress("HTTP/1.0 500 oops\r\n\r\n"), None);
    }

    #[test]
    fn line_counter_reads_only_what_was_appended() {
        let path = std::env::temp_dir().join(format!("sw-peers-count-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut c = LineCounter::default();
        assert_eq!(c.poll(&path).unwrap(), 0);
        std::fs::write(&path, b"a\nb\nc").unwrap();
        assert_eq!(c.poll(&path).unwrap(), 2);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"\nd\n").unwrap();
        assert_eq!(c.poll(&path).unwrap(), 4);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn rates_and_table() {
        let mut row = PeerResult::new("rsyslog", RSYSLOG_WORK, 1_000);
        row.measured(
            1_000,
            0.5,
            Some(CpuTimes {
                user_s: 0.1,
                sys_s: 0.1,
            }),
        );
        assert_eq!(row.events_per_s, Some(2_000.0));
        assert!((row.cpu_us_per_event.unwrap() - 200.0).abs() < 1e-9);
        row.peak_rss_bytes = Some(3 << 19);
        let skipped = PeerResult::skipped("sec", SEC_WORK, 1_000, "sec not found".into());
        let lines = table(&[row, skipped]);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("peak RSS MiB"), "{}", lines[0]);
        assert!(
            lines[1].contains("2000") && lines[1].contains("200.00") && lines[1].contains(" 1.5 "),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("skipped") && lines[2].contains("sec not found"));
    }
}
