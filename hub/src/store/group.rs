//! Group commit: writers that arrive while a commit is on disk share the next write transaction
//! and its one durable commit.
//!
//! redb has one writer, and every durable commit costs an fsync (two with two-phase commit). A
//! thousand agent sessions each committing its own status batch, assignment or deploy result
//! would queue a thousand commits one behind the other. Instead, [`Store::write`] runs the
//! caller's closure inside the open group transaction (on the caller's own thread, so it may
//! borrow), and the last member to run commits for all. While that commit is on disk the next
//! arrivals wait; when it is done they form the next group. Nobody's call returns `Ok` before
//! the commit that holds its writes is durable: acknowledging after `Store::ingest` stays safe.
//!
//! A member whose closure fails leaves the shared transaction half written, so the group is
//! aborted: the failing caller gets its own error, and the members that had already run in
//! that group run their closures again in a new one (closures are `FnMut` and must not keep
//! effects outside the transaction between calls). A failed commit fails every member of its
//! group; nothing of it is durable. A closure that panics is handled like one that fails, and
//! its panic goes on to its caller. A closure must not call another `Store` write (the group
//! lock is not reentrant); reads on their own read transaction are fine.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use redb::WriteTransaction;

use super::error::{DbError, StoreError};
use super::file::Store;

/// The shared state of the group commit (one per [`Store`]).
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    wake: Condvar,
    stats: Mutex<GroupStats>,
}

#[derive(Default)]
struct State {
    /// The open group's transaction (none while a commit is on disk, or between groups).
    txn: Option<WriteTransaction>,
    /// The open (or last) group's number.
    group: u64,
    /// Members whose closure has run in the open group.
    members: usize,
    /// Callers inside [`Store::write`] whose closure has not run yet (in this round).
    pending: usize,
    /// A commit is on disk (redb takes no new write transaction until it ends).
    committing: bool,
    /// Outcomes of finished groups, until each of their waiting members has read it.
    outcomes: HashMap<u64, (Outcome, usize)>,
}

#[derive(Clone)]
enum Outcome {
    Committed,
    Failed(String),
    /// A member failed; the transaction was dropped: run again.
    Retry,
}

/// Counters of the group commit (for the hub's metrics and benchmarks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    /// Durable commits made by groups.
    pub commits: u64,
    /// Closures committed by them (commits × mean group size).
    pub members: u64,
    /// The largest group committed.
    pub largest: u64,
    /// Groups aborted because one member failed (their other members ran again).
    pub retries: u64,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic inside a member's closure leaves the state consistent enough: the open
        // transaction (if any) is aborted by the next caller's failure to find it committed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note(&self, f: impl FnOnce(&mut GroupStats)) {
        f(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A member failed (or panicked) half way: drop the group's transaction; its members that ran
/// go again.
fn abort_group(st: &mut State, group: u64, g: &GroupCommit) {
    drop(st.txn.take());
    let ran = st.members;
    if ran > 0 {
        st.outcomes.insert(group, (Outcome::Retry, ran));
        g.note(|s| s.retries += 1);
    }
    g.wake.notify_all();
}

impl Store {
    /// Run `f` in the current group's write transaction and return its value once the group's
    /// commit is durable. See the [module docs](self).
    pub(super) fn write<T>(
        &self,
        mut f: impl FnMut(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let g = &self.group;
        let mut st = g.lock();
        st.pending += 1;
        loop {
            while st.committing {
                st = g.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            if st.txn.is_none() {
                match self.begin_txn() {
                    Ok(t) => {
                        st.txn = Some(t);
                        st.group += 1;
                        st.members = 0;
                    }
                    Err(e) => {
                        st.pending -= 1;
                        g.wake.notify_all();
                        return Err(e);
                    }
                }
            }
            let group = st.group;
            // A panic inside `f` must not leave the group waiting for this member forever:
            // the half-written transaction is dropped like a failure's, then the panic goes on.
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match st.txn.as_ref() {
                    Some(txn) => f(txn),
                    None => Err(DbError::Inconsistent("group transaction vanished".into()).into()),
                }));
            st.pending -= 1;
            let r = match r {
                Ok(r) => r,
                Err(panic) => {
                    abort_group(&mut st, group, g);
                    drop(st);
                    std::panic::resume_unwind(panic);
                }
            };
            let value = match r {
                Ok(v) => v,
                Err(e) => {
                    abort_group(&mut st, group, g);
                    return Err(e);
                }
            };
            st.members += 1;
            if st.pending == 0 {
                // Nobody else is about to join: commit for the whole group.
                let Some(txn) = st.txn.take() else {
                    return Err(DbError::Inconsistent("group transaction vanished".into()).into());
                };
                let members = st.members;
                st.committing = true;
                drop(st);
                let result = txn.commit();
                let mut st = g.lock();
                st.committing = false;
                let outcome = match &result {
                    Ok(()) => Outcome::Committed,
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                if members > 1 {
                    st.outcomes.insert(group, (outcome, members - 1));
                }
                g.wake.notify_all();
                drop(st);
                if result.is_ok() {
                    g.note(|s| {
                        s.commits += 1;
                        s.members += members as u64;
                        s.largest = s.largest.max(members as u64);
                    });
                }
                result?;
                return Ok(value);
            }
            // Wait for the member that commits this group.
            let outcome = loop {
                if let Some((outcome, left)) = st.outcomes.get_mut(&group) {
                    let outcome = outcome.clone();
                    *left -= 1;
                    if *left == 0 {
                        st.outcomes.remove(&group);
                    }
                    break outcome;
                }
                st = g.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            };
            match outcome {
                Outcome::Committed => return Ok(value),
                Outcome::Failed(e) => {
                    let e = std::io::Error::other(format!("the group's commit failed: {e}"));
                    return Err(DbError::Redb(redb::Error::Io(e)).into());
                }
                Outcome::Retry => st.pending += 1,
            }
        }
    }

    /// The group commit's counters since the store was opened.
    pub fn group_stats(&self) -> GroupStats {
        *self
            .group
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
