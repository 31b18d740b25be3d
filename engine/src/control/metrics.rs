//! `/metrics`: the cores' counters in the Prometheus text format.
//!
//! Names follow `shardwatch_<name>_<unit>` (counters end in `_total`),
//! labels stay low-cardinality (core, transport, reason, rule). Latency is
//! recorded per core in an hdrhistogram and exported as Prometheus
//! histograms with fixed microsecond buckets (`stats::LATENCY_BUCKETS_US`),
//! converted to seconds, plus its quantiles (`stats::LATENCY_QUANTILES`)
//! as a `..._quantile_seconds` gauge family.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::stats::{
    CoreStats, LatencyHistogram, LatencySnapshot, LATENCY_BUCKETS_US, LATENCY_QUANTILES,
};

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn per_core(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    cores: &[std::sync::Arc<CoreStats>],
    value: impl Fn(&CoreStats) -> u64,
) {
    header(out, name, kind, help);
    for (core, stats) in cores.iter().enumerate() {
        let _ = writeln!(out, "{name}{{core=\"{core}\"}} {}", value(stats));
    }
}

/// `shardwatch_core_heartbeat_age_seconds{core}`: how long ago each core's
/// heartbeat task last ran (every 50 ms on a core that runs; a core not
/// started yet is left out).
pub fn render_heartbeats(out: &mut String, cores: &[std::sync::Arc<CoreStats>]) {
    let name = "shardwatch_core_heartbeat_age_seconds";
    header(
        out,
        name,
        "gauge",
        "Seconds since the core's executor last ran its heartbeat task (every 50 ms); a growing value is a stuck core.",
    );
    let now = crate::timefmt::now_ns().max(0) as u64;
    for (core, stats) in cores.iter().enumerate() {
        if let Some(age) = stats.heartbeat_age_s(now) {
            let _ = writeln!(out, "{name}{{core=\"{core}\"}} {age:.3}");
        }
    }
}

