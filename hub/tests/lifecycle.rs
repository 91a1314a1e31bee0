//! The workflow lifecycle through the hub's operations over a real store (no network): apply is
//! all or nothing, a dry run changes nothing and tells the diff and the agents reached, delete
//! sends removals and keeps history, refuses during a rollout unless forced, and applying again
//! revives the workflow.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use outpost_common::trust::{SigningKey, sign_release};
use outpost_hub::hub::Hub;
use outpost_hub::ops::OpError;
use outpost_hub::ops::workflows::{FileOutcome, SourceFile};
use outpost_hub::rollouts::RolloutPlan;
use outpost_hub::store::{Store, StoreError};
use outpost_rollout::{OfflinePolicy, Scope, Size};

mod common;

fn wf(name: &str, tag: &str, site: &str) -> String {
    format!(
        "name: {name}\ndescription: '{tag}'\nschedule: '0 * * * * *'\ntarget:\n  site: {site}\n\
         tasks:\n  t:\n    command: [/bin/true]\n"
    )
}

fn file(path: &str, content: &str) -> SourceFile {
    SourceFile {
        path: path.into(),
        content: content.into(),
    }
}

fn release(hub: &Hub, store: &Store, key: &SigningKey, name: &str) {
    let p = store.pending(name).unwrap().unwrap();
    let sig = sign_release(key, &p.header_bytes);
    assert!(
        hub.release_sign("op", name, p.version, vec![sig])
            .unwrap()
            .released
    );
}

/// The versions of `workflow` the hub wants on `agent` (removals excluded).
fn desired(hub: &Arc<Hub>, agent: &str, workflow: &str) -> Vec<u64> {
    hub.desired_for(agent)
        .unwrap()
        .into_iter()
        .filter(|d| d.workflow == workflow && !d.remove)
        .map(|d| d.version)
        .collect()
}

#[test]
fn apply_all_or_nothing_dry_run_delete_and_revive() {
    let dir = tempfile::tempdir().unwrap();
    let t = common::open(dir.path(), None);
    let key = SigningKey::from_pkcs8(&t.keys.release).unwrap();
    let (hub, store) = (t.hub.clone(), t.store.clone());
    common::enroll(&store, "agent-a", vec![("site".into(), "a".into())]);
    common::enroll(&store, "agent-b", vec![("site".into(), "b".into())]);

    // One invalid file: nothing stored, the valid one is held.
    let out = hub
        .apply(
            "op",
            vec![
                file("etl.yaml", &wf("etl", "v1", "a")),
                file("bad.yaml", "name: bad\nschedule: 'nope'\ntasks: {}\n"),
            ],
        )
        .unwrap();
    assert!(matches!(&out[0], FileOutcome::Held { workflow, .. } if workflow == "etl"));
    assert!(
        matches!(&out[1], FileOutcome::Invalid { diagnostics, .. } if diagnostics[0].starts_with("bad.yaml:"))
    );
    assert!(store.pending("etl").unwrap().is_none());
    assert!(hub.workflows().unwrap().is_empty());
    // Two files defining one workflow: refused, naming both.
    let out = hub
        .apply(
            "op",
            vec![
                file("a.yaml", &wf("etl", "v1", "a")),
                file("b.yaml", &wf("etl", "v2", "a")),
            ],
        )
        .unwrap();
    assert!(
        matches!(&out[1], FileOutcome::Invalid { diagnostics, .. } if diagnostics[0].contains("also defined in a.yaml")),
        "{out:?}"
    );
    assert!(store.pending("etl").unwrap().is_none());

    // A dry run of a new workflow: reaches agent-a (site=a), needs release, changes nothing.
    let out = hub
        .apply_files("op", vec![file("etl.yaml", &wf("etl", "v1", "a"))], true)
        .unwrap();
    let FileOutcome::Planned { plan, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (plan.status, plan.agents.clone(), plan.needs_release),
        ("new", vec!["agent-a".to_string()], true)
    );
    assert!(store.pending("etl").unwrap().is_none());

    // Apply both for real, in one go.
    let out = hub
        .apply(
            "op",
            vec![
                file("etl.yaml", &wf("etl", "v1", "a")),
                file("report.yaml", &wf("report", "v1", "b")),
            ],
        )
        .unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o, FileOutcome::Applied { version, .. } if version.changed)),
        "{out:?}"
    );
    release(&hub, &store, &key, "etl");
    release(&hub, &store, &key, "report");
    assert_eq!(desired(&hub, "agent-a", "etl"), [1]);

    // A dry run of a change: the diff, and the target moved to site=b reaches agent-b.
    let out = hub
        .apply_files("op", vec![file("etl.yaml", &wf("etl", "v2", "b"))], true)
        .unwrap();
    let FileOutcome::Planned { plan, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(plan.status, "changed");
    assert!(plan.diff.contains("-description: 'v1'"), "{}", plan.diff);
    assert!(plan.diff.contains("+description: 'v2'"), "{}", plan.diff);
    assert_eq!(plan.agents, ["agent-b"]);
    assert!(plan.pools.iter().any(|p| p.pool == "wf:etl" && p.gets_new));
    assert!(
        store.pending("etl").unwrap().is_none(),
        "the dry run stored nothing"
    );

    // Delete: agent-a gets a removal, history kept, listed as deleted.
    let (del, reached) = hub.delete_workflow("op", "etl", false).unwrap();
    assert_eq!(reached, ["agent-a"]);
    assert_eq!(del.pools, ["wf:etl"]);
    assert!(desired(&hub, "agent-a", "etl").is_empty());
    assert!(
        hub.desired_for("agent-a")
            .unwrap()
            .iter()
            .any(|d| d.workflow == "etl" && d.remove),
        "a removal is issued"
    );
    assert!(hub.workflow_meta("etl").unwrap().deleted_ms.is_some());
    assert_eq!(hub.workflow_history("etl").unwrap().len(), 1);
    assert!(
        store
            .audit_log(100)
            .unwrap()
            .iter()
            .any(|e| e.action == "workflow.delete" && e.actor == "op")
    );
    assert!(matches!(
        hub.delete_workflow("op", "etl", false),
        Err(OpError::Store(StoreError::NoWorkflow(_)))
    ));

    // Applied again, even unchanged: a new version, deployed again once released.
    let out = hub
        .apply_files("op", vec![file("etl.yaml", &wf("etl", "v1", "a"))], true)
        .unwrap();
    let FileOutcome::Planned { plan, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (plan.status, plan.agents.clone()),
        ("revived", vec!["agent-a".to_string()])
    );
    let out = hub
        .apply("op", vec![file("etl.yaml", &wf("etl", "v1", "a"))])
        .unwrap();
    assert!(
        matches!(&out[0], FileOutcome::Applied { version, .. } if version.version == 2 && version.changed)
    );
    release(&hub, &store, &key, "etl");
    assert!(hub.workflow_meta("etl").unwrap().deleted_ms.is_none());
    assert_eq!(desired(&hub, "agent-a", "etl"), [2]);
}

