//! Sizes the protocol cannot carry: a workflow whose signed version cannot fit one deploy frame
//! is refused at `workflow apply` with the limit, and nothing reaches the agents.

use std::time::Duration;

use outpost_tests::{Hub, Scratch, enrolled_agent, stderr, stdout, wait_for};

use crate::hub::{FAST_HUB, agent_id_by_name, agent_version, apply, hub_runs, ticker};

#[test]
fn a_workflow_too_large_to_deliver_is_refused_at_apply_with_the_limit() {
    let s = Scratch::new("hublimits").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    assert_eq!(
        apply(&hub, s.path(), "tick.yaml", &ticker("tick", 1, "v1", "")),
        1
    );
    wait_for(Duration::from_secs(30), "v1 running", || {
        (agent_version(&d, "tick") == 1 && !hub_runs(&hub, &id, "tick").is_empty()).then_some(())
    })
    .unwrap();

    // 1.5 MB: under the API's body limit, over the 1 MiB frame limit.
    let mut big = ticker("tick", 1, "v2", "");
    big.push_str(&format!(
        "  pad:\n    command: [/bin/echo, '{}']\n",
        "x".repeat(1_500_000)
    ));
    let p = s.write("big.yaml", &big).unwrap();
    let out = hub
        .cli(&["workflow", "apply", "-f", p.to_str().unwrap()])
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("1048576"),
        "the message gives the limit: {err}"
    );
    assert!(err.contains("tick"), "{err}");
    // No version was made; the agent keeps v1 and its session keeps working.
    let v = hub.json(&["workflow", "show", "tick"]).unwrap();
    assert_eq!(v["version"].as_u64(), Some(1), "{v}");
    let before = hub_runs(&hub, &id, "tick").len();
    wait_for(Duration::from_secs(20), "more runs reach the hub", || {
        (hub_runs(&hub, &id, "tick").len() > before + 2).then_some(())
    })
    .unwrap();
    assert_eq!(agent_version(&d, "tick"), 1);
}
