//! Scenario tests of the rollout controller, with insta snapshots of the audit trail and status.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::*;
use outpost_rollout::*;

fn ten_agent_plan() -> RolloutSpec {
    spec(
        Size::Count(1),
        vec![
            Size::Count(1),
            Size::Percent(10),
            Size::Percent(50),
            Size::Percent(100),
        ],
    )
}

#[test]
fn step_targets_arithmetic() {
    let sizes = [
        Size::Count(1),
        Size::Count(1),
        Size::Percent(10),
        Size::Percent(50),
        Size::Percent(100),
    ];
    assert_eq!(step_targets(&sizes, 10), vec![1, 1, 1, 5, 10]);
    assert_eq!(step_targets(&sizes, 3), vec![1, 1, 1, 2, 3]);
    assert_eq!(step_targets(&sizes, 0), vec![0, 0, 0, 0, 0]);
    // The last step is forced to 100%.
    assert_eq!(
        step_targets(&[Size::Count(1), Size::Percent(50)], 10),
        vec![1, 10]
    );
    // Suffix minimum: a step never exceeds its size, and targets never decrease.
    assert_eq!(
        step_targets(&[Size::Count(5), Size::Count(2), Size::Percent(100)], 10),
        vec![2, 2, 10]
    );
    // Percent rounds up, at least 1.
    assert_eq!(step_size(Size::Percent(1), 10), 1);
    assert_eq!(step_size(Size::Percent(15), 10), 2);
    assert_eq!(step_size(Size::Count(50), 10), 10);
}

#[test]
fn invalid_specs_are_refused() {
    let ok = ten_agent_plan();
    type Mutation = Box<dyn Fn(&mut RolloutSpec)>;
    let cases: Vec<(Mutation, SpecError)> = vec![
        (Box::new(|s| s.id.clear()), SpecError::EmptyId),
        (Box::new(|s| s.to_version = 0), SpecError::ZeroVersion),
        (
            Box::new(|s| s.from_version = Some(2)),
            SpecError::SameVersion(2),
        ),
        (Box::new(|s| s.steps.clear()), SpecError::NoSteps),
        (
            Box::new(|s| s.canary = Size::Count(0)),
            SpecError::ZeroSize { step: 0 },
        ),
        (
            Box::new(|s| s.steps[1] = Size::Percent(101)),
            SpecError::PercentOver100 {
                step: 2,
                percent: 101,
            },
        ),
        (
            Box::new(|s| s.max_failure_rate = f64::NAN),
            SpecError::BadFailureRate,
        ),
        (
            Box::new(|s| s.max_failure_rate = 1.5),
            SpecError::BadFailureRate,
        ),
        (Box::new(|s| s.bake_ms = -1), SpecError::NegativeBake),
        (
            Box::new(|s| s.offline = OfflinePolicy::Wait { max_ms: -5 }),
            SpecError::NegativeWait,
        ),
        (
            Box::new(|s| s.probation = Some((0, 0))),
            SpecError::BadProbation,
        ),
    ];
    let one = || {
        vec![Member {
            agent_id: "a".into(),
            online: true,
            version: Some(1),
        }]
    };
    for (mutate, want) in cases {
        let mut s = ok.clone();
        mutate(&mut s);
        assert_eq!(Controller::new(s, one(), 0).err(), Some(want));
    }
    assert_eq!(
        Controller::new(ok.clone(), vec![], 0).err(),
        Some(SpecError::EmptyPool)
    );
    assert!(Controller::new(ok, one(), 0).is_ok());
}

