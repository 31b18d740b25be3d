//! Per-event costs of the rules crate: the stateless pass over a mixed
//! Linux-syslog and Windows-JSON event set against 10, 100, 1000 and all
//! loadable SigmaHQ rules (with the prefilter and with every rule
//! evaluated), one correlation observe, and the creation and expiry of
//! the single-observation groups a flood leaves.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardwatch_rules::{CorrelationState, Event, Observation, RuleSet, RuleSource, Scratch};

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

/// Every SigmaHQ rule file that loads on its own, in path order, after the
/// built-in pack.
fn sigmahq_sources() -> Vec<RuleSource> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sigma/rules");
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
    }
    sources
}

/// A first slice of `sources` whose rules are a spread of products: every
/// n-th file, so 100 rules are not 100 Linux rules.
fn spread(sources: &[RuleSource], count: usize) -> Vec<RuleSource> {
    if count >= sources.len() {
        return sources.to_vec();
    }
    let step = sources.len() as f64 / count as f64;
    (0..count)
        .map(|i| sources[(i as f64 * step) as usize].clone())
        .collect()
}

type OwnedEvent = (Vec<(&'static str, &'static [u8])>, &'static [u8]);

/// A realistic mix: mostly Linux syslog (sshd, sudo, cron, kernel), some
/// Windows events flattened to dotted fields (Sysmon process creation,
/// Security logons, registry).
fn mixed_events() -> Vec<OwnedEvent> {
    vec![
        (sshd_fields(), &SSHD_FAILURE[37..]),
        (
            vec![
                ("host.name", b"host1"),
                ("process.name", b"sshd"),
                ("event.action", b"ssh_login"),
                ("event.outcome", b"success"),
                ("user.name", b"deploy"),
                ("source.ip", b"10.1.2.3"),
            ],
            b"Accepted publickey for deploy from 10.1.2.3 port 50514 ssh2: ED25519 SHA256:abc",
        ),
        (cron_fields(), &CRON_LINE[37..]),
        (
            vec![("host.name", b"host2"), ("process.name", b"sudo"), ("user.name", b"bob")],
            b"bob : TTY=pts/0 ; PWD=/home/bob ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
        ),
        (
            vec![("host.name", b"host3"), ("process.name", b"kernel")],
            b"[12345.678] IN=eth0 OUT= MAC=00:11 SRC=203.0.113.9 DST=10.0.0.5 PROTO=TCP SPT=4444 DPT=22",
        ),
        (
            vec![("host.name", b"host1"), ("process.name", b"systemd")],
            b"Started Session 42 of user deploy.",
        ),
        (
            vec![
                ("Event.System.Channel", b"Microsoft-Windows-Sysmon/Operational"),
                ("Event.System.EventID", b"1"),
                ("Event.System.Computer", b"ws1.corp"),
                ("Event.EventData.Image", b"C:\\Windows\\System32\\svchost.exe"),
                ("Event.EventData.CommandLine", b"C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule"),
                ("Event.EventData.ParentImage", b"C:\\Windows\\System32\\services.exe"),
                ("Event.EventData.User", b"NT AUTHORITY\\SYSTEM"),
                ("Event.EventData.IntegrityLevel", b"System"),
            ],
            b"",
        ),
        (
            vec![
                ("Event.System.Channel", b"Security"),
                ("Event.System.EventID", b"4624"),
                ("Event.EventData.TargetUserName", b"alice"),
                ("Event.EventData.IpAddress", b"10.0.0.20"),
                ("Event.EventData.LogonType", b"3"),
            ],
            b"",
        ),
        (
            vec![
                ("Event.System.Channel", b"Microsoft-Windows-Sysmon/Operational"),
                ("Event.System.EventID", b"13"),
                ("Event.EventData.TargetObject", b"HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater"),
                ("Event.EventData.Details", b"C:\\Program Files\\Updater\\upd.exe"),
                ("Event.EventData.Image", b"C:\\Program Files\\Updater\\setup.exe"),
            ],
            b"",
        ),
        (
            vec![
                ("Event.System.Channel", b"Microsoft-Windows-Sysmon/Operational"),
                ("Event.System.EventID", b"1"),
                ("Event.EventData.Image", b"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"),
                ("Event.EventData.CommandLine", b"powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA="),
                ("Event.EventData.ParentImage", b"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE"),
            ],
            b"",
        ),
    ]
}

fn bench_evaluate(c: &mut Criterion) {
    let all = sigmahq_sources();
    let events = mixed_events();
    let mut scratch = Scratch::new();
    let mut out = Vec::new();
    let mut group = c.benchmark_group("evaluate_mixed_event");
    for count in [10usize, 100, 1000, usize::MAX] {
        let rules = RuleSet::compile_lenient(&spread(&all, count)).0;
        let label = if count == usize::MAX {
            format!("all_{}", rules.detection_count())
        } else {
            count.to_string()
        };
        println!(
            "{label}: {} detections, {} prefiltered",
            rules.detection_count(),
            rules.prefiltered_count()
        );
        let mut i = 0usize;
        group.bench_function(format!("prefilter/{label}"), |b| {
            b.iter(|| {
                let (fields, message) = &events[i % events.len()];
                i += 1;
                let event = Event {
                    time_ns: 1,
                    fields,
                    message,
                    raw: message,
                };
                rules.evaluate(black_box(&event), &mut scratch, &mut out);
                black_box(out.len())
            })
        });
        group.bench_function(format!("every_rule/{label}"), |b| {
            b.iter(|| {
                let (fields, message) = &events[i % events.len()];
                i += 1;
                let event = Event {
                    time_ns: 1,
                    fields,
                    message,
                    raw: message,
                };
                rules.evaluate_all(black_box(&event), &mut scratch, &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
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

    // A state as large as an overloaded core holds (the overload run's
    // ~147 k groups): updates of existing groups in a scattered order, and
    // new keys at the cap, each evicting the stalest group.
    const LARGE: u32 = 131_072;
    let large_key = |i: u32| {
        let mut k = key.clone();
        k.extend_from_slice(&i.to_le_bytes());
        k
    };
    let mut state = CorrelationState::new(LARGE as usize);
    let mut time_ns = 0i64;
    for i in 0..LARGE {
        time_ns += 1_000;
        state.observe(&rules, 0, &large_key(i), time_ns, SSHD_FAILURE);
    }
    let mut step = 0u32;
    c.bench_function("observe/ssh_brute_force/131072_groups_update", |b| {
        b.iter(|| {
            time_ns += 1_000;
            // An odd multiplier visits every key in a scattered order.
            step = step.wrapping_add(1);
            let k = large_key(step.wrapping_mul(2_654_435_761) % LARGE);
            black_box(state.observe(&rules, 0, &k, time_ns, SSHD_FAILURE))
        })
    });
    let mut fresh = LARGE;
    c.bench_function("observe/ssh_brute_force/131072_groups_new_at_cap", |b| {
        b.iter(|| {
            time_ns += 1_000;
            fresh = fresh.wrapping_add(1);
            black_box(state.observe(&rules, 0, &large_key(fresh), time_ns, SSHD_FAILURE))
        })
    });
}

/// The port-scan correlation of the load harness (`value_count` of
/// destination ports per source and destination over one minute), alone.
const PORT_SCAN: &str = r#"
title: Netfilter Packet
name: bench_packet
logsource: {product: linux}
detection:
    selection: {app: kernel}
    condition: selection
---
title: Port Scan
correlation:
    type: value_count
    rules: [bench_packet]
    group-by: [SRC, DST]
    timespan: 1m
    condition: {field: DPT, gte: 20}
"#;

const PACKET: &[u8] = b"<4>Nov 27 04:00:00 fw1 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.7 DST=10.0.0.5 PROTO=TCP SPT=40000 DPT=22";

/// The life of the groups a flood leaves: one observation each in a
/// `value_count` state at its cap (every new key evicts the stalest), and
/// their expiry when their window has passed (`advance`), per group.
fn bench_value_count_groups(c: &mut Criterion) {
    let source = RuleSource {
        origin: "bench:port_scan".into(),
        text: PORT_SCAN.into(),
    };
    let rules = RuleSet::compile(&[source]).expect("port scan rule compiles");
    let key = |i: u32| format!("203.0.{}.{}\x1f10.0.0.5", i >> 8, i & 255).into_bytes();
    const GROUPS: u32 = 131_072;
    let fill = |state: &mut CorrelationState, from: u32, to: u32, time_ns: &mut i64| {
        for i in from..to {
            *time_ns += 1_000;
            let k = key(i);
            let observation = Observation {
                correlation: 0,
                group_key: &k,
                input_mask: 1,
                value: Some(b"22"),
                time_ns: *time_ns,
                arrival_ns: *time_ns,
                raw: PACKET,
            };
            let mut out = Vec::new();
            state.observe_into(&rules, &observation, &mut out);
        }
    };
    let mut state = CorrelationState::new(GROUPS as usize);
    let mut time_ns = 0i64;
    fill(&mut state, 0, GROUPS, &mut time_ns);
    let mut fresh = GROUPS;
    let mut group = c.benchmark_group("value_count");
    group.throughput(Throughput::Elements(1));
    group.bench_function("131072_groups_new_at_cap", |b| {
        b.iter(|| {
            fresh = fresh.wrapping_add(1);
            fill(&mut state, fresh, fresh + 1, &mut time_ns);
            black_box(state.group_count())
        })
    });
    // A checkpoint of that state (one shard's block: what the core
    // archives per shard, into a buffer sized from its last checkpoint),
    // and its restore (validated, indices rebuilt), per group.
    group.throughput(Throughput::Elements(u64::from(GROUPS)));
    group.sample_size(10);
    let archive = |state: &CorrelationState, hint: usize| {
        let (bytes, _) = state
            .archive_into(Vec::with_capacity(hint))
            .expect("archives");
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(&bytes);
        aligned
    };
    let hint = archive(&state, 0).len();
    group.bench_function("131072_groups_archive", |b| {
        b.iter(|| {
            let (bytes, len) = state
                .archive_into(Vec::with_capacity(hint))
                .expect("archives");
            black_box((bytes.len(), len))
        })
    });
    let bytes = archive(&state, hint);
    let mut estimate = state.memory_shared();
    state.memory_by_correlation(|_, _, bytes| estimate += bytes);
    println!(
        "value_count state of {} groups: {} bytes archived ({:.0} per group), heap estimate {estimate} bytes",
        state.group_count(),
        bytes.len(),
        bytes.len() as f64 / f64::from(GROUPS),
    );
    group.bench_function("131072_groups_restore", |b| {
        b.iter(|| {
            let restored = CorrelationState::restore(&bytes).expect("restores");
            black_box(restored.group_count())
        })
    });
    drop(bytes);
    drop(state);
    // Expiry: a state filled to its cap twice over (the first half evicted,
    // as in a flood), then every group expired by one advance.
    group.throughput(Throughput::Elements(u64::from(GROUPS)));
    group.sample_size(10);
    group.bench_function("131072_groups_expire", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let mut state = CorrelationState::new(GROUPS as usize);
                let mut time_ns = 0i64;
                fill(&mut state, 0, 2 * GROUPS, &mut time_ns);
                let mut out = Vec::new();
                let start = Instant::now();
                state.advance(&rules, i64::MAX, &mut out);
                took += start.elapsed();
                assert_eq!(state.group_count(), 0);
            }
            took
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_evaluate,
    bench_observe,
    bench_value_count_groups
);
criterion_main!(benches);
