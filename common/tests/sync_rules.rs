//! Unit tests for the session rules of `AgentSession` and `HubSession`: the outbox window and
//! acknowledgements, level-triggered deploys, and the verification of every statement the hub
//! signs (director key, agent, session nonce, command replay and expiry, root chain, snapshots).
#![allow(clippy::unwrap_used)]

mod support;

use outpost_common::proto::{
    AckBody, ActiveWorkflow, AgentMsg, Command, CommandBody, DOMAIN_ACK, DOMAIN_COMMAND,
    DOMAIN_SNAPSHOT, HubMsg, Rejection, SignedAssignment, SignedBundle, Snapshot, SnapshotEntry,
};
use outpost_common::record::{OutboxEntry, StatusEvent};
use outpost_common::sync::{
    AgentEvent, AgentSession, Desired, HubEvent, HubSession, HubState, SyncError,
};
use outpost_common::trust::{Director, WorkflowTrustState, check_deploy};
use support::{AGENT, Fleet, HUB_MS, SESSION, cfg, cfg_in, entries, entry, key};

/// Lifetime of the hub sessions' snapshots.
const TTL: i64 = 1_000;

fn welcome(acked: u64) -> HubMsg {
    Fleet::new().welcome(acked, vec!["p".into()])
}

fn ack(seq: u64) -> HubMsg {
    HubMsg::Ack {
        ack: Fleet::new().ack(seq),
    }
}

/// What the agent sends, but its clock reports (`a_verified_snapshot_reports_the_clock_offset`).
fn drain_tx(s: &mut AgentSession) -> Vec<AgentMsg> {
    std::iter::from_fn(|| s.poll_transmit())
        .filter(|m| !matches!(m, AgentMsg::ClockOffset { .. }))
        .collect()
}

fn drain_events(s: &mut AgentSession) -> Vec<AgentEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// The events without the `Fresh` of each verified snapshot.
fn drain_events_but_fresh(s: &mut AgentSession) -> Vec<AgentEvent> {
    drain_events(s)
        .into_iter()
        .filter(|e| !matches!(e, AgentEvent::Fresh { .. }))
        .collect()
}

fn seqs(m: &AgentMsg) -> Vec<u64> {
    match m {
        AgentMsg::Status { entries } => entries.iter().map(|e| e.seq).collect(),
        other => panic!("not a Status: {other:?}"),
    }
}

/// Serve every `poll_need` from a store holding `store` entries.
fn feed(s: &mut AgentSession, store: &[OutboxEntry]) {
    while let Some((after, limit)) = s.poll_need() {
        let got: Vec<_> = store
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect();
        s.handle_entries(got);
    }
}

#[test]
fn agent_says_hello_first_and_sends_no_status_before_welcome() {
    let mut s = AgentSession::new(cfg(0, 10, 4, 3));
    s.send_command_result(1, true, "ok".into(), None);
    let tx = drain_tx(&mut s);
    assert!(matches!(
        &tx[0],
        AgentMsg::Hello {
            acked_seq: 0,
            last_seq: 10,
            root_version: 1,
            session,
            ..
        } if session.as_slice() == SESSION
    ));
    assert_eq!(tx.len(), 1, "results wait for the Welcome");
    assert_eq!(s.poll_need(), None);
    assert!(matches!(
        s.handle_hub(ack(1), 0),
        Err(SyncError::Protocol(_))
    ));
    s.handle_hub(welcome(0), 0).unwrap();
    assert!(matches!(
        s.poll_transmit(),
        Some(AgentMsg::CommandResult { id: 1, .. })
    ));
}

#[test]
fn agent_keeps_at_most_window_batches_in_flight_and_acks_release_them() {
    let store = entries(1, 20);
    let mut s = AgentSession::new(cfg(0, 20, 2, 3));
    drain_tx(&mut s);
    s.handle_hub(welcome(0), 0).unwrap();
    let mut sent = Vec::new();
    loop {
        feed(&mut s, &store);
        let tx = drain_tx(&mut s);
        if tx.is_empty() {
            break;
        }
        sent.extend(tx);
    }
    assert_eq!(sent.len(), 2);
    assert_eq!(seqs(&sent[0]), vec![1, 2, 3]);
    assert_eq!(seqs(&sent[1]), vec![4, 5, 6]);
    assert_eq!(s.in_flight(), 2);

    s.handle_hub(ack(3), 0).unwrap();
    assert_eq!(s.in_flight(), 1);
    assert_eq!(
        drain_events(&mut s),
        vec![
            AgentEvent::Fresh {
                hub_ms: HUB_MS,
                local_ms: 0,
                expires_ms: HUB_MS + 86_400_000
            },
            AgentEvent::Paused(vec!["p".into()]),
            AgentEvent::Acked(3)
        ]
    );
    feed(&mut s, &store);
    let tx = drain_tx(&mut s);
    assert_eq!(tx.len(), 1);
    assert_eq!(seqs(&tx[0]), vec![7, 8, 9]);
    // A stale Ack changes nothing; an Ack beyond what was sent is a violation.
    s.handle_hub(ack(2), 0).unwrap();
    assert!(drain_events(&mut s).is_empty());
    assert!(s.handle_hub(ack(10), 0).is_err());
}

