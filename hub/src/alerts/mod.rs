//! The alert driver: feeds the `outpost-alerts` evaluator the inputs the ingest queued durably
//! and the hub's level conditions (agents offline, clock offsets, low disks, certificates
//! expiring, duplicate sessions, rollouts rolled back or waiting, missed and unknown firings),
//! and commits each turn in ONE transaction (inputs consumed, evaluator state, notifications
//! appended to the history, one delivery per (notification, channel) queued). The delivery
//! task ([`deliver`]) sends what the outbox holds with [`Channels::send`] and records each
//! outcome; a failure worth retrying is retried with exponential backoff until a give-up age.
//!
//! Guarantees: an input counts once across crashes (it leaves the inbox with the state that
//! used it); a notification is made once (its dedup key is in that state); a delivery is sent
//! at least once — after a kill during a send it is sent again — and never again once it was
//! recorded delivered.

pub(crate) mod config;

use std::collections::HashMap;
use std::sync::Arc;

use outpost_alerts::{
    Condition, DecodeError, Evaluator, EventKind as AlertKind, Measure, Rule, Settings, Silence,
    Subject,
};
use outpost_common::record::UnixMillis;

use crate::channels::Channels;
use crate::events::{EventKind, HUB_ACTOR};
use crate::hub::{Hub, now_ms};
use crate::store::{
    AgentRecord, AlertCommit, DeliveryOutcome, PoolRecord, StoreError, selector_matches,
};

/// Inputs fed per turn (the rest wait for the next turn, which follows at once).
const INPUTS_PER_TURN: usize = 10_000;
/// A refused duplicate session is a condition for this long after it was refused.
pub const DUPLICATE_WINDOW_MS: i64 = 3_600_000;
/// First retry delay of a failed delivery (doubled per attempt).
pub const RETRY_BASE_MS: i64 = 5_000;
/// Longest retry delay.
pub const RETRY_MAX_MS: i64 = 600_000;
/// A delivery still failing this long after it was queued is given up.
pub const GIVE_UP_AFTER_MS: i64 = 24 * 3_600_000;

/// Why an alert turn failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Other(String),
}

/// What the driver works with: the rules and channels of `hub.toml`.
#[derive(Debug)]
pub struct AlertSetup {
    pub rules: Vec<Rule>,
    pub channels: std::sync::Arc<Channels>,
    pub settings: Settings,
    /// When this hub process started: an agent counts as offline from its last contact or
    /// from here, whichever is later (while the hub was down it could not tell; after a restart
    /// agents are given `for` to reconnect before they count as offline).
    pub started_ms: UnixMillis,
}

/// The pools `labels` is a member of.
fn pools_of(pools: &[PoolRecord], labels: &[(String, String)]) -> Vec<String> {
    pools
        .iter()
        .filter(|p| selector_matches(&p.selector, labels))
        .map(|p| p.name.clone())
        .collect()
}

fn agent_subject(a: &AgentRecord, pools: &[PoolRecord]) -> Subject {
    Subject {
        agent: Some(a.id.clone()),
        workflow: None,
        pools: pools_of(pools, &a.labels),
        labels: a.labels.clone(),
    }
}

/// The delay before retry number `attempts` (1 = the first retry).
pub fn backoff_ms(attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(20);
    RETRY_BASE_MS.saturating_mul(1 << shift).min(RETRY_MAX_MS)
}

