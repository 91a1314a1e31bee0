//! The process driver: runs task attempts as local OS processes.
//!
//! # Process model
//!
//! * **One process group per attempt.** The attempt's process is started with
//!   `process_group(0)`, so it leads a new group whose id equals its pid (`pgid`). Everything
//!   it forks stays in that group unless it calls `setsid`/`setpgid` itself. All signals go to
//!   the whole group (`kill(-pgid, sig)`), so grandchildren (`sleep 1000 &`) are stopped too.
//! * **stdin** is `/dev/null`; **stdout and stderr** share one pipe (so they interleave in
//!   write order) drained by the agent into the attempt log (see [`log`]).
//! * **Environment**: the agent's environment, plus the request's `env`, plus
//!   `OUTPOST_OUTPUT=<log_dir>/<run>/<task>.<attempt>.outputs`. The file is **not** created by
//!   the agent: a task that declares outputs creates it (`echo k=v >> "$OUTPOST_OUTPUT"`; the
//!   run directory exists before the task starts). After exit, `key=value` lines in that file
//!   become the attempt's outputs; a missing file means no outputs (see [`outputs`]).
//! * **Supervision**: [`spawn`] returns a [`Running`] at once; one tokio task per attempt drains
//!   the pipe and reaps the process (no thread per process). When the leader exits, any
//!   members left in its group are killed with SIGKILL (an attempt's lifetime is its process
//!   group, like systemd's `KillMode=control-group`); the pipe is then drained to EOF, bounded
//!   by [`DRAIN_LINGER`] in case a process that escaped the group still holds it.
//! * **Stopping**: [`Killer::terminate`] sends SIGTERM to the group, then SIGKILL to the group
//!   if the leader has not exited after the grace period. Use it for timeouts, cancel and
//!   shutdown; the caller maps the [`Exit`] to `TimedOut`/`Cancelled` (see [`Exit::terminated`]).
//! * **Limits** ([`limits`]): with a memory or CPU limit, the process is started through the
//!   agent binary's hidden `__exec` wrapper, which joins a per-attempt cgroup v2 (if
//!   `cgroup_root` is a usable delegated cgroup v2 directory) or sets rlimits on itself, then
//!   execs the task (same pid, same group). The mechanism is reported as [`LimitsMode`], and
//!   when a limited attempt fails its `reason` names the limit.
//! * **Secrets** (`secret_env`): read from [`ExecConfig::secrets`] in [`prepare`], at every
//!   start (a secret missing then fails the attempt's start with a message naming it), set in
//!   the child's environment only (never argv, never the script text), and redacted as
//!   `[redacted:NAME]` from the attempt log and outputs ([`redact`]). `CREDENTIALS_DIRECTORY`
//!   is removed from the child's environment.
//! * **Run-as** (`user`/`group`): checked against [`ExecConfig::run_as`]
//!   ([`crate::run_as`]); the `__exec` wrapper switches ids and drops capabilities before the
//!   task's first instruction (see [`limits`]). A relative `working_dir` is resolved against
//!   the policy's base.
//!
//! File I/O on the attempt files (creating them, appending output, the final log rewrite)
//! uses plain `std::fs` calls inside the async tasks: they are small page-cache operations, and
//! routing each through `spawn_blocking` would cost more than the write itself.
//!
//! # Attempt files: one flat directory per run, nothing created per attempt up front
//!
//! All attempt files of a run live in `<log_dir>/<run>/`: `<task>.<attempt>.log` (plus, while a
//! large log is being capped, `<task>.<attempt>.log.1` and briefly `<task>.<attempt>.log.tmp`)
//! and `<task>.<attempt>.outputs`. Path components are sanitized (`[A-Za-z0-9._@+-]`, others →
//! `_`, plus a short hash when anything was changed, so distinct ids never share a name); the
//! attempt number has no `.` and every kind of file has its own last extension, so no
//! (task, attempt) pair can name another one's file.
//!
//! Creating directories and files is journaled metadata work that stalls behind the store's
//! `fdatasync`s, so the spawn path avoids it: the run directory is created once per run (and
//! remembered, see [`ExecConfig`]); the log is created on the first byte of output (or the
//! first `[outpost]` note), so a silent task leaves **no log file**; the outputs file is created
//! by the task if it has outputs. Every reader treats a missing log as empty.

