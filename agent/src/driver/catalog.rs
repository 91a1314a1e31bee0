//! The catalog: the workflows loaded (from files or from the hub), their planners and clock
//! floors, the rescans of the workflows directory, and the versions recorded for them.
//!
//! It writes nothing itself: what is to be committed (a last-fired instant, a new version,
//! missed firings) goes into the pending batch the driver hands it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use outpost_agent_core::planner::{Planner, PlannerOutput};
use outpost_common::clock::Now;
use outpost_common::model::Workflow;
use outpost_common::record::{MissedFirings, RunKind, StatusEvent};

use super::HUB_ORIGIN;
use crate::store::{Batch, Store, WorkflowVersion};

/// A loaded workflow version and its clock.
pub(crate) struct Loaded {
    pub wf: Arc<Workflow>,
    pub version: u64,
    pub origin: String,
    pub planner: Option<Planner>,
    pub paused: bool,
    /// The planner was last shown this (future) instant by a pre-commit; it is shown no
    /// earlier time until the clocks pass it.
    clock_floor: Option<Now>,
}

/// Firings of one workflow's planner: runs to add at `now` (the instant, for a pre-commit).
pub(crate) struct Firings {
    pub now: Now,
    pub fires: Vec<(Arc<Workflow>, u64, DateTime<Utc>, RunKind)>,
}

pub(crate) struct Catalog {
    workflows: BTreeMap<String, Loaded>,
    /// Standalone mode: the directory of workflow files.
    workflows_dir: Option<PathBuf>,
    validate: outpost_common::workflow::ValidateOptions,
    /// Invalid-file diagnostics already logged (so a rescan does not repeat them every time).
    reported_bad: HashSet<String>,
}

