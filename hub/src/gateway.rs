//! Commands to connected agents: the [`AgentGateway`] seam and the in-memory [`Connections`]
//! registry that implements it.
//!
//! The QUIC session driver (not in this crate yet) registers each authenticated session with
//! [`Connections::register`], forwards every [`HubMsg`] it receives on the returned
//! [`SessionHandle::rx`] to the agent, and reports the agent's answers with
//! [`Connections::on_command_result`] / [`Connections::on_log_chunk`]. Commands to an agent that
//! is not connected fail at once with [`GatewayError::NotConnected`]; they are never queued.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use outpost_common::proto::Command;
use outpost_common::record::UnixMillis;
use tokio::sync::{mpsc, oneshot};

/// Largest log the hub buffers for one fetch.
pub const MAX_LOG_BYTES: usize = 16 * 1024 * 1024;

/// A boxed, sendable future (the trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An agent's answer to a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandReply {
    /// Whether the agent did it.
    pub ok: bool,
    /// The agent's message.
    pub message: String,
    /// A trigger's run id.
    pub run_id: Option<String>,
    /// A log fetch's bytes.
    pub data: Vec<u8>,
}

/// Why a command did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The agent has no live session.
    #[error("agent {0} is not connected")]
    NotConnected(String),
    /// The agent did not answer in time.
    #[error("agent {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The session ended before the answer.
    #[error("the session of agent {0} ended before it answered")]
    Closed(String),
    /// The log is larger than [`MAX_LOG_BYTES`].
    #[error("log from agent {0} is larger than {MAX_LOG_BYTES} bytes")]
    TooLarge(String),
}

/// What the HTTP API needs from the agent sessions.
pub trait AgentGateway: Send + Sync {
    /// Whether the agent has a live session.
    fn is_connected(&self, agent_id: &str) -> bool;
    /// Ids of the agents with a live session, and since when (ms).
    fn connected(&self) -> Vec<(String, UnixMillis)>;
    /// Send a command to a connected agent and wait for its answer (for `FetchLog`: all chunks
    /// up to `eof`).
    fn send_command(
        &self,
        agent_id: &str,
        command: Command,
    ) -> BoxFuture<'_, Result<CommandReply, GatewayError>>;
    /// Close the agent's session (revocation): sends `Goodbye { reason }` and drops it.
    fn disconnect(&self, agent_id: &str, reason: &str);
}

/// What the hub can observe of a session's transport: whether the peer at the other end is
/// alive. A live peer answers the hub's keep-alives, so packets keep arriving; a dead one (an
/// agent killed and restarted) sends nothing.
pub trait Liveness: Send + Sync {
    /// Datagrams received on the connection so far.
    fn received(&self) -> u64;
    /// The connection is closed (the session is ending).
    fn is_closed(&self) -> bool;
    /// The peer, for logs and the audit log (its address).
    fn peer(&self) -> String;
}

/// What the gateway asks a session's driver to send: the driver signs commands for its session
/// (the director binds each to the agent and the session's nonce). The command is boxed: the
/// channel's buffer holds blocks of 32 messages for every connected agent, so the message is
/// kept small (2.6 KiB a session with the command inline; 10,000 agents connected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionMsg {
    Command { id: u64, command: Box<Command> },
    Goodbye { reason: String },
}

struct SessionEntry {
    generation: u64,
    tx: mpsc::Sender<SessionMsg>,
    since_ms: UnixMillis,
    last_activity: Instant,
    liveness: Option<Arc<dyn Liveness>>,
}

struct Pending {
    agent: String,
    data: Vec<u8>,
    too_large: bool,
    done: Option<oneshot::Sender<Result<CommandReply, GatewayError>>>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, SessionEntry>,
    pending: HashMap<u64, Pending>,
}

