//! Placeholders in task `command` arguments and `script`s.
//!
//! The only syntax is `{{ path }}` (whitespace inside the braces optional), where `path` is one of:
//! - `run.id`, `run.workflow`, `run.scheduled_time`, `run.attempt`, `run.task`;
//! - `params.NAME`;
//! - `tasks.ID.outputs.KEY`.
//!
//! Path segments are made of ASCII letters, digits, `_` and `-`. There is no escaping, no filter,
//! no expression: any other `{{ ... }}` is an error, and so is a `{{` without its `}}`.

use std::fmt;

use thiserror::Error;

/// A field of the current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunField {
    /// `run.id`
    Id,
    /// `run.workflow`
    Workflow,
    /// `run.scheduled_time` (RFC 3339)
    ScheduledTime,
    /// `run.attempt` (1 for the first attempt)
    Attempt,
    /// `run.task` (the id of the task being run)
    Task,
}

impl RunField {
    fn name(self) -> &'static str {
        match self {
            RunField::Id => "id",
            RunField::Workflow => "workflow",
            RunField::ScheduledTime => "scheduled_time",
            RunField::Attempt => "attempt",
            RunField::Task => "task",
        }
    }

    const ALL: [RunField; 5] = [
        RunField::Id,
        RunField::Workflow,
        RunField::ScheduledTime,
        RunField::Attempt,
        RunField::Task,
    ];
}

/// One `{{ ... }}` reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// `run.FIELD`
    Run(RunField),
    /// `params.NAME`
    Param(String),
    /// `tasks.ID.outputs.KEY`
    TaskOutput { task: String, key: String },
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placeholder::Run(field) => write!(f, "run.{}", field.name()),
            Placeholder::Param(name) => write!(f, "params.{name}"),
            Placeholder::TaskOutput { task, key } => write!(f, "tasks.{task}.outputs.{key}"),
        }
    }
}

/// Why a template cannot be parsed or rendered. `offset` is the byte offset of the offending
/// `{{` in the template (not part of the message).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// A `{{` without a matching `}}`.
    #[error("`{{{{` is never closed with `}}}}`")]
    Unclosed { offset: usize },
    /// The text between the braces is not one of the placeholder forms.
    #[error("`{{{{ {text} }}}}`: {reason}")]
    Invalid {
        offset: usize,
        text: String,
        reason: String,
    },
    /// [`render`]'s lookup had no value for a placeholder.
    #[error("`{{{{ {placeholder} }}}}` has no value")]
    Unresolved { placeholder: Placeholder },
    /// A placeholder in a `script` where no reference to its value can be written safely (see
    /// [`script_contexts`]).
    #[error(
        "`{{{{ {placeholder} }}}}` {reason}; write it outside quotes (it becomes one word) or use the environment variable ({env})"
    )]
    UnsafeInScript {
        offset: usize,
        placeholder: Placeholder,
        reason: &'static str,
        env: String,
    },
}

/// A parsed template: literal text and placeholders, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Placeholder {
        placeholder: Placeholder,
        offset: usize,
    },
}

/// Parse `template` into its segments.
pub fn parse(template: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut base = 0usize;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Segment::Literal(rest[..open].to_string()));
        }
        let offset = base + open;
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(TemplateError::Unclosed { offset });
        };
        let inner = after[..close].trim();
        let placeholder = parse_path(inner).map_err(|reason| TemplateError::Invalid {
            offset,
            text: inner.to_string(),
            reason,
        })?;
        out.push(Segment::Placeholder {
            placeholder,
            offset,
        });
        let consumed = open + 2 + close + 2;
        rest = &rest[consumed..];
        base += consumed;
    }
    if !rest.is_empty() {
        out.push(Segment::Literal(rest.to_string()));
    }
    Ok(out)
}

/// The placeholders of `template`, in order of appearance (with repeats).
pub fn placeholders(template: &str) -> Result<Vec<Placeholder>, TemplateError> {
    Ok(parse(template)?
        .into_iter()
        .filter_map(|s| match s {
            Segment::Placeholder { placeholder, .. } => Some(placeholder),
            Segment::Literal(_) => None,
        })
        .collect())
}

/// Substitute every placeholder with the value `lookup` gives it. A placeholder `lookup` has no
/// value for is an error (nothing is silently rendered empty).
pub fn render(
    template: &str,
    lookup: &dyn Fn(&Placeholder) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    for seg in parse(template)? {
        match seg {
            Segment::Literal(s) => out.push_str(&s),
            Segment::Placeholder { placeholder, .. } => match lookup(&placeholder) {
                Some(v) => out.push_str(&v),
                None => return Err(TemplateError::Unresolved { placeholder }),
            },
        }
    }
    Ok(out)
}

/// The environment variable that always carries `p`'s value (`OUTPOST_PARAM_<NAME>`,
/// `OUTPOST_OUTPUT_<TASK>_<KEY>`, `OUTPOST_RUN_ID`, ...), named in messages.
pub fn env_var_of(p: &Placeholder) -> String {
    match p {
        Placeholder::Run(f) => run_var(*f).into(),
        Placeholder::Param(n) => param_var(n),
        Placeholder::TaskOutput { task, key } => output_var(task, key),
    }
}

