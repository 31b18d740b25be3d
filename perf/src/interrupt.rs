//! A harness stopped by a signal still stops what it started and puts
//! back what it changed.
//!
//! Without this, `kill` of a running bench (or `timeout`, or a closed
//! terminal) left the appliance it had started running, listening and
//! writing its journal into a scratch directory that was never removed,
//! and `--steer-loopback`'s masks set: the next measurement on the
//! machine then ran beside a stray node. Destructors do not run when a
//! signal ends a process, so what must be undone is kept in a registry
//! ([`doing`], [`spawn`]; each entry removed when its [`Registered`]
//! guard drops) and a thread of its own is told of SIGINT, SIGTERM and
//! SIGHUP by their handler ([`install`]). On one, the senders stop
//! ([`interrupted`]) and the thread stops each registered child (SIGTERM,
//! then SIGKILL after a grace), writes back each saved file, removes each
//! scratch directory, tells on stderr what it did, and ends the harness
//! by the same signal, so a shell or `timeout` sees what ended it. A
//! second signal meanwhile ends it at once.
//!
//! SIGKILL (or a crash) cannot be caught: the kernel then stops the
//! children ([`spawn`] asks it to), and what else is left is put right by
//! the next harness started on the machine. Each harness keeps a copy of
//! its registry on disk, a *record* (`<temp dir>/shardwatch-load-undo-<uid>/
//! <pid>.json`, rewritten as entries come and go, removed when none is
//! left), and each harness first undoes the records of harnesses that are
//! gone ([`recover_left_behind`]): it stops a child that still runs,
//! writes the saved files back and removes the scratch directories.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::clock;

/// The signals the harness undoes its changes on.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How long a child has to exit on SIGTERM before it is killed.
const CHILD_GRACE_NS: i64 = 5_000_000_000;

/// How long a child killed with SIGKILL is waited for.
const KILLED_WAIT_NS: i64 = 2_000_000_000;

/// How often a stopping child is looked at.
const POLL_NS: i64 = 10_000_000;

/// Something the harness must undo should a signal end it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undo {
    /// A child process it started (`what` names it): stopped and reaped.
    /// `started` is its start time (`/proc/<pid>/stat` field 22; 0 when
    /// unknown), so that a pid reused by another process is told apart.
    Child {
        pid: libc::pid_t,
        started: u64,
        what: String,
    },
    /// A file it changed, and the contents to write back.
    Restore { path: PathBuf, contents: String },
    /// A scratch directory it made, removed with what is in it.
    Scratch(PathBuf),
}

struct Registry {
    next: u64,
    entries: Vec<(u64, Undo)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    entries: Vec::new(),
});

/// Set once a signal has arrived.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps its entry in the registry until dropped.
#[must_use = "the entry leaves the registry when this is dropped"]
#[derive(Debug)]
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        // While a signal's undo runs it holds the registry to the end, so
        // a thread that gets here then waits for the harness to end.
        let mut registry = registry();
        registry.entries.retain(|(id, _)| *id != self.0);
        persist(&registry);
    }
}

fn push(registry: &mut Registry, undo: Undo) -> Registered {
    let id = registry.next;
    registry.next += 1;
    registry.entries.push((id, undo));
    persist(registry);
    Registered(id)
}

/// What a warning that no record can be kept adds.
const NO_RECORD: &str = "a harness killed with SIGKILL will leave its changes for you to undo";

/// A harness's registry as kept on disk for the next harness, should
/// this one end without undoing it.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The harness's pid and start time: it is gone when no process with
    /// that pid and start time runs.
    pid: libc::pid_t,
    started: u64,
    undo: Vec<Undo>,
}

/// This harness's record file and its own start time, once
/// [`recover_left_behind`] has found a directory to keep it in.
static RECORD: OnceLock<(PathBuf, u64)> = OnceLock::new();

