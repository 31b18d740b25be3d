//! Alert outputs beyond stdout and `alerts.jsonl`: a webhook, a syslog
//! forward and a RELP forward to a SIEM, and a rotated JSON-lines file.
//!
//! Every output reads the durable alert log (`alerts.jsonl`) from its own
//! cursor, persisted in `<data>/outputs/<name>.offset` after each delivered
//! batch. So the alert log is the disk-backed queue: a receiver that is
//! down for an hour loses nothing (alerts wait in the log and go out when
//! it returns), an output never blocks ingest or detection (it runs on its
//! own thread and only reads a file), and its backlog is the log bytes
//! past its cursor (`shardwatch_output_backlog_bytes{output}`). Delivery is
//! at least once across a crash between a delivery and its cursor write;
//! alert ids are deterministic, so receivers can drop repeats.
//!
//! The webhook (`https://`), the syslog forward (`syslog_forward_tls`,
//! RFC 5425) and the RELP forward (`relp_forward_tls`) can speak TLS; all
//! use the `tls_*` keys of `[outputs]` through [`OutputTls`].
//! [`from_config`] builds every configured output.

pub mod file;
pub mod relp;
pub mod syslog;
pub mod webhook;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use shardwatch_net::tls::{client_config, TlsClientSettings};

use crate::config::OutputsConfig;

/// Most alerts one delivery carries.
pub const BATCH_ALERTS_MAX: usize = 500;
/// Longest wait between retries of a failing output.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often an idle output looks for new alerts.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Where one output delivers a batch of alert lines (JSON objects).
pub trait Deliver: Send {
    fn name(&self) -> &str;
    /// Delivers every line or fails as a whole (the batch is retried).
    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()>;
    /// Delivers every line or fails saying how many leading lines the
    /// receiver confirmed before the failure: those are not sent again.
    /// For outputs whose receiver confirms line by line (RELP); the others
    /// confirm nothing short of the whole batch.
    fn deliver_confirmed(&mut self, lines: &[String]) -> Result<(), Failure> {
        self.deliver(lines).map_err(Failure::from)
    }
}

/// A delivery that failed after the receiver had confirmed its first
/// `confirmed` lines.
#[derive(Debug)]
pub struct Failure {
    pub confirmed: usize,
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure {
            confirmed: 0,
            error,
        }
    }
}

/// Lines after an output's cursor, read for one delivery.
#[derive(Debug, Default, PartialEq)]
pub struct Peeked {
    pub lines: Vec<String>,
    /// Per line, the log offset just after it (a cursor that has delivered
    /// up to and including that line).
    pub ends: Vec<u64>,
    /// The offset after every line read (past blank lines after the last).
    pub next: u64,
}

/// The outputs `o` turns on (each is off while its target is empty). The
/// TLS files are read here, so a missing or bad one fails the start.
pub fn from_config(o: &OutputsConfig) -> anyhow::Result<Vec<Box<dyn Deliver>>> {
    let mut outputs: Vec<Box<dyn Deliver>> = Vec::new();
    let wants_tls = (o.syslog_forward_tls && !o.syslog_forward.is_empty())
        || (o.relp_forward_tls && !o.relp_forward.is_empty())
        || o.webhook_url.starts_with("https://");
    let ack_wait = Duration::from_secs(o.forward_ack_timeout_s);
    let tls = wants_tls.then(|| OutputTls::from_config(o)).transpose()?;
    if !o.webhook_url.is_empty() {
        let token = (!o.webhook_token.is_empty()).then(|| o.webhook_token.clone());
        outputs.push(Box::new(webhook::Webhook::new_with_tls(
            &o.webhook_url,
            token,
            tls.as_ref(),
        )?));
    }
    if !o.syslog_forward.is_empty() {
        let tls = tls.as_ref().filter(|_| o.syslog_forward_tls);
        outputs.push(Box::new(syslog::SyslogForward::new_with_tls(
            &o.syslog_forward,
            tls,
            ack_wait,
        )?));
    }
    if !o.relp_forward.is_empty() {
        let tls = tls.as_ref().filter(|_| o.relp_forward_tls);
        outputs.push(Box::new(relp::RelpForward::new(
            &o.relp_forward,
            tls,
            ack_wait,
        )?));
    }
    if !o.file_path.is_empty() {
        outputs.push(Box::new(file::RotatingFile::new(
            PathBuf::from(&o.file_path),
            o.file_rotate_bytes,
            o.file_keep,
        )));
    }
    Ok(outputs)
}

