//! The syslog forward output: each alert as one RFC 5424 message over TCP
//! with octet-counted framing (RFC 6587), so a SIEM's syslog input takes
//! it as is; optionally inside TLS (RFC 5425, the same framing). The
//! connection is kept and re-opened after a failure.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;

use super::{Connection, Deliver, OutputTls, TlsPeer};

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new TLS 1.3 connection waits for the receiver to refuse the
/// client certificate (see [`Connection::check_accepted`]).
const TLS_REFUSAL_WAIT: Duration = Duration::from_secs(1);
/// How long a written batch may wait for the receiver's TCP to acknowledge
/// it before it counts as failed and is sent again on a new connection
/// (the default of `outputs.forward_ack_timeout_s`).
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(10);
/// local0: the facility SIEMs expect appliances to use.
const FACILITY_LOCAL0: u8 = 16;

pub struct SyslogForward {
    addr: SocketAddr,
    hostname: String,
    tls: Option<TlsPeer>,
    stream: Option<Connection>,
    ack_wait: Duration,
}

impl SyslogForward {
    /// Forwards to `target` (`host:port`) over plain TCP.
    pub fn new(target: &str) -> anyhow::Result<SyslogForward> {
        SyslogForward::new_with_tls(target, None, ACK_WAIT)
    }

    /// Forwards to `target` (`host:port`), over TLS when `tls` is set; the
    /// receiver's certificate must then carry `tls.server_name`, or the
    /// host of `target` when that is empty. A batch not acknowledged
    /// within `ack_wait` is sent again on a new connection.
    pub fn new_with_tls(
        target: &str,
        tls: Option<&OutputTls>,
        ack_wait: Duration,
    ) -> anyhow::Result<SyslogForward> {
        Ok(SyslogForward {
            tls: OutputTls::peer_of_target(tls, target, "syslog forward")?,
            addr: resolve(target, "syslog forward")?,
            hostname: local_hostname(),
            stream: None,
            ack_wait,
        })
    }
}

/// This machine's name for the HOSTNAME field, or `-` (the nil value)
/// when it is not a printable ASCII word.
pub(crate) fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
        .unwrap_or_else(|| "-".into())
}

/// `target` (`host:port`) resolved to its first address; `what` names the
/// output in errors.
pub(crate) fn resolve(target: &str, what: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {what} target {target}"))?
        .next()
        .with_context(|| format!("{what} target {target} has no address"))
}

/// Syslog severity for a Sigma level.
fn severity(level: Option<&str>) -> u8 {
    match level {
        Some("critical") => 2,
        Some("high") => 3,
        Some("medium") => 4,
        Some("low") => 5,
        _ => 6,
    }
}

/// One alert line as an RFC 5424 message: facility local0, the severity
/// of the rule's level, the detection time, MSGID `alert`, the alert's
/// JSON as the message.
pub fn message(alert_json: &str, hostname: &str) -> String {
    let parsed: serde_json::Value = serde_json::from_str(alert_json).unwrap_or_default();
    let pri = FACILITY_LOCAL0 * 8 + severity(parsed["rule"]["level"].as_str());
    let timestamp = parsed["detected_at"].as_str().unwrap_or("-");
    format!("<{pri}>1 {timestamp} {hostname} shardwatch - alert - {alert_json}")
}

