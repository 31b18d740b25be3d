//! The running rule set and how it is swapped without stopping ingest.
//!
//! One [`LiveRules`] per node holds the current compiled `RuleSet` behind
//! a mutex and a generation counter. A reload (rules directory changed,
//! SIGHUP, `POST /api/rules/reload`, `PUT`/`DELETE /api/rules/{name}`)
//! compiles the new set off the hot path; if any rule fails with an error
//! (not merely an unsupported feature) the running set stays as it is and
//! the reload reports why. On success the generation is bumped; each core
//! checks the generation (one relaxed atomic load) at every batch boundary
//! and swaps its `Arc` there, so a batch is always evaluated by one set.
//!
//! Records cross cores tagged with the correlation's rule-id hash, not its
//! index, so a record routed under the old set is understood by an owner
//! core that already runs the new one. Correlation state is keyed by the
//! same hash plus a fingerprint of the rule's definition, so groups of
//! unchanged rules survive the swap and groups of a changed rule restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context;
use shardwatch_rules::{CompileOptions, RuleError, RuleErrorKind, RuleSet};

/// What a reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    pub detections: usize,
    pub correlations: usize,
    /// Rules skipped because they use something we do not support.
    pub unsupported: Vec<String>,
    /// The rule (`"title" (id)`) that may see any line and so keeps
    /// every payload decoded (`RuleSet::header_gate_blocker`); `None`
    /// when lines no rule can see skip their payload's decode.
    pub decode_blocker: Option<String>,
}

impl ReloadReport {
    /// The line the node prints for this reload (`reason`: what asked
    /// for it), ending with whether lines no rule can see are decoded.
    pub fn describe(&self, reason: &str, decoding: PayloadDecoding) -> String {
        format!(
            "rules reloaded ({reason}): generation {} with {} detections, {} correlations, {} unsupported skipped; {}",
            self.generation,
            self.detections,
            self.correlations,
            self.unsupported.len(),
            decoding.status(self.decode_blocker.as_deref())
        )
    }
}

/// The settings that decide, with the rules, whether lines no rule can
/// see skip their payload's decode.
#[derive(Clone, Copy, Debug)]
pub struct PayloadDecoding {
    /// `ingest.decode_all_payloads`.
    all: bool,
    /// `engine.templates = "on"` (the miner reads every line).
    mine_every_line: bool,
}

impl PayloadDecoding {
    /// The settings in `config`.
    pub fn of(config: &crate::config::Config) -> PayloadDecoding {
        PayloadDecoding {
            all: config.ingest.decode_all_payloads,
            mine_every_line: config.engine.templates == crate::pipeline::TemplatesMode::On,
        }
    }

    /// What the node says at start and after each reload: whether lines
    /// no rule can see skip their payload's decode, and if not, which
    /// setting or rule (`blocker`, from `liverules::decode_blocker`)
    /// keeps every payload decoded.
    pub fn status(self, blocker: Option<&str>) -> String {
        if self.all {
            "every payload is decoded (ingest.decode_all_payloads)".into()
        } else if self.mine_every_line {
            "every payload is decoded (engine.templates = \"on\" mines every line)".into()
        } else if let Some(rule) = blocker {
            format!(
                "every payload is decoded: rule {rule} may see any line (its log source names no program or host, and it can match without a keyword in the message or a payload field whose name the line holds)"
            )
        } else {
            "lines no rule can see from their header and message are not decoded".into()
        }
    }
}

/// `rules`' [`ReloadReport::decode_blocker`].
pub fn decode_blocker(rules: &RuleSet) -> Option<String> {
    rules
        .header_gate_blocker()
        .map(|rule| format!("\"{}\" ({})", rule.title, rule.id))
}

/// Why a reload was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rule reload refused, the running rules are unchanged: {}", .errors.join("; "))]
pub struct ReloadError {
    pub errors: Vec<String>,
}

