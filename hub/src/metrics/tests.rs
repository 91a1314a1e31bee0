use super::*;
use outpost_common::proto::AgentTelemetry;
use outpost_common::record::RunState;

fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        labels: vec![],
        enrolled_ms: 0,
        cert_serial: String::new(),
        cert_fingerprint: String::new(),
        revoked_ms: None,
        last_seen_ms: Some(1_000),
        software_version: String::new(),
        active: vec![],
        committed_seq: 0,
        hostname: String::new(),
        cert_not_after_ms: None,
        previous_cert_fingerprint: None,
        pinned_roots: None,
        clock_offset: Some((-1500, 1_000)),
        telemetry: Some((
            AgentTelemetry {
                at_ms: 1_000,
                outbox_pending: 7,
                queue_depth: 2,
                running: 1,
                store_bytes: 4096,
                disk_free_bytes: 10,
                disk_total_bytes: 100,
                max_lateness_ms: 250,
                runs_started: 3,
            },
            1_000,
        )),
        name: None,
        decommissioned_ms: None,
    }
}

fn run(state: RunState) -> RunRecord {
    RunRecord {
        run_id: "r-1".into(),
        workflow: "etl".into(),
        version: 1,
        kind: RunKind::Scheduled,
        scheduled_ms: 10_000,
        state,
        params: vec![],
        created_ms: 10_000,
        started_ms: Some(10_500),
        ended_ms: Some(13_500),
        agent_id: Some("agent-a".into()),
        skip_reason: None,
    }
}

