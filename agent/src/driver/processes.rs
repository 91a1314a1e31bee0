//! The process table: the attempts running as OS processes, their killers, the attempts
//! prepared ahead of their instant (deferred starts), and the start journal.
//!
//! It spawns and kills what the driver hands it (already durable: the driver sequences that),
//! and reports back through the driver's channel ([`Event::Started`], [`Event::Exited`]). What
//! the engine must hear (a deferred attempt armed) it returns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use outpost_agent_core::engine::KillReason;
use outpost_common::clock::Now;
use outpost_common::model::{Exec, TaskIdx, Workflow};
use outpost_common::record::{AttemptOutcome, RunId, RunRecord};
use tokio::sync::mpsc;

use super::Event;
use crate::exec::{self, ExecConfig, Killer, Prepared, SpawnRequest};

/// How long before its instant a pre-committed attempt is *armed*: written to the start
/// journal and reported to the engine as started, so that neither is on the path between the
/// wake-up at the instant and the spawn (the journal's `write` took ~50 µs at the median and
/// more in the tail). A crash in this window leaves an attempt that may have started, which
/// recovery handles conservatively (as interrupted).
const ARM_AHEAD: Duration = Duration::from_millis(2);

type AttemptKey = (RunId, TaskIdx, u32);

/// An attempt committed ahead of its scheduled instant, started when `due` (monotonic) comes.
struct DeferredSpawn {
    due: Duration,
    /// The batch that must be durable first.
    seq: u64,
    run_id: RunId,
    task: TaskIdx,
    task_id: String,
    attempt: u32,
    scheduled_ms: Option<i64>,
    prepared: Prepared,
    /// Journalled and reported to the engine as started (see [`ARM_AHEAD`]).
    armed: bool,
}

/// A deferred attempt armed now: the engine is told it starts `at`.
pub(crate) struct Armed {
    pub run_id: RunId,
    pub task: TaskIdx,
    pub attempt: u32,
    pub at: Now,
}

pub(crate) struct ProcessTable {
    pub exec: ExecConfig,
    tx: mpsc::UnboundedSender<Event>,
    killers: HashMap<AttemptKey, Killer>,
    /// Kills requested before the process reported its start.
    pending_kills: HashSet<AttemptKey>,
    running: usize,
    /// Pre-committed attempts waiting for their instant (see `PRECOMMIT_LEAD`).
    deferred: Vec<DeferredSpawn>,
    /// The start journal of dispatched attempts, and what the previous process's said.
    start_log: Option<crate::startlog::StartLog>,
    journal_found: crate::startlog::Recovered,
    /// The journal must start over once every start journalled so far is durable.
    journal_reset_due: bool,
    /// Recovery ran: the dispatched attempts found in the store are resolved (once their
    /// records are durable), so the journal's old lines may be dropped.
    recovered: bool,
}

impl ProcessTable {
    pub fn new(
        exec: ExecConfig,
        tx: mpsc::UnboundedSender<Event>,
        start_journal_dir: Option<&std::path::Path>,
    ) -> ProcessTable {
        let (start_log, journal_found) = match start_journal_dir {
            Some(dir) => {
                let found = crate::startlog::recover(dir);
                let mut log = crate::startlog::StartLog::new(dir);
                if matches!(found, crate::startlog::Recovered::Trusted(_)) {
                    // Same boot: keep appending (more lines only claim more starts).
                    log.append();
                } else {
                    // Nobody may trust it (nor a journal that lacks this process's starts)
                    // until it starts over after recovery.
                    log.discard();
                }
                (Some(log), found)
            }
            None => (
                None,
                crate::startlog::Recovered::Untrusted("no start journal configured".into()),
            ),
        };
        ProcessTable {
            exec,
            tx,
            killers: HashMap::new(),
            pending_kills: HashSet::new(),
            running: 0,
            deferred: Vec::new(),
            journal_reset_due: start_log.is_some(),
            start_log,
            journal_found,
            recovered: false,
        }
    }

    pub fn running(&self) -> usize {
        self.running
    }

    /// What the previous process's start journal says (for recovery).
    pub fn journal_found(&self) -> &crate::startlog::Recovered {
        &self.journal_found
    }

    /// Recovery is done: the old journal is used up and may start over once everything is
    /// durable.
    pub fn recovered(&mut self, runs: usize) {
        if let crate::startlog::Recovered::Untrusted(why) = &self.journal_found
            && runs > 0
        {
            tracing::info!(
                "start journal not used ({why}): dispatched attempts count as interrupted"
            );
        }
        self.journal_found = crate::startlog::Recovered::Untrusted("already used".into());
        self.recovered = true;
    }