/// A latency histogram per core as Prometheus buckets (from the core's
/// hdrhistogram, so a bucket's bound holds to two digits, within 1%), then the
/// same data's quantiles as a gauge family `<name without _seconds>_quantile_seconds`
/// with a `quantile` label (1 is the maximum); both since the node started.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    cores: &[std::sync::Arc<CoreStats>],
    pick: impl Fn(&CoreStats) -> &LatencyHistogram,
) {
    header(out, name, "histogram", help);
    let snapshots: Vec<LatencySnapshot> = cores.iter().map(|s| pick(s).snapshot()).collect();
    for (core, snap) in snapshots.iter().enumerate() {
        for (i, cumulative) in snap.cumulative.iter().enumerate() {
            let le = match LATENCY_BUCKETS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{core=\"{core}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_sum{{core=\"{core}\"}} {}",
            snap.sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{core=\"{core}\"}} {}", snap.count);
    }
    let stem = name.strip_suffix("_seconds").unwrap_or(name);
    let quantiles = format!("{stem}_quantile_seconds");
    header(
        out,
        &quantiles,
        "gauge",
        &format!("Quantiles of {name} since start (quantile 1 is the maximum; 0 while empty)."),
    );
    for (core, snap) in snapshots.iter().enumerate() {
        for (q, us) in LATENCY_QUANTILES.iter().zip(&snap.quantiles_us) {
            let _ = writeln!(
                out,
                "{quantiles}{{core=\"{core}\",quantile=\"{q}\"}} {}",
                *us as f64 / 1e6
            );
        }
    }
}

/// `text` as a Prometheus label value: backslash, double quote and line
/// feed escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric.
pub fn render(cores: &[std::sync::Arc<CoreStats>], alerts_by_rule: &[(String, u64)]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);

    header(
        &mut out,
        "shardwatch_build_info",
        "gauge",
        "Always 1; the labels say which version and build (profile, profile-guided, target CPU) is running.",
    );
    let _ = writeln!(
        out,
        "shardwatch_build_info{{version=\"{}\",build=\"{}\"}} 1",
        label_value(env!("CARGO_PKG_VERSION")),
        label_value(crate::BUILD)
    );

    header(
        &mut out,
        "shardwatch_events_received_total",
        "counter",
        "Syslog messages received, by transport and core (TLS sessions count under tcp).",
    );
    for (core, s) in cores.iter().enumerate() {
        let _ = writeln!(
            out,
            "shardwatch_events_received_total{{core=\"{core}\",transport=\"udp\"}} {}",
            load(&s.udp_datagrams)
        );
        let _ = writeln!(
            out,
            "shardwatch_events_received_total{{core=\"{core}\",transport=\"tcp\"}} {}",
            load(&s.tcp_frames)
        );
        let _ = writeln!(
            out,
            "shardwatch_events_received_total{{core=\"{core}\",transport=\"relp\"}} {}",
            load(&s.relp_messages)
        );
    }
    per_core(
        &mut out,
        "shardwatch_events_parsed_total",
        "counter",
        "Lines parsed and run through the stateless rules.",
        cores,
        |s| load(&s.events_parsed),
    );
    per_core(
        &mut out,
        "shardwatch_received_bytes_total",
        "counter",
        "TCP payload bytes read.",
        cores,
        |s| load(&s.tcp_bytes),
    );
    per_core(
        &mut out,
        "shardwatch_frames_truncated_total",
        "counter",
        "Frames cut at ingest.frame_bytes_max.",
        cores,
        |s| load(&s.frames_truncated),
    );

    for (name, help, counts) in [
        (
            "shardwatch_events_quarantined_total",
            "Lines refused and written to quarantine, by reason.",
            CoreStats::quarantined as fn(&CoreStats) -> _,
        ),
        (
            "shardwatch_events_dropped_total",
            "Events or records dropped, by reason.",
            CoreStats::dropped,
        ),
        (
            "shardwatch_events_flagged_total",
            "Accepted events that were only partly usable, by reason.",
            CoreStats::flagged,
        ),
    ] {
        header(&mut out, name, "counter", help);
        for (core, s) in cores.iter().enumerate() {
            for (reason, n) in counts(s) {
                let _ = writeln!(out, "{name}{{core=\"{core}\",reason=\"{reason}\"}} {n}");
            }
        }
    }
    per_core(
        &mut out,
        "shardwatch_udp_batches_total",
        "counter",
        "recvmmsg calls that returned datagrams (received datagrams / batches is the batch size).",
        cores,
        |s| load(&s.udp_batches),
    );
    per_core(
        &mut out,
        "shardwatch_tls_sessions_total",
        "counter",
        "TLS sessions established (handshake done).",
        cores,
        |s| load(&s.tls_sessions),
    );
    per_core(
        &mut out,
        "shardwatch_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed (bad or missing client certificate, protocol errors).",
        cores,
        |s| load(&s.tls_handshake_failures),
    );
    per_core(
        &mut out,
        "shardwatch_relp_acks_total",
        "counter",
        "RELP responses sent (acknowledged or refused frames).",
        cores,
        |s| load(&s.relp_acks),
    );
    per_core(
        &mut out,
        "shardwatch_tcp_connections_open",
        "gauge",
        "Open syslog TCP connections.",
        cores,
        |s| load(&s.tcp_connections_open),
    );
    per_core(
        &mut out,
        "shardwatch_tcp_connections_accepted_total",
        "counter",
        "Syslog TCP connections accepted.",
        cores,
        |s| load(&s.tcp_connections_accepted),
    );
    per_core(
        &mut out,
        "shardwatch_tcp_connections_lost_total",
        "counter",
        "Stream connections ended by a read error instead of an orderly close (reset, TCP keepalive unanswered, unreachable, a TLS session cut without close_notify).",
        cores,
        |s| load(&s.tcp_connections_lost),
    );
    header(
        &mut out,
        "shardwatch_routed_records_total",
        "counter",
        "Records for stateful detectors, by whether they stayed on the reading core.",
    );
    for (core, s) in cores.iter().enumerate() {
        let _ = writeln!(
            out,
            "shardwatch_routed_records_total{{core=\"{core}\",path=\"local\"}} {}",
            load(&s.routed_local)
        );
        let _ = writeln!(
            out,
            "shardwatch_routed_records_total{{core=\"{core}\",path=\"remote\"}} {}",
            load(&s.routed_remote)
        );
    }
    // Pipeline depth: batches sent to a core that it has not processed yet.
    header(
        &mut out,
        "shardwatch_pipeline_depth_batches",
        "gauge",
        "Routed batches queued for a core and not yet processed.",
    );
    for (core, s) in cores.iter().enumerate() {
        let sent: u64 = cores
            .iter()
            .map(|peer| load(&peer.batches_sent[core]))
            .sum();
        let depth = sent.saturating_sub(load(&s.batches_received));
        let _ = writeln!(
            out,
            "shardwatch_pipeline_depth_batches{{core=\"{core}\"}} {depth}"
        );
    }
    per_core(
        &mut out,
        "shardwatch_shard_records_total",
        "counter",
        "Records processed by the shards a core owns.",
        cores,
        |s| load(&s.shard_records),
    );
    per_core(
        &mut out,
        "shardwatch_correlation_groups",
        "gauge",
        "Correlation groups held (updated each second).",
        cores,
        |s| load(&s.shard_groups),
    );
    per_core(
        &mut out,
        "shardwatch_correlation_groups_evicted_total",
        "counter",
        "Groups evicted at engine.groups_per_shard_max.",
        cores,
        |s| load(&s.groups_evicted),
    );
    per_core(
        &mut out,
        "shardwatch_alerts_raised_total",
        "counter",
        "Alerts raised, by core.",
        cores,
        |s| load(&s.alerts),
    );
    per_core(
        &mut out,
        "shardwatch_alerts_suppressed_total",
        "counter",
        "Repeat alerts folded into an earlier one (rules.suppress_window_ms).",
        cores,
        |s| load(&s.alerts_suppressed),
    );
    header(
        &mut out,
        "shardwatch_alerts_by_rule_total",
        "counter",
        "Alerts written, by rule id (from the alert log).",
    );
    for (rule, n) in alerts_by_rule {
        let rule = label_value(rule);
        let _ = writeln!(
            out,
            "shardwatch_alerts_by_rule_total{{rule=\"{rule}\"}} {n}"
        );
    }
    histogram(
        &mut out,
        "shardwatch_processing_lag_seconds",
        "Receive to stateless detection done, per read batch.",
        cores,
        |s| &s.processing_lag,
    );
    histogram(
        &mut out,
        "shardwatch_detection_latency_seconds",
        "Receive of the completing event to alert raised.",
        cores,
        |s| &s.detection_latency,
    );
    histogram(
        &mut out,
        "shardwatch_core_stall_seconds",
        "How late the core's stall probe timer (due every engine.stall_probe_ms) fired: time the core could not run its tasks (one long stretch of its own work, or its CPU taken).",
        cores,
        |s| &s.stalls,
    );
    out
}

/// Appends the alert outputs' counters.
pub fn render_outputs(
    out: &mut String,
    outputs: &[(String, std::sync::Arc<crate::outputs::OutputStats>)],
) {
    header(
        out,
        "shardwatch_output_delivered_total",
        "counter",
        "Alerts delivered, by output.",
    );
    for (name, s) in outputs {
        let _ = writeln!(
            out,
            "shardwatch_output_delivered_total{{output=\"{name}\"}} {}",
            s.delivered.load(Ordering::Relaxed)
        );
    }
    header(
        out,
        "shardwatch_output_failures_total",
        "counter",
        "Failed delivery attempts (each retried), by output.",
    );
    for (name, s) in outputs {
        let _ = writeln!(
            out,
            "shardwatch_output_failures_total{{output=\"{name}\"}} {}",
            s.failures.load(Ordering::Relaxed)
        );
    }
    header(
        out,
        "shardwatch_output_backlog_bytes",
        "gauge",
        "Bytes of the alert log not yet delivered, by output.",
    );
    for (name, s) in outputs {
        let _ = writeln!(
            out,
            "shardwatch_output_backlog_bytes{{output=\"{name}\"}} {}",
            s.backlog_bytes.load(Ordering::Relaxed)
        );
    }
}

/// Appends the quarantine file's counters.
/// Correlation state held, by detector kind (an estimate: struct sizes
/// plus heap contents, see `CorrelationState::memory_by_correlation`).
pub fn render_state_memory(out: &mut String, cores: &[std::sync::Arc<CoreStats>]) {
    use crate::stats::STATE_KINDS;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    header(
        out,
        "shardwatch_state_memory_bytes",
        "gauge",
        "Estimated bytes of correlation and anomaly state, by detector kind (shared: indices and pending alerts).",
    );
    for (core, s) in cores.iter().enumerate() {
        for (i, kind) in STATE_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "shardwatch_state_memory_bytes{{core=\"{core}\",kind=\"{kind}\"}} {}",
                load(&s.state_bytes[i])
            );
        }
    }
    header(
        out,
        "shardwatch_state_groups",
        "gauge",
        "Correlation groups (entities) held, by detector kind.",
    );
    for (core, s) in cores.iter().enumerate() {
        for (i, kind) in STATE_KINDS.iter().enumerate().take(STATE_KINDS.len() - 1) {
            let _ = writeln!(
                out,
                "shardwatch_state_groups{{core=\"{core}\",kind=\"{kind}\"}} {}",
                load(&s.state_groups[i])
            );
        }
    }
}

