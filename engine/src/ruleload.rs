//! Reading rule files from disk for the `rules` crate, which does no IO.

use std::path::{Path, PathBuf};

use anyhow::Context;
use shardwatch_rules::{CompileOptions, RuleError, RuleSet, RuleSource};

/// Rule files under `path`: the file itself, or every `*.yml` / `*.yaml`
/// below a directory, in sorted order so loading is deterministic.
pub fn rule_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read rules path {}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list rules directory {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml") | Some("yaml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The sources to compile: the built-in pack (if asked for) and every rule
/// file under `paths`.
pub fn sources(builtin: bool, paths: &[PathBuf]) -> anyhow::Result<Vec<RuleSource>> {
    let mut sources = if builtin {
        RuleSet::builtin_sources()
    } else {
        Vec::new()
    };
    for path in paths {
        for file in rule_files(path)? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read rule file {}", file.display()))?;
            sources.push(RuleSource {
                origin: file.display().to_string(),
                text,
            });
        }
    }
    Ok(sources)
}

/// Compiles what loads under `options` (the configuration's placeholders
/// and log source mappings), returning the errors of what did not.
pub fn load(
    builtin: bool,
    paths: &[PathBuf],
    options: &CompileOptions,
) -> anyhow::Result<(RuleSet, Vec<RuleError>)> {
    let sources = sources(builtin, paths)?;
    Ok(RuleSet::compile_with(&sources, options))
}
