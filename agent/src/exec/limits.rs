//! Resource limits: cgroup v2 when a delegated directory is usable, else resource limits
//! applied by the `__exec` wrapper.
//!
//! `pre_exec` is unsafe (and `unsafe_code` is forbidden), so limits are applied by re-executing
//! the agent binary as a tiny wrapper: `outpost-agent __exec [--rlimit-as BYTES]
//! [--rlimit-cpu SECS] [--cgroup DIR] -- argv...`. The wrapper runs *as the attempt's process*
//! (same pid, same process group, same stdio and environment): it joins the cgroup by writing
//! its own pid to `DIR/cgroup.procs`, calls `setrlimit` on itself, then `exec`s the argv, which
//! replaces it. Limits are therefore in force before the task's first instruction, and every
//! process the task forks inherits them. Exit codes of the wrapper itself follow the coreutils
//! convention (`env`, `nice`): 125 = could not apply the limits, 126 = argv not executable,
//! 127 = argv not found; the wrapper prints the cause to stderr, i.e. into the attempt log.
//!
//! Fallback semantics: `RLIMIT_AS` caps the address space at the memory limit (an allocating
//! program typically gets `ENOMEM` and exits non-zero or aborts). An rlimit cannot express a CPU
//! *share*: the fallback caps CPU *time* instead, at `ceil(2 × cpu × timeout)` seconds (soft;
//! SIGXCPU) and 5 s more (hard; SIGKILL) — generous, since the timeout kills the task first if
//! it respects its share. A task with a CPU limit but no timeout gets no CPU rlimit, and the
//! attempt says so.
//!
//! Run-as (`user`/`group`, see [`crate::run_as`]) goes through the same wrapper:
//! `--uid UID --gid GID`. After joining the cgroup and setting rlimits (still as the agent's
//! user, which owns the cgroup), it clears its supplementary groups, sets its real, effective
//! and saved gid then uid, and empties its capability sets and its ambient set, so the task
//! inherits none of the agent's CAP_SETUID/CAP_SETGID (an agent user that holds them as
//! ambient capabilities would otherwise pass them on: a uid change between two non-root users
//! keeps capabilities).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_common::model::Limits;
use outpost_common::record::LimitsMode;

use super::ExecError;

/// `cpu.max` period, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Extra CPU seconds between the soft (SIGXCPU) and hard (SIGKILL) `RLIMIT_CPU`.
pub const CPU_HARD_EXTRA_SECS: u64 = 5;

/// How limits will be applied to one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsPlan {
    /// The mechanism in force.
    pub mode: LimitsMode,
    /// Memory limit in bytes, when enforced.
    pub memory: Option<u64>,
    /// CPU share (cgroup) when enforced by `cpu.max`.
    pub cpu_share: Option<f64>,
    /// Soft CPU-time rlimit in seconds, when applied.
    pub cpu_secs: Option<u64>,
    /// The attempt's cgroup, when [`LimitsMode::CgroupV2`].
    pub cgroup: Option<PathBuf>,
    /// Things worth telling the user (fallbacks, limits not enforced).
    pub notes: Vec<String>,
}

impl LimitsPlan {
    /// No limits requested.
    pub fn none() -> LimitsPlan {
        LimitsPlan {
            mode: LimitsMode::None,
            memory: None,
            cpu_share: None,
            cpu_secs: None,
            cgroup: None,
            notes: Vec::new(),
        }
    }

    /// Does the attempt need the `__exec` wrapper?
    pub fn needs_wrapper(&self) -> bool {
        !self.wrapper_args().is_empty()
    }

