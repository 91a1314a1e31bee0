//! `[[channel]]` in `hub.toml`: where notifications go. One table per channel, `name` unique,
//! `kind` one of webhook | slack | teams | email | alertmanager, unknown keys and keys of another
//! kind an error naming the channel and the key. Secrets (an HMAC secret, an SMTP password, an
//! incoming-webhook URL, which is a credential) live in files named here, never inline;
//! relative paths resolve against `data_dir`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_common::duration::parse_duration;
use serde::Deserialize;

/// Default time a channel may take to answer one delivery.
pub const DEFAULT_CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// One `[[channel]]` as written (every kind's keys; [`resolve`] checks which apply).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChannel {
    name: Option<String>,
    kind: Option<String>,
    timeout: Option<String>,
    url: Option<String>,
    url_file: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    template: Option<String>,
    format: Option<String>,
    smtp: Option<String>,
    starttls: Option<String>,
    ca_file: Option<PathBuf>,
    from: Option<String>,
    to: Option<Vec<String>>,
    username: Option<String>,
    password_file: Option<PathBuf>,
}

/// A configured channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Unique among the channels; rules name it.
    pub name: String,
    /// Longest time one delivery may take (connect, send, answer).
    pub timeout: Duration,
    /// What it is and where it sends.
    pub kind: ChannelKind,
}

/// Where an HTTP channel posts: a URL in `hub.toml`, or (for URLs that are credentials, as
/// Slack's and Teams' incoming-webhook URLs are) in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// `url = "..."`.
    Inline(String),
    /// `url_file = "..."`: the file holds the URL (trimmed).
    File(PathBuf),
}

/// The card format of a Microsoft Teams channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamsFormat {
    /// An Adaptive Card in a `message` (Teams Workflows webhooks; the default).
    Adaptive,
    /// A legacy Office 365 connector MessageCard.
    MessageCard,
}

/// Whether the SMTP session must be upgraded with STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// STARTTLS or no delivery (the default).
    Required,
    /// Plain SMTP: only to a relay on a loopback address.
    None,
}

/// The kinds of channel and their settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// POST JSON to a URL, HMAC-signed when a secret is set.
    Webhook {
        /// Where to POST.
        url: UrlSource,
        /// The HMAC-SHA256 key's file (`X-Outpost-Signature: sha256=<hex>`).
        secret_file: Option<PathBuf>,
        /// A JSON body with `{{placeholders}}` (default: the notification as JSON).
        template: Option<String>,
    },
    /// A Slack incoming webhook.
    Slack {
        /// The webhook URL (a credential: prefer `url_file`).
        url: UrlSource,
    },
    /// A Microsoft Teams incoming webhook.
    Teams {
        /// The webhook URL (a credential: prefer `url_file`).
        url: UrlSource,
        /// Adaptive Card (default) or MessageCard.
        format: TeamsFormat,
    },
    /// E-mail over SMTP.
    Email {
        /// The relay's host name (the name its certificate must carry) and port.
        host: String,
        /// The relay's port.
        port: u16,
        /// STARTTLS required (default) or none (loopback relays only).
        starttls: StartTls,
        /// Extra trusted root CA certificates (PEM) for the relay, besides the public roots.
        ca_file: Option<PathBuf>,
        /// The sender address.
        from: String,
        /// The recipients.
        to: Vec<String>,
        /// The SMTP user, with `password_file`.
        username: Option<String>,
        /// The file holding the SMTP password.
        password_file: Option<PathBuf>,
    },
    /// Alertmanager's v2 API (`POST /api/v2/alerts`).
    Alertmanager {
        /// Alertmanager's base URL (`http://127.0.0.1:9093`).
        url: UrlSource,
    },
}

impl ChannelKind {
    /// `webhook`, `slack`, `teams`, `email` or `alertmanager`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::Teams { .. } => "teams",
            ChannelKind::Email { .. } => "email",
            ChannelKind::Alertmanager { .. } => "alertmanager",
        }
    }
}

