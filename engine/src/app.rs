//! `shardwatch run`: start a node, run until SIGINT/SIGTERM, stop cleanly.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use shardwatch_net::transport;
use shardwatch_storage::alerts::AlertLog;
use shardwatch_storage::quarantine::QuarantineWriter;

use crate::config::Config;
use crate::control::{ApiState, ControlPlane};
use crate::liverules::LiveRules;
use crate::output::AlertWriter;
use crate::server::{run_cores, CoreSockets, Shared};
use crate::shardmap::ShardMap;
use crate::stats::{CoreReport, CoreStats};

/// The number of executors to start.
pub fn core_count(config: &Config) -> usize {
    if config.engine.cores > 0 {
        return config.engine.cores;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Makes a panic on a thread the node cannot run without (a core's
/// executor, `sw-core-*`, or the alert writer, `sw-alerts`, and its
/// barrier sync, `sw-alerts-sync`) end the
/// process, after the usual message and backtrace and one line saying
/// why, instead of leaving a node with a dead core (its sockets unread,
/// its shards unowned, a stop that waits on it forever) or no alerts. A
/// supervisor restarts the node and recovery replays the journal, as
/// after any crash. A panic elsewhere (an API request, an output) is
/// reported as usual and leaves ingest and detection running.
pub fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("");
        if name.starts_with("sw-core-") || name == "sw-alerts" || name == "sw-alerts-sync" {
            eprintln!(
                "shardwatch: thread {name} panicked; aborting (a restart recovers from the journal and checkpoints)"
            );
            std::process::abort();
        }
    }));
}

