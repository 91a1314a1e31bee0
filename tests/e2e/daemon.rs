//! `outpost-agent serve`: the cron clock, the control socket, file reloads, graceful shutdown.

use std::time::Duration;

use outpost_tests::{Daemon, Scratch, stderr, stdout, wait_for};

fn runs_in(d: &Daemon, wf: &str, state: Option<&str>) -> Vec<serde_json::Value> {
    d.runs(Some(wf))
        .unwrap_or_default()
        .into_iter()
        .filter(|r| state.is_none_or(|s| r["state"] == s))
        .collect()
}

#[test]
fn cron_fires_every_second_once_per_instant() {
    let s = Scratch::new("cron").unwrap();
    let d = Daemon::start(s.path(), "").unwrap();
    std::fs::write(
        d.workflows_dir().join("tick.yaml"),
        "name: tick\nschedule: '* * * * * *'\ncatchup: none\ntasks:\n  t:\n    command: [/bin/true]\n",
    )
    .unwrap();
    let runs = wait_for(Duration::from_secs(20), "4 succeeded runs", || {
        let r = runs_in(&d, "tick", Some("succeeded"));
        (r.len() >= 4).then_some(r)
    })
    .unwrap();
    let mut scheduled: Vec<String> = runs
        .iter()
        .map(|r| r["scheduled"].as_str().unwrap().to_string())
        .collect();
    let n = scheduled.len();
    scheduled.sort();
    scheduled.dedup();
    assert_eq!(scheduled.len(), n, "an instant fired twice: {runs:?}");
    for r in &runs {
        assert_eq!(r["kind"], "scheduled");
        assert!(r["scheduled"].as_str().unwrap().ends_with(".000Z"), "{r}");
    }
    let st = d.ctl_json("status", &[]).unwrap();
    let wf = &st["workflows"][0];
    assert_eq!(wf["name"], "tick");
    assert!(wf["next_fire"].is_string(), "{st}");
}

/// Scheduled runs are committed ahead of their instant (pre-commit) but their processes start
/// at the instant, never before it: each task stamps its own start time, which must fall in the
/// second it was scheduled for, and the run's record says it started at that instant.
#[test]
fn precommitted_runs_start_at_their_instant_not_before() {
    let s = Scratch::new("precommit").unwrap();
    let stamps = s.join("stamps.txt");
    let d = Daemon::start(s.path(), "").unwrap();
    std::fs::write(
        d.workflows_dir().join("tick.yaml"),
        format!(
            "name: tick\nschedule: '* * * * * *'\ncatchup: none\ntasks:\n  t:\n    command: [sh, -c, 'echo \"$OUTPOST_SCHEDULED_TIME $(date +%s%N)\" >> {}']\n",
            stamps.display()
        ),
    )
    .unwrap();
    let lines = wait_for(Duration::from_secs(20), "4 stamps", || {
        let t = std::fs::read_to_string(&stamps).ok()?;
        let l: Vec<String> = t.lines().map(str::to_string).collect();
        (l.len() >= 4).then_some(l)
    })
    .unwrap();
    for l in &lines {
        let (scheduled, ns) = l.split_once(' ').unwrap();
        let scheduled = chrono::DateTime::parse_from_rfc3339(scheduled).unwrap();
        let ns: i64 = ns.parse().unwrap();
        let at_ns = scheduled.timestamp_nanos_opt().unwrap();
        assert!(ns >= at_ns, "a task started before its instant: {l}");
        assert!(
            ns - at_ns < 1_000_000_000,
            "a task started a second late: {l}"
        );
    }
    let runs = runs_in(&d, "tick", Some("succeeded"));
    assert!(!runs.is_empty());
    let time = |r: &serde_json::Value, k: &str| {
        chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap()).unwrap()
    };
    for r in &runs {
        assert!(time(r, "started") >= time(r, "scheduled"), "{r}");
    }
    // Committed ahead, the run is recorded as starting at its instant (a wake-up that came too
    // late for the pre-commit, under heavy load, would record a later start).
    assert!(
        runs.iter().any(|r| r["started"] == r["scheduled"]),
        "no run was pre-committed: {runs:?}"
    );
}

