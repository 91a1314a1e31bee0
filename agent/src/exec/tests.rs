//! Tests with real processes.

use super::*;
use std::time::Instant;

fn cfg(dir: &Path) -> ExecConfig {
    ExecConfig::new(dir.join("logs"), "/nonexistent/outpost-agent")
}

fn req(program: Vec<String>) -> SpawnRequest {
    SpawnRequest {
        run_id: "wf@v1@20261125T073000.000Z".into(),
        task_id: "t".into(),
        attempt: 1,
        program,
        env: Vec::new(),
        working_dir: None,
        limits: Limits::default(),
        timeout: None,
        secret_env: Vec::new(),
        user: None,
        group: None,
    }
}

fn sh(script: &str) -> SpawnRequest {
    req(script_argv(None, script))
}

/// Alive and not a zombie (a zombie reparented to a non-reaping pid 1 counts as dead).
fn pid_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

async fn wait_for_file(path: &Path) -> String {
    for _ in 0..500 {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never written", path.display());
}

#[tokio::test]
async fn exit_codes_and_signals_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let ok = spawn(&c, sh("exit 0")).await.unwrap().wait().await;
    assert_eq!(ok.outcome, AttemptOutcome::Exited(0));
    assert_eq!(ok.reason, None);

    let mut r = sh("exit 3");
    r.attempt = 2;
    let e = spawn(&c, r).await.unwrap().wait().await;
    assert_eq!(e.outcome, AttemptOutcome::Exited(3));
    assert_eq!(e.reason, None);
    assert!(!e.terminated);

    let mut r = sh("kill -SEGV $$");
    r.attempt = 3;
    let s = spawn(&c, r).await.unwrap().wait().await;
    assert_eq!(s.outcome, AttemptOutcome::Signaled(11));
    assert_eq!(s.reason.as_deref(), Some("killed by SIGSEGV"));
}

#[tokio::test]
async fn env_working_dir_stdio_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path().join("work");
    std::fs::create_dir(&wd).unwrap();
    let mut r = sh(concat!(
        "echo one; echo two >&2; echo three; ",
        "read x; echo \"stdin=[$x]\"; ",
        "echo \"foo=$FOO\" >> \"$OUTPOST_OUTPUT\"; ",
        "echo \"wd=$(pwd)\" >> \"$OUTPOST_OUTPUT\"; ",
        "printf '# c\\n\\nnot valid\\n1x=2\\nmulti=a=b\\n' >> \"$OUTPOST_OUTPUT\""
    ));
    r.env = vec![("FOO".into(), "bar baz".into())];
    r.working_dir = Some(wd.clone());
    let run = spawn(&cfg(dir.path()), r).await.unwrap();
    assert!(run.pid > 0);
    assert_eq!(run.pgid, run.pid);
    assert_eq!(run.limits_mode, LimitsMode::None);
    assert_eq!(
        run.outputs_path,
        cfg(dir.path())
            .log_dir
            .join("wf@v1@20261125T073000.000Z")
            .join("t.1.outputs")
    );
    let log_path = run.log_path.clone();
    let exit = run.wait().await;
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0));
    assert_eq!(
        exit.outputs,
        vec![
            ("foo".to_string(), "bar baz".to_string()),
            (
                "wd".to_string(),
                wd.canonicalize().unwrap().display().to_string()
            ),
            ("multi".to_string(), "a=b".to_string()),
        ]
    );
    assert_eq!(exit.warnings.len(), 2, "{:?}", exit.warnings);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.starts_with("one\ntwo\nthree\nstdin=[]\n"), "{log}");
    assert!(
        log.contains("[outpost] warning: outputs line 5 ignored: no"),
        "{log}"
    );
    assert!(
        log.contains("[outpost] warning: outputs line 6 ignored: invalid key \"1x\""),
        "{log}"
    );
}