impl Hub {
    pub(crate) fn lock_alerts(&self) -> std::sync::MutexGuard<'_, ()> {
        self.alert_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The level conditions that hold at `now`, measured from what the hub records.
    pub fn alert_conditions(
        &self,
        now: UnixMillis,
        started_ms: UnixMillis,
    ) -> Result<Vec<Condition>, AlertError> {
        let store = self.store();
        let pools = store.pools()?;
        let agents: Vec<AgentRecord> = store
            .agents()?
            .into_iter()
            .filter(|a| a.revoked_ms.is_none())
            .collect();
        // Every agent with a live session, at any live replica in HA mode (`Hub::connected`):
        // an agent another replica serves is not offline.
        let connected: std::collections::HashSet<String> =
            self.connected().into_iter().map(|(id, _)| id).collect();
        let mut out = Vec::new();
        let mut push = |event: AlertKind, key: String, subject: Subject, measure, detail, since| {
            out.push(Condition {
                event,
                key,
                subject,
                measure,
                detail,
                since_ms: since,
            })
        };
        for a in &agents {
            let s = agent_subject(a, &pools);
            if !connected.contains(&a.id) {
                let seen = a.last_seen_ms.unwrap_or(a.enrolled_ms);
                let since = seen.max(started_ms);
                push(
                    AlertKind::AgentOffline,
                    format!("agent_offline/{}", a.id),
                    s.clone(),
                    Measure::OfflineSince(since),
                    format!("agent {} offline (last contact {})", a.id, at_text(seen)),
                    since,
                );
            }
            if let Some((offset, at)) = a.clock_offset {
                push(
                    AlertKind::ClockOffset,
                    format!("clock_offset/{}", a.id),
                    s.clone(),
                    Measure::OffsetMs(offset),
                    format!("agent {} clock off by {offset} ms", a.id),
                    at,
                );
            }
            if let Some((t, at)) = &a.telemetry {
                let pct = t
                    .disk_free_bytes
                    .saturating_mul(100)
                    .checked_div(t.disk_total_bytes)
                    .unwrap_or(100);
                push(
                    AlertKind::DiskLow,
                    format!("disk_low/{}", a.id),
                    s.clone(),
                    Measure::DiskFree {
                        free: t.disk_free_bytes,
                        total: t.disk_total_bytes,
                    },
                    format!("agent {} store disk {pct}% free", a.id),
                    *at,
                );
            }
            if let Some(na) = a.cert_not_after_ms {
                push(
                    AlertKind::CertificateExpiring,
                    format!("certificate_expiring/{}", a.id),
                    s.clone(),
                    Measure::CertNotAfter(na),
                    format!("agent {} certificate expires {}", a.id, at_text(na)),
                    now,
                );
            }
        }
        for e in store.audit_log(1_000)? {
            if e.action == "agent.duplicate_session" && now - e.at_ms < DUPLICATE_WINDOW_MS {
                let s = agents
                    .iter()
                    .find(|a| a.id == e.target)
                    .map(|a| agent_subject(a, &pools))
                    .unwrap_or_else(|| Subject {
                        agent: Some(e.target.clone()),
                        ..Subject::default()
                    });
                push(
                    AlertKind::DuplicateIdentity,
                    format!("duplicate_identity/{}", e.target),
                    s,
                    Measure::Present,
                    format!(
                        "a second session of agent {} was refused: {}",
                        e.target, e.detail
                    ),
                    e.at_ms,
                );
            }
        }
        // The latest rollout of each (workflow, pool).
        let mut latest: std::collections::BTreeMap<(String, String), _> = Default::default();
        for r in store.rollouts()? {
            latest.insert((r.workflow.clone(), r.pool.clone()), r);
        }
        for ((w, p), r) in latest {
            let s = Subject {
                agent: None,
                workflow: Some(w.clone()),
                pools: vec![p.clone()],
                labels: Vec::new(),
            };
            if r.active && r.phase.starts_with("awaiting promote") {
                push(
                    AlertKind::RolloutWaiting,
                    format!("rollout_waiting/{}", r.id),
                    s,
                    Measure::Present,
                    format!("rollout {} of {w} in {p}: {}", r.id, r.phase),
                    r.started_ms,
                );
            } else if r
                .outcome
                .as_deref()
                .is_some_and(|o| o.starts_with("rolled back"))
            {
                push(
                    AlertKind::RolloutRolledBack,
                    format!("rollout_rolled_back/{}", r.id),
                    s,
                    Measure::Present,
                    format!(
                        "rollout {} of {w} in {p}: {}",
                        r.id,
                        r.outcome.as_deref().unwrap_or_default()
                    ),
                    r.finished_ms.unwrap_or(r.started_ms),
                );
            }
        }
        let findings = self
            .firing_findings()
            .map_err(|e| AlertError::Other(e.to_string()))?;
        for f in findings {
            let mut s = agents
                .iter()
                .find(|a| a.id == f.agent)
                .map(|a| agent_subject(a, &pools))
                .unwrap_or_default();
            s.agent = Some(f.agent.clone());
            s.workflow = Some(f.workflow.clone());
            push(
                AlertKind::FiringMissed,
                // The status is part of the key: an unknown firing that turns out missed clears
                // (resolved) and fires again as missed, so every alert says which it is.
                format!(
                    "firing_missed/{}/{}/{}/{}",
                    f.agent,
                    f.workflow,
                    f.scheduled_ms,
                    f.status.as_str()
                ),
                s,
                Measure::Present,
                format!(
                    "firing of {} v{} at {} {}",
                    f.workflow,
                    f.version,
                    at_text(f.scheduled_ms),
                    f.status.as_str()
                ),
                f.scheduled_ms,
            );
        }
        Ok(out)
    }

