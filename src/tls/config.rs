//! TLS configuration: the certificate and key from PEM files (checked against each other at
//! start and at every reload), the rustls server configuration every worker shares, and the
//! client configuration the load generator uses.
//!
//! The certificate lives in a [`CertStore`], rustls' certificate resolver for every
//! handshake: a reload (SIGHUP) swaps what the store holds, so handshakes from then on use
//! the new certificate and established connections are not touched.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
pub use rustls::pki_types::ServerName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
pub use rustls::ClientConfig;
use rustls::RootCertStore;

/// Session IDs (TLS 1.2 clients without tickets) remembered for resumption, per process.
const SESSION_CACHE: usize = 4096;

/// The certificate chain and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Load and check a certificate chain and its key.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let cert = &files.cert;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read the certificate file {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in the certificate file {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "the certificate file {} holds no CERTIFICATE section",
            cert.display()
        ));
    }
    let key = load_key(&files.key)?;
    let signing = provider::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| {
            format!(
                "the key in {} cannot sign (unsupported type or damaged): {e}",
                files.key.display()
            )
        })?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => {}
        // The provider could not tell: rustls will fail the handshake if they differ.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(format!(
                "the key in {} does not belong to the certificate in {}: {e}",
                files.key.display(),
                cert.display()
            ))
        }
    }
    Ok(ck)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "the key file {} holds no PRIVATE KEY section (PKCS#8, RSA or EC)",
            path.display()
        ),
        e => format!("cannot read the key file {}: {e}", path.display()),
    })
}

/// The certificate every handshake is answered with, replaceable while serving.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// Reloads: [succeeded, failed].
    reloads: [AtomicU64; 2],
}

impl CertStore {
    /// Load the files (a bad or mismatched key is an error here, before serving).
    pub fn load(files: TlsFiles) -> Result<Self, String> {
        let ck = load_certified_key(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(ck)),
            reloads: Default::default(),
        })
    }

    /// Read the files again and use them for new handshakes. On any error the certificate
    /// in use stays, and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let ck = match load_certified_key(&self.files) {
            Ok(ck) => ck,
            Err(e) => {
                self.reloads[1].fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
        self.reloads[0].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reloads so far: (succeeded, failed).
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed),
        )
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The certificate in use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The cipher suites a server offers, in the order it prefers them whatever the client's
/// order: AES-128-GCM first (AES-NI; its key schedule is smaller than AES-256's, and its
/// SHA-256 key derivation costs less per handshake than SHA-384's: the SHA-384 HKDF of
/// rustls' default first choice was 15% of the server's CPU in a resumed-handshake storm),
/// then ChaCha20-Poly1305 (for clients without AES hardware, which put it first), then
/// AES-256-GCM.
fn server_suites() -> Vec<rustls::SupportedCipherSuite> {
    use provider::cipher_suite::*;
    vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ]
}

/// The server configuration: TLS 1.3 and 1.2, ALPN `http/1.1`, the server's cipher order
/// ([`server_suites`]), stateless session tickets (one per connection; the ticket key
/// rotates every 6 hours) and a session-ID cache for TLS 1.2 clients without tickets, so a
/// reconnect storm costs resumed handshakes.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, String> {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: server_suites(),
        ..provider::default_provider()
    };
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ignore_client_order = true;
    // The handshake's keys move to the compact record layer (`Records`) once it is over.
    cfg.enable_secret_extraction = true;
    cfg.ticketer = provider::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
    cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    cfg.send_tls13_tickets = 1;
    cfg.max_early_data_size = 0;
    Ok(Arc::new(cfg))
}

/// Which server certificates a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Those issued by the CA certificates in this PEM file (a test CA, a private PKI).
    Ca(PathBuf),
    /// Those issued by the system's CAs (the bundle at the usual Linux paths).
    System,
    /// Any (signatures on the handshake are still checked with the certificate's key): for
    /// load against a self-signed server only.
    Insecure,
}

/// The system CA bundles looked for, in order (Debian/Ubuntu, Fedora/RHEL, Alpine/SUSE).
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
];

