//! `compare`: the same bench, run for several builds or settings of the
//! appliance in rounds, each round running every variant once in an order
//! rotated from the round before, and the variants compared by the ratio
//! of their runs within each round.
//!
//! On a shared VM the same build's throughput swings by a factor of two
//! within minutes (BENCHMARKS.md, 2026-12-07): two numbers taken minutes
//! apart compare the machine's phases, not the builds. Runs next to each
//! other share a phase more often than not, so the ratio of two variants'
//! runs in one round is the measurement, and the median of those ratios
//! over the rounds is what a change is judged by. Rotating the order keeps
//! a variant from always running first (on a fresh page cache, say) or
//! last.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{json, Value};

use crate::bench::BenchOutcome;
use crate::hist::{human_us, LatencyHistogram, LatencySummary};
use crate::report::Report;

/// Most variants one comparison runs.
pub const VARIANTS_MAX: usize = 8;
/// Most rounds one comparison runs.
pub const ROUNDS_MAX: usize = 100;
/// Longest variant name.
const NAME_BYTES_MAX: usize = 32;

/// One build or setting of the appliance: `NAME=BINARY[@CONFIG]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub name: String,
    pub binary: PathBuf,
    /// An appliance configuration file, passed as `bench
    /// --appliance-config` passes it.
    pub config: Option<PathBuf>,
    /// Its runs steer loopback's receive work to the harness's CPUs
    /// (`--steer-loopback`, see [`crate::steer`]), whatever the others do.
    pub steer_loopback: bool,
}

/// The suffix of a variant whose runs steer loopback's receive work.
pub const STEER_SUFFIX: &str = "+steer-loopback";

/// Parses `NAME=BINARY`, `NAME=BINARY@CONFIG`, either with
/// [`STEER_SUFFIX`] after it. The name is what the report calls the
/// variant (letters, digits, `-`, `_`, `.`; at most 32).
pub fn parse_variant(text: &str) -> Result<Variant, String> {
    let usage = || format!("{text:?} is not NAME=BINARY[@CONFIG][{STEER_SUFFIX}]");
    let (spec, steer_loopback) = match text.strip_suffix(STEER_SUFFIX) {
        Some(spec) => (spec, true),
        None => (text, false),
    };
    let (name, rest) = spec.split_once('=').ok_or_else(usage)?;
    if name.is_empty()
        || name.len() > NAME_BYTES_MAX
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "variant name {name:?}: 1 to {NAME_BYTES_MAX} letters, digits, '-', '_' or '.'"
        ));
    }
    let (binary, config) = match rest.rsplit_once('@') {
        Some((binary, config)) => (binary, Some(config)),
        None => (rest, None),
    };
    if binary.is_empty() || config.is_some_and(str::is_empty) {
        return Err(usage());
    }
    Ok(Variant {
        name: name.to_string(),
        binary: PathBuf::from(binary),
        config: config.map(PathBuf::from),
        steer_loopback,
    })
}

/// Checks a list of variants: at least one, at most [`VARIANTS_MAX`], no
/// name twice.
pub fn check_variants(variants: &[Variant]) -> Result<(), String> {
    if variants.is_empty() || variants.len() > VARIANTS_MAX {
        return Err(format!("give 1 to {VARIANTS_MAX} --variant"));
    }
    for (i, v) in variants.iter().enumerate() {
        if variants[..i].iter().any(|w| w.name == v.name) {
            return Err(format!("variant name {:?} given twice", v.name));
        }
    }
    Ok(())
}

/// The order the variants run in, in round `round` (from 0): the list
/// rotated left by the round, so each variant runs first in turn.
pub fn round_order(variants: usize, round: usize) -> Vec<usize> {
    (0..variants).map(|i| (i + round) % variants).collect()
}

