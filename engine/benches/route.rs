//! Match + route per event: the ingest core's whole per-line cost (parse,
//! extract, stateless rules, group key, shard placement) with the built-in
//! rule pack, the owning core's per-record cost (correlation observe), and
//! what the metrics add to them (the same `CoreStats` calls the core makes
//! per TCP line, per read batch and per alert).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardwatch::pipeline::{EventSink, Pipeline, PipelineOptions};
use shardwatch::route::{RouteBatch, RouteRecord};
use shardwatch::shard::{ShardStates, WindowClock};
use shardwatch::shardmap::ShardMap;
use shardwatch::stats::{add, CoreStats};
use shardwatch::timefmt::now_ns;
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
        // Structured payloads: decoded, then aliased (and dataset-tagged).
        (
            "cef_firewall",
            b"<134>Nov 27 10:00:01 fw-01 CEF:0|Palo Alto Networks|PAN-OS|10.2.4|TRAFFIC|end|3|rt=1795996800077 src=10.0.1.91 dst=100.116.138.55 spt=53262 dpt=443 proto=TCP act=allow suser=corp\\carol4 cs1Label=Rule cs1=allow-web cnt=1".to_vec(),
        ),
        (
            "kv_fortigate",
            b"<189>Nov 27 10:00:01 fgt-edge date=2026-11-27 time=10:00:01 devname=\"fgt-edge\" logid=\"0000000013\" type=\"traffic\" subtype=\"forward\" srcip=10.0.1.20 srcport=51234 dstip=93.184.216.34 dstport=443 action=\"accept\" service=\"HTTPS\" sentbyte=1200 rcvdbyte=5400".to_vec(),
        ),
        (
            "netfilter_ufw",
            b"<4>Nov 27 10:00:01 gw01 kernel: [1234567.123456] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.23 DST=10.0.1.20 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=40421 DF PROTO=TCP SPT=51234 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0".to_vec(),
        ),
        (
            "json_cloudtrail",
            b"<110>1 2026-11-27T10:00:01.028933Z audit-collector cloudtrail - - - {\"eventVersion\":\"1.08\",\"eventTime\":\"2026-11-27T10:00:01.028933Z\",\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"GetObject\",\"awsRegion\":\"eu-west-1\",\"sourceIPAddress\":\"10.0.1.69\",\"userIdentity\":{\"type\":\"IAMUser\",\"userName\":\"judy1\",\"accountId\":\"123456789012\"},\"requestID\":\"535ac5b25c93a248\",\"readOnly\":true}".to_vec(),
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
    let mut states = ShardStates::new(10_000, 0, WindowClock::EventTime);
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

    // Metrics on the hot path: per TCP line the core counts the frame, the
    // journaled line, the parsed event and (on the owner) the shard record
    // and marks its shard seen; per read batch it reads the clock and
    // records the processing lag; per alert it counts it and records its
    // detection latency.
    let stats = CoreStats::new(2, 4096);
    let mut metrics = c.benchmark_group("metrics");
    metrics.throughput(Throughput::Elements(1));
    let mut shard = 0u16;
    metrics.bench_function("per_line", |b| {
        b.iter(|| {
            shard = (shard + 1) & 4095;
            add(&stats.tcp_frames, 1);
            add(&stats.journal_lines, 1);
            add(&stats.events_parsed, 1);
            add(&stats.shard_records, 1);
            stats.shard_seen(black_box(shard));
        })
    });
    let received_ns = now_ns();
    metrics.bench_function("per_batch", |b| {
        b.iter(|| {
            let lag_ns = (now_ns() - black_box(received_ns)).max(0);
            stats.processing_lag.record_us(lag_ns as u64 / 1_000);
        })
    });
    let mut us = 0u64;
    metrics.bench_function("per_alert", |b| {
        b.iter(|| {
            us = (us + 37) % 100_000;
            add(&stats.alerts, 1);
            stats.detection_latency.record_us(black_box(us));
        })
    });
    // What a `/metrics` read does per histogram (the core's records wait
    // for the part done under the histogram's lock).
    metrics.bench_function("histogram_snapshot", |b| {
        b.iter(|| black_box(stats.detection_latency.snapshot()))
    });
    metrics.finish();
    black_box(
        stats
            .events_parsed
            .load(std::sync::atomic::Ordering::Relaxed),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