/// Rewrites this harness's record from `registry` (held, so writes do not
/// interleave). A failed write is told once; the signal undo does not
/// depend on it.
fn persist(registry: &Registry) {
    static TOLD: AtomicBool = AtomicBool::new(false);
    let Some((path, started)) = RECORD.get() else {
        return;
    };
    let undo: Vec<Undo> = registry.entries.iter().map(|(_, u)| u.clone()).collect();
    let result = write_record(path, *started, undo);
    if let Err(err) = result {
        if !TOLD.swap(true, Ordering::Relaxed) {
            eprintln!(
                "shardwatch-load: warning: cannot keep the record of what to undo in {}: {err}; {NO_RECORD}",
                path.display()
            );
        }
    }
}

/// Writes the record at `path` of this harness (started at `started`)
/// holding `undo`: a temporary file renamed over it, so a reader gets
/// all of one version or of the one before; none when `undo` is empty.
fn write_record(path: &Path, started: u64, undo: Vec<Undo>) -> std::io::Result<()> {
    if undo.is_empty() {
        return match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        };
    }
    let record = Record {
        pid: std::process::id() as libc::pid_t,
        started,
        undo,
    };
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, serde_json::to_vec(&record)?)?;
    std::fs::rename(&temporary, path)
}

/// The state and start time (fields 3 and 22) of process `pid`, if it
/// exists (a zombie too).
fn process_state(pid: libc::pid_t) -> Option<(char, u64)> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = crate::machine::proc_stat_field(&line, 3)?.chars().next()?;
    let started = crate::machine::proc_stat_field(&line, 22)?.parse().ok()?;
    Some((state, started))
}

/// Whether process `pid` started at `started` still runs (not a zombie).
fn still_runs(pid: libc::pid_t, started: u64) -> bool {
    matches!(process_state(pid), Some((state, s)) if s == started && !matches!(state, 'Z' | 'X'))
}

/// The directory records are kept in: one per user, made by that user and
/// closed to others, since a record says which files to write and which
/// directories to remove. None (told why) if it is not so.
fn record_dir(temp: &Path) -> Result<PathBuf, String> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = temp.join(format!("shardwatch-load-undo-{uid}"));
    if let Err(err) = std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        if err.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(format!("cannot create {}: {err}", dir.display()));
        }
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a directory of this user's closed to others; not using it",
            dir.display()
        ));
    }
    Ok(dir)
}

/// Undoes what harnesses that are gone left in their records under
/// `temp` (the temp dir the harness uses: `$TMPDIR` or /tmp), and from
/// then on keeps this harness's record there. Called at the start of
/// every command; returns a line per thing done, to be told.
pub fn recover_left_behind(temp: &Path) -> Vec<String> {
    let dir = match record_dir(temp) {
        Ok(dir) => dir,
        Err(why) => return vec![format!("warning: {why}; {NO_RECORD}")],
    };
    let me = std::process::id() as libc::pid_t;
    let Some((_, my_start)) = process_state(me) else {
        return vec![format!(
            "warning: cannot read this harness's /proc/<pid>/stat; {NO_RECORD}"
        )];
    };
    let told = undo_left_behind(&dir);
    let _ = RECORD.set((dir.join(format!("{me}.json")), my_start));
    told
}

