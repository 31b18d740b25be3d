//! The RELP forward output: each alert as one RFC 5424 message in a RELP
//! `syslog` command (rsyslog's Reliable Event Logging Protocol, what its
//! `imrelp` input takes), optionally inside TLS.
//!
//! A batch is delivered when the receiver has answered `200 OK` to every
//! one of its commands: its application took each message, which the
//! syslog forward's TCP acknowledgement cannot say (a receiver that
//! crashes after its kernel acknowledged loses those). Commands go out in
//! windows of [`WINDOW`] (librelp's own client window), each window's
//! answers awaited for at most `outputs.forward_ack_timeout_s`. A missing
//! or negative answer, a `serverclose` or any framing error fails the
//! batch: the session is dropped, the output's cursor moves over the
//! leading alerts that were answered `200`, and the rest is sent again on
//! a new session (at least once, as every output: a command sent but not
//! answered may have been taken, and the alert id identifies a repeat).
//!
//! A session, as this client runs it:
//!
//! ```text
//! C: 1 open 62 relp_version=0\nrelp_software=shardwatch,0.1.0\ncommands=syslog
//! S: 1 rsp 92 200 OK\nrelp_version=0\nrelp_software=librelp,...\ncommands=syslog
//! C: 2 syslog 211 <131>1 2026-11-27T10:00:00Z host shardwatch - alert - {...}
//! C: 3 syslog ...
//! S: 2 rsp 6 200 OK
//! S: 3 rsp 6 200 OK
//! C: 4 close 0                      (when the output stops)
//! S: 4 rsp 6 200 OK
//! ```

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use shardwatch_net::relp::{
    next_txnr, open_offers_ok, rsp_status, write_frame, RelpCommand, RelpFramer,
};

use super::syslog::{local_hostname, message, resolve, CONNECT_TIMEOUT};
use super::{Connection, Deliver, Failure, OutputTls, TlsPeer};

/// Most `syslog` commands without an answer (librelp's default window).
pub const WINDOW: usize = 128;
/// Largest answer accepted from the receiver (an `open` answer lists a few
/// offers; a status answer is a few bytes).
const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// How long the output waits for the answer to `close` when it stops.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub struct RelpForward {
    addr: SocketAddr,
    hostname: String,
    tls: Option<TlsPeer>,
    session: Option<Session>,
    ack_wait: Duration,
}

impl RelpForward {
    /// Forwards to `target` (`host:port`), over TLS when `tls` is set (the
    /// receiver's certificate must carry `tls.server_name`, or the host of
    /// `target` when that is empty). A window of commands not answered
    /// within `ack_wait` fails the batch.
    pub fn new(
        target: &str,
        tls: Option<&OutputTls>,
        ack_wait: Duration,
    ) -> anyhow::Result<RelpForward> {
        Ok(RelpForward {
            tls: OutputTls::peer_of_target(tls, target, "RELP forward")?,
            addr: resolve(target, "RELP forward")?,
            hostname: local_hostname(),
            session: None,
            ack_wait,
        })
    }
}

/// One answer read from the receiver.
struct Answer {
    txnr: u64,
    command: RelpCommand,
    data: Vec<u8>,
}

/// An open RELP session.
struct Session {
    conn: Connection,
    framer: RelpFramer,
    /// TXNR of the last command sent.
    txnr: u64,
    read_buf: Vec<u8>,
}

