//! The engine through `outpost-agent run`: real processes, real store.

use std::collections::BTreeMap;

use outpost_tests::{Scratch, run_json, task};

fn diamond(rule: &str) -> String {
    format!(
        "name: diamond\ntasks:\n  a:\n    command: [/bin/true]\n  b:\n    command: [/bin/true]\n    depends_on: [a]\n  c:\n    command: [/bin/false]\n    depends_on: [a]\n  d:\n    command: [/bin/true]\n    depends_on: [b, c]\n    trigger_rule: {rule}\n"
    )
}

#[test]
fn diamond_with_a_failing_branch_under_each_trigger_rule() {
    let s = Scratch::new("diamond").unwrap();
    // (rule, state of d, run state): the run's state follows its leaf task d (Airflow's rule).
    let cases = [
        ("all_success", "upstream_failed", "failed"),
        ("all_done", "succeeded", "succeeded"),
        ("all_failed", "skipped", "succeeded"),
        ("one_success", "succeeded", "succeeded"),
        ("one_failed", "succeeded", "succeeded"),
        ("none_failed", "upstream_failed", "failed"),
    ];
    for (rule, d_state, run_state) in cases {
        let f = s.write(&format!("{rule}.yaml"), &diamond(rule)).unwrap();
        let (code, v) = run_json(&f, &s.join("st"), &[]).unwrap();
        assert_eq!(task(&v, "b")["state"], "succeeded", "{rule}: {v}");
        assert_eq!(task(&v, "c")["state"], "failed", "{rule}: {v}");
        assert_eq!(task(&v, "d")["state"], d_state, "{rule}: {v}");
        assert_eq!(v["state"], run_state, "{rule}: {v}");
        assert_eq!(code, if run_state == "succeeded" { 0 } else { 1 }, "{rule}");
        let ran = d_state == "succeeded";
        assert_eq!(
            task(&v, "d")["attempts"].as_u64() == Some(1),
            ran,
            "{rule}: {v}"
        );
    }
}

#[test]
fn retries_with_exponential_backoff() {
    let s = Scratch::new("retry").unwrap();
    let marks = s.join("marks");
    let f = s
        .write(
            "wf.yaml",
            &format!(
                "name: flaky\ntasks:\n  t:\n    script: |\n      date +%s%N >> {m}\n      test $(wc -l < {m}) -ge 3\n    retries: 4\n    retry_delay: 300ms\n    retry_backoff: exponential\n",
                m = marks.display()
            ),
        )
        .unwrap();
    let (code, v) = run_json(&f, &s.join("st"), &[]).unwrap();
    assert_eq!(code, 0, "{v}");
    assert_eq!(task(&v, "t")["attempts"], 3, "{v}");
    let ts: Vec<i128> = std::fs::read_to_string(&marks)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(ts.len(), 3);
    let gap1 = (ts[1] - ts[0]) / 1_000_000;
    let gap2 = (ts[2] - ts[1]) / 1_000_000;
    // Fixed 300 ms, then doubled: 600 ms. Lower bounds only (no timing upper bounds in tests).
    assert!(gap1 >= 300, "first retry after {gap1} ms");
    assert!(gap2 >= 600, "second retry after {gap2} ms");
}

#[test]
fn retries_never_exceed_the_limit() {
    let s = Scratch::new("retry-limit").unwrap();
    let f = s
        .write("wf.yaml", "name: always-fails\ntasks:\n  t:\n    command: [/bin/false]\n    retries: 2\n    retry_delay: 50ms\n")
        .unwrap();
    let (code, v) = run_json(&f, &s.join("st"), &[]).unwrap();
    assert_eq!(code, 1);
    assert_eq!(task(&v, "t")["attempts"], 3, "{v}");
    assert_eq!(task(&v, "t")["state"], "failed");
}

fn alive(pid: i32) -> bool {
    // Zombies count as dead: look at /proc state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let s = Scratch::new("timeout").unwrap();
    let pidfile = s.join("grandchild.pid");
    let f = s
        .write(
            "wf.yaml",
            &format!(
                "name: hang\ntasks:\n  t:\n    script: |\n      sleep 300 &\n      echo $! > {p}\n      trap '' TERM\n      sleep 300\n    timeout: 1s\n",
                p = pidfile.display()
            ),
        )
        .unwrap();
    let cfg = s
        .write("agent.toml", "[exec]\nkill_grace = \"500ms\"\n")
        .unwrap();
    let (code, v) = run_json(&f, &s.join("st"), &["--config", cfg.to_str().unwrap()]).unwrap();
    assert_eq!(code, 1, "{v}");
    assert_eq!(task(&v, "t")["state"], "failed", "{v}");
    assert_eq!(task(&v, "t")["outcome"], "timed out", "{v}");
    let gpid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    outpost_tests::wait_for(
        std::time::Duration::from_secs(5),
        "grandchild to die",
        || (!alive(gpid)).then_some(()),
    )
    .unwrap();
}

