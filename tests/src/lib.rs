//! Helpers for end-to-end tests: build and start the real `shardwatch`
//! binary, talk to it over loopback sockets, stop it with a signal and read
//! what it wrote.
//!
//! Nothing here mocks the appliance: tests see exactly what an operator
//! would (stdout alerts, stderr lines, files in the data directory).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::Value;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds the `shardwatch` binary once per test process (a no-op when it is
/// fresh) and returns its path; `SHARDWATCH_BIN` names a prebuilt one
/// instead (a release build, for measurements).
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SHARDWATCH_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "SHARDWATCH_BIN={} is missing", bin.display());
            return bin;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "shardwatch", "--bin", "shardwatch"])
            .current_dir(workspace_root())
            .status()
            .expect("cannot run cargo build for the shardwatch binary");
        assert!(status.success(), "building the shardwatch binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        let bin = target.join("debug").join("shardwatch");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("shardwatch-e2e-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A running appliance.
pub struct Appliance {
    child: Child,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub relp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub data_dir: PathBuf,
    stderr_lines: mpsc::Receiver<String>,
    stdout_thread: Option<std::thread::JoinHandle<String>>,
    stderr_seen: Vec<String>,
}

/// What the appliance left behind when it stopped.
#[derive(Debug)]
pub struct Stopped {
    pub exit_ok: bool,
    pub stdout_alerts: Vec<Value>,
    pub stderr: Vec<String>,
    /// Per-core counters from the `shardwatch: stats` line.
    pub stats: Vec<Value>,
    pub data_dir: PathBuf,
}

impl Appliance {
    /// Starts `shardwatch run` on loopback port 0 with `extra` arguments and
    /// waits for its listening line.
    pub fn start(name: &str, extra: &[&str]) -> anyhow::Result<Appliance> {
        Appliance::start_in(temp_dir(name), extra)
    }

    /// [`Appliance::start`] with a configuration file holding `toml` (in
    /// a directory of its own) ahead of the `extra` arguments.
    pub fn start_configured(name: &str, toml: &str, extra: &[&str]) -> anyhow::Result<Appliance> {
        let config = temp_dir(&format!("{name}-config")).join("shardwatch.toml");
        std::fs::write(&config, toml)?;
        let config = config
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", config.display()))?;
        let mut args = vec!["--config", config];
        args.extend_from_slice(extra);
        Appliance::start(name, &args)
    }

    /// Starts `shardwatch run` over an existing data directory (a restart).
    pub fn start_in(data_dir: PathBuf, extra: &[&str]) -> anyhow::Result<Appliance> {
        Appliance::start_with(data_dir, extra, |_| {})
    }

    /// [`Appliance::start_in`] with `configure` applied to the command
    /// first (limits or signal dispositions for the child process).
    pub fn start_with(
        data_dir: PathBuf,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Appliance> {
        // Tests run side by side, so the API takes a free port unless the
        // test picks one.
        let api: &[&str] = if extra.contains(&"--api") {
            &[]
        } else {
            &["--api", "127.0.0.1:0"]
        };
        // Loopback port 0 for syslog too, unless the test picks the TCP
        // address (one outside loopback, say).
        let tcp: &[&str] = if extra.contains(&"--tcp") {
            &[]
        } else {
            &["--tcp", "127.0.0.1:0"]
        };
        let mut command = Command::new(binary());
        command
            .arg("run")
            .args(["--udp", "127.0.0.1:0"])
            .args(tcp)
            .args(api)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().context("cannot start shardwatch")?;
        // Read unless `configure` sent stdout elsewhere.
        let stdout_thread = child.stdout.take().map(|mut stdout| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stdout.read_to_string(&mut text);
                text
            })
        });
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut appliance = Appliance {
            child,
            udp: None,
            tcp: None,
            api: None,
            relp: None,
            tls: None,
            data_dir,
            stderr_lines: rx,
            stdout_thread,
            stderr_seen: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = appliance.stderr_lines.recv_timeout(left).map_err(|_| {
                anyhow!(
                    "shardwatch did not print its listening line; stderr so far: {:?}",
                    appliance.stderr_seen
                )
            })?;
            appliance.stderr_seen.push(line.clone());
            if let Some(rest) = line.strip_prefix("shardwatch: listening ") {
                for part in rest.split(' ') {
                    if let Some(addr) = part.strip_prefix("udp=") {
                        appliance.udp = addr.parse().ok();
                    }
                    if let Some(addr) = part.strip_prefix("tcp=") {
                        appliance.tcp = addr.parse().ok();
                    }
                    if let Some(addr) = part.strip_prefix("api=") {
                        appliance.api = addr.parse().ok();
                    }
                    if let Some(addr) = part.strip_prefix("relp=") {
                        appliance.relp = addr.parse().ok();
                    }
                    if let Some(addr) = part.strip_prefix("tls=") {
                        appliance.tls = addr.parse().ok();
                    }
                }
                return Ok(appliance);
            }
        }
    }

    /// The node's `/metrics` page (read without a token: loopback API).
    pub fn metrics(&self) -> String {
        http_get(self.api(), "/metrics", None)
            .expect("the API answers /metrics")
            .1
    }

    /// The TCP address; panics if TCP is off (a test bug).
    pub fn tcp(&self) -> SocketAddr {
        self.tcp.expect("TCP is enabled")
    }

    /// The UDP address; panics if UDP is off (a test bug).
    pub fn udp(&self) -> SocketAddr {
        self.udp.expect("UDP is enabled")
    }

    /// The appliance's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the appliance process, in KiB (from /proc).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The API address; panics if the API is off (a test bug).
    pub fn api(&self) -> SocketAddr {
        self.api.expect("the API is enabled")
    }

    /// Alerts in `alerts.jsonl` so far.
    pub fn alerts_file(&self) -> Vec<Value> {
        read_jsonl(&self.data_dir.join("alerts.jsonl"))
    }

    /// Waits until `alerts.jsonl` holds at least `n` alerts.
    pub fn wait_for_alerts(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let alerts = self.alerts_file();
            if alerts.len() >= n || Instant::now() >= deadline {
                return alerts;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stderr lines read so far (the listening line and before).
    pub fn stderr_so_far(&mut self) -> Vec<String> {
        while let Ok(line) = self.stderr_lines.try_recv() {
            self.stderr_seen.push(line);
        }
        self.stderr_seen.clone()
    }

    /// Waits until a stderr line contains `needle`; returns it.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(line) = self.stderr_seen.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stderr_lines.recv_timeout(left).ok()?;
            self.stderr_seen.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    /// Kills the process with SIGKILL (a crash) and waits for it; returns
    /// its stderr.
    pub fn kill_hard(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_millis(500)) {
            stderr.push(line);
        }
        stderr
    }

    /// Writes `payload` over one TCP connection, waits for `alerts` alerts
    /// (or 20 s), then stops the node, which must exit cleanly; returns
    /// every alert in its alert log, and how it stopped.
    pub fn send_tcp_then_stop(self, payload: &str, alerts: usize) -> (Vec<Value>, Stopped) {
        let mut stream = std::net::TcpStream::connect(self.tcp()).expect("connect to the node");
        std::io::Write::write_all(&mut stream, payload.as_bytes()).expect("send the payload");
        drop(stream);
        self.wait_for_alerts(alerts, Duration::from_secs(20));
        let stopped = self.stop().expect("stop the node");
        assert!(stopped.exit_ok, "unclean exit: {:?}", stopped.stderr);
        (read_jsonl(&stopped.data_dir.join("alerts.jsonl")), stopped)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<Stopped> {
        // SAFETY: kill only sends a signal to our own child process.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            bail!("cannot signal shardwatch");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("shardwatch did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = self
            .stdout_thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(2)) {
            stderr.push(line);
        }
        let stats = stderr
            .iter()
            .find_map(|l| l.strip_prefix("shardwatch: stats "))
            .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok())
            .unwrap_or_default();
        let stdout_alerts = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).with_context(|| format!("stdout line is not JSON: {l}"))
            })
            .collect::<anyhow::Result<Vec<Value>>>()?;
        Ok(Stopped {
            exit_ok: status.success(),
            stdout_alerts,
            stderr,
            stats,
            data_dir: self.data_dir.clone(),
        })
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a JSON-lines file; a missing file reads as empty.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Sum of a numeric counter over every core's stats.
pub fn total(stats: &[Value], counter: &str) -> u64 {
    stats.iter().filter_map(|c| c[counter].as_u64()).sum()
}