/// The TLS client side the outputs share: the receivers' CA, an optional
/// client certificate, and the name receivers' certificates must carry.
#[derive(Clone)]
pub struct OutputTls {
    pub config: Arc<ClientConfig>,
    /// Empty: the host part of each output's target.
    pub server_name: String,
}

impl OutputTls {
    /// From the `tls_*` keys of `[outputs]`; reads the PEM files now.
    pub fn from_config(o: &OutputsConfig) -> anyhow::Result<OutputTls> {
        if o.tls_ca_file.is_empty() {
            bail!(
                "TLS outputs need outputs.tls_ca_file: a PEM file with the CA that signed \
                 the receiver's certificate (there are no built-in trust roots)"
            );
        }
        let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        let config = client_config(&TlsClientSettings {
            ca_file: path(&o.tls_ca_file),
            client_cert_file: path(&o.tls_client_cert),
            client_key_file: path(&o.tls_client_key),
        })
        .context("outputs TLS")?;
        Ok(OutputTls {
            config,
            server_name: o.tls_server_name.clone(),
        })
    }

    /// The peer of a forward to `target` (`host:port`) when it speaks
    /// TLS (`tls` set), `None` for plain TCP; `what` names the output in
    /// errors.
    pub(crate) fn peer_of_target(
        tls: Option<&OutputTls>,
        target: &str,
        what: &str,
    ) -> anyhow::Result<Option<TlsPeer>> {
        let Some(tls) = tls else {
            return Ok(None);
        };
        // The port is the target's own; only the host matters here.
        let (host, _) =
            split_host_port(target, 0).with_context(|| format!("bad {what} target {target:?}"))?;
        tls.peer(host).map(Some)
    }

    /// The peer of an output whose target host is `host`.
    pub(crate) fn peer(&self, host: &str) -> anyhow::Result<TlsPeer> {
        let name = if self.server_name.is_empty() {
            host
        } else {
            &self.server_name
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string())
            .with_context(|| format!("TLS server name {name:?} is not a DNS name or IP address"))?;
        Ok(TlsPeer {
            config: self.config.clone(),
            server_name,
        })
    }
}