    /// Wrapper arguments (after `__exec`, before `--`).
    pub fn wrapper_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.mode == LimitsMode::Rlimit {
            if let Some(m) = self.memory {
                args.push("--rlimit-as".to_string());
                args.push(m.to_string());
            }
            if let Some(s) = self.cpu_secs {
                args.push("--rlimit-cpu".to_string());
                args.push(s.to_string());
            }
        }
        if let Some(dir) = &self.cgroup {
            args.push("--cgroup".to_string());
            args.push(dir.to_string_lossy().into_owned());
        }
        args
    }

    /// One-line description of the limits in force, e.g. `memory limit 64 MiB (rlimit RLIMIT_AS)`.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        match self.mode {
            LimitsMode::None => return None,
            LimitsMode::CgroupV2 => {
                if let Some(m) = self.memory {
                    parts.push(format!(
                        "memory limit {} (cgroup v2 memory.max)",
                        fmt_bytes(m)
                    ));
                }
                if let Some(c) = self.cpu_share {
                    parts.push(format!("cpu limit {c} CPUs (cgroup v2 cpu.max)"));
                }
            }
            LimitsMode::Rlimit => {
                if let Some(m) = self.memory {
                    parts.push(format!("memory limit {} (rlimit RLIMIT_AS)", fmt_bytes(m)));
                }
                if let Some(s) = self.cpu_secs {
                    parts.push(format!("CPU time limit {s} s (rlimit RLIMIT_CPU)"));
                }
            }
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join(", "))
        }
    }
}

/// `64 MiB`, `1 GiB`, `1536 KiB`, `1000 bytes`.
pub fn fmt_bytes(n: u64) -> String {
    const K: u64 = 1024;
    if n >= K * K * K && n.is_multiple_of(K * K * K) {
        format!("{} GiB", n / (K * K * K))
    } else if n >= K * K && n.is_multiple_of(K * K) {
        format!("{} MiB", n / (K * K))
    } else if n >= K && n.is_multiple_of(K) {
        format!("{} KiB", n / K)
    } else {
        format!("{n} bytes")
    }
}

/// The soft CPU-time rlimit for a CPU share and a timeout (see the module docs).
pub fn cpu_rlimit_secs(cpu: f64, timeout: Duration) -> u64 {
    let secs = (2.0 * cpu * timeout.as_secs_f64()).ceil();
    if secs.is_finite() && secs >= 1.0 {
        secs as u64
    } else {
        1
    }
}

/// Decide how to apply `limits` and prepare the cgroup if one is used.
/// `cgroup_name` names the attempt's child cgroup under `cgroup_root`.
pub fn plan(
    limits: &Limits,
    timeout: Option<Duration>,
    cgroup_root: Option<&Path>,
    cgroup_name: &str,
) -> Result<LimitsPlan, ExecError> {
    if let Some(m) = limits.memory
        && m == 0
    {
        return Err(ExecError::InvalidLimits(
            "memory limit must be > 0 bytes".into(),
        ));
    }
    if let Some(c) = limits.cpu
        && !(c.is_finite() && c > 0.0)
    {
        return Err(ExecError::InvalidLimits(format!(
            "cpu limit must be a positive number, got {c}"
        )));
    }
    let mut plan = LimitsPlan::none();
    if limits.memory.is_none() && limits.cpu.is_none() {
        return Ok(plan);
    }
    if let Some(root) = cgroup_root {
        match prepare_cgroup(root, cgroup_name, limits.memory, limits.cpu) {
            Ok(dir) => {
                plan.mode = LimitsMode::CgroupV2;
                plan.memory = limits.memory;
                plan.cpu_share = limits.cpu;
                plan.cgroup = Some(dir);
                return Ok(plan);
            }
            Err(why) => plan.notes.push(format!(
                "cgroup v2 not used ({why}); falling back to rlimits"
            )),
        }
    }
    plan.memory = limits.memory;
    if let Some(cpu) = limits.cpu {
        match timeout {
            Some(t) => plan.cpu_secs = Some(cpu_rlimit_secs(cpu, t)),
            None => plan.notes.push(format!(
                "cpu limit {cpu} not enforced: an rlimit cannot express a CPU share and the task has no timeout to derive a CPU-time cap from"
            )),
        }
    }
    if plan.memory.is_some() || plan.cpu_secs.is_some() {
        plan.mode = LimitsMode::Rlimit;
    }
    Ok(plan)
}

