//! The harness's subscription to the appliance's live alert stream,
//! `GET /api/alerts/stream` (server-sent events over HTTP/1.1), for when
//! the alert log is not on this machine (`run --alerts-url`, `bench
//! --alerts-via stream`).
//!
//! A plain blocking client on its own thread: one request, the status
//! line and headers read before the load starts (so the subscription
//! covers every alert of the run: the appliance starts the stream at its
//! log's end when it answers), then the body decoded as it arrives:
//! [`Dechunker`] undoes HTTP/1.1 chunked transfer coding, [`SseParser`]
//! splits the event stream into events. An address that is not loopback
//! is sent to only when asked for, like every target of the harness.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

/// Path of the appliance's live alert stream.
pub const STREAM_PATH: &str = "/api/alerts/stream";
/// Longest response head (status line and headers) accepted.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// How long the appliance has to answer the request.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Longest chunk-size line accepted (hex digits and extensions).
const CHUNK_LINE_BYTES_MAX: usize = 256;

/// Where to subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    pub addr: SocketAddr,
    /// Path and query, e.g. `/api/alerts/stream`.
    pub path: String,
    /// Bearer token for an appliance started with `--api-token`.
    pub token: Option<String>,
}

impl StreamTarget {
    /// `http://IP:PORT[/path]`; the path defaults to [`STREAM_PATH`].
    /// One that is not loopback is `run`'s to refuse
    /// ([`crate::send::refuse_remote`]).
    pub fn parse(url: &str, token: Option<String>) -> anyhow::Result<StreamTarget> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: the alert stream URL must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let addr: SocketAddr = authority
            .parse()
            .with_context(|| format!("{url}: expected http://IP:PORT[/path]"))?;
        let path = if path.is_empty() || path == "/" {
            STREAM_PATH.to_string()
        } else {
            path.to_string()
        };
        Ok(StreamTarget { addr, path, token })
    }
}

/// An answered subscription: the connection, whether its body is chunked,
/// and body bytes that arrived with the head.
pub struct Subscription {
    pub stream: TcpStream,
    pub chunked: bool,
    pub body_start: Vec<u8>,
}

/// The `Authorization` header line of a request to the appliance's API
/// with `token` (none without one).
pub fn bearer_header(token: Option<&str>) -> String {
    token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default()
}

