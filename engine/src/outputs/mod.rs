//! Alert outputs beyond stdout and `alerts.jsonl`: a webhook, a syslog
//! forward to a SIEM, and a rotated JSON-lines file.
//!
//! Every output reads the durable alert log (`alerts.jsonl`) from its own
//! cursor, persisted in `<data>/outputs/<name>.offset` after each delivered
//! batch. So the alert log is the disk-backed queue: a receiver that is
//! down for an hour loses nothing (alerts wait in the log and go out when
//! it returns), an output never blocks ingest or detection (it runs on its
//! own thread and only reads a file), and its backlog is the log bytes
//! past its cursor (`shardwatch_output_backlog_bytes{output}`). Delivery is
//! at least once across a crash between a delivery and its cursor write;
//! alert ids are deterministic, so receivers can drop repeats.

pub mod file;
pub mod syslog;
pub mod webhook;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

/// Most alerts one delivery carries.
pub const BATCH_ALERTS_MAX: usize = 500;
/// Longest wait between retries of a failing output.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often an idle output looks for new alerts.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Where one output delivers a batch of alert lines (JSON objects).
pub trait Deliver: Send {
    fn name(&self) -> &str;
    /// Delivers every line or fails as a whole (the batch is retried).
    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()>;
}

/// Live numbers of one output, read by `/metrics`.
#[derive(Debug, Default)]
pub struct OutputStats {
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    pub backlog_bytes: AtomicU64,
}

/// A cursor over the alert log, persisted in an offset file.
pub struct Cursor {
    log: PathBuf,
    offset_file: PathBuf,
    offset: u64,
}

impl Cursor {
    /// Opens the cursor named `name`, at its saved offset or at the start.
    pub fn open(data_dir: &Path, name: &str) -> anyhow::Result<Cursor> {
        let dir = data_dir.join("outputs");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let offset_file = dir.join(format!("{name}.offset"));
        let offset = std::fs::read_to_string(&offset_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(Cursor {
            log: data_dir.join("alerts.jsonl"),
            offset_file,
            offset,
        })
    }

    /// Up to `max` complete lines after the cursor, and the offset after
    /// them. A partial last line (the writer is mid-line) is left for later.
    pub fn peek(&self, max: usize) -> anyhow::Result<(Vec<String>, u64)> {
        let mut file = match File::open(&self.log) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), self.offset))
            }
            Err(err) => {
                return Err(err).with_context(|| format!("cannot open {}", self.log.display()))
            }
        };
        let len = file.metadata()?.len();
        if len <= self.offset {
            return Ok((Vec::new(), self.offset));
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let want = (len - self.offset).min(8 * 1024 * 1024);
        let mut buf = vec![0u8; want as usize];
        file.read_exact(&mut buf)?;
        let mut lines = Vec::new();
        let mut consumed = 0usize;
        for line in buf.split_inclusive(|&b| b == b'\n') {
            if lines.len() == max || !line.ends_with(b"\n") {
                break;
            }
            consumed += line.len();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if !text.trim().is_empty() {
                lines.push(text);
            }
        }
        Ok((lines, self.offset + consumed as u64))
    }

    /// Moves the cursor and persists it (write to a temp file, rename).
    pub fn commit(&mut self, offset: u64) -> anyhow::Result<()> {
        assert!(offset >= self.offset, "an output cursor never moves back");
        let tmp = self.offset_file.with_extension("offset.tmp");
        std::fs::write(&tmp, offset.to_string())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.offset_file)
            .with_context(|| format!("cannot rename to {}", self.offset_file.display()))?;
        self.offset = offset;
        Ok(())
    }

    /// Bytes of the log past the cursor.
    pub fn backlog_bytes(&self) -> u64 {
        std::fs::metadata(&self.log)
            .map(|m| m.len().saturating_sub(self.offset))
            .unwrap_or(0)
    }
}

/// A running output thread.
pub struct OutputThread {
    pub name: String,
    pub stats: Arc<OutputStats>,
    thread: JoinHandle<()>,
}

impl OutputThread {
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts the delivery loop of one output. It drains what the log holds
/// when `stop` is set (bounded by one failed attempt) and then exits.
pub fn start(
    data_dir: &Path,
    mut output: Box<dyn Deliver>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<OutputThread> {
    let name = output.name().to_string();
    let mut cursor = Cursor::open(data_dir, &name)?;
    let stats = Arc::new(OutputStats::default());
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sw-out-{name}"))
        .spawn(move || {
            let mut backoff = Duration::from_millis(100);
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                thread_stats
                    .backlog_bytes
                    .store(cursor.backlog_bytes(), Ordering::Relaxed);
                let (lines, next) = match cursor.peek(BATCH_ALERTS_MAX) {
                    Ok(batch) => batch,
                    Err(err) => {
                        eprintln!("shardwatch: output {}: {err:#}", output.name());
                        (Vec::new(), 0)
                    }
                };
                if lines.is_empty() {
                    if stopping {
                        break;
                    }
                    std::thread::sleep(POLL_INTERVAL);
                    continue;
                }
                match output.deliver(&lines) {
                    Ok(()) => {
                        thread_stats
                            .delivered
                            .fetch_add(lines.len() as u64, Ordering::Relaxed);
                        if let Err(err) = cursor.commit(next) {
                            eprintln!("shardwatch: output {}: {err:#}", output.name());
                        }
                        backoff = Duration::from_millis(100);
                    }
                    Err(err) => {
                        thread_stats.failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "shardwatch: output {}: delivery failed, retrying in {:?}: {err:#}",
                            output.name(),
                            backoff
                        );
                        if stopping {
                            // The alerts stay in the log; the next start
                            // delivers them from the saved cursor.
                            break;
                        }
                        let mut slept = Duration::ZERO;
                        while slept < backoff && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(POLL_INTERVAL);
                            slept += POLL_INTERVAL;
                        }
                        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                    }
                }
            }
        })
        .with_context(|| format!("cannot start output thread {name}"))?;
    Ok(OutputThread {
        name,
        stats,
        thread,
    })
}
