//! The streaming appliance: one pinned glommio executor per core.
//!
//! Every core runs the same tasks:
//!
//! - UDP ingest: its own SO_REUSEPORT socket, read in batches.
//! - TCP ingest: its own SO_REUSEPORT listener; one task per connection,
//!   RFC 6587 framing.
//! - one receiver task per peer core, feeding routed records to the shards
//!   this core owns;
//! - a tick task advancing correlation windows on the wall clock.
//!
//! A line is parsed and run through stateless rules on the core that read
//! it ([`crate::pipeline`]). Records for stateful detectors go to the shard's
//! owner core in batches over a glommio channel mesh; records for shards the
//! reading core owns itself are processed in place. Channels are bounded:
//! when a peer's channel is full, UDP ingest drops the batch (counted as
//! `route_queue_full`) and TCP ingest waits, which stops reading the socket
//! and so pushes back on the sender.
//!
//! Durability (see [`crate::durable`]): each core appends every accepted
//! line to its journal, writes the journal before a batch's routed records
//! and alerts leave the core, stamps routed batches with the journal
//! position they complete, and checkpoints its shards on the tick task. At
//! start, before ingest opens, each core restores its checkpoint and
//! replays its journal past what the checkpoints cover.
//!
//! Shutdown (SIGINT/SIGTERM): ingest tasks stop reading within one read
//! timeout, frame what they already hold, send their last batches and close
//! their senders; receivers drain until every peer has closed; a last
//! checkpoint is taken, alerts are flushed and the log fsynced before the
//! process exits 0.
//!
//! **Architecture Invariant**: no lock and no atomic read-modify-write sits
//! on the per-event path; cores share only immutable `Arc`s (rules, shard
//! map) and the bounded channels.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_lite::AsyncReadExt;
use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::channels::shared_channel::ConnectedReceiver;
use glommio::{LocalExecutorBuilder, Placement};
use shardwatch_net::framing::Framer;
use shardwatch_net::transport::{self, tcp::TCP_READ_BYTES, udp::UdpBatchReceiver};
use shardwatch_rules::{CorrelationAlert, Event, RuleSet};
use shardwatch_storage::journal::{FsyncPolicy, Journal, JournalOptions};
use shardwatch_storage::quarantine::{QuarantineRecord, QuarantineWriter};

use crate::alert::{render_correlation, render_detection, AlertGate, Raised};
use crate::config::Config;
use crate::durable::{self, RecoveryPlan};
use crate::liverules::LiveRules;
use crate::output::AlertLine;
use crate::pipeline::{EventSink, Pipeline};
use crate::route::{RouteBatch, RouteRecord};
use crate::shard::{ShardStates, WindowClock};
use crate::shardmap::ShardMap;
use crate::sources::{Admission, ConnectionSlots, Refusal, SlotRefusal};
use crate::stats::{add, CoreReport, CoreStats};
use crate::timefmt::now_ns;
use crate::turns::Turns;

/// How long a read waits before checking for shutdown.
const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// How often correlation windows are advanced on the wall clock.
const TICK_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes per correlation group assumed before the first measurement (a
/// brute-force group with one sample measures about 900, indices
/// included; a prior too low lets state overshoot until the first check).
const BYTES_PER_GROUP_PRIOR: u64 = 1024;
/// A due checkpoint waits while the core is behind its input (a read came
/// back full within `BEHIND_RECENT`), for at most this many times the
/// spacing it would otherwise have: the journal keeps every line meanwhile,
/// so a crash replays at most this much more, and an overloaded core
/// spends its time on ingest instead (the overload run's recovery phase
/// lost a third of a throttled core to checkpointing the flood's state).
const CHECKPOINT_POSTPONE_MAX: u32 = 4;
/// How recent a full read must be for the core to count as behind.
const BEHIND_RECENT: Duration = Duration::from_secs(2);
/// Checkpoints are spaced at least this many times their own duration
/// apart (at most a tenth of the core), whatever `checkpoint_interval_ms`.
const CHECKPOINT_DUTY_INVERSE: u32 = 10;

/// The full walk of the state that measures its memory (`account_state`)
/// starts no sooner than this many times its last duration after it, so
/// it takes at most 1/20 of the core however large the state. Without
/// it, a state near its bound was walked every tick: the overload run
/// found 36% of a throttled core there after a flood, and the node could
/// not keep up with half its normal rate. Between walks the per-shard
/// group cap (from the bytes per group last measured) holds the bound.
const STATE_WALK_DUTY_INVERSE: u32 = 20;
/// The walk made only to publish the state's memory (the state far from
/// its bound) is spaced at least this many times its last duration apart:
/// at most 1% of the core. A state of ~500 k groups took ~20 ms to walk
/// (2% of a core at 300 k lines/s, in 40 slices each second that held the
/// sockets unread for up to [`BACKGROUND_SLICE`]); it is then walked every
/// 2 s instead of every second. A small state is still walked each second.
const STATE_WALK_IDLE_DUTY_INVERSE: u32 = 100;
/// A checkpoint serializes shards, and the state walk measures them, for
/// at most this long before pausing ([`background_pause`]: one shard is the
/// smallest step), which lets ingest read its sockets.
const BACKGROUND_SLICE: Duration = Duration::from_micros(500);
/// Checkpoints and the state walk run in their own task queue with these
/// shares against the default queue's 1000 (ingest, ticks, peers): when
/// both have work the background gets about a tenth of the core, and all
/// of what ingest leaves. In the default queue their slices did not help
/// ingest: a task that yields stays runnable, so glommio kept running the
/// queue (the yielding task and the tasks already woken) until its 100 ms
/// preemption timer, without looking at the sockets in between.
const BACKGROUND_SHARES: usize = 100;
/// The latency the background queue asks of glommio. Its preemption timer
/// is the smallest latency of the queues active when it was last
/// re-evaluated, which glommio does when a queue goes idle, not when one
/// becomes active: alone this did not stop a state walk from holding the
/// sockets for tens of ms; [`background_pause`] does.
const BACKGROUND_PREEMPT: Duration = Duration::from_millis(1);
/// How long a background slice sleeps before the next one (see
/// [`background_pause`]): short, as the background runs only when ingest
/// has nothing to read, but a real timer, so the executor polls I/O.
const BACKGROUND_PAUSE: Duration = Duration::from_micros(20);
/// Most datagrams a busy UDP socket reads between flushes.
const UDP_FLUSH_DATAGRAMS: usize = 512;
/// Fewest lines a stream connection processes between two reads cut for
/// an alert (see [`serve_connection`]). A cut costs a journal commit and
/// a wake-up of the alert writer, about 30 µs of CPU on the dev VM; with
/// no bound, a rule that fired on one line in eleven cut every eleventh
/// line and took ~30% of the lines/s, with this bound ~12% (BENCHMARKS.md,
/// 2026-12-06 06:36–06:44 UTC). An alert raised sooner after the last cut
/// waits for this many lines (~0.4 ms flat out there) or for the end of
/// its read, whichever comes first; a rare alert still cuts at once.
const ALERT_CUT_LINES_MIN: u32 = 256;
/// Serialized checkpoint bytes handed to the file at a time.
const CHECKPOINT_WRITE_BYTES: usize = 4 << 20;
/// Longest a core's executor sleeps without looking at what other threads
/// handed it (see [`heartbeat`]).
const HEARTBEAT: Duration = Duration::from_millis(50);
/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_MAX: Duration = Duration::from_secs(10);
/// How long a connection keeps being read after a stop signal while
/// data still arrives (below `DRAIN_CONNECTIONS_MAX`, which the accept
/// loop waits for all connections).
const CONNECTION_DRAIN_MAX: Duration = Duration::from_secs(4);
/// Longest a stopping core spends accepting the connections still in its
/// listener's queue (each is accepted without waiting; a sender that keeps
/// connecting could otherwise hold the loop).
const BACKLOG_DRAIN_MAX: Duration = Duration::from_secs(1);
/// How long shutdown waits for open TCP connections to finish their frames.
const DRAIN_CONNECTIONS_MAX: Duration = Duration::from_secs(5);

/// What every core shares: immutable after start.
pub struct Shared {
    pub config: Config,
    pub live: Arc<LiveRules>,
    pub map: Arc<ShardMap>,
    pub quarantine: Arc<QuarantineWriter>,
    pub alerts: flume::Sender<AlertLine>,
    pub stop: Arc<AtomicBool>,
    /// One per core, written by that core only, read by the control thread.
    pub stats: Vec<Arc<CoreStats>>,
    /// Each core's schema registry, copied when the API asks.
    pub schemas: Vec<Arc<crate::schema::SchemaBoard>>,
    /// Where each core starts from (checkpoint, journal position).
    pub recovery: Arc<RecoveryPlan>,
    /// The TLS listener's configuration, when TLS ingest is on.
    pub tls: Option<Arc<shardwatch_net::tls::rustls::ServerConfig>>,
    /// Stream connections (TCP, RELP, TLS) open on all cores, held to
    /// `limits.connections_max` and `connections_per_source_max`.
    pub connections: ConnectionSlots,
    /// Routed batches' buffers, handed back to the core that allocated
    /// them once observed.
    pub route_buffers: crate::route::BufferHomes,
}

/// One core's sockets, handed to its executor.
pub struct CoreSockets {
    pub udp: Option<std::net::UdpSocket>,
    pub tcp: Option<std::net::TcpListener>,
    pub relp: Option<std::net::TcpListener>,
    pub tls: Option<std::net::TcpListener>,
}

/// Which protocol a listener's connections speak.
#[derive(Clone)]
enum Listener {
    /// Syslog over TCP (RFC 6587 framing).
    Tcp,
    /// RELP: each message acknowledged once journaled.
    Relp,
    /// Syslog over TLS (RFC 5425): a handshake, then RFC 6587 framing.
    Tls(shardwatch_net::tls::TlsAcceptor),
}

impl Listener {
    fn name(&self) -> &'static str {
        match self {
            Listener::Tcp => "tcp",
            Listener::Relp => "relp",
            Listener::Tls(_) => "tls",
        }
    }
}

/// The CPU each of `cores` cores is pinned to (`None`: unpinned, when no
/// CPU list is known): core `i` runs on the `i`-th CPU (wrapping) of those
/// the process may run on (its affinity mask, so `taskset` and cgroup
/// cpusets are honoured), in ascending order, so the same command pins
/// the same way every time; else of the online CPUs, sorted (glommio lists
/// them from a hash set, in an order that changes from run to run).
/// Computed once at start: [`run_cores`] pins by it and the listening line
/// reports it.
pub fn core_cpus(cores: usize) -> Vec<Option<usize>> {
    let cpus = allowed_cpus();
    (0..cores)
        .map(|core| (!cpus.is_empty()).then(|| cpus[core % cpus.len()]))
        .collect()
}

/// The CPUs the calling thread may run on, ascending (see [`core_cpus`]).
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call writes at
    // most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    let mut cpus: Vec<usize> = if ok == 0 {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE, the set's size.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        cpus = glommio::CpuSet::online()
            .map(|set| set.iter().map(|loc| loc.cpu).collect())
            .unwrap_or_default();
        cpus.sort_unstable();
        cpus.dedup();
    }
    cpus
}

