//! TLS with rustls: the server side of syslog over TLS (RFC 5425) and the
//! client side of the alert outputs (syslog forward over TLS, `https://`
//! webhook).
//!
//! Certificates and keys are PEM files read once, when a config is built;
//! every problem with them is a [`TlsError`] that names the file. The
//! crypto is rustls' `ring` provider, passed explicitly, so nothing here
//! depends on a process-wide default provider. There are no built-in trust
//! roots (the appliance runs offline): a client trusts the CA file it is
//! given and nothing else.
//!
//! The blocking side uses `rustls::StreamOwned` over a `std` socket; the
//! glommio side wraps its streams with [`TlsAcceptor`] (re-exported from
//! `futures_rustls`, as are `futures_rustls` and `rustls` themselves, so a
//! user of this crate gets the same versions).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use futures_rustls::{self, TlsAcceptor, TlsConnector};
pub use rustls;

/// What a TLS listener serves and whom it accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsServerSettings {
    /// PEM: the server certificate, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM: the private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: the CA(s) client certificates must chain to. Without it no
    /// client certificate is asked for.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate (mutual TLS). With `false` and
    /// a `client_ca_file`, a client may stay anonymous, but a certificate it
    /// does present must verify. Needs `client_ca_file`.
    pub require_client_cert: bool,
}

/// Whom a TLS client trusts and how it identifies itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientSettings {
    /// PEM: the CA(s) the server certificate must chain to. Required:
    /// there are no built-in roots, so `None` is an error.
    pub ca_file: Option<PathBuf>,
    /// PEM: a client certificate (chain) for servers that require one.
    /// Goes with `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM: the private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
}

/// Why a TLS config could not be built. Every variant about a file names it
/// and its role (`what`: "certificate file", "client CA file", ...).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {} is not valid PEM: {detail}", path.display())]
    BadPem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{what} {} holds no certificate (expected a PEM \"BEGIN CERTIFICATE\" block)", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error(
        "{what} {} holds no private key (expected a PEM \"BEGIN PRIVATE KEY\", \
         \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)",
        path.display()
    )]
    NoKey { what: &'static str, path: PathBuf },
    #[error("{what} {}: unusable private key: {detail}", path.display())]
    BadKey {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{what} {}: bad certificate: {detail}", path.display())]
    BadCertificate {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("the private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{what} {}: bad CA certificate: {detail}", path.display())]
    BadCa {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// The settings do not fit together (a key without a certificate, ...).
    #[error("{0}")]
    Settings(&'static str),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider of every config built here.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(path: &Path, what: &'static str, err: pem::Error) -> TlsError {
    TlsError::BadPem {
        what,
        path: path.to_path_buf(),
        detail: err.to_string(),
    }
}

/// Every certificate of a PEM file, in order; at least one.
fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad_pem(path, what, err))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file.
fn load_key(path: &Path, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, what)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        pem::Error::NoItemsFound => TlsError::NoKey {
            what,
            path: path.to_path_buf(),
        },
        err => bad_pem(path, what, err),
    })
}

/// A trust store holding every certificate of a PEM file.
fn load_roots(path: &Path, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, what)? {
        roots.add(cert).map_err(|err| TlsError::BadCa {
            what,
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
    }
    Ok(roots)
}

/// A certificate chain and its key, checked against each other so that
/// the error says which file is wrong.
fn load_identity(
    provider: &CryptoProvider,
    cert_file: &Path,
    cert_what: &'static str,
    key_file: &Path,
    key_what: &'static str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = load_certs(cert_file, cert_what)?;
    let key = load_key(key_file, key_what)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|err| TlsError::BadKey {
            what: key_what,
            path: key_file.to_path_buf(),
            detail: err.to_string(),
        })?;
    match CertifiedKey::new(certs.clone(), signing_key).keys_match() {
        // `Unknown`: the key cannot tell its public half; rustls accepts it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
            })
        }
        Err(err) => {
            return Err(TlsError::BadCertificate {
                what: cert_what,
                path: cert_file.to_path_buf(),
                detail: err.to_string(),
            })
        }
    }
    Ok((certs, key))
}