/// Runs a node until a stop signal; returns each core's counters. A panic
/// on a core or the alert writer aborts the process ([`abort_on_panic`]).
pub fn run(config: Config) -> anyhow::Result<Vec<CoreReport>> {
    config.validate()?;
    abort_on_panic();
    let cores = core_count(&config);
    crate::limits::raise_memlock(cores)?;
    let nofile = crate::limits::raise_nofile();
    // Before any core thread allocates (see the constant's docs).
    let malloc_top_pad = crate::limits::tune_malloc();

    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    // Rules uploaded through the API live in the data directory and load
    // like any other rules path.
    let mut rule_paths = config.rules.paths.clone();
    rule_paths.push(crate::liverules::ensure_api_rules_dir(data_dir)?);
    let (live, errors) =
        LiveRules::load(config.rules.builtin, rule_paths, config.compile_options()?)?;
    for error in &errors {
        eprintln!("shardwatch: rule not loaded: {error}");
    }
    let live = Arc::new(live);
    let (_, rules) = live.snapshot();
    if rules.detection_count() == 0 {
        anyhow::bail!("no rules loaded: enable rules.builtin or give --rules PATH");
    }
    let quarantine = Arc::new(QuarantineWriter::open(
        data_dir,
        config.storage.quarantine_bytes_max,
    )?);
    let alert_log = AlertLog::open(data_dir)?;

    let mut udp: Vec<Option<std::net::UdpSocket>> = match config.udp_addr() {
        Some(addr) => {
            let asked = config.ingest.udp_recv_buffer_bytes;
            let group = transport::bind_udp_group(addr, cores, asked)
                .with_context(|| format!("cannot bind UDP {addr}"))?;
            // The kernel reports twice what it was asked (its own
            // accounting); a capped buffer is reported as what it holds.
            if group.capped && group.recv_buffer_bytes < 2 * asked {
                eprintln!(
                    "shardwatch: UDP receive buffer is {} KiB per socket, not the {} KiB asked (ingest.udp_recv_buffer_bytes): capped by net.core.rmem_max; run with CAP_NET_ADMIN or raise that sysctl, or bursts are dropped sooner (shardwatch_udp_kernel_drops_total)",
                    group.recv_buffer_bytes / 2 / 1024,
                    asked / 1024,
                );
            }
            group.sockets.into_iter().map(Some).collect()
        }
        None => (0..cores).map(|_| None).collect(),
    };
    let bind_stream = |addr: Option<std::net::SocketAddr>,
                       name: &str|
     -> anyhow::Result<Vec<Option<std::net::TcpListener>>> {
        Ok(match addr {
            Some(addr) => transport::bind_tcp_group(addr, cores)
                .with_context(|| format!("cannot bind {name} {addr}"))?
                .into_iter()
                .map(Some)
                .collect(),
            None => (0..cores).map(|_| None).collect(),
        })
    };
    let mut tcp = bind_stream(config.tcp_addr(), "TCP")?;
    let mut relp = bind_stream(config.relp_addr(), "RELP")?;
    let mut tls = bind_stream(config.tls_addr(), "TLS")?;
    let tls_config = match config.tls_addr() {
        Some(_) => {
            let path = |p: &str| (!p.is_empty()).then(|| std::path::PathBuf::from(p));
            Some(
                shardwatch_net::tls::server_config(&shardwatch_net::tls::TlsServerSettings {
                    cert_file: config.ingest.tls_cert.clone().into(),
                    key_file: config.ingest.tls_key.clone().into(),
                    client_ca_file: path(&config.ingest.tls_client_ca),
                    require_client_cert: config.ingest.tls_require_client_cert,
                })
                .context("cannot set up TLS ingest")?,
            )
        }
        None => None,
    };
    let first_addr = |v: &[Option<std::net::TcpListener>]| {
        v.first()
            .and_then(|s| s.as_ref())
            .and_then(|s| s.local_addr().ok())
    };
    let relp_bound = first_addr(&relp);
    let tls_bound = first_addr(&tls);
    let udp_bound = udp
        .first()
        .and_then(|s| s.as_ref())
        .and_then(|s| s.local_addr().ok());
    let tcp_bound = tcp
        .first()
        .and_then(|s| s.as_ref())
        .and_then(|s| s.local_addr().ok());
    let sockets: Vec<CoreSockets> = (0..cores)
        .map(|i| CoreSockets {
            udp: udp[i].take(),
            tcp: tcp[i].take(),
            relp: relp[i].take(),
            tls: tls[i].take(),
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while draining ends the process at once.
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .context("cannot install signal handlers")?;
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handlers")?;
    }

    let recovery = Arc::new(crate::durable::plan(
        data_dir,
        cores,
        config.engine.shards,
        config.storage.journal,
    )?);
    for finding in &recovery.findings {
        eprintln!("shardwatch: recovery: {finding}");
    }
    // Before any helper thread starts: they inherit it.
    let cpus = crate::server::core_cpus(cores);
    let helper_cpus = crate::server::pin_helpers_off_cores(&cpus);
    let (alerts, writer) = AlertWriter::start(
        alert_log,
        config.output.stdout,
        config.output.alert_queue_max,
    )?;
    let map = Arc::new(ShardMap::new(1, config.engine.shards, cores as u32));
    let outputs_stop = Arc::new(AtomicBool::new(false));
    let outputs = start_outputs(&config, data_dir, outputs_stop.clone())?;
    let stats: Vec<Arc<CoreStats>> = (0..cores)
        .map(|_| Arc::new(CoreStats::new(cores, map.shards())))
        .collect();
    let schemas: Vec<_> = (0..cores).map(|_| Arc::default()).collect();
    let decoding = crate::liverules::PayloadDecoding::of(&config);
    let control = match config.api_addr() {
        Some(addr) => Some(ControlPlane::start(
            addr,
            ApiState {
                token: config.api.token.clone(),
                live: live.clone(),
                stats: stats.clone(),
                data_dir: data_dir.clone(),
                alerts_by_rule: writer.by_rule.clone(),
                started: std::time::Instant::now(),
                stop: stop.clone(),
                quarantine: quarantine.clone(),
                schemas: schemas.clone(),
                udp_port: udp_bound.map(|a| a.port()),
                outputs: outputs
                    .iter()
                    .map(|o| (o.name.clone(), o.stats.clone()))
                    .collect(),
                shards: map.shards(),
                recovery: recovery.clone(),
                alert_duplicates: writer.duplicates.clone(),
                alert_log: writer.status.clone(),
                alerts_written: writer.written.clone(),
                decoding,
            },
            stop.clone(),
        )?),
        None => None,
    };
    // Before the listening line: a SIGHUP sent as soon as it appears
    // must find its handler (the default action ends the process).
    let watcher = start_rule_watcher(
        live.clone(),
        stop.clone(),
        config.rules.watch_interval_ms,
        decoding,
    )?;
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    // RELP and TLS appear only when on, so the line stays as it was for
    // plain syslog.
    let mut extra_listeners = String::new();
    if let Some(addr) = relp_bound {
        extra_listeners.push_str(&format!(" relp={addr}"));
    }
    if let Some(addr) = tls_bound {
        extra_listeners.push_str(&format!(" tls={addr}"));
    }
    eprintln!(
        "shardwatch: listening udp={} tcp={}{extra_listeners} api={} cores={cores} shards={} rules={}+{} data={} nofile={nofile} malloc_top_pad={malloc_top_pad} cpus={} helper_cpus={}",
        show(udp_bound),
        show(tcp_bound),
        show(control.as_ref().map(|c| c.addr)),
        map.shards(),
        rules.detection_count(),
        rules.correlation_count(),
        data_dir.display(),
        core_cpu_list(&cpus),
        if helper_cpus.is_empty() {
            "shared".to_string()
        } else {
            cpu_list(&helper_cpus)
        },
    );
    eprintln!(
        "shardwatch: {}",
        decoding.status(crate::liverules::decode_blocker(&rules).as_deref())
    );
    let shared = Arc::new(Shared {
        schemas: schemas.clone(),
        stats,
        config: config.clone(),
        live,
        map,
        quarantine: quarantine.clone(),
        alerts,
        stop,
        recovery,
        tls: tls_config,
        connections: crate::sources::ConnectionSlots::new(
            config.limits.connections_max,
            config.limits.connections_per_source_max,
        ),
        route_buffers: crate::route::BufferHomes::new(cores),
    });
    let result = run_cores(shared.clone(), sockets, &cpus);
    let _ = watcher.join();
    // The cores stop only once `stop` is set, which also stops the API.
    if let Some(control) = control {
        if let Err(err) = control.join() {
            eprintln!("shardwatch: {err:#}");
        }
    }
    // The cores are gone; dropping the last sender lets the writer drain.
    drop(shared);
    let written = writer.join();
    // Outputs read the alert log: now that the writer has flushed it, let
    // them deliver what is left and stop.
    outputs_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for output in outputs {
        output.join();
    }
    // Unwritten quarantine records are reported, not a reason to skip
    // the rest of the stop (the final counters).
    if let Err(err) = quarantine.flush() {
        eprintln!("shardwatch: {err}");
    }
    let reports = result?;
    let written = written?;
    eprintln!(
        "shardwatch: stopped; alerts written={written} quarantined={}",
        quarantine.written_total()
    );
    Ok(reports)
}

/// Reloads the rules when a rule file changes (polled every `interval_ms`;
/// 0 turns polling off) or on SIGHUP, until `stop`, and says what each
/// reload did (with `decoding`, whether payloads are now all decoded).
fn start_rule_watcher(
    live: Arc<LiveRules>,
    stop: Arc<AtomicBool>,
    interval_ms: u64,
    decoding: crate::liverules::PayloadDecoding,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    use std::sync::atomic::Ordering;
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())
        .context("cannot install the SIGHUP handler")?;
    std::thread::Builder::new()
        .name("sw-rules".into())
        .spawn(move || {
            let tick = std::time::Duration::from_millis(100);
            let mut seen = crate::liverules::files_fingerprint(live.paths());
            let mut waited_ms = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited_ms += 100;
                let mut reason = None;
                if hangup.swap(false, Ordering::Relaxed) {
                    reason = Some("SIGHUP");
                }
                if interval_ms > 0 && waited_ms >= interval_ms {
                    waited_ms = 0;
                    let now = crate::liverules::files_fingerprint(live.paths());
                    if now != seen {
                        seen = now;
                        reason = reason.or(Some("rule files changed"));
                    }
                }
                if let Some(reason) = reason {
                    match live.reload() {
                        Ok(report) => {
                            eprintln!("shardwatch: {}", report.describe(reason, decoding))
                        }
                        Err(err) => eprintln!("shardwatch: {err} ({reason})"),
                    }
                }
            }
        })
        .context("cannot start the rule watcher thread")
}

