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
    /// Opens (appending) `<dir>/alerts.jsonl`. A last line without its
    /// newline (a write cut by a crash) is cut off first; see
    /// [`repair_tail`].
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join("alerts.jsonl");
        repair_tail(&path)?;
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

/// Cuts a trailing partial line (no final newline) off the alert log at
/// `path`; returns the bytes cut (0 when the file ends cleanly or is
/// missing).
pub fn repair_tail(path: &Path) -> Result<u64, StorageError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(StorageError::Open {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let err = |source| StorageError::Write {
        path: path.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(err)?.len();
    if len == 0 {
        return Ok(0);
    }
    // Look back in chunks for the last newline.
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start)).map_err(err)?;
        file.read_exact(&mut chunk[..n]).map_err(err)?;
        if let Some(at) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + at as u64 + 1;
            if keep < len {
                file.set_len(keep).map_err(err)?;
                file.sync_all().map_err(err)?;
            }
            return Ok(len - keep);
        }
        end = start;
    }
    file.set_len(0).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(len)
}

/// The complete lines of the last `max_bytes` of the alert log at `path`
/// (a first line cut by the window is skipped), oldest first.
pub fn tail_lines(path: &Path, max_bytes: u64) -> Result<Vec<String>, StorageError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StorageError::Open {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let err = |source| StorageError::Open {
        path: path.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(err)?.len();
    let start = len.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start)).map_err(err)?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut bytes).map_err(err)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        let first_end = text.find('\n').map_or(text.len(), |i| i + 1);
        text.drain(..first_end);
    }
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
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

    #[test]
    fn a_torn_last_line_is_cut_on_open_and_the_tail_reads_back() {
        let dir = std::env::temp_dir().join(format!("sw-alerts-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alerts.jsonl");
        std::fs::write(&path, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c").unwrap();
        assert_eq!(repair_tail(&path).unwrap(), 8);
        let mut log = AlertLog::open(&dir).unwrap();
        log.append("{\"id\":\"d\"}").unwrap();
        log.flush(true).unwrap();
        let lines = tail_lines(&path, 1 << 20).unwrap();
        assert_eq!(
            lines,
            vec!["{\"id\":\"a\"}", "{\"id\":\"b\"}", "{\"id\":\"d\"}"]
        );
        // A window that starts inside a line skips that line.
        assert_eq!(tail_lines(&path, 14).unwrap(), vec!["{\"id\":\"d\"}"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
