//! The driver's hub deploys against a real store: the deploy gate (checks, decisions, one
//! batch), root rotations and counter resets, the release threshold, the session's snapshot,
//! expiry and the time floor, the director view in `status`, store faults, probation across a
//! restart.

use std::sync::Arc;

use outpost_agent_core::deploy::{DeployState, DirectorView, ProbationState};
use outpost_common::clock::ManualClock;
use outpost_common::record::{
    RunKind, RunRecord, RunState, StatusEvent, TaskInstanceRecord, TaskState,
};

use outpost_common::proto::{
    Assignment, BundleHeader, DOMAIN_ASSIGNMENT, Rejection, SignedAssignment, SignedBundle,
    Snapshot, SnapshotEntry,
};
use outpost_common::trust::{
    Director, Role, RootBody, SigningKey, Trust, content_hash, sign_release,
};

use super::{
    DeployError, DeployVerdict, Driver, DriverConfig, HUB_ORIGIN, deploy_gate, test_config,
};
use crate::store::{Batch, Store, WorkflowVersion};

fn driver(dir: &std::path::Path, store: Arc<Store>) -> Driver {
    driver_as(dir, store, None)
}

fn driver_as(dir: &std::path::Path, store: Arc<Store>, agent_id: Option<&str>) -> Driver {
    driver_at(dir, store, agent_id, &clock_at(T0))
}