pub mod limits;
pub mod log;
pub mod outputs;
pub mod redact;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use outpost_common::clock::{Clock, SystemClock};
use outpost_common::model::Limits;
use outpost_common::record::{AttemptOutcome, LimitsMode, UnixMillis};
use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

pub use limits::exec_wrapper_main;
pub use log::{LogFollower, read_log};

/// Default log cap: 4 MiB.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Default SIGTERM → SIGKILL grace: 10 s.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
/// How long the pipe is still read after the group is gone.
pub const DRAIN_LINGER: Duration = Duration::from_secs(2);
/// Environment variable naming the outputs file.
pub const OUTPUT_ENV: &str = "OUTPOST_OUTPUT";

/// Driver configuration.
#[derive(Clone)]
pub struct ExecConfig {
    /// Root of the attempt directories.
    pub log_dir: PathBuf,
    /// Cap of each attempt log; the tail is kept.
    pub log_max_bytes: u64,
    /// Default grace between SIGTERM and SIGKILL (callers pass it to [`Killer::terminate`]).
    pub kill_grace: Duration,
    /// A delegated cgroup v2 directory the agent may create children in.
    pub cgroup_root: Option<PathBuf>,
    /// Path of the `outpost-agent` binary, for the `__exec` limits wrapper.
    pub self_exe: PathBuf,
    /// Wall clock for `started_ms`/`ended_ms`.
    pub clock: Arc<dyn Clock>,
    /// Run directories this process created or found (so each run costs one `mkdir`).
    run_dirs: Arc<RunDirs>,
    /// Set while free disk space is low ([`crate::disk`]): attempt logs drop output meanwhile.
    pub disk_low: Arc<std::sync::atomic::AtomicBool>,
    /// Where `secret_env` values come from (none by default).
    pub secrets: crate::secrets::SecretStore,
    /// Who tasks may run as, and the base of a relative `working_dir`.
    pub run_as: crate::run_as::Policy,
}

/// The most recent run directories known to exist (bounded; shared by clones of a config).
#[derive(Debug, Default)]
struct RunDirs(std::sync::Mutex<std::collections::VecDeque<PathBuf>>);

/// How many run directories [`RunDirs`] remembers.
const RUN_DIRS_REMEMBERED: usize = 64;

impl RunDirs {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<PathBuf>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make sure `dir` exists: free when it was seen recently, else one `create_dir_all`.
    fn ensure(&self, dir: &Path) -> io::Result<()> {
        if self.lock().iter().any(|d| d == dir) {
            return Ok(());
        }
        crate::private_fs::create_dir_all(dir)?;
        let mut known = self.lock();
        if known.len() >= RUN_DIRS_REMEMBERED {
            known.pop_front();
        }
        known.push_back(dir.to_path_buf());
        Ok(())
    }

    fn forget(&self, dir: &Path) {
        self.lock().retain(|d| d != dir);
    }
}

impl std::fmt::Debug for ExecConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecConfig")
            .field("log_dir", &self.log_dir)
            .field("log_max_bytes", &self.log_max_bytes)
            .field("kill_grace", &self.kill_grace)
            .field("cgroup_root", &self.cgroup_root)
            .field("self_exe", &self.self_exe)
            .finish_non_exhaustive()
    }
}

impl ExecConfig {
    /// Defaults: 4 MiB logs, 10 s grace, no cgroup, the system clock.
    pub fn new(log_dir: impl Into<PathBuf>, self_exe: impl Into<PathBuf>) -> ExecConfig {
        ExecConfig {
            log_dir: log_dir.into(),
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            kill_grace: DEFAULT_KILL_GRACE,
            cgroup_root: None,
            self_exe: self_exe.into(),
            clock: Arc::new(SystemClock::default()),
            run_dirs: Arc::default(),
            disk_low: Arc::default(),
            secrets: Default::default(),
            run_as: Default::default(),
        }
    }

