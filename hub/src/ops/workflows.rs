//! Workflows: apply, rollback, pause, resume, trigger, and what the API shows of them.

use std::path::Path;
use std::sync::Arc;

use outpost_common::proto::Command;
use outpost_common::workflow::{self, Format, ValidateOptions};

use super::lifecycle::ApplyPlan;
use super::{AppliedVersion, CommandOutcome, EventKind, OpError, OpResult, blocking};
use crate::hub::{Hub, now_ms};
use crate::store::{NewVersion, StoreError, StoredVersion, WorkflowMeta};

/// A workflow file to apply, as the operator sent it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its path (names it in diagnostics; the extension gives the format).
    pub path: String,
    /// Its text.
    pub content: String,
}

/// What `apply` did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Invalid: nothing stored; the diagnostics name file:line:column.
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        diagnostics: Vec<String>,
    },
    /// Valid: stored (a new version when the content or target changed).
    Applied {
        /// The file.
        path: String,
        /// The workflow, its latest version, whether it is new.
        version: AppliedVersion,
    },
    /// Valid, but not applied: another file of the same apply is invalid (all or nothing).
    Held {
        /// The file.
        path: String,
        /// The workflow it defines.
        workflow: String,
    },
    /// Valid; a dry run: what applying it would do.
    Planned {
        /// The file.
        path: String,
        /// The plan.
        plan: Box<ApplyPlan>,
    },
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Yaml => "yaml",
        Format::Toml => "toml",
    }
}

impl Hub {
    /// `workflow apply`: validate every file, then store all of them in one transaction (an
    /// unchanged file makes no version), or none when any file is invalid (each valid file is
    /// then [`FileOutcome::Held`]). Audited as `actor`.
    pub fn apply(&self, actor: &str, files: Vec<SourceFile>) -> OpResult<Vec<FileOutcome>> {
        self.apply_files(actor, files, false)
    }

    /// [`Hub::apply`], or with `dry_run` only what it would do ([`FileOutcome::Planned`]).
    pub fn apply_files(
        &self,
        actor: &str,
        files: Vec<SourceFile>,
        dry_run: bool,
    ) -> OpResult<Vec<FileOutcome>> {
        let mut parsed = Vec::with_capacity(files.len());
        let mut out = Vec::with_capacity(files.len());
        let mut seen: std::collections::BTreeMap<String, String> = Default::default();
        for f in files {
            let format = Format::from_path(Path::new(&f.path));
            match workflow::parse(&f.path, &f.content, format, &ValidateOptions::default()) {
                Err(diags) => out.push(FileOutcome::Invalid {
                    path: f.path,
                    diagnostics: diags.iter().map(ToString::to_string).collect(),
                }),
                Ok(wf) => {
                    if let Some(other) = seen.get(&wf.name) {
                        out.push(FileOutcome::Invalid {
                            diagnostics: vec![format!(
                                "{}:1:1: workflow {} is also defined in {other}",
                                f.path, wf.name
                            )],
                            path: f.path,
                        });
                        continue;
                    }
                    seen.insert(wf.name.clone(), f.path.clone());
                    out.push(FileOutcome::Held {
                        path: f.path.clone(),
                        workflow: wf.name.clone(),
                    });
                    parsed.push((out.len() - 1, f, format, wf));
                }
            }
        }
        if out.iter().any(|o| matches!(o, FileOutcome::Invalid { .. })) {
            return Ok(out);
        }
        if dry_run {
            let inputs = self.plan_inputs()?;
            for (i, f, _, wf) in parsed {
                let target: Vec<(String, String)> = wf.target.into_iter().collect();
                let plan = self.plan_apply(&inputs, &wf.name, &f.content, &target)?;
                out[i] = FileOutcome::Planned {
                    path: f.path,
                    plan: Box::new(plan),
                };
            }
            return Ok(out);
        }
        let news = parsed
            .iter()
            .map(|(_, f, format, wf)| NewVersion {
                name: wf.name.clone(),
                content: f.content.clone().into_bytes(),
                format: format_name(*format).into(),
                target: wf.target.clone().into_iter().collect(),
                origin: f.path.clone(),
                applied_by: actor.into(),
            })
            .collect();
        let stored = self.store().apply_versions(news, now_ms())?;
        let mut versions = Vec::new();
        for ((i, f, _, wf), s) in parsed.into_iter().zip(stored) {
            let pending = s.pending && !self.auto_release(&wf.name, s.version)?;
            let version = AppliedVersion {
                workflow: wf.name,
                version: s.version,
                changed: s.changed,
                pending,
            };
            versions.push(version.clone());
            out[i] = FileOutcome::Applied {
                path: f.path,
                version,
            };
        }
        self.emit(actor, EventKind::WorkflowApplied { versions });
        Ok(out)
    }

