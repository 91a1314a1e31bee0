//! The workflow field table, the validator and the JSON Schema agree: every field the table lists
//! is accepted by the validator and the schema with a value of its type, and refused by both with
//! a value of another type; a key the table does not list is refused by both; the examples and
//! the workflow files of docs/workflows.md that the validator accepts, the schema accepts; and
//! docs/workflow.schema.json is the generated schema (`UPDATE_SCHEMA=1` rewrites it).
//!
//! The schema is checked by a small draft-07 evaluator below that knows exactly the keywords the
//! generator writes and fails on any other, so a keyword it does not check cannot slip in.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use outpost_common::workflow::schema::{self, Field, Ty};
use outpost_common::workflow::{Format, ValidateOptions, parse};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ----- a draft-07 evaluator of the keywords the generator writes ------------------------------

struct Eval<'a> {
    root: &'a Value,
}

impl Eval<'_> {
    fn ok(&self, s: &Value, v: &Value) -> bool {
        let Value::Object(m) = s else {
            return s.as_bool().expect("schema is an object or a boolean");
        };
        for (k, kv) in m {
            let pass = match k.as_str() {
                "$schema" | "$id" | "title" | "description" | "definitions" => true,
                "$ref" => {
                    let name = kv
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/definitions/"))
                        .expect("local definitions ref");
                    self.ok(&self.root["definitions"][name], v)
                }
                "type" => match kv {
                    Value::String(t) => is_type(t, v),
                    Value::Array(ts) => ts.iter().any(|t| is_type(t.as_str().unwrap(), v)),
                    _ => panic!("type {kv}"),
                },
                "enum" => kv.as_array().unwrap().contains(v),
                "properties" => match v {
                    Value::Object(o) => o
                        .iter()
                        .all(|(pk, pv)| kv.get(pk).is_none_or(|ps| self.ok(ps, pv))),
                    _ => true,
                },
                "additionalProperties" => match v {
                    Value::Object(o) => {
                        let props = m.get("properties");
                        o.iter().all(|(pk, pv)| {
                            props.and_then(|p| p.get(pk)).is_some() || self.ok(kv, pv)
                        })
                    }
                    _ => true,
                },
                "propertyNames" => match v {
                    Value::Object(o) => o.keys().all(|pk| self.ok(kv, &json!(pk))),
                    _ => true,
                },
                "required" => match v {
                    Value::Object(o) => kv
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| o.contains_key(r.as_str().unwrap())),
                    _ => true,
                },
                "minProperties" => v
                    .as_object()
                    .is_none_or(|o| o.len() as u64 >= kv.as_u64().unwrap()),
                "items" => v
                    .as_array()
                    .is_none_or(|a| a.iter().all(|i| self.ok(kv, i))),
                "minItems" => v
                    .as_array()
                    .is_none_or(|a| a.len() as u64 >= kv.as_u64().unwrap()),
                "uniqueItems" => v
                    .as_array()
                    .is_none_or(|a| a.iter().enumerate().all(|(i, x)| !a[..i].contains(x))),
                "minimum" => v.as_f64().is_none_or(|x| x >= kv.as_f64().unwrap()),
                "maximum" => v.as_f64().is_none_or(|x| x <= kv.as_f64().unwrap()),
                "exclusiveMinimum" => v.as_f64().is_none_or(|x| x > kv.as_f64().unwrap()),
                "maxLength" => v
                    .as_str()
                    .is_none_or(|s| s.chars().count() as u64 <= kv.as_u64().unwrap()),
                "pattern" => v.as_str().is_none_or(|s| pattern(kv.as_str().unwrap(), s)),
                "anyOf" => kv.as_array().unwrap().iter().any(|x| self.ok(x, v)),
                "allOf" => kv.as_array().unwrap().iter().all(|x| self.ok(x, v)),
                "oneOf" => {
                    kv.as_array()
                        .unwrap()
                        .iter()
                        .filter(|x| self.ok(x, v))
                        .count()
                        == 1
                }
                other => panic!("the generator wrote a keyword this test does not check: {other}"),
            };
            if !pass {
                return false;
            }
        }
        true
    }
}

fn is_type(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "null" => v.is_null(),
        _ => panic!("type {t}"),
    }
}

/// The few patterns the generator writes (ECMA-262 regexes), checked here by hand.
fn pattern(p: &str, s: &str) -> bool {
    match p {
        "\\S" => s.chars().any(|c| !c.is_whitespace()),
        "^\\s*[0-9]" => s.trim_start().starts_with(|c: char| c.is_ascii_digit()),
        "^[a-z0-9][a-z0-9._-]*$" => {
            s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && s.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
        }
        "^[A-Za-z0-9_-]+$" => {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        }
        "^[A-Za-z_][A-Za-z0-9_]*$" => {
            s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        "^([a-z_][a-z0-9_-]{0,30}[a-z0-9_$-]?|[0-9]+)$" => {
            let body = s.strip_suffix('$').unwrap_or(s);
            (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
                || (s.len() <= 32
                    && body.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && body.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')
                    }))
        }
        _ => panic!("pattern {p:?} unknown to this test"),
    }
}

