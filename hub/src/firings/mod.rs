//! Missed and unknown firings: the hub knows each agent's schedules, versions and time zones, so
//! it can tell a firing that did not happen (the agent was connected and reported no run within
//! the grace period, or recorded the firing as missed: *missed*) from one it cannot judge yet
//! (the agent is cut off: *unknown* until it reports the run or its missed-firing record).
//!
//! [`watch`] is the sans-IO core; [`FiringWatcher`] drives it over the store, and [`drive`]
//! runs it on a timer beside the API.

pub mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use outpost_common::record::UnixMillis;
use outpost_common::schedule::Schedule;
use outpost_common::workflow::{self, Format, ValidateOptions};

pub use watch::FiringStatus;
use watch::{Change, Expected, Link, WatchConfig};

use crate::events::{EventKind, HUB_ACTOR};
use crate::hub::{Hub, now_ms};
use crate::ops::OpResult;

/// One expected firing with no run reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringFinding {
    pub agent: String,
    pub workflow: String,
    pub version: u64,
    /// The firing's scheduled instant.
    pub scheduled_ms: UnixMillis,
    pub status: FiringStatus,
    /// When the hub first listed it.
    pub since_ms: UnixMillis,
}

/// What one evaluation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evaluated {
    /// (agent, workflow) pairs looked at.
    pub watched: usize,
    /// Firings newly listed as missed, newly listed as unknown, and unknown ones reported since.
    pub missed: usize,
    pub unknown: usize,
    pub reported: usize,
}

impl Hub {
    /// The firings the last evaluation left open: missed ones (kept for a day) and unknown ones
    /// (until their agent reports), oldest first per agent and workflow. A firing reported
    /// since (a run, or the agent's missed-firing record) is not listed.
    pub fn firing_findings(&self) -> OpResult<Vec<FiringFinding>> {
        let mut out = Vec::new();
        for ((agent, workflow), st) in self.store().firing_watches()? {
            for o in st.open {
                out.push(FiringFinding {
                    agent: agent.clone(),
                    workflow: workflow.clone(),
                    version: o.version,
                    scheduled_ms: o.scheduled_ms,
                    status: o.status,
                    since_ms: o.since_ms,
                });
            }
        }
        Ok(out)
    }
}

/// Drives [`watch::step`] over every agent's active workflows, with the schedules it parsed
/// cached by (workflow, version).
pub struct FiringWatcher {
    cfg: WatchConfig,
    schedules: HashMap<(String, u64), Option<(Schedule, Tz)>>,
}

impl FiringWatcher {
    pub fn new(cfg: WatchConfig) -> FiringWatcher {
        FiringWatcher {
            cfg,
            schedules: HashMap::new(),
        }
    }

    /// The schedule of a stored version (`None`: unscheduled, or the hub cannot read it).
    fn schedule(&mut self, hub: &Hub, workflow: &str, version: u64) -> Option<&(Schedule, Tz)> {
        self.schedules
            .entry((workflow.to_string(), version))
            .or_insert_with(|| {
                let v = hub.store().version(workflow, Some(version)).ok()?;
                let format = if v.format == "toml" {
                    Format::Toml
                } else {
                    Format::Yaml
                };
                let text = std::str::from_utf8(&v.content).ok()?;
                let wf =
                    workflow::parse(workflow, text, format, &ValidateOptions::default()).ok()?;
                Some((wf.schedule?, wf.timezone))
            })
            .as_ref()
    }

    /// One evaluation at `now_ms`: every (agent, workflow) the agents report active and not
    /// paused is stepped, the changed watches committed in one transaction, and a domain event
    /// emitted per change.
    pub fn evaluate(&mut self, hub: &Hub, now_ms: UnixMillis) -> OpResult<Evaluated> {
        let cfg = self.cfg;
        let connected: HashMap<String, UnixMillis> = hub.connected().into_iter().collect();
        let mut states: HashMap<(String, String), watch::WatchState> =
            hub.store().firing_watches()?.into_iter().collect();
        let mut seen = HashSet::new();
        let mut changed = Vec::new();
        let mut events = Vec::new();
        let mut done = Evaluated::default();
        let mut unknown = 0u64;
        for agent in hub.store().agents()? {
            if agent.revoked_ms.is_some() {
                continue;
            }
            let link = connected
                .get(&agent.id)
                .map_or(Link::Disconnected, |&since_ms| Link::Connected { since_ms });
            for a in &agent.active {
                let key = (agent.id.clone(), a.workflow.clone());
                let expected = if a.paused {
                    None
                } else {
                    self.schedule(hub, &a.workflow, a.version)
                        .map(|(schedule, tz)| Expected {
                            schedule,
                            tz: *tz,
                            version: a.version,
                        })
                };
                let old = states.remove(&key);
                let span = watch::needed_span(old.as_ref(), expected.as_ref(), now_ms, &cfg);
                let reported = match span {
                    Some((start, end)) => {
                        hub.store()
                            .reported_firings(&agent.id, &a.workflow, start, end)?
                    }
                    None => watch::Reported::default(),
                };
                let (new, changes) =
                    watch::step(old.clone(), expected, &reported, link, now_ms, &cfg);
                done.watched += usize::from(new.is_some());
                for c in changes {
                    let (scheduled_ms, status) = match c {
                        Change::Missed { scheduled_ms, .. } => {
                            done.missed += 1;
                            (scheduled_ms, "missed")
                        }
                        Change::Unknown { scheduled_ms } => {
                            done.unknown += 1;
                            (scheduled_ms, "unknown")
                        }
                        Change::Reported { scheduled_ms } => {
                            done.reported += 1;
                            (scheduled_ms, "reported")
                        }
                    };
                    events.push(EventKind::FiringJudged {
                        agent: agent.id.clone(),
                        workflow: a.workflow.clone(),
                        version: a.version,
                        scheduled_ms,
                        status: status.to_string(),
                    });
                }
                if let Some(st) = &new {
                    unknown += st
                        .open
                        .iter()
                        .filter(|o| o.status == FiringStatus::Unknown)
                        .count() as u64;
                }
                if new != old {
                    changed.push((key.clone(), new));
                }
                seen.insert(key);
            }
        }
        // Watches of workflows no agent reports active any more end.
        for (key, _) in states {
            if !seen.contains(&key) {
                changed.push((key, None));
            }
        }
        hub.store().save_firing_watches(&changed)?;
        hub.metrics().firings_missed(done.missed as u64);
        hub.metrics().set_firings_unknown(unknown);
        for e in events {
            hub.emit(HUB_ACTOR, e);
        }
        Ok(done)
    }
}

/// How often the hub evaluates expected firings: a quarter of the grace period, between 1 s
/// and 15 s.
pub fn evaluate_every(cfg: &WatchConfig) -> Duration {
    Duration::from_millis(
        u64::try_from(cfg.grace_ms / 4)
            .unwrap_or(0)
            .clamp(1_000, 15_000),
    )
}

/// Evaluate expected firings every [`evaluate_every`] until `shutdown`.
pub async fn drive(
    hub: Arc<Hub>,
    cfg: WatchConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let watcher = Arc::new(std::sync::Mutex::new(FiringWatcher::new(cfg)));
    loop {
        let (h, w) = (hub.clone(), watcher.clone());
        let r = tokio::task::spawn_blocking(move || {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            w.evaluate(&h, now_ms())
        })
        .await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("missed-firing evaluation: {e}"),
            Err(e) => tracing::error!("missed-firing evaluation: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(evaluate_every(&cfg)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
