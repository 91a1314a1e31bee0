//! Shared fixture of the session tests: a fleet whose root, release and director roles each hold
//! their own (deterministic) key, the agent's [`Trust`] in it, the hub's [`Director`], and
//! signed hub statements for agent [`AGENT`] in the session [`SESSION`].
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use outpost_common::proto::ActiveWorkflow;
use outpost_common::proto::{
    AckBody, Assignment, BundleHeader, Command, CommandBody, HubMsg, SignedBundle, Snapshot,
    SnapshotEntry, Statement,
};
use outpost_common::record::{MissedFirings, OutboxEntry, StatusEvent};
use outpost_common::sync::{AgentSessionConfig, Desired};
use outpost_common::trust::{
    Director, Role, RootBody, SignedRoot, SigningKey, Trust, content_hash, sign_release,
};

/// The agent the statements name.
pub const AGENT: &str = "agent-1";
/// The session nonce the statements carry (the agent's Hello sends it).
pub const SESSION: [u8; 16] = [0x5e; 16];
/// The hub's clock in the statements the fixture signs.
pub const HUB_MS: i64 = 1_700_000_000_000;
/// Lifetime of the first root.
pub const ROOT_TTL_MS: i64 = 365 * 86_400_000;

/// The ed25519 key with this 32-byte seed (PKCS#8 v1, as `openssl genpkey` writes).
pub fn key_from_seed(seed: [u8; 32]) -> SigningKey {
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(&seed);
    SigningKey::from_pkcs8(&v1).unwrap()
}

/// A fixed key per `n`.
pub fn key(n: u8) -> SigningKey {
    key_from_seed([n; 32])
}

/// A fleet: one root key (1-of-1), one release key (1-of-1), one director key.
pub struct Fleet {
    pub root_key: SigningKey,
    pub release_key: SigningKey,
    pub director: Arc<Director>,
    /// The first root (version 1): what an enrolled agent trusts.
    pub first: SignedRoot,
    /// The newest root body.
    pub body: RootBody,
    /// Every root after the first, in order.
    pub chain: Vec<SignedRoot>,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    pub fn new() -> Fleet {
        Self::with_keys(key(1), key(2), key(3))
    }

    pub fn with_keys(root_key: SigningKey, release_key: SigningKey, director: SigningKey) -> Fleet {
        let body = RootBody::first(
            &[root_key.trusted()],
            1,
            &[release_key.trusted()],
            1,
            &director.trusted(),
            0,
            HUB_MS + ROOT_TTL_MS,
        );
        let first = body.sign(&[&root_key]);
        Fleet {
            root_key,
            release_key,
            director: Arc::new(Director::new(director)),
            first,
            body,
            chain: Vec::new(),
        }
    }

    /// What an enrolled agent trusts: the first root.
    pub fn trust(&self) -> Trust {
        Trust::new(self.first.clone()).unwrap()
    }

    /// The trust of an agent that followed every root so far.
    pub fn newest_trust(&self) -> Trust {
        let mut t = self.trust();
        t.update(&self.chain).unwrap();
        t
    }

    /// The roots after `version`, as a hub sends them to an agent that trusts `version`.
    pub fn roots_after(&self, version: u64) -> Vec<SignedRoot> {
        self.chain
            .iter()
            .filter(|r| r.body_unverified().is_ok_and(|b| b.version > version))
            .cloned()
            .collect()
    }

    /// Rotate the director key: the root key signs the successor root naming `new` as the
    /// director; the fleet's director is `new` from now on. Returns the new root.
    pub fn rotate_director(&mut self, new: SigningKey, now_ms: i64) -> SignedRoot {
        let mut next = self.body.successor(now_ms, now_ms + ROOT_TTL_MS);
        next.set_key(Role::Director, &self.director.key().trusted(), false);
        next.set_key(Role::Director, &new.trusted(), true);
        let signed = next.sign(&[&self.root_key]);
        self.body = next;
        self.chain.push(signed.clone());
        self.director = Arc::new(Director::new(new));
        signed
    }

    /// An acknowledgement of `seq` for `agent` in `session`, by the fleet's director.
    pub fn ack_for(&self, agent: &str, session: &[u8], seq: u64) -> Statement {
        self.director.sign_ack(&AckBody {
            agent_id: agent.into(),
            session: session.to_vec(),
            seq,
            hub_time_ms: HUB_MS,
        })
    }