/// The median of the values (the mean of the middle two for an even
/// count); `None` for none. Values that are not finite are left out.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// What one bench run of a variant measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunNumbers {
    /// The round, from 1.
    pub round: usize,
    /// Its place in the round, from 1.
    pub position: usize,
    pub sent: u64,
    pub received: u64,
    pub lost_before_receive: u64,
    /// Events the appliance counted as dropped (all reasons).
    pub dropped: u64,
    pub events_parsed: u64,
    /// Events parsed per second over the send.
    pub parsed_eps: f64,
    /// Events sent per second (the sender's rate).
    pub sent_eps: f64,
    /// The appliance's CPU (all threads, user + system) per accepted event.
    pub cpu_us_per_event: Option<f64>,
    /// CPUs its threads used on average while the load was sent.
    pub cpus_busy: Option<f64>,
    /// The harness's detection latency (send time of the completing event
    /// to the alert seen); `None` when nothing was detected.
    pub latency: Option<LatencySummary>,
    pub recall: Option<f64>,
    pub exit_code: Option<i32>,
    /// The run's own report (`bench`'s files).
    pub dir: PathBuf,
    /// Events sent per [`crate::send::TIMELINE_BUCKET_NS`], for the plot.
    #[serde(skip)]
    pub timeline: Vec<u64>,
}

impl RunNumbers {
    /// The numbers of one bench run, read from its outcome and from the
    /// report `bench` made of it (so that both say the same).
    pub fn of(
        outcome: &BenchOutcome,
        report: &Report,
        round: usize,
        position: usize,
        dir: PathBuf,
    ) -> RunNumbers {
        let appliance = report.body.get("appliance");
        let field = |key: &str| appliance.and_then(|a| a.get(key));
        let latency = outcome.run.overall.summary();
        RunNumbers {
            round,
            position,
            sent: outcome.run.send.sent,
            received: field("received").and_then(Value::as_u64).unwrap_or(0),
            lost_before_receive: field("lost_before_receive")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            dropped: field("dropped_total").and_then(Value::as_u64).unwrap_or(0),
            events_parsed: field("events_parsed").and_then(Value::as_u64).unwrap_or(0),
            parsed_eps: field("parsed_eps").and_then(Value::as_f64).unwrap_or(0.0),
            sent_eps: field("sent_eps").and_then(Value::as_f64).unwrap_or(0.0),
            cpu_us_per_event: field("cpu_us_per_event").and_then(Value::as_f64),
            cpus_busy: field("cpus_busy_avg").and_then(Value::as_f64),
            latency: (latency.count > 0).then_some(latency),
            recall: outcome.run.matching.as_ref().and_then(|m| m.recall()),
            exit_code: outcome.stopped.exit_code,
            dir,
            timeline: outcome.run.send.timeline.clone(),
        }
    }
}

/// A variant's runs, in round order, and their latencies pooled.
#[derive(Debug, Default)]
pub struct VariantRuns {
    pub runs: Vec<RunNumbers>,
    pub latency: LatencyHistogram,
}

/// The measures compared, each read from a run.
struct Measure {
    key: &'static str,
    label: &'static str,
    read: fn(&RunNumbers) -> Option<f64>,
    show: fn(f64) -> String,
}

const MEASURES: [Measure; 4] = [
    Measure {
        key: "parsed_eps",
        label: "parsed/s",
        read: |r| Some(r.parsed_eps),
        show: |v| format!("{:.0} k", v / 1e3),
    },
    Measure {
        key: "cpu_us_per_event",
        label: "CPU per event",
        read: |r| r.cpu_us_per_event,
        show: |v| format!("{v:.3} us"),
    },
    Measure {
        key: "latency_p50_us",
        label: "harness p50",
        read: |r| r.latency.as_ref().map(|l| l.p50_us as f64),
        show: |v| human_us(v.round() as u64),
    },
    Measure {
        key: "latency_p99_us",
        label: "harness p99",
        read: |r| r.latency.as_ref().map(|l| l.p99_us as f64),
        show: |v| human_us(v.round() as u64),
    },
];

