//! HA leadership, end to end: three real `outpost-hub` replicas campaign on a real
//! three-member etcd cluster on loopback. Faults are real: kill -9 of the leader, SIGSTOP of
//! the leader past its lease, the leader's election key deleted behind its back (a write of a
//! deposed leader must be refused by etcd), and an etcd member killed. Every replica's view is
//! recorded in a history (invocation and completion of every scrape of its `/metrics`), which
//! is checked at the end: epochs never went backwards, no epoch had two leaders.
//!
//! Desired state in etcd: a change made through one replica reaches the others and the agents
//! they serve; a replica cut off from etcd refuses changes and catches up when healed.
//!
//! Run history in PostgreSQL (a real server in the scratch directory): one history across
//! replicas, through an agent's move and a crash of PostgreSQL under ingest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use outpost_tests::etcd::EtcdCluster;
use outpost_tests::history::{History, Seen};
use outpost_tests::postgres::Postgres;
use outpost_tests::tcprelay::{TcpMode, TcpRelay};
use outpost_tests::{Hub, Scratch};

const TTL_S: u64 = 2;

/// A replica's leadership as its `/metrics` reports it.
fn scrape(hub: &Hub) -> Option<(bool, i64, u64)> {
    let text = ureq::get(&format!("{}/metrics", hub.http_url))
        .header("Authorization", &format!("Bearer {}", hub.api_token))
        .config()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    let value = |name: &str| -> Option<i64> {
        text.lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse::<f64>().ok().map(|f| f as i64))?
        })
    };
    Some((
        value("outpost_hub_leader")? == 1,
        value("outpost_hub_leader_epoch")?,
        u64::try_from(value("outpost_hub_fenced_writes_refused_total")?).ok()?,
    ))
}

struct Replicas {
    hubs: Vec<(String, Hub)>,
    history: History,
}

impl Replicas {
    fn observe(&mut self, i: usize) -> Seen {
        let (name, hub) = (&self.hubs[i].0, &self.hubs[i].1);
        self.history.record(name, || match scrape(hub) {
            Some((true, epoch, _)) => Seen::Leader(epoch),
            Some((false, _, _)) => Seen::Follower,
            None => Seen::Failed,
        })
    }

    /// Scrape every replica in `alive` once; the leaders seen.
    fn round(&mut self, alive: &[usize]) -> Vec<(usize, i64)> {
        let mut leaders = Vec::new();
        for &i in alive {
            if let Seen::Leader(e) = self.observe(i) {
                leaders.push((i, e));
            }
        }
        leaders
    }

