//! The cron clock of one workflow.
//!
//! # Call order
//!
//! `Planner::new(.., last_fired, now)`, then repeatedly: arm a wall-clock timer for
//! [`Planner::poll_timeout`], call [`Planner::handle_time`] when it passes (calling it early or
//! often is harmless), act on the outputs, and persist [`Planner::last_fired`] in the same
//! transaction as the runs and missed-firing events it produced. Wall timers drift when the wall
//! clock is stepped, so drivers should also call `handle_time` periodically (e.g. every minute).
//!
//! # Semantics
//!
//! The planner keeps a cursor: every schedule instant at or before it has been accounted for.
//! On `handle_time(now)` every instant in `(cursor, now.wall]` is accounted for, then the cursor
//! moves to `now.wall`:
//! - instants that passed while the planner was watching fire as `Scheduled`, however late the
//!   driver wakes: "watching" means the wall clock advanced in step with the monotonic clock
//!   (within [`JUMP_TOLERANCE`]) since the previous `handle_time` (or `new`);
//! - instants within [`ON_TIME_GRACE`] (2 s) of `now.wall` also fire as `Scheduled`, unless they
//!   passed before the planner was created (see below);
//! - other instants (they passed before the planner was created — the agent was stopped, however
//!   briefly — or the wall clock jumped forward over them) follow `catchup`:
//!   - `none`: none fires (not even one that passed a moment before the planner was created: a
//!     firing missed by 1 ms across a restart is missed);
//!   - `latest`: the most recent one fires as `Catchup` if it is within the catch-up window and
//!     no on-time firing exists in the same call (an on-time firing supersedes it);
//!   - `all`: every one within the catch-up window fires as `Catchup`, oldest first, at most
//!     [`MAX_CATCHUP_FIRINGS`] per call (the rest are reported missed).
//! - every instant not fired is counted in ONE [`MissedFirings`] per call (count, first, last,
//!   reason), emitted before the call's firings.
//!
//! A backward wall-clock jump makes the planner wait: the cursor never moves back, so nothing
//! fires until the wall clock passes the next instant after the cursor. No instant ever fires
//! twice and firings are increasing.
//!
//! `last_fired` is the highest instant accounted for (fired *or* reported missed), so that a
//! restart neither re-fires nor re-reports. With no history (`None`), the planner starts at
//! `now`: instants before its creation are not its business. A driver that wants downtime before
//! a workflow's first firing accounted for should persist the workflow's activation instant and
//! pass it as `last_fired` until the planner reports one.
//!
//! # Cost of counting missed firings
//!
//! Missed firings are counted exactly. Counting walks firing by firing only inside partial days
//! and days with a UTC-offset change; every other local day costs one `next_after` call (the
//! firings of a whole day without a transition depend only on whether the date matches, so the
//! per-day count is computed once and reused). A month missed by a per-second schedule costs
//! about two days of iteration (≈170k steps, the two partial days) plus one call per day.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use outpost_common::clock::Now;
use outpost_common::model::Catchup;
use outpost_common::record::{MissedFirings, RunKind};
use outpost_common::schedule::Schedule;

/// Instants at most this old when seen fire as ordinary `Scheduled` runs.
pub const ON_TIME_GRACE: Duration = Duration::from_secs(2);

/// Upper bound on catch-up firings emitted by one `handle_time` call under `catchup: all`.
pub const MAX_CATCHUP_FIRINGS: usize = 1000;

/// What the planner decided.
#[derive(Debug, Clone, PartialEq)]
pub enum PlannerOutput {
    /// Make a run for this scheduled instant.
    Fire {
        scheduled: DateTime<Utc>,
        kind: RunKind,
    },
    /// Instants that will not be run.
    Missed(MissedFirings),
}

/// The cron clock of one workflow. See the module docs.
#[derive(Debug, Clone)]
pub struct Planner {
    schedule: Schedule,
    tz: Tz,
    catchup: Catchup,
    window: Duration,
    workflow: String,
    last_fired: Option<DateTime<Utc>>,
    cursor: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    per_day: Option<u64>,
    /// The last reading of both clocks: instants that pass while the wall clock keeps pace with
    /// the monotonic clock are on time, however late the driver looks.
    seen: (DateTime<Utc>, Duration),
    /// Since when this planner (or the one it continues, [`Planner::continuing`]) has watched
    /// the clock: unaccounted instants before it passed while nobody watched (the agent was
    /// stopped) and are never on time.
    born: DateTime<Utc>,
}

