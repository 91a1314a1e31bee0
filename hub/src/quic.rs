//! The hub's QUIC endpoint: enrollment connections and agent sessions.
//!
//! A thin driver around `outpost_common::sync::HubSession` (the sans-IO session logic). A
//! connection without a client certificate may carry exactly one enrollment request. A
//! connection with one (verified against the hub CA by rustls) is an agent session: the agent
//! must be known and not revoked, and its Hello must name the agent its certificate names.
//! Status batches are committed to the store before they are acknowledged. A malformed or
//! oversized frame closes that connection, never the process.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use outpost_common::proto::{EnrollResponse, HubMsg};
use outpost_common::sync::{Desired, HubEvent, HubSession, HubState};
use outpost_net::stream::{FramedRecv, FramedSend};
use tokio::sync::watch;

use crate::config::HubConfig;
use crate::gateway::{Connections, Liveness, SessionMsg};
use crate::hub::{Hub, now_ms};
use crate::ops::sessions::SessionStart;
use crate::store::sessions::SessionLease;

/// Connection close codes (application level).
const CLOSE_OK: u32 = 0;
const CLOSE_PROTOCOL: u32 = 1;
const CLOSE_REFUSED: u32 = 2;

/// Bind the QUIC endpoint and serve until `shutdown` flips.
pub async fn serve(
    hub: Arc<Hub>,
    conns: Arc<Connections>,
    config: &HubConfig,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // The hub's own certificate renews itself (from the intermediate CA) when due, at start and
    // while serving: the new one is presented from the next handshake on.
    let policy = hub.cert_policy();
    if let Some(_renewed) =
        crate::certs::renew_server_cert_if_due(config, hub.ca(), policy.server_lifetime, now_ms())?
    {
        tracing::info!(cert = %config.cert.display(), "renewed the hub's server certificate");
    }
    let chain = outpost_net::pki::read_certs_file(&config.cert, "the hub's certificate chain")?;
    let key = outpost_net::pki::read_key_file(&config.key, "the hub's TLS key")?;
    let server_cert = Arc::new(outpost_net::tls::ServerCert::new(&chain, &key)?);
    hub.set_server_leaf(server_cert.leaf());
    let client_auth = crate::certs::client_auth(config, hub.ca())?;
    let tls = outpost_net::tls::server_config_with(server_cert.clone(), &client_auth)?;
    tokio::spawn(crate::certs::maintain(
        hub.clone(),
        config.clone(),
        server_cert,
        shutdown.clone(),
    ));
    // An agent is offline once its connection has been silent (no packet, keep-alives included)
    // for `offline_after`: the connection then times out and its session ends.
    let idle = config.max_idle_timeout.min(config.offline_after);
    let transport = outpost_net::tls::Transport {
        keep_alive: config.keep_alive_interval.min(idle / 3),
        idle_timeout: idle,
        ..outpost_net::tls::Transport::default()
    };
    let qcfg = outpost_net::tls::quinn_server_config(tls, transport)?;
    // The stateless-reset key comes from the TLS key, so it survives a restart: agents of a hub
    // that was killed and restarted get a reset on their next packet and reconnect at once.
    let endpoint =
        outpost_net::endpoint::server_endpoint_with_reset_key(config.quic_listen, qcfg, &key)
            .with_context(|| format!("binding the QUIC endpoint on {}", config.quic_listen))?;
    tracing::info!(addr = %config.quic_listen, "accepting agents over QUIC (ALPN outpost/2)");
    // A live agent answers the hub's keep-alives: within this window a live session's
    // connection receives a packet (see `alive`). The session records in the store are renewed
    // every keep-alive interval while their connections are alive.
    let renew_every = transport.keep_alive.max(Duration::from_millis(500));
    let leases = Arc::new(Leases {
        // Stable across restarts of this hub process (a hub killed and restarted finds its own
        // records and replaces them), distinct between replicas (host and listen address).
        process: format!(
            "{}/{}#",
            rustix::system::uname().nodename().to_string_lossy(),
            config.quic_listen
        ),
        probe_window: transport.keep_alive + Duration::from_secs(1),
        stale_after: renew_every * 3 + Duration::from_secs(1),
        next: std::sync::atomic::AtomicU64::new(1),
        live: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    tokio::spawn(renew_leases(
        hub.clone(),
        leases.clone(),
        renew_every,
        shutdown.clone(),
    ));
    loop {
        tokio::select! {
            inc = endpoint.accept() => {
                let Some(inc) = inc else { break };
                let hub = hub.clone();
                let conns = conns.clone();
                let leases = leases.clone();
                tokio::spawn(async move {
                    let remote = inc.remote_address();
                    match inc.await {
                        Ok(conn) => {
                            if let Err(e) = connection(hub, conns, conn, leases).await {
                                tracing::warn!(%remote, "connection ended: {e:#}");
                            }
                        }
                        Err(e) => tracing::debug!(%remote, "handshake failed: {e}"),
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    endpoint.close(CLOSE_OK.into(), b"hub shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(())
}

async fn connection(
    hub: Arc<Hub>,
    conns: Arc<Connections>,
    conn: quinn::Connection,
    leases: Arc<Leases>,
) -> anyhow::Result<()> {
    match outpost_net::tls::peer_certs(&conn).and_then(|c| c.into_iter().next()) {
        None => enrollment(hub, conn).await,
        Some(leaf) => {
            // Known, not revoked, and holding the certificate the hub issued to it.
            let h = hub.clone();
            let der = leaf.to_vec();
            // An expired certificate got through the handshake only within the grace: that
            // session may do nothing but renew it.
            match blocking(move || h.authenticate_session(&der, now_ms())).await? {
                Ok((agent, renew_only)) => {
                    session(hub, conns, conn, agent.id, leases, renew_only).await
                }
                Err(e) => {
                    // The reason travels in the close frame: the agent logs why it is refused.
                    conn.close(CLOSE_REFUSED.into(), close_reason(&e.to_string()));
                    anyhow::bail!("session refused: {e}");
                }
            }
        }
    }
}

/// One enrollment request, one answer, then the connection closes.
async fn enrollment(hub: Arc<Hub>, conn: quinn::Connection) -> anyhow::Result<()> {
    let accepted = tokio::time::timeout(
        Duration::from_secs(10),
        outpost_net::stream::accept_bi(&conn),
    )
    .await;
    let (mut send, mut recv) = match accepted {
        Ok(r) => r?,
        Err(_) => {
            conn.close(CLOSE_PROTOCOL.into(), b"no enrollment request");
            anyhow::bail!("enrollment connection sent nothing");
        }
    };
    let bytes = match recv.recv_frame().await {
        Ok(Some(b)) => b,
        Ok(None) => anyhow::bail!("enrollment stream ended without a request"),
        Err(e) => {
            conn.close(CLOSE_PROTOCOL.into(), b"bad frame");
            return Err(e).context("enrollment frame");
        }
    };
    let req = match outpost_common::frame::decode_enroll_request(&bytes) {
        Ok(Some(r)) => r,
        Ok(None) | Err(_) => {
            conn.close(CLOSE_PROTOCOL.into(), b"malformed enrollment request");
            anyhow::bail!("malformed enrollment request");
        }
    };
    let h = hub.clone();
    let resp = tokio::task::spawn_blocking(move || h.enroll(&req)).await?;
    match &resp {
        EnrollResponse::Ok { agent_id, .. } => tracing::info!(agent = %agent_id, "agent enrolled"),
        EnrollResponse::Refused { reason } => tracing::warn!("enrollment refused: {reason}"),
    }
    send.send(&resp).await?;
    send.finish()?;
    // Let the answer reach the agent; it closes the connection.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    Ok(())
}

fn to_desired(d: Vec<crate::hub::DesiredAssignment>) -> Vec<Desired> {
    d.into_iter()
        .map(|d| Desired {
            workflow: d.workflow,
            version: if d.remove { 0 } else { d.version },
            epoch: d.epoch,
            content_hash: d.content_hash,
            assignment: d.assignment,
            bundle: d.bundle,
        })
        .collect()
}

fn paused_of(d: &[crate::hub::DesiredAssignment]) -> Vec<String> {
    d.iter()
        .filter(|d| d.paused && !d.remove)
        .map(|d| d.workflow.clone())
        .collect()
}

/// A connection close reason: the text, cut to fit in one packet's CONNECTION_CLOSE frame.
fn close_reason(text: &str) -> &[u8] {
    const MAX: usize = 200;
    let mut end = text.len().min(MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text.as_bytes()[..end]
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// A session's QUIC connection as the registry sees it.
struct QuicLiveness(quinn::Connection);

impl Liveness for QuicLiveness {
    fn received(&self) -> u64 {
        self.0.stats().udp_rx.datagrams
    }
    fn is_closed(&self) -> bool {
        self.0.close_reason().is_some()
    }
    fn peer(&self) -> String {
        self.0.remote_address().to_string()
    }
}

/// Whether the session behind `old` is alive. Both ends send keep-alives after a keep-alive
/// interval of silence and a live peer acknowledges them, so a live session's connection receives
/// a datagram within `window`; the connection of a dead agent (killed, restarted) receives
/// nothing, or is already closed.
async fn alive(old: &dyn Liveness, window: Duration) -> bool {
    let start = old.received();
    let deadline = tokio::time::Instant::now() + window;
    loop {
        if old.is_closed() {
            return false;
        }
        if old.received() > start {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sessions this hub process holds, and the rule's timings (see `session`).
struct Leases {
    /// This process's prefix of session holders (`<host>/<quic listen address>#`).
    process: String,
    /// How long to watch an existing session's connection for a packet.
    probe_window: Duration,
    /// A session record of another process not renewed for this long is dead.
    stale_after: Duration,
    next: std::sync::atomic::AtomicU64,
    live: std::sync::Mutex<std::collections::HashMap<String, LiveSession>>,
}

struct LiveSession {
    holder: String,
    conn: quinn::Connection,
    /// Datagrams received at the last renewal.
    seen: u64,
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, LiveSession>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every `every`: renew, in one store transaction, the records of this process's sessions
/// whose connections received packets since the last turn (alive). A dead connection's record
/// is not renewed, so another hub process may take the agent's next session over.
async fn renew_leases(
    hub: Arc<Hub>,
    leases: Arc<Leases>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let alive: Vec<(String, String)> = leases
            .lock()
            .iter_mut()
            .filter_map(|(agent, l)| {
                let rx = l.conn.stats().udp_rx.datagrams;
                let fresh = rx > l.seen && l.conn.close_reason().is_none();
                l.seen = rx;
                fresh.then(|| (agent.clone(), l.holder.clone()))
            })
            .collect();
        let h = hub.clone();
        match blocking(move || h.renew_sessions(&alive)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("renewing session records: {e}"),
            Err(e) => tracing::warn!("renewing session records: {e}"),
        }
    }
}

/// How often an open session records the agent's last contact in the store.
const LAST_CONTACT_EVERY: Duration = Duration::from_secs(30);
/// A clock offset above this is logged as a warning (schedules fire on the agent's clock).
const CLOCK_OFFSET_WARN_MS: i64 = 2_000;

/// How long a command signed for a session stays valid (the agent refuses it after).
const COMMAND_TTL_MS: i64 = 60_000;

/// How often a session checks whether its snapshot is due for re-signing (at half its
/// lifetime): a quarter of the lifetime, between 100 ms and a minute.
fn snapshot_tick(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// An agent's session.
async fn session(
    hub: Arc<Hub>,
    conns: Arc<Connections>,
    conn: quinn::Connection,
    agent_id: String,
    leases: Arc<Leases>,
    renew_only: bool,
) -> anyhow::Result<()> {
    let (mut send, mut recv): (FramedSend, FramedRecv) = match tokio::time::timeout(
        Duration::from_secs(10),
        outpost_net::stream::accept_bi(&conn),
    )
    .await
    {
        Ok(r) => r?,
        Err(_) => {
            conn.close(CLOSE_PROTOCOL.into(), b"no session stream");
            anyhow::bail!("agent {agent_id} opened no session stream");
        }
    };
    // One live session per agent. Another session of the same agent (same certificate) is
    // either the agent restarted (its old session is dead: replace it at once) or a copy of its
    // state directory running elsewhere (the old session is alive: refuse the newcomer, and
    // record it). Never two live sessions displacing each other.
    // A session held by this process is probed directly; one held by another hub process
    // sharing the store is alive while that process keeps renewing its record.
    let local = match conns.liveness_of(&agent_id) {
        Some(old) if alive(old.as_ref(), leases.probe_window).await => Some(old.peer()),
        _ => None,
    };
    let holder = format!(
        "{}{}",
        leases.process,
        leases
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let other = match local {
        Some(peer) => Some(peer),
        None => {
            let lease = SessionLease {
                holder: holder.clone(),
                peer: conn.remote_address().to_string(),
                since_ms: now_ms(),
                renewed_ms: now_ms(),
            };
            let (h, id, process) = (hub.clone(), agent_id.clone(), leases.process.clone());
            let stale = i64::try_from(leases.stale_after.as_millis()).unwrap_or(i64::MAX);
            blocking(move || h.claim_session(&id, &process, &lease, stale))
                .await??
                .map(|l| l.peer)
        }
    };
    if let Some(old_peer) = other {
        let detail = format!(
            "a second session from {} while the session from {old_peer} is alive (a copied \
             state directory?); the newcomer is refused",
            conn.remote_address(),
        );
        tracing::warn!(agent = %agent_id, "duplicate session refused: {detail}");
        let (h, id, d) = (hub.clone(), agent_id.clone(), detail.clone());
        blocking(move || h.record_duplicate_session(&id, &d)).await??;
        let reason = format!(
            "agent {agent_id} already has a live session from another address: is this agent's \
             state directory a copy? enroll each machine with its own token"
        );
        conn.close(CLOSE_REFUSED.into(), close_reason(&reason));
        anyhow::bail!("duplicate session of {agent_id} refused");
    }
    let mut sess = HubSession::new(
        now_ms(),
        hub.director().clone(),
        i64::try_from(hub.director_ttl().as_millis()).unwrap_or(i64::MAX),
    );
    // The newest root version this session has sent the agent (or the agent had).
    let mut root_sent = 0u64;
    let mut snapshot_tick = tokio::time::interval(snapshot_tick(hub.director_ttl()));
    snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut handle = conns.register_with(
        &agent_id,
        now_ms(),
        Some(Arc::new(QuicLiveness(conn.clone()))),
    );
    leases.lock().insert(
        agent_id.clone(),
        LiveSession {
            holder: holder.clone(),
            conn: conn.clone(),
            seen: 0,
        },
    );
    let mut last_contact = std::time::Instant::now();
    let mut changes = hub.desired_changes();
    let mut accepted = false;
    let result: anyhow::Result<()> = async {
        loop {
            while let Some(m) = sess.poll_transmit() {
                send.send(&m).await?;
            }
            let mut progressed = false;
            while let Some(ev) = sess.poll_event() {
                progressed = true;
                match ev {
                    HubEvent::Hello { agent_id: claimed, software_version, active, root_version, .. } => {
                        if claimed != agent_id {
                            sess.refuse(format!("Hello names {claimed} but the certificate names {agent_id}"));
                            continue;
                        }
                        if renew_only {
                            tracing::warn!(agent = %agent_id, "certificate expired (within the grace): this session may only renew it");
                            sess.renew_only(format!("the certificate of {agent_id} has expired: renew it (nothing else is accepted until then)"))
                                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                            continue;
                        }
                        let (h, id) = (hub.clone(), agent_id.clone());
                        let hello = blocking(move || {
                            h.agent_connected(&id, &software_version, active, root_version)
                        })
                        .await?;
                        match hello {
                            Ok(SessionStart { committed_seq: committed, roots, desired }) => {
                                root_sent = roots.iter().filter_map(|r| r.body_unverified().ok()).map(|b| b.version).max().unwrap_or(root_version);
                                sess.set_replicas(hub.replicas().to_vec());
                                sess.accept(committed, roots, paused_of(&desired), now_ms())
                                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                                sess.set_desired(to_desired(desired), now_ms());
                                if !hub.ca_roots().is_empty() {
                                    sess.send_ca_roots(hub.ca_roots().to_vec())
                                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                                }
                                accepted = true;
                                tracing::info!(agent = %agent_id, committed, "agent session open");
                            }
                            Err(e) => sess.refuse(format!("{e:#}")),
                        }
                    }
                    HubEvent::RenewCert { csr_der } => {
                        let (h, id) = (hub.clone(), agent_id.clone());
                        match blocking(move || h.renew_agent_cert(&id, &csr_der)).await? {
                            Ok(cert) => {
                                tracing::info!(agent = %agent_id, "agent certificate renewed");
                                sess.send_certificate(cert).map_err(|e| anyhow::anyhow!("{e:?}"))?;
                            }
                            Err(e) => {
                                tracing::warn!(agent = %agent_id, "certificate renewal refused: {e}");
                                sess.refuse(format!("certificate renewal refused: {e}"));
                            }
                        }
                    }
                    HubEvent::CaRootsPinned { pinned } => {
                        tracing::info!(agent = %agent_id, roots = pinned.len(), "agent pins root CAs");
                        let (h, id) = (hub.clone(), agent_id.clone());
                        blocking(move || h.record_pinned_roots(&id, pinned)).await??;
                    }
                    HubEvent::Ingest { entries } => {
                        let (h, id) = (hub.clone(), agent_id.clone());
                        let seq = blocking(move || h.ingest(&id, &entries)).await??;
                        sess.committed(seq, now_ms());
                    }
                    HubEvent::Gap { expected, got } => {
                        tracing::error!(agent = %agent_id, expected, got, "gap in the agent's status sequence: events were lost on the agent (store replaced or restored?)");
                    }
                    HubEvent::DeployResult { workflow, version, epoch, rejected } => {
                        match &rejected {
                            None => tracing::info!(agent = %agent_id, %workflow, version, "version activated"),
                            Some(r) => tracing::warn!(agent = %agent_id, %workflow, version, "deploy rejected: {r:?}"),
                        }
                        // Through `Hub::deploy_result`, which also audits a rejection.
                        let (h, id) = (hub.clone(), agent_id.clone());
                        blocking(move || {
                            h.deploy_result(&id, &workflow, version, epoch, rejected.as_ref())
                        })
                        .await??;
                    }
                    HubEvent::Undeliverable { what, bytes, command } => {
                        if let Some(cmd) = command {
                            conns.on_command_result(&agent_id, cmd, false, format!("the command is {bytes} bytes, above the {}-byte frame limit: not sent", outpost_common::proto::MAX_FRAME), None);
                        }
                        tracing::error!(agent = %agent_id, bytes, max = outpost_common::proto::MAX_FRAME, "not sending {what}: above the frame limit (the session goes on)");
                        let (h, id) = (hub.clone(), agent_id.clone());
                        blocking(move || {
                            h.record_undeliverable(&id, &format!("{what}: {bytes} bytes, above the {}-byte frame limit", outpost_common::proto::MAX_FRAME))
                        })
                        .await??;
                    }
                    HubEvent::ClockOffset { offset_ms, at_ms } => {
                        if offset_ms.abs() > CLOCK_OFFSET_WARN_MS {
                            tracing::warn!(agent = %agent_id, offset_ms, "the agent's clock is off the hub's");
                        }
                        // In memory: written with the other observations in one batch.
                        hub.clock_offset(&agent_id, offset_ms, at_ms);
                    }
                    HubEvent::Telemetry(t) => {
                        let (h, id) = (hub.clone(), agent_id.clone());
                        blocking(move || h.telemetry(&id, t)).await??;
                    }
                    HubEvent::CommandResult { id, ok, message, run_id } => {
                        conns.on_command_result(&agent_id, id, ok, message, run_id);
                    }
                    HubEvent::LogChunk { id, data, eof } => conns.on_log_chunk(&agent_id, id, &data, eof),
                    HubEvent::Reverted { workflow, from_version, to_version, reason, .. } => {
                        tracing::warn!(agent = %agent_id, %workflow, from_version, to_version, "agent reverted under probation: {reason}");
                        // The Reverted entry also arrives in the status batch: the store audits it
                        // and queues it for the workflow's active rollouts (a failed gate).
                        let _ = (&workflow, from_version, to_version, &reason);
                    }
                }
            }
            if progressed {
                continue;
            }
            if sess.state() == HubState::Closed {
                conn.close(CLOSE_REFUSED.into(), b"session refused");
                return Ok(());
            }
            tokio::select! {
                frame = recv.recv_frame() => {
                    let bytes = match frame {
                        Ok(Some(b)) => b,
                        Ok(None) => return Ok(()),
                        // The agent closed the connection (shutdown, restart): not an error.
                        Err(_) if matches!(conn.close_reason(), Some(quinn::ConnectionError::ApplicationClosed(_))) => return Ok(()),
                        // A dead link (idle timeout, reset) is not the agent's fault.
                        Err(outpost_net::NetError::Read(quinn::ReadError::ConnectionLost(e))) => {
                            anyhow::bail!("connection lost: {e}");
                        }
                        Err(e) => {
                            conn.close(CLOSE_PROTOCOL.into(), b"bad frame");
                            return Err(e).context("bad frame from agent");
                        }
                    };
                    conns.touch(&agent_id);
                    if last_contact.elapsed() >= LAST_CONTACT_EVERY {
                        last_contact = std::time::Instant::now();
                        hub.touch_agent(&agent_id);
                    }
                    match outpost_common::frame::decode_agent_msg(&bytes) {
                        Ok(Some(msg)) => {
                            if let Err(e) = sess.handle_agent(msg, now_ms()) {
                                conn.close(CLOSE_PROTOCOL.into(), b"protocol violation");
                                anyhow::bail!("protocol violation: {e:?}");
                            }
                        }
                        Ok(None) => tracing::warn!(agent = %agent_id, "skipping a message of an unknown type (newer agent?)"),
                        Err(e) => {
                            conn.close(CLOSE_PROTOCOL.into(), b"malformed message");
                            anyhow::bail!("malformed message: {e}");
                        }
                    }
                }
                m = handle.rx.recv() => match m {
                    Some(SessionMsg::Command { id, command }) => {
                        if let Err(e) = sess.send_command(id, *command, now_ms(), COMMAND_TTL_MS) {
                            conns.on_command_result(&agent_id, id, false, format!("session not ready: {e:?}"), None);
                        }
                    }
                    Some(SessionMsg::Goodbye { reason }) => {
                        let _ = send.send(&HubMsg::Goodbye { reason: reason.clone() }).await;
                        conn.close(CLOSE_REFUSED.into(), close_reason(&reason));
                        return Ok(());
                    }
                    None => {
                        conn.close(CLOSE_OK.into(), b"session replaced");
                        return Ok(());
                    }
                },
                _ = snapshot_tick.tick() => sess.tick(now_ms()),
                c = changes.changed() => {
                    if c.is_ok() && accepted {
                        // A root published since: the agent follows it before anything signed
                        // by a new director key.
                        if hub.root_version() > root_sent {
                            let (h, after) = (hub.clone(), root_sent);
                            let roots = blocking(move || h.store().roots_after(after)).await??;
                            if let Some(v) = roots.iter().filter_map(|r| r.body_unverified().ok()).map(|b| b.version).max() {
                                root_sent = v;
                                let _ = sess.send_roots(roots);
                            }
                        }
                        let (h, id) = (hub.clone(), agent_id.clone());
                        match blocking(move || h.desired_for(&id)).await? {
                            Ok(d) => sess.set_desired(to_desired(d), now_ms()),
                            Err(e) => {
                                // E.g. revoked: the Goodbye may be cut off by the close, so the
                                // close frame carries the reason too.
                                let reason = format!("{e}");
                                let _ = send.send(&HubMsg::Goodbye { reason: reason.clone() }).await;
                                conn.close(CLOSE_REFUSED.into(), close_reason(&reason));
                                return Ok(());
                            }
                        }
                    }
                }
                _ = conn.closed() => return Ok(()),
            }
        }
    }
    .await;
    drop(handle);
    {
        let mut live = leases.lock();
        if live.get(&agent_id).is_some_and(|l| l.holder == holder) {
            live.remove(&agent_id);
        }
    }
    {
        let (h, id, hd) = (hub.clone(), agent_id.clone(), holder.clone());
        if let Ok(Err(e)) = blocking(move || h.release_session(&id, &hd)).await {
            tracing::warn!(agent = %agent_id, "releasing the session record: {e}");
        }
    }
    // The agent's last contact is the end of its session ("offline since" in `agent list`).
    if accepted {
        let (h, id) = (hub.clone(), agent_id.clone());
        if let Ok(Err(e)) = blocking(move || h.agent_disconnected(&id)).await {
            tracing::warn!(agent = %agent_id, "recording the last contact: {e}");
        }
    }
    tracing::info!(agent = %agent_id, "agent session closed");
    result
}