impl Catalog {
    pub fn new(
        workflows_dir: Option<PathBuf>,
        validate: outpost_common::workflow::ValidateOptions,
    ) -> Catalog {
        Catalog {
            workflows: BTreeMap::new(),
            workflows_dir,
            validate,
            reported_bad: HashSet::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Loaded> {
        self.workflows.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Loaded)> {
        self.workflows.iter()
    }

    pub fn names(&self) -> Vec<String> {
        self.workflows.keys().cloned().collect()
    }

    pub fn is_hub(&self, name: &str) -> bool {
        self.workflows
            .get(name)
            .is_some_and(|l| l.origin == HUB_ORIGIN)
    }

    /// The file that defines `name`, if a local file does.
    pub fn local_origin(&self, name: &str) -> Option<&str> {
        self.workflows
            .get(name)
            .filter(|l| l.origin != HUB_ORIGIN)
            .map(|l| l.origin.as_str())
    }

    /// Install (or replace) a workflow version. Runs in progress keep the version they started
    /// with; new firings use this one. The planner's last-fired instant comes from the store, so
    /// a restart or an edit never fires an instant twice.
    #[allow(clippy::too_many_arguments)]
    pub fn install(
        &mut self,
        store: &Store,
        pending: &mut Batch,
        now: Now,
        wf: Workflow,
        version: u64,
        origin: String,
        scheduled: bool,
    ) -> anyhow::Result<()> {
        let name = wf.name.clone();
        let last_fired = match self
            .workflows
            .get(&name)
            .and_then(|l| l.planner.as_ref())
            .and_then(|p| p.last_fired())
        {
            Some(t) => Some(t),
            None => store
                .last_fired(&name)?
                .and_then(DateTime::<Utc>::from_timestamp_millis),
        };
        // A workflow that never fired starts accounting at its activation instant, persisted now
        // so that downtime before its first firing is caught up (or reported) too.
        let last_fired = match last_fired {
            None if scheduled && wf.schedule.is_some() => {
                pending.last_fired.push((name.clone(), now.wall_ms()));
                Some(now.wall)
            }
            other => other,
        };
        let prev = self.workflows.get(&name).and_then(|l| l.planner.as_ref());
        let planner = wf.schedule.clone().filter(|_| scheduled).map(|s| {
            let p = Planner::new(
                s,
                wf.timezone,
                wf.catchup,
                wf.catchup_window,
                last_fired,
                now,
            )
            .with_workflow(&name);
            // A new version of a workflow this process already watches keeps that watch.
            match prev {
                Some(prev) => p.continuing(prev),
                None => p,
            }
        });
        let paused = store.is_paused(&name)?;
        self.workflows.insert(
            name,
            Loaded {
                wf: Arc::new(wf),
                version,
                origin,
                planner,
                paused,
                clock_floor: None,
            },
        );
        Ok(())
    }

    /// Stop scheduling a workflow. Its active runs finish.
    pub fn uninstall(&mut self, name: &str) {
        self.workflows.remove(name);
    }

    /// Mark a workflow paused or resumed (the caller records it in the pending batch).
    pub fn set_paused(&mut self, name: &str, paused: bool) -> anyhow::Result<()> {
        let l = self
            .workflows
            .get_mut(name)
            .with_context(|| format!("no workflow named `{name}`"))?;
        l.paused = paused;
        Ok(())
    }

    /// The hub's workflows whose pause must change so that exactly those in `paused` are.
    pub fn hub_pause_changes(&self, paused: &[String]) -> Vec<(String, bool)> {
        self.workflows
            .iter()
            .filter(|(_, l)| l.origin == HUB_ORIGIN)
            .filter_map(|(n, l)| {
                let want = paused.contains(n);
                (l.paused != want).then(|| (n.clone(), want))
            })
            .collect()
    }

    /// The workflow of a given version: the installed one, or re-parsed from the stored source.
    pub fn workflow_for(
        &self,
        store: &Store,
        name: &str,
        version: u64,
    ) -> anyhow::Result<Arc<Workflow>> {
        if let Some(l) = self.workflows.get(name)
            && l.version == version
        {
            return Ok(l.wf.clone());
        }
        let v = store
            .workflow_versions(name)?
            .into_iter()
            .find(|v| v.version == version)
            .with_context(|| format!("workflow {name} version {version} is not in the store"))?;
        let src = String::from_utf8_lossy(&v.source).into_owned();
        let format = if v.format == "toml" {
            outpost_common::workflow::Format::Toml
        } else {
            outpost_common::workflow::Format::Yaml
        };
        let wf = outpost_common::workflow::parse(
            &format!("{name}@v{version}"),
            &src,
            format,
            &outpost_common::workflow::ValidateOptions::default(),
        )
        .map_err(|d| {
            anyhow::anyhow!(
                "stored version no longer parses: {}",
                d.first().map(|d| d.to_string()).unwrap_or_default()
            )
        })?;
        Ok(Arc::new(wf))
    }

    /// Record a workflow's source as a new version (in `pending`) if its content changed;
    /// returns the version to use.
    pub fn record_version(
        store: &Store,
        pending: &mut Batch,
        now: Now,
        wf: &Workflow,
        source: &[u8],
        format: &str,
        origin: &str,
    ) -> anyhow::Result<u64> {
        // Versions still waiting in `pending` count too (see below).
        let mut versions = store.workflow_versions(&wf.name)?;
        versions.extend(
            pending
                .workflow_puts
                .iter()
                .filter(|v| v.name == wf.name)
                .cloned(),
        );
        if let Some(last) = versions.iter().max_by_key(|v| v.version)
            && last.content_hash == wf.content_hash
        {
            return Ok(last.version);
        }
        let version = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        // Not committed on its own: the version joins the next commit (at the latest after the
        // group-commit window), which is the one that commits the first run of it, if any; a
        // run record never becomes durable without its version. Losing a version that no run
        // used yet in a crash loses nothing: the file is read and recorded again.
        pending.workflow_puts.push(WorkflowVersion {
            name: wf.name.clone(),
            version,
            content_hash: wf.content_hash.clone(),
            source: source.to_vec(),
            format: format.to_string(),
            origin: origin.to_string(),
            created_ms: now.wall_ms(),
        });
        Ok(version)
    }

    /// Standalone mode: load new and changed workflow files, drop removed ones. An invalid file
    /// is reported and its previous version keeps running. Returns whether a version was
    /// recorded in `pending` (the group commit's window starts).
    pub fn rescan(&mut self, store: &Store, pending: &mut Batch, now: Now) -> anyhow::Result<bool> {
        let Some(dir) = self.workflows_dir.clone() else {
            return Ok(false);
        };
        let scan = crate::standalone::scan(&dir, &self.validate)
            .with_context(|| format!("reading workflows_dir {}", dir.display()))?;
        let mut recorded = false;
        let mut seen: HashSet<String> = HashSet::new();
        for (path, diags) in &scan.bad {
            // Keep the previous version of whatever this file defined.
            if let Some((name, _)) = self
                .workflows
                .iter()
                .find(|(_, l)| Path::new(&l.origin) == path.as_path())
            {
                seen.insert(name.clone());
            }
            let key = format!(
                "{}:{}",
                path.display(),
                diags
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("|")
            );
            if self.reported_bad.insert(key) {
                for d in diags {
                    tracing::error!(file = %path.display(), "invalid workflow: {d}");
                }
            }
        }
        for item in scan.ok {
            let name = item.workflow.name.clone();
            if self.is_hub(&name) {
                let key = format!("{}:hub-name-clash", item.path.display());
                if self.reported_bad.insert(key) {
                    tracing::error!(file = %item.path.display(), workflow = %name, "ignored: the hub deploys a workflow of this name");
                }
                continue;
            }
            seen.insert(name.clone());
            let origin = item.path.display().to_string();
            if self
                .workflows
                .get(&name)
                .is_some_and(|l| l.wf.content_hash == item.workflow.content_hash)
            {
                continue;
            }
            let fmt = match item.format {
                outpost_common::workflow::Format::Toml => "toml",
                _ => "yaml",
            };
            let version = Self::record_version(
                store,
                pending,
                now,
                &item.workflow,
                &item.source,
                fmt,
                &origin,
            )?;
            recorded = true;
            tracing::info!(workflow = %name, version, file = %origin, "workflow loaded");
            self.install(store, pending, now, item.workflow, version, origin, true)?;
        }
        let gone: Vec<String> = self
            .workflows
            .iter()
            .filter(|(n, l)| l.origin != HUB_ORIGIN && !seen.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            tracing::info!(workflow = %name, "workflow file removed: no longer scheduled");
            self.uninstall(&name);
        }
        Ok(recorded)
    }

    /// Show `name`'s planner the time: `now`, or the instant of a firing due within `lead` (a
    /// pre-commit; the planner is then shown no earlier time until the clocks pass it). The
    /// planner state and missed firings go into `pending`; the runs to add are returned.
    pub fn poll_planner(
        &mut self,
        name: &str,
        now: Now,
        lead: Duration,
        disk_low: bool,
        pending: &mut Batch,
    ) -> Option<Firings> {
        let l = self.workflows.get_mut(name)?;
        let p = l.planner.as_mut()?;
        let mut pnow = match l.clock_floor {
            Some(f) if f.mono > now.mono => f,
            _ => {
                l.clock_floor = None;
                now
            }
        };
        if let Some(at) = p.poll_timeout()
            && at > pnow.wall
            && let Ok(ahead) = (at - now.wall).to_std()
            && ahead <= lead
        {
            pnow = Now {
                wall: at,
                mono: now.mono + ahead,
            };
            l.clock_floor = Some(pnow);
        }
        let outs = p.handle_time(pnow);
        let last = p.last_fired();
        if outs.is_empty() {
            return None;
        }
        if let Some(t) = last {
            pending
                .last_fired
                .push((name.to_string(), t.timestamp_millis()));
        }
        let mut fires = Vec::new();
        let mut paused_fires: Vec<DateTime<Utc>> = Vec::new();
        for o in outs {
            match o {
                PlannerOutput::Fire { scheduled, kind } => {
                    if l.paused || disk_low {
                        paused_fires.push(scheduled);
                    } else {
                        fires.push((l.wf.clone(), l.version, scheduled, kind));
                    }
                }
                PlannerOutput::Missed(m) => pending.events.push(StatusEvent::Missed(m)),
            }
        }
        if let (Some(first), Some(last)) = (paused_fires.first(), paused_fires.last()) {
            pending.events.push(StatusEvent::Missed(MissedFirings {
                workflow: name.to_string(),
                count: paused_fires.len() as u64,
                first_ms: first.timestamp_millis(),
                last_ms: last.timestamp_millis(),
                reason: if l.paused {
                    "workflow paused".into()
                } else {
                    "low disk space (min_free_disk)".into()
                },
                recorded_ms: now.wall_ms(),
            }));
        }
        (!fires.is_empty()).then_some(Firings { now: pnow, fires })
    }

    /// When the planners next need the time (monotonic): a little early, for the pre-commit,
    /// and at least every second (the wall clock may jump).
    pub fn next_deadline(&self, now: Now, lead: Duration) -> Option<Duration> {
        self.workflows
            .values()
            .filter_map(|l| l.planner.as_ref().and_then(|p| p.poll_timeout()))
            .map(|at| {
                let wait = (at - now.wall)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .saturating_sub(lead)
                    .min(Duration::from_secs(1));
                now.mono + wait
            })
            .min()
    }
}
