//! Signing-key rotation with the real binaries: every agent, enrolled before or after
//! `outpost-hub keys rotate`, receives versions signed before the rotation and after it.

use std::time::Duration;

use outpost_tests::{Daemon, Hub, Scratch, enrolled_agent, stderr, stdout, wait_for};

use crate::hub::{FAST_HUB, agent_version, apply, ticker};

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

#[test]
fn agents_enrolled_before_and_after_a_rotation_receive_old_and_new_versions() {
    let s = Scratch::new("hubkeys").unwrap();
    let mut hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let old = enrolled_agent(&s.join("old"), &hub, hub.quic_addr, "name=old", "").unwrap();
    // Signed with the first key.
    assert_eq!(
        apply(&hub, s.path(), "a.yaml", &ticker("a", 1, "v1", "")),
        1
    );
    assert_eq!(
        apply(&hub, s.path(), "b.yaml", &ticker("b", 1, "v1", "")),
        1
    );
    wait_version(&old, &hub, "a", 1);

    hub.kill9().unwrap();
    let out = hub
        .cli(&["keys", "rotate", "--config", hub.config.to_str().unwrap()])
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    hub.restart().unwrap();

    // Enrolled after the rotation: it only ever knew the new key, and gets the versions signed
    // with the old one.
    let new = enrolled_agent(&s.join("new"), &hub, hub.quic_addr, "name=new", "").unwrap();
    wait_version(&new, &hub, "a", 1);
    wait_version(&new, &hub, "b", 1);
    // The old agent follows the chain; an old version it never had reaches it too.
    wait_version(&old, &hub, "b", 1);
    // A version signed with the new key reaches both.
    assert_eq!(
        apply(&hub, s.path(), "a.yaml", &ticker("a", 1, "v2", "")),
        2
    );
    wait_version(&old, &hub, "a", 2);
    wait_version(&new, &hub, "a", 2);
}
