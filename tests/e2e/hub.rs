//! The hub and its agents, end to end: a real `outpost-hub` and real `outpost-agent` processes
//! (separate stores, real QUIC with the certificates the hub issued), driven through their CLIs.
//! This module: enrollment and tokens, apply and run on three agents, revocation, and tampered
//! or replayed deploys (made by tampering with a stopped hub's store at rest). The network and
//! crash faults are in `hub_faults.rs`; the helpers here are shared with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use redb::ReadableTable as _;

use outpost_tests::{Daemon, Hub, Scratch, agent, enrolled_agent, stderr, stdout, wait_for};

/// Hub settings that make a dead link show within ~3 s (the agent's QUIC idle timeout is the
/// minimum of both sides', so the hub's setting governs the agents' connections too).
pub(crate) const FAST_HUB: &str = "keep_alive_interval = \"1s\"\nmax_idle_timeout = \"3s\"\n";

/// A workflow firing every second with `tasks` independent `/bin/true` tasks; every firing makes
/// a run (`overlap: allow`). `version_tag` changes the content (a new version at the hub);
/// `target` is a label selector (`k: v`), empty for every agent.
pub(crate) fn ticker(name: &str, tasks: usize, version_tag: &str, target: &str) -> String {
    let mut s = format!(
        "name: {name}\ndescription: '{version_tag}'\nschedule: '* * * * * *'\ncatchup: none\noverlap: allow\n"
    );
    if !target.is_empty() {
        s.push_str(&format!("target:\n  {target}\n"));
    }
    s.push_str("tasks:\n");
    for i in 0..tasks {
        s.push_str(&format!("  t{i}:\n    command: [/bin/true]\n"));
    }
    s
}

/// `workflow apply -f` a file written into `dir`; returns the version the hub reports.
pub(crate) fn apply(hub: &Hub, dir: &Path, file: &str, content: &str) -> u64 {
    let p = dir.join(file);
    std::fs::write(&p, content).unwrap();
    let v = hub
        .json(&["workflow", "apply", "-f", p.to_str().unwrap()])
        .unwrap();
    let r = &v["results"][0];
    assert!(
        r["diagnostics"].as_array().is_some_and(|d| d.is_empty()),
        "{v}"
    );
    r["version"].as_u64().unwrap_or_else(|| panic!("{v}"))
}

/// The id the hub gave the agent whose labels include `name=<name>`.
pub(crate) fn agent_id_by_name(hub: &Hub, name: &str) -> String {
    let list = hub.json(&["agent", "list"]).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["name"] == name)
        .and_then(|a| a["id"].as_str())
        .map(String::from)
        .unwrap_or_else(|| panic!("no agent named {name} in {list}"))
}

/// `outpost-hub agent show ID`.
pub(crate) fn agent_show(hub: &Hub, id: &str) -> serde_json::Value {
    hub.json(&["agent", "show", id]).unwrap()
}

/// The hub's committed status seq for the agent.
pub(crate) fn committed_seq(hub: &Hub, id: &str) -> u64 {
    agent_show(hub, id)["committed_seq"].as_u64().unwrap()
}

/// Every run the hub holds for `agent` (and `workflow`), as the hub lists them.
pub(crate) fn hub_runs(hub: &Hub, agent_id: &str, workflow: &str) -> Vec<serde_json::Value> {
    let v = hub
        .json(&[
            "run",
            "list",
            "--agent",
            agent_id,
            "--workflow",
            workflow,
            "--limit",
            "1000000",
        ])
        .unwrap();
    v.as_array().cloned().unwrap()
}

/// The agent's own runs of `workflow`.
pub(crate) fn agent_runs(d: &Daemon, workflow: &str) -> Vec<serde_json::Value> {
    d.runs(Some(workflow)).unwrap()
}

pub(crate) fn ids(runs: &[serde_json::Value]) -> BTreeSet<String> {
    runs.iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect()
}

/// `outpost-agent status` (JSON).
pub(crate) fn agent_status(d: &Daemon) -> serde_json::Value {
    d.ctl_json("status", &[]).unwrap()
}

