//! Certificates for the hub and its agents (rcgen, ECDSA P-256).
//!
//! Two levels of CA: the **root CA** ([`Ca::generate`]), whose key stays offline (it only signs
//! intermediates, cross-signs its successor, and is what agents and bootstrap tokens pin), and
//! an **intermediate CA** ([`Ca::issue_intermediate`]) that the hub keeps online. The
//! intermediate issues two kinds of certificates:
//! - the hub's server certificate ([`Ca::issue_server`]): DNS SAN = the hub name the agents dial,
//!   server-auth usage;
//! - agent certificates ([`Ca::sign_csr`]) from a CSR made on the agent
//!   ([`generate_agent_key_and_csr`]), so the agent's private key never leaves the agent. The CA
//!   ignores the subject the CSR asks for: CN = the agent id chosen by the hub, DNS SAN =
//!   `<agent id>.agent.outpost`, client-auth usage only.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};

/// DNS suffix of agent certificates' subject alternative name.
pub(crate) const AGENT_DNS_SUFFIX: &str = ".agent.outpost";

/// Slack on `not_before` for clocks slightly behind the issuer's.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Errors of certificate and key handling.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating a key or certificate failed.
    #[error("certificate generation: {0}")]
    Generate(rcgen::Error),
    /// The CA certificate PEM holds no parsable certificate.
    #[error("CA certificate: {0}")]
    CaCert(String),
    /// The CA key PEM holds no parsable private key.
    #[error("CA key: {0}")]
    CaKey(String),
    /// The CA key is not the key of the CA certificate.
    #[error("the CA key does not belong to the CA certificate")]
    KeyMismatch,
    /// The certificate signing request is malformed, badly signed or asks for an unsupported
    /// extension.
    #[error("certificate signing request: {0}")]
    Csr(rcgen::Error),
    /// The agent id cannot be used as a certificate name.
    #[error("invalid agent id {0:?}: expected 1-63 characters of [a-z0-9-]")]
    AgentId(String),
    /// The validity is zero or too long.
    #[error("invalid validity of {0} seconds")]
    Validity(u64),
    /// PEM text holds no item of the expected kind.
    #[error("PEM: no {0} found")]
    Pem(&'static str),
    /// A certificate or key file is missing, unreadable, or holds no usable item.
    #[error("{what} file {}: {reason}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What it should hold ("CA certificate", "agent key", ...).
        what: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
}

/// A certificate authority: its certificate and signing key, and the certificates above it up
/// to the root (empty for a root).
pub struct Ca {
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    parents: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("sha256", &self.sha256_hex())
            .finish_non_exhaustive()
    }
}

/// Lifetime of a root CA made by [`Ca::generate`] (20 years).
pub const ROOT_CA_LIFETIME: Duration = Duration::from_secs(20 * 365 * 86_400);

/// `days` days.
pub const fn days(days: u64) -> Duration {
    Duration::from_secs(days * 86_400)
}

fn validity(params: &mut CertificateParams, lifetime: Duration) -> Result<(), PkiError> {
    // Up to 100 years; rcgen/time handle far more, but a larger number is a typo.
    if lifetime.as_secs() == 0 || lifetime > days(36_500) {
        return Err(PkiError::Validity(lifetime.as_secs()));
    }
    let now = SystemTime::now();
    let from = now.checked_sub(BACKDATE).unwrap_or(now);
    let to = now + lifetime;
    params.not_before = from.into();
    params.not_after = to.into();
    Ok(())
}

fn random_serial() -> Result<rcgen::SerialNumber, PkiError> {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| PkiError::Generate(rcgen::Error::RingUnspecified))?;
    b[0] &= 0x7f; // positive
    Ok(rcgen::SerialNumber::from_slice(&b))
}

fn ca_params(
    common_name: &str,
    path_len: u8,
    lifetime: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    validity(&mut params, lifetime)?;
    Ok(params)
}

