//! Process limits the appliance needs: locked memory for io_uring buffers
//! and file descriptors for many TCP connections.

use anyhow::bail;

/// Locked memory each glommio executor registers for io_uring buffers
/// (glommio's default io_memory), plus slack for the rings themselves.
pub const MEMLOCK_BYTES_PER_CORE: u64 = 12 << 20;

fn get(resource: libc::__rlimit_resource_t) -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    unsafe { libc::getrlimit(resource, &mut limit) };
    limit
}

fn set(resource: libc::__rlimit_resource_t, limit: libc::rlimit) -> bool {
    // SAFETY: setrlimit only reads the struct we pass.
    unsafe { libc::setrlimit(resource, &limit) == 0 }
}

/// Raises RLIMIT_MEMLOCK so `cores` executors can start, or fails with a
/// message that says what to raise.
pub fn raise_memlock(cores: usize) -> anyhow::Result<()> {
    let needed = MEMLOCK_BYTES_PER_CORE * cores as u64;
    let current = get(libc::RLIMIT_MEMLOCK);
    if current.rlim_cur == libc::RLIM_INFINITY || current.rlim_cur >= needed {
        return Ok(());
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    if set(libc::RLIMIT_MEMLOCK, unlimited) {
        return Ok(());
    }
    if current.rlim_max == libc::RLIM_INFINITY || current.rlim_max >= needed {
        let raised = libc::rlimit {
            rlim_cur: needed,
            rlim_max: current.rlim_max,
        };
        if set(libc::RLIMIT_MEMLOCK, raised) {
            return Ok(());
        }
    }
    if has_ipc_lock() {
        // CAP_IPC_LOCK lifts the limit for io_uring buffer registration,
        // even where this process may not raise the limit itself (a
        // container without CAP_SYS_RESOURCE).
        return Ok(());
    }
    bail!(
        "locked memory limit is {} KiB but {cores} cores need {} KiB for io_uring: \
         raise RLIMIT_MEMLOCK (`ulimit -l {}` in the shell, LimitMEMLOCK= in a systemd unit, \
         or memlock in /etc/security/limits.conf), run as root, or use fewer --cores",
        current.rlim_cur / 1024,
        needed / 1024,
        needed / 1024
    )
}

/// CAP_IPC_LOCK is capability 14 in the effective set.
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Raises the open-file soft limit to the hard limit, so thousands of TCP
/// connections fit. Returns the limit in force.
pub fn raise_nofile() -> u64 {
    let current = get(libc::RLIMIT_NOFILE);
    if current.rlim_cur < current.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: current.rlim_max,
            rlim_max: current.rlim_max,
        };
        if set(libc::RLIMIT_NOFILE, raised) {
            return raised.rlim_cur;
        }
    }
    current.rlim_cur
}

/// The top pad the appliance gives glibc's allocator (`M_TOP_PAD`): how
/// far past a request a heap grows, and how much free space at its top it
/// keeps rather than gives back.
///
/// Each core thread allocates from its own glibc arena, whose heap grows
/// by `mprotect` calls for just the pages a request needs: a correlation
/// state growing by a few hundred bytes per new group made an `mprotect`
/// every few kilobytes, and the faults that follow each one. With a pad
/// of a whole arena heap (64 MiB, glibc's `HEAP_MAX_SIZE` on 64-bit), a
/// heap is opened read-write in one call when it is made. Memory is
/// committed only where it is written, so the resident size does not grow
/// with the pad; the cost is address space and, with strict overcommit
/// accounting, commit charge. Setting it also fixes glibc's mmap
/// threshold at its 128 KiB start (it no longer adapts upwards).
/// Measured with `shardwatch-load bench` in BENCHMARKS.md.
pub const MALLOC_TOP_PAD_BYTES: usize = 64 << 20;

/// What [`tune_malloc`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocTopPad {
    /// The pad was set to this many bytes.
    Set(usize),
    /// The operator set it (`GLIBC_TUNABLES` names `glibc.malloc.top_pad`,
    /// or `MALLOC_TOP_PAD_` is set): left as given.
    Operator,
    /// glibc refused the setting.
    Refused,
    /// Not glibc: the allocator is left as it is.
    NotGlibc,
}

impl std::fmt::Display for MallocTopPad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MallocTopPad::Set(bytes) => write!(f, "{}MiB", bytes >> 20),
            MallocTopPad::Operator => f.write_str("environment"),
            MallocTopPad::Refused => f.write_str("refused"),
            MallocTopPad::NotGlibc => f.write_str("default"),
        }
    }
}

/// Whether the operator chose the top pad through the environment: a
/// `glibc.malloc.top_pad` entry in `GLIBC_TUNABLES` (colon-separated
/// `name=value` pairs), or glibc's older `MALLOC_TOP_PAD_` variable.
pub fn top_pad_from_environment(tunables: Option<&str>, legacy: Option<&str>) -> bool {
    legacy.is_some()
        || tunables.is_some_and(|tunables| {
            tunables
                .split(':')
                .any(|pair| pair.split('=').next() == Some("glibc.malloc.top_pad"))
        })
}

/// Sets glibc's top pad to [`MALLOC_TOP_PAD_BYTES`] unless the operator
/// chose one. Call before the core threads start, so that their arenas'
/// first heaps are made with it.
pub fn tune_malloc() -> MallocTopPad {
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    let legacy = std::env::var("MALLOC_TOP_PAD_").ok();
    if top_pad_from_environment(tunables.as_deref(), legacy.as_deref()) {
        return MallocTopPad::Operator;
    }
    set_top_pad(MALLOC_TOP_PAD_BYTES)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_top_pad(bytes: usize) -> MallocTopPad {
    let Ok(value) = libc::c_int::try_from(bytes) else {
        return MallocTopPad::Refused;
    };
    // SAFETY: mallopt changes allocator parameters under the allocator's
    // own lock; M_TOP_PAD takes any non-negative size.
    if unsafe { libc::mallopt(libc::M_TOP_PAD, value) } == 1 {
        MallocTopPad::Set(bytes)
    } else {
        MallocTopPad::Refused
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_top_pad(_bytes: usize) -> MallocTopPad {
    MallocTopPad::NotGlibc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_top_pad_is_left_alone() {
        assert!(!top_pad_from_environment(None, None));
        assert!(!top_pad_from_environment(Some(""), None));
        assert!(!top_pad_from_environment(
            Some("glibc.malloc.trim_threshold=1:glibc.malloc.top_pad_x=2"),
            None
        ));
        assert!(top_pad_from_environment(
            Some("glibc.malloc.top_pad=1048576"),
            None
        ));
        assert!(top_pad_from_environment(
            Some("glibc.malloc.arena_max=2:glibc.malloc.top_pad=0"),
            None
        ));
        assert!(top_pad_from_environment(None, Some("65536")));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_top_pad() {
        assert_eq!(
            set_top_pad(MALLOC_TOP_PAD_BYTES),
            MallocTopPad::Set(MALLOC_TOP_PAD_BYTES)
        );
        assert_eq!(MallocTopPad::Set(MALLOC_TOP_PAD_BYTES).to_string(), "64MiB");
        assert_eq!(set_top_pad(usize::MAX), MallocTopPad::Refused);
    }
}