fn schema_accepts(v: &Value) -> bool {
    let s = schema::json_schema();
    Eval { root: &s }.ok(&s, v)
}

fn validator_accepts(v: &Value) -> Result<(), String> {
    let yaml = serde_json::to_string(v).unwrap(); // JSON is YAML
    parse("t.yaml", &yaml, Format::Yaml, &ValidateOptions::default())
        .map(|_| ())
        .map_err(|d| {
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
}

// ----- sample values of each type ---------------------------------------------------------------

/// A value of the type (accepted by the validator whatever the field).
fn good(ty: Ty) -> Value {
    match ty {
        Ty::Str | Ty::NonEmptyStr | Ty::Name => json!("x"),
        Ty::Scalar => json!(3),
        Ty::RunAs => json!("nobody"),
        Ty::Bool => json!(true),
        Ty::Int(lo, hi) => json!(lo.max(1).min(hi)),
        Ty::Duration => json!("5m"),
        Ty::Enum(values) => json!(values[values.len() - 1]),
        Ty::Argv => json!(["echo", 1, true]),
        Ty::Ids => json!([]),
        Ty::ScalarMap(_) => json!({ "K_1": "v", "N": 2 }),
        Ty::Units(_) => json!({}),
        Ty::Jitter => json!(0.5),
        Ty::Memory => json!("64Mi"),
        Ty::Cpu => json!("500m"),
        Ty::Object(fields) => {
            let mut m = serde_json::Map::new();
            for f in fields {
                m.insert(f.name.into(), good_field(f));
            }
            Value::Object(m)
        }
        Ty::Defaults => json!({ "retries": 2 }),
        Ty::Tasks => json!({ "t": { "command": ["true"] } }),
        Ty::Params => json!({ "a": "1", "b": { "type": "integer", "default": 2 } }),
        Ty::Hook => json!({ "command": ["true"], "timeout": "10s" }),
    }
}

/// A good value for a field, where a field's neighbours constrain it.
fn good_field(f: &Field) -> Value {
    match f.name {
        // Not both in one map.
        "script" => Value::Null,
        "default" => json!("x"),
        "values" => json!(["x"]),
        "type" => json!("integer"),
        "schedule" => json!("0 * * * *"),
        "timezone" => json!("Europe/Berlin"),
        "shell" => json!("sh"),
        _ => good(f.ty),
    }
}

/// A value of another type.
fn bad(ty: Ty) -> Value {
    match ty {
        Ty::Str
        | Ty::NonEmptyStr
        | Ty::Name
        | Ty::Enum(_)
        | Ty::Duration
        | Ty::Memory
        | Ty::Cpu => {
            json!({ "a": 1 })
        }
        Ty::Scalar | Ty::Bool | Ty::Int(..) | Ty::Jitter => json!(["x"]),
        Ty::RunAs => json!(true),
        _ => json!("text"),
    }
}

fn workflow_with(place: &str, key: &str, value: Value) -> Value {
    let mut w = json!({ "name": "w", "tasks": { "t": { "command": ["true"] } } });
    match place {
        "workflow" => w[key] = value,
        "task" => {
            if key == "shell" {
                w["tasks"]["t"] = json!({ "script": "echo hi" });
            }
            w["tasks"]["t"][key] = value;
        }
        "defaults" => w["defaults"] = json!({ key: value }),
        "limits" => w["tasks"]["t"]["limits"] = json!({ key: value }),
        "hooks" => w["hooks"] = json!({ key: value }),
        "hook" => {
            let mut h = json!({ "command": ["true"] });
            if key == "command" || key == "script" {
                h = json!({});
            }
            if key == "shell" {
                h = json!({ "script": "echo hi" });
            }
            h[key] = value;
            w["hooks"] = json!({ "on_failure": h });
        }
        "param" => {
            let mut p = json!({});
            if key == "values" {
                p["type"] = json!("enum");
            }
            p[key] = value;
            w["params"] = json!({ "p": p });
        }
        _ => unreachable!(),
    }
    w
}

fn places() -> Vec<(&'static str, Vec<Field>)> {
    vec![
        ("workflow", schema::WORKFLOW.to_vec()),
        ("task", schema::TASK.to_vec()),
        (
            "defaults",
            schema::TASK
                .iter()
                .copied()
                .filter(|f| f.in_defaults)
                .collect(),
        ),
        ("limits", schema::LIMITS.to_vec()),
        ("hooks", schema::HOOKS.to_vec()),
        ("hook", schema::HOOK.to_vec()),
        ("param", schema::PARAM.to_vec()),
    ]
}

/// Every field of the table, with a value of its type: the validator and the schema accept it;
/// with a value of another type: both refuse it.
#[test]
fn every_field_is_known_to_the_validator_and_the_schema() {
    for (place, fields) in places() {
        for f in &fields {
            if place == "task" && matches!(f.name, "command" | "script") {
                // The task's exec: its other form is replaced, not added.
                let mut w = workflow_with("task", "command", Value::Null);
                w["tasks"]["t"].as_object_mut().unwrap().remove("command");
                w["tasks"]["t"][f.name] = if f.name == "script" {
                    json!("echo hi")
                } else {
                    good(f.ty)
                };
                assert_eq!(validator_accepts(&w), Ok(()), "{place}.{}", f.name);
                assert!(schema_accepts(&w), "schema refuses {place}.{}: {w}", f.name);
                continue;
            }
            let value = if place == "hook" && f.name == "script" {
                json!("echo hi")
            } else {
                good_field(f)
            };
            let value = if value.is_null() { good(f.ty) } else { value };
            let w = workflow_with(place, f.name, value);
            assert_eq!(validator_accepts(&w), Ok(()), "{place}.{}: {w}", f.name);
            assert!(schema_accepts(&w), "schema refuses {place}.{}: {w}", f.name);

            let w = workflow_with(place, f.name, bad(f.ty));
            assert!(
                validator_accepts(&w).is_err(),
                "validator takes a bad {place}.{}: {w}",
                f.name
            );
            assert!(
                !schema_accepts(&w),
                "schema takes a bad {place}.{}: {w}",
                f.name
            );
        }
        // A key the table does not have: both refuse it.
        let w = workflow_with(place, "no_such_key", json!("x"));
        let err = validator_accepts(&w).expect_err(place);
        assert!(err.contains("unknown key `no_such_key`"), "{place}: {err}");
        assert!(
            !schema_accepts(&w),
            "schema takes an unknown key in {place}"
        );
    }
    // Required keys: both refuse a file without them.
    for key in ["name", "tasks"] {
        let mut w = workflow_with("workflow", "description", json!("x"));
        w.as_object_mut().unwrap().remove(key);
        assert!(validator_accepts(&w).is_err(), "{key}");
        assert!(!schema_accepts(&w), "{key}");
    }
    // `defaults` cannot set the task-only keys: both refuse.
    for key in schema::task_only_names() {
        let w = workflow_with("defaults", key, json!(["x"]));
        assert!(validator_accepts(&w).is_err(), "defaults.{key}");
        assert!(!schema_accepts(&w), "defaults.{key}");
    }
}

/// The workflow files of the repository (examples/, docs/workflows.md) that the validator
/// accepts, the schema accepts.
#[test]
fn the_examples_and_the_documented_workflows_pass_the_schema() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        let (format, value): (Format, Value) = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => (Format::Yaml, serde_saphyr::from_str(&text).unwrap()),
            Some("toml") => (
                Format::Toml,
                serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap()).unwrap(),
            ),
            _ => continue,
        };
        parse(&name, &text, format, &ValidateOptions::default()).unwrap();
        assert!(schema_accepts(&value), "schema refuses {name}");
        checked += 1;
    }
    assert!(checked >= 3, "examples checked: {checked}");

    let doc = std::fs::read_to_string(repo().join("docs/workflows.md")).unwrap();
    let mut in_yaml = false;
    let mut block = String::new();
    let mut docs_checked = 0;
    for line in doc.lines() {
        if !in_yaml && line.trim_start().starts_with("```yaml") {
            in_yaml = true;
            block.clear();
        } else if in_yaml && line.trim_start().starts_with("```") {
            in_yaml = false;
            if parse(
                "doc.yaml",
                &block,
                Format::Yaml,
                &ValidateOptions::default(),
            )
            .is_ok()
            {
                let v: Value = serde_saphyr::from_str(&block).unwrap();
                assert!(schema_accepts(&v), "schema refuses:\n{block}");
                docs_checked += 1;
            }
        } else if in_yaml {
            block.push_str(line);
            block.push('\n');
        }
    }
    assert!(
        docs_checked >= 2,
        "documented workflows checked: {docs_checked}"
    );
}

/// docs/workflow.schema.json is what the table makes (`UPDATE_SCHEMA=1 cargo test -p
/// outpost-common --test workflow_schema` rewrites it).
#[test]
fn the_committed_schema_is_the_generated_one() {
    let path = repo().join("docs/workflow.schema.json");
    let generated = schema::json_schema_text();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the generated schema: run UPDATE_SCHEMA=1 cargo test -p outpost-common --test workflow_schema",
        path.display()
    );
}
