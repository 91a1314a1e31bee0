//! Tree -> [`Workflow`], collecting every problem as a [`Diagnostic`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};

use super::node::{Node, Pos, Value};
use super::schema;
use super::{Diagnostic, ValidateOptions};
use crate::duration::parse_duration;
use crate::model::{
    Backoff, Catchup, DEFAULT_HOOK_TIMEOUT, Exec, Hook, HookEvent, Hooks, Limits, Overlap,
    RetryPolicy, Task, TriggerRule, Workflow,
};
use crate::params::{ParamRule, ParamType};
use crate::schedule::Schedule;
use crate::template::{self, Placeholder};

mod dag;
mod hooks;
mod params;
mod run_as;
mod script;

use dag::{Reach, topo_order};
use params::{read_params, required_params_check};
use script::script_shell_check;

pub use run_as::{valid_run_as_id, valid_secret_name};

// The known keys of each place come from the field table (`schema.rs`), which also makes the
// JSON Schema: a key is known to both or to neither.
static TOP_KEYS: LazyLock<Vec<&str>> = LazyLock::new(|| schema::names(schema::WORKFLOW));
static TASK_KEYS: LazyLock<Vec<&str>> = LazyLock::new(|| schema::names(schema::TASK));
static HOOK_KEYS: LazyLock<Vec<&str>> = LazyLock::new(|| schema::names(schema::HOOKS));
static HOOK_EXEC_KEYS: LazyLock<Vec<&str>> = LazyLock::new(|| schema::names(schema::HOOK));
/// Longest a hook may be given (`timeout`).
const MAX_HOOK_DAYS: u64 = 1;

/// The task keys `defaults` cannot set.
static EXEC_KEYS: LazyLock<Vec<&str>> = LazyLock::new(schema::task_only_names);
static LIMIT_KEYS: LazyLock<Vec<&str>> = LazyLock::new(|| schema::names(schema::LIMITS));

const MAX_NAME_LEN: usize = 128;
/// Tasks per workflow (docs/workflows.md). Validation and run set-up are linear in the tasks and
/// edges; the cap bounds what one file can make the CLI, the hub and every agent hold.
pub const MAX_TASKS: usize = 20_000;
const MAX_ACTIVE_RUNS: i128 = 1000;
const MAX_RETRIES: i128 = 100;
const MAX_RESOURCE_UNITS: i128 = 1_000_000;
const MAX_CPU: f64 = 1024.0;
const MAX_MEMORY: u64 = 1 << 50; // 1 PiB
const DAY: u64 = 86_400;

/// Retry jitter when `retry_jitter: true`.
pub(crate) const DEFAULT_JITTER: f64 = 0.1;

struct V<'a> {
    file: &'a str,
    diags: Vec<Diagnostic>,
    opts: &'a ValidateOptions,
}

/// Task settings as read from a task or from `defaults`, before merging.
#[derive(Default, Clone)]
struct Partial {
    command: Option<(Pos, Vec<(Pos, String)>)>,
    script: Option<(Pos, String)>,
    shell: Option<(Pos, String)>,
    depends_on: Option<(Pos, Vec<(Pos, String)>)>,
    trigger_rule: Option<TriggerRule>,
    timeout: Option<Duration>,
    retries: Option<u32>,
    retry_delay: Option<Duration>,
    retry_backoff: Option<Backoff>,
    max_retry_delay: Option<(Pos, Duration)>,
    retry_jitter: Option<f64>,
    priority: Option<i32>,
    env: BTreeMap<String, String>,
    working_dir: Option<String>,
    idempotent: Option<bool>,
    resources: BTreeMap<String, u32>,
    memory: Option<u64>,
    cpu: Option<f64>,
    deadline: Option<Duration>,
    max_start_delay: Option<Duration>,
    hooks: Hooks,
    secret_env: BTreeMap<String, String>,
    user: Option<String>,
    group: Option<String>,
    /// Where `command` / `script` keys were written (valid or not).
    command_key: Option<Pos>,
    script_key: Option<Pos>,
}

/// A task read from the file, with where it was written.
struct RawTask {
    id: String,
    pos: Pos,
    partial: Partial,
}

fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match did_you_mean(word, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

fn join_dot(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn valid_workflow_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Task ids, parameter names and output keys: usable in `{{ tasks.ID.outputs.KEY }}`.
fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

fn valid_env_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

impl V<'_> {
    fn err(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn type_err(&mut self, node: &Node, field: &str, expected: &str) {
        let found = node.type_name();
        self.err(
            node.pos,
            field,
            format!("expected {expected}, found {found}"),
        );
    }

    /// The entries of a map node, reporting non-string and duplicate keys. `what` names the
    /// entries for duplicate messages ("key", "task id").
    fn map_entries<'n>(
        &mut self,
        node: &'n Node,
        field: &str,
        what: &str,
    ) -> Option<Vec<(String, Pos, &'n Node)>> {
        let Value::Map(entries) = &node.value else {
            self.type_err(node, field, "a map");
            return None;
        };
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.scalar_string() else {
                self.err(
                    k.pos,
                    field,
                    format!("keys must be strings, found {}", k.type_name()),
                );
                continue;
            };
            if let Some(first) = seen.get(&key) {
                let msg = format!(
                    "duplicate {what} `{key}` (first defined at line {})",
                    first.line
                );
                self.err(k.pos, &join_dot(field, &key), msg);
                continue;
            }
            seen.insert(key.clone(), k.pos);
            out.push((key, k.pos, v));
        }
        Some(out)
    }

    fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.type_err(node, field, "a string");
                None
            }
        }
    }

    /// A string, or a number/boolean taken as written.
    fn scalar(&mut self, node: &Node, field: &str) -> Option<String> {
        let s = node.scalar_string();
        if s.is_none() {
            self.type_err(node, field, "a string, number or boolean");
        }
        s
    }

    fn non_empty_string(&mut self, node: &Node, field: &str) -> Option<String> {
        let s = self.string(node, field)?;
        if s.trim().is_empty() {
            self.err(node.pos, field, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn bool(&mut self, node: &Node, field: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.type_err(node, field, "a boolean (true or false)");
                None
            }
        }
    }

    fn int_in(&mut self, node: &Node, field: &str, lo: i128, hi: i128) -> Option<i128> {
        match node.value {
            Value::Int(i) if (lo..=hi).contains(&i) => Some(i),
            Value::Int(i) => {
                self.err(
                    node.pos,
                    field,
                    format!("{i} is out of range (allowed: {lo} to {hi})"),
                );
                None
            }
            _ => {
                self.type_err(node, field, "an integer");
                None
            }
        }
    }

    fn enum_value<T: Copy>(
        &mut self,
        node: &Node,
        field: &str,
        allowed: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(node, field)?;
        if let Some((_, v)) = allowed.iter().find(|(n, _)| *n == s) {
            return Some(*v);
        }
        let names: Vec<String> = allowed.iter().map(|(n, _)| format!("`{n}`")).collect();
        let hint = suggestion(&s, allowed.iter().map(|(n, _)| *n));
        self.err(
            node.pos,
            field,
            format!("unknown value `{s}` (allowed: {}){hint}", names.join(", ")),
        );
        None
    }

    /// A duration in `(min, max]` (or `[0, max]` when `allow_zero`).
    fn duration(
        &mut self,
        node: &Node,
        field: &str,
        allow_zero: bool,
        max_days: u64,
    ) -> Option<Duration> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) if *i < 0 => {
                self.err(node.pos, field, "a duration cannot be negative");
                return None;
            }
            Value::Int(i) => i.to_string(),
            _ => {
                self.type_err(
                    node,
                    field,
                    "a duration (e.g. `30s`, `5m`, `1h30m`, `2d`, `250ms`)",
                );
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.err(node.pos, field, "must be greater than zero");
                None
            }
            Ok(d) if d > Duration::from_secs(max_days * DAY) => {
                self.err(
                    node.pos,
                    field,
                    format!("`{text}` is too long (at most {max_days}d)"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(node.pos, field, e.to_string());
                None
            }
        }
    }

    /// A map of string keys to scalar values.
    fn string_map(
        &mut self,
        node: &Node,
        field: &str,
        key_ok: fn(&str) -> bool,
        key_rule: &str,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, kpos, v) in self.map_entries(node, field, "key").unwrap_or_default() {
            let f = join_dot(field, &k);
            if !key_ok(&k) {
                self.err(kpos, &f, format!("invalid name `{k}` ({key_rule})"));
                continue;
            }
            if let Some(s) = self.scalar(v, &f) {
                out.insert(k, s);
            }
        }
        out
    }

    fn unknown_key(&mut self, pos: Pos, field: &str, key: &str, known: &[&str]) {
        let hint = suggestion(key, known.iter().copied());
        self.err(pos, field, format!("unknown key `{key}`{hint}"));
    }

    fn task_partial(&mut self, node: &Node, prefix: &str, in_defaults: bool) -> Partial {
        let mut p = Partial::default();
        let Some(entries) = self.map_entries(node, prefix, "key") else {
            return p;
        };
        for (key, kpos, v) in entries {
            let f = join_dot(prefix, &key);
            if !TASK_KEYS.contains(&key.as_str()) {
                self.unknown_key(kpos, &f, &key, &TASK_KEYS);
                continue;
            }
            if matches!(v.value, Value::Null) && key != "command" && key != "script" {
                continue;
            }
            if in_defaults && EXEC_KEYS.contains(&key.as_str()) {
                self.err(
                    kpos,
                    &f,
                    format!("`{key}` cannot be set in defaults, only in a task"),
                );
                continue;
            }
            match key.as_str() {
                "command" => {
                    p.command_key = Some(kpos);
                    p.command = self.command(v, &f).map(|c| (kpos, c));
                }
                "script" => {
                    p.script_key = Some(kpos);
                    if let Some(s) = self.string(v, &f) {
                        if s.trim().is_empty() {
                            self.err(v.pos, &f, "script must not be empty");
                        }
                        p.script = Some((v.pos, s));
                    }
                }
                "shell" => p.shell = self.non_empty_string(v, &f).map(|s| (kpos, s)),
                "depends_on" => p.depends_on = self.depends_on(v, &f).map(|d| (kpos, d)),
                "trigger_rule" => {
                    p.trigger_rule = self.enum_value(
                        v,
                        &f,
                        &[
                            ("all_success", TriggerRule::AllSuccess),
                            ("all_done", TriggerRule::AllDone),
                            ("all_failed", TriggerRule::AllFailed),
                            ("one_success", TriggerRule::OneSuccess),
                            ("one_failed", TriggerRule::OneFailed),
                            ("none_failed", TriggerRule::NoneFailed),
                        ],
                    )
                }
                "timeout" => p.timeout = self.duration(v, &f, false, 365),
                "retries" => {
                    p.retries = self
                        .int_in(v, &f, 0, MAX_RETRIES)
                        .and_then(|i| u32::try_from(i).ok())
                }
                "retry_delay" => p.retry_delay = self.duration(v, &f, true, 7),
                "retry_backoff" => {
                    p.retry_backoff = self.enum_value(
                        v,
                        &f,
                        &[
                            ("fixed", Backoff::Fixed),
                            ("exponential", Backoff::Exponential),
                        ],
                    )
                }
                "max_retry_delay" => {
                    p.max_retry_delay = self.duration(v, &f, false, 7).map(|d| (v.pos, d))
                }
                "retry_jitter" => p.retry_jitter = self.jitter(v, &f),
                "priority" => {
                    p.priority = self
                        .int_in(v, &f, i128::from(i32::MIN), i128::from(i32::MAX))
                        .and_then(|i| i32::try_from(i).ok())
                }
                "env" => {
                    p.env = self.string_map(
                        v,
                        &f,
                        valid_env_key,
                        "letters, digits and `_`, not starting with a digit",
                    )
                }
                "working_dir" => p.working_dir = self.non_empty_string(v, &f),
                "idempotent" => p.idempotent = self.bool(v, &f),
                "resources" => p.resources = self.resources(v, &f),
                "limits" => self.limits(v, &f, &mut p),
                "deadline" => p.deadline = self.duration(v, &f, false, 366),
                "max_start_delay" => p.max_start_delay = self.duration(v, &f, false, 366),
                "hooks" => p.hooks = self.hooks(v, &f),
                "secret_env" => p.secret_env = self.secret_env(v, &f),
                "user" => p.user = self.run_as_id(v, &f, "user"),
                "group" => p.group = self.run_as_id(v, &f, "group"),
                _ => self.unknown_key(kpos, &f, &key, &TASK_KEYS),
            }
        }
        p
    }

    fn command(&mut self, node: &Node, field: &str) -> Option<Vec<(Pos, String)>> {
        let items = match &node.value {
            Value::Seq(items) => items,
            Value::Str(_) => {
                self.err(
                    node.pos,
                    field,
                    "expected a list of arguments (argv, run without a shell); use `script` for a shell command line",
                );
                return None;
            }
            _ => {
                self.type_err(node, field, "a list of arguments");
                return None;
            }
        };
        if items.is_empty() {
            self.err(node.pos, field, "command must not be empty");
            return None;
        }
        let mut argv = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            match self.scalar(item, &f) {
                Some(s) => argv.push((item.pos, s)),
                None => ok = false,
            }
        }
        if let Some((pos, first)) = argv.first()
            && items.first().is_some_and(|n| n.pos == *pos)
            && first.trim().is_empty()
        {
            self.err(
                *pos,
                &format!("{field}[0]"),
                "the program (argv[0]) must not be empty",
            );
            ok = false;
        }
        ok.then_some(argv)
    }

    fn depends_on(&mut self, node: &Node, field: &str) -> Option<Vec<(Pos, String)>> {
        let Value::Seq(items) = &node.value else {
            self.type_err(node, field, "a list of task ids");
            return None;
        };
        let mut out: Vec<(Pos, String)> = Vec::new();
        // A sink of a wide fan-in lists thousands of ids: a set, not a search per id.
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            if let Some(s) = self.string(item, &f) {
                if !seen.insert(s.clone()) {
                    self.err(item.pos, &f, format!("`{s}` is listed twice"));
                    continue;
                }
                out.push((item.pos, s));
            }
        }
        Some(out)
    }

    fn jitter(&mut self, node: &Node, field: &str) -> Option<f64> {
        let x = match node.value {
            Value::Bool(true) => return Some(DEFAULT_JITTER),
            Value::Bool(false) => return Some(0.0),
            Value::Float(x) => x,
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => i as f64,
            _ => {
                self.type_err(node, field, "a fraction between 0 and 1, or a boolean");
                return None;
            }
        };
        if !(0.0..=1.0).contains(&x) {
            self.err(
                node.pos,
                field,
                format!("{x} is out of range (a fraction between 0 and 1)"),
            );
            return None;
        }
        Some(x)
    }

    fn resources(&mut self, node: &Node, field: &str) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for (name, kpos, v) in self
            .map_entries(node, field, "resource")
            .unwrap_or_default()
        {
            let f = join_dot(field, &name);
            if let Some(known) = &self.opts.known_resources
                && !known.contains(&name)
            {
                let declared = if known.is_empty() {
                    "the agent declares no resources".to_string()
                } else {
                    let list: Vec<&str> = known.iter().map(String::as_str).collect();
                    format!("declared: {}", list.join(", "))
                };
                let hint = suggestion(&name, known.iter().map(String::as_str));
                self.err(
                    kpos,
                    &f,
                    format!("unknown resource `{name}` ({declared}){hint}"),
                );
                continue;
            }
            if let Some(units) = self.int_in(v, &f, 1, MAX_RESOURCE_UNITS) {
                out.insert(name, u32::try_from(units).unwrap_or(u32::MAX));
            }
        }
        out
    }

    fn limits(&mut self, node: &Node, field: &str, p: &mut Partial) {
        for (key, kpos, v) in self.map_entries(node, field, "key").unwrap_or_default() {
            let f = join_dot(field, &key);
            match key.as_str() {
                "memory" => p.memory = self.memory(v, &f),
                "cpu" => p.cpu = self.cpu(v, &f),
                _ => self.unknown_key(kpos, &f, &key, &LIMIT_KEYS),
            }
        }
    }

    fn memory(&mut self, node: &Node, field: &str) -> Option<u64> {
        let text = match &node.value {
            Value::Str(s) => s.trim().to_string(),
            Value::Int(i) => i.to_string(),
            _ => {
                self.type_err(node, field, "a memory size (e.g. `64Mi`, `512MB` or bytes)");
                return None;
            }
        };
        match crate::size::parse_bytes(&text) {
            Some(0) => {
                self.err(node.pos, field, "must be greater than zero");
                None
            }
            Some(b) if b > MAX_MEMORY => {
                self.err(
                    node.pos,
                    field,
                    format!("`{text}` is too large (at most 1Pi)"),
                );
                None
            }
            Some(b) => Some(b),
            None => {
                self.err(
                    node.pos,
                    field,
                    format!("`{text}` is not a memory size (a number of bytes, optionally with K, M, G, T, Ki, Mi, Gi, Ti, KB, MB, GB, TB)"),
                );
                None
            }
        }
    }

    fn cpu(&mut self, node: &Node, field: &str) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        let x = match &node.value {
            Value::Float(x) => Some(*x),
            Value::Int(i) => Some(*i as f64),
            Value::Str(s) => {
                let s = s.trim();
                match s.strip_suffix('m') {
                    Some(milli) => milli.parse::<u64>().ok().map(|m| m as f64 / 1000.0),
                    None => s.parse::<f64>().ok(),
                }
            }
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() && x > 0.0 && x <= MAX_CPU => Some(x),
            Some(x) if x.is_finite() && x > 0.0 => {
                self.err(
                    node.pos,
                    field,
                    format!("{x} CPUs is too many (at most {MAX_CPU})"),
                );
                None
            }
            Some(_) => {
                self.err(node.pos, field, "must be greater than zero");
                None
            }
            None => {
                self.type_err(node, field, "a number of CPUs (e.g. `0.5` or `500m`)");
                None
            }
        }
    }
}

