//! Per-core counters and latency histograms, readable live.
//!
//! Each core is the only writer of its [`CoreStats`]: increments are a
//! relaxed load and store (no locked read-modify-write, so no cross-core
//! cache traffic on the hot path), and the control thread reads them with
//! relaxed loads for `/metrics` and `/api/stats`. Latency histograms are
//! hdrhistograms behind a mutex that only a read of `/metrics` contends
//! (recorded per read batch and per alert, not per event). Every event
//! that does not become a normal parse is counted under a named reason:
//! quarantine reasons come from the parser, drop reasons from the queues
//! that refused work.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use serde::Serialize;

/// Adds `n` to a counter that only the calling core writes.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Reasons an event or batch was dropped, as metric labels.
pub const DROP_REASONS: &[&str] = &[
    "route_queue_full",
    "route_channel_closed",
    "quarantine_full",
    "quarantine_write_error",
    "alert_writer_gone",
    "udp_receive_error",
    "tcp_accept_error",
    "framing_count_zero",
    "framing_count_too_many_digits",
    "framing_count_no_space",
    "rule_removed_in_flight",
    "source_denied",
    "source_rate_limited",
    "connections_max",
    "connections_per_source_max",
    "relp_bad_txnr",
    "relp_bad_command",
    "relp_bad_datalen",
    "relp_data_too_long",
    "relp_missing_trailer",
    "relp_txnr_out_of_sequence",
    "relp_open_no_version",
    "relp_open_bad_version",
    "relp_open_no_syslog",
    "relp_no_open",
    "journal_backlog",
    "udp_unread_at_shutdown",
    "other",
];

/// Reasons a line was quarantined: the parser's reasons, plus `other`.
pub const QUARANTINE_REASONS: &[&str] = &[
    "empty",
    "bad_pri",
    "bad_version",
    "bad_timestamp",
    "bad_header",
    "field_too_long",
    "bad_structured_data",
    "missing_header",
    "oversize",
    "incomplete_frame",
    "other",
];

/// Reasons an accepted event was flagged: decoded partially, skewed time,
/// more fields than fit.
pub const FLAG_REASONS: &[&str] = &[
    "timestamp_skew",
    "fields_overflow",
    "json_invalid",
    "json_too_deep",
    "cef_bad_header",
    "leef_bad_header",
    "scratch_full",
    "xml_invalid",
    "xml_too_deep",
    "other",
];

/// Detector kinds, as the `kind` label of the state-memory metrics; the
/// last entry holds what no single rule owns (indices, pending alerts).
pub const STATE_KINDS: &[&str] = &[
    "event_count",
    "value_count",
    "temporal",
    "temporal_ordered",
    "baseline",
    "first_seen",
    "rare_template",
    "outlier",
    "shared",
];

/// Upper bounds, in microseconds, of the latency histogram buckets
/// (Prometheus `le`); the last bucket is +Inf.
pub const LATENCY_BUCKETS_US: &[u64] = &[
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    1_000_000, 5_000_000,
];

/// Quantiles exported beside each latency histogram's buckets (1.0 is the
/// maximum recorded).
pub const LATENCY_QUANTILES: &[f64] = &[0.5, 0.9, 0.99, 0.999, 1.0];

/// Largest latency a histogram tells apart, in microseconds (an hour);
/// longer ones are recorded as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// A latency histogram with one writer (its core) and the control thread
/// as reader: an hdrhistogram (two significant digits, i.e. within 1%,
/// 1 µs to an hour; exact below 256 µs; 26 KiB of counts)
/// behind a mutex that only a `/metrics` read ever contends, plus the
/// exact sum. Recording costs an uncontended lock and the histogram's
/// own increment (see BENCHMARKS.md, "Metrics on the hot path").
pub struct LatencyHistogram {
    inner: Mutex<Recorded>,
}

struct Recorded {
    histogram: Histogram<u64>,
    sum_us: u64,
}