/// A driver reading `clock` (shared: the test moves it).
fn driver_at(
    dir: &std::path::Path,
    store: Arc<Store>,
    agent_id: Option<&str>,
    clock: &ManualClock,
) -> Driver {
    Driver::new(
        DriverConfig {
            agent_id: agent_id.map(str::to_string),
            ..test_config(dir)
        },
        Arc::new(clock.clone()),
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
        skip_reason: None,
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
/// The tests' clocks start here (ms; the drivers' `ManualClock` of `driver_as`).
const T0: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn key() -> SigningKey {
    SigningKey::generate().unwrap().0
}

fn clock_at(ms: i64) -> ManualClock {
    ManualClock::new(chrono::DateTime::from_timestamp_millis(ms).unwrap())
}

fn content(v: u64) -> Vec<u8> {
    format!("name: wf\ntasks:\n  t{v}:\n    command: [/bin/true]\n").into_bytes()
}

/// A fleet's keys: one root key, 2-of-3 release keys, the director; and the root (version 1)
/// the agent trusts.
struct Keys {
    root: SigningKey,
    release: Vec<SigningKey>,
    director: Director,
    trust: Trust,
}

/// A deploy as the hub link hands it to the driver: the director's assignment, the released
/// bundle and the session's (verified) snapshot listing it.
struct Deploy {
    assignment: SignedAssignment,
    bundle: SignedBundle,
    snapshot: Snapshot,
}

impl Deploy {
    fn to(&self, d: &mut Driver) -> DeployVerdict {
        d.hub_deploy(&self.assignment, Some(&self.bundle), Some(&self.snapshot))
    }
}

impl Keys {
    /// A root valid for a year from `T0`.
    fn new() -> Keys {
        Keys::expiring(T0 + 365 * DAY)
    }

    fn expiring(expires_ms: i64) -> Keys {
        let root = key();
        let release: Vec<SigningKey> = (0..3).map(|_| key()).collect();
        let director = key();
        let release_keys: Vec<_> = release.iter().map(|k| k.trusted()).collect();
        let body = RootBody::first(
            &[root.trusted()],
            1,
            &release_keys,
            2,
            &director.trusted(),
            T0,
            expires_ms,
        );
        let trust = Trust::new(body.sign(&[&root])).unwrap();
        Keys {
            root,
            release,
            director: Director::new(director),
            trust,
        }
    }

    /// Version `version` at `epoch`, assigned by the trusted director and released by two of
    /// the three release keys.
    fn deploy(&self, version: u64, epoch: u64) -> Deploy {
        let release = [&self.release[0], &self.release[2]];
        self.deploy_by(&self.director, &release, version, epoch)
    }

    /// Version `version` at `epoch`, assigned by `director` and released by `release`.
    fn deploy_by(
        &self,
        director: &Director,
        release: &[&SigningKey],
        version: u64,
        epoch: u64,
    ) -> Deploy {
        let c = content(version);
        let a = Assignment {
            agent_id: AGENT.into(),
            workflow: "wf".into(),
            version,
            content_hash: content_hash(&c),
            epoch,
            issued_ms: T0,
            remove: false,
            previous_version: None,
            probation: None,
            rollout_id: None,
        };
        let h = BundleHeader {
            workflow: "wf".into(),
            version,
            content_hash: content_hash(&c),
            created_ms: T0,
            target: Vec::new(),
            format: "yaml".into(),
        };
        let header_bytes = minicbor::to_vec(&h).unwrap();
        let snapshot = Snapshot {
            agent_id: AGENT.into(),
            session: vec![7; 16],
            issued_ms: T0,
            expires_ms: T0 + DAY,
            workflows: vec![SnapshotEntry {
                workflow: a.workflow.clone(),
                version,
                epoch,
                content_hash: a.content_hash.clone(),
            }],
        };
        Deploy {
            assignment: director.sign_assignment(&a),
            bundle: SignedBundle {
                release: release
                    .iter()
                    .map(|k| sign_release(k, &header_bytes))
                    .collect(),
                header_bytes,
                content: c,
            },
            snapshot,
        }
    }

    /// The trusted root's successor (signed by the root key), with `director` as the director
    /// and counters reset or not, as the agent's session verified it.
    fn rotated(&self, from: &Trust, director: &Director, reset_counters: bool) -> (Trust, bool) {
        let old = from.root();
        let mut body = old.successor(T0, T0 + 365 * DAY);
        for id in old.director.key_ids.clone() {
            let k = old.keys.iter().find(|k| k.key_id == id).unwrap().clone();
            body.set_key(Role::Director, &k, false);
        }
        body.set_key(Role::Director, &director.key().trusted(), true);
        body.reset_counters = reset_counters;
        let mut next = from.clone();
        let update = next.update(&[body.sign(&[&self.root])]).unwrap();
        assert!(update.changed);
        (next, update.reset_counters)
    }
}

fn enrolled_with(dir: &std::path::Path, keys: &Keys) -> Arc<Store> {
    let store = Arc::new(Store::open(&dir.join("agent.redb")).unwrap());
    crate::identity::save_trust(&store, &keys.trust).unwrap();
    store
}

fn enrolled(dir: &std::path::Path) -> (Arc<Store>, Keys) {
    let keys = Keys::new();
    (enrolled_with(dir, &keys), keys)
}

fn state(store: &Store) -> DeployState {
    deploy_gate::load_state(store, "wf").unwrap()
}

fn rejected(v: &DeployVerdict) -> &Rejection {
    match &v.result {
        Err(DeployError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Nothing of a refused deploy is stored or installed: no version, no state, no change of
/// the trusted root.
fn assert_nothing_stored(d: &Driver, store: &Store, root_version: u64) {
    assert_eq!(d.installed("wf"), None);
    assert!(store.workflow_versions("wf").unwrap().is_empty());
    assert_eq!(state(store), DeployState::default());
    let trust = crate::identity::load_trust(store).unwrap().unwrap();
    assert_eq!(trust.version(), root_version);
}

/// A deploy is checked, committed (version and state in one batch) and installed by the gate;
/// a replay, a rollback and a forged signature are refused with their reasons, changing nothing.
#[tokio::test(flavor = "current_thread")]
async fn the_gate_checks_commits_and_installs_a_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = enrolled(dir.path());
    let mut d = driver_as(dir.path(), store.clone(), Some(AGENT));
    let dep = keys.deploy(2, 5);
    let v = dep.to(&mut d);
    assert_eq!((v.workflow.as_str(), v.version, v.epoch), ("wf", 2, 5));
    assert!(v.result.is_ok(), "{v:?}");
    assert_eq!(d.installed("wf").map(|(v, _)| v), Some(2));
    let s = state(&store);
    assert_eq!(
        (s.active_version, s.highest_version, s.last_epoch),
        (2, 2, 5)
    );
    assert_eq!(store.workflow_versions("wf").unwrap().len(), 1);

    let replay = dep.to(&mut d);
    assert_eq!(
        rejected(&replay),
        &Rejection::StaleEpoch {
            offered: 5,
            last: 5
        }
    );
    let stale = keys.deploy(1, 6).to(&mut d);
    assert_eq!(
        rejected(&stale),
        &Rejection::StaleVersion {
            offered: 1,
            highest: 2
        }
    );
    let stranger = Director::new(key());
    let release = [&keys.release[0], &keys.release[1]];
    let forged = keys.deploy_by(&stranger, &release, 3, 7).to(&mut d);
    assert!(
        matches!(rejected(&forged), Rejection::UnknownKey(id) if id == stranger.key_id()),
        "{forged:?}"
    );
    assert_eq!(forged.workflow, "", "nothing unverified is reported back");
    assert_eq!(state(&store), s, "a rejection changes nothing");
    assert_eq!(store.workflow_versions("wf").unwrap().len(), 1);
    assert_eq!(d.installed("wf").map(|(v, _)| v), Some(2));
}

/// The store cannot give the deploy state: the verdict is a store fault, not a rejection of the
/// deploy (the hub is not told that its deploy is malformed), and nothing changes.
#[tokio::test(flavor = "current_thread")]
async fn a_store_fault_is_not_a_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = enrolled(dir.path());
    store.put_meta("deploy/wf", b"\xff\xff not cbor").unwrap();
    let mut d = driver_as(dir.path(), store.clone(), Some(AGENT));
    let v = keys.deploy(1, 1).to(&mut d);
    assert!(matches!(v.result, Err(DeployError::Store(_))), "{v:?}");
    assert_eq!(d.installed("wf"), None);
    assert!(store.workflow_versions("wf").unwrap().is_empty());
}

/// Recovery from a stolen director key that signed a huge epoch: a root rotation names a new
/// director and resets the counters. Without the reset the new director's low epochs are
/// refused; with it, the root and every hub workflow's zeroed epoch and highest version are
/// stored in one commit, and the new director's deploy at epoch 1 (of a lower version) is
/// accepted. The old director is refused after the rotation.
#[tokio::test(flavor = "current_thread")]
async fn a_root_rotation_with_a_counter_reset_lets_the_new_director_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = enrolled(dir.path());
    let mut d = driver_as(dir.path(), store.clone(), Some(AGENT));
    // The stolen director key fast-forwards the epoch (with a released version).
    assert!(keys.deploy(5, u64::MAX - 1).to(&mut d).result.is_ok());
    // Another hub workflow's state, to see that the reset covers every workflow.
    let etl = DeployState {
        highest_version: 9,
        last_epoch: 40,
        active_version: 9,
        ..DeployState::default()
    };
    store
        .put_meta("deploy/etl", &minicbor::to_vec(&etl).unwrap())
        .unwrap();
    let release = [&keys.release[1], &keys.release[2]];
    let new_director = Director::new(key());
    let early = keys.deploy_by(&new_director, &release, 6, 1).to(&mut d);
    assert!(
        matches!(rejected(&early), Rejection::UnknownKey(_)),
        "not in the root yet: {early:?}"
    );

    // Version 2 of the root names the new director, without a reset: the counters stay.
    let (v2, reset) = keys.rotated(&keys.trust, &new_director, false);
    assert!(!reset);
    d.hub_roots(&v2, reset);
    assert_eq!(
        crate::identity::load_trust(&store)
            .unwrap()
            .unwrap()
            .version(),
        2
    );
    assert_eq!(state(&store).last_epoch, u64::MAX - 1);
    let blocked = keys.deploy_by(&new_director, &release, 6, 1).to(&mut d);
    assert_eq!(
        rejected(&blocked),
        &Rejection::StaleEpoch {
            offered: 1,
            last: u64::MAX - 1
        }
    );

    // Version 3 resets the counters: one batch holds the root and every zeroed state.
    let (v3, reset) = keys.rotated(&v2, &new_director, true);
    assert!(reset);
    let batch = d.gate.roots(&store, &v3, reset).unwrap();
    let mut put: Vec<&str> = batch.meta_puts.iter().map(|(k, _)| k.as_str()).collect();
    put.sort_unstable();
    assert_eq!(put, ["deploy/etl", "deploy/wf", "trust/root"]);
    d.hub_roots(&v3, reset);
    assert_eq!(
        crate::identity::load_trust(&store)
            .unwrap()
            .unwrap()
            .version(),
        3
    );
    let wf = state(&store);
    assert_eq!(
        (wf.last_epoch, wf.highest_version, wf.active_version),
        (0, 0, 5),
        "counters zeroed, the active version kept"
    );
    let etl = deploy_gate::load_state(&store, "etl").unwrap();
    assert_eq!(
        (etl.last_epoch, etl.highest_version, etl.active_version),
        (0, 0, 9)
    );

    // The new director deploys at epoch 1, a version below the fast-forwarded one.
    let v = keys.deploy_by(&new_director, &release, 3, 1).to(&mut d);
    assert!(v.result.is_ok(), "{v:?}");
    assert_eq!(d.installed("wf").map(|(v, _)| v), Some(3));
    let wf = state(&store);
    assert_eq!(
        (wf.active_version, wf.highest_version, wf.last_epoch),
        (3, 3, 1)
    );
    // The old director is out of the root.
    let old = keys.deploy(7, 2).to(&mut d);
    assert!(
        matches!(rejected(&old), Rejection::UnknownKey(id) if id == keys.director.key_id()),
        "{old:?}"
    );
    assert_eq!(state(&store), wf);
}

/// A deploy whose assignment is signed by a key that is not the trusted root's director (even
/// with a properly released bundle) is refused before anything is decoded: nothing stored,
/// nothing installed, nothing reported back about the workflow.
#[tokio::test(flavor = "current_thread")]
async fn a_director_key_outside_the_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = enrolled(dir.path());
    let mut d = driver_as(dir.path(), store.clone(), Some(AGENT));
    let release = [&keys.release[0], &keys.release[1]];
    let stranger = Director::new(key());
    let dep = keys.deploy_by(&stranger, &release, 1, 1);
    // A release key (a key of the root, in another role) is not a director key either.
    let mut by_release = keys.deploy_by(&stranger, &release, 1, 1);
    let body = &by_release.assignment.body_bytes;
    by_release.assignment.signature = keys.release[0].sign(DOMAIN_ASSIGNMENT, body);
    for (dep, signer) in [
        (dep, stranger.key_id()),
        (by_release, keys.release[0].key_id()),
    ] {
        let v = dep.to(&mut d);
        assert!(
            matches!(rejected(&v), Rejection::UnknownKey(id) if id == signer),
            "{v:?}"
        );
        assert_eq!((v.workflow.as_str(), v.version, v.epoch), ("", 0, 0));
        assert_nothing_stored(&d, &store, 1);
    }
}

/// A bundle released by one key where the root asks for two, or "released" by the director
/// itself, is refused with the release threshold's numbers; nothing is stored.
#[tokio::test(flavor = "current_thread")]
async fn a_bundle_below_the_release_threshold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = enrolled(dir.path());
    let mut d = driver_as(dir.path(), store.clone(), Some(AGENT));
    let one = &keys.release[1];
    for (signers, valid) in [
        (vec![one], 1),
        (vec![one, one], 1),
        (vec![keys.director.key(), keys.director.key()], 0),
        (vec![&keys.root], 0),
    ] {
        let v = keys.deploy_by(&keys.director, &signers, 1, 1).to(&mut d);
        assert_eq!(
            rejected(&v),
            &Rejection::Threshold {
                role: "release".into(),
                valid,
                needed: 2
            }
        );
        assert_nothing_stored(&d, &store, 1);
    }
}

