//! Values are data, never code: run-time values (trigger parameters, task outputs, run metadata)
//! reach a task's `script` only as the value of a variable, whatever the quoting around the
//! `{{ ... }}` placeholder, so a crafted value never runs as shell. Driven through the real
//! `outpost-agent run`, and through the hub (`outpost-hub workflow trigger --param`) to a real
//! enrolled agent.

use std::path::Path;
use std::time::Duration;

use outpost_tests::{Hub, Scratch, enrolled_agent, run_json, stderr, stdout, task, wait_for};

use crate::hub::{FAST_HUB, agent_id_by_name, apply};

/// Breaks out of a double-quoted string.
const DQ: &str = "x\"; id > owned-dq.txt; echo \"";
/// Runs a second command when pasted unquoted.
const BARE: &str = "x; id > owned-bare.txt";
/// Breaks out of a single-quoted string.
const SQ: &str = "x'; id > owned-sq.txt; echo '";
/// What the producing task writes as its output `evil` (breaks out of double quotes).
const OUT: &str = "y\"; id > owned-out.txt; echo \"";

/// A workflow whose scripts use `{{ ... }}` in every quoting position, and a task whose crafted
/// output feeds the next task's script. Every task writes what it saw as its output `seen`.
fn workflow(name: &str, workdir: &Path) -> String {
    format!(
        r#"name: {name}
params:
  dq: plain
  bare: plain
  sq: plain
defaults:
  working_dir: {dir}
tasks:
  double:
    script: echo "seen=hello {{{{ params.dq }}}}" >> "$OUTPOST_OUTPUT"
  unquoted:
    script: echo seen=hello {{{{ params.bare }}}} >> "$OUTPOST_OUTPUT"
  single:
    script: echo 'seen=hello {{{{ params.sq }}}}' >> "$OUTPOST_OUTPUT"
  produce:
    script: |
      cat >> "$OUTPOST_OUTPUT" <<'EOF'
      evil={out}
      EOF
  consume:
    depends_on: [produce]
    script: echo "seen={{{{ tasks.produce.outputs.evil }}}} in {{{{ run.workflow }}}}" >> "$OUTPOST_OUTPUT"
"#,
        dir = workdir.display(),
        out = OUT,
    )
}

fn owned(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.starts_with("owned").then_some(n)
        })
        .collect()
}

fn params() -> Vec<String> {
    vec![
        format!("dq={DQ}"),
        format!("bare={BARE}"),
        format!("sq={SQ}"),
    ]
}

