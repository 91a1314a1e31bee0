//! The certificate lifecycle at the hub: which CA issues (the online intermediate, never the
//! offline root), which client certificates the QUIC endpoint accepts (root anchors, current
//! and retired intermediates, the expiry grace), agent certificate renewal over the session,
//! the hub's own server certificate renewal, and expiry warnings.

use std::path::Path;
use std::time::Duration;

use outpost_common::record::UnixMillis;
use outpost_net::pki::{self, Ca};

use crate::config::HubConfig;
use crate::hub::{Hub, HubError, now_ms};

/// Lifetimes, grace and warning lead (hub.toml; the defaults are in [`crate::config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertPolicy {
    /// Lifetime of an agent certificate.
    pub agent_lifetime: Duration,
    /// How long after expiry an agent certificate still opens a renew-only session.
    pub grace: Duration,
    /// Lifetime of the hub's server certificate.
    pub server_lifetime: Duration,
    /// Warn this long before anything expires.
    pub warning_lead: Duration,
}

impl Default for CertPolicy {
    fn default() -> Self {
        CertPolicy {
            agent_lifetime: crate::config::DEFAULT_AGENT_CERT_LIFETIME,
            grace: crate::config::DEFAULT_AGENT_CERT_GRACE,
            server_lifetime: crate::config::DEFAULT_SERVER_CERT_LIFETIME,
            warning_lead: crate::config::DEFAULT_CERT_WARNING_LEAD,
        }
    }
}

impl CertPolicy {
    /// The policy of a configuration.
    pub fn of(config: &HubConfig) -> CertPolicy {
        CertPolicy {
            agent_lifetime: config.agent_cert_lifetime,
            grace: config.agent_cert_grace,
            server_lifetime: config.server_cert_lifetime,
            warning_lead: config.cert_warning_lead,
        }
    }
}

fn setup(e: impl std::fmt::Display) -> HubError {
    HubError::Setup(e.to_string())
}

/// The CA that issues agent and hub certificates: the intermediate (its chain up to the root
/// from `ca_cert`). The root CA key is never read. A hub made before intermediates existed has
/// no intermediate and its CA key online: that CA is used, with a warning.
pub fn load_issuing_ca(config: &HubConfig) -> Result<Ca, HubError> {
    let roots = pki::read_certs_file(&config.ca_cert, "root CA certificate").map_err(setup)?;
    if !config.has_intermediate() {
        tracing::warn!(
            key = %config.ca_key.display(),
            "this hub has no intermediate CA: its root CA key is online (see docs/operations.md, \
             certificate lifecycle)"
        );
        return Ca::load(&config.ca_cert, &config.ca_key).map_err(setup);
    }
    let ca = Ca::load(&config.intermediate_cert, &config.intermediate_key).map_err(setup)?;
    let Some(root) = roots
        .iter()
        .find(|r| pki::signed_by(ca.cert_der(), r))
        .cloned()
    else {
        return Err(setup(format!(
            "refusing to start: the intermediate CA {} is not signed by the root CA in {}",
            config.intermediate_cert.display(),
            config.ca_cert.display()
        )));
    };
    Ok(ca.with_parents(vec![root]))
}

/// The client certificate policy of the QUIC endpoint: every root in `ca_cert` is an anchor;
/// the current intermediate and the retired ones complete agents' chains; expired agent
/// certificates pass within the grace (the session may then only renew).
pub fn client_auth(config: &HubConfig, ca: &Ca) -> Result<outpost_net::tls::ClientAuth, HubError> {
    let roots = pki::read_certs_file(&config.ca_cert, "root CA certificate").map_err(setup)?;
    let mut intermediates = vec![ca.cert_der().to_vec()];
    let retired = crate::init::retired_intermediates_path(config);
    if retired.exists() {
        intermediates.extend(
            pki::read_certs_file(&retired, "retired intermediate CA certificates")
                .map_err(setup)?,
        );
    }
    Ok(outpost_net::tls::ClientAuth {
        roots,
        intermediates,
        grace: config.agent_cert_grace,
    })
}

