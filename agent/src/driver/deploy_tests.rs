//! The driver's hub deploys against a real store: the deploy gate (checks, decisions, one
//! batch), key rotations, store faults, probation across a restart.

use std::sync::Arc;

use outpost_agent_core::deploy::{DeployState, ProbationState};
use outpost_common::clock::ManualClock;
use outpost_common::record::{
    RunKind, RunRecord, RunState, StatusEvent, TaskInstanceRecord, TaskState,
};

use outpost_common::proto::{Assignment, BundleHeader, Rejection, SignedAssignment, SignedBundle};
use outpost_common::sign::{SigningKey, Trust, content_hash};

use super::{DeployError, Driver, DriverConfig, HUB_ORIGIN, deploy_gate, test_config};
use crate::store::{Batch, Store, WorkflowVersion};

fn driver(dir: &std::path::Path, store: Arc<Store>) -> Driver {
    driver_as(dir, store, None)
}

fn driver_as(dir: &std::path::Path, store: Arc<Store>, agent_id: Option<&str>) -> Driver {
    let clock = ManualClock::new(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    Driver::new(
        DriverConfig {
            agent_id: agent_id.map(str::to_string),
            ..test_config(dir)
        },
        Arc::new(clock),
        store,
    )
}

fn version(v: u64) -> WorkflowVersion {
    let src = format!("name: wf\ntasks:\n  t{v}:\n    command: [/bin/true]\n");
    let wf = outpost_common::workflow::parse(
        "wf.yaml",
        &src,
        outpost_common::workflow::Format::Yaml,
        &Default::default(),
    )
    .unwrap();
    WorkflowVersion {
        name: "wf".into(),
        version: v,
        content_hash: wf.content_hash,
        source: src.into_bytes(),
        format: "yaml".into(),
        origin: HUB_ORIGIN.into(),
        created_ms: 1,
    }
}

fn failed_run(i: i64) -> StatusEvent {
    StatusEvent::Run(RunRecord {
        run_id: format!("wf@v2@m{i}"),
        workflow: "wf".into(),
        version: 2,
        kind: RunKind::Manual,
        scheduled_ms: 100 + i,
        state: RunState::Failed,
        params: Vec::new(),
        created_ms: 100 + i,
        started_ms: Some(100 + i),
        ended_ms: Some(101 + i),
        agent_id: None,
    })
}

/// Version 2 active on probation (3 runs, no failure allowed) since 50 ms, version 1 before.
fn on_probation(rollout_id: Option<&str>) -> DeployState {
    DeployState {
        highest_version: 2,
        last_epoch: 2,
        active_version: 2,
        paused: false,
        probation: Some(ProbationState {
            runs: 3,
            max_failures: 0,
            previous_version: 1,
            since_ms: 50,
            rollout_id: rollout_id.map(str::to_string),
        }),
        reverted_from: None,
    }
}

/// Store versions 1 and 2 with `state` and `events`, then start a driver on the store and load
/// the hub's workflows (one); returns the driver and the deploy state it left.
fn start_with(
    dir: &std::path::Path,
    store: &Arc<Store>,
    state: &DeployState,
    events: Vec<StatusEvent>,
) -> (Driver, DeployState) {
    store
        .commit(Batch {
            events,
            workflow_puts: vec![version(1), version(2)],
            meta_puts: vec![("deploy/wf".into(), minicbor::to_vec(state).unwrap())],
            ..Batch::default()
        })
        .unwrap();
    let mut d = driver(dir, store.clone());
    assert_eq!(d.load_hub_workflows().unwrap(), 1);
    let after = minicbor::decode(&store.get_meta("deploy/wf").unwrap().unwrap()).unwrap();
    (d, after)
}

/// The agent stopped after the run that exceeded probation's limit was committed and before
/// its revert was: at start-up, the revert happens (it does not wait for another run).
#[tokio::test(flavor = "current_thread")]
async fn a_revert_due_at_a_crash_happens_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("agent.redb")).unwrap());
    let state = on_probation(Some("r1"));
    let (d, after) = start_with(dir.path(), &store, &state, vec![failed_run(1)]);
    assert_eq!(d.installed("wf").map(|(v, _)| v), Some(1));
    assert_eq!(after.active_version, 1);
    assert_eq!(after.highest_version, 2);
    assert_eq!(after.reverted_from, Some(2));
    assert!(after.probation.is_none());
    let reverted: Vec<_> = store
        .outbox_after(0, 100)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            StatusEvent::Reverted(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(reverted.len(), 1, "{reverted:?}");
    assert_eq!(reverted[0].rollout_id.as_deref(), Some("r1"));
}

/// A run that ended `succeeded` through an `all_done` task after a failed one counts as a
/// failure for local probation, as in the hub's gates: here the limit is 0, so it reverts.
#[tokio::test(flavor = "current_thread")]
async fn a_succeeded_run_with_a_failed_task_fails_probation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("agent.redb")).unwrap());
    let state = on_probation(None);
    let StatusEvent::Run(mut run) = failed_run(1) else {
        unreachable!()
    };
    run.state = RunState::Succeeded;
    let task = |id: &str, st: TaskState| {
        StatusEvent::Task(TaskInstanceRecord {
            run_id: run.run_id.clone(),
            task_id: id.into(),
            state: st,
            attempts: Vec::new(),
            outputs: Vec::new(),
            retry_at_ms: None,
            updated_ms: 101,
        })
    };
    let events = vec![
        task("extract", TaskState::Failed),
        task("cleanup", TaskState::Succeeded),
        StatusEvent::Run(run.clone()),
    ];
    let (_d, after) = start_with(dir.path(), &store, &state, events);
    assert_eq!(after.active_version, 1, "{after:?}");
    assert_eq!(after.reverted_from, Some(2));
}

