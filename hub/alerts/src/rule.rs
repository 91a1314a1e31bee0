//! Rules: which inputs they select (event kind, pools, workflows, labels) and how they notify
//! (channels, grouping, throttling, thresholds for level conditions).

use minicbor::{Decode, Encode};

use crate::notification::UnixMillis;

/// The kinds of event a rule can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum EventKind {
    #[n(0)]
    RunFailed,
    #[n(1)]
    RunRecovered,
    #[n(2)]
    DeadlineMissed,
    #[n(3)]
    FiringMissed,
    #[n(4)]
    AgentOffline,
    #[n(5)]
    ClockOffset,
    #[n(6)]
    DiskLow,
    #[n(7)]
    ProbationRevert,
    #[n(8)]
    RolloutRolledBack,
    #[n(9)]
    RolloutWaiting,
    #[n(10)]
    CertificateExpiring,
    #[n(11)]
    DuplicateIdentity,
}

impl EventKind {
    /// Every kind, in configuration-documentation order.
    pub const ALL: [EventKind; 12] = [
        EventKind::RunFailed,
        EventKind::RunRecovered,
        EventKind::DeadlineMissed,
        EventKind::FiringMissed,
        EventKind::AgentOffline,
        EventKind::ClockOffset,
        EventKind::DiskLow,
        EventKind::ProbationRevert,
        EventKind::RolloutRolledBack,
        EventKind::RolloutWaiting,
        EventKind::CertificateExpiring,
        EventKind::DuplicateIdentity,
    ];

    /// The name used in `hub.toml` and in notifications (`run_failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunFailed => "run_failed",
            EventKind::RunRecovered => "run_recovered",
            EventKind::DeadlineMissed => "deadline_missed",
            EventKind::FiringMissed => "firing_missed",
            EventKind::AgentOffline => "agent_offline",
            EventKind::ClockOffset => "clock_offset",
            EventKind::DiskLow => "disk_low",
            EventKind::ProbationRevert => "probation_revert",
            EventKind::RolloutRolledBack => "rollout_rolled_back",
            EventKind::RolloutWaiting => "rollout_waiting",
            EventKind::CertificateExpiring => "certificate_expiring",
            EventKind::DuplicateIdentity => "duplicate_identity",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// When a `run_failed` rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum When {
    /// Every failure.
    #[default]
    Every,
    /// The first failure in a row (per agent and workflow).
    First,
    /// The N-th failure in a row (once per streak).
    After(u32),
}

impl When {
    /// Parse `every`, `first` or `after N`.
    pub fn parse(s: &str) -> Result<When, String> {
        let s = s.trim();
        match s {
            "every" => Ok(When::Every),
            "first" => Ok(When::First),
            _ => match s.strip_prefix("after") {
                Some(n) => match n.trim().parse::<u32>() {
                    Ok(n) if n >= 1 => Ok(When::After(n)),
                    _ => Err(format!(
                        "bad count in {s:?} (expected \"after N\" with N >= 1)"
                    )),
                },
                None => Err(format!("{s:?} is not one of every, first, \"after N\"")),
            },
        }
    }

    /// Whether the `streak`-th failure in a row fires.
    pub fn fires(self, streak: u32) -> bool {
        match self {
            When::Every => true,
            When::First => streak == 1,
            When::After(n) => streak == n,
        }
    }
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    pub event: EventKind,
    /// `run_failed` only.
    pub when: When,
    /// Empty: any pool.
    pub pools: Vec<String>,
    /// Exact names or globs with `*`; empty: any workflow.
    pub workflows: Vec<String>,
    /// Every pair must be among the agent's labels.
    pub labels: Vec<(String, String)>,
    pub channels: Vec<String>,
    pub group_wait_ms: i64,
    pub repeat_interval_ms: i64,
    /// The level condition's threshold: `for` (agent_offline, ms), `above` (clock_offset, ms),
    /// `below` (disk_low, percent free), `before` (certificate_expiring, ms). `None`: the
    /// default of [`Rule::default_threshold`].
    pub threshold: Option<i64>,
}

impl Rule {
    /// A rule with the default grouping (30 s) and throttling (1 h).
    pub fn new(name: &str, event: EventKind) -> Rule {
        Rule {
            name: name.into(),
            event,
            when: When::Every,
            pools: Vec::new(),
            workflows: Vec::new(),
            labels: Vec::new(),
            channels: Vec::new(),
            group_wait_ms: 30_000,
            repeat_interval_ms: 3_600_000,
            threshold: None,
        }
    }