/// Undoes the records in `dir` of harnesses that are gone. A record is
/// taken by renaming it first, so two harnesses starting at once do not
/// both undo it.
fn undo_left_behind(dir: &Path) -> Vec<String> {
    let mut told = Vec::new();
    let me = std::process::id() as libc::pid_t;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            told.push(format!("warning: cannot read {}: {err}", dir.display()));
            return told;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // `<pid>.json`; the temporary `<pid>.json.tmp` of a harness that
        // died while writing it; `<pid>.json.undoing-by-<pid>`, a record
        // another harness took and died undoing (taken again once that
        // one is gone).
        let (record_name, undoer) = match name.split_once(".undoing-by-") {
            Some((record, undoer)) => (record, undoer.parse::<libc::pid_t>().ok()),
            None => (name.as_str(), None),
        };
        let Some(stem) = record_name
            .strip_suffix(".json")
            .or_else(|| record_name.strip_suffix(".json.tmp"))
        else {
            continue;
        };
        let Ok(pid) = stem.parse::<libc::pid_t>() else {
            continue;
        };
        if record_name.ends_with(".tmp") {
            if pid != me && process_state(pid).is_none() {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        if undoer.is_some_and(|undoer| undoer == me || process_state(undoer).is_some()) {
            continue;
        }
        let record: Record = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        {
            Ok(record) => record,
            Err(err) => {
                told.push(format!(
                    "warning: cannot read {}: {err}; left as it is",
                    path.display()
                ));
                continue;
            }
        };
        if still_runs(record.pid, record.started) {
            continue;
        }
        let taken = dir.join(format!("{record_name}.undoing-by-{me}"));
        if std::fs::rename(&path, &taken).is_err() {
            // Another harness took it first.
            continue;
        }
        told.push(format!(
            "harness pid {} ended without undoing what it did (killed with SIGKILL?); undoing its {} thing(s) from {}:",
            record.pid,
            record.undo.len(),
            path.display()
        ));
        told.extend(
            undo(record.undo, CHILD_GRACE_NS)
                .into_iter()
                .map(|l| format!("  {l}")),
        );
        let _ = std::fs::remove_file(&taken);
    }
    told
}

/// Does `act` (start a child, write a file, make a directory) and adds
/// the undo it returns to what a signal undoes, until the guard is
/// dropped. The registry is held throughout, so a signal comes either
/// before, and `act` is refused, or after, and finds its undo: a child
/// started or a mask written meanwhile cannot be missed.
pub fn doing<T>(
    act: impl FnOnce() -> anyhow::Result<(T, Undo)>,
) -> anyhow::Result<(T, Registered)> {
    let mut registry = registry();
    if interrupted() {
        anyhow::bail!("interrupted by a signal");
    }
    let (done, undo) = act()?;
    Ok((done, push(&mut registry, undo)))
}

/// Starts `command` as a child that a signal's undo stops (`what` names
/// it in errors and in what the undo tells).
///
/// Started from the main thread, the child is also sent SIGTERM by the
/// kernel should the harness die without its undo (SIGKILL:
/// `PR_SET_PDEATHSIG`), so no appliance outlives a killed harness. The
/// kernel sends it when the *thread* that started the child ends, so a
/// child started from any other thread does not get it.
pub fn spawn(command: &mut Command, what: String) -> anyhow::Result<(Child, Registered)> {
    // SAFETY: getpid and gettid only return this process's and thread's ids.
    let (parent, thread) = unsafe { (libc::getpid(), libc::gettid()) };
    if parent == thread {
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only async-signal-safe functions (prctl, getppid, raise).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The harness died before the request took hold.
                if libc::getppid() != parent {
                    libc::raise(libc::SIGTERM);
                }
                Ok(())
            });
        }
    }
    doing(|| {
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let pid = child.id() as libc::pid_t;
        // Read while it is unreaped, so the pid is still its.
        let started = process_state(pid).map_or(0, |(_, started)| started);
        Ok((child, Undo::Child { pid, started, what }))
    })
}

/// Whether a signal has arrived: a sender stops sending, so that the
/// appliance it feeds sees its connections close and stops at once
/// rather than draining them for seconds.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Acquire)
}

/// Whether the registry holds the entry of `guard` (for tests).
#[cfg(test)]
fn holds(guard: &Registered) -> bool {
    registry().entries.iter().any(|(id, _)| *id == guard.0)
}

/// The write end of the pipe the handler tells the signal thread on.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// Signals caught so far.
static CAUGHT: AtomicUsize = AtomicUsize::new(0);

/// The handler: only async-signal-safe work, a one-byte write. A second
/// signal while the first one's undo runs ends the harness at once (the
/// usual "press Ctrl-C again"), leaving what is not yet undone.
extern "C" fn handle(signal: libc::c_int) {
    if CAUGHT.fetch_add(1, Ordering::Relaxed) > 0 {
        // SAFETY: signal(2) and raise(3) are async-signal-safe; with the
        // default action restored, the raise ends the process.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        return;
    }
    // SAFETY: write(2) is async-signal-safe (the write end does not
    // block); errno is put back so the interrupted thread does not see
    // this write's.
    unsafe {
        let errno = *libc::__errno_location();
        let byte = signal as u8;
        libc::write(
            PIPE_WRITE.load(Ordering::Relaxed),
            (&byte as *const u8).cast(),
            1,
        );
        *libc::__errno_location() = errno;
    }
}