    /// Forget that a run's directory exists (call after removing it, e.g. retention).
    pub fn forget_run_dir(&self, run_id: &str) {
        self.run_dirs.forget(&run_dir(self, run_id));
    }
}

/// One attempt to run.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub run_id: String,
    pub task_id: String,
    /// 1-based.
    pub attempt: u32,
    /// argv, already rendered; `program[0]` is looked up in `PATH`. See [`script_argv`].
    pub program: Vec<String>,
    /// Added to (overriding) the agent's environment.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub limits: Limits,
    /// The task's timeout, used only to derive the fallback CPU-time rlimit.
    pub timeout: Option<Duration>,
    /// `secret_env`: variable -> secret name. Each value is read from [`ExecConfig::secrets`]
    /// here, set in the child's environment only, and redacted from its log and outputs.
    pub secret_env: Vec<(String, String)>,
    /// Run the child as this user and group (checked against [`ExecConfig::run_as`];
    /// supplementary groups cleared).
    pub user: Option<String>,
    pub group: Option<String>,
}

/// argv of a `script` task: `[shell or /bin/sh, -c, script]`.
pub fn script_argv(shell: Option<&str>, script: &str) -> Vec<String> {
    vec![
        shell.unwrap_or("/bin/sh").to_string(),
        "-c".to_string(),
        script.to_string(),
    ]
}

/// Errors starting an attempt.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("empty program (argv has no elements)")]
    EmptyProgram,
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    #[error("cannot create the run's log directory {path}: {source}")]
    RunDir { path: PathBuf, source: io::Error },
    #[error("cannot create output pipe: {0}")]
    Pipe(io::Error),
    #[error("cannot start {program:?}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{0}")]
    Secret(#[from] crate::secrets::SecretError),
    #[error("{0}")]
    RunAs(String),
    #[error("bad __exec wrapper arguments: {0}")]
    WrapperArgs(String),
}

/// A started attempt.
#[derive(Debug)]
pub struct Running {
    pub pid: u32,
    /// Process group id (equals `pid`).
    pub pgid: u32,
    pub limits_mode: LimitsMode,
    /// Limits-related notes (fallbacks, a CPU limit not enforced); also written to the log.
    pub limits_notes: Vec<String>,
    /// The attempt log; it exists only once the attempt wrote something (see the module docs).
    pub log_path: PathBuf,
    /// `$OUTPOST_OUTPUT`; it exists only if the task created it.
    pub outputs_path: PathBuf,
    pub started_ms: UnixMillis,
    killer: Killer,
    task: tokio::task::JoinHandle<Exit>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// `Exited(code)` or `Signaled(signal)`.
    pub outcome: AttemptOutcome,
    /// Why it failed, when there is more to say than the outcome (limits, termination).
    pub reason: Option<String>,
    /// Parsed `$OUTPOST_OUTPUT`.
    pub outputs: Vec<(String, String)>,
    /// Ignored output lines, log errors, leftover processes killed (also appended to the log).
    pub warnings: Vec<String>,
    /// The agent asked it to stop ([`Killer::terminate`]/[`Killer::kill`]).
    pub terminated: bool,
    /// ... and had to escalate to SIGKILL.
    pub escalated: bool,
    /// Output bytes produced (before the cap).
    pub log_bytes: u64,
    pub ended_ms: UnixMillis,
}

impl Running {
    /// A cloneable handle to stop the attempt while [`Running::wait`] is pending.
    pub fn killer(&self) -> Killer {
        self.killer.clone()
    }

    /// Wait for the attempt to end, its output to be drained and its outputs parsed.
    /// Dropping a `Running` without waiting is fine: the process is still reaped.
    pub async fn wait(self) -> Exit {
        match self.task.await {
            Ok(exit) => exit,
            Err(e) => Exit {
                outcome: AttemptOutcome::Exited(-1),
                reason: Some(format!("internal error: attempt supervisor failed: {e}")),
                outputs: Vec::new(),
                warnings: Vec::new(),
                terminated: false,
                escalated: false,
                log_bytes: 0,
                ended_ms: 0,
            },
        }
    }
}

#[derive(Debug, Default)]
struct KillState {
    requested: AtomicBool,
    escalated: AtomicBool,
}

