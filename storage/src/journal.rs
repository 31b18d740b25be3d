//! The event journal: per core, append-only segment files of received lines.
//!
//! # Format (version 1)
//!
//! A core's journal is a directory of segments named by the sequence number
//! of their first record, `<first_seq:020>.wal`. Sequence numbers start at 1
//! and grow by one per record across segments; a restart continues after the
//! last valid record in a new segment.
//!
//! ```text
//! segment = header record* zero*
//! header  = "SWJOURN1" version:u32 core:u32 first_seq:u64 created_ns:i64 zero-pad to 64 bytes
//! record  = len:u32 crc:u32 body            (len = bytes of body, crc = CRC32C(body))
//! body    = seq:u64 received_ns:i64 transport:u8 family:u8 port:u16 ip:[u8;16] line
//! ```
//!
//! Integers are little-endian. `family` is 4, 6 or 0 (no address); an IPv4
//! address sits in the first 4 bytes of `ip`. A segment ends at its last
//! valid record: after it come zeros (the unwritten part of the last
//! written block) or, after a crash, a torn record.
//!
//! # Writing
//!
//! [`Journal`] writes through the page cache (glommio's [`BufferedFile`]) by
//! default, or with [`DmaFile`] (O_DIRECT) when [`JournalOptions::direct_io`]
//! asks. Appends encode records synchronously into an in-memory tail, a DMA
//! buffer; [`Journal::commit`] hands that buffer to the write (group commit:
//! every record appended since the last commit in one block-aligned write,
//! rewriting the partial last block, the one part copied into the next
//! tail; a buffered write takes a copy of it) and, under the fsync policy,
//! `fdatasync`s. A completed write survives the process being killed;
//! `fdatasync` makes it survive power loss. Commits are serialized, so a
//! partial block is never written out of order. Both ways write the same
//! bytes at the same offsets: the format does not depend on the choice.
//!
//! Why buffered by default: on ext4 (and any filesystem that must allocate
//! blocks or move the file size for a write) a direct write cannot be
//! issued without blocking, so io_uring hands it to a kernel worker thread
//! that inherits the core's CPU and waits for the device there. Measured on
//! a 2-core VM (BENCHMARKS.md, "journal writes through the page cache"):
//! a core ingesting TCP flat out read about 0.3 M lines/s with direct
//! writes and about 0.6 M with buffered ones, against 0.8 M with no journal.
//! Direct writes suit a filesystem and device that take them
//! asynchronously (XFS with preallocated extents, NVMe); a filesystem
//! without O_DIRECT refuses them at start.
//!
//! A buffered journal with [`JournalOptions::drop_synced_pages`] hands its
//! pages back to the kernel once they are synced (`POSIX_FADV_DONTNEED`
//! after each `fdatasync`: the whole pages written before the sync began,
//! up to the page holding the tail, which the next commit rewrites and so
//! must stay; all of a segment once it is closed). The journal's page
//! cache is then a few recently freed pages that the next writes take
//! again, not everything written: on a VM whose host takes back memory the
//! guest leaves free, each fresh page is faulted in from the host, and
//! that copy had grown to 38% of a core's time after ~1 GB of journal
//! (BENCHMARKS.md, "synced journal pages given back"). Such a journal
//! does not reuse spare segments (see [`retain`]): a spare whose pages are
//! gone would have each partial page read back before it is written.
//!
//! # Prepared segments
//!
//! With [`JournalOptions::preallocate`] (buffered, no spares) the journal
//! keeps its next segment ready: a background task on the blocking pool
//! creates `next.prepared` in the journal's directory and `fallocate`s
//! `segment_bytes` past its end (`FALLOC_FL_KEEP_SIZE`: the file stays
//! empty, so nothing about the format changes). A roll renames it to the
//! new segment's name instead of creating a file, and starts preparing
//! the one after. Two waits leave the core that way (dev VM,
//! BENCHMARKS.md, 2026-12-07 14:45 UTC):
//!
//! - Writing into a hole, ext4's delayed allocation takes the inode's
//!   `i_data_sem` for every new block; the writeback that a sync starts
//!   holds it while it allocates blocks, which can mean reading a block
//!   bitmap from the device (53 ms seen). The core's `pwrite` waited on
//!   it 15–33 times in 10–15 s, up to 11.8 ms. Into preallocated
//!   (unwritten) extents a write finds its blocks in ext4's extent cache
//!   and takes no lock: no such wait in the runs since.
//! - Creating the next file at a roll holds the write lock, so every
//!   flush waits for it. Its `openat` took 0.1 ms in the traces, but the
//!   same roll with a preallocation of its own (a first attempt) held the
//!   core's reads for 19–87 ms while the allocation read block bitmaps.
//!
//! Flat out it showed no consistent cost on the dev VM: alternated
//! harness comparisons gave medians of 0.94–0.95 in three runs and 1.03
//! in a fourth (rounds 0.79–1.16), within the VM's noise.
//!
//! The preallocation past a segment's end is freed when the segment is
//! closed or repaired (truncating to the logical length frees it), and a
//! prepared file left by a crash is truncated and reused by the next
//! preparation. A clean close removes the prepared file. What it costs:
//! up to two segments' worth of allocated blocks per journal beyond what
//! the journal's size counts (the current segment's unwritten rest and
//! the prepared one).
//!
//! # Reading back
//!
//! [`scan`] validates every record (length bounds, CRC, increasing
//! sequence). An invalid record in the middle of a segment is skipped by
//! searching forward for the next valid one (counted in bytes); an invalid
//! tail is a torn write, counted and, by [`repair_tail`], truncated. Neither is
//! fatal.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use glommio::io::{BufferedFile, DmaBuffer, DmaFile};
use glommio::sync::Semaphore;

use crate::page_cache::PAGE_BYTES;
use crate::StorageError;

const MAGIC: &[u8; 8] = b"SWJOURN1";
const VERSION: u32 = 1;
/// Bytes of the segment header.
pub const HEADER_BYTES: usize = 64;
/// `len` + `crc`.
const RECORD_HEAD: usize = 8;
/// seq, received_ns, transport, family, port, ip.
const BODY_FIXED: usize = 8 + 8 + 1 + 1 + 2 + 16;
/// Longest line a record may carry; a longer `len` is corruption.
pub const LINE_BYTES_MAX: usize = 1 << 20;
/// Most bytes appended but not yet written. Past it (writes failing, such
/// as a full disk, or a device far slower than ingest) appends are refused
/// so memory stays bounded; the caller counts what it could not journal.
pub const TAIL_BYTES_MAX: usize = 64 << 20;
const SEGMENT_SUFFIX: &str = ".wal";
/// The next segment, as [`Journal::prepare_next`] readies it.
enum NextSegment {
    /// None prepared, none being prepared.
    Idle,
    /// A task on the blocking pool is making it.
    Preparing,
    /// Made: `next.prepared`, open for writing.
    Ready(std::fs::File),
}

/// A covered segment kept for reuse instead of deleted (see [`retain`]).
const SPARE_SUFFIX: &str = ".spare";
/// The segment file a journal prepares ahead of its next roll (see the
/// module documentation, "Prepared segments"); not a segment until renamed.
pub const PREPARED_NAME: &str = "next.prepared";
/// Most spare segments [`retain`] keeps per journal directory.
pub const SPARES_MAX: usize = 4;

/// When the journal `fdatasync`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every commit (every batch).
    EveryCommit,
    /// At a commit at least this long after the previous sync.
    Interval(Duration),
}

/// How a journal writes.
#[derive(Debug, Clone, Copy)]
pub struct JournalOptions {
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// Write with O_DIRECT instead of through the page cache (see the
    /// module documentation for when that pays).
    pub direct_io: bool,
    /// Buffered writes: after each sync, hand the segment's synced whole
    /// pages back to the kernel, and a closed segment's all (see the
    /// module documentation). Spare segments are then not reused (see
    /// [`JournalOptions::reuses_spares`]).
    pub drop_synced_pages: bool,
    /// Buffered writes without spares: prepare the next segment ahead,
    /// off the core, as a file with `segment_bytes` preallocated past its
    /// end (see [`JournalOptions::prepares_segments`] and the module
    /// documentation, "Prepared segments").
    pub preallocate: bool,
}

impl JournalOptions {
    /// Whether segments are opened on spares and covered segments kept as
    /// spares ([`retain`]'s `keep_spares`): only for buffered writes that
    /// keep their pages. A spare whose pages were given back would have
    /// each partial page read back from the device before it is written,
    /// and direct writes do not use the page cache at all.
    pub fn reuses_spares(&self) -> bool {
        !self.direct_io && !self.drop_synced_pages
    }

    /// Whether the journal prepares its next segment ahead of each roll
    /// ([`JournalOptions::preallocate`]): only for buffered writes that do
    /// not reuse spares (a spare's blocks are allocated already, and
    /// direct writes were measured slower either way).
    pub fn prepares_segments(&self) -> bool {
        self.preallocate && !self.direct_io && !self.reuses_spares()
    }
}

/// Block size of a buffered journal's writes: commits pad to it and
/// rewrite the partial last block, as direct writes do with the device's.
const BUFFERED_ALIGNMENT: u64 = 512;

/// A segment file, written directly or through the page cache.
enum SegmentFile {
    Direct(DmaFile),
    Buffered(BufferedFile),
}

impl SegmentFile {
    /// Creates (truncates) the segment at `path`.
    async fn create(path: &Path, direct_io: bool) -> glommio::Result<SegmentFile, ()> {
        Ok(if direct_io {
            SegmentFile::Direct(DmaFile::create(path).await?)
        } else {
            SegmentFile::Buffered(BufferedFile::create(path).await?)
        })
    }

    /// The block size writes are padded to.
    fn alignment(&self) -> u64 {
        match self {
            SegmentFile::Direct(file) => file.alignment().max(512),
            SegmentFile::Buffered(_) => BUFFERED_ALIGNMENT,
        }
    }

    /// Writes all of `buf` at `pos`; returns the bytes written.
    async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> glommio::Result<usize, ()> {
        match self {
            SegmentFile::Direct(file) => file.write_rc_at(buf, pos).await,
            // A buffered write goes straight into the page cache from the
            // core's thread: ext4 takes no non-blocking buffered writes, so
            // io_uring would hand it to a kernel worker, which inherits the
            // core's CPU (the copy runs there either way), and costs a
            // wake-up and two context switches per commit plus an owned
            // copy of the buffer (glommio's buffered write takes a `Vec`).
            // Flat out that copy and hand-off were up to a sixth of the
            // core's time per line (BENCHMARKS.md, 2026-12-05 06:30–08:05 UTC);
            // at a moderate rate they were most of a commit's cost. What
            // the core gives up: running while a worker copies (on its own
            // CPU it could not for long anyway) and while the kernel
            // throttles a writer past its dirty-page limit (a disk slower
            // than ingest), which now holds the core's reads as it held
            // commits of up to 64 KiB before.
            SegmentFile::Buffered(file) => {
                use std::os::fd::{AsRawFd, FromRawFd};
                use std::os::unix::fs::FileExt;
                // SAFETY: a second `File` over the segment's open
                // descriptor, never closed (ManuallyDrop); the segment
                // outlives this call.
                let borrowed = std::mem::ManuallyDrop::new(unsafe {
                    std::fs::File::from_raw_fd(file.as_raw_fd())
                });
                // One pwrite, as io_uring's write is one: a short count
                // is the caller's to report (and to write again).
                loop {
                    match borrowed.write_at(buf.as_bytes(), pos) {
                        Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                        result => break result.map_err(glommio::GlommioError::IoError),
                    }
                }
            }
        }
    }

