//! The alert writer: one thread that appends alerts to `alerts.jsonl` and
//! prints them on stdout.
//!
//! Cores hand rendered alert lines over a bounded channel, so a slow stdout
//! pushes back on the cores that raise alerts instead of growing memory. The
//! writer flushes whenever the channel runs empty, so an alert is on disk and
//! on stdout within one burst of being raised, and fsyncs the log at exit
//! and at every checkpoint barrier.
//!
//! Alert ids are deterministic, so the writer drops an alert whose id is
//! already in the log (counted): after a crash, recovery replays the
//! journal and raises again the alerts of the replayed stretch, and only
//! those the log lacks get through. Ids of the last
//! [`DEDUP_TAIL_BYTES`] of the log are loaded at start; the set keeps the
//! newest [`DEDUP_IDS_MAX`] ids.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;
use shardwatch_storage::alerts::AlertLog;

/// How much of the alert log's end is read at start for known ids.
pub const DEDUP_TAIL_BYTES: u64 = 64 * 1024 * 1024;
/// How many recent ids the writer remembers.
pub const DEDUP_IDS_MAX: usize = 1_000_000;

/// One rendered alert, the id of the rule that raised it and its own id;
/// or, with `barrier` set, a request to fsync the log and answer.
#[derive(Debug)]
pub struct AlertLine {
    pub rule_id: String,
    pub id: String,
    pub line: String,
    pub barrier: Option<flume::Sender<()>>,
}

impl AlertLine {
    /// A barrier: answered once every alert sent before it is fsynced.
    pub fn barrier(ack: flume::Sender<()>) -> AlertLine {
        AlertLine {
            rule_id: String::new(),
            id: String::new(),
            line: String::new(),
            barrier: Some(ack),
        }
    }
}

/// The ids already delivered to the log, newest last.
struct SeenIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenIds {
    fn load(path: &std::path::Path) -> anyhow::Result<SeenIds> {
        let mut seen = SeenIds {
            set: HashSet::new(),
            order: VecDeque::new(),
        };
        for line in shardwatch_storage::alerts::tail_lines(path, DEDUP_TAIL_BYTES)? {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            // Updates of suppressed alerts repeat an id on purpose.
            if value["kind"] == "update" {
                continue;
            }
            if let Some(id) = value["id"].as_str() {
                seen.insert(id);
            }
        }
        Ok(seen)
    }

    /// Records `id`; false when it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= DEDUP_IDS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

/// Alerts written so far, by rule id; read by `/metrics`.
pub type AlertsByRule = Arc<Mutex<BTreeMap<String, u64>>>;

/// Handle to the running writer thread.
pub struct AlertWriter {
    thread: JoinHandle<anyhow::Result<u64>>,
    pub by_rule: AlertsByRule,
    /// Alerts dropped because their id was already in the log.
    pub duplicates: Arc<AtomicU64>,
    /// Woken (`notify_waiters`) each time new lines reach the log file, so
    /// live readers (`/api/alerts/stream`) need not poll it.
    pub written: Arc<tokio::sync::Notify>,
}

impl AlertWriter {
    /// Starts the writer; it runs until every sender is dropped.
    pub fn start(
        mut log: AlertLog,
        to_stdout: bool,
        queue_max: usize,
    ) -> anyhow::Result<(flume::Sender<AlertLine>, AlertWriter)> {
        let (tx, rx) = flume::bounded::<AlertLine>(queue_max);
        let by_rule = AlertsByRule::default();
        let counts = by_rule.clone();
        let duplicates = Arc::new(AtomicU64::new(0));
        let dropped = duplicates.clone();
        let written_notify = Arc::new(tokio::sync::Notify::new());
        let notify = written_notify.clone();
        let mut seen = SeenIds::load(log.path())?;
        let thread = std::thread::Builder::new()
            .name("sw-alerts".into())
            .spawn(move || -> anyhow::Result<u64> {
                let stdout = std::io::stdout();
                let mut written = 0u64;
                while let Ok(first) = rx.recv() {
                    let mut out = stdout.lock();
                    let mut line = Some(first);
                    while let Some(alert) = line.take() {
                        if let Some(ack) = alert.barrier {
                            log.flush(true)?;
                            let _ = ack.send(());
                            line = rx.try_recv().ok();
                            continue;
                        }
                        // Updates (no rule id) repeat their alert's id.
                        if !alert.rule_id.is_empty() && !seen.insert(&alert.id) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            line = rx.try_recv().ok();
                            continue;
                        }
                        log.append(&alert.line)?;
                        if to_stdout {
                            // A closed stdout (a pipe whose reader left) must
                            // not stop the durable log: ignore write errors.
                            let _ = writeln!(out, "{}", alert.line);
                        }
                        // Updates of suppressed alerts carry no rule id and
                        // are not new alerts.
                        if !alert.rule_id.is_empty() {
                            if let Ok(mut counts) = counts.lock() {
                                *counts.entry(alert.rule_id).or_default() += 1;
                            }
                        }
                        written += 1;
                        line = rx.try_recv().ok();
                    }
                    log.flush(false)?;
                    notify.notify_waiters();
                    let _ = out.flush();
                }
                log.flush(true)?;
                Ok(written)
            })
            .context("cannot start the alert writer thread")?;
        Ok((
            tx,
            AlertWriter {
                thread,
                by_rule,
                duplicates,
                written: written_notify,
            },
        ))
    }

    /// Waits for the writer to drain and close the log; returns how many
    /// alerts it wrote.
    pub fn join(self) -> anyhow::Result<u64> {
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the alert writer thread panicked"),
        }
    }
}
