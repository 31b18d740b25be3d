//! The alert writer: one thread that appends alerts to `alerts.jsonl` and
//! prints them on stdout.
//!
//! Cores hand rendered alert lines over a bounded channel, so a writer
//! that cannot keep up pushes back on the cores that raise alerts instead
//! of growing memory. Stdout is printed from its own thread with its own
//! bounded queue: a stdout that blocks (a pipe nobody reads) misses lines,
//! counted, and holds up neither the log nor the cores. The writer flushes
//! whenever the channel runs empty, so an alert is on disk and handed to
//! stdout within one burst of being raised, and fsyncs the log at exit
//! and at every checkpoint barrier. A barrier's sync runs on a thread of
//! its own ([`BarrierSyncer`]), on a second descriptor of the log, so the
//! alerts after it are written while the device flushes: on the dev VM a
//! sync's cache flush took up to 470 ms, and every alert raised meanwhile
//! had waited for it (BENCHMARKS.md, 2026-12-07 14:45 UTC). A log that cannot be written keeps its
//! alerts in memory and is tried again (see [`AlertWriter::start`]).
//!
//! Alert ids are deterministic, so the writer drops an alert whose id is
//! already in the log (counted): after a crash, recovery replays the
//! journal and raises again the alerts of the replayed stretch, and only
//! those the log lacks get through. Ids of the last
//! [`DEDUP_TAIL_BYTES`] of the log are loaded at start; the set keeps the
//! newest [`DEDUP_IDS_MAX`] ids.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Where the writer hands the line back once it is done with it, so
    /// that its strings are freed by the thread that allocated them (a
    /// core), not by the writer: glibc's `free` of another thread's chunk
    /// takes that thread's arena lock, and a core that finds it held
    /// sleeps until the writer's CPU lets go (BENCHMARKS.md, 2026-12-07).
    /// A line that cannot be handed back (the channel full or gone) is
    /// freed by the writer.
    pub home: Option<flume::Sender<AlertLine>>,
}

