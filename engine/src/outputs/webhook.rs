//! The webhook output: batches of alerts POSTed as a JSON array to an
//! `http://` or `https://` URL. A non-2xx answer or a network error fails
//! the batch, which is retried with backoff. `https` verifies the receiver
//! against `outputs.tls_ca_file` (see [`super::OutputTls`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};

use super::{Connection, Deliver, OutputTls, TlsPeer};

/// How long one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Webhook {
    /// The `Host` header: the URL's authority as written.
    host: String,
    addr: SocketAddr,
    path: String,
    token: Option<String>,
    tls: Option<TlsPeer>,
}

impl Webhook {
    /// Parses `http://host[:port]/path`; an `https://` URL needs
    /// [`Webhook::new_with_tls`].
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Webhook> {
        Webhook::new_with_tls(url, token, None)
    }

    /// Parses `http://host[:port]/path` or `https://host[:port]/path`
    /// (ports 80 and 443 by default). `https` uses `tls`: the receiver's
    /// certificate must carry `tls.server_name`, or the URL's host when
    /// that is empty.
    pub fn new_with_tls(
        url: &str,
        token: Option<String>,
        tls: Option<&OutputTls>,
    ) -> anyhow::Result<Webhook> {
        let (rest, default_port, https) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, 80, false)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (rest, 443, true)
        } else {
            bail!("webhook url {url:?} must start with http:// or https://");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = super::split_host_port(authority, default_port)
            .with_context(|| format!("bad webhook url {url:?}"))?;
        let tls = match (https, tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls.peer(host)?),
            (true, None) => bail!(
                "webhook url {url:?} is https but no TLS settings were given \
                 (outputs.tls_ca_file)"
            ),
        };
        let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve webhook host {host}"))?
            .next()
            .with_context(|| format!("webhook host {host} has no address"))?;
        Ok(Webhook {
            host: authority.to_string(),
            addr,
            path: path.to_string(),
            token,
            tls,
        })
    }
}

impl Deliver for Webhook {
    fn name(&self) -> &str {
        "webhook"
    }

    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()> {
        // `[a,b,...]`, built after the head in one buffer: one write, so
        // that TLS sends few records.
        let body_len =
            2 + lines.iter().map(String::len).sum::<usize>() + lines.len().saturating_sub(1);
        let mut request = Vec::with_capacity(body_len + 256);
        write!(
            request,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n",
            self.path, self.host
        )?;
        if let Some(token) = &self.token {
            write!(request, "Authorization: Bearer {token}\r\n")?;
        }
        write!(
            request,
            "Content-Length: {body_len}\r\nConnection: close\r\n\r\n["
        )?;
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                request.push(b',');
            }
            request.extend_from_slice(line.as_bytes());
        }
        request.push(b']');
        let mut stream = Connection::open(self.addr, REQUEST_TIMEOUT, self.tls.as_ref())?;
        stream.write_all(&request)?;
        stream.flush()?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        stream.close();
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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};

    use super::super::from_config;
    use super::super::test_pki::{self, TlsServerStream};
    use super::Webhook;
    use crate::config::OutputsConfig;

    /// Reads one request (head and body) and answers 200.
    fn answer_one(s: &mut TlsServerStream) -> std::io::Result<(String, Vec<u8>)> {
        let mut reader = BufReader::new(&mut *s);
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        s.conn.send_close_notify();
        s.flush()?;
        Ok((head, body))
    }

    #[test]
    fn https_webhook_posts_the_batch() {
        let pki = test_pki::pki("webhook-https");
        let (addr, receiver) = test_pki::serve_once(pki.server_config(false), answer_one);
        let config = OutputsConfig {
            webhook_url: format!("https://{addr}/alerts"),
            webhook_token: "t0k".into(),
            tls_ca_file: pki.ca_file.display().to_string(),
            // The URL has the address; the certificate is checked for this.
            tls_server_name: "localhost".into(),
            ..OutputsConfig::default()
        };
        let mut outputs = from_config(&config).unwrap();
        let lines = vec![r#"{"id":"a"}"#.to_string(), r#"{"id":"b"}"#.to_string()];
        outputs[0].deliver(&lines).unwrap();
        let (head, body) = receiver.join().unwrap().unwrap();
        assert!(head.starts_with("POST /alerts HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("Host: {addr}\r\n")), "{head}");
        assert!(head.contains("Authorization: Bearer t0k\r\n"), "{head}");
        let alerts: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[1]["id"], "b");
    }

    #[test]
    fn https_webhook_refuses_the_wrong_server_and_needs_a_ca() {
        let pki = test_pki::pki("webhook-name");
        let (addr, receiver) = test_pki::serve_once(pki.server_config(false), answer_one);
        let mut config = OutputsConfig {
            webhook_url: format!("https://{addr}/alerts"),
            tls_ca_file: pki.ca_file.display().to_string(),
            tls_server_name: "siem.example".into(),
            ..OutputsConfig::default()
        };
        let mut outputs = from_config(&config).unwrap();
        let err = outputs[0]
            .deliver(&[r#"{"id":"a"}"#.to_string()])
            .unwrap_err();
        assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");
        assert!(receiver.join().unwrap().is_err());

        config.tls_ca_file.clear();
        let err = from_config(&config).err().unwrap();
        assert!(
            format!("{err:#}").contains("outputs.tls_ca_file"),
            "{err:#}"
        );
        let err = Webhook::new(&config.webhook_url, None).err().unwrap();
        assert!(format!("{err:#}").contains("is https"), "{err:#}");
        let err = Webhook::new("ftp://siem.example/x", None).err().unwrap();
        assert!(
            format!("{err:#}").contains("http:// or https://"),
            "{err:#}"
        );
    }

    #[test]
    fn webhook_urls_take_default_ports_and_ipv6_hosts() {
        let hook = Webhook::new("http://127.0.0.1/a/b", None).unwrap();
        assert_eq!(
            hook.addr,
            "127.0.0.1:80".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(hook.path, "/a/b");
        let hook = Webhook::new("http://[::1]:8080", None).unwrap();
        assert_eq!(
            hook.addr,
            "[::1]:8080".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(
            (hook.host.as_str(), hook.path.as_str()),
            ("[::1]:8080", "/")
        );
        let hook = Webhook::new("http://[::1]", None).unwrap();
        assert_eq!(
            hook.addr,
            "[::1]:80".parse::<std::net::SocketAddr>().unwrap()
        );
    }
}
