//! Checkpoint files: opaque payloads (the engine's rkyv archives) written
//! atomically and validated on load.
//!
//! # Format (version 1)
//!
//! `<dir>/<generation:020>.ckpt`, where generations grow by one per write:
//!
//! ```text
//! "SWCHKPT1" version:u32 crc:u32 len:u64 generation:u64 zero-pad to 32 bytes | payload (len bytes)
//! ```
//!
//! `crc` is CRC32C of the payload. The payload starts at offset 32, and is
//! read back into a 16-byte-aligned buffer, as rkyv requires.
//!
//! Writing: temp file `<name>.tmp`, write, fsync, rename, fsync the
//! directory; then all but the newest `keep` checkpoints are deleted. A crash
//! at any point leaves either the old or the new checkpoint complete.
//!
//! Loading: newest first; a file that fails its header, length, CRC or the
//! caller's own validation (rkyv bytecheck) is skipped with a reason, and the
//! previous one is tried.

use std::io::Write;
use std::path::{Path, PathBuf};

use rkyv::util::AlignedVec;

use crate::page_cache::{self, PAGE_BYTES};
use crate::StorageError;

const MAGIC: &[u8; 8] = b"SWCHKPT1";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 32;
const SUFFIX: &str = ".ckpt";

/// A checkpoint payload read back, aligned for rkyv.
#[derive(Debug)]
pub struct Loaded {
    pub generation: u64,
    pub path: PathBuf,
    pub payload: AlignedVec<16>,
}

/// The outcome of [`load_latest`].
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The newest checkpoint that passed every check.
    pub loaded: Option<Loaded>,
    /// Newer checkpoints that were refused, with the reason.
    pub rejected: Vec<(PathBuf, String)>,
}

