//! Desired state replicated through a canonical store (`replicated.rs`), against an in-memory
//! canonical store with etcd's compare-and-commit rule.

use std::sync::{Arc, Mutex};

use super::super::replicated::{Change, Publisher, Snapshot};
use super::*;

/// The canonical store, in memory: a revision and the records, with etcd's compare rule.
#[derive(Debug, Default)]
struct Canon {
    rev: u64,
    records: Snapshot,
    log: Vec<(u64, Vec<Change>)>,
    down: bool,
    fences: Vec<Option<i64>>,
}

#[derive(Debug, Default, Clone)]
struct Shared(Arc<Mutex<Canon>>);

impl Publisher for Shared {
    fn publish(&self, fence: Option<i64>, changes: &[Change]) -> Result<u64, StoreError> {
        let mut c = self.0.lock().unwrap();
        if c.down {
            return Err(StoreError::Unavailable("down".into()));
        }
        c.fences.push(fence);
        // etcd's compare: every record still has the value the write replaces.
        for ch in changes {
            let now = c.records.get(&ch.table).and_then(|t| t.get(&ch.key));
            if now != ch.before.as_ref() {
                return Err(StoreError::Conflict("changed elsewhere".into()));
            }
        }
        c.rev += 1;
        let rev = c.rev;
        for ch in changes {
            let t = c.records.entry(ch.table.clone()).or_default();
            match &ch.value {
                Some(v) => t.insert(ch.key.clone(), v.clone()),
                None => t.remove(&ch.key),
            };
        }
        c.log.push((rev, changes.to_vec()));
        Ok(rev)
    }
}

fn two() -> (tempfile::TempDir, Store, Store) {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(&dir.path().join("a.redb")).unwrap();
    let b = Store::open(&dir.path().join("b.redb")).unwrap();
    (dir, a, b)
}

#[test]
fn a_write_at_one_replica_reaches_the_other_and_a_stale_write_is_refused() {
    let (_d, a, b) = two();
    let canon = Shared::default();
    a.mark_replicated(0).unwrap();
    b.load_replicated(0, &a.replicated_snapshot().unwrap())
        .unwrap();
    a.set_publisher(Arc::new(canon.clone()));
    b.set_publisher(Arc::new(canon.clone()));

    a.create_pool("line-1", vec![], "op", 1).unwrap();
    // The copy's revision moves with the watch only (revisions before this one may be missing).
    assert_eq!(a.replica_rev().unwrap(), 0);
    // b has not seen revision 1: its write of the same record is refused and changes nothing,
    // anywhere.
    let e = b.create_pool("line-1", vec![], "op", 2).unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert!(b.pools().unwrap().is_empty());
    assert_eq!(canon.0.lock().unwrap().rev, 1);
    // The watch brings revision 1; a second delivery is skipped.
    let (rev, changes) = canon.0.lock().unwrap().log[0].clone();
    assert!(b.apply_replicated(rev, &changes).unwrap());
    assert!(!b.apply_replicated(rev, &changes).unwrap());
    assert_eq!(b.pools().unwrap().len(), 1);
    b.create_pool("line-2", vec![], "op", 3).unwrap();
    assert_eq!(canon.0.lock().unwrap().rev, 2);
    let mut local = b.replicated_snapshot().unwrap();
    local.retain(|_, t| !t.is_empty());
    assert_eq!(local, canon.0.lock().unwrap().records);
    // Unreachable: refused, nothing changes locally.
    canon.0.lock().unwrap().down = true;
    let e = b.create_pool("line-3", vec![], "op", 4).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    assert_eq!(b.pools().unwrap().len(), 2);
    // A write that changes no replicated table needs no canonical store.
    b.begin_write().unwrap().commit().unwrap();
    // The leader's writes carry its epoch; others none.
    canon.0.lock().unwrap().down = false;
    let (rev, changes) = canon.0.lock().unwrap().log[1].clone();
    assert!(a.apply_replicated(rev, &changes).unwrap());
    super::super::replicated::fenced(7, || a.create_pool("line-4", vec![], "op", 5)).unwrap();
    assert_eq!(canon.0.lock().unwrap().fences.last(), Some(&Some(7)));
}

