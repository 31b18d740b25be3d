//! Parse cost per event: a 3164 sshd line, a 5424 line with structured
//! data, and parse plus extraction (the engine's per-event path).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardwatch_net::fields::Fields;
use shardwatch_net::framing::Framer;
use shardwatch_net::syslog::{parse, ParseContext};
use shardwatch_net::{parse_and_extract, DecodeScratch};

const CTX: ParseContext = ParseContext {
    now_ns: 1_795_780_800_000_000_000,
    default_offset_s: 0,
};

const SSHD_3164: &[u8] =
    b"<38>Nov 27 11:00:01 web1 sshd[101]: Failed password for invalid user admin from 198.51.100.7 port 40023 ssh2";
const SD_5424: &[u8] = br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] An application event log entry"#;
const SUDO_3164: &[u8] = b"<85>Nov 27 11:02:01 web1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx";

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("rfc3164_sshd", |b| {
        b.iter(|| parse(black_box(SSHD_3164), &CTX))
    });
    group.bench_function("rfc5424_sd", |b| b.iter(|| parse(black_box(SD_5424), &CTX)));
    // The engine makes a `Fields` per line (it costs nothing: the slots are
    // uninitialised) and reuses one `DecodeScratch` per core; so does the
    // bench.
    let mut scratch = DecodeScratch::new();
    group.bench_function("rfc3164_sshd_extract", |b| {
        b.iter(|| {
            let mut fields = Fields::new();
            let parsed = parse_and_extract(black_box(SSHD_3164), &CTX, &mut scratch, &mut fields);
            black_box(&fields);
            parsed.map(|p| p.rule)
        })
    });
    group.bench_function("rfc3164_sudo_extract", |b| {
        b.iter(|| {
            let mut fields = Fields::new();
            let parsed = parse_and_extract(black_box(SUDO_3164), &CTX, &mut scratch, &mut fields);
            black_box(&fields);
            parsed.map(|p| p.rule)
        })
    });
    group.finish();

    // Framing of a stream of LF frames, per frame.
    let mut stream = Vec::new();
    for _ in 0..1000 {
        stream.extend_from_slice(SSHD_3164);
        stream.push(b'\n');
    }
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("lf_1000_frames", |b| {
        b.iter(|| {
            let mut framer = Framer::default();
            let mut n = 0usize;
            for chunk in stream.chunks(1500) {
                framer.feed(black_box(chunk), |f| n += f.bytes.len());
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
