//! The trust model with the real binaries: release thresholds, the root ceremony (rotating the
//! director key), freshness (an agent cut off from the director says so and keeps its
//! schedule), and an impostor hub holding the hub CA (hence a valid TLS identity) but not the
//! director key. docs/security.md, "Attacks and the tests that refuse them", lists these.

use std::path::Path;
use std::time::Duration;

use outpost_common::proto::{AckBody, AgentMsg, HubMsg, Snapshot, SnapshotEntry};
use outpost_common::trust::{Director, SigningKey};
use outpost_tests::{Daemon, Hub, Scratch, enrolled_agent, stderr, stdout, wait_for};

use crate::hub::{FAST_HUB, agent_runs, agent_status, agent_version, apply, hub_runs, ticker};

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn wait_version(d: &Daemon, hub: &Hub, workflow: &str, v: u64) {
    wait_for(
        Duration::from_secs(40),
        &format!("{workflow} v{v} active"),
        || (agent_version(d, workflow) == v).then_some(()),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n--- hub ---\n{}",
            d.stderr_tail(),
            hub.stderr_tail()
        )
    });
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_version_runs_only_once_a_threshold_of_release_keys_signed_it() {
    let s = Scratch::new("trust-release").unwrap();
    let hub = Hub::start_offline_release(
        s.path(),
        &["--release-keys", "3", "--release-threshold", "2"],
        FAST_HUB,
    )
    .unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    apply(&hub, s.path(), "w.yaml", &ticker("w", 1, "v1", ""));
    let status = ok(hub.cli(&["release", "status", "w"]).unwrap());
    assert!(status.contains("0/2"), "{status}");

    // Signed offline: export the request, sign it with one release key on "another machine"
    // (no hub address or token is used), submit.
    let req = s.join("w-v1.release");
    ok(hub
        .cli(&["release", "export", "w", "--out", path(&req)])
        .unwrap());
    let sign = |key: &str, out: &Path| {
        let o = std::process::Command::new(outpost_tests::hub_bin())
            .args(["release", "sign", path(&req), "--key"])
            .arg(hub.offline_dir.join(key))
            .args(["--out", path(out)])
            .env_remove("OUTPOST_HUB")
            .env_remove("OUTPOST_TOKEN")
            .output()
            .unwrap();
        ok(o)
    };
    let sig1 = s.join("w-v1.sig1");
    let shown = sign("release-1.key", &sig1);
    assert!(shown.contains("signed w v1"), "{shown}");
    let one = ok(hub.cli(&["release", "submit", path(&sig1)]).unwrap());
    assert!(one.contains("1 of 2"), "{one}");
    // One stolen release key is below the threshold: nothing reaches the agent.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agent_version(&d, "w"), 0);

    // The hub's own (director) key is no release key: refused, nothing stored.
    let director_sig = s.join("w-v1.sig-director");
    let o = std::process::Command::new(outpost_tests::hub_bin())
        .args(["release", "sign", path(&req), "--key"])
        .arg(format!("{}.director.key", hub.data_dir.display()))
        .args(["--out", path(&director_sig)])
        .output()
        .unwrap();
    ok(o);
    let o = hub
        .cli(&["release", "submit", path(&director_sig)])
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not a release key"),
        "{}",
        stderr(&o)
    );
    // A second signature by the same key counts once.
    let again = ok(hub.cli(&["release", "submit", path(&sig1)]).unwrap());
    assert!(again.contains("1 of 2"), "{again}");

    // A second release key: released, and the agent runs it.
    let sig2 = s.join("w-v1.sig2");
    sign("release-3.key", &sig2);
    let two = ok(hub.cli(&["release", "submit", path(&sig2)]).unwrap());
    assert!(two.contains("released"), "{two}");
    wait_version(&d, &hub, "w", 1);
    let audit = ok(hub.cli(&["audit"]).unwrap());
    assert!(audit.contains("workflow.release.sign"), "{audit}");
}

