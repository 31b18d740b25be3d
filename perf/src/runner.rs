//! `run`: prepare a corpus, send it, collect alerts, match them to truth and
//! turn it all into latency histograms and a report.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::clock;
use crate::collect::{AlertSource, CollectStats, Collector};
use crate::corpus::{self, Corpus, GenConfig, ScenarioDef, TruthEntry};
use crate::hist::{human_us, LatencyHistogram, LatencySummary};
use crate::matching::{match_alerts, Matching, ObservedAlert};
use crate::report::{fraction, Report};
use crate::scenario_rules::{Excluded, Gate};
use crate::schedule::Schedule;
use crate::send::{
    self, Framing, SendConfig, SendResult, SessionOptions, Target, TIMELINE_BUCKET_NS,
};

/// Kernel threads that ran less than this while the load was sent are
/// left out of its report.
const KERNEL_THREAD_MIN_NS: u64 = 100_000;

/// Time between deciding the start and the first intended send, so that
/// preparation (retiming, opening sockets) is not charged as lag.
const START_LEAD_NS: i64 = 200_000_000;
/// How far event time may trail the wall clock before the appliance flags
/// events `event.time_skewed` (its default `timestamp_skew_max_s`).
const SKEW_FLAGGED_S: f64 = 86_400.0;
/// How often the drain loop looks at the alert count while waiting; it
/// re-matches only after a poll that saw no new alert (see `run_load`).
const DRAIN_POLL_NS: i64 = 10_000_000;
/// After the last expected alert arrived, how long to keep listening for
/// duplicates and false positives.
const SETTLE_NS: i64 = 300_000_000;

/// When the drain loop matches the alerts against the truth again: after
/// new alerts came, and only at a poll that saw no newer ones.
///
/// Matching takes milliseconds of CPU, and the harness's CPU may be the
/// appliance's too. Matched at once after the send (with the harness's
/// other end-of-send work, about 1 ms of CPU), it kept the appliance's
/// alert writer, woken on the harness's CPU, from running while the other
/// CPU stood idle: the alerts of a paced run's last millisecond were seen
/// 1-5 ms late, and they were up to 0.8% of all alerts, most of the
/// harness's p99.
#[derive(Debug, Clone, Copy)]
struct QuietRematch {
    /// The count at the last poll.
    polled: u64,
    /// The count at the last match.
    matched: u64,
}

impl Default for QuietRematch {
    fn default() -> Self {
        QuietRematch {
            polled: u64::MAX,
            matched: u64::MAX,
        }
    }
}

impl QuietRematch {
    /// Whether to match now, given the alert count seen at this poll.
    fn due(&mut self, count: u64) -> bool {
        let quiet = count == self.polled;
        self.polled = count;
        if quiet && count != self.matched {
            self.matched = count;
            return true;
        }
        false
    }
}

/// How to build the corpus when none is given.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub entities: u32,
    pub seed: u64,
    pub event_rate: f64,
    pub scenarios: Vec<(&'static ScenarioDef, u32)>,
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub targets: Vec<Target>,
    pub rate_eps: Option<f64>,
    pub events: Option<u64>,
    pub duration_s: Option<f64>,
    pub connections: usize,
    pub framing: Framing,
    /// RELP window and TLS client settings.
    pub session: SessionOptions,
    pub corpus: Option<PathBuf>,
    pub gen: GenParams,
    /// How far the stamped event times are off the harness's clock
    /// (negative: behind), as senders with a wrong clock write them.
    pub sender_clock_ns: i64,
    pub alerts: Option<AlertSource>,
    pub drain_ms: u64,
    pub progress: bool,
    /// Paced runs: at most one write per this long (see
    /// `SendConfig::flush_interval_ns`).
    pub flush_interval_ns: i64,
    /// Which expected alerts the appliance can raise (scenario rules
    /// loaded, fields extracted); the others are reported, not scored.
    pub gate: Gate,
    /// The machine's kernel costs, when the caller measured them (`bench`
    /// does, before it keeps the harness off the appliance's CPUs, so that
    /// the wake-up is measured between two CPUs); `run_load` measures them
    /// itself otherwise.
    pub kernel_costs: Option<crate::machine::KernelCosts>,
    /// Steer loopback's receive processing to the harness's CPUs while
    /// the load runs (see [`crate::steer`]).
    pub steer_loopback: bool,
    /// How many threads send (`--sender-threads`).
    pub sender_threads: SenderThreads,
}

/// How many threads send: a number, or one per connection up to the
/// CPUs the harness may run on (`auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderThreads {
    Count(usize),
    Auto,
}

impl SenderThreads {
    /// The threads for `connections` connections in all, with the
    /// harness allowed on `cpus` CPUs: never more than the connections,
    /// since a thread sends over connections of its own.
    pub fn resolve(self, connections: usize, cpus: usize) -> usize {
        let most = connections.max(1);
        match self {
            SenderThreads::Count(n) => n.clamp(1, most),
            SenderThreads::Auto => cpus.clamp(1, most),
        }
    }

    /// `auto` or a number from 1 to [`send::CONNECTIONS_MAX`].
    pub fn parse(text: &str) -> Result<SenderThreads, String> {
        if text == "auto" {
            return Ok(SenderThreads::Auto);
        }
        match text.parse::<usize>() {
            Ok(n) if (1..=send::CONNECTIONS_MAX).contains(&n) => Ok(SenderThreads::Count(n)),
            _ => Err(format!(
                "{text:?}: expected `auto` or a number from 1 to {}",
                send::CONNECTIONS_MAX
            )),
        }
    }
}

