//! `kind = "webhook"`: POST JSON to a URL. The body is the [`Notification`] as JSON, or the
//! channel's `template` with `{{placeholders}}` replaced by JSON values (every value
//! JSON-encoded at this boundary: a value is data, it can never close a string or add a key).
//! With a `secret_file`, the body is signed: `X-Outpost-Signature: sha256=<hex HMAC-SHA256 of
//! the body>`. Every request carries `X-Outpost-Dedup-Key`.

use std::time::Duration;

use outpost_alerts::Notification;
use serde_json::{Value, json};

use super::DeliveryError;
use super::http::Http;
use super::text;

/// The placeholders a template may use.
pub(crate) const PLACEHOLDERS: &[&str] = &[
    "notification",
    "dedup_key",
    "rule",
    "status",
    "event",
    "summary",
    "text",
    "items",
    "labels",
    "starts_at",
    "ends_at",
    "created_at",
    "suppressed",
];

pub(super) struct Webhook {
    url: String,
    key: Option<ring::hmac::Key>,
    template: Option<String>,
    http: Http,
}

impl Webhook {
    pub(super) fn new(
        url: String,
        secret: Option<String>,
        template: Option<String>,
        timeout: Duration,
    ) -> Webhook {
        Webhook {
            url,
            key: secret.map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes())),
            template,
            http: Http::new(timeout),
        }
    }

    pub(super) fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let body = self.body(n)?;
        let signature = self.key.as_ref().map(|k| signature(k, body.as_bytes()));
        let mut headers = vec![("X-Outpost-Dedup-Key", n.dedup_key.as_str())];
        if let Some(s) = &signature {
            headers.push(("X-Outpost-Signature", s.as_str()));
        }
        self.http.post_json(&self.url, body.as_bytes(), &headers)
    }

    fn body(&self, n: &Notification) -> Result<String, DeliveryError> {
        match &self.template {
            None => serde_json::to_string(n)
                .map_err(|e| DeliveryError::fatal(format!("cannot encode the notification: {e}"))),
            Some(t) => {
                let body = render(t, n).map_err(DeliveryError::fatal)?;
                // The template was checked at load; the rendered body is checked again before
                // it leaves.
                serde_json::from_str::<Value>(&body)
                    .map_err(|e| DeliveryError::fatal(format!("the template gave no JSON: {e}")))?;
                Ok(body)
            }
        }
    }
}

/// `sha256=<hex>` of the body under the key.
pub(crate) fn signature(key: &ring::hmac::Key, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(key, body).as_ref())
    )
}

/// The JSON value of one placeholder.
fn value(name: &str, n: &Notification) -> Option<Value> {
    Some(match name {
        "notification" => serde_json::to_value(n).ok()?,
        "dedup_key" => json!(n.dedup_key),
        "rule" => json!(n.rule),
        "status" => json!(n.status.as_str()),
        "event" => json!(n.event),
        "summary" => json!(n.summary),
        "text" => {
            let mut t = text::title(n);
            for l in text::lines(n) {
                t.push('\n');
                t.push_str(&l);
            }
            json!(t)
        }
        "items" => serde_json::to_value(&n.items).ok()?,
        "labels" => Value::Object(
            n.labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        ),
        "starts_at" => json!(text::rfc3339(n.starts_ms)),
        "ends_at" => n
            .ends_ms
            .map(|t| json!(text::rfc3339(t)))
            .unwrap_or(Value::Null),
        "created_at" => json!(text::rfc3339(n.created_ms)),
        "suppressed" => json!(n.suppressed),
        _ => return None,
    })
}

/// Replace every `{{name}}` of the template by the JSON encoding of its value.
pub(crate) fn render(template: &str, n: &Notification) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("a {{ without its }}".into());
        };
        let name = after[..end].trim();
        let v = value(name, n).ok_or_else(|| {
            format!(
                "unknown placeholder {{{{{name}}}}} (known: {})",
                PLACEHOLDERS.join(", ")
            )
        })?;
        out.push_str(&v.to_string());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Check a template at load: known placeholders, and JSON once rendered.
pub(crate) fn check_template(template: &str) -> Result<(), String> {
    let sample = super::test_notification("hub", "channel", "operator", 0);
    let body = render(template, &sample)?;
    serde_json::from_str::<Value>(&body).map_err(|e| {
        format!(
            "not JSON once rendered ({e}); a placeholder is a JSON value: write {{{{summary}}}}, \
             not \"{{{{summary}}}}\""
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::text::fixture;

    #[test]
    fn template_values_are_json_encoded() {
        let n = fixture::notification();
        let body = render(
            r#"{"text": {{summary}}, "key": {{ dedup_key }}, "labels": {{labels}}, "n": {{suppressed}}, "end": {{ends_at}}}"#,
            &n,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        // The summary's quotes and braces stay inside the one string value.
        assert_eq!(v["text"], json!(n.summary));
        assert_eq!(v["key"], json!(n.dedup_key));
        assert_eq!(v["labels"]["pool"], json!("line-a"));
        assert_eq!(v["n"], json!(3));
        assert_eq!(v["end"], Value::Null);
        assert_eq!(v.as_object().unwrap().len(), 5);
        assert!(
            render("{{nope}}", &n)
                .unwrap_err()
                .contains("unknown placeholder {{nope}}")
        );
        assert!(render("{\"a\": {{summary}", &n).is_err());
        assert!(
            check_template(r#"{"a": "{{summary}}"}"#)
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(check_template(r#"{"a": {{text}}, "b": {{notification}}}"#).is_ok());
    }

    proptest::proptest! {
        /// Whatever a value holds (quotes, braces, placeholders, control characters), the
        /// rendered body is JSON and the value comes back as the one string it was.
        #[test]
        fn any_value_stays_one_json_string(summary in "\\PC*", key in ".*", rule in "[{}\"\\\\]*") {
            let mut n = fixture::notification();
            n.summary = summary;
            n.dedup_key = key;
            n.rule = rule;
            let body = render(r#"{"s": {{summary}}, "k": {{dedup_key}}, "r": {{rule}}, "t": {{text}}}"#, &n).unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            proptest::prop_assert_eq!(v.as_object().unwrap().len(), 4);
            proptest::prop_assert_eq!(&v["s"], &json!(n.summary));
            proptest::prop_assert_eq!(&v["k"], &json!(n.dedup_key));
            proptest::prop_assert_eq!(&v["r"], &json!(n.rule));
        }
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
