//! The hub's Prometheus metrics (`GET /metrics`, OpenMetrics text, `prometheus-client`).
//!
//! Two kinds of figures:
//! - counters and histograms updated where the thing happens ([`HubMetrics`]: runs finished,
//!   run duration and start lateness, ingested outbox entries, alert deliveries, firings found
//!   missed). They are atomics updated synchronously by the operation that commits (never from
//!   the lossy event broadcast), so no count is lost between two scrapes; they start at zero
//!   when the hub starts, as Prometheus counters do.
//! - gauges computed at scrape time from the store and the live sessions ([`Snapshot`]): agents
//!   by state, each agent's last contact and telemetry, rollouts, unknown firings.
//!
//! Cardinality is bounded: no run id label; per-agent series for at most
//! `[metrics] per_agent_limit` agents (in id order), the others counted in
//! `outpost_agents_unlisted`; workflow, pool, channel and rollout labels are bounded by what
//! operators configure.

use std::collections::{BTreeMap, HashSet};

use outpost_common::record::{OutboxEntry, RunKind, RunRecord, StatusEvent, UnixMillis};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::store::AgentRecord;

/// Default `[metrics] per_agent_limit`: agents with their own series.
pub const DEFAULT_PER_AGENT_LIMIT: usize = 500;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format ([`classic_text`]).
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scraper's `Accept` header asks for OpenMetrics (Prometheus does); others
/// (`curl`, `promtool check metrics`) get the classic text format.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition as
/// `prometheus-client` writes it: a counter family is named with its `_total` suffix (its
/// samples already are), and the `# UNIT` and `# EOF` lines, which the classic format does not
/// have, are left out. Samples are the same.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|r| r.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Buckets (seconds) of run durations: 1 s to about 4.5 h.
const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 14400.0,
];
/// Buckets (seconds) of start lateness: 10 ms to 10 min.
const LATENESS_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    workflow: String,
    pool: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowLabels {
    workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    rollout: String,
    workflow: String,
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutPhaseLabels {
    rollout: String,
    workflow: String,
    pool: String,
    phase: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn lateness_histogram() -> Histogram {
    Histogram::new(LATENESS_BUCKETS)
}

/// The hub's counters and histograms: updated by the operations as things happen, read at
/// scrape. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct HubMetrics {
    runs: Family<RunLabels, Counter>,
    run_duration: HistogramFamily<WorkflowLabels>,
    start_lateness: HistogramFamily<WorkflowLabels>,
    ingest_events: Family<KindLabels, Counter>,
    agent_missed_firings: Family<WorkflowLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    /// Firings the hub judged missed (counted by the firing watch when it judges them).
    firings_missed: Counter,
    /// Firings of cut-off agents open now (set by the firing watch after each evaluation).
    firings_unknown: Gauge,
}

impl Default for HubMetrics {
    fn default() -> Self {
        HubMetrics {
            runs: Family::default(),
            run_duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            start_lateness: Family::new_with_constructor(lateness_histogram as fn() -> Histogram),
            ingest_events: Family::default(),
            agent_missed_firings: Family::default(),
            deliveries: Family::default(),
            firings_missed: Counter::default(),
            firings_unknown: Gauge::default(),
        }
    }
}

impl HubMetrics {
    /// A run reached a terminal state (newly committed at ingest), in `pool` (the pool whose
    /// decision the agent follows for the workflow; `none` if no pool's does).
    pub fn run_finished(&self, run: &RunRecord, pool: &str) {
        self.runs
            .get_or_create(&RunLabels {
                workflow: run.workflow.clone(),
                pool: pool.to_string(),
                state: run.state.as_str().to_string(),
            })
            .inc();
        let wf = WorkflowLabels {
            workflow: run.workflow.clone(),
        };
        if let (Some(start), Some(end)) = (run.started_ms, run.ended_ms) {
            self.run_duration
                .get_or_create(&wf)
                .observe(end.saturating_sub(start).max(0) as f64 / 1000.0);
        }
        // Lateness means something for a firing of the schedule only (a manual run has no
        // scheduled instant of its own).
        if run.kind != RunKind::Manual
            && let Some(start) = run.started_ms
        {
            self.start_lateness
                .get_or_create(&wf)
                .observe(start.saturating_sub(run.scheduled_ms).max(0) as f64 / 1000.0);
        }
    }

    /// One outbox entry of `kind` (`run`, `task`, `missed`, `deadline`, `reverted`) was newly
    /// committed at ingest.
    pub fn ingested(&self, kind: &str) {
        self.ingest_events
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// An agent reported `count` firings of `workflow` that it did not run.
    pub fn agent_missed_firings(&self, workflow: &str, count: u64) {
        self.agent_missed_firings
            .get_or_create(&WorkflowLabels {
                workflow: workflow.to_string(),
            })
            .inc_by(count);
    }

    /// One delivery attempt of an alert notification to `channel` and its outcome: `delivered`,
    /// `retry` or `failed` (`outpost_alert_deliveries_total{channel,outcome}`).
    pub fn alert_delivery(&self, channel: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Firings newly judged missed by the firing watch.
    pub fn firings_missed(&self, n: u64) {
        self.firings_missed.inc_by(n);
    }

    /// The unknown firings the firing watch holds open after an evaluation.
    pub fn set_firings_unknown(&self, n: u64) {
        self.firings_unknown
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The exposition of these metrics and of `snap` (OpenMetrics text, ending `# EOF`).
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut reg = Registry::with_prefix("outpost");
        family(
            &mut reg,
            "runs",
            "Runs that reached a terminal state, by workflow, pool and state",
            None,
            MetricType::Counter,
            self.runs.clone(),
        );
        family(
            &mut reg,
            "run_duration",
            "Duration of finished runs (end minus start)",
            Some(Unit::Seconds),
            MetricType::Histogram,
            self.run_duration.clone(),
        );
        family(
            &mut reg,
            "run_start_lateness",
            "Start lateness of finished scheduled runs (actual start minus scheduled instant)",
            Some(Unit::Seconds),
            MetricType::Histogram,
            self.start_lateness.clone(),
        );
        family(
            &mut reg,
            "ingest_events",
            "Outbox entries committed at ingest, by kind",
            None,
            MetricType::Counter,
            self.ingest_events.clone(),
        );
        family(
            &mut reg,
            "agent_missed_firings",
            "Firings agents reported they did not run (agent stopped, catch-up policy, overlap)",
            None,
            MetricType::Counter,
            self.agent_missed_firings.clone(),
        );
        family(
            &mut reg,
            "alert_deliveries",
            "Alert notification deliveries, by channel and outcome (ok, failed)",
            None,
            MetricType::Counter,
            self.deliveries.clone(),
        );
        reg.register(
            "firings_missed",
            "Expected firings the hub found missed (a connected agent reported no run)",
            self.firings_missed.clone(),
        );
        reg.register(
            "firings_unknown",
            "Expected firings of cut-off agents the hub cannot judge yet",
            self.firings_unknown.clone(),
        );
        snap.register(&mut reg);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}

/// One active rollout as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutFigure {
    pub id: String,
    pub workflow: String,
    pub pool: String,
    /// `deploying`, `baking`, `awaiting_promote`, `paused`, `rolling_back`.
    pub phase: String,
    /// Current step (0 = canary).
    pub step: usize,
    /// Steps, canary included.
    pub steps: usize,
}

/// What the gauges are computed from at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Now (hub clock).
    pub now_ms: UnixMillis,
    /// Every agent.
    pub agents: Vec<AgentRecord>,
    /// The agents with a live session.
    pub connected: HashSet<String>,
    /// Agents with their own series (`[metrics] per_agent_limit`).
    pub per_agent_limit: usize,
    /// Rollouts by final state (`active`, `succeeded`, `rolled_back`, `aborted`).
    pub rollouts_by_state: BTreeMap<String, u64>,
    /// Active rollouts.
    pub active_rollouts: Vec<RolloutFigure>,
    /// The store's group commit counters since the hub started.
    pub store: crate::store::GroupStats,
    /// Leadership (HA mode; an embedded hub always leads with epoch 0).
    pub leader: LeaderFigures,
}

/// Leadership figures of a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaderFigures {
    /// The epoch this replica acts with now (`None`: not leading).
    pub acting: Option<i64>,
    /// Terms of leadership begun since start.
    pub terms: u64,
    /// Fenced writes etcd refused since start.
    pub refused: u64,
}

/// The final state of a rollout record's outcome text.
pub fn rollout_state(active: bool, outcome: Option<&str>) -> &'static str {
    match outcome {
        _ if active => "active",
        Some(o) if o.starts_with("succeeded") => "succeeded",
        Some(o) if o.starts_with("rolled back") => "rolled_back",
        Some(o) if o.starts_with("aborted") => "aborted",
        _ => "finished",
    }
}