    /// Restart or rotate the start journal when every start journalled so far is durable
    /// (`settled`: nothing in flight or pending, the engine holds nothing unpolled; see
    /// [`crate::startlog`]).
    pub fn maybe_reset_journal(&mut self, settled: bool) {
        let Some(log) = self.start_log.as_mut() else {
            return;
        };
        if !(self.journal_reset_due || log.wants_rotation()) {
            return;
        }
        // Before recovery (or in `run`, which recovers nothing) the journal may hold the only
        // evidence about dispatched attempts still open in the store: keep it.
        if !self.recovered || !settled {
            return;
        }
        log.reset();
        self.journal_reset_due = false;
    }

    /// Write an attempt committed ahead of its start (dispatched, or pre-committed) to the start
    /// journal, right before its spawn.
    pub fn journal_start(&mut self, run_id: &RunId, task_id: &str, attempt: u32) {
        if let Some(log) = self.start_log.as_mut() {
            log.record(run_id, task_id, attempt);
        }
    }

    /// Start an attempt now, on the driver's thread: no hand-off to a worker between the
    /// decision and the `fork`/`exec` (the preparation is a few page-cache file operations).
    pub fn spawn(
        &mut self,
        key: AttemptKey,
        req: anyhow::Result<SpawnRequest>,
        scheduled_at: Option<i64>,
    ) {
        self.running += 1;
        let (run_id, task, attempt) = key;
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                let _ = self
                    .tx
                    .send(spawn_failed(run_id, task, attempt, format!("{e:#}")));
                return;
            }
        };
        let started = exec::prepare(&self.exec, req).and_then(exec::Prepared::start);
        tokio::spawn(supervise(
            self.tx.clone(),
            run_id,
            task,
            attempt,
            scheduled_at,
            started,
        ));
    }

    /// Prepare an attempt now and start it at `due` (monotonic) once batch `seq` is durable.
    pub fn defer(
        &mut self,
        due: Duration,
        seq: u64,
        key: AttemptKey,
        task_id: String,
        req: anyhow::Result<SpawnRequest>,
        scheduled_ms: Option<i64>,
    ) {
        self.running += 1;
        let (run_id, task, attempt) = key;
        match req.and_then(|req| Ok(exec::prepare(&self.exec, req)?)) {
            Ok(prepared) => self.deferred.push(DeferredSpawn {
                due,
                seq,
                run_id,
                task,
                task_id,
                attempt,
                scheduled_ms,
                prepared,
                armed: false,
            }),
            Err(e) => {
                let _ = self
                    .tx
                    .send(spawn_failed(run_id, task, attempt, format!("{e:#}")));
            }
        }
    }

    /// Arm the deferred attempts due within [`ARM_AHEAD`] and start those whose instant has
    /// come (their batch durable by `durable`). Returns the armed ones, for the engine.
    pub fn start_due(&mut self, now: Now, durable: u64) -> Vec<Armed> {
        let mut armed = Vec::new();
        if self.deferred.is_empty() {
            return armed;
        }
        let mut deferred = std::mem::take(&mut self.deferred);
        for d in deferred
            .iter_mut()
            .filter(|d| !d.armed && d.seq <= durable && d.due <= now.mono + ARM_AHEAD)
        {
            // Like a dispatched attempt's `Start`: journalled, and the engine told it starts at
            // its instant (committed with the next batch), right before its spawn.
            d.armed = true;
            self.journal_start(&d.run_id, &d.task_id, d.attempt);
            let ahead = d.due.saturating_sub(now.mono);
            armed.push(Armed {
                run_id: d.run_id.clone(),
                task: d.task,
                attempt: d.attempt,
                at: Now {
                    wall: now.wall + chrono::Duration::from_std(ahead).unwrap_or_default(),
                    mono: now.mono.max(d.due),
                },
            });
        }
        let (due, later): (Vec<_>, Vec<_>) = deferred
            .into_iter()
            .partition(|d| d.due <= now.mono && d.seq <= durable);
        self.deferred = later;
        for d in due {
            let t0 = std::time::Instant::now();
            let started = d.prepared.start();
            let spawn = t0.elapsed();
            if started.is_ok() {
                log_lateness(&d.run_id, d.task, d.scheduled_ms, Some(spawn));
            }
            tokio::spawn(supervise(
                self.tx.clone(),
                d.run_id,
                d.task,
                d.attempt,
                None,
                started,
            ));
        }
        armed
    }

    /// The next instant a deferred attempt is armed or started (those whose batch is not
    /// durable yet are woken by its commit).
    pub fn next_deadline(&self, durable: u64) -> Option<Duration> {
        self.deferred
            .iter()
            .filter(|d| d.seq <= durable)
            .map(|d| {
                if d.armed {
                    d.due
                } else {
                    d.due.saturating_sub(ARM_AHEAD)
                }
            })
            .min()
    }

    pub fn kill(&mut self, key: AttemptKey, reason: KillReason) {
        let grace = match reason {
            KillReason::Timeout | KillReason::Cancel => self.exec.kill_grace,
            #[allow(unreachable_patterns)]
            _ => self.exec.kill_grace,
        };
        match self.killers.get(&key) {
            Some(k) => k.terminate(grace),
            None => {
                self.pending_kills.insert(key);
            }
        }
    }

    /// A process reported its start: kill it at once if that was asked meanwhile.
    pub fn on_started(&mut self, key: AttemptKey, killer: Killer) {
        if self.pending_kills.remove(&key) {
            killer.terminate(self.exec.kill_grace);
        }
        self.killers.insert(key, killer);
    }

    pub fn on_exited(&mut self, key: &AttemptKey) {
        self.running = self.running.saturating_sub(1);
        self.killers.remove(key);
        self.pending_kills.remove(key);
    }

    /// Terminate every running attempt (after the shutdown grace ran out).
    pub fn terminate_all(&self) {
        for k in self.killers.values() {
            k.terminate(self.exec.kill_grace);
        }
    }
}