/// What a [`LatencyHistogram`] holds at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySnapshot {
    /// Values at or below each bound of [`LATENCY_BUCKETS_US`]
    /// (cumulative, as Prometheus `le` buckets), then the total.
    pub cumulative: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
    /// The value at each of [`LATENCY_QUANTILES`], in microseconds (0
    /// while empty).
    pub quantiles_us: Vec<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        // Constant bounds hdrhistogram accepts (1 <= low, high >= 2 low,
        // 2 digits); a unit test builds one. Two digits, not three: three
        // took 188 KiB of counts per histogram (four per core) and seven
        // times as long to copy for a `/metrics` read.
        let histogram = Histogram::new_with_bounds(1, LATENCY_MAX_US, 2)
            .expect("constant histogram bounds are valid");
        LatencyHistogram {
            inner: Mutex::new(Recorded {
                histogram,
                sum_us: 0,
            }),
        }
    }
}

impl LatencyHistogram {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // A panic while holding it cannot leave the histogram torn in a
        // way that matters for metrics: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record_us(&self, us: u64) {
        let mut recorded = self.lock();
        recorded.histogram.saturating_record(us.min(LATENCY_MAX_US));
        recorded.sum_us = recorded.sum_us.wrapping_add(us);
    }

    /// The value at quantile `q` as of now, in microseconds (1.0: the
    /// maximum; 0 while empty), without copying the counts.
    pub fn quantile_us(&self, q: f64) -> u64 {
        quantile_of(&self.lock().histogram, q)
    }

    /// Buckets, sum, count and quantiles as of now.
    pub fn snapshot(&self) -> LatencySnapshot {
        // Copied under the lock (a memcpy of its counts), read outside it:
        // the buckets and quantiles below walk the counts several times,
        // and the core's next record must not wait for that.
        let (histogram, sum_us) = {
            let recorded = self.lock();
            (recorded.histogram.clone(), recorded.sum_us)
        };
        let count = histogram.len();
        // An empty hdrhistogram answers 0 to all of these.
        let mut cumulative: Vec<u64> = LATENCY_BUCKETS_US
            .iter()
            .map(|&le| histogram.count_between(0, le))
            .collect();
        cumulative.push(count);
        let quantiles_us = LATENCY_QUANTILES
            .iter()
            .map(|&q| quantile_of(&histogram, q))
            .collect();
        LatencySnapshot {
            cumulative,
            sum_us,
            count,
            quantiles_us,
        }
    }
}

/// The value at quantile `q` of `histogram` (1.0: its maximum).
fn quantile_of(histogram: &Histogram<u64>, q: f64) -> u64 {
    if q >= 1.0 {
        histogram.max()
    } else {
        histogram.value_at_quantile(q)
    }
}

