//! Payload decoder throughput: per decoder, bytes and events per second
//! over the golden inputs that decoder claims, both through the engine's
//! whole per-line path (`parse_and_extract`) and for the decoder alone on
//! the message. For JSON the same input also goes through simd-json's raw
//! tape parse (reused buffers, and the allocating `to_tape`), so the ratio
//! of our flattening decode to simd-json's own parse can be read off.
//!
//! Events per second = lines per iteration / time per iteration; criterion
//! reports bytes per second (`Throughput::Bytes`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardwatch_net::decode::{self, json::JsonScratch, Arena};
use shardwatch_net::fields::Fields;
use shardwatch_net::syslog::ParseContext;
use shardwatch_net::{parse_and_extract, DecodeScratch, Decoder};

const CTX: ParseContext = ParseContext {
    now_ns: 1_795_780_800_000_000_000,
    default_offset_s: 0,
};

/// A decoder's benchmark input: whole lines, and (app key, message) pairs
/// cut out of them.
struct Corpus {
    lines: Vec<Vec<u8>>,
    messages: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Corpus {
    fn bytes(&self) -> u64 {
        self.lines.iter().map(|l| l.len() as u64).sum()
    }

    fn message_bytes(&self) -> u64 {
        self.messages.iter().map(|(_, m)| m.len() as u64).sum()
    }
}

/// The lines of the golden inputs `files` that `decoder` claims.
fn corpus(files: &[&str], decoder: Decoder) -> Corpus {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut scratch = DecodeScratch::new();
    let mut corpus = Corpus {
        lines: Vec::new(),
        messages: Vec::new(),
    };
    for file in files {
        let text = std::fs::read(dir.join(file)).expect("golden input");
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let mut fields = Fields::new();
            let Ok(parsed) = parse_and_extract(line, &CTX, &mut scratch, &mut fields) else {
                continue;
            };
            if parsed.decoder == Some(decoder) && parsed.issue.is_none() {
                corpus.lines.push(line.to_vec());
                corpus.messages.push((
                    parsed.syslog.app_key().to_vec(),
                    parsed.syslog.message.to_vec(),
                ));
            }
        }
    }
    assert!(
        !corpus.lines.is_empty(),
        "{files:?} has no {decoder:?} lines"
    );
    corpus
}

fn bench(c: &mut Criterion) {
    let sets: &[(&str, &[&str], Decoder)] = &[
        ("json", &["json.log"], Decoder::Json),
        ("xml", &["xml.log"], Decoder::Xml),
        ("cef", &["cef.log"], Decoder::Cef),
        ("leef", &["leef.log"], Decoder::Leef),
        ("kv", &["kv.log"], Decoder::Kv),
        ("csv", &["pfsense.log", "panos.log"], Decoder::Csv),
        ("text_asa", &["asa.log"], Decoder::Text),
    ];
    let mut scratch = DecodeScratch::new();
    let mut arena_buffer = vec![0u8; 1 << 20];
    let mut json_scratch = JsonScratch::default();
    for (name, files, decoder) in sets {
        let corpus = corpus(files, *decoder);
        let mut group = c.benchmark_group(format!("decode_{name}"));
        eprintln!(
            "decode_{name}: {} lines per iteration, {} line bytes, {} message bytes",
            corpus.lines.len(),
            corpus.bytes(),
            corpus.message_bytes()
        );
        group.throughput(Throughput::Bytes(corpus.bytes()));
        group.bench_function("parse_and_extract", |b| {
            b.iter(|| {
                let mut n = 0;
                for line in &corpus.lines {
                    let mut fields = Fields::new();
                    let parsed =
                        parse_and_extract(black_box(line), &CTX, &mut scratch, &mut fields);
                    n += fields.len() + usize::from(parsed.is_ok());
                }
                n
            })
        });
        group.throughput(Throughput::Bytes(corpus.message_bytes()));
        group.bench_function("decoder_only", |b| {
            b.iter(|| {
                let mut n = 0;
                for (app, message) in &corpus.messages {
                    let mut fields = Fields::new();
                    let mut arena = Arena::over(&mut arena_buffer);
                    let payload = decode::payload(
                        app,
                        black_box(message),
                        &mut arena,
                        &mut json_scratch,
                        &mut fields,
                    );
                    n += fields.len() + usize::from(payload.decoder.is_some());
                }
                n
            })
        });
        if *decoder == Decoder::Json {
            let mut buffers = simd_json::Buffers::default();
            let mut tape = simd_json::tape::Tape(Vec::new());
            let mut copy = vec![0u8; 1 << 16];
            group.bench_function("simd_json_fill_tape", |b| {
                b.iter(|| {
                    let mut n = 0;
                    for (_, message) in &corpus.messages {
                        let copy = &mut copy[..message.len()];
                        copy.copy_from_slice(black_box(message));
                        let mut t =
                            std::mem::replace(&mut tape, simd_json::tape::Tape(Vec::new())).reset();
                        if simd_json::fill_tape(copy, &mut buffers, &mut t).is_ok() {
                            n += t.0.len();
                        }
                        tape = t.reset();
                    }
                    n
                })
            });
            group.bench_function("simd_json_to_tape", |b| {
                b.iter(|| {
                    let mut n = 0;
                    for (_, message) in &corpus.messages {
                        let mut copy = message.clone();
                        if let Ok(t) = simd_json::to_tape(black_box(&mut copy)) {
                            n += t.0.len();
                        }
                    }
                    n
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
