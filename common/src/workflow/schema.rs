//! The workflow file's fields as one table: the validator takes its known keys from it (unknown
//! keys and "did you mean" hints), and [`json_schema`] makes the JSON Schema editors use from it
//! (`docs/workflow.schema.json`). A test checks the validator accepts a value of each field's
//! [`Ty`] and refuses a value of another type, so the table, the validator and the schema agree.
//!
//! Adding a field is one line in the right table (and its arm in the validator).

use serde_json::{Map, Value, json};

/// The type of a field's value, as the validator reads it.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// A string.
    Str,
    /// A string that is not blank.
    NonEmptyStr,
    /// A workflow name (lower-case letters, digits, `.`, `_`, `-`; at most 128 characters).
    Name,
    /// A boolean.
    Bool,
    /// An integer in `[min, max]`.
    Int(i64, i64),
    /// A duration: `30s`, `5m`, `1h30m`, `2d`, `250ms`, or whole seconds.
    Duration,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// An argv list (strings, numbers or booleans), not empty.
    Argv,
    /// A list of task ids.
    Ids,
    /// A map of names (matching the pattern) to strings, numbers or booleans.
    ScalarMap(&'static str),
    /// A map of resource names to units (an integer in `[1, max]`).
    Units(i64),
    /// A fraction between 0 and 1, or a boolean.
    Jitter,
    /// A memory size: bytes, or a string like `64Mi`.
    Memory,
    /// A number of CPUs: a number, or a string like `500m`.
    Cpu,
    /// A string, number or boolean (taken as written).
    Scalar,
    /// A user or group: a name (`[a-z_][a-z0-9_-]*`, `$` at the end allowed, at most 32
    /// characters) or a numeric id.
    RunAs,
    /// A map of these fields.
    Object(&'static [Field]),
    /// `defaults`: the [`TASK`] fields with `in_defaults`.
    Defaults,
    /// `tasks`: task ids to maps of [`TASK`] fields (at least one).
    Tasks,
    /// Parameters: names to a default (a string, number or boolean) or a map of [`PARAM`].
    Params,
    /// A hook: a map of [`HOOK`] fields with `command` or `script`.
    Hook,
}

/// One key of a workflow file.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The key.
    pub name: &'static str,
    /// Its value.
    pub ty: Ty,
    /// Whether a file must have it.
    pub required: bool,
    /// Whether it may be set in `defaults` too (task fields only).
    pub in_defaults: bool,
    /// One line for editors (the schema's `description`).
    pub doc: &'static str,
}

/// An optional field.
const fn f(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        in_defaults: true,
        doc,
    }
}

/// A required field.
const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        required: true,
        ..f(name, ty, doc)
    }
}

/// A task field that `defaults` cannot set.
const fn task_only(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        in_defaults: false,
        ..f(name, ty, doc)
    }
}

/// Workflow names.
const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]*$";
/// Task ids and parameter names.
const IDENT_PATTERN: &str = "^[A-Za-z0-9_-]+$";
/// Environment variable names.
const ENV_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// Target labels: any non-blank key.
const LABEL_PATTERN: &str = "\\S";

