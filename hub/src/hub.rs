//! The hub's shared state and the logic the operations and the QUIC session driver share:
//! desired state per agent, change notification. Changes go through [`crate::ops`].
//!
//! Held here (private): the director key ([`Director`], `outpost_common::trust`), the lab release
//! key if one is configured, the certificate authority ([`Ca`], `outpost_net::pki`) and the [`AgentGateway`] seam (commands
//! to connected agents).

use std::sync::Arc;

use outpost_common::proto::{Rejection, SignedAssignment, SignedBundle};
use outpost_common::record::UnixMillis;
use outpost_common::trust::Director;
use outpost_net::pki::Ca;
use tokio::sync::{broadcast, watch};

use crate::config::HubConfig;
use crate::events::{Event, EventKind};
use crate::gateway::{AgentGateway, Connections};
use crate::store::{
    AgentRecord, DesiredVersion, PoolDecision, PoolRecord, RolloutAssign, Store, StoreError,
    selector_matches,
};

pub use crate::clock::now_ms;

/// Errors of hub operations.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Loading keys or certificates failed.
    #[error("{0}")]
    Setup(String),
    /// A session is refused (unknown, revoked or mismatched agent certificate).
    #[error("{0}")]
    Refused(String),
}

/// One workflow an agent should run, with the signed statements to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredAssignment {
    /// Workflow.
    pub workflow: String,
    /// Version (0 for a removal).
    pub version: u64,
    /// Epoch of the assignment.
    pub epoch: u64,
    /// The workflow is no longer assigned to this agent.
    pub remove: bool,
    /// blake3 hex of the version's content (empty for a removal).
    pub content_hash: String,
    /// Paused at the hub.
    pub paused: bool,
    /// The signed assignment.
    pub assignment: SignedAssignment,
    /// The signed bundle of `version` (`None` for a removal).
    pub bundle: Option<SignedBundle>,
}

/// The pool decision an agent follows for one workflow: among the pools the agent is a member
/// of (by labels) that have a decision for the workflow, the one with the highest decision seq
/// (the most recent deploy, pin or rollout start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Workflow.
    pub workflow: String,
    /// The pool whose decision wins.
    pub pool: String,
    /// The decision.
    pub decision: PoolDecision,
}

/// Resolve, for an agent with `labels`, the winning pool decision of every workflow.
pub fn resolve_decisions(
    labels: &[(String, String)],
    pools: &[PoolRecord],
    decisions: &[((String, String), PoolDecision)],
) -> Vec<Resolved> {
    let member: std::collections::HashSet<&str> = pools
        .iter()
        .filter(|p| selector_matches(&p.selector, labels))
        .map(|p| p.name.as_str())
        .collect();
    let mut best: std::collections::BTreeMap<&str, Resolved> = std::collections::BTreeMap::new();
    for ((w, p), d) in decisions {
        if !member.contains(p.as_str()) {
            continue;
        }
        if best.get(w.as_str()).is_none_or(|b| d.seq > b.decision.seq) {
            best.insert(
                w,
                Resolved {
                    workflow: w.clone(),
                    pool: p.clone(),
                    decision: d.clone(),
                },
            );
        }
    }
    best.into_values().collect()
}

/// The versions an agent should run: each workflow's winning pool decision (see
/// [`resolve_decisions`]); under an active rollout, what the rollout assigned the agent
/// (`assigns`), else the pool's version. Version 0 means "not deployed".
pub fn desired_versions(
    resolved: &[Resolved],
    assigns: &[((String, String), RolloutAssign)],
    hash_of: &mut dyn FnMut(&str, u64) -> Result<String, StoreError>,
) -> Result<Vec<DesiredVersion>, StoreError> {
    let mut out = Vec::new();
    for r in resolved {
        let assign = r.decision.rollout.and_then(|_| {
            assigns
                .iter()
                .find(|((w, p), _)| *w == r.workflow && *p == r.pool)
                .map(|(_, a)| a)
        });
        let (version, previous_version, probation, rollout_id) = match assign {
            Some(a) => (
                a.version,
                a.previous_version,
                a.probation,
                Some(a.rollout_id.clone()),
            ),
            None => (r.decision.version, None, None, None),
        };
        if version == 0 {
            continue;
        }
        out.push(DesiredVersion {
            content_hash: hash_of(&r.workflow, version)?,
            workflow: r.workflow.clone(),
            version,
            previous_version: previous_version.filter(|p| *p != 0),
            probation,
            rollout_id,
        });
    }
    Ok(out)
}