/// Stops an attempt's process group. Cheap to clone; a no-op once the attempt has ended.
#[derive(Debug, Clone)]
pub struct Killer {
    pgid: u32,
    default_grace: Duration,
    done: watch::Receiver<bool>,
    state: Arc<KillState>,
}

impl Killer {
    /// Has the attempt's leader exited (and its group been cleaned up)?
    pub fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// SIGTERM the group now; SIGKILL the group if the attempt has not ended after `grace`
    /// (immediately when `grace` is zero). Returns at once; must be called within a tokio
    /// runtime (without one, it escalates to SIGKILL immediately). Repeated calls only
    /// re-send SIGTERM.
    pub fn terminate(&self, grace: Duration) {
        if self.is_done() {
            return;
        }
        let first = !self.state.requested.swap(true, Ordering::SeqCst);
        if grace.is_zero() {
            self.kill();
            return;
        }
        signal_group(self.pgid, Signal::TERM);
        if !first {
            return;
        }
        let this = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    let mut done = this.done.clone();
                    let ended = tokio::time::timeout(grace, done.wait_for(|d| *d)).await;
                    if ended.is_err() && !this.is_done() {
                        this.kill();
                    }
                });
            }
            Err(_) => self.kill(),
        }
    }

    /// [`Killer::terminate`] with the configured [`ExecConfig::kill_grace`].
    pub fn stop(&self) {
        self.terminate(self.default_grace);
    }

    /// The process group this killer signals.
    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// SIGKILL the group now.
    pub fn kill(&self) {
        if self.is_done() {
            return;
        }
        self.state.requested.store(true, Ordering::SeqCst);
        self.state.escalated.store(true, Ordering::SeqCst);
        signal_group(self.pgid, Signal::KILL);
    }
}

fn signal_group(pgid: u32, sig: Signal) -> bool {
    match Pid::from_raw(pgid as i32) {
        Some(pid) if pgid > 1 => kill_process_group(pid, sig).is_ok(),
        _ => false,
    }
}

fn group_alive(pgid: u32) -> bool {
    match Pid::from_raw(pgid as i32) {
        Some(pid) if pgid > 1 => test_kill_process_group(pid).is_ok(),
        _ => false,
    }
}

/// SIGTERM the process group `pgid`, then SIGKILL it if any member is still alive after
/// `grace`. Returns whether SIGKILL was needed. For a group that belongs to a [`Running`]
/// attempt prefer [`Killer::terminate`], which also stops once the attempt has been reaped.
/// (A zombie member counts as alive until its parent reaps it.)
pub async fn kill_group(pgid: u32, grace: Duration) -> bool {
    if !signal_group(pgid, Signal::TERM) {
        return false;
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if !group_alive(pgid) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal_group(pgid, Signal::KILL)
}

/// Replace characters unsafe in a path component; append a short hash when anything changed.
pub fn sanitize_component(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == s && !clean.is_empty() && clean != "." && clean != ".." {
        clean
    } else {
        let hash = blake3::hash(s.as_bytes()).to_hex();
        format!("{}~{}", clean.trim_start_matches('.'), &hash.as_str()[..8])
    }
}

/// `<log_dir>/<run>`: the directory of all attempt files of a run (removed by retention).
pub fn run_dir(cfg: &ExecConfig, run_id: &str) -> PathBuf {
    cfg.log_dir.join(sanitize_component(run_id))
}

/// `<task>.<attempt>`, the common stem of an attempt's files.
fn attempt_stem(task_id: &str, attempt: u32) -> String {
    format!("{}.{attempt}", sanitize_component(task_id))
}

/// `<log_dir>/<run>/<task>.<attempt>.log`.
pub fn log_path(cfg: &ExecConfig, run_id: &str, task_id: &str, attempt: u32) -> PathBuf {
    run_dir(cfg, run_id).join(format!("{}.log", attempt_stem(task_id, attempt)))
}

/// `<log_dir>/<run>/<task>.<attempt>.outputs` (the `$OUTPOST_OUTPUT` of the attempt).
pub fn outputs_path(cfg: &ExecConfig, run_id: &str, task_id: &str, attempt: u32) -> PathBuf {
    run_dir(cfg, run_id).join(format!("{}.outputs", attempt_stem(task_id, attempt)))
}

fn wall_ms(clock: &dyn Clock) -> UnixMillis {
    clock.wall().timestamp_millis()
}

/// Start an attempt (see the module docs). Returns as soon as the process runs.
///
/// The same as [`prepare`] then [`Prepared::start`].
pub async fn spawn(cfg: &ExecConfig, req: SpawnRequest) -> Result<Running, ExecError> {
    prepare(cfg, req)?.start()
}

/// An attempt ready to start: its run directory, output pipe and command are in place; only
/// the process is missing. Lets a caller do the slow part (the run directory, the cgroup) ahead
/// of a precise start instant. Dropping it starts nothing (a cgroup created for it is removed;
/// limits notes already written to the log stay).
pub struct Prepared {
    cmd: tokio::process::Command,
    log_path: PathBuf,
    outputs_path: PathBuf,
    logw: log::LogWriter,
    redactor: redact::Redactor,
    pipe: tokio::net::unix::pipe::Receiver,
    plan: limits::LimitsPlan,
    /// Removes the attempt's cgroup if the process never starts.
    cgroup_guard: CgroupGuard,
    /// `program[0]`, or how the wrapper runs it (for the spawn error).
    program: String,
    kill_grace: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("log_path", &self.log_path)
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

struct CgroupGuard(Option<PathBuf>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cg) = self.0.take() {
            let _ = std::fs::remove_dir(cg);
        }
    }
}

