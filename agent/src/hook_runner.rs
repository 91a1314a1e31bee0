//! The hook runner: runs the hook jobs committed in the store (`outpost_agent_core::hooks`),
//! each once, and marks each finished durably.
//!
//! A thread of its own (hooks block on processes; the driver loop never waits for one). It is
//! poked after every commit that wrote a job and at start-up; each poke reads the store's
//! unfinished jobs and starts those not already running, one thread per job, whose commands run
//! in order. A job is marked finished (durably) once its commands all ended, whatever their
//! exit; a job whose agent stopped meanwhile (a crash, kill -9) is unfinished in the store and
//! runs again at the next start.
//!
//! A command runs without a shell unless it is a `script`, in its own process group, with the
//! agent's environment plus the job's `OUTPOST_*` variables; its output goes to the job's log
//! file beside the run's logs; past its timeout its group gets SIGTERM, then SIGKILL.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use outpost_agent_core::hooks::{HookCommand, HookJob};
use outpost_common::clock::Clock;
use rustix::process::{Pid, Signal, kill_process_group};

use crate::exec::ExecConfig;
use crate::store::Store;

/// How long a timed-out hook's group has between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// How often an idle runner looks at the store anyway (a poke lost to a full commit pipeline
/// costs at most this).
const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// Handle of the runner thread: [`HookRunner::poke`] after a commit that wrote jobs.
///
/// The runner and its job threads hold the store only weakly (upgraded for a read or a write):
/// the driver's drop closes the redb file cleanly (see the committer), and a job still running
/// then stays unfinished in the store, to run again at the next start.
pub struct HookRunner {
    tx: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    running: Arc<Mutex<HashSet<String>>>,
    store: Weak<Store>,
}

impl Drop for HookRunner {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the hook runner thread panicked");
        }
    }
}

impl HookRunner {
    /// Start the runner; it looks at the store at once (jobs left unfinished by a stop).
    pub fn start(store: Arc<Store>, exec: ExecConfig, clock: Arc<dyn Clock>) -> HookRunner {
        let (tx, rx) = mpsc::channel::<()>();
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let set = running.clone();
        let store = Arc::downgrade(&store);
        let handle = store.clone();
        let spawned = std::thread::Builder::new()
            .name("outpost-hooks".into())
            .spawn(move || {
                loop {
                    start_unfinished(&store, &exec, &clock, &set);
                    match rx.recv_timeout(RESCAN_EVERY) {
                        Ok(()) => while rx.try_recv().is_ok() {},
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!("cannot start the hook runner: {e}; hooks do not run");
                None
            }
        };
        HookRunner {
            tx: Some(tx),
            thread,
            running,
            store: handle,
        }
    }

    /// Jobs were committed: run them.
    pub fn poke(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(());
        }
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Wait until every committed job has finished (or `timeout`), e.g. before a foreground
    /// run exits. Each job is bounded by its commands' timeouts.
    pub fn wait_idle(&self, timeout: Duration) {
        let end = Instant::now() + timeout;
        let busy = || {
            self.running() > 0
                || self
                    .store
                    .upgrade()
                    .is_some_and(|s| s.unfinished_hook_jobs().is_ok_and(|j| !j.is_empty()))
        };
        while busy() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn start_unfinished(
    store: &Weak<Store>,
    exec: &ExecConfig,
    clock: &Arc<dyn Clock>,
    running: &Arc<Mutex<HashSet<String>>>,
) {
    let Some(strong) = store.upgrade() else {
        return;
    };
    let jobs = strong.unfinished_hook_jobs();
    drop(strong);
    let jobs = match jobs {
        Ok(j) => j,
        Err(e) => {
            tracing::error!("reading hook jobs: {e}");
            return;
        }
    };
    for job in jobs {
        if !running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.key.clone())
        {
            continue;
        }
        let (store, clock, set) = (store.clone(), clock.clone(), running.clone());
        let log = crate::exec::run_dir(exec, &job.run_id).join(&job.log_name);
        let key = job.key.clone();
        let spawned = std::thread::Builder::new()
            .name("outpost-hook".into())
            .spawn(move || {
                run_job(&job, &log);
                let now_ms = clock.wall().timestamp_millis();
                // The agent stopping (the store closed): left unfinished, it runs again at the
                // next start.
                let result = store.upgrade().map(|s| s.finish_hook_job(&job.key, now_ms));
                if let Some(Err(e)) = result {
                    // Left unfinished: it runs again at the next start.
                    tracing::error!(hook = %job.log_name, "cannot mark the hook finished: {e}");
                }
                set.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&job.key);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a hook thread: {e}");
            running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
    }
}

fn run_job(job: &HookJob, log: &PathBuf) {
    if let Some(dir) = log.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        tracing::warn!(dir = %dir.display(), "hook log directory: {e}");
    }
    for cmd in &job.commands {
        match run_command(job, cmd, log) {
            Ok(status) => tracing::info!(
                hook = %job.log_name,
                program = %cmd.argv.first().map_or("", String::as_str),
                "hook ended: {status}"
            ),
            Err(e) => tracing::warn!(hook = %job.log_name, "hook did not run: {e}"),
        }
    }
}

fn run_command(job: &HookJob, cmd: &HookCommand, log: &PathBuf) -> std::io::Result<String> {
    let Some((program, args)) = cmd.argv.split_first() else {
        return Ok("empty command".into());
    };
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let mut child = Command::new(program)
        .args(args)
        // The unit's systemd credentials are the agent's (tasks get secrets by name only).
        .env_remove(crate::secrets::CREDENTIALS_ENV)
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()?;
    let limit = Duration::from_millis(cmd.timeout_ms);
    let start = Instant::now();
    let mut termed: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(if termed.is_some() {
                format!("timed out after {limit:?} ({status})")
            } else {
                status.to_string()
            });
        }
        let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
        match termed {
            None if start.elapsed() >= limit => {
                if let Some(g) = group {
                    let _ = kill_process_group(g, Signal::TERM);
                }
                termed = Some(Instant::now());
            }
            Some(t) if t.elapsed() >= KILL_GRACE => {
                if let Some(g) = group {
                    let _ = kill_process_group(g, Signal::KILL);
                }
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
