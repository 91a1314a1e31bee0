//! Property tests of the controller against a simple model of the hub and its agents.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::collections::{BTreeMap, BTreeSet};

use outpost_rollout::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Debug, Clone)]
enum Op {
    Activate(usize),
    Run(usize, bool),
    Offline(usize),
    Online(usize),
    Cmd(Command),
    Advance(u16),
    Join,
    Leave(usize),
    Reject(usize),
    Revert(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => any::<usize>().prop_map(Op::Activate),
        20 => (any::<usize>(), prop::bool::weighted(0.985)).prop_map(|(i, ok)| Op::Run(i, ok)),
        2 => any::<usize>().prop_map(Op::Offline),
        4 => any::<usize>().prop_map(Op::Online),
        2 => prop_oneof![
            Just(Command::Pause),
            Just(Command::Resume),
            Just(Command::Resume),
            Just(Command::Promote),
            Just(Command::Promote),
            Just(Command::Abort),
        ]
        .prop_map(Op::Cmd),
        12 => (0u16..3000).prop_map(Op::Advance),
        2 => Just(Op::Join),
        2 => any::<usize>().prop_map(Op::Leave),
        1 => any::<usize>().prop_map(Op::Reject),
        1 => any::<usize>().prop_map(Op::Revert),
    ]
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        (1u32..20).prop_map(Size::Count),
        (1u8..=100).prop_map(Size::Percent)
    ]
}

fn spec_strategy() -> impl Strategy<Value = RolloutSpec> {
    (
        size(),
        prop::collection::vec(size(), 1..5),
        prop_oneof![Just(0i64), Just(500), Just(2000)],
        0u32..3,
        prop_oneof![Just(Scope::PerAgent), Just(Scope::Step)],
        prop_oneof![Just(0.0), Just(0.2), Just(0.5), Just(1.0), Just(1.0)],
        any::<bool>(),
        prop_oneof![
            Just(OfflinePolicy::Skip),
            Just(OfflinePolicy::Fail),
            (0i64..5000).prop_map(|max_ms| OfflinePolicy::Wait { max_ms })
        ],
        prop_oneof![Just(Some(1u64)), Just(None)],
        "[a-z]{1,6}",
    )
        .prop_map(
            |(canary, steps, bake_ms, min_runs, scope, rate, manual, offline, from, id)| {
                RolloutSpec {
                    id,
                    workflow: "wf".into(),
                    pool: "p".into(),
                    from_version: from,
                    to_version: 2,
                    canary,
                    steps,
                    bake_ms,
                    min_runs,
                    min_runs_scope: scope,
                    max_failure_rate: rate,
                    manual,
                    probation: Some((3, 1)),
                    offline,
                    created_ms: 0,
                }
            },
        )
}

/// The model's own step targets: raw sizes, last forced to N, suffix minimum.
fn model_target(spec: &RolloutSpec, step: usize, n: u32) -> u32 {
    let mut t: Vec<u32> = std::iter::once(spec.canary)
        .chain(spec.steps.iter().copied())
        .map(|s| match s {
            Size::Count(c) => c.min(n),
            Size::Percent(p) => {
                if n == 0 {
                    0
                } else {
                    ((u32::from(p) * n).div_ceil(100)).max(1)
                }
            }
        })
        .collect();
    let last = t.len() - 1;
    t[last] = n;
    for k in (0..last).rev() {
        t[k] = t[k].min(t[k + 1]);
    }
    t[step]
}

#[derive(Debug, Clone)]
struct Sim {
    online: bool,
    desired: Option<u64>,
    active: u64,
}

struct World {
    spec: RolloutSpec,
    c: Controller,
    now: i64,
    members: BTreeMap<String, Sim>,
    joined: Vec<String>,
    left_any: bool,
    next_join: usize,
    ever_new: BTreeSet<String>,
    first_new: Vec<String>,
    step: usize,
    rolling_back: bool,
    finished: usize,
    log: Vec<Action>,
    shuffle: u64,
    roundtrip: bool,
}