/// Catches SIGINT, SIGTERM and SIGHUP with a handler that tells a thread
/// of their own, which undoes the harness's changes. Called first in
/// `main`. A handler, not a mask and `sigwait`: a mask would pass to
/// every child (an appliance would then not stop on a bench's SIGTERM),
/// while a caught signal is reset to its default at `exec`. `SA_RESTART`
/// keeps most system calls of the other threads from failing meanwhile.
pub fn install() -> anyhow::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        anyhow::bail!(
            "cannot make the signal pipe: {}",
            std::io::Error::last_os_error()
        );
    }
    let [read_end, write_end] = fds;
    // SAFETY: fcntl on a descriptor just made; a handler's write must
    // never block.
    unsafe {
        libc::fcntl(write_end, libc::F_SETFL, libc::O_NONBLOCK);
    }
    PIPE_WRITE.store(write_end, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut byte = 0u8;
            // SAFETY: read(2) of one byte into a live local from the pipe
            // this thread owns.
            let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
            if n == 1 {
                on_signal(libc::c_int::from(byte));
            }
        })?;
    for signal in SIGNALS {
        // SAFETY: sigaction with a zeroed struct given a handler that is
        // async-signal-safe, an empty mask and SA_RESTART.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handle as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            anyhow::bail!(
                "cannot catch {}: {}",
                name(signal),
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Called at the end of `main`: if a signal's undo is running, waits for
/// it (it ends the harness), so that the harness does not exit half way
/// through putting things back.
pub fn settle() {
    if interrupted() {
        drop(registry());
    }
}

fn name(signal: libc::c_int) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        other => format!("signal {other}"),
    }
}

fn on_signal(signal: libc::c_int) -> ! {
    INTERRUPTED.store(true, Ordering::Release);
    // Held until the harness ends: a thread that drops a guard meanwhile
    // waits rather than undoing half of it or exiting first.
    let mut held = registry();
    let undos: Vec<Undo> = held.entries.drain(..).map(|(_, undo)| undo).collect();
    eprintln!(
        "shardwatch-load: interrupted by {}; {}",
        name(signal),
        if undos.is_empty() {
            "nothing to stop or put back".to_string()
        } else {
            format!(
                "stopping and putting back {} thing(s) first (a second signal ends it at once)",
                undos.len()
            )
        }
    );
    for line in undo(undos, CHILD_GRACE_NS) {
        eprintln!("shardwatch-load: {line}");
    }
    // Undone (what could not be was told, with how to do it by hand): no
    // record is left for the next harness to undo again.
    persist(&held);
    die_by(signal);
}

/// Ends the process by `signal` with its default action.
fn die_by(signal: libc::c_int) -> ! {
    // SAFETY: restores the default action of a catchable signal (not
    // blocked in this thread) and sends it to this thread, which ends the
    // process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    std::process::exit(128 + signal);
}

/// A child being stopped: this harness's, or one a harness that is gone
/// left (then not this process's child, so only watched, not reaped).
struct Stopping {
    pid: libc::pid_t,
    /// Its start time, 0 if unknown.
    started: u64,
    what: String,
    /// The last signal it was sent.
    sent: Option<libc::c_int>,
    /// How it ended, once reaped (or found reaped by someone else).
    ended: Option<String>,
}

impl Stopping {
    /// Reaps it if it has exited; true once it has.
    fn reaped(&mut self) -> bool {
        if self.ended.is_some() {
            return true;
        }
        if self.started != 0
            && !matches!(process_state(self.pid), Some((_, s)) if s == self.started)
        {
            // Gone, and its pid free or another process's: not to be
            // waited for, nor signalled.
            self.ended = Some("exited".into());
            return true;
        }
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid on one pid, WNOHANG so it does not block, into
        // a live local.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == self.pid {
            self.ended = Some(if libc::WIFSIGNALED(status) {
                format!("ended by {}", name(libc::WTERMSIG(status)))
            } else {
                format!("exited with {}", libc::WEXITSTATUS(status))
            });
        } else if r < 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
            && !(self.started != 0 && still_runs(self.pid, self.started))
        {
            // Reaped by the thread that owns it, or, left by a harness
            // that is gone, exited (a zombie its new parent will reap).
            self.ended = Some("exited".into());
        }
        self.ended.is_some()
    }
}