/// The checkpoint files of `dir`, oldest first, with their generations.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StorageError::Open {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if let Ok(generation) = stem.parse::<u64>() {
            out.push((generation, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `payload` as checkpoint `generation` atomically, then deletes all
/// but the newest `keep` checkpoints. Returns the file written.
pub fn write(
    dir: &Path,
    generation: u64,
    payload: &[u8],
    keep: usize,
) -> Result<PathBuf, StorageError> {
    write_chunks(dir, generation, &[payload], keep)
}

/// [`write()`] for a payload given as consecutive chunks (written in order,
/// never joined in memory).
pub fn write_chunks<C: AsRef<[u8]>>(
    dir: &Path,
    generation: u64,
    chunks: &[C],
    keep: usize,
) -> Result<PathBuf, StorageError> {
    let mut writer = CheckpointWriter::create(dir, generation)?;
    for chunk in chunks {
        writer.append(chunk.as_ref())?;
    }
    writer.finish(keep)
}

/// A checkpoint written as its payload is produced, so the payload never
/// has to be held in memory whole: chunks go to `<name>.tmp` as they come
/// (the CRC and length accumulate), and [`CheckpointWriter::finish`] writes
/// the header, fsyncs, renames and fsyncs the directory. Dropped unfinished
/// (a failed write), it removes its temp file: on a disk that is full,
/// every failed checkpoint used to leave one behind until the next start,
/// keeping the disk full.
#[derive(Debug)]
pub struct CheckpointWriter {
    dir: PathBuf,
    generation: u64,
    temp: TempFile,
    out: std::io::BufWriter<std::fs::File>,
    crc: u32,
    len: u64,
    /// File offsets: writeback was started for everything before
    /// `started`, and finished for everything before `settled`; the
    /// page cache was given back the pages of `PAGE_BYTES..dropped` (a
    /// checkpoint is read again only by a restore; the first page, the
    /// header's, is written last, and the page a write ended in is
    /// written further, so neither goes before the fsync; see
    /// [`crate::page_cache`]).
    started: u64,
    settled: u64,
    dropped: u64,
}

/// A temp file removed when dropped (after a rename, there is nothing
/// left to remove).
#[derive(Debug)]
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::ops::Deref for TempFile {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

/// Writeback of a checkpoint is started every this many bytes, and the
/// previous range waited for, so at most about twice this is dirty in the
/// page cache at a time. Without it a checkpoint of a few hundred MB sat
/// dirty until the final fsync (or the kernel's flusher) wrote it all at
/// once, and the journal's direct writes queued behind that burst: at
/// 211 k events/s the node stopped reading for tens of ms per checkpoint.
pub const WRITEBACK_STEP_BYTES: u64 = 8 << 20;

/// The largest `write` a checkpoint makes, the largest range whose
/// writeback one call starts, and how much it writes between two offers
/// of the CPU (`sched_yield`). A checkpoint is written on the
/// executor's blocking pool, whose threads share CPUs with the cores when
/// the cores take every CPU (the default): one 4 MiB chunk held a CPU for
/// 2–6 ms on the 2-CPU VM, and whatever shared it waited that long. A
/// quarter MiB is copied into the page cache in about 0.1–0.45 ms.
pub const WRITE_PIECE_BYTES: usize = 256 << 10;

/// Starts writeback of bytes `from..to` of `fd` (`sync_file_range`, no
/// waiting) a [`WRITE_PIECE_BYTES`] piece at a time, yielding the CPU
/// between: one call submits every page of its range before it returns,
/// and an 8 MiB range held a CPU for up to ~9 ms. A kernel that refuses
/// the call only loses the pacing.
fn start_writeback(fd: std::os::fd::RawFd, from: u64, to: u64) {
    let mut at = from;
    while at < to {
        let end = (at + WRITE_PIECE_BYTES as u64).min(to);
        if let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(at),
            libc::off64_t::try_from(end - at),
        ) {
            // SAFETY: sync_file_range on a descriptor the caller holds
            // open; it reads nothing from user memory.
            unsafe { libc::sync_file_range(fd, offset, len, libc::SYNC_FILE_RANGE_WRITE) };
        }
        std::thread::yield_now();
        at = end;
    }
}

impl CheckpointWriter {
    pub fn create(dir: &Path, generation: u64) -> Result<CheckpointWriter, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let temp = dir.join(format!("{generation:020}{SUFFIX}.tmp"));
        let file = std::fs::File::create(&temp).map_err(|source| StorageError::Write {
            path: temp.clone(),
            source,
        })?;
        let temp = TempFile(temp);
        let mut out = std::io::BufWriter::with_capacity(WRITE_PIECE_BYTES, file);
        // The header's place; its contents are known at the end.
        out.write_all(&[0; HEADER_BYTES])
            .map_err(|source| StorageError::Write {
                path: temp.clone(),
                source,
            })?;
        Ok(CheckpointWriter {
            dir: dir.to_path_buf(),
            generation,
            temp,
            out,
            crc: 0,
            len: 0,
            started: 0,
            settled: 0,
            dropped: PAGE_BYTES,
        })
    }

    /// Starts writeback of what was written since the last step and waits
    /// for the step before it, once [`WRITEBACK_STEP_BYTES`] have gathered
    /// (`sync_file_range`: no metadata, no durability promise; `finish`'s
    /// fsync gives that). A kernel that refuses the call only loses the
    /// pacing.
    fn pace_writeback(&mut self) -> Result<(), StorageError> {
        use std::os::fd::AsRawFd;
        let written = HEADER_BYTES as u64 + self.len;
        if written - self.started < WRITEBACK_STEP_BYTES {
            return Ok(());
        }
        self.out.flush().map_err(|source| StorageError::Write {
            path: self.temp.clone(),
            source,
        })?;
        let fd = self.out.get_ref().as_raw_fd();
        start_writeback(fd, self.started, written);
        if self.started > self.settled {
            let at = libc::off64_t::try_from(self.settled).unwrap_or(libc::off64_t::MAX);
            let len = libc::off64_t::try_from(self.started - self.settled).unwrap_or(0);
            // SAFETY: an open descriptor; sync_file_range reads nothing
            // from user memory.
            unsafe {
                libc::sync_file_range(
                    fd,
                    at,
                    len,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                )
            };
            // Written back: whole pages before the one the last write
            // ended in are done with.
            let done = self.started / PAGE_BYTES * PAGE_BYTES;
            if done > self.dropped {
                page_cache::give_back(fd, self.dropped, Some(done));
                self.dropped = done;
            }
        }
        self.settled = self.started;
        self.started = written;
        Ok(())
    }

    /// Appends `chunk` to the payload, in `write`s of at most
    /// [`WRITE_PIECE_BYTES`], yielding the CPU after each.
    pub fn append(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        self.len += chunk.len() as u64;
        for piece in chunk.chunks(WRITE_PIECE_BYTES) {
            self.crc = crc32c::crc32c_append(self.crc, piece);
            self.out
                .write_all(piece)
                .map_err(|source| StorageError::Write {
                    path: self.temp.clone(),
                    source,
                })?;
            // The scheduler lets a running thread finish its slice
            // (milliseconds) before a thread that woke meanwhile gets
            // the CPU, whatever their priorities: a ready core thread
            // sharing this CPU would wait for the whole chunk.
            std::thread::yield_now();
        }
        self.pace_writeback()
    }

    /// Bytes of payload appended so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the header, makes the file durable and puts it in place,
    /// then deletes all but the newest `keep` checkpoints.
    pub fn finish(self, keep: usize) -> Result<PathBuf, StorageError> {
        use std::io::{Seek, SeekFrom};
        let temp = self.temp.clone();
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Write { path, source }
        };
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&self.crc.to_le_bytes());
        header.extend_from_slice(&self.len.to_le_bytes());
        header.extend_from_slice(&self.generation.to_le_bytes());
        header.resize(HEADER_BYTES, 0);
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| write_err(&temp)(e.into_error()))?;
        // What the last pacing step left, a piece at a time, so the sync
        // below finds it under way.
        start_writeback(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            self.started,
            HEADER_BYTES as u64 + self.len,
        );
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header))
            .and_then(|()| file.sync_all())
            .map_err(write_err(&temp))?;
        page_cache::give_back(std::os::fd::AsRawFd::as_raw_fd(&file), 0, None);
        drop(file);
        let path = self.dir.join(format!("{:020}{SUFFIX}", self.generation));
        std::fs::rename(&temp, &path).map_err(write_err(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err(&self.dir))?;
        let all = list(&self.dir)?;
        if all.len() > keep.max(1) {
            for (_, old) in &all[..all.len() - keep.max(1)] {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(path)
    }
}

/// Reads and checks one checkpoint file (header, length, CRC).
pub fn read(path: &Path) -> Result<(u64, AlignedVec<16>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    parse(&bytes)
}

/// Checks a checkpoint file's bytes (header, length, CRC) and returns its
/// generation and payload, aligned for rkyv.
pub fn parse(bytes: &[u8]) -> Result<(u64, AlignedVec<16>), String> {
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        return Err("not a checkpoint (bad header)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(format!(
            "checkpoint format version {version}, this build reads {VERSION}"
        ));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default());
    let len = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    let generation = u64::from_le_bytes(bytes[24..32].try_into().unwrap_or_default());
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() as u64 != len {
        return Err(format!(
            "payload is {} bytes, the header says {len} (truncated or extended)",
            payload.len()
        ));
    }
    if crc32c::crc32c(payload) != crc {
        return Err("checksum mismatch".into());
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    Ok((generation, aligned))
}