/// The session's snapshot must list the deploy exactly (workflow, version, epoch, hash): a
/// deploy missing from it, or listed with another epoch or version, or sent without a
/// snapshot, is refused and nothing is stored.
#[tokio::test(flavor = "current_thread")]
async fn a_deploy_not_in_the_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = enrolled(dir.path());
    let mut d = driver_as(dir.path(), store.clone(), Some(AGENT));
    let dep = keys.deploy(2, 3);
    let mut cases = Vec::new();
    let mut empty = dep.snapshot.clone();
    empty.workflows.clear();
    cases.push(Some(empty));
    let mut other_epoch = dep.snapshot.clone();
    other_epoch.workflows[0].epoch = 4;
    cases.push(Some(other_epoch));
    let mut other_version = dep.snapshot.clone();
    other_version.workflows[0].version = 1;
    cases.push(Some(other_version));
    let mut other_workflow = dep.snapshot.clone();
    other_workflow.workflows[0].workflow = "etl".into();
    cases.push(Some(other_workflow));
    cases.push(None);
    for snapshot in cases {
        let v = d.hub_deploy(&dep.assignment, Some(&dep.bundle), snapshot.as_ref());
        assert_eq!(rejected(&v), &Rejection::NotInSnapshot, "{snapshot:?}");
        assert_nothing_stored(&d, &store, 1);
    }
    // Listed as it is: accepted.
    assert!(dep.to(&mut d).result.is_ok());
    assert_eq!(state(&store).last_epoch, 3);
}

