//! Durability on the engine side: what a checkpoint holds, and the recovery
//! plan computed at start from the checkpoints and journals on disk.
//!
//! # The protocol
//!
//! Each core journals every line it accepts (`storage::journal`, one
//! sequence per core) before anything derived from it leaves the core:
//! a batch's routed records and alerts are sent only once the batch's
//! lines are written. Routed batches carry their source core and a
//! *stamp*: a sequence number at or below which every record of that
//! source for that destination has already been sent. The destination
//! keeps, per source core, the highest stamp it has applied (`applied`).
//!
//! A checkpoint of core B holds the state of every shard B owns and the
//! vector `covered` = `applied` at the instant of the snapshot (with B's own
//! entry set to B's last appended sequence). Before the file is written, B
//! makes its journal written up to that sequence and has the alert writer
//! fsync every alert raised so far, so everything the checkpoint covers
//! has its alerts on disk.
//!
//! Recovery: load each core's newest valid checkpoint (falling back to an
//! older one), restore its shards, then each core A replays its journal
//! from `min over B of covered_B[A] + 1`. A replayed record for owner B is
//! applied only if its sequence is above `covered_B[A]`; stateless
//! detections are re-run for every replayed line. Alerts raised again get
//! the ids they had (ids are deterministic), and the alert writer drops
//! ids already in the log, so nothing reaches the outputs twice.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use shardwatch_rules::CorrelationState;
use shardwatch_storage::{checkpoint, journal};

/// Format version of [`CoreCheckpoint`] (2: shard blocks serialized from
/// the live state).
pub const CHECKPOINT_FORMAT: u32 = 2;

/// Transport codes stored in journal records.
pub fn transport_code(transport: &str) -> u8 {
    match transport {
        "udp" => 1,
        "tcp" => 2,
        "relp" => 3,
        "tls" => 4,
        _ => 0,
    }
}

pub fn transport_name(code: u8) -> &'static str {
    match code {
        1 => "udp",
        2 => "tcp",
        3 => "relp",
        4 => "tls",
        _ => "replay",
    }
}

/// One shard's state in a checkpoint.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: u16,
    pub state: CorrelationState,
}

/// What a checkpoint says about itself: the rkyv archive at the head of
/// the payload.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CheckpointHeader {
    pub format: u32,
    pub core: u32,
    pub cores: u32,
    pub shards: u32,
    pub taken_unix_ns: i64,
    /// Per source core: the last journal sequence whose records for this
    /// core's shards are in the checkpoint.
    pub covered: Vec<u64>,
    /// How many shard blocks follow.
    pub shard_count: u32,
}

/// One core's checkpoint, read back: its shards and the journal positions
/// they cover.
///
/// Payload layout (all offsets multiples of 16, so every archive is read
/// in place from the 16-byte-aligned payload):
///
/// ```text
/// header_len:u32 zero:u32*3 | header (rkyv CheckpointHeader) | pad to 16
/// per shard: shard:u16 zero:u16 len:u32 zero:u64 | state (rkyv CorrelationState, len bytes) | pad to 16
/// ```
///
/// Each shard is serialized straight from the live state (no copy of the
/// whole state first), so a checkpoint costs one archive's worth of memory.
#[derive(Debug, Clone)]
pub struct CoreCheckpoint {
    pub header: CheckpointHeader,
    pub states: Vec<ShardSnapshot>,
}

fn pad16(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(16) * 16, 0);
}

