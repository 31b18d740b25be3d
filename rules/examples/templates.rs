//! Mines templates from the `Content` column of a loghub structured CSV
//! (or from every line of a plain file) and prints
//! `LineId,EventId,EventTemplate` as CSV, for `perf/scripts/template_eval.py`.
//!
//! Usage: `cargo run -p shardwatch-rules --example templates -- FILE`.
//! A file ending in `.csv` is read as loghub's structured CSV; anything
//! else is one message per line.

use std::io::Write;

use shardwatch_rules::TemplateMiner;

/// Splits one CSV record (RFC 4180 quoting) into fields.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn csv_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: templates FILE");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&path)?;
    let mut lines = text.lines();
    let mut messages: Vec<(String, String)> = Vec::new();
    if path.ends_with(".csv") {
        let header = csv_fields(lines.next().unwrap_or_default());
        let column = |name: &str| header.iter().position(|h| h == name);
        let (Some(id_column), Some(content_column)) = (column("LineId"), column("Content")) else {
            eprintln!("{path}: no LineId or Content column");
            std::process::exit(2);
        };
        for line in lines {
            let fields = csv_fields(line);
            let id = fields.get(id_column).cloned().unwrap_or_default();
            let content = fields.get(content_column).cloned().unwrap_or_default();
            messages.push((id, content));
        }
    } else {
        for (number, line) in lines.enumerate() {
            messages.push(((number + 1).to_string(), line.to_owned()));
        }
    }
    let mut miner = TemplateMiner::default();
    let mut clusters = Vec::with_capacity(messages.len());
    let mut texts = std::collections::HashMap::new();
    for (_, content) in &messages {
        let found = miner.mine(content.as_bytes());
        clusters.push(found.cluster);
        texts.insert(found.cluster, found.text.to_owned());
    }
    // Timing of a warm pass (every template known), on stderr so the CSV
    // stays clean: what the ingest path pays per event once warm.
    let started = std::time::Instant::now();
    let rounds = 20;
    let mut checksum = 0u64;
    for _ in 0..rounds {
        for (_, content) in &messages {
            checksum = checksum.wrapping_add(miner.mine(content.as_bytes()).id);
        }
    }
    let elapsed = started.elapsed();
    let mined = (rounds * messages.len()).max(1);
    eprintln!(
        "{} lines, {} templates, warm mine {:.0} ns/line (checksum {checksum:x})",
        messages.len(),
        miner.template_count(),
        elapsed.as_nanos() as f64 / mined as f64
    );
    // Each line is reported with the cluster it joined and that cluster's
    // final template (templates generalise as lines arrive), as the drain3
    // side of the evaluation does.
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "LineId,EventId,EventTemplate")?;
    for ((line_id, _), cluster) in messages.iter().zip(&clusters) {
        let text = texts.get(cluster).map_or("", String::as_str);
        writeln!(out, "{line_id},C{cluster},{}", csv_quote(text))?;
    }
    Ok(())
}