/// The root CAs agents should pin besides their own, with proofs: every root in `ca_cert` that
/// a cross certificate in `ca-cross.pem` (made by `ca rotate`) proves a successor of another
/// root of the hub.
pub fn ca_roots(config: &HubConfig) -> Result<Vec<outpost_common::proto::CaRoot>, HubError> {
    let path = crate::init::cross_certs_path(config);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let anchors = pki::read_certs_file(&config.ca_cert, "root CA certificate").map_err(setup)?;
    let crosses = pki::read_certs_file(&path, "cross certificates").map_err(setup)?;
    let mut out = Vec::new();
    for root in &anchors {
        let others: Vec<Vec<u8>> = anchors.iter().filter(|a| *a != root).cloned().collect();
        if let Some(cross) = crosses
            .iter()
            .find(|c| pki::proves_successor(root, c, &others))
        {
            out.push(outpost_common::proto::CaRoot {
                cert_der: root.clone(),
                cross_der: cross.clone(),
            });
        }
    }
    Ok(out)
}

/// Whether an agent certificate has expired at `now_ms` (the session may then only renew).
pub fn expired(cert_der: &[u8], now_ms: UnixMillis) -> bool {
    pki::cert_validity(cert_der).is_none_or(|(_, not_after)| now_ms > not_after)
}

impl Hub {
    /// Authenticate a session's client certificate at `now`: [`Hub::authenticate`], and
    /// whether the certificate has expired (it passed the handshake within the grace), so the
    /// session may only renew. An expired certificate must be the agent's current one: a
    /// previous certificate (replaced by a renewal) is accepted only while it is valid.
    pub fn authenticate_session(
        &self,
        cert_der: &[u8],
        now: UnixMillis,
    ) -> Result<(crate::store::AgentRecord, bool), HubError> {
        let agent = self.authenticate(cert_der)?;
        let renew_only = expired(cert_der, now);
        if renew_only && agent.cert_fingerprint != pki::sha256_hex(cert_der) {
            return Err(HubError::Refused(format!(
                "the expired certificate of agent {} was renewed already",
                agent.id
            )));
        }
        Ok((agent, renew_only))
    }

    /// The certificate policy.
    pub fn cert_policy(&self) -> CertPolicy {
        self.cert_policy_ref()
    }

    /// Record which root CAs an agent pins (its answer to the roots the hub sent).
    pub fn record_pinned_roots(&self, agent_id: &str, pinned: Vec<String>) -> Result<(), HubError> {
        Ok(self.store().set_pinned_roots(agent_id, pinned)?)
    }

    /// Renew `agent_id`'s certificate from its CSR (over its session, authenticated by its
    /// current or just-expired certificate): refused for a revoked or unknown agent. The new
    /// certificate becomes the agent's; the previous one stays accepted (the answer may be lost
    /// before the agent stores it) until the next renewal.
    pub fn renew_agent_cert(&self, agent_id: &str, csr_der: &[u8]) -> Result<Vec<u8>, HubError> {
        let agent = self.store().agent(agent_id)?;
        if agent.revoked_ms.is_some() {
            return Err(HubError::Refused(format!("agent {agent_id} is revoked")));
        }
        let cert = self
            .ca()
            .sign_csr(csr_der, agent_id, self.cert_policy_ref().agent_lifetime)
            .map_err(|e| HubError::Refused(format!("certificate renewal: {e}")))?;
        let facts = pki::cert_facts(&cert)
            .ok_or_else(|| HubError::Refused("issued certificate does not parse".into()))?;
        let not_after = pki::cert_validity(&cert).map(|(_, na)| na);
        let now = now_ms();
        let revoked = self.store().renew_agent_cert(
            agent_id,
            &facts.serial_hex,
            &facts.fingerprint,
            not_after,
            now,
        )?;
        if revoked {
            return Err(HubError::Refused(format!("agent {agent_id} is revoked")));
        }
        Ok(cert)
    }
}

/// A warning about a certificate that expires within the lead time (or has expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryWarning {
    /// What: `hub certificate`, `intermediate CA`, `root CA`, `agent <id>`.
    pub what: String,
    /// When it expires (Unix ms).
    pub not_after_ms: UnixMillis,
}

