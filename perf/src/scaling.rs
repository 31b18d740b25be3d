//! `scaling`: the same bench at several core counts, in rounds, and events
//! per second against cores: a table, and `scaling.svg` with the measured
//! medians beside a line that scales linearly from the fewest cores.
//!
//! Each round runs every core count once, the order rotated from round to
//! round (as `compare` does), so that a machine whose speed drifts hits
//! them alike; each count's number is the median of its rounds. A node
//! with `c` cores gets `c × --connections-per-core` connections (or UDP
//! sockets), so every core has a share of the load to read.

use serde::Serialize;
use serde_json::json;

use crate::compare::median;
use crate::report::Report;
use crate::svg::{self, Series};

/// Most core counts one command measures.
pub const COUNTS_MAX: usize = 8;
/// Largest core count accepted (the appliance's own limit is its CPUs).
pub const CORES_MAX: usize = 256;

/// Parses `--cores`: core counts separated by commas, each from 1 to
/// [`CORES_MAX`], ascending, each once, at most [`COUNTS_MAX`].
pub fn parse_core_counts(text: &str) -> Result<Vec<usize>, String> {
    let mut counts: Vec<usize> = Vec::new();
    for part in text.split(',').map(str::trim) {
        let n: usize = part
            .parse()
            .map_err(|_| format!("{part:?} is not a core count"))?;
        if n == 0 || n > CORES_MAX {
            return Err(format!("a core count is from 1 to {CORES_MAX}, not {n}"));
        }
        if counts.last().is_some_and(|&last| n <= last) {
            return Err(format!(
                "core counts go up, each once: {n} after {}",
                counts.last().copied().unwrap_or_default()
            ));
        }
        counts.push(n);
    }
    if counts.len() > COUNTS_MAX {
        return Err(format!("at most {COUNTS_MAX} core counts"));
    }
    Ok(counts)
}

/// The runs of one core count.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CountRuns {
    pub cores: usize,
    /// Events per second of each round (processed, see `goals`).
    pub eps: Vec<f64>,
    /// The appliance's CPU per event in each round, where measured.
    pub cpu_us_per_event: Vec<f64>,
    /// Each round's own report.
    pub dirs: Vec<String>,
}

/// What a core count reached against the fewest cores measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub cores: usize,
    pub eps_median: f64,
    /// `eps_median` over the first row's.
    pub speedup: f64,
    /// `speedup` over the ratio of cores (1.0: linear).
    pub efficiency: f64,
    pub cpu_us_per_event_median: Option<f64>,
}

/// The rows, the first being the fewest cores; `None` when a count has
/// no run with a rate.
pub fn rows(counts: &[CountRuns]) -> Option<Vec<Row>> {
    let first = counts.first()?;
    let base = median(&first.eps)?;
    if base <= 0.0 {
        return None;
    }
    counts
        .iter()
        .map(|c| {
            let eps = median(&c.eps)?;
            let speedup = eps / base;
            Some(Row {
                cores: c.cores,
                eps_median: eps,
                speedup,
                efficiency: speedup / (c.cores as f64 / first.cores as f64),
                cpu_us_per_event_median: median(&c.cpu_us_per_event),
            })
        })
        .collect()
}

/// The plot: measured medians, and linear scaling from the first count.
pub fn plot(rows: &[Row]) -> String {
    let measured = Series {
        label: "measured (median)".into(),
        points: rows
            .iter()
            .map(|r| (r.cores as f64, r.eps_median))
            .collect(),
    };
    let linear = rows.first().map(|first| Series {
        label: format!("linear from {} core(s)", first.cores),
        points: rows
            .iter()
            .map(|r| {
                (
                    r.cores as f64,
                    first.eps_median * r.cores as f64 / first.cores as f64,
                )
            })
            .collect(),
    });
    let series: Vec<Series> = std::iter::once(measured).chain(linear).collect();
    svg::line_chart("Events per second by cores", "cores", "events/s", &series)
}

