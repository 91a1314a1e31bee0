//! The certificate lifecycle with the real binaries: `serve` runs without the root CA key; an
//! agent renews its short-lived certificate over its session and uses the new one on its next
//! connection; an agent offline past expiry renews within the grace and is refused beyond it;
//! a revoked agent cannot renew. (An agent certificate of a foreign CA is refused:
//! `hub_faults::an_agent_certificate_from_another_ca_is_refused`.)

use std::path::Path;
use std::time::Duration;

use outpost_tests::{Daemon, Hub, Scratch, agent, stderr, stdout, wait_for};

use crate::hub::{agent_id_by_name, agent_show};

/// Enroll an agent in `dir` with `hub` without starting it (so it cannot renew); start it later
/// with `Daemon::start(dir, "")`.
fn enroll_only(dir: &Path, hub: &Hub, name: &str) -> String {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nworkflows_dir = \"{}\"\nrescan_interval = \"200ms\"\n[hub]\naddress = \"{}\"\n",
            dir.join("state").display(),
            dir.join("workflows").display(),
            hub.quic_addr
        ),
    )
    .unwrap();
    let labels = format!("name={name}");
    let token = hub.token(&labels).unwrap();
    let addr = hub.quic_addr.to_string();
    let cfg = config.display().to_string();
    let out = agent(&[
        "enroll", "--config", &cfg, "--hub", &addr, "--token", &token, "--labels", &labels,
    ])
    .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    agent_id_by_name(hub, name)
}

fn fingerprint(hub: &Hub, id: &str) -> String {
    agent_show(hub, id)["cert_fingerprint"]
        .as_str()
        .unwrap()
        .to_string()
}

fn online(hub: &Hub, id: &str) -> bool {
    agent_show(hub, id)["online"] == true
}

