//! kill -9 the daemon at random points while runs are in flight, many times over.
//!
//! After every kill the agent restarts on the same store and we check: the store reopens; no
//! run that was committed (seen through the control socket, which reads the store) is lost; no
//! scheduled instant has two runs; and interrupted attempts are handled as documented
//! (`idempotent` tasks retried, others failed with the reason). 50 kills by default;
//! `OUTPOST_SLOW=1` makes it 300.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use outpost_tests::{Daemon, Scratch, wait_for};

/// xorshift64*: a seeded, printed, reproducible sequence of kill points.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORKFLOW: &str = "name: crashy
schedule: '* * * * * *'
catchup: all
catchup_window: 1h
overlap: allow
max_active_runs: 8
tasks:
  fetch:
    script: sleep 0.2
    idempotent: true
    retries: 3
    retry_delay: 100ms
  load:
    depends_on: [fetch]
    script: sleep 0.3
  report:
    depends_on: [load]
    command: [/bin/true]
    idempotent: true
    retries: 5
    retry_delay: 50ms
";

#[test]
fn kill_dash_9_at_random_points_loses_nothing() {
    let kills: u64 = if std::env::var_os("OUTPOST_SLOW").is_some() {
        300
    } else {
        50
    };
    let seed = std::env::var("OUTPOST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64 * 0x9E37_79B9 + 1);
    eprintln!("crash test: {kills} kills, seed {seed} (OUTPOST_CRASH_SEED to replay)");
    let mut rng = Rng(seed | 1);
    let s = Scratch::new("crash").unwrap();
    let mut d = Daemon::start(s.path(), "max_running = 4\n[shutdown]\ngrace = \"1s\"\n").unwrap();
    std::fs::write(d.workflows_dir().join("crashy.yaml"), WORKFLOW).unwrap();
    wait_for(Duration::from_secs(15), "first run", || {
        (!d.runs(Some("crashy")).ok()?.is_empty()).then_some(())
    })
    .unwrap();

    let mut committed: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..kills {
        std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
        if rng.below(4) == 0 {
            let _ = d.ctl("trigger", &["crashy"]);
        }
        // What the store holds now was committed: it must survive the kill.
        for r in d.runs(Some("crashy")).unwrap() {
            committed.insert(
                r["run_id"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            );
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        d.kill9().unwrap();
        d.restart()
            .unwrap_or_else(|e| panic!("kill {i}: the agent did not come back: {e}"));
        let now: BTreeMap<String, String> = d
            .runs(Some("crashy"))
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r["run_id"].as_str().unwrap().to_string(),
                    r["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for (id, state) in &committed {
            let after = now
                .get(id)
                .unwrap_or_else(|| panic!("kill {i}: committed run {id} ({state}) was lost"));
            if matches!(
                state.as_str(),
                "succeeded" | "failed" | "cancelled" | "skipped"
            ) {
                assert_eq!(after, state, "kill {i}: finished run {id} changed state");
            }
        }
    }

    // Let everything finish, then check every run in detail.
    let runs = wait_for(Duration::from_secs(120), "all runs to finish", || {
        d.ctl("pause", &["crashy"]).ok()?;
        let runs = d.runs(Some("crashy")).ok()?;
        runs.iter()
            .all(|r| !matches!(r["state"].as_str(), Some("running" | "queued")))
            .then_some(runs)
    })
    .unwrap();
    let mut instants = BTreeSet::new();
    let mut interrupted_retried = 0;
    let mut interrupted_failed = 0;
    for r in &runs {
        let id = r["run_id"].as_str().unwrap();
        if r["kind"] != "manual" {
            assert!(
                instants.insert(r["scheduled"].as_str().unwrap().to_string()),
                "instant with two runs: {id}"
            );
        }
        let v = d.ctl_json("show", &[id]).unwrap();
        for t in v["tasks"].as_array().unwrap() {
            let state = t["state"].as_str().unwrap();
            assert!(
                matches!(
                    state,
                    "succeeded" | "failed" | "upstream_failed" | "skipped" | "cancelled"
                ),
                "{id}: task not terminal: {t}"
            );
            let reason = t["reason"].as_str().unwrap_or("");
            if t["task"] == "load" && state == "failed" {
                // `load` never fails on its own: only an interrupted, non-idempotent attempt fails it.
                assert!(
                    reason.contains("interrupted"),
                    "{id}: load failed without reason: {t}"
                );
                assert_eq!(
                    t["attempts"], 1,
                    "{id}: non-idempotent task was re-run: {t}"
                );
                interrupted_failed += 1;
            }
            if t["task"] == "fetch" && t["attempts"].as_u64().unwrap_or(0) > 1 {
                interrupted_retried += 1;
            }
        }
    }
    eprintln!(
        "crash test: {} runs, {} interrupted `load` attempts failed, {} `fetch` tasks retried after interruption",
        runs.len(),
        interrupted_failed,
        interrupted_retried
    );
    assert!(
        runs.len() as u64 >= kills / 2,
        "suspiciously few runs: {}",
        runs.len()
    );
    for id in committed.keys() {
        assert!(
            runs.iter().any(|r| r["run_id"] == id.as_str()),
            "committed run {id} lost at the end"
        );
    }
}

/// Dispatched attempts that never started are taken back after a kill -9 (the start journal,
/// same boot), not failed as "may have started": non-idempotent tasks run exactly once each.
#[test]
fn after_kill_dash_9_dispatched_attempts_that_never_started_still_run() {
    let s = Scratch::new("journal").unwrap();
    let mut d = Daemon::start(
        s.path(),
        "max_running = 1\ndispatch_ahead = 4\n[shutdown]\ngrace = \"1s\"\n",
    )
    .unwrap();
    let marks = s.join("marks");
    let mut wf = String::from("name: once\ntasks:\n");
    for i in 1..=6 {
        wf.push_str(&format!(
            "  t{i}:\n    script: echo $OUTPOST_TASK >> '{}'; sleep 0.4\n",
            marks.display()
        ));
    }
    std::fs::write(d.workflows_dir().join("once.yaml"), wf).unwrap();
    wait_for(Duration::from_secs(10), "loaded", || {
        d.ctl("trigger", &["once"])
            .ok()
            .filter(|o| o.status.success())
    })
    .unwrap();
    // t1 runs (its mark is written); t2..t5 are dispatched behind it.
    wait_for(Duration::from_secs(10), "t1 to start", || {
        std::fs::read_to_string(&marks)
            .ok()
            .filter(|m| m.lines().count() == 1)
    })
    .unwrap();
    let run_id = d.runs(Some("once")).unwrap()[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = d.ctl_json("show", &[&run_id]).unwrap();
    let dispatched = before["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "dispatched")
        .count();
    assert_eq!(dispatched, 4, "expected t2..t5 dispatched: {before}");
    d.kill9().unwrap();
    d.restart().unwrap();
    let v = wait_for(Duration::from_secs(30), "the run to end", || {
        let v = d.ctl_json("show", &[&run_id]).ok()?;
        (v["state"] != "running").then_some(v)
    })
    .unwrap();
    let mut states = BTreeMap::new();
    for t in v["tasks"].as_array().unwrap() {
        states.insert(
            t["task"].as_str().unwrap().to_string(),
            (
                t["state"].as_str().unwrap().to_string(),
                t["reason"].clone(),
            ),
        );
    }
    // t1 had started: interrupted, and failed (not idempotent). The others all ran.
    assert_eq!(states["t1"].0, "failed", "{v}");
    assert!(
        states["t1"]
            .1
            .as_str()
            .unwrap_or("")
            .contains("interrupted"),
        "{v}"
    );
    for i in 2..=6 {
        assert_eq!(states[&format!("t{i}")].0, "succeeded", "t{i}: {v}");
    }
    let mut ran: Vec<String> = std::fs::read_to_string(&marks)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    ran.sort();
    assert_eq!(
        ran,
        ["t1", "t2", "t3", "t4", "t5", "t6"],
        "each task ran exactly once"
    );
}

/// A cron run is committed ahead of its instant (`precommit_lead`, here 2 s, the most it may be) and its process
/// starts at the instant. A kill -9 inside that lead, before the process started, does not fail
/// the non-idempotent task: after the restart it still starts no earlier than its instant, as
/// attempt 1, and runs exactly once.
#[test]
fn after_kill_dash_9_inside_the_precommit_lead_the_task_runs_once_and_not_early() {
    let s = Scratch::new("lead").unwrap();
    let mut d = Daemon::start(s.path(), "precommit_lead = \"2s\"\n").unwrap();
    let marks = s.join("marks");
    std::fs::write(
        d.workflows_dir().join("lead.yaml"),
        format!(
            "name: lead\nschedule: '*/5 * * * * *'\ncatchup: none\ntasks:\n  t:\n    script: \
             echo \"$OUTPOST_RUN_ID $(date +%s%3N)\" >> '{}'\n",
            marks.display()
        ),
    )
    .unwrap();
    // A run committed ahead of its instant, its task not started yet.
    let (run_id, scheduled) = wait_for(Duration::from_secs(20), "a pre-committed run", || {
        let runs = d.runs(Some("lead")).ok()?;
        let r = runs.iter().find(|r| r["state"] == "running")?;
        let id = r["run_id"].as_str()?.to_string();
        let v = d.ctl_json("show", &[&id]).ok()?;
        (v["tasks"][0]["state"] == "dispatched").then(|| (id, v["scheduled"].clone()))
    })
    .unwrap();
    d.kill9().unwrap();
    let ran_before = std::fs::read_to_string(&marks).unwrap_or_default();
    assert!(
        !ran_before.contains(&run_id),
        "the task had started before the kill: {ran_before}"
    );
    d.restart().unwrap();
    let v = wait_for(Duration::from_secs(30), "the run to end", || {
        let v = d.ctl_json("show", &[&run_id]).ok()?;
        (v["state"] != "running").then_some(v)
    })
    .unwrap();
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(v["tasks"][0]["attempts"], 1, "{v}");
    let lines: Vec<String> = std::fs::read_to_string(&marks)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(&format!("{run_id} ")))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1, "the task ran exactly once: {lines:?}");
    let started_ms: i64 = lines[0]
        .rsplit(' ')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap();
    let scheduled_ms = chrono::DateTime::parse_from_rfc3339(scheduled.as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        started_ms >= scheduled_ms,
        "started {} ms before its instant {scheduled}",
        scheduled_ms - started_ms
    );
}
