//! `kind = "email"`: one plain-text mail per notification over SMTP (`lettre`), upgraded with
//! STARTTLS (`starttls = "required"`, the default: rustls on ring, the public roots plus an
//! optional `ca_file`) or, for a relay on a loopback address only, plain (`starttls = "none"`).
//! The Message-ID is derived from the dedup key and the status, so a retried delivery carries
//! the same ID (a mail system can drop the copy) and a resolved notice threads under its firing
//! (`In-Reply-To`). Header values lose control characters (no header injection).

use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MessageBuilder};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use outpost_alerts::{AlertStatus, Notification};

use super::config::{ChannelKind, StartTls};
use super::{DeliveryError, read_secret, text};
use crate::config::ConfigError;

pub(super) struct Email {
    transport: SmtpTransport,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    /// The sender of an `email` channel: reads its password and CA files now.
    pub(super) fn open(
        channel: &str,
        kind: &ChannelKind,
        timeout: Duration,
    ) -> Result<Email, ConfigError> {
        let ChannelKind::Email {
            host,
            port,
            starttls,
            ca_file,
            from,
            to,
            username,
            password_file,
        } = kind
        else {
            return Err(ConfigError::Invalid {
                path: channel.into(),
                message: "not an email channel".into(),
            });
        };
        let bad = |path: &std::path::Path, key: &str, reason: String| ConfigError::Missing {
            what: "alert channel file",
            path: path.to_path_buf(),
            reason: format!("[[channel]] {channel:?} {key}: {reason}"),
        };
        let tls = match starttls {
            StartTls::None => Tls::None,
            StartTls::Required => {
                let mut params = TlsParameters::builder(host.clone());
                if let Some(p) = ca_file {
                    let pem = std::fs::read(p).map_err(|e| bad(p, "ca_file", e.to_string()))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| bad(p, "ca_file", format!("not a PEM certificate: {e}")))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params.build_rustls().map_err(|e| ConfigError::Invalid {
                    path: channel.into(),
                    message: format!("[[channel]] {channel:?}: TLS setup: {e}"),
                })?;
                Tls::Required(params)
            }
        };
        let mut builder = SmtpTransport::builder_dangerous(host.as_str())
            .port(*port)
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(user), Some(pf)) = (username, password_file) {
            let password = read_secret(channel, "password_file", pf)?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let mailbox = |a: &String| -> Result<Mailbox, ConfigError> {
            a.parse::<Mailbox>().map_err(|e| ConfigError::Invalid {
                path: channel.into(),
                message: format!("[[channel]] {channel:?}: {a:?}: {e}"),
            })
        };
        Ok(Email {
            transport: builder.build(),
            from: mailbox(from)?,
            to: to.iter().map(mailbox).collect::<Result<_, _>>()?,
        })
    }

    pub(super) fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let message = message(&self.from, &self.to, n)?;
        self.transport.send(&message).map(|_| ()).map_err(|e| {
            // A 5xx answer or a message the client refuses fails the same way next time.
            let retryable = !(e.is_permanent() || e.is_client());
            DeliveryError {
                retryable,
                message: format!("SMTP: {e}"),
            }
        })
    }
}

/// Control characters out (a header value stays one line).
fn header_value(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The Message-ID of a notification: the same for every delivery of one dedup key and status.
pub(crate) fn message_id(dedup_key: &str, status: AlertStatus, from: &Mailbox) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, dedup_key.as_bytes());
    let hash = hex::encode(&digest.as_ref()[..16]);
    format!("<{hash}.{}@{}>", status.as_str(), from.email.domain())
}

/// The mail of a notification.
pub(crate) fn message(
    from: &Mailbox,
    to: &[Mailbox],
    n: &Notification,
) -> Result<Message, DeliveryError> {
    let mut b: MessageBuilder = Message::builder()
        .from(from.clone())
        .subject(header_value(&text::title(n)))
        .message_id(Some(message_id(&n.dedup_key, n.status, from)))
        .date(SystemTime::UNIX_EPOCH + Duration::from_millis(n.created_ms.max(0) as u64));
    if n.status == AlertStatus::Resolved {
        let firing = message_id(&n.dedup_key, AlertStatus::Firing, from);
        b = b.in_reply_to(firing.clone()).references(firing);
    }
    for t in to {
        b = b.to(t.clone());
    }
    let mut body = String::new();
    body.push_str(&text::title(n));
    body.push_str("\n\n");
    for l in text::lines(n) {
        body.push_str("- ");
        body.push_str(&l);
        body.push('\n');
    }
    body.push_str(&format!(
        "\nrule: {}\nevent: {}\nstatus: {}\nsince: {}\n",
        n.rule,
        n.event,
        n.status.as_str(),
        text::rfc3339(n.starts_ms)
    ));
    if let Some(end) = n.ends_ms {
        body.push_str(&format!("until: {}\n", text::rfc3339(end)));
    }
    for (k, v) in &n.labels {
        body.push_str(&format!("label {k}: {v}\n"));
    }
    body.push_str(&format!("dedup key: {}\n", n.dedup_key));
    // 8bit keeps the text readable as sent (quoted-printable only for lines too long for it).
    let body =
        Body::new_with_encoding(body, ContentTransferEncoding::EightBit).unwrap_or_else(Body::new);
    b.header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| DeliveryError::fatal(format!("cannot build the mail: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::text::fixture;

    #[test]
    fn mail_has_stable_id_one_line_headers_and_delayed_items() {
        let from: Mailbox = "Outpost <outpost@example.com>".parse().unwrap();
        let to: Vec<Mailbox> = vec!["oncall@example.com".parse().unwrap()];
        let mut n = fixture::notification();
        n.summary.push_str("\r\nBcc: victim@example.com");
        let raw = String::from_utf8(message(&from, &to, &n).unwrap().formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(!headers.contains("\r\nBcc:"), "{headers}");
        let id = message_id(&n.dedup_key, AlertStatus::Firing, &from);
        assert!(headers.contains(&format!("Message-ID: {id}")), "{headers}");
        assert_eq!(id, message_id(&n.dedup_key, AlertStatus::Firing, &from));
        assert!(id.ends_with(".firing@example.com>"), "{id}");
        assert!(raw.contains("delayed by 2h 5m"), "{raw}");
        n.status = AlertStatus::Resolved;
        let raw = String::from_utf8(message(&from, &to, &n).unwrap().formatted()).unwrap();
        assert!(raw.contains(&format!("In-Reply-To: {id}")), "{raw}");
    }
}
