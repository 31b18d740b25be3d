//! Per-event costs of the rules crate: the stateless pass with the built-in
//! pack and with ~100 SigmaHQ Linux rules, and one correlation observe.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use shardwatch_rules::{CorrelationState, Event, RuleSet, RuleSource, Scratch};

const SSHD_FAILURE: &[u8] =
    b"<38>Nov 27 04:00:00 host1 sshd[100]: Failed password for root from 198.51.100.10 port 50022 ssh2";
const CRON_LINE: &[u8] =
    b"<78>Nov 27 04:00:00 host1 CRON[2211]: (root) CMD (run-parts /etc/cron.hourly)";

fn sshd_fields() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("host.name", b"host1"),
        ("process.name", b"sshd"),
        ("event.action", b"ssh_login"),
        ("event.outcome", b"failure"),
        ("user.name", b"root"),
        ("source.ip", b"198.51.100.10"),
        ("source.port", b"50022"),
    ]
}

fn cron_fields() -> Vec<(&'static str, &'static [u8])> {
    vec![("host.name", b"host1"), ("process.name", b"CRON")]
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

/// Up to 100 SigmaHQ Linux rules that load, plus the built-in pack.
fn sigmahq_linux_sources() -> Vec<RuleSource> {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sigma/rules/linux");
    let mut files = Vec::new();
    collect_yml(&root, &mut files);
    files.sort();
    let mut sources = RuleSet::builtin_sources();
    for path in files {
        let source = RuleSource {
            origin: path.display().to_string(),
            text: fs::read_to_string(&path).unwrap_or_default(),
        };
        if RuleSet::compile(std::slice::from_ref(&source)).is_ok() {
            sources.push(source);
        }
        if sources.len() >= 100 {
            break;
        }
    }
    sources
}

fn bench_evaluate(c: &mut Criterion) {
    let builtin = RuleSet::compile(&RuleSet::builtin_sources()).expect("built-in pack compiles");
    let sigma = RuleSet::compile_lenient(&sigmahq_linux_sources()).0;
    println!("sigmahq linux set: {} detections", sigma.detection_count());
    let sshd = sshd_fields();
    let cron = cron_fields();
    let sshd_event = Event {
        time_ns: 1,
        fields: &sshd,
        message: &SSHD_FAILURE[37..],
        raw: SSHD_FAILURE,
    };
    let cron_event = Event {
        time_ns: 1,
        fields: &cron,
        message: &CRON_LINE[37..],
        raw: CRON_LINE,
    };
    let mut scratch = Scratch::new();
    let mut out = Vec::new();
    for (name, rules, event) in [
        ("evaluate/builtin/sshd_failure", &builtin, &sshd_event),
        ("evaluate/builtin/non_matching", &builtin, &cron_event),
        (
            "evaluate/sigmahq_linux_100/sshd_failure",
            &sigma,
            &sshd_event,
        ),
        (
            "evaluate/sigmahq_linux_100/non_matching",
            &sigma,
            &cron_event,
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                rules.evaluate(black_box(event), &mut scratch, &mut out);
                black_box(out.len())
            })
        });
    }
}

fn bench_observe(c: &mut Criterion) {
    let rules = RuleSet::compile(&RuleSet::builtin_sources()).expect("built-in pack compiles");
    let sshd = sshd_fields();
    let event = Event {
        time_ns: 1,
        fields: &sshd,
        message: &SSHD_FAILURE[37..],
        raw: SSHD_FAILURE,
    };
    let mut key = Vec::new();
    rules.group_key(0, &event, &mut key);
    let keys: Vec<Vec<u8>> = (0..1024u32)
        .map(|i| {
            let mut k = key.clone();
            k.extend_from_slice(&i.to_le_bytes());
            k
        })
        .collect();
    let mut state = CorrelationState::new(100_000);
    let mut time_ns = 0i64;
    let mut i = 0usize;
    c.bench_function("observe/ssh_brute_force/1024_groups", |b| {
        b.iter(|| {
            time_ns += 1_000_000;
            i = (i + 1) % keys.len();
            black_box(state.observe(&rules, 0, &keys[i], time_ns, SSHD_FAILURE))
        })
    });
}

criterion_group!(benches, bench_evaluate, bench_observe);
criterion_main!(benches);
