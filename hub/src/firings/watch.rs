//! The sans-IO core of missed-firing detection: for one (agent, workflow), the expected firings
//! from its schedule, what the agent reported, whether it is connected, and the time in; the
//! firings still open (missed or unknown) and what changed out. No store, no clock, no I/O.

use chrono::DateTime;
use chrono_tz::Tz;
use minicbor::{Decode, Encode};
use outpost_common::record::UnixMillis;
use outpost_common::schedule::Schedule;

/// What the hub concludes about one expected firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum FiringStatus {
    /// The agent was connected and reported no run for it within the grace period (or it
    /// reported the firing as missed).
    #[n(0)]
    Missed,
    /// The agent was cut off: nothing is known yet.
    #[n(1)]
    Unknown,
}

impl FiringStatus {
    /// `missed` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            FiringStatus::Missed => "missed",
            FiringStatus::Unknown => "unknown",
        }
    }
}

/// An expected firing with no run reported for it (yet).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct OpenFiring {
    /// The firing's scheduled instant.
    #[n(0)]
    pub scheduled_ms: UnixMillis,
    #[n(1)]
    pub status: FiringStatus,
    /// The version whose schedule expected it.
    #[n(2)]
    pub version: u64,
    /// When the hub first listed it.
    #[n(3)]
    pub since_ms: UnixMillis,
}

/// The watch over one (agent, workflow), as stored between steps.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WatchState {
    /// Every expected firing up to here was looked at.
    #[n(0)]
    pub checked_until_ms: UnixMillis,
    /// Firings with no run reported, oldest first (at most [`WatchConfig::max_open`]).
    #[n(1)]
    pub open: Vec<OpenFiring>,
    /// Open firings dropped because the list was full.
    #[n(2)]
    pub overflow: u64,
}

/// The tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// How long after its instant a firing's run may take to reach the hub from a connected
    /// agent; also how long an agent must have been connected for the hub to trust that its
    /// backlog arrived.
    pub grace_ms: i64,
    /// How long an open firing stays listed (missed ones, and unknown ones never reported).
    pub keep_ms: i64,
    /// Most open firings kept per (agent, workflow).
    pub max_open: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            grace_ms: 120_000,
            keep_ms: 24 * 3_600_000,
            max_open: 1_000,
        }
    }
}

/// The schedule the agent runs the workflow on now.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub schedule: &'a Schedule,
    pub tz: Tz,
    pub version: u64,
}

/// The agent's link to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// In a session since this instant.
    Connected {
        since_ms: UnixMillis,
    },
    Disconnected,
}

/// What the agent reported about the instants of interest: the scheduled instants it has runs
/// for (sorted), and the spans it recorded firings as missed in (first, last, inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reported {
    pub ran: Vec<UnixMillis>,
    pub missed: Vec<(UnixMillis, UnixMillis)>,
}

impl Reported {
    fn ran(&self, t: UnixMillis) -> bool {
        self.ran.binary_search(&t).is_ok()
    }

    fn said_missed(&self, t: UnixMillis) -> bool {
        self.missed.iter().any(|&(a, b)| a <= t && t <= b)
    }
}

/// A change in one step, for events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A firing is listed as missed (new, or unknown before).
    Missed {
        scheduled_ms: UnixMillis,
        was_unknown: bool,
    },
    /// A firing is listed as unknown.
    Unknown { scheduled_ms: UnixMillis },
    /// An unknown firing's run was reported: it happened.
    Reported { scheduled_ms: UnixMillis },
}

