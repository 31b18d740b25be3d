//! The alert log: `<data>/alerts.jsonl`, one alert per line, append-only.
//!
//! The engine renders each alert as one JSON object; this module only
//! appends lines and makes them durable on request. Alert ids are
//! deterministic (rule, group, window), so a consumer that re-reads the file
//! after a restart can drop ids it has already delivered.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::StorageError;

/// Append-only JSON-lines alert file.
pub struct AlertLog {
    path: PathBuf,
    out: BufWriter<File>,
    lines_total: u64,
}

impl AlertLog {
    /// Opens (appending) `<dir>/alerts.jsonl`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join("alerts.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| StorageError::Open {
                path: path.clone(),
                source,
            })?;
        Ok(AlertLog {
            path,
            out: BufWriter::new(file),
            lines_total: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one alert line. `line` must be one JSON object without a
    /// newline; the newline is added here.
    pub fn append(&mut self, line: &str) -> Result<(), StorageError> {
        assert!(
            !line.contains('\n'),
            "an alert line must not contain a newline"
        );
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| StorageError::Write {
                path: self.path.clone(),
                source,
            })?;
        self.lines_total += 1;
        Ok(())
    }

    /// Writes buffered lines to the file and, with `durable`, fsyncs it.
    pub fn flush(&mut self, durable: bool) -> Result<(), StorageError> {
        let map = |source| StorageError::Write {
            path: self.path.clone(),
            source,
        };
        self.out.flush().map_err(map)?;
        if durable {
            self.out
                .get_ref()
                .sync_data()
                .map_err(|source| StorageError::Write {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    pub fn lines_total(&self) -> u64 {
        self.lines_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_across_reopen() {
        let dir = std::env::temp_dir().join(format!("sw-alerts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = AlertLog::open(&dir).unwrap();
        log.append("{\"id\":\"a\"}").unwrap();
        log.flush(true).unwrap();
        drop(log);
        let mut log = AlertLog::open(&dir).unwrap();
        log.append("{\"id\":\"b\"}").unwrap();
        log.flush(false).unwrap();
        assert_eq!(log.lines_total(), 1);
        let text = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
        assert_eq!(text, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