/// A payload's header archive and its shard blocks `(shard, archive)`.
type PayloadParts<'a> = (&'a [u8], Vec<(u16, &'a [u8])>);

/// The parts of a payload, after checking the framing.
fn split_payload(bytes: &[u8]) -> Result<PayloadParts<'_>, String> {
    let u32_at = |at: usize| -> Result<usize, String> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
            .ok_or_else(|| "checkpoint payload truncated".to_string())
    };
    let header_len = u32_at(0)?;
    let header = bytes
        .get(16..16 + header_len)
        .ok_or("checkpoint header truncated")?;
    let mut at = (16 + header_len).div_ceil(16) * 16;
    let mut shards = Vec::new();
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 16)
            .ok_or("shard block header truncated")?;
        let shard = u16::from_le_bytes([head[0], head[1]]);
        let len = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default()) as usize;
        let state = bytes
            .get(at + 16..at + 16 + len)
            .ok_or_else(|| format!("shard {shard}'s state truncated"))?;
        shards.push((shard, state));
        at = (at + 16 + len).div_ceil(16) * 16;
    }
    Ok((header, shards))
}

impl CoreCheckpoint {
    /// Serializes `header` and every `(shard, state)` into one payload.
    pub fn encode<'a>(
        header: &CheckpointHeader,
        states: impl Iterator<Item = (u16, &'a CorrelationState)>,
    ) -> anyhow::Result<Vec<u8>> {
        let archive_err =
            |e: rkyv::rancor::Error| anyhow::anyhow!("cannot serialize the checkpoint: {e}");
        let head = rkyv::to_bytes::<rkyv::rancor::Error>(header).map_err(archive_err)?;
        let mut out = Vec::with_capacity(16 + head.len());
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.resize(16, 0);
        out.extend_from_slice(&head);
        pad16(&mut out);
        for (shard, state) in states {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(state).map_err(archive_err)?;
            out.extend_from_slice(&shard.to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&bytes);
            pad16(&mut out);
        }
        Ok(out)
    }

    /// Checks a payload (framing and every archive, bytecheck) without
    /// deserializing it; returns the header. `bytes` must be 16-byte
    /// aligned.
    pub fn validate(bytes: &[u8]) -> Result<&ArchivedCheckpointHeader, String> {
        let (header, shards) = split_payload(bytes)?;
        let header = rkyv::access::<ArchivedCheckpointHeader, rkyv::rancor::Error>(header)
            .map_err(|e| format!("header archive validation failed: {e}"))?;
        if header.shard_count.to_native() as usize != shards.len() {
            return Err(format!(
                "header lists {} shards, the payload holds {}",
                header.shard_count.to_native(),
                shards.len()
            ));
        }
        for (shard, state) in shards {
            rkyv::access::<shardwatch_rules::ArchivedCorrelationState, rkyv::rancor::Error>(state)
                .map_err(|e| format!("shard {shard}: archive validation failed: {e}"))?;
        }
        Ok(header)
    }

    /// Reads a payload that passed [`CoreCheckpoint::validate`].
    pub fn decode(bytes: &[u8]) -> Result<CoreCheckpoint, String> {
        let (header, shards) = split_payload(bytes)?;
        let header = rkyv::from_bytes::<CheckpointHeader, rkyv::rancor::Error>(header)
            .map_err(|e| format!("header archive validation failed: {e}"))?;
        let mut states = Vec::with_capacity(shards.len());
        for (shard, bytes) in shards {
            let state = rkyv::from_bytes::<CorrelationState, rkyv::rancor::Error>(bytes)
                .map_err(|e| format!("shard {shard}: archive validation failed: {e}"))?;
            states.push(ShardSnapshot { shard, state });
        }
        Ok(CoreCheckpoint { header, states })
    }
}

pub fn journal_dir(data_dir: &Path, core: usize) -> PathBuf {
    data_dir.join("journal").join(format!("core-{core}"))
}

pub fn checkpoint_dir(data_dir: &Path, core: usize) -> PathBuf {
    data_dir.join("checkpoints").join(format!("core-{core}"))
}

/// What one core starts from.
#[derive(Debug, Default)]
pub struct CoreRecovery {
    /// The sequence number the core's new journal segment starts at.
    pub next_seq: u64,
    /// The first sequence of this core's journal to replay.
    pub replay_from: u64,
    /// Per destination core: records of this core's journal at or below
    /// this sequence are already in that core's checkpoint.
    pub floors: Vec<u64>,
    /// This core's `applied` vector from its checkpoint.
    pub applied: Vec<u64>,
    pub states: Vec<(u16, CorrelationState)>,
    /// The generation of the checkpoint restored (0: none).
    pub generation: u64,
}

