//! The evaluator's behaviour: selection, `when`, grouping, throttling, resolved notices,
//! silences, delayed items, and state that survives encode/decode.

use outpost_alerts::{
    AlertStatus, Condition, Evaluator, EventKind, Input, InputEvent, Measure, Notification, Rule,
    Settings, Silence, Subject, When,
};
use proptest::prelude::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn subject(agent: &str, workflow: &str) -> Subject {
    Subject {
        agent: Some(agent.into()),
        workflow: Some(workflow.into()),
        pools: vec!["line-a".into()],
        labels: vec![("site".into(), "sz".into())],
    }
}

fn run(agent: &str, workflow: &str, ok: bool, at: i64) -> Input {
    Input {
        subject: subject(agent, workflow),
        event: InputEvent::RunFinished {
            run_id: format!("r-{agent}-{at}"),
            version: 1,
            succeeded: ok,
            detail: if ok { "run succeeded" } else { "run failed" }.into(),
        },
        at_ms: at,
        received_ms: at,
    }
}

fn rule(name: &str, event: EventKind) -> Rule {
    let mut r = Rule::new(name, event);
    r.channels = vec!["hook".into()];
    r
}

fn ev(rules: Vec<Rule>) -> Evaluator {
    Evaluator::new(rules, Settings::default())
}

fn count(ns: &[Notification]) -> u64 {
    ns.iter().map(|n| n.items.len() as u64 + n.suppressed).sum()
}

#[test]
fn a_flapping_workflow_at_40_sites_is_one_notification_per_interval() {
    let mut e = ev(vec![rule("fail", EventKind::RunFailed)]);
    let mut out = Vec::new();
    let mut events = 0;
    // 40 agents fail every minute for two hours.
    for m in 0..120 {
        let now = m * MIN;
        for a in 0..40 {
            e.event(&run(&format!("a{a}"), "plc-read", false, now), &[], now);
            events += 1;
        }
        out.extend(e.poll(&[], now + 1));
        out.extend(e.poll(&[], now + 30_001));
    }
    out.extend(e.poll(&[], 3 * HOUR));
    // The first after group_wait, then one per hour.
    assert_eq!(
        out.len(),
        3,
        "{:?}",
        out.iter().map(|n| &n.summary).collect::<Vec<_>>()
    );
    assert_eq!(out[0].created_ms, 30_001);
    assert!(out[1].created_ms - out[0].created_ms >= HOUR);
    assert_eq!(count(&out), events);
    assert!(out[0].items.len() <= 20 && out[0].suppressed > 0);
    assert!(
        out[0].summary.contains("on 20 agents"),
        "{}",
        out[0].summary
    );
    let mut keys: Vec<_> = out.iter().map(|n| n.dedup_key.clone()).collect();
    keys.dedup();
    assert_eq!(keys.len(), 3);
}

#[test]
fn when_first_and_after_n_count_failures_in_a_row() {
    let mut first = rule("first", EventKind::RunFailed);
    first.when = When::First;
    first.group_wait_ms = 0;
    first.repeat_interval_ms = 0;
    let mut after = rule("after3", EventKind::RunFailed);
    after.when = When::After(3);
    after.group_wait_ms = 0;
    after.repeat_interval_ms = 0;
    let mut rec = rule("rec", EventKind::RunRecovered);
    rec.group_wait_ms = 0;
    rec.repeat_interval_ms = 0;
    let mut e = ev(vec![first, after, rec]);
    let mut by_rule = std::collections::BTreeMap::<String, u64>::new();
    let outcomes = [false, false, false, false, true, false, true, true];
    for (i, ok) in outcomes.iter().enumerate() {
        let t = i as i64 * MIN;
        e.event(&run("a1", "w", *ok, t), &[], t);
        // Another agent's failures do not break a1's streak.
        e.event(&run("a2", "w", true, t), &[], t);
        for n in e.poll(&[], t) {
            *by_rule.entry(n.rule).or_default() += n.items.len() as u64;
        }
    }
    assert_eq!(by_rule.get("first"), Some(&2));
    assert_eq!(by_rule.get("after3"), Some(&1));
    assert_eq!(by_rule.get("rec"), Some(&2));
}

