use super::*;
use outpost_common::proto::{ActiveWorkflow, Assignment, BundleHeader, DOMAIN_ASSIGNMENT};
use outpost_common::record::{
    MissedFirings, OutboxEntry, RunKind, RunRecord, RunState, StatusEvent, TaskInstanceRecord,
    TaskState,
};
use outpost_common::trust::{Director, SigningKey, Trust, sign_release};

mod fleet;
mod group;
mod history;
mod observations;
mod paging;
mod replicated;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hub.redb")).unwrap();
    (dir, store)
}

/// A store's keys: a 1-of-1 root published in it, one release key, the director.
struct Keys {
    director: Director,
    release: SigningKey,
    trust: Trust,
}

fn keys(store: &Store) -> Keys {
    let key = || SigningKey::generate().unwrap().0;
    let (release, pkcs8) = SigningKey::generate().unwrap();
    let director = key();
    let root = crate::init::publish_first_root(
        store,
        &[key()],
        &[release],
        &director,
        crate::init::KeyPlan::default(),
        1,
    )
    .unwrap();
    Keys {
        director: Director::new(director),
        release: SigningKey::from_pkcs8(&pkcs8).unwrap(),
        trust: Trust::new(root).unwrap(),
    }
}

/// Release the pending version of `name` with the release key.
fn release(store: &Store, k: &Keys, name: &str, now: i64) {
    if let Some(p) = store.pending(name).unwrap() {
        let sig = sign_release(&k.release, &p.header_bytes);
        let st = store
            .add_release_signatures(name, p.version, &[sig], "op", now)
            .unwrap();
        assert!(st.released);
    }
}

/// Apply and release (a 1-of-1 release key).
fn apply(store: &Store, k: &Keys, v: NewVersion, now: i64) -> ApplyOutcome {
    let name = v.name.clone();
    let out = store.apply_version(v, now).unwrap();
    release(store, k, &name, now);
    out
}

fn rollback(store: &Store, k: &Keys, name: &str, to: u64, now: i64) -> ApplyOutcome {
    let out = store.rollback(name, to, "op", now).unwrap();
    release(store, k, name, now);
    out
}

fn nv(name: &str, content: &str) -> NewVersion {
    NewVersion {
        name: name.into(),
        content: content.as_bytes().to_vec(),
        format: "yaml".into(),
        target: vec![("site".into(), "a".into())],
        origin: "w.yaml".into(),
        applied_by: "op".into(),
    }
}

fn agent(id: &str, labels: &[(&str, &str)]) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        enrolled_ms: 1,
        cert_serial: "01".into(),
        cert_fingerprint: "ff".into(),
        revoked_ms: None,
        last_seen_ms: None,
        software_version: String::new(),
        active: vec![],
        committed_seq: 0,
        hostname: "h".into(),
        clock_offset: None,
        telemetry: None,
        cert_not_after_ms: None,
        previous_cert_fingerprint: None,
        pinned_roots: None,
        name: None,
        decommissioned_ms: None,
    }
}

fn enrolled(store: &Store, id: &str) {
    let (tid, secret) = store.create_token(vec![], 10_000, "op", 0).unwrap();
    store.enroll(&tid, &secret, agent(id, &[]), 5).unwrap();
}

fn run(id: &str, created: i64, state: RunState) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        workflow: "w".into(),
        version: 1,
        kind: RunKind::Scheduled,
        scheduled_ms: created,
        state,
        params: vec![],
        created_ms: created,
        started_ms: None,
        ended_ms: None,
        agent_id: None,
        skip_reason: None,
    }
}

fn task(run_id: &str, task: &str, state: TaskState) -> TaskInstanceRecord {
    TaskInstanceRecord {
        run_id: run_id.into(),
        task_id: task.into(),
        state,
        attempts: vec![],
        outputs: vec![],
        retry_at_ms: None,
        updated_ms: 0,
    }
}

