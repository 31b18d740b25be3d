//! Starting and stopping the real `shardwatch` binary, and reading its
//! listening and stats lines.
//!
//! The appliance prints `shardwatch: listening udp=… tcp=… [relp=… tls=…] cores=…` on
//! stderr once bound (ports resolved from `:0`), and on SIGTERM drains and
//! prints `shardwatch: stats [per-core JSON]`. Both are parsed here so the
//! harness never guesses ports or sleeps for readiness.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;

use crate::clock;
use crate::interrupt::{self, Registered, Undo};

/// How long to wait for the listening line after starting the binary.
pub const START_TIMEOUT_NS: i64 = 60_000_000_000;
/// How long to wait for a clean exit after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT_NS: i64 = 30_000_000_000;
/// Most stderr lines kept for the report (the last ones win).
pub const STDERR_LINES_MAX: usize = 200;
/// Longest stderr line kept (the stats line of many cores is long).
pub const STDERR_LINE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The parsed listening line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listening {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// Present only when the appliance runs with `--relp` / `--tls`.
    pub relp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub fields: BTreeMap<String, String>,
}

/// Parses `shardwatch: listening udp=ADDR tcp=ADDR [relp=ADDR tls=ADDR] key=value...`.
pub fn parse_listening(line: &str) -> Option<Listening> {
    let rest = line.trim().strip_prefix("shardwatch: listening ")?;
    let fields: BTreeMap<String, String> = rest
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let addr = |key: &str| fields.get(key).and_then(|v| v.parse::<SocketAddr>().ok());
    Some(Listening {
        udp: addr("udp"),
        tcp: addr("tcp"),
        relp: addr("relp"),
        tls: addr("tls"),
        fields,
    })
}

/// Totals over the per-core stats the appliance prints at exit.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ApplianceStats {
    pub cores: usize,
    pub events_parsed: u64,
    pub udp_datagrams: u64,
    pub tcp_frames: u64,
    /// RELP `syslog` messages received and answers sent.
    pub relp_messages: u64,
    pub relp_acks: u64,
    pub tls_sessions: u64,
    pub tls_handshake_failures: u64,
    pub frames_truncated: u64,
    /// recvmmsg calls that returned datagrams.
    pub udp_batches: u64,
    /// Journal bytes written and the writes (group commits) they took.
    pub journal_bytes: u64,
    pub journal_commits: u64,
    /// Lines finished from their syslog header alone, their payload not
    /// decoded (no loaded rule's log source admits the header).
    pub lines_without_payload: u64,
    pub alerts: u64,
    /// How late the cores' stall probe timer fired (the node's
    /// `stall_p99_us` and `stall_max_us`, the worst core's), in
    /// microseconds: how long a core could not run its tasks. `None` from
    /// a node that does not report it.
    pub stall_p99_us: Option<u64>,
    pub stall_max_us: Option<u64>,
    pub dropped: BTreeMap<String, u64>,
    pub quarantined: BTreeMap<String, u64>,
    /// Events parsed per core, to see how evenly load spread.
    pub events_parsed_per_core: Vec<u64>,
    pub per_core: Value,
}

impl ApplianceStats {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }
}

/// Parses `shardwatch: stats [...]`; unknown fields are kept in `per_core`.
pub fn parse_stats(line: &str) -> Option<ApplianceStats> {
    let json = line.trim().strip_prefix("shardwatch: stats ")?;
    let per_core: Value = serde_json::from_str(json).ok()?;
    let cores = per_core.as_array()?;
    let mut stats = ApplianceStats {
        cores: cores.len(),
        ..ApplianceStats::default()
    };
    let num = |core: &Value, key: &str| core.get(key).and_then(Value::as_u64).unwrap_or(0);
    for core in cores {
        stats.events_parsed += num(core, "events_parsed");
        stats
            .events_parsed_per_core
            .push(num(core, "events_parsed"));
        stats.udp_datagrams += num(core, "udp_datagrams");
        stats.tcp_frames += num(core, "tcp_frames");
        stats.relp_messages += num(core, "relp_messages");
        stats.relp_acks += num(core, "relp_acks");
        stats.tls_sessions += num(core, "tls_sessions");
        stats.tls_handshake_failures += num(core, "tls_handshake_failures");
        stats.frames_truncated += num(core, "frames_truncated");
        stats.udp_batches += num(core, "udp_batches");
        stats.journal_bytes += num(core, "journal_bytes");
        stats.journal_commits += num(core, "journal_commits");
        stats.lines_without_payload += num(core, "lines_without_payload");
        stats.alerts += num(core, "alerts");
        for (field, worst) in [
            ("stall_p99_us", &mut stats.stall_p99_us),
            ("stall_max_us", &mut stats.stall_max_us),
        ] {
            if let Some(us) = core.get(field).and_then(Value::as_u64) {
                *worst = Some(worst.map_or(us, |w| w.max(us)));
            }
        }
        for (field, map) in [
            ("dropped", &mut stats.dropped),
            ("quarantined", &mut stats.quarantined),
        ] {
            if let Some(reasons) = core.get(field).and_then(Value::as_object) {
                for (reason, n) in reasons {
                    *map.entry(reason.clone()).or_default() += n.as_u64().unwrap_or(0);
                }
            }
        }
    }
    stats.per_core = per_core;
    Some(stats)
}

