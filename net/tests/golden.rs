//! Golden tests for parsing, extraction and rendering.
//!
//! Every `tests/golden/NAME.log` is read as lines (split on LF only, so CR,
//! NUL and invalid UTF-8 reach the parser as written); each line renders to
//! one JSON line which must equal the same line of `NAME.expected.jsonl`.
//! The first [`LOGHUB_LINES`] lines of the loghub samples in
//! `/work/shared/data` are read in place and compared the same way against
//! `tests/golden/loghub/NAME.expected.jsonl`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p shardwatch-net --test golden` rewrites the
//! expected files. Review the diff line by line before committing it: a
//! blessed wrong answer is worse than none.

use std::fs;
use std::path::{Path, PathBuf};

use shardwatch_net::render::render_line;
use shardwatch_net::syslog::ParseContext;
use shardwatch_net::DecodeScratch;

/// Receive time for every golden line: 2026-11-27T12:00:00Z.
const CTX: ParseContext = ParseContext {
    now_ns: 1_795_780_800_000_000_000,
    default_offset_s: 0,
};

/// How many lines of each loghub sample are checked.
const LOGHUB_LINES: usize = 30;

/// Loghub samples: golden name and path under `shared/data/loghub`.
const LOGHUB: &[(&str, &str)] = &[
    ("apache", "Apache/Apache_2k.log"),
    ("hdfs", "HDFS/HDFS_2k.log"),
    ("proxifier", "Proxifier/Proxifier_2k.log"),
    ("zookeeper", "Zookeeper/Zookeeper_2k.log"),
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Input lines: split on LF; a final empty piece (the file's last LF) is not
/// a line.
fn lines(input: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

fn render_all(lines: &[&[u8]]) -> String {
    let mut out = String::new();
    // One scratch for the whole file, as the engine keeps one per core: a
    // line must not see what the previous one left in it.
    let mut scratch = DecodeScratch::new();
    for line in lines {
        render_line(line, &CTX, &mut scratch, &mut out);
        out.push('\n');
    }
    out
}

/// Compares (or with UPDATE_GOLDEN rewrites) one expected file; returns a
/// description of the first difference.
fn check(expected_path: &Path, input: &[&[u8]]) -> Option<String> {
    let actual = render_all(input);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(expected_path, &actual).expect("write expected file");
        return None;
    }
    let Ok(expected) = fs::read_to_string(expected_path) else {
        return Some(format!(
            "{}: missing; run with UPDATE_GOLDEN=1 and review it",
            expected_path.display()
        ));
    };
    let mut expected_lines = expected.lines();
    for (i, actual_line) in actual.lines().enumerate() {
        let want = expected_lines.next().unwrap_or("<missing>");
        if want != actual_line {
            return Some(format!(
                "{}:{}\n  input:    {:?}\n  expected: {want}\n  actual:   {actual_line}",
                expected_path.display(),
                i + 1,
                String::from_utf8_lossy(input[i]),
            ));
        }
    }
    if expected_lines.next().is_some() {
        return Some(format!(
            "{}: more expected lines than input lines",
            expected_path.display()
        ));
    }
    for line in actual.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("rendered line is JSON");
        assert!(value.is_object());
    }
    None
}

#[test]
fn golden_files() {
    let mut inputs: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 8, "golden inputs are missing: {inputs:?}");
    let mut failures = Vec::new();
    for input_path in &inputs {
        let input = fs::read(input_path).expect("read golden input");
        let expected = input_path.with_extension("expected.jsonl");
        failures.extend(check(&expected, &lines(&input)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn loghub_samples() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub");
    assert!(
        data.is_dir(),
        "loghub samples are read in place from {}; that directory is missing",
        data.display()
    );
    let mut failures = Vec::new();
    for (name, path) in LOGHUB {
        let input = fs::read(data.join(path)).expect("read loghub sample");
        let all = lines(&input);
        let first = &all[..all.len().min(LOGHUB_LINES)];
        let expected = golden_dir()
            .join("loghub")
            .join(format!("{name}.expected.jsonl"));
        failures.extend(check(&expected, first));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
