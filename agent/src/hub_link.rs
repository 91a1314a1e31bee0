//! The agent's link to the hub: enrollment, then a session that reconnects forever.
//!
//! The link is a thin driver around `outpost_common::sync::AgentSession` (the sans-IO session
//! logic): it dials the hub over QUIC with mutual TLS, moves frames between the session and the
//! stream, reads the outbox from the store when the session asks for entries, deletes entries
//! only after the hub acknowledged them, and carries deploys, key rotations and operator
//! commands to the driver (which owns workflows, runs and the deploy gate: the only place that
//! checks a deploy and writes the trust and deploy state) and the driver's answers back. The
//! schedule never depends on this link: while it is down, the driver keeps firing, and the
//! outbox grows on disk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use outpost_common::proto::{self, AgentMsg, Command, EnrollRequest, EnrollResponse, Rejection};
use outpost_common::sync::{AgentEvent, AgentSession, AgentSessionConfig};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::Event;
use crate::driver::{DeployError, deploy_gate};
use crate::hub_addresses::HubAddresses;
use crate::identity::{self, Identity};
use crate::store::Store;

/// Short enough that a handshake begun during an outage does not hold up the reconnect for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// The hub refused the enrollment (a bad, used or expired token, a name taken, labels the token
/// does not allow): retrying the same request does not help.
#[derive(Debug, thiserror::Error)]
#[error("the hub refused enrollment: {0}")]
pub struct EnrollRefused(pub String);

/// The hub could not be reached (retrying later may help).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct HubUnreachable(pub anyhow::Error);

/// What `enroll` asks for.
#[derive(Debug, Clone)]
pub struct EnrollArgs {
    pub hub: String,
    pub hub_name: Option<String>,
    pub token: String,
    pub labels: Vec<(String, String)>,
    /// The agent's name (`None`: the hub names it after the host name).
    pub name: Option<String>,
}

/// The identity enrolled, and whether it was there already (same token: nothing was done).
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub identity: Identity,
    pub already: bool,
}

/// What an agent already enrolled says to an enroll request: success when the token is the one
/// it enrolled with (a re-run of the same provisioning step), an error otherwise.
pub fn already_enrolled(id: &Identity, token: &str) -> anyhow::Result<Enrolled> {
    let token = identity::parse_token(token).map_err(anyhow::Error::msg)?;
    if id.token_id.as_deref() == Some(token.id.as_str()) {
        return Ok(Enrolled {
            identity: id.clone(),
            already: true,
        });
    }
    anyhow::bail!(
        "this agent is already enrolled as {} with {} (with another token); use a fresh \
         --state-dir to enroll again",
        id.agent_id,
        id.hub_address
    )
}