#[test]
fn versions_roots_and_decisions_travel_as_raw_records() {
    let (_d, a, b) = two();
    let canon = Shared::default();
    a.mark_replicated(0).unwrap();
    b.mark_replicated(0).unwrap();
    a.set_publisher(Arc::new(canon.clone()));
    let k = keys(&a);
    apply(&a, &k, nv("w", "one"), 1);
    a.create_pool("p", vec![], "op", 2).unwrap();
    a.deploy_to_pool("w", "p", 1, "op", 3).unwrap();
    for (rev, changes) in canon.0.lock().unwrap().log.clone() {
        assert!(b.apply_replicated(rev, &changes).unwrap());
    }
    let sa = a.replicated_snapshot().unwrap();
    assert_eq!(sa, b.replicated_snapshot().unwrap());
    assert!(sa["meta"].contains_key(schema::META_DECISION_SEQ.as_bytes()));
    assert_eq!(b.decision("w", "p").unwrap().unwrap().version, 1);
    assert_eq!(
        b.version("w", Some(1)).unwrap().bundle,
        a.version("w", Some(1)).unwrap().bundle
    );
}

#[test]
fn a_never_replicated_store_with_other_desired_state_is_not_overwritten() {
    let (_d, a, b) = two();
    a.create_pool("mine", vec![], "op", 1).unwrap();
    b.create_pool("theirs", vec![], "op", 1).unwrap();
    let theirs = b.replicated_snapshot().unwrap();
    let e = a.load_replicated(3, &theirs).unwrap_err();
    assert!(e.to_string().contains("refusing to overwrite"), "{e}");
    assert_eq!(a.pools().unwrap()[0].name, "mine");
    // The same state (a copy of one data directory) loads.
    let mine = a.replicated_snapshot().unwrap();
    a.load_replicated(3, &mine).unwrap();
    assert_eq!(a.replica_rev().unwrap(), 3);
    // Once replicated, a reload replaces.
    a.load_replicated(4, &theirs).unwrap();
    assert_eq!(a.pools().unwrap()[0].name, "theirs");
}

#[test]
fn a_malformed_record_is_refused_whole() {
    let (_d, a, _b) = two();
    for bad in [
        Change {
            table: "runs".into(),
            key: vec![],
            value: None,
            before: None,
        },
        Change {
            table: "rollouts".into(),
            key: vec![1, 2],
            value: Some(vec![]),
            before: None,
        },
        Change {
            table: "meta".into(),
            key: b"schema_version".to_vec(),
            value: Some(vec![0; 8]),
            before: None,
        },
    ] {
        assert!(a.apply_replicated(9, &[bad]).is_err());
    }
    assert_eq!(a.replica_rev().unwrap(), 0);
}

