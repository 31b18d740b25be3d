//! `batch`: the scheduled-batch SIEM comparison.
//!
//! # The model
//!
//! A SIEM that does not stream runs a scheduled search every `interval`
//! (cron-aligned: boundaries are multiples of the interval since the epoch).
//! The run at boundary `E` searches the events with event time in
//! `[E - interval - lookback, E)`: the interval that just ended plus a
//! lookback as long as the longest rule window (5 minutes for the built-in
//! rules), so a pattern that straddles a boundary is still seen whole. Here
//! the search is the real thing: `shardwatch replay` over exactly those
//! lines, with its wall-clock runtime measured.
//!
//! An expected alert is credited to the first run whose output contains it
//! and whose interval ends at or after its completing event. Its batch
//! detection latency is `E + runtime − completing event time`: the wait for
//! the interval to end plus the search itself. Ingestion delay into the SIEM
//! and scheduler jitter are not modelled (both only add), so these numbers
//! are a lower bound for a real batch SIEM. Runs are executed one after the
//! other on this machine, not at their scheduled times; only their runtime
//! enters the latency.

use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::{json, Value};

use crate::appliance::ScratchDir;
use crate::corpus::{Corpus, TruthEntry};
use crate::hist::{human_us, LatencyHistogram, LatencySummary};
use crate::matching::{alert_matches, parse_alert, ObservedAlert};
use crate::report::{fraction, Report};
use crate::scenario_rules::Gate;
use crate::svg::Series;

/// Most scheduled runs one comparison executes.
pub const BATCH_RUNS_MAX: usize = 5_000;
/// Longest replay output read per run.
pub const REPLAY_OUTPUT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// One scheduled search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The boundary the run fires at (end of its interval).
    pub end_ns: i64,
    /// Lines `[from, to)` of the corpus it searches.
    pub from: usize,
    pub to: usize,
}

/// Plans the runs for event times `times_ns` (sorted): one per interval
/// that holds at least one event.
pub fn plan(times_ns: &[i64], interval_ns: i64, lookback_ns: i64) -> Vec<Window> {
    assert!(interval_ns > 0 && lookback_ns >= 0);
    let mut windows = Vec::new();
    let mut i = 0;
    while i < times_ns.len() {
        let end_ns = (times_ns[i].div_euclid(interval_ns) + 1) * interval_ns;
        let start_ns = end_ns - interval_ns - lookback_ns;
        let from = times_ns.partition_point(|&t| t < start_ns);
        let to = times_ns.partition_point(|&t| t < end_ns);
        debug_assert!(to > i);
        windows.push(Window { end_ns, from, to });
        i = to;
    }
    windows
}

/// What one executed run returned.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub end_ns: i64,
    pub runtime_ns: i64,
    pub alerts: Vec<ObservedAlert>,
}

/// For each truth entry, the batch latency in nanoseconds of the first run
/// that reports it (None when no run does).
pub fn attribute(truth: &[TruthEntry], runs: &[RunResult]) -> Vec<Option<i64>> {
    truth
        .iter()
        .map(|entry| {
            runs.iter()
                .filter(|r| r.end_ns > entry.completing_time_ns)
                .find(|r| r.alerts.iter().any(|a| alert_matches(entry, a)))
                .map(|r| r.end_ns + r.runtime_ns - entry.completing_time_ns)
        })
        .collect()
}

/// Alerts that match no truth entry, counted once per (rule, group/sample)
/// since overlapping lookbacks re-raise the same alert.
pub fn unexpected(truth: &[TruthEntry], runs: &[RunResult]) -> usize {
    let mut keys: Vec<String> = runs
        .iter()
        .flat_map(|r| r.alerts.iter())
        .filter(|a| !truth.iter().any(|e| alert_matches(e, a)))
        .map(|a| format!("{}|{:?}|{:?}", a.rule_title, a.group, a.samples.first()))
        .collect();
    keys.sort();
    keys.dedup();
    keys.len()
}

