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