/// The metric name of a rollout phase.
pub fn phase_name(phase: &outpost_rollout::Phase) -> &'static str {
    use outpost_rollout::Phase;
    match phase {
        Phase::Deploying { .. } => "deploying",
        Phase::Baking { .. } => "baking",
        Phase::AwaitingPromote { .. } => "awaiting_promote",
        Phase::Paused { .. } => "paused",
        Phase::RollingBack { .. } => "rolling_back",
        Phase::Succeeded => "succeeded",
        Phase::RolledBack { .. } => "rolled_back",
        Phase::Aborted => "aborted",
    }
}

/// A family that has no series yet still shows its HELP and TYPE: every metric the hub has
/// is in every scrape (dashboards and alert rules find the names), its series when it has some.
#[derive(Debug)]
struct Declared {
    name: String,
    help: String,
    unit: Option<Unit>,
    kind: MetricType,
}

impl Collector for Declared {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_descriptor(&self.name, &self.help, self.unit.as_ref(), self.kind)?;
        Ok(())
    }
}

/// Register `fam` (or, while it has no series, its descriptor).
fn family(
    reg: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    kind: MetricType,
    fam: impl Metric,
) {
    match (fam.is_empty(), unit) {
        (true, unit) => reg.register_collector(Box::new(Declared {
            name: name.to_string(),
            // As `Registry::register` writes help texts.
            help: format!("{help}."),
            unit,
            kind,
        })),
        (false, Some(u)) => reg.register_with_unit(name, help, u, fam),
        (false, None) => reg.register(name, help, fam),
    }
}

