//! Missed-versus-unknown firing detection through the real store and hub (no network): an
//! agent's runs go through `Hub::ingest` exactly as the QUIC driver feeds them, sessions are
//! registered in the real connection registry, and the watcher is turned with explicit times.
#![allow(clippy::unwrap_used)]

use outpost_common::proto::ActiveWorkflow;
use outpost_common::record::{
    MissedFirings, OutboxEntry, RunKind, RunRecord, RunState, StatusEvent, run_id,
};
use outpost_common::trust::{SigningKey, sign_release};
use outpost_hub::firings::watch::WatchConfig;
use outpost_hub::firings::{FiringStatus, FiringWatcher};
use outpost_hub::hub::now_ms;
use outpost_hub::ops::EventKind;
use outpost_hub::store::NewVersion;

const MIN: i64 = 60_000;
const WORKFLOW: &str =
    "name: etl\nschedule: \"* * * * *\"\ntasks:\n  a:\n    command: [\"true\"]\n";

mod common;
use common::{TestHub as H, open};

impl H {
    fn setup(&self, agents: &[&str]) {
        self.store
            .apply_version(
                NewVersion {
                    name: "etl".into(),
                    content: WORKFLOW.as_bytes().to_vec(),
                    format: "yaml".into(),
                    target: vec![],
                    origin: "t".into(),
                    applied_by: "op".into(),
                },
                now_ms(),
            )
            .unwrap();
        let p = self.store.pending("etl").unwrap().unwrap();
        let release = SigningKey::from_pkcs8(&self.keys.release).unwrap();
        let sig = sign_release(&release, &p.header_bytes);
        self.hub
            .release_sign("op", "etl", p.version, vec![sig])
            .unwrap();
        for id in agents {
            common::enroll(&self.store, id, vec![]);
            let active = vec![ActiveWorkflow {
                workflow: "etl".into(),
                version: 1,
                epoch: 1,
                paused: false,
                highest_version: None,
            }];
            self.hub.agent_connected(id, "0.1.0", active, 1).unwrap();
        }
    }

    /// Ingest one outbox entry per event, numbered after the agent's committed seq.
    fn report(&self, agent: &str, events: Vec<StatusEvent>) {
        let mut seq = self.store.agent(agent).unwrap().committed_seq;
        let entries: Vec<OutboxEntry> = events
            .into_iter()
            .map(|event| {
                seq += 1;
                OutboxEntry { seq, event }
            })
            .collect();
        self.hub.ingest(agent, &entries).unwrap();
    }

    fn findings(&self, agent: &str) -> Vec<(i64, FiringStatus)> {
        let mut f: Vec<_> = self
            .hub
            .firing_findings()
            .unwrap()
            .into_iter()
            .filter(|f| f.agent == agent)
            .map(|f| (f.scheduled_ms, f.status))
            .collect();
        f.sort_by_key(|x| x.0);
        f
    }
}

fn run(t: i64) -> StatusEvent {
    StatusEvent::Run(RunRecord {
        run_id: run_id("etl", 1, t, RunKind::Scheduled),
        workflow: "etl".into(),
        version: 1,
        kind: RunKind::Scheduled,
        scheduled_ms: t,
        state: RunState::Succeeded,
        params: vec![],
        created_ms: t,
        started_ms: Some(t),
        ended_ms: Some(t + 1_000),
        agent_id: None,
        skip_reason: None,
    })
}

fn cfg() -> WatchConfig {
    WatchConfig {
        grace_ms: 2 * MIN,
        ..WatchConfig::default()
    }
}