#[tokio::test]
async fn attempt_files_are_flat_per_run_and_sanitized() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let mut r = sh("echo hi");
    r.run_id = "wf/../x".into();
    r.task_id = "..".into();
    r.attempt = 7;
    let run = spawn(&c, r).await.unwrap();
    let rd = run_dir(&c, "wf/../x");
    assert_eq!(rd.parent(), Some(c.log_dir.as_path()));
    assert_eq!(run.log_path.parent(), Some(rd.as_path()));
    assert_eq!(run.outputs_path.parent(), Some(rd.as_path()));
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();
    let log_name = name(&run.log_path);
    assert!(
        log_name.ends_with(".7.log") && !log_name.starts_with('.'),
        "{log_name}"
    );
    assert!(name(&run.outputs_path).ends_with(".7.outputs"));
    run.wait().await;
    assert_eq!(
        std::fs::read_to_string(log_path(&c, "wf/../x", "..", 7)).unwrap(),
        "hi\n"
    );
    // The only entries: the run directory holding one log file.
    assert_eq!(std::fs::read_dir(&c.log_dir).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(&rd).unwrap().count(), 1);
    assert_ne!(sanitize_component("a/b"), sanitize_component("a_b"));
    assert_eq!(
        sanitize_component("wf@v1@20261125T073000.000Z"),
        "wf@v1@20261125T073000.000Z"
    );
}

#[test]
fn attempt_file_names_never_collide() {
    let c = cfg(Path::new("/x"));
    let tasks = [
        "a",
        "a.1",
        "a.1.log",
        "a.log",
        "a.log.1",
        "a.1.outputs",
        "a.outputs",
        "a.tmp",
        "a.log.tmp",
        "1",
        "11",
        "1.1",
        "",
        ".",
        "..",
        "a/b",
        "a_b",
        "a b",
        "a~1",
        "log",
        "outputs",
        "x.1.log.1",
    ];
    let attempts = [1u32, 2, 10, 11, 12, 101, 111, u32::MAX];
    let mut seen = std::collections::HashMap::new();
    for t in tasks {
        for a in attempts {
            let log = log_path(&c, "r", t, a);
            let names = [
                log.clone(),
                log::rotated_path(&log),
                log::tmp_path(&log),
                outputs_path(&c, "r", t, a),
            ];
            for p in names {
                // Flat: every file sits directly in the run directory.
                assert_eq!(p.parent(), Some(run_dir(&c, "r").as_path()), "{p:?}");
                if let Some(prev) = seen.insert(p.clone(), (t, a)) {
                    panic!("{p:?} is used by both {prev:?} and {:?}", (t, a));
                }
            }
        }
    }
    assert_eq!(seen.len(), tasks.len() * attempts.len() * 4);
}

#[tokio::test]
async fn silent_task_creates_no_files_and_outputs_are_created_by_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let silent = spawn(&c, sh("true")).await.unwrap();
    // Nothing per attempt exists before or after the run: only the run directory.
    assert!(run_dir(&c, "wf@v1@20261125T073000.000Z").is_dir());
    assert!(!silent.outputs_path.exists());
    let (log, outs) = (silent.log_path.clone(), silent.outputs_path.clone());
    let exit = silent.wait().await;
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0));
    assert!(
        exit.outputs.is_empty() && exit.warnings.is_empty(),
        "{exit:?}"
    );
    assert_eq!(exit.log_bytes, 0);
    assert!(!log.exists() && !outs.exists());
    assert_eq!(read_log(&log, 1000).unwrap(), b"");
    let mut f = LogFollower::new(&log);
    let mut got = Vec::new();
    assert_eq!(f.poll(&mut got).unwrap(), 0);

    // A task that only writes outputs creates the outputs file itself; still no log.
    let mut r = sh("echo k=v >> \"$OUTPOST_OUTPUT\"; echo n=1 >> \"$OUTPOST_OUTPUT\"");
    r.attempt = 2;
    let run = spawn(&c, r).await.unwrap();
    let log2 = run.log_path.clone();
    let exit = run.wait().await;
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0));
    assert_eq!(
        exit.outputs,
        vec![
            ("k".to_string(), "v".to_string()),
            ("n".to_string(), "1".to_string())
        ]
    );
    assert!(!log2.exists());
    assert_eq!(
        read_attempt_outputs(&c, "wf@v1@20261125T073000.000Z", "t", 2).outputs,
        exit.outputs
    );
    let entries = std::fs::read_dir(run_dir(&c, "wf@v1@20261125T073000.000Z"))
        .unwrap()
        .count();
    assert_eq!(entries, 1);
}

