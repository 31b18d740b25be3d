//! `shardwatch-load`: load generation, attack-scenario injection, alert
//! collection, latency histograms and reports for shardwatch.
//!
//! See `perf/README.md` for usage and how to read a report. The harness
//! only ever sends to loopback addresses.

mod appliance;
mod batch;
mod bench;
mod ceiling;
mod clock;
mod collect;
mod compare;
mod corpus;
mod goals;
mod hist;
mod interrupt;
mod machine;
mod matching;
mod node_api;
mod peers;
mod relp_client;
mod report;
mod rng;
mod runner;
mod scaling;
mod scenario_rules;
mod schedule;
mod send;
mod sse;
mod steer;
mod svg;
mod timefmt;
mod tls_client;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::collect::AlertSource;
use crate::corpus::{Corpus, GenConfig, DEFAULT_START_NS};
use crate::report::Report;
use crate::runner::{GenParams, RunOptions, SenderThreads};
use crate::send::{Framing, SessionOptions, Target};
use crate::tls_client::TlsOptions;

#[derive(Parser)]
#[command(
    name = "shardwatch-load",
    version,
    about = "Load harness for shardwatch: corpus generation, paced sending, alert collection, latency reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a deterministic corpus and its ground truth (FILE.truth.json).
    Gen(GenArgs),
    /// Send a corpus to running listeners and score the alerts.
    Run(RunArgs),
    /// Start the real binary, run a load against it, stop it, report.
    Bench(BenchArgs),
    /// Compare streaming detection with a scheduled-batch SIEM model.
    Batch(BatchArgs),
    /// Send the same corpus to rsyslog, syslog-ng and sec beside shardwatch
    /// and compare events per second and CPU per event.
    Peers(PeersArgs),
    /// Bench several builds or settings in rounds (the order rotated each
    /// round) and compare them by their ratios within rounds.
    Compare(CompareArgs),
    /// Measure the load harness issue's four goals (TCP flat out, UDP
    /// without loss, latency at half the maximum, batch against
    /// streaming), each over rounds, with a verdict per goal.
    Goals(GoalsArgs),
    /// Find the highest paced rate at which a bench still meets a
    /// criterion (nothing lost, or detection p99 under a bound), by
    /// bisection from the flat-out rate.
    Ceiling(CeilingArgs),
    /// Bench the same load at several core counts, in rounds, and plot
    /// events per second against cores beside linear scaling.
    Scaling(ScalingArgs),
}

#[derive(Args, Clone)]
struct CorpusArgs {
    /// Distinct users, hosts and client addresses in the background.
    #[arg(long, default_value_t = 200)]
    entities: u32,
    /// Seed of the generator: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Background events per second of event time (the corpus's timeline).
    #[arg(long, default_value_t = 100.0)]
    event_rate: f64,
    /// Scenarios to inject: `all`, `none` or `name[=count],...`
    /// (ssh_brute_force, sudo_failures, su_failure, password_spraying,
    /// port_scan, lateral_movement, host_silent, new_network,
    /// rare_template). Without a count a row gets one instance
    /// per 10,000 events, at least 3.
    #[arg(long, default_value = "all")]
    scenarios: String,
}

impl CorpusArgs {
    fn params(&self, events: u64) -> anyhow::Result<GenParams> {
        Ok(GenParams {
            entities: self.entities,
            seed: self.seed,
            event_rate: self.event_rate,
            scenarios: corpus::parse_scenarios(&self.scenarios, corpus::default_count(events))?,
        })
    }
}

#[derive(Args)]
struct GenArgs {
    /// Corpus file to write; the truth goes to FILE.truth.json.
    #[arg(long)]
    out: PathBuf,
    /// Total events, scenario events included.
    #[arg(long)]
    events: u64,
    /// First event time (RFC 3339, or `now`); fixed by default so output is
    /// reproducible.
    #[arg(long)]
    start: Option<String>,
    #[command(flatten)]
    corpus: CorpusArgs,
}

/// `--rate`'s default.
const RATE_DEFAULT: &str = "10000";
/// The UDP goal's ceiling search: each trial's wait after its send (for
/// the node to read what its socket holds; no alerts are awaited).
const UDP_CEILING_DRAIN_MS: u64 = 1_000;

#[derive(Args, Clone)]
struct LoadArgs {
    /// Events per second (paced, coordinated-omission safe) or `max`.
    #[arg(long, default_value = RATE_DEFAULT, value_parser = parse_rate)]
    rate: Rate,
    /// Stop after this long (`30s`, `2m`); with a numeric rate and no
    /// --events it also sets the event count.
    #[arg(long, value_parser = parse_duration_s)]
    duration: Option<u64>,
    /// Events to send (from the start of the corpus).
    #[arg(long)]
    events: Option<u64>,
    /// Sockets (UDP) or connections (TCP) per target.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// TCP and TLS framing `LEN SP MSG` instead of LF-terminated lines.
    #[arg(long)]
    octet_counting: bool,
    /// RELP: most unacknowledged frames per connection (librelp's default
    /// is 128).
    #[arg(long, default_value_t = relp_client::RELP_WINDOW_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=relp_client::RELP_WINDOW_MAX as u64))]
    relp_window: u64,
    /// TLS: PEM CA the appliance's certificate must chain to (required for
    /// `tls://` targets; `bench --transport tls` makes its own).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// TLS: PEM client certificate, for an appliance that asks for one.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS: PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS: the name the appliance's certificate is checked against.
    #[arg(long, default_value = tls_client::SERVER_NAME_DEFAULT)]
    tls_server_name: String,
    /// A corpus written by `gen`; without it one is generated in memory.
    #[arg(long)]
    corpus: Option<PathBuf>,
    #[command(flatten)]
    gen: CorpusArgs,
    /// Stamp events as senders whose clock is this far off this machine's
    /// would (`-5h`: five hours behind, `90m`: ahead; whole seconds): the
    /// appliance ends windows on its own clock from each line's arrival,
    /// so detection should not change.
    #[arg(long, default_value = "0s", value_parser = parse_offset_ns, allow_hyphen_values = true)]
    sender_clock: i64,
    /// How long to wait for alerts after the last event, in milliseconds
    /// (`run` with the appliance's API: at most that long again for its
    /// counts to settle).
    #[arg(long, default_value_t = 5_000)]
    drain_ms: u64,
    /// Paced runs: write at most once every this many microseconds, all
    /// the lines due by then (0: write each line as soon as it falls due,
    /// which on loopback is a write every few lines). Latency still counts
    /// from each line's intended send time, so the wait counts against the
    /// appliance; what changes is the per-write cost on both sides.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    flush_us: u64,
    /// Directory for report.json, summary.txt and the SVG plots.
    #[arg(long)]
    out: PathBuf,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// The scenario rule file or directory (default:
    /// perf/rules/scenarios.yml; `perf/rules` adds the anomaly rules;
    /// `none` loads only the built-in pack). `bench` passes it to the
    /// appliance with `--rules`; scenarios whose rules it lacks are
    /// reported as `not loaded` instead of as misses.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Steer loopback's receive processing (RPS on `lo`) to the harness's
    /// CPUs while the load runs, and put the previous masks back after
    /// (needs root). On loopback the appliance's ACKs otherwise send the
    /// sender's queued data from the appliance's CPU (perf/README.md,
    /// "Loopback").
    #[arg(long)]
    steer_loopback: bool,
    /// Threads that send, each over its own share of the connections and
    /// its stripes of the corpus: a number (at most one per connection)
    /// or `auto`, one per connection up to the CPUs the harness may run
    /// on. Default 1 (`scaling`: auto), so that one sender thread does
    /// not cap a node with many cores.
    #[arg(long, value_parser = SenderThreads::parse)]
    sender_threads: Option<SenderThreads>,
}