/// The hub's shared state. Cheap to share behind an `Arc`. Its parts are private: changes go
/// through the operations ([`crate::ops`]), which commit, audit, notify sessions and emit events.
pub struct Hub {
    store: Arc<Store>,
    /// The director key (signs assignments, snapshots, commands, acknowledgements).
    director: Arc<Director>,
    /// The newest root metadata version published (sessions send newer roots to their agent
    /// without reading the store on every change notification).
    root_version: std::sync::atomic::AtomicU64,
    /// `[keys] release_key`: a release key the hub signs applied versions with (lab, `dev`).
    release_key: Option<Arc<outpost_common::trust::SigningKey>>,
    /// The certificate authority.
    ca: Arc<Ca>,
    /// Live agent sessions.
    gateway: Arc<dyn AgentGateway>,
    /// The hub's name (in its certificate).
    hub_name: String,
    /// Longest time to live of a bootstrap token (`max_token_ttl`).
    max_token_ttl: std::time::Duration,
    /// Lifetime of a director snapshot (`director_ttl`).
    director_ttl: std::time::Duration,
    /// Lifetimes, grace and warning lead of certificates (hub.toml).
    cert_policy: crate::certs::CertPolicy,
    /// New root CAs with their proofs, sent to every agent (after `ca rotate`).
    ca_roots: Vec<outpost_common::proto::CaRoot>,
    /// The root CAs the hub trusts (`ca.pem`).
    anchors: Vec<Vec<u8>>,
    /// The server certificate presented now (set by the QUIC endpoint).
    server_leaf: std::sync::RwLock<Vec<u8>>,
    changes: watch::Sender<u64>,
    /// Domain events ([`crate::events::Event`]).
    events: broadcast::Sender<Event>,
    /// Serialises the rollout driver's operations (see [`crate::rollouts`]).
    pub(crate) rollout_lock: std::sync::Mutex<crate::rollouts::RolloutDriver>,
    /// Wakes the rollout driver (agent events, commands).
    pub(crate) rollout_wake: tokio::sync::Notify,
    /// The alert channels of `hub.toml` (`[[channel]]`).
    channels: Arc<crate::channels::Channels>,
    /// Serialises the alert driver's turns (see [`crate::alerts`]).
    pub(crate) alert_lock: std::sync::Mutex<()>,
    /// Wakes the alert driver (an ingest, a silence).
    pub(crate) alert_wake: tokio::sync::Notify,
    /// Wakes the alert delivery task (new notifications).
    pub(crate) delivery_wake: tokio::sync::Notify,
    /// The counters and histograms of `/metrics` ([`crate::metrics`]).
    metrics: crate::metrics::HubMetrics,
    /// `[metrics] per_agent_limit`: agents with their own series.
    pub(crate) metrics_per_agent_limit: usize,
    /// `replicas`: the QUIC addresses agents may use (at enrollment and in every Welcome).
    replicas: Vec<String>,
    /// Whether this replica may act as leader now (always, for an embedded hub; see
    /// [`crate::ha`]).
    leader: Arc<crate::ha::LeaderGate>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("store", &self.store)
            .field("hub_name", &self.hub_name)
            .finish_non_exhaustive()
    }
}

/// What [`Hub::open`] returns besides the hub: the concrete session registry the QUIC driver
/// registers sessions into.
pub type Opened = (Arc<Hub>, Arc<Connections>);

impl Hub {
    /// Assemble a hub from its parts. Refuses a director key that the current root metadata
    /// does not name as the director (agents would refuse everything it signs).
    pub fn new(
        store: Arc<Store>,
        director: Arc<Director>,
        release_key: Option<Arc<outpost_common::trust::SigningKey>>,
        ca: Arc<Ca>,
        gateway: Arc<dyn AgentGateway>,
        hub_name: &str,
    ) -> Result<Arc<Hub>, HubError> {
        let Some((_, root)) = store.current_root()? else {
            return Err(HubError::Setup(
                "refusing to start: no root metadata in the store (`outpost-hub init` makes the \
                 first)"
                    .into(),
            ));
        };
        if !root.director.key_ids.iter().any(|k| k == director.key_id()) {
            return Err(HubError::Setup(format!(
                "refusing to start: the director key file holds key {}, but root metadata v{} \
                 names {} as the director (publish a root that names this key first)",
                director.key_id(),
                root.version,
                root.director.key_ids.join(", ")
            )));
        }
        let (changes, _) = watch::channel(0);
        let (events, _) = broadcast::channel(crate::events::EVENT_BUFFER);
        Ok(Arc::new(Hub {
            store,
            director,
            release_key,
            root_version: std::sync::atomic::AtomicU64::new(root.version),
            ca,
            gateway,
            hub_name: hub_name.to_string(),
            max_token_ttl: crate::config::DEFAULT_MAX_TOKEN_TTL,
            director_ttl: crate::config::DEFAULT_DIRECTOR_TTL,
            cert_policy: crate::certs::CertPolicy::default(),
            ca_roots: Vec::new(),
            anchors: Vec::new(),
            server_leaf: std::sync::RwLock::new(Vec::new()),
            changes,
            events,
            rollout_lock: std::sync::Mutex::new(Default::default()),
            rollout_wake: tokio::sync::Notify::new(),
            channels: Arc::new(crate::channels::Channels::default()),
            alert_lock: std::sync::Mutex::new(()),
            alert_wake: tokio::sync::Notify::new(),
            delivery_wake: tokio::sync::Notify::new(),
            metrics: crate::metrics::HubMetrics::default(),
            metrics_per_agent_limit: crate::metrics::DEFAULT_PER_AGENT_LIMIT,
            replicas: Vec::new(),
            leader: Arc::new(crate::ha::LeaderGate::embedded()),
        }))
    }

    /// Whether this replica may act as leader now, and with which epoch ([`crate::ha`]).
    pub fn leader(&self) -> &Arc<crate::ha::LeaderGate> {
        &self.leader
    }

