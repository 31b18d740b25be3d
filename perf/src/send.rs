//! The sender: paced or flat-out syslog over UDP (`sendmmsg` batches), TCP
//! and TLS (large writes over several connections) and RELP (windowed,
//! acknowledged sessions), recording when each scenario's completing event
//! left.
//!
//! One thread sends for every lane (a lane is one UDP socket or one TCP
//! connection): the machine this runs on is small and shared, and a single
//! sender keeps per-group order without coordination. Due events are cut
//! into batches; each batch goes whole to the next lane in turn, so events
//! keep their corpus order within a lane, and scenario steps (seconds apart
//! in event time) leave in order in practice.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::clock;
use crate::corpus::Corpus;
use crate::relp_client::{RelpLane, RelpStats, RelpSummary, RELP_WINDOW_DEFAULT};
use crate::schedule::Schedule;
use crate::tls_client::{self, TlsOptions, TlsStream};

/// Most datagrams per `sendmmsg` call.
pub const UDP_BATCH_MAX: usize = 64;
/// Largest TCP write the sender builds before writing.
pub const TCP_WRITE_BYTES_MAX: usize = 256 * 1024;
/// Most lanes (sockets or connections) per target.
pub const CONNECTIONS_MAX: usize = 256;
/// Lines in one sender thread's stripe of the corpus, when several send
/// (about 4 writes of 256 KiB, or 64 UDP batches).
pub const STRIPE_LINES: u64 = 4096;
/// Longest the sender sleeps at once while ahead of schedule, so progress
/// lines and the end of a duration are noticed on time.
pub const SLEEP_NS_MAX: i64 = 1_000_000;
/// Width of one throughput-timeline bucket.
pub const TIMELINE_BUCKET_NS: i64 = 100_000_000;

/// A send timeline (events per [`TIMELINE_BUCKET_NS`]) as a plot's series
/// of events per second against seconds since the start.
pub fn timeline_series(label: String, timeline: &[u64]) -> crate::svg::Series {
    let bucket_s = TIMELINE_BUCKET_NS as f64 / 1e9;
    crate::svg::Series {
        label,
        points: timeline
            .iter()
            .enumerate()
            .map(|(i, &n)| (i as f64 * bucket_s, n as f64 / bucket_s))
            .collect(),
    }
}
/// Most timeline buckets kept (one hour at 100 ms).
pub const TIMELINE_BUCKETS_MAX: usize = 36_000;
/// Consecutive failed `sendmmsg` calls on one batch before its datagrams are
/// counted as send errors and skipped.
pub const UDP_RETRIES_MAX: u32 = 8;
/// Socket send buffer requested for UDP lanes (best effort).
const UDP_SNDBUF_BYTES: libc::c_int = 4 * 1024 * 1024;

/// Where to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Target {
    Udp(SocketAddr),
    Tcp(SocketAddr),
    Relp(SocketAddr),
    Tls(SocketAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
            Target::Relp(a) => write!(f, "relp://{a}"),
            Target::Tls(a) => write!(f, "tls://{a}"),
        }
    }
}

impl Target {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Udp(a) | Target::Tcp(a) | Target::Relp(a) | Target::Tls(a) => *a,
        }
    }
}

/// Parses `udp://`, `tcp://`, `relp://` or `tls://` then `IP:PORT`. Any
/// address parses; whether one that is not loopback may be sent to is
/// [`refuse_remote`]'s to say.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let (scheme, addr) = text
        .split_once("://")
        .ok_or_else(|| format!("target {text:?} must look like udp://127.0.0.1:5514"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("target {text:?}: {addr:?} is not IP:PORT"))?;
    match scheme {
        "udp" => Ok(Target::Udp(addr)),
        "tcp" => Ok(Target::Tcp(addr)),
        "relp" => Ok(Target::Relp(addr)),
        "tls" => Ok(Target::Tls(addr)),
        _ => Err(format!(
            "target {text:?}: scheme must be udp, tcp, relp or tls"
        )),
    }
}

/// Refuses addresses that are not loopback (`what` names them) unless
/// `allow` (`run --allow-remote`): the harness is a load generator, and a
/// typo must never point it at someone else's network; sending to an
/// appliance on another machine is asked for by name.
pub fn refuse_remote(addrs: &[(String, SocketAddr)], allow: bool) -> anyhow::Result<()> {
    let remote: Vec<&str> = addrs
        .iter()
        .filter(|(_, a)| !a.ip().is_loopback())
        .map(|(what, _)| what.as_str())
        .collect();
    if remote.is_empty() || allow {
        return Ok(());
    }
    anyhow::bail!(
        "not a loopback address: {}; a load generator sends to another machine only when asked: add --allow-remote",
        remote.join(", ")
    )
}

