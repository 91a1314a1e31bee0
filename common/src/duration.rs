//! Human durations as written in workflow files: `30s`, `5m`, `1h30m`, `2d`, `250ms`, or a bare
//! integer meaning seconds.
//!
//! Units: `ms` (milliseconds), `s`, `m`, `h`, `d` (24 hours). Components are written largest unit
//! first, each unit at most once (`1h30m`, not `30m1h`). No spaces, no signs, no fractions.

use std::time::Duration;

use thiserror::Error;

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// Nothing (or only whitespace) was written.
    #[error("empty duration")]
    Empty,
    /// Not digits followed by a unit.
    #[error(
        "`{0}` is not a duration: expected e.g. `30s`, `5m`, `1h30m`, `2d`, `250ms` or a number of seconds"
    )]
    Syntax(String),
    /// A unit other than ms, s, m, h, d.
    #[error("unknown unit `{unit}` in `{input}` (units: ms, s, m, h, d)")]
    UnknownUnit { input: String, unit: String },
    /// Units out of order or repeated (`30m1h`, `1h1h`).
    #[error("units in `{0}` must be written largest first, each at most once")]
    Order(String),
    /// More than `u64::MAX` milliseconds.
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

/// Milliseconds per unit, largest first (so the index gives the required order).
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parse a duration. A bare integer is a number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s
            .parse()
            .map_err(|_| DurationError::Overflow(s.to_string()))?;
        return Ok(Duration::from_secs(secs));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u64 = 0;
    // Index into UNITS of the last unit seen: the next one must have a larger index.
    let mut last: Option<usize> = None;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(DurationError::Syntax(s.to_string()));
        }
        let number: u64 = s[start..i]
            .parse()
            .map_err(|_| DurationError::Overflow(s.to_string()))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        if unit.is_empty() {
            return Err(DurationError::Syntax(s.to_string()));
        }
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit {
                input: s.to_string(),
                unit: unit.to_string(),
            });
        };
        if last.is_some_and(|l| idx <= l) {
            return Err(DurationError::Order(s.to_string()));
        }
        last = Some(idx);
        let ms = number
            .checked_mul(UNITS[idx].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
        total_ms = ms;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Format a duration in the syntax [`parse_duration`] reads, e.g. `1h30m`, `250ms`, `0s`.
/// Sub-millisecond parts are dropped.
pub(crate) fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, per) in UNITS {
        let n = ms / per;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            ms %= per;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m250ms"), Ok(Duration::from_millis(60_250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration(" 7s "), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("5x"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_duration("s"), Err(DurationError::Syntax(_))));
        assert!(matches!(
            parse_duration("-5s"),
            Err(DurationError::Syntax(_))
        ));
        assert!(matches!(
            parse_duration("1.5h"),
            Err(DurationError::Syntax(_))
        ));
        assert!(matches!(
            parse_duration("30m1h"),
            Err(DurationError::Order(_))
        ));
        assert!(matches!(
            parse_duration("1h1h"),
            Err(DurationError::Order(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn format_round_trips() {
        for s in ["1h30m", "250ms", "2d", "1d2h3m4s5ms", "59s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
        }
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
