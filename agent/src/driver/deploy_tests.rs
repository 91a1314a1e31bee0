//! The driver's hub deploys against a real store: probation across a restart.

use std::sync::Arc;
use std::time::Duration;

use outpost_agent_core::deploy::{DeployState, ProbationState};
use outpost_common::clock::ManualClock;
use outpost_common::record::{RunKind, RunRecord, RunState, StatusEvent};

use super::{Driver, DriverConfig, HUB_ORIGIN, PRECOMMIT_LEAD};
use crate::exec::ExecConfig;
use crate::store::{Batch, Store, WorkflowVersion};

fn driver(dir: &std::path::Path, store: Arc<Store>) -> Driver {
    let clock = ManualClock::new(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    Driver::new(
        DriverConfig {
            max_running: 2,
            dispatch_ahead: 0,
            resources: Default::default(),
            exec: ExecConfig::new(dir.join("logs"), "/bin/false"),
            shutdown_grace: Duration::from_secs(1),
            agent_id: None,
            workflows_dir: None,
            validate: Default::default(),
            retention: None,
            start_journal_dir: None,
            precommit_lead: PRECOMMIT_LEAD,
            disk_guard: None,
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

/// The agent stopped after the run that exceeded probation's limit was committed and before
/// its revert was: at start-up, the revert happens (it does not wait for another run).
#[tokio::test(flavor = "current_thread")]
async fn a_revert_due_at_a_crash_happens_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("agent.redb")).unwrap());
    let state = DeployState {
        highest_version: 2,
        last_epoch: 2,
        active_version: 2,
        paused: false,
        probation: Some(ProbationState {
            runs: 3,
            max_failures: 0,
            previous_version: 1,
            since_ms: 50,
            rollout_id: Some("r1".into()),
        }),
        reverted_from: None,
    };
    store
        .commit(Batch {
            events: vec![failed_run(1)],
            workflow_puts: vec![version(1), version(2)],
            meta_puts: vec![("deploy/wf".into(), minicbor::to_vec(&state).unwrap())],
            ..Batch::default()
        })
        .unwrap();
    let mut d = driver(dir.path(), store.clone());
    assert_eq!(d.load_hub_workflows().unwrap(), 1);
    assert_eq!(d.installed("wf").map(|(v, _)| v), Some(1));
    let after: DeployState =
        minicbor::decode(&store.get_meta("deploy/wf").unwrap().unwrap()).unwrap();
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
