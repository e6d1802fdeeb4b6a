//! A test PKI (a CA, server certificates for two names, a client certificate) made with rcgen,
//! and a blocking rustls client that speaks SIP over TLS to the daemon on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The files of one test PKI.
pub struct Pki {
    pub ca: PathBuf,
    /// SAN `sip.test` and `127.0.0.1`: the default certificate.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// SAN `sip2.test`: served by SNI.
    pub sni_cert: PathBuf,
    pub sni_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write pki file");
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "calltrackd test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let pki = Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            sni_cert: dir.join("sni.pem"),
            sni_key: dir.join("sni.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            ca_params,
            ca_key,
        };
        write(&pki.ca, &ca_cert.pem());
        pki.issue(
            &["sip.test", "127.0.0.1"],
            &pki.server_cert,
            &pki.server_key,
        );
        pki.issue(&["sip2.test"], &pki.sni_cert, &pki.sni_key);
        pki.issue(&["carrier.test"], &pki.client_cert, &pki.client_key);
        pki
    }

    /// Writes a fresh certificate and key for `names`, signed by the CA.
    pub fn issue(&self, names: &[&str], cert: &Path, key: &Path) {
        let leaf_key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "calltrackd test");
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let leaf = params.signed_by(&leaf_key, &issuer).expect("sign leaf");
        write(cert, &leaf.pem());
        write(key, &leaf_key.serialize_pem());
    }

    /// The `[sip.tls]` section for this PKI (listening on a free loopback port).
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[sip.tls]\nlisten = [\"127.0.0.1:0\"]\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"\n{extra}\n[[sip.tls.sni]]\nserver_name = \"sip2.test\"\ncertificate_file = \"{}\"\nprivate_key_file = \"{}\"\n",
            self.server_cert.display(),
            self.server_key.display(),
            self.sni_cert.display(),
            self.sni_key.display(),
        )
    }
}

pub fn first_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path)
        .expect("pem")
        .next()
        .expect("one certificate")
        .expect("certificate")
}

/// Which TLS versions the client offers.
#[derive(Clone, Copy)]
pub enum Versions {
    Any,
    Only12,
}

pub fn client_config(pki: &Pki, versions: Versions, with_cert: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(first_cert(&pki.ca)).expect("root");
    let versions: &[&'static rustls::SupportedProtocolVersion] = match versions {
        Versions::Any => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Versions::Only12 => &[&rustls::version::TLS12],
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain = vec![first_cert(&pki.client_cert)];
        let key = PrivateKeyDer::from_pem_file(&pki.client_key).expect("client key");
        builder
            .with_client_auth_cert(chain, key)
            .expect("client auth")
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

/// One SIP-over-TLS connection to the daemon.
pub struct TlsClient {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the handshake (an error is the handshake failing).
    pub fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self, std::io::Error> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map(|_| ())?;
        }
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// The leaf certificate the server presented.
    pub fn server_cert(&self) -> CertificateDer<'static> {
        self.stream.conn.peer_certificates().expect("peer certs")[0].clone()
    }

    pub fn local_port(&self) -> u16 {
        self.stream.sock.local_addr().expect("local").port()
    }

    pub fn send(&mut self, message: &str) {
        self.stream
            .write_all(message.as_bytes())
            .expect("tls write");
        self.stream.flush().expect("tls flush");
    }

    /// The next SIP message on the stream (framed by Content-Length), bounded in time.
    pub fn next_message(&mut self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.trim()
                            .eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let msg: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return Some(String::from_utf8_lossy(&msg).to_string());
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return None,
            }
        }
    }

    /// Skips messages until a response with `status` arrives (bounded).
    pub fn expect(&mut self, status: u16) -> String {
        let mut seen = Vec::new();
        while let Some(msg) = self.next_message() {
            let got: Option<u16> = msg.split(' ').nth(1).and_then(|s| s.parse().ok());
            if got == Some(status) {
                return msg;
            }
            seen.push(msg.lines().next().unwrap_or_default().to_owned());
        }
        panic!("no {status} over TLS; got {seen:?}");
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