/// An sshd failed-password line in RFC 3164 form.
pub fn ssh_failure(second: u32, ip: &str, user: &str) -> String {
    ssh_failure_shifted(second, 0, ip, user)
}

/// [`ssh_failure`] from a sender whose clock is `shift_s` seconds off
/// (see [`syslog_stamp_shifted`]).
pub fn ssh_failure_shifted(second: u32, shift_s: i64, ip: &str, user: &str) -> String {
    format!(
        "<38>{} bastion sshd[4242]: Failed password for {user} from {ip} port {} ssh2",
        syslog_stamp_shifted(second, shift_s),
        40000 + second
    )
}

/// An RFC 3164 timestamp `second` seconds after the start of the minute in
/// which this test process first asked (the same base for every call, so
/// lines built twice are equal). Test lines are stamped with it rather
/// than a fixed date, which ends up flagged as skewed once it is a day
/// old (and, before the node kept windows on its own clock, lost every
/// brute-force group at the next tick once it was an hour old). Lines
/// may run ahead of the clock (up to an hour in the overload test).
pub fn syslog_stamp(second: u32) -> String {
    syslog_stamp_shifted(second, 0)
}

/// [`syslog_stamp`] as a sender whose clock is `shift_s` seconds off this
/// machine's would write it (negative: behind).
pub fn syslog_stamp_shifted(second: u32, shift_s: i64) -> String {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let now = unix_seconds_now();
        now - now % 60
    });
    rfc3164_stamp(base.saturating_add_signed(shift_s) + u64::from(second))
}

