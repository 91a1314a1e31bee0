//! The hub's certificate authority (rcgen, ECDSA P-256): the CA itself, the hub's server
//! certificate, and the agent certificates issued at enrollment.
//!
//! **Seam**: the hub issues certificates through [`CertAuthority`]; [`RcgenCa`] implements it
//! directly with rcgen today (the lead may swap in `outpost_net::pki::Ca`).
//!
//! Agent certificates: subject CN = agent id, one DNS SAN `<agent id>.agent.outpost`, extended
//! key usage client auth, signed by the CA. Only the public key is taken from the agent's CSR
//! (after its signature is checked); every other field is the hub's.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

/// The DNS suffix of agent certificate SANs.
pub const AGENT_DNS_SUFFIX: &str = "agent.outpost";

/// Errors of the certificate authority.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file does not hold what it should.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The certificate signing request is invalid (bad encoding or signature).
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// What the hub needs from its certificate authority.
pub trait CertAuthority: Send + Sync {
    /// Lower-case hex SHA-256 of the CA certificate's DER (what bootstrap tokens pin).
    fn sha256_hex(&self) -> String;
    /// Issue an agent certificate (DER) for `agent_id` with the public key of `csr_der`.
    fn sign_csr(&self, csr_der: &[u8], agent_id: &str) -> Result<Vec<u8>, PkiError>;
    /// The CA certificate (DER).
    fn ca_der(&self) -> Vec<u8>;
}

/// A certificate authority backed by rcgen with an in-memory ECDSA P-256 key.
pub struct RcgenCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: Vec<u8>,
    ca_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for RcgenCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcgenCa")
            .field("sha256", &self.sha256_hex())
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct IssuedPem {
    /// The certificate chain: leaf first, then the CA.
    pub cert_chain_pem: String,
    /// The leaf's PKCS#8 private key.
    pub key_pem: String,
    /// The leaf certificate (DER).
    pub cert_der: Vec<u8>,
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::hours(1);
    let end = now + chrono::Duration::days(365 * i64::from(years));
    let to_rcgen = |t: chrono::DateTime<chrono::Utc>| {
        rcgen::date_time_ymd(
            chrono::Datelike::year(&t),
            chrono::Datelike::month(&t) as u8,
            chrono::Datelike::day(&t) as u8,
        )
    };
    params.not_before = to_rcgen(start);
    params.not_after = to_rcgen(end);
}

impl RcgenCa {
    /// Make a new CA named `"<hub_name> CA"`.
    pub fn generate(hub_name: &str) -> Result<RcgenCa, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{hub_name} CA"));
        dn.push(DnType::OrganizationName, "Outpost");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        validity(&mut params, 20);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(RcgenCa {
            ca_der: cert.der().to_vec(),
            ca_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Load a CA from its PEM certificate and PEM private key.
    pub fn from_pem(ca_pem: &str, key_pem: &str) -> Result<RcgenCa, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let der = pem_to_der(ca_pem).ok_or(rcgen::Error::CouldNotParseCertificate)?;
        let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key)?;
        Ok(RcgenCa {
            issuer,
            ca_der: der,
            ca_pem: ca_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }

    /// Load a CA from `ca.pem` and `ca.key` files.
    pub fn load(cert: &Path, key: &Path) -> Result<RcgenCa, PkiError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| PkiError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let (c, k) = (read(cert)?, read(key)?);
        RcgenCa::from_pem(&c, &k).map_err(|e| PkiError::Malformed {
            path: cert.to_path_buf(),
            message: format!(
                "not a usable CA certificate and key ({}): {e}",
                key.display()
            ),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issue the hub's server certificate for `hub_name` (DNS SAN) plus `extra_sans` (DNS names
    /// or IP addresses, for the HTTPS API), with the CA in its chain.
    pub fn issue_server(
        &self,
        hub_name: &str,
        extra_sans: &[String],
    ) -> Result<IssuedPem, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut sans = vec![hub_name.to_string()];
        for s in extra_sans {
            if !sans.contains(s) {
                sans.push(s.clone());
            }
        }
        let mut params = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, hub_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 10);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedPem {
            cert_chain_pem: format!("{}{}", cert.pem(), self.ca_pem),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }
}

impl CertAuthority for RcgenCa {
    fn sha256_hex(&self) -> String {
        sha256_hex(&self.ca_der)
    }

    fn sign_csr(&self, csr_der: &[u8], agent_id: &str) -> Result<Vec<u8>, PkiError> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::new(vec![format!("{agent_id}.{AGENT_DNS_SUFFIX}")])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, agent_id);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 10);
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(cert.der().to_vec())
    }

    fn ca_der(&self) -> Vec<u8> {
        self.ca_der.clone()
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start = pem.find(begin)? + begin.len();
    let stop = start + pem[start..].find(end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64_decode(&b64)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Identity facts of an agent certificate, for the agent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Subject CN.
    pub common_name: String,
    /// Serial number, hex.
    pub serial_hex: String,
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
}

/// Read the CN, serial and fingerprint of a certificate.
pub fn cert_facts(cert_der: &[u8]) -> Option<CertFacts> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())?
        .to_string();
    Some(CertFacts {
        common_name: cn,
        serial_hex: hex::encode(cert.raw_serial()),
        fingerprint: sha256_hex(cert_der),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_signs_agent_csr_with_hub_chosen_identity() {
        let ca = RcgenCa::generate("outpost-hub").unwrap();
        // The agent's CSR asks for another name; the hub ignores it.
        let agent_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = CertificateParams::new(vec!["evil.example".to_string()])
            .unwrap()
            .serialize_request(&agent_key)
            .unwrap();
        let der = ca.sign_csr(csr.der(), "agent-0123456789abcdef").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let facts = cert_facts(&der).unwrap();
        assert_eq!(facts.common_name, "agent-0123456789abcdef");
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].contains("agent-0123456789abcdef.agent.outpost"));
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth);
        assert!(!eku.value.server_auth);
        assert_eq!(
            cert.issuer(),
            x509_parser::parse_x509_certificate(&ca.ca_der())
                .unwrap()
                .1
                .subject()
        );
        assert_eq!(
            cert.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&agent_key).as_slice()
        );
        assert!(ca.sign_csr(b"garbage", "agent-x").is_err());
    }

    #[test]
    fn ca_pem_roundtrip_keeps_hash_and_issues_server_cert() {
        let ca = RcgenCa::generate("hub").unwrap();
        let again = RcgenCa::from_pem(ca.ca_pem(), ca.key_pem()).unwrap();
        assert_eq!(again.sha256_hex(), ca.sha256_hex());
        assert_eq!(ca.sha256_hex().len(), 64);
        let server = again
            .issue_server("hub", &["127.0.0.1".to_string(), "hub".to_string()])
            .unwrap();
        assert!(server.cert_chain_pem.matches("BEGIN CERTIFICATE").count() == 2);
        let (_, cert) = x509_parser::parse_x509_certificate(&server.cert_der).unwrap();
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .server_auth
        );
        assert_eq!(pem_to_der(ca.ca_pem()).unwrap(), ca.ca_der());
    }
}
