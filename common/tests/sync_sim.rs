//! Deterministic simulation: `AgentSession` and `HubSession` wired through an in-process link with
//! a virtual clock, over many seeds, with partitions, agent restarts and hub restarts, while the
//! agent keeps generating outbox entries and the operator keeps changing the desired versions
//! (and rotates the director key through a new root: the hub ends its live session with
//! Goodbye, signs new sessions with the new director, and the agent follows the roots its next
//! Welcome carries).
//!
//! A QUIC stream is reliable and ordered within a connection, so loss is modelled as the loss of
//! the connection: everything in flight on it is gone, and both sessions are dropped. What is
//! durable: the agent's outbox, acked seq, trust and per-workflow anti-rollback state; the hub's
//! committed entries and seq, desired state, root chain and director key. Commits at the hub
//! take time and are lost if the hub restarts before they finish.
//!
//! Invariants checked after healing: the hub committed exactly the agent's generated entries, in
//! order (no gap, no duplicate); the agent deleted only entries the hub had committed (checked at
//! every deletion); each workflow converges to the desired (version, epoch); each assignment epoch
//! is activated at most once and versions never go back; while a session is up, the agent's
//! view of the director (its newest snapshot) never expires (the hub re-signs it in time).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, VecDeque};

use outpost_common::frame::{self, FrameDecoder};
use outpost_common::proto::{ActiveWorkflow, Assignment, MAX_FRAME, SESSION_NONCE_LEN};
use outpost_common::record::{MissedFirings, OutboxEntry, StatusEvent};
use outpost_common::sync::{
    AgentEvent, AgentSession, AgentSessionConfig, Desired, HubEvent, HubSession,
};
use outpost_common::trust::{Trust, WorkflowTrustState, check_deploy};
use support::{Fleet, key_from_seed};

const AGENT: &str = "agent-0123456789abcdef";
/// Lifetime of a session's snapshot (re-signed at half of it).
const SNAPSHOT_TTL_MS: i64 = 2_000;
const WORKFLOWS: [&str; 2] = ["etl", "backup"];

/// splitmix64: small, deterministic, good enough for fault injection.
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
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

struct AgentDurable {
    outbox: BTreeMap<u64, OutboxEntry>,
    last_seq: u64,
    acked: u64,
    generated: Vec<OutboxEntry>,
    trust: Trust,
    wf: BTreeMap<String, WorkflowTrustState>,
    active: BTreeMap<String, (u64, u64)>,
    activations: Vec<(String, u64, u64)>,
}

struct HubDurable {
    committed: Vec<OutboxEntry>,
    committed_seq: u64,
    /// The root key, the release key, the director key and the roots after the first.
    fleet: Fleet,
    desired: BTreeMap<String, Desired>,
    versions: BTreeMap<String, u64>,
    epochs: BTreeMap<String, u64>,
    changes: BTreeMap<String, u64>,
}

impl HubDurable {
    /// The operator applies a new version of `wf` (a change or a rollback: always a new, higher
    /// version), or the hub re-issues the assignment (new epoch, e.g. after a key rotation).
    fn assign(&mut self, wf: &str, new_version: bool, now: i64) {
        let version = self.versions.entry(wf.to_string()).or_insert(0);
        if new_version || *version == 0 {
            *version += 1;
        }
        let version = *version;
        let epoch = {
            let e = self.epochs.entry(wf.to_string()).or_insert(0);
            *e += 1;
            *e
        };
        *self.changes.entry(wf.to_string()).or_insert(0) += 1;
        let d = self.fleet.desired(AGENT, wf, version, epoch, now);
        self.desired.insert(wf.to_string(), d);
    }

    /// A root rotation that replaces the director key (the root key signs the new root); the
    /// assignments are issued again by the new director (new epochs).
    fn rotate(&mut self, rng: &mut Rng, now: i64) {
        let mut seed = [0u8; 32];
        for c in seed.chunks_mut(8) {
            c.copy_from_slice(&rng.next().to_be_bytes());
        }
        self.fleet.rotate_director(key_from_seed(seed), now);
        for wf in WORKFLOWS {
            self.assign(wf, rng.chance(300), now);
        }
    }