/// Pins the calling thread to the CPUs the process may run on that no
/// core in `cores` (from [`core_cpus`]) is pinned to, when there are any,
/// and returns them (empty: every CPU has a core, or the cores are not
/// pinned; then nothing changes). A thread starts with its creator's CPUs,
/// so every thread started from here on shares them: the alert writer,
/// the control plane, the rule watcher, the outputs, and each core's
/// blocking pool (journal syncs, checkpoint writes; glommio starts it
/// before it pins the core). They then neither wait for a busy core's
/// CPU nor take it from the core: an alert writer woken beside a core
/// that is still working (or spinning, `idle_spin_us`) waited for it.
/// The cores pin themselves to their own CPUs ([`run_cores`]).
pub fn pin_helpers_off_cores(cores: &[Option<usize>]) -> Vec<usize> {
    if cores.iter().any(Option::is_none) {
        return Vec::new();
    }
    let helpers: Vec<usize> = allowed_cpus()
        .into_iter()
        .filter(|cpu| !cores.contains(&Some(*cpu)))
        .collect();
    if helpers.is_empty() {
        return helpers;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; every CPU set in it
    // is below CPU_SETSIZE (`allowed_cpus` lists no more), and the call
    // reads at most size_of::<cpu_set_t>() bytes.
    let pinned = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in &helpers {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if pinned != 0 {
        eprintln!(
            "shardwatch: cannot keep helper threads off the cores' CPUs: {}",
            std::io::Error::last_os_error()
        );
        return Vec::new();
    }
    helpers
}

/// Starts one executor per core and waits for them all to stop.
/// Core `i` is pinned to `cpus[i]` (from [`core_cpus`]).
pub fn run_cores(
    shared: Arc<Shared>,
    sockets: Vec<CoreSockets>,
    cpus: &[Option<usize>],
) -> anyhow::Result<Vec<CoreReport>> {
    let cores = sockets.len();
    assert_eq!(cores as u32, shared.map.cores());
    assert_eq!(cpus.len(), cores);
    let mesh = MeshBuilder::<RouteBatch, _>::full(cores, shared.config.engine.route_queue_batches);
    let mut handles = Vec::with_capacity(cores);
    for (index, core_sockets) in sockets.into_iter().enumerate() {
        let placement = cpus[index].map_or(Placement::Unbound, Placement::Fixed);
        let shared = shared.clone();
        let mesh = mesh.clone();
        let mut builder = LocalExecutorBuilder::new(placement).name(&format!("sw-core-{index}"));
        let spin = shared.config.engine.idle_spin_us;
        if spin > 0 {
            builder = builder.spin_before_park(std::time::Duration::from_micros(spin));
        }
        let handle = builder
            // The blocking pool writes checkpoint files and syncs the
            // journal: left unpinned, so neither takes the core's own CPU.
            // Two threads, taking jobs from one queue, so a journal sync
            // (which RELP answers wait for) never waits behind a
            // checkpoint's chunk or its final fsync of hundreds of MB.
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(2))
            .spawn(move || async move { core_main(index, shared, core_sockets, mesh).await })
            .map_err(|e| anyhow::anyhow!("cannot start the executor for core {index}: {e}"))?;
        handles.push(handle);
    }
    let mut reports = Vec::with_capacity(cores);
    for (index, handle) in handles.into_iter().enumerate() {
        let report = handle
            .join()
            .map_err(|e| anyhow::anyhow!("core {index} failed: {e}"))??;
        reports.push(report);
    }
    Ok(reports)
}

/// One core: everything it owns lives here, behind `Rc`, never shared.
struct Core {
    index: usize,
    shared: Arc<Shared>,
    senders: Senders<RouteBatch>,
    pipeline: RefCell<Pipeline>,
    /// This core's view of the rules, swapped at batch boundaries.
    rules: RefCell<Arc<RuleSet>>,
    rules_generation: Cell<u64>,
    shards: RefCell<ShardStates>,
    /// The batch being filled for each peer core.
    outgoing: RefCell<Vec<RouteBatch>>,
    /// Full batches waiting to be sent, with their destination.
    ready: RefCell<Vec<(usize, RouteBatch)>>,
    /// Per-source allow/deny lists and rate limits.
    admission: RefCell<Admission>,
    /// Suppression of repeat alerts raised on this core.
    gate: RefCell<AlertGate>,
    /// Alerts a record completed; reused so observing allocates nothing.
    fired: RefCell<Vec<CorrelationAlert>>,
    /// Rendered alerts waiting for the writer channel, each with the
    /// journal sequence that must be written before it may leave.
    pending_alerts: RefCell<Vec<(u64, AlertLine)>>,
    /// Alert lines the writer is done with, handed back so that this
    /// core frees what it allocated (`AlertLine::home`); emptied at each
    /// flush of alerts.
    spent: (flume::Sender<AlertLine>, flume::Receiver<AlertLine>),
    stats: Arc<CoreStats>,
    /// Whether the last quarantine write failed (logged once per run).
    quarantine_failing: Cell<bool>,
    tcp_open: Cell<u64>,
    /// The last connection this core accepted was refused by a
    /// connection bound (`limits.connections_max`,
    /// `connections_per_source_max`; logged once per run of refusals).
    refusing_connections: Cell<bool>,
    /// This core's journal; `None` when `storage.journal` is off.
    journal: Option<Journal>,
    /// The journal sequence of the line being processed (0 when the work
    /// at hand does not come from this core's journal).
    seq: Cell<u64>,
    /// While the journal is replayed at start (records the restored
    /// checkpoints hold are skipped: `RecoveryPlan::replay_floor`).
    replaying: Cell<bool>,
    /// Per source core, the highest batch stamp applied here; a checkpoint
    /// records it as what it covers.
    applied: RefCell<Vec<u64>>,
    /// Per peer, how many batches were taken for sending and are not yet
    /// accepted by the channel (no bare stamp may pass them).
    in_flight: RefCell<Vec<u32>>,
    /// Flushes send in the order they took their batches (see
    /// [`crate::turns`]), so a peer applies this core's records in
    /// sequence order and a batch's stamp is exact.
    send_turns: Turns,
    /// Signalled once per peer whose journal replay has all reached this
    /// core (the peer's `replay_done` batch): live ingest starts only
    /// after every peer's, so no live line is applied before an older
    /// replayed one of the same group.
    peers_replayed: glommio::sync::Semaphore,
    /// Per peer, the last stamp sent.
    stamp_sent: RefCell<Vec<u64>>,
    checkpoint_generation: Cell<u64>,
    /// Each shard's checkpoint block size last time (buffer sizes).
    checkpoint_size_hints: RefCell<HashMap<u16, usize>>,
    /// Estimated bytes per correlation group, as last measured (a prior
    /// until then); turns `limits.state_memory_bytes_max` into a group cap.
    bytes_per_group: Cell<u64>,
    /// When a read last came back full (a UDP socket that did not empty
    /// within `UDP_FLUSH_DATAGRAMS`, a TCP read that filled its buffer):
    /// more was waiting, so the core is behind. Postpones checkpoints.
    behind_at: Cell<Option<std::time::Instant>>,
    /// The task queue of checkpoints and the state walk (see
    /// [`BACKGROUND_SHARES`]).
    background: glommio::TaskQueueHandle,
}

/// What to do when a peer's channel is full.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WhenFull {
    /// Wait for room (TCP: the sender is pushed back).
    Wait,
    /// Drop the batch and count it (UDP: there is no one to push back on).
    Drop,
}