/// The span of scheduled instants [`step`] needs [`Reported`] for: from the oldest unknown
/// firing (or the first unchecked instant) to `now - grace`. `None`: nothing to look up (no
/// instant came due since the last step and nothing is unknown; a missed firing is final).
pub fn needed_span(
    state: Option<&WatchState>,
    expected: Option<&Expected<'_>>,
    now_ms: UnixMillis,
    cfg: &WatchConfig,
) -> Option<(UnixMillis, UnixMillis)> {
    let end = now_ms - cfg.grace_ms;
    let (state, expected) = (state?, expected?);
    let unknown = state
        .open
        .iter()
        .find(|o| o.status == FiringStatus::Unknown)
        .map(|o| o.scheduled_ms);
    let after = DateTime::from_timestamp_millis(state.checked_until_ms.max(now_ms - cfg.keep_ms))
        .unwrap_or_default();
    let due = expected
        .schedule
        .next_after(after, expected.tz)
        .is_some_and(|t| t.timestamp_millis() <= end);
    if !due && unknown.is_none() {
        return None;
    }
    let start = unknown
        .unwrap_or(state.checked_until_ms + 1)
        .min(state.checked_until_ms + 1)
        .max(now_ms - cfg.keep_ms);
    (start <= end).then_some((start, end))
}