/// The active version of `workflow` on the agent, by its own account (0: none).
pub(crate) fn agent_version(d: &Daemon, workflow: &str) -> u64 {
    agent_status(d)["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == workflow)
        .and_then(|w| w["version"].as_u64())
        .unwrap_or(0)
}

/// The hub's last recorded deploy result of `workflow` for the agent.
pub(crate) fn deploy_result(hub: &Hub, id: &str, workflow: &str) -> Option<serde_json::Value> {
    agent_show(hub, id)["deploys"]
        .as_array()?
        .iter()
        .find(|d| d["workflow"] == workflow)
        .cloned()
}

/// Stop new firings (pause at the hub, which reaches the connected agent), let the agent finish
/// and drain its outbox, then check that the hub holds exactly the agent's runs of `workflow`:
/// the same run ids, none twice, the same final states. Returns the number of runs.
pub(crate) fn assert_hub_has_exactly_agent_runs(
    hub: &Hub,
    d: &Daemon,
    agent_id: &str,
    workflow: &str,
) -> usize {
    let out = hub.cli(&["workflow", "pause", workflow]).unwrap();
    assert!(
        out.status.success(),
        "pause: {}{}",
        stdout(&out),
        stderr(&out)
    );
    wait_for(Duration::from_secs(40), "paused, idle and drained", || {
        let st = d.ctl_json("status", &[]).ok()?;
        let wf = st["workflows"]
            .as_array()?
            .iter()
            .find(|w| w["name"] == workflow)?
            .clone();
        (wf["paused"] == true && st["active_runs"] == 0 && st["outbox_pending"] == 0).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n--- hub ---\n{}",
            d.stderr_tail(),
            hub.stderr_tail()
        )
    });
    let mine = agent_runs(d, workflow);
    let theirs = hub_runs(hub, agent_id, workflow);
    let (mine_ids, their_ids) = (ids(&mine), ids(&theirs));
    assert_eq!(mine_ids.len(), mine.len(), "the agent lists a run twice");
    assert_eq!(
        their_ids.len(),
        theirs.len(),
        "the hub holds a run twice for {agent_id}"
    );
    let missing: Vec<_> = mine_ids.difference(&their_ids).collect();
    let extra: Vec<_> = their_ids.difference(&mine_ids).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "runs missing at the hub: {missing:?}; runs at the hub the agent never made: {extra:?}"
    );
    assert_eq!(theirs.len(), mine.len());
    let states = |runs: &[serde_json::Value]| -> BTreeMap<String, String> {
        runs.iter()
            .map(|r| {
                (
                    r["run_id"].as_str().unwrap().to_string(),
                    r["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        states(&theirs),
        states(&mine),
        "a run's state differs between agent and hub"
    );
    assert!(theirs.iter().all(|r| r["agent"] == agent_id));
    mine.len()
}

/// After [`assert_hub_has_exactly_agent_runs`]: stop the agent and check, from its own store,
/// that the hub committed exactly its whole status sequence (no gap, nothing pending), that the
/// hub never saw a gap, and that sampled runs carry each task exactly once, as at the agent.
pub(crate) fn assert_sequences_match(hub: &Hub, d: &mut Daemon, agent_id: &str, workflow: &str) {
    let mine = agent_runs(d, workflow);
    let step = (mine.len() / 6).max(1);
    for r in mine.iter().step_by(step) {
        let rid = r["run_id"].as_str().unwrap();
        let at_hub = hub
            .json(&["run", "show", rid, "--agent", agent_id])
            .unwrap();
        let at_agent = d.ctl_json("show", &[rid]).unwrap();
        let tasks = |v: &serde_json::Value| -> Vec<(String, String)> {
            let mut t: Vec<(String, String)> = v["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["task"].as_str().unwrap().to_string(),
                        t["state"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            t.sort();
            t
        };
        assert_eq!(tasks(&at_hub), tasks(&at_agent), "{rid}");
    }
    d.terminate(Duration::from_secs(15)).unwrap();
    let (acked, last) = {
        let st = outpost_agent::store::Store::open(&d.state_dir.join("agent.redb")).unwrap();
        (st.acked_seq().unwrap(), st.last_seq().unwrap())
    };
    let committed = committed_seq(hub, agent_id);
    assert_eq!(
        (acked, committed),
        (last, last),
        "agent acked/last seq vs the hub's committed seq"
    );
    let log = std::fs::read_to_string(&hub.stderr_path).unwrap();
    assert!(!log.contains("gap in the agent's status sequence"), "{log}");
}

/// Scheduled instants (ms) of the agent's scheduled runs.
pub(crate) fn scheduled_ms(runs: &[serde_json::Value]) -> Vec<i64> {
    let mut v: Vec<i64> = runs
        .iter()
        .filter(|r| r["kind"] == "scheduled")
        .filter_map(|r| r["scheduled"].as_str())
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    v.sort();
    v
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Every whole second strictly inside `(from_ms, to_ms)` has exactly one scheduled run.
pub(crate) fn assert_every_second_fired(runs: &[serde_json::Value], from_ms: i64, to_ms: i64) {
    let fired = scheduled_ms(runs);
    let first = (from_ms / 1000 + 1) * 1000;
    let mut expected = Vec::new();
    let mut t = first;
    while t < to_ms {
        expected.push(t);
        t += 1000;
    }
    let got: Vec<i64> = fired
        .iter()
        .copied()
        .filter(|t| (first..to_ms).contains(t))
        .collect();
    assert_eq!(
        got,
        expected,
        "the agent did not fire exactly once per second in the window ({} expected)",
        expected.len()
    );
}

fn enroll_args<'a>(cfg: &'a str, addr: &'a str, token: &'a str) -> Vec<&'a str> {
    vec!["enroll", "--config", cfg, "--hub", addr, "--token", token]
}

fn write_agent_config(dir: &Path, hub_addr: std::net::SocketAddr) -> String {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\nworkflows_dir = \"{}\"\n[hub]\naddress = \"{hub_addr}\"\n",
            dir.join("state").display(),
            dir.join("workflows").display()
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

#[test]
fn three_agents_enroll_apply_and_run_on_schedule() {
    let s = Scratch::new("hub3").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let names = ["a1", "a2", "a3"];
    let agents: Vec<Daemon> = names
        .iter()
        .map(|n| {
            let site = if *n == "a3" { "south" } else { "north" };
            enrolled_agent(
                &s.join(n),
                &hub,
                hub.quic_addr,
                &format!("name={n},site={site}"),
                "",
            )
            .unwrap()
        })
        .collect();
    let agent_ids: Vec<String> = names.iter().map(|n| agent_id_by_name(&hub, n)).collect();
    assert_eq!(
        agent_ids.iter().collect::<BTreeSet<_>>().len(),
        3,
        "{agent_ids:?}"
    );
    for id in &agent_ids {
        assert!(id.starts_with("agent-") && id.len() == 22, "{id}");
    }
    // One workflow for everyone, one only for site=north.
    assert_eq!(
        apply(&hub, s.path(), "all.yaml", &ticker("all", 1, "v1", "")),
        1
    );
    assert_eq!(
        apply(
            &hub,
            s.path(),
            "north.yaml",
            &ticker("north", 1, "v1", "site: north")
        ),
        1
    );
    // Applying the same content again makes no new version.
    let again = hub
        .json(&[
            "workflow",
            "apply",
            "-f",
            s.join("all.yaml").to_str().unwrap(),
        ])
        .unwrap();
    assert_eq!(again["results"][0]["changed"], false, "{again}");
    assert_eq!(again["results"][0]["version"], 1, "{again}");

    for (d, id) in agents.iter().zip(&agent_ids) {
        wait_for(
            Duration::from_secs(30),
            "3 runs of `all` at the hub",
            || (hub_runs(&hub, id, "all").len() >= 3).then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", d.stderr_tail(), hub.stderr_tail()));
        assert_eq!(agent_version(d, "all"), 1);
        let runs = hub_runs(&hub, id, "all");
        for r in &runs {
            assert_eq!(r["agent"], id.as_str());
            let rid = r["run_id"].as_str().unwrap();
            assert!(rid.starts_with("all@v1@") && rid.ends_with('Z'), "{rid}");
        }
        // Every run the hub lists for this agent is one the agent made itself.
        let own = ids_of(d, "all");
        assert!(ids(&runs).is_subset(&own), "{runs:?} vs {own:?}");
    }
    // The targeted workflow reaches exactly the north agents.
    for (d, id) in agents.iter().zip(&agent_ids).take(2) {
        wait_for(Duration::from_secs(30), "north runs at the hub", || {
            (!hub_runs(&hub, id, "north").is_empty()).then_some(())
        })
        .unwrap();
        assert_eq!(agent_version(d, "north"), 1);
    }
    assert_eq!(agent_version(&agents[2], "north"), 0);
    assert!(hub_runs(&hub, &agent_ids[2], "north").is_empty());

    // The listing shows each agent online with its active versions.
    let list = hub.json(&["agent", "list"]).unwrap();
    for id in &agent_ids {
        let a = list
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id.as_str())
            .unwrap();
        assert_eq!(a["online"], true, "{a}");
        assert!(
            a["active"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["workflow"] == "all" && w["version"] == 1),
            "{a}"
        );
    }
    // A run's detail and its task log, fetched from the agent through the hub.
    let rid = hub_runs(&hub, &agent_ids[0], "all")[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let show = hub
        .json(&["run", "show", &rid, "--agent", &agent_ids[0]])
        .unwrap();
    assert_eq!(show["run_id"], rid.as_str(), "{show}");
    let logs = hub
        .cli(&["run", "logs", &rid, "t0", "--agent", &agent_ids[0]])
        .unwrap();
    assert!(logs.status.success(), "{}", stderr(&logs));
}

fn ids_of(d: &Daemon, wf: &str) -> BTreeSet<String> {
    ids(&agent_runs(d, wf))
}

#[test]
fn a_token_works_once_and_not_after_it_expires() {
    let s = Scratch::new("hubtok").unwrap();
    let hub = Hub::start(s.path(), "").unwrap();
    let addr = hub.quic_addr.to_string();
    let token = hub.token("name=first").unwrap();
    let cfg1 = write_agent_config(&s.join("first"), hub.quic_addr);
    let out = agent(&enroll_args(&cfg1, &addr, &token)).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("enrolled as agent-"),
        "{}",
        stdout(&out)
    );

    // The same token again, from another machine (a fresh store): refused.
    let cfg2 = write_agent_config(&s.join("second"), hub.quic_addr);
    let out = agent(&enroll_args(&cfg2, &addr, &token)).unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("refused enrollment"), "{err}");

    // A token past its time to live: refused.
    let v = hub
        .json(&["token", "create", "--ttl", "1s", "--labels", "name=late"])
        .unwrap();
    let late = v["token"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(2100));
    let cfg3 = write_agent_config(&s.join("third"), hub.quic_addr);
    let out = agent(&enroll_args(&cfg3, &addr, &late)).unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refused enrollment"),
        "{}",
        stderr(&out)
    );

    // A token whose secret was altered: refused.
    let fresh = hub.token("").unwrap();
    let mut parts: Vec<String> = fresh.split('.').map(String::from).collect();
    let flipped = if parts[2].starts_with('0') { "1" } else { "0" };
    parts[2].replace_range(0..1, flipped);
    let forged = parts.join(".");
    let cfg4 = write_agent_config(&s.join("fourth"), hub.quic_addr);
    let out = agent(&enroll_args(&cfg4, &addr, &forged)).unwrap();
    assert!(!out.status.success());

    // Only the first enrollment made an agent; the refused ones stored no identity.
    let list = hub.json(&["agent", "list"]).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["labels"]["name"], "first");
    // Fail closed: an agent in hub mode without an identity runs nothing and connects nowhere; it
    // waits for `outpost-agent enroll` on its control socket, and its status says so.
    for cfg in [&cfg2, &cfg3, &cfg4] {
        let mut child = std::process::Command::new(outpost_tests::agent_bin())
            .args(["serve", "--config", cfg])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let st = wait_for(
            Duration::from_secs(10),
            "the waiting agent's status",
            || {
                let out = agent(&["status", "--config", cfg]).ok()?;
                stderr(&out).contains("not enrolled").then_some(out)
            },
        );
        let still_running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        let st = st.expect("an unenrolled agent in hub mode says it is not enrolled");
        assert!(!st.status.success());
        assert!(still_running, "the unenrolled agent waits for enrollment");
    }
    let list = hub.json(&["agent", "list"]).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn a_revoked_agent_is_cut_off_within_seconds_and_refused_after() {
    let s = Scratch::new("hubrev").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let bad = enrolled_agent(&s.join("bad"), &hub, hub.quic_addr, "name=bad", "").unwrap();
    let _good = enrolled_agent(&s.join("good"), &hub, hub.quic_addr, "name=good", "").unwrap();
    let (bad_id, good_id) = (
        agent_id_by_name(&hub, "bad"),
        agent_id_by_name(&hub, "good"),
    );
    apply(&hub, s.path(), "tick.yaml", &ticker("tick", 1, "v1", ""));
    for id in [&bad_id, &good_id] {
        wait_for(Duration::from_secs(30), "runs at the hub", || {
            (hub_runs(&hub, id, "tick").len() >= 2).then_some(())
        })
        .unwrap();
    }
    assert_eq!(agent_show(&hub, &bad_id)["online"], true);

    let t0 = Instant::now();
    let out = hub.cli(&["agent", "revoke", &bad_id]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(Duration::from_secs(5), "the revoked agent offline", || {
        let a = agent_show(&hub, &bad_id);
        (a["online"] == false && !a["revoked"].is_null()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    let cut = t0.elapsed();
    // The agent learns why its session ended.
    wait_for(Duration::from_secs(5), "the agent logs the goodbye", || {
        bad.stderr_tail().contains("revoked").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", bad.stderr_tail()));

    // From now on it is refused: its reconnects fail, the hub stops taking its runs, while it
    // keeps running its schedule locally and the other agent keeps syncing.
    let frozen = hub_runs(&hub, &bad_id, "tick").len();
    let own_before = agent_runs(&bad, "tick").len();
    let good_before = hub_runs(&hub, &good_id, "tick").len();
    let attempts_before = refused_attempts(&bad);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(hub_runs(&hub, &bad_id, "tick").len(), frozen);
    assert!(agent_runs(&bad, "tick").len() >= own_before + 3);
    assert!(hub_runs(&hub, &good_id, "tick").len() >= good_before + 3);
    let a = agent_show(&hub, &bad_id);
    assert_eq!(a["online"], false, "{a}");
    assert!(
        refused_attempts(&bad) > attempts_before,
        "no refused reconnect logged after revocation:\n{}",
        bad.stderr_tail()
    );
    let list = hub.json(&["agent", "list"]).unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == bad_id.as_str())
        .unwrap()
        .clone();
    assert!(!row["revoked"].is_null(), "{row}");
    // A command to it is refused at the hub with a clear message, not queued.
    let out = hub
        .cli(&["workflow", "trigger", "tick", "--agent", &bad_id])
        .unwrap();
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !out.status.success() || said.contains("not connected") || said.contains("revoked"),
        "{said}"
    );
    eprintln!("revoked agent cut off after {cut:?}");
}

/// How many session attempts the agent has logged as refused for its revocation.
fn refused_attempts(d: &Daemon) -> usize {
    let log = std::fs::read_to_string(&d.stderr_path).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("hub link:") && l.contains("revoked"))
        .count()
}

// ----- tampering with a stopped hub's store ------------------------------------------------------

/// Tables of the hub store (mirrors `hub/src/store/schema.rs`; the record types come from the hub
/// crate itself).
const VERSIONS: redb::TableDefinition<(&str, u64), &[u8]> =
    redb::TableDefinition::new("workflow_versions");
const WORKFLOWS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("workflows");
const ASSIGNMENTS: redb::TableDefinition<(&str, &str), &[u8]> =
    redb::TableDefinition::new("assignments");
const POOL_DECISIONS: redb::TableDefinition<(&str, &str), &[u8]> =
    redb::TableDefinition::new("pool_decisions");

fn store_path(hub: &Hub) -> std::path::PathBuf {
    hub.data_dir.join("hub.redb")
}

fn read_version(hub: &Hub, wf: &str, v: u64) -> outpost_hub::store::StoredVersion {
    let st = outpost_hub::store::Store::open(&store_path(hub)).unwrap();
    st.version(wf, Some(v)).unwrap()
}

fn read_assignment(hub: &Hub, agent: &str, wf: &str) -> outpost_hub::store::IssuedAssignment {
    let st = outpost_hub::store::Store::open(&store_path(hub)).unwrap();
    st.assignment(agent, wf).unwrap().unwrap()
}

/// Overwrite a version's stored signed bundle with `f(bundle)`.
fn rewrite_bundle(
    hub: &Hub,
    wf: &str,
    v: u64,
    f: impl FnOnce(&mut outpost_common::proto::SignedBundle),
) {
    let mut stored = read_version(hub, wf, v);
    let mut b = stored.signed_bundle().unwrap();
    f(&mut b);
    stored.bundle = minicbor::to_vec(&b).unwrap();
    let db = redb::Database::create(store_path(hub)).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(VERSIONS)
        .unwrap()
        .insert((wf, v), minicbor::to_vec(&stored).unwrap().as_slice())
        .unwrap();
    txn.commit().unwrap();
}

fn flip_bit(bytes: &mut [u8], at: usize) {
    let i = at % bytes.len();
    bytes[i] ^= 0x10;
}

/// Wait for the hub to record a rejection of `version` of `wf` by the agent that names `reason`
/// and happened after `after_ms`.
fn wait_rejected(hub: &Hub, id: &str, wf: &str, version: u64, reason: &str, after_ms: i64) {
    wait_for(Duration::from_secs(30), reason, || {
        let d = deploy_result(hub, id, wf)?;
        let at = chrono::DateTime::parse_from_rfc3339(d["at"].as_str()?)
            .ok()?
            .timestamp_millis();
        (d["accepted"] == false
            && d["version"] == version
            && d["reason"].as_str()?.contains(reason)
            && at >= after_ms)
            .then_some(d)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: last result {:?}\n{}",
            deploy_result(hub, id, wf),
            hub.stderr_tail()
        )
    });
}

/// New runs keep coming on the agent, all on `version`. Runs are committed up to
/// `PRECOMMIT_LEAD` (50 ms) before their instant with the version active then, so the instant
/// right after an activation may still carry the previous one: count from 1 s on.
fn assert_runs_go_on_at(d: &Daemon, wf: &str, version: u64) {
    let before = now_ms() + 1000;
    wait_for(Duration::from_secs(10), "two new runs", || {
        let fresh: Vec<_> = agent_runs(d, wf)
            .into_iter()
            .filter(|r| {
                chrono::DateTime::parse_from_rfc3339(r["scheduled"].as_str().unwrap_or(""))
                    .is_ok_and(|t| t.timestamp_millis() > before)
            })
            .collect();
        (fresh.len() >= 2).then_some(fresh)
    })
    .unwrap()
    .iter()
    .for_each(|r| assert_eq!(r["version"], version, "{r}"));
    assert_eq!(agent_version(d, wf), version);
}

#[test]
fn tampered_and_replayed_deploys_are_rejected_reported_and_change_nothing() {
    let s = Scratch::new("hubtamper").unwrap();
    let mut hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let mut d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    apply(&hub, s.path(), "w.yaml", &ticker("w", 1, "v1", ""));
    wait_for(Duration::from_secs(30), "v1 active and running", || {
        (agent_version(&d, "w") == 1 && agent_runs(&d, "w").len() >= 2).then_some(())
    })
    .unwrap();

    // v2 is applied while the agent is down, so the hub has not sent it yet.
    d.terminate(Duration::from_secs(10)).unwrap();
    assert_eq!(
        apply(&hub, s.path(), "w.yaml", &ticker("w", 2, "v2", "")),
        2
    );
    hub.kill9().unwrap();
    let old_assignment = read_assignment(&hub, &id, "w");
    assert_eq!((old_assignment.version, old_assignment.epoch), (1, 1));
    let genuine = read_version(&hub, "w", 2).signed_bundle().unwrap();

    // 1. One bit of the bundle's content flipped at rest.
    rewrite_bundle(&hub, "w", 2, |b| flip_bit(&mut b.content, 40));
    let t = now_ms();
    hub.restart().unwrap();
    d.restart().unwrap();
    wait_rejected(&hub, &id, "w", 2, "content hash mismatch", t);
    assert_runs_go_on_at(&d, "w", 1);

    // 2. One bit of the release signature flipped (content intact): below the threshold.
    hub.kill9().unwrap();
    rewrite_bundle(&hub, "w", 2, |b| {
        *b = genuine.clone();
        flip_bit(&mut b.release[0].sig, 7);
    });
    let t = now_ms();
    hub.restart().unwrap();
    wait_rejected(
        &hub,
        &id,
        "w",
        2,
        "0 valid release signature(s), 1 needed",
        t,
    );
    assert_runs_go_on_at(&d, "w", 1);

    // 3. One bit of the signed header flipped (e.g. to claim another version or hash).
    hub.kill9().unwrap();
    rewrite_bundle(&hub, "w", 2, |b| {
        *b = genuine.clone();
        flip_bit(&mut b.header_bytes, 5);
    });
    let t = now_ms();
    hub.restart().unwrap();
    wait_rejected(&hub, &id, "w", 2, "", t);
    let r = deploy_result(&hub, &id, "w").unwrap();
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("valid release signature") || reason.contains("malformed"),
        "{r}"
    );
    assert_runs_go_on_at(&d, "w", 1);
    let v1_runs_before = ids(&agent_runs(&d, "w"));

    // The genuine bundle is still accepted: the rejections left nothing behind.
    hub.kill9().unwrap();
    rewrite_bundle(&hub, "w", 2, |b| *b = genuine.clone());
    hub.restart().unwrap();
    wait_for(Duration::from_secs(30), "v2 accepted", || {
        let r = deploy_result(&hub, &id, "w")?;
        (r["accepted"] == true && r["version"] == 2 && agent_version(&d, "w") == 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.stderr_tail()));
    assert_runs_go_on_at(&d, "w", 2);
    let new_assignment = {
        hub.kill9().unwrap();
        read_assignment(&hub, &id, "w")
    };
    assert!(new_assignment.epoch > old_assignment.epoch);

    // 4. The hub's store put back to the older pair it issued earlier (v1's signed assignment,
    // epoch 1, with v1's signed bundle), as a replay or a restore from an old backup would.
    {
        let db = redb::Database::create(store_path(&hub)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut a = txn.open_table(ASSIGNMENTS).unwrap();
            a.insert(
                (id.as_str(), "w"),
                minicbor::to_vec(&old_assignment).unwrap().as_slice(),
            )
            .unwrap();
            let mut w = txn.open_table(WORKFLOWS).unwrap();
            let mut meta: outpost_hub::store::WorkflowMeta =
                minicbor::decode(w.get("w").unwrap().unwrap().value()).unwrap();
            meta.latest = 1;
            w.insert("w", minicbor::to_vec(&meta).unwrap().as_slice())
                .unwrap();
            // And the workflow's default pool (`wf:w`, which follows each apply) back on v1.
            let mut d = txn.open_table(POOL_DECISIONS).unwrap();
            let mut dec: outpost_hub::store::pools::PoolDecision =
                minicbor::decode(d.get(("w", "wf:w")).unwrap().unwrap().value()).unwrap();
            dec.version = 1;
            d.insert(("w", "wf:w"), minicbor::to_vec(&dec).unwrap().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    hub.restart().unwrap();
    // The hub does not send that older assignment again: the agent reports having accepted a
    // later epoch, so the hub issues v1 under a new epoch above it (what a store restored from
    // an older backup needs, docs/protocol.md). The agent's refusal of a replayed epoch itself
    // is `check_deploy`'s (common/tests/trust.rs, sync_sim.rs).
    wait_for(Duration::from_secs(30), "v1 under a new epoch", || {
        let r = deploy_result(&hub, &id, "w")?;
        (r["accepted"] == true
            && r["version"] == 1
            && r["epoch"].as_u64()? > new_assignment.epoch
            && agent_version(&d, "w") == 1)
            .then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}\n{}",
            deploy_result(&hub, &id, "w"),
            hub.stderr_tail()
        )
    });
    assert_runs_go_on_at(&d, "w", 1);

    // Nothing else changed on the agent: every run it made is still there, none was redone.
    let all = agent_runs(&d, "w");
    assert!(v1_runs_before.is_subset(&ids(&all)));
    assert_eq!(ids(&all).len(), all.len());
    assert!(
        d.stderr_tail().contains("deploy rejected"),
        "{}",
        d.stderr_tail()
    );
}