/// How TCP (and TLS) frames are delimited (RFC 6587).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Framing {
    /// Each message followed by LF.
    Lf,
    /// `LEN SP MSG`.
    OctetCounting,
}

/// What to send and how.
#[derive(Debug, Clone)]
pub struct SendConfig {
    pub targets: Vec<Target>,
    pub schedule: Schedule,
    /// Events to send from the start of the corpus.
    pub events: u64,
    /// Stop after this long even if events remain (flat-out runs).
    pub duration_ns: Option<i64>,
    pub connections: usize,
    pub framing: Framing,
    /// RELP window and TLS client settings.
    pub session: SessionOptions,
    /// Print a progress line on stderr once per second.
    pub progress: bool,
    /// Paced runs: at most one write every this long, of every line due
    /// by then (0: a write as soon as a line falls due). Latency still
    /// counts from each line's intended time, so the wait is charged to
    /// the appliance, as a sender's batching is in the field.
    pub flush_interval_ns: i64,
    /// Threads that send, each over its share of the connections (at
    /// most one per connection); 1: one thread sends over all of them.
    pub sender_threads: usize,
}

/// Settings of the session transports (RELP, TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOptions {
    /// Most unacknowledged RELP frames per connection.
    pub relp_window: usize,
    pub tls: TlsOptions,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            relp_window: RELP_WINDOW_DEFAULT,
            tls: TlsOptions::default(),
        }
    }
}

/// When one scenario's completing event left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CompletingSend {
    pub truth_index: usize,
    pub corpus_index: u64,
    /// Intended send time (paced) or actual send time (flat out).
    pub origin_ns: i64,
    pub sent_ns: i64,
}

/// What the sender did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SendResult {
    pub sent: u64,
    pub send_errors: u64,
    pub bytes: u64,
    pub started_ns: i64,
    pub finished_ns: i64,
    /// Largest lag behind schedule seen at a batch start.
    pub behind_max_ns: i64,
    /// Writes (TCP, TLS), `sendmmsg` batches (UDP) or RELP batches made.
    pub writes: u64,
    pub completing: Vec<CompletingSend>,
    /// Events sent per [`TIMELINE_BUCKET_NS`] since the start.
    pub timeline: Vec<u64>,
    /// RELP sessions: acknowledgements and their latency (RELP targets only).
    pub relp: Option<RelpSummary>,
    /// The sending thread's scheduler counters over the send: how long it
    /// waited for a CPU (none where the kernel keeps no `schedstat`).
    pub sender_sched: Option<crate::machine::SchedStat>,
    /// The paced sender ran at real-time priority (where allowed).
    pub sender_realtime: bool,
    /// It gave that priority back, having fallen
    /// [`SENDER_RT_BEHIND_MAX_NS`] behind schedule.
    pub sender_realtime_dropped: bool,
    /// Threads that sent (`sender_sched` sums theirs; `sender_realtime`:
    /// every one ran at real-time priority).
    pub sender_threads: usize,
}

/// A paced sender runs at real-time priority, so that the machine's other
/// threads (on a small machine: the appliance's I/O threads, the kernel's
/// writeback) do not hold it past its schedule. One that falls this far
/// behind anyway cannot keep the rate, and would take its CPU from
/// everything else while it catches up: it goes back to normal priority.
pub const SENDER_RT_BEHIND_MAX_NS: i64 = 20_000_000;

impl SendResult {
    pub fn duration_s(&self) -> f64 {
        (self.finished_ns - self.started_ns).max(1) as f64 / 1e9
    }
}

enum Lane {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Relp(Box<RelpLane>),
    Tls(Box<TlsStream>),
}

