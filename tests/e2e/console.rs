//! The web console in a real browser: a real hub and real agents, and Debian's headless
//! chromium driven by playwright-core from the scenarios in tests/console/*.mjs (one test per
//! scenario). Each test builds what its scenario looks at (agents, workflows, runs, a rollout,
//! operators), runs `node tests/console/<scenario>.mjs` with the hub's address and credentials in
//! its environment, and serves its `CTL <cmd>` requests (stop or start an agent, let a task
//! finish) on the scenario's stdin/stdout. axe-core checks the main pages; the screenshots go to
//! target/console-screenshots (and docs/console/ with UPDATE_SCREENSHOTS=1).
//!
//! Missing node, chromium or the npm packages is a failure that names the fix
//! (`bash scripts/test.sh` installs them).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outpost_tests::{Daemon, Hub, Scratch, bin_dir, enrolled_agent, repo_root, wait_for};

use crate::hub::{FAST_HUB, agent_id_by_name, agent_version, apply};

const WAIT: Duration = Duration::from_secs(60);
/// A scenario's whole run, browser start to exit.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

fn console_dir() -> PathBuf {
    repo_root().join("tests").join("console")
}

/// Node, chromium and the scenario packages are here, or the reason they are not and the fix.
fn preflight() {
    let fix = "run `bash scripts/test.sh` (it installs Debian's chromium, nodejs and npm, and runs \
               `npm ci` in tests/console), or by hand: `apt-get install chromium nodejs npm` and \
               `cd tests/console && npm ci`";
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the console's browser tests need node (not found on PATH): {fix}"
    );
    let chromium = std::env::var("OUTPOST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "the console's browser tests need chromium at {chromium} (OUTPOST_CHROMIUM overrides): {fix}"
    );
    for pkg in ["playwright-core", "axe-core"] {
        let p = console_dir()
            .join("node_modules")
            .join(pkg)
            .join("package.json");
        assert!(
            p.is_file(),
            "the console's browser tests need the npm package {pkg} in tests/console/node_modules: {fix}"
        );
    }
}

/// Where the scenarios write their screenshots: target/console-screenshots.
fn screenshots_dir() -> PathBuf {
    let debug = bin_dir();
    debug
        .parent()
        .map(|t| t.join("console-screenshots"))
        .unwrap_or_else(|| repo_root().join("target").join("console-screenshots"))
}