/// The keys at the top of a workflow file.
pub const WORKFLOW: &[Field] = &[
    req(
        "name",
        Ty::Name,
        "The workflow's name: lower-case letters, digits, `.`, `_` and `-`, at most 128 characters.",
    ),
    f("description", Ty::Str, "Free text."),
    f(
        "schedule",
        Ty::Str,
        "Cron expression (5 or 6 fields, or @hourly, @daily...); without it the workflow runs only when triggered.",
    ),
    f(
        "timezone",
        Ty::Str,
        "IANA time zone of the schedule, e.g. Europe/Berlin (default UTC).",
    ),
    f(
        "catchup",
        Ty::Enum(&["none", "latest", "all"]),
        "Firings missed while the agent was down: run none, the latest, or all (within catchup_window).",
    ),
    f(
        "catchup_window",
        Ty::Duration,
        "How far back catch-up looks (default 1d, at most 366d).",
    ),
    f(
        "overlap",
        Ty::Enum(&["skip", "queue", "allow", "cancel_running"]),
        "A firing while a run is active: skip it, queue it, allow it (up to max_active_runs), or cancel the running one.",
    ),
    f(
        "max_active_runs",
        Ty::Int(1, 1000),
        "Runs active at once (default 1).",
    ),
    f(
        "params",
        Ty::Params,
        "Parameters: name to a default, or to a map of type, default, required, pattern, values.",
    ),
    f(
        "env",
        Ty::ScalarMap(ENV_PATTERN),
        "Environment variables of every task.",
    ),
    f(
        "target",
        Ty::ScalarMap(LABEL_PATTERN),
        "Labels an agent must have to run the workflow.",
    ),
    f(
        "defaults",
        Ty::Defaults,
        "Task settings every task inherits (not command, script or depends_on).",
    ),
    req(
        "tasks",
        Ty::Tasks,
        "The tasks: task id to its settings (at least one).",
    ),
    f(
        "deadline",
        Ty::Duration,
        "A run not finished this long after its scheduled time is a deadline miss.",
    ),
    f(
        "max_start_delay",
        Ty::Duration,
        "A run not started this long after its scheduled time is a deadline miss.",
    ),
    f(
        "hooks",
        Ty::Object(HOOKS),
        "Commands run on the agent when a task fails, is retried, succeeds or misses its deadline.",
    ),
];

/// The keys of a task (and of `defaults`, those with `in_defaults`).
pub const TASK: &[Field] = &[
    task_only(
        "command",
        Ty::Argv,
        "The program and its arguments, run without a shell (exactly one of command or script).",
    ),
    task_only(
        "script",
        Ty::NonEmptyStr,
        "A shell script (exactly one of command or script).",
    ),
    f(
        "shell",
        Ty::NonEmptyStr,
        "The shell of script (default sh).",
    ),
    task_only("depends_on", Ty::Ids, "Tasks that must finish first."),
    f(
        "trigger_rule",
        Ty::Enum(&[
            "all_success",
            "all_done",
            "all_failed",
            "one_success",
            "one_failed",
            "none_failed",
        ]),
        "When the task runs, given its upstream tasks' outcomes (default all_success).",
    ),
    f(
        "timeout",
        Ty::Duration,
        "An attempt running longer is killed (at most 365d).",
    ),
    f(
        "retries",
        Ty::Int(0, 100),
        "Attempts after the first one fails (default 0).",
    ),
    f(
        "retry_delay",
        Ty::Duration,
        "Wait before a retry (at most 7d).",
    ),
    f(
        "retry_backoff",
        Ty::Enum(&["fixed", "exponential"]),
        "How retry_delay grows.",
    ),
    f(
        "max_retry_delay",
        Ty::Duration,
        "Cap of an exponential retry delay (at most 7d).",
    ),
    f(
        "retry_jitter",
        Ty::Jitter,
        "Random spread of retry delays: a fraction (0 to 1), or true (0.1).",
    ),
    f(
        "priority",
        Ty::Int(-2_147_483_648, 2_147_483_647),
        "Higher runs first when slots are scarce.",
    ),
    f(
        "env",
        Ty::ScalarMap(ENV_PATTERN),
        "Environment variables of this task.",
    ),
    f(
        "working_dir",
        Ty::NonEmptyStr,
        "Directory the task runs in.",
    ),
    f(
        "idempotent",
        Ty::Bool,
        "Safe to run again after an agent crash (an interrupted attempt is retried).",
    ),
    f(
        "resources",
        Ty::Units(1_000_000),
        "Units of the agent's declared resources the task holds while it runs.",
    ),
    f(
        "limits",
        Ty::Object(LIMITS),
        "Memory and CPU limits of the task's processes.",
    ),
    f(
        "deadline",
        Ty::Duration,
        "The task not finished this long after the run's scheduled time is a deadline miss.",
    ),
    f(
        "max_start_delay",
        Ty::Duration,
        "The task not started this long after the run's scheduled time is a deadline miss.",
    ),
    f(
        "hooks",
        Ty::Object(HOOKS),
        "This task's hooks (replace the workflow's for the same event).",
    ),
    f(
        "secret_env",
        Ty::ScalarMap(ENV_PATTERN),
        "Environment variables set from the agent's local secrets: variable name to secret name (resolved only on the agent).",
    ),
    f(
        "user",
        Ty::RunAs,
        "Run the task as this user (name or numeric id); the agent must allow it (`[exec] allowed_users`).",
    ),
    f(
        "group",
        Ty::RunAs,
        "Run the task with this group (name or numeric id).",
    ),
];

