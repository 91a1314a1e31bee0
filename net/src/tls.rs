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
/// [`peer_agent_id`]. [`server_config_with`] with a fixed certificate and no grace.
pub fn server_config(
    chain: &[Vec<u8>],
    key_pkcs8: &[u8],
    ca_der: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert = ServerCert::new(chain, key_pkcs8)?;
    server_config_with(
        Arc::new(cert),
        &ClientAuth {
            roots: vec![ca_der.to_vec()],
            intermediates: Vec::new(),
            grace: Duration::ZERO,
        },
    )
}

/// Which client certificates the hub accepts.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// Trust anchors: the root CAs (DER).
    pub roots: Vec<Vec<u8>>,
    /// The hub's intermediate CAs (DER), current and retired: agents present their leaf alone
    /// and the hub completes the chain with these.
    pub intermediates: Vec<Vec<u8>>,
    /// An expired client certificate is still accepted this long after its `not_after` (the
    /// chain must verify as of that moment). The hub then lets the session do nothing but
    /// renew (it checks the expiry again with [`crate::pki::cert_validity`]).
    pub grace: Duration,
}

/// The hub's TLS server configuration: presents the certificate `cert` holds at each handshake
/// (replaceable while serving, [`ServerCert::replace`]); verifies optional client certificates
/// by `client` (see [`server_config`]).
pub fn server_config_with(
    cert: Arc<ServerCert>,
    client: &ClientAuth,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    if client.roots.is_empty() {
        return Err(TlsError::Ca("missing (no root CA)".into()));
    }
    let mut roots = RootCertStore::empty();
    for r in &client.roots {
        if r.is_empty() {
            return Err(TlsError::Ca("missing (empty)".into()));
        }
        roots
            .add(CertificateDer::from(r.clone()))
            .map_err(|e| TlsError::Ca(e.to_string()))?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Ca(e.to_string()))?;
    let verifier = Arc::new(GraceClientVerifier {
        inner,
        intermediates: client
            .intermediates
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect(),
        grace: client.grace,
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.max_early_data_size = 0;
    Ok(Arc::new(cfg))
}

/// The hub's server certificate and key, replaceable while the hub serves (a renewed
/// certificate is presented from the next handshake on, without a restart).
#[derive(Debug)]
pub struct ServerCert(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl ServerCert {
    /// `chain` (leaf first) with its PKCS#8 key; fails if the key is not the leaf's.
    pub fn new(chain: &[Vec<u8>], key_pkcs8: &[u8]) -> Result<ServerCert, TlsError> {
        Ok(ServerCert(std::sync::RwLock::new(certified(
            chain, key_pkcs8,
        )?)))
    }

    /// Present `chain` and `key_pkcs8` from the next handshake on.
    pub fn replace(&self, chain: &[Vec<u8>], key_pkcs8: &[u8]) -> Result<(), TlsError> {
        let ck = certified(chain, key_pkcs8)?;
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ck;
        Ok(())
    }

    /// The leaf certificate presented now (DER).
    pub fn leaf(&self) -> Vec<u8> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .end_entity_cert()
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }
}

fn certified(
    chain: &[Vec<u8>],
    key_pkcs8: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let (certs, key) = chain_and_key(chain, key_pkcs8)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::CertKey(e.to_string()))?;
    let ck = rustls::sign::CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| TlsError::CertKey(e.to_string()))?;
    Ok(Arc::new(ck))
}

impl rustls::server::ResolvesServerCert for ServerCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// WebPKI client verification, with the hub's intermediates added to the chain the client
/// presents, and an expired leaf accepted within the grace (verified as of its `not_after`).
#[derive(Debug)]
struct GraceClientVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    intermediates: Vec<CertificateDer<'static>>,
    grace: Duration,
}

impl rustls::server::danger::ClientCertVerifier for GraceClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let mut all: Vec<CertificateDer<'_>> = intermediates.to_vec();
        all.extend(self.intermediates.iter().cloned());
        match self.inner.verify_client_cert(end_entity, &all, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
            )) if !self.grace.is_zero() => {
                let Some((_, not_after_ms)) = pki::cert_validity(end_entity) else {
                    return Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::BadEncoding,
                    ));
                };
                let not_after = u64::try_from(not_after_ms / 1000).unwrap_or(0);
                if now.as_secs() > not_after.saturating_add(self.grace.as_secs()) {
                    return Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::Expired,
                    ));
                }
                // The whole chain as of the leaf's last valid second.
                let then = UnixTime::since_unix_epoch(Duration::from_secs(not_after));
                self.inner.verify_client_cert(end_entity, &all, then)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The agent's TLS configuration for sessions: verifies the hub against the pinned CA only (no
