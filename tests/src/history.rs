//! A history of operations against several hub replicas, in the Jepsen style: every operation
//! is recorded with its invocation and completion on one monotonic clock, the replica it went
//! to, and what it returned; checkers then verify properties of the whole history rather than
//! of one moment. An operation that failed (the replica was killed, paused, unreachable) is
//! indeterminate: recorded, and never counted as evidence either way.

use std::time::Instant;

/// What one operation observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The replica said it acts as leader with this epoch.
    Leader(i64),
    /// The replica said it does not act as leader.
    Follower,
    /// No answer (indeterminate).
    Failed,
}

/// One recorded operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// The replica (process) it went to.
    pub process: String,
    /// When it was invoked.
    pub invoke: Instant,
    /// When it completed.
    pub complete: Instant,
    /// What it observed.
    pub seen: Seen,
}

/// A history of operations.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Every operation, in invocation order.
    pub ops: Vec<Op>,
}

impl History {
    /// Invoke `f` against `process` and record it.
    pub fn record(&mut self, process: &str, f: impl FnOnce() -> Seen) -> Seen {
        let invoke = Instant::now();
        let seen = f();
        self.ops.push(Op {
            process: process.to_string(),
            invoke,
            complete: Instant::now(),
            seen,
        });
        seen
    }

    fn leaders(&self) -> impl Iterator<Item = (&Op, i64)> {
        self.ops.iter().filter_map(|o| match o.seen {
            Seen::Leader(e) => Some((o, e)),
            _ => None,
        })
    }

    /// Epochs never go backwards in real time: a leader observation invoked after another one
    /// completed has an epoch at least as high.
    pub fn check_epochs_never_go_back(&self) -> Result<(), String> {
        for (a, ea) in self.leaders() {
            for (b, eb) in self.leaders() {
                if a.complete < b.invoke && eb < ea {
                    return Err(format!(
                        "epoch went back: {} led with {ea}, then {} led with {eb}",
                        a.process, b.process
                    ));
                }
            }
        }
        Ok(())
    }

    /// One leader per epoch: no two replicas ever led with the same epoch.
    pub fn check_one_replica_per_epoch(&self) -> Result<(), String> {
        let mut owner: std::collections::BTreeMap<i64, &str> = Default::default();
        for (o, e) in self.leaders() {
            match owner.get(&e) {
                Some(p) if *p != o.process => {
                    return Err(format!("epoch {e} led by both {p} and {}", o.process));
                }
                _ => {
                    owner.insert(e, &o.process);
                }
            }
        }
        Ok(())
    }

    /// Every check.
    pub fn check(&self) -> Result<(), String> {
        self.check_epochs_never_go_back()?;
        self.check_one_replica_per_epoch()
    }

    /// The leaders in the order they were first seen, with their epochs.
    pub fn terms(&self) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = Vec::new();
        for (o, e) in self.leaders() {
            if !out.iter().any(|(_, x)| *x == e) {
                out.push((o.process.clone(), e));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn op(p: &str, t0: Instant, from: u64, to: u64, seen: Seen) -> Op {
        Op {
            process: p.into(),
            invoke: t0 + Duration::from_millis(from),
            complete: t0 + Duration::from_millis(to),
            seen,
        }
    }

    #[test]
    fn a_clean_failover_passes() {
        let t = Instant::now();
        let h = History {
            ops: vec![
                op("a", t, 0, 1, Seen::Leader(5)),
                op("b", t, 0, 1, Seen::Follower),
                op("a", t, 10, 11, Seen::Failed),
                op("b", t, 20, 21, Seen::Leader(9)),
            ],
        };
        h.check().unwrap();
        assert_eq!(h.terms(), vec![("a".into(), 5), ("b".into(), 9)]);
    }

    #[test]
    fn a_stale_leader_after_a_newer_epoch_fails() {
        let t = Instant::now();
        let h = History {
            ops: vec![
                op("a", t, 0, 1, Seen::Leader(5)),
                op("b", t, 10, 11, Seen::Leader(9)),
                op("a", t, 20, 21, Seen::Leader(5)),
            ],
        };
        assert!(h.check_epochs_never_go_back().is_err());
    }

    #[test]
    fn two_replicas_with_one_epoch_fail() {
        let t = Instant::now();
        let h = History {
            ops: vec![
                op("a", t, 0, 1, Seen::Leader(5)),
                op("b", t, 0, 1, Seen::Leader(5)),
            ],
        };
        assert!(h.check_one_replica_per_epoch().is_err());
    }

    #[test]
    fn overlapping_observations_of_a_handover_are_not_a_violation() {
        let t = Instant::now();
        // a's scrape began before b's completed: either order is possible.
        let h = History {
            ops: vec![
                op("b", t, 0, 10, Seen::Leader(9)),
                op("a", t, 5, 15, Seen::Leader(5)),
            ],
        };
        h.check().unwrap();
    }
}
