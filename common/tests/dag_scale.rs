//! Large DAGs: the task cap and the upstream checks of output templates, at the sizes where a
//! quadratic check would show (the timings are in outpost-bench, not here).
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use outpost_common::workflow::{Format, MAX_TASKS, ValidateOptions, parse};

/// t00000 -> t00001 -> ... (`n` tasks); task i also runs `extra(i)` as a second argv element.
fn chain(n: usize, extra: impl Fn(usize) -> String) -> String {
    let mut s = String::from("name: chain\ntasks:\n");
    for i in 0..n {
        let _ = writeln!(s, "  t{i:05}:");
        if i > 0 {
            let _ = writeln!(s, "    depends_on: [t{:05}]", i - 1);
        }
        let _ = writeln!(s, "    command: [/bin/echo, \"{}\"]", extra(i));
    }
    s
}

fn errors(src: &str) -> Vec<String> {
    match parse("big.yaml", src, Format::Yaml, &ValidateOptions::default()) {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_chain_at_the_cap_is_valid_and_one_over_is_refused_at_the_tasks_key() {
    let at_cap = chain(MAX_TASKS, |_| String::new());
    let wf = parse(
        "big.yaml",
        &at_cap,
        Format::Yaml,
        &ValidateOptions::default(),
    )
    .unwrap();
    assert_eq!(wf.tasks.len(), MAX_TASKS);
    assert_eq!(wf.tasks[MAX_TASKS - 1].upstream, vec![MAX_TASKS - 2]);

    let over = chain(MAX_TASKS + 1, |_| String::new());
    assert_eq!(
        errors(&over),
        vec![format!(
            "big.yaml:2:1: tasks: too many tasks ({}; a workflow has at most {MAX_TASKS}): split it into several workflows",
            MAX_TASKS + 1
        )]
    );
}

#[test]
fn every_task_of_a_long_chain_may_read_any_task_before_it() {
    // 300 tasks, each reading its predecessor and the task 150 before it: 300 referenced tasks,
    // several words of bits per task.
    let src = chain(300, |i| {
        let mut s = String::new();
        if i > 0 {
            let _ = write!(s, "{{{{ tasks.t{:05}.outputs.x }}}}", i - 1);
        }
        if i >= 150 {
            let _ = write!(s, "{{{{ tasks.t{:05}.outputs.y }}}}", i - 150);
        }
        s
    });
    assert_eq!(errors(&src), Vec::<String>::new());
}

#[test]
fn reading_a_task_that_is_not_upstream_is_refused_whatever_its_bit() {
    // Task 200 reads task 250 (downstream) and task 70 reads itself: neither is upstream.
    let src = chain(300, |i| match i {
        200 => "{{ tasks.t00250.outputs.x }}".into(),
        70 => "{{ tasks.t00070.outputs.x }}".into(),
        i if i > 0 => format!("{{{{ tasks.t{:05}.outputs.x }}}}", i - 1),
        _ => String::new(),
    });
    let e = errors(&src);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].contains("tasks.t00070.command[1]: `{{ tasks.t00070.outputs.x }}`: task `t00070` is not upstream of `t00070`"),
        "{e:#?}"
    );
    assert!(
        e[1].contains("tasks.t00200.command[1]: `{{ tasks.t00250.outputs.x }}`: task `t00250` is not upstream of `t00200`"),
        "{e:#?}"
    );
}

#[test]
fn siblings_of_a_fan_out_cannot_read_each_other() {
    // root -> a0..a99 -> sink; a50 reads a49 (a sibling), sink reads every ai.
    let mut s = String::from("name: fan\ntasks:\n  root:\n    command: [/bin/true]\n");
    for i in 0..100 {
        let arg = if i == 50 {
            "{{ tasks.a49.outputs.x }}"
        } else {
            "{{ tasks.root.outputs.x }}"
        };
        let _ = writeln!(
            s,
            "  a{i}:\n    depends_on: [root]\n    command: [/bin/echo, \"{arg}\"]"
        );
    }
    let reads: Vec<String> = (0..100)
        .map(|i| format!("{{{{ tasks.a{i}.outputs.x }}}}"))
        .collect();
    let deps: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
    let _ = writeln!(
        s,
        "  sink:\n    depends_on: [{}]\n    script: \"echo {}\"",
        deps.join(", "),
        reads.join(" ")
    );
    let e = errors(&s);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("task `a49` is not upstream of `a50`"),
        "{e:#?}"
    );
}
