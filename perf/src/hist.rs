//! Latency histograms and the percentile summary every report uses.
//!
//! Values are recorded in microseconds into an HdrHistogram with three
//! significant digits, so every reported percentile is within 0.1% of the
//! recorded value. Values above [`LATENCY_US_MAX`] are clamped to it and
//! counted, never dropped, so a runaway tail still shows as the maximum.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram holds: one hour. Batch latencies reach tens
/// of minutes, so this leaves headroom without growing the buckets much.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    clamped: u64,
    values_us: Vec<u64>,
}

/// Most raw values kept for the CDF plot; beyond it the plot uses the
/// histogram's own buckets.
pub const PLOT_VALUES_MAX: usize = 100_000;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            hist: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("static histogram bounds are valid"),
            clamped: 0,
            values_us: Vec::new(),
        }
    }
}

/// The percentile summary written to reports.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    /// Values above the histogram's range, recorded as its maximum.
    pub clamped: u64,
}

impl LatencyHistogram {
    /// Records one latency; negative values (clock steps) count as zero.
    pub fn record_us(&mut self, value_us: i64) {
        let mut v = value_us.max(0) as u64;
        if v > LATENCY_US_MAX {
            v = LATENCY_US_MAX;
            self.clamped += 1;
        }
        // A zero latency is real (sub-microsecond) but the histogram starts
        // at one, so it is recorded as 1 us.
        let v = v.max(1);
        self.hist.saturating_record(v);
        if self.values_us.len() < PLOT_VALUES_MAX {
            self.values_us.push(v);
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so adding cannot fail; saturate anyway.
        let _ = self.hist.add(&other.hist);
        self.clamped += other.clamped;
        let room = PLOT_VALUES_MAX.saturating_sub(self.values_us.len());
        self.values_us
            .extend(other.values_us.iter().take(room).copied());
    }

    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.hist.len(),
            min_us: self.hist.min(),
            p50_us: self.hist.value_at_quantile(0.50),
            p90_us: self.hist.value_at_quantile(0.90),
            p99_us: self.hist.value_at_quantile(0.99),
            p999_us: self.hist.value_at_quantile(0.999),
            max_us: self.hist.max(),
            mean_us: self.hist.mean(),
            clamped: self.clamped,
        }
    }

    /// The CDF as a plot's series, labelled `label`.
    pub fn cdf_series(&self, label: String) -> crate::svg::Series {
        crate::svg::Series {
            label,
            points: self.cdf().into_iter().map(|(x, y)| (x as f64, y)).collect(),
        }
    }

    /// Points of the empirical CDF: (latency us, fraction at or below).
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        if self.values_us.len() as u64 == self.hist.len() {
            let mut values = self.values_us.clone();
            values.sort_unstable();
            let n = values.len() as f64;
            return values
                .iter()
                .enumerate()
                .map(|(i, &v)| (v, (i + 1) as f64 / n))
                .collect();
        }
        let total = self.hist.len() as f64;
        self.hist
            .iter_quantiles(4)
            .map(|q| (q.value_iterated_to(), q.count_since_last_iteration() as f64))
            .scan(0.0, |acc, (v, c)| {
                *acc += c;
                Some((v, *acc / total))
            })
            .collect()
    }
}

/// Human form of a microsecond latency: `850 us`, `12.3 ms`, `4.1 s`, `3.2 min`.
pub fn human_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us} us"),
        1_000..=999_999 => format!("{:.1} ms", us as f64 / 1e3),
        1_000_000..=119_999_999 => format!("{:.1} s", us as f64 / 1e6),
        _ => format!("{:.1} min", us as f64 / 60e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = LatencyHistogram::default();
        for v in 1..=10_000 {
            h.record_us(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        // Three significant digits: within 0.1% of the exact rank value.
        let close =
            |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(close(s.p50_us, 5_000), "{}", s.p50_us);
        assert!(close(s.p90_us, 9_000), "{}", s.p90_us);
        assert!(close(s.p99_us, 9_900), "{}", s.p99_us);
        assert!(close(s.p999_us, 9_990), "{}", s.p999_us);
        assert!(close(s.max_us, 10_000), "{}", s.max_us);
        assert!((s.mean_us - 5_000.5).abs() < 10.0);
        let cdf = h.cdf();
        assert_eq!(cdf.len(), 10_000);
        assert_eq!(cdf.last().unwrap().1, 1.0);
        assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn empty_negative_and_huge_values_are_safe() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.summary(), LatencySummary::default());
        assert!(h.cdf().is_empty());
        h.record_us(-5);
        h.record_us(i64::MAX);
        let s = h.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.min_us, 1);
        assert_eq!(s.clamped, 1);
        assert!(s.max_us >= LATENCY_US_MAX);
        let mut other = LatencyHistogram::default();
        other.record_us(100);
        h.merge(&other);
        assert_eq!(h.summary().count, 3);
    }

    #[test]
    fn human_units() {
        assert_eq!(human_us(850), "850 us");
        assert_eq!(human_us(12_340), "12.3 ms");
        assert_eq!(human_us(4_100_000), "4.1 s");
        assert_eq!(human_us(192_000_000), "3.2 min");
    }
}
