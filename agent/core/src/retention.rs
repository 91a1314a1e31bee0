//! When retention may prune, and how much: the decision, without I/O.
//!
//! Retention deletes finished runs (and their logs) by age and by count. Age is measured with
//! the wall clock, which can be wrong: an agent started with its clock 400 days ahead would
//! see every run as old. Two rules bound the damage:
//!
//! - **A bounded share per pass.** One pass deletes at most [`MAX_SHARE_PERCENT`] of the stored
//!   runs (rounded up, so a small history still shrinks), oldest first: [`prune_limit`]. A clock
//!   that is wrong when the agent starts costs at most that share per `retention.interval`,
//!   while someone notices.
//! - **No pruning across a clock step.** [`RetentionClock`] reads both clocks at every pass and
//!   applies the planner's rule ([`crate::planner::clock_step`]): when the wall clock moved
//!   forward faster than the monotonic clock since the previous pass, this pass prunes nothing,
//!   and the step is remembered: later passes measure age with the wall clock minus the forward
//!   steps seen since the agent started (a backward step gives it back, never below zero). A
//!   clock that was set right stays right; a clock that jumped ahead ages nothing by the jump.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use outpost_common::clock::Now;

use crate::planner::{ClockStep, clock_step};

/// The most one pass may delete, in percent of the stored runs.
pub const MAX_SHARE_PERCENT: u64 = 10;

/// How many runs one pass may delete out of `history` stored runs: [`MAX_SHARE_PERCENT`],
/// rounded up.
pub fn prune_limit(history: u64) -> u64 {
    history.saturating_mul(MAX_SHARE_PERCENT).div_ceil(100)
}

/// What a retention pass should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Prune, measuring age against this instant (ms since the epoch).
    Prune {
        /// The wall clock minus the forward steps seen (see the module docs).
        now_ms: i64,
    },
    /// The wall clock stepped forward by this much since the previous pass: prune nothing.
    Skip {
        /// The step.
        step: TimeDelta,
    },
}

/// The retention's view of time: see the module docs.
#[derive(Debug, Clone)]
pub struct RetentionClock {
    seen: (DateTime<Utc>, Duration),
    /// Forward steps seen, minus backward ones (never negative).
    ahead: TimeDelta,
}

impl RetentionClock {
    /// Start watching at `now` (the agent's start).
    pub fn new(now: Now) -> RetentionClock {
        RetentionClock {
            seen: (now.wall, now.mono),
            ahead: TimeDelta::zero(),
        }
    }

    /// A retention pass at `now`.
    pub fn pass(&mut self, now: Now) -> Pass {
        let step = clock_step(self.seen, now);
        self.seen = (now.wall, now.mono);
        match step {
            ClockStep::Forward(step) => {
                self.ahead = self.ahead.checked_add(&step).unwrap_or(TimeDelta::MAX);
                Pass::Skip { step }
            }
            ClockStep::Backward(back) => {
                self.ahead = (self.ahead - back).max(TimeDelta::zero());
                self.prune_at(now)
            }
            ClockStep::InStep => self.prune_at(now),
        }
    }

    fn prune_at(&self, now: Now) -> Pass {
        let at = now.wall.checked_sub_signed(self.ahead).unwrap_or(now.wall);
        Pass::Prune {
            now_ms: at.timestamp_millis(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(wall: DateTime<Utc>, mono: Duration) -> Now {
        Now { wall, mono }
    }

    #[test]
    fn the_limit_is_a_tenth_rounded_up() {
        assert_eq!(prune_limit(0), 0);
        assert_eq!(prune_limit(1), 1);
        assert_eq!(prune_limit(10), 1);
        assert_eq!(prune_limit(11), 2);
        assert_eq!(prune_limit(1000), 100);
        assert_eq!(prune_limit(u64::MAX), u64::MAX / 100 + 1);
    }

    #[test]
    fn a_forward_step_skips_the_pass_and_ages_nothing_afterwards() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let m0 = Duration::from_secs(1000);
        let mut c = RetentionClock::new(at(t0, m0));
        let hour = Duration::from_secs(3600);
        // An hour later, in step: prune at the wall clock.
        let t1 = t0 + TimeDelta::hours(1);
        assert_eq!(
            c.pass(at(t1, m0 + hour)),
            Pass::Prune {
                now_ms: t1.timestamp_millis()
            }
        );
        // The clock jumps 400 days ahead within the next hour: no pruning.
        let t2 = t1 + TimeDelta::hours(1) + TimeDelta::days(400);
        assert_eq!(
            c.pass(at(t2, m0 + 2 * hour)),
            Pass::Skip {
                step: TimeDelta::days(400)
            }
        );
        // Later passes measure age without the jump.
        let t3 = t2 + TimeDelta::hours(1);
        assert_eq!(
            c.pass(at(t3, m0 + 3 * hour)),
            Pass::Prune {
                now_ms: (t1 + TimeDelta::hours(2)).timestamp_millis()
            }
        );
        // The clock is set back right: the jump is given back, age is the wall clock's again.
        let t4 = t1 + TimeDelta::hours(3);
        assert_eq!(
            c.pass(at(t4, m0 + 4 * hour)),
            Pass::Prune {
                now_ms: t4.timestamp_millis()
            }
        );
        // A small drift (under the planner's tolerance) is no step.
        let t5 = t4 + TimeDelta::days(1) + TimeDelta::milliseconds(500);
        assert!(matches!(
            c.pass(at(t5, m0 + 4 * hour + DAY)),
            Pass::Prune { .. }
        ));
    }

    #[test]
    fn the_rule_is_the_planners() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let m0 = Duration::from_secs(5);
        let tol = TimeDelta::from_std(crate::planner::JUMP_TOLERANCE).unwrap();
        for (wall, expect_skip) in [
            (t0 + tol, false),
            (t0 + tol + TimeDelta::milliseconds(1), true),
            (t0 - TimeDelta::seconds(10), false),
        ] {
            let mut c = RetentionClock::new(at(t0, m0));
            let p = c.pass(at(wall, m0));
            assert_eq!(matches!(p, Pass::Skip { .. }), expect_skip, "{wall} {p:?}");
            assert_eq!(
                clock_step((t0, m0), at(wall, m0)) != ClockStep::InStep && wall > t0,
                expect_skip
            );
        }
    }
}
