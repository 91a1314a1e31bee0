//! Secrets stay at the edge, and tasks can run as another user: driven through the real
//! `outpost-agent` (its `secret` CLI, its daemon) enrolled with a real `outpost-hub`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use outpost_tests::{Daemon, Hub, Scratch, agent_bin, enrolled_agent, stderr, stdout, wait_for};

use crate::hub::{FAST_HUB, agent_id_by_name, apply, deploy_result};

/// The value set on the agent; it must never reach the hub, a log or the agent's store.
const VALUE: &str = "S3cr3t-PLC-pa55-4242";

/// `outpost-agent secret set NAME --config CFG` with the value on stdin.
fn secret_set(d: &Daemon, name: &str, value: &str) {
    let mut child = Command::new(agent_bin())
        .args(["secret", "set", name, "--config"])
        .arg(&d.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}

/// Wait until the agent has workflow `wf` active.
fn wait_deployed(d: &Daemon, wf: &str) {
    wait_for(Duration::from_secs(30), "workflow deployed", || {
        let st = d.ctl_json("status", &[]).ok()?;
        st["workflows"]
            .as_array()?
            .iter()
            .any(|w| w["name"] == wf)
            .then_some(())
    })
    .unwrap();
}

/// Trigger `wf` on agent `id` through the hub and wait for the run to end on the agent.
fn trigger_and_wait(hub: &Hub, d: &Daemon, id: &str, wf: &str) -> serde_json::Value {
    let out = hub
        .cli(&["workflow", "trigger", wf, "--agent", id])
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    wait_for(Duration::from_secs(30), "the run finished", || {
        let runs = d.runs(Some(wf)).ok()?;
        let r = runs.first()?.clone();
        matches!(r["state"].as_str(), Some("succeeded" | "failed")).then_some(r)
    })
    .unwrap()
}

fn wait_rejected_naming(hub: &Hub, id: &str, wf: &str, words: &[&str]) -> serde_json::Value {
    wait_for(Duration::from_secs(30), "the deploy's rejection", || {
        let r = deploy_result(hub, id, wf)?;
        let reason = r["reason"].as_str()?;
        (r["accepted"] == false && words.iter().all(|w| reason.contains(w))).then_some(r)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", deploy_result(hub, id, wf)))
}

#[test]
fn a_secret_reaches_the_task_env_only_is_redacted_and_never_reaches_the_hub() {
    let s = Scratch::new("secrets").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");

    // Set while the daemon runs; `list` names it and never shows the value.
    secret_set(&d, "plc-line3", VALUE);
    let list = d.ctl("secret", &["list"]).unwrap();
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(
        stdout(&list).contains("plc-line3\tstore"),
        "{}",
        stdout(&list)
    );
    assert!(!stdout(&list).contains(VALUE));
    let f = d.state_dir.join("secrets").join("plc-line3");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let wf = r#"name: sec
tasks:
  t:
    secret_env: {PLC_PASSWORD: plc-line3}
    script: |
      echo "pw=$PLC_PASSWORD len=${#PLC_PASSWORD}"
      echo "o=$PLC_PASSWORD" >> "$OUTPOST_OUTPUT"
"#;
    apply(&hub, s.path(), "sec.yaml", wf);
    wait_deployed(&d, "sec");
    let run = trigger_and_wait(&hub, &d, &id, "sec");
    assert_eq!(run["state"], "succeeded", "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();

    // The task saw the value (by its length); the log shows only the secret's name.
    let logs = d.ctl("logs", &[&run_id, "t"]).unwrap();
    let text = stdout(&logs);
    assert!(
        text.contains(&format!("pw=[redacted:plc-line3] len={}", VALUE.len())),
        "{text}"
    );
    assert!(!text.contains(VALUE), "{text}");
    let show = d.ctl_json("show", &[&run_id]).unwrap();
    assert!(show.to_string().contains("[redacted:plc-line3]"), "{show}");
    assert!(!show.to_string().contains(VALUE), "{show}");

    // Through the hub: the run, its task log, the workflow; then every byte of its data dir.
    wait_for(Duration::from_secs(30), "the run at the hub", || {
        let r = hub.json(&["run", "show", &run_id]).ok()?;
        (r["state"] == "succeeded").then_some(())
    })
    .unwrap();
    for args in [
        vec!["run", "show", run_id.as_str(), "--agent", id.as_str()],
        vec!["run", "logs", run_id.as_str(), "t", "--agent", id.as_str()],
        vec!["run", "list"],
        vec!["workflow", "show", "sec"],
        vec!["agent", "show", id.as_str()],
    ] {
        let out = hub.cli(&args).unwrap();
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains(VALUE), "{args:?}: {all}");
    }
    assert_eq!(
        files_containing(&hub.data_dir, VALUE.as_bytes()),
        Vec::<String>::new()
    );
    // On the agent, only its secret file holds it (not the store, not a log).
    assert_eq!(
        files_containing(&d.state_dir, VALUE.as_bytes()),
        vec![f.display().to_string()]
    );

    // Removed after the deploy: the next attempt fails at its start and says why.
    let rm = d.ctl("secret", &["rm", "plc-line3"]).unwrap();
    assert!(rm.status.success(), "{}", stderr(&rm));
    let run = trigger_and_wait(&hub, &d, &id, "sec");
    assert_eq!(run["state"], "failed", "{run}");
    let show = d
        .ctl_json("show", &[run["run_id"].as_str().unwrap()])
        .unwrap();
    assert!(
        show.to_string()
            .contains("secret `plc-line3` is not set on this agent"),
        "{show}"
    );
}

#[test]
fn a_workflow_naming_a_secret_the_agent_lacks_is_rejected_naming_it() {
    let s = Scratch::new("secrets-missing").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    let wf = "name: needs\ntasks:\n  t:\n    secret_env: {DB_PASSWORD: db-main}\n    command: [/bin/true]\n";
    apply(&hub, s.path(), "needs.yaml", wf);
    let r = wait_rejected_naming(&hub, &id, "needs", &["db-main", "not set on this agent"]);
    assert_eq!(r["version"], 1, "{r}");

    // `validate` on the agent says the same.
    let file = s.write("needs.yaml", wf).unwrap();
    let cfg = d.config.display().to_string();
    let out =
        outpost_tests::agent(&["validate", "--config", &cfg, file.to_str().unwrap()]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("secret `db-main`"),
        "{}",
        stderr(&out)
    );

    // A workflow asking to run as a user the agent does not allow is rejected too.
    let wf = "name: asroot\ntasks:\n  t:\n    user: root\n    command: [/bin/true]\n";
    apply(&hub, s.path(), "asroot.yaml", wf);
    wait_rejected_naming(
        &hub,
        &id,
        "asroot",
        &["user `root`", "disabled on this agent"],
    );
}

/// Needs root (CI runs the tests as root): the task runs as `nobody`, which may not read the
/// agent's store (its private key) or connect to its control socket.
#[test]
fn a_task_run_as_nobody_cannot_read_the_agents_key_or_use_its_socket() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root (it runs a task as `nobody`); CI runs the e2e tests as root"
    );
    let s = Scratch::new("run-as").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let extra = "[exec]\nallowed_users = [\"nobody\"]\n";
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", extra).unwrap();
    let id = agent_id_by_name(&hub, "a");
    let store = d.state_dir.join("agent.redb");
    let wf = format!(
        "name: asnobody\ntasks:\n  t:\n    user: nobody\n    script: |\n      \
         echo \"uid=$(id -u) groups=$(id -G)\"\n      \
         cat {store} > /dev/null 2>&1 && echo READ-STORE || echo store-denied\n      \
         {agent} status --socket {sock} > /dev/null 2>&1 && echo USED-SOCKET || echo socket-denied\n",
        store = store.display(),
        agent = agent_bin().display(),
        sock = d.socket.display(),
    );
    apply(&hub, s.path(), "asnobody.yaml", &wf);
    wait_deployed(&d, "asnobody");
    let run = trigger_and_wait(&hub, &d, &id, "asnobody");
    assert_eq!(run["state"], "succeeded", "{run}");
    let logs = d
        .ctl("logs", &[run["run_id"].as_str().unwrap(), "t"])
        .unwrap();
    let text = stdout(&logs);
    assert!(text.contains("uid=65534 groups=65534\n"), "{text}");
    assert!(text.contains("store-denied"), "{text}");
    assert!(text.contains("socket-denied"), "{text}");
    assert!(
        !text.contains("READ-STORE") && !text.contains("USED-SOCKET"),
        "{text}"
    );
    // The files themselves: the agent's only.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.state_dir), 0o700);
    assert_eq!(mode(&store), 0o600);
}