fn entry(seq: u64, event: StatusEvent) -> OutboxEntry {
    OutboxEntry { seq, event }
}

#[test]
fn versions_are_monotonic_and_unchanged_content_makes_none() {
    let (_d, s) = open();
    let k = keys(&s);
    let a = apply(&s, &k, nv("w", "one"), 10);
    assert_eq!((a.version, a.changed), (1, true));
    let b = apply(&s, &k, nv("w", "one"), 11);
    assert_eq!((b.version, b.changed), (1, false));
    let c = apply(&s, &k, nv("w", "two"), 12);
    assert_eq!((c.version, c.changed), (2, true));
    let hist = s.history("w").unwrap();
    assert_eq!(
        hist.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // Rollback is a new, higher version with the old content.
    let r = rollback(&s, &k, "w", 1, 13);
    assert_eq!((r.version, r.changed), (3, true));
    let v3 = s.version("w", None).unwrap();
    assert_eq!(v3.content, b"one");
    assert_eq!(
        v3.content_hash,
        s.version("w", Some(1)).unwrap().content_hash
    );
    // Rolling back to the content the latest already has changes nothing.
    let r = rollback(&s, &k, "w", 1, 14);
    assert_eq!((r.version, r.changed), (3, false));
    assert!(matches!(
        s.version("w", Some(9)),
        Err(StoreError::NoVersion { version: 9, .. })
    ));
    assert!(matches!(s.history("nope"), Err(StoreError::NoWorkflow(_))));
}

#[test]
fn stored_bundle_is_signed_over_exact_header_bytes() {
    let (_d, s) = open();
    let k = keys(&s);
    apply(&s, &k, nv("w", "content"), 42);
    let v = s.version("w", Some(1)).unwrap();
    let b = v.signed_bundle().unwrap();
    assert!(k.trust.verify_release(&b).is_ok());
    let h: BundleHeader = minicbor::decode(&b.header_bytes).unwrap();
    assert_eq!(h.workflow, "w");
    assert_eq!(h.version, 1);
    assert_eq!(h.created_ms, 42);
    assert_eq!(
        h.content_hash,
        blake3::hash(b"content").to_hex().to_string()
    );
    assert_eq!(b.content, b"content");
    assert_eq!(b.release[0].key_id, k.release.key_id());
}

#[test]
fn ingest_is_idempotent_ordered_and_refuses_gaps() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    let batch = vec![
        entry(1, StatusEvent::Run(run("r1", 100, RunState::Running))),
        entry(2, StatusEvent::Task(task("r1", "t", TaskState::Running))),
    ];
    assert_eq!(s.ingest("agent-1", &batch).unwrap(), 2);
    // Retransmission: nothing changes, even if the payload differs.
    let replay = vec![entry(
        2,
        StatusEvent::Task(task("r1", "t", TaskState::Failed)),
    )];
    assert_eq!(s.ingest("agent-1", &replay).unwrap(), 2);
    let (_, tasks) = s.run("agent-1", "r1").unwrap().unwrap();
    assert_eq!(tasks[0].state, TaskState::Running);
    // Overlapping batch: old part ignored, new part applied.
    let next = vec![
        entry(2, StatusEvent::Task(task("r1", "t", TaskState::Failed))),
        entry(3, StatusEvent::Run(run("r1", 100, RunState::Succeeded))),
        entry(4, StatusEvent::Task(task("r1", "t", TaskState::Succeeded))),
    ];
    assert_eq!(s.ingest("agent-1", &next).unwrap(), 4);
    let (r, tasks) = s.run("agent-1", "r1").unwrap().unwrap();
    assert_eq!(r.state, RunState::Succeeded);
    assert_eq!(r.agent_id.as_deref(), Some("agent-1"));
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state, TaskState::Succeeded);
    // A gap (entries the agent deleted after a hub restored from an older backup had
    // acknowledged them) is the session's to report: the store commits the batch.
    let gap = vec![
        entry(5, StatusEvent::Run(run("r2", 200, RunState::Running))),
        entry(7, StatusEvent::Run(run("r3", 300, RunState::Running))),
    ];
    assert_eq!(s.ingest("agent-1", &gap).unwrap(), 7);
    assert!(s.run("agent-1", "r2").unwrap().is_some());
    assert!(s.run("agent-1", "r3").unwrap().is_some());
    // Out-of-order entries are still refused, committing nothing.
    let unordered = vec![
        entry(9, StatusEvent::Run(run("r4", 400, RunState::Running))),
        entry(8, StatusEvent::Run(run("r5", 500, RunState::Running))),
    ];
    assert!(s.ingest("agent-1", &unordered).is_err());
    assert_eq!(s.committed_seq("agent-1").unwrap(), 7);
    assert!(s.run("agent-1", "r4").unwrap().is_none());
    assert!(matches!(
        s.ingest("agent-x", &batch),
        Err(StoreError::NoAgent(_))
    ));
}