impl World {
    fn snapshot(&mut self) -> Vec<Member> {
        let mut v: Vec<Member> = self
            .members
            .iter()
            .map(|(id, s)| Member {
                agent_id: id.clone(),
                online: s.online,
                version: (s.active != 0).then_some(s.active),
            })
            .collect();
        // Deterministic pseudo-shuffle driven by the seed.
        if self.shuffle != 0 {
            let mut x = self.shuffle;
            for i in (1..v.len()).rev() {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let j = (x >> 33) as usize % (i + 1);
                v.swap(i, j);
            }
            self.shuffle = x | 1;
        }
        v
    }

    fn id(&self, i: usize) -> String {
        let ids: Vec<&String> = self.members.keys().collect();
        ids[i % ids.len()].clone()
    }

    /// Drain the actions, checking the invariants against the model.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        let to = self.spec.to_version;
        let from = self.spec.from_version.unwrap_or(0);
        while let Some(a) = self.c.poll_action() {
            match &a {
                Action::Phase(p) => {
                    if let Some(s) = p.step() {
                        self.step = s;
                    }
                    if matches!(p, Phase::RollingBack { .. }) {
                        self.rolling_back = true;
                    }
                }
                Action::Finished(_) => self.finished += 1,
                Action::Assign {
                    agent_id, version, ..
                } => {
                    prop_assert!(self.members.contains_key(agent_id), "assign to non-member");
                    if *version == to {
                        prop_assert!(!self.rolling_back, "new version assigned after rollback");
                        // Re-sending the new version to an agent that has it already (after a
                        // restart) is no new update: a departure may have lowered the target
                        // below the number of agents updated earlier.
                        let fresh = self.ever_new.insert(agent_id.clone());
                        if !self.first_new.contains(agent_id) {
                            self.first_new.push(agent_id.clone());
                        }
                        let n = self.members.len() as u32;
                        let updated = self
                            .ever_new
                            .iter()
                            .filter(|a| self.members.contains_key(*a))
                            .count() as u32;
                        let t = model_target(&self.spec, self.step, n);
                        prop_assert!(
                            !fresh || updated <= t,
                            "step {} target {} but {} updated",
                            self.step,
                            t,
                            updated
                        );
                    } else {
                        prop_assert_eq!(*version, from);
                    }
                    if let Some(s) = self.members.get_mut(agent_id) {
                        s.desired = Some(*version);
                    }
                }
                Action::Audit(_) => {}
            }
            self.log.push(a);
        }
        if self.roundtrip {
            let bytes = self.c.encode();
            let back =
                Controller::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(back == self.c, "decode(encode(c)) != c");
            self.c = back;
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let to = self.spec.to_version;
        let from = self.spec.from_version.unwrap_or(0);
        let now = self.now;
        match op {
            Op::Activate(i) => {
                // One of the online agents that has something to activate.
                let todo: Vec<(String, u64)> = self
                    .members
                    .iter()
                    .filter(|(_, s)| s.online && s.desired.is_some_and(|d| d != s.active))
                    .map(|(id, s)| (id.clone(), s.desired.unwrap_or(0)))
                    .collect();
                if !todo.is_empty() {
                    let (id, d) = todo[i % todo.len()].clone();
                    self.members.get_mut(&id).unwrap().active = d;
                    self.c.handle_activated(&id, d, now);
                }
            }
            Op::Run(i, ok) => {
                // A run on one of the online agents that run something.
                let running: Vec<(String, u64)> = self
                    .members
                    .iter()
                    .filter(|(_, s)| s.online && s.active != 0)
                    .map(|(id, s)| (id.clone(), s.active))
                    .collect();
                if !running.is_empty() {
                    let (id, v) = running[i % running.len()].clone();
                    self.c.handle_run(&id, v, *ok, now);
                }
            }
            Op::Offline(i) | Op::Online(i) => {
                let on = matches!(op, Op::Online(_));
                let id = self.id(*i);
                self.members.get_mut(&id).unwrap().online = on;
                self.c.handle_online(&id, on, now);
            }
            Op::Cmd(cmd) => {
                let _ = self.c.handle_command(*cmd, now);
            }
            Op::Advance(ms) => {
                self.now += i64::from(*ms);
                self.c.handle_timeout(self.now);
            }
            Op::Join => {
                let id = format!("j{}", self.next_join);
                self.next_join += 1;
                self.members.insert(
                    id.clone(),
                    Sim {
                        online: true,
                        desired: None,
                        active: from,
                    },
                );
                self.joined.push(id);
                let snap = self.snapshot();
                self.c.handle_members(snap, now);
            }
            Op::Leave(i) => {
                if self.members.len() > 1 {
                    let id = self.id(*i);
                    self.members.remove(&id);
                    self.left_any = true;
                    let snap = self.snapshot();
                    self.c.handle_members(snap, now);
                }
            }
            Op::Reject(i) => {
                let id = self.id(*i);
                let s = &self.members[&id];
                if s.online && s.desired == Some(to) && s.active != to {
                    self.c.handle_rejected(&id, to, "bad bundle", now);
                }
            }
            Op::Revert(i) => {
                let id = self.id(*i);
                let s = &self.members[&id];
                if s.online && s.active == to {
                    self.members.get_mut(&id).unwrap().active = from;
                    self.c.handle_reverted(&id, to, from, "probation", now);
                }
            }
        }
        self.drain()
    }