impl Session {
    /// Connects, sends `open` and checks the answer: `200`, and `syslog`
    /// among the commands the receiver supports.
    fn open(addr: SocketAddr, tls: Option<&TlsPeer>, wait: Duration) -> anyhow::Result<Session> {
        let conn = Connection::open(addr, CONNECT_TIMEOUT, tls)?;
        let mut session = Session {
            conn,
            framer: RelpFramer::new(ANSWER_BYTES_MAX),
            txnr: 0,
            read_buf: vec![0; 16 * 1024],
        };
        let offers = format!(
            "relp_version=0\nrelp_software=shardwatch,{}\ncommands=syslog",
            env!("CARGO_PKG_VERSION")
        );
        let mut out = Vec::new();
        let txnr = session.frame("open", offers.as_bytes(), &mut out);
        session.send(&out)?;
        let mut answer = None;
        session.await_answers(&[txnr], wait, |a| answer = Some(a.data))?;
        let data = answer.unwrap_or_default();
        let status = rsp_status(&data);
        if status != Some(200) {
            bail!(
                "the receiver refused the RELP session: {}",
                status_text(&data)
            );
        }
        let offers = data
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&[][..], |lf| &data[lf + 1..]);
        if let Err(reason) = open_offers_ok(offers) {
            bail!(
                "the receiver's answer to RELP open is not usable ({reason}): {:?}",
                String::from_utf8_lossy(offers)
            );
        }
        Ok(session)
    }

    /// Appends a frame with the next TXNR; returns that TXNR.
    fn frame(&mut self, command: &str, data: &[u8], out: &mut Vec<u8>) -> u64 {
        self.txnr = next_txnr(self.txnr);
        write_frame(self.txnr, command, data, out);
        self.txnr
    }

    fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.conn
            .write_all(bytes)
            .and_then(|()| self.conn.flush())
            .context("RELP forward write failed")
    }

    /// Reads answers until every TXNR in `pending` has one, within `wait`;
    /// `on_answer` gets each. Fails at a negative status, an answer to
    /// nothing sent, `serverclose`, a framing error, a closed connection or
    /// the deadline.
    fn await_answers(
        &mut self,
        pending: &[u64],
        wait: Duration,
        mut on_answer: impl FnMut(Answer),
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        let mut waiting: std::collections::VecDeque<u64> = pending.iter().copied().collect();
        let mut answers = Vec::new();
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "the receiver has not answered {} of {} RELP commands within {wait:?}",
                    waiting.len(),
                    pending.len()
                );
            }
            self.conn.set_read_timeout(left)?;
            let n = match self.conn.read(&mut self.read_buf) {
                Ok(0) => bail!("the receiver closed the RELP session"),
                Ok(n) => n,
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(err) => return Err(err).context("reading the receiver's RELP answers"),
            };
            self.framer
                .feed(&self.read_buf[..n], |frame| {
                    answers.push(Answer {
                        txnr: frame.txnr,
                        command: frame.command,
                        data: frame.data.to_vec(),
                    });
                })
                .context("the receiver's RELP answers are malformed")?;
            for answer in answers.drain(..) {
                match answer.command {
                    RelpCommand::Rsp => {}
                    RelpCommand::ServerClose => bail!("the receiver closed the RELP session"),
                    other => bail!(
                        "the receiver sent RELP command {:?}, expected answers",
                        other.as_str()
                    ),
                }
                let Some(at) = waiting.iter().position(|&t| t == answer.txnr) else {
                    bail!(
                        "the receiver answered RELP TXNR {}, which is not waiting",
                        answer.txnr
                    );
                };
                waiting.remove(at);
                on_answer(answer);
            }
        }
        Ok(())
    }

    /// Sends `close` and waits a little for its answer (best effort).
    fn close(mut self) {
        let mut out = Vec::new();
        let txnr = self.frame("close", b"", &mut out);
        if self.send(&out).is_ok() {
            let _ = self.await_answers(&[txnr], CLOSE_WAIT, |_| {});
        }
        self.conn.close();
    }
}

/// A `rsp` frame's data up to its first LF, for messages.
fn status_text(data: &[u8]) -> String {
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    if text.is_empty() {
        "(no status)".into()
    } else {
        text.into_owned()
    }
}