fn unix_seconds_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `seconds` since the Unix epoch as an RFC 3164 timestamp (UTC).
fn rfc3164_stamp(seconds: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(month - 1) as usize],
        day,
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Runs `shardwatch replay` over `file` and returns its alerts.
pub fn replay(file: &Path) -> anyhow::Result<Vec<Value>> {
    let out = Command::new(binary())
        .arg("replay")
        .arg(file)
        .output()
        .context("cannot run shardwatch replay")?;
    if !out.status.success() {
        bail!("replay failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).context("replay line is not JSON"))
        .collect()
}

/// Calls `probe` every `every` until it reports done or `timeout` has
/// passed, and returns its last value: the caller asserts on that, so a
/// timeout fails with what was last seen. For whatever a node does
/// asynchronously (a tick, a walk, a connection still being accepted).
pub fn poll<T>(timeout: Duration, every: Duration, mut probe: impl FnMut() -> (T, bool)) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let (value, done) = probe();
        if done || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(every);
    }
}

/// The values of metric `name`'s samples on a Prometheus text page whose
/// label text contains `label` (`""`: every sample), in page order.
pub fn metric_values(page: &str, name: &str, label: &str) -> Vec<f64> {
    page.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && l.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect()
}

/// The sum of [`metric_values`].
pub fn metric_sum(page: &str, name: &str, label: &str) -> f64 {
    metric_values(page, name, label).iter().sum()
}

/// One HTTP/1.1 GET over a plain socket: (status, body). Enough for tests of
/// our own API without pulling an HTTP client into the workspace.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    http(addr, "GET", path, token, "")
}

/// One HTTP/1.1 request with a body: (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header in {text:?}"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Joins the chunks of a chunked HTTP body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The rsyslogd binary; panics with the fix when it is not installed.
pub fn rsyslogd() -> PathBuf {
    for candidate in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("rsyslogd is not installed: run scripts/setup.sh (it installs the rsyslog package)");
}

/// A real rsyslogd in the foreground with `conf`, killed on drop.
pub struct Rsyslog {
    child: Child,
}

impl Rsyslog {
    /// Writes `conf` into `dir` and starts rsyslogd on it.
    pub fn start(dir: &Path, conf: &str) -> Rsyslog {
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).expect("write rsyslog.conf");
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        Rsyslog { child }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes `command`'s process start under a soft file size limit
/// (`RLIMIT_FSIZE`) of `bytes`: a write that crosses the limit comes back
/// short and one past it fails (EFBIG), as on a full disk, provided the
/// process ignores SIGXFSZ, which `shardwatch run` does itself (the signal's
/// disposition is left at its default here, so a node that did not would
/// die of it). [`lift_file_size_limit`] gives the room back while it runs.
pub fn limit_file_size(command: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // The default disposition, whatever the test runner had.
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Lifts the file size limit of the running process `pid` (`prlimit`).
pub fn lift_file_size_limit(pid: u32) {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid struct; the old limit is not asked for.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &unlimited,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

/// A CA made in the test, and certificates it issues (PEM files in its
/// directory).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl TestCa {
    /// A new CA whose certificate is written to `dir/ca.pem`, returned
    /// with that path.
    pub fn new(dir: &Path) -> (TestCa, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "shardwatch test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, issuer.pem()).unwrap();
        (
            TestCa {
                issuer,
                dir: dir.to_path_buf(),
            },
            path,
        )
    }

    /// A certificate for `names` and its key, as `file.crt` and
    /// `file.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let crt = self.dir.join(format!("{file}.crt"));
        let pem_key = self.dir.join(format!("{file}.key"));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem_key, key.serialize_pem()).unwrap();
        (crt, pem_key)
    }
}
