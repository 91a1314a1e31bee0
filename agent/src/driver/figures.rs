//! The agent's own figures, reported to the hub over the session
//! ([`outpost_common::proto::AgentTelemetry`]) and shown in the hub's `/metrics`: outbox
//! backlog, ready queue, running attempts, store size, free disk, and the start lateness of the
//! runs started since the previous report.

use std::collections::HashSet;

use outpost_common::proto::AgentTelemetry;
use outpost_common::record::{RunId, RunKind, StatusEvent};

use prometheus_client::metrics::histogram::Histogram;

use super::Driver;
use crate::disk::FreeSpace as _;

/// Buckets (seconds) of the start lateness histogram of the agent's own `/metrics`: 10 ms to
/// 10 min, as the hub's `outpost_run_start_lateness_seconds`.
const LATENESS_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 600.0,
];

/// Run starts seen in the records the engine commits: since the last report (the hub's
/// telemetry), and cumulative since the agent started (the agent's own `/metrics`, which must not
/// reset the report's window).
#[derive(Debug)]
pub(super) struct StartFigures {
    /// Active runs already counted as started.
    started: HashSet<RunId>,
    max_lateness_ms: u64,
    runs_started: u64,
    /// Start lateness of every scheduled or catch-up run started since the agent started.
    lateness: Histogram,
}

impl Default for StartFigures {
    fn default() -> Self {
        StartFigures {
            started: HashSet::new(),
            max_lateness_ms: 0,
            runs_started: 0,
            lateness: Histogram::new(LATENESS_BUCKETS),
        }
    }
}

/// The agent's figures for its own `/metrics` (read without resetting the report's window).
#[derive(Debug, Clone)]
pub struct LocalFigures {
    /// The gauges now; `max_lateness_ms` and `runs_started` are the report window's so far.
    pub now: AgentTelemetry,
    /// Start lateness (seconds) of the runs started since the agent started (shared, cumulative).
    pub lateness: Histogram,
}

impl StartFigures {
    /// Note the run records of a batch the engine commits: a run's first record with a start
    /// counts once (its lateness, for a firing of the schedule); a finished run is forgotten.
    pub(super) fn note(&mut self, events: &[StatusEvent]) {
        for e in events {
            let StatusEvent::Run(r) = e else { continue };
            if let Some(start) = r.started_ms
                && !self.started.contains(&r.run_id)
            {
                self.runs_started += 1;
                if r.kind != RunKind::Manual {
                    let late = u64::try_from(start.saturating_sub(r.scheduled_ms)).unwrap_or(0);
                    self.max_lateness_ms = self.max_lateness_ms.max(late);
                    self.lateness.observe(late as f64 / 1000.0);
                }
                if !r.state.is_terminal() {
                    self.started.insert(r.run_id.clone());
                }
            } else if r.state.is_terminal() {
                self.started.remove(&r.run_id);
            }
        }
    }

    /// The figures since the last report, and start over.
    fn take(&mut self) -> (u64, u64) {
        let out = (self.max_lateness_ms, self.runs_started);
        self.max_lateness_ms = 0;
        self.runs_started = 0;
        out
    }
}

impl Driver {
    /// The agent's figures now (a figure that cannot be read is 0, and logged).
    pub(super) fn telemetry(&mut self) -> AgentTelemetry {
        let (max_lateness_ms, runs_started) = self.starts.take();
        self.figures_now(max_lateness_ms, runs_started)
    }

    /// The figures of the agent's own `/metrics`: as [`Driver::telemetry`], without resetting
    /// the report's window.
    pub(super) fn local_figures(&self) -> LocalFigures {
        LocalFigures {
            now: self.figures_now(self.starts.max_lateness_ms, self.starts.runs_started),
            lateness: self.starts.lateness.clone(),
        }
    }

    fn figures_now(&self, max_lateness_ms: u64, runs_started: u64) -> AgentTelemetry {
        let path = self.store.path().to_path_buf();
        let store_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let dir = path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let (disk_free_bytes, disk_total_bytes) = match crate::disk::Statvfs.space(&dir) {
            Ok(s) => (s.free, s.total),
            Err(e) => {
                tracing::debug!("reading free space of {}: {e}", dir.display());
                (0, 0)
            }
        };
        let outbox_pending = self.store.outbox_len().unwrap_or_else(|e| {
            tracing::debug!("reading the outbox length: {e}");
            0
        });
        AgentTelemetry {
            at_ms: self.clock.wall().timestamp_millis(),
            outbox_pending,
            queue_depth: self.engine.ready_count() as u64,
            running: self.procs.running() as u64,
            store_bytes,
            disk_free_bytes,
            disk_total_bytes,
            max_lateness_ms,
            runs_started,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_common::record::{RunRecord, RunState};

    fn run(id: &str, kind: RunKind, state: RunState, started: Option<i64>) -> StatusEvent {
        StatusEvent::Run(RunRecord {
            run_id: id.into(),
            workflow: "w".into(),
            version: 1,
            kind,
            scheduled_ms: 1_000,
            state,
            params: vec![],
            created_ms: 900,
            started_ms: started,
            ended_ms: None,
            agent_id: None,
            skip_reason: None,
        })
    }

    #[test]
    fn each_run_start_counts_once_with_its_lateness() {
        let mut f = StartFigures::default();
        f.note(&[run("a", RunKind::Scheduled, RunState::Queued, None)]);
        f.note(&[run("a", RunKind::Scheduled, RunState::Running, Some(1_250))]);
        f.note(&[run("a", RunKind::Scheduled, RunState::Running, Some(1_250))]);
        f.note(&[run("m", RunKind::Manual, RunState::Running, Some(9_000))]);
        assert_eq!(f.take(), (250, 2));
        assert_eq!(f.take(), (0, 0), "the next report starts over");
        let mut text = String::new();
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("l", "l", f.lateness.clone());
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("l_count 1\n") && text.contains("l_bucket{le=\"0.25\"} 1\n"),
            "the cumulative histogram keeps the scheduled start across reports: {text}"
        );
        f.note(&[run(
            "a",
            RunKind::Scheduled,
            RunState::Succeeded,
            Some(1_250),
        )]);
        assert_eq!(
            f.take(),
            (0, 0),
            "a finished run counted before is not counted again"
        );
        // Started and finished within one report interval.
        f.note(&[run("b", RunKind::Catchup, RunState::Failed, Some(1_100))]);
        assert_eq!(f.take(), (100, 1));
        // Only the manual run, still running, is remembered.
        assert_eq!(f.started, HashSet::from(["m".to_string()]));
    }
}