#[tokio::test]
async fn run_directory_is_recreated_after_removal() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let rd = run_dir(&c, "wf@v1@20261125T073000.000Z");
    spawn(&c, sh("true")).await.unwrap().wait().await;
    assert!(rd.is_dir());
    // Retention removes the directory and tells the config.
    std::fs::remove_dir_all(&rd).unwrap();
    c.forget_run_dir("wf@v1@20261125T073000.000Z");
    let mut r = sh("echo k=v >> \"$OUTPOST_OUTPUT\"");
    r.attempt = 2;
    let exit = spawn(&c, r).await.unwrap().wait().await;
    assert_eq!(exit.outputs, vec![("k".to_string(), "v".to_string())]);
    // Removed behind the config's back: the log is still written (its directory is recreated).
    std::fs::remove_dir_all(&rd).unwrap();
    let mut r = sh("echo late");
    r.attempt = 3;
    let run = spawn(&c, r).await.unwrap();
    let log = run.log_path.clone();
    let exit = run.wait().await;
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0));
    assert!(exit.warnings.is_empty(), "{:?}", exit.warnings);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "late\n");
}

#[tokio::test]
async fn log_over_cap_keeps_tail_with_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.log_max_bytes = 1000;
    let run = spawn(&c, sh("seq 1 5000")).await.unwrap();
    let path = run.log_path.clone();
    let exit = run.wait().await;
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0));
    let all: String = (1..=5000).map(|i| format!("{i}\n")).collect();
    assert_eq!(exit.log_bytes, all.len() as u64);
    let got = std::fs::read_to_string(&path).unwrap();
    let expected = format!(
        "[outpost] output truncated: first {} bytes dropped, last 1000 bytes kept\n{}",
        all.len() - 1000,
        &all[all.len() - 1000..]
    );
    assert_eq!(got, expected);
    assert_eq!(read_log(&path, 1000).unwrap(), expected.as_bytes());
}

#[tokio::test]
async fn follower_reads_live_log_of_running_task() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.log_max_bytes = 64;
    let run = spawn(
        &c,
        sh("sleep 0.3; for i in $(seq 1 40); do echo line-$i; sleep 0.01; done"),
    )
    .await
    .unwrap();
    let mut f = LogFollower::new(&run.log_path);
    // The log appears only with the first output: the follower waits for it.
    let mut got = Vec::new();
    f.poll(&mut got).unwrap();
    assert!(got.is_empty() && !run.log_path.exists());
    let killer = run.killer();
    let waiter = tokio::spawn(run.wait());
    let mut saw_partial = false;
    while !killer.is_done() {
        f.poll(&mut got).unwrap();
        saw_partial |= !got.is_empty();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let exit = waiter.await.unwrap();
    f.poll(&mut got).unwrap();
    f.poll(&mut got).unwrap();
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0));
    assert!(saw_partial, "follower saw nothing while the task ran");
    let all: String = (1..=40).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(String::from_utf8(got).unwrap(), all);
}

