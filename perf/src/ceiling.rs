//! `ceiling`: the highest paced rate at which a bench still meets a
//! criterion, found by bisection, the way RFC 2544's throughput test looks
//! for the highest rate without loss.
//!
//! A flat-out run says what the node does when it is behind, and over UDP
//! it also measures the sender: once the harness's sender outruns the node
//! a flat-out run loses datagrams, and whether it does says more about the
//! sender that day than about the node. The ceiling answers the question
//! a network team asks instead: up to what steady rate does nothing get
//! lost (`loss`), or does detection stay under a latency bound
//! (`p99:DURATION`)?
//!
//! The search:
//!
//! 1. Without `--high`, a flat-out run measures the upper bound (the rate
//!    its sender reached). If that run meets the criterion, the ceiling is
//!    the sender's and no search runs.
//! 2. Each trial sends at the middle of the bounds for a few seconds. A
//!    trial that meets the criterion raises the lower bound to its rate;
//!    one that does not lowers the upper bound. The search ends when the
//!    bounds are within `--resolution` of the upper one, or after
//!    `--trials`.
//! 3. The highest rate that met it is run `--confirm` more times; the
//!    report says how many of those met it too (a trial is one sample of a
//!    noisy machine).
//!
//! Every criterion also asks that nothing was lost or dropped, that the
//! node exited cleanly, and that the sender kept its schedule (within
//! [`SENDER_SLACK`]): a paced TCP sender that falls behind is being held
//! back by the node.

use serde::Serialize;
use serde_json::json;

use crate::compare::RunNumbers;
use crate::hist::human_us;
use crate::report::Report;
use crate::svg::Series;

/// How far below the asked rate a trial's sender may stay and still count
/// as on schedule.
pub const SENDER_SLACK: f64 = 0.03;
/// Most trials of one search.
pub const TRIALS_MAX: u64 = 30;

/// What each trial must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Criterion {
    /// Nothing lost or dropped, the sender on schedule.
    Loss,
    /// That, and the harness's detection p99 under this many microseconds.
    P99UnderUs(u64),
}

/// Parses `--criterion`: `loss`, or `p99:DURATION` with DURATION in
/// `us`, `ms` or `s` (`p99:1ms`, `p99:800us`).
pub fn parse_criterion(text: &str) -> Result<Criterion, String> {
    let text = text.trim();
    if text == "loss" {
        return Ok(Criterion::Loss);
    }
    let bound = text
        .strip_prefix("p99:")
        .ok_or_else(|| format!("{text:?}: the criterion is `loss` or `p99:DURATION`"))?;
    let (number, scale) = if let Some(n) = bound.strip_suffix("us") {
        (n, 1)
    } else if let Some(n) = bound.strip_suffix("ms") {
        (n, 1_000)
    } else if let Some(n) = bound.strip_suffix('s') {
        (n, 1_000_000)
    } else {
        return Err(format!(
            "{bound:?}: a duration ends in `us`, `ms` or `s` (`p99:1ms`)"
        ));
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{bound:?}: a whole number, then `us`, `ms` or `s`"))?;
    match value.checked_mul(scale) {
        Some(us) if us > 0 => Ok(Criterion::P99UnderUs(us)),
        _ => Err(format!("{bound:?}: out of range (above 0)")),
    }
}

impl Criterion {
    pub fn describe(&self) -> String {
        match self {
            Criterion::Loss => "nothing lost or dropped, the sender on schedule, a clean exit".into(),
            Criterion::P99UnderUs(us) => format!(
                "detection p99 under {}, nothing lost or dropped, the sender on schedule, a clean exit",
                human_us(*us)
            ),
        }
    }
}

/// One run of the search.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trial {
    /// The paced rate asked for; `None` for the flat-out run.
    pub rate_eps: Option<f64>,
    pub sent: u64,
    pub sent_eps: f64,
    pub lost_before_receive: u64,
    pub dropped: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub recall: Option<f64>,
    pub cpu_us_per_event: Option<f64>,
    pub cpus_busy: Option<f64>,
    pub met: bool,
    /// Why it did not meet the criterion (empty when it did).
    pub why: String,
    pub dir: String,
    /// Events sent per [`crate::send::TIMELINE_BUCKET_NS`], for the plot.
    #[serde(skip)]
    pub timeline: Vec<u64>,
}

