//! `[[rule]]` in `hub.toml`: alert rules, checked at load (a bad value names the rule and the
//! key; unknown keys are an error; a rule's channels must be configured `[[channel]]`s).

use std::collections::BTreeMap;

use outpost_alerts::{EventKind, Rule, When};
use outpost_common::duration::parse_duration;
use serde::Deserialize;

/// One `[[rule]]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    name: String,
    event: String,
    when: Option<String>,
    #[serde(default)]
    pools: Vec<String>,
    #[serde(default)]
    workflows: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    channels: Vec<String>,
    group_wait: Option<String>,
    repeat_interval: Option<String>,
    #[serde(rename = "for")]
    for_: Option<String>,
    above: Option<String>,
    below: Option<String>,
    before: Option<String>,
}

fn ms(rule: &str, key: &str, v: &str) -> Result<i64, String> {
    parse_duration(v)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|e| format!("[[rule]] {rule:?}: {key} = {v:?}: {e}"))
}

/// Resolve the `[[rule]]` tables.
pub(crate) fn parse_rules(raw: Vec<RawRule>) -> Result<Vec<Rule>, String> {
    let mut out: Vec<Rule> = Vec::new();
    for r in raw {
        let n = r.name.clone();
        if n.is_empty() {
            return Err("[[rule]]: name is empty".into());
        }
        if out.iter().any(|o| o.name == n) {
            return Err(format!("[[rule]] {n:?}: a second rule of that name"));
        }
        let event = EventKind::parse(&r.event).ok_or_else(|| {
            let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "[[rule]] {n:?}: event = {:?}: not one of {}",
                r.event,
                all.join(", ")
            )
        })?;
        let mut rule = Rule::new(&n, event);
        if let Some(w) = &r.when {
            if event != EventKind::RunFailed {
                return Err(format!(
                    "[[rule]] {n:?}: when is for event = \"run_failed\" only"
                ));
            }
            rule.when = When::parse(w).map_err(|e| format!("[[rule]] {n:?}: when = {w:?}: {e}"))?;
        }
        let threshold_keys = [
            ("for", &r.for_, EventKind::AgentOffline),
            ("above", &r.above, EventKind::ClockOffset),
            ("below", &r.below, EventKind::DiskLow),
            ("before", &r.before, EventKind::CertificateExpiring),
        ];
        for (key, v, kind) in threshold_keys {
            let Some(v) = v else { continue };
            if event != kind {
                return Err(format!(
                    "[[rule]] {n:?}: {key} is for event = \"{}\" only",
                    kind.as_str()
                ));
            }
            rule.threshold = Some(if key == "below" {
                let p = v.trim().strip_suffix('%').unwrap_or(v.trim());
                match p.trim().parse::<i64>() {
                    Ok(p) if (1..=100).contains(&p) => p,
                    _ => {
                        return Err(format!(
                            "[[rule]] {n:?}: below = {v:?}: expected a percentage of free space like \"10%\""
                        ));
                    }
                }
            } else {
                ms(&n, key, v)?
            });
        }
        if let Some(v) = &r.group_wait {
            rule.group_wait_ms = ms(&n, "group_wait", v)?;
        }
        if let Some(v) = &r.repeat_interval {
            rule.repeat_interval_ms = ms(&n, "repeat_interval", v)?;
        }
        for w in &r.workflows {
            if w.is_empty() {
                return Err(format!("[[rule]] {n:?}: workflows has an empty name"));
            }
        }
        rule.pools = r.pools;
        rule.workflows = r.workflows;
        rule.labels = r.labels.into_iter().collect();
        rule.channels = r.channels;
        out.push(rule);
    }
    Ok(out)
}

/// Every channel a rule names must be configured.
pub(crate) fn check_rule_channels(
    rules: &[Rule],
    channels: &crate::channels::Channels,
) -> Result<(), String> {
    for r in rules {
        for c in &r.channels {
            if !channels.has(c) {
                return Err(format!(
                    "[[rule]] {:?}: channels names {c:?}, which no [[channel]] defines",
                    r.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Vec<Rule>, String> {
        #[derive(Deserialize)]
        struct T {
            rule: Vec<RawRule>,
        }
        let t: T = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        parse_rules(t.rule)
    }

    #[test]
    fn rules_parse_with_defaults_and_thresholds() {
        let rules = parse(
            r#"
[[rule]]
name = "line-a-failures"
event = "run_failed"
when = "after 3"
pools = ["line-a"]
workflows = ["plc-*"]
labels = { site = "shenzhen" }
channels = ["ops-hook"]
group_wait = "10s"
repeat_interval = "2h"

[[rule]]
name = "offline"
event = "agent_offline"
for = "10m"

[[rule]]
name = "disk"
event = "disk_low"
below = "15%"
"#,
        )
        .unwrap();
        assert_eq!(rules[0].when, When::After(3));
        assert_eq!(rules[0].group_wait_ms, 10_000);
        assert_eq!(rules[0].repeat_interval_ms, 7_200_000);
        assert_eq!(rules[0].labels, vec![("site".into(), "shenzhen".into())]);
        assert_eq!(rules[1].threshold(), 600_000);
        assert_eq!(rules[1].group_wait_ms, 30_000);
        assert_eq!(rules[2].threshold(), 15);
    }

    #[test]
    fn bad_rules_name_the_rule_and_the_key() {
        let bad = [
            (
                "name = \"x\"\nevent = \"run_failed\"\nwhen = \"sometimes\"",
                "\"x\": when = \"sometimes\"",
            ),
            ("name = \"x\"\nevent = \"nope\"", "\"x\": event = \"nope\""),
            (
                "name = \"x\"\nevent = \"disk_low\"\nfor = \"10m\"",
                "\"x\": for is for event = \"agent_offline\"",
            ),
            (
                "name = \"x\"\nevent = \"agent_offline\"\nwhen = \"first\"",
                "\"x\": when is for",
            ),
            (
                "name = \"x\"\nevent = \"run_failed\"\ngroup_wait = \"soon\"",
                "\"x\": group_wait = \"soon\"",
            ),
            (
                "name = \"x\"\nevent = \"disk_low\"\nbelow = \"200%\"",
                "\"x\": below",
            ),
            (
                "name = \"x\"\nevent = \"run_failed\"\ncolour = \"red\"",
                "unknown field",
            ),
        ];
        for (body, want) in bad {
            let e = parse(&format!("[[rule]]\n{body}\n")).unwrap_err();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
        let dup = parse("[[rule]]\nname = \"x\"\nevent = \"run_failed\"\n[[rule]]\nname = \"x\"\nevent = \"run_failed\"\n")
            .unwrap_err();
        assert!(dup.contains("second rule"), "{dup}");
    }

    #[test]
    fn a_rule_must_name_configured_channels() {
        let rules =
            parse("[[rule]]\nname = \"x\"\nevent = \"run_failed\"\nchannels = [\"hook\"]\n")
                .unwrap();
        let e = check_rule_channels(&rules, &crate::channels::Channels::default()).unwrap_err();
        assert!(e.contains("\"hook\""), "{e}");
        assert!(check_rule_channels(&[], &crate::channels::Channels::default()).is_ok());
    }
}