#[tokio::test]
async fn terminate_kills_grandchild() {
    let dir = tempfile::tempdir().unwrap();
    let gc = dir.path().join("gc.pid");
    let script = format!("sleep 1000 & echo $! > {}; wait", gc.display());
    let run = spawn(&cfg(dir.path()), sh(&script)).await.unwrap();
    let gc_pid: u32 = wait_for_file(&gc).await.trim().parse().unwrap();
    assert!(pid_running(gc_pid));
    let killer = run.killer();
    let t0 = Instant::now();
    killer.terminate(Duration::from_secs(5));
    let exit = run.wait().await;
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(exit.outcome, AttemptOutcome::Signaled(15));
    assert!(exit.terminated && !exit.escalated);
    assert!(
        exit.reason
            .as_deref()
            .unwrap_or("")
            .contains("stopped by the agent"),
        "{:?}",
        exit.reason
    );
    for _ in 0..200 {
        if !pid_running(gc_pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!pid_running(gc_pid), "grandchild {gc_pid} survived");
    // After the end, the killer is inert.
    assert!(killer.is_done());
    killer.terminate(Duration::from_secs(1));
}

#[tokio::test]
async fn kill_group_fn_kills_grandchild() {
    let dir = tempfile::tempdir().unwrap();
    let gc = dir.path().join("gc.pid");
    let script = format!("sleep 1000 & echo $! > {}; wait", gc.display());
    let run = spawn(&cfg(dir.path()), sh(&script)).await.unwrap();
    let gc_pid: u32 = wait_for_file(&gc).await.trim().parse().unwrap();
    let pgid = run.pgid;
    let escalated = kill_group(pgid, Duration::from_secs(5)).await;
    assert!(!escalated);
    let exit = run.wait().await;
    assert_eq!(exit.outcome, AttemptOutcome::Signaled(15));
    assert!(!pid_running(gc_pid), "grandchild {gc_pid} survived");
}

#[tokio::test]
async fn terminate_escalates_to_sigkill_when_term_is_trapped() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!("trap '' TERM; echo ok > {}; sleep 100", ready.display());
    let run = spawn(&cfg(dir.path()), sh(&script)).await.unwrap();
    wait_for_file(&ready).await;
    let grace = Duration::from_millis(300);
    let t0 = Instant::now();
    run.killer().terminate(grace);
    let exit = run.wait().await;
    let took = t0.elapsed();
    assert!(took >= grace, "ended before the grace period: {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(exit.outcome, AttemptOutcome::Signaled(9));
    assert!(exit.terminated && exit.escalated);
    let reason = exit.reason.unwrap_or_default();
    assert!(
        reason.contains("SIGKILL after the grace period") && reason.contains("killed by SIGKILL"),
        "{reason}"
    );
}

#[tokio::test]
async fn leftover_background_process_is_killed_when_leader_exits() {
    let dir = tempfile::tempdir().unwrap();
    let gc = dir.path().join("gc.pid");
    let script = format!("sleep 1000 & echo $! > {}; exit 0", gc.display());
    let t0 = Instant::now();
    let run = spawn(&cfg(dir.path()), sh(&script)).await.unwrap();
    let exit = run.wait().await;
    assert!(t0.elapsed() < DRAIN_LINGER, "took {:?}", t0.elapsed());
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0));
    assert!(
        exit.warnings.iter().any(|w| w.contains("were killed")),
        "{:?}",
        exit.warnings
    );
    let gc_pid: u32 = std::fs::read_to_string(&gc)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for _ in 0..200 {
        if !pid_running(gc_pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!pid_running(gc_pid));
}

#[tokio::test]
async fn spawn_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    assert!(matches!(
        spawn(&c, req(vec![])).await,
        Err(ExecError::EmptyProgram)
    ));
    let e = spawn(&c, req(vec!["/nonexistent/prog".into()]))
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::Spawn { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/prog"));
    let mut r = sh("true");
    r.limits.memory = Some(0);
    assert!(matches!(
        spawn(&c, r).await,
        Err(ExecError::InvalidLimits(_))
    ));
}