    /// Open the hub of a configuration: fails closed on a missing file (naming it).
    pub fn open(
        config: &HubConfig,
        command_timeout: std::time::Duration,
    ) -> Result<Opened, HubError> {
        config
            .check_files()
            .map_err(|e| HubError::Setup(e.to_string()))?;
        let director = crate::init::load_signing_key(&config.director_key)
            .map_err(|e| HubError::Setup(e.to_string()))?;
        let release_key = match &config.release_key {
            Some(p) => {
                Some(crate::init::load_signing_key(p).map_err(|e| HubError::Setup(e.to_string()))?)
            }
            None => None,
        };
        let channels = crate::channels::Channels::from_config(config)
            .map_err(|e| HubError::Setup(e.to_string()))?;
        let ca = crate::certs::load_issuing_ca(config)?;
        let ca_roots = crate::certs::ca_roots(config)?;
        let anchors = outpost_net::pki::read_certs_file(&config.ca_cert, "root CA certificate")
            .map_err(|e| HubError::Setup(e.to_string()))?;
        let store_path = config.store_path();
        if !store_path.exists() {
            return Err(HubError::Setup(format!(
                "refusing to start: store {} is missing (run `outpost-hub init`)",
                store_path.display()
            )));
        }
        if let Some(dir) = store_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::init::private_data_dir(dir).map_err(|e| {
                HubError::Setup(format!("cannot set mode 0700 on {}: {e}", dir.display()))
            })?;
        }
        let store = Arc::new(Store::open(&store_path)?);
        let conns = Connections::new(command_timeout);
        let mut hub = Hub::new(
            store,
            Arc::new(Director::new(director)),
            release_key.map(Arc::new),
            Arc::new(ca),
            conns.clone(),
            &config.hub_name,
        )?;
        if let Some(h) = Arc::get_mut(&mut hub) {
            h.max_token_ttl = config.max_token_ttl;
            h.director_ttl = config.director_ttl;
            h.cert_policy = crate::certs::CertPolicy::of(config);
            h.ca_roots = ca_roots;
            h.anchors = anchors;
            h.channels = Arc::new(channels);
            h.metrics_per_agent_limit = config.metrics_per_agent_limit;
            h.replicas.clone_from(&config.replicas);
        }
        Ok((hub, conns))
    }

    /// The alert channels (`[[channel]]` in `hub.toml`).
    pub fn channels(&self) -> &Arc<crate::channels::Channels> {
        &self.channels
    }

    /// A receiver that changes whenever desired state may have changed (apply, rollback,
    /// pause/resume, revoke). The QUIC driver recomputes [`Hub::desired_for`] for its agent.
    pub fn desired_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Signal a desired-state change (the operations do, after committing).
    pub(crate) fn notify_changed(&self) {
        self.changes.send_modify(|g| *g += 1);
    }

    /// The counters and histograms of `/metrics` (the alert delivery driver reports each
    /// delivery with [`crate::metrics::HubMetrics::alert_delivery`]).
    pub fn metrics(&self) -> &crate::metrics::HubMetrics {
        &self.metrics
    }

    /// The store (read by the operations and the session driver; changed only by operations).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The store, shared (the HA driver keeps its replicated tables current).
    #[cfg_attr(not(feature = "ha"), allow(dead_code))]
    pub(crate) fn store_arc(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// The newest root metadata version published.
    pub(crate) fn root_version(&self) -> u64 {
        self.root_version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A root metadata version was published (see [`Hub::root_version`]).
    pub(crate) fn set_root_version(&self, version: u64) {
        self.root_version
            .fetch_max(version, std::sync::atomic::Ordering::AcqRel);
    }

    /// The configured release key, if any.
    pub(crate) fn release_key(&self) -> Option<&outpost_common::trust::SigningKey> {
        self.release_key.as_deref()
    }

    /// The director key.
    pub(crate) fn director(&self) -> &Arc<Director> {
        &self.director
    }

    /// The certificate authority.
    pub(crate) fn ca(&self) -> &Ca {
        &self.ca
    }

    /// Live agent sessions.
    pub(crate) fn gateway(&self) -> &dyn AgentGateway {
        self.gateway.as_ref()
    }

    /// The domain event channel.
    pub(crate) fn events(&self) -> &broadcast::Sender<Event> {
        &self.events
    }

    /// The hub's name (in its certificate and its bootstrap tokens).
    pub fn hub_name(&self) -> &str {
        &self.hub_name
    }

    /// SHA-256 of the hub CA certificate, hex (in bootstrap tokens).
    pub fn ca_sha256_hex(&self) -> String {
        outpost_net::pki::sha256_hex(self.ca.root_der())
    }

    pub(crate) fn cert_policy_ref(&self) -> crate::certs::CertPolicy {
        self.cert_policy
    }

    /// The root CAs the hub trusts (empty for a hub assembled without a configuration).
    pub(crate) fn anchors(&self) -> &[Vec<u8>] {
        &self.anchors
    }

    /// The server certificate presented now (empty until the QUIC endpoint starts).
    pub(crate) fn server_leaf(&self) -> Vec<u8> {
        self.server_leaf
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Record the server certificate presented now.
    pub(crate) fn set_server_leaf(&self, leaf: Vec<u8>) {
        *self
            .server_leaf
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = leaf;
    }

    /// The replica addresses agents may use (`replicas` in hub.toml; empty: none).
    pub fn replicas(&self) -> &[String] {
        &self.replicas
    }

    /// New root CAs for agents to pin, with their proofs.
    pub(crate) fn ca_roots(&self) -> &[outpost_common::proto::CaRoot] {
        &self.ca_roots
    }

    /// Longest time to live of a bootstrap token.
    /// Lifetime of a director snapshot.
    pub fn director_ttl(&self) -> std::time::Duration {
        self.director_ttl
    }

    pub fn max_token_ttl(&self) -> std::time::Duration {
        self.max_token_ttl
    }

    /// The agents with a live session, with the time each session started.
    /// In HA mode also the agents whose sessions another live replica holds (`agent_presence`),
    /// so that what the leader evaluates (offline alerts, missed firings, rollouts) and what any
    /// replica shows counts them as online.
    pub fn connected(&self) -> Vec<(String, UnixMillis)> {
        let mut here = self.gateway.connected();
        let elsewhere = match self.held_elsewhere() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading agent presence");
                return here;
            }
        };
        let local: std::collections::HashSet<String> =
            here.iter().map(|(id, _)| id.clone()).collect();
        here.extend(
            elsewhere
                .into_iter()
                .filter(|(id, _)| !local.contains(id))
                .map(|(id, p)| (id, p.since_ms)),
        );
        here
    }

    /// HA mode: the presence records of agents whose sessions another live replica holds (a
    /// replica is live while its election key exists). Empty on an embedded hub.
    pub(crate) fn held_elsewhere(
        &self,
    ) -> Result<std::collections::HashMap<String, crate::store::PresenceRecord>, StoreError> {
        if !self.leader().is_ha() {
            return Ok(Default::default());
        }
        let live = self.leader().live_replicas();
        let me = self.leader().name();
        let mut presence = self.store.presence()?;
        presence.retain(|_, p| p.replica != me && live.contains(&p.replica));
        Ok(presence)
    }

    /// The desired state of `agent_id`: every workflow it should run with a signed assignment
    /// (minting the next epoch where the desired version changed) and the signed bundle (left
    /// out for a version the agent is known to hold locally), plus removals for workflows no
    /// longer assigned. Refuses a revoked or unknown agent.
    pub fn desired_for(&self, agent_id: &str) -> Result<Vec<DesiredAssignment>, HubError> {
        let agent = self.store.agent(agent_id)?;
        if agent.revoked_ms.is_some() {
            return Err(StoreError::Revoked(agent_id.into()).into());
        }
        let desired = self.desired_versions_of(&agent)?;
        let issued =
            self.store
                .sync_assignments(agent_id, &desired, self.director.as_ref(), now_ms())?;
        // Read once per change of the configuration, not once per agent (`store/config.rs`).
        let config = self.store.config()?;
        let mut out = Vec::with_capacity(issued.len());
        for a in issued {
            // An agent keeps every version it activated: one it is known to hold (a rollback,
            // a version it reported) is sent without its bundle, so it switches at once.
            let bundle = if a.remove || self.store.holds(agent_id, &a.workflow, a.version)? {
                None
            } else {
                Some(
                    config
                        .version(&self.store, &a.workflow, a.version)?
                        .bundle
                        .clone(),
                )
            };
            // Signed by a director key that a root rotation replaced: sign the same bytes again
            // with the current director key (the agents follow the root to it and refuse the
            // old one). Release signatures are never re-made here: only release keys can.
            let mut a = a;
            if a.signed.signature.key_id != self.director.key_id() {
                a.signed = self.director.resign_assignment(a.signed);
            }
            out.push(DesiredAssignment {
                paused: config.paused(&a.workflow),
                workflow: a.workflow,
                version: a.version,
                epoch: a.epoch,
                remove: a.remove,
                content_hash: a.content_hash,
                assignment: a.signed,
                bundle,
            });
        }
        Ok(out)
    }

    /// The versions `agent` should run now (pool decisions and active rollouts).
    pub fn desired_versions_of(
        &self,
        agent: &AgentRecord,
    ) -> Result<Vec<DesiredVersion>, StoreError> {
        let config = self.store.config()?;
        let resolved = resolve_decisions(&agent.labels, &config.pools, &config.decisions);
        let assigns = if resolved.iter().any(|r| r.decision.rollout.is_some()) {
            self.store.rollout_assigns_for(&agent.id)?
        } else {
            Vec::new()
        };
        let store = &self.store;
        desired_versions(&resolved, &assigns, &mut |w, v| {
            Ok(config.version(store, w, v)?.content_hash.clone())
        })
    }
}

