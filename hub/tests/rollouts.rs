//! Pools, per-pool decisions and the rollout driver, end to end through the real store and hub
//! (no network): synthetic agent events go through `Store::ingest` / `Hub::deploy_result`
//! exactly as the QUIC driver feeds them, and the driver is turned by `Hub::rollout_tick`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use outpost_common::proto::Assignment;
use outpost_common::record::{OutboxEntry, Reverted, RunKind, RunRecord, RunState, StatusEvent};
use outpost_common::trust::{SigningKey, sign_release};
use outpost_hub::gateway::{Connections, SessionHandle};
use outpost_hub::hub::{Hub, now_ms};
use outpost_hub::ops::{Event, EventKind, OpError};
use outpost_hub::rollouts::{RolloutError, RolloutPlan};
use outpost_hub::store::{NewVersion, RolloutEventKind, Store, StoreError};
use outpost_rollout::{Command, OfflinePolicy, Scope, Size};

mod common;

struct H {
    hub: Arc<Hub>,
    /// The hub's store, for seeding and reading (changes go through the hub's operations).
    store: Arc<Store>,
    conns: Arc<Connections>,
    /// The director and release keys (PKCS#8), kept across a reopen.
    keys: common::Keys,
    release: SigningKey,
    seqs: std::collections::HashMap<String, u64>,
    sessions: Vec<SessionHandle>,
}

/// A hub in `dir` (the shared fixture), with its release key at hand.
fn open(dir: &Path, keys: Option<common::Keys>) -> H {
    let t = common::open(dir, keys);
    H {
        hub: t.hub,
        store: t.store,
        conns: t.conns,
        release: SigningKey::from_pkcs8(&t.keys.release).unwrap(),
        keys: t.keys,
        seqs: Default::default(),
        sessions: vec![],
    }
}

fn labels(l: &[(&str, &str)]) -> Vec<(String, String)> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl H {
    fn add_agent(&mut self, id: &str, l: &[(&str, &str)]) {
        common::enroll(&self.store, id, labels(l));
        self.sessions.push(self.conns.register(id, now_ms()));
    }

    /// Apply and release (through the hub's release operation, which wakes the sessions).
    fn apply(&self, content: &str, target: &[(&str, &str)]) -> u64 {
        let out = self
            .store
            .apply_version(
                NewVersion {
                    name: "etl".into(),
                    content: content.as_bytes().to_vec(),
                    format: "yaml".into(),
                    target: labels(target),
                    origin: "t".into(),
                    applied_by: "op".into(),
                },
                now_ms(),
            )
            .unwrap();
        if let Some(p) = self.store.pending("etl").unwrap() {
            let sig = sign_release(&self.release, &p.header_bytes);
            let st = self
                .hub
                .release_sign("op", "etl", p.version, vec![sig])
                .unwrap();
            assert!(st.released);
        }
        out.version
    }

    /// The desired version of `etl` for an agent (0 = none) and its assignment body.
    fn desired(&self, agent: &str) -> (u64, Option<Assignment>) {
        let d = self.hub.desired_for(agent).unwrap();
        match d.into_iter().find(|d| d.workflow == "etl" && !d.remove) {
            Some(d) => (
                d.version,
                Some(minicbor::decode(&d.assignment.body_bytes).unwrap()),
            ),
            None => (0, None),
        }
    }

    /// The agent activates what the hub wants (as the QUIC session would report it).
    fn activate(&self, agent: &str) {
        let d = self.hub.desired_for(agent).unwrap();
        for d in d.into_iter().filter(|d| d.workflow == "etl") {
            self.hub
                .deploy_result(agent, "etl", d.version, d.epoch, None)
                .unwrap();
        }
    }

    fn run(&mut self, agent: &str, version: u64, ok: bool) {
        let seq = self.seqs.entry(agent.to_string()).or_insert(0);
        *seq += 1;
        let rec = RunRecord {
            run_id: format!("etl@v{version}@{seq}"),
            workflow: "etl".into(),
            version,
            kind: RunKind::Scheduled,
            scheduled_ms: *seq as i64,
            state: if ok {
                RunState::Succeeded
            } else {
                RunState::Failed
            },
            params: vec![],
            created_ms: *seq as i64,
            started_ms: Some(1),
            ended_ms: Some(2),
            agent_id: None,
            skip_reason: None,
        };
        let entry = OutboxEntry {
            seq: *seq,
            event: StatusEvent::Run(rec),
        };
        self.hub
            .ingest(agent, std::slice::from_ref(&entry))
            .unwrap();
        // A retransmission is not a second run.
        self.hub.ingest(agent, &[entry]).unwrap();
    }

    fn tick(&self) {
        self.hub.rollout_tick(now_ms()).unwrap();
    }

    fn rollout(&self) -> outpost_hub::store::RolloutRecord {
        self.hub.find_rollout("etl", "line").unwrap()
    }
}