/// One output's TLS receiver: whom to trust and the name to expect.
pub(crate) struct TlsPeer {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

/// `host[:port]` or `[v6]:port` as host and port (`default_port` when
/// there is none). The host keeps IPv6 brackets.
pub(crate) fn split_host_port(authority: &str, default_port: u16) -> anyhow::Result<(&str, u16)> {
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    if host.is_empty() {
        bail!("no host in {authority:?}");
    }
    let port = match port {
        Some(p) => p
            .parse()
            .with_context(|| format!("bad port in {authority:?}"))?,
        None => default_port,
    };
    Ok((host, port))
}

/// A connection of an output: plain TCP, or TLS over it.
pub(crate) enum Connection {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// [`Connection::peer_quiet`] for TLS, on a non-blocking socket: reads
/// whatever records have arrived into the session.
fn tls_quiet(stream: &mut StreamOwned<ClientConnection, TcpStream>) -> bool {
    loop {
        match stream.conn.read_tls(&mut stream.sock) {
            // The end of the stream.
            Ok(0) => return false,
            Ok(_) => match stream.conn.process_new_packets() {
                Ok(state) => {
                    if state.peer_has_closed() || state.plaintext_bytes_to_read() > 0 {
                        return false;
                    }
                }
                Err(_) => return false,
            },
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

impl Connection {
    /// Connects to `addr` (`timeout` for the connect and for each read and
    /// write) and, with `tls`, completes the handshake now, so that a
    /// certificate problem shows as a connect error.
    pub(crate) fn open(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&TlsPeer>,
    ) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let Some(peer) = tls else {
            return Ok(Connection::Plain(tcp));
        };
        let conn = ClientConnection::new(peer.config.clone(), peer.server_name.clone())
            .context("cannot start a TLS connection")?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).with_context(|| {
                format!(
                    "TLS handshake with {addr} (expecting a certificate for {}) failed",
                    peer.server_name.to_str()
                )
            })?;
        }
        Ok(Connection::Tls(Box::new(stream)))
    }

    /// For a client that only writes: waits up to `wait` for the receiver
    /// to refuse the connection. With TLS 1.3 the server checks the client
    /// certificate after the client considers the handshake done, so a
    /// refusal (no or wrong client certificate) would otherwise show only
    /// after the first batch was written and taken as delivered. Returns at
    /// the first bytes from the receiver (its session tickets mean it
    /// accepted), at a refusal (an error), or after `wait`.
    pub(crate) fn check_accepted(&mut self, wait: Duration) -> anyhow::Result<()> {
        let Connection::Tls(stream) = self else {
            return Ok(());
        };
        if stream.conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return Ok(());
        }
        let restore = stream.sock.read_timeout()?;
        stream.sock.set_read_timeout(Some(wait))?;
        let read = stream.conn.read_tls(&mut stream.sock);
        stream.sock.set_read_timeout(restore)?;
        match read {
            Ok(0) => bail!("the receiver closed the connection after the TLS handshake"),
            Ok(_) => {
                stream
                    .conn
                    .process_new_packets()
                    .context("the receiver refused the TLS connection")?;
                Ok(())
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(err).context("reading from the receiver after the TLS handshake"),
        }
    }

    /// Waits until the receiver's TCP has acknowledged every byte written
    /// (the socket's send queue, `TIOCOUTQ`, is empty) and the connection
    /// has no error, for at most `within`. A write only hands bytes to the
    /// kernel: to a receiver that vanished without closing (powered off, a
    /// firewall that lost the connection's state) writes succeed until the
    /// send buffer is full, and a batch taken as delivered then would be
    /// lost. An error here has the batch sent again on a new connection
    /// (at least once: the receiver may see repeats, which the alert id
    /// identifies).
    pub(crate) fn wait_acknowledged(&self, within: Duration) -> anyhow::Result<()> {
        use std::os::fd::AsRawFd;
        let sock = self.tcp();
        let deadline = std::time::Instant::now() + within;
        let mut pause = Duration::from_micros(50);
        loop {
            let mut queued: libc::c_int = 0;
            // SAFETY: TIOCOUTQ writes one int through the pointer, which
            // points at `queued`; the descriptor is the stream's own.
            let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("cannot read the connection's send queue");
            }
            // A reset empties the queue too: the error tells it apart.
            if let Some(err) = sock.take_error()? {
                return Err(err).context("the receiver's connection failed");
            }
            if queued == 0 {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "the receiver has not acknowledged {queued} bytes within {within:?} (gone without closing, or not reading)"
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Whether the receiver has sent nothing it should not have and not
    /// closed. The forwards expect nothing unasked between batches, so
    /// anything readable (the end of the stream, a reset, RELP's
    /// `serverclose`, a TLS alert) means the connection is not to be
    /// written to: a receiver restarted between two batches is noticed
    /// before the next is sent, not after it failed. Under TLS, records
    /// that carry no data (a late session ticket, a key update) are taken
    /// in by the session and the connection stays quiet; a `close_notify`,
    /// a TLS error or application data is not quiet.
    pub(crate) fn peer_quiet(&mut self) -> bool {
        if self.tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let quiet = match self {
            Connection::Plain(sock) => {
                let mut byte = [0u8; 1];
                matches!(
                    sock.peek(&mut byte),
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock
                )
            }
            Connection::Tls(stream) => tls_quiet(stream),
        };
        self.tcp().set_nonblocking(false).is_ok() && quiet
    }

    /// Makes the next reads wait at most `timeout` (at least 1 ms: zero
    /// would mean forever).
    pub(crate) fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        let sock = self.tcp();
        sock.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
    }

    /// The TCP socket under the connection (under TLS, the one rustls
    /// reads and writes).
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Plain(s) => s,
            Connection::Tls(s) => &s.sock,
        }
    }

