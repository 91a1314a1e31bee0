//! The alert pipeline through the real store and hub (no network): agents' status batches go
//! through `Hub::ingest` exactly as the QUIC driver feeds them, the evaluator is turned by
//! `Hub::alert_tick`, the delivery task by `Hub::deliver_due` (with the configured channels).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use outpost_alerts::{AlertStatus, EventKind as AlertKind, Rule, Settings};
use outpost_common::record::{OutboxEntry, RunKind, RunRecord, RunState, StatusEvent};
use outpost_hub::alerts::AlertSetup;
use outpost_hub::channels::Channels;
use outpost_hub::hub::now_ms;
use outpost_hub::ops::EventKind;
use outpost_hub::ops::alerts::SilenceSpec;
use outpost_hub::store::{DeliveryState, Store};

mod common;
use common::open;

fn add_agent(store: &Store, id: &str, site: &str) {
    common::enroll(store, id, vec![("site".into(), site.into())]);
}

fn failed_run(id: &str, workflow: &str, ended: i64) -> StatusEvent {
    StatusEvent::Run(RunRecord {
        run_id: id.into(),
        workflow: workflow.into(),
        version: 1,
        kind: RunKind::Scheduled,
        scheduled_ms: ended - 1_000,
        state: RunState::Failed,
        params: vec![],
        created_ms: ended - 1_000,
        started_ms: Some(ended - 900),
        ended_ms: Some(ended),
        agent_id: None,
        skip_reason: None,
    })
}

fn setup() -> AlertSetup {
    let mut fail = Rule::new("line-a-failures", AlertKind::RunFailed);
    fail.pools = vec!["line-a".into()];
    fail.workflows = vec!["plc-*".into()];
    fail.channels = vec!["hook".into()];
    fail.group_wait_ms = 0;
    AlertSetup {
        rules: vec![fail],
        channels: std::sync::Arc::new(Channels::default()),
        settings: Settings::default(),
        started_ms: 0,
    }
}

#[test]
fn failures_ingested_become_one_grouped_notification_with_durable_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path(), None);
    h.store
        .create_pool("line-a", vec![("site".into(), "sz".into())], "op", 1)
        .unwrap();
    for a in ["a1", "a2", "a3"] {
        add_agent(&h.store, a, "sz");
    }
    add_agent(&h.store, "b1", "other");
    let now = now_ms();
    for (i, a) in ["a1", "a2", "a3", "b1"].iter().enumerate() {
        let entries = vec![
            OutboxEntry {
                seq: 1,
                event: failed_run(&format!("r{i}"), "plc-read", now - 5_000),
            },
            // Not selected: another workflow.
            OutboxEntry {
                seq: 2,
                event: failed_run(&format!("x{i}"), "report", now - 5_000),
            },
        ];
        h.hub.ingest(a, &entries).unwrap();
        // A retransmission queues nothing more.
        h.hub.ingest(a, &entries).unwrap();
    }
    assert_eq!(h.store.alert_inputs(100).unwrap().len(), 8);
    let s = setup();
    h.hub.alert_tick(&s, now_ms()).unwrap();
    assert!(h.store.alert_inputs(100).unwrap().is_empty());
    let hist = h.store.alerts(10).unwrap();
    assert_eq!(hist.len(), 1, "{hist:?}");
    let n = &hist[0].notification;
    assert_eq!(n.status, AlertStatus::Firing);
    let mut agents: Vec<_> = n.items.iter().filter_map(|i| i.agent.clone()).collect();
    agents.sort();
    assert_eq!(agents, ["a1", "a2", "a3"]);
    assert!(n.items.iter().all(|i| i.delayed_ms.is_none()));
    assert_eq!(hist[0].deliveries.len(), 1);
    assert_eq!(hist[0].deliveries[0].state, DeliveryState::Pending);

    // The delivery task sends and records the outcome (no channel is configured here: the
    // failure is permanent and recorded as such).
    let mut events = h.hub.subscribe();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent = rt.block_on(h.hub.deliver_due(&Arc::new(setup()), now_ms()));
    assert_eq!(sent, 1);
    let d = &h.store.alerts(10).unwrap()[0].deliveries[0];
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.attempts, 1);
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("no channel named")
    );
    let ev = events.try_recv().unwrap();
    assert!(
        matches!(&ev.kind, EventKind::AlertDelivery { channel, outcome, .. } if channel == "hook" && outcome == "failed"),
        "{ev:?}"
    );
    assert_eq!(
        rt.block_on(h.hub.deliver_due(&Arc::new(setup()), now_ms())),
        0
    );

    // After a restart: nothing is evaluated twice, the throttle holds.
    let key = h.keys.clone();
    drop(h);
    let h = open(dir.path(), Some(key));
    h.hub.alert_tick(&setup(), now_ms()).unwrap();
    assert_eq!(h.store.alerts(10).unwrap().len(), 1);
    h.hub
        .ingest(
            "a1",
            &[OutboxEntry {
                seq: 3,
                event: failed_run("r9", "plc-read", now_ms()),
            }],
        )
        .unwrap();
    h.hub.alert_tick(&setup(), now_ms()).unwrap();
    assert_eq!(
        h.store.alerts(10).unwrap().len(),
        1,
        "within repeat_interval: gathered, not sent"
    );
}

