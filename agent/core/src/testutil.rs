//! Builders for tests (this crate's and the agent's): workflows, run records and clock readings
//! built directly in Rust, without the YAML parser.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use outpost_common::clock::Now;
use outpost_common::model::{
    Backoff, Catchup, DEFAULT_HOOK_TIMEOUT, Exec, Hook, HookEvent, Limits, Overlap, RetryPolicy,
    Task, TriggerRule, Workflow,
};
use outpost_common::record::{RunKind, RunRecord, RunState, UnixMillis, run_id};
use outpost_common::schedule::Schedule;

/// Builds a [`Workflow`]; task-level setters apply to the most recently added task.
#[derive(Debug, Clone)]
pub struct WorkflowBuilder {
    wf: Workflow,
}

/// Start a workflow named `name` with defaults (no schedule, UTC, overlap skip, one active run).
pub fn workflow(name: &str) -> WorkflowBuilder {
    WorkflowBuilder {
        wf: Workflow {
            name: name.to_string(),
            description: None,
            schedule: None,
            timezone: chrono_tz::Tz::UTC,
            catchup: Catchup::default(),
            catchup_window: Duration::from_secs(24 * 3600),
            overlap: Overlap::default(),
            max_active_runs: 1,
            params: BTreeMap::new(),
            param_rules: BTreeMap::new(),
            env: BTreeMap::new(),
            target: BTreeMap::new(),
            tasks: Vec::new(),
            deadline: None,
            max_start_delay: None,
            hooks: Default::default(),
            content_hash: String::new(),
        },
    }
}

impl WorkflowBuilder {
    /// Add a task depending on `deps` (ids of tasks added before). Unknown ids are ignored.
    pub fn task(mut self, id: &str, deps: &[&str]) -> Self {
        let upstream = deps.iter().filter_map(|d| self.wf.task_index(d)).collect();
        self.wf.tasks.push(Task {
            id: id.to_string(),
            exec: Exec::Command(vec!["true".to_string()]),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            upstream,
            trigger_rule: TriggerRule::default(),
            timeout: None,
            retry: RetryPolicy {
                retries: 0,
                delay: Duration::from_secs(10),
                ..RetryPolicy::default()
            },
            priority: 0,
            env: BTreeMap::new(),
            working_dir: None,
            idempotent: false,
            resources: BTreeMap::new(),
            limits: Limits::default(),
            deadline: None,
            max_start_delay: None,
            hooks: Default::default(),
            secret_env: BTreeMap::new(),
            user: None,
            group: None,
        });
        self
    }

    /// Add a task whose upstream tasks are given by index.
    pub fn task_idx(mut self, id: &str, upstream: &[usize]) -> Self {
        let deps: Vec<String> = upstream
            .iter()
            .filter_map(|&u| self.wf.tasks.get(u).map(|t| t.id.clone()))
            .collect();
        let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
        self = self.task(id, &refs);
        self
    }

    fn last(&mut self) -> Option<&mut Task> {
        self.wf.tasks.last_mut()
    }

    pub fn rule(mut self, rule: TriggerRule) -> Self {
        if let Some(t) = self.last() {
            t.trigger_rule = rule;
        }
        self
    }

    pub fn retries(mut self, retries: u32, delay: Duration) -> Self {
        if let Some(t) = self.last() {
            t.retry.retries = retries;
            t.retry.delay = delay;
        }
        self
    }

    pub fn backoff(mut self, backoff: Backoff, max_delay: Option<Duration>, jitter: f64) -> Self {
        if let Some(t) = self.last() {
            t.retry.backoff = backoff;
            t.retry.max_delay = max_delay;
            t.retry.jitter = jitter;
        }
        self
    }

    pub fn priority(mut self, p: i32) -> Self {
        if let Some(t) = self.last() {
            t.priority = p;
        }
        self
    }

    pub fn timeout(mut self, d: Duration) -> Self {
        if let Some(t) = self.last() {
            t.timeout = Some(d);
        }
        self
    }

    pub fn resource(mut self, name: &str, units: u32) -> Self {
        if let Some(t) = self.last() {
            t.resources.insert(name.to_string(), units);
        }
        self
    }

    pub fn idempotent(mut self, yes: bool) -> Self {
        if let Some(t) = self.last() {
            t.idempotent = yes;
        }
        self
    }

    /// The last task's `deadline` and `max_start_delay`.
    pub fn task_deadlines(mut self, finish: Option<Duration>, start: Option<Duration>) -> Self {
        if let Some(t) = self.last() {
            t.deadline = finish;
            t.max_start_delay = start;
        }
        self
    }

    /// A hook of the last task running `argv` (timeout 60 s).
    pub fn task_hook(mut self, event: HookEvent, argv: &[&str]) -> Self {
        if let Some(t) = self.last() {
            t.hooks.set(event, hook(argv));
        }
        self
    }

    /// The workflow's `deadline` and `max_start_delay`.
    pub fn deadlines(mut self, finish: Option<Duration>, start: Option<Duration>) -> Self {
        self.wf.deadline = finish;
        self.wf.max_start_delay = start;
        self
    }

    /// A workflow-level hook running `argv` (timeout 60 s).
    pub fn hook(mut self, event: HookEvent, argv: &[&str]) -> Self {
        self.wf.hooks.set(event, hook(argv));
        self
    }

    pub fn overlap(mut self, o: Overlap) -> Self {
        self.wf.overlap = o;
        self
    }

    pub fn max_active_runs(mut self, n: u32) -> Self {
        self.wf.max_active_runs = n;
        self
    }

    /// Set the schedule; an invalid expression leaves the workflow unscheduled.
    pub fn schedule(mut self, expr: &str, tz: chrono_tz::Tz) -> Self {
        self.wf.schedule = Schedule::parse(expr).ok();
        self.wf.timezone = tz;
        self
    }

    pub fn build(self) -> Arc<Workflow> {
        Arc::new(self.wf)
    }
}

fn hook(argv: &[&str]) -> Hook {
    Hook {
        exec: Exec::Command(argv.iter().map(|a| a.to_string()).collect()),
        timeout: DEFAULT_HOOK_TIMEOUT,
    }
}

/// A fresh run record of `wf` (version 1) for the firing at `scheduled_ms`.
pub fn run_record(wf: &Workflow, scheduled_ms: UnixMillis, kind: RunKind) -> RunRecord {
    RunRecord {
        run_id: run_id(&wf.name, 1, scheduled_ms, kind),
        workflow: wf.name.clone(),
        version: 1,
        kind,
        scheduled_ms,
        state: RunState::Queued,
        params: Vec::new(),
        created_ms: scheduled_ms,
        started_ms: None,
        ended_ms: None,
        agent_id: None,
        skip_reason: None,
    }
}

/// Base wall time of [`now_ms`]: 2026-01-01T00:00:00Z.
pub const BASE_WALL_MS: i64 = 1_767_225_600_000;

/// A clock reading `ms` milliseconds after [`BASE_WALL_MS`] (wall) and after boot (mono).
pub fn now_ms(ms: u64) -> Now {
    let wall = DateTime::<Utc>::from_timestamp_millis(BASE_WALL_MS + ms as i64).unwrap_or_default();
    Now {
        wall,
        mono: Duration::from_millis(ms),
    }
}