/// Session logic for the QUIC driver: each call is one step of an agent session, with the
/// store doing the durable part. The driver only moves frames.
impl Hub {
    /// Map a session's client certificate to its agent: the CN names the agent, the
    /// certificate must be the one issued at enrollment (fingerprint) and the agent not revoked.
    pub fn authenticate(&self, cert_der: &[u8]) -> Result<AgentRecord, HubError> {
        let facts = outpost_net::pki::cert_facts(cert_der)
            .ok_or_else(|| HubError::Refused("client certificate does not parse".into()))?;
        let agent = match self.store.agent(&facts.common_name) {
            Ok(a) => a,
            Err(StoreError::NoAgent(id)) => {
                return Err(HubError::Refused(format!("unknown agent {id}")));
            }
            Err(e) => return Err(e.into()),
        };
        if agent.revoked_ms.is_some() {
            return Err(HubError::Refused(format!("agent {} is revoked", agent.id)));
        }
        if agent.cert_fingerprint != facts.fingerprint
            && agent.previous_cert_fingerprint.as_deref() != Some(facts.fingerprint.as_str())
        {
            return Err(HubError::Refused(format!(
                "certificate of agent {} is not the one issued to it",
                agent.id
            )));
        }
        Ok(agent)
    }
}

impl Hub {
    /// A receiver of every domain event from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events().subscribe()
    }

    /// Emit one event (nobody listening is fine).
    pub(crate) fn emit(&self, actor: &str, kind: EventKind) {
        let _ = self.events().send(Event {
            actor: actor.to_string(),
            at_ms: now_ms(),
            kind,
        });
    }
}