#[test]
fn runs_are_per_agent_and_filterable() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    enrolled(&s, "agent-2");
    s.ingest(
        "agent-1",
        &[
            entry(1, StatusEvent::Run(run("same", 100, RunState::Succeeded))),
            entry(2, StatusEvent::Run(run("other", 200, RunState::Failed))),
        ],
    )
    .unwrap();
    s.ingest(
        "agent-2",
        &[entry(
            1,
            StatusEvent::Run(run("same", 150, RunState::Running)),
        )],
    )
    .unwrap();
    let all = s.runs(&RunQuery::default()).unwrap();
    let ids: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r.agent_id.as_str(), r.record.run_id.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("agent-1", "other"),
            ("agent-2", "same"),
            ("agent-1", "same")
        ]
    );
    let q = RunQuery {
        agent: Some("agent-1".into()),
        ..RunQuery::default()
    };
    assert_eq!(s.runs(&q).unwrap().len(), 2);
    let q = RunQuery {
        state: Some(RunState::Failed),
        ..RunQuery::default()
    };
    assert_eq!(s.runs(&q).unwrap()[0].record.run_id, "other");
    let q = RunQuery {
        since_ms: Some(150),
        ..RunQuery::default()
    };
    assert_eq!(s.runs(&q).unwrap().len(), 2);
    let q = RunQuery {
        workflow: Some("zzz".into()),
        ..RunQuery::default()
    };
    assert!(s.runs(&q).unwrap().is_empty());
    assert_eq!(
        s.run_agents("same").unwrap(),
        vec!["agent-1".to_string(), "agent-2".to_string()]
    );
    // Missed firings are stored under their seq.
    let m = MissedFirings {
        workflow: "w".into(),
        count: 3,
        first_ms: 1,
        last_ms: 2,
        reason: "x".into(),
        recorded_ms: 3,
    };
    s.ingest("agent-2", &[entry(2, StatusEvent::Missed(m.clone()))])
        .unwrap();
    assert_eq!(s.missed("agent-2").unwrap(), vec![(2, m)]);
    assert!(s.missed("agent-1").unwrap().is_empty());
}

/// A mint signed before joining the group (`sync_assignments`) is stored only if nothing
/// changed meanwhile: concurrent mints for one agent never issue one epoch for two versions.
#[test]
fn concurrent_mints_for_one_agent_never_issue_an_epoch_twice() {
    let (_d, s) = open();
    let k = keys(&s);
    let dv = |v: u64| DesiredVersion {
        workflow: "w".into(),
        version: v,
        content_hash: format!("h{v}"),
        previous_version: None,
        probation: None,
        rollout_id: None,
    };
    let issued = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for t in 0..8u64 {
            let (s, k, issued, dv) = (&s, &k, &issued, &dv);
            sc.spawn(move || {
                for i in 0..25u64 {
                    let v = 1 + (t + i) % 3;
                    let a = s
                        .sync_assignments("agent-1", &[dv(v)], &k.director, 1)
                        .unwrap();
                    issued.lock().unwrap().push((a[0].epoch, a[0].version));
                }
            });
        }
    });
    let mut by_epoch = std::collections::HashMap::new();
    for (e, v) in issued.into_inner().unwrap() {
        assert_eq!(
            *by_epoch.entry(e).or_insert(v),
            v,
            "epoch {e} issued for two versions"
        );
    }
    let last = s.assignment("agent-1", "w").unwrap().unwrap();
    assert_eq!(Some(&last.epoch), by_epoch.keys().max());
}

