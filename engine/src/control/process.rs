//! What the appliance's process and its core threads use of the machine,
//! read from the kernel when `/metrics` or `/api/stats` is asked: CPU
//! time (the whole process, and each core thread's time on its CPU),
//! resident memory, open descriptors. A load harness on another machine
//! reads the cost per event from these (`shardwatch-load run
//! --appliance-api`), as `bench` reads it from `/proc` for the node it
//! starts; the `process_*` names are the ones Prometheus's client
//! libraries export, so existing dashboards find them.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::stats::CoreStats;

/// The process's use of the machine, as the kernel counts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessUsage {
    /// CPU time in user and in kernel mode, seconds (`getrusage`).
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// Resident memory, bytes (`/proc/self/statm`).
    pub resident_bytes: Option<u64>,
    /// Open file descriptors and their limit.
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// Threads of the process.
    pub threads: Option<u64>,
    /// When it started, seconds since the epoch.
    pub start_time_s: Option<f64>,
}

/// Reads the process's usage now.
pub fn process_usage() -> ProcessUsage {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    ProcessUsage {
        cpu_user_s: seconds(usage.ru_utime),
        cpu_system_s: seconds(usage.ru_stime),
        resident_bytes: resident_bytes(),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64),
        max_fds: max_fds(),
        threads: stat
            .as_deref()
            .and_then(|line| stat_field(line, 20))
            .and_then(|f| f.parse().ok()),
        start_time_s: stat.as_deref().and_then(start_time_s),
    }
}

/// Field `n` (numbered from 1 as in proc(5), 3 or more) of a
/// `/proc/<pid>/stat` line, counted after the name's last `)`.
fn stat_field(line: &str, n: usize) -> Option<&str> {
    line.get(line.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(n.checked_sub(3)?)
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

fn max_fds() -> Option<u64> {
    // SAFETY: getrlimit fills the zeroed struct it is given.
    let limit = unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        (libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0).then_some(limit)
    }?;
    Some(limit.rlim_cur)
}

/// The process's start (field 22, clock ticks after boot) as seconds
/// since the epoch, with the boot time from `/proc/stat`.
fn start_time_s(stat: &str) -> Option<f64> {
    let ticks: f64 = stat_field(stat, 22)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| boot + ticks / hz as f64)
}

/// Nanoseconds thread `tid` of this process has run on a CPU
/// (`/proc/self/task/<tid>/schedstat`), if the kernel keeps it; 0 for
/// tid 0, a core thread not started yet (the listening line can come
/// before a core's first step).
pub fn thread_cpu_ns(tid: u64) -> Option<u64> {
    if tid == 0 {
        return Some(0);
    }
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Each core thread's time on its CPU, seconds (0 for a core whose
/// thread has not started; None where the kernel does not count it).
pub fn core_cpu_s(cores: &[Arc<CoreStats>]) -> Vec<Option<f64>> {
    cores
        .iter()
        .map(|c| thread_cpu_ns(c.thread_id.load(Ordering::Relaxed)).map(|ns| ns as f64 / 1e9))
        .collect()
}

/// Appends the process metrics in Prometheus's text format.
pub fn render(out: &mut String, cores: &[Arc<CoreStats>]) {
    let usage = process_usage();
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    };
    metric(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time of the whole process, seconds.",
        Some(usage.cpu_user_s + usage.cpu_system_s),
    );
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory, bytes.",
        usage.resident_bytes.map(|b| b as f64),
    );
    metric(
        "process_open_fds",
        "gauge",
        "Open file descriptors.",
        usage.open_fds.map(|n| n as f64),
    );
    metric(
        "process_max_fds",
        "gauge",
        "Most file descriptors the process may open.",
        usage.max_fds.map(|n| n as f64),
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "When the process started, seconds since the epoch.",
        usage.start_time_s,
    );
    let _ = writeln!(
        out,
        "# HELP shardwatch_core_cpu_seconds_total Time each core's thread has run on its CPU (its schedstat), seconds: per event, what a core costs.\n# TYPE shardwatch_core_cpu_seconds_total counter"
    );
    for (core, seconds) in core_cpu_s(cores).into_iter().enumerate() {
        if let Some(seconds) = seconds {
            let _ = writeln!(
                out,
                "shardwatch_core_cpu_seconds_total{{core=\"{core}\"}} {seconds}"
            );
        }
    }
}

/// The same for `/api/stats`: `process` and each core's `cpu_seconds`.
pub fn stats_json(cores: &[Arc<CoreStats>]) -> (Value, Vec<Option<f64>>) {
    let usage = process_usage();
    (
        json!({
            "cpu_user_seconds": usage.cpu_user_s,
            "cpu_system_seconds": usage.cpu_system_s,
            "resident_bytes": usage.resident_bytes,
            "open_fds": usage.open_fds,
            "max_fds": usage.max_fds,
            "threads": usage.threads,
            "start_time_seconds": usage.start_time_s,
        }),
        core_cpu_s(cores),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_grows_with_work_and_names_this_process() {
        let before = process_usage();
        // Burn some CPU on this thread.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = process_usage();
        assert!(
            after.cpu_user_s + after.cpu_system_s >= before.cpu_user_s + before.cpu_system_s + 0.02,
            "{before:?} {after:?}"
        );
        assert!(after.resident_bytes.unwrap() > 1 << 20);
        assert!(after.open_fds.unwrap() >= 3 && after.max_fds.unwrap() >= after.open_fds.unwrap());
        assert!(after.threads.unwrap() >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = after.start_time_s.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} {now}"
        );
    }

    #[test]
    fn a_core_thread_s_cpu_time_is_read_by_its_id_and_rendered() {
        let stats = Arc::new(CoreStats::new(1, 64));
        let idle = Arc::new(CoreStats::new(1, 64));
        // SAFETY: gettid only returns the calling thread's id.
        let tid = unsafe { libc::gettid() };
        stats.thread_id.store(tid as u64, Ordering::Relaxed);
        let start = std::time::Instant::now();
        let mut x = 1u64;
        while start.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_mul(3).wrapping_add(7);
        }
        std::hint::black_box(x);
        let seconds = core_cpu_s(&[stats.clone(), idle.clone()]);
        assert!(seconds[0].unwrap() >= 0.02, "{seconds:?}");
        // A core whose thread has not started has run no time yet.
        assert_eq!(seconds[1], Some(0.0));
        let mut text = String::new();
        render(&mut text, &[stats.clone(), idle]);
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ")
        );
        assert!(text.contains("shardwatch_core_cpu_seconds_total{core=\"0\"} "));
        assert!(
            text.contains("shardwatch_core_cpu_seconds_total{core=\"1\"} 0\n"),
            "{text}"
        );
        // A thread that is not this process's has nothing to read.
        assert_eq!(thread_cpu_ns(u64::from(u32::MAX)), None);
        let (process, cores) = stats_json(&[stats]);
        assert!(process["cpu_user_seconds"].as_f64().unwrap() > 0.0);
        assert!(cores[0].unwrap() >= 0.02);
    }
}
