//! `deadline`, `max_start_delay` and `hooks` in workflow files: the model they produce, and the
//! diagnostics (file:line:column and field) of bad ones.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use outpost_common::model::{DEFAULT_HOOK_TIMEOUT, Exec, HookEvent};
use outpost_common::workflow::{Format, ValidateOptions, parse};

fn errors(src: &str) -> Vec<String> {
    match parse("wf.yaml", src, Format::Yaml, &ValidateOptions::default()) {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

const GOOD: &str = r#"
name: plc
deadline: 10m
max_start_delay: 30s
hooks:
  on_failure:
    command: [/usr/local/bin/page, --team, plant]
  on_deadline_miss:
    script: 'echo "$OUTPOST_RUN_ID" >> /var/log/late'
    shell: /bin/bash
    timeout: 5s
defaults:
  hooks:
    on_retry:
      command: [logger, retrying]
tasks:
  read:
    command: ["true"]
    deadline: 2m
    max_start_delay: 1s
    hooks:
      on_success:
        command: [logger, ok]
      on_retry:
        command: [logger, own]
  write:
    command: ["true"]
    depends_on: [read]
"#;

#[test]
fn deadlines_and_hooks_reach_the_model() {
    let wf = parse("wf.yaml", GOOD, Format::Yaml, &ValidateOptions::default()).unwrap();
    assert_eq!(wf.deadline, Some(Duration::from_secs(600)));
    assert_eq!(wf.max_start_delay, Some(Duration::from_secs(30)));
    let fail = wf.hooks.get(HookEvent::Failure).unwrap();
    assert_eq!(
        fail.exec,
        Exec::Command(vec![
            "/usr/local/bin/page".into(),
            "--team".into(),
            "plant".into()
        ])
    );
    assert_eq!(fail.timeout, DEFAULT_HOOK_TIMEOUT);
    let late = wf.hooks.get(HookEvent::DeadlineMiss).unwrap();
    assert_eq!(late.timeout, Duration::from_secs(5));
    assert!(matches!(&late.exec, Exec::Script { shell: Some(s), .. } if s == "/bin/bash"));
    assert!(wf.hooks.get(HookEvent::Success).is_none());

    let read = &wf.tasks[wf.task_index("read").unwrap()];
    assert_eq!(read.deadline, Some(Duration::from_secs(120)));
    assert_eq!(read.max_start_delay, Some(Duration::from_secs(1)));
    assert!(read.hooks.get(HookEvent::Success).is_some());
    // The task's own hook wins over the default's, event by event.
    assert_eq!(
        read.hooks.get(HookEvent::Retry).unwrap().exec,
        Exec::Command(vec!["logger".into(), "own".into()])
    );
    let write = &wf.tasks[wf.task_index("write").unwrap()];
    assert_eq!(write.deadline, None);
    assert_eq!(
        write.hooks.get(HookEvent::Retry).unwrap().exec,
        Exec::Command(vec!["logger".into(), "retrying".into()])
    );
    assert!(write.hooks.get(HookEvent::Failure).is_none());
}

#[test]
fn the_same_fields_in_toml() {
    let src = r#"
name = "plc"
deadline = "1h"
[hooks.on_failure]
command = ["page"]
[tasks.a]
command = ["true"]
max_start_delay = "5s"
[tasks.a.hooks.on_deadline_miss]
script = "echo late"
"#;
    let wf = parse("wf.toml", src, Format::Toml, &ValidateOptions::default()).unwrap();
    assert_eq!(wf.deadline, Some(Duration::from_secs(3600)));
    assert!(wf.hooks.on_failure.is_some());
    assert_eq!(wf.tasks[0].max_start_delay, Some(Duration::from_secs(5)));
    assert!(wf.tasks[0].hooks.on_deadline_miss.is_some());
}

#[test]
fn bad_hooks_and_deadlines_name_file_line_column_and_field() {
    let src = r#"name: plc
deadline: soon
hooks:
  on_failur:
    command: [x]
  on_success:
    command: "page --all"
  on_retry:
    script: "echo {{ params.x }}"
tasks:
  a:
    command: ["true"]
    max_start_delay: 0s
    hooks:
      on_deadline_miss:
        timeout: 5s
      on_failure:
        command: [x]
        script: "y"
      on_success:
        command: [x]
        timeout: 3d
"#;
    let errs = errors(src);
    let want = [
        "wf.yaml:2:11: deadline: ",
        "wf.yaml:4:3: hooks.on_failur: unknown key `on_failur`; did you mean `on_failure`?",
        "wf.yaml:7:14: hooks.on_success.command: expected a list of arguments",
        "wf.yaml:9:13: hooks.on_retry.script: placeholders are not expanded in hooks",
        "wf.yaml:13:22: tasks.a.max_start_delay: must be greater than zero",
        "wf.yaml:15:7: tasks.a.hooks.on_deadline_miss: a hook needs `command` (an argv list) or `script`",
        "wf.yaml:19:17: tasks.a.hooks.on_failure: set exactly one of `command` or `script`, not both",
        "wf.yaml:22:18: tasks.a.hooks.on_success.timeout: `3d` is too long (at most 1d)",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(w)),
            "missing `{w}` in:\n{}",
            errs.join("\n")
        );
    }
    assert_eq!(errs.len(), want.len(), "{}", errs.join("\n"));
}

/// The example in docs/workflows.md ("Deadlines and hooks") is a valid workflow.
#[test]
fn the_documented_example_validates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/workflows.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find("```yaml\nname: plc-pull\ndeadline").unwrap() + "```yaml\n".len();
    let len = doc[start..].find("```").unwrap();
    let wf = parse(
        "workflows.md",
        &doc[start..start + len],
        Format::Yaml,
        &ValidateOptions::default(),
    )
    .unwrap();
    assert!(wf.hooks.on_deadline_miss.is_some());
    assert!(wf.tasks[0].hooks.on_retry.is_some());
}
