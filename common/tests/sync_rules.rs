//! Unit tests for the session rules of `AgentSession` and `HubSession`.
#![allow(clippy::unwrap_used)]

use outpost_common::proto::{
    ActiveWorkflow, AgentMsg, Command, HubMsg, Rejection, SignedAssignment,
};
use outpost_common::record::{MissedFirings, OutboxEntry, StatusEvent};
use outpost_common::sync::{
    AgentEvent, AgentSession, AgentSessionConfig, Desired, HubEvent, HubSession, HubState,
    SyncError,
};

fn entry(seq: u64) -> OutboxEntry {
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

fn entries(from: u64, to: u64) -> Vec<OutboxEntry> {
    (from..=to).map(entry).collect()
}

fn cfg(acked: u64, last: u64, window: usize, batch: usize) -> AgentSessionConfig {
    AgentSessionConfig {
        agent_id: "agent-1".into(),
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
        trusted_key: "k".into(),
        window,
        batch,
    }
}

fn welcome(acked: u64) -> HubMsg {
    HubMsg::Welcome {
        acked_seq: acked,
        key_chain: vec![],
        paused: vec!["p".into()],
        hub_time_ms: 0,
    }
}

fn drain_tx(s: &mut AgentSession) -> Vec<AgentMsg> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn drain_events(s: &mut AgentSession) -> Vec<AgentEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
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
        tx[0],
        AgentMsg::Hello {
            acked_seq: 0,
            last_seq: 10,
            ..
        }
    ));
    assert_eq!(tx.len(), 1, "results wait for the Welcome");
    assert_eq!(s.poll_need(), None);
    assert!(matches!(
        s.handle_hub(HubMsg::Ack { seq: 1 }),
        Err(SyncError::Protocol(_))
    ));
    s.handle_hub(welcome(0)).unwrap();
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
    s.handle_hub(welcome(0)).unwrap();
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

    s.handle_hub(HubMsg::Ack { seq: 3 }).unwrap();
    assert_eq!(s.in_flight(), 1);
    assert_eq!(
        drain_events(&mut s),
        vec![AgentEvent::Paused(vec!["p".into()]), AgentEvent::Acked(3)]
    );
    feed(&mut s, &store);
    let tx = drain_tx(&mut s);
    assert_eq!(tx.len(), 1);
    assert_eq!(seqs(&tx[0]), vec![7, 8, 9]);
    // A stale Ack changes nothing; an Ack beyond what was sent is a violation.
    s.handle_hub(HubMsg::Ack { seq: 2 }).unwrap();
    assert!(drain_events(&mut s).is_empty());
    assert!(s.handle_hub(HubMsg::Ack { seq: 10 }).is_err());
}

