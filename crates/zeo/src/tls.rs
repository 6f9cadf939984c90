//! TLS settings for ZEO connections, both ends: the `<ssl>` section of `zeo.conf` (and
//! `bbru-zeo`'s `--ssl-*` flags) for the server, [`ClientTls`] for the client, and how
//! each becomes a `rustls` configuration from PEM files.
//!
//! What Python ZEO 6 does, and so what its clients and servers expect: TLS from the
//! first byte of the connection, then the usual `Z5`/`M5` handshake inside it.  The
//! server presents its certificate and key; with `authenticate` (a CA file, or a
//! directory of them) it asks every client for a certificate signed by one of those
//! CAs and refuses a client without one.  A client trusts the CAs it is given and
//! checks that the server's certificate names the host it connects to (or the
//! `server_hostname` it is told).
//!
//! Differences from Python's `ssl` module, each refused with a clear error rather than
//! ignored: encrypted keys (`password-function` names a Python function; decrypt the key
//! file instead), `authenticate DYNAMIC`, and a server without `authenticate` is allowed
//! here (TLS without client certificates), where Python's runzeo requires it.
//! Certificates are checked by `webpki`, which is stricter than OpenSSL: a CA
//! certificate cannot also be an end's own certificate, and SHA-1 signatures are
//! refused.  One OpenSSL habit is kept for the server, as Python ZEO deployments (and
//! ZEO's own test suite) rely on it: a client certificate listed itself in
//! `authenticate` (`authenticate client.pem`, a self-signed certificate) is accepted as
//! that exact certificate, the client proving it holds its key in the handshake
//! (as listed, like a pinned key: its dates and signature are not looked at).  The
//! client trusts only certificates a CA it is given signed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The server's TLS settings: `zeo.conf`'s `<ssl>` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The server's certificate (PEM), followed by any intermediate certificates.
    pub certificate: PathBuf,
    /// Its private key (PEM); `None`: the key is in the certificate file.
    pub key: Option<PathBuf>,
    /// A PEM file, or a directory of PEM files, of the CAs whose client certificates
    /// are accepted; `None`: clients need no certificate.
    pub authenticate: Option<PathBuf>,
}

/// The client's TLS settings (Python's `ClientStorage(ssl=..., ssl_server_hostname=...)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// A PEM file, or a directory of PEM files, of the CAs that may sign the server's
    /// certificate.
    pub ca: PathBuf,
    /// The client's own certificate (PEM), for a server that authenticates clients.
    pub certificate: Option<PathBuf>,
    /// Its private key (PEM); `None`: the key is in the certificate file.
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry; `None`: the host of the address
    /// (a unix socket address needs it given).
    pub server_hostname: Option<String>,
}

/// Why TLS could not be set up; each names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not PEM: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{}: no certificate (a PEM `BEGIN CERTIFICATE` block) in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{}: no private key (a PEM `BEGIN PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block) in it",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error(
        "{}: the private key is encrypted; give a decrypted copy (`openssl pkey -in KEY -out PLAIN`), readable by the server only",
        path.display()
    )]
    EncryptedKey { path: PathBuf },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{0}")]
    Unsupported(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in the PEM file `path` (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in the PEM file `path`.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(k) => Ok(k),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            if pem.windows(9).any(|w| w == b"ENCRYPTED") {
                Err(TlsError::EncryptedKey {
                    path: path.to_path_buf(),
                })
            } else {
                Err(TlsError::NoKey {
                    path: path.to_path_buf(),
                })
            }
        }
        Err(e) => Err(TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// The CAs of a PEM file, or of every file in a directory (as OpenSSL's `capath`, minus
/// its hashed names: each regular file holding PEM certificates counts).
fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    Ok(listed_certificates(path)?.0)
}

/// [`roots`], and the certificates as they were listed.
fn listed_certificates(
    path: &Path,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let mut files = Vec::new();
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if entry.path().is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut store = RootCertStore::empty();
    let mut listed = Vec::new();
    for file in &files {
        // In a directory, files that hold no certificate (keys, notes) are passed over.
        let certs = match certificates(file) {
            Ok(c) => c,
            Err(TlsError::NoCertificate { .. } | TlsError::Pem { .. }) if files.len() > 1 => {
                continue;
            }
            Err(e) => return Err(e),
        };
        for cert in certs {
            store.add(cert.clone()).map_err(|e| TlsError::Invalid {
                path: file.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
            listed.push(cert);
        }
    }
    if store.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok((store, listed))
}

/// The server's check of client certificates (see the module doc): one a listed CA
/// signed (webpki), or one listed itself.
#[derive(Debug)]
struct ClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    listed: Vec<CertificateDer<'static>>,
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self
            .listed
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(ClientCertVerified::assertion());
        }
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Certificate chain and key, checked to belong together.
fn identity(
    certificate: &Path,
    key: Option<&Path>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = certificates(certificate)?;
    let key_path = key.unwrap_or(certificate);
    let key = private_key(key_path)?;
    Ok((chain, key))
}

impl ServerTls {
    /// The server's `rustls` configuration; any unreadable or unsuitable file is named.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (chain, key) = identity(&self.certificate, self.key.as_deref())?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Unsupported(e.to_string()))?;
        let builder = match &self.authenticate {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let (roots, listed) = listed_certificates(ca)?;
                let webpki =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::Invalid {
                            path: ca.clone(),
                            message: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(Arc::new(ClientVerifier { webpki, listed }))
            }
        };
        let key_path = self.key.clone().unwrap_or_else(|| self.certificate.clone());
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Invalid {
                path: key_path,
                message: format!("the key does not fit the certificate: {e}"),
            })?;
        Ok(Arc::new(config))
    }
}

impl ClientTls {
    /// The client's `rustls` configuration; any unreadable or unsuitable file is named.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Unsupported(e.to_string()))?
            .with_root_certificates(roots(&self.ca)?);
        let config = match &self.certificate {
            None => {
                if let Some(key) = &self.key {
                    return Err(TlsError::Unsupported(format!(
                        "a client key ({}) without its certificate",
                        key.display()
                    )));
                }
                builder.with_no_client_auth()
            }
            Some(cert) => {
                let (chain, key) = identity(cert, self.key.as_deref())?;
                let key_path = self.key.clone().unwrap_or_else(|| cert.clone());
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Invalid {
                        path: key_path,
                        message: format!("the key does not fit the certificate: {e}"),
                    })?
            }
        };
        Ok(Arc::new(config))
    }

    /// The name to check the server's certificate against, for a server at `host`
    /// (`None` for a unix socket).
    pub fn server_name(&self, host: Option<&str>) -> Result<ServerName<'static>, TlsError> {
        let name = match (&self.server_hostname, host) {
            (Some(n), _) => n.as_str(),
            (None, Some(h)) => h,
            (None, None) => {
                return Err(TlsError::Unsupported(
                    "TLS over a unix socket needs the server's name (server_hostname)".into(),
                ));
            }
        };
        // `[::1]` in an address is the IP `::1` in a certificate.
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(bare.to_string())
            .map_err(|e| TlsError::Unsupported(format!("server name {name:?}: {e}")))
    }
}