/// The scenario gate for `--rules` (or the default file), probing `binary`
/// for the fields scenarios need when one is given.
/// `--rules none` loads no scenario rules (the built-in pack only), and the
/// rows that need them are reported as `not loaded` without a warning.
fn scenario_gate(rules: Option<&Path>, binary: Option<&Path>) -> scenario_rules::Gate {
    let file = if rules.is_some_and(|p| p == Path::new(scenario_rules::RULES_NONE)) {
        scenario_rules::RuleFile::read(None)
    } else {
        let path = rules.map_or_else(scenario_rules::default_rules_path, Path::to_path_buf);
        let file = scenario_rules::RuleFile::read(Some(&path));
        if let Some(problem) = &file.problem {
            eprintln!("shardwatch-load: warning: scenario rules not loaded: {problem}");
        }
        file
    };
    let gate = scenario_rules::Gate::new(file, binary);
    if let Some(problem) = &gate.probe_problem {
        eprintln!(
            "shardwatch-load: warning: field probe failed, scoring every scenario: {problem}"
        );
    }
    gate
}

impl LoadArgs {
    fn options(
        &self,
        targets: Vec<Target>,
        alerts: Option<AlertSource>,
        binary: Option<&Path>,
    ) -> anyhow::Result<RunOptions> {
        // Scenario counts scale with the events a generated corpus will hold.
        let planned_events = match (self.events, self.duration, self.rate.0) {
            (Some(n), _, _) => n,
            (None, Some(d), Some(r)) => (d as f64 * r) as u64,
            _ => 0,
        };
        Ok(RunOptions {
            targets,
            rate_eps: self.rate.0,
            events: self.events,
            duration_s: self.duration.map(|d| d as f64),
            connections: self.connections,
            framing: if self.octet_counting {
                Framing::OctetCounting
            } else {
                Framing::Lf
            },
            session: SessionOptions {
                relp_window: self.relp_window as usize,
                tls: TlsOptions {
                    ca_file: self.tls_ca.clone(),
                    cert_file: self.tls_cert.clone(),
                    key_file: self.tls_key.clone(),
                    server_name: self.tls_server_name.clone(),
                },
            },
            corpus: self.corpus.clone(),
            gen: self.gen.params(planned_events)?,
            sender_clock_ns: self.sender_clock,
            flush_interval_ns: self.flush_us as i64 * 1_000,
            alerts,
            drain_ms: self.drain_ms,
            progress: !self.quiet,
            gate: scenario_gate(self.rules.as_deref(), binary),
            kernel_costs: None,
            steer_loopback: self.steer_loopback,
            sender_threads: self.sender_threads.unwrap_or(SenderThreads::Count(1)),
        })
    }
}