/// Enroll this agent with a hub: generate a key pair here, send a CSR with the bootstrap token
/// over a connection that pins the hub CA by the hash in the token, store what comes back. An
/// agent already enrolled with the same token is left as it is ([`Enrolled::already`]).
pub async fn enroll(store: &Store, args: &EnrollArgs) -> anyhow::Result<Enrolled> {
    if let Some(id) = identity::load(store)? {
        return already_enrolled(&id, &args.token);
    }
    let (hub, hub_name, labels) = (
        args.hub.as_str(),
        args.hub_name.as_deref(),
        args.labels.clone(),
    );
    let token = identity::parse_token(&args.token).map_err(anyhow::Error::msg)?;
    // The name the hub's certificate is issued for: --hub-name, else the token's, else the
    // default name of `outpost-hub init` (tokens of older hubs carry no name).
    let hub_name = hub_name
        .or(token.hub_name.as_deref())
        .unwrap_or("outpost-hub");
    let addr = resolve(hub).await.map_err(HubUnreachable)?;
    let (key_pkcs8, csr_der) = outpost_net::pki::generate_agent_key_and_csr()?;
    let (client_cfg, seen_ca) = outpost_net::tls::client_enroll_config(&token.ca_sha256)?;
    let endpoint = outpost_net::endpoint::client_endpoint(unspecified_for(addr))?;
    let qcfg =
        outpost_net::tls::quinn_client_config(client_cfg, outpost_net::tls::Transport::default())?;
    let conn = outpost_net::endpoint::connect(&endpoint, addr, hub_name, qcfg, CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("connecting to the hub at {hub} (name {hub_name})"))
        .map_err(HubUnreachable)?;
    let (send, recv) = conn
        .open_bi()
        .await
        .context("opening the enrollment stream")?;
    let mut send = outpost_net::stream::FramedSend::new(send);
    let mut recv = outpost_net::stream::FramedRecv::new(recv);
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    send.send(&EnrollRequest {
        token: token.credential.clone(),
        csr_der,
        labels: labels.clone(),
        hostname,
        software_version: env!("CARGO_PKG_VERSION").to_string(),
        name: args.name.clone(),
    })
    .await?;
    let resp: EnrollResponse = recv
        .recv()
        .await?
        .context("the hub closed the enrollment stream without answering")?;
    conn.close(0u32.into(), b"enrolled");
    endpoint.wait_idle().await;
    match resp {
        EnrollResponse::Refused { reason } => Err(EnrollRefused(reason).into()),
        EnrollResponse::Ok {
            agent_id,
            cert_der,
            ca_der,
            hub_name: name,
            root,
            labels,
            name: given_name,
            replicas,
        } => {
            let pinned = outpost_net::pki::sha256_hex(&ca_der);
            if pinned != token.ca_sha256 {
                anyhow::bail!(
                    "the hub returned a CA whose SHA-256 ({pinned}) is not the one in the token"
                );
            }
            if let Some(seen) = seen_ca.get()
                && seen != ca_der
            {
                anyhow::bail!("the hub returned a CA other than the one its TLS chain carried");
            }
            let id = Identity {
                agent_id,
                key_pkcs8,
                cert_der,
                ca_der,
                hub_name: name,
                hub_address: hub.to_string(),
                labels,
                enrolled_ms: chrono::Utc::now().timestamp_millis(),
                more_cas: None,
                token_id: Some(token.id.clone()),
                name: given_name,
                replicas: replicas.filter(|r| !r.is_empty()),
            };
            let trust = outpost_common::trust::Trust::new(root)
                .map_err(|e| anyhow::anyhow!("the hub's root metadata is not usable: {e}"))?;
            identity::save_trust(store, &trust)?;
            identity::save(store, &id)?;
            Ok(Enrolled {
                identity: id,
                already: false,
            })
        }
    }
}