fn plan(pool: &str) -> RolloutPlan {
    RolloutPlan {
        workflow: "etl".into(),
        pool: pool.into(),
        version: None,
        canary: Size::Count(1),
        steps: vec![Size::Percent(50), Size::Percent(100)],
        bake_ms: 0,
        min_runs: 1,
        min_runs_scope: Scope::PerAgent,
        max_failure_rate: 0.0,
        manual: false,
        probation: Some((3, 1)),
        offline: OfflinePolicy::Wait { max_ms: 600_000 },
    }
}

/// Four agents in pool `line` (line=3), two elsewhere; v1 deployed to both pools explicitly.
fn setup(dir: &Path) -> H {
    let mut h = open(dir, None);
    for i in 0..4 {
        h.add_agent(&format!("agent-l{i}"), &[("line", "3")]);
    }
    h.add_agent("agent-o0", &[("line", "4")]);
    h.add_agent("agent-o1", &[("line", "4")]);
    h.hub
        .create_pool("op", "line", labels(&[("line", "3")]))
        .unwrap();
    h.hub
        .create_pool("op", "other", labels(&[("line", "4")]))
        .unwrap();
    assert_eq!(h.apply("v1", &[]), 1);
    h.hub.deploy("op", "etl", "line", Some(1)).unwrap();
    h.hub.deploy("op", "etl", "other", Some(1)).unwrap();
    for a in [
        "agent-l0", "agent-l1", "agent-l2", "agent-l3", "agent-o0", "agent-o1",
    ] {
        h.activate(a);
    }
    // Managed now: a new version is stored but deployed nowhere.
    assert_eq!(h.apply("v2", &[]), 2);
    for a in ["agent-l0", "agent-o0"] {
        assert_eq!(h.desired(a).0, 1);
    }
    h
}

#[test]
fn default_pool_follows_apply_until_managed_and_most_recent_decision_wins() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open(dir.path(), None);
    h.add_agent("agent-a", &[("site", "a")]);
    h.add_agent("agent-b", &[("site", "b")]);
    h.apply("v1", &[("site", "a")]);
    assert_eq!(h.desired("agent-a").0, 1);
    assert_eq!(h.desired("agent-b").0, 0);
    h.apply("v2", &[("site", "a")]);
    assert_eq!(h.desired("agent-a").0, 2, "the default pool follows apply");
    // Two overlapping pools: the most recent decision wins.
    h.hub.create_pool("op", "all", vec![]).unwrap();
    h.hub
        .create_pool("op", "a", labels(&[("site", "a")]))
        .unwrap();
    h.hub.deploy("op", "etl", "all", Some(1)).unwrap();
    assert_eq!((h.desired("agent-a").0, h.desired("agent-b").0), (1, 1));
    h.hub.deploy("op", "etl", "a", Some(2)).unwrap();
    assert_eq!((h.desired("agent-a").0, h.desired("agent-b").0), (2, 1));
    // Managed: apply no longer deploys.
    h.apply("v3", &[("site", "a")]);
    assert_eq!(h.desired("agent-a").0, 2);
    // Labels move membership at once: agent-b joins `a`, then leaves every pool but `all`.
    h.hub
        .label_agent("op", "agent-b", &labels(&[("site", "a")]), &[])
        .unwrap();
    assert_eq!(h.desired("agent-b").0, 2);
    h.hub
        .label_agent("op", "agent-b", &[], &["site".to_string()])
        .unwrap();
    assert_eq!(h.desired("agent-b").0, 1);
    assert!(h.store.agent("agent-b").unwrap().labels.is_empty());
    // Deleting the pool that wins hands the agent to the next decision.
    h.hub.delete_pool("op", "all").unwrap();
    assert_eq!(h.desired("agent-b").0, 0);
    let log = h.store.audit_log(100).unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "agent.label" && e.target == "agent-b")
    );
    assert!(
        log.iter()
            .any(|e| e.action == "workflow.deploy" && e.actor == "op")
    );
}

