//! The RELP client lane: one RELP session over one TCP connection, as
//! librelp (rsyslog's omrelp) runs it, with the protocol itself from
//! `shardwatch_net::relp`.
//!
//! `1 open` with the offers, wait for its `rsp 200`, then `syslog` frames
//! with TXNRs 2, 3, ... and at most `window` of them unacknowledged; at the
//! end `close`, and wait for its answer. A reader thread takes the server's
//! `rsp` frames as they arrive, so the time from writing a frame to reading
//! its answer (the ack latency) is measured where the answer lands, not
//! when the sender next looks.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use shardwatch_net::relp::{self, RelpCommand, RelpFrame, RelpFramer};

use crate::clock;
use crate::hist::{LatencyHistogram, LatencySummary};

/// librelp's default window of unacknowledged frames.
pub const RELP_WINDOW_DEFAULT: usize = 128;
/// Largest `--relp-window`: the answers to a full window (about 14 bytes
/// each) must fit the client's receive buffer, or client and server could
/// both block on writes.
pub const RELP_WINDOW_MAX: usize = 65_536;
/// How long to wait for an answer before declaring the session broken
/// (librelp's default timeout).
pub const RELP_TIMEOUT_NS: i64 = 90_000_000_000;
/// Largest write the lane builds before writing.
const WRITE_BYTES_MAX: usize = 256 * 1024;
/// The offers of `open`.
pub const OPEN_OFFERS: &[u8] = b"relp_version=0\nrelp_software=shardwatch-load\ncommands=syslog";

/// What one or more RELP sessions saw.
#[derive(Debug, Clone, Default)]
pub struct RelpStats {
    pub sessions: u64,
    /// `syslog` frames written.
    pub sent: u64,
    /// Answered `200`.
    pub acked: u64,
    /// Answered with another status (or none parsable).
    pub refused: u64,
    /// `rsp` frames whose TXNR matched nothing outstanding.
    pub unexpected: u64,
    /// Sessions whose `close` was answered.
    pub closed_cleanly: u64,
    /// Sessions on which the server sent `serverclose`.
    pub serverclose: u64,
    /// Write of a frame to the read of its answer.
    pub ack_latency: LatencyHistogram,
    /// Why sessions ended early (reader errors), if any.
    pub errors: Vec<String>,
}

impl RelpStats {
    pub fn merge(&mut self, other: &RelpStats) {
        self.sessions += other.sessions;
        self.sent += other.sent;
        self.acked += other.acked;
        self.refused += other.refused;
        self.unexpected += other.unexpected;
        self.closed_cleanly += other.closed_cleanly;
        self.serverclose += other.serverclose;
        self.ack_latency.merge(&other.ack_latency);
        self.errors.extend(other.errors.iter().cloned());
    }

    pub fn summary(&self) -> RelpSummary {
        RelpSummary {
            sessions: self.sessions,
            sent: self.sent,
            acked: self.acked,
            refused: self.refused,
            unacked: self.sent.saturating_sub(self.acked + self.refused),
            unexpected: self.unexpected,
            closed_cleanly: self.closed_cleanly,
            serverclose: self.serverclose,
            ack_latency: self.ack_latency.summary(),
            errors: self.errors.clone(),
        }
    }
}

/// The report form of [`RelpStats`].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RelpSummary {
    pub sessions: u64,
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    /// Sent but neither acknowledged nor refused when the session ended.
    pub unacked: u64,
    pub unexpected: u64,
    pub closed_cleanly: u64,
    pub serverclose: u64,
    pub ack_latency: LatencySummary,
    pub errors: Vec<String>,
}

/// A frame awaiting its answer: `syslog` (with when it was written) or
/// `close`.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Syslog { sent_ns: i64 },
    Close,
}

