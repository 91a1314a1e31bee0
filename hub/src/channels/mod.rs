//! Alert channels: where the delivery driver sends a [`Notification`] (a webhook, Slack,
//! Microsoft Teams, e-mail over SMTP, Alertmanager's v2 API), configured in `hub.toml`.

use outpost_alerts::Notification;

use crate::config::{ConfigError, HubConfig};

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Worth retrying (a timeout, a 5xx, a refused connection); `false`: it will fail the same
    /// way every time (no such channel, a 4xx other than 429), give up at once.
    pub retryable: bool,
    /// What went wrong, for the delivery history.
    pub message: String,
}

/// The configured channels, by name.
#[derive(Debug, Default)]
pub struct Channels {
    names: Vec<String>,
}

impl Channels {
    /// The channels of a configuration.
    pub fn from_config(_cfg: &HubConfig) -> Result<Channels, ConfigError> {
        Ok(Channels::default())
    }

    /// The channel names, in configuration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether a channel of that name is configured.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Send one notification to one channel (blocking I/O: call it from a blocking task).
    pub fn send(&self, channel: &str, _notification: &Notification) -> Result<(), DeliveryError> {
        Err(DeliveryError {
            retryable: false,
            message: format!("no channel named {channel:?}"),
        })
    }
}
