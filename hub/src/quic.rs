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
use crate::gateway::Connections;
use crate::hub::{Hub, now_ms};

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
    let chain = outpost_net::pki::read_certs_file(&config.cert, "the hub's certificate chain")?;
    let key = outpost_net::pki::read_key_file(&config.key, "the hub's TLS key")?;
    let ca = outpost_net::pki::read_certs_file(&config.ca_cert, "the hub CA certificate")?;
    let ca_der = ca
        .into_iter()
        .next()
        .context("the hub CA file holds no certificate")?;
    let tls = outpost_net::tls::server_config(&chain, &key, &ca_der)?;
    // An agent is offline once its connection has been silent (no packet, keep-alives included)
    // for `offline_after`: the connection then times out and its session ends.
    let idle = config.max_idle_timeout.min(config.offline_after);
    let transport = outpost_net::tls::Transport {
        keep_alive: config.keep_alive_interval.min(idle / 3),
        idle_timeout: idle,
        ..outpost_net::tls::Transport::default()
    };
    let qcfg = outpost_net::tls::quinn_server_config(tls, transport)?;
    let endpoint = outpost_net::endpoint::server_endpoint(config.quic_listen, qcfg)
        .with_context(|| format!("binding the QUIC endpoint on {}", config.quic_listen))?;
    tracing::info!(addr = %config.quic_listen, "accepting agents over QUIC (ALPN outpost/1)");
    loop {
        tokio::select! {
            inc = endpoint.accept() => {
                let Some(inc) = inc else { break };
                let hub = hub.clone();
                let conns = conns.clone();
                tokio::spawn(async move {
                    let remote = inc.remote_address();
                    match inc.await {
                        Ok(conn) => {
                            if let Err(e) = connection(hub, conns, conn).await {
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
) -> anyhow::Result<()> {
    match outpost_net::tls::peer_certs(&conn).and_then(|c| c.into_iter().next()) {
        None => enrollment(hub, conn).await,
        Some(leaf) => {
            // Known, not revoked, and holding the certificate the hub issued to it.
            let h = hub.clone();
            let der = leaf.to_vec();
            match blocking(move || h.authenticate(&der)).await? {
                Ok(agent) => session(hub, conns, conn, agent.id).await,
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

/// An agent's session.
async fn session(
    hub: Arc<Hub>,
    conns: Arc<Connections>,
    conn: quinn::Connection,
    agent_id: String,
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
    let mut sess = HubSession::new(now_ms());
    let mut handle = conns.register(&agent_id, now_ms());
    let mut changes = hub.subscribe();
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
                    HubEvent::Hello { agent_id: claimed, software_version, active, trusted_key, .. } => {
                        if claimed != agent_id {
                            sess.refuse(format!("Hello names {claimed} but the certificate names {agent_id}"));
                            continue;
                        }
                        let (h, id) = (hub.clone(), agent_id.clone());
                        let hello = blocking(move || -> anyhow::Result<_> {
                            h.store.agent_hello(&id, &software_version, active, now_ms())?;
                            let committed = h.store.committed_seq(&id)?;
                            let chain = h.store.key_chain_from(&trusted_key)?;
                            let desired = h.desired_for(&id)?;
                            Ok((committed, chain, desired))
                        })
                        .await?;
                        match hello {
                            Ok((committed, chain, desired)) => {
                                sess.accept(committed, chain, paused_of(&desired), now_ms())
                                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                                sess.set_desired(to_desired(desired));
                                accepted = true;
                                tracing::info!(agent = %agent_id, committed, "agent session open");
                            }
                            Err(e) => sess.refuse(format!("{e:#}")),
                        }
                    }
                    HubEvent::Ingest { entries } => {
                        let (h, id) = (hub.clone(), agent_id.clone());
                        let seq = blocking(move || h.store.ingest(&id, &entries)).await??;
                        sess.committed(seq);
                        hub.rollout_wake.notify_one();
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
                        hub.rollout_wake.notify_one();
                    }
                    HubEvent::Undeliverable { what, bytes, command } => {
                        if let Some(cmd) = command {
                            conns.on_command_result(&agent_id, cmd, false, format!("the command is {bytes} bytes, above the {}-byte frame limit: not sent", outpost_common::proto::MAX_FRAME), None);
                        }
                        tracing::error!(agent = %agent_id, bytes, max = outpost_common::proto::MAX_FRAME, "not sending {what}: above the frame limit (the session goes on)");
                        let (h, id) = (hub.clone(), agent_id.clone());
                        blocking(move || {
                            h.store.audit("hub", "message.undeliverable", &id, &format!("{what}: {bytes} bytes, above the {}-byte frame limit", outpost_common::proto::MAX_FRAME), now_ms())
                        })
                        .await??;
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
                    Some(HubMsg::Command { id, command }) => {
                        if let Err(e) = sess.send_command(id, command) {
                            conns.on_command_result(&agent_id, id, false, format!("session not ready: {e:?}"), None);
                        }
                    }
                    Some(HubMsg::Goodbye { reason }) => {
                        let _ = send.send(&HubMsg::Goodbye { reason: reason.clone() }).await;
                        conn.close(CLOSE_REFUSED.into(), close_reason(&reason));
                        return Ok(());
                    }
                    Some(HubMsg::KeyChain { endorsements }) => {
                        let _ = sess.send_key_chain(endorsements);
                    }
                    Some(other) => send.send(&other).await?,
                    None => {
                        conn.close(CLOSE_OK.into(), b"session replaced");
                        return Ok(());
                    }
                },
                c = changes.changed() => {
                    if c.is_ok() && accepted {
                        let (h, id) = (hub.clone(), agent_id.clone());
                        match blocking(move || h.desired_for(&id)).await? {
                            Ok(d) => sess.set_desired(to_desired(d)),
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
    tracing::info!(agent = %agent_id, "agent session closed");
    result
}