#[test]
fn agent_resumes_after_the_hubs_acked_seq_and_never_resends_acked_entries() {
    // The agent knows 5 acked; the hub says 8 committed (the Ack was lost with the connection).
    let store = entries(6, 12);
    let mut s = AgentSession::new(cfg(5, 12, 4, 100));
    drain_tx(&mut s);
    s.handle_hub(welcome(8), 0).unwrap();
    assert!(drain_events(&mut s).contains(&AgentEvent::Acked(8)));
    assert_eq!(s.poll_need(), Some((8, 100)));
    // Even if the store still returns older entries, they are not sent.
    s.handle_entries(store.clone());
    let tx = drain_tx(&mut s);
    assert_eq!(seqs(&tx[0]), vec![9, 10, 11, 12]);
}

#[test]
fn agent_outbox_growth_resumes_sending_and_empty_reads_stop_asking() {
    let mut s = AgentSession::new(cfg(0, 2, 4, 10));
    drain_tx(&mut s);
    s.handle_hub(welcome(0), 0).unwrap();
    assert_eq!(s.poll_need(), Some((0, 10)));
    s.handle_entries(entries(1, 2));
    assert_eq!(s.poll_need(), None);
    assert_eq!(drain_tx(&mut s).len(), 1);
    s.handle_outbox_grew(4);
    assert_eq!(s.poll_need(), Some((2, 10)));
    s.handle_entries(vec![]);
    assert_eq!(s.poll_need(), None, "an empty read must not loop");
    s.handle_outbox_grew(5);
    assert_eq!(s.poll_need(), Some((2, 10)));
}

#[test]
fn agent_reports_a_hub_behind_its_deletions() {
    let mut s = AgentSession::new(cfg(10, 12, 4, 10));
    drain_tx(&mut s);
    s.handle_hub(welcome(3), 0).unwrap();
    let ev = drain_events(&mut s);
    assert!(ev.contains(&AgentEvent::SeqMismatch {
        hub_acked: 3,
        agent_acked: 10,
        agent_last: 12
    }));
    // The hub lost 4..=10: the driver re-enqueues what it still holds before anything is sent.
    assert!(ev.contains(&AgentEvent::Resend {
        hub_acked: 3,
        agent_acked: 10
    }));
    assert!(s.is_resend_pending());
    assert_eq!(
        s.poll_need(),
        None,
        "no Status before the resend is committed"
    );
    assert!(drain_tx(&mut s).is_empty());
    // The snapshots went in as seqs 13..=15; it resumes after what it still has, not at 3.
    s.handle_resent(15);
    assert!(!s.is_resend_pending());
    assert_eq!(s.poll_need(), Some((10, 10)));
    s.handle_entries(entries(11, 15));
    let sent: Vec<u64> = drain_tx(&mut s).iter().flat_map(seqs).collect();
    assert_eq!(sent, (11..=15).collect::<Vec<_>>());
}

#[test]
fn agent_with_a_hub_at_or_ahead_of_its_acks_resends_nothing() {
    for hub in [10, 11] {
        let mut s = AgentSession::new(cfg(10, 12, 4, 10));
        drain_tx(&mut s);
        s.handle_hub(welcome(hub), 0).unwrap();
        let ev = drain_events(&mut s);
        assert!(
            !ev.iter().any(|e| matches!(e, AgentEvent::Resend { .. })),
            "{ev:?}"
        );
        assert!(!s.is_resend_pending());
        assert_eq!(s.poll_need(), Some((hub, 10)));
    }
}

#[test]
fn agent_turns_hub_messages_into_events_and_goodbye_closes() {
    let f = Fleet::new();
    let mut s = AgentSession::new(cfg_in(&f, 0, 0, 4, 10));
    drain_tx(&mut s);
    let listed = SnapshotEntry {
        workflow: "etl".into(),
        version: 3,
        epoch: 5,
        content_hash: "h".into(),
    };
    let HubMsg::Welcome {
        ack, roots, paused, ..
    } = f.welcome(0, vec![])
    else {
        unreachable!()
    };
    let welcome = HubMsg::Welcome {
        ack,
        roots,
        paused,
        snapshot: f.snapshot(vec![listed.clone()]),
        replicas: None,
    };
    s.handle_hub(welcome.clone(), 0).unwrap();
    assert!(s.handle_hub(welcome, 0).is_err(), "second Welcome");
    // The Deploy is checked by the driver (`check_deploy`) against the session's snapshot,
    // which the event carries.
    let a = SignedAssignment {
        body_bytes: vec![1],
        signature: f.director.key().sign(b"x", b"y"),
    };
    s.handle_hub(
        HubMsg::Deploy {
            assignment: a.clone(),
            bundle: None,
        },
        0,
    )
    .unwrap();
    s.handle_hub(
        f.command(
            9,
            Command::Pause {
                workflow: "etl".into(),
            },
            60_000,
        ),
        0,
    )
    .unwrap();
    s.handle_hub(
        HubMsg::Goodbye {
            reason: "revoked".into(),
        },
        0,
    )
    .unwrap();
    let ev = drain_events_but_fresh(&mut s);
    let snapshot = Snapshot {
        agent_id: AGENT.into(),
        session: SESSION.to_vec(),
        issued_ms: HUB_MS,
        expires_ms: HUB_MS + 86_400_000,
        workflows: vec![listed],
    };
    assert_eq!(
        ev[1..],
        [
            AgentEvent::Deploy {
                assignment: a,
                bundle: None,
                snapshot: Some(snapshot),
            },
            AgentEvent::Command {
                id: 9,
                command: Command::Pause {
                    workflow: "etl".into()
                }
            },
            AgentEvent::Goodbye("revoked".into()),
        ]
    );
    assert!(s.is_closed());
}