/// Starts the configured alert outputs.
fn start_outputs(
    config: &Config,
    data_dir: &std::path::Path,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<crate::outputs::OutputThread>> {
    use crate::outputs;
    let wanted = outputs::from_config(&config.outputs)?;
    wanted
        .into_iter()
        .map(|output| outputs::start(data_dir, output, stop.clone()))
        .collect()
}

/// The CPU each core is pinned to, in core order (`0,1`);
/// `unpinned` when no CPU list is known.
fn core_cpu_list(cpus: &[Option<usize>]) -> String {
    if cpus.iter().any(Option::is_none) {
        return "unpinned".into();
    }
    cpu_list(&cpus.iter().flatten().copied().collect::<Vec<_>>())
}

/// CPUs as the listening line writes them: `0,1,2`.
fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Helper threads keep off the cores' CPUs, and threads they start
    /// inherit that; with a core on every CPU, or unpinned cores, nothing
    /// changes.
    #[test]
    fn helper_threads_keep_off_the_cores_cpus() {
        use crate::server::{allowed_cpus, pin_helpers_off_cores};
        std::thread::spawn(|| {
            let before = allowed_cpus();
            assert!(pin_helpers_off_cores(&[None]).is_empty());
            assert_eq!(allowed_cpus(), before);
            let helpers = pin_helpers_off_cores(&[Some(before[0])]);
            if before.len() == 1 {
                assert!(helpers.is_empty());
                assert_eq!(allowed_cpus(), before);
                return;
            }
            assert_eq!(helpers, before[1..]);
            assert_eq!(allowed_cpus(), helpers);
            let child = std::thread::spawn(allowed_cpus).join().expect("child");
            assert_eq!(child, helpers);
            let every: Vec<Option<usize>> = helpers.iter().map(|cpu| Some(*cpu)).collect();
            assert!(pin_helpers_off_cores(&every).is_empty());
            assert_eq!(allowed_cpus(), helpers);
        })
        .join()
        .expect("the test thread");
    }
    use std::os::unix::process::ExitStatusExt;

    /// The environment variable that makes the panic test its own child;
    /// its value names the thread that panics.
    const PANIC_CHILD: &str = "SW_ABORT_ON_PANIC_CHILD";

    /// Runs this test again as a child whose thread `thread` panics under
    /// [`abort_on_panic`]; returns how it ended and its stderr.
    fn child_panics_on(thread: &str) -> (std::process::ExitStatus, String) {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "app::tests::a_panic_on_a_core_or_the_alert_writer_aborts_the_process",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(PANIC_CHILD, thread)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status, stderr)
    }

    /// A core or the alert writer panicking kills the whole process with
    /// SIGABRT, after the panic's own message; another thread's panic
    /// does not (checked in child processes: this test again).
    #[test]
    fn a_panic_on_a_core_or_the_alert_writer_aborts_the_process() {
        if let Some(thread) = std::env::var_os(PANIC_CHILD) {
            abort_on_panic();
            let worker = std::thread::Builder::new()
                .name(thread.to_string_lossy().into_owned())
                .spawn(|| panic!("gave up"))
                .unwrap();
            assert!(worker.join().is_err());
            // Reached only when the hook let the thread unwind.
            return;
        }
        for thread in ["sw-core-3-1", "sw-alerts"] {
            let (status, stderr) = child_panics_on(thread);
            assert_eq!(status.signal(), Some(libc::SIGABRT), "{thread}: {stderr}");
            assert!(stderr.contains("gave up"), "{stderr}");
            assert!(
                stderr.contains(&format!("thread {thread} panicked; aborting")),
                "{stderr}"
            );
        }
        let (status, stderr) = child_panics_on("sw-control");
        assert!(status.success(), "{stderr}");
        assert!(stderr.contains("gave up"), "{stderr}");
        assert!(!stderr.contains("aborting"), "{stderr}");
    }
}
