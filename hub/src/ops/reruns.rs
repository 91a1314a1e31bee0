//! Runs again and runs for the past: `run retry`, `workflow backfill`, `workflow trigger --at`.
//! Each is a command to connected agents (commands are not queued: an offline agent is
//! reported), audited before it is sent. The agents do the durable part (docs/operations.md).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use outpost_common::proto::Command;
use outpost_common::record::RunState;
use outpost_common::workflow::{self, Format, ValidateOptions};

use super::{CommandOutcome, OpError, OpResult, blocking};
use crate::gateway::GatewayError;
use crate::hub::{Hub, now_ms};

/// At most this many instants in one backfill.
pub const MAX_BACKFILL_INSTANTS: usize = 10_000;

/// What `workflow backfill` asks for.
#[derive(Debug, Clone)]
pub struct BackfillPlan {
    /// The window's start (inclusive).
    pub from: DateTime<Utc>,
    /// The window's end (exclusive).
    pub to: DateTime<Utc>,
    /// Only the members of this pool that hold the workflow.
    pub pool: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// At most this many backfill runs at once on each agent.
    pub max_active: u32,
    /// List the instants and targets only.
    pub dry_run: bool,
}

/// What `workflow backfill` did: the instants (in order), then one outcome per target agent
/// (none with `dry_run`; `targets` names them).
#[derive(Debug, Clone)]
pub struct BackfillOutcome {
    pub instants: Vec<DateTime<Utc>>,
    pub targets: Vec<String>,
    pub results: Vec<CommandOutcome>,
}

impl Hub {
    /// `run retry`: reopen a finished run on its agent and run its failed tasks (or `task`,
    /// with `downstream` its dependents) again as new attempts. The command carries the run's
    /// end time as the hub knows it: an agent whose run ended otherwise (retried meanwhile)
    /// refuses, so a repeated request does not retry twice.
    pub async fn retry_run(
        self: &Arc<Self>,
        actor: &str,
        run_id: &str,
        agent: Option<String>,
        task: Option<String>,
        downstream: bool,
    ) -> OpResult<CommandOutcome> {
        let (hub, a, rid, t) = (
            self.clone(),
            actor.to_string(),
            run_id.to_string(),
            task.clone(),
        );
        let (agent, ended_ms) = blocking(move || {
            let (agent, run, _) = hub.run(&rid, agent)?;
            if !run.state.is_terminal() || run.state == RunState::Skipped {
                return Err(OpError::Conflict(format!(
                    "run {rid} is {}: only a finished run that started can be retried",
                    run.state.as_str()
                )));
            }
            let detail = format!(
                "agent={agent} task={} downstream={downstream}",
                t.as_deref().unwrap_or("(failed)")
            );
            hub.store()
                .audit(&a, "run.retry", &rid, &detail, now_ms())?;
            Ok((agent, run.ended_ms))
        })
        .await?;
        let command = Command::Retry {
            run_id: run_id.to_string(),
            task,
            downstream,
            if_ended_ms: ended_ms,
        };
        Ok(self.command_to(agent, command, "retried").await)
    }

