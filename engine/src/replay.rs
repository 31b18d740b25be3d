//! `shardwatch replay FILE`: the streaming rules over a log file, in batch.
//!
//! Lines go through the same [`Pipeline`] as live syslog, with one shard set
//! owning every shard, and correlation windows advance on event time. Since
//! correlation state is per group and a group's events keep their order,
//! replay raises the same alerts with the same ids as streaming.
//!
//! The input is one syslog line per line (LF or CRLF). Lines without a
//! header timestamp take the time they are read as their event time.

use std::io::BufRead;
use std::sync::Arc;

use shardwatch_rules::{Event, RuleSet};

use crate::alert::{render_correlation, render_detection, AlertGate, Raised};
use crate::config::Config;
use crate::pipeline::{EventSink, Pipeline};
use crate::route::RouteRecord;
use crate::shard::{ShardStates, WindowClock};
use crate::shardmap::ShardMap;
use crate::timefmt::now_ns;

/// Counts from one replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    pub lines: u64,
    pub quarantined: u64,
    pub alerts: u64,
    /// Alerts folded by suppression.
    pub suppressed: u64,
}

struct ReplaySink<'a, W: FnMut(String)> {
    rules: &'a RuleSet,
    shards: &'a mut ShardStates,
    emit: &'a mut W,
    summary: &'a mut ReplaySummary,
    gate: &'a mut AlertGate,
}

impl<W: FnMut(String)> EventSink for ReplaySink<'_, W> {
    fn quarantine(&mut self, reason: &'static str, offset: Option<usize>, raw: &[u8]) {
        self.summary.quarantined += 1;
        eprintln!(
            "shardwatch: replay: quarantined ({reason} at byte {}): {}",
            offset.unwrap_or(0),
            String::from_utf8_lossy(raw)
        );
    }

    fn detection(&mut self, detection: u32, event: &Event<'_>, received_ns: i64) {
        let rule_id = &self.rules.detection(detection as usize).id;
        let id = shardwatch_rules::event_alert_id(rule_id, event.raw, event.time_ns);
        let host = event.get("host.name").unwrap_or_default();
        // Replay's clock is event time: alerts arrive at their event time.
        if !self
            .gate
            .admit(rule_id, host, &id, event.time_ns, event.time_ns)
        {
            self.summary.suppressed += 1;
            return;
        }
        let raised = Raised {
            core: 0,
            shard: None,
            detected_ns: now_ns(),
            received_ns,
        };
        self.summary.alerts += 1;
        (self.emit)(render_detection(self.rules, detection, event, &raised).line);
    }

    fn route(&mut self, record: &RouteRecord<'_>, _owner: u16) {
        let mut fired = Vec::new();
        let known = self.shards.observe(self.rules, record, &mut fired);
        debug_assert!(
            known,
            "replay routes with the one rule set it observes with"
        );
        for alert in fired {
            let rule_id = &self.rules.correlation(alert.correlation as usize).id;
            if !self.gate.admit(
                rule_id,
                &alert.group_key,
                &alert.id,
                alert.first_seen_ns,
                alert.first_seen_ns,
            ) {
                self.summary.suppressed += 1;
                continue;
            }
            let raised = Raised {
                core: 0,
                shard: Some(record.shard),
                detected_ns: now_ns(),
                received_ns: record.received_ns,
            };
            self.summary.alerts += 1;
            (self.emit)(render_correlation(self.rules, &alert, &raised).line);
        }
    }
}