#[derive(Debug, Default)]
struct State {
    outstanding: VecDeque<(u64, Pending)>,
    stats: RelpStats,
    close_acked: bool,
    /// Set when the reader stops: why.
    ended: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Books one frame from the server.
fn on_frame(state: &mut State, frame: RelpFrame<'_>, now_ns: i64) {
    match frame.command {
        RelpCommand::Rsp => {
            // The server answers in order, so this is nearly always the front.
            let Some(at) = state
                .outstanding
                .iter()
                .position(|&(txnr, _)| txnr == frame.txnr)
            else {
                state.stats.unexpected += 1;
                return;
            };
            let (_, pending) = state.outstanding.remove(at).expect("position is in range");
            match pending {
                Pending::Syslog { sent_ns } => {
                    state
                        .stats
                        .ack_latency
                        .record_us((now_ns - sent_ns) / 1_000);
                    if relp::rsp_status(frame.data) == Some(200) {
                        state.stats.acked += 1;
                    } else {
                        state.stats.refused += 1;
                    }
                }
                Pending::Close => state.close_acked = true,
            }
        }
        RelpCommand::ServerClose => state.stats.serverclose += 1,
        _ => {}
    }
}

fn read_answers(mut stream: TcpStream, mut framer: RelpFramer, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    let reason = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break "connection closed by the server".to_string(),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break format!("read failed: {e}"),
        };
        let now = clock::now_ns();
        let mut state = shared.lock();
        let fed = framer.feed(&buf[..n], |f| on_frame(&mut state, f, now));
        drop(state);
        shared.changed.notify_all();
        if let Err(e) = fed {
            break format!("bad frame from the server: {e}");
        }
    };
    shared.lock().ended = Some(reason);
    shared.changed.notify_all();
}

/// One RELP session.
pub struct RelpLane {
    stream: TcpStream,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    window: usize,
    next_txnr: u64,
    buffer: Vec<u8>,
    /// TXNRs of the frames in `buffer`.
    buffered: Vec<u64>,
    /// Outstanding frames when last looked (an upper bound: answers only
    /// shrink it).
    outstanding_seen: usize,
    sent: u64,
    timeout_ns: i64,
}

impl RelpLane {
    /// Connects, opens the session and starts the reader.
    pub fn connect(addr: SocketAddr, window: usize) -> anyhow::Result<RelpLane> {
        Self::connect_with_timeout(addr, window, RELP_TIMEOUT_NS)
    }

