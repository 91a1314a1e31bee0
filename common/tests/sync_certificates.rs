//! The session rules beside the status sync: the agent reports its clock offset after a verified
//! snapshot, and the certificate renewal messages (an expired certificate's session only renews;
//! one renewal per session).
#![allow(clippy::unwrap_used)]

mod support;

use outpost_common::proto::{AgentMsg, Command, HubMsg};
use outpost_common::sync::{AgentEvent, AgentSession, HubEvent, HubSession, HubState, SyncError};
use support::{Fleet, HUB_MS, cfg, cfg_in, entries};

fn new_hub(now: i64) -> HubSession {
    HubSession::new(now, Fleet::new().director, 1_000)
}

#[test]
fn a_verified_snapshot_reports_the_clock_offset() {
    let f = Fleet::new();
    let mut s = AgentSession::new(cfg_in(&f, 0, 0, 4, 3));
    let _hello = s.poll_transmit();
    // The agent's clock reads 1.5 s after the hub's signed time when the Welcome arrives.
    s.handle_hub(f.welcome(0, vec![]), HUB_MS + 1500).unwrap();
    let sent: Vec<AgentMsg> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert_eq!(
        sent,
        vec![AgentMsg::ClockOffset {
            offset_ms: 1500,
            at_ms: HUB_MS
        }]
    );
    // A snapshot that does not verify reports nothing.
    let mut snapshot = f.snapshot(vec![]);
    let last = snapshot.body_bytes.len() - 1;
    snapshot.body_bytes[last] ^= 1;
    assert!(
        s.handle_hub(HubMsg::Snapshot { snapshot }, HUB_MS + 9000)
            .is_err()
    );
    assert!(s.poll_transmit().is_none());
}

fn hub_hello(h: &mut HubSession) {
    let hello = AgentSession::new(cfg(0, 0, 1, 1)).poll_transmit().unwrap();
    h.handle_agent(hello, 1).unwrap();
    while h.poll_event().is_some() {}
}

#[test]
fn an_expired_certificate_session_only_renews() {
    let mut h = new_hub(0);
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
    h.set_desired(vec![], 2);
    assert_eq!(h.poll_event(), None);
    assert!(
        h.send_command(
            1,
            Command::Pause {
                workflow: "w".into()
            },
            2,
            1_000
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
    let mut h = new_hub(0);
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
    a.handle_hub(
        HubMsg::RenewRequired {
            reason: "expired".into(),
        },
        0,
    )
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
    a.handle_hub(HubMsg::Certificate { cert_der: vec![5] }, 0)
        .unwrap();
    assert_eq!(a.poll_event(), Some(AgentEvent::Certificate(vec![5])));
    assert!(!a.is_welcomed());
}