async fn core_main(
    index: usize,
    shared: Arc<Shared>,
    sockets: CoreSockets,
    mesh: MeshBuilder<RouteBatch, glommio::channels::channel_mesh::Full>,
) -> anyhow::Result<CoreReport> {
    // SAFETY: gettid only returns the calling thread's id.
    let tid = unsafe { libc::gettid() };
    shared.stats[index]
        .thread_id
        .store(u64::try_from(tid).unwrap_or(0), Ordering::Relaxed);
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|e| anyhow::anyhow!("core {index} could not join the channel mesh: {e}"))?;
    let cores = shared.map.cores() as usize;
    let recovery = shared.recovery.cores[index]
        .lock()
        .ok()
        .and_then(|mut r| r.take())
        .unwrap_or_default();
    let journal = if shared.config.storage.journal {
        let storage = &shared.config.storage;
        let options = JournalOptions {
            segment_bytes: storage.journal_segment_bytes,
            fsync: match storage.journal_fsync_ms {
                0 => FsyncPolicy::EveryCommit,
                ms => FsyncPolicy::Interval(Duration::from_millis(ms)),
            },
            direct_io: storage.journal_direct_io,
            drop_synced_pages: storage.journal_drop_synced_pages,
            preallocate: storage.journal_preallocate,
        };
        Some(
            Journal::open(
                &durable::journal_dir(&storage.data_dir, index),
                index as u32,
                recovery.next_seq.max(1),
                options,
            )
            .await
            .with_context(|| format!("core {index}: cannot open the journal"))?,
        )
    } else {
        None
    };
    let (generation, rules) = shared.live.snapshot();
    let mut shard_states = ShardStates::new(
        shared.config.engine.groups_per_shard_max,
        shared.config.engine.groups_per_rule_per_shard_max,
        WindowClock::Node,
    );
    shard_states.restore(recovery.states);
    let applied = if recovery.applied.len() == cores {
        recovery.applied
    } else {
        vec![0; cores]
    };
    let core = Rc::new(Core {
        index,
        rules: RefCell::new(rules.clone()),
        rules_generation: Cell::new(generation),
        pipeline: RefCell::new(Pipeline::new(
            rules,
            shared.map.clone(),
            shared.config.pipeline_options(true),
        )),
        shards: RefCell::new(shard_states),
        outgoing: RefCell::new((0..cores).map(|_| RouteBatch::default()).collect()),
        ready: RefCell::new(Vec::new()),
        pending_alerts: RefCell::new(Vec::new()),
        spent: flume::bounded(shared.config.output.alert_queue_max.max(1)),
        fired: RefCell::new(Vec::new()),
        gate: RefCell::new(AlertGate::new(shared.config.rules.suppress_window_ms)),
        admission: RefCell::new(Admission::new(
            &shared.config.limits.allow,
            &shared.config.limits.deny,
            shared.config.limits.source_rate_eps,
            shared.config.limits.source_burst,
            shared.config.limits.sources_max,
        )?),
        stats: shared.stats[index].clone(),
        quarantine_failing: Cell::new(false),
        tcp_open: Cell::new(0),
        refusing_connections: Cell::new(false),
        journal,
        seq: Cell::new(0),
        replaying: Cell::new(false),
        stamp_sent: RefCell::new(applied.clone()),
        applied: RefCell::new(applied),
        in_flight: RefCell::new(vec![0; cores]),
        send_turns: Turns::new(),
        peers_replayed: glommio::sync::Semaphore::new(0),
        checkpoint_generation: Cell::new(recovery.generation),
        checkpoint_size_hints: RefCell::new(HashMap::new()),
        bytes_per_group: Cell::new(BYTES_PER_GROUP_PRIOR),
        behind_at: Cell::new(None),
        background: glommio::executor().create_task_queue(
            glommio::Shares::Static(BACKGROUND_SHARES),
            glommio::Latency::Matters(BACKGROUND_PREEMPT),
            "background",
        ),
        senders,
        shared,
    });
    // Under a memory bound the group cap holds from the first event, with
    // a prior for the bytes per group until the first measurement.
    let budget = core.shared.config.limits.state_memory_bytes_max / cores as u64;
    if budget > 0 {
        let cap = core.groups_cap_for(budget);
        core.shards.borrow_mut().set_groups_cap(cap);
    }

    // From here to the end (replay included); dropped with the executor
    // when this function returns.
    glommio::spawn_local(heartbeat(core.stats.clone())).detach();
    let mut peer_tasks = Vec::new();
    for (_peer, rx) in receivers.streams() {
        peer_tasks.push(glommio::spawn_local(serve_peer(core.clone(), rx)));
    }
    if core.journal.is_some() {
        let started = std::time::Instant::now();
        core.replay_journal(recovery.replay_from)
            .await
            .with_context(|| format!("core {index}: journal replay failed"))?;
        let replay_took = started.elapsed();
        // Live lines wait for every core's replay: a peer still replaying
        // holds older records of groups this core owns, and a live line
        // applied before them would count in another window than an
        // uninterrupted run counts it in.
        core.send_replay_done().await;
        core.wait_for_peers_replayed(cores).await;
        let took = started.elapsed();
        core.stats
            .recovery_ms
            .store(took.as_millis() as u64, Ordering::Relaxed);
        let replayed = core.stats.replayed_lines.load(Ordering::Relaxed);
        let waited = took - replay_took;
        if replayed > 0 || recovery.generation > 0 || waited.as_millis() > 0 {
            let plan_ms = core.shared.recovery.stats.plan_ms.load(Ordering::Relaxed);
            eprintln!(
                "shardwatch: core {index}: recovered in {} ms ({plan_ms} ms validating journals and loading checkpoints, {} ms replaying, then {} ms waiting for the other cores' replays): checkpoint generation {}, replayed {replayed} journal lines from sequence {} ({} records already in checkpoints skipped)",
                plan_ms + took.as_millis() as u64,
                replay_took.as_millis(),
                waited.as_millis(),
                recovery.generation,
                recovery.replay_from,
                core.stats.replay_skipped.load(Ordering::Relaxed),
            );
        }
    }
    // From the end of recovery to the start of shutdown: the stalls of
    // serving, not those of replaying or draining.
    // The probe holds the stop flag, not the core: a detached task that
    // held the core would keep it (and its sender of alerts, which the
    // alert writer waits to see dropped) alive past the executor's end.
    let probe_every = Duration::from_millis(core.shared.config.engine.stall_probe_ms);
    if !probe_every.is_zero() {
        let stop = core.shared.stop.clone();
        glommio::spawn_local(stall_probe(core.stats.clone(), probe_every, move || {
            !stop.load(Ordering::Relaxed)
        }))
        .detach();
    }
    let tick = glommio::spawn_local(tick_loop(core.clone()));
    // Interval fsyncs run on their own task, so no ingest task waits for
    // one.
    let syncer = core
        .journal
        .as_ref()
        .and_then(|j| j.sync_interval())
        .map(|every| glommio::spawn_local(journal_sync_loop(core.clone(), every)));
    let udp = sockets
        .udp
        .map(|socket| glommio::spawn_local(udp_loop(core.clone(), socket)));
    let mut listeners = Vec::new();
    if let Some(listener) = sockets.tcp {
        listeners.push((listener, Listener::Tcp));
    }
    if let Some(listener) = sockets.relp {
        listeners.push((listener, Listener::Relp));
    }
    if let (Some(listener), Some(config)) = (sockets.tls, core.shared.tls.clone()) {
        listeners.push((
            listener,
            Listener::Tls(shardwatch_net::tls::acceptor(config)),
        ));
    }
    let accept_tasks: Vec<_> = listeners
        .into_iter()
        .map(|(listener, kind)| {
            let name = kind.name();
            (
                name,
                glommio::spawn_local(accept_loop(core.clone(), listener, kind)),
            )
        })
        .collect();
    if let Some(task) = udp {
        task.await
            .with_context(|| format!("core {index}: UDP ingest failed"))?;
    }
    for (name, task) in accept_tasks {
        task.await
            .with_context(|| format!("core {index}: {name} ingest failed"))?;
    }
    // Ingest has stopped: send what is left, then tell peers we are done.
    core.flush(WhenFull::Wait).await;
    core.senders.close();
    for task in peer_tasks {
        task.await;
    }
    tick.await;
    if let Some(task) = syncer {
        task.await;
    }
    // Every peer has closed: this checkpoint covers everything, so a
    // restart replays nothing.
    if let Err(err) = core.checkpoint().await {
        eprintln!("shardwatch: core {index}: last checkpoint failed: {err:#}");
    }
    core.flush_alerts().await;
    if let Some(journal) = &core.journal {
        if let Err(err) = journal.close().await {
            eprintln!("shardwatch: core {index}: {err}");
        }
    }
    core.stats
        .groups_evicted
        .store(core.shards.borrow().evicted_total(), Ordering::Relaxed);
    Ok(core.stats.report(index))
}

impl Core {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Picks up a reloaded rule set. Called at batch boundaries only, so a
    /// batch is always evaluated by one set.
    fn refresh_rules(&self) {
        let generation = self.shared.live.generation();
        if generation == self.rules_generation.get() {
            return;
        }
        let (generation, rules) = self.shared.live.snapshot();
        self.pipeline.borrow_mut().set_rules(rules.clone());
        *self.rules.borrow_mut() = rules;
        self.rules_generation.set(generation);
    }

    /// Records a frame cut at `ingest.frame_bytes_max` in quarantine (its
    /// first bytes; the cut line is still processed), so an oversize
    /// message is visible with its source, not only counted.
    fn quarantine_oversize(&self, head: &[u8], peer: SocketAddr, transport: &'static str) {
        let mut sink = CoreSink {
            core: self,
            peer,
            transport,
        };
        sink.quarantine("oversize", Some(head.len()), head);
    }

    /// Whether a datagram from `ip` is refused (lists or rate).
    fn refuse_datagram(&self, ip: std::net::IpAddr, now_ns: i64) -> Option<Refusal> {
        let mut admission = self.admission.borrow_mut();
        if !admission.permitted(ip) {
            return Some(Refusal::Denied);
        }
        if admission.limits_rate() && admission.take(ip, 1, now_ns) == 0 {
            return Some(Refusal::RateLimited);
        }
        None
    }

    /// Processes one frame read from `peer`. Returns false when the line
    /// could not be journaled (the journal's unwritten tail is full); it
    /// was still processed.
    fn process_line(
        &self,
        raw: &[u8],
        peer: SocketAddr,
        transport: &'static str,
        received_ns: i64,
    ) -> bool {
        let mut journaled = true;
        if let Some(journal) = &self.journal {
            if !self.replaying.get() {
                match journal.append(
                    received_ns,
                    durable::transport_code(transport),
                    Some(peer),
                    raw,
                ) {
                    Some(seq) => {
                        add(&self.stats.journal_lines, 1);
                        self.seq.set(seq);
                    }
                    None => {
                        // The journal cannot keep up (or cannot write):
                        // the line is still detected on, not journaled.
                        self.stats.drop_events("journal_backlog", 1);
                        self.seq.set(journal.last_seq());
                        journaled = false;
                    }
                }
            }
        }
        let mut sink = CoreSink {
            core: self,
            peer,
            transport,
        };
        if self
            .pipeline
            .borrow_mut()
            .process(raw, received_ns, &mut sink)
            .is_some()
        {
            add(&self.stats.events_parsed, 1);
        }
        journaled
    }

    /// Feeds one record to a shard this core owns.
    fn observe_local(&self, record: &RouteRecord<'_>) {
        debug_assert_eq!(usize::from(self.shared.map.owner(record.shard)), self.index);
        add(&self.stats.shard_records, 1);
        self.stats.shard_seen(record.shard);
        let rules = self.rules.borrow();
        let mut fired = self.fired.borrow_mut();
        let known = self.shards.borrow_mut().observe(&rules, record, &mut fired);
        if !known {
            self.stats.drop_events("rule_removed_in_flight", 1);
        }
        for alert in fired.drain(..) {
            self.emit_correlation(&rules, &alert, record.shard, record.received_ns);
        }
    }

    /// Passes a correlation alert through suppression and, unless folded,
    /// renders and queues it.
    fn emit_correlation(
        &self,
        rules: &RuleSet,
        alert: &CorrelationAlert,
        shard: u16,
        received_ns: i64,
    ) {
        let rule_id = &rules.correlation(alert.correlation as usize).id;
        if !self.gate.borrow_mut().admit(
            rule_id,
            &alert.group_key,
            &alert.id,
            alert.first_seen_ns,
            received_ns,
        ) {
            add(&self.stats.alerts_suppressed, 1);
            return;
        }
        let raised = Raised {
            core: self.index,
            shard: Some(shard),
            detected_ns: now_ns(),
            received_ns,
        };
        let line = render_correlation(rules, alert, &raised);
        self.raise(line, &raised);
    }

    /// Queues a rendered alert for the writer and records its latency.
    fn raise(&self, line: AlertLine, raised: &Raised) {
        add(&self.stats.alerts, 1);
        let latency_ns = (raised.detected_ns - raised.received_ns).max(0);
        self.stats
            .detection_latency
            .record_us(latency_ns as u64 / 1_000);
        self.pending_alerts
            .borrow_mut()
            .push((self.seq.get(), line));
    }

    /// Records receive-to-detected lag for a batch read at `received_ns`.
    fn batch_done(&self, received_ns: i64) {
        let lag_ns = (now_ns() - received_ns).max(0);
        self.stats.processing_lag.record_us(lag_ns as u64 / 1_000);
    }

    /// The journal position of this core: the last line appended, or the
    /// line being replayed.
    fn position(&self) -> u64 {
        match &self.journal {
            Some(journal) if !self.replaying.get() => journal.last_seq(),
            Some(_) => self.seq.get(),
            None => 0,
        }
    }

    /// The journal sequence up to which lines are written (everything,
    /// without a journal or while replaying).
    fn written_position(&self) -> u64 {
        match &self.journal {
            Some(journal) if !self.replaying.get() => journal.written_seq(),
            _ => u64::MAX,
        }
    }

