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
