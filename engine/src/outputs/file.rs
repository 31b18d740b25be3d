//! The file output: alerts appended to a JSON-lines file that rotates by
//! size (`path`, `path.1`, … `path.N`, oldest dropped).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::Deliver;

pub struct RotatingFile {
    path: PathBuf,
    rotate_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
    /// A failed write left bytes past `size` in the current file that
    /// could not be cut off yet: cut them before anything else is written
    /// to it or it is rotated.
    cut_pending: bool,
}

impl RotatingFile {
    pub fn new(path: PathBuf, rotate_bytes: u64, keep: usize) -> RotatingFile {
        RotatingFile {
            path,
            rotate_bytes: rotate_bytes.max(1),
            keep: keep.max(1),
            file: None,
            size: 0,
            cut_pending: false,
        }
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> anyhow::Result<()> {
        self.file = None;
        let _ = std::fs::remove_file(self.numbered(self.keep));
        for n in (1..self.keep).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))
                    .with_context(|| format!("cannot rotate {}", from.display()))?;
            }
        }
        if self.path.exists() {
            std::fs::rename(&self.path, self.numbered(1))
                .with_context(|| format!("cannot rotate {}", self.path.display()))?;
        }
        self.size = 0;
        Ok(())
    }
}

impl Deliver for RotatingFile {
    fn name(&self) -> &str {
        "file"
    }

    /// Appends `lines`, rotating before a line that would take the file
    /// past `rotate_bytes`. The lines bound for one file go in one
    /// `write`; a write that fails (a full disk) is cut back to where the
    /// file ended, so the retry of the batch adds no torn line and no
    /// second copy (except of lines that went to a file rotated away
    /// earlier in the same batch).
    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()> {
        let mut chunk = Vec::new();
        for line in lines {
            let pending = chunk.len() as u64;
            if self.size + pending > 0
                && self.size + pending + line.len() as u64 + 1 > self.rotate_bytes
            {
                self.write_chunk(&chunk)?;
                chunk.clear();
                self.rotate()?;
            }
            chunk.extend_from_slice(line.as_bytes());
            chunk.push(b'\n');
        }
        self.write_chunk(&chunk)
    }
}

