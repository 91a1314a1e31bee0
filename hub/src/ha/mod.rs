//! High availability: several hub replicas, one leader.
//!
//! - [`leadership`]: the sans-IO state machine of leadership on an etcd lease (when to grant,
//!   keep alive, campaign; whether this replica may act as leader at a given time).
//! - [`LeaderGate`]: what the rest of the hub asks — "may I act as leader now, and with which
//!   epoch?". An embedded hub (no `[ha]` in hub.toml) always may. In HA mode the etcd driver
//!   (`etcd`, the `ha` feature) publishes into it, and the answer is computed from the clock
//!   at the moment of the question, so a replica that was paused or cut off never acts on a
//!   stale "yes".
//! - [`leader_tasks`]: runs what must run once (rollout controllers, alert evaluation and
//!   delivery, missed-firing evaluation, retention) only while this replica leads, restarting
//!   them from the store at every new term.
//!
//! - `desired` (the `ha` feature): keeps the store's replicated tables (desired state, agent
//!   identities, presence, the rollout and alert queues; `store/replicated.rs`) a copy of
//!   etcd's, and makes the writes the store publishes.
//! - `history` (the `ha` feature): the run history the replicas share in PostgreSQL
//!   (`[ha] postgres`; `store/history.rs`). Without it each replica keeps its own
//!   (docs/operations.md, "Run history in PostgreSQL").

pub mod leadership;

#[cfg(feature = "ha")]
pub mod desired;
#[cfg(feature = "ha")]
pub mod etcd;
#[cfg(feature = "ha")]
pub mod history;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub use leadership::{Leadership, Role};

/// Milliseconds of the machine's boot-time clock (the leadership's time base): monotonic, never
/// stepped by NTP or an operator, and, unlike `Instant` (CLOCK_MONOTONIC), still running while
/// the machine or VM is suspended. A replica suspended past its lease must see the lease as
/// gone when it resumes, or it would act as leader beside the one etcd elected meanwhile.
pub fn mono_ms() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec
        .saturating_mul(1000)
        .saturating_add(t.tv_nsec / 1_000_000)
}

/// `[ha]` of hub.toml: this replica takes part in an election on etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// `etcd`: the etcd members' client URLs (`http://host:port`).
    pub etcd: Vec<String>,
    /// `name`: this replica's name (unique among the replicas; shown as the leader).
    pub name: String,
    /// `prefix`: the key prefix of this hub's keys in etcd (several hubs may share an etcd).
    pub prefix: String,
    /// `lease_ttl`: the leader's lease; a dead leader is replaced within about this long.
    pub lease_ttl: Duration,
    /// `postgres`: the shared run history's connection string (libpq's `key=value` or
    /// `postgresql://` form; `None`: each replica keeps its own run history).
    pub postgres: Option<String>,
}

/// Default `[ha] lease_ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// Default `[ha] prefix`.
pub const DEFAULT_PREFIX: &str = "/outpost";

impl HaConfig {
    /// The election's name in etcd.
    pub fn election(&self) -> String {
        format!("{}/leader", self.prefix)
    }
    /// The key the leader writes its name and epoch to, fenced on its election key.
    pub fn leader_record(&self) -> String {
        format!("{}/leader-record", self.prefix)
    }
    /// How long before its lease could expire a leader stops acting: a tenth of the TTL.
    pub fn margin_ms(&self) -> i64 {
        i64::try_from(self.lease_ttl.as_millis() / 10).unwrap_or(500)
    }
}

