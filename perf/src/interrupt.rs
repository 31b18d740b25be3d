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
//! second signal meanwhile ends it at once. SIGKILL cannot be caught: the
//! kernel then stops the children ([`spawn`] asks it to), and the harness
//! has printed the commands that undo its steering.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::Context;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// A child process it started (`what` names it): stopped and reaped.
    Child { pid: libc::pid_t, what: String },
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
        registry().entries.retain(|(id, _)| *id != self.0);
    }
}

fn push(registry: &mut Registry, undo: Undo) -> Registered {
    let id = registry.next;
    registry.next += 1;
    registry.entries.push((id, undo));
    Registered(id)
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
        Ok((child, Undo::Child { pid, what }))
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

/// A child being stopped.
struct Stopping {
    pid: libc::pid_t,
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
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid on a pid this process started, WNOHANG so it
        // does not block, into a live local.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == self.pid {
            self.ended = Some(if libc::WIFSIGNALED(status) {
                format!("ended by {}", name(libc::WTERMSIG(status)))
            } else {
                format!("exited with {}", libc::WEXITSTATUS(status))
            });
        } else if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            // Reaped by the thread that owns it.
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
            Undo::Child { pid, what } => children.push(Stopping {
                pid,
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
            // SAFETY: kill(2) on a child not yet reaped (just checked), so
            // its pid cannot have been reused.
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
            // SAFETY: as above: not reaped, so still this process's child.
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
                    what: "polite".into(),
                },
                Undo::Child {
                    pid: s,
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
                what: "done".into(),
            }],
            1_000_000_000,
        );
        assert_eq!(
            told,
            vec![format!("done (pid {pid}): it had already exited")]
        );
    }
}
