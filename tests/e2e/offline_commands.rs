//! Commands to an offline agent (docs/operations.md, "Workflows"): pause and resume are desired
//! state kept at the hub and reach the agent when it reconnects; trigger is refused, never
//! queued.

use std::time::Duration;

use outpost_tests::{Hub, Scratch, enrolled_agent, stderr, stdout, wait_for};

use crate::hub::{agent_id_by_name, agent_show, agent_status, agent_version, apply};

const MANUAL: &str = "name: manual\ntasks:\n  t:\n    command: [/bin/true]\n";

fn paused_at_agent(d: &outpost_tests::Daemon) -> Option<bool> {
    agent_status(d)["workflows"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == "manual")?["paused"]
        .as_bool()
}

#[test]
fn pause_reaches_an_offline_agent_when_it_reconnects_and_trigger_is_refused() {
    let s = Scratch::new("offline-cmds").unwrap();
    let hub = Hub::start(s.path(), crate::hub::FAST_HUB).unwrap();
    let mut d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    let v = apply(&hub, s.path(), "manual.yaml", MANUAL);
    wait_for(Duration::from_secs(30), "the version at the agent", || {
        (agent_version(&d, "manual") == v).then_some(())
    })
    .unwrap();
    assert_eq!(paused_at_agent(&d), Some(false));

    d.kill9().unwrap();
    wait_for(Duration::from_secs(30), "the agent offline", || {
        (agent_show(&hub, &id)["online"] == false).then_some(())
    })
    .unwrap();

    let out = hub.cli(&["workflow", "pause", "manual"]).unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("not connected") && text.contains("when it reconnects"),
        "pause of an offline agent should say it is delivered on reconnect: {text}"
    );
    let out = hub
        .cli(&["workflow", "trigger", "manual", "--agent", &id])
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("not connected") && text.contains("not triggered"),
        "trigger of an offline agent should be refused: {text}"
    );

    d.restart().unwrap();
    wait_for(
        Duration::from_secs(30),
        "the pause at the reconnected agent",
        || (paused_at_agent(&d) == Some(true)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", d.stderr_tail()));
    // The refused trigger was not queued: no run of it, even after the reconnect.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        d.runs(Some("manual")).unwrap().is_empty(),
        "a refused trigger ran after the reconnect"
    );
}