    /// `workflow trigger --at`: one manual run whose logical time is `at` on `agent`, else on
    /// every agent the workflow targets. Asking again returns the same run.
    pub async fn trigger_at(
        self: &Arc<Self>,
        actor: &str,
        name: &str,
        agent: Option<String>,
        params: Vec<(String, String)>,
        at: DateTime<Utc>,
    ) -> OpResult<Vec<CommandOutcome>> {
        if at > Utc::now() {
            return Err(OpError::Invalid(format!(
                "--at {}: not in the past",
                at.to_rfc3339()
            )));
        }
        let (hub, a, n, p) = (
            self.clone(),
            actor.to_string(),
            name.to_string(),
            params.clone(),
        );
        let targets = blocking(move || {
            hub.check_params_of(&n, &p)?;
            let detail = format!(
                "at={} agent={} params={}",
                at.to_rfc3339(),
                agent.as_deref().unwrap_or("(all)"),
                p.iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            hub.store()
                .audit(&a, "workflow.trigger_at", &n, &detail, now_ms())?;
            hub.targets_of(&n, agent.as_deref(), None)
        })
        .await?;
        let mut results = Vec::new();
        for agent in targets {
            let command = Command::TriggerAt {
                workflow: name.to_string(),
                params: params.clone(),
                at_ms: at.timestamp_millis(),
            };
            results.push(self.command_to(agent, command, "triggered").await);
        }
        Ok(results)
    }

    /// `workflow backfill`: the schedule's instants in `[from, to)` (the latest version's
    /// schedule and time zone), sent to each target agent, which creates the runs with the ids
    /// live firings have (an instant already run is reported present, not run again).
    pub async fn backfill(
        self: &Arc<Self>,
        actor: &str,
        name: &str,
        plan: BackfillPlan,
    ) -> OpResult<BackfillOutcome> {
        if plan.from >= plan.to {
            return Err(OpError::Invalid(
                "--from must be before --to (the window is [from, to))".into(),
            ));
        }
        if plan.pool.is_some() && plan.agent.is_some() {
            return Err(OpError::Invalid("give --pool or --agent, not both".into()));
        }
        let (hub, a, n, p) = (
            self.clone(),
            actor.to_string(),
            name.to_string(),
            plan.clone(),
        );
        let (instants, targets) = blocking(move || {
            let instants = hub.instants_of(&n, p.from, p.to)?;
            let targets = hub.targets_of(&n, p.agent.as_deref(), p.pool.as_deref())?;
            if !p.dry_run {
                let detail = format!(
                    "from={} to={} instants={} max_active={} agents={}",
                    p.from.to_rfc3339(),
                    p.to.to_rfc3339(),
                    instants.len(),
                    p.max_active,
                    targets.join(",")
                );
                hub.store()
                    .audit(&a, "workflow.backfill", &n, &detail, now_ms())?;
            }
            Ok((instants, targets))
        })
        .await?;
        let mut results = Vec::new();
        if !plan.dry_run && !instants.is_empty() {
            for agent in &targets {
                let command = Command::Backfill {
                    workflow: name.to_string(),
                    instants: instants.iter().map(|t| t.timestamp_millis()).collect(),
                    max_active: plan.max_active.max(1),
                };
                results.push(self.command_to(agent.clone(), command, "queued").await);
            }
        }
        Ok(BackfillOutcome {
            instants,
            targets,
            results,
        })
    }

    /// The schedule instants of `name`'s latest version in `[from, to)`.
    fn instants_of(
        &self,
        name: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> OpResult<Vec<DateTime<Utc>>> {
        let wf = self.parsed_latest(name)?;
        let Some(schedule) = &wf.schedule else {
            return Err(OpError::Invalid(format!(
                "workflow {name} has no schedule: nothing to backfill"
            )));
        };
        let start = from - chrono::Duration::milliseconds(1);
        let mut out = Vec::new();
        for t in schedule.iter_after(start, wf.timezone) {
            if t >= to {
                break;
            }
            if out.len() >= MAX_BACKFILL_INSTANTS {
                return Err(OpError::Invalid(format!(
                    "the window holds more than {MAX_BACKFILL_INSTANTS} instants: backfill it in parts"
                )));
            }
            out.push(t);
        }
        Ok(out)
    }

    /// The latest version of `name`, parsed.
    fn parsed_latest(&self, name: &str) -> OpResult<outpost_common::model::Workflow> {
        let v = self.store().version(name, None)?;
        let format = if v.format == "toml" {
            Format::Toml
        } else {
            Format::Yaml
        };
        let content = std::str::from_utf8(&v.content)
            .map_err(|_| OpError::Internal(format!("workflow {name}: stored file is not UTF-8")))?;
        workflow::parse(name, content, format, &ValidateOptions::default()).map_err(|e| {
            OpError::Invalid(format!(
                "workflow {name} v{}: no longer validates here: {e:?}",
                v.version
            ))
        })
    }

    /// Parameters checked against the latest version's declarations (the agent checks again).
    fn check_params_of(&self, name: &str, params: &[(String, String)]) -> OpResult<()> {
        let wf = self.parsed_latest(name)?;
        outpost_common::params::check_params(name, &wf.param_rules, params)
            .map_err(OpError::Invalid)
    }

    /// The agents a command for workflow `name` goes to: `agent`; else the members of `pool`
    /// that hold it; else every agent it is deployed to.
    fn targets_of(
        &self,
        name: &str,
        agent: Option<&str>,
        pool: Option<&str>,
    ) -> OpResult<Vec<String>> {
        if let Some(id) = agent {
            self.store().version(name, None)?;
            let rec = self.store().agent(id)?;
            if rec.revoked_ms.is_some() {
                return Err(crate::store::StoreError::Revoked(id.to_string()).into());
            }
            return Ok(vec![id.to_string()]);
        }
        let deployed = self.targeted_agents(name)?;
        match pool {
            None => Ok(deployed),
            Some(p) => {
                let rec = self.pool(p)?;
                Ok(self
                    .pool_members(&rec, name)?
                    .into_iter()
                    .map(|m| m.agent_id)
                    .filter(|a| deployed.contains(a))
                    .collect())
            }
        }
    }

    /// Send `command` to `agent`; an agent not connected (commands are not queued) or a
    /// failed exchange is an outcome that says so.
    pub(super) async fn command_to(
        self: &Arc<Self>,
        agent: String,
        command: Command,
        done: &str,
    ) -> CommandOutcome {
        match self.gateway().send_command(&agent, command).await {
            Ok(r) => CommandOutcome {
                agent,
                ok: r.ok,
                run_id: r.run_id,
                message: r.message,
            },
            Err(e) => CommandOutcome {
                agent,
                ok: false,
                run_id: None,
                message: match e {
                    GatewayError::NotConnected(a) => {
                        format!("agent {a} is not connected; not {done} (commands are not queued)")
                    }
                    other => other.to_string(),
                },
            },
        }
    }
}
