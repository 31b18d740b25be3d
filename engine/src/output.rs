//! The alert writer: one thread that appends alerts to `alerts.jsonl` and
//! prints them on stdout.
//!
//! Cores hand rendered alert lines over a bounded channel, so a slow stdout
//! pushes back on the cores that raise alerts instead of growing memory. The
//! writer flushes whenever the channel runs empty, so an alert is on disk and
//! on stdout within one burst of being raised, and fsyncs the log at exit.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;
use shardwatch_storage::alerts::AlertLog;

/// One rendered alert and the id of the rule that raised it.
#[derive(Debug)]
pub struct AlertLine {
    pub rule_id: String,
    pub line: String,
}

/// Alerts written so far, by rule id; read by `/metrics`.
pub type AlertsByRule = Arc<Mutex<BTreeMap<String, u64>>>;

/// Handle to the running writer thread.
pub struct AlertWriter {
    thread: JoinHandle<anyhow::Result<u64>>,
    pub by_rule: AlertsByRule,
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
        let thread = std::thread::Builder::new()
            .name("sw-alerts".into())
            .spawn(move || -> anyhow::Result<u64> {
                let stdout = std::io::stdout();
                let mut written = 0u64;
                while let Ok(first) = rx.recv() {
                    let mut out = stdout.lock();
                    let mut line = Some(first);
                    while let Some(alert) = line.take() {
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
                    let _ = out.flush();
                }
                log.flush(true)?;
                Ok(written)
            })
            .context("cannot start the alert writer thread")?;
        Ok((tx, AlertWriter { thread, by_rule }))
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