    /// One turn of the evaluator at `now`: feed the queued inputs (at most 1,000), the level
    /// conditions and the time; commit it all in one transaction. Returns the earliest time a
    /// notification falls due.
    pub fn alert_tick(
        &self,
        setup: &AlertSetup,
        now: UnixMillis,
    ) -> Result<Option<UnixMillis>, AlertError> {
        self.alert_turn(setup, now, true)
    }

    /// [`Hub::alert_tick`], with the level conditions (which read every agent, rollout and
    /// firing watch) evaluated only when `with_conditions`: the driver consumes inputs on every
    /// ingest but looks at conditions at most every [`CONDITIONS_EVERY_MS`].
    fn alert_turn(
        &self,
        setup: &AlertSetup,
        now: UnixMillis,
        with_conditions: bool,
    ) -> Result<Option<UnixMillis>, AlertError> {
        let _g = self.lock_alerts();
        // Only the leader evaluates alerts; asked under the lock, at the moment of acting.
        if self.leader().acting().is_none() {
            return Ok(None);
        }
        let store = self.store();
        let stored = store.alert_state()?;
        let mut ev = match Evaluator::decode(setup.rules.clone(), setup.settings, &stored) {
            Ok(ev) => ev,
            Err(e) => {
                // Unreadable state must not stop alerting: start over (groups and throttles
                // are lost, nothing else).
                tracing::error!("{e}; alert evaluation starts from a fresh state");
                Evaluator::new(setup.rules.clone(), setup.settings)
            }
        };
        let silences: Vec<Silence> = store
            .silences()?
            .into_iter()
            .filter(|s| s.expires_ms > now)
            .collect();
        let pools = store.pools()?;
        let inputs = store.alert_inputs(INPUTS_PER_TURN)?;
        let more = inputs.len() == INPUTS_PER_TURN;
        let mut consumed = Vec::with_capacity(inputs.len());
        // Each agent's record is read once per turn, however many inputs it has.
        let mut records: HashMap<String, Option<AgentRecord>> = HashMap::new();
        for (seq, mut input) in inputs {
            if let Some(agent) = input.subject.agent.as_deref()
                && let Some(a) = records
                    .entry(agent.to_string())
                    .or_insert_with(|| store.agent(agent).ok())
            {
                input.subject.pools = pools_of(&pools, &a.labels);
                input.subject.labels = a.labels.clone();
            }
            ev.event(&input, &silences, now);
            consumed.push(seq);
        }
        if with_conditions {
            let conditions = self.alert_conditions(now, setup.started_ms)?;
            ev.conditions(&conditions, now);
        }
        let notes = ev.poll(&silences, now);
        let notifications = notes
            .into_iter()
            .map(|n| {
                let channels = setup
                    .rules
                    .iter()
                    .find(|r| r.name == n.rule)
                    .map(|r| r.channels.clone())
                    .unwrap_or_default();
                (n, channels)
            })
            .collect::<Vec<_>>();
        let made = notifications.len();
        let state = ev.encode();
        // Nothing changed: no write (the driver turns every few seconds).
        if made > 0 || !consumed.is_empty() || state != stored {
            store.commit_alerts(
                AlertCommit {
                    consumed,
                    state,
                    notifications,
                },
                now,
            )?;
        }
        if made > 0 {
            self.delivery_wake.notify_one();
        }
        // A full batch: more are queued, turn again at once.
        Ok(if more { Some(now) } else { ev.next_due() })
    }