/// system roots) and presents the agent certificate `client_chain` with `client_key_pkcs8`.
/// The caller passes the hub name as the server name when connecting.
pub fn client_session_config(
    ca_der: &[u8],
    client_chain: &[Vec<u8>],
    client_key_pkcs8: &[u8],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_session_config_pins(
        std::slice::from_ref(&ca_der.to_vec()),
        client_chain,
        client_key_pkcs8,
    )
}

/// [`client_session_config`] pinning a set of root CAs (after a CA rotation the agent pins the
/// old and the new root).
pub fn client_session_config_pins(
    cas: &[Vec<u8>],
    client_chain: &[Vec<u8>],
    client_key_pkcs8: &[u8],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        let one = self::roots(ca)?;
        roots.roots.extend(one.roots.iter().cloned());
    }
    if roots.is_empty() {
        return Err(TlsError::Ca("missing (no CA)".into()));
    }
    let roots = Arc::new(roots);
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
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(self.max_concurrent_uni_streams))
            // One datagram per send: with segmentation offload every connection keeps a send
            // buffer of 10 datagrams (up to 15 KiB, never shrunk), which the hub pays once per
            // connected agent. The protocol's frames are small (status batches, acks, deploys);
            // a bulk transfer (a log download) costs a few more system calls, nothing else.
            .enable_segmentation_offload(false);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, cert_validity, days, generate_agent_key_and_csr};
    use rustls::server::danger::ClientCertVerifier as _;

    fn verifier(root: &Ca, intermediates: &[&Ca], grace: Duration) -> GraceClientVerifier {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(root.cert_der().to_vec()))
            .unwrap();
        GraceClientVerifier {
            inner: WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .unwrap(),
            intermediates: intermediates
                .iter()
                .map(|c| CertificateDer::from(c.cert_der().to_vec()))
                .collect(),
            grace,
        }
    }

    fn at(ms: i64, plus: Duration) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_millis(ms as u64) + plus)
    }

    #[test]
    fn expired_agent_certificates_pass_only_within_the_grace() {
        let root = Ca::generate("root").unwrap();
        let int = root.issue_intermediate("int", days(365)).unwrap();
        let (_k, csr) = generate_agent_key_and_csr().unwrap();
        let leaf = CertificateDer::from(int.sign_csr(&csr, "agent-1", days(1)).unwrap());
        let (_, not_after) = cert_validity(&leaf).unwrap();
        let hour = Duration::from_secs(3600);
        let v = verifier(&root, &[&int], days(30));
        // Valid: the agent presents its leaf alone; the hub adds its intermediate.
        assert!(
            v.verify_client_cert(&leaf, &[], at(not_after, Duration::ZERO))
                .is_ok()
        );
        // Expired by an hour: accepted within a 30-day grace, refused without one.
        assert!(
            v.verify_client_cert(&leaf, &[], at(not_after, hour))
                .is_ok()
        );
        let strict = verifier(&root, &[&int], Duration::ZERO);
        assert!(
            strict
                .verify_client_cert(&leaf, &[], at(not_after, hour))
                .is_err()
        );
        // Beyond the grace: refused.
        assert!(
            v.verify_client_cert(&leaf, &[], at(not_after, days(31)))
                .is_err()
        );
        // Without the intermediate the chain does not build.
        let bare = verifier(&root, &[], days(30));
        assert!(
            bare.verify_client_cert(&leaf, &[], at(not_after, Duration::ZERO))
                .is_err()
        );
        // A leaf of a foreign CA is refused, expired or not.
        let other_root = Ca::generate("root").unwrap();
        let other = other_root.issue_intermediate("int", days(365)).unwrap();
        let foreign = CertificateDer::from(other.sign_csr(&csr, "agent-1", days(1)).unwrap());
        let other_int = CertificateDer::from(other.cert_der().to_vec());
        assert!(
            v.verify_client_cert(
                &foreign,
                std::slice::from_ref(&other_int),
                at(not_after, Duration::ZERO)
            )
            .is_err()
        );
        assert!(
            v.verify_client_cert(
                &foreign,
                std::slice::from_ref(&other_int),
                at(not_after, hour)
            )
            .is_err()
        );
    }

    #[test]
    fn the_server_certificate_is_replaced_in_place() {
        let root = Ca::generate("root").unwrap();
        let int = root.issue_intermediate("int", days(365)).unwrap();
        let (a, ka) = int.issue_server("hub", days(1)).unwrap();
        let (b, kb) = int.issue_server("hub", days(1)).unwrap();
        let cert = ServerCert::new(&a, &ka).unwrap();
        assert_eq!(cert.leaf(), a[0]);
        // A key that is not the leaf's is refused and the old certificate stays.
        assert!(cert.replace(&b, &ka).is_err());
        assert_eq!(cert.leaf(), a[0]);
        cert.replace(&b, &kb).unwrap();
        assert_eq!(cert.leaf(), b[0]);
    }
}