/// The keys each kind accepts (besides `name`, `kind`, `timeout`).
fn allowed_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "webhook" => &["url", "url_file", "secret_file", "template"],
        "slack" => &["url", "url_file"],
        "teams" => &["url", "url_file", "format"],
        "email" => &[
            "smtp",
            "starttls",
            "ca_file",
            "from",
            "to",
            "username",
            "password_file",
        ],
        "alertmanager" => &["url", "url_file"],
        _ => return None,
    })
}

impl RawChannel {
    /// The keys set in this table (for "not a key of this kind" errors).
    fn set_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut add = |set: bool, key: &'static str| {
            if set {
                keys.push(key);
            }
        };
        add(self.url.is_some(), "url");
        add(self.url_file.is_some(), "url_file");
        add(self.secret_file.is_some(), "secret_file");
        add(self.template.is_some(), "template");
        add(self.format.is_some(), "format");
        add(self.smtp.is_some(), "smtp");
        add(self.starttls.is_some(), "starttls");
        add(self.ca_file.is_some(), "ca_file");
        add(self.from.is_some(), "from");
        add(self.to.is_some(), "to");
        add(self.username.is_some(), "username");
        add(self.password_file.is_some(), "password_file");
        keys
    }
}

/// Check and resolve the `[[channel]]` tables. An error names the channel and the key.
pub(crate) fn resolve(raw: Vec<RawChannel>, data_dir: &Path) -> Result<Vec<ChannelConfig>, String> {
    let mut out: Vec<ChannelConfig> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let Some(name) = r.name.clone() else {
            return Err(format!("[[channel]] number {}: `name` is missing", i + 1));
        };
        let err = |msg: String| format!("[[channel]] {name:?}: {msg}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err(
                "name: use letters, digits, '-', '_' and '.' (at least one)".into(),
            ));
        }
        if out.iter().any(|c| c.name == name) {
            return Err(err(
                "name: a channel of this name is configured already".into()
            ));
        }
        let Some(kind) = r.kind.clone() else {
            return Err(err(
                "kind is missing (webhook | slack | teams | email | alertmanager)".into(),
            ));
        };
        let Some(allowed) = allowed_keys(&kind) else {
            return Err(err(format!(
                "kind = {kind:?}: not a channel kind (webhook | slack | teams | email | \
                 alertmanager)"
            )));
        };
        if let Some(k) = r.set_keys().into_iter().find(|k| !allowed.contains(k)) {
            return Err(err(format!(
                "{k}: not a key of a {kind} channel (it takes {})",
                allowed.join(", ")
            )));
        }
        let timeout = match &r.timeout {
            None => DEFAULT_CHANNEL_TIMEOUT,
            Some(s) => {
                let d = parse_duration(s).map_err(|e| err(format!("timeout = {s:?}: {e}")))?;
                if d.is_zero() {
                    return Err(err(format!("timeout = {s:?}: must be more than zero")));
                }
                d
            }
        };
        let file = |p: &PathBuf| -> PathBuf {
            if p.is_relative() {
                data_dir.join(p)
            } else {
                p.clone()
            }
        };
        let url = || -> Result<UrlSource, String> {
            match (&r.url, &r.url_file) {
                (Some(_), Some(_)) => Err(err("url and url_file: set one, not both".into())),
                (None, None) => Err(err("url (or url_file) is missing".into())),
                (None, Some(f)) => Ok(UrlSource::File(file(f))),
                (Some(u), None) => {
                    check_url(u).map_err(|m| err(format!("url = {u:?}: {m}")))?;
                    Ok(UrlSource::Inline(u.clone()))
                }
            }
        };
        let kind = match kind.as_str() {
            "webhook" => {
                if let Some(t) = &r.template {
                    super::webhook::check_template(t).map_err(|m| err(format!("template: {m}")))?;
                }
                ChannelKind::Webhook {
                    url: url()?,
                    secret_file: r.secret_file.as_ref().map(file),
                    template: r.template.clone(),
                }
            }
            "slack" => ChannelKind::Slack { url: url()? },
            "teams" => ChannelKind::Teams {
                url: url()?,
                format: match r.format.as_deref() {
                    None | Some("adaptive") => TeamsFormat::Adaptive,
                    Some("messagecard") => TeamsFormat::MessageCard,
                    Some(f) => {
                        return Err(err(format!(
                            "format = {f:?}: adaptive (default) | messagecard"
                        )));
                    }
                },
            },
            "alertmanager" => ChannelKind::Alertmanager { url: url()? },
            _ => {
                // email
                let Some(smtp) = &r.smtp else {
                    return Err(err("smtp is missing (host:port of the relay)".into()));
                };
                let (host, port) = split_host_port(smtp)
                    .ok_or_else(|| err(format!("smtp = {smtp:?}: not host:port")))?;
                let starttls = match r.starttls.as_deref() {
                    None | Some("required") => StartTls::Required,
                    Some("none") => StartTls::None,
                    Some(s) => {
                        return Err(err(format!("starttls = {s:?}: required (default) | none")));
                    }
                };
                if starttls == StartTls::None && !is_loopback_host(&host) {
                    return Err(err(format!(
                        "starttls = \"none\": only for a relay on a loopback address, not \
                         {host:?} (mail and credentials would cross the network in clear)"
                    )));
                }
                let Some(from) = r.from.clone() else {
                    return Err(err("from is missing (the sender address)".into()));
                };
                check_address(&from).map_err(|m| err(format!("from = {from:?}: {m}")))?;
                let to = r.to.clone().unwrap_or_default();
                if to.is_empty() {
                    return Err(err("to: name at least one recipient".into()));
                }
                for a in &to {
                    check_address(a).map_err(|m| err(format!("to: {a:?}: {m}")))?;
                }
                if r.username.is_some() != r.password_file.is_some() {
                    return Err(err("username and password_file: set both or neither".into()));
                }
                ChannelKind::Email {
                    host,
                    port,
                    starttls,
                    ca_file: r.ca_file.as_ref().map(file),
                    from,
                    to,
                    username: r.username.clone(),
                    password_file: r.password_file.as_ref().map(file),
                }
            }
        };
        out.push(ChannelConfig {
            name,
            timeout,
            kind,
        });
    }
    Ok(out)
}