fn open_lanes(
    targets: &[Target],
    connections: usize,
    session: &SessionOptions,
) -> anyhow::Result<Vec<Lane>> {
    if targets.is_empty() {
        bail!("no --target given");
    }
    if connections == 0 || connections > CONNECTIONS_MAX {
        bail!("--connections must be between 1 and {CONNECTIONS_MAX}");
    }
    let tls_config = if targets.iter().any(|t| matches!(t, Target::Tls(_))) {
        Some(tls_client::config(&session.tls)?)
    } else {
        None
    };
    let mut lanes = Vec::new();
    for target in targets {
        for _ in 0..connections {
            match *target {
                Target::Udp(addr) => {
                    let bind: SocketAddr = if addr.is_ipv4() {
                        "127.0.0.1:0".parse()?
                    } else {
                        "[::1]:0".parse()?
                    };
                    let socket = UdpSocket::bind(bind).context("cannot bind a UDP socket")?;
                    socket
                        .connect(addr)
                        .with_context(|| format!("cannot connect UDP to {addr}"))?;
                    // SAFETY: setsockopt on a socket this function owns, with
                    // a pointer to a live c_int and its exact size.
                    unsafe {
                        libc::setsockopt(
                            socket.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_SNDBUF,
                            (&UDP_SNDBUF_BYTES as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                        );
                    }
                    lanes.push(Lane::Udp(socket));
                }
                Target::Tcp(addr) => {
                    let stream = TcpStream::connect(addr)
                        .with_context(|| format!("cannot connect TCP to {addr}"))?;
                    stream.set_nodelay(true)?;
                    lanes.push(Lane::Tcp(stream));
                }
                Target::Relp(addr) => {
                    lanes.push(Lane::Relp(Box::new(RelpLane::connect(
                        addr,
                        session.relp_window,
                    )?)));
                }
                Target::Tls(addr) => {
                    let config = tls_config.clone().expect("built above for TLS targets");
                    lanes.push(Lane::Tls(Box::new(tls_client::connect(
                        addr,
                        config,
                        &session.tls.server_name,
                    )?)));
                }
            }
        }
    }
    Ok(lanes)
}

/// Sends `lines` as one `sendmmsg` batch; returns how many left and how many
/// failed for good.
fn send_udp_batch(socket: &UdpSocket, lines: &[&[u8]]) -> (u64, u64) {
    debug_assert!(lines.len() <= UDP_BATCH_MAX);
    let mut iovecs: [libc::iovec; UDP_BATCH_MAX] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; UDP_BATCH_MAX];
    // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
    let mut headers: [libc::mmsghdr; UDP_BATCH_MAX] = unsafe { std::mem::zeroed() };
    for (i, line) in lines.iter().enumerate() {
        iovecs[i].iov_base = line.as_ptr() as *mut libc::c_void;
        iovecs[i].iov_len = line.len();
        headers[i].msg_hdr.msg_iov = &mut iovecs[i];
        headers[i].msg_hdr.msg_iovlen = 1;
    }
    let (mut done, mut failed, mut retries) = (0usize, 0u64, 0u32);
    while done < lines.len() {
        // SAFETY: headers[done..len] point at iovecs that point into `lines`,
        // all alive for this call; the socket is connected so no address.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                headers[done..].as_mut_ptr(),
                (lines.len() - done) as libc::c_uint,
                0,
            )
        };
        if n > 0 {
            done += n as usize;
            retries = 0;
            continue;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        retries += 1;
        if retries >= UDP_RETRIES_MAX {
            // ECONNREFUSED (nobody listening) or a persistent ENOBUFS: give
            // this datagram up as a counted error and carry on.
            done += 1;
            failed += 1;
            retries = 0;
        } else {
            clock::sleep_ns(50_000);
        }
    }
    (lines.len() as u64 - failed, failed)
}

fn frame(line: &[u8], framing: Framing, out: &mut Vec<u8>) {
    match framing {
        Framing::Lf => {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        Framing::OctetCounting => {
            let _ = write!(out, "{} ", line.len());
            out.extend_from_slice(line);
        }
    }
}

/// Frames corpus lines `next..end` into `buffer` (cleared first) until it
/// holds [`TCP_WRITE_BYTES_MAX`]; returns the index after the last line
/// taken. One write's worth for a TCP or TLS lane.
fn fill_stream_buffer(
    corpus: &Corpus,
    next: u64,
    end: u64,
    framing: Framing,
    buffer: &mut Vec<u8>,
) -> u64 {
    buffer.clear();
    let mut cut = next;
    while cut < end && buffer.len() < TCP_WRITE_BYTES_MAX {
        frame(corpus.line(cut as usize), framing, buffer);
        cut += 1;
    }
    cut
}

/// Which corpus lines one sender thread sends: with `workers` threads,
/// thread `worker` takes every `workers`-th stripe of [`STRIPE_LINES`]
/// lines (one thread: all of them). Striping keeps every thread near the
/// same point of the corpus, so event times stay as close together on
/// the wire as with one thread, and a paced schedule holds for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stripes {
    worker: u64,
    workers: u64,
}

