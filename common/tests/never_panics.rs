//! Property tests: `parse` never panics, and an error always carries at least one diagnostic with
//! a 1-based position, for arbitrary strings and for structurally mutated valid files.
#![allow(clippy::unwrap_used)]

use outpost_common::workflow::{Diagnostic, Format, ValidateOptions, parse};
use proptest::prelude::*;

const VALID_YAML: &str = r#"name: demo
description: "a demo"
schedule: "*/10 * * * * *"
timezone: Europe/Berlin
catchup: all
catchup_window: 2h
overlap: queue
max_active_runs: 2
params:
  site: plant-7
  n: 3
env:
  A: x
defaults:
  retries: 2
  retry_delay: 5s
  retry_backoff: exponential
  limits: {memory: 64Mi, cpu: 500m}
tasks:
  a:
    command: [echo, "{{ params.site }}"]
  b:
    depends_on: [a]
    script: |
      echo {{ tasks.a.outputs.x }}
    timeout: 30s
  c:
    depends_on: [a]
    command: [echo, "{{ run.id }}"]
    resources: {bus: 1}
  d:
    depends_on: [b, c]
    trigger_rule: all_done
    command: [echo, done]
"#;

const VALID_TOML: &str = r#"name = "demo"
schedule = "0 3 * * *"
timezone = "America/New_York"

[params]
site = "plant-7"

[defaults]
retries = 1
retry_jitter = true

[tasks.a]
command = ["echo", "{{ params.site }}"]

[tasks.b]
depends_on = ["a"]
script = "echo {{ tasks.a.outputs.x }}"
timeout = "1m"
limits = { memory = "1Gi", cpu = 1 }
"#;

/// Values that stress the parser and the validator when spliced in.
const TOKENS: &[&str] = &[
    "-1",
    "0",
    "[]",
    "{}",
    "~",
    "null",
    "\"{{\"",
    "\"{{ x }}\"",
    "0x",
    "99999999999999999999999999999",
    "*a",
    "&a x",
    "!!binary aGk=",
    "1e400",
    ".nan",
    "- ",
    ": ",
    "\t",
    "'",
    "\"",
    "[",
    "]",
    "{",
    "}",
    "#",
    "|",
    ">",
    "---",
    "...",
    "<<: *a",
    "? ",
    "%YAML 1.2",
    "tasks:",
    "name:",
    "depends_on: [a]",
    "command: []",
    "script: x",
    "é",
    "🦀",
    "\u{0}",
    "=",
    "[[tasks]]",
    "[tasks.x]",
    "\"\"\"",
    "a.b = 1",
    "inf",
    "1979-05-27T07:32:00Z",
    "-",
    "\r",
];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Indent(usize, usize),
    Dedent(usize),
    Insert(usize, usize, usize),
    ReplaceValue(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), 1usize..5).prop_map(|(a, n)| Mutation::Indent(a, n)),
        any::<usize>().prop_map(Mutation::Dedent),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(l, c, t)| Mutation::Insert(l, c, t)),
        (any::<usize>(), any::<usize>()).prop_map(|(l, t)| Mutation::ReplaceValue(l, t)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(src: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
    for m in muts {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match *m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
            Mutation::Indent(i, k) => lines[i % n].insert_str(0, &" ".repeat(k)),
            Mutation::Dedent(i) => {
                let l = &mut lines[i % n];
                if l.starts_with(' ') {
                    l.remove(0);
                }
            }
            Mutation::Insert(i, c, t) => {
                let l = &mut lines[i % n];
                let chars: Vec<char> = l.chars().collect();
                let at = c % (chars.len() + 1);
                let mut s: String = chars[..at].iter().collect();
                s.push_str(TOKENS[t % TOKENS.len()]);
                s.extend(chars[at..].iter());
                *l = s;
            }
            Mutation::ReplaceValue(i, t) => {
                let l = &mut lines[i % n];
                if let Some(p) = l.find([':', '=']) {
                    l.truncate(p + 1);
                    l.push(' ');
                    l.push_str(TOKENS[t % TOKENS.len()]);
                }
            }
            Mutation::Truncate(c) => {
                let joined = lines.join("\n");
                let chars: Vec<char> = joined.chars().collect();
                let keep: String = chars[..c % (chars.len() + 1)].iter().collect();
                lines = keep.lines().map(str::to_string).collect();
            }
        }
    }
    lines.join("\n")
}

fn check(src: &str, format: Format) -> Result<(), TestCaseError> {
    let opts = ValidateOptions {
        known_resources: Some(["bus".to_string()].into()),
    };
    if let Err(diags) = parse("p", src, format, &opts) {
        prop_assert!(!diags.is_empty(), "Err without diagnostics for {src:?}");
        for d in &diags {
            prop_assert!(d.line >= 1 && d.column >= 1, "bad position {d:?}");
            prop_assert!(!d.message.is_empty());
            let shown = d.to_string();
            let prefix = format!("p:{}:{}: ", d.line, d.column);
            prop_assert!(shown.starts_with(&prefix), "{shown}");
            let _: &dyn std::error::Error = d as &Diagnostic;
        }
    }
    Ok(())
}

#[test]
fn the_unmutated_files_are_valid() {
    parse(
        "v.yaml",
        VALID_YAML,
        Format::Yaml,
        &ValidateOptions::default(),
    )
    .unwrap();
    parse(
        "v.toml",
        VALID_TOML,
        Format::Toml,
        &ValidateOptions::default(),
    )
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings(s in any::<String>()) {
        check(&s, Format::Yaml)?;
        check(&s, Format::Toml)?;
    }

    #[test]
    fn yaml_like_strings(s in "[a-z:{}\\[\\]\\-#&*!|>'\" \n\t,.0-9=]{0,200}") {
        check(&s, Format::Yaml)?;
        check(&s, Format::Toml)?;
    }

    #[test]
    fn mutated_yaml(muts in proptest::collection::vec(mutation(), 1..6)) {
        check(&apply(VALID_YAML, &muts), Format::Yaml)?;
    }

    #[test]
    fn mutated_toml(muts in proptest::collection::vec(mutation(), 1..6)) {
        check(&apply(VALID_TOML, &muts), Format::Toml)?;
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for depth in [1_000, 100_000] {
        let yaml = format!(
            "name: a\ntasks: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let toml = format!(
            "name = \"a\"\nx = {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let yaml_maps = format!(
            "name: a\ntasks: {}1{}\n",
            "{a: ".repeat(depth),
            "}".repeat(depth)
        );
        let mut yaml_block = String::from("name: a\ntasks:\n");
        for i in 0..depth.min(2_000) {
            yaml_block.push_str(&" ".repeat(i + 1));
            yaml_block.push_str("a:\n");
        }
        for (src, f) in [
            (yaml, Format::Yaml),
            (toml, Format::Toml),
            (yaml_maps, Format::Yaml),
            (yaml_block, Format::Yaml),
        ] {
            let err = parse("deep", &src, f, &ValidateOptions::default()).unwrap_err();
            assert!(!err.is_empty());
        }
    }
}
