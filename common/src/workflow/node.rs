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
///
/// Most workflow files take the fast path, a tree built straight from granit-parser's events
/// ([`plain_yaml`]); a file that uses anything whose meaning serde-saphyr decides (tags,
/// anchors and aliases, merge keys, a scalar that might be a number, boolean or null in another
/// spelling), or that does not parse, goes through serde-saphyr, which also gives the errors.
pub(crate) fn parse_yaml(source: &str) -> Result<Node, SyntaxError> {
    match plain_yaml(source) {
        Some(node) => Ok(node),
        None => parse_yaml_spanned(source),
    }
}

/// The same tree through serde-saphyr's spanned values: the reference for every document.
pub(crate) fn parse_yaml_spanned(source: &str) -> Result<Node, SyntaxError> {
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
        Ok(None) => Ok(leaf(Value::Null, Pos::START, None)),
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

// ---------------------------------------------------------------- YAML, fast path

/// Deepest nesting the fast path takes (well below [`MAX_YAML_DEPTH`], whose exact limit is
/// serde-saphyr's to enforce).
const PLAIN_MAX_DEPTH: usize = 16;

/// What a plain (unquoted, untagged) scalar is, when it is certain.
enum Plain {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str,
    /// Might be read otherwise by serde-saphyr (other spellings of numbers, booleans, nulls).
    Unsure,
}

fn classify(s: &str) -> Plain {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        "<<" => return Plain::Unsure,
        _ => {}
    }
    if ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
        .iter()
        .any(|w| s.eq_ignore_ascii_case(w))
    {
        return Plain::Unsure;
    }
    let Some(&first) = s.as_bytes().first() else {
        return Plain::Unsure;
    };
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return Plain::Str;
    }
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = |t: &str| t.len() == 1 || !t.starts_with('0');
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    if digits(unsigned) && no_leading_zero(unsigned) && unsigned.len() <= 18 && unsigned != "0" {
        return s.parse().map(Plain::Int).unwrap_or(Plain::Unsure);
    }
    if s == "0" {
        return Plain::Int(0);
    }
    if let Some((int, frac)) = unsigned.split_once('.')
        && digits(int)
        && digits(frac)
        && no_leading_zero(int)
        && int.len() + frac.len() <= 15
        && !s.starts_with("-0")
    {
        return s.parse().map(Plain::Float).unwrap_or(Plain::Unsure);
    }
    // No number has two dots (`10.20.3.11`), and every number but `.inf` and `.nan` has a digit
    // (`-c`, `-rf`).
    let lower = s.to_ascii_lowercase();
    if s.matches('.').count() > 1
        || (!s.bytes().any(|b| b.is_ascii_digit())
            && !lower.contains("inf")
            && !lower.contains("nan"))
    {
        return Plain::Str;
    }
    // Anything that could be a number in another syntax (signs, radixes, exponents,
    // underscores, `.inf`, `.nan`, sexagesimal) is left to serde-saphyr.
    if s.bytes()
        .all(|b| b.is_ascii_hexdigit() || b"xXoObB_+-.:iInNfFaA".contains(&b))
    {
        return Plain::Unsure;
    }
    Plain::Str
}

enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Node, Node)>, Option<Node>),
}

/// A node with no byte range to fill in later (an empty document, or one the fast path built).
fn leaf(value: Value, pos: Pos, raw: Option<String>) -> Node {
    Node {
        value,
        pos,
        raw,
        bytes: None,
    }
}

fn marker_pos(m: &serde_saphyr::granit_parser::Marker) -> Pos {
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX).max(1),
        column: u32::try_from(m.col().saturating_add(1)).unwrap_or(u32::MAX),
    }
}