#[test]
fn agent_resumes_after_the_hubs_acked_seq_and_never_resends_acked_entries() {
    // The agent knows 5 acked; the hub says 8 committed (the Ack was lost with the connection).
    let store = entries(6, 12);
    let mut s = AgentSession::new(cfg(5, 12, 4, 100));
    drain_tx(&mut s);
    s.handle_hub(welcome(8)).unwrap();
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
    s.handle_hub(welcome(0)).unwrap();
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
    s.handle_hub(welcome(3)).unwrap();
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
        s.handle_hub(welcome(hub)).unwrap();
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
    let mut s = AgentSession::new(cfg(0, 0, 4, 10));
    drain_tx(&mut s);
    s.handle_hub(welcome(0)).unwrap();
    assert!(s.handle_hub(welcome(0)).is_err(), "second Welcome");
    let a = SignedAssignment {
        body_bytes: vec![1],
        key_id: "k".into(),
        sig: vec![2],
    };
    s.handle_hub(HubMsg::Deploy {
        assignment: a.clone(),
        bundle: None,
    })
    .unwrap();
    s.handle_hub(HubMsg::Command {
        id: 9,
        command: Command::Pause {
            workflow: "etl".into(),
        },
    })
    .unwrap();
    s.handle_hub(HubMsg::Goodbye {
        reason: "revoked".into(),
    })
    .unwrap();
    let ev = drain_events(&mut s);
    assert_eq!(
        ev[1..],
        [
            AgentEvent::Deploy {
                assignment: a,
                bundle: None
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

fn hello(acked: u64) -> AgentMsg {
    AgentMsg::Hello {
        agent_id: "agent-1".into(),
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
        trusted_key: "k".into(),
    }
}

fn hub_open(committed: u64) -> HubSession {
    let mut h = HubSession::new(0);
    h.handle_agent(hello(committed), 1).unwrap();
    assert!(matches!(h.poll_event(), Some(HubEvent::Hello { .. })));
    assert_eq!(h.state(), HubState::AwaitAccept);
    h.accept(committed, vec![], vec![], 2).unwrap();
    assert!(matches!(
        h.poll_transmit(),
        Some(HubMsg::Welcome { acked_seq, .. }) if acked_seq == committed
    ));
    h
}

fn status(from: u64, to: u64) -> AgentMsg {
    AgentMsg::Status {
        entries: entries(from, to),
    }
}

#[test]
fn hub_requires_hello_then_accept() {
    let mut h = HubSession::new(0);
    assert!(h.handle_agent(status(1, 2), 0).is_err());
    let mut h2 = HubSession::new(0);
    h2.handle_agent(hello(0), 0).unwrap();
    assert!(
        h2.handle_agent(status(1, 2), 0).is_err(),
        "Status before Welcome"
    );
    assert_eq!(
        h2.send_command(1, Command::Cancel { run_id: "r".into() }),
        Err(SyncError::NotOpen)
    );
    h.refuse("x".into());
    let mut h3 = HubSession::new(0);
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
    h.committed(8);
    assert_eq!(h.poll_transmit(), Some(HubMsg::Ack { seq: 8 }));
    h.committed(10);
    assert_eq!(h.poll_transmit(), Some(HubMsg::Ack { seq: 10 }));
    // A resent batch of known entries is acknowledged again, never re-ingested.
    h.handle_agent(status(7, 10), 12).unwrap();
    assert_eq!(h.poll_event(), None);
    assert_eq!(h.poll_transmit(), Some(HubMsg::Ack { seq: 10 }));
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
    Desired {
        workflow: "etl".into(),
        version,
        epoch,
        assignment: SignedAssignment {
            body_bytes: vec![epoch as u8],
            key_id: "k".into(),
            sig: vec![],
        },
        bundle: None,
    }
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
    h.set_desired(vec![desired(2, 4)]);
    assert_eq!(deploys(&mut h), 0);
    // A change: one Deploy; the same set again: nothing.
    h.set_desired(vec![desired(3, 5)]);
    assert_eq!(deploys(&mut h), 1);
    h.set_desired(vec![desired(3, 5)]);
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
    h.set_desired(vec![desired(3, 5)]);
    assert_eq!(deploys(&mut h), 0);
    // Accepted: the reported state follows.
    h.set_desired(vec![desired(3, 6)]);
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
    h.set_desired(vec![desired(3, 6), other]);
    assert_eq!(deploys(&mut h), 0);
}

#[test]
fn hub_sends_desired_deploys_right_after_welcome() {
    let mut h = HubSession::new(0);
    h.set_desired(vec![desired(3, 5)]);
    h.handle_agent(hello(0), 0).unwrap();
    assert_eq!(h.poll_transmit(), None, "nothing before accept");
    h.accept(0, vec![], vec![], 0).unwrap();
    let tx: Vec<_> = std::iter::from_fn(|| h.poll_transmit()).collect();
    assert!(matches!(tx[0], HubMsg::Welcome { .. }));
    assert!(matches!(tx[1], HubMsg::Deploy { .. }));
    assert_eq!(tx.len(), 2);
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
    )
    .unwrap();
    assert!(matches!(
        h.poll_transmit(),
        Some(HubMsg::Command { id: 4, .. })
    ));
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
    s.handle_hub(welcome(0)).unwrap();
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

#[test]
fn hub_drops_a_deploy_too_large_for_a_frame_and_the_session_goes_on() {
    use outpost_common::proto::{MAX_FRAME, SignedBundle};
    let mut h = hub_open(0);
    let mut huge = desired(3, 7);
    huge.bundle = Some(SignedBundle {
        header_bytes: vec![],
        content: vec![b'x'; MAX_FRAME + 1],
        key_id: "k".into(),
        sig: vec![0; 64],
    });
    let mut small = desired(1, 8);
    small.workflow = "backup".into();
    h.set_desired(vec![huge, small]);
    let sent: Vec<HubMsg> = std::iter::from_fn(|| h.poll_transmit()).collect();
    // Only the deliverable deploy goes out; every frame sent fits.
    assert_eq!(sent.len(), 1, "{sent:?}");
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
    h.set_desired(vec![desired(3, 7)]);
    assert!(std::iter::from_fn(|| h.poll_transmit()).next().is_none());
    // A command too large is dropped too, naming its id so its waiter can be answered.
    h.send_command(
        5,
        Command::Trigger {
            workflow: "etl".into(),
            params: vec![("p".into(), "x".repeat(MAX_FRAME))],
        },
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
    use outpost_common::proto::{MAX_FRAME, SignedBundle};
    use outpost_common::sync::deploy_frame_len;
    let bundle = |n: usize| SignedBundle {
        header_bytes: vec![],
        content: vec![b'x'; n],
        key_id: "k".into(),
        sig: vec![0; 64],
    };
    assert!(deploy_frame_len(&bundle(1000)) < MAX_FRAME);
    assert!(deploy_frame_len(&bundle(MAX_FRAME - 100)) > MAX_FRAME);
    assert!(deploy_frame_len(&bundle(1000)) > 1000 + 64);
}

fn hub_hello(h: &mut HubSession) {
    let hello = AgentSession::new(cfg(0, 0, 1, 1)).poll_transmit().unwrap();
    h.handle_agent(hello, 1).unwrap();
    while h.poll_event().is_some() {}
}

#[test]
fn an_expired_certificate_session_only_renews() {
    let mut h = HubSession::new(0);
    hub_hello(&mut h);
    h.renew_only("certificate expired".into()).unwrap();
    assert_eq!(h.state(), HubState::RenewOnly);
    assert_eq!(
        h.poll_transmit(),
        Some(HubMsg::RenewRequired {
            reason: "certificate expired".into()
        })
    );
    // Status, deploy results and commands are ignored: nothing to ingest, nothing sent.
    h.handle_agent(
        AgentMsg::Status {
            entries: entries(1, 3),
        },
        2,
    )
    .unwrap();
    h.set_desired(vec![]);
    assert_eq!(h.poll_event(), None);
    assert!(
        h.send_command(
            1,
            Command::Pause {
                workflow: "w".into()
            }
        )
        .is_err()
    );
    assert_eq!(h.poll_transmit(), None);
    // The renewal goes through.
    h.handle_agent(AgentMsg::RenewCert { csr_der: vec![1] }, 3)
        .unwrap();
    assert_eq!(
        h.poll_event(),
        Some(HubEvent::RenewCert { csr_der: vec![1] })
    );
    h.send_certificate(vec![9]).unwrap();
    assert_eq!(
        h.poll_transmit(),
        Some(HubMsg::Certificate { cert_der: vec![9] })
    );
    // renew_only is only an answer to Hello.
    assert!(h.renew_only("again".into()).is_err());
}

#[test]
fn an_open_session_renews_and_the_agent_asks_before_or_after_welcome() {
    let mut h = HubSession::new(0);
    // Nothing to renew before Hello.
    assert!(h.send_certificate(vec![1]).is_err());
    hub_hello(&mut h);
    h.accept(0, vec![], vec![], 1).unwrap();
    while h.poll_transmit().is_some() {}
    h.handle_agent(AgentMsg::RenewCert { csr_der: vec![2] }, 2)
        .unwrap();
    assert_eq!(
        h.poll_event(),
        Some(HubEvent::RenewCert { csr_der: vec![2] })
    );
    h.send_certificate(vec![3]).unwrap();
    assert_eq!(
        h.poll_transmit(),
        Some(HubMsg::Certificate { cert_der: vec![3] })
    );
    // One renewal per session.
    assert!(matches!(
        h.handle_agent(AgentMsg::RenewCert { csr_der: vec![2] }, 3),
        Err(SyncError::Protocol(_))
    ));

    // The agent: a renewal goes out even before the Welcome; RenewRequired and Certificate are
    // accepted before it too.
    let mut a = AgentSession::new(cfg(0, 0, 1, 1));
    assert!(matches!(a.poll_transmit(), Some(AgentMsg::Hello { .. })));
    assert_eq!(a.poll_transmit(), None);
    a.handle_hub(HubMsg::RenewRequired {
        reason: "expired".into(),
    })
    .unwrap();
    assert_eq!(
        a.poll_event(),
        Some(AgentEvent::RenewRequired("expired".into()))
    );
    a.send_renew(vec![4]);
    assert_eq!(
        a.poll_transmit(),
        Some(AgentMsg::RenewCert { csr_der: vec![4] })
    );
    assert_eq!(a.poll_transmit(), None);
    a.handle_hub(HubMsg::Certificate { cert_der: vec![5] })
        .unwrap();
    assert_eq!(a.poll_event(), Some(AgentEvent::Certificate(vec![5])));
    assert!(!a.is_welcomed());
}