#[test]
fn failure_reasons_name_the_limit_and_the_cause() {
    let rl = limits::LimitsPlan {
        mode: LimitsMode::Rlimit,
        memory: Some(64 << 20),
        cpu_share: None,
        cpu_secs: Some(20),
        cgroup: None,
        notes: vec![],
    };
    let none = limits::LimitsPlan::none();
    let r = |o: AttemptOutcome, p: &limits::LimitsPlan, oom, term, esc| {
        failure_reason(&o, p, oom, term, esc)
    };
    assert_eq!(r(AttemptOutcome::Exited(0), &rl, 0, false, false), None);
    assert_eq!(r(AttemptOutcome::Exited(2), &none, 0, false, false), None);
    assert_eq!(
        r(AttemptOutcome::Exited(1), &rl, 0, false, false).as_deref(),
        Some(
            "memory limit 64 MiB (rlimit RLIMIT_AS), CPU time limit 20 s (rlimit RLIMIT_CPU); process exited with code 1"
        )
    );
    assert_eq!(
        r(AttemptOutcome::Signaled(6), &rl, 0, false, false).as_deref(),
        Some(
            "memory limit 64 MiB (rlimit RLIMIT_AS), CPU time limit 20 s (rlimit RLIMIT_CPU); killed by SIGABRT"
        )
    );
    assert_eq!(
        r(AttemptOutcome::Signaled(24), &rl, 0, false, false).as_deref(),
        Some("CPU time limit 20 s exceeded (rlimit RLIMIT_CPU): killed by SIGXCPU")
    );
    let cg = limits::LimitsPlan {
        mode: LimitsMode::CgroupV2,
        memory: Some(64 << 20),
        cpu_share: Some(0.5),
        cpu_secs: None,
        cgroup: Some(PathBuf::from("/x")),
        notes: vec![],
    };
    assert_eq!(
        r(AttemptOutcome::Signaled(9), &cg, 1, false, false).as_deref(),
        Some(
            "killed by the OOM killer: memory limit 64 MiB (cgroup v2 memory.max); killed by SIGKILL"
        )
    );
    assert_eq!(
        r(AttemptOutcome::Signaled(9), &cg, 0, true, true).as_deref(),
        Some(
            "stopped by the agent: SIGTERM, then SIGKILL after the grace period; killed by SIGKILL"
        )
    );
    assert_eq!(
        r(AttemptOutcome::Signaled(11), &none, 0, false, false).as_deref(),
        Some("killed by SIGSEGV")
    );
}

#[tokio::test]
async fn wrapper_spawn_failure_names_the_wrapper_and_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path()); // self_exe does not exist
    let mut r = sh("true");
    r.limits.memory = Some(1 << 30);
    let e = spawn(&c, r).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("via /nonexistent/outpost-agent __exec"),
        "{msg}"
    );
    let log = std::fs::read_to_string(log_path(&c, "wf@v1@20261125T073000.000Z", "t", 1)).unwrap();
    assert!(log.contains("cannot start"), "{log}");
}

#[tokio::test]
async fn stop_uses_configured_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.kill_grace = Duration::from_millis(200);
    let ready = dir.path().join("ready");
    let run = spawn(
        &c,
        sh(&format!(
            "trap '' TERM; echo ok > {}; sleep 100",
            ready.display()
        )),
    )
    .await
    .unwrap();
    wait_for_file(&ready).await;
    let k = run.killer();
    assert_eq!(k.pgid(), run.pgid);
    let t0 = Instant::now();
    k.stop();
    let exit = run.wait().await;
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert!(exit.escalated);
    assert_eq!(exit.outcome, AttemptOutcome::Signaled(9));
}

#[test]
fn script_argv_defaults_to_sh() {
    assert_eq!(
        script_argv(None, "echo hi"),
        vec!["/bin/sh", "-c", "echo hi"]
    );
    assert_eq!(
        script_argv(Some("/bin/bash"), "x"),
        vec!["/bin/bash", "-c", "x"]
    );
}

#[test]
fn signal_names() {
    assert_eq!(signal_name(9), "SIGKILL");
    assert_eq!(signal_name(24), "SIGXCPU");
    assert_eq!(signal_name(1000), "signal 1000");
}