impl Trial {
    /// The trial of a bench run at `rate_eps` (`None`: flat out), judged.
    pub fn judged(criterion: Criterion, rate_eps: Option<f64>, run: &RunNumbers) -> Trial {
        let mut trial = Trial {
            rate_eps,
            sent: run.sent,
            sent_eps: run.sent_eps,
            lost_before_receive: run.lost_before_receive,
            dropped: run.dropped,
            p50_us: run.latency.as_ref().map(|l| l.p50_us),
            p99_us: run.latency.as_ref().map(|l| l.p99_us),
            recall: run.recall,
            cpu_us_per_event: run.cpu_us_per_event,
            cpus_busy: run.cpus_busy,
            met: false,
            why: String::new(),
            dir: run.dir.display().to_string(),
            timeline: run.timeline.clone(),
        };
        let mut why = Vec::new();
        if let Some(rate) = rate_eps {
            if trial.sent_eps < rate * (1.0 - SENDER_SLACK) {
                why.push(format!(
                    "sent at {:.0} k/s, behind the {:.0} k/s asked",
                    trial.sent_eps / 1e3,
                    rate / 1e3
                ));
            }
        }
        if trial.lost_before_receive > 0 {
            why.push(format!(
                "{} lost before the appliance read them",
                trial.lost_before_receive
            ));
        }
        if trial.dropped > 0 {
            why.push(format!("{} dropped by the appliance", trial.dropped));
        }
        if run.exit_code != Some(0) {
            why.push(format!(
                "the appliance exited {}",
                run.exit_code
                    .map_or_else(|| "on a signal".to_string(), |c| format!("with {c}"))
            ));
        }
        if let Criterion::P99UnderUs(bound) = criterion {
            match trial.p99_us {
                None => why.push("nothing detected, so no p99".into()),
                Some(p99) if p99 >= bound => why.push(format!(
                    "p99 {}, not under {}",
                    human_us(p99),
                    human_us(bound)
                )),
                Some(_) => {}
            }
        }
        trial.met = why.is_empty();
        trial.why = why.join("; ");
        trial
    }

    pub fn line(&self) -> String {
        let rate = self
            .rate_eps
            .map_or_else(|| "flat out".to_string(), |r| format!("{:.0} k/s", r / 1e3));
        format!(
            "{rate}: {}; sent {} at {:.0} k/s, lost {}, dropped {}, p50 {}, p99 {}, CPU {} per event, {} CPUs busy{}",
            if self.met { "met" } else { "NOT met" },
            self.sent,
            self.sent_eps / 1e3,
            self.lost_before_receive,
            self.dropped,
            self.p50_us.map_or_else(|| "n/a".into(), human_us),
            self.p99_us.map_or_else(|| "n/a".into(), human_us),
            self.cpu_us_per_event
                .map_or_else(|| "n/a".into(), |c| format!("{c:.2} us")),
            self.cpus_busy
                .map_or_else(|| "n/a".into(), |c| format!("{c:.2}")),
            if self.why.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.why)
            }
        )
    }
}

/// Checks a search's lower bound, its upper one where given, and its
/// resolution.
pub fn check_search(low: f64, high: Option<f64>, resolution: f64) -> Result<(), String> {
    if !(low.is_finite() && low >= 0.0) {
        return Err(format!("the lower bound {low}: 0 or more events/s"));
    }
    if let Some(high) = high {
        if !(high.is_finite() && low < high) {
            return Err(format!(
                "the search needs its lower bound below its upper one (low {low}, high {high})"
            ));
        }
    }
    if !(resolution > 0.0 && resolution < 1.0) {
        return Err(format!(
            "resolution {resolution}: a fraction between 0 and 1"
        ));
    }
    Ok(())
}

/// The bounds of the search, narrowed by each trial.
#[derive(Debug, Clone)]
pub struct Bisection {
    low: f64,
    high: f64,
    resolution: f64,
    trials_left: u64,
}

