//! Runs: listing, one run, cancel, log fetch.

use std::sync::Arc;

use outpost_common::proto::Command;
use outpost_common::record::{RunRecord, TaskInstanceRecord};

use super::{CommandOutcome, EventKind, OpError, OpResult, blocking};
use crate::hub::{Hub, now_ms};
use crate::store::{HubRun, RunCursor, RunQuery};

impl Hub {
    /// Runs matching `query`, newest first; with `failed_tasks`, only runs with a failed task
    /// (whatever their state: a run that succeeded past a failed task included).
    pub fn runs(&self, query: &RunQuery, failed_tasks: bool) -> OpResult<Vec<HubRun>> {
        // `--agent` takes a name too.
        let resolved;
        let query = match query
            .agent
            .as_deref()
            .map(|a| self.store().resolve_agent(a))
        {
            Some(Ok(id)) => {
                resolved = RunQuery {
                    agent: Some(id),
                    ..query.clone()
                };
                &resolved
            }
            _ => query,
        };
        if !failed_tasks {
            return Ok(self.store().runs(query)?);
        }
        // Newest first, a chunk at a time (each from where the last ended), until enough are
        // kept: the cost follows how rare such runs are, not how many the store holds.
        const CHUNK: usize = 500;
        let mut chunk_query = RunQuery {
            limit: CHUNK,
            ..query.clone()
        };
        let mut kept = Vec::new();
        loop {
            let chunk = self.store().runs(&chunk_query)?;
            let last = chunk.last().map(|r| RunCursor {
                created_ms: r.record.created_ms,
                agent: r.agent_id.clone(),
                run_id: r.record.run_id.clone(),
            });
            let full = chunk.len() == CHUNK;
            for r in chunk {
                if kept.len() >= query.limit {
                    return Ok(kept);
                }
                if self
                    .store()
                    .run_had_failed_task(&r.agent_id, &r.record.run_id)?
                {
                    kept.push(r);
                }
            }
            match last {
                Some(c) if full && kept.len() < query.limit => chunk_query.before = Some(c),
                _ => return Ok(kept),
            }
        }
    }

    /// Which agent's run `run_id` means: the given one, or the only agent that has it.
    pub fn run_agent(&self, run_id: &str, agent: Option<String>) -> OpResult<String> {
        let agent = agent.map(|a| self.store().resolve_agent(&a).unwrap_or(a));
        let agents = self.store().run_agents(run_id)?;
        match agent {
            Some(a) if agents.contains(&a) => Ok(a),
            Some(a) => Err(OpError::NotFound(format!(
                "run {run_id} not found on agent {a}"
            ))),
            None => match agents.as_slice() {
                [] => Err(OpError::NotFound(format!("run {run_id} not found"))),
                [one] => Ok(one.clone()),
                many => Err(OpError::Conflict(format!(
                    "run id {run_id} exists on several agents ({}); pass --agent",
                    many.join(", ")
                ))),
            },
        }
    }

    /// One run with its task instances, and the agent it ran on.
    pub fn run(
        &self,
        run_id: &str,
        agent: Option<String>,
    ) -> OpResult<(String, RunRecord, Vec<TaskInstanceRecord>)> {
        let agent = self.run_agent(run_id, agent)?;
        let (run, tasks) = self
            .store()
            .run(&agent, run_id)?
            .ok_or_else(|| OpError::NotFound(format!("run {run_id} not found")))?;
        Ok((agent, run, tasks))
    }

    /// `run cancel`: cancel a run on the agent that has it (connected agents only; commands are
    /// not queued). Audited before it is sent.
    pub async fn cancel_run(
        self: &Arc<Self>,
        actor: &str,
        run_id: &str,
        agent: Option<String>,
    ) -> OpResult<CommandOutcome> {
        let (hub, a, rid) = (self.clone(), actor.to_string(), run_id.to_string());
        let agent = blocking(move || {
            let agent = hub.run_agent(&rid, agent)?;
            let detail = format!("agent={agent}");
            hub.store()
                .audit(&a, "run.cancel", &rid, &detail, now_ms())?;
            Ok(agent)
        })
        .await?;
        if !self.gateway().is_connected(&agent) {
            return Err(OpError::Conflict(format!(
                "agent {agent} is not connected; not cancelled (commands are not queued)"
            )));
        }
        let r = self
            .gateway()
            .send_command(
                &agent,
                Command::Cancel {
                    run_id: run_id.to_string(),
                },
            )
            .await?;
        self.emit(
            actor,
            EventKind::RunCancelled {
                agent: agent.clone(),
                run_id: run_id.to_string(),
                ok: r.ok,
            },
        );
        Ok(CommandOutcome {
            agent,
            ok: r.ok,
            run_id: Some(run_id.to_string()),
            message: r.message,
        })
    }

    /// `run logs`: a task's log, fetched from the agent on demand (audited).
    pub async fn fetch_log(
        self: &Arc<Self>,
        actor: &str,
        run_id: &str,
        task: &str,
        agent: Option<String>,
        attempt: Option<u32>,
    ) -> OpResult<Vec<u8>> {
        self.fetch_log_audited(actor, run_id, task, agent, attempt, true)
            .await
    }

    /// [`Hub::fetch_log`], audited only when `audit` (a log followed live is fetched every
    /// second: the console audits the first fetch and then one every few minutes, see
    /// `console/runs.rs`).
    pub async fn fetch_log_audited(
        self: &Arc<Self>,
        actor: &str,
        run_id: &str,
        task: &str,
        agent: Option<String>,
        attempt: Option<u32>,
        audit: bool,
    ) -> OpResult<Vec<u8>> {
        let (hub, a, rid, t) = (
            self.clone(),
            actor.to_string(),
            run_id.to_string(),
            task.to_string(),
        );
        let agent = blocking(move || {
            let agent = hub.run_agent(&rid, agent)?;
            if audit {
                let detail = format!("task={t} agent={agent}");
                hub.store().audit(&a, "run.logs", &rid, &detail, now_ms())?;
            }
            Ok(agent)
        })
        .await?;
        if !self.gateway().is_connected(&agent) {
            return Err(OpError::Conflict(format!(
                "agent {agent} is not connected; logs are fetched from the agent on demand, try \
                 again when it is online"
            )));
        }
        let reply = self
            .gateway()
            .send_command(
                &agent,
                Command::FetchLog {
                    run_id: run_id.to_string(),
                    task: task.to_string(),
                    attempt,
                },
            )
            .await?;
        if !reply.ok {
            return Err(OpError::NotFound(reply.message));
        }
        self.emit(
            actor,
            EventKind::RunLogFetched {
                agent,
                run_id: run_id.to_string(),
                task: task.to_string(),
            },
        );
        Ok(reply.data)
    }
}