impl std::fmt::Display for ExpiryWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} expires at {}",
            self.what,
            outpost_common::record::rfc3339(self.not_after_ms)
        )
    }
}

/// Whether a certificate valid until `not_after_ms` needs a warning at `now_ms` with `lead`.
pub fn expiring(not_after_ms: UnixMillis, now_ms: UnixMillis, lead: Duration) -> bool {
    let lead = i64::try_from(lead.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_add(lead) >= not_after_ms
}

/// Every certificate of this hub that expires within the lead time: the hub's server
/// certificate (`server_leaf`), the intermediate and root CAs, and agents' certificates that
/// have not been renewed (revoked agents left out).
pub fn expiry_warnings(
    hub: &Hub,
    server_leaf: &[u8],
    now: UnixMillis,
) -> Result<Vec<ExpiryWarning>, HubError> {
    let lead = hub.cert_policy_ref().warning_lead;
    let mut out = Vec::new();
    let ca = hub.ca();
    for (what, der) in [
        ("hub certificate", server_leaf),
        ("intermediate CA", ca.cert_der()),
        ("root CA", ca.root_der()),
    ] {
        if let Some((_, na)) = pki::cert_validity(der)
            && expiring(na, now, lead)
        {
            out.push(ExpiryWarning {
                what: what.to_string(),
                not_after_ms: na,
            });
        }
    }
    for a in hub.store().agents()? {
        if a.revoked_ms.is_some() {
            continue;
        }
        if let Some(na) = a.cert_not_after_ms
            && expiring(na, now, lead)
        {
            out.push(ExpiryWarning {
                what: format!("agent {} certificate", a.id),
                not_after_ms: na,
            });
        }
    }
    Ok(out)
}

/// `GET /v1/certificates`: the hub's certificates, the root CAs with how many agents pin each,
/// and every expiry warning.
pub fn certificates_view(hub: &Hub) -> Result<crate::views::CertificatesView, HubError> {
    use crate::views::{CertView, CertificatesView, RootCaView};
    let now = now_ms();
    let view = |der: &[u8]| CertView {
        sha256: pki::sha256_hex(der),
        expires: pki::cert_validity(der)
            .map(|(_, na)| outpost_common::record::rfc3339(na))
            .unwrap_or_default(),
    };
    let agents: Vec<_> = hub
        .store()
        .agents()?
        .into_iter()
        .filter(|a| a.revoked_ms.is_none())
        .collect();
    let leaf = hub.server_leaf();
    let roots = hub
        .anchors()
        .iter()
        .map(|r| {
            let sha = pki::sha256_hex(r);
            let agents_pinning = agents
                .iter()
                .filter(|a| a.pinned_roots.as_ref().is_some_and(|p| p.contains(&sha)))
                .count();
            RootCaView {
                cert: view(r),
                issuing: pki::signed_by(hub.ca().cert_der(), r),
                agents_pinning,
            }
        })
        .collect();
    Ok(CertificatesView {
        hub_certificate: (!leaf.is_empty()).then(|| view(&leaf)),
        intermediate: view(hub.ca().cert_der()),
        roots,
        agents: agents.len(),
        warnings: expiry_warnings(hub, &leaf, now)?
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}

/// The hub's server certificate needs renewing: past two thirds of its lifetime, issued by a
/// CA other than the current intermediate (after `ca rotate-intermediate`), or living longer
/// than `lifetime` (`server_cert_lifetime` was lowered).
pub fn server_cert_due(leaf: &[u8], ca: &Ca, lifetime: Duration, now: UnixMillis) -> bool {
    let due = pki::renewal_due_ms(leaf).is_none_or(|d| now >= d);
    let max = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
    let too_long = pki::issued_lifetime_ms(leaf).is_none_or(|l| l > max.saturating_add(60_000));
    due || too_long || !pki::signed_by(leaf, ca.cert_der())
}

/// A certificate chain (leaf first) and the leaf's PKCS#8 key, DER.
pub type ChainAndKey = (Vec<Vec<u8>>, Vec<u8>);

/// Renew the hub's server certificate if due ([`server_cert_due`]): a new key and certificate
/// with the same names, from the intermediate, written next to the old files and then swapped
/// in. Returns the new chain and key, or `None` if not due.
pub fn renew_server_cert_if_due(
    config: &HubConfig,
    ca: &Ca,
    lifetime: Duration,
    now: UnixMillis,
) -> anyhow::Result<Option<ChainAndKey>> {
    let chain = pki::read_certs_file(&config.cert, "the hub's certificate chain")?;
    let Some(leaf) = chain.first() else {
        anyhow::bail!("{} holds no certificate", config.cert.display());
    };
    if !server_cert_due(leaf, ca, lifetime, now) {
        return Ok(None);
    }
    let names = pki::server_names(leaf);
    let (new_chain, key) = ca.issue_server_with_sans(&config.hub_name, &names, lifetime)?;
    install(&config.key, pki::key_to_pem(&key).as_bytes())?;
    install(&config.cert, pki::chain_to_pem(&new_chain).as_bytes())?;
    Ok(Some((new_chain, key)))
}

/// How often [`maintain`] looks: a thirtieth of the server certificate's lifetime, between
/// one second and one hour.
pub fn check_interval(server_lifetime: Duration) -> Duration {
    (server_lifetime / 30).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// How often the same expiry warnings are logged again.
const WARN_EVERY: Duration = Duration::from_secs(3600);

/// While serving: renew the hub's server certificate when due (presented from the next
/// handshake on, no restart), and log expiry warnings (at start, then hourly).
pub async fn maintain(
    hub: std::sync::Arc<Hub>,
    config: HubConfig,
    server_cert: std::sync::Arc<outpost_net::tls::ServerCert>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let policy = hub.cert_policy();
    let mut tick = tokio::time::interval(check_interval(policy.server_lifetime));
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let (h, c, cert) = (hub.clone(), config.clone(), server_cert.clone());
        let warn_now = last_warned.is_none_or(|t| t.elapsed() >= WARN_EVERY);
        let done = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<ExpiryWarning>> {
            if let Some((chain, key)) =
                renew_server_cert_if_due(&c, h.ca(), h.cert_policy().server_lifetime, now_ms())?
            {
                cert.replace(&chain, &key)?;
                h.set_server_leaf(cert.leaf());
                tracing::info!(cert = %c.cert.display(), "renewed the hub's server certificate");
            }
            if !warn_now {
                return Ok(Vec::new());
            }
            Ok(expiry_warnings(&h, &cert.leaf(), now_ms())?)
        })
        .await;
        match done {
            Ok(Ok(warnings)) => {
                if warn_now {
                    last_warned = Some(std::time::Instant::now());
                }
                for w in warnings {
                    tracing::warn!(what = %w.what, "certificate expiry: {w}");
                }
            }
            Ok(Err(e)) => tracing::error!("certificate maintenance: {e:#}"),
            Err(e) => tracing::error!("certificate maintenance: {e}"),
        }
    }
}

/// Write `path` (mode 0600) by writing `<path>.new`, syncing it, and renaming it over `path`.
fn install(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    pki::create_private_file(&tmp, bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot install {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_start_at_the_lead_time() {
        let day = 86_400_000;
        let lead = Duration::from_secs(14 * 86_400);
        assert!(!expiring(100 * day, 85 * day, lead));
        assert!(expiring(100 * day, 86 * day, lead));
        assert!(expiring(100 * day, 101 * day, lead));
    }

    #[test]
    fn server_certificate_renews_at_two_thirds_or_after_a_new_intermediate() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = crate::init::init(
            &dir,
            "hub",
            &["10.0.0.1".into()],
            &crate::init::default_offline_dir(&dir),
            crate::init::KeyPlan::default(),
        )
        .unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        let ca = load_issuing_ca(&cfg).unwrap();
        let before = pki::read_certs_file(&cfg.cert, "hub").unwrap();
        let due = pki::renewal_due_ms(&before[0]).unwrap();
        // Not yet due: nothing changes.
        let life = cfg.server_cert_lifetime;
        assert!(
            renew_server_cert_if_due(&cfg, &ca, life, due - 1000)
                .unwrap()
                .is_none()
        );
        assert_eq!(pki::read_certs_file(&cfg.cert, "hub").unwrap(), before);
        // Due: a new certificate with the same names, installed.
        let (chain, _key) = renew_server_cert_if_due(&cfg, &ca, life, due)
            .unwrap()
            .unwrap();
        assert_ne!(chain[0], before[0]);
        assert_eq!(pki::read_certs_file(&cfg.cert, "hub").unwrap(), chain);
        assert_eq!(pki::server_names(&chain[0]), pki::server_names(&before[0]));
        assert!(pki::server_names(&chain[0]).contains(&"10.0.0.1".to_string()));
        let tls = outpost_net::tls::ServerCert::new(
            &chain,
            &pki::read_key_file(&cfg.key, "key").unwrap(),
        );
        assert!(tls.is_ok(), "the installed key is the new certificate's");
        // After an intermediate rotation the certificate is renewed at once.
        crate::init::rotate_intermediate(&cfg, &r.offline_dir).unwrap();
        let ca2 = load_issuing_ca(&cfg).unwrap();
        assert!(server_cert_due(&chain[0], &ca2, life, now_ms()));
        assert!(!server_cert_due(&chain[0], &ca, life, now_ms()));
        // A lower server_cert_lifetime takes effect at once.
        assert!(server_cert_due(
            &chain[0],
            &ca,
            Duration::from_secs(86_400),
            now_ms()
        ));
    }

    #[test]
    fn serve_loads_the_intermediate_without_the_root_key() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = crate::init::init(
            &dir,
            "hub",
            &[],
            &crate::init::default_offline_dir(&dir),
            crate::init::KeyPlan::default(),
        )
        .unwrap();
        // The offline directory is gone (moved off the host): the hub opens all the same.
        std::fs::remove_dir_all(&r.offline_dir).unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        let (hub, _) = Hub::open(&cfg, Duration::from_secs(1)).unwrap();
        assert_eq!(hub.ca_sha256_hex(), r.ca_sha256);
        // An intermediate of another root is refused.
        let other = Ca::generate("other").unwrap();
        let int = other.issue_intermediate("int", pki::days(10)).unwrap();
        drop(hub);
        std::fs::write(&cfg.intermediate_cert, int.cert_pem()).unwrap();
        std::fs::write(&cfg.intermediate_key, int.key_pem()).unwrap();
        let e = load_issuing_ca(&cfg).unwrap_err().to_string();
        assert!(e.contains("not signed by the root"), "{e}");
    }

    #[test]
    fn a_hub_made_before_intermediates_still_opens_with_its_online_ca() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = crate::init::init(
            &dir,
            "hub",
            &[],
            &crate::init::default_offline_dir(&dir),
            crate::init::KeyPlan::default(),
        )
        .unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        // The layout of an earlier init: ca.pem + ca.key online, no intermediate.
        std::fs::copy(
            r.offline_dir.join(crate::init::ROOT_CA_KEY_FILE),
            &cfg.ca_key,
        )
        .unwrap();
        std::fs::remove_file(&cfg.intermediate_cert).unwrap();
        std::fs::remove_file(&cfg.intermediate_key).unwrap();
        assert!(!cfg.has_intermediate());
        cfg.check_files().unwrap();
        let ca = load_issuing_ca(&cfg).unwrap();
        assert_eq!(ca.sha256_hex(), r.ca_sha256);
        assert!(ca.parents().is_empty());
        let (hub, _) = Hub::open(&cfg, Duration::from_secs(1)).unwrap();
        assert_eq!(hub.ca_sha256_hex(), r.ca_sha256);
        // Its server certificate (from the removed intermediate) is renewed from that CA.
        let leaf = pki::read_certs_file(&cfg.cert, "hub").unwrap();
        assert!(server_cert_due(
            &leaf[0],
            &ca,
            cfg.server_cert_lifetime,
            now_ms()
        ));
        // Without either CA key the hub refuses to start, naming the intermediate key.
        std::fs::remove_file(&cfg.ca_key).unwrap();
        let e = cfg.check_files().unwrap_err().to_string();
        assert!(e.contains("intermediate"), "{e}");
    }
}