    /// Ends a TLS session politely (best effort); a no-op for plain TCP.
    pub(crate) fn close(&mut self) {
        if let Connection::Tls(stream) = self {
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(s) => s.read(buf),
            Connection::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(s) => s.write(buf),
            Connection::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Connection::Plain(s) => s.flush(),
            Connection::Tls(s) => s.flush(),
        }
    }
}

/// Live numbers of one output, read by `/metrics`.
#[derive(Debug, Default)]
pub struct OutputStats {
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    pub backlog_bytes: AtomicU64,
}

/// A cursor over the alert log, persisted in an offset file.
pub struct Cursor {
    log: PathBuf,
    offset_file: PathBuf,
    offset: u64,
}

impl Cursor {
    /// Opens the cursor named `name`, at its saved offset or at the start.
    pub fn open(data_dir: &Path, name: &str) -> anyhow::Result<Cursor> {
        let dir = data_dir.join("outputs");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let offset_file = dir.join(format!("{name}.offset"));
        let offset = std::fs::read_to_string(&offset_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(Cursor {
            log: data_dir.join("alerts.jsonl"),
            offset_file,
            offset,
        })
    }

    /// Up to `max` complete lines after the cursor, with the offset after
    /// each and after them all. A partial last line (the writer is
    /// mid-line) is left for later.
    pub fn peek(&self, max: usize) -> anyhow::Result<Peeked> {
        let nothing = Peeked {
            next: self.offset,
            ..Peeked::default()
        };
        let mut file = match File::open(&self.log) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(nothing),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot open {}", self.log.display()))
            }
        };
        let len = file.metadata()?.len();
        if len <= self.offset {
            return Ok(nothing);
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let want = (len - self.offset).min(8 * 1024 * 1024);
        let mut buf = vec![0u8; want as usize];
        file.read_exact(&mut buf)?;
        let mut peeked = nothing;
        for line in buf.split_inclusive(|&b| b == b'\n') {
            if peeked.lines.len() == max || !line.ends_with(b"\n") {
                break;
            }
            peeked.next += line.len() as u64;
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if !text.trim().is_empty() {
                peeked.lines.push(text);
                peeked.ends.push(peeked.next);
            }
        }
        Ok(peeked)
    }

    /// Moves the cursor and persists it (write to a temp file, rename).
    pub fn commit(&mut self, offset: u64) -> anyhow::Result<()> {
        assert!(offset >= self.offset, "an output cursor never moves back");
        let tmp = self.offset_file.with_extension("offset.tmp");
        std::fs::write(&tmp, offset.to_string())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.offset_file)
            .with_context(|| format!("cannot rename to {}", self.offset_file.display()))?;
        self.offset = offset;
        Ok(())
    }

    /// Bytes of the log past the cursor.
    pub fn backlog_bytes(&self) -> u64 {
        std::fs::metadata(&self.log)
            .map(|m| m.len().saturating_sub(self.offset))
            .unwrap_or(0)
    }
}

/// A running output thread.
pub struct OutputThread {
    pub name: String,
    pub stats: Arc<OutputStats>,
    thread: JoinHandle<()>,
}

