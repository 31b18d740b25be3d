//! The alert collector: tails the appliance's `alerts.jsonl` (or reads alert
//! lines from stdin) on its own thread and stamps each alert with the time
//! it was observed.
//!
//! Observed time is when the collector read the line, so detection latency
//! includes the appliance's alert writer and file flush, which is what a
//! downstream consumer of the file sees; the appliance's own `latency_us`
//! is reported beside it. The tail sleeps on an inotify watch of the file
//! (woken by each write) once the file exists, and polls every
//! [`TAIL_POLL_NS`] before that or where inotify is unavailable. Its
//! thread asks for real-time priority (`SCHED_FIFO`, granted to root): on a
//! machine whose spare CPU runs the sender flat out, a normal-priority
//! observer waited for a scheduler slice after the alert was written, and
//! that wait (up to milliseconds) was measured as detection latency. What
//! the observer got is in [`CollectStats`] (`report.json`,
//! `detection.collector`).

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::clock;
use crate::matching::{parse_alert, ObservedAlert};
use crate::sse::{self, Dechunker, SseParser, StreamTarget, Subscription};

/// Idle poll interval of the file tail: the resolution it adds to latency.
pub const TAIL_POLL_NS: i64 = 250_000;
/// Longest alert line accepted; a longer one is skipped and counted.
pub const ALERT_LINE_BYTES_MAX: usize = 1024 * 1024;
/// Most alerts kept; later ones are counted but not stored.
pub const ALERTS_MAX: usize = 1_000_000;
/// Bytes read from the file per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Longest the tail sleeps on its inotify watch before looking again (for
/// the stop flag, and a file truncated or replaced).
const WATCH_WAIT_MS: i32 = 10;

/// An inotify watch on one file: [`FileWatch::wait`] returns when the
/// file was written (or after a timeout).
struct FileWatch {
    fd: libc::c_int,
}

impl FileWatch {
    /// A watch on `path`, or `None` where inotify refuses (the file does
    /// not exist yet, no inotify, out of watches).
    fn on(path: &std::path::Path) -> Option<FileWatch> {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: plain syscalls on a descriptor this struct owns and a
        // NUL-terminated path that outlives the call.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        let watch = FileWatch { fd };
        let mask = libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;
        // SAFETY: as above.
        if unsafe { libc::inotify_add_watch(fd, name.as_ptr(), mask) } < 0 {
            return None;
        }
        Some(watch)
    }

