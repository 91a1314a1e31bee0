//! Assignments (each agent's desired versions, with epochs that only rise) and the deploy
//! results agents report.

use outpost_common::proto::{ActiveWorkflow, Assignment};
use outpost_common::record::UnixMillis;
use outpost_common::trust::Director;
use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable};

use super::error::{DbError, StoreError, decode, encode};
use super::file::Store;
use super::records::{AgentRecord, DeployResultRecord, DesiredVersion, IssuedAssignment};
use super::rollouts::{self, RolloutEvent, RolloutEventKind};
use super::schema::{AGENT_VERSIONS, AGENTS, ASSIGNMENTS, DEPLOY_RESULTS};

impl Store {
    /// Bring the issued assignments of `agent_id` in line with `desired`, in one transaction:
    /// a workflow whose desired (version, hash) differs from the last issued assignment gets a
    /// new one with the next epoch; a workflow assigned before but no longer desired gets a
    /// removal (once). Returns the current assignment of every workflow ever assigned to the
    /// agent (removals included), by workflow name. Most calls change nothing and are answered
    /// from a read transaction; a mint joins the group commit (`group.rs`), so the sessions of
    /// a thousand agents woken by one deploy share a few commits.
    ///
    /// The new assignments are minted and signed before joining the group, from what the read
    /// transaction saw: the group runs its members' closures one at a time, and a signature
    /// there made every other member wait for it. Inside the group the inputs are read again;
    /// only if they changed meanwhile (another mint for this agent, a deploy result) is the
    /// mint made again there, so the epochs are exactly those a mint inside the group makes.
    pub(crate) fn sync_assignments(
        &self,
        agent_id: &str,
        desired: &[DesiredVersion],
        signer: &Director,
        now_ms: UnixMillis,
    ) -> Result<Vec<IssuedAssignment>, StoreError> {
        let (seen, premint) = {
            let txn = self.db().begin_read()?;
            let current = issued_to(&txn.open_table(ASSIGNMENTS)?, agent_id)?;
            let accepted = accepted_by(&txn.open_table(AGENTS)?, agent_id)?;
            if let Some(out) =
                reconcile(agent_id, desired, current.clone(), &accepted, None, now_ms)
            {
                return Ok(out.assignments);
            }
            let premint = reconcile(
                agent_id,
                desired,
                current.clone(),
                &accepted,
                Some(signer),
                now_ms,
            );
            ((current, accepted), premint)
        };
        self.write(|txn| {
            let mut t = txn.open_table(ASSIGNMENTS)?;
            let current = issued_to(&t, agent_id)?;
            let accepted = accepted_by(&txn.open_table(AGENTS)?, agent_id)?;
            let out = match &premint {
                Some(p) if seen.0 == current && seen.1 == accepted => p.clone(),
                _ => reconcile(agent_id, desired, current, &accepted, Some(signer), now_ms)
                    .ok_or_else(|| DbError::Inconsistent("assignment not minted".into()))?,
            };
            if out.minted {
                for a in &out.assignments {
                    t.insert((agent_id, a.workflow.as_str()), encode(a)?.as_slice())?;
                }
            }
            Ok(out.assignments)
        })
    }

    /// The last assignment issued for (agent, workflow).
    pub fn assignment(
        &self,
        agent_id: &str,
        workflow: &str,
    ) -> Result<Option<IssuedAssignment>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(ASSIGNMENTS)?;
        match t.get((agent_id, workflow))? {
            Some(v) => Ok(Some(decode(v.value(), "assignments", agent_id)?)),
            None => Ok(None),
        }
    }

    /// Record an agent's deploy result (the last per (agent, workflow)); an accepted one also
    /// updates the agent's reported active version.
    pub(crate) fn record_deploy_result(
        &self,
        agent_id: &str,
        result: DeployResultRecord,
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut agents = txn.open_table(AGENTS)?;
            let mut agent: AgentRecord = match agents.get(agent_id)? {
                Some(v) => decode(v.value(), "agents", agent_id)?,
                None => return Err(StoreError::NoAgent(agent_id.into())),
            };
            if result.rejected.is_none() {
                let assignment = txn
                    .open_table(ASSIGNMENTS)?
                    .get((agent_id, result.workflow.as_str()))?
                    .map(|v| decode::<IssuedAssignment>(v.value(), "assignments", agent_id))
                    .transpose()?;
                let highest = agent
                    .active
                    .iter()
                    .filter(|a| a.workflow == result.workflow)
                    .map(|a| a.highest_version.unwrap_or(a.version))
                    .max()
                    .unwrap_or(0)
                    .max(result.version);
                agent.active.retain(|a| a.workflow != result.workflow);
                if !assignment.is_some_and(|a| a.remove && a.epoch == result.epoch) {
                    agent.active.push(ActiveWorkflow {
                        workflow: result.workflow.clone(),
                        version: result.version,
                        epoch: result.epoch,
                        paused: false,
                        highest_version: Some(highest),
                    });
                    agent.active.sort_by(|a, b| a.workflow.cmp(&b.workflow));
                }
                agent.last_seen_ms = Some(result.at_ms);
                agents.insert(agent_id, encode(&agent)?.as_slice())?;
                if result.version != 0 {
                    txn.open_table(AGENT_VERSIONS)?.insert(
                        (agent_id, result.workflow.as_str(), result.version),
                        result.at_ms,
                    )?;
                }
            }
            txn.open_table(DEPLOY_RESULTS)?.insert(
                (agent_id, result.workflow.as_str()),
                encode(&result)?.as_slice(),
            )?;
            if rollouts::has_active_rollout(txn, &result.workflow)? {
                let kind = match &result.rejected {
                    None => RolloutEventKind::Activated {
                        version: result.version,
                    },
                    Some(r) => RolloutEventKind::Rejected {
                        version: result.version,
                        reason: r.clone(),
                    },
                };
                rollouts::enqueue_event(
                    txn,
                    &RolloutEvent {
                        agent: agent_id.into(),
                        workflow: result.workflow.clone(),
                        kind,
                        at_ms: result.at_ms,
                    },
                )?;
            }
            Ok(())
        })
    }

    /// The last deploy result of every workflow on an agent.
    pub fn deploy_results(&self, agent_id: &str) -> Result<Vec<DeployResultRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        records_of(&txn.open_table(DEPLOY_RESULTS)?, "deploy_results", agent_id)
    }
}

