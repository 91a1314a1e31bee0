//! Trigger rules: whether a pending task is ready, must wait, or can no longer run, decided from
//! counts over its upstream tasks' states (the engine keeps the counts in step as states change).

use outpost_common::model::TriggerRule;
use outpost_common::record::TaskState;

/// Counts over a task's upstream tasks, what [`evaluate_counts`] decides from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// Number of upstream tasks.
    pub total: u32,
    /// How many are terminal.
    pub terminal: u32,
    /// How many `Succeeded`.
    pub succeeded: u32,
    /// How many are failed-ish (`Failed` or `UpstreamFailed`).
    pub failed: u32,
}

impl UpstreamCounts {
    /// Count the given upstream states.
    pub fn of(upstream: &[TaskState]) -> UpstreamCounts {
        let mut c = UpstreamCounts {
            total: upstream.len() as u32,
            ..UpstreamCounts::default()
        };
        for &s in upstream {
            c.add(s);
        }
        c
    }

    pub(super) fn add(&mut self, s: TaskState) {
        if s.is_terminal() {
            self.terminal += 1;
        }
        if s == TaskState::Succeeded {
            self.succeeded += 1;
        }
        if failed_ish(s) {
            self.failed += 1;
        }
    }

    pub(super) fn remove(&mut self, s: TaskState) {
        if s.is_terminal() {
            self.terminal = self.terminal.saturating_sub(1);
        }
        if s == TaskState::Succeeded {
            self.succeeded = self.succeeded.saturating_sub(1);
        }
        if failed_ish(s) {
            self.failed = self.failed.saturating_sub(1);
        }
    }
}

/// What a trigger rule says about a pending task, given its upstream states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleVerdict {
    /// Not decided yet.
    Wait,
    /// The task may run.
    Ready,
    /// The rule can no longer be met; the task ends in this state.
    Unmet(TaskState),
}

pub(super) fn failed_ish(s: TaskState) -> bool {
    matches!(s, TaskState::Failed | TaskState::UpstreamFailed)
}

/// Evaluate `rule` over the states of a task's upstream tasks (see the module docs).
pub fn evaluate_rule(rule: TriggerRule, upstream: &[TaskState]) -> RuleVerdict {
    evaluate_counts(rule, UpstreamCounts::of(upstream))
}

/// Evaluate `rule` from counts over a task's upstream tasks; same verdicts as [`evaluate_rule`]
/// on the states counted.
pub fn evaluate_counts(rule: TriggerRule, counts: UpstreamCounts) -> RuleVerdict {
    let UpstreamCounts {
        total: n,
        terminal,
        succeeded,
        failed,
    } = counts;
    if n == 0 {
        return RuleVerdict::Ready;
    }
    let all_done = terminal == n;
    let unmet = |needs_success: bool| {
        if needs_success && failed > 0 {
            RuleVerdict::Unmet(TaskState::UpstreamFailed)
        } else {
            RuleVerdict::Unmet(TaskState::Skipped)
        }
    };
    match rule {
        TriggerRule::AllSuccess => {
            if succeeded == n {
                RuleVerdict::Ready
            } else if terminal > succeeded {
                unmet(true)
            } else {
                RuleVerdict::Wait
            }
        }
        TriggerRule::AllDone => {
            if all_done {
                RuleVerdict::Ready
            } else {
                RuleVerdict::Wait
            }
        }
        TriggerRule::AllFailed => {
            if failed == n {
                RuleVerdict::Ready
            } else if terminal > failed {
                unmet(false)
            } else {
                RuleVerdict::Wait
            }
        }
        TriggerRule::OneSuccess => {
            if succeeded > 0 {
                RuleVerdict::Ready
            } else if all_done {
                unmet(true)
            } else {
                RuleVerdict::Wait
            }
        }
        TriggerRule::OneFailed => {
            if failed > 0 {
                RuleVerdict::Ready
            } else if all_done {
                unmet(false)
            } else {
                RuleVerdict::Wait
            }
        }
        TriggerRule::NoneFailed => {
            if failed > 0 {
                unmet(true)
            } else if all_done {
                RuleVerdict::Ready
            } else {
                RuleVerdict::Wait
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The rule table as it was written over states (before counters): the reference
    /// `evaluate_counts` must agree with.
    fn reference(rule: TriggerRule, upstream: &[TaskState]) -> RuleVerdict {
        if upstream.is_empty() {
            return RuleVerdict::Ready;
        }
        let n = upstream.len();
        let terminal = upstream.iter().filter(|s| s.is_terminal()).count();
        let succeeded = upstream
            .iter()
            .filter(|s| **s == TaskState::Succeeded)
            .count();
        let failed = upstream.iter().filter(|s| failed_ish(**s)).count();
        let all_done = terminal == n;
        let unmet = |needs_success: bool| {
            if needs_success && failed > 0 {
                RuleVerdict::Unmet(TaskState::UpstreamFailed)
            } else {
                RuleVerdict::Unmet(TaskState::Skipped)
            }
        };
        match rule {
            TriggerRule::AllSuccess if succeeded == n => RuleVerdict::Ready,
            TriggerRule::AllSuccess if terminal > succeeded => unmet(true),
            TriggerRule::AllDone if all_done => RuleVerdict::Ready,
            TriggerRule::AllFailed if failed == n => RuleVerdict::Ready,
            TriggerRule::AllFailed if terminal > failed => unmet(false),
            TriggerRule::OneSuccess if succeeded > 0 => RuleVerdict::Ready,
            TriggerRule::OneSuccess if all_done => unmet(true),
            TriggerRule::OneFailed if failed > 0 => RuleVerdict::Ready,
            TriggerRule::OneFailed if all_done => unmet(false),
            TriggerRule::NoneFailed if failed > 0 => unmet(true),
            TriggerRule::NoneFailed if all_done => RuleVerdict::Ready,
            _ => RuleVerdict::Wait,
        }
    }

    pub(in crate::engine) const STATES: [TaskState; 9] = [
        TaskState::Pending,
        TaskState::Ready,
        TaskState::Running,
        TaskState::UpForRetry,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
        TaskState::Cancelled,
    ];
    const RULES: [TriggerRule; 6] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllDone,
        TriggerRule::AllFailed,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::NoneFailed,
    ];

    /// Every list of 0 to 3 upstream states, under every rule: counts decide as states did.
    #[test]
    fn counts_decide_like_the_state_table() {
        let mut lists: Vec<Vec<TaskState>> = vec![vec![]];
        for _ in 0..3 {
            let longer: Vec<Vec<TaskState>> = lists
                .iter()
                .filter(|l| l.len() == lists.last().map_or(0, Vec::len))
                .flat_map(|l| {
                    STATES.iter().map(move |s| {
                        let mut m = l.clone();
                        m.push(*s);
                        m
                    })
                })
                .collect();
            lists.extend(longer);
        }
        assert_eq!(lists.len(), 1 + 9 + 81 + 729);
        for rule in RULES {
            for l in &lists {
                assert_eq!(
                    evaluate_counts(rule, UpstreamCounts::of(l)),
                    reference(rule, l),
                    "{rule:?} over {l:?}"
                );
                assert_eq!(evaluate_rule(rule, l), reference(rule, l));
            }
        }
    }
}