#[test]
fn rollout_events_move_to_the_replicated_queue_once_and_presence_follows_sessions() {
    use crate::store::RolloutEventKind;
    use outpost_common::proto::ActiveWorkflow;
    let (_d, a, b) = two();
    let canon = Shared::default();
    a.mark_replicated(0).unwrap();
    b.mark_replicated(0).unwrap();
    // Embedded: nothing to forward, the controllers read the inbox itself.
    assert_eq!(a.forward_rollout_events(10).unwrap(), 0);
    a.set_publisher(Arc::new(canon.clone()));
    let ev = |agent: &str| crate::store::RolloutEvent {
        agent: agent.into(),
        workflow: "w".into(),
        kind: RolloutEventKind::Activated { version: 2 },
        at_ms: 1,
    };
    {
        let txn = a.begin_write().unwrap();
        super::super::rollouts::enqueue_event(&txn, &ev("e1")).unwrap();
        super::super::rollouts::enqueue_event(&txn, &ev("e2")).unwrap();
        txn.commit().unwrap();
    }
    assert_eq!(a.forward_rollout_events(10).unwrap(), 2);
    assert_eq!(
        a.forward_rollout_events(10).unwrap(),
        0,
        "moved, not copied"
    );
    let queued = a.pending_events(10).unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|(s, e)| (*s, e.agent.as_str()))
            .collect::<Vec<_>>(),
        [(1, "e1"), (2, "e2")]
    );
    // Another replica sees the same queue.
    b.set_publisher(Arc::new(canon.clone()));
    for (rev, changes) in canon.0.lock().unwrap().log.clone() {
        b.apply_replicated(rev, &changes).unwrap();
    }
    assert_eq!(b.pending_events(10).unwrap(), queued);

    // Presence: a's agents, then one moves to b.
    let active = |v: u64| {
        vec![ActiveWorkflow {
            workflow: "w".into(),
            version: v,
            epoch: 1,
            paused: false,
            highest_version: None,
        }]
    };
    type Connected = std::collections::HashMap<String, (i64, Vec<ActiveWorkflow>)>;
    let here: Connected = [
        ("e1".to_string(), (5, active(1))),
        ("e2".to_string(), (5, active(1))),
    ]
    .into();
    assert_eq!(a.sync_presence("hub-a", &here).unwrap(), 2);
    assert_eq!(
        a.sync_presence("hub-a", &here).unwrap(),
        0,
        "no change, no write"
    );
    for (rev, changes) in canon.0.lock().unwrap().log.clone() {
        b.apply_replicated(rev, &changes).unwrap();
    }
    let moved: Connected = [("e2".to_string(), (9, active(2)))].into();
    assert_eq!(b.sync_presence("hub-b", &moved).unwrap(), 1);
    let (rev, changes) = canon.0.lock().unwrap().log.last().unwrap().clone();
    a.apply_replicated(rev, &changes).unwrap();
    // a no longer holds e2: it leaves b's record alone and drops only its own.
    // While a's older session of e2 lingers, a leaves b's newer record alone (no write back
    // and forth at every period).
    assert_eq!(a.sync_presence("hub-a", &here).unwrap(), 0);
    let only_e1: Connected = [("e1".to_string(), (5, active(1)))].into();
    assert_eq!(a.sync_presence("hub-a", &only_e1).unwrap(), 0);
    let p = a.presence().unwrap();
    assert_eq!(p["e2"].replica, "hub-b");
    assert_eq!((p["e2"].active[0].version, p["e2"].since_ms), (2, 9));
    assert_eq!(a.sync_presence("hub-a", &Default::default()).unwrap(), 1);
    let p = a.presence().unwrap();
    assert_eq!(p.keys().collect::<Vec<_>>(), ["e2"]);
}

#[test]
fn an_agent_enrolled_at_one_replica_is_known_at_the_other_and_a_revocation_travels() {
    let (_d, a, b) = two();
    let canon = Shared::default();
    a.mark_replicated(0).unwrap();
    b.mark_replicated(0).unwrap();
    a.set_publisher(Arc::new(canon.clone()));
    b.set_publisher(Arc::new(canon.clone()));
    let sync = |to: &Store| {
        for (rev, changes) in canon.0.lock().unwrap().log.clone() {
            to.apply_replicated(rev, &changes).unwrap();
        }
    };
    let (tid, secret) = a.create_token(vec![], 10_000, "op", 0).unwrap();
    let mut rec = agent("agent-1", &[("line", "1")]);
    rec.name = Some("press-1".into());
    a.enroll(&tid, &secret, rec, 5).unwrap();
    sync(&b);
    let at_b = b.agent("agent-1").unwrap();
    assert_eq!(
        (at_b.cert_fingerprint.as_str(), at_b.name.as_deref()),
        ("ff", Some("press-1"))
    );
    assert_eq!(at_b.labels, [("line".to_string(), "1".to_string())]);
    // The token was used once, everywhere.
    assert!(b.enroll(&tid, &secret, agent("agent-2", &[]), 6).is_err());
    // b's own observations of the agent stay b's; a revocation at b reaches a.
    b.agent_hello("agent-1", "9.9", vec![], 7).unwrap();
    b.revoke("agent-1", "op", 8).unwrap();
    sync(&a);
    assert_eq!(a.agent("agent-1").unwrap().revoked_ms, Some(8));
    let at_b = b.agent("agent-1").unwrap();
    assert_eq!(
        (at_b.software_version.as_str(), at_b.revoked_ms),
        ("9.9", Some(8))
    );
    // Labels changed at a reach b.
    a.set_labels("agent-1", &[("line".into(), "2".into())], &[], "op", 9)
        .unwrap();
    sync(&b);
    assert_eq!(b.agent("agent-1").unwrap().labels[0].1, "2");
}

