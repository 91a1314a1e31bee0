//! Alerts at a cut-off site: hooks run by the real agent as local processes, with the hub
//! unreachable (killed) or with no hub at all; deadline misses fire `on_deadline_miss`; a hook
//! interrupted by kill -9 of the agent runs again after the restart, a finished one never twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use outpost_tests::{Daemon, Hub, Scratch, enrolled_agent, stderr, stdout, wait_for};

/// The `OUTPOST_*` variables a hook wrote with `env > FILE`.
fn read_env(path: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    if !text.contains("OUTPOST_END=1") {
        return None; // still being written
    }
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with("OUTPOST_"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn load(d: &Daemon, file: &str, yaml: &str) {
    std::fs::write(d.workflows_dir().join(file), yaml).unwrap();
    // Each test's agent has this one workflow.
    wait_for(Duration::from_secs(10), "workflow loaded", || {
        let st = d.ctl_json("status", &[]).ok()?;
        (st["workflows"].as_array()?.len() == 1).then_some(())
    })
    .unwrap();
}

fn trigger(d: &Daemon, wf: &str) -> String {
    let out = d.ctl("trigger", &[wf]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn a_failing_tasks_hooks_run_at_once_with_the_hub_unreachable_and_see_their_context() {
    let s = Scratch::new("edge-hooks").unwrap();
    let mut hub = Hub::start(s.path(), "").unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "site=a", "").unwrap();
    hub.kill9().unwrap(); // cut off: the agent cannot reach its hub
    let task_env = s.join("task-hook.env");
    let run_env = s.join("run-hook.env");
    // The context travels in variables, never in the command line: the hooks read it with
    // `env`.
    load(
        &d,
        "plc.yaml",
        &format!(
            r#"name: plc
hooks:
  on_failure:
    command: [/bin/sh, -c, 'env > "$0.tmp"; echo OUTPOST_END=1 >> "$0.tmp"; mv "$0.tmp" "$0"', "{run}"]
tasks:
  read:
    script: 'echo reading; exit 3'
    hooks:
      on_failure:
        script: 'env > {task}.tmp; echo OUTPOST_END=1 >> {task}.tmp; mv {task}.tmp {task}'
"#,
            run = run_env.display(),
            task = task_env.display()
        ),
    );
    let run_id = trigger(&d, "plc");
    let env = wait_for(
        Duration::from_secs(20),
        "the task's on_failure hook",
        || read_env(&task_env),
    )
    .unwrap();
    assert_eq!(env["OUTPOST_EVENT"], "failure");
    assert_eq!(env["OUTPOST_WORKFLOW"], "plc");
    assert_eq!(env["OUTPOST_VERSION"], "1");
    assert_eq!(env["OUTPOST_RUN_ID"], run_id);
    assert_eq!(env["OUTPOST_TASK"], "read");
    assert_eq!(env["OUTPOST_STATE"], "failed");
    assert_eq!(env["OUTPOST_EXIT_CODE"], "3");
    assert_eq!(env["OUTPOST_ATTEMPT"], "1");
    for k in [
        "OUTPOST_SCHEDULED_AT",
        "OUTPOST_STARTED_AT",
        "OUTPOST_ENDED_AT",
    ] {
        assert!(
            chrono::DateTime::parse_from_rfc3339(&env[k]).is_ok(),
            "{k}={}",
            env[k]
        );
    }
    let log = std::fs::read_to_string(&env["OUTPOST_LOG_FILE"]).unwrap();
    assert_eq!(log.trim(), "reading");
    assert!(!env.contains_key("OUTPOST_DEADLINE_KIND"));

    let env = wait_for(
        Duration::from_secs(20),
        "the workflow's on_failure hook",
        || read_env(&run_env),
    )
    .unwrap();
    assert_eq!(env["OUTPOST_EVENT"], "failure");
    assert_eq!(env["OUTPOST_TASK"], "");
    assert_eq!(env["OUTPOST_RUN_ID"], run_id);
    assert_eq!(env["OUTPOST_STATE"], "failed");
    // Hook output goes beside the run's logs.
    let hook_log = d
        .state_dir
        .join("logs")
        .join(&run_id)
        .join("hook.read.1.failure.log");
    wait_for(Duration::from_secs(10), "the hook's log file", || {
        hook_log.exists().then_some(())
    })
    .unwrap();
}

#[test]
fn a_missed_deadline_fires_on_deadline_miss_once() {
    let s = Scratch::new("edge-deadline").unwrap();
    let d = Daemon::start(s.path(), "").unwrap();
    let seen = s.join("late.log");
    load(
        &d,
        "slow.yaml",
        &format!(
            r#"name: slow
deadline: 1s
hooks:
  on_deadline_miss:
    script: 'echo "$OUTPOST_EVENT $OUTPOST_DEADLINE_KIND task=$OUTPOST_TASK $OUTPOST_RUN_ID" >> {seen}'
tasks:
  crunch:
    command: [sleep, "3"]
"#,
            seen = seen.display()
        ),
    );
    let run_id = trigger(&d, "slow");
    let line = wait_for(Duration::from_secs(20), "on_deadline_miss", || {
        let t = std::fs::read_to_string(&seen).ok()?;
        (!t.is_empty()).then_some(t)
    })
    .unwrap();
    assert_eq!(
        line.trim(),
        format!("deadline_miss deadline task= {run_id}")
    );
    // The run goes on and succeeds: the miss is reported once, not again when it finishes late.
    wait_for(Duration::from_secs(20), "the run to finish", || {
        let v = d.ctl_json("show", &[&run_id]).ok()?;
        (v["state"] == "succeeded").then_some(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lines(&seen),
        1,
        "{}",
        std::fs::read_to_string(&seen).unwrap()
    );
}

#[test]
fn a_hook_cut_by_kill_9_runs_again_after_restart_and_a_finished_one_never_twice() {
    let s = Scratch::new("edge-hook-crash").unwrap();
    let mut d = Daemon::start(s.path(), "").unwrap();
    let started = s.join("started.log");
    let done = s.join("done.log");
    load(
        &d,
        "flaky.yaml",
        &format!(
            r#"name: flaky
tasks:
  read:
    command: ["false"]
    hooks:
      on_failure:
        script: 'echo "$OUTPOST_RUN_ID" >> {started}; sleep 2; echo "$OUTPOST_RUN_ID" >> {done}'
"#,
            started = started.display(),
            done = done.display()
        ),
    );
    trigger(&d, "flaky");
    wait_for(Duration::from_secs(20), "the hook to start", || {
        (lines(&started) == 1).then_some(())
    })
    .unwrap();
    d.kill9().unwrap();
    d.restart().unwrap();
    // Never finished: it runs again (the first one's orphan may still finish too).
    wait_for(Duration::from_secs(20), "the hook to run again", || {
        (lines(&started) == 2).then_some(())
    })
    .unwrap();
    // Both end (the orphan of the first, then the second).
    wait_for(Duration::from_secs(20), "the second run to finish", || {
        (lines(&done) == 2).then_some(())
    })
    .unwrap();
    // Let the agent mark it finished, then restart: a finished hook never runs again.
    std::thread::sleep(Duration::from_millis(500));
    d.terminate(Duration::from_secs(10)).unwrap();
    d.restart().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lines(&started), 2, "{}", d.stderr_tail());
}

#[test]
fn a_foreground_run_without_a_hub_returns_after_its_hooks() {
    let s = Scratch::new("edge-run").unwrap();
    let out = s.join("hooks.log");
    let f = s
        .write(
            "wf.yaml",
            &format!(
                r#"name: once
hooks:
  on_success:
    script: 'sleep 1; echo "$OUTPOST_EVENT $OUTPOST_STATE" >> {out}'
tasks:
  a:
    command: ["true"]
    hooks:
      on_success:
        command: [/bin/sh, -c, 'echo "$OUTPOST_EVENT $OUTPOST_TASK" >> "$0"', "{out}"]
"#,
                out = out.display()
            ),
        )
        .unwrap();
    let (code, v) = outpost_tests::run_json(&f, &s.join("st"), &[]).unwrap();
    assert_eq!(code, 0, "{v}");
    // Both hooks ran, each once, before the command returned.
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let mut got: Vec<&str> = text.lines().collect();
    got.sort_unstable();
    assert_eq!(got, ["success a", "success succeeded"], "{text}");
}