impl RelpForward {
    /// Sends `lines` in windows; on failure, `confirmed` is how many
    /// leading lines the receiver answered `200` before it.
    fn deliver_on(&mut self, lines: &[String], confirmed: &mut usize) -> anyhow::Result<()> {
        if self.session.as_mut().is_some_and(|s| !s.conn.peer_quiet()) {
            // Closed by the receiver since the last batch: a new session.
            self.session = None;
        }
        let session = match &mut self.session {
            Some(session) => session,
            None => {
                self.session
                    .insert(Session::open(self.addr, self.tls.as_ref(), self.ack_wait)?)
            }
        };
        let mut out = Vec::new();
        let mut pending = Vec::with_capacity(WINDOW);
        // Per line of the window: answered 200.
        let mut accepted = Vec::with_capacity(WINDOW);
        for window in lines.chunks(WINDOW) {
            out.clear();
            pending.clear();
            accepted.clear();
            accepted.resize(window.len(), false);
            for line in window {
                let message = message(line, &self.hostname);
                pending.push(session.frame("syslog", message.as_bytes(), &mut out));
            }
            session.send(&out)?;
            let mut refused = None;
            let answered = session.await_answers(&pending, self.ack_wait, |answer| {
                if rsp_status(&answer.data) == Some(200) {
                    if let Some(at) = pending.iter().position(|&t| t == answer.txnr) {
                        accepted[at] = true;
                    }
                } else if refused.is_none() {
                    refused = Some(status_text(&answer.data));
                }
            });
            // Answers may come in any order; the cursor moves over the
            // leading lines that have theirs.
            *confirmed += accepted.iter().take_while(|&&a| a).count();
            answered?;
            if let Some(text) = refused {
                bail!("the receiver refused an alert: {text}");
            }
        }
        Ok(())
    }
}

impl Deliver for RelpForward {
    fn name(&self) -> &str {
        "relp"
    }

    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()> {
        self.deliver_confirmed(lines)
            .map_err(|failure| failure.error)
    }

    fn deliver_confirmed(&mut self, lines: &[String]) -> Result<(), Failure> {
        let mut confirmed = 0;
        self.deliver_on(lines, &mut confirmed).map_err(|error| {
            // A new session next time. The lines the receiver answered are
            // not sent again; the rest are (commands sent but unanswered
            // may have been received: repeats, which the alert id
            // identifies).
            self.session = None;
            Failure { confirmed, error }
        })
    }
}

impl Drop for RelpForward {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            session.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;
    use std::time::Duration;

    use shardwatch_net::relp::{
        rsp_status, write_error, write_frame, write_ok, write_open_response, RelpCommand,
        RelpFramer,
    };

    use super::super::{from_config, test_pki, Deliver};
    use super::RelpForward;
    use crate::config::OutputsConfig;

    /// How a test receiver answers `syslog` commands.
    #[derive(Clone, Copy)]
    enum Answers {
        /// `200 OK` to every one.
        Ok,
        /// None: it reads and keeps quiet.
        Silent,
        /// `200 OK` to this many commands, then none (it reads and keeps
        /// quiet: a receiver that hung mid-batch).
        SilentAfter(usize),
        /// `500` to the command at this index (0-based), `200` to the rest.
        RefuseAt(usize),
        /// An `open` answer without `syslog` among the commands.
        NoSyslog,
        /// `200 OK` to this many commands, then the connection is closed
        /// (a receiver restarted between two batches).
        CloseAfter(usize),
    }

    /// What a test receiver saw on one connection: the `syslog` messages in
    /// order, and whether the client sent `close`.
    #[derive(Debug, Default)]
    struct Seen {
        messages: Vec<String>,
        closed: bool,
    }

