//! rustls and quinn configurations for the hub and the agents. See the crate docs for the trust
//! model. Every config uses [`rustls::crypto::ring::default_provider`] explicitly, TLS 1.3 only
//! (QUIC requires it), ALPN [`outpost_common::proto::ALPN`], and no TLS session resumption (every
//! handshake verifies certificates in full).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_common::proto::ALPN;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use crate::pki;

/// Errors building TLS / QUIC configurations. Each names what is missing or invalid.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA certificate is missing or unusable as a trust anchor.
    #[error("CA certificate: {0}")]
    Ca(String),
    /// The certificate chain is empty.
    #[error("certificate chain is empty")]
    EmptyChain,
    /// The private key is missing, malformed, or does not match the certificate.
    #[error("certificate or private key rejected: {0}")]
    CertKey(String),
    /// The pinned CA hash is not 64 hex characters.
    #[error("CA pin must be the 64-hex-character SHA-256 of the CA certificate, got {0:?}")]
    Pin(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The configuration lacks the cipher suite QUIC needs for its initial packets.
    #[error("QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// A transport parameter is out of range.
    #[error("transport: {0}")]
    Transport(String),
}

/// The crypto provider used everywhere in Outpost (ring).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_der: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    if ca_der.is_empty() {
        return Err(TlsError::Ca("missing (empty)".into()));
    }
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| TlsError::Ca(e.to_string()))?;
    Ok(Arc::new(roots))
}

fn chain_and_key(
    chain: &[Vec<u8>],
    key_pkcs8: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    if chain.is_empty() {
        return Err(TlsError::EmptyChain);
    }
    if key_pkcs8.is_empty() {
        return Err(TlsError::CertKey("private key is missing (empty)".into()));
    }
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8.to_vec()));
    Ok((certs, key))
}

/// The hub's TLS server configuration: presents `chain` (leaf first) with `key_pkcs8`; client
/// certificates are requested and, when presented, must chain to `ca_der` — but they are
/// optional (enrollment connections have none); the hub decides per connection with
/// [`peer_agent_id`].
pub fn server_config(
    chain: &[Vec<u8>],
    key_pkcs8: &[u8],
    ca_der: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_der)?, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Ca(e.to_string()))?;
    let (certs, key) = chain_and_key(chain, key_pkcs8)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::CertKey(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.max_early_data_size = 0;
    Ok(Arc::new(cfg))
}

/// The agent's TLS configuration for sessions: verifies the hub against the pinned CA only (no
/// system roots) and presents the agent certificate `client_chain` with `client_key_pkcs8`.
/// The caller passes the hub name as the server name when connecting.
pub fn client_session_config(
    ca_der: &[u8],
    client_chain: &[Vec<u8>],
    client_key_pkcs8: &[u8],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = roots(ca_der)?;
    let (certs, key) = chain_and_key(client_chain, client_key_pkcs8)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| TlsError::CertKey(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// After an enrollment handshake: the CA certificate (DER) that matched the pin, if any.
#[derive(Debug, Clone, Default)]
pub struct MatchedCa(Arc<Mutex<Option<Vec<u8>>>>);

impl MatchedCa {
    /// The DER of the CA certificate the hub presented and that matched the pinned hash, once a
    /// handshake has verified.
    pub fn get(&self) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|g| g.clone())
    }

    fn set(&self, der: Vec<u8>) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(der);
        }
    }
}

/// Verifies a hub by the SHA-256 of its CA certificate (from a bootstrap token).
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    matched: MatchedCa,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| ring::digest::digest(&ring::digest::SHA256, c).as_ref() == self.pin)
            .ok_or_else(|| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                    rustls::OtherError(Arc::new(PinMismatch)),
                ))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let ok =
            inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        self.matched.set(ca.to_vec());
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The hub's chain holds no certificate with the pinned hash.
#[derive(Debug)]
struct PinMismatch;

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the hub presented no CA certificate with the pinned SHA-256")
    }
}