/// Waits until every child in `children` is reaped or `deadline_ns`.
fn reap_until(children: &mut [Stopping], deadline_ns: i64) {
    loop {
        let mut all = true;
        for child in children.iter_mut() {
            all &= child.reaped();
        }
        if all || clock::now_ns() >= deadline_ns {
            return;
        }
        clock::sleep_ns(POLL_NS);
    }
}

/// Undoes `undos`: every child is sent SIGTERM and given `grace_ns` to
/// exit before SIGKILL; then the files are written back; then the scratch
/// directories (which a child may have been writing into) are removed.
/// Returns a line per thing done, or not done and why.
pub fn undo(undos: Vec<Undo>, grace_ns: i64) -> Vec<String> {
    let mut told = Vec::new();
    let mut children = Vec::new();
    let mut restores = Vec::new();
    let mut scratches = Vec::new();
    for undo in undos {
        match undo {
            Undo::Child { pid, started, what } => children.push(Stopping {
                pid,
                started,
                what,
                sent: None,
                ended: None,
            }),
            Undo::Restore { path, contents } => restores.push((path, contents)),
            Undo::Scratch(path) => scratches.push(path),
        }
    }
    for child in children.iter_mut() {
        if !child.reaped() {
            // SAFETY: kill(2) on a child not yet reaped, or a process
            // left behind whose start time was just checked, so the pid
            // is still that process's.
            unsafe {
                libc::kill(child.pid, libc::SIGTERM);
            }
            child.sent = Some(libc::SIGTERM);
        }
    }
    reap_until(&mut children, clock::now_ns() + grace_ns);
    let mut any_killed = false;
    for child in children.iter_mut() {
        if !child.reaped() {
            // SAFETY: as above: not reaped, so still that process.
            unsafe {
                libc::kill(child.pid, libc::SIGKILL);
            }
            child.sent = Some(libc::SIGKILL);
            any_killed = true;
        }
    }
    if any_killed {
        reap_until(&mut children, clock::now_ns() + KILLED_WAIT_NS);
    }
    for child in &children {
        let how = match child.sent {
            None => "it had already exited".to_string(),
            Some(libc::SIGTERM) => "sent SIGTERM".to_string(),
            Some(_) => format!(
                "sent SIGKILL, not having exited {} s after SIGTERM",
                grace_ns as f64 / 1e9
            ),
        };
        told.push(match &child.ended {
            Some(ended) if child.sent.is_some() => {
                format!("stopped {} (pid {}): {how}, {ended}", child.what, child.pid)
            }
            Some(_) => format!("{} (pid {}): {how}", child.what, child.pid),
            None => format!(
                "could not stop {} (pid {}): {how}, it has not exited",
                child.what, child.pid
            ),
        });
    }
    for (path, contents) in restores {
        told.push(match std::fs::write(&path, &contents) {
            Ok(()) => format!("put {} back to {}", path.display(), contents.trim()),
            Err(err) => format!(
                "could not put {} back to {}: {err} (by hand: echo {} > {})",
                path.display(),
                contents.trim(),
                contents.trim(),
                path.display()
            ),
        });
    }
    for path in scratches {
        told.push(match std::fs::remove_dir_all(&path) {
            Ok(()) => format!("removed {}", path.display()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                format!("{} was already gone", path.display())
            }
            Err(err) => format!("could not remove {}: {err}", path.display()),
        });
    }
    told
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn alive(pid: libc::pid_t) -> bool {
        // A reaped child has no /proc entry; a zombie would still have one.
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    fn register(undo: Undo) -> Registered {
        doing(|| Ok(((), undo))).unwrap().1
    }

    #[test]
    fn a_guard_keeps_its_entry_until_dropped() {
        let a = register(Undo::Scratch(PathBuf::from("/nonexistent/a")));
        let b = register(Undo::Scratch(PathBuf::from("/nonexistent/b")));
        // What fails is not registered.
        let before = registry().entries.len();
        assert!(doing(|| -> anyhow::Result<((), Undo)> { anyhow::bail!("no") }).is_err());
        assert_eq!(registry().entries.len(), before);
        assert!(holds(&a) && holds(&b));
        drop(a);
        assert!(holds(&b));
        let registry = registry();
        assert!(!registry
            .entries
            .iter()
            .any(|(_, u)| *u == Undo::Scratch(PathBuf::from("/nonexistent/a"))));
        drop(registry);
        drop(b);
    }

    #[test]
    // `undo` reaps the children with waitpid: that is what is tested.
    #[allow(clippy::zombie_processes)]
    fn undo_stops_children_then_writes_files_back_then_removes_scratch() {
        let dir = shardwatch_tests::temp_dir("interrupt-undo");
        let file = dir.join("rps_cpus");
        std::fs::write(&file, "00000002").unwrap();
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(scratch.join("journal")).unwrap();
        std::fs::write(scratch.join("journal/00000001.seg"), b"x").unwrap();
        // One child that exits on SIGTERM, one that ignores it (an
        // ignored disposition survives exec).
        let polite = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let stubborn = Command::new("sh")
            .args(["-c", "trap '' TERM; exec sleep 60"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // Let the shell set its trap before it is signalled.
        clock::sleep_ns(300_000_000);
        let (p, s) = (polite.id() as libc::pid_t, stubborn.id() as libc::pid_t);
        let told = undo(
            vec![
                Undo::Scratch(scratch.clone()),
                Undo::Restore {
                    path: file.clone(),
                    contents: "0".into(),
                },
                Undo::Child {
                    pid: p,
                    started: 0,
                    what: "polite".into(),
                },
                Undo::Child {
                    pid: s,
                    started: 0,
                    what: "stubborn".into(),
                },
            ],
            500_000_000,
        );
        assert_eq!(told.len(), 4, "{told:?}");
        assert!(
            told[0].starts_with(&format!(
                "stopped polite (pid {p}): sent SIGTERM, ended by SIGTERM"
            )),
            "{told:?}"
        );
        assert!(
            told[1].starts_with(&format!(
                "stopped stubborn (pid {s}): sent SIGKILL, not having exited 0.5 s after SIGTERM, ended by SIGKILL"
            )),
            "{told:?}"
        );
        assert_eq!(told[2], format!("put {} back to 0", file.display()));
        assert_eq!(told[3], format!("removed {}", scratch.display()));
        assert!(!alive(p) && !alive(s));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0");
        assert!(!scratch.exists());
        // What cannot be undone is said, not skipped.
        let told = undo(
            vec![
                Undo::Restore {
                    path: dir.join("no/such/dir/file"),
                    contents: "0".into(),
                },
                Undo::Scratch(scratch.clone()),
            ],
            0,
        );
        assert!(told[0].starts_with("could not put") && told[0].contains("by hand: echo 0 >"));
        assert!(told[1].ends_with("was already gone"), "{told:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_child_reaped_by_its_owner_counts_as_stopped() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        child.wait().unwrap();
        let told = undo(
            vec![Undo::Child {
                pid,
                started: 0,
                what: "done".into(),
            }],
            1_000_000_000,
        );
        assert_eq!(
            told,
            vec![format!("done (pid {pid}): it had already exited")]
        );
    }

    #[test]
    fn the_record_dir_is_made_closed_to_others_and_refused_when_not() {
        use std::os::unix::fs::PermissionsExt;
        let temp = shardwatch_tests::temp_dir("interrupt-record-dir");
        let dir = record_dir(&temp).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Found again as it is.
        assert_eq!(record_dir(&temp).unwrap(), dir);
        // Opened to others (or made so by someone else): not trusted.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = record_dir(&temp).unwrap_err();
        assert!(err.contains("closed to others"), "{err}");
        std::fs::remove_dir_all(&temp).unwrap();
    }

    #[test]
    fn records_of_harnesses_that_are_gone_are_undone_once_and_those_of_running_ones_kept() {
        let temp = shardwatch_tests::temp_dir("interrupt-records");
        let dir = record_dir(&temp).unwrap();
        // A harness that is gone: the pid of a child reaped already, with
        // a start time no process of it had.
        let mut gone = Command::new("true").spawn().unwrap();
        let gone_pid = gone.id() as libc::pid_t;
        gone.wait().unwrap();
        // What it left: a file changed, a scratch dir, and a process that
        // still runs (an orphan now, not this test's child).
        let file = temp.join("rps_cpus");
        std::fs::write(&file, "2").unwrap();
        let scratch = temp.join("bench-data");
        std::fs::create_dir_all(scratch.join("journal")).unwrap();
        let out = Command::new("sh")
            .args(["-c", "sleep 60 >/dev/null 2>&1 & echo $!"])
            .output()
            .unwrap();
        let orphan: libc::pid_t = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let (_, orphan_started) = process_state(orphan).unwrap();
        let record = Record {
            pid: gone_pid,
            started: 1,
            undo: vec![
                Undo::Scratch(scratch.clone()),
                Undo::Child {
                    pid: orphan,
                    started: orphan_started,
                    what: "appliance".into(),
                },
                Undo::Restore {
                    path: file.clone(),
                    contents: "0".into(),
                },
            ],
        };
        let gone_record = dir.join(format!("{gone_pid}.json"));
        std::fs::write(&gone_record, serde_json::to_vec(&record).unwrap()).unwrap();
        // A harness that runs (this test's process): left alone.
        let (_, my_start) = process_state(std::process::id() as libc::pid_t).unwrap();
        let mine = dir.join(format!("{}.json", std::process::id()));
        let kept = temp.join("kept");
        std::fs::create_dir_all(&kept).unwrap();
        write_record(&mine, my_start, vec![Undo::Scratch(kept.clone())]).unwrap();
        // One that cannot be read: told, left; a dead writer's temporary
        // file: removed.
        std::fs::write(dir.join("7.json"), b"{\"pid\": 7, \"sta").unwrap();
        let stale = dir.join("99999999.json.tmp");
        std::fs::write(&stale, b"{}").unwrap();
        // One a harness took and died undoing: taken again. (Its undoer,
        // like the harness above, is a pid no process has.)
        let abandoned_scratch = temp.join("abandoned");
        std::fs::create_dir_all(&abandoned_scratch).unwrap();
        let abandoned = dir.join(format!("{gone_pid}.json.undoing-by-{gone_pid}"));
        let record = Record {
            pid: gone_pid,
            started: 1,
            undo: vec![Undo::Scratch(abandoned_scratch.clone())],
        };
        std::fs::write(&abandoned, serde_json::to_vec(&record).unwrap()).unwrap();

        let told = undo_left_behind(&dir);
        let text = told.join("\n");
        assert!(
            text.contains(&format!(
                "harness pid {gone_pid} ended without undoing what it did (killed with SIGKILL?); undoing its 3 thing(s)"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "  stopped appliance (pid {orphan}): sent SIGTERM, exited"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("  put {} back to 0", file.display())),
            "{text}"
        );
        assert!(
            text.contains(&format!("  removed {}", scratch.display())),
            "{text}"
        );
        assert!(
            text.contains("cannot read") && text.contains("7.json"),
            "{text}"
        );
        assert!(!still_runs(orphan, orphan_started));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0");
        assert!(!scratch.exists() && kept.is_dir());
        assert!(!gone_record.exists() && mine.exists() && !stale.exists());
        assert!(!abandoned_scratch.exists() && !abandoned.exists(), "{text}");
        // Undone once: a second look finds only the unreadable one.
        let again = undo_left_behind(&dir);
        assert_eq!(again.len(), 1, "{again:?}");
        // An empty registry leaves no record.
        write_record(&mine, my_start, Vec::new()).unwrap();
        assert!(!mine.exists());
        std::fs::remove_dir_all(&temp).unwrap();
    }
}