#[test]
fn epochs_are_monotonic_across_reopen_and_level_triggered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    let k = keys(&Store::open(&path).unwrap());
    let d1 = DesiredVersion {
        workflow: "w".into(),
        version: 1,
        content_hash: "h1".into(),
        previous_version: None,
        probation: None,
        rollout_id: None,
    };
    {
        let s = Store::open(&path).unwrap();
        let a = s
            .sync_assignments("agent-1", std::slice::from_ref(&d1), &k.director, 1)
            .unwrap();
        assert_eq!(a[0].epoch, 1);
        // Same desired state: same assignment, no new epoch.
        let b = s
            .sync_assignments("agent-1", std::slice::from_ref(&d1), &k.director, 2)
            .unwrap();
        assert_eq!(a, b);
        let body: Assignment = minicbor::decode(&a[0].signed.body_bytes).unwrap();
        assert_eq!(
            (body.agent_id.as_str(), body.epoch, body.version),
            ("agent-1", 1, 1)
        );
        let verified: Assignment = k
            .trust
            .verify_statement(DOMAIN_ASSIGNMENT, &a[0].signed)
            .unwrap();
        assert_eq!(verified, body);
    }
    let s = Store::open(&path).unwrap();
    let d2 = DesiredVersion {
        version: 2,
        content_hash: "h2".into(),
        ..d1.clone()
    };
    let a = s
        .sync_assignments("agent-1", &[d2], &k.director, 3)
        .unwrap();
    assert_eq!((a[0].epoch, a[0].version), (2, 2));
    // No longer desired: one removal, then stable.
    let a = s.sync_assignments("agent-1", &[], &k.director, 4).unwrap();
    assert_eq!((a[0].epoch, a[0].remove), (3, true));
    let b = s.sync_assignments("agent-1", &[], &k.director, 5).unwrap();
    assert_eq!(a, b);
    // Desired again: epoch keeps rising.
    let a = s
        .sync_assignments("agent-1", &[d1], &k.director, 6)
        .unwrap();
    assert_eq!((a[0].epoch, a[0].remove, a[0].version), (4, false, 1));
    // Other agents have their own epochs.
    let other = s
        .sync_assignments(
            "agent-2",
            &[DesiredVersion {
                workflow: "w".into(),
                version: 1,
                content_hash: "h1".into(),
                previous_version: None,
                probation: None,
                rollout_id: None,
            }],
            &k.director,
            7,
        )
        .unwrap();
    assert_eq!(other[0].epoch, 1);
}

#[test]
fn token_is_single_use_and_expires() {
    let (_d, s) = open();
    let (id, secret) = s
        .create_token(vec![("site".into(), "a".into())], 1000, "op", 0)
        .unwrap();
    assert!(matches!(
        s.check_token(&id, "wrong", 10),
        Err(StoreError::BadToken)
    ));
    assert_eq!(s.check_token(&id, &secret, 10).unwrap().labels.len(), 1);
    s.enroll(&id, &secret, agent("agent-1", &[]), 10).unwrap();
    assert!(matches!(
        s.enroll(&id, &secret, agent("agent-2", &[]), 11),
        Err(StoreError::BadToken)
    ));
    assert!(matches!(s.agent("agent-2"), Err(StoreError::NoAgent(_))));
    let (id2, secret2) = s.create_token(vec![], 1000, "op", 0).unwrap();
    assert!(matches!(
        s.enroll(&id2, &secret2, agent("agent-3", &[]), 1000),
        Err(StoreError::BadToken)
    ));
    // A token is not burnt by a refused enrollment for an existing id.
    let (id3, secret3) = s.create_token(vec![], 1000, "op", 0).unwrap();
    assert!(matches!(
        s.enroll(&id3, &secret3, agent("agent-1", &[]), 5),
        Err(StoreError::AgentExists(_))
    ));
    s.enroll(&id3, &secret3, agent("agent-4", &[]), 5).unwrap();
}

