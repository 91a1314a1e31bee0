//! `kind = "teams"`: a Microsoft Teams incoming webhook. `format = "adaptive"` (default): a
//! `message` with one Adaptive Card (Teams Workflows webhooks); `format = "messagecard"`: a
//! legacy Office 365 connector MessageCard. Both carry the title, one line per item (a delayed
//! item says "delayed by ...") and the rule, event and dedup key as facts. Values are escaped
//! for the Markdown both render (`\`, `*`, `_`, `[`, `]`, `<`, `>`, `#`, `` ` ``), so no value
//! becomes a link or markup.

use std::time::Duration;

use outpost_alerts::{AlertStatus, Notification};
use serde_json::{Value, json};

use super::DeliveryError;
use super::config::TeamsFormat;
use super::http::Http;
use super::text;

pub(super) struct Teams {
    url: String,
    format: TeamsFormat,
    http: Http,
}

/// Backslash-escape the Markdown characters Teams renders.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '`' | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Teams {
    pub(super) fn new(url: String, format: TeamsFormat, timeout: Duration) -> Teams {
        Teams {
            url,
            format,
            http: Http::new(timeout),
        }
    }

    pub(super) fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let body = body(n, self.format).to_string();
        self.http.post_json(
            &self.url,
            body.as_bytes(),
            &[("X-Outpost-Dedup-Key", n.dedup_key.as_str())],
        )
    }
}

/// The JSON Teams receives.
pub(crate) fn body(n: &Notification, format: TeamsFormat) -> Value {
    let title = escape(&text::title(n));
    let lines: Vec<String> = text::lines(n).iter().map(|l| escape(l)).collect();
    let facts = [
        ("Rule", escape(&n.rule)),
        ("Event", escape(&n.event)),
        ("Dedup key", escape(&n.dedup_key)),
    ];
    let firing = n.status == AlertStatus::Firing;
    match format {
        TeamsFormat::Adaptive => {
            let mut body = vec![json!({
                "type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
                "wrap": true, "color": if firing { "Attention" } else { "Good" },
            })];
            body.extend(
                lines
                    .iter()
                    .map(|l| json!({"type": "TextBlock", "text": l, "wrap": true})),
            );
            body.push(json!({
                "type": "FactSet",
                "facts": facts.iter().map(|(k, v)| json!({"title": k, "value": v})).collect::<Vec<_>>(),
            }));
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": body,
                    },
                }],
            })
        }
        TeamsFormat::MessageCard => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": title,
            "title": title,
            "themeColor": if firing { "D70000" } else { "2EB886" },
            "text": lines.join("\n\n"),
            "sections": [{
                "facts": facts.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::text::fixture;

    #[test]
    fn teams_cards_escape_markdown_and_say_delayed() {
        let n = fixture::notification();
        let v = body(&n, TeamsFormat::Adaptive);
        assert_eq!(v["type"], "message");
        let card = &v["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        let first = card["body"][1]["text"].as_str().unwrap();
        assert!(first.contains("delayed by 2h 5m"), "{first}");
        assert!(first.contains("\\[x\\](http://evil) \\*b\\*"), "{first}");
        let v = body(&n, TeamsFormat::MessageCard);
        assert_eq!(v["@type"], "MessageCard");
        assert!(v["text"].as_str().unwrap().contains("delayed by 2h 5m"));
        assert_eq!(v["sections"][0]["facts"][0]["value"], "line-a-failures");
    }
}