/// Per-scenario results.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub expected: usize,
    pub detected: usize,
    pub recall: Option<f64>,
    /// Alert observed by the harness minus the completing event's latency
    /// origin (intended send time when paced).
    pub latency: LatencySummary,
    /// The appliance's own `latency_us` (receive to detect).
    pub appliance_latency: LatencySummary,
    #[serde(skip)]
    pub histogram: LatencyHistogram,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub truth: Vec<TruthEntry>,
    pub corpus_meta: corpus::CorpusMeta,
    pub send: SendResult,
    pub alerts: Vec<ObservedAlert>,
    pub collect: Option<CollectStats>,
    pub matching: Option<Matching>,
    pub scenarios: Vec<ScenarioResult>,
    pub overall: LatencyHistogram,
    pub overall_appliance: LatencyHistogram,
    pub retime_skipped: u64,
    pub warnings: Vec<String>,
    /// Expected alerts left out of scoring (`not loaded`, `unsupported`),
    /// with how many entries each row covers.
    pub excluded: Vec<(Excluded, usize)>,
    /// Every scored detection, in send order (`detections.csv`).
    pub detections: Vec<DetectionRow>,
    /// What each of the machine's CPUs did while the load was sent: CPUs
    /// the harness may run on are `harness`, the others `other`, all of
    /// them `shared` when it may run on every one (`bench` names the
    /// appliance's).
    pub machine: Vec<crate::machine::CpuShare>,
    /// The kernel threads that ran while the load was sent, longest
    /// first, and the CPUs each may run on.
    pub kernel_threads: Vec<crate::machine::KernelThreadTime>,
    /// Set when the hypervisor takes back the memory this machine frees
    /// (see [`crate::machine::FreePageReporting`]).
    pub free_page_reporting: Option<crate::machine::FreePageReporting>,
    /// How the machine's idle CPUs wait (see [`crate::machine::IdleHalt`]).
    pub idle_halt: Option<crate::machine::IdleHalt>,
    /// What its kernel charged for a system call, a fresh page and a
    /// wake-up just before the load (see [`crate::machine::KernelCosts`]).
    pub kernel_costs: Option<crate::machine::KernelCosts>,
    /// Where loopback's receive work ran during the load (see
    /// [`crate::steer`]); `None` where the kernel has no mask to read.
    pub loopback: Option<crate::steer::LoopbackRps>,
}

/// One detected scenario instance: when its completing event was due,
/// when the harness's write holding it returned, when the appliance raised
/// the alert and when the harness read it, so a latency tail can be placed
/// in time and split into legs (see [`LatencyLegs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionRow {
    pub scenario: String,
    /// The completing event's intended send time (UTC ns).
    pub sent_ns: i64,
    /// When the write (or `sendmmsg`, or RELP batch) holding the completing
    /// event returned (UTC ns); equal to `sent_ns` flat out.
    pub written_ns: i64,
    /// The alert's `detected_at` (the appliance's clock, same machine).
    pub detected_ns: Option<i64>,
    /// When the collector read the alert (UTC ns).
    pub observed_ns: i64,
    /// The appliance's own receive-to-detect latency.
    pub appliance_us: Option<i64>,
}

impl DetectionRow {
    /// When the appliance read the completing event: its `detected_at`
    /// less its own receive-to-detect latency.
    fn received_ns(&self) -> Option<i64> {
        Some(self.detected_ns? - self.appliance_us? * 1_000)
    }
}

/// `detections.csv`: one row per detection, times in µs since `start_ns`
/// (the first event's intended send time), so rows line up with the
/// throughput plot; `sent_to_detected_us` is what happened before the
/// alert existed (sender, socket, appliance), `detected_to_observed_us`
/// after it (alert log, collector). The first leg is split further:
/// `intended_to_written_us` (the harness late on its schedule, or its
/// write blocked by a full socket) and `written_to_received_us` (the
/// kernel, and the appliance busy elsewhere before it read the line); the
/// appliance's own `appliance_us` is the rest.
pub fn detections_csv(rows: &[DetectionRow], start_ns: i64) -> String {
    let mut out = String::from(
        "scenario,sent_us,latency_us,sent_to_detected_us,detected_to_observed_us,appliance_us,intended_to_written_us,written_to_received_us\n",
    );
    let opt = |v: Option<i64>| v.map_or(String::new(), |v| v.to_string());
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            r.scenario,
            (r.sent_ns - start_ns) / 1_000,
            (r.observed_ns - r.sent_ns) / 1_000,
            opt(r.detected_ns.map(|d| (d - r.sent_ns) / 1_000)),
            opt(r.detected_ns.map(|d| (r.observed_ns - d) / 1_000)),
            opt(r.appliance_us),
            (r.written_ns - r.sent_ns) / 1_000,
            opt(r.received_ns().map(|x| (x - r.written_ns) / 1_000)),
        ));
    }
    out
}

/// Detection latency split into its legs, one histogram each: the harness
/// (intended send to write returned), the way in (write returned to the
/// appliance reading the line: kernel, socket buffer, appliance busy with
/// earlier lines or other work), the appliance (read to detected) and the
/// way out (detected to the harness reading the alert). The first two are
/// known only for alerts that carry `latency_us`; a write that returns
/// after the appliance already read the line (a large write read while
/// still being copied) counts 0 on the way in.
#[derive(Default)]
pub struct LatencyLegs {
    pub harness: LatencyHistogram,
    pub way_in: LatencyHistogram,
    pub appliance: LatencyHistogram,
    pub way_out: LatencyHistogram,
    /// Intended send to detected (the first three legs together).
    pub sent_to_detected: LatencyHistogram,
    /// Which leg was the largest in the slowest detections.
    pub tail: TailLegs,
}