async fn resolve(hub: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(hub)
        .await
        .with_context(|| format!("resolving hub address `{hub}` (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("hub address `{hub}` resolves to nothing"))
}

fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv6() {
        "[::]:0".parse().unwrap_or(addr)
    } else {
        "0.0.0.0:0".parse().unwrap_or(addr)
    }
}

/// The hub link's periods.
#[derive(Debug, Clone, Copy)]
pub struct LinkTimes {
    /// `[hub] keep_alive`: keep-alive packets on an idle connection.
    pub keep_alive: Duration,
    /// `[metrics] report_interval`: the agent's telemetry reports.
    pub report_every: Duration,
}

/// What the hub link knows of itself, for `outpost-agent status` (in memory only).
#[derive(Debug, Clone, Default)]
pub struct LinkInfo {
    /// The hub address dialed now (connected to, when `connected_since_ms` is set).
    pub hub: String,
    /// Every address the link may dial, in order (see [`HubAddresses::list`]).
    pub addresses: Vec<String>,
    /// Since when the current session is welcomed (wall clock, ms); `None` while not connected.
    pub connected_since_ms: Option<i64>,
    /// When the last session failed, and why.
    pub last_error: Option<(i64, String)>,
}

/// [`LinkInfo`] shared by the link task (writer) and the driver's `status` (reader).
pub type LinkState = Arc<std::sync::Mutex<LinkInfo>>;

/// A new link state for the hub at `hub`.
pub fn link_state(hub: &str) -> LinkState {
    Arc::new(std::sync::Mutex::new(LinkInfo {
        hub: hub.to_string(),
        ..LinkInfo::default()
    }))
}

fn update_link(state: &LinkState, f: impl FnOnce(&mut LinkInfo)) {
    if let Ok(mut l) = state.lock() {
        f(&mut l);
    }
}

/// When what an outbox event reports happened (wall clock, ms), where the event says.
pub fn event_ms(e: &outpost_common::record::StatusEvent) -> Option<i64> {
    use outpost_common::record::StatusEvent;
    match e {
        StatusEvent::Run(r) => Some(r.ended_ms.or(r.started_ms).unwrap_or(r.created_ms)),
        StatusEvent::Task(t) => Some(t.updated_ms),
        StatusEvent::Missed(m) => Some(m.last_ms),
        StatusEvent::Deadline(d) => Some(d.detected_ms),
        StatusEvent::Reverted(r) => Some(r.at_ms),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Run the session with the hub until `shutdown` flips; reconnect with backoff after failures,
/// to the next of the hub's addresses (`configured`: `[hub] address`, tried first; then the
/// replicas the hub listed, or the address enrolled at). `state` shows the link in `status`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    id: Identity,
    configured: Option<String>,
    times: LinkTimes,
    store: Arc<Store>,
    driver: mpsc::UnboundedSender<Event>,
    mut outbox: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
    state: LinkState,
) {
    let backoff = outpost_net::backoff::Backoff {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(30),
    };
    let mut addresses = HubAddresses::new(
        configured,
        &id.hub_address,
        id.replicas.as_deref().unwrap_or_default(),
        backoff,
    );
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = tokio::time::Instant::now();
        let mut welcomed = false;
        // The identity as stored now: a certificate renewed in the last session is used from
        // this connection on.
        let id = match identity::load(&store) {
            Ok(Some(current)) => current,
            Ok(None) => id.clone(),
            Err(e) => {
                tracing::warn!("reading the agent identity: {e}; using the one loaded at start");
                id.clone()
            }
        };
        // A Welcome of the last session may have brought new replica addresses.
        addresses.update(&id.hub_address, id.replicas.as_deref().unwrap_or_default());
        let addr = addresses.current();
        update_link(&state, |l| {
            l.hub.clone_from(&addr);
            l.addresses = addresses.list();
        });
        let result = session(
            &id,
            &addr,
            &mut addresses,
            times,
            &store,
            &driver,
            &mut outbox,
            &mut shutdown,
            &mut welcomed,
            &state,
        )
        .await;
        let now = chrono::Utc::now().timestamp_millis();
        match result {
            Ok(()) => {
                update_link(&state, |l| l.connected_since_ms = None);
                return;
            }
            Err(e) => {
                tracing::warn!("hub link: {e:#}");
                update_link(&state, |l| {
                    l.connected_since_ms = None;
                    l.last_error = Some((now, format!("{e:#}")));
                });
            }
        }
        // The next address, after the backoff; a session the hub welcomed (or one that lasted a
        // while) resets the backoff bound (docs/protocol.md, "Liveness and reconnect").
        let delay = addresses.failed(welcomed, started.elapsed(), rand::random::<f64>());
        if addresses.current() != addr {
            tracing::info!(from = %addr, to = %addresses.current(), ?delay, "moving to the next hub address");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One connection's life. `Ok(())` only on shutdown.
#[allow(clippy::too_many_arguments)]
async fn session(
    id: &Identity,
    hub: &str,
    addresses: &mut HubAddresses,
    LinkTimes {
        keep_alive,
        report_every,
    }: LinkTimes,
    store: &Arc<Store>,
    driver: &mpsc::UnboundedSender<Event>,
    outbox: &mut watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
    welcomed: &mut bool,
    state: &LinkState,
) -> anyhow::Result<()> {
    let addr = resolve(hub).await?;
    let tls = outpost_net::tls::client_session_config_pins(
        &id.pinned_cas(),
        std::slice::from_ref(&id.cert_der),
        &id.key_pkcs8,
    )?;
    let transport = outpost_net::tls::Transport {
        keep_alive,
        ..outpost_net::tls::Transport::default()
    };
    let qcfg = outpost_net::tls::quinn_client_config(tls, transport)?;
    let endpoint = outpost_net::endpoint::client_endpoint(unspecified_for(addr))?;
    let conn = outpost_net::endpoint::connect(&endpoint, addr, &id.hub_name, qcfg, CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("connecting to {hub}"))?;
    let (send, recv) = conn.open_bi().await.context("opening the session stream")?;
    let mut send = outpost_net::stream::FramedSend::new(send);
    let mut recv = outpost_net::stream::FramedRecv::new(recv);

    let active = deploy_gate::active_workflows(store)?;
    let trust =
        identity::load_trust(store)?.context("no signing trust stored: re-enroll this agent")?;
    let mut sess = AgentSession::new(AgentSessionConfig {
        agent_id: id.agent_id.clone(),
        software_version: env!("CARGO_PKG_VERSION").to_string(),
        labels: id.labels.clone(),
        active,
        acked_seq: store.acked_seq()?,
        last_seq: store.last_seq()?,
        trust,
        session: rand::random::<[u8; proto::SESSION_NONCE_LEN]>().to_vec(),
        window: 4,
        batch: proto::MAX_BATCH,
    });
    sess.set_telemetry_interval(i64::try_from(report_every.as_millis()).unwrap_or(i64::MAX));
    tracing::info!(%hub, agent = %id.agent_id, "connected to the hub");
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<AgentMsg>();
    // Certificate renewal: due at two thirds of the certificate's lifetime; the key of the
    // request in flight (at most one per session).
    let mut renew_due = renewal_due(&id.cert_der);
    let mut renewing: Option<Vec<u8>> = None;
    loop {
        *welcomed |= sess.is_welcomed();
        if sess.is_welcomed() {
            update_link(state, |l| {
                l.connected_since_ms
                    .get_or_insert_with(|| chrono::Utc::now().timestamp_millis());
            });
        }
        // Everything the session wants to send, then everything it wants read.
        while let Some(m) = sess.poll_transmit() {
            send.send(&m).await?;
        }
        if let Some((after, limit)) = sess.poll_need() {
            let s = store.clone();
            let entries =
                tokio::task::spawn_blocking(move || s.outbox_after(after, limit)).await??;
            sess.handle_entries(entries);
            continue;
        }
        while let Some(ev) = sess.poll_event() {
            match ev {
                AgentEvent::RenewRequired(reason) => {
                    tracing::warn!("{reason}");
                    request_renewal(&mut sess, &mut renewing)?;
                }
                AgentEvent::Certificate(cert) => {
                    let welcomed_now = sess.is_welcomed();
                    store_renewed(id, store, cert, renewing.take()).await?;
                    // The new certificate is this session's business no more.
                    renew_due = None;
                    if !welcomed_now {
                        // A renew-only session has done its job: reconnect with the new
                        // certificate at once.
                        conn.close(0u32.into(), b"certificate renewed");
                        *welcomed = true;
                        anyhow::bail!("certificate renewed; reconnecting with it");
                    }
                }
                AgentEvent::CaRoots(roots) => {
                    let pinned = pin_roots(id, store, roots).await?;
                    sess.send_ca_roots_pinned(pinned);
                }
                AgentEvent::Replicas(list) => {
                    // Kept durably first; dialed from the next connection on.
                    let s = store.clone();
                    let shown = list.join(", ");
                    let saved =
                        tokio::task::spawn_blocking(move || identity::save_replicas(&s, list))
                            .await??;
                    if saved && let Some(current) = identity::load(store)? {
                        tracing::info!(replicas = %shown, "the hub listed new replica addresses");
                        addresses.update(
                            &current.hub_address,
                            current.replicas.as_deref().unwrap_or_default(),
                        );
                        update_link(state, |l| l.addresses = addresses.list());
                    }
                }
                ev => handle_event(ev, store, driver, &mut sess, &ctl_tx).await?,
            }
        }
        if !sess.is_closed() {
            while let Some(m) = sess.poll_transmit() {
                send.send(&m).await?;
            }
        }
        let until_due = renew_due
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or(Duration::MAX);
        let due_now = sess.is_welcomed() && renewing.is_none() && renew_due.is_some();
        let local_ms = chrono::Utc::now().timestamp_millis();
        let report_in = sess.telemetry_due(local_ms).map(|due| {
            Duration::from_millis(u64::try_from(due.saturating_sub(local_ms)).unwrap_or(0))
        });
        tokio::select! {
            _ = tokio::time::sleep(report_in.unwrap_or(Duration::MAX)), if report_in.is_some() => {
                let (tx, rx) = oneshot::channel();
                driver.send(Event::Telemetry(tx)).map_err(|_| anyhow::anyhow!("the agent driver stopped"))?;
                let t = rx.await.context("the agent driver stopped")?;
                sess.send_telemetry(t, chrono::Utc::now().timestamp_millis());
            }
            _ = tokio::time::sleep(until_due), if due_now => {
                tracing::info!("the agent certificate is due for renewal (two thirds of its lifetime)");
                request_renewal(&mut sess, &mut renewing)?;
            }
            frame = recv.recv_frame() => {
                let Some(bytes) = frame? else { anyhow::bail!("the hub closed the session") };
                match outpost_common::frame::decode_hub_msg(&bytes) {
                    Ok(Some(msg)) => sess.handle_hub(msg, chrono::Utc::now().timestamp_millis()).map_err(|e| anyhow::anyhow!("protocol error from the hub: {e:?}"))?,
                    Ok(None) => tracing::warn!("skipping a message of a type this agent does not know (newer hub?)"),
                    Err(e) => anyhow::bail!("malformed message from the hub: {e}"),
                }
            }
            m = ctl_rx.recv() => {
                if let Some(m) = m {
                    send.send(&m).await?;
                }
            }
            r = outbox.changed() => {
                if r.is_ok() {
                    let last = *outbox.borrow();
                    sess.handle_outbox_grew(last);
                }
            }
            _ = shutdown.changed() => {
                conn.close(0u32.into(), b"agent shutting down");
                return Ok(());
            }
            _ = conn.closed() => {
                anyhow::bail!("connection lost: {}", conn.close_reason().map(|r| r.to_string()).unwrap_or_default());
            }
        }
    }
}

/// When (on the tokio clock) the certificate is due for renewal: two thirds into its
/// lifetime, measured on the wall clock now.
/// `None` if the certificate's validity does not parse.
fn renewal_due(cert_der: &[u8]) -> Option<tokio::time::Instant> {
    let due = outpost_net::pki::renewal_due_ms(cert_der)?;
    let wait = due
        .saturating_sub(chrono::Utc::now().timestamp_millis())
        .max(0);
    Some(tokio::time::Instant::now() + Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// Make a fresh key and CSR and ask the hub for a certificate (once per session).
fn request_renewal(sess: &mut AgentSession, renewing: &mut Option<Vec<u8>>) -> anyhow::Result<()> {
    if renewing.is_some() {
        return Ok(());
    }
    let (key, csr) = outpost_net::pki::generate_agent_key_and_csr()?;
    sess.send_renew(csr);
    *renewing = Some(key);
    Ok(())
}

/// Pin the new root CAs whose proof verifies against a root pinned already (stored durably
/// before the answer); returns the SHA-256 of every root pinned now. A root without a valid
/// proof is ignored, loudly.
async fn pin_roots(
    id: &Identity,
    store: &Arc<Store>,
    roots: Vec<proto::CaRoot>,
) -> anyhow::Result<Vec<String>> {
    let s = store.clone();
    let current = identity::load(store)?.unwrap_or_else(|| id.clone());
    let mut pinned = current.pinned_cas();
    let mut added = false;
    for r in roots {
        if pinned.contains(&r.cert_der) {
            continue;
        }
        if outpost_net::pki::proves_successor(&r.cert_der, &r.cross_der, &pinned) {
            tracing::info!(
                sha256 = %outpost_net::pki::sha256_hex(&r.cert_der),
                "pinning a new root CA (proven by a pinned one)"
            );
            pinned.push(r.cert_der);
            added = true;
        } else {
            tracing::warn!(
                sha256 = %outpost_net::pki::sha256_hex(&r.cert_der),
                "refusing a root CA without a valid proof from a pinned root"
            );
        }
    }
    if added {
        let mut updated = current;
        updated.more_cas = Some(
            pinned[1..]
                .iter()
                .map(|c| minicbor::bytes::ByteVec::from(c.clone()))
                .collect(),
        );
        tokio::task::spawn_blocking(move || identity::save(&s, &updated)).await??;
    }
    Ok(pinned
        .iter()
        .map(|c| outpost_net::pki::sha256_hex(c))
        .collect())
}

/// Store a renewed certificate with the key it was requested for, durably, in one store
/// transaction (the old certificate and key are replaced together); it is used from the next
/// connection on. A certificate for another key or agent is refused and changes nothing.
async fn store_renewed(
    id: &Identity,
    store: &Arc<Store>,
    cert: Vec<u8>,
    key: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let Some(key) = key else {
        anyhow::bail!("the hub sent a certificate this agent did not ask for");
    };
    if !outpost_net::pki::cert_matches_key(&cert, &key)
        || outpost_net::pki::agent_id_from_cert(&cert).as_deref() != Some(id.agent_id.as_str())
    {
        anyhow::bail!("the hub sent a certificate that is not for this agent's new key");
    }
    // The stored identity: roots pinned in this session stay pinned.
    let mut renewed = identity::load(store)?.unwrap_or_else(|| id.clone());
    renewed.cert_der = cert;
    renewed.key_pkcs8 = key;
    let s = store.clone();
    tokio::task::spawn_blocking(move || identity::save(&s, &renewed)).await??;
    tracing::info!("stored the renewed agent certificate; it is used from the next connection");
    Ok(())
}

async fn handle_event(
    ev: AgentEvent,
    store: &Arc<Store>,
    driver: &mpsc::UnboundedSender<Event>,
    sess: &mut AgentSession,
    ctl_tx: &mpsc::UnboundedSender<AgentMsg>,
) -> anyhow::Result<()> {
    match ev {
        AgentEvent::Acked(seq) => {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.ack_outbox(seq)).await??;
        }
        AgentEvent::Deploy {
            assignment,
            bundle,
            snapshot,
        } => {
            // The driver's deploy gate checks, decides and commits; the link only carries the
            // deploy there and the verdict back.
            let (reply, verdict) = oneshot::channel();
            let sent = driver.send(Event::HubDeploy {
                assignment,
                bundle,
                snapshot,
                reply,
            });
            let verdict = match (sent, verdict.await) {
                (Ok(()), Ok(v)) => v,
                _ => anyhow::bail!("the agent is shutting down"),
            };
            let rejected = deploy_answer(verdict.result)?;
            sess.send_deploy_result(verdict.workflow, verdict.version, verdict.epoch, rejected);
        }
        AgentEvent::Command {
            id: cmd_id,
            command,
        } => {
            let tx = ctl_tx.clone();
            let driver = driver.clone();
            tokio::spawn(async move {
                for m in run_command(cmd_id, command, &driver).await {
                    if tx.send(m).is_err() {
                        break;
                    }
                }
            });
        }
        AgentEvent::Roots {
            trust,
            reset_counters,
        } => {
            // The deploy gate stores the new root before the driver handles anything after it.
            let _ = driver.send(Event::HubRoots {
                trust,
                reset_counters,
            });
        }
        AgentEvent::Fresh {
            hub_ms,
            local_ms,
            expires_ms,
        } => {
            let _ = driver.send(Event::HubFresh(outpost_agent_core::deploy::DirectorView {
                hub_ms,
                local_ms,
                expires_ms,
            }));
        }
        AgentEvent::Paused(list) => {
            let _ = driver.send(Event::HubPaused(list));
        }
        // Handled by the session loop.
        AgentEvent::Replicas(_) => {}
        AgentEvent::Goodbye(reason) => anyhow::bail!("the hub ended the session: {reason}"),
        // Handled by the session loop.
        AgentEvent::RenewRequired(_) | AgentEvent::Certificate(_) | AgentEvent::CaRoots(_) => {}
        AgentEvent::Resend {
            hub_acked,
            agent_acked,
        } => {
            let s = store.clone();
            let info = tokio::task::spawn_blocking(move || s.requeue_held(hub_acked, agent_acked))
                .await??;
            tracing::warn!(
                hub_acked,
                agent_acked,
                last_seq = info.last_seq,
                "the hub lost status it had acknowledged (restored from an older backup?): sending again every run, task and missed firing this agent still holds"
            );
            sess.handle_resent(info.last_seq);
        }
        AgentEvent::SeqMismatch {
            hub_acked,
            agent_acked,
            agent_last,
        } => {
            tracing::error!(
                hub_acked,
                agent_acked,
                agent_last,
                "the hub's acknowledged seq does not match this agent's outbox (hub store restored from an old backup, or this agent's store replaced?)"
            );
        }
    }
    Ok(())
}

/// What the hub hears of a deploy: `None`, activated; a rejection of the deploy itself. A
/// local store fault is not the deploy's fault and has no rejection reason: it ends the session
/// (an error), and after the reconnect the hub, starting from this agent's report again, sends
/// the deploy again (docs/protocol.md, "Desired state").
fn deploy_answer(result: Result<(), DeployError>) -> anyhow::Result<Option<Rejection>> {
    match result {
        Ok(()) => Ok(None),
        Err(DeployError::Rejected(r)) => Ok(Some(r)),
        Err(DeployError::Store(m)) => {
            anyhow::bail!("cannot take a deploy: the agent's store failed ({m}); reconnecting")
        }
    }
}

/// Carry out an operator command through the driver's control path; the replies to send.
async fn run_command(
    id: u64,
    command: Command,
    driver: &mpsc::UnboundedSender<Event>,
) -> Vec<AgentMsg> {
    use crate::control::{Request, Response};
    let req = match &command {
        Command::Trigger { workflow, params } => Request::Trigger {
            workflow: workflow.clone(),
            params: params.clone(),
        },
        Command::Pause { workflow } => Request::Pause {
            workflow: workflow.clone(),
        },
        Command::Resume { workflow } => Request::Resume {
            workflow: workflow.clone(),
        },
        Command::Cancel { run_id } => Request::Cancel {
            run_id: run_id.clone(),
        },
        Command::FetchLog {
            run_id,
            task,
            attempt,
        } => Request::Logs {
            run_id: run_id.clone(),
            task: task.clone(),
            attempt: *attempt,
        },
        Command::Retry {
            run_id,
            task,
            downstream,
            if_ended_ms,
        } => Request::Retry {
            run_id: run_id.clone(),
            task: task.clone(),
            downstream: *downstream,
            if_ended_ms: *if_ended_ms,
        },
        Command::Backfill {
            workflow,
            instants,
            max_active,
        } => Request::Backfill {
            workflow: workflow.clone(),
            instants: instants.clone(),
            max_active: *max_active,
        },
        Command::TriggerAt {
            workflow,
            params,
            at_ms,
        } => Request::TriggerAt {
            workflow: workflow.clone(),
            params: params.clone(),
            at_ms: *at_ms,
        },
    };
    let (tx, rx) = oneshot::channel();
    if driver.send(Event::Control(req, tx)).is_err() {
        return vec![result(id, false, "the agent is shutting down".into(), None)];
    }
    let resp = match rx.await {
        Ok(r) => r,
        Err(_) => return vec![result(id, false, "the agent is shutting down".into(), None)],
    };
    match resp {
        Response::Error { message } => vec![result(id, false, message, None)],
        Response::Triggered { run_id } => vec![result(
            id,
            true,
            format!("triggered {run_id}"),
            Some(run_id),
        )],
        Response::Log { path, .. } => {
            let data = match crate::exec::read_log(std::path::Path::new(&path), 16 * 1024 * 1024) {
                Ok(d) => d,
                Err(e) => return vec![result(id, false, format!("reading {path}: {e}"), None)],
            };
            let mut out: Vec<AgentMsg> = data
                .chunks(proto::LOG_CHUNK)
                .map(|c| AgentMsg::LogChunk {
                    id,
                    data: c.to_vec(),
                    eof: false,
                })
                .collect();
            out.push(AgentMsg::LogChunk {
                id,
                data: Vec::new(),
                eof: true,
            });
            out
        }
        Response::Ok { message } => vec![result(id, true, message, None)],
        _ => vec![result(id, true, "ok".into(), None)],
    }
}

fn result(id: u64, ok: bool, message: String, run_id: Option<String>) -> AgentMsg {
    AgentMsg::CommandResult {
        id,
        ok,
        message,
        run_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deploy this agent could not store is not the deploy's fault: the hub is not told it is
    /// malformed; the session ends instead, and the hub sends the deploy again after the
    /// reconnect (it starts from the agent's report, docs/protocol.md).
    #[test]
    fn a_local_store_fault_is_not_reported_as_a_rejection() {
        assert_eq!(deploy_answer(Ok(())).unwrap(), None);
        assert_eq!(
            deploy_answer(Err(DeployError::Rejected(Rejection::Mismatch))).unwrap(),
            Some(Rejection::Mismatch)
        );
        let fault = deploy_answer(Err(DeployError::Store("disk gone".into())));
        let e = fault.expect_err("a store fault ends the session");
        assert!(e.to_string().contains("disk gone"), "{e}");
    }

    fn identity_of(ca: &outpost_net::pki::Ca) -> (Identity, Vec<u8>) {
        let int = ca
            .issue_intermediate("int", outpost_net::pki::days(30))
            .unwrap();
        let (key, csr) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
        let cert = int
            .sign_csr(&csr, "agent-1", outpost_net::pki::days(1))
            .unwrap();
        let id = Identity {
            agent_id: "agent-1".into(),
            key_pkcs8: key,
            cert_der: cert,
            ca_der: ca.cert_der().to_vec(),
            hub_name: "hub".into(),
            hub_address: "127.0.0.1:1".into(),
            labels: vec![],
            enrolled_ms: 0,
            more_cas: None,
            token_id: None,
            name: None,
            replicas: None,
        };
        (id, int.cert_der().to_vec())
    }

    /// A renewed certificate is stored only if it is for the new key and this agent; roots are
    /// pinned only with a proof from a pinned root; both survive a reopen of the store.
    #[tokio::test]
    async fn renewed_certificates_and_new_roots_are_checked_before_they_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        let store = Arc::new(Store::open(&path).unwrap());
        let root = outpost_net::pki::Ca::generate("root").unwrap();
        let (id, _) = identity_of(&root);
        identity::save(&store, &id).unwrap();
        let int = root
            .issue_intermediate("int", outpost_net::pki::days(30))
            .unwrap();
        let (new_key, csr) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
        let for_other_agent = int
            .sign_csr(&csr, "agent-2", outpost_net::pki::days(1))
            .unwrap();
        let (_other_key, other_csr) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
        let for_other_key = int
            .sign_csr(&other_csr, "agent-1", outpost_net::pki::days(1))
            .unwrap();
        let good = int
            .sign_csr(&csr, "agent-1", outpost_net::pki::days(1))
            .unwrap();
        for bad in [for_other_agent, for_other_key] {
            assert!(
                store_renewed(&id, &store, bad, Some(new_key.clone()))
                    .await
                    .is_err()
            );
        }
        assert!(
            store_renewed(&id, &store, good.clone(), None)
                .await
                .is_err()
        );
        assert_eq!(identity::load(&store).unwrap().unwrap(), id);
        store_renewed(&id, &store, good.clone(), Some(new_key.clone()))
            .await
            .unwrap();

        // Roots: a proven successor is pinned, a forged one is not.
        let new_root = outpost_net::pki::Ca::generate("root 2").unwrap();
        let rogue = outpost_net::pki::Ca::generate("rogue").unwrap();
        let other = outpost_net::pki::Ca::generate("root 3").unwrap();
        let roots = vec![
            proto::CaRoot {
                cert_der: new_root.cert_der().to_vec(),
                cross_der: root.cross_sign(&new_root).unwrap(),
            },
            proto::CaRoot {
                cert_der: other.cert_der().to_vec(),
                cross_der: rogue.cross_sign(&other).unwrap(),
            },
        ];
        let pinned = pin_roots(&id, &store, roots).await.unwrap();
        assert_eq!(
            pinned,
            vec![
                outpost_net::pki::sha256_hex(root.cert_der()),
                outpost_net::pki::sha256_hex(new_root.cert_der())
            ]
        );
        drop(store);
        let store = Store::open(&path).unwrap();
        let stored = identity::load(&store).unwrap().unwrap();
        assert_eq!(stored.cert_der, good);
        assert_eq!(stored.key_pkcs8, new_key);
        assert_eq!(
            stored.pinned_cas(),
            vec![root.cert_der().to_vec(), new_root.cert_der().to_vec()]
        );
    }
}