#[test]
fn revocation_refuses_hello_and_ingest() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    s.agent_hello("agent-1", "0.1.0", vec![], 7).unwrap();
    assert!(s.revoke("agent-1", "op", 8).unwrap());
    assert!(!s.revoke("agent-1", "op", 9).unwrap());
    assert_eq!(s.agent("agent-1").unwrap().revoked_ms, Some(8));
    assert!(matches!(
        s.agent_hello("agent-1", "0.1.0", vec![], 10),
        Err(StoreError::Revoked(_))
    ));
    assert!(matches!(
        s.ingest(
            "agent-1",
            &[entry(1, StatusEvent::Run(run("r", 1, RunState::Running)))]
        ),
        Err(StoreError::Revoked(_))
    ));
    let log = s.audit_log(10).unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "agent.revoke" && e.target == "agent-1")
    );
}

#[test]
fn pause_deploy_results_keys_and_audit() {
    let (_d, s) = open();
    let k = keys(&s);
    apply(&s, &k, nv("w", "x"), 1);
    assert!(s.set_paused("w", true, "op", 2).unwrap());
    assert!(!s.set_paused("w", true, "op", 3).unwrap());
    assert!(s.workflow("w").unwrap().paused);
    // Pause survives a new version.
    apply(&s, &k, nv("w", "y"), 4);
    assert!(s.workflow("w").unwrap().paused);
    assert!(matches!(
        s.set_paused("nope", true, "op", 5),
        Err(StoreError::NoWorkflow(_))
    ));

    enrolled(&s, "agent-1");
    s.record_deploy_result(
        "agent-1",
        DeployResultRecord {
            workflow: "w".into(),
            version: 2,
            epoch: 1,
            rejected: Some("bad signature".into()),
            at_ms: 6,
        },
    )
    .unwrap();
    assert!(s.agent("agent-1").unwrap().active.is_empty());
    s.record_deploy_result(
        "agent-1",
        DeployResultRecord {
            workflow: "w".into(),
            version: 2,
            epoch: 2,
            rejected: None,
            at_ms: 7,
        },
    )
    .unwrap();
    assert_eq!(s.agent("agent-1").unwrap().active[0].version, 2);
    let results = s.deploy_results("agent-1").unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].epoch, 2);

    let log = s.audit_log(100).unwrap();
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(seqs, sorted);
    assert!(log.iter().any(|e| e.action == "workflow.pause"));
    assert!(log.iter().any(|e| e.action == "workflow.apply"));
}

#[test]
fn selector_matching() {
    let l = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert!(selector_matches(&l(&[]), &l(&[("a", "1")])));
    assert!(selector_matches(
        &l(&[("a", "1")]),
        &l(&[("a", "1"), ("b", "2")])
    ));
    assert!(!selector_matches(&l(&[("a", "2")]), &l(&[("a", "1")])));
    assert!(!selector_matches(&l(&[("c", "1")]), &l(&[])));
}