/// A rejection for humans.
pub fn rejection_text(r: &Rejection) -> String {
    r.to_string()
}

/// The labels of an agent enrolling with a token labelled `token`: the token's, which are
/// authoritative. An agent may repeat a token label (same key, same value); any other label it
/// asks for is refused, naming it, so that an agent cannot pull in workflows (and their
/// environment) meant for other sites.
pub fn allowed_labels(
    token: &[(String, String)],
    asked: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let shown = |l: &[(String, String)]| {
        if l.is_empty() {
            "none".to_string()
        } else {
            l.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let refused: Vec<(String, String)> = asked
        .iter()
        .filter(|l| !token.contains(l))
        .cloned()
        .collect();
    if !refused.is_empty() {
        return Err(format!(
            "label {} not allowed by the bootstrap token (its labels: {}); the token's labels \
             are authoritative: create a token with the labels this agent needs",
            shown(&refused),
            shown(token)
        ));
    }
    let mut labels = token.to_vec();
    labels.sort();
    Ok(labels)
}

/// Split `token_id.secret` (the part of a bootstrap token an agent sends).
pub fn parse_token_secret(s: &str) -> Option<(&str, &str)> {
    let (id, secret) = s.split_once('.')?;
    (!id.is_empty() && !secret.is_empty() && !secret.contains('.')).then_some((id, secret))
}

/// The full bootstrap token an operator hands to an agent:
/// `opt2.<token_id>.<secret>.<ca_sha256_hex>.<hub_name>`, so that `enroll` needs neither the
/// CA nor the hub's name. A hub name with characters other than `A-Z a-z 0-9 . - _ :` gives
/// the older `opt1.<token_id>.<secret>.<ca_sha256_hex>` (enroll then needs `--hub-name`).
pub fn format_bootstrap_token(
    token_id: &str,
    secret: &str,
    ca_sha256_hex: &str,
    hub_name: &str,
) -> String {
    let plain = !hub_name.is_empty()
        && hub_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if plain {
        format!("opt2.{token_id}.{secret}.{ca_sha256_hex}.{hub_name}")
    } else {
        format!("opt1.{token_id}.{secret}.{ca_sha256_hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewVersion;
    use outpost_common::proto::DOMAIN_ASSIGNMENT;
    use outpost_common::proto::{Assignment, EnrollRequest, EnrollResponse};
    use outpost_common::record::OutboxEntry;
    use outpost_common::trust::{SigningKey, Trust};

    /// A hub on a 1-of-1 root that releases what is applied with its release key; the agents'
    /// view of the root.
    fn hub() -> (tempfile::TempDir, Arc<Hub>, Trust) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("hub.redb")).unwrap());
        let key = || SigningKey::generate().unwrap().0;
        let (release, pkcs8) = SigningKey::generate().unwrap();
        let director = key();
        let root = crate::init::publish_first_root(
            &store,
            &[key()],
            &[release],
            &director,
            crate::init::KeyPlan::default(),
            now_ms(),
        )
        .unwrap();
        let release = Arc::new(SigningKey::from_pkcs8(&pkcs8).unwrap());
        let ca = Arc::new(
            Ca::generate("hub CA")
                .unwrap()
                .issue_intermediate("hub intermediate", outpost_net::pki::days(30))
                .unwrap(),
        );
        let conns = Connections::new(std::time::Duration::from_secs(1));
        let hub = Hub::new(
            store,
            Arc::new(Director::new(director)),
            Some(release),
            ca,
            conns,
            "hub",
        )
        .unwrap();
        (dir, hub, Trust::new(root).unwrap())
    }

    fn apply(hub: &Hub, name: &str, content: &str, target: &[(&str, &str)]) {
        hub.store
            .apply_version(
                NewVersion {
                    name: name.into(),
                    content: content.into(),
                    format: "yaml".into(),
                    target: target
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    origin: "t".into(),
                    applied_by: "op".into(),
                },
                1,
            )
            .unwrap();
        let p = hub.store.pending(name).unwrap().unwrap();
        assert!(hub.auto_release(name, p.version).unwrap());
    }

    fn enroll(hub: &Hub, labels: &[(&str, &str)]) -> String {
        let (id, secret) = hub
            .store
            .create_token(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                now_ms() + 60_000,
                "op",
                now_ms(),
            )
            .unwrap();
        let (_key, csr) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
        let req = EnrollRequest {
            token: format!("{id}.{secret}"),
            csr_der: csr.clone(),
            // Repeating a token label is allowed.
            labels: labels
                .iter()
                .take(1)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            hostname: "box".into(),
            software_version: "0.1.0".into(),
            name: None,
        };
        match hub.enroll(&req) {
            EnrollResponse::Ok { agent_id, .. } => {
                // A reused token is refused.
                assert!(matches!(hub.enroll(&req), EnrollResponse::Refused { .. }));
                agent_id
            }
            EnrollResponse::Refused { reason } => panic!("{reason}"),
        }
    }

    fn csr() -> Vec<u8> {
        outpost_net::pki::generate_agent_key_and_csr().unwrap().1
    }

    #[test]
    fn enrollment_refuses_labels_the_token_does_not_allow() {
        let (_d, hub, _) = hub();
        let (tid, secret) = hub
            .store
            .create_token(
                vec![("site".into(), "a".into())],
                now_ms() + 60_000,
                "op",
                now_ms(),
            )
            .unwrap();
        let mut req = EnrollRequest {
            token: format!("{tid}.{secret}"),
            csr_der: csr(),
            labels: vec![
                ("role".into(), "payments".into()),
                ("site".into(), "b".into()),
            ],
            hostname: "box".into(),
            software_version: "0.1.0".into(),
            name: None,
        };
        match hub.enroll(&req) {
            EnrollResponse::Refused { reason } => {
                assert!(reason.contains("role=payments,site=b"), "{reason}");
                assert!(reason.contains("its labels: site=a"), "{reason}");
            }
            other => panic!("escalation accepted: {other:?}"),
        }
        // Refused: nothing enrolled, the token is still usable.
        assert!(hub.store.agents().unwrap().is_empty());
        req.labels = vec![("site".into(), "a".into())];
        match hub.enroll(&req) {
            EnrollResponse::Ok { labels, .. } => {
                assert_eq!(labels, vec![("site".to_string(), "a".to_string())]);
            }
            EnrollResponse::Refused { reason } => panic!("{reason}"),
        }
    }

    #[test]
    fn enrollment_gives_the_token_labels() {
        let (_d, hub, _) = hub();
        let id = enroll(&hub, &[("site", "a")]);
        assert!(id.starts_with("agent-") && id.len() == 22);
        let rec = hub.store.agent(&id).unwrap();
        assert_eq!(rec.labels, vec![("site".to_string(), "a".to_string())]);
        assert_eq!(rec.cert_fingerprint.len(), 64);
        let bad = EnrollRequest {
            token: "garbage".into(),
            csr_der: vec![],
            labels: vec![],
            hostname: String::new(),
            software_version: String::new(),
            name: None,
        };
        assert!(matches!(hub.enroll(&bad), EnrollResponse::Refused { .. }));
    }

    #[test]
    fn desired_state_follows_target_selectors_and_changes() {
        let (_d, hub, trust) = hub();
        let a = enroll(&hub, &[("site", "a")]);
        let b = enroll(&hub, &[("site", "b")]);
        apply(&hub, "everywhere", "x", &[]);
        apply(&hub, "only-a", "y", &[("site", "a")]);
        let da = hub.desired_for(&a).unwrap();
        let db = hub.desired_for(&b).unwrap();
        let names =
            |d: &[DesiredAssignment]| d.iter().map(|x| x.workflow.clone()).collect::<Vec<_>>();
        assert_eq!(names(&da), vec!["everywhere", "only-a"]);
        assert_eq!(names(&db), vec!["everywhere"]);
        let body: Assignment = minicbor::decode(&da[1].assignment.body_bytes).unwrap();
        assert_eq!(body.agent_id, a);
        let verified: Assignment = trust
            .verify_statement(DOMAIN_ASSIGNMENT, &da[1].assignment)
            .unwrap();
        assert_eq!(verified, body);
        assert!(trust.verify_release(da[1].bundle.as_ref().unwrap()).is_ok());
        assert!(da[1].bundle.is_some());
        // Same state twice: same epochs.
        assert_eq!(hub.desired_for(&a).unwrap(), da);
        // A new version of only-a moves its epoch; `everywhere` stays.
        apply(&hub, "only-a", "y2", &[("site", "a")]);
        let da2 = hub.desired_for(&a).unwrap();
        assert_eq!(da2[0].epoch, da[0].epoch);
        assert_eq!((da2[1].epoch, da2[1].version), (da[1].epoch + 1, 2));
        // Retargeting away from a makes a removal.
        apply(&hub, "only-a", "y3", &[("site", "b")]);
        let da3 = hub.desired_for(&a).unwrap();
        assert!(da3[1].remove && da3[1].bundle.is_none());
        assert_eq!(
            names(&hub.desired_for(&b).unwrap()),
            vec!["everywhere", "only-a"]
        );
        // Revoked agents get nothing.
        let rx = hub.desired_changes();
        hub.revoke_agent("op", &a).unwrap();
        assert!(rx.has_changed().unwrap());
        assert!(hub.desired_for(&a).is_err());
    }

    /// The desired state is computed from a configuration cached between changes
    /// (`store/config.rs`): every kind of change is seen at the next computation.
    #[test]
    fn every_change_of_the_configuration_is_seen_through_the_cache() {
        let (_d, hub, trust) = hub();
        let a = enroll(&hub, &[("site", "a")]);
        let one = |hub: &Hub| {
            let d = hub.desired_for(&a).unwrap();
            assert_eq!(d.len(), 1, "{d:?}");
            d.into_iter().next().unwrap()
        };
        let content = |d: &DesiredAssignment| d.bundle.as_ref().map(|b| b.content.clone());
        apply(&hub, "w", "one", &[]);
        let d1 = one(&hub);
        assert_eq!((d1.version, content(&d1)), (1, Some(b"one".to_vec())));
        assert!(trust.verify_release(d1.bundle.as_ref().unwrap()).is_ok());
        // Same configuration: the same snapshot, the same answer.
        assert!(Arc::ptr_eq(
            &hub.store.config().unwrap(),
            &hub.store.config().unwrap()
        ));
        assert_eq!(one(&hub), d1);
        // A new version waiting for release signatures is not deployed; released, it is.
        hub.store
            .apply_version(
                NewVersion {
                    name: "w".into(),
                    content: b"two".to_vec(),
                    format: "yaml".into(),
                    target: vec![],
                    origin: "t".into(),
                    applied_by: "op".into(),
                },
                1,
            )
            .unwrap();
        assert_eq!(one(&hub).version, 1);
        assert!(hub.auto_release("w", 2).unwrap());
        let d2 = one(&hub);
        assert_eq!((d2.version, content(&d2)), (2, Some(b"two".to_vec())));
        assert!(trust.verify_release(d2.bundle.as_ref().unwrap()).is_ok());
        // Paused and resumed at the hub.
        hub.store.set_paused("w", true, "op", 1).unwrap();
        assert!(one(&hub).paused);
        hub.store.set_paused("w", false, "op", 1).unwrap();
        assert!(!one(&hub).paused);
        // A rollback is a new version with the old content.
        hub.rollback("op", "w", 1).unwrap();
        let d3 = one(&hub);
        assert_eq!((d3.version, content(&d3)), (3, Some(b"one".to_vec())));
        assert_eq!(d3.content_hash, d1.content_hash);
        // A pool decision back to an older version.
        hub.deploy("op", "w", "wf:w", Some(2)).unwrap();
        let d4 = one(&hub);
        assert_eq!((d4.version, content(&d4)), (2, Some(b"two".to_vec())));
        assert!(d4.epoch > d3.epoch);
        // Deleted: a removal.
        hub.delete_workflow("op", "w", false).unwrap();
        let d5 = one(&hub);
        assert!(d5.remove && d5.bundle.is_none());
    }

    #[test]
    fn hub_refuses_a_director_key_that_the_root_does_not_name() {
        let (dir, hub, _) = hub();
        let store = hub.store.clone();
        drop(hub);
        let other = Arc::new(Director::new(SigningKey::generate().unwrap().0));
        let ca = Arc::new(
            Ca::generate("hub CA")
                .unwrap()
                .issue_intermediate("hub intermediate", outpost_net::pki::days(30))
                .unwrap(),
        );
        let conns = Connections::new(std::time::Duration::from_secs(1));
        let r = Hub::new(store, other, None, ca.clone(), conns.clone(), "hub");
        assert!(matches!(r, Err(HubError::Setup(m)) if m.contains("names")));
        // And a store without root metadata does not start at all.
        let empty = Arc::new(Store::open(&dir.path().join("empty.redb")).unwrap());
        let d = Arc::new(Director::new(SigningKey::generate().unwrap().0));
        let r = Hub::new(empty, d, None, ca, conns, "hub");
        assert!(matches!(r, Err(HubError::Setup(m)) if m.contains("no root metadata")));
        drop(dir);
    }

    fn enroll_with_cert(hub: &Hub, labels: &[(&str, &str)]) -> (String, Vec<u8>) {
        let (id, secret) = hub
            .store
            .create_token(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                now_ms() + 60_000,
                "op",
                now_ms(),
            )
            .unwrap();
        let (_key, csr) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
        let req = EnrollRequest {
            token: format!("{id}.{secret}"),
            csr_der: csr.clone(),
            labels: vec![],
            hostname: "box".into(),
            software_version: "0.1.0".into(),
            name: None,
        };
        match hub.enroll(&req) {
            EnrollResponse::Ok {
                agent_id, cert_der, ..
            } => (agent_id, cert_der),
            EnrollResponse::Refused { reason } => panic!("{reason}"),
        }
    }

    #[test]
    fn an_expired_certificate_may_only_renew_and_only_if_current() {
        let (_d, hub, _) = hub();
        let (id, cert) = enroll_with_cert(&hub, &[]);
        let (_, not_after) = outpost_net::pki::cert_validity(&cert).unwrap();
        let (a, renew_only) = hub.authenticate_session(&cert, not_after).unwrap();
        assert_eq!(a.id, id);
        assert!(!renew_only);
        let (_, renew_only) = hub.authenticate_session(&cert, not_after + 1000).unwrap();
        assert!(renew_only);
        // Renewed: the previous certificate still opens a session while valid (the answer may
        // have been lost), not once expired; the new one opens a full session.
        let (_key, csr) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
        let new = hub.renew_agent_cert(&id, &csr).unwrap();
        assert_eq!(
            outpost_net::pki::agent_id_from_cert(&new).as_deref(),
            Some(id.as_str())
        );
        assert!(hub.authenticate_session(&cert, not_after).is_ok());
        assert!(matches!(
            hub.authenticate_session(&cert, not_after + 1000),
            Err(HubError::Refused(m)) if m.contains("renewed already")
        ));
        assert!(!hub.authenticate_session(&new, now_ms()).unwrap().1);
        let rec = hub.store.agent(&id).unwrap();
        assert_eq!(rec.cert_fingerprint, outpost_net::pki::sha256_hex(&new));
        assert_eq!(
            rec.previous_cert_fingerprint,
            Some(outpost_net::pki::sha256_hex(&cert))
        );
        // Revoked: no renewal.
        hub.revoke_agent("op", &id).unwrap();
        assert!(hub.renew_agent_cert(&id, &csr).is_err());
        assert!(hub.authenticate_session(&new, now_ms()).is_err());
    }

    #[test]
    fn session_steps_authenticate_hello_deploy_status() {
        let (_d, hub, _) = hub();
        let (id, cert) = enroll_with_cert(&hub, &[("site", "a")]);
        assert_eq!(hub.authenticate(&cert).unwrap().id, id);
        // A certificate from another CA for the same name is not the one issued.
        let other = Ca::generate("hub CA").unwrap();
        let (_key, csr) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
        let forged = other
            .sign_csr(&csr, &id, crate::config::DEFAULT_AGENT_CERT_LIFETIME)
            .unwrap();
        assert!(matches!(
            hub.authenticate(&forged),
            Err(HubError::Refused(_))
        ));
        let stranger = other
            .sign_csr(
                &csr,
                "agent-ffffffffffffffff",
                crate::config::DEFAULT_AGENT_CERT_LIFETIME,
            )
            .unwrap();
        assert!(
            matches!(hub.authenticate(&stranger), Err(HubError::Refused(m)) if m.contains("unknown"))
        );

        apply(&hub, "w", "one", &[("site", "a")]);
        hub.store.set_paused("w", true, "op", 1).unwrap();
        let start = hub.agent_connected(&id, "0.2.0", vec![], 0).unwrap();
        assert_eq!(start.committed_seq, 0);
        // An agent trusting no root version yet gets the whole chain; one at v1 gets none.
        assert_eq!(start.roots.len(), 1);
        assert!(
            hub.agent_connected(&id, "0.2.0", vec![], 1)
                .unwrap()
                .roots
                .is_empty()
        );
        assert_eq!(start.desired.len(), 1);
        let d = &start.desired[0];
        assert!(d.paused && !d.remove && d.bundle.is_some());
        let (epoch, version) = (d.epoch, d.version);
        hub.deploy_result(&id, "w", version, epoch, None).unwrap();
        assert_eq!(hub.store.agent(&id).unwrap().active[0].epoch, epoch);
        // A new version: a new assignment with its bundle. Retargeting away: a removal.
        apply(&hub, "w", "two", &[("site", "a")]);
        let d = hub.desired_for(&id).unwrap();
        assert!(d[0].version > version && d[0].bundle.is_some() && !d[0].remove);
        apply(&hub, "w", "three", &[("site", "zzz")]);
        let d = hub.desired_for(&id).unwrap();
        assert!(d[0].remove && d[0].bundle.is_none());

        hub.deploy_result(
            &id,
            "w",
            9,
            99,
            Some(&Rejection::StaleVersion {
                offered: 9,
                highest: 10,
            }),
        )
        .unwrap();
        let r = hub.store.deploy_results(&id).unwrap();
        assert!(
            r[0].rejected
                .as_deref()
                .unwrap()
                .contains("stale version 9")
        );

        let entry = OutboxEntry {
            seq: 1,
            event: outpost_common::record::StatusEvent::Missed(
                outpost_common::record::MissedFirings {
                    workflow: "w".into(),
                    count: 1,
                    first_ms: 0,
                    last_ms: 0,
                    reason: "x".into(),
                    recorded_ms: 0,
                },
            ),
        };
        assert_eq!(hub.ingest(&id, std::slice::from_ref(&entry)).unwrap(), 1);
        assert_eq!(hub.ingest(&id, &[entry]).unwrap(), 1);

        hub.revoke_agent("op", &id).unwrap();
        assert!(matches!(hub.authenticate(&cert), Err(HubError::Refused(_))));
        assert!(hub.agent_connected(&id, "0.2.0", vec![], 1).is_err());
    }

    #[test]
    fn token_formats() {
        assert_eq!(parse_token_secret("abc.def"), Some(("abc", "def")));
        assert_eq!(parse_token_secret("abc"), None);
        assert_eq!(parse_token_secret(".x"), None);
        assert_eq!(parse_token_secret("a.b.c"), None);
        assert_eq!(
            format_bootstrap_token("i", "s", "h", "hub.example.com"),
            "opt2.i.s.h.hub.example.com"
        );
        assert_eq!(format_bootstrap_token("i", "s", "h", "a b"), "opt1.i.s.h");
    }
}
