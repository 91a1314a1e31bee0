//! Agent names, decommissioning and run retention.

use super::*;

fn named(id: &str, name: &str) -> AgentRecord {
    let mut a = agent(id, &[]);
    a.name = Some(name.into());
    a
}

fn enroll_as(s: &Store, rec: AgentRecord, exact: bool) -> Result<AgentRecord, StoreError> {
    let (tid, secret) = s.create_token(vec![], 10_000, "op", 0).unwrap();
    s.enroll_named(&tid, &secret, rec, exact, 5)
}

#[test]
fn names_are_unique_resolvable_and_renamable() {
    let (_d, s) = open();
    let a = enroll_as(&s, named("agent-1", "line3-pc"), true).unwrap();
    assert_eq!(a.name.as_deref(), Some("line3-pc"));
    // An operator's name that is taken: refused, and nothing enrolled.
    let e = enroll_as(&s, named("agent-2", "line3-pc"), true).unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert!(s.agent("agent-2").is_err());
    // A default (host) name that is taken: the first free suffix.
    let b = enroll_as(&s, named("agent-2", "line3-pc"), false).unwrap();
    assert_eq!(b.name.as_deref(), Some("line3-pc-2"));
    let c = enroll_as(&s, named("agent-3", "line3-pc"), false).unwrap();
    assert_eq!(c.name.as_deref(), Some("line3-pc-3"));
    // Ids and names both resolve; unknown ones do not.
    assert_eq!(s.resolve_agent("agent-1").unwrap(), "agent-1");
    assert_eq!(s.resolve_agent("line3-pc-2").unwrap(), "agent-2");
    assert!(matches!(
        s.resolve_agent("nobody"),
        Err(StoreError::NoAgent(_))
    ));
    // Rename by name: the old name is free, the new one resolves, the id never changes.
    let (id, old) = s.rename_agent("line3-pc", "press-1", "op", 9).unwrap();
    assert_eq!((id.as_str(), old.as_deref()), ("agent-1", Some("line3-pc")));
    assert_eq!(s.resolve_agent("press-1").unwrap(), "agent-1");
    assert!(s.resolve_agent("line3-pc").is_err());
    assert_eq!(s.agent("agent-1").unwrap().name.as_deref(), Some("press-1"));
    // A taken or invalid name is refused.
    assert!(matches!(
        s.rename_agent("agent-1", "line3-pc-2", "op", 9),
        Err(StoreError::Conflict(_))
    ));
    for bad in ["", "agent-x", "-x", "a b", "x/y", &"n".repeat(64)] {
        assert!(
            matches!(
                s.rename_agent("agent-1", bad, "op", 9),
                Err(StoreError::Refused(_))
            ),
            "{bad:?}"
        );
    }
    // Renaming to its own name is a no-op success.
    s.rename_agent("press-1", "press-1", "op", 9).unwrap();
    assert_eq!(s.resolve_agent("press-1").unwrap(), "agent-1");
    // The freed name can be taken by another agent.
    s.rename_agent("agent-3", "line3-pc", "op", 10).unwrap();
    assert_eq!(s.resolve_agent("line3-pc").unwrap(), "agent-3");
    let audit = s.audit_log(100).unwrap();
    assert!(audit.iter().any(|e| e.action == "agent.rename"
        && e.target == "agent-1"
        && e.detail == "line3-pc -> press-1"));
}

#[test]
fn default_names_come_from_the_host_name() {
    assert_eq!(default_agent_name("line3-pc"), "line3-pc");
    assert_eq!(default_agent_name("Line 3 PC"), "Line-3-PC");
    assert_eq!(default_agent_name("agent-7"), "host-agent-7");
    assert_eq!(default_agent_name(""), "host");
    assert_eq!(default_agent_name("--x"), "x");
    assert!(default_agent_name(&"h".repeat(200)).len() <= 59);
    for h in ["line3-pc", "Line 3 PC", "agent-7", "", "--x", "über"] {
        check_agent_name(&default_agent_name(h)).unwrap();
    }
}

