//! Node pools and gray-release rollouts, end to end: a real `outpost-hub` and real
//! `outpost-agent` processes (ten of them in two pools where the scenario needs them), driven
//! through the hub's CLI, with the agents' own stores and logs as the witnesses of what ran where.
//!
//! Every test builds its own hub and agents ([`fleet`]); scenarios inside one test use different
//! workflows so they do not depend on each other. Workflows fire every second so runs accumulate
//! fast; a failing version is a task `command: [/bin/false]`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use outpost_tests::relay::{Mode, Relay};
use outpost_tests::{Daemon, Hub, Scratch, enrolled_agent, stderr, stdout, wait_for};

/// A dead link shows within ~3 s (the hub's idle timeout governs the agents' connections too).
const FAST_HUB: &str = "keep_alive_interval = \"1s\"\nmax_idle_timeout = \"3s\"\n";

/// An agent of a [`Fleet`].
struct Agent {
    /// The `name` label (`a0`, `a1`, ...).
    name: String,
    /// The id the hub gave it.
    id: String,
    /// `1` or `2` (the `line` label).
    line: u8,
    d: Daemon,
    /// The relay it reaches the hub through (every agent has its own).
    relay: Relay,
}

/// A hub, its agents (labels `name=aN,line=1|2`) and the pools `line-1` and `line-2`.
struct Fleet {
    s: Scratch,
    hub: Hub,
    agents: Vec<Agent>,
}