/// Evictions forced by `limits.state_memory_bytes_max`.
pub fn render_state_evictions(out: &mut String, cores: &[std::sync::Arc<CoreStats>]) {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    per_core(
        out,
        "shardwatch_state_memory_evictions_total",
        "counter",
        "Times the state-memory bound made the core evict groups.",
        cores,
        |s| load(&s.state_evictions),
    );
    per_core(
        out,
        "shardwatch_state_memory_groups_evicted_total",
        "counter",
        "Groups evicted to stay under limits.state_memory_bytes_max.",
        cores,
        |s| load(&s.state_groups_evicted),
    );
}

/// Journal, checkpoint and recovery metrics.
pub fn render_durability(
    out: &mut String,
    cores: &[std::sync::Arc<CoreStats>],
    recovery: &crate::durable::RecoveryPlan,
    alert_duplicates: u64,
) {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    per_core(
        out,
        "shardwatch_journal_lines_total",
        "counter",
        "Lines appended to the core's journal.",
        cores,
        |s| load(&s.journal_lines),
    );
    per_core(
        out,
        "shardwatch_journal_written_bytes_total",
        "counter",
        "Bytes the journal handed to the device (block-aligned).",
        cores,
        |s| load(&s.journal_bytes),
    );
    per_core(
        out,
        "shardwatch_journal_commits_total",
        "counter",
        "Journal commits that wrote (one write each; written bytes / commits is the write size).",
        cores,
        |s| load(&s.journal_commits),
    );
    per_core(
        out,
        "shardwatch_journal_rolls_unprepared_total",
        "counter",
        "Journal segment rolls that found no prepared segment and created one while the core's flushes waited (storage.journal_preallocate).",
        cores,
        |s| load(&s.journal_rolls_unprepared),
    );
    per_core(
        out,
        "shardwatch_journal_errors_total",
        "counter",
        "Journal writes or syncs that failed.",
        cores,
        |s| load(&s.journal_errors),
    );
    per_core(
        out,
        "shardwatch_journal_failing",
        "gauge",
        "1 while the core's last journal write or sync failed, else 0.",
        cores,
        |s| load(&s.journal_failing),
    );
    per_core(
        out,
        "shardwatch_alerts_unjournaled_total",
        "counter",
        "Alerts sent before their line was journaled, because the journal was failing.",
        cores,
        |s| load(&s.alerts_unjournaled),
    );
    per_core(
        out,
        "shardwatch_alerts_sent_mid_read_total",
        "counter",
        "Stream reads cut after a line that raised an alert (at most one cut per 256 lines of a connection), and UDP batches flushed early for one: the alert was sent (its lines journaled first) before the rest was processed.",
        cores,
        |s| load(&s.alerts_sent_mid_read),
    );
    per_core(
        out,
        "shardwatch_lines_without_payload_total",
        "counter",
        "Lines finished from their syslog header alone: no loaded rule's log source admits the header, so the payload was not decoded (ingest.decode_all_payloads = true decodes every payload).",
        cores,
        |s| load(&s.lines_without_payload),
    );
    histogram(
        out,
        "shardwatch_journal_fsync_seconds",
        "Duration of each journal sync, from asking to done: the fdatasync, its wait for a blocking-pool thread and the closing of full segments rolled away from.",
        cores,
        |s| &s.journal_fsync,
    );
    per_core(
        out,
        "shardwatch_checkpoints_written_total",
        "counter",
        "Shard-state checkpoints written.",
        cores,
        |s| load(&s.checkpoints_written),
    );
    per_core(
        out,
        "shardwatch_checkpoint_errors_total",
        "counter",
        "Checkpoints that failed.",
        cores,
        |s| load(&s.checkpoint_errors),
    );
    per_core(
        out,
        "shardwatch_checkpoints_postponed_total",
        "counter",
        "Due checkpoints that waited because the core was behind its input (at most 4 times their spacing).",
        cores,
        |s| load(&s.checkpoints_postponed),
    );
    per_core(
        out,
        "shardwatch_checkpoint_size_bytes",
        "gauge",
        "Size of the core's last checkpoint.",
        cores,
        |s| load(&s.checkpoint_bytes),
    );
    histogram(
        out,
        "shardwatch_checkpoint_duration_seconds",
        "Snapshot to checkpoint file in place (including the journal sync and alert barrier).",
        cores,
        |s| &s.checkpoint_duration,
    );
    per_core(
        out,
        "shardwatch_recovery_replayed_lines_total",
        "counter",
        "Journal lines replayed at start.",
        cores,
        |s| load(&s.replayed_lines),
    );
    per_core(
        out,
        "shardwatch_recovery_skipped_records_total",
        "counter",
        "Replayed records not applied because a checkpoint held them.",
        cores,
        |s| load(&s.replay_skipped),
    );
    let ms = cores
        .iter()
        .map(|s| load(&s.recovery_ms))
        .max()
        .unwrap_or(0);
    let plan_ms = load(&recovery.stats.plan_ms);
    header(
        out,
        "shardwatch_recovery_duration_seconds",
        "gauge",
        "Recovery at start: validating the journals and loading checkpoints, then the slowest core's replay (0 until replay ends).",
    );
    let total_ms = if ms > 0 { plan_ms + ms } else { 0 };
    let _ = writeln!(
        out,
        "shardwatch_recovery_duration_seconds {}",
        total_ms as f64 / 1e3
    );
    let st = &recovery.stats;
    for (name, help, value) in [
        (
            "shardwatch_journal_torn_tails_total",
            "Journal segments whose tail was torn at start (truncated).",
            load(&st.journal_torn_tails),
        ),
        (
            "shardwatch_journal_torn_bytes_total",
            "Bytes of torn journal tails truncated at start.",
            load(&st.journal_torn_bytes),
        ),
        (
            "shardwatch_journal_skipped_bytes_total",
            "Bytes of corrupt journal records skipped at start.",
            load(&st.journal_skipped_bytes),
        ),
        (
            "shardwatch_journal_bad_segments_total",
            "Journal segments refused whole (bad header or version).",
            load(&st.journal_bad_segments),
        ),
        (
            "shardwatch_checkpoints_rejected_total",
            "Checkpoints refused at start (corrupt, other topology); an older one was used.",
            load(&st.checkpoints_rejected),
        ),
        (
            "shardwatch_checkpoints_restored_total",
            "Checkpoints restored at start.",
            load(&st.checkpoints_restored),
        ),
        (
            "shardwatch_alerts_duplicate_total",
            "Alerts dropped by the writer because their id was already in the log.",
            alert_duplicates,
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// The alert log's health (see `output::AlertWriter::start`).
pub fn render_alert_log(out: &mut String, status: &crate::output::AlertLogStatus) {
    for (name, help, value) in [
        (
            "shardwatch_alert_log_errors_total",
            "Writes or syncs of alerts.jsonl that failed (the alerts are kept and written again).",
            status.errors.load(Ordering::Relaxed),
        ),
        (
            "shardwatch_alert_log_unlogged_total",
            "Alerts not kept for the log because 64 MiB of alerts were already waiting for a failing log.",
            status.unlogged.load(Ordering::Relaxed),
        ),
        (
            "shardwatch_alerts_stdout_dropped_total",
            "Alert lines not printed on stdout because 16,384 were already waiting for it (a stdout nobody reads); the log has them.",
            status.stdout_dropped.load(Ordering::Relaxed),
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    header(
        out,
        "shardwatch_alert_log_failing",
        "gauge",
        "1 while the last write or sync of alerts.jsonl failed, else 0.",
    );
    let _ = writeln!(
        out,
        "shardwatch_alert_log_failing {}",
        u8::from(status.failing.load(Ordering::Relaxed))
    );
}

pub fn render_quarantine(out: &mut String, q: &shardwatch_storage::quarantine::QuarantineWriter) {
    header(
        out,
        "shardwatch_quarantine_records_total",
        "counter",
        "Records written to quarantine.",
    );
    let _ = writeln!(
        out,
        "shardwatch_quarantine_records_total {}",
        q.written_total()
    );
    header(
        out,
        "shardwatch_quarantine_evicted_total",
        "counter",
        "Quarantine records evicted, oldest first, at storage.quarantine_bytes_max.",
    );
    let _ = writeln!(
        out,
        "shardwatch_quarantine_evicted_total {}",
        q.evicted_total()
    );
    header(
        out,
        "shardwatch_quarantine_refused_total",
        "counter",
        "Quarantine records refused (larger than half the cap).",
    );
    let _ = writeln!(
        out,
        "shardwatch_quarantine_refused_total {}",
        q.refused_total()
    );
}

/// Datagrams the kernel dropped for our UDP sockets (receive buffer full
/// before a core read them), summed over the sockets bound to `port`, from
/// the `drops` column of /proc/net/udp and /proc/net/udp6.
pub fn udp_kernel_drops(port: u16) -> u64 {
    let mut drops = 0u64;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = columns.get(1) else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                drops += columns
                    .last()
                    .and_then(|d| d.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    drops
}

/// Appends the kernel's UDP drop counter for our port.
pub fn render_udp_kernel_drops(out: &mut String, port: u16) {
    header(out, "shardwatch_udp_kernel_drops_total", "counter", "Datagrams the kernel dropped before a core read them (socket receive buffer full), from /proc/net/udp.");
    let _ = writeln!(
        out,
        "shardwatch_udp_kernel_drops_total {}",
        udp_kernel_drops(port)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_what_the_text_format_needs() {
        assert_eq!(
            label_value("release, profile-guided"),
            "release, profile-guided"
        );
        assert_eq!(label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label_value("a\nb"), r"a\nb");
    }
}
