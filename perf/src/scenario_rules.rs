//! The scenario rule file and which expected alerts a run can score.
//!
//! # What this module owns
//!
//! Finding the scenario rules (`--rules PATH`, by default
//! `perf/rules/scenarios.yml` found through the package directory recorded
//! at build time, then through the current directory), turning them into
//! the appliance's `--rules` argument, and deciding, per expected alert,
//! whether a run can score it:
//!
//! * `expected`: its rule is built in, or is one of the rule file's ids or
//!   titles, and the binary extracts every field the rule reads;
//! * `not loaded`: it needs the scenario rule file and the file is absent,
//!   unreadable or lacks the rule;
//! * `unsupported`: the binary's parser does not extract a field the rule
//!   needs from the scenario's lines (asked of `shardwatch parse -` on one
//!   sample line per scenario), so the rule cannot fire whatever the
//!   detection engine does.
//!
//! Entries that are not `expected` are left out of recall and latency and
//! listed in the report with their reason, so a missing file or a parser
//! that has not learned a format yet never reads as a detection miss.
//!
//! It reads the rule file as text (top-level `id:` and `title:` lines) and
//! does not validate rules: `shardwatch rules check` does that.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use serde_json::Value;

use crate::clock;
use crate::corpus::{Entities, Expect, RuleSource, TruthEntry, SCENARIOS};
use crate::rng::Rng;

/// Where the scenario rules live inside the package.
pub const RULES_RELATIVE: &str = "rules/scenarios.yml";
/// The `--rules` value that loads no scenario rules at all.
pub const RULES_NONE: &str = "none";
/// Largest rule file read.
pub const RULES_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// How long `shardwatch parse -` may take on the probe lines.
pub const PROBE_TIMEOUT_NS: i64 = 30_000_000_000;
/// Largest probe output read.
pub const PROBE_OUTPUT_BYTES_MAX: usize = 1024 * 1024;

/// The default `--rules`: the package's file as built, else the path from
/// the repository root, else the package-relative path (which the run
/// then reports as absent).
pub fn default_rules_path() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES_RELATIVE);
    if built.is_file() {
        return built;
    }
    let from_root = Path::new("perf").join(RULES_RELATIVE);
    if from_root.is_file() {
        return from_root;
    }
    PathBuf::from(RULES_RELATIVE)
}

/// What the scenario rule file holds, as far as the harness needs to know.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RuleFile {
    pub path: Option<PathBuf>,
    /// Why the file is not usable; None when it was read.
    pub problem: Option<String>,
    pub ids: Vec<String>,
    pub titles: Vec<String>,
}

impl RuleFile {
    /// Reads `path` (None: no scenario rules wanted).
    pub fn read(path: Option<&Path>) -> RuleFile {
        let Some(path) = path else {
            return RuleFile {
                problem: Some("no scenario rule file given".into()),
                ..RuleFile::default()
            };
        };
        let mut file = RuleFile {
            path: Some(path.to_path_buf()),
            ..RuleFile::default()
        };
        let text = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => read_rule_dir(path),
            Ok(m) if !m.is_file() => Err(format!("{} is not a file", path.display())),
            Ok(m) if m.len() > RULES_BYTES_MAX => Err(format!(
                "{} is larger than {RULES_BYTES_MAX} bytes",
                path.display()
            )),
            Ok(_) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            Err(e) => Err(format!("{} is absent: {e}", path.display())),
        };
        match text {
            Ok(text) => {
                for line in text.lines() {
                    let value = |key: &str| {
                        line.strip_prefix(key)
                            .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
                    };
                    if let Some(id) = value("id:") {
                        file.ids.push(id);
                    } else if let Some(title) = value("title:") {
                        file.titles.push(title);
                    }
                }
            }
            Err(problem) => file.problem = Some(problem),
        }
        file
    }

    /// Whether the file defines the rule an entry names (by id, or as a
    /// case-insensitive substring of a title, as alerts are matched).
    pub fn has(&self, rule: &str) -> bool {
        let lower = rule.to_ascii_lowercase();
        self.ids.iter().any(|id| id.eq_ignore_ascii_case(rule))
            || self
                .titles
                .iter()
                .any(|t| t.to_ascii_lowercase().contains(&lower))
    }

    /// The appliance arguments that load the file (none when unusable).
    pub fn appliance_args(&self) -> Vec<String> {
        match (&self.path, &self.problem) {
            (Some(path), None) => vec!["--rules".into(), path.display().to_string()],
            _ => Vec::new(),
        }
    }
}

/// Reads every `.yml` and `.yaml` file directly inside `dir` (as the
/// appliance's `--rules DIR` loads them), in name order, joined into one
/// text; at most [`RULES_BYTES_MAX`] bytes in all.
fn read_rule_dir(dir: &Path) -> Result<String, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|x| {
                    x.eq_ignore_ascii_case("yml") || x.eq_ignore_ascii_case("yaml")
                })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{} holds no .yml or .yaml file", dir.display()));
    }
    let mut text = String::new();
    for file in files {
        let part = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        if (text.len() + part.len()) as u64 > RULES_BYTES_MAX {
            return Err(format!(
                "the rule files in {} are larger than {RULES_BYTES_MAX} bytes together",
                dir.display()
            ));
        }
        text.push_str(&part);
        text.push('\n');
    }
    Ok(text)
}

