//! The command-line flags the README and the harness's README write are
//! ones the binaries take: every `--flag` in a backtick span that is a
//! `shardwatch …` or `shardwatch-load …` command line, or a flag on its
//! own, is in the `--help` of `shardwatch` or `shardwatch-load` (every
//! subcommand's). A renamed or removed flag fails here, not on a user.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags the docs write on their own that belong to other programs.
const OTHER_PROGRAMS: [&str; 1] = [
    "--module-path", // syslog-ng's, in the peer comparison
];

fn help(binary: &Path, args: &[&str]) -> String {
    let out = Command::new(binary)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} --help: {out:?}",
        binary.display()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a clap `--help` page lists (without `help`).
fn subcommands(page: &str) -> Vec<String> {
    page.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every help page of `binary`: its own and, recursively, its
/// subcommands'.
fn all_help(binary: &Path) -> String {
    let mut text = String::new();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = queue.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let page = help(binary, &args);
        for sub in subcommands(&page) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        text.push_str(&page);
    }
    text
}

/// The flags in `doc`'s backtick spans that are shardwatch command lines
/// or flags on their own.
fn documented_flags(doc: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for (i, span) in doc.split('`').enumerate() {
        // Odd pieces are inside backticks (fenced blocks split the same way
        // and are skipped by the test below: they start with a newline).
        if i % 2 == 0 || span.starts_with('\n') {
            continue;
        }
        let ours = span.starts_with("shardwatch ")
            || span.starts_with("shardwatch-load ")
            || span.starts_with("--");
        if !ours {
            continue;
        }
        for word in span.split(|c: char| c.is_whitespace() || "[]|=,".contains(c)) {
            if let Some(name) = word.strip_prefix("--") {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                    .collect();
                if !name.is_empty() {
                    flags.insert(format!("--{name}"));
                }
            }
        }
    }
    flags
}

#[test]
fn every_documented_flag_is_one_the_binaries_take() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages = all_help(shardwatch_tests::binary());
    pages.push_str(&all_help(Path::new(env!("CARGO_BIN_EXE_shardwatch-load"))));
    let mut checked = 0;
    for doc in ["README.md", "perf/README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for flag in documented_flags(&text) {
            if OTHER_PROGRAMS.contains(&flag.as_str()) {
                continue;
            }
            checked += 1;
            let known = pages
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .any(|w| w == flag);
            assert!(known, "{doc} writes `{flag}`, which no --help page has");
        }
    }
    assert!(checked > 20, "{checked} flags checked");
}