/// The ratio of `other`'s run to `base`'s in each round both ran (in
/// round order), for one measure; a round where either lacks the measure
/// (or `base`'s is zero) has none.
fn round_ratios(base: &[RunNumbers], other: &[RunNumbers], measure: &Measure) -> Vec<Option<f64>> {
    other
        .iter()
        .map(|o| {
            let b = base.iter().find(|b| b.round == o.round)?;
            let (b, o) = ((measure.read)(b)?, (measure.read)(o)?);
            (b > 0.0).then(|| o / b)
        })
        .collect()
}

/// Adds the comparison to `report`: every run, each variant's medians
/// (with the smallest and largest), and every other variant against the
/// first by the median of their ratios within rounds; the latency CDF of
/// each variant's runs pooled, and each run's send rate over time.
pub fn add_to_report(
    variants: &[Variant],
    results: &[VariantRuns],
    rounds: usize,
    bench_line: &str,
    report: &mut Report,
) {
    report.summary.push(format!(
        "compare: {rounds} round(s) of {} variant(s), the order rotated each round; each run is `{bench_line}`",
        variants.len()
    ));
    for variant in variants {
        let config = variant
            .config
            .as_ref()
            .map(|c| format!(" with --appliance-config {}", c.display()))
            .unwrap_or_default();
        let steer = if variant.steer_loopback {
            ", loopback's receive work steered to the harness's CPUs (--steer-loopback)"
        } else {
            ""
        };
        report.summary.push(format!(
            "variant {}: {}{config}{steer}",
            variant.name,
            variant.binary.display()
        ));
    }
    for round in 1..=rounds {
        let mut cells: Vec<(usize, String)> = Vec::new();
        for (variant, result) in variants.iter().zip(results) {
            if let Some(run) = result.runs.iter().find(|r| r.round == round) {
                let mut cell = format!("{} {:.0} k/s", variant.name, run.parsed_eps / 1e3);
                if let Some(cpu) = run.cpu_us_per_event {
                    cell.push_str(&format!(", {cpu:.3} us/event"));
                }
                if let Some(l) = &run.latency {
                    cell.push_str(&format!(", p99 {}", human_us(l.p99_us)));
                }
                if run.lost_before_receive > 0 {
                    cell.push_str(&format!(", {} lost", run.lost_before_receive));
                }
                cells.push((run.position, cell));
            }
        }
        cells.sort_by_key(|(position, _)| *position);
        let cells: Vec<String> = cells.into_iter().map(|(_, c)| c).collect();
        report
            .summary
            .push(format!("round {round}: {}", cells.join(" | ")));
    }
    let mut body_variants = Vec::new();
    for (variant, result) in variants.iter().zip(results) {
        let mut medians = serde_json::Map::new();
        let mut parts = Vec::new();
        for m in &MEASURES {
            let values: Vec<f64> = result.runs.iter().filter_map(m.read).collect();
            let Some(mid) = median(&values) else { continue };
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            medians.insert(
                m.key.into(),
                json!({ "median": mid, "min": low, "max": high, "runs": values.len() }),
            );
            parts.push(format!(
                "{} {} ({}–{})",
                m.label,
                (m.show)(mid),
                (m.show)(low),
                (m.show)(high)
            ));
        }
        let recalls: Vec<f64> = result.runs.iter().filter_map(|r| r.recall).collect();
        if let Some(low) = recalls.iter().copied().reduce(f64::min) {
            parts.push(format!("recall at least {low:.3}"));
        }
        let lost: u64 = result.runs.iter().map(|r| r.lost_before_receive).sum();
        if lost > 0 {
            parts.push(format!("{lost} lost before receive over its runs"));
        }
        report.summary.push(format!(
            "{}: medians over {} run(s): {}",
            variant.name,
            result.runs.len(),
            parts.join(", ")
        ));
        body_variants.push(json!({
            "name": variant.name,
            "binary": variant.binary.display().to_string(),
            "config": variant.config.as_ref().map(|c| c.display().to_string()),
            "steer_loopback": variant.steer_loopback,
            "runs": result.runs,
            "medians": medians,
            "latency_pooled": result.latency.summary(),
        }));
        for run in &result.runs {
            report.throughput.push(crate::send::timeline_series(
                format!("{} round {}", variant.name, run.round),
                &run.timeline,
            ));
        }
        report
            .cdf
            .push(result.latency.cdf_series(variant.name.clone()));
    }
    let mut body_ratios = Vec::new();
    if let Some((base_variant, base)) = variants.iter().zip(results).next() {
        for (variant, result) in variants.iter().zip(results).skip(1) {
            let mut parts = Vec::new();
            let mut by_measure = serde_json::Map::new();
            for m in &MEASURES {
                let ratios = round_ratios(&base.runs, &result.runs, m);
                let present: Vec<f64> = ratios.iter().flatten().copied().collect();
                let Some(mid) = median(&present) else {
                    continue;
                };
                let shown: Vec<String> = ratios
                    .iter()
                    .map(|r| r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}")))
                    .collect();
                parts.push(format!(
                    "{} {} (median {mid:.3})",
                    m.label,
                    shown.join(" / ")
                ));
                by_measure.insert(m.key.into(), json!({ "per_round": ratios, "median": mid }));
            }
            report.summary.push(format!(
                "{} / {} within each round: {}",
                variant.name,
                base_variant.name,
                parts.join("; ")
            ));
            body_ratios.push(json!({
                "variant": variant.name,
                "against": base_variant.name,
                "ratios": by_measure,
            }));
        }
    }
    report.body.insert(
        "compare".into(),
        json!({
            "rounds": rounds,
            "bench": bench_line,
            "variants": body_variants,
            "ratios": body_ratios,
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_with_and_without_a_config() {
        assert_eq!(
            parse_variant("base=/tmp/sw").unwrap(),
            Variant {
                name: "base".into(),
                binary: "/tmp/sw".into(),
                config: None,
                steer_loopback: false,
            }
        );
        let v = parse_variant("lo=/tmp/sw@/tmp/c.toml+steer-loopback").unwrap();
        assert_eq!(
            (v.binary, v.config, v.steer_loopback),
            ("/tmp/sw".into(), Some("/tmp/c.toml".into()), true)
        );
        let v = parse_variant("lo=/tmp/sw+steer-loopback").unwrap();
        assert_eq!(
            (v.binary, v.config, v.steer_loopback),
            ("/tmp/sw".into(), None, true)
        );
        assert!(parse_variant("lo=+steer-loopback").is_err());
        assert_eq!(
            parse_variant("lo=/tmp/sw+steer").unwrap().binary,
            PathBuf::from("/tmp/sw+steer")
        );
        let v = parse_variant("no-journal=target/release/shardwatch@/tmp/a@b.toml").unwrap();
        assert_eq!(v.binary, PathBuf::from("target/release/shardwatch@/tmp/a"));
        assert_eq!(v.config, Some(PathBuf::from("b.toml")));
        for bad in [
            "",
            "base",
            "=/tmp/sw",
            "base=",
            "base=/tmp/sw@",
            "a b=/x",
            "base=@x.toml",
            "012345678901234567890123456789012=/x",
        ] {
            assert!(parse_variant(bad).is_err(), "{bad:?}");
        }
        let a = parse_variant("a=/x").unwrap();
        let b = parse_variant("b=/x@c.toml").unwrap();
        assert!(check_variants(&[a.clone(), b.clone()]).is_ok());
        assert!(check_variants(&[a.clone(), a.clone()]).is_err());
        assert!(check_variants(&[]).is_err());
        assert!(check_variants(&vec![a; VARIANTS_MAX + 1]).is_err());
    }

    #[test]
    fn each_variant_runs_first_in_turn() {
        assert_eq!(round_order(3, 0), vec![0, 1, 2]);
        assert_eq!(round_order(3, 1), vec![1, 2, 0]);
        assert_eq!(round_order(3, 2), vec![2, 0, 1]);
        assert_eq!(round_order(3, 3), vec![0, 1, 2]);
        assert_eq!(round_order(1, 5), vec![0]);
        for round in 0..6 {
            let mut order = round_order(4, round);
            order.sort_unstable();
            assert_eq!(order, vec![0, 1, 2, 3]);
        }
    }

    #[test]
    fn medians_of_odd_even_and_empty_lists() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0, f64::INFINITY]), Some(2.0));
    }

    fn run(round: usize, position: usize, eps: f64, p99_us: Option<u64>) -> RunNumbers {
        RunNumbers {
            round,
            position,
            parsed_eps: eps,
            cpu_us_per_event: Some(1e6 / eps),
            latency: p99_us.map(|p99_us| LatencySummary {
                count: 1,
                p50_us: p99_us / 2,
                p99_us,
                ..LatencySummary::default()
            }),
            recall: Some(1.0),
            ..RunNumbers::default()
        }
    }

    #[test]
    fn ratios_pair_runs_of_the_same_round() {
        let base = vec![run(1, 1, 100.0, Some(1000)), run(2, 2, 200.0, None)];
        let other = vec![run(2, 1, 300.0, Some(500)), run(1, 2, 50.0, Some(2000))];
        let eps = round_ratios(&base, &other, &MEASURES[0]);
        assert_eq!(eps, vec![Some(1.5), Some(0.5)]);
        // Round 2's base has no latency: no ratio for that round.
        assert_eq!(
            round_ratios(&base, &other, &MEASURES[3]),
            vec![None, Some(2.0)]
        );
        // A round the base did not run has none.
        assert_eq!(
            round_ratios(&base[..1], &other, &MEASURES[0]),
            vec![None, Some(0.5)]
        );
    }

    #[test]
    fn the_report_lists_rounds_in_run_order_and_the_median_ratio() {
        let variants = vec![
            parse_variant("base=/a").unwrap(),
            parse_variant("head=/b@/c.toml").unwrap(),
        ];
        let results = vec![
            VariantRuns {
                runs: vec![
                    run(1, 1, 1e6, None),
                    run(2, 2, 2e6, None),
                    run(3, 1, 1.5e6, None),
                ],
                ..VariantRuns::default()
            },
            VariantRuns {
                runs: vec![
                    run(1, 2, 1.1e6, None),
                    run(2, 1, 1.8e6, None),
                    run(3, 2, 1.8e6, None),
                ],
                ..VariantRuns::default()
            },
        ];
        let mut report = Report::new("compare");
        add_to_report(&variants, &results, 3, "bench --rate max", &mut report);
        let text = report.summary.join("\n");
        assert!(text.contains("round 2: head 1800 k/s"), "{text}");
        assert!(text.contains("round 1: base 1000 k/s"), "{text}");
        assert!(
            text.contains("variant head: /b with --appliance-config /c.toml"),
            "{text}"
        );
        assert!(
            text.contains(
                "head / base within each round: parsed/s 1.10 / 0.90 / 1.20 (median 1.100)"
            ),
            "{text}"
        );
        let compare = &report.body["compare"];
        assert_eq!(
            compare["variants"][0]["medians"]["parsed_eps"]["median"],
            1.5e6
        );
        assert_eq!(compare["variants"][1]["runs"][1]["position"], 1);
        assert_eq!(compare["ratios"][0]["ratios"]["parsed_eps"]["median"], 1.1);
        assert!(compare["ratios"][0]["ratios"]
            .get("latency_p99_us")
            .is_none());
        assert_eq!(report.cdf.len(), 2);
        assert_eq!(report.throughput.len(), 6);
    }
}
