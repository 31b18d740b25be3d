//! Send pacing: when each event is meant to leave, and how far behind the
//! sender is.
//!
//! # Coordinated omission
//!
//! A load generator that waits for the system and then sends "the next"
//! event hides exactly the stalls it should measure: while the sender is
//! blocked, events that a real source would have emitted are not sent, so
//! their latency is never recorded. Here every event `i` has an intended
//! send time `t0 + i / rate` fixed before the run starts. Latency is
//! measured from that intended time, not from when the event actually left,
//! so time the sender spent behind schedule (a full socket buffer, a
//! descheduled thread, a stalled appliance) counts against the result. In
//! `max` mode there is no schedule and latency is measured from the actual
//! send time, which the report says.

/// The intended send times of a paced run, in nanoseconds on the harness
/// clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub t0_ns: i64,
    /// Events per second; None sends as fast as the socket takes them.
    pub rate_eps: Option<f64>,
}

impl Schedule {
    /// When event `i` is meant to be sent (`t0` for every event when
    /// unpaced).
    pub fn intended_ns(&self, i: u64) -> i64 {
        match self.rate_eps {
            Some(rate) => self.t0_ns + (i as f64 * 1e9 / rate) as i64,
            None => self.t0_ns,
        }
    }

    /// How many events are due by `now_ns`: the largest `n` with every event
    /// below `n` having an intended time at or before `now_ns`, capped at
    /// `total`.
    pub fn due(&self, now_ns: i64, total: u64) -> u64 {
        // Nothing is due before the start, flat out included, so that the
        // measured duration starts at t0 in both modes.
        if now_ns < self.t0_ns {
            return 0;
        }
        match self.rate_eps {
            None => total,
            Some(rate) => {
                let elapsed_s = (now_ns - self.t0_ns) as f64 / 1e9;
                let mut n = ((elapsed_s * rate).floor() as u64)
                    .saturating_add(1)
                    .min(total);
                // Float rounding may put n one off either way; settle it on
                // the exact predicate so due and intended_ns never disagree.
                while n > 0 && self.intended_ns(n - 1) > now_ns {
                    n -= 1;
                }
                while n < total && self.intended_ns(n) <= now_ns {
                    n += 1;
                }
                n
            }
        }
    }

    /// The latency origin of event `i` sent at `sent_ns`: its intended time
    /// when paced (coordinated-omission safe), the actual send time when not.
    pub fn latency_origin_ns(&self, i: u64, sent_ns: i64) -> i64 {
        match self.rate_eps {
            Some(_) => self.intended_ns(i).min(sent_ns),
            None => sent_ns,
        }
    }

    /// How long the sender may sleep before event `next` is due; zero when
    /// it is already due. Capped so progress output stays on time.
    pub fn sleep_ns(&self, next: u64, now_ns: i64, cap_ns: i64) -> i64 {
        (self.intended_ns(next) - now_ns).clamp(0, cap_ns)
    }
}

/// Parses `--rate`: a positive number of events per second, or `max`.
pub fn parse_rate(text: &str) -> Result<Option<f64>, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= 1e9 => Ok(Some(rate)),
        _ => Err(format!(
            "rate must be events per second in (0, 1e9] or `max`, not {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_rate() {
        let s = Schedule {
            t0_ns: 1_000,
            rate_eps: Some(20_000.0),
        };
        assert_eq!(s.intended_ns(0), 1_000);
        assert_eq!(s.intended_ns(1), 1_000 + 50_000);
        assert_eq!(s.intended_ns(20_000), 1_000 + 1_000_000_000);
    }

    #[test]
    fn due_counts_events_whose_time_has_come() {
        let s = Schedule {
            t0_ns: 0,
            rate_eps: Some(1_000.0),
        };
        assert_eq!(s.due(-1, 100), 0);
        assert_eq!(s.due(0, 100), 1, "event 0 is due at t0");
        assert_eq!(s.due(999_999, 100), 1);
        assert_eq!(s.due(1_000_000, 100), 2);
        assert_eq!(s.due(10_000_000_000, 100), 100, "capped at the total");
        // The exact predicate holds for awkward rates too.
        let odd = Schedule {
            t0_ns: 17,
            rate_eps: Some(3.0),
        };
        for now in (0..5_000_000_000i64).step_by(7_777_777) {
            let n = odd.due(now, 1_000);
            assert!(n == 0 || odd.intended_ns(n - 1) <= now);
            assert!(odd.intended_ns(n) > now);
        }
    }

    #[test]
    fn latency_origin_is_the_intended_time_when_behind() {
        let paced = Schedule {
            t0_ns: 0,
            rate_eps: Some(1_000.0),
        };
        // Event 5 was meant for 5 ms but left at 40 ms: latency counts from 5 ms.
        assert_eq!(paced.latency_origin_ns(5, 40_000_000), 5_000_000);
        let flat = Schedule {
            t0_ns: 0,
            rate_eps: None,
        };
        assert_eq!(flat.latency_origin_ns(5, 40_000_000), 40_000_000);
        assert_eq!(flat.due(0, 7), 7);
        assert_eq!(flat.due(-1, 7), 0, "flat out also waits for t0");
        assert_eq!(flat.sleep_ns(3, -10, 1_000), 10);
    }

    #[test]
    fn sleep_is_bounded_and_never_negative() {
        let s = Schedule {
            t0_ns: 0,
            rate_eps: Some(1.0),
        };
        assert_eq!(s.sleep_ns(1, 0, 5_000_000), 5_000_000);
        assert_eq!(s.sleep_ns(1, 999_000_000, 5_000_000), 1_000_000);
        assert_eq!(s.sleep_ns(1, 2_000_000_000, 5_000_000), 0);
    }

    #[test]
    fn rate_parsing() {
        assert_eq!(parse_rate("max"), Ok(None));
        assert_eq!(parse_rate("2500"), Ok(Some(2500.0)));
        for bad in ["0", "-1", "nan", "inf", "fast", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
