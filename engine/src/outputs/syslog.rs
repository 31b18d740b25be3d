//! The syslog forward output: each alert as one RFC 5424 message over TCP
//! with octet-counted framing (RFC 6587), so a SIEM's syslog input takes
//! it as is. The connection is kept and re-opened after a failure.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;

use super::Deliver;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// local0: the facility SIEMs expect appliances to use.
const FACILITY_LOCAL0: u8 = 16;

pub struct SyslogForward {
    addr: SocketAddr,
    hostname: String,
    stream: Option<TcpStream>,
}

impl SyslogForward {
    pub fn new(target: &str) -> anyhow::Result<SyslogForward> {
        let addr = target
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve syslog forward target {target}"))?
            .next()
            .with_context(|| format!("syslog forward target {target} has no address"))?;
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
            .unwrap_or_else(|| "-".into());
        Ok(SyslogForward {
            addr,
            hostname,
            stream: None,
        })
    }
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

/// One alert line as an octet-counted RFC 5424 frame.
pub fn frame(alert_json: &str, hostname: &str) -> Vec<u8> {
    let parsed: serde_json::Value = serde_json::from_str(alert_json).unwrap_or_default();
    let pri = FACILITY_LOCAL0 * 8 + severity(parsed["rule"]["level"].as_str());
    let timestamp = parsed["detected_at"].as_str().unwrap_or("-");
    let message = format!("<{pri}>1 {timestamp} {hostname} shardwatch - alert - {alert_json}");
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

impl Deliver for SyslogForward {
    fn name(&self) -> &str {
        "syslog"
    }

    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT)
                .with_context(|| format!("cannot connect to {}", self.addr))?;
            stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
            self.stream = Some(stream);
        }
        let mut payload = Vec::new();
        for line in lines {
            payload.extend_from_slice(&frame(line, &self.hostname));
        }
        let result = self
            .stream
            .as_mut()
            .map_or(Ok(()), |s| s.write_all(&payload).and_then(|()| s.flush()));
        if let Err(err) = result {
            // Reconnect next time; the batch is retried as a whole (the
            // receiver may see a repeat, which the alert id identifies).
            self.stream = None;
            return Err(err).context("syslog forward write failed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
