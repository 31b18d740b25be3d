//! The file output: alerts appended to a JSON-lines file that rotates by
//! size (`path`, `path.1`, … `path.N`, oldest dropped).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
    /// Lines of a failed batch that its attempt did write: the retry
    /// skips them.
    written_ahead: Vec<String>,
    /// The lines the newest files held when this output started (read at
    /// the first delivery, `None` until then): after a restart the output
    /// loop delivers again from its saved cursor, and lines written
    /// before a crash kept it from moving the cursor are skipped, not
    /// written twice, also where that batch spanned rotations. Emptied
    /// once a delivery goes past them.
    held_at_start: Option<HashSet<String>>,
}

/// How much of the newest files [`RotatingFile`] reads at start to find
/// the lines they already hold: several batches of the output loop.
const RESUME_TAIL_BYTES: u64 = 4 << 20;

impl RotatingFile {
    pub fn new(path: PathBuf, rotate_bytes: u64, keep: usize) -> RotatingFile {
        RotatingFile {
            path,
            rotate_bytes: rotate_bytes.max(1),
            keep: keep.max(1),
            file: None,
            size: 0,
            cut_pending: false,
            written_ahead: Vec::new(),
            held_at_start: None,
        }
    }

    /// How many of `lines`, from the first, the files already held when
    /// this output started.
    fn held_prefix(&mut self, lines: &[String]) -> usize {
        if self.held_at_start.is_none() {
            let older: Vec<PathBuf> = (1..=self.keep).map(|n| self.numbered(n)).collect();
            self.held_at_start = Some(held_lines(&self.path, &older));
        }
        let Some(held) = self.held_at_start.as_mut() else {
            return 0;
        };
        if held.is_empty() {
            return 0;
        }
        let n = lines
            .iter()
            .take_while(|line| held.contains(line.as_str()))
            .count();
        if n < lines.len() {
            // Past what the files held: nothing later can be there.
            *held = HashSet::new();
        }
        n
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
    /// file ended, so the retry of the batch adds no torn line, and the
    /// lines an attempt did write (to a file since rotated away, or before
    /// a rotation that failed) are remembered and skipped when the retry
    /// starts with them, so none is written twice.
    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()> {
        // The output loop retries a failed batch from the same place in
        // the alert log: it starts with the same lines (and may have more).
        let ahead = if !self.written_ahead.is_empty() && lines.starts_with(&self.written_ahead) {
            self.written_ahead.len()
        } else {
            0
        };
        let skip = ahead.max(self.held_prefix(lines));
        let result = self.deliver_from(lines, skip);
        match result {
            Ok(()) => self.written_ahead.clear(),
            Err((_, written)) => {
                self.written_ahead.clear();
                self.written_ahead.extend_from_slice(&lines[..written]);
            }
        }
        result.map_err(|(err, _)| err)
    }
}

impl RotatingFile {
    /// [`Deliver::deliver`] of `lines[skip..]`; on failure, also how many
    /// of `lines` are in files by then.
    fn deliver_from(
        &mut self,
        lines: &[String],
        skip: usize,
    ) -> Result<(), (anyhow::Error, usize)> {
        let mut chunk = Vec::new();
        let mut chunk_from = skip;
        for (i, line) in lines.iter().enumerate().skip(skip) {
            let pending = chunk.len() as u64;
            if self.size + pending > 0
                && self.size + pending + line.len() as u64 + 1 > self.rotate_bytes
            {
                self.write_chunk(&chunk).map_err(|err| (err, chunk_from))?;
                chunk.clear();
                chunk_from = i;
                self.rotate().map_err(|err| (err, chunk_from))?;
            }
            chunk.extend_from_slice(line.as_bytes());
            chunk.push(b'\n');
        }
        self.write_chunk(&chunk).map_err(|err| (err, chunk_from))
    }

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

/// The complete lines at the end of `path` and of the files rotated
/// before it (`older`, newest first), [`RESUME_TAIL_BYTES`] in all, read
/// from the newest back: a batch a crash cut short may have rotated the
/// file once or more part-way, so its first lines are in `path.1` (or
/// further) and its last in `path`. A file missing (a crash between two
/// renames of a rotation) is passed over. A last line of `path` without
/// its newline (a write torn by a crash or power loss) is cut off first,
/// so the line is written whole again. Best effort: a file that cannot
/// be read holds nothing, and the files older than it are not read.
fn held_lines(path: &Path, older: &[PathBuf]) -> HashSet<String> {
    let mut held = HashSet::new();
    let mut budget = RESUME_TAIL_BYTES;
    let files = std::iter::once(path).chain(older.iter().map(PathBuf::as_path));
    for (i, file) in files.enumerate() {
        if budget == 0 {
            break;
        }
        match read_tail(file, i == 0, budget) {
            Ok(Some((tail, read))) => {
                held.extend(tail.lines().map(str::to_owned));
                budget = budget.saturating_sub(read);
            }
            Ok(None) => {}
            Err(err) => {
                eprintln!(
                    "shardwatch: file output: cannot read what {} holds ({err:#}); lines written before a crash may be written again",
                    file.display()
                );
                break;
            }
        }
    }
    held
}

/// The last `budget` bytes of `path` as whole lines, and how many bytes
/// were read (`None`: the file is missing or empty). With `repair`, a
/// torn last line is cut off the file; without, it is left out.
fn read_tail(path: &Path, repair: bool, budget: u64) -> anyhow::Result<Option<(String, u64)>> {
    let mut file = match OpenOptions::new().read(true).write(repair).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot open {}", path.display())),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let from = len.saturating_sub(budget);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') else {
        // No whole line in the tail read: a torn first line, or one line
        // longer than the tail.
        if from == 0 && repair {
            file.set_len(0)
                .with_context(|| format!("cannot cut {}", path.display()))?;
            eprintln!(
                "shardwatch: file output: cut a torn line of {len} bytes off {}",
                path.display()
            );
        }
        return Ok(Some((String::new(), read)));
    };
    let end = last_newline + 1;
    if end < bytes.len() && repair {
        let whole = from + end as u64;
        file.set_len(whole)
            .with_context(|| format!("cannot cut {}", path.display()))?;
        eprintln!(
            "shardwatch: file output: cut a torn last line of {} bytes off {}",
            len - whole,
            path.display()
        );
    }
    // Reading from the middle of the file, the first line is partial.
    let start = if from == 0 {
        0
    } else {
        bytes[..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |at| at + 1)
    };
    Ok(Some((
        String::from_utf8_lossy(&bytes[start..end]).into_owned(),
        read,
    )))
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

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sw-rot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn text_of(lines: impl IntoIterator<Item = String>) -> String {
        lines.into_iter().map(|l| l + "\n").collect()
    }