/// Run the scenario `tests/console/<name>.mjs` with `env` (plus the screenshot directories),
/// answering each `CTL <cmd>` it writes with `ctl(cmd)`: `OK`, or `ERR <why>`. Fails the test
/// unless the scenario exits 0 having printed `PASS <name>`; the failure shows its transcript.
fn scenario(name: &str, env: &[(&str, String)], mut ctl: impl FnMut(&str) -> anyhow::Result<()>) {
    preflight();
    let mut cmd = Command::new("node");
    cmd.arg(console_dir().join(format!("{name}.mjs")))
        .current_dir(console_dir())
        .env("OUTPOST_SCREENSHOTS", screenshots_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        cmd.env(
            "OUTPOST_DOCS_SCREENSHOTS",
            repo_root().join("docs").join("console"),
        );
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning node");
    let mut stdin = child.stdin.take().expect("node's stdin");
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("node's stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err = child.stderr.take().expect("node's stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    let start = Instant::now();
    let mut transcript = Vec::new();
    let mut timed_out = false;
    loop {
        let Some(left) = SCENARIO_TIMEOUT.checked_sub(start.elapsed()) else {
            timed_out = true;
            break;
        };
        match rx.recv_timeout(left) {
            Ok(line) => {
                eprintln!("[{name}] {line}");
                if let Some(c) = line.strip_prefix("CTL ") {
                    let answer = match ctl(c) {
                        Ok(()) => "OK".to_string(),
                        Err(e) => format!("ERR {}", format!("{e:#}").replace('\n', " ")),
                    };
                    eprintln!("[{name}] -> {answer}");
                    // A scenario that has died cannot read it; its exit says why.
                    let _ = writeln!(stdin, "{answer}");
                    let _ = stdin.flush();
                }
                transcript.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    drop(stdin);
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait().expect("waiting for node");
    let stderr = err_reader.join().unwrap_or_default();
    let passed = transcript.iter().any(|l| l == &format!("PASS {name}"));
    assert!(
        passed && status.success() && !timed_out,
        "console scenario {name} {}: exit {status}\n--- transcript ---\n{}\n--- node stderr ---\n{stderr}",
        if timed_out {
            format!("timed out after {SCENARIO_TIMEOUT:?}")
        } else {
            "failed".to_string()
        },
        transcript.join("\n"),
    );
}

/// A hub (fast link-loss detection) and agents named `a0`, `a1`, ... with `labels[i]`
/// (`name=aN` added).
struct Site {
    s: Scratch,
    hub: Hub,
    agents: Vec<(String, Daemon)>,
}

impl Site {
    fn new(tag: &str, labels: &[&str]) -> Site {
        let s = Scratch::new(tag).unwrap();
        let hub = Hub::start(s.path(), FAST_HUB).unwrap();
        let mut agents = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            let name = format!("a{i}");
            let labels = if l.is_empty() {
                format!("name={name}")
            } else {
                format!("name={name},{l}")
            };
            let d = enrolled_agent(&s.join(&name), &hub, hub.quic_addr, &labels, "").unwrap();
            agents.push((agent_id_by_name(&hub, &name), d));
        }
        let site = Site { s, hub, agents };
        site.wait_online(&site.ids(), true);
        site
    }

    fn ids(&self) -> Vec<String> {
        self.agents.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Wait until the hub shows each of `ids` online (or offline).
    fn wait_online(&self, ids: &[String], online: bool) {
        wait_for(WAIT, "agents online at the hub", || {
            let l = self.hub.json(&["agent", "list"]).ok()?;
            let all = ids.iter().all(|id| {
                l.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x["id"] == id.as_str() && x["online"] == online)
                })
            });
            all.then_some(())
        })
        .unwrap();
    }

    fn daemon(&mut self, id: &str) -> anyhow::Result<&mut Daemon> {
        self.agents
            .iter_mut()
            .find(|(i, _)| i == id)
            .map(|(_, d)| d)
            .ok_or_else(|| anyhow::anyhow!("no agent {id} in this test"))
    }

    /// Apply `content` and wait until every agent runs the version the hub made.
    fn apply_everywhere(&self, file: &str, name: &str, content: &str) -> u64 {
        let v = apply(&self.hub, self.s.path(), file, content);
        for (id, d) in &self.agents {
            wait_for(WAIT, "the version at the agent", || {
                (agent_version(d, name) == v).then_some(())
            })
            .unwrap_or_else(|e| panic!("{e}: {id} on v{v} of {name}"));
        }
        v
    }

    /// `workflow trigger NAME --agent A [-p k=v]...`: the run id.
    fn trigger(&self, name: &str, agent: &str, params: &[&str]) -> String {
        let mut args = vec!["workflow", "trigger", name, "--agent", agent];
        for p in params {
            args.extend_from_slice(&["-p", p]);
        }
        let t = self.hub.json(&args).unwrap();
        t["results"][0]["run_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no run id: {t}"))
            .to_string()
    }

    /// Wait until the hub shows `run_id` in `state`.
    fn wait_run(&self, run_id: &str, state: &str) -> serde_json::Value {
        wait_for(WAIT, &format!("run {run_id} {state} at the hub"), || {
            let r = self.hub.json(&["run", "show", run_id]).ok()?;
            (r["state"] == state).then_some(r)
        })
        .unwrap()
    }

    /// The environment every scenario gets: the hub's address and the admin's credential.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OUTPOST_URL", self.hub.http_url.clone()),
            ("OUTPOST_ADMIN", self.hub.api_token.clone()),
            ("OUTPOST_AGENTS", self.ids().join(",")),
        ]
    }

    /// The audit log (newest last).
    fn audit(&self) -> Vec<serde_json::Value> {
        self.hub
            .json(&["audit", "--limit", "100000"])
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A scenario that needs no `CTL`.
fn no_ctl(cmd: &str) -> anyhow::Result<()> {
    anyhow::bail!("this scenario has no control command {cmd:?}")
}

/// A four-task DAG, run by hand: `extract` then `transform` and `check` side by side, then
/// `load` (only when both are done: `all_done`); each prints a line.
const ETL: &str = "name: etl
description: nightly extract, transform, load
params:
  site: {type: string, pattern: '[a-z0-9-]+', default: plant-7}
tasks:
  extract:
    script: 'echo extracted rows from {{ params.site }}'
  transform:
    script: 'echo transformed'
    depends_on: [extract]
  check:
    script: 'echo checked'
    depends_on: [extract]
    retries: 2
  load:
    script: 'echo loaded'
    depends_on: [transform, check]
    trigger_rule: all_done
";

#[test]
fn console_sign_in_and_see_the_fleet() {
    let site = Site::new(
        "console-sign-in",
        &["site=shanghai,line=1", "site=suzhou,line=2"],
    );
    scenario("sign_in", &site.env(), no_ctl);
}

#[test]
fn console_shows_an_agent_go_offline_and_come_back_live() {
    let mut site = Site::new("console-offline", &["site=shanghai"]);
    let id = site.ids()[0].clone();
    let mut env = site.env();
    env.push(("OUTPOST_AGENT", id.clone()));
    let hub_url = site.hub.http_url.clone();
    let token = site.hub.api_token.clone();
    let online = |want: bool, id: &str| -> anyhow::Result<()> {
        // The hub's own account, so a browser that shows a state early is caught.
        wait_for(WAIT, "the agent's state at the hub", || {
            let out = Command::new(outpost_tests::hub_bin())
                .args(["agent", "list", "--output", "json"])
                .env("OUTPOST_HUB_URL", &hub_url)
                .env("OUTPOST_HUB_TOKEN", &token)
                .output()
                .ok()?;
            let l: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            l.as_array()?
                .iter()
                .any(|a| a["id"] == id && a["online"] == want)
                .then_some(())
        })
    };
    let mut stops = 0;
    scenario("offline", &env, |cmd| match cmd.split_once(' ') {
        Some(("stop", a)) => {
            site.daemon(a)?.kill9()?;
            stops += 1;
            Ok(())
        }
        Some(("start", a)) => {
            site.daemon(a)?.restart()?;
            online(true, a)
        }
        _ => anyhow::bail!("unknown command {cmd:?}"),
    });
    assert_eq!(stops, 1, "the scenario stopped the agent once");
    site.wait_online(&[id], true);
}

#[test]
fn console_opens_a_workflow_dag_and_a_run_timeline() {
    let site = Site::new("console-dag", &["site=shanghai"]);
    let id = site.ids()[0].clone();
    site.apply_everywhere("etl.yaml", "etl", ETL);
    let run = site.trigger("etl", &id, &["site=plant-9"]);
    site.wait_run(&run, "succeeded");
    let mut env = site.env();
    env.push(("OUTPOST_WORKFLOW", "etl".into()));
    env.push(("OUTPOST_TASKS", "extract,transform,check,load".into()));
    env.push(("OUTPOST_RUN", run));
    scenario("dag", &env, no_ctl);
}

#[test]
fn console_triggers_with_a_parameter_and_the_run_finishes_live() {
    let site = Site::new("console-trigger", &["site=shanghai"]);
    let gate = site.s.join("gate");
    // `wait` holds until the test lets it go (CTL release), so the browser sees the run running
    // and then finishing without a reload.
    let wf = format!(
        "name: greet
params:
  who: {{type: string, pattern: '[A-Za-z]+', default: World}}
tasks:
  wait:
    script: 'while [ ! -e {gate} ]; do sleep 0.1; done; echo released'
  hello:
    script: 'echo hello {{{{ params.who }}}}'
    depends_on: [wait]
",
        gate = gate.display()
    );
    site.apply_everywhere("greet.yaml", "greet", &wf);
    let mut env = site.env();
    env.push(("OUTPOST_WORKFLOW", "greet".into()));
    let mut released = false;
    scenario("trigger", &env, |cmd| match cmd {
        "release" => {
            std::fs::write(&gate, "go")?;
            released = true;
            Ok(())
        }
        _ => anyhow::bail!("unknown command {cmd:?}"),
    });
    assert!(released, "the scenario released the task");
    // The hub has the run, with the parameter the form sent, succeeded.
    let runs = site
        .hub
        .json(&["run", "list", "--workflow", "greet"])
        .unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "one run from the form: {runs:?}");
    let run = site.wait_run(runs[0]["run_id"].as_str().unwrap(), "succeeded");
    assert!(
        run["params"]
            .as_array()
            .is_some_and(|ps| ps.contains(&serde_json::json!(["who", "Shanghai"]))),
        "the form's parameter reached the run: {run}"
    );
    let audit = site.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "workflow.trigger" && e["actor"] == "admin"),
        "the console's trigger is audited as the admin: {audit:#?}"
    );
}

