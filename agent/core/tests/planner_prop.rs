#![allow(clippy::unwrap_used)] // tests may unwrap
//! Property tests for the planner: random schedules and clock scripts.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use outpost_agent_core::planner::{ON_TIME_GRACE, Planner, PlannerOutput};
use outpost_agent_core::retry::SplitMix64;
use outpost_common::clock::Now;
use outpost_common::model::Catchup;
use outpost_common::record::{MissedFirings, RunKind};
use outpost_common::schedule::Schedule;
use proptest::prelude::*;

const EXPRS: [&str; 7] = [
    "* * * * *",
    "*/5 * * * *",
    "0 * * * *",
    "*/20 * * * * *",
    "30 2 * * *",
    "0 9 * * 1-5",
    "15,45 1-3 * * *",
];
const TZS: [Tz; 3] = [
    Tz::UTC,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
];
const CATCHUPS: [Catchup; 3] = [Catchup::None, Catchup::Latest, Catchup::All];

#[derive(Debug, Clone)]
enum Op {
    /// Both clocks advance (ms); handle_time is called.
    Advance(u64),
    /// Wake up at the planner's next firing plus a small delay (ms).
    WakeAtNext(u64),
    /// Wall jumps forward (minutes); mono barely moves.
    JumpForward(u64),
    /// Wall jumps back (minutes); mono barely moves.
    JumpBack(u64),
    /// The agent is stopped for a while (minutes) and restarts with the persisted `last_fired`.
    StopAndRestart(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..600_000u64).prop_map(Op::Advance),
        3 => (0..40_000u64).prop_map(Op::WakeAtNext),
        1 => (1..360u64).prop_map(Op::JumpForward),
        1 => (1..600u64).prop_map(Op::JumpBack),
        1 => (1..(4 * 1440u64)).prop_map(Op::StopAndRestart),
    ]
}

struct Outcome {
    fired: Vec<Fired>,
    missed: Vec<MissedFirings>,
    start: DateTime<Utc>,
    max_wall: DateTime<Utc>,
}

/// (instant, kind, wall time it fired at, start of the watched span it passed in, if any)
type Fired = (DateTime<Utc>, RunKind, DateTime<Utc>, Option<DateTime<Utc>>);

