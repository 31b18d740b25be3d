//! The alert writer: one thread that appends alerts to `alerts.jsonl` and
//! prints them on stdout.
//!
//! Cores hand rendered alert lines over a bounded channel, so a slow stdout
//! pushes back on the cores that raise alerts instead of growing memory. The
//! writer flushes whenever the channel runs empty, so an alert is on disk and
//! on stdout within one burst of being raised, and fsyncs the log at exit.

use std::io::Write;
use std::thread::JoinHandle;

use anyhow::Context;
use shardwatch_storage::alerts::AlertLog;

/// Handle to the running writer thread.
pub struct AlertWriter {
    thread: JoinHandle<anyhow::Result<u64>>,
}

impl AlertWriter {
    /// Starts the writer; it runs until every sender is dropped.
    pub fn start(
        mut log: AlertLog,
        to_stdout: bool,
        queue_max: usize,
    ) -> anyhow::Result<(flume::Sender<String>, AlertWriter)> {
        let (tx, rx) = flume::bounded::<String>(queue_max);
        let thread = std::thread::Builder::new()
            .name("sw-alerts".into())
            .spawn(move || -> anyhow::Result<u64> {
                let stdout = std::io::stdout();
                let mut written = 0u64;
                while let Ok(first) = rx.recv() {
                    let mut out = stdout.lock();
                    let mut line = Some(first);
                    while let Some(alert) = line.take() {
                        log.append(&alert)?;
                        if to_stdout {
                            // A closed stdout (a pipe whose reader left) must
                            // not stop the durable log: ignore write errors.
                            let _ = writeln!(out, "{alert}");
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
        Ok((tx, AlertWriter { thread }))
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
