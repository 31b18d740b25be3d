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

/// Real-time priority of the paced sender (`SCHED_FIFO`): above every
/// normal thread, below the alert collector ([`COLLECTOR_RT_PRIORITY`]),
/// so an alert is stamped when it arrives even during a write.
pub const SENDER_RT_PRIORITY: i32 = 1;
/// Real-time priority of the alert collector's thread.
pub const COLLECTOR_RT_PRIORITY: i32 = 2;

/// While held, the calling thread runs at `SCHED_FIFO` priority (where
/// the kernel allows it: root or `CAP_SYS_NICE`); its previous policy is
/// restored on [`RealtimeTurn::end`] or drop.
pub struct RealtimeTurn {
    previous: Option<(libc::c_int, libc::sched_param)>,
}

impl RealtimeTurn {
    pub fn begin(priority: i32) -> RealtimeTurn {
        // SAFETY: pid 0 is the calling thread; `param` outlives each call.
        let previous = unsafe {
            let policy = libc::sched_getscheduler(0);
            let mut param = libc::sched_param { sched_priority: 0 };
            let fifo = libc::sched_param {
                sched_priority: priority,
            };
            (policy >= 0
                && libc::sched_getparam(0, &mut param) == 0
                && libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) == 0)
                .then_some((policy, param))
        };
        RealtimeTurn { previous }
    }

    /// Whether the thread runs at real-time priority now.
    pub fn granted(&self) -> bool {
        self.previous.is_some()
    }

    /// Gives the real-time priority back now.
    pub fn end(&mut self) {
        if let Some((policy, param)) = self.previous.take() {
            // SAFETY: as in `begin`.
            unsafe { libc::sched_setscheduler(0, policy, &param) };
        }
    }
}

impl Drop for RealtimeTurn {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_realtime_turn_sets_fifo_and_gives_the_old_policy_back() {
        // A thread of its own: the policy is per thread.
        std::thread::spawn(|| {
            // SAFETY: reads the calling thread's policy.
            let policy = || unsafe { libc::sched_getscheduler(0) };
            let before = policy();
            assert_eq!(before, libc::SCHED_OTHER);
            let mut turn = RealtimeTurn::begin(SENDER_RT_PRIORITY);
            if turn.granted() {
                assert_eq!(policy(), libc::SCHED_FIFO);
                turn.end();
                assert!(!turn.granted());
            }
            assert_eq!(policy(), before);
            {
                let _turn = RealtimeTurn::begin(SENDER_RT_PRIORITY);
            }
            assert_eq!(policy(), before, "given back on drop");
        })
        .join()
        .unwrap();
    }

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
