//! Resource limits through the real `outpost-agent __exec` wrapper.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_agent::exec::{ExecConfig, SpawnRequest, script_argv, spawn};
use outpost_common::model::Limits;
use outpost_common::record::{AttemptOutcome, LimitsMode};

fn cfg(dir: &Path) -> ExecConfig {
    ExecConfig::new(dir.join("logs"), env!("CARGO_BIN_EXE_outpost-agent"))
}

fn req(program: Vec<String>, limits: Limits) -> SpawnRequest {
    SpawnRequest {
        run_id: "limits@v1@20261125T073000.000Z".into(),
        task_id: "alloc".into(),
        attempt: 1,
        program,
        env: Vec::new(),
        working_dir: None,
        limits,
        timeout: None,
        secret_env: Vec::new(),
        user: None,
        group: None,
    }
}

fn python() -> Vec<String> {
    vec![
        "python3".into(),
        "-c".into(),
        "x = bytearray(200*1024*1024); print('allocated', len(x))".into(),
    ]
}

#[tokio::test]
async fn allocation_past_rlimit_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory: Some(100 * 1024 * 1024),
        cpu: None,
    };
    let run = spawn(&cfg(dir.path()), req(python(), limits))
        .await
        .unwrap();
    assert_eq!(run.limits_mode, LimitsMode::Rlimit);
    let log_path = run.log_path.clone();
    let exit = run.wait().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!exit.outcome.is_success(), "{exit:?}\n{log}");
    assert!(!log.contains("allocated"), "{log}");
    assert!(log.contains("MemoryError"), "{log}");
    let reason = exit.reason.unwrap_or_default();
    assert!(
        reason.starts_with("memory limit 100 MiB (rlimit RLIMIT_AS); "),
        "{reason}"
    );
    assert!(reason.contains("process exited with code 1"), "{reason}");
}

#[tokio::test]
async fn same_allocation_under_a_generous_rlimit_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory: Some(2 * 1024 * 1024 * 1024),
        cpu: None,
    };
    let run = spawn(&cfg(dir.path()), req(python(), limits))
        .await
        .unwrap();
    assert_eq!(run.limits_mode, LimitsMode::Rlimit);
    let log_path = run.log_path.clone();
    let exit = run.wait().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0), "{log}");
    assert_eq!(exit.reason, None);
    assert!(log.contains("allocated 209715200"), "{log}");
}

#[tokio::test]
async fn wrapper_keeps_pid_group_env_and_working_dir() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory: Some(1024 * 1024 * 1024),
        cpu: None,
    };
    let mut r = req(
        script_argv(
            None,
            "echo \"pid=$$\" >> \"$OUTPOST_OUTPUT\"; echo \"foo=$FOO\" >> \"$OUTPOST_OUTPUT\"; echo \"wd=$(pwd)\" >> \"$OUTPOST_OUTPUT\"; echo \"as=$(ulimit -v)\" >> \"$OUTPOST_OUTPUT\"",
        ),
        limits,
    );
    r.env = vec![("FOO".into(), "bar".into())];
    r.working_dir = Some(dir.path().to_path_buf());
    let run = spawn(&cfg(dir.path()), r).await.unwrap();
    let pid = run.pid;
    let exit = run.wait().await;
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0), "{exit:?}");
    let get = |k: &str| {
        exit.outputs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    // exec replaced the wrapper: the shell has the pid (and group) the driver reported.
    assert_eq!(get("pid"), Some(pid.to_string()));
    assert_eq!(get("foo").as_deref(), Some("bar"));
    assert_eq!(
        get("wd"),
        Some(dir.path().canonicalize().unwrap().display().to_string())
    );
    assert_eq!(get("as").as_deref(), Some("1048576")); // KiB
}

#[tokio::test]
async fn cpu_time_rlimit_kills_a_spinning_task_with_sigxcpu() {
    let dir = tempfile::tempdir().unwrap();
    // 0.5 CPU × 1 s timeout → soft RLIMIT_CPU of 1 s (the driver does not enforce the timeout
    // itself; the caller would, so this attempt spins until the rlimit stops it).
    let limits = Limits {
        memory: None,
        cpu: Some(0.5),
    };
    let mut r = req(script_argv(None, "while :; do :; done"), limits);
    r.timeout = Some(Duration::from_secs(1));
    let run = spawn(&cfg(dir.path()), r).await.unwrap();
    assert_eq!(run.limits_mode, LimitsMode::Rlimit);
    let exit = tokio::time::timeout(Duration::from_secs(60), run.wait())
        .await
        .expect("rlimit did not stop the task");
    assert_eq!(exit.outcome, AttemptOutcome::Signaled(24), "{exit:?}");
    let reason = exit.reason.unwrap_or_default();
    assert!(
        reason.contains("CPU time limit 1 s exceeded (rlimit RLIMIT_CPU)")
            && reason.contains("SIGXCPU"),
        "{reason}"
    );
}

#[tokio::test]
async fn wrapper_reports_missing_program() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory: Some(1024 * 1024 * 1024),
        cpu: None,
    };
    let run = spawn(
        &cfg(dir.path()),
        req(vec!["/nonexistent/prog".into()], limits),
    )
    .await
    .unwrap();
    let log_path = run.log_path.clone();
    let exit = run.wait().await;
    assert_eq!(exit.outcome, AttemptOutcome::Exited(127));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("cannot execute \"/nonexistent/prog\""),
        "{log}"
    );
}

/// A writable cgroup v2 directory delegated to us with the memory controller usable by its
/// children, if any. `OUTPOST_TEST_CGROUP_ROOT` may name one; otherwise our own cgroup in the
/// cgroup2 mount (from /proc/mounts and /proc/self/cgroup) is tried.
fn delegated_cgroup_v2() -> Option<PathBuf> {
    let candidate = match std::env::var_os("OUTPOST_TEST_CGROUP_ROOT") {
        Some(p) => PathBuf::from(p),
        None => {
            let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
            let mount = mounts.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && f[2] == "cgroup2").then(|| f[1].to_string())
            })?;
            let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
            Path::new(&mount).join(rel.trim_start_matches('/'))
        }
    };
    let controllers = std::fs::read_to_string(candidate.join("cgroup.controllers")).ok()?;
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return None;
    }
    // Children must get the memory controller, and we must be able to create them.
    let subtree = std::fs::read_to_string(candidate.join("cgroup.subtree_control")).ok()?;
    if !subtree.split_whitespace().any(|c| c == "memory") {
        std::fs::write(candidate.join("cgroup.subtree_control"), "+memory").ok()?;
    }
    let probe = candidate.join(format!("outpost-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(candidate)
}

#[tokio::test]
async fn cgroup_v2_limits_when_available() {
    let Some(root) = delegated_cgroup_v2() else {
        println!("cgroup v2 not available here (cgroup v1 host): skipping cgroup test");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.cgroup_root = Some(root.clone());
    let limits = Limits {
        memory: Some(64 * 1024 * 1024),
        cpu: Some(0.5),
    };
    let run = spawn(&c, req(python(), limits)).await.unwrap();
    assert_eq!(
        run.limits_mode,
        LimitsMode::CgroupV2,
        "notes: {:?}",
        run.limits_notes
    );
    let exit = run.wait().await;
    assert!(!exit.outcome.is_success(), "{exit:?}");
    let reason = exit.reason.unwrap_or_default();
    assert!(
        reason.contains("memory limit 64 MiB") && reason.contains("cgroup v2"),
        "{reason}"
    );
}