#[test]
fn selectors_pick_pools_workflows_and_labels() {
    let mut r = rule("r", EventKind::RunFailed);
    r.workflows = vec!["plc-*".into()];
    r.pools = vec!["line-a".into()];
    r.group_wait_ms = 0;
    let mut e = ev(vec![r]);
    e.event(&run("a1", "plc-read", false, 0), &[], 0);
    e.event(&run("a1", "report", false, 0), &[], 0);
    let mut other = run("a2", "plc-read", false, 0);
    other.subject.pools = vec!["line-b".into()];
    e.event(&other, &[], 0);
    let out = e.poll(&[], 0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].items.len(), 1);
    assert_eq!(out[0].items[0].agent.as_deref(), Some("a1"));
    assert!(
        out[0]
            .labels
            .contains(&("workflow".to_string(), "plc-read".to_string()))
    );
}

fn offline(agent: &str, since: i64) -> Condition {
    Condition {
        event: EventKind::AgentOffline,
        key: format!("agent_offline/{agent}"),
        subject: Subject {
            agent: Some(agent.into()),
            workflow: None,
            pools: vec!["line-a".into()],
            labels: vec![],
        },
        measure: Measure::OfflineSince(since),
        detail: format!("agent {agent} offline"),
        since_ms: since,
    }
}

#[test]
fn a_level_condition_fires_past_its_threshold_and_resolves_once() {
    let mut r = rule("off", EventKind::AgentOffline);
    r.threshold = Some(10 * MIN);
    let mut e = ev(vec![r]);
    let c = [offline("a1", 0)];
    e.conditions(&c, 5 * MIN);
    assert!(e.poll(&[], 5 * MIN).is_empty());
    e.conditions(&c, 10 * MIN);
    assert!(e.poll(&[], 10 * MIN).is_empty(), "group_wait holds it");
    e.conditions(&c, 10 * MIN + 30_000);
    let fired = e.poll(&[], 10 * MIN + 30_000);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].status, AlertStatus::Firing);
    // Still offline: nothing more until repeat_interval.
    e.conditions(&c, 20 * MIN);
    assert!(e.poll(&[], 20 * MIN).is_empty());
    // Back online.
    e.conditions(&[], 21 * MIN);
    let resolved = e.poll(&[], 21 * MIN);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].status, AlertStatus::Resolved);
    assert_eq!(resolved[0].ends_ms, Some(21 * MIN));
    assert_eq!(resolved[0].items.len(), 1);
    assert_ne!(resolved[0].dedup_key, fired[0].dedup_key);
    e.conditions(&[], 22 * MIN);
    assert!(e.poll(&[], 22 * MIN).is_empty());
}

#[test]
fn a_condition_that_clears_within_group_wait_notifies_nothing() {
    let mut r = rule("off", EventKind::AgentOffline);
    r.threshold = Some(0);
    let mut e = ev(vec![r]);
    e.conditions(&[offline("a1", 0)], 0);
    assert!(e.poll(&[], 0).is_empty());
    e.conditions(&[], 10_000);
    assert!(e.poll(&[], 10_000).is_empty());
    assert!(e.poll(&[], 10 * MIN).is_empty());
}

#[test]
fn thresholds_of_each_measure() {
    assert!(Measure::OffsetMs(-2_500).active(2_000, 0));
    assert!(!Measure::OffsetMs(1_500).active(2_000, 0));
    assert!(
        Measure::DiskFree {
            free: 5,
            total: 100
        }
        .active(10, 0)
    );
    assert!(
        !Measure::DiskFree {
            free: 50,
            total: 100
        }
        .active(10, 0)
    );
    assert!(!Measure::DiskFree { free: 0, total: 0 }.active(10, 0));
    assert!(Measure::CertNotAfter(10 * 86_400_000).active(14 * 86_400_000, 0));
    assert!(!Measure::CertNotAfter(30 * 86_400_000).active(14 * 86_400_000, 0));
}

fn silence(workflow: Option<&str>, agent: Option<&str>, expires: i64) -> Silence {
    Silence {
        id: "s-1".into(),
        rule: None,
        workflow: workflow.map(str::to_string),
        pool: None,
        agent: agent.map(str::to_string),
        created_ms: 0,
        expires_ms: expires,
        created_by: "op".into(),
        comment: "noisy".into(),
    }
}