/// The slowest [`TAIL_PERMILLE`]/1000 of the detections (at least one),
/// counted by the leg that took the most of each: where a p99 comes from,
/// without reading `detections.csv` by hand.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TailLegs {
    /// Detections in the tail.
    pub detections: u64,
    pub harness: u64,
    pub way_in: u64,
    pub appliance: u64,
    pub way_out: u64,
    /// Without the appliance's own latency, so not split.
    pub unsplit: u64,
}

/// The tail [`TailLegs`] looks at: the slowest 1%.
pub const TAIL_PERMILLE: usize = 10;

impl TailLegs {
    fn of(rows: &[DetectionRow]) -> TailLegs {
        let mut slowest: Vec<&DetectionRow> = rows.iter().collect();
        slowest.sort_by_key(|r| std::cmp::Reverse(r.observed_ns - r.sent_ns));
        let n = (rows.len() * TAIL_PERMILLE).div_ceil(1000);
        let mut tail = TailLegs::default();
        for r in &slowest[..n] {
            tail.detections += 1;
            let (Some(detected), Some(received)) = (r.detected_ns, r.received_ns()) else {
                tail.unsplit += 1;
                continue;
            };
            let legs = [
                r.written_ns - r.sent_ns,
                received - r.written_ns,
                detected - received,
                r.observed_ns - detected,
            ];
            // The first of equal largest legs, in the order they happen.
            let largest =
                (0..legs.len()).fold(0, |best, i| if legs[i] > legs[best] { i } else { best });
            match largest {
                0 => tail.harness += 1,
                1 => tail.way_in += 1,
                2 => tail.appliance += 1,
                _ => tail.way_out += 1,
            }
        }
        tail
    }
}

impl LatencyLegs {
    pub fn of(rows: &[DetectionRow]) -> LatencyLegs {
        let mut legs = LatencyLegs {
            tail: TailLegs::of(rows),
            ..LatencyLegs::default()
        };
        for r in rows {
            let Some(detected) = r.detected_ns else {
                continue;
            };
            legs.sent_to_detected
                .record_us((detected - r.sent_ns) / 1_000);
            legs.way_out.record_us((r.observed_ns - detected) / 1_000);
            if let Some(received) = r.received_ns() {
                legs.harness.record_us((r.written_ns - r.sent_ns) / 1_000);
                legs.way_in.record_us((received - r.written_ns) / 1_000);
                legs.appliance.record_us((detected - received) / 1_000);
            }
        }
        legs
    }
}

/// Loads or generates the corpus, with event times starting at `start_ns`.
/// Returns it, how many events to send, and how many lines could not be
/// retimed.
pub fn prepare_corpus(opts: &RunOptions, start_ns: i64) -> anyhow::Result<(Corpus, u64, u64)> {
    let wanted = match (opts.events, opts.duration_s, opts.rate_eps) {
        (Some(n), _, _) => Some(n),
        (None, Some(d), Some(rate)) => Some((d * rate).ceil() as u64),
        (None, Some(_), None) => None,
        (None, None, _) => None,
    };
    match &opts.corpus {
        Some(path) => {
            let mut corpus = Corpus::load(path)?;
            let skipped = corpus.retime(start_ns - corpus.truth.corpus.start_ns);
            let n = wanted
                .unwrap_or(corpus.len() as u64)
                .min(corpus.len() as u64);
            Ok((corpus, n, skipped))
        }
        None => {
            let Some(n) = wanted else {
                bail!("without --corpus, give --events N (or --duration with a numeric --rate)");
            };
            let corpus = corpus::generate(&GenConfig {
                events: n,
                entities: opts.gen.entities,
                seed: opts.gen.seed,
                start_ns,
                event_rate: opts.gen.event_rate,
                scenarios: opts.gen.scenarios.clone(),
            })?;
            Ok((corpus, n, 0))
        }
    }
}

