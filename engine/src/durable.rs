//! Durability on the engine side: what a checkpoint holds, and the recovery
//! plan computed at start from the checkpoints and journals on disk.
//!
//! # The protocol
//!
//! Each core journals every line it accepts (`storage::journal`, one
//! sequence per core) before anything derived from it leaves the core:
//! a batch's routed records and alerts are sent only once the batch's
//! lines are written. Routed batches carry their source core and a
//! *stamp*: the source's position when the batch was taken, so every
//! record of that source for that destination at or below it is in this
//! batch or an earlier one. Batches reach a destination in the order
//! they were taken (a flush waits for its turn, `crate::turns`, before
//! it sends), so once a destination has applied a batch its state holds
//! exactly the records at or below the stamp. The destination keeps, per
//! source core, the highest stamp it has applied (`applied`).
//!
//! A checkpoint of core B holds the state of every shard B owns, written
//! one shard at a time while ingest goes on between slices; each shard's
//! block records `covered` = `applied` at the moment it was serialized
//! (with B's own entry set to B's last appended sequence), so it says
//! exactly which records that shard's state reflects. Before the file is
//! written, B syncs its journal up to its position and has the alert
//! writer fsync every alert raised so far, so everything the checkpoint
//! covers has its alerts on disk.
//!
//! Recovery: load each core's newest valid checkpoint (falling back to an
//! older one), restore its shards, then each core A replays its journal
//! from the lowest position any block covers plus one. A replayed record
//! for shard s is applied only if its sequence is above what s's block
//! covers (for a shard without a block, what its owner's checkpoint
//! covered when it began); stateless
//! detections are re-run for every replayed line. Alerts raised again get
//! the ids they had (ids are deterministic), and the alert writer drops
//! ids already in the log, so nothing reaches the outputs twice. Each
//! core sends every peer a `replay_done` batch after its replay, and
//! reads its sockets only once it has one from every peer: a live line
//! must not reach a group before the replayed lines that preceded it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use shardwatch_rules::CorrelationState;
use shardwatch_storage::{checkpoint, journal};

/// Format version of [`CoreCheckpoint`] (3: shard blocks serialized one
/// at a time from the live state, each with the positions it covers; 4:
/// correlation groups carry whether they are protected from eviction; 5:
/// the state carries its per-rule group cap; 6: groups and the gid table
/// are hash maps, and groups carry where their index entries are; 7: a
/// group's window items are one set that is a sorted vector while small,
/// and groups no longer carry an unused per-input chain; 8: each
/// correlation's groups are a list, and the indices and gid table are not
/// archived but rebuilt on restore; 9: groups carry their latest arrival
/// on the node's clock, and their index entries the due time on that
/// clock; 10: group keys of up to 38 bytes are held in place, not as a
/// byte vector; 11: so are window items of up to 22 bytes; 12: a
/// window of one item holds it in place, a group keeps only its kind's
/// window fields, and its samples are a vector; 13: a correlation's groups
/// are archived as (key, group) pairs; 14: a `temporal_ordered` window's
/// steps are a sorted deque of (time, input, sequence) with a mask of the
/// inputs held, not items of the group's item set). A checkpoint of another
/// format is refused (logged, counted) and the journal replayed instead.
pub const CHECKPOINT_FORMAT: u32 = 14;

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

/// One shard's state in a checkpoint, with the journal positions (per
/// source core) its state covers.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: u16,
    pub covered: Vec<u64>,
    pub state: CorrelationState,
}

/// What a checkpoint says about itself: the rkyv archive at the end of the
/// payload.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CheckpointHeader {
    pub format: u32,
    pub core: u32,
    pub cores: u32,
    pub shards: u32,
    pub taken_unix_ns: i64,
    /// Per source core, the journal position when the checkpoint began:
    /// what a shard without a block (no state then) covers, and the lowest
    /// any block covers.
    pub covered: Vec<u64>,
    /// How many shard blocks precede the header.
    pub shard_count: u32,
}

