//! `bench`: start the real appliance, drive a load at it, stop it, and
//! report what it received beside what was sent and how fast it detected.
//!
//! This is where end-to-end throughput numbers come from. Received events
//! per second are `events_parsed` (plus quarantined lines) over the send
//! duration: the appliance drains what is queued before it exits, so this
//! slightly favours the appliance when it lags; the report gives the raw
//! counts so the reader can judge.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::appliance::{Appliance, ApplianceStats, ScratchDir, Stopped};
use anyhow::Context;

use crate::collect::AlertSource;
use crate::peers::{process_cpu, process_memory, watch_processed, CpuTimes, Memory, MIB};
use crate::report::Report;
use crate::runner::{add_to_report, run_load, RunOptions, RunOutcome};
use crate::send::Target;
use crate::sse::StreamTarget;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which listener the load goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Udp,
    Tcp,
    /// RELP (`--relp 127.0.0.1:0` is added to the appliance's arguments).
    Relp,
    /// Syslog over TLS (`--tls 127.0.0.1:0 --tls-cert --tls-key`).
    Tls,
}

/// How `bench` collects the appliance's alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AlertsVia {
    /// Tail its `alerts.jsonl` (inotify).
    #[default]
    File,
    /// Subscribe to its live stream, `GET /api/alerts/stream`.
    Stream,
}

/// `bench` options beyond the load itself.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub binary: PathBuf,
    pub cores: usize,
    pub transport: Transport,
    pub keep_data: bool,
    pub extra_args: Vec<String>,
    /// Poll the appliance's `/metrics` (its API must be enabled, e.g.
    /// `--api 127.0.0.1:0` in `extra_args`) and record when it has received
    /// this many frames and has no routed batch queued.
    pub watch_events: Option<u64>,
    /// The appliance's TLS certificate and key (`--transport tls`).
    pub tls_server: Option<(PathBuf, PathBuf)>,
    pub alerts_via: AlertsVia,
}

/// The result of one bench.
#[derive(Debug)]
pub struct BenchOutcome {
    pub run: RunOutcome,
    pub stopped: Stopped,
    pub data_dir: PathBuf,
    /// CPU the appliance used from the start of the load until just before
    /// SIGTERM (all threads, from `/proc/<pid>/stat`); None when it could
    /// not be read.
    pub cpu: Option<CpuTimes>,
    /// Its resident memory when the load ended (just before SIGTERM), with
    /// the peak since it started; None when it could not be read.
    pub memory: Option<Memory>,
    /// When `/metrics` first showed every watched event processed.
    pub processed_ns: Option<i64>,
    /// The CPUs the harness's threads were kept on (those the appliance's
    /// pinned cores leave free); empty when none were left, so harness and
    /// appliance shared CPUs.
    pub harness_cpus: Vec<usize>,
    /// What the binary's `--version` printed (its version and build).
    pub build: Option<String>,
}

/// The CPUs the harness may take beside an appliance whose cores are
/// pinned to `appliance` (its listening line's `cpus=0,1`; `None` for a
/// binary that does not say, which pins core `i` to the `i`-th CPU of its
/// affinity mask, inherited from `allowed`, the harness's own): those of
/// `allowed` its cores leave free.
fn free_cpus(appliance: Option<&[usize]>, cores: usize, allowed: &[usize]) -> Vec<usize> {
    match appliance {
        Some(taken) => allowed
            .iter()
            .copied()
            .filter(|cpu| !taken.contains(cpu))
            .collect(),
        None => allowed.iter().skip(cores).copied().collect(),
    }
}