/// An expired root refuses every deploy. The time floor (the highest signed hub time seen, from
/// a verified snapshot) keeps refusing after the agent's clock is set back before the expiry,
/// where the clock alone would have accepted again.
#[tokio::test(flavor = "current_thread")]
async fn an_expired_root_refuses_deploys_even_with_the_clock_set_back() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::expiring(T0 + DAY);
    let store = enrolled_with(dir.path(), &keys);
    let clock = clock_at(T0);
    let mut d = driver_at(dir.path(), store.clone(), Some(AGENT), &clock);
    assert!(keys.deploy(1, 1).to(&mut d).result.is_ok(), "valid at T0");
    let before = state(&store);
    let expired = |v: &DeployVerdict| {
        assert_eq!(
            rejected(v),
            &Rejection::Expired {
                what: "root metadata version 1".into(),
                at_ms: T0 + DAY
            }
        );
        assert_eq!((v.workflow.as_str(), v.version), ("", 0));
    };

    // At the expiry instant and after it.
    clock.set_wall(chrono::DateTime::from_timestamp_millis(T0 + DAY).unwrap());
    expired(&keys.deploy(2, 2).to(&mut d));
    clock.set_wall(chrono::DateTime::from_timestamp_millis(T0 + 2 * DAY).unwrap());
    expired(&keys.deploy(2, 2).to(&mut d));

    // Set back without a signed hub time seen: the clock alone decides (valid again).
    clock.set_wall(chrono::DateTime::from_timestamp_millis(T0 + DAY / 2).unwrap());
    assert!(keys.deploy(2, 2).to(&mut d).result.is_ok());
    let accepted = state(&store);
    assert_eq!(accepted.active_version, 2);
    assert_ne!(accepted, before);

    // A verified snapshot at hub time T0 + 2 days raises the floor; setting the clock back
    // again does not make the root valid.
    clock.set_wall(chrono::DateTime::from_timestamp_millis(T0 + 2 * DAY).unwrap());
    d.hub_fresh(DirectorView {
        hub_ms: T0 + 2 * DAY,
        local_ms: T0 + 2 * DAY,
        expires_ms: T0 + 3 * DAY,
    });
    assert_eq!(deploy_gate::time_floor(&store).unwrap(), T0 + 2 * DAY);
    clock.set_wall(chrono::DateTime::from_timestamp_millis(T0 + DAY / 2).unwrap());
    expired(&keys.deploy(3, 3).to(&mut d));
    clock.set_wall(chrono::DateTime::from_timestamp_millis(T0).unwrap());
    expired(&keys.deploy(3, 3).to(&mut d));
    // An older hub time never lowers the floor.
    d.hub_fresh(DirectorView {
        hub_ms: T0,
        local_ms: T0,
        expires_ms: T0 + DAY,
    });
    assert_eq!(deploy_gate::time_floor(&store).unwrap(), T0 + 2 * DAY);
    expired(&keys.deploy(3, 3).to(&mut d));
    assert_eq!(state(&store), accepted, "the refusals changed nothing");
    assert_eq!(d.installed("wf").map(|(v, _)| v), Some(2));
}