/// Whether this replica may act as leader, as the etcd driver last established it.
#[derive(Debug)]
pub struct LeaderGate {
    ha: AtomicBool,
    /// The epoch of the current term (0: not leading).
    epoch: AtomicI64,
    /// Acting stops here ([`mono_ms`]).
    acting_until: AtomicI64,
    /// Terms this replica has begun.
    terms: AtomicU64,
    /// Fenced writes etcd refused (this replica had lost leadership without knowing).
    refused: AtomicU64,
    changes: tokio::sync::watch::Sender<u64>,
    /// The election key this replica holds, with its epoch (what its writes are fenced on).
    election: std::sync::Mutex<Option<(i64, Vec<u8>)>>,
    /// Every replica's election key in etcd (the replica's name): the replicas alive now (a
    /// key lives as long as its replica's lease).
    live: std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, String>>,
    /// This replica's `[ha] name`.
    name: std::sync::OnceLock<String>,
}

impl Default for LeaderGate {
    fn default() -> Self {
        LeaderGate::embedded()
    }
}

impl LeaderGate {
    /// An embedded hub's gate: always leading (epoch 0).
    pub fn embedded() -> LeaderGate {
        LeaderGate {
            ha: AtomicBool::new(false),
            epoch: AtomicI64::new(0),
            acting_until: AtomicI64::new(0),
            terms: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            changes: tokio::sync::watch::Sender::new(0),
            election: std::sync::Mutex::new(None),
            live: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            name: std::sync::OnceLock::new(),
        }
    }

    /// Switch to HA mode: not leading until the etcd driver says so.
    pub fn enable_ha(&self) {
        self.ha.store(true, Ordering::SeqCst);
        self.epoch.store(0, Ordering::SeqCst);
        self.acting_until.store(0, Ordering::SeqCst);
        self.changes.send_modify(|v| *v += 1);
    }

    /// Name this replica (`[ha] name`; once).
    pub fn set_name(&self, name: &str) {
        let _ = self.name.set(name.to_string());
    }

    /// This replica's name (empty on an embedded hub).
    pub fn name(&self) -> &str {
        self.name.get().map_or("", String::as_str)
    }

    /// Whether the hub runs in HA mode.
    pub fn is_ha(&self) -> bool {
        self.ha.load(Ordering::SeqCst)
    }

    /// The epoch this replica may act with now, or `None` when it must not act as leader.
    pub fn acting(&self) -> Option<i64> {
        if !self.is_ha() {
            return Some(0);
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        (epoch > 0 && mono_ms() < self.acting_until.load(Ordering::SeqCst)).then_some(epoch)
    }

    /// When acting ends, if leading ([`mono_ms`]; `None` in embedded mode or as follower).
    pub fn acting_until(&self) -> Option<i64> {
        (self.is_ha() && self.epoch.load(Ordering::SeqCst) > 0)
            .then(|| self.acting_until.load(Ordering::SeqCst))
    }

    /// The driver's verdict: `role`, valid until `acting_until` ([`mono_ms`]).
    pub fn publish(&self, role: Role, acting_until: i64) {
        let (epoch, until) = match role {
            Role::Leader { epoch } => (epoch, acting_until),
            Role::Follower => (0, 0),
        };
        let before = self.epoch.swap(epoch, Ordering::SeqCst);
        let before_until = self.acting_until.swap(until, Ordering::SeqCst);
        if before != epoch && epoch > 0 {
            self.terms.fetch_add(1, Ordering::SeqCst);
        }
        if before != epoch || before_until != until {
            self.changes.send_modify(|v| *v += 1);
        }
    }

    /// The election key won at `epoch` (`None`: lost or given up).
    pub fn set_election_key(&self, key: Option<(i64, Vec<u8>)>) {
        *self
            .election
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }

    /// The election key this replica holds for `epoch`, if it still holds one.
    pub fn election_key(&self, epoch: i64) -> Option<Vec<u8>> {
        match &*self
            .election
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some((e, k)) if *e == epoch => Some(k.clone()),
            _ => None,
        }
    }

    /// The replicas' election keys changed: `key` is `name`'s (`Some`) or gone (`None`).
    /// `reset` first forgets every key (a fresh read of all of them follows).
    pub fn set_live(&self, reset: bool, key: &[u8], name: Option<&str>) {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reset {
            live.clear();
        }
        match name {
            Some(n) => live.insert(key.to_vec(), n.to_string()),
            None => live.remove(key),
        };
    }