    /// A hub restart: decode the committed state, resume, and check that resume only re-sends
    /// the current desired versions (plus its audit line); those are left out of the log.
    fn restart(&mut self) -> Result<(), TestCaseError> {
        let bytes = self.c.encode();
        self.c = Controller::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        self.c.resume(self.now);
        let mark = self.log.len();
        self.drain()?;
        let resumed: Vec<Action> = self.log.drain(mark..).collect();
        for a in &resumed {
            match a {
                Action::Assign {
                    agent_id, version, ..
                } => {
                    prop_assert_eq!(self.c.desired_version(agent_id), Some(*version));
                }
                Action::Audit(line) => {
                    prop_assert!(line.starts_with("resumed after a hub restart"))
                }
                other => prop_assert!(false, "resume emitted {:?}", other),
            }
        }
        Ok(())
    }

    /// Bring everyone online and healthy, promote, wait: the rollout must finish.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for round in 0..(self.spec.steps.len() * 4 + 10) {
            if self.c.phase().is_terminal() {
                break;
            }
            let ids: Vec<String> = self.members.keys().cloned().collect();
            for id in &ids {
                let s = self.members.get_mut(id).unwrap();
                if !s.online {
                    s.online = true;
                    self.c.handle_online(id, true, self.now);
                }
                let s = &self.members[id];
                if let Some(d) = s.desired
                    && d != s.active
                {
                    self.members.get_mut(id).unwrap().active = d;
                    self.c.handle_activated(id, d, self.now);
                }
                self.drain()?;
            }
            for id in &ids {
                let s = &self.members[id];
                if s.active == self.spec.to_version {
                    for _ in 0..self.spec.min_runs.max(1) {
                        self.c.handle_run(id, self.spec.to_version, true, self.now);
                    }
                }
            }
            self.drain()?;
            let _ = self.c.handle_command(Command::Resume, self.now);
            if round % 2 == 1 {
                let _ = self.c.handle_command(Command::Promote, self.now);
            }
            self.now += 10_000;
            self.c.handle_timeout(self.now);
            self.drain()?;
        }
        prop_assert!(
            self.c.phase().is_terminal(),
            "not finished: {:?}",
            self.c.phase()
        );
        // Once every member activated what it was sent, the final versions follow the outcome.
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let s = self.members.get_mut(id).unwrap();
            if let Some(d) = s.desired {
                s.active = d;
            }
        }
        Ok(())
    }
}