/// `status` shows the director view: fresh until its expiry by the hub's time (the local
/// clock corrected by the measured offset), then stale; the clock offset; the root version.
#[tokio::test(flavor = "current_thread")]
async fn status_shows_the_director_view_and_the_clock_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _keys) = enrolled(dir.path());
    let clock = clock_at(T0);
    let mut d = driver_at(dir.path(), store.clone(), Some(AGENT), &clock);
    assert!(
        d.status().unwrap().director.is_none(),
        "never heard the director"
    );
    // The agent's clock is 1.5 s ahead of the hub's; the view is fresh for an hour (hub time).
    let hour = 3_600_000;
    d.hub_fresh(DirectorView {
        hub_ms: T0 - 1500,
        local_ms: T0,
        expires_ms: T0 - 1500 + hour,
    });
    let s = d.status().unwrap().director.unwrap();
    assert!(!s.stale);
    assert_eq!(s.clock_offset_ms, 1500);
    assert_eq!(s.root_version, 1);
    let until = chrono::DateTime::from_timestamp_millis(T0 - 1500 + hour).unwrap();
    assert_eq!(s.fresh_until, until.to_rfc3339());
    // One millisecond before the expiry by the hub's time (the local clock reads 1.5 s more).
    clock.set_wall(chrono::DateTime::from_timestamp_millis(T0 + hour - 1).unwrap());
    assert!(!d.status().unwrap().director.unwrap().stale);
    clock.set_wall(chrono::DateTime::from_timestamp_millis(T0 + hour).unwrap());
    let s = d.status().unwrap().director.unwrap();
    assert!(s.stale, "{s:?}");
    assert_eq!(s.clock_offset_ms, 1500);
    // Still stale after a restart: the view is durable.
    drop(d);
    let d = driver_at(dir.path(), store.clone(), Some(AGENT), &clock);
    assert!(d.status().unwrap().director.unwrap().stale);
    // A new view makes it fresh again.
    let mut d = d;
    d.hub_fresh(DirectorView {
        hub_ms: T0 + hour,
        local_ms: T0 + hour,
        expires_ms: T0 + 2 * hour,
    });
    let s = d.status().unwrap().director.unwrap();
    assert!(!s.stale);
    assert_eq!(s.clock_offset_ms, 0);
}