#[test]
fn silences_hold_back_matching_items_until_they_expire() {
    let mut r = rule("fail", EventKind::RunFailed);
    r.group_wait_ms = 0;
    r.repeat_interval_ms = 0;
    let mut e = ev(vec![r]);
    let s = [silence(Some("plc-*"), None, HOUR)];
    e.event(&run("a1", "plc-read", false, 0), &s, 0);
    e.event(&run("a1", "report", false, 0), &s, 0);
    let out = e.poll(&s, 0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].items[0].workflow.as_deref(), Some("report"));
    // Expired: no longer silences.
    e.event(&run("a1", "plc-read", false, HOUR), &s, HOUR);
    assert_eq!(e.poll(&s, HOUR).len(), 1);

    let mut off = rule("off", EventKind::AgentOffline);
    off.threshold = Some(0);
    off.group_wait_ms = 0;
    let mut e = ev(vec![off]);
    let s = [silence(None, Some("a1"), HOUR)];
    e.conditions(&[offline("a1", 0)], 0);
    assert!(e.poll(&s, 0).is_empty(), "silenced condition");
    e.conditions(&[offline("a1", 0), offline("a2", 0)], MIN);
    let out = e.poll(&s, MIN);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].items.len(), 1);
    assert_eq!(out[0].items[0].agent.as_deref(), Some("a2"));
}

#[test]
fn an_event_that_reached_the_hub_late_is_marked_delayed() {
    let mut r = rule("dl", EventKind::DeadlineMissed);
    r.group_wait_ms = 0;
    let mut e = ev(vec![r]);
    let input = |at: i64, received: i64| Input {
        subject: subject("a1", "w"),
        event: InputEvent::DeadlineMissed {
            run_id: "r1".into(),
            task: Some("t".into()),
            detail: "deadline missed".into(),
        },
        at_ms: at,
        received_ms: received,
    };
    e.event(&input(0, 60_000), &[], 3 * HOUR);
    e.event(&input(0, 2 * HOUR), &[], 3 * HOUR);
    let out = e.poll(&[], 3 * HOUR);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].items[0].delayed_ms, None);
    assert_eq!(out[0].items[1].delayed_ms, Some(2 * HOUR as u64));
    assert!(out[0].summary.contains("delayed"));
}

#[test]
fn state_survives_encode_and_decode() {
    let rules = vec![rule("fail", EventKind::RunFailed)];
    let mut e = ev(rules.clone());
    e.event(&run("a1", "w", false, 0), &[], 0);
    let mut d = Evaluator::decode(rules, Settings::default(), &e.encode()).unwrap();
    assert_eq!(e.poll(&[], MIN), d.poll(&[], MIN));
    assert!(Evaluator::decode(vec![], Settings::default(), b"\xff\x00").is_err());
}

#[derive(Debug, Clone)]
enum Step {
    Run { agent: u8, workflow: u8, ok: bool },
    Advance(i64),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..5, 0u8..3, any::<bool>()).prop_map(|(agent, workflow, ok)| Step::Run { agent, workflow, ok }),
        2 => (0i64..20 * MIN).prop_map(Step::Advance),
        1 => Just(Step::Restart),
    ]
}