impl Stripes {
    fn first(&self) -> u64 {
        if self.workers == 1 {
            0
        } else {
            self.worker * STRIPE_LINES
        }
    }

    /// The end of the stripe that holds `line`.
    fn end_of(&self, line: u64) -> u64 {
        if self.workers == 1 {
            u64::MAX
        } else {
            (line / STRIPE_LINES + 1) * STRIPE_LINES
        }
    }

    /// Where to go on from `line`, the first line not yet sent: itself,
    /// or the start of this thread's next stripe.
    fn next_from(&self, line: u64) -> u64 {
        if self.workers == 1 || !line.is_multiple_of(STRIPE_LINES) {
            line
        } else {
            line + (self.workers - 1) * STRIPE_LINES
        }
    }
}

/// Sends the first `config.events` lines of `corpus`. `sent_counter` is
/// updated as batches leave and `alerts_seen` read for progress lines.
/// With `config.sender_threads` above one, the connections are dealt to
/// that many threads and each sends its stripes of the corpus
/// ([`Stripes`]) over its own connections.
pub fn send(
    corpus: &Corpus,
    config: &SendConfig,
    sent_counter: &Arc<AtomicU64>,
    alerts_seen: &Arc<AtomicU64>,
) -> anyhow::Result<SendResult> {
    let lanes = open_lanes(&config.targets, config.connections, &config.session)?;
    // Completing events in corpus order, so a sender walks them with one
    // cursor instead of a lookup per event.
    let mut completing: Vec<(u64, usize)> = corpus
        .truth
        .expected
        .iter()
        .enumerate()
        .map(|(t, e)| (e.completing_index, t))
        .collect();
    completing.sort_unstable();
    let threads = config.sender_threads.clamp(1, lanes.len());
    if threads == 1 {
        let stop = AtomicBool::new(false);
        let whole = Stripes {
            worker: 0,
            workers: 1,
        };
        let (mut result, relp) = send_stripes(
            corpus,
            config,
            lanes,
            whole,
            &completing,
            (sent_counter, alerts_seen, &stop),
        )?;
        result.relp = relp.map(|r| r.summary());
        result.sender_threads = 1;
        return Ok(result);
    }
    let mut dealt: Vec<Vec<Lane>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, lane) in lanes.into_iter().enumerate() {
        dealt[i % threads].push(lane);
    }
    // A thread that fails stops the others at their next batch.
    let stop = AtomicBool::new(false);
    let parts: Vec<anyhow::Result<(SendResult, Option<RelpStats>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = dealt
            .into_iter()
            .enumerate()
            .map(|(worker, lanes)| {
                let stripes = Stripes {
                    worker: worker as u64,
                    workers: threads as u64,
                };
                let (completing, stop) = (&completing, &stop);
                std::thread::Builder::new()
                    .name(format!("sender-{worker}"))
                    .spawn_scoped(scope, move || {
                        let r = send_stripes(
                            corpus,
                            config,
                            lanes,
                            stripes,
                            completing,
                            (sent_counter, alerts_seen, stop),
                        );
                        if r.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        r
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a sender thread panicked"))),
                Err(e) => Err(anyhow::Error::from(e).context("cannot start a sender thread")),
            })
            .collect()
    });
    let mut results = Vec::with_capacity(threads);
    let mut relp: Option<RelpStats> = None;
    for part in parts {
        let (result, stats) = part?;
        if let Some(stats) = stats {
            relp.get_or_insert_with(RelpStats::default).merge(&stats);
        }
        results.push(result);
    }
    let mut result = SendResult::merge(results);
    result.relp = relp.map(|r| r.summary());
    Ok(result)
}

impl SendResult {
    /// One result from the sender threads' results: counts summed, the
    /// span from the first start to the last finish, the timelines added
    /// bucket by bucket, the completing events in corpus order.
    fn merge(parts: Vec<SendResult>) -> SendResult {
        let mut all = SendResult {
            started_ns: parts.iter().map(|p| p.started_ns).min().unwrap_or(0),
            finished_ns: parts.iter().map(|p| p.finished_ns).max().unwrap_or(0),
            sender_threads: parts.len(),
            sender_realtime: !parts.is_empty() && parts.iter().all(|p| p.sender_realtime),
            ..SendResult::default()
        };
        let mut sched = Some(crate::machine::SchedStat::default());
        for p in parts {
            all.sent += p.sent;
            all.send_errors += p.send_errors;
            all.bytes += p.bytes;
            all.writes += p.writes;
            all.behind_max_ns = all.behind_max_ns.max(p.behind_max_ns);
            all.sender_realtime_dropped |= p.sender_realtime_dropped;
            all.completing.extend(p.completing);
            if all.timeline.len() < p.timeline.len() {
                all.timeline.resize(p.timeline.len(), 0);
            }
            for (sum, n) in all.timeline.iter_mut().zip(&p.timeline) {
                *sum += n;
            }
            sched = sched.zip(p.sender_sched).map(|(a, b)| a.plus(&b));
        }
        all.completing.sort_unstable_by_key(|c| c.corpus_index);
        all.sender_sched = sched;
        all
    }
}