/// The environment variable of a run field (`OUTPOST_RUN_ID`, ...).
pub fn run_var(f: RunField) -> &'static str {
    match f {
        RunField::Id => "OUTPOST_RUN_ID",
        RunField::Workflow => "OUTPOST_WORKFLOW",
        RunField::ScheduledTime => "OUTPOST_SCHEDULED_TIME",
        RunField::Attempt => "OUTPOST_ATTEMPT",
        RunField::Task => "OUTPOST_TASK",
    }
}

/// `OUTPOST_PARAM_<NAME>`: the environment variable of parameter `name`.
pub fn param_var(name: &str) -> String {
    format!("OUTPOST_PARAM_{}", crate::workflow::env_name(name))
}

/// `OUTPOST_OUTPUT_<TASK>_<KEY>`: the environment variable of a task's output.
pub fn output_var(task: &str, key: &str) -> String {
    let up = crate::workflow::env_name;
    format!("OUTPOST_OUTPUT_{}_{}", up(task), up(key))
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_path(inner: &str) -> Result<Placeholder, String> {
    if inner.is_empty() {
        return Err("empty placeholder".into());
    }
    let parts: Vec<&str> = inner.split('.').collect();
    if let Some(bad) = parts.iter().find(|p| !valid_segment(p)) {
        return Err(if bad.is_empty() {
            "empty path segment".into()
        } else {
            format!(
                "`{bad}` is not a name (letters, digits, `_`, `-`); templates have no other syntax"
            )
        });
    }
    match parts.as_slice() {
        ["run", field] => RunField::ALL
            .iter()
            .find(|f| f.name() == *field)
            .map(|f| Placeholder::Run(*f))
            .ok_or_else(|| {
                format!(
                    "unknown run field `{field}` (expected one of: {})",
                    RunField::ALL.map(|f| f.name()).join(", ")
                )
            }),
        ["run", ..] => Err("expected `run.FIELD`".into()),
        ["params", name] => Ok(Placeholder::Param((*name).to_string())),
        ["params", ..] => Err("expected `params.NAME`".into()),
        ["tasks", task, "outputs", key] => Ok(Placeholder::TaskOutput {
            task: (*task).to_string(),
            key: (*key).to_string(),
        }),
        ["tasks", ..] => Err("expected `tasks.ID.outputs.KEY`".into()),
        [ns, ..] => Err(format!(
            "unknown namespace `{ns}` (expected run, params or tasks)"
        )),
        [] => Err("empty placeholder".into()),
    }
}

mod shell;
pub use shell::{ScriptRender, ShellContext, render_script, script_contexts};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms_with_optional_whitespace() {
        let ph =
            placeholders("a {{run.id}} b {{ params.site }} {{  tasks.x.outputs.rows  }}").unwrap();
        assert_eq!(
            ph,
            vec![
                Placeholder::Run(RunField::Id),
                Placeholder::Param("site".into()),
                Placeholder::TaskOutput {
                    task: "x".into(),
                    key: "rows".into()
                },
            ]
        );
        assert_eq!(placeholders("no placeholders } { }}").unwrap(), vec![]);
    }

    #[test]
    fn rejects_other_syntax() {
        assert!(matches!(
            parse("x {{ run.id"),
            Err(TemplateError::Unclosed { offset: 2 })
        ));
        assert!(matches!(
            parse("{{ env.HOME }}"),
            Err(TemplateError::Invalid { .. })
        ));
        assert!(matches!(
            parse("{{ run.nope }}"),
            Err(TemplateError::Invalid { .. })
        ));
        assert!(matches!(
            parse("{{ params.a | upper }}"),
            Err(TemplateError::Invalid { .. })
        ));
        assert!(matches!(
            parse("{{ tasks.x.rows }}"),
            Err(TemplateError::Invalid { .. })
        ));
        assert!(matches!(parse("{{}}"), Err(TemplateError::Invalid { .. })));
        assert!(matches!(
            parse("{{ params..a }}"),
            Err(TemplateError::Invalid { .. })
        ));
    }

    #[test]
    fn renders_and_reports_missing_values() {
        let lookup = |p: &Placeholder| match p {
            Placeholder::Param(n) if n == "site" => Some("plant-7".to_string()),
            Placeholder::Run(RunField::Attempt) => Some("2".to_string()),
            _ => None,
        };
        assert_eq!(
            render("s={{params.site}} a={{ run.attempt }}!", &lookup).unwrap(),
            "s=plant-7 a=2!"
        );
        assert_eq!(
            render("{{ params.other }}", &lookup),
            Err(TemplateError::Unresolved {
                placeholder: Placeholder::Param("other".into())
            })
        );
        // Rendered values are not re-parsed.
        let echo = |_: &Placeholder| Some("{{ run.id }}".to_string());
        assert_eq!(render("{{ run.task }}", &echo).unwrap(), "{{ run.id }}");
    }
}