#[test]
fn decommission_revokes_frees_the_name_and_keeps_history() {
    let (_d, s) = open();
    enroll_as(&s, named("agent-1", "line3-pc"), true).unwrap();
    enroll_as(&s, named("agent-2", "other"), true).unwrap();
    let batch = vec![
        entry(1, StatusEvent::Run(run("r1", 100, RunState::Succeeded))),
        entry(2, StatusEvent::Task(task("r1", "t", TaskState::Succeeded))),
    ];
    s.ingest("agent-1", &batch).unwrap();
    let d = s.decommission("line3-pc", "op", 50).unwrap();
    assert_eq!(d.id, "agent-1");
    assert!(d.changed);
    assert_eq!(d.freed_name.as_deref(), Some("line3-pc"));
    let a = s.agent("agent-1").unwrap();
    assert_eq!(a.revoked_ms, Some(50));
    assert_eq!(a.decommissioned_ms, Some(50));
    // Its id still resolves (history), its name does not, and is free.
    assert_eq!(s.resolve_agent("agent-1").unwrap(), "agent-1");
    assert!(s.resolve_agent("line3-pc").is_err());
    s.rename_agent("other", "line3-pc", "op", 51).unwrap();
    // Refused from now on; its history stays.
    let more = vec![entry(
        3,
        StatusEvent::Run(run("r2", 200, RunState::Succeeded)),
    )];
    assert!(matches!(
        s.ingest("agent-1", &more),
        Err(StoreError::Revoked(_))
    ));
    let (r, tasks) = s.run("agent-1", "r1").unwrap().unwrap();
    assert_eq!(r.state, RunState::Succeeded);
    assert_eq!(tasks.len(), 1);
    // Idempotent; a decommissioned agent cannot be renamed.
    let again = s.decommission("agent-1", "op", 60).unwrap();
    assert!(!again.changed);
    assert_eq!(s.agent("agent-1").unwrap().decommissioned_ms, Some(50));
    assert!(matches!(
        s.rename_agent("agent-1", "back", "op", 61),
        Err(StoreError::Conflict(_))
    ));
    let audit = s.audit_log(100).unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "agent.decommission")
            .count(),
        1
    );
}

fn policy(max_age_ms: Option<i64>, max_runs: Option<u64>, batch: usize) -> RetentionPolicy {
    RetentionPolicy {
        max_age_ms,
        max_runs_per_workflow: max_runs,
        keep_recent_ms: 0,
        batch,
    }
}

fn apply_all(s: &Store, p: &RetentionPolicy, now: i64) -> RetentionReport {
    let mut total = RetentionReport::default();
    loop {
        let r = s.apply_retention(p, now).unwrap();
        total.runs += r.runs;
        total.tasks += r.tasks;
        if !r.more {
            return total;
        }
    }
}

fn ingest_runs(s: &Store, agent: &str, seq: &mut u64, wf: &str, from: i64, n: i64) {
    let mut batch = Vec::new();
    for i in 0..n {
        let id = format!("{wf}-{}", from + i);
        let mut r = run(&id, from + i, RunState::Succeeded);
        r.workflow = wf.into();
        r.params = vec![("payload".into(), "x".repeat(200))];
        *seq += 1;
        batch.push(entry(
            *seq,
            StatusEvent::Task(task(&id, "t", TaskState::Succeeded)),
        ));
        *seq += 1;
        batch.push(entry(*seq, StatusEvent::Run(r)));
    }
    s.ingest(agent, &batch).unwrap();
}