    /// Waits up to `timeout_ms` for a change, then drains the queued events.
    fn wait(&self, timeout_ms: i32) {
        let mut poll = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the buffer is ours and its length is
        // passed; the descriptor is non-blocking, so the drain ends.
        unsafe {
            libc::poll(&mut poll, 1, timeout_ms);
            let mut events = [0u8; 4096];
            while libc::read(self.fd, events.as_mut_ptr().cast(), events.len()) > 0 {}
        }
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Asks for `SCHED_FIFO` priority [`clock::COLLECTOR_RT_PRIORITY`] for
/// the calling thread (above the paced sender's); whether it was granted.
fn realtime_priority() -> bool {
    let param = libc::sched_param {
        sched_priority: clock::COLLECTOR_RT_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

/// Where alerts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertSource {
    /// Tail this file from its end at start (it may not exist yet).
    File(PathBuf),
    /// Read alert lines from stdin, e.g. `shardwatch run | shardwatch-load run --alerts-stdin`.
    Stdin,
    /// Subscribe to the appliance's live alert stream (server-sent events).
    Stream(StreamTarget),
}

/// Counters of what the collector skipped.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CollectStats {
    pub lines: u64,
    pub not_alerts: u64,
    pub oversized: u64,
    pub over_limit: u64,
    pub truncations: u64,
    /// Whether the observer thread ran at real-time priority.
    pub realtime_priority: bool,
    /// Whether it slept on an inotify watch (else it polled every
    /// [`TAIL_POLL_NS`]).
    pub inotify: bool,
    /// Where alerts came from: `file`, `stdin` or `stream`.
    pub source: &'static str,
    /// Why a live stream ended before the collector was stopped (closed by
    /// the appliance, a read error, a malformed body); empty otherwise.
    pub stream_error: String,
}

#[derive(Default)]
struct Shared {
    /// Alerts observed and not yet taken by [`Collector::snapshot`]: the
    /// reader pushes, the caller moves them out, so neither holds the lock
    /// for longer than a push or a swap.
    inbox: Mutex<Vec<ObservedAlert>>,
    /// Alerts stored so far (taken or not), against [`ALERTS_MAX`].
    stored: AtomicU64,
    stats: Mutex<CollectStats>,
    stop: AtomicBool,
}

/// A running collector.
pub struct Collector {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The alerts moved out of the inbox so far, in the order observed.
    taken: Vec<ObservedAlert>,
    /// Shared with the sender for progress lines.
    pub seen: Arc<AtomicU64>,
}

/// Splits complete lines off `pending`, handing each to `line`; keeps the
/// incomplete tail. A tail longer than [`ALERT_LINE_BYTES_MAX`] is dropped
/// up to its next newline and counted.
pub fn split_lines(
    pending: &mut Vec<u8>,
    skipping: &mut bool,
    stats: &mut CollectStats,
    mut line: impl FnMut(&[u8]),
) {
    let mut start = 0;
    while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
        let end = start + pos;
        if *skipping {
            *skipping = false;
        } else {
            line(&pending[start..end]);
        }
        start = end + 1;
    }
    pending.drain(..start);
    if pending.len() > ALERT_LINE_BYTES_MAX {
        pending.clear();
        if !*skipping {
            stats.oversized += 1;
        }
        *skipping = true;
    }
}

impl Shared {
    fn accept(&self, bytes: &[u8], stats: &mut CollectStats, seen: &AtomicU64) {
        let observed_ns = clock::now_ns();
        stats.lines += 1;
        let text = String::from_utf8_lossy(bytes);
        if text.trim().is_empty() {
            return;
        }
        let Some(alert) = parse_alert(&text, observed_ns) else {
            stats.not_alerts += 1;
            return;
        };
        seen.fetch_add(1, Ordering::Relaxed);
        if self.stored.load(Ordering::Relaxed) < ALERTS_MAX as u64 {
            self.stored.fetch_add(1, Ordering::Relaxed);
            self.inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(alert);
        } else {
            stats.over_limit += 1;
        }
    }
}

fn tail_file(path: PathBuf, mut offset: u64, shared: Arc<Shared>, seen: Arc<AtomicU64>) {
    let mut stats = CollectStats {
        realtime_priority: realtime_priority(),
        source: "file",
        ..CollectStats::default()
    };
    let mut file: Option<std::fs::File> = None;
    let mut watch: Option<FileWatch> = None;
    let mut pending = Vec::new();
    let mut skipping = false;
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let stopping = shared.stop.load(Ordering::Acquire);
        if file.is_none() {
            file = std::fs::File::open(&path).ok();
            if file.is_some() {
                // Before this pass reads: a write after the read then
                // still wakes the wait below.
                watch = FileWatch::on(&path);
                stats.inotify |= watch.is_some();
            }
        }
        let mut progressed = false;
        if let Some(f) = file.as_mut() {
            if let Ok(meta) = f.metadata() {
                if meta.len() < offset {
                    // Truncated or replaced: read the new content from the top.
                    stats.truncations += 1;
                    offset = 0;
                    pending.clear();
                }
            }
            if f.seek(SeekFrom::Start(offset)).is_ok() {
                if let Ok(n) = f.read(&mut chunk) {
                    if n > 0 {
                        progressed = true;
                        offset += n as u64;
                        pending.extend_from_slice(&chunk[..n]);
                        let mut complete: Vec<Vec<u8>> = Vec::new();
                        split_lines(&mut pending, &mut skipping, &mut stats, |line| {
                            complete.push(line.to_vec())
                        });
                        for line in &complete {
                            shared.accept(line, &mut stats, &seen);
                        }
                    }
                }
            }
        }
        if !progressed {
            if stopping {
                break;
            }
            match (&watch, &file) {
                (Some(watch), Some(_)) => watch.wait(WATCH_WAIT_MS),
                _ => clock::sleep_ns(TAIL_POLL_NS),
            }
        }
    }
    let mut s = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    *s = stats;
}