/// A hub, `n` agents in pool `line-1`, `etl` at v1 deployed there and run once, and v2 applied
/// and rolling out with a bake of an hour (so it stays in progress until someone acts).
fn rollout_site(tag: &str, n: usize) -> Site {
    let labels: Vec<&str> = (0..n).map(|_| "line=1").collect();
    let site = Site::new(tag, &labels);
    site.hub
        .json(&["pool", "create", "line-1", "--selector", "line=1"])
        .unwrap();
    let v1 = apply(&site.hub, site.s.path(), "etl.yaml", ETL);
    site.hub
        .json(&[
            "workflow",
            "deploy",
            "etl",
            "--pool",
            "line-1",
            "--version",
            &v1.to_string(),
        ])
        .unwrap();
    for (_, d) in &site.agents {
        wait_for(WAIT, "v1 at the agent", || {
            (agent_version(d, "etl") == v1).then_some(())
        })
        .unwrap();
    }
    let run = site.trigger("etl", &site.ids()[0], &[]);
    site.wait_run(&run, "succeeded");
    let v2 = apply(
        &site.hub,
        site.s.path(),
        "etl.yaml",
        &ETL.replace("echo loaded", "echo loaded twice"),
    );
    assert_eq!(v2, v1 + 1);
    site.hub
        .json(&[
            "rollout",
            "start",
            "etl",
            "--pool",
            "line-1",
            "--version",
            &v2.to_string(),
            "--canary",
            "1",
            "--steps",
            "100%",
            "--bake",
            "1h",
        ])
        .unwrap();
    site
}