/// Check that `root` is a usable delegated cgroup v2 directory with the needed controllers,
/// and create the attempt's child cgroup with `memory.max` / `cpu.max` written.
pub fn prepare_cgroup(
    root: &Path,
    name: &str,
    memory: Option<u64>,
    cpu: Option<f64>,
) -> Result<PathBuf, String> {
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).map_err(|e| {
        format!(
            "{} is not a cgroup v2 directory: cgroup.controllers: {e}",
            root.display()
        )
    })?;
    let mut needed = Vec::new();
    if memory.is_some() {
        needed.push("memory");
    }
    if cpu.is_some() {
        needed.push("cpu");
    }
    for c in &needed {
        if !controllers.split_whitespace().any(|x| x == *c) {
            return Err(format!(
                "controller {c} not delegated to {}",
                root.display()
            ));
        }
    }
    let subtree = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    for c in &needed {
        if !subtree.split_whitespace().any(|x| x == *c) {
            std::fs::write(root.join("cgroup.subtree_control"), format!("+{c}"))
                .map_err(|e| format!("cannot enable controller {c} in {}: {e}", root.display()))?;
        }
    }
    let dir = root.join(name);
    if let Err(e) = std::fs::create_dir(&dir) {
        if e.kind() == io::ErrorKind::AlreadyExists {
            // A stale cgroup from an interrupted earlier run of this attempt.
            std::fs::remove_dir(&dir)
                .map_err(|e| format!("stale cgroup {}: {e}", dir.display()))?;
            std::fs::create_dir(&dir)
                .map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
        } else {
            return Err(format!("cannot create cgroup {}: {e}", dir.display()));
        }
    }
    let write = |file: &str, value: String| -> Result<(), String> {
        std::fs::write(dir.join(file), &value).map_err(|e| {
            let _ = std::fs::remove_dir(&dir);
            format!(
                "cannot write {value:?} to {}: {e}",
                dir.join(file).display()
            )
        })
    };
    if let Some(m) = memory {
        write("memory.max", m.to_string())?;
        // Best effort: without this, "memory" could spill into swap. Absent without swap.
        let _ = std::fs::write(dir.join("memory.swap.max"), "0");
    }
    if let Some(c) = cpu {
        let quota = ((c * CPU_PERIOD_US as f64).round() as u64).max(1000);
        write("cpu.max", format!("{quota} {CPU_PERIOD_US}"))?;
    }
    Ok(dir)
}

/// How many OOM kills the cgroup recorded (`memory.events` `oom_kill`).
pub fn cgroup_oom_kills(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("memory.events"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Remove the attempt's cgroup, retrying briefly while killed members leave it.
pub async fn remove_cgroup(dir: &Path) -> io::Result<()> {
    let mut last = Ok(());
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Err(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last
}

/// Parsed `__exec` wrapper arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapperArgs {
    /// `RLIMIT_AS`, bytes.
    pub rlimit_as: Option<u64>,
    /// Soft `RLIMIT_CPU`, seconds.
    pub rlimit_cpu: Option<u64>,
    /// cgroup to join.
    pub cgroup: Option<PathBuf>,
    /// Become this uid and gid (with no supplementary groups and no capabilities).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The program to exec; never empty.
    pub argv: Vec<String>,
}

/// Parse the wrapper's arguments (those after `__exec`).
pub fn parse_wrapper_args(args: &[String]) -> Result<WrapperArgs, ExecError> {
    let bad = |m: String| ExecError::WrapperArgs(m);
    let mut out = WrapperArgs {
        rlimit_as: None,
        rlimit_cpu: None,
        cgroup: None,
        uid: None,
        gid: None,
        argv: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => {
                out.argv = it.cloned().collect();
                if out.argv.is_empty() {
                    return Err(bad("no program after --".into()));
                }
                return Ok(out);
            }
            "--rlimit-as" | "--rlimit-cpu" => {
                let v = it.next().ok_or_else(|| bad(format!("{a} needs a value")))?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| bad(format!("{a}: not a number: {v:?}")))?;
                if a == "--rlimit-as" {
                    out.rlimit_as = Some(n);
                } else {
                    out.rlimit_cpu = Some(n);
                }
            }
            "--uid" | "--gid" => {
                let v = it.next().ok_or_else(|| bad(format!("{a} needs a value")))?;
                let n: u32 = v
                    .parse()
                    .map_err(|_| bad(format!("{a}: not a number: {v:?}")))?;
                if a == "--uid" {
                    out.uid = Some(n);
                } else {
                    out.gid = Some(n);
                }
            }
            "--cgroup" => {
                let v = it
                    .next()
                    .ok_or_else(|| bad("--cgroup needs a value".into()))?;
                out.cgroup = Some(PathBuf::from(v));
            }
            other => return Err(bad(format!("unknown argument {other:?}"))),
        }
    }
    Err(bad("missing -- before the program".into()))
}