#[test]
fn trigger_show_logs_cancel_over_the_socket() {
    let s = Scratch::new("control").unwrap();
    let d = Daemon::start(s.path(), "").unwrap();
    std::fs::write(
        d.workflows_dir().join("job.yaml"),
        "name: job\nparams:\n  who: world\ntasks:\n  greet:\n    script: echo \"hello {{ params.who }}\"\n  wait:\n    depends_on: [greet]\n    command: [sleep, '30']\n",
    )
    .unwrap();
    wait_for(Duration::from_secs(10), "workflow loaded", || {
        let st = d.ctl_json("status", &[]).ok()?;
        (st["workflows"].as_array()?.len() == 1).then_some(())
    })
    .unwrap();
    let out = d
        .ctl("trigger", &["job", "--param", "who=plant-3"])
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run_id = stdout(&out).trim().to_string();
    wait_for(Duration::from_secs(10), "task wait running", || {
        let v = d.ctl_json("show", &[&run_id]).ok()?;
        let t = v["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["task"] == "wait")?
            .clone();
        (t["state"] == "running").then_some(())
    })
    .unwrap();
    let logs = d.ctl("logs", &[&run_id, "greet"]).unwrap();
    assert_eq!(stdout(&logs).trim(), "hello plant-3", "{}", stderr(&logs));
    // A running task that has printed nothing has no log file yet: its log reads as empty.
    let logs = d.ctl("logs", &[&run_id, "wait"]).unwrap();
    assert!(logs.status.success(), "{}", stderr(&logs));
    assert_eq!(stdout(&logs), "", "{}", stderr(&logs));
    let run_dir = d.state_dir.join("logs").join(&run_id);
    let mut files: Vec<String> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["greet.1.log"], "{}", run_dir.display());
    let out = d.ctl("cancel", &[&run_id]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = wait_for(Duration::from_secs(20), "run cancelled", || {
        let v = d.ctl_json("show", &[&run_id]).ok()?;
        (v["state"] == "cancelled").then_some(v)
    })
    .unwrap();
    let wait = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "wait")
        .unwrap();
    assert_eq!(wait["state"], "cancelled", "{v}");
    // Unknown things get clear errors, not a dead daemon.
    let out = d.ctl("show", &["no-such-run"]).unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no run"), "{}", stderr(&out));
    let out = d.ctl("trigger", &["job", "--param", "nope=1"]).unwrap();
    assert!(
        !out.status.success() && stderr(&out).contains("no parameter"),
        "{}",
        stderr(&out)
    );
    assert!(d.ctl("status", &[]).unwrap().status.success());
}

#[test]
fn pause_stops_firings_and_resume_restarts_them() {
    let s = Scratch::new("pause").unwrap();
    let d = Daemon::start(s.path(), "").unwrap();
    std::fs::write(
        d.workflows_dir().join("p.yaml"),
        "name: p\nschedule: '* * * * * *'\ncatchup: none\ntasks:\n  t:\n    command: [/bin/true]\n",
    )
    .unwrap();
    wait_for(Duration::from_secs(15), "a run", || {
        (!runs_in(&d, "p", None).is_empty()).then_some(())
    })
    .unwrap();
    assert!(d.ctl("pause", &["p"]).unwrap().status.success());
    std::thread::sleep(Duration::from_millis(1200));
    let before = runs_in(&d, "p", None).len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        runs_in(&d, "p", None).len(),
        before,
        "runs fired while paused"
    );
    let st = d.ctl_json("status", &[]).unwrap();
    assert_eq!(st["workflows"][0]["paused"], true);
    assert!(d.ctl("resume", &["p"]).unwrap().status.success());
    wait_for(Duration::from_secs(10), "firings after resume", || {
        (runs_in(&d, "p", None).len() > before).then_some(())
    })
    .unwrap();
}

