//! Hand-written SVG plots: a latency CDF on a logarithmic axis and a line
//! chart for throughput over time.
//!
//! Plots are small, self-contained SVG files a browser or an issue tracker
//! renders; writing them by hand keeps a plotting crate (and its font and
//! image dependencies) out of the build.

use std::fmt::Write as _;

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Most points drawn per series; longer series are thinned evenly so the
/// file stays small.
pub const POINTS_PER_SERIES_MAX: usize = 2_000;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One labelled series of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= POINTS_PER_SERIES_MAX {
        return points.to_vec();
    }
    let step = points.len() as f64 / POINTS_PER_SERIES_MAX as f64;
    let mut out: Vec<(f64, f64)> = (0..POINTS_PER_SERIES_MAX)
        .map(|i| points[(i as f64 * step) as usize])
        .collect();
    if let Some(&last) = points.last() {
        out.push(last);
    }
    out
}

fn frame(out: &mut String, title: &str, x_label: &str, y_label: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        escape(title)
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        HEIGHT - 12.0,
        escape(x_label)
    );
    let _ = write!(
        out,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
        TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
        escape(y_label)
    );
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        WIDTH - LEFT - RIGHT,
        HEIGHT - TOP - BOTTOM
    );
}

fn legend(out: &mut String, series: &[Series]) {
    for (i, s) in series.iter().enumerate() {
        let y = TOP + 14.0 + i as f64 * 18.0;
        let x = WIDTH - RIGHT + 12.0;
        let color = COLORS[i % COLORS.len()];
        let _ = write!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x + 20.0,
            x + 26.0,
            y + 4.0,
            escape(&s.label)
        );
    }
}

fn polyline(out: &mut String, points: &[(f64, f64)], color: &str, step: bool) {
    if points.is_empty() {
        return;
    }
    out.push_str(r#"<polyline fill="none" stroke-width="1.8" stroke=""#);
    out.push_str(color);
    out.push_str(r#"" points=""#);
    let mut previous_y: Option<f64> = None;
    for &(x, y) in points {
        if step {
            if let Some(py) = previous_y {
                let _ = write!(out, "{x:.1},{py:.1} ");
            }
        }
        let _ = write!(out, "{x:.1},{y:.1} ");
        previous_y = Some(y);
    }
    out.push_str(r#""/>"#);
}

/// Label of a microsecond value on the latency axis.
fn us_label(us: f64) -> String {
    if us >= 60e6 {
        format!("{:.0}min", us / 60e6)
    } else if us >= 1e6 {
        format!("{:.0}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.0}ms", us / 1e3)
    } else {
        format!("{us:.0}us")
    }
}

/// A CDF of latencies (x in microseconds, log scale; y a fraction 0..1).
pub fn latency_cdf(title: &str, series: &[Series]) -> String {
    let mut out = String::new();
    frame(
        &mut out,
        title,
        "detection latency (log scale)",
        "fraction of detections",
    );
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for &(x, _) in all {
        lo = lo.min(x.max(1.0));
        hi = hi.max(x.max(1.0));
    }
    if hi <= 0.0 {
        (lo, hi) = (1.0, 10.0);
    }
    let lo_exp = lo.log10().floor();
    let hi_exp = (hi.log10().ceil()).max(lo_exp + 1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x.max(1.0).log10() - lo_exp) / (hi_exp - lo_exp) * plot_w;
    let sy = |y: f64| TOP + (1.0 - y.clamp(0.0, 1.0)) * plot_h;
    let mut e = lo_exp;
    while e <= hi_exp {
        let x = sx(10f64.powf(e));
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            us_label(10f64.powf(e))
        );
        e += 1.0;
    }
    for q in [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0] {
        let y = sy(q);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{q}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = thin(&s.points)
            .into_iter()
            .map(|(x, y)| (sx(x), sy(y)))
            .collect();
        polyline(&mut out, &points, COLORS[i % COLORS.len()], true);
    }
    legend(&mut out, series);
    out.push_str("</svg>\n");
    out
}

/// A linear line chart (for throughput over time).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let mut out = String::new();
    frame(&mut out, title, x_label, y_label);
    let (mut x_hi, mut y_hi) = (0f64, 0f64);
    for s in series {
        for &(x, y) in &s.points {
            x_hi = x_hi.max(x);
            y_hi = y_hi.max(y);
        }
    }
    let x_hi = if x_hi > 0.0 { x_hi } else { 1.0 };
    let y_hi = if y_hi > 0.0 { y_hi * 1.1 } else { 1.0 };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / x_hi * plot_w;
    let sy = |y: f64| TOP + (1.0 - y / y_hi) * plot_h;
    for i in 0..=5 {
        let fx = x_hi * f64::from(i) / 5.0;
        let fy = y_hi * f64::from(i) / 5.0;
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{fx:.1}</text><line x1="{LEFT}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{fy:.0}</text>"##,
            sx(fx),
            TOP + plot_h + 16.0,
            sy(fy),
            LEFT + plot_w,
            sy(fy),
            LEFT - 6.0,
            sy(fy) + 4.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = thin(&s.points)
            .into_iter()
            .map(|(x, y)| (sx(x), sy(y)))
            .collect();
        polyline(&mut out, &points, COLORS[i % COLORS.len()], false);
    }
    legend(&mut out, series);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_well_formed_for_normal_and_empty_input() {
        let s = Series {
            label: "ssh <brute>".into(),
            points: (1..=5000)
                .map(|i| (i as f64 * 10.0, i as f64 / 5000.0))
                .collect(),
        };
        let svg = latency_cdf("CDF", std::slice::from_ref(&s));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("ssh &lt;brute&gt;"));
        assert!(svg.matches(' ').count() < 40_000, "thinned");
        let empty = latency_cdf("none", &[]);
        assert!(empty.contains("</svg>"));
        let chart = line_chart(
            "tput",
            "s",
            "events/s",
            &[
                s,
                Series {
                    label: "x".into(),
                    points: vec![],
                },
            ],
        );
        assert!(chart.contains("<polyline"));
        assert!(!chart.contains("NaN") && !empty.contains("NaN") && !svg.contains("NaN"));
    }
}
