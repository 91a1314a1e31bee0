//! Alerts end to end with every real part: an agent's on_failure hook, the outbox, QUIC, the
//! hub's rules and delivery outbox, and a real webhook receiver that checks the HMAC.
//!
//! - A failure at a site cut off from the hub (UDP relay blackholed): the local hook runs at
//!   once; when the link returns the hub sends exactly one notification, marked delayed.
//! - A hub killed (-9) while a delivery is in flight sends it again after the restart, with the
//!   same dedup key (at least once to the channel), and then never again.

use std::time::Duration;

use outpost_tests::relay::{Mode, Relay};
use outpost_tests::{Daemon, Hub, Scratch, enrolled_agent, stderr, stdout, wait_for};

use crate::channels::Receiver;
use crate::hub::{FAST_HUB, agent_id_by_name, agent_show, apply};

const SECRET: &str = "e2e-delivery-secret";

/// A workflow triggered by hand whose one task fails; its on_failure hook writes a file.
fn failing(hook_file: &std::path::Path) -> String {
    format!(
        "name: plc\nhooks:\n  on_failure:\n    command: [/bin/sh, -c, 'date > \"$0\"', \"{}\"]\n\
         tasks:\n  read:\n    command: [/bin/false]\n",
        hook_file.display()
    )
}

/// Hub config: one webhook channel at `url`, one rule for the workflow's failures.
fn config(s: &Scratch, url: &str) -> String {
    let secret = s.write("hook.secret", SECRET).unwrap();
    format!(
        "{FAST_HUB}alert_delayed_after = \"3s\"\n\
         [[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"{}\"\n\
         [[rule]]\nname = \"plc-failures\"\nevent = \"run_failed\"\nworkflows = [\"plc\"]\n\
         channels = [\"hook\"]\ngroup_wait = \"1s\"\nrepeat_interval = \"1h\"\n",
        secret.display()
    )
}

/// Wait until the agent runs `plc` from the hub, then trigger it on the agent itself.
fn trigger_on_agent(d: &Daemon) -> String {
    wait_for(Duration::from_secs(30), "plc active on the agent", || {
        let st = d.ctl_json("status", &[]).ok()?;
        st["workflows"]
            .as_array()?
            .iter()
            .any(|w| w["name"] == "plc")
            .then_some(())
    })
    .unwrap();
    let out = d.ctl("trigger", &["plc"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn a_cut_off_sites_failure_runs_its_hook_at_once_and_is_notified_once_marked_delayed() {
    let s = Scratch::new("alert-delivery-cut").unwrap();
    let rx = Receiver::start(s.path(), SECRET);
    let hub = Hub::start(s.path(), &config(&s, &format!("{}/outpost", rx.base))).unwrap();
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), hub.quic_addr).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, relay.addr(), "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    let hook_file = s.join("hook-ran");
    apply(&hub, s.path(), "plc.yaml", &failing(&hook_file));
    wait_for(Duration::from_secs(30), "plc on the agent", || {
        let st = d.ctl_json("status", &[]).ok()?;
        st["workflows"]
            .as_array()?
            .iter()
            .any(|w| w["name"] == "plc")
            .then_some(())
    })
    .unwrap();

    // Cut off.
    relay.set_mode(Mode::Blackhole);
    wait_for(
        Duration::from_secs(20),
        "the hub to see the agent offline",
        || (agent_show(&hub, &id)["online"] == false).then_some(()),
    )
    .unwrap();
    let run_id = trigger_on_agent(&d);
    wait_for(Duration::from_secs(20), "the local on_failure hook", || {
        hook_file.exists().then_some(())
    })
    .unwrap();
    assert_eq!(rx.count(), 0, "the hub cannot know yet");
    // Long enough for the failure to count as delayed (alert_delayed_after = 3s).
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(rx.count(), 0);

    // The link returns: the backlog arrives, one notification goes out.
    relay.set_mode(Mode::Pass);
    wait_for(Duration::from_secs(60), "the notification", || {
        (rx.count() >= 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(rx.count(), 1, "exactly one notification per rule and event");
    let r = rx.request(0);
    assert_eq!(r["sig_ok"], true, "{r}");
    let n = &r["body"];
    assert_eq!(n["rule"], "plc-failures");
    assert_eq!(n["status"], "firing");
    assert_eq!(n["items"][0]["agent"], id.as_str());
    assert_eq!(n["items"][0]["run_id"], run_id.as_str());
    let delayed = n["items"][0]["delayed_ms"].as_u64().unwrap_or(0);
    assert!(delayed >= 3_000, "marked delayed: {n}");
    assert_eq!(r["dedup"], n["dedup_key"]);
}

#[test]
fn a_hub_killed_during_delivery_sends_it_again_once_with_the_same_key() {
    let s = Scratch::new("alert-delivery-kill").unwrap();
    let rx = Receiver::start(s.path(), SECRET);
    // The receiver records each request, then takes 4 s to answer.
    let mut hub = Hub::start(s.path(), &config(&s, &format!("{}/slow/outpost", rx.base))).unwrap();
    let d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let hook_file = s.join("hook-ran");
    apply(&hub, s.path(), "plc.yaml", &failing(&hook_file));
    trigger_on_agent(&d);
    wait_for(Duration::from_secs(60), "the delivery to start", || {
        (rx.count() >= 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    // Mid-delivery: the receiver has the request and has not answered.
    hub.kill9().unwrap();
    hub.restart().unwrap();
    wait_for(
        Duration::from_secs(60),
        "the delivery after the restart",
        || (rx.count() >= 2).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    // Answered this time: recorded delivered, never sent again.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(rx.count(), 2);
    let (a, b) = (rx.request(0), rx.request(1));
    assert_eq!(
        a["dedup"], b["dedup"],
        "the same notification, deduplicable by key"
    );
    assert_eq!(a["sig_ok"], true);
    assert_eq!(b["sig_ok"], true);
    assert_eq!(b["body"]["rule"], "plc-failures");
    let list = hub.json(&["alert", "list"]).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}