#[test]
fn pins_and_one_active_rollout_refuse_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let h = setup(dir.path());
    h.hub.pin("alice", "etl", "line", 1).unwrap();
    let e = h.hub.deploy("op", "etl", "line", Some(2)).unwrap_err();
    assert!(
        matches!(&e, OpError::Store(StoreError::Conflict(m)) if m.contains("pinned") && m.contains("alice")),
        "{e}"
    );
    let e = h.hub.start_rollout("op", &plan("line")).unwrap_err();
    assert!(e.to_string().contains("pinned to version 1"), "{e}");
    assert!(h.store.rollouts().unwrap().is_empty());
    assert!(h.hub.unpin("alice", "etl", "line").unwrap());
    let r = h.hub.start_rollout("bob", &plan("line")).unwrap();
    assert_eq!((r.from_version, r.to_version, r.active), (1, 2, true));
    let e = h.hub.start_rollout("bob", &plan("line")).unwrap_err();
    assert!(e.to_string().contains("one active rollout"), "{e}");
    let e = h.hub.pin("alice", "etl", "line", 1).unwrap_err();
    assert!(e.to_string().contains("active"), "{e}");
    // Another pool may roll out the same workflow at the same time.
    h.hub.start_rollout("bob", &plan("other")).unwrap();
    // Invalid plans and unknown pools are refused before anything is stored.
    let mut bad = plan("nope");
    assert!(matches!(
        h.hub.start_rollout("op", &bad),
        Err(RolloutError::Store(StoreError::NoPool(_)))
    ));
    h.hub
        .create_pool("op", "spare", labels(&[("line", "3")]))
        .unwrap();
    bad.pool = "spare".into();
    bad.max_failure_rate = 2.0;
    assert!(matches!(
        h.hub.start_rollout("op", &bad),
        Err(RolloutError::Spec(_))
    ));
    let log = h.store.audit_log(100).unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "workflow.pin" && e.actor == "alice")
    );
    assert!(
        log.iter()
            .any(|e| e.action == "workflow.unpin" && e.actor == "alice")
    );
}