fn play(
    spec: &RolloutSpec,
    n: usize,
    offline0: &[bool],
    ops: &[Op],
    shuffle: u64,
    roundtrip: bool,
    restart_at: Option<usize>,
) -> Result<World, TestCaseError> {
    let from = spec.from_version.unwrap_or(0);
    let members: BTreeMap<String, Sim> = (0..n)
        .map(|i| {
            (
                format!("a{i:02}"),
                Sim {
                    online: !offline0.get(i).copied().unwrap_or(false),
                    desired: None,
                    active: from,
                },
            )
        })
        .collect();
    let placeholder = vec![Member {
        agent_id: "x".into(),
        online: true,
        version: None,
    }];
    let mut w = World {
        spec: spec.clone(),
        // Replaced below by a controller fed the (possibly shuffled) snapshot.
        c: Controller::new(spec.clone(), placeholder, 0)
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
        now: 0,
        members,
        joined: vec![],
        left_any: false,
        next_join: 0,
        ever_new: BTreeSet::new(),
        first_new: vec![],
        step: 0,
        rolling_back: false,
        finished: 0,
        log: vec![],
        shuffle,
        roundtrip,
    };
    let snap = w.snapshot();
    w.c = Controller::new(spec.clone(), snap, 0).map_err(|e| TestCaseError::fail(e.to_string()))?;
    w.drain()?;
    for (k, op) in ops.iter().enumerate() {
        if restart_at == Some(k) {
            w.restart()?;
        }
        w.apply(op)?;
    }
    Ok(w)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn controller_follows_the_model(
        spec in spec_strategy(),
        n in 1usize..60,
        offline0 in prop::collection::vec(prop::bool::weighted(0.05), 60),
        ops in prop::collection::vec(op(), 0..150),
        seed in 1u64..u64::MAX,
    ) {
        let mut w = play(&spec, n, &offline0, &ops, 0, false, None)?;
        let initial: Vec<String> = (0..n).map(|i| format!("a{i:02}")).collect();

        // Stable order: without departures, the agents sent the new version (in order of their
        // first assignment) are a prefix of the stable order, joiners appended (Skip passes
        // over offline agents, so only the Wait and Fail policies are checked).
        if !w.left_any && spec.offline != OfflinePolicy::Skip {
            let mut order = common::stable_order(&spec.id, &initial);
            order.extend(w.joined.iter().cloned());
            prop_assert_eq!(&w.first_new[..], &order[..w.first_new.len()]);
        }

        // Determinism: same events → same actions; membership order and encode/decode at every
        // step change nothing.
        let again = play(&spec, n, &offline0, &ops, 0, false, None)?;
        prop_assert_eq!(&again.log, &w.log);
        let shuffled = play(&spec, n, &offline0, &ops, seed, false, None)?;
        prop_assert_eq!(&shuffled.log, &w.log);
        let rt = play(&spec, n, &offline0, &ops, 0, true, None)?;
        prop_assert_eq!(&rt.log, &w.log);
        prop_assert!(rt.c == w.c);
        // A hub restart (encode → decode → resume) at a random point continues identically.
        let at = (seed as usize) % (ops.len() + 1);
        let restarted = play(&spec, n, &offline0, &ops, 0, false, Some(at))?;
        prop_assert_eq!(&restarted.log, &w.log);
        prop_assert_eq!(restarted.c.status(restarted.now), w.c.status(w.now));

        // Liveness and the end state.
        let rolled_before = w.rolling_back;
        w.finish()?;
        prop_assert_eq!(w.finished, 1, "Finished emitted exactly once");
        let from = spec.from_version.unwrap_or(0);
        match w.c.phase().clone() {
            Phase::Succeeded => {
                prop_assert!(!rolled_before);
                for (id, s) in &w.members {
                    prop_assert_eq!(s.active, spec.to_version, "{} not on the new version", id);
                    prop_assert_eq!(w.c.desired_version(id), Some(spec.to_version));
                }
            }
            Phase::RolledBack { .. } | Phase::Aborted => {
                for (id, s) in &w.members {
                    prop_assert_eq!(s.active, from, "{} not back on the old version", id);
                    prop_assert_eq!(w.c.desired_version(id), Some(from));
                }
            }
            p => prop_assert!(false, "not terminal: {:?}", p),
        }
    }
}
