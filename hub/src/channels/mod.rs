//! Alert channels: where the delivery driver sends a [`Notification`] (a webhook, Slack,
//! Microsoft Teams, e-mail over SMTP, Alertmanager's v2 API), configured in `hub.toml`
//! (`[[channel]]`, [`config`]). One file per kind renders the notification for its receiver;
//! [`http`] is the one HTTP sender (ureq, rustls on ring, timeouts, no redirects) and maps
//! failures to [`DeliveryError::retryable`]; [`text`] is the plain-text rendering every kind
//! shares (a delayed item says "delayed by ...").
//!
//! Values are data: every value of a notification is escaped for where it lands (JSON-encoded
//! into a webhook template, `&<>` escaped in Slack mrkdwn, Markdown escaped in Teams cards,
//! CR/LF removed from mail headers).

mod alertmanager;
pub mod config;
mod email;
mod http;
mod slack;
mod teams;
mod text;
mod webhook;

use std::path::Path;

use outpost_alerts::{AlertItem, AlertStatus, Notification, notification::UnixMillis};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, HubConfig};
use config::{ChannelConfig, ChannelKind, UrlSource};

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

impl DeliveryError {
    /// A failure that will repeat on every attempt.
    pub(crate) fn fatal(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            retryable: false,
            message: message.into(),
        }
    }
}

/// A channel as `alert channels` shows it: never a secret (no URL path, no password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The channel's name.
    pub name: String,
    /// `webhook`, `slack`, `teams`, `email` or `alertmanager`.
    pub kind: String,
    /// Where it sends, without secrets: a URL's scheme and host, or the SMTP relay and the
    /// recipients.
    pub target: String,
}

/// One configured channel, ready to send.
struct Channel {
    info: ChannelInfo,
    sender: Sender,
}

enum Sender {
    Webhook(webhook::Webhook),
    Slack(slack::Slack),
    Teams(teams::Teams),
    Email(Box<email::Email>),
    Alertmanager(alertmanager::Alertmanager),
}

/// The configured channels, by name.
#[derive(Default)]
pub struct Channels {
    names: Vec<String>,
    channels: Vec<Channel>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and kinds only: the senders hold secrets.
        f.debug_list()
            .entries(self.channels.iter().map(|c| (&c.info.name, &c.info.kind)))
            .finish()
    }
}

/// Read a secret file (a URL, an HMAC key, a password): its content without the trailing
/// newline; empty is an error. The error names the channel and the key.
pub(crate) fn read_secret(
    channel: &str,
    key: &'static str,
    path: &Path,
) -> Result<String, ConfigError> {
    let missing = |reason: String| ConfigError::Missing {
        what: "alert channel secret file",
        path: path.to_path_buf(),
        reason: format!("[[channel]] {channel:?} {key}: {reason}"),
    };
    let text = std::fs::read_to_string(path).map_err(|e| missing(e.to_string()))?;
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.is_empty() {
        return Err(missing("the file is empty".into()));
    }
    Ok(text)
}

/// The URL of an HTTP channel (from `url` or read from `url_file`).
fn resolve_url(channel: &str, url: &UrlSource) -> Result<String, ConfigError> {
    match url {
        UrlSource::Inline(u) => Ok(u.clone()),
        UrlSource::File(p) => {
            let u = read_secret(channel, "url_file", p)?.trim().to_string();
            config::check_url(&u).map_err(|m| ConfigError::Missing {
                what: "alert channel URL file",
                path: p.clone(),
                reason: format!("[[channel]] {channel:?} url_file: {m}"),
            })?;
            Ok(u)
        }
    }
}

/// `scheme://host[:port]` of a URL: what may be shown of it (the path of an incoming-webhook
/// URL is its credential).
fn url_origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Drop user:password@ if any.
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}")
}

impl Channel {
    fn open(c: &ChannelConfig) -> Result<Channel, ConfigError> {
        let name = c.name.as_str();
        let (sender, target) = match &c.kind {
            ChannelKind::Webhook {
                url,
                secret_file,
                template,
            } => {
                let url = resolve_url(name, url)?;
                let secret = match secret_file {
                    Some(p) => Some(read_secret(name, "secret_file", p)?),
                    None => None,
                };
                let target = url_origin(&url);
                (
                    Sender::Webhook(webhook::Webhook::new(
                        url,
                        secret,
                        template.clone(),
                        c.timeout,
                    )),
                    target,
                )
            }
            ChannelKind::Slack { url } => {
                let url = resolve_url(name, url)?;
                let target = url_origin(&url);
                (Sender::Slack(slack::Slack::new(url, c.timeout)), target)
            }
            ChannelKind::Teams { url, format } => {
                let url = resolve_url(name, url)?;
                let target = url_origin(&url);
                (
                    Sender::Teams(teams::Teams::new(url, *format, c.timeout)),
                    target,
                )
            }
            ChannelKind::Alertmanager { url } => {
                let url = resolve_url(name, url)?;
                let target = url_origin(&url);
                (
                    Sender::Alertmanager(alertmanager::Alertmanager::new(url, c.timeout)),
                    target,
                )
            }
            ChannelKind::Email { host, port, to, .. } => {
                let target = format!("smtp {host}:{port} → {}", to.join(", "));
                (
                    Sender::Email(Box::new(email::Email::open(name, &c.kind, c.timeout)?)),
                    target,
                )
            }
        };
        Ok(Channel {
            info: ChannelInfo {
                name: c.name.clone(),
                kind: c.kind.as_str().to_string(),
                target,
            },
            sender,
        })
    }
}