/// The node's current rules; see the module docs.
pub struct LiveRules {
    builtin: bool,
    paths: Vec<PathBuf>,
    /// Placeholders and log source mappings from the configuration, used
    /// by every reload.
    options: CompileOptions,
    current: Mutex<Arc<RuleSet>>,
    generation: AtomicU64,
    /// Serialises reloads so two triggers cannot interleave.
    reloading: Mutex<()>,
}

fn split(errors: Vec<RuleError>) -> (Vec<String>, Vec<String>) {
    let mut unsupported = Vec::new();
    let mut failed = Vec::new();
    for error in errors {
        match error.kind {
            RuleErrorKind::Unsupported { .. } => unsupported.push(error.to_string()),
            _ => failed.push(error.to_string()),
        }
    }
    (unsupported, failed)
}

impl LiveRules {
    /// Loads the first set. At start-up a rule that fails is reported and
    /// skipped (so one bad file does not keep the appliance down).
    pub fn load(
        builtin: bool,
        paths: Vec<PathBuf>,
        options: CompileOptions,
    ) -> anyhow::Result<(LiveRules, Vec<RuleError>)> {
        let (rules, errors) = crate::ruleload::load(builtin, &paths, &options)?;
        Ok((
            LiveRules {
                builtin,
                paths,
                options,
                current: Mutex::new(Arc::new(rules)),
                generation: AtomicU64::new(1),
                reloading: Mutex::new(()),
            },
            errors,
        ))
    }

    /// The generation of the current set; cheap enough for every batch.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current set and its generation.
    pub fn snapshot(&self) -> (u64, Arc<RuleSet>) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (self.generation(), current.clone())
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Recompiles from disk and swaps the set in, or leaves it untouched and
    /// says why.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let sources =
            crate::ruleload::sources(self.builtin, &self.paths).map_err(|e| ReloadError {
                errors: vec![format!("{e:#}")],
            })?;
        let (rules, errors) = RuleSet::compile_with(&sources, &self.options);
        let (unsupported, failed) = split(errors);
        if !failed.is_empty() {
            return Err(ReloadError { errors: failed });
        }
        if rules.detection_count() == 0 {
            return Err(ReloadError {
                errors: vec!["the new set has no rules at all".into()],
            });
        }
        let report = ReloadReport {
            generation: 0,
            detections: rules.detection_count(),
            correlations: rules.correlation_count(),
            unsupported,
            decode_blocker: decode_blocker(&rules),
        };
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(rules);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        Ok(ReloadReport {
            generation,
            ..report
        })
    }

    /// Checks extra rule text against the current sources without changing
    /// anything: what `PUT /api/rules/{name}` does before writing a file.
    pub fn validate_with(&self, origin: &str, text: &str) -> Result<(), ReloadError> {
        let mut sources =
            crate::ruleload::sources(self.builtin, &self.paths).map_err(|e| ReloadError {
                errors: vec![format!("{e:#}")],
            })?;
        sources.retain(|s| s.origin != origin);
        sources.push(shardwatch_rules::RuleSource {
            origin: origin.to_string(),
            text: text.to_string(),
        });
        let (_, errors) = RuleSet::compile_with(&sources, &self.options);
        let mine: Vec<RuleError> = errors.into_iter().filter(|e| e.origin == origin).collect();
        let (unsupported, failed) = split(mine);
        let problems: Vec<String> = failed.into_iter().chain(unsupported).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ReloadError { errors: problems })
        }
    }
}

/// A cheap fingerprint of the rule files: (path, length, mtime) of each.
pub fn files_fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    for path in paths {
        let Ok(files) = crate::ruleload::rule_files(path) else {
            continue;
        };
        for file in files {
            if let Ok(meta) = std::fs::metadata(&file) {
                out.push((
                    file,
                    meta.len(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ));
            }
        }
    }
    out
}

/// The directory where rules uploaded through the API are kept.
pub fn api_rules_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("rules.d")
}

/// Creates the API rules directory so it can be watched and loaded.
pub fn ensure_api_rules_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = api_rules_dir(data_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create rules directory {}", dir.display()))?;
    Ok(dir)
}