    fn connect_with_timeout(
        addr: SocketAddr,
        window: usize,
        timeout_ns: i64,
    ) -> anyhow::Result<RelpLane> {
        if window == 0 || window > RELP_WINDOW_MAX {
            bail!("--relp-window must be between 1 and {RELP_WINDOW_MAX}");
        }
        let mut stream =
            TcpStream::connect(addr).with_context(|| format!("cannot connect RELP to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut open = Vec::new();
        relp::write_frame(1, "open", OPEN_OFFERS, &mut open);
        stream.write_all(&open).context("RELP open failed")?;
        stream.set_read_timeout(Some(Duration::from_nanos(timeout_ns as u64)))?;
        let mut framer = RelpFramer::default();
        let mut answer: Option<(u64, String, Option<u16>)> = None;
        let mut buf = [0u8; 4096];
        while answer.is_none() {
            let n = stream
                .read(&mut buf)
                .with_context(|| format!("no answer to RELP open from {addr}"))?;
            if n == 0 {
                bail!("{addr} closed the connection instead of answering RELP open");
            }
            framer
                .feed(&buf[..n], |f| {
                    if answer.is_none() {
                        answer = Some((
                            f.txnr,
                            f.command.as_str().to_string(),
                            relp::rsp_status(f.data),
                        ));
                    }
                })
                .with_context(|| format!("bad answer to RELP open from {addr}"))?;
        }
        match answer {
            Some((1, command, Some(200))) if command == "rsp" => {}
            other => bail!("RELP open refused by {addr}: {other:?}"),
        }
        stream.set_read_timeout(None)?;
        let shared = Arc::new(Shared::default());
        shared.lock().stats.sessions = 1;
        let reader_stream = stream.try_clone()?;
        let reader_shared = shared.clone();
        let reader = std::thread::Builder::new()
            .name("relp-answers".into())
            .spawn(move || read_answers(reader_stream, framer, reader_shared))?;
        Ok(RelpLane {
            stream,
            shared,
            reader: Some(reader),
            window,
            next_txnr: 2,
            buffer: Vec::with_capacity(WRITE_BYTES_MAX + 1024),
            buffered: Vec::new(),
            outstanding_seen: 0,
            sent: 0,
            timeout_ns,
        })
    }

    /// Sends each line as a `syslog` frame, waiting for answers whenever the
    /// window is full; returns the bytes written.
    pub fn send<'a>(&mut self, lines: impl IntoIterator<Item = &'a [u8]>) -> anyhow::Result<u64> {
        let mut bytes = 0u64;
        for line in lines {
            if self.outstanding_seen + self.buffered.len() >= self.window {
                bytes += self.flush()?;
                self.wait_for_room()?;
            }
            relp::write_frame(self.next_txnr, "syslog", line, &mut self.buffer);
            self.buffered.push(self.next_txnr);
            self.next_txnr = relp::next_txnr(self.next_txnr);
            if self.buffer.len() >= WRITE_BYTES_MAX {
                bytes += self.flush()?;
            }
        }
        bytes += self.flush()?;
        Ok(bytes)
    }

    /// Writes the buffered frames, booking them as outstanding first so an
    /// answer can never arrive before its frame is known.
    fn flush(&mut self) -> anyhow::Result<u64> {
        if self.buffered.is_empty() {
            return Ok(0);
        }
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.ended {
                bail!("RELP session ended: {reason}");
            }
            let sent_ns = clock::now_ns();
            state.outstanding.extend(
                self.buffered
                    .iter()
                    .map(|&txnr| (txnr, Pending::Syslog { sent_ns })),
            );
            self.outstanding_seen = state.outstanding.len();
        }
        self.stream
            .write_all(&self.buffer)
            .context("RELP write failed (did the appliance close the connection?)")?;
        let bytes = self.buffer.len() as u64;
        self.sent += self.buffered.len() as u64;
        self.buffer.clear();
        self.buffered.clear();
        Ok(bytes)
    }

