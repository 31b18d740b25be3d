//! End to end: `shardwatch-load peers` on a tiny corpus with whatever peers
//! are installed. Absent peers must be reported as skipped (never a
//! failure), installed ones must write every line, and shardwatch must
//! receive every line.
//!
//! The appliance is `$SHARDWATCH_BIN` when set (for instance a release
//! build made elsewhere), otherwise it is built with `cargo build -p
//! shardwatch --bin shardwatch` (a no-op when fresh).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The appliance binary (built once, or `SHARDWATCH_BIN`).
fn appliance_binary() -> PathBuf {
    shardwatch_tests::binary().to_path_buf()
}

#[test]
fn peers_runs_installed_peers_and_skips_absent_ones() {
    let binary = appliance_binary();
    let scratch = std::env::temp_dir().join(format!("sw-peers-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let corpus = scratch.join("corpus.log");
    let out = scratch.join("out");
    let load = env!("CARGO_BIN_EXE_shardwatch-load");
    let events = 3_000u64;
    let gen = Command::new(load)
        .args([
            "gen",
            "--events",
            &events.to_string(),
            "--seed",
            "7",
            "--out",
        ])
        .arg(&corpus)
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );

    let run = Command::new(load)
        .arg("peers")
        .arg("--corpus")
        .arg(&corpus)
        .arg("--binary")
        .arg(&binary)
        .args(["--cores", "2", "--peers", "rsyslog,syslog-ng,sec", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "peers failed:\n{stderr}");
    for file in ["report.json", "summary.txt"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let doc: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(doc["mode"], "peers");
    let rows = doc["peers"]["results"].as_array().expect("peers.results");
    let names: Vec<&str> = rows.iter().map(|r| r["peer"].as_str().unwrap()).collect();
    assert_eq!(names, ["shardwatch", "rsyslog", "syslog-ng", "sec"]);
    for row in rows {
        let name = row["peer"].as_str().unwrap();
        match row["status"].as_str().unwrap() {
            "ok" => {
                assert!(row["events_per_s"].as_f64().unwrap() > 0.0, "{name}");
                assert!(row["cpu_us_per_event"].as_f64().is_some(), "{name}");
                if name != "sec" {
                    assert_eq!(row["lines_out"].as_u64(), Some(events), "{name}");
                }
            }
            "skipped" => {
                assert_ne!(name, "shardwatch");
                assert!(!row["reason"].as_str().unwrap_or("").is_empty(), "{name}");
            }
            other => panic!("{name}: status {other}: {row}"),
        }
    }
    let sw = &rows[0];
    assert_eq!(sw["status"], "ok", "{sw}");
    assert_eq!(sw["lines_out"].as_u64(), Some(events));
    let appliance = &doc["appliance"];
    assert_eq!(appliance["received"].as_u64(), Some(events));
    assert_eq!(
        appliance["events_parsed"].as_u64().unwrap()
            + appliance["quarantined_total"].as_u64().unwrap(),
        events
    );
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(summary.contains("CPU µs/event"), "{summary}");
    std::fs::remove_dir_all(&scratch).unwrap();
}