#[test]
fn serve_runs_without_the_root_key_and_agents_renew_over_their_session() {
    let s = Scratch::new("certrenew").unwrap();
    // Grace 0: after the renewal, only the new certificate can open a session once the old
    // one has expired.
    let mut hub = Hub::start(
        s.path(),
        "agent_cert_lifetime = \"30s\"\nagent_cert_grace = \"0s\"\n",
    )
    .unwrap();
    // The root CA key lives in the offline directory: take it away and restart.
    let offline = s.join("hub.offline");
    assert!(offline.join("root-ca.key").exists());
    assert!(!hub.data_dir.join("ca.key").exists());
    std::fs::remove_dir_all(&offline).unwrap();
    hub.kill9().unwrap();
    hub.restart().unwrap();

    let dir = s.join("a");
    let id = enroll_only(&dir, &hub, "a");
    let first = fingerprint(&hub, &id);
    let expires = agent_show(&hub, &id)["cert_expires"].clone();
    assert!(expires.is_string(), "{expires}");
    let mut d = Daemon::start(&dir, "").unwrap();
    wait_for(Duration::from_secs(20), "the agent online", || {
        online(&hub, &id).then_some(())
    })
    .unwrap();
    // Due at two thirds of 30 s: renewed over the live session.
    let renewed = wait_for(Duration::from_secs(40), "a renewed certificate", || {
        let f = fingerprint(&hub, &id);
        (f != first).then_some(f)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", d.stderr_tail(), hub.stderr_tail()));
    assert_ne!(agent_show(&hub, &id)["cert_expires"], expires);
    // The old certificate has expired (30 s after its issue): a restarted agent connects with
    // the new one (the old one would be refused with no grace).
    std::thread::sleep(Duration::from_secs(12));
    d.kill9().unwrap();
    d.restart().unwrap();
    wait_for(Duration::from_secs(20), "the agent online again", || {
        online(&hub, &id).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", d.stderr_tail(), hub.stderr_tail()));
    let log = d.stderr_tail();
    assert!(
        log.contains("stored the renewed agent certificate"),
        "{log}"
    );
    assert!(
        fingerprint(&hub, &id) == renewed || fingerprint(&hub, &id) != first,
        "the agent went back to its first certificate"
    );
    let audit = hub.json(&["audit", "--limit", "1000"]).unwrap().to_string();
    assert!(audit.contains("agent.cert_renew"), "{audit}");
}

#[test]
fn an_agent_offline_past_expiry_renews_within_the_grace_and_is_refused_beyond() {
    let s = Scratch::new("certgrace").unwrap();
    // `init --offline-dir` as docs/operations.md gives it.
    let keys = s.join("keys");
    let hub = Hub::start_init(
        s.path(),
        &["--offline-dir", keys.to_str().unwrap()],
        "agent_cert_lifetime = \"10s\"\nagent_cert_grace = \"15s\"\n",
    )
    .unwrap();
    assert!(keys.join("root-ca.key").exists());
    assert!(!s.join("hub.offline").exists());
    let (a_dir, b_dir, c_dir) = (s.join("a"), s.join("b"), s.join("c"));
    let a = enroll_only(&a_dir, &hub, "a");
    let b = enroll_only(&b_dir, &hub, "b");
    let c = enroll_only(&c_dir, &hub, "c");
    let (fa, fb, fc) = (
        fingerprint(&hub, &a),
        fingerprint(&hub, &b),
        fingerprint(&hub, &c),
    );
    // C is revoked while offline.
    let out = hub.cli(&["agent", "revoke", &c]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // All three were offline past their certificates' expiry (10 s), within the grace (15 s).
    std::thread::sleep(Duration::from_secs(13));
    let da = Daemon::start(&a_dir, "").unwrap();
    let dc = Daemon::start(&c_dir, "").unwrap();
    // A renews in a renew-only session, then comes back with the new certificate.
    wait_for(Duration::from_secs(20), "A renewed and online", || {
        (fingerprint(&hub, &a) != fa && online(&hub, &a)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", da.stderr_tail(), hub.stderr_tail()));
    let log = da.stderr_tail();
    assert!(log.contains("has expired"), "{log}");
    // C, revoked, cannot renew.
    wait_for(Duration::from_secs(10), "C refused", || {
        dc.stderr_tail().contains("revoked").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", dc.stderr_tail()));
    assert_eq!(fingerprint(&hub, &c), fc);
    assert!(!online(&hub, &c));
    // B stays offline beyond the grace (10 s + 15 s after its issue): refused at the handshake.
    std::thread::sleep(Duration::from_secs(14));
    let db = Daemon::start(&b_dir, "").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(fingerprint(&hub, &b), fb, "{}", db.stderr_tail());
    assert!(!online(&hub, &b));
    let log = db.stderr_tail();
    assert!(
        !log.contains("stored the renewed agent certificate"),
        "{log}"
    );
    // Every agent kept running locally (autonomy): its control socket answers.
    for d in [&da, &db, &dc] {
        let out = d.ctl("status", &[]).unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

/// `outpost-hub ca ...` with the hub's config.
fn ca(hub: &Hub, args: &[&str]) -> serde_json::Value {
    let cfg = hub.config.display().to_string();
    let mut a = vec!["ca"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--config", &cfg]);
    hub.json(&a).unwrap()
}

fn pinned_roots(hub: &Hub, id: &str) -> Vec<String> {
    agent_show(hub, id)["pinned_roots"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_root_ca_rolls_over_with_agents_pinning_the_new_root_first() {
    let s = Scratch::new("certroot").unwrap();
    let mut hub = Hub::start(s.path(), "agent_cert_lifetime = \"24s\"\n").unwrap();
    let offline = s.join("hub.offline").display().to_string();
    let dir = s.join("a");
    let id = enroll_only(&dir, &hub, "a");
    let d = Daemon::start(&dir, "").unwrap();
    wait_for(Duration::from_secs(20), "the agent online", || {
        online(&hub, &id).then_some(())
    })
    .unwrap();
    let old_token = hub.token("").unwrap();

    // A new root: the hub sends it with the old root's proof; the agent pins both.
    let rot = ca(&hub, &["rotate", "--offline-dir", &offline]);
    let (old, new) = (
        rot["old_sha256"].as_str().unwrap().to_string(),
        rot["new_sha256"].as_str().unwrap().to_string(),
    );
    assert!(old_token.contains(&old), "{old_token}");
    hub.kill9().unwrap();
    hub.restart().unwrap();
    wait_for(
        Duration::from_secs(20),
        "the agent pinning both roots",
        || {
            let p = pinned_roots(&hub, &id);
            (p.contains(&old) && p.contains(&new)).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", d.stderr_tail(), hub.stderr_tail()));
    // `ca status`: both roots, each pinned by the one agent; the old one still issuing.
    let st = hub.json(&["ca", "status"]).unwrap();
    let roots = st["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 2, "{st}");
    assert!(roots.iter().all(|r| r["agents_pinning"] == 1), "{st}");
    assert!(
        roots
            .iter()
            .any(|r| r["sha256"] == old.as_str() && r["issuing"] == true),
        "{st}"
    );
    // The old root cannot be retired while it signs the intermediate.
    let cfg = hub.config.display().to_string();
    let out = hub
        .cli(&["ca", "retire", "--sha256", &old, "--config", &cfg])
        .unwrap();
    assert!(!out.status.success());

    // Switch: an intermediate of the new root; the hub's chain and new tokens use the new root.
    ca(&hub, &["rotate-intermediate", "--offline-dir", &offline]);
    hub.kill9().unwrap();
    hub.restart().unwrap();
    let token = hub.token("").unwrap();
    assert!(token.contains(&new), "{token}");
    let before = fingerprint(&hub, &id);
    // The agent reconnects (it pins the new root) and renews from the new intermediate.
    wait_for(
        Duration::from_secs(40),
        "a certificate from the new intermediate",
        || (online(&hub, &id) && fingerprint(&hub, &id) != before).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", d.stderr_tail(), hub.stderr_tail()));

    // Retire the old root: the agent, now under the new root only, reconnects after a restart.
    ca(&hub, &["retire", "--sha256", &old]);
    hub.kill9().unwrap();
    hub.restart().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    wait_for(
        Duration::from_secs(20),
        "the agent online under the new root",
        || online(&hub, &id).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", d.stderr_tail(), hub.stderr_tail()));
    // An agent enrolling now pins the new root.
    let dir_b = s.join("b");
    let b = enroll_only(&dir_b, &hub, "b");
    assert_eq!(pinned_roots(&hub, &b), vec![new.clone()]);
    let db = Daemon::start(&dir_b, "").unwrap();
    wait_for(Duration::from_secs(20), "B online", || {
        online(&hub, &b).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", db.stderr_tail()));
}

/// libfaketime (Debian `faketime`, which .ci/run installs): its absence fails the test.
fn faked(offset: &str) -> Vec<(String, String)> {
    let lib = std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime is missing: apt-get install faketime");
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME".into(), offset.into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
    ]
}

/// Start the agent enrolled in `dir` with `env` (its config is there already).
fn start_with(dir: &Path, env: Vec<(String, String)>) -> Daemon {
    let state_dir = dir.join("state");
    let mut d = Daemon {
        child: None,
        config: dir.join("agent.toml"),
        socket: state_dir.join("agent.sock"),
        state_dir,
        stderr_path: dir.join("agent.stderr"),
        rust_log: None,
        env,
    };
    d.restart().unwrap();
    d
}

#[test]
fn with_the_clock_moved_default_lifetimes_renew_within_the_grace_and_refuse_beyond() {
    let s = Scratch::new("certclock").unwrap();
    // The defaults: agent certificates of 90 days, a grace of 30, the hub's own of 90.
    let mut hub = Hub::start(s.path(), "").unwrap();
    let (a_dir, b_dir) = (s.join("a"), s.join("b"));
    let a = enroll_only(&a_dir, &hub, "a");
    let b = enroll_only(&b_dir, &hub, "b");
    let (fa, fb) = (fingerprint(&hub, &a), fingerprint(&hub, &b));
    let hub_cert = std::fs::read(hub.data_dir.join("hub.pem")).unwrap();

    // 100 days on: both agent certificates expired 10 days ago, within the grace; the hub's
    // own certificate expired too, and the hub renews it as it starts.
    hub.kill9().unwrap();
    hub.env = faked("+100d");
    hub.restart().unwrap();
    assert_ne!(
        std::fs::read(hub.data_dir.join("hub.pem")).unwrap(),
        hub_cert
    );
    let da = start_with(&a_dir, faked("+100d"));
    wait_for(Duration::from_secs(30), "A renewed and online", || {
        (fingerprint(&hub, &a) != fa && online(&hub, &a)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", da.stderr_tail(), hub.stderr_tail()));

    // 125 days on: B, offline all along, is beyond the grace (90 + 30 days): refused. A, renewed
    // at day 100, is fine.
    hub.kill9().unwrap();
    hub.env = faked("+125d");
    hub.restart().unwrap();
    let db = start_with(&b_dir, faked("+125d"));
    wait_for(Duration::from_secs(30), "A online at day 125", || {
        online(&hub, &a).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", da.stderr_tail(), hub.stderr_tail()));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(fingerprint(&hub, &b), fb);
    assert!(!online(&hub, &b), "{}", db.stderr_tail());
    // The hub warns about B's certificate (logs and agent show), not about A's.
    let show = agent_show(&hub, &b);
    assert!(show["cert_warning"].is_string(), "{show}");
    assert!(agent_show(&hub, &a)["cert_warning"].is_null());
    let log = hub.stderr_tail();
    assert!(
        log.contains("certificate expiry") && log.contains(&b),
        "{log}"
    );
    let st = hub.json(&["ca", "status"]).unwrap();
    let warnings = st["warnings"].to_string();
    assert!(warnings.contains(&b) && !warnings.contains(&a), "{st}");
    // B keeps running locally.
    let out = db.ctl("status", &[]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_hub_renews_its_own_certificate_while_serving() {
    let s = Scratch::new("certserver").unwrap();
    let hub = Hub::start(s.path(), "server_cert_lifetime = \"9s\"\n").unwrap();
    let pid = hub.child.as_ref().unwrap().id();
    // init made a certificate of the default lifetime: renewed at start to 9 s; then again at
    // two thirds of that, by the running hub.
    let first = std::fs::read(hub.data_dir.join("hub.pem")).unwrap();
    wait_for(Duration::from_secs(20), "a renewed hub certificate", || {
        (std::fs::read(hub.data_dir.join("hub.pem")).unwrap() != first).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    // Past the first certificate's expiry, new handshakes get the new one: enroll and connect.
    std::thread::sleep(Duration::from_secs(10));
    let dir = s.join("a");
    let id = enroll_only(&dir, &hub, "a");
    let d = Daemon::start(&dir, "").unwrap();
    wait_for(Duration::from_secs(20), "the agent online", || {
        online(&hub, &id).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", d.stderr_tail(), hub.stderr_tail()));
    assert_eq!(
        hub.child.as_ref().unwrap().id(),
        pid,
        "the hub was not restarted"
    );
    assert!(
        hub.stderr_tail()
            .contains("renewed the hub's server certificate")
    );
}
