//! Cron schedules: parsing (via croner) and firing times with Outpost's DST rule.
//!
//! A schedule matches *local wall-clock labels* in the workflow's time zone. Each matching label
//! fires once:
//! - a label that falls in a skipped hour (spring forward) fires at the first valid instant after
//!   it, i.e. the transition instant; several skipped labels collapse into that one firing;
//! - a label that occurs twice (fall back) fires at its first occurrence only.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A compiled cron expression.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.expr).finish()
    }
}

/// Why an expression is not a valid schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    /// The offending field ("minute", "day-of-week", ...) when it can be told, else `None`.
    pub(crate) field: Option<&'static str>,
    pub(crate) message: String,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{field} field: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ScheduleError {}

const FIELDS_5: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const FIELDS_6: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .build()
}

impl Schedule {
    /// Parse a 5-field (`m h dom mon dow`) or 6-field (seconds first) expression, or a nickname
    /// (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`). Day-of-month and day-of-week
    /// combine with OR, as in Vixie cron.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError {
                field: None,
                message: "empty cron expression".into(),
            });
        }
        let parts: Vec<&str> = trimmed.split_whitespace().collect();
        if !trimmed.starts_with('@') && parts.len() != 5 && parts.len() != 6 {
            return Err(ScheduleError {
                field: None,
                message: format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), found {}",
                    parts.len()
                ),
            });
        }
        match parser().parse(trimmed) {
            Ok(cron) => Ok(Schedule {
                expr: trimmed.to_string(),
                cron,
            }),
            Err(whole) => {
                // Find the first field that is wrong on its own, by substituting it into an
                // otherwise all-wildcard expression.
                if !trimmed.starts_with('@') {
                    let names: &[&str] = if parts.len() == 6 {
                        &FIELDS_6
                    } else {
                        &FIELDS_5
                    };
                    for (i, part) in parts.iter().enumerate() {
                        let mut probe: Vec<&str> = vec!["*"; parts.len()];
                        probe[i] = part;
                        if let Err(e) = parser().parse(&probe.join(" ")) {
                            return Err(ScheduleError {
                                field: Some(names[i]),
                                message: format!("`{part}`: {}", clean_croner_message(&e)),
                            });
                        }
                    }
                }
                Err(ScheduleError {
                    field: None,
                    message: clean_croner_message(&whole),
                })
            }
        }
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first firing strictly after `after`, in `tz`, under the DST rule in the module docs.
    /// `None` when the expression never matches again (e.g. Feb 30).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let mut label = after.with_timezone(&tz).naive_local();
        // Bounded: a few iterations suffice except across a repeated hour of per-second labels.
        for _ in 0..10_000 {
            let next_label = self.next_label(label)?;
            let at = resolve_label(next_label, tz)?;
            if at > after {
                return Some(at);
            }
            label = next_label;
        }
        None
    }

    /// Firing times strictly after `after`, in order.
    pub fn iter_after(
        &self,
        after: DateTime<Utc>,
        tz: Tz,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut cur = after;
        std::iter::from_fn(move || {
            let next = self.next_after(cur, tz)?;
            cur = next;
            Some(next)
        })
    }

    /// The next wall-clock label strictly after `label` that matches the expression.
    fn next_label(&self, label: NaiveDateTime) -> Option<NaiveDateTime> {
        // Treat labels as naive wall times: UTC has no DST, so croner walks labels one by one.
        self.cron
            .find_next_occurrence(&label.and_utc(), false)
            .ok()
            .map(|t| t.naive_utc())
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

/// Map a local label to the instant it fires at.
fn resolve_label(label: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&label) {
        chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        chrono::LocalResult::None => {
            // In a gap: the first valid instant after it. Gaps end on a whole minute in every
            // zone in the tz database, and last at most a few hours.
            let mut probe = label
                .with_second(0)
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(label);
            for _ in 0..(6 * 60) {
                probe += chrono::Duration::minutes(1);
                match tz.from_local_datetime(&probe) {
                    chrono::LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
                    chrono::LocalResult::Ambiguous(t, _) => return Some(t.with_timezone(&Utc)),
                    chrono::LocalResult::None => continue,
                }
            }
            None
        }
    }
}

use chrono::Timelike as _;

fn clean_croner_message(e: &croner::errors::CronError) -> String {
    let s = e.to_string();
    s.trim_start_matches("Invalid pattern: ")
        .trim_start_matches("Component error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn fire(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        let s = Schedule::parse(expr).map_err(|e| e.to_string());
        let s = match s {
            Ok(s) => s,
            Err(e) => return vec![e],
        };
        s.iter_after(utc(from), tz)
            .take(n)
            .map(|t| t.with_timezone(&tz).to_rfc3339())
            .collect()
    }

    #[test]
    fn five_and_six_fields() {
        assert_eq!(
            fire("*/20 * * * *", Tz::UTC, "2026-01-01T00:00:00Z", 3),
            [
                "2026-01-01T00:20:00+00:00",
                "2026-01-01T00:40:00+00:00",
                "2026-01-01T01:00:00+00:00"
            ]
        );
        assert_eq!(
            fire("*/30 * * * * *", Tz::UTC, "2026-01-01T00:00:00Z", 2),
            ["2026-01-01T00:00:30+00:00", "2026-01-01T00:01:00+00:00"]
        );
    }

    #[test]
    fn spring_forward_skipped_label_fires_once_at_transition() {
        // Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST.
        assert_eq!(
            fire(
                "30 2 * * *",
                chrono_tz::Europe::Berlin,
                "2026-03-28T12:00:00Z",
                2
            ),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
        );
        // Every 15 minutes: 02:00..02:45 collapse into one firing at 03:00.
        assert_eq!(
            fire(
                "*/15 * * * *",
                chrono_tz::Europe::Berlin,
                "2026-03-29T00:40:00Z",
                4
            ),
            [
                "2026-03-29T01:45:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00",
                "2026-03-29T03:30:00+02:00"
            ]
        );
    }

    #[test]
    fn fall_back_repeated_label_fires_once() {
        // Europe/Berlin: 2026-10-25 03:00 CEST -> 02:00 CET.
        assert_eq!(
            fire(
                "30 2 * * *",
                chrono_tz::Europe::Berlin,
                "2026-10-24T12:00:00Z",
                2
            ),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        // Starting inside the second pass of the repeated hour: nothing fires again until 03:00.
        assert_eq!(
            fire(
                "*/30 * * * *",
                chrono_tz::Europe::Berlin,
                "2026-10-25T01:05:00Z",
                2
            ),
            ["2026-10-25T03:00:00+01:00", "2026-10-25T03:30:00+01:00"]
        );
    }

    #[test]
    fn bad_field_is_named() {
        let e = Schedule::parse("0 25 * * *").err();
        assert_eq!(e.as_ref().and_then(|e| e.field), Some("hour"));
        let e = Schedule::parse("0 0 * *").err();
        assert!(e.is_some_and(|e| e.message.contains("expected 5 fields")));
    }
}