/// An agent session that sent entries 1..=6 (two batches) and was welcomed with nothing acked.
fn agent_with_batches_in_flight(f: &Fleet) -> AgentSession {
    let mut s = AgentSession::new(cfg_in(f, 0, 6, 4, 3));
    drain_tx(&mut s);
    s.handle_hub(f.welcome(0, vec![]), 0).unwrap();
    let mut sent = 0;
    loop {
        feed(&mut s, &entries(1, 6));
        let n = drain_tx(&mut s).len();
        if n == 0 {
            break;
        }
        sent += n;
    }
    assert_eq!(sent, 2);
    drain_events(&mut s);
    s
}

#[test]
fn an_ack_by_another_key_or_for_another_agent_or_session_closes_and_deletes_nothing() {
    let f = Fleet::new();
    let other_session = [0x11; 16];
    // A key the root does not name, the release key (named, but not a director), and the
    // director's own statements bound elsewhere.
    let stranger = Director::new(key(9));
    let releaser = Director::new(key(2));
    let bad = [
        stranger.sign_ack(&AckBody {
            agent_id: AGENT.into(),
            session: SESSION.to_vec(),
            seq: 3,
            hub_time_ms: HUB_MS,
        }),
        releaser.sign_ack(&AckBody {
            agent_id: AGENT.into(),
            session: SESSION.to_vec(),
            seq: 3,
            hub_time_ms: HUB_MS,
        }),
        f.ack_for("agent-2", &SESSION, 3),
        f.ack_for(AGENT, &other_session, 3),
        // Domain separation: a command's signature is no acknowledgement.
        {
            let HubMsg::Command { command, .. } =
                f.command(3, Command::Cancel { run_id: "r".into() }, 1000)
            else {
                unreachable!()
            };
            command
        },
    ];
    for st in &bad {
        let mut s = agent_with_batches_in_flight(&f);
        let r = s.handle_hub(HubMsg::Ack { ack: st.clone() }, 0);
        assert!(matches!(r, Err(SyncError::Protocol(_))), "{r:?}");
        assert_eq!(drain_events(&mut s), vec![], "nothing deleted");
        assert_eq!(s.acked_seq(), 0);
        assert_eq!(s.in_flight(), 2);
        // The same statement in a Welcome is refused too, before anything is acted on.
        let mut s = AgentSession::new(cfg_in(&f, 0, 6, 4, 3));
        drain_tx(&mut s);
        let HubMsg::Welcome {
            roots,
            paused,
            snapshot,
            ..
        } = f.welcome(3, vec![])
        else {
            unreachable!()
        };
        let w = HubMsg::Welcome {
            ack: st.clone(),
            roots,
            paused,
            snapshot,
            replicas: None,
        };
        assert!(matches!(s.handle_hub(w, 0), Err(SyncError::Protocol(_))));
        assert_eq!(drain_events(&mut s), vec![], "nothing deleted");
        assert!(!s.is_welcomed());
    }
    // Control: the director's Ack for this agent and session deletes.
    let mut s = agent_with_batches_in_flight(&f);
    s.handle_hub(HubMsg::Ack { ack: f.ack(3) }, 0).unwrap();
    assert_eq!(drain_events(&mut s), vec![AgentEvent::Acked(3)]);
}

#[test]
fn a_snapshot_for_another_agent_or_session_closes_the_session() {
    let f = Fleet::new();
    let body = |agent: &str, session: &[u8]| Snapshot {
        agent_id: agent.into(),
        session: session.to_vec(),
        issued_ms: HUB_MS,
        expires_ms: HUB_MS + 1000,
        workflows: vec![],
    };
    for st in [
        f.director.sign_snapshot(&body("agent-2", &SESSION)),
        f.director.sign_snapshot(&body(AGENT, &[0x11; 16])),
        Director::new(key(9)).sign_snapshot(&body(AGENT, &SESSION)),
    ] {
        let mut s = agent_with_batches_in_flight(&f);
        assert!(s.handle_hub(HubMsg::Snapshot { snapshot: st }, 0).is_err());
        assert_eq!(drain_events(&mut s), vec![]);
    }
    let mut s = agent_with_batches_in_flight(&f);
    s.handle_hub(
        HubMsg::Snapshot {
            snapshot: f.director.sign_snapshot(&body(AGENT, &SESSION)),
        },
        7,
    )
    .unwrap();
    assert_eq!(
        drain_events(&mut s),
        vec![AgentEvent::Fresh {
            hub_ms: HUB_MS,
            local_ms: 7,
            expires_ms: HUB_MS + 1000
        }]
    );
}