    /// Serves one RELP session on `stream` as `answers` says, until the
    /// client closes the connection.
    fn serve(stream: &mut (impl Read + Write), answers: Answers) -> Seen {
        let mut framer = RelpFramer::default().check_sequence();
        let mut seen = Seen::default();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => return seen,
                Ok(n) => n,
            };
            let mut out = Vec::new();
            let mut frames = Vec::new();
            framer
                .feed(&buf[..n], |f| {
                    frames.push((f.txnr, f.command, f.data.to_vec()))
                })
                .unwrap();
            for (txnr, command, data) in frames {
                match command {
                    RelpCommand::Open => match answers {
                        Answers::NoSyslog => {
                            write_frame(txnr, "rsp", b"200 OK\nrelp_version=0\ncommands=", &mut out)
                        }
                        _ => write_open_response(txnr, &mut out),
                    },
                    RelpCommand::Syslog => {
                        let index = seen.messages.len();
                        seen.messages.push(String::from_utf8(data).unwrap());
                        match answers {
                            Answers::Silent => {}
                            Answers::SilentAfter(n) if index >= n => {}
                            Answers::RefuseAt(at) if at == index => {
                                write_error(txnr, 500, "queue full", &mut out)
                            }
                            _ => write_ok(txnr, &mut out),
                        }
                    }
                    RelpCommand::Close => {
                        seen.closed = true;
                        write_ok(txnr, &mut out);
                    }
                    other => panic!("unexpected command {other:?}"),
                }
            }
            if stream.write_all(&out).is_err() {
                return seen;
            }
            if matches!(answers, Answers::CloseAfter(n) if seen.messages.len() >= n) {
                return seen;
            }
        }
    }

    /// A plain-TCP receiver serving `sessions` connections one after the
    /// other, answering the n-th as `answers[n]`.
    fn receiver(answers: Vec<Answers>) -> (String, JoinHandle<Vec<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let thread = std::thread::spawn(move || {
            answers
                .into_iter()
                .map(|answers| {
                    let (mut stream, _) = listener.accept().unwrap();
                    serve(&mut stream, answers)
                })
                .collect()
        });
        (addr, thread)
    }

    fn alerts(count: usize) -> Vec<String> {
        (0..count)
            .map(|i| {
                format!(r#"{{"id":"a{i:04}","rule":{{"level":"high"}},"detected_at":"2026-11-27T10:00:00Z"}}"#)
            })
            .collect()
    }

    fn forward(target: &str, ack_wait: Duration) -> RelpForward {
        RelpForward::new(target, None, ack_wait).unwrap()
    }

    #[test]
    fn a_batch_goes_out_as_syslog_commands_in_windows_and_is_closed_at_the_end() {
        let (addr, receiver) = receiver(vec![Answers::Ok]);
        let mut out = forward(&addr, Duration::from_secs(10));
        // Over three windows.
        let lines = alerts(super::WINDOW * 2 + 7);
        out.deliver(&lines).unwrap();
        out.deliver(&lines[..3]).unwrap();
        drop(out);
        let seen = receiver.join().unwrap();
        assert_eq!(seen.len(), 1, "one session for both batches");
        let messages = &seen[0].messages;
        assert_eq!(messages.len(), lines.len() + 3);
        for (message, line) in messages.iter().zip(lines.iter().chain(&lines[..3])) {
            assert!(
                message.starts_with("<131>1 2026-11-27T10:00:00Z "),
                "{message}"
            );
            assert!(message.ends_with(&format!(" shardwatch - alert - {line}")));
        }
        assert!(seen[0].closed, "the output closes its session when dropped");
    }

    /// A receiver that takes the commands but does not answer has not
    /// taken the alerts: no more than a window goes out unanswered, the
    /// batch fails within the wait, and its retry on a new session brings
    /// all of it.
    #[test]
    fn commands_without_answers_fail_the_batch_which_goes_again_on_a_new_session() {
        let (addr, receiver) = receiver(vec![Answers::Silent, Answers::Ok]);
        let mut out = forward(&addr, Duration::from_millis(300));
        let lines = alerts(super::WINDOW + 50);
        let err = out.deliver(&lines).unwrap_err();
        assert!(
            format!("{err:#}").contains("has not answered 128 of 128"),
            "{err:#}"
        );
        out.deliver(&lines).unwrap();
        drop(out);
        let seen = receiver.join().unwrap();
        assert_eq!(
            seen[0].messages.len(),
            super::WINDOW,
            "one window, unanswered"
        );
        assert_eq!(seen[1].messages.len(), lines.len());
        assert!(seen[1].messages[lines.len() - 1].ends_with(&lines[lines.len() - 1]));
    }

    #[test]
    fn a_refused_alert_fails_the_batch_with_the_receivers_words() {
        let (addr, receiver) = receiver(vec![Answers::RefuseAt(2), Answers::Ok]);
        let mut out = forward(&addr, Duration::from_secs(10));
        let lines = alerts(4);
        let failure = out.deliver_confirmed(&lines).unwrap_err();
        assert!(
            format!("{:#}", failure.error).contains("refused an alert: 500 queue full"),
            "{:#}",
            failure.error
        );
        // The two before it were accepted; the retry starts at the refused
        // one.
        assert_eq!(failure.confirmed, 2);
        out.deliver(&lines[2..]).unwrap();
        drop(out);
        let seen = receiver.join().unwrap();
        assert_eq!((seen[0].messages.len(), seen[1].messages.len()), (4, 2));
        assert!(seen[1].messages[0].ends_with(&lines[2]));
    }

    /// A receiver that hangs mid-batch: the lines it answered count as
    /// delivered (the cursor moves over them), and only the rest go again,
    /// on a new session.
    #[test]
    fn lines_answered_before_a_failure_are_not_sent_again() {
        let answered = super::WINDOW + 30;
        let (addr, receiver) = receiver(vec![Answers::SilentAfter(answered), Answers::Ok]);
        let mut out = forward(&addr, Duration::from_millis(300));
        let lines = alerts(super::WINDOW * 2 + 10);
        let failure = out.deliver_confirmed(&lines).unwrap_err();
        assert!(
            format!("{:#}", failure.error).contains("has not answered 98 of 128"),
            "{:#}",
            failure.error
        );
        assert_eq!(failure.confirmed, answered);
        out.deliver_confirmed(&lines[answered..]).unwrap();
        drop(out);
        let seen = receiver.join().unwrap();
        assert_eq!(
            seen[0].messages.len(),
            super::WINDOW * 2,
            "two windows went out"
        );
        assert_eq!(seen[1].messages.len(), lines.len() - answered);
        assert!(seen[1].messages[0].ends_with(&lines[answered]));
    }

    /// A receiver that closed the session between two batches (restarted,
    /// or its idle timeout) is noticed before the next batch is sent: that
    /// batch goes on a new session at once instead of failing first.
    #[test]
    fn a_session_the_receiver_closed_between_batches_is_reopened_before_sending() {
        let (addr, receiver) = receiver(vec![Answers::CloseAfter(2), Answers::Ok]);
        let mut out = forward(&addr, Duration::from_secs(10));
        let lines = alerts(4);
        out.deliver(&lines[..2]).unwrap();
        // Until the close has reached this side.
        std::thread::sleep(Duration::from_millis(100));
        out.deliver(&lines[2..]).unwrap();
        drop(out);
        let seen = receiver.join().unwrap();
        assert_eq!((seen[0].messages.len(), seen[1].messages.len()), (2, 2));
        assert!(seen[1].messages[1].ends_with(&lines[3]));
    }

    #[test]
    fn a_receiver_without_the_syslog_command_is_refused() {
        let (addr, receiver) = receiver(vec![Answers::NoSyslog]);
        let mut out = forward(&addr, Duration::from_secs(10));
        let err = out.deliver(&alerts(1)).unwrap_err();
        assert!(
            format!("{err:#}").contains("relp_open_no_syslog"),
            "{err:#}"
        );
        drop(out);
        assert!(receiver.join().unwrap()[0].messages.is_empty());
    }

    #[test]
    fn a_receiver_that_is_down_fails_the_batch_until_it_listens() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mut out = forward(&addr, Duration::from_secs(10));
        let err = out.deliver(&alerts(1)).unwrap_err();
        assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
    }

    #[test]
    fn relp_forward_over_tls_from_the_config() {
        let pki = test_pki::pki("relp-tls");
        let (addr, receiver) =
            test_pki::serve_once(pki.server_config(false), |s| serve(s, Answers::Ok));
        let config = OutputsConfig {
            relp_forward: addr.to_string(),
            relp_forward_tls: true,
            tls_ca_file: pki.ca_file.display().to_string(),
            ..OutputsConfig::default()
        };
        let mut outputs = from_config(&config).unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].name(), "relp");
        let lines = alerts(3);
        // Two batches, one session (the receiver serves only one): the
        // check before the second finds the TLS connection quiet.
        outputs[0].deliver(&lines[..1]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        outputs[0].deliver(&lines[1..]).unwrap();
        drop(outputs);
        let seen = receiver.join().unwrap();
        assert_eq!(seen.messages.len(), 3);
        assert!(seen.messages[2].ends_with(&lines[2]));
        assert!(seen.closed);
        // TLS needs the CA file, as every TLS output.
        let err = from_config(&OutputsConfig {
            tls_ca_file: String::new(),
            ..config
        })
        .err()
        .unwrap();
        assert!(
            format!("{err:#}").contains("outputs.tls_ca_file"),
            "{err:#}"
        );
    }

    #[test]
    fn status_text_is_the_first_line_of_an_answer() {
        assert_eq!(
            super::status_text(b"500 queue full\nmore"),
            "500 queue full"
        );
        assert_eq!(super::status_text(b""), "(no status)");
        assert_eq!(rsp_status(b"200 OK"), Some(200));
    }
}
