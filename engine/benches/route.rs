//! Match + route per event: the ingest core's whole per-line cost (parse,
//! extract, stateless rules, group key, shard placement) with the built-in
//! rule pack, and the owning core's per-record cost (correlation observe).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardwatch::pipeline::{EventSink, Pipeline, PipelineOptions};
use shardwatch::route::{RouteBatch, RouteRecord};
use shardwatch::shard::ShardStates;
use shardwatch::shardmap::ShardMap;
use shardwatch_rules::{Event, RuleSet};

/// Counts what the pipeline hands out and batches routed records, as the
/// server does, without sending them anywhere.
#[derive(Default)]
struct CountingSink {
    quarantined: u64,
    detections: u64,
    batch: RouteBatch,
}

impl EventSink for CountingSink {
    fn quarantine(&mut self, _reason: &'static str, _offset: Option<usize>, _raw: &[u8]) {
        self.quarantined += 1;
    }
    fn detection(&mut self, _detection: u32, _event: &Event<'_>, _received_ns: i64) {
        self.detections += 1;
    }
    fn route(&mut self, record: &RouteRecord<'_>, _owner: u16) {
        if self.batch.is_full() {
            self.batch = RouteBatch::default();
        }
        self.batch.push(record);
    }
}

fn lines() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "sshd_failure_routed",
            b"<38>Nov 27 10:00:01 bastion sshd[4242]: Failed password for root from 203.0.113.7 port 40001 ssh2".to_vec(),
        ),
        (
            "cron_no_match",
            b"<78>Nov 27 10:00:01 web01 CRON[1234]: (root) CMD (run-parts /etc/cron.hourly)".to_vec(),
        ),
        (
            "rfc5424_no_match",
            b"<165>1 2026-11-27T10:00:01.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] An application event".to_vec(),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let (rules, errors) = RuleSet::compile_lenient(&RuleSet::builtin_sources());
    assert!(errors.is_empty(), "built-in rules must load: {errors:?}");
    let rules = Arc::new(rules);
    let map = Arc::new(ShardMap::new(1, 4096, 2));
    let mut group = c.benchmark_group("match_route");
    group.throughput(Throughput::Elements(1));
    for (name, line) in lines() {
        let mut pipeline = Pipeline::new(rules.clone(), map.clone(), PipelineOptions::default());
        let mut sink = CountingSink::default();
        group.bench_function(name, |b| {
            b.iter(|| pipeline.process(black_box(&line), 1_764_237_601_000_000_000, &mut sink))
        });
    }
    group.finish();

    // The owner side: one record into a shard's correlation state. Times
    // advance so windows keep sliding, as under a steady brute force.
    let mut pipeline = Pipeline::new(rules.clone(), map.clone(), PipelineOptions::default());
    let mut sink = CountingSink::default();
    pipeline.process(&lines()[0].1, 1_764_237_601_000_000_000, &mut sink);
    let record_bytes = sink.batch;
    let record = record_bytes.iter().next().expect("the sshd line is routed");
    let mut states = ShardStates::new(10_000, 0);
    let mut t = 0i64;
    let mut fired = Vec::new();
    let mut observe = c.benchmark_group("shard");
    observe.throughput(Throughput::Elements(1));
    observe.bench_function("observe", |b| {
        b.iter(|| {
            t += 1_000_000;
            let rec = RouteRecord {
                time_ns: t,
                ..record
            };
            assert!(states.observe(&rules, &rec, &mut fired));
            black_box(fired.drain(..).count())
        })
    });
    observe.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