    fn desired_list(&self) -> Vec<Desired> {
        self.desired.values().cloned().collect()
    }
}

/// One direction of a connection: byte chunks with delivery times, and the receiver's decoder.
#[derive(Default)]
struct Pipe {
    chunks: VecDeque<(i64, Vec<u8>)>,
    last_at: i64,
    decoder: FrameDecoder,
}

impl Pipe {
    fn send(&mut self, rng: &mut Rng, now: i64, frame: Vec<u8>) {
        let at = (now + 1 + rng.below(30) as i64).max(self.last_at);
        self.last_at = at;
        // Split into pieces to exercise the decoder.
        let mut rest = frame.as_slice();
        while !rest.is_empty() {
            let n = (1 + rng.below(rest.len() as u64)) as usize;
            self.chunks.push_back((at, rest[..n].to_vec()));
            rest = &rest[n..];
        }
    }

    fn recv(&mut self, now: i64) -> Vec<Vec<u8>> {
        while self.chunks.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, c)) = self.chunks.pop_front() {
                self.decoder.push(&c);
            }
        }
        let mut out = Vec::new();
        while let Some(f) = self.decoder.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.decoder.buffered() == 0
    }
}

struct Conn {
    agent: AgentSession,
    hub: HubSession,
    to_hub: Pipe,
    to_agent: Pipe,
    commits: VecDeque<(i64, Vec<OutboxEntry>)>,
    /// The hub ended this session (director rotated); the agent closes on its Goodbye.
    retiring: bool,
    /// Expiry (hub time) of the newest snapshot the agent verified in this session.
    fresh_until: Option<i64>,
}

struct Sim {
    rng: Rng,
    now: i64,
    agent: AgentDurable,
    hub: HubDurable,
    conn: Option<Conn>,
    down_until: i64,
    stats: Stats,
}