impl Ca {
    /// A new root CA (self-signed, ECDSA P-256, valid 20 years) named `common_name`. It may
    /// sign intermediate CAs (path length 1), which issue the leaf certificates.
    pub fn generate(common_name: &str) -> Result<Ca, PkiError> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)?;
        let params = ca_params(common_name, 1, ROOT_CA_LIFETIME)?;
        let cert = params.self_signed(&key).map_err(PkiError::Generate)?;
        Ok(Ca {
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            parents: Vec::new(),
        })
    }

    /// A new intermediate CA named `common_name`, signed by this CA, valid for `lifetime`. It
    /// issues leaf certificates only (path length 0); its chain carries this CA's.
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        lifetime: Duration,
    ) -> Result<Ca, PkiError> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)?;
        let mut params = ca_params(common_name, 0, lifetime)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Generate)?;
        let mut parents = vec![self.cert_der.clone()];
        parents.extend(self.parents.iter().cloned());
        Ok(Ca {
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            parents,
        })
    }

    /// `successor`'s root certificate re-issued under this CA (same subject and key, signed by
    /// this CA's key): the proof an agent that pins this CA needs before it pins `successor`.
    pub fn cross_sign(&self, successor: &Ca) -> Result<Vec<u8>, PkiError> {
        let (_, x509) = x509_parser::parse_x509_certificate(&successor.cert_der)
            .map_err(|e| PkiError::CaCert(e.to_string()))?;
        let cn = x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or("outpost CA")
            .to_string();
        let mut params = ca_params(&cn, 1, ROOT_CA_LIFETIME)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(successor.issuer.key(), &self.issuer)
            .map_err(PkiError::Generate)?;
        Ok(cert.der().to_vec())
    }

    /// Load a CA from its certificate and PKCS#8 key in PEM. Fails if either is unreadable or
    /// the key is not the certificate's key.
    pub(crate) fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::CaCert(e.to_string()))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::CaKey(e.to_string()))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| PkiError::CaCert(e.to_string()))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch);
        }
        let issuer =
            Issuer::from_ca_cert_der(&cert, key).map_err(|e| PkiError::CaCert(e.to_string()))?;
        Ok(Ca {
            cert_der: cert.to_vec(),
            issuer,
            parents: Vec::new(),
        })
    }

    /// The certificates above this CA up to its root (empty for a root), DER.
    pub fn parents(&self) -> &[Vec<u8>] {
        &self.parents
    }

    /// This CA with `parents` (its issuer's certificate, up to the root) as its chain.
    pub fn with_parents(mut self, parents: Vec<Vec<u8>>) -> Ca {
        self.parents = parents;
        self
    }

    /// The root of this CA's chain (itself for a root).
    pub fn root_der(&self) -> &[u8] {
        self.parents.last().unwrap_or(&self.cert_der)
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Load a CA from its certificate and key files (PEM), as [`from_pem`](Self::from_pem);
    /// errors name the file.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Ca, PkiError> {
        let cert_pem = read_text(cert, "CA certificate")?;
        let key_pem = read_text(key, "CA key")?;
        Ca::from_pem(&cert_pem, &key_pem).map_err(|e| PkiError::File {
            path: cert.to_path_buf(),
            what: "CA certificate",
            reason: format!("with key {}: {e}", key.display()),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// The CA private key, PKCS#8 PEM. Secret: store with mode 0600.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Lowercase hex SHA-256 of the CA certificate DER (the pin in bootstrap tokens).
    pub fn sha256_hex(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    /// Issue a server certificate for `name` (DNS SAN and CN) with a fresh P-256 key.
    /// Returns the chain (leaf, this CA, then its parents) and the leaf's PKCS#8 key, both DER.
    pub fn issue_server(
        &self,
        name: &str,
        lifetime: Duration,
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>), PkiError> {
        self.issue_server_with_sans(name, &[], lifetime)
    }

    /// [`issue_server`](Self::issue_server) with further subject alternative names
    /// (`extra_sans`: DNS names or IP addresses, e.g. where the hub's HTTPS API is reached).
    pub fn issue_server_with_sans(
        &self,
        name: &str,
        extra_sans: &[String],
        lifetime: Duration,
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>), PkiError> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)?;
        let mut sans = vec![name.to_string()];
        for s in extra_sans {
            if !sans.contains(s) {
                sans.push(s.clone());
            }
        }
        // `CertificateParams::new` makes an IP address SAN of a name that parses as one.
        let mut params = CertificateParams::new(sans).map_err(PkiError::Generate)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        validity(&mut params, lifetime)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Generate)?;
        let mut chain = vec![cert.der().to_vec(), self.cert_der.clone()];
        chain.extend(self.parents.iter().cloned());
        Ok((chain, key.serialize_der()))
    }

    /// Sign an agent's CSR (DER) as `agent_id`. Only the CSR's public key is used (after its
    /// self-signature is checked); the subject, SANs and usages it asks for are ignored.
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        agent_id: &str,
        lifetime: Duration,
    ) -> Result<Vec<u8>, PkiError> {
        if !valid_agent_id(agent_id) {
            return Err(PkiError::AgentId(agent_id.to_string()));
        }
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(PkiError::Csr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, agent_id);
        params.distinguished_name = dn;
        let san = format!("{agent_id}{AGENT_DNS_SUFFIX}");
        params.subject_alt_names = vec![SanType::DnsName(
            san.try_into().map_err(PkiError::Generate)?,
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        validity(&mut params, lifetime)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(PkiError::Generate)?;
        Ok(cert.der().to_vec())
    }
}

/// Agent ids the CA signs: 1-63 chars of `[a-z0-9-]` (one DNS label), e.g. `agent-0123abcd…`.
pub(crate) fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A fresh agent key pair (ECDSA P-256) and a CSR for it. Returns (PKCS#8 key DER, CSR DER).
pub fn generate_agent_key_and_csr() -> Result<(Vec<u8>, Vec<u8>), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::Generate)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "outpost-agent");
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).map_err(PkiError::Generate)?;
    Ok((key.serialize_der(), csr.der().to_vec()))
}