#[test]
fn delete_is_refused_during_a_rollout_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let t = common::open(dir.path(), None);
    let key = SigningKey::from_pkcs8(&t.keys.release).unwrap();
    let (hub, store) = (t.hub.clone(), t.store.clone());
    for i in 0..2 {
        common::enroll(
            &store,
            &format!("agent-{i}"),
            vec![("site".into(), "a".into())],
        );
    }
    hub.apply("op", vec![file("etl.yaml", &wf("etl", "v1", "a"))])
        .unwrap();
    release(&hub, &store, &key, "etl");
    // Managed explicitly: the pool stays on version 1 when version 2 is released.
    hub.deploy("op", "etl", "wf:etl", Some(1)).unwrap();
    hub.apply("op", vec![file("etl.yaml", &wf("etl", "v2", "a"))])
        .unwrap();
    release(&hub, &store, &key, "etl");
    let plan = RolloutPlan {
        workflow: "etl".into(),
        pool: "wf:etl".into(),
        version: None,
        canary: Size::Count(1),
        steps: vec![Size::Percent(100)],
        bake_ms: 0,
        min_runs: 1,
        min_runs_scope: Scope::PerAgent,
        max_failure_rate: 0.0,
        manual: true,
        probation: None,
        offline: OfflinePolicy::Wait { max_ms: 600_000 },
    };
    let r = hub.start_rollout("op", &plan).unwrap();
    assert!(r.active);
    let e = hub.delete_workflow("op", "etl", false).unwrap_err();
    assert!(
        matches!(&e, OpError::Store(StoreError::Conflict(m)) if m.contains("--force")),
        "{e}"
    );
    assert!(hub.workflow_meta("etl").unwrap().deleted_ms.is_none());
    let (del, _) = hub.delete_workflow("op", "etl", true).unwrap();
    assert_eq!(del.aborted_rollouts, vec![r.id.clone()]);
    let rec = store
        .rollouts()
        .unwrap()
        .into_iter()
        .find(|x| x.id == r.id)
        .unwrap();
    assert!(!rec.active);
    assert_eq!(rec.outcome.as_deref(), Some("aborted: workflow deleted"));
    for i in 0..2 {
        assert!(desired(&hub, &format!("agent-{i}"), "etl").is_empty());
    }
}
