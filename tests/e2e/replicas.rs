//! Hub replicas, end to end: two real `outpost-hub` processes serving copies of one data
//! directory (the same CA, hub name, director key and agent records), both configured with
//! `replicas = [A, B]`. A real agent learns both addresses from A's Welcome (and a second agent
//! from its enrollment), and when A is killed (-9) it moves to B by itself: B shows it online
//! and its new runs arrive there, each once.
//!
//! The replicas share no store yet, so B is a copy of A taken after the agent enrolled (B must
//! know the agent to accept it); what the agent sent A after the copy is re-sent to B by the
//! ordinary resend path (B's acknowledgement is behind the agent's).

use std::path::Path;
use std::time::Duration;

use outpost_tests::{Hub, Scratch, agent, enrolled_agent, stderr, stdout, wait_for};

use crate::hub::{
    FAST_HUB, agent_id_by_name, agent_show, agent_status, apply, hub_runs, ids, now_ms,
    scheduled_ms, ticker,
};

/// Hub B in `dir`: a copy of the stopped hub A ([`Hub::replica`]). Not started.
pub(crate) fn replica_of(a: &Hub, dir: &Path) -> Hub {
    a.replica(dir).unwrap()
}

/// Put `replicas = [...]` at the top of a hub's configuration (a top-level key).
pub(crate) fn configure_replicas(hub: &Hub, replicas: &[String]) {
    let list: Vec<String> = replicas.iter().map(|r| format!("\"{r}\"")).collect();
    let text = std::fs::read_to_string(&hub.config).unwrap();
    std::fs::write(
        &hub.config,
        format!("replicas = [{}]\n{text}", list.join(", ")),
    )
    .unwrap();
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_agent_learns_the_replicas_and_moves_to_another_when_one_is_killed() {
    let s = Scratch::new("replicas").unwrap();
    let a_dir = s.join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let mut a = Hub::start(&a_dir, FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("edge"), &a, a.quic_addr, "name=edge", "").unwrap();
    let id = agent_id_by_name(&a, "edge");
    apply(&a, s.path(), "tick.yaml", &ticker("tick", 1, "v1", ""));
    wait_for(Duration::from_secs(60), "the agent's runs at A", || {
        (!hub_runs(&a, &id, "tick").is_empty()).then_some(())
    })
    .unwrap();
    // Without replicas configured the agent knows only where it enrolled.
    let st = agent_status(&d);
    assert_eq!(
        st["hub_link"]["hub"],
        a.quic_addr.to_string(),
        "{}",
        st["hub_link"]
    );
    assert!(
        strings(&st["hub_link"]["addresses"]).len() <= 1,
        "{}",
        st["hub_link"]
    );

    // B: a copy of A (the agent's record with it), both configured with both addresses.
    a.kill9().unwrap();
    let b_dir = s.join("b");
    let mut b = replica_of(&a, &b_dir);
    let replicas = vec![a.quic_addr.to_string(), b.quic_addr.to_string()];
    configure_replicas(&a, &replicas);
    configure_replicas(&b, &replicas);
    a.restart().unwrap();
    b.restart().unwrap();

    // A's Welcome brings the list; the agent keeps it (and stays with A).
    let st = wait_for(
        Duration::from_secs(60),
        "the agent to learn both replicas",
        || {
            let st = agent_status(&d);
            (st["hub_link"]["connected"] == true
                && strings(&st["hub_link"]["addresses"]) == replicas)
                .then_some(st)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", a.stderr_tail()));
    assert_eq!(st["hub_link"]["hub"], replicas[0], "{}", st["hub_link"]);
    let line = stdout(&d.ctl("status", &[]).unwrap());
    assert!(
        line.contains(&format!("hub addresses: {}", replicas.join(", "))),
        "{line}"
    );

    // An agent enrolling now learns them from its enrollment.
    let token = a.token("").unwrap();
    let state = s.join("second-state");
    let hub_addr = a.quic_addr.to_string();
    let out = agent(&[
        "enroll",
        "--state-dir",
        state.to_str().unwrap(),
        "--hub",
        &hub_addr,
        "--token",
        &token,
    ])
    .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("hub replicas: {}", replicas.join(", "))),
        "{}",
        stdout(&out)
    );

    // A dies: the agent moves to B by itself.
    assert_ne!(agent_show(&b, &id)["online"], true);
    a.kill9().unwrap();
    let killed_ms = now_ms();
    wait_for(Duration::from_secs(60), "the agent online at B", || {
        (agent_show(&b, &id)["online"] == true).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", b.stderr_tail(), d.stderr_tail()));
    eprintln!(
        "the agent was online at B {} ms after A was killed (load average {})",
        now_ms() - killed_ms,
        outpost_tests::loadavg()
    );
    let st = agent_status(&d);
    assert_eq!(st["hub_link"]["hub"], replicas[1], "{}", st["hub_link"]);
    // Its runs fired after A died arrive at B, each once.
    let runs = wait_for(Duration::from_secs(60), "runs after the kill at B", || {
        let runs = hub_runs(&b, &id, "tick");
        scheduled_ms(&runs)
            .iter()
            .any(|t| *t > killed_ms)
            .then_some(runs)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", b.stderr_tail()));
    assert_eq!(ids(&runs).len(), runs.len(), "a run twice at B");
    // B's Welcome lists the same replicas: the agent's list is unchanged.
    assert_eq!(strings(&st["hub_link"]["addresses"]), replicas);
}
