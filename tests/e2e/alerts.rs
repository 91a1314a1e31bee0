//! The hub's alert pipeline with real processes: an agent's failed runs reach the hub over QUIC,
//! a `[[rule]]` makes one grouped notification (docs/operations.md, "Alerts"), and a hub killed
//! (-9) and restarted neither loses nor repeats it. The channels are not in play here (a rule
//! without channels keeps the history only).

use std::time::Duration;

use outpost_tests::{Hub, Scratch, enrolled_agent, wait_for};

use crate::hub::{agent_id_by_name, apply};

const RULE: &str = "\n[[rule]]\nname = \"flaky-failures\"\nevent = \"run_failed\"\nworkflows = [\"flaky*\"]\ngroup_wait = \"1s\"\nrepeat_interval = \"1h\"\n";

const FLAKY: &str = "name: flaky\nschedule: '* * * * * *'\ncatchup: none\noverlap: allow\ntasks:\n  t:\n    command: [/bin/false]\n";

fn alerts(hub: &Hub) -> Vec<serde_json::Value> {
    hub.json(&["alert", "list"])
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn failures_at_a_site_become_one_notification_that_a_hub_restart_does_not_repeat() {
    let s = Scratch::new("alerts").unwrap();
    let mut hub = Hub::start(s.path(), RULE).unwrap();
    let _agent = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    apply(&hub, s.path(), "flaky.yaml", FLAKY);
    let first = wait_for(Duration::from_secs(60), "a notification", || {
        let a = alerts(&hub);
        (!a.is_empty()).then_some(a)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    assert_eq!(first.len(), 1, "{first:?}");
    let n = &first[0]["notification"];
    assert_eq!(n["rule"], "flaky-failures");
    assert_eq!(n["status"], "firing");
    assert_eq!(n["event"], "run_failed");
    assert_eq!(n["items"][0]["agent"], id.as_str());
    assert_eq!(n["items"][0]["workflow"], "flaky");
    let key = n["dedup_key"].clone();

    // Killed and restarted while failures keep coming: within repeat_interval they gather, no
    // second notification is made, and the first is still there with its key.
    hub.kill9().unwrap();
    hub.restart().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let after = alerts(&hub);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["notification"]["dedup_key"], key);
    let firing = hub
        .json(&[
            "alert",
            "list",
            "--state",
            "firing",
            "--rule",
            "flaky-failures",
        ])
        .unwrap();
    assert_eq!(firing.as_array().map(Vec::len), Some(1));
    let resolved = hub.json(&["alert", "list", "--state", "resolved"]).unwrap();
    assert_eq!(resolved.as_array().map(Vec::len), Some(0));
}
