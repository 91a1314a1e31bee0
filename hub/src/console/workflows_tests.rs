//! Unit tests of the workflow pages' pure parts: firings with daylight-saving transitions, the
//! trigger form's fields and input.

use chrono::{TimeZone, Utc};

use super::*;

fn parse_yaml(src: &str) -> Workflow {
    workflow::parse("t.yaml", src, Format::Yaml, &ValidateOptions::default())
        .unwrap_or_else(|d| panic!("{d:?}"))
}

#[test]
fn firings_mark_dst_transitions_in_berlin() {
    let tz: Tz = "Europe/Berlin".parse().unwrap();
    let daily = Schedule::parse("0 3 * * *").unwrap();
    // Spring: the last Sunday of March 2026 is the 29th (02:00 CET -> 03:00 CEST).
    let after = Utc.with_ymd_and_hms(2026, 3, 26, 12, 0, 0).unwrap();
    let f = firings(&daily, tz, after, 5);
    assert_eq!(f.len(), 5);
    let days: Vec<String> = f
        .iter()
        .map(|x| x.local.format("%m-%d %H:%M %:z").to_string())
        .collect();
    assert_eq!(
        days,
        [
            "03-27 03:00 +01:00",
            "03-28 03:00 +01:00",
            "03-29 03:00 +02:00",
            "03-30 03:00 +02:00",
            "03-31 03:00 +02:00"
        ]
    );
    let dst: Vec<bool> = f.iter().map(|x| x.dst).collect();
    assert_eq!(dst, [false, false, true, false, false]);
    assert_eq!(
        f[2].utc,
        Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap(),
        "03:00 CEST is 01:00 UTC"
    );
    // Autumn: the last Sunday of October 2026 is the 25th (03:00 CEST -> 02:00 CET).
    let after = Utc.with_ymd_and_hms(2026, 10, 22, 12, 0, 0).unwrap();
    let f = firings(&daily, tz, after, 4);
    let dst: Vec<bool> = f.iter().map(|x| x.dst).collect();
    assert_eq!(dst, [false, false, true, false]);
    assert_eq!(f[2].local.format("%d %:z").to_string(), "25 +01:00");
    assert_eq!(f[1].local.format("%d %:z").to_string(), "24 +02:00");
    // A transition between now and the first firing marks the first one.
    let after = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
    let f = firings(&daily, tz, after, 2);
    assert!(f[0].dst, "the offset at 01:30 CET differs from 03:00 CEST");
    // UTC has no transitions.
    let f = firings(&daily, Tz::UTC, after, 10);
    assert!(f.iter().all(|x| !x.dst));
    assert_eq!(f.len(), 10);
}

#[test]
fn trigger_form_fields_follow_declarations_and_escape() {
    let wf = parse_yaml(
        r#"
name: esc
params:
  note: "<script>alert(1)</script>"
  count: {type: integer, default: 3}
  mode: {type: enum, values: [full, delta], default: delta}
  site: {type: string, required: true}
tasks:
  a:
    command: [/bin/true]
"#,
    );
    let html = param_fields(Lang::En, &wf).into_string();
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
    for p in ["note", "count", "mode", "site"] {
        assert!(
            html.contains(&format!("id=\"param-{p}\" name=\"param.{p}\"")),
            "{p}"
        );
    }
    assert!(html.contains("inputmode=\"numeric\""));
    assert!(html.contains("<option value=\"delta\">"));
    assert_eq!(html.matches(" required").count(), 1, "{html}");
    let zh = param_fields(Lang::Zh, &wf).into_string();
    assert!(zh.contains("必填"));
}

#[test]
fn trigger_input_keeps_given_values_only() {
    let (params, agent) =
        trigger_input(b"csrf=x&param.site=plant-7&param.count=&param.note=a%3Cb&agent=+a1+");
    assert_eq!(
        params,
        vec![
            ("site".to_string(), "plant-7".to_string()),
            ("note".to_string(), "a<b".to_string())
        ]
    );
    assert_eq!(agent.as_deref(), Some("a1"));
    let (params, agent) = trigger_input(b"csrf=x&agent=");
    assert!(params.is_empty());
    assert_eq!(agent, None);
}

#[test]
fn non_default_trigger_rules_are_named() {
    assert_eq!(rule_name(TriggerRule::AllSuccess), None);
    assert_eq!(rule_name(TriggerRule::AllDone), Some("all_done"));
    assert_eq!(rule_name(TriggerRule::NoneFailed), Some("none_failed"));
}

#[test]
fn workflow_writes_need_the_roles_of_their_api_twins() {
    use crate::store::Role;
    for w in ["trigger", "pause", "resume"] {
        assert_eq!(
            super::super::write_role(&format!("/ui/workflows/{{name}}/{w}")),
            Some(Some(Role::Operator)),
            "{w}"
        );
    }
}