/// Per-spawn overhead of this driver vs plain `std::process::Command` (run with
/// `cargo test -p outpost-agent --lib -- --ignored --nocapture spawn_overhead`).
#[test]
#[ignore]
fn spawn_overhead_vs_std_command() {
    const N: usize = 200;
    const P: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let std_run = |parallel: usize| {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for w in 0..parallel {
                s.spawn(move || {
                    for _ in (w..N).step_by(parallel) {
                        let st = std::process::Command::new("/bin/true").status().unwrap();
                        assert!(st.success());
                    }
                });
            }
        });
        t0.elapsed()
    };
    let ours = |parallel: usize| {
        rt.block_on(async {
            let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
            let t0 = Instant::now();
            let mut handles = Vec::new();
            for i in 0..N {
                let permit = sem.clone().acquire_owned().await.unwrap();
                let mut r = req(vec!["/bin/true".into()]);
                r.task_id = format!("t{i}");
                let run = spawn(&c, r).await.unwrap();
                handles.push(tokio::spawn(async move {
                    let e = run.wait().await;
                    drop(permit);
                    e
                }));
            }
            for h in handles {
                assert_eq!(h.await.unwrap().outcome, AttemptOutcome::Exited(0));
            }
            t0.elapsed()
        })
    };
    let xargs = |parallel: usize| {
        let t0 = Instant::now();
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("seq 1 {N} | xargs -P {parallel} -n 1 /bin/true"))
            .status()
            .unwrap();
        assert!(st.success());
        t0.elapsed()
    };
    // Warm up.
    std_run(1);
    ours(1);
    for parallel in [1, P] {
        let s = std_run(parallel);
        let o = ours(parallel);
        let x = xargs(parallel);
        println!(
            "P={parallel}: std::process::Command {:?} ({:?}/spawn), outpost exec {:?} ({:?}/spawn), xargs -P {:?}; \
             overhead {:?}/spawn, ratio vs std {:.2}, vs xargs {:.2}",
            s,
            s / N as u32,
            o,
            o / N as u32,
            x,
            o.saturating_sub(s) / N as u32,
            o.as_secs_f64() / s.as_secs_f64(),
            o.as_secs_f64() / x.as_secs_f64(),
        );
    }
}

#[tokio::test]
async fn secrets_reach_the_env_only_and_are_redacted_from_log_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.secrets = crate::secrets::SecretStore {
        dir: Some(dir.path().join("secrets")),
        credentials: None,
    };
    c.secrets.set("plc-line3", b"Pa55-w0rd!").unwrap();
    // Printed whole, split over two writes (two reads of the pipe), and as an output.
    let mut r = sh(concat!(
        "echo \"pw=$PLC_PASSWORD\"; ",
        "printf 'Pa55-'; sleep 0.2; printf 'w0rd! end\\n'; ",
        "echo \"o=x${PLC_PASSWORD}y\" >> \"$OUTPOST_OUTPUT\"; ",
        "case \"$*\" in *Pa55*) echo argv-leak;; esac"
    ));
    r.secret_env = vec![("PLC_PASSWORD".into(), "plc-line3".into())];
    let run = spawn(&c, r).await.unwrap();
    let log_path = run.log_path.clone();
    let exit = run.wait().await;
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0), "{exit:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        log, "pw=[redacted:plc-line3]\n[redacted:plc-line3] end\n",
        "{log}"
    );
    assert_eq!(
        exit.outputs,
        vec![("o".to_string(), "x[redacted:plc-line3]y".to_string())]
    );
    // Nor does the outputs file keep the value.
    let left = std::fs::read_to_string(log_path.with_extension("outputs")).unwrap();
    assert_eq!(left, "o=x[redacted:plc-line3]y\n");

    // Removed after the deploy: the next attempt does not start, and says why.
    c.secrets.remove("plc-line3").unwrap();
    let mut r = sh("true");
    r.attempt = 2;
    r.secret_env = vec![("PLC_PASSWORD".into(), "plc-line3".into())];
    let e = spawn(&c, r).await.unwrap_err().to_string();
    assert!(e.contains("secret `plc-line3` is not set"), "{e}");
}

#[tokio::test]
async fn run_as_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let mut r = sh("true");
    r.user = Some("nobody".into());
    let e = spawn(&c, r).await.unwrap_err().to_string();
    assert!(e.contains("disabled on this agent"), "{e}");
}