#[test]
fn a_root_rotation_moves_the_director_to_a_new_key_for_old_and_new_agents() {
    let s = Scratch::new("trust-root").unwrap();
    let mut hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let old = enrolled_agent(&s.join("old"), &hub, hub.quic_addr, "name=old", "").unwrap();
    assert_eq!(
        apply(&hub, s.path(), "a.yaml", &ticker("a", 1, "v1", "")),
        1
    );
    wait_version(&old, &hub, "a", 1);

    // The ceremony: a new director key, root v2 naming both directors (signed by the root key,
    // offline), published; the hub restarted on the new key; root v3 without the old one.
    let new_key = s.join("director-2.key");
    ok(hub
        .cli(&["key", "generate", "--out", path(&new_key)])
        .unwrap());
    let cur = s.join("root-v1.cbor");
    let shown = ok(hub.cli(&["root", "show", "--out", path(&cur)]).unwrap());
    assert!(shown.contains("root metadata v1"), "{shown}");
    let v2 = s.join("root-v2.cbor");
    let pubkey = format!("director={}.pub", new_key.display());
    ok(hub
        .cli(&[
            "root",
            "next",
            "--current",
            path(&cur),
            "--out",
            path(&v2),
            "--add",
            &pubkey,
        ])
        .unwrap());
    let root_key = hub.offline_dir.join("root-1.key");
    // Unsigned, the hub refuses it.
    let o = hub.cli(&["root", "publish", path(&v2)]).unwrap();
    assert!(!o.status.success(), "{}", stdout(&o));
    ok(hub
        .cli(&["root", "sign", path(&v2), "--key", path(&root_key)])
        .unwrap());
    ok(hub.cli(&["root", "publish", path(&v2)]).unwrap());
    hub.kill9().unwrap();
    let director_file = format!("{}.director.key", hub.data_dir.display());
    std::fs::rename(&director_file, format!("{director_file}.old")).unwrap();
    std::fs::copy(&new_key, &director_file).unwrap();
    hub.restart().unwrap();
    let old_id = {
        let v = hub.json(&["root", "show"]).unwrap();
        assert_eq!(v["version"], 2);
        let ids = v["director"]["key_ids"].as_array().unwrap().clone();
        assert_eq!(ids.len(), 2);
        ids[0].as_str().unwrap().to_string()
    };
    let v3 = s.join("root-v3.cbor");
    let cur2 = s.join("root-v2-published.cbor");
    ok(hub.cli(&["root", "show", "--out", path(&cur2)]).unwrap());
    let remove = format!("director={old_id}");
    ok(hub
        .cli(&[
            "root",
            "next",
            "--current",
            path(&cur2),
            "--out",
            path(&v3),
            "--remove",
            &remove,
        ])
        .unwrap());
    ok(hub
        .cli(&["root", "sign", path(&v3), "--key", path(&root_key)])
        .unwrap());
    ok(hub.cli(&["root", "publish", path(&v3)]).unwrap());

    // Enrolled now: it starts from root v3. The old agent followed v2 then v3. Both get a
    // version assigned by the new director.
    let new = enrolled_agent(&s.join("new"), &hub, hub.quic_addr, "name=new", "").unwrap();
    wait_version(&new, &hub, "a", 1);
    assert_eq!(
        apply(&hub, s.path(), "a.yaml", &ticker("a", 1, "v2", "")),
        2
    );
    wait_version(&old, &hub, "a", 2);
    wait_version(&new, &hub, "a", 2);
    for d in [&old, &new] {
        let st = agent_status(d);
        assert_eq!(st["director"]["root_version"], 3, "{st}");
    }
}

#[test]
fn an_agent_cut_off_from_the_director_reports_itself_stale_and_keeps_its_schedule() {
    let s = Scratch::new("trust-stale").unwrap();
    let extra = format!("{FAST_HUB}director_ttl = \"2s\"\n");
    let mut hub = Hub::start(s.path(), &extra).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    apply(&hub, s.path(), "w.yaml", &ticker("w", 1, "v1", ""));
    wait_version(&d, &hub, "w", 1);
    // Connected: the hub re-signs the snapshot within its lifetime, so the view stays fresh.
    std::thread::sleep(Duration::from_secs(3));
    let st = agent_status(&d);
    assert_eq!(st["director"]["stale"], false, "{st}");
    assert!(
        st["director"]["clock_offset_ms"].as_i64().unwrap().abs() < 2000,
        "{st}"
    );
    // The hub has the agent's report too (`agent show`).
    let id = crate::hub::agent_id_by_name(&hub, "a");
    let shown = crate::hub::agent_show(&hub, &id);
    assert!(
        shown["clock_offset_ms"].as_i64().unwrap().abs() < 2000,
        "{shown}"
    );

    // The hub goes away (or someone holds its messages back): stale within the lifetime, and
    // the schedule runs on.
    hub.kill9().unwrap();
    let before = agent_runs(&d, "w").len();
    wait_for(
        Duration::from_secs(10),
        "the agent reports itself stale",
        || (agent_status(&d)["director"]["stale"] == true).then_some(()),
    )
    .unwrap();
    wait_for(Duration::from_secs(10), "runs go on while stale", || {
        (agent_runs(&d, "w").len() >= before + 3).then_some(())
    })
    .unwrap();
    // Back: fresh again.
    hub.restart().unwrap();
    wait_for(Duration::from_secs(20), "fresh again", || {
        (agent_status(&d)["director"]["stale"] == false).then_some(())
    })
    .unwrap();
}