/// Runs one bench; `load.targets` and `load.alerts` are filled in here.
pub fn bench(bench: &BenchOptions, load: &mut RunOptions) -> anyhow::Result<BenchOutcome> {
    if load.steer_loopback {
        crate::steer::check_writable().context("--steer-loopback")?;
    }
    // Measured before the appliance starts and before the harness keeps
    // off its CPUs, so that the wake-up is one between two CPUs.
    load.kernel_costs = crate::machine::KernelCosts::measure(&crate::machine::allowed_cpus());
    // Removed when this returns, on an error too, or by a signal's undo
    // (declared before the appliance, so dropped after it has stopped).
    let scratch = ScratchDir::create("bench", bench.keep_data)?;
    let data_dir = scratch.path().to_path_buf();
    let mut args = bench.extra_args.clone();
    // The API on a free port, so benches can run side by side (and beside
    // a node on the default port) unless the caller chose one.
    if !args.iter().any(|a| a == "--api") {
        args.extend(["--api".to_string(), "127.0.0.1:0".to_string()]);
    }
    match bench.transport {
        Transport::Udp | Transport::Tcp => {}
        Transport::Relp => args.extend(["--relp".to_string(), "127.0.0.1:0".to_string()]),
        Transport::Tls => {
            let Some((cert, key)) = &bench.tls_server else {
                anyhow::bail!("--transport tls needs the appliance's certificate and key");
            };
            args.extend(["--tls".to_string(), "127.0.0.1:0".to_string()]);
            args.push("--tls-cert".into());
            args.push(cert.display().to_string());
            args.push("--tls-key".into());
            args.push(key.display().to_string());
        }
    }
    // What `--version` prints (`shardwatch 0.1.0 (release, profile-guided)`),
    // so that the report says which build it measured.
    let build = crate::peers::version_line(&bench.binary, &["--version"], &[]);
    let appliance = Appliance::start(&bench.binary, bench.cores, &data_dir, &args)?;
    let l = &appliance.listening;
    let target = match bench.transport {
        Transport::Udp => l.udp.map(Target::Udp),
        Transport::Tcp => l.tcp.map(Target::Tcp),
        Transport::Relp => l.relp.map(Target::Relp),
        Transport::Tls => l.tls.map(Target::Tls),
    };
    let Some(target) = target else {
        anyhow::bail!(
            "the appliance did not report a {:?} address: {:?}",
            bench.transport,
            l.fields
        );
    };
    eprintln!(
        "shardwatch-load: appliance pid {} listening on {target}, data {}",
        appliance.pid(),
        data_dir.display()
    );
    load.targets = vec![target];
    let api = l
        .fields
        .get("api")
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
    load.alerts = Some(match bench.alerts_via {
        AlertsVia::File => AlertSource::File(data_dir.join("alerts.jsonl")),
        AlertsVia::Stream => {
            let api = api.context("--alerts-via stream needs the appliance's API address")?;
            AlertSource::Stream(StreamTarget {
                addr: api,
                path: crate::sse::STREAM_PATH.to_string(),
                token: None,
            })
        }
    });
    // The harness (senders, alert collector) keeps off the appliance's
    // CPUs where any are left, so it does not take the CPU it measures;
    // the mask is put back after the run.
    let allowed = crate::machine::allowed_cpus();
    let appliance_cpus = l
        .fields
        .get("cpus")
        .filter(|list| *list != "unpinned")
        .map(|list| crate::machine::parse_cpu_list(list));
    let free = free_cpus(appliance_cpus.as_deref(), bench.cores, &allowed);
    let harness_cpus = if !free.is_empty() && crate::machine::pin_to(&free) {
        eprintln!("shardwatch-load: harness threads on CPUs {free:?}");
        free
    } else {
        eprintln!(
            "shardwatch-load: no CPU left beside the appliance's {} cores: harness and appliance share CPUs",
            bench.cores
        );
        Vec::new()
    };
    let cpu_start = process_cpu(appliance.pid()).ok();
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = match (bench.watch_events, api) {
        (Some(n), Some(api)) => Some(watch_processed(api, n, stop_watch.clone())),
        _ => None,
    };
    let run = run_load(load);
    stop_watch.store(true, Ordering::Relaxed);
    let processed_ns = watcher.and_then(|w| w.join().ok().flatten());
    let cpu = match (cpu_start, process_cpu(appliance.pid()).ok()) {
        (Some(start), Some(end)) => Some(end.since(start)),
        _ => None,
    };
    let memory = process_memory(appliance.pid()).ok();
    if !harness_cpus.is_empty() {
        crate::machine::pin_to(&allowed);
    }
    let stopped = appliance.stop()?;
    let mut run = run?;
    // Name the appliance's CPUs among those the load's report lists.
    for share in &mut run.machine {
        if appliance_cpus.is_none() {
            share.role = "shared";
        } else if appliance_cpus
            .as_ref()
            .is_some_and(|c| c.contains(&share.cpu))
        {
            share.role = "appliance";
        }
    }
    Ok(BenchOutcome {
        run,
        stopped,
        data_dir,
        cpu,
        memory,
        processed_ns,
        harness_cpus,
        build,
    })
}