/// Counters of one core.
pub struct CoreStats {
    /// The core thread's kernel thread id, once it runs (0 before): its
    /// CPU time is read from `/proc` by the control plane
    /// (`control::process`).
    pub thread_id: AtomicU64,
    pub udp_datagrams: AtomicU64,
    pub udp_batches: AtomicU64,
    pub tcp_connections_accepted: AtomicU64,
    pub tcp_connections_open: AtomicU64,
    /// Stream connections (TCP, RELP, TLS) ended by a read error rather
    /// than an orderly close: reset, keepalive probes unanswered,
    /// unreachable, a TLS session cut without close_notify.
    pub tcp_connections_lost: AtomicU64,
    pub tcp_frames: AtomicU64,
    pub tcp_bytes: AtomicU64,
    pub events_parsed: AtomicU64,
    pub frames_truncated: AtomicU64,
    pub routed_local: AtomicU64,
    pub routed_remote: AtomicU64,
    /// Batches this core sent to each peer (index = peer core).
    pub batches_sent: Vec<AtomicU64>,
    /// Batches this core received from peers and processed.
    pub batches_received: AtomicU64,
    /// Batches this core filled in a buffer of its own that a peer had
    /// handed back (`route::BufferHomes`) instead of a new allocation.
    pub route_buffers_reused: AtomicU64,
    /// Records processed by this core's shards (from any ingest core).
    pub shard_records: AtomicU64,
    pub shard_groups: AtomicU64,
    pub alerts: AtomicU64,
    /// Alerts folded into an earlier one by suppression.
    pub alerts_suppressed: AtomicU64,
    pub groups_evicted: AtomicU64,
    quarantined: Vec<AtomicU64>,
    dropped: Vec<AtomicU64>,
    flagged: Vec<AtomicU64>,
    /// Receive to detectors done, per read batch.
    pub processing_lag: LatencyHistogram,
    /// Receive of the completing event to alert raised.
    pub detection_latency: LatencyHistogram,
    /// How late the core's stall probe (a timer due every
    /// `engine.stall_probe_ms`) fired: how long the core could not run its
    /// tasks, whether busy with one stretch of its own work or with its
    /// CPU taken (another thread, the hypervisor).
    pub stalls: LatencyHistogram,
    /// Shards that processed at least one record here (one bit per shard),
    /// so tests can check that a key's events all landed on its owner core.
    shards_seen: Vec<AtomicU64>,
    /// RELP `syslog` messages received and answers sent.
    pub relp_messages: AtomicU64,
    pub relp_acks: AtomicU64,
    /// TLS sessions established and handshakes that failed.
    pub tls_sessions: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Lines appended to this core's journal.
    pub journal_lines: AtomicU64,
    /// Bytes handed to the device by journal commits.
    pub journal_bytes: AtomicU64,
    /// Journal commits that wrote (group commits: bytes / commits is the
    /// size of a write).
    pub journal_commits: AtomicU64,
    /// Segment rolls that found no prepared segment ready and created
    /// the next one themselves, holding up the core's flushes
    /// (`storage.journal_preallocate`).
    pub journal_rolls_unprepared: AtomicU64,
    pub journal_errors: AtomicU64,
    /// 1 while the journal's last write or sync failed (until one
    /// succeeds), else 0.
    pub journal_failing: AtomicU64,
    /// Alerts sent before their line was written, because the journal was
    /// failing: detection does not wait on a disk that cannot write.
    pub alerts_unjournaled: AtomicU64,
    /// Stream reads cut after a line that raised an alert (or UDP batches
    /// flushed early for one), to send it before the rest is processed.
    pub alerts_sent_mid_read: AtomicU64,
    /// Lines finished from their syslog header alone: no loaded rule's log
    /// source admits the header, so the payload was not decoded.
    pub lines_without_payload: AtomicU64,
    /// Duration of each journal sync, from asking to done (the `fdatasync`,
    /// its wait for a blocking-pool thread, closing rolled segments).
    pub journal_fsync: LatencyHistogram,
    pub checkpoints_written: AtomicU64,
    pub checkpoint_errors: AtomicU64,
    /// Due checkpoints that waited because the core was behind its input.
    pub checkpoints_postponed: AtomicU64,
    /// Size of the last checkpoint written.
    pub checkpoint_bytes: AtomicU64,
    /// Snapshot to checkpoint file renamed into place.
    pub checkpoint_duration: LatencyHistogram,
    /// Lines replayed from the journal at start.
    pub replayed_lines: AtomicU64,
    /// Replayed records not applied because a checkpoint already held them.
    pub replay_skipped: AtomicU64,
    /// Time this core spent replaying its journal at start.
    pub recovery_ms: AtomicU64,
    /// Estimated bytes of correlation state held, by `STATE_KINDS`
    /// (refreshed about once a second).
    pub state_bytes: Vec<AtomicU64>,
    /// Correlation groups held, by `STATE_KINDS`.
    pub state_groups: Vec<AtomicU64>,
    /// Times the state-memory bound made this core evict, and the groups
    /// it evicted for it.
    pub state_evictions: AtomicU64,
    pub state_groups_evicted: AtomicU64,
    /// When the core's heartbeat task last ran (Unix ns; 0: not yet). A
    /// core whose executor is stuck stops moving it: `/health` and
    /// `shardwatch_core_heartbeat_age_seconds` report the age.
    pub heartbeat_unix_ns: AtomicU64,
}