    /// An acknowledgement of `seq` for [`AGENT`] in [`SESSION`].
    pub fn ack(&self, seq: u64) -> Statement {
        self.ack_for(AGENT, &SESSION, seq)
    }

    /// A snapshot for [`AGENT`] in [`SESSION`], signed at [`HUB_MS`], fresh for a day.
    pub fn snapshot(&self, workflows: Vec<SnapshotEntry>) -> Statement {
        self.director.sign_snapshot(&Snapshot {
            agent_id: AGENT.into(),
            session: SESSION.to_vec(),
            issued_ms: HUB_MS,
            expires_ms: HUB_MS + 86_400_000,
            workflows,
        })
    }

    /// A Welcome acknowledging `acked`, with `paused` and an empty snapshot.
    pub fn welcome(&self, acked: u64, paused: Vec<String>) -> HubMsg {
        HubMsg::Welcome {
            ack: self.ack(acked),
            roots: vec![],
            paused,
            snapshot: self.snapshot(vec![]),
            replicas: None,
        }
    }

    /// A command for [`AGENT`] in [`SESSION`], issued at [`HUB_MS`], valid `ttl_ms`.
    pub fn command(&self, id: u64, command: Command, ttl_ms: i64) -> HubMsg {
        HubMsg::Command {
            id,
            command: self.director.sign_command(&CommandBody {
                agent_id: AGENT.into(),
                session: SESSION.to_vec(),
                id,
                issued_ms: HUB_MS,
                expires_ms: HUB_MS + ttl_ms,
                command,
            }),
        }
    }

    /// A version of `workflow`, released (signed by the release key).
    pub fn release(
        &self,
        workflow: &str,
        version: u64,
        content: &[u8],
        now_ms: i64,
    ) -> SignedBundle {
        let header = BundleHeader {
            workflow: workflow.into(),
            version,
            content_hash: content_hash(content),
            created_ms: now_ms,
            target: vec![],
            format: "yaml".into(),
        };
        let header_bytes = minicbor::to_vec(&header).unwrap();
        SignedBundle {
            release: vec![sign_release(&self.release_key, &header_bytes)],
            header_bytes,
            content: content.to_vec(),
        }
    }

    /// The desired state "`agent` runs `version` of `workflow` at `epoch`": a released version
    /// and the director's assignment of it (with the bundle).
    pub fn desired(
        &self,
        agent: &str,
        workflow: &str,
        version: u64,
        epoch: u64,
        now_ms: i64,
    ) -> Desired {
        let content = format!("name: {workflow}\n# version {version}\n").into_bytes();
        let bundle = self.release(workflow, version, &content, now_ms);
        let assignment = Assignment {
            agent_id: agent.into(),
            workflow: workflow.into(),
            version,
            content_hash: content_hash(&content),
            epoch,
            issued_ms: now_ms,
            remove: false,
            previous_version: None,
            probation: None,
            rollout_id: None,
        };
        Desired {
            workflow: workflow.into(),
            version,
            epoch,
            content_hash: assignment.content_hash.clone(),
            assignment: self.director.sign_assignment(&assignment),
            bundle: Some(bundle),
        }
    }
}

/// An outbox entry (a missed-firings record) with seq `seq`.
pub fn entry(seq: u64) -> OutboxEntry {
    OutboxEntry {
        seq,
        event: StatusEvent::Missed(MissedFirings {
            workflow: "w".into(),
            count: seq,
            first_ms: 0,
            last_ms: 0,
            reason: "test".into(),
            recorded_ms: seq as i64,
        }),
    }
}

pub fn entries(from: u64, to: u64) -> Vec<OutboxEntry> {
    (from..=to).map(entry).collect()
}

/// The agent session's configuration: the fleet's trust, AGENT, SESSION, one active workflow.
pub fn cfg_in(f: &Fleet, acked: u64, last: u64, window: usize, batch: usize) -> AgentSessionConfig {
    AgentSessionConfig {
        agent_id: AGENT.into(),
        software_version: "0.1.0".into(),
        labels: vec![],
        active: vec![ActiveWorkflow {
            workflow: "etl".into(),
            version: 2,
            epoch: 4,
            paused: false,
            highest_version: None,
        }],
        acked_seq: acked,
        last_seq: last,
        trust: f.trust(),
        session: SESSION.to_vec(),
        window,
        batch,
    }
}

/// cfg_in with a fresh fleet.
pub fn cfg(acked: u64, last: u64, window: usize, batch: usize) -> AgentSessionConfig {
    cfg_in(&Fleet::new(), acked, last, window, batch)
}