fn read_stdin(shared: Arc<Shared>, seen: Arc<AtomicU64>) {
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let mut line = Vec::new();
    let mut stats = CollectStats {
        source: "stdin",
        ..CollectStats::default()
    };
    loop {
        line.clear();
        // Bounded read: at most ALERT_LINE_BYTES_MAX bytes per line.
        match (&mut lock)
            .take(ALERT_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if line.len() > ALERT_LINE_BYTES_MAX {
                    stats.oversized += 1;
                    // Skip the rest of the oversized line.
                    let mut rest = Vec::new();
                    let _ = (&mut lock).take(u64::MAX).read_until(b'\n', &mut rest);
                    continue;
                }
                shared.accept(&line, &mut stats, &seen);
                *shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats.clone();
            }
        }
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
    }
}

/// Reads the answered subscription `sub` until the collector stops or the
/// stream ends; each `alert` event's data is one alert line.
fn read_stream(sub: Subscription, shared: Arc<Shared>, seen: Arc<AtomicU64>) {
    let mut stats = CollectStats {
        realtime_priority: realtime_priority(),
        source: "stream",
        ..CollectStats::default()
    };
    let Subscription {
        mut stream,
        chunked,
        body_start,
    } = sub;
    let mut dechunker = Dechunker::default();
    let mut parser = SseParser::new(ALERT_LINE_BYTES_MAX);
    let mut decoded = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut input = body_start;
    // Short reads, so the stop flag is seen; a stopping collector reads
    // until the stream has been quiet for one of them.
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(WATCH_WAIT_MS as u64)));
    loop {
        let body = if chunked {
            decoded.clear();
            if let Err(err) = dechunker.push(&input, &mut decoded) {
                stats.stream_error = format!("malformed chunked body: {err}");
                break;
            }
            &decoded[..]
        } else {
            &input[..]
        };
        parser.push(body, |kind, data| {
            if kind == b"alert" {
                shared.accept(data, &mut stats, &seen);
            }
        });
        if dechunker.done() {
            stats.stream_error = "the appliance ended the stream".into();
            break;
        }
        let stopping = shared.stop.load(Ordering::Acquire);
        match stream.read(&mut chunk) {
            Ok(0) => {
                if !stopping {
                    stats.stream_error = "the appliance closed the stream".into();
                }
                break;
            }
            Ok(n) => {
                input.clear();
                input.extend_from_slice(&chunk[..n]);
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stopping {
                    break;
                }
                input.clear();
            }
            Err(err) => {
                stats.stream_error = format!("read failed: {err}");
                break;
            }
        }
    }
    stats.oversized += parser.oversized;
    let mut s = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    *s = stats;
}

impl Collector {
    /// Starts collecting from `source`.
    pub fn start(source: AlertSource) -> anyhow::Result<Collector> {
        let shared = Arc::new(Shared::default());
        let seen = Arc::new(AtomicU64::new(0));
        let (s, c) = (shared.clone(), seen.clone());
        let thread = match source {
            AlertSource::File(path) => {
                // Alerts already in the file belong to earlier runs: start at
                // its end, measured now, before any event is sent, so an
                // alert written while the thread starts is not skipped.
                let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
                std::thread::Builder::new()
                    .name("alert-tail".into())
                    .spawn(move || tail_file(path, offset, s, c))?
            }
            AlertSource::Stdin => std::thread::Builder::new()
                .name("alert-stdin".into())
                .spawn(move || read_stdin(s, c))?,
            AlertSource::Stream(target) => {
                // Answered before any event is sent: the appliance starts
                // the stream at its log's end when it answers.
                let sub = sse::subscribe(&target)?;
                std::thread::Builder::new()
                    .name("alert-stream".into())
                    .spawn(move || read_stream(sub, s, c))?
            }
        };
        Ok(Collector {
            shared,
            thread: Some(thread),
            taken: Vec::new(),
            seen,
        })
    }

