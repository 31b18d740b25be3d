//! Report files: `report.json` (every number, the command line and the
//! machine), `summary.txt` (a short human summary), `latency_cdf.svg` and
//! `throughput.svg`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::svg::{self, Series};
use crate::timefmt;

/// A report being assembled by one subcommand.
#[derive(Debug, Default)]
pub struct Report {
    pub mode: String,
    pub body: Map<String, Value>,
    pub summary: Vec<String>,
    pub cdf: Vec<Series>,
    pub throughput: Vec<Series>,
    /// More files to write beside the four: (file name, content).
    pub extra_files: Vec<(String, String)>,
}

/// CPU model name from /proc/cpuinfo, when it can be read.
pub fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// What the numbers were measured on.
pub fn machine_info(now_ns: i64) -> Value {
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": cpu_model(),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        "hostname": std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string()),
        "date": timefmt::rfc3339_us(now_ns),
    })
}

/// One line of [`machine_info`] for a summary: a verdict or a rate is a
/// measurement of one machine (the same harness found UDP loss on one VM
/// and none on another: BENCHMARKS.md, 2026-12-07), so every summary says
/// which.
pub fn machine_line(info: &Value) -> String {
    let text = |key: &str| info[key].as_str().unwrap_or("unknown").to_string();
    format!(
        "machine: {}, {} CPU(s), kernel {}, host {}",
        text("cpu_model"),
        info["nproc"].as_u64().unwrap_or(0),
        text("kernel"),
        text("hostname")
    )
}

/// The command line, quoted where needed so it can be pasted back.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A ratio as text, or `n/a`.
pub fn fraction(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
}

impl Report {
    pub fn new(mode: &str) -> Report {
        Report {
            mode: mode.to_string(),
            ..Report::default()
        }
    }

    /// Writes the report files into `dir` (created if needed) and returns
    /// their paths.
    pub fn write(&self, dir: &Path, now_ns: i64) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut doc = Map::new();
        doc.insert("tool".into(), json!("shardwatch-load"));
        doc.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        doc.insert("mode".into(), json!(self.mode));
        doc.insert("command".into(), json!(command_line()));
        let machine = machine_info(now_ns);
        let machine_text = machine_line(&machine);
        doc.insert("machine".into(), machine);
        for (k, v) in &self.body {
            doc.insert(k.clone(), v.clone());
        }
        let mut paths = Vec::new();
        let json_path = dir.join("report.json");
        std::fs::write(&json_path, serde_json::to_vec_pretty(&Value::Object(doc))?)
            .with_context(|| format!("cannot write {}", json_path.display()))?;
        paths.push(json_path);

        let summary_path = dir.join("summary.txt");
        let mut text = format!(
            "shardwatch-load {} — {}\n",
            self.mode,
            timefmt::rfc3339_us(now_ns)
        );
        text.push_str(&format!("command: {}\n", command_line()));
        text.push_str(&machine_text);
        text.push('\n');
        for line in &self.summary {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&summary_path, text)
            .with_context(|| format!("cannot write {}", summary_path.display()))?;
        paths.push(summary_path);

        let cdf_path = dir.join("latency_cdf.svg");
        std::fs::write(
            &cdf_path,
            svg::latency_cdf("Detection latency CDF", &self.cdf),
        )
        .with_context(|| format!("cannot write {}", cdf_path.display()))?;
        paths.push(cdf_path);

        let tput_path = dir.join("throughput.svg");
        std::fs::write(
            &tput_path,
            svg::line_chart(
                "Throughput over time",
                "seconds since start",
                "events/s",
                &self.throughput,
            ),
        )
        .with_context(|| format!("cannot write {}", tput_path.display()))?;
        paths.push(tput_path);
        for (name, content) in &self.extra_files {
            let path = dir.join(name);
            std::fs::write(&path, content)
                .with_context(|| format!("cannot write {}", path.display()))?;
            paths.push(path);
        }
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_all_four_files() {
        let dir = std::env::temp_dir().join(format!("sw-perf-report-{}", std::process::id()));
        let mut r = Report::new("run");
        r.body.insert("answer".into(), json!(42));
        r.summary.push("hello".into());
        let paths = r.write(&dir, 0).unwrap();
        assert_eq!(paths.len(), 4);
        let doc: Value = serde_json::from_slice(&std::fs::read(&paths[0]).unwrap()).unwrap();
        assert_eq!(doc["answer"], 42);
        assert_eq!(doc["mode"], "run");
        assert!(doc["machine"]["nproc"].as_u64().unwrap() >= 1);
        let summary = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(summary.contains("hello"));
        // The machine, under the command line.
        assert_eq!(
            summary.lines().nth(2),
            Some(machine_line(&doc["machine"]).as_str())
        );
        assert_eq!(fraction(None), "n/a");
        assert_eq!(fraction(Some(0.5)), "0.500");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_machine_line_names_cpu_count_kernel_and_host() {
        let info = json!({
            "nproc": 2,
            "cpu_model": "AMD EPYC",
            "kernel": "6.18.44",
            "hostname": "vm",
            "date": "2026-12-07T10:00:00Z",
        });
        assert_eq!(
            machine_line(&info),
            "machine: AMD EPYC, 2 CPU(s), kernel 6.18.44, host vm"
        );
        // A field the machine did not give is said to be unknown.
        let info = json!({"nproc": 1, "cpu_model": null, "kernel": "6.1", "hostname": "h"});
        assert_eq!(
            machine_line(&info),
            "machine: unknown, 1 CPU(s), kernel 6.1, host h"
        );
    }
}
