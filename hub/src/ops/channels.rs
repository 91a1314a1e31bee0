//! The alert channels as operations: list them (no secrets), send a test notification now
//! (`alert test CHANNEL`, audited as `alert.test` with its outcome).

use serde::{Deserialize, Serialize};

use super::{OpError, OpResult};
use crate::channels::{ChannelInfo, test_notification};
use crate::clock::now_ms;
use crate::hub::Hub;

/// The outcome of `alert test CHANNEL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTestView {
    /// The channel.
    pub channel: String,
    /// Its kind.
    pub kind: String,
    /// The receiver accepted the notification.
    pub ok: bool,
    /// When not ok: whether the delivery driver would retry it.
    pub retryable: bool,
    /// What happened.
    pub message: String,
    /// The test notification's dedup key.
    pub dedup_key: String,
}

impl Hub {
    /// The configured channels (names, kinds, targets; never secrets).
    pub fn alert_channels(&self) -> Vec<ChannelInfo> {
        self.channels().list()
    }

    /// Send a test notification to one channel now (blocking I/O: call it on a blocking
    /// thread) and record it in the audit log with its outcome.
    pub fn test_alert_channel(&self, actor: &str, channel: &str) -> OpResult<ChannelTestView> {
        let Some(info) = self
            .channels()
            .list()
            .into_iter()
            .find(|c| c.name == channel)
        else {
            let names = self.channels().names();
            return Err(OpError::NotFound(if names.is_empty() {
                format!("no channel named {channel:?}: hub.toml configures no [[channel]]")
            } else {
                format!(
                    "no channel named {channel:?} (configured: {})",
                    names.join(", ")
                )
            }));
        };
        let n = test_notification(self.hub_name(), channel, actor, now_ms());
        let (ok, retryable, message) = match self.channels().send(channel, &n) {
            Ok(()) => (
                true,
                false,
                format!("{} accepted the test notification", info.target),
            ),
            Err(e) => (false, e.retryable, e.message),
        };
        let detail = if ok {
            "delivered".to_string()
        } else {
            format!("failed: {message}")
        };
        self.store()
            .audit(actor, "alert.test", channel, &detail, now_ms())?;
        Ok(ChannelTestView {
            channel: info.name,
            kind: info.kind,
            ok,
            retryable,
            message,
            dedup_key: n.dedup_key,
        })
    }
}