#[test]
fn alert_inputs_and_silences_are_the_leaders_wherever_they_were_made() {
    let (_d, a, b) = two();
    let canon = Shared::default();
    a.mark_replicated(0).unwrap();
    b.mark_replicated(0).unwrap();
    let input = outpost_alerts::Input {
        subject: Default::default(),
        event: outpost_alerts::InputEvent::ProbationRevert {
            detail: "reverted".into(),
        },
        at_ms: 1,
        received_ms: 1,
    };
    let silence = || outpost_alerts::Silence {
        id: String::new(),
        rule: None,
        workflow: Some("w".into()),
        pool: None,
        agent: None,
        created_ms: 1,
        expires_ms: 10,
        created_by: "op".into(),
        comment: String::new(),
    };
    {
        let txn = a.begin_write().unwrap();
        super::super::alerts::enqueue_alert(&txn, &input).unwrap();
        txn.commit().unwrap();
    }
    // Embedded: the evaluator reads the inbox itself.
    assert_eq!(a.alert_inputs(10).unwrap().len(), 1);
    a.set_publisher(Arc::new(canon.clone()));
    b.set_publisher(Arc::new(canon.clone()));
    assert!(a.alert_inputs(10).unwrap().is_empty(), "not forwarded yet");
    assert_eq!(a.forward_alert_inputs(10).unwrap(), 1);
    // b is behind, but a silence changes no record a changed: made.
    let s = b.add_silence(silence()).unwrap();
    for (rev, changes) in canon.0.lock().unwrap().log.clone() {
        b.apply_replicated(rev, &changes).unwrap();
    }
    assert_eq!(b.alert_inputs(10).unwrap(), a.alert_inputs(10).unwrap());
    // a has not seen it: its silence would take the same number, and is refused.
    let e = a.add_silence(silence());
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
    let (rev, changes) = canon.0.lock().unwrap().log.last().unwrap().clone();
    a.apply_replicated(rev, &changes).unwrap();
    assert_eq!(a.silences().unwrap(), vec![s]);
    assert_eq!(a.add_silence(silence()).unwrap().id, "s-2");
}

#[test]
fn a_scoped_write_compares_only_its_tables_and_a_change_outside_fails_in_tests() {
    use super::super::replicated::Scope;
    let (_d, a, _b) = two();
    let canon = Shared::default();
    a.mark_replicated(0).unwrap();
    a.set_publisher(Arc::new(canon.clone()));
    // A change inside its scope is published.
    let txn = a.begin_write_in(Scope::Only(&["pools"])).unwrap();
    txn.open_table(schema::POOLS)
        .unwrap()
        .insert("p", b"x".as_slice())
        .unwrap();
    txn.commit().unwrap();
    assert_eq!(canon.0.lock().unwrap().rev, 1);
    // One outside it is refused (debug builds check the whole set), and nothing changes.
    let txn = a.begin_write_in(Scope::Only(&["agent_presence"])).unwrap();
    txn.open_table(schema::POOLS)
        .unwrap()
        .insert("q", b"y".as_slice())
        .unwrap();
    let e = txn.commit().unwrap_err();
    assert!(
        e.to_string().contains("changed replicated table pools"),
        "{e}"
    );
    assert_eq!(canon.0.lock().unwrap().rev, 1);
    assert_eq!(a.replicated_snapshot().unwrap()["pools"].len(), 1);
}