    /// `fdatasync`s the segment on the executor's blocking pool, not
    /// through io_uring: the kernel always hands an io_uring fsync to one
    /// of the ring's io-wq workers, and those inherit the core's CPU
    /// affinity, so the sync (with the ext4 writeback it starts) ran on
    /// the core's own CPU, taking it for up to 0.8 ms at a time, every
    /// `journal_fsync_ms`, while lines waited in the socket
    /// (BENCHMARKS.md, 2026-12-06). The pool's thread is unpinned and at
    /// [`crate::BACKGROUND_NICE`]; it syncs a second descriptor of the
    /// file, closed when the sync is done.
    async fn fdatasync(&self) -> glommio::Result<(), ()> {
        let own = self
            .second_descriptor()
            .map_err(glommio::GlommioError::IoError)?;
        crate::spawn_background(move || own.sync_data())
            .await
            .map_err(glommio::GlommioError::IoError)
    }

    /// A second descriptor of the segment (a `dup`, closed when dropped),
    /// for work on the blocking pool that may outlive the segment.
    fn second_descriptor(&self) -> std::io::Result<std::fs::File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let fd = match self {
            SegmentFile::Direct(file) => file.as_raw_fd(),
            SegmentFile::Buffered(file) => file.as_raw_fd(),
        };
        // SAFETY: a `File` over the segment's open descriptor, never
        // closed (ManuallyDrop); the segment outlives this call.
        let borrowed = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
        borrowed.try_clone()
    }

    async fn truncate(&self, size: u64) -> glommio::Result<(), ()> {
        match self {
            SegmentFile::Direct(file) => file.truncate(size).await,
            SegmentFile::Buffered(file) => file.truncate(size).await,
        }
    }

    /// A second descriptor of a buffered segment, for giving its pages
    /// back off the core (`None` for a direct one, which has no pages in
    /// the page cache, or when the descriptor cannot be duplicated: the
    /// advice is then skipped).
    fn for_give_back(&self) -> Option<std::fs::File> {
        match self {
            SegmentFile::Buffered(_) => self.second_descriptor().ok(),
            SegmentFile::Direct(_) => None,
        }
    }
}

/// One journaled line, as appended and as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalEntry<'a> {
    pub seq: u64,
    pub received_ns: i64,
    /// An application-defined transport code (the engine's `udp`, `tcp`, …).
    pub transport: u8,
    pub peer: Option<SocketAddr>,
    pub line: &'a [u8],
}

/// What one commit did.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitInfo {
    /// Bytes handed to the device (block-aligned, so a rewritten partial
    /// block counts again).
    pub bytes_written: u64,
    /// How long the `fdatasync` took, when the commit synced.
    pub synced: Option<Duration>,
}

/// Capacity a journal's tail starts with; it doubles while appends
/// outrun the writes (up to what [`TAIL_BYTES_MAX`] allows).
const TAIL_CAPACITY_MIN: usize = 256 << 10;

/// The bytes appended but not yet written completely, held in a DMA
/// buffer: a commit hands the buffer itself to the write, and only the
/// partial last block is copied, into the next tail.
struct Tail {
    buf: DmaBuffer,
    len: usize,
}

impl Tail {
    /// A tail of at least `capacity` bytes. The capacity is a power of
    /// two (at least [`TAIL_CAPACITY_MIN`]), so a multiple of the device
    /// alignment: a commit pads what it takes up to the next block inside
    /// the buffer. (A tail rebuilt by a failed write was once sized
    /// exactly, and the next commit's padding ran past its end.)
    fn with_capacity(capacity: usize) -> Tail {
        Tail {
            buf: glommio::allocate_dma_buffer(capacity.max(TAIL_CAPACITY_MIN).next_power_of_two()),
            len: 0,
        }
    }

    fn from_bytes(bytes: &[u8], capacity: usize) -> Tail {
        let mut tail = Tail::with_capacity(capacity.max(bytes.len() * 2));
        tail.extend_from_slice(bytes);
        tail
    }

    fn len(&self) -> usize {
        self.len
    }

    fn capacity(&self) -> usize {
        self.buf.len()
    }

    fn bytes(&self) -> &[u8] {
        &self.buf.as_bytes()[..self.len]
    }

    /// The next `n` bytes, taken (grown into a larger buffer if needed).
    fn claim(&mut self, n: usize) -> &mut [u8] {
        let need = self.len + n;
        if need > self.capacity() {
            let mut grown = Tail::with_capacity(need.next_power_of_two());
            grown.extend_from_slice(self.bytes());
            *self = grown;
        }
        let start = self.len;
        self.len = need;
        &mut self.buf.as_bytes_mut()[start..need]
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.claim(bytes.len()).copy_from_slice(bytes);
    }
}

struct WriterState {
    file: Option<Rc<SegmentFile>>,
    /// Bytes not yet written completely, starting at `buf_pos` in the
    /// current segment (block-aligned).
    buf: Tail,
    buf_pos: u64,
    last_seq: u64,
    written_seq: u64,
    durable_seq: u64,
    last_sync: Instant,
    /// Bytes in `buf` not yet written (a new segment's header counts).
    dirty: bool,
    /// The first sequence number of the segment being written.
    segment_first_seq: u64,
    /// Where the current segment's page-cache pages were dropped up to.
    dropped_upto: u64,
    /// Full segments rolled away from, oldest first, still to be truncated
    /// and synced: the next sync does it, before it claims anything later
    /// durable (see [`Journal::close_rolled`]).
    closing: Vec<Rolled>,
    /// A segment was created since the directory was last synced.
    dir_unsynced: bool,
}

/// A full segment the journal has moved on from.
#[derive(Clone)]
struct Rolled {
    file: Rc<SegmentFile>,
    /// Its logical length (the last write was padded past it).
    end: u64,
    /// Its last record.
    last_seq: u64,
}

/// One core's journal writer. Lives on one glommio executor.
pub struct Journal {
    dir: PathBuf,
    core: u32,
    options: JournalOptions,
    alignment: u64,
    state: RefCell<WriterState>,
    /// Serializes writes and segment rolls.
    lock: Semaphore,
    /// Serializes syncs (each closes the rolled segments first), so that
    /// no sync of the current segment claims a line durable while an
    /// earlier segment's sync is still running.
    sync_lock: Semaphore,
    /// Failed commits and syncs so far, and whether the journal is failing
    /// now (see [`Journal::failing`]).
    failures: Cell<u64>,
    failing: Cell<bool>,
    /// The last hand-back of synced pages (see [`Journal::give_back_pages`]),
    /// while it may still be running.
    giving_back: RefCell<Option<glommio::task::JoinHandle<()>>>,
    /// The next segment, once prepared (see [`Journal::prepare_next`]).
    next: Rc<RefCell<NextSegment>>,
    /// The last preparation's task, while it may still be running.
    preparing: RefCell<Option<glommio::task::JoinHandle<()>>>,
    /// Rolls that found no prepared segment and created one on the core.
    rolls_unprepared: Cell<u64>,
}

impl Journal {
    /// Opens a new segment in `dir` whose first record will be `next_seq`
    /// (1 for an empty journal, else one past the last valid record found
    /// by [`repair_tail`]).
    pub async fn open(
        dir: &Path,
        core: u32,
        next_seq: u64,
        options: JournalOptions,
    ) -> Result<Journal, StorageError> {
        assert!(next_seq >= 1, "journal sequence numbers start at 1");
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let file = create_segment(dir, next_seq, &options).await?;
        let alignment = file.alignment();
        let journal = Journal {
            dir: dir.to_path_buf(),
            core,
            options,
            alignment,
            state: RefCell::new(WriterState {
                file: Some(Rc::new(file)),
                buf: Tail::from_bytes(&segment_header(core, next_seq), 0),
                buf_pos: 0,
                last_seq: next_seq - 1,
                written_seq: next_seq - 1,
                durable_seq: next_seq - 1,
                last_sync: Instant::now(),
                dirty: true,
                segment_first_seq: next_seq,
                dropped_upto: 0,
                closing: Vec::new(),
                dir_unsynced: false,
            }),
            lock: Semaphore::new(1),
            sync_lock: Semaphore::new(1),
            failures: Cell::new(0),
            failing: Cell::new(false),
            giving_back: RefCell::new(None),
            next: Rc::new(RefCell::new(NextSegment::Idle)),
            preparing: RefCell::new(None),
            rolls_unprepared: Cell::new(0),
        };
        journal.prepare_next();
        Ok(journal)
    }

    /// Starts preparing the next segment on the blocking pool, unless the
    /// options do not ask for it, one is prepared, or a preparation is
    /// still running (its file is used by the roll after the next).
    fn prepare_next(&self) {
        if !self.options.prepares_segments() || !matches!(*self.next.borrow(), NextSegment::Idle) {
            return;
        }
        let path = self.dir.join(PREPARED_NAME);
        let bytes = self.options.segment_bytes;
        let next = self.next.clone();
        *next.borrow_mut() = NextSegment::Preparing;
        let task = glommio::spawn_local(async move {
            // A file that cannot be made leaves none ready: the roll
            // creates the segment itself, as without preparation.
            let made = crate::spawn_background(move || prepare_segment(&path, bytes)).await;
            *next.borrow_mut() = match made {
                Ok(file) => NextSegment::Ready(file),
                Err(_) => NextSegment::Idle,
            };
        });
        *self.preparing.borrow_mut() = Some(task.detach());
    }

