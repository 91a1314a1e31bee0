//! What operators see, with the real binaries: `run logs -f` through the hub, the reason of a
//! skipped run, missed firings among `run list`'s rows, `--watch` (Ctrl-C and a closed pipe end
//! it with exit 0), `outpost-agent status`'s hub link, and the workflow schema command.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outpost_tests::{Hub, Scratch, agent, enrolled_agent, hub_bin, stdout, wait_for};

use crate::hub::{FAST_HUB, agent_id_by_name, apply, ticker};

/// The hub judges firings 6 s after they are due (see firings.rs).
const GRACE: &str = "firing_grace = \"6s\"\n";

/// `outpost-hub ARGS` as a child with piped stdout.
fn hub_child(hub: &Hub, args: &[&str]) -> std::process::Child {
    Command::new(hub_bin())
        .args(args)
        .env("OUTPOST_HUB_URL", &hub.http_url)
        .env("OUTPOST_HUB_TOKEN", &hub.api_token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a child to exit (at most `limit`).
fn wait_exit(c: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = c.kill();
            panic!("the command did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn runs(hub: &Hub, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["run", "list"];
    a.extend_from_slice(args);
    hub.json(&a).unwrap().as_array().cloned().unwrap()
}

/// A workflow whose runs take ~4 s and fire every second with `overlap: skip`: most firings are
/// skipped because a run is active. Its task prints a numbered line each half second.
const SLOW: &str = "name: slow\nschedule: '* * * * * *'\ncatchup: none\noverlap: skip\ntasks:\n  t:\n    script: |\n      for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 0.5; done\n";

#[test]
fn follow_logs_skip_reasons_and_the_agents_hub_link() {
    let s = Scratch::new("views").unwrap();
    let mut hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");

    // The agent shows its hub link: connected, since when; nothing pending for long.
    let st = wait_for(Duration::from_secs(20), "the hub link in status", || {
        let v = d.ctl_json("status", &[]).ok()?;
        (v["hub_link"]["connected"] == true).then_some(v)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.stderr_tail()));
    assert!(st["hub_link"]["connected_since"].is_string(), "{st}");
    assert!(st["hub_link"]["outbox_pending"].is_u64(), "{st}");
    let text = stdout(&d.ctl("status", &[]).unwrap());
    assert!(text.contains("connected since"), "{text}");
    assert!(text.contains("hub outbox:"), "{text}");

    apply(&hub, s.path(), "slow.yaml", SLOW);

    // A run that is running at the hub: follow its task's log to the end.
    let run = wait_for(Duration::from_secs(30), "a running run at the hub", || {
        runs(&hub, &["--workflow", "slow", "--state", "running"])
            .into_iter()
            .next()
    })
    .unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let start = Instant::now();
    let mut f = hub_child(&hub, &["run", "logs", &run_id, "t", "-f", "--agent", &id]);
    let st = wait_exit(&mut f, Duration::from_secs(60));
    let out = f.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        st.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = log.lines().collect();
    let want: Vec<String> = (1..=8).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, want, "every line once, in order");
    assert!(
        start.elapsed() > Duration::from_millis(500),
        "it followed the running task until it ended"
    );

    // Skipped runs say why, in `run show` (text and JSON).
    let skipped = wait_for(Duration::from_secs(30), "a skipped run at the hub", || {
        runs(&hub, &["--workflow", "slow", "--state", "skipped"])
            .into_iter()
            .next()
    })
    .unwrap();
    let sid = skipped["run_id"].as_str().unwrap();
    let shown = hub.json(&["run", "show", sid, "--agent", &id]).unwrap();
    let why = shown["skip_reason"].as_str().unwrap_or_default();
    assert!(why.starts_with("overlap=skip: run slow@v1@"), "{shown}");
    let text = stdout(&hub.cli(&["run", "show", sid, "--agent", &id]).unwrap());
    assert!(text.contains("skipped:   overlap=skip"), "{text}");

    // The hub goes away: the agent shows the link down and the last error.
    hub.kill9().unwrap();
    let st = wait_for(Duration::from_secs(30), "the link down in status", || {
        let v = d.ctl_json("status", &[]).ok()?;
        (v["hub_link"]["connected"] == false && v["hub_link"]["last_error"].is_string())
            .then_some(v)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.stderr_tail()));
    assert!(st["hub_link"]["last_error_at"].is_string(), "{st}");
    assert!(st["hub_link"]["connected_since"].is_null(), "{st}");
    let text = stdout(&d.ctl("status", &[]).unwrap());
    assert!(text.contains("NOT CONNECTED"), "{text}");
    assert!(text.contains("hub last error at "), "{text}");
}

#[test]
fn missed_firings_are_rows_of_run_list_and_watch_ends_with_exit_zero() {
    let s = Scratch::new("views-missed").unwrap();
    let hub = Hub::start(s.path(), &format!("{FAST_HUB}{GRACE}")).unwrap();
    let mut d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    apply(&hub, s.path(), "tick.yaml", &ticker("tick", 1, "v1", ""));
    wait_for(Duration::from_secs(30), "a run of tick at the hub", || {
        (!runs(&hub, &["--workflow", "tick", "--state", "succeeded"]).is_empty()).then_some(())
    })
    .unwrap();
    // Down for a few seconds (kill -9; `catchup: none`): restarted, the agent records the
    // firings it did not make, and the hub lists them as missed.
    d.kill9().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    d.restart().unwrap();
    let missed = wait_for(Duration::from_secs(40), "missed rows in run list", || {
        let rows = runs(&hub, &["--workflow", "tick", "--state", "missed"]);
        (rows.len() >= 2).then_some(rows)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    for r in &missed {
        assert_eq!(r["state"], "missed", "{r}");
        assert!(r["run_id"].as_str().unwrap().starts_with("tick@v1@"), "{r}");
        assert_eq!(r["kind"], "scheduled", "{r}");
    }
    // Without --state: runs and missed firings together, newest first.
    let all = runs(&hub, &["--workflow", "tick", "--limit", "1000"]);
    assert!(all.iter().any(|r| r["state"] == "missed"), "{all:?}");
    assert!(all.iter().any(|r| r["state"] == "succeeded"), "{all:?}");
    let times: Vec<&str> = all.iter().map(|r| r["created"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    // Another state: no firings.
    let ok = runs(&hub, &["--workflow", "tick", "--state", "succeeded"]);
    assert!(ok.iter().all(|r| r["state"] == "succeeded"));
    let text = stdout(&hub.cli(&["run", "list", "--state", "missed"]).unwrap());
    assert!(text.contains(" missed "), "{text}");

    // --watch with JSON: one document a line per refresh; Ctrl-C ends it with exit 0.
    let mut w = hub_child(
        &hub,
        &[
            "run",
            "list",
            "--workflow",
            "tick",
            "-w",
            "0.3",
            "--output",
            "json",
        ],
    );
    let mut lines = BufReader::new(w.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{line}");
    }
    let pid = rustix::process::Pid::from_raw(w.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let st = wait_exit(&mut w, Duration::from_secs(10));
    assert!(st.success(), "Ctrl-C ends --watch with exit 0: {st:?}");

    // `agent list --watch` into a pipe that closes: exit 0.
    let mut w = hub_child(&hub, &["agent", "list", "--watch", "0.2"]);
    let mut out = BufReader::new(w.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("ID"), "{first}");
    drop(out);
    let st = wait_exit(&mut w, Duration::from_secs(10));
    assert!(
        st.success(),
        "a closed pipe ends --watch with exit 0: {st:?}"
    );
}

#[test]
fn the_schema_command_prints_the_committed_schema() {
    let out = agent(&["schema"]).unwrap();
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(outpost_tests::repo_root().join("docs/workflow.schema.json"))
            .unwrap();
    assert_eq!(stdout(&out), committed);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["required"], serde_json::json!(["name", "tasks"]));
}
