//! `validate`, `schedule` and `run`'s exit codes and output formats.

use outpost_tests::{Scratch, agent, agent_bin, repo_root, run_json, stderr, stdout};

#[test]
fn validate_reports_every_problem_with_location_and_exit_1() {
    let s = Scratch::new("validate").unwrap();
    let bad = s
        .write(
            "bad.yaml",
            "name: Bad Name\nschedul: '* * * * *'\ntasks:\n  a:\n    command: [echo]\n    depends_on: [b]\n  b:\n    command: [echo]\n    depends_on: [a]\n",
        )
        .unwrap();
    let good = repo_root().join("examples/hello.yaml");
    let out = agent(&["validate", good.to_str().unwrap(), bad.to_str().unwrap()]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {} stderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    let bad_s = bad.display().to_string();
    // Unknown key with a did-you-mean, the bad name and the cycle, each as file:line:column.
    assert!(
        err.contains(&format!("{bad_s}:2:1")) && err.contains("schedule"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{bad_s}:1:")) && err.contains("name"),
        "{err}"
    );
    assert!(
        err.contains("cycle") && (err.contains("a -> b -> a") || err.contains("b -> a -> b")),
        "{err}"
    );
    assert!(stdout(&out).contains("hello.yaml: ok"), "{}", stdout(&out));
}

#[test]
fn validate_all_examples_exit_0() {
    let dir = repo_root().join("examples");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".yaml") || p.ends_with(".toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "examples: {files:?}");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = agent(&args).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn schedule_prints_next_firings_across_dst() {
    let s = Scratch::new("schedule").unwrap();
    let f = s
        .write(
            "wf.yaml",
            "name: nightly\nschedule: '30 2 * * *'\ntimezone: Europe/Berlin\ntasks:\n  t:\n    command: [/bin/true]\n",
        )
        .unwrap();
    let out = agent(&[
        "schedule",
        f.to_str().unwrap(),
        "--from",
        "2026-03-27T12:00:00Z",
        "--count",
        "4",
    ])
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "2026-03-28T02:30:00+01:00",
            // 02:30 does not exist on 29 March: it fires once, at the first valid instant after.
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
            "2026-03-31T02:30:00+02:00"
        ]
    );
}

#[test]
fn run_exit_codes_0_1_2() {
    let s = Scratch::new("exit").unwrap();
    let ok = s
        .write(
            "ok.yaml",
            "name: ok\ntasks:\n  a:\n    command: [/bin/true]\n",
        )
        .unwrap();
    let fail = s
        .write(
            "fail.yaml",
            "name: fail\ntasks:\n  a:\n    command: [/bin/false]\n",
        )
        .unwrap();
    let bad = s
        .write(
            "bad.yaml",
            "name: bad\ntasks:\n  a:\n    comand: [/bin/true]\n",
        )
        .unwrap();
    let st = s.join("state");
    let (code, v) = run_json(&ok, &st, &[]).unwrap();
    assert_eq!((code, v["state"].as_str()), (0, Some("succeeded")));
    let (code, v) = run_json(&fail, &st, &[]).unwrap();
    assert_eq!((code, v["state"].as_str()), (1, Some("failed")));
    assert_eq!(outpost_tests::task(&v, "a")["exit_code"], 1);
    let out = agent(&[
        "run",
        bad.to_str().unwrap(),
        "--state-dir",
        st.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("comand"), "{}", stderr(&out));
}

#[test]
fn run_text_output_has_progress_and_summary() {
    let s = Scratch::new("text").unwrap();
    let f = s
        .write("wf.yaml", "name: txt\ntasks:\n  first:\n    command: [/bin/true]\n  second:\n    command: [/bin/true]\n    depends_on: [first]\n")
        .unwrap();
    let out = agent(&[
        "run",
        f.to_str().unwrap(),
        "--state-dir",
        s.join("st").to_str().unwrap(),
    ])
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    // One line per state change on stderr, in DAG order.
    let first_run = err.find("first").unwrap_or(usize::MAX);
    let second_run = err.find("second").unwrap_or(0);
    assert!(first_run < second_run, "{err}");
    assert!(err.contains("succeeded"), "{err}");
    let o = stdout(&out);
    assert!(
        o.contains("TASK") && o.contains("STATE") && o.contains("first") && o.contains("second"),
        "{o}"
    );
    assert!(o.contains("state     succeeded"), "{o}");
}

#[test]
fn the_readme_example_runs() {
    let s = Scratch::new("hello").unwrap();
    let (code, v) = run_json(&repo_root().join("examples/hello.yaml"), &s.join("st"), &[]).unwrap();
    assert_eq!(code, 0, "{v}");
    assert!(v["tasks"].as_array().is_some_and(|t| t.len() >= 4), "{v}");
}

/// docs/security.md's modes hold whatever the umask: under umask 022 the state directory, the
/// logs directory and each run directory are 0700, the store, every log file and the start
/// journal 0600, even when the state directory was created 0755 beforehand (as an installer
/// might). The `.outputs` file is the task's own (created by it, with its umask).
#[test]
fn state_dir_files_are_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Scratch::new("modes").unwrap();
    let f = s
        .write(
            "wf.yaml",
            "name: modes\ntasks:\n  talk:\n    script: echo hello; echo to-stderr >&2\n",
        )
        .unwrap();
    let st = s.join("st");
    std::fs::create_dir(&st).unwrap();
    std::fs::set_permissions(&st, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" run \"$1\" --state-dir \"$2\" --quiet")
        .arg(agent_bin())
        .arg(&f)
        .arg(&st)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen_files = 0;
    let mut seen_dirs = 0;
    let mut stack = vec![st.clone()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", p.display());
            seen_dirs += 1;
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if p.extension().is_some_and(|e| e == "outputs") {
            continue;
        } else {
            assert_eq!(mode, 0o600, "{}", p.display());
            seen_files += 1;
        }
    }
    assert!(st.join("agent.redb").is_file());
    // state dir, logs, the run's directory; the store and the task's log at least.
    assert!(seen_dirs >= 3, "{seen_dirs}");
    assert!(seen_files >= 2, "{seen_files}");
}