/// An impostor hub: the hub's online CA key (the intermediate: a certificate for the hub name that
/// the agent's TLS accepts) but not the director key. It welcomes the agent with a forged acknowledgement of
/// every outbox entry and a forged snapshot. The agent refuses the session, deletes nothing,
/// and delivers everything once the real hub is back.
#[test]
fn an_impostor_hub_with_the_ca_but_not_the_director_key_can_neither_erase_nor_command() {
    let s = Scratch::new("trust-impostor").unwrap();
    let mut hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = crate::hub::agent_id_by_name(&hub, "a");
    apply(&hub, s.path(), "w.yaml", &ticker("w", 1, "v1", ""));
    wait_version(&d, &hub, "w", 1);
    hub.kill9().unwrap();
    // Cut off: runs pile up in the outbox.
    wait_for(Duration::from_secs(15), "an outbox backlog", || {
        (agent_status(&d)["outbox_pending"].as_u64()? >= 5).then_some(())
    })
    .unwrap();

    // The online intermediate CA, what a compromised hub host leaks (the root CA key is offline).
    let ca = outpost_net::pki::Ca::load(
        &hub.data_dir.join("intermediate.pem"),
        &hub.data_dir.join("intermediate.key"),
    )
    .unwrap();
    let (chain, key) = ca
        .issue_server_with_sans(
            "outpost-hub",
            &["127.0.0.1".to_string()],
            Duration::from_secs(86_400),
        )
        .unwrap();
    let forger = Director::new(SigningKey::generate().unwrap().0);
    let addr = hub.quic_addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let seen = rt.block_on(async move {
        let tls = outpost_net::tls::server_config_with(
            std::sync::Arc::new(outpost_net::tls::ServerCert::new(&chain, &key).unwrap()),
            &outpost_net::tls::ClientAuth {
                roots: vec![ca.root_der().to_vec()],
                intermediates: vec![ca.cert_der().to_vec()],
                grace: Duration::ZERO,
            },
        )
        .unwrap();
        let cfg =
            outpost_net::tls::quinn_server_config(tls, outpost_net::tls::Transport::default())
                .unwrap();
        let ep = outpost_net::endpoint::server_endpoint(addr, cfg).unwrap();
        let mut sessions = 0u32;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while sessions < 2 && tokio::time::Instant::now() < deadline {
            let Ok(Some(inc)) = tokio::time::timeout(Duration::from_secs(20), ep.accept()).await
            else {
                break;
            };
            let Ok(conn) = inc.await else { continue };
            let Ok((send, recv)) = conn.accept_bi().await else {
                continue;
            };
            let mut recv = outpost_net::FramedRecv::new(recv);
            let mut send = outpost_net::stream::FramedSend::new(send);
            let Ok(Some(AgentMsg::Hello {
                agent_id,
                last_seq,
                session,
                ..
            })) = recv.recv::<AgentMsg>().await
            else {
                continue;
            };
            sessions += 1;
            let now = chrono::Utc::now().timestamp_millis();
            let welcome = HubMsg::Welcome {
                ack: forger.sign_ack(&AckBody {
                    agent_id: agent_id.clone(),
                    session: session.clone(),
                    seq: last_seq,
                    hub_time_ms: now,
                }),
                roots: vec![],
                paused: vec!["w".into()],
                snapshot: forger.sign_snapshot(&Snapshot {
                    agent_id,
                    session,
                    issued_ms: now,
                    expires_ms: now + 60_000,
                    workflows: vec![SnapshotEntry {
                        workflow: "w".into(),
                        version: 9,
                        epoch: u64::MAX,
                        content_hash: String::new(),
                    }],
                }),
                replicas: None,
            };
            let _ = send.send(&welcome).await;
            // The agent closes the connection on the forged Welcome.
            let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
        }
        // Free the port for the real hub.
        ep.close(0u32.into(), b"impostor done");
        ep.wait_idle().await;
        sessions
    });
    drop(rt);
    assert!(seen >= 1, "the agent never reached the impostor");
    // Nothing was deleted, nothing was paused, the schedule went on.
    let st = agent_status(&d);
    assert!(st["outbox_pending"].as_u64().unwrap() >= 5, "{st}");
    assert!(
        d.stderr_tail().contains("acknowledgement"),
        "{}",
        d.stderr_tail()
    );
    let wf = st["workflows"].as_array().unwrap()[0].clone();
    assert_eq!(wf["paused"], false, "{st}");

    // The real hub back: every run the agent made while cut off arrives.
    let made: std::collections::BTreeSet<String> = agent_runs(&d, "w")
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    hub.restart().unwrap();
    // The agent retries with its backoff (at most 30 s apart after the failed sessions).
    wait_for(Duration::from_secs(75), "the backlog delivered", || {
        let at_hub: std::collections::BTreeSet<String> = hub_runs(&hub, &id, "w")
            .iter()
            .map(|r| r["run_id"].as_str().unwrap_or("").to_string())
            .collect();
        made.is_subset(&at_hub).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n--- hub ---\n{}",
            d.stderr_tail(),
            hub.stderr_tail()
        )
    });
}