/// A connected agent that stops reporting has its firings listed as missed; a cut-off agent's
/// are unknown until it reports; when it does, the ones it ran clear, the ones it recorded as
/// missed are missed at once, and the rest become missed once it has been connected for the
/// grace period. Each judgement is one domain event, and the state survives a hub restart.
#[test]
fn missed_versus_unknown_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path(), None);
    h.setup(&["agent-on", "agent-cut"]);
    let t0 = (now_ms() / MIN) * MIN;
    // agent-on has been in a session for an hour; agent-cut has none.
    let _on = h.conns.register("agent-on", t0 - 60 * MIN);
    let mut events = h.hub.subscribe();
    let mut w = FiringWatcher::new(cfg());
    w.evaluate(&h.hub, t0).unwrap();
    assert!(
        h.hub.firing_findings().unwrap().is_empty(),
        "watching starts now"
    );

    // Firings t0+1m .. t0+5m come due by t0+7m. agent-on reports t0+1m and t0+2m only.
    h.report("agent-on", vec![run(t0 + MIN), run(t0 + 2 * MIN)]);
    let done = w.evaluate(&h.hub, t0 + 7 * MIN).unwrap();
    let missed: Vec<_> = [3, 4, 5]
        .iter()
        .map(|m| (t0 + m * MIN, FiringStatus::Missed))
        .collect();
    assert_eq!(h.findings("agent-on"), missed);
    let unknown: Vec<_> = (1..=5)
        .map(|m| (t0 + m * MIN, FiringStatus::Unknown))
        .collect();
    assert_eq!(h.findings("agent-cut"), unknown);
    assert_eq!((done.missed, done.unknown, done.reported), (3, 5, 0));
    let mut judged = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let EventKind::FiringJudged { agent, status, .. } = e.kind {
            judged.push((agent, status));
        }
    }
    assert_eq!(judged.len(), 8, "one event per judgement: {judged:?}");

    // The same evaluation again changes nothing, even by a new watcher after a hub restart.
    drop(w);
    let keys = h.keys.clone();
    drop(_on);
    drop(h);
    let h = open(dir.path(), Some(keys));
    let _on = h.conns.register("agent-on", t0 - 60 * MIN);
    let mut w = FiringWatcher::new(cfg());
    let again = w.evaluate(&h.hub, t0 + 7 * MIN).unwrap();
    assert_eq!((again.missed, again.unknown, again.reported), (0, 0, 0));
    assert_eq!(h.findings("agent-on"), missed);

    // agent-cut comes back at t0+8m: its backlog has runs for t0+1m and t0+4m, and a record
    // of t0+2m..t0+3m as missed (it was powered off).
    h.report(
        "agent-cut",
        vec![
            run(t0 + 4 * MIN),
            run(t0 + MIN),
            StatusEvent::Missed(MissedFirings {
                workflow: "etl".into(),
                count: 2,
                first_ms: t0 + 2 * MIN,
                last_ms: t0 + 3 * MIN,
                reason: "agent stopped".into(),
                recorded_ms: t0 + 8 * MIN,
            }),
        ],
    );
    let _cut = h.conns.register("agent-cut", t0 + 8 * MIN);
    let done = w.evaluate(&h.hub, t0 + 8 * MIN).unwrap();
    assert_eq!(done.reported, 2);
    let f = h.findings("agent-cut");
    assert!(
        !f.iter().any(|(t, _)| *t == t0 + MIN || *t == t0 + 4 * MIN),
        "{f:?}"
    );
    assert!(f.contains(&(t0 + 2 * MIN, FiringStatus::Missed)), "{f:?}");
    assert!(f.contains(&(t0 + 3 * MIN, FiringStatus::Missed)), "{f:?}");
    assert!(
        f.contains(&(t0 + 5 * MIN, FiringStatus::Unknown)),
        "connected < grace: {f:?}"
    );
    // Connected for the grace period: the rest are missed.
    w.evaluate(&h.hub, t0 + 10 * MIN).unwrap();
    let f = h.findings("agent-cut");
    assert!(f.iter().all(|(_, s)| *s == FiringStatus::Missed), "{f:?}");
    assert!(f.contains(&(t0 + 5 * MIN, FiringStatus::Missed)));
}

/// A paused workflow expects no firings: its watch ends and nothing is listed.
#[test]
fn paused_workflow_is_not_watched() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path(), None);
    h.setup(&["agent-p"]);
    let t0 = (now_ms() / MIN) * MIN;
    let _s = h.conns.register("agent-p", t0 - 60 * MIN);
    let mut w = FiringWatcher::new(cfg());
    w.evaluate(&h.hub, t0).unwrap();
    w.evaluate(&h.hub, t0 + 5 * MIN).unwrap();
    assert!(!h.findings("agent-p").is_empty());
    let paused = vec![ActiveWorkflow {
        workflow: "etl".into(),
        version: 1,
        epoch: 1,
        paused: true,
        highest_version: None,
    }];
    h.hub
        .agent_connected("agent-p", "0.1.0", paused, 1)
        .unwrap();
    w.evaluate(&h.hub, t0 + 10 * MIN).unwrap();
    assert!(h.findings("agent-p").is_empty());
}
