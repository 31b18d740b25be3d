//! The harness clock: wall-clock nanoseconds that never step backwards.
//!
//! Send times and alert-observed times must be comparable with each other
//! and with the appliance's RFC 3339 stamps, so they are wall-clock (UTC)
//! nanoseconds; but NTP steps during a run would corrupt latencies, so the
//! wall clock is read once and then advanced by the monotonic clock. This is
//! the only place the harness reads a clock; logic takes time as arguments.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    instant: Instant,
    wall_ns: i64,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        wall_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64),
    })
}

/// UTC nanoseconds since the epoch, monotonic within this process.
pub fn now_ns() -> i64 {
    let a = anchor();
    a.wall_ns + a.instant.elapsed().as_nanos() as i64
}

/// Sleeps for `ns` nanoseconds (nothing when not positive).
pub fn sleep_ns(ns: i64) {
    if ns > 0 {
        std::thread::sleep(std::time::Duration::from_nanos(ns as u64));
    }
}

/// While held, the calling thread's sleeps end when asked: its timer
/// slack (how late the kernel may end a sleep, to batch wake-ups; 50 µs
/// for a normal thread) is 1 ns. The paced sender sleeps until each write
/// is due, and that slack counted as the harness's own latency. The
/// previous slack is restored on drop. Where the kernel refuses, sleeps
/// keep the default slack.
pub struct PreciseSleep {
    previous: Option<libc::c_ulong>,
}

impl PreciseSleep {
    pub fn begin() -> PreciseSleep {
        // SAFETY: prctl with PR_GET/SET_TIMERSLACK reads or sets a value
        // of the calling thread and touches no memory of ours.
        let previous = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        let set = previous >= 0 && unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) } == 0;
        PreciseSleep {
            previous: set.then_some(previous as libc::c_ulong),
        }
    }
}

impl Drop for PreciseSleep {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            // SAFETY: as in `begin`.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, previous, 0, 0, 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack() -> i32 {
        // SAFETY: reads the calling thread's timer slack.
        unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) }
    }

    #[test]
    fn precise_sleep_sets_the_timer_slack_and_restores_it() {
        // A thread of its own: the slack is per thread.
        std::thread::spawn(|| {
            let before = slack();
            assert!(before > 1, "a normal thread's default slack: {before}");
            {
                let _precise = PreciseSleep::begin();
                assert_eq!(slack(), 1);
            }
            assert_eq!(slack(), before);
        })
        .join()
        .unwrap();
    }
}