/// The registry of live agent sessions. Share it as `Arc<Connections>`.
pub struct Connections {
    inner: Mutex<Inner>,
    next: AtomicU64,
    timeout: Duration,
    queue: usize,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One registered session. Dropping it unregisters the session (unless a newer session of the
/// same agent replaced it).
pub struct SessionHandle {
    /// The agent.
    pub agent_id: String,
    /// Messages for the driver to send to the agent, in order. Ends when the session is
    /// replaced or disconnected: the driver then closes the connection.
    pub rx: mpsc::Receiver<SessionMsg>,
    generation: u64,
    conns: Arc<Connections>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    /// A sender for messages to this agent (e.g. for the driver's own Deploy/Ack pushes).
    pub fn sender(&self) -> Option<mpsc::Sender<SessionMsg>> {
        let inner = self.conns.lock();
        inner
            .sessions
            .get(&self.agent_id)
            .filter(|s| s.generation == self.generation)
            .map(|s| s.tx.clone())
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.conns.unregister(&self.agent_id, self.generation);
    }
}

impl Connections {
    /// A registry whose commands time out after `timeout`.
    pub fn new(timeout: Duration) -> Arc<Connections> {
        Arc::new(Connections {
            inner: Mutex::new(Inner::default()),
            next: AtomicU64::new(1),
            timeout,
            queue: 256,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters more than losing the registry: recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a session of `agent_id` (replacing an older one, whose `rx` then ends).
    pub fn register(self: &Arc<Self>, agent_id: &str, now_ms: UnixMillis) -> SessionHandle {
        self.register_with(agent_id, now_ms, None)
    }

    /// The transport of the agent's registered session, if it has one (to probe whether the
    /// session is alive before another session of the same agent replaces it).
    pub fn liveness_of(&self, agent_id: &str) -> Option<Arc<dyn Liveness>> {
        self.lock()
            .sessions
            .get(agent_id)
            .and_then(|s| s.liveness.clone())
    }

    /// [`Connections::register`] with the session's transport.
    pub fn register_with(
        self: &Arc<Self>,
        agent_id: &str,
        now_ms: UnixMillis,
        liveness: Option<Arc<dyn Liveness>>,
    ) -> SessionHandle {
        let (tx, rx) = mpsc::channel(self.queue);
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        let old = self.lock().sessions.insert(
            agent_id.to_string(),
            SessionEntry {
                generation,
                tx,
                since_ms: now_ms,
                last_activity: Instant::now(),
                liveness,
            },
        );
        if let Some(old) = old {
            self.fail_pending(agent_id, old.generation);
        }
        SessionHandle {
            agent_id: agent_id.to_string(),
            rx,
            generation,
            conns: Arc::clone(self),
        }
    }

    fn unregister(&self, agent_id: &str, generation: u64) {
        let mut inner = self.lock();
        if inner
            .sessions
            .get(agent_id)
            .is_some_and(|s| s.generation == generation)
        {
            inner.sessions.remove(agent_id);
            drop(inner);
            self.fail_pending(agent_id, generation);
        }
    }

    fn fail_pending(&self, agent_id: &str, _generation: u64) {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner
            .pending
            .iter()
            .filter(|(_, p)| p.agent == agent_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(mut p) = inner.pending.remove(&id)
                && let Some(done) = p.done.take()
            {
                let _ = done.send(Err(GatewayError::Closed(agent_id.into())));
            }
        }
    }

    /// Record activity on the agent's session (any message received).
    pub fn touch(&self, agent_id: &str) {
        if let Some(s) = self.lock().sessions.get_mut(agent_id) {
            s.last_activity = Instant::now();
        }
    }

    /// Agents whose sessions have been silent longer than `after` (the driver closes them and
    /// they count as offline).
    pub fn silent_longer_than(&self, after: Duration) -> Vec<String> {
        self.lock()
            .sessions
            .iter()
            .filter(|(_, s)| s.last_activity.elapsed() > after)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The agent answered command `id`.
    pub fn on_command_result(
        &self,
        agent_id: &str,
        id: u64,
        ok: bool,
        message: String,
        run_id: Option<String>,
    ) {
        let mut inner = self.lock();
        let Some(mut p) = inner.pending.remove(&id) else {
            return;
        };
        if p.agent != agent_id {
            // Not this agent's command: put it back, ignore the forged answer.
            inner.pending.insert(id, p);
            return;
        }
        if let Some(done) = p.done.take() {
            let _ = done.send(Ok(CommandReply {
                ok,
                message,
                run_id,
                data: std::mem::take(&mut p.data),
            }));
        }
    }

    /// The agent sent a log chunk for command `id`; `eof` completes the command.
    pub fn on_log_chunk(&self, agent_id: &str, id: u64, data: &[u8], eof: bool) {
        let mut inner = self.lock();
        let Some(p) = inner.pending.get_mut(&id) else {
            return;
        };
        if p.agent != agent_id {
            return;
        }
        if p.data.len() + data.len() > MAX_LOG_BYTES {
            p.too_large = true;
        } else {
            p.data.extend_from_slice(data);
        }
        if eof && let Some(mut p) = inner.pending.remove(&id) {
            let reply = if p.too_large {
                Err(GatewayError::TooLarge(agent_id.into()))
            } else {
                Ok(CommandReply {
                    ok: true,
                    message: String::new(),
                    run_id: None,
                    data: std::mem::take(&mut p.data),
                })
            };
            if let Some(done) = p.done.take() {
                let _ = done.send(reply);
            }
        }
    }

    async fn command(
        &self,
        agent_id: String,
        command: Command,
    ) -> Result<CommandReply, GatewayError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (done, wait) = oneshot::channel();
        let tx = {
            let mut inner = self.lock();
            let Some(s) = inner.sessions.get(&agent_id) else {
                return Err(GatewayError::NotConnected(agent_id));
            };
            let tx = s.tx.clone();
            inner.pending.insert(
                id,
                Pending {
                    agent: agent_id.clone(),
                    data: Vec::new(),
                    too_large: false,
                    done: Some(done),
                },
            );
            tx
        };
        let command = Box::new(command);
        if tx.send(SessionMsg::Command { id, command }).await.is_err() {
            self.lock().pending.remove(&id);
            return Err(GatewayError::NotConnected(agent_id));
        }
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(GatewayError::Closed(agent_id)),
            Err(_) => {
                self.lock().pending.remove(&id);
                Err(GatewayError::Timeout(agent_id, self.timeout))
            }
        }
    }
}

impl AgentGateway for Connections {
    fn is_connected(&self, agent_id: &str) -> bool {
        self.lock().sessions.contains_key(agent_id)
    }

    fn connected(&self) -> Vec<(String, UnixMillis)> {
        let mut v: Vec<(String, UnixMillis)> = self
            .lock()
            .sessions
            .iter()
            .map(|(id, s)| (id.clone(), s.since_ms))
            .collect();
        v.sort();
        v
    }

    fn send_command(
        &self,
        agent_id: &str,
        command: Command,
    ) -> BoxFuture<'_, Result<CommandReply, GatewayError>> {
        Box::pin(self.command(agent_id.to_string(), command))
    }

    fn disconnect(&self, agent_id: &str, reason: &str) {
        let entry = self.lock().sessions.remove(agent_id);
        if let Some(s) = entry {
            let _ = s.tx.try_send(SessionMsg::Goodbye {
                reason: reason.to_string(),
            });
            self.fail_pending(agent_id, s.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_to_offline_agent_fails_at_once() {
        let c = Connections::new(Duration::from_secs(5));
        let r = c
            .send_command(
                "agent-x",
                Command::Pause {
                    workflow: "w".into(),
                },
            )
            .await;
        assert_eq!(r, Err(GatewayError::NotConnected("agent-x".into())));
    }

    #[tokio::test]
    async fn command_roundtrip_and_log_chunks() {
        let c = Connections::new(Duration::from_secs(5));
        let mut h = c.register("agent-1", 7);
        assert!(c.is_connected("agent-1"));
        assert_eq!(c.connected(), vec![("agent-1".to_string(), 7)]);
        let c2 = Arc::clone(&c);
        let driver = tokio::spawn(async move {
            for _ in 0..2 {
                match h.rx.recv().await {
                    Some(SessionMsg::Command { id, command }) => match *command {
                        Command::Trigger { .. } => {
                            // A forged answer from another agent is ignored.
                            c2.on_command_result("agent-2", id, false, "x".into(), None);
                            c2.on_command_result(
                                "agent-1",
                                id,
                                true,
                                "ok".into(),
                                Some("r1".into()),
                            );
                        }
                        Command::FetchLog { .. } => {
                            c2.on_log_chunk("agent-1", id, b"hello ", false);
                            c2.on_log_chunk("agent-1", id, b"world", true);
                        }
                        other => panic!("unexpected {other:?}"),
                    },
                    other => panic!("unexpected {other:?}"),
                }
            }
            h
        });
        let r = c
            .send_command(
                "agent-1",
                Command::Trigger {
                    workflow: "w".into(),
                    params: vec![],
                },
            )
            .await
            .unwrap();
        assert!(r.ok);
        assert_eq!(r.run_id.as_deref(), Some("r1"));
        let r = c
            .send_command(
                "agent-1",
                Command::FetchLog {
                    run_id: "r1".into(),
                    task: "t".into(),
                    attempt: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(r.data, b"hello world");
        let h = driver.await.unwrap();
        drop(h);
        assert!(!c.is_connected("agent-1"));
    }

    #[tokio::test]
    async fn disconnect_sends_goodbye_and_fails_waiters() {
        let c = Connections::new(Duration::from_secs(5));
        let mut h = c.register("agent-1", 0);
        let c2 = Arc::clone(&c);
        let waiter = tokio::spawn(async move {
            c2.send_command(
                "agent-1",
                Command::Resume {
                    workflow: "w".into(),
                },
            )
            .await
        });
        // The command reaches the session, then the agent is revoked.
        assert!(matches!(
            h.rx.recv().await,
            Some(SessionMsg::Command { .. })
        ));
        c.disconnect("agent-1", "revoked");
        assert_eq!(
            h.rx.recv().await,
            Some(SessionMsg::Goodbye {
                reason: "revoked".into()
            })
        );
        assert!(h.rx.recv().await.is_none());
        assert_eq!(
            waiter.await.unwrap(),
            Err(GatewayError::Closed("agent-1".into()))
        );
        assert!(!c.is_connected("agent-1"));
    }

    #[tokio::test]
    async fn newer_session_replaces_older_and_old_drop_keeps_it() {
        let c = Connections::new(Duration::from_millis(50));
        let mut old = c.register("agent-1", 0);
        let new = c.register("agent-1", 1);
        assert!(old.rx.recv().await.is_none());
        drop(old);
        assert!(c.is_connected("agent-1"));
        assert!(new.sender().is_some());
        let r = c
            .send_command(
                "agent-1",
                Command::Resume {
                    workflow: "w".into(),
                },
            )
            .await;
        assert!(matches!(r, Err(GatewayError::Timeout(..))));
        drop(new);
        assert!(!c.is_connected("agent-1"));
    }
}
