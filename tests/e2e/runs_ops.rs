//! Runs again and runs for the past, through the hub (docs/operations.md, "Rerun, backfill,
//! trigger --at"): `run retry` reopens a failed run as new attempts; `workflow backfill` makes
//! the schedule's instants' runs with the live ids, once, at most `--max-active` at a time;
//! `workflow trigger --at` runs once with a past logical time.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use outpost_tests::{Hub, Scratch, enrolled_agent, stderr, stdout, wait_for};

use crate::hub::{FAST_HUB, agent_id_by_name, agent_version, apply, hub_runs};

const WAIT: Duration = Duration::from_secs(60);

fn run_show(hub: &Hub, run_id: &str) -> serde_json::Value {
    hub.json(&["run", "show", run_id]).unwrap()
}

fn task_of<'a>(run: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    run["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["task"] == id))
        .unwrap_or_else(|| panic!("no task {id} in {run}"))
}

/// Wait until the hub shows `run_id` in `state`.
fn wait_state(hub: &Hub, run_id: &str, state: &str) -> serde_json::Value {
    wait_for(WAIT, &format!("run {run_id} {state} at the hub"), || {
        let r = hub.json(&["run", "show", run_id]).ok()?;
        (r["state"] == state).then_some(r)
    })
    .unwrap()
}

#[test]
fn run_retry_runs_the_failed_task_again_as_attempt_two() {
    let s = Scratch::new("runs-retry").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let agent = agent_id_by_name(&hub, "a");
    let marker = s.join("marker");
    // `first` fails while the marker is absent (and makes it): it fails once, then succeeds.
    let wf = format!(
        "name: flaky\ntasks:\n  first:\n    script: 'if [ -e {m} ]; then exit 0; fi; touch {m}; exit 3'\n  after:\n    command: [/bin/true]\n    depends_on: [first]\n",
        m = marker.display()
    );
    let v = apply(&hub, s.path(), "flaky.yaml", &wf);
    wait_for(WAIT, "the version at the agent", || {
        (agent_version(&d, "flaky") == v).then_some(())
    })
    .unwrap();
    let t = hub
        .json(&["workflow", "trigger", "flaky", "--agent", &agent])
        .unwrap();
    let run_id = t["results"][0]["run_id"].as_str().unwrap().to_string();
    let r = wait_state(&hub, &run_id, "failed");
    assert_eq!(task_of(&r, "first")["state"], "failed", "{r}");
    assert_eq!(task_of(&r, "after")["state"], "upstream_failed", "{r}");

    let out = hub.cli(&["run", "retry", &run_id]).unwrap();
    assert!(
        out.status.success(),
        "retry: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("first"), "{}", stdout(&out));
    let r = wait_state(&hub, &run_id, "succeeded");
    let first = task_of(&r, "first");
    assert_eq!(first["state"], "succeeded", "{r}");
    assert_eq!(
        first["attempts"], 2,
        "the retry is attempt 2 of the same run: {r}"
    );
    assert_eq!(task_of(&r, "after")["attempts"], 1, "{r}");
    assert_eq!(task_of(&r, "after")["state"], "succeeded", "{r}");
    // Still one run of it, at the hub and on the agent.
    assert_eq!(hub_runs(&hub, &agent, "flaky").len(), 1);
    assert_eq!(d.runs(Some("flaky")).unwrap().len(), 1);

    // Asking again: nothing failed any more; no third attempt.
    let out = hub.cli(&["run", "retry", &run_id]).unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("nothing to retry"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(500));
    let r = run_show(&hub, &run_id);
    assert_eq!(task_of(&r, "first")["attempts"], 2, "{r}");
    assert_eq!(r["state"], "succeeded");

    // On the agent itself: one named task (a succeeded one) runs again as its attempt 2.
    let out = d.ctl("retry", &[&run_id, "--task", "after"]).unwrap();
    assert!(
        out.status.success(),
        "local retry: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let r = wait_for(WAIT, "the local retry at the hub", || {
        let r = hub.json(&["run", "show", &run_id]).ok()?;
        (r["state"] == "succeeded" && task_of(&r, "after")["attempts"] == 2).then_some(r)
    })
    .unwrap();
    assert_eq!(task_of(&r, "first")["attempts"], 2, "not named: {r}");
}

