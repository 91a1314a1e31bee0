//! Control requests (the local socket's, and the hub's operator commands): answered from the
//! engine's live state and the store, after everything decided so far is durable.

use std::collections::HashMap;

use anyhow::Context as _;
use outpost_common::record::{RunRecord, TaskInstanceRecord};

use super::Driver;

impl Driver {
    pub(super) fn control(&mut self, req: crate::control::Request) -> crate::control::Response {
        use crate::control::{Request, Response};
        if let Some(stall) = self.store_stalled() {
            // The store cannot write (the committer retries): answer what can be answered now.
            return match req {
                Request::Status => match self.status() {
                    Ok(mut s) => {
                        s.disk_low = Some(format!(
                            "{stall}; retrying: no attempt starts until it succeeds"
                        ));
                        Response::Status(s)
                    }
                    Err(e) => Response::Error {
                        message: format!("{stall}; retrying ({e:#})"),
                    },
                },
                _ => Response::Error {
                    message: format!("{stall}; retrying: try again when it succeeds"),
                },
            };
        }
        // Answer from the store as of everything decided so far.
        if let Err(e) = self.flush() {
            return Response::Error {
                message: format!("{e:#}"),
            };
        }
        let r: anyhow::Result<Response> = (|| match req {
            Request::Status => Ok(Response::Status(self.status()?)),
            Request::Runs { workflow, limit } => {
                let runs = self.store.runs(crate::store::RunFilter {
                    workflow,
                    limit: limit.clamp(1, 10_000),
                    states: None,
                })?;
                Ok(Response::Runs {
                    runs: runs
                        .iter()
                        .map(|r| crate::views::RunView::new(r, &[]))
                        .collect(),
                })
            }
            Request::Show { run_id } => {
                let (r, t) = self.lookup_run(&run_id)?;
                Ok(Response::Run(crate::views::RunView::new(&r, &t)))
            }
            Request::Logs {
                run_id,
                task,
                attempt,
            } => {
                let (_, tasks) = self.lookup_run(&run_id)?;
                let t = tasks
                    .iter()
                    .find(|t| t.task_id == task)
                    .with_context(|| format!("run {run_id} has no task `{task}`"))?;
                let a = match attempt {
                    Some(n) => t
                        .attempts
                        .iter()
                        .find(|a| a.attempt == n)
                        .with_context(|| format!("task `{task}` has no attempt {n}"))?,
                    None => t
                        .attempts
                        .last()
                        .with_context(|| format!("task `{task}` has not started"))?,
                };
                let path = a
                    .log_path
                    .clone()
                    .with_context(|| format!("attempt {} has no log", a.attempt))?;
                Ok(Response::Log {
                    path,
                    attempt: a.attempt,
                    running: a.outcome.is_none(),
                })
            }
            Request::Trigger { workflow, params } => {
                if self.stopping {
                    anyhow::bail!("the agent is shutting down");
                }
                let run_id = self.trigger(&workflow, params)?;
                Ok(Response::Triggered { run_id })
            }
            Request::Pause { workflow } => {
                self.set_paused(&workflow, true)?;
                Ok(Response::Ok {
                    message: format!("paused {workflow}"),
                })
            }
            Request::Resume { workflow } => {
                self.set_paused(&workflow, false)?;
                Ok(Response::Ok {
                    message: format!("resumed {workflow}"),
                })
            }
            Request::Cancel { run_id } => {
                self.cancel(&run_id)?;
                Ok(Response::Ok {
                    message: format!("cancelling {run_id}"),
                })
            }
            // The daemon answers enrollment itself (daemon.rs); it never reaches the driver.
            Request::Enroll { .. } => anyhow::bail!("enrollment is not a driver request"),
            Request::Retry {
                run_id,
                task,
                downstream,
                if_ended_ms,
            } => {
                let sel = outpost_agent_core::rerun::RetrySelection { task, downstream };
                let message = self.retry(&run_id, sel, if_ended_ms)?;
                Ok(Response::Ok { message })
            }
            Request::Backfill {
                workflow,
                instants,
                max_active,
            } => {
                let message = self.backfill(&workflow, instants, max_active)?;
                Ok(Response::Ok { message })
            }
            Request::TriggerAt {
                workflow,
                params,
                at_ms,
            } => {
                let (run_id, _) = self.trigger_at(&workflow, params, at_ms)?;
                Ok(Response::Triggered { run_id })
            }
        })();
        r.unwrap_or_else(|e| Response::Error {
            message: format!("{e:#}"),
        })
    }

