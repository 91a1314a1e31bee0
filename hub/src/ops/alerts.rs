//! Alerts: the notification history, silences (create, list, remove).

use outpost_alerts::{AlertStatus, Silence};

use super::{EventKind, OpError, OpResult};
use crate::hub::{Hub, now_ms};
use crate::store::AlertEntry;

/// What `alert silence` asks for: at least one matcher, and how long.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SilenceSpec {
    pub rule: Option<String>,
    pub workflow: Option<String>,
    pub pool: Option<String>,
    pub agent: Option<String>,
    /// How long from now.
    pub for_ms: i64,
    pub comment: String,
}

/// Which notifications `alert list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertQuery {
    /// `None`: firing and resolved.
    pub status: Option<AlertStatus>,
    pub rule: Option<String>,
    pub limit: usize,
}

/// `workflow=plc-*, agent=a1`: a silence's matchers for humans.
pub fn matchers_text(s: &Silence) -> String {
    [
        ("rule", &s.rule),
        ("workflow", &s.workflow),
        ("pool", &s.pool),
        ("agent", &s.agent),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
    .collect::<Vec<_>>()
    .join(", ")
}

impl Hub {
    /// `alert list`: the newest notifications first, with their deliveries.
    pub fn alert_history(&self, q: &AlertQuery) -> OpResult<Vec<AlertEntry>> {
        let limit = if q.limit == 0 { 100 } else { q.limit };
        // Filtering happens after reading: read a bounded window more than asked.
        let all = self.store().alerts(limit.saturating_mul(10).min(100_000))?;
        Ok(all
            .into_iter()
            .filter(|e| q.status.is_none_or(|s| e.notification.status == s))
            .filter(|e| q.rule.as_deref().is_none_or(|r| e.notification.rule == r))
            .take(limit)
            .collect())
    }

    /// `alert silence`: hold back what matches until it expires (audited, emitted).
    pub fn silence(&self, actor: &str, spec: SilenceSpec) -> OpResult<Silence> {
        if spec.rule.is_none()
            && spec.workflow.is_none()
            && spec.pool.is_none()
            && spec.agent.is_none()
        {
            return Err(OpError::Invalid(
                "a silence needs at least one of --rule, --workflow, --pool, --agent".into(),
            ));
        }
        if spec.for_ms <= 0 {
            return Err(OpError::Invalid("a silence needs a positive --for".into()));
        }
        let now = now_ms();
        let s = self.store().add_silence(Silence {
            id: String::new(),
            rule: spec.rule,
            workflow: spec.workflow,
            pool: spec.pool,
            agent: spec.agent,
            created_ms: now,
            expires_ms: now.saturating_add(spec.for_ms),
            created_by: actor.to_string(),
            comment: spec.comment,
        })?;
        let matchers = matchers_text(&s);
        self.store().audit(
            actor,
            "alert.silence",
            &s.id,
            &format!("{matchers} for {} s: {}", spec.for_ms / 1000, s.comment),
            now,
        )?;
        self.alert_wake.notify_one();
        self.emit(
            actor,
            EventKind::SilenceCreated {
                id: s.id.clone(),
                matchers,
                expires_ms: s.expires_ms,
            },
        );
        Ok(s)
    }

    /// `alert silences`: every silence not expired yet.
    pub fn active_silences(&self) -> OpResult<Vec<Silence>> {
        let now = now_ms();
        Ok(self
            .store()
            .silences()?
            .into_iter()
            .filter(|s| s.expires_ms > now)
            .collect())
    }

    /// `alert unsilence ID`.
    pub fn unsilence(&self, actor: &str, id: &str) -> OpResult<Silence> {
        let s = self.store().remove_silence(id).map_err(|e| match e {
            crate::store::StoreError::Refused(m) => OpError::NotFound(m),
            other => other.into(),
        })?;
        self.store()
            .audit(actor, "alert.unsilence", id, &matchers_text(&s), now_ms())?;
        self.alert_wake.notify_one();
        self.emit(actor, EventKind::SilenceRemoved { id: id.to_string() });
        Ok(s)
    }
}