/// The agent id in a certificate: its subject CN. `None` if the DER does not parse or has no
/// UTF-8 CN.
pub fn agent_id_from_cert(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Identity facts of an agent certificate, for the hub's agent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Subject CN (the agent id).
    pub common_name: String,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
}

/// The CN, serial and fingerprint of a certificate; `None` if the DER does not parse or has no
/// UTF-8 CN.
pub fn cert_facts(cert_der: &[u8]) -> Option<CertFacts> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    let mut serial_hex = String::with_capacity(cert.raw_serial().len() * 2);
    for b in cert.raw_serial() {
        serial_hex.push_str(&format!("{b:02x}"));
    }
    Some(CertFacts {
        common_name: cn.as_str().ok()?.to_string(),
        serial_hex,
        fingerprint: sha256_hex(cert_der),
    })
}

/// A certificate's validity: (`not_before`, `not_after`), Unix milliseconds. `None` if the DER
/// does not parse.
pub fn cert_validity(cert_der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let v = cert.validity();
    Some((
        v.not_before.timestamp().saturating_mul(1000),
        v.not_after.timestamp().saturating_mul(1000),
    ))
}

/// The DNS names and IP addresses of a certificate's subject alternative names, as text (to
/// renew a server certificate with the same names). Empty if the DER does not parse.
pub fn server_names(cert_der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress([a, b, c, d]) => {
                Some(std::net::Ipv4Addr::new(*a, *b, *c, *d).to_string())
            }
            GeneralName::IPAddress(ip) => <[u8; 16]>::try_from(*ip)
                .ok()
                .map(|o| std::net::Ipv6Addr::from(o).to_string()),
            _ => None,
        })
        .collect()
}

/// Whether `cert_der` certifies the public key of the PKCS#8 private key `key_pkcs8`.
pub fn cert_matches_key(cert_der: &[u8], key_pkcs8: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return false;
    };
    let key = PrivateKeyDer::Pkcs8(key_pkcs8.to_vec().into());
    let Ok(key) = KeyPair::try_from(&key) else {
        return false;
    };
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