    /// Writes the journal's pending lines (group commit), syncing under
    /// the policy; errors are counted and logged, detection goes on, and
    /// while the journal fails, alerts no longer wait for their lines to
    /// be written (see [`Core::flush_alerts`]).
    async fn commit_journal(&self, force_sync: bool) {
        let Some(journal) = &self.journal else { return };
        if self.replaying.get() {
            return;
        }
        let result = if force_sync {
            journal.sync().await
        } else {
            journal.commit().await
        };
        self.stats
            .journal_rolls_unprepared
            .store(journal.rolls_unprepared(), Ordering::Relaxed);
        // The journal's own verdict, not this call's: a sync that began
        // before a failed write can end after it.
        let failing = journal.failing();
        let was_failing = self
            .stats
            .journal_failing
            .swap(u64::from(failing), Ordering::Relaxed)
            != 0;
        match result {
            Ok(info) => {
                if was_failing && !failing {
                    eprintln!(
                        "shardwatch: core {}: the journal is written again",
                        self.index
                    );
                }
                if info.bytes_written > 0 {
                    add(&self.stats.journal_commits, 1);
                    add(&self.stats.journal_bytes, info.bytes_written);
                }
                if let Some(took) = info.synced {
                    self.stats.journal_fsync.record_us(took.as_micros() as u64);
                }
            }
            Err(err) => {
                // The first failure of a run is logged, and the recovery
                // above; each failure is counted. (A failed call leaves the
                // journal failing.)
                if !was_failing {
                    eprintln!(
                        "shardwatch: core {}: journal write failed (kept and retried; alerts no longer wait for it): {err}",
                        self.index
                    );
                }
                add(&self.stats.journal_errors, 1);
            }
        }
    }

    /// Whether alerts wait for the next [`Core::flush`].
    fn alerts_pending(&self) -> bool {
        !self.pending_alerts.borrow().is_empty()
    }

    /// How many alerts wait for the next [`Core::flush`] (some may wait
    /// longer: for lines another core has not journaled yet).
    fn alerts_pending_count(&self) -> usize {
        self.pending_alerts.borrow().len()
    }

    /// Sends every non-empty batch and pending alert. The lines they came
    /// from are written to the journal first.
    async fn flush(&self, when_full: WhenFull) {
        let mut batches = std::mem::take(&mut *self.ready.borrow_mut());
        for (peer, batch) in self.outgoing.borrow_mut().iter_mut().enumerate() {
            if !batch.is_empty() {
                batches.push((peer, std::mem::take(batch)));
            }
        }
        let upto = self.position();
        for (peer, _) in &batches {
            self.in_flight.borrow_mut()[*peer] += 1;
        }
        // Taken with the batches, before any wait: turns follow sequence
        // order.
        let turn = (!batches.is_empty()).then(|| self.send_turns.take());
        self.commit_journal(false).await;
        self.flush_alerts().await;
        // A dropping flush behind one that waits for room in a peer's
        // channel drops its batches for that peer at once (they would find
        // no room either) rather than stop reading its socket.
        let mut full_peer = None;
        if let Some(turn) = &turn {
            if when_full == WhenFull::Drop {
                full_peer = turn.wait_unless_stalled().await;
            }
            if full_peer.is_none() || batches.iter().any(|(p, _)| Some(*p) != full_peer) {
                turn.wait().await;
            }
        }
        for (peer, mut batch) in batches {
            self.stamp(&mut batch, upto);
            let records = u64::from(batch.records());
            add(&self.stats.batches_sent[peer], 1);
            let stamp = batch.stamp;
            let sent = match when_full {
                _ if full_peer == Some(peer) => false,
                WhenFull::Wait => match self.senders.try_send_to(peer, batch) {
                    Ok(()) => true,
                    Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                        batch,
                    ))) => {
                        // Waiting for room: flushes behind that may drop
                        // need not wait for this one.
                        if let Some(turn) = &turn {
                            turn.stall(Some(peer));
                        }
                        let sent = self.senders.send_to(peer, batch).await.is_ok();
                        if let Some(turn) = &turn {
                            turn.stall(None);
                        }
                        sent
                    }
                    Err(_) => false,
                },
                WhenFull::Drop => self.senders.try_send_to(peer, batch).is_ok(),
            };
            self.landed(peer, stamp);
            if sent {
                add(&self.stats.routed_remote, records);
            } else if when_full == WhenFull::Drop {
                self.stats.drop_events("route_queue_full", records);
            } else {
                self.stats.drop_events("route_channel_closed", records);
            }
        }
    }

    /// Sets a batch's source and stamp: `upto`, the position when its
    /// flush took it. Every record for the peer at or below it is in this
    /// batch or one taken before, and those were sent first (the flush's
    /// turn), so once the peer has applied this batch its state holds
    /// exactly the records up to the stamp. (A stamp lowered below the
    /// batches still on their way instead left the peer holding records
    /// above what its checkpoint said it covered, and recovery applied
    /// them twice.)
    fn stamp(&self, batch: &mut RouteBatch, upto: u64) {
        batch.source = self.index as u16;
        batch.stamp = upto;
    }

    /// A batch for `peer` left the core (or was dropped).
    fn landed(&self, peer: usize, stamp: u64) {
        let mut in_flight = self.in_flight.borrow_mut();
        in_flight[peer] = in_flight[peer].saturating_sub(1);
        let mut sent = self.stamp_sent.borrow_mut();
        sent[peer] = sent[peer].max(stamp);
    }

    /// Sends the pending alerts whose lines are written to the journal.
    async fn flush_alerts(&self) {
        // Frees, on this core's thread, the lines the writer handed back.
        drop(self.spent.1.drain());
        let written = self.written_position();
        // While the journal cannot write, waiting for it would hold every
        // alert back until the disk is fixed: they go out now, counted.
        // (Should the lines be written later and the node crash, replay
        // raises them again with the same ids, which the alert writer
        // drops.)
        let failing = self.stats.journal_failing.load(Ordering::Relaxed) != 0;
        let release = if failing { u64::MAX } else { written };
        let lines: Vec<AlertLine> = {
            let mut pending = self.pending_alerts.borrow_mut();
            if failing {
                let early = pending.iter().filter(|(dep, _)| *dep > written).count();
                add(&self.stats.alerts_unjournaled, early as u64);
            }
            if pending.iter().all(|(dep, _)| *dep <= release) {
                pending.drain(..).map(|(_, line)| line).collect()
            } else {
                let (ready, waiting): (Vec<_>, Vec<_>) =
                    pending.drain(..).partition(|(dep, _)| *dep <= release);
                *pending = waiting;
                ready.into_iter().map(|(_, line)| line).collect()
            }
        };
        for mut line in lines {
            line.home = Some(self.spent.0.clone());
            if self.shared.alerts.send_async(line).await.is_err() {
                self.stats.drop_events("alert_writer_gone", 1);
            }
        }
    }

    /// Publishes the state memory by detector kind and keeps it under
    /// `budget` bytes (0: no bound): the bytes per group seen now turn the
    /// budget into a cap on groups per shard (at most the configured one),
    /// so from here on every new group past it evicts the stalest one at
    /// once instead of waiting for the next check. Returns the bytes held.
    ///
    /// The walk goes shard by shard and yields every `BACKGROUND_SLICE`
    /// (a full walk of a large state took tens of milliseconds, all of it
    /// a stall for ingest on this core); shards created meanwhile count
    /// from the next walk. Also returns the time spent walking, without
    /// the turns given to other tasks.
    async fn account_state(&self, budget: u64) -> (u64, Duration) {
        let kinds = crate::stats::STATE_KINDS.len();
        let (mut bytes, mut groups) = (vec![0u64; kinds], vec![0u64; kinds]);
        let rules = self.rules.borrow().clone();
        let ids = self.shards.borrow().shard_ids();
        let mut busy = Duration::ZERO;
        let mut slice = std::time::Instant::now();
        for shard in ids {
            self.shards
                .borrow()
                .memory_of(shard, &rules, &mut bytes, &mut groups);
            if slice.elapsed() >= BACKGROUND_SLICE {
                busy += slice.elapsed();
                background_pause().await;
                slice = std::time::Instant::now();
            }
        }
        busy += slice.elapsed();
        let total: u64 = bytes.iter().sum();
        let group_total: u64 = groups.iter().sum();
        if let Some(per_group) = total.checked_div(group_total) {
            self.bytes_per_group.set(per_group.max(1));
        }
        if budget > 0 {
            let cap = self.groups_cap_for(budget);
            let mut shards = self.shards.borrow_mut();
            if cap != shards.groups_cap() {
                let evicted = shards.set_groups_cap(cap);
                if evicted > 0 {
                    add(&self.stats.state_evictions, 1);
                    add(&self.stats.state_groups_evicted, evicted);
                }
            }
        }
        for kind in 0..kinds {
            self.stats.state_bytes[kind].store(bytes[kind], Ordering::Relaxed);
            self.stats.state_groups[kind].store(groups[kind], Ordering::Relaxed);
        }
        (total, busy)
    }

    /// Closes the correlation windows that ended before `now_ns` and drops
    /// the groups that can no longer change, emitting the alerts of
    /// closing conditions: shard by shard in [`BACKGROUND_SLICE`] slices
    /// (call it in the background queue). After a flood this is a wave of
    /// groups expiring (the recovery profile of overload run 27 had it at
    /// 20% of the core); in one synchronous pass it held ingest off for as
    /// long, in slices ingest reads its sockets in between and goes first.
    async fn expire_windows(&self, now_ns: i64) {
        let rules = self.rules.borrow().clone();
        let ids = self.shards.borrow().shard_ids();
        let mut fired = Vec::new();
        let mut slice = std::time::Instant::now();
        for shard in ids {
            fired.clear();
            self.shards
                .borrow_mut()
                .advance_shard(shard, &rules, now_ns, &mut fired);
            // Alerts of windows closed by the clock depend on no new line
            // (set per shard: ingest runs between slices and moves it).
            self.seq.set(0);
            for alert in fired.drain(..) {
                // A window that closed on the clock has no completing
                // event; its latency is measured from when its newest
                // event arrived (on this node's clock, whatever the
                // sender's clock says).
                let received_ns = alert.arrived_ns;
                self.emit_correlation(&rules, &alert, shard, received_ns);
            }
            if slice.elapsed() >= BACKGROUND_SLICE {
                background_pause().await;
                slice = std::time::Instant::now();
            }
        }
    }

    /// The cap on groups per shard that keeps this core's state near 90%
    /// of `budget` at the bytes per group last measured.
    fn groups_cap_for(&self, budget: u64) -> usize {
        let configured = self.shared.config.engine.groups_per_shard_max;
        let allowed = (budget as f64 * 0.9 / self.bytes_per_group.get() as f64) as u64;
        let owned = u64::from(self.shared.map.shards() / self.shared.map.cores()).max(1);
        ((allowed / owned) as usize).clamp(1, configured)
    }

    /// Tells peers how far this core's journal has been handed over when
    /// no batch did lately: an empty stamped batch, never waited for.
    fn send_stamps(&self) {
        if self.journal.is_none() || self.replaying.get() {
            return;
        }
        let position = self.journal.as_ref().map_or(0, |j| j.written_seq());
        for peer in 0..self.in_flight.borrow().len() {
            if peer == self.index
                || self.in_flight.borrow()[peer] > 0
                || !self.outgoing.borrow()[peer].is_empty()
                || self.ready.borrow().iter().any(|(p, _)| *p == peer)
                || self.stamp_sent.borrow()[peer] >= position
            {
                continue;
            }
            let mut batch = RouteBatch::default();
            batch.source = self.index as u16;
            batch.stamp = position;
            if self.senders.try_send_to(peer, batch).is_ok() {
                self.stamp_sent.borrow_mut()[peer] = position;
            }
        }
    }

    /// Per source core, what this core's shards have applied now (its own
    /// entry: the last line appended).
    fn covered_now(&self) -> Vec<u64> {
        let mut covered = self.applied.borrow().clone();
        covered[self.index] = self.position();
        covered
    }

    /// Writes a checkpoint of this core's shards: snapshot, make the lines
    /// it covers durable, have every alert raised so far fsynced, then the
    /// file (off the executor), then journal retention.
    async fn checkpoint(&self) -> anyhow::Result<()> {
        if self.replaying.get() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let config = &self.shared.config;
        let cores = self.shared.map.cores();
        let covered = self.covered_now();
        // Shard by shard from the live state, yielding to ingest between
        // slices: each block records what its shard covers when it is
        // serialized, so there is no stop-the-core snapshot and no copy
        // of the whole state.
        let ids = self.shards.borrow().shard_ids();
        let generation = self.checkpoint_generation.get() + 1;
        let dir = durable::checkpoint_dir(&config.storage.data_dir, self.index);
        let keep = config.storage.checkpoints_keep;
        // The file is written as the shards are serialized (on the blocking
        // thread, a few MiB at a time), so the serialized state is never
        // held whole; it becomes the checkpoint only at the final rename.
        let mut writer = shardwatch_storage::spawn_background(move || {
            shardwatch_storage::checkpoint::CheckpointWriter::create(&dir, generation)
        })
        .await?;
        let mut encoder =
            durable::CheckpointEncoder::with_size_hints(self.checkpoint_size_hints.take());
        let mut slice = std::time::Instant::now();
        for shard in ids {
            {
                let shards = self.shards.borrow();
                if let Some(state) = shards.get(shard) {
                    encoder.push_shard(shard, &self.covered_now(), state)?;
                }
            }
            if encoder.pending_bytes() >= CHECKPOINT_WRITE_BYTES {
                let chunks = encoder.take_chunks();
                writer = write_checkpoint_chunks(writer, chunks).await?;
                slice = std::time::Instant::now();
            } else if slice.elapsed() >= BACKGROUND_SLICE {
                background_pause().await;
                slice = std::time::Instant::now();
            }
        }
        self.checkpoint_size_hints
            .replace(encoder.take_size_hints());
        let mut chunks = encoder.take_chunks();
        let payload = encoder.finish(durable::CheckpointHeader {
            format: durable::CHECKPOINT_FORMAT,
            core: self.index as u32,
            cores,
            shards: self.shared.map.shards(),
            taken_unix_ns: now_ns(),
            covered: covered.clone(),
            shard_count: 0,
        })?;
        chunks.extend(payload);
        writer = write_checkpoint_chunks(writer, chunks).await?;
        self.commit_journal(true).await;
        self.flush_alerts().await;
        let (ack, acked) = flume::bounded(1);
        self.shared
            .alerts
            .send_async(AlertLine::barrier(ack))
            .await
            .map_err(|_| anyhow::anyhow!("the alert writer is gone"))?;
        acked
            .recv_async()
            .await
            .map_err(|_| anyhow::anyhow!("the alert writer stopped before the barrier"))?;
        let bytes = writer.len();
        shardwatch_storage::spawn_background(move || writer.finish(keep)).await?;
        self.checkpoint_generation.set(generation);
        self.shared.recovery.publish_covered(self.index, &covered);
        add(&self.stats.checkpoints_written, 1);
        self.stats.checkpoint_bytes.store(bytes, Ordering::Relaxed);
        self.stats
            .checkpoint_duration
            .record_us(started.elapsed().as_micros() as u64);
        if let Some(journal) = &self.journal {
            let floor = self.shared.recovery.covered_by_all(self.index);
            let dir = durable::journal_dir(&config.storage.data_dir, self.index);
            let (max_bytes, max_age) = (
                config.storage.journal_retain_bytes,
                Duration::from_secs(config.storage.journal_retain_s),
            );
            // A buffered journal that keeps its pages reuses covered
            // segments (their page-cache pages and blocks) for its next
            // ones.
            let keep_spares = journal.options().reuses_spares();
            shardwatch_storage::spawn_background(move || {
                shardwatch_storage::journal::retain(&dir, max_bytes, max_age, floor, keep_spares)
            })
            .await?;
        }
        Ok(())
    }

    /// Tells every peer that this core's replay is over. Sent after the
    /// replay's last batches, on the same channels, so a peer that has
    /// this has applied every replayed record meant for it.
    async fn send_replay_done(&self) {
        let turn = self.send_turns.take();
        turn.wait().await;
        for peer in 0..self.shared.map.cores() as usize {
            if peer == self.index {
                continue;
            }
            let mut batch = RouteBatch::default();
            batch.source = self.index as u16;
            batch.replay_done = true;
            // A peer that is gone has failed its start; the node stops.
            let _ = self.senders.send_to(peer, batch).await;
        }
    }

    /// Waits until every peer's replay has reached this core (or the
    /// peer has gone: a core whose start failed stops the node).
    async fn wait_for_peers_replayed(&self, cores: usize) {
        let peers = cores.saturating_sub(1) as u64;
        if peers > 0 {
            let _ = self.peers_replayed.acquire(peers).await;
        }
    }

    /// Replays this core's journal from `from` through the pipeline, with
    /// records for each owner applied only past that owner's checkpoint.
    async fn replay_journal(&self, from: u64) -> anyhow::Result<()> {
        let dir = durable::journal_dir(&self.shared.config.storage.data_dir, self.index);
        let segments = shardwatch_storage::journal::segments(&dir)?;
        if segments.is_empty() {
            return Ok(());
        }
        // The floors come from the recovery plan.
        self.replaying.set(true);
        let mut lines = 0u64;
        for (i, (first, path)) in segments.iter().enumerate() {
            if segments.get(i + 1).is_some_and(|(next, _)| *next <= from) {
                continue;
            }
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            // The next segment is read from the device while this one is
            // replayed.
            if let Some((_, next)) = segments.get(i + 1) {
                shardwatch_storage::journal::prefetch(next);
            }
            let mut entries = Vec::new();
            let mut report = shardwatch_storage::journal::ScanReport::default();
            shardwatch_storage::journal::scan_segment_bytes(
                path,
                &bytes,
                *first,
                from,
                &mut report,
                &mut |entry| {
                    entries.push((
                        entry.seq,
                        entry.received_ns,
                        entry.transport,
                        entry.peer,
                        entry.line.to_vec(),
                    ))
                },
            );
            // Older segments are validated here, as they are replayed.
            self.shared.recovery.stats.count_scan(&report);
            for problem in &report.problems {
                eprintln!(
                    "shardwatch: recovery: journal core {}: {problem}",
                    self.index
                );
            }
            self.shared
                .recovery
                .stats
                .replayed_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            for chunk in entries.chunks(256) {
                self.refresh_rules();
                for (seq, received_ns, transport, peer, line) in chunk {
                    self.seq.set(*seq);
                    let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                    let _ = self.process_line(
                        line,
                        peer,
                        durable::transport_name(*transport),
                        *received_ns,
                    );
                }
                lines += chunk.len() as u64;
                self.flush(WhenFull::Wait).await;
            }
        }
        self.flush(WhenFull::Wait).await;
        self.replaying.set(false);
        self.seq.set(0);
        add(&self.stats.replayed_lines, lines);
        self.shared
            .recovery
            .stats
            .replayed_lines
            .fetch_add(lines, Ordering::Relaxed);
        Ok(())
    }
}