/// A hub and `line1 + line2` agents, each behind its own relay, enrolled in parallel, and the
/// pools `line-1` (selector `line=1`) and `line-2` (`line=2`).
fn fleet(tag: &str, line1: usize, line2: usize) -> Fleet {
    let s = Scratch::new(tag).unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let specs: Vec<(String, u8)> = (0..line1 + line2)
        .map(|i| (format!("a{i}"), if i < line1 { 1 } else { 2 }))
        .collect();
    let started: Vec<(String, u8, Daemon, Relay)> = std::thread::scope(|sc| {
        let hs: Vec<_> = specs
            .iter()
            .map(|(name, line)| {
                let (hub, s) = (&hub, &s);
                sc.spawn(move || {
                    let relay =
                        Relay::start("127.0.0.1:0".parse().unwrap(), hub.quic_addr).unwrap();
                    let d = enrolled_agent(
                        &s.join(name),
                        hub,
                        relay.addr(),
                        &format!("name={name},line={line}"),
                        "",
                    )
                    .unwrap();
                    (name.clone(), *line, d, relay)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for p in ["line-1", "line-2"] {
        let sel = format!("line={}", &p[5..]);
        hub.json(&["pool", "create", p, "--selector", &sel])
            .unwrap();
    }
    let list = hub.json(&["agent", "list"]).unwrap();
    let agents = started
        .into_iter()
        .map(|(name, line, d, relay)| {
            let id = list
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["labels"]["name"] == name.as_str())
                .and_then(|a| a["id"].as_str())
                .unwrap_or_else(|| panic!("no agent {name} in {list}"))
                .to_string();
            Agent {
                name,
                id,
                line,
                d,
                relay,
            }
        })
        .collect();
    let f = Fleet { s, hub, agents };
    f.wait_online_all();
    f
}

impl Fleet {
    fn wait_online_all(&self) {
        wait_for(Duration::from_secs(30), "every agent online", || {
            let l = self.hub.json(&["agent", "list"]).ok()?;
            let on = l.as_array()?.iter().filter(|a| a["online"] == true).count();
            (on == self.agents.len()).then_some(())
        })
        .unwrap();
    }

    fn line(&self, line: u8) -> impl Iterator<Item = &Agent> {
        self.agents.iter().filter(move |a| a.line == line)
    }

    fn by_id(&self, id: &str) -> &Agent {
        self.agents
            .iter()
            .find(|a| a.id == id)
            .unwrap_or_else(|| panic!("no agent {id}"))
    }

    /// `workflow apply -f` of `content`; returns the version the hub made.
    fn apply(&self, content: &str) -> u64 {
        let p = self.s.join("wf.yaml");
        std::fs::write(&p, content).unwrap();
        let v = self
            .hub
            .json(&["workflow", "apply", "-f", p.to_str().unwrap()])
            .unwrap();
        let r = &v["results"][0];
        assert!(
            r["diagnostics"].as_array().is_some_and(|d| d.is_empty()),
            "{v}"
        );
        r["version"].as_u64().unwrap_or_else(|| panic!("{v}"))
    }

    /// A workflow `name` at v1 deployed explicitly to both pools (so it is managed: later
    /// applies only store versions), and every agent running it; then `v2` applied (stored only).
    fn two_versions(&self, name: &str, v2_command: &str) {
        assert_eq!(self.apply(&ticker(name, "v1", "[/bin/true]")), 1);
        for p in ["line-1", "line-2"] {
            self.hub
                .json(&["workflow", "deploy", name, "--pool", p, "--version", "1"])
                .unwrap();
        }
        self.wait_all_on(name, 1);
        assert_eq!(self.apply(&ticker(name, "v2", v2_command)), 2);
    }

    /// Every agent reports (locally) `version` of `wf` active and has run it at least once.
    fn wait_all_on(&self, wf: &str, version: u64) {
        for a in &self.agents {
            wait_for(Duration::from_secs(30), "agent on version", || {
                (local_version(&a.d, wf) == version && versions_run(&a.d, wf).contains(&version))
                    .then_some(())
            })
            .unwrap_or_else(|e| panic!("{e}: {} on v{version} of {wf}", a.name));
        }
    }

    /// `rollout start ARGS` (whitespace-separated).
    fn rollout(&self, args: &str) -> serde_json::Value {
        let mut a = vec!["rollout", "start"];
        a.extend(args.split_whitespace());
        self.hub.json(&a).unwrap()
    }

    fn status(&self, wf: &str, pool: &str) -> serde_json::Value {
        self.hub
            .json(&["rollout", "status", wf, "--pool", pool])
            .unwrap()
    }

    /// Poll `rollout status` until `pred` holds.
    fn wait_status(
        &self,
        wf: &str,
        pool: &str,
        within: Duration,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        wait_for(within, what, || {
            let st = self.status(wf, pool);
            let ok = pred(&st);
            last = st.clone();
            ok.then_some(st)
        })
        .unwrap_or_else(|e| panic!("{e}: last status {last:#}\n{}", self.hub.stderr_tail()))
    }

    /// Wait until the rollout of `wf` in `pool` has ended; returns its final status.
    fn wait_ended(&self, wf: &str, pool: &str, within: Duration) -> serde_json::Value {
        self.wait_status(wf, pool, within, "the rollout to end", |st| {
            st["active"] == false
        })
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        self.hub
            .json(&["audit", "--limit", "100000"])
            .unwrap()
            .as_array()
            .cloned()
            .unwrap()
    }

    /// The versions of `wf` the hub says each agent runs (`agent list`), by agent id.
    fn hub_versions(&self, wf: &str) -> BTreeMap<String, u64> {
        let l = self.hub.json(&["agent", "list"]).unwrap();
        l.as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let v = a["active"]
                    .as_array()
                    .and_then(|ws| ws.iter().find(|w| w["workflow"] == wf))
                    .and_then(|w| w["version"].as_u64())
                    .unwrap_or(0);
                (a["id"].as_str().unwrap().to_string(), v)
            })
            .collect()
    }
}

/// A workflow firing every second (overlap allowed: every firing makes a run) with one task.
pub(crate) fn ticker(name: &str, tag: &str, command: &str) -> String {
    format!(
        "name: {name}\ndescription: '{tag}'\nschedule: '* * * * * *'\ncatchup: none\noverlap: allow\ntasks:\n  t:\n    command: {command}\n"
    )
}

/// The agent's own account of the active version of `wf` (0: none).
pub(crate) fn local_version(d: &Daemon, wf: &str) -> u64 {
    d.ctl_json("status", &[]).unwrap()["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == wf)
        .and_then(|w| w["version"].as_u64())
        .unwrap_or(0)
}

/// The versions of `wf` the agent has ever run (from its own store).
pub(crate) fn versions_run(d: &Daemon, wf: &str) -> BTreeSet<u64> {
    d.runs(Some(wf))
        .unwrap()
        .iter()
        .filter_map(|r| r["version"].as_u64())
        .collect()
}

/// Runs of `wf` at `version` the agent made, with their states.
fn runs_at(d: &Daemon, wf: &str, version: u64) -> Vec<serde_json::Value> {
    d.runs(Some(wf))
        .unwrap()
        .into_iter()
        .filter(|r| r["version"] == version)
        .collect()
}

/// The ids of the agents a rollout status shows selected (given the new version) at any step.
fn selected(st: &serde_json::Value) -> BTreeSet<String> {
    st["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["selected_at"].is_null())
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

fn phase(st: &serde_json::Value) -> &str {
    st["phase"].as_str().unwrap_or("")
}

/// `outpost-hub ARGS` must fail; returns its stdout+stderr.
fn refused(hub: &Hub, args: &[&str]) -> String {
    let out = hub.cli(args).unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "{args:?} succeeded: {text}");
    text
}

/// Keep `f` true for `d` (polling); fails the test at the first false.
fn holds_for(d: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if let Err(e) = f() {
            panic!("{what}: {e}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ten agents in two pools; a version whose task fails is stopped at the canary and rolled back
/// automatically: only the canaries ever ran it, the other pool never saw it, the canaries are
/// back on the old version (by their own account and the hub's). Then a pinned pool refuses a
/// rollout, saying why, and nothing reaches its agents.
#[test]
fn a_failing_version_stops_at_the_canary_and_a_pinned_pool_refuses() {
    let f = fleet("ro-canary", 6, 4);
    f.two_versions("bad", "[/bin/false]");
    let t0 = Instant::now();
    let r = f.rollout(
        "bad --pool line-1 --version 2 --canary 2 --steps 50%,100% --bake 2s --min-runs 2",
    );
    assert_eq!(r["from_version"], 1, "{r}");
    let end = f.wait_ended("bad", "line-1", Duration::from_secs(60));
    assert!(
        end["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("rolled back")),
        "{end:#}"
    );
    eprintln!("bad version rolled back after {:?}", t0.elapsed());
    let canaries = selected(&end);
    assert_eq!(canaries.len(), 2, "{end:#}");
    for a in end["agents"].as_array().unwrap() {
        if !a["selected_at"].is_null() {
            assert_eq!(a["selected_at"], 0, "only the canary step ran: {end:#}");
        }
    }
    // The canaries come back to v1 and run it again.
    for id in &canaries {
        let a = f.by_id(id);
        assert_eq!(a.line, 1);
        wait_for(Duration::from_secs(20), "canary back on v1", || {
            (local_version(&a.d, "bad") == 1).then_some(())
        })
        .unwrap();
        let since = chrono::Utc::now();
        wait_for(
            Duration::from_secs(20),
            "a v1 run after the rollback",
            || {
                runs_at(&a.d, "bad", 1)
                    .iter()
                    .any(|r| {
                        r["scheduled"]
                            .as_str()
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                            .is_some_and(|t| t > since)
                    })
                    .then_some(())
            },
        )
        .unwrap();
        let failed = runs_at(&a.d, "bad", 2);
        assert!(!failed.is_empty(), "canary {} never ran v2", a.name);
        assert!(failed.iter().all(|r| r["state"] == "failed"), "{failed:?}");
    }
    // Nobody else ever ran v2: not the rest of line-1, not line-2.
    for a in &f.agents {
        let vs = versions_run(&a.d, "bad");
        if canaries.contains(&a.id) {
            assert_eq!(vs, BTreeSet::from([1, 2]), "{}", a.name);
        } else {
            assert_eq!(vs, BTreeSet::from([1]), "{} ran {vs:?}", a.name);
            assert_eq!(local_version(&a.d, "bad"), 1);
        }
    }
    let hv = f.hub_versions("bad");
    wait_for(Duration::from_secs(10), "the hub sees all on v1", || {
        let hv = f.hub_versions("bad");
        hv.values().all(|v| *v == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {hv:?}"));
    let audit = f.audit();
    assert!(
        audit.iter().any(|e| e["action"] == "rollout"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("gate of step 0 failed"))),
        "{audit:#?}"
    );

    // A pinned pool refuses a rollout, with a message that says why; nothing reaches it.
    let alice = f.hub.operator("alice", "deployer", "").unwrap();
    f.hub
        .json_as(
            &alice,
            &[
                "workflow",
                "pin",
                "bad",
                "--pool",
                "line-2",
                "--version",
                "1",
            ],
        )
        .unwrap();
    let msg = refused(
        &f.hub,
        &[
            "rollout",
            "start",
            "bad",
            "--pool",
            "line-2",
            "--version",
            "2",
        ],
    );
    assert!(msg.contains("pinned"), "{msg}");
    assert!(
        msg.contains("alice"),
        "the message names who pinned it: {msg}"
    );
    assert!(
        msg.contains("unpin"),
        "the message says how to unpin: {msg}"
    );
    let deploy = refused(
        &f.hub,
        &[
            "workflow",
            "deploy",
            "bad",
            "--pool",
            "line-2",
            "--version",
            "2",
        ],
    );
    assert!(deploy.contains("pinned"), "{deploy}");
    std::thread::sleep(Duration::from_secs(2));
    for a in f.line(2) {
        assert_eq!(versions_run(&a.d, "bad"), BTreeSet::from([1]), "{}", a.name);
    }
    assert!(
        f.audit()
            .iter()
            .any(|e| e["action"] == "workflow.pin" && e["actor"] == "alice")
    );
}

/// One observation of a rollout in progress.
struct Obs {
    step: usize,
    target: u64,
    /// Agents given the new version (selected at some step).
    selected: usize,
    /// Agents the hub wants on the new version.
    desired_new: usize,
    /// Agents reporting the new version.
    on_new: usize,
}

fn observe(st: &serde_json::Value) -> Obs {
    let to = st["to_version"].as_u64().unwrap();
    let step = st["step"].as_u64().unwrap() as usize;
    let agents = st["agents"].as_array().unwrap();
    Obs {
        step,
        target: st["steps"][step]["target"].as_u64().unwrap(),
        selected: agents
            .iter()
            .filter(|a| !a["selected_at"].is_null())
            .count(),
        desired_new: agents.iter().filter(|a| a["desired_version"] == to).count(),
        on_new: agents.iter().filter(|a| a["version"] == to).count(),
    }
}

/// A good version goes through every step in order, each step no larger than its size (watched
/// through `rollout status` all along), and ends with every agent of the pool on it while the
/// other pool never sees it. The hub is killed (-9) mid-rollout and restarted: it resumes the
/// rollout where it was (same step, same agents) and completes it.
#[test]
fn a_good_version_goes_through_every_step_in_order_and_survives_a_hub_kill() {
    let mut f = fleet("ro-steps", 6, 4);
    f.two_versions("good", "[/bin/true]");
    let t0 = Instant::now();
    f.rollout("good --pool line-1 --canary 1 --steps 2,50%,100% --bake 2s --min-runs 2");
    // 6 agents: targets 1 (canary), 2, 3 (50%), 6.
    let st = f.status("good", "line-1");
    let targets: Vec<u64> = st["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_u64().unwrap())
        .collect();
    assert_eq!(targets, vec![1, 2, 3, 6], "{st:#}");
    let mut steps_seen: Vec<usize> = Vec::new();
    let mut before_kill: Option<(usize, BTreeMap<String, u64>)> = None;
    let end = loop {
        let st = f.status("good", "line-1");
        if st["active"] == false {
            break st;
        }
        let o = observe(&st);
        assert!(
            o.selected as u64 <= o.target
                && o.desired_new as u64 <= o.target
                && o.on_new as u64 <= o.target,
            "step {} of target {} has {} selected, {} desired on v2, {} on v2: {st:#}",
            o.step,
            o.target,
            o.selected,
            o.desired_new,
            o.on_new
        );
        if steps_seen.last() != Some(&o.step) {
            steps_seen.push(o.step);
        }
        // Kill the hub once the rollout is in step 2, with step 2's agents given v2.
        if before_kill.is_none() && o.step == 2 && o.selected == 3 {
            let sel: BTreeMap<String, u64> = st["agents"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| !a["selected_at"].is_null())
                .map(|a| {
                    (
                        a["id"].as_str().unwrap().to_string(),
                        a["selected_at"].as_u64().unwrap(),
                    )
                })
                .collect();
            f.hub.kill9().unwrap();
            std::thread::sleep(Duration::from_secs(1));
            f.hub.restart().unwrap();
            let after = f.status("good", "line-1");
            let o2 = observe(&after);
            assert!(o2.step >= 2, "the restarted hub went back: {after:#}");
            for a in after["agents"].as_array().unwrap() {
                if let Some(s) = sel.get(a["id"].as_str().unwrap()) {
                    assert_eq!(a["selected_at"], *s, "{after:#}");
                }
            }
            before_kill = Some((o.step, sel));
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "too slow: {st:#}");
        std::thread::sleep(Duration::from_millis(150));
    };
    eprintln!("good rollout done after {:?}", t0.elapsed());
    assert!(
        before_kill.is_some(),
        "the hub was never killed mid-rollout"
    );
    assert_eq!(end["outcome"], "succeeded", "{end:#}");
    assert_eq!(steps_seen, vec![0, 1, 2, 3], "steps in order, none skipped");
    // Every step passed its gate, in order, and the restart was noted.
    let audit = f.audit();
    let lines: Vec<&str> = audit
        .iter()
        .filter(|e| e["action"] == "rollout")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    let passed: Vec<usize> = (0..4)
        .filter_map(|i| {
            lines
                .iter()
                .position(|l| l.contains(&format!("gate of step {i} passed")))
        })
        .collect();
    assert_eq!(passed.len(), 4, "{lines:#?}");
    assert!(passed.windows(2).all(|w| w[0] < w[1]), "{lines:#?}");
    let resumed = lines
        .iter()
        .position(|l| l.contains("resumed after a hub restart"))
        .unwrap_or_else(|| panic!("no resume line: {lines:#?}"));
    assert!(passed[1] < resumed && resumed < passed[2], "{lines:#?}");
    // Every agent of line-1 on v2 and running it; line-2 never saw it.
    for a in f.line(1) {
        wait_for(Duration::from_secs(20), "v2 runs", || {
            (local_version(&a.d, "good") == 2 && !runs_at(&a.d, "good", 2).is_empty()).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {}", a.name));
    }
    for a in f.line(2) {
        assert_eq!(local_version(&a.d, "good"), 1);
        assert_eq!(
            versions_run(&a.d, "good"),
            BTreeSet::from([1]),
            "{}",
            a.name
        );
    }
    // The pool's version is now v2 (pool show).
    let pool = f.hub.json(&["pool", "show", "line-1"]).unwrap();
    assert!(pool.to_string().contains("\"version\":2"), "{pool:#}");
}

impl Fleet {
    /// Wait until the hub shows the agent online (or offline).
    fn wait_online(&self, a: &Agent, online: bool, within: Duration) {
        wait_for(within, "agent online state", || {
            let l = self.hub.json(&["agent", "list"]).ok()?;
            l.as_array()?
                .iter()
                .any(|x| x["id"] == a.id.as_str() && x["online"] == online)
                .then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {} online={online}", a.name));
    }

    /// Cut the agent off (relay blackhole) and wait until the hub sees it offline.
    fn cut(&self, a: &Agent) {
        a.relay.set_mode(Mode::Blackhole);
        self.wait_online(a, false, Duration::from_secs(20));
    }

    /// The rollout's own audit lines (`rollout` entries of rollout `id`), oldest first.
    fn rollout_audit(&self, id: &str) -> Vec<String> {
        let prefix = format!("{id}: ");
        self.audit()
            .iter()
            .filter(|e| e["action"] == "rollout")
            .filter_map(|e| e["detail"].as_str())
            .filter(|d| d.starts_with(&prefix))
            .map(String::from)
            .collect()
    }

    fn reconnect(&self, a: &Agent) {
        a.relay.set_mode(Mode::Pass);
        self.wait_online(a, true, Duration::from_secs(45));
    }
}

fn agent_entry<'a>(st: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    st["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {st:#}"))
}

/// An agent offline when its step comes, under each policy (four rollouts of four workflows in
/// the same pool, with the same agent cut off by a relay blackhole from before they start):
/// `wait:60s` waits for it and proceeds when it returns; `wait:4s` fails after 4 s and rolls
/// back; `skip` goes on without it and it gets the new version when it returns; `fail` rolls
/// back at once.
#[test]
fn an_offline_agent_is_waited_for_skipped_or_failed_by_policy() {
    let f = fleet("ro-offline", 5, 0);
    let wfs = ["ow", "ot", "os", "of"];
    for w in wfs {
        f.two_versions(w, "[/bin/true]");
    }
    let x = &f.agents[4];
    f.cut(x);
    let t0 = Instant::now();
    let mut ids = BTreeMap::new();
    for (w, policy) in wfs.iter().zip(["wait:60s", "wait:4s", "skip", "fail"]) {
        let r = f.rollout(&format!(
            "{w} --pool line-1 --canary 1 --steps 100% --min-runs 1 --offline {policy}"
        ));
        ids.insert(*w, r["id"].as_str().unwrap().to_string());
    }
    // fail: rolls back as soon as the step that needs the offline agent comes.
    let of = f.wait_ended("of", "line-1", Duration::from_secs(30));
    let of_took = t0.elapsed();
    let why = of["outcome"].as_str().unwrap_or("");
    assert!(
        why.starts_with("rolled back")
            && why.contains("offline policy: fail")
            && why.contains(&x.id),
        "{of:#}"
    );
    // skip: succeeds without it.
    let os = f.wait_ended("os", "line-1", Duration::from_secs(30));
    assert_eq!(os["outcome"], "succeeded", "{os:#}");
    // It was passed over, and given the new version only at the end (for when it returns).
    let lines = f.rollout_audit(&ids["os"]);
    let skipped = lines
        .iter()
        .position(|l| l.contains(&format!("agent {} is offline: skipped", x.id)))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let done = lines
        .iter()
        .position(|l| l.contains("rollout succeeded") && l.contains("(1 offline agents get it"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(skipped < done, "{lines:#?}");
    assert_eq!(agent_entry(&os, &x.id)["desired_version"], 2, "{os:#}");
    // wait:4s: fails after 4 s (not before), naming the agent.
    let ot = f.wait_ended("ot", "line-1", Duration::from_secs(30));
    let ot_took = t0.elapsed();
    let why = ot["outcome"].as_str().unwrap_or("");
    assert!(
        why.starts_with("rolled back") && why.contains("stayed offline") && why.contains(&x.id),
        "{ot:#}"
    );
    assert!(
        ot_took >= Duration::from_secs(4),
        "wait:4s failed after {ot_took:?}"
    );
    assert!(
        of_took < ot_took,
        "fail ({of_took:?}) should not wait like wait:4s ({ot_took:?})"
    );
    // wait:60s: still waiting for the agent, at its step, well past the other limit.
    std::thread::sleep(Duration::from_secs(2));
    let ow = f.status("ow", "line-1");
    assert_eq!(ow["active"], true, "{ow:#}");
    let xs = agent_entry(&ow, &x.id);
    let xstep = xs["selected_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("the offline agent is not selected: {ow:#}"));
    assert_eq!(ow["step"], xstep, "{ow:#}");
    assert!(
        phase(&ow).starts_with("deploying"),
        "waits for the activation: {ow:#}"
    );
    assert!(
        ow["gate"]["awaiting_activation"].as_u64() >= Some(1),
        "{ow:#}"
    );
    // The online agents' work is done meanwhile: the versions are where the policies say.
    for a in f.agents.iter().filter(|a| a.id != x.id) {
        for (w, v) in [("of", 1), ("ot", 1), ("os", 2)] {
            wait_for(Duration::from_secs(20), "version by policy", || {
                (local_version(&a.d, w) == v).then_some(())
            })
            .unwrap_or_else(|e| panic!("{e}: {} {w} v{v}", a.name));
        }
    }
    for w in wfs {
        assert_eq!(local_version(&x.d, w), 1, "{w}: the cut-off agent moved");
    }

    // The agent returns: wait proceeds and succeeds; skip gives it the new version; the
    // rolled-back ones keep it on the old one.
    f.reconnect(x);
    let ow = f.wait_ended("ow", "line-1", Duration::from_secs(30));
    assert_eq!(ow["outcome"], "succeeded", "{ow:#}");
    for (w, v) in [("ow", 2), ("os", 2), ("ot", 1), ("of", 1)] {
        wait_for(
            Duration::from_secs(20),
            "the returned agent's version",
            || (local_version(&x.d, w) == v && !runs_at(&x.d, w, v).is_empty()).then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}: {w} v{v} on the returned agent"));
    }
    for w in ["ot", "of"] {
        assert_eq!(versions_run(&x.d, w), BTreeSet::from([1]), "{w}");
    }
    for a in &f.agents {
        assert_eq!(local_version(&a.d, "ow"), 2, "{}", a.name);
    }
}

/// An agent cut off right after it activated a version that fails on it reverts by itself under
/// probation, while still cut off (its own status and runs show it), and the hub, which could
/// not know, shows the revert once the link returns: `agent.revert` in the audit log and the
/// rollout's gate failing on it and rolling back.
///
/// The version fails only on the chosen agent (its task fails when a `fail` file exists in the
/// agent's directory), which is not a canary, and the failure rate allowed is 100%: the revert is
/// the only thing that can fail the gate.
#[test]
fn an_agent_cut_off_reverts_a_bad_version_by_itself_and_the_hub_learns_it_later() {
    let f = fleet("ro-prob", 3, 0);
    let v2 = r#"[sh, -c, 'sleep 1; test ! -e "${OUTPOST_OUTPUT%%/state/*}/fail"']"#;
    f.two_versions("pb", v2);
    // --min-runs 2: the agent's failed runs that make it revert could meet it; they must not
    // pass the gate (a bug found by this test: they did, and the rollout "succeeded").
    let r = f.rollout(concat!(
        "pb --pool line-1 --canary 1 --steps 100% --bake 2s --min-runs 2 ",
        "--max-failure-rate 1.0 --probation-runs 3 --probation-max-failures 1"
    ));
    let st = f.status("pb", "line-1");
    let order: Vec<&str> = st["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(agent_entry(&st, order[0])["selected_at"], 0, "{st:#}");
    // The first non-canary in the stable order gets a version that fails on it.
    let x = f.by_id(order[1]);
    std::fs::write(f.s.join(&x.name).join("fail"), "").unwrap();
    wait_for(Duration::from_secs(60), "the agent activates v2", || {
        (local_version(&x.d, "pb") == 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:#}", f.status("pb", "line-1")));
    // The hub has seen it activate (its signed deploy result), then the link goes.
    f.wait_status(
        "pb",
        "line-1",
        Duration::from_secs(10),
        "activation seen",
        |st| agent_entry(st, &x.id)["state"] == "active",
    );
    x.relay.set_mode(Mode::Blackhole);
    let cut_at = chrono::Utc::now();
    // It reverts by itself, still cut off.
    wait_for(Duration::from_secs(20), "the local revert", || {
        (local_version(&x.d, "pb") == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", x.d.stderr_tail()));
    assert_eq!(x.relay.mode(), Mode::Blackhole);
    let log = x.d.stderr_tail();
    assert!(log.contains("reverted under probation"), "{log}");
    let v2_runs: Vec<_> = runs_at(&x.d, "pb", 2)
        .into_iter()
        .filter(|r| r["state"] == "failed" || r["state"] == "succeeded")
        .collect();
    let failed = v2_runs.iter().filter(|r| r["state"] == "failed").count();
    assert!(failed >= 2 && v2_runs.len() <= 3, "{v2_runs:#?}");
    let reverted_at = chrono::Utc::now();
    wait_for(Duration::from_secs(10), "v1 runs after the revert", || {
        runs_at(&x.d, "pb", 1)
            .iter()
            .any(|r| {
                r["state"] == "succeeded"
                    && r["scheduled"]
                        .as_str()
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                        .is_some_and(|t| t > reverted_at)
            })
            .then_some(())
    })
    .unwrap();
    // The hub cannot know yet: the rollout waits for the agent, not rolling back.
    f.wait_online(x, false, Duration::from_secs(20));
    let st = f.status("pb", "line-1");
    assert_eq!(st["active"], true, "{st:#}");
    assert!(!phase(&st).starts_with("rolling back"), "{st:#}");
    assert!(agent_entry(&st, &x.id)["failure"].is_null(), "{st:#}");
    assert!(!f.audit().iter().any(|e| e["action"] == "agent.revert"));

    // The link returns: the hub records the revert and the gate fails on it.
    f.reconnect(x);
    let end = f.wait_ended("pb", "line-1", Duration::from_secs(30));
    let why = end["outcome"].as_str().unwrap_or("");
    // The gate fails on the agent's probation: on its failed runs (which come first and show
    // that it reverts) or on its report of the revert, whichever the hub reads first; never
    // passed by those same runs meeting --min-runs.
    assert!(
        why.starts_with("rolled back")
            && why.contains(&x.id)
            && (why.contains("failed its probation") || why.contains("under probation")),
        "{end:#}"
    );
    let rev = wait_for(
        Duration::from_secs(20),
        "agent.revert in the audit log",
        || {
            f.audit()
                .into_iter()
                .find(|e| e["action"] == "agent.revert")
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:#?}", f.audit()));
    assert_eq!(rev["actor"], x.id.as_str(), "{rev}");
    assert_eq!(rev["target"], "pb", "{rev}");
    let at = chrono::DateTime::parse_from_rfc3339(rev["at"].as_str().unwrap()).unwrap();
    assert!(
        at > cut_at && at < reverted_at,
        "reverted while cut off: {rev}"
    );
    let lines = f.rollout_audit(r["id"].as_str().unwrap());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("gate of step 1 failed") && l.contains("probation")),
        "{lines:#?}"
    );

    for a in &f.agents {
        wait_for(Duration::from_secs(20), "everyone back on v1", || {
            (local_version(&a.d, "pb") == 1).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {}", a.name));
    }
}

/// Pause, resume, promote (manual gates, and a promote that cuts a bake short) and abort do what
/// they say; a second rollout of the same workflow into the pool is refused; the audit log names
/// who did each.
#[test]
fn pause_resume_promote_and_abort_do_what_they_say() {
    let f = fleet("ro-cmd", 4, 0);
    f.two_versions("cm", "[/bin/true]");
    f.two_versions("cb", "[/bin/true]");
    let bob_credential = f.hub.operator("bob", "deployer", "").unwrap();
    let bob = |args: &[&str]| f.hub.json_as(&bob_credential, args).unwrap();
    let cmd = |verb: &str| bob(&["rollout", verb, "cm", "--pool", "line-1"]);
    let sel = |st: &serde_json::Value| selected(st).len();
    f.rollout("cm --pool line-1 --manual --canary 1 --steps 50%,100%");
    let msg = refused(&f.hub, &["rollout", "start", "cm", "--pool", "line-1"]);
    assert!(
        msg.contains("active rollout") || msg.contains("already"),
        "{msg}"
    );

    // Manual gate: the canary step passes its gate and waits for promote, widening nothing.
    f.wait_status(
        "cm",
        "line-1",
        Duration::from_secs(30),
        "awaiting promote 0",
        |st| phase(st) == "awaiting promote at step 0",
    );
    holds_for(Duration::from_secs(2), "waits for promote", || {
        let st = f.status("cm", "line-1");
        (phase(&st) == "awaiting promote at step 0" && sel(&st) == 1)
            .then_some(())
            .ok_or(format!("{st:#}"))
    });
    cmd("promote");
    f.wait_status(
        "cm",
        "line-1",
        Duration::from_secs(30),
        "awaiting promote 1",
        |st| phase(st) == "awaiting promote at step 1" && sel(st) == 2,
    );

    // Pause: nothing advances, promote is refused; resume continues where it was.
    let p = cmd("pause");
    assert!(p["phase"].as_str().unwrap().starts_with("paused"), "{p}");
    let msg = refused(&f.hub, &["rollout", "promote", "cm", "--pool", "line-1"]);
    assert!(msg.contains("paused"), "{msg}");
    holds_for(Duration::from_secs(2), "paused", || {
        let st = f.status("cm", "line-1");
        (phase(&st).starts_with("paused") && sel(&st) == 2)
            .then_some(())
            .ok_or(format!("{st:#}"))
    });
    let r = cmd("resume");
    assert_eq!(r["phase"], "awaiting promote at step 1", "{r}");

    // Abort rolls back: the two agents given v2 return to v1; the others never saw it.
    let given: BTreeSet<String> = selected(&f.status("cm", "line-1"));
    assert_eq!(given.len(), 2);
    for id in &given {
        wait_for(Duration::from_secs(20), "v2 active", || {
            (local_version(&f.by_id(id).d, "cm") == 2).then_some(())
        })
        .unwrap();
    }
    cmd("abort");
    let end = f.wait_ended("cm", "line-1", Duration::from_secs(30));
    assert_eq!(end["outcome"], "aborted", "{end:#}");
    for a in &f.agents {
        wait_for(Duration::from_secs(20), "back on v1", || {
            (local_version(&a.d, "cm") == 1).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {}", a.name));
        let want = if given.contains(&a.id) {
            BTreeSet::from([1, 2])
        } else {
            BTreeSet::from([1])
        };
        assert_eq!(versions_run(&a.d, "cm"), want, "{}", a.name);
    }
    let refused_abort = refused(&f.hub, &["rollout", "abort", "cm", "--pool", "line-1"]);
    assert!(!refused_abort.is_empty());

    // Promote while baking waives the rest of a long bake (twice: the rollout then succeeds).
    let t0 = Instant::now();
    f.rollout("cb --pool line-1 --canary 1 --bake 10m");
    for step in 0..2 {
        f.wait_status("cb", "line-1", Duration::from_secs(30), "baking", |st| {
            phase(st) == format!("baking step {step}")
        });
        bob(&["rollout", "promote", "cb", "--pool", "line-1"]);
    }
    let end = f.wait_ended("cb", "line-1", Duration::from_secs(30));
    assert_eq!(end["outcome"], "succeeded", "{end:#}");
    assert!(t0.elapsed() < Duration::from_secs(60));
    for a in &f.agents {
        wait_for(Duration::from_secs(20), "on v2", || {
            (local_version(&a.d, "cb") == 2).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}: {}", a.name));
    }

    let audit = f.audit();
    for verb in ["pause", "resume", "promote", "abort"] {
        assert!(
            audit
                .iter()
                .any(|e| e["action"] == format!("rollout.{verb}") && e["actor"] == "bob"),
            "no rollout.{verb} by bob: {audit:#?}"
        );
    }
}

/// The hub store's `assignments` table (mirrors `hub/src/store/schema.rs`; the record type is the
/// hub crate's own).
const ASSIGNMENTS: redb::TableDefinition<(&str, &str), &[u8]> =
    redb::TableDefinition::new("assignments");

/// A replayed assignment meant for another agent is refused. Agent A (pool line-1) is given v2;
/// agent B (pool line-2) stays on v1. With the hub stopped, B's slot in the hub's store is made
/// to hold the genuine signed assignment the hub issued to A (as an attacker who recorded it, or
/// a hub that mixed them up, would offer it); the restarted hub delivers it to B. B answers
/// `DeployResult` rejected `WrongAgent`, keeps v1 and never runs v2.
#[test]
fn a_replayed_assignment_for_another_agent_is_refused() {
    let mut f = fleet("ro-replay", 1, 1);
    f.two_versions("rp", "[/bin/true]");
    f.hub
        .json(&[
            "workflow",
            "deploy",
            "rp",
            "--pool",
            "line-1",
            "--version",
            "2",
        ])
        .unwrap();
    let (a, b) = (&f.agents[0], &f.agents[1]);
    assert_eq!((a.line, b.line), (1, 2));
    wait_for(Duration::from_secs(30), "A on v2", || {
        (local_version(&a.d, "rp") == 2).then_some(())
    })
    .unwrap();
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    f.hub.kill9().unwrap();

    let path = f.hub.data_dir.join("hub.redb");
    let (mut planted, b_before) = {
        let st = outpost_hub::store::Store::open(&path).unwrap();
        let a_asg = st.assignment(&a_id, "rp").unwrap().unwrap();
        let b_asg = st.assignment(&b_id, "rp").unwrap().unwrap();
        (a_asg, b_asg)
    };
    let body: outpost_common::proto::Assignment =
        minicbor::decode(&planted.signed.body_bytes).unwrap();
    assert_eq!((body.agent_id.as_str(), body.version), (a_id.as_str(), 2));
    assert_eq!(b_before.version, 1);
    // Kept as what the hub believes it issued to B (v1, a newer epoch), so the hub sends it; the
    // signed bytes are A's.
    planted.version = b_before.version;
    planted.content_hash = b_before.content_hash.clone();
    planted.epoch = b_before.epoch + 1;
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(ASSIGNMENTS)
            .unwrap()
            .insert(
                (b_id.as_str(), "rp"),
                minicbor::to_vec(&planted).unwrap().as_slice(),
            )
            .unwrap();
        txn.commit().unwrap();
    }
    let t = chrono::Utc::now();
    f.hub.restart().unwrap();
    let (a, b) = (&f.agents[0], &f.agents[1]);

    let show = wait_for(Duration::from_secs(30), "B's rejection", || {
        let s = f.hub.json(&["agent", "show", &b_id]).ok()?;
        let d = s["deploys"]
            .as_array()?
            .iter()
            .find(|d| d["workflow"] == "rp")?
            .clone();
        let at = chrono::DateTime::parse_from_rfc3339(d["at"].as_str()?).ok()?;
        (d["accepted"] == false && at > t).then_some(d)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", f.hub.stderr_tail(), b.d.stderr_tail()));
    let reason = show["reason"].as_str().unwrap();
    assert!(
        reason.contains("names another agent") && reason.contains(&a_id),
        "{show}"
    );
    assert_eq!(
        show["version"], 2,
        "the offered assignment was A's v2: {show}"
    );
    let audit = f.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "deploy.rejected" && e["actor"] == b_id.as_str()),
        "{audit:#?}"
    );
    // B keeps v1 and goes on running it; it never ran v2. A is untouched.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(local_version(&b.d, "rp"), 1);
    assert_eq!(versions_run(&b.d, "rp"), BTreeSet::from([1]));
    let since = chrono::Utc::now();
    wait_for(Duration::from_secs(10), "B runs v1", || {
        runs_at(&b.d, "rp", 1)
            .iter()
            .any(|r| {
                r["scheduled"]
                    .as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .is_some_and(|x| x > since)
            })
            .then_some(())
    })
    .unwrap();
    assert_eq!(local_version(&a.d, "rp"), 2);
    assert!(
        b.d.stderr_tail().contains("deploy rejected"),
        "{}",
        b.d.stderr_tail()
    );
}