    /// Waits until fewer than `window` frames are unanswered.
    fn wait_for_room(&mut self) -> anyhow::Result<()> {
        let deadline = clock::now_ns() + self.timeout_ns;
        let mut state = self.shared.lock();
        while state.outstanding.len() >= self.window {
            if let Some(reason) = &state.ended {
                bail!("RELP session ended with the window full: {reason}");
            }
            let left = deadline - clock::now_ns();
            if left <= 0 {
                bail!(
                    "RELP: no answer within {} s with {} frames unanswered",
                    self.timeout_ns / 1_000_000_000,
                    state.outstanding.len()
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, Duration::from_nanos(left as u64))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        self.outstanding_seen = state.outstanding.len();
        Ok(())
    }

    /// Frames written and not yet answered.
    #[cfg(test)]
    fn outstanding(&self) -> usize {
        self.shared.lock().outstanding.len()
    }

    /// Sends `close`, waits for its answer (and so for every earlier one:
    /// answers come in order) and returns what the session saw. A session
    /// that broke is reported, not an error.
    pub fn finish(mut self) -> RelpStats {
        let mut errors = Vec::new();
        if let Err(e) = self.flush() {
            errors.push(format!("{e:#}"));
        }
        let close_txnr = self.next_txnr;
        self.shared
            .lock()
            .outstanding
            .push_back((close_txnr, Pending::Close));
        let mut close = Vec::new();
        relp::write_frame(close_txnr, "close", b"", &mut close);
        if let Err(e) = self.stream.write_all(&close) {
            errors.push(format!("RELP close failed: {e}"));
        }
        let deadline = clock::now_ns() + self.timeout_ns;
        {
            let mut state = self.shared.lock();
            while !state.close_acked && state.ended.is_none() {
                let left = deadline - clock::now_ns();
                if left <= 0 {
                    errors.push("RELP close was not answered in time".into());
                    break;
                }
                state = self
                    .shared
                    .changed
                    .wait_timeout(state, Duration::from_nanos(left as u64))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut state = self.shared.lock();
        let mut stats = std::mem::take(&mut state.stats);
        stats.sent = self.sent;
        if state.close_acked {
            stats.closed_cleanly = 1;
        } else if let Some(reason) = &state.ended {
            errors.push(format!(
                "RELP session ended before close was answered: {reason}"
            ));
        }
        stats.errors.extend(errors);
        stats
    }
}

impl Drop for RelpLane {
    fn drop(&mut self) {
        // The reader holds a clone of the socket: shut it down so the
        // reader's read returns and the thread ends.
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// How the test server answers.
    #[derive(Clone, Copy)]
    struct ServerBehaviour {
        /// Answer only once this many `syslog` frames are unanswered
        /// (then all of them), to check the client never exceeds its window.
        hold: usize,
        /// Refuse (500) every n-th message (0: none).
        refuse_every: u64,
    }

    struct TestServer {
        addr: SocketAddr,
        handle: JoinHandle<(Vec<Vec<u8>>, usize)>,
        /// Most `syslog` frames seen unanswered at once.
        max_unanswered: Arc<AtomicU64>,
        release: Arc<AtomicBool>,
    }

    /// A one-connection RELP server speaking `shardwatch_net::relp`.
    fn server(behaviour: ServerBehaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let max_unanswered = Arc::new(AtomicU64::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let (max, rel) = (max_unanswered.clone(), release.clone());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut framer = RelpFramer::default().check_sequence();
            let mut messages = Vec::new();
            let mut unanswered: Vec<u64> = Vec::new();
            let mut out = Vec::new();
            let mut closes = 0usize;
            let mut buf = [0u8; 8192];
            let mut n_syslog = 0u64;
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        0
                    }
                    Err(e) => panic!("{e}"),
                };
                let mut closed: Option<u64> = None;
                framer
                    .feed(&buf[..n], |f| match f.command {
                        RelpCommand::Open => {
                            relp::open_offers_ok(f.data).unwrap();
                            relp::write_open_response(f.txnr, &mut out);
                        }
                        RelpCommand::Syslog => {
                            messages.push(f.data.to_vec());
                            unanswered.push(f.txnr);
                        }
                        RelpCommand::Close => {
                            closed = Some(f.txnr);
                            closes += 1;
                        }
                        other => panic!("unexpected {other:?}"),
                    })
                    .unwrap();
                max.fetch_max(unanswered.len() as u64, Ordering::Relaxed);
                let answer_all = closed.is_some()
                    || unanswered.len() >= behaviour.hold
                    || rel.load(Ordering::Relaxed);
                if answer_all {
                    for txnr in unanswered.drain(..) {
                        n_syslog += 1;
                        if behaviour.refuse_every > 0
                            && n_syslog.is_multiple_of(behaviour.refuse_every)
                        {
                            relp::write_error(txnr, 500, "no", &mut out);
                        } else {
                            relp::write_ok(txnr, &mut out);
                        }
                    }
                }
                if let Some(close_txnr) = closed {
                    relp::write_ok(close_txnr, &mut out);
                }
                if !out.is_empty() {
                    s.write_all(&out).unwrap();
                    out.clear();
                }
                if closed.is_some() {
                    break;
                }
            }
            (messages, closes)
        });
        TestServer {
            addr,
            handle,
            max_unanswered,
            release,
        }
    }

    fn lines(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("<13>Jan  1 00:00:00 host app: message {i}").into_bytes())
            .collect()
    }