    /// Send the deliveries due at `now` (one at a time, each from a blocking task) and record
    /// each outcome. Returns how many were sent.
    pub async fn deliver_due(self: &Arc<Self>, setup: &Arc<AlertSetup>, now: UnixMillis) -> usize {
        // Only the leader sends notifications.
        if self.leader().acting().is_none() {
            return 0;
        }
        let h = self.clone();
        let due =
            match tokio::task::spawn_blocking(move || h.store().pending_deliveries(1_000)).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::error!("alert deliveries: {e}");
                    return 0;
                }
                Err(e) => {
                    tracing::error!("alert deliveries: {e}");
                    return 0;
                }
            };
        let mut sent = 0;
        for (d, n) in due.into_iter().filter(|(d, _)| d.next_attempt_ms <= now) {
            let (s, ch, note) = (setup.clone(), d.channel.clone(), n.clone());
            let result = tokio::task::spawn_blocking(move || s.channels.send(&ch, &note))
                .await
                .unwrap_or_else(|e| {
                    Err(crate::channels::DeliveryError {
                        retryable: true,
                        message: format!("send task failed: {e}"),
                    })
                });
            let at = now_ms();
            let outcome = match &result {
                Ok(()) => DeliveryOutcome::Delivered,
                Err(e) if e.retryable && at - d.created_ms < GIVE_UP_AFTER_MS => {
                    DeliveryOutcome::Retry {
                        next_ms: at + backoff_ms(d.attempts + 1),
                        error: e.message.clone(),
                    }
                }
                Err(e) => DeliveryOutcome::GaveUp {
                    error: e.message.clone(),
                },
            };
            let h = self.clone();
            let (ch, o) = (d.channel.clone(), outcome.clone());
            match tokio::task::spawn_blocking(move || h.store().record_delivery(d.seq, &ch, &o, at))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("recording alert delivery: {e}"),
                Err(e) => tracing::error!("recording alert delivery: {e}"),
            }
            let (outcome_text, error) = match outcome {
                DeliveryOutcome::Delivered => ("delivered", None),
                DeliveryOutcome::Retry { error, .. } => ("retry", Some(error)),
                DeliveryOutcome::GaveUp { error } => ("failed", Some(error)),
            };
            if let Some(e) = &error {
                tracing::warn!(channel = %d.channel, key = %n.dedup_key, "alert delivery {outcome_text}: {e}");
            }
            self.metrics().alert_delivery(&d.channel, outcome_text);
            self.emit(
                HUB_ACTOR,
                EventKind::AlertDelivery {
                    rule: n.rule.clone(),
                    dedup_key: n.dedup_key.clone(),
                    channel: d.channel.clone(),
                    outcome: outcome_text.to_string(),
                    error,
                },
            );
            sent += 1;
        }
        sent
    }
}

fn at_text(ms: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Run the evaluator until `shutdown` flips: a turn on every wake-up (an ingest, a silence) and
/// at least every 10 s (level conditions cross their thresholds with time).
/// How often the driver evaluates the level conditions (agents offline, disk, rollouts, firing
/// findings...): their thresholds are seconds to days, and each evaluation reads the fleet.
pub const CONDITIONS_EVERY_MS: i64 = 5_000;

pub async fn drive(
    hub: Arc<Hub>,
    setup: Arc<AlertSetup>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut conditions_at: Option<UnixMillis> = None;
    loop {
        let (h, s) = (hub.clone(), setup.clone());
        let now = now_ms();
        let with_conditions = conditions_at.is_none_or(|t| now - t >= CONDITIONS_EVERY_MS);
        if with_conditions {
            conditions_at = Some(now);
        }
        let r = tokio::task::spawn_blocking(move || h.alert_turn(&s, now, with_conditions)).await;
        let wait = match r {
            Ok(Ok(next)) => {
                let until = next.map_or(10_000, |t| (t - now_ms()).clamp(1, 10_000));
                std::time::Duration::from_millis(u64::try_from(until).unwrap_or(10_000))
            }
            // HA mode: another replica wrote first; the copy catches up within milliseconds.
            Ok(Err(AlertError::Store(StoreError::Conflict(m)))) => {
                tracing::debug!("alert driver: {m}; again");
                std::time::Duration::from_millis(20)
            }
            Ok(Err(e)) => {
                tracing::error!("alert driver: {e}");
                std::time::Duration::from_secs(1)
            }
            Err(e) => {
                tracing::error!("alert driver task: {e}");
                std::time::Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = hub.alert_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Send queued deliveries until `shutdown` flips: on every new notification and every second
/// (retries fall due with time). After a restart it starts with what the outbox still holds.
pub async fn deliver(
    hub: Arc<Hub>,
    setup: Arc<AlertSetup>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        hub.deliver_due(&setup, now_ms()).await;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = hub.delivery_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_to_a_cap() {
        assert_eq!(backoff_ms(1), 5_000);
        assert_eq!(backoff_ms(2), 10_000);
        assert_eq!(backoff_ms(4), 40_000);
        assert_eq!(backoff_ms(8), RETRY_MAX_MS);
        assert_eq!(backoff_ms(u32::MAX), RETRY_MAX_MS);
    }
}