/// The pipeline's sink on a core.
struct CoreSink<'c> {
    core: &'c Core,
    peer: SocketAddr,
    transport: &'static str,
}

impl EventSink for CoreSink<'_> {
    fn without_payload(&mut self) {
        add(&self.core.stats.lines_without_payload, 1);
    }

    fn quarantine(&mut self, reason: &'static str, offset: Option<usize>, raw: &[u8]) {
        self.core.stats.quarantine(reason);
        let record = QuarantineRecord {
            received_ns: now_ns(),
            source: &self.peer.to_string(),
            transport: self.transport,
            reason,
            offset,
            raw,
        };
        let written = self.core.shared.quarantine.write(&record);
        // Under a disk that cannot write, a flood of bad lines would log
        // one line each, from the core: only the first of a run of
        // failures is logged; each is counted.
        let failing = self.core.quarantine_failing.replace(written.is_err());
        match written {
            Ok(true) => {}
            Ok(false) => self.core.stats.drop_events("quarantine_full", 1),
            Err(err) => {
                if !failing {
                    eprintln!(
                        "shardwatch: core {}: {err} (further quarantine write errors are counted in shardwatch_events_dropped_total{{reason=\"quarantine_write_error\"}})",
                        self.core.index
                    );
                }
                self.core.stats.drop_events("quarantine_write_error", 1);
            }
        }
    }

    fn flagged(&mut self, reason: &'static str) {
        self.core.stats.flag(reason);
    }

    fn detection(&mut self, detection: u32, event: &Event<'_>, received_ns: i64) {
        let rules = self.core.rules.borrow();
        let rule_id = &rules.detection(detection as usize).id;
        let id = shardwatch_rules::event_alert_id(rule_id, event.raw, event.time_ns);
        let host = event.get("host.name").unwrap_or_default();
        if !self
            .core
            .gate
            .borrow_mut()
            .admit(rule_id, host, &id, event.time_ns, received_ns)
        {
            add(&self.core.stats.alerts_suppressed, 1);
            return;
        }
        let raised = Raised {
            core: self.core.index,
            shard: None,
            detected_ns: now_ns(),
            received_ns,
        };
        let line = render_detection(&rules, detection, event, &raised);
        self.core.raise(line, &raised);
    }

    fn route(&mut self, record: &RouteRecord<'_>, owner: u16) {
        let owner = usize::from(owner);
        if self.core.replaying.get() {
            // Replaying: the owner's checkpoint already holds this record.
            let floor =
                self.core
                    .shared
                    .recovery
                    .replay_floor(record.shard, owner, self.core.index);
            if self.core.seq.get() <= floor {
                add(&self.core.stats.replay_skipped, 1);
                return;
            }
        }
        if owner == self.core.index {
            add(&self.core.stats.routed_local, 1);
            self.core.observe_local(record);
            return;
        }
        let mut outgoing = self.core.outgoing.borrow_mut();
        if !outgoing[owner].has_buffer() {
            // Taken as late as possible: the more batches have come home.
            if let Some(bytes) = self.core.shared.route_buffers.take(self.core.index) {
                outgoing[owner] = RouteBatch::with_buffer(bytes);
                add(&self.core.stats.route_buffers_reused, 1);
            }
        }
        outgoing[owner].push(record);
        if outgoing[owner].is_full() {
            let full = std::mem::take(&mut outgoing[owner]);
            self.core.ready.borrow_mut().push((owner, full));
        }
    }
}