/// A running appliance.
pub struct Appliance {
    child: Child,
    /// Stops it should a signal end the harness; dropped once reaped.
    registered: Option<Registered>,
    pub listening: Listening,
    lines: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
    stderr_tail: Vec<String>,
}

/// How the appliance ended.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    pub exit_code: Option<i32>,
    pub clean: bool,
    pub stats: Option<ApplianceStats>,
    pub stderr_tail: Vec<String>,
}

fn keep(tail: &mut Vec<String>, line: String) {
    if tail.len() >= STDERR_LINES_MAX {
        tail.remove(0);
    }
    tail.push(line);
}

impl Appliance {
    /// Starts `binary run` on loopback port 0 with `--quiet` and waits for
    /// its listening line.
    pub fn start(
        binary: &Path,
        cores: usize,
        data_dir: &Path,
        extra: &[String],
    ) -> anyhow::Result<Appliance> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let (mut child, registered) = interrupt::spawn(
            Command::new(binary)
                .arg("run")
                .args(["--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
                .arg("--data-dir")
                .arg(data_dir)
                .args(["--cores", &cores.to_string(), "--quiet"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            format!("appliance {}", binary.display()),
        )?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("appliance-stderr".into())
            .spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match std::io::Read::take(&mut reader, STDERR_LINE_BYTES_MAX as u64)
                        .read_until(b'\n', &mut buf)
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                            if tx.send(line).is_err() {
                                break;
                            }
                        }
                    }
                }
            })?;
        let mut appliance = Appliance {
            child,
            registered: Some(registered),
            listening: Listening {
                udp: None,
                tcp: None,
                relp: None,
                tls: None,
                fields: BTreeMap::new(),
            },
            lines: rx,
            reader: Some(reader),
            stderr_tail: Vec::new(),
        };
        let deadline = clock::now_ns() + START_TIMEOUT_NS;
        loop {
            let left = deadline - clock::now_ns();
            if left <= 0 {
                let _ = appliance.child.kill();
                bail!(
                    "{} printed no listening line within {} s; stderr: {:?}",
                    binary.display(),
                    START_TIMEOUT_NS / 1_000_000_000,
                    appliance.stderr_tail
                );
            }
            match appliance
                .lines
                .recv_timeout(std::time::Duration::from_nanos(left as u64))
            {
                Ok(line) => {
                    if let Some(l) = parse_listening(&line) {
                        appliance.listening = l;
                        keep(&mut appliance.stderr_tail, line);
                        return Ok(appliance);
                    }
                    keep(&mut appliance.stderr_tail, line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = appliance.child.wait().ok();
                    bail!(
                        "{} exited before listening ({status:?}); stderr: {:?}",
                        binary.display(),
                        appliance.stderr_tail
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, waits for the drain and exit (SIGKILL after
    /// [`STOP_TIMEOUT_NS`]) and parses the stats line.
    pub fn stop(mut self) -> anyhow::Result<Stopped> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child this process spawned and has
        // not yet reaped, so the pid cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = clock::now_ns() + STOP_TIMEOUT_NS;
        let mut status: Option<ExitStatus> = None;
        while clock::now_ns() < deadline {
            if let Some(s) = self.child.try_wait()? {
                status = Some(s);
                break;
            }
            clock::sleep_ns(10_000_000);
        }
        let killed = status.is_none();
        if killed {
            let _ = self.child.kill();
            status = Some(self.child.wait()?);
        }
        self.registered = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut stats = None;
        while let Ok(line) = self.lines.try_recv() {
            if let Some(s) = parse_stats(&line) {
                stats = Some(s);
                keep(&mut self.stderr_tail, "shardwatch: stats [...]".into());
            } else {
                keep(&mut self.stderr_tail, line);
            }
        }
        let code = status.and_then(|s| s.code());
        Ok(Stopped {
            exit_code: code,
            clean: !killed && code == Some(0),
            stats,
            stderr_tail: std::mem::take(&mut self.stderr_tail),
        })
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        // An appliance abandoned on an error path must not outlive us.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh, unique scratch directory path under the system temp dir.
fn scratch_path(label: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "shardwatch-load-{label}-{}-{}",
        std::process::id(),
        clock::now_ns()
    ))
}

/// A scratch directory (an appliance's data, a peer's output) that is
/// removed when dropped, on an error path too, and by a signal's undo
/// unless it was made to be kept.
pub struct ScratchDir {
    path: PathBuf,
    /// `None` once kept.
    registered: Option<Registered>,
}

impl ScratchDir {
    /// Creates a fresh one, to be removed (`keep`: kept, and not
    /// registered for removal).
    pub fn create(label: &str, keep: bool) -> anyhow::Result<ScratchDir> {
        let path = scratch_path(label);
        let make = || {
            std::fs::create_dir_all(&path)
                .with_context(|| format!("cannot create {}", path.display()))
        };
        let registered = if keep {
            make()?;
            None
        } else {
            Some(interrupt::doing(|| Ok((make()?, Undo::Scratch(path.clone()))))?.1)
        };
        Ok(ScratchDir { path, registered })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps it after all (a failed peer's output, for its note).
    pub fn keep(&mut self) {
        self.registered = None;
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(registered) = self.registered.take() {
            let _ = std::fs::remove_dir_all(&self.path);
            // Only now out of the registry, so a signal meanwhile finds it.
            drop(registered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        let l = parse_listening(
            "shardwatch: listening udp=127.0.0.1:40001 tcp=127.0.0.1:40002 cores=2 shards=4096 rules=5+3 data=/tmp/x nofile=1024",
        )
        .unwrap();
        assert_eq!(l.udp, Some("127.0.0.1:40001".parse().unwrap()));
        assert_eq!(l.tcp, Some("127.0.0.1:40002".parse().unwrap()));
        assert_eq!(l.fields["cores"], "2");
        let off = parse_listening("shardwatch: listening udp=off tcp=127.0.0.1:1").unwrap();
        assert_eq!(off.udp, None);
        assert_eq!((off.relp, off.tls), (None, None));
        let on = parse_listening(
            "shardwatch: listening udp=127.0.0.1:1 tcp=127.0.0.1:2 relp=127.0.0.1:3 tls=127.0.0.1:4 api=off cores=1",
        )
        .unwrap();
        assert_eq!(on.relp, Some("127.0.0.1:3".parse().unwrap()));
        assert_eq!(on.tls, Some("127.0.0.1:4".parse().unwrap()));
        assert_eq!(parse_listening("shardwatch: stats []"), None);
    }

    #[test]
    fn parses_and_totals_the_stats_line() {
        let line = r#"shardwatch: stats [{"core":0,"udp_datagrams":10,"udp_batches":2,"tcp_frames":1,"events_parsed":9,"journal_bytes":4096,"journal_commits":2,"lines_without_payload":4,"alerts":2,"dropped":{"route_full":3},"quarantined":{"bad_pri":1}},{"core":1,"udp_datagrams":5,"udp_batches":1,"events_parsed":5,"journal_bytes":512,"journal_commits":1,"dropped":{"route_full":1,"x":2},"quarantined":{}}]"#;
        let s = parse_stats(line).unwrap();
        assert_eq!(
            (s.udp_batches, s.journal_bytes, s.journal_commits),
            (3, 4608, 3)
        );
        assert_eq!(
            (s.cores, s.udp_datagrams, s.tcp_frames, s.events_parsed),
            (2, 15, 1, 14)
        );
        assert_eq!(s.events_parsed_per_core, vec![9, 5]);
        assert_eq!(s.lines_without_payload, 4);
        assert_eq!(s.dropped["route_full"], 4);
        assert_eq!(s.dropped_total(), 6);
        assert_eq!(s.quarantined_total(), 1);
        assert_eq!(parse_stats("shardwatch: stats {oops"), None);
        assert_eq!(parse_stats("shardwatch: stats {}"), None);
        // A node that does not report its stall probe.
        assert_eq!((s.stall_p99_us, s.stall_max_us), (None, None));
    }

    #[test]
    fn the_stall_probe_is_the_worst_cores() {
        let line = r#"shardwatch: stats [{"core":0,"stall_p99_us":120,"stall_max_us":40000},{"core":1,"stall_p99_us":900,"stall_max_us":2500}]"#;
        let s = parse_stats(line).unwrap();
        assert_eq!((s.stall_p99_us, s.stall_max_us), (Some(900), Some(40_000)));
    }
}