/// A wall-clock advance this much larger than the monotonic advance is a jump (NTP step).
pub const JUMP_TOLERANCE: Duration = Duration::from_secs(1);

/// How the wall clock moved between two readings of both clocks (the planner's rule; retention
/// uses the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockStep {
    /// The wall clock advanced with the monotonic clock, at most [`JUMP_TOLERANCE`] faster.
    InStep,
    /// The wall clock advanced this much more than the monotonic clock (an NTP step, a clock
    /// set forward, a suspend).
    Forward(TimeDelta),
    /// The wall clock went back; it lost this much against the monotonic clock.
    Backward(TimeDelta),
}

/// Compare a reading `seen` (wall, monotonic) with `now`: see [`ClockStep`].
pub fn clock_step(seen: (DateTime<Utc>, Duration), now: Now) -> ClockStep {
    let wall_adv = now.wall.signed_duration_since(seen.0);
    let mono_adv = delta(now.mono.saturating_sub(seen.1));
    if wall_adv < TimeDelta::zero() {
        ClockStep::Backward(mono_adv - wall_adv)
    } else if wall_adv - mono_adv > delta(JUMP_TOLERANCE) {
        ClockStep::Forward(wall_adv - mono_adv)
    } else {
        ClockStep::InStep
    }
}

const NS: TimeDelta = TimeDelta::nanoseconds(1);