    /// `workflow rollback`: a new version with version `to`'s content (none when the latest
    /// already has it).
    pub fn rollback(&self, actor: &str, name: &str, to: u64) -> OpResult<AppliedVersion> {
        let out = self.store().rollback(name, to, actor, now_ms())?;
        let pending = out.pending && !self.auto_release(name, out.version)?;
        let version = AppliedVersion {
            workflow: name.to_string(),
            version: out.version,
            changed: out.changed,
            pending,
        };
        self.emit(
            actor,
            EventKind::WorkflowRolledBack {
                version: version.clone(),
                to,
            },
        );
        Ok(version)
    }

    /// `workflow pause`: paused at the hub (agents that connect later learn it), and the
    /// command sent to each connected agent the workflow is deployed to.
    pub async fn pause(self: &Arc<Self>, actor: &str, name: &str) -> OpResult<Vec<CommandOutcome>> {
        self.pause_resume(actor, name, true).await
    }

    /// `workflow resume`: the reverse of [`Hub::pause`].
    pub async fn resume(
        self: &Arc<Self>,
        actor: &str,
        name: &str,
    ) -> OpResult<Vec<CommandOutcome>> {
        self.pause_resume(actor, name, false).await
    }

    async fn pause_resume(
        self: &Arc<Self>,
        actor: &str,
        name: &str,
        paused: bool,
    ) -> OpResult<Vec<CommandOutcome>> {
        let (hub, a, n) = (self.clone(), actor.to_string(), name.to_string());
        let targets = blocking(move || {
            hub.store().set_paused(&n, paused, &a, now_ms())?;
            hub.notify_changed();
            hub.targeted_agents(&n)
        })
        .await?;
        let mut agents = Vec::new();
        for id in targets {
            let command = if paused {
                Command::Pause {
                    workflow: name.to_string(),
                }
            } else {
                Command::Resume {
                    workflow: name.to_string(),
                }
            };
            let r = if self.gateway().is_connected(&id) {
                match self.gateway().send_command(&id, command).await {
                    Ok(r) => CommandOutcome {
                        agent: id,
                        ok: r.ok,
                        run_id: None,
                        message: r.message,
                    },
                    Err(e) => CommandOutcome {
                        agent: id,
                        ok: false,
                        run_id: None,
                        message: e.to_string(),
                    },
                }
            } else {
                CommandOutcome {
                    message: format!(
                        "agent {id} is not connected; the hub's {} state reaches it when it \
                         reconnects",
                        if paused { "paused" } else { "resumed" }
                    ),
                    agent: id,
                    ok: false,
                    run_id: None,
                }
            };
            agents.push(r);
        }
        let workflow = name.to_string();
        self.emit(
            actor,
            if paused {
                EventKind::WorkflowPaused { workflow }
            } else {
                EventKind::WorkflowResumed { workflow }
            },
        );
        Ok(agents)
    }