#[test]
fn edited_file_becomes_a_new_version_and_a_bad_edit_keeps_the_old_one() {
    let s = Scratch::new("reload").unwrap();
    let d = Daemon::start(s.path(), "").unwrap();
    let f = d.workflows_dir().join("w.yaml");
    std::fs::write(&f, "name: w\ntasks:\n  t:\n    command: [/bin/true]\n").unwrap();
    let version = |d: &Daemon| -> Option<u64> {
        let st = d.ctl_json("status", &[]).ok()?;
        st["workflows"]
            .as_array()?
            .iter()
            .find(|w| w["name"] == "w")?["version"]
            .as_u64()
    };
    wait_for(Duration::from_secs(10), "v1", || {
        (version(&d) == Some(1)).then_some(())
    })
    .unwrap();
    std::fs::write(&f, "name: w\ntasks:\n  t:\n    command: [/bin/echo, v2]\n").unwrap();
    wait_for(Duration::from_secs(10), "v2", || {
        (version(&d) == Some(2)).then_some(())
    })
    .unwrap();
    // A broken edit: reported in the log, version 2 stays loaded and triggerable.
    std::fs::write(&f, "name: w\ntasks:\n  t:\n    comand: [/bin/true]\n").unwrap();
    wait_for(Duration::from_secs(10), "diagnostic in the log", || {
        d.stderr_tail().contains("comand").then_some(())
    })
    .unwrap();
    assert_eq!(version(&d), Some(2));
    let out = d.ctl("trigger", &["w"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("w@v2@"), "{}", stdout(&out));
}

#[test]
fn sigterm_lets_running_tasks_finish_then_exits_cleanly() {
    let s = Scratch::new("shutdown").unwrap();
    let mut d = Daemon::start(s.path(), "[shutdown]\ngrace = \"20s\"\n").unwrap();
    std::fs::write(
        d.workflows_dir().join("slow.yaml"),
        "name: slow\ntasks:\n  t:\n    command: [sleep, '1.5']\n",
    )
    .unwrap();
    wait_for(Duration::from_secs(10), "loaded", || {
        d.ctl("trigger", &["slow"])
            .ok()
            .filter(|o| o.status.success())
    })
    .unwrap();
    wait_for(Duration::from_secs(10), "running", || {
        (runs_in(&d, "slow", Some("running")).len() == 1).then_some(())
    })
    .unwrap();
    let st = d.terminate(Duration::from_secs(30)).unwrap();
    assert!(st.success(), "agent exit status {st}");
    let store = outpost_agent::store::Store::open(&d.state_dir.join("agent.redb")).unwrap();
    assert!(!store.was_repaired(), "the store was left needing a repair");
    drop(store);
    d.restart().unwrap();
    let runs = runs_in(&d, "slow", None);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["state"], "succeeded", "{runs:?}");
}

#[test]
fn missed_firings_follow_catchup_after_downtime() {
    let s = Scratch::new("catchup").unwrap();
    let mut d = Daemon::start(s.path(), "").unwrap();
    std::fs::write(
        d.workflows_dir().join("c.yaml"),
        "name: c\nschedule: '* * * * * *'\ncatchup: all\ncatchup_window: 1h\noverlap: allow\nmax_active_runs: 50\ntasks:\n  t:\n    command: [/bin/true]\n",
    )
    .unwrap();
    wait_for(Duration::from_secs(15), "a run", || {
        (!runs_in(&d, "c", None).is_empty()).then_some(())
    })
    .unwrap();
    d.terminate(Duration::from_secs(20)).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    d.restart().unwrap();
    let runs = wait_for(Duration::from_secs(20), "catch-up runs", || {
        let r = runs_in(&d, "c", None);
        r.iter().any(|r| r["kind"] == "catchup").then_some(r)
    })
    .unwrap();
    // Every second of the downtime ran exactly once.
    let mut secs: Vec<i64> = runs
        .iter()
        .filter_map(|r| chrono::DateTime::parse_from_rfc3339(r["scheduled"].as_str()?).ok())
        .map(|t| t.timestamp())
        .collect();
    secs.sort();
    let n = secs.len();
    secs.dedup();
    assert_eq!(secs.len(), n, "an instant ran twice");
    let catchups = runs.iter().filter(|r| r["kind"] == "catchup").count();
    assert!(
        catchups >= 3,
        "expected ≥3 catch-up runs for ~6 s of downtime, got {catchups}"
    );
    for w in secs.windows(2) {
        assert_eq!(
            w[1] - w[0],
            1,
            "a second was lost between {} and {}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn status_json_names_the_state_dir() {
    let s = Scratch::new("status-dir").unwrap();
    let d = Daemon::start(s.path(), "").unwrap();
    let v = d.ctl_json("status", &[]).unwrap();
    assert_eq!(
        v["state_dir"].as_str().map(std::path::PathBuf::from),
        Some(d.state_dir.clone()),
        "{v}"
    );
}