fn zeros(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl CoreStats {
    pub fn new(cores: usize, shards: u32) -> Self {
        CoreStats {
            udp_datagrams: AtomicU64::new(0),
            udp_batches: AtomicU64::new(0),
            tcp_connections_accepted: AtomicU64::new(0),
            tcp_connections_open: AtomicU64::new(0),
            tcp_connections_lost: AtomicU64::new(0),
            tcp_frames: AtomicU64::new(0),
            tcp_bytes: AtomicU64::new(0),
            events_parsed: AtomicU64::new(0),
            frames_truncated: AtomicU64::new(0),
            routed_local: AtomicU64::new(0),
            routed_remote: AtomicU64::new(0),
            batches_sent: zeros(cores),
            batches_received: AtomicU64::new(0),
            route_buffers_reused: AtomicU64::new(0),
            shard_records: AtomicU64::new(0),
            shard_groups: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            alerts_suppressed: AtomicU64::new(0),
            groups_evicted: AtomicU64::new(0),
            quarantined: zeros(QUARANTINE_REASONS.len()),
            flagged: zeros(FLAG_REASONS.len()),
            dropped: zeros(DROP_REASONS.len()),
            processing_lag: LatencyHistogram::default(),
            detection_latency: LatencyHistogram::default(),
            stalls: LatencyHistogram::default(),
            shards_seen: zeros((shards as usize).div_ceil(64)),
            thread_id: AtomicU64::new(0),
            relp_messages: AtomicU64::new(0),
            relp_acks: AtomicU64::new(0),
            tls_sessions: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            journal_lines: AtomicU64::new(0),
            journal_bytes: AtomicU64::new(0),
            journal_commits: AtomicU64::new(0),
            journal_rolls_unprepared: AtomicU64::new(0),
            journal_errors: AtomicU64::new(0),
            journal_failing: AtomicU64::new(0),
            alerts_unjournaled: AtomicU64::new(0),
            alerts_sent_mid_read: AtomicU64::new(0),
            lines_without_payload: AtomicU64::new(0),
            journal_fsync: LatencyHistogram::default(),
            checkpoints_written: AtomicU64::new(0),
            checkpoint_errors: AtomicU64::new(0),
            checkpoints_postponed: AtomicU64::new(0),
            checkpoint_bytes: AtomicU64::new(0),
            checkpoint_duration: LatencyHistogram::default(),
            replayed_lines: AtomicU64::new(0),
            replay_skipped: AtomicU64::new(0),
            recovery_ms: AtomicU64::new(0),
            state_bytes: zeros(STATE_KINDS.len()),
            state_groups: zeros(STATE_KINDS.len()),
            state_evictions: AtomicU64::new(0),
            state_groups_evicted: AtomicU64::new(0),
            heartbeat_unix_ns: AtomicU64::new(0),
        }
    }

    /// Seconds since the core's heartbeat last ran at `now_unix_ns`, or
    /// `None` before its first beat (the core is still starting).
    pub fn heartbeat_age_s(&self, now_unix_ns: u64) -> Option<f64> {
        match self.heartbeat_unix_ns.load(Ordering::Relaxed) {
            0 => None,
            at => Some(now_unix_ns.saturating_sub(at) as f64 / 1e9),
        }
    }

    fn reason_index(list: &[&str], reason: &str) -> usize {
        list.iter()
            .position(|r| *r == reason)
            .unwrap_or(list.len() - 1)
    }

    pub fn quarantine(&self, reason: &str) {
        add(
            &self.quarantined[Self::reason_index(QUARANTINE_REASONS, reason)],
            1,
        );
    }

    pub fn flag(&self, reason: &str) {
        add(&self.flagged[Self::reason_index(FLAG_REASONS, reason)], 1);
    }

    pub fn flagged(&self) -> BTreeMap<String, u64> {
        nonzero(FLAG_REASONS, &self.flagged)
    }

    pub fn drop_events(&self, reason: &str, n: u64) {
        add(&self.dropped[Self::reason_index(DROP_REASONS, reason)], n);
    }

    /// Marks `shard` as processed on this core.
    pub fn shard_seen(&self, shard: u16) {
        let word = &self.shards_seen[usize::from(shard / 64)];
        let bit = 1u64 << (shard % 64);
        let bits = word.load(Ordering::Relaxed);
        if bits & bit == 0 {
            word.store(bits | bit, Ordering::Relaxed);
        }
    }

    pub fn quarantined(&self) -> BTreeMap<String, u64> {
        nonzero(QUARANTINE_REASONS, &self.quarantined)
    }

    pub fn dropped(&self) -> BTreeMap<String, u64> {
        nonzero(DROP_REASONS, &self.dropped)
    }

    pub fn report(&self, core: usize) -> CoreReport {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CoreReport {
            core,
            udp_datagrams: load(&self.udp_datagrams),
            udp_batches: load(&self.udp_batches),
            tcp_connections_accepted: load(&self.tcp_connections_accepted),
            tcp_connections_open: load(&self.tcp_connections_open),
            tcp_connections_lost: load(&self.tcp_connections_lost),
            tcp_frames: load(&self.tcp_frames),
            tcp_bytes: load(&self.tcp_bytes),
            events_parsed: load(&self.events_parsed),
            frames_truncated: load(&self.frames_truncated),
            routed_local: load(&self.routed_local),
            routed_remote: load(&self.routed_remote),
            batches_received: load(&self.batches_received),
            route_buffers_reused: load(&self.route_buffers_reused),
            shard_records: load(&self.shard_records),
            shard_groups: load(&self.shard_groups),
            alerts: load(&self.alerts),
            alerts_suppressed: load(&self.alerts_suppressed),
            groups_evicted: load(&self.groups_evicted),
            quarantined: self.quarantined(),
            dropped: self.dropped(),
            flagged: self.flagged(),
            relp_messages: load(&self.relp_messages),
            relp_acks: load(&self.relp_acks),
            tls_sessions: load(&self.tls_sessions),
            tls_handshake_failures: load(&self.tls_handshake_failures),
            journal_lines: load(&self.journal_lines),
            journal_bytes: load(&self.journal_bytes),
            journal_commits: load(&self.journal_commits),
            journal_rolls_unprepared: load(&self.journal_rolls_unprepared),
            journal_errors: load(&self.journal_errors),
            alerts_unjournaled: load(&self.alerts_unjournaled),
            alerts_sent_mid_read: load(&self.alerts_sent_mid_read),
            lines_without_payload: load(&self.lines_without_payload),
            checkpoints_written: load(&self.checkpoints_written),
            checkpoint_errors: load(&self.checkpoint_errors),
            checkpoints_postponed: load(&self.checkpoints_postponed),
            checkpoint_bytes: load(&self.checkpoint_bytes),
            replayed_lines: load(&self.replayed_lines),
            replay_skipped: load(&self.replay_skipped),
            recovery_ms: load(&self.recovery_ms),
            state_bytes: nonzero(STATE_KINDS, &self.state_bytes),
            state_evictions: load(&self.state_evictions),
            state_groups_evicted: load(&self.state_groups_evicted),
            stall_p99_us: self.stalls.quantile_us(0.99),
            stall_max_us: self.stalls.quantile_us(1.0),
            shards_seen: self
                .shards_seen
                .iter()
                .enumerate()
                .flat_map(|(word, bits)| {
                    let bits = load(bits);
                    (0..64u16)
                        .filter(move |bit| bits & (1 << bit) != 0)
                        .map(move |bit| word as u16 * 64 + bit)
                })
                .collect(),
        }
    }
}

fn nonzero(names: &[&str], values: &[AtomicU64]) -> BTreeMap<String, u64> {
    names
        .iter()
        .zip(values)
        .map(|(name, v)| (name.to_string(), v.load(Ordering::Relaxed)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// A core's counters, as JSON for `/api/stats` and the exit line.
#[derive(Debug, Clone, Serialize)]
pub struct CoreReport {
    pub core: usize,
    pub udp_datagrams: u64,
    pub udp_batches: u64,
    pub tcp_connections_accepted: u64,
    pub tcp_connections_open: u64,
    pub tcp_connections_lost: u64,
    pub tcp_frames: u64,
    pub tcp_bytes: u64,
    pub events_parsed: u64,
    pub frames_truncated: u64,
    pub routed_local: u64,
    pub routed_remote: u64,
    pub batches_received: u64,
    pub route_buffers_reused: u64,
    pub shard_records: u64,
    pub shard_groups: u64,
    pub alerts: u64,
    pub alerts_suppressed: u64,
    pub groups_evicted: u64,
    pub quarantined: BTreeMap<String, u64>,
    pub dropped: BTreeMap<String, u64>,
    pub flagged: BTreeMap<String, u64>,
    pub relp_messages: u64,
    pub relp_acks: u64,
    pub tls_sessions: u64,
    pub tls_handshake_failures: u64,
    pub journal_lines: u64,
    pub journal_bytes: u64,
    pub journal_commits: u64,
    pub journal_rolls_unprepared: u64,
    pub journal_errors: u64,
    pub alerts_unjournaled: u64,
    pub alerts_sent_mid_read: u64,
    pub lines_without_payload: u64,
    pub checkpoints_written: u64,
    pub checkpoint_errors: u64,
    pub checkpoints_postponed: u64,
    pub checkpoint_bytes: u64,
    pub replayed_lines: u64,
    pub replay_skipped: u64,
    pub recovery_ms: u64,
    /// Estimated correlation-state bytes by detector kind.
    pub state_bytes: BTreeMap<String, u64>,
    pub state_evictions: u64,
    pub state_groups_evicted: u64,
    /// The stall probe's lateness (see [`CoreStats::stalls`]): its 99th
    /// percentile and maximum, in microseconds.
    pub stall_p99_us: u64,
    pub stall_max_us: u64,
    pub shards_seen: Vec<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decode_issue_has_its_own_flag_reason() {
        for issue in shardwatch_net::decode::DecodeIssue::ALL {
            assert!(
                FLAG_REASONS.contains(&issue.as_str()),
                "{} would be counted as other",
                issue.as_str()
            );
        }
    }

    #[test]
    fn unknown_reasons_count_as_other() {
        let stats = CoreStats::new(2, 4096);
        stats.drop_events("route_queue_full", 3);
        stats.drop_events("something new", 1);
        stats.quarantine("bad_pri");
        assert_eq!(stats.dropped().get("route_queue_full"), Some(&3));
        assert_eq!(stats.dropped().get("other"), Some(&1));
        assert_eq!(stats.quarantined().get("bad_pri"), Some(&1));
    }

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = LatencyHistogram::default();
        h.record_us(10);
        h.record_us(11);
        h.record_us(10_000_000);
        let snap = h.snapshot();
        assert_eq!(snap.cumulative[0], 1, "10 us falls in le=10");
        assert_eq!(snap.cumulative[1], 2, "11 us falls in le=25");
        assert_eq!(snap.cumulative[LATENCY_BUCKETS_US.len() - 1], 2);
        assert_eq!(
            snap.cumulative[LATENCY_BUCKETS_US.len()],
            3,
            "beyond the last bound only the total counts it"
        );
        assert_eq!((snap.sum_us, snap.count), (10_000_021, 3));
    }

    #[test]
    fn histogram_quantiles_within_two_digits() {
        let h = LatencyHistogram::default();
        assert_eq!(h.snapshot().quantiles_us, vec![0; LATENCY_QUANTILES.len()]);
        for us in 1..=10_000u64 {
            h.record_us(us);
        }
        // Beyond the hour the histogram tells apart: recorded as an hour.
        h.record_us(u64::MAX / 2);
        let snap = h.snapshot();
        let at = |q: f64| {
            let i = LATENCY_QUANTILES.iter().position(|&x| x == q).unwrap();
            snap.quantiles_us[i]
        };
        let close = |got: u64, want: u64| got.abs_diff(want) * 100 <= want;
        assert!(close(at(0.5), 5_000), "p50 {}", at(0.5));
        assert!(close(at(0.99), 9_900), "p99 {}", at(0.99));
        assert!(close(at(1.0), LATENCY_MAX_US), "max {}", at(1.0));
        assert_eq!(snap.count, 10_001);
    }

    #[test]
    fn shards_seen_round_trip() {
        let stats = CoreStats::new(1, 4096);
        stats.shard_seen(0);
        stats.shard_seen(4095);
        stats.shard_seen(64);
        assert_eq!(stats.report(0).shards_seen, vec![0, 64, 4095]);
    }
}
