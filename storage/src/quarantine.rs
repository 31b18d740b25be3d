//! The quarantine file: every line the appliance could not accept.
//!
//! Format: `<data>/quarantine.jsonl`, one JSON object per line:
//!
//! ```text
//! {"received_ns":1764240000000000000,"source":"127.0.0.1:40000","transport":"udp",
//!  "reason":"bad_pri","offset":3,"raw":"<9x>oops","raw_hex":"3c39783e6f6f7073"}
//! ```
//!
//! `raw` is the line as lossy UTF-8 for reading; `raw_hex` holds the exact
//! bytes, so nothing about a rejected line is lost. Quarantine is bounded by
//! `bytes_max` with oldest-first eviction: the current file holds at most
//! half of it; when it is full it becomes `quarantine.1.jsonl` (replacing
//! the previous generation, whose records are evicted and counted in
//! [`QuarantineWriter::evicted_total`]) and a fresh file starts. Readers
//! take `quarantine.1.jsonl` then `quarantine.jsonl`, oldest first.
//!
//! Quarantine is the rare path, so one writer is shared by all cores behind a
//! mutex; the hot path never touches it for well-formed input.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::{push_json_str, StorageError};

/// Default cap on the quarantine file size.
pub const QUARANTINE_BYTES_MAX_DEFAULT: u64 = 256 * 1024 * 1024;

/// One rejected line.
#[derive(Debug, Clone, Copy)]
pub struct QuarantineRecord<'a> {
    pub received_ns: i64,
    pub source: &'a str,
    pub transport: &'a str,
    pub reason: &'a str,
    /// Byte offset in `raw` where the problem was found, if known.
    pub offset: Option<usize>,
    pub raw: &'a [u8],
}

/// Appends quarantine records to one bounded JSON-lines file.
pub struct QuarantineWriter {
    path: PathBuf,
    inner: Mutex<Inner>,
    bytes_max: u64,
    written_total: AtomicU64,
    refused_total: AtomicU64,
    evicted_total: AtomicU64,
}

struct Inner {
    out: BufWriter<File>,
    bytes: u64,
    /// Records in the current file (evicted as a whole at rotation).
    records: u64,
    line: String,
}

/// The older generation's file name.
pub const ROTATED_FILE: &str = "quarantine.1.jsonl";
/// The current file name.
pub const CURRENT_FILE: &str = "quarantine.jsonl";

impl QuarantineWriter {
    /// Opens (appending) `<dir>/quarantine.jsonl`.
    pub fn open(dir: &Path, bytes_max: u64) -> Result<Self, StorageError> {
        let path = dir.join(CURRENT_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| StorageError::Open {
                path: path.clone(),
                source,
            })?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let records = std::fs::read(&path)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
            .unwrap_or(0);
        Ok(QuarantineWriter {
            path,
            inner: Mutex::new(Inner {
                out: BufWriter::new(file),
                bytes,
                records,
                line: String::with_capacity(1024),
            }),
            bytes_max,
            written_total: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            evicted_total: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record. Returns false when the file is full and the record
    /// was refused (and counted).
    pub fn write(&self, record: &QuarantineRecord<'_>) -> Result<bool, StorageError> {
        // A poisoned lock only means another thread panicked mid-write; the
        // buffered file is still usable, so keep going rather than lose lines.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner {
            out,
            bytes,
            records,
            line,
        } = &mut *inner;
        line.clear();
        line.push_str("{\"received_ns\":");
        line.push_str(&record.received_ns.to_string());
        line.push_str(",\"source\":\"");
        push_json_str(line, record.source.as_bytes());
        line.push_str("\",\"transport\":\"");
        push_json_str(line, record.transport.as_bytes());
        line.push_str("\",\"reason\":\"");
        push_json_str(line, record.reason.as_bytes());
        line.push('"');
        if let Some(offset) = record.offset {
            line.push_str(",\"offset\":");
            line.push_str(&offset.to_string());
        }
        line.push_str(",\"raw\":\"");
        push_json_str(line, record.raw);
        line.push_str("\",\"raw_hex\":\"");
        for b in record.raw {
            line.push_str(&format!("{b:02x}"));
        }
        line.push_str("\"}\n");
        let half = self.bytes_max / 2;
        if line.len() as u64 > half {
            // A record larger than a generation can never fit: refuse it.
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        if *bytes + line.len() as u64 > half {
            self.rotate(out, bytes, records)?;
        }
        out.write_all(line.as_bytes())
            .map_err(|source| StorageError::Write {
                path: self.path.clone(),
                source,
            })?;
        *bytes += line.len() as u64;
        *records += 1;
        self.written_total.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Moves the current file to the older generation (evicting that one)
    /// and starts a fresh current file.
    fn rotate(
        &self,
        out: &mut BufWriter<File>,
        bytes: &mut u64,
        records: &mut u64,
    ) -> Result<(), StorageError> {
        let map = |source| StorageError::Write {
            path: self.path.clone(),
            source,
        };
        out.flush().map_err(map)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let rotated = dir.join(ROTATED_FILE);
        let evicted = std::fs::read(&rotated)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
            .unwrap_or(0);
        std::fs::rename(&self.path, &rotated).map_err(map)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|source| StorageError::Open {
                path: self.path.clone(),
                source,
            })?;
        *out = BufWriter::new(file);
        *bytes = 0;
        *records = 0;
        self.evicted_total.fetch_add(evicted, Ordering::Relaxed);
        Ok(())
    }

    /// Pushes buffered records to the file.
    pub fn flush(&self) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.out.flush().map_err(|source| StorageError::Write {
            path: self.path.clone(),
            source,
        })
    }

    pub fn written_total(&self) -> u64 {
        self.written_total.load(Ordering::Relaxed)
    }

    pub fn refused_total(&self) -> u64 {
        self.refused_total.load(Ordering::Relaxed)
    }

    /// Records dropped with the oldest generation at rotation.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sw-q-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_raw_bytes_and_evicts_the_oldest_generation() {
        let dir = temp_dir("cap");
        // Each record is ~150 bytes; a generation holds 300 bytes: two.
        let q = QuarantineWriter::open(&dir, 600).unwrap();
        let rec = |n: u8| QuarantineRecord {
            received_ns: i64::from(n),
            source: "127.0.0.1:9",
            transport: "udp",
            reason: "bad_pri",
            offset: Some(1),
            raw: b"<9x>\xff",
        };
        for n in 0..7 {
            assert!(q.write(&rec(n)).unwrap());
        }
        q.flush().unwrap();
        assert_eq!(q.written_total(), 7);
        // Generations: [0,1] evicted, [2,3] evicted, [4,5] rotated, [6] current.
        assert_eq!(q.evicted_total(), 4);
        let current = std::fs::read_to_string(q.path()).unwrap();
        let older = std::fs::read_to_string(dir.join(ROTATED_FILE)).unwrap();
        assert_eq!(current.lines().count(), 1);
        assert_eq!(older.lines().count(), 2);
        assert!(older
            .lines()
            .next()
            .unwrap()
            .starts_with("{\"received_ns\":4,"));
        let first = current.lines().next().unwrap();
        assert!(first.contains("\"reason\":\"bad_pri\""), "{first}");
        assert!(first.contains("\"raw_hex\":\"3c39783eff\""), "{first}");
        assert!(first.contains("\"offset\":1"), "{first}");
        let huge = QuarantineRecord {
            raw: &[b'x'; 400],
            ..rec(9)
        };
        assert!(!q.write(&huge).unwrap(), "larger than a generation");
        assert_eq!(q.refused_total(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