    #[test]
    fn every_message_is_acknowledged_and_close_is_answered() {
        let srv = server(ServerBehaviour {
            hold: 1,
            refuse_every: 0,
        });
        let mut lane = RelpLane::connect(srv.addr, 16).unwrap();
        let msgs = lines(1_000);
        let bytes = lane.send(msgs.iter().map(Vec::as_slice)).unwrap();
        assert!(bytes > 1_000 * 30);
        let stats = lane.finish();
        let (received, closes) = srv.handle.join().unwrap();
        assert_eq!(received, msgs);
        assert_eq!(closes, 1);
        assert_eq!(
            (stats.sent, stats.acked, stats.refused, stats.unexpected),
            (1_000, 1_000, 0, 0)
        );
        assert_eq!(stats.closed_cleanly, 1, "{:?}", stats.errors);
        assert!(stats.errors.is_empty(), "{:?}", stats.errors);
        assert_eq!(stats.ack_latency.summary().count, 1_000);
        assert_eq!(stats.summary().unacked, 0);
    }

    #[test]
    fn the_window_bounds_unanswered_frames() {
        // The server answers only when the whole window is outstanding: a
        // client that sent more than its window before waiting would show
        // more than 8 unanswered, one that waited for fewer would stall.
        let srv = server(ServerBehaviour {
            hold: 8,
            refuse_every: 0,
        });
        let mut lane = RelpLane::connect(srv.addr, 8).unwrap();
        let msgs = lines(100);
        lane.send(msgs.iter().map(Vec::as_slice)).unwrap();
        // 100 = 12 full windows + 4, which the server holds.
        let deadline = clock::now_ns() + 5_000_000_000;
        while lane.outstanding() != 4 && clock::now_ns() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lane.outstanding(), 4);
        srv.release.store(true, Ordering::Relaxed);
        let stats = lane.finish();
        let (received, _) = srv.handle.join().unwrap();
        assert_eq!(received.len(), 100);
        assert_eq!(srv.max_unanswered.load(Ordering::Relaxed), 8);
        assert_eq!((stats.sent, stats.acked), (100, 100));
        assert_eq!(stats.closed_cleanly, 1);
    }

    #[test]
    fn refusals_are_counted_apart_from_acks() {
        let srv = server(ServerBehaviour {
            hold: 1,
            refuse_every: 10,
        });
        let mut lane = RelpLane::connect(srv.addr, RELP_WINDOW_DEFAULT).unwrap();
        let msgs = lines(200);
        lane.send(msgs.iter().map(Vec::as_slice)).unwrap();
        let stats = lane.finish();
        srv.handle.join().unwrap();
        assert_eq!((stats.sent, stats.acked, stats.refused), (200, 180, 20));
        let mut total = RelpStats::default();
        total.merge(&stats);
        total.merge(&stats);
        assert_eq!((total.sessions, total.acked), (2, 360));
    }

    #[test]
    fn a_server_that_never_answers_times_out_with_a_full_window() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut out = Vec::new();
            relp::write_open_response(1, &mut out);
            // Wait for the open before answering it, then stay silent.
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(&out).unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
        // The same timeout bounds the open's answer, which the server
        // thread gives at once: 1 s leaves a loaded machine room to
        // schedule it, and the silent window then costs the test 1 s.
        let mut lane = RelpLane::connect_with_timeout(addr, 4, 1_000_000_000).unwrap();
        let msgs = lines(10);
        let err = lane.send(msgs.iter().map(Vec::as_slice)).unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err:#}");
        let stats = lane.finish();
        assert_eq!((stats.sent, stats.acked, stats.closed_cleanly), (4, 0, 0));
        assert_eq!(stats.summary().unacked, 4);
        srv.join().unwrap();
    }

    #[test]
    fn a_refused_open_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).unwrap();
            let mut out = Vec::new();
            relp::write_error(1, 500, "go away", &mut out);
            s.write_all(&out).unwrap();
        });
        let err = RelpLane::connect(addr, 4).err().expect("refused");
        assert!(err.to_string().contains("refused"), "{err:#}");
        srv.join().unwrap();
        assert!(RelpLane::connect(addr, 0).is_err());
    }
}
