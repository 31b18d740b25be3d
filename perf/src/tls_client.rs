//! The TLS lane (syslog over TLS, RFC 5425): a blocking rustls client on a
//! TCP connection, with the config from `shardwatch_net::tls`, and the
//! throwaway CA and server certificate `bench --transport tls` gives the
//! appliance.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use shardwatch_net::tls::{client_config, TlsClientSettings};

/// The name the server certificate is checked against by default.
pub const SERVER_NAME_DEFAULT: &str = "localhost";

/// Whom the TLS client trusts and how it names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM CA the server certificate must chain to (required for TLS).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: String,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: SERVER_NAME_DEFAULT.to_string(),
        }
    }
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// The client config of `options`.
pub fn config(options: &TlsOptions) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    if options.ca_file.is_none() {
        bail!("TLS needs --tls-ca (the CA that signed the appliance's certificate)");
    }
    Ok(client_config(&TlsClientSettings {
        ca_file: options.ca_file.clone(),
        client_cert_file: options.cert_file.clone(),
        client_key_file: options.key_file.clone(),
    })?)
}

/// Connects and completes the handshake, so a certificate problem shows
/// here rather than at the first write.
pub fn connect(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    server_name: &str,
) -> anyhow::Result<TlsStream> {
    let name = ServerName::try_from(server_name.to_string())
        .with_context(|| format!("--tls-server-name {server_name:?} is not a DNS name or IP"))?;
    let mut tcp =
        TcpStream::connect(addr).with_context(|| format!("cannot connect TLS to {addr}"))?;
    tcp.set_nodelay(true)?;
    let mut conn = ClientConnection::new(config, name).context("TLS client setup failed")?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .with_context(|| format!("TLS handshake with {addr} failed"))?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// Ends the session: close_notify, half-close the socket, then read until
/// the server closes its side. Closing a socket with unread data in it
/// (the server's session tickets, which this client never reads) sends a
/// RST, and a RST makes the server's kernel discard whatever it had not
/// read yet: the tail of the stream would be lost.
pub fn close(stream: &mut TlsStream) {
    use std::io::{Read, Write};
    let _ = stream.flush();
    stream.conn.send_close_notify();
    let _ = stream.conn.complete_io(&mut stream.sock);
    let _ = stream.sock.shutdown(std::net::Shutdown::Write);
    let _ = stream
        .sock
        .set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let mut sink = [0u8; 16 * 1024];
    while matches!(stream.sock.read(&mut sink), Ok(n) if n > 0) {}
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 written by
/// [`write_bench_certs`].
#[derive(Debug, Clone)]
pub struct BenchCerts {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Writes a throwaway CA (`tls-ca.pem`) and a server certificate it signed
/// for `localhost`, 127.0.0.1 and ::1 (`tls-server.pem`, `tls-server.key`)
/// into `dir`.
pub fn write_bench_certs(dir: &Path) -> anyhow::Result<BenchCerts> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "shardwatch-load throwaway CA");
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "shardwatch bench");
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?;
    let certs = BenchCerts {
        ca: dir.join("tls-ca.pem"),
        server_cert: dir.join("tls-server.pem"),
        server_key: dir.join("tls-server.key"),
    };
    for (path, text) in [
        (&certs.ca, issuer.pem()),
        (&certs.server_cert, cert.pem()),
        (&certs.server_key, key.serialize_pem()),
    ] {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardwatch_net::tls::{server_config, TlsServerSettings};
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn bench_certs_let_the_client_reach_a_rustls_server() {
        let dir = std::env::temp_dir().join(format!("swl-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let certs = write_bench_certs(&dir).unwrap();
        let server = server_config(&TlsServerSettings {
            cert_file: certs.server_cert.clone(),
            key_file: certs.server_key.clone(),
            ..TlsServerSettings::default()
        })
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(server).unwrap();
            let mut stream = StreamOwned::new(conn, tcp);
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("{e}"),
                }
            }
            got
        });
        let options = TlsOptions {
            ca_file: Some(certs.ca.clone()),
            ..TlsOptions::default()
        };
        let mut stream = connect(addr, config(&options).unwrap(), "localhost").unwrap();
        stream.write_all(b"5 hello").unwrap();
        close(&mut stream);
        assert_eq!(srv.join().unwrap(), b"5 hello");
        assert!(config(&TlsOptions::default()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