impl OutputThread {
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts the delivery loop of one output. It drains what the log holds
/// when `stop` is set (bounded by one failed attempt) and then exits.
pub fn start(
    data_dir: &Path,
    mut output: Box<dyn Deliver>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<OutputThread> {
    let name = output.name().to_string();
    let mut cursor = Cursor::open(data_dir, &name)?;
    let stats = Arc::new(OutputStats::default());
    let thread_stats = stats.clone();
    let thread_name = name.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sw-out-{name}"))
        .spawn(move || {
            let mut backoff = Duration::from_millis(100);
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                thread_stats
                    .backlog_bytes
                    .store(cursor.backlog_bytes(), Ordering::Relaxed);
                let Peeked { lines, ends, next } = match cursor.peek(BATCH_ALERTS_MAX) {
                    Ok(batch) => batch,
                    Err(err) => {
                        eprintln!("shardwatch: output {}: {err:#}", output.name());
                        Peeked::default()
                    }
                };
                if lines.is_empty() {
                    if stopping {
                        break;
                    }
                    std::thread::sleep(POLL_INTERVAL);
                    continue;
                }
                // Counts `delivered` lines and moves the cursor to `offset`.
                let advance = |cursor: &mut Cursor, delivered: usize, offset: u64| {
                    thread_stats
                        .delivered
                        .fetch_add(delivered as u64, Ordering::Relaxed);
                    if let Err(err) = cursor.commit(offset) {
                        eprintln!("shardwatch: output {thread_name}: {err:#}");
                    }
                };
                match output.deliver_confirmed(&lines) {
                    Ok(()) => {
                        advance(&mut cursor, lines.len(), next);
                        backoff = Duration::from_millis(100);
                    }
                    Err(Failure {
                        confirmed,
                        error: err,
                    }) => {
                        // What the receiver confirmed is not sent again.
                        let confirmed = confirmed.min(lines.len());
                        if confirmed > 0 {
                            advance(&mut cursor, confirmed, ends[confirmed - 1]);
                        }
                        thread_stats.failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "shardwatch: output {}: delivery failed, retrying in {:?}: {err:#}",
                            output.name(),
                            backoff
                        );
                        if stopping {
                            // The alerts stay in the log; the next start
                            // delivers them from the saved cursor.
                            break;
                        }
                        let mut slept = Duration::ZERO;
                        while slept < backoff && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(POLL_INTERVAL);
                            slept += POLL_INTERVAL;
                        }
                        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                    }
                }
            }
        })
        .with_context(|| format!("cannot start output thread {name}"))?;
    Ok(OutputThread {
        name,
        stats,
        thread,
    })
}

#[cfg(test)]
pub(crate) mod test_pki {
    //! Certificates for the TLS output tests, and a one-connection TLS
    //! receiver.

    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use rustls::{ServerConfig, ServerConnection, StreamOwned};
    use shardwatch_net::tls::{server_config, TlsServerSettings};

    pub(crate) type TlsServerStream = StreamOwned<ServerConnection, TcpStream>;

    /// A CA, a server certificate for `localhost` and `127.0.0.1`, and a
    /// client certificate, as PEM files in a fresh directory.
    pub(crate) struct Pki {
        pub dir: PathBuf,
        pub ca_file: PathBuf,
        pub server: (PathBuf, PathBuf),
        pub client: (PathBuf, PathBuf),
    }

