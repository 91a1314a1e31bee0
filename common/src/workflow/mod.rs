//! The workflow file format: parsing (YAML via serde-saphyr, TOML via `toml`) and validation into
//! the [`crate::model::Workflow`] model.
//!
//! Validation reports every problem it finds at once, each as a [`Diagnostic`] pointing at a line
//! and column of the file. It never panics, whatever the input. The file reference is
//! `docs/workflows.md`.
//!
//! **API Boundary**: [`parse`], [`load_file`], [`Format`], [`ValidateOptions`], [`Diagnostic`] and
//! [`env_name`] are used by the agent and (later) the hub.

mod node;
pub mod schema;
mod validate;

pub use validate::MAX_TASKS;
pub use validate::{valid_run_as_id, valid_secret_name};

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use crate::model::Workflow;

/// The syntax a workflow file is written in (the schema is the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

impl Format {
    /// `.toml` (any case) is TOML; anything else is YAML.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("toml") => Format::Toml,
            _ => Format::Yaml,
        }
    }
}

/// Context for validation that is not in the file itself.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// Resource names declared in the agent's configuration. `Some`: a task using any other
    /// resource is an error. `None`: resources are not checked.
    pub known_resources: Option<BTreeSet<String>>,
}

/// One problem found in a workflow file.
///
/// Displays as `file:line:column: field: message`, where `field` is a dotted path such as
/// `tasks.extract.retries` (list items as `command[0]`). Syntax errors of the file's format have
/// an empty `field` and display as `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given by the caller.
    pub file: String,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    /// Dotted path of the offending key, empty for syntax errors.
    pub field: String,
    /// What is wrong, and when it can be told, what would be right.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Parse and validate a workflow from `source`. `path_for_messages` is only used in
/// diagnostics. On error, every problem found is returned (at least one), ordered by position.
pub fn parse(
    path_for_messages: &str,
    source: &str,
    format: Format,
    opts: &ValidateOptions,
) -> Result<Workflow, Vec<Diagnostic>> {
    let syntax = |errors: Vec<node::SyntaxError>| -> Vec<Diagnostic> {
        errors
            .into_iter()
            .map(|e| Diagnostic {
                file: path_for_messages.to_string(),
                line: e.pos.line.max(1),
                column: e.pos.column.max(1),
                field: String::new(),
                message: e.message,
            })
            .collect()
    };
    let root = match format {
        Format::Yaml => node::parse_yaml(source).map_err(|e| syntax(vec![e]))?,
        Format::Toml => node::parse_toml(source).map_err(syntax)?,
    };
    validate::validate(path_for_messages, source, &root, opts)
}

/// Read and parse a workflow file; its format follows [`Format::from_path`]. An unreadable file
/// (or one that is not UTF-8) is one diagnostic at 1:1.
pub fn load_file(path: &Path, opts: &ValidateOptions) -> Result<Workflow, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let io_error = |message: String| {
        vec![Diagnostic {
            file: name.clone(),
            line: 1,
            column: 1,
            field: String::new(),
            message,
        }]
    };
    let bytes = std::fs::read(path).map_err(|e| io_error(format!("cannot read file: {e}")))?;
    let source =
        String::from_utf8(bytes).map_err(|e| io_error(format!("file is not valid UTF-8: {e}")))?;
    parse(&name, &source, Format::from_path(path), opts)
}

/// The environment-variable form of a name: ASCII upper-case, every character that is not an
/// ASCII letter or digit replaced by `_` (`plc-bus.rate` -> `PLC_BUS_RATE`).
pub fn env_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_name_upper_cases_and_replaces() {
        assert_eq!(env_name("plc-bus.rate"), "PLC_BUS_RATE");
        assert_eq!(env_name("rows_2"), "ROWS_2");
        assert_eq!(env_name("größe"), "GR__E");
    }

    #[test]
    fn format_from_path() {
        assert_eq!(Format::from_path(Path::new("a/b.toml")), Format::Toml);
        assert_eq!(Format::from_path(Path::new("a/b.TOML")), Format::Toml);
        assert_eq!(Format::from_path(Path::new("a/b.yaml")), Format::Yaml);
        assert_eq!(Format::from_path(Path::new("noext")), Format::Yaml);
    }

    #[test]
    fn diagnostic_display() {
        let d = Diagnostic {
            file: "w.yaml".into(),
            line: 3,
            column: 5,
            field: "tasks.a.retries".into(),
            message: "boom".into(),
        };
        assert_eq!(d.to_string(), "w.yaml:3:5: tasks.a.retries: boom");
        let d = Diagnostic {
            field: String::new(),
            ..d
        };
        assert_eq!(d.to_string(), "w.yaml:3:5: boom");
    }
}
