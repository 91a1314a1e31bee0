//! The long form of parameter declarations: types, pattern, default, required; every mistake is a
//! `file:line:column` diagnostic.
#![allow(clippy::unwrap_used)]

use outpost_common::params::{ParamType, check_params};
use outpost_common::workflow::{Format, ValidateOptions, parse};

fn diags(src: &str) -> Vec<String> {
    match parse("wf.yaml", src, Format::Yaml, &ValidateOptions::default()) {
        Ok(_) => vec![],
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

const TASKS: &str = "tasks:\n  x:\n    command: [echo, '{{ params.site }}']\n";

#[test]
fn short_and_long_forms() {
    let src = format!(
        "name: a\nparams:\n  site: {{type: string, pattern: '^[a-z0-9-]+$', required: true}}\n  count: {{type: integer, default: 3}}\n  mode: {{type: enum, values: [a, b]}}\n  ratio: {{type: number, default: 0.5}}\n  dry: {{type: boolean, default: false}}\n  plain: p7\n{TASKS}"
    );
    let wf = parse("wf.yaml", &src, Format::Yaml, &ValidateOptions::default()).unwrap();
    assert_eq!(wf.params["count"], "3");
    assert_eq!(wf.params["plain"], "p7");
    assert_eq!(wf.params["mode"], "", "declared without a default: empty");
    assert_eq!(
        wf.param_rules["mode"].ty,
        ParamType::Enum(vec!["a".into(), "b".into()])
    );
    assert!(wf.param_rules["site"].required);
    let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let r = &wf.param_rules;
    assert_eq!(
        check_params(
            "a",
            r,
            &kv(&[("site", "plant-7"), ("count", "4"), ("mode", "b")])
        ),
        Ok(())
    );
    assert!(
        check_params("a", r, &kv(&[("site", "Plant 7")]))
            .unwrap_err()
            .contains("`site`")
    );
    assert!(
        check_params("a", r, &kv(&[("site", "p"), ("count", "4.5")]))
            .unwrap_err()
            .contains("must be integer")
    );
    assert!(
        check_params("a", r, &kv(&[("site", "p"), ("mode", "c")]))
            .unwrap_err()
            .contains("one of a, b")
    );
    assert!(
        check_params("a", r, &kv(&[("site", "p"), ("dry", "yes")]))
            .unwrap_err()
            .contains("boolean")
    );
    assert!(
        check_params("a", r, &kv(&[]))
            .unwrap_err()
            .contains("required")
    );
    // The short form stays an optional string with its default.
    assert_eq!(
        check_params("a", r, &kv(&[("site", "p"), ("plain", "anything; at all")])),
        Ok(())
    );
}

#[test]
fn mistakes_are_diagnostics_with_positions() {
    let src = format!(
        "name: a\nparams:\n  site: {{pattern: '[a-z'}}\n  count: {{type: integer, default: three}}\n  mode: {{type: enum}}\n  kind: {{type: text}}\n  req: {{required: true, default: x}}\n  list: {{values: [a]}}\n  typo: {{defualt: 1}}\n{TASKS}"
    );
    let d = diags(&src);
    assert_eq!(
        d,
        [
            "wf.yaml:3:19: params.site.pattern: invalid pattern `[a-z`: non-empty character class has no closing bracket",
            "wf.yaml:4:35: params.count.default: the default `three` must be integer",
            "wf.yaml:5:16: params.mode.type: `type: enum` needs `values: [..]`",
            "wf.yaml:6:16: params.kind.type: unknown value `text` (allowed: `string`, `integer`, `number`, `boolean`, `enum`)",
            "wf.yaml:7:34: params.req.default: a required parameter has no default (a trigger must give it): drop `required` or `default`",
            "wf.yaml:8:18: params.list.values: `values` applies only to `type: enum`",
            "wf.yaml:9:10: params.typo.defualt: unknown key `defualt`; did you mean `default`?",
        ],
        "{d:#?}"
    );
}

#[test]
fn a_scheduled_workflow_cannot_require_a_parameter() {
    let src = format!("name: a\nschedule: '@daily'\nparams:\n  site: {{required: true}}\n{TASKS}");
    assert_eq!(
        diags(&src),
        [
            "wf.yaml:3:1: params.site: a workflow with a `schedule` cannot require a parameter (scheduled runs give none): give it a default"
        ]
    );
}

#[test]
fn two_names_that_share_one_environment_variable_are_refused() {
    let src = format!("name: a\nparams:\n  site: p7\n  line-id: a\n  line_id: b\n{TASKS}");
    assert_eq!(
        diags(&src),
        [
            "wf.yaml:5:3: params.line_id: `line_id` and `line-id` would both be passed as OUTPOST_PARAM_LINE_ID: rename one"
        ]
    );
}