/// A per-agent gauge family (integer).
fn agent_gauge() -> Family<AgentLabels, Gauge> {
    Family::default()
}

/// A per-agent gauge family (floating point).
fn agent_gauge_f64() -> Family<AgentLabels, Gauge<f64, std::sync::atomic::AtomicU64>> {
    Family::default()
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Snapshot {
    fn register(&self, reg: &mut Registry) {
        let commits: Counter = Counter::default();
        commits.inc_by(self.store.commits);
        reg.register(
            "store_group_commits",
            "Durable store commits made for concurrent writers (status batches, assignments, deploy results, session records), each shared by a group of them",
            commits,
        );
        let writes: Counter = Counter::default();
        writes.inc_by(self.store.members);
        reg.register(
            "store_group_writes",
            "Writes those commits carried (divided by the commits: the mean group size)",
            writes,
        );
        let leader: Gauge = Gauge::default();
        leader.set(i64::from(self.leader.acting.is_some()));
        reg.register(
            "hub_leader",
            "1 while this replica acts as leader (runs rollouts, alert and missed-firing evaluation, retention); an embedded hub always does",
            leader,
        );
        let epoch: Gauge = Gauge::default();
        epoch.set(self.leader.acting.unwrap_or(0));
        reg.register(
            "hub_leader_epoch",
            "The epoch this replica leads with (its election key's revision in etcd; 0 when not leading or embedded)",
            epoch,
        );
        let terms: Counter = Counter::default();
        terms.inc_by(self.leader.terms);
        reg.register(
            "hub_leader_terms",
            "Terms of leadership this replica has begun (HA mode)",
            terms,
        );
        let refused: Counter = Counter::default();
        refused.inc_by(self.leader.refused);
        reg.register(
            "hub_fenced_writes_refused",
            "Writes as leader that etcd refused because another replica had been elected (this replica then stepped down)",
            refused,
        );
        let by_state: Family<StateLabels, Gauge> = Family::default();
        for s in ["online", "offline", "revoked"] {
            by_state
                .get_or_create(&StateLabels { state: s.into() })
                .set(0);
        }
        let last_contact = agent_gauge_f64();
        let pending = agent_gauge();
        let queue = agent_gauge();
        let running = agent_gauge();
        let store_bytes = agent_gauge();
        let disk_free = agent_gauge();
        let disk_total = agent_gauge();
        let offset = agent_gauge_f64();
        let lateness = agent_gauge_f64();
        let telemetry_age = agent_gauge_f64();
        let mut fleet_pending: u64 = 0;
        let mut listed = 0usize;
        let mut unlisted = 0i64;
        let mut ids: Vec<&AgentRecord> = self.agents.iter().collect();
        ids.sort_by(|a, b| a.id.cmp(&b.id));
        for a in ids {
            // Decommissioned agents are gone from the fleet: not even counted as revoked.
            if a.decommissioned_ms.is_some() {
                continue;
            }
            let online = self.connected.contains(&a.id);
            let state = match (a.revoked_ms.is_some(), online) {
                (true, _) => "revoked",
                (false, true) => "online",
                (false, false) => "offline",
            };
            by_state
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .inc();
            if a.revoked_ms.is_some() {
                continue;
            }
            if let Some((t, _)) = &a.telemetry {
                fleet_pending = fleet_pending.saturating_add(t.outbox_pending);
            }
            if listed >= self.per_agent_limit {
                unlisted += 1;
                continue;
            }
            listed += 1;
            let l = AgentLabels {
                agent: a.id.clone(),
            };
            let contact = if online {
                0.0
            } else {
                a.last_seen_ms
                    .map(|s| self.now_ms.saturating_sub(s).max(0) as f64 / 1000.0)
                    .unwrap_or(f64::NAN)
            };
            if !contact.is_nan() {
                last_contact.get_or_create(&l).set(contact);
            }
            if let Some((ms, _)) = a.clock_offset {
                offset.get_or_create(&l).set(ms as f64 / 1000.0);
            }
            if let Some((t, at)) = &a.telemetry {
                pending.get_or_create(&l).set(clamp_i64(t.outbox_pending));
                queue.get_or_create(&l).set(clamp_i64(t.queue_depth));
                running.get_or_create(&l).set(clamp_i64(t.running));
                store_bytes.get_or_create(&l).set(clamp_i64(t.store_bytes));
                disk_free
                    .get_or_create(&l)
                    .set(clamp_i64(t.disk_free_bytes));
                disk_total
                    .get_or_create(&l)
                    .set(clamp_i64(t.disk_total_bytes));
                lateness
                    .get_or_create(&l)
                    .set(t.max_lateness_ms as f64 / 1000.0);
                telemetry_age
                    .get_or_create(&l)
                    .set(self.now_ms.saturating_sub(*at).max(0) as f64 / 1000.0);
            }
        }
        reg.register("agents", "Agents by state", by_state);
        let unlisted_g: Gauge = Gauge::default();
        unlisted_g.set(unlisted);
        reg.register(
            "agents_unlisted",
            "Non-revoked agents beyond [metrics] per_agent_limit (no per-agent series)",
            unlisted_g,
        );
        let fleet: Gauge = Gauge::default();
        fleet.set(clamp_i64(fleet_pending));
        reg.register(
            "fleet_outbox_pending",
            "Outbox entries not yet acknowledged, summed over every agent's last report",
            fleet,
        );
        family(
            reg,
            "agent_last_contact",
            "Seconds since the agent was last heard from (0 while connected)",
            Some(Unit::Seconds),
            MetricType::Gauge,
            last_contact,
        );
        family(
            reg,
            "agent_outbox_pending",
            "Agent outbox entries not yet acknowledged by the hub (last report)",
            None,
            MetricType::Gauge,
            pending,
        );
        family(
            reg,
            "agent_queue_depth",
            "Agent tasks ready and waiting for a slot (last report)",
            None,
            MetricType::Gauge,
            queue,
        );
        family(
            reg,
            "agent_running_tasks",
            "Agent task attempts running (last report)",
            None,
            MetricType::Gauge,
            running,
        );
        family(
            reg,
            "agent_store",
            "Size of the agent's store file (last report)",
            Some(Unit::Bytes),
            MetricType::Gauge,
            store_bytes,
        );
        family(
            reg,
            "agent_disk_free",
            "Free space of the file system holding the agent's store (last report)",
            Some(Unit::Bytes),
            MetricType::Gauge,
            disk_free,
        );
        family(
            reg,
            "agent_disk_total",
            "Size of the file system holding the agent's store (last report)",
            Some(Unit::Bytes),
            MetricType::Gauge,
            disk_total,
        );
        family(
            reg,
            "agent_clock_offset",
            "Agent clock minus hub clock (last measurement)",
            Some(Unit::Seconds),
            MetricType::Gauge,
            offset,
        );
        family(
            reg,
            "agent_start_lateness_max",
            "Largest start lateness of the runs the agent started in its last report interval",
            Some(Unit::Seconds),
            MetricType::Gauge,
            lateness,
        );
        family(
            reg,
            "agent_telemetry_age",
            "Seconds since the agent's last telemetry report arrived",
            Some(Unit::Seconds),
            MetricType::Gauge,
            telemetry_age,
        );
        let rollouts: Family<StateLabels, Gauge> = Family::default();
        for s in ["active", "succeeded", "rolled_back", "aborted"] {
            rollouts
                .get_or_create(&StateLabels { state: s.into() })
                .set(0);
        }
        for (s, n) in &self.rollouts_by_state {
            rollouts
                .get_or_create(&StateLabels { state: s.clone() })
                .set(clamp_i64(*n));
        }
        family(
            reg,
            "rollouts",
            "Rollouts by state",
            None,
            MetricType::Gauge,
            rollouts,
        );
        let step: Family<RolloutPhaseLabels, Gauge> = Family::default();
        let steps: Family<RolloutLabels, Gauge> = Family::default();
        for r in &self.active_rollouts {
            step.get_or_create(&RolloutPhaseLabels {
                rollout: r.id.clone(),
                workflow: r.workflow.clone(),
                pool: r.pool.clone(),
                phase: r.phase.clone(),
            })
            .set(clamp_i64(r.step as u64));
            steps
                .get_or_create(&RolloutLabels {
                    rollout: r.id.clone(),
                    workflow: r.workflow.clone(),
                    pool: r.pool.clone(),
                })
                .set(clamp_i64(r.steps as u64));
        }
        family(
            reg,
            "rollout_step",
            "Current step of each active rollout (0 = canary), with its phase",
            None,
            MetricType::Gauge,
            step,
        );
        family(
            reg,
            "rollout_steps",
            "Steps of each active rollout, canary included",
            None,
            MetricType::Gauge,
            steps,
        );
    }
}

impl crate::hub::Hub {
    /// Count a batch of newly committed outbox entries of `agent_id` (called by the ingest
    /// operation after its commit): entries by kind, finished runs by workflow, pool and state.
    pub(crate) fn count_ingested(&self, agent_id: &str, fresh: &[&OutboxEntry]) {
        let m = self.metrics();
        let mut pools: Option<BTreeMap<String, String>> = None;
        for e in fresh {
            let kind = match &e.event {
                StatusEvent::Run(_) => "run",
                StatusEvent::Task(_) => "task",
                StatusEvent::Missed(_) => "missed",
                StatusEvent::Deadline(_) => "deadline",
                StatusEvent::Reverted(_) => "reverted",
            };
            m.ingested(kind);
            match &e.event {
                StatusEvent::Run(r) if r.state.is_terminal() => {
                    let pools = pools.get_or_insert_with(|| self.pools_of_agent(agent_id));
                    let pool = pools.get(&r.workflow).map_or("none", String::as_str);
                    m.run_finished(r, pool);
                }
                StatusEvent::Missed(f) => m.agent_missed_firings(&f.workflow, f.count),
                _ => {}
            }
        }
    }

    /// The pool whose decision `agent_id` follows, per workflow (empty if the store fails:
    /// the runs are then counted under pool `none`, never lost).
    fn pools_of_agent(&self, agent_id: &str) -> BTreeMap<String, String> {
        let read = || -> Result<BTreeMap<String, String>, crate::store::StoreError> {
            let agent = self.store().agent(agent_id)?;
            let pools = self.store().pools()?;
            let decisions = self.store().decisions()?;
            Ok(
                crate::hub::resolve_decisions(&agent.labels, &pools, &decisions)
                    .into_iter()
                    .map(|r| (r.workflow, r.pool))
                    .collect(),
            )
        };
        read().unwrap_or_default()
    }

    /// The `/metrics` exposition now: the counters, and the gauges computed from the store,
    /// the live sessions and the rollouts (the firing watch keeps its own figures up to date).
    pub fn metrics_text(&self) -> crate::ops::OpResult<String> {
        let now = crate::hub::now_ms();
        let agents = self.store().agents()?;
        let connected = self.connected().into_iter().map(|(id, _)| id).collect();
        let mut rollouts_by_state: BTreeMap<String, u64> = BTreeMap::new();
        let mut active_rollouts = Vec::new();
        for r in self.store().rollouts()? {
            *rollouts_by_state
                .entry(rollout_state(r.active, r.outcome.as_deref()).to_string())
                .or_default() += 1;
            if !r.active {
                continue;
            }
            // A rollout whose state cannot be read is left out of the step series (its count
            // above stands).
            if let Ok((status, _)) = self.rollout_status(&r) {
                active_rollouts.push(RolloutFigure {
                    id: r.id.clone(),
                    workflow: r.workflow.clone(),
                    pool: r.pool.clone(),
                    phase: phase_name(&status.phase).to_string(),
                    step: status.step,
                    steps: status.step_count,
                });
            }
        }
        let snap = Snapshot {
            now_ms: now,
            agents,
            connected,
            per_agent_limit: self.metrics_per_agent_limit,
            rollouts_by_state,
            active_rollouts,
            store: self.store().group_stats(),
            leader: {
                let (terms, refused) = self.leader().counters();
                LeaderFigures {
                    acting: self.leader().acting(),
                    terms,
                    refused,
                }
            },
        };
        Ok(self.metrics().render(&snap))
    }
}

#[cfg(test)]
mod tests;
