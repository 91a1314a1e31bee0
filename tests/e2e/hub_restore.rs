//! The hub's store restored from an older backup under live agents: `outpost-hub backup` while
//! the hub serves, more runs and a newer version reach the agents, then the hub is stopped, the
//! stale copy put back and the hub started. Every agent must reconnect, every run it holds must
//! reach the hub exactly once, and the next `workflow apply` must be accepted and activated
//! (its version and epochs continue above what the agents already accepted).

use std::time::Duration;

use outpost_tests::{Daemon, Hub, Scratch, enrolled_agent, stderr, stdout, wait_for};

use crate::hub::{
    FAST_HUB, agent_id_by_name, agent_status, agent_version, apply,
    assert_hub_has_exactly_agent_runs, committed_seq, hub_runs, ticker,
};

fn wait_version(d: &Daemon, hub: &Hub, v: u64) {
    wait_for(
        Duration::from_secs(40),
        &format!("version {v} active"),
        || (agent_version(d, "tick") == v).then_some(()),
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
fn a_hub_restored_from_a_stale_backup_converges_with_its_agents() {
    let s = Scratch::new("hubrestore").unwrap();
    let mut hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let names = ["a1", "a2"];
    let agents: Vec<Daemon> = names
        .iter()
        .map(|n| enrolled_agent(&s.join(n), &hub, hub.quic_addr, &format!("name={n}"), "").unwrap())
        .collect();
    let ids: Vec<String> = names.iter().map(|n| agent_id_by_name(&hub, n)).collect();
    assert_eq!(
        apply(&hub, s.path(), "tick.yaml", &ticker("tick", 2, "v1", "")),
        1
    );
    for (d, id) in agents.iter().zip(&ids) {
        wait_version(d, &hub, 1);
        wait_for(Duration::from_secs(30), "runs at the hub", || {
            (hub_runs(&hub, id, "tick").len() >= 2).then_some(())
        })
        .unwrap();
    }

    // A consistent copy while the hub serves and the agents report.
    let backup = s.join("hub-backup.redb");
    let out = hub
        .cli(&["backup", "--to", backup.to_str().unwrap()])
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let at_backup: Vec<u64> = ids.iter().map(|id| committed_seq(&hub, id)).collect();

    // After the backup: a newer version, and more runs acknowledged (so deleted on the agents).
    assert_eq!(
        apply(&hub, s.path(), "tick.yaml", &ticker("tick", 2, "v2", "")),
        2
    );
    for (i, (d, id)) in agents.iter().zip(&ids).enumerate() {
        wait_version(d, &hub, 2);
        wait_for(
            Duration::from_secs(30),
            "acknowledged past the backup",
            || {
                let st = agent_status(d);
                (committed_seq(&hub, id) > at_backup[i] + 20 && st["outbox_pending"].as_u64()? < 5)
                    .then_some(())
            },
        )
        .unwrap();
    }

    // What the hub held before it was stopped: the restore loses part of it.
    let before: Vec<_> = ids
        .iter()
        .map(|id| crate::hub::ids(&hub_runs(&hub, id, "tick")))
        .collect();

    // Stop the hub, put the stale copy back, start it.
    hub.kill9().unwrap();
    std::fs::copy(&backup, hub.data_dir.join("hub.redb")).unwrap();
    hub.restart().unwrap();
    for id in &ids {
        wait_for(Duration::from_secs(30), "agent back online", || {
            (hub.json(&["agent", "show", id]).ok()?["online"] == true).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    }

    // A new apply after the restore: numbered above what the agents hold, and activated.
    let v = apply(&hub, s.path(), "tick.yaml", &ticker("tick", 2, "v3", ""));
    assert!(
        v > 2,
        "version {v} reuses a number the agents already accepted"
    );
    for d in &agents {
        wait_version(d, &hub, v);
    }

    // Every run each agent holds reached the hub exactly once (including the ones the restored
    // store had lost), none extra.
    for ((d, id), before) in agents.iter().zip(&ids).zip(&before) {
        let n = assert_hub_has_exactly_agent_runs(&hub, d, id, "tick");
        assert!(n >= before.len(), "{n} runs");
        let now = crate::hub::ids(&hub_runs(&hub, id, "tick"));
        assert!(
            before.is_subset(&now),
            "runs lost by the restore never came back"
        );
    }
}