/// Receives batches from one peer core until it closes its sender.
async fn serve_peer(core: Rc<Core>, rx: ConnectedReceiver<RouteBatch>) {
    let mut replay_done = false;
    while let Some(batch) = rx.recv().await {
        core.refresh_rules();
        // Alerts raised here depend on lines of the peer's journal, which
        // the peer wrote before sending.
        core.seq.set(0);
        for record in batch.iter() {
            core.observe_local(&record);
        }
        {
            let mut applied = core.applied.borrow_mut();
            let source = usize::from(batch.source);
            if source < applied.len() {
                applied[source] = applied[source].max(batch.stamp);
            }
        }
        if !batch.is_empty() {
            add(&core.stats.batches_received, 1);
        }
        if batch.replay_done && !replay_done {
            replay_done = true;
            core.peers_replayed.signal(1);
        }
        core.shared
            .route_buffers
            .give_back(usize::from(batch.source), batch);
        core.flush_alerts().await;
        yield_turn().await;
    }
    // A peer that closed before its replay ended (its start failed) must
    // not hold this core's start for ever.
    if !replay_done {
        core.peers_replayed.signal(1);
    }
}

/// Appends checkpoint chunks on the blocking thread; hands the writer back.
///
/// The chunks come back too and are freed here, on the core that
/// allocated them: freed on the blocking thread, each took the core's
/// glibc arena lock, and the core, allocating meanwhile, slept on it
/// (most of the core's lock waits once alert lines went home,
/// BENCHMARKS.md 2026-12-07).
async fn write_checkpoint_chunks(
    mut writer: shardwatch_storage::checkpoint::CheckpointWriter,
    chunks: Vec<Vec<u8>>,
) -> anyhow::Result<shardwatch_storage::checkpoint::CheckpointWriter> {
    let (written, chunks) = shardwatch_storage::spawn_background(move || {
        let written = chunks.iter().try_for_each(|chunk| writer.append(chunk));
        (written.map(|()| writer), chunks)
    })
    .await;
    drop(chunks);
    Ok(written?)
}

/// Syncs the journal every `every` while lines are waiting to be durable,
/// until shutdown (closing the journal syncs the rest).
async fn journal_sync_loop(core: Rc<Core>, every: Duration) {
    while !core.stopping() {
        glommio::timer::sleep(every.min(READ_TIMEOUT)).await;
        if core.journal.as_ref().is_some_and(|j| j.sync_due()) {
            core.commit_journal(true).await;
        }
    }
}

/// Keeps a timer armed on the core for its whole life: every
/// [`HEARTBEAT`] the executor wakes and looks again at what other threads
/// handed it (blocking-pool results, wakes of tasks waiting on channels
/// from the alert writer or the control thread). glommio parks the core's
/// thread in `io_uring_enter` without a timeout when no task waits on a
/// timer, so a wake-up from another thread that went missing then left
/// the core asleep for good: overload run 32 (BENCHMARKS.md) saw a core
/// stop reading every socket for five minutes with data queued, idle in
/// that wait, until a debugger attaching interrupted the syscall, after
/// which it carried on where it was. With this timer such a stall lasts at
/// most one beat. The cause of the missing wake is not known. Each beat
/// is stamped in the core's stats, so a core stuck for any other reason
/// shows in `/health` and in `shardwatch_core_heartbeat_age_seconds`.
async fn heartbeat(stats: Arc<CoreStats>) {
    loop {
        stats
            .heartbeat_unix_ns
            .store(now_ns().max(1) as u64, Ordering::Relaxed);
        glommio::timer::sleep(HEARTBEAT).await;
    }
}

/// Records, `every` (`engine.stall_probe_ms`), how late the core's timer
/// fired: the time the executor could not get to it, because one task ran
/// that long (a batch of lines, a background slice) or because the core's
/// thread was not running (another thread on its CPU, a virtual CPU the
/// hypervisor did not run). A detection latency tail whose way in has no stall of
/// its size lies before the core (the kernel, the sender); one with a
/// stall of its size lies in the core or under it. Records while
/// `serving()` holds.
///
/// A stall as long as `every` or longer always delays the probe; a shorter
/// one does when it covers the moment the probe falls due, so the
/// lateness is the stall left at moments spread evenly over the run.
async fn stall_probe(stats: Arc<CoreStats>, every: Duration, serving: impl Fn() -> bool) {
    loop {
        let due = std::time::Instant::now() + every;
        glommio::timer::sleep(every).await;
        if !serving() {
            return;
        }
        let late = std::time::Instant::now().saturating_duration_since(due);
        stats.stalls.record_us(late.as_micros() as u64);
    }
}

/// Advances correlation windows on the wall clock until shutdown.
async fn tick_loop(core: Rc<Core>) {
    let mut ticks = 0u64;
    let checkpoint_every = Duration::from_millis(core.shared.config.storage.checkpoint_interval_ms);
    let mut state_bytes = 0u64;
    let mut last_checkpoint = std::time::Instant::now();
    // How long the last checkpoint took: a state so large (or a core so
    // slow) that checkpoints take long spaces them out, so they never take
    // more than 1 / CHECKPOINT_DUTY_INVERSE of the core.
    let mut checkpoint_took = Duration::ZERO;
    // Whether the checkpoint due now has been counted as postponed.
    let mut postponing = false;
    // The state walk's last start and duration (see STATE_WALK_DUTY_INVERSE).
    let mut last_walk = std::time::Instant::now();
    let mut walk_took = Duration::ZERO;
    while !core.stopping() {
        ticks += 1;
        let budget = core.shared.config.limits.state_memory_bytes_max
            / u64::from(core.shared.map.cores()).max(1);
        // A cheap estimate every tick (groups held times the bytes per
        // group last measured); the full walk once a second, or at once
        // when the estimate nears the bound, in either case no sooner
        // than its duty allows (1% of the core far from the bound, 5%
        // near it).
        let estimate = core.shards.borrow().group_count() as u64 * core.bytes_per_group.get();
        let near_bound = budget > 0 && estimate.max(state_bytes) * 4 > budget * 3;
        let duty = if near_bound {
            STATE_WALK_DUTY_INVERSE
        } else {
            STATE_WALK_IDLE_DUTY_INVERSE
        };
        let due = ticks.is_multiple_of(5) || near_bound;
        if due && last_walk.elapsed() >= walk_took * duty {
            (state_bytes, walk_took) =
                in_background(&core, |c| async move { c.account_state(budget).await }).await;
            last_walk = std::time::Instant::now();
        }
        let board = &core.shared.schemas[core.index];
        if let Some(ticket) = board.wanted() {
            // The API asked for this core's schema registry: a copy, made
            // only then (milliseconds with thousands of sources), never a
            // lock on the event path.
            let snapshot = core
                .pipeline
                .borrow()
                .registry()
                .map(|r| r.snapshot())
                .unwrap_or_default();
            board.publish(ticket, snapshot);
        }
        glommio::timer::sleep(TICK_INTERVAL.min(READ_TIMEOUT)).await;
        core.refresh_rules();
        // Lines of an idle connection are written (and synced when due)
        // within a tick.
        core.commit_journal(false).await;
        core.send_stamps();
        let spacing = checkpoint_every.max(checkpoint_took * CHECKPOINT_DUTY_INVERSE);
        let behind = core
            .behind_at
            .get()
            .is_some_and(|at| at.elapsed() < BEHIND_RECENT);
        let since = last_checkpoint.elapsed();
        let checkpoint_due = !checkpoint_every.is_zero() && since >= spacing;
        if checkpoint_due && behind && since < spacing * CHECKPOINT_POSTPONE_MAX {
            if !postponing {
                add(&core.stats.checkpoints_postponed, 1);
                postponing = true;
            }
        } else if checkpoint_due {
            postponing = false;
            last_checkpoint = std::time::Instant::now();
            let result = in_background(&core, |c| async move { c.checkpoint().await }).await;
            if let Err(err) = result {
                add(&core.stats.checkpoint_errors, 1);
                eprintln!(
                    "shardwatch: core {}: checkpoint failed: {err:#}",
                    core.index
                );
            }
            checkpoint_took = last_checkpoint.elapsed();
        }
        in_background(&core, |c| async move { c.expire_windows(now_ns()).await }).await;
        // Quarantine records are buffered; make them visible within a tick.
        if let Err(err) = core.shared.quarantine.flush() {
            eprintln!("shardwatch: core {}: {err}", core.index);
        }
        let now = now_ns();
        core.gate.borrow_mut().advance(now, now, |line| {
            core.pending_alerts.borrow_mut().push((0, line));
        });
        let groups = core.shards.borrow().group_count() as u64;
        core.stats.shard_groups.store(groups, Ordering::Relaxed);
        let evicted = core.shards.borrow().evicted_total();
        core.stats.groups_evicted.store(evicted, Ordering::Relaxed);
        core.flush_alerts().await;
    }
}

async fn udp_loop(core: Rc<Core>, socket: std::net::UdpSocket) -> anyhow::Result<()> {
    let mut rx = UdpBatchReceiver::adopt(socket).context("cannot adopt the UDP socket")?;
    rx.set_read_timeout(Some(READ_TIMEOUT))?;
    let frame_max = core.shared.config.ingest.frame_bytes_max;
    // Datagrams processed since the last flush (journal group commit,
    // alerts, routed batches).
    let mut unflushed = 0usize;
    while !core.stopping() {
        let count = match rx.recv_batch().await {
            Ok(count) => count,
            Err(err) if is_timeout(&err) => {
                if unflushed > 0 {
                    core.flush(WhenFull::Drop).await;
                    unflushed = 0;
                }
                continue;
            }
            Err(err) => {
                // A UDP socket error (such as ICMP feedback) concerns one
                // datagram, not the socket: count it and keep reading.
                eprintln!("shardwatch: core {}: UDP receive error: {err}", core.index);
                core.stats.drop_events("udp_receive_error", 1);
                continue;
            }
        };
        let read_ns = now_ns();
        core.refresh_rules();
        process_datagrams(&core, &rx, count, frame_max);
        // A full read means more is waiting: keep reading up to
        // UDP_FLUSH_DATAGRAMS before the flush, so a busy socket pays one
        // journal write (and one send per peer) per few hundred datagrams
        // instead of per recvmmsg.
        // An alert raised by this batch goes out now (its lines journaled
        // first), as a stream's does after each slice of a read.
        unflushed += count;
        let early = count == transport::udp::UDP_BATCH_MAX
            && unflushed < UDP_FLUSH_DATAGRAMS
            && core.alerts_pending();
        if early {
            add(&core.stats.alerts_sent_mid_read, 1);
        }
        if count < transport::udp::UDP_BATCH_MAX || unflushed >= UDP_FLUSH_DATAGRAMS || early {
            if count == transport::udp::UDP_BATCH_MAX {
                core.behind_at.set(Some(std::time::Instant::now()));
            }
            core.flush(WhenFull::Drop).await;
            unflushed = 0;
            // The socket was emptied: let datagrams gather before the next.
            if count < transport::udp::UDP_BATCH_MAX && coalesce_reads(&core, read_ns).await {
                continue;
            }
        }
        yield_turn().await;
    }
    // Stopping: what the socket still holds was sent to this node. It is
    // processed for as long as connections get to go quiet; what is left
    // then is read and counted as dropped (`udp_unread_at_shutdown`), never freed with
    // the socket unseen (a large buffer holds seconds of a busy core's
    // reading).
    let deadline = std::time::Instant::now() + CONNECTION_DRAIN_MAX;
    loop {
        let count = rx.recv_queued();
        if count == 0 {
            break;
        }
        if std::time::Instant::now() < deadline {
            process_datagrams(&core, &rx, count, frame_max);
        } else {
            add(&core.stats.udp_batches, 1);
            add(&core.stats.udp_datagrams, count as u64);
            core.stats
                .drop_events("udp_unread_at_shutdown", count as u64);
        }
        unflushed += count;
        if unflushed >= UDP_FLUSH_DATAGRAMS {
            core.flush(WhenFull::Drop).await;
            unflushed = 0;
        }
    }
    if unflushed > 0 {
        core.flush(WhenFull::Drop).await;
    }
    Ok(())
}

