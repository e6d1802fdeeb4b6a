//! SIP over TLS (RFC 3261 §26.2, RFC 5630): the `[sip.tls]` settings and the reloadable server
//! side of rustls (ring provider, TLS 1.2 or 1.3 at least). The certificate chain and key come
//! from files or systemd credentials; extra certificates are chosen by SNI (RFC 6066), the first
//! one serves everything else. With `client_ca_file` every trunk must present a certificate
//! signed by that CA (mutual TLS, as some carriers require). SIGHUP builds a new server config:
//! handshakes from then on use it, established connections keep theirs. The stream itself is
//! served by `tcp.rs` like any other SIP stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;

use crate::config::secret;

/// `[sip.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Addresses to accept TLS on (the SIPS port is 5061).
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain, leaf first: an absolute path or a systemd credential name.
    pub certificate_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1): an absolute path or a credential name.
    pub private_key_file: String,
    /// More certificates, each served to clients that ask for its name by SNI.
    #[serde(default)]
    pub sni: Vec<SniCertificate>,
    /// PEM CA certificates; when set, trunks must present a client certificate signed by one.
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// Lowest protocol version offered: "1.2" (default) or "1.3".
    #[serde(default)]
    pub min_version: MinVersion,
    /// A connection that has not finished its handshake by then is closed.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    /// The DNS name clients ask for.
    pub server_name: String,
    pub certificate_file: String,
    pub private_key_file: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MinVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

fn default_handshake_timeout() -> u64 {
    10
}

impl Settings {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_seconds)
    }

    /// Problems as (key path relative to `[sip.tls]`, message); loads every file, so a bad
    /// certificate is named by `check-config` rather than at the first handshake.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.listen.is_empty() {
            problems.push(("listen".to_owned(), "name at least one address".to_owned()));
        }
        if self.handshake_timeout_seconds == 0 {
            problems.push((
                "handshake_timeout_seconds".to_owned(),
                "must be positive".to_owned(),
            ));
        }
        let mut check = |key: String, value: &str| {
            if let Err(e) = secret::check(value) {
                problems.push((key, e.to_string()));
            }
        };
        check("certificate_file".into(), &self.certificate_file);
        check("private_key_file".into(), &self.private_key_file);
        for (i, s) in self.sni.iter().enumerate() {
            check(format!("sni[{i}].certificate_file"), &s.certificate_file);
            check(format!("sni[{i}].private_key_file"), &s.private_key_file);
        }
        if let Some(ca) = &self.client_ca_file {
            check("client_ca_file".into(), ca);
        }
        if problems.is_empty()
            && let Err(err) = server_config(self)
        {
            // The message with the library's reason, which the operator needs to fix the file.
            let message = err.message();
            let problem = match std::error::Error::source(&err) {
                Some(cause) => format!("{message}: {}", crate::ops::Chain(cause)),
                None => message,
            };
            problems.push((err.key(), problem));
        }
        problems
    }
}

