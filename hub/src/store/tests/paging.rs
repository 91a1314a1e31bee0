//! Paging the run listing from a cursor ([`RunQuery::before`]).

use super::*;

/// Every page of `q` (`limit` a page), each from the last row of the one before.
fn pages(s: &Store, q: &RunQuery) -> Vec<Vec<(i64, String, String)>> {
    let mut out = Vec::new();
    let mut q = q.clone();
    loop {
        let page: Vec<(i64, String, String)> = s
            .runs(&q)
            .unwrap()
            .into_iter()
            .map(|r| (r.record.created_ms, r.agent_id, r.record.run_id))
            .collect();
        let Some(last) = page.last().cloned() else {
            break;
        };
        out.push(page);
        q.before = Some(RunCursor {
            created_ms: last.0,
            agent: last.1,
            run_id: last.2,
        });
    }
    out
}

#[test]
fn pages_from_a_cursor_cover_the_listing_once_in_order() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    enrolled(&s, "agent-2");
    // Runs sharing creation times across agents and within one agent.
    for (agent, ids) in [
        (
            "agent-1",
            [("a", 100), ("b", 100), ("c", 200), ("d", 300), ("e", 300)],
        ),
        (
            "agent-2",
            [("a", 100), ("b", 200), ("c", 200), ("d", 300), ("x", 400)],
        ),
    ] {
        let batch: Vec<OutboxEntry> = ids
            .iter()
            .enumerate()
            .map(|(i, (id, t))| {
                entry(
                    i as u64 + 1,
                    StatusEvent::Run(run(id, *t, RunState::Succeeded)),
                )
            })
            .collect();
        s.ingest(agent, &batch).unwrap();
    }
    let all: Vec<(i64, String, String)> = s
        .runs(&RunQuery::default())
        .unwrap()
        .into_iter()
        .map(|r| (r.record.created_ms, r.agent_id, r.record.run_id))
        .collect();
    assert_eq!(all.len(), 10);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(all, sorted, "newest first, then agent and run id");
    for limit in [1, 3, 4] {
        let p = pages(
            &s,
            &RunQuery {
                limit,
                ..RunQuery::default()
            },
        );
        assert!(p.iter().all(|page| page.len() <= limit));
        assert_eq!(p.concat(), all, "limit {limit}");
    }
    // The agent-and-workflow index pages the same way.
    let of_1: Vec<(i64, String, String)> =
        all.iter().filter(|r| r.1 == "agent-1").cloned().collect();
    for limit in [1, 2] {
        let q = RunQuery {
            agent: Some("agent-1".into()),
            workflow: Some("w".into()),
            limit,
            ..RunQuery::default()
        };
        assert_eq!(pages(&s, &q).concat(), of_1, "limit {limit}");
    }
    // A cursor before `since` ends the listing; one past everything starts it.
    let q = RunQuery {
        since_ms: Some(250),
        before: Some(RunCursor {
            created_ms: 200,
            agent: "agent-2".into(),
            run_id: "z".into(),
        }),
        ..RunQuery::default()
    };
    assert!(s.runs(&q).unwrap().is_empty());
    let q = RunQuery {
        before: Some(RunCursor {
            created_ms: i64::MAX,
            agent: String::new(),
            run_id: String::new(),
        }),
        ..RunQuery::default()
    };
    assert_eq!(s.runs(&q).unwrap().len(), 10);
    let q = RunQuery {
        agent: Some("agent-1".into()),
        workflow: Some("w".into()),
        before: Some(RunCursor {
            created_ms: i64::MAX,
            agent: String::new(),
            run_id: String::new(),
        }),
        ..RunQuery::default()
    };
    assert_eq!(s.runs(&q).unwrap().len(), 5);
}

/// A run reported again (running, then succeeded) is one run in every listing, with its last
/// state; a run whose creation time changes moves in the time-ordered indexes.
#[test]
fn an_updated_run_is_listed_once_in_every_index_with_its_last_state() {
    let (_d, s) = open();
    enrolled(&s, "agent-1");
    let mut seq = 0;
    let mut send = |r: RunRecord| {
        seq += 1;
        s.ingest("agent-1", &[entry(seq, StatusEvent::Run(r))])
            .unwrap();
    };
    send(run("a", 100, RunState::Running));
    send(run("a", 100, RunState::Succeeded));
    send(run("b", 200, RunState::Running));
    send(run("b", 300, RunState::Failed));
    let listed = |q: RunQuery| -> Vec<(i64, String, RunState)> {
        s.runs(&q)
            .unwrap()
            .into_iter()
            .map(|r| (r.record.created_ms, r.record.run_id, r.record.state))
            .collect()
    };
    let want = vec![
        (300, "b".to_string(), RunState::Failed),
        (100, "a".to_string(), RunState::Succeeded),
    ];
    assert_eq!(listed(RunQuery::default()), want, "by creation time");
    let wf = run("a", 0, RunState::Running).workflow;
    assert_eq!(
        listed(RunQuery {
            agent: Some("agent-1".into()),
            workflow: Some(wf),
            ..RunQuery::default()
        }),
        want,
        "by agent and workflow"
    );
    assert_eq!(
        listed(RunQuery {
            since_ms: Some(250),
            ..RunQuery::default()
        }),
        want[..1].to_vec(),
        "the moved run is found at its new time only"
    );
}