/// One step for one (agent, workflow). `state` is `None` the first time the workflow is seen
/// on the agent: watching starts now, firings before are not judged. `expected` is `None` when
/// no firing is expected (paused, no schedule, not assigned): the watch ends.
pub fn step(
    state: Option<WatchState>,
    expected: Option<Expected<'_>>,
    reported: &Reported,
    link: Link,
    now_ms: UnixMillis,
    cfg: &WatchConfig,
) -> (Option<WatchState>, Vec<Change>) {
    let end = now_ms - cfg.grace_ms;
    let Some(expected) = expected else {
        return (None, Vec::new());
    };
    let mut changes = Vec::new();
    let mut st = match state {
        Some(s) => s,
        // Not before now: the agent may have started running this workflow just now.
        None => {
            return (
                Some(WatchState {
                    checked_until_ms: now_ms,
                    open: Vec::new(),
                    overflow: 0,
                }),
                changes,
            );
        }
    };
    // The agent's backlog has arrived once it has been connected for the grace period.
    let caught_up =
        matches!(link, Link::Connected { since_ms } if since_ms + cfg.grace_ms <= now_ms);
    // Open firings first: reported since, now known missed, or too old to keep.
    st.open.retain_mut(|o| {
        if reported.ran(o.scheduled_ms) {
            if o.status == FiringStatus::Unknown {
                changes.push(Change::Reported {
                    scheduled_ms: o.scheduled_ms,
                });
            }
            return false;
        }
        if now_ms - o.scheduled_ms > cfg.keep_ms {
            return false;
        }
        if o.status == FiringStatus::Unknown && (caught_up || reported.said_missed(o.scheduled_ms))
        {
            o.status = FiringStatus::Missed;
            changes.push(Change::Missed {
                scheduled_ms: o.scheduled_ms,
                was_unknown: true,
            });
        }
        true
    });
    // Then the instants that came due since the last step (at most `keep` back).
    let from = st.checked_until_ms.max(now_ms - cfg.keep_ms);
    if from < end {
        let after = DateTime::from_timestamp_millis(from).unwrap_or_default();
        for at in expected.schedule.iter_after(after, expected.tz) {
            let t = at.timestamp_millis();
            if t > end {
                break;
            }
            if reported.ran(t) {
                continue;
            }
            let status = if caught_up || reported.said_missed(t) {
                changes.push(Change::Missed {
                    scheduled_ms: t,
                    was_unknown: false,
                });
                FiringStatus::Missed
            } else {
                changes.push(Change::Unknown { scheduled_ms: t });
                FiringStatus::Unknown
            };
            st.open.push(OpenFiring {
                scheduled_ms: t,
                status,
                version: expected.version,
                since_ms: now_ms,
            });
        }
        st.checked_until_ms = end;
    }
    if st.open.len() > cfg.max_open {
        let drop = st.open.len() - cfg.max_open;
        st.open.drain(..drop);
        st.overflow += drop as u64;
    }
    (Some(st), changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    // 2026-01-01T00:00:00Z
    const T0: i64 = 1_767_225_600_000;

    fn every_minute() -> Schedule {
        Schedule::parse("* * * * *").expect("valid")
    }

    fn cfg() -> WatchConfig {
        WatchConfig {
            grace_ms: 2 * MIN,
            keep_ms: 60 * MIN,
            max_open: 1_000,
        }
    }

    fn exp(s: &Schedule) -> Option<Expected<'_>> {
        Some(Expected {
            schedule: s,
            tz: Tz::UTC,
            version: 3,
        })
    }

    fn ran(ts: &[i64]) -> Reported {
        Reported {
            ran: ts.to_vec(),
            missed: Vec::new(),
        }
    }

    fn open_at(st: &WatchState) -> Vec<(i64, FiringStatus)> {
        st.open.iter().map(|o| (o.scheduled_ms, o.status)).collect()
    }

    /// A connected agent that reports every firing has nothing open; one that stops reporting
    /// has each unreported firing listed as missed once the grace period has passed.
    #[test]
    fn connected_agent_missing_firings_is_missed() {
        let s = every_minute();
        let link = Link::Connected {
            since_ms: T0 - 60 * MIN,
        };
        let (st, ch) = step(None, exp(&s), &Reported::default(), link, T0, &cfg());
        assert!(
            ch.is_empty(),
            "watching starts now: nothing before is judged"
        );
        // Minutes T0+1m .. T0+5m came due by T0+7m; the agent reported only T0+1m and T0+2m.
        let reported = ran(&[T0 + MIN, T0 + 2 * MIN]);
        let (st, ch) = step(st, exp(&s), &reported, link, T0 + 7 * MIN, &cfg());
        let st = st.expect("watching");
        assert_eq!(
            open_at(&st),
            vec![
                (T0 + 3 * MIN, FiringStatus::Missed),
                (T0 + 4 * MIN, FiringStatus::Missed),
                (T0 + 5 * MIN, FiringStatus::Missed),
            ]
        );
        assert_eq!(ch.len(), 3);
        assert_eq!(st.checked_until_ms, T0 + 5 * MIN);
        // The next step lists nothing twice.
        let (st2, ch) = step(
            Some(st.clone()),
            exp(&s),
            &reported,
            link,
            T0 + 7 * MIN,
            &cfg(),
        );
        assert!(ch.is_empty());
        assert_eq!(st2, Some(st));
    }

    /// A cut-off agent's firings are unknown, not missed; when it comes back and its backlog
    /// arrives, the ones it ran clear and the rest become missed once it has been connected
    /// for the grace period.
    #[test]
    fn disconnected_agent_is_unknown_until_it_reports() {
        let s = every_minute();
        let (st, _) = step(
            None,
            exp(&s),
            &Reported::default(),
            Link::Disconnected,
            T0,
            &cfg(),
        );
        let (st, ch) = step(
            st,
            exp(&s),
            &Reported::default(),
            Link::Disconnected,
            T0 + 5 * MIN,
            &cfg(),
        );
        let st = st.expect("watching");
        assert!(
            open_at(&st)
                .iter()
                .all(|(_, s)| *s == FiringStatus::Unknown)
        );
        // T0+1m .. T0+3m came due (grace 2 min), none reported.
        assert_eq!(open_at(&st).len(), 3, "{ch:?}");
        // Back at T0+10m: its backlog has T0+1m and T0+3m.
        let back = Link::Connected {
            since_ms: T0 + 10 * MIN,
        };
        let reported = ran(&[T0 + MIN, T0 + 3 * MIN]);
        let (st, ch) = step(Some(st), exp(&s), &reported, back, T0 + 10 * MIN, &cfg());
        let st = st.expect("watching");
        assert!(ch.contains(&Change::Reported {
            scheduled_ms: T0 + 3 * MIN
        }));
        assert!(ch.contains(&Change::Reported {
            scheduled_ms: T0 + MIN
        }));
        assert!(
            open_at(&st)
                .iter()
                .all(|(_, s)| *s == FiringStatus::Unknown),
            "connected for less than the grace period: still unknown"
        );
        // Connected for the grace period: what is still unreported is missed.
        let (st, ch) = step(Some(st), exp(&s), &reported, back, T0 + 12 * MIN, &cfg());
        let st = st.expect("watching");
        assert!(open_at(&st).iter().all(|(_, s)| *s == FiringStatus::Missed));
        assert!(ch.contains(&Change::Missed {
            scheduled_ms: T0 + 2 * MIN,
            was_unknown: true
        }));
        assert!(
            !open_at(&st)
                .iter()
                .any(|(t, _)| *t == T0 + 3 * MIN || *t == T0 + MIN)
        );
    }

    /// A firing the agent itself recorded as missed (stopped, catch-up policy) is missed even
    /// before the agent has been connected for the grace period.
    #[test]
    fn agent_recorded_missed_firings_are_missed_at_once() {
        let s = every_minute();
        let (st, _) = step(
            None,
            exp(&s),
            &Reported::default(),
            Link::Disconnected,
            T0,
            &cfg(),
        );
        let reported = Reported {
            ran: Vec::new(),
            missed: vec![(T0 + MIN, T0 + 2 * MIN)],
        };
        let (st, _) = step(
            st,
            exp(&s),
            &reported,
            Link::Disconnected,
            T0 + 5 * MIN,
            &cfg(),
        );
        let st = st.expect("watching");
        let statuses = open_at(&st);
        assert!(statuses.contains(&(T0 + MIN, FiringStatus::Missed)));
        assert!(statuses.contains(&(T0 + 2 * MIN, FiringStatus::Missed)));
        assert!(statuses.contains(&(T0 + 3 * MIN, FiringStatus::Unknown)));
    }

    /// No expected firings (paused, unassigned) ends the watch; old open firings age out; the
    /// open list is bounded.
    #[test]
    fn paused_ends_the_watch_old_entries_age_out_and_the_list_is_bounded() {
        let s = every_minute();
        let link = Link::Connected {
            since_ms: T0 - 600 * MIN,
        };
        let (st, _) = step(None, exp(&s), &Reported::default(), link, T0, &cfg());
        let (st, _) = step(st, None, &Reported::default(), link, T0 + MIN, &cfg());
        assert_eq!(st, None);
        let small = WatchConfig {
            max_open: 3,
            ..cfg()
        };
        let (st, _) = step(None, exp(&s), &Reported::default(), link, T0, &small);
        let (st, _) = step(
            st,
            exp(&s),
            &Reported::default(),
            link,
            T0 + 20 * MIN,
            &small,
        );
        let st = st.expect("watching");
        assert_eq!(st.open.len(), 3);
        assert_eq!(st.overflow, 15);
        assert_eq!(
            st.open[0].scheduled_ms,
            T0 + 16 * MIN,
            "the newest are kept"
        );
        // Past keep_ms every open firing ages out.
        let (st, _) = step(Some(st), exp(&s), &ran(&[]), link, T0 + 200 * MIN, &cfg());
        let st = st.expect("watching");
        assert!(st.open.iter().all(|o| o.scheduled_ms >= T0 + 140 * MIN));
    }

    /// The span to load reports for covers the oldest unknown firing and the new instants; with
    /// nothing due and nothing unknown there is nothing to load (missed firings are final).
    #[test]
    fn needed_span_covers_unknown_and_new() {
        let s = every_minute();
        let open = |status| WatchState {
            checked_until_ms: T0,
            open: vec![OpenFiring {
                scheduled_ms: T0 - 10 * MIN,
                status,
                version: 1,
                since_ms: T0,
            }],
            overflow: 0,
        };
        let e = exp(&s);
        let unknown = open(FiringStatus::Unknown);
        assert_eq!(
            needed_span(Some(&unknown), e.as_ref(), T0 + 5 * MIN, &cfg()),
            Some((T0 - 10 * MIN, T0 + 3 * MIN))
        );
        let missed = open(FiringStatus::Missed);
        assert_eq!(
            needed_span(Some(&missed), e.as_ref(), T0 + 5 * MIN, &cfg()),
            Some((T0 + 1, T0 + 3 * MIN))
        );
        assert_eq!(
            needed_span(Some(&missed), e.as_ref(), T0 + MIN, &cfg()),
            None,
            "nothing due before T0 + grace"
        );
        assert_eq!(needed_span(None, e.as_ref(), T0, &cfg()), None);
    }
}