/// The tree of `source` built from granit-parser's events, or `None` when serde-saphyr must
/// decide (see [`parse_yaml`]). Where it answers, it answers exactly as serde-saphyr would
/// (checked over the fuzz corpus and the test files by `fast_path_matches_serde_saphyr`).
pub(crate) fn plain_yaml(source: &str) -> Option<Node> {
    use serde_saphyr::granit_parser::{Event, ScalarStyle};
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0u32;
    for item in serde_saphyr::granit_parser::Parser::new_from_str(source) {
        let (event, span) = item.ok()?;
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(_, version) => {
                documents += 1;
                if documents > 1 || version.is_some() {
                    return None;
                }
                continue;
            }
            Event::Alias(_) => return None,
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                let pos = marker_pos(&span.start);
                if style != ScalarStyle::Plain {
                    leaf(Value::Str(text.into_owned()), pos, None)
                } else {
                    let raw = || {
                        let (a, b) = (span.start.byte_offset()?, span.end.byte_offset()?);
                        source
                            .get(a..b)
                            .map(|r| r.trim().to_string())
                            .filter(|r| !r.is_empty())
                    };
                    match classify(&text) {
                        Plain::Unsure => return None,
                        Plain::Null => leaf(Value::Null, pos, None),
                        Plain::Str => leaf(Value::Str(text.into_owned()), pos, None),
                        Plain::Bool(b) => leaf(Value::Bool(b), pos, raw()),
                        Plain::Int(i) => leaf(Value::Int(i), pos, raw()),
                        Plain::Float(f) => leaf(Value::Float(f), pos, raw()),
                    }
                }
            }
            Event::SequenceStart(_, anchor, ref tag) | Event::MappingStart(_, anchor, ref tag) => {
                if anchor != 0 || tag.is_some() || stack.len() >= PLAIN_MAX_DEPTH {
                    return None;
                }
                let pos = marker_pos(&span.start);
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq(pos, Vec::new())
                } else {
                    Frame::Map(pos, Vec::new(), None)
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop()? {
                Frame::Seq(pos, items) => leaf(Value::Seq(items), pos, None),
                Frame::Map(..) => return None,
            },
            Event::MappingEnd => match stack.pop()? {
                Frame::Map(pos, entries, None) => leaf(Value::Map(entries), pos, None),
                Frame::Map(..) | Frame::Seq(..) => return None,
            },
            #[allow(unreachable_patterns)]
            _ => continue,
        };
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return None;
                }
                root = Some(node);
            }
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
    if !stack.is_empty() {
        return None;
    }
    Some(root.unwrap_or_else(|| leaf(Value::Null, Pos::START, None)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `a` and `b` are the same tree: values, positions and raw text.
    fn same(a: &Node, b: &Node, at: &str) -> Result<(), String> {
        let here = || format!("{at} ({:?} vs {:?})", a.pos, b.pos);
        if a.pos != b.pos || a.raw != b.raw {
            return Err(format!("{}: raw {:?} vs {:?}", here(), a.raw, b.raw));
        }
        match (&a.value, &b.value) {
            (Value::Null, Value::Null) => Ok(()),
            (Value::Bool(x), Value::Bool(y)) if x == y => Ok(()),
            (Value::Int(x), Value::Int(y)) if x == y => Ok(()),
            (Value::Float(x), Value::Float(y)) if x.to_bits() == y.to_bits() => Ok(()),
            (Value::Str(x), Value::Str(y)) if x == y => Ok(()),
            (Value::Seq(x), Value::Seq(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .try_for_each(|(i, (p, q))| same(p, q, &format!("{at}[{i}]"))),
            (Value::Map(x), Value::Map(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .try_for_each(|(i, ((k1, v1), (k2, v2)))| {
                    same(k1, k2, &format!("{at}.key{i}"))?;
                    same(v1, v2, &format!("{at}.value{i}"))
                }),
            (x, y) => Err(format!("{}: {x:?} vs {y:?}", here())),
        }
    }

    /// YAML to compare the two paths on: the committed fuzz seeds, the local fuzz corpus when
    /// there is one (gitignored: `fuzz/run.sh` grows it), the example files, and every `yaml`
    /// block of the docs.
    fn yaml_inputs() -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut out = Vec::new();
        for dir in [
            "fuzz/seeds/parse_workflow",
            "fuzz/corpus/parse_workflow",
            "deploy/examples",
        ] {
            let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for e in rd.flatten() {
                if let Ok(text) = std::fs::read_to_string(e.path()) {
                    out.push((e.path().display().to_string(), text));
                }
            }
        }
        let docs = std::fs::read_dir(root.join("docs")).map(|rd| rd.flatten().collect::<Vec<_>>());
        for e in docs.unwrap_or_default() {
            let Ok(md) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let mut block: Option<String> = None;
            for (n, line) in md.lines().enumerate() {
                match &mut block {
                    None if line.trim_start().starts_with("```yaml") => block = Some(String::new()),
                    Some(b) if line.trim_start().starts_with("```") => {
                        out.push((format!("{}:{n}", e.path().display()), std::mem::take(b)));
                        block = None;
                    }
                    Some(b) => {
                        b.push_str(line);
                        b.push('\n');
                    }
                    None => {}
                }
            }
        }
        for (i, s) in [
            "name: a\ntasks:\n  x:\n    command: [/bin/true, \"q\", 'r', -rf, --v, 5m, 1h30m]\n",
            "a: 1\nb: -2\nc: 0\nd: 1.5\ne: -0.25\nf: true\ng: False\nh: ~\ni:\nj: null\n",
            "a: 0x1F\n",
            "a: 007\n",
            "a: +1\n",
            "a: 1e3\n",
            "a: .inf\n",
            "a: yes\n",
            "a: 1_000\n",
            "a: 12:30\n",
            "a: 123456789012345678901234567890\n",
            "a: 2024-01-01\n",
            "a: |\n  x\n  y\nb: >\n  folded\n  text\n",
            "- [a, b]\n- {c: d}\n",
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "---\na: 1\n---\nb: 2\n",
            "",
            "# only a comment\n",
            "a: [1, 2\n",
            "a:\n  b:\n    c:\n      d: [e, {f: g}]\n",
            "a: b\na: c\n",
        ]
        .iter()
        .enumerate()
        {
            out.push((format!("case {i}"), s.to_string()));
        }
        out
    }

    /// Wherever the fast path answers, it gives exactly serde-saphyr's tree; it answers for
    /// most real files and declines what it must.
    #[test]
    fn fast_path_matches_serde_saphyr() {
        let mut fast = 0;
        let mut declined = 0;
        for (name, text) in yaml_inputs() {
            match plain_yaml(&text) {
                Some(node) => {
                    fast += 1;
                    let reference = parse_yaml_spanned(&text).unwrap_or_else(|e| {
                        panic!(
                            "{name}: the fast path took a file serde-saphyr refuses: {}",
                            e.message
                        )
                    });
                    if let Err(e) = same(&node, &reference, "") {
                        panic!("{name}: {e}");
                    }
                }
                None => declined += 1,
            }
        }
        eprintln!("fast path: {fast} documents; declined: {declined}");
        assert!(
            fast >= 12,
            "the fast path took only {fast} documents ({declined} declined)"
        );
        assert!(declined >= 10, "declined only {declined}");
        // The committed examples of real workflows take the fast path.
        let seeds =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/parse_workflow");
        for f in ["hello.yaml", "plc-pull.yaml"] {
            let text = std::fs::read_to_string(seeds.join(f)).expect(f);
            assert!(
                plain_yaml(&text).is_some(),
                "{f} did not take the fast path"
            );
        }
        for s in [
            "a: 0x1F\n",
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: yes\n",
            "a: [1, 2\n",
        ] {
            assert!(plain_yaml(s).is_none(), "{s:?}");
        }
        assert!(plain_yaml("a: 1\nb: x\n").is_some());
        // Each tricky scalar on its own, as a value and in a flow list.
        let mut answered = Vec::new();
        for t in TRICKY {
            let text = format!("a: {t}\nb: [{t}]\n");
            if let Some(node) = plain_yaml(&text) {
                let reference = parse_yaml_spanned(&text).expect(&text);
                if let Err(e) = same(&node, &reference, "") {
                    panic!("{text}: {e}");
                }
                answered.push(*t);
            }
        }
        assert!(answered.len() >= 25, "{answered:?}");
    }

    const TRICKY: &[&str] = &[
        "1",
        "-1",
        "0",
        "-0",
        "00",
        "007",
        "1.5",
        "-0.5",
        "0.0",
        "1.",
        ".5",
        "1e3",
        "1E-2",
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "~",
        "null",
        "Null",
        "NULL",
        "x",
        "-c",
        "-rf",
        "10.1.1.1",
        "5m",
        "2d",
        "1h30m",
        "0x1F",
        "0o17",
        "0b101",
        ".inf",
        "-.inf",
        ".NaN",
        "1_000",
        "+1",
        "+.5",
        "12:30",
        "true",
        "TRUE",
        "tRue",
        "False",
        "99999999999999999999",
        "123456789012345678",
        "1234567890123456789",
        "3.14159265358979",
        "2024-01-01",
        "a b",
        "/bin/true",
        "'q'",
        "\"1\"",
        "\"\"",
        "-",
        "--",
        ".",
        "e",
        "inf",
        "nan",
        "-e",
        "-1.5e3",
        "1.5.6",
    ];

    fn doc() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scalar = proptest::sample::select(TRICKY).prop_map(str::to_string);
        let leaf = prop_oneof![
            scalar.clone(),
            proptest::collection::vec(scalar.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(", "))),
        ];
        proptest::collection::vec((0usize..6, leaf), 1..8).prop_map(|entries| {
            let mut out = String::new();
            for (i, (indent, v)) in entries.into_iter().enumerate() {
                let pad = if indent % 3 == 0 { "" } else { "  " };
                if pad.is_empty() {
                    out.push_str(&format!("k{i}: {v}\n"));
                } else {
                    out.push_str(&format!("k{i}:\n{pad}- {v}\n{pad}- x\n"));
                }
            }
            out
        })
    }

    proptest::proptest! {
        /// Generated documents full of scalars that look like numbers, booleans and nulls in
        /// every spelling: wherever the fast path answers, it is serde-saphyr's tree.
        #[test]
        fn fast_path_matches_serde_saphyr_on_tricky_scalars(text in doc()) {
            if let Some(node) = plain_yaml(&text) {
                let reference = parse_yaml_spanned(&text);
                proptest::prop_assert!(reference.is_ok(), "{text}");
                if let Ok(reference) = reference {
                    let r = same(&node, &reference, "");
                    proptest::prop_assert!(r.is_ok(), "{text}\n{r:?}");
                }
            }
        }
    }
}