fn seen(run: &serde_json::Value, t: &str) -> String {
    let outs = task(run, t)["outputs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    outs.iter()
        .find(|kv| kv[0] == "seen")
        .and_then(|kv| kv[1].as_str())
        .unwrap_or_else(|| panic!("task {t} wrote no `seen` output: {run}"))
        .to_string()
}

#[test]
fn crafted_params_and_outputs_stay_data_in_a_local_run() {
    let s = Scratch::new("values-local").unwrap();
    let work = s.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let f = s.write("inj.yaml", &workflow("inj", &work)).unwrap();
    let p = params();
    let mut args = Vec::new();
    for kv in &p {
        args.extend_from_slice(&["--param", kv.as_str()]);
    }
    let (code, v) = run_json(&f, &s.join("st"), &args).unwrap();
    assert_eq!(
        owned(&work),
        Vec::<String>::new(),
        "a value ran as shell: {v}"
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(seen(&v, "double"), format!("hello {DQ}"), "{v}");
    assert_eq!(seen(&v, "unquoted"), format!("hello {BARE}"), "{v}");
    assert_eq!(seen(&v, "single"), format!("hello {SQ}"), "{v}");
    assert_eq!(seen(&v, "consume"), format!("{OUT} in inj"), "{v}");
}

#[test]
fn crafted_params_through_the_hub_stay_data() {
    let s = Scratch::new("values-hub").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    let work = s.join("work");
    std::fs::create_dir_all(&work).unwrap();
    apply(&hub, s.path(), "inj.yaml", &workflow("inj", &work));
    wait_for(Duration::from_secs(30), "workflow deployed", || {
        let st = d.ctl_json("status", &[]).ok()?;
        st["workflows"]
            .as_array()?
            .iter()
            .any(|w| w["name"] == "inj")
            .then_some(())
    })
    .unwrap();
    let p = params();
    let mut args = vec!["workflow", "trigger", "inj", "--agent", id.as_str()];
    for kv in &p {
        args.extend_from_slice(&["--param", kv.as_str()]);
    }
    let out = hub.cli(&args).unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let run = wait_for(Duration::from_secs(30), "the run finished", || {
        let runs = d.runs(Some("inj")).ok()?;
        let r = runs.first()?.clone();
        matches!(r["state"].as_str(), Some("succeeded" | "failed")).then_some(r)
    })
    .unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        owned(&work),
        Vec::<String>::new(),
        "a value ran as shell: {run}"
    );
    assert_eq!(run["state"], "succeeded", "{run}");
    let v = d.ctl_json("show", &[&run_id]).unwrap();
    assert_eq!(seen(&v, "double"), format!("hello {DQ}"), "{v}");
    assert_eq!(seen(&v, "unquoted"), format!("hello {BARE}"), "{v}");
    assert_eq!(seen(&v, "single"), format!("hello {SQ}"), "{v}");
    assert_eq!(seen(&v, "consume"), format!("{OUT} in inj"), "{v}");
}

const TYPED: &str = "name: typed\nparams:\n  count: {type: integer, default: 3}\n  site: {type: string, pattern: '[a-z0-9-]+', default: p7}\ntasks:\n  t:\n    command: [echo, '{{ params.count }}', '{{ params.site }}']\n";

#[test]
fn ill_typed_and_undeclared_params_are_refused_locally() {
    let s = Scratch::new("values-typed").unwrap();
    let f = s.write("typed.yaml", TYPED).unwrap();
    let st = s.join("st");
    let (f, st) = (f.to_str().unwrap(), st.to_str().unwrap());
    for (kv, says) in [
        (
            "count=three",
            "parameter `count` of workflow `typed` must be integer; got `three`",
        ),
        (
            "site=Bad Site",
            "parameter `site` of workflow `typed` must be string matching",
        ),
        (
            "nope=1",
            "workflow `typed` has no parameter `nope` (declared: count, site)",
        ),
    ] {
        let out = outpost_tests::agent(&["run", f, "--state-dir", st, "--param", kv]).unwrap();
        assert!(!out.status.success(), "{kv} accepted: {}", stdout(&out));
        assert!(stderr(&out).contains(says), "{kv}: {}", stderr(&out));
    }
    let (code, v) = run_json(
        std::path::Path::new(f),
        std::path::Path::new(st),
        &["--param", "count=4"],
    )
    .unwrap();
    assert_eq!(code, 0, "{v}");
}

#[test]
fn ill_typed_and_undeclared_params_are_refused_at_the_hub_and_the_agent() {
    let s = Scratch::new("values-typed-hub").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    apply(&hub, s.path(), "typed.yaml", TYPED);
    wait_for(Duration::from_secs(30), "workflow deployed", || {
        let st = d.ctl_json("status", &[]).ok()?;
        st["workflows"]
            .as_array()?
            .iter()
            .any(|w| w["name"] == "typed")
            .then_some(())
    })
    .unwrap();
    for (kv, says) in [
        (
            "count=three",
            "parameter `count` of workflow `typed` must be integer; got `three`",
        ),
        ("nope=1", "workflow `typed` has no parameter `nope`"),
    ] {
        let out = hub
            .cli(&["workflow", "trigger", "typed", "--param", kv])
            .unwrap();
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!out.status.success() && said.contains(says), "{kv}: {said}");
        let out = d.ctl("trigger", &["typed", "--param", kv]).unwrap();
        assert!(
            !out.status.success() && stderr(&out).contains(says),
            "{kv}: {}",
            stderr(&out)
        );
    }
    assert!(
        d.runs(Some("typed")).unwrap().is_empty(),
        "a refused trigger made a run"
    );
    let out = hub
        .cli(&["workflow", "trigger", "typed", "--param", "count=5"])
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// Trigger, log fetch, cancel, pause and resume through the hub each leave an audit entry with
/// the operator whose credential did it.
#[test]
fn operations_through_the_hub_are_audited_with_their_actor() {
    let s = Scratch::new("values-audit").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    apply(
        &hub,
        s.path(),
        "slow.yaml",
        "name: slow\nparams:\n  who: x\ntasks:\n  t:\n    script: echo started; sleep 30\n",
    );
    wait_for(Duration::from_secs(30), "workflow deployed", || {
        let st = d.ctl_json("status", &[]).ok()?;
        st["workflows"]
            .as_array()?
            .iter()
            .any(|w| w["name"] == "slow")
            .then_some(())
    })
    .unwrap();
    let alice = hub.operator("alice", "operator", "").unwrap();
    let as_alice = |args: &[&str]| {
        let out = hub.cli_as(&alice, args).unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    };
    let out = as_alice(&[
        "workflow", "trigger", "slow", "--agent", &id, "--param", "who=bob", "--output", "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let run_id = v["results"][0]["run_id"].as_str().unwrap().to_string();
    wait_for(
        Duration::from_secs(30),
        "the run is running at the hub",
        || {
            let r = hub.json(&["run", "show", &run_id]).ok()?;
            (r["state"] == "running").then_some(())
        },
    )
    .unwrap();
    as_alice(&["run", "logs", &run_id, "t"]);
    as_alice(&["run", "cancel", &run_id, "--agent", &id]);
    wait_for(Duration::from_secs(30), "the run is cancelled", || {
        let r = d.ctl_json("show", &[&run_id]).ok()?;
        (r["state"] == "cancelled").then_some(())
    })
    .unwrap();
    as_alice(&["workflow", "pause", "slow"]);
    as_alice(&["workflow", "resume", "slow"]);
    let log = hub.json(&["audit"]).unwrap();
    let entries = log.as_array().unwrap();
    for (action, target) in [
        ("workflow.trigger", "slow"),
        ("run.logs", run_id.as_str()),
        ("run.cancel", run_id.as_str()),
        ("workflow.pause", "slow"),
        ("workflow.resume", "slow"),
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == action && e["actor"] == "alice" && e["target"] == target),
            "no {action} by alice on {target} in {log:#}"
        );
    }
    let trig = entries
        .iter()
        .find(|e| e["action"] == "workflow.trigger")
        .unwrap();
    assert!(
        trig["detail"].as_str().unwrap().contains("who=\"bob\""),
        "{trig}"
    );
}

/// A version whose failing task is followed by an `all_done` leaf: its runs end `succeeded`
/// (Airflow's rule), yet `run list --state failed-tasks` lists them and a rollout gate counts them
/// as failures (the canary fails and the rollout rolls back).
#[test]
fn runs_that_succeeded_past_a_failed_task_are_seen_by_run_list_and_rollout_gates() {
    let s = Scratch::new("values-alldone").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    hub.json(&["pool", "create", "p", "--selector", "name=a"])
        .unwrap();
    let wf = |tag: &str, work: &str| {
        format!(
            "name: gate\ndescription: '{tag}'\nschedule: '* * * * * *'\ncatchup: none\noverlap: allow\ntasks:\n  work:\n    command: {work}\n  cleanup:\n    depends_on: [work]\n    trigger_rule: all_done\n    command: [/bin/true]\n"
        )
    };
    assert_eq!(
        apply(&hub, s.path(), "gate.yaml", &wf("v1", "[/bin/true]")),
        1
    );
    hub.json(&[
        "workflow",
        "deploy",
        "gate",
        "--pool",
        "p",
        "--version",
        "1",
    ])
    .unwrap();
    wait_for(Duration::from_secs(30), "v1 runs at the hub", || {
        let runs = crate::hub::hub_runs(&hub, &id, "gate");
        (runs.iter().filter(|r| r["state"] == "succeeded").count() >= 2).then_some(())
    })
    .unwrap();
    assert_eq!(
        apply(&hub, s.path(), "gate.yaml", &wf("v2", "[/bin/false]")),
        2
    );
    hub.json(&[
        "rollout",
        "start",
        "gate",
        "--pool",
        "p",
        "--version",
        "2",
        "--canary",
        "1",
        "--steps",
        "100%",
        "--bake",
        "2s",
        "--min-runs",
        "3",
    ])
    .unwrap();
    let end = wait_for(Duration::from_secs(60), "the rollout to end", || {
        let st = hub
            .json(&["rollout", "status", "gate", "--pool", "p"])
            .ok()?;
        (st["active"] == false).then_some(st)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    assert!(
        end["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("rolled back")),
        "{end:#}"
    );
    // The v2 runs the agent made ended `succeeded`, and the hub lists them as had failed tasks.
    let listed = hub
        .json(&[
            "run",
            "list",
            "--workflow",
            "gate",
            "--state",
            "failed-tasks",
        ])
        .unwrap();
    let listed = listed.as_array().unwrap();
    assert!(!listed.is_empty(), "no run listed with failed tasks");
    for r in listed {
        assert_eq!(r["version"], 2, "{r}");
        assert_eq!(r["state"], "succeeded", "{r}");
    }
    let failed = hub
        .json(&["run", "list", "--workflow", "gate", "--state", "failed"])
        .unwrap();
    assert!(failed.as_array().unwrap().is_empty(), "{failed}");
    drop(d);
}