    fn issue(
        dir: &Path,
        file: &str,
        names: &[&str],
        ca: &CertifiedIssuer<'_, KeyPair>,
    ) -> (PathBuf, PathBuf) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        let paths = (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&paths.0, cert.pem()).unwrap();
        std::fs::write(&paths.1, key.serialize_pem()).unwrap();
        paths
    }

    pub(crate) fn pki(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("sw-out-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "outputs test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let server = issue(&dir, "server", &["localhost", "127.0.0.1"], &ca);
        let client = issue(&dir, "client", &["shardwatch.example"], &ca);
        Pki {
            dir,
            ca_file,
            server,
            client,
        }
    }

    impl Pki {
        /// The receiver's config; `mutual`: it requires a client certificate.
        pub(crate) fn server_config(&self, mutual: bool) -> Arc<ServerConfig> {
            server_config(&TlsServerSettings {
                cert_file: self.server.0.clone(),
                key_file: self.server.1.clone(),
                client_ca_file: mutual.then(|| self.ca_file.clone()),
                require_client_cert: mutual,
            })
            .unwrap()
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A TLS receiver on 127.0.0.1 that accepts one connection and hands
    /// its stream to `serve` (the handshake happens on the first read).
    pub(crate) fn serve_once<T: Send + 'static>(
        config: Arc<ServerConfig>,
        serve: impl FnOnce(&mut TlsServerStream) -> T + Send + 'static,
    ) -> (SocketAddr, JoinHandle<T>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let conn = ServerConnection::new(config).unwrap();
            serve(&mut StreamOwned::new(conn, tcp))
        });
        (addr, thread)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Fails its first delivery after confirming `confirm_first` lines,
    /// then delivers; records every batch it was given.
    struct PartlyConfirming {
        confirm_first: usize,
        batches: Arc<Mutex<Vec<Vec<String>>>>,
    }

    impl Deliver for PartlyConfirming {
        fn name(&self) -> &str {
            "partly"
        }

        fn deliver(&mut self, _lines: &[String]) -> anyhow::Result<()> {
            unreachable!("the loop asks for deliver_confirmed")
        }

        fn deliver_confirmed(&mut self, lines: &[String]) -> Result<(), Failure> {
            let mut batches = self.batches.lock().unwrap();
            batches.push(lines.to_vec());
            if batches.len() == 1 {
                return Err(Failure {
                    confirmed: self.confirm_first,
                    error: anyhow::anyhow!("the receiver went away"),
                });
            }
            Ok(())
        }
    }

    /// A batch whose first lines the receiver confirmed before it failed:
    /// the cursor moves past them (and past a blank line between them), they
    /// count as delivered, and only the rest goes again.
    #[test]
    fn a_partly_confirmed_batch_moves_the_cursor_over_what_was_confirmed() {
        let dir = std::env::temp_dir().join(format!("sw-out-partly-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = "{\"id\":\"a\"}\n{\"id\":\"b\"}\n\n{\"id\":\"c\"}\n{\"id\":\"d\"}\n";
        std::fs::write(dir.join("alerts.jsonl"), log).unwrap();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let output = PartlyConfirming {
            confirm_first: 2,
            batches: batches.clone(),
        };
        let thread = start(&dir, Box::new(output), stop.clone()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while thread.stats.delivered.load(Ordering::Relaxed) < 4 {
            assert!(std::time::Instant::now() < deadline, "not delivered");
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        let failures = thread.stats.failures.load(Ordering::Relaxed);
        thread.join();
        let batches = batches.lock().unwrap();
        let ids = |batch: &Vec<String>| batch.join(",");
        assert_eq!(batches.len(), 2, "{batches:?}");
        assert_eq!(
            ids(&batches[0]),
            r#"{"id":"a"},{"id":"b"},{"id":"c"},{"id":"d"}"#
        );
        assert_eq!(ids(&batches[1]), r#"{"id":"c"},{"id":"d"}"#);
        assert_eq!(failures, 1);
        assert_eq!(saved_cursor(&dir), log.len() as u64);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The saved cursor of the `partly` output.
    fn saved_cursor(dir: &Path) -> u64 {
        Cursor::open(dir, "partly").unwrap().offset
    }

    #[test]
    fn peek_gives_the_offset_after_each_line() {
        let dir = std::env::temp_dir().join(format!("sw-out-peek-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("alerts.jsonl"), "ab\n\ncd\nef\n\nunfinished").unwrap();
        let cursor = Cursor::open(&dir, "peek").unwrap();
        let all = cursor.peek(10).unwrap();
        assert_eq!(all.lines, ["ab", "cd", "ef"]);
        assert_eq!(all.ends, [3, 7, 10]);
        assert_eq!(
            all.next, 11,
            "past the blank line, not into the unfinished one"
        );
        let two = cursor.peek(2).unwrap();
        assert_eq!((two.ends, two.next), (vec![3, 7], 7));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