/// Counts and processes datagrams `0..count` of the receiver's current
/// batch, received now.
fn process_datagrams(core: &Core, rx: &UdpBatchReceiver, count: usize, frame_max: usize) {
    add(&core.stats.udp_batches, 1);
    add(&core.stats.udp_datagrams, count as u64);
    let received_ns = now_ns();
    for i in 0..count {
        let (bytes, peer) = rx.datagram(i);
        if let Some(refusal) = core.refuse_datagram(peer.ip(), received_ns) {
            core.stats.drop_events(refusal.reason(), 1);
            continue;
        }
        let bytes = if bytes.len() > frame_max {
            add(&core.stats.frames_truncated, 1);
            core.quarantine_oversize(&bytes[..frame_max], peer, "udp");
            &bytes[..frame_max]
        } else {
            bytes
        };
        let _ = core.process_line(trim_line(bytes), peer, "udp", received_ns);
    }
    core.batch_done(received_ns);
}

/// A datagram may carry a trailing newline (logger, rsyslog omfwd).
fn trim_line(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r' | 0) {
        end -= 1;
    }
    &bytes[..end]
}

/// Drop-counter names for the framer's malformed-count reasons.
fn framing_reason(reason: &'static str) -> &'static str {
    match reason {
        "count_zero" => "framing_count_zero",
        "count_too_many_digits" => "framing_count_too_many_digits",
        "count_no_space" => "framing_count_no_space",
        _ => "framing_other",
    }
}

fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

async fn accept_loop(
    core: Rc<Core>,
    listener: std::net::TcpListener,
    kind: Listener,
) -> anyhow::Result<()> {
    // A second descriptor of the same socket, read without the executor
    // at shutdown (see below); non-blocking, so an empty queue ends it.
    let pending = listener
        .try_clone()
        .context("cannot clone the TCP listener")?;
    pending
        .set_nonblocking(true)
        .context("cannot clone the TCP listener")?;
    let listener =
        transport::tcp::adopt_listener(listener).context("cannot adopt the TCP listener")?;
    while !core.stopping() {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            while !core.stopping() {
                glommio::timer::sleep(READ_TIMEOUT).await;
            }
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(err)) => {
                // EMFILE and friends: count, back off briefly, keep serving
                // the connections already open.
                eprintln!("shardwatch: core {}: accept failed: {err}", core.index);
                core.stats.drop_events("tcp_accept_error", 1);
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        serve_accepted(&core, stream, &kind);
    }
    // Stopping: connections the kernel completed but this loop had not
    // accepted yet were sent to this node (their first bytes are already
    // acknowledged to the sender): accept them and drain them like the open
    // ones, rather than reset them with the listener. Then close the
    // listener, so later connection attempts are refused at once.
    let drain_until = std::time::Instant::now() + BACKLOG_DRAIN_MAX;
    while std::time::Instant::now() < drain_until {
        match transport::tcp::accept_pending(&pending) {
            Ok(Some(stream)) => serve_accepted(&core, stream, &kind),
            Ok(None) => break,
            Err(err) => {
                eprintln!("shardwatch: core {}: accept failed: {err}", core.index);
                core.stats.drop_events("tcp_accept_error", 1);
                break;
            }
        }
    }
    drop(pending);
    drop(listener);
    let deadline = std::time::Instant::now() + DRAIN_CONNECTIONS_MAX;
    while core.tcp_open.get() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Admits (or refuses) a connection `kind`'s listener accepted and starts
/// serving it on this core.
fn serve_accepted(core: &Rc<Core>, stream: glommio::net::TcpStream, kind: &Listener) {
    let peer = transport::tcp::peer_of(&stream);
    if !core.admission.borrow().permitted(peer.ip()) {
        core.stats.drop_events(Refusal::Denied.reason(), 1);
        return;
    }
    if let Err(refusal) = core.shared.connections.take(peer.ip()) {
        // Closed unread (the stream drops here): the sender sees the
        // close and retries later, as it would after a restart.
        core.stats.drop_events(refusal.reason(), 1);
        if !core.refusing_connections.replace(true) {
            let limits = &core.shared.config.limits;
            let bound = match refusal {
                SlotRefusal::Node => format!("{} connections open", limits.connections_max),
                SlotRefusal::Source => format!(
                    "{} connections open from {}",
                    limits.connections_per_source_max,
                    peer.ip()
                ),
            };
            eprintln!(
                "shardwatch: core {}: {bound} (limits.{}): closing new connections, from {peer} on, until one ends",
                core.index,
                refusal.reason()
            );
        }
        return;
    }
    core.refusing_connections.set(false);
    let keepalive_s = core.shared.config.ingest.tcp_keepalive_s;
    if keepalive_s > 0 {
        if let Err(err) = transport::tcp::set_keepalive(&stream, keepalive_s) {
            // The connection is served without: only a dead peer's slot is
            // at stake, and the read path still ends on any error.
            eprintln!(
                "shardwatch: core {}: cannot turn on TCP keepalive for {peer}: {err}",
                core.index
            );
        }
    }
    add(&core.stats.tcp_connections_accepted, 1);
    core.tcp_open.set(core.tcp_open.get() + 1);
    core.stats
        .tcp_connections_open
        .store(core.tcp_open.get(), Ordering::Relaxed);
    match kind {
        Listener::Tcp => {
            let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
            glommio::spawn_local(serve_connection(core.clone(), stream, peer, "tcp")).detach();
        }
        Listener::Relp => {
            glommio::spawn_local(serve_relp(core.clone(), stream)).detach();
        }
        Listener::Tls(acceptor) => {
            glommio::spawn_local(serve_tls(core.clone(), stream, acceptor.clone())).detach();
        }
    }
}

/// What one read of a connection gave.
enum Read {
    Bytes(usize),
    /// The read timed out (a chance to check for shutdown).
    Again,
    Closed,
}

/// Reads what a stream connection has; on bytes, picks up a reloaded rule
/// set (a batch boundary) and counts them.
async fn read_some<S>(core: &Core, stream: &mut S, buf: &mut [u8]) -> Read
where
    S: futures_lite::AsyncRead + Unpin,
{
    match stream.read(buf).await {
        Ok(0) => Read::Closed,
        Ok(n) => {
            core.refresh_rules();
            add(&core.stats.tcp_bytes, n as u64);
            if n == buf.len() {
                core.behind_at.set(Some(std::time::Instant::now()));
            }
            Read::Bytes(n)
        }
        // glommio's own read timeout carries no OS error; the kernel's
        // ETIMEDOUT (keepalive probes unanswered) is the peer gone.
        Err(err) if is_timeout(&err) && err.raw_os_error() != Some(libc::ETIMEDOUT) => Read::Again,
        Err(_) => {
            // Reset, timed out, unreachable, TLS cut short: no orderly
            // close.
            add(&core.stats.tcp_connections_lost, 1);
            Read::Closed
        }
    }
}

/// Runs `work(core)` in the core's background task queue and waits for it;
/// inline should the executor refuse the queue.
async fn in_background<T, F>(core: &Rc<Core>, work: impl Fn(Rc<Core>) -> F) -> T
where
    T: 'static,
    F: std::future::Future<Output = T> + 'static,
{
    match glommio::spawn_local_into(work(core.clone()), core.background) {
        Ok(task) => task.await,
        Err(_) => work(core.clone()).await,
    }
}

/// Ends a slice of background work (checkpoint, state walk): sleeps
/// [`BACKGROUND_PAUSE`], so that no background task is runnable and the
/// executor, once the default queue has nothing runnable either, goes back
/// to its reactor and polls the sockets. A plain yield does not: the
/// yielding task stays runnable, and glommio polls I/O only when its queues
/// run dry or its preemption timer fires, which it arms from the queues
/// active when it last polled (100 ms while only the default queue was):
/// at 211 k events/s with ~370 MB of state, a state walk held the sockets
/// unread for 30–75 ms once a second, the whole tail of detection latency
/// (p99 45–78 ms with the node's own receive-to-detect p99 at 2 ms).
async fn background_pause() {
    glommio::timer::sleep(BACKGROUND_PAUSE).await;
}

/// `ingest.read_coalesce_us`: after a read that emptied its socket (at
/// `read_ns`, its batch already processed and flushed), waits until that
/// long after the read before the next, so the next read carries what
/// arrived meanwhile instead of a line or two. Returns whether it waited
/// (the wait is the turn's yield). Not while stopping: the drain reads at
/// once.
async fn coalesce_reads(core: &Core, read_ns: i64) -> bool {
    let coalesce = Duration::from_micros(core.shared.config.ingest.read_coalesce_us);
    if coalesce.is_zero() || core.stopping() {
        return false;
    }
    let spent = Duration::from_nanos((now_ns() - read_ns).max(0) as u64);
    if spent >= coalesce {
        return false;
    }
    glommio::timer::sleep(coalesce - spent).await;
    true
}

/// Lets the core's other runnable tasks run (those whose I/O or timer
/// completed when the executor last polled; it polls again when its queues
/// run dry or a preemption timer fires, see [`BACKGROUND_SHARES`]). A
/// socket that always has data makes its read return at once, so without
/// this a UDP flood (or one busy TCP connection) would keep every other
/// task on the core from running: other connections, the tick (window
/// expiry, the state bound, checkpoints) and peer batches. Each ingest
/// loop yields after every batch.
async fn yield_turn() {
    futures_lite::future::yield_now().await;
}

/// The connection from `peer` ended: one fewer open.
fn connection_closed(core: &Core, peer: SocketAddr) {
    core.shared.connections.give_back(peer.ip());
    core.tcp_open.set(core.tcp_open.get() - 1);
    core.stats
        .tcp_connections_open
        .store(core.tcp_open.get(), Ordering::Relaxed);
}

/// TLS syslog: the handshake (bounded in time), then the same framing as
/// plain TCP inside the session.
async fn serve_tls(
    core: Rc<Core>,
    stream: glommio::net::TcpStream,
    acceptor: shardwatch_net::tls::TlsAcceptor,
) {
    let peer = transport::tcp::peer_of(&stream);
    let _ = stream.set_read_timeout(Some(TLS_HANDSHAKE_MAX));
    match acceptor.accept(stream).await {
        Ok(session) => {
            add(&core.stats.tls_sessions, 1);
            let _ = session.get_ref().0.set_read_timeout(Some(READ_TIMEOUT));
            serve_connection(core, session, peer, "tls").await;
        }
        Err(err) => {
            // A refused or broken handshake: counted, the reason logged
            // once per reason class is enough for an operator.
            if core.stats.tls_handshake_failures.load(Ordering::Relaxed) < 5 {
                eprintln!(
                    "shardwatch: core {}: TLS handshake with {peer} failed: {err}",
                    core.index
                );
            }
            add(&core.stats.tls_handshake_failures, 1);
            connection_closed(&core, peer);
        }
    }
}

/// RELP: frames parsed, each `syslog` message processed like a TCP line,
/// and answered `200 OK` only once its journal record is durable under the
/// fsync policy. Answers leave in TXNR order. A protocol error closes the
/// connection without answering what is pending, so the client resends it.
async fn serve_relp(core: Rc<Core>, mut stream: glommio::net::TcpStream) {
    use futures_lite::AsyncWriteExt;
    use shardwatch_net::relp::{self, RelpCommand, RelpFramer};
    let peer = transport::tcp::peer_of(&stream);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let frame_max = core.shared.config.ingest.frame_bytes_max;
    let mut framer = RelpFramer::new(frame_max.max(relp::DATA_LEN_MAX_DEFAULT)).check_sequence();
    let mut buf = vec![0u8; TCP_READ_BYTES];
    let mut opened = false;
    let mut out = Vec::new();
    // Answers of one read, in order: (txnr, what to say).
    enum Answer {
        Ok,
        Open,
        Error(&'static str),
    }
    let mut answers: Vec<(u64, Answer)> = Vec::new();
    'connection: while !core.stopping() {
        let n = match read_some(&core, &mut stream, &mut buf).await {
            Read::Bytes(n) => n,
            Read::Again => continue,
            Read::Closed => break,
        };
        let received_ns = now_ns();
        let mut close_after = false;
        answers.clear();
        let fed = framer.feed(&buf[..n], |frame| {
            if close_after {
                return;
            }
            match frame.command {
                RelpCommand::Open => match relp::open_offers_ok(frame.data) {
                    Ok(()) => {
                        opened = true;
                        answers.push((frame.txnr, Answer::Open));
                    }
                    Err(reason) => {
                        core.stats.drop_events(reason, 1);
                        answers.push((frame.txnr, Answer::Error("unsupported offers")));
                        close_after = true;
                    }
                },
                RelpCommand::Syslog if opened => {
                    add(&core.stats.relp_messages, 1);
                    let line = trim_line(frame.data);
                    if line.len() > frame_max {
                        add(&core.stats.frames_truncated, 1);
                        core.quarantine_oversize(&line[..frame_max], peer, "relp");
                    }
                    if core.process_line(
                        &line[..line.len().min(frame_max)],
                        peer,
                        "relp",
                        received_ns,
                    ) {
                        answers.push((frame.txnr, Answer::Ok));
                    } else {
                        // Not journaled: no answer, and the connection
                        // closes after this read, so the client resends.
                        close_after = true;
                    }
                }
                RelpCommand::Syslog => {
                    core.stats.drop_events("relp_no_open", 1);
                    answers.push((frame.txnr, Answer::Error("open the session first")));
                    close_after = true;
                }
                RelpCommand::Close => {
                    answers.push((frame.txnr, Answer::Ok));
                    close_after = true;
                }
                _ => {
                    core.stats.drop_events("relp_bad_command", 1);
                    answers.push((frame.txnr, Answer::Error("command not supported")));
                }
            }
        });
        core.batch_done(received_ns);
        // Lines are journaled (written) by the flush; wait until they are
        // durable under the policy before acknowledging them.
        let upto = core.position();
        core.flush(WhenFull::Wait).await;
        if let Some(journal) = &core.journal {
            if let Err(err) = journal.wait_durable(upto).await {
                add(&core.stats.journal_errors, 1);
                if core.stats.journal_failing.swap(1, Ordering::Relaxed) == 0 {
                    eprintln!(
                        "shardwatch: core {}: journal sync for RELP failed (the connection is closed unanswered): {err}",
                        core.index
                    );
                }
                break 'connection;
            }
        }
        out.clear();
        for (txnr, answer) in &answers {
            match answer {
                Answer::Ok => relp::write_ok(*txnr, &mut out),
                Answer::Open => relp::write_open_response(*txnr, &mut out),
                Answer::Error(message) => relp::write_error(*txnr, 500, message, &mut out),
            }
        }
        add(&core.stats.relp_acks, answers.len() as u64);
        if stream.write_all(&out).await.is_err() {
            break;
        }
        if let Err(err) = fed {
            core.stats.drop_events(err.reason(), 1);
            break;
        }
        if close_after {
            break;
        }
        yield_turn().await;
    }
    if core.stopping() {
        // Tell the client to reconnect later rather than wait for answers.
        out.clear();
        relp::write_serverclose(&mut out);
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.close().await;
    connection_closed(&core, peer);
}

async fn serve_connection<S>(
    core: Rc<Core>,
    mut stream: S,
    peer: SocketAddr,
    transport: &'static str,
) where
    S: futures_lite::AsyncRead + Unpin,
{
    let mut framer = Framer::new(core.shared.config.ingest.frame_bytes_max);
    let mut buf = vec![0u8; TCP_READ_BYTES];
    let rate_limited = core.admission.borrow().limits_rate();
    // At shutdown a connection is read until it goes quiet (one read
    // timeout) or for at most CONNECTION_DRAIN_MAX, so what a sender had
    // already written is not left unread in the socket.
    let mut drain_until: Option<std::time::Instant> = None;
    // Lines since this connection last cut a read for an alert (it starts
    // as if long ago, so the first alert cuts at once), and whether an
    // alert raised since then waits for the next cut or the read's end.
    let mut lines_since_cut = ALERT_CUT_LINES_MIN;
    let mut alert_waits = false;
    loop {
        if core.stopping() {
            let until = *drain_until
                .get_or_insert_with(|| std::time::Instant::now() + CONNECTION_DRAIN_MAX);
            if std::time::Instant::now() >= until {
                break;
            }
        }
        if rate_limited && drain_until.is_none() {
            // Over its rate, a connection is read more slowly: TCP pushes
            // the sender back instead of anything being dropped.
            let wait_ns = core.admission.borrow().wait_ns(peer.ip(), 1);
            if wait_ns > 0 {
                glommio::timer::sleep(Duration::from_nanos(wait_ns as u64).min(READ_TIMEOUT)).await;
                continue;
            }
        }
        let n = match read_some(&core, &mut stream, &mut buf).await {
            Read::Bytes(n) => n,
            Read::Again if core.stopping() => break,
            Read::Again => continue,
            Read::Closed => break,
        };
        let received_ns = now_ns();
        let mut frames = 0u64;
        // A read can hold 256 KiB (over a thousand lines, milliseconds of
        // work). The line that raises an alert ends this pass over the
        // read: the lines so far are committed to the journal and the
        // alert sent, then the rest is processed. Only an alert this
        // connection's lines raised counts: one waiting for another
        // core's journal would otherwise cut the read at every line.
        // Cuts are at least ALERT_CUT_LINES_MIN lines apart, so a rule
        // that fires on many lines costs a commit per that many lines,
        // not per alert; an alert raised sooner waits for that line.
        // Counted in `shardwatch_alerts_sent_mid_read_total`. Before, the
        // alert waited for the end of its read (its way out's p99 at
        // 300 k lines/s was mostly that wait), then for the end of a
        // 16 KiB slice (BENCHMARKS.md, 2026-12-06).
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let used = framer.feed_until(rest, |frame| {
                frames += 1;
                add(&core.stats.tcp_frames, 1);
                if frame.truncated {
                    add(&core.stats.frames_truncated, 1);
                    core.quarantine_oversize(frame.bytes, peer, transport);
                }
                let waiting = core.alerts_pending_count();
                let _ = core.process_line(frame.bytes, peer, transport, received_ns);
                lines_since_cut = lines_since_cut.saturating_add(1);
                alert_waits |= core.alerts_pending_count() > waiting;
                if alert_waits && lines_since_cut >= ALERT_CUT_LINES_MIN {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            rest = &rest[used..];
            if alert_waits && lines_since_cut >= ALERT_CUT_LINES_MIN {
                lines_since_cut = 0;
                alert_waits = false;
                if !rest.is_empty() {
                    add(&core.stats.alerts_sent_mid_read, 1);
                    core.flush(WhenFull::Wait).await;
                }
            }
        }
        // The flush below sends whatever this read raised.
        alert_waits = false;
        core.batch_done(received_ns);
        if rate_limited {
            core.admission
                .borrow_mut()
                .debit(peer.ip(), frames, received_ns);
        }
        core.flush(WhenFull::Wait).await;
        // A read that emptied the socket: let lines gather before the next.
        if n < buf.len() && coalesce_reads(&core, received_ns).await {
            continue;
        }
        yield_turn().await;
    }
    let received_ns = now_ns();
    framer.finish(|frame| {
        add(&core.stats.tcp_frames, 1);
        if frame.truncated {
            // An octet-counted frame the connection closed in the middle of.
            add(&core.stats.frames_truncated, 1);
            let mut sink = CoreSink {
                core: &core,
                peer,
                transport,
            };
            sink.quarantine("incomplete_frame", Some(frame.bytes.len()), frame.bytes);
        }
        let _ = core.process_line(frame.bytes, peer, transport, received_ns);
    });
    // Bytes the framer had to skip after a malformed octet count are counted
    // by reason; they are not a line, so there is nothing to quarantine.
    for (reason, count) in framer.stats.bad_counts() {
        if count > 0 {
            core.stats.drop_events(framing_reason(reason), count);
        }
    }
    core.flush(WhenFull::Wait).await;
    connection_closed(&core, peer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_probe_records_a_core_held_past_its_timer() {
        const EVERY: Duration = Duration::from_millis(10);
        let stats = Arc::new(CoreStats::new(1, 64));
        let probed = stats.clone();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                glommio::spawn_local(stall_probe(probed, EVERY, || true)).detach();
                // Let the probe fire a few times on an idle executor, then
                // hold the executor's thread, as a long task or a
                // descheduled CPU would, well past the probe's period.
                glommio::timer::sleep(EVERY * 3).await;
                std::thread::sleep(EVERY * 5);
                glommio::timer::sleep(EVERY * 2).await;
            })
            .unwrap()
            .join()
            .unwrap();
        let snapshot = stats.stalls.snapshot();
        assert!(snapshot.count >= 3, "{snapshot:?}");
        // The probe falls due within one period of the hold's start, so it
        // fires at least 4 periods late; 3 leaves room for timer slack.
        let max_us = *snapshot.quantiles_us.last().unwrap();
        assert!(max_us >= 3 * EVERY.as_micros() as u64, "{snapshot:?}");
        let report = stats.report(0);
        assert_eq!(report.stall_max_us, max_us);
    }
}