/// Whether an expected alert can be scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Expected,
    NotLoaded,
    Unsupported,
}

/// One (scenario, rule) pair that a run leaves out, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excluded {
    pub scenario: String,
    pub rule: String,
    pub status: Availability,
    pub reason: String,
}

/// Decides, per (scenario, rule), whether a run scores it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gate {
    pub rules: RuleFile,
    /// Scenario name → fields the binary did not extract from its sample
    /// line (absent: not probed, or everything was there).
    pub missing_fields: BTreeMap<String, Vec<String>>,
    /// Why the field probe could not run, if it could not.
    pub probe_problem: Option<String>,
}

fn expect_of(scenario: &str, rule: &str) -> Option<&'static Expect> {
    SCENARIOS
        .iter()
        .find(|d| d.name == scenario)?
        .expects
        .iter()
        .find(|e| e.rule == rule)
}

impl Gate {
    /// A gate over `rules`, probing `binary` for the fields scenarios need
    /// when one is given. A probe that cannot run leaves every entry
    /// `expected` and says why in [`Gate::probe_problem`].
    pub fn new(rules: RuleFile, binary: Option<&Path>) -> Gate {
        let mut gate = Gate {
            rules,
            ..Gate::default()
        };
        if let Some(binary) = binary {
            match probe_fields(binary) {
                Ok(missing) => gate.missing_fields = missing,
                Err(e) => gate.probe_problem = Some(format!("{e:#}")),
            }
        }
        gate
    }

    /// Whether `entry` can be scored, and the reason when it cannot.
    pub fn check(&self, entry: &TruthEntry) -> (Availability, String) {
        let Some(expect) = expect_of(&entry.scenario, &entry.rule) else {
            // A truth file from elsewhere: score what it says.
            return (Availability::Expected, String::new());
        };
        if expect.source == RuleSource::ScenarioFile {
            if let Some(problem) = &self.rules.problem {
                return (Availability::NotLoaded, problem.clone());
            }
            if !self.rules.has(expect.rule) {
                return (
                    Availability::NotLoaded,
                    format!(
                        "rule {} is not in {}",
                        expect.rule,
                        self.rules
                            .path
                            .as_ref()
                            .map_or(String::new(), |p| p.display().to_string())
                    ),
                );
            }
        }
        if let Some(missing) = self.missing_fields.get(&entry.scenario) {
            let needed: Vec<&str> = expect
                .needs_fields
                .iter()
                .copied()
                .filter(|f| missing.iter().any(|m| m == f))
                .collect();
            if !needed.is_empty() {
                return (
                    Availability::Unsupported,
                    format!(
                        "the binary's parser does not extract {} from this scenario's lines",
                        needed.join(", ")
                    ),
                );
            }
        }
        (Availability::Expected, String::new())
    }

    /// Splits `truth` into the entries to score and one [`Excluded`] row per
    /// (scenario, rule) left out, with how many entries it covers.
    pub fn split(&self, truth: &[TruthEntry]) -> (Vec<TruthEntry>, Vec<(Excluded, usize)>) {
        let mut kept = Vec::with_capacity(truth.len());
        let mut out: Vec<(Excluded, usize)> = Vec::new();
        for entry in truth {
            let (status, reason) = self.check(entry);
            if status == Availability::Expected {
                kept.push(entry.clone());
                continue;
            }
            match out
                .iter_mut()
                .find(|(x, _)| x.scenario == entry.scenario && x.rule == entry.rule)
            {
                Some((_, n)) => *n += 1,
                None => out.push((
                    Excluded {
                        scenario: entry.scenario.clone(),
                        rule: entry.rule.clone(),
                        status,
                        reason,
                    },
                    1,
                )),
            }
        }
        (kept, out)
    }
}

/// One sample completing line per scenario that needs fields, rendered as
/// the generator would.
fn probe_lines() -> Vec<(&'static str, Vec<&'static str>, String)> {
    let ents = Entities::new(8);
    let mut rng = Rng::new(7);
    let mut out = Vec::new();
    for def in &SCENARIOS {
        let mut needs: Vec<&'static str> = def
            .expects
            .iter()
            .flat_map(|e| e.needs_fields.iter().copied())
            .collect();
        needs.sort_unstable();
        needs.dedup();
        if needs.is_empty() {
            continue;
        }
        let instance = (def.build)(&mut rng, &ents, 0);
        let Some(step) = instance.steps.get(instance.completing_step) else {
            continue;
        };
        let mut text = String::new();
        step.line.render(clock::now_ns(), &mut text);
        out.push((def.name, needs, text));
    }
    out
}

