//! Enrollment as the docs give it, with the real binaries: the token carries the hub's name and
//! CA (so `enroll` needs neither), its labels are authoritative, a refused enroll leaves no
//! state behind, and tokens have a maximum time to live, several uses, a list and revocation.
//! Identity: a copied agent state is refused and audited while a restarted agent reconnects, and
//! `agent list` gives an offline agent's last contact.

use std::path::Path;
use std::time::Duration;

use outpost_tests::{Daemon, Hub, Scratch, agent, stderr, stdout};

fn agent_config(dir: &Path, hub_addr: std::net::SocketAddr) -> String {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\nworkflows_dir = \"{}\"\nrescan_interval = \"200ms\"\n[hub]\naddress = \"{hub_addr}\"\n",
            dir.join("state").display(),
            dir.join("workflows").display()
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

#[test]
fn enroll_needs_no_hub_name_and_refuses_labels_the_token_does_not_allow() {
    let s = Scratch::new("enrollname").unwrap();
    let hub = Hub::start_init(
        s.path(),
        &["--name", "hub.example.com"],
        "hub_name = \"hub.example.com\"\n",
    )
    .unwrap();
    let addr = hub.quic_addr.to_string();
    let token = hub.token("site=a").unwrap();
    assert!(token.ends_with(".hub.example.com"), "{token}");
    let dir = s.join("a");
    let cfg = agent_config(&dir, hub.quic_addr);

    // Asking for labels the token does not carry: refused, naming them; nothing left behind.
    let out = agent(&[
        "enroll",
        "--config",
        &cfg,
        "--hub",
        &addr,
        "--token",
        &token,
        "--labels",
        "role=payments,site=b",
    ])
    .unwrap();
    assert!(
        !out.status.success(),
        "escalation accepted: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("role=payments,site=b"), "{err}");
    assert!(err.contains("not allowed by the bootstrap token"), "{err}");
    assert!(
        !dir.join("state").exists(),
        "a refused enroll left state behind: {:?}",
        std::fs::read_dir(dir.join("state")).map(|d| d.count())
    );
    assert_eq!(
        hub.json(&["agent", "list"])
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The same token, as written in the docs (no --hub-name, the token's labels repeated).
    let out = agent(&[
        "enroll", "--config", &cfg, "--hub", &addr, "--token", &token, "--labels", "site=a",
    ])
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list = hub.json(&["agent", "list"]).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["labels"], serde_json::json!({"site": "a"}));

    // Enrolling again while the agent runs: a message with the working order.
    let mut d = Daemon::start(&dir, "").unwrap();
    let t2 = hub.token("site=a").unwrap();
    let out = agent(&["enroll", "--config", &cfg, "--hub", &addr, "--token", &t2]).unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("stop it") || err.contains("already enrolled"),
        "{err}"
    );
    d.terminate(std::time::Duration::from_secs(10)).unwrap();
    assert!(
        dir.join("state/agent.redb").exists(),
        "the refused enroll removed the store"
    );
}

#[test]
fn token_cli_lists_revokes_limits_ttl_and_counts_uses() {
    let s = Scratch::new("enrolltok").unwrap();
    let hub = Hub::start(s.path(), "").unwrap();
    let addr = hub.quic_addr.to_string();

    let out = hub
        .cli(&["token", "create", "--ttl", "31d", "--labels", "site=a"])
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("max_token_ttl"), "{}", stderr(&out));

    let batch = hub
        .json(&["token", "create", "--uses", "2", "--labels", "site=batch"])
        .unwrap();
    let token = batch["token"].as_str().unwrap().to_string();
    let id = batch["id"].as_str().unwrap().to_string();
    let enroll = |name: &str, token: &str| {
        let cfg = agent_config(&s.join(name), hub.quic_addr);
        agent(&["enroll", "--config", &cfg, "--hub", &addr, "--token", token]).unwrap()
    };
    assert!(enroll("b1", &token).status.success());
    assert!(enroll("b2", &token).status.success());
    let third = enroll("b3", &token);
    assert!(
        !third.status.success(),
        "a spent token enrolled a third agent"
    );
    let agents = hub.json(&["agent", "list"]).unwrap();
    assert_eq!(agents.as_array().unwrap().len(), 2);

    let single = hub.json(&["token", "create"]).unwrap();
    let single_id = single["id"].as_str().unwrap().to_string();
    let out = hub.cli(&["token", "revoke", &single_id]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("revoked"));
    let refused = enroll("r1", single["token"].as_str().unwrap());
    assert!(
        !refused.status.success(),
        "a revoked token enrolled an agent"
    );

    let list = hub.json(&["token", "list"]).unwrap();
    let of = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(of(&id)["state"], "spent");
    assert_eq!(of(&id)["used"], 2);
    assert_eq!(of(&single_id)["state"], "revoked");
    let text = hub.cli(&["token", "list"]).unwrap();
    assert!(stdout(&text).contains(&id), "{}", stdout(&text));
    let audit = stdout(&hub.cli(&["audit"]).unwrap());
    assert!(audit.contains("token.revoke"), "{audit}");
}

/// The agent's entry in `agent list`.
fn listed(hub: &Hub, id: &str) -> serde_json::Value {
    let list = hub.json(&["agent", "list"]).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no agent {id} in {list}"))
}

fn online_since(hub: &Hub, id: &str) -> Option<String> {
    let a = listed(hub, id);
    (a["online"] == true).then(|| a["since"].as_str().unwrap_or_default().to_string())
}

fn duplicates_audited(hub: &Hub) -> usize {
    let audit = hub.json(&["audit", "--limit", "1000"]).unwrap();
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "agent.duplicate_session")
        .count()
}