/// One alert line as an octet-counted RFC 5424 frame.
pub fn frame(alert_json: &str, hostname: &str) -> Vec<u8> {
    let message = message(alert_json, hostname);
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

impl Deliver for SyslogForward {
    fn name(&self) -> &str {
        "syslog"
    }

    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()> {
        if self.stream.as_mut().is_some_and(|s| !s.peer_quiet()) {
            // Closed by the receiver since the last batch: reconnect.
            self.stream = None;
        }
        if self.stream.is_none() {
            let mut stream = Connection::open(self.addr, CONNECT_TIMEOUT, self.tls.as_ref())?;
            stream.check_accepted(TLS_REFUSAL_WAIT)?;
            self.stream = Some(stream);
        }
        let mut payload = Vec::new();
        for line in lines {
            payload.extend_from_slice(&frame(line, &self.hostname));
        }
        let ack_wait = self.ack_wait;
        let result = self.stream.as_mut().map_or(Ok(()), |s| {
            s.write_all(&payload)
                .and_then(|()| s.flush())
                .context("syslog forward write failed")?;
            // Delivered once the receiver's TCP has it, not once our
            // kernel does.
            s.wait_acknowledged(ack_wait)
                .context("syslog forward not acknowledged")
        });
        if result.is_err() {
            // Reconnect next time; the batch is retried as a whole (the
            // receiver may see a repeat, which the alert id identifies).
            self.stream = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read};

    use super::super::{from_config, test_pki};
    use crate::config::OutputsConfig;

    /// Reads `count` octet-counted frames.
    fn read_frames(stream: &mut impl Read, count: usize) -> std::io::Result<Vec<String>> {
        let mut reader = BufReader::new(stream);
        let mut frames = Vec::new();
        while frames.len() < count {
            let mut len = Vec::new();
            reader.read_until(b' ', &mut len)?;
            let n: usize = std::str::from_utf8(&len[..len.len().saturating_sub(1)])
                .unwrap()
                .parse()
                .unwrap();
            let mut msg = vec![0u8; n];
            reader.read_exact(&mut msg)?;
            frames.push(String::from_utf8(msg).unwrap());
        }
        Ok(frames)
    }

    fn tls_config(target: std::net::SocketAddr, pki: &test_pki::Pki) -> OutputsConfig {
        OutputsConfig {
            syslog_forward: target.to_string(),
            syslog_forward_tls: true,
            tls_ca_file: pki.ca_file.display().to_string(),
            ..OutputsConfig::default()
        }
    }

    #[test]
    fn syslog_forward_over_tls_sends_octet_counted_frames() {
        let pki = test_pki::pki("syslog-tls");
        let (addr, receiver) =
            test_pki::serve_once(pki.server_config(false), |s| read_frames(s, 2));
        // The certificate names 127.0.0.1, the host of the target.
        let mut outputs = from_config(&tls_config(addr, &pki)).unwrap();
        assert_eq!(outputs.len(), 1);
        let lines = [
            r#"{"id":"a","rule":{"level":"high"},"detected_at":"2026-11-27T10:00:00Z"}"#
                .to_string(),
            r#"{"id":"b","rule":{"level":"low"}}"#.to_string(),
        ];
        // Two batches, one connection (the receiver serves only one): the
        // check before the second finds the TLS connection quiet.
        outputs[0].deliver(&lines[..1]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        outputs[0].deliver(&lines[1..]).unwrap();
        let frames = receiver.join().unwrap().unwrap();
        assert!(
            frames[0].starts_with("<131>1 2026-11-27T10:00:00Z "),
            "{}",
            frames[0]
        );
        assert!(frames[0].ends_with(&format!(" shardwatch - alert - {}", lines[0])));
        assert!(frames[1].starts_with("<133>1 - "), "{}", frames[1]);
        assert!(frames[1].ends_with(&lines[1]));
    }

    /// A TLS record without data between two batches (here a key update;
    /// a late session ticket is the same) is taken in by the session: the
    /// connection stays, where reading any byte as "the receiver closed"
    /// would open a new one for every batch.
    #[test]
    fn a_tls_record_without_data_between_batches_keeps_the_connection() {
        use std::io::Write;
        let pki = test_pki::pki("syslog-keyupdate");
        let (addr, receiver) = test_pki::serve_once(pki.server_config(false), |s| {
            let mut frames = read_frames(s, 1)?;
            s.conn.refresh_traffic_keys().unwrap();
            s.flush()?;
            frames.extend(read_frames(s, 1)?);
            Ok::<_, std::io::Error>(frames)
        });
        let mut outputs = from_config(&tls_config(addr, &pki)).unwrap();
        let lines = [
            r#"{"id":"a","rule":{"level":"high"}}"#.to_string(),
            r#"{"id":"b","rule":{"level":"low"}}"#.to_string(),
        ];
        outputs[0].deliver(&lines[..1]).unwrap();
        // Until the key update has arrived.
        std::thread::sleep(std::time::Duration::from_millis(200));
        outputs[0].deliver(&lines[1..]).unwrap();
        let frames = receiver.join().unwrap().unwrap();
        assert_eq!(frames.len(), 2);
        assert!(frames[1].ends_with(&lines[1]), "{}", frames[1]);
    }

    #[test]
    fn syslog_forward_over_tls_presents_a_client_certificate_or_fails() {
        let pki = test_pki::pki("syslog-mtls");
        let (addr, receiver) = test_pki::serve_once(pki.server_config(true), |s| {
            let frames = read_frames(s, 1);
            (frames, s.conn.peer_certificates().map(<[_]>::len))
        });
        let mut config = tls_config(addr, &pki);
        config.tls_client_cert = pki.client.0.display().to_string();
        config.tls_client_key = pki.client.1.display().to_string();
        let mut outputs = from_config(&config).unwrap();
        outputs[0].deliver(&[r#"{"id":"a"}"#.to_string()]).unwrap();
        let (frames, client_chain) = receiver.join().unwrap();
        assert!(frames.unwrap()[0].ends_with(r#"{"id":"a"}"#));
        assert_eq!(client_chain, Some(1));

        // Without a client certificate the receiver refuses, and the batch
        // fails (to be retried) instead of being taken as delivered.
        let (addr, receiver) = test_pki::serve_once(pki.server_config(true), |s| read_frames(s, 1));
        let mut outputs = from_config(&tls_config(addr, &pki)).unwrap();
        let err = outputs[0]
            .deliver(&[r#"{"id":"a"}"#.to_string()])
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("refused"), "{text}");
        assert!(receiver.join().unwrap().is_err());
    }

    #[test]
    fn syslog_forward_over_tls_checks_the_server_name_and_needs_a_ca() {
        let pki = test_pki::pki("syslog-name");
        let (addr, receiver) =
            test_pki::serve_once(pki.server_config(false), |s| read_frames(s, 1));
        let mut config = tls_config(addr, &pki);
        config.tls_server_name = "siem.example".into();
        let mut outputs = from_config(&config).unwrap();
        let err = outputs[0]
            .deliver(&[r#"{"id":"a"}"#.to_string()])
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("TLS handshake"), "{text}");
        assert!(text.contains("siem.example"), "{text}");
        assert!(receiver.join().unwrap().is_err());

        config.tls_ca_file.clear();
        let err = from_config(&config).err().unwrap();
        assert!(
            format!("{err:#}").contains("outputs.tls_ca_file"),
            "{err:#}"
        );
        // Plain TCP needs no CA.
        config.syslog_forward_tls = false;
        assert_eq!(from_config(&config).unwrap().len(), 1);
    }

    /// A batch the receiver's TCP has not acknowledged is not delivered:
    /// the receiver here accepts but does not read, with the smallest
    /// receive buffer, so most of the batch stays in the forwarder's send
    /// queue though every write succeeded. The batch fails, and its retry
    /// on a new connection, once the receiver reads, brings all of it.
    #[test]
    fn a_batch_the_receiver_has_not_acknowledged_is_not_delivered() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let one: libc::c_int = 1;
        // SAFETY: SO_RCVBUF reads one int from the pointer, which points
        // at `one`; the descriptor is the listener's own.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let addr = listener.local_addr().unwrap();
        let lines: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"id":"{i:03}","pad":"{}"}}"#, "p".repeat(200)))
            .collect();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let count = lines.len();
        let receiver = std::thread::spawn(move || {
            let (mut stalled, _) = listener.accept().unwrap();
            go_rx.recv().unwrap();
            // The first connection, dropped by the forwarder, then the
            // batch again on the second.
            let mut first = Vec::new();
            stalled.read_to_end(&mut first).unwrap();
            let (mut again, _) = listener.accept().unwrap();
            read_frames(&mut again, count).unwrap()
        });
        let mut forward = super::SyslogForward::new(&addr.to_string()).unwrap();
        forward.ack_wait = std::time::Duration::from_millis(500);
        let err = super::Deliver::deliver(&mut forward, &lines).unwrap_err();
        assert!(
            format!("{err:#}").contains("not acknowledged"),
            "written, not acknowledged: {err:#}"
        );
        go_tx.send(()).unwrap();
        super::Deliver::deliver(&mut forward, &lines).unwrap();
        let frames = receiver.join().unwrap();
        for (frame, line) in frames.iter().zip(&lines) {
            assert!(frame.ends_with(line.as_str()), "{frame}");
        }
    }

    /// A receiver that closed the connection between two batches (it
    /// restarted) is noticed before the next batch: that batch goes on a
    /// new connection at once instead of failing first.
    #[test]
    fn a_connection_the_receiver_closed_between_batches_is_reopened_before_sending() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = std::thread::spawn(move || {
            let (mut first, _) = listener.accept().unwrap();
            let one = read_frames(&mut first, 1).unwrap();
            drop(first);
            let (mut second, _) = listener.accept().unwrap();
            (one, read_frames(&mut second, 1).unwrap())
        });
        let mut forward = super::SyslogForward::new(&addr.to_string()).unwrap();
        super::Deliver::deliver(&mut forward, &[r#"{"id":"a"}"#.to_string()]).unwrap();
        // Until the receiver has read the batch and closed.
        std::thread::sleep(std::time::Duration::from_millis(200));
        super::Deliver::deliver(&mut forward, &[r#"{"id":"b"}"#.to_string()]).unwrap();
        let (one, two) = receiver.join().unwrap();
        assert!(one[0].ends_with(r#"{"id":"a"}"#) && two[0].ends_with(r#"{"id":"b"}"#));
    }

    #[test]
    fn frames_are_octet_counted_5424_with_level_severity() {
        let frame = super::frame(
            r#"{"id":"x","rule":{"level":"high"},"detected_at":"2026-11-27T10:00:00.000000000Z"}"#,
            "sw1",
        );
        let text = String::from_utf8(frame).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(msg.starts_with("<131>1 2026-11-27T10:00:00.000000000Z sw1 shardwatch - alert - {"));
    }
}