/// The run id a live firing of `workflow` v`version` at `t` has.
fn live_id(workflow: &str, version: u64, t: DateTime<Utc>) -> String {
    format!("{workflow}@v{version}@{}", t.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// The largest number of intervals (start, end) open at once.
fn max_overlap(log: &str) -> usize {
    let mut events: Vec<(u128, i32)> = Vec::new();
    for line in log.lines() {
        let mut it = line.split_whitespace();
        let (Some(kind), Some(ts)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(ts) = ts.parse::<u128>() else { continue };
        // An end before a start at the same instant.
        events.push((ts, if kind == "start" { 1 } else { -1 }));
    }
    events.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in events {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

#[test]
fn backfill_makes_the_instants_runs_once_with_live_ids_and_bounded_concurrency() {
    let s = Scratch::new("runs-backfill").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let agent = agent_id_by_name(&hub, "a");
    let log = s.join("spans.log");
    // Hourly; many runs may be active at once by the workflow's own bound, so that only the
    // backfill's --max-active limits them.
    let wf = format!(
        "name: hourly\nschedule: '0 * * * *'\ncatchup: none\noverlap: allow\nmax_active_runs: 10\ntasks:\n  work:\n    script: 'echo start $(date +%s%N) >> {l}; sleep 1; echo end $(date +%s%N) >> {l}'\n",
        l = log.display()
    );
    let v = apply(&hub, s.path(), "hourly.yaml", &wf);
    wait_for(WAIT, "the version at the agent", || {
        (agent_version(&d, "hourly") == v).then_some(())
    })
    .unwrap();
    // Yesterday, 00:00 to 04:00 UTC: four instants.
    let day = (Utc::now() - Span::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let at = |h: i64| day + Span::hours(h);
    let (from, to) = (at(0).to_rfc3339(), at(4).to_rfc3339());
    let want: Vec<String> = (0..4).map(|h| live_id("hourly", v, at(h))).collect();

    // --dry-run lists the instants and starts nothing.
    let out = hub
        .cli(&[
            "workflow",
            "backfill",
            "hourly",
            "--from",
            &from,
            "--to",
            &to,
            "--dry-run",
        ])
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("4 instant(s)"), "{text}");
    assert!(text.contains(&at(3).to_rfc3339()), "{text}");
    assert!(
        !text.contains(&at(4).to_rfc3339()),
        "the window excludes --to: {text}"
    );

    // One instant first: it runs once.
    let first = hub
        .json(&[
            "workflow",
            "backfill",
            "hourly",
            "--from",
            &from,
            "--to",
            &at(1).to_rfc3339(),
            "--agent",
            &agent,
        ])
        .unwrap();
    assert_eq!(first["instants"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["results"][0]["ok"], true, "{first}");
    wait_for(WAIT, "the first backfill run at the hub", || {
        let runs = hub_runs(&hub, &agent, "hourly");
        (runs.len() == 1 && runs[0]["state"] == "succeeded").then_some(())
    })
    .unwrap();

    // The whole window, two at a time: the instant that ran is present, three new runs.
    let out = hub
        .cli(&[
            "workflow",
            "backfill",
            "hourly",
            "--from",
            &from,
            "--to",
            &to,
            "--max-active",
            "2",
        ])
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("queued 3 run(s)"), "{text}");
    assert!(text.contains("already present 1"), "{text}");
    assert!(text.contains(&want[0]), "{text}");
    let runs = wait_for(WAIT, "four finished backfill runs at the hub", || {
        let runs = hub_runs(&hub, &agent, "hourly");
        (runs.len() == 4 && runs.iter().all(|r| r["state"] == "succeeded")).then_some(runs)
    })
    .unwrap();
    let mut got: Vec<String> = runs
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, want, "the live firings' run ids");
    assert!(runs.iter().all(|r| r["kind"] == "catchup"), "{runs:?}");
    let spans = std::fs::read_to_string(&log).unwrap();
    assert_eq!(spans.lines().count(), 8, "four runs, each once: {spans}");
    let overlap = max_overlap(
        &spans
            .lines()
            .skip(2) // the first backfill's run
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert!(overlap <= 2, "--max-active 2 exceeded ({overlap}): {spans}");

    // The same window again: every instant is present, nothing runs.
    let out = hub
        .cli(&[
            "workflow", "backfill", "hourly", "--from", &from, "--to", &to,
        ])
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("queued 0 run(s)"), "{text}");
    assert!(text.contains("already present 4"), "{text}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hub_runs(&hub, &agent, "hourly").len(), 4);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 8);
}

#[test]
fn trigger_at_runs_once_with_the_past_logical_time() {
    let s = Scratch::new("runs-trigger-at").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let agent = agent_id_by_name(&hub, "a");
    let out_file = s.join("scheduled.txt");
    let wf = format!(
        "name: report\ntasks:\n  t:\n    script: 'echo \"{{{{ run.scheduled_time }}}}\" >> {o}'\n",
        o = out_file.display()
    );
    let v = apply(&hub, s.path(), "report.yaml", &wf);
    wait_for(WAIT, "the version at the agent", || {
        (agent_version(&d, "report") == v).then_some(())
    })
    .unwrap();
    let at = (Utc::now() - Span::days(2))
        .date_naive()
        .and_hms_opt(6, 30, 0)
        .unwrap()
        .and_utc();
    let at_s = at.to_rfc3339();
    let t = hub
        .json(&["workflow", "trigger", "report", "--at", &at_s])
        .unwrap();
    assert_eq!(t["results"][0]["ok"], true, "{t}");
    let run_id = t["results"][0]["run_id"].as_str().unwrap().to_string();
    let r = wait_state(&hub, &run_id, "succeeded");
    assert_eq!(r["kind"], "manual", "{r}");
    let scheduled: DateTime<Utc> = r["scheduled"].as_str().unwrap().parse().unwrap();
    assert_eq!(scheduled, at, "{r}");
    let seen = std::fs::read_to_string(&out_file).unwrap();
    let seen_t: DateTime<Utc> = seen.trim().parse().unwrap();
    assert_eq!(seen_t, at, "the task sees the logical time: {seen}");

    // Again: the same run, not a second one.
    let t2 = hub
        .json(&["workflow", "trigger", "report", "--at", &at_s])
        .unwrap();
    assert_eq!(t2["results"][0]["run_id"], run_id.as_str(), "{t2}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(hub_runs(&hub, &agent, "report").len(), 1);
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap().lines().count(),
        1
    );

    // A time to come is refused.
    let future = (Utc::now() + Span::days(1)).to_rfc3339();
    let out = hub
        .cli(&["workflow", "trigger", "report", "--at", &future])
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));

    // The agent's own CLI does the same through its control socket.
    let local_at = (at - Span::hours(1)).to_rfc3339();
    let out = d.ctl("trigger", &["report", "--at", &local_at]).unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let local_id = stdout(&out).trim().to_string();
    assert!(local_id.contains("@m"), "a manual run id: {local_id}");
    wait_for(WAIT, "the local trigger --at run", || {
        (std::fs::read_to_string(&out_file).ok()?.lines().count() == 2).then_some(())
    })
    .unwrap();
}