    /// The prepared segment, renamed to `path`; `None` when none is ready
    /// (or the rename failed: the file is then left to the next
    /// preparation).
    fn take_prepared(&self, path: &Path) -> Option<SegmentFile> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let file = {
            let mut next = self.next.borrow_mut();
            if !matches!(*next, NextSegment::Ready(_)) {
                return None;
            }
            match std::mem::replace(&mut *next, NextSegment::Idle) {
                NextSegment::Ready(file) => file,
                NextSegment::Idle | NextSegment::Preparing => return None,
            }
        };
        std::fs::rename(self.dir.join(PREPARED_NAME), path).ok()?;
        // SAFETY: the descriptor is owned (taken out of its `File`) and
        // handed to the `BufferedFile`, which closes it.
        Some(SegmentFile::Buffered(unsafe {
            BufferedFile::from_raw_fd(file.into_raw_fd())
        }))
    }

    /// Waits for a running preparation of the next segment to end.
    async fn preparation_done(&self) {
        let running = self.preparing.borrow_mut().take();
        if let Some(running) = running {
            running.await;
        }
    }

    /// Rolls so far that found no prepared segment ready (with
    /// [`JournalOptions::prepares_segments`]) and created the next one
    /// themselves, the write lock held.
    pub fn rolls_unprepared(&self) -> u64 {
        self.rolls_unprepared.get()
    }

    /// Waits for a running preparation, then removes the prepared file,
    /// so that a closed journal leaves no preallocated blocks behind.
    async fn discard_prepared(&self) {
        self.preparation_done().await;
        let next = std::mem::replace(&mut *self.next.borrow_mut(), NextSegment::Idle);
        if matches!(next, NextSegment::Ready(_)) {
            let _ = std::fs::remove_file(self.dir.join(PREPARED_NAME));
        }
    }

    /// How this journal writes.
    pub fn options(&self) -> &JournalOptions {
        &self.options
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one line; returns its sequence number. It reaches the file
    /// at the next [`Journal::commit`]. `None` when [`TAIL_BYTES_MAX`]
    /// bytes already wait to be written: nothing was appended.
    pub fn append(
        &self,
        received_ns: i64,
        transport: u8,
        peer: Option<SocketAddr>,
        line: &[u8],
    ) -> Option<u64> {
        let line = &line[..line.len().min(LINE_BYTES_MAX)];
        let mut state = self.state.borrow_mut();
        if state.buf.len() >= TAIL_BYTES_MAX {
            return None;
        }
        state.last_seq += 1;
        let seq = state.last_seq;
        let entry = JournalEntry {
            seq,
            received_ns,
            transport,
            peer,
            line,
        };
        encode_record_into(&entry, state.buf.claim(record_len(&entry)));
        state.dirty = true;
        Some(seq)
    }

    /// The last sequence number appended.
    pub fn last_seq(&self) -> u64 {
        self.state.borrow().last_seq
    }

    /// The last sequence number whose record was written to the file (it
    /// survives the process being killed).
    pub fn written_seq(&self) -> u64 {
        self.state.borrow().written_seq
    }

    /// The last sequence number made durable by `fdatasync`.
    pub fn durable_seq(&self) -> u64 {
        self.state.borrow().durable_seq
    }

    /// Whether an interval sync is due: written lines are not all durable
    /// and the interval since the last sync has passed. (Under
    /// `EveryCommit` every commit syncs, so none is ever due.)
    pub fn sync_due(&self) -> bool {
        match self.options.fsync {
            FsyncPolicy::EveryCommit => false,
            FsyncPolicy::Interval(every) => {
                let state = self.state.borrow();
                state.durable_seq < state.last_seq && state.last_sync.elapsed() >= every
            }
        }
    }

    /// The interval of an `Interval` policy.
    pub fn sync_interval(&self) -> Option<Duration> {
        match self.options.fsync {
            FsyncPolicy::EveryCommit => None,
            FsyncPolicy::Interval(every) => Some(every),
        }
    }

    /// Writes everything appended so far; syncs only under `EveryCommit`
    /// (an `Interval` policy is served by whoever calls [`Journal::sync`]
    /// when [`Journal::sync_due`]).
    pub async fn commit(&self) -> Result<CommitInfo, StorageError> {
        let force = false;
        self.commit_inner(force).await
    }

    /// Writes everything appended so far and syncs, whatever the policy.
    pub async fn sync(&self) -> Result<CommitInfo, StorageError> {
        self.commit_inner(true).await
    }

    /// Waits until `seq` is durable (synced). A waiter does not wait for
    /// the interval: it syncs now, and concurrent waiters share that sync
    /// (commits are serialized, so a waiter whose record was written by an
    /// earlier waiter's sync returns without another). The interval policy
    /// bounds how often lines nobody waits for are synced.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), StorageError> {
        let seq = seq.min(self.last_seq());
        while self.durable_seq() < seq {
            self.sync().await?;
        }
        Ok(())
    }

    /// Whether the journal is failing: its last write or sync failed and
    /// none has succeeded since. A sync that began before a failure and
    /// ends after it (syncs run outside the commit lock) does not count as
    /// a recovery, nor does a commit that had nothing to write or sync:
    /// callers that concluded "failing" from the last result they saw would
    /// flip back and forth as the two complete in either order.
    pub fn failing(&self) -> bool {
        self.failing.get()
    }

    async fn commit_inner(&self, force_sync: bool) -> Result<CommitInfo, StorageError> {
        let failures_before = self.failures.get();
        let result = self.commit_unrecorded(force_sync).await;
        match &result {
            Err(_) => {
                self.failures.set(self.failures.get() + 1);
                self.failing.set(true);
            }
            Ok(info)
                if (info.bytes_written > 0 || info.synced.is_some())
                    && self.failures.get() == failures_before =>
            {
                self.failing.set(false);
            }
            Ok(_) => {}
        }
        result
    }

    async fn commit_unrecorded(&self, force_sync: bool) -> Result<CommitInfo, StorageError> {
        let mut info = CommitInfo::default();
        // Writes are serialized (a partial block must never be written out
        // of order); the fdatasync after them is not, so a sync never holds
        // up the next batch's write.
        let (file, upto) = {
            let _permit = self
                .lock
                .acquire_permit(1)
                .await
                .map_err(|e| self.error(e))?;
            if self.state.borrow().dirty {
                // Take what is pending (synchronously: appends may continue
                // while the write is in flight; they go to the next tail,
                // after a copy of the partial last block, which is
                // rewritten next time).
                let (file, dma, pos, taken, keep_from, upto) = {
                    let mut state = self.state.borrow_mut();
                    let file = state.file.clone().expect("the journal has an open segment");
                    let taken = state.buf.len();
                    let keep_from = align_down(taken as u64, self.alignment) as usize;
                    let padded = align_up(taken as u64, self.alignment) as usize;
                    // Sized by what this commit took, so that a burst's
                    // large tail is not allocated again for every commit
                    // after it.
                    let next = Tail::from_bytes(
                        &state.buf.bytes()[keep_from..],
                        taken.next_power_of_two(),
                    );
                    let mut dma = std::mem::replace(&mut state.buf, next).buf;
                    dma.as_bytes_mut()[taken..padded].fill(0);
                    dma.trim_to_size(padded);
                    let pos = state.buf_pos;
                    state.buf_pos = pos + keep_from as u64;
                    (file, Rc::new(dma), pos, taken, keep_from, state.last_seq)
                };
                info.bytes_written = dma.len() as u64;
                // A short write (the device or a file size limit took only
                // part of it) is a failure too: what it did write is
                // written again, identically, by the next commit.
                let written = match file.write_at(dma.clone(), pos).await {
                    Ok(n) if n == dma.len() => Ok(()),
                    Ok(n) => Err(format!(
                        "short write: {n} of {} bytes at offset {pos}",
                        dma.len()
                    )),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = written {
                    // Put the unwritten bytes back in front of what was
                    // appended since, so that the next commit writes them.
                    let mut state = self.state.borrow_mut();
                    let mut back = Tail::with_capacity(keep_from + state.buf.len());
                    back.extend_from_slice(&dma.as_bytes()[..keep_from]);
                    back.extend_from_slice(state.buf.bytes());
                    state.buf = back;
                    state.buf_pos = pos;
                    return Err(self.error(e));
                }
                let end = pos + taken as u64;
                {
                    let mut state = self.state.borrow_mut();
                    state.written_seq = state.written_seq.max(upto);
                    // Appends during the write are still to be written.
                    state.dirty = state.last_seq != upto;
                }
                if end >= self.options.segment_bytes {
                    // A full segment: the next is started now; this one
                    // is truncated and synced by the next sync, so no
                    // commit waits for that (two `fdatasync`s, 4-9 ms on
                    // the dev VM, once a second at 300 k lines/s).
                    self.roll(&file, end, upto).await?;
                    if force_sync || self.options.fsync == FsyncPolicy::EveryCommit {
                        let started = Instant::now();
                        let _sync = self
                            .sync_lock
                            .acquire_permit(1)
                            .await
                            .map_err(|e| self.error(e))?;
                        self.close_rolled().await?;
                        info.synced = Some(started.elapsed());
                    }
                    return Ok(info);
                }
                (file, upto)
            } else {
                let state = self.state.borrow();
                let file = state.file.clone().expect("the journal has an open segment");
                (file, state.written_seq)
            }
        };
        let wants_sync = force_sync || self.options.fsync == FsyncPolicy::EveryCommit;
        if wants_sync && self.durable_seq() < upto {
            let started = Instant::now();
            let _sync = self
                .sync_lock
                .acquire_permit(1)
                .await
                .map_err(|e| self.error(e))?;
            self.close_rolled().await?;
            // A sync that ran while this one waited may have covered it
            // (or `file` was rolled away from and closed just now).
            if self.durable_seq() < upto {
                // Whole pages before the block being rewritten: written,
                // and never written again.
                let whole = align_down(self.state.borrow().buf_pos, PAGE_BYTES);
                file.fdatasync().await.map_err(|e| self.error(e))?;
                self.mark_durable(upto);
                self.drop_synced_pages(&file, whole);
            }
            info.synced = Some(started.elapsed());
        }
        Ok(info)
    }

    /// Truncates each segment rolled away from to its logical length and
    /// syncs it (oldest first, each making its lines durable), then the
    /// directory, which holds the segments created since. Called with the
    /// sync lock held, before a sync of the current segment may claim its
    /// lines durable. A failure keeps what is left for the next sync.
    async fn close_rolled(&self) -> Result<(), StorageError> {
        loop {
            let Some(rolled) = self.state.borrow().closing.first().cloned() else {
                break;
            };
            rolled
                .file
                .truncate(rolled.end)
                .await
                .map_err(|e| self.error(e))?;
            rolled.file.fdatasync().await.map_err(|e| self.error(e))?;
            if self.options.drop_synced_pages {
                self.give_back_pages(&rolled.file, 0, None);
            }
            self.state.borrow_mut().closing.remove(0);
            self.mark_durable(rolled.last_seq);
        }
        // The directory's sync runs on the blocking pool, as the segments'
        // do: on the core it put the core's thread to sleep in the kernel
        // three times (the directory's buffers, its inode, a device flush;
        // each under 0.45 ms) at each segment roll, every ~0.6 s paced at
        // 490 k lines/s, while lines waited in its sockets (BENCHMARKS.md,
        // 2026-12-07 10:40-10:51 UTC).
        // The flag is cleared first: a segment created while the sync runs
        // sets it again, for the next sync to cover.
        let unsynced = std::mem::replace(&mut self.state.borrow_mut().dir_unsynced, false);
        if unsynced {
            let dir = self.dir.clone();
            if let Err(err) = crate::spawn_background(move || sync_dir(&dir)).await {
                self.state.borrow_mut().dir_unsynced = true;
                return Err(err);
            }
        }
        Ok(())
    }

    /// Hands the page-cache pages of `file` up to `upto` (synced, whole
    /// pages) back to the kernel (see the module docs).
    fn drop_synced_pages(&self, file: &Rc<SegmentFile>, upto: u64) {
        if !self.options.drop_synced_pages {
            return;
        }
        let mut state = self.state.borrow_mut();
        let same_file = state.file.as_ref().is_some_and(|f| Rc::ptr_eq(f, file));
        if same_file && upto > state.dropped_upto {
            let from = std::mem::replace(&mut state.dropped_upto, upto);
            drop(state);
            self.give_back_pages(file, from, Some(upto));
        }
    }

    /// Hands the page-cache pages of `from..to` (`to` `None`: to the end)
    /// of `file`, which a sync has just made clean, back to the kernel on
    /// the executor's blocking pool, not on the core: `POSIX_FADV_DONTNEED`
    /// over a sync's worth of pages (50 ms of lines) took the core 0.55 ms
    /// at a time paced at 400 k lines/s and 0.7 ms flat out, 1.2-1.4% of
    /// it, each time a stall for the lines waiting in its sockets
    /// (BENCHMARKS.md, 2026-12-06 23:42). The pool works on a second descriptor,
    /// so the segment may be closed meanwhile. Each hand-back starts after
    /// the one before it has finished; [`Journal::pages_given_back`] waits
    /// for the last.
    fn give_back_pages(&self, file: &SegmentFile, from: u64, to: Option<u64>) {
        let Some(own) = file.for_give_back() else {
            return;
        };
        let before = self.giving_back.borrow_mut().take();
        let task = glommio::spawn_local(async move {
            if let Some(before) = before {
                before.await;
            }
            crate::spawn_background(move || {
                use std::os::fd::AsRawFd;
                crate::page_cache::give_back(own.as_raw_fd(), from, to);
            })
            .await;
        });
        *self.giving_back.borrow_mut() = Some(task.detach());
    }

    /// Waits until the synced pages handed back so far have left the page
    /// cache (the hand-backs run off the core, see
    /// [`Journal::give_back_pages`]).
    pub async fn pages_given_back(&self) {
        let last = self.giving_back.borrow_mut().take();
        if let Some(last) = last {
            last.await;
        }
    }

    fn mark_durable(&self, upto: u64) {
        let mut state = self.state.borrow_mut();
        state.durable_seq = state.durable_seq.max(upto);
        state.last_sync = Instant::now();
    }

    /// Starts the next segment after the full one, `file`, whose records
    /// (up to `last_seq`) were just written up to its logical `end`; the
    /// full one is left to [`Journal::close_rolled`]. Called with the lock
    /// held.
    async fn roll(
        &self,
        file: &Rc<SegmentFile>,
        end: u64,
        last_seq: u64,
    ) -> Result<(), StorageError> {
        // Records appended during the write, and during the awaits below,
        // are in `buf` after the partial block; they belong to the next
        // segment and are carried over at the end, when no more can come
        // in between.
        let (partial, next_first) = {
            let state = self.state.borrow();
            ((end - state.buf_pos) as usize, state.written_seq + 1)
        };
        let next = match self.take_prepared(&self.dir.join(segment_name(next_first))) {
            Some(prepared) => prepared,
            None => {
                if self.options.prepares_segments() {
                    self.rolls_unprepared.set(self.rolls_unprepared.get() + 1);
                }
                create_segment(&self.dir, next_first, &self.options).await?
            }
        };
        self.prepare_next();
        let mut state = self.state.borrow_mut();
        state.closing.push(Rolled {
            file: file.clone(),
            end,
            last_seq,
        });
        state.dir_unsynced = true;
        let carried = &state.buf.bytes()[partial..];
        let mut buf = Tail::with_capacity((HEADER_BYTES + carried.len()).next_power_of_two());
        buf.extend_from_slice(&segment_header(self.core, next_first));
        buf.extend_from_slice(carried);
        state.buf = buf;
        state.buf_pos = 0;
        state.dirty = true;
        state.file = Some(Rc::new(next));
        state.dropped_upto = 0;
        state.segment_first_seq = next_first;
        Ok(())
    }

    /// Writes and syncs what is pending and closes the segment, trimmed to
    /// its logical length.
    pub async fn close(&self) -> Result<(), StorageError> {
        let closed = self.close_segment().await;
        // Also after a failure: a hand-back or preparation still running
        // when the executor ends would leave the blocking pool nobody to
        // answer.
        self.pages_given_back().await;
        self.discard_prepared().await;
        closed
    }

    async fn close_segment(&self) -> Result<(), StorageError> {
        self.sync().await?;
        let _permit = self
            .lock
            .acquire_permit(1)
            .await
            .map_err(|e| self.error(e))?;
        let (file, end) = {
            let mut state = self.state.borrow_mut();
            let end = state.buf_pos + state.buf.len() as u64;
            (state.file.take(), end)
        };
        if let Some(file) = file {
            file.truncate(end).await.map_err(|e| self.error(e))?;
            file.fdatasync().await.map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// The first sequence number of the segment being written.
    pub fn segment_first_seq(&self) -> u64 {
        self.state.borrow().segment_first_seq
    }

    fn error(&self, err: impl std::fmt::Display) -> StorageError {
        StorageError::Write {
            path: self.dir.clone(),
            source: std::io::Error::other(err.to_string()),
        }
    }
}

fn align_up(v: u64, alignment: u64) -> u64 {
    v.div_ceil(alignment) * alignment
}

fn align_down(v: u64, alignment: u64) -> u64 {
    v / alignment * alignment
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// Creates segment `first_seq`, on a spare when the options reuse them.
async fn create_segment(
    dir: &Path,
    first_seq: u64,
    options: &JournalOptions,
) -> Result<SegmentFile, StorageError> {
    let path = dir.join(segment_name(first_seq));
    if options.reuses_spares() {
        if let Some(file) = reuse_spare(dir, &path).await {
            return Ok(file);
        }
    }
    SegmentFile::create(&path, options.direct_io)
        .await
        .map_err(|e| StorageError::Open {
            path,
            source: std::io::Error::other(e.to_string()),
        })
}

/// Spare segments in `dir` (see [`retain`]), oldest first.
fn spares(dir: &Path) -> Vec<PathBuf> {
    files_by_first_seq(dir, SPARE_SUFFIX)
        .map(|files| files.into_iter().map(|(_, path)| path).collect())
        .unwrap_or_default()
}

/// Renames a spare segment to `path` and opens it for writing without
/// truncating it, so that the new segment's writes land in page-cache
/// pages (and disk blocks) the old one already had: no page is allocated,
/// zeroed or faulted in, and ext4 reserves no new blocks. Where the
/// hypervisor takes freed memory back, a new page-cache page was the
/// journal's main cost (BENCHMARKS.md, 2026-12-05 06:30–08:05 UTC). The old
/// records past what the new segment has written are older than its first
/// sequence number: the scan stops at them ([`scan_segment`]), the roll
/// and [`Journal::close`] cut them, and [`repair_tail`] cuts them after a
/// crash. `None` (the caller creates a file) when there is no spare or
/// one cannot be taken.
async fn reuse_spare(dir: &Path, path: &Path) -> Option<SegmentFile> {
    let spare = spares(dir).into_iter().next()?;
    std::fs::rename(&spare, path).ok()?;
    glommio::io::OpenOptions::new()
        .write(true)
        .buffered_open(path)
        .await
        .ok()
        .map(SegmentFile::Buffered)
}

/// Creates (or truncates, when a crash left one) the prepared segment at
/// `path` with `bytes` preallocated past its end. A filesystem without
/// `fallocate` still gets the file: a roll then saves the file's creation,
/// not the locks of block allocation.
fn prepare_segment(path: &Path, bytes: u64) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let len = libc::off_t::try_from(bytes).unwrap_or(libc::off_t::MAX);
    // SAFETY: a valid descriptor owned by `file`; the call only allocates.
    unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    #[cfg(test)]
    tests::dir_synced(dir);
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StorageError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

fn segment_header(core: u32, first_seq: u64) -> Vec<u8> {
    // Copied into the tail, so no room beyond the header (it was the tail
    // itself when the tail was a Vec).
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&core.to_le_bytes());
    header.extend_from_slice(&first_seq.to_le_bytes());
    let created = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    header.extend_from_slice(&created.to_le_bytes());
    header.resize(HEADER_BYTES, 0);
    header
}

/// Bytes of `entry`'s framed record.
pub fn record_len(entry: &JournalEntry<'_>) -> usize {
    RECORD_HEAD + BODY_FIXED + entry.line.len()
}

/// Appends one framed record to `out`.
pub fn encode_record(entry: &JournalEntry<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + record_len(entry), 0);
    encode_record_into(entry, &mut out[start..]);
}

/// Writes one framed record into `out`, which is [`record_len`] bytes.
pub fn encode_record_into(entry: &JournalEntry<'_>, out: &mut [u8]) {
    debug_assert_eq!(out.len(), record_len(entry));
    let body_len = BODY_FIXED + entry.line.len();
    let mut ip = [0u8; 16];
    let (family, port) = match entry.peer {
        Some(SocketAddr::V4(a)) => {
            ip[..4].copy_from_slice(&a.ip().octets());
            (4u8, a.port())
        }
        Some(SocketAddr::V6(a)) => {
            ip = a.ip().octets();
            (6u8, a.port())
        }
        None => (0u8, 0),
    };
    out[0..4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[8..16].copy_from_slice(&entry.seq.to_le_bytes());
    out[16..24].copy_from_slice(&entry.received_ns.to_le_bytes());
    out[24] = entry.transport;
    out[25] = family;
    out[26..28].copy_from_slice(&port.to_le_bytes());
    out[28..44].copy_from_slice(&ip);
    out[44..].copy_from_slice(entry.line);
    let crc = crate::crc::crc32c(&out[RECORD_HEAD..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at the start of `bytes`: the entry and its framed
/// length, or why it is not a valid record.
pub fn decode_record(bytes: &[u8]) -> Result<(JournalEntry<'_>, usize), &'static str> {
    if bytes.len() < RECORD_HEAD {
        return Err("short header");
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().unwrap_or_default()) as usize;
    if len == 0 {
        return Err("zero length");
    }
    if !(BODY_FIXED..=BODY_FIXED + LINE_BYTES_MAX).contains(&len) {
        return Err("length out of bounds");
    }
    if bytes.len() < RECORD_HEAD + len {
        return Err("record runs past the end of the file");
    }
    let crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap_or_default());
    let body = &bytes[RECORD_HEAD..RECORD_HEAD + len];
    if crate::crc::crc32c(body) != crc {
        return Err("checksum mismatch");
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or_default());
    let seq = u64_at(0);
    let received_ns = u64_at(8) as i64;
    let transport = body[16];
    let family = body[17];
    let port = u16::from_le_bytes([body[18], body[19]]);
    let ip = &body[20..36];
    let peer = match family {
        0 => None,
        4 => Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
            port,
        )),
        6 => {
            let octets: [u8; 16] = ip.try_into().unwrap_or_default();
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => return Err("unknown address family"),
    };
    Ok((
        JournalEntry {
            seq,
            received_ns,
            transport,
            peer,
            line: &body[BODY_FIXED..],
        },
        RECORD_HEAD + len,
    ))
}

/// What reading a journal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub segments: usize,
    /// Valid records read (all of them, including those before `from_seq`).
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Segments whose end was a torn (incomplete or invalid) record.
    pub torn_tails: u64,
    /// Bytes of torn tails.
    pub torn_bytes: u64,
    /// Invalid stretches in the middle of a segment, skipped.
    pub corrupt_stretches: u64,
    pub skipped_bytes: u64,
    /// Segments refused whole (bad header).
    pub bad_segments: u64,
    /// One line per problem, naming the file and offset.
    pub problems: Vec<String>,
}

impl ScanReport {
    /// The sequence number a new segment should start at.
    pub fn next_seq(&self) -> u64 {
        self.last_seq.map_or(1, |s| s + 1)
    }
}

/// Asks the kernel to start reading the segment at `path` into the page
/// cache (`POSIX_FADV_WILLNEED`, which returns once the reads are
/// issued), so that a replay reading it next finds it there instead of
/// waiting for the device: a journal that drops its synced pages is read
/// from the device on recovery. Advisory: a file that cannot be opened,
/// or a refusal, only loses the head start.
pub fn prefetch(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(file) = std::fs::File::open(path) {
        crate::page_cache::read_ahead(file.as_raw_fd(), 0, None);
    }
}

/// The segment files of a journal directory, oldest first, with their
/// first sequence numbers. A missing directory has none.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    files_by_first_seq(dir, SEGMENT_SUFFIX)
}

/// The files `<first-seq><suffix>` of a journal directory, oldest first,
/// with their first sequence numbers. A missing directory has none.
fn files_by_first_seq(dir: &Path, suffix: &str) -> Result<Vec<(u64, PathBuf)>, StorageError> {
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
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(suffix) else {
            continue;
        };
        if let Ok(first) = stem.parse::<u64>() {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The valid extent of one segment.
struct SegmentScan {
    /// Offset just past the last valid record.
    valid_end: usize,
    /// What follows `valid_end` is a reused segment's old records (see
    /// [`reuse_spare`]), not damage.
    stale_tail: bool,
}

/// Reads every valid record of `dir` and passes those with `seq >=
/// from_seq` to `on_record`, in sequence order.
pub fn scan(
    dir: &Path,
    from_seq: u64,
    mut on_record: impl FnMut(&JournalEntry<'_>),
) -> Result<ScanReport, StorageError> {
    let mut report = ScanReport::default();
    let segs = segments(dir)?;
    for (i, (first, path)) in segs.iter().enumerate() {
        // Skip segments wholly before `from_seq`.
        if let Some((next_first, _)) = segs.get(i + 1) {
            if *next_first <= from_seq && *next_first > *first {
                // Every record is before `from_seq`: not read.
                report.segments += 1;
                continue;
            }
        }
        let bytes = std::fs::read(path).map_err(|source| StorageError::Open {
            path: path.clone(),
            source,
        })?;
        report.segments += 1;
        scan_segment(path, &bytes, *first, from_seq, &mut report, &mut on_record);
    }
    Ok(report)
}

fn scan_segment(
    path: &Path,
    bytes: &[u8],
    first_seq: u64,
    from_seq: u64,
    report: &mut ScanReport,
    on_record: &mut impl FnMut(&JournalEntry<'_>),
) -> Option<SegmentScan> {
    if bytes.iter().all(|&b| b == 0) {
        // Created but never written (a crash before the first commit):
        // an empty segment, not a damaged one.
        return Some(SegmentScan {
            valid_end: 0,
            stale_tail: false,
        });
    }
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        report.bad_segments += 1;
        report.problems.push(format!(
            "{}: not a journal segment (bad header), skipped",
            path.display()
        ));
        return None;
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != VERSION {
        report.bad_segments += 1;
        report.problems.push(format!(
            "{}: journal format version {version}, this build reads {VERSION}; skipped",
            path.display()
        ));
        return None;
    }
    let mut pos = HEADER_BYTES;
    let mut valid_end = pos;
    let mut stale_tail = false;
    let mut last = report
        .last_seq
        .unwrap_or(0)
        .max(first_seq.saturating_sub(1));
    while pos < bytes.len() {
        match decode_record(&bytes[pos..]) {
            Ok((entry, framed)) if entry.seq > last => {
                last = entry.seq;
                report.records += 1;
                report.first_seq.get_or_insert(entry.seq);
                report.last_seq = Some(entry.seq);
                if entry.seq >= from_seq {
                    on_record(&entry);
                }
                pos += framed;
                valid_end = pos;
            }
            // A record older than the segment: a reused segment's old
            // records start here (its new ones end here).
            Ok((entry, _)) if entry.seq < first_seq => {
                stale_tail = true;
                break;
            }
            result => {
                let why = match result {
                    Ok(_) => "sequence number does not increase",
                    Err(why) => why,
                };
                // Zeros to the end: the clean end of a segment.
                if bytes[pos..].iter().all(|&b| b == 0) {
                    break;
                }
                match resync(&bytes[pos + 1..], last) {
                    Some(skip) => {
                        let skipped = skip + 1;
                        report.corrupt_stretches += 1;
                        report.skipped_bytes += skipped as u64;
                        report.problems.push(format!(
                            "{}: invalid record at offset {pos} ({why}); skipped {skipped} bytes to the next valid record",
                            path.display()
                        ));
                        pos += skipped;
                    }
                    // Nothing newer follows, but old records do: the
                    // end of what a reused segment was written with,
                    // unless the next record's head is there (a write
                    // torn inside it, over the old records).
                    None if !begins_record_after(&bytes[pos..], last)
                        && stale_records(&bytes[pos..], first_seq) =>
                    {
                        stale_tail = true;
                        break;
                    }
                    None => {
                        let torn = bytes[pos..].len() - trailing_zeros(&bytes[pos..]);
                        report.torn_tails += 1;
                        report.torn_bytes += torn as u64;
                        report.problems.push(format!(
                            "{}: torn tail at offset {pos} ({why}): {torn} bytes after the last valid record",
                            path.display()
                        ));
                        break;
                    }
                }
            }
        }
    }
    Some(SegmentScan {
        valid_end,
        stale_tail,
    })
}

/// Whether `bytes` holds a valid record older than `first_seq`: the old
/// records of a reused segment (see [`reuse_spare`]).
fn stale_records(bytes: &[u8], first_seq: u64) -> bool {
    next_record(bytes, |seq| seq < first_seq).is_some()
}

/// Whether `bytes`, which do not decode, start with the head of the
/// record after `last`: a length in bounds and the sequence number
/// `last + 1`. A reused segment's old bytes cannot (its records are all
/// older than the segment), so this is a write torn inside that record.
fn begins_record_after(bytes: &[u8], last: u64) -> bool {
    let Some(head) = bytes.get(..RECORD_HEAD + 8) else {
        return false;
    };
    let len = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default()) as usize;
    let seq = u64::from_le_bytes(head[RECORD_HEAD..].try_into().unwrap_or_default());
    (BODY_FIXED..=BODY_FIXED + LINE_BYTES_MAX).contains(&len) && Some(seq) == last.checked_add(1)
}

/// Reads the records of one segment file's `bytes` (as [`segments`] lists
/// it, with its first sequence), passing those at or above `from_seq` to
/// `on_record` and adding what it finds to `report`.
pub fn scan_segment_bytes(
    path: &Path,
    bytes: &[u8],
    first_seq: u64,
    from_seq: u64,
    report: &mut ScanReport,
    on_record: &mut impl FnMut(&JournalEntry<'_>),
) {
    report.segments += 1;
    scan_segment(path, bytes, first_seq, from_seq, report, on_record);
}

fn trailing_zeros(bytes: &[u8]) -> usize {
    bytes.iter().rev().take_while(|&&b| b == 0).count()
}

/// The offset in `bytes` of the next valid record with a sequence number
/// above `last`.
fn resync(bytes: &[u8], last: u64) -> Option<usize> {
    next_record(bytes, |seq| seq > last)
}

/// The offset in `bytes` of the first valid record whose sequence number
/// `wanted` accepts, trying every offset.
fn next_record(bytes: &[u8], wanted: impl Fn(u64) -> bool) -> Option<usize> {
    (0..bytes.len().saturating_sub(RECORD_HEAD + BODY_FIXED - 1))
        .find(|&at| matches!(decode_record(&bytes[at..]), Ok((entry, _)) if wanted(entry.seq)))
}

/// Validates the end of the journal in `dir` and truncates a torn tail
/// (after the last valid record), so appending can resume safely: the
/// newest segments back to the first that holds a valid record (a crash
/// can only tear the segment being written). Older segments are read
/// once, by the replay, which validates them as it goes; `shardwatch
/// journal check` ([`scan`]) reads them all. Call it before
/// [`Journal::open`] and start at [`ScanReport::next_seq`], which is right
/// even when every segment is empty.
pub fn repair_tail(dir: &Path) -> Result<ScanReport, StorageError> {
    let mut report = ScanReport::default();
    let segs = segments(dir)?;
    for (first, path) in segs.iter().rev() {
        let bytes = std::fs::read(path).map_err(|source| StorageError::Open {
            path: path.clone(),
            source,
        })?;
        report.segments += 1;
        let torn_before = report.torn_tails;
        let records_before = report.records;
        let Some(scan) = scan_segment(path, &bytes, *first, u64::MAX, &mut report, &mut |_| {})
        else {
            continue;
        };
        if scan.valid_end < bytes.len()
            && (report.torn_tails > torn_before
                || scan.stale_tail
                || trailing_zeros(&bytes) == bytes.len() - scan.valid_end)
        {
            truncate(path, scan.valid_end as u64)?;
        }
        if report.records > records_before {
            break;
        }
    }
    if report.last_seq.is_none() {
        // Only empty segments: continue after the newest one's start.
        if let Some((first, _)) = segs.last() {
            report.last_seq = Some(first.saturating_sub(1));
        }
    }
    Ok(report)
}

fn truncate(path: &Path, len: u64) -> Result<(), StorageError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
        .map_err(|source| StorageError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// What [`retain`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetainReport {
    /// Segments taken out of the journal, kept as spares or deleted.
    pub deleted_segments: u64,
    pub deleted_bytes: u64,
    /// Of `deleted_segments`, those kept as spares for the writer to reuse.
    pub spared_segments: u64,
    /// Bytes over the size limit kept because no checkpoint covers them yet.
    pub kept_uncovered_bytes: u64,
}

/// Deletes the oldest closed segments while the journal is over
/// `max_bytes` or they are older than `max_age`, but only segments whose
/// every record is at or below `covered_seq` (checkpoints no longer need
/// them). The newest segment is never deleted. With `keep_spares`, up to
/// [`SPARES_MAX`] of them are renamed to spares instead (outside the
/// journal: no scan or replay reads them), which the writer reuses for its
/// next segments (a buffered journal's; see `reuse_spare`).
pub fn retain(
    dir: &Path,
    max_bytes: u64,
    max_age: Duration,
    covered_seq: u64,
    keep_spares: bool,
) -> Result<RetainReport, StorageError> {
    let segs = segments(dir)?;
    let mut spare_room = if keep_spares {
        SPARES_MAX.saturating_sub(spares(dir).len())
    } else {
        // Spares a buffered journal left (the node now writes with
        // O_DIRECT, which does not reuse them) are only disk space.
        for spare in spares(dir) {
            std::fs::remove_file(&spare).map_err(|source| StorageError::Write {
                path: spare.clone(),
                source,
            })?;
        }
        0
    };
    let sizes: Vec<(u64, Option<SystemTime>)> = segs
        .iter()
        .map(|(_, path)| {
            std::fs::metadata(path)
                .map(|m| (m.len(), m.modified().ok()))
                .unwrap_or((0, None))
        })
        .collect();
    let mut total: u64 = sizes.iter().map(|(len, _)| len).sum();
    let mut report = RetainReport::default();
    let now = SystemTime::now();
    for i in 0..segs.len().saturating_sub(1) {
        let (len, modified) = sizes[i];
        let old = modified
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if total <= max_bytes && !old {
            break;
        }
        let last_seq = segs[i + 1].0.saturating_sub(1);
        if last_seq > covered_seq {
            report.kept_uncovered_bytes = total.saturating_sub(max_bytes);
            break;
        }
        let (first, path) = &segs[i];
        let spared = spare_room > 0
            && std::fs::rename(path, dir.join(format!("{first:020}{SPARE_SUFFIX}"))).is_ok();
        if spared {
            spare_room -= 1;
            report.spared_segments += 1;
        } else {
            std::fs::remove_file(path).map_err(|source| StorageError::Write {
                path: path.clone(),
                source,
            })?;
        }
        total -= len;
        report.deleted_segments += 1;
        report.deleted_bytes += len;
    }
    if report.deleted_segments > 0 {
        sync_dir(dir)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;

    /// Every directory sync so far: the directory and the thread that ran
    /// it (tests run in parallel, each in its own directory).
    static DIR_SYNCS: std::sync::Mutex<Vec<(PathBuf, std::thread::ThreadId)>> =
        std::sync::Mutex::new(Vec::new());

    pub(super) fn dir_synced(dir: &Path) {
        DIR_SYNCS
            .lock()
            .unwrap()
            .push((dir.to_path_buf(), std::thread::current().id()));
    }

    /// The threads that synced `dir`, in order.
    fn dir_sync_threads(dir: &Path) -> Vec<std::thread::ThreadId> {
        DIR_SYNCS
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| d == dir)
            .map(|(_, thread)| *thread)
            .collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sw-journal-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn run<T, F, Fut>(make: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        LocalExecutorBuilder::default()
            .spawn(make)
            .unwrap()
            .join()
            .unwrap()
    }

    fn read_all(dir: &Path) -> (Vec<(u64, Vec<u8>)>, ScanReport) {
        let mut out = Vec::new();
        let report = scan(dir, 0, |e| out.push((e.seq, e.line.to_vec()))).unwrap();
        (out, report)
    }

    fn write_lines(dir: &Path, lines: usize, options: JournalOptions) {
        let dir = dir.to_path_buf();
        run(move || async move {
            let journal = Journal::open(&dir, 0, 1, options).await.unwrap();
            let peer: SocketAddr = "192.0.2.7:514".parse().unwrap();
            for i in 0..lines {
                journal
                    .append(i as i64, 1, Some(peer), format!("line {i}").as_bytes())
                    .unwrap();
                if i % 7 == 0 {
                    journal.commit().await.unwrap();
                }
            }
            journal.close().await.unwrap();
        });
    }

    const OPTIONS: JournalOptions = JournalOptions {
        segment_bytes: 1 << 20,
        fsync: FsyncPolicy::EveryCommit,
        direct_io: false,
        drop_synced_pages: true,
        preallocate: true,
    };

    /// [`OPTIONS`] with O_DIRECT writes. The tests of the write path run
    /// both ways.
    const DIRECT: JournalOptions = JournalOptions {
        direct_io: true,
        ..OPTIONS
    };

    #[test]
    fn records_round_trip_with_peer_and_time() {
        let mut buf = Vec::new();
        let entry = JournalEntry {
            seq: 42,
            received_ns: -5,
            transport: 3,
            peer: Some("[2001:db8::1]:6514".parse().unwrap()),
            line: b"<13>hello",
        };
        encode_record(&entry, &mut buf);
        let (back, len) = decode_record(&buf).unwrap();
        assert_eq!(back, entry);
        assert_eq!(len, buf.len());
        buf[len - 1] ^= 1;
        assert_eq!(decode_record(&buf).unwrap_err(), "checksum mismatch");
    }

    #[test]
    fn written_lines_read_back_in_order_across_commits() {
        lines_read_back_in_order(OPTIONS);
    }

    #[test]
    fn written_lines_read_back_in_order_across_direct_commits() {
        lines_read_back_in_order(DIRECT);
    }

    fn lines_read_back_in_order(options: JournalOptions) {
        let dir = temp_dir("order");
        write_lines(&dir, 100, options);
        let (lines, report) = read_all(&dir);
        assert_eq!(lines.len(), 100);
        assert!(lines.iter().enumerate().all(|(i, (seq, line))| {
            *seq == i as u64 + 1 && line == format!("line {i}").as_bytes()
        }));
        assert_eq!(report.torn_tails, 0);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        // The closed segment was trimmed to its logical end.
        let (_, path) = &segments(&dir).unwrap()[0];
        let len = std::fs::metadata(path).unwrap().len();
        let records: usize = (0..100)
            .map(|i| RECORD_HEAD + BODY_FIXED + format!("line {i}").len())
            .sum();
        assert_eq!(len as usize, HEADER_BYTES + records);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn segments_roll_and_restart_continues_the_sequence() {
        segments_roll_and_restart(false);
    }

    #[test]
    fn direct_segments_roll_and_restart_continues_the_sequence() {
        segments_roll_and_restart(true);
    }

    fn segments_roll_and_restart(direct_io: bool) {
        let dir = temp_dir("roll");
        let small = JournalOptions {
            segment_bytes: 8192,
            fsync: FsyncPolicy::Interval(Duration::from_millis(5)),
            direct_io,
            drop_synced_pages: true,
            preallocate: true,
        };
        write_lines(&dir, 2_000, small);
        assert!(segments(&dir).unwrap().len() > 3);
        let report = repair_tail(&dir).unwrap();
        assert_eq!(report.next_seq(), 2_001);
        let dir2 = dir.clone();
        run(move || async move {
            let journal = Journal::open(&dir2, 0, 2_001, small).await.unwrap();
            assert_eq!(journal.append(0, 1, None, b"after restart"), Some(2_001));
            journal.close().await.unwrap();
        });
        let (lines, report) = read_all(&dir);
        assert_eq!(lines.len(), 2_001);
        assert!(lines.windows(2).all(|w| w[1].0 == w[0].0 + 1));
        assert_eq!(lines.last().unwrap().1, b"after restart");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        // Reading from a sequence number skips earlier records.
        let mut from = Vec::new();
        scan(&dir, 1_990, |e| from.push(e.seq)).unwrap();
        assert_eq!(from, (1_990..=2_001).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A buffered journal that gives its pages back prepares its next
    /// segment off the core: each roll finds it ready (an empty file with
    /// the segment's size allocated past its end) and renames it; a
    /// prepared file left by a crash is no segment and is truncated for
    /// reuse; closing removes the prepared file and trims every segment's
    /// preallocation, and every line reads back.
    #[test]
    fn rolls_take_the_prepared_segment_and_close_frees_the_preallocation() {
        use std::os::unix::fs::MetadataExt;
        let dir = temp_dir("prepared");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(PREPARED_NAME), [b'x'; 10_000]).unwrap();
        let segment_bytes = 256 << 10;
        let options = JournalOptions {
            segment_bytes,
            fsync: FsyncPolicy::Interval(Duration::from_millis(5)),
            direct_io: false,
            drop_synced_pages: true,
            preallocate: true,
        };
        let dir2 = dir.clone();
        let (appended, unprepared, seen) = run(move || async move {
            let journal = Journal::open(&dir2, 0, 1, options).await.unwrap();
            let line = [b'p'; 300];
            let mut appended = 0u64;
            let mut seen = Vec::new();
            for _ in 0..4 {
                journal.preparation_done().await;
                let prepared = std::fs::metadata(dir2.join(PREPARED_NAME)).unwrap();
                seen.push((prepared.len(), prepared.blocks() * 512));
                let before = segments(&dir2).unwrap().len();
                while segments(&dir2).unwrap().len() == before {
                    for _ in 0..50 {
                        journal.append(0, 1, None, &line).unwrap();
                        appended += 1;
                    }
                    journal.commit().await.unwrap();
                }
            }
            journal.close().await.unwrap();
            (appended, journal.rolls_unprepared(), seen)
        });
        assert_eq!(unprepared, 0);
        for (len, allocated) in seen {
            assert_eq!(len, 0, "a prepared segment is empty");
            assert!(allocated >= segment_bytes, "{allocated} bytes allocated");
        }
        assert!(!dir.join(PREPARED_NAME).exists());
        let files = segments(&dir).unwrap();
        assert_eq!(files.len(), 5);
        for (_, path) in &files {
            let meta = std::fs::metadata(path).unwrap();
            assert!(
                meta.blocks() * 512 <= align_up(meta.len(), 4096),
                "{path:?}: {} bytes allocated for {}",
                meta.blocks() * 512,
                meta.len()
            );
        }
        let (lines, report) = read_all(&dir);
        assert_eq!(lines.len() as u64, appended);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_segment_is_closed_by_the_next_sync_not_by_the_commit() {
        closes_rolled_segment_at_next_sync(false);
    }

    #[test]
    fn a_full_direct_segment_is_closed_by_the_next_sync_not_by_the_commit() {
        closes_rolled_segment_at_next_sync(true);
    }

    fn closes_rolled_segment_at_next_sync(direct_io: bool) {
        let dir = temp_dir("roll-deferred");
        let dir2 = dir.clone();
        let options = JournalOptions {
            segment_bytes: 64 << 10,
            fsync: FsyncPolicy::Interval(Duration::from_secs(60)),
            direct_io,
            drop_synced_pages: true,
            preallocate: true,
        };
        run(move || async move {
            let journal = Journal::open(&dir2, 0, 1, options).await.unwrap();
            let line = [b'r'; 200];
            let mut last = 0;
            // Commit until a commit rolls the segment.
            while segments(&dir2).unwrap().len() < 2 {
                last = journal.append(0, 1, None, &line).unwrap();
                journal.commit().await.unwrap();
            }
            // The commit that rolled did not sync: nothing is durable, the
            // full segment is left to the next sync, and it still has the
            // padding of its last write.
            assert_eq!(journal.written_seq(), last);
            assert_eq!(journal.durable_seq(), 0);
            assert_eq!(journal.state.borrow().closing.len(), 1);
            assert!(journal.state.borrow().dir_unsynced);
            let first = segments(&dir2).unwrap()[0].1.clone();
            let padded = std::fs::metadata(&first).unwrap().len();
            // Lines go to the new segment meanwhile.
            let after = journal.append(0, 1, None, b"in the next segment").unwrap();
            journal.commit().await.unwrap();
            assert_eq!(journal.durable_seq(), 0);
            let info = journal.sync().await.unwrap();
            assert!(info.synced.is_some());
            assert_eq!(journal.durable_seq(), after);
            assert!(journal.state.borrow().closing.is_empty());
            assert!(!journal.state.borrow().dir_unsynced);
            // The directory (which holds the new segment) was synced once,
            // on the blocking pool: not on the executor's own thread.
            let syncs = dir_sync_threads(&dir2);
            assert_eq!(syncs.len(), 1, "{syncs:?}");
            assert_ne!(syncs[0], std::thread::current().id());
            // Cut to its logical length: its last record ends the file.
            let closed = std::fs::read(&first).unwrap();
            assert!(closed.len() as u64 <= padded);
            let mut report = ScanReport::default();
            let mut seqs = Vec::new();
            let scanned = scan_segment(&first, &closed, 1, 1, &mut report, &mut |e| {
                seqs.push(e.seq)
            })
            .unwrap();
            assert_eq!(scanned.valid_end, closed.len());
            assert_eq!(seqs.first(), Some(&1));
            journal.close().await.unwrap();
        });
        let (lines, report) = read_all(&dir);
        assert!(lines.windows(2).all(|w| w[1].0 == w[0].0 + 1));
        assert_eq!(lines.last().unwrap().1, b"in the next segment");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Lets the executor run other tasks once.
    async fn yield_now() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await
    }

    #[test]
    fn the_tail_grows_for_a_burst_and_shrinks_after_it() {
        let dir = temp_dir("tail-size");
        let dir2 = dir.clone();
        run(move || async move {
            let options = JournalOptions {
                segment_bytes: 64 << 20,
                fsync: FsyncPolicy::Interval(Duration::from_secs(60)),
                direct_io: false,
                drop_synced_pages: true,
                preallocate: true,
            };
            let journal = Journal::open(&dir2, 0, 1, options).await.unwrap();
            let capacity = || journal.state.borrow().buf.capacity();
            assert_eq!(capacity(), TAIL_CAPACITY_MIN);
            let line = [b'x'; 1_000];
            for _ in 0..3_000 {
                journal.append(0, 1, None, &line).unwrap();
            }
            assert!(capacity() >= 3_000 * 1_000, "grew: {}", capacity());
            journal.commit().await.unwrap();
            // The next tail is sized by that commit; the one after by a
            // small commit.
            journal.append(0, 1, None, b"small").unwrap();
            journal.commit().await.unwrap();
            assert_eq!(capacity(), TAIL_CAPACITY_MIN);
            journal.close().await.unwrap();
        });
        let (lines, report) = read_all(&dir);
        assert_eq!(lines.len(), 3_001);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_appended_while_a_commit_rolls_the_segment_are_kept() {
        appends_during_rolls_are_kept(false);
    }

    #[test]
    fn lines_appended_while_a_direct_commit_rolls_the_segment_are_kept() {
        appends_during_rolls_are_kept(true);
    }

    fn appends_during_rolls_are_kept(direct_io: bool) {
        // One task appends between yields while another commits: appends
        // land during writes and during a roll's truncate, sync and
        // segment creation. Every sequence number must be read back once.
        let dir = temp_dir("roll-concurrent");
        let small = JournalOptions {
            segment_bytes: 8192,
            fsync: FsyncPolicy::EveryCommit,
            direct_io,
            drop_synced_pages: true,
            preallocate: true,
        };
        let total = 3_000u64;
        let dir2 = dir.clone();
        run(move || async move {
            let journal = Rc::new(Journal::open(&dir2, 0, 1, small).await.unwrap());
            let appender = {
                let journal = journal.clone();
                glommio::spawn_local(async move {
                    for i in 0..total {
                        let line = format!("concurrent line {i} {}", "x".repeat((i % 50) as usize));
                        assert_eq!(journal.append(0, 1, None, line.as_bytes()), Some(i + 1));
                        if i % 8 == 7 {
                            glommio::timer::sleep(Duration::from_micros(50)).await;
                        }
                    }
                })
            };
            while journal.last_seq() < total {
                journal.commit().await.unwrap();
                yield_now().await;
            }
            appender.await;
            journal.close().await.unwrap();
        });
        let count = segments(&dir).unwrap().len();
        assert!(count > 5, "{count} segments");
        let (lines, report) = read_all(&dir);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let seqs: Vec<u64> = lines.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Environment variable naming the journal directory when the
    /// write-failure test runs as its own child process.
    const FSIZE_CHILD: &str = "SW_JOURNAL_FSIZE_CHILD";
    /// The same for the direct-write variant of the test.
    const FSIZE_CHILD_DIRECT: &str = "SW_JOURNAL_FSIZE_CHILD_DIRECT";
    /// The child's file size limit: the segment is cut here.
    const FSIZE_LIMIT: u64 = 64 << 10;
    /// Lines the child appends: several times what fits under the limit,
    /// so that the bytes put back outgrow the smallest tail.
    const FSIZE_LINES: u64 = 4_000;

    fn fsize_line(i: u64) -> String {
        format!("line {i} {}", "y".repeat((i % 40) as usize + 40))
    }

    /// The child's part: under a file size limit (`RLIMIT_FSIZE`) that
    /// cuts the segment at [`FSIZE_LIMIT`], every commit that crosses it
    /// gets a short write; with the limit then lowered below what is
    /// written, commits are refused outright (EFBIG); appends go on
    /// meanwhile. Once the limit is lifted, the next commit must write
    /// everything that was not written.
    fn fsize_child(dir: &Path, options: JournalOptions) {
        let limit = crate::testing::FileSizeLimit::take();
        let dir = dir.to_path_buf();
        let (short, refused) = run(move || async move {
            let journal = Rc::new(Journal::open(&dir, 0, 1, options).await.unwrap());
            limit.set(FSIZE_LIMIT);
            // Syncs run beside the commits, as the engine's interval sync
            // does: one that began before a failed write and ends after it
            // must not make the journal look recovered.
            let stop = Rc::new(Cell::new(false));
            let syncs = {
                let (journal, stop) = (journal.clone(), stop.clone());
                glommio::spawn_local(async move {
                    while !stop.get() {
                        let _ = journal.sync().await;
                        yield_now().await;
                    }
                })
            };
            let (mut short, mut refused) = (0, 0);
            let mut failed = false;
            for i in 0..FSIZE_LINES {
                // Every write fails from the first failure until the limit
                // is lifted.
                assert_eq!(journal.failing(), failed, "line {i}");
                assert_eq!(
                    journal.append(i as i64, 2, None, fsize_line(i).as_bytes()),
                    Some(i + 1)
                );
                if i == FSIZE_LINES * 2 / 3 {
                    // Below what is written: the next writes start past
                    // the limit and are refused outright (EFBIG).
                    limit.set(4096);
                }
                if i % 10 != 9 {
                    continue;
                }
                let result = journal.commit().await;
                failed |= result.is_err();
                if let Err(e) = result {
                    if e.to_string().contains("short write") {
                        short += 1;
                    } else {
                        refused += 1;
                    }
                    assert!(journal.written_seq() <= i);
                }
            }
            assert!(journal.failing());
            limit.lift();
            journal.commit().await.unwrap();
            assert!(!journal.failing());
            stop.set(true);
            syncs.await;
            assert_eq!(journal.written_seq(), FSIZE_LINES);
            Rc::try_unwrap(journal)
                .ok()
                .expect("the sync task is done")
                .close()
                .await
                .unwrap();
            (short, refused)
        });
        assert!(
            short > 10 && refused > 10,
            "{short} short, {refused} refused"
        );
    }

    /// A commit whose write comes back short or fails keeps its bytes,
    /// and the next commit writes them: every line reads back once, in
    /// order, with nothing torn or skipped. The failure is real: a child
    /// process (this test again) writes under a file size limit.
    #[test]
    fn a_short_or_failed_write_is_written_again_by_the_next_commit() {
        short_or_failed_writes_are_written_again(
            "journal::tests::a_short_or_failed_write_is_written_again_by_the_next_commit",
            FSIZE_CHILD,
            OPTIONS,
        );
    }

    #[test]
    fn a_short_or_failed_direct_write_is_written_again_by_the_next_commit() {
        short_or_failed_writes_are_written_again(
            "journal::tests::a_short_or_failed_direct_write_is_written_again_by_the_next_commit",
            FSIZE_CHILD_DIRECT,
            DIRECT,
        );
    }

    fn short_or_failed_writes_are_written_again(
        test: &str,
        child_var: &str,
        options: JournalOptions,
    ) {
        if let Some(dir) = std::env::var_os(child_var) {
            fsize_child(Path::new(&dir), options);
            return;
        }
        let dir = temp_dir("fsize");
        crate::testing::rerun_as_child(test, child_var, &dir);
        let (lines, report) = read_all(&dir);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!((report.torn_tails, report.corrupt_stretches), (0, 0));
        assert_eq!(lines.len() as u64, FSIZE_LINES);
        for (i, (seq, line)) in lines.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(line, fsize_line(i as u64).as_bytes());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_tail_is_truncated_and_counted_not_fatal() {
        let dir = temp_dir("torn");
        write_lines(&dir, 50, OPTIONS);
        let (_, path) = segments(&dir).unwrap()[0].clone();
        let len = std::fs::metadata(&path).unwrap().len();
        // Cut the last record in half.
        truncate(&path, len - 5).unwrap();
        let report = repair_tail(&dir).unwrap();
        assert_eq!(report.torn_tails, 1);
        assert_eq!(report.last_seq, Some(49));
        assert!(
            report.problems[0].contains("torn tail"),
            "{:?}",
            report.problems
        );
        // Repaired: a second pass finds nothing wrong.
        let again = repair_tail(&dir).unwrap();
        assert_eq!(again.torn_tails, 0);
        assert_eq!(again.records, 49);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn repair_tail_reads_only_the_newest_segments_and_keeps_the_sequence() {
        let dir = temp_dir("tail");
        let small = JournalOptions {
            segment_bytes: 4096,
            fsync: FsyncPolicy::EveryCommit,
            direct_io: false,
            drop_synced_pages: true,
            preallocate: true,
        };
        write_lines(&dir, 500, small);
        let segs = segments(&dir).unwrap();
        assert!(segs.len() > 3);
        // Tear the newest segment; an empty segment after it (a start
        // that crashed before writing) must not reset the sequence.
        // (The newest segment with records: closing may have rolled into
        // an empty one.)
        let newest = segs
            .iter()
            .rev()
            .map(|(_, p)| p.clone())
            .find(|p| std::fs::metadata(p).unwrap().len() > HEADER_BYTES as u64)
            .unwrap();
        let len = std::fs::metadata(&newest).unwrap().len();
        truncate(&newest, len - 3).unwrap();
        let mut empty = segment_header(0, 501);
        empty.truncate(HEADER_BYTES);
        std::fs::write(dir.join(segment_name(501)), &empty).unwrap();
        let report = repair_tail(&dir).unwrap();
        assert_eq!(report.torn_tails, 1);
        assert_eq!(report.next_seq(), 500);
        assert!(report.segments <= 3, "read {} segments", report.segments);
        // Everything empty: the sequence continues after the newest start.
        let only_empty = temp_dir("tail-empty");
        std::fs::create_dir_all(&only_empty).unwrap();
        std::fs::write(only_empty.join(segment_name(42)), segment_header(0, 42)).unwrap();
        assert_eq!(repair_tail(&only_empty).unwrap().next_seq(), 42);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&only_empty);
    }

    #[test]
    fn a_flipped_byte_in_the_middle_skips_one_record_and_keeps_the_rest() {
        let dir = temp_dir("flip");
        write_lines(&dir, 50, OPTIONS);
        let (_, path) = segments(&dir).unwrap()[0].clone();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = HEADER_BYTES + 10 * (RECORD_HEAD + BODY_FIXED + 6) + 20;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (lines, report) = read_all(&dir);
        assert_eq!(lines.len(), 49);
        assert_eq!(report.corrupt_stretches, 1);
        assert!(report.skipped_bytes > 0);
        assert_eq!(report.last_seq, Some(50));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn garbage_appended_after_the_last_record_is_a_torn_tail() {
        let dir = temp_dir("garbage");
        write_lines(&dir, 20, OPTIONS);
        let (_, path) = segments(&dir).unwrap()[0].clone();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0xAB; 300]);
        std::fs::write(&path, &bytes).unwrap();
        let report = repair_tail(&dir).unwrap();
        assert_eq!(report.torn_tails, 1);
        assert_eq!(report.torn_bytes, 300);
        assert_eq!(report.records, 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn retention_deletes_only_covered_old_segments() {
        let dir = temp_dir("retain");
        let small = JournalOptions {
            segment_bytes: 4096,
            fsync: FsyncPolicy::EveryCommit,
            direct_io: false,
            drop_synced_pages: true,
            preallocate: true,
        };
        write_lines(&dir, 1_000, small);
        let before = segments(&dir).unwrap();
        assert!(before.len() > 4);
        // Nothing covered: nothing deleted, the excess is reported.
        let kept = retain(&dir, 0, Duration::from_secs(3600), 0, false).unwrap();
        assert_eq!(kept.deleted_segments, 0);
        assert!(kept.kept_uncovered_bytes > 0);
        // Covered up to the start of the third segment: two go.
        let covered = before[2].0 - 1;
        let report = retain(&dir, 0, Duration::from_secs(3600), covered, false).unwrap();
        assert_eq!(report.deleted_segments, 2);
        assert_eq!(report.spared_segments, 0);
        assert!(spares(&dir).is_empty());
        let (lines, _) = read_all(&dir);
        assert_eq!(lines.first().unwrap().0, before[2].0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Appends `lines` lines (`{tag} {i}`) to the journal in `dir` from
    /// where [`repair_tail`] says it ends, committing every 7th; closes
    /// the journal, or leaves it as a crash would (written, not closed).
    /// With `drop_synced_pages`, a synced segment's whole pages leave the
    /// page cache while the page its tail is rewritten in stays (else
    /// each commit would read it back from the device first), and what
    /// is written after the drops reads back whole; without it the pages
    /// stay.
    #[test]
    fn synced_pages_leave_the_page_cache_and_the_tail_page_stays() {
        for drop_synced_pages in [true, false] {
            let dir = temp_dir(&format!("drop-{drop_synced_pages}"));
            let options = JournalOptions {
                segment_bytes: 4 << 20,
                fsync: FsyncPolicy::EveryCommit,
                direct_io: false,
                drop_synced_pages,
                preallocate: true,
            };
            let dir2 = dir.clone();
            let resident = run(move || async move {
                let journal = Journal::open(&dir2, 0, 1, options).await.unwrap();
                let mut resident = Vec::new();
                for round in 0..2 {
                    for i in 0..2_000 {
                        let line = format!("round {round} line {i} {}", "x".repeat(i % 90));
                        journal.append(i as i64, 1, None, line.as_bytes()).unwrap();
                        if i % 50 == 0 {
                            journal.commit().await.unwrap();
                        }
                    }
                    journal.commit().await.unwrap();
                    journal.pages_given_back().await;
                    let path = segments(&dir2).unwrap().last().unwrap().1.clone();
                    resident.push(crate::testing::resident_pages(&path));
                }
                journal.close().await.unwrap();
                resident
            });
            let (lines, report) = read_all(&dir);
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            assert_eq!(lines.len(), 4_000);
            assert!(lines.windows(2).all(|w| w[1].0 == w[0].0 + 1));
            assert!(lines[3_999].1.starts_with(b"round 1 line 1999 "));
            for pages in &resident {
                assert!(pages.len() > 40, "{} pages", pages.len());
                let (whole, tail) = pages.split_at(pages.len() - 1);
                if drop_synced_pages && !crate::testing::on_tmpfs(&dir) {
                    assert!(whole.iter().all(|r| !r), "dropped: {pages:?}");
                    assert!(tail[0], "the tail page must stay");
                } else if !drop_synced_pages {
                    assert!(pages.iter().all(|r| *r), "kept: {pages:?}");
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// `prefetch` brings a segment whose pages were dropped back into the
    /// page cache (the kernel reads it in the background; polled here).
    #[test]
    fn prefetch_reads_a_dropped_segment_back_in() {
        use std::os::fd::AsRawFd;
        let dir = temp_dir("prefetch");
        std::fs::create_dir_all(&dir).unwrap();
        if crate::testing::on_tmpfs(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        let path = dir.join(segment_name(1));
        std::fs::write(&path, vec![7u8; 4 << 20]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        file.sync_all().unwrap();
        crate::page_cache::give_back(file.as_raw_fd(), 0, None);
        let resident = |path: &Path| {
            crate::testing::resident_pages(path)
                .iter()
                .filter(|r| **r)
                .count()
        };
        let pages = (4 << 20) / PAGE_BYTES as usize;
        assert!(
            resident(&path) < pages / 10,
            "{} of {pages}",
            resident(&path)
        );
        prefetch(&path);
        let mut waited = 0;
        while resident(&path) < pages && waited < 200 {
            std::thread::sleep(Duration::from_millis(10));
            waited += 1;
        }
        assert_eq!(resident(&path), pages);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn append_lines(dir: &Path, tag: &str, lines: usize, options: JournalOptions, close: bool) {
        let dir = dir.to_path_buf();
        let tag = tag.to_string();
        run(move || async move {
            let next = repair_tail(&dir).unwrap().next_seq();
            let journal = Journal::open(&dir, 0, next, options).await.unwrap();
            for i in 0..lines {
                journal
                    .append(i as i64, 1, None, format!("{tag} {i}").as_bytes())
                    .unwrap();
                if i % 7 == 0 {
                    journal.commit().await.unwrap();
                }
            }
            journal.commit().await.unwrap();
            if close {
                journal.close().await.unwrap();
            }
        });
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn covered_segments_become_spares_that_the_writer_reuses() {
        let dir = temp_dir("spares");
        // Spares are reused only by a journal that keeps its pages.
        let small = JournalOptions {
            segment_bytes: 4096,
            drop_synced_pages: false,
            preallocate: true,
            ..OPTIONS
        };
        append_lines(&dir, "old", 1_000, small, true);
        let before = segments(&dir).unwrap();
        assert!(before.len() > SPARES_MAX + 3);
        // SPARES_MAX + 2 covered: SPARES_MAX become spares (the most
        // kept), two go.
        let covered = before[SPARES_MAX + 2].0 - 1;
        let report = retain(&dir, 0, Duration::from_secs(3600), covered, true).unwrap();
        assert_eq!(
            (report.deleted_segments, report.spared_segments),
            (SPARES_MAX as u64 + 2, SPARES_MAX as u64)
        );
        let spared: Vec<u64> = spares(&dir).iter().map(|p| inode(p)).collect();
        assert_eq!(spared.len(), SPARES_MAX);
        // Enough new lines for several more segments: the spares are
        // taken (same files, renamed), and the journal reads as one
        // sequence with nothing stale, torn or skipped.
        append_lines(&dir, "new", 1_000, small, true);
        assert!(spares(&dir).is_empty());
        let inodes: Vec<u64> = segments(&dir)
            .unwrap()
            .iter()
            .map(|(_, p)| inode(p))
            .collect();
        assert!(
            spared.iter().all(|i| inodes.contains(i)),
            "{spared:?} {inodes:?}"
        );
        let (lines, report) = read_all(&dir);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(lines.first().unwrap().0, before[SPARES_MAX + 2].0);
        assert!(lines.windows(2).all(|w| w[1].0 == w[0].0 + 1));
        let new: Vec<&[u8]> = lines
            .iter()
            .map(|(_, l)| l.as_slice())
            .filter(|l| l.starts_with(b"new"))
            .collect();
        assert_eq!(new.len(), 1_000);
        assert_eq!(new.last().unwrap(), b"new 999");
        // Without `keep_spares` covered segments are deleted outright, and
        // spares left from before go too.
        let segs = segments(&dir).unwrap();
        let report = retain(&dir, 0, Duration::from_secs(3600), segs[2].0 - 1, true).unwrap();
        assert_eq!(report.spared_segments, 2);
        let last_covered = segs.last().unwrap().0 - 1;
        let report = retain(&dir, 0, Duration::from_secs(3600), last_covered, false).unwrap();
        assert_eq!(report.spared_segments, 0);
        assert!(report.deleted_segments > 0);
        assert!(spares(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One full segment of long old lines in `dir`, made a spare, then 40
    /// short lines `new 0` to `new 39` into a new segment (the journal
    /// opens it on the spare) and the process dies: the file still holds
    /// the old records after them. Returns the last covered sequence
    /// number, the spare's length, and the newest segment's first
    /// sequence number and path.
    fn crash_on_a_reused_spare(dir: &Path) -> (u64, u64, u64, PathBuf) {
        let options = JournalOptions {
            segment_bytes: 64 << 10,
            drop_synced_pages: false,
            preallocate: true,
            ..OPTIONS
        };
        append_lines(dir, &"old ".repeat(50), 600, options, true);
        let before = segments(dir).unwrap();
        assert!(before.len() >= 2);
        let covered = before[1].0 - 1;
        let report = retain(dir, 0, Duration::from_secs(3600), covered, true).unwrap();
        assert_eq!(report.spared_segments, 1);
        let spare_len = std::fs::metadata(&spares(dir)[0]).unwrap().len();
        append_lines(dir, "new", 40, options, false);
        let (first, newest) = segments(dir).unwrap().last().unwrap().clone();
        (covered, spare_len, first, newest)
    }

    #[test]
    fn a_reused_segment_left_by_a_crash_ends_where_its_old_records_start() {
        let dir = temp_dir("spare-crash");
        let (covered, spare_len, _, newest) = crash_on_a_reused_spare(&dir);
        let (lines, report) = read_all(&dir);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.torn_tails, 0);
        let first_new = lines.iter().position(|l| l.1.starts_with(b"new")).unwrap();
        assert_eq!(lines.len() - first_new, 40);
        assert!(lines[first_new..].iter().all(|l| l.1.starts_with(b"new")));
        assert!(lines[..first_new].iter().all(|l| l.0 > covered));
        assert_eq!(lines.last().unwrap().1, b"new 39");
        assert!(lines.windows(2).all(|w| w[1].0 == w[0].0 + 1));
        let stale_len = std::fs::metadata(&newest).unwrap().len();
        // Repair cuts the old records off, reports nothing, and a second
        // pass reads the same.
        let repaired = repair_tail(&dir).unwrap();
        assert!(repaired.problems.is_empty(), "{:?}", repaired.problems);
        assert_eq!(repaired.last_seq, Some(lines.last().unwrap().0));
        let cut_len = std::fs::metadata(&newest).unwrap().len();
        assert!(
            cut_len < stale_len,
            "{cut_len} {stale_len} (spare {spare_len})"
        );
        let (again, _) = read_all(&dir);
        assert_eq!(again, lines);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_write_torn_over_a_reused_segments_old_records_is_a_torn_tail() {
        let dir = temp_dir("spare-torn");
        let (_, _, first, newest) = crash_on_a_reused_spare(&dir);
        let mut bytes = std::fs::read(&newest).unwrap();
        let (mut end, mut last) = (HEADER_BYTES, 0);
        while let Ok((entry, framed)) = decode_record(&bytes[end..]) {
            if entry.seq < first {
                break;
            }
            (end, last) = (end + framed, entry.seq);
        }
        // The next record's first 40 bytes reached the file, its end did
        // not: the old records' bytes follow them.
        let mut next = Vec::new();
        let torn = JournalEntry {
            seq: last + 1,
            received_ns: 0,
            transport: 1,
            peer: None,
            line: b"new 40, torn by a power loss",
        };
        encode_record(&torn, &mut next);
        bytes[end..end + 40].copy_from_slice(&next[..40]);
        std::fs::write(&newest, &bytes).unwrap();
        let (lines, report) = read_all(&dir);
        assert_eq!(report.torn_tails, 1, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("torn tail"),
            "{:?}",
            report.problems
        );
        assert_eq!(lines.last().unwrap(), &(last, b"new 39".to_vec()));
        // Repair cuts it (and the old records) off; a second pass finds
        // nothing.
        assert_eq!(repair_tail(&dir).unwrap().torn_tails, 1);
        assert_eq!(std::fs::metadata(&newest).unwrap().len(), end as u64);
        let again = repair_tail(&dir).unwrap();
        assert!(again.problems.is_empty(), "{:?}", again.problems);
        assert_eq!(again.last_seq, Some(last));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn appends_are_refused_past_the_unwritten_tail_cap() {
        let dir = temp_dir("cap");
        let dir2 = dir.clone();
        run(move || async move {
            let journal = Journal::open(&dir2, 0, 1, OPTIONS).await.unwrap();
            let line = vec![b'x'; LINE_BYTES_MAX];
            let mut appended = 0;
            while journal.append(0, 1, None, &line).is_some() {
                appended += 1;
                assert!(appended <= TAIL_BYTES_MAX / LINE_BYTES_MAX);
            }
            // Each record is a little over a line, after the header.
            assert_eq!(appended, TAIL_BYTES_MAX / LINE_BYTES_MAX);
            // Once written, appends are taken again.
            journal.commit().await.unwrap();
            assert!(journal.append(0, 1, None, b"again").is_some());
            journal.close().await.unwrap();
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_journal_closed_without_records_is_a_valid_empty_segment() {
        let dir = temp_dir("empty");
        write_lines(&dir, 0, OPTIONS);
        let report = repair_tail(&dir).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(
            (report.segments, report.records, report.next_seq()),
            (1, 0, 1)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wait_durable_returns_once_synced_under_an_interval_policy() {
        let dir = temp_dir("durable");
        let dir2 = dir.clone();
        let options = JournalOptions {
            segment_bytes: 1 << 20,
            fsync: FsyncPolicy::Interval(Duration::from_millis(20)),
            direct_io: false,
            drop_synced_pages: true,
            preallocate: true,
        };
        run(move || async move {
            let journal = Journal::open(&dir2, 0, 1, options).await.unwrap();
            let seq = journal.append(1, 1, None, b"x").unwrap();
            journal.commit().await.unwrap();
            assert_eq!(journal.written_seq(), seq);
            journal.wait_durable(seq).await.unwrap();
            assert!(journal.durable_seq() >= seq);
            journal.close().await.unwrap();
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