/// Why a TLS setting cannot be used; names the setting and the file, never key material. Reads
/// `<key>: <message>` (the key relative to `[sip.tls]`); a library's reason is the `source`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", self.key(), self.message())]
pub enum TlsError {
    Path {
        key: String,
        problem: secret::SecretPathError,
    },
    Read {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    NoCertificate {
        key: String,
        path: PathBuf,
    },
    NoKey {
        key: String,
        path: PathBuf,
    },
    Key {
        key: String,
        #[source]
        source: rustls::Error,
    },
    Verifier(#[from] rustls::server::VerifierBuilderError),
    Versions(#[source] rustls::Error),
}

impl TlsError {
    /// The key path (relative to `[sip.tls]`) the problem belongs to.
    pub fn key(&self) -> String {
        match self {
            Self::Path { key, .. }
            | Self::Read { key, .. }
            | Self::NoCertificate { key, .. }
            | Self::NoKey { key, .. }
            | Self::Key { key, .. } => key.clone(),
            Self::Verifier(_) => "client_ca_file".to_owned(),
            Self::Versions(_) => "min_version".to_owned(),
        }
    }

    /// What is wrong with that key, without naming it or repeating the source.
    pub fn message(&self) -> String {
        match self {
            Self::Path { problem, .. } => problem.to_string(),
            Self::Read { path, .. } => format!("cannot read {}", path.display()),
            Self::NoCertificate { path, .. } => {
                format!("{} holds no PEM certificate", path.display())
            }
            Self::NoKey { path, .. } => {
                format!("{} holds no usable PEM private key", path.display())
            }
            Self::Key { .. } => {
                "the private key does not fit the certificate or is of an unsupported type"
                    .to_owned()
            }
            Self::Verifier(_) => "cannot verify client certificates".to_owned(),
            Self::Versions(_) => "not supported".to_owned(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &str, value: &str) -> Result<(PathBuf, Vec<u8>), TlsError> {
    let path = secret::resolve(value, secret::credentials_dir().as_deref()).map_err(|source| {
        TlsError::Path {
            key: key.to_owned(),
            problem: source,
        }
    })?;
    let bytes = std::fs::read(&path).map_err(|source| TlsError::Read {
        key: key.to_owned(),
        path: path.clone(),
        source,
    })?;
    Ok((path, bytes))
}

fn certificates(key: &str, value: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let (path, pem) = read(key, value)?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            key: key.to_owned(),
            path,
        });
    }
    Ok(chain)
}

fn certified_key(
    provider: &CryptoProvider,
    prefix: &str,
    certificate_file: &str,
    private_key_file: &str,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(&format!("{prefix}certificate_file"), certificate_file)?;
    let key_name = format!("{prefix}private_key_file");
    let (path, pem) = read(&key_name, private_key_file)?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey {
        key: key_name.clone(),
        path,
    })?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|source| TlsError::Key {
            key: key_name.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|source| TlsError::Key {
        key: key_name,
        source,
    })?;
    Ok(Arc::new(certified))
}

/// Picks the certificate by SNI; the default one for unknown names and clients without SNI
/// (many SIP stacks send none, or an IP address, which SNI cannot carry).
#[derive(Debug)]
struct BySni {
    default: Arc<CertifiedKey>,
    names: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello
            .server_name()
            .and_then(|name| self.names.get(&name.to_ascii_lowercase()));
        Some(chosen.unwrap_or(&self.default).clone())
    }
}

/// Builds the rustls server config the settings describe, reading every file now.
pub fn server_config(settings: &Settings) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let default = certified_key(
        &provider,
        "",
        &settings.certificate_file,
        &settings.private_key_file,
    )?;
    let mut names = HashMap::new();
    for (i, s) in settings.sni.iter().enumerate() {
        let key = certified_key(
            &provider,
            &format!("sni[{i}]."),
            &s.certificate_file,
            &s.private_key_file,
        )?;
        names.insert(s.server_name.to_ascii_lowercase(), key);
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(TlsError::Versions)?;
    let builder = match &settings.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("client_ca_file", ca)? {
                // A certificate rustls cannot use as a trust anchor is skipped; an empty store is
                // refused by the verifier builder below.
                let _ = roots.add(cert);
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_cert_resolver(Arc::new(BySni { default, names })))
}

/// The server side of TLS as the listeners use it; `reload` swaps the config for new handshakes.
pub struct Acceptor {
    current: RwLock<tokio_rustls::TlsAcceptor>,
    handshake_timeout: RwLock<Duration>,
}

impl Acceptor {
    pub fn new(settings: &Settings) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(Arc::new(server_config(settings)?).into()),
            handshake_timeout: RwLock::new(settings.handshake_timeout()),
        })
    }

    /// Takes new certificates, CA and versions for connections accepted from now on.
    pub fn reload(&self, settings: &Settings) -> Result<(), TlsError> {
        let fresh: tokio_rustls::TlsAcceptor = Arc::new(server_config(settings)?).into();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        *self
            .handshake_timeout
            .write()
            .unwrap_or_else(PoisonError::into_inner) = settings.handshake_timeout();
        Ok(())
    }

    /// The acceptor for the next handshake, and how long it may take.
    pub fn current(&self) -> (tokio_rustls::TlsAcceptor, Duration) {
        (
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            *self
                .handshake_timeout
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}