impl Bisection {
    /// A search between `low` and `high` events/s (`low < high`), done when
    /// the bounds are within `resolution` (a fraction) of the upper one or
    /// after `trials`.
    pub fn new(low: f64, high: f64, resolution: f64, trials: u64) -> Result<Bisection, String> {
        check_search(low, Some(high), resolution)?;
        Ok(Bisection {
            low,
            high,
            resolution,
            trials_left: trials,
        })
    }

    /// The next rate to try (whole events/s), or `None` when done.
    pub fn next(&self) -> Option<f64> {
        if self.trials_left == 0 || self.high - self.low <= self.resolution * self.high {
            return None;
        }
        let rate = ((self.low + self.high) / 2.0).round();
        // Bounds a whole event apart have nothing left between them.
        (rate > self.low && rate < self.high).then_some(rate)
    }

    /// Narrows the bounds by a trial at `rate`.
    pub fn record(&mut self, rate: f64, met: bool) {
        if met {
            self.low = self.low.max(rate);
        } else {
            self.high = self.high.min(rate);
        }
        self.trials_left = self.trials_left.saturating_sub(1);
    }
}

/// The highest rate among `trials` that met the criterion.
pub fn best_rate(trials: &[Trial]) -> Option<f64> {
    trials
        .iter()
        .filter(|t| t.met)
        .filter_map(|t| t.rate_eps)
        .max_by(f64::total_cmp)
}

/// What a search found, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub criterion: Criterion,
    /// The flat-out run that set the upper bound (absent with `--high`).
    pub flat_out: Option<Trial>,
    /// The search's bounds when it started.
    pub low_eps: f64,
    pub high_eps: f64,
    pub resolution: f64,
    pub trials: Vec<Trial>,
    /// More runs at the ceiling.
    pub confirm: Vec<Trial>,
    /// The highest paced rate that met the criterion; `None` when none did
    /// (or, with `sender_bound`, when the flat-out run already did).
    pub ceiling_eps: Option<f64>,
    /// The flat-out run met the criterion: the ceiling is the sender's.
    pub sender_bound: bool,
}

impl Outcome {
    pub fn add_to_report(&self, heading: &str, report: &mut Report) {
        report.summary.push(heading.to_string());
        report.summary.push(format!(
            "criterion: {}; search between {:.0} and {:.0} k/s to {:.0}%",
            self.criterion.describe(),
            self.low_eps / 1e3,
            self.high_eps / 1e3,
            self.resolution * 100.0
        ));
        if let Some(flat) = &self.flat_out {
            report.summary.push(format!("upper bound: {}", flat.line()));
        }
        for (i, t) in self.trials.iter().enumerate() {
            report
                .summary
                .push(format!("trial {}: {}", i + 1, t.line()));
        }
        for (i, t) in self.confirm.iter().enumerate() {
            report
                .summary
                .push(format!("confirm {}: {}", i + 1, t.line()));
        }
        report.summary.push(self.verdict_line());
        report.body.insert("ceiling".into(), json!(self));
        let runs = self
            .flat_out
            .iter()
            .chain(&self.trials)
            .chain(&self.confirm);
        for t in runs {
            let rate = t
                .rate_eps
                .map_or_else(|| "flat out".to_string(), |r| format!("{:.0} k/s", r / 1e3));
            report
                .throughput
                .push(crate::send::timeline_series(rate, &t.timeline));
        }
        // p99 against the paced rate, every paced run in rate order.
        let mut p99: Vec<(f64, f64)> = self
            .trials
            .iter()
            .chain(&self.confirm)
            .filter_map(|t| Some((t.rate_eps? / 1e3, t.p99_us? as f64 / 1e3)))
            .collect();
        p99.sort_by(|a, b| a.0.total_cmp(&b.0));
        if p99.len() >= 2 {
            report.extra_files.push((
                "p99_by_rate.svg".into(),
                crate::svg::line_chart(
                    "Detection p99 by paced rate",
                    "paced rate (k events/s)",
                    "p99 (ms)",
                    &[Series {
                        label: "p99".into(),
                        points: p99,
                    }],
                ),
            ));
        }
    }