/// Runs a load against the targets and, when an alert source is given,
/// collects and scores the alerts.
pub fn run_load(opts: &RunOptions) -> anyhow::Result<RunOutcome> {
    // Before anything is sent (about 0.1 s), on the CPUs the harness may use.
    let kernel_costs = opts
        .kernel_costs
        .clone()
        .or_else(|| crate::machine::KernelCosts::measure(&crate::machine::allowed_cpus()));
    let planned_t0 = clock::now_ns() + START_LEAD_NS;
    let (corpus, events, retime_skipped) =
        prepare_corpus(opts, planned_t0.saturating_add(opts.sender_clock_ns))?;
    if corpus.is_empty() || events == 0 {
        bail!("nothing to send: the corpus is empty or --events is 0");
    }
    let mut warnings = Vec::new();
    let meta = corpus.truth.corpus.clone();
    let span_s = (meta.end_ns - meta.start_ns).max(1) as f64 / 1e9;
    let corpus_rate = corpus.len() as f64 / span_s;
    if let Some(rate) = opts.rate_eps {
        let lag_s = events as f64 / rate - events as f64 / corpus_rate;
        if lag_s > SKEW_FLAGGED_S {
            warnings.push(format!(
                "sending at {rate:.0}/s is slower than the corpus's {corpus_rate:.0} events/s of event time: event times will trail the wall clock by up to {lag_s:.0} s, and the appliance flags events more than a day off its clock as event.time_skewed (detection itself is not affected: windows end on the appliance's clock)"
            ));
        }
    }
    if retime_skipped > 0 {
        warnings.push(format!(
            "{retime_skipped} lines had no recognizable header timestamp and were sent unchanged"
        ));
    }
    // Steered now, after the kernel-cost probe and before anything is
    // sent; put back once the alerts are in.
    let steering = if opts.steer_loopback {
        let harness = crate::machine::allowed_cpus();
        let online = crate::machine::cpu_ticks();
        if !online.is_empty() && online.iter().all(|t| harness.contains(&t.cpu)) {
            warnings.push(
                "--steer-loopback: the harness may run on every CPU, so there is no appliance CPU to steer loopback's receive work away from; not steered".to_string(),
            );
            None
        } else {
            let steering = crate::steer::Steering::to(&harness).context("--steer-loopback")?;
            if opts.progress {
                eprintln!(
                    "shardwatch-load: loopback receive processing steered to CPUs {harness:?} until the load ends (should the harness be killed with SIGKILL, by hand: {})",
                    steering.undo_commands()
                );
            }
            Some((steering, harness))
        }
    } else {
        None
    };
    for w in &warnings {
        eprintln!("shardwatch-load: warning: {w}");
    }
    // Only scenarios whose completing event is inside the sent prefix, and
    // whose rule the appliance can run, count.
    let scored = |e: &TruthEntry| {
        e.completing_index < events
            && opts.gate.check(e).0 == crate::scenario_rules::Availability::Expected
    };
    let truth: Vec<TruthEntry> = corpus
        .truth
        .expected
        .iter()
        .filter(|e| scored(e))
        .cloned()
        .collect();
    let sent: Vec<TruthEntry> = corpus
        .truth
        .expected
        .iter()
        .filter(|e| e.completing_index < events)
        .cloned()
        .collect();
    let (_, excluded) = opts.gate.split(&sent);
    for (x, n) in &excluded {
        eprintln!(
            "shardwatch-load: {} x {} ({}): {:?}, not scored: {}",
            n, x.scenario, x.rule, x.status, x.reason
        );
    }

    let collector = match &opts.alerts {
        Some(source) => Some(Collector::start(source.clone())?),
        None => None,
    };
    let alerts_seen = collector
        .as_ref()
        .map_or_else(|| Arc::new(AtomicU64::new(0)), |c| c.seen.clone());
    let t0 = planned_t0.max(clock::now_ns());
    let config = SendConfig {
        targets: opts.targets.clone(),
        schedule: Schedule {
            t0_ns: t0,
            rate_eps: opts.rate_eps,
        },
        events,
        // A paced run sends exactly rate x duration events (set above); only
        // a flat-out run is cut by the clock.
        duration_ns: opts
            .duration_s
            .filter(|_| opts.rate_eps.is_none())
            .map(|d| (d * 1e9) as i64),
        connections: opts.connections,
        framing: opts.framing,
        session: opts.session.clone(),
        progress: opts.progress,
        flush_interval_ns: opts.flush_interval_ns,
        sender_threads: opts.sender_threads.resolve(
            opts.targets.len() * opts.connections,
            crate::machine::allowed_cpus().len(),
        ),
    };
    // Outside the CPU ticks' interval: reading every kernel thread's
    // counters takes a few milliseconds of this CPU.
    let kthreads_before = crate::machine::kernel_threads_now();
    let ticks_before = crate::machine::cpu_ticks();
    let send = send::send(&corpus, &config, &Arc::new(AtomicU64::new(0)), &alerts_seen)?;
    let ticks_after = crate::machine::cpu_ticks();
    let kernel_threads = crate::machine::kernel_threads_between(
        &kthreads_before,
        &crate::machine::kernel_threads_now(),
        KERNEL_THREAD_MIN_NS,
        crate::machine::allowed_cpus_of,
    );
    let (alerts, collect, matching) = match collector {
        None => (Vec::new(), None, None),
        Some(mut collector) => {
            let deadline = clock::now_ns() + opts.drain_ms as i64 * 1_000_000;
            let mut settle_until: Option<i64> = None;
            let mut rematch = QuietRematch::default();
            loop {
                let now = clock::now_ns();
                if now >= deadline || settle_until.is_some_and(|s| now >= s) {
                    break;
                }
                let count = alerts_seen.load(std::sync::atomic::Ordering::Relaxed);
                if rematch.due(count) && settle_until.is_none() {
                    let m = match_alerts(&truth, collector.snapshot());
                    if m.true_positives() == truth.len() {
                        settle_until = Some(now + SETTLE_NS);
                    }
                }
                clock::sleep_ns(DRAIN_POLL_NS);
            }
            let (alerts, stats) = collector.finish();
            let matching = match_alerts(&truth, &alerts);
            (alerts, Some(stats), Some(matching))
        }
    };

    let loopback = match steering {
        Some((steering, harness)) => Some(crate::steer::LoopbackRps {
            cpus: harness,
            steered_by_harness: true,
            before: Some(steering.before().to_vec()),
        }),
        None => crate::steer::LoopbackRps::of_this_machine(),
    };
    // Done once the alerts are in: this CPU may be the appliance's too
    // (see the drain loop).
    let free_page_reporting =
        crate::machine::free_page_reporting_on().then(|| crate::machine::FreePageReporting {
            reported_kib: crate::machine::reported_kib(),
        });
    let idle_halt = crate::machine::IdleHalt::of_this_machine();
    let harness_cpus = crate::machine::allowed_cpus();
    // A harness allowed on every CPU shares them with whatever it drives.
    let everywhere = ticks_after.iter().all(|t| harness_cpus.contains(&t.cpu));
    let machine = crate::machine::shares(&ticks_before, &ticks_after, |cpu| {
        if everywhere {
            "shared"
        } else if harness_cpus.contains(&cpu) {
            "harness"
        } else {
            "other"
        }
    });
    // Map truth positions in the full list to the filtered list.
    // `truth` is the in-order subsequence of entries that were sent.
    let mut kept = 0usize;
    let sent_truth: Vec<Option<usize>> = corpus
        .truth
        .expected
        .iter()
        .map(|e| {
            scored(e).then(|| {
                kept += 1;
                kept - 1
            })
        })
        .collect();

    let mut overall = LatencyHistogram::default();
    let mut overall_appliance = LatencyHistogram::default();
    let mut per: Vec<(LatencyHistogram, LatencyHistogram)> = vec![Default::default(); truth.len()];
    let mut detections = Vec::new();
    if let Some(m) = &matching {
        for c in &send.completing {
            let Some(t) = sent_truth[c.truth_index] else {
                continue;
            };
            let Some(a) = m.matched[t] else { continue };
            let alert = &alerts[a];
            let latency_us = (alert.observed_ns - c.origin_ns) / 1_000;
            detections.push(DetectionRow {
                scenario: truth[t].scenario.clone(),
                sent_ns: c.origin_ns,
                written_ns: c.sent_ns,
                detected_ns: alert.detected_ns,
                observed_ns: alert.observed_ns,
                appliance_us: alert.latency_us,
            });
            per[t].0.record_us(latency_us);
            overall.record_us(latency_us);
            if let Some(us) = alert.latency_us {
                per[t].1.record_us(us);
                overall_appliance.record_us(us);
            }
        }
    }
    let mut names: Vec<String> = Vec::new();
    for e in &truth {
        if !names.contains(&e.scenario) {
            names.push(e.scenario.clone());
        }
    }
    let scenarios = names
        .iter()
        .map(|name| {
            let mut h = LatencyHistogram::default();
            let mut ha = LatencyHistogram::default();
            let mut expected = 0;
            let mut detected = 0;
            for (i, e) in truth.iter().enumerate() {
                if &e.scenario == name {
                    expected += 1;
                    if matching.as_ref().is_some_and(|m| m.matched[i].is_some()) {
                        detected += 1;
                    }
                    h.merge(&per[i].0);
                    ha.merge(&per[i].1);
                }
            }
            ScenarioResult {
                scenario: name.clone(),
                expected,
                detected,
                recall: matching.as_ref().and_then(|m| m.recall_of(&truth, name)),
                latency: h.summary(),
                appliance_latency: ha.summary(),
                histogram: h,
            }
        })
        .collect();
    Ok(RunOutcome {
        truth,
        corpus_meta: meta,
        send,
        alerts,
        collect,
        matching,
        scenarios,
        overall,
        overall_appliance,
        retime_skipped,
        warnings,
        excluded,
        detections,
        machine,
        kernel_threads,
        free_page_reporting,
        idle_halt,
        kernel_costs,
        loopback,
    })
}

