//! The alert pipeline in the store: the inbox of alert inputs (queued in the ingest's
//! transaction), the evaluator's state, the notification history, the delivery outbox (one
//! delivery per (notification, channel), unique per (dedup key, channel)) and the silences.
//!
//! Invariants: an input is removed in the transaction that stores the evaluator state that
//! consumed it and the notifications it produced with their deliveries, so each input counts
//! once across crashes; a delivery recorded `delivered` is never sent again; one not recorded
//! so is sent after a restart (at least once).

use minicbor::{Decode, Encode};
use outpost_alerts::{Input, Notification, Silence};
use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::error::{DbError, StoreError, decode, encode};
use super::file::Store;
use super::replicated::Scope;
use super::schema::{
    ALERT_DELIVERIES, ALERT_DELIVERY_KEYS, ALERT_EVENTS, ALERT_HISTORY, ALERT_INBOX, ALERT_OUTBOX,
    ALERT_STATE, META, META_ALERT_EVENT_SEQ, META_SILENCE_SEQ, SILENCES,
};

/// Key of the evaluator's state in `alert_state`.
const EVALUATOR: &str = "evaluator";

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum DeliveryState {
    /// Not sent yet, or to be retried.
    #[n(0)]
    Pending,
    /// The channel accepted it.
    #[n(1)]
    Delivered,
    /// Given up (a permanent failure, or retried past the give-up age).
    #[n(2)]
    Failed,
}

impl DeliveryState {
    /// `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One notification to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct DeliveryRecord {
    /// The notification's seq in the history.
    #[n(0)]
    pub seq: u64,
    #[n(1)]
    pub channel: String,
    #[n(2)]
    pub state: DeliveryState,
    /// Sends tried.
    #[n(3)]
    pub attempts: u32,
    /// When the next send is due (pending).
    #[n(4)]
    pub next_attempt_ms: UnixMillis,
    #[n(5)]
    pub last_error: Option<String>,
    /// When it was queued.
    #[n(6)]
    pub created_ms: UnixMillis,
    /// When it was delivered or given up.
    #[n(7)]
    pub finished_ms: Option<UnixMillis>,
}

/// One notification of the history with its deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEntry {
    pub seq: u64,
    pub notification: Notification,
    pub deliveries: Vec<DeliveryRecord>,
}

/// What one evaluator turn commits, atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AlertCommit {
    /// Inbox entries consumed.
    pub consumed: Vec<u64>,
    /// The evaluator's new state.
    pub state: Vec<u8>,
    /// New notifications and the channels of each.
    pub notifications: Vec<(Notification, Vec<String>)>,
}

/// What a send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeliveryOutcome {
    Delivered,
    /// Failed; try again at `next_ms`.
    Retry {
        next_ms: UnixMillis,
        error: String,
    },
    /// Failed for good.
    GaveUp {
        error: String,
    },
}

/// Queue an alert input inside a write transaction (the ingest's).
pub(crate) fn enqueue_alert(txn: &WriteTransaction, input: &Input) -> Result<(), StoreError> {
    let mut t = txn.open_table(ALERT_INBOX)?;
    let seq = t.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    t.insert(seq, encode(input)?.as_slice())?;
    Ok(())
}

impl Store {
    /// The queue the alert evaluator reads and consumes: this store's own inbox (embedded),
    /// or, in HA mode, the replicated queue every replica forwards its inbox to, so the
    /// leader evaluates the inputs of every replica's agents.
    fn alert_events_table(&self) -> TableDefinition<'static, u64, &'static [u8]> {
        self.queue_table(ALERT_INBOX, ALERT_EVENTS)
    }

    /// HA mode: move up to `limit` of this replica's alert inputs to the replicated queue.
    pub fn forward_alert_inputs(&self, limit: usize) -> Result<usize, StoreError> {
        self.forward_queue(ALERT_INBOX, ALERT_EVENTS, META_ALERT_EVENT_SEQ, limit)
    }

