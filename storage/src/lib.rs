//! shardwatch-storage: the files the appliance writes.
//!
//! This crate owns file formats and nothing else: it knows records as opaque
//! bytes plus the few labels a file needs (a reason, a source address). It
//! never parses events or evaluates rules.
//!
//! - [`quarantine`]: lines that could not be accepted, with raw bytes,
//!   source and reason, as JSON lines.
//! - [`alerts`]: the append-only alert log (`alerts.jsonl`).
//! - [`journal`]: per-core segment files of received lines (glommio DMA
//!   writes, CRC32C per record, torn-tail repair, retention).
//! - [`checkpoint`]: atomically written, validated checkpoint files.
//! - [`crc`]: CRC32C of journal records (three interleaved lanes).
//! - [`page_cache`]: advice to the kernel about a file's cached pages.
//! - [`spawn_background`]: file work for the executor's blocking pool, at a
//!   lower CPU priority than the cores.

pub mod alerts;
pub mod checkpoint;
pub mod crc;
pub mod journal;
pub mod page_cache;
pub mod quarantine;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use std::path::PathBuf;

/// Errors name the file they are about, so an operator knows where to look.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Nice value of the executor's blocking-pool threads (checkpoint writes,
/// journal syncs and retention): background work that should give way to a core thread,
/// or anything else latency-bound, on a CPU they share, and still gets
/// about a tenth of a busy CPU against nice-0 threads (never starved).
pub const BACKGROUND_NICE: i32 = 10;

/// Runs `work` on the executor's blocking thread pool (checkpoint writes,
/// journal syncs and retention), that thread first set to
/// [`BACKGROUND_NICE`] (once per thread). The pool's threads are
/// unpinned, so they may share a CPU with a core (or, on a small machine,
/// with whatever else runs there): a checkpoint chunk copies MiBs into the
/// page cache in one go, milliseconds of CPU that a ready core thread
/// should not wait behind. Must be called on a glommio executor.
pub fn spawn_background<F, R>(work: F) -> impl std::future::Future<Output = R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(move || {
        lower_priority_once();
        work()
    })
}

/// Sets the calling thread's nice value to [`BACKGROUND_NICE`], once per
/// thread. A failure (a seccomp filter, a container that forbids it) leaves
/// the thread as it was: the priority is a preference, not a need.
fn lower_priority_once() {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    LOWERED.with(|lowered| {
        if !lowered.replace(true) {
            // SAFETY: plain syscalls on the calling thread (on Linux the
            // nice value is per thread, named by its id).
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE);
            }
        }
    });
}

/// Appends `bytes` to `out` as the body of a JSON string (without quotes),
/// escaping what JSON requires. Invalid UTF-8 sequences become U+FFFD: the
/// exact bytes are kept separately where a file needs them.
pub fn push_json_str(out: &mut String, bytes: &[u8]) {
    for ch in String::from_utf8_lossy(bytes).chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping_round_trips_through_a_json_parser_shape() {
        let mut s = String::new();
        push_json_str(&mut s, b"a\"b\\c\nd\x01\xff");
        assert_eq!(s, "a\\\"b\\\\c\\nd\\u0001\u{fffd}");
    }
    fn nice_of_this_thread() -> i32 {
        // SAFETY: plain syscalls on the calling thread.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }

    #[test]
    fn background_work_runs_at_a_lower_priority_off_the_executor_thread() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let executor_nice = nice_of_this_thread();
                let executor_thread = std::thread::current().id();
                for _ in 0..3 {
                    let (nice, thread) =
                        spawn_background(|| (nice_of_this_thread(), std::thread::current().id()))
                            .await;
                    assert_ne!(thread, executor_thread);
                    // At least BACKGROUND_NICE: a thread may only lower its
                    // own priority, so a test run at a higher nice keeps it.
                    assert!(nice >= BACKGROUND_NICE.max(executor_nice), "{nice}");
                }
                // The executor's own thread keeps its priority.
                assert_eq!(nice_of_this_thread(), executor_nice);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