    /// The names of the replicas alive now (HA mode; empty until the driver has read them).
    pub fn live_replicas(&self) -> std::collections::HashSet<String> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Count a fenced write etcd refused.
    pub fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::SeqCst);
    }

    /// Terms begun, fenced writes refused.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.terms.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
        )
    }

    /// A receiver that sees every change of role.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// What a term of leadership starts: each is given the term's stop signal.
pub type TermTasks =
    Box<dyn Fn(tokio::sync::watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> + Send>;

/// Run `start`'s tasks while this replica leads: start them at the beginning of every term,
/// stop them (and wait for them) when it ends, until `shutdown` flips. In embedded mode that is
/// once, for the hub's life.
pub async fn leader_tasks(
    gate: std::sync::Arc<LeaderGate>,
    start: TermTasks,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut changes = gate.subscribe();
    loop {
        // Wait for a term.
        let epoch = loop {
            if let Some(e) = gate.acting() {
                break e;
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = shutdown.changed() => return,
            }
        };
        if gate.is_ha() {
            tracing::info!(
                epoch,
                "leading: starting rollouts, alerts, firings, retention"
            );
        }
        let (term_stop, term_rx) = tokio::sync::watch::channel(false);
        let tasks = start(term_rx);
        let ended_by_shutdown = loop {
            if gate.acting() != Some(epoch) {
                break false;
            }
            let wait = gate.acting_until().map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(u64::try_from((t - mono_ms()).max(1)).unwrap_or(1))
            });
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break true,
            }
        };
        let _ = term_stop.send(true);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        if ended_by_shutdown {
            return;
        }
        tracing::warn!(
            epoch,
            "no longer leading: stopped rollouts, alerts, firings, retention"
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn an_embedded_gate_always_acts_and_an_ha_gate_only_within_its_lease() {
        let g = LeaderGate::embedded();
        assert_eq!(g.acting(), Some(0));
        g.enable_ha();
        assert_eq!(g.acting(), None);
        g.publish(Role::Leader { epoch: 9 }, mono_ms() + 60_000);
        assert_eq!(g.acting(), Some(9));
        // The deadline is checked at the moment of asking, not when the driver publishes.
        g.publish(Role::Leader { epoch: 9 }, mono_ms() - 1);
        assert_eq!(g.acting(), None);
        g.publish(Role::Follower, 0);
        assert_eq!(g.acting(), None);
        assert_eq!(g.counters(), (1, 0));
    }

    #[tokio::test]
    async fn term_tasks_start_with_a_term_and_stop_when_the_lease_runs_out() {
        let gate = Arc::new(LeaderGate::embedded());
        gate.enable_ha();
        let running = Arc::new(AtomicI64::new(0));
        let started = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (r, s) = (running.clone(), started.clone());
        let sup = tokio::spawn(leader_tasks(
            gate.clone(),
            Box::new(move |mut term| {
                let r = r.clone();
                s.fetch_add(1, Ordering::SeqCst);
                vec![tokio::spawn(async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = term.changed().await;
                    r.fetch_sub(1, Ordering::SeqCst);
                })]
            }),
            stop_rx,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(running.load(Ordering::SeqCst), 0, "a follower runs nothing");
        // A term whose lease runs out in 200 ms, and no driver to say so.
        gate.publish(Role::Leader { epoch: 3 }, mono_ms() + 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(running.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            running.load(Ordering::SeqCst),
            0,
            "stopped at the lease's end"
        );
        // A new term starts them again.
        gate.publish(Role::Leader { epoch: 5 }, mono_ms() + 60_000);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(running.load(Ordering::SeqCst), 1);
        assert_eq!(started.load(Ordering::SeqCst), 2);
        stop.send(true).unwrap();
        sup.await.unwrap();
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}