/// Loads the newest checkpoint of `dir` that passes the file checks and
/// `validate` (the caller's bytecheck); newer ones that fail are reported.
/// Temp files of an interrupted write are removed.
pub fn load_latest(
    dir: &Path,
    mut validate: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<LoadReport, StorageError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let mut report = LoadReport::default();
    for (_, path) in list(dir)?.into_iter().rev() {
        match read(&path)
            .and_then(|(generation, payload)| validate(&payload).map(|()| (generation, payload)))
        {
            Ok((generation, payload)) => {
                report.loaded = Some(Loaded {
                    generation,
                    path,
                    payload,
                });
                break;
            }
            Err(reason) => report.rejected.push((path, reason)),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sw-checkpoint-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn accept(_: &[u8]) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn the_newest_checkpoint_loads_and_old_ones_are_pruned() {
        let dir = temp_dir("newest");
        for generation in 1..=5u64 {
            write(&dir, generation, &generation.to_le_bytes().repeat(10), 2).unwrap();
        }
        assert_eq!(
            list(&dir)
                .unwrap()
                .iter()
                .map(|(g, _)| *g)
                .collect::<Vec<_>>(),
            vec![4, 5]
        );
        let report = load_latest(&dir, accept).unwrap();
        let loaded = report.loaded.unwrap();
        assert_eq!(loaded.generation, 5);
        assert_eq!(&loaded.payload[..8], &5u64.to_le_bytes());
        assert_eq!(loaded.payload.as_ptr() as usize % 16, 0);
        assert!(report.rejected.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn chunks_are_written_as_one_payload() {
        let dir = temp_dir("chunks");
        write_chunks(&dir, 1, &[b"abc".as_slice(), b"", b"defg"], 3).unwrap();
        let report = load_latest(&dir, accept).unwrap();
        assert_eq!(&report.loaded.unwrap().payload[..], b"abcdefg");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A payload several writeback steps long, in uneven chunks, reads
    /// back whole (the paced writeback flushes the buffered writer at step
    /// boundaries; nothing may be lost or reordered there).
    #[test]
    fn a_payload_past_several_writeback_steps_reads_back_whole() {
        let dir = temp_dir("paced");
        let total = 3 * WRITEBACK_STEP_BYTES as usize + 12_345;
        let payload: Vec<u8> = (0..total).map(|i| (i * 7 + i / 4099) as u8).collect();
        let mut writer = CheckpointWriter::create(&dir, 1).unwrap();
        let mut at = 0;
        let mut step = 1;
        while at < payload.len() {
            let end = (at + step).min(payload.len());
            writer.append(&payload[at..end]).unwrap();
            at = end;
            step = step * 3 % (5 << 20) + 1;
        }
        assert!(
            writer.started >= 2 * WRITEBACK_STEP_BYTES,
            "{}",
            writer.started
        );
        assert!(writer.settled > 0);
        // Written-back pages leave the page cache as the writing goes on
        // (most of them: ext4 may hold a few until its own journal
        // commits), but for the header's page (written last); the
        // finished file, synced, keeps none.
        let tmpfs = crate::testing::on_tmpfs(&dir);
        let pages = crate::testing::resident_pages(&writer.temp);
        let dropped = (writer.dropped / PAGE_BYTES) as usize;
        assert!(writer.dropped >= WRITEBACK_STEP_BYTES, "{}", writer.dropped);
        assert!(pages[0], "the header's page stays");
        if !tmpfs {
            let gone = pages[1..dropped].iter().filter(|r| !**r).count();
            assert!(gone * 10 >= (dropped - 1) * 9, "{gone} of {dropped}");
            assert!(pages[dropped..].iter().any(|r| *r), "{pages:?}");
        }
        let path = writer.finish(3).unwrap();
        if !tmpfs {
            let pages = crate::testing::resident_pages(&path);
            assert!(pages.iter().all(|r| !r), "{pages:?}");
        }
        let report = load_latest(&dir, accept).unwrap();
        let loaded = report.loaded.unwrap();
        assert!(loaded.payload[..] == payload[..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_checkpoint_falls_back_to_the_previous_with_a_reason() {
        let dir = temp_dir("corrupt");
        write(&dir, 1, b"first state", 3).unwrap();
        let newest = write(&dir, 2, b"second state", 3).unwrap();
        let mut bytes = std::fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&newest, &bytes).unwrap();
        let report = load_latest(&dir, accept).unwrap();
        assert_eq!(report.loaded.unwrap().generation, 1);
        assert_eq!(report.rejected.len(), 1);
        assert!(report.rejected[0].1.contains("checksum"));
        // Truncation is named as such.
        std::fs::write(&newest, &bytes[..bytes.len() - 3]).unwrap();
        let report = load_latest(&dir, accept).unwrap();
        assert!(
            report.rejected[0].1.contains("truncated"),
            "{:?}",
            report.rejected
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_callers_validation_can_refuse_a_checkpoint() {
        let dir = temp_dir("validate");
        write(&dir, 1, b"good", 3).unwrap();
        write(&dir, 2, b"bad!", 3).unwrap();
        let report = load_latest(&dir, |payload| {
            if payload == b"bad!" {
                Err("bytecheck failed".into())
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(report.loaded.unwrap().generation, 1);
        assert_eq!(report.rejected[0].1, "bytecheck failed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_interrupted_write_leaves_the_old_checkpoint_and_its_temp_is_cleaned() {
        let dir = temp_dir("interrupted");
        write(&dir, 1, b"complete", 3).unwrap();
        std::fs::write(dir.join("00000000000000000002.ckpt.tmp"), b"half").unwrap();
        let report = load_latest(&dir, accept).unwrap();
        assert_eq!(report.loaded.unwrap().generation, 1);
        assert!(!dir.join("00000000000000000002.ckpt.tmp").exists());
        assert!(load_latest(&temp_dir("empty"), accept)
            .unwrap()
            .loaded
            .is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_writer_dropped_unfinished_removes_its_temp_file() {
        // What a failed write does (the engine drops the writer): nothing
        // of it may stay on a disk that may be full.
        let dir = temp_dir("dropped");
        write(&dir, 1, b"complete", 3).unwrap();
        let mut writer = CheckpointWriter::create(&dir, 2).unwrap();
        writer.append(&[7u8; 100_000]).unwrap();
        let temp = dir.join("00000000000000000002.ckpt.tmp");
        assert!(temp.exists());
        drop(writer);
        assert!(!temp.exists());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["00000000000000000001.ckpt".to_string()]);
        // A finished one is in place, and no temp is left.
        let mut writer = CheckpointWriter::create(&dir, 3).unwrap();
        writer.append(b"done").unwrap();
        let path = writer.finish(3).unwrap();
        assert!(path.exists());
        assert!(!dir.join("00000000000000000003.ckpt.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