/// Everything [`spawn`] does before starting the process (see [`Prepared`]). Synchronous: at
/// most one directory creation per run (and the cgroup directory, with limits); no attempt
/// file is created here.
pub fn prepare(cfg: &ExecConfig, req: SpawnRequest) -> Result<Prepared, ExecError> {
    if req.program.is_empty() {
        return Err(ExecError::EmptyProgram);
    }
    // Read now, at each start: a secret changed or removed since the deploy applies here.
    let secrets = cfg
        .secrets
        .resolve(req.secret_env.iter().map(|(k, v)| (k, v)))?;
    let run_as = cfg
        .run_as
        .resolve(req.user.as_deref(), req.group.as_deref())
        .map_err(ExecError::RunAs)?;
    let working_dir = cfg.run_as.working_dir(req.working_dir.as_deref());
    // The task may create `$OUTPOST_OUTPUT` in it, so the run directory must exist now.
    let dir = run_dir(cfg, &req.run_id);
    cfg.run_dirs
        .ensure(&dir)
        .map_err(|source| ExecError::RunDir { path: dir, source })?;
    let log_path = log_path(cfg, &req.run_id, &req.task_id, req.attempt);
    let outputs_path = outputs_path(cfg, &req.run_id, &req.task_id, req.attempt);
    let mut logw = log::LogWriter::new(&log_path, cfg.log_max_bytes);
    logw.drop_while(cfg.disk_low.clone());
    let redactor = redact::Redactor::new(&secrets);

    // The output pipe (before anything that would need undoing if it failed). The read end is
    // made non-blocking here (one `fcntl`) instead of by tokio's checked constructor (an
    // `fstat` and two `fcntl`s); the write ends stay blocking for the task.
    let (reader, writer) = io::pipe().map_err(ExecError::Pipe)?;
    rustix::fs::fcntl_setfl(&reader, rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| ExecError::Pipe(e.into()))?;
    let writer2 = writer.try_clone().map_err(ExecError::Pipe)?;
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(reader.into())
        .map_err(ExecError::Pipe)?;

    let cg_name = format!(
        "outpost.{}.{}.{}",
        sanitize_component(&req.run_id),
        sanitize_component(&req.task_id),
        req.attempt
    );
    let plan = limits::plan(
        &req.limits,
        req.timeout,
        cfg.cgroup_root.as_deref(),
        &cg_name,
    )?;
    for note in &plan.notes {
        let _ = logw.write(format!("[outpost] {note}\n").as_bytes());
    }

    let mut wrapper_args = plan.wrapper_args();
    if let Some(r) = run_as {
        wrapper_args.extend([
            "--uid".to_string(),
            r.uid.to_string(),
            "--gid".to_string(),
            r.gid.to_string(),
        ]);
    }
    let mut cmd = if wrapper_args.is_empty() {
        let mut c = tokio::process::Command::new(&req.program[0]);
        c.args(&req.program[1..]);
        c
    } else {
        let mut c = tokio::process::Command::new(&cfg.self_exe);
        c.arg("__exec")
            .args(&wrapper_args)
            .arg("--")
            .args(&req.program);
        c
    };
    // The unit's credentials are the agent's: a task gets only the secrets it names.
    cmd.env_remove(crate::secrets::CREDENTIALS_ENV)
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .envs(secrets.iter().map(|s| (&s.env, s.os_value())))
        .env(OUTPUT_ENV, &outputs_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0)
        .kill_on_drop(false);
    if let Some(wd) = &working_dir {
        cmd.current_dir(wd);
    }
    let program = if wrapper_args.is_empty() {
        req.program[0].clone()
    } else {
        format!("{} (via {} __exec)", req.program[0], cfg.self_exe.display())
    };
    Ok(Prepared {
        cmd,
        log_path,
        outputs_path,
        logw,
        redactor,
        pipe,
        cgroup_guard: CgroupGuard(plan.cgroup.clone()),
        plan,
        program,
        kill_grace: cfg.kill_grace,
        clock: cfg.clock.clone(),
    })
}

