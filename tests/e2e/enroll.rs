//! Enrollment as the docs give it, with the real binaries: the token carries the hub's name and
//! CA (so `enroll` needs neither), its labels are authoritative, a refused enroll leaves no
//! state behind, and tokens have a maximum time to live, several uses, a list and revocation.

use std::path::Path;

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
