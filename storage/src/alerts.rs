//! The alert log: `<data>/alerts.jsonl`, one alert per line, append-only.
//!
//! The engine renders each alert as one JSON object; this module only
//! appends lines and makes them durable on request. Alert ids are
//! deterministic (rule, group, window), so a consumer that re-reads the file
//! after a restart can drop ids it has already delivered.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StorageError;

/// Lines appended and not yet written are held up to this many bytes
/// (a disk that stays full); past it [`AlertLog::append`] refuses.
pub const PENDING_BYTES_MAX: usize = 64 << 20;

/// Append-only JSON-lines alert file.
///
/// Lines are buffered in memory until [`AlertLog::flush`] writes them in
/// one `write`. A write that fails (a full disk, an I/O error, a file
/// size limit) may have put part of the buffer in the file: the file is
/// cut back to its last complete line, and the lines stay buffered for
/// the next flush, so the log never holds a torn line or a line twice.
/// Should the cut fail too, the next flush cuts first and writes nothing
/// until the cut succeeds (appending after the partial line would fuse it
/// with the first retried line into one unreadable line).
pub struct AlertLog {
    path: PathBuf,
    file: File,
    /// Lines appended since the last successful write.
    pending: Vec<u8>,
    /// The file's length after the last successful write.
    written_len: u64,
    /// A failed write left bytes past `written_len` that could not be cut
    /// off yet.
    cut_pending: bool,
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
        let written_len = file
            .metadata()
            .map_err(|source| StorageError::Open {
                path: path.clone(),
                source,
            })?
            .len();
        Ok(AlertLog {
            path,
            file,
            pending: Vec::with_capacity(64 << 10),
            written_len,
            cut_pending: false,
            lines_total: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one alert line (written by the next [`AlertLog::flush`]).
    /// `line` must be one JSON object without a newline; the newline is
    /// added here. Returns false, appending nothing, when
    /// [`PENDING_BYTES_MAX`] bytes are already waiting to be written.
    pub fn append(&mut self, line: &str) -> bool {
        assert!(
            !line.contains('\n'),
            "an alert line must not contain a newline"
        );
        if self.pending.len() + line.len() + 1 > PENDING_BYTES_MAX {
            return false;
        }
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
        self.lines_total += 1;
        true
    }

    /// Bytes appended and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Writes the appended lines to the file and, with `durable`, syncs
    /// it. On a failed write the file is cut back to its last complete
    /// line and the lines stay appended, for the next call.
    pub fn flush(&mut self, durable: bool) -> Result<(), StorageError> {
        let map = |source| StorageError::Write {
            path: self.path.clone(),
            source,
        };
        if self.cut_pending {
            self.file.set_len(self.written_len).map_err(map)?;
            self.cut_pending = false;
        }
        if !self.pending.is_empty() {
            if let Err(err) = self.file.write_all(&self.pending) {
                // If the cut fails too, the next flush tries it again
                // before writing; until then the file ends in a partial
                // line, which a reader skips and the next open cuts
                // (`repair_tail`).
                self.cut_pending = self.file.set_len(self.written_len).is_err();
                return Err(map(err));
            }
            self.written_len += self.pending.len() as u64;
            self.pending.clear();
        }
        if durable {
            self.file.sync_data().map_err(map)?;
        }
        Ok(())
    }

    /// A second descriptor of the log, to sync it on another thread while
    /// this one goes on writing: a `sync_data` of it makes durable
    /// everything [`AlertLog::flush`]ed before the sync began.
    pub fn sync_handle(&self) -> Result<File, StorageError> {
        self.file.try_clone().map_err(|source| StorageError::Write {
            path: self.path.clone(),
            source,
        })
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
        assert!(log.append("{\"id\":\"a\"}"));
        log.flush(true).unwrap();
        drop(log);
        let mut log = AlertLog::open(&dir).unwrap();
        assert!(log.append("{\"id\":\"b\"}"));
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
        assert!(log.append("{\"id\":\"d\"}"));
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

    /// The environment variable naming the directory when the write
    /// failure test runs as its own child process.
    const FSIZE_CHILD: &str = "SW_ALERT_LOG_FSIZE_CHILD";

    fn alert(i: usize) -> String {
        format!("{{\"id\":\"{i:08}\",\"pad\":\"{}\"}}", "z".repeat(i % 97))
    }

    /// The child's part: under a file size limit of 8 KiB, flushes fail
    /// part-way (a short write, then EFBIG); once the limit is lifted the
    /// next flush writes everything that was kept.
    fn fsize_child(dir: &Path) {
        let limit = crate::testing::FileSizeLimit::take();
        let mut log = AlertLog::open(dir).unwrap();
        limit.set(8 << 10);
        let mut failures = 0;
        for i in 0..400 {
            assert!(log.append(&alert(i)));
            if i % 5 == 4 && log.flush(false).is_err() {
                failures += 1;
                // Only whole lines in the file, and they are a prefix of
                // what was appended.
                let text = std::fs::read_to_string(log.path()).unwrap();
                assert!(
                    text.ends_with('\n'),
                    "torn: {:?}",
                    &text[text.len().saturating_sub(40)..]
                );
                let n = text.lines().count();
                assert_eq!(text, (0..n).map(|i| alert(i) + "\n").collect::<String>());
            }
        }
        assert!(failures > 10, "{failures} failed flushes");
        limit.lift();
        log.flush(true).unwrap();
        assert_eq!(log.pending_bytes(), 0);
    }

    const CUT_CHILD: &str = "SW_ALERTS_CUT_CHILD";

    /// The child's part: a flush cut short while the file is append-only
    /// (so the cut back fails too) leaves a partial line; flushes while
    /// the cut still fails write nothing after it; once the cut works the
    /// file holds every line once and whole.
    fn cut_child(dir: &Path) {
        let limit = crate::testing::FileSizeLimit::take();
        let mut log = AlertLog::open(dir).unwrap();
        for i in 0..20 {
            assert!(log.append(&alert(i)));
        }
        log.flush(false).unwrap();
        let whole = std::fs::metadata(log.path()).unwrap().len();
        crate::testing::set_append_only(log.path(), true).unwrap();
        for i in 20..60 {
            assert!(log.append(&alert(i)));
        }
        limit.set(whole + 100);
        assert!(log.flush(false).is_err(), "the write crosses the limit");
        limit.lift();
        let torn = std::fs::metadata(log.path()).unwrap().len();
        assert_eq!(torn, whole + 100, "a short write, not cut back");
        for _ in 0..3 {
            assert!(log.flush(false).is_err(), "the cut still fails");
            assert_eq!(std::fs::metadata(log.path()).unwrap().len(), torn);
        }
        crate::testing::set_append_only(log.path(), false).unwrap();
        log.flush(true).unwrap();
        assert_eq!(log.pending_bytes(), 0);
    }

    /// A failed write whose cut back fails too (the file is append-only
    /// for a while) is cut before anything else is written, so the
    /// partial line never fuses with the next. Real failures: a child
    /// process (this test again) under a file size limit, with the file's
    /// append-only attribute set and cleared.
    #[test]
    fn a_failed_cut_is_retried_before_the_next_write() {
        if let Some(dir) = std::env::var_os(CUT_CHILD) {
            cut_child(Path::new(&dir));
            return;
        }
        let dir = std::env::temp_dir().join(format!("sw-alerts-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if !crate::testing::append_only_supported(&dir) {
            eprintln!("skipped: the append-only attribute cannot be set in {dir:?} (needs root and ext4, xfs or btrfs)");
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        }
        crate::testing::rerun_as_child(
            "alerts::tests::a_failed_cut_is_retried_before_the_next_write",
            CUT_CHILD,
            &dir,
        );
        let text = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
        assert_eq!(text, (0..60).map(|i| alert(i) + "\n").collect::<String>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A flush that fails part-way leaves only whole lines in the file and
    /// keeps the rest; the next flush writes them, each once. The failure
    /// is real: a child process (this test again) under a file size
    /// limit.
    #[test]
    fn a_failed_flush_cuts_the_partial_line_and_keeps_the_alerts() {
        if let Some(dir) = std::env::var_os(FSIZE_CHILD) {
            fsize_child(Path::new(&dir));
            return;
        }
        let dir = std::env::temp_dir().join(format!("sw-alerts-fsize-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        crate::testing::rerun_as_child(
            "alerts::tests::a_failed_flush_cuts_the_partial_line_and_keeps_the_alerts",
            FSIZE_CHILD,
            &dir,
        );
        let text = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
        assert_eq!(text, (0..400).map(|i| alert(i) + "\n").collect::<String>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
