//! A fleet's first day, with the real binaries: three agent services started before they are
//! enrolled, enrolled unattended with one `--uses 3` token from a file (re-running is a no-op),
//! named by the operator or after the host, renamed, one decommissioned (refused after, its
//! history kept, its name freed); and `[retention]` bounding the hub's run history.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use outpost_tests::{Daemon, Hub, Scratch, agent, agent_bin, stderr, stdout, wait_for};

use crate::hub::{FAST_HUB, apply, ticker};

/// Write `dir/agent.toml` for `hub_addr` and start `outpost-agent serve` on it, not enrolled:
/// the service waits on its control socket for `enroll`.
fn unenrolled_service(dir: &Path, hub_addr: std::net::SocketAddr) -> Daemon {
    let state_dir = dir.join("state");
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nworkflows_dir = \"{}\"\nrescan_interval = \"200ms\"\n[hub]\naddress = \"{hub_addr}\"\n",
            state_dir.display(),
            dir.join("workflows").display()
        ),
    )
    .unwrap();
    let stderr_path = dir.join("agent.stderr");
    let log = std::fs::File::create(&stderr_path).unwrap();
    let child = Command::new(agent_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let socket = state_dir.join("agent.sock");
    let d = Daemon {
        child: Some(child),
        config,
        socket: socket.clone(),
        state_dir,
        stderr_path,
        rust_log: None,
        env: Vec::new(),
    };
    wait_for(
        Duration::from_secs(20),
        "the waiting agent's socket",
        || socket.exists().then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", d.stderr_tail()));
    d
}

fn enroll(d: &Daemon, addr: &str, token_file: &Path, name: Option<&str>) -> std::process::Output {
    let cfg = d.config.display().to_string();
    let tf = token_file.display().to_string();
    let mut args = vec![
        "enroll",
        "--config",
        cfg.as_str(),
        "--hub",
        addr,
        "--token-file",
        tf.as_str(),
        "--labels",
        "site=a",
    ];
    if let Some(n) = name {
        args.extend_from_slice(&["--name", n]);
    }
    agent(&args).unwrap()
}

fn agents(hub: &Hub) -> Vec<serde_json::Value> {
    hub.json(&["agent", "list"])
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn by_name<'a>(list: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    list.iter().find(|a| a["name"] == name)
}

#[test]
fn three_agents_enroll_unattended_while_running_are_named_renamed_and_one_decommissioned() {
    let s = Scratch::new("fleet").unwrap();
    let hub = Hub::start(
        s.path(),
        &format!(
            "{FAST_HUB}[retention]\nmax_runs_per_workflow = 3\nkeep_recent = \"0s\"\ninterval = \"1s\"\n"
        ),
    )
    .unwrap();
    let addr = hub.quic_addr.to_string();
    let tok = hub
        .json(&[
            "token", "create", "--uses", "3", "--labels", "site=a", "--ttl", "10m",
        ])
        .unwrap();
    let token_file = s
        .write("enroll.token", tok["token"].as_str().unwrap())
        .unwrap();

    // The services run first (as a package or cloud-init starts them), then enroll.
    let dirs: Vec<PathBuf> = (0..3).map(|i| s.join(&format!("a{i}"))).collect();
    let mut daemons: Vec<Daemon> = dirs
        .iter()
        .map(|d| unenrolled_service(d, hub.quic_addr))
        .collect();
    // Not enrolled yet: the service says so.
    let st = daemons[0].ctl("status", &[]).unwrap();
    assert!(!st.status.success());
    assert!(stderr(&st).contains("not enrolled"), "{}", stderr(&st));

    let names = [Some("line0"), Some("line1"), None];
    for (d, n) in daemons.iter().zip(names) {
        let out = enroll(d, &addr, &token_file, n);
        assert!(
            out.status.success(),
            "{}{}\n{}",
            stdout(&out),
            stderr(&out),
            d.stderr_tail()
        );
        assert!(
            stdout(&out).contains("enrolled as agent-"),
            "{}",
            stdout(&out)
        );
    }
    // Re-running the same step is a no-op success.
    let again = enroll(&daemons[0], &addr, &token_file, Some("line0"));
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("already enrolled"),
        "{}",
        stdout(&again)
    );
    // The token is used up: a fourth agent is refused (exit 3), and leaves nothing behind.
    let fourth = s.join("a3");
    std::fs::create_dir_all(&fourth).unwrap();
    let st4 = fourth.join("state").display().to_string();
    let tf = token_file.display().to_string();
    let out = agent(&[
        "enroll",
        "--state-dir",
        &st4,
        "--hub",
        &addr,
        "--token-file",
        &tf,
    ])
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!fourth.join("state").exists());
    // No token at all: bad input (exit 2).
    let out = Command::new(agent_bin())
        .args(["enroll", "--state-dir", &st4, "--hub", &addr])
        .env_remove("OUTPOST_ENROLL_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // All three connect without a restart; the hub knows them by name.
    let list = wait_for(Duration::from_secs(30), "three agents online", || {
        let l = agents(&hub);
        (l.len() == 3 && l.iter().all(|a| a["online"] == true)).then_some(l)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", agents(&hub), daemons[2].stderr_tail()));
    let line0 = by_name(&list, "line0").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let line1 = by_name(&list, "line1").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let host = list
        .iter()
        .find(|a| a["name"] != "line0" && a["name"] != "line1")
        .unwrap();
    let host_name = host["name"].as_str().unwrap().to_string();
    let host_id = host["id"].as_str().unwrap().to_string();
    assert!(!host_name.is_empty() && !host_name.starts_with("agent-"));

    // Every agent argument takes the id or the name.
    let shown = hub.json(&["agent", "show", &host_name]).unwrap();
    assert_eq!(shown["id"], host_id.as_str());
    let out = hub.cli(&["agent", "rename", "line1", "press-7"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("line1 -> press-7"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        hub.json(&["agent", "show", "press-7"]).unwrap()["id"],
        line1.as_str()
    );
    assert!(
        !hub.cli(&["agent", "show", "line1"])
            .unwrap()
            .status
            .success()
    );
    // A name another agent holds is refused.
    let out = hub.cli(&["agent", "rename", &line0, "press-7"]).unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("taken"), "{}", stderr(&out));

    // Runs flow; retention keeps 3 per workflow on each agent.
    let v = apply(
        &hub,
        s.path(),
        "tick.yaml",
        &ticker("tick", 1, "a", "site: a"),
    );
    assert_eq!(v, 1);
    wait_for(
        Duration::from_secs(40),
        "runs past the retention limit",
        || {
            let made = daemons[0].runs(Some("tick")).ok()?.len();
            (made >= 8).then_some(())
        },
    )
    .unwrap();
    let at_hub = wait_for(Duration::from_secs(20), "retention at the hub", || {
        let runs = hub
            .json(&["run", "list", "--agent", "line0", "--workflow", "tick"])
            .ok()?;
        let n = runs.as_array()?.len();
        (n <= 5).then_some(n)
    })
    .unwrap();
    assert!(at_hub >= 1);
    // The freed pages go back to the file system while the hub serves.
    let c = hub.json(&["compact"]).unwrap();
    let (before, after) = (
        c["bytes_before"].as_u64().unwrap(),
        c["bytes_after"].as_u64().unwrap(),
    );
    assert!(after <= before, "{c}");
    assert_eq!(agents(&hub).len(), 3);

    // Decommission the host-named agent by name: refused from then on, history kept.
    let out = hub.json(&["agent", "decommission", &host_name]).unwrap();
    assert_eq!(out["id"], host_id.as_str());
    assert_eq!(out["decommissioned"], true);
    assert_eq!(out["freed_name"], host_name.as_str());
    let list = agents(&hub);
    let gone = list.iter().find(|a| a["id"] == host_id.as_str()).unwrap();
    assert!(gone["decommissioned"].is_string(), "{gone}");
    assert!(gone["revoked"].is_string(), "{gone}");
    wait_for(
        Duration::from_secs(10),
        "the decommissioned agent offline",
        || {
            let l = agents(&hub);
            let a = l.iter().find(|a| a["id"] == host_id.as_str())?.clone();
            (a["online"] == false).then_some(())
        },
    )
    .unwrap();
    // Its service restarted: still refused.
    daemons[2].kill9().unwrap();
    daemons[2].restart().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let l = agents(&hub);
    assert_eq!(
        l.iter().find(|a| a["id"] == host_id.as_str()).unwrap()["online"],
        false
    );
    let history = hub
        .json(&["run", "list", "--agent", &host_id, "--workflow", "tick"])
        .unwrap();
    assert!(!history.as_array().unwrap().is_empty(), "{history}");
    // Its name is free again; repeating is harmless.
    let out = hub.cli(&["agent", "rename", "line0", &host_name]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let again = hub.json(&["agent", "decommission", &host_id]).unwrap();
    assert_eq!(again["decommissioned"], false);
    for d in &mut daemons {
        let _ = d.terminate(Duration::from_secs(10));
    }
}