    /// A restart delivers again from the output's saved cursor: the lines
    /// the file already holds are skipped, over several batches, and the
    /// rest written once.
    #[test]
    fn after_a_restart_the_lines_the_file_holds_are_not_written_again() {
        let dir = fresh_dir("restart");
        let path = dir.join("out.jsonl");
        let mut before = RotatingFile::new(path.clone(), 1 << 30, 2);
        before
            .deliver(&(0..10).map(alert).collect::<Vec<_>>())
            .unwrap();
        drop(before);
        let mut after = RotatingFile::new(path.clone(), 1 << 30, 2);
        after
            .deliver(&(4..7).map(alert).collect::<Vec<_>>())
            .unwrap();
        after
            .deliver(&(7..15).map(alert).collect::<Vec<_>>())
            .unwrap();
        // Past what the file held, a line like an old one is written.
        after.deliver(&[alert(3)]).unwrap();
        let mut want: Vec<String> = (0..15).map(alert).collect();
        want.push(alert(3));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text_of(want));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A last line without its newline (a write torn by a crash) is cut
    /// off at start and written whole by the delivery that follows.
    #[test]
    fn a_torn_last_line_is_cut_at_start_and_written_whole() {
        let dir = fresh_dir("torn");
        let path = dir.join("out.jsonl");
        let mut text = text_of((0..5).map(alert));
        text.push_str(&alert(5)[..7]);
        std::fs::write(&path, &text).unwrap();
        let mut out = RotatingFile::new(path.clone(), 1 << 30, 2);
        out.deliver(&(3..8).map(alert).collect::<Vec<_>>()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text_of((0..8).map(alert))
        );
        // Only a torn line: cut whole.
        std::fs::write(&path, &alert(0)[..5]).unwrap();
        let mut out = RotatingFile::new(path.clone(), 1 << 30, 2);
        out.deliver(&[alert(0)]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text_of([alert(0)]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Where the newest file is missing (rotated away just before a
    /// crash), the file rotated last is what the output held.
    #[test]
    fn after_a_rotation_the_rotated_file_is_what_was_held() {
        let dir = fresh_dir("rotated-restart");
        let path = dir.join("out.jsonl");
        std::fs::write(dir.join("out.jsonl.1"), text_of((0..6).map(alert))).unwrap();
        let mut out = RotatingFile::new(path.clone(), 1 << 30, 2);
        out.deliver(&(2..9).map(alert).collect::<Vec<_>>()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text_of((6..9).map(alert))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// All the files of the output, oldest first, as one text.
    fn all_files(path: &Path, keep: usize) -> String {
        let mut text = String::new();
        for n in (1..=keep).rev() {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            text += &std::fs::read_to_string(PathBuf::from(name)).unwrap_or_default();
        }
        text + &std::fs::read_to_string(path).unwrap_or_default()
    }

    /// A batch cut short by a crash after it had rotated the file twice:
    /// its first lines are in `out.jsonl.2`, the rest in `.1` and the
    /// newest file. The restart delivers it again from the saved cursor
    /// and skips every line any of those files holds.
    #[test]
    fn a_batch_that_spanned_rotations_is_not_written_again() {
        let dir = fresh_dir("spanned");
        let path = dir.join("out.jsonl");
        let keep = 20;
        let mut before = RotatingFile::new(path.clone(), 100, keep);
        before
            .deliver(&(0..5).map(alert).collect::<Vec<_>>())
            .unwrap();
        // The batch the crash cut short: the cursor stays at line 5.
        before
            .deliver(&(5..16).map(alert).collect::<Vec<_>>())
            .unwrap();
        drop(before);
        let newest_two = std::fs::read_to_string(&path).unwrap()
            + &std::fs::read_to_string(dir.join("out.jsonl.1")).unwrap();
        assert!(
            !newest_two.contains(&alert(5)),
            "the batch's first line is past two rotations"
        );
        let mut after = RotatingFile::new(path.clone(), 100, keep);
        after
            .deliver(&(5..24).map(alert).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(all_files(&path, keep), text_of((0..24).map(alert)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A crash between the renames of a rotation leaves a gap in the
    /// numbers (`.1` already renamed to `.2`, the newest file not yet to
    /// `.1`): the file past the gap is read too.
    #[test]
    fn a_gap_in_the_rotated_files_is_passed_over() {
        let dir = fresh_dir("gap");
        let path = dir.join("out.jsonl");
        let keep = 20;
        let mut before = RotatingFile::new(path.clone(), 150, keep);
        before
            .deliver(&(0..8).map(alert).collect::<Vec<_>>())
            .unwrap();
        drop(before);
        assert!(dir.join("out.jsonl.1").exists() && !dir.join("out.jsonl.2").exists());
        std::fs::rename(dir.join("out.jsonl.1"), dir.join("out.jsonl.2")).unwrap();
        let mut after = RotatingFile::new(path.clone(), 150, keep);
        after
            .deliver(&(1..12).map(alert).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(all_files(&path, keep), text_of((0..12).map(alert)));
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

    const ROTATED_CHILD: &str = "SW_FILE_OUTPUT_ROTATED_CHILD";

    /// The batch of the rotation test: small lines that fill a file, a
    /// line too big for the file size limit that rotates it, more small
    /// lines.
    fn rotated_batch() -> Vec<String> {
        let mut lines: Vec<String> = (0..20).map(alert).collect();
        lines.push(format!("{{\"big\":\"{}\"}}", "b".repeat(3500)));
        lines.extend((20..25).map(alert));
        lines
    }

    /// The child's part: the batch's first file is written and rotated
    /// away, then the write of the rest fails (the file size limit); the
    /// batch is retried as the output loop does, and succeeds once the
    /// limit is lifted.
    fn rotated_child(dir: &std::path::Path) {
        let limit = shardwatch_storage::testing::FileSizeLimit::take();
        let mut out = RotatingFile::new(dir.join("out.jsonl"), 4000, 5);
        let batch = rotated_batch();
        limit.set(3000);
        for _ in 0..3 {
            assert!(
                out.deliver(&batch).is_err(),
                "the big line's file crosses the limit"
            );
        }
        limit.lift();
        out.deliver(&batch).unwrap();
    }

    /// Lines an attempt wrote to a file that it then rotated away are not
    /// written again by the retries of the batch. Real failures: a child
    /// process (this test again) under a file size limit.
    #[test]
    fn a_retried_batch_skips_the_lines_rotated_away() {
        if let Some(dir) = std::env::var_os(ROTATED_CHILD) {
            rotated_child(std::path::Path::new(&dir));
            return;
        }
        let dir = std::env::temp_dir().join(format!("sw-rot-ahead-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        shardwatch_storage::testing::rerun_as_child(
            "outputs::file::tests::a_retried_batch_skips_the_lines_rotated_away",
            ROTATED_CHILD,
            &dir,
        );
        let text = all_files(&dir.join("out.jsonl"), 5);
        let want: String = rotated_batch().iter().map(|l| l.clone() + "\n").collect();
        assert_eq!(text.lines().count(), want.lines().count(), "no line twice");
        assert_eq!(text, want);
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
