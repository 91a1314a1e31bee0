//! `kind = "slack"`: a Slack incoming webhook. The body is `text` (the fallback for
//! notifications) and `blocks`: a header with the title, a section with one line per item (a
//! delayed item says "delayed by ..."), a context line with the rule, event and dedup key.
//! Values are escaped for Slack's mrkdwn (`&`, `<`, `>`), so a workflow named `<!channel>`
//! pings nobody and no value becomes a link.

use std::time::Duration;

use outpost_alerts::Notification;
use serde_json::{Value, json};

use super::DeliveryError;
use super::http::Http;
use super::text;

/// Slack's limits: a header's text, a section's text.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;

pub(super) struct Slack {
    url: String,
    http: Http,
}

/// Escape for Slack mrkdwn and plain text: the three characters Slack gives meaning to.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Slack {
    pub(super) fn new(url: String, timeout: Duration) -> Slack {
        Slack {
            url,
            http: Http::new(timeout),
        }
    }

    pub(super) fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let body = body(n).to_string();
        self.http.post_json(
            &self.url,
            body.as_bytes(),
            &[("X-Outpost-Dedup-Key", n.dedup_key.as_str())],
        )
    }
}

/// The JSON Slack receives.
pub(crate) fn body(n: &Notification) -> Value {
    let title = escape(&text::title(n));
    let lines: Vec<String> = text::lines(n)
        .iter()
        .map(|l| format!("• {}", escape(l)))
        .collect();
    let context = format!(
        "rule *{}* · event `{}` · key `{}`",
        escape(&n.rule),
        escape(&n.event),
        escape(&n.dedup_key)
    );
    json!({
        "text": text::truncate(&format!("{title}\n{}", lines.join("\n")), SECTION_MAX),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": text::truncate(&title, HEADER_MAX)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text::truncate(&lines.join("\n"), SECTION_MAX)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::text::fixture;

    #[test]
    fn slack_body_has_text_and_blocks_escaped() {
        let v = body(&fixture::notification());
        let t = v["text"].as_str().unwrap();
        assert!(t.starts_with("[FIRING] plc-sync failed"), "{t}");
        assert!(
            t.contains("&lt;!channel&gt;") && !t.contains("<!channel>"),
            "{t}"
        );
        assert_eq!(v["blocks"][0]["type"], "header");
        let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.contains("delayed by 2h 5m"), "{section}");
        assert!(section.contains("... and 3 more"), "{section}");
    }
}