#[test]
fn retention_by_count_keeps_the_newest_per_agent_and_workflow() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    enrolled(&s, "agent-2");
    let (mut q1, mut q2) = (0, 0);
    ingest_runs(&s, "agent-1", &mut q1, "w", 1_000, 10);
    ingest_runs(&s, "agent-1", &mut q1, "v", 1_000, 2);
    ingest_runs(&s, "agent-2", &mut q2, "w", 1_000, 5);
    // An old run still going is never deleted.
    q1 += 1;
    s.ingest(
        "agent-1",
        &[entry(
            q1,
            StatusEvent::Run(run("w-old", 10, RunState::Running)),
        )],
    )
    .unwrap();
    let p = policy(None, Some(3), 4);
    let r = apply_all(&s, &p, 100_000);
    assert_eq!(r.runs, 7 + 2, "{r:?}");
    assert_eq!(r.tasks, 9);
    let list = |agent: &str, wf: &str| -> Vec<String> {
        s.runs(&RunQuery {
            agent: Some(agent.into()),
            workflow: Some(wf.into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.record.run_id)
        .collect()
    };
    assert_eq!(
        list("agent-1", "w"),
        ["w-1009", "w-1008", "w-1007", "w-old"]
    );
    assert_eq!(list("agent-1", "v"), ["v-1001", "v-1000"]);
    assert_eq!(list("agent-2", "w"), ["w-1004", "w-1003", "w-1002"]);
    // Every index forgot the deleted runs, their tasks are gone.
    assert!(s.run_agents("w-1000").unwrap().is_empty());
    assert_eq!(s.run_agents("w-1009").unwrap(), ["agent-1"]);
    assert!(s.run("agent-1", "w-1000").unwrap().is_none());
    assert!(!s.run_had_failed_task("agent-1", "w-1000").unwrap());
    assert_eq!(s.run("agent-1", "w-1009").unwrap().unwrap().1.len(), 1);
    // Nothing left to do.
    assert_eq!(
        s.apply_retention(&p, 100_000).unwrap(),
        RetentionReport::default()
    );
}

#[test]
fn retention_by_age_spares_recent_runs() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    let mut q = 0;
    ingest_runs(&s, "agent-1", &mut q, "w", 1_000, 10); // created 1000..1009
    // Older than 5 ms at 1_006: created before 1_001.
    let mut p = policy(Some(5), None, 100);
    assert_eq!(apply_all(&s, &p, 1_006).runs, 1);
    // keep_recent protects what max_age would delete.
    p.max_age_ms = Some(1);
    p.keep_recent_ms = 5;
    assert_eq!(apply_all(&s, &p, 1_008).runs, 2); // 1001, 1002 (< 1003)
    let left = s.runs(&RunQuery::default()).unwrap();
    assert_eq!(left.len(), 7);
    assert_eq!(left.last().unwrap().record.run_id, "w-1003");
}

#[test]
fn retention_keeps_the_store_file_bounded_under_a_steady_run_rate() {
    let (d, s) = open();
    enrolled(&s, "agent-1");
    let path = d.path().join("hub.redb");
    let p = policy(None, Some(500), 200);
    let mut seq = 0;
    let mut sizes = Vec::new();
    for round in 0..40i64 {
        for b in 0..4 {
            ingest_runs(&s, "agent-1", &mut seq, "w", round * 1_000 + b * 50, 50);
        }
        apply_all(&s, &p, i64::MAX / 2);
        sizes.push(std::fs::metadata(&path).unwrap().len());
    }
    assert_eq!(s.runs(&RunQuery::default()).unwrap().len(), 500);
    // 8,000 runs went in, 500 are kept: the file stops growing once freed pages are reused.
    let settled = sizes[15];
    let last = *sizes.last().unwrap();
    assert!(
        last <= settled + settled / 4,
        "store grew from {settled} to {last} bytes: {sizes:?}"
    );
}

#[test]
fn compaction_shrinks_the_file_while_other_threads_use_the_store() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    let mut seq = 0;
    for b in 0..40 {
        ingest_runs(&s, "agent-1", &mut seq, "w", b * 50, 50);
    }
    apply_all(&s, &policy(None, Some(100), 500), i64::MAX / 2);
    let s = std::sync::Arc::new(s);
    // Readers and a writer keep going while the store compacts: they wait, none fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..3 {
        let (s, stop) = (s.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            let mut seq = 1_000_000 * (w + 1);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if w == 0 {
                    ingest_runs(&s, "agent-1", &mut seq, "x", 5_000_000 + n as i64 * 10, 1);
                } else {
                    assert!(!s.runs(&RunQuery::default()).unwrap().is_empty());
                }
                n += 1;
            }
            n
        }));
    }
    let (before, after) = s.compact().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
    assert!(
        after < before,
        "compaction freed nothing: {before} -> {after}"
    );
    // The store reads and writes as before.
    assert!(s.runs(&RunQuery::default()).unwrap().len() >= 100);
    ingest_runs(&s, "agent-1", &mut seq, "w", 9_000_000, 1);
}