/// Sends the request and reads the answer's head; fails on anything but
/// `200` with an event stream.
pub fn subscribe(target: &StreamTarget) -> anyhow::Result<Subscription> {
    let mut stream = TcpStream::connect_timeout(&target.addr, ANSWER_WAIT)
        .with_context(|| format!("cannot connect to the alert stream at {}", target.addr))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(ANSWER_WAIT))?;
    let auth = bearer_header(target.token.as_deref());
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{auth}\r\n",
        target.path, target.addr
    )?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("no answer from the alert stream at {}", target.addr))?;
        if n == 0 {
            bail!(
                "the alert stream at {} closed before answering",
                target.addr
            );
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(at) = memchr::memmem::find(&head, b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > HEAD_BYTES_MAX {
            bail!("the alert stream's answer head is over {HEAD_BYTES_MAX} bytes");
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if code != "200" {
        let body = String::from_utf8_lossy(&head[end..]);
        bail!(
            "the alert stream at {}{} answered `{status}` {}",
            target.addr,
            target.path,
            body.trim()
        );
    }
    let header = |name: &str| {
        text.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    if !header("content-type").is_some_and(|t| t.starts_with("text/event-stream")) {
        bail!(
            "{}{} is not an event stream (content type {:?})",
            target.addr,
            target.path,
            header("content-type")
        );
    }
    let chunked = header("transfer-encoding").is_some_and(|t| t.contains("chunked"));
    Ok(Subscription {
        stream,
        chunked,
        body_start: head[end..].to_vec(),
    })
}

/// Incremental decoder of HTTP/1.1 chunked transfer coding.
#[derive(Debug, Default)]
pub struct Dechunker {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// This many data bytes left in the chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The zero-size chunk was read: the body is over.
    Done,
}

impl Dechunker {
    /// Decodes `input`, appending the body bytes to `out`. An error names
    /// what was malformed; the stream cannot continue after one.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() {
            match self.state {
                ChunkState::Done => return Ok(()),
                ChunkState::Size => {
                    let Some(at) = memchr::memchr(b'\n', input) else {
                        self.line.extend_from_slice(input);
                        if self.line.len() > CHUNK_LINE_BYTES_MAX {
                            return Err("chunk-size line too long".into());
                        }
                        return Ok(());
                    };
                    self.line.extend_from_slice(&input[..at]);
                    input = &input[at + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    // Extensions after `;` are ignored.
                    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                    let digits = std::str::from_utf8(digits)
                        .map_err(|_| "chunk size is not text".to_string())?
                        .trim();
                    let size = u64::from_str_radix(digits, 16)
                        .map_err(|_| format!("bad chunk size {digits:?}"))?;
                    self.state = if size == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let take = (left.min(input.len() as u64)) as usize;
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    let Some(at) = memchr::memchr(b'\n', input) else {
                        self.line.extend_from_slice(input);
                        if self.line.len() > 1 {
                            return Err("no CRLF after a chunk".into());
                        }
                        return Ok(());
                    };
                    self.line.extend_from_slice(&input[..at]);
                    if !(self.line.is_empty() || self.line == b"\r") {
                        return Err("no CRLF after a chunk".into());
                    }
                    self.line.clear();
                    input = &input[at + 1..];
                    self.state = ChunkState::Size;
                }
            }
        }
        Ok(())
    }

    /// Whether the last chunk was read.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Incremental parser of a server-sent event stream (the WHATWG event
/// stream format: `field: value` lines, events ended by a blank line,
/// `:` comments, LF, CRLF or CR line ends).
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    event: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// A CR ended the last line: an LF right after it is part of that end.
    after_cr: bool,
    /// Skipping the rest of a line or event longer than the limit.
    skipping: bool,
    limit: usize,
    /// Lines or events dropped for being longer than the limit.
    pub oversized: u64,
}

impl SseParser {
    /// A parser that drops (and counts) lines and events over `limit`
    /// bytes.
    pub fn new(limit: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            event: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            skipping: false,
            limit,
            oversized: 0,
        }
    }

    /// Parses `bytes`, calling `on_event(type, data)` for each complete
    /// event with data (type `message` when the event named none).
    pub fn push(&mut self, bytes: &[u8], mut on_event: impl FnMut(&[u8], &[u8])) {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if std::mem::take(&mut self.skipping) {
                        continue;
                    }
                    self.line_done(&line, &mut on_event);
                    self.line = line;
                    self.line.clear();
                }
                _ if self.skipping => {}
                _ => {
                    if self.line.len() >= self.limit {
                        self.line.clear();
                        self.skipping = true;
                        self.oversized += 1;
                    } else {
                        self.line.push(b);
                    }
                }
            }
        }
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8], &[u8])) {
        if line.is_empty() {
            if self.has_data {
                let kind: &[u8] = if self.event.is_empty() {
                    b"message"
                } else {
                    &self.event
                };
                on_event(kind, &self.data);
            }
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                if self.data.len() + value.len() > self.limit {
                    // The event is dropped whole at its blank line.
                    self.oversized += 1;
                    self.data.clear();
                    self.has_data = false;
                    return;
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], split: &[usize]) -> Vec<(String, String)> {
        let mut parser = SseParser::new(1024);
        let mut got = Vec::new();
        let mut at = 0;
        for &cut in split.iter().chain(std::iter::once(&input.len())) {
            let cut = cut.min(input.len()).max(at);
            parser.push(&input[at..cut], |kind, data| {
                got.push((
                    String::from_utf8_lossy(kind).into_owned(),
                    String::from_utf8_lossy(data).into_owned(),
                ))
            });
            at = cut;
        }
        got
    }

    #[test]
    fn events_comments_and_line_ends() {
        let input = b": keep-alive\n\nevent: alert\ndata: {\"id\":\"1\"}\n\n\
                      event: alert\r\ndata:{\"id\":\"2\"}\r\n\r\n\
                      data: a\rdata: b\r\rid: 7\nretry: 5\n\n";
        let want = vec![
            ("alert".to_string(), "{\"id\":\"1\"}".to_string()),
            ("alert".to_string(), "{\"id\":\"2\"}".to_string()),
            ("message".to_string(), "a\nb".to_string()),
        ];
        assert_eq!(parse_all(input, &[]), want);
        // Any split gives the same events, a CRLF split between its bytes
        // included.
        for cut in 0..input.len() {
            assert_eq!(parse_all(input, &[cut]), want, "split at {cut}");
        }
    }

    #[test]
    fn oversized_lines_are_dropped_and_counted() {
        let mut parser = SseParser::new(16);
        let mut got = Vec::new();
        let long = format!("data: {}\n\ndata: ok\n\n", "x".repeat(40));
        parser.push(long.as_bytes(), |_, data| got.push(data.to_vec()));
        assert_eq!(got, vec![b"ok".to_vec()]);
        assert_eq!(parser.oversized, 1);
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for cut in 0..body.len() {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            d.push(&body[..cut], &mut out).unwrap();
            d.push(&body[cut..], &mut out).unwrap();
            assert_eq!(out, b"hello, world", "split at {cut}");
            assert!(d.done());
        }
        for bad in [&b"zz\r\n"[..], b"3\r\nabcX\r\n", &[b'1'; 300][..]] {
            let mut d = Dechunker::default();
            assert!(d.push(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_default_the_path_and_stay_on_loopback() {
        let t = StreamTarget::parse("http://127.0.0.1:9600", None).unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (9600, STREAM_PATH));
        let t = StreamTarget::parse("http://[::1]:1/api/alerts/stream?from=start", None).unwrap();
        assert_eq!(t.path, "/api/alerts/stream?from=start");
        assert_eq!(
            StreamTarget::parse("http://10.0.0.1:9600", None)
                .unwrap()
                .addr,
            "10.0.0.1:9600".parse().unwrap()
        );
        assert!(StreamTarget::parse("https://127.0.0.1:9600", None).is_err());
        assert!(StreamTarget::parse("http://localhost:9600", None).is_err());
    }
}
