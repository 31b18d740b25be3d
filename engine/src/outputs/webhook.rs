//! The webhook output: batches of alerts POSTed as a JSON array to an
//! `http://` URL. A non-2xx answer or a network error fails the batch,
//! which is retried with backoff. (TLS endpoints need a local relay until
//! the appliance speaks TLS.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};

use super::Deliver;

/// How long one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Webhook {
    host: String,
    addr: SocketAddr,
    path: String,
    token: Option<String>,
}

impl Webhook {
    /// Parses `http://host:port/path`.
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Webhook> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("webhook url {url:?} must start with http://"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let with_port = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve webhook host {host}"))?
            .next()
            .with_context(|| format!("webhook host {host} has no address"))?;
        Ok(Webhook {
            host: host.to_string(),
            addr,
            path: path.to_string(),
            token,
        })
    }
}

impl Deliver for Webhook {
    fn name(&self) -> &str {
        "webhook"
    }

    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()> {
        let body = format!("[{}]", lines.join(","));
        let mut stream = TcpStream::connect_timeout(&self.addr, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        let auth = self
            .token
            .as_ref()
            .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.host,
            body.len()
        )?;
        stream.write_all(body.as_bytes())?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        let status = std::str::from_utf8(&head[..n])
            .ok()
            .and_then(|s| s.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok());
        match status {
            Some(code) if (200..300).contains(&code) => Ok(()),
            Some(code) => bail!("webhook answered {code}"),
            None => bail!("webhook answered no HTTP status"),
        }
    }
}