impl AlertLine {
    /// A barrier: answered once every alert sent before it is fsynced.
    pub fn barrier(ack: flume::Sender<()>) -> AlertLine {
        AlertLine {
            rule_id: String::new(),
            id: String::new(),
            line: String::new(),
            barrier: Some(ack),
            home: None,
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

/// The alert log's health, shared with `/metrics` and `/health`.
#[derive(Debug, Default)]
pub struct AlertLogStatus {
    /// Writes or syncs of the log that failed.
    pub errors: AtomicU64,
    /// True while the last write or sync failed (alerts wait in memory
    /// and are written again every [`ALERT_LOG_RETRY`]).
    pub failing: AtomicBool,
    /// Alerts refused because the lines waiting to be written reached
    /// `alerts::PENDING_BYTES_MAX`: not in the log (stdout still had them).
    pub unlogged: AtomicU64,
    /// Alert lines stdout missed because [`STDOUT_QUEUE_MAX`] lines were
    /// already waiting for it (the log has them).
    pub stdout_dropped: AtomicU64,
}

/// Syncs the alert log for checkpoint barriers on a thread of its own
/// (`sw-alerts-sync`), with a second descriptor, and answers each barrier
/// once its sync is done, so the writer goes on writing alerts meanwhile.
/// A sync that fails is counted as a log error and its barrier dropped
/// unanswered (that checkpoint fails, as when the writer's own sync
/// failed). Without the thread (it could not be started) the writer
/// syncs barriers itself.
struct BarrierSyncer {
    jobs: flume::Sender<(std::fs::File, flume::Sender<()>)>,
    thread: JoinHandle<()>,
}

/// How [`BarrierSyncer`] syncs the log (`File::sync_data`; a test holds
/// a sync to show the writer does not wait for it).
type SyncLog = Box<dyn Fn(&std::fs::File) -> std::io::Result<()> + Send>;

impl BarrierSyncer {
    fn start(status: Arc<AlertLogStatus>, sync_log: SyncLog) -> Option<BarrierSyncer> {
        let (jobs, queued) = flume::unbounded::<(std::fs::File, flume::Sender<()>)>();
        let spawned = std::thread::Builder::new()
            .name("sw-alerts-sync".into())
            .spawn(move || {
                for (file, ack) in queued.iter() {
                    match sync_log(&file) {
                        Ok(()) => {
                            let _ = ack.send(());
                        }
                        Err(err) => {
                            status.errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "shardwatch: alert log sync failed (the checkpoint waiting for it fails and is tried again): {err}"
                            );
                        }
                    }
                }
            });
        match spawned {
            Ok(thread) => Some(BarrierSyncer { jobs, thread }),
            Err(err) => {
                eprintln!(
                    "shardwatch: cannot start the alert log's sync thread (barriers are synced by the writer): {err}"
                );
                None
            }
        }
    }

    /// Writes what `log` holds, then has the sync thread sync it and
    /// answer `ack`.
    fn barrier(
        &self,
        log: &mut AlertLog,
        ack: flume::Sender<()>,
    ) -> Result<(), shardwatch_storage::StorageError> {
        log.flush(false)?;
        let file = log.sync_handle()?;
        // The thread ends only when `jobs` is dropped (`finish`).
        let _ = self.jobs.send((file, ack));
        Ok(())
    }

    /// Waits for the syncs handed over so far, then ends the thread.
    fn finish(self) {
        let BarrierSyncer { jobs, thread } = self;
        drop(jobs);
        let _ = thread.join();
    }
}

/// Alert lines waiting for stdout; past it, stdout misses lines (counted)
/// rather than the log or the cores wait on whoever reads stdout.
pub const STDOUT_QUEUE_MAX: usize = 16_384;

/// How long a stop waits for stdout to take the lines still queued for it.
pub const STDOUT_DRAIN_MAX: Duration = Duration::from_secs(5);

/// Prints alert lines on stdout from its own thread (`sw-stdout`), so a
/// stdout that blocks (a pipe nobody reads, a slow terminal) holds up
/// only itself: the writer hands lines over without waiting and counts
/// those that do not fit ([`AlertLogStatus::stdout_dropped`]). A closed
/// stdout (a pipe whose reader left) is ignored likewise.
struct StdoutPrinter {
    lines: flume::Sender<String>,
    done: flume::Receiver<()>,
    status: Arc<AlertLogStatus>,
}

impl StdoutPrinter {
    fn start(status: Arc<AlertLogStatus>) -> StdoutPrinter {
        let (lines, queued) = flume::bounded::<String>(STDOUT_QUEUE_MAX);
        let (finished, done) = flume::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("sw-stdout".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                while let Ok(first) = queued.recv() {
                    let mut out = stdout.lock();
                    let _ = writeln!(out, "{first}");
                    for line in queued.try_iter() {
                        let _ = writeln!(out, "{line}");
                    }
                    let _ = out.flush();
                }
                let _ = finished.send(());
            });
        if let Err(err) = spawned {
            // Without the thread every line counts as dropped below.
            eprintln!("shardwatch: cannot start the stdout printer: {err}");
        }
        StdoutPrinter {
            lines,
            done,
            status,
        }
    }

    fn print(&self, line: &str) {
        if self.lines.try_send(line.to_string()).is_err() {
            self.status.stdout_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lets the printer drain what is queued, for at most
    /// [`STDOUT_DRAIN_MAX`] (a stdout nobody reads would hold a stop
    /// forever).
    fn finish(self) {
        drop(self.lines);
        if self.done.recv_timeout(STDOUT_DRAIN_MAX).is_err() {
            eprintln!(
                "shardwatch: stdout did not take the last alerts within {STDOUT_DRAIN_MAX:?}"
            );
        }
    }
}

/// How often the writer tries a failing log again while no alert comes.
pub const ALERT_LOG_RETRY: Duration = Duration::from_secs(1);

/// Hands a line the writer is done with back to the thread that rendered
/// it (see [`AlertLine::home`]); frees it here when that is not possible.
fn hand_back(mut alert: AlertLine) {
    if let Some(home) = alert.home.take() {
        let _ = home.try_send(alert);
    }
}

/// Handle to the running writer thread.
pub struct AlertWriter {
    thread: JoinHandle<anyhow::Result<u64>>,
    pub by_rule: AlertsByRule,
    /// Alerts dropped because their id was already in the log.
    pub duplicates: Arc<AtomicU64>,
    /// Woken (`notify_waiters`) each time new lines reach the log file, so
    /// live readers (`/api/alerts/stream`) need not poll it.
    pub written: Arc<tokio::sync::Notify>,
    pub status: Arc<AlertLogStatus>,
}

impl AlertWriter {
    /// Starts the writer; it runs until every sender is dropped.
    ///
    /// A log that cannot be written does not stop it: the alerts stay
    /// appended (in memory, up to `alerts::PENDING_BYTES_MAX`) and go on
    /// to stdout, the failure is counted and logged (the first of a run
    /// of failures, and the recovery), and the write is tried again with
    /// the next alert or every [`ALERT_LOG_RETRY`]. A checkpoint barrier
    /// is answered only once the log is synced; while it cannot be, the
    /// barrier is dropped unanswered and that checkpoint fails.
    pub fn start(
        log: AlertLog,
        to_stdout: bool,
        queue_max: usize,
    ) -> anyhow::Result<(flume::Sender<AlertLine>, AlertWriter)> {
        AlertWriter::start_syncing_with(log, to_stdout, queue_max, Box::new(|f| f.sync_data()))
    }

    /// [`AlertWriter::start`] with the barriers' syncs made by `sync_log`.
    fn start_syncing_with(
        mut log: AlertLog,
        to_stdout: bool,
        queue_max: usize,
        sync_log: SyncLog,
    ) -> anyhow::Result<(flume::Sender<AlertLine>, AlertWriter)> {
        let (tx, rx) = flume::bounded::<AlertLine>(queue_max);
        let by_rule = AlertsByRule::default();
        let counts = by_rule.clone();
        let duplicates = Arc::new(AtomicU64::new(0));
        let dropped = duplicates.clone();
        let written_notify = Arc::new(tokio::sync::Notify::new());
        let notify = written_notify.clone();
        let status = Arc::new(AlertLogStatus::default());
        let health = status.clone();
        let mut seen = SeenIds::load(log.path())?;
        let thread = std::thread::Builder::new()
            .name("sw-alerts".into())
            .spawn(move || -> anyhow::Result<u64> {
                let stdout = to_stdout.then(|| StdoutPrinter::start(health.clone()));
                let syncer = BarrierSyncer::start(health.clone(), sync_log);
                let mut written = 0u64;
                // Counts a failure (logging the first of a run) or the
                // recovery from one; true when the log is fine.
                let outcome = |result: Result<(), shardwatch_storage::StorageError>| match result {
                    Ok(()) => {
                        if health.failing.swap(false, Ordering::Relaxed) {
                            eprintln!("shardwatch: the alert log is written again");
                        }
                        true
                    }
                    Err(err) => {
                        health.errors.fetch_add(1, Ordering::Relaxed);
                        if !health.failing.swap(true, Ordering::Relaxed) {
                            eprintln!(
                                "shardwatch: alert log write failed (alerts kept in memory, retried): {err}"
                            );
                        }
                        false
                    }
                };
                loop {
                    let first = if log.pending_bytes() > 0 {
                        match rx.recv_timeout(ALERT_LOG_RETRY) {
                            Ok(first) => Some(first),
                            Err(flume::RecvTimeoutError::Timeout) => None,
                            Err(flume::RecvTimeoutError::Disconnected) => break,
                        }
                    } else {
                        match rx.recv() {
                            Ok(first) => Some(first),
                            Err(_) => break,
                        }
                    };
                    let mut line = first;
                    while let Some(mut alert) = line.take() {
                        if let Some(ack) = alert.barrier.take() {
                            match &syncer {
                                // Written here, synced there.
                                Some(syncer) => {
                                    outcome(syncer.barrier(&mut log, ack));
                                }
                                None => {
                                    if outcome(log.flush(true)) {
                                        let _ = ack.send(());
                                    }
                                }
                            }
                            line = rx.try_recv().ok();
                            continue;
                        }
                        // Updates (no rule id) repeat their alert's id.
                        if !alert.rule_id.is_empty() && !seen.insert(&alert.id) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            hand_back(alert);
                            line = rx.try_recv().ok();
                            continue;
                        }
                        if !log.append(&alert.line) {
                            health.unlogged.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(stdout) = &stdout {
                            stdout.print(&alert.line);
                        }
                        // Updates of suppressed alerts carry no rule id and
                        // are not new alerts.
                        if !alert.rule_id.is_empty() {
                            if let Ok(mut counts) = counts.lock() {
                                match counts.get_mut(&alert.rule_id) {
                                    Some(count) => *count += 1,
                                    None => {
                                        counts.insert(alert.rule_id.clone(), 1);
                                    }
                                }
                            }
                        }
                        hand_back(alert);
                        written += 1;
                        line = rx.try_recv().ok();
                    }
                    if outcome(log.flush(false)) {
                        notify.notify_waiters();
                    }
                }
                if let Some(stdout) = stdout {
                    stdout.finish();
                }
                if let Some(syncer) = syncer {
                    syncer.finish();
                }
                log.flush(true).with_context(|| {
                    format!(
                        "{} bytes of alerts could not be written to the log at exit",
                        log.pending_bytes()
                    )
                })?;
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
                status,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sw-output-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn alert(id: &str, home: &flume::Sender<AlertLine>) -> AlertLine {
        AlertLine {
            rule_id: "r1".into(),
            id: id.into(),
            line: format!(r#"{{"id":"{id}","kind":"detection"}}"#),
            barrier: None,
            home: Some(home.clone()),
        }
    }

    #[test]
    fn written_and_duplicate_lines_go_back_to_the_thread_that_rendered_them() {
        let dir = temp_dir("home");
        let (tx, writer) = AlertWriter::start(AlertLog::open(&dir).unwrap(), false, 16).unwrap();
        let by_rule = writer.by_rule.clone();
        let (home, spent) = flume::bounded(16);
        for id in ["a", "a", "b"] {
            tx.send(alert(id, &home)).unwrap();
        }
        drop(tx);
        assert_eq!(writer.join().unwrap(), 2);
        let back: Vec<(String, String)> = spent.try_iter().map(|l| (l.id, l.line)).collect();
        assert_eq!(
            back,
            [
                (
                    "a".to_string(),
                    r#"{"id":"a","kind":"detection"}"#.to_string()
                ),
                (
                    "a".to_string(),
                    r#"{"id":"a","kind":"detection"}"#.to_string()
                ),
                (
                    "b".to_string(),
                    r#"{"id":"b","kind":"detection"}"#.to_string()
                ),
            ]
        );
        assert_eq!(by_rule.lock().unwrap().get("r1"), Some(&2));
        let log = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A checkpoint barrier's sync runs beside the writer: while it is
    /// held, an alert sent after the barrier reaches the log (the alert
    /// before it was written before the sync began), and the barrier is
    /// answered only once its sync is done. With the sync on the writer's
    /// thread the second alert would wait for it and this fails.
    #[test]
    fn alerts_after_a_barrier_are_written_while_its_sync_runs() {
        let dir = temp_dir("barrier");
        let (syncing, sync_started) = flume::bounded::<()>(1);
        let (release, released) = flume::bounded::<()>(1);
        let sync_log: SyncLog = Box::new(move |file| {
            let _ = syncing.send(());
            let _ = released.recv();
            file.sync_data()
        });
        let (tx, writer) =
            AlertWriter::start_syncing_with(AlertLog::open(&dir).unwrap(), false, 16, sync_log)
                .unwrap();
        let (home, _spent) = flume::bounded(16);
        let path = dir.join("alerts.jsonl");
        let logged = |id: &str| {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains(&format!(r#""id":"{id}""#))
        };
        tx.send(alert("before", &home)).unwrap();
        let (ack, answered) = flume::bounded(1);
        tx.send(AlertLine::barrier(ack)).unwrap();
        sync_started
            .recv_timeout(Duration::from_secs(10))
            .expect("the barrier's sync began");
        assert!(logged("before"), "flushed before its sync");
        tx.send(alert("after", &home)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !logged("after") {
            assert!(
                std::time::Instant::now() < deadline,
                "the alert after the barrier waited for the barrier's sync"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            answered.try_recv().is_err(),
            "answered before its sync ended"
        );
        release.send(()).unwrap();
        answered
            .recv_timeout(Duration::from_secs(10))
            .expect("answered once its sync ended");
        drop(tx);
        assert_eq!(writer.join().unwrap(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_line_whose_home_is_full_or_gone_is_freed_by_the_writer() {
        let dir = temp_dir("home-full");
        let (tx, writer) = AlertWriter::start(AlertLog::open(&dir).unwrap(), false, 16).unwrap();
        let (full, spent) = flume::bounded(1);
        let (gone, closed) = flume::bounded(4);
        drop(closed);
        for id in ["a", "b", "c"] {
            tx.send(alert(id, &full)).unwrap();
        }
        tx.send(alert("d", &gone)).unwrap();
        drop(tx);
        assert_eq!(writer.join().unwrap(), 4);
        let back: Vec<String> = spent.try_iter().map(|l| l.id).collect();
        assert_eq!(back, ["a"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
