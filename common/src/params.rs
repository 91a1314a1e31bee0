//! Run parameters: the rule each declared parameter follows, and the one check every trigger
//! goes through (the agent before it creates a run, the hub before it sends a trigger).
//!
//! A parameter is declared in a workflow's `params` either in the short form `name: default` (an
//! optional string with that default) or in the long form
//! `name: {type: integer, default: 3, required: false, pattern: '^[0-9]+$', values: [..]}`.

use std::collections::BTreeMap;
use std::fmt;

/// The type of a parameter's value (values are always carried as strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamType {
    String,
    /// An optional `-`, then ASCII digits, fitting in an `i64`.
    Integer,
    /// A finite decimal number (`1`, `-2.5`, `1e3`).
    Number,
    /// `true` or `false`.
    Boolean,
    /// One of these strings.
    Enum(Vec<String>),
}

/// The rule of one declared parameter.
#[derive(Debug, Clone)]
pub struct ParamRule {
    pub ty: ParamType,
    /// Full-match pattern (`regex` syntax as `regex-lite` implements it: no Unicode classes), compiled at validation.
    pub(crate) pattern: Option<regex_lite::Regex>,
    /// A trigger must give it (no default).
    pub required: bool,
    /// The declared default, if any.
    pub(crate) default: Option<String>,
}

impl Default for ParamRule {
    /// The short form without the long-form keys: an optional string.
    fn default() -> ParamRule {
        ParamRule {
            ty: ParamType::String,
            pattern: None,
            required: false,
            default: None,
        }
    }
}

impl fmt::Display for ParamRule {
    /// The rule as a person reads it: `integer`, `one of a, b`, `string matching ^x$`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ty {
            ParamType::String => f.write_str("string")?,
            ParamType::Integer => f.write_str("integer")?,
            ParamType::Number => f.write_str("number")?,
            ParamType::Boolean => f.write_str("boolean (true or false)")?,
            ParamType::Enum(values) => write!(f, "one of {}", values.join(", "))?,
        }
        if let Some(p) = &self.pattern {
            write!(f, " matching `{}`", p.as_str())?;
        }
        Ok(())
    }
}

/// The full-match form of a pattern (`^(?:p)$`), so `pattern: '[a-z]+'` means the whole value.
pub(crate) fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

impl ParamRule {
    /// Does `value` satisfy the type and the pattern? `Err` says what the rule is.
    pub(crate) fn check(&self, value: &str) -> Result<(), String> {
        let type_ok = match &self.ty {
            ParamType::String => true,
            ParamType::Integer => value.parse::<i64>().is_ok() && !value.starts_with('+'),
            ParamType::Number => {
                !value.starts_with('+')
                    && value.parse::<f64>().is_ok_and(f64::is_finite)
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b".-eE+".contains(&b))
            }
            ParamType::Boolean => value == "true" || value == "false",
            ParamType::Enum(values) => values.iter().any(|v| v == value),
        };
        let full = self.pattern.as_ref().is_none_or(|p| p.is_match(value));
        if type_ok && full {
            Ok(())
        } else {
            Err(format!("must be {self}"))
        }
    }
}

/// Check the parameters `given` to a trigger of workflow `workflow` against its declarations
/// `rules`: every given name is declared, every value satisfies its rule, every required
/// parameter is given. The error names the parameter and the rule.
pub fn check_params(
    workflow: &str,
    rules: &BTreeMap<String, ParamRule>,
    given: &[(String, String)],
) -> Result<(), String> {
    for (k, v) in given {
        let Some(rule) = rules.get(k) else {
            let declared: Vec<&str> = rules.keys().map(String::as_str).collect();
            return Err(format!(
                "workflow `{workflow}` has no parameter `{k}` (declared: {})",
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            ));
        };
        rule.check(v)
            .map_err(|e| format!("parameter `{k}` of workflow `{workflow}` {e}; got `{v}`"))?;
    }
    for (k, rule) in rules {
        if rule.required && !given.iter().any(|(g, _)| g == k) {
            return Err(format!(
                "parameter `{k}` of workflow `{workflow}` is required ({rule}); give it with `{k}=VALUE`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(ty: ParamType, pattern: Option<&str>, required: bool) -> ParamRule {
        ParamRule {
            ty,
            pattern: pattern.map(|p| regex_lite::Regex::new(&anchored(p)).unwrap()),
            required,
            default: None,
        }
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn types() {
        let int = rule(ParamType::Integer, None, false);
        for ok in ["0", "-3", "42", "9223372036854775807"] {
            assert_eq!(int.check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "+1",
            "1.0",
            "1e3",
            " 1",
            "x",
            "9223372036854775808",
            "1; id",
        ] {
            assert_eq!(int.check(bad), Err("must be integer".into()), "{bad}");
        }
        let num = rule(ParamType::Number, None, false);
        for ok in ["0", "-2.5", "1e3", "3.25"] {
            assert_eq!(num.check(ok), Ok(()), "{ok}");
        }
        for bad in ["", "NaN", "inf", "+1", "1,5", "0x10", "1e999"] {
            assert!(num.check(bad).is_err(), "{bad}");
        }
        let b = rule(ParamType::Boolean, None, false);
        assert!(b.check("true").is_ok() && b.check("false").is_ok());
        assert!(b.check("yes").is_err() && b.check("True").is_err());
        let e = rule(ParamType::Enum(vec!["a".into(), "b".into()]), None, false);
        assert!(e.check("a").is_ok());
        assert_eq!(e.check("c"), Err("must be one of a, b".into()));
    }

    #[test]
    fn patterns_match_the_whole_value() {
        let r = rule(ParamType::String, Some("[a-z0-9-]+"), false);
        assert!(r.check("plant-7").is_ok());
        for bad in ["Plant-7", "plant 7", "x\"; id; echo \"", "", "ok\nbad"] {
            assert_eq!(
                r.check(bad),
                Err("must be string matching `^(?:[a-z0-9-]+)$`".into()),
                "{bad:?}"
            );
        }
        // An alternation is anchored as a whole.
        let r = rule(ParamType::String, Some("a|b"), false);
        assert!(r.check("a").is_ok() && r.check("ab").is_err() && r.check("xb").is_err());
    }

    #[test]
    fn check_params_names_the_parameter_and_the_rule() {
        let mut rules = BTreeMap::new();
        rules.insert("count".to_string(), rule(ParamType::Integer, None, false));
        rules.insert(
            "site".to_string(),
            rule(ParamType::String, Some("[a-z]+"), true),
        );
        assert_eq!(check_params("w", &rules, &kv(&[("site", "x")])), Ok(()));
        assert_eq!(
            check_params("w", &rules, &kv(&[("site", "x"), ("nope", "1")])),
            Err("workflow `w` has no parameter `nope` (declared: count, site)".into())
        );
        assert_eq!(
            check_params("w", &rules, &kv(&[("site", "x"), ("count", "three")])),
            Err("parameter `count` of workflow `w` must be integer; got `three`".into())
        );
        assert_eq!(
            check_params("w", &rules, &kv(&[("count", "3")])),
            Err("parameter `site` of workflow `w` is required (string matching `^(?:[a-z]+)$`); give it with `site=VALUE`".into())
        );
        assert_eq!(
            check_params("w", &BTreeMap::new(), &kv(&[("a", "1")])),
            Err("workflow `w` has no parameter `a` (declared: none)".into())
        );
    }
}