    /// The queued alert inputs, oldest first (at most `limit`).
    pub fn alert_inputs(&self, limit: usize) -> Result<Vec<(u64, Input)>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = match txn.open_table(self.alert_events_table()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for e in t.iter()?.take(limit) {
            let (k, v) = e?;
            out.push((k.value(), decode(v.value(), "alert_inbox", k.value())?));
        }
        Ok(out)
    }

    /// The evaluator's stored state (empty: none yet).
    pub(crate) fn alert_state(&self) -> Result<Vec<u8>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(ALERT_STATE)?;
        Ok(t.get(EVALUATOR)?
            .map(|v| v.value().to_vec())
            .unwrap_or_default())
    }

    /// Commit one evaluator turn in ONE transaction: remove the consumed inputs, store the
    /// state, append the notifications to the history and queue one delivery per (notification,
    /// channel) — skipped when the outbox already had that (dedup key, channel). Returns the
    /// seqs of the new notifications.
    pub(crate) fn commit_alerts(
        &self,
        c: AlertCommit,
        now_ms: UnixMillis,
    ) -> Result<Vec<u64>, StoreError> {
        let txn = self.begin_write_in(Scope::Only(&["alert_events"]))?;
        let mut seqs = Vec::new();
        {
            let mut inbox = txn.open_table(self.alert_events_table())?;
            for s in &c.consumed {
                inbox.remove(*s)?;
            }
            txn.open_table(ALERT_STATE)?
                .insert(EVALUATOR, c.state.as_slice())?;
            let mut history = txn.open_table(ALERT_HISTORY)?;
            let mut deliveries = txn.open_table(ALERT_DELIVERIES)?;
            let mut keys = txn.open_table(ALERT_DELIVERY_KEYS)?;
            let mut outbox = txn.open_table(ALERT_OUTBOX)?;
            for (n, channels) in &c.notifications {
                let seq = history.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                history.insert(seq, encode(n)?.as_slice())?;
                seqs.push(seq);
                for ch in channels {
                    let key = (n.dedup_key.as_str(), ch.as_str());
                    if keys.get(key)?.is_some() {
                        continue;
                    }
                    keys.insert(key, seq)?;
                    let d = DeliveryRecord {
                        seq,
                        channel: ch.clone(),
                        state: DeliveryState::Pending,
                        attempts: 0,
                        next_attempt_ms: now_ms,
                        last_error: None,
                        created_ms: now_ms,
                        finished_ms: None,
                    };
                    deliveries.insert((seq, ch.as_str()), encode(&d)?.as_slice())?;
                    outbox.insert((seq, ch.as_str()), ())?;
                }
            }
        }
        txn.commit()?;
        Ok(seqs)
    }

    /// The deliveries not finished yet, oldest first, with their notifications.
    pub(crate) fn pending_deliveries(
        &self,
        limit: usize,
    ) -> Result<Vec<(DeliveryRecord, Notification)>, StoreError> {
        let txn = self.db().begin_read()?;
        let outbox = txn.open_table(ALERT_OUTBOX)?;
        let deliveries = txn.open_table(ALERT_DELIVERIES)?;
        let history = txn.open_table(ALERT_HISTORY)?;
        let mut out = Vec::new();
        for e in outbox.iter()?.take(limit) {
            let (k, _) = e?;
            let (seq, ch) = k.value();
            let d = deliveries.get((seq, ch))?.ok_or_else(|| {
                DbError::Inconsistent(format!("outbox names missing delivery {seq}/{ch}"))
            })?;
            let n = history.get(seq)?.ok_or_else(|| {
                DbError::Inconsistent(format!("delivery names missing notification {seq}"))
            })?;
            out.push((
                decode(d.value(), "alert_deliveries", seq)?,
                decode(n.value(), "alert_history", seq)?,
            ));
        }
        Ok(out)
    }

    /// Record a send's outcome durably (a delivered or failed delivery leaves the outbox).
    pub(crate) fn record_delivery(
        &self,
        seq: u64,
        channel: &str,
        outcome: &DeliveryOutcome,
        now_ms: UnixMillis,
    ) -> Result<DeliveryRecord, StoreError> {
        let txn = self.begin_write_in(Scope::Only(&[]))?;
        let d = {
            let mut deliveries = txn.open_table(ALERT_DELIVERIES)?;
            let mut d: DeliveryRecord = match deliveries.get((seq, channel))? {
                Some(v) => decode(v.value(), "alert_deliveries", seq)?,
                None => {
                    return Err(StoreError::Refused(format!(
                        "no delivery of alert {seq} to {channel}"
                    )));
                }
            };
            d.attempts = d.attempts.saturating_add(1);
            match outcome {
                DeliveryOutcome::Delivered => {
                    d.state = DeliveryState::Delivered;
                    d.finished_ms = Some(now_ms);
                }
                DeliveryOutcome::Retry { next_ms, error } => {
                    d.next_attempt_ms = *next_ms;
                    d.last_error = Some(error.clone());
                }
                DeliveryOutcome::GaveUp { error } => {
                    d.state = DeliveryState::Failed;
                    d.last_error = Some(error.clone());
                    d.finished_ms = Some(now_ms);
                }
            }
            deliveries.insert((seq, channel), encode(&d)?.as_slice())?;
            if d.state != DeliveryState::Pending {
                txn.open_table(ALERT_OUTBOX)?.remove((seq, channel))?;
            }
            d
        };
        txn.commit()?;
        Ok(d)
    }

    /// The notification history, newest first (at most `limit`), with the deliveries of each.
    pub fn alerts(&self, limit: usize) -> Result<Vec<AlertEntry>, StoreError> {
        let txn = self.db().begin_read()?;
        let history = txn.open_table(ALERT_HISTORY)?;
        let deliveries = txn.open_table(ALERT_DELIVERIES)?;
        let mut out = Vec::new();
        for e in history.iter()?.rev().take(limit) {
            let (k, v) = e?;
            let seq = k.value();
            let mut ds = Vec::new();
            for d in deliveries.range((seq, "")..)? {
                let (dk, dv) = d?;
                if dk.value().0 != seq {
                    break;
                }
                ds.push(decode(dv.value(), "alert_deliveries", seq)?);
            }
            out.push(AlertEntry {
                seq,
                notification: decode(v.value(), "alert_history", seq)?,
                deliveries: ds,
            });
        }
        Ok(out)
    }

    /// Store a new silence; its id (`s-<n>`) is assigned here.
    pub(crate) fn add_silence(&self, mut s: Silence) -> Result<Silence, StoreError> {
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let n = meta.get(META_SILENCE_SEQ)?.map(|v| v.value()).unwrap_or(0) + 1;
            meta.insert(META_SILENCE_SEQ, n)?;
            s.id = format!("s-{n}");
            txn.open_table(SILENCES)?
                .insert(s.id.as_str(), encode(&s)?.as_slice())?;
        }
        txn.commit()?;
        Ok(s)
    }

    /// Every stored silence (expired ones too, until removed), by id.
    pub fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(SILENCES)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            out.push(decode(v.value(), "silences", k.value())?);
        }
        Ok(out)
    }

    /// Remove a silence.
    pub(crate) fn remove_silence(&self, id: &str) -> Result<Silence, StoreError> {
        let txn = self.begin_write()?;
        let s = {
            let mut t = txn.open_table(SILENCES)?;
            let s: Silence = match t.remove(id)? {
                Some(v) => decode(v.value(), "silences", id)?,
                None => return Err(StoreError::Refused(format!("no silence {id}"))),
            };
            s
        };
        txn.commit()?;
        Ok(s)
    }
}