#[test]
fn good_version_goes_through_every_step() {
    let mut h = Harness::new(ten_agent_plan(), 10);
    let order = stable_order("ro-1", &ids(10));
    let targets = [1usize, 1, 1, 5, 10];
    for (k, want) in targets.iter().enumerate() {
        assert_eq!(h.c.status(h.now).step, k);
        assert_eq!(h.on_new(), *want, "step {k}");
        assert_eq!(
            h.first_new,
            order[..*want].to_vec(),
            "step {k} follows the stable order"
        );
        let st = h.c.status(h.now);
        assert_eq!(st.steps[k].target as usize, *want);
        assert_eq!(st.steps[k].updated as usize, *want);
        assert!(
            matches!(h.phase(), Phase::Baking { step, .. } if step == k),
            "{:?}",
            h.phase()
        );
        h.healthy_round();
    }
    assert_eq!(h.phase(), Phase::Succeeded);
    assert!(h.agents.values().all(|s| s.active == 2));
    assert!(
        h.actions
            .iter()
            .any(|(_, a)| *a == Action::Finished(Outcome::Succeeded))
    );
    for id in ids(10) {
        assert_eq!(h.c.desired_version(&id), Some(2));
    }
    assert_eq!(h.c.desired_version("stranger"), None);
    // The new-version assignments carry the previous version and the probation.
    assert!(h.actions.iter().all(|(_, a)| match a {
        Action::Assign {
            version: 2,
            previous_version,
            probation,
            ..
        } => *previous_version == Some(1) && *probation == Some((3, 1)),
        _ => true,
    }));
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn failing_canary_is_rolled_back() {
    let mut h = Harness::new(
        spec(Size::Count(2), vec![Size::Percent(50), Size::Percent(100)]),
        10,
    );
    let order = stable_order("ro-1", &ids(10));
    h.runs_ok();
    assert_eq!(h.first_new, order[..2].to_vec());
    h.run(&order[1], false);
    assert!(
        matches!(h.phase(), Phase::RolledBack { ref reason } if reason.contains("canary")),
        "{:?}",
        h.phase()
    );
    // Only the canaries were ever assigned the new version; everyone ends on v1.
    assert_eq!(h.first_new, order[..2].to_vec());
    assert!(h.agents.values().all(|s| s.active == 1));
    for id in ids(10) {
        assert_eq!(h.c.desired_version(&id), Some(1));
    }
    assert_eq!(h.command(Command::Abort), Err(RefusedReason::Finished));
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn failure_rate_gate_in_a_later_step() {
    let mut s = spec(Size::Count(1), vec![Size::Count(5), Size::Percent(100)]);
    s.max_failure_rate = 0.2;
    s.min_runs = 2;
    let mut h = Harness::new(s, 10);
    let order = stable_order("ro-1", &ids(10));
    h.runs_ok();
    h.runs_ok();
    h.advance(1_000);
    assert!(matches!(h.phase(), Phase::Baking { step: 1, .. }));
    assert_eq!(h.on_new(), 5);
    // 2 canary runs ok so far; one failure out of 3 runs is above 20%.
    h.run(&order[1], true);
    h.run(&order[2], true);
    h.run(&order[3], true);
    assert!(matches!(h.phase(), Phase::Baking { .. }));
    h.run(&order[4], false); // 1/6 = 16.7%
    assert!(matches!(h.phase(), Phase::Baking { .. }));
    // (Another agent: a second failure of order[4] within its first 3 runs would fail its
    // probation (3, 1) before the rate is looked at.)
    h.run(&order[3], false); // 2/7 = 28.6%
    assert!(
        matches!(h.phase(), Phase::RolledBack { ref reason } if reason.contains("failure rate")),
        "{:?}",
        h.phase()
    );
    assert_eq!(h.first_new, order[..5].to_vec());
    assert!(h.agents.values().all(|s| s.active == 1));
    let g = h.c.status(h.now).gate;
    assert_eq!((g.runs, g.failures), (7, 2));
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn manual_gates_wait_for_promote() {
    let mut s = spec(Size::Count(1), vec![Size::Percent(50), Size::Percent(100)]);
    s.manual = true;
    let mut h = Harness::quiet(s, 4);
    assert_eq!(h.command(Command::Promote), Err(RefusedReason::NotAtGate));
    h.auto = true;
    h.settle();
    h.healthy_round();
    assert_eq!(h.phase(), Phase::AwaitingPromote { step: 0 });
    h.advance(100_000);
    assert_eq!(
        h.phase(),
        Phase::AwaitingPromote { step: 0 },
        "no progress without promote"
    );
    assert_eq!(h.on_new(), 1);
    h.command(Command::Promote).unwrap();
    assert_eq!(h.on_new(), 2);
    h.healthy_round();
    assert_eq!(h.phase(), Phase::AwaitingPromote { step: 1 });
    h.command(Command::Promote).unwrap();
    h.healthy_round();
    assert_eq!(h.phase(), Phase::AwaitingPromote { step: 2 });
    h.command(Command::Promote).unwrap();
    assert_eq!(h.phase(), Phase::Succeeded);
    assert_eq!(h.command(Command::Promote), Err(RefusedReason::Finished));
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn promote_skips_a_bake() {
    let mut s = spec(Size::Count(1), vec![Size::Percent(100)]);
    s.bake_ms = 3_600_000;
    s.min_runs = 5;
    let mut h = Harness::new(s, 3);
    assert!(matches!(h.phase(), Phase::Baking { step: 0, .. }));
    h.command(Command::Promote).unwrap();
    assert!(matches!(h.phase(), Phase::Baking { step: 1, .. }));
    assert_eq!(h.on_new(), 3);
}

#[test]
fn pause_and_resume() {
    let mut h = Harness::new(spec(Size::Count(1), vec![Size::Percent(100)]), 3);
    h.runs_ok();
    h.command(Command::Pause).unwrap();
    assert_eq!(h.command(Command::Pause), Err(RefusedReason::AlreadyPaused));
    assert_eq!(h.command(Command::Promote), Err(RefusedReason::Paused));
    assert_eq!(h.c.poll_timeout(), None, "no bake timer while paused");
    h.advance(10_000);
    assert!(matches!(h.phase(), Phase::Paused { .. }));
    assert_eq!(h.on_new(), 1, "no new assignment while paused");
    h.command(Command::Resume).unwrap();
    assert_eq!(h.command(Command::Resume), Err(RefusedReason::NotPaused));
    // The bake ended while paused: resuming passes the gate at once.
    assert!(
        matches!(h.phase(), Phase::Baking { step: 1, .. }),
        "{:?}",
        h.phase()
    );
    assert_eq!(h.on_new(), 3);
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn failures_roll_back_even_while_paused() {
    let mut h = Harness::new(spec(Size::Count(1), vec![Size::Percent(100)]), 3);
    h.command(Command::Pause).unwrap();
    let canary = h.first_new[0].clone();
    h.run(&canary, false);
    assert!(matches!(h.phase(), Phase::RolledBack { .. }));
}

#[test]
fn abort_mid_step_rolls_back() {
    let mut s = spec(Size::Count(1), vec![Size::Percent(50), Size::Percent(100)]);
    s.offline = OfflinePolicy::Wait { max_ms: 60_000 };
    let mut h = Harness::new(s, 6);
    h.healthy_round();
    assert_eq!(h.on_new(), 3);
    // One of the step's agents is offline: the rollback does not wait for it.
    let late = h.first_new[2].clone();
    h.agents.get_mut(&late).unwrap().online = false;
    h.c.handle_online(&late, false, h.now);
    h.command(Command::Abort).unwrap();
    assert_eq!(h.phase(), Phase::Aborted);
    assert!(
        h.actions
            .iter()
            .any(|(_, a)| *a == Action::Finished(Outcome::Aborted))
    );
    let abort_at = h
        .actions
        .iter()
        .position(|(_, a)| matches!(a, Action::Phase(Phase::RollingBack { .. })))
        .unwrap();
    assert!(
        !h.actions[abort_at..]
            .iter()
            .any(|(_, a)| matches!(a, Action::Assign { version: 2, .. }))
    );
    // It gets the old version when it returns.
    assert_eq!(h.c.desired_version(&late), Some(1));
    h.online(&late, true);
    assert!(h.agents.values().all(|s| s.active == 1));
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn probation_revert_fails_the_gate() {
    let mut h = Harness::new(spec(Size::Count(2), vec![Size::Percent(100)]), 5);
    let a = h.first_new[1].clone();
    h.agents.get_mut(&a).unwrap().active = 1;
    h.c.handle_reverted(&a, 2, 1, "2 of the first 3 runs failed", h.now);
    h.settle();
    assert!(
        matches!(h.phase(), Phase::RolledBack { ref reason } if reason.contains("probation")),
        "{:?}",
        h.phase()
    );
    let st = h.c.status(h.now);
    let ag = st.agents.iter().find(|x| x.agent_id == a).unwrap();
    assert_eq!(ag.state, AgentState::Failed);
    assert!(h.agents.values().all(|s| s.active == 1));
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn rejection_fails_the_gate_and_removal_when_fresh() {
    let mut s = spec(Size::Count(1), vec![Size::Percent(100)]);
    s.from_version = None;
    let members = ids(3)
        .into_iter()
        .map(|id| Member {
            agent_id: id,
            online: true,
            version: None,
        })
        .collect();
    let mut h = Harness::start(s, members, false);
    let canary = h.first_new[0].clone();
    h.c.handle_rejected(&canary, 2, "stale version", h.now);
    h.drain();
    // Rolling back a fresh rollout means "remove": version 0.
    assert!(h.actions.iter().any(
        |(_, a)| matches!(a, Action::Assign { agent_id, version: 0, .. } if *agent_id == canary)
    ));
    assert!(
        matches!(h.phase(), Phase::RolledBack { .. }),
        "never activated: nothing to wait for"
    );
    assert_eq!(h.c.desired_version(&canary), Some(0));
}

#[test]
fn offline_wait_times_out() {
    let mut s = spec(Size::Count(1), vec![Size::Count(3), Size::Percent(100)]);
    s.offline = OfflinePolicy::Wait { max_ms: 5_000 };
    let mut h = Harness::new(s, 6);
    let order = stable_order("ro-1", &ids(6));
    h.online(&order[2], false);
    h.healthy_round();
    assert!(matches!(h.phase(), Phase::Deploying { step: 1 }));
    assert_eq!(
        h.on_new(),
        3,
        "the offline agent is selected and waited for"
    );
    assert_eq!(h.c.poll_timeout(), Some(h.now + 5_000));
    h.advance(4_999);
    assert!(matches!(h.phase(), Phase::Deploying { step: 1 }));
    h.advance(1);
    assert!(
        matches!(h.phase(), Phase::RolledBack { ref reason } if reason.contains("offline")),
        "{:?}",
        h.phase()
    );
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn offline_wait_then_return_passes() {
    let mut s = spec(Size::Count(1), vec![Size::Count(3), Size::Percent(100)]);
    s.offline = OfflinePolicy::Wait { max_ms: 5_000 };
    let mut h = Harness::new(s, 6);
    let order = stable_order("ro-1", &ids(6));
    h.online(&order[2], false);
    h.healthy_round();
    h.advance(3_000);
    h.online(&order[2], true);
    assert!(matches!(h.phase(), Phase::Baking { step: 1, .. }));
}

#[test]
fn offline_skip_keeps_the_step_size() {
    let mut s = spec(Size::Count(1), vec![Size::Count(3), Size::Percent(100)]);
    s.offline = OfflinePolicy::Skip;
    let mut h = Harness::new(s, 6);
    let order = stable_order("ro-1", &ids(6));
    h.online(&order[1], false);
    h.healthy_round();
    assert!(matches!(h.phase(), Phase::Baking { step: 1, .. }));
    assert_eq!(h.on_new(), 3);
    assert_eq!(
        h.first_new,
        vec![order[0].clone(), order[2].clone(), order[3].clone()]
    );
    let st = h.c.status(h.now);
    assert_eq!(
        st.agents
            .iter()
            .find(|a| a.agent_id == order[1])
            .unwrap()
            .state,
        AgentState::Skipped
    );
    h.healthy_round();
    h.healthy_round();
    assert_eq!(h.phase(), Phase::Succeeded);
    // The skipped agent gets the new version when it returns.
    assert_eq!(h.c.desired_version(&order[1]), Some(2));
    h.online(&order[1], true);
    assert_eq!(h.agents[&order[1]].active, 2);
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn offline_fail_fails_at_once() {
    let mut s = spec(Size::Count(1), vec![Size::Count(3), Size::Percent(100)]);
    s.offline = OfflinePolicy::Fail;
    let mut h = Harness::new(s, 6);
    let order = stable_order("ro-1", &ids(6));
    h.online(&order[1], false);
    h.healthy_round();
    assert!(
        matches!(h.phase(), Phase::RolledBack { ref reason } if reason.contains(&order[1])),
        "{:?}",
        h.phase()
    );
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn agent_joining_mid_rollout() {
    let mut h = Harness::new(
        spec(Size::Count(1), vec![Size::Count(2), Size::Percent(100)]),
        4,
    );
    h.healthy_round();
    assert!(matches!(h.phase(), Phase::Baking { step: 1, .. }));
    // A joiner that runs v3 (outside the rollout) is sent the pool's old version.
    let mut members: Vec<Member> = ids(4)
        .into_iter()
        .map(|id| Member {
            agent_id: id,
            online: true,
            version: None,
        })
        .collect();
    for m in &mut members {
        m.version = Some(h.agents[&m.agent_id].active);
    }
    members.push(Member {
        agent_id: "new-1".into(),
        online: true,
        version: Some(3),
    });
    members.reverse();
    h.agents.insert(
        "new-1".into(),
        SimAgent {
            online: true,
            desired: None,
            active: 3,
        },
    );
    h.c.handle_members(members, h.now);
    h.settle();
    assert_eq!(h.c.desired_version("new-1"), Some(1));
    assert_eq!(h.agents["new-1"].active, 1);
    let st = h.c.status(h.now);
    assert_eq!(
        st.agents.last().unwrap().agent_id,
        "new-1",
        "appended to the order"
    );
    assert_eq!(st.members, 5);
    h.healthy_round();
    h.healthy_round();
    assert_eq!(h.phase(), Phase::Succeeded);
    assert_eq!(h.agents["new-1"].active, 2);
    assert_eq!(h.first_new.last().unwrap(), "new-1");
    insta::assert_snapshot!(h.transcript());
}

#[test]
fn departed_canary_is_replaced() {
    let mut h = Harness::new(spec(Size::Count(1), vec![Size::Percent(100)]), 3);
    h.auto = false;
    let order = stable_order("ro-1", &ids(3));
    let members = order[1..]
        .iter()
        .map(|id| Member {
            agent_id: id.clone(),
            online: true,
            version: Some(1),
        })
        .collect();
    h.c.handle_members(members, h.now);
    h.drain();
    assert_eq!(h.first_new, vec![order[0].clone(), order[1].clone()]);
    assert_eq!(h.c.desired_version(&order[0]), None);
}

#[test]
fn restart_mid_step_continues_identically() {
    let mk = || {
        let mut s = spec(Size::Count(1), vec![Size::Percent(50), Size::Percent(100)]);
        s.offline = OfflinePolicy::Wait { max_ms: 60_000 };
        Harness::new(s, 8)
    };
    let script = |h: &mut Harness, restart: bool| {
        h.runs_ok();
        // Mid-step 1: assignments sent, activations pending.
        h.auto = false;
        h.advance(1_000);
        let st = h.c.status(h.now);
        let pending: Vec<String> = st
            .agents
            .iter()
            .filter(|a| a.state == AgentState::Assigned)
            .map(|a| a.agent_id.clone())
            .collect();
        assert!(!pending.is_empty());
        h.activate(&pending[0], 2);
        h.now += 10;
        if restart {
            let bytes = h.c.encode();
            let before = h.c.status(h.now);
            h.c = Controller::decode(&bytes).unwrap();
            assert_eq!(h.c.status(h.now), before);
            let mark = h.actions.len();
            h.c.resume(h.now);
            h.drain();
            // Resume re-sends exactly the current phase's assignments (plus one audit line).
            let resent: Vec<&Action> = h.actions[mark..]
                .iter()
                .map(|(_, a)| a)
                .filter(|a| matches!(a, Action::Assign { .. }))
                .collect();
            assert_eq!(resent.len(), 4);
            assert!(
                resent
                    .iter()
                    .all(|a| matches!(a, Action::Assign { version: 2, .. }))
            );
            h.actions.truncate(mark);
            h.log.retain(|l| !l.starts_with(&format!("t={} ", h.now)));
        } else {
            h.c.handle_timeout(h.now);
            h.drain();
        }
        h.auto = true;
        h.settle();
        h.healthy_round();
        h.healthy_round();
    };
    let mut a = mk();
    script(&mut a, false);
    let mut b = mk();
    script(&mut b, true);
    assert_eq!(a.phase(), Phase::Succeeded);
    assert_eq!(a.actions, b.actions);
    assert_eq!(a.c, b.c);
    insta::assert_snapshot!(b.transcript());
}

#[test]
fn decode_refuses_garbage() {
    assert!(matches!(Controller::decode(&[]), Err(DecodeError::Cbor(_))));
    assert!(matches!(
        Controller::decode(&[0x82, 0x09, 0x80]),
        Err(DecodeError::Format(9))
    ));
    let h = Harness::new(ten_agent_plan(), 3);
    let mut bytes = h.c.encode();
    assert_eq!(Controller::decode(&bytes).unwrap(), h.c);
    bytes.push(0);
    assert!(Controller::decode(&bytes).is_err());
    let bytes = h.c.encode();
    for cut in 0..bytes.len() {
        assert!(Controller::decode(&bytes[..cut]).is_err());
    }
}

#[test]
fn per_agent_min_runs_hold_the_gate() {
    let mut s = spec(Size::Count(2), vec![Size::Percent(100)]);
    s.min_runs = 2;
    let mut h = Harness::new(s, 4);
    let order = stable_order("ro-1", &ids(4));
    h.advance(1_000);
    assert!(
        matches!(h.phase(), Phase::Baking { step: 0, .. }),
        "bake over, no runs yet"
    );
    assert_eq!(
        h.c.poll_timeout(),
        None,
        "nothing to wake up for: waiting for runs"
    );
    assert_eq!(h.c.status(h.now).gate.runs_needed, 4);
    h.run(&order[0], true);
    h.run(&order[0], true);
    h.run(&order[0], true);
    h.run(&order[1], true);
    assert!(
        matches!(h.phase(), Phase::Baking { step: 0, .. }),
        "the second canary has 1 run"
    );
    assert_eq!(h.c.status(h.now).gate.runs_needed, 1);
    h.run(&order[1], true);
    assert!(matches!(h.phase(), Phase::Baking { step: 1, .. }));
}

#[test]
fn step_min_runs_count_since_the_step_started() {
    let mut s = spec(Size::Count(1), vec![Size::Count(2), Size::Percent(100)]);
    s.min_runs = 3;
    s.min_runs_scope = Scope::Step;
    let mut h = Harness::new(s, 4);
    let order = stable_order("ro-1", &ids(4));
    for _ in 0..5 {
        h.run(&order[0], true);
    }
    h.advance(1_000);
    assert!(matches!(h.phase(), Phase::Baking { step: 1, .. }));
    h.advance(1_000);
    // The 5 runs of step 0 do not count for step 1.
    assert!(matches!(h.phase(), Phase::Baking { step: 1, .. }));
    assert_eq!(h.c.status(h.now).gate.runs_needed, 3);
    h.run(&order[1], true);
    h.run(&order[0], true);
    assert!(matches!(h.phase(), Phase::Baking { step: 1, .. }));
    h.run(&order[1], true);
    assert!(matches!(h.phase(), Phase::Baking { step: 2, .. }));
}

#[test]
fn bake_counts_from_the_last_activation() {
    let mut s = spec(Size::Count(2), vec![Size::Percent(100)]);
    s.min_runs = 0;
    let mut h = Harness::quiet(s, 3);
    let order = stable_order("ro-1", &ids(3));
    h.now = 100;
    h.activate(&order[0], 2);
    h.now = 700;
    h.activate(&order[1], 2);
    assert_eq!(
        h.phase(),
        Phase::Baking {
            step: 0,
            until_ms: 1_700
        }
    );
    assert_eq!(h.c.poll_timeout(), Some(1_700));
    h.now = 1_699;
    h.c.handle_timeout(h.now);
    assert!(matches!(h.phase(), Phase::Baking { step: 0, .. }));
    h.now = 1_700;
    h.c.handle_timeout(h.now);
    assert_eq!(h.phase(), Phase::Deploying { step: 1 });
}

#[test]
fn thousand_agents_zero_bake() {
    let mut s = ten_agent_plan();
    s.bake_ms = 0;
    s.min_runs = 0;
    let mut h = Harness::quiet(s, 1_000);
    let mut sizes = Vec::new();
    while !h.c.phase().is_terminal() {
        let pending: Vec<String> = h
            .agents
            .iter()
            .filter(|(_, a)| a.desired.is_some_and(|d| d != a.active))
            .map(|(id, _)| id.clone())
            .collect();
        assert!(!pending.is_empty(), "stuck in {:?}", h.phase());
        sizes.push((h.c.status(h.now).step, h.on_new()));
        for id in pending {
            h.activate(&id, 2);
        }
    }
    assert_eq!(h.phase(), Phase::Succeeded);
    // Steps 0 and 1 share the target 1: step 1 passes at once.
    assert_eq!(sizes, vec![(0, 1), (2, 100), (3, 500), (4, 1_000)]);
}

/// An agent's failed runs that make it revert under probation fail the gate as they arrive,
/// before its report of the revert (which comes after them, possibly after a partition): the
/// same runs must not first meet `min_runs` and pass the gate.
#[test]
fn runs_that_fail_probation_fail_the_gate_before_the_revert_report() {
    let mut s = spec(Size::Count(1), vec![Size::Percent(100)]);
    s.min_runs = 2;
    s.max_failure_rate = 1.0;
    s.probation = Some((3, 1));
    let mut h = Harness::new(s, 3);
    let order = stable_order("ro-1", &ids(3));
    h.advance(1_000);
    h.run(&order[0], true);
    h.run(&order[0], true);
    assert!(
        matches!(h.phase(), Phase::Baking { step: 1, .. }),
        "{:?}",
        h.phase()
    );
    h.advance(1_000);
    h.run(&order[2], true);
    h.run(&order[2], true);
    // One failure of the first three is allowed by the probation: no revert, no failed gate.
    h.run(&order[1], false);
    assert!(
        matches!(h.phase(), Phase::Baking { step: 1, .. }),
        "{:?}",
        h.phase()
    );
    // The second is not: the agent reverts by itself; its runs fail the gate at once.
    h.run(&order[1], false);
    assert!(
        matches!(h.phase(), Phase::RollingBack { ref reason } | Phase::RolledBack { ref reason }
            if reason.contains("failed its probation")),
        "{:?}",
        h.phase()
    );
}

/// Failures after the probation window (the first N runs) are left to the failure rate.
#[test]
fn failures_after_the_probation_window_do_not_fail_it() {
    let mut s = spec(Size::Count(1), vec![Size::Percent(100)]);
    s.min_runs = 5;
    s.max_failure_rate = 1.0;
    s.probation = Some((2, 0));
    let mut h = Harness::new(s, 2);
    let order = stable_order("ro-1", &ids(2));
    h.advance(1_000);
    for _ in 0..5 {
        h.run(&order[0], true);
    }
    assert!(
        matches!(h.phase(), Phase::Baking { step: 1, .. }),
        "{:?}",
        h.phase()
    );
    h.run(&order[1], true);
    h.run(&order[1], true);
    h.run(&order[1], false);
    h.run(&order[1], false);
    assert!(
        matches!(h.phase(), Phase::Baking { step: 1, .. }),
        "{:?}",
        h.phase()
    );
    h.run(&order[1], true);
    h.advance(1_000);
    assert_eq!(h.phase(), Phase::Succeeded);
}

/// Agents are found by id (the controller keeps an index of its members): events reach the
/// right agent after a departure moved the others up, after a join, and after a decode.
#[test]
fn events_reach_the_right_agent_after_a_departure_a_join_and_a_decode() {
    let mut s = spec(Size::Count(1), vec![Size::Percent(100)]);
    s.bake_ms = 0;
    s.probation = None;
    s.max_failure_rate = 1.0;
    let members = |ids: &[String]| -> Vec<Member> {
        ids.iter()
            .map(|id| Member {
                agent_id: id.clone(),
                online: true,
                version: Some(1),
            })
            .collect()
    };
    let all = ids(4);
    let order = stable_order("ro-1", &all);
    let mut c = Controller::new(s, members(&all), 0).unwrap();
    let agent =
        |c: &Controller, id: &str| c.status(10).agents.into_iter().find(|a| a.agent_id == id);
    assert_eq!(agent(&c, &order[0]).unwrap().selected_at, Some(0));
    // The canary leaves: the next in the order is selected in its place; a99 joins.
    let mut now: Vec<String> = order[1..].to_vec();
    now.push("a99".into());
    c.handle_members(members(&now), 1);
    assert!(agent(&c, &order[0]).is_none());
    assert_eq!(agent(&c, &order[1]).unwrap().selected_at, Some(0));
    c.handle_activated(&order[1], 2, 2);
    c.handle_run(&order[1], 2, true, 3);
    let a = agent(&c, &order[1]).unwrap();
    assert_eq!((a.state, a.runs), (AgentState::Active, 1));
    // Gate passed: the last step takes everyone, the joiner too.
    assert_eq!(c.desired_version("a99"), Some(2));
    let mut c = Controller::decode(&c.encode()).unwrap();
    for id in &now {
        c.handle_activated(id, 2, 4);
    }
    c.handle_run("a99", 2, false, 5);
    let a = agent(&c, "a99").unwrap();
    assert_eq!((a.runs, a.failures), (1, 1));
    assert_eq!(agent(&c, &order[2]).unwrap().runs, 0);
    // The departed canary's late events change nothing.
    c.handle_run(&order[0], 2, false, 6);
    assert_eq!(c.status(6).gate.failures, 1);
}
