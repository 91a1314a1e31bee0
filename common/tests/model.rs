//! Valid files produce the expected model: defaults applied, tasks in topological order with
//! upstream indices, content hash of the source bytes; the shipped examples validate.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_common::model::{Backoff, Catchup, Exec, Overlap, TriggerRule, Workflow};
use outpost_common::workflow::{Format, ValidateOptions, load_file, parse};

fn ok(src: &str, format: Format) -> Workflow {
    match parse("t", src, format, &ValidateOptions::default()) {
        Ok(w) => w,
        Err(d) => panic!(
            "unexpected diagnostics:\n{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

const ETL_YAML: &str = r#"
name: etl.daily
description: test
schedule: "0 3 * * *"
timezone: Europe/Berlin
catchup: all
catchup_window: 6h
overlap: cancel_running
max_active_runs: 3
params:
  site: plant-7
  batch: 500
  ratio: 1.50
  dry: false
env:
  A: "1"
  B: 2
target:
  role: edge
defaults:
  timeout: 5m
  retries: 2
  retry_backoff: exponential
  retry_jitter: true
  env:
    FROM_DEFAULTS: "yes"
    OVERRIDDEN: default
  resources: {disk: 1}
  limits: {memory: 64Mi}
tasks:
  load:
    command: [load, "{{ tasks.transform.outputs.path }}", "{{ params.site }}"]
    depends_on: [transform, extract]
    retries: 0
    env:
      OVERRIDDEN: task
    limits: {cpu: 250m}
  extract:
    script: echo extract {{ run.id }}
    shell: /bin/bash
    priority: -5
    idempotent: true
    timeout: 90
  transform:
    command: [transform]
    depends_on: [extract]
    trigger_rule: none_failed
    retry_delay: 250ms
    max_retry_delay: 1h
    retry_jitter: 0.25
    resources: {gpu: 2}
    working_dir: /srv
  audit:
    command: [audit]
"#;

const ETL_TOML: &str = r#"
name = "etl.daily"
description = "test"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
catchup = "all"
catchup_window = "6h"
overlap = "cancel_running"
max_active_runs = 3

[params]
site = "plant-7"
batch = 500
ratio = 1.50
dry = false

[env]
A = "1"
B = 2

[target]
role = "edge"

[defaults]
timeout = "5m"
retries = 2
retry_backoff = "exponential"
retry_jitter = true
env = { FROM_DEFAULTS = "yes", OVERRIDDEN = "default" }
resources = { disk = 1 }
limits = { memory = "64Mi" }

[tasks.load]
command = ["load", "{{ tasks.transform.outputs.path }}", "{{ params.site }}"]
depends_on = ["transform", "extract"]
retries = 0
env = { OVERRIDDEN = "task" }
limits = { cpu = "250m" }

[tasks.extract]
script = "echo extract {{ run.id }}"
shell = "/bin/bash"
priority = -5
idempotent = true
timeout = 90

[tasks.transform]
command = ["transform"]
depends_on = ["extract"]
trigger_rule = "none_failed"
retry_delay = "250ms"
max_retry_delay = "1h"
retry_jitter = 0.25
resources = { gpu = 2 }
working_dir = "/srv"

[tasks.audit]
command = ["audit"]
"#;

#[test]
fn yaml_model_has_defaults_topo_order_and_upstreams() {
    let w = ok(ETL_YAML, Format::Yaml);
    assert_eq!(w.name, "etl.daily");
    assert_eq!(w.description.as_deref(), Some("test"));
    assert_eq!(w.schedule.as_ref().map(|s| s.expr()), Some("0 3 * * *"));
    assert_eq!(w.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(w.catchup, Catchup::All);
    assert_eq!(w.catchup_window, Duration::from_secs(6 * 3600));
    assert_eq!(w.overlap, Overlap::CancelRunning);
    assert_eq!(w.max_active_runs, 3);
    // Params are stored as strings, as written.
    let params: Vec<(&str, &str)> = w
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("batch", "500"),
            ("dry", "false"),
            ("ratio", "1.50"),
            ("site", "plant-7")
        ]
    );
    assert_eq!(w.env.get("B").map(String::as_str), Some("2"));
    assert_eq!(w.target.get("role").map(String::as_str), Some("edge"));
    assert_eq!(
        w.content_hash,
        blake3::hash(ETL_YAML.as_bytes()).to_hex().to_string()
    );

    // Topological order, ties broken by file order (load 0, extract 1, transform 2, audit 3):
    // ready {extract, audit} -> extract; {transform, audit} -> transform; {load, audit} -> load.
    let ids: Vec<&str> = w.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["extract", "transform", "load", "audit"]);
    for (i, t) in w.tasks.iter().enumerate() {
        assert!(
            t.upstream.iter().all(|&u| u < i),
            "{} has a later upstream",
            t.id
        );
        let named: Vec<&str> = t.upstream.iter().map(|&u| w.tasks[u].id.as_str()).collect();
        assert_eq!(
            named,
            t.depends_on.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        w.task_index("load").map(|i| &w.tasks[i].upstream),
        Some(&vec![1, 0])
    );

    let t = |id: &str| &w.tasks[w.task_index(id).unwrap()];
    let extract = t("extract");
    assert_eq!(
        extract.exec,
        Exec::Script {
            script: "echo extract {{ run.id }}".into(),
            shell: Some("/bin/bash".into())
        }
    );
    assert_eq!(extract.priority, -5);
    assert!(extract.idempotent);
    assert_eq!(extract.timeout, Some(Duration::from_secs(90)));
    assert_eq!(extract.retry.retries, 2);
    assert_eq!(extract.retry.backoff, Backoff::Exponential);
    assert_eq!(extract.retry.delay, Duration::from_secs(10));
    assert!((extract.retry.jitter - 0.1).abs() < f64::EPSILON);
    assert_eq!(extract.resources, BTreeMap::from([("disk".to_string(), 1)]));
    assert_eq!(extract.limits.memory, Some(64 << 20));
    assert_eq!(extract.limits.cpu, None);
    assert_eq!(extract.trigger_rule, TriggerRule::AllSuccess);

    let transform = t("transform");
    assert_eq!(transform.trigger_rule, TriggerRule::NoneFailed);
    assert_eq!(transform.retry.delay, Duration::from_millis(250));
    assert_eq!(transform.retry.max_delay, Some(Duration::from_secs(3600)));
    assert!((transform.retry.jitter - 0.25).abs() < f64::EPSILON);
    assert_eq!(
        transform.resources,
        BTreeMap::from([("disk".to_string(), 1), ("gpu".to_string(), 2)])
    );
    assert_eq!(transform.working_dir.as_deref(), Some("/srv"));
    assert!(!transform.idempotent);
    assert_eq!(transform.timeout, Some(Duration::from_secs(300)));

    let load = t("load");
    assert_eq!(load.retry.retries, 0);
    assert_eq!(load.env.get("OVERRIDDEN").map(String::as_str), Some("task"));
    assert_eq!(
        load.env.get("FROM_DEFAULTS").map(String::as_str),
        Some("yes")
    );
    assert_eq!(load.limits.cpu, Some(0.25));
    assert_eq!(load.limits.memory, Some(64 << 20));
    assert_eq!(
        load.exec,
        Exec::Command(vec![
            "load".into(),
            "{{ tasks.transform.outputs.path }}".into(),
            "{{ params.site }}".into()
        ])
    );
}

#[test]
fn toml_gives_the_same_model_as_yaml() {
    let mut y = ok(ETL_YAML, Format::Yaml);
    let mut t = ok(ETL_TOML, Format::Toml);
    assert_eq!(
        t.content_hash,
        blake3::hash(ETL_TOML.as_bytes()).to_hex().to_string()
    );
    y.content_hash.clear();
    t.content_hash.clear();
    assert_eq!(format!("{y:#?}"), format!("{t:#?}"));
}

#[test]
fn minimal_file_gets_all_defaults() {
    let w = ok(
        "name: m\ntasks:\n  only:\n    command: [true]\n",
        Format::Yaml,
    );
    assert!(w.schedule.is_none());
    assert_eq!(w.timezone, chrono_tz::UTC);
    assert_eq!(w.catchup, Catchup::Latest);
    assert_eq!(w.catchup_window, Duration::from_secs(86_400));
    assert_eq!(w.overlap, Overlap::Skip);
    assert_eq!(w.max_active_runs, 1);
    let t = &w.tasks[0];
    assert_eq!(t.exec, Exec::Command(vec!["true".into()]));
    assert_eq!(t.retry, outpost_common::model::RetryPolicy::default());
    assert_eq!(t.timeout, None);
    assert_eq!(t.priority, 0);
    assert!(!t.idempotent);
    assert!(t.upstream.is_empty());
}

#[test]
fn content_hash_changes_with_any_byte() {
    let a = ok(
        "name: m\ntasks:\n  only:\n    command: [true]\n",
        Format::Yaml,
    );
    let b = ok(
        "name: m\ntasks:\n  only:\n    command: [true]  \n",
        Format::Yaml,
    );
    assert_ne!(a.content_hash, b.content_hash);
    assert_eq!(a.content_hash.len(), 64);
}

#[test]
fn diamond_upstreams() {
    let w = ok(
        "name: d\ntasks:\n  d: {command: [x], depends_on: [b, c]}\n  c: {command: [x], depends_on: [a]}\n  b: {command: [x], depends_on: [a]}\n  a: {command: [x]}\n",
        Format::Yaml,
    );
    let ids: Vec<&str> = w.tasks.iter().map(|t| t.id.as_str()).collect();
    // a first; then c (file index 1) before b (file index 2); d last.
    assert_eq!(ids, ["a", "c", "b", "d"]);
    assert_eq!(w.tasks[3].upstream, vec![2, 1]);
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn every_example_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "toml")
        ) {
            continue;
        }
        seen += 1;
        if let Err(d) = load_file(&path, &ValidateOptions::default()) {
            panic!(
                "{}:\n{}",
                path.display(),
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    assert!(seen >= 3, "expected the example files, found {seen}");
}

#[test]
fn examples_have_the_documented_shape() {
    let hello = load_file(
        &examples_dir().join("hello.yaml"),
        &ValidateOptions::default(),
    )
    .unwrap();
    assert_eq!(hello.tasks.len(), 5);
    let merge = &hello.tasks[hello.task_index("merge").unwrap()];
    assert_eq!(merge.upstream.len(), 2, "diamond join");
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let next: Vec<_> = hello
        .schedule
        .as_ref()
        .unwrap()
        .iter_after(start, hello.timezone)
        .take(2)
        .collect();
    assert_eq!((next[1] - next[0]).num_seconds(), 10);

    let plc = examples_dir().join("plc-pull.yaml");
    let known = ValidateOptions {
        known_resources: Some(BTreeSet::from(["plc-bus".to_string()])),
    };
    let w = load_file(&plc, &known).unwrap();
    assert!(
        w.tasks
            .iter()
            .any(|t| t.resources.get("plc-bus") == Some(&1))
    );
    let none = ValidateOptions {
        known_resources: Some(BTreeSet::new()),
    };
    assert!(load_file(&plc, &none).is_err());

    let nightly = load_file(
        &examples_dir().join("nightly-report.toml"),
        &ValidateOptions::default(),
    )
    .unwrap();
    let ids: Vec<&str> = nightly.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["collect", "render", "mail"]);
}

#[test]
fn cron_forms_in_the_docs_are_accepted() {
    for expr in [
        "*/10 * * * * *",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * MON#2",
        "0 0 * * 5L",
        "*/5 6-22 * * MON-SAT",
        "0 0 1 * MON",
    ] {
        let src = format!("name: c\nschedule: \"{expr}\"\ntasks:\n  t:\n    command: [true]\n");
        let w = ok(&src, Format::Yaml);
        assert_eq!(
            w.schedule.map(|s| s.expr().to_string()),
            Some(expr.to_string())
        );
    }
}

#[test]
fn jitter_bool_and_memory_units() {
    let w = ok(
        "name: j\ntasks:\n  a:\n    command: [x]\n    retry_jitter: false\n    limits: {memory: 512MB, cpu: 2}\n  b:\n    command: [x]\n    limits: {memory: 1048576, cpu: \"0.5\"}\n",
        Format::Yaml,
    );
    assert_eq!(w.tasks[0].retry.jitter, 0.0);
    assert_eq!(w.tasks[0].limits.memory, Some(512_000_000));
    assert_eq!(w.tasks[0].limits.cpu, Some(2.0));
    assert_eq!(w.tasks[1].limits.memory, Some(1_048_576));
    assert_eq!(w.tasks[1].limits.cpu, Some(0.5));
}

#[test]
fn yaml_anchors_and_merge_keys() {
    let w = ok(
        "name: m\ntasks:\n  a: &base\n    command: [x]\n    retries: 2\n    env: &env {A: \"1\"}\n  b:\n    <<: *base\n    command: [y]\n    env: *env\n",
        Format::Yaml,
    );
    let b = &w.tasks[1];
    assert_eq!(b.exec, Exec::Command(vec!["y".into()]));
    assert_eq!(b.retry.retries, 2);
    assert_eq!(b.env.get("A").map(String::as_str), Some("1"));
}