/// Counters of what recovery found, exported as metrics.
#[derive(Debug, Default)]
pub struct RecoveryStats {
    pub journal_torn_tails: AtomicU64,
    pub journal_torn_bytes: AtomicU64,
    pub journal_skipped_bytes: AtomicU64,
    pub journal_bad_segments: AtomicU64,
    pub checkpoints_rejected: AtomicU64,
    pub checkpoints_restored: AtomicU64,
    /// Lines replayed from the journals, over all cores.
    pub replayed_lines: AtomicU64,
    /// From start until every core finished its replay.
    pub recovery_ms: AtomicU64,
    /// Bytes of journal read by the replay.
    pub replayed_bytes: AtomicU64,
    /// Time the plan took (validating every journal, loading checkpoints),
    /// before any core started replaying.
    pub plan_ms: AtomicU64,
}

/// The recovery plan for every core, computed on the main thread before
/// the executors start.
pub struct RecoveryPlan {
    pub cores: Vec<Mutex<Option<CoreRecovery>>>,
    /// What was found, one line each, for the log.
    pub findings: Vec<String>,
    /// `covered[dst * cores + src]` of the newest checkpoint of each core,
    /// kept current as checkpoints are written; journal retention deletes
    /// only what every checkpoint covers.
    pub covered: Vec<AtomicU64>,
    pub stats: RecoveryStats,
}

