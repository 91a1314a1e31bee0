//! Releases and root metadata: release signatures make a pending version deployable; a new
//! root version (keys, thresholds, expiry, a counter reset) is published for agents to follow.

use outpost_common::trust::{RootBody, Signature, SignedRoot, sign_release};

use super::{EventKind, HUB_ACTOR, OpResult};
use crate::hub::{Hub, now_ms};
use crate::store::{PendingVersion, ReleaseStatus};

impl Hub {
    /// With `[keys] release_key` configured (a lab, `dev`): sign `workflow`'s pending `version`
    /// with it at once. Returns whether the version is released now (false without the key, or
    /// when the release threshold needs more keys than this one).
    pub(crate) fn auto_release(&self, workflow: &str, version: u64) -> OpResult<bool> {
        let Some(key) = self.release_key() else {
            return Ok(false);
        };
        let Some(p) = self.store().pending(workflow)? else {
            return Ok(false);
        };
        if p.version != version {
            return Ok(false);
        }
        let sig = sign_release(key, &p.header_bytes);
        let status = self.release_sign(HUB_ACTOR, workflow, version, vec![sig])?;
        Ok(status.released)
    }

    /// `release submit`: add release signatures to a pending version; once a threshold of the
    /// release role signed, the version is deployable and the sessions learn it.
    pub fn release_sign(
        &self,
        actor: &str,
        workflow: &str,
        version: u64,
        sigs: Vec<Signature>,
    ) -> OpResult<ReleaseStatus> {
        let status =
            self.store()
                .add_release_signatures(workflow, version, &sigs, actor, now_ms())?;
        if status.released {
            self.notify_changed();
            self.emit(
                actor,
                EventKind::WorkflowReleased {
                    workflow: workflow.to_string(),
                    version,
                    signed_by: status.signed_by.clone(),
                },
            );
        }
        Ok(status)
    }

    /// Every version waiting for release signatures.
    pub fn pending_versions(&self) -> OpResult<Vec<PendingVersion>> {
        Ok(self.store().pending_all()?)
    }

    /// The version of `workflow` waiting for release signatures, if any.
    pub fn pending_version(&self, workflow: &str) -> OpResult<Option<PendingVersion>> {
        Ok(self.store().pending(workflow)?)
    }

    /// `root publish`: store the next root metadata version (verified against the current one:
    /// the old and the new root threshold) and send it to every connected agent.
    pub fn publish_root(&self, actor: &str, signed: &SignedRoot) -> OpResult<RootBody> {
        let body = self.store().publish_root(signed, actor, now_ms())?;
        self.set_root_version(body.version);
        self.notify_changed();
        self.emit(
            actor,
            EventKind::RootPublished {
                version: body.version,
                expires_ms: body.expires_ms,
                reset_counters: body.reset_counters,
            },
        );
        Ok(body)
    }

    /// The newest root metadata.
    pub fn current_root(&self) -> OpResult<Option<(SignedRoot, RootBody)>> {
        Ok(self.store().current_root()?)
    }
}