#[derive(Default, Debug)]
struct Stats {
    partitions: u64,
    agent_restarts: u64,
    hub_restarts: u64,
    connections: u64,
    deploy_rejections: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let fleet = Fleet::new();
        let trust: Trust = fleet.trust();
        let mut hub = HubDurable {
            committed: Vec::new(),
            committed_seq: 0,
            fleet,
            desired: BTreeMap::new(),
            versions: BTreeMap::new(),
            epochs: BTreeMap::new(),
            changes: BTreeMap::new(),
        };
        for wf in WORKFLOWS {
            hub.assign(wf, true, 0);
        }
        let _ = rng.next();
        Sim {
            rng,
            now: 0,
            agent: AgentDurable {
                outbox: BTreeMap::new(),
                last_seq: 0,
                acked: 0,
                generated: Vec::new(),
                trust,
                wf: BTreeMap::new(),
                active: BTreeMap::new(),
                activations: Vec::new(),
            },
            hub,
            conn: None,
            down_until: 0,
            stats: Stats::default(),
        }
    }

    fn generate(&mut self) {
        let n = 1 + self.rng.below(3);
        for _ in 0..n {
            self.agent.last_seq += 1;
            let seq = self.agent.last_seq;
            let e = OutboxEntry {
                seq,
                event: StatusEvent::Missed(MissedFirings {
                    workflow: WORKFLOWS[(seq % 2) as usize].into(),
                    count: self.rng.below(100),
                    first_ms: self.now,
                    last_ms: self.now,
                    reason: "sim".into(),
                    recorded_ms: self.now,
                }),
            };
            self.agent.outbox.insert(seq, e.clone());
            self.agent.generated.push(e);
        }
        if let Some(c) = &mut self.conn {
            c.agent.handle_outbox_grew(self.agent.last_seq);
        }
    }

    fn connect(&mut self) {
        self.stats.connections += 1;
        let active = self
            .agent
            .active
            .iter()
            .map(|(w, (v, e))| ActiveWorkflow {
                workflow: w.clone(),
                version: *v,
                epoch: *e,
                paused: false,
                highest_version: None,
            })
            .collect();
        let agent = AgentSession::new(AgentSessionConfig {
            agent_id: AGENT.into(),
            software_version: "0.1.0".into(),
            labels: vec![],
            active,
            acked_seq: self.agent.acked,
            last_seq: self.agent.last_seq,
            trust: self.agent.trust.clone(),
            // A fresh random nonce per connection.
            session: (0..SESSION_NONCE_LEN)
                .map(|_| self.rng.next() as u8)
                .collect(),
            window: 1 + self.rng.below(4) as usize,
            batch: 1 + self.rng.below(16) as usize,
        });
        // A new session is signed by the current director.
        let mut hub = HubSession::new(self.now, self.hub.fleet.director.clone(), SNAPSHOT_TTL_MS);
        hub.set_desired(self.hub.desired_list(), self.now);
        self.conn = Some(Conn {
            agent,
            hub,
            to_hub: Pipe::default(),
            to_agent: Pipe::default(),
            commits: VecDeque::new(),
            retiring: false,
            fresh_until: None,
        });
    }

    fn fault(&mut self) {
        let r = self.rng.below(1000);
        if r < 4 {
            self.stats.partitions += 1;
            self.conn = None;
            self.down_until = self.now + self.rng.below(3000) as i64;
        } else if r < 6 {
            // Agent restart: session (and anything read but unsent) lost; store kept.
            self.stats.agent_restarts += 1;
            self.conn = None;
            self.down_until = self.now + self.rng.below(300) as i64;
        } else if r < 8 {
            // Hub restart: sessions and unfinished commits lost; committed data kept.
            self.stats.hub_restarts += 1;
            self.conn = None;
            self.down_until = self.now + self.rng.below(1000) as i64;
        }
    }

    fn operator(&mut self) {
        let r = self.rng.below(1000);
        let changed = if r < 3 {
            let wf = WORKFLOWS[self.rng.below(2) as usize];
            let new_version = self.rng.chance(800);
            self.hub.assign(wf, new_version, self.now);
            false
        } else if r < 4 && self.hub.fleet.chain.len() < 2 {
            self.hub.rotate(&mut self.rng, self.now);
            if let Some(c) = &mut self.conn {
                // The live session is signed by the old director: the hub ends it; the agent
                // reconnects and its next Welcome carries the new root.
                c.hub.refuse("director key rotated".into());
                c.retiring = true;
            }
            return;
        } else {
            true
        };
        if !changed
            && let Some(c) = &mut self.conn
            && !c.retiring
        {
            c.hub.set_desired(self.hub.desired_list(), self.now);
        }
    }

    /// Run everything that can happen at `self.now` on the live connection.
    fn pump(&mut self) {
        let Some(c) = &mut self.conn else { return };
        let rng = &mut self.rng;
        let now = self.now;
        let mut close = false;
        let mut goodbye = false;
        c.hub.tick(now);
        for _round in 0..100 {
            let mut progress = false;
            // Agent driver.
            while let Some((after, limit)) = c.agent.poll_need() {
                let got = self
                    .agent
                    .outbox
                    .range(after + 1..)
                    .take(limit)
                    .map(|(_, e)| e.clone())
                    .collect();
                c.agent.handle_entries(got);
                progress = true;
            }
            while let Some(ev) = c.agent.poll_event() {
                progress = true;
                match ev {
                    AgentEvent::Acked(seq) => {
                        assert!(
                            seq <= self.hub.committed_seq,
                            "agent told to delete up to {seq}, hub committed {}",
                            self.hub.committed_seq
                        );
                        self.agent.outbox.retain(|&s, _| s > seq);
                        self.agent.acked = self.agent.acked.max(seq);
                    }
                    AgentEvent::Deploy {
                        assignment,
                        bundle,
                        snapshot,
                    } => {
                        let wf = minicbor::decode::<Assignment>(&assignment.body_bytes)
                            .map(|a| a.workflow)
                            .unwrap_or_default();
                        let state = self.agent.wf.get(&wf).cloned().unwrap_or_default();
                        match check_deploy(
                            AGENT,
                            &self.agent.trust,
                            &state,
                            snapshot.as_ref(),
                            &assignment,
                            bundle.as_ref(),
                            now,
                        ) {
                            Ok(acc) => {
                                let a = acc.assignment;
                                let s = self.agent.wf.entry(a.workflow.clone()).or_default();
                                s.last_epoch = a.epoch;
                                s.highest_version = s.highest_version.max(a.version);
                                if !s.held_versions.contains(&a.version) {
                                    s.held_versions.push(a.version);
                                }
                                self.agent
                                    .active
                                    .insert(a.workflow.clone(), (a.version, a.epoch));
                                self.agent.activations.push((
                                    a.workflow.clone(),
                                    a.version,
                                    a.epoch,
                                ));
                                c.agent
                                    .send_deploy_result(a.workflow, a.version, a.epoch, None);
                            }
                            Err(r) => {
                                self.stats.deploy_rejections += 1;
                                c.agent.send_deploy_result(wf, 0, 0, Some(r));
                            }
                        }
                    }
                    AgentEvent::Roots {
                        trust,
                        reset_counters,
                    } => {
                        assert!(!reset_counters, "the sim's roots never reset counters");
                        assert!(trust.version() > self.agent.trust.version());
                        self.agent.trust = trust;
                    }
                    AgentEvent::Fresh {
                        hub_ms, expires_ms, ..
                    } => {
                        assert!(expires_ms > hub_ms);
                        c.fresh_until = Some(expires_ms);
                    }
                    AgentEvent::Goodbye(_) => {
                        assert!(c.retiring, "Goodbye only after a rotation");
                        goodbye = true;
                    }
                    AgentEvent::Paused(_) | AgentEvent::Replicas(_) => {}
                    AgentEvent::Command { .. } => {}
                    ev @ (AgentEvent::SeqMismatch { .. }
                    | AgentEvent::Resend { .. }
                    | AgentEvent::RenewRequired(_)
                    | AgentEvent::Certificate(_)
                    | AgentEvent::CaRoots(_)) => {
                        panic!("unexpected {ev:?}")
                    }
                }
            }
            while let Some(m) = c.agent.poll_transmit() {
                let f = frame::encode(&m).unwrap();
                assert!(f.len() <= MAX_FRAME + 4);
                c.to_hub.send(rng, now, f);
                progress = true;
            }
            // Link.
            for f in c.to_hub.recv(now) {
                let m = frame::decode_agent_msg(&f).unwrap().unwrap();
                c.hub.handle_agent(m, now).unwrap();
                progress = true;
            }
            // Hub driver.
            while c.commits.front().is_some_and(|(at, _)| *at <= now) {
                let Some((_, entries)) = c.commits.pop_front() else {
                    break;
                };
                let mut last = 0;
                for e in entries {
                    last = e.seq;
                    if e.seq <= self.hub.committed_seq {
                        continue;
                    }
                    assert_eq!(e.seq, self.hub.committed_seq + 1, "gap at the hub");
                    self.hub.committed_seq = e.seq;
                    self.hub.committed.push(e);
                }
                c.hub.committed(last, now);
                progress = true;
            }
            while let Some(ev) = c.hub.poll_event() {
                progress = true;
                match ev {
                    HubEvent::Hello {
                        agent_id,
                        root_version,
                        ..
                    } => {
                        assert_eq!(root_version, self.agent.trust.version());
                        assert_eq!(agent_id, AGENT);
                        c.hub
                            .accept(
                                self.hub.committed_seq,
                                self.hub.fleet.roots_after(root_version),
                                vec![],
                                now,
                            )
                            .unwrap();
                    }
                    HubEvent::Ingest { entries } => {
                        let at = now + rng.below(50) as i64;
                        c.commits.push_back((at, entries));
                    }
                    HubEvent::Gap { expected, got } => {
                        panic!("gap: expected {expected}, got {got}")
                    }
                    HubEvent::DeployResult { rejected, .. } => {
                        assert_eq!(rejected, None, "the sim only sends valid deploys");
                    }
                    _ => {}
                }
            }
            while let Some(m) = c.hub.poll_transmit() {
                c.to_agent.send(rng, now, frame::encode(&m).unwrap());
                progress = true;
            }
            for f in c.to_agent.recv(now) {
                let m = frame::decode_hub_msg(&f).unwrap().unwrap();
                if c.agent.handle_hub(m, now).is_err() {
                    close = true;
                }
                progress = true;
            }
            if !progress {
                break;
            }
        }
        assert!(!close, "protocol error");
        if c.agent.is_welcomed() && !c.retiring {
            let until = c.fresh_until.expect("a Welcome carries a snapshot");
            let hub_now = c.agent.hub_now(now).expect("signed time");
            assert!(
                hub_now < until,
                "the agent's snapshot expired in a live session ({hub_now} >= {until})"
            );
        }
        if goodbye {
            self.conn = None;
            self.down_until = now;
        }
    }

    fn quiescent(&self) -> bool {
        let Some(c) = &self.conn else { return false };
        self.agent.outbox.is_empty()
            && self.agent.acked == self.agent.last_seq
            && c.to_hub.is_empty()
            && c.to_agent.is_empty()
            && c.commits.is_empty()
            && self
                .hub
                .desired
                .values()
                .all(|d| self.agent.active.get(&d.workflow) == Some(&(d.version, d.epoch)))
    }

    fn run(&mut self, heal_at: i64) {
        let deadline = heal_at + 60_000;
        loop {
            let faulty = self.now < heal_at;
            if faulty {
                self.fault();
                self.operator();
                if self.rng.chance(100) {
                    self.generate();
                }
            }
            if self.conn.is_none() && self.now >= self.down_until {
                self.connect();
            }
            self.pump();
            if !faulty && self.quiescent() {
                return;
            }
            assert!(self.now < deadline, "no convergence: {:?}", self.stats);
            self.now += 1 + self.rng.below(5) as i64;
        }
    }

    fn check(&self) {
        let seqs: Vec<u64> = self.hub.committed.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=self.agent.last_seq).collect::<Vec<_>>());
        assert_eq!(
            self.hub.committed, self.agent.generated,
            "hub holds exactly what the agent made"
        );
        assert_eq!(
            self.agent.trust,
            self.hub.fleet.newest_trust(),
            "the agent follows every root rotation"
        );
        for d in self.hub.desired.values() {
            assert_eq!(
                self.agent.active.get(&d.workflow),
                Some(&(d.version, d.epoch))
            );
        }
        for wf in WORKFLOWS {
            let acts: Vec<_> = self
                .agent
                .activations
                .iter()
                .filter(|(w, _, _)| w == wf)
                .collect();
            assert!(
                acts.windows(2).all(|w| w[0].2 < w[1].2),
                "epochs strictly increase: {acts:?}"
            );
            assert!(
                acts.windows(2).all(|w| w[0].1 <= w[1].1),
                "versions never go back: {acts:?}"
            );
            assert!(
                acts.len() as u64 <= self.hub.changes[wf],
                "at most one activation per change"
            );
        }
    }
}

#[test]
fn sessions_converge_under_partitions_and_restarts() {
    let mut totals = Stats::default();
    let mut entries = 0;
    let mut activations = 0;
    let mut rotations = 0;
    for seed in 0..200u64 {
        let mut sim = Sim::new(seed);
        sim.run(4_000);
        sim.check();
        entries += sim.agent.last_seq;
        activations += sim.agent.activations.len();
        rotations += sim.hub.fleet.chain.len();
        totals.partitions += sim.stats.partitions;
        totals.agent_restarts += sim.stats.agent_restarts;
        totals.hub_restarts += sim.stats.hub_restarts;
        totals.connections += sim.stats.connections;
        totals.deploy_rejections += sim.stats.deploy_rejections;
    }
    // The faults really happened (otherwise the test proves little).
    assert!(totals.partitions > 200 && totals.agent_restarts > 100 && totals.hub_restarts > 100);
    assert!(entries > 10_000);
    assert!(
        activations > 1_000 && rotations > 50,
        "{activations} activations, {rotations} rotations"
    );
    eprintln!("{totals:?}, {entries} entries, {activations} activations, {rotations} rotations");
}