impl RecoveryPlan {
    /// The lowest sequence of `source`'s journal that some checkpoint still
    /// needs replayed.
    pub fn covered_by_all(&self, source: usize) -> u64 {
        let cores = self.cores.len();
        (0..cores)
            .map(|dst| self.covered[dst * cores + source].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    pub fn publish_covered(&self, dst: usize, covered: &[u64]) {
        let cores = self.cores.len();
        for (src, &seq) in covered.iter().enumerate().take(cores) {
            self.covered[dst * cores + src].store(seq, Ordering::Relaxed);
        }
    }
}

/// Repairs each core's journal (torn tails truncated), loads each core's
/// newest valid checkpoint and works out where every core replays from.
pub fn plan(
    data_dir: &Path,
    cores: usize,
    shards: u32,
    journal_on: bool,
) -> anyhow::Result<RecoveryPlan> {
    let started = std::time::Instant::now();
    let stats = RecoveryStats::default();
    let mut findings = Vec::new();
    let mut next_seq = vec![1u64; cores];
    for (core, next) in next_seq.iter_mut().enumerate() {
        let dir = journal_dir(data_dir, core);
        let report = journal::repair(&dir)?;
        stats
            .journal_torn_tails
            .fetch_add(report.torn_tails, Ordering::Relaxed);
        stats
            .journal_torn_bytes
            .fetch_add(report.torn_bytes, Ordering::Relaxed);
        stats
            .journal_skipped_bytes
            .fetch_add(report.skipped_bytes, Ordering::Relaxed);
        stats
            .journal_bad_segments
            .fetch_add(report.bad_segments, Ordering::Relaxed);
        for problem in &report.problems {
            findings.push(format!("journal core {core}: {problem}"));
        }
        if report.records > 0 {
            findings.push(format!(
                "journal core {core}: {} segments, sequences {}..={}",
                report.segments,
                report.first_seq.unwrap_or(0),
                report.last_seq.unwrap_or(0)
            ));
        }
        *next = report.next_seq();
    }
    // A journal left by a run with more cores is not replayed by this one.
    let mut extra = cores;
    while journal_dir(data_dir, extra).exists() {
        findings.push(format!(
            "journal core {extra}: left by a run with more cores; not replayed (start with --cores {} to replay it)",
            extra + 1
        ));
        extra += 1;
    }

    let mut checkpoints: Vec<Option<(u64, CoreCheckpoint)>> = Vec::with_capacity(cores);
    for core in 0..cores {
        let dir = checkpoint_dir(data_dir, core);
        let report = checkpoint::load_latest(&dir, |bytes| {
            let header = CoreCheckpoint::validate(bytes)?;
            if header.format.to_native() != CHECKPOINT_FORMAT {
                return Err(format!(
                    "checkpoint format {}, this build reads {CHECKPOINT_FORMAT}",
                    header.format.to_native()
                ));
            }
            if header.cores.to_native() as usize != cores || header.shards.to_native() != shards {
                return Err(format!(
                    "taken with {} cores and {} shards, this run has {cores} and {shards}",
                    header.cores.to_native(),
                    header.shards.to_native()
                ));
            }
            if header.core.to_native() as usize != core {
                return Err(format!(
                    "belongs to core {}, found in core {core}'s directory",
                    header.core.to_native()
                ));
            }
            Ok(())
        })?;
        for (path, reason) in &report.rejected {
            stats.checkpoints_rejected.fetch_add(1, Ordering::Relaxed);
            findings.push(format!(
                "checkpoint {} refused: {reason}; falling back",
                path.display()
            ));
        }
        let loaded = match report.loaded {
            Some(loaded) => match CoreCheckpoint::decode(&loaded.payload) {
                Ok(checkpoint) => {
                    stats.checkpoints_restored.fetch_add(1, Ordering::Relaxed);
                    findings.push(format!(
                        "checkpoint core {core}: generation {} ({} shards) restored",
                        loaded.generation,
                        checkpoint.states.len()
                    ));
                    Some((loaded.generation, checkpoint))
                }
                Err(reason) => {
                    stats.checkpoints_rejected.fetch_add(1, Ordering::Relaxed);
                    findings.push(format!(
                        "checkpoint {} refused: {reason}",
                        loaded.path.display()
                    ));
                    None
                }
            },
            None => None,
        };
        checkpoints.push(loaded);
    }

    let covered: Vec<AtomicU64> = (0..cores * cores).map(|_| AtomicU64::new(0)).collect();
    for (dst, checkpoint) in checkpoints.iter().enumerate() {
        if let Some((_, c)) = checkpoint {
            for (src, &seq) in c.header.covered.iter().enumerate().take(cores) {
                // A checkpoint cannot cover more than the journal holds
                // (a journal deleted by hand): clamp, so replay still runs.
                let seq = seq.min(next_seq[src] - 1);
                covered[dst * cores + src].store(seq, Ordering::Relaxed);
            }
        }
    }
    let mut per_core = Vec::with_capacity(cores);
    for (core, checkpoint) in checkpoints.into_iter().enumerate() {
        let floors: Vec<u64> = (0..cores)
            .map(|dst| covered[dst * cores + core].load(Ordering::Relaxed))
            .collect();
        let replay_from = if journal_on {
            floors.iter().copied().min().unwrap_or(0) + 1
        } else {
            next_seq[core]
        };
        let (generation, applied, states) = match checkpoint {
            Some((generation, c)) => (
                generation,
                (0..cores)
                    .map(|src| covered[core * cores + src].load(Ordering::Relaxed))
                    .collect(),
                c.states.into_iter().map(|s| (s.shard, s.state)).collect(),
            ),
            None => (0, vec![0; cores], Vec::new()),
        };
        per_core.push(Mutex::new(Some(CoreRecovery {
            next_seq: next_seq[core],
            replay_from,
            floors,
            applied,
            states,
            generation,
        })));
    }
    stats
        .plan_ms
        .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    Ok(RecoveryPlan {
        cores: per_core,
        findings,
        covered,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(core: u32, cores: u32, covered: Vec<u64>) -> Vec<u8> {
        let header = CheckpointHeader {
            format: CHECKPOINT_FORMAT,
            core,
            cores,
            shards: 64,
            taken_unix_ns: 1,
            covered,
            shard_count: 2,
        };
        let (a, b) = (CorrelationState::new(10), CorrelationState::new(20));
        CoreCheckpoint::encode(&header, [(3u16, &a), (9u16, &b)].into_iter()).unwrap()
    }

    #[test]
    fn a_checkpoint_round_trips_and_garbage_fails_validation() {
        let bytes = checkpoint(0, 2, vec![5, 7]);
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes);
        CoreCheckpoint::validate(&aligned).unwrap();
        let back = CoreCheckpoint::decode(&aligned).unwrap();
        assert_eq!(back.header.covered, vec![5, 7]);
        assert_eq!(
            back.states.iter().map(|s| s.shard).collect::<Vec<_>>(),
            vec![3, 9]
        );
        assert_eq!(back.states[1].state, CorrelationState::new(20));
        // A header length past the end, and a payload cut inside a shard
        // block, are refused (the file's CRC catches flipped bits before
        // this; the framing and bytecheck catch what a CRC cannot).
        let mut broken = aligned.clone();
        broken[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(CoreCheckpoint::validate(&broken).is_err());
        let len = aligned.len();
        assert!(CoreCheckpoint::validate(&aligned[..len - 40]).is_err());
        // Garbage over the header archive's root (its relative pointers).
        let mut garbage = aligned.clone();
        let header_end = 16 + u32::from_le_bytes(aligned[0..4].try_into().unwrap()) as usize;
        garbage[header_end - 16..header_end].copy_from_slice(&[0xab; 16]);
        assert!(CoreCheckpoint::validate(&garbage).is_err());
    }

    #[test]
    fn replay_starts_after_what_every_checkpoint_covers() {
        let dir = std::env::temp_dir().join(format!("sw-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Journals with 10 and 20 records.
        for (core, n) in [(0usize, 10u64), (1, 20)] {
            let jdir = journal_dir(&dir, core);
            std::fs::create_dir_all(&jdir).unwrap();
            let mut bytes = vec![0u8; journal::HEADER_BYTES];
            bytes[..8].copy_from_slice(b"SWJOURN1");
            bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
            for seq in 1..=n {
                journal::encode_record(
                    &journal::JournalEntry {
                        seq,
                        received_ns: 0,
                        transport: 2,
                        peer: None,
                        line: b"x",
                    },
                    &mut bytes,
                );
            }
            std::fs::write(jdir.join(format!("{:020}.wal", 1)), &bytes).unwrap();
        }
        // Core 0 covers (0: 8, 1: 15); core 1 covers (0: 6, 1: 18).
        for (core, covered) in [(0u32, vec![8, 15]), (1, vec![6, 18])] {
            let bytes = checkpoint(core, 2, covered);
            checkpoint::write(&checkpoint_dir(&dir, core as usize), 1, &bytes, 3).unwrap();
        }
        let plan = plan(&dir, 2, 64, true).unwrap();
        let c0 = plan.cores[0].lock().unwrap().take().unwrap();
        let c1 = plan.cores[1].lock().unwrap().take().unwrap();
        assert_eq!(
            (c0.next_seq, c0.replay_from, c0.floors.clone()),
            (11, 7, vec![8, 6])
        );
        assert_eq!(
            (c1.next_seq, c1.replay_from, c1.floors.clone()),
            (21, 16, vec![15, 18])
        );
        assert_eq!(c0.applied, vec![8, 15]);
        assert_eq!(c0.states.len(), 2);
        assert_eq!(plan.covered_by_all(1), 15);
        // A run with another core count refuses the checkpoints, says why
        // and replays everything.
        let other = super::plan(&dir, 1, 64, true).unwrap();
        let only = other.cores[0].lock().unwrap().take().unwrap();
        assert_eq!(only.replay_from, 1);
        assert!(other
            .findings
            .iter()
            .any(|f| f.contains("2 cores") && f.contains("refused")));
        assert!(other.findings.iter().any(|f| f.contains("more cores")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