#[test]
fn a_cloned_agent_is_refused_and_audited_while_a_restarted_one_reconnects_at_once() {
    let s = Scratch::new("enrollclone").unwrap();
    let hub = Hub::start(
        s.path(),
        "keep_alive_interval = \"1s\"\nmax_idle_timeout = \"3s\"\n",
    )
    .unwrap();
    let mut a =
        outpost_tests::enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "site=a", "").unwrap();
    let id = hub.json(&["agent", "list"]).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    outpost_tests::wait_for(Duration::from_secs(20), "the agent online", || {
        online_since(&hub, &id)
    })
    .unwrap();

    // A copy of the enrolled agent's state (same identity, same certificate), started on the
    // side: stop, copy, start both.
    a.terminate(Duration::from_secs(10)).unwrap();
    outpost_tests::copy_dir(&s.join("a/state"), &s.join("b/state")).unwrap();
    let _ = std::fs::remove_file(s.join("b/state/agent.sock"));
    agent_config(&s.join("b"), hub.quic_addr);
    a.restart().unwrap();
    let since_a = outpost_tests::wait_for(Duration::from_secs(20), "the agent back online", || {
        online_since(&hub, &id)
    })
    .unwrap();
    let mut b = Daemon::start(&s.join("b"), "").unwrap();

    // The clone is refused (repeatedly, as it retries) and each refusal is audited; the first
    // session stays, undisturbed: its "online since" does not move.
    outpost_tests::wait_for(Duration::from_secs(20), "the duplicate audited", || {
        (duplicates_audited(&hub) >= 1).then_some(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        online_since(&hub, &id).as_deref(),
        Some(since_a.as_str()),
        "the sessions displaced each other"
    );
    let b_log = std::fs::read_to_string(s.join("b/agent.stderr")).unwrap_or_default();
    assert!(b_log.contains("live session"), "{b_log}");
    let audit = hub.json(&["audit", "--limit", "1000"]).unwrap();
    let dup = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "agent.duplicate_session")
        .unwrap()
        .clone();
    assert_eq!(dup["target"], id.as_str(), "{dup}");

    // A restarted agent is never locked out: kill -9 (its session is left dead at the hub),
    // start it again, and it is back within seconds (the clone stopped first).
    b.terminate(Duration::from_secs(10)).unwrap();
    a.kill9().unwrap();
    let t0 = std::time::Instant::now();
    a.restart().unwrap();
    outpost_tests::wait_for(
        Duration::from_secs(10),
        "the restarted agent online",
        || online_since(&hub, &id).filter(|s| *s != since_a),
    )
    .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "reconnect took {:?}",
        t0.elapsed()
    );
}

#[test]
fn agent_list_offline_since_is_the_last_contact() {
    let s = Scratch::new("enrolllast").unwrap();
    let hub = Hub::start(
        s.path(),
        "keep_alive_interval = \"1s\"\nmax_idle_timeout = \"3s\"\n",
    )
    .unwrap();
    let mut a =
        outpost_tests::enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "site=a", "").unwrap();
    let id = hub.json(&["agent", "list"]).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    outpost_tests::wait_for(Duration::from_secs(20), "the agent online", || {
        online_since(&hub, &id)
    })
    .unwrap();
    // Connected for a while, then stopped: "offline since" is when it went away, not when it
    // said hello.
    std::thread::sleep(Duration::from_secs(5));
    let stopped = chrono::Utc::now();
    a.terminate(Duration::from_secs(10)).unwrap();
    let since = outpost_tests::wait_for(Duration::from_secs(20), "the agent offline", || {
        let e = listed(&hub, &id);
        (e["online"] == false).then(|| e["since"].as_str().unwrap_or_default().to_string())
    })
    .unwrap();
    let since = chrono::DateTime::parse_from_rfc3339(&since).unwrap();
    assert!(
        since >= stopped - chrono::Duration::seconds(1),
        "offline since {since}, but the agent was connected until {stopped}"
    );
}