impl RotatingFile {
    /// Appends `chunk` to the current file (opened if need be) in one
    /// write; on failure the file is cut back to its length before. A cut
    /// that failed is done first, or nothing is written (appending after
    /// the partial line would fuse it with the next).
    fn write_chunk(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        if self.cut_pending {
            if let Some(file) = &self.file {
                file.set_len(self.size)
                    .with_context(|| format!("cannot cut {}", self.path.display()))?;
            }
            self.cut_pending = false;
        }
        if chunk.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("cannot open {}", self.path.display()))?;
            self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            anyhow::bail!("{} is not open", self.path.display());
        };
        if let Err(err) = file.write_all(chunk) {
            self.cut_pending = file.set_len(self.size).is_err();
            return Err(err).with_context(|| format!("cannot write {}", self.path.display()));
        }
        self.size += chunk.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = std::env::temp_dir().join(format!("sw-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let mut out = RotatingFile::new(path.clone(), 25, 2);
        let lines: Vec<String> = (0..6).map(|i| format!("{{\"n\":{i:05}}}")).collect();
        out.deliver(&lines).unwrap();
        // Each line is 12 bytes with its newline: two per file.
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert!(dir.join("out.jsonl.1").exists());
        assert!(dir.join("out.jsonl.2").exists());
        assert!(
            !dir.join("out.jsonl.3").exists(),
            "only `keep` rotated files"
        );
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.contains("00005"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The environment variable naming the directory when the write
    /// failure test runs as its own child process.
    const FSIZE_CHILD: &str = "SW_FILE_OUTPUT_FSIZE_CHILD";

    fn alert(i: usize) -> String {
        format!("{{\"n\":{i:05},\"pad\":\"{}\"}}", "q".repeat(i % 61))
    }

    /// The child's part: batches delivered under an 8 KiB file size
    /// limit fail part-way; each failed batch is delivered again, as the
    /// output loop does, and succeeds once the limit is lifted.
    fn fsize_child(dir: &std::path::Path) {
        let limit = shardwatch_storage::testing::FileSizeLimit::take();
        let mut out = RotatingFile::new(dir.join("out.jsonl"), 1 << 30, 2);
        limit.set(8 << 10);
        let batches: Vec<Vec<String>> = (0..40)
            .map(|b| (b * 10..b * 10 + 10).map(alert).collect())
            .collect();
        let mut failed = 0;
        for batch in &batches {
            while out.deliver(batch).is_err() {
                failed += 1;
                if failed % 5 == 0 {
                    limit.lift();
                }
            }
        }
        assert!(failed >= 5, "{failed} failed deliveries");
    }

    const CUT_CHILD: &str = "SW_FILE_OUTPUT_CUT_CHILD";

    /// The child's part: a batch cut short while the file is append-only
    /// (so the cut back fails too), retried while the cut still fails,
    /// then after the attribute is cleared.
    fn cut_child(dir: &std::path::Path) {
        use shardwatch_storage::testing::{set_append_only, FileSizeLimit};
        let limit = FileSizeLimit::take();
        let path = dir.join("out.jsonl");
        let mut out = RotatingFile::new(path.clone(), 1 << 30, 2);
        let first: Vec<String> = (0..10).map(alert).collect();
        out.deliver(&first).unwrap();
        let whole = std::fs::metadata(&path).unwrap().len();
        set_append_only(&path, true).unwrap();
        let second: Vec<String> = (10..40).map(alert).collect();
        limit.set(whole + 100);
        assert!(out.deliver(&second).is_err(), "the write crosses the limit");
        limit.lift();
        let torn = std::fs::metadata(&path).unwrap().len();
        assert_eq!(torn, whole + 100, "a short write, not cut back");
        for _ in 0..3 {
            assert!(out.deliver(&second).is_err(), "the cut still fails");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), torn);
        }
        set_append_only(&path, false).unwrap();
        out.deliver(&second).unwrap();
    }

    /// A failed write whose cut back fails too is cut before the retried
    /// batch is written, so no line is fused with a partial one. Real
    /// failures: a child process (this test again) under a file size
    /// limit, with the file's append-only attribute set and cleared.
    #[test]
    fn a_failed_cut_is_retried_before_the_batch() {
        if let Some(dir) = std::env::var_os(CUT_CHILD) {
            cut_child(std::path::Path::new(&dir));
            return;
        }
        let dir = std::env::temp_dir().join(format!("sw-rot-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if !shardwatch_storage::testing::append_only_supported(&dir) {
            eprintln!("skipped: the append-only attribute cannot be set in {dir:?} (needs root and ext4, xfs or btrfs)");
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        }
        shardwatch_storage::testing::rerun_as_child(
            "outputs::file::tests::a_failed_cut_is_retried_before_the_batch",
            CUT_CHILD,
            &dir,
        );
        let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
        assert_eq!(text, (0..40).map(|i| alert(i) + "\n").collect::<String>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Retried batches after failed writes leave each alert in the file
    /// once and whole. The failure is real: a child process (this test
    /// again) under a file size limit.
    #[test]
    fn a_failed_delivery_retried_leaves_each_alert_once() {
        if let Some(dir) = std::env::var_os(FSIZE_CHILD) {
            fsize_child(std::path::Path::new(&dir));
            return;
        }
        let dir = std::env::temp_dir().join(format!("sw-rot-fsize-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        shardwatch_storage::testing::rerun_as_child(
            "outputs::file::tests::a_failed_delivery_retried_leaves_each_alert_once",
            FSIZE_CHILD,
            &dir,
        );
        let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
        assert_eq!(text, (0..400).map(|i| alert(i) + "\n").collect::<String>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