/// Runs `binary parse -` over one sample line per scenario and returns, per
/// scenario, the needed fields its output lacked.
pub fn probe_fields(binary: &Path) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let lines = probe_lines();
    let mut input = String::new();
    for (_, _, line) in &lines {
        input.push_str(line);
        input.push('\n');
    }
    let mut command = Command::new(binary);
    command
        .args(["parse", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Registered, so a signal meanwhile stops it too.
    let (mut child, _registered) =
        crate::interrupt::spawn(&mut command, format!("{} parse", binary.display()))?;
    // A few short lines fit the pipe buffer, so this write cannot block on
    // a child that has not read yet.
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let deadline = clock::now_ns() + PROBE_TIMEOUT_NS;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if clock::now_ns() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{} parse did not finish within {} s",
                binary.display(),
                PROBE_TIMEOUT_NS / 1_000_000_000
            );
        }
        clock::sleep_ns(5_000_000);
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        anyhow::bail!("{} parse failed ({})", binary.display(), output.status);
    }
    let text =
        String::from_utf8_lossy(&output.stdout[..output.stdout.len().min(PROBE_OUTPUT_BYTES_MAX)]);
    let rendered: Vec<&str> = text.lines().collect();
    if rendered.len() < lines.len() {
        anyhow::bail!(
            "{} parse printed {} lines for {}",
            binary.display(),
            rendered.len(),
            lines.len()
        );
    }
    let mut missing = BTreeMap::new();
    for ((scenario, needs, _), out) in lines.iter().zip(rendered) {
        let value: Value = serde_json::from_str(out).unwrap_or(Value::Null);
        let fields = value.get("fields").and_then(Value::as_object);
        let lacking: Vec<String> = needs
            .iter()
            .filter(|f| fields.is_none_or(|m| !m.contains_key(**f)))
            .map(|f| f.to_string())
            .collect();
        if !lacking.is_empty() {
            missing.insert(scenario.to_string(), lacking);
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(scenario: &str, rule: &str) -> TruthEntry {
        TruthEntry {
            scenario: scenario.into(),
            instance: 0,
            rule: rule.into(),
            group_field: String::new(),
            group_value: String::new(),
            completing_index: 0,
            completing_time_ns: 0,
            completing_message: String::new(),
            first_index: 0,
        }
    }

    #[test]
    fn the_shipped_rule_directory_defines_every_scenario_rule() {
        let dir = default_rules_path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let file = RuleFile::read(Some(&dir));
        assert_eq!(file.problem, None);
        for def in &SCENARIOS {
            for e in def.expects {
                if e.source == RuleSource::ScenarioFile {
                    assert!(file.has(e.rule), "{} lacks {}", def.name, e.rule);
                }
            }
        }
        assert_eq!(file.appliance_args()[0], "--rules");
        // The default file alone leaves the anomaly rows not loaded.
        let default = RuleFile::read(Some(&default_rules_path()));
        assert_eq!(default.problem, None);
        assert!(default.has(crate::corpus::RULE_LATERAL_MOVEMENT));
        assert!(!default.has(crate::corpus::RULE_HOST_SILENT));
    }

    #[test]
    fn a_directory_without_rule_files_is_refused() {
        let dir = std::env::temp_dir().join(format!("sw-perf-norules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = RuleFile::read(Some(&dir));
        assert!(file.problem.is_some());
        assert!(file.appliance_args().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn absent_file_marks_only_file_rules_not_loaded() {
        let gate = Gate::new(RuleFile::read(Some(Path::new("/nonexistent/x.yml"))), None);
        assert!(gate.rules.appliance_args().is_empty());
        let truth = vec![
            entry("ssh_brute_force", "SSH Brute Force"),
            entry("password_spraying", crate::corpus::RULE_PASSWORD_SPRAYING),
            entry("password_spraying", "SSH Brute Force"),
            entry("port_scan", crate::corpus::RULE_PORT_SCAN),
            entry("port_scan", crate::corpus::RULE_PORT_SCAN),
        ];
        let (kept, excluded) = gate.split(&truth);
        assert_eq!(kept.len(), 2);
        assert_eq!(excluded.len(), 2);
        assert_eq!(excluded[1].1, 2);
        assert!(excluded
            .iter()
            .all(|(x, _)| x.status == Availability::NotLoaded));
    }

    #[test]
    fn missing_fields_mark_entries_unsupported() {
        let mut gate = Gate::new(RuleFile::read(Some(&default_rules_path())), None);
        gate.missing_fields
            .insert("port_scan".into(), vec!["DPT".into()]);
        let (status, reason) = gate.check(&entry("port_scan", crate::corpus::RULE_PORT_SCAN));
        assert_eq!(status, Availability::Unsupported);
        assert!(reason.contains("DPT"), "{reason}");
        let (status, _) = gate.check(&entry(
            "lateral_movement",
            crate::corpus::RULE_LATERAL_MOVEMENT,
        ));
        assert_eq!(status, Availability::Expected);
    }

    #[test]
    fn probe_lines_cover_the_field_hungry_scenarios() {
        let lines = probe_lines();
        let port = lines.iter().find(|l| l.0 == "port_scan").unwrap();
        assert!(port.2.contains("DPT=") && port.2.contains("SRC="));
    }
}
