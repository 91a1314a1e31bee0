//! Placeholders in `script` sit only where a reference to their value is safe: elsewhere the
//! file is refused with file:line:column and a pointer to the environment variable.
#![allow(clippy::unwrap_used)]

use outpost_common::workflow::{Format, ValidateOptions, parse};

fn diags(src: &str) -> Vec<String> {
    match parse("wf.yaml", src, Format::Yaml, &ValidateOptions::default()) {
        Ok(_) => vec![],
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn quoted_and_unquoted_placeholders_are_accepted() {
    let src = "name: a\nparams:\n  site: p7\ntasks:\n  x:\n    script: echo \"hello {{ params.site }}\" {{ params.site }} 'x {{ run.id }}'\n";
    assert_eq!(diags(src), Vec::<String>::new());
}

#[test]
fn unsafe_positions_are_refused_with_position_and_variable() {
    let src =
        "name: a\nparams:\n  site: p7\ntasks:\n  x:\n    script: echo ${x:-{{ params.site }}}\n";
    assert_eq!(
        diags(src),
        [
            "wf.yaml:6:13: tasks.x.script: bad template: `{{ params.site }}` is inside `${...}`; write it outside quotes (it becomes one word) or use the environment variable (OUTPOST_PARAM_SITE)"
        ]
    );
    let src =
        "name: a\ntasks:\n  x:\n    script: |\n      cat <<'EOF'\n      {{ run.id }}\n      EOF\n";
    let d = diags(src);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("wf.yaml:5:7: tasks.x.script:")
            && d[0].contains("quoted delimiter")
            && d[0].contains("OUTPOST_RUN_ID"),
        "{d:?}"
    );
}

#[test]
fn placeholders_need_a_posix_shell() {
    let src = "name: a\nparams:\n  n: '1'\ntasks:\n  x:\n    shell: /usr/bin/python3\n    script: print({{ params.n }})\n  y:\n    shell: /bin/bash\n    script: echo {{ params.n }}\n";
    assert_eq!(
        diags(src),
        [
            "wf.yaml:7:13: tasks.x.script: `{{ params.n }}`: placeholders in `script` need a POSIX shell (`shell: /usr/bin/python3` is not one); read the value from the environment variable OUTPOST_PARAM_N instead"
        ]
    );
}
