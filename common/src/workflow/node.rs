//! A format-neutral document tree with source positions, built from YAML (serde-saphyr) or TOML
//! (`toml::de::DeTable`). The validator walks this tree so it can report every problem at once,
//! each at its line and column.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; duplicates kept (the validator reports them).
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Pos,
    /// The scalar exactly as written, when known (to keep `1.10` as `1.10` when a string is
    /// expected).
    pub raw: Option<String>,
    /// YAML only, while parsing: the scalar's byte range `(offset, len)`.
    bytes: Option<(usize, usize)>,
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The scalar as a string (strings, numbers, booleans), else `None`.
    pub fn scalar_string(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(self.raw.clone().unwrap_or_else(|| b.to_string())),
            Value::Int(i) => Some(self.raw.clone().unwrap_or_else(|| i.to_string())),
            Value::Float(f) => Some(self.raw.clone().unwrap_or_else(|| f.to_string())),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

/// A syntax error of the underlying format.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

// ---------------------------------------------------------------- YAML

/// The value part of a YAML node; children carry their own spans.
struct YValue(Value);

struct YNode(serde_saphyr::Spanned<YValue>);

impl YNode {
    fn into_node(self) -> Node {
        let loc = self.0.referenced;
        let pos = Pos {
            line: to_u32(loc.line()),
            column: to_u32(loc.column()),
        };
        let value = self.0.value.0;
        let span = loc.span();
        let bytes = match (&value, span.byte_offset(), span.byte_len()) {
            (Value::Bool(_) | Value::Int(_) | Value::Float(_), Some(off), Some(len)) => {
                usize::try_from(off).ok().zip(usize::try_from(len).ok())
            }
            _ => None,
        };
        Node {
            value,
            pos,
            raw: None,
            bytes,
        }
    }
}

impl<'de> Deserialize<'de> for YNode {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_saphyr::Spanned::<YValue>::deserialize(d).map(YNode)
    }
}

impl<'de> Deserialize<'de> for YValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(YVisitor)
    }
}

struct YVisitor;