/// One core's checkpoint, read back.
///
/// Payload layout (every part starts at a multiple of 16, so each archive
/// is read in place from the 16-byte-aligned payload):
///
/// ```text
/// per shard: shard:u16 zero:u16 len:u32 ncovered:u32 zero:u32
///            covered:u64*ncovered pad16 | state (rkyv CorrelationState, len bytes) pad16
/// header (rkyv CheckpointHeader) pad16
/// trailer: header_len:u32 zero:u32 header_offset:u64
/// ```
///
/// A checkpoint is written shard by shard from the live state, letting
/// ingest run between slices: each block records the positions its shard
/// covers at the moment it was serialized, so the checkpoint needs no
/// stop-the-core snapshot and no copy of the whole state.
#[derive(Debug, Clone)]
pub struct CoreCheckpoint {
    pub header: CheckpointHeader,
    pub states: Vec<ShardSnapshot>,
}

fn pad16(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(16) * 16, 0);
}

/// Builds a checkpoint payload one shard at a time, as a list of chunks
/// (one per shard block, then the header and trailer), so a large state
/// never means one large buffer that has to be grown and copied.
#[derive(Debug, Default)]
pub struct CheckpointEncoder {
    chunks: Vec<Vec<u8>>,
    /// Bytes of every block so far (the header's offset).
    bytes: usize,
    /// Bytes of the blocks not yet taken by [`CheckpointEncoder::take_chunks`].
    pending: usize,
    shards: u32,
    /// Each shard's block size at the last checkpoint, so its buffer is
    /// allocated once at about the right size (growing a buffer of tens
    /// of MiB by doubling copies it over and over).
    size_hints: HashMap<u16, usize>,
}

fn archive_err(e: rkyv::rancor::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot serialize the checkpoint: {e}")
}

impl CheckpointEncoder {
    /// An encoder that sizes each shard's buffer from `hints` (what
    /// [`CheckpointEncoder::take_size_hints`] returned last time).
    pub fn with_size_hints(size_hints: HashMap<u16, usize>) -> Self {
        CheckpointEncoder {
            size_hints,
            ..CheckpointEncoder::default()
        }
    }

    /// Each shard's block size this time, for the next encoder.
    pub fn take_size_hints(&mut self) -> HashMap<u16, usize> {
        std::mem::take(&mut self.size_hints)
    }