    pub fn verdict_line(&self) -> String {
        if self.sender_bound {
            let flat = self.flat_out.as_ref().map_or(0.0, |f| f.sent_eps);
            return format!(
                "ceiling: the sender's, {:.0} k/s: the flat-out run met the criterion, so no search ran",
                flat / 1e3
            );
        }
        match self.ceiling_eps {
            Some(rate) => format!(
                "ceiling: {:.0} k/s ({:.0}% of the upper bound {:.0} k/s); confirmed in {} of {} more run(s) at that rate",
                rate / 1e3,
                100.0 * rate / self.high_eps,
                self.high_eps / 1e3,
                self.confirm.iter().filter(|t| t.met).count(),
                self.confirm.len()
            ),
            None => format!(
                "ceiling: none found; no rate tried met the criterion (the lowest tried: {})",
                self.trials
                    .iter()
                    .filter_map(|t| t.rate_eps)
                    .min_by(f64::total_cmp)
                    .map_or_else(|| "none".into(), |r| format!("{:.0} k/s", r / 1e3))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::LatencySummary;

    fn run(sent_eps: f64, lost: u64, p99_us: Option<u64>) -> RunNumbers {
        RunNumbers {
            exit_code: Some(0),
            sent: 1_000,
            sent_eps,
            lost_before_receive: lost,
            latency: p99_us.map(|p99_us| LatencySummary {
                count: 10,
                p50_us: p99_us / 2,
                p99_us,
                ..LatencySummary::default()
            }),
            ..RunNumbers::default()
        }
    }

    #[test]
    fn criteria_parse_and_refuse() {
        assert_eq!(parse_criterion("loss"), Ok(Criterion::Loss));
        assert_eq!(parse_criterion("p99:1ms"), Ok(Criterion::P99UnderUs(1_000)));
        assert_eq!(parse_criterion("p99:800us"), Ok(Criterion::P99UnderUs(800)));
        assert_eq!(
            parse_criterion("p99:2s"),
            Ok(Criterion::P99UnderUs(2_000_000))
        );
        for bad in [
            "",
            "p99",
            "p99:",
            "p99:1",
            "p99:0ms",
            "p99:1.5ms",
            "p50:1ms",
            "lost",
        ] {
            assert!(parse_criterion(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_trial_meets_the_criterion_only_with_every_part_of_it() {
        let loss = Criterion::Loss;
        let p99 = Criterion::P99UnderUs(1_000);
        assert!(Trial::judged(loss, Some(100_000.0), &run(99_000.0, 0, None)).met);
        // Behind its schedule by more than the slack.
        let t = Trial::judged(loss, Some(100_000.0), &run(90_000.0, 0, None));
        assert!(!t.met && t.why.contains("behind"), "{}", t.why);
        let t = Trial::judged(loss, Some(100_000.0), &run(100_000.0, 3, None));
        assert!(!t.met && t.why.contains("3 lost"), "{}", t.why);
        let mut dropped = run(100_000.0, 0, None);
        dropped.dropped = 2;
        let t = Trial::judged(loss, Some(100_000.0), &dropped);
        assert!(!t.met && t.why.contains("2 dropped"), "{}", t.why);
        let mut crashed = run(100_000.0, 0, None);
        crashed.exit_code = None;
        let t = Trial::judged(loss, Some(100_000.0), &crashed);
        assert!(!t.met && t.why.contains("exited on a signal"), "{}", t.why);
        // The flat-out run has no schedule to keep.
        assert!(Trial::judged(loss, None, &run(5.0, 0, None)).met);
        assert!(Trial::judged(p99, Some(1e5), &run(1e5, 0, Some(999))).met);
        let t = Trial::judged(p99, Some(1e5), &run(1e5, 0, Some(1_000)));
        assert!(!t.met && t.why.contains("not under"), "{}", t.why);
        let t = Trial::judged(p99, Some(1e5), &run(1e5, 0, None));
        assert!(!t.met && t.why.contains("nothing detected"), "{}", t.why);
        // Every reason is given.
        let t = Trial::judged(p99, Some(1e5), &run(5e4, 7, Some(5_000)));
        assert_eq!(t.why.matches("; ").count(), 2, "{}", t.why);
    }

    /// Runs a search against a node that meets the criterion up to `limit`.
    fn search(limit: f64, high: f64, trials: u64) -> (Vec<f64>, Option<f64>) {
        let mut b = Bisection::new(0.0, high, 0.03, trials).unwrap();
        let (mut rates, mut met) = (Vec::new(), Vec::new());
        while let Some(rate) = b.next() {
            rates.push(rate);
            let ok = rate <= limit;
            b.record(rate, ok);
            met.push(Trial {
                rate_eps: Some(rate),
                met: ok,
                ..Trial::default()
            });
        }
        (rates, best_rate(&met))
    }

    #[test]
    fn bisection_closes_in_on_the_limit() {
        let (rates, best) = search(412_000.0, 550_000.0, 30);
        assert_eq!(rates[..3], [275_000.0, 412_500.0, 343_750.0]);
        let best = best.unwrap();
        assert!(
            (412_000.0 - 0.03 * 550_000.0..=412_000.0).contains(&best),
            "{best}"
        );
        // It stops at the resolution, not at the trial limit.
        assert!(rates.len() < 10, "{rates:?}");
        // A limit above every rate tried: each trial raises the lower bound.
        let (rates, best) = search(1e9, 100_000.0, 30);
        assert!(rates.windows(2).all(|w| w[0] < w[1]), "{rates:?}");
        assert_eq!(best, rates.last().copied());
        // Nothing meets it: no ceiling, the rates fall.
        let (rates, best) = search(0.0, 100_000.0, 4);
        assert_eq!(rates, [50_000.0, 25_000.0, 12_500.0, 6_250.0]);
        assert_eq!(best, None);
        // The trial limit holds.
        assert_eq!(search(412_000.0, 550_000.0, 2).0.len(), 2);
    }

    #[test]
    fn bisection_refuses_bad_bounds() {
        // Before any run: without an upper bound yet, the rest is checked.
        assert!(check_search(0.0, None, 0.03).is_ok());
        assert!(check_search(-5.0, None, 0.03).is_err());
        assert!(check_search(0.0, None, 1.5).is_err());
        assert!(check_search(100.0, Some(50.0), 0.03).is_err());
        assert!(Bisection::new(10.0, 10.0, 0.03, 5).is_err());
        assert!(Bisection::new(-1.0, 10.0, 0.03, 5).is_err());
        assert!(Bisection::new(0.0, f64::NAN, 0.03, 5).is_err());
        assert!(Bisection::new(0.0, 10.0, 0.0, 5).is_err());
        assert!(Bisection::new(0.0, 10.0, 1.0, 5).is_err());
        // Bounds one event apart leave nothing to try.
        let b = Bisection::new(10.0, 11.0, 0.001, 5).unwrap();
        assert_eq!(b.next(), None);
    }

    #[test]
    fn the_verdict_line_says_what_was_found() {
        let trial = |rate: f64, met: bool| Trial {
            rate_eps: Some(rate),
            met,
            ..Trial::default()
        };
        let mut outcome = Outcome {
            criterion: Criterion::Loss,
            flat_out: Some(Trial {
                sent_eps: 500_000.0,
                ..Trial::default()
            }),
            low_eps: 0.0,
            high_eps: 500_000.0,
            resolution: 0.03,
            trials: vec![trial(250_000.0, true), trial(375_000.0, false)],
            confirm: vec![trial(250_000.0, true), trial(250_000.0, false)],
            ceiling_eps: Some(250_000.0),
            sender_bound: false,
        };
        let line = outcome.verdict_line();
        assert!(line.contains("250 k/s (50% of"), "{line}");
        assert!(line.contains("confirmed in 1 of 2"), "{line}");
        outcome.ceiling_eps = None;
        assert!(outcome.verdict_line().contains("the lowest tried: 250 k/s"));
        outcome.sender_bound = true;
        assert!(outcome.verdict_line().contains("the sender's, 500 k/s"));
        let mut report = Report::new("ceiling");
        outcome.add_to_report("heading", &mut report);
        assert_eq!(report.summary[0], "heading");
        assert!(report
            .summary
            .iter()
            .any(|l| l.starts_with("trial 2: 375 k/s: NOT met")));
        assert!(report
            .summary
            .iter()
            .any(|l| l.starts_with("confirm 1: 250 k/s: met")));
        assert_eq!(
            report.body["ceiling"]["trials"].as_array().unwrap().len(),
            2
        );
        // Flat out, two trials and two confirmations, each a throughput series.
        assert_eq!(report.throughput.len(), 5);
    }
}