fn sub(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn add(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[derive(Default)]
struct MissedAcc {
    count: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    reasons: Vec<(String, u64)>,
}

impl Planner {
    /// A planner for `schedule` read in `tz`. `last_fired` is the highest instant accounted for
    /// so far (from the store); `None` starts at `now.wall`.
    pub fn new(
        schedule: Schedule,
        tz: Tz,
        catchup: Catchup,
        window: Duration,
        last_fired: Option<DateTime<Utc>>,
        now: Now,
    ) -> Planner {
        let cursor = last_fired.unwrap_or(now.wall);
        let next = schedule.next_after(cursor, tz);
        Planner {
            schedule,
            tz,
            catchup,
            window,
            workflow: String::new(),
            last_fired,
            cursor,
            next,
            per_day: None,
            seen: (now.wall, now.mono),
            born: now.wall,
        }
    }

    /// This planner replaces `prev` in the same process (a new version of the workflow): it
    /// keeps `prev`'s watch, so an instant `prev` saw pass a moment ago is still on time.
    pub fn continuing(mut self, prev: &Planner) -> Planner {
        self.born = prev.born;
        self.seen = prev.seen;
        self
    }

    /// Name the workflow in the `MissedFirings` events (empty by default).
    pub fn with_workflow(mut self, name: &str) -> Planner {
        self.workflow = name.to_string();
        self
    }

    /// The wall instant of the next firing, if the schedule ever fires again.
    pub fn poll_timeout(&self) -> Option<DateTime<Utc>> {
        self.next
    }

    /// The highest scheduled instant accounted for (fired or reported missed).
    pub fn last_fired(&self) -> Option<DateTime<Utc>> {
        self.last_fired
    }

    /// Account for every instant in `(cursor, now.wall]`. See the module docs.
    pub fn handle_time(&mut self, now: Now) -> Vec<PlannerOutput> {
        let end = now.wall;
        let (seen_wall, _) = self.seen;
        let step = clock_step(self.seen, now);
        self.seen = (now.wall, now.mono);
        // Since the last look, did the wall clock move with the monotonic clock? Then every
        // instant after that look passed while we were watching: on time, however late we wake.
        let watched_from = if step == ClockStep::InStep {
            seen_wall
        } else {
            end
        };
        match self.next {
            Some(first) if first <= end => {}
            _ => return Vec::new(),
        }
        let cursor = self.cursor;
        // Late: older than the grace, or passed while nobody watched (before `born`).
        let late_end = sub(sub(end, delta(ON_TIME_GRACE)), NS)
            .min(watched_from)
            .max(sub(self.born, NS).min(end));
        let win_start = sub(end, delta(self.window));
        let mut fires: Vec<(DateTime<Utc>, RunKind)> = Vec::new();
        let mut missed = MissedAcc::default();

        let on_time_from = cursor.max(late_end);
        if late_end > cursor {
            match self.catchup {
                Catchup::None => self.miss(&mut missed, cursor, late_end, "catchup=none"),
                Catchup::Latest => {
                    let on_time = self
                        .schedule
                        .next_after(on_time_from, self.tz)
                        .is_some_and(|t| t <= end);
                    if let Some(l) = self.last_at_or_before(late_end, cursor) {
                        if on_time {
                            self.miss(
                                &mut missed,
                                cursor,
                                late_end,
                                "catchup=latest, superseded by an on-time firing",
                            );
                        } else if l < win_start {
                            self.miss(&mut missed, cursor, late_end, "outside catchup_window");
                        } else {
                            self.miss(&mut missed, cursor, sub(l, NS), "catchup=latest");
                            fires.push((l, RunKind::Catchup));
                        }
                    }
                }
                Catchup::All => {
                    let out_end = sub(win_start, NS).min(late_end);
                    if out_end > cursor {
                        self.miss(&mut missed, cursor, out_end, "outside catchup_window");
                    }
                    let mut c = cursor.max(out_end);
                    while let Some(t) = self.schedule.next_after(c, self.tz) {
                        if t > late_end {
                            break;
                        }
                        if fires.len() >= MAX_CATCHUP_FIRINGS {
                            self.miss(&mut missed, c, late_end, "over the catch-up limit per call");
                            break;
                        }
                        fires.push((t, RunKind::Catchup));
                        c = t;
                    }
                }
            }
        }
        let mut c = on_time_from;
        while let Some(t) = self.schedule.next_after(c, self.tz) {
            if t > end {
                break;
            }
            fires.push((t, RunKind::Scheduled));
            c = t;
        }

        let mut out = Vec::with_capacity(fires.len() + 1);
        let mut highest = self.last_fired;
        if let (Some(first), Some(last)) = (missed.first, missed.last) {
            highest = highest.max(Some(last));
            let reason = if missed.reasons.len() == 1 {
                missed.reasons[0].0.clone()
            } else {
                missed
                    .reasons
                    .iter()
                    .map(|(r, n)| format!("{n}: {r}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            out.push(PlannerOutput::Missed(MissedFirings {
                workflow: self.workflow.clone(),
                count: missed.count,
                first_ms: first.timestamp_millis(),
                last_ms: last.timestamp_millis(),
                reason,
                recorded_ms: now.wall_ms(),
            }));
        }
        for (t, kind) in fires {
            highest = highest.max(Some(t));
            out.push(PlannerOutput::Fire { scheduled: t, kind });
        }
        self.last_fired = highest;
        self.cursor = self.cursor.max(end);
        self.next = self.schedule.next_after(self.cursor, self.tz);
        out
    }

    /// Count instants in `(after, upto]` as missed.
    fn miss(
        &mut self,
        acc: &mut MissedAcc,
        after: DateTime<Utc>,
        upto: DateTime<Utc>,
        reason: &str,
    ) {
        let n = self.count_between(after, upto);
        if n == 0 {
            return;
        }
        let first = self.schedule.next_after(after, self.tz);
        let last = self.last_at_or_before(upto, after);
        acc.count += n;
        acc.first = match (acc.first, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        acc.last = acc.last.max(last);
        acc.reasons.push((reason.to_string(), n));
    }

    /// The last instant in `(after, upto]`, by exponential search backwards from `upto`.
    fn last_at_or_before(
        &self,
        upto: DateTime<Utc>,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self.schedule.next_after(after, self.tz) {
            Some(t) if t <= upto => {}
            _ => return None,
        }
        let mut d = TimeDelta::seconds(1);
        loop {
            let lo = sub(upto, d).max(after);
            if let Some(t) = self.schedule.next_after(lo, self.tz).filter(|t| *t <= upto) {
                let mut last = t;
                while let Some(n) = self
                    .schedule
                    .next_after(last, self.tz)
                    .filter(|n| *n <= upto)
                {
                    last = n;
                }
                return Some(last);
            }
            if lo == after {
                return None;
            }
            d = d.checked_mul(2).unwrap_or(TimeDelta::MAX);
        }
    }

    /// The first instant whose local date is `d`.
    fn day_start(&self, d: NaiveDate) -> Option<DateTime<Utc>> {
        let mut probe = d.and_hms_opt(0, 0, 0)?;
        for _ in 0..(24 * 60) {
            match self.tz.from_local_datetime(&probe) {
                chrono::LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
                chrono::LocalResult::Ambiguous(t, _) => return Some(t.with_timezone(&Utc)),
                chrono::LocalResult::None => probe += TimeDelta::minutes(1),
            }
        }
        None
    }

    fn iterate_count(&self, after: DateTime<Utc>, upto: DateTime<Utc>) -> u64 {
        let mut n = 0;
        let mut c = after;
        while let Some(t) = self.schedule.next_after(c, self.tz) {
            if t > upto {
                break;
            }
            n += 1;
            c = t;
        }
        n
    }

    /// Exact number of instants in `(after, upto]` (see the module docs for the cost).
    fn count_between(&mut self, after: DateTime<Utc>, upto: DateTime<Utc>) -> u64 {
        let mut count = 0;
        let mut pos = after;
        while pos < upto {
            let Some(t) = self
                .schedule
                .next_after(pos, self.tz)
                .filter(|t| *t <= upto)
            else {
                break;
            };
            let d = t.with_timezone(&self.tz).date_naive();
            let (Some(ds), Some(de)) = (
                self.day_start(d),
                d.succ_opt().and_then(|n| self.day_start(n)),
            ) else {
                return count + self.iterate_count(pos, upto);
            };
            if ds > t || de <= t {
                // Unexpected boundaries: fall back to exact iteration for the rest.
                return count + self.iterate_count(pos, upto);
            }
            // Skip the empty days before t's day.
            if sub(ds, NS) > pos {
                pos = sub(ds, NS);
            }
            let seg_end = upto.min(sub(de, NS));
            let whole =
                add(pos, NS) == ds && seg_end == sub(de, NS) && de - ds == TimeDelta::days(1);
            if whole {
                match self.per_day {
                    Some(c) => count += c,
                    None => {
                        let c = self.iterate_count(pos, seg_end);
                        self.per_day = Some(c);
                        count += c;
                    }
                }
            } else {
                count += self.iterate_count(pos, seg_end);
            }
            pos = seg_end;
        }
        count
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap()
    }

    fn at(s: &str, mono_s: u64) -> Now {
        Now {
            wall: utc(s),
            mono: Duration::from_secs(mono_s),
        }
    }

    fn planner(
        expr: &str,
        tz: Tz,
        catchup: Catchup,
        window_h: u64,
        last: Option<&str>,
        now: Now,
    ) -> Planner {
        Planner::new(
            Schedule::parse(expr).unwrap(),
            tz,
            catchup,
            Duration::from_secs(window_h * 3600),
            last.map(utc),
            now,
        )
        .with_workflow("wf")
    }

    fn brute_count(p: &Planner, after: DateTime<Utc>, upto: DateTime<Utc>) -> u64 {
        p.iterate_count(after, upto)
    }

    #[test]
    fn on_time_firing_is_scheduled() {
        let mut p = planner(
            "*/5 * * * *",
            Tz::UTC,
            Catchup::All,
            24,
            None,
            at("2026-01-01T00:01:00Z", 0),
        );
        assert_eq!(p.poll_timeout(), Some(utc("2026-01-01T00:05:00Z")));
        assert!(p.handle_time(at("2026-01-01T00:04:59Z", 239)).is_empty());
        let out = p.handle_time(at("2026-01-01T00:05:10Z", 250));
        assert_eq!(
            out,
            vec![PlannerOutput::Fire {
                scheduled: utc("2026-01-01T00:05:00Z"),
                kind: RunKind::Scheduled
            }]
        );
        assert_eq!(p.last_fired(), Some(utc("2026-01-01T00:05:00Z")));
        // Calling again fires nothing.
        assert!(p.handle_time(at("2026-01-01T00:05:20Z", 260)).is_empty());
        assert_eq!(p.poll_timeout(), Some(utc("2026-01-01T00:10:00Z")));
    }

    #[test]
    fn restart_with_catchup_policies() {
        // Hourly; last fired 00:00; the agent comes back at 05:10 (5 missed: 01..05).
        let now = at("2026-01-01T05:10:00Z", 0);
        let mut none = planner(
            "0 * * * *",
            Tz::UTC,
            Catchup::None,
            24,
            Some("2026-01-01T00:00:00Z"),
            now,
        );
        let out = none.handle_time(now);
        assert_eq!(out.len(), 1);
        let PlannerOutput::Missed(m) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (m.count, m.first_ms, m.last_ms),
            (
                5,
                utc("2026-01-01T01:00:00Z").timestamp_millis(),
                utc("2026-01-01T05:00:00Z").timestamp_millis()
            )
        );
        assert_eq!(m.reason, "catchup=none");
        assert_eq!(none.last_fired(), Some(utc("2026-01-01T05:00:00Z")));

        let mut latest = planner(
            "0 * * * *",
            Tz::UTC,
            Catchup::Latest,
            24,
            Some("2026-01-01T00:00:00Z"),
            now,
        );
        let out = latest.handle_time(now);
        let PlannerOutput::Missed(m) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(m.count, 4);
        assert_eq!(
            out[1],
            PlannerOutput::Fire {
                scheduled: utc("2026-01-01T05:00:00Z"),
                kind: RunKind::Catchup
            }
        );

        let mut all = planner(
            "0 * * * *",
            Tz::UTC,
            Catchup::All,
            3,
            Some("2026-01-01T00:00:00Z"),
            now,
        );
        let out = all.handle_time(now);
        let PlannerOutput::Missed(m) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!((m.count, m.reason.as_str()), (2, "outside catchup_window"));
        let fired: Vec<_> = out[1..]
            .iter()
            .map(|o| match o {
                PlannerOutput::Fire {
                    scheduled,
                    kind: RunKind::Catchup,
                } => scheduled.to_rfc3339(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            fired,
            [
                "2026-01-01T03:00:00+00:00",
                "2026-01-01T04:00:00+00:00",
                "2026-01-01T05:00:00+00:00"
            ]
        );
    }

    #[test]
    fn backward_jump_waits() {
        let mut p = planner(
            "* * * * *",
            Tz::UTC,
            Catchup::All,
            24,
            None,
            at("2026-01-01T00:00:30Z", 0),
        );
        let out = p.handle_time(at("2026-01-01T00:01:00Z", 30));
        assert_eq!(out.len(), 1);
        // Wall jumps back 10 minutes; mono advances.
        assert!(p.handle_time(at("2025-12-31T23:51:00Z", 31)).is_empty());
        assert!(p.handle_time(at("2026-01-01T00:01:30Z", 661)).is_empty());
        let out = p.handle_time(at("2026-01-01T00:02:00Z", 691));
        assert_eq!(
            out,
            vec![PlannerOutput::Fire {
                scheduled: utc("2026-01-01T00:02:00Z"),
                kind: RunKind::Scheduled
            }]
        );
    }

    #[test]
    fn count_between_matches_brute_force() {
        for (expr, tz) in [
            ("*/7 * * * *", Tz::UTC),
            ("30 2 * * *", chrono_tz::Europe::Berlin),
            ("*/15 * * * *", chrono_tz::Europe::Berlin),
            ("0 9 * * 1-5", chrono_tz::America::New_York),
            ("*/20 * * * * *", chrono_tz::Europe::Berlin),
        ] {
            let mut p = planner(
                expr,
                tz,
                Catchup::None,
                24,
                None,
                at("2026-01-01T00:00:00Z", 0),
            );
            for (a, b) in [
                ("2026-03-20T13:17:05Z", "2026-04-02T01:00:00Z"),
                ("2026-10-20T00:00:00Z", "2026-11-05T23:59:59Z"),
                ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
            ] {
                let (a, b) = (utc(a), utc(b));
                assert_eq!(
                    p.count_between(a, b),
                    brute_count(&p, a, b),
                    "{expr} {a} {b}"
                );
            }
        }
    }

    #[test]
    fn per_second_month_is_counted_quickly() {
        let now = at("2026-02-01T00:00:00Z", 0);
        let mut p = planner(
            "* * * * * *",
            Tz::UTC,
            Catchup::None,
            24,
            Some("2026-01-01T00:00:00Z"),
            now,
        );
        let out = p.handle_time(now);
        let PlannerOutput::Missed(m) = &out[0] else {
            panic!("{out:?}")
        };
        // The instant at `now` fires on time; every one before the planner existed is missed.
        assert_eq!(m.count, 31 * 86_400 - 1);
        assert_eq!(out.len(), 1 + 1);
        assert_eq!(m.first_ms, utc("2026-01-01T00:00:01Z").timestamp_millis());
        assert_eq!(m.last_ms, utc("2026-01-31T23:59:59Z").timestamp_millis());
    }

    #[test]
    fn catchup_none_misses_a_firing_missed_by_a_moment_across_a_restart() {
        // Every minute; last fired 00:00; the agent restarts at 00:01:00.5 (the 00:01 firing
        // passed 0.5 s ago, while it was down).
        for catchup in [Catchup::None, Catchup::Latest] {
            let now = at("2026-01-01T00:01:00.500Z", 0);
            let mut p = planner(
                "* * * * *",
                Tz::UTC,
                catchup,
                24,
                Some("2026-01-01T00:00:00Z"),
                now,
            );
            let out = p.handle_time(at("2026-01-01T00:01:00.600Z", 0));
            match catchup {
                Catchup::None => {
                    let [PlannerOutput::Missed(m)] = out.as_slice() else {
                        panic!("{out:?}")
                    };
                    assert_eq!(m.count, 1);
                    assert_eq!(m.first_ms, utc("2026-01-01T00:01:00Z").timestamp_millis());
                }
                _ => assert_eq!(
                    out,
                    vec![PlannerOutput::Fire {
                        scheduled: utc("2026-01-01T00:01:00Z"),
                        kind: RunKind::Catchup
                    }]
                ),
            }
            assert_eq!(p.last_fired(), Some(utc("2026-01-01T00:01:00Z")));
        }
        // A planner that replaces a running one (a new version) keeps its watch: the instant
        // the old one saw pass 0.5 s ago is still on time.
        let t0 = at("2026-01-01T00:00:30Z", 0);
        let old = planner(
            "* * * * *",
            Tz::UTC,
            Catchup::None,
            24,
            Some("2026-01-01T00:00:00Z"),
            t0,
        );
        let now = at("2026-01-01T00:01:00.500Z", 30);
        let mut p = planner(
            "* * * * *",
            Tz::UTC,
            Catchup::None,
            24,
            Some("2026-01-01T00:00:00Z"),
            now,
        )
        .continuing(&old);
        assert_eq!(
            p.handle_time(now),
            vec![PlannerOutput::Fire {
                scheduled: utc("2026-01-01T00:01:00Z"),
                kind: RunKind::Scheduled
            }]
        );
    }

    #[test]
    fn dst_berlin_spring_and_autumn() {
        let berlin = chrono_tz::Europe::Berlin;
        // Daily at 02:30 local: spring-forward day fires at the transition (03:00 CEST = 01:00Z).
        let mut p = planner(
            "30 2 * * *",
            berlin,
            Catchup::None,
            24,
            None,
            at("2026-03-27T12:00:00Z", 0),
        );
        let mut fired = Vec::new();
        let mut mono = 0;
        let mut wall = utc("2026-03-27T12:00:00Z");
        while wall < utc("2026-03-31T00:00:00Z") {
            wall += TimeDelta::minutes(1);
            mono += 60;
            for o in p.handle_time(Now {
                wall,
                mono: Duration::from_secs(mono),
            }) {
                match o {
                    PlannerOutput::Fire {
                        scheduled,
                        kind: RunKind::Scheduled,
                    } => fired.push(scheduled.to_rfc3339()),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(
            fired,
            [
                "2026-03-28T01:30:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-30T00:30:00+00:00"
            ]
        );

        // Autumn: 02:30 happens twice on 2026-10-25; it fires once (first occurrence, CEST).
        let mut p = planner(
            "30 2 * * *",
            berlin,
            Catchup::None,
            24,
            None,
            at("2026-10-24T12:00:00Z", 0),
        );
        let mut fired = Vec::new();
        let mut wall = utc("2026-10-24T12:00:00Z");
        while wall < utc("2026-10-27T00:00:00Z") {
            wall += TimeDelta::minutes(1);
            mono += 60;
            for o in p.handle_time(Now {
                wall,
                mono: Duration::from_secs(mono),
            }) {
                if let PlannerOutput::Fire { scheduled, .. } = o {
                    fired.push(scheduled.to_rfc3339());
                }
            }
        }
        assert_eq!(
            fired,
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }
}