/// An http(s) URL with a host.
pub(crate) fn check_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("has no host".into());
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains white space".into());
    }
    Ok(())
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_address(a: &str) -> Result<(), String> {
    a.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("not an e-mail address ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HubConfig;

    fn parse(text: &str) -> Result<HubConfig, String> {
        HubConfig::parse(text, Path::new("/d/hub.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_parses_with_paths_under_data_dir() {
        let c = parse(
            r#"
[[channel]]
name = "ops-hook"
kind = "webhook"
url = "https://hooks.example.com/outpost"
secret_file = "webhook.secret"
template = '{"text": {{summary}}, "key": {{dedup_key}}}'
timeout = "3s"

[[channel]]
name = "chat"
kind = "slack"
url_file = "/etc/outpost/slack.url"

[[channel]]
name = "teams"
kind = "teams"
url_file = "teams.url"
format = "messagecard"

[[channel]]
name = "plant-mail"
kind = "email"
smtp = "mail.example.com:587"
from = "outpost@example.com"
to = ["oncall@example.com", "b@example.com"]
username = "outpost"
password_file = "smtp.password"

[[channel]]
name = "relay"
kind = "email"
smtp = "127.0.0.1:25"
starttls = "none"
from = "outpost@example.com"
to = ["oncall@example.com"]

[[channel]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:9093"
"#,
        )
        .unwrap();
        let names: Vec<&str> = c.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["ops-hook", "chat", "teams", "plant-mail", "relay", "am"]
        );
        assert_eq!(c.channels[0].timeout, Duration::from_secs(3));
        assert_eq!(c.channels[1].timeout, DEFAULT_CHANNEL_TIMEOUT);
        assert!(matches!(
            &c.channels[0].kind,
            ChannelKind::Webhook { secret_file: Some(p), .. } if p == Path::new("/d/webhook.secret")
        ));
        assert!(matches!(
            &c.channels[1].kind,
            ChannelKind::Slack { url: UrlSource::File(p) } if p == Path::new("/etc/outpost/slack.url")
        ));
        assert!(matches!(
            &c.channels[2].kind,
            ChannelKind::Teams { format: TeamsFormat::MessageCard, url: UrlSource::File(p) }
                if p == Path::new("/d/teams.url")
        ));
        let ChannelKind::Email {
            host,
            port,
            starttls,
            password_file,
            to,
            ..
        } = &c.channels[3].kind
        else {
            panic!("not email: {:?}", c.channels[3]);
        };
        assert_eq!((host.as_str(), *port), ("mail.example.com", 587));
        assert_eq!(*starttls, StartTls::Required);
        assert_eq!(
            password_file.as_deref(),
            Some(Path::new("/d/smtp.password"))
        );
        assert_eq!(to.len(), 2);
        assert!(parse("").unwrap().channels.is_empty());
    }

    #[test]
    fn bad_channels_name_the_channel_and_the_key() {
        let base = "[[channel]]\nname = \"x\"\n";
        for (text, expect) in [
            (
                "[[channel]]\nkind = \"slack\"\nurl = \"https://h/\"",
                "`name` is missing",
            ),
            (
                "[[channel]]\nname = \"x\"\nkind = \"slack\"\nurl = \"https://h/\"\n\
                 [[channel]]\nname = \"x\"\nkind = \"slack\"\nurl = \"https://h/\"",
                "\"x\": name: a channel of this name is configured already",
            ),
            (
                "kind = \"pager\"",
                "\"x\": kind = \"pager\": not a channel kind",
            ),
            ("kind = \"slack\"", "\"x\": url (or url_file) is missing"),
            (
                "kind = \"slack\"\nurl = \"ftp://h\"",
                "\"x\": url = \"ftp://h\": must start",
            ),
            (
                "kind = \"slack\"\nurl = \"https://h\"\nsecret_file = \"s\"",
                "\"x\": secret_file: not a key of a slack channel",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h\"\nsecret = \"inline\"",
                "unknown field `secret`",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h\"\ntemplate = '{\"a\": {{nope}}}'",
                "\"x\": template: unknown placeholder {{nope}}",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h\"\ntemplate = '{\"a\": \"{{summary}}\"}'",
                "\"x\": template: not JSON",
            ),
            (
                "kind = \"webhook\"\nurl = \"https://h\"\ntimeout = \"soon\"",
                "\"x\": timeout = \"soon\"",
            ),
            (
                "kind = \"email\"\nsmtp = \"mail.example.com:25\"\nstarttls = \"none\"\n\
                 from = \"a@b.c\"\nto = [\"d@e.f\"]",
                "\"x\": starttls = \"none\": only for a relay on a loopback address",
            ),
            (
                "kind = \"email\"\nsmtp = \"mail.example.com\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]",
                "\"x\": smtp = \"mail.example.com\": not host:port",
            ),
            (
                "kind = \"email\"\nsmtp = \"m:25\"\nfrom = \"a@b.c\"\nto = []",
                "\"x\": to: name at least one recipient",
            ),
            (
                "kind = \"email\"\nsmtp = \"m:25\"\nfrom = \"not an address\"\nto = [\"d@e.f\"]",
                "\"x\": from = \"not an address\"",
            ),
            (
                "kind = \"email\"\nsmtp = \"m:25\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n\
                 username = \"u\"",
                "\"x\": username and password_file: set both or neither",
            ),
            (
                "kind = \"teams\"\nurl = \"https://h\"\nformat = \"html\"",
                "\"x\": format = \"html\"",
            ),
        ] {
            let text = if text.starts_with("[[channel]]") {
                text.to_string()
            } else {
                format!("{base}{text}")
            };
            let e = parse(&text).unwrap_err();
            assert!(e.contains(expect), "{text}\n→ {e}\nexpected: {expect}");
        }
    }
}
