//! The real binary: `init`, `serve`, and the ops CLI against it over loopback.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");

struct Served {
    child: Child,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hub(args: &[&str], config: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("OUTPOST_HUB_URL")
        .env_remove("OUTPOST_HUB_TOKEN")
        .output()
        .unwrap()
}

fn start() -> Served {
    start_on("127.0.0.1")
}

fn start_on(ip: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let out = Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = data.join("hub.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    // Ports are probed then released, so a parallel test may take one first: retry on a fresh
    // port when this hub exits (it could not bind) or another process answers.
    for _ in 0..5 {
        let port = free_port();
        let quic = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = original
            .replace("127.0.0.1:7070", &format!("{ip}:{port}"))
            .replace("0.0.0.0:7443", &format!("127.0.0.1:{quic}"));
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut up = false;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
                up = child.try_wait().unwrap().is_none();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if up {
            return Served {
                child,
                config,
                _dir: dir,
            };
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("hub did not start");
}

/// `release approve WORKFLOW` with the release key `init` left in the offline directory.
fn release(s: &Served, workflow: &str) -> String {
    let data = s.config.parent().unwrap();
    let key = outpost_hub::init::default_offline_dir(data).join("release-1.key");
    ok(&hub(
        &[
            "release",
            "approve",
            workflow,
            "--key",
            key.to_str().unwrap(),
        ],
        &s.config,
    ))
}

const WF: &str =
    "name: demo\nschedule: \"*/10 * * * * *\"\ntasks:\n  hello:\n    command: [\"echo\", \"hi\"]\n";

#[test]
fn init_serve_apply_list_token() {
    let s = start();
    let dir = s.config.parent().unwrap().to_path_buf();
    let wf = dir.join("demo.yaml");
    std::fs::write(&wf, WF).unwrap();

    let out = hub(
        &["workflow", "apply", "-f", wf.to_str().unwrap()],
        &s.config,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("demo: version 1") && text.contains("waiting for release signatures"),
        "{text}"
    );
    // Not deployable (not listed) until a release key signed it.
    let list = ok(&hub(&["workflow", "list", "--output", "json"], &s.config));
    assert_eq!(list.trim(), "[]");
    let pending = ok(&hub(&["release", "status"], &s.config));
    assert!(
        pending.contains("demo") && pending.contains("0/1"),
        "{pending}"
    );
    let released = release(&s, "demo");
    assert!(released.contains("demo v1: released"), "{released}");
    let out = hub(
        &["workflow", "apply", "-f", wf.to_str().unwrap()],
        &s.config,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("demo: unchanged (version 1)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // An invalid file: diagnostics on stderr as file:line:column, exit 65, nothing applied.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: other\nschedule: \"*/10 * * * * *\"\ntasks:\n  a:\n    retries: -1\n",
    )
    .unwrap();
    let out = hub(
        &["workflow", "apply", "-f", bad.to_str().unwrap()],
        &s.config,
    );
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("{}:", bad.display());
    assert!(
        err.lines().any(|l| l.starts_with(&prefix)
            && l.split(':')
                .nth(1)
                .is_some_and(|n| n.parse::<u32>().is_ok())),
        "{err}"
    );

    let out = hub(&["workflow", "list", "--output", "json"], &s.config);
    assert_eq!(out.status.code(), Some(0));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["name"], "demo");
    assert_eq!(list[0]["version"], 1);

    let out = hub(&["workflow", "list"], &s.config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("demo"));

    let out = hub(
        &[
            "token",
            "create",
            "--labels",
            "site=a,role=edge",
            "--ttl",
            "30m",
        ],
        &s.config,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let parts: Vec<&str> = token.split('.').collect();
    assert!(parts.len() >= 5, "{token}");
    assert_eq!(parts[0], "opt2");
    assert_eq!(parts[3].len(), 64);

    let out = hub(&["token", "create", "--output", "json"], &s.config);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["token"].as_str().unwrap().starts_with("opt2."));

    // A missing workflow is not found (3); a wrong token is a setup problem (2).
    let out = hub(&["workflow", "show", "nope"], &s.config);
    assert_eq!(out.status.code(), Some(3));
    let out = hub(&["agent", "list", "--token", "wrong"], &s.config);
    assert_eq!(out.status.code(), Some(2));
    let out = hub(&["agent", "list", "--output", "json"], &s.config);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn serve_fails_closed_naming_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    assert!(
        Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(&data)
            .status()
            .unwrap()
            .success()
    );
    // init refuses to overwrite.
    let again = Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    std::fs::remove_file(data.join("hub.key")).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(data.join("hub.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hub.key"), "{err}");
}

#[test]
fn non_loopback_api_speaks_only_https_with_the_hub_certificate() {
    let s = start_on("0.0.0.0");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let port: u16 = text
        .lines()
        .find(|l| l.starts_with("http_listen"))
        .and_then(|l| l.rsplit(':').next())
        .map(|p| p.trim_end_matches('"').parse().unwrap())
        .unwrap();
    // The CLI derives https://127.0.0.1:PORT and the hub CA from the config.
    let out = hub(&["workflow", "list", "--output", "json"], &s.config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    // No plaintext on that port.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let plain = agent
        .get(&format!("http://127.0.0.1:{port}/v1/health"))
        .call();
    assert!(plain.is_err() || plain.unwrap().status().as_u16() >= 400);
    // Another CA is not trusted.
    let other = tempfile::tempdir().unwrap();
    let other_dir = other.path().join("h2");
    assert!(
        Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(&other_dir)
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = hub(
        &[
            "workflow",
            "list",
            "--ca",
            other_dir.join("ca.pem").to_str().unwrap(),
        ],
        &s.config,
    );
    // The hub cannot be reached over TLS with another CA (5).
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pools_deploy_pin_rollout_refusals_and_audit() {
    let s = start();
    let dir = s.config.parent().unwrap().to_path_buf();
    let wf = dir.join("demo.yaml");
    std::fs::write(&wf, WF).unwrap();
    ok(&hub(
        &["workflow", "apply", "-f", wf.to_str().unwrap()],
        &s.config,
    ));
    release(&s, "demo");
    let text = ok(&hub(
        &[
            "pool",
            "create",
            "line-3",
            "--selector",
            "site=shanghai,line=3",
        ],
        &s.config,
    ));
    assert!(text.contains("pool line-3 created"), "{text}");
    // The reserved prefix and a duplicate are refused (exit 1, with why).
    let out = hub(&["pool", "create", "wf:x"], &s.config);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));
    let out = hub(&["pool", "create", "line-3"], &s.config);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let list: serde_json::Value =
        serde_json::from_str(&ok(&hub(&["pool", "list", "--output", "json"], &s.config))).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["line-3", "wf:demo"], "the default pool of demo");
    let show: serde_json::Value = serde_json::from_str(&ok(&hub(
        &["pool", "show", "line-3", "--output", "json"],
        &s.config,
    )))
    .unwrap();
    assert_eq!(show["selector"]["line"], "3");
    assert_eq!(show["agents"], serde_json::json!([]));

    ok(&hub(
        &["workflow", "deploy", "demo", "--pool", "line-3"],
        &s.config,
    ));
    let out = Command::new(BIN)
        .args([
            "workflow",
            "pin",
            "demo",
            "--pool",
            "line-3",
            "--version",
            "1",
            "--config",
        ])
        .arg(&s.config)
        .env("OUTPOST_ACTOR", "bob")
        .output()
        .unwrap();
    ok(&out);
    let out = hub(
        &[
            "rollout",
            "start",
            "demo",
            "--pool",
            "line-3",
            "--steps",
            "1,50%,100%",
        ],
        &s.config,
    );
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pinned to version 1") && err.contains("unpin"),
        "{err}"
    );
    let out = hub(
        &["workflow", "deploy", "demo", "--pool", "line-3"],
        &s.config,
    );
    assert_eq!(out.status.code(), Some(4));
    ok(&hub(
        &["workflow", "unpin", "demo", "--pool", "line-3"],
        &s.config,
    ));
    // Already on that version: refused.
    let out = hub(&["rollout", "start", "demo", "--pool", "line-3"], &s.config);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already on version 1"));
    std::fs::write(&wf, WF.replace("hi", "v2")).unwrap();
    ok(&hub(
        &["workflow", "apply", "-f", wf.to_str().unwrap()],
        &s.config,
    ));
    release(&s, "demo");
    // No member yet: refused, nothing started.
    let out = hub(&["rollout", "start", "demo", "--pool", "line-3"], &s.config);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no member"));
    let out = hub(
        &[
            "rollout", "start", "demo", "--pool", "line-3", "--steps", "0",
        ],
        &s.config,
    );
    assert_eq!(out.status.code(), Some(1));
    let out = hub(
        &["rollout", "status", "demo", "--pool", "line-3"],
        &s.config,
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ok(&hub(
            &["rollout", "list", "--output", "json"],
            &s.config
        )))
        .unwrap(),
        serde_json::json!([])
    );

    let audit: serde_json::Value = serde_json::from_str(&ok(&hub(
        &["audit", "--limit", "50", "--output", "json"],
        &s.config,
    )))
    .unwrap();
    let entries = audit.as_array().unwrap();
    let has = |actor: &str, action: &str| {
        entries
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action)
    };
    // The actor is the credential's name (init's first admin): OUTPOST_ACTOR names nobody.
    assert!(has("admin", "pool.create"), "{audit:#}");
    assert!(has("admin", "workflow.pin"), "{audit:#}");
    assert!(!has("bob", "workflow.pin"), "{audit:#}");
    assert!(entries.iter().any(|e| e["action"] == "workflow.unpin"));
    let text = ok(&hub(&["audit"], &s.config));
    assert!(text.starts_with("AT"), "{text}");
    ok(&hub(&["pool", "delete", "line-3"], &s.config));
    let out = hub(&["pool", "show", "line-3"], &s.config);
    assert_eq!(out.status.code(), Some(3));
}

/// docs/operations.md, "Alerts": silences and the history through the real binary.
#[test]
fn alert_silence_silences_unsilence_and_list() {
    let s = start();
    let out = ok(&hub(
        &[
            "alert",
            "silence",
            "--workflow",
            "plc-*",
            "--for",
            "2h",
            "--comment",
            "PLC firmware update",
        ],
        &s.config,
    ));
    assert!(out.contains("silence s-1 (workflow=plc-*)"), "{out}");
    let out = ok(&hub(&["alert", "silences"], &s.config));
    assert!(
        out.contains("s-1") && out.contains("PLC firmware update"),
        "{out}"
    );
    ok(&hub(&["alert", "unsilence", "s-1"], &s.config));
    let out = ok(&hub(&["alert", "silences"], &s.config));
    assert!(!out.contains("s-1"), "{out}");
    let gone = hub(&["alert", "unsilence", "s-1"], &s.config);
    assert_ne!(gone.status.code(), Some(0));
    // A silence needs a matcher.
    let bare = hub(&["alert", "silence", "--for", "2h"], &s.config);
    assert_ne!(bare.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("at least one of"));
    let out = ok(&hub(&["alert", "list"], &s.config));
    assert!(out.contains("RULE"), "{out}");
    ok(&hub(
        &[
            "alert",
            "list",
            "--state",
            "firing",
            "--rule",
            "line-a-failures",
        ],
        &s.config,
    ));
    let bad = hub(&["alert", "list", "--state", "sometimes"], &s.config);
    assert_ne!(bad.status.code(), Some(0));
    let audit = ok(&hub(&["audit"], &s.config));
    assert!(
        audit.contains("alert.silence") && audit.contains("alert.unsilence"),
        "{audit}"
    );
}

#[test]
fn a_bad_rule_stops_the_hub_naming_the_rule_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    assert!(
        Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(&data)
            .status()
            .unwrap()
            .success()
    );
    let config = data.join("hub.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[rule]]\nname = \"x\"\nevent = \"run_failed\"\nwhen = \"sometimes\"\n");
    std::fs::write(&config, &text).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[[rule]] \"x\": when = \"sometimes\""),
        "{err}"
    );
    // A rule naming a channel no [[channel]] defines.
    let text = text.replace("when = \"sometimes\"\n", "channels = [\"nowhere\"]\n");
    std::fs::write(&config, &text).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"nowhere\""), "{err}");
}