/// The records of `agent_id` in a table keyed by (agent, workflow), by workflow.
fn records_of<T: for<'b> minicbor::Decode<'b, ()>>(
    t: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    table: &'static str,
    agent_id: &str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for e in t.range((agent_id, "")..)? {
        let (k, v) = e?;
        if k.value().0 != agent_id {
            break;
        }
        out.push(decode(v.value(), table, agent_id)?);
    }
    Ok(out)
}

/// The assignments last issued to `agent_id`, by workflow.
fn issued_to(
    t: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    agent_id: &str,
) -> Result<Vec<IssuedAssignment>, StoreError> {
    records_of(t, "assignments", agent_id)
}

/// The epoch of each workflow the agent reported accepting (Hello, deploy results): a hub
/// restored from an older backup continues above it (`sync::next_epoch`).
fn accepted_by(
    agents: &impl ReadableTable<&'static str, &'static [u8]>,
    agent_id: &str,
) -> Result<HashMap<String, u64>, StoreError> {
    Ok(match agents.get(agent_id)? {
        Some(v) => decode::<AgentRecord>(v.value(), "agents", agent_id)?
            .active
            .into_iter()
            .map(|a| (a.workflow, a.epoch))
            .collect(),
        None => HashMap::new(),
    })
}

/// What [`reconcile`] decided.
#[derive(Clone)]
struct Reconciled {
    /// Every workflow's current assignment, sorted by workflow.
    assignments: Vec<IssuedAssignment>,
    /// Whether any of them is new (and must be stored).
    minted: bool,
}

/// The assignments `desired` calls for, given those issued (`current`) and the epochs the agent
/// accepted. Without a `signer`: `None` when a new assignment would have to be minted.
fn reconcile(
    agent_id: &str,
    desired: &[DesiredVersion],
    current: Vec<IssuedAssignment>,
    accepted: &HashMap<String, u64>,
    signer: Option<&Director>,
    now_ms: UnixMillis,
) -> Option<Reconciled> {
    let accepted_epoch = |w: &str| accepted.get(w).copied().unwrap_or(0);
    let mint = |workflow: &str,
                prev: Option<&IssuedAssignment>,
                version: u64,
                hash: &str,
                remove: bool,
                extra: Option<&DesiredVersion>|
     -> Option<IssuedAssignment> {
        let signer = signer?;
        let epoch = outpost_common::sync::next_epoch(
            prev.map(|p| p.epoch).unwrap_or(0),
            accepted_epoch(workflow),
        );
        let body = Assignment {
            agent_id: agent_id.into(),
            workflow: workflow.into(),
            version,
            content_hash: hash.into(),
            epoch,
            issued_ms: now_ms,
            remove,
            previous_version: extra.and_then(|d| d.previous_version),
            probation: extra.and_then(|d| d.probation).map(|(runs, max_failures)| {
                outpost_common::proto::Probation { runs, max_failures }
            }),
            rollout_id: extra.and_then(|d| d.rollout_id.clone()),
        };
        Some(IssuedAssignment {
            workflow: workflow.into(),
            epoch,
            version,
            content_hash: hash.into(),
            remove,
            signed: signer.sign_assignment(&body),
            issued_ms: now_ms,
        })
    };
    let mut minted = false;
    let mut out = Vec::new();
    for d in desired {
        let prev = current.iter().find(|c| c.workflow == d.workflow);
        match prev {
            Some(p)
                if !p.remove
                    && p.version == d.version
                    && p.content_hash == d.content_hash
                    && !outpost_common::sync::issued_is_stale(
                        p.epoch,
                        accepted_epoch(&d.workflow),
                    ) =>
            {
                out.push(p.clone())
            }
            _ => {
                minted = true;
                out.push(mint(
                    &d.workflow,
                    prev,
                    d.version,
                    &d.content_hash,
                    false,
                    Some(d),
                )?);
            }
        }
    }
    for c in &current {
        if desired.iter().any(|d| d.workflow == c.workflow) {
            continue;
        }
        if c.remove && !outpost_common::sync::issued_is_stale(c.epoch, accepted_epoch(&c.workflow))
        {
            out.push(c.clone());
        } else {
            minted = true;
            out.push(mint(&c.workflow, Some(c), 0, "", true, None)?);
        }
    }
    out.sort_by(|a, b| a.workflow.cmp(&b.workflow));
    Some(Reconciled {
        assignments: out,
        minted,
    })
}