fn replay(
    binary: &Path,
    chunk: &Path,
    extra: &[String],
) -> anyhow::Result<(i64, Vec<ObservedAlert>)> {
    let started = Instant::now();
    let mut command = Command::new(binary);
    command
        .arg("replay")
        .arg(chunk)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Registered, so a signal meanwhile stops it too.
    let (child, _registered) =
        crate::interrupt::spawn(&mut command, format!("{} replay", binary.display()))?;
    let output = child
        .wait_with_output()
        .with_context(|| format!("cannot run {} replay", binary.display()))?;
    let runtime_ns = started.elapsed().as_nanos() as i64;
    if !output.status.success() {
        bail!(
            "{} replay {} failed ({}): {}",
            binary.display(),
            chunk.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let stdout = &output.stdout[..output.stdout.len().min(REPLAY_OUTPUT_BYTES_MAX)];
    let alerts = String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| parse_alert(l, 0))
        .collect();
    Ok((runtime_ns, alerts))
}

/// Options of `batch`.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub interval_s: u64,
    pub lookback_s: u64,
    pub binary: PathBuf,
    /// Scenario rules to load and which expected alerts to score.
    pub gate: Gate,
}

/// The batch side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct BatchOutcome {
    pub interval_s: u64,
    pub lookback_s: u64,
    pub runs: usize,
    /// Lines searched over all runs (lookbacks make this exceed the corpus).
    pub lines_searched: u64,
    pub runtime: LatencySummary,
    pub expected: usize,
    pub detected: usize,
    pub recall: Option<f64>,
    pub unexpected_alerts: usize,
    pub latency: LatencySummary,
    pub scenarios: Vec<Value>,
    #[serde(skip)]
    pub histogram: LatencyHistogram,
    /// (seconds since the first boundary, events per second that arrived in
    /// each searched interval), for the throughput plot.
    #[serde(skip)]
    pub arrivals: Vec<(f64, f64)>,
}

/// Runs the scheduled-batch model over a corpus whose event times have been
/// moved to the recent past (so RFC 3164 year inference in replay agrees).
pub fn run_batch(opts: &BatchOptions, corpus: &Corpus) -> anyhow::Result<BatchOutcome> {
    if opts.interval_s == 0 {
        bail!("--interval must be positive");
    }
    let interval_ns = opts.interval_s as i64 * 1_000_000_000;
    let lookback_ns = opts.lookback_s as i64 * 1_000_000_000;
    let windows = plan(&corpus.times_ns, interval_ns, lookback_ns);
    if windows.len() > BATCH_RUNS_MAX {
        bail!(
            "{} scheduled runs needed, more than {BATCH_RUNS_MAX}; use a longer --interval",
            windows.len()
        );
    }
    let dir = ScratchDir::create("batch", false)?;
    let chunk_path = dir.path().join("chunk.log");
    let mut runs = Vec::with_capacity(windows.len());
    let mut runtime = LatencyHistogram::default();
    let mut lines_searched = 0u64;
    let mut arrivals = Vec::with_capacity(windows.len());
    let first_end_ns = windows.first().map_or(0, |w| w.end_ns);
    for (n, w) in windows.iter().enumerate() {
        let arrived = corpus.times_ns[w.from..w.to]
            .iter()
            .filter(|&&t| t >= w.end_ns - interval_ns)
            .count();
        arrivals.push((
            (w.end_ns - first_end_ns) as f64 / 1e9,
            arrived as f64 / opts.interval_s as f64,
        ));
        let mut bytes = Vec::new();
        for i in w.from..w.to {
            bytes.extend_from_slice(corpus.line(i));
            bytes.push(b'\n');
        }
        std::fs::write(&chunk_path, &bytes)?;
        let (runtime_ns, alerts) =
            replay(&opts.binary, &chunk_path, &opts.gate.rules.appliance_args())?;
        runtime.record_us(runtime_ns / 1_000);
        eprintln!(
            "shardwatch-load: batch run {}/{}: {} lines, {:.1} ms, {} alerts",
            n + 1,
            windows.len(),
            w.to - w.from,
            runtime_ns as f64 / 1e6,
            alerts.len()
        );
        runs.push(RunResult {
            end_ns: w.end_ns,
            runtime_ns,
            alerts,
        });
        lines_searched += (w.to - w.from) as u64;
    }
    drop(dir);
    let (truth, excluded) = opts.gate.split(&corpus.truth.expected);
    for (x, n) in &excluded {
        eprintln!(
            "shardwatch-load: {n} x {} ({}): {:?}, not scored: {}",
            x.scenario, x.rule, x.status, x.reason
        );
    }
    let truth = &truth;
    let latencies = attribute(truth, &runs);
    let mut histogram = LatencyHistogram::default();
    let mut names: Vec<&str> = Vec::new();
    for (e, l) in truth.iter().zip(&latencies) {
        if let Some(ns) = l {
            histogram.record_us(ns / 1_000);
        }
        if !names.contains(&e.scenario.as_str()) {
            names.push(&e.scenario);
        }
    }
    let scenarios = names
        .iter()
        .map(|name| {
            let mut h = LatencyHistogram::default();
            let (mut n, mut hit) = (0, 0);
            for (e, l) in truth.iter().zip(&latencies) {
                if e.scenario == *name {
                    n += 1;
                    if let Some(ns) = l {
                        hit += 1;
                        h.record_us(ns / 1_000);
                    }
                }
            }
            json!({"scenario": name, "expected": n, "detected": hit, "latency": h.summary()})
        })
        .collect();
    let detected = latencies.iter().filter(|l| l.is_some()).count();
    Ok(BatchOutcome {
        interval_s: opts.interval_s,
        lookback_s: opts.lookback_s,
        runs: runs.len(),
        lines_searched,
        runtime: runtime.summary(),
        expected: truth.len(),
        detected,
        recall: (!truth.is_empty()).then(|| detected as f64 / truth.len() as f64),
        unexpected_alerts: unexpected(truth, &runs),
        latency: histogram.summary(),
        scenarios,
        histogram,
        arrivals,
    })
}