#[allow(clippy::too_many_arguments)]
fn run_script(
    expr: &str,
    tz: Tz,
    catchup: Catchup,
    window_h: u64,
    start_min: u64,
    ops: &[Op],
) -> Outcome {
    let schedule = Schedule::parse(expr).unwrap();
    let start = DateTime::parse_from_rfc3339("2026-03-20T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::minutes(start_min as i64);
    let window = Duration::from_secs(window_h * 3600);
    let mut now = Now {
        wall: start,
        mono: Duration::ZERO,
    };
    let mut p = Planner::new(schedule.clone(), tz, catchup, window, None, now).with_workflow("w");
    let mut out = Outcome {
        fired: Vec::new(),
        missed: Vec::new(),
        start,
        max_wall: start,
    };
    let mut prev_wall = start;
    for op in ops {
        // Instants after `watched_from` passed while the planner watched real time go by.
        let watched_from = match op {
            Op::Advance(_) | Op::WakeAtNext(_) => Some(prev_wall),
            _ => None,
        };
        match op {
            Op::Advance(ms) => {
                now.wall += TimeDelta::milliseconds(*ms as i64);
                now.mono += Duration::from_millis(*ms);
            }
            Op::WakeAtNext(ms) => {
                if let Some(next) = p.poll_timeout() {
                    let target = next + TimeDelta::milliseconds(*ms as i64);
                    if target > now.wall {
                        let d = (target - now.wall).to_std().unwrap();
                        now.wall = target;
                        now.mono += d;
                    }
                }
            }
            Op::JumpForward(m) => {
                now.wall += TimeDelta::minutes(*m as i64);
                now.mono += Duration::from_millis(1);
            }
            Op::JumpBack(m) => {
                now.wall -= TimeDelta::minutes(*m as i64);
                now.mono += Duration::from_millis(1);
            }
            Op::StopAndRestart(m) => {
                now.wall += TimeDelta::minutes(*m as i64);
                now.mono = Duration::ZERO; // a new boot
                // The driver persisted last_fired (or, before any firing, the activation instant).
                let persisted = p.last_fired().or(Some(start));
                p = Planner::new(schedule.clone(), tz, catchup, window, persisted, now)
                    .with_workflow("w");
            }
        }
        for o in p.handle_time(now) {
            match o {
                PlannerOutput::Fire { scheduled, kind } => {
                    out.fired.push((scheduled, kind, now.wall, watched_from))
                }
                PlannerOutput::Missed(m) => out.missed.push(m),
            }
        }
        out.max_wall = out.max_wall.max(now.wall);
        prev_wall = now.wall;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn never_twice_increasing_and_complete(
        e in 0..EXPRS.len(),
        z in 0..TZS.len(),
        c in 0..CATCHUPS.len(),
        window_h in 1..48u64,
        start_min in 0..(20 * 24 * 60u64),
        ops in proptest::collection::vec(op(), 1..30),
    ) {
        let (expr, tz, catchup) = (EXPRS[e], TZS[z], CATCHUPS[c]);
        let o = run_script(expr, tz, catchup, window_h, start_min, &ops);
        let schedule = Schedule::parse(expr).unwrap();
        // Every instant in (start, max_wall], by brute force.
        let all: Vec<DateTime<Utc>> = schedule.iter_after(o.start, tz).take_while(|t| *t <= o.max_wall).collect();

        // Firings are strictly increasing (so never twice), are schedule instants, and never
        // fire before their time.
        for w in o.fired.windows(2) {
            prop_assert!(w[0].0 < w[1].0, "not increasing: {:?} then {:?}", w[0].0, w[1].0);
        }
        for (t, kind, wall, watched_from) in &o.fired {
            prop_assert!(all.binary_search(t).is_ok(), "{t} is not an instant");
            prop_assert!(t <= wall, "fired {t} at wall {wall}");
            let watched = watched_from.is_some_and(|w| *t > w);
            if *kind == RunKind::Scheduled {
                // On time: it passed while the planner watched, or it is only just due.
                prop_assert!(watched || *wall - *t <= TimeDelta::from_std(ON_TIME_GRACE).unwrap());
            } else {
                // A catch-up is for an instant that really was missed.
                prop_assert!(catchup != Catchup::None && !watched);
            }
        }
        // Missed events: disjoint, in order, within the span; counts add up exactly.
        let mut prev_last = i64::MIN;
        let mut missed_total = 0;
        for m in &o.missed {
            prop_assert!(m.count >= 1 && m.first_ms <= m.last_ms && m.first_ms > prev_last);
            prev_last = m.last_ms;
            let in_range = all.iter().filter(|t| (m.first_ms..=m.last_ms).contains(&t.timestamp_millis())).count() as u64;
            let fired_in_range = o.fired.iter().filter(|f| (m.first_ms..=m.last_ms).contains(&f.0.timestamp_millis())).count() as u64;
            prop_assert!(m.count <= in_range - fired_in_range, "{m:?}");
            missed_total += m.count;
        }
        prop_assert_eq!(o.fired.len() as u64 + missed_total, all.len() as u64,
            "fired {} + missed {} != instants {}", o.fired.len(), missed_total, all.len());
    }
}

#[test]
fn a_week_of_a_per_minute_schedule_with_a_millisecond_clock() {
    let start = DateTime::parse_from_rfc3339("2026-03-23T00:00:00.250Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut now = Now {
        wall: start,
        mono: Duration::from_millis(17),
    };
    let mut p = Planner::new(
        Schedule::parse("* * * * *").unwrap(),
        Tz::UTC,
        Catchup::All,
        Duration::from_secs(3600),
        None,
        now,
    );
    let mut rng = SplitMix64::new(1);
    let end = start + TimeDelta::days(7);
    let mut fired = Vec::new();
    while now.wall < end {
        let next = p.poll_timeout().unwrap();
        // Sometimes wake early (spurious), usually a little late (0..5 s).
        let r = rng.next_u64();
        let target = if r.is_multiple_of(10) {
            next - TimeDelta::milliseconds((r % 1000) as i64 + 1)
        } else {
            next + TimeDelta::milliseconds((r >> 10) as i64 % 5000)
        };
        if target > now.wall {
            now.mono += (target - now.wall).to_std().unwrap();
            now.wall = target;
        }
        for o in p.handle_time(now) {
            match o {
                PlannerOutput::Fire {
                    scheduled,
                    kind: RunKind::Scheduled,
                } => fired.push(scheduled),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let expected: Vec<_> = (1..)
        .map(|m| start - TimeDelta::milliseconds(250) + TimeDelta::minutes(m))
        .take_while(|t| *t <= now.wall)
        .collect();
    assert_eq!(fired.len(), 7 * 24 * 60);
    assert_eq!(fired, expected);
    assert_eq!(p.last_fired(), fired.last().copied());
}

#[test]
fn wall_clock_jump_forward_reports_missed_and_catches_up_latest() {
    let start = DateTime::parse_from_rfc3339("2026-05-01T10:00:10Z")
        .unwrap()
        .with_timezone(&Utc);
    let now = Now {
        wall: start,
        mono: Duration::ZERO,
    };
    let mut p = Planner::new(
        Schedule::parse("*/10 * * * *").unwrap(),
        Tz::UTC,
        Catchup::Latest,
        Duration::from_secs(86400),
        None,
        now,
    )
    .with_workflow("jumpy");
    // NTP steps the clock 3 h 5 min forward: 10:10 .. 13:00 (18 instants) are late.
    let jumped = Now {
        wall: start + TimeDelta::minutes(185),
        mono: Duration::from_secs(1),
    };
    let out = p.handle_time(jumped);
    let PlannerOutput::Missed(m) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (m.workflow.as_str(), m.count, m.reason.as_str()),
        ("jumpy", 17, "catchup=latest")
    );
    assert_eq!(
        out[1],
        PlannerOutput::Fire {
            scheduled: start - TimeDelta::seconds(10) + TimeDelta::hours(3),
            kind: RunKind::Catchup
        }
    );
    assert_eq!(out.len(), 2);
    // Had the jump left an on-time firing (13:00 seen at 13:00:01), it would supersede the
    // catch-up: the 17 older ones are missed and 13:00 fires as Scheduled (seen within
    // ON_TIME_GRACE, at 13:00:01).
    let mut q = Planner::new(
        Schedule::parse("*/10 * * * *").unwrap(),
        Tz::UTC,
        Catchup::Latest,
        Duration::from_secs(86400),
        None,
        now,
    );
    let out = q.handle_time(Now {
        wall: start + TimeDelta::hours(3) - TimeDelta::seconds(9),
        mono: Duration::from_secs(1),
    });
    let PlannerOutput::Missed(m) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(m.count, 17);
    assert!(m.reason.contains("superseded"));
    assert_eq!(
        out[1],
        PlannerOutput::Fire {
            scheduled: start - TimeDelta::seconds(10) + TimeDelta::hours(3),
            kind: RunKind::Scheduled
        }
    );
}