#[test]
fn a_v1_store_gets_default_pools_that_follow_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.redb");
    let k = keys(&Store::open(&path).unwrap());
    {
        let s = Store::open(&path).unwrap();
        let mut v = nv("w", "one");
        v.target = vec![("site".into(), "a".into())];
        apply(&s, &k, v, 1);
        // Make it look like a schema-1 file: no pools, no decisions.
        let txn = s.begin_write().unwrap();
        {
            let mut p = txn.open_table(schema::POOLS).unwrap();
            p.remove("wf:w").unwrap();
            let mut d = txn.open_table(schema::DECISIONS).unwrap();
            d.remove(("w", "wf:w")).unwrap();
            let mut m = txn.open_table(schema::META).unwrap();
            m.insert(outpost_common::store::META_SCHEMA_VERSION, 1)
                .unwrap();
        }
        txn.commit().unwrap();
        assert!(s.pools().unwrap().is_empty());
    }
    let s = Store::open(&path).unwrap();
    let p = s.pool("wf:w").unwrap();
    assert_eq!(p.selector, vec![("site".to_string(), "a".to_string())]);
    let d = s.decision("w", "wf:w").unwrap().unwrap();
    assert_eq!((d.version, d.follow_latest, d.pinned), (1, true, false));
    // It follows apply until the workflow is managed.
    apply(&s, &k, nv("w", "two"), 2);
    assert_eq!(s.decision("w", "wf:w").unwrap().unwrap().version, 2);
    s.create_pool("p", vec![], "op", 3).unwrap();
    s.deploy_to_pool("w", "p", 1, "op", 3).unwrap();
    let mut three = nv("w", "three");
    three.target.clear();
    apply(&s, &k, three, 4);
    let d = s.decision("w", "wf:w").unwrap().unwrap();
    assert_eq!((d.version, d.follow_latest), (2, false));
    // The retarget still moves the default pool's selector.
    assert!(s.pool("wf:w").unwrap().selector.is_empty());
}

#[test]
fn a_backup_is_a_consistent_openable_copy_and_refuses_an_existing_file() {
    let (d, s) = open();
    enrolled(&s, "agent-1");
    let k = keys(&s);
    apply(&s, &k, nv("w", "a"), 1);
    s.ingest(
        "agent-1",
        &[entry(
            1,
            StatusEvent::Run(run("r1", 100, RunState::Succeeded)),
        )],
    )
    .unwrap();
    let dest = d.path().join("copy.redb");
    assert!(s.backup_to(&dest).unwrap() > 5);
    assert!(s.backup_to(&dest).is_err(), "an existing file is refused");
    // The hub goes on after the copy; the copy is the store as of the backup.
    s.ingest(
        "agent-1",
        &[entry(
            2,
            StatusEvent::Run(run("r2", 200, RunState::Running)),
        )],
    )
    .unwrap();
    drop(s);
    let c = Store::open(&dest).unwrap();
    assert_eq!(c.committed_seq("agent-1").unwrap(), 1);
    assert!(c.run("agent-1", "r1").unwrap().is_some());
    assert!(c.run("agent-1", "r2").unwrap().is_none());
    assert_eq!(c.workflow("w").unwrap().latest, 1);
}

#[test]
fn a_restored_store_numbers_above_what_agents_report() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    let k = keys(&s);
    apply(&s, &k, nv("w", "a"), 1);
    let d1 = DesiredVersion {
        workflow: "w".into(),
        version: 1,
        content_hash: s.version("w", Some(1)).unwrap().content_hash,
        previous_version: None,
        probation: None,
        rollout_id: None,
    };
    let a = s
        .sync_assignments("agent-1", std::slice::from_ref(&d1), &k.director, 2)
        .unwrap();
    assert_eq!(a[0].epoch, 1);
    // The agent accepted epoch 6 and versions up to 4 from this hub before its store was
    // restored.
    s.agent_hello(
        "agent-1",
        "0.1.0",
        vec![ActiveWorkflow {
            workflow: "w".into(),
            version: 3,
            epoch: 6,
            paused: false,
            highest_version: Some(4),
        }],
        3,
    )
    .unwrap();
    // The old assignment (epoch 1) is not sent again: a new one above the agent's epoch.
    let a = s
        .sync_assignments("agent-1", std::slice::from_ref(&d1), &k.director, 4)
        .unwrap();
    assert_eq!((a[0].epoch, a[0].version), (7, 1));
    // Stable once issued.
    let b = s
        .sync_assignments("agent-1", std::slice::from_ref(&d1), &k.director, 5)
        .unwrap();
    assert_eq!(a, b);
    // The next version skips every number the agent accepted.
    assert_eq!(apply(&s, &k, nv("w", "b"), 6).version, 5);
}