    pub fn push_shard(
        &mut self,
        shard: u16,
        covered: &[u64],
        state: &CorrelationState,
    ) -> anyhow::Result<()> {
        // The state is archived straight after the block's header, in the
        // block's own buffer (no second copy); its length is filled in
        // after. The buffer starts at this shard's size last time.
        let state_at = (16 + covered.len() * 8).div_ceil(16) * 16;
        let hint = self.size_hints.get(&shard).copied().unwrap_or(0);
        let mut out = Vec::with_capacity(state_at.max(hint));
        out.extend_from_slice(&shard.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(covered.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for seq in covered {
            out.extend_from_slice(&seq.to_le_bytes());
        }
        pad16(&mut out);
        let (mut out, len) = state.archive_into(out).map_err(archive_err)?;
        let len = u32::try_from(len)
            .map_err(|_| anyhow::anyhow!("shard {shard}'s state archive is over 4 GiB"))?;
        out[4..8].copy_from_slice(&len.to_le_bytes());
        pad16(&mut out);
        self.size_hints.insert(shard, out.len());
        self.bytes += out.len();
        self.pending += out.len();
        self.chunks.push(out);
        self.shards += 1;
        Ok(())
    }

    /// Bytes of blocks waiting to be taken.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// The blocks encoded since the last call, in order, to be written out
    /// (so a large state is never held serialized whole).
    pub fn take_chunks(&mut self) -> Vec<Vec<u8>> {
        self.pending = 0;
        std::mem::take(&mut self.chunks)
    }

    /// Appends the header (its `shard_count` set here) and the trailer;
    /// the payload is every chunk taken before, then these, in order.
    pub fn finish(mut self, mut header: CheckpointHeader) -> anyhow::Result<Vec<Vec<u8>>> {
        header.shard_count = self.shards;
        let head = rkyv::to_bytes::<rkyv::rancor::Error>(&header).map_err(archive_err)?;
        let offset = self.bytes as u64;
        let mut tail = Vec::with_capacity(head.len() + 32);
        tail.extend_from_slice(&head);
        pad16(&mut tail);
        tail.extend_from_slice(&(head.len() as u32).to_le_bytes());
        tail.extend_from_slice(&[0; 4]);
        tail.extend_from_slice(&offset.to_le_bytes());
        self.chunks.push(tail);
        Ok(self.chunks)
    }
}

/// A shard block of a payload: shard, covered positions, state archive.
type Block<'a> = (u16, Vec<u64>, &'a [u8]);

/// The header archive and the shard blocks of a payload, after checking
/// the framing.
fn split_payload(bytes: &[u8]) -> Result<(&[u8], Vec<Block<'_>>), String> {
    let truncated = || "checkpoint payload truncated".to_string();
    if bytes.len() < 16 {
        return Err(truncated());
    }
    let trailer = &bytes[bytes.len() - 16..];
    let header_len = u32::from_le_bytes(trailer[0..4].try_into().unwrap_or_default()) as usize;
    let header_at = u64::from_le_bytes(trailer[8..16].try_into().unwrap_or_default()) as usize;
    let header = bytes
        .get(header_at..header_at.saturating_add(header_len))
        .filter(|_| header_at.is_multiple_of(16) && header_at + header_len <= bytes.len() - 16)
        .ok_or("checkpoint header out of bounds")?;
    let mut blocks = Vec::new();
    let mut at = 0usize;
    while at < header_at {
        let head = bytes.get(at..at + 16).ok_or_else(truncated)?;
        let shard = u16::from_le_bytes([head[0], head[1]]);
        let len = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default()) as usize;
        let ncovered = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default()) as usize;
        if ncovered > 4096 {
            return Err(format!("shard {shard}: {ncovered} covered positions"));
        }
        let covered_at = at + 16;
        let covered_bytes = bytes
            .get(covered_at..covered_at + ncovered * 8)
            .ok_or_else(truncated)?;
        let covered = covered_bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let state_at = (covered_at + ncovered * 8).div_ceil(16) * 16;
        let state = bytes
            .get(state_at..state_at.saturating_add(len))
            .filter(|_| state_at + len <= header_at)
            .ok_or_else(|| format!("shard {shard}'s state out of bounds"))?;
        blocks.push((shard, covered, state));
        at = (state_at + len).div_ceil(16) * 16;
    }
    Ok((header, blocks))
}

