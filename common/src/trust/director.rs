//! The director's statements (the serving hub's online key) and the agent's deploy check.
//!
//! The director signs only: assignments (which agent runs which released version; an epoch per
//! (agent, workflow) refuses replays), per-session snapshots of all of an agent's assignments
//! (mix-and-match, freshness), commands and acknowledgements (bound to the agent and the
//! session's random nonce, so none can be replayed into another session). It cannot make a
//! version deployable: that takes the release role's threshold ([`super::Trust::verify_release`]).

use minicbor::{Decode, Encode};

use super::Trust;
use super::key::{SigningKey, to_cbor};
use crate::proto::{
    AckBody, Assignment, BundleHeader, CommandBody, DOMAIN_ACK, DOMAIN_ASSIGNMENT, DOMAIN_COMMAND,
    DOMAIN_SNAPSHOT, Rejection, SignedBundle, Snapshot, Statement,
};
use crate::record::UnixMillis;

/// blake3 hex of a bundle's content, as [`BundleHeader::content_hash`] carries it.
pub fn content_hash(content: &[u8]) -> String {
    blake3::hash(content).to_hex().to_string()
}

/// The director's signing key, held by the serving hub.
#[derive(Debug)]
pub struct Director {
    key: SigningKey,
}

impl Director {
    pub fn new(key: SigningKey) -> Director {
        Director { key }
    }

    /// The director key's id.
    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    /// The director key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    fn statement<T: Encode<()>>(&self, domain: &[u8], body: &T) -> Statement {
        let body_bytes = to_cbor(body);
        let signature = self.key.sign(domain, &body_bytes);
        Statement {
            body_bytes,
            signature,
        }
    }

    pub fn sign_assignment(&self, a: &Assignment) -> Statement {
        self.statement(DOMAIN_ASSIGNMENT, a)
    }

    /// Sign an assignment's exact body bytes again (after the director key rotated).
    pub fn resign_assignment(&self, mut st: Statement) -> Statement {
        st.signature = self.key.sign(DOMAIN_ASSIGNMENT, &st.body_bytes);
        st
    }

    pub fn sign_snapshot(&self, s: &Snapshot) -> Statement {
        self.statement(DOMAIN_SNAPSHOT, s)
    }

    pub fn sign_command(&self, c: &CommandBody) -> Statement {
        self.statement(DOMAIN_COMMAND, c)
    }

    pub fn sign_ack(&self, a: &AckBody) -> Statement {
        self.statement(DOMAIN_ACK, a)
    }
}

/// The agent's anti-rollback state for one workflow (durable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct WorkflowTrustState {
    /// Highest version ever accepted (0: none).
    #[n(0)]
    pub highest_version: u64,
    /// Epoch of the last accepted assignment (0: none).
    #[n(1)]
    pub last_epoch: u64,
    /// Versions the agent keeps locally (may be re-activated without a bundle).
    #[n(2)]
    pub held_versions: Vec<u64>,
}

/// A deploy that passed every check. Nothing has been changed yet: the caller parses and
/// validates `content`, activates, and then records `assignment.epoch`/version durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub assignment: Assignment,
    /// `None` for a removal or a version the agent already holds.
    pub header: Option<BundleHeader>,
    pub content: Option<Vec<u8>>,
}

/// The agent's acceptance check for a `HubMsg::Deploy`, in this order (the first failure is the
/// reported reason):
/// 1. the trusted root has not expired at `now_ms` (the agent's time floor) (`Expired`);
/// 2. the assignment's signature by a director key (before decoding it);
/// 3. it names this agent (`WrongAgent`);
/// 4. its epoch is above the last accepted one (`StaleEpoch`);
/// 5. the session's snapshot lists exactly this workflow, version, epoch and hash, or for a
///    removal does not list the workflow (`NotInSnapshot`);
/// 6. a removal must come without a bundle (`Mismatch`) and is then accepted;
/// 7. a threshold of release keys signed the bundle's exact header bytes (before decoding);
/// 8. blake3(content) equals the header's hash (`HashMismatch`);
/// 9. the header matches the assignment: name, version, hash (`Mismatch`);
///    without a bundle the agent must hold that version (`Invalid`);
/// 10. the version is >= the highest accepted unless the agent holds that exact version
///     (`StaleVersion`).
pub fn check_deploy(
    me: &str,
    trust: &Trust,
    state: &WorkflowTrustState,
    snapshot: Option<&Snapshot>,
    assignment: &Statement,
    bundle: Option<&SignedBundle>,
    now_ms: UnixMillis,
) -> Result<Accepted, Rejection> {
    trust.check_fresh(now_ms)?;
    let a: Assignment = trust.verify_statement(DOMAIN_ASSIGNMENT, assignment)?;
    check_verified_deploy(me, trust, state, snapshot, a, bundle)
}

/// [`check_deploy`] from step 3 on, for an assignment already verified (steps 1 and 2): for a
/// caller that needs the assignment (its workflow, to load that workflow's state) before the
/// rest of the check, without verifying it twice.
pub fn check_verified_deploy(
    me: &str,
    trust: &Trust,
    state: &WorkflowTrustState,
    snapshot: Option<&Snapshot>,
    a: Assignment,
    bundle: Option<&SignedBundle>,
) -> Result<Accepted, Rejection> {
    if a.agent_id != me {
        return Err(Rejection::WrongAgent(a.agent_id));
    }
    if a.epoch <= state.last_epoch {
        return Err(Rejection::StaleEpoch {
            offered: a.epoch,
            last: state.last_epoch,
        });
    }
    let listed = snapshot.and_then(|s| s.workflows.iter().find(|e| e.workflow == a.workflow));
    let consistent = match (a.remove, listed) {
        (true, None) => snapshot.is_some(),
        (false, Some(e)) => {
            e.version == a.version && e.epoch == a.epoch && e.content_hash == a.content_hash
        }
        _ => false,
    };
    if !consistent {
        return Err(Rejection::NotInSnapshot);
    }
    if a.remove {
        if bundle.is_some() {
            return Err(Rejection::Mismatch);
        }
        return Ok(Accepted {
            assignment: a,
            header: None,
            content: None,
        });
    }
    let held = state.held_versions.contains(&a.version);
    let (header, content) = match bundle {
        Some(b) => {
            let h = trust.verify_release(b)?;
            if h.workflow != a.workflow
                || h.version != a.version
                || h.content_hash != a.content_hash
            {
                return Err(Rejection::Mismatch);
            }
            (Some(h), Some(b.content.clone()))
        }
        None if held => (None, None),
        None => {
            return Err(Rejection::Invalid(format!(
                "no bundle sent for version {} of {}, which this agent does not hold",
                a.version, a.workflow
            )));
        }
    };
    if a.version < state.highest_version && !held {
        return Err(Rejection::StaleVersion {
            offered: a.version,
            highest: state.highest_version,
        });
    }
    Ok(Accepted {
        assignment: a,
        header,
        content,
    })
}