/// Build the process request: templates rendered, run context in the environment.
pub(crate) fn spawn_request(
    wf: &Workflow,
    rec: &RunRecord,
    upstream: &[(String, String, String)],
    task: TaskIdx,
    attempt: u32,
) -> anyhow::Result<SpawnRequest> {
    let run_id = &rec.run_id;
    let t = wf.tasks.get(task).context("task index out of range")?;
    let params: BTreeMap<String, String> = rec.params.iter().cloned().collect();
    let scheduled = crate::views::rfc3339(rec.scheduled_ms);
    let ctx = crate::render::Context {
        run_id,
        workflow: &wf.name,
        task: &t.id,
        attempt,
        scheduled: &scheduled,
        params: &params,
        outputs: upstream,
    };
    // Values never become script text: a `script`'s placeholders are references to variables
    // set below (a `command` argument is one argv element, never parsed by a shell).
    let mut values_env = Vec::new();
    let program = match &t.exec {
        Exec::Command(argv) => argv
            .iter()
            .map(|a| ctx.render(a))
            .collect::<Result<Vec<_>, _>>()?,
        Exec::Script { script, shell } => {
            let (text, vars) = ctx.render_script(script)?;
            values_env = vars;
            exec::script_argv(shell.as_deref(), &text)
        }
    };
    let mut env: Vec<(String, String)> = Vec::new();
    env.extend(wf.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(t.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(ctx.env());
    env.extend(values_env);
    Ok(SpawnRequest {
        run_id: run_id.clone(),
        task_id: t.id.clone(),
        attempt,
        program,
        env,
        working_dir: t.working_dir.as_ref().map(PathBuf::from),
        limits: t.limits.clone(),
        timeout: t.timeout,
        secret_env: t
            .secret_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        user: t.user.clone(),
        group: t.group.clone(),
    })
}

fn spawn_failed(run_id: RunId, task: TaskIdx, attempt: u32, e: String) -> Event {
    Event::Exited {
        run_id,
        task,
        attempt,
        outcome: AttemptOutcome::SpawnFailed(e.clone()),
        reason: Some(e),
        outputs: Vec::new(),
    }
}

/// How late after its scheduled instant a scheduled run's first attempt started (debug), and
/// how long the spawn itself took (`fork`/`exec`, when known).
fn log_lateness(run_id: &str, task: TaskIdx, scheduled_at: Option<i64>, spawn: Option<Duration>) {
    if let Some(ms) = scheduled_at
        && tracing::enabled!(tracing::Level::DEBUG)
    {
        let late_us = Utc::now().timestamp_micros() - ms * 1000;
        let spawn_us = spawn.map_or(-1, |d| d.as_micros() as i64);
        tracing::debug!(run = %run_id, task, late_us, spawn_us, "scheduled spawn");
    }
}

/// Report an attempt's start to the driver, wait for its exit and report that.
async fn supervise(
    tx: mpsc::UnboundedSender<Event>,
    run_id: RunId,
    task: TaskIdx,
    attempt: u32,
    scheduled_at: Option<i64>,
    started: Result<exec::Running, exec::ExecError>,
) {
    match started {
        Ok(running) => {
            log_lateness(&run_id, task, scheduled_at, None);
            let _ = tx.send(Event::Started {
                run_id: run_id.clone(),
                task,
                attempt,
                pid: running.pid,
                limits: running.limits_mode,
                log: running.log_path.clone(),
                killer: running.killer(),
            });
            let exit = running.wait().await;
            let _ = tx.send(Event::Exited {
                run_id,
                task,
                attempt,
                outcome: exit.outcome,
                reason: exit.reason,
                outputs: exit.outputs,
            });
        }
        Err(e) => {
            let _ = tx.send(spawn_failed(run_id, task, attempt, e.to_string()));
        }
    }
}

/// Sleep for `d` with sub-millisecond precision: tokio's timer (1 ms granularity) for the bulk,
/// then a short thread sleep for the rest.
pub async fn precise_sleep(d: Duration) {
    const SPIN: Duration = Duration::from_millis(2);
    let start = std::time::Instant::now();
    if d > SPIN {
        tokio::time::sleep(d - SPIN).await;
    }
    let left = d.saturating_sub(start.elapsed());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
}
