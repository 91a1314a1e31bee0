//! Deterministic simulation of a hub store restored from older backups under a live agent:
//! `AgentSession` and `HubSession` wired directly (messages delivered in order), with connection
//! drops, agent crashes between a `Resend` and its commit, backups taken at random points and
//! restored at random points, while the agent keeps updating its records.
//!
//! The agent's records are keyed snapshots (as runs are: the hub upserts by key), carried here in
//! `Missed` events (`workflow` = key, `count` = the record's revision). Invariants after healing:
//! the hub holds exactly the agent's records at their latest revision (nothing the agent holds is
//! lost, nothing extra), and the agent deleted only entries the hub had committed at the time.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use outpost_common::proto::{AgentMsg, HubMsg};
use outpost_common::record::{MissedFirings, OutboxEntry, StatusEvent};
use outpost_common::sync::{AgentEvent, AgentSession, AgentSessionConfig, HubEvent, HubSession};
use support::Fleet;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Default)]
struct HubStore {
    committed_seq: u64,
    records: BTreeMap<String, u64>,
}

#[derive(Default)]
struct AgentStore {
    records: BTreeMap<String, u64>,
    outbox: BTreeMap<u64, OutboxEntry>,
    last_seq: u64,
    acked: u64,
    requeued: Option<(u64, u64)>,
}

fn snapshot(key: &str, rev: u64) -> StatusEvent {
    StatusEvent::Missed(MissedFirings {
        workflow: key.into(),
        count: rev,
        first_ms: 0,
        last_ms: 0,
        reason: "sim".into(),
        recorded_ms: 0,
    })
}

impl AgentStore {
    fn append(&mut self, event: StatusEvent) {
        self.last_seq += 1;
        self.outbox.insert(
            self.last_seq,
            OutboxEntry {
                seq: self.last_seq,
                event,
            },
        );
    }
    fn update(&mut self, rng: &mut Rng) {
        let key = format!("run-{}", rng.below(12));
        let rev = self.records.get(&key).copied().unwrap_or(0) + 1;
        self.records.insert(key.clone(), rev);
        self.append(snapshot(&key, rev));
    }
    /// The driver's answer to `AgentEvent::Resend` (as `Store::requeue_held`).
    fn requeue(&mut self, after: u64, upto: u64) {
        if self.requeued == Some((after, upto)) {
            return;
        }
        self.requeued = Some((after, upto));
        let all: Vec<(String, u64)> = self.records.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (k, v) in all {
            self.append(snapshot(&k, v));
        }
    }
}

struct Sim {
    rng: Rng,
    fleet: Fleet,
    agent: AgentStore,
    hub: HubStore,
    backups: Vec<HubStore>,
    restores: u32,
}

impl Sim {
    /// One connection: run until quiescent or until the connection is dropped at random.
    fn session(&mut self, may_drop: bool) {
        let mut a = AgentSession::new(AgentSessionConfig {
            agent_id: support::AGENT.into(),
            software_version: "0".into(),
            labels: vec![],
            active: vec![],
            acked_seq: self.agent.acked,
            last_seq: self.agent.last_seq,
            trust: self.fleet.trust(),
            // A fresh nonce per connection, as the driver draws it.
            session: self.rng.next().to_be_bytes().repeat(2),
            window: 1 + self.rng.below(3) as usize,
            batch: 1 + self.rng.below(6) as usize,
        });
        let mut h = HubSession::new(0, self.fleet.director.clone(), 60_000);
        let mut to_hub: Vec<AgentMsg> = Vec::new();
        let mut to_agent: Vec<HubMsg> = Vec::new();
        for _step in 0..10_000 {
            if may_drop && self.rng.below(60) == 0 {
                return; // connection lost: in-flight messages gone
            }
            if self.rng.below(8) == 0 {
                self.agent.update(&mut self.rng);
                a.handle_outbox_grew(self.agent.last_seq);
            }
            let mut progress = false;
            while let Some(m) = a.poll_transmit() {
                to_hub.push(m);
                progress = true;
            }
            if let Some((after, limit)) = a.poll_need() {
                let got: Vec<OutboxEntry> = self
                    .agent
                    .outbox
                    .range(after + 1..)
                    .take(limit)
                    .map(|(_, e)| e.clone())
                    .collect();
                a.handle_entries(got);
                progress = true;
            }
            while let Some(ev) = a.poll_event() {
                progress = true;
                match ev {
                    AgentEvent::Acked(seq) => {
                        // The agent deletes only what the hub holds committed right now.
                        assert!(seq <= self.hub.committed_seq, "ack {seq} beyond the hub");
                        self.agent.outbox.retain(|s, _| *s > seq);
                        self.agent.acked = self.agent.acked.max(seq);
                    }
                    AgentEvent::Resend {
                        hub_acked,
                        agent_acked,
                    } => {
                        if may_drop && self.rng.below(4) == 0 {
                            return; // agent crash before the requeue committed
                        }
                        self.agent.requeue(hub_acked, agent_acked);
                        a.handle_resent(self.agent.last_seq);
                    }
                    AgentEvent::SeqMismatch { .. }
                    | AgentEvent::Paused(_)
                    | AgentEvent::Fresh { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            for m in std::mem::take(&mut to_hub) {
                h.handle_agent(m, 0).unwrap();
            }
            while let Some(ev) = h.poll_event() {
                progress = true;
                match ev {
                    HubEvent::Hello { .. } => {
                        h.accept(self.hub.committed_seq, vec![], vec![], 0).unwrap();
                    }
                    HubEvent::Ingest { entries } => {
                        for e in &entries {
                            if e.seq <= self.hub.committed_seq {
                                continue;
                            }
                            if let StatusEvent::Missed(m) = &e.event {
                                self.hub.records.insert(m.workflow.clone(), m.count);
                            }
                            self.hub.committed_seq = e.seq;
                        }
                        h.committed(self.hub.committed_seq, 0);
                    }
                    HubEvent::Gap { .. } | HubEvent::ClockOffset { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            while let Some(m) = h.poll_transmit() {
                to_agent.push(m);
                progress = true;
            }
            for m in std::mem::take(&mut to_agent) {
                a.handle_hub(m, 0).unwrap();
            }
            if self.rng.below(40) == 0 {
                self.backups.push(self.hub.clone());
            }
            if !progress && a.is_drained() && a.in_flight() == 0 {
                return;
            }
        }
        panic!("session did not settle");
    }

    fn run(&mut self) {
        for round in 0..40 {
            let healing = round >= 35;
            self.session(!healing);
            if !healing && !self.backups.is_empty() && self.rng.below(3) == 0 {
                // Stop the hub, restore an older copy, start it.
                let i = self.rng.below(self.backups.len() as u64) as usize;
                self.hub = self.backups[i].clone();
                self.restores += 1;
            }
        }
        // Healed: the hub holds exactly what the agent holds, at its latest revision.
        assert_eq!(self.hub.records, self.agent.records);
        assert!(self.agent.outbox.is_empty());
        assert_eq!(self.hub.committed_seq, self.agent.acked);
    }
}

#[test]
fn agents_converge_with_a_hub_restored_from_older_backups() {
    let mut restores = 0;
    for seed in 0..200 {
        let mut sim = Sim {
            rng: Rng(seed),
            fleet: Fleet::new(),
            agent: AgentStore::default(),
            hub: HubStore::default(),
            backups: Vec::new(),
            restores: 0,
        };
        sim.run();
        restores += sim.restores;
    }
    assert!(
        restores > 200,
        "the simulation restored only {restores} times"
    );
}