    /// Scrape `alive` until exactly one of them leads with an epoch above `above`.
    fn wait_leader(&mut self, alive: &[usize], above: i64, within: Duration) -> (usize, i64) {
        let start = Instant::now();
        loop {
            let leaders = self.round(alive);
            if let [(i, e)] = leaders[..]
                && e > above
            {
                return (i, e);
            }
            assert!(
                start.elapsed() < within,
                "no single new leader among {alive:?} after {within:?} (seen {leaders:?})\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// After a fault to replica `from` at `since`: wait until one of the others leads with an
    /// epoch above `above`, and say how long it took.
    fn take_over(
        &mut self,
        fault: &str,
        from: usize,
        above: i64,
        since: Instant,
        within: Duration,
    ) -> (usize, i64) {
        let others: Vec<usize> = (0..self.hubs.len()).filter(|i| *i != from).collect();
        let (l, e) = self.wait_leader(&others, above, within);
        eprintln!(
            "{fault}: {} took over from {} after {:?} (epoch {e})",
            self.hubs[l].0,
            self.hubs[from].0,
            since.elapsed()
        );
        (l, e)
    }

    fn logs(&self) -> String {
        self.hubs
            .iter()
            .map(|(n, h)| format!("--- {n} ---\n{}", h.stderr_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn pid(&self, i: usize) -> String {
        self.hubs[i]
            .1
            .child
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default()
    }
}

fn signal(pid: &str, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

/// Three replicas in `s`, each reaching etcd at the URLs `etcd(i)` gives replica `i`.
fn replicas(s: &Scratch, etcd: impl Fn(usize) -> String) -> Replicas {
    let mut hubs = Vec::new();
    for (i, name) in ["hub-a", "hub-b", "hub-c"].into_iter().enumerate() {
        let dir = s.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let extra = format!(
            "[ha]\netcd = {}\nname = \"{name}\"\nlease_ttl = \"{TTL_S}s\"\n",
            etcd(i)
        );
        hubs.push((name.to_string(), Hub::start(&dir, &extra).unwrap()));
    }
    Replicas {
        hubs,
        history: History::default(),
    }
}

#[test]
fn three_replicas_keep_one_leader_through_kill_pause_fence_and_a_lost_etcd_member() {
    let s = Scratch::new("ha").unwrap();
    let mut etcd = EtcdCluster::start(&s.join("etcd"), 3).unwrap();
    let mut r = replicas(&s, |_| etcd.endpoints_toml());
    let ttl = Duration::from_secs(TTL_S);
    // Generous bounds for a loaded CI machine; the measured times are printed.
    let failover = ttl * 8;
    let all = [0, 1, 2];

    // One leader, and its record in etcd names it with its epoch.
    let (l1, e1) = r.wait_leader(&all, 0, Duration::from_secs(30));
    let record: serde_json::Value = serde_json::from_str(
        &outpost_tests::wait_for(Duration::from_secs(10), "the leader record", || {
            etcd.get("/outpost/leader-record").ok().flatten()
        })
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["name"], r.hubs[l1].0.as_str(), "{record}");
    assert_eq!(record["epoch"], e1, "{record}");
    // `/v1/health` (no credential) says the same: a load balancer can find the leader.
    for (i, (name, hub)) in r.hubs.iter().enumerate() {
        let h: serde_json::Value = serde_json::from_str(
            &ureq::get(&format!("{}/v1/health", hub.http_url))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap(),
        )
        .unwrap();
        if i == l1 {
            assert_eq!(
                (&h["role"], &h["epoch"]),
                (&"leader".into(), &e1.into()),
                "{name}: {h}"
            );
        } else {
            assert_eq!(h["role"], "follower", "{name}: {h}");
            assert!(h.get("epoch").is_none(), "{name}: {h}");
        }
    }
    // It stays the only one.
    for _ in 0..10 {
        assert_eq!(r.round(&all), vec![(l1, e1)]);
        std::thread::sleep(Duration::from_millis(200));
    }

    // kill -9 the leader: another takes over after its lease runs out, with a newer epoch.
    let t = Instant::now();
    r.hubs[l1].1.kill9().unwrap();
    let (l2, e2) = r.take_over("kill -9", l1, e1, t, failover);
    r.hubs[l1].1.restart().unwrap();

    // SIGSTOP the leader past its lease: the others elect a new one; resumed, the paused
    // replica does not act as leader for a moment, before it hears anything from etcd.
    signal(&r.pid(l2), "-STOP");
    let (_, e3) = r.take_over("SIGSTOP", l2, e2, Instant::now(), failover);
    std::thread::sleep(ttl);
    signal(&r.pid(l2), "-CONT");
    match r.observe(l2) {
        Seen::Leader(e) => assert!(e > e3, "the resumed replica acted with epoch {e} <= {e3}"),
        Seen::Follower => {}
        Seen::Failed => panic!("the resumed replica did not answer\n{}", r.logs()),
    }
    for _ in 0..(TTL_S * 5) {
        let leaders = r.round(&all);
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The leader's election key deleted behind its back (as if its lease had been lost in
    // etcd): its next fenced write is refused, it steps down, and a new term begins.
    let (l4, e4) = r.wait_leader(&all, e2, failover);
    let deleted = etcd.delete_prefix("/outpost/leader/").unwrap();
    assert!(deleted >= 1, "no election key to delete");
    let t = Instant::now();
    outpost_tests::wait_for(failover, "the deposed leader's refused write", || {
        scrape(&r.hubs[l4].1)
            .filter(|(_, _, refused)| *refused >= 1)
            .map(|_| ())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", r.logs()));
    let (l5, e5) = r.wait_leader(&all, e4, failover);
    eprintln!(
        "fence: {} refused, {} leads with epoch {e5} after {:?}",
        r.hubs[l4].0,
        r.hubs[l5].0,
        t.elapsed()
    );

    // One etcd member lost: the leader keeps its term; when it is killed, the two members
    // left still elect the next one.
    etcd.kill9(0).unwrap();
    for _ in 0..(TTL_S * 10) {
        let leaders = r.round(&all);
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (l6, e6) = r.wait_leader(&all, e4, failover);
    r.hubs[l6].1.kill9().unwrap();
    r.take_over("etcd member lost", l6, e6, Instant::now(), failover);
    // The member stays down: restarting it on its old ports raced other tests, which may be
    // given a port it freed (seen twice under CI's parallel tests).

    // The whole history: epochs never went backwards, no epoch had two replicas.
    let h = &r.history;
    h.check().unwrap_or_else(|e| panic!("{e}\n{:?}", h.terms()));
    eprintln!("{} observations; terms {:?}", h.ops.len(), h.terms());
    assert!(h.terms().len() >= 5, "{:?}", h.terms());
}

/// A replica partitioned from etcd (every byte between them held by TCP relays, as a network
/// partition does: no reset, no error) stops acting as leader within its lease, while the others
/// elect a new one; healed, it comes back as a follower and the leader stays.
#[test]
fn a_leader_cut_off_from_etcd_stops_leading_within_its_lease_and_returns_as_follower() {
    let s = Scratch::new("ha-partition").unwrap();
    let etcd = EtcdCluster::start(&s.join("etcd"), 3).unwrap();
    // Each replica reaches each member through its own relay.
    let relays: Vec<Vec<TcpRelay>> = (0..3)
        .map(|_| {
            etcd.client_addrs()
                .into_iter()
                .map(|a| TcpRelay::start(a).unwrap())
                .collect()
        })
        .collect();
    let mut r = replicas(&s, |i| {
        let urls: Vec<String> = relays[i]
            .iter()
            .map(|rl| format!("\"http://{}\"", rl.addr()))
            .collect();
        format!("[{}]", urls.join(", "))
    });
    let ttl = Duration::from_secs(TTL_S);
    let all = [0, 1, 2];
    let (l1, e1) = r.wait_leader(&all, 0, Duration::from_secs(30));

    // Partition the leader. Its own clock ends its term; it hears nothing from etcd.
    for rl in &relays[l1] {
        rl.set_mode(TcpMode::Blackhole);
    }
    let t = Instant::now();
    outpost_tests::wait_for(ttl * 3, "the cut-off leader to stop acting", || {
        (r.observe(l1) == Seen::Follower).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", r.logs()));
    eprintln!(
        "partition: {} stopped acting after {:?}",
        r.hubs[l1].0,
        t.elapsed()
    );
    let (l2, e2) = r.take_over("partition", l1, e1, t, ttl * 8);
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != l1).collect();
    // The bound itself, from the history rather than from how fast a scrape came back: no
    // scrape of it that began a lease after the cut saw it leading (its last keep-alive that
    // etcd could answer was sent before the cut, and it acts only until that send + TTL).
    let cut_off = r.hubs[l1].0.clone();
    let late: Vec<_> = r
        .history
        .ops
        .iter()
        .filter(|o| o.process == cut_off && o.invoke > t + ttl && matches!(o.seen, Seen::Leader(_)))
        .collect();
    assert!(late.is_empty(), "{cut_off} acted after its lease: {late:?}");
    // While cut off it never leads.
    for _ in 0..(TTL_S * 5) {
        assert_ne!(r.observe(l1), Seen::Leader(e1));
        let leaders = r.round(&others);
        assert_eq!(leaders, vec![(l2, e2)], "the others keep one leader");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Healed: a follower; the leader stays.
    for rl in &relays[l1] {
        rl.set_mode(TcpMode::Pass);
    }
    for _ in 0..(TTL_S * 10) {
        assert_eq!(r.round(&all), vec![(l2, e2)], "{}", r.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let h = &r.history;
    h.check().unwrap_or_else(|e| panic!("{e}\n{:?}", h.terms()));
    assert_eq!(h.terms().len(), 2, "{:?}", h.terms());
}

/// Agents offline for 8 s; and one rule per agent (by its `name` label): failed runs of
/// `flaky`.
const FAILURES: &str = "\n[[rule]]\nname = \"gone\"\nevent = \"agent_offline\"\nfor = \"8s\"\ngroup_wait = \"1s\"\n\n[[rule]]\nname = \"edge-failures\"\nevent = \"run_failed\"\nworkflows = [\"flaky\"]\nlabels = { name = \"edge\" }\ngroup_wait = \"1s\"\n\n[[rule]]\nname = \"late-failures\"\nevent = \"run_failed\"\nworkflows = [\"flaky\"]\nlabels = { name = \"late\" }\ngroup_wait = \"1s\"\n";

const FLAKY: &str = "name: flaky\nschedule: '* * * * * *'\ncatchup: none\noverlap: allow\ntasks:\n  t:\n    command: [/bin/false]\n";

/// Put `[ha]` at the end of a stopped replica's hub.toml.
fn configure_ha(hub: &Hub, name: &str, etcd: &str) {
    let text = std::fs::read_to_string(&hub.config).unwrap();
    std::fs::write(
        &hub.config,
        format!("{text}\n[ha]\netcd = {etcd}\nname = \"{name}\"\nlease_ttl = \"{TTL_S}s\"\n"),
    )
    .unwrap();
}

fn pool_names(hub: &Hub) -> Vec<String> {
    let v = hub.json(&["pool", "list"]).unwrap();
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .filter(|n| !n.starts_with("wf:"))
        .collect();
    n.sort();
    n
}

/// Desired state lives in etcd: a workflow applied through one replica runs on an agent served
/// by another, every replica lists what any of them changed, an agent enrolled through one
/// replica is served by another, the leader evaluates the failures of agents served by the
/// others, and a replica cut off from etcd refuses changes (nothing
/// changes anywhere) until it is back, when it catches up.
#[test]
fn replicas_share_desired_state_through_etcd_and_refuse_changes_without_it() {
    use crate::hub::{FAST_HUB, agent_id_by_name, apply, hub_runs, ticker};
    let s = Scratch::new("ha-desired").unwrap();
    let etcd = EtcdCluster::start(&s.join("etcd"), 3).unwrap();
    // A, with an enrolled agent; B and C are copies of it (the agent's record with them).
    let a_dir = s.join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let mut a = Hub::start(&a_dir, &format!("{FAST_HUB}{FAILURES}")).unwrap();
    let _edge =
        outpost_tests::enrolled_agent(&s.join("edge"), &a, a.quic_addr, "name=edge", "").unwrap();
    let id = agent_id_by_name(&a, "edge");
    a.kill9().unwrap();
    let mut b = crate::replicas::replica_of(&a, &s.join("b"));
    let mut c = crate::replicas::replica_of(&a, &s.join("c"));
    // C reaches etcd through relays, to be cut off.
    let relays: Vec<TcpRelay> = etcd
        .client_addrs()
        .into_iter()
        .map(|ad| TcpRelay::start(ad).unwrap())
        .collect();
    let via_relays = format!(
        "[{}]",
        relays
            .iter()
            .map(|r| format!("\"http://{}\"", r.addr()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    configure_ha(&a, "hub-a", &etcd.endpoints_toml());
    configure_ha(&b, "hub-b", &etcd.endpoints_toml());
    configure_ha(&c, "hub-c", &via_relays);
    for h in [&mut a, &mut b, &mut c] {
        h.restart().unwrap();
    }
    let logs = |hs: [&Hub; 3]| {
        hs.iter()
            .map(|h| h.stderr_tail())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    // Changed through B (whichever leads); the agent at A runs it.
    let created = outpost_tests::wait_for(Duration::from_secs(30), "a pool created at B", || {
        b.json(&["pool", "create", "line-1"])
            .map_err(|e| eprintln!("not yet: {e}"))
            .ok()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs([&a, &b, &c])));
    assert_eq!(created["name"], "line-1", "{created}");
    apply(&b, s.path(), "tick.yaml", &ticker("tick", 1, "v1", ""));
    outpost_tests::wait_for(
        Duration::from_secs(60),
        "the agent at A running tick",
        || (!hub_runs(&a, &id, "tick").is_empty()).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs([&a, &b, &c])));
    for h in [&a, &c] {
        outpost_tests::wait_for(
            Duration::from_secs(20),
            "every replica lists line-1",
            || (pool_names(h) == ["line-1"]).then_some(()),
        )
        .unwrap();
        let wf = h.json(&["workflow", "list"]).unwrap();
        assert!(wf.to_string().contains("\"tick\""), "{wf}");
    }

    // An agent enrolled now through B (with a token made at A) is known at C, which serves it.
    let mut late = outpost_tests::enrolled_agent(&s.join("late"), &a, b.quic_addr, "name=late", "")
        .unwrap_or_else(|e| panic!("{e}\n{}", logs([&a, &b, &c])));
    let late_id =
        outpost_tests::wait_for(Duration::from_secs(20), "the new agent known at C", || {
            let list = c.json(&["agent", "list"]).ok()?;
            list.as_array()?
                .iter()
                .find(|x| x["labels"]["name"] == "late")
                .and_then(|x| x["id"].as_str().map(String::from))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.stderr_tail()));
    late.terminate(Duration::from_secs(10)).unwrap();
    let cfg = std::fs::read_to_string(&late.config).unwrap();
    std::fs::write(
        &late.config,
        cfg.replace(&b.quic_addr.to_string(), &c.quic_addr.to_string()),
    )
    .unwrap();
    late.restart().unwrap();
    outpost_tests::wait_for(Duration::from_secs(60), "the new agent's runs at C", || {
        (!hub_runs(&c, &late_id, "tick").is_empty()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", c.stderr_tail(), late.stderr_tail()));

    // Failures at agents served by two different replicas (edge at A, late at C) are both
    // evaluated by the leader, whichever replica it is.
    apply(&b, s.path(), "flaky.yaml", FLAKY);
    let (l, _) = leader_of(&[&a, &b, &c], Duration::from_secs(30));
    let leader = [&a, &b, &c][l];
    outpost_tests::wait_for(
        Duration::from_secs(60),
        "both agents' failures notified",
        || {
            let list = leader.json(&["alert", "list"]).ok()?;
            let rules: std::collections::BTreeSet<&str> = list
                .as_array()?
                .iter()
                .filter_map(|n| n["notification"]["rule"].as_str())
                .collect();
            (rules.contains("edge-failures") && rules.contains("late-failures")).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", leader.json(&["alert", "list"]).unwrap()));
    // Nor does it take an agent another replica serves for one that went offline (well past
    // `for`, counted from the leader's start; an agent moving between replicas is away for
    // less).
    std::thread::sleep(Duration::from_secs(10));
    let list = leader.json(&["alert", "list", "--rule", "gone"]).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list:#}");

    // C cut off from etcd: it refuses changes, and nothing changes anywhere.
    for r in &relays {
        r.set_mode(TcpMode::Blackhole);
    }
    let out = c.cli(&["pool", "create", "line-2"]).unwrap();
    assert!(!out.status.success(), "{}", outpost_tests::stdout(&out));
    let err = outpost_tests::stderr(&out);
    assert!(err.contains("read-only"), "{err}");
    for h in [&a, &b, &c] {
        assert_eq!(pool_names(h), ["line-1"]);
    }
    // The others go on; C catches up once it reaches etcd again.
    b.json(&["pool", "create", "line-3"]).unwrap();
    outpost_tests::wait_for(Duration::from_secs(20), "line-3 at A", || {
        (pool_names(&a) == ["line-1", "line-3"]).then_some(())
    })
    .unwrap();
    for r in &relays {
        r.set_mode(TcpMode::Pass);
    }
    // C catches up with the others. Its refused `line-2` was answered 503 "may still appear":
    // the relay held the request and delivers it once healed, and etcd may then take it (no
    // other replica wrote that record). Either way every replica ends up with the same pools.
    outpost_tests::wait_for(Duration::from_secs(60), "C to catch up", || {
        let pc = pool_names(&c);
        (pc.contains(&"line-3".to_string()) && pc == pool_names(&a) && pc == pool_names(&b))
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", pool_names(&c), c.stderr_tail()));
    outpost_tests::wait_for(Duration::from_secs(30), "a change at C again", || {
        c.json(&["pool", "create", "line-4"]).ok()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.stderr_tail()));
    for h in [&a, &b] {
        outpost_tests::wait_for(Duration::from_secs(20), "line-4 everywhere", || {
            pool_names(h).contains(&"line-4".to_string()).then_some(())
        })
        .unwrap();
    }
}

/// The replica that leads now, by its `/metrics` (waits up to `within`).
fn leader_of(hubs: &[&Hub], within: Duration) -> (usize, i64) {
    outpost_tests::wait_for(within, "a leader", || {
        hubs.iter().enumerate().find_map(|(i, h)| match scrape(h) {
            Some((true, e, _)) => Some((i, e)),
            _ => None,
        })
    })
    .unwrap()
}

/// A rollout over agents served by three different replicas goes through every step while the
/// leader is killed (-9) mid-rollout: another replica resumes it from the controller state in
/// etcd and the events the replicas forwarded, and it ends with every agent on the new version.
#[test]
fn a_rollout_across_replicas_survives_the_leader_killed_mid_rollout() {
    use crate::hub::FAST_HUB;
    use crate::rollouts::{local_version, ticker, versions_run};
    let s = Scratch::new("ha-rollout").unwrap();
    let etcd = EtcdCluster::start(&s.join("etcd"), 3).unwrap();
    // A with three agents on v1 of `good`; B and C are copies of it.
    let a_dir = s.join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let mut a = Hub::start(&a_dir, FAST_HUB).unwrap();
    let mut agents: Vec<outpost_tests::Daemon> = (0..3)
        .map(|i| {
            outpost_tests::enrolled_agent(
                &s.join(&format!("e{i}")),
                &a,
                a.quic_addr,
                &format!("name=e{i},line=1"),
                "",
            )
            .unwrap()
        })
        .collect();
    a.json(&["pool", "create", "line-1", "--selector", "line=1"])
        .unwrap();
    let file = s.join("good.yaml");
    std::fs::write(&file, ticker("good", "v1", "[/bin/true]")).unwrap();
    a.json(&["workflow", "apply", "-f", file.to_str().unwrap()])
        .unwrap();
    a.json(&[
        "workflow",
        "deploy",
        "good",
        "--pool",
        "line-1",
        "--version",
        "1",
    ])
    .unwrap();
    for d in &agents {
        outpost_tests::wait_for(Duration::from_secs(60), "agents on v1", || {
            (local_version(d, "good") == 1).then_some(())
        })
        .unwrap();
    }
    a.kill9().unwrap();
    let mut b = crate::replicas::replica_of(&a, &s.join("b"));
    let mut c = crate::replicas::replica_of(&a, &s.join("c"));
    for (h, name) in [(&a, "hub-a"), (&b, "hub-b"), (&c, "hub-c")] {
        configure_ha(h, name, &etcd.endpoints_toml());
    }
    for h in [&mut a, &mut b, &mut c] {
        h.restart().unwrap();
    }
    // One agent per replica.
    for (d, h) in agents.iter_mut().zip([&a, &b, &c]).skip(1) {
        d.terminate(Duration::from_secs(10)).unwrap();
        let cfg = std::fs::read_to_string(&d.config).unwrap();
        let moved = cfg.replace(&a.quic_addr.to_string(), &h.quic_addr.to_string());
        assert_ne!(cfg, moved);
        std::fs::write(&d.config, moved).unwrap();
        d.restart().unwrap();
    }
    let hubs = [&a, &b, &c];
    let (l1, e1) = leader_of(&hubs, Duration::from_secs(30));
    // Each replica shows every agent online, wherever its session is.
    for h in hubs {
        outpost_tests::wait_for(
            Duration::from_secs(30),
            "all agents online at each replica",
            || {
                let list = h.json(&["agent", "list"]).ok()?;
                let online = list
                    .as_array()?
                    .iter()
                    .filter(|a| a["online"] == true)
                    .count();
                (online == 3).then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", h.json(&["agent", "list"]).unwrap()));
    }

    // v2, rolled out through a follower: canary 1, then 2, then all 3.
    let f = (l1 + 1) % 3;
    std::fs::write(&file, ticker("good", "v2", "[/bin/true]")).unwrap();
    outpost_tests::wait_for(Duration::from_secs(30), "v2 applied", || {
        hubs[f]
            .json(&["workflow", "apply", "-f", file.to_str().unwrap()])
            .map_err(|e| eprintln!("not yet: {e}"))
            .ok()
    })
    .unwrap();
    outpost_tests::wait_for(Duration::from_secs(30), "the rollout started", || {
        hubs[f]
            .json(&[
                "rollout",
                "start",
                "good",
                "--pool",
                "line-1",
                "--canary",
                "1",
                "--steps",
                "2,100%",
                "--bake",
                "2s",
                "--min-runs",
                "2",
            ])
            .map_err(|e| eprintln!("not yet: {e}"))
            .ok()
    })
    .unwrap();
    let status = |h: &Hub| {
        h.json(&["rollout", "status", "good", "--pool", "line-1"])
            .ok()
    };
    // Kill the leader once the canary's gate passed.
    let t0 = Instant::now();
    let st = outpost_tests::wait_for(Duration::from_secs(90), "the canary passed", || {
        status(hubs[f]).filter(|st| st["step"].as_u64() >= Some(1) || st["active"] == false)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hubs[l1].stderr_tail()));
    assert_eq!(st["active"], true, "ended before the kill: {st:#}");
    let killed = [&mut a, &mut b, &mut c];
    killed[l1].kill9().unwrap();
    eprintln!("killed the leader {l1} (epoch {e1}) at step {}", st["step"]);
    std::thread::sleep(Duration::from_secs(1));
    killed[l1].restart().unwrap();
    let hubs = [&a, &b, &c];
    let end = outpost_tests::wait_for(Duration::from_secs(120), "the rollout to end", || {
        status(hubs[f]).filter(|st| st["active"] == false)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{:#}\n{}",
            status(hubs[f]).unwrap_or_default(),
            hubs.iter()
                .map(|h| h.stderr_tail())
                .collect::<Vec<_>>()
                .join("\n----\n")
        )
    });
    eprintln!("rollout across replicas done after {:?}", t0.elapsed());
    assert_eq!(end["outcome"], "succeeded", "{end:#}");
    let (l2, e2) = leader_of(&hubs, Duration::from_secs(30));
    assert!(e2 > e1, "epochs went back: {e1} then {e2} (leader {l2})");
    for d in &agents {
        outpost_tests::wait_for(Duration::from_secs(30), "every agent on v2", || {
            (local_version(d, "good") == 2 && versions_run(d, "good").contains(&2)).then_some(())
        })
        .unwrap();
    }
    // No agent went back: by its own runs, in firing order, once on v2 never on v1 again (one
    // version per decision, through the change of leader).
    for d in &agents {
        let mut runs: Vec<(String, u64)> = d
            .runs(Some("good"))
            .unwrap()
            .iter()
            .filter_map(|r| Some((r["scheduled"].as_str()?.to_string(), r["version"].as_u64()?)))
            .collect();
        runs.sort();
        let versions: Vec<u64> = runs.iter().map(|(_, v)| *v).collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "an agent went back to an older version: {runs:?}"
        );
    }
    // Every replica shows the same end.
    for h in hubs {
        let st = status(h).unwrap();
        assert_eq!(st["outcome"], "succeeded", "{st:#}");
    }
}

/// The leader's writes of desired state are fenced on its election key: once the key is gone (a
/// deposed leader that has not noticed yet), etcd refuses them and nothing changes, in etcd or
/// in the store; an operator's write (not fenced) still goes through. In-process: the hub's
/// store and etcd driver against a real etcd.
#[test]
fn a_deposed_leaders_write_of_desired_state_is_refused_by_etcd() {
    use outpost_hub::ha::{HaConfig, LeaderGate};
    use outpost_hub::store::{Store, StoreError, fenced};
    use std::sync::Arc;
    let s = Scratch::new("ha-fence").unwrap();
    let etcd = EtcdCluster::start(&s.join("etcd"), 1).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(Store::open(&s.join("hub.redb")).unwrap());
    let gate = Arc::new(LeaderGate::embedded());
    gate.enable_ha();
    let cfg = HaConfig {
        etcd: etcd.endpoints(),
        name: "hub-a".into(),
        prefix: "/fence".into(),
        lease_ttl: Duration::from_secs(2),
        postgres: None,
    };
    let (publisher, driver) = outpost_hub::ha::desired::publisher(gate.clone());
    store.set_publisher(publisher.clone());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = rt.spawn(outpost_hub::ha::desired::run(
        cfg,
        store.clone(),
        driver,
        Arc::new(|| {}),
        stop_rx,
    ));
    outpost_tests::wait_for(Duration::from_secs(20), "in sync with etcd", || {
        publisher.synced().then_some(())
    })
    .unwrap();
    // An election key, made by hand: its creation revision is the epoch.
    let key = "/fence/leader/694d";
    let epoch = etcd.put(key, "hub-a").unwrap();
    gate.set_election_key(Some((epoch, key.as_bytes().to_vec())));

    fenced(epoch, || store.create_pool("led", vec![], "hub", 1)).unwrap();
    let rev = etcd.get("/fence/ds/rev").unwrap();
    assert_eq!(rev.as_deref(), Some("hub-a"));
    // Deposed behind its back: the key is gone, the gate does not know yet.
    etcd.delete_prefix(key).unwrap();
    let e = fenced(epoch, || store.create_pool("stale", vec![], "hub", 2)).unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    let names: Vec<String> = store.replicated_snapshot().unwrap()["pools"]
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(names, ["led"], "the refused write changed the store");
    let in_etcd = etcd
        .v3(
            "kv/range",
            &serde_json::json!({
                "key": outpost_tests::etcd::b64(b"/fence/ds/t/pools/"),
                "range_end": outpost_tests::etcd::b64(b"/fence/ds/t/pools0"),
                "count_only": true,
            }),
        )
        .unwrap();
    assert_eq!(in_etcd["count"], "1", "{in_etcd}");
    assert_eq!(gate.counters().1, 1, "the refusal is counted");
    // Not fenced (an operator's command at any replica): made.
    store.create_pool("operator", vec![], "op", 3).unwrap();
    stop.send(true).unwrap();
    rt.block_on(task).unwrap();
}

/// deploy/ha/etcd.default, the member settings docs/operations.md ships, run by a real etcd
/// (its addresses moved to loopback): it starts, and a transaction of 1,000 operations (a
/// rollout step's worth, above etcd's default limit of 128) goes through.
#[test]
fn the_shipped_etcd_settings_take_a_large_transaction() {
    use outpost_tests::etcd::b64;
    let s = Scratch::new("ha-etcd-default").unwrap();
    let text =
        std::fs::read_to_string(outpost_tests::repo_root().join("deploy/ha/etcd.default")).unwrap();
    let (client, peer) = (outpost_tests::free_port(), outpost_tests::free_port());
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    let mut env: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().trim_matches('"').to_string())
        })
        .collect();
    assert!(
        env.iter()
            .any(|(k, v)| k == "ETCD_MAX_TXN_OPS" && v == "100000"),
        "{env:?}"
    );
    for (k, v) in env.iter_mut() {
        *v = match k.as_str() {
            "ETCD_DATA_DIR" => s.join("data").display().to_string(),
            "ETCD_LISTEN_PEER_URLS" | "ETCD_INITIAL_ADVERTISE_PEER_URLS" => p.clone(),
            "ETCD_LISTEN_CLIENT_URLS" | "ETCD_ADVERTISE_CLIENT_URLS" => c.clone(),
            "ETCD_INITIAL_CLUSTER" => format!("etcd-a={p}"),
            _ => continue,
        };
    }
    let log = std::fs::File::create(s.join("etcd.log")).unwrap();
    let mut child = std::process::Command::new(outpost_tests::etcd::etcd_bin())
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let txn = serde_json::json!({
        "success": (0..1000)
            .map(|i| serde_json::json!({"request_put": {
                "key": b64(format!("/t/{i}").as_bytes()), "value": b64(b"x")
            }}))
            .collect::<Vec<_>>()
    });
    let r = outpost_tests::wait_for(
        Duration::from_secs(30),
        "etcd to take the transaction",
        || {
            let text = ureq::post(&format!("{c}/v3/kv/txn"))
                .send_json(&txn)
                .ok()?
                .body_mut()
                .read_to_string()
                .ok()?;
            serde_json::from_str::<serde_json::Value>(&text).ok()
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    let r = r.unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(s.join("etcd.log")).unwrap_or_default()
        )
    });
    assert_eq!(r["succeeded"], true, "{r}");
    assert_eq!(r["responses"].as_array().map(Vec::len), Some(1000), "{r}");
}

/// The run ids and states of `agent`'s runs of `wf` as a replica lists them (from the shared
/// history), and how many rows the listing had (a run listed twice would show as more rows
/// than ids).
fn listed_runs(hub: &Hub, agent: &str, wf: &str) -> (BTreeMap<String, String>, usize) {
    let rows = crate::hub::hub_runs(hub, agent, wf);
    let ids = rows
        .iter()
        .filter_map(|r| {
            Some((
                r["run_id"].as_str()?.to_string(),
                r["state"].as_str()?.to_string(),
            ))
        })
        .collect();
    (ids, rows.len())
}

/// Run history in PostgreSQL (`[ha] postgres`): a replica lists the runs an agent reported to
/// another; when the agent's replica is killed, the agent moves to the other and goes on from
/// the shared status sequence (no gap, nothing stored twice); when PostgreSQL is killed under
/// ingest and comes back, nothing acknowledged is lost and ingest resumes. At the end every
/// finished run the agent has is at the hub once, in the state the agent gave it.
#[test]
fn replicas_share_one_run_history_in_postgres_through_a_move_and_a_postgres_crash() {
    use crate::hub::{FAST_HUB, agent_id_by_name, ticker};
    let s = Scratch::new("ha-history").unwrap();
    let etcd = EtcdCluster::start(&s.join("etcd"), 1).unwrap();
    let mut pg = Postgres::start(&s.join("pg")).unwrap();
    let a_dir = s.join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    let mut a = Hub::start(&a_dir, FAST_HUB).unwrap();
    let edge =
        outpost_tests::enrolled_agent(&s.join("edge"), &a, a.quic_addr, "name=edge", "").unwrap();
    let id = agent_id_by_name(&a, "edge");
    a.kill9().unwrap();
    let mut b = crate::replicas::replica_of(&a, &s.join("b"));
    let addrs = [a.quic_addr.to_string(), b.quic_addr.to_string()];
    for (h, name) in [(&a, "hub-a"), (&b, "hub-b")] {
        crate::replicas::configure_replicas(h, &addrs);
        configure_ha(h, name, &etcd.endpoints_toml());
        let text = std::fs::read_to_string(&h.config).unwrap();
        std::fs::write(
            &h.config,
            format!("{text}postgres = \"{}\"\n", pg.conninfo()),
        )
        .unwrap();
    }
    a.restart().unwrap();
    b.restart().unwrap();
    let logs = |hs: [&Hub; 2]| {
        hs.iter()
            .map(|h| h.stderr_tail())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    // A workflow, applied through A; the agent at A runs it, and B, which never served the
    // agent, lists its runs.
    let file = s.join("tick.yaml");
    std::fs::write(&file, ticker("tick", 2, "v1", "")).unwrap();
    outpost_tests::wait_for(Duration::from_secs(30), "tick applied at A", || {
        a.json(&["workflow", "apply", "-f", file.to_str().unwrap()])
            .map_err(|e| eprintln!("not yet: {e}"))
            .ok()
    })
    .unwrap();
    outpost_tests::wait_for(Duration::from_secs(60), "B to list runs made at A", || {
        let (runs, _) = listed_runs(&b, &id, "tick");
        (runs.values().filter(|st| *st == "succeeded").count() >= 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs([&a, &b])));
    let before_move = listed_runs(&b, &id, "tick").0.len();

    // A killed: the agent moves to B, which resumes from the shared sequence.
    a.kill9().unwrap();
    outpost_tests::wait_for(Duration::from_secs(60), "runs ingested at B", || {
        (listed_runs(&b, &id, "tick").0.len() >= before_move + 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", b.stderr_tail(), edge.stderr_tail()));

    // PostgreSQL killed under ingest, back after 2 s.
    let before_crash = listed_runs(&b, &id, "tick").0.len();
    pg.crash_and_restart(Duration::from_secs(2)).unwrap();
    outpost_tests::wait_for(Duration::from_secs(90), "ingest to resume", || {
        (listed_runs(&b, &id, "tick").0.len() >= before_crash + 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", b.stderr_tail(), pg.log_tail()));

    // Every finished run the agent has is at the hub once, in the agent's state.
    outpost_tests::wait_for(
        Duration::from_secs(60),
        "the hub to hold every finished run the agent has",
        || {
            let local: BTreeMap<String, String> = edge
                .runs(Some("tick"))
                .ok()?
                .iter()
                .filter(|r| matches!(r["state"].as_str(), Some("succeeded" | "failed")))
                .filter_map(|r| {
                    Some((
                        r["run_id"].as_str()?.to_string(),
                        r["state"].as_str()?.to_string(),
                    ))
                })
                .collect();
            let (hub, rows) = listed_runs(&b, &id, "tick");
            assert_eq!(rows, hub.len(), "a run listed twice");
            local
                .iter()
                .all(|(run, st)| hub.get(run) == Some(st))
                .then_some(local.len())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", b.stderr_tail()));
    // The table itself holds each run once, and B's store never saw a gap in the agent's
    // sequence (it resumed from the shared one after the move).
    let (listed, _) = listed_runs(&b, &id, "tick");
    let counted: usize = pg
        .psql(
            "outpost",
            &format!(
                "SELECT count(*) FROM outpost_runs WHERE agent = '{id}' AND workflow = 'tick'"
            ),
        )
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        counted >= listed.len(),
        "{counted} rows, {} listed",
        listed.len()
    );
    let distinct: usize = pg
        .psql(
            "outpost",
            &format!("SELECT count(DISTINCT run_id) FROM outpost_runs WHERE agent = '{id}'"),
        )
        .unwrap()
        .parse()
        .unwrap();
    let all: usize = pg
        .psql(
            "outpost",
            &format!("SELECT count(*) FROM outpost_runs WHERE agent = '{id}'"),
        )
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(distinct, all);
    let err = b.stderr_tail();
    assert!(!err.contains("gap in the agent's status sequence"), "{err}");
}

/// The shared history in PostgreSQL answers as the embedded store does: the same batches
/// ingested into an embedded store and into one backed by a real PostgreSQL list the same runs
/// for every filter, page for page through the cursor (run ids repeat across agents, creation
/// times tie), and retention deletes the same runs. In-process: the hub's store and its
/// PostgreSQL history.
#[test]
fn the_shared_history_in_postgres_lists_pages_and_prunes_as_the_embedded_store_does() {
    use outpost_common::record::{
        MissedFirings, OutboxEntry, RunKind, RunRecord, RunState, StatusEvent, TaskInstanceRecord,
        TaskState,
    };
    use outpost_hub::store::{RetentionPolicy, RunCursor, RunQuery, Store};
    use std::sync::Arc;
    let s = Scratch::new("ha-history-sql").unwrap();
    let pg = Postgres::start(&s.join("pg")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter();
    let embedded = Store::open(&s.join("embedded.redb")).unwrap();
    let shared = Store::open(&s.join("shared.redb")).unwrap();
    let history = Arc::new(outpost_hub::ha::history::PgHistory::new(&pg.conninfo()).unwrap());
    rt.block_on(history.migrate()).unwrap();
    shared.set_history(history);
    let agents = ["agent-a", "agent-b", "agent-c"];
    for st in [&embedded, &shared] {
        for id in agents {
            outpost_tests::bench::enroll_played_agent(st, id).unwrap();
        }
    }
    let states = [
        RunState::Succeeded,
        RunState::Failed,
        RunState::Running,
        RunState::Skipped,
    ];
    // Per agent: 40 runs over two workflows, creation times that tie across agents and within
    // one, each reported running and then (mostly) finished, with a task.
    for (ai, id) in agents.iter().enumerate() {
        let mut entries = Vec::new();
        let mut seq = 0;
        for i in 0..40i64 {
            let run = |state| RunRecord {
                run_id: format!("r{i:02}"),
                workflow: if i % 3 == 0 { "x" } else { "w" }.into(),
                version: 1,
                kind: if i % 7 == 0 {
                    RunKind::Manual
                } else {
                    RunKind::Scheduled
                },
                scheduled_ms: 1_000 * i,
                state,
                params: vec![],
                created_ms: 1_000 * (i / 2) + ai as i64 % 2,
                started_ms: None,
                ended_ms: None,
                agent_id: None,
                skip_reason: None,
            };
            seq += 1;
            entries.push(OutboxEntry {
                seq,
                event: StatusEvent::Run(run(RunState::Running)),
            });
            seq += 1;
            entries.push(OutboxEntry {
                seq,
                event: StatusEvent::Task(TaskInstanceRecord {
                    run_id: format!("r{i:02}"),
                    task_id: "t".into(),
                    state: if i % 5 == 0 {
                        TaskState::Failed
                    } else {
                        TaskState::Succeeded
                    },
                    attempts: vec![],
                    outputs: vec![],
                    retry_at_ms: None,
                    updated_ms: 0,
                }),
            });
            seq += 1;
            entries.push(OutboxEntry {
                seq,
                event: StatusEvent::Run(run(states[(i as usize + ai) % states.len()])),
            });
        }
        // Firings the agent recorded as missed.
        for k in 0..2i64 {
            seq += 1;
            entries.push(OutboxEntry {
                seq,
                event: StatusEvent::Missed(MissedFirings {
                    workflow: "w".into(),
                    count: 3,
                    first_ms: 5_000 + 20_000 * k,
                    last_ms: 7_000 + 20_000 * k,
                    reason: "catchup=latest".into(),
                    recorded_ms: 0,
                }),
            });
        }
        // In two batches, the second overlapping the first (a retransmission).
        for st in [&embedded, &shared] {
            assert_eq!(st.ingest(id, &entries[..70]).unwrap(), 70);
            assert_eq!(st.ingest(id, &entries[50..]).unwrap(), 122);
        }
    }
    let keys = |st: &Store, q: &RunQuery| -> Vec<(String, String, String)> {
        st.runs(q)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.agent_id,
                    r.record.run_id,
                    r.record.state.as_str().to_string(),
                )
            })
            .collect()
    };
    let queries = [
        RunQuery::default(),
        RunQuery {
            state: Some(RunState::Failed),
            ..RunQuery::default()
        },
        RunQuery {
            workflow: Some("x".into()),
            ..RunQuery::default()
        },
        RunQuery {
            agent: Some("agent-b".into()),
            ..RunQuery::default()
        },
        RunQuery {
            agent: Some("agent-c".into()),
            workflow: Some("w".into()),
            ..RunQuery::default()
        },
        RunQuery {
            since_ms: Some(12_000),
            state: Some(RunState::Succeeded),
            ..RunQuery::default()
        },
    ];
    for q in &queries {
        let all = keys(&embedded, q);
        assert!(!all.is_empty(), "{q:?}");
        assert_eq!(keys(&shared, q), all, "{q:?}");
        // Page by page, 7 at a time, through the cursor.
        let mut page_q = RunQuery {
            limit: 7,
            ..q.clone()
        };
        let mut paged = Vec::new();
        loop {
            let (e, p) = (
                embedded.runs(&page_q).unwrap(),
                shared.runs(&page_q).unwrap(),
            );
            let ids = |v: &[outpost_hub::store::HubRun]| -> Vec<(String, String)> {
                v.iter()
                    .map(|r| (r.agent_id.clone(), r.record.run_id.clone()))
                    .collect()
            };
            assert_eq!(ids(&p), ids(&e), "{page_q:?}");
            paged.extend(ids(&e));
            let Some(last) = e.last() else { break };
            page_q.before = Some(RunCursor {
                created_ms: last.record.created_ms,
                agent: last.agent_id.clone(),
                run_id: last.record.run_id.clone(),
            });
        }
        assert_eq!(paged.len(), all.len(), "{q:?}");
    }
    // What missed-firing detection reads.
    for (wf, start, end) in [("w", 0, 40_000), ("w", 6_000, 21_000), ("x", 3_000, 30_000)] {
        let e = embedded
            .reported_firings("agent-b", wf, start, end)
            .unwrap();
        assert_eq!(
            shared.reported_firings("agent-b", wf, start, end).unwrap(),
            e
        );
    }
    assert!(
        !embedded
            .reported_firings("agent-b", "w", 0, 40_000)
            .unwrap()
            .missed
            .is_empty()
    );
    assert_eq!(
        shared.missed("agent-c").unwrap(),
        embedded.missed("agent-c").unwrap()
    );
    assert_eq!(
        shared.run_agents("r07").unwrap(),
        embedded.run_agents("r07").unwrap()
    );
    assert_eq!(shared.run_agents("r07").unwrap().len(), 3);
    assert_eq!(
        shared.run("agent-b", "r05").unwrap(),
        embedded.run("agent-b", "r05").unwrap()
    );
    // Retention by count, then by age: the same runs go in both.
    for policy in [
        RetentionPolicy {
            max_runs_per_workflow: Some(6),
            keep_recent_ms: 0,
            batch: 25,
            ..RetentionPolicy::default()
        },
        RetentionPolicy {
            max_age_ms: Some(1_000_000 - 17_000),
            keep_recent_ms: 0,
            batch: 25,
            ..RetentionPolicy::default()
        },
    ] {
        let mut deleted = [0, 0];
        for (n, st) in [&embedded, &shared].into_iter().enumerate() {
            loop {
                let r = st.apply_retention(&policy, 1_000_000).unwrap();
                deleted[n] += r.runs;
                if !r.more {
                    break;
                }
            }
        }
        assert!(deleted[0] > 0, "{policy:?}");
        let all = keys(&embedded, &RunQuery::default());
        assert_eq!(keys(&shared, &RunQuery::default()), all, "{policy:?}");
        // The shared store's own copy was pruned too: the PostgreSQL side deleted as many.
        assert_eq!(deleted[1], 2 * deleted[0], "{policy:?}");
    }
    let left: usize = pg
        .psql("outpost", "SELECT count(*) FROM outpost_tasks")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(left, keys(&embedded, &RunQuery::default()).len());
}