/// Ratios batch / streaming of matching percentiles.
pub fn ratios(batch: &LatencySummary, stream: &LatencySummary) -> Value {
    let r = |b: u64, s: u64| (s > 0).then(|| b as f64 / s as f64);
    json!({
        "p50": r(batch.p50_us, stream.p50_us),
        "p90": r(batch.p90_us, stream.p90_us),
        "p99": r(batch.p99_us, stream.p99_us),
        "max": r(batch.max_us, stream.max_us),
    })
}

/// Adds the batch side and the comparison to a report.
pub fn add_to_report(outcome: &BatchOutcome, stream: Option<&LatencySummary>, report: &mut Report) {
    let comparison = stream.map(|s| ratios(&outcome.latency, s));
    report.body.insert(
        "batch".into(),
        json!({
            "model": "cron-aligned scheduled replay every interval over [end - interval - lookback, end); latency = end + replay runtime - completing event time; ingestion delay and scheduler jitter not modelled (lower bound)",
            "outcome": outcome,
            "streaming_latency": stream,
            "batch_over_streaming": comparison,
        }),
    );
    let l = &outcome.latency;
    report.summary.push(format!(
        "batch every {} s (lookback {} s): {} runs, replay runtime p50 {} max {}; {}/{} detected (recall {}), {} unexpected alerts",
        outcome.interval_s,
        outcome.lookback_s,
        outcome.runs,
        human_us(outcome.runtime.p50_us),
        human_us(outcome.runtime.max_us),
        outcome.detected,
        outcome.expected,
        fraction(outcome.recall),
        outcome.unexpected_alerts
    ));
    report.summary.push(format!(
        "batch detection latency: p50 {}  p90 {}  p99 {}  max {}",
        human_us(l.p50_us),
        human_us(l.p90_us),
        human_us(l.p99_us),
        human_us(l.max_us)
    ));
    if let Some(s) = stream {
        let ratio = |b: u64, s: u64| {
            if s > 0 {
                format!("{:.0}x", b as f64 / s as f64)
            } else {
                "n/a".into()
            }
        };
        report.summary.push(format!(
            "streaming detection latency: p50 {}  p90 {}  p99 {}  max {}",
            human_us(s.p50_us),
            human_us(s.p90_us),
            human_us(s.p99_us),
            human_us(s.max_us)
        ));
        report.summary.push(format!(
            "batch / streaming: p50 {}  p99 {}  max {}",
            ratio(l.p50_us, s.p50_us),
            ratio(l.p99_us, s.p99_us),
            ratio(l.max_us, s.max_us)
        ));
    }
    if let Some(s) = stream {
        // Only the percentiles of an earlier report are known: draw them.
        if report.cdf.is_empty() && s.count > 0 {
            report.cdf.push(Series {
                label: "stream (percentiles)".into(),
                points: [
                    (s.min_us, 0.0),
                    (s.p50_us, 0.5),
                    (s.p90_us, 0.9),
                    (s.p99_us, 0.99),
                    (s.p999_us, 0.999),
                    (s.max_us, 1.0),
                ]
                .into_iter()
                .map(|(x, y)| (x as f64, y))
                .collect(),
            });
        }
    }
    report.throughput.push(Series {
        label: format!("events/s per {}s interval", outcome.interval_s),
        points: outcome.arrivals.clone(),
    });
    report.cdf.push(
        outcome
            .histogram
            .cdf_series(format!("batch {}s", outcome.interval_s)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn plan_covers_each_nonempty_interval_with_its_lookback() {
        let times = [10 * S, 50 * S, 65 * S, 200 * S, 239 * S, 240 * S];
        let w = plan(&times, 60 * S, 60 * S);
        assert_eq!(
            w,
            vec![
                Window {
                    end_ns: 60 * S,
                    from: 0,
                    to: 2
                },
                Window {
                    end_ns: 120 * S,
                    from: 0,
                    to: 3
                },
                Window {
                    end_ns: 240 * S,
                    from: 3,
                    to: 5
                },
                Window {
                    end_ns: 300 * S,
                    from: 3,
                    to: 6
                },
            ]
        );
        assert!(plan(&[], 60 * S, 0).is_empty());
    }

    fn entry(value: &str, t: i64) -> TruthEntry {
        TruthEntry {
            scenario: "ssh_brute_force".into(),
            instance: 0,
            rule: "SSH Brute Force".into(),
            group_field: "source.ip".into(),
            group_value: value.into(),
            completing_index: 0,
            completing_time_ns: t,
            completing_message: String::new(),
            first_index: 0,
        }
    }

    fn alert(value: &str) -> ObservedAlert {
        ObservedAlert {
            observed_ns: 0,
            id: String::new(),
            kind: "correlation".into(),
            rule_id: "x".into(),
            rule_title: "SSH Brute Force From One Source".into(),
            group: vec![("source.ip".into(), value.into())],
            latency_us: None,
            detected_ns: None,
            samples: vec![],
        }
    }

    #[test]
    fn latency_is_interval_end_plus_runtime_minus_completion() {
        let truth = vec![
            entry("a", 10 * S),
            entry("b", 59 * S),
            entry("c", 70 * S),
            entry("d", 1),
        ];
        let runs = vec![
            RunResult {
                end_ns: 60 * S,
                runtime_ns: S / 2,
                alerts: vec![alert("a")],
            },
            // "b" completed in the first interval but was first reported by
            // the second run (say the first missed it): credited there.
            RunResult {
                end_ns: 120 * S,
                runtime_ns: S,
                alerts: vec![alert("a"), alert("b"), alert("c"), alert("zz")],
            },
        ];
        let got = attribute(&truth, &runs);
        assert_eq!(
            got,
            vec![Some(50 * S + S / 2), Some(62 * S), Some(51 * S), None]
        );
        assert_eq!(unexpected(&truth, &runs), 1);
        let r = ratios(
            &LatencySummary {
                p50_us: 100,
                p90_us: 10,
                p99_us: 0,
                max_us: 5,
                ..Default::default()
            },
            &LatencySummary {
                p50_us: 10,
                p90_us: 10,
                p99_us: 0,
                max_us: 5,
                ..Default::default()
            },
        );
        assert_eq!(r["p50"], 10.0);
        assert_eq!(r["p99"], Value::Null);
    }
}