/// Replays `input` through `rules` with the engine settings of `config`,
/// handing each rendered alert to `emit`. With `registry_out`, the schema
/// registry of what was seen is returned there.
pub fn replay(
    rules: Arc<RuleSet>,
    config: &Config,
    mut input: impl BufRead,
    mut emit: impl FnMut(String),
    registry_out: Option<&mut Vec<crate::schema::SourceSchema>>,
) -> anyhow::Result<ReplaySummary> {
    let shards = config.engine.shards;
    let suppress_window_ms = config.rules.suppress_window_ms;
    let map = Arc::new(ShardMap::new(0, shards, 1));
    let mut options = config.pipeline_options(registry_out.is_some());
    options.receive_times_are_arrivals = false;
    let mut pipeline = Pipeline::new(rules.clone(), map, options);
    let mut states = ShardStates::new(
        config.engine.groups_per_shard_max,
        config.engine.groups_per_rule_per_shard_max,
        WindowClock::EventTime,
    );
    let mut summary = ReplaySummary::default();
    let mut fired = Vec::new();
    let mut advanced_ns = i64::MIN;
    let mut gate = AlertGate::new(suppress_window_ms);
    // One line buffer for the whole file (`split` would allocate a line
    // each).
    let mut line = Vec::new();
    loop {
        line.clear();
        if read_line(&mut input, &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        while matches!(line.last(), Some(b'\r' | 0)) {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        summary.lines += 1;
        let received_ns = now_ns();
        let mut sink = ReplaySink {
            rules: &rules,
            shards: &mut states,
            emit: &mut emit,
            summary: &mut summary,
            gate: &mut gate,
        };
        let event_time_ns = pipeline.process(&line, received_ns, &mut sink);
        // Windows advance on event time: the newest event seen so far stands
        // in for the wall clock, checked at most once per event-time second
        // (as the server's tick does once per wall-clock second).
        fired.clear();
        if let Some(time_ns) = event_time_ns {
            if time_ns >= advanced_ns.saturating_add(1_000_000_000) {
                advanced_ns = time_ns;
                states.advance(&rules, time_ns, &mut fired);
                gate.advance(time_ns, now_ns(), |update| emit(update.line));
            }
        }
        for (shard, alert) in fired.drain(..) {
            let rule_id = &rules.correlation(alert.correlation as usize).id;
            if !gate.admit(
                rule_id,
                &alert.group_key,
                &alert.id,
                alert.first_seen_ns,
                alert.first_seen_ns,
            ) {
                summary.suppressed += 1;
                continue;
            }
            let raised = Raised {
                core: 0,
                shard: Some(shard),
                detected_ns: now_ns(),
                received_ns: alert.arrived_ns,
            };
            summary.alerts += 1;
            emit(render_correlation(&rules, &alert, &raised).line);
        }
    }
    if let (Some(out), Some(registry)) = (registry_out, pipeline.registry()) {
        *out = registry.snapshot();
    }
    Ok(summary)
}

/// Appends the next line of `input` to `line`, its `\n` included, or the
/// rest of the input when no `\n` is left; the bytes taken, 0 at its end.
/// `BufRead::read_until` does the same with the standard library's portable
/// byte search: ~300 instructions per line of the harness's corpus, a tenth
/// of a replay.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut taken = 0;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let (used, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), available.is_empty()),
        };
        line.extend_from_slice(&available[..used]);
        input.consume(used);
        taken += used;
        if done {
            return Ok(taken);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The alerts' rendered lines and the summary of replaying `input`
    /// with the built-in rules.
    fn replay_bytes(input: &[u8]) -> (Vec<String>, ReplaySummary) {
        let rules = Arc::new(RuleSet::compile(&RuleSet::builtin_sources()).unwrap());
        let mut lines = Vec::new();
        let summary = replay(
            rules,
            &Config::default(),
            input,
            |line| lines.push(line),
            None,
        )
        .unwrap();
        (lines, summary)
    }

    /// `read_line` splits as `read_until` does, with lines longer than the
    /// reader's buffer, empty lines and an unended last line.
    #[test]
    fn lines_are_read_as_read_until_reads_them() {
        let input: &[u8] = b"first line\n\n\nx\na line longer than the buffer\r\n\0\nlast, unended";
        for capacity in [1, 2, 3, 7, 64] {
            let mut ours = std::io::BufReader::with_capacity(capacity, input);
            let mut std_reader = std::io::BufReader::with_capacity(capacity, input);
            loop {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let n = read_line(&mut ours, &mut a).unwrap();
                assert_eq!(n, std_reader.read_until(b'\n', &mut b).unwrap());
                assert_eq!(a, b, "capacity {capacity}");
                if n == 0 {
                    break;
                }
            }
        }
    }

    #[test]
    fn lines_end_in_lf_crlf_nul_or_the_end_of_the_file() {
        let failure = |second: u32, end: &str| {
            format!(
                "<38>Nov 30 00:00:{second:02} h sshd[1]: Failed password for root from 203.0.113.9 port 22 ssh2{end}"
            )
        };
        // Ten failures (the built-in brute-force threshold), each line
        // ended differently, blank lines between, the last one unended.
        let ends = [
            "\n", "\r\n", "\0\n", "\r\0\n", "\n\n", "\r\n\r\n", "\n", "\n", "\n", "",
        ];
        let input: String = ends
            .iter()
            .enumerate()
            .map(|(i, end)| failure(i as u32, end))
            .collect();
        let (alerts, summary) = replay_bytes(input.as_bytes());
        assert_eq!(summary.lines, 10, "{summary:?}");
        assert_eq!(summary.quarantined, 0, "{summary:?}");
        assert_eq!(summary.alerts, 1, "{alerts:#?}");
        // The sample lines carry no line-end bytes.
        assert!(alerts[0].contains("port 22 ssh2\""), "{}", alerts[0]);
        assert!(!alerts[0].contains("\\r") && !alerts[0].contains("\\u0000"));
    }
}