impl Channels {
    /// The channels of a configuration. Reads every secret file now: a missing or empty one
    /// is an error naming the channel and the key (the hub refuses to start).
    pub fn from_config(cfg: &HubConfig) -> Result<Channels, ConfigError> {
        let channels = cfg
            .channels
            .iter()
            .map(Channel::open)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Channels {
            names: channels.iter().map(|c| c.info.name.clone()).collect(),
            channels,
        })
    }

    /// The channel names, in configuration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether a channel of that name is configured.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Every channel's name, kind and target (no secrets), in configuration order.
    pub fn list(&self) -> Vec<ChannelInfo> {
        self.channels.iter().map(|c| c.info.clone()).collect()
    }

    /// Send one notification to one channel (blocking I/O: call it from a blocking task).
    pub fn send(&self, channel: &str, notification: &Notification) -> Result<(), DeliveryError> {
        let Some(c) = self.channels.iter().find(|c| c.info.name == channel) else {
            return Err(DeliveryError::fatal(format!(
                "no channel named {channel:?}"
            )));
        };
        match &c.sender {
            Sender::Webhook(s) => s.send(notification),
            Sender::Slack(s) => s.send(notification),
            Sender::Teams(s) => s.send(notification),
            Sender::Email(s) => s.send(notification),
            Sender::Alertmanager(s) => s.send(notification),
        }
    }
}

/// The notification `alert test CHANNEL` sends: rule and event `test`, one item naming who
/// asked. It resolves itself after five minutes where the receiver keeps state (Alertmanager).
pub fn test_notification(
    hub_name: &str,
    channel: &str,
    operator: &str,
    now_ms: UnixMillis,
) -> Notification {
    Notification {
        dedup_key: format!("test:{channel}:{now_ms}"),
        rule: "test".into(),
        status: AlertStatus::Firing,
        event: "test".into(),
        summary: format!("Test notification from Outpost hub {hub_name} to channel {channel}"),
        items: vec![AlertItem {
            agent: None,
            workflow: None,
            run_id: None,
            task: None,
            detail: format!("sent by operator {operator} with `outpost-hub alert test {channel}`"),
            at_ms: now_ms,
            delayed_ms: None,
        }],
        labels: vec![
            ("event".into(), "test".into()),
            ("rule".into(), "test".into()),
        ],
        starts_ms: now_ms,
        ends_ms: Some(now_ms + 5 * 60 * 1000),
        created_ms: now_ms,
        suppressed: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_hides_paths_and_userinfo() {
        assert_eq!(
            url_origin("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            url_origin("http://u:p@127.0.0.1:9093/x?y"),
            "http://127.0.0.1:9093"
        );
    }

    #[test]
    fn secrets_are_read_from_files_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook.secret"), "s3cret\n").unwrap();
        std::fs::write(
            dir.path().join("slack.url"),
            "https://hooks.slack.com/services/T0/B0/tok\n",
        )
        .unwrap();
        let text = "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \
                    \"http://127.0.0.1:1/h\"\nsecret_file = \"hook.secret\"\n\
                    [[channel]]\nname = \"chat\"\nkind = \"slack\"\nurl_file = \"slack.url\"\n";
        let cfg = HubConfig::parse(text, &dir.path().join("hub.toml")).unwrap();
        let ch = Channels::from_config(&cfg).unwrap();
        assert_eq!(ch.names(), ["hook", "chat"]);
        assert!(ch.has("chat") && !ch.has("nope"));
        let shown = format!("{:?} {:?}", ch, ch.list());
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok"),
            "{shown}"
        );
        assert_eq!(ch.list()[1].target, "https://hooks.slack.com");
        // An unknown channel is a permanent failure.
        let n = test_notification("h", "nope", "admin", 0);
        let e = ch.send("nope", &n).unwrap_err();
        assert!(!e.retryable && e.message.contains("\"nope\""), "{e:?}");
        // A missing secret file is named with its channel and key.
        std::fs::remove_file(dir.path().join("hook.secret")).unwrap();
        let e = Channels::from_config(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("hook.secret") && e.contains("\"hook\" secret_file"),
            "{e}"
        );
        std::fs::write(dir.path().join("hook.secret"), "\n").unwrap();
        let e = Channels::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