    pub(super) fn lookup_run(
        &self,
        run_id: &str,
    ) -> anyhow::Result<(RunRecord, Vec<TaskInstanceRecord>)> {
        if let Some(s) = self.engine.run_snapshot(run_id) {
            return Ok(s);
        }
        let r = self
            .store
            .run(run_id)?
            .with_context(|| format!("no run {run_id}"))?;
        let t = self.store.tasks(run_id)?;
        Ok((r, t))
    }

    /// The director view's freshness and the clock offset, for `status`.
    fn director_status(&self) -> anyhow::Result<Option<crate::control::DirectorStatus>> {
        let Some(view) = super::deploy_gate::director_view(&self.store)? else {
            return Ok(None);
        };
        let root_version = crate::identity::load_trust(&self.store)?
            .map(|t| t.version())
            .unwrap_or(0);
        let now = self.now().wall_ms();
        let until = chrono::DateTime::from_timestamp_millis(view.expires_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        Ok(Some(crate::control::DirectorStatus {
            stale: view.is_stale(now),
            fresh_until: until,
            clock_offset_ms: view.offset_ms(),
            root_version,
        }))
    }

    pub(super) fn status(&self) -> anyhow::Result<crate::control::StatusView> {
        let mut active: HashMap<&str, usize> = HashMap::new();
        for wf in self.runs.values() {
            *active.entry(wf.name.as_str()).or_default() += 1;
        }
        Ok(crate::control::StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            started: self.started.to_rfc3339(),
            // The store is `<state_dir>/agent.redb`.
            state_dir: self
                .store
                .path()
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            running_tasks: self.procs.running(),
            max_running: self.cfg.max_running,
            active_runs: self.runs.len(),
            outbox_pending: self.store.outbox_len()?,
            disk_low: self
                .cfg
                .disk_guard
                .as_ref()
                .filter(|g| g.is_low())
                .map(|g| g.describe()),
            director: self.director_status()?,
            hub_link: self.hub_link_status()?,
            workflows: self
                .catalog
                .iter()
                .map(|(name, l)| crate::control::WorkflowStatus {
                    name: name.clone(),
                    version: l.version,
                    schedule: l.wf.schedule.as_ref().map(|s| s.expr().to_string()),
                    paused: l.paused,
                    next_fire: l
                        .planner
                        .as_ref()
                        .and_then(|p| p.poll_timeout())
                        .map(|t| t.to_rfc3339()),
                    active_runs: active.get(name.as_str()).copied().unwrap_or(0),
                    origin: l.origin.clone(),
                })
                .collect(),
        })
    }

    /// The hub link to show itself in `status` (a daemon in hub mode).
    pub fn set_hub_link(&mut self, link: crate::hub_link::LinkState) {
        self.hub_link = Some(link);
    }

    /// The hub link as `status` shows it: connected since, last error, the outbox's pending
    /// entries and when the oldest of them happened. `None` without a hub.
    pub(super) fn hub_link_status(&self) -> anyhow::Result<Option<crate::control::HubLinkStatus>> {
        let Some(link) = &self.hub_link else {
            return Ok(None);
        };
        let info = link.lock().map(|l| l.clone()).unwrap_or_default();
        let oldest = self.store.outbox_after(0, 1)?;
        let rfc = outpost_common::record::rfc3339;
        Ok(Some(crate::control::HubLinkStatus {
            hub: info.hub,
            addresses: info.addresses,
            connected: info.connected_since_ms.is_some(),
            connected_since: info.connected_since_ms.map(rfc),
            last_error: info.last_error.as_ref().map(|(_, e)| e.clone()),
            last_error_at: info.last_error.as_ref().map(|(at, _)| rfc(*at)),
            outbox_pending: self.store.outbox_len()?,
            outbox_oldest_seq: oldest.first().map(|e| e.seq),
            outbox_oldest_at: oldest
                .first()
                .and_then(|e| crate::hub_link::event_ms(&e.event))
                .map(rfc),
        }))
    }
}