/// Whether `cert_der` carries a valid signature by the key of `issuer_der` and names it as its
/// issuer (no time or usage checks).
pub fn signed_by(cert_der: &[u8], issuer_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, issuer))) = (
        x509_parser::parse_x509_certificate(cert_der),
        x509_parser::parse_x509_certificate(issuer_der),
    ) else {
        return false;
    };
    cert.issuer() == issuer.subject() && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// Whether `cross_der` proves the self-signed root `new_root_der` a successor of one of the
/// `pinned` roots: `cross_der` certifies the same subject and key as the new root, and is
/// signed by a pinned root ([`Ca::cross_sign`] makes it).
pub fn proves_successor(new_root_der: &[u8], cross_der: &[u8], pinned: &[Vec<u8>]) -> bool {
    let (Ok((_, new)), Ok((_, cross))) = (
        x509_parser::parse_x509_certificate(new_root_der),
        x509_parser::parse_x509_certificate(cross_der),
    ) else {
        return false;
    };
    signed_by(new_root_der, new_root_der)
        && new.is_ca()
        && cross.is_ca()
        && new.subject() == cross.subject()
        && new.public_key().raw == cross.public_key().raw
        && pinned.iter().any(|p| signed_by(cross_der, p))
}

/// Share of a certificate's lifetime after which it is renewed: two thirds.
pub const RENEW_AT_NUM: i64 = 2;
/// See [`RENEW_AT_NUM`].
pub const RENEW_AT_DEN: i64 = 3;

/// The lifetime a certificate issued here was given (from its issue time, `not_before` plus
/// the back-dating slack, to `not_after`), ms. `None` if the DER does not parse.
pub fn issued_lifetime_ms(cert_der: &[u8]) -> Option<i64> {
    let (nb, na) = cert_validity(cert_der)?;
    let backdate = i64::try_from(BACKDATE.as_millis()).unwrap_or(0);
    Some(na - nb.saturating_add(backdate).min(na))
}

/// When a certificate issued here is due for renewal (Unix ms): at two thirds of its lifetime,
/// counted from its issue time (`not_before` plus the back-dating slack, capped at
/// `not_after`). `None` if the DER does not parse.
pub fn renewal_due_ms(cert_der: &[u8]) -> Option<i64> {
    let (nb, na) = cert_validity(cert_der)?;
    let backdate = i64::try_from(BACKDATE.as_millis()).unwrap_or(0);
    let issued = nb.saturating_add(backdate).min(na);
    Some(issued + (na - issued) / RENEW_AT_DEN * RENEW_AT_NUM)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut s = String::with_capacity(64);
    for b in d.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

// ----- PEM -------------------------------------------------------------------------------------

/// Encode DER as PEM with the given label (`CERTIFICATE`, `PRIVATE KEY`, ...).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = match chunk {
            [a, b, c] => u32::from(*a) << 16 | u32::from(*b) << 8 | u32::from(*c),
            [a, b] => u32::from(*a) << 16 | u32::from(*b) << 8,
            [a] => u32::from(*a) << 16,
            _ => 0,
        };
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PEM of a certificate chain (leaf first).
pub fn chain_to_pem(chain: &[Vec<u8>]) -> String {
    chain.iter().map(|c| pem_encode("CERTIFICATE", c)).collect()
}

/// All certificates in PEM text, DER, in order. Errors if there is none.
pub fn certs_from_pem(pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(PkiError::Pem("CERTIFICATE"));
    }
    Ok(certs)
}

/// The PKCS#8 private key in PEM text, DER.
pub(crate) fn key_from_pem(pem: &str) -> Result<Vec<u8>, PkiError> {
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(PrivateKeyDer::Pkcs8(k)) => Ok(k.secret_pkcs8_der().to_vec()),
        _ => Err(PkiError::Pem("PRIVATE KEY (PKCS#8)")),
    }
}

/// PEM of a PKCS#8 private key.
pub fn key_to_pem(pkcs8_der: &[u8]) -> String {
    pem_encode("PRIVATE KEY", pkcs8_der)
}

// ----- files -------------------------------------------------------------------------------------

fn read_text(path: &std::path::Path, what: &'static str) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|e| PkiError::File {
        path: path.to_path_buf(),
        what,
        reason: e.to_string(),
    })
}

