//! The plain-text rendering every channel shares: a title, one line per item (a delayed item
//! says "delayed by ..."), and how many more were folded in.

use outpost_alerts::{AlertItem, AlertStatus, Notification, notification::UnixMillis};

/// RFC 3339 UTC with seconds (`2026-12-07T04:40:58Z`).
pub(super) fn rfc3339(ms: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// RFC 3339 UTC with milliseconds (for machine receivers: Alertmanager).
pub(super) fn rfc3339_ms(ms: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A duration for people: `2h 5m`, `3d 4h`, `40s`.
pub(super) fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `[FIRING] summary` / `[RESOLVED] summary`.
pub(super) fn title(n: &Notification) -> String {
    let tag = match n.status {
        AlertStatus::Firing => "FIRING",
        AlertStatus::Resolved => "RESOLVED",
    };
    format!("[{tag}] {}", n.summary)
}

/// One item on one line: where (workflow, agent, task, run), what, when, and how late.
pub(super) fn item_line(i: &AlertItem) -> String {
    let mut whereabouts = Vec::new();
    for (k, v) in [
        ("workflow", &i.workflow),
        ("agent", &i.agent),
        ("task", &i.task),
        ("run", &i.run_id),
    ] {
        if let Some(v) = v {
            whereabouts.push(format!("{k} {v}"));
        }
    }
    let mut line = String::new();
    if !whereabouts.is_empty() {
        line.push_str(&whereabouts.join(", "));
        line.push_str(": ");
    }
    line.push_str(&i.detail);
    line.push_str(&format!(" (at {}", rfc3339(i.at_ms)));
    if let Some(d) = i.delayed_ms {
        line.push_str(&format!("; delayed by {}", human_duration(d)));
    }
    line.push(')');
    line
}

/// The item lines, and "... and N more" when some were folded in.
pub(super) fn lines(n: &Notification) -> Vec<String> {
    let mut out: Vec<String> = n.items.iter().map(item_line).collect();
    if n.suppressed > 0 {
        out.push(format!("... and {} more", n.suppressed));
    }
    out
}

/// Cut `s` to at most `max` characters (an ellipsis marks the cut).
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
pub(super) mod fixture {
    use super::*;

    /// A grouped, delayed failure notification whose values try to break out of every format.
    pub(crate) fn notification() -> Notification {
        Notification {
            dedup_key: "run_failed/line-a/plc-sync/1".into(),
            rule: "line-a-failures".into(),
            status: AlertStatus::Firing,
            event: "run_failed".into(),
            summary: "plc-sync failed on 2 agents <!channel> \"quoted\" {{summary}}".into(),
            items: vec![
                AlertItem {
                    agent: Some("edge-1".into()),
                    workflow: Some("plc-sync".into()),
                    run_id: Some("r-1".into()),
                    task: Some("extract".into()),
                    detail: "run failed: task extract exited 2 [x](http://evil) *b*".into(),
                    at_ms: 1_765_000_000_000,
                    delayed_ms: Some(2 * 3600 * 1000 + 5 * 60 * 1000),
                },
                AlertItem {
                    agent: Some("edge-2".into()),
                    workflow: Some("plc-sync".into()),
                    run_id: None,
                    task: None,
                    detail: "run failed\r\nBcc: x@evil.example".into(),
                    at_ms: 1_765_000_060_000,
                    delayed_ms: None,
                },
            ],
            labels: vec![
                ("event".into(), "run_failed".into()),
                ("pool".into(), "line-a".into()),
                ("rule".into(), "line-a-failures".into()),
                ("workflow".into(), "plc-sync".into()),
            ],
            starts_ms: 1_765_000_000_000,
            ends_ms: None,
            created_ms: 1_765_000_100_000,
            suppressed: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delayed_item_says_so() {
        let n = fixture::notification();
        let l = lines(&n);
        assert_eq!(l.len(), 3);
        assert!(l[0].contains("delayed by 2h 5m"), "{}", l[0]);
        assert!(l[0].starts_with("workflow plc-sync, agent edge-1, task extract, run r-1: "));
        assert!(!l[1].contains("delayed"), "{}", l[1]);
        assert_eq!(l[2], "... and 3 more");
        assert_eq!(human_duration(40_000), "40s");
        assert_eq!(human_duration(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