#[test]
fn ingest_queues_alert_inputs_once_in_its_transaction() {
    use outpost_alerts::InputEvent;
    use outpost_common::record::{DeadlineKind, DeadlineMiss, Reverted};
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    let batch = vec![
        entry(1, StatusEvent::Run(run("r1", 100, RunState::Running))),
        entry(2, StatusEvent::Run(run("r1", 100, RunState::Failed))),
        entry(
            3,
            StatusEvent::Deadline(DeadlineMiss {
                workflow: "w".into(),
                version: 1,
                run_id: "r1".into(),
                task: Some("t".into()),
                kind: DeadlineKind::Finish,
                scheduled_ms: 100,
                due_ms: 200,
                detected_ms: 250,
            }),
        ),
        entry(
            4,
            StatusEvent::Missed(MissedFirings {
                workflow: "w".into(),
                count: 3,
                first_ms: 0,
                last_ms: 100,
                reason: "catchup=latest".into(),
                recorded_ms: 300,
            }),
        ),
        entry(
            5,
            StatusEvent::Reverted(Reverted {
                workflow: "w".into(),
                from_version: 2,
                to_version: 1,
                reason: "2 of 3 failed".into(),
                at_ms: 400,
                rollout_id: None,
            }),
        ),
    ];
    assert_eq!(s.ingest_at("agent-1", &batch, 1_000).unwrap(), 5);
    let inputs = s.alert_inputs(100).unwrap();
    assert_eq!(inputs.len(), 4, "{inputs:?}");
    assert!(matches!(
        &inputs[0].1.event,
        InputEvent::RunFinished {
            succeeded: false,
            ..
        }
    ));
    assert_eq!(inputs[0].1.at_ms, 100);
    assert_eq!(inputs[0].1.received_ms, 1_000);
    assert_eq!(inputs[0].1.subject.agent.as_deref(), Some("agent-1"));
    assert!(matches!(
        &inputs[1].1.event,
        InputEvent::DeadlineMissed { task: Some(t), .. } if t == "t"
    ));
    assert_eq!(inputs[1].1.at_ms, 250);
    assert!(matches!(
        &inputs[2].1.event,
        InputEvent::FiringsMissed { count: 3, .. }
    ));
    assert!(matches!(
        &inputs[3].1.event,
        InputEvent::ProbationRevert { .. }
    ));
    // A retransmission queues nothing; a terminal run reported again queues nothing.
    assert_eq!(s.ingest_at("agent-1", &batch, 2_000).unwrap(), 5);
    s.ingest_at(
        "agent-1",
        &[entry(6, StatusEvent::Run(run("r1", 100, RunState::Failed)))],
        2_000,
    )
    .unwrap();
    assert_eq!(s.alert_inputs(100).unwrap().len(), 4);
    // A refused batch queues nothing either.
    let unordered = vec![
        entry(8, StatusEvent::Run(run("r4", 400, RunState::Failed))),
        entry(7, StatusEvent::Run(run("r5", 500, RunState::Failed))),
    ];
    assert!(s.ingest_at("agent-1", &unordered, 3_000).is_err());
    assert_eq!(s.alert_inputs(100).unwrap().len(), 4);
}

fn note(key: &str) -> outpost_alerts::Notification {
    outpost_alerts::Notification {
        dedup_key: key.into(),
        rule: "r".into(),
        status: outpost_alerts::AlertStatus::Firing,
        event: "run_failed".into(),
        summary: "s".into(),
        items: vec![],
        labels: vec![],
        starts_ms: 0,
        ends_ms: None,
        created_ms: 0,
        suppressed: 0,
    }
}