/// `limits:` of a task.
pub const LIMITS: &[Field] = &[
    f(
        "memory",
        Ty::Memory,
        "Memory limit: bytes, or with K, M, G, T, Ki, Mi, Gi, Ti, KB, MB, GB, TB (at most 1Pi).",
    ),
    f(
        "cpu",
        Ty::Cpu,
        "CPU limit: a number of CPUs (0.5) or millicpus (500m), at most 1024.",
    ),
];

/// `hooks:` of a workflow, task or `defaults`.
pub const HOOKS: &[Field] = &[
    f("on_failure", Ty::Hook, "Run when a task fails for good."),
    f(
        "on_retry",
        Ty::Hook,
        "Run when a task's attempt fails and it is retried.",
    ),
    f("on_success", Ty::Hook, "Run when a task succeeds."),
    f(
        "on_deadline_miss",
        Ty::Hook,
        "Run when a run or task misses its deadline or max_start_delay.",
    ),
];

/// One hook's command.
pub const HOOK: &[Field] = &[
    f(
        "command",
        Ty::Argv,
        "The program and its arguments (exactly one of command or script).",
    ),
    f(
        "script",
        Ty::NonEmptyStr,
        "A shell script (exactly one of command or script).",
    ),
    f(
        "shell",
        Ty::NonEmptyStr,
        "The shell of script (default sh).",
    ),
    f(
        "timeout",
        Ty::Duration,
        "The hook is killed after this long (default 1m, at most 1d).",
    ),
];

/// The long form of a parameter.
pub const PARAM: &[Field] = &[
    f(
        "type",
        Ty::Enum(&["string", "integer", "number", "boolean", "enum"]),
        "The parameter's type (default string).",
    ),
    f(
        "default",
        Ty::Scalar,
        "The value when a trigger gives none (a string, number or boolean).",
    ),
    f(
        "required",
        Ty::Bool,
        "A trigger must give it (not with default; not in a scheduled workflow).",
    ),
    f(
        "pattern",
        Ty::Str,
        "A regular expression the whole value must match.",
    ),
    f("values", Ty::Argv, "The allowed values of `type: enum`."),
];

/// The names of a table's fields (the validator's known keys).
pub fn names(fields: &[Field]) -> Vec<&'static str> {
    fields.iter().map(|f| f.name).collect()
}

/// The names of the task fields `defaults` cannot set.
pub fn task_only_names() -> Vec<&'static str> {
    TASK.iter()
        .filter(|f| !f.in_defaults)
        .map(|f| f.name)
        .collect()
}

/// The JSON Schema (draft-07, what the YAML language server reads) of workflow files, made
/// from the tables above.
pub fn json_schema() -> Value {
    let mut root = object(WORKFLOW);
    let mut defs = Map::new();
    let mut task = object(TASK);
    if let Value::Object(m) = &mut task {
        m.insert(
            "oneOf".into(),
            json!([{ "required": ["command"] }, { "required": ["script"] }]),
        );
    }
    defs.insert("task".into(), task);
    defs.insert(
        "defaults".into(),
        object(
            &TASK
                .iter()
                .copied()
                .filter(|f| f.in_defaults)
                .collect::<Vec<_>>(),
        ),
    );
    defs.insert("hook".into(), hook_schema());
    if let Value::Object(m) = &mut root {
        let mut head = Map::new();
        head.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-07/schema#"),
        );
        head.insert("title".into(), json!("Outpost workflow file"));
        head.insert(
            "description".into(),
            json!("An Outpost workflow (docs/workflows.md). Generated from the validator's field table: `outpost-agent schema`."),
        );
        head.append(m);
        head.insert("definitions".into(), Value::Object(defs));
        return Value::Object(head);
    }
    root
}