impl Prepared {
    /// Start the process now. Must be called within a tokio runtime (the child is reaped by it
    /// and supervised by a tokio task); it blocks only for the `fork`/`exec` itself.
    pub fn start(self) -> Result<Running, ExecError> {
        let Prepared {
            mut cmd,
            log_path,
            outputs_path,
            mut logw,
            redactor,
            pipe,
            plan,
            mut cgroup_guard,
            program,
            kill_grace,
            clock,
        } = self;
        let started_ms = wall_ms(clock.as_ref());
        let spawned = cmd.spawn();
        // Close the parent's copies of the write end, or the pipe would never reach EOF.
        drop(cmd);
        let child = match spawned {
            Ok(c) => c,
            Err(source) => {
                drop(cgroup_guard);
                let err = ExecError::Spawn { program, source };
                // Leave the cause in the attempt log too.
                let _ = logw.write(format!("[outpost] {err}\n").as_bytes());
                let _ = logw.finish();
                return Err(err);
            }
        };
        // The process owns the cgroup now (the supervisor removes it after the exit).
        cgroup_guard.0 = None;
        let cfg = StartCfg { kill_grace, clock };
        Ok(supervise(
            &cfg,
            child,
            pipe,
            (logw, redactor),
            plan,
            log_path,
            outputs_path,
            started_ms,
        ))
    }
}

struct StartCfg {
    kill_grace: Duration,
    clock: Arc<dyn Clock>,
}

#[allow(clippy::too_many_arguments)]
fn supervise(
    cfg: &StartCfg,
    child: tokio::process::Child,
    pipe: tokio::net::unix::pipe::Receiver,
    (logw, redactor): (log::LogWriter, redact::Redactor),
    plan: limits::LimitsPlan,
    log_path: PathBuf,
    outputs_path: PathBuf,
    started_ms: UnixMillis,
) -> Running {
    let pid = child.id().unwrap_or(0);

    let (done_tx, done_rx) = watch::channel(false);
    let killer = Killer {
        pgid: pid,
        default_grace: cfg.kill_grace,
        done: done_rx,
        state: Arc::new(KillState::default()),
    };
    let limits_mode = plan.mode;
    let limits_notes = plan.notes.clone();
    let sup = Supervisor {
        child,
        pipe,
        log: logw,
        redactor,
        pgid: pid,
        plan,
        outputs_path: outputs_path.clone(),
        done: done_tx,
        kill_state: killer.state.clone(),
        clock: cfg.clock.clone(),
    };
    let task = tokio::spawn(sup.run());
    Running {
        pid,
        pgid: pid,
        limits_mode,
        limits_notes,
        log_path,
        outputs_path,
        started_ms,
        killer,
        task,
    }
}