    /// The alerts observed so far.
    ///
    /// Moves the new ones out of the reader's inbox with the lock held
    /// only for a swap. A copy of every alert under the lock (thousands
    /// of strings) kept the reader from stamping the alerts it read
    /// meanwhile, and that wait would be measured as their way out; it
    /// was part of the end-of-send work that delayed a paced run's last
    /// alerts (see `QuietRematch` in the runner).
    pub fn snapshot(&mut self) -> &[ObservedAlert] {
        let new = std::mem::take(&mut *self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        if self.taken.is_empty() {
            self.taken = new;
        } else {
            self.taken.extend(new);
        }
        &self.taken
    }

    /// Stops the collector after it has read what is in the file now, and
    /// returns every alert and the skip counters. A stdin reader blocked in
    /// a read is left behind (it ends with the process).
    pub fn finish(mut self) -> (Vec<ObservedAlert>, CollectStats) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            if thread.is_finished() || !matches!(thread.thread().name(), Some("alert-stdin")) {
                let _ = thread.join();
            }
        }
        let stats = self
            .shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.snapshot();
        (std::mem::take(&mut self.taken), stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn split_lines_keeps_partial_tails_and_skips_oversized_lines() {
        let mut stats = CollectStats::default();
        let mut skipping = false;
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut pending = b"a\nbc".to_vec();
        split_lines(&mut pending, &mut skipping, &mut stats, |l| {
            got.push(l.to_vec())
        });
        assert_eq!(got, vec![b"a".to_vec()]);
        assert_eq!(pending, b"bc");
        pending.extend(vec![b'x'; ALERT_LINE_BYTES_MAX]);
        split_lines(&mut pending, &mut skipping, &mut stats, |l| {
            got.push(l.to_vec())
        });
        assert!(pending.is_empty() && skipping);
        assert_eq!(stats.oversized, 1);
        pending.extend(b"tail-of-long\nnext\n");
        split_lines(&mut pending, &mut skipping, &mut stats, |l| {
            got.push(l.to_vec())
        });
        assert_eq!(got, vec![b"a".to_vec(), b"next".to_vec()]);
        assert!(!skipping);
    }

    #[test]
    fn tails_a_file_that_appears_and_grows() {
        let dir = std::env::temp_dir().join(format!("sw-perf-collect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alerts.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut collector = Collector::start(AlertSource::File(path.clone())).unwrap();
        assert!(collector.snapshot().is_empty());
        let alert = r#"{"id":"1","kind":"detection","rule":{"id":"r","title":"T","level":"low"},"group":{},"sample":["s"]}"#;
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "{alert}\nnot json\n{}", &alert[..10]).unwrap();
        f.flush().unwrap();
        let deadline = clock::now_ns() + 5_000_000_000;
        while collector.seen.load(Ordering::Relaxed) < 1 && clock::now_ns() < deadline {
            clock::sleep_ns(1_000_000);
        }
        // A snapshot holds what was observed so far, and the next one
        // keeps it and adds what came since.
        assert_eq!(collector.snapshot().len(), 1);
        writeln!(f, "{}", &alert[10..]).unwrap();
        f.flush().unwrap();
        while collector.seen.load(Ordering::Relaxed) < 2 && clock::now_ns() < deadline {
            clock::sleep_ns(1_000_000);
        }
        let first_seen = collector.snapshot()[0].observed_ns;
        assert_eq!(collector.snapshot().len(), 2);
        let (alerts, stats) = collector.finish();
        assert_eq!(alerts[0].observed_ns, first_seen);
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].rule_title, "T");
        assert!(alerts[0].observed_ns <= alerts[1].observed_ns);
        assert_eq!(stats.not_alerts, 1);
        // Once the file existed the tail slept on an inotify watch.
        assert!(stats.inotify);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