    /// The threshold used when a rule sets none: offline 10 min, clock offset 2 s, disk 10 %
    /// free, certificate 14 days before expiry.
    pub fn default_threshold(event: EventKind) -> i64 {
        match event {
            EventKind::AgentOffline => 600_000,
            EventKind::ClockOffset => 2_000,
            EventKind::DiskLow => 10,
            EventKind::CertificateExpiring => 14 * 86_400_000,
            _ => 0,
        }
    }

    /// The threshold in effect.
    pub fn threshold(&self) -> i64 {
        self.threshold
            .unwrap_or_else(|| Rule::default_threshold(self.event))
    }

    /// Whether the rule selects `s` (pools, workflows, labels; each empty selector matches).
    pub fn selects(&self, s: &Subject) -> bool {
        let pools = self.pools.is_empty() || self.pools.iter().any(|p| s.pools.contains(p));
        let workflows = self.workflows.is_empty()
            || s.workflow
                .as_deref()
                .is_some_and(|w| self.workflows.iter().any(|g| glob_match(g, w)));
        let labels = self
            .labels
            .iter()
            .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v));
        pools && workflows && labels
    }
}

/// What an input or condition is about, for selectors and silences.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
pub struct Subject {
    #[n(0)]
    pub agent: Option<String>,
    #[n(1)]
    pub workflow: Option<String>,
    /// The pools the agent is a member of.
    #[n(2)]
    pub pools: Vec<String>,
    /// The agent's labels.
    #[n(3)]
    pub labels: Vec<(String, String)>,
}

/// A glob with `*` (any run of characters, possibly empty); no other metacharacters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A silence: notifications of what matches every set matcher are held back until
/// `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Silence {
    /// `s-<n>`.
    #[n(0)]
    pub id: String,
    #[n(1)]
    pub rule: Option<String>,
    #[n(2)]
    pub workflow: Option<String>,
    #[n(3)]
    pub pool: Option<String>,
    #[n(4)]
    pub agent: Option<String>,
    #[n(5)]
    pub created_ms: UnixMillis,
    #[n(6)]
    pub expires_ms: UnixMillis,
    #[n(7)]
    pub created_by: String,
    #[n(8)]
    pub comment: String,
}

impl Silence {
    /// Whether the silence holds back an item of `rule` about `s` at `now`.
    pub fn silences(&self, rule: &str, s: &Subject, now: UnixMillis) -> bool {
        now < self.expires_ms
            && self.rule.as_deref().is_none_or(|r| r == rule)
            && self
                .workflow
                .as_deref()
                .is_none_or(|w| s.workflow.as_deref().is_some_and(|x| glob_match(w, x)))
            && self
                .pool
                .as_deref()
                .is_none_or(|p| s.pools.iter().any(|x| x == p))
            && self
                .agent
                .as_deref()
                .is_none_or(|a| s.agent.as_deref() == Some(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs() {
        assert!(glob_match("plc-*", "plc-read"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxc"));
        assert!(!glob_match("plc-*", "xplc-read"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn when_parses_and_fires() {
        assert_eq!(When::parse("every"), Ok(When::Every));
        assert_eq!(When::parse("first"), Ok(When::First));
        assert_eq!(When::parse("after 3"), Ok(When::After(3)));
        assert!(When::parse("after 0").is_err());
        assert!(When::parse("sometimes").is_err());
        assert!(When::First.fires(1) && !When::First.fires(2));
        assert!(When::After(3).fires(3) && !When::After(3).fires(4));
    }

    #[test]
    fn selectors() {
        let mut r = Rule::new("r", EventKind::RunFailed);
        r.pools = vec!["line-a".into()];
        r.workflows = vec!["plc-*".into()];
        r.labels = vec![("site".into(), "sz".into())];
        let mut s = Subject {
            agent: Some("a1".into()),
            workflow: Some("plc-read".into()),
            pools: vec!["default".into(), "line-a".into()],
            labels: vec![("site".into(), "sz".into()), ("x".into(), "y".into())],
        };
        assert!(r.selects(&s));
        s.labels[0].1 = "other".into();
        assert!(!r.selects(&s));
        s.labels[0].1 = "sz".into();
        s.workflow = None;
        assert!(!r.selects(&s));
    }

    proptest! {
        #[test]
        fn star_matches_everything(t in ".{0,20}") {
            prop_assert!(glob_match("*", &t));
            prop_assert!(glob_match(&t.replace('*', ""), &t.replace('*', "")));
        }

        #[test]
        fn prefix_star_suffix(a in "[a-c]{0,4}", m in "[a-c]{0,4}", b in "[a-c]{0,4}") {
            let text = format!("{a}{m}{b}");
            let pattern = format!("{a}*{b}");
            prop_assert!(glob_match(&pattern, &text));
        }
    }
}
