//! The configuration the README documents is the one the binary reads:
//! every setting `shardwatch run --print-config` prints (the embedded
//! defaults) is in one of the README's TOML blocks, every setting those
//! blocks show is one the binary knows, and the "Configuration" block's
//! values are the defaults.

use std::collections::BTreeMap;
use std::process::Command;

use shardwatch_tests::{binary, workspace_root};

/// Tables whose keys are the user's own (hosts, placeholders, aliases),
/// not settings.
const FREE_FORM: [&str; 3] = [
    "ingest.timezones",
    "rules.placeholders",
    "normalize.aliases",
];

/// `section.key` → value for every setting in `table`, nested tables
/// flattened; the free-form tables count as one setting each.
fn settings(table: &toml::Table) -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
        for (key, value) in table {
            let name = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) if !FREE_FORM.contains(&name.as_str()) => {
                    walk(&name, inner, out)
                }
                _ => {
                    out.insert(name, value.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", table, &mut out);
    out
}

/// The README's ```toml blocks, parsed, each with the heading it is under.
fn readme_blocks() -> Vec<(String, toml::Table)> {
    let text = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
        }
        if line.trim() == "```toml" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            let table: toml::Table = body
                .join("\n")
                .parse()
                .unwrap_or_else(|e| panic!("README block under {heading:?} is not TOML: {e}"));
            blocks.push((heading.clone(), table));
        }
    }
    blocks
}

#[test]
fn the_readme_documents_every_setting_and_only_real_ones() {
    let out = Command::new(binary())
        .args(["run", "--print-config"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let defaults: toml::Table = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    let defaults = settings(&defaults);
    assert!(defaults.len() > 50, "{defaults:?}");

    let blocks = readme_blocks();
    let mut documented = BTreeMap::new();
    for (heading, table) in &blocks {
        for (name, value) in settings(table) {
            assert!(
                defaults.contains_key(&name),
                "README ({heading}) shows `{name}`, which the binary does not know"
            );
            if heading == "Configuration" {
                assert_eq!(
                    Some(&value),
                    defaults.get(&name),
                    "README's Configuration block gives `{name}` a value other than the default"
                );
            }
            documented.insert(name, heading.clone());
        }
    }
    // Commented-out examples (`# [[rules.logsources]]`) document a setting
    // whose default is empty.
    let text = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let undocumented: Vec<&String> = defaults
        .keys()
        .filter(|name| !documented.contains_key(*name))
        .filter(|name| {
            let (section, key) = name.rsplit_once('.').unwrap_or(("", name));
            !text.contains(&format!("[[{section}.{key}]]"))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "settings in --print-config that no README TOML block shows: {undocumented:?}"
    );
    assert!(
        blocks.iter().any(|(heading, _)| heading == "Configuration"),
        "the README has its Configuration block"
    );
}