#[test]
fn console_aborts_a_rollout_after_its_confirmation() {
    let site = rollout_site("console-rollout", 2);
    let mut env = site.env();
    env.push(("OUTPOST_ROLLOUT", "etl/line-1".into()));
    scenario("rollout", &env, no_ctl);
    let st = site
        .hub
        .json(&["rollout", "status", "etl", "--pool", "line-1"])
        .unwrap();
    assert_eq!(st["active"], false, "{st:#}");
    assert!(
        st["outcome"].as_str().is_some_and(|o| o.contains("abort")),
        "{st:#}"
    );
    let audit = site.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "rollout.abort" && e["actor"] == "admin"),
        "the console's abort is audited as the admin: {audit:#?}"
    );
}

#[test]
fn console_viewer_sees_no_write_controls_and_a_forged_post_is_refused() {
    let site = rollout_site("console-viewer", 1);
    let viewer = site.hub.operator("vera", "viewer", "").unwrap();
    let runs = site
        .hub
        .json(&["run", "list", "--workflow", "etl"])
        .unwrap();
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    let mut env = site.env();
    env.push(("OUTPOST_VIEWER", viewer));
    env.push(("OUTPOST_WORKFLOW", "etl".into()));
    env.push(("OUTPOST_RUN", run.clone()));
    env.push(("OUTPOST_ROLLOUT", "etl/line-1".into()));
    scenario("viewer", &env, no_ctl);
    // Nothing the forged requests asked for happened; the refusals are audited.
    let runs = site
        .hub
        .json(&["run", "list", "--workflow", "etl"])
        .unwrap();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    let st = site
        .hub
        .json(&["rollout", "status", "etl", "--pool", "line-1"])
        .unwrap();
    assert_eq!(st["active"], true, "{st:#}");
    let audit = site.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "access.denied" && e["actor"] == "vera"),
        "the forged writes are audited as refused: {audit:#?}"
    );
}

#[test]
fn console_language_switch_shows_chinese() {
    let site = Site::new("console-lang", &["site=shanghai"]);
    scenario("language", &site.env(), no_ctl);
}

#[test]
fn console_main_pages_pass_axe_and_are_photographed() {
    let site = rollout_site("console-tour", 2);
    let runs = site
        .hub
        .json(&["run", "list", "--workflow", "etl"])
        .unwrap();
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    let mut env = site.env();
    env.push(("OUTPOST_WORKFLOW", "etl".into()));
    env.push(("OUTPOST_RUN", run));
    env.push(("OUTPOST_ROLLOUT", "etl/line-1".into()));
    scenario("tour", &env, no_ctl);
}

/// The promise for a new user: within a minute of `outpost-hub dev`, the browser shows
/// (signed in with the credential the banner prints) the agent online, the example's DAG, its
/// runs succeeding and the rollout of its second version.
#[test]
fn console_shows_dev_mode_runs_dag_and_rollout_within_a_minute() {
    preflight();
    let s = Scratch::new("console-dev").unwrap();
    let started = Instant::now();
    let mut child = Command::new(outpost_tests::hub_bin())
        .args(["dev", "--dir"])
        .arg(s.join("dev"))
        .current_dir(s.path())
        .env_remove("OUTPOST_HUB_URL")
        .env_remove("OUTPOST_HUB_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Every line it prints, read on (dev prints runs every second: a full pipe would stop it).
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(60)) {
        let done = l.starts_with("Ctrl-C");
        banner.push(l);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in rx {});
    let console = banner
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("http://") && l.ends_with("/ui/"))
        .unwrap_or_else(|| panic!("no console address in the banner: {banner:#?}"))
        .to_string();
    let credential = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("credential: "))
        .unwrap_or_else(|| panic!("no credential in the banner: {banner:#?}"))
        .to_string();
    let env = vec![
        ("OUTPOST_URL", console.trim_end_matches("/ui/").to_string()),
        ("OUTPOST_ADMIN", credential),
    ];
    scenario("dev", &env, no_ctl);
    let took = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("dev: runs, DAG and rollout in the browser {took:?} after the command");
    assert!(
        took < Duration::from_secs(60),
        "the browser showed the dev runs, DAG and rollout only {took:?} after `outpost-hub dev`"
    );
}
