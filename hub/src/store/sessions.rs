//! Which hub process holds each agent's live session: the shared record that keeps the
//! one-live-session rule (a copied agent state is refused, a restarted agent is not) valid when
//! several hub processes serve the same store. See docs/security.md, "One live session per
//! agent".
//!
//! The `agent_sessions` table (`agent_id -> cbor SessionLease`) is created by the first write;
//! it holds nothing that outlives a session's usefulness, so a store without it (older or
//! restored) simply has no live sessions on record.

use minicbor::{Decode, Encode};
use outpost_common::record::UnixMillis;
use redb::{ReadableTable, TableDefinition};

use super::error::{StoreError, decode, encode};
use super::file::Store;

/// `agent_sessions`: `agent_id -> cbor SessionLease`.
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new(TABLE_NAME);

/// The table's name (left out of backups: see `backup.rs`).
pub(crate) const TABLE_NAME: &str = "agent_sessions";

/// The record of an agent's live session.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SessionLease {
    /// The session: `<hub process id>#<n>`.
    #[n(0)]
    pub holder: String,
    /// The agent's address as the holding hub process sees it.
    #[n(1)]
    pub peer: String,
    /// When the session started.
    #[n(2)]
    pub since_ms: UnixMillis,
    /// When the holder last saw the connection alive (packets arriving).
    #[n(3)]
    pub renewed_ms: UnixMillis,
}

impl Store {
    /// Record `lease` as the agent's live session, unless another hub process (holder not
    /// starting with `process`) holds a session renewed less than `stale_after_ms` ago: that
    /// one is returned and nothing is written. A session of this process is decided by the
    /// caller (it can probe its own connection), so it is replaced.
    pub(crate) fn claim_session(
        &self,
        agent_id: &str,
        process: &str,
        lease: &SessionLease,
        stale_after_ms: i64,
    ) -> Result<Option<SessionLease>, StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(SESSIONS)?;
            let current: Option<SessionLease> = match t.get(agent_id)? {
                Some(v) => Some(decode(v.value(), "agent_sessions", agent_id)?),
                None => None,
            };
            if let Some(c) = current
                && !c.holder.starts_with(process)
                && lease.since_ms.saturating_sub(c.renewed_ms) < stale_after_ms
            {
                return Ok(Some(c));
            }
            t.insert(agent_id, encode(lease)?.as_slice())?;
            Ok(None)
        })
    }

    /// Renew the sessions `holders` (agent id, holder) at `now_ms`, in one transaction; a
    /// record held by another session is left alone.
    pub(crate) fn renew_sessions(
        &self,
        holders: &[(String, String)],
        now_ms: UnixMillis,
    ) -> Result<(), StoreError> {
        if holders.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut t = txn.open_table(SESSIONS)?;
            for (agent, holder) in holders {
                let current: Option<SessionLease> = match t.get(agent.as_str())? {
                    Some(v) => Some(decode(v.value(), "agent_sessions", agent)?),
                    None => None,
                };
                if let Some(mut c) = current
                    && c.holder == *holder
                {
                    c.renewed_ms = now_ms;
                    t.insert(agent.as_str(), encode(&c)?.as_slice())?;
                }
            }
            Ok(())
        })
    }

    /// The session `holder` of the agent ended: remove its record (not a newer session's).
    pub(crate) fn release_session(&self, agent_id: &str, holder: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(SESSIONS)?;
            let mine = match t.get(agent_id)? {
                Some(v) => {
                    decode::<SessionLease>(v.value(), "agent_sessions", agent_id)?.holder == holder
                }
                None => false,
            };
            if mine {
                t.remove(agent_id)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, at: i64) -> SessionLease {
        SessionLease {
            holder: holder.into(),
            peer: "10.0.0.1:1".into(),
            since_ms: at,
            renewed_ms: at,
        }
    }

    #[test]
    fn another_process_holding_a_fresh_session_refuses_a_stale_one_gives_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hub.redb")).unwrap();
        // Process A holds agent-1's session.
        assert_eq!(
            store
                .claim_session("agent-1", "A#", &lease("A#1", 1_000), 15_000)
                .unwrap(),
            None
        );
        // Process B, 5 s later: A's session is fresh, B's newcomer is refused.
        let held = store
            .claim_session("agent-1", "B#", &lease("B#1", 6_000), 15_000)
            .unwrap();
        assert_eq!(held.map(|l| l.holder).as_deref(), Some("A#1"));
        // A renews while its connection is alive; B is still refused at 20 s.
        store
            .renew_sessions(&[("agent-1".into(), "A#1".into())], 10_000)
            .unwrap();
        assert!(
            store
                .claim_session("agent-1", "B#", &lease("B#2", 20_000), 15_000)
                .unwrap()
                .is_some()
        );
        // A's connection died (no renewal): at 26 s the record is stale, B takes over.
        assert_eq!(
            store
                .claim_session("agent-1", "B#", &lease("B#3", 26_000), 15_000)
                .unwrap(),
            None
        );
        // A process replaces its own session (it probes its own connection first).
        assert_eq!(
            store
                .claim_session("agent-1", "B#", &lease("B#4", 26_500), 15_000)
                .unwrap(),
            None
        );
        // A late release or renewal from an older session touches nothing.
        store.release_session("agent-1", "B#3").unwrap();
        store
            .renew_sessions(&[("agent-1".into(), "A#1".into())], 27_000)
            .unwrap();
        assert!(
            store
                .claim_session("agent-1", "A#", &lease("A#2", 28_000), 15_000)
                .unwrap()
                .is_some()
        );
        store.release_session("agent-1", "B#4").unwrap();
        assert_eq!(
            store
                .claim_session("agent-1", "A#", &lease("A#3", 28_000), 15_000)
                .unwrap(),
            None
        );
    }
}