/// The schema of a map of `fields`.
fn object(fields: &[Field]) -> Value {
    let mut props = Map::new();
    for fld in fields {
        let mut s = ty_schema(fld.ty);
        if let Value::Object(m) = &mut s {
            m.insert("description".into(), json!(fld.doc));
        }
        props.insert(fld.name.into(), s);
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("properties".into(), Value::Object(props));
    m.insert("additionalProperties".into(), json!(false));
    if !required.is_empty() {
        m.insert("required".into(), json!(required));
    }
    Value::Object(m)
}

/// A string, number or boolean (taken as written).
fn scalar() -> Value {
    json!({ "type": ["string", "number", "boolean"] })
}

fn hook_schema() -> Value {
    let mut s = object(HOOK);
    if let Value::Object(m) = &mut s {
        m.insert(
            "oneOf".into(),
            json!([{ "required": ["command"] }, { "required": ["script"] }]),
        );
    }
    s
}

/// The schema of one value.
fn ty_schema(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({ "type": "string" }),
        Ty::NonEmptyStr => json!({ "type": "string", "pattern": "\\S" }),
        Ty::Name => json!({ "type": "string", "pattern": NAME_PATTERN, "maxLength": 128 }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Int(lo, hi) => json!({ "type": "integer", "minimum": lo, "maximum": hi }),
        Ty::Duration => json!({
            "anyOf": [
                { "type": "string", "pattern": "^\\s*[0-9]" },
                { "type": "integer", "minimum": 0 },
            ]
        }),
        Ty::Enum(values) => json!({ "type": "string", "enum": values }),
        Ty::Argv => json!({ "type": "array", "minItems": 1, "items": scalar() }),
        Ty::Ids => json!({ "type": "array", "items": { "type": "string" }, "uniqueItems": true }),
        Ty::ScalarMap(pattern) => json!({
            "type": "object",
            "propertyNames": { "pattern": pattern },
            "additionalProperties": scalar(),
        }),
        Ty::Units(max) => json!({
            "type": "object",
            "additionalProperties": { "type": "integer", "minimum": 1, "maximum": max },
        }),
        Ty::Jitter => json!({
            "anyOf": [
                { "type": "boolean" },
                { "type": "number", "minimum": 0, "maximum": 1 },
            ]
        }),
        Ty::Memory => json!({
            "anyOf": [
                { "type": "string", "pattern": "^\\s*[0-9]" },
                { "type": "integer", "minimum": 1 },
            ]
        }),
        Ty::Cpu => json!({
            "anyOf": [
                { "type": "string", "pattern": "^\\s*[0-9]" },
                { "type": "number", "exclusiveMinimum": 0, "maximum": 1024 },
            ]
        }),
        Ty::Scalar => scalar(),
        Ty::RunAs => json!({
            "anyOf": [
                { "type": "string", "pattern": "^([a-z_][a-z0-9_-]{0,30}[a-z0-9_$-]?|[0-9]+)$" },
                { "type": "integer", "minimum": 0 },
            ]
        }),
        Ty::Object(fields) => object(fields),
        // `$ref` alone: draft-07 ignores a `$ref`'s siblings, so the description goes around it.
        Ty::Defaults => json!({ "allOf": [{ "$ref": "#/definitions/defaults" }] }),
        Ty::Tasks => json!({
            "type": "object",
            "minProperties": 1,
            "propertyNames": { "pattern": IDENT_PATTERN, "maxLength": 128 },
            "additionalProperties": { "$ref": "#/definitions/task" },
        }),
        Ty::Params => {
            let long = object(PARAM);
            json!({
                "type": "object",
                "propertyNames": { "pattern": IDENT_PATTERN },
                "additionalProperties": { "anyOf": [scalar(), long] },
            })
        }
        Ty::Hook => json!({ "allOf": [{ "$ref": "#/definitions/hook" }] }),
    }
}

/// [`json_schema`] as the committed file holds it (pretty, with a final newline).
pub fn json_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    s.push('\n');
    s
}
