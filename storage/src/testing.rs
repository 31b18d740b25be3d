//! Test support: real write failures from a file size limit, and real
//! truncation failures from the append-only attribute.
//!
//! `RLIMIT_FSIZE` is per process, so a test that needs writes to fail runs
//! itself again as a child process ([`rerun_as_child`]) and sets the limit
//! there ([`FileSizeLimit`]): the kernel then cuts a write that crosses
//! the limit short and refuses one that starts past it (EFBIG), as a full
//! disk would. Built for this crate's tests and, with the `test-support`
//! feature, for other crates' (the engine's file output).

use std::path::Path;

/// The soft file size limit of this process, changed and restored.
pub struct FileSizeLimit {
    original: libc::rlimit,
}

impl FileSizeLimit {
    /// Reads the current limit and ignores SIGXFSZ, so that a write past
    /// the limit fails with EFBIG instead of killing the process. Only in
    /// a child process: it changes the whole process.
    pub fn take() -> FileSizeLimit {
        // SAFETY: plain libc calls on a local struct.
        let original = unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let mut limit = std::mem::zeroed::<libc::rlimit>();
            assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
            limit
        };
        FileSizeLimit { original }
    }

    /// Sets the soft limit to `bytes`.
    pub fn set(&self, bytes: u64) {
        self.set_raw(bytes as libc::rlim_t);
    }

    /// Puts the original limit back.
    pub fn lift(&self) {
        self.set_raw(self.original.rlim_cur);
    }

    fn set_raw(&self, soft: libc::rlim_t) {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: self.original.rlim_max,
        };
        // SAFETY: a valid struct; only this process's limit changes.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
    }
}

/// The inode flag `chattr +a` sets (`FS_APPEND_FL` in `linux/fs.h`).
const FS_APPEND_FL: libc::c_int = 0x20;

/// Sets or clears the append-only attribute of the file at `path`: while
/// it is set, appends still succeed and truncation (`set_len`) fails with
/// EPERM, as no other condition on a local file makes it fail. Needs
/// `CAP_LINUX_IMMUTABLE` (root) and a filesystem that keeps the flag (ext4,
/// xfs, btrfs); the error says when either is missing.
pub fn set_append_only(path: &Path, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    let mut flags: libc::c_int = 0;
    // SAFETY: the ioctls read and write one int, the size the kernel uses
    // for these flags; the fd is open for the call.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        flags = if on {
            flags | FS_APPEND_FL
        } else {
            flags & !FS_APPEND_FL
        };
        if libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether [`set_append_only`] works for files in `dir` (tried on a probe
/// file that is removed again). Tests that need it say so and skip
/// without it.
pub fn append_only_supported(dir: &Path) -> bool {
    let probe = dir.join(".append-only-probe");
    let works = std::fs::write(&probe, b"").is_ok()
        && set_append_only(&probe, true).is_ok()
        && set_append_only(&probe, false).is_ok();
    let _ = std::fs::remove_file(&probe);
    works
}

/// Runs the test `name` (its full path, `module::tests::name`) again in a
/// child process with `env` set to `dir`, and asserts that it ran and
/// passed there.
pub fn rerun_as_child(name: &str, env: &str, dir: &Path) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(env, dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed: {said}");
    assert!(said.contains("1 passed"), "the child ran no test: {said}");
}

/// Which of the pages of the file at `path` are in the page cache
/// (`mincore` over a read-only mapping, which faults nothing in).
pub fn resident_pages(path: &Path) -> Vec<bool> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    let pages = len.div_ceil(4096);
    let mut vec = vec![0u8; pages];
    // SAFETY: a shared read-only mapping of `len` bytes of an open
    // file, only passed to `mincore` (never read) and unmapped before
    // return; `vec` has one byte per page of it.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED);
        assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
        libc::munmap(addr, len);
    }
    vec.iter().map(|v| v & 1 == 1).collect()
}

/// Whether `path` is on tmpfs, whose pages are the files themselves
/// (there is nothing to drop).
pub fn on_tmpfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `statfs` fills the zeroed struct it is given.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut fs) }, 0);
    fs.f_type as i64 == 0x0102_1994
}