impl std::error::Error for PinMismatch {}

fn parse_pin(hex: &str) -> Result<[u8; 32], TlsError> {
    let bad = || TlsError::Pin(hex.to_string());
    let h = hex.as_bytes();
    if h.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in h.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The agent's TLS configuration for enrollment: no client certificate; the hub is accepted only
/// if its presented chain contains a certificate whose SHA-256 is `ca_sha256_hex` and its
/// end-entity certificate verifies against that certificate as the sole root, for the server
/// name the caller connects with. The returned [`MatchedCa`] holds that CA's DER after a
/// successful handshake. Use one config per enrollment attempt.
pub fn client_enroll_config(
    ca_sha256_hex: &str,
) -> Result<(Arc<rustls::ClientConfig>, MatchedCa), TlsError> {
    let pin = parse_pin(&ca_sha256_hex.to_ascii_lowercase())?;
    let provider = provider();
    let matched = MatchedCa::default();
    let verifier = Arc::new(PinnedCaVerifier {
        pin,
        provider: provider.clone(),
        matched: matched.clone(),
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous() // a custom verifier that is stricter than a root store, not a skip
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok((Arc::new(cfg), matched))
}

/// QUIC transport parameters shared by the hub and the agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// Interval of keep-alive packets on an idle connection (700 ms: the agent's default, which
    /// bounds how long an agent takes to notice a restarted hub; the hub sets its own).
    pub keep_alive: Duration,
    /// A connection with no packet from the peer for this long is closed (15 s).
    pub idle_timeout: Duration,
    /// Bidirectional streams the peer may have open at once (8).
    pub max_concurrent_bidi_streams: u32,
    /// Unidirectional streams the peer may have open at once (0: unused by the protocol).
    pub max_concurrent_uni_streams: u32,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            keep_alive: Self::DEFAULT_KEEP_ALIVE,
            idle_timeout: Duration::from_secs(15),
            max_concurrent_bidi_streams: 8,
            max_concurrent_uni_streams: 0,
        }
    }
}

impl Transport {
    /// The default keep-alive interval (the agent's `[hub] keep_alive`).
    pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_millis(700);

    /// The quinn transport configuration.
    pub fn quinn(&self) -> Result<quinn::TransportConfig, TlsError> {
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return Err(TlsError::Transport(format!(
                "keep-alive {:?} must be non-zero and shorter than the idle timeout {:?}",
                self.keep_alive, self.idle_timeout
            )));
        }
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|e| TlsError::Transport(format!("idle timeout: {e}")))?;
        let mut t = quinn::TransportConfig::default();
        t.keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(idle))
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(self.max_concurrent_bidi_streams))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(self.max_concurrent_uni_streams));
        Ok(t)
    }
}

/// A quinn server configuration from a rustls one (see [`server_config`]).
pub fn quinn_server_config(
    tls: Arc<rustls::ServerConfig>,
    transport: Transport,
) -> Result<quinn::ServerConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport.quinn()?));
    Ok(cfg)
}

/// A quinn client configuration from a rustls one (see [`client_session_config`],
/// [`client_enroll_config`]).
pub fn quinn_client_config(
    tls: Arc<rustls::ClientConfig>,
    transport: Transport,
) -> Result<quinn::ClientConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport.quinn()?));
    Ok(cfg)
}

/// The peer's certificate chain (leaf first), if it presented one.
pub fn peer_certs(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    let any = conn.peer_identity()?;
    any.downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}

/// The agent id of the peer: the CN of the client certificate it presented (already verified
/// against the hub CA by rustls). `None` for a connection without a client certificate
/// (enrollment). Whether the agent is known and not revoked is the hub's decision.
pub fn peer_agent_id(conn: &quinn::Connection) -> Option<String> {
    let certs = peer_certs(conn)?;
    pki::agent_id_from_cert(certs.first()?)
}