struct Supervisor {
    child: tokio::process::Child,
    pipe: tokio::net::unix::pipe::Receiver,
    log: log::LogWriter,
    redactor: redact::Redactor,
    pgid: u32,
    plan: limits::LimitsPlan,
    outputs_path: PathBuf,
    done: watch::Sender<bool>,
    kill_state: Arc<KillState>,
    clock: Arc<dyn Clock>,
}

struct Drain {
    buf: Vec<u8>,
    open: bool,
    log_ok: bool,
    warnings: Vec<String>,
}

impl Drain {
    fn on_read(
        &mut self,
        r: io::Result<usize>,
        log: &mut log::LogWriter,
        redactor: &mut redact::Redactor,
    ) {
        match r {
            Ok(0) => self.open = false,
            Ok(n) => {
                let out = redactor.push(&self.buf[..n]);
                self.write(&out, log);
            }
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                self.open = false;
                self.warnings
                    .push(format!("reading task output failed: {e}"));
            }
        }
    }

    fn write(&mut self, out: &[u8], log: &mut log::LogWriter) {
        if self.log_ok
            && !out.is_empty()
            && let Err(e) = log.write(out)
        {
            // Keep draining (so the task never blocks on a full pipe) but stop logging.
            self.log_ok = false;
            self.warnings
                .push(format!("log write failed, further output discarded: {e}"));
        }
    }
}

impl Supervisor {
    async fn run(mut self) -> Exit {
        let mut d = Drain {
            buf: vec![0u8; 16 * 1024],
            open: true,
            log_ok: true,
            warnings: Vec::new(),
        };
        let status = loop {
            tokio::select! {
                r = self.pipe.read(&mut d.buf), if d.open => d.on_read(r, &mut self.log, &mut self.redactor),
                s = self.child.wait() => break s,
            }
        };
        // The leader is gone: anything left in its group dies with it.
        if group_alive(self.pgid) {
            signal_group(self.pgid, Signal::KILL);
            d.warnings
                .push("processes left in the attempt's process group were killed (SIGKILL)".into());
        }
        let _ = self.done.send(true);
        if d.open {
            let linger = tokio::time::sleep(DRAIN_LINGER);
            tokio::pin!(linger);
            while d.open {
                tokio::select! {
                    r = self.pipe.read(&mut d.buf) => d.on_read(r, &mut self.log, &mut self.redactor),
                    _ = &mut linger => {
                        d.warnings.push(format!(
                            "output pipe still held open {} s after exit by a process outside the attempt's group; stopped reading",
                            DRAIN_LINGER.as_secs()
                        ));
                        break;
                    }
                }
            }
        }
        let tail = self.redactor.finish();
        d.write(&tail, &mut self.log);
        let ended_ms = wall_ms(self.clock.as_ref());
        let terminated = self.kill_state.requested.load(Ordering::SeqCst);
        let escalated = self.kill_state.escalated.load(Ordering::SeqCst);

        let mut parsed = outputs::read_outputs(&self.outputs_path);
        if !self.redactor.is_empty() {
            for (_, v) in &mut parsed.outputs {
                *v = self.redactor.redact_str(v);
            }
            if let Err(e) = outputs::rewrite(&self.outputs_path, &parsed.outputs) {
                parsed
                    .warnings
                    .push(format!("cannot rewrite the outputs file redacted: {e}"));
            }
        }
        let mut warnings = d.warnings;
        warnings.extend(parsed.warnings);

        let mut oom_kills = 0;
        if let Some(cg) = &self.plan.cgroup {
            oom_kills = limits::cgroup_oom_kills(cg);
            if let Err(e) = limits::remove_cgroup(cg).await {
                warnings.push(format!("cannot remove cgroup {}: {e}", cg.display()));
            }
        }

        let (outcome, reason) = match status {
            Ok(st) => {
                let outcome = outcome_of(st);
                let reason = failure_reason(&outcome, &self.plan, oom_kills, terminated, escalated);
                (outcome, reason)
            }
            Err(e) => (
                AttemptOutcome::Exited(-1),
                Some(format!(
                    "internal error: waiting for the process failed: {e}"
                )),
            ),
        };
        if d.log_ok {
            for w in &warnings {
                let _ = self
                    .log
                    .write(format!("[outpost] warning: {w}\n").as_bytes());
            }
        }
        let log_bytes = self.log.total();
        if let Err(e) = self.log.finish() {
            warnings.push(format!("cannot finalize log: {e}"));
        }
        Exit {
            outcome,
            reason,
            outputs: parsed.outputs,
            warnings,
            terminated,
            escalated,
            log_bytes,
            ended_ms,
        }
    }
}