fn roots_from(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("bad PEM in the CA file {}: {e}", path.display()))?;
        // A system bundle may hold certificates webpki cannot use; skip those.
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(format!(
            "the CA file {} holds no usable certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// A client configuration (TLS 1.3 and 1.2, ALPN `http/1.1`) that accepts what `trust`
/// says; with `resumption` it keeps session tickets and resumes with them whenever it can
/// (see [`ClientConfigs`]).
pub fn client_config(trust: &Trust, resumption: bool) -> Result<Arc<ClientConfig>, String> {
    client_configs(trust, resumption).map(|c| c.returning)
}

/// A load generator's two client configurations over one pool of session tickets: a new
/// client has no ticket, so its first connection makes a full handshake (`fresh` stores the
/// ticket it receives and never resumes); a client that comes back (a reconnect) resumes
/// with a ticket when resumption is on (`returning`).
#[derive(Debug, Clone)]
pub struct ClientConfigs {
    /// For first connections.
    pub fresh: Arc<ClientConfig>,
    /// For reconnects.
    pub returning: Arc<ClientConfig>,
}

/// The two configurations (see [`ClientConfigs`]).
pub fn client_configs(trust: &Trust, resumption: bool) -> Result<ClientConfigs, String> {
    let builder = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS configuration: {e}"))?;
    let mut cfg = match trust {
        Trust::Ca(path) => builder
            .with_root_certificates(roots_from(path)?)
            .with_no_client_auth(),
        Trust::System => {
            let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.exists()) else {
                return Err(format!(
                    "no system CA bundle ({}): give the server's CA with --tls-ca, or \
                     --tls-insecure for a test server",
                    SYSTEM_BUNDLES.join(", ")
                ));
            };
            builder
                .with_root_certificates(roots_from(bundle)?)
                .with_no_client_auth()
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                provider::default_provider().signature_verification_algorithms,
            )))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resumption {
        cfg.resumption = rustls::client::Resumption::disabled();
        let cfg = Arc::new(cfg);
        return Ok(ClientConfigs {
            fresh: cfg.clone(),
            returning: cfg,
        });
    }
    let pool = Arc::new(PoolInner::new(TICKET_POOL));
    let mut fresh = cfg.clone();
    fresh.resumption = rustls::client::Resumption::store(Arc::new(TicketPool {
        inner: pool.clone(),
        resume: false,
    }));
    cfg.resumption = rustls::client::Resumption::store(Arc::new(TicketPool {
        inner: pool,
        resume: true,
    }));
    Ok(ClientConfigs {
        fresh: Arc::new(fresh),
        returning: Arc::new(cfg),
    })
}

/// Session tickets a load generator keeps (all connections together).
const TICKET_POOL: usize = 1 << 20;

/// Client session storage for a load generator that plays many clients of one server: every
/// TLS 1.3 ticket received goes into one pool and any reconnect may take any of them, as if
/// each client kept its own (rustls' in-memory cache keeps 8 per server name, so a storm of
/// 10,000 reconnects would resume 8 and make 9,992 full handshakes — not what 10,000 real
/// clients would do). Bounded: the oldest tickets go first.
#[derive(Debug)]
struct TicketPool {
    inner: Arc<PoolInner>,
    /// Offer stored sessions for resumption (false: only store them).
    resume: bool,
}

#[derive(Debug)]
struct PoolInner {
    cap: usize,
    tls13: Mutex<std::collections::VecDeque<rustls::client::Tls13ClientSessionValue>>,
    tls12: Mutex<Option<rustls::client::Tls12ClientSessionValue>>,
    kx: Mutex<Option<rustls::NamedGroup>>,
}

impl PoolInner {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            tls13: Mutex::new(std::collections::VecDeque::new()),
            tls12: Mutex::new(None),
            kx: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl rustls::client::ClientSessionStore for TicketPool {
    fn set_kx_hint(&self, _: ServerName<'static>, group: rustls::NamedGroup) {
        *lock(&self.inner.kx) = Some(group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        *lock(&self.inner.kx)
    }

    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        *lock(&self.inner.tls12) = Some(v);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        if !self.resume {
            return None;
        }
        lock(&self.inner.tls12).clone()
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        *lock(&self.inner.tls12) = None;
    }

    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        let mut q = lock(&self.inner.tls13);
        if q.len() >= self.inner.cap {
            q.pop_front();
        }
        q.push_back(v);
    }

    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        if !self.resume {
            return None;
        }
        lock(&self.inner.tls13).pop_back()
    }
}

/// The name a client checks the certificate against: a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("bad TLS server name {host}: {e}"))
}

/// [`server_name`] of a URL's `HOST:PORT` (the port, and an IPv6 address's brackets, are
/// not part of the name).
pub fn server_name_of(hostport: &str) -> Result<ServerName<'static>, String> {
    let host = hostport
        .rsplit_once(':')
        .map_or(hostport, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    server_name(host)
}

/// A verifier that accepts any certificate (signatures on the handshake are still checked
/// with the certificate's key): only for `--tls-insecure` load against a test server.
#[derive(Debug)]
struct NoVerify(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}
