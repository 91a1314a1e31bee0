//! Firing times across DST transitions, through the workflow parser (schedule + timezone keys):
//! the next firings of a few expressions, printed in RFC 3339 local time, around the spring and
//! autumn transitions of Europe/Berlin and America/New_York (2026).
#![allow(clippy::unwrap_used)]

use outpost_common::workflow::{Format, ValidateOptions, parse};

const EXPRS: &[&str] = &[
    "30 2 * * *",
    "0 * * * *",
    "*/20 1-3 * * *",
    "@daily",
    "0 30 1 * * *",
];

fn firings(tz: &str, from: &str, count: usize) -> String {
    let mut out = String::new();
    for expr in EXPRS {
        let src = format!(
            "name: dst\nschedule: \"{expr}\"\ntimezone: {tz}\ntasks:\n  t:\n    command: [true]\n"
        );
        let w = parse("dst.yaml", &src, Format::Yaml, &ValidateOptions::default()).unwrap();
        let start = chrono::DateTime::parse_from_rfc3339(from).unwrap().to_utc();
        out.push_str(&format!("{expr}  (after {from}, {tz})\n"));
        let mut prev = start;
        for t in w
            .schedule
            .as_ref()
            .unwrap()
            .iter_after(start, w.timezone)
            .take(count)
        {
            assert!(t > prev, "firings strictly increase");
            prev = t;
            out.push_str(&format!(
                "  {}\n",
                t.with_timezone(&w.timezone).to_rfc3339()
            ));
        }
    }
    out
}

#[test]
fn berlin_spring_forward() {
    // 2026-03-29 02:00 CET -> 03:00 CEST.
    insta::assert_snapshot!(
        "berlin_spring",
        firings("Europe/Berlin", "2026-03-28T23:00:00Z", 6)
    );
}

#[test]
fn berlin_fall_back() {
    // 2026-10-25 03:00 CEST -> 02:00 CET.
    insta::assert_snapshot!(
        "berlin_autumn",
        firings("Europe/Berlin", "2026-10-24T22:00:00Z", 6)
    );
}

#[test]
fn new_york_spring_forward() {
    // 2026-03-08 02:00 EST -> 03:00 EDT.
    insta::assert_snapshot!(
        "new_york_spring",
        firings("America/New_York", "2026-03-08T05:00:00Z", 6)
    );
}

#[test]
fn new_york_fall_back() {
    // 2026-11-01 02:00 EDT -> 01:00 EST.
    insta::assert_snapshot!(
        "new_york_autumn",
        firings("America/New_York", "2026-11-01T04:00:00Z", 6)
    );
}