/// Counters the sender threads share: lines sent, alerts seen (for the
/// progress line), and the flag that stops them all.
type Shared<'a> = (&'a AtomicU64, &'a AtomicU64, &'a AtomicBool);

/// One sender thread: sends the lines of its `stripes` over its `lanes`,
/// in turn, and closes them. Its RELP counters come back beside.
fn send_stripes(
    corpus: &Corpus,
    config: &SendConfig,
    mut lanes: Vec<Lane>,
    stripes: Stripes,
    completing: &[(u64, usize)],
    (sent_counter, alerts_seen, stop): Shared<'_>,
) -> anyhow::Result<(SendResult, Option<RelpStats>)> {
    let total = config.events.min(corpus.len() as u64);
    let mut cursor = 0usize;
    let schedule = config.schedule;
    let mut result = SendResult {
        started_ns: schedule.t0_ns,
        ..SendResult::default()
    };
    let batch_max = if lanes.iter().all(|l| matches!(l, Lane::Udp(_))) {
        UDP_BATCH_MAX
    } else if lanes.iter().any(|l| matches!(l, Lane::Relp(_))) {
        // A RELP batch may wait for answers: keep it to one window so the
        // duration and progress lines are checked on time.
        config.session.relp_window.clamp(1, 4096)
    } else {
        // TCP batches are cut by bytes below; this only bounds the loop.
        4096
    };
    // Only the first thread prints progress, of all threads' lines.
    let progress = config.progress && stripes.worker == 0;
    let mut lines: Vec<&[u8]> = Vec::with_capacity(batch_max);
    let mut buffer: Vec<u8> = Vec::with_capacity(TCP_WRITE_BYTES_MAX + 1024);
    let mut next = stripes.first();
    let mut lane = 0usize;
    let mut last_progress_ns = schedule.t0_ns;
    let mut last_progress_sent = 0u64;
    let mut last_write_ns = i64::MIN / 2;
    let _precise = clock::PreciseSleep::begin();
    let sched_before = crate::machine::SchedStat::of_this_thread();
    let mut realtime = schedule
        .rate_eps
        .map(|_| clock::RealtimeTurn::begin(clock::SENDER_RT_PRIORITY));
    result.sender_realtime = realtime.as_ref().is_some_and(|r| r.granted());
    while next < total {
        if crate::interrupt::interrupted() || stop.load(Ordering::Relaxed) {
            // The harness is being stopped by a signal (closing the
            // connections now lets the appliance stop without draining
            // them), or another sender thread failed.
            break;
        }
        let now = clock::now_ns();
        if let Some(limit) = config.duration_ns {
            if now - schedule.t0_ns >= limit {
                break;
            }
        }
        if progress && now - last_progress_ns >= 1_000_000_000 {
            let sent = sent_counter.load(Ordering::Relaxed);
            let rate = (sent - last_progress_sent) as f64 * 1e9 / (now - last_progress_ns) as f64;
            eprintln!(
                "shardwatch-load: {:6.1}s sent {sent} ({rate:.0}/s) behind {:.1} ms alerts {}",
                (now - schedule.t0_ns) as f64 / 1e9,
                (now - schedule.intended_ns(next)).max(0) as f64 / 1e6,
                alerts_seen.load(Ordering::Relaxed)
            );
            last_progress_ns = now;
            last_progress_sent = sent;
        }
        let due = schedule.due(now, total);
        if due <= next {
            clock::sleep_ns(schedule.sleep_ns(next, now, SLEEP_NS_MAX));
            continue;
        }
        if schedule.rate_eps.is_some() && now < last_write_ns + config.flush_interval_ns {
            // Lines are due, but the last write was too recent: they wait
            // for the next flush with the lines falling due meanwhile.
            clock::sleep_ns((last_write_ns + config.flush_interval_ns - now).min(SLEEP_NS_MAX));
            continue;
        }
        last_write_ns = now;
        if schedule.rate_eps.is_some() {
            let behind = now - schedule.intended_ns(next);
            result.behind_max_ns = result.behind_max_ns.max(behind);
            if behind > SENDER_RT_BEHIND_MAX_NS {
                if let Some(turn) = realtime.as_mut().filter(|t| t.granted()) {
                    turn.end();
                    result.sender_realtime_dropped = true;
                }
            }
        }
        let end = due.min(next + batch_max as u64).min(stripes.end_of(next));
        let (sent, failed, bytes) = match &mut lanes[lane] {
            Lane::Udp(socket) => {
                lines.clear();
                let mut bytes = 0u64;
                for i in next..end {
                    let line = corpus.line(i as usize);
                    bytes += line.len() as u64;
                    lines.push(line);
                }
                let (_, failed) = send_udp_batch(socket, &lines);
                (end - next, failed, bytes)
            }
            Lane::Tcp(stream) => {
                let cut = fill_stream_buffer(corpus, next, end, config.framing, &mut buffer);
                stream
                    .write_all(&buffer)
                    .context("TCP write failed (did the appliance close the connection?)")?;
                (cut - next, 0, buffer.len() as u64)
            }
            Lane::Tls(stream) => {
                let cut = fill_stream_buffer(corpus, next, end, config.framing, &mut buffer);
                stream
                    .write_all(&buffer)
                    .context("TLS write failed (did the appliance close the connection?)")?;
                (cut - next, 0, buffer.len() as u64)
            }
            Lane::Relp(relp) => {
                let bytes = relp.send((next..end).map(|i| corpus.line(i as usize)))?;
                (end - next, 0, bytes)
            }
        };
        let sent_ns = clock::now_ns();
        let batch_end = next + sent;
        while cursor < completing.len() && completing[cursor].0 < batch_end {
            let (corpus_index, truth_index) = completing[cursor];
            if corpus_index >= next {
                result.completing.push(CompletingSend {
                    truth_index,
                    corpus_index,
                    origin_ns: schedule.latency_origin_ns(corpus_index, sent_ns),
                    sent_ns,
                });
            }
            cursor += 1;
        }
        let bucket = ((sent_ns - schedule.t0_ns).max(0) / TIMELINE_BUCKET_NS) as usize;
        if bucket < TIMELINE_BUCKETS_MAX {
            if result.timeline.len() <= bucket {
                result.timeline.resize(bucket + 1, 0);
            }
            result.timeline[bucket] += sent - failed;
        }
        result.sent += sent - failed;
        result.writes += 1;
        result.send_errors += failed;
        result.bytes += bytes;
        sent_counter.fetch_add(sent - failed, Ordering::Relaxed);
        next = stripes.next_from(batch_end);
        lane = (lane + 1) % lanes.len();
    }
    result.sender_sched = sched_before
        .zip(crate::machine::SchedStat::of_this_thread())
        .map(|(before, after)| after.since(&before));
    drop(realtime);
    let mut relp: Option<RelpStats> = None;
    for lane in lanes {
        match lane {
            Lane::Tcp(mut stream) => {
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
            Lane::Tls(mut stream) => tls_client::close(&mut stream),
            Lane::Relp(lane) => relp
                .get_or_insert_with(RelpStats::default)
                .merge(&lane.finish()),
            Lane::Udp(_) => {}
        }
    }
    // For RELP this is after every answer came back (close is answered
    // last), so a flat-out rate is an acknowledged rate.
    result.finished_ns = clock::now_ns();
    Ok((result, relp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{default_scenarios, generate, GenConfig, DEFAULT_START_NS};
    use std::io::Read;

    #[test]
    fn targets_must_be_well_formed_and_remote_ones_asked_for() {
        assert_eq!(
            parse_target("udp://127.0.0.1:5514"),
            Ok(Target::Udp("127.0.0.1:5514".parse().unwrap()))
        );
        assert!(parse_target("tcp://[::1]:9").is_ok());
        for bad in [
            "127.0.0.1:5514",
            "http://127.0.0.1:1",
            "udp://localhost:1",
            "udp://127.0.0.1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        // Another machine's address parses, and is refused unless asked
        // for.
        let remote = parse_target("tcp://10.0.0.1:514").unwrap();
        assert_eq!(remote.addr(), "10.0.0.1:514".parse().unwrap());
        let addrs = |targets: &[Target]| -> Vec<(String, SocketAddr)> {
            targets.iter().map(|t| (t.to_string(), t.addr())).collect()
        };
        let local = parse_target("udp://127.0.0.2:514").unwrap();
        assert!(refuse_remote(&addrs(std::slice::from_ref(&local)), false).is_ok());
        let both = [
            local,
            remote,
            parse_target("tls://[2001:db8::1]:6514").unwrap(),
        ];
        let err = refuse_remote(&addrs(&both), false).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "not a loopback address: tcp://10.0.0.1:514, tls://[2001:db8::1]:6514;"
            ) && err.ends_with("add --allow-remote"),
            "{err}"
        );
        assert!(refuse_remote(&addrs(&both), true).is_ok());
    }

    #[test]
    fn octet_counting_frames() {
        let mut out = Vec::new();
        frame(b"hello", Framing::OctetCounting, &mut out);
        frame(b"x", Framing::Lf, &mut out);
        assert_eq!(out, b"5 hellox\n");
    }

    fn small_corpus() -> Corpus {
        generate(&GenConfig {
            events: 2_000,
            entities: 20,
            seed: 4,
            start_ns: DEFAULT_START_NS,
            event_rate: 100.0,
            scenarios: default_scenarios(),
        })
        .unwrap()
    }

    /// A loopback listener that takes `connections` connections and reads
    /// each to its end; the reader returns all the bytes. One reader per
    /// connection: reading them in turn could stall the sender on the
    /// unread one's full buffer.
    fn tcp_sink(connections: usize) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let readers: Vec<_> = (0..connections)
                .map(|_| {
                    let (mut s, _) = listener.accept().unwrap();
                    std::thread::spawn(move || {
                        let mut buf = Vec::new();
                        s.read_to_end(&mut buf).unwrap();
                        buf
                    })
                })
                .collect();
            readers
                .into_iter()
                .flat_map(|r| r.join().unwrap())
                .collect::<Vec<u8>>()
        });
        (addr, reader)
    }

    /// A send of the first `events` lines to `target`, LF-framed, starting
    /// now.
    fn config(
        target: Target,
        rate_eps: Option<f64>,
        events: u64,
        connections: usize,
        flush_interval_ns: i64,
    ) -> SendConfig {
        SendConfig {
            targets: vec![target],
            schedule: Schedule {
                t0_ns: clock::now_ns(),
                rate_eps,
            },
            events,
            duration_ns: None,
            connections,
            framing: Framing::Lf,
            session: SessionOptions::default(),
            progress: false,
            flush_interval_ns,
            sender_threads: 1,
        }
    }

    #[test]
    fn stripes_give_every_line_to_exactly_one_thread() {
        let total = STRIPE_LINES * 7 + 123;
        for workers in 1..=5u64 {
            let mut seen = vec![0u8; total as usize];
            for worker in 0..workers {
                let stripes = Stripes { worker, workers };
                let mut next = stripes.first();
                // Batches of an awkward size, cut at the stripe's end as
                // the sender cuts them.
                while next < total {
                    let end = (next + 1000).min(stripes.end_of(next)).min(total);
                    for line in next..end {
                        seen[line as usize] += 1;
                    }
                    next = stripes.next_from(end);
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{workers} workers");
        }
    }

    #[test]
    fn several_sender_threads_send_every_line_once_with_every_completion() {
        let corpus = generate(&GenConfig {
            events: 20_000,
            entities: 50,
            seed: 9,
            start_ns: DEFAULT_START_NS,
            event_rate: 1_000.0,
            scenarios: default_scenarios(),
        })
        .unwrap();
        let (addr, reader) = tcp_sink(4);
        let mut config = config(Target::Tcp(addr), None, 20_000, 4, 0);
        config.sender_threads = 3;
        let counter = Arc::new(AtomicU64::new(0));
        let result = send(&corpus, &config, &counter, &Arc::new(AtomicU64::new(0))).unwrap();
        assert_eq!(result.sender_threads, 3);
        assert_eq!(result.sent, 20_000);
        assert_eq!(counter.load(Ordering::Relaxed), 20_000);
        assert_eq!(result.timeline.iter().sum::<u64>(), 20_000);
        let bytes = reader.join().unwrap();
        assert_eq!(bytes.len() as u64, result.bytes);
        let mut received: Vec<&[u8]> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let mut expected: Vec<&[u8]> = (0..20_000).map(|i| corpus.line(i)).collect();
        received.sort_unstable();
        expected.sort_unstable();
        assert!(
            received == expected,
            "the lines received are not the corpus's"
        );
        // Every expected alert's completing event once, in corpus order
        // (one event may complete several).
        let due = corpus
            .truth
            .expected
            .iter()
            .filter(|e| e.completing_index < 20_000)
            .count();
        assert!(due > 0);
        assert_eq!(result.completing.len(), due);
        assert!(result
            .completing
            .windows(2)
            .all(|w| w[0].corpus_index <= w[1].corpus_index));
        for c in &result.completing {
            assert_eq!(
                corpus.truth.expected[c.truth_index].completing_index,
                c.corpus_index
            );
        }
        // More threads than connections: one per connection.
        let (addr, reader) = tcp_sink(2);
        let mut config = self::config(Target::Tcp(addr), None, 10_000, 2, 0);
        config.sender_threads = 8;
        let result = send(&corpus, &config, &counter, &Arc::new(AtomicU64::new(0))).unwrap();
        assert_eq!((result.sender_threads, result.sent), (2, 10_000));
        reader.join().unwrap();
    }

    #[test]
    fn udp_paced_send_delivers_every_datagram_and_records_completions() {
        let corpus = small_corpus();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rcvbuf: libc::c_int = 4 * 1024 * 1024;
        // SAFETY: setsockopt on a socket this test owns, with a pointer to a
        // live c_int and its exact size.
        unsafe {
            libc::setsockopt(
                server.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let addr = server.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut n = 0u64;
            while server.recv(&mut buf).is_ok() {
                n += 1;
            }
            n
        });
        let config = config(Target::Udp(addr), Some(20_000.0), 1_000, 1, 0);
        let counter = Arc::new(AtomicU64::new(0));
        let result = send(&corpus, &config, &counter, &Arc::new(AtomicU64::new(0))).unwrap();
        assert_eq!(result.sent, 1_000);
        let sent_truth = corpus
            .truth
            .expected
            .iter()
            .filter(|e| e.completing_index < 1_000)
            .count();
        assert_eq!(result.completing.len(), sent_truth);
        for c in &result.completing {
            assert!(c.origin_ns <= c.sent_ns);
            assert_eq!(c.origin_ns, config.schedule.intended_ns(c.corpus_index));
        }
        assert_eq!(result.timeline.iter().sum::<u64>(), 1_000);
        // At 20k/s, 1,000 events take about 50 ms; never less.
        assert!(result.duration_s() >= 0.049, "{}", result.duration_s());
        // A paced sender may run at real-time priority, never after it.
        // SAFETY: reads the calling thread's policy.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
        assert!(!result.sender_realtime_dropped || result.sender_realtime);
        // 1,000 datagrams (each charged about 1 KiB of buffer on loopback)
        // fit the enlarged receive buffer, so none is lost even when the
        // reader thread is starved of CPU.
        assert_eq!(reader.join().unwrap(), 1_000, "loopback UDP lost datagrams");
    }

    /// With a flush interval a paced sender writes at most once per
    /// interval, all lines due by then, and still charges each line from
    /// its intended send time.
    #[test]
    fn tcp_paced_flushes_at_most_once_per_interval() {
        let corpus = small_corpus();
        let (addr, reader) = tcp_sink(1);
        let interval_ns = 20_000_000;
        let config = config(Target::Tcp(addr), Some(10_000.0), 2_000, 1, interval_ns);
        let counter = Arc::new(AtomicU64::new(0));
        let result = send(&corpus, &config, &counter, &Arc::new(AtomicU64::new(0))).unwrap();
        assert_eq!(result.sent, 2_000);
        // About 200 ms at 10k/s: ten or eleven writes, never one per line.
        let span_ns = result.finished_ns - result.started_ns;
        assert!(
            result.writes as i64 <= span_ns / interval_ns + 2,
            "{} writes in {span_ns} ns",
            result.writes
        );
        for c in &result.completing {
            assert_eq!(c.origin_ns, config.schedule.intended_ns(c.corpus_index));
            assert!(c.origin_ns <= c.sent_ns);
        }
        let bytes = reader.join().unwrap();
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 2_000);
    }

    #[test]
    fn tcp_flat_out_sends_lf_framed_lines() {
        let corpus = small_corpus();
        let (addr, reader) = tcp_sink(2);
        let config = config(Target::Tcp(addr), None, 1_500, 2, 0);
        let counter = Arc::new(AtomicU64::new(0));
        let result = send(&corpus, &config, &counter, &Arc::new(AtomicU64::new(0))).unwrap();
        assert_eq!(result.sent, 1_500);
        let bytes = reader.join().unwrap();
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1_500);
        assert_eq!(bytes.len() as u64, result.bytes);
    }
}
