//! Operator credentials and the tamper-evident audit log, end to end with the real
//! `outpost-hub` binary: roles refused by the server (403, audited as refused, never as done), a
//! deployer limited to a pool, a revoked credential, the actor header without authority, and an
//! audit entry edited in the stopped hub's store that `audit verify` names.

use outpost_tests::{Hub, Scratch, stderr, stdout};

use super::hub::apply;

/// `outpost-hub ARGS` as `credential`: (exit code, stdout, stderr).
fn run(hub: &Hub, credential: &str, args: &[&str]) -> (i32, String, String) {
    let out = hub.cli_as(credential, args).unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

/// The audit log as JSON (the newest 1000 entries).
fn audit(hub: &Hub) -> Vec<serde_json::Value> {
    hub.json(&["audit", "--limit", "1000"])
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn has(log: &[serde_json::Value], actor: &str, action: &str) -> bool {
    log.iter()
        .any(|e| e["actor"] == actor && e["action"] == action)
}

/// A viewer reads but cannot trigger or apply; a deployer limited to pool line-a cannot act on
/// line-b; a revoked operator is refused; what the refused requests would have done is not in
/// the audit log (their refusals are, as `access.denied`).
#[test]
fn roles_pools_and_revocation_are_enforced_by_the_hub() {
    let s = Scratch::new("operators-roles").unwrap();
    let hub = Hub::start(s.path(), "").unwrap();
    let admin = hub.api_token.clone();
    let (code, out, _) = run(&hub, &admin, &["whoami"]);
    assert_eq!((code, out.trim()), (0, "admin (admin)"));
    apply(
        &hub,
        s.path(),
        "demo.yaml",
        "name: demo\ntasks:\n  t:\n    command: [/bin/true]\n",
    );
    for (pool, line) in [("line-a", "line=a"), ("line-b", "line=b")] {
        hub.json(&["pool", "create", pool, "--selector", line])
            .unwrap();
    }
    let viewer = hub.operator("vera", "viewer", "").unwrap();
    let operator = hub.operator("otto", "operator", "").unwrap();
    let deployer = hub.operator("dana", "deployer", "line-a").unwrap();
    let (code, out, _) = run(&hub, &deployer, &["whoami"]);
    assert_eq!((code, out.trim()), (0, "dana (deployer, pools line-a)"));

    // The viewer: reads yes; trigger and apply refused with the role they need.
    let (code, out, err) = run(&hub, &viewer, &["workflow", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("demo"), "{out}");
    let (code, _, err) = run(&hub, &viewer, &["workflow", "trigger", "demo"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("vera") && err.contains("needs role operator"),
        "{err}"
    );
    let wf = s.join("demo2.yaml");
    std::fs::write(&wf, "name: demo\ntasks:\n  t:\n    command: [/bin/false]\n").unwrap();
    let (code, _, err) = run(
        &hub,
        &viewer,
        &["workflow", "apply", "-f", wf.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("needs role deployer"), "{err}");
    let versions = hub.json(&["workflow", "history", "demo"]).unwrap();
    assert_eq!(
        versions.as_array().map(Vec::len),
        Some(1),
        "the refused apply made no version: {versions}"
    );
    let (code, _, err) = run(&hub, &viewer, &["operator", "list"]);
    assert_eq!(code, 1, "{err}");

    // The operator: not allowed to apply or create credentials either.
    let (code, _, err) = run(
        &hub,
        &operator,
        &["operator", "create", "eve", "--role", "admin"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("needs role admin"), "{err}");

    // The deployer of line-a: line-a yes, line-b no (pin, deploy, rollout).
    let (code, out, err) = run(
        &hub,
        &deployer,
        &[
            "workflow",
            "pin",
            "demo",
            "--pool",
            "line-a",
            "--version",
            "1",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    for args in [
        &[
            "workflow",
            "pin",
            "demo",
            "--pool",
            "line-b",
            "--version",
            "1",
        ][..],
        &["workflow", "deploy", "demo", "--pool", "line-b"][..],
        &["rollout", "start", "demo", "--pool", "line-b"][..],
    ] {
        let (code, _, err) = run(&hub, &deployer, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("may act only on pools line-a, not on pool line-b"),
            "{args:?}: {err}"
        );
    }
    // In its own pool a rollout is refused by the hub's state (exit 4), not by the role.
    let (code, _, err) = run(
        &hub,
        &deployer,
        &["rollout", "start", "demo", "--pool", "line-a"],
    );
    assert_eq!(code, 4);
    assert!(!err.contains("may act only"), "{err}");
    // apply and rollback move the default pool wf:demo, not among dana's pools.
    let (code, _, err) = run(
        &hub,
        &deployer,
        &["workflow", "apply", "-f", wf.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("wf:demo"), "{err}");

    // Revoked: refused from the next request on (exit 2: the credential is refused).
    let (code, out, _) = run(&hub, &admin, &["operator", "revoke", "otto"]);
    assert_eq!((code, out.trim()), (0, "operator otto revoked"));
    let (code, _, err) = run(&hub, &operator, &["workflow", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("revoked"), "{err}");
    let list = hub.json(&["operator", "list"]).unwrap();
    let otto = list
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "otto")
        .unwrap();
    assert!(otto["revoked"].is_string(), "{list}");
    // The last admin stays.
    let (code, _, err) = run(&hub, &admin, &["operator", "revoke", "admin"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("last admin"), "{err}");

    let log = audit(&hub);
    assert!(
        log.iter().any(|e| e["actor"] == "vera"
            && e["action"] == "access.denied"
            && e["target"] == "POST /v1/workflows/demo/trigger"),
        "{log:#?}"
    );
    assert!(has(&log, "dana", "access.denied"), "{log:#?}");
    assert!(has(&log, "dana", "workflow.pin"), "{log:#?}");
    for (actor, action) in [
        ("vera", "workflow.trigger"),
        ("vera", "workflow.apply"),
        ("dana", "workflow.apply"),
        ("dana", "workflow.deploy"),
        ("dana", "rollout.start"),
        ("otto", "operator.create"),
    ] {
        assert!(!has(&log, actor, action), "{actor} {action}: {log:#?}");
    }
    assert!(has(&log, "admin", "operator.revoke"), "{log:#?}");
}

/// The actor of the audit log is the credential's name even when the request claims another
/// in `X-Outpost-Actor`; an audit entry edited in the stopped hub's store (through the hub's
/// own store code) makes `audit verify` name that entry; `audit export` writes the chain as
/// JSON lines.
#[test]
fn the_audit_actor_is_the_credential_and_an_edited_entry_is_named() {
    let s = Scratch::new("operators-audit").unwrap();
    let mut hub = Hub::start(s.path(), "").unwrap();
    apply(
        &hub,
        s.path(),
        "demo.yaml",
        "name: demo\ntasks:\n  t:\n    command: [/bin/true]\n",
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(&format!("{}/v1/workflows/demo/pause", hub.http_url))
        .header("Authorization", &format!("Bearer {}", hub.api_token))
        .header("X-Outpost-Actor", "mallory")
        .send_json(serde_json::json!({}))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let log = audit(&hub);
    let pause = log
        .iter()
        .find(|e| e["action"] == "workflow.pause")
        .unwrap_or_else(|| panic!("no workflow.pause: {log:#?}"));
    assert_eq!(pause["actor"], "admin", "{log:#?}");
    assert!(!log.iter().any(|e| e["actor"] == "mallory"), "{log:#?}");
    let seq = pause["seq"].as_u64().unwrap();

    let (code, out, err) = run(&hub, &hub.api_token, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit log verified"), "{out}");
    let (code, out, err) = run(&hub, &hub.api_token, &["audit", "export"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), log.len());
    assert_eq!(lines[0]["prev_hash"], "0".repeat(64));
    for w in lines.windows(2) {
        assert_eq!(w[1]["prev_hash"], w[0]["hash"], "{w:?}");
        assert_eq!(w[1]["seq"].as_u64(), w[0]["seq"].as_u64().map(|s| s + 1));
    }

    let (code, out, _) = run(&hub, &hub.api_token, &["audit", "export", "--from", "2"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), lines.len() - 1, "{out}");
    let (code, out, _) = run(&hub, &hub.api_token, &["operator", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("NAME") && out.contains("admin"), "{out}");

    // Stop the hub, rewrite who paused, start it again.
    hub.kill9().unwrap();
    {
        let st = outpost_hub::store::Store::open(&hub.data_dir.join("hub.redb")).unwrap();
        assert!(
            st.tamper_audit_entry(seq, |e| e.actor = "nobody".into())
                .unwrap()
        );
    }
    hub.restart().unwrap();
    let (code, out, err) = run(&hub, &hub.api_token, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("BROKEN at entry {seq}:")),
        "verify names entry {seq}: {out}"
    );
    let v = hub.json(&["audit", "verify"]);
    assert!(v.is_err(), "verify fails while the chain is broken");
}
