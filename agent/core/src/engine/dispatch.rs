//! Admission and dispatch: queued runs admitted, ready tasks started in queue order while slots
//! and resources are free, and attempts committed ahead ("Dispatch ahead" in the engine's docs).

use super::*;

impl Engine {
    pub(super) fn fits(&self, resources: &BTreeMap<String, u32>) -> bool {
        resources.iter().all(|(name, &units)| {
            let cap = self.cfg.resources.get(name).copied().unwrap_or(0);
            let used = self.in_use.get(name).copied().unwrap_or(0);
            used.checked_add(units).is_some_and(|t| t <= cap)
        })
    }

    pub(super) fn release(&mut self, resources: &BTreeMap<String, u32>) {
        self.running = self.running.saturating_sub(1);
        for (name, &units) in resources {
            if let Some(u) = self.in_use.get_mut(name) {
                *u = u.saturating_sub(units);
            }
        }
    }

    /// Admit queued runs, then start ready tasks in queue order while slots are free.
    pub(super) fn schedule(&mut self, now: Now) {
        if self.draining {
            return;
        }
        self.admit_queued(now);
        // Walk the queue from its head with a cursor (nothing is inserted meanwhile); tasks
        // passed over for busy resources stay queued.
        let mut cursor: Option<ReadyKey> = None;
        while self.running < self.cfg.max_running {
            let next = match &cursor {
                None => self.ready.first(),
                Some(c) => self.ready.range((Excluded(c), Unbounded)).next(),
            };
            let Some(key) = next.cloned() else { break };
            cursor = Some(key.clone());
            let (_, _, ref id, i) = key;
            let Some(run) = self.runs.get(id) else {
                self.ready.remove(&key);
                continue;
            };
            let ts = &run.tasks[i];
            let is_dispatched = ts.dispatched && ts.rec.state == TaskState::Running;
            if ts.rec.state != TaskState::Ready && !is_dispatched {
                self.ready.remove(&key);
                continue;
            }
            let resources = run.wf.tasks[i].resources.clone();
            if !self.fits(&resources) {
                continue;
            }
            self.ready.remove(&key);
            for (name, units) in &resources {
                *self.in_use.entry(name.clone()).or_insert(0) += units;
            }
            self.running += 1;
            let Some(run) = self.runs.get_mut(id) else {
                continue;
            };
            let timeout = run.wf.tasks[i].timeout;
            run.set_state(i, TaskState::Running);
            let ts = &mut run.tasks[i];
            if is_dispatched {
                // Promote: the attempt is already committed (by an earlier burst, unless it is
                // fresh, in which case it rides on this burst's commit like any spawn).
                self.dispatched = self.dispatched.saturating_sub(1);
                ts.dispatched = false;
                let fresh = std::mem::take(&mut ts.fresh);
                let attempt = ts.rec.attempts.len() as u32;
                let deferred = fresh && self.defer_starts;
                if let Some(a) = ts.rec.attempts.last_mut() {
                    a.dispatched_ms = deferred.then_some(now.wall_ms());
                    a.started_ms = now.wall_ms();
                }
                ts.rec.updated_ms = now.wall_ms();
                ts.deadline = timeout.map(|t| now.mono.saturating_add(t));
                ts.kill = None;
                sync_timer(&mut self.timers, id, i, ts);
                self.dirty.insert((id.clone(), Some(i)));
                let act = if fresh {
                    Action::Spawn {
                        run_id: id.clone(),
                        task: i,
                        attempt,
                    }
                } else {
                    Action::Start {
                        run_id: id.clone(),
                        task: i,
                        attempt,
                    }
                };
                if fresh {
                    self.pending.push(act);
                } else {
                    self.early.push(act);
                }
                continue;
            }
            let attempt = open_attempt(&mut ts.rec, now, self.defer_starts);
            ts.rec.updated_ms = now.wall_ms();
            ts.deadline = timeout.map(|t| now.mono.saturating_add(t));
            ts.kill = None;
            sync_timer(&mut self.timers, id, i, ts);
            self.dirty.insert((id.clone(), Some(i)));
            self.pending.push(Action::Spawn {
                run_id: id.clone(),
                task: i,
                attempt,
            });
        }
        self.dispatch_ahead(now);
    }

    /// With every slot taken, commit attempts for the next ready tasks (in queue order) so that
    /// they start without a commit when slots free up. See "Dispatch ahead" in the module docs.
    pub(super) fn dispatch_ahead(&mut self, now: Now) {
        // Refill only once at most half is left, so that one commit carries several dispatches
        // (and the exits that arrived meanwhile) instead of one commit per freed slot.
        if self.dispatched * 2 > self.cfg.dispatch_ahead {
            return;
        }
        self.top_up(now);
    }

    /// Commit is due anyway (the driver's group commit is about to write held-back records):
    /// fill the dispatch queue up to `dispatch_ahead` so that this commit carries the next
    /// dispatches too. Returns whether it dispatched anything (then poll the burst: it ends
    /// with a `Flush`). See "Dispatch ahead" in the module docs.
    pub fn top_up(&mut self, now: Now) -> bool {
        if self.draining
            || self.running < self.cfg.max_running
            || self.dispatched >= self.cfg.dispatch_ahead
        {
            return false;
        }
        let before = self.dispatched;
        let want = self.cfg.dispatch_ahead - self.dispatched;
        let picks: Vec<ReadyKey> = self
            .ready
            .iter()
            .filter(|(_, _, id, i)| {
                self.runs
                    .get(id)
                    .and_then(|r| r.tasks.get(*i))
                    .is_some_and(|t| t.rec.state == TaskState::Ready)
            })
            .take(want)
            .cloned()
            .collect();
        for (_, _, id, i) in picks {
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            if i >= run.tasks.len() {
                continue;
            }
            run.set_state(i, TaskState::Running);
            let ts = &mut run.tasks[i];
            open_attempt(&mut ts.rec, now, true);
            ts.rec.updated_ms = now.wall_ms();
            ts.dispatched = true;
            ts.fresh = true;
            ts.deadline = None;
            ts.kill = None;
            sync_timer(&mut self.timers, &id, i, ts);
            self.dispatched += 1;
            self.must_flush = true;
            self.dirty.insert((id.clone(), Some(i)));
            self.fresh_claims.push((id, i));
        }
        self.dispatched > before
    }

    pub(super) fn admit_queued(&mut self, now: Now) {
        let names: Vec<String> = self.queued.keys().cloned().collect();
        for name in names {
            while let Some(first) = self.queued.get(&name).and_then(|q| q.first().cloned()) {
                let bound = match self.runs.get(&first.1) {
                    Some(r) => r.wf.max_active_runs.max(1) as usize,
                    None => {
                        if let Some(q) = self.queued.get_mut(&name) {
                            q.remove(&first);
                        }
                        continue;
                    }
                };
                if self.active_runs(&name).len() >= bound {
                    break;
                }
                if let Some(q) = self.queued.get_mut(&name) {
                    q.remove(&first);
                }
                self.start_run(&first.1, now);
            }
        }
        self.queued.retain(|_, q| !q.is_empty());
    }
}