fn apply(w: &WrapperArgs) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    if let Some(dir) = &w.cgroup {
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| format!("cannot join cgroup {}: {e}", dir.display()))?;
    }
    if let Some(bytes) = w.rlimit_as {
        setrlimit(
            Resource::As,
            Rlimit {
                current: Some(bytes),
                maximum: Some(bytes),
            },
        )
        .map_err(|e| format!("setrlimit(RLIMIT_AS, {bytes}): {e}"))?;
    }
    if let Some(secs) = w.rlimit_cpu {
        setrlimit(
            Resource::Cpu,
            Rlimit {
                current: Some(secs),
                maximum: Some(secs.saturating_add(CPU_HARD_EXTRA_SECS)),
            },
        )
        .map_err(|e| format!("setrlimit(RLIMIT_CPU, {secs}): {e}"))?;
    }
    if let (Some(uid), Some(gid)) = (w.uid, w.gid) {
        become_user(uid, gid)?;
    }
    Ok(())
}

/// Drop to `uid`/`gid` for good: no supplementary groups, no capabilities (this process is
/// single-threaded, so the per-thread calls cover it).
fn become_user(uid: u32, gid: u32) -> Result<(), String> {
    use rustix::process::{Gid, Uid};
    use rustix::thread::{self, CapabilitySet, CapabilitySets};
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    thread::set_thread_groups(&[]).map_err(|e| format!("setgroups([]): {e}"))?;
    thread::set_thread_res_gid(g, g, g).map_err(|e| format!("setresgid({gid}): {e}"))?;
    thread::set_thread_res_uid(u, u, u).map_err(|e| format!("setresuid({uid}): {e}"))?;
    thread::clear_ambient_capability_set()
        .map_err(|e| format!("clearing ambient capabilities: {e}"))?;
    thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| format!("dropping capabilities: {e}"))?;
    if rustix::process::geteuid().as_raw() != uid || rustix::process::getegid().as_raw() != gid {
        return Err(format!("still not uid {uid} / gid {gid} after the switch"));
    }
    Ok(())
}