    /// `workflow trigger`: a manual run on `agent`, else on every agent the workflow is
    /// deployed to. Parameters are checked against the latest version's declarations first
    /// (the agent checks again). Commands are not queued: an offline agent is reported.
    pub async fn trigger(
        self: &Arc<Self>,
        actor: &str,
        name: &str,
        agent: Option<String>,
        params: Vec<(String, String)>,
    ) -> OpResult<Vec<CommandOutcome>> {
        let (hub, a, n, checked) = (
            self.clone(),
            actor.to_string(),
            name.to_string(),
            params.clone(),
        );
        let targets = blocking(move || {
            if let Err(e) = hub.check_trigger_params(&n, &checked) {
                // A refused attempt is recorded too: who tried what, and why it was refused.
                if let OpError::Invalid(why) = &e {
                    hub.store().audit(
                        &a,
                        "workflow.trigger.refused",
                        &n,
                        &format!(
                            "{} refused: {why}",
                            trigger_detail(agent.as_deref(), &checked)
                        ),
                        now_ms(),
                    )?;
                }
                return Err(e);
            }
            hub.store().audit(
                &a,
                "workflow.trigger",
                &n,
                &trigger_detail(agent.as_deref(), &checked),
                now_ms(),
            )?;
            match agent {
                Some(id) => {
                    hub.store().version(&n, None)?;
                    let rec = hub.store().agent(&id)?;
                    if rec.revoked_ms.is_some() {
                        return Err(StoreError::Revoked(id).into());
                    }
                    Ok(vec![id])
                }
                None => hub.targeted_agents(&n),
            }
        })
        .await?;
        let mut results = Vec::new();
        for agent in targets {
            let command = Command::Trigger {
                workflow: name.to_string(),
                params: params.clone(),
            };
            let r = self.command_to(agent, command, "triggered").await;
            results.push(r);
        }
        self.emit(
            actor,
            EventKind::WorkflowTriggered {
                workflow: name.to_string(),
                started: results
                    .iter()
                    .filter(|r| r.ok)
                    .filter_map(|r| Some((r.agent.clone(), r.run_id.clone()?)))
                    .collect(),
            },
        );
        Ok(results)
    }

    /// The non-revoked agents the workflow is deployed to (their desired state includes it:
    /// pool decisions and active rollouts).
    pub fn targeted_agents(&self, name: &str) -> OpResult<Vec<String>> {
        self.store().version(name, None)?;
        let mut out = Vec::new();
        for a in self.store().agents()? {
            if a.revoked_ms.is_none()
                && self
                    .desired_versions_of(&a)?
                    .iter()
                    .any(|d| d.workflow == name)
            {
                out.push(a.id);
            }
        }
        Ok(out)
    }

    /// Refuse a trigger whose parameters break the declarations of the latest version the hub
    /// holds (the agent checks again against the version it runs).
    fn check_trigger_params(&self, name: &str, params: &[(String, String)]) -> OpResult<()> {
        let v = self.store().version(name, None)?;
        let format = if v.format == "toml" {
            Format::Toml
        } else {
            Format::Yaml
        };
        let Ok(content) = std::str::from_utf8(&v.content) else {
            return Ok(());
        };
        match workflow::parse(name, content, format, &ValidateOptions::default()) {
            Ok(wf) => outpost_common::params::check_params(name, &wf.param_rules, params)
                .map_err(OpError::Invalid),
            // A stored version that no longer validates: the agent decides.
            Err(_) => Ok(()),
        }
    }

    /// The latest version of every workflow with its metadata.
    pub fn workflows(&self) -> OpResult<Vec<(StoredVersion, WorkflowMeta)>> {
        Ok(self.store().latest_versions()?)
    }

    /// One version of a workflow (`None`: the latest).
    pub fn workflow_version(&self, name: &str, version: Option<u64>) -> OpResult<StoredVersion> {
        Ok(self.store().version(name, version)?)
    }

    /// Every version of a workflow, oldest first.
    pub fn workflow_history(&self, name: &str) -> OpResult<Vec<StoredVersion>> {
        Ok(self.store().history(name)?)
    }

    /// A workflow's metadata (latest version, paused).
    pub fn workflow_meta(&self, name: &str) -> OpResult<WorkflowMeta> {
        Ok(self.store().workflow(name)?)
    }

    /// Unified diff of two versions of a workflow.
    pub fn workflow_diff(&self, name: &str, from: u64, to: u64) -> OpResult<String> {
        let a = self.store().version(name, Some(from))?;
        let b = self.store().version(name, Some(to))?;
        Ok(unified_diff(
            name,
            from,
            &String::from_utf8_lossy(&a.content),
            to,
            &String::from_utf8_lossy(&b.content),
        ))
    }
}

/// Unified diff of two versions' contents.
pub fn unified_diff(name: &str, from: u64, a: &str, to: u64, b: &str) -> String {
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} v{from}"), &format!("{name} v{to}"))
        .to_string()
}

/// The audit detail of a trigger: the agent it was limited to and the parameters given.
fn trigger_detail(agent: Option<&str>, params: &[(String, String)]) -> String {
    let mut d = format!("agent={}", agent.unwrap_or("*"));
    for (k, v) in params {
        d.push_str(&format!(" {k}={v:?}"));
    }
    d
}
