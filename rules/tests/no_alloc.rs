//! The stateless pass must not allocate per event once its buffers have
//! grown: this counts heap allocations made by the current thread while
//! `RuleSet::evaluate` runs over events that exercise every matcher kind.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shardwatch_rules::{Event, RuleSet, RuleSource, Scratch, TemplateMiner};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// thread-locals are const-initialised `Cell`s, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One rule per matcher kind, so that short-circuiting cannot skip any.
const RULES: &str = r#"
title: exact
id: kind-exact
detection:
    sel:
        user.name: root
    condition: sel and not filter
    filter:
        never: x
---
title: prefix
id: kind-prefix
detection:
    sel:
        cmd|startswith: /tmp/
    condition: sel and not filter
    filter:
        never: x
---
title: glob
id: kind-glob
detection:
    sel:
        cmd: '*a?c*d'
    condition: sel and not filter
    filter:
        never: x
---
title: regex
id: kind-regex
detection:
    sel:
        cmd|re: '^curl\s'
    condition: sel and not filter
    filter:
        never: x
---
title: many
id: kind-many
detection:
    sel:
        cmd|contains: [mimikatz, lazagne, linpeas, pspy, chisel]
    condition: sel and not filter
    filter:
        never: x
---
title: all
id: kind-all
detection:
    sel:
        cmd|contains|all: [nc, '-e']
    condition: sel and not filter
    filter:
        never: x
---
title: absent
id: kind-absent
detection:
    sel:
        missing: null
    condition: sel and not filter
    filter:
        never: x
---
title: cased
id: kind-cased
detection:
    sel:
        user.name|cased: ROOT
    condition: sel and not filter
    filter:
        never: x
---
title: numeric, neq and a leaf-resolved Sigma field name
id: kind-numeric-leaf
detection:
    sel:
        source.port|gt: 1024
        user.name|neq: admin
        CommandLine|contains: 'nc -e'
        SourceIp|cidr: 198.51.100.0/24
    condition: sel
---
title: windows log source on a syslog event
id: kind-logsource
logsource:
    product: windows
    category: process_creation
detection:
    sel:
        CommandLine|contains: 'nc'
    condition: sel
---
title: keywords
id: kind-keywords
detection:
    keywords:
        - 'Failed password'
        - 'Accepted'
        - 'Invalid user'
        - 'session opened'
    condition: keywords
"#;

#[test]
fn evaluate_does_not_allocate_after_warm_up() {
    let mut sources = RuleSet::builtin_sources();
    sources.push(RuleSource {
        origin: "test".to_owned(),
        text: RULES.to_owned(),
    });
    let rules = match RuleSet::compile(&sources) {
        Ok(rules) => rules,
        Err(errors) => panic!("{errors:?}"),
    };
    let fields: Vec<(&str, &[u8])> = vec![
        ("process.name", b"sshd"),
        ("event.action", b"ssh_login"),
        ("event.outcome", b"failure"),
        ("user.name", b"ROOT"),
        ("source.ip", b"198.51.100.1"),
        ("cmd", b"curl x | nc -e /bin/sh abc zd LinPEAS"),
        ("source.port", b"50022"),
        ("Event.EventData.CommandLine", b"nc -e /bin/sh"),
    ];
    let event = Event {
        time_ns: 1,
        fields: &fields,
        message: b"Failed password for root from 198.51.100.1 port 22 ssh2",
        raw: b"<38>sshd[1]: Failed password for root from 198.51.100.1 port 22 ssh2",
    };
    let mut scratch = Scratch::new();
    let mut out = Vec::new();
    let mut fed = Vec::new();
    let mut key = Vec::new();
    // Warm up: buffers grow and the regex engine sets up its cache.
    for _ in 0..3 {
        rules.evaluate(&event, &mut scratch, &mut out);
        rules.correlations_fed(&out, &mut fed);
        for &c in &fed {
            rules.group_key(c, &event, &mut key);
        }
    }
    // Every rule is evaluated (no rule short-circuits another); these match:
    // the sshd base rule, exact, regex, many, all, absent, cased,
    // numeric-leaf, keywords (not the Windows log source one).
    assert_eq!(out.len(), 9);
    COUNTING.with(|c| c.set(true));
    for _ in 0..1000 {
        rules.evaluate(&event, &mut scratch, &mut out);
        rules.correlations_fed(&out, &mut fed);
        for &c in &fed {
            rules.group_key(c, &event, &mut key);
        }
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        ALLOCATIONS.with(Cell::get),
        0,
        "evaluate allocated per event"
    );
    // Self-check: the counter does see allocations on this thread.
    COUNTING.with(|c| c.set(true));
    let boxed = std::hint::black_box(Box::new(7u64));
    COUNTING.with(|c| c.set(false));
    drop(boxed);
    assert_eq!(ALLOCATIONS.with(Cell::get), 1);
}

/// The template miner runs on every event of the ingest path: once its
/// templates exist, mining a message of a known template (with new
/// variable values) must not allocate.
#[test]
fn mine_does_not_allocate_on_known_templates() {
    let mut miner = TemplateMiner::default();
    let messages: Vec<String> = (0..50)
        .flat_map(|i| {
            [
                format!("Accepted password for alice from 10.0.0.{i} port {} ssh2", 40000 + i),
                format!("proxy.example.com:{} close, {i} bytes (1.{i} KB) sent, 0 bytes received, lifetime <1 sec", 5000 + i),
                format!("Receiving block blk_-{} src: /10.250.19.{i}:54106 dest: /10.250.19.102:50010", 1_000_000 + i),
                format!("user=bob{i} uid={i} session opened at 0x{:x}", 0xdead_0000u64 + i as u64),
            ]
        })
        .collect();
    // Warm up: templates form and generalise.
    for message in &messages {
        let _ = miner.mine(message.as_bytes());
    }
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let mut ids = 0u64;
    for message in &messages {
        let found = miner.mine(message.as_bytes());
        ids = ids.wrapping_add(found.id);
        assert!(!found.new_template);
    }
    COUNTING.with(|c| c.set(false));
    std::hint::black_box(ids);
    assert_eq!(
        ALLOCATIONS.with(Cell::get) - before,
        0,
        "mine allocated on a known template"
    );
}