/// Entry point of the hidden `outpost-agent __exec ...` subcommand; `args` are the arguments
/// after `__exec`. Applies the limits to this process, then replaces it with the argv. Never
/// returns: on failure it prints the cause to stderr and exits 125/126/127 (module docs).
pub fn exec_wrapper_main(args: &[String]) -> ! {
    use std::os::unix::process::CommandExt;
    let w = match parse_wrapper_args(args) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("[outpost] exec wrapper: {e}");
            std::process::exit(125);
        }
    };
    if let Err(e) = apply(&w) {
        eprintln!("[outpost] exec wrapper: {e}");
        std::process::exit(125);
    }
    // `exec` only returns on failure.
    let err = std::process::Command::new(&w.argv[0])
        .args(&w.argv[1..])
        .exec();
    eprintln!("[outpost] cannot execute {:?}: {err}", w.argv[0]);
    std::process::exit(if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn wrapper_args_round_trip() {
        let plan = LimitsPlan {
            mode: LimitsMode::Rlimit,
            memory: Some(64 << 20),
            cpu_share: None,
            cpu_secs: Some(30),
            cgroup: None,
            notes: vec![],
        };
        let mut args = plan.wrapper_args();
        args.push("--".into());
        args.extend(s(&["/bin/echo", "--rlimit-as", "x"]));
        let w = parse_wrapper_args(&args).unwrap();
        assert_eq!(w.rlimit_as, Some(64 << 20));
        assert_eq!(w.rlimit_cpu, Some(30));
        assert_eq!(w.cgroup, None);
        assert_eq!(w.argv, s(&["/bin/echo", "--rlimit-as", "x"]));
    }

    #[test]
    fn wrapper_args_errors_are_clear() {
        for (args, needle) in [
            (s(&["--rlimit-as"]), "needs a value"),
            (s(&["--rlimit-as", "lots", "--", "x"]), "not a number"),
            (s(&["--bogus", "--", "x"]), "unknown argument"),
            (s(&["--rlimit-as", "1"]), "missing --"),
            (s(&["--"]), "no program"),
        ] {
            let e = parse_wrapper_args(&args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn plan_without_cgroup_uses_rlimits_and_notes_unenforced_cpu() {
        let l = Limits {
            memory: Some(1 << 30),
            cpu: Some(0.5),
        };
        let p = plan(&l, None, None, "x").unwrap();
        assert_eq!(p.mode, LimitsMode::Rlimit);
        assert_eq!(p.cpu_secs, None);
        assert!(
            p.notes.iter().any(|n| n.contains("not enforced")),
            "{:?}",
            p.notes
        );
        assert_eq!(
            p.describe().as_deref(),
            Some("memory limit 1 GiB (rlimit RLIMIT_AS)")
        );

        let p = plan(&l, Some(Duration::from_secs(60)), None, "x").unwrap();
        assert_eq!(p.cpu_secs, Some(60));
        assert!(p.notes.is_empty());

        let cpu_only = Limits {
            memory: None,
            cpu: Some(1.0),
        };
        let p = plan(&cpu_only, None, None, "x").unwrap();
        assert_eq!(p.mode, LimitsMode::None);
        assert!(!p.needs_wrapper());
        assert_eq!(
            plan(&Limits::default(), None, None, "x").unwrap(),
            LimitsPlan::none()
        );
    }

    #[test]
    fn invalid_limits_are_errors() {
        for l in [
            Limits {
                memory: Some(0),
                cpu: None,
            },
            Limits {
                memory: None,
                cpu: Some(0.0),
            },
            Limits {
                memory: None,
                cpu: Some(f64::NAN),
            },
            Limits {
                memory: None,
                cpu: Some(-1.0),
            },
        ] {
            assert!(
                matches!(plan(&l, None, None, "x"), Err(ExecError::InvalidLimits(_))),
                "{l:?}"
            );
        }
    }

    #[test]
    fn cgroup_v1_or_plain_dir_falls_back_with_reason() {
        let dir = tempfile::tempdir().unwrap();
        let l = Limits {
            memory: Some(64 << 20),
            cpu: None,
        };
        let p = plan(&l, None, Some(dir.path()), "att").unwrap();
        assert_eq!(p.mode, LimitsMode::Rlimit);
        assert!(
            p.notes[0].contains("not a cgroup v2 directory"),
            "{:?}",
            p.notes
        );
        // Controllers present but memory not delegated.
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu io\n").unwrap();
        let p = plan(&l, None, Some(dir.path()), "att").unwrap();
        assert!(
            p.notes[0].contains("controller memory not delegated"),
            "{:?}",
            p.notes
        );
    }

    /// Exercises only the file layout written into a cgroup directory (on a fake directory);
    /// enforcement is covered by `cgroup_v2_limits_when_available` on hosts that have cgroup v2.
    #[test]
    fn cgroup_files_written_into_fake_v2_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        let l = Limits {
            memory: Some(64 << 20),
            cpu: Some(0.25),
        };
        let p = plan(&l, None, Some(dir.path()), "run.task.1").unwrap();
        assert_eq!(p.mode, LimitsMode::CgroupV2);
        let cg = dir.path().join("run.task.1");
        assert_eq!(p.cgroup.as_deref(), Some(cg.as_path()));
        assert_eq!(
            std::fs::read_to_string(cg.join("memory.max")).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            std::fs::read_to_string(cg.join("cpu.max")).unwrap(),
            "25000 100000"
        );
        assert!(p.wrapper_args().contains(&"--cgroup".to_string()));
        assert!(!p.wrapper_args().contains(&"--rlimit-as".to_string()));
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_bytes(64 << 20), "64 MiB");
        assert_eq!(fmt_bytes(2 << 30), "2 GiB");
        assert_eq!(fmt_bytes(1536 * 1024), "1536 KiB");
        assert_eq!(fmt_bytes(1000), "1000 bytes");
        assert_eq!(cpu_rlimit_secs(0.5, Duration::from_secs(10)), 10);
        assert_eq!(cpu_rlimit_secs(0.001, Duration::from_millis(10)), 1);
    }
}