impl<'de> Visitor<'de> for YVisitor {
    type Value = YValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<YValue, E> {
        Ok(YValue(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<YValue, E> {
        Ok(YValue(Value::Int(i128::from(v))))
    }
    fn visit_u64<E>(self, v: u64) -> Result<YValue, E> {
        Ok(YValue(Value::Int(i128::from(v))))
    }
    fn visit_i128<E>(self, v: i128) -> Result<YValue, E> {
        Ok(YValue(Value::Int(v)))
    }
    fn visit_u128<E>(self, v: u128) -> Result<YValue, E> {
        Ok(YValue(Value::Int(i128::try_from(v).unwrap_or(i128::MAX))))
    }
    fn visit_f64<E>(self, v: f64) -> Result<YValue, E> {
        Ok(YValue(Value::Float(v)))
    }
    fn visit_char<E>(self, v: char) -> Result<YValue, E> {
        Ok(YValue(Value::Str(v.to_string())))
    }
    fn visit_str<E>(self, v: &str) -> Result<YValue, E> {
        Ok(YValue(Value::Str(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<YValue, E> {
        Ok(YValue(Value::Str(v)))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<YValue, E> {
        Ok(YValue(Value::Str(String::from_utf8_lossy(v).into_owned())))
    }
    fn visit_none<E>(self) -> Result<YValue, E> {
        Ok(YValue(Value::Null))
    }
    fn visit_unit<E>(self) -> Result<YValue, E> {
        Ok(YValue(Value::Null))
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<YValue, D::Error> {
        YValue::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<YValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<YNode>()? {
            items.push(item.into_node());
        }
        Ok(YValue(Value::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<YValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<YNode>()? {
            let v = map.next_value::<YNode>()?;
            entries.push((k.into_node(), v.into_node()));
        }
        Ok(YValue(Value::Map(entries)))
    }
}

/// Fill `raw` from the recorded byte ranges of scalars.
fn fill_raw(node: &mut Node, source: &str) {
    if let Some((off, len)) = node.bytes.take() {
        node.raw = off
            .checked_add(len)
            .and_then(|end| source.get(off..end))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
    }
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| fill_raw(n, source)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            fill_raw(k, source);
            fill_raw(v, source);
        }),
        _ => {}
    }
}

/// Deepest YAML nesting accepted (the budget counts block and flow collections).
const MAX_YAML_DEPTH: usize = 24;

/// Parse YAML into a tree. Duplicate keys are passed through (and reported by the validator).
pub(crate) fn parse_yaml(source: &str) -> Result<Node, SyntaxError> {
    let opts = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        with_snippet: false,
        // Deserializing spanned nodes takes a lot of stack per level in debug builds (tens of
        // KiB); a workflow file needs a handful of levels. Deeper input is an error, not a
        // stack overflow.
        budget: serde_saphyr::budget! { max_depth: MAX_YAML_DEPTH },
    };
    match serde_saphyr::from_str_with_options::<Option<YNode>>(source, opts) {
        Ok(Some(node)) => {
            let mut node = node.into_node();
            fill_raw(&mut node, source);
            Ok(node)
        }
        Ok(None) => Ok(Node {
            value: Value::Null,
            pos: Pos::START,
            raw: None,
            bytes: None,
        }),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: to_u32(l.line()),
                    column: to_u32(l.column()),
                })
                .unwrap_or(Pos::START);
            Err(SyntaxError {
                pos,
                message: yaml_message(&e),
            })
        }
    }
}

fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    if text.contains("budget breached: Depth") {
        return format!("invalid YAML: nested deeper than {MAX_YAML_DEPTH} levels");
    }
    // Strip a trailing " at line X, column Y" (the position is reported separately).
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let first = text.lines().next().unwrap_or("").trim();
    if first.starts_with("multiple YAML documents") {
        return "invalid YAML: a workflow file holds exactly one YAML document (found a second `---`)".to_string();
    }
    if first.is_empty() {
        "invalid YAML".to_string()
    } else {
        format!("invalid YAML: {first}")
    }
}

// ---------------------------------------------------------------- TOML

/// Byte offset -> position, in characters.
pub(crate) fn offset_to_pos(source: &str, offset: usize) -> Pos {
    let mut line = 1u32;
    let mut column = 1u32;
    for (i, ch) in source.char_indices() {
        if i >= offset {
            break;
        }
        if ch == '\n' {
            line = line.saturating_add(1);
            column = 1;
        } else {
            column = column.saturating_add(1);
        }
    }
    Pos { line, column }
}

/// Parse TOML into a tree (tables in file order).
pub(crate) fn parse_toml(source: &str) -> Result<Node, Vec<SyntaxError>> {
    let (doc, errors) = toml::de::DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| SyntaxError {
                pos: e
                    .span()
                    .map(|r| offset_to_pos(source, r.start))
                    .unwrap_or(Pos::START),
                message: format!(
                    "invalid TOML: {}",
                    e.message().lines().next().unwrap_or("").trim()
                ),
            })
            .collect());
    }
    let start = doc.span().start;
    Ok(Node {
        value: toml_table(source, doc.get_ref()),
        pos: offset_to_pos(source, start),
        raw: None,
        bytes: None,
    })
}

fn toml_table(source: &str, table: &toml::de::DeTable<'_>) -> Value {
    let mut entries: Vec<(usize, Node, Node)> = table
        .iter()
        .map(|(k, v)| {
            let kpos = offset_to_pos(source, k.span().start);
            let key = Node {
                value: Value::Str(k.get_ref().to_string()),
                pos: kpos,
                raw: None,
                bytes: None,
            };
            (k.span().start, key, toml_node(source, v))
        })
        .collect();
    entries.sort_by_key(|(start, _, _)| *start);
    Value::Map(entries.into_iter().map(|(_, k, v)| (k, v)).collect())
}

fn toml_node(source: &str, v: &toml::Spanned<toml::de::DeValue<'_>>) -> Node {
    use toml::de::DeValue;
    let span = v.span();
    let pos = offset_to_pos(source, span.start);
    let raw = source.get(span.clone()).map(|s| s.trim().to_string());
    let (value, raw) = match v.get_ref() {
        DeValue::String(s) => (Value::Str(s.to_string()), None),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            match i128::from_str_radix(&digits, i.radix()) {
                Ok(n) => (Value::Int(n), raw),
                Err(_) => (Value::Str(i.as_str().to_string()), None),
            }
        }
        DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
            Ok(x) => (Value::Float(x), raw),
            Err(_) => (Value::Str(f.as_str().to_string()), None),
        },
        DeValue::Boolean(b) => (Value::Bool(*b), raw),
        DeValue::Datetime(d) => (Value::Str(d.to_string()), None),
        DeValue::Array(items) => (
            Value::Seq(items.iter().map(|i| toml_node(source, i)).collect()),
            None,
        ),
        DeValue::Table(t) => (toml_table(source, t), None),
    };
    Node {
        value,
        pos,
        raw,
        bytes: None,
    }
}