/// The value of the sample `line_start` (name and labels as written), if present.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn counters_histograms_and_agent_figures_are_exposed_under_their_names() {
    let m = HubMetrics::default();
    m.run_finished(&run(RunState::Failed), "line-a");
    m.run_finished(&run(RunState::Failed), "line-a");
    m.run_finished(&run(RunState::Succeeded), "line-a");
    m.ingested("run");
    m.alert_delivery("ops-hook", "delivered");
    m.alert_delivery("ops-hook", "failed");
    let snap = Snapshot {
        store: Default::default(),
        leader: crate::metrics::LeaderFigures {
            acting: Some(7),
            terms: 2,
            refused: 1,
        },
        now_ms: 61_000,
        agents: vec![agent("agent-a"), agent("agent-b")],
        connected: ["agent-a".to_string()].into_iter().collect(),
        per_agent_limit: 10,
        rollouts_by_state: [("active".to_string(), 1)].into_iter().collect(),
        active_rollouts: vec![RolloutFigure {
            id: "ro-3".into(),
            workflow: "etl".into(),
            pool: "line-a".into(),
            phase: "baking".into(),
            step: 1,
            steps: 3,
        }],
    };
    let t = m.render(&snap);
    assert!(t.ends_with("# EOF\n"), "{t}");
    let want = [
        (
            r#"outpost_runs_total{workflow="etl",pool="line-a",state="failed"}"#,
            2.0,
        ),
        (
            r#"outpost_runs_total{workflow="etl",pool="line-a",state="succeeded"}"#,
            1.0,
        ),
        (r#"outpost_run_duration_seconds_count{workflow="etl"}"#, 3.0),
        (r#"outpost_run_duration_seconds_sum{workflow="etl"}"#, 9.0),
        (
            r#"outpost_run_start_lateness_seconds_bucket{le="0.5",workflow="etl"}"#,
            3.0,
        ),
        (r#"outpost_ingest_events_total{kind="run"}"#, 1.0),
        (
            r#"outpost_alert_deliveries_total{channel="ops-hook",outcome="delivered"}"#,
            1.0,
        ),
        (
            r#"outpost_alert_deliveries_total{channel="ops-hook",outcome="failed"}"#,
            1.0,
        ),
        (r#"outpost_agents{state="online"}"#, 1.0),
        ("outpost_hub_leader", 1.0),
        ("outpost_hub_leader_epoch", 7.0),
        ("outpost_hub_leader_terms_total", 2.0),
        ("outpost_hub_fenced_writes_refused_total", 1.0),
        (r#"outpost_agents{state="offline"}"#, 1.0),
        (r#"outpost_agents{state="revoked"}"#, 0.0),
        (
            r#"outpost_agent_last_contact_seconds{agent="agent-a"}"#,
            0.0,
        ),
        (
            r#"outpost_agent_last_contact_seconds{agent="agent-b"}"#,
            60.0,
        ),
        (r#"outpost_agent_outbox_pending{agent="agent-b"}"#, 7.0),
        (r#"outpost_agent_queue_depth{agent="agent-b"}"#, 2.0),
        (r#"outpost_agent_store_bytes{agent="agent-b"}"#, 4096.0),
        (r#"outpost_agent_disk_free_bytes{agent="agent-b"}"#, 10.0),
        (
            r#"outpost_agent_clock_offset_seconds{agent="agent-b"}"#,
            -1.5,
        ),
        (
            r#"outpost_agent_start_lateness_max_seconds{agent="agent-b"}"#,
            0.25,
        ),
        (r#"outpost_fleet_outbox_pending"#, 14.0),
        (r#"outpost_agents_unlisted"#, 0.0),
        (r#"outpost_rollouts{state="active"}"#, 1.0),
        (
            r#"outpost_rollout_step{rollout="ro-3",workflow="etl",pool="line-a",phase="baking"}"#,
            1.0,
        ),
        (
            r#"outpost_rollout_steps{rollout="ro-3",workflow="etl",pool="line-a"}"#,
            3.0,
        ),
        (r#"outpost_firings_missed_total"#, 0.0),
        (r#"outpost_firings_unknown"#, 0.0),
    ];
    for (name, v) in want {
        assert_eq!(sample(&t, name), Some(v), "{name} in\n{t}");
    }
    assert!(!t.contains("r-1"), "a run id became a label:\n{t}");
}

#[test]
fn per_agent_series_stop_at_the_limit_and_the_rest_are_counted() {
    let m = HubMetrics::default();
    let mut revoked = agent("agent-0");
    revoked.revoked_ms = Some(5);
    let snap = Snapshot {
        store: Default::default(),
        now_ms: 2_000,
        agents: vec![
            agent("agent-c"),
            agent("agent-a"),
            agent("agent-b"),
            revoked,
        ],
        per_agent_limit: 2,
        ..Snapshot::default()
    };
    let t = m.render(&snap);
    assert!(t.contains(r#"outpost_agent_outbox_pending{agent="agent-a"}"#));
    assert!(t.contains(r#"outpost_agent_outbox_pending{agent="agent-b"}"#));
    assert!(!t.contains(r#"agent="agent-c""#), "{t}");
    assert!(!t.contains(r#"agent="agent-0""#), "{t}");
    assert_eq!(sample(&t, "outpost_agents_unlisted"), Some(1.0));
    assert_eq!(sample(&t, r#"outpost_agents{state="revoked"}"#), Some(1.0));
    // Every non-revoked agent's backlog counts in the fleet total, listed or not.
    assert_eq!(sample(&t, "outpost_fleet_outbox_pending"), Some(21.0));
}

#[test]
fn missed_firings_are_counted_as_judged_and_unknown_ones_are_a_gauge() {
    let m = HubMetrics::default();
    let snap = Snapshot::default();
    // Two cut-off agents' firings are open after the watch's evaluation.
    m.set_firings_unknown(2);
    m.firings_missed(1);
    let t = m.render(&snap);
    assert_eq!(sample(&t, "outpost_firings_missed_total"), Some(1.0));
    assert_eq!(sample(&t, "outpost_firings_unknown"), Some(2.0));
    // Scraping again counts nothing twice; the watch's next judgements add up.
    let t = m.render(&snap);
    assert_eq!(sample(&t, "outpost_firings_missed_total"), Some(1.0));
    m.firings_missed(2);
    let t = m.render(&snap);
    assert_eq!(sample(&t, "outpost_firings_missed_total"), Some(3.0));
}

#[test]
fn counts_between_scrapes_are_all_seen() {
    let m = HubMetrics::default();
    let snap = Snapshot::default();
    m.ingested("task");
    let _ = m.render(&snap);
    m.ingested("task");
    m.ingested("task");
    let t = m.render(&snap);
    assert_eq!(
        sample(&t, r#"outpost_ingest_events_total{kind="task"}"#),
        Some(3.0)
    );
}

#[test]
fn the_classic_format_names_counters_with_total_and_drops_openmetrics_only_lines() {
    let m = HubMetrics::default();
    m.ingested("run");
    let om = m.render(&Snapshot::default());
    let c = classic_text(&om);
    assert!(
        c.contains("# HELP outpost_ingest_events_total Outbox entries"),
        "{c}"
    );
    assert!(
        c.contains("# TYPE outpost_ingest_events_total counter"),
        "{c}"
    );
    assert!(
        c.contains("outpost_ingest_events_total{kind=\"run\"} 1"),
        "{c}"
    );
    assert!(
        c.contains("# TYPE outpost_run_duration_seconds histogram"),
        "{c}"
    );
    assert!(c.contains("# TYPE outpost_agents gauge"), "{c}");
    assert!(!c.contains("# EOF") && !c.contains("# UNIT"), "{c}");
    assert!(wants_openmetrics(Some(
        "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )));
    assert!(!wants_openmetrics(Some("*/*")));
    assert!(!wants_openmetrics(None));
}

#[test]
fn a_family_without_series_is_still_described() {
    let t = HubMetrics::default().render(&Snapshot::default());
    for d in [
        "# TYPE outpost_alert_deliveries counter",
        "# TYPE outpost_runs counter",
        "# TYPE outpost_run_duration_seconds histogram",
        "# UNIT outpost_run_duration_seconds seconds",
        "# TYPE outpost_rollout_step gauge",
        "# TYPE outpost_agent_outbox_pending gauge",
        "# TYPE outpost_agent_missed_firings counter",
    ] {
        assert!(t.contains(d), "{d} in\n{t}");
    }
    assert_eq!(
        sample(&t, r#"outpost_rollouts{state="rolled_back"}"#),
        Some(0.0)
    );
    let c = classic_text(&t);
    assert!(
        c.contains("# TYPE outpost_alert_deliveries_total counter"),
        "{c}"
    );
}
