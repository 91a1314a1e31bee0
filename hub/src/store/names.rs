//! Agent names (unique, changeable aliases of the ids in the certificates) and decommissioning.
//!
//! Every command that takes an agent takes its id or its name ([`Store::resolve_agent`]). A
//! name is 1 to 63 characters of `A-Z a-z 0-9 . _ -`, starts with a letter or a digit and never
//! with `agent-` (the ids' prefix), so a name and an id can never be mistaken for each other.

use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::audit::audit_in;
use super::error::{StoreError, decode, encode};
use super::file::Store;
use super::records::AgentRecord;
use super::schema::{
    AGENT_NAMES, AGENT_VERSIONS, AGENTS, ASSIGNMENTS, DEPLOY_RESULTS, FIRING_WATCH, ROLLOUT_AGENTS,
};

/// Longest agent name.
pub const MAX_NAME_LEN: usize = 63;

/// Why `name` is not a valid agent name, if it is not.
pub fn check_agent_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !ok_chars
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(format!(
            "invalid agent name {name:?}: 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -, \
             starting with a letter or a digit"
        ));
    }
    if name.starts_with("agent-") {
        return Err(format!(
            "invalid agent name {name:?}: `agent-` starts agent ids, not names"
        ));
    }
    Ok(())
}

/// The name an agent gets from its host name when the operator gave none: the host name with
/// every other character made `-`, cut to fit (`host` if nothing is left).
pub fn default_agent_name(hostname: &str) -> String {
    let mut s: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    s = s
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if s.starts_with("agent-") {
        s = format!("host-{s}");
    }
    s.truncate(MAX_NAME_LEN - 4); // room for a `-NNN` suffix
    if s.is_empty() { "host".into() } else { s }
}

/// Give `id` the name `wanted` in `txn`: exactly (`exact`; taken is an error) or, when taken,
/// the first of `wanted-2`, `wanted-3`, ... that is free. Returns the name given.
pub(super) fn claim_name(
    txn: &WriteTransaction,
    wanted: &str,
    id: &str,
    exact: bool,
) -> Result<String, StoreError> {
    check_agent_name(wanted).map_err(StoreError::Refused)?;
    let mut names = txn.open_table(AGENT_NAMES)?;
    let mut candidate = wanted.to_string();
    for n in 2..=1000u32 {
        let holder = names
            .get(candidate.as_str())?
            .map(|v| v.value().to_string());
        match holder {
            None => {
                names.insert(candidate.as_str(), id)?;
                return Ok(candidate);
            }
            Some(h) if h == id => return Ok(candidate),
            Some(h) if exact => {
                return Err(StoreError::Conflict(format!(
                    "agent name {candidate} is taken by {h}: choose another (enroll --name, \
                     agent rename)"
                )));
            }
            Some(_) => candidate = format!("{wanted}-{n}"),
        }
    }
    Err(StoreError::Conflict(format!(
        "agent name {wanted} and its suffixes up to -1000 are taken"
    )))
}

/// What [`Store::decommission`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decommissioned {
    /// The agent's id.
    pub id: String,
    /// False: it was decommissioned before (nothing changed).
    pub changed: bool,
    /// The name it freed.
    pub freed_name: Option<String>,
    /// Assignments removed.
    pub assignments: usize,
}

impl Store {
    /// The id of the agent `id_or_name` names: an enrolled agent's id, else a current name.
    pub fn resolve_agent(&self, id_or_name: &str) -> Result<String, StoreError> {
        let txn = self.db().begin_read()?;
        if txn.open_table(AGENTS)?.get(id_or_name)?.is_some() {
            return Ok(id_or_name.to_string());
        }
        match txn.open_table(AGENT_NAMES)?.get(id_or_name)? {
            Some(id) => Ok(id.value().to_string()),
            None => Err(StoreError::NoAgent(id_or_name.into())),
        }
    }