/// Adds the appliance's side to a report.
pub fn add_bench_to_report(
    outcome: &BenchOutcome,
    bench: &BenchOptions,
    load: &RunOptions,
    report: &mut Report,
) {
    add_to_report(&outcome.run, load, report);
    let sent = outcome.run.send.sent;
    let duration_s = outcome.run.send.duration_s();
    let stats = outcome.stopped.stats.clone().unwrap_or_default();
    let received = match bench.transport {
        Transport::Udp => stats.udp_datagrams,
        // TLS frames go through the TCP framer and are counted with it.
        Transport::Tcp | Transport::Tls => stats.tcp_frames,
        Transport::Relp => stats.relp_messages,
    };
    let accepted = stats.events_parsed + stats.quarantined_total();
    let io = io_line(&stats, decoding_status(&outcome.stopped.stderr_tail));
    let lost = sent.saturating_sub(received);
    let parsed_eps = stats.events_parsed as f64 / duration_s;
    // CPUs the node's threads used on average while the load was sent.
    let cpus_busy = outcome
        .cpu
        .filter(|_| duration_s > 0.0)
        .map(|c| c.total_s() / duration_s);
    report.body.insert(
        "appliance".into(),
        json!({
            "binary": bench.binary.display().to_string(),
            "version": outcome.build,
            "cores": bench.cores,
            "transport": format!("{:?}", bench.transport).to_lowercase(),
            "exit_code": outcome.stopped.exit_code,
            "clean_exit": outcome.stopped.clean,
            "stats_parsed": outcome.stopped.stats.is_some(),
            "received": received,
            "events_parsed": stats.events_parsed,
            "quarantined_total": stats.quarantined_total(),
            "dropped_total": stats.dropped_total(),
            "lost_before_receive": lost,
            "received_eps": received as f64 / duration_s,
            "relp_messages": stats.relp_messages,
            "relp_acks": stats.relp_acks,
            "tls_sessions": stats.tls_sessions,
            "tls_handshake_failures": stats.tls_handshake_failures,
            "cpu": outcome.cpu,
            "memory": outcome.memory,
            "harness_cpus": outcome.harness_cpus,
            "cpu_us_per_event": outcome.cpu.filter(|_| accepted > 0).map(|c| c.total_s() * 1e6 / accepted as f64),
            "cpus_busy_avg": cpus_busy,
            "parsed_eps": parsed_eps,
            "sent_eps": sent as f64 / duration_s,
            "stats": stats,
            "stderr_tail": outcome.stopped.stderr_tail,
            "data_dir": if bench.keep_data { Some(outcome.data_dir.display().to_string()) } else { None },
        }),
    );
    report.summary.push(format!(
        "appliance: {} ({})",
        bench.binary.display(),
        outcome.build.as_deref().unwrap_or("its --version failed")
    ));
    report.summary.push(format!(
        "appliance ({} cores, {}): received {received} of {sent} ({lost} lost before receive), parsed {} ({:.0}/s), quarantined {}, dropped {} {:?}, exit {:?}",
        bench.cores,
        format!("{:?}", bench.transport).to_lowercase(),
        stats.events_parsed,
        parsed_eps,
        stats.quarantined_total(),
        stats.dropped_total(),
        stats.dropped,
        outcome.stopped.exit_code,
    ));
    if let Some(line) = io {
        report.summary.push(line);
    }
    if let Some(cpu) = outcome.cpu.filter(|_| accepted > 0) {
        let us_per_event = cpu.total_s() * 1e6 / accepted as f64;
        let placement = if outcome.harness_cpus.is_empty() {
            "harness on the same CPUs".to_string()
        } else {
            format!("harness on CPUs {:?}", outcome.harness_cpus)
        };
        report.summary.push(format!(
            "appliance CPU: {us_per_event:.2} us per event ({:.2} s user + {:.2} s sys over {accepted} events; {placement}): about {:.0} events/s per fully busy core; its threads used {:.2} CPUs on average while the load was sent",
            cpu.user_s,
            cpu.sys_s,
            1e6 / us_per_event,
            cpus_busy.unwrap_or(0.0),
        ));
        if load.rate_eps.is_none() {
            if let Some(note) = not_cpu_bound(parsed_eps, us_per_event, bench.cores) {
                report.summary.push(note);
            }
        }
    }
    if let Some(line) = memory_line(outcome.memory, &stats) {
        report.summary.push(line);
    }
    if let Some(line) = stall_line(&stats) {
        report.summary.push(line);
    }
    if accepted < received {
        report.summary.push(format!(
            "note: {} received frames were neither parsed nor quarantined",
            received - accepted
        ));
    }
}