/// The command results the session queued.
fn command_results(s: &mut AgentSession) -> Vec<(u64, bool)> {
    drain_tx(s)
        .into_iter()
        .filter_map(|m| match m {
            AgentMsg::CommandResult { id, ok, .. } => Some((id, ok)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_replayed_command_is_refused_and_not_run() {
    let f = Fleet::new();
    let mut s = agent_with_batches_in_flight(&f);
    let pause = |id| {
        f.command(
            id,
            Command::Pause {
                workflow: "etl".into(),
            },
            60_000,
        )
    };
    s.handle_hub(pause(5), 0).unwrap();
    assert!(matches!(
        drain_events(&mut s)[..],
        [AgentEvent::Command { id: 5, .. }]
    ));
    // The same signed command again, and an older id: answered "refused", never run.
    s.handle_hub(pause(5), 1).unwrap();
    s.handle_hub(pause(4), 2).unwrap();
    assert_eq!(drain_events(&mut s), vec![]);
    assert_eq!(command_results(&mut s), vec![(5, false), (4, false)]);
    // A newer id runs.
    s.handle_hub(pause(6), 3).unwrap();
    assert!(matches!(
        drain_events(&mut s)[..],
        [AgentEvent::Command { id: 6, .. }]
    ));
    assert_eq!(command_results(&mut s), vec![]);
}

#[test]
fn an_expired_command_is_refused_and_not_run() {
    let f = Fleet::new();
    // Welcomed at local time 0 with the hub's signed time HUB_MS.
    let mut s = agent_with_batches_in_flight(&f);
    let trigger = |id| {
        f.command(
            id,
            Command::Trigger {
                workflow: "etl".into(),
                params: vec![],
            },
            100,
        )
    };
    // 50 ms later by the agent's clock: within its 100 ms.
    s.handle_hub(trigger(1), 50).unwrap();
    assert!(matches!(
        drain_events(&mut s)[..],
        [AgentEvent::Command { id: 1, .. }]
    ));
    // 500 ms later: expired by the hub's time as the agent tracks it.
    s.handle_hub(trigger(2), 500).unwrap();
    assert_eq!(drain_events(&mut s), vec![]);
    assert_eq!(command_results(&mut s), vec![(2, false)]);
    // A command for another session or agent, or by another key, is a violation.
    let c = |agent: &str, session: &[u8]| CommandBody {
        agent_id: agent.into(),
        session: session.to_vec(),
        id: 9,
        issued_ms: HUB_MS,
        expires_ms: HUB_MS + 60_000,
        command: Command::Cancel { run_id: "r".into() },
    };
    for command in [
        f.director.sign_command(&c(AGENT, &[0x11; 16])),
        f.director.sign_command(&c("agent-2", &SESSION)),
        Director::new(key(9)).sign_command(&c(AGENT, &SESSION)),
    ] {
        assert!(s.handle_hub(HubMsg::Command { id: 9, command }, 0).is_err());
        assert_eq!(drain_events(&mut s), vec![]);
    }
}

#[test]
fn a_welcome_whose_root_chain_does_not_verify_is_refused() {
    let mut f = Fleet::new();
    // A successor root signed by a key that is not a root key, naming a new director, with
    // statements by that director.
    let mut forged = Fleet::new();
    forged.root_key = key(8);
    let forged_root = forged.rotate_director(key(7), HUB_MS);
    let w = |fleet: &Fleet, roots| HubMsg::Welcome {
        ack: fleet.ack(0),
        roots,
        paused: vec![],
        snapshot: fleet.snapshot(vec![]),
        replicas: None,
    };
    let mut s = AgentSession::new(cfg_in(&f, 0, 0, 4, 10));
    drain_tx(&mut s);
    let r = s.handle_hub(w(&forged, vec![forged_root.clone()]), 0);
    assert!(matches!(r, Err(SyncError::Protocol(_))), "{r:?}");
    assert_eq!(drain_events(&mut s), vec![]);
    assert!(!s.is_welcomed());
    // The same root mid-session: refused, and the session keeps its trust.
    let mut s = agent_with_batches_in_flight(&f);
    let r = s.handle_hub(
        HubMsg::Roots {
            roots: vec![forged_root],
        },
        0,
    );
    assert!(matches!(r, Err(SyncError::Protocol(_))), "{r:?}");
    assert_eq!(drain_events(&mut s), vec![]);
    s.handle_hub(HubMsg::Ack { ack: f.ack(3) }, 0).unwrap();
    assert_eq!(drain_events(&mut s), vec![AgentEvent::Acked(3)]);
    // The real rotation: the agent follows it and takes the new director's statements.
    let v2 = f.rotate_director(key(4), HUB_MS);
    let mut s = AgentSession::new(cfg_in(&Fleet::new(), 0, 0, 4, 10));
    drain_tx(&mut s);
    s.handle_hub(w(&f, vec![v2]), 0).unwrap();
    assert!(s.is_welcomed());
    let ev = drain_events(&mut s);
    let AgentEvent::Roots {
        trust,
        reset_counters: false,
    } = &ev[0]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(trust, &f.newest_trust());
    assert_eq!(trust.version(), 2);
    // The old director is no longer trusted in this session.
    let r = s.handle_hub(
        HubMsg::Ack {
            ack: Fleet::new().ack(0),
        },
        0,
    );
    assert!(r.is_err());
}

fn hello(acked: u64) -> AgentMsg {
    AgentMsg::Hello {
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
        last_seq: 20,
        root_version: 1,
        session: SESSION.to_vec(),
    }
}

/// The seq of a hub `Ack`, checked as the agent checks it.
fn ack_seq(m: &HubMsg) -> Option<u64> {
    let HubMsg::Ack { ack } = m else { return None };
    let a: AckBody = Fleet::new()
        .trust()
        .verify_statement(DOMAIN_ACK, ack)
        .unwrap();
    assert_eq!(
        (a.agent_id.as_str(), a.session.as_slice()),
        (AGENT, &SESSION[..])
    );
    Some(a.seq)
}

/// The verified snapshot of a hub `Snapshot` or `Welcome`.
fn snapshot_of(m: &HubMsg) -> Option<Snapshot> {
    let st = match m {
        HubMsg::Snapshot { snapshot } | HubMsg::Welcome { snapshot, .. } => snapshot,
        _ => return None,
    };
    let s: Snapshot = Fleet::new()
        .trust()
        .verify_statement(DOMAIN_SNAPSHOT, st)
        .unwrap();
    assert_eq!(
        (s.agent_id.as_str(), s.session.as_slice()),
        (AGENT, &SESSION[..])
    );
    Some(s)
}

fn new_hub(now: i64) -> HubSession {
    HubSession::new(now, Fleet::new().director, TTL)
}

fn hub_open(committed: u64) -> HubSession {
    let mut h = new_hub(0);
    h.handle_agent(hello(committed), 1).unwrap();
    assert!(matches!(
        h.poll_event(),
        Some(HubEvent::Hello {
            root_version: 1,
            ..
        })
    ));
    assert_eq!(h.state(), HubState::AwaitAccept);
    h.accept(committed, vec![], vec![], 2).unwrap();
    let Some(HubMsg::Welcome { ack, .. }) = h.poll_transmit() else {
        panic!("no Welcome")
    };
    assert_eq!(ack_seq(&HubMsg::Ack { ack }), Some(committed));
    h
}

fn status(from: u64, to: u64) -> AgentMsg {
    AgentMsg::Status {
        entries: entries(from, to),
    }
}

#[test]
fn hub_requires_hello_then_accept() {
    let mut h = new_hub(0);
    assert!(h.handle_agent(status(1, 2), 0).is_err());
    let mut h2 = new_hub(0);
    h2.handle_agent(hello(0), 0).unwrap();
    assert!(
        h2.handle_agent(status(1, 2), 0).is_err(),
        "Status before Welcome"
    );
    assert_eq!(
        h2.send_command(1, Command::Cancel { run_id: "r".into() }, 0, 1000),
        Err(SyncError::NotOpen)
    );
    h.refuse("x".into());
    let mut h3 = new_hub(0);
    h3.handle_agent(hello(0), 0).unwrap();
    h3.refuse("revoked".into());
    assert_eq!(h3.state(), HubState::Closed);
    assert_eq!(
        h3.poll_transmit(),
        Some(HubMsg::Goodbye {
            reason: "revoked".into()
        })
    );
    assert!(h3.accept(0, vec![], vec![], 0).is_err());
    // A Hello without a session nonce of the right length is a violation.
    let mut h4 = new_hub(0);
    let AgentMsg::Hello {
        agent_id,
        software_version,
        labels,
        active,
        acked_seq,
        last_seq,
        root_version,
        ..
    } = hello(0)
    else {
        unreachable!()
    };
    let short = AgentMsg::Hello {
        agent_id,
        software_version,
        labels,
        active,
        acked_seq,
        last_seq,
        root_version,
        session: vec![1; 8],
    };
    assert!(h4.handle_agent(short, 0).is_err());
}

#[test]
fn hub_ingests_only_new_entries_and_acks_after_commit() {
    let mut h = hub_open(5);
    h.handle_agent(status(3, 8), 10).unwrap();
    assert_eq!(
        h.poll_event(),
        Some(HubEvent::Ingest {
            entries: entries(6, 8)
        })
    );
    assert_eq!(h.poll_transmit(), None, "no Ack before the commit");
    // A pipelined batch while the first is being committed.
    h.handle_agent(status(9, 10), 11).unwrap();
    assert_eq!(
        h.poll_event(),
        Some(HubEvent::Ingest {
            entries: entries(9, 10)
        })
    );
    h.committed(8, 11);
    assert_eq!(h.poll_transmit().as_ref().and_then(ack_seq), Some(8));
    h.committed(10, 11);
    assert_eq!(h.poll_transmit().as_ref().and_then(ack_seq), Some(10));
    // A resent batch of known entries is acknowledged again, never re-ingested.
    h.handle_agent(status(7, 10), 12).unwrap();
    assert_eq!(h.poll_event(), None);
    assert_eq!(h.poll_transmit().as_ref().and_then(ack_seq), Some(10));
    assert_eq!(h.last_heard_ms(), 12);
}

#[test]
fn hub_reports_gaps_and_still_ingests() {
    let mut h = hub_open(5);
    h.handle_agent(
        AgentMsg::Status {
            entries: vec![entry(8), entry(9), entry(12)],
        },
        0,
    )
    .unwrap();
    assert_eq!(
        h.poll_event(),
        Some(HubEvent::Gap {
            expected: 6,
            got: 8
        })
    );
    assert_eq!(
        h.poll_event(),
        Some(HubEvent::Gap {
            expected: 10,
            got: 12
        })
    );
    assert!(matches!(h.poll_event(), Some(HubEvent::Ingest { entries }) if entries.len() == 3));
}

#[test]
fn hub_refuses_unordered_or_oversized_batches() {
    let mut h = hub_open(0);
    let mut e = entries(1, 3);
    e.swap(0, 1);
    assert!(h.handle_agent(AgentMsg::Status { entries: e }, 0).is_err());
    let big = AgentMsg::Status {
        entries: entries(1, outpost_common::proto::MAX_BATCH as u64 + 1),
    };
    assert!(h.handle_agent(big, 0).is_err());
}

fn desired(version: u64, epoch: u64) -> Desired {
    Fleet::new().desired(AGENT, "etl", version, epoch, 0)
}

fn deploys(h: &mut HubSession) -> usize {
    std::iter::from_fn(|| h.poll_transmit())
        .filter(|m| matches!(m, HubMsg::Deploy { .. }))
        .count()
}

#[test]
fn hub_desired_state_is_level_triggered() {
    let mut h = hub_open(0);
    // What the agent reported: nothing to send.
    h.set_desired(vec![desired(2, 4)], 3);
    assert_eq!(deploys(&mut h), 0);
    // A change: one Deploy; the same set again: nothing.
    h.set_desired(vec![desired(3, 5)], 3);
    assert_eq!(deploys(&mut h), 1);
    h.set_desired(vec![desired(3, 5)], 3);
    assert_eq!(deploys(&mut h), 0);
    // Rejected: not resent in this session for the same (version, epoch).
    h.handle_agent(
        AgentMsg::DeployResult {
            workflow: "etl".into(),
            version: 3,
            epoch: 5,
            rejected: Some(Rejection::BadSignature),
        },
        0,
    )
    .unwrap();
    assert!(matches!(
        h.poll_event(),
        Some(HubEvent::DeployResult {
            rejected: Some(_),
            ..
        })
    ));
    h.set_desired(vec![desired(3, 5)], 3);
    assert_eq!(deploys(&mut h), 0);
    // Accepted: the reported state follows.
    h.set_desired(vec![desired(3, 6)], 3);
    assert_eq!(deploys(&mut h), 1);
    h.handle_agent(
        AgentMsg::DeployResult {
            workflow: "etl".into(),
            version: 3,
            epoch: 6,
            rejected: None,
        },
        0,
    )
    .unwrap();
    assert_eq!(h.reported().get("etl"), Some(&(3, 6)));
    // Removal of a workflow the agent does not run: nothing.
    let mut other = desired(0, 1);
    other.workflow = "gone".into();
    h.set_desired(vec![desired(3, 6), other], 3);
    assert_eq!(deploys(&mut h), 0);
}

#[test]
fn hub_sends_desired_deploys_right_after_welcome() {
    let mut h = new_hub(0);
    h.set_desired(vec![desired(3, 5)], 0);
    h.handle_agent(hello(0), 0).unwrap();
    assert_eq!(h.poll_transmit(), None, "nothing before accept");
    h.accept(0, vec![], vec![], 0).unwrap();
    let tx: Vec<_> = std::iter::from_fn(|| h.poll_transmit()).collect();
    assert!(matches!(tx[0], HubMsg::Welcome { .. }));
    assert!(matches!(tx[1], HubMsg::Deploy { .. }));
    assert_eq!(tx.len(), 2);
    // The Welcome's snapshot already lists the deploy: no separate Snapshot is needed.
    let listed = snapshot_of(&tx[0]).unwrap().workflows;
    assert_eq!(
        listed,
        vec![SnapshotEntry {
            workflow: "etl".into(),
            version: 3,
            epoch: 5,
            content_hash: desired(3, 5).content_hash,
        }]
    );
}

#[test]
fn hub_sends_a_snapshot_before_a_changed_deploy_and_resigns_it_at_half_its_ttl() {
    let f = Fleet::new();
    let mut h = new_hub(0);
    h.handle_agent(hello(0), 0).unwrap();
    h.accept(0, vec![], vec![], 100).unwrap();
    let w = h.poll_transmit().unwrap();
    let first = snapshot_of(&w).unwrap();
    assert_eq!(
        (first.issued_ms, first.expires_ms, first.workflows.len()),
        (100, 100 + TTL, 0)
    );
    // The desired set changes: a new snapshot listing it, then the Deploy.
    let d = desired(3, 5);
    h.set_desired(vec![d.clone()], 200);
    let tx: Vec<_> = std::iter::from_fn(|| h.poll_transmit()).collect();
    assert_eq!(tx.len(), 2, "{tx:?}");
    let snap = snapshot_of(&tx[0]).expect("a Snapshot first");
    assert!(matches!(tx[1], HubMsg::Deploy { .. }));
    assert_eq!((snap.issued_ms, snap.expires_ms), (200, 200 + TTL));
    // The agent accepts that Deploy against that snapshot.
    let HubMsg::Deploy { assignment, bundle } = &tx[1] else {
        unreachable!()
    };
    let ok = check_deploy(
        AGENT,
        &f.trust(),
        &WorkflowTrustState::default(),
        Some(&snap),
        assignment,
        bundle.as_ref(),
        HUB_MS,
    );
    assert!(ok.is_ok(), "{ok:?}");
    // Against the Welcome's (older) snapshot it would not be accepted.
    let old = check_deploy(
        AGENT,
        &f.trust(),
        &WorkflowTrustState::default(),
        Some(&first),
        assignment,
        bundle.as_ref(),
        HUB_MS,
    );
    assert_eq!(old.map(|_| ()), Err(Rejection::NotInSnapshot));
    // The same set again: no new snapshot.
    h.set_desired(vec![d.clone()], 300);
    assert_eq!(h.poll_transmit(), None);
    // Time passes: nothing before half the lifetime, a re-signed snapshot at half of it.
    h.tick(200 + TTL / 2 - 1);
    assert_eq!(h.poll_transmit(), None);
    h.tick(200 + TTL / 2);
    let again = snapshot_of(&h.poll_transmit().unwrap()).unwrap();
    assert_eq!(again.workflows, snap.workflows);
    assert_eq!(
        (again.issued_ms, again.expires_ms),
        (200 + TTL / 2, 200 + TTL / 2 + TTL)
    );
    assert_eq!(h.poll_transmit(), None);
    h.tick(200 + TTL - 1);
    assert_eq!(h.poll_transmit(), None);
}

#[test]
fn hub_commands_and_results() {
    let mut h = hub_open(0);
    h.send_command(
        4,
        Command::FetchLog {
            run_id: "r".into(),
            task: "a".into(),
            attempt: None,
        },
        10,
        5_000,
    )
    .unwrap();
    let Some(HubMsg::Command { id: 4, command }) = h.poll_transmit() else {
        panic!("no Command")
    };
    // Signed for this agent, this session and this id, valid for its ttl.
    let c: CommandBody = Fleet::new()
        .trust()
        .verify_statement(DOMAIN_COMMAND, &command)
        .unwrap();
    assert_eq!(
        (c.agent_id.as_str(), c.session.as_slice(), c.id),
        (AGENT, &SESSION[..], 4)
    );
    assert_eq!((c.issued_ms, c.expires_ms), (10, 5_010));
    h.handle_agent(
        AgentMsg::LogChunk {
            id: 4,
            data: b"hi".to_vec(),
            eof: true,
        },
        0,
    )
    .unwrap();
    assert_eq!(
        h.poll_event(),
        Some(HubEvent::LogChunk {
            id: 4,
            data: b"hi".to_vec(),
            eof: true
        })
    );
    assert!(h.handle_agent(hello(0), 0).is_err(), "second Hello");
}

#[test]
fn agent_batches_fit_in_a_frame() {
    let big: Vec<OutboxEntry> = (1..=10)
        .map(|seq| {
            let mut e = entry(seq);
            if let StatusEvent::Missed(m) = &mut e.event {
                m.reason = "x".repeat(300 * 1024);
            }
            e
        })
        .collect();
    let mut s = AgentSession::new(cfg(0, 10, 100, 256));
    drain_tx(&mut s);
    s.handle_hub(welcome(0), 0).unwrap();
    let mut got = Vec::new();
    loop {
        feed(&mut s, &big);
        let tx = drain_tx(&mut s);
        if tx.is_empty() {
            break;
        }
        for m in &tx {
            let frame = outpost_common::frame::encode(m).expect("fits in a frame");
            assert!(frame.len() <= outpost_common::proto::MAX_FRAME + 4);
            got.extend(seqs(m));
        }
    }
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
}

#[test]
fn a_restored_hub_numbers_epochs_and_versions_above_what_the_agent_accepted() {
    use outpost_common::sync::{issued_is_stale, next_epoch, next_version};
    // Normal life: the hub is the only source of numbers.
    assert_eq!(next_epoch(4, 4), 5);
    assert_eq!(next_epoch(0, 0), 1);
    assert!(!issued_is_stale(4, 4));
    assert_eq!(next_version(3, 3), 4);
    assert_eq!(next_version(0, 0), 1);
    // Restored from a backup taken at epoch 4 / version 2, the agent accepted epoch 9 / v5.
    assert!(issued_is_stale(4, 9));
    assert_eq!(next_epoch(4, 9), 10);
    assert_eq!(next_version(2, 5), 6);
    // A workflow the restored hub never assigned to the agent.
    assert_eq!(next_epoch(0, 7), 8);
}

fn unreleased(content_len: usize) -> SignedBundle {
    SignedBundle {
        header_bytes: vec![],
        content: vec![b'x'; content_len],
        release: vec![Fleet::new().release_key.sign(b"x", b"y")],
    }
}

#[test]
fn hub_drops_a_deploy_too_large_for_a_frame_and_the_session_goes_on() {
    use outpost_common::proto::MAX_FRAME;
    let mut h = hub_open(0);
    let mut huge = desired(3, 7);
    huge.bundle = Some(unreleased(MAX_FRAME + 1));
    let mut small = desired(1, 8);
    small.workflow = "backup".into();
    h.set_desired(vec![huge.clone(), small.clone()], 3);
    let sent: Vec<HubMsg> = std::iter::from_fn(|| h.poll_transmit()).collect();
    // Only the deliverable deploy goes out (after the snapshot); every frame sent fits.
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(snapshot_of(&sent[0]).is_some());
    assert!(matches!(sent[1], HubMsg::Deploy { .. }));
    for m in &sent {
        assert!(outpost_common::frame::encode(m).is_ok());
    }
    let ev: Vec<HubEvent> = std::iter::from_fn(|| h.poll_event()).collect();
    assert!(
        ev.iter()
            .any(|e| matches!(e, HubEvent::Undeliverable { bytes, .. } if *bytes > MAX_FRAME)),
        "{ev:?}"
    );
    assert_eq!(h.state(), HubState::Open);
    // Level-triggered: the same desired state does not queue it again in this session.
    h.set_desired(vec![huge, small], 3);
    assert!(std::iter::from_fn(|| h.poll_transmit()).next().is_none());
    h.set_desired(vec![desired(3, 7)], 3);
    assert_eq!(deploys(&mut h), 0);
    // A command too large is dropped too, naming its id so its waiter can be answered.
    h.send_command(
        5,
        Command::Trigger {
            workflow: "etl".into(),
            params: vec![("p".into(), "x".repeat(MAX_FRAME))],
        },
        3,
        1_000,
    )
    .unwrap();
    assert!(h.poll_transmit().is_none());
    assert!(matches!(
        h.poll_event(),
        Some(HubEvent::Undeliverable {
            command: Some(5),
            ..
        })
    ));
    // The session still works.
    h.handle_agent(status(1, 2), 3).unwrap();
    assert!(matches!(h.poll_event(), Some(HubEvent::Ingest { .. })));
}

#[test]
fn a_version_whose_deploy_cannot_fit_a_frame_is_measured_above_the_limit() {
    use outpost_common::proto::MAX_FRAME;
    use outpost_common::sync::deploy_frame_len;
    assert!(deploy_frame_len(&unreleased(1000), 0) < MAX_FRAME);
    assert!(deploy_frame_len(&unreleased(MAX_FRAME - 100), 0) > MAX_FRAME);
    assert!(deploy_frame_len(&unreleased(1000), 0) > 1000 + 64);
    // Room for release signatures still to come (a version released later by more keys).
    let one = deploy_frame_len(&unreleased(1000), 0);
    assert!(deploy_frame_len(&unreleased(1000), 3) >= one + 3 * 64);
}

#[test]
fn telemetry_is_due_at_welcome_then_every_interval_and_never_before_welcome() {
    let mut s = AgentSession::new(cfg(0, 0, 4, 3));
    s.set_telemetry_interval(10_000);
    assert_eq!(s.telemetry_due(5), None, "not welcomed yet");
    drain_tx(&mut s);
    s.handle_hub(welcome(0), 100).unwrap();
    assert_eq!(s.telemetry_due(100), Some(100), "the first report at once");
    let t = outpost_common::proto::AgentTelemetry {
        at_ms: 100,
        outbox_pending: 3,
        ..Default::default()
    };
    s.send_telemetry(t.clone(), 100);
    assert_eq!(s.telemetry_due(200), Some(10_100));
    let tx = drain_tx(&mut s);
    assert!(tx.contains(&AgentMsg::Telemetry(t)), "{tx:?}");
    let mut off = AgentSession::new(cfg(0, 0, 4, 3));
    off.handle_hub(welcome(0), 100).unwrap();
    assert_eq!(off.telemetry_due(100), None, "no interval: no reports");
}

/// The hub's Welcome lists its replicas when set (an empty list sends none); the agent session
/// turns a non-empty list into one event for the driver to keep, and nothing else changes.
#[test]
fn replica_addresses_travel_in_the_welcome() {
    let replicas = vec!["a.example:7443".to_string(), "b.example:7443".to_string()];
    for (set, sent) in [
        (None, None),
        (Some(vec![]), None),
        (Some(replicas.clone()), Some(replicas.clone())),
    ] {
        let mut h = new_hub(0);
        if let Some(list) = set {
            h.set_replicas(list);
        }
        h.handle_agent(hello(0), 1).unwrap();
        while h.poll_event().is_some() {}
        h.accept(0, vec![], vec![], 2).unwrap();
        let Some(HubMsg::Welcome { replicas: got, .. }) = h.poll_transmit() else {
            panic!("no Welcome")
        };
        assert_eq!(got, sent);
    }

    let with = |list: Option<Vec<String>>| {
        let HubMsg::Welcome {
            ack,
            roots,
            paused,
            snapshot,
            ..
        } = welcome(0)
        else {
            unreachable!()
        };
        HubMsg::Welcome {
            ack,
            roots,
            paused,
            snapshot,
            replicas: list,
        }
    };
    let events = |msg: HubMsg| {
        let mut s = AgentSession::new(cfg(0, 0, 4, 10));
        drain_tx(&mut s);
        s.handle_hub(msg, 0).unwrap();
        assert!(s.is_welcomed());
        drain_events_but_fresh(&mut s)
    };
    let without = events(with(None));
    assert_eq!(events(with(Some(vec![]))), without);
    let mut expected = without.clone();
    expected.push(AgentEvent::Replicas(replicas.clone()));
    assert_eq!(events(with(Some(replicas))), expected);
}