const AGENT: &str = "agent-1";

fn content(v: u64) -> Vec<u8> {
    format!("name: wf\ntasks:\n  t{v}:\n    command: [/bin/true]\n").into_bytes()
}

fn signed(k: &SigningKey, version: u64, epoch: u64) -> (SignedAssignment, SignedBundle) {
    let c = content(version);
    let a = Assignment {
        agent_id: AGENT.into(),
        workflow: "wf".into(),
        version,
        content_hash: content_hash(&c),
        epoch,
        issued_ms: 1,
        remove: false,
        previous_version: None,
        probation: None,
        rollout_id: None,
    };
    let h = BundleHeader {
        workflow: "wf".into(),
        version,
        content_hash: content_hash(&c),
        created_ms: 1,
        target: Vec::new(),
        format: "yaml".into(),
    };
    (k.sign_assignment(&a), k.sign_bundle(&h, c))
}

fn enrolled(dir: &std::path::Path) -> (Arc<Store>, SigningKey) {
    let store = Arc::new(Store::open(&dir.join("agent.redb")).unwrap());
    let (k, _) = SigningKey::generate().unwrap();
    crate::identity::save_trust(&store, &Trust::new(&k.public_key()).unwrap()).unwrap();
    (store, k)
}

fn state(store: &Store) -> DeployState {
    deploy_gate::load_state(store, "wf").unwrap()
}

/// A deploy is checked, committed (version and state in one batch) and installed by the gate;
/// a replay, a rollback and a forged signature are refused with their reasons, changing nothing.
#[tokio::test(flavor = "current_thread")]
async fn the_gate_checks_commits_and_installs_a_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k) = enrolled(dir.path());
    let mut d = driver_as(dir.path(), store.clone(), Some(AGENT));
    let (a, b) = signed(&k, 2, 5);
    let v = d.hub_deploy(&a, Some(&b));
    assert_eq!((v.workflow.as_str(), v.version, v.epoch), ("wf", 2, 5));
    assert!(v.result.is_ok(), "{v:?}");
    assert_eq!(d.installed("wf").map(|(v, _)| v), Some(2));
    let s = state(&store);
    assert_eq!(
        (s.active_version, s.highest_version, s.last_epoch),
        (2, 2, 5)
    );
    assert_eq!(store.workflow_versions("wf").unwrap().len(), 1);

    let replay = d.hub_deploy(&a, Some(&b));
    assert!(
        matches!(
            replay.result,
            Err(DeployError::Rejected(Rejection::StaleEpoch {
                offered: 5,
                last: 5
            }))
        ),
        "{replay:?}"
    );
    let (a1, b1) = signed(&k, 1, 6);
    let stale = d.hub_deploy(&a1, Some(&b1));
    assert!(
        matches!(
            stale.result,
            Err(DeployError::Rejected(Rejection::StaleVersion {
                offered: 1,
                highest: 2
            }))
        ),
        "{stale:?}"
    );
    let (other, _) = SigningKey::generate().unwrap();
    let (forged, fb) = signed(&other, 3, 7);
    let forged = d.hub_deploy(&forged, Some(&fb));
    assert!(
        matches!(
            forged.result,
            Err(DeployError::Rejected(Rejection::UnknownKey(_)))
        ),
        "{forged:?}"
    );
    assert_eq!(forged.workflow, "", "nothing unverified is reported back");
    assert_eq!(state(&store), s, "a rejection changes nothing");
}

/// The store cannot give the deploy state: the verdict is a store fault, not a rejection of the
/// deploy (the hub is not told that its deploy is malformed), and nothing changes.
#[tokio::test(flavor = "current_thread")]
async fn a_store_fault_is_not_a_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k) = enrolled(dir.path());
    store.put_meta("deploy/wf", b"\xff\xff not cbor").unwrap();
    let mut d = driver_as(dir.path(), store.clone(), Some(AGENT));
    let (a, b) = signed(&k, 1, 1);
    let v = d.hub_deploy(&a, Some(&b));
    assert!(matches!(v.result, Err(DeployError::Store(_))), "{v:?}");
    assert_eq!(d.installed("wf"), None);
    assert!(store.workflow_versions("wf").unwrap().is_empty());
}

/// A key rotation is followed and committed by the gate; deploys signed by the new key are
/// accepted after it, and a chain not signed by the trusted key is refused.
#[tokio::test(flavor = "current_thread")]
async fn the_gate_follows_a_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (store, k1) = enrolled(dir.path());
    let mut d = driver_as(dir.path(), store.clone(), Some(AGENT));
    let (k2, _) = SigningKey::generate().unwrap();
    let (stranger, _) = SigningKey::generate().unwrap();
    let (k3, _) = SigningKey::generate().unwrap();
    d.hub_key_chain(&[stranger.endorse(&k3.public_key(), 1)]);
    assert_eq!(
        crate::identity::load_trust(&store)
            .unwrap()
            .unwrap()
            .current_key_id(),
        k1.key_id()
    );
    d.hub_key_chain(&[k1.endorse(&k2.public_key(), 1)]);
    let trust = crate::identity::load_trust(&store).unwrap().unwrap();
    assert_eq!(trust.current_key_id(), k2.key_id());
    let (a, b) = signed(&k2, 1, 1);
    let v = d.hub_deploy(&a, Some(&b));
    assert!(v.result.is_ok(), "{v:?}");
}