#[derive(Args)]
struct RunArgs {
    /// `udp://`, `tcp://`, `relp://` or `tls://` then `IP:PORT`
    /// (repeatable; loopback unless --allow-remote).
    #[arg(long = "target", required = true, value_parser = send::parse_target)]
    targets: Vec<Target>,
    /// Allow targets and an --alerts-url that are not loopback addresses:
    /// load sent to an appliance on another machine. Without it such an
    /// address is refused, so that a typo never floods someone else's
    /// network.
    #[arg(long)]
    allow_remote: bool,
    /// The appliance's alerts.jsonl to tail (read from its current end).
    #[arg(long, conflicts_with_all = ["alerts_stdin", "alerts_url"])]
    alerts: Option<PathBuf>,
    /// Read alert JSON lines from stdin instead.
    #[arg(long, conflicts_with = "alerts_url")]
    alerts_stdin: bool,
    /// Subscribe to the appliance's live alert stream instead:
    /// `http://127.0.0.1:9600` (path `/api/alerts/stream` by default).
    #[arg(long)]
    alerts_url: Option<String>,
    /// Bearer token for the appliance's API (an appliance started with
    /// `--api-token`): the live stream and --appliance-api.
    #[arg(long)]
    alerts_token: Option<String>,
    /// The appliance's API, `http://IP:PORT`, to read its `/api/stats`
    /// before the load and after the drain: lines it received and parsed,
    /// and its CPU per event (the process's, and its cores' time on their
    /// CPUs), for an appliance this harness cannot see in `/proc`
    /// (another machine's). Repeatable, one per node of a cluster (a line
    /// each and their total). Default: the address of --alerts-url, if
    /// given.
    #[arg(long)]
    appliance_api: Vec<String>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// The shardwatch binary.
    #[arg(long, default_value = "target/release/shardwatch")]
    binary: PathBuf,
    /// Cores the appliance runs on (`--cores`).
    #[arg(long, default_value_t = 2)]
    cores: usize,
    /// Listener the load goes to; `relp` and `tls` are switched on in the
    /// appliance for the run (`tls` with a throwaway CA and certificate
    /// written to --out).
    #[arg(long, value_enum, default_value = "udp")]
    transport: bench::Transport,
    /// Keep the appliance's data directory and print its path.
    #[arg(long)]
    keep_data: bool,
    /// How alerts are collected: tail the appliance's alerts.jsonl, or
    /// subscribe to its live stream (`GET /api/alerts/stream`).
    #[arg(long, value_enum, default_value = "file")]
    alerts_via: bench::AlertsVia,
    /// A configuration file for the appliance (`shardwatch run --config`),
    /// to compare settings such as `[ingest] read_coalesce_us`; the
    /// listeners, data directory and API address bench sets override it.
    #[arg(long)]
    appliance_config: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// A build or setting to bench: `NAME=BINARY`, or `NAME=BINARY@CONFIG`
    /// with an appliance configuration file (as bench's
    /// --appliance-config); `+steer-loopback` after either runs that
    /// variant with --steer-loopback. Repeat it (up to 8); the others are
    /// compared with the first.
    #[arg(long = "variant", required = true, value_parser = compare::parse_variant)]
    variants: Vec<compare::Variant>,
    /// Rounds; each runs every variant once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=compare::ROUNDS_MAX as u64))]
    rounds: u64,
    /// Cores the appliance runs on (`--cores`).
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Listener the load goes to (as for bench).
    #[arg(long, value_enum, default_value = "tcp")]
    transport: bench::Transport,
    /// How alerts are collected (as for bench).
    #[arg(long, value_enum, default_value = "file")]
    alerts_via: bench::AlertsVia,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct ScalingArgs {
    /// The shardwatch binary.
    #[arg(long, default_value = "target/release/shardwatch")]
    binary: PathBuf,
    /// Core counts to bench, ascending, separated by commas (`1,2,4,8`).
    // (`std::vec::Vec` so that clap takes the parser's list as one value.)
    #[arg(long, default_value = "1,2", value_parser = scaling::parse_core_counts)]
    cores: std::vec::Vec<usize>,
    /// Rounds; each runs every core count once, the order rotated.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=compare::ROUNDS_MAX as u64))]
    rounds: u64,
    /// Listener the load goes to (as for bench).
    #[arg(long, value_enum, default_value = "tcp")]
    transport: bench::Transport,
    /// How alerts are collected (as for bench).
    #[arg(long, value_enum, default_value = "file")]
    alerts_via: bench::AlertsVia,
    /// Connections (TCP, TLS, RELP) or sockets (UDP) per core: a node
    /// with `c` cores gets `c` times this many (instead of --connections).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    connections_per_core: u64,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct GoalsArgs {
    /// The shardwatch binary (the PGO build, `scripts/build-pgo.sh`, is
    /// the one that ships).
    #[arg(long, default_value = "target/release/shardwatch")]
    binary: PathBuf,
    /// Rounds of the TCP, UDP and latency goals (the batch goal runs once).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=compare::ROUNDS_MAX as u64))]
    rounds: u64,
    /// The goals to measure: `tcp`, `udp`, `latency`, `batch`, separated
    /// by commas.
    // (`std::vec::Vec` so that clap takes the parser's list as one value,
    // not as a repeatable flag of strings.)
    #[arg(long, default_value = "tcp,udp,latency,batch", value_parser = goals::parse_goals)]
    only: std::vec::Vec<String>,
    /// TCP goal: events per round.
    #[arg(long, default_value_t = 6_000_000)]
    tcp_events: u64,
    /// UDP goal: events per round.
    #[arg(long, default_value_t = 2_000_000)]
    udp_events: u64,
    /// Latency goal: events of the flat-out run that measures the maximum
    /// (long enough to hold the journal and checkpoints a node keeps up).
    #[arg(long, default_value_t = 10_000_000)]
    max_events: u64,
    /// UDP goal: when a round lost datagrams, search for the highest
    /// paced rate that loses none (`ceiling`, trials of 5 s, below the
    /// fastest sender of the rounds) with at most this many trials, to say
    /// how far the node is from its sender; 0 skips the search.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(0..=ceiling::TRIALS_MAX))]
    udp_ceiling_trials: u64,
    /// Latency goal: seconds sent at half the maximum.
    #[arg(long, default_value_t = 15)]
    paced_s: u64,
    /// Latency goal: the paced sender writes at most once every this many
    /// microseconds (bench's --flush-us).
    #[arg(long, default_value_t = 150)]
    flush_us: u64,
    /// Latency goal: the scenario rules (bench's --rules; default
    /// perf/rules/scenarios.yml).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Batch goal: events of its corpus (at 100 events/s of event time,
    /// 200,000 span 33 minutes: six 5-minute searches and more).
    #[arg(long, default_value_t = 200_000)]
    batch_events: u64,
    /// Batch goal: the streaming bench's rate over UDP.
    #[arg(long, default_value = "20000", value_parser = parse_rate)]
    batch_rate: Rate,
    /// How long each bench waits for alerts after its last event, in ms.
    #[arg(long, default_value_t = 5_000)]
    drain_ms: u64,
    /// Directory for the verdicts (report.json, summary.txt) and every
    /// run's own report (`runs/`).
    #[arg(long)]
    out: PathBuf,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Every run steers loopback's receive processing to the harness's
    /// CPUs (bench's --steer-loopback; needs root).
    #[arg(long)]
    steer_loopback: bool,
    /// A configuration file for the appliance in every TCP, UDP and
    /// latency run (bench's --appliance-config), to judge those goals for
    /// a tuned node, e.g. `[engine] idle_spin_us`; the listeners, data
    /// directory and API address each bench sets override it. The batch
    /// goal's node runs on its defaults.
    #[arg(long)]
    appliance_config: Option<PathBuf>,
}

#[derive(Args)]
struct CeilingArgs {
    /// The shardwatch binary.
    #[arg(long, default_value = "target/release/shardwatch")]
    binary: PathBuf,
    /// An appliance configuration file (as bench's --appliance-config).
    #[arg(long)]
    appliance_config: Option<PathBuf>,
    /// Cores the appliance runs on (`--cores`).
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Listener the load goes to (as for bench).
    #[arg(long, value_enum, default_value = "udp")]
    transport: bench::Transport,
    /// How alerts are collected (as for bench).
    #[arg(long, value_enum, default_value = "file")]
    alerts_via: bench::AlertsVia,
    /// What each trial must meet: `loss` (nothing lost or dropped, the
    /// sender on its schedule) or `p99:DURATION` (that, and the detection
    /// p99 under DURATION: `p99:1ms`).
    #[arg(long, default_value = "loss", value_parser = ceiling::parse_criterion)]
    criterion: ceiling::Criterion,
    /// Seconds each trial sends for.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    trial_s: u64,
    /// Upper bound of the search in events/s. Without it a flat-out run of
    /// --max-events sets it (the rate its sender reached); when that run
    /// meets the criterion, the ceiling is the sender's and no search runs.
    #[arg(long)]
    high: Option<f64>,
    /// Lower bound of the search in events/s.
    #[arg(long, default_value_t = 0.0)]
    low: f64,
    /// Events of the flat-out run.
    #[arg(long, default_value_t = 2_000_000)]
    max_events: u64,
    /// The search ends when its bounds are this fraction of the upper one
    /// apart.
    #[arg(long, default_value_t = 0.03)]
    resolution: f64,
    /// Most trials of the search.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=ceiling::TRIALS_MAX))]
    trials: u64,
    /// Runs at the ceiling once it is found, to say how often it holds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=10))]
    confirm: u64,
    /// The load (the search sets each run's rate, events and duration,
    /// so --rate, --events and --duration are refused).
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct BatchArgs {
    /// A corpus written by `gen`; its timeline should span several intervals.
    #[arg(long)]
    corpus: PathBuf,
    /// Schedule of the batch search (`60s`, `300s`, `5m`).
    #[arg(long, default_value = "300s", value_parser = parse_duration_s)]
    interval: u64,
    /// How far back each search looks beyond its interval: the longest rule
    /// window (5 minutes for the built-in rules).
    #[arg(long, default_value = "300s", value_parser = parse_duration_s)]
    lookback: u64,
    /// The shardwatch binary (for `replay`, and for the streaming bench).
    #[arg(long, default_value = "target/release/shardwatch")]
    binary: PathBuf,
    /// Take streaming numbers from this report.json instead of running a
    /// streaming bench of the same corpus.
    #[arg(long)]
    streaming_report: Option<PathBuf>,
    /// Cores for the streaming bench.
    #[arg(long, default_value_t = 2)]
    cores: usize,
    /// The scenario rule file passed to replay and the streaming bench
    /// (default: perf/rules/scenarios.yml).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Send rate for the streaming bench.
    #[arg(long, default_value = "20000", value_parser = parse_rate)]
    rate: Rate,
    #[arg(long)]
    out: PathBuf,
    /// No progress lines from the streaming bench on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct PeersArgs {
    /// A corpus written by `gen`.
    #[arg(long)]
    corpus: PathBuf,
    /// The shardwatch binary.
    #[arg(long, default_value = "target/release/shardwatch")]
    binary: PathBuf,
    /// Cores shardwatch runs on.
    #[arg(long, default_value_t = 2)]
    cores: usize,
    /// Peers to run beside shardwatch: `all`, `none` or a comma-separated
    /// list of rsyslog, syslog-ng, sec. Missing ones are reported as skipped.
    #[arg(long, default_value = "all", value_parser = parse_peer_list)]
    peers: PeerList,
    /// rsyslogd to run (default: found in PATH or /usr/sbin).
    #[arg(long)]
    rsyslogd: Option<PathBuf>,
    /// Directory syslog-ng-core was unpacked into by
    /// perf/scripts/install-peers.sh (a system syslog-ng is used otherwise).
    #[arg(long, default_value = peers::DEFAULT_SYSLOG_NG_DIR)]
    syslog_ng_dir: PathBuf,
    /// sec to run (default: found in PATH or /usr/bin).
    #[arg(long)]
    sec: Option<PathBuf>,
    /// Keep each peer's scratch directory (config, output, stderr).
    #[arg(long)]
    keep: bool,
    /// The scenario rule file or directory shardwatch loads (default:
    /// perf/rules/scenarios.yml; `none`: the built-in pack only).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Directory for report.json, summary.txt and the SVG plots.
    #[arg(long)]
    out: PathBuf,
}

/// `--peers`: a newtype because clap reads a bare `Vec` field as a
/// repeatable argument.
#[derive(Debug, Clone, PartialEq)]
struct PeerList(Vec<peers::Peer>);

fn parse_peer_list(text: &str) -> Result<PeerList, String> {
    peers::parse_peers(text).map(PeerList)
}

/// `--rate`: events per second, or None for `max`. A newtype because clap
/// reads a bare `Option<f64>` field as "optional f64".
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate(Option<f64>);

/// A signed clock offset (`-5h`, `90m`, `0s`) in nanoseconds.
fn parse_offset_ns(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let digits = magnitude.trim_end_matches(['s', 'm', 'h']);
    if !digits.is_empty() && digits.chars().all(|c| c == '0') {
        return Ok(0);
    }
    let seconds = parse_duration_s(magnitude)?;
    let ns = i64::try_from(seconds)
        .ok()
        .and_then(|s| s.checked_mul(1_000_000_000))
        .ok_or_else(|| format!("clock offset {text:?} is too large"))?;
    Ok(if negative { -ns } else { ns })
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    schedule::parse_rate(text).map(Rate)
}

/// Parses `300`, `300s`, `5m`, `1h` into seconds.
fn parse_duration_s(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("duration {text:?} must look like 60s, 5m or 1h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("duration {text:?}: unit must be s, m or h")),
    };
    n.checked_mul(scale)
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("duration {text:?} must be positive and not overflow"))
}

fn finish(report: &Report, out: &std::path::Path) -> anyhow::Result<()> {
    let paths = report.write(out, clock::now_ns())?;
    for line in &report.summary {
        println!("{line}");
    }
    for p in paths {
        eprintln!("shardwatch-load: wrote {}", p.display());
    }
    Ok(())
}

fn gen(args: GenArgs) -> anyhow::Result<()> {
    let start_ns = match &args.start {
        Some(text) if text == "now" => clock::now_ns() / 1_000_000 * 1_000_000,
        Some(text) => timefmt::parse_rfc3339(text)
            .with_context(|| format!("--start {text:?} is not RFC 3339"))?,
        None => DEFAULT_START_NS,
    };
    let params = args.corpus.params(args.events)?;
    let corpus = corpus::generate(&GenConfig {
        events: args.events,
        entities: params.entities,
        seed: params.seed,
        start_ns,
        event_rate: params.event_rate,
        scenarios: params.scenarios,
    })?;
    corpus.write(&args.out)?;
    let meta = &corpus.truth.corpus;
    eprintln!(
        "shardwatch-load: wrote {} events ({} bytes, {:.0} s of event time from {}) and {} expected alerts to {}",
        corpus.len(),
        corpus.data.len() + corpus.len(),
        (meta.end_ns - meta.start_ns) as f64 / 1e9,
        timefmt::rfc3339_us(meta.start_ns),
        corpus.truth.expected.len(),
        corpus::truth_path(&args.out).display()
    );
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let alerts = match (&args.alerts, args.alerts_stdin, &args.alerts_url) {
        (Some(path), _, _) => Some(AlertSource::File(path.clone())),
        (None, true, _) => Some(AlertSource::Stdin),
        (None, false, Some(url)) => Some(AlertSource::Stream(sse::StreamTarget::parse(
            url,
            args.alerts_token.clone(),
        )?)),
        (None, false, None) => None,
    };
    if args.alerts_token.is_some() && args.alerts_url.is_none() && args.appliance_api.is_empty() {
        bail!("--alerts-token is for the appliance's API: give --alerts-url or --appliance-api");
    }
    let mut addrs: Vec<(String, std::net::SocketAddr)> = args
        .targets
        .iter()
        .map(|t| (t.to_string(), t.addr()))
        .collect();
    if let (Some(AlertSource::Stream(stream)), Some(url)) = (&alerts, &args.alerts_url) {
        addrs.push((format!("--alerts-url {url}"), stream.addr));
    }
    let mut apis = Vec::new();
    for url in &args.appliance_api {
        let addr = sse::StreamTarget::parse(url, None)?.addr;
        addrs.push((format!("--appliance-api {url}"), addr));
        apis.push(node_api::NodeApi {
            addr,
            token: args.alerts_token.clone(),
        });
    }
    if let (true, Some(AlertSource::Stream(stream))) = (apis.is_empty(), &alerts) {
        apis.push(node_api::NodeApi {
            addr: stream.addr,
            token: stream.token.clone(),
        });
    }
    send::refuse_remote(&addrs, args.allow_remote)?;
    let opts = args.load.options(args.targets.clone(), alerts, None)?;
    let read = |api: &node_api::NodeApi| {
        node_api::fetch_stats(api).and_then(|stats| node_api::NodeCounts::from_stats(&stats))
    };
    // Read before anything is sent: a wrong address or token fails here.
    let before = apis
        .iter()
        .map(read)
        .collect::<anyhow::Result<Vec<_>>>()
        .context("reading the appliance's /api/stats before the load (--appliance-api, or the address of --alerts-url)")?;
    let outcome = runner::run_load(&opts)?;
    let mut report = Report::new("run");
    runner::add_to_report(&outcome, &opts, &mut report);
    // The nodes may still be working through what was sent: read until
    // they hold it all, their counts stop moving, or --drain-ms.
    let (after, settled) = node_api::read_settled(
        &apis,
        &before,
        outcome.send.sent,
        std::time::Duration::from_millis(args.load.drain_ms),
        read,
    );
    if settled == node_api::Settled::StillMoving {
        report.summary.push(format!(
            "appliance: its counts were still moving {} ms after the load (--drain-ms); what it had done by then is below",
            args.load.drain_ms
        ));
    }
    let mut nodes = Vec::new();
    for (api, after) in apis.iter().zip(after) {
        match after {
            Ok(delta) => nodes.push((api.clone(), delta)),
            Err(err) => report.summary.push(format!(
                "appliance (its API at {}): could not read /api/stats after the load: {err:#}",
                api.addr
            )),
        }
    }
    if !nodes.is_empty() {
        report
            .body
            .insert("appliance_api".into(), node_api::report_json(&nodes));
        report
            .summary
            .extend(node_api::summary_lines(&nodes, outcome.send.sent));
    }
    let remote: Vec<String> = addrs
        .iter()
        .filter(|(_, a)| !a.ip().is_loopback())
        .map(|(what, _)| what.clone())
        .collect();
    report
        .body
        .insert("remote_targets".into(), serde_json::json!(remote));
    if !remote.is_empty() {
        report.summary.push(format!(
            "remote: {} on another machine; the machine line above is the harness's, and latencies include the network both ways",
            remote.join(", ")
        ));
    }
    finish(&report, &args.load.out)
}

fn bench_options(
    binary: PathBuf,
    cores: usize,
    transport: bench::Transport,
    keep_data: bool,
    gate: &scenario_rules::Gate,
) -> anyhow::Result<bench::BenchOptions> {
    if !binary.exists() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p shardwatch` or pass --binary",
            binary.display()
        );
    }
    Ok(bench::BenchOptions {
        binary,
        cores,
        transport,
        keep_data,
        extra_args: gate.rules.appliance_args(),
        watch_events: None,
        tls_server: None,
        alerts_via: bench::AlertsVia::File,
    })
}

/// What `bench` runs for `binary`: the load (from `load`) and the
/// appliance's options, with the TLS certificates written to `load.out`
/// when the transport needs them.
fn prepare_bench(
    binary: &Path,
    cores: usize,
    transport: bench::Transport,
    keep_data: bool,
    alerts_via: bench::AlertsVia,
    appliance_config: Option<&Path>,
    load_args: &LoadArgs,
) -> anyhow::Result<(RunOptions, bench::BenchOptions)> {
    let mut load = load_args.options(Vec::new(), None, Some(binary))?;
    let mut options = bench_options(
        binary.to_path_buf(),
        cores,
        transport,
        keep_data,
        &load.gate,
    )?;
    if transport == bench::Transport::Tls {
        if load_args.tls_ca.is_some() || load_args.tls_cert.is_some() {
            bail!("bench --transport tls makes its own CA and certificates; --tls-ca, --tls-cert and --tls-key are for `run`");
        }
        let certs = tls_client::write_bench_certs(&load_args.out)?;
        eprintln!(
            "shardwatch-load: throwaway TLS CA {} and server certificate {}",
            certs.ca.display(),
            certs.server_cert.display()
        );
        load.session.tls.ca_file = Some(certs.ca);
        options.tls_server = Some((certs.server_cert, certs.server_key));
    }
    options.alerts_via = alerts_via;
    if let Some(config) = appliance_config {
        check_appliance_config(Some(config))?;
        options.extra_args.push("--config".into());
        options.extra_args.push(config.display().to_string());
    }
    Ok((load, options))
}

/// Refuses an `--appliance-config` that is not a file.
fn check_appliance_config(config: Option<&Path>) -> anyhow::Result<()> {
    match config {
        Some(config) if !config.is_file() => {
            bail!("--appliance-config {} is not a file", config.display())
        }
        _ => Ok(()),
    }
}

fn bench_cmd(args: BenchArgs) -> anyhow::Result<()> {
    let (mut load, options) = prepare_bench(
        &args.binary,
        args.cores,
        args.transport,
        args.keep_data,
        args.alerts_via,
        args.appliance_config.as_deref(),
        &args.load,
    )?;
    let outcome = bench::bench(&options, &mut load)?;
    let mut report = Report::new("bench");
    bench::add_bench_to_report(&outcome, &options, &load, &mut report);
    finish(&report, &args.load.out)
}

fn compare_cmd(args: CompareArgs) -> anyhow::Result<()> {
    compare::check_variants(&args.variants).map_err(anyhow::Error::msg)?;
    let rounds = args.rounds as usize;
    // A variant's load: the command's, steering loopback's receive work
    // when the variant asks (`NAME=BINARY+steer-loopback`).
    let load_of = |v: &compare::Variant| {
        let mut load = args.load.clone();
        load.steer_loopback |= v.steer_loopback;
        load
    };
    // Every variant is checked before the first run, not found missing
    // an hour in.
    for v in &args.variants {
        prepare_bench(
            &v.binary,
            args.cores,
            args.transport,
            false,
            args.alerts_via,
            v.config.as_deref(),
            &load_of(v),
        )
        .with_context(|| format!("variant {}", v.name))?;
    }
    if args.load.steer_loopback || args.variants.iter().any(|v| v.steer_loopback) {
        steer::check_before_runs("compare: runs will")?;
    }
    let mut results: Vec<compare::VariantRuns> =
        args.variants.iter().map(|_| Default::default()).collect();
    for round in 0..rounds {
        for (position, index) in compare::round_order(args.variants.len(), round)
            .into_iter()
            .enumerate()
        {
            let v = &args.variants[index];
            let dir = args
                .load
                .out
                .join("runs")
                .join(format!("r{}-{}", round + 1, v.name));
            let (outcome, report) = bench_run(
                &v.binary,
                args.cores,
                args.transport,
                args.alerts_via,
                v.config.as_deref(),
                &load_of(v),
                None,
                &dir,
            )
            .with_context(|| format!("round {}, variant {}", round + 1, v.name))?;
            let numbers = compare::RunNumbers::of(&outcome, &report, round + 1, position + 1, dir);
            if !args.load.quiet {
                eprintln!(
                    "shardwatch-load: round {} of {rounds}, {}: parsed {:.0}/s{}",
                    round + 1,
                    v.name,
                    numbers.parsed_eps,
                    numbers
                        .cpu_us_per_event
                        .map(|c| format!(", {c:.3} us of CPU per event"))
                        .unwrap_or_default()
                );
            }
            results[index].latency.merge(&outcome.run.overall);
            results[index].runs.push(numbers);
        }
    }
    for r in &mut results {
        r.runs.sort_by_key(|run| run.round);
    }
    let mut report = Report::new("compare");
    compare::add_to_report(
        &args.variants,
        &results,
        rounds,
        &bench_line(&args.cores.to_string(), args.transport, &args.load),
        &mut report,
    );
    finish(&report, &args.load.out)
}

/// One bench of `binary` with `load_args`, its report written to `dir`:
/// the outcome and that report.
/// With `watch_events`, bench also notes when `/metrics` first showed that
/// many events processed (`BenchOutcome::processed_ns`).
#[allow(clippy::too_many_arguments)]
fn bench_run(
    binary: &Path,
    cores: usize,
    transport: bench::Transport,
    alerts_via: bench::AlertsVia,
    appliance_config: Option<&Path>,
    load_args: &LoadArgs,
    watch_events: Option<u64>,
    dir: &Path,
) -> anyhow::Result<(bench::BenchOutcome, Report)> {
    let (mut load, mut options) = prepare_bench(
        binary,
        cores,
        transport,
        false,
        alerts_via,
        appliance_config,
        load_args,
    )?;
    options.watch_events = watch_events;
    let outcome = bench::bench(&options, &mut load)?;
    let mut report = Report::new("bench");
    bench::add_bench_to_report(&outcome, &options, &load, &mut report);
    report.write(dir, clock::now_ns())?;
    Ok((outcome, report))
}

/// Load options as the command line would give them (`args` after the
/// program name), so that every default and check is `bench`'s own.
fn load_args_from(args: &[String]) -> anyhow::Result<LoadArgs> {
    #[derive(Parser)]
    struct LoadOnly {
        #[command(flatten)]
        load: LoadArgs,
    }
    let argv = std::iter::once("shardwatch-load".to_string()).chain(args.iter().cloned());
    Ok(LoadOnly::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("load options {args:?}: {e}"))?
        .load)
}

/// Events parsed per second over the time the node took to process them
/// (from the start of the send until `/metrics` showed them all), not
/// over the send: a run short enough to fit in the socket buffers is sent
/// long before it is processed. Over millions of lines the two agree
/// within 1% (BENCHMARKS.md, 2026-12-07). Without that time (the API
/// unreachable), over the send.
fn processed_eps(outcome: &bench::BenchOutcome, run: &compare::RunNumbers) -> f64 {
    match outcome.processed_ns {
        Some(done) if done > outcome.run.send.started_ns => {
            run.events_parsed as f64 * 1e9 / (done - outcome.run.send.started_ns) as f64
        }
        _ => run.parsed_eps,
    }
}

fn goals_cmd(args: GoalsArgs) -> anyhow::Result<()> {
    if !args.binary.exists() {
        bail!("{} does not exist; pass --binary", args.binary.display());
    }
    // Before any run, not at the first bench.
    check_appliance_config(args.appliance_config.as_deref())?;
    let runs = args.out.join("runs");
    if args.steer_loopback {
        steer::check_before_runs("goals: every run will")?;
    }
    // The kernel's costs before the first run and after the last: a
    // verdict holds for the machine as it was, and this VM's speed has
    // moved by a third within minutes (BENCHMARKS.md).
    let costs_before = machine::KernelCosts::measure(&machine::allowed_cpus());
    let wants = |goal: &str| args.only.iter().any(|g| g == goal);
    let progress = |text: String| {
        if !args.quiet {
            eprintln!("shardwatch-load: goals: {text}");
        }
    };
    // One bench of the binary on one core: these load options, then the
    // run's own (`rest`); with `watch`, the node's processing is timed
    // (see `processed_eps`). Its report goes to `dir`.
    let run = |transport: bench::Transport,
               rest: &[&str],
               watch: Option<u64>,
               dir: &Path|
     -> anyhow::Result<(f64, compare::RunNumbers)> {
        let mut argv: Vec<String> = vec![
            "--out".into(),
            dir.display().to_string(),
            "--drain-ms".into(),
            args.drain_ms.to_string(),
            "--quiet".into(),
        ];
        if args.steer_loopback {
            argv.push("--steer-loopback".into());
        }
        argv.extend(rest.iter().map(|a| a.to_string()));
        let load = load_args_from(&argv)?;
        let (outcome, report) = bench_run(
            &args.binary,
            1,
            transport,
            bench::AlertsVia::File,
            args.appliance_config.as_deref(),
            &load,
            watch,
            dir,
        )?;
        let numbers = compare::RunNumbers::of(&outcome, &report, 0, 0, dir.to_path_buf());
        Ok((processed_eps(&outcome, &numbers), numbers))
    };
    let scenario_rules = args
        .rules
        .as_ref()
        .map(|r| r.display().to_string())
        .unwrap_or_else(|| scenario_rules::default_rules_path().display().to_string());
    let flat = |transport: bench::Transport,
                events: u64,
                dir: &Path|
     -> anyhow::Result<goals::FlatRound> {
        let events_arg = events.to_string();
        let rest = ["--rate", "max", "--events", &events_arg, "--rules", "none"];
        let (eps, n) = run(transport, &rest, Some(events), dir)?;
        Ok(goals::FlatRound {
            sent: n.sent,
            lost_before_receive: n.lost_before_receive,
            parsed_eps: eps,
            sent_eps: n.sent_eps,
            cpu_us_per_event: n.cpu_us_per_event,
            dir: dir.display().to_string(),
        })
    };
    let (mut tcp, mut udp, mut latency) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        if wants("tcp") {
            let r = flat(
                bench::Transport::Tcp,
                args.tcp_events,
                &runs.join(format!("r{round}-tcp")),
            )
            .with_context(|| format!("tcp goal, round {round}"))?;
            progress(format!(
                "round {round}: tcp {:.0} k events/s",
                r.parsed_eps / 1e3
            ));
            tcp.push(r);
        }
        if wants("udp") {
            let r = flat(
                bench::Transport::Udp,
                args.udp_events,
                &runs.join(format!("r{round}-udp")),
            )
            .with_context(|| format!("udp goal, round {round}"))?;
            progress(format!(
                "round {round}: udp {} of {} lost, sender at {:.0} k/s",
                r.lost_before_receive,
                r.sent,
                r.sent_eps / 1e3
            ));
            udp.push(r);
        }
        if wants("latency") {
            let max_dir = runs.join(format!("r{round}-latency-max"));
            let events_arg = args.max_events.to_string();
            let rest = [
                "--rate",
                "max",
                "--events",
                &events_arg,
                "--rules",
                &scenario_rules,
            ];
            let (max_eps, _) = run(
                bench::Transport::Tcp,
                &rest,
                Some(args.max_events),
                &max_dir,
            )
            .with_context(|| format!("latency goal, round {round}: the maximum"))?;
            let rate = (max_eps / 2.0).round().max(1.0);
            let paced_dir = runs.join(format!("r{round}-latency-half"));
            let (rate_arg, paced_arg, flush_arg) = (
                format!("{rate}"),
                format!("{}s", args.paced_s),
                args.flush_us.to_string(),
            );
            let rest = [
                "--rate",
                &rate_arg,
                "--duration",
                &paced_arg,
                "--flush-us",
                &flush_arg,
                "--rules",
                &scenario_rules,
            ];
            let (_, paced) = run(bench::Transport::Tcp, &rest, None, &paced_dir)
                .with_context(|| format!("latency goal, round {round}: half the maximum"))?;
            let r = goals::LatencyRound {
                max_eps,
                rate_eps: rate,
                p50_us: paced.latency.as_ref().map(|l| l.p50_us),
                p99_us: paced.latency.as_ref().map(|l| l.p99_us),
                recall: paced.recall,
                cpu_us_per_event: paced.cpu_us_per_event,
                max_dir: max_dir.display().to_string(),
                paced_dir: paced_dir.display().to_string(),
            };
            progress(format!(
                "round {round}: maximum {:.0} k events/s, p99 {} at {:.0} k/s",
                r.max_eps / 1e3,
                r.p99_us.map_or_else(|| "n/a".into(), hist::human_us),
                rate / 1e3
            ));
            latency.push(r);
        }
    }
    let udp_lost = udp.iter().any(|r| r.lost_before_receive > 0);
    let udp_ceiling = if udp_lost && args.udp_ceiling_trials > 0 {
        let fastest = udp.iter().map(|r| r.sent_eps).fold(0.0, f64::max).floor();
        let dir = runs.join("udp-ceiling");
        // No scenarios, so nothing to wait for past the node's socket.
        let mut argv: Vec<String> = vec![
            "--out".into(),
            dir.display().to_string(),
            "--drain-ms".into(),
            UDP_CEILING_DRAIN_MS.to_string(),
            "--rules".into(),
            "none".into(),
            "--scenarios".into(),
            "none".into(),
            "--quiet".into(),
        ];
        if args.steer_loopback {
            argv.push("--steer-loopback".into());
        }
        let search = CeilingArgs {
            binary: args.binary.clone(),
            appliance_config: None,
            cores: 1,
            transport: bench::Transport::Udp,
            alerts_via: bench::AlertsVia::File,
            criterion: ceiling::Criterion::Loss,
            trial_s: 5,
            high: Some(fastest),
            low: 0.0,
            max_events: 0,
            resolution: 0.03,
            trials: args.udp_ceiling_trials,
            confirm: 1,
            load: load_args_from(&argv)?,
        };
        progress(format!(
            "udp: a round lost datagrams; searching for the highest rate without loss below {:.0} k/s",
            fastest / 1e3
        ));
        let outcome = ceiling_search(&search, false).context("udp goal: the ceiling search")?;
        progress(format!("udp: {}", outcome.verdict_line()));
        Some(outcome)
    } else {
        None
    };
    let batch = if wants("batch") {
        let dir = runs.join("batch");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let corpus = dir.join("corpus.log");
        gen(GenArgs {
            out: corpus.clone(),
            events: args.batch_events,
            start: None,
            corpus: CorpusArgs {
                entities: 200,
                seed: 1,
                event_rate: 100.0,
                scenarios: "all".into(),
            },
        })
        .context("batch goal: its corpus")?;
        let batch_args = BatchArgs {
            corpus,
            interval: 300,
            lookback: 300,
            binary: args.binary.clone(),
            streaming_report: None,
            cores: 1,
            rules: args.rules.clone(),
            rate: args.batch_rate,
            out: dir.clone(),
            quiet: args.quiet,
        };
        let (report, outcome, stream) = batch_report(&batch_args).context("batch goal")?;
        report.write(&dir, clock::now_ns())?;
        let stream = stream.unwrap_or_default();
        let r = goals::BatchResult {
            interval_s: outcome.interval_s,
            batch_p50_us: outcome.latency.p50_us,
            batch_p99_us: outcome.latency.p99_us,
            stream_p50_us: stream.p50_us,
            stream_p99_us: stream.p99_us,
            batch_recall: outcome.recall,
            dir: dir.display().to_string(),
        };
        progress(format!(
            "batch: p50 {} against streaming {}",
            hist::human_us(r.batch_p50_us),
            hist::human_us(r.stream_p50_us)
        ));
        Some(r)
    } else {
        None
    };
    let mut verdicts = Vec::new();
    for goal in &args.only {
        verdicts.push(match goal.as_str() {
            "tcp" => goals::tcp_verdict(&tcp),
            "udp" => goals::udp_verdict(&udp),
            "latency" => goals::latency_verdict(&latency),
            _ => goals::batch_verdict(batch.as_ref().expect("the batch goal ran")),
        });
    }
    let mut report = Report::new("goals");
    report.summary.push(format!(
        "goals of the load harness issue for {} ({}), {} round(s); every run's report is under {}",
        args.binary.display(),
        crate::peers::version_line(&args.binary, &["--version"], &[])
            .unwrap_or_else(|| "its --version failed".into()),
        args.rounds,
        runs.display()
    ));
    if args.steer_loopback {
        report.summary.push(
            "every run steered loopback's receive processing to the harness's CPUs (--steer-loopback; \
             each run's report says where it ran): the sender's transmit that the node's ACKs set \
             off ran there, not on the node's CPU"
                .into(),
        );
    }
    report.body.insert(
        "steer_loopback".into(),
        serde_json::json!(args.steer_loopback),
    );
    report.body.insert(
        "appliance_config".into(),
        serde_json::json!(args
            .appliance_config
            .as_ref()
            .map(|c| c.display().to_string())),
    );
    if let Some(config) = &args.appliance_config {
        report.summary.push(format!(
            "the TCP, UDP and latency runs' node read --config {} (--appliance-config): those verdicts are for that configuration; the batch goal's ran on its defaults",
            config.display()
        ));
    }
    // Unsteered, say where loopback's receive work ran, as each TCP run's
    // report does: the tcp and latency verdicts include it.
    if !args.steer_loopback {
        let state = steer::LoopbackRps::of_this_machine();
        if let Some(line) = state.and_then(|s| s.line(wants("tcp") || wants("latency"))) {
            report.summary.push(line);
        }
    }
    goals::add_to_report(
        &verdicts,
        &tcp,
        &udp,
        udp_ceiling.as_ref(),
        &latency,
        batch.as_ref(),
        &mut report,
    );
    let costs_after = machine::KernelCosts::measure(&machine::allowed_cpus());
    for (when, costs) in [
        ("before the goals", &costs_before),
        ("after the goals", &costs_after),
    ] {
        if let Some(costs) = costs {
            report.summary.push(costs.line_for(when));
        }
    }
    report.body.insert(
        "kernel_costs".into(),
        serde_json::json!({ "before": costs_before, "after": costs_after }),
    );
    if let Some(idle) = machine::IdleHalt::of_this_machine() {
        idle.add_to(&mut report);
    }
    finish(&report, &args.out)
}

fn scaling_cmd(args: ScalingArgs) -> anyhow::Result<()> {
    if args.load.connections != 1 {
        bail!("scaling gives each node its connections from its cores: use --connections-per-core, not --connections");
    }
    let per_core = args.connections_per_core as usize;
    let load_for = |cores: usize| {
        let mut load = args.load.clone();
        load.connections = cores * per_core;
        // A sender thread per connection where the harness has the CPUs,
        // so that one thread does not cap the node at high core counts.
        load.sender_threads = Some(args.load.sender_threads.unwrap_or(SenderThreads::Auto));
        load
    };
    // Every core count is checked before the first run.
    for &cores in &args.cores {
        prepare_bench(
            &args.binary,
            cores,
            args.transport,
            false,
            args.alerts_via,
            None,
            &load_for(cores),
        )
        .with_context(|| format!("{cores} core(s)"))?;
    }
    let rounds = args.rounds as usize;
    let mut counts: Vec<scaling::CountRuns> = args
        .cores
        .iter()
        .map(|&cores| scaling::CountRuns {
            cores,
            ..Default::default()
        })
        .collect();
    for round in 0..rounds {
        for (position, index) in compare::round_order(args.cores.len(), round)
            .into_iter()
            .enumerate()
        {
            let cores = args.cores[index];
            let dir = args
                .load
                .out
                .join("runs")
                .join(format!("r{}-{cores}cores", round + 1));
            let (outcome, report) = bench_run(
                &args.binary,
                cores,
                args.transport,
                args.alerts_via,
                None,
                &load_for(cores),
                args.load.events,
                &dir,
            )
            .with_context(|| format!("round {}, {cores} core(s)", round + 1))?;
            let numbers =
                compare::RunNumbers::of(&outcome, &report, round + 1, position + 1, dir.clone());
            let eps = processed_eps(&outcome, &numbers);
            if !args.load.quiet {
                eprintln!(
                    "shardwatch-load: round {} of {rounds}, {cores} core(s): {eps:.0} events/s",
                    round + 1
                );
            }
            let count = &mut counts[index];
            count.eps.push(eps);
            count.cpu_us_per_event.extend(numbers.cpu_us_per_event);
            count.dirs.push(dir.display().to_string());
        }
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let what = format!(
        "scaling of {} ({}): {rounds} round(s) of `{} --connections {per_core}×C` for C in {}; events/s over the node's processing when --events is given, else over the send; this machine has {cpus} CPU(s), and a node with as many cores as that shares them with the harness; every run's report is under {}",
        args.binary.display(),
        crate::peers::version_line(&args.binary, &["--version"], &[])
            .unwrap_or_else(|| "its --version failed".into()),
        bench_line("C", args.transport, &args.load),
        args.cores
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.load.out.join("runs").display()
    );
    let mut report = Report::new("scaling");
    scaling::add_to_report(&what, &counts, &mut report);
    finish(&report, &args.load.out)
}

fn ceiling_cmd(args: CeilingArgs) -> anyhow::Result<()> {
    let outcome = ceiling_search(&args, !args.load.quiet)?;
    let mut report = Report::new("ceiling");
    outcome.add_to_report(
        &format!(
            "ceiling of {} ({}) over {} on {} core(s), trials of {} s; every run's report is under {}",
            args.binary.display(),
            crate::peers::version_line(&args.binary, &["--version"], &[])
                .unwrap_or_else(|| "its --version failed".into()),
            format!("{:?}", args.transport).to_lowercase(),
            args.cores,
            args.trial_s,
            args.load.out.join("runs").display()
        ),
        &mut report,
    );
    finish(&report, &args.load.out)
}

/// The search `ceiling` runs (each run's report under `<out>/runs/`),
/// with a progress line per run when `progress`.
fn ceiling_search(args: &CeilingArgs, progress: bool) -> anyhow::Result<ceiling::Outcome> {
    let load = &args.load;
    if load.events.is_some()
        || load.duration.is_some()
        || load.rate.0 != parse_rate(RATE_DEFAULT).ok().and_then(|r| r.0)
    {
        bail!("ceiling sets each run's rate, events and duration itself; use --trial-s, --max-events, --low and --high");
    }
    // The bounds and resolution are checked before any run (the upper
    // bound again once a flat-out run has measured it).
    ceiling::check_search(args.low, args.high, args.resolution).map_err(anyhow::Error::msg)?;
    // Checked once before the first run.
    prepare_bench(
        &args.binary,
        args.cores,
        args.transport,
        false,
        args.alerts_via,
        args.appliance_config.as_deref(),
        load,
    )?;
    let runs = load.out.join("runs");
    // One run at `rate` (`None`: flat out), its report in runs/NAME.
    let trial = |rate: Option<f64>, name: &str| -> anyhow::Result<ceiling::Trial> {
        let dir = runs.join(name);
        let mut trial_load = load.clone();
        trial_load.out = dir.clone();
        trial_load.quiet = true;
        trial_load.rate = Rate(rate);
        match rate {
            Some(_) => trial_load.duration = Some(args.trial_s),
            None => trial_load.events = Some(args.max_events),
        }
        let (outcome, report) = bench_run(
            &args.binary,
            args.cores,
            args.transport,
            args.alerts_via,
            args.appliance_config.as_deref(),
            &trial_load,
            None,
            &dir,
        )
        .with_context(|| format!("ceiling run {name}"))?;
        let numbers = compare::RunNumbers::of(&outcome, &report, 0, 0, dir);
        let t = ceiling::Trial::judged(args.criterion, rate, &numbers);
        if progress {
            eprintln!("shardwatch-load: ceiling: {name}: {}", t.line());
        }
        Ok(t)
    };
    let (flat_out, high) = match args.high {
        Some(high) => (None, high),
        None => {
            let flat = trial(None, "flat-out")?;
            let high = flat.sent_eps.floor();
            if !flat.met && high <= args.low {
                bail!(
                    "the flat-out run's rate ({high:.0}/s) is not above --low ({:.0}/s): nothing to search",
                    args.low
                );
            }
            (Some(flat), high)
        }
    };
    let sender_bound = flat_out.as_ref().is_some_and(|f| f.met);
    let mut trials = Vec::new();
    if !sender_bound {
        let mut search = ceiling::Bisection::new(args.low, high, args.resolution, args.trials)
            .map_err(anyhow::Error::msg)?;
        while let Some(rate) = search.next() {
            let t = trial(Some(rate), &format!("t{}-{rate:.0}", trials.len() + 1))?;
            search.record(rate, t.met);
            trials.push(t);
        }
    }
    let ceiling_eps = ceiling::best_rate(&trials);
    let mut confirm = Vec::new();
    if let Some(rate) = ceiling_eps {
        for i in 1..=args.confirm {
            confirm.push(trial(Some(rate), &format!("confirm{i}-{rate:.0}"))?);
        }
    }
    Ok(ceiling::Outcome {
        criterion: args.criterion,
        flat_out,
        low_eps: args.low,
        high_eps: high,
        resolution: args.resolution,
        trials,
        confirm,
        ceiling_eps,
        sender_bound,
    })
}

/// The bench each run of `compare` is, as a `bench` command line without
/// its binary and output.
fn bench_line(cores: &str, transport: bench::Transport, load: &LoadArgs) -> String {
    let mut line = format!(
        "bench --cores {} --transport {} --rate {}",
        cores,
        format!("{:?}", transport).to_lowercase(),
        load.rate
            .0
            .map_or_else(|| "max".to_string(), |r| format!("{r}"))
    );
    if let Some(events) = load.events {
        line.push_str(&format!(" --events {events}"));
    }
    if let Some(duration) = load.duration {
        line.push_str(&format!(" --duration {duration}s"));
    }
    if load.connections != 1 {
        line.push_str(&format!(" --connections {}", load.connections));
    }
    if load.flush_us > 0 {
        line.push_str(&format!(" --flush-us {}", load.flush_us));
    }
    match load.sender_threads {
        None | Some(SenderThreads::Count(1)) => {}
        Some(SenderThreads::Count(n)) => line.push_str(&format!(" --sender-threads {n}")),
        Some(SenderThreads::Auto) => line.push_str(" --sender-threads auto"),
    }
    if let Some(rules) = &load.rules {
        line.push_str(&format!(" --rules {}", rules.display()));
    }
    if load.gen.scenarios != "all" {
        line.push_str(&format!(" --scenarios {}", load.gen.scenarios));
    }
    if let Some(corpus) = &load.corpus {
        line.push_str(&format!(" --corpus {}", corpus.display()));
    }
    line
}

fn batch_cmd(args: BatchArgs) -> anyhow::Result<()> {
    let (report, _, _) = batch_report(&args)?;
    finish(&report, &args.out)
}

/// The batch comparison of `args` as a report, with the batch outcome and
/// the streaming latency it was compared with.
fn batch_report(
    args: &BatchArgs,
) -> anyhow::Result<(Report, batch::BatchOutcome, Option<hist::LatencySummary>)> {
    if !args.binary.exists() {
        bail!("{} does not exist; pass --binary", args.binary.display());
    }
    let mut report = Report::new("batch");
    let gate = scenario_gate(args.rules.as_deref(), Some(&args.binary));
    let stream: Option<hist::LatencySummary> = match &args.streaming_report {
        Some(path) => {
            let doc: Value = serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )?;
            let l = &doc["detection"]["latency"];
            let field = |k: &str| l[k].as_u64().unwrap_or(0);
            Some(hist::LatencySummary {
                count: field("count"),
                min_us: field("min_us"),
                p50_us: field("p50_us"),
                p90_us: field("p90_us"),
                p99_us: field("p99_us"),
                p999_us: field("p999_us"),
                max_us: field("max_us"),
                mean_us: l["mean_us"].as_f64().unwrap_or(0.0),
                clamped: field("clamped"),
            })
        }
        None => {
            let options = bench_options(
                args.binary.clone(),
                args.cores,
                bench::Transport::Udp,
                false,
                &gate,
            )?;
            let mut load = RunOptions {
                targets: Vec::new(),
                rate_eps: args.rate.0,
                events: None,
                duration_s: None,
                connections: 1,
                framing: Framing::Lf,
                session: SessionOptions::default(),
                corpus: Some(args.corpus.clone()),
                gen: CorpusArgs {
                    entities: 1,
                    seed: 0,
                    event_rate: 1.0,
                    scenarios: "none".into(),
                }
                .params(0)?,
                sender_clock_ns: 0,
                flush_interval_ns: 0,
                alerts: None,
                drain_ms: 5_000,
                progress: !args.quiet,
                gate: gate.clone(),
                kernel_costs: None,
                steer_loopback: false,
                sender_threads: SenderThreads::Count(1),
            };
            let outcome = bench::bench(&options, &mut load)?;
            bench::add_bench_to_report(&outcome, &options, &load, &mut report);
            Some(outcome.run.overall.summary())
        }
    };
    let mut corpus = Corpus::load(&args.corpus)?;
    // Replay infers RFC 3164 years from its own clock: move the corpus so it
    // ends a minute ago, keeping every gap between events.
    let meta = corpus.truth.corpus.clone();
    let skipped = corpus.retime(clock::now_ns() - 60_000_000_000 - meta.end_ns);
    if skipped > 0 {
        eprintln!("shardwatch-load: warning: {skipped} lines kept their original timestamps");
    }
    let outcome = batch::run_batch(
        &batch::BatchOptions {
            interval_s: args.interval,
            lookback_s: args.lookback,
            binary: args.binary.clone(),
            gate,
        },
        &corpus,
    )?;
    batch::add_to_report(&outcome, stream.as_ref(), &mut report);
    Ok((report, outcome, stream))
}

fn peers_cmd(args: PeersArgs) -> anyhow::Result<()> {
    if !args.binary.exists() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p shardwatch` or pass --binary",
            args.binary.display()
        );
    }
    let gate = scenario_gate(args.rules.as_deref(), Some(&args.binary));
    let options = peers::PeersOptions {
        gate,
        corpus: args.corpus,
        binary: args.binary,
        cores: args.cores,
        peers: args.peers.0,
        paths: peers::PeerPaths {
            rsyslogd: args.rsyslogd,
            syslog_ng_dir: args.syslog_ng_dir,
            sec: args.sec,
        },
        keep: args.keep,
    };
    let mut report = Report::new("peers");
    let rows = peers::run_peers(&options, &mut report)?;
    finish(&report, &args.out)?;
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.status == peers::Status::Failed)
        .map(|r| format!("{}: {}", r.peer, r.reason.as_deref().unwrap_or("?")))
        .collect();
    if !failed.is_empty() {
        bail!("{} run(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    // Before anything is started or changed that a signal must undo.
    if let Err(err) = interrupt::install() {
        eprintln!("shardwatch-load: error: {err:#}");
        std::process::exit(1);
    }
    // What a harness killed with SIGKILL left is put right first (a mask
    // still steered would skew what this one measures).
    for line in interrupt::recover_left_behind(&std::env::temp_dir()) {
        eprintln!("shardwatch-load: {line}");
    }
    let result = match cli.command {
        Command::Gen(args) => gen(args),
        Command::Run(args) => run(args),
        Command::Bench(args) => bench_cmd(args),
        Command::Batch(args) => batch_cmd(args),
        Command::Peers(args) => peers_cmd(args),
        Command::Compare(args) => compare_cmd(args),
        Command::Goals(args) => goals_cmd(args),
        Command::Ceiling(args) => ceiling_cmd(args),
        Command::Scaling(args) => scaling_cmd(args),
    };
    if let Err(err) = result {
        // An error a signal's undo caused (its appliance stopped under
        // it) is not told: the harness ends by the signal first.
        interrupt::settle();
        eprintln!("shardwatch-load: error: {err:#}");
        std::process::exit(1);
    }
    interrupt::settle();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_s("60s"), Ok(60));
        assert_eq!(parse_duration_s("300"), Ok(300));
        assert_eq!(parse_duration_s("5m"), Ok(300));
        assert_eq!(parse_duration_s("1h"), Ok(3600));
        for bad in ["", "0s", "5x", "s", "-1s", "99999999999999999999h"] {
            assert!(parse_duration_s(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clock_offsets() {
        const S: i64 = 1_000_000_000;
        assert_eq!(parse_offset_ns("0s"), Ok(0));
        assert_eq!(parse_offset_ns("0"), Ok(0));
        assert_eq!(parse_offset_ns("-5h"), Ok(-5 * 3600 * S));
        assert_eq!(parse_offset_ns("+90m"), Ok(90 * 60 * S));
        assert_eq!(parse_offset_ns("30"), Ok(30 * S));
        for bad in ["", "-", "5x", "--5h", "h", "99999999999999h"] {
            assert!(parse_offset_ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_is_well_formed_and_parses_each_subcommand() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let cli = parse(&[
            "x",
            "run",
            "--target",
            "udp://127.0.0.1:9",
            "--rate",
            "max",
            "--events",
            "5",
            "--out",
            "o",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.load.rate, Rate(None));
        let cli = parse(&["x", "bench", "--events", "5", "--out", "o"]).unwrap();
        let Command::Bench(bench) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(bench.load.rate, Rate(Some(10_000.0)));
        let cli = parse(&[
            "x",
            "batch",
            "--corpus",
            "c",
            "--interval",
            "60s",
            "--out",
            "o",
        ])
        .unwrap();
        let Command::Batch(batch) = cli.command else {
            panic!("not batch")
        };
        assert_eq!((batch.interval, batch.rate), (60, Rate(Some(20_000.0))));
        assert!(parse(&["x", "gen", "--out", "f", "--events", "10", "--seed", "3"]).is_ok());
        // An address off loopback parses; `run` refuses it unless
        // --allow-remote (send::refuse_remote's test).
        let cli = parse(&["x", "run", "--target", "udp://8.8.8.8:53", "--out", "o"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(!run.allow_remote);
        let cli = parse(&[
            "x",
            "run",
            "--allow-remote",
            "--target",
            "udp://8.8.8.8:53",
            "--out",
            "o",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run.allow_remote);
        assert!(parse(&["x", "run", "--target", "udp://localhost:53", "--out", "o"]).is_err());
    }
}
