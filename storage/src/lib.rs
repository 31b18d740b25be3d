//! shardwatch-storage: the files the appliance writes.
//!
//! This crate owns file formats and nothing else: it knows records as opaque
//! bytes plus the few labels a file needs (a reason, a source address). It
//! never parses events or evaluates rules.
//!
//! - [`quarantine`]: lines that could not be accepted, with raw bytes,
//!   source and reason, as JSON lines.
//! - [`alerts`]: the append-only alert log (`alerts.jsonl`).
//! - [`journal`]: per-core segment files of received lines (glommio DMA
//!   writes, CRC32C per record, torn-tail repair, retention).
//! - [`checkpoint`]: atomically written, validated checkpoint files.
//! - [`crc`]: CRC32C of journal records (three interleaved lanes).

pub mod alerts;
pub mod checkpoint;
pub mod crc;
pub mod journal;
pub mod quarantine;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use std::path::PathBuf;

/// Errors name the file they are about, so an operator knows where to look.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Appends `bytes` to `out` as the body of a JSON string (without quotes),
/// escaping what JSON requires. Invalid UTF-8 sequences become U+FFFD: the
/// exact bytes are kept separately where a file needs them.
pub fn push_json_str(out: &mut String, bytes: &[u8]) {
    for ch in String::from_utf8_lossy(bytes).chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping_round_trips_through_a_json_parser_shape() {
        let mut s = String::new();
        push_json_str(&mut s, b"a\"b\\c\nd\x01\xff");
        assert_eq!(s, "a\\\"b\\\\c\\nd\\u0001\u{fffd}");
    }
}