#[test]
fn rollout_advances_on_runs_survives_a_restart_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(dir.path());
    let r = h.hub.start_rollout("bob", &plan("line")).unwrap();
    let line = ["agent-l0", "agent-l1", "agent-l2", "agent-l3"];
    let on_new: Vec<&str> = line
        .iter()
        .copied()
        .filter(|a| h.desired(a).0 == 2)
        .collect();
    assert_eq!(on_new.len(), 1, "one canary");
    let canary = on_new[0];
    let (_, body) = h.desired(canary);
    let body = body.unwrap();
    assert_eq!(body.agent_id, canary);
    assert_eq!(body.previous_version, Some(1));
    assert_eq!(body.rollout_id.as_deref(), Some(r.id.as_str()));
    assert_eq!(
        body.probation.map(|p| (p.runs, p.max_failures)),
        Some((3, 1))
    );
    assert_eq!(h.desired("agent-o0").0, 1, "the other pool never sees it");
    h.activate(canary);
    h.tick();
    // Activated but no run yet: still at the canary.
    assert_eq!(line.iter().filter(|a| h.desired(a).0 == 2).count(), 1);
    h.run(canary, 1, false); // a failed run of the OLD version does not count
    h.run(canary, 2, true);
    h.tick();
    let step1: Vec<&str> = line
        .iter()
        .copied()
        .filter(|a| h.desired(a).0 == 2)
        .collect();
    assert_eq!(step1.len(), 2, "step 1 = 50% of 4");
    let status_before = h.hub.rollout_status(&h.rollout()).unwrap().0;
    assert_eq!(status_before.step, 1);

    // Restart mid-rollout: reopen the store, decode, resume: same state, same desired versions.
    let keys = h.keys.clone();
    let desired_before: Vec<u64> = line.iter().map(|a| h.desired(a).0).collect();
    drop(h);
    let mut h = open(dir.path(), Some(keys));
    for a in line {
        h.sessions.push(h.conns.register(a, now_ms()));
    }
    h.hub.resume_rollouts().unwrap();
    let desired_after: Vec<u64> = line.iter().map(|a| h.desired(a).0).collect();
    assert_eq!(desired_before, desired_after);
    let s = h.hub.rollout_status(&h.rollout()).unwrap().0;
    assert_eq!(
        (s.step, s.gate.runs),
        (status_before.step, status_before.gate.runs)
    );
    h.seqs.insert(canary.to_string(), 2);

    for a in &step1 {
        h.activate(a);
        if *a != canary {
            h.run(a, 2, true);
        }
    }
    h.tick();
    assert!(
        line.iter().all(|a| h.desired(a).0 == 2),
        "last step: everyone"
    );
    for a in line {
        if !step1.contains(&a) {
            h.activate(a);
            h.run(a, 2, true);
        }
    }
    h.tick();
    let r = h.rollout();
    assert!(!r.active);
    assert_eq!(r.outcome.as_deref(), Some("succeeded"));
    let d = h.store.decision("etl", "line").unwrap().unwrap();
    assert_eq!((d.version, d.rollout), (2, None));
    assert!(line.iter().all(|a| h.desired(a).0 == 2));
    assert_eq!(h.desired("agent-o1").0, 1);
    assert!(h.store.pending_events(100).unwrap().is_empty());
    let log = h.store.audit_log(1000).unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "rollout" && e.actor == "bob" && e.detail.contains("started"))
    );
    assert!(
        log.iter()
            .any(|e| e.detail.contains("resumed after a hub restart"))
    );
}

#[test]
fn a_failed_canary_run_rolls_back_and_only_the_canary_ever_had_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(dir.path());
    h.hub.start_rollout("bob", &plan("line")).unwrap();
    let line = ["agent-l0", "agent-l1", "agent-l2", "agent-l3"];
    let canary = *line.iter().find(|a| h.desired(a).0 == 2).unwrap();
    let bundle_of = |h: &H, a: &str| {
        h.hub
            .desired_for(a)
            .unwrap()
            .into_iter()
            .find(|d| d.workflow == "etl")
            .unwrap()
            .bundle
    };
    assert!(bundle_of(&h, canary).is_some(), "v2 is new to the canary");
    h.activate(canary);
    h.run(canary, 2, false);
    h.tick();
    assert!(
        line.iter().all(|a| h.desired(a).0 == 1),
        "everyone back on v1"
    );
    assert!(
        bundle_of(&h, canary).is_none(),
        "the canary holds v1: the rollback needs no download"
    );
    assert!(
        h.rollout().phase.starts_with("rolling back"),
        "{}",
        h.rollout().phase
    );
    h.activate(canary);
    h.tick();
    let r = h.rollout();
    assert!(!r.active);
    assert!(
        r.outcome.as_deref().unwrap().starts_with("rolled back"),
        "{r:?}"
    );
    for a in line.iter().filter(|a| **a != canary) {
        assert!(
            h.store
                .deploy_results(a)
                .unwrap()
                .iter()
                .all(|d| d.version == 1)
        );
    }
    assert_eq!(h.store.decision("etl", "line").unwrap().unwrap().version, 1);
}