proptest! {
    /// Every failure an `every` rule selects is counted exactly once (listed or suppressed),
    /// notifications of one group are at least `repeat_interval` apart, dedup keys never repeat,
    /// and a restart (encode + decode) changes nothing.
    #[test]
    fn grouping_conserves_and_throttles(steps in proptest::collection::vec(step(), 1..200)) {
        let mut r = rule("fail", EventKind::RunFailed);
        r.group_wait_ms = 30_000;
        r.repeat_interval_ms = 10 * MIN;
        let rules = vec![r];
        let mut e = ev(rules.clone());
        let mut now = 0;
        let mut failures = 0u64;
        let mut out: Vec<Notification> = Vec::new();
        for s in steps {
            match s {
                Step::Run { agent, workflow, ok } => {
                    failures += u64::from(!ok);
                    e.event(&run(&format!("a{agent}"), &format!("w{workflow}"), ok, now), &[], now);
                }
                Step::Advance(d) => now += d,
                Step::Restart => {
                    e = Evaluator::decode(rules.clone(), Settings::default(), &e.encode()).unwrap();
                }
            }
            out.extend(e.poll(&[], now));
        }
        out.extend(e.poll(&[], now + 24 * HOUR));
        prop_assert_eq!(count(&out), failures);
        let mut keys: Vec<&str> = out.iter().map(|n| n.dedup_key.as_str()).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        prop_assert_eq!(keys.len(), before);
        for w in ["w0", "w1", "w2"] {
            let times: Vec<i64> = out
                .iter()
                .filter(|n| n.labels.iter().any(|(k, v)| k == "workflow" && v == w))
                .map(|n| n.created_ms)
                .collect();
            for pair in times.windows(2) {
                prop_assert!(pair[1] - pair[0] >= 10 * MIN);
            }
        }
    }
}

proptest! {
    /// Agents going offline and back in any order: per episode of a group, firing
    /// notifications come first and at least `repeat_interval` apart, at most one resolved
    /// notice ends it, and it comes only after a firing one.
    #[test]
    fn level_groups_fire_before_they_resolve(
        steps in proptest::collection::vec((proptest::collection::vec(any::<bool>(), 3), 0i64..30 * MIN), 1..80)
    ) {
        let mut r = rule("off", EventKind::AgentOffline);
        r.threshold = Some(5 * MIN);
        r.group_wait_ms = MIN;
        r.repeat_interval_ms = 20 * MIN;
        let rules = vec![r];
        let mut e = ev(rules.clone());
        let mut now = 0;
        let mut since: [Option<i64>; 3] = [None; 3];
        let mut out: Vec<Notification> = Vec::new();
        for (down, dt) in steps {
            now += dt;
            let mut conds = Vec::new();
            for (i, off) in down.iter().enumerate() {
                since[i] = if *off { Some(since[i].unwrap_or(now)) } else { None };
                if let Some(t) = since[i] {
                    conds.push(offline(&format!("a{i}"), t));
                }
            }
            e.conditions(&conds, now);
            out.extend(e.poll(&[], now));
            e = Evaluator::decode(rules.clone(), Settings::default(), &e.encode()).unwrap();
        }
        let mut episodes: std::collections::BTreeMap<String, Vec<&Notification>> = Default::default();
        for n in &out {
            let ep: Vec<&str> = n.dedup_key.split('/').collect();
            episodes.entry(ep[2].to_string()).or_default().push(n);
        }
        for ns in episodes.values() {
            prop_assert_eq!(ns[0].status, AlertStatus::Firing);
            let resolved = ns.iter().filter(|n| n.status == AlertStatus::Resolved).count();
            prop_assert!(resolved <= 1);
            if resolved == 1 {
                prop_assert_eq!(ns[ns.len() - 1].status, AlertStatus::Resolved);
            }
            let firing: Vec<i64> = ns.iter().filter(|n| n.status == AlertStatus::Firing).map(|n| n.created_ms).collect();
            for pair in firing.windows(2) {
                prop_assert!(pair[1] - pair[0] >= 20 * MIN);
            }
        }
    }
}

#[test]
fn what_a_condition_says_follows_it_while_it_holds() {
    let mut r = rule("firings", EventKind::FiringMissed);
    r.group_wait_ms = 0;
    r.repeat_interval_ms = HOUR;
    let mut e = ev(vec![r]);
    let finding = |status: &str| Condition {
        event: EventKind::FiringMissed,
        key: "firing_missed/a1/w/0".into(),
        subject: subject("a1", "w"),
        measure: Measure::Present,
        detail: format!("firing of w at 0 {status}"),
        since_ms: 0,
    };
    e.conditions(&[finding("unknown")], 0);
    assert!(e.poll(&[], 0)[0].items[0].detail.ends_with("unknown"));
    e.conditions(&[finding("missed")], HOUR);
    let out = e.poll(&[], HOUR);
    assert_eq!(out.len(), 1);
    assert!(
        out[0].items[0].detail.ends_with("missed"),
        "{:?}",
        out[0].items
    );
}