    /// Rename an agent (`id_or_name`) to `new`, which must be a valid name no other agent
    /// holds; its old name is freed. A decommissioned agent cannot be renamed. Returns (id, old
    /// name).
    pub fn rename_agent(
        &self,
        id_or_name: &str,
        new: &str,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<(String, Option<String>), StoreError> {
        check_agent_name(new).map_err(StoreError::Refused)?;
        let id = self.resolve_agent(id_or_name)?;
        let txn = self.begin_write()?;
        let old = {
            let mut agents = txn.open_table(AGENTS)?;
            let mut rec: AgentRecord = match agents.get(id.as_str())? {
                Some(v) => decode(v.value(), "agents", &id)?,
                None => return Err(StoreError::NoAgent(id)),
            };
            if rec.decommissioned_ms.is_some() {
                return Err(StoreError::Conflict(format!(
                    "agent {id} is decommissioned: its name cannot change"
                )));
            }
            claim_name(&txn, new, &id, true)?;
            let old = rec.name.replace(new.to_string());
            if let Some(o) = old.as_deref().filter(|o| *o != new) {
                let mut names = txn.open_table(AGENT_NAMES)?;
                let holds = names.get(o)?.is_some_and(|h| h.value() == id);
                if holds {
                    names.remove(o)?;
                }
            }
            agents.insert(id.as_str(), encode(&rec)?.as_slice())?;
            old
        };
        let detail = format!("{} -> {new}", old.as_deref().unwrap_or("(unnamed)"));
        audit_in(&txn, now_ms, actor, "agent.rename", &id, &detail)?;
        txn.commit()?;
        Ok((id, old))
    }

    /// Decommission an agent (`id_or_name`), in one transaction: revoke it for good, remove its
    /// assignments, rollout assignments, deploy results, held versions and firing watches, free
    /// its name. Its runs, tasks and missed-firing records stay (history); its certificate and
    /// token are never accepted again. Idempotent.
    pub fn decommission(
        &self,
        id_or_name: &str,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<Decommissioned, StoreError> {
        let id = self.resolve_agent(id_or_name)?;
        let txn = self.begin_write()?;
        let (changed, freed_name) = {
            let mut agents = txn.open_table(AGENTS)?;
            let mut rec: AgentRecord = match agents.get(id.as_str())? {
                Some(v) => decode(v.value(), "agents", &id)?,
                None => return Err(StoreError::NoAgent(id)),
            };
            let changed = rec.decommissioned_ms.is_none();
            rec.decommissioned_ms.get_or_insert(now_ms);
            rec.revoked_ms.get_or_insert(now_ms);
            agents.insert(id.as_str(), encode(&rec)?.as_slice())?;
            let mut freed = None;
            if let Some(n) = rec.name.as_deref() {
                let mut names = txn.open_table(AGENT_NAMES)?;
                let holds = names.get(n)?.is_some_and(|h| h.value() == id);
                if holds {
                    names.remove(n)?;
                    freed = Some(n.to_string());
                }
            }
            (changed, freed)
        };
        // Every key (id, ...) lies in [(id, min..), (id + "\0", min..)).
        let a = id.as_str();
        let next = format!("{id}\0");
        let b = next.as_str();
        let assignments = {
            let mut t = txn.open_table(ASSIGNMENTS)?;
            let n = t.range((a, "")..(b, ""))?.count();
            t.retain_in((a, "")..(b, ""), |_, _| false)?;
            n
        };
        txn.open_table(ROLLOUT_AGENTS)?
            .retain_in((a, "", "")..(b, "", ""), |_, _| false)?;
        txn.open_table(AGENT_VERSIONS)?
            .retain_in((a, "", 0u64)..(b, "", 0u64), |_, _| false)?;
        txn.open_table(DEPLOY_RESULTS)?
            .retain_in((a, "")..(b, ""), |_, _| false)?;
        txn.open_table(FIRING_WATCH)?
            .retain_in((a, "")..(b, ""), |_, _| false)?;
        if changed {
            let detail = format!(
                "name {}, {assignments} assignment(s) removed",
                freed_name.as_deref().unwrap_or("-")
            );
            audit_in(&txn, now_ms, actor, "agent.decommission", &id, &detail)?;
        }
        txn.commit()?;
        Ok(Decommissioned {
            id,
            changed,
            freed_name,
            assignments,
        })
    }
}
