//! Agents: enrollment, revocation, labels, and what the API shows of them.

use outpost_common::proto::{EnrollRequest, EnrollResponse};

use super::{EventKind, OpError, OpResult};
use crate::hub::{Hub, allowed_labels, now_ms, parse_token_secret};
use crate::store::{
    AgentRecord, Decommissioned, DeployResultRecord, StoreError, check_agent_name,
    default_agent_name,
};

impl Hub {
    /// Enroll an agent: check the token (`token_id.secret`), choose the agent id, issue its
    /// certificate from the CSR, redeem the token and store the agent in one transaction.
    /// Every refusal is an `EnrollResponse::Refused` with a reason (never a panic).
    pub fn enroll(&self, req: &EnrollRequest) -> EnrollResponse {
        match self.try_enroll(req) {
            Ok(r) => r,
            Err(reason) => EnrollResponse::Refused { reason },
        }
    }

    fn try_enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, String> {
        let now = now_ms();
        let (token_id, secret) = parse_token_secret(&req.token)
            .ok_or_else(|| "malformed bootstrap token".to_string())?;
        let token = self
            .store()
            .check_token(token_id, secret, now)
            .map_err(|e| e.to_string())?;
        let labels = allowed_labels(&token.labels, &req.labels)?;
        // An operator's name is taken exactly or refused; the host name gets a free suffix.
        let (wanted, exact) = match &req.name {
            Some(n) => {
                check_agent_name(n)?;
                (n.clone(), true)
            }
            None => (default_agent_name(&req.hostname), false),
        };
        let agent_id = format!("agent-{}", hex::encode(rand::random::<[u8; 8]>()));
        let cert_der = self
            .ca()
            .sign_csr(&req.csr_der, &agent_id, self.cert_policy().agent_lifetime)
            .map_err(|e| e.to_string())?;
        let facts = outpost_net::pki::cert_facts(&cert_der)
            .ok_or_else(|| "issued certificate does not parse".to_string())?;
        let rec = AgentRecord {
            name: Some(wanted),
            id: agent_id.clone(),
            labels: labels.clone(),
            enrolled_ms: now,
            cert_serial: facts.serial_hex,
            cert_fingerprint: facts.fingerprint,
            revoked_ms: None,
            last_seen_ms: None,
            software_version: req.software_version.clone(),
            active: vec![],
            committed_seq: 0,
            hostname: req.hostname.clone(),
            cert_not_after_ms: outpost_net::pki::cert_validity(&cert_der).map(|(_, na)| na),
            previous_cert_fingerprint: None,
            // The root it pins from its token.
            pinned_roots: Some(vec![outpost_net::pki::sha256_hex(self.ca().root_der())]),
            clock_offset: None,
            telemetry: None,
            decommissioned_ms: None,
        };
        let rec = self
            .store()
            .enroll_named(token_id, secret, rec, exact, now)
            .map_err(|e| e.to_string())?;
        self.emit(
            &agent_id,
            EventKind::AgentEnrolled {
                agent: agent_id.clone(),
                labels: labels.clone(),
            },
        );
        Ok(EnrollResponse::Ok {
            agent_id,
            cert_der,
            ca_der: self.ca().root_der().to_vec(),
            hub_name: self.hub_name().to_string(),
            root: self
                .store()
                .current_root()
                .map_err(|e| e.to_string())?
                .map(|(r, _)| r)
                .ok_or_else(|| "no root metadata published".to_string())?,
            labels,
            name: rec.name,
            replicas: (!self.replicas().is_empty()).then(|| self.replicas().to_vec()),
        })
    }

    /// `agent revoke`: persist, close its live session, notify.
    pub fn revoke_agent(&self, actor: &str, agent_id: &str) -> OpResult<bool> {
        let agent_id = &self.store().resolve_agent(agent_id)?;
        let changed = self.store().revoke(agent_id, actor, now_ms())?;
        self.gateway().disconnect(agent_id, "agent revoked");
        self.notify_changed();
        self.emit(
            actor,
            EventKind::AgentRevoked {
                agent: agent_id.to_string(),
                changed,
            },
        );
        Ok(changed)
    }

    /// `agent label`: set and remove labels of a non-revoked agent (pool membership follows).
    pub fn label_agent(
        &self,
        actor: &str,
        agent_id: &str,
        set: &[(String, String)],
        remove: &[String],
    ) -> OpResult<Vec<(String, String)>> {
        for (k, v) in set {
            check_label(k, v)?;
        }
        let agent_id = &self.store().resolve_agent(agent_id)?;
        let rec = self.store().agent(agent_id)?;
        if rec.revoked_ms.is_some() {
            return Err(StoreError::Revoked(agent_id.to_string()).into());
        }
        let labels = self
            .store()
            .set_labels(agent_id, set, remove, actor, now_ms())?;
        self.notify_changed();
        self.rollout_wake.notify_one();
        self.emit(
            actor,
            EventKind::AgentLabelled {
                agent: agent_id.to_string(),
                labels: labels.clone(),
            },
        );
        Ok(labels)
    }

    /// Every enrolled agent (revoked ones included).
    pub fn agents(&self) -> OpResult<Vec<AgentRecord>> {
        Ok(self.store().agents()?)
    }

    /// One agent.
    pub fn agent(&self, agent_id: &str) -> OpResult<AgentRecord> {
        let id = self.store().resolve_agent(agent_id)?;
        Ok(self.store().agent(&id)?)
    }

    /// The id of the agent `id_or_name` names (every command that takes an agent takes either).
    pub fn resolve_agent(&self, id_or_name: &str) -> OpResult<String> {
        Ok(self.store().resolve_agent(id_or_name)?)
    }

    /// `agent rename`: give an agent a new unique name (its id never changes). Returns (id, old
    /// name).
    pub fn rename_agent(
        &self,
        actor: &str,
        id_or_name: &str,
        new: &str,
    ) -> OpResult<(String, Option<String>)> {
        check_agent_name(new).map_err(OpError::Invalid)?;
        Ok(self
            .store()
            .rename_agent(id_or_name, new, actor, now_ms())?)
    }

    /// `agent decommission`: revoke for good, remove its assignments, drop it from pools and
    /// metrics, free its name; its run history stays. Closes its live session.
    pub fn decommission_agent(&self, actor: &str, id_or_name: &str) -> OpResult<Decommissioned> {
        let d = self.store().decommission(id_or_name, actor, now_ms())?;
        self.gateway().disconnect(&d.id, "agent decommissioned");
        self.notify_changed();
        self.rollout_wake.notify_one();
        self.emit(
            actor,
            EventKind::AgentRevoked {
                agent: d.id.clone(),
                changed: d.changed,
            },
        );
        Ok(d)
    }

    /// The deploy results an agent reported, latest per workflow.
    pub fn deploy_results(&self, agent_id: &str) -> OpResult<Vec<DeployResultRecord>> {
        let id = self.store().resolve_agent(agent_id)?;
        Ok(self.store().deploy_results(&id)?)
    }
}

/// A label an operator may give: a non-empty key without `,` or `=`, a value without `,`.
pub(crate) fn check_label(k: &str, v: &str) -> OpResult<()> {
    if k.is_empty() || k.contains([',', '=']) || v.contains(',') {
        return Err(OpError::Invalid(format!("invalid label {k:?}={v:?}")));
    }
    Ok(())
}