impl CoreCheckpoint {
    /// Reads a payload, validating every archive (bytecheck) as it goes.
    pub fn decode(bytes: &[u8]) -> Result<CoreCheckpoint, String> {
        let (header, blocks) = split_payload(bytes)?;
        let header = rkyv::from_bytes::<CheckpointHeader, rkyv::rancor::Error>(header)
            .map_err(|e| format!("header archive validation failed: {e}"))?;
        let mut states = Vec::with_capacity(blocks.len());
        for (shard, covered, bytes) in blocks {
            let state =
                CorrelationState::restore(bytes).map_err(|e| format!("shard {shard}: {e}"))?;
            states.push(ShardSnapshot {
                shard,
                covered,
                state,
            });
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
    /// This core's `applied` vector from its checkpoint (what its lowest
    /// block covers).
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

impl RecoveryStats {
    /// Adds what a journal scan found (torn tails, corrupt stretches, bad
    /// segments) to the counters.
    pub fn count_scan(&self, report: &journal::ScanReport) {
        self.journal_torn_tails
            .fetch_add(report.torn_tails, Ordering::Relaxed);
        self.journal_torn_bytes
            .fetch_add(report.torn_bytes, Ordering::Relaxed);
        self.journal_skipped_bytes
            .fetch_add(report.skipped_bytes, Ordering::Relaxed);
        self.journal_bad_segments
            .fetch_add(report.bad_segments, Ordering::Relaxed);
    }
}

/// The recovery plan for every core, computed on the main thread before
/// the executors start.
pub struct RecoveryPlan {
    pub cores: Vec<Mutex<Option<CoreRecovery>>>,
    /// What was found, one line each, for the log.
    pub findings: Vec<String>,
    /// `covered[dst * cores + src]` of the newest checkpoint of each core
    /// (the lowest any of its blocks covers), kept current as checkpoints
    /// are written; journal retention deletes only what every checkpoint
    /// covers.
    pub covered: Vec<AtomicU64>,
    /// Per shard with a block in a restored checkpoint: the positions (per
    /// source core) its state covers. Shards without a block are covered
    /// up to their owner's `covered` row.
    pub shard_floors: std::collections::HashMap<u16, Vec<u64>>,
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

    /// While replaying: records of `source`'s journal at or below this
    /// sequence, for `shard` (owned by `owner`), are already in the
    /// restored checkpoint.
    pub fn replay_floor(&self, shard: u16, owner: usize, source: usize) -> u64 {
        match self.shard_floors.get(&shard) {
            Some(covered) => covered.get(source).copied().unwrap_or(0),
            None => {
                let cores = self.cores.len();
                self.covered[owner * cores + source].load(Ordering::Relaxed)
            }
        }
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
        let report = journal::repair_tail(&dir)?;
        stats.count_scan(&report);
        for problem in &report.problems {
            findings.push(format!("journal core {core}: {problem}"));
        }
        if report.records > 0 {
            findings.push(format!(
                "journal core {core}: ends at sequence {} ({} newest segments checked; older ones are validated as they are replayed)",
                report.last_seq.unwrap_or(0),
                report.segments,
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
        // Decoding validates every archive (bytecheck), so the payload is
        // checked and read in one pass; the accepted one is kept.
        let mut decoded = None;
        let report = checkpoint::load_latest(&dir, |bytes| {
            let checkpoint = CoreCheckpoint::decode(bytes)?;
            let header = &checkpoint.header;
            if header.format != CHECKPOINT_FORMAT {
                return Err(format!(
                    "checkpoint format {}, this build reads {CHECKPOINT_FORMAT}",
                    header.format
                ));
            }
            if header.cores as usize != cores || header.shards != shards {
                return Err(format!(
                    "taken with {} cores and {} shards, this run has {cores} and {shards}",
                    header.cores, header.shards
                ));
            }
            if header.core as usize != core {
                return Err(format!(
                    "belongs to core {}, found in core {core}'s directory",
                    header.core
                ));
            }
            if header.shard_count as usize != checkpoint.states.len() {
                return Err(format!(
                    "header lists {} shards, the payload holds {}",
                    header.shard_count,
                    checkpoint.states.len()
                ));
            }
            decoded = Some(checkpoint);
            Ok(())
        })?;
        for (path, reason) in &report.rejected {
            stats.checkpoints_rejected.fetch_add(1, Ordering::Relaxed);
            findings.push(format!(
                "checkpoint {} refused: {reason}; falling back",
                path.display()
            ));
        }
        let loaded = report.loaded.zip(decoded).map(|(loaded, checkpoint)| {
            stats.checkpoints_restored.fetch_add(1, Ordering::Relaxed);
            findings.push(format!(
                "checkpoint core {core}: generation {} ({} shards) restored",
                loaded.generation,
                checkpoint.states.len()
            ));
            (loaded.generation, checkpoint)
        });
        checkpoints.push(loaded);
    }

    // A checkpoint cannot cover more than the journal holds (a journal
    // deleted by hand): clamp, so replay still runs.
    let clamp = |covered: &[u64]| -> Vec<u64> {
        (0..cores)
            .map(|src| {
                covered
                    .get(src)
                    .copied()
                    .unwrap_or(0)
                    .min(next_seq[src] - 1)
            })
            .collect()
    };
    let covered: Vec<AtomicU64> = (0..cores * cores).map(|_| AtomicU64::new(0)).collect();
    let mut shard_floors = std::collections::HashMap::new();
    for (dst, checkpoint) in checkpoints.iter().enumerate() {
        if let Some((_, c)) = checkpoint {
            // Blocks cover at least what the header does (positions only
            // grow while a checkpoint is written); the header is the row.
            let mut row = clamp(&c.header.covered);
            for block in &c.states {
                let block_covered = clamp(&block.covered);
                for (low, &seq) in row.iter_mut().zip(&block_covered) {
                    *low = (*low).min(seq);
                }
                shard_floors.insert(block.shard, block_covered);
            }
            for (src, &seq) in row.iter().enumerate() {
                covered[dst * cores + src].store(seq, Ordering::Relaxed);
            }
        }
    }
    let mut per_core = Vec::with_capacity(cores);
    for (core, checkpoint) in checkpoints.into_iter().enumerate() {
        let lowest = (0..cores)
            .map(|dst| covered[dst * cores + core].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let replay_from = if journal_on {
            lowest + 1
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
        shard_floors,
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
            covered: covered.clone(),
            shard_count: 0,
        };
        let (a, b) = (CorrelationState::new(10), CorrelationState::new(20));
        // Shard 3 at the header's positions, shard 9 a little later.
        let later: Vec<u64> = covered.iter().map(|c| c + 1).collect();
        let mut encoder = CheckpointEncoder::default();
        // Each core owns its own shards: 3 and 9, 103 and 109, ...
        let base = core as u16 * 100;
        encoder.push_shard(base + 3, &covered, &a).unwrap();
        encoder.push_shard(base + 9, &later, &b).unwrap();
        encoder.finish(header).unwrap().concat()
    }

    #[test]
    fn a_checkpoint_round_trips_and_garbage_fails_validation() {
        let bytes = checkpoint(0, 2, vec![5, 7]);
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes);
        let back = CoreCheckpoint::decode(&aligned).unwrap();
        assert_eq!(back.header.covered, vec![5, 7]);
        assert_eq!(back.header.shard_count, 2);
        assert_eq!(back.states[1].covered, vec![6, 8]);
        assert_eq!(
            back.states.iter().map(|s| s.shard).collect::<Vec<_>>(),
            vec![3, 9]
        );
        assert_eq!(back.states[1].state, CorrelationState::new(20));
        // A trailer pointing past the end, a payload cut inside a block,
        // and garbage over the header's root are refused (the file's CRC
        // catches flipped bits before this; the framing and bytecheck
        // catch what a CRC cannot).
        let len = aligned.len();
        let mut broken = aligned.clone();
        broken[len - 8..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(CoreCheckpoint::decode(&broken).is_err());
        assert!(CoreCheckpoint::decode(&aligned[16..]).is_err());
        let header_at = u64::from_le_bytes(aligned[len - 8..].try_into().unwrap()) as usize;
        let header_len =
            u32::from_le_bytes(aligned[len - 16..len - 12].try_into().unwrap()) as usize;
        let mut garbage = aligned.clone();
        let end = header_at + header_len;
        garbage[end - 16..end].copy_from_slice(&[0xab; 16]);
        assert!(CoreCheckpoint::decode(&garbage).is_err());
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
        assert_eq!((c0.next_seq, c0.replay_from), (11, 7));
        assert_eq!((c1.next_seq, c1.replay_from), (21, 16));
        assert_eq!(c0.applied, vec![8, 15]);
        assert_eq!(c0.states.len(), 2);
        assert_eq!(plan.covered_by_all(1), 15);
        // Shard 9's block was written after the header's positions: it
        // covers one more of each journal; a shard without a block takes
        // its owner's row.
        assert_eq!(plan.replay_floor(9, 0, 0), 9);
        assert_eq!(plan.replay_floor(3, 0, 0), 8);
        assert_eq!(plan.replay_floor(40, 1, 0), 6);
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