/// How late the node's stall probe fired (see `ApplianceStats`): a
/// detection latency tail with stalls of its size lay in the core or
/// under it (its own work, its CPU taken); one without lay before it.
fn stall_line(stats: &ApplianceStats) -> Option<String> {
    let (p99, max) = (stats.stall_p99_us?, stats.stall_max_us?);
    Some(format!(
        "appliance stalls: the cores' stall probe fired late by p99 {} max {} (worst core, while it served): how long a core could not run its tasks",
        crate::hist::human_us(p99),
        crate::hist::human_us(max),
    ))
}

/// Flat out, a node whose cores were kept busy parses about as many
/// events per second as its CPU per event allows on its cores. Well below
/// that (under 80%), something other than CPU held it back (a disk it
/// waited for, a sender slower than the node): the note says so, since
/// "events/s per fully busy core" then describes a node that was not.
fn not_cpu_bound(parsed_eps: f64, us_per_event: f64, cores: usize) -> Option<String> {
    if us_per_event <= 0.0 || cores == 0 {
        return None;
    }
    let capacity = cores as f64 * 1e6 / us_per_event;
    (parsed_eps < 0.8 * capacity).then(|| {
        format!(
            "note: not CPU-bound: parsed {parsed_eps:.0}/s, {:.0}% of the {capacity:.0}/s its CPU per event allows on {cores} core(s); it waited for something else (its disk, the sender, the network)",
            100.0 * parsed_eps / capacity
        )
    })
}

/// The appliance's memory: resident when the load ended and its peak,
/// from `/proc`, and what its exit stats estimate the correlation state
/// held (per detector kind, summed over cores) with the groups and the
/// evictions its caps forced. `None` when neither is known.
fn memory_line(memory: Option<Memory>, stats: &ApplianceStats) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(m) = memory {
        parts.push(format!(
            "resident {:.1} MiB when the load ended, peak {:.1} MiB",
            m.rss_bytes as f64 / MIB,
            m.peak_rss_bytes as f64 / MIB
        ));
    }
    let cores = stats
        .per_core
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let sum = |key: &str| -> Option<u64> {
        cores
            .iter()
            .map(|core| core.get(key).and_then(Value::as_u64))
            .sum()
    };
    let state_bytes: Option<u64> = cores
        .iter()
        .map(|core| {
            core.get("state_bytes")
                .and_then(Value::as_object)
                .map(|kinds| kinds.values().filter_map(Value::as_u64).sum::<u64>())
        })
        .sum();
    if let (Some(bytes), Some(groups)) = (
        state_bytes.filter(|_| !cores.is_empty()),
        sum("shard_groups"),
    ) {
        parts.push(format!(
            "correlation state at exit {:.1} MiB (estimated) in {groups} groups; groups evicted by the per-shard cap {}, by the memory cap {}",
            bytes as f64 / MIB,
            sum("groups_evicted").unwrap_or(0),
            sum("state_groups_evicted").unwrap_or(0)
        ));
    }
    (!parts.is_empty()).then(|| format!("appliance memory: {}", parts.join("; ")))
}

