//! Diagnostics for bad workflow files: each case is a small file; the snapshot is the exact list of
//! `file:line:column: field: message` lines.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use outpost_common::workflow::{Format, ValidateOptions, parse};

fn check_with(src: &str, format: Format, opts: &ValidateOptions) -> String {
    let file = match format {
        Format::Yaml => "wf.yaml",
        Format::Toml => "wf.toml",
    };
    match parse(file, src, format, opts) {
        Ok(_) => "OK".to_string(),
        Err(diags) => {
            assert!(
                !diags.is_empty(),
                "an error carries at least one diagnostic"
            );
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

fn yaml(src: &str) -> String {
    check_with(src, Format::Yaml, &ValidateOptions::default())
}

fn toml(src: &str) -> String {
    check_with(src, Format::Toml, &ValidateOptions::default())
}

macro_rules! case {
    ($name:ident, $f:ident, $src:expr) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(stringify!($name), $f($src));
        }
    };
}

case!(yaml_syntax_error, yaml, "name: a\ntasks:\n  x: [echo\n");
case!(
    yaml_bad_indentation,
    yaml,
    "name: a\ntasks:\n  x:\n    command: [echo]\n   retries: 1\n"
);
case!(yaml_two_documents, yaml, "name: a\n---\nname: b\n");
case!(yaml_unknown_anchor, yaml, "name: a\ntasks:\n  x: *nope\n");
case!(empty_file, yaml, "");
case!(comment_only_file, yaml, "# nothing here\n");
case!(not_a_map, yaml, "- name: a\n");
case!(missing_name_and_tasks, yaml, "description: nothing\n");
case!(empty_tasks_map, yaml, "name: a\ntasks: {}\n");
case!(null_tasks, yaml, "name: a\ntasks:\n");
case!(
    tasks_is_a_list,
    yaml,
    "name: a\ntasks:\n  - command: [echo]\n"
);
case!(
    invalid_names,
    yaml,
    "name: My Workflow\ntasks:\n  \"bad id\":\n    command: [echo]\n  ok:\n    command: [echo]\n"
);
case!(
    unknown_keys_with_suggestions,
    yaml,
    "name: a\nschedul: \"@daily\"\ntasks:\n  x:\n    comand: [echo]\n    retires: 3\n    limits:\n      memroy: 1Gi\n    zzz: 1\n"
);
case!(
    duplicate_task_ids_and_keys,
    yaml,
    "name: a\nname: b\ntasks:\n  x:\n    command: [echo]\n  x:\n    script: hi\n"
);
case!(
    wrong_types,
    yaml,
    "name: 42\ndescription: [a]\nmax_active_runs: many\nparams: [a, b]\ntasks:\n  x:\n    command: echo hi\n    retries: \"3\"\n    idempotent: yes please\n    env: {A: [1]}\n    depends_on: x\n"
);
case!(
    unknown_and_self_dependencies,
    yaml,
    "name: a\ntasks:\n  extract:\n    command: [echo]\n  load:\n    command: [echo]\n    depends_on: [extract, extrct, load, nothing]\n"
);
case!(
    cycle_is_named_in_order,
    yaml,
    "name: a\ntasks:\n  a:\n    command: [x]\n    depends_on: [c]\n  b:\n    command: [x]\n    depends_on: [a]\n  c:\n    command: [x]\n    depends_on: [b]\n  d:\n    command: [x]\n    depends_on: [e]\n  e:\n    command: [x]\n    depends_on: [d]\n"
);
case!(
    bad_cron_field,
    yaml,
    "name: a\nschedule: \"0 25 * * *\"\ntasks:\n  x:\n    command: [echo]\n"
);
case!(
    bad_cron_field_count,
    yaml,
    "name: a\nschedule: \"0 0 * *\"\ntasks:\n  x:\n    command: [echo]\n"
);
case!(
    bad_cron_dow,
    yaml,
    "name: a\nschedule: \"0 0 * * MON-FUNDAY\"\ntasks:\n  x:\n    command: [echo]\n"
);
case!(
    unknown_timezone,
    yaml,
    "name: a\ntimezone: Europe/Berln\ntasks:\n  x:\n    command: [echo]\n"
);
case!(
    bad_durations,
    yaml,
    "name: a\ncatchup_window: 0s\ntasks:\n  x:\n    command: [echo]\n    timeout: 5 minutes\n    retry_delay: 30m1h\n    max_retry_delay: -3\n  y:\n    command: [echo]\n    timeout: 400d\n    retry_delay: 1m\n    max_retry_delay: 10s\n"
);
case!(
    empty_commands,
    yaml,
    "name: a\ntasks:\n  a:\n    command: []\n  b:\n    command: [\"\", x]\n  c:\n    script: \"  \"\n  d:\n    command: [echo, {a: 1}]\n"
);
case!(
    both_or_neither_exec,
    yaml,
    "name: a\ntasks:\n  both:\n    command: [echo]\n    script: echo\n  neither:\n    retries: 1\n  nothing:\n  shell_with_command:\n    command: [echo]\n    shell: /bin/bash\n"
);
case!(
    bad_enum_values,
    yaml,
    "name: a\ncatchup: every\noverlap: skipp\ntasks:\n  x:\n    command: [echo]\n    trigger_rule: all_succes\n    retry_backoff: linear\n"
);
case!(
    out_of_range_values,
    yaml,
    "name: a\nmax_active_runs: 0\ntasks:\n  x:\n    command: [echo]\n    retries: 1000\n    retry_jitter: 1.5\n    priority: 99999999999\n    resources: {bus: 0}\n    limits: {memory: 0, cpu: -1}\n  y:\n    command: [echo]\n    limits: {memory: 12Qi, cpu: 5000}\n"
);
case!(
    defaults_cannot_hold_exec,
    yaml,
    "name: a\ndefaults:\n  command: [echo]\n  depends_on: [x]\n  retries: 2\n  retires: 3\ntasks:\n  x:\n    command: [echo]\n"
);
case!(
    bad_templates,
    yaml,
    "name: a\nparams:\n  site: plant-7\ntasks:\n  a:\n    command: [echo, \"{{ params.siet }}\", \"{{ env.HOME }}\", \"{{ run.nope }}\"]\n  b:\n    script: \"echo {{ tasks.a.outputs.x }} {{ tasks.c.outputs.y }} {{ tasks.zz.outputs.k }}\"\n  c:\n    command: [echo, \"{{ tasks.b.outputs.x\"]\n    depends_on: [b]\n"
);
case!(
    bad_env_and_param_names,
    yaml,
    "name: a\nparams:\n  \"bad name\": 1\n  nested: {a: 1}\nenv:\n  1BAD: x\n  GOOD: [1]\ntasks:\n  x:\n    command: [echo]\n"
);

#[test]
fn unknown_resource() {
    let opts = ValidateOptions {
        known_resources: Some(BTreeSet::from(["plc-bus".to_string(), "gpu".to_string()])),
    };
    let src = "name: a\ndefaults:\n  resources: {gpu: 1}\ntasks:\n  x:\n    command: [echo]\n    resources: {plc-buss: 1, gpu: 2}\n";
    insta::assert_snapshot!("unknown_resource", check_with(src, Format::Yaml, &opts));
    // Without a declared set, resources are not checked.
    assert_eq!(
        check_with(src, Format::Yaml, &ValidateOptions::default()),
        "OK"
    );
    let none = ValidateOptions {
        known_resources: Some(BTreeSet::new()),
    };
    insta::assert_snapshot!(
        "no_resources_declared",
        check_with(src, Format::Yaml, &none)
    );
}

case!(
    toml_syntax_error,
    toml,
    "name = \"a\"\n[tasks.x]\ncommand = [\"echo\"\n"
);
case!(
    toml_duplicate_key,
    toml,
    "name = \"a\"\nname = \"b\"\n[tasks.x]\ncommand = [\"echo\"]\n"
);
case!(
    toml_validation_errors,
    toml,
    "name = \"a\"\nschedule = \"61 * * * *\"\n\n[tasks.x]\ncommand = [\"echo\"]\nretries = -2\ndepends_on = [\"y\"]\n\n[tasks.y]\nscript = \"echo\"\ndepends_on = [\"x\"]\ntrigger_rule = \"sometimes\"\n"
);

#[test]
fn diagnostics_are_errors_with_display() {
    let err = parse(
        "f.yaml",
        "name: a\n",
        Format::Yaml,
        &ValidateOptions::default(),
    )
    .unwrap_err();
    let e: &dyn std::error::Error = &err[0];
    assert_eq!(
        e.to_string(),
        "f.yaml:1:1: tasks: missing required key `tasks`"
    );
}

#[test]
fn io_error_is_one_diagnostic_at_1_1() {
    let dir = std::env::temp_dir().join("outpost-does-not-exist-7f3a");
    let path = dir.join("missing.yaml");
    let err = outpost_common::workflow::load_file(&path, &ValidateOptions::default()).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!((err[0].line, err[0].column), (1, 1));
    assert!(err[0].message.starts_with("cannot read file"), "{}", err[0]);
}

case!(
    unknown_keys_with_empty_values,
    yaml,
    "name: a\nschedul:\ntasks:\n  x:\n    command: [echo]\n    retires:\n    timeout:\n"
);