#[test]
fn an_alert_commit_consumes_stores_and_queues_in_one_transaction() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    s.ingest_at(
        "agent-1",
        &[
            entry(1, StatusEvent::Run(run("r1", 100, RunState::Failed))),
            entry(2, StatusEvent::Run(run("r2", 200, RunState::Failed))),
        ],
        1_000,
    )
    .unwrap();
    let inputs = s.alert_inputs(100).unwrap();
    assert_eq!(inputs.len(), 2);
    let seqs = s
        .commit_alerts(
            AlertCommit {
                consumed: vec![inputs[0].0],
                state: b"state-1".to_vec(),
                notifications: vec![(note("k1"), vec!["a".into(), "b".into()])],
            },
            5,
        )
        .unwrap();
    assert_eq!(seqs, vec![1]);
    assert_eq!(s.alert_inputs(100).unwrap().len(), 1);
    assert_eq!(s.alert_state().unwrap(), b"state-1");
    let pending = s.pending_deliveries(100).unwrap();
    assert_eq!(pending.len(), 2);
    assert!(
        pending
            .iter()
            .all(|(d, n)| d.state == DeliveryState::Pending
                && d.next_attempt_ms == 5
                && n.dedup_key == "k1")
    );
    // The same dedup key again: in the history, but no second delivery to a channel.
    s.commit_alerts(
        AlertCommit {
            consumed: vec![],
            state: b"state-2".to_vec(),
            notifications: vec![(note("k1"), vec!["a".into(), "c".into()])],
        },
        6,
    )
    .unwrap();
    let pending = s.pending_deliveries(100).unwrap();
    assert_eq!(pending.len(), 3);
    assert_eq!(pending.iter().filter(|(d, _)| d.channel == "a").count(), 1);
    // Outcomes: delivered and given-up leave the outbox; a retry stays with its new time.
    s.record_delivery(1, "a", &DeliveryOutcome::Delivered, 7)
        .unwrap();
    s.record_delivery(
        1,
        "b",
        &DeliveryOutcome::Retry {
            next_ms: 100,
            error: "timeout".into(),
        },
        7,
    )
    .unwrap();
    s.record_delivery(
        2,
        "c",
        &DeliveryOutcome::GaveUp {
            error: "404".into(),
        },
        7,
    )
    .unwrap();
    let pending = s.pending_deliveries(100).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0.channel, "b");
    assert_eq!(pending[0].0.attempts, 1);
    assert_eq!(pending[0].0.next_attempt_ms, 100);
    let hist = s.alerts(10).unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0].seq, 2);
    assert_eq!(hist[0].deliveries[0].state, DeliveryState::Failed);
    assert_eq!(hist[1].deliveries.len(), 2);
    assert_eq!(hist[1].deliveries[0].state, DeliveryState::Delivered);
    assert!(
        s.record_delivery(9, "a", &DeliveryOutcome::Delivered, 8)
            .is_err()
    );
}

#[test]
fn silences_are_numbered_listed_and_removed() {
    let (_d, s) = open();
    let mk = |w: &str| outpost_alerts::Silence {
        id: String::new(),
        rule: None,
        workflow: Some(w.into()),
        pool: None,
        agent: None,
        created_ms: 1,
        expires_ms: 2,
        created_by: "op".into(),
        comment: "c".into(),
    };
    assert_eq!(s.add_silence(mk("a")).unwrap().id, "s-1");
    assert_eq!(s.add_silence(mk("b")).unwrap().id, "s-2");
    assert_eq!(s.silences().unwrap().len(), 2);
    assert_eq!(
        s.remove_silence("s-1").unwrap().workflow.as_deref(),
        Some("a")
    );
    assert!(s.remove_silence("s-1").is_err());
    assert_eq!(s.silences().unwrap().len(), 1);
    assert_eq!(s.add_silence(mk("c")).unwrap().id, "s-3");
}