/// Adds a run's numbers, summary lines and plot series to `report`.
pub fn add_to_report(outcome: &RunOutcome, opts: &RunOptions, report: &mut Report) {
    let s = &outcome.send;
    let achieved = s.sent as f64 / s.duration_s();
    report.body.insert(
        "load".into(),
        json!({
            "targets": opts.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "rate_eps": opts.rate_eps,
            "paced": opts.rate_eps.is_some(),
            "latency_origin": if opts.rate_eps.is_some() { "intended send time (coordinated-omission safe)" } else { "actual send time (flat out)" },
            "connections": opts.connections,
            "framing": format!("{:?}", opts.framing),
            "relp_window": opts.targets.iter().any(|t| matches!(t, Target::Relp(_))).then_some(opts.session.relp_window),
            "tls_server_name": opts.targets.iter().any(|t| matches!(t, Target::Tls(_))).then_some(&opts.session.tls.server_name),
            "corpus": opts.corpus.as_ref().map(|p| p.display().to_string()),
            "corpus_meta": outcome.corpus_meta,
            "retime_skipped": outcome.retime_skipped,
            "sender_clock_s": opts.sender_clock_ns / 1_000_000_000,
            "warnings": outcome.warnings,
        }),
    );
    report.body.insert(
        "send".into(),
        json!({
            "sent": s.sent,
            "send_errors": s.send_errors,
            "bytes": s.bytes,
            "duration_s": s.duration_s(),
            "achieved_eps": achieved,
            "behind_max_ms": s.behind_max_ns as f64 / 1e6,
            "writes": s.writes,
            "flush_interval_us": opts.flush_interval_ns / 1_000,
            // UTC ns: the origin of `detections.csv`'s `sent_us` and of
            // the timeline, to line them up with the appliance's logs.
            "started_ns": s.started_ns,
            "finished_ns": s.finished_ns,
            "timeline_bucket_ms": TIMELINE_BUCKET_NS / 1_000_000,
            "timeline_sent": s.timeline,
            "relp": s.relp,
            "sender_sched": s.sender_sched,
            "sender_realtime": s.sender_realtime,
            "sender_realtime_dropped": s.sender_realtime_dropped,
            "sender_threads": s.sender_threads,
        }),
    );
    report.summary.push(format!(
        "sent {} events in {:.2} s ({:.0}/s{}) in {} writes ({:.1} events each{}), {} send errors, max lag behind schedule {:.1} ms",
        s.sent,
        s.duration_s(),
        achieved,
        opts.rate_eps
            .map_or(", flat out".to_string(), |r| format!(", target {r:.0}/s")),
        s.writes,
        s.sent as f64 / s.writes.max(1) as f64,
        if opts.flush_interval_ns > 0 && opts.rate_eps.is_some() {
            format!(", at most one per {} us", opts.flush_interval_ns / 1_000)
        } else {
            String::new()
        },
        s.send_errors,
        s.behind_max_ns as f64 / 1e6
    ));
    if let Some(sched) = &s.sender_sched {
        report.summary.push(format!(
            "{}: {:.1} ms on a CPU, {:.1} ms runnable but waiting for one, over {} timeslices; {}",
            if s.sender_threads > 1 {
                format!(
                    "{} sender threads (--sender-threads), together",
                    s.sender_threads
                )
            } else {
                "sender thread".to_string()
            },
            sched.on_cpu_ns as f64 / 1e6,
            sched.waited_ns as f64 / 1e6,
            sched.slices,
            match (s.sender_realtime, s.sender_realtime_dropped) {
                (true, false) => "real-time priority (SCHED_FIFO)",
                (true, true) => "real-time priority until it fell behind schedule",
                (false, _) => "normal priority",
            }
        ));
    }
    if let Some(r) = &s.relp {
        let l = &r.ack_latency;
        report.summary.push(format!(
            "relp: {} of {} acknowledged ({:.0}/s), {} refused, {} unacknowledged, {}/{} sessions closed cleanly, window {}; ack latency p50 {} p99 {} max {}",
            r.acked,
            r.sent,
            r.acked as f64 / s.duration_s(),
            r.refused,
            r.unacked,
            r.closed_cleanly,
            r.sessions,
            opts.session.relp_window,
            crate::hist::human_us(l.p50_us),
            crate::hist::human_us(l.p99_us),
            crate::hist::human_us(l.max_us),
        ));
        for e in &r.errors {
            report.summary.push(format!("warning: relp: {e}"));
        }
    }
    report
        .body
        .insert("machine_cpus".into(), json!(outcome.machine));
    if let Some(line) = crate::machine::summary_line(&outcome.machine) {
        report.summary.push(line);
    }
    report
        .body
        .insert("kernel_threads".into(), json!(outcome.kernel_threads));
    // The appliance's CPUs where bench named them; otherwise those the
    // harness did not run on, or all when it shared them.
    let cpus_with_role = |role: &str| -> Vec<usize> {
        outcome
            .machine
            .iter()
            .filter(|s| s.role == role)
            .map(|s| s.cpu)
            .collect()
    };
    let cpus = [
        cpus_with_role("appliance"),
        cpus_with_role("other"),
        cpus_with_role("shared"),
    ]
    .into_iter()
    .find(|c| !c.is_empty())
    .unwrap_or_default();
    if let Some(line) = crate::machine::kernel_threads_line(&outcome.kernel_threads, &cpus) {
        report.summary.push(line);
    }
    if let Some(reporting) = &outcome.free_page_reporting {
        report
            .body
            .insert("free_page_reporting".into(), json!(reporting));
        report
            .summary
            .push(crate::machine::reporting_line(reporting));
    }
    if let Some(costs) = &outcome.kernel_costs {
        report.body.insert("kernel_costs".into(), json!(costs));
        report.summary.push(costs.line());
    }
    if let Some(idle) = &outcome.idle_halt {
        idle.add_to(report);
    }
    if let Some(loopback) = &outcome.loopback {
        report.body.insert("loopback_rps".into(), json!(loopback));
        let stream = opts.targets.iter().any(|t| !matches!(t, Target::Udp(_)));
        if let Some(line) = loopback.line(stream) {
            report.summary.push(line);
        }
    }
    for w in &outcome.warnings {
        report.summary.push(format!("warning: {w}"));
    }
    if let Some(m) = &outcome.matching {
        // Where the latency went: the harness, the way in, the appliance,
        // the way out.
        let legs = LatencyLegs::of(&outcome.detections);
        report.extra_files.push((
            "detections.csv".into(),
            detections_csv(&outcome.detections, outcome.send.started_ns),
        ));
        report.body.insert(
            "detection".into(),
            json!({
                "expected": outcome.truth.len(),
                "alerts_observed": outcome.alerts.len(),
                "true_positives": m.true_positives(),
                "duplicates": m.duplicates.len(),
                "false_positives": m.false_positives.len(),
                "false_positive_rules": m.false_positives.iter().take(20).map(|&i| &outcome.alerts[i].rule_title).collect::<Vec<_>>(),
                "precision": m.precision(),
                "recall": m.recall(),
                "latency": outcome.overall.summary(),
                "appliance_latency": outcome.overall_appliance.summary(),
                "latency_split": {
                    "sent_to_detected": legs.sent_to_detected.summary(),
                    "detected_to_observed": legs.way_out.summary(),
                    "intended_to_written": legs.harness.summary(),
                    "written_to_received": legs.way_in.summary(),
                    "received_to_detected": legs.appliance.summary(),
                    "slowest_percent_largest_leg": legs.tail,
                },
                "scenarios": outcome.scenarios,
                "not_scored": outcome.excluded.iter().map(|(x, n)| json!({
                    "scenario": x.scenario,
                    "rule": x.rule,
                    "status": x.status,
                    "reason": x.reason,
                    "entries": n,
                })).collect::<Vec<_>>(),
                "scenario_rules": opts.gate,
                "collector": outcome.collect,
            }),
        );
        report.summary.push(format!(
            "alerts: {} observed, {} expected, {} matched, {} duplicates, {} false positives; precision {} recall {}",
            outcome.alerts.len(),
            outcome.truth.len(),
            m.true_positives(),
            m.duplicates.len(),
            m.false_positives.len(),
            fraction(m.precision()),
            fraction(m.recall())
        ));
        report.summary.push(
            "detection latency (alert observed - completing event's intended send time):".into(),
        );
        let (before, after) = (legs.sent_to_detected.summary(), legs.way_out.summary());
        if let Some(c) = &outcome.collect {
            report.summary.push(format!(
                "  observer: {}, {} priority{}",
                match (c.source, c.inotify) {
                    ("stream", _) => "subscribed to the live stream (/api/alerts/stream)",
                    ("stdin", _) => "reading stdin",
                    (_, true) => "woken by inotify on each write",
                    (_, false) => "polling the file every 250 us",
                },
                if c.realtime_priority {
                    "real-time (SCHED_FIFO)"
                } else {
                    "normal"
                },
                if c.stream_error.is_empty() {
                    String::new()
                } else {
                    format!("; the stream ended early: {}", c.stream_error)
                }
            ));
        }
        let leg = |s: &LatencySummary| {
            format!(
                "p50 {} p99 {} max {}",
                human_us(s.p50_us),
                human_us(s.p99_us),
                human_us(s.max_us)
            )
        };
        if before.count > 0 {
            report.summary.push(format!(
                "  split: intended send -> detected_at {}; detected_at -> observed {} (per detection: detections.csv)",
                leg(&before),
                leg(&after),
            ));
        }
        let (harness, way_in, appliance) = (
            legs.harness.summary(),
            legs.way_in.summary(),
            legs.appliance.summary(),
        );
        if harness.count > 0 {
            report.summary.push(format!(
                "  legs: intended -> written (harness) {}; written -> read by the appliance {}; read -> detected {}",
                leg(&harness),
                leg(&way_in),
                leg(&appliance),
            ));
        }
        let t = legs.tail;
        if t.detections > 0 {
            report.summary.push(format!(
                "  slowest 1% ({} detections), by their largest leg: harness {}, way in {}, appliance {}, way out {}{}",
                t.detections,
                t.harness,
                t.way_in,
                t.appliance,
                t.way_out,
                if t.unsplit > 0 {
                    format!(", not split {}", t.unsplit)
                } else {
                    String::new()
                }
            ));
        }
        for sc in &outcome.scenarios {
            let l = &sc.latency;
            report.summary.push(format!(
                "  {:<18} {}/{} detected  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (appliance p50 {} max {})",
                sc.scenario,
                sc.detected,
                sc.expected,
                human_us(l.p50_us),
                human_us(l.p90_us),
                human_us(l.p99_us),
                human_us(l.p999_us),
                human_us(l.max_us),
                human_us(sc.appliance_latency.p50_us),
                human_us(sc.appliance_latency.max_us),
            ));
            report
                .cdf
                .push(sc.histogram.cdf_series(format!("stream {}", sc.scenario)));
        }
        for (x, n) in &outcome.excluded {
            let status = match x.status {
                crate::scenario_rules::Availability::NotLoaded => "not loaded",
                crate::scenario_rules::Availability::Unsupported => "unsupported",
                crate::scenario_rules::Availability::Expected => "expected",
            };
            report.summary.push(format!(
                "  {:<18} {status}: {n} expected alert(s) of rule {} not scored ({})",
                x.scenario, x.rule, x.reason
            ));
        }
    } else {
        report
            .summary
            .push("alerts: not collected (give --alerts FILE or --alerts-stdin)".into());
    }
    report
        .throughput
        .push(crate::send::timeline_series("sent".into(), &s.timeline));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_threads_are_at_most_one_per_connection() {
        assert_eq!(SenderThreads::parse("auto"), Ok(SenderThreads::Auto));
        assert_eq!(SenderThreads::parse("3"), Ok(SenderThreads::Count(3)));
        for bad in ["0", "-1", "x", "", "257"] {
            assert!(SenderThreads::parse(bad).is_err(), "{bad}");
        }
        // auto: one per connection, up to the harness's CPUs.
        assert_eq!(SenderThreads::Auto.resolve(8, 4), 4);
        assert_eq!(SenderThreads::Auto.resolve(2, 14), 2);
        assert_eq!(SenderThreads::Auto.resolve(1, 0), 1);
        assert_eq!(SenderThreads::Count(4).resolve(2, 16), 2);
        assert_eq!(SenderThreads::Count(3).resolve(8, 1), 3);
    }

    #[test]
    fn detections_csv_splits_each_latency_at_the_alerts_own_time() {
        let start = 1_000_000_000_000;
        let rows = [
            DetectionRow {
                scenario: "ssh_brute_force".into(),
                sent_ns: start + 2_000_000,
                written_ns: start + 2_100_000,
                detected_ns: Some(start + 2_500_000),
                observed_ns: start + 3_000_000,
                appliance_us: Some(40),
            },
            DetectionRow {
                scenario: "port_scan".into(),
                sent_ns: start + 10_000_000,
                written_ns: start + 10_000_000,
                detected_ns: None,
                observed_ns: start + 90_000_000,
                appliance_us: None,
            },
        ];
        assert_eq!(
            detections_csv(&rows, start),
            "scenario,sent_us,latency_us,sent_to_detected_us,detected_to_observed_us,appliance_us,intended_to_written_us,written_to_received_us\n\
             ssh_brute_force,2000,1000,500,500,40,100,360\n\
             port_scan,10000,80000,,,,0,\n"
        );
    }

    #[test]
    fn alerts_are_matched_again_only_after_a_poll_without_new_ones() {
        let mut rematch = QuietRematch::default();
        // Right after the send: alerts may still be coming.
        assert!(!rematch.due(5));
        // No new alert since the last poll: match.
        assert!(rematch.due(5));
        // Nothing new since that match: not again.
        assert!(!rematch.due(5));
        // New alerts: wait for a quiet poll.
        assert!(!rematch.due(7));
        assert!(!rematch.due(9));
        assert!(rematch.due(9));
        // No alert at all is quiet too (the truth may be empty of sent
        // scenarios; the deadline ends the wait).
        let mut none = QuietRematch::default();
        assert!(!none.due(0));
        assert!(none.due(0));
        assert!(!none.due(0));
    }

    /// A detection whose event was meant to go at `sent`, written,
    /// read by the appliance, detected and observed at the other times
    /// (µs).
    fn row(sent: i64, written: i64, received: i64, detected: i64, observed: i64) -> DetectionRow {
        DetectionRow {
            scenario: "s".into(),
            sent_ns: sent * 1_000,
            written_ns: written * 1_000,
            detected_ns: Some(detected * 1_000),
            observed_ns: observed * 1_000,
            appliance_us: Some(detected - received),
        }
    }

    #[test]
    fn latency_legs_add_up_to_the_whole_and_skip_what_is_unknown() {
        let rows = [
            // 1.5 ms late on the schedule, 300 µs in the kernel, 50 µs in
            // the appliance, 1 ms to the collector (values the histogram
            // holds exactly: under 2,048).
            row(0, 1_500, 1_800, 1_850, 2_850),
            // The appliance read the line before the write returned.
            row(10_000, 10_500, 10_400, 10_420, 10_500),
        ];
        let mut no_latency = row(20_000, 20_000, 20_100, 20_200, 20_300);
        no_latency.appliance_us = None;
        let mut undetected = no_latency.clone();
        undetected.detected_ns = None;
        let legs = LatencyLegs::of(&[rows[0].clone(), rows[1].clone(), no_latency, undetected]);
        let (harness, way_in, appliance) = (
            legs.harness.summary(),
            legs.way_in.summary(),
            legs.appliance.summary(),
        );
        assert_eq!((harness.count, way_in.count, appliance.count), (2, 2, 2));
        assert_eq!(legs.sent_to_detected.summary().count, 3);
        assert_eq!(legs.way_out.summary().count, 3);
        assert_eq!(
            (harness.max_us, way_in.max_us, appliance.max_us),
            (1_500, 300, 50)
        );
        // The early read counts as (the histogram's floor of) zero.
        assert_eq!(way_in.p50_us, 1);
        assert_eq!(appliance.p50_us, 20);
        assert_eq!(legs.sent_to_detected.summary().max_us, 1_850);
        // Four detections: the slowest one (2.85 ms, the harness's 1.5 ms
        // its largest leg) is the slowest 1%.
        assert_eq!(
            legs.tail,
            TailLegs {
                detections: 1,
                harness: 1,
                ..TailLegs::default()
            }
        );
    }

    #[test]
    fn the_slowest_percent_is_counted_by_its_largest_leg() {
        // 300 detections: 297 fast ones and three slow ones, each slow
        // in another leg; the slowest 1% is those three.
        let mut rows: Vec<DetectionRow> = (0..297)
            .map(|i| {
                row(
                    i * 10_000,
                    i * 10_000 + 50,
                    i * 10_000 + 60,
                    i * 10_000 + 80,
                    i * 10_000 + 100,
                )
            })
            .collect();
        let t = 10_000_000;
        rows.push(row(t, t + 100, t + 2_000, t + 2_050, t + 2_100)); // way in
        rows.push(row(
            2 * t,
            2 * t + 50,
            2 * t + 60,
            2 * t + 1_900,
            2 * t + 2_000,
        )); // appliance
        let mut unsplit = row(3 * t, 3 * t + 50, 3 * t + 60, 3 * t + 80, 3 * t + 1_800);
        unsplit.appliance_us = None;
        rows.push(unsplit);
        let tail = TailLegs::of(&rows);
        assert_eq!(
            tail,
            TailLegs {
                detections: 3,
                way_in: 1,
                appliance: 1,
                unsplit: 1,
                ..TailLegs::default()
            }
        );
        // One more slow detection, slow on the way out, pushes the tail to
        // four (1% of 301, rounded up).
        rows.push(row(
            4 * t,
            4 * t + 50,
            4 * t + 60,
            4 * t + 80,
            4 * t + 3_000,
        ));
        let tail = TailLegs::of(&rows);
        assert_eq!((tail.detections, tail.way_out), (4, 1));
        assert_eq!(TailLegs::of(&[]), TailLegs::default());
    }
}
