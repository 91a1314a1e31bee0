//! Operator credentials: authenticate, create, list, revoke; and the record of a refused
//! request.

use super::{EventKind, OpError, OpResult};
use crate::hub::{Hub, now_ms};
use crate::store::{OperatorRecord, Role};

impl Hub {
    /// The operator whose credential this is, unless it is unknown, wrong or revoked (checked
    /// against the store on every request, so a revocation takes effect at once).
    pub fn authenticate_operator(&self, credential: &str) -> OpResult<Option<OperatorRecord>> {
        Ok(self.store().authenticate_operator(credential)?)
    }

    /// `operator create`: a new credential for `name` with `role` (a deployer optionally
    /// limited to `pools`). Returns the record and the credential, shown this once.
    pub fn create_operator(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        pools: Vec<String>,
    ) -> OpResult<(OperatorRecord, String)> {
        if pools.iter().any(|p| p.trim().is_empty()) {
            return Err(OpError::Invalid("an empty pool name in --pools".into()));
        }
        let (rec, credential) = self
            .store()
            .create_operator(name, role, pools, actor, now_ms())?;
        self.emit(
            actor,
            EventKind::OperatorCreated {
                name: rec.name.clone(),
                role: rec.role.to_string(),
                pools: rec.pools.clone(),
            },
        );
        Ok((rec, credential))
    }

    /// `operator list`: every credential (revoked ones included; secrets are stored hashed).
    pub fn operators(&self) -> OpResult<Vec<OperatorRecord>> {
        Ok(self.store().operators()?)
    }

    /// `operator revoke`: operator `name`'s credential is refused from the next request on.
    /// Returns whether it was newly revoked.
    pub fn revoke_operator(&self, actor: &str, name: &str) -> OpResult<bool> {
        let changed = self.store().revoke_operator(name, actor, now_ms())?;
        self.emit(
            actor,
            EventKind::OperatorRevoked {
                name: name.to_string(),
                changed,
            },
        );
        Ok(changed)
    }

    /// Record a request refused for the operator's role (`access.denied`; nothing was done).
    pub fn audit_denied(&self, actor: &str, request: &str, detail: &str) -> OpResult<()> {
        self.store()
            .audit(actor, "access.denied", request, detail, now_ms())?;
        self.emit(
            actor,
            EventKind::AccessDenied {
                request: request.to_string(),
            },
        );
        Ok(())
    }

    /// The first operator of a hub whose store has none (`init`, or `serve` on a store from
    /// before operator credentials): an admin named `name`. `None` when there are operators
    /// already.
    pub fn bootstrap_admin(&self, name: &str) -> OpResult<Option<String>> {
        if !self.store().operators()?.is_empty() {
            return Ok(None);
        }
        let (_, credential) =
            self.create_operator(crate::events::HUB_ACTOR, name, Role::Admin, Vec::new())?;
        Ok(Some(credential))
    }
}