pub(super) fn validate(
    file: &str,
    source: &str,
    root: &Node,
    opts: &ValidateOptions,
) -> Result<Workflow, Vec<Diagnostic>> {
    let mut v = V {
        file,
        diags: Vec::new(),
        opts,
    };
    let wf = build(&mut v, source, root);
    match wf {
        Some(wf) if v.diags.is_empty() => Ok(wf),
        _ => {
            if v.diags.is_empty() {
                // Unreachable in practice: every `None` above reports why.
                v.err(Pos::START, "", "invalid workflow");
            }
            let mut diags = v.diags;
            diags.sort_by_key(|d| (d.line, d.column));
            Err(diags)
        }
    }
}

fn build(v: &mut V<'_>, source: &str, root: &Node) -> Option<Workflow> {
    if matches!(root.value, Value::Null) {
        v.err(
            Pos::START,
            "",
            "the file is empty: a workflow needs at least `name` and `tasks`",
        );
        return None;
    }
    let entries = match &root.value {
        Value::Map(_) => v.map_entries(root, "", "key")?,
        _ => {
            let found = root.type_name();
            v.err(
                root.pos,
                "",
                format!("expected a map of workflow keys, found {found}"),
            );
            return None;
        }
    };

    let mut name = None;
    let mut description = None;
    let mut schedule = None;
    let mut timezone = Some(chrono_tz::Tz::UTC);
    let mut catchup = Some(Catchup::default());
    let mut catchup_window = Some(Duration::from_secs(DAY));
    let mut overlap = Some(Overlap::default());
    let mut max_active_runs = Some(1u32);
    let mut params = BTreeMap::new();
    let mut param_rules = BTreeMap::new();
    let mut params_pos = None;
    let mut env = BTreeMap::new();
    let mut target = BTreeMap::new();
    let mut defaults = Partial::default();
    let mut tasks_node: Option<(Pos, &Node)> = None;
    let mut name_seen = false;
    let mut deadline = None;
    let mut max_start_delay = None;
    let mut hooks = Hooks::default();

    for (key, kpos, node) in entries {
        let f = key.as_str();
        if !TOP_KEYS.contains(&f) {
            v.unknown_key(kpos, f, &key, &TOP_KEYS);
            continue;
        }
        if matches!(node.value, Value::Null) && key != "name" && key != "tasks" {
            continue;
        }
        match f {
            "name" => {
                name_seen = true;
                if matches!(node.value, Value::Null) {
                    v.err(kpos, f, "must not be empty");
                } else if let Some(s) = v.string(node, f) {
                    if s.len() > MAX_NAME_LEN {
                        v.err(
                            node.pos,
                            f,
                            format!("too long ({} characters, at most {MAX_NAME_LEN})", s.len()),
                        );
                    } else if valid_workflow_name(&s) {
                        name = Some(s);
                    } else {
                        v.err(
                            node.pos,
                            f,
                            format!("invalid name `{s}`: use lower-case letters, digits, `.`, `_` and `-`, starting with a letter or digit"),
                        );
                    }
                }
            }
            "description" => description = v.string(node, f),
            "schedule" => {
                if let Some(s) = v.string(node, f) {
                    match Schedule::parse(&s) {
                        Ok(s) => schedule = Some(s),
                        Err(e) => v.err(
                            node.pos,
                            f,
                            format!("invalid cron expression `{}`: {e}", s.trim()),
                        ),
                    }
                }
            }
            "timezone" => {
                timezone = None;
                if let Some(s) = v.string(node, f) {
                    match s.trim().parse::<chrono_tz::Tz>() {
                        Ok(tz) => timezone = Some(tz),
                        Err(_) => {
                            let hint = suggestion(
                                s.trim(),
                                chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()),
                            );
                            v.err(node.pos, f, format!("unknown time zone `{s}` (expected an IANA name such as `Europe/Berlin`){hint}"));
                        }
                    }
                }
            }
            "catchup" => {
                catchup = v.enum_value(
                    node,
                    f,
                    &[
                        ("none", Catchup::None),
                        ("latest", Catchup::Latest),
                        ("all", Catchup::All),
                    ],
                )
            }
            "catchup_window" => catchup_window = v.duration(node, f, false, 366),
            "overlap" => {
                overlap = v.enum_value(
                    node,
                    f,
                    &[
                        ("skip", Overlap::Skip),
                        ("queue", Overlap::Queue),
                        ("allow", Overlap::Allow),
                        ("cancel_running", Overlap::CancelRunning),
                    ],
                )
            }
            "max_active_runs" => {
                max_active_runs = v
                    .int_in(node, f, 1, MAX_ACTIVE_RUNS)
                    .and_then(|i| u32::try_from(i).ok())
            }
            "params" => {
                params_pos = Some(kpos);
                (params, param_rules) = read_params(v, node, f);
            }
            "env" => {
                env = v.string_map(
                    node,
                    f,
                    valid_env_key,
                    "letters, digits and `_`, not starting with a digit",
                )
            }
            "target" => {
                target = v.string_map(node, f, |k| !k.trim().is_empty(), "must not be empty")
            }
            "defaults" => defaults = v.task_partial(node, f, true),
            "tasks" => tasks_node = Some((kpos, node)),
            "deadline" => deadline = v.duration(node, f, false, 366),
            "max_start_delay" => max_start_delay = v.duration(node, f, false, 366),
            "hooks" => hooks = v.hooks(node, f),
            _ => v.unknown_key(kpos, f, &key, &TOP_KEYS),
        }
    }
    if !name_seen {
        v.err(Pos::START, "name", "missing required key `name`");
    }
    required_params_check(v, params_pos, schedule.is_some(), &param_rules);

    let raw_tasks = match tasks_node {
        None => {
            v.err(Pos::START, "tasks", "missing required key `tasks`");
            return None;
        }
        Some((kpos, node)) if matches!(node.value, Value::Null) => {
            v.err(kpos, "tasks", "must contain at least one task");
            return None;
        }
        Some((kpos, node)) => read_tasks(v, kpos, node)?,
    };

    // Merge defaults and check exec.
    let ids: Vec<&str> = raw_tasks.iter().map(|t| t.id.as_str()).collect();
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); raw_tasks.len()];
    for (i, t) in raw_tasks.iter().enumerate() {
        let tf = format!("tasks.{}", t.id);
        if let Some((_, list)) = &t.partial.depends_on {
            for (j, (pos, dep)) in list.iter().enumerate() {
                let f = format!("{tf}.depends_on[{j}]");
                if *dep == t.id {
                    v.err(*pos, &f, format!("task `{dep}` cannot depend on itself"));
                } else if let Some(&d) = index.get(dep.as_str()) {
                    deps[i].push(d);
                } else {
                    let hint = suggestion(dep, ids.iter().copied().filter(|id| *id != t.id));
                    v.err(*pos, &f, format!("unknown task `{dep}`{hint}"));
                }
            }
        }
    }

    let order = topo_order(v, &raw_tasks, &deps);

    // Which task outputs each task may read: reachability over the DAG, only for the tasks whose
    // outputs some template names (only meaningful without cycles).
    let reach = order
        .as_ref()
        .map(|order| Reach::new(&raw_tasks, &index, &deps, order));

    let mut tasks: Vec<Option<Task>> = Vec::with_capacity(raw_tasks.len());
    for (i, t) in raw_tasks.iter().enumerate() {
        let ups = reach.as_ref().map(|r| (r, i));
        tasks.push(finish_task(v, t, &defaults, &params, &index, ups));
    }

    let order = order?;
    let new_pos: HashMap<usize, usize> = order
        .iter()
        .enumerate()
        .map(|(new, &old)| (old, new))
        .collect();
    let mut ordered = Vec::with_capacity(order.len());
    for &old in &order {
        let mut task = tasks.get_mut(old)?.take()?;
        task.upstream = deps[old]
            .iter()
            .filter_map(|d| new_pos.get(d).copied())
            .collect();
        ordered.push(task);
    }

    Some(Workflow {
        name: name?,
        description,
        schedule,
        timezone: timezone?,
        catchup: catchup?,
        catchup_window: catchup_window?,
        overlap: overlap?,
        max_active_runs: max_active_runs?,
        params,
        param_rules,
        env,
        target,
        tasks: ordered,
        deadline,
        max_start_delay,
        hooks,
        content_hash: blake3::hash(source.as_bytes()).to_hex().to_string(),
    })
}