/// The config of a TLS listener: TLS 1.2 and 1.3, the certificate and key
/// of `s`, and client certificates verified against `s.client_ca_file`
/// when it is set (required with `s.require_client_cert`).
pub fn server_config(s: &TlsServerSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let (certs, key) = load_identity(
        &provider,
        &s.cert_file,
        "certificate file",
        &s.key_file,
        "key file",
    )?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &s.client_ca_file {
        Some(ca_file) => {
            let roots = load_roots(ca_file, "client CA file")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if s.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|err| TlsError::BadCa {
                what: "client CA file",
                path: ca_file.clone(),
                detail: err.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None if s.require_client_cert => {
            return Err(TlsError::Settings(
                "requiring client certificates needs a client CA file to verify them against",
            ))
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(builder.with_single_cert(certs, key)?))
}

/// The config of a TLS client: TLS 1.2 and 1.3, servers verified against
/// `s.ca_file` (required: there are no built-in roots), and a client
/// certificate when both of its files are set.
pub fn client_config(s: &TlsClientSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let ca_file = s.ca_file.as_deref().ok_or(TlsError::Settings(
        "a TLS client needs a CA file to verify the server (there are no built-in roots)",
    ))?;
    let roots = load_roots(ca_file, "CA file")?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&s.client_cert_file, &s.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let (certs, key) = load_identity(
                &provider,
                cert_file,
                "client certificate file",
                key_file,
                "client key file",
            )?;
            builder.with_client_auth_cert(certs, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(TlsError::Settings(
                "a client certificate needs its client key file",
            ))
        }
        (None, Some(_)) => {
            return Err(TlsError::Settings(
                "a client key needs its client certificate file",
            ))
        }
    };
    Ok(Arc::new(config))
}

/// The acceptor that wraps an accepted async stream (glommio's) in TLS.
pub fn acceptor(config: Arc<ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, Connection, ServerConnection};

    /// A scratch directory, fresh for each test.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sw-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A CA written as `<name>-ca.pem`, which issues certificates.
    struct Ca {
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl Ca {
        fn new(dir: &Path, name: &str) -> (Ca, PathBuf) {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{name} test CA"));
            let issuer =
                CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
            let path = dir.join(format!("{name}-ca.pem"));
            std::fs::write(&path, issuer.pem()).unwrap();
            (Ca { issuer }, path)
        }

        /// A leaf for `names`, written as `<file>.crt` and `<file>.key`.
        fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
            let params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            let (crt, pem_key) = (
                dir.join(format!("{file}.crt")),
                dir.join(format!("{file}.key")),
            );
            std::fs::write(&crt, cert.pem()).unwrap();
            std::fs::write(&pem_key, key.serialize_pem()).unwrap();
            (crt, pem_key)
        }
    }

    /// Moves what `from` has to send into `to`.
    fn pump(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).unwrap();
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets()?;
        }
        Ok(())
    }

    /// Handshakes in memory and sends one message from client to server.
    /// The error is the side that failed first and why.
    fn exchange(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
        name: &str,
    ) -> Result<(), (&'static str, rustls::Error)> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut client: Connection = ClientConnection::new(client, name).unwrap().into();
        let mut server: Connection = ServerConnection::new(server).unwrap().into();
        std::io::Write::write_all(&mut client.writer(), b"hello").unwrap();
        for _ in 0..10 {
            pump(&mut client, &mut server).map_err(|e| ("server", e))?;
            pump(&mut server, &mut client).map_err(|e| ("client", e))?;
            let mut got = [0u8; 5];
            if !server.is_handshaking()
                && std::io::Read::read_exact(&mut server.reader(), &mut got).is_ok()
            {
                assert_eq!(&got, b"hello");
                return Ok(());
            }
        }
        panic!("the exchange did not finish");
    }

    struct Pki {
        dir: PathBuf,
        ca_file: PathBuf,
        server: (PathBuf, PathBuf),
        client: (PathBuf, PathBuf),
    }

    fn pki(name: &str) -> Pki {
        let dir = temp_dir(name);
        let (ca, ca_file) = Ca::new(&dir, "main");
        let server = ca.issue(&dir, "server", &["localhost", "127.0.0.1"]);
        let client = ca.issue(&dir, "client", &["sender.example"]);
        Pki {
            dir,
            ca_file,
            server,
            client,
        }
    }

    fn server_settings(p: &Pki, mutual: bool) -> TlsServerSettings {
        TlsServerSettings {
            cert_file: p.server.0.clone(),
            key_file: p.server.1.clone(),
            client_ca_file: mutual.then(|| p.ca_file.clone()),
            require_client_cert: mutual,
        }
    }

    fn client_settings(p: &Pki, with_cert: bool) -> TlsClientSettings {
        TlsClientSettings {
            ca_file: Some(p.ca_file.clone()),
            client_cert_file: with_cert.then(|| p.client.0.clone()),
            client_key_file: with_cert.then(|| p.client.1.clone()),
        }
    }

    #[test]
    fn tls_handshake_with_and_without_client_certificates() {
        let p = pki("handshake");
        let server = server_config(&server_settings(&p, false)).unwrap();
        let client = client_config(&client_settings(&p, false)).unwrap();
        exchange(client, server.clone(), "localhost").unwrap();
        // An IP address SAN verifies too.
        let client = client_config(&client_settings(&p, false)).unwrap();
        exchange(client, server, "127.0.0.1").unwrap();
        // Mutual TLS.
        let server = server_config(&server_settings(&p, true)).unwrap();
        let client = client_config(&client_settings(&p, true)).unwrap();
        exchange(client, server, "localhost").unwrap();
        // A client CA set but certificates optional: anonymous is fine.
        let mut optional = server_settings(&p, true);
        optional.require_client_cert = false;
        let server = server_config(&optional).unwrap();
        exchange(
            client_config(&client_settings(&p, false)).unwrap(),
            server.clone(),
            "localhost",
        )
        .unwrap();
        exchange(
            client_config(&client_settings(&p, true)).unwrap(),
            server,
            "localhost",
        )
        .unwrap();
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn tls_acceptor_serves_a_glommio_stream() {
        use futures_lite::AsyncReadExt;
        let p = pki("acceptor");
        let server = server_config(&server_settings(&p, true)).unwrap();
        let client = client_config(&client_settings(&p, true)).unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let conn = ClientConnection::new(client, name).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            std::io::Write::write_all(&mut tls, b"11 <13>1 - - x").unwrap();
            tls.conn.send_close_notify();
            std::io::Write::flush(&mut tls).unwrap();
            // Read the server's session tickets until it closes, so that
            // closing here does not reset the connection under its reads.
            let _ = std::io::Read::read_to_end(&mut tls, &mut Vec::new());
        });
        let received = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = crate::transport::tcp::adopt_listener(std_listener).unwrap();
                let stream = listener.accept().await.unwrap();
                let mut tls = acceptor(server).accept(stream).await.unwrap();
                let mut got = Vec::new();
                tls.read_to_end(&mut got).await.unwrap();
                got
            })
            .unwrap()
            .join()
            .unwrap();
        sender.join().unwrap();
        assert_eq!(received, b"11 <13>1 - - x");
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn tls_refuses_a_client_without_a_required_certificate() {
        let p = pki("no-client-cert");
        let server = server_config(&server_settings(&p, true)).unwrap();
        let client = client_config(&client_settings(&p, false)).unwrap();
        let (side, err) = exchange(client, server, "localhost").unwrap_err();
        assert_eq!(side, "server");
        assert_eq!(err, rustls::Error::NoCertificatesPresented);
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn tls_refuses_a_client_certificate_from_another_ca() {
        let p = pki("other-client-ca");
        let (other, _) = Ca::new(&p.dir, "other");
        let (crt, key) = other.issue(&p.dir, "stranger", &["stranger.example"]);
        let server = server_config(&server_settings(&p, true)).unwrap();
        let client = client_config(&TlsClientSettings {
            ca_file: Some(p.ca_file.clone()),
            client_cert_file: Some(crt),
            client_key_file: Some(key),
        })
        .unwrap();
        let (side, err) = exchange(client, server, "localhost").unwrap_err();
        assert_eq!(side, "server");
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn tls_refuses_a_server_certificate_from_another_ca_or_name() {
        let p = pki("other-server-ca");
        let (other, _) = Ca::new(&p.dir, "other");
        let (crt, key) = other.issue(&p.dir, "impostor", &["localhost"]);
        let server = server_config(&TlsServerSettings {
            cert_file: crt,
            key_file: key,
            ..TlsServerSettings::default()
        })
        .unwrap();
        let client = client_config(&client_settings(&p, false)).unwrap();
        let (side, err) = exchange(client, server, "localhost").unwrap_err();
        assert_eq!(side, "client");
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        );
        // The right CA but the wrong name.
        let server = server_config(&server_settings(&p, false)).unwrap();
        let client = client_config(&client_settings(&p, false)).unwrap();
        let (side, err) = exchange(client, server, "siem.example").unwrap_err();
        assert_eq!(side, "client");
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn tls_errors_name_the_file_and_the_problem() {
        let p = pki("errors");
        let missing = p.dir.join("missing.pem");
        let err = server_config(&TlsServerSettings {
            cert_file: missing.clone(),
            ..server_settings(&p, false)
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("cannot read certificate file "), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");

        // A key file that holds only a certificate.
        let err = server_config(&TlsServerSettings {
            key_file: p.server.0.clone(),
            ..server_settings(&p, false)
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("key file"), "{text}");
        assert!(text.contains("holds no private key"), "{text}");
        assert!(text.contains(&p.server.0.display().to_string()), "{text}");

        // A certificate file that holds only a key.
        let err = server_config(&TlsServerSettings {
            cert_file: p.server.1.clone(),
            ..server_settings(&p, false)
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(err.to_string().contains("holds no certificate"), "{err}");

        // The client's key with the server's certificate.
        let err = server_config(&TlsServerSettings {
            key_file: p.client.1.clone(),
            ..server_settings(&p, false)
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("does not match"), "{err}");

        // A truncated CA file.
        let ca = std::fs::read_to_string(&p.ca_file).unwrap();
        let broken = p.dir.join("broken-ca.pem");
        std::fs::write(&broken, &ca[..ca.len() / 2]).unwrap();
        let err = client_config(&TlsClientSettings {
            ca_file: Some(broken.clone()),
            ..TlsClientSettings::default()
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::BadPem { .. }), "{err:?}");
        assert!(err.to_string().contains("CA file"), "{err}");

        // No CA at all, and half a client identity.
        let err = client_config(&TlsClientSettings::default()).unwrap_err();
        assert!(err.to_string().contains("needs a CA file"), "{err}");
        let err = client_config(&TlsClientSettings {
            client_key_file: None,
            ..client_settings(&p, true)
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::Settings(_)), "{err:?}");
        let err = server_config(&TlsServerSettings {
            client_ca_file: None,
            ..server_settings(&p, true)
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::Settings(_)), "{err:?}");
        std::fs::remove_dir_all(&p.dir).unwrap();
    }
}