/// Adds the table, the plot and every round to `report`. `what` says what
/// each run was and on how many CPUs.
pub fn add_to_report(what: &str, counts: &[CountRuns], report: &mut Report) {
    report.summary.push(what.to_string());
    let rows = rows(counts);
    match &rows {
        Some(rows) => {
            report.summary.push(
                "cores  events/s (median)  speedup  efficiency  CPU µs/event  rounds (events/s)"
                    .into(),
            );
            for (row, count) in rows.iter().zip(counts) {
                report.summary.push(format!(
                    "{:>5}  {:>17.0}  {:>7.2}  {:>10.2}  {:>12}  {}",
                    row.cores,
                    row.eps_median,
                    row.speedup,
                    row.efficiency,
                    row.cpu_us_per_event_median
                        .map_or("-".to_string(), |c| format!("{c:.3}")),
                    count
                        .eps
                        .iter()
                        .map(|e| format!("{:.0}", e))
                        .collect::<Vec<_>>()
                        .join(" / ")
                ));
            }
            report.extra_files.push(("scaling.svg".into(), plot(rows)));
        }
        None => report
            .summary
            .push("no rate measured at the fewest cores: no table or plot".into()),
    }
    report
        .body
        .insert("scaling".into(), json!({ "counts": counts, "rows": rows }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_counts_go_up_each_once_within_bounds() {
        assert_eq!(parse_core_counts("1,2,4").unwrap(), vec![1, 2, 4]);
        assert_eq!(parse_core_counts(" 2 ").unwrap(), vec![2]);
        assert!(parse_core_counts("2,1").is_err());
        assert!(parse_core_counts("1,1").is_err());
        assert!(parse_core_counts("0,1").is_err());
        assert!(parse_core_counts("1,x").is_err());
        assert!(parse_core_counts("1,2,3,4,5,6,7,8,9").is_err());
        assert!(parse_core_counts(&format!("{}", CORES_MAX + 1)).is_err());
    }

    fn count(cores: usize, eps: &[f64]) -> CountRuns {
        CountRuns {
            cores,
            eps: eps.to_vec(),
            cpu_us_per_event: vec![1.0; eps.len()],
            dirs: Vec::new(),
        }
    }

    #[test]
    fn speedup_and_efficiency_are_against_the_fewest_cores() {
        let rows = rows(&[
            count(2, &[90.0, 100.0, 110.0]),
            count(4, &[150.0, 160.0, 170.0]),
            count(8, &[400.0]),
        ])
        .unwrap();
        assert_eq!(rows[0].speedup, 1.0);
        assert_eq!(rows[0].efficiency, 1.0);
        assert_eq!(rows[1].eps_median, 160.0);
        assert!((rows[1].speedup - 1.6).abs() < 1e-12);
        assert!((rows[1].efficiency - 0.8).abs() < 1e-12);
        // Four times the cores, four times the rate: linear.
        assert!((rows[2].efficiency - 1.0).abs() < 1e-12);
        assert_eq!(rows[2].cpu_us_per_event_median, Some(1.0));
    }

    #[test]
    fn no_rate_at_the_fewest_cores_gives_no_rows() {
        assert!(rows(&[]).is_none());
        assert!(rows(&[count(1, &[]), count(2, &[5.0])]).is_none());
        assert!(rows(&[count(1, &[0.0]), count(2, &[5.0])]).is_none());
    }

    #[test]
    fn the_report_has_a_row_per_count_and_the_plot() {
        let counts = [count(1, &[100.0, 120.0]), count(2, &[180.0, 200.0])];
        let mut report = Report::new("scaling");
        add_to_report("tcp flat out", &counts, &mut report);
        assert_eq!(report.summary[0], "tcp flat out");
        assert!(report.summary[2].trim_start().starts_with("1 "));
        assert!(report.summary[3].trim_start().starts_with("2 "));
        assert!(report.summary[3].contains("1.73"), "{:?}", report.summary);
        let (name, svg) = &report.extra_files[0];
        assert_eq!(name, "scaling.svg");
        assert!(svg.contains("measured (median)"));
        assert!(svg.contains("linear from 1 core(s)"));
        assert_eq!(report.body["scaling"]["rows"][1]["cores"], 2);
    }
}