fn outcome_of(st: std::process::ExitStatus) -> AttemptOutcome {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => AttemptOutcome::Exited(c),
        (None, Some(s)) => AttemptOutcome::Signaled(s),
        (None, None) => AttemptOutcome::Exited(-1),
    }
}

/// Conventional name of a signal number (`SIGKILL`), or `signal N`.
pub fn signal_name(sig: i32) -> String {
    let name = match Signal::from_named_raw(sig) {
        Some(s) if s == Signal::HUP => "SIGHUP",
        Some(s) if s == Signal::INT => "SIGINT",
        Some(s) if s == Signal::QUIT => "SIGQUIT",
        Some(s) if s == Signal::ILL => "SIGILL",
        Some(s) if s == Signal::TRAP => "SIGTRAP",
        Some(s) if s == Signal::ABORT => "SIGABRT",
        Some(s) if s == Signal::BUS => "SIGBUS",
        Some(s) if s == Signal::FPE => "SIGFPE",
        Some(s) if s == Signal::KILL => "SIGKILL",
        Some(s) if s == Signal::USR1 => "SIGUSR1",
        Some(s) if s == Signal::SEGV => "SIGSEGV",
        Some(s) if s == Signal::USR2 => "SIGUSR2",
        Some(s) if s == Signal::PIPE => "SIGPIPE",
        Some(s) if s == Signal::ALARM => "SIGALRM",
        Some(s) if s == Signal::TERM => "SIGTERM",
        Some(s) if s == Signal::XCPU => "SIGXCPU",
        Some(s) if s == Signal::XFSZ => "SIGXFSZ",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

fn describe_outcome(o: &AttemptOutcome) -> String {
    match o {
        AttemptOutcome::Exited(c) => format!("process exited with code {c}"),
        AttemptOutcome::Signaled(s) => format!("killed by {}", signal_name(*s)),
        other => format!("{other:?}"),
    }
}

fn failure_reason(
    outcome: &AttemptOutcome,
    plan: &limits::LimitsPlan,
    oom_kills: u64,
    terminated: bool,
    escalated: bool,
) -> Option<String> {
    if outcome.is_success() {
        return None;
    }
    let what = describe_outcome(outcome);
    if terminated {
        return Some(if escalated {
            format!("stopped by the agent: SIGTERM, then SIGKILL after the grace period; {what}")
        } else {
            format!("stopped by the agent (SIGTERM); {what}")
        });
    }
    if oom_kills > 0
        && let Some(m) = plan.memory
    {
        return Some(format!(
            "killed by the OOM killer: memory limit {} (cgroup v2 memory.max); {what}",
            limits::fmt_bytes(m)
        ));
    }
    if let AttemptOutcome::Signaled(s) = outcome
        && Signal::from_named_raw(*s) == Some(Signal::XCPU)
        && let Some(secs) = plan.cpu_secs
    {
        return Some(format!(
            "CPU time limit {secs} s exceeded (rlimit RLIMIT_CPU): {what}"
        ));
    }
    match plan.describe() {
        Some(limits) => Some(format!("{limits}; {what}")),
        None => match outcome {
            AttemptOutcome::Signaled(_) => Some(what),
            _ => None,
        },
    }
}

/// Read the outputs file of a finished attempt (convenience for callers that recover after a
/// restart). A task that wrote no outputs has no file: that reads as no outputs.
pub fn read_attempt_outputs(
    cfg: &ExecConfig,
    run_id: &str,
    task_id: &str,
    attempt: u32,
) -> outputs::ParsedOutputs {
    outputs::read_outputs(&outputs_path(cfg, run_id, task_id, attempt))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
