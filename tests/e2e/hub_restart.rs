//! A hub killed (-9) and restarted on the same port: its agents reconnect within seconds, not
//! after the QUIC idle timeout (the restarted hub answers their next packet with a stateless reset
//! they accept, its reset key being derived from its TLS key). The agent's next packet is at most
//! one keep-alive interval (5 s) away, usually a probe much sooner; without the reset it would
//! wait out the 15 s idle timeout (about 20 s from the hub's restart, measured before the fix).

use std::time::{Duration, Instant};

use outpost_tests::{Hub, Scratch, enrolled_agent, wait_for};

use crate::hub::{agent_id_by_name, agent_show};

fn online(hub: &Hub, id: &str) -> bool {
    agent_show(hub, id)["online"] == true
}

#[test]
fn an_agent_reconnects_within_seconds_of_a_killed_hub_coming_back() {
    let s = Scratch::new("hub-reset").unwrap();
    let mut hub = Hub::start(s.path(), "").unwrap();
    // The production timeouts (offline_after 30 s, QUIC idle 15 s), not the tests' 3 s: without a
    // stateless reset the agent would hold its dead connection for the whole idle timeout.
    hub.kill9().unwrap();
    let cfg = std::fs::read_to_string(&hub.config).unwrap();
    let cfg = cfg.replace("offline_after = \"3s\"", "offline_after = \"30s\"");
    std::fs::write(&hub.config, cfg).unwrap();
    hub.restart().unwrap();

    let agent = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    wait_for(Duration::from_secs(30), "the agent online", || {
        online(&hub, &id).then_some(())
    })
    .unwrap();

    for round in 0..2 {
        // Kill it in the middle of a keep-alive interval, as a crash would.
        std::thread::sleep(Duration::from_millis(2500));
        hub.kill9().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        hub.restart().unwrap();
        let back = Instant::now();
        wait_for(Duration::from_secs(30), "the agent back online", || {
            online(&hub, &id).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
        let took = back.elapsed();
        eprintln!("round {round}: the agent reconnected {took:?} after the hub came back");
        // One keep-alive interval (5 s) and a margin for a loaded machine, against the 15 s idle
        // timeout.
        assert!(
            took < Duration::from_secs(8),
            "round {round}: the agent took {took:?} to reconnect (the idle timeout is 15 s)\n--- hub stderr ---\n{}\n--- agent stderr ---\n{}",
            hub.stderr_tail(),
            agent.stderr_tail()
        );
    }
}