#[test]
fn outputs_flow_downstream_as_templates_and_env() {
    let s = Scratch::new("outputs").unwrap();
    let f = s
        .write(
            "wf.yaml",
            "name: outs\nparams:\n  batch: b1\ntasks:\n  produce:\n    script: echo \"answer=42\" >> \"$OUTPOST_OUTPUT\"\n  consume:\n    depends_on: [produce]\n    command: [/bin/sh, -c, 'test \"$0\" = 42 && test \"$OUTPOST_OUTPUT_PRODUCE_ANSWER\" = 42 && test \"$1\" = b2 && test \"$OUTPOST_PARAM_BATCH\" = b2 && test \"$OUTPOST_TASK\" = consume && test -n \"$OUTPOST_RUN_ID\" && test \"$OUTPOST_WORKFLOW\" = outs', '{{ tasks.produce.outputs.answer }}', '{{ params.batch }}']\n",
        )
        .unwrap();
    let (code, v) = run_json(&f, &s.join("st"), &["--param", "batch=b2"]).unwrap();
    assert_eq!(code, 0, "{v}");
    let outs = &task(&v, "produce")["outputs"];
    assert_eq!(outs, &serde_json::json!([["answer", "42"]]), "{v}");
}

#[test]
fn resource_semaphore_is_never_exceeded() {
    let s = Scratch::new("resources").unwrap();
    let log = s.join("intervals");
    let mut y = String::from("name: bus\ntasks:\n");
    for i in 0..6 {
        y.push_str(&format!(
            "  t{i}:\n    script: |\n      echo \"start $(date +%s%N)\" >> {l}\n      sleep 0.1\n      echo \"end $(date +%s%N)\" >> {l}\n    resources:\n      plc-bus: 1\n",
            l = log.display()
        ));
    }
    let f = s.write("wf.yaml", &y).unwrap();
    let cfg = s
        .write("agent.toml", "max_running = 4\n[resources]\nplc-bus = 1\n")
        .unwrap();
    let (code, v) = run_json(&f, &s.join("st"), &["--config", cfg.to_str().unwrap()]).unwrap();
    assert_eq!(code, 0, "{v}");
    let mut events: Vec<(i128, i32)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (k, t) = l.split_once(' ')?;
            Some((t.trim().parse().ok()?, if k == "start" { 1 } else { -1 }))
        })
        .collect();
    assert_eq!(events.len(), 12);
    events.sort();
    let mut holders = 0;
    for (_, d) in events {
        holders += d;
        assert!(holders <= 1, "more than one task held plc-bus at once");
    }
}

#[test]
fn priority_order_under_a_concurrency_limit_of_1() {
    let s = Scratch::new("priority").unwrap();
    let order = s.join("order");
    let prios = [
        ("low", 1),
        ("high", 10),
        ("mid", 5),
        ("top", 20),
        ("neg", -3),
    ];
    let mut y = String::from("name: prio\ntasks:\n  root:\n    command: [/bin/true]\n");
    for (id, p) in prios {
        y.push_str(&format!(
            "  {id}:\n    depends_on: [root]\n    priority: {p}\n    script: echo {id} >> {o}\n",
            o = order.display()
        ));
    }
    let f = s.write("wf.yaml", &y).unwrap();
    let (code, v) = run_json(&f, &s.join("st"), &["--max-running", "1"]).unwrap();
    assert_eq!(code, 0, "{v}");
    let got: Vec<String> = std::fs::read_to_string(&order)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, ["top", "high", "mid", "low", "neg"]);
}

#[test]
fn each_run_records_every_task_with_times() {
    let s = Scratch::new("record").unwrap();
    let f = s
        .write("wf.yaml", "name: rec\ntasks:\n  a:\n    command: [/bin/true]\n  b:\n    command: [/bin/true]\n    depends_on: [a]\n")
        .unwrap();
    let (_, v) = run_json(&f, &s.join("st"), &[]).unwrap();
    // `run` closed its store cleanly before it exited (else the next open repairs the file).
    let st = outpost_agent::store::Store::open(&s.join("st").join("agent.redb")).unwrap();
    assert!(!st.was_repaired(), "the store was left needing a repair");
    drop(st);
    let mut seen = BTreeMap::new();
    for t in v["tasks"].as_array().unwrap() {
        assert!(t["start"].is_string() && t["end"].is_string(), "{t}");
        seen.insert(t["task"].as_str().unwrap().to_string(), t["state"].clone());
    }
    assert_eq!(seen.len(), 2);
    assert!(
        v["run_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("rec@v1@m")),
        "{v}"
    );
}