/// Read the certificates (DER, in order) of a PEM file; `what` names the file in errors
/// ("hub certificate", "CA certificate", ...).
pub fn read_certs_file(
    path: &std::path::Path,
    what: &'static str,
) -> Result<Vec<Vec<u8>>, PkiError> {
    certs_from_pem(&read_text(path, what)?).map_err(|e| PkiError::File {
        path: path.to_path_buf(),
        what,
        reason: e.to_string(),
    })
}

/// Read the PKCS#8 private key (DER) of a PEM file; `what` names the file in errors.
pub fn read_key_file(path: &std::path::Path, what: &'static str) -> Result<Vec<u8>, PkiError> {
    key_from_pem(&read_text(path, what)?).map_err(|e| PkiError::File {
        path: path.to_path_buf(),
        what,
        reason: e.to_string(),
    })
}

/// Create the file `path` readable only by its owner (mode 0600) with `contents`, synced;
/// refuses to overwrite an existing file (for secrets made once, such as a CA key).
pub fn create_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_roundtrips_through_pem_and_hash_is_of_der() {
        let ca = Ca::generate("outpost test CA").unwrap();
        let again = Ca::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.cert_der(), ca.cert_der());
        assert_eq!(again.sha256_hex(), ca.sha256_hex());
        assert_eq!(ca.sha256_hex().len(), 64);
        assert_eq!(ca.sha256_hex(), sha256_hex(ca.cert_der()));
        assert_ne!(ca.sha256_hex(), Ca::generate("x").unwrap().sha256_hex());
        // a CA loaded from PEM still issues certificates that parse
        let (chain, _key) = again.issue_server("outpost-hub", days(30)).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], ca.cert_der());
        assert_eq!(
            agent_id_from_cert(&chain[0]).as_deref(),
            Some("outpost-hub")
        );
    }

    #[test]
    fn from_pem_refuses_a_foreign_key_and_garbage() {
        let a = Ca::generate("a").unwrap();
        let b = Ca::generate("b").unwrap();
        assert!(matches!(
            Ca::from_pem(&a.cert_pem(), &b.key_pem()),
            Err(PkiError::KeyMismatch)
        ));
        assert!(matches!(
            Ca::from_pem("not pem", &a.key_pem()),
            Err(PkiError::CaCert(_))
        ));
        assert!(matches!(
            Ca::from_pem(&a.cert_pem(), "nope"),
            Err(PkiError::CaKey(_))
        ));
    }

    #[test]
    fn sign_csr_sets_identity_and_ignores_requested_subject() {
        let ca = Ca::generate("ca").unwrap();
        // a CSR asking to be someone else
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec!["outpost-hub".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "outpost-hub");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr = p.serialize_request(&key).unwrap();
        let der = ca
            .sign_csr(csr.der(), "agent-0123456789abcdef", days(365))
            .unwrap();
        assert_eq!(
            agent_id_from_cert(&der).as_deref(),
            Some("agent-0123456789abcdef")
        );
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|g| g.to_string())
            .collect();
        assert_eq!(names, vec!["DNSName(agent-0123456789abcdef.agent.outpost)"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        // the certificate carries the CSR's key
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        // issued by the CA
        assert_eq!(
            cert.issuer().to_string(),
            x509_parser::parse_x509_certificate(ca.cert_der())
                .unwrap()
                .1
                .subject()
                .to_string()
        );
    }

    #[test]
    fn sign_csr_refuses_bad_input() {
        let ca = Ca::generate("ca").unwrap();
        let (_key, mut csr) = generate_agent_key_and_csr().unwrap();
        assert!(matches!(
            ca.sign_csr(&csr, "Agent With Spaces", days(1)),
            Err(PkiError::AgentId(_))
        ));
        assert!(matches!(
            ca.sign_csr(&csr, "agent-1", Duration::ZERO),
            Err(PkiError::Validity(0))
        ));
        assert!(matches!(
            ca.sign_csr(b"garbage", "agent-1", days(1)),
            Err(PkiError::Csr(_))
        ));
        // a CSR whose self-signature no longer verifies
        let last = csr.len() - 1;
        csr[last] ^= 1;
        assert!(matches!(
            ca.sign_csr(&csr, "agent-1", days(1)),
            Err(PkiError::Csr(_))
        ));
    }

    #[test]
    fn pem_helpers_roundtrip() {
        let ca = Ca::generate("ca").unwrap();
        let (chain, key) = ca.issue_server("hub", days(1)).unwrap();
        assert_eq!(certs_from_pem(&chain_to_pem(&chain)).unwrap(), chain);
        assert_eq!(key_from_pem(&key_to_pem(&key)).unwrap(), key);
        assert!(certs_from_pem("").is_err());
        assert!(key_from_pem(&ca.cert_pem()).is_err());
        // our encoder agrees with rcgen's for the CA key
        assert_eq!(
            key_from_pem(&ca.key_pem()).unwrap(),
            key_from_pem(&key_to_pem(&key_from_pem(&ca.key_pem()).unwrap())).unwrap()
        );
        assert_eq!(
            pem_encode("X", b"ab"),
            "-----BEGIN X-----\nYWI=\n-----END X-----\n"
        );
        assert_eq!(
            pem_encode("X", b"abc"),
            "-----BEGIN X-----\nYWJj\n-----END X-----\n"
        );
        assert_eq!(
            pem_encode("X", b"a"),
            "-----BEGIN X-----\nYQ==\n-----END X-----\n"
        );
    }

    #[test]
    fn files_are_private_and_errors_name_them() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("ca").unwrap();
        let cert = dir.path().join("ca.pem");
        let key = dir.path().join("ca.key");
        create_private_file(&cert, ca.cert_pem().as_bytes()).unwrap();
        create_private_file(&key, ca.key_pem().as_bytes()).unwrap();
        // a secret made once is never overwritten
        let again = create_private_file(&key, b"other").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read_certs_file(&cert, "CA certificate").unwrap(),
            vec![ca.cert_der().to_vec()]
        );
        assert!(!read_key_file(&key, "CA key").unwrap().is_empty());
        let missing = dir.path().join("nope.pem");
        let e = read_certs_file(&missing, "hub certificate")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hub certificate") && e.contains("nope.pem"),
            "{e}"
        );
        // a certificate where a key is expected
        let e = read_key_file(&cert, "agent key").unwrap_err().to_string();
        assert!(e.contains("agent key") && e.contains("ca.pem"), "{e}");
    }

    #[test]
    fn server_sans_include_ip_addresses_and_facts_read_back() {
        let ca = Ca::generate("ca").unwrap();
        let extra = [
            "127.0.0.1".to_string(),
            "hub".to_string(),
            "::1".to_string(),
        ];
        let (chain, _) = ca.issue_server_with_sans("hub", &extra, days(1)).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        use x509_parser::extensions::GeneralName;
        let names = &san.value.general_names;
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(matches!(names[0], GeneralName::DNSName("hub")), "{names:?}");
        assert!(
            matches!(names[1], GeneralName::IPAddress(&[127, 0, 0, 1])),
            "{names:?}"
        );
        assert!(
            matches!(names[2], GeneralName::IPAddress(ip) if ip.len() == 16),
            "{names:?}"
        );
        let facts = cert_facts(&chain[0]).unwrap();
        assert_eq!(facts.common_name, "hub");
        assert_eq!(facts.fingerprint, sha256_hex(&chain[0]));
        assert_eq!(facts.serial_hex.len(), 32);
        assert_eq!(cert_facts(b"junk"), None);
    }

    #[test]
    fn load_names_the_file_and_create_private_file_never_overwrites() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("ca").unwrap();
        let cert = dir.path().join("ca.pem");
        let key = dir.path().join("ca.key");
        create_private_file(&cert, ca.cert_pem().as_bytes()).unwrap();
        create_private_file(&key, ca.key_pem().as_bytes()).unwrap();
        assert!(create_private_file(&key, b"other").is_err());
        assert_eq!(std::fs::read_to_string(&key).unwrap(), ca.key_pem());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Ca::load(&cert, &key).unwrap().cert_der(), ca.cert_der());
        let e = Ca::load(&dir.path().join("missing.pem"), &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::write(&key, Ca::generate("x").unwrap().key_pem()).unwrap();
        let e = Ca::load(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("ca.pem") && e.contains("does not belong"), "{e}");
    }

    #[test]
    fn agent_id_from_garbage_is_none() {
        assert_eq!(agent_id_from_cert(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(agent_id_from_cert(&[]), None);
    }

    #[test]
    fn intermediate_chains_to_the_root_and_issues_short_lived_leaves() {
        let root = Ca::generate("root").unwrap();
        let int = root.issue_intermediate("int", days(365)).unwrap();
        assert_eq!(int.parents(), &[root.cert_der().to_vec()]);
        assert_eq!(int.root_der(), root.cert_der());
        let (_, icert) = x509_parser::parse_x509_certificate(int.cert_der()).unwrap();
        let bc = icert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca && bc.path_len_constraint == Some(0), "{bc:?}");
        let (_, rcert) = x509_parser::parse_x509_certificate(root.cert_der()).unwrap();
        assert_eq!(icert.issuer(), rcert.subject());
        assert!(icert.verify_signature(Some(rcert.public_key())).is_ok());
        // The server chain is leaf, intermediate, root.
        let (chain, _) = int.issue_server("hub", days(1)).unwrap();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[1], int.cert_der());
        assert_eq!(chain[2], root.cert_der());
        // An agent certificate of 30 s: renewal is due at two thirds of it.
        let (_k, csr) = generate_agent_key_and_csr().unwrap();
        let leaf = int
            .sign_csr(&csr, "agent-1", Duration::from_secs(30))
            .unwrap();
        let (nb, na) = cert_validity(&leaf).unwrap();
        let issued = nb + 3_600_000;
        assert!((29_000..=31_000).contains(&(na - issued)), "{nb} {na}");
        let due = renewal_due_ms(&leaf).unwrap();
        assert_eq!(due, issued + (na - issued) / 3 * 2);
        assert_eq!(cert_validity(b"junk"), None);
        // Loaded back from files with its parent.
        let again = Ca::from_pem(&int.cert_pem(), &int.key_pem())
            .unwrap()
            .with_parents(vec![root.cert_der().to_vec()]);
        assert_eq!(
            again.issue_server("hub", days(1)).unwrap().0[2],
            root.cert_der()
        );
    }

    #[test]
    fn cross_signed_successor_verifies_under_the_old_root_only() {
        let old = Ca::generate("old").unwrap();
        let new = Ca::generate("new").unwrap();
        let cross = old.cross_sign(&new).unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(&cross).unwrap();
        let (_, o) = x509_parser::parse_x509_certificate(old.cert_der()).unwrap();
        let (_, n) = x509_parser::parse_x509_certificate(new.cert_der()).unwrap();
        // Same key and subject as the new root, signed by the old root.
        assert_eq!(c.public_key().raw, n.public_key().raw);
        assert_eq!(c.subject(), n.subject());
        assert!(c.verify_signature(Some(o.public_key())).is_ok());
        assert!(c.verify_signature(Some(n.public_key())).is_err());
        // An agent pinning the old root accepts the new one with this proof, and only then.
        let pinned = vec![old.cert_der().to_vec()];
        assert!(proves_successor(new.cert_der(), &cross, &pinned));
        assert!(!proves_successor(
            new.cert_der(),
            &cross,
            &[new.cert_der().to_vec()]
        ));
        let stranger = Ca::generate("new").unwrap();
        assert!(!proves_successor(stranger.cert_der(), &cross, &pinned));
        // A proof made by a root the agent does not pin.
        let rogue = Ca::generate("rogue").unwrap();
        let forged = rogue.cross_sign(&new).unwrap();
        assert!(!proves_successor(new.cert_der(), &forged, &pinned));
        assert!(!proves_successor(new.cert_der(), b"junk", &pinned));
        // An intermediate is no root, whoever signed it.
        let int = old.issue_intermediate("new", days(1)).unwrap();
        assert!(!proves_successor(int.cert_der(), &cross, &pinned));
    }
}