#[test]
fn a_failure_reported_late_is_delayed_and_a_silence_holds_back_matches() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path(), None);
    h.store
        .create_pool("line-a", vec![("site".into(), "sz".into())], "op", 1)
        .unwrap();
    add_agent(&h.store, "a1", "sz");
    add_agent(&h.store, "a2", "sz");
    let mut events = h.hub.subscribe();
    let s = h
        .hub
        .silence(
            "op",
            SilenceSpec {
                agent: Some("a2".into()),
                for_ms: 3_600_000,
                comment: "maintenance".into(),
                ..SilenceSpec::default()
            },
        )
        .unwrap();
    assert_eq!(s.id, "s-1");
    assert!(matches!(
        events.try_recv().unwrap().kind,
        EventKind::SilenceCreated { .. }
    ));
    // Cut off for an hour: the failure reaches the hub late.
    let late = now_ms() - 3_600_000;
    for a in ["a1", "a2"] {
        h.hub
            .ingest(
                a,
                &[OutboxEntry {
                    seq: 1,
                    event: failed_run("r1", "plc-read", late),
                }],
            )
            .unwrap();
    }
    h.hub.alert_tick(&setup(), now_ms()).unwrap();
    let hist = h.store.alerts(10).unwrap();
    assert_eq!(hist.len(), 1);
    let n = &hist[0].notification;
    assert_eq!(n.items.len(), 1, "a2 is silenced: {n:?}");
    assert_eq!(n.items[0].agent.as_deref(), Some("a1"));
    assert!(n.items[0].delayed_ms.unwrap() >= 3_600_000);
    assert!(n.summary.contains("delayed"), "{}", n.summary);
    h.hub.unsilence("op", "s-1").unwrap();
    assert!(h.hub.active_silences().unwrap().is_empty());
    assert!(h.hub.unsilence("op", "s-1").is_err());
    let audit = h.store.audit_log(10).unwrap();
    assert!(audit.iter().any(|e| e.action == "alert.silence"));
    assert!(audit.iter().any(|e| e.action == "alert.unsilence"));
}

#[test]
fn an_offline_agent_fires_and_resolves_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path(), None);
    add_agent(&h.store, "a1", "sz");
    let mut off = Rule::new("offline", AlertKind::AgentOffline);
    off.threshold = Some(0);
    off.group_wait_ms = 0;
    off.channels = vec!["hook".into()];
    let s = AlertSetup {
        rules: vec![off],
        channels: std::sync::Arc::new(Channels::default()),
        settings: Settings::default(),
        started_ms: 0,
    };
    h.hub.alert_tick(&s, now_ms()).unwrap();
    let hist = h.store.alerts(10).unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].notification.event, "agent_offline");
    assert_eq!(hist[0].notification.status, AlertStatus::Firing);
    // Revoked agents are not watched: the condition clears.
    h.hub.revoke_agent("op", "a1").unwrap();
    h.hub.alert_tick(&s, now_ms()).unwrap();
    let hist = h.store.alerts(10).unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0].notification.status, AlertStatus::Resolved);
}

#[test]
fn deliveries_not_recorded_survive_a_restart_and_are_sent_then() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path(), None);
    h.store
        .create_pool("line-a", vec![("site".into(), "sz".into())], "op", 1)
        .unwrap();
    add_agent(&h.store, "a1", "sz");
    h.hub
        .ingest(
            "a1",
            &[OutboxEntry {
                seq: 1,
                event: failed_run("r1", "plc-read", now_ms()),
            }],
        )
        .unwrap();
    h.hub.alert_tick(&setup(), now_ms()).unwrap();
    assert_eq!(
        h.store.alerts(10).unwrap()[0].deliveries[0].state,
        DeliveryState::Pending
    );
    // The hub stops before its delivery task sent anything.
    let key = h.keys.clone();
    drop(h);
    let h = open(dir.path(), Some(key));
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        rt.block_on(h.hub.deliver_due(&Arc::new(setup()), now_ms())),
        1
    );
    let d = &h.store.alerts(10).unwrap()[0].deliveries[0];
    assert_eq!(d.attempts, 1);
    assert_ne!(d.state, DeliveryState::Pending);
    // Once recorded, never sent again.
    assert_eq!(
        rt.block_on(h.hub.deliver_due(&Arc::new(setup()), now_ms())),
        0
    );
}

#[test]
fn after_a_hub_restart_agents_get_the_offline_delay_to_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path(), None);
    // Enrolled (and last seen) long ago; not connected to this hub process.
    add_agent(&h.store, "a1", "sz");
    let mut off = Rule::new("offline", AlertKind::AgentOffline);
    off.threshold = Some(600_000);
    off.group_wait_ms = 0;
    let just_started = AlertSetup {
        rules: vec![off.clone()],
        channels: std::sync::Arc::new(Channels::default()),
        settings: Settings::default(),
        started_ms: now_ms(),
    };
    h.hub.alert_tick(&just_started, now_ms()).unwrap();
    assert!(h.store.alerts(10).unwrap().is_empty());
    // Ten minutes into this hub's life it counts as offline.
    h.hub.alert_tick(&just_started, now_ms() + 600_000).unwrap();
    assert_eq!(h.store.alerts(10).unwrap().len(), 1);
}