#[test]
fn a_probation_revert_fails_the_gate_and_commands_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(dir.path());
    let mut p = plan("line");
    p.manual = true;
    h.hub.start_rollout("bob", &p).unwrap();
    let line = ["agent-l0", "agent-l1", "agent-l2", "agent-l3"];
    let canary = *line.iter().find(|a| h.desired(a).0 == 2).unwrap();
    // Promote is refused while the canary is still activating; pause/resume work.
    let e = h
        .hub
        .rollout_command("carol", "etl", "line", Command::Promote)
        .unwrap_err();
    assert!(matches!(e, RolloutError::Refused(_)), "{e}");
    h.hub
        .rollout_command("carol", "etl", "line", Command::Pause)
        .unwrap();
    assert!(h.rollout().phase.starts_with("paused"));
    h.hub
        .rollout_command("carol", "etl", "line", Command::Resume)
        .unwrap();
    h.activate(canary);
    h.tick();
    // The agent reverts by itself under probation and reports it through its outbox.
    let mut events = h.hub.subscribe();
    let seq = h.seqs.entry(canary.to_string()).or_insert(0);
    *seq += 1;
    h.hub
        .ingest(
            canary,
            &[OutboxEntry {
                seq: *seq,
                event: StatusEvent::Reverted(Reverted {
                    workflow: "etl".into(),
                    from_version: 2,
                    to_version: 1,
                    reason: "2 of the first 3 runs failed".into(),
                    at_ms: 5,
                    rollout_id: Some(h.rollout().id),
                }),
            }],
        )
        .unwrap();
    let e = events.try_recv().unwrap();
    assert_eq!(e.actor, canary);
    assert!(
        matches!(&e.kind, EventKind::VersionReverted { agent, workflow, from_version: 2, to_version: 1, reason }
            if agent == canary && workflow == "etl" && reason.contains("2 of the first 3")),
        "{e:?}"
    );
    h.tick();
    assert!(line.iter().all(|a| h.desired(a).0 == 1));
    let s = h.hub.rollout_status(&h.rollout()).unwrap().0;
    let st = s.agents.iter().find(|a| a.agent_id == canary).unwrap();
    assert!(
        st.failure.as_deref().unwrap().contains("probation"),
        "{st:?}"
    );
    // Abort after the end is refused.
    h.activate(canary);
    h.tick();
    assert!(!h.rollout().active);
    assert!(
        h.hub
            .rollout_command("carol", "etl", "line", Command::Abort)
            .is_err()
    );
    let log = h.store.audit_log(1000).unwrap();
    for action in ["rollout.pause", "rollout.resume"] {
        assert!(
            log.iter().any(|e| e.action == action && e.actor == "carol"),
            "{action}"
        );
    }
    assert!(
        log.iter()
            .any(|e| e.action == "agent.revert" && e.target == "etl")
    );
}

#[test]
fn abort_rolls_back_the_updated_agents() {
    let dir = tempfile::tempdir().unwrap();
    let h = setup(dir.path());
    h.hub.start_rollout("bob", &plan("line")).unwrap();
    let line = ["agent-l0", "agent-l1", "agent-l2", "agent-l3"];
    assert_eq!(line.iter().filter(|a| h.desired(a).0 == 2).count(), 1);
    h.hub
        .rollout_command("dave", "etl", "line", Command::Abort)
        .unwrap();
    assert!(line.iter().all(|a| h.desired(a).0 == 1));
    let log = h.store.audit_log(1000).unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "rollout.abort" && e.actor == "dave")
    );
}

#[test]
fn after_a_restart_a_finished_rollout_shows_its_members_online_as_agent_list_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(dir.path());
    let line = ["agent-l0", "agent-l1", "agent-l2", "agent-l3"];
    let mut p = plan("line");
    p.steps = vec![Size::Percent(100)];
    p.probation = None;
    h.hub.start_rollout("bob", &p).unwrap();
    h.tick();
    h.sessions.clear();
    // The rollout goes through while the driver sees no session (e.g. the hub restarted and
    // the agents' backlogs arrive before the driver's next membership snapshot).
    let mut done = std::collections::HashSet::new();
    for _ in 0..4 {
        for a in line {
            if h.desired(a).0 == 2 && done.insert(a) {
                h.activate(a);
                h.run(a, 2, true);
            }
        }
        h.tick();
    }
    let r = h.rollout();
    assert!(!r.active, "{r:?}");
    let (st, _) = h.hub.rollout_status(&r).unwrap();
    assert!(st.agents.iter().all(|a| !a.online));

    // Hub restart; the agents reconnect.
    let keys = h.keys.clone();
    drop(h);
    let mut h = open(dir.path(), Some(keys));
    for a in line {
        h.sessions.push(h.conns.register(a, now_ms()));
    }
    h.hub.resume_rollouts().unwrap();
    h.tick();
    let (st, _) = h.hub.rollout_status(&h.rollout()).unwrap();
    for a in &st.agents {
        assert!(a.online, "{} shown offline while connected", a.agent_id);
        assert_ne!(a.state, outpost_rollout::AgentState::Offline, "{a:?}");
    }
}

