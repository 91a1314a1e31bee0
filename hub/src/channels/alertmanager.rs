//! `kind = "alertmanager"`: `POST <url>/api/v2/alerts` with one alert, so teams keep
//! Alertmanager's routing, grouping and silences. Labels: the notification's labels (names
//! made valid for Alertmanager: `[a-zA-Z_][a-zA-Z0-9_]*`) plus `alertname` = the rule.
//! Annotations: `summary`, `description` (one line per item; a delayed item says "delayed by
//! ..."), `dedup_key`. `startsAt` is when the condition began; `endsAt` is set when it cleared
//! (a resolved notice resolves the alert). Alertmanager identifies an alert by its labels, so
//! a repeated push of one notification is one alert.

use std::time::Duration;

use outpost_alerts::Notification;
use serde_json::{Map, Value, json};

use super::DeliveryError;
use super::http::Http;
use super::text;

pub(super) struct Alertmanager {
    endpoint: String,
    http: Http,
}

impl Alertmanager {
    pub(super) fn new(url: String, timeout: Duration) -> Alertmanager {
        Alertmanager {
            endpoint: format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            http: Http::new(timeout),
        }
    }

    pub(super) fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let body = body(n).to_string();
        self.http.post_json(&self.endpoint, body.as_bytes(), &[])
    }
}

/// A label name Alertmanager accepts: other characters become `_`, a leading digit gets `_`.
fn label_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The JSON array Alertmanager receives.
pub(crate) fn body(n: &Notification) -> Value {
    let mut labels = Map::new();
    for (k, v) in &n.labels {
        labels.insert(label_name(k), json!(v));
    }
    labels.insert("alertname".into(), json!(n.rule));
    let mut alert = Map::new();
    alert.insert("labels".into(), Value::Object(labels));
    alert.insert(
        "annotations".into(),
        json!({
            "summary": n.summary,
            "description": text::lines(n).join("\n"),
            "dedup_key": n.dedup_key,
        }),
    );
    alert.insert("startsAt".into(), json!(text::rfc3339_ms(n.starts_ms)));
    if let Some(end) = n.ends_ms {
        alert.insert("endsAt".into(), json!(text::rfc3339_ms(end)));
    }
    Value::Array(vec![Value::Object(alert)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::text::fixture;

    #[test]
    fn alert_has_labels_annotations_and_times() {
        let mut n = fixture::notification();
        n.labels.push(("site.name".into(), "sz".into()));
        let v = body(&n);
        let a = &v[0];
        assert_eq!(a["labels"]["alertname"], "line-a-failures");
        assert_eq!(a["labels"]["pool"], "line-a");
        assert_eq!(a["labels"]["site_name"], "sz");
        assert!(
            a["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("delayed by 2h 5m")
        );
        assert_eq!(a["startsAt"], "2025-12-06T05:46:40.000Z");
        assert!(a.get("endsAt").is_none());
        n.ends_ms = Some(n.starts_ms + 1000);
        assert_eq!(body(&n)[0]["endsAt"], "2025-12-06T05:46:41.000Z");
        assert_eq!(label_name("1a-b"), "_1a_b");
    }
}
