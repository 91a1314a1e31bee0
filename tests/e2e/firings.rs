//! Missed versus unknown, with real processes: a hub, an agent behind a UDP relay, a partition
//! and a kill -9. A cut-off agent's firings are unknown at the hub, never missed, and clear when
//! its backlog arrives; firings the agent did not make while it was down are missed once it
//! reports them.

use std::time::Duration;

use outpost_tests::relay::{Mode, Relay};
use outpost_tests::{Hub, Scratch, enrolled_agent, wait_for};

use crate::hub::{FAST_HUB, agent_id_by_name, agent_show, apply, now_ms, ticker};

/// A grace period above the hub's 3 s idle timeout: by the time a firing is judged, a cut-off
/// agent is known to be cut off.
const GRACE: &str = "firing_grace = \"6s\"\n";

/// `run missed` for the agent as (scheduled ms, status).
fn findings(hub: &Hub, agent: &str) -> Vec<(i64, String)> {
    let v = hub
        .json(&["run", "missed", "--agent", agent, "--workflow", "tick"])
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let t = chrono::DateTime::parse_from_rfc3339(f["scheduled"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            (t, f["status"].as_str().unwrap().to_string())
        })
        .collect()
}

fn wait_online(hub: &Hub, id: &str, online: bool) {
    wait_for(Duration::from_secs(20), "agent link state", || {
        (agent_show(hub, id)["online"] == online).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
}

#[test]
fn a_cut_off_agent_is_unknown_until_it_reports_and_what_it_did_not_run_is_missed() {
    let s = Scratch::new("firings").unwrap();
    let hub = Hub::start(s.path(), &format!("{FAST_HUB}{GRACE}")).unwrap();
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), hub.quic_addr).unwrap();
    let mut d = enrolled_agent(&s.join("a"), &hub, relay.addr(), "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    apply(&hub, s.path(), "tick.yaml", &ticker("tick", 1, "v1", ""));
    // Connected and running: a few firings are judged, none is missing.
    wait_for(
        Duration::from_secs(30),
        "the hub to watch the agent",
        || (agent_show(&hub, &id)["online"] == true).then_some(()),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        findings(&hub, &id),
        vec![],
        "a connected agent that runs everything"
    );

    // Partition: the agent goes on firing every second on its own.
    let cut = now_ms();
    relay.set_mode(Mode::Blackhole);
    wait_online(&hub, &id, false);
    let unknown = wait_for(Duration::from_secs(30), "unknown firings", || {
        let f = findings(&hub, &id);
        (f.len() >= 3).then_some(f)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    assert!(
        unknown
            .iter()
            .all(|(t, s)| s == "unknown" && *t >= cut - 4_000),
        "a cut-off agent's firings are unknown, not missed: {unknown:?}"
    );
    relay.set_mode(Mode::Pass);
    wait_online(&hub, &id, true);
    // Its backlog arrives: every unknown firing had run, so nothing is left, and nothing was
    // ever judged missed.
    wait_for(Duration::from_secs(40), "unknown firings to clear", || {
        findings(&hub, &id).is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", findings(&hub, &id)));

    // Down for ~8 s (kill -9): it fires nothing; restarted with `catchup: none` it records the
    // firings it did not make, and the hub lists them as missed.
    d.kill9().unwrap();
    let down = now_ms();
    std::thread::sleep(Duration::from_secs(8));
    let up = now_ms();
    d.restart().unwrap();
    wait_online(&hub, &id, true);
    // Every firing of the down window has come due (grace 6 s) before its judgement is read.
    let settled = up + 6_000 + 3_000 - now_ms();
    if settled > 0 {
        std::thread::sleep(Duration::from_millis(settled as u64));
    }
    let missed = wait_for(Duration::from_secs(40), "missed firings", || {
        let f = findings(&hub, &id);
        (f.len() >= 5 && f.iter().all(|(_, s)| s == "missed")).then_some(f)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", findings(&hub, &id)));
    assert!(missed.len() >= 5, "about 8 firings were missed: {missed:?}");
    assert!(
        missed
            .iter()
            .all(|(t, _)| *t >= down - 2_000 && *t <= up + 2_000),
        "only firings of the down window ({down}..{up}): {missed:?}"
    );
}
