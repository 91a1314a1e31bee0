//! Which replica holds each connected agent's session, and what the agent runs (HA mode): the
//! replicated `agent_presence` table. Each replica writes the records of the agents connected
//! to it ([`Store::sync_presence`], in one write per period); the leader's rollout controllers
//! read them, so an agent served by another replica is a member that is online and on the
//! version it reported there.

use std::collections::HashMap;

use minicbor::{Decode, Encode};
use outpost_common::proto::ActiveWorkflow;
use redb::{ReadableDatabase, ReadableTable};

use super::error::{StoreError, decode, encode};
use super::file::Store;
use super::replicated::Scope;
use super::schema::PRESENCE;

/// One agent's presence.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PresenceRecord {
    /// The replica (its `[ha] name`) that holds the agent's session.
    #[n(0)]
    pub replica: String,
    /// The workflows the agent runs, as it reported them there.
    #[n(1)]
    pub active: Vec<ActiveWorkflow>,
    /// When its session there began (ms).
    #[n(2)]
    pub since_ms: i64,
}

impl Store {
    /// Make the presence records of replica `me` say exactly `connected` (agent id → when its
    /// session began, what it runs): add and update those, remove `me`'s records of agents no longer connected. An
    /// agent that moved here from another replica is taken over. One write, and none when
    /// nothing changed. How many records changed.
    pub fn sync_presence(
        &self,
        me: &str,
        connected: &HashMap<String, (i64, Vec<ActiveWorkflow>)>,
    ) -> Result<usize, StoreError> {
        let txn = self.begin_write_in(Scope::Only(&["agent_presence"]))?;
        let changed = {
            let mut t = txn.open_table(PRESENCE)?;
            let mut stale = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for e in t.iter()? {
                let (k, v) = e?;
                let id = k.value().to_string();
                let rec: PresenceRecord = decode(v.value(), "agent_presence", &id)?;
                match connected.get(&id) {
                    Some((since, active))
                        if rec.replica == me && rec.active == *active && rec.since_ms == *since =>
                    {
                        seen.insert(id);
                    }
                    // A newer session at another replica holds it (this one's is stale and
                    // about to end): left alone, or the two would rewrite each other's record
                    // at every period until it ends.
                    Some((since, _)) if rec.replica != me && rec.since_ms > *since => {
                        seen.insert(id);
                    }
                    Some(_) => {}
                    None if rec.replica == me => stale.push(id),
                    None => {}
                }
            }
            let mut n = stale.len();
            for id in &stale {
                t.remove(id.as_str())?;
            }
            for (id, (since, active)) in connected.iter().filter(|(id, _)| !seen.contains(*id)) {
                let rec = PresenceRecord {
                    replica: me.to_string(),
                    active: active.clone(),
                    since_ms: *since,
                };
                t.insert(id.as_str(), encode(&rec)?.as_slice())?;
                n += 1;
            }
            n
        };
        if changed == 0 {
            txn.abort()?;
            return Ok(0);
        }
        txn.commit()?;
        Ok(changed)
    }

    /// Every presence record, by agent id (empty in embedded mode).
    pub fn presence(&self) -> Result<HashMap<String, PresenceRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = match txn.open_table(PRESENCE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = HashMap::new();
        for e in t.iter()? {
            let (k, v) = e?;
            let id = k.value().to_string();
            let rec = decode(v.value(), "agent_presence", &id)?;
            out.insert(id, rec);
        }
        Ok(out)
    }
}