fn read_tasks(v: &mut V<'_>, kpos: Pos, node: &Node) -> Option<Vec<RawTask>> {
    let entries = v.map_entries(node, "tasks", "task id")?;
    if entries.is_empty() {
        v.err(kpos, "tasks", "must contain at least one task");
        return None;
    }
    if entries.len() > MAX_TASKS {
        v.err(
            kpos,
            "tasks",
            format!(
                "too many tasks ({}; a workflow has at most {MAX_TASKS}): split it into several workflows",
                entries.len()
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(entries.len());
    for (id, ipos, tnode) in entries {
        let f = format!("tasks.{id}");
        if !valid_ident(&id) || id.len() > MAX_NAME_LEN {
            v.err(ipos, &f, format!("invalid task id `{id}`: use letters, digits, `_` and `-` (at most {MAX_NAME_LEN})"));
        }
        if matches!(tnode.value, Value::Null) {
            v.err(
                ipos,
                &f,
                "a task needs `command` (an argv list) or `script`",
            );
            // Mark exec as written so the missing command is not reported twice.
            let partial = Partial {
                command_key: Some(ipos),
                ..Partial::default()
            };
            out.push(RawTask {
                id,
                pos: ipos,
                partial,
            });
            continue;
        }
        let partial = v.task_partial(tnode, &f, false);
        out.push(RawTask {
            id,
            pos: ipos,
            partial,
        });
    }
    Some(out)
}

fn finish_task(
    v: &mut V<'_>,
    t: &RawTask,
    defaults: &Partial,
    params: &BTreeMap<String, String>,
    index: &HashMap<&str, usize>,
    upstream: Option<(&Reach, usize)>,
) -> Option<Task> {
    let p = &t.partial;
    let tf = format!("tasks.{}", t.id);
    let exec = match (&p.command, &p.script) {
        _ if p.command_key.is_some() && p.script_key.is_some() => {
            let pos = p.script_key.unwrap_or(t.pos);
            v.err(
                pos,
                &tf,
                "set exactly one of `command` or `script`, not both",
            );
            None
        }
        (None, None) => {
            // A command or script that was written but invalid has been reported already.
            if p.command_key.is_none() && p.script_key.is_none() {
                v.err(
                    t.pos,
                    &tf,
                    "a task needs `command` (an argv list) or `script`",
                );
            }
            None
        }
        (Some(_), Some(_)) => None,
        (Some((_, argv)), None) => {
            if let Some((pos, _)) = &p.shell {
                v.err(
                    *pos,
                    &format!("{tf}.shell"),
                    "`shell` applies only to `script`, not to `command`",
                );
            }
            Some(Exec::Command(argv.iter().map(|(_, a)| a.clone()).collect()))
        }
        (None, Some((_, script))) => Some(Exec::Script {
            script: script.clone(),
            shell: p
                .shell
                .as_ref()
                .or(defaults.shell.as_ref())
                .map(|(_, s)| s.clone()),
        }),
    };

    // Templates.
    let mut templates: Vec<(Pos, String, &str, bool)> = Vec::new();
    if let Some((_, argv)) = &p.command {
        for (i, (pos, a)) in argv.iter().enumerate() {
            templates.push((*pos, format!("{tf}.command[{i}]"), a.as_str(), false));
        }
    }
    if let Some((pos, s)) = &p.script {
        templates.push((*pos, format!("{tf}.script"), s.as_str(), true));
        let shell = p.shell.as_ref().or(defaults.shell.as_ref());
        script_shell_check(v, *pos, &format!("{tf}.script"), s, shell);
    }
    for (pos, field, text, is_script) in templates {
        let found = if is_script {
            template::script_contexts(text).map(|c| c.into_iter().map(|(p, _, _)| p).collect())
        } else {
            template::placeholders(text)
        };
        match found {
            Err(e) => v.err(pos, &field, format!("bad template: {e}")),
            Ok(phs) => {
                for ph in phs {
                    match &ph {
                        Placeholder::Run(_) => {}
                        Placeholder::Param(name) => {
                            if !params.contains_key(name) {
                                let hint = suggestion(name, params.keys().map(String::as_str));
                                v.err(pos, &field, format!("`{{{{ {ph} }}}}`: unknown parameter `{name}` (declare it under `params`){hint}"));
                            }
                        }
                        Placeholder::TaskOutput { task, .. } => match index.get(task.as_str()) {
                            None => {
                                let hint = suggestion(task, index.keys().copied());
                                v.err(
                                    pos,
                                    &field,
                                    format!("`{{{{ {ph} }}}}`: unknown task `{task}`{hint}"),
                                );
                            }
                            Some(&ti) => {
                                if let Some((reach, i)) = upstream
                                    && !reach.is_upstream(ti, i)
                                {
                                    v.err(
                                        pos,
                                        &field,
                                        format!("`{{{{ {ph} }}}}`: task `{task}` is not upstream of `{}`; add it to `depends_on`", t.id),
                                    );
                                }
                            }
                        },
                    }
                }
            }
        }
    }
    let retries = p.retries.or(defaults.retries).unwrap_or(0);
    let delay = p
        .retry_delay
        .or(defaults.retry_delay)
        .unwrap_or(Duration::from_secs(10));
    let max_delay = p.max_retry_delay.or(defaults.max_retry_delay);
    if let Some((pos, max)) = max_delay
        && max < delay
    {
        v.err(
            pos,
            &format!("{tf}.max_retry_delay"),
            format!(
                "must not be less than retry_delay ({})",
                crate::duration::format_duration(delay)
            ),
        );
    }
    let mut env = defaults.env.clone();
    env.extend(p.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut resources = defaults.resources.clone();
    resources.extend(p.resources.iter().map(|(k, v)| (k.clone(), *v)));
    let mut secret_env = defaults.secret_env.clone();
    secret_env.extend(p.secret_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    run_as::env_clash(v, t.pos, &tf, &env, &secret_env);
    Some(Task {
        id: t.id.clone(),
        exec: exec?,
        depends_on: p
            .depends_on
            .as_ref()
            .map(|(_, l)| l.iter().map(|(_, d)| d.clone()).collect())
            .unwrap_or_default(),
        upstream: Vec::new(),
        trigger_rule: p.trigger_rule.or(defaults.trigger_rule).unwrap_or_default(),
        timeout: p.timeout.or(defaults.timeout),
        retry: RetryPolicy {
            retries,
            delay,
            backoff: p
                .retry_backoff
                .or(defaults.retry_backoff)
                .unwrap_or_default(),
            max_delay: max_delay.map(|(_, d)| d),
            jitter: p.retry_jitter.or(defaults.retry_jitter).unwrap_or(0.0),
        },
        priority: p.priority.or(defaults.priority).unwrap_or(0),
        env,
        working_dir: p
            .working_dir
            .clone()
            .or_else(|| defaults.working_dir.clone()),
        idempotent: p.idempotent.or(defaults.idempotent).unwrap_or(false),
        resources,
        limits: Limits {
            memory: p.memory.or(defaults.memory),
            cpu: p.cpu.or(defaults.cpu),
        },
        deadline: p.deadline.or(defaults.deadline),
        max_start_delay: p.max_start_delay.or(defaults.max_start_delay),
        hooks: merge_hooks(&p.hooks, &defaults.hooks),
        secret_env,
        user: p.user.clone().or_else(|| defaults.user.clone()),
        group: p.group.clone().or_else(|| defaults.group.clone()),
    })
}

/// A task's hooks: its own, else those of `defaults`, event by event.
fn merge_hooks(own: &Hooks, defaults: &Hooks) -> Hooks {
    Hooks {
        on_failure: own
            .on_failure
            .clone()
            .or_else(|| defaults.on_failure.clone()),
        on_retry: own.on_retry.clone().or_else(|| defaults.on_retry.clone()),
        on_success: own
            .on_success
            .clone()
            .or_else(|| defaults.on_success.clone()),
        on_deadline_miss: own
            .on_deadline_miss
            .clone()
            .or_else(|| defaults.on_deadline_miss.clone()),
    }
}