/// The operations and the rollout driver emit one domain event each, naming the actor: the
/// operator for a rollout start, a command and a pool; the agent for what its session reports
/// (a deploy result, a finished run, counted once however often the batch is resent); `hub`
/// for the step the driver passed.
#[test]
fn operations_and_the_driver_emit_events_with_their_actors() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(dir.path());
    let mut rx = h.hub.subscribe();
    let r = h.hub.start_rollout("bob", &plan("line")).unwrap();
    let line = ["agent-l0", "agent-l1", "agent-l2", "agent-l3"];
    let canary = *line.iter().find(|a| h.desired(a).0 == 2).unwrap();
    h.activate(canary);
    h.tick();
    h.run(canary, 2, true);
    h.tick();
    h.hub
        .rollout_command("carol", "etl", "line", Command::Pause)
        .unwrap();
    h.hub
        .create_pool("dave", "spare", labels(&[("line", "3")]))
        .unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    let position = |what: &str, pred: &dyn Fn(&Event) -> bool| {
        events
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no {what} in {events:#?}"))
    };
    let started = position("RolloutStarted by bob", &|e| {
        e.actor == "bob"
            && matches!(&e.kind, EventKind::RolloutStarted { rollout, workflow, pool, version }
                if *rollout == r.id && workflow == "etl" && pool == "line" && *version == 2)
    });
    position("the canary's DeployReported", &|e| {
        e.actor == canary
            && matches!(&e.kind, EventKind::DeployReported { agent, version: 2, rejected: None, .. }
                if agent == canary)
    });
    let finished: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::RunFinished { version: 2, .. }))
        .collect();
    assert_eq!(finished.len(), 1, "{finished:#?}");
    assert_eq!(finished[0].actor, canary);
    assert!(
        matches!(&finished[0].kind, EventKind::RunFinished { state, .. } if state == "succeeded")
    );
    let passed = position("RolloutStepPassed of the canary step by hub", &|e| {
        e.actor == "hub"
            && matches!(&e.kind, EventKind::RolloutStepPassed { rollout, step: 0, .. } if *rollout == r.id)
    });
    let paused = position("RolloutCommanded pause by carol", &|e| {
        e.actor == "carol"
            && matches!(&e.kind, EventKind::RolloutCommanded { command, .. } if command == "pause")
    });
    position("PoolCreated by dave", &|e| {
        e.actor == "dave" && matches!(&e.kind, EventKind::PoolCreated { pool } if pool == "spare")
    });
    assert!(started < passed && passed < paused, "{events:#?}");
}

#[test]
fn only_runs_of_the_version_rolled_out_are_queued_for_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = setup(dir.path());
    h.hub.start_rollout("bob", &plan("line")).unwrap();
    let line = ["agent-l0", "agent-l1", "agent-l2", "agent-l3"];
    let canary = line.iter().copied().find(|a| h.desired(a).0 == 2).unwrap();
    let other = line.iter().copied().find(|a| *a != canary).unwrap();
    h.tick();
    assert!(h.store.pending_events(100).unwrap().is_empty());
    // Runs of the version the pool already has: nothing for the controller to count.
    h.run(other, 1, true);
    h.run(canary, 1, false);
    assert!(h.store.pending_events(100).unwrap().is_empty());
    // The canary's activation and its run of the new version are queued, in that order.
    h.activate(canary);
    h.run(canary, 2, true);
    let kinds: Vec<(String, RolloutEventKind)> = h
        .store
        .pending_events(100)
        .unwrap()
        .into_iter()
        .map(|(_, e)| (e.agent, e.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                canary.to_string(),
                RolloutEventKind::Activated { version: 2 }
            ),
            (
                canary.to_string(),
                RolloutEventKind::Run {
                    version: 2,
                    succeeded: true
                }
            ),
        ]
    );
    // A failed run of the old version did not fail the canary's gate; the new one passed it.
    h.tick();
    assert!(h.store.pending_events(100).unwrap().is_empty());
    assert_eq!(line.iter().filter(|a| h.desired(a).0 == 2).count(), 2);
    assert!(h.rollout().active);
}
