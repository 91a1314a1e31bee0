//! Enrolled agents: records, revocation, Hello, the versions each holds locally.

use outpost_common::proto::{ActiveWorkflow, AgentTelemetry};
use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable};

use super::audit::audit_in;
use super::error::{StoreError, decode, decode_all, encode};
use super::file::Store;
use super::records::AgentRecord;
use super::schema::{AGENT_VERSIONS, AGENTS};

impl Store {
    /// All agents, by id (with the observations not written yet merged in:
    /// `observations.rs`).
    pub(crate) fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let mut all: Vec<AgentRecord> = decode_all(&txn.open_table(AGENTS)?, "agents")?;
        self.observations.overlay_all(&mut all);
        Ok(all)
    }

    /// One agent (with the observations not written yet merged in: `observations.rs`).
    pub fn agent(&self, id: &str) -> Result<AgentRecord, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(AGENTS)?;
        let v = t.get(id)?.ok_or_else(|| StoreError::NoAgent(id.into()))?;
        let mut rec: AgentRecord = decode(v.value(), "agents", id)?;
        self.observations.overlay(&mut rec);
        Ok(rec)
    }

    /// Change an agent's record in the group commit (observations: telemetry, pinned roots).
    pub(super) fn update_agent<R>(
        &self,
        id: &str,
        mut f: impl FnMut(&mut AgentRecord) -> R,
        audit: Option<(&str, &str, UnixMillis)>,
    ) -> Result<R, StoreError> {
        self.write(|txn| update_in(txn, id, &mut f, audit))
    }

    /// Change an agent's identity (labels, certificate, revocation) in a direct write: in HA
    /// mode it is published to the other replicas before it commits (`replicated.rs`).
    pub(super) fn update_agent_identity<R>(
        &self,
        id: &str,
        mut f: impl FnMut(&mut AgentRecord) -> R,
        audit: Option<(&str, &str, UnixMillis)>,
    ) -> Result<R, StoreError> {
        let txn = self.begin_write_in(super::replicated::Scope::Only(&["agent_identities"]))?;
        let r = update_in(&txn, id, &mut f, audit)?;
        txn.commit()?;
        Ok(r)
    }

    /// Revoke an agent (idempotent). Returns whether it was newly revoked.
    pub(crate) fn revoke(
        &self,
        id: &str,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<bool, StoreError> {
        self.update_agent_identity(
            id,
            |a| {
                if a.revoked_ms.is_some() {
                    false
                } else {
                    a.revoked_ms = Some(now_ms);
                    true
                }
            },
            Some((actor, "agent.revoke", now_ms)),
        )
    }

    /// Record a renewed certificate of an agent (audited `agent.cert_renew`); the current one
    /// becomes the previous one. Returns whether the agent is revoked (then nothing changes).
    pub(crate) fn renew_agent_cert(
        &self,
        id: &str,
        serial_hex: &str,
        fingerprint: &str,
        not_after_ms: Option<UnixMillis>,
        now_ms: UnixMillis,
    ) -> Result<bool, StoreError> {
        self.update_agent_identity(
            id,
            |a| {
                if a.revoked_ms.is_some() {
                    return true;
                }
                a.previous_cert_fingerprint = Some(std::mem::replace(
                    &mut a.cert_fingerprint,
                    fingerprint.into(),
                ));
                a.cert_serial = serial_hex.into();
                a.cert_not_after_ms = not_after_ms;
                false
            },
            Some((id, "agent.cert_renew", now_ms)),
        )
    }

    /// Record the root CAs an agent pins (SHA-256 hex).
    pub(crate) fn set_pinned_roots(&self, id: &str, pinned: Vec<String>) -> Result<(), StoreError> {
        self.update_agent(id, |a| a.pinned_roots = Some(pinned.clone()), None)
    }

    /// Record an agent's Hello: software version, active workflows (and that it holds those
    /// versions), last seen. Refuses a revoked agent.
    pub(crate) fn agent_hello(
        &self,
        id: &str,
        software_version: &str,
        active: Vec<ActiveWorkflow>,
        now_ms: UnixMillis,
    ) -> Result<AgentRecord, StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(AGENTS)?;
            let mut rec: AgentRecord = match t.get(id)? {
                Some(v) => decode(v.value(), "agents", id)?,
                None => return Err(StoreError::NoAgent(id.into())),
            };
            if rec.revoked_ms.is_some() {
                return Err(StoreError::Revoked(id.into()));
            }
            rec.software_version = software_version.into();
            rec.active = active.clone();
            rec.last_seen_ms = Some(now_ms);
            t.insert(id, encode(&rec)?.as_slice())?;
            // Remember that the agent holds these versions locally.
            let mut held = txn.open_table(AGENT_VERSIONS)?;
            for a in active.iter().filter(|a| a.version != 0) {
                if held.get((id, a.workflow.as_str(), a.version))?.is_none() {
                    held.insert((id, a.workflow.as_str(), a.version), now_ms)?;
                }
            }
            Ok(rec)
        })
    }

    /// Whether `agent` is known to hold `version` of `workflow` locally.
    pub(crate) fn holds(
        &self,
        agent: &str,
        workflow: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(AGENT_VERSIONS)?;
        Ok(t.get((agent, workflow, version))?.is_some())
    }

    /// Record an agent's telemetry report (the latest replaces the one before).
    pub(crate) fn record_telemetry(
        &self,
        id: &str,
        telemetry: AgentTelemetry,
        now_ms: UnixMillis,
    ) -> Result<(), StoreError> {
        self.update_agent(
            id,
            |a| a.telemetry = Some((telemetry.clone(), now_ms)),
            None,
        )
    }
}

fn update_in<R>(
    txn: &redb::WriteTransaction,
    id: &str,
    f: &mut impl FnMut(&mut AgentRecord) -> R,
    audit: Option<(&str, &str, UnixMillis)>,
) -> Result<R, StoreError> {
    let r = {
        let mut t = txn.open_table(AGENTS)?;
        let mut rec: AgentRecord = match t.get(id)? {
            Some(v) => decode(v.value(), "agents", id)?,
            None => return Err(StoreError::NoAgent(id.into())),
        };
        let r = f(&mut rec);
        t.insert(id, encode(&rec)?.as_slice())?;
        r
    };
    if let Some((actor, action, at)) = audit {
        audit_in(txn, at, actor, action, id, "")?;
    }
    Ok(r)
}