/// The node's sentence on whether lines no rule can see skip their
/// payload's decode (printed at start and after each reload; the last
/// one is in force), from its stderr.
fn decoding_status(stderr: &[String]) -> Option<&str> {
    stderr.iter().rev().find_map(|line| {
        let said = line.strip_prefix("shardwatch: ")?;
        let said = said.rsplit("; ").next().unwrap_or(said);
        (said.starts_with("every payload is decoded") || said.starts_with("lines no rule can see"))
            .then_some(said)
    })
}

/// The appliance's write and read sizes, from its exit stats: journal
/// bytes per group-commit write and datagrams per `recvmmsg` (what the
/// I/O path cost depends on), and how many lines it finished from their
/// header, or with none, why not (`decoding`, the node's own sentence);
/// `None` when it did none of these.
fn io_line(stats: &ApplianceStats, decoding: Option<&str>) -> Option<String> {
    let mut parts = Vec::new();
    if stats.journal_commits > 0 {
        parts.push(format!(
            "journal {:.1} MB in {} writes ({:.0} KiB each, {:.0} bytes per event)",
            stats.journal_bytes as f64 / 1e6,
            stats.journal_commits,
            stats.journal_bytes as f64 / stats.journal_commits as f64 / 1024.0,
            stats.journal_bytes as f64
                / (stats.events_parsed + stats.quarantined_total()).max(1) as f64,
        ));
    }
    if stats.lines_without_payload > 0 {
        parts.push(format!(
            "{} lines ({:.0}%) finished from their header, payload not decoded",
            stats.lines_without_payload,
            100.0 * stats.lines_without_payload as f64 / stats.events_parsed.max(1) as f64,
        ));
    } else if let Some(why) = decoding.filter(|why| why.starts_with("every payload")) {
        parts.push(format!("no line finished from its header: {why}"));
    }
    if stats.udp_batches > 0 {
        parts.push(format!(
            "UDP {} datagrams in {} reads ({:.1} per recvmmsg)",
            stats.udp_datagrams,
            stats.udp_batches,
            stats.udp_datagrams as f64 / stats.udp_batches as f64,
        ));
    }
    (!parts.is_empty()).then(|| format!("appliance I/O: {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stall_line_gives_the_probe_lateness_when_the_node_reports_it() {
        let stats = super::ApplianceStats {
            stall_p99_us: Some(850),
            stall_max_us: Some(39_900),
            ..Default::default()
        };
        assert_eq!(
            super::stall_line(&stats).unwrap(),
            "appliance stalls: the cores' stall probe fired late by p99 850 us max 39.9 ms (worst core, while it served): how long a core could not run its tasks"
        );
        assert_eq!(super::stall_line(&super::ApplianceStats::default()), None);
    }

    #[test]
    fn io_line_gives_write_and_read_sizes() {
        let stats = super::ApplianceStats {
            events_parsed: 1000,
            udp_datagrams: 1000,
            udp_batches: 100,
            journal_bytes: 2 << 20,
            journal_commits: 8,
            lines_without_payload: 400,
            ..Default::default()
        };
        assert_eq!(
            super::io_line(&stats, None).unwrap(),
            "appliance I/O: journal 2.1 MB in 8 writes (256 KiB each, 2097 bytes per event); 400 lines (40%) finished from their header, payload not decoded; UDP 1000 datagrams in 100 reads (10.0 per recvmmsg)"
        );
        assert_eq!(
            super::io_line(&super::ApplianceStats::default(), None),
            None
        );
        // With no line finished from its header, the node's reason; the
        // last sentence it said (a reload's) is the one in force.
        let stderr: Vec<String> = [
            "shardwatch: listening udp=127.0.0.1:1 tcp=127.0.0.1:2",
            "shardwatch: lines no rule can see from their header and message are not decoded",
            "shardwatch: rules reloaded (SIGHUP): generation 2 with 6 detections, 3 correlations, 0 unsupported skipped; every payload is decoded: rule \"R\" (1) may see any line",
            "shardwatch: stopped; alerts written=0 quarantined=0",
        ]
        .map(String::from)
        .to_vec();
        let why = super::decoding_status(&stderr);
        assert_eq!(
            why,
            Some("every payload is decoded: rule \"R\" (1) may see any line")
        );
        let none_skipped = super::ApplianceStats {
            lines_without_payload: 0,
            ..stats
        };
        assert_eq!(
            super::io_line(&none_skipped, why).unwrap(),
            "appliance I/O: journal 2.1 MB in 8 writes (256 KiB each, 2097 bytes per event); no line finished from its header: every payload is decoded: rule \"R\" (1) may see any line; UDP 1000 datagrams in 100 reads (10.0 per recvmmsg)"
        );
        assert_eq!(
            super::decoding_status(&stderr[..2]),
            Some("lines no rule can see from their header and message are not decoded")
        );
    }

    use super::*;

    #[test]
    fn memory_line_gives_resident_memory_and_the_state_the_cores_held() {
        let stats = crate::appliance::parse_stats(
            r#"shardwatch: stats [{"events_parsed":10,"shard_groups":300,"groups_evicted":2,"state_groups_evicted":5,"state_bytes":{"value_count":1048576,"shared":524288}},{"events_parsed":5,"shard_groups":100,"groups_evicted":0,"state_groups_evicted":1,"state_bytes":{"value_count":524288}}]"#,
        )
        .unwrap();
        let memory = Memory {
            rss_bytes: 150 << 20,
            peak_rss_bytes: 200 << 20,
        };
        assert_eq!(
            memory_line(Some(memory), &stats).unwrap(),
            "appliance memory: resident 150.0 MiB when the load ended, peak 200.0 MiB; correlation state at exit 2.0 MiB (estimated) in 400 groups; groups evicted by the per-shard cap 2, by the memory cap 6"
        );
        // An older binary's stats without the state: only what /proc said.
        let old =
            crate::appliance::parse_stats(r#"shardwatch: stats [{"events_parsed":10}]"#).unwrap();
        assert_eq!(
            memory_line(Some(memory), &old).unwrap(),
            "appliance memory: resident 150.0 MiB when the load ended, peak 200.0 MiB"
        );
        assert_eq!(memory_line(None, &ApplianceStats::default()), None);
    }

    #[test]
    fn a_node_parsing_below_its_cpu_capacity_is_called_not_cpu_bound() {
        // 1.6 us per event allows 625 k/s on one core.
        assert!(not_cpu_bound(600_000.0, 1.6, 1).is_none());
        assert!(not_cpu_bound(500_000.0, 1.6, 1).is_none());
        let note = not_cpu_bound(300_000.0, 1.6, 1).unwrap();
        assert!(note.contains("48%"), "{note}");
        // Two cores allow twice as much.
        assert!(not_cpu_bound(600_000.0, 1.6, 2).is_some());
        assert!(not_cpu_bound(1_100_000.0, 1.6, 2).is_none());
        assert!(not_cpu_bound(1.0, 0.0, 1).is_none());
    }

    #[test]
    fn the_harness_takes_the_cpus_the_appliance_leaves() {
        let all = [0, 1, 2, 3, 5, 7];
        // As the appliance reports them, in whatever order.
        assert_eq!(free_cpus(Some(&[1]), 1, &all), vec![0, 2, 3, 5, 7]);
        assert_eq!(free_cpus(Some(&[3, 0]), 2, &all), vec![1, 2, 5, 7]);
        assert_eq!(free_cpus(Some(&[0, 1]), 2, &[0, 1]), Vec::<usize>::new());
        // A binary that does not say: the first `cores` of the mask.
        assert_eq!(free_cpus(None, 1, &all), vec![1, 2, 3, 5, 7]);
        assert_eq!(free_cpus(None, 2, &[0, 1]), Vec::<usize>::new());
        // Started under `taskset -c 1,2`: never 0.
        assert_eq!(free_cpus(None, 1, &[1, 2]), vec![2]);
    }

    #[test]
    fn pinning_keeps_the_thread_on_the_cpus_given() {
        let online = crate::machine::allowed_cpus();
        assert!(!online.is_empty());
        let last = *online.last().unwrap();
        // A thread of its own, so the test runner's threads keep their mask.
        let seen = std::thread::spawn(move || {
            assert!(crate::machine::pin_to(&[last]));
            crate::machine::allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
    }
}
